"""Embedded store: Qdrant's own engine in-process (qdrant-edge), one shard on disk."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from core.lexical import LexicalEncoder, SparseVector
from core.settings import CollectionSettings, Quantization
from core.vectorstore import (
    DENSE_VECTOR,
    DOCUMENT_FIELD,
    FILE_TYPE_FIELD,
    INDEXED_AT_FIELD,
    KEYWORD_FIELDS,
    METADATA_FIELD,
    PATH_PREFIXES_FIELD,
    PRINCIPALS_FIELD,
    PUBLIC_PRINCIPAL,
    SPARSE_VECTOR,
    TENANT_FIELD,
    VERSION_FIELD,
    ChunkPoint,
    DocumentVersion,
    Fusion,
    HybridQuery,
    SearchFilter,
    SearchHit,
    StoredPoint,
    dense_scores,
    one_version_each,
)
from core.vectorstore.layout import FULL_SCAN_THRESHOLD_KB, edge_dimension


class EdgeVectorStore:
    """qdrant-edge shard; it locks its folder, so exactly one process may own it."""

    def __init__(
        self,
        *,
        path: Path,
        dimension: int,
        lexical: LexicalEncoder,
        layout: CollectionSettings | None = None,
    ) -> None:
        self._path = path
        self._dimension = dimension
        self._lexical = lexical
        self._layout = layout or CollectionSettings()
        self._dense_params = dense_search_params(self._layout)
        self._shard: Any = None
        # The shard serialises updates itself; the lock keeps open/close and bulk writes atomic.
        self._lock = threading.RLock()

    def ensure_collection(self) -> None:
        with self._lock:
            if self._shard is not None:
                return
            if (self._path / "segments").exists() or any(self._path.glob("*")):
                stored = edge_dimension(self._path, DENSE_VECTOR)
                if stored is not None and stored != self._dimension:
                    raise ValueError(
                        f"{self._path} holds {stored}-d vectors, not {self._dimension}-d"
                    )
                # Loaded as created: a config given here would be written over the stored one
                # and reach new segments only. A changed setting is reported by `ragkb check`.
                self._shard = qe.EdgeShard.load(str(self._path))
            else:
                self._path.mkdir(parents=True, exist_ok=True)
                self._shard = qe.EdgeShard.create(
                    str(self._path), edge_config(self._dimension, self._layout)
                )
            self._shard.update(
                qe.UpdateOperation.create_field_index(
                    TENANT_FIELD, qe.KeywordIndexParams(is_tenant=True)
                )
            )
            # The narrowing fields get no HNSW links of their own (`enable_hnsw`): a value such
            # as version "v1" or principal "*" covers most points, and with m=0 Qdrant would
            # otherwise build a payload_m graph over each such block (minutes per million).
            for field in KEYWORD_FIELDS:
                self._shard.update(
                    qe.UpdateOperation.create_field_index(
                        field, qe.KeywordIndexParams(enable_hnsw=False)
                    )
                )
            self._shard.update(
                qe.UpdateOperation.create_field_index(
                    INDEXED_AT_FIELD, qe.DatetimeIndexParams(enable_hnsw=False)
                )
            )

    @property
    def shard(self) -> Any:
        if self._shard is None:
            self.ensure_collection()
        return self._shard

    def upsert(self, points: Sequence[ChunkPoint]) -> None:
        if not points:
            return
        edge_points = self._edge_points(points)
        with self._lock:
            self.shard.update(qe.UpdateOperation.upsert_points(edge_points))
            self.shard.flush()

    def replace_documents(self, documents: Sequence[DocumentVersion]) -> None:
        if not documents:
            return
        one_version_each(documents)
        edge_points = self._edge_points([p for d in documents for p in d.points])
        with self._lock:
            if edge_points:
                self.shard.update(qe.UpdateOperation.upsert_points(edge_points))
            for document in documents:
                stale = _filter(
                    document.tenant_id,
                    document_id=document.document_id,
                    except_version=document.version,
                )
                self.shard.update(qe.UpdateOperation.delete_points_by_filter(stale))
            # One flush for the batch (it writes the segments to disk: ~0.15 s each).
            self.shard.flush()

    def _edge_points(self, points: Sequence[ChunkPoint]) -> list[Any]:
        return [
            qe.Point(
                p.point_id,
                {
                    DENSE_VECTOR: list(p.dense_vector),
                    SPARSE_VECTOR: _sparse(self._lexical.encode_document(p.lexical_text())),
                },
                p.full_payload(),
            )
            for p in points
        ]

    def search(
        self, *, tenant_id: str, query: HybridQuery, filters: SearchFilter | None = None
    ) -> list[SearchHit]:
        point_filter = _filter(tenant_id, filters=filters)
        # (query, fusion weight, search parameters); only the lexical ranking has corpus
        # statistics, so only it takes the IDF corpus.
        stages: list[tuple[Any, float, Any]] = []
        if query.dense is not None:
            stages.append(
                (
                    qe.Query.Nearest(list(query.dense), using=DENSE_VECTOR),
                    query.dense_weight,
                    self._dense_params,
                )
            )
        if query.sparse:
            stages.append(
                (
                    qe.Query.Nearest(_sparse(query.sparse), using=SPARSE_VECTOR),
                    query.sparse_weight,
                    _idf_params(tenant_id, filters),
                )
            )
        if not stages:
            return []
        if len(stages) == 1:
            request = qe.QueryRequest(
                limit=query.limit,
                query=stages[0][0],
                filter=point_filter,
                params=stages[0][2],
                with_payload=True,
                with_vector=[DENSE_VECTOR],
            )
        else:
            fusion: Any = (
                qe.Fusion.Rrf(k=query.rrf_k, weights=[w for _, w, _ in stages])
                if query.fusion is Fusion.RRF
                else qe.Fusion.Dbsf()
            )
            request = qe.QueryRequest(
                limit=query.limit,
                prefetches=[
                    qe.Prefetch(
                        limit=max(query.candidates, query.limit),
                        query=q,
                        filter=point_filter,
                        params=params,
                    )
                    for q, _, params in stages
                ],
                query=fusion,
                filter=point_filter,
                with_payload=True,
                with_vector=[DENSE_VECTOR],
            )
        hits = list(self.shard.query(request))
        vectors = [_dense_of(hit) for hit in hits]
        cosines = (
            dense_scores(query.dense, vectors) if query.dense is not None else [None] * len(hits)
        )
        return [
            SearchHit(
                point_id=str(hit.id),
                score=float(hit.score),
                payload=dict(hit.payload or {}),
                dense_score=cosine,
            )
            for hit, cosine in zip(hits, cosines, strict=True)
        ]

    def idf(
        self, *, tenant_id: str, terms: SparseVector, principals: tuple[str, ...] | None = None
    ) -> dict[int, float]:
        if not terms:
            return {}
        readable = SearchFilter(principals=principals)
        corpus = _corpus(tenant_id, readable)
        probes = [
            qe.QueryRequest(
                limit=1,
                query=qe.Query.Nearest(qe.SparseVector([index], [1.0]), using=SPARSE_VECTOR),
                filter=corpus,
                params=_idf_params(tenant_id, readable),
                with_payload=False,
                with_vector=[SPARSE_VECTOR],
            )
            for index in terms.indices
        ]
        found: dict[int, float] = {}
        for index, hits in zip(
            terms.indices, self.shard.query_batch(qe.QueryBatchRequest(probes)), strict=True
        ):
            weight = _term_weight(hits[0].vector, index) if hits else None
            if weight:
                found[index] = float(hits[0].score) / weight
        return found

    def delete_document(
        self, *, tenant_id: str, document_id: str, keep_version: str | None = None
    ) -> None:
        delete_filter = _filter(tenant_id, document_id=document_id, except_version=keep_version)
        with self._lock:
            self.shard.update(qe.UpdateOperation.delete_points_by_filter(delete_filter))
            self.shard.flush()

    def count(
        self, *, tenant_id: str, document_id: str | None = None, version: str | None = None
    ) -> int:
        request = qe.CountRequest(
            exact=True, filter=_filter(tenant_id, document_id=document_id, version=version)
        )
        return int(self.shard.count(request))

    def document_counts(self, *, tenant_id: str) -> dict[str, int]:
        request = qe.FacetRequest(
            DOCUMENT_FIELD, limit=2**31 - 1, exact=True, filter=_filter(tenant_id)
        )
        return {str(hit.value): int(hit.count) for hit in self.shard.facet(request)}

    def scroll(
        self,
        *,
        tenant_id: str,
        document_id: str | None = None,
        offset: str | None = None,
        limit: int = 256,
    ) -> tuple[list[StoredPoint], str | None]:
        request = qe.ScrollRequest(
            offset=offset,
            limit=limit,
            filter=_filter(tenant_id, document_id=document_id),
            with_payload=True,
            with_vector=False,
        )
        records, next_offset = self.shard.scroll(request)
        points = [StoredPoint(str(r.id), dict(r.payload or {})) for r in records]
        return points, None if next_offset is None else str(next_offset)

    def publish_alias(self, alias: str) -> None:
        """qdrant-edge has no aliases: the `vector_indexes` row is the only pointer."""

    def drop(self) -> None:
        with self._lock:
            self.close()
            shutil.rmtree(self._path, ignore_errors=True)

    def close(self) -> None:
        with self._lock:
            if self._shard is not None:
                self._shard.flush()
                self._shard.close()
                self._shard = None


def edge_config(dimension: int, layout: CollectionSettings) -> Any:
    """The qdrant-edge config of a new ragkb store under `layout` (shards and replication do
    not apply: one local shard)."""
    quantization = (
        qe.ScalarQuantizationConfig(
            qe.ScalarType.Int8,
            quantile=layout.quantization_quantile,
            always_ram=layout.quantization_always_ram,
        )
        if layout.quantization is Quantization.INT8
        else None
    )
    return qe.EdgeConfig(
        vectors={
            DENSE_VECTOR: qe.EdgeVectorParams(
                dimension, qe.Distance.Cosine, on_disk=layout.vectors_on_disk
            )
        },
        # Qdrant computes IDF over the points at query time: the BM25 weights stay exact as
        # documents come and go, with no corpus statistics kept by ragkb. Every query narrows
        # the IDF corpus to the caller's readable points (`_corpus`).
        sparse_vectors={SPARSE_VECTOR: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
        on_disk_payload=layout.payload_on_disk,
        hnsw_config=qe.HnswIndexConfig(
            m=layout.hnsw_m,
            ef_construct=layout.hnsw_ef_construct,
            full_scan_threshold=FULL_SCAN_THRESHOLD_KB,
            payload_m=layout.hnsw_payload_m,
        ),
        quantization_config=quantization,
    )


def dense_search_params(layout: CollectionSettings) -> Any:
    """Oversample the int8 candidates and rescore them with the originals (None: no
    quantization)."""
    if layout.quantization is Quantization.NONE:
        return None
    return qe.SearchParams(
        quantization=qe.QuantizationSearchParams(
            rescore=layout.rescore, oversampling=layout.oversampling
        )
    )


def _sparse(vector: SparseVector) -> Any:
    return qe.SparseVector(list(vector.indices), list(vector.values))


def _term_weight(vector: Any, index: int) -> float | None:
    sparse = vector.get(SPARSE_VECTOR) if isinstance(vector, dict) else None
    if sparse is None:
        return None
    return dict(zip(sparse.indices, sparse.values, strict=True)).get(index)


def _dense_of(hit: Any) -> list[float] | None:
    vector = hit.vector
    if isinstance(vector, dict):
        dense = vector.get(DENSE_VECTOR)
        return list(dense) if dense is not None else None
    return None


def _idf_params(tenant_id: str, filters: SearchFilter | None) -> Any:
    """Search parameters that count BM25's IDF over the caller's corpus, not the collection."""
    return qe.SearchParams(idf=qe.IdfParams(corpus=_corpus(tenant_id, filters)))


def _corpus(tenant_id: str, filters: SearchFilter | None) -> Any:
    """The points whose statistics a query may see: the tenant's that its end user may read.

    Without it Qdrant counts every tenant's points, and a tenant's scores moved as another
    tenant uploaded (a probe for whether others hold a term). The request's other filters
    (path, type, metadata) are narrowing, not a boundary: they do not change the statistics.
    """
    principals = filters.principals if filters is not None else None
    return _filter(tenant_id, filters=SearchFilter(principals=principals))


def _filter(
    tenant_id: str,
    *,
    document_id: str | None = None,
    version: str | None = None,
    except_version: str | None = None,
    filters: SearchFilter | None = None,
) -> Any:
    if not tenant_id:
        raise ValueError("a tenant id is required for every vector-store call")
    must: list[Any] = [qe.FieldCondition(TENANT_FIELD, match=qe.MatchValue(tenant_id))]
    if document_id is not None:
        must.append(qe.FieldCondition(DOCUMENT_FIELD, match=qe.MatchValue(document_id)))
    if version is not None:
        must.append(qe.FieldCondition(VERSION_FIELD, match=qe.MatchValue(version)))
    if filters is not None:
        must.extend(_search_conditions(filters))
    must_not: list[Any] | None = None
    if except_version is not None:
        must_not = [qe.FieldCondition(VERSION_FIELD, match=qe.MatchValue(except_version))]
    return qe.Filter(must=must, must_not=must_not)


def _search_conditions(filters: SearchFilter) -> list[Any]:
    conditions: list[Any] = []
    if filters.document_ids:
        conditions.append(
            qe.FieldCondition(DOCUMENT_FIELD, match=qe.MatchAny(list(filters.document_ids)))
        )
    if filters.path_prefix:
        conditions.append(
            qe.FieldCondition(PATH_PREFIXES_FIELD, match=qe.MatchValue(filters.path_prefix))
        )
    if filters.file_types:
        conditions.append(
            qe.FieldCondition(FILE_TYPE_FIELD, match=qe.MatchAny(list(filters.file_types)))
        )
    if filters.indexed_after or filters.indexed_before:
        conditions.append(
            qe.FieldCondition(
                INDEXED_AT_FIELD,
                range=qe.RangeDateTime(
                    gte=filters.indexed_after.isoformat() if filters.indexed_after else None,
                    lt=filters.indexed_before.isoformat() if filters.indexed_before else None,
                ),
            )
        )
    for key, value in sorted(filters.metadata.items()):
        conditions.append(qe.FieldCondition(f"{METADATA_FIELD}.{key}", match=qe.MatchValue(value)))
    if filters.principals is not None:
        allowed = sorted({*filters.principals, PUBLIC_PRINCIPAL})
        conditions.append(qe.FieldCondition(PRINCIPALS_FIELD, match=qe.MatchAny(allowed)))
    return conditions
