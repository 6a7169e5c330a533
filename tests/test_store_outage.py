"""A Qdrant server that cannot be reached: its errors become VectorStoreUnavailable, and the
ingest task retries the batch (and finishes it once the store answers).

No Qdrant server binary exists here, so the outage is a real closed loopback port (the
connection is refused) or a real loopback HTTP server answering like a failing proxy; the store
"coming back" is a qdrant-client local-mode store handed to the retry.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from qdrant_client.http.exceptions import UnexpectedResponse
from sqlalchemy import select

from core.db import create_db_engine, create_session_factory, run_migrations
from core.embedding import LocalEmbedder
from core.lexical import LexicalEncoder
from core.models import FileState, JobFile
from core.settings import LexicalSettings, Settings
from core.tenancy import create_tenant
from core.vectorstore import HybridQuery, VectorStoreUnavailable
from core.vectorstore.qdrant_server import QdrantServerVectorStore
from ingest.jobs import add_job_file, create_job
from ingest.pipeline import IngestDependencies
from tests.services import free_port
from workers.celery_app import INGEST_FILES_TASK, TRANSIENT_ERRORS, create_celery_app

# qdrant-client checks the server's version in a thread at construction and warns when it
# cannot; here the server is down on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:Failed to obtain server version:UserWarning")
LEXICAL = LexicalEncoder(LexicalSettings())


def _server_store(url: str) -> QdrantServerVectorStore:
    return QdrantServerVectorStore(collection="chunks", dimension=384, lexical=LEXICAL, url=url)


@pytest.fixture
def answering(request: pytest.FixtureRequest) -> Iterator[str]:
    """A loopback HTTP server answering every request with the given status."""
    status = int(request.param)

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = b'{"status": {"error": "down"}, "result": null}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_PUT = do_POST = do_DELETE = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_refused_connection_is_unavailable_for_every_call() -> None:
    store = _server_store(f"http://127.0.0.1:{free_port()}")
    calls = [
        store.ensure_collection,
        lambda: store.search(tenant_id="t1", query=HybridQuery(limit=3, dense=[0.1] * 384)),
        lambda: store.count(tenant_id="t1"),
        lambda: store.delete_document(tenant_id="t1", document_id="d1"),
        lambda: store.document_counts(tenant_id="t1"),
        lambda: store.replace_documents([]),  # nothing to send: no call, no error
    ]
    for call in calls[:-1]:
        with pytest.raises(VectorStoreUnavailable, match="unreachable") as raised:
            call()
        assert isinstance(raised.value, TRANSIENT_ERRORS)
    calls[-1]()
    store.close()


@pytest.mark.parametrize("answering", [503, 502, 429], indirect=True)
def test_an_overloaded_or_proxied_outage_is_unavailable(answering: str) -> None:
    store = _server_store(answering)
    with pytest.raises(VectorStoreUnavailable):
        store.count(tenant_id="t1")
    store.close()


@pytest.mark.parametrize("answering", [400], indirect=True)
def test_a_bad_request_is_not_an_outage(answering: str) -> None:
    store = _server_store(answering)
    with pytest.raises(UnexpectedResponse) as raised:
        store.count(tenant_id="t1")
    assert not isinstance(raised.value, TRANSIENT_ERRORS)
    store.close()


def test_the_ingest_task_retries_an_outage_and_finishes_when_the_store_answers(
    settings: Settings, embedder: LocalEmbedder, tmp_path: Path
) -> None:
    run_migrations(settings)
    session_factory = create_session_factory(create_db_engine(settings))
    staged = tmp_path / "staged"
    staged.mkdir()
    with session_factory() as session:
        tenant = create_tenant(session, name="acme")
        job = create_job(session, tenant_id=tenant.id)
        file_ids = []
        for i in range(3):
            path = staged / f"n{i}.md"
            path.write_text(f"# Note {i}\n\nThe value of item {i} is {i * 7}.\n")
            file_ids.append(
                add_job_file(
                    session,
                    job=job,
                    position=i,
                    path=f"notes/n{i}.md",
                    staged_path=str(path),
                    sha256=f"v{i}",
                ).id
            )
        session.commit()

    down = _server_store(f"http://127.0.0.1:{free_port()}")
    back = QdrantServerVectorStore(
        collection="chunks", dimension=384, lexical=LEXICAL, path=tmp_path / "qdrant"
    )
    back.ensure_collection()
    attempts: list[FileState] = []

    def dependencies() -> IngestDependencies:
        # Each attempt first sees what the previous one left: the outage records nothing.
        with session_factory() as session:
            rows = session.scalars(select(JobFile).where(JobFile.id.in_(file_ids))).all()
            attempts.extend(FileState(row.state) for row in rows)
        # The store is down for the first two attempts, then answers.
        store = down if len(attempts) <= 2 * len(file_ids) else back
        return IngestDependencies(
            session_factory=session_factory,
            store=store,
            embedder=embedder,
            chunking=settings.ingest.chunking,
        )

    task = create_celery_app(settings, ingest_dependencies=dependencies).tasks[INGEST_FILES_TASK]
    # The real task with its retry policy, run in this thread (Celery runs the retries at once).
    result = task.apply(args=[file_ids])
    assert result.state == "SUCCESS", result.traceback
    assert set(result.result.values()) == {FileState.DONE.value}
    # Queued at the first attempt; claimed (running), not failed, after each outage.
    assert attempts == [FileState.QUEUED] * 3 + [FileState.RUNNING] * 6
    assert back.count(tenant_id=tenant.id) == 3
    down.close()
    back.close()
