"""Collection parameters from settings: applied at creation, reported when they drift, and the
tiered-multitenancy routing and its refusal where no Qdrant server is configured."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from qdrant_client import QdrantClient, models
from typer.testing import CliRunner

from api.checks import run_checks
from core.lexical import LexicalEncoder
from core.settings import (
    CollectionSettings,
    LexicalSettings,
    Quantization,
    Settings,
    VectorStoreKind,
    VectorStoreSettings,
    get_settings,
)
from core.vectorstore import ChunkPoint, HybridQuery
from core.vectorstore.edge import EdgeVectorStore
from core.vectorstore.layout import desired_layout, edge_layout
from core.vectorstore.qdrant_server import QdrantServerVectorStore, create_collection_args
from core.vectorstore.tiers import (
    FALLBACK_SHARD_KEY,
    TieringUnsupported,
    key_is_active,
    promote_tenant,
    shard_key_of,
)

LEXICAL = LexicalEncoder(LexicalSettings())
DIM = 8
CUSTOM = CollectionSettings(
    vectors_on_disk=True,
    payload_on_disk=False,
    hnsw_m=0,
    hnsw_payload_m=24,
    hnsw_ef_construct=64,
    quantization=Quantization.INT8,
    quantization_quantile=0.95,
    quantization_always_ram=True,
)


def _point(tenant: str, i: int) -> ChunkPoint:
    vector = [float((i * 7 + j) % 5) + 0.1 for j in range(DIM)]
    return ChunkPoint(str(uuid.uuid4()), tenant, f"doc{i}", "v1", vector, {"text": f"chunk {i}"})


def test_the_embedded_store_is_created_with_the_configured_parameters(tmp_path: Path) -> None:
    store = EdgeVectorStore(path=tmp_path / "s", dimension=DIM, lexical=LEXICAL, layout=CUSTOM)
    store.ensure_collection()
    store.upsert([_point("t", i) for i in range(20)])
    # The engine takes the search-time quantization parameters (a segment this small is not
    # indexed yet, so it is searched exactly; bench/quantization.py measures indexed ones).
    query = HybridQuery(limit=1, dense=_point("t", 3).dense_vector)
    hits = store.search(tenant_id="t", query=query)
    assert hits[0].payload["text"] in {f"chunk {i}" for i in range(3, 20, 5)}
    store.close()
    assert edge_layout(tmp_path / "s") == desired_layout(CUSTOM, server=False)


def test_reopening_with_changed_settings_keeps_the_store_as_created(tmp_path: Path) -> None:
    EdgeVectorStore(path=tmp_path / "s", dimension=DIM, lexical=LEXICAL).ensure_collection()
    reopened = EdgeVectorStore(path=tmp_path / "s", dimension=DIM, lexical=LEXICAL, layout=CUSTOM)
    reopened.ensure_collection()
    reopened.close()
    assert edge_layout(tmp_path / "s") == desired_layout(CollectionSettings(), server=False)
    with pytest.raises(ValueError, match="8-d vectors, not 4-d"):
        EdgeVectorStore(path=tmp_path / "s", dimension=4, lexical=LEXICAL).ensure_collection()


def _check_row(settings: Settings) -> tuple[bool, str]:
    rows = {name: (ok, detail) for name, ok, detail in run_checks(settings)}
    return rows["collection parameters"]


def test_check_reports_a_setting_changed_after_the_collection_was_created(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path)
    assert _check_row(settings) == (True, "no collection yet")
    folder = settings.vector_store_path / "chunks__all-minilm-l6-v2"
    store = EdgeVectorStore(path=folder, dimension=DIM, lexical=LEXICAL)
    store.ensure_collection()
    store.close()
    assert _check_row(settings) == (True, "1 collection(s) as configured")

    changed = Settings(
        data_dir=tmp_path,
        vector_store=VectorStoreSettings(
            collection=CollectionSettings(hnsw_payload_m=32, quantization=Quantization.NONE)
        ),
    )
    ok, detail = _check_row(changed)
    assert not ok
    assert "chunks__all-minilm-l6-v2: hnsw_payload_m: collection 16, settings 32" in detail
    assert "quantization: collection 'int8', settings 'none'" in detail
    assert "ragkb reindex" in detail


def test_check_says_local_mode_keeps_no_parameters(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, vector_store=VectorStoreSettings(kind=VectorStoreKind.QDRANT)
    )
    ok, detail = _check_row(settings)
    assert ok
    assert "local mode keeps no collection parameters" in detail


def test_the_server_collection_request_carries_every_parameter() -> None:
    layout = CUSTOM.model_copy(
        update={"shards": 6, "replication_factor": 2, "write_consistency_factor": 2,
                "tiered_multitenancy": True}
    )  # fmt: skip
    args = create_collection_args(384, layout)
    dense = args["vectors_config"]["dense"]
    assert (dense.size, dense.on_disk) == (384, True)
    assert (args["shard_number"], args["replication_factor"]) == (6, 2)
    assert args["write_consistency_factor"] == 2
    assert args["sharding_method"] is models.ShardingMethod.CUSTOM
    assert args["on_disk_payload"] is False
    hnsw = args["hnsw_config"]
    assert (hnsw.m, hnsw.payload_m, hnsw.ef_construct) == (0, 24, 64)
    scalar = args["quantization_config"].scalar
    assert (scalar.type, scalar.quantile, scalar.always_ram) == (models.ScalarType.INT8, 0.95, True)
    assert (
        create_collection_args(384, CollectionSettings(quantization=Quantization.NONE))[
            "quantization_config"
        ]
        is None
    )


def test_local_mode_accepts_the_collection_request_and_searches(tmp_path: Path) -> None:
    client = QdrantClient(path=str(tmp_path / "local"))
    store = QdrantServerVectorStore(
        collection="c", dimension=DIM, lexical=LEXICAL, client=client, layout=CUSTOM
    )
    store.ensure_collection()
    store.upsert([_point("t", i) for i in range(5)])
    query = HybridQuery(limit=1, dense=_point("t", 2).dense_vector)
    hits = store.search(tenant_id="t", query=query)
    assert hits[0].payload["text"] == "chunk 2"
    client.close()


def test_every_call_of_a_tiered_store_is_well_formed_for_qdrant_client(tmp_path: Path) -> None:
    """Local mode takes (and ignores) shard key selectors: every read and write path of a
    tiered store runs through qdrant-client's request models here; the routing itself is the
    server's."""
    client = QdrantClient(path=str(tmp_path / "local"))
    tiered = CollectionSettings(tiered_multitenancy=True)
    store = QdrantServerVectorStore(
        collection="c", dimension=DIM, lexical=LEXICAL, client=client, layout=tiered
    )
    store.ensure_collection()
    points = [_point("a", i) for i in range(4)] + [_point("b", i) for i in range(3)]
    store.upsert(points)
    assert store.count(tenant_id="a") == 4
    assert store.document_counts(tenant_id="b") == {"doc0": 1, "doc1": 1, "doc2": 1}
    assert len(store.scroll(tenant_id="a")[0]) == 4
    terms = LEXICAL.encode_query("chunk")
    query = HybridQuery(limit=2, dense=points[0].dense_vector, sparse=terms)
    assert {h.payload["tenant_id"] for h in store.search(tenant_id="a", query=query)} == {"a"}
    assert store.idf(tenant_id="a", terms=terms)
    store.delete_document(tenant_id="a", document_id="doc0")
    assert store.count(tenant_id="a") == 3
    client.close()


def test_a_tenant_is_routed_to_its_own_shard_key_with_the_shared_one_as_fallback() -> None:
    selector = shard_key_of("acme")
    assert (selector.target, selector.fallback) == ("tenant-acme", FALLBACK_SHARD_KEY)
    assert shard_key_of("globex").target != selector.target
    with pytest.raises(ValueError, match="tenant id is required"):
        shard_key_of("")


def test_a_key_is_active_only_when_every_replica_is_and_no_transfer_runs() -> None:
    def cluster(states: list[models.ReplicaState], transfer: bool) -> models.CollectionClusterInfo:
        return models.CollectionClusterInfo(
            peer_id=1, shard_count=len(states) + 1,
            local_shards=[models.LocalShardInfo(shard_id=0, shard_key="shared", points_count=9,
                                                state=models.ReplicaState.ACTIVE)]
            + [models.LocalShardInfo(shard_id=1, shard_key="tenant-a", points_count=1, state=s)
               for s in states[:1]],
            remote_shards=[models.RemoteShardInfo(shard_id=1, shard_key="tenant-a", peer_id=2,
                                                  state=s) for s in states[1:]],
            shard_transfers=[models.ShardTransferInfo(shard_id=1, **{"from": 1}, to=2, sync=True,
                                                      method=None, comment=None)]
            if transfer else [],
        )  # fmt: skip

    active, partial = models.ReplicaState.ACTIVE, models.ReplicaState.PARTIAL
    assert key_is_active(cluster([active, active], transfer=False), "tenant-a")
    assert not key_is_active(cluster([active, partial], transfer=False), "tenant-a")
    assert not key_is_active(cluster([active, active], transfer=True), "tenant-a")
    assert not key_is_active(cluster([], transfer=False), "tenant-a")


def test_promotion_refuses_a_collection_without_custom_sharding(tmp_path: Path) -> None:
    client = QdrantClient(path=str(tmp_path / "local"))
    QdrantServerVectorStore(
        collection="c", dimension=DIM, lexical=LEXICAL, client=client
    ).ensure_collection()
    with pytest.raises(TieringUnsupported, match="not custom-sharded"):
        promote_tenant(client, "c", "acme")
    client.close()


@pytest.mark.parametrize(
    ("kind", "message"),
    [("embedded", "needs a Qdrant server"), ("qdrant", "needs a Qdrant server")],
)
def test_the_promote_command_refuses_the_embedded_store_and_local_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, message: str
) -> None:
    from api.cli import app as cli

    monkeypatch.setenv("RAGKB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RAGKB_VECTOR_STORE__KIND", kind)
    monkeypatch.setenv("RAGKB_VECTOR_STORE__COLLECTION__TIERED_MULTITENANCY", "true")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["tenant", "promote", "acme"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert message in " ".join(result.output.split())
