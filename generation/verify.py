"""Check that a cited source states the sentence that cites it, and find the span that does.

A span verifies a claim when it states the claim's facts and is about the claim. Facts
(`generation.facts`): every number, date, capitalised name and negation of the claim is in the
span — similarity alone verified "1 Stanley Cup" from "Maple Leafs | TOR | 13". Aboutness, either
of two signals: lexical (the share of the claim's content words found in the span; CJK text is
compared by character bigrams) or semantic (cosine similarity of claim and span with the embedding
model), so paraphrases still verify. The similarity thresholds come from
`bench/citation_threshold.py`; the whole rule is measured by `bench/verification.py`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from core.embedding import Embedder
from generation.facts import missing_facts
from generation.sentences import sentence_spans

_WORD = re.compile(r"[^\W\d_]+|\d+(?:[.,]\d+)*", re.UNICODE)
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
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
    reason: str | None = None  # why not verified, e.g. "number 1 not in the source; ..."


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


_EMBEDDED_SPANS = 8


@dataclass(frozen=True)
class CandidateSpan:
    start: int
    end: int
    context: str  # text that names what the span's values are: a table's header row


def candidate_spans(source: str) -> list[CandidateSpan]:
    """Sentences of the source, pairs of neighbouring prose sentences, and table rows alone.

    Table rows ("a | b | c" lines) are never paired: a neighbouring row's number would then
    "support" a claim about this row. A row carries its table's header row as context.
    """
    sentences = sentence_spans(source)
    if not sentences:
        return [CandidateSpan(0, len(source), "")]
    spans: list[CandidateSpan] = []
    header = ""
    previous_row = False
    for start, end in sentences:
        row = _is_table_row(source[start:end])
        if row and not previous_row:
            header = source[start:end]
        spans.append(
            CandidateSpan(start, end, header if row and source[start:end] != header else "")
        )
        previous_row = row
    prose = [not _is_table_row(source[start:end]) for start, end in sentences]
    for width in (2,):
        for i in range(len(sentences) - width + 1):
            if all(prose[i : i + width]):
                spans.append(CandidateSpan(sentences[i][0], sentences[i + width - 1][1], ""))
    return spans


def _is_table_row(text: str) -> bool:
    return " | " in text or "\t" in text


class CitationVerifier:
    def __init__(
        self, *, embedder: Embedder, lexical_threshold: float, semantic_threshold: float
    ) -> None:
        self._embedder = embedder
        self._lexical_threshold = lexical_threshold
        self._semantic_threshold = semantic_threshold

    def support(self, claim: str, source: str) -> Support:
        """How well `source` states `claim`: the quoted span, its scores, and why not if not.

        The quote is the best-scoring span (lexical + semantic) among those that state the
        claim's facts and clear a similarity threshold; when none does, the best-scoring span
        overall, with the reason it fails.
        """
        if not claim.strip():
            return Support(0.0, 0.0, 0, 0, verified=False, reason="no claim sentence to check")
        spans = candidate_spans(source)
        texts = [_joined(span.context, source[span.start : span.end]) for span in spans]
        lexical = [lexical_support(claim, text) for text in texts]
        # Names may be anywhere in a prose chunk (an abstract names its subject once), but a
        # table row must name its own subject: another row's figures are not this row's.
        facts = [
            missing_facts(claim, source[span.start : span.end], context=span.context or source)
            for span in spans
        ]
        # Only the likeliest spans are embedded (those stating the facts, then by word overlap):
        # encoding every sentence and pair of a long chunk cost more than the rest of the check.
        shortlist = sorted(
            range(len(spans)), key=lambda i: (facts[i] is None, lexical[i]), reverse=True
        )[:_EMBEDDED_SPANS]
        vectors = self._embedder.embed_passages([claim, *(texts[i] for i in shortlist)])
        semantic = [-1.0] * len(spans)
        for i, vector in zip(shortlist, vectors[1:], strict=True):
            semantic[i] = _dot(vectors[0], vector)
        similar = [
            lexical[i] >= self._lexical_threshold or semantic[i] >= self._semantic_threshold
            for i in range(len(spans))
        ]

        def rank(i: int) -> tuple[bool, float, int]:
            return (facts[i] is None and similar[i], lexical[i] + semantic[i],
                    -(spans[i].end - spans[i].start))  # fmt: skip

        best = max(range(len(spans)), key=rank)
        verified = facts[best] is None and similar[best]
        reason = None
        if not verified:
            reason = facts[best] or (
                f"the source does not state the claim (word overlap {lexical[best]:.2f} < "
                f"{self._lexical_threshold:.2f}, similarity {semantic[best]:.2f} < "
                f"{self._semantic_threshold:.2f})"
            )
        return Support(
            lexical=round(lexical[best], 4),
            semantic=round(semantic[best], 4),
            span_start=spans[best].start,
            span_end=spans[best].end,
            verified=verified,
            reason=reason,
        )


def _joined(context: str, text: str) -> str:
    return f"{context}\n{text}" if context else text


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    # Embeddings are normalised, so the dot product is the cosine.
    return float(sum(x * y for x, y in zip(a, b, strict=True)))
