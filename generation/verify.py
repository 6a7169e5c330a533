"""Check that a cited source supports the sentence that cites it, and find the supporting span.

Support is measured two ways and either may verify a citation: lexical (the share of the claim's
content words found in a span of the source; CJK text is compared by character bigrams) and
semantic (cosine similarity of the claim and the span with the embedding model). The thresholds
come from `bench/citation_threshold.py` (SciFact claims against their evidence and against hard
negatives); see docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from core.embedding import Embedder
from core.text import trim_span

_WORD = re.compile(r"[^\W\d_]+|\d+(?:[.,]\d+)*", re.UNICODE)
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_SENTENCE = re.compile(r"[^.!?。！？\n]+[.!?。！？]*")
_STOPWORD_TEXT = """
a an and are as at be by for from has have in is it its of on or that the their this to was were
which with what who how when where why do does did not no can will would should may also than then
these those there they he she we you i our your his her them into about
"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


@dataclass(frozen=True)
class Support:
    lexical: float
    semantic: float
    span_start: int  # offsets in the source text
    span_end: int
    verified: bool


def content_tokens(text: str) -> set[str]:
    """Lower-cased content words, plus character bigrams for CJK runs."""
    tokens: set[str] = set()
    for word in _WORD.findall(text.lower()):
        if _CJK.search(word):
            chars = [c for c in word if _CJK.match(c)]
            tokens.update(a + b for a, b in itertools.pairwise(chars))
            if len(chars) == 1:
                tokens.add(chars[0])
        elif word not in _STOPWORDS and (len(word) > 1 or word.isdigit()):
            tokens.add(word)
    return tokens


def lexical_support(claim: str, span: str) -> float:
    claim_tokens = content_tokens(claim)
    if not claim_tokens:
        return 0.0
    return len(claim_tokens & content_tokens(span)) / len(claim_tokens)


def candidate_spans(source: str) -> list[tuple[int, int]]:
    """Sentences of the source, and pairs of neighbouring sentences."""
    sentences = [(m.start(), m.end()) for m in _SENTENCE.finditer(source) if m.group().strip()]
    if not sentences:
        return [(0, len(source))]
    pairs = [(a[0], b[1]) for a, b in itertools.pairwise(sentences)]
    return sentences + pairs


class CitationVerifier:
    def __init__(
        self, *, embedder: Embedder, lexical_threshold: float, semantic_threshold: float
    ) -> None:
        self._embedder = embedder
        self._lexical_threshold = lexical_threshold
        self._semantic_threshold = semantic_threshold

    def support(self, claim: str, source: str) -> Support:
        """How well `source` supports `claim`, and the span that supports it best."""
        spans = candidate_spans(source)
        lexical = [lexical_support(claim, source[a:b]) for a, b in spans]
        vectors = self._embedder.embed_passages([claim, *(source[a:b] for a, b in spans)])
        claim_vector, span_vectors = vectors[0], vectors[1:]
        semantic = [_dot(claim_vector, v) for v in span_vectors]
        best = max(
            range(len(spans)),
            key=lambda i: (lexical[i] + semantic[i], -(spans[i][1] - spans[i][0])),
        )
        best_lexical, best_semantic = max(lexical), max(semantic)
        start, end = trim_span(source, *spans[best])
        return Support(
            lexical=round(best_lexical, 4),
            semantic=round(best_semantic, 4),
            span_start=start,
            span_end=end,
            verified=bool(claim.strip())
            and (
                best_lexical >= self._lexical_threshold or best_semantic >= self._semantic_threshold
            ),
        )


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    # Embeddings are normalised, so the dot product is the cosine.
    return float(sum(x * y for x, y in zip(a, b, strict=True)))
