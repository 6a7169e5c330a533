"""The answer use case: retrieve → (no evidence: say so) → prompt → reader → citations."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from generation.citations import parse_citations
from generation.client import ChatClient
from generation.prompt import NO_ANSWER, build_messages, is_refusal
from retrieval.retriever import RetrievedChunk, Retriever

QUOTE_CHARS = 600


@dataclass(frozen=True)
class Citation:
    number: int
    claim: str
    document_id: str
    path: str
    title: str | None
    page: int | None
    section: str | None
    char_start: int
    char_end: int
    quote: str
    score: float


@dataclass
class AnswerResult:
    answer: str
    answered: bool
    sources: list[RetrievedChunk]
    citations: list[Citation]
    invalid_citation_numbers: list[int]
    stages: list[str]
    timings_ms: dict[str, float] = field(default_factory=dict)


class AnswerService:
    def __init__(self, *, retriever: Retriever, chat_client: ChatClient) -> None:
        self._retriever = retriever
        self._chat = chat_client

    def answer(self, *, tenant_id: str, question: str, top_k: int) -> AnswerResult:
        started = time.perf_counter()
        retrieval = self._retriever.retrieve(tenant_id=tenant_id, query=question, top_k=top_k)
        timings = dict(retrieval.timings_ms)
        sources = retrieval.chunks
        if not sources:
            # Nothing relevant enough: answering anyway would invite the reader to make it up.
            timings["total_ms"] = _ms_since(started)
            return AnswerResult(
                answer=NO_ANSWER,
                answered=False,
                sources=[],
                citations=[],
                invalid_citation_numbers=[],
                stages=[*retrieval.stages, "no_evidence"],
                timings_ms=timings,
            )

        generation_started = time.perf_counter()
        result = self._chat.complete(build_messages(question, sources))
        timings["generate_ms"] = _ms_since(generation_started)

        parsed = parse_citations(result.text, source_count=len(sources))
        citations = [
            _citation(mark.number, mark.claim, sources[mark.number - 1]) for mark in parsed.marks
        ]
        timings["total_ms"] = _ms_since(started)
        return AnswerResult(
            answer=parsed.answer,
            answered=bool(citations) and not is_refusal(parsed.answer),
            sources=sources,
            citations=citations,
            invalid_citation_numbers=parsed.invalid_numbers,
            stages=[*retrieval.stages, f"read:{self._chat.model}"],
            timings_ms=timings,
        )


def _citation(number: int, claim: str, chunk: RetrievedChunk) -> Citation:
    return Citation(
        number=number,
        claim=claim,
        document_id=chunk.document_id,
        path=chunk.path,
        title=chunk.title,
        page=chunk.page,
        section=chunk.section,
        char_start=chunk.char_start,
        char_end=chunk.char_end,
        quote=chunk.text[:QUOTE_CHARS],
        score=chunk.rerank_score if chunk.rerank_score is not None else chunk.retrieval_score,
    )


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
