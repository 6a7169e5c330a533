"""The process's long-lived components, built once from settings and handed to the app."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace

from celery import Celery
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.admission import AdmissionGate
from core.audit_writer import AuditWriter
from core.db import create_db_engine, create_session_factory
from core.embedding import ProcessEmbedder
from core.index_set import IndexSet
from core.indexes import IndexSpec, pending_build
from core.keycache import KeyCache
from core.lexical import LexicalEncoder
from core.metrics import Metrics
from core.ratelimit import RateLimiter, create_rate_limiter
from core.settings import FusionMethod, Settings, VectorStoreKind
from core.vectorstore import VectorStore
from generation.answer import AnswerService
from generation.client import ChatClient
from generation.tokens import ReaderTokenCounter
from generation.verify import CitationVerifier
from ingest.jobs import requeue_unfinished
from ingest.originals import originals_for
from ingest.pipeline import IngestDependencies
from ingest.reindex import run_reindex
from ingest.sandbox import parser_for
from retrieval.expansion import query_expanders
from retrieval.rerank import create_reranker
from retrieval.retriever import Retriever
from workers.celery_app import create_celery_app, enqueue_ingest
from workers.embedded import EmbeddedWorker
from workers.main import is_active

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexBinding:
    """What serves one index: its store, the model that embeds for it, and what uses both.

    Swapped whole when `ragkb reindex` moves the pointer, so a request never pairs one model's
    query vector with another model's collection.
    """

    spec: IndexSpec
    embedder: ProcessEmbedder
    store: VectorStore
    retriever: Retriever
    answer_service: AnswerService
    ingest: IngestDependencies


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    indexes: IndexSet
    binding: IndexBinding
    chat_client: ChatClient
    celery_app: Celery
    embedded_worker: EmbeddedWorker | None
    metrics: Metrics
    rate_limiter: RateLimiter
    key_cache: KeyCache
    audit_writer: AuditWriter
    admission: AdmissionGate
    watcher: IndexWatcher | None = None

    @classmethod
    def build(cls, settings: Settings, *, embedder: ProcessEmbedder | None = None) -> Runtime:
        """Build every component; a loaded embedder may be passed in to share its weights."""
        engine = create_db_engine(settings)
        session_factory = create_session_factory(engine)
        indexes = IndexSet(settings, session_factory, embedder=embedder)
        chat_client = ChatClient(settings.reader)
        metrics = Metrics()
        active = indexes.active()
        if active.model_name != settings.embedding.model:
            logger.warning(
                "serving %s (%s), not RAGKB_EMBEDDING__MODEL=%s: the active index decides; "
                "change models with `ragkb reindex --model`",
                active.collection, active.model_name, settings.embedding.model,
            )  # fmt: skip
        binding = bind_index(
            active, settings=settings, indexes=indexes,
            session_factory=session_factory, chat_client=chat_client, metrics=metrics,
        )  # fmt: skip
        runtime: Runtime

        def ingest_dependencies() -> IngestDependencies:
            # Read per task: a task started after a switch embeds with the new model.
            return runtime.binding.ingest

        celery_app = create_celery_app(settings, ingest_dependencies=ingest_dependencies)
        worker = (
            EmbeddedWorker(
                celery_app,
                concurrency=settings.worker.concurrency,
                nice=settings.embedding.ingest_nice,
            )
            if settings.worker.embedded
            else None
        )
        # With a Qdrant server, the prefix is an alias of the active collection (for tools).
        binding.store.publish_alias(settings.vector_store.collection_prefix)
        runtime = cls(
            settings=settings,
            engine=engine,
            session_factory=session_factory,
            indexes=indexes,
            binding=binding,
            chat_client=chat_client,
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
            admission=AdmissionGate(
                max_in_flight=settings.http.max_in_flight,
                max_per_tenant=settings.http.max_in_flight_per_tenant,
                max_queue=settings.http.admission_queue,
                max_wait_s=settings.http.admission_wait_s,
            ),
        )
        return runtime

    # The components of the active index, read per request (a switch replaces them together).
    @property
    def embedder(self) -> ProcessEmbedder:
        return self.binding.embedder

    @property
    def store(self) -> VectorStore:
        return self.binding.store

    @property
    def retriever(self) -> Retriever:
        return self.binding.retriever

    @retriever.setter
    def retriever(self, retriever: Retriever) -> None:
        self.binding = replace(self.binding, retriever=retriever)

    @property
    def answer_service(self) -> AnswerService:
        return self.binding.answer_service

    def follow_active_index(self) -> bool:
        """Serve the active index if it changed (True then); forget dropped collections."""
        active = self.indexes.active()
        switched = active.collection != self.binding.spec.collection
        if switched:
            # Built (and the model warmed up) before the swap: queries keep the old binding
            # until the new one is ready.
            self.binding = bind_index(
                active, settings=self.settings, indexes=self.indexes,
                session_factory=self.session_factory, chat_client=self.chat_client,
                metrics=self.metrics,
            )  # fmt: skip
            logger.info("now serving %s (%s)", active.collection, active.model_name)
        registered = {spec.collection for spec in self.indexes.registered()}
        owner = self.settings.vector_store.kind is VectorStoreKind.EMBEDDED
        for collection in self.indexes.open_collections():
            if collection not in registered:
                # `ragkb reindex --drop-old` removed it; an embedded store's files can only be
                # deleted by the process that holds them, which is this one.
                self.indexes.release(collection, drop=owner)
        return switched

    def delete_document(self, *, tenant_id: str, document_id: str) -> None:
        """Delete a document from every registered index (standby ones too: a rollback must
        not bring it back); a failure outside the active one is logged, not raised."""
        self.store.delete_document(tenant_id=tenant_id, document_id=document_id)
        for spec in self.indexes.registered():
            if spec.collection == self.binding.spec.collection:
                continue
            try:
                self.indexes.store(spec).delete_document(
                    tenant_id=tenant_id, document_id=document_id
                )
            except Exception:
                logger.warning(
                    "document not deleted from index %s (a rebuild of it prunes it)",
                    spec.collection,
                    exc_info=True,
                )

    def start(self) -> None:
        if self.watcher is not None:
            # Started already (a second app over the same runtime): a second watcher and worker
            # would never be stopped by `close`.
            return
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
        self.watcher = IndexWatcher(self)
        self.watcher.start()

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        if self.embedded_worker is not None:
            self.embedded_worker.stop()
        self.chat_client.close()
        self.audit_writer.close()
        self.rate_limiter.close()
        self.indexes.close()
        self.engine.dispose()


def bind_index(
    spec: IndexSpec,
    *,
    settings: Settings,
    indexes: IndexSet,
    session_factory: sessionmaker[Session],
    chat_client: ChatClient,
    metrics: Metrics,
) -> IndexBinding:
    embedder = indexes.embedder(spec)
    store = indexes.store(spec)
    retriever = Retriever(
        store=store,
        embedder=embedder,
        lexical=LexicalEncoder(settings.retrieval.lexical),
        reranker=create_reranker(settings.rerank),
        settings=settings.retrieval,
        rerank_candidates=settings.rerank.candidates,
        min_score=settings.retrieval.min_score_for(embedder.model_name),
        cjk_min_score=settings.retrieval.cjk_min_score_for(embedder.model_name),
        min_coverage=settings.retrieval.min_coverage_for(embedder.model_name),
        min_sentence=settings.retrieval.min_sentence_for(embedder.model_name),
        expanders=query_expanders(
            lambda messages, max_tokens, tenant_id: (
                chat_client.complete(messages, max_tokens=max_tokens, tenant_id=tenant_id).text
            )
        ),
    )
    answer_service = AnswerService(
        retriever=retriever,
        chat_client=chat_client,
        verifier=CitationVerifier(
            embedder=embedder,
            lexical_threshold=settings.citations.lexical_threshold,
            semantic_threshold=settings.citations.semantic_threshold_for(embedder.model_name),
            cjk_semantic_threshold=settings.citations.cjk_semantic_threshold_for(
                embedder.model_name
            ),
        ),
        count_tokens=ReaderTokenCounter(settings.reader).count,
        reader_settings=settings.reader,
        metrics=metrics,
        refuse_unsupported=settings.citations.refuse_unsupported,
        unsupported_min_dense=settings.citations.unsupported_min_score_for(embedder.model_name),
        unsupported_min_fused=(
            settings.citations.unsupported_min_fused_score_for(embedder.model_name)
            if settings.retrieval.fusion is FusionMethod.DBSF
            else None
        ),
    )
    ingest = IngestDependencies(
        session_factory=session_factory,
        store=store,
        embedder=embedder,
        chunking=settings.ingest.chunking,
        keep_failed_files=settings.ingest.keep_failed_files_h > 0,
        originals=originals_for(settings),
        still_active=lambda: is_active(session_factory, spec.collection),
        parse=parser_for(settings),
        parse_attempts=settings.ingest.parse_attempts,
    )
    return IndexBinding(spec, embedder, store, retriever, answer_service, ingest)


class IndexWatcher:
    """Polls the index pointer: switches this process's binding when `ragkb reindex` moved it,
    and, in the process that owns an embedded store, runs the builds `ragkb reindex` asked for
    (no other process may open the store's files)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ragkb-index-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        runtime = self._runtime
        interval = runtime.settings.vector_store.index_poll_s
        while not self._stop.wait(interval):
            try:
                runtime.follow_active_index()
                if runtime.settings.vector_store.kind is VectorStoreKind.EMBEDDED:
                    self._run_requested_build()
            except Exception:
                # A database outage must not kill the watcher: the next poll tries again.
                logger.warning("index watcher: poll failed", exc_info=True)

    def _run_requested_build(self) -> None:
        runtime = self._runtime
        with runtime.session_factory() as session:
            row = pending_build(session)
            collection = row.collection if row is not None else None
        if collection is None:
            return
        settings = runtime.settings.vector_store
        try:
            run_reindex(
                indexes=runtime.indexes, session_factory=runtime.session_factory,
                collection=collection, batch=settings.reindex_batch,
                settle_s=settings.reindex_settle_s,
                lexical_neighbours=runtime.settings.ingest.chunking.lexical_neighbours,
                # Between the switch and the last pass this process must already serve the new
                # index: it follows the pointer itself before waiting.
                after_switch=runtime.follow_active_index,
            )  # fmt: skip
        except Exception:
            logger.exception("reindex into %s failed", collection)
