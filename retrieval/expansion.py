"""Optional query stages through the reader: multi-query rewriting and HyDE.

Both ask the reader for extra search texts; each is retrieved like the question itself and the
rankings are fused by reciprocal rank, the question's own ranking included, so a poor rewrite can
only add candidates, never remove the question's. They cost one reader call per question (seconds
on the CPU reader), and `bench/query_expansion.py` measures what they give: off by default.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

from openai.types.chat import ChatCompletionMessageParam

from core.settings import QueryExpansion

if TYPE_CHECKING:
    from retrieval.retriever import RetrievedChunk

# (messages, max_tokens, tenant_id) -> the reader's text; ChatClient.complete fits behind it.
Complete = Callable[[list[ChatCompletionMessageParam], int, str | None], str]

MULTI_QUERY_PROMPT = (
    "Write {n} different search queries that would find documents answering the user's "
    "question: other words, synonyms, the technical terms an expert would use. Keep the "
    "question's language. One query per line, no numbering, nothing else."
)
HYDE_PROMPT = (
    "Write a short passage, two or three sentences, that answers the user's question as a "
    "reference document would. Keep the question's language. Write only the passage."
)
_LIST_MARKER = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")


class QueryExpander(Protocol):
    name: str

    def expand(self, question: str, *, tenant_id: str | None) -> list[str]:
        """Extra search texts for the question (the question itself not included)."""
        ...


class MultiQueryExpander:
    name = "multi_query"

    def __init__(self, complete: Complete, *, variants: int = 3, max_tokens: int = 96) -> None:
        self._complete = complete
        self._variants = variants
        self._max_tokens = max_tokens

    def expand(self, question: str, *, tenant_id: str | None) -> list[str]:
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": MULTI_QUERY_PROMPT.format(n=self._variants)},
            {"role": "user", "content": question},
        ]
        text = self._complete(messages, self._max_tokens, tenant_id)
        return parse_queries(text, question=question, limit=self._variants)


class HydeExpander:
    name = "hyde"

    def __init__(self, complete: Complete, *, max_tokens: int = 128) -> None:
        self._complete = complete
        self._max_tokens = max_tokens

    def expand(self, question: str, *, tenant_id: str | None) -> list[str]:
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": HYDE_PROMPT},
            {"role": "user", "content": question},
        ]
        passage = " ".join(self._complete(messages, self._max_tokens, tenant_id).split())
        return [passage] if passage else []


def parse_queries(text: str, *, question: str, limit: int) -> list[str]:
    """Distinct non-empty lines without list markers, none equal to the question."""
    seen = {question.strip().lower()}
    queries: list[str] = []
    for line in text.splitlines():
        query = _LIST_MARKER.sub("", line).strip().strip('"').strip()
        if query and query.lower() not in seen:
            seen.add(query.lower())
            queries.append(query)
    return queries[:limit]


def fuse_rankings(
    rankings: Sequence[Sequence[RetrievedChunk]], *, k: int = 60
) -> list[RetrievedChunk]:
    """Reciprocal-rank fusion of several rankings of the same tenant's chunks.

    A chunk keeps the fields of its first appearance (the question's own ranking comes first, so
    its dense score stays the one measured against the question) with the fused score.
    """
    fused: dict[str, float] = {}
    first: dict[str, RetrievedChunk] = {}
    for ranking in rankings:
        for rank, chunk in enumerate(ranking, start=1):
            fused[chunk.point_id] = fused.get(chunk.point_id, 0.0) + 1.0 / (k + rank)
            first.setdefault(chunk.point_id, chunk)
    ordered = sorted(fused, key=lambda point_id: -fused[point_id])
    return [replace(first[p], retrieval_score=fused[p]) for p in ordered]


def query_expanders(complete: Complete) -> dict[QueryExpansion, QueryExpander]:
    """Every expansion, for the retriever to pick the configured one (the evaluation switches)."""
    return {
        QueryExpansion.MULTI_QUERY: MultiQueryExpander(complete),
        QueryExpansion.HYDE: HydeExpander(complete),
    }
