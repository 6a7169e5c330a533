"""The answer use case: (rewrite) → retrieve → (no evidence: say so) → prompt → read → cite."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.metrics import Metrics
from core.settings import ReaderSettings
from core.vectorstore import SearchFilter
from generation.citations import parse_citations
from generation.client import ChatClient, StreamStats
from generation.prompt import (
    NO_ANSWER,
    build_messages,
    build_rewrite_messages,
    fit_sources,
    is_refusal,
    unmark,
)
from generation.verify import CitationVerifier
from retrieval.retriever import RetrievedChunk, Retriever

logger = logging.getLogger(__name__)

REWRITE_MAX_TOKENS = 64


@dataclass(frozen=True)
class Citation:
    number: int
    claim: str
    document_id: str
    path: str
    title: str | None
    page: int | None
    section: str | None
    char_start: int  # the quoted span, in the document's extracted text
    char_end: int
    quote: str
    score: float
    verified: bool
    reason: str | None  # why the quote does not state the claim; None when verified
    lexical_support: float
    semantic_support: float


@dataclass
class AnswerResult:
    answer: str
    answered: bool
    verified: bool
    question: str
    standalone_question: str
    sources: list[RetrievedChunk]
    citations: list[Citation]
    invalid_citation_numbers: list[int]
    stages: list[str]
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class AnswerEvent:
    """One step of a streamed answer: sources, token, citations, done."""

    kind: str
    data: Any


@dataclass
class _Prepared:
    question: str
    standalone: str
    sources: list[RetrievedChunk]
    stages: list[str]
    timings_ms: dict[str, float]
    started: float


class AnswerService:
    def __init__(
        self,
        *,
        retriever: Retriever,
        chat_client: ChatClient,
        verifier: CitationVerifier,
        count_tokens: Callable[[str], int],
        reader_settings: ReaderSettings,
        metrics: Metrics,
    ) -> None:
        self._retriever = retriever
        self._chat = chat_client
        self._verifier = verifier
        self._count_tokens = count_tokens
        self._reader_settings = reader_settings
        self._metrics = metrics
        self._datamark = reader_settings.datamark_sources

    def answer(
        self,
        *,
        tenant_id: str,
        question: str,
        top_k: int,
        history: Sequence[tuple[str, str]] = (),
        filters: SearchFilter | None = None,
    ) -> AnswerResult:
        prepared = self._prepare(tenant_id, question, top_k, history, filters)
        if not prepared.sources:
            return self._no_evidence(prepared)
        started = time.perf_counter()
        result = self._chat.complete(
            build_messages(prepared.standalone, prepared.sources, datamark=self._datamark),
            tenant_id=tenant_id,
        )
        prepared.timings_ms["generate_ms"] = _ms_since(started)
        if result.completion_tokens and result.generation_ms:
            self._metrics.reader_tokens_per_second.observe(
                result.completion_tokens / (result.generation_ms / 1000)
            )
        return self._finish(prepared, unmark(result.text))

    def stream(
        self,
        *,
        tenant_id: str,
        question: str,
        top_k: int,
        history: Sequence[tuple[str, str]] = (),
        filters: SearchFilter | None = None,
    ) -> Iterator[AnswerEvent]:
        """Events as they happen; closing the iterator stops the reader's generation."""
        prepared = self._prepare(tenant_id, question, top_k, history, filters)
        yield AnswerEvent("sources", prepared.sources)
        if not prepared.sources:
            yield AnswerEvent("done", self._no_evidence(prepared))
            return
        stats = StreamStats()
        messages = build_messages(prepared.standalone, prepared.sources, datamark=self._datamark)
        for delta in self._chat.stream(messages, stats, tenant_id=tenant_id):
            yield AnswerEvent("token", unmark(delta))
        if stats.ttft_ms is not None:
            prepared.timings_ms["ttft_ms"] = stats.ttft_ms
            self._metrics.reader_ttft_seconds.observe(stats.ttft_ms / 1000)
        if stats.generation_ms is not None:
            prepared.timings_ms["generate_ms"] = stats.generation_ms
        if stats.tokens_per_s is not None:
            self._metrics.reader_tokens_per_second.observe(stats.tokens_per_s)
        result = self._finish(prepared, unmark(stats.text))
        yield AnswerEvent("citations", result)
        yield AnswerEvent("done", result)

    def _prepare(
        self,
        tenant_id: str,
        question: str,
        top_k: int,
        history: Sequence[tuple[str, str]],
        filters: SearchFilter | None,
    ) -> _Prepared:
        started = time.perf_counter()
        timings: dict[str, float] = {}
        stages: list[str] = []
        standalone = question
        if history:
            rewrite_started = time.perf_counter()
            rewritten = self._chat.complete(
                build_rewrite_messages(history, question),
                max_tokens=REWRITE_MAX_TOKENS,
                tenant_id=tenant_id,
            ).text.strip()
            standalone = rewritten.splitlines()[0].strip() if rewritten else question
            timings["rewrite_ms"] = _ms_since(rewrite_started)
            stages.append("rewrite")
        retrieval = self._retriever.retrieve(
            tenant_id=tenant_id, query=standalone, top_k=top_k, filters=filters
        )
        timings.update(retrieval.timings_ms)
        stages.extend(retrieval.stages)
        sources = fit_sources(
            standalone,
            retrieval.chunks,
            count_tokens=self._count_tokens,
            context_tokens=self._reader_settings.context_tokens,
            answer_tokens=self._reader_settings.max_tokens,
            datamark=self._datamark,
        )
        return _Prepared(question, standalone, sources, stages, timings, started)

    def _no_evidence(self, prepared: _Prepared) -> AnswerResult:
        # Nothing relevant enough: answering anyway would invite the reader to make it up.
        prepared.timings_ms["total_ms"] = _ms_since(prepared.started)
        self._metrics.observe_stages(prepared.timings_ms)
        # Outcome and cost only: a log line must not hold the question or the sources' text.
        logger.info(
            "question: no evidence among the sources (%.0f ms)", prepared.timings_ms["total_ms"]
        )
        return AnswerResult(
            answer=NO_ANSWER,
            answered=False,
            verified=False,
            question=prepared.question,
            standalone_question=prepared.standalone,
            sources=[],
            citations=[],
            invalid_citation_numbers=[],
            stages=[*prepared.stages, "no_evidence"],
            timings_ms=prepared.timings_ms,
        )

    def _finish(self, prepared: _Prepared, text: str) -> AnswerResult:
        verify_started = time.perf_counter()
        parsed = parse_citations(text, source_count=len(prepared.sources))
        citations = [
            self._citation(mark.number, mark.claim, prepared.sources[mark.number - 1])
            for mark in parsed.marks
        ]
        prepared.timings_ms["verify_ms"] = _ms_since(verify_started)
        prepared.timings_ms["total_ms"] = _ms_since(prepared.started)
        self._metrics.observe_stages(prepared.timings_ms)
        for citation in citations:
            outcome = "verified" if citation.verified else "unsupported"
            self._metrics.citations_total.labels(outcome=outcome).inc()
        if parsed.invalid_numbers:
            self._metrics.citations_total.labels(outcome="no_such_source").inc(
                len(parsed.invalid_numbers)
            )
        # Answered: the reader gave an answer rather than a refusal. Verified: it cites, and every
        # citation is supported by its source. An uncited answer is returned, flagged unverified.
        answered = bool(parsed.answer) and not is_refusal(parsed.answer)
        logger.info(
            "question: answered=%s, %d sources, %d citations (%d unsupported), %.0f ms",
            answered, len(prepared.sources), len(citations),
            sum(not c.verified for c in citations), prepared.timings_ms["total_ms"],
        )  # fmt: skip
        return AnswerResult(
            answer=parsed.answer,
            answered=answered,
            verified=answered and bool(citations) and all(c.verified for c in citations),
            question=prepared.question,
            standalone_question=prepared.standalone,
            sources=prepared.sources,
            citations=citations,
            invalid_citation_numbers=parsed.invalid_numbers,
            stages=[*prepared.stages, f"read:{self._chat.model}", "verify"],
            timings_ms=prepared.timings_ms,
        )

    def _citation(self, number: int, claim: str, chunk: RetrievedChunk) -> Citation:
        support = self._verifier.support(claim, chunk.text)
        return Citation(
            number=number,
            claim=claim,
            document_id=chunk.document_id,
            path=chunk.path,
            title=chunk.title,
            page=chunk.page,
            section=chunk.section,
            char_start=chunk.char_start + support.span_start,
            char_end=chunk.char_start + support.span_end,
            quote=chunk.text[support.span_start : support.span_end],
            score=chunk.rerank_score if chunk.rerank_score is not None else chunk.retrieval_score,
            verified=support.verified,
            reason=support.reason,
            lexical_support=support.lexical,
            semantic_support=support.semantic,
        )


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
