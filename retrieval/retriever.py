"""Retrieve a tenant's most relevant chunks: hybrid search in Qdrant, then the rerank stage."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from core.embedding import Embedder
from core.lexical import LexicalEncoder, has_cjk, weight_by_idf
from core.settings import QueryExpansion, RetrievalMode, RetrievalSettings
from core.telemetry import span
from core.vectorstore import (
    DOCUMENT_FIELD,
    HybridQuery,
    SearchFilter,
    SearchHit,
    SparseVector,
    VectorStore,
)
from retrieval.evidence import (
    EvidenceThresholds,
    VectorCache,
    best_sentence_score,
    coverage,
    evidence_sentences,
    has_evidence,
    term_weights,
)
from retrieval.expansion import QueryExpander, fuse_rankings
from retrieval.idf_cache import UNKNOWN, IdfCache, corpus_key
from retrieval.rerank import NoReranker, Reranker, RerankUnavailableError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrievedChunk:
    """A chunk with its provenance: enough to cite it back to document, page and span."""

    point_id: str
    document_id: str
    path: str
    title: str | None
    page: int | None
    section: str | None
    char_start: int
    char_end: int
    text: str
    retrieval_score: float
    dense_score: float | None = None
    rerank_score: float | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    # Share of the question's IDF-weighted terms in this chunk's text (retrieval/evidence.py);
    # set where the evidence gate measured it.
    coverage: float | None = None
    # The best dense cosine of one of the chunk's sentences with the question, and the best
    # coverage of one sentence (retrieval/evidence.py); set where the evidence gate measured it.
    sentence_score: float | None = None
    sentence_coverage: float | None = None

    @classmethod
    def from_hit(cls, hit: SearchHit) -> RetrievedChunk:
        p: dict[str, Any] = hit.payload
        return cls(
            point_id=hit.point_id,
            document_id=str(p[DOCUMENT_FIELD]),
            path=str(p.get("path", "")),
            title=p.get("title"),
            page=p.get("page"),
            section=p.get("section"),
            char_start=int(p.get("char_start", 0)),
            char_end=int(p.get("char_end", 0)),
            text=str(p.get("text", "")),
            retrieval_score=hit.score,
            dense_score=hit.dense_score,
            metadata={str(k): str(v) for k, v in (p.get("meta") or {}).items()},
        )


@dataclass
class RetrievalResult:
    chunks: list[RetrievedChunk]
    stages: list[str]
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RetrievalOptions:
    """Per-request choices; None means the configured default."""

    mode: RetrievalMode | None = None
    rerank: bool = True
    # Drop chunks whose dense cosine is below the calibrated evidence threshold, and all of them
    # when none covers enough of the question's terms (answers do; a plain search returns the
    # ranking as it is).
    evidence_gate: bool = True
    # The configured query expansion (multi-query, HyDE) when there is one.
    expand: bool = True


class Retriever:
    def __init__(
        self,
        *,
        store: VectorStore,
        embedder: Embedder,
        lexical: LexicalEncoder,
        reranker: Reranker,
        settings: RetrievalSettings,
        rerank_candidates: int,
        min_score: float,
        min_coverage: float = 0.0,
        min_sentence: float = 0.0,
        expanders: Mapping[QueryExpansion, QueryExpander] | None = None,
        idf_cache: IdfCache | None = None,
        sentence_vectors: VectorCache | None = None,
        cjk_min_score: float | None = None,
    ) -> None:
        """`min_score`: the evidence gate's dense cosine; `cjk_min_score`: the one for a
        question written in Chinese/Japanese (a multilingual model's cosines run higher there;
        None: `min_score`)."""
        self._store = store
        self._embedder = embedder
        self._lexical = lexical
        self._reranker = reranker
        self._settings = settings
        self._rerank_candidates = rerank_candidates
        self._min_score = min_score
        self._cjk_min_score = cjk_min_score
        self._min_coverage = min_coverage
        self._min_sentence = min_sentence
        self._expanders = dict(expanders or {})
        self._idf_cache = idf_cache or IdfCache(
            ttl_s=settings.idf_cache_ttl_s, max_entries=settings.idf_cache_size
        )
        self._sentence_vectors = sentence_vectors or VectorCache(max_entries=20_000)

    @property
    def min_score(self) -> float:
        return self._min_score

    def min_score_for(self, query: str) -> float:
        """The evidence gate's dense cosine for `query` (by its script)."""
        if self._cjk_min_score is not None and has_cjk(query):
            return self._cjk_min_score
        return self._min_score

    @property
    def evidence_thresholds(self) -> EvidenceThresholds:
        return self.evidence_thresholds_for("")

    def evidence_thresholds_for(self, query: str) -> EvidenceThresholds:
        return EvidenceThresholds(
            min_dense=self.min_score_for(query),
            min_coverage=self._min_coverage,
            min_sentence=self._min_sentence,
        )

    @property
    def settings(self) -> RetrievalSettings:
        return self._settings

    def with_settings(self, settings: RetrievalSettings) -> Retriever:
        """The same components under other fusion settings (the evaluation compares them)."""
        return Retriever(
            store=self._store,
            embedder=self._embedder,
            lexical=self._lexical,
            reranker=self._reranker,
            settings=settings,
            rerank_candidates=self._rerank_candidates,
            min_score=self._min_score,
            min_coverage=self._min_coverage,
            min_sentence=self._min_sentence,
            expanders=self._expanders,
            idf_cache=self._idf_cache,
            sentence_vectors=self._sentence_vectors,
            cjk_min_score=self._cjk_min_score,
        )

    def retrieve(
        self,
        *,
        tenant_id: str,
        query: str,
        top_k: int,
        filters: SearchFilter | None = None,
        options: RetrievalOptions | None = None,
    ) -> RetrievalResult:
        """The tenant's best `top_k` chunks for `query`, within `filters` (a `retrieve` span)."""
        with span("retrieve", {"ragkb.top_k": top_k}, tenant_id=tenant_id) as current:
            result = self._retrieve(tenant_id, query, top_k, filters, options)
            current.set_attribute("ragkb.hits", len(result.chunks))
            return result

    def _retrieve(
        self,
        tenant_id: str,
        query: str,
        top_k: int,
        filters: SearchFilter | None,
        options: RetrievalOptions | None,
    ) -> RetrievalResult:
        options = options or RetrievalOptions()
        mode = options.mode or self._settings.mode
        reranking = options.rerank and not isinstance(self._reranker, NoReranker)
        timings: dict[str, float] = {}

        limit = max(top_k, self._rerank_candidates) if reranking else top_k
        stages: list[str] = []
        expander = self._expanders.get(self._settings.expansion) if options.expand else None
        extra_queries: list[str] = []
        if expander is not None:
            started = time.perf_counter()
            extra_queries = expander.expand(query, tenant_id=tenant_id)
            timings["expand_ms"] = _ms_since(started)
            stages.append(expander.name)

        rankings = [
            self._search(tenant_id, text, mode, limit, filters, timings)
            for text in [query, *extra_queries]
        ]
        chunks = rankings[0] if len(rankings) == 1 else fuse_rankings(rankings)[:limit]
        if options.evidence_gate:
            min_dense = self.min_score_for(query)
            chunks = [c for c in chunks if c.dense_score is None or c.dense_score >= min_dense]
            if chunks and (self._min_coverage > 0 or self._min_sentence > 0):
                started = time.perf_counter()
                principals = filters.principals if filters else None
                chunks = self.with_coverage(tenant_id, query, chunks, principals)
                if self._min_sentence > 0:
                    chunks = self.with_sentence_signals(tenant_id, query, chunks, principals)
                scored = [(c.dense_score, c.coverage, c.sentence_score) for c in chunks]
                if not has_evidence(scored, self.evidence_thresholds_for(query)):
                    chunks = []
                    stages.append("no_term_coverage")
                timings["evidence_ms"] = _ms_since(started)
        stages.insert(0, mode.value)

        if chunks and reranking:
            started = time.perf_counter()
            try:
                with span("rerank", {"ragkb.candidates": len(chunks)}):
                    scores = self._reranker.rerank(query, [c.text for c in chunks])
            except RerankUnavailableError as exc:
                # The fused ranking is still a good answer; an outage of the rerank server
                # must not take search down with it.
                logger.warning("rerank skipped: %s", exc)
                stages.append("rerank:unavailable")
            else:
                chunks = [
                    replace(c, rerank_score=s)
                    for c, s in sorted(zip(chunks, scores, strict=True), key=lambda cs: -cs[1])
                ]
                stages.append(f"rerank:{self._reranker.name}")
            timings["rerank_ms"] = _ms_since(started)
        return RetrievalResult(chunks=chunks[:top_k], stages=stages, timings_ms=timings)

    def with_coverage(
        self,
        tenant_id: str,
        query: str,
        chunks: list[RetrievedChunk],
        principals: tuple[str, ...] | None = None,
    ) -> list[RetrievedChunk]:
        """The chunks with their share of the query's IDF-weighted terms (retrieval/evidence.py),
        the IDF counted over what the caller (`principals`) may read, like the search's."""
        terms = self._lexical.encode_query(query)
        if not terms:
            return [replace(c, coverage=1.0) for c in chunks]
        weights = term_weights(terms.indices, self._idf(tenant_id, principals, terms))
        return [
            replace(c, coverage=coverage(weights, self._lexical.encode_query(c.text).indices))
            for c in chunks
        ]

    def with_sentence_signals(
        self,
        tenant_id: str,
        query: str,
        chunks: list[RetrievedChunk],
        principals: tuple[str, ...] | None = None,
    ) -> list[RetrievedChunk]:
        """The chunks with their best sentence's dense cosine and term coverage: a passage that
        answers holds one sentence that says it, where a neighbour on the same topic only
        shares words spread over the whole chunk. One encode of every sentence of the chunks."""
        if not chunks:
            return []
        sentences = [evidence_sentences(c.text) for c in chunks]
        flat = [s for group in sentences for s in group]
        query_vector = self._embedder.embed_query(query)
        vectors = self._sentence_vectors.get_or_compute(flat, self._embedder.embed_passages)
        terms = self._lexical.encode_query(query)
        weights = (
            term_weights(terms.indices, self._idf(tenant_id, principals, terms)) if terms else {}
        )
        scored: list[RetrievedChunk] = []
        start = 0
        for chunk, group in zip(chunks, sentences, strict=True):
            own = vectors[start : start + len(group)]
            start += len(group)
            covered = [coverage(weights, self._lexical.encode_query(s).indices) for s in group]
            scored.append(
                replace(
                    chunk,
                    sentence_score=best_sentence_score(query_vector, own),
                    sentence_coverage=max(covered, default=0.0),
                )
            )
        return scored

    def _search(
        self,
        tenant_id: str,
        text: str,
        mode: RetrievalMode,
        limit: int,
        filters: SearchFilter | None,
        timings: dict[str, float],
    ) -> list[RetrievedChunk]:
        """One query's ranking; the stage timings add up over the queries of an expansion."""
        started = time.perf_counter()
        with span("embed", {"gen_ai.operation.name": "embeddings"}):
            dense = self._embedder.embed_query(text) if mode is not RetrievalMode.LEXICAL else None
        timings["embed_query_ms"] = timings.get("embed_query_ms", 0.0) + _ms_since(started)
        sparse = self._lexical.encode_query(text) if mode is not RetrievalMode.DENSE else None
        if sparse and self._settings.idf_power != 1:
            started = time.perf_counter()
            idf = self._idf(tenant_id, filters.principals if filters else None, sparse)
            sparse = weight_by_idf(sparse, idf, self._settings.idf_power)
            timings["idf_ms"] = timings.get("idf_ms", 0.0) + _ms_since(started)

        started = time.perf_counter()
        with span("search", {"db.system.name": "qdrant", "ragkb.candidates": limit}):
            hits = self._store.search(
                tenant_id=tenant_id,
                query=HybridQuery(
                    limit=limit,
                    dense=dense,
                    sparse=sparse,
                    candidates=self._settings.candidates,
                    fusion=self._settings.fusion,
                    rrf_k=self._settings.rrf_k,
                    dense_weight=self._settings.dense_weight,
                    sparse_weight=self._settings.lexical_weight,
                ),
                filters=filters,
            )
        timings["retrieve_ms"] = timings.get("retrieve_ms", 0.0) + _ms_since(started)
        return [RetrievedChunk.from_hit(h) for h in hits]

    def _idf(
        self, tenant_id: str, principals: tuple[str, ...] | None, terms: SparseVector
    ) -> dict[int, float]:
        """The IDF of each query term over what the caller may read (the store's corpus for the
        same tenant and principals): remembered ones, the rest read from the store."""
        corpus = corpus_key(tenant_id, principals)
        known, missing = self._idf_cache.lookup(corpus, terms.indices)
        if missing:
            asked = SparseVector(tuple(missing), tuple(1.0 for _ in missing))
            found = self._store.idf(tenant_id=tenant_id, terms=asked, principals=principals)
            self._idf_cache.remember(corpus, missing, found)
            known.update(found)
        return {term: idf for term, idf in known.items() if idf != UNKNOWN}


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
