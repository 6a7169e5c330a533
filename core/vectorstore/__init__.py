"""The vector-store port: what ragkb needs from Qdrant, whichever way Qdrant is reached."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

TENANT_FIELD = "tenant_id"
DOCUMENT_FIELD = "document_id"
VERSION_FIELD = "version"
DENSE_VECTOR = "dense"


@dataclass(frozen=True)
class ChunkPoint:
    """One chunk as stored: id, dense vector and payload (which always holds the tenant)."""

    point_id: str
    tenant_id: str
    document_id: str
    version: str
    dense_vector: Sequence[float]
    payload: dict[str, Any]

    def full_payload(self) -> dict[str, Any]:
        return {
            **self.payload,
            TENANT_FIELD: self.tenant_id,
            DOCUMENT_FIELD: self.document_id,
            VERSION_FIELD: self.version,
        }


@dataclass(frozen=True)
class SearchHit:
    point_id: str
    score: float
    payload: dict[str, Any]


class VectorStore(Protocol):
    """Every read and delete takes a tenant id: no call can reach across tenants."""

    def ensure_collection(self) -> None:
        """Create the collection and its payload indexes if missing (idempotent)."""

    def upsert(self, points: Sequence[ChunkPoint]) -> None: ...

    def search_dense(
        self, *, tenant_id: str, vector: Sequence[float], limit: int
    ) -> list[SearchHit]: ...

    def delete_document(
        self, *, tenant_id: str, document_id: str, keep_version: str | None = None
    ) -> None:
        """Delete a document's points, all of them or all but one version's."""

    def count(self, *, tenant_id: str, document_id: str | None = None) -> int: ...

    def close(self) -> None: ...
