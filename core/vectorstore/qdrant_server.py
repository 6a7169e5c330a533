"""Qdrant reached through qdrant-client: a server URL in production, local mode in tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from qdrant_client import QdrantClient, models

from core.vectorstore import (
    DENSE_VECTOR,
    DOCUMENT_FIELD,
    TENANT_FIELD,
    VERSION_FIELD,
    ChunkPoint,
    SearchHit,
)


class QdrantServerVectorStore:
    """One collection per embedding model; the tenant id is a tenant-optimised payload index."""

    def __init__(
        self,
        *,
        collection: str,
        dimension: int,
        url: str | None = None,
        api_key: str | None = None,
        path: Path | None = None,
    ) -> None:
        if (url is None) == (path is None):
            raise ValueError("give exactly one of a Qdrant URL or a local-mode path")
        self._collection = collection
        self._dimension = dimension
        if url is not None:
            self._client = QdrantClient(url=url, api_key=api_key)
        else:
            self._client = QdrantClient(path=str(path))

    def ensure_collection(self) -> None:
        if not self._client.collection_exists(self._collection):
            try:
                self._client.create_collection(
                    self._collection,
                    vectors_config={
                        DENSE_VECTOR: models.VectorParams(
                            size=self._dimension, distance=models.Distance.COSINE
                        )
                    },
                )
            except Exception:
                # Another replica may have created it between our check and our call.
                if not self._client.collection_exists(self._collection):
                    raise
        self._client.create_payload_index(
            self._collection,
            TENANT_FIELD,
            models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True),
        )
        for field in (DOCUMENT_FIELD, VERSION_FIELD):
            self._client.create_payload_index(
                self._collection, field, models.PayloadSchemaType.KEYWORD
            )

    def upsert(self, points: Sequence[ChunkPoint]) -> None:
        if not points:
            return
        self._client.upsert(
            self._collection,
            points=[
                models.PointStruct(
                    id=p.point_id,
                    vector={DENSE_VECTOR: list(p.dense_vector)},
                    payload=p.full_payload(),
                )
                for p in points
            ],
            wait=True,
        )

    def search_dense(
        self, *, tenant_id: str, vector: Sequence[float], limit: int
    ) -> list[SearchHit]:
        response = self._client.query_points(
            self._collection,
            query=list(vector),
            using=DENSE_VECTOR,
            query_filter=_filter(tenant_id),
            limit=limit,
            with_payload=True,
        )
        return [
            SearchHit(point_id=str(p.id), score=float(p.score), payload=dict(p.payload or {}))
            for p in response.points
        ]

    def delete_document(
        self, *, tenant_id: str, document_id: str, keep_version: str | None = None
    ) -> None:
        self._client.delete(
            self._collection,
            points_selector=models.FilterSelector(
                filter=_filter(tenant_id, document_id=document_id, except_version=keep_version)
            ),
            wait=True,
        )

    def count(self, *, tenant_id: str, document_id: str | None = None) -> int:
        result = self._client.count(
            self._collection, count_filter=_filter(tenant_id, document_id=document_id), exact=True
        )
        return result.count

    def close(self) -> None:
        self._client.close()


def _filter(
    tenant_id: str, *, document_id: str | None = None, except_version: str | None = None
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
    must_not: list[models.Condition] | None = None
    if except_version is not None:
        must_not = [
            models.FieldCondition(key=VERSION_FIELD, match=models.MatchValue(value=except_version))
        ]
    return models.Filter(must=must, must_not=must_not)
