"""The answer use case: (rewrite) → retrieve → (no evidence: say so) → prompt → read → cite
→ (nothing the answer says is stated by a source: say so)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.metrics import Metrics
from core.settings import QueryExpansion, ReaderSettings
from core.telemetry import (
    capture_content,
    reader_span_attributes,
    span,
    start_detached_span,
)
from core.vectorstore import SearchFilter
from generation.citations import parse_citations
from generation.client import DEFAULT_OPTIONS, ChatClient, GenerationOptions, StreamStats
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
    usage: TokenUsage = field(default_factory=lambda: TokenUsage(0, 0))


@dataclass(frozen=True)
class TokenUsage:
    """Reader tokens one answer cost (the rewrite and the answer call; 0 when not called).
    From the reader's own usage report; a streamed answer counts its prompt with the reader's
    tokenizer and its completion as the deltas it received (one token each from llama.cpp and
    vLLM)."""

    prompt_tokens: int
    completion_tokens: int

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )


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
    usage: TokenUsage


_EXPANSION_STAGES = frozenset(e.value for e in QueryExpansion if e is not QueryExpansion.NONE)


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
        refuse_unsupported: bool = False,
        unsupported_min_dense: float | None = None,
        unsupported_min_fused: float | None = None,
    ) -> None:
        """An answer none of whose citations is verified (or that cites none) is "not in the
        sources" (stage `unsupported`) when `refuse_unsupported` is set, or when no source's
        dense cosine with the question reaches `unsupported_min_dense`, or no source's fused
        (DBSF) score of a hybrid search without rerank reaches `unsupported_min_fused` (None:
        that signal is not used; `CitationSettings.unsupported_min_scores` and
        `unsupported_min_fused_scores`)."""
        self._refuse_unsupported = refuse_unsupported
        self._unsupported_min_dense = unsupported_min_dense
        self._unsupported_min_fused = unsupported_min_fused
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
        options: GenerationOptions = DEFAULT_OPTIONS,
    ) -> AnswerResult:
        """Answer from the tenant's sources; `options` set the reader's sampling for the answer
        (not the rewrite). Raises ReaderUnavailableError when the reader cannot answer."""
        prepared = self._prepare(tenant_id, question, top_k, history, filters, options)
        if not prepared.sources:
            return self._no_evidence(prepared)
        started = time.perf_counter()
        messages = build_messages(
            prepared.standalone,
            prepared.sources,
            datamark=self._datamark,
            instructions=options.instructions,
        )
        with span("read", self._read_attributes(options), tenant_id=tenant_id) as reading:
            result = self._chat.complete(messages, tenant_id=tenant_id, options=options)
            # llama.cpp reports no usage on a stream: the prompt is counted with its tokenizer.
            usage = TokenUsage(
                result.prompt_tokens or self._count_messages(messages),
                result.completion_tokens or 0,
            )
            _record_usage(reading, usage.prompt_tokens, usage.completion_tokens, result.text)
        prepared.timings_ms["generate_ms"] = _ms_since(started)
        prepared.usage += usage
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
        options: GenerationOptions = DEFAULT_OPTIONS,
    ) -> Iterator[AnswerEvent]:
        """Events as they happen; closing the iterator stops the reader's generation."""
        prepared = self._prepare(tenant_id, question, top_k, history, filters, options)
        yield AnswerEvent("sources", prepared.sources)
        if not prepared.sources:
            yield AnswerEvent("done", self._no_evidence(prepared))
            return
        stats = StreamStats()
        messages = build_messages(
            prepared.standalone,
            prepared.sources,
            datamark=self._datamark,
            instructions=options.instructions,
        )
        reading = start_detached_span("read", self._read_attributes(options), tenant_id)
        try:
            for delta in self._chat.stream(messages, stats, tenant_id=tenant_id, options=options):
                yield AnswerEvent("token", unmark(delta))
            prompt_tokens = self._count_messages(messages)
            prepared.usage += TokenUsage(prompt_tokens, stats.completion_tokens)
            _record_usage(reading, prompt_tokens, stats.completion_tokens, stats.text)
        finally:
            reading.end()
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
        options: GenerationOptions = DEFAULT_OPTIONS,
    ) -> _Prepared:
        started = time.perf_counter()
        timings: dict[str, float] = {}
        stages: list[str] = []
        standalone = question
        usage = TokenUsage(0, 0)
        if history:
            rewrite_started = time.perf_counter()
            with span("rewrite", reader_span_attributes(self._chat.model), tenant_id=tenant_id):
                rewrite = self._chat.complete(
                    build_rewrite_messages(history, question),
                    max_tokens=REWRITE_MAX_TOKENS,
                    tenant_id=tenant_id,
                )
            usage = TokenUsage(rewrite.prompt_tokens or 0, rewrite.completion_tokens or 0)
            rewritten = rewrite.text.strip()
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
            instructions=options.instructions,
        )
        return _Prepared(question, standalone, sources, stages, timings, started, usage)

    def _read_attributes(self, options: GenerationOptions) -> dict[str, Any]:
        fields = options.request_fields(self._reader_settings)
        return reader_span_attributes(self._chat.model, **fields)

    def _count_messages(self, messages: Sequence[Any]) -> int:
        """Prompt tokens of a request, with the reader's tokenizer (when it does not report)."""
        return sum(self._count_tokens(str(m.get("content") or "")) for m in messages)

    def _no_evidence(self, prepared: _Prepared) -> AnswerResult:
        # Nothing relevant enough: answering anyway would invite the reader to make it up.
        return self._refusal(prepared, "no_evidence", "no evidence among the sources")

    def _refusal(self, prepared: _Prepared, stage: str, why: str) -> AnswerResult:
        """The one "not in the sources" answer every front shows, whichever guard gave it:
        `no_evidence` (the evidence gate, before any reader call), `reader_refused` (the reader
        said the sources do not answer) or `unsupported` (no citation of the reader's answer
        is stated by its source). It carries no citations: a refusal that cites would read as
        a sourced claim."""
        prepared.timings_ms["total_ms"] = _ms_since(prepared.started)
        self._metrics.observe_stages(prepared.timings_ms)
        # Outcome and cost only: a log line must not hold the question or the sources' text.
        logger.info(
            "question: not answered (%s), %d sources, %.0f ms",
            why, len(prepared.sources), prepared.timings_ms["total_ms"],
        )  # fmt: skip
        read = [] if stage == "no_evidence" else [f"read:{self._chat.model}"]
        return AnswerResult(
            answer=NO_ANSWER,
            answered=False,
            verified=False,
            question=prepared.question,
            standalone_question=prepared.standalone,
            sources=prepared.sources,  # none when the gate refused
            citations=[],
            invalid_citation_numbers=[],
            stages=[*prepared.stages, *read, stage],
            timings_ms=prepared.timings_ms,
            usage=prepared.usage,
        )

    def _finish(self, prepared: _Prepared, text: str) -> AnswerResult:
        verify_started = time.perf_counter()
        parsed = parse_citations(text, source_count=len(prepared.sources))
        if not parsed.answer or is_refusal(parsed.answer):
            return self._refusal(prepared, "reader_refused", "the reader found no answer")
        with span("verify", {"ragkb.citations": len(parsed.marks)}):
            citations = [
                self._citation(mark.number, mark.claim, prepared.sources[mark.number - 1])
                for mark in parsed.marks
            ]
        prepared.timings_ms["verify_ms"] = _ms_since(verify_started)
        if self._refuses_unsupported(prepared, citations):
            # Whatever the reader wrote, no source states any of it (it cited none, or every
            # citation failed verification) and the sources are only loosely about the
            # question: an answer from its own knowledge, or a guess.
            self._count_citations(citations, parsed.invalid_numbers)
            return self._refusal(prepared, "unsupported", "no citation is stated by its source")
        prepared.timings_ms["total_ms"] = _ms_since(prepared.started)
        self._metrics.observe_stages(prepared.timings_ms)
        self._count_citations(citations, parsed.invalid_numbers)
        logger.info(
            "question: answered, %d sources, %d citations (%d unsupported), %.0f ms",
            len(prepared.sources), len(citations),
            sum(not c.verified for c in citations), prepared.timings_ms["total_ms"],
        )  # fmt: skip
        return AnswerResult(
            answer=parsed.answer,
            answered=True,
            # Verified: it cites, and every citation is supported by its source. An uncited
            # answer is returned, flagged unverified.
            verified=bool(citations) and all(c.verified for c in citations),
            question=prepared.question,
            standalone_question=prepared.standalone,
            sources=prepared.sources,
            citations=citations,
            invalid_citation_numbers=parsed.invalid_numbers,
            stages=[*prepared.stages, f"read:{self._chat.model}", "verify"],
            timings_ms=prepared.timings_ms,
            usage=prepared.usage,
        )

    def _refuses_unsupported(self, prepared: _Prepared, citations: Sequence[Citation]) -> bool:
        """Whether an answer is "not in the sources" for want of a verified citation: always
        with `refuse_unsupported`, else when a configured signal says no source is close to the
        question (a signal a search did not measure keeps the answer)."""
        if any(c.verified for c in citations):
            return False
        if self._refuse_unsupported:
            return True
        sources = prepared.sources
        if self._unsupported_min_dense is not None:
            dense = [s.dense_score for s in sources if s.dense_score is not None]
            if dense and max(dense) < self._unsupported_min_dense:
                return True
        # The retrieval score is a DBSF one only for a hybrid search of the question alone
        # (expanded searches are fused again by rank), not reranked.
        fused = (
            "hybrid" in prepared.stages
            and not _EXPANSION_STAGES.intersection(prepared.stages)
            and all(s.rerank_score is None for s in sources)
        )
        if self._unsupported_min_fused is not None and fused and sources:
            return max(s.retrieval_score for s in sources) < self._unsupported_min_fused
        return False

    def _count_citations(self, citations: Sequence[Citation], invalid: Sequence[int]) -> None:
        for citation in citations:
            outcome = "verified" if citation.verified else "unsupported"
            self._metrics.citations_total.labels(outcome=outcome).inc()
        if invalid:
            self._metrics.citations_total.labels(outcome="no_such_source").inc(len(invalid))

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


def _record_usage(current: Any, prompt: int | None, completion: int | None, text: str) -> None:
    current.set_attribute("gen_ai.usage.input_tokens", prompt or 0)
    current.set_attribute("gen_ai.usage.output_tokens", completion or 0)
    if capture_content():
        current.set_attribute("gen_ai.output.messages", text)


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
