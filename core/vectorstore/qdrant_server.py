"""Qdrant reached through qdrant-client: a server URL in production, local mode in tests."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import httpx
from qdrant_client import QdrantClient, models
from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

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
    VectorStoreUnavailable,
    dense_scores,
    one_version_each,
)
from core.vectorstore.layout import FULL_SCAN_THRESHOLD_KB, Layout
from core.vectorstore.tiers import FALLBACK_SHARD_KEY, shard_key_of

_P = ParamSpec("_P")
_R = TypeVar("_R")
# Answers of a server (or of the proxy or load balancer before it) that is down or overloaded.
_OUTAGE_STATUSES = frozenset({429, 502, 503, 504})


def _outage_is_unavailable(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """qdrant-client's errors for a server that cannot be reached become VectorStoreUnavailable
    (a ConnectionError), so callers retry an outage and nothing else: a bad request or a
    response that does not parse stays what it is."""

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except ResponseHandlingException as exc:
            if isinstance(exc.source, httpx.TransportError):
                raise VectorStoreUnavailable(f"Qdrant unreachable: {exc.source!r}") from exc
            raise
        except httpx.TransportError as exc:
            raise VectorStoreUnavailable(f"Qdrant unreachable: {exc!r}") from exc
        except ResourceExhaustedResponse as exc:
            raise VectorStoreUnavailable(f"Qdrant overloaded: {exc.message}") from exc
        except UnexpectedResponse as exc:
            if exc.status_code in _OUTAGE_STATUSES:
                raise VectorStoreUnavailable(f"Qdrant answered {exc.status_code}") from exc
            raise

    return wrapper


# The first Qdrant that computes IDF over a corpus filter (`SearchParams.idf`); the bundled
# server is v1.19.1 (deploy/helm/ragkb/values.yaml).
MIN_QDRANT_VERSION = (1, 19)


def require_per_tenant_idf(version: str) -> None:
    """Refuse a Qdrant older than 1.19: it would not scope IDF to the tenant, and every lexical
    score would then depend on the other tenants' documents (their term statistics).

    Raises RuntimeError naming the version found.
    """
    parts = version.split("-")[0].split(".")
    try:
        found = (int(parts[0]), int(parts[1]))
    except (IndexError, ValueError):
        raise RuntimeError(f"cannot read the Qdrant version {version!r}") from None
    if found < MIN_QDRANT_VERSION:
        raise RuntimeError(
            f"Qdrant {version} cannot count IDF per tenant; ragkb needs Qdrant >= "
            + ".".join(map(str, MIN_QDRANT_VERSION))
        )


class QdrantServerVectorStore:
    """One collection per embedding model; the tenant id is a tenant-optimised payload index."""

    def __init__(
        self,
        *,
        collection: str,
        dimension: int,
        lexical: LexicalEncoder,
        url: str | None = None,
        api_key: str | None = None,
        path: Path | None = None,
        client: QdrantClient | None = None,
        layout: CollectionSettings | None = None,
    ) -> None:
        if sum(x is not None for x in (url, path, client)) != 1:
            raise ValueError("give exactly one of a Qdrant URL, a local-mode path or a client")
        self._collection = collection
        self._dimension = dimension
        self._lexical = lexical
        self._layout = layout or CollectionSettings()
        # With custom sharding every call names the tenant's shard key (fallback: the shared one).
        self._tiered = self._layout.tiered_multitenancy
        # A shared client belongs to the caller (local mode locks its folder to one client, so
        # every collection of a process goes through the same one).
        self._owns_client = client is None
        if client is not None:
            self._client = client
        elif url is not None:
            self._client = QdrantClient(url=url, api_key=api_key)
        else:
            self._client = QdrantClient(path=str(path))
        # Local mode searches exactly and warns on any search parameter but IDF's; it takes
        # shard key selectors but has no shard keys (it ignores them).
        self._local = _is_local(self._client)
        self._dense_params = None if self._local else dense_search_params(self._layout)

    @_outage_is_unavailable
    def ensure_collection(self) -> None:
        require_per_tenant_idf(self._client.info().version)
        if not self._client.collection_exists(self._collection):
            try:
                self._client.create_collection(
                    self._collection, **create_collection_args(self._dimension, self._layout)
                )
            except Exception:
                # Another replica may have created it between our check and our call.
                if not self._client.collection_exists(self._collection):
                    raise
            if self._tiered and not self._local:
                self._ensure_fallback_shard()
        self._client.create_payload_index(
            self._collection,
            TENANT_FIELD,
            models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True),
        )
        # Narrowing fields get no HNSW links of their own (see the embedded store).
        for field in KEYWORD_FIELDS:
            self._client.create_payload_index(
                self._collection,
                field,
                models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, enable_hnsw=False),
            )
        self._client.create_payload_index(
            self._collection,
            INDEXED_AT_FIELD,
            models.DatetimeIndexParams(type=models.DatetimeIndexType.DATETIME, enable_hnsw=False),
        )

    def _ensure_fallback_shard(self) -> None:
        existing = {
            k.key for k in (self._client.list_shard_keys(self._collection).shard_keys or [])
        }
        if FALLBACK_SHARD_KEY not in existing:
            # Another replica may create it first.
            with contextlib.suppress(UnexpectedResponse):
                self._client.create_shard_key(self._collection, FALLBACK_SHARD_KEY)

    def _shard(self, tenant_id: str) -> models.ShardKeyWithFallback | None:
        """Where a tenant's points live: its own shard key once promoted, else the shared one
        (Qdrant picks; None without tiered multitenancy)."""
        return shard_key_of(tenant_id) if self._tiered else None

    @_outage_is_unavailable
    def upsert(self, points: Sequence[ChunkPoint]) -> None:
        if not points:
            return
        # One request per tenant: a request has one shard key.
        by_tenant: dict[str, list[ChunkPoint]] = {}
        for point in points:
            by_tenant.setdefault(point.tenant_id, []).append(point)
        for tenant_id, tenant_points in by_tenant.items():
            self._client.upsert(
                self._collection,
                points=[
                    models.PointStruct(
                        id=p.point_id,
                        vector={
                            DENSE_VECTOR: list(p.dense_vector),
                            SPARSE_VECTOR: _sparse(self._lexical.encode_document(p.lexical_text())),
                        },
                        payload=p.full_payload(),
                    )
                    for p in tenant_points
                ],
                wait=True,
                shard_key_selector=self._shard(tenant_id),
            )

    @_outage_is_unavailable
    def replace_documents(self, documents: Sequence[DocumentVersion]) -> None:
        if not documents:
            return
        one_version_each(documents)
        self.upsert([p for d in documents for p in d.points])
        # One delete per tenant for the whole batch: each document loses every other version.
        by_tenant: dict[str, list[DocumentVersion]] = {}
        for document in documents:
            by_tenant.setdefault(document.tenant_id, []).append(document)
        for tenant_id, tenant_documents in by_tenant.items():
            stale: list[models.Condition] = [
                models.Filter(
                    must=[
                        models.FieldCondition(
                            key=DOCUMENT_FIELD, match=models.MatchValue(value=d.document_id)
                        )
                    ],
                    must_not=[
                        models.FieldCondition(
                            key=VERSION_FIELD, match=models.MatchValue(value=d.version)
                        )
                    ],
                )
                for d in tenant_documents
            ]
            delete_filter = _filter(tenant_id)
            delete_filter.should = stale
            self._client.delete(
                self._collection,
                points_selector=models.FilterSelector(filter=delete_filter),
                wait=True,
                shard_key_selector=self._shard(tenant_id),
            )

    @_outage_is_unavailable
    def search(
        self, *, tenant_id: str, query: HybridQuery, filters: SearchFilter | None = None
    ) -> list[SearchHit]:
        point_filter = _filter(tenant_id, filters=filters)
        stages: list[tuple[models.Prefetch, float]] = []
        if query.dense is not None:
            stages.append(
                (
                    models.Prefetch(
                        query=list(query.dense),
                        using=DENSE_VECTOR,
                        limit=max(query.candidates, query.limit),
                        filter=point_filter,
                        params=self._dense_params,
                    ),
                    query.dense_weight,
                )
            )
        if query.sparse:
            stages.append(
                (
                    models.Prefetch(
                        query=_sparse(query.sparse),
                        using=SPARSE_VECTOR,
                        limit=max(query.candidates, query.limit),
                        filter=point_filter,
                        # Only the lexical ranking has corpus statistics.
                        params=_idf_params(tenant_id, filters),
                    ),
                    query.sparse_weight,
                )
            )
        if not stages:
            return []
        if len(stages) == 1:
            only = stages[0][0]
            response = self._client.query_points(
                self._collection,
                query=only.query,
                using=only.using,
                query_filter=point_filter,
                search_params=only.params,
                limit=query.limit,
                with_payload=True,
                with_vectors=[DENSE_VECTOR],
                shard_key_selector=self._shard(tenant_id),
            )
        else:
            fusion: models.Query = (
                models.RrfQuery(rrf=models.Rrf(k=query.rrf_k, weights=[w for _, w in stages]))
                if query.fusion is Fusion.RRF
                else models.FusionQuery(fusion=models.Fusion.DBSF)
            )
            response = self._client.query_points(
                self._collection,
                prefetch=[p for p, _ in stages],
                query=fusion,
                query_filter=point_filter,
                limit=query.limit,
                with_payload=True,
                with_vectors=[DENSE_VECTOR],
                shard_key_selector=self._shard(tenant_id),
            )
        points = response.points
        vectors = [_dense_of(p) for p in points]
        cosines = (
            dense_scores(query.dense, vectors) if query.dense is not None else [None] * len(points)
        )
        return [
            SearchHit(
                point_id=str(p.id),
                score=float(p.score),
                payload=dict(p.payload or {}),
                dense_score=cosine,
            )
            for p, cosine in zip(points, cosines, strict=True)
        ]

    @_outage_is_unavailable
    def idf(
        self, *, tenant_id: str, terms: SparseVector, principals: tuple[str, ...] | None = None
    ) -> dict[int, float]:
        if not terms:
            return {}
        readable = SearchFilter(principals=principals)
        probes = [
            models.QueryRequest(
                query=models.SparseVector(indices=[index], values=[1.0]),
                using=SPARSE_VECTOR,
                filter=_corpus(tenant_id, readable),
                params=_idf_params(tenant_id, readable),
                limit=1,
                with_payload=False,
                with_vector=[SPARSE_VECTOR],
                shard_key=self._shard(tenant_id),
            )
            for index in terms.indices
        ]
        found: dict[int, float] = {}
        responses = self._client.query_batch_points(self._collection, requests=probes)
        for index, response in zip(terms.indices, responses, strict=True):
            hit = response.points[0] if response.points else None
            weight = _term_weight(hit, index) if hit is not None else None
            if hit is not None and weight:
                found[index] = float(hit.score) / weight
        return found

    @_outage_is_unavailable
    def delete_document(
        self, *, tenant_id: str, document_id: str, keep_version: str | None = None
    ) -> None:
        self._client.delete(
            self._collection,
            points_selector=models.FilterSelector(
                filter=_filter(tenant_id, document_id=document_id, except_version=keep_version)
            ),
            wait=True,
            shard_key_selector=self._shard(tenant_id),
        )

    @_outage_is_unavailable
    def count(
        self, *, tenant_id: str, document_id: str | None = None, version: str | None = None
    ) -> int:
        result = self._client.count(
            self._collection,
            count_filter=_filter(tenant_id, document_id=document_id, version=version),
            exact=True,
            shard_key_selector=self._shard(tenant_id),
        )
        return result.count

    @_outage_is_unavailable
    def document_counts(self, *, tenant_id: str) -> dict[str, int]:
        response = self._client.facet(
            self._collection,
            DOCUMENT_FIELD,
            facet_filter=_filter(tenant_id),
            limit=2**31 - 1,
            exact=True,
            shard_key_selector=self._shard(tenant_id),
        )
        return {str(hit.value): int(hit.count) for hit in response.hits}

    @_outage_is_unavailable
    def scroll(
        self,
        *,
        tenant_id: str,
        document_id: str | None = None,
        offset: str | None = None,
        limit: int = 256,
    ) -> tuple[list[StoredPoint], str | None]:
        records, next_offset = self._client.scroll(
            self._collection,
            scroll_filter=_filter(tenant_id, document_id=document_id),
            offset=offset,
            limit=limit,
            with_payload=True,
            with_vectors=False,
            shard_key_selector=self._shard(tenant_id),
        )
        points = [StoredPoint(str(r.id), dict(r.payload or {})) for r in records]
        return points, None if next_offset is None else str(next_offset)

    @_outage_is_unavailable
    def publish_alias(self, alias: str) -> None:
        """Move `alias` to this collection in one Qdrant operation (delete + create together).

        ragkb itself queries the concrete collection of its active model (an alias says nothing
        about the model that must embed the query); the alias is for tools and dashboards.
        """
        current = {a.alias_name for a in self._client.get_aliases().aliases}
        actions: list[models.AliasOperations] = []
        if alias in current:
            actions.append(
                models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))
            )
        actions.append(
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=self._collection, alias_name=alias)
            )
        )
        self._client.update_collection_aliases(change_aliases_operations=actions)

    @_outage_is_unavailable
    def drop(self) -> None:
        if self._client.collection_exists(self._collection):
            self._client.delete_collection(self._collection)
        self.close()

    @_outage_is_unavailable
    def layout(self) -> Layout | None:
        """What the collection was created with (None if it does not exist), as
        `core.vectorstore.layout` compares it. qdrant-client local mode keeps none of these
        (it reports Qdrant's defaults): only a server's answer is meaningful."""
        if not self._client.collection_exists(self._collection):
            return None
        return server_layout(self._client.get_collection(self._collection))

    def close(self) -> None:
        if self._owns_client:
            self._client.close()


def create_collection_args(dimension: int, layout: CollectionSettings) -> dict[str, Any]:
    """The `create_collection` arguments of a ragkb collection under `layout`: dense cosine
    vectors and the IDF-weighted sparse vector, with the layout's shards, replication, on-disk,
    HNSW and quantization parameters."""
    quantization = (
        models.ScalarQuantization(
            scalar=models.ScalarQuantizationConfig(
                type=models.ScalarType.INT8,
                quantile=layout.quantization_quantile,
                always_ram=layout.quantization_always_ram,
            )
        )
        if layout.quantization is Quantization.INT8
        else None
    )
    return {
        "vectors_config": {
            DENSE_VECTOR: models.VectorParams(
                size=dimension, distance=models.Distance.COSINE, on_disk=layout.vectors_on_disk
            )
        },
        # IDF is computed by Qdrant over the stored points (BM25's corpus statistic), counted
        # per query over the caller's readable points only (`_corpus`).
        "sparse_vectors_config": {
            SPARSE_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)
        },
        "shard_number": layout.shards,
        "sharding_method": (models.ShardingMethod.CUSTOM if layout.tiered_multitenancy else None),
        "replication_factor": layout.replication_factor,
        "write_consistency_factor": layout.write_consistency_factor,
        "on_disk_payload": layout.payload_on_disk,
        "hnsw_config": models.HnswConfigDiff(
            m=layout.hnsw_m,
            ef_construct=layout.hnsw_ef_construct,
            payload_m=layout.hnsw_payload_m,
            full_scan_threshold=FULL_SCAN_THRESHOLD_KB,
        ),
        "quantization_config": quantization,
    }


def server_layout(info: models.CollectionInfo) -> Layout:
    """The comparable parameters of a collection as a Qdrant server reports them."""
    config = info.config
    params = config.params
    vectors = params.vectors
    dense = vectors.get(DENSE_VECTOR) if isinstance(vectors, dict) else vectors
    # A per-vector quantization overrides the collection's.
    quantization = (dense.quantization_config if dense else None) or config.quantization_config
    scalar = quantization.scalar if isinstance(quantization, models.ScalarQuantization) else None
    return {
        "vectors_on_disk": bool(dense.on_disk) if dense else False,
        "payload_on_disk": params.on_disk_payload is not False,
        "hnsw_m": config.hnsw_config.m,
        "hnsw_payload_m": config.hnsw_config.payload_m,
        "hnsw_ef_construct": config.hnsw_config.ef_construct,
        "quantization": scalar.type.value if scalar else Quantization.NONE.value,
        "quantization_quantile": scalar.quantile if scalar else None,
        "quantization_always_ram": scalar.always_ram if scalar else None,
        "shards": params.shard_number,
        "replication_factor": params.replication_factor,
        "write_consistency_factor": params.write_consistency_factor,
        "tiered_multitenancy": params.sharding_method is models.ShardingMethod.CUSTOM,
    }


def dense_search_params(layout: CollectionSettings) -> models.SearchParams | None:
    """The dense search's quantization handling: oversample the int8 candidates and rescore
    them with the original vectors (None without quantization)."""
    if layout.quantization is Quantization.NONE:
        return None
    return models.SearchParams(
        quantization=models.QuantizationSearchParams(
            rescore=layout.rescore, oversampling=layout.oversampling
        )
    )


def _is_local(client: QdrantClient) -> bool:
    """Whether the client is qdrant-client's local mode (an in-process brute-force engine)."""
    from qdrant_client.local.qdrant_local import QdrantLocal

    return isinstance(getattr(client, "_client", None), QdrantLocal)


def _sparse(vector: SparseVector) -> models.SparseVector:
    return models.SparseVector(indices=list(vector.indices), values=list(vector.values))


def _term_weight(point: models.ScoredPoint, index: int) -> float | None:
    vector = point.vector
    sparse = vector.get(SPARSE_VECTOR) if isinstance(vector, dict) else None
    if not isinstance(sparse, models.SparseVector):
        return None
    return dict(zip(sparse.indices, sparse.values, strict=True)).get(index)


def _dense_of(point: models.ScoredPoint) -> list[float] | None:
    vector = point.vector
    if isinstance(vector, dict):
        dense = vector.get(DENSE_VECTOR)
        if isinstance(dense, list) and dense and isinstance(dense[0], float):
            return [float(x) for x in dense]
    return None


def _idf_params(tenant_id: str, filters: SearchFilter | None) -> models.SearchParams:
    """Search parameters that count BM25's IDF over the caller's corpus, not the collection
    (Qdrant ≥ 1.19, checked by `ensure_collection`)."""
    return models.SearchParams(idf=models.IdfCorpusParams(corpus=_corpus(tenant_id, filters)))


def _corpus(tenant_id: str, filters: SearchFilter | None) -> models.Filter:
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
) -> models.Filter:
    if not tenant_id:
        raise ValueError("a tenant id is required for every vector-store call")
    must: list[models.Condition] = [
        models.FieldCondition(key=TENANT_FIELD, match=models.MatchValue(value=tenant_id))
    ]
    if document_id is not None:
        must.append(
            models.FieldCondition(key=DOCUMENT_FIELD, match=models.MatchValue(value=document_id))
        )
    if version is not None:
        must.append(
            models.FieldCondition(key=VERSION_FIELD, match=models.MatchValue(value=version))
        )
    if filters is not None:
        must.extend(_search_conditions(filters))
    must_not: list[models.Condition] | None = None
    if except_version is not None:
        must_not = [
            models.FieldCondition(key=VERSION_FIELD, match=models.MatchValue(value=except_version))
        ]
    return models.Filter(must=must, must_not=must_not)


def _search_conditions(filters: SearchFilter) -> list[models.Condition]:
    conditions: list[models.Condition] = []
    if filters.document_ids:
        conditions.append(
            models.FieldCondition(
                key=DOCUMENT_FIELD, match=models.MatchAny(any=list(filters.document_ids))
            )
        )
    if filters.path_prefix:
        conditions.append(
            models.FieldCondition(
                key=PATH_PREFIXES_FIELD, match=models.MatchValue(value=filters.path_prefix)
            )
        )
    if filters.file_types:
        conditions.append(
            models.FieldCondition(
                key=FILE_TYPE_FIELD, match=models.MatchAny(any=list(filters.file_types))
            )
        )
    if filters.indexed_after or filters.indexed_before:
        conditions.append(
            models.FieldCondition(
                key=INDEXED_AT_FIELD,
                range=models.DatetimeRange(gte=filters.indexed_after, lt=filters.indexed_before),
            )
        )
    for key, value in sorted(filters.metadata.items()):
        conditions.append(
            models.FieldCondition(
                key=f"{METADATA_FIELD}.{key}", match=models.MatchValue(value=value)
            )
        )
    if filters.principals is not None:
        allowed = sorted({*filters.principals, PUBLIC_PRINCIPAL})
        conditions.append(
            models.FieldCondition(key=PRINCIPALS_FIELD, match=models.MatchAny(any=allowed))
        )
    return conditions
