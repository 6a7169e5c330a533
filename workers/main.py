"""A standalone worker process (production): it opens its own store and database connections."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from celery import Celery
from celery.signals import worker_ready
from sqlalchemy.orm import Session, sessionmaker

from core.db import create_db_engine, create_session_factory
from core.index_set import IndexSet
from core.indexes import active_index
from core.settings import Settings, VectorStoreKind
from core.telemetry import configure_tracing
from ingest.originals import originals_for
from ingest.pipeline import IngestDependencies
from ingest.sandbox import parser_for
from workers.celery_app import create_celery_app


def create_worker_app(settings: Settings) -> Celery:
    configure_tracing(settings.telemetry)
    session_factory = create_session_factory(create_db_engine(settings))
    indexes = IndexSet(settings, session_factory)
    lock = threading.Lock()
    # (checked at, dependencies): the active index is read again every `index_poll_s`, so a
    # worker follows `ragkb reindex` without a restart.
    current: list[tuple[float, IngestDependencies]] = []

    def dependencies() -> IngestDependencies:
        with lock:
            now = time.monotonic()
            if current and now - current[0][0] < settings.vector_store.index_poll_s:
                return current[0][1]
            spec = indexes.active()
            deps = IngestDependencies(
                session_factory=session_factory,
                store=indexes.store(spec),
                embedder=indexes.embedder(spec),
                chunking=settings.ingest.chunking,
                keep_failed_files=settings.ingest.keep_failed_files_h > 0,
                originals=originals_for(settings),
                still_active=lambda: is_active(session_factory, spec.collection),
                parse=parser_for(settings),
                parse_attempts=settings.ingest.parse_attempts,
            )
            current[:] = [(now, deps)]
            return deps

    return create_celery_app(settings, ingest_dependencies=dependencies)


def is_active(session_factory: sessionmaker[Session], collection: str) -> bool:
    with session_factory() as session:
        row = active_index(session)
        return row is not None and row.collection == collection


HEARTBEAT_INTERVAL_S = 10.0


def start_heartbeat(path: Path, is_healthy: Callable[[], bool]) -> threading.Event:
    """Touch `path` every few seconds while `is_healthy()`; set the returned event to stop."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_INTERVAL_S):
            if is_healthy():
                path.touch()

    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    threading.Thread(target=beat, name="ragkb-heartbeat", daemon=True).start()
    return stop


def heartbeat_age_s(path: Path) -> float | None:
    """Seconds since the last heartbeat, or None if there was none."""
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None


def run_worker(settings: Settings, *, concurrency: int) -> None:
    if settings.vector_store.kind is VectorStoreKind.EMBEDDED:
        raise SystemExit(
            "the embedded vector store belongs to `ragkb serve`, which runs the workers itself; "
            "a separate worker needs RAGKB_VECTOR_STORE__KIND=qdrant with a server URL"
        )
    app = create_worker_app(settings)

    def _beat(sender: object, **_: object) -> None:
        consumer = getattr(sender, "consumer", None)
        connection = getattr(consumer, "connection", None)
        start_heartbeat(
            settings.worker.heartbeat_file,
            lambda: connection is None or bool(getattr(connection, "connected", True)),
        )

    worker_ready.connect(_beat, weak=False)

    app.worker_main(["worker", "--pool=threads", f"--concurrency={concurrency}", "-l", "INFO"])
