"""A standalone worker process (production): it opens its own store and database connections."""

from __future__ import annotations

from functools import cache

from celery import Celery

from core.db import create_db_engine, create_session_factory
from core.embedding import create_embedder
from core.settings import Settings, VectorStoreKind
from core.vectorstore.factory import create_vector_store
from ingest.pipeline import IngestDependencies
from workers.celery_app import create_celery_app


def create_worker_app(settings: Settings) -> Celery:
    @cache
    def dependencies() -> IngestDependencies:
        embedder = create_embedder(settings.embedding)
        store = create_vector_store(
            settings, model_name=embedder.model_name, dimension=embedder.dimension
        )
        store.ensure_collection()
        return IngestDependencies(
            session_factory=create_session_factory(create_db_engine(settings)),
            store=store,
            embedder=embedder,
            chunking=settings.ingest.chunking,
        )

    return create_celery_app(settings, ingest_dependencies=dependencies)


def run_worker(settings: Settings, *, concurrency: int) -> None:
    if settings.vector_store.kind is VectorStoreKind.EMBEDDED:
        raise SystemExit(
            "the embedded vector store belongs to `ragkb serve`, which runs the workers itself; "
            "a separate worker needs RAGKB_VECTOR_STORE__KIND=qdrant with a server URL"
        )
    app = create_worker_app(settings)
    app.worker_main(["worker", "--pool=threads", f"--concurrency={concurrency}", "-l", "INFO"])
