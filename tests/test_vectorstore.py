"""One conformance suite for every VectorStore implementation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.vectorstore import ChunkPoint, VectorStore
from core.vectorstore.edge import EdgeVectorStore
from core.vectorstore.qdrant_server import QdrantServerVectorStore
from ingest.identity import point_id_for

DIM = 4


@pytest.fixture(params=["edge", "qdrant-client-local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    built: VectorStore
    if request.param == "edge":
        built = EdgeVectorStore(path=tmp_path / "edge", dimension=DIM)
    else:
        built = QdrantServerVectorStore(collection="chunks", dimension=DIM, path=tmp_path / "local")
    built.ensure_collection()
    yield built
    built.close()


def point(tenant: str, doc: str, version: str, index: int, vector: list[float]) -> ChunkPoint:
    return ChunkPoint(
        point_id=point_id_for(tenant, doc, version, index),
        tenant_id=tenant,
        document_id=doc,
        version=version,
        dense_vector=vector,
        payload={"text": f"{tenant}/{doc}/{version}/{index}", "chunk_index": index},
    )


def test_ensure_collection_is_idempotent(store: VectorStore) -> None:
    store.ensure_collection()
    store.ensure_collection()
    assert store.count(tenant_id="t1") == 0


def test_search_sees_only_the_callers_tenant(store: VectorStore) -> None:
    store.upsert(
        [
            point("t1", "d1", "v1", 0, [1, 0, 0, 0]),
            point("t1", "d1", "v1", 1, [0, 1, 0, 0]),
            point("t2", "d9", "v1", 0, [1, 0, 0, 0]),
        ]
    )
    hits = store.search_dense(tenant_id="t1", vector=[1, 0, 0, 0], limit=10)
    assert [h.payload["text"] for h in hits] == ["t1/d1/v1/0", "t1/d1/v1/1"]
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert all(h.payload["tenant_id"] == "t1" for h in hits)
    assert [
        h.payload["text"] for h in store.search_dense(tenant_id="t2", vector=[0, 1, 0, 0], limit=10)
    ] == ["t2/d9/v1/0"]
    assert store.search_dense(tenant_id="nobody", vector=[1, 0, 0, 0], limit=10) == []


def test_upsert_with_the_same_ids_does_not_duplicate(store: VectorStore) -> None:
    batch = [point("t1", "d1", "v1", i, [1, i, 0, 0]) for i in range(3)]
    store.upsert(batch)
    store.upsert(batch)
    assert store.count(tenant_id="t1") == 3


def test_delete_document_keeps_other_documents_tenants_and_the_kept_version(
    store: VectorStore,
) -> None:
    store.upsert(
        [
            point("t1", "d1", "old", 0, [1, 0, 0, 0]),
            point("t1", "d1", "old", 1, [1, 1, 0, 0]),
            point("t1", "d1", "new", 0, [1, 0, 1, 0]),
            point("t1", "d2", "v1", 0, [0, 0, 0, 1]),
            point("t2", "d1", "old", 0, [1, 0, 0, 0]),
        ]
    )
    store.delete_document(tenant_id="t1", document_id="d1", keep_version="new")
    assert store.count(tenant_id="t1", document_id="d1") == 1
    assert store.count(tenant_id="t1", document_id="d2") == 1
    assert store.count(tenant_id="t2") == 1
    store.delete_document(tenant_id="t1", document_id="d1")
    assert store.count(tenant_id="t1", document_id="d1") == 0
    assert store.count(tenant_id="t2", document_id="d1") == 1


def test_a_tenant_is_required(store: VectorStore) -> None:
    with pytest.raises(ValueError, match="tenant"):
        store.search_dense(tenant_id="", vector=[1, 0, 0, 0], limit=1)
    with pytest.raises(ValueError, match="tenant"):
        store.delete_document(tenant_id="", document_id="d1")


def test_data_survives_reopening(tmp_path: Path) -> None:
    first = EdgeVectorStore(path=tmp_path / "edge", dimension=DIM)
    first.upsert([point("t1", "d1", "v1", 0, [1, 0, 0, 0])])
    first.close()
    second = EdgeVectorStore(path=tmp_path / "edge", dimension=DIM)
    assert second.count(tenant_id="t1") == 1
    second.close()
