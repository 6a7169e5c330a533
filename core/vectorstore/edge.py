"""Embedded store: Qdrant's own engine in-process (qdrant-edge), one shard on disk."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from core.vectorstore import (
    DENSE_VECTOR,
    DOCUMENT_FIELD,
    TENANT_FIELD,
    VERSION_FIELD,
    ChunkPoint,
    SearchHit,
)


class EdgeVectorStore:
    """qdrant-edge shard; it locks its folder, so exactly one process may own it."""

    def __init__(self, *, path: Path, dimension: int) -> None:
        self._path = path
        self._dimension = dimension
        self._shard: Any = None
        # The shard serialises updates itself; the lock keeps open/close and bulk writes atomic.
        self._lock = threading.RLock()

    def ensure_collection(self) -> None:
        with self._lock:
            if self._shard is not None:
                return
            config = qe.EdgeConfig(
                vectors={DENSE_VECTOR: qe.EdgeVectorParams(self._dimension, qe.Distance.Cosine)}
            )
            if (self._path / "segments").exists() or any(self._path.glob("*")):
                self._shard = qe.EdgeShard.load(str(self._path), config)
            else:
                self._path.mkdir(parents=True, exist_ok=True)
                self._shard = qe.EdgeShard.create(str(self._path), config)
            self._shard.update(
                qe.UpdateOperation.create_field_index(
                    TENANT_FIELD, qe.KeywordIndexParams(is_tenant=True)
                )
            )
            for field in (DOCUMENT_FIELD, VERSION_FIELD):
                self._shard.update(
                    qe.UpdateOperation.create_field_index(field, qe.PayloadSchemaType.Keyword)
                )

    @property
    def shard(self) -> Any:
        if self._shard is None:
            self.ensure_collection()
        return self._shard

    def upsert(self, points: Sequence[ChunkPoint]) -> None:
        if not points:
            return
        edge_points = [
            qe.Point(p.point_id, {DENSE_VECTOR: list(p.dense_vector)}, p.full_payload())
            for p in points
        ]
        with self._lock:
            self.shard.update(qe.UpdateOperation.upsert_points(edge_points))
            self.shard.flush()

    def search_dense(
        self, *, tenant_id: str, vector: Sequence[float], limit: int
    ) -> list[SearchHit]:
        request = qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(list(vector), using=DENSE_VECTOR),
            filter=_filter(tenant_id),
            with_payload=True,
        )
        return [
            SearchHit(point_id=str(hit.id), score=float(hit.score), payload=dict(hit.payload or {}))
            for hit in self.shard.query(request)
        ]

    def delete_document(
        self, *, tenant_id: str, document_id: str, keep_version: str | None = None
    ) -> None:
        delete_filter = _filter(tenant_id, document_id=document_id, except_version=keep_version)
        with self._lock:
            self.shard.update(qe.UpdateOperation.delete_points_by_filter(delete_filter))
            self.shard.flush()

    def count(self, *, tenant_id: str, document_id: str | None = None) -> int:
        request = qe.CountRequest(exact=True, filter=_filter(tenant_id, document_id=document_id))
        return int(self.shard.count(request))

    def close(self) -> None:
        with self._lock:
            if self._shard is not None:
                self._shard.flush()
                self._shard.close()
                self._shard = None


def _filter(
    tenant_id: str, *, document_id: str | None = None, except_version: str | None = None
) -> Any:
    if not tenant_id:
        raise ValueError("a tenant id is required for every vector-store call")
    must: list[Any] = [qe.FieldCondition(TENANT_FIELD, match=qe.MatchValue(tenant_id))]
    if document_id is not None:
        must.append(qe.FieldCondition(DOCUMENT_FIELD, match=qe.MatchValue(document_id)))
    must_not: list[Any] | None = None
    if except_version is not None:
        must_not = [qe.FieldCondition(VERSION_FIELD, match=qe.MatchValue(except_version))]
    return qe.Filter(must=must, must_not=must_not)
