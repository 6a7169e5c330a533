"""Retrieve a tenant's most relevant chunks: dense search, then the rerank stage."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from core.embedding import Embedder
from core.vectorstore import DOCUMENT_FIELD, SearchHit, VectorStore
from retrieval.rerank import NoReranker, Reranker


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
    rerank_score: float | None = None

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
        )


@dataclass
class RetrievalResult:
    chunks: list[RetrievedChunk]
    stages: list[str]
    timings_ms: dict[str, float] = field(default_factory=dict)


class Retriever:
    def __init__(
        self,
        *,
        store: VectorStore,
        embedder: Embedder,
        reranker: Reranker,
        candidates: int,
        min_score: float,
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._reranker = reranker
        self._candidates = candidates
        self._min_score = min_score

    def retrieve(self, *, tenant_id: str, query: str, top_k: int) -> RetrievalResult:
        """The tenant's best `top_k` chunks scoring at least the evidence threshold."""
        timings: dict[str, float] = {}
        started = time.perf_counter()
        query_vector = self._embedder.embed_query(query)
        timings["embed_query_ms"] = _ms_since(started)

        started = time.perf_counter()
        hits = self._store.search_dense(
            tenant_id=tenant_id, vector=query_vector, limit=max(top_k, self._candidates)
        )
        chunks = [RetrievedChunk.from_hit(h) for h in hits if h.score >= self._min_score]
        timings["retrieve_ms"] = _ms_since(started)
        stages = ["dense"]

        if chunks and not isinstance(self._reranker, NoReranker):
            started = time.perf_counter()
            scores = self._reranker.rerank(query, [c.text for c in chunks])
            chunks = [
                _with_rerank_score(c, s)
                for c, s in sorted(zip(chunks, scores, strict=True), key=lambda cs: -cs[1])
            ]
            timings["rerank_ms"] = _ms_since(started)
            stages.append(f"rerank:{self._reranker.name}")
        return RetrievalResult(chunks=chunks[:top_k], stages=stages, timings_ms=timings)


def _with_rerank_score(chunk: RetrievedChunk, score: float) -> RetrievedChunk:
    from dataclasses import replace

    return replace(chunk, rerank_score=score)


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
