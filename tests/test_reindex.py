"""`ragkb reindex`: a new model's collection beside the old, caught up, switched; both stores."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from core.db import create_db_engine, create_session_factory, run_migrations
from core.embedding import Embedder, SentenceTransformerEmbedder
from core.index_set import IndexSet
from core.indexes import IndexSpec, ReindexConflictError, active_index, all_indexes, request_build
from core.lexical import LexicalEncoder
from core.models import Document, IndexState, Tenant, utcnow
from core.settings import LexicalSettings, Settings, VectorStoreKind, VectorStoreSettings
from core.tenancy import create_tenant
from core.vectorstore import ChunkPoint, HybridQuery, StoredPoint, VectorStore
from ingest.identity import document_id_for, point_id_for
from ingest.reindex import ReindexReport, build_and_catch_up, run_reindex

E5 = "multilingual-e5-small"


@pytest.fixture(params=["embedded", "qdrant-client-local"])
def store_settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    if request.param == "embedded":
        return settings
    return settings.model_copy(
        update={"vector_store": VectorStoreSettings(kind=VectorStoreKind.QDRANT)}
    )


class World:
    """Two tenants' documents in SQL rows and in the active (MiniLM) collection."""

    def __init__(self, settings: Settings, embedder: SentenceTransformerEmbedder) -> None:
        run_migrations(settings)
        self.engine = create_db_engine(settings)
        self.session_factory: sessionmaker[Session] = create_session_factory(self.engine)
        self.indexes = IndexSet(settings, self.session_factory, embedder=embedder)
        self.old = self.indexes.active()
        self.new = self.indexes.spec_for(E5)
        with self.session_factory() as session:
            self.tenants = [create_tenant(session, name=n).id for n in ("acme", "globex")]
            session.commit()

    def store(self, spec: IndexSpec) -> VectorStore:
        return self.indexes.store(spec)

    def put(
        self, tenant_id: str, path: str, chunks: list[str], principals: list[str] | None = None
    ) -> None:
        """A new version as ingest leaves it: points in the active store, then the row (the same
        bytes again with another access list: the same points rewritten in place)."""
        spec = self.indexes.active()
        store, embedder = self.store(spec), self.indexes.embedder(spec)
        document_id = document_id_for(tenant_id, path)
        version = hashlib.sha256("\n".join(chunks).encode()).hexdigest()
        vectors = embedder.embed_passages(chunks)
        starts = [sum(len(c) + 1 for c in chunks[:i]) for i in range(len(chunks))]
        store.upsert(
            [
                ChunkPoint(
                    point_id=point_id_for(tenant_id, document_id, version, i),
                    tenant_id=tenant_id,
                    document_id=document_id,
                    version=version,
                    dense_vector=vector,
                    payload={
                        "path": path,
                        "text": text,
                        "chunk_index": i,
                        "section": None,
                        "char_start": start,
                        "char_end": start + len(text),
                        "principals": principals,
                    },
                )
                for i, (text, vector, start) in enumerate(zip(chunks, vectors, starts, strict=True))
            ]
        )
        store.delete_document(tenant_id=tenant_id, document_id=document_id, keep_version=version)
        with self.session_factory() as session:
            row = session.get(Document, document_id) or Document(
                id=document_id, tenant_id=tenant_id, path=path
            )
            row.version_sha256, row.content_type, row.size_bytes = version, "text/markdown", 1
            row.chunk_count, row.updated_at = len(chunks), utcnow()
            row.principals = principals
            session.add(row)
            session.commit()

    def delete_row_and_source_points(self, tenant_id: str, path: str) -> None:
        """A delete that reached only the active collection."""
        document_id = document_id_for(tenant_id, path)
        self.store(self.indexes.active()).delete_document(
            tenant_id=tenant_id, document_id=document_id
        )
        with self.session_factory() as session:
            row = session.get(Document, document_id)
            assert row is not None
            session.delete(row)
            session.commit()

    def close(self) -> None:
        self.indexes.close()
        self.engine.dispose()


@pytest.fixture
def world(store_settings: Settings, embedder: SentenceTransformerEmbedder) -> Iterator[World]:
    built = World(store_settings, embedder)
    yield built
    built.close()


CORPUS = {
    "hr/vacation.md": [
        "Employees receive 25 days of paid vacation per year.",
        "Carry-over ends in March.",
    ],
    "it/laptops.md": ["Laptops are replaced every three years."],
    "zh/假期.md": ["员工每年享有二十五天带薪年假。", "未用完的假期三月底作废。"],
}


def populate(world: World) -> None:
    for tenant_id in world.tenants:
        for path, chunks in CORPUS.items():
            world.put(tenant_id, path, chunks)


def scroll_all(store: VectorStore, tenant_id: str) -> dict[str, StoredPoint]:
    points: dict[str, StoredPoint] = {}
    offset: str | None = None
    while True:
        page, offset = store.scroll(tenant_id=tenant_id, offset=offset, limit=2)
        points.update({p.point_id: p for p in page})
        if offset is None:
            return points


def top_path(store: VectorStore, embedder: Embedder, tenant_id: str, question: str) -> str:
    hits = store.search(
        tenant_id=tenant_id, query=HybridQuery(limit=1, dense=embedder.embed_query(question))
    )
    return str(hits[0].payload["path"])


def test_scroll_pages_through_one_tenants_points_only(world: World) -> None:
    populate(world)
    store = world.store(world.old)
    acme, globex = world.tenants
    points = scroll_all(store, acme)
    assert len(points) == 5 == store.count(tenant_id=acme)
    assert {p.payload["tenant_id"] for p in points.values()} == {acme}
    assert not set(points) & set(scroll_all(store, globex))
    one_document = document_id_for(acme, "hr/vacation.md")
    page, offset = store.scroll(tenant_id=acme, document_id=one_document)
    assert offset is None
    assert sorted(p.payload["text"] for p in page) == sorted(CORPUS["hr/vacation.md"])
    with pytest.raises(ValueError, match="tenant"):
        store.scroll(tenant_id="")


def test_reindex_reembeds_every_tenant_keeps_ids_and_switches(world: World) -> None:
    populate(world)
    old_store = world.store(world.old)
    before = {t: scroll_all(old_store, t) for t in world.tenants}
    with world.session_factory() as session:
        request_build(session, world.new)
        session.commit()

    report = run_reindex(
        indexes=world.indexes, session_factory=world.session_factory,
        collection=world.new.collection, batch=3, settle_s=0,
        lexical_neighbours=1,
    )  # fmt: skip

    assert report.points_copied == 10
    assert report.switched_from == world.old.collection
    assert world.indexes.active() == world.new
    new_store, e5 = world.store(world.new), world.indexes.embedder(world.new)
    for tenant_id in world.tenants:
        after = scroll_all(new_store, tenant_id)
        assert set(after) == set(before[tenant_id])  # same point ids
        for point_id, point in after.items():
            old_payload = dict(before[tenant_id][point_id].payload)
            assert point.payload == old_payload  # spans, access lists, indexing time kept
        # Queries embedded by the new model find the right chunks in its collection.
        assert top_path(new_store, e5, tenant_id, "年假有多少天？") == "zh/假期.md"
        assert top_path(new_store, e5, tenant_id, "How often are laptops replaced?") == (
            "it/laptops.md"
        )
    # Each chunk's lexical context (its neighbours' words) is rebuilt from whole documents, also
    # when the scroll pages (3 points) cut a document in two.
    carry_over = LexicalEncoder(LexicalSettings()).encode_query("carry-over March")
    hits = new_store.search(
        tenant_id=world.tenants[0], query=HybridQuery(limit=5, sparse=carry_over)
    )
    assert sorted(h.payload["text"] for h in hits) == sorted(CORPUS["hr/vacation.md"])
    # The old collection stays, whole, for a rollback.
    assert old_store.count(tenant_id=world.tenants[0]) == 5
    with world.session_factory() as session:
        states = {row.collection: row.state for row in all_indexes(session)}
    assert states == {world.old.collection: IndexState.STANDBY, world.new.collection: "active"}


def test_changes_during_the_build_are_caught_up(world: World) -> None:
    populate(world)
    acme = min(world.tenants)  # tenants are copied in id order: this one is done first
    changed: list[int] = []

    def ingest_meanwhile(copied: int) -> None:
        # After the first tenant was copied: a new document, a new version, a delete.
        if changed:
            return
        changed.append(copied)
        world.put(acme, "hr/new-policy.md", ["Remote work needs a manager's approval."])
        world.put(acme, "it/laptops.md", ["Laptops are replaced every four years.", "Ask IT."])
        world.delete_row_and_source_points(acme, "hr/vacation.md")

    target = world.store(world.new)
    report = ReindexReport()
    build_and_catch_up(
        session_factory=world.session_factory, source=world.store(world.old), target=target,
        embedder=world.indexes.embedder(world.new), batch=100, resume_since=None,
        report=report, lexical_neighbours=1, on_progress=ingest_meanwhile,
    )  # fmt: skip

    assert changed == [5]  # acme's points were all read before the changes
    assert report.documents_caught_up >= 2
    assert report.documents_pruned == 1
    counts = target.document_counts(tenant_id=acme)
    assert counts == world.store(world.old).document_counts(tenant_id=acme)
    assert counts[document_id_for(acme, "it/laptops.md")] == 2
    assert document_id_for(acme, "hr/vacation.md") not in counts
    texts = {p.payload["text"] for p in scroll_all(target, acme).values()}
    assert "Laptops are replaced every four years." in texts
    assert "Laptops are replaced every three years." not in texts


def test_an_access_list_changed_during_the_build_is_caught_up(world: World) -> None:
    # Replayed kind (a writer of one document): the same bytes re-uploaded for HR only keep
    # their version and point ids; the catch-up took the target's copy, made with the old (public)
    # list, for current, and after the switch every end user of the tenant read the document.
    populate(world)
    acme = min(world.tenants)
    closed: list[int] = []

    def close_meanwhile(copied: int) -> None:
        if not closed:
            closed.append(copied)
            world.put(acme, "hr/vacation.md", CORPUS["hr/vacation.md"], ["group:hr"])

    target = world.store(world.new)
    build_and_catch_up(
        session_factory=world.session_factory, source=world.store(world.old), target=target,
        embedder=world.indexes.embedder(world.new), batch=100, resume_since=None,
        report=ReindexReport(), lexical_neighbours=1, on_progress=close_meanwhile,
    )  # fmt: skip

    assert closed == [5]  # acme's points were copied with the public list before the change
    vacation = document_id_for(acme, "hr/vacation.md")
    points = [p for p in scroll_all(target, acme).values() if p.payload["document_id"] == vacation]
    assert len(points) == 2
    assert all(p.payload["principals"] == ["group:hr"] for p in points)
    others = [p for p in scroll_all(target, acme).values() if p.payload["document_id"] != vacation]
    assert all(p.payload["principals"] == ["*"] for p in others)


def test_rollback_copies_only_what_changed_and_drop_old_deletes(world: World) -> None:
    populate(world)
    acme = world.tenants[0]
    for target in (world.new, world.old):
        with world.session_factory() as session:
            request_build(session, target)
            session.commit()
        report = run_reindex(
            indexes=world.indexes, session_factory=world.session_factory,
            collection=target.collection, batch=50, settle_s=0,
            lexical_neighbours=1,
        )  # fmt: skip
        if target == world.new:
            # Written while the new model is active: the standby old index misses it.
            world.put(acme, "hr/new-policy.md", ["Remote work needs a manager's approval."])
    assert world.indexes.active() == world.old
    assert report.points_copied == 0  # the standby index was brought up to date, not rebuilt
    # Only documents whose row changed recently are copied (within the clock-skew margin, which
    # in a test covers every document: none were re-embedded wholesale).
    assert report.documents_caught_up >= 1
    assert world.store(world.old).count(tenant_id=acme) == 6

    with world.session_factory() as session, pytest.raises(ReindexConflictError, match="active"):
        request_build(session, world.old)
    world.indexes.release(world.new.collection, drop=True)
    reopened = world.store(world.new)
    assert reopened.count(tenant_id=acme) == 0


def test_the_first_start_registers_the_configured_model(world: World) -> None:
    with world.session_factory() as session:
        row = active_index(session)
        assert row is not None
        assert (row.collection, row.model_name) == (world.old.collection, "all-MiniLM-L6-v2")
        assert session.query(Tenant).count() == 2


def test_a_qdrant_alias_follows_the_switch(tmp_path: Path) -> None:
    from qdrant_client import QdrantClient

    from core.lexical import LexicalEncoder
    from core.settings import LexicalSettings
    from core.vectorstore.qdrant_server import QdrantServerVectorStore

    client = QdrantClient(path=str(tmp_path / "local"))
    lexical = LexicalEncoder(LexicalSettings())
    stores = [
        QdrantServerVectorStore(collection=name, dimension=4, lexical=lexical, client=client)
        for name in ("chunks__a", "chunks__b")
    ]
    for store in stores:
        store.ensure_collection()
        store.publish_alias("chunks")
        aliases = {a.alias_name: a.collection_name for a in client.get_aliases().aliases}
        assert aliases == {"chunks": store._collection}
    client.close()


# --- through the API: queries and ingest go on while `ragkb serve` runs the reindex ----------


def test_api_serves_before_during_and_after_a_reindex_run_by_the_store_owner(
    settings: Settings, embedder: SentenceTransformerEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from api.app import create_app
    from api.cli import app as cli
    from api.runtime import Runtime
    from core.settings import get_settings
    from core.tenancy import issue_api_key
    from tests.apihelpers import auth, wait_for_job

    settings.vector_store.index_poll_s = 0.2
    settings.vector_store.reindex_settle_s = 0.5
    run_migrations(settings)
    runtime = Runtime.build(settings, embedder=embedder)
    with runtime.session_factory() as session:
        tenant = create_tenant(session, name="acme")
        key = issue_api_key(session, tenant=tenant).plaintext
        tenant_id = tenant.id
        session.commit()
    files = {
        "hr/vacation.md": b"# Vacation\n\nEmployees receive 25 days of paid vacation per year.\n",
        "it/laptops.md": b"# Laptops\n\nLaptops are replaced every three years.\n",
        "zh/jia.md": "# 假期\n\n员工每年享有二十五天带薪年假，未用完的假期三月底作废。\n".encode(),
    }

    def upload(batch: dict[str, bytes]) -> None:
        response = client.post(
            "/v1/ingest/jobs",
            headers=auth(key),
            files=[("files", (name, data)) for name, data in batch.items()],
        )
        assert response.status_code == 202, response.text
        job = wait_for_job(client, response.json()["id"], key)
        assert job["status"] == "completed", job

    def search(query: str, mode: str = "hybrid") -> list[str]:
        response = client.post(
            "/v1/search", headers=auth(key), json={"query": query, "top_k": 10, "mode": mode}
        )
        assert response.status_code == 200, response.text
        return [h["path"] for h in response.json()["hits"]]

    def stored_chunks() -> tuple[int, int]:
        with runtime.session_factory() as session:
            expected = sum(r.chunk_count for r in session.query(Document).all())
        return runtime.store.count(tenant_id=tenant_id), expected

    try:
        with TestClient(create_app(settings, runtime)) as client:
            upload(files)
            before = search("How many vacation days?")
            assert before[0] == "hr/vacation.md"
            old_collection = runtime.binding.spec.collection

            # `ragkb reindex` hands the build to this process (it owns the embedded store).
            for name in ("RAGKB_DATA_DIR", "RAGKB_DATABASE_URL"):
                monkeypatch.delenv(name, raising=False)
            monkeypatch.setenv("RAGKB_DATA_DIR", str(settings.data_dir))
            if settings.database_url:
                monkeypatch.setenv("RAGKB_DATABASE_URL", settings.database_url)
            monkeypatch.setenv("RAGKB_VECTOR_STORE__INDEX_POLL_S", "0.2")
            get_settings.cache_clear()
            result: list[object] = []
            command = threading.Thread(
                target=lambda: result.append(CliRunner().invoke(cli, ["reindex", "--model", E5]))
            )
            command.start()
            during: list[list[str]] = []
            while command.is_alive() and len(during) < 200:
                during.append(search("How many vacation days?"))
            # Ingest while the build runs (or just after it): nothing may be lost.
            upload({"it/phones.md": b"# Phones\n\nPhones are replaced every two years.\n"})
            command.join(timeout=300)
            get_settings.cache_clear()
            invoked = result[0]
            assert getattr(invoked, "exit_code", None) == 0, getattr(invoked, "output", invoked)
            assert during
            assert all(paths[0] == "hr/vacation.md" for paths in during)

            # This process follows the pointer: e5 now embeds the queries, in e5's collection.
            assert runtime.binding.spec.model_name == E5
            assert runtime.binding.spec.collection != old_collection
            assert search("How many vacation days?")[0] == "hr/vacation.md"
            assert search("员工每年有多少天年假？", mode="dense")[0] == "zh/jia.md"
            assert search("How often are phones replaced?")[0] == "it/phones.md"
            stored, expected = stored_chunks()
            assert stored == expected == 4

            # A delete reaches the standby collection too: a rollback cannot bring it back.
            document_id = document_id_for(tenant_id, "it/laptops.md")
            deleted = client.delete(f"/v1/documents/{document_id}", headers=auth(key))
            assert deleted.status_code == 204
            old = runtime.indexes.store(
                next(s for s in runtime.indexes.registered() if s.collection == old_collection)
            )
            assert old.count(tenant_id=tenant_id, document_id=document_id) == 0
            assert runtime.store.count(tenant_id=tenant_id, document_id=document_id) == 0
    finally:
        runtime.close()


def test_an_ingest_task_that_embedded_with_a_switched_model_stores_nothing_and_retries(
    world: World, tmp_path: Path
) -> None:
    from ingest.jobs import add_job_file, create_job
    from ingest.pipeline import IndexSwitchedError, IngestDependencies, process_job_files
    from workers.celery_app import TRANSIENT_ERRORS

    data = b"# Policy\n\nRemote work needs a manager's approval.\n"
    staged = tmp_path / "policy.md"
    staged.write_bytes(data)
    acme = world.tenants[0]
    with world.session_factory() as session:
        job = create_job(session, tenant_id=acme)
        file_id = add_job_file(
            session, job=job, position=0, path="hr/policy.md", staged_path=str(staged),
            size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
        ).id  # fmt: skip
        session.commit()
    store = world.store(world.old)
    deps = IngestDependencies(
        session_factory=world.session_factory, store=store,
        embedder=world.indexes.embedder(world.old),
        chunking=Settings().ingest.chunking, still_active=lambda: False,
    )  # fmt: skip
    with pytest.raises(IndexSwitchedError):
        process_job_files([file_id], deps)
    assert isinstance(IndexSwitchedError("x"), TRANSIENT_ERRORS)  # Celery retries it
    assert store.count(tenant_id=acme) == 0
    # The retry, with the dependencies of the active index, takes the file back and stores it.
    retry = IngestDependencies(
        session_factory=world.session_factory, store=store,
        embedder=world.indexes.embedder(world.old),
        chunking=Settings().ingest.chunking, still_active=lambda: True,
    )  # fmt: skip
    assert process_job_files([file_id], retry, reclaim=True)[file_id] == "done"
    assert store.count(tenant_id=acme) == 1


def test_cli_reindexes_here_lists_rolls_back_and_drops(
    world: World, store_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from api.cli import app as cli
    from core.settings import get_settings

    populate(world)
    world.close()  # the command opens the stores itself (`ragkb serve` is not running)
    monkeypatch.setenv("RAGKB_DATA_DIR", str(store_settings.data_dir))
    if store_settings.database_url:
        monkeypatch.setenv("RAGKB_DATABASE_URL", store_settings.database_url)
    monkeypatch.setenv("RAGKB_VECTOR_STORE__KIND", store_settings.vector_store.kind.value)
    monkeypatch.setenv("RAGKB_VECTOR_STORE__REINDEX_SETTLE_S", "0")
    get_settings.cache_clear()

    def run(*args: str) -> str:
        result = CliRunner().invoke(cli, ["reindex", *args])
        assert result.exit_code == 0, result.output
        return result.output

    try:
        assert "10 points re-embedded" in run("--model", E5, "--here")
        listed = run("--status")
        assert f"active    {world.new.collection}" in listed
        assert f"standby   {world.old.collection}" in listed
        run("--model", "all-MiniLM-L6-v2", "--here")  # rollback
        assert f"active    {world.old.collection}" in run("--status")
        assert f"dropped {world.new.collection}" in run("--drop-old")
        assert world.new.collection not in run("--status")
    finally:
        get_settings.cache_clear()
