"""The vector-store port: what ragkb needs from Qdrant, whichever way Qdrant is reached."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from core.lexical import LexicalEncoder, SparseVector
from core.settings import FusionMethod as Fusion

TENANT_FIELD = "tenant_id"
DOCUMENT_FIELD = "document_id"
VERSION_FIELD = "version"
PATH_PREFIXES_FIELD = "path_prefixes"
FILE_TYPE_FIELD = "file_type"
INDEXED_AT_FIELD = "indexed_at"
PRINCIPALS_FIELD = "principals"
METADATA_FIELD = "meta"
DENSE_VECTOR = "dense"
SPARSE_VECTOR = "lexical"
# A document ingested without an access list is readable by every principal of its tenant.
PUBLIC_PRINCIPAL = "*"

KEYWORD_FIELDS = (
    DOCUMENT_FIELD,
    VERSION_FIELD,
    PATH_PREFIXES_FIELD,
    FILE_TYPE_FIELD,
    PRINCIPALS_FIELD,
)


@dataclass(frozen=True)
class ChunkPoint:
    """One chunk as stored: id, dense vector and payload (which always holds the tenant)."""

    point_id: str
    tenant_id: str
    document_id: str
    version: str
    dense_vector: Sequence[float]
    payload: dict[str, Any]
    # Text around the chunk (it included) for the sparse index only; see `with_lexical_context`.
    lexical_context: str | None = None

    def full_payload(self) -> dict[str, Any]:
        """The payload plus the fields that filters and tenant isolation rely on."""
        path = str(self.payload.get("path", ""))
        principals = self.payload.get(PRINCIPALS_FIELD)
        if principals is None:
            principals = [PUBLIC_PRINCIPAL]
        return {
            **self.payload,
            TENANT_FIELD: self.tenant_id,
            DOCUMENT_FIELD: self.document_id,
            VERSION_FIELD: self.version,
            PATH_PREFIXES_FIELD: path_prefixes(path),
            FILE_TYPE_FIELD: file_type(path),
            PRINCIPALS_FIELD: sorted(set(principals)),
            INDEXED_AT_FIELD: self.payload.get(INDEXED_AT_FIELD) or _utc_now_iso(),
        }

    def lexical_text(self) -> str:
        """What the sparse index sees: the title and section name weigh in like the text."""
        body = self.lexical_context or self.payload.get("text")
        parts = [self.payload.get("title"), self.payload.get("section"), body]
        return "\n".join(str(p) for p in parts if p)


def with_lexical_context(points: Sequence[ChunkPoint], neighbours: int) -> list[ChunkPoint]:
    """One document's chunks, each with its `neighbours` chunks on either side as lexical context.

    A chunk often names its topic only in the sentences before or after it (BM25 sees "it", the
    reader sees the whole passage); with the context, the chunk still matches those words. Only
    the payload is read (`chunk_index`, `char_start`, `char_end`, `text`), so stored points can
    be given their context again on a reindex. Overlapping chunks are joined without repeating
    the overlap.
    """
    if neighbours <= 0 or len(points) < 2:
        return list(points)
    ordered = sorted(points, key=lambda p: int(p.payload.get("chunk_index", 0)))
    contexts: dict[str, str] = {}
    for i, point in enumerate(ordered):
        window = ordered[max(0, i - neighbours) : i + neighbours + 1]
        contexts[point.point_id] = _join_spans(window)
    return [replace(p, lexical_context=contexts[p.point_id]) for p in points]


def _join_spans(window: Sequence[ChunkPoint]) -> str:
    joined = ""
    covered = -1
    for point in window:
        text = str(point.payload.get("text", ""))
        start = int(point.payload.get("char_start", 0))
        end = int(point.payload.get("char_end", start + len(text)))
        if end <= covered:
            continue
        if start < covered:
            # The part this chunk shares with the previous one is already in.
            joined += text[covered - start :]
        else:
            joined += ("\n" if joined else "") + text
        covered = end
    return joined


def path_prefixes(path: str) -> list[str]:
    """Every folder a path lies in, as `a/`, `a/b/`: a prefix filter becomes an exact match."""
    folders = posixpath.dirname(path).split("/") if "/" in path else []
    return ["/".join(folders[: i + 1]) + "/" for i in range(len(folders)) if folders[i]]


def file_type(path: str) -> str:
    return posixpath.splitext(path)[1].lstrip(".").lower()


@dataclass(frozen=True)
class DocumentVersion:
    """One version of a document and its points (none for an empty document)."""

    tenant_id: str
    document_id: str
    version: str
    points: Sequence[ChunkPoint]


def one_version_each(documents: Sequence[DocumentVersion]) -> None:
    """Refuse (ValueError) a batch naming a document twice: `replace_documents` would keep
    neither version."""
    seen: set[tuple[str, str]] = set()
    for document in documents:
        key = (document.tenant_id, document.document_id)
        if key in seen:
            raise ValueError(f"document {document.document_id} appears twice in one batch")
        seen.add(key)


class VectorStoreUnavailable(ConnectionError):
    """The vector store did not answer (down, unreachable, overloaded): worth retrying.

    A ConnectionError, so the ingest task's retry policy takes it like a database outage."""


@dataclass(frozen=True)
class SearchFilter:
    """Narrows a search within the caller's tenant; the fields given must all hold."""

    document_ids: tuple[str, ...] = ()
    path_prefix: str | None = None
    file_types: tuple[str, ...] = ()
    indexed_after: datetime | None = None
    indexed_before: datetime | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    # None: no access check (a key without end-user context). A tuple: the end user's principals;
    # only chunks readable by one of them (or public ones) match.
    principals: tuple[str, ...] | None = None


@dataclass(frozen=True)
class HybridQuery:
    """One query: dense, sparse or both (fused inside Qdrant in a single call)."""

    limit: int
    dense: Sequence[float] | None = None
    sparse: SparseVector | None = None
    candidates: int = 100
    fusion: Fusion = Fusion.RRF
    rrf_k: int = 60
    dense_weight: float = 1.0
    sparse_weight: float = 1.0


@dataclass(frozen=True)
class StoredPoint:
    """A point as read back (no vectors): its payload holds the chunk and everything filtered on."""

    point_id: str
    payload: dict[str, Any]

    def as_chunk(self, dense_vector: Sequence[float]) -> ChunkPoint:
        """The same point with another dense vector (a re-embedding keeps ids and payload)."""
        return ChunkPoint(
            point_id=self.point_id,
            tenant_id=str(self.payload[TENANT_FIELD]),
            document_id=str(self.payload[DOCUMENT_FIELD]),
            version=str(self.payload[VERSION_FIELD]),
            dense_vector=dense_vector,
            payload=self.payload,
        )


@dataclass(frozen=True)
class SearchHit:
    point_id: str
    score: float
    payload: dict[str, Any]
    # The dense cosine of the hit, also under fusion: the evidence threshold is calibrated on it.
    dense_score: float | None = None


class VectorStore(Protocol):
    """Every read and delete takes a tenant id: no call can reach across tenants."""

    def ensure_collection(self) -> None:
        """Create the collection and its payload indexes if missing (idempotent)."""

    def upsert(self, points: Sequence[ChunkPoint]) -> None: ...

    def replace_documents(self, documents: Sequence[DocumentVersion]) -> None:
        """Store each document's points, then delete its other versions (a query never sees
        it missing); durable on return. One call for a batch of files: a flush per file cost
        more than encoding it. At most one version per document (ValueError otherwise: each
        version's cleanup would delete the other's points). The caller holds the documents'
        write locks (ingest.versions), or a newer version written meanwhile would be deleted."""

    def search(
        self, *, tenant_id: str, query: HybridQuery, filters: SearchFilter | None = None
    ) -> list[SearchHit]:
        """The tenant's best points within `filters`. The lexical ranking's IDF counts only the
        tenant's points readable by `filters.principals` (all of the tenant's when None), never
        the collection: no other tenant's documents, nor ones the end user may not read, move a
        score."""
        ...

    def delete_document(
        self, *, tenant_id: str, document_id: str, keep_version: str | None = None
    ) -> None:
        """Delete a document's points, all of them or all but one version's."""

    def idf(
        self, *, tenant_id: str, terms: SparseVector, principals: tuple[str, ...] | None = None
    ) -> dict[int, float]:
        """The IDF Qdrant gives each term (index) found in the tenant's chunks readable by
        `principals` (None: all of the tenant's), over that same corpus; one batched call.

        Read back from a one-term search: its top hit scores IDF times the hit's stored weight.
        """
        ...

    def count(
        self, *, tenant_id: str, document_id: str | None = None, version: str | None = None
    ) -> int:
        """Points of a tenant, of one of its documents, or of one version of it (exact)."""
        ...

    def document_counts(self, *, tenant_id: str) -> dict[str, int]:
        """Points per document id of one tenant, exactly (reconciliation with the SQL rows)."""
        ...

    def scroll(
        self,
        *,
        tenant_id: str,
        document_id: str | None = None,
        offset: str | None = None,
        limit: int = 256,
    ) -> tuple[list[StoredPoint], str | None]:
        """A page of a tenant's points (payloads only) and the offset of the next page."""
        ...

    def publish_alias(self, alias: str) -> None:
        """Point a store-side alias at this collection (where the store has aliases)."""

    def drop(self) -> None:
        """Delete the whole collection and close the handle (`ragkb reindex --drop-old`)."""

    def close(self) -> None: ...


def dense_scores(
    query: Sequence[float], vectors: Sequence[Sequence[float] | None]
) -> list[float | None]:
    """Cosine of unit vectors; Qdrant returns each hit's vector, so fusion keeps this signal."""
    q = np.asarray(query, dtype=np.float32)
    return [
        None if v is None else float(np.dot(q, np.asarray(v, dtype=np.float32))) for v in vectors
    ]


def _utc_now_iso() -> str:
    return datetime.now(UTC).isoformat()


__all__ = [
    "DENSE_VECTOR",
    "DOCUMENT_FIELD",
    "SPARSE_VECTOR",
    "TENANT_FIELD",
    "VERSION_FIELD",
    "ChunkPoint",
    "DocumentVersion",
    "Fusion",
    "HybridQuery",
    "LexicalEncoder",
    "SearchFilter",
    "SearchHit",
    "SparseVector",
    "StoredPoint",
    "VectorStore",
    "VectorStoreUnavailable",
    "with_lexical_context",
]
