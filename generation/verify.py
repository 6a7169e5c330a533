"""Check that a cited source states the sentence that cites it, and find the span that does.

The span that states a claim is the best-matching window (1-3 sentences, or a table row) of the
cited chunk; it verifies the claim when it states the claim's facts and is about the claim. Facts
(`generation.facts`): every number, date, capitalised name and negation of the claim is in that
span, not merely elsewhere in the chunk — similarity alone verified "1 Stanley Cup" from "Maple
Leafs | TOR | 13". Aboutness, either of two signals: lexical (the share of the claim's content
words found in the span; CJK text is compared by character bigrams) or semantic (cosine similarity
of claim and span with the embedding model; for a CJK claim only under a model that reads CJK), so
paraphrases still verify. The similarity thresholds come from `bench/citation_threshold.py`; the
whole rule is measured by `bench/verification.py`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from core.embedding import Embedder
from generation.facts import holds, missing_facts, quantities, scattered
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
_EMBEDDED_STATING = 4
# How much less than the best-matching span a span stating the claim may match (word overlap +
# cosine). On the calibration half of bench/verification.py (MiniLM), 0 (only the best-matching
# span) gave precision 0.959 at recall 0.727; 0.05: 0.938 at 0.745; 0.1: 0.924 at 0.752; 0.3:
# 0.917 at 0.758.
_RANK_MARGIN = 0.0
_WIDTHS = (1, 2, 3)  # sentences in a prose span


@dataclass(frozen=True)
class CandidateSpan:
    start: int
    end: int
    context: str  # text that names what the span's values are: a table's header row
    sentences: tuple[tuple[int, int], ...] = ()  # the sentences of a prose window


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
    for width in _WIDTHS[1:]:
        for i in range(len(sentences) - width + 1):
            if all(prose[i : i + width]):
                window = tuple(sentences[i : i + width])
                spans.append(CandidateSpan(window[0][0], window[-1][1], "", window))
    return spans


def _is_table_row(text: str) -> bool:
    return " | " in text or "\t" in text


class CitationVerifier:
    def __init__(
        self,
        *,
        embedder: Embedder,
        lexical_threshold: float,
        semantic_threshold: float,
        cjk_semantic_threshold: float | None = None,
        rank_margin: float = _RANK_MARGIN,
    ) -> None:
        self._embedder = embedder
        self._lexical_threshold = lexical_threshold
        self._semantic_threshold = semantic_threshold
        self._cjk_semantic_threshold = cjk_semantic_threshold
        self._rank_margin = rank_margin

    def support(self, claim: str, source: str) -> Support:
        """How well `source` states `claim`: the quoted span, its scores, and why not if not.

        The span that states the claim is the best-matching one (word overlap + similarity);
        the claim is verified by a span that states its facts, is similar enough, and matches
        nearly as well as the best one (within `rank_margin`): a sentence that merely shares the
        claim's numbers further away does not verify a claim its best match contradicts. The
        quote is the narrowest passing span inside the best-matching one; when none passes, the
        narrowest failing span there, with the reason it fails.
        """
        if not claim.strip():
            return Support(0.0, 0.0, 0, 0, verified=False, reason="no claim sentence to check")
        spans = candidate_spans(source)
        texts = [_joined(span.context, source[span.start : span.end]) for span in spans]
        lexical = [lexical_support(claim, text) for text in texts]
        facts = [self._facts(claim, source, span) for span in spans]
        # Only the likeliest spans are embedded (by word overlap, and those stating the facts):
        # encoding every window of a long chunk cost more than the rest of the check.
        by_overlap = sorted(range(len(spans)), key=lambda i: lexical[i], reverse=True)
        stating = [i for i in by_overlap if facts[i] is None]
        shortlist = list(
            dict.fromkeys([*by_overlap[:_EMBEDDED_SPANS], *stating[:_EMBEDDED_STATING]])
        )
        vectors = self._embedder.embed_passages([claim, *(texts[i] for i in shortlist)])
        semantic = [-1.0] * len(spans)
        for i, vector in zip(shortlist, vectors[1:], strict=True):
            semantic[i] = _dot(vectors[0], vector)
        semantic_threshold = self._semantic_threshold
        # One word-overlap threshold for every script. A lower one for Chinese claims under MiniLM
        # (checked by character bigrams alone) lost precision fast on the calibration half of
        # bench/verification.py: 0.65 gave 0.918 precision at 0.747 recall, 0.6 0.892 at 0.773,
        # 0.55 0.843 at 0.787, 0.5 0.789 at 0.800.
        lexical_threshold = self._lexical_threshold
        if _CJK.search(claim):
            # An English-only model's cosine between Chinese texts says nothing (MiniLM scores
            # any two Chinese passages alike): a CJK claim is then checked by its characters.
            semantic_threshold = (
                self._cjk_semantic_threshold if self._cjk_semantic_threshold is not None else 2.0
            )
        similar = [
            lexical[i] >= lexical_threshold or semantic[i] >= semantic_threshold
            for i in range(len(spans))
        ]
        score = [lexical[i] + max(semantic[i], 0.0) for i in range(len(spans))]

        def width(i: int) -> int:
            return max(1, len(spans[i].sentences))

        # The span that states the claim: the best-matching one (the narrowest of equals).
        top = max(range(len(spans)), key=lambda i: (similar[i], score[i], -width(i)))
        passing = [
            i
            for i in range(len(spans))
            if facts[i] is None and similar[i] and score[i] >= score[top] - self._rank_margin
        ]
        verified = bool(passing)

        def inside_top(i: int) -> bool:
            return spans[top].start <= spans[i].start <= spans[i].end <= spans[top].end

        # The quote: the narrowest span inside the best-matching one that states the claim, or
        # failing that, the narrowest there that fails the same way (the sentence to blame).
        if verified:
            pool = [i for i in passing if inside_top(i)] or passing
        else:
            pool = [i for i in range(len(spans)) if inside_top(i) and similar[i] and facts[i]]
        best = max(pool or [top], key=lambda i: (-width(i), score[i]))
        reason = None
        if not verified:
            similarity = (
                f", similarity {semantic[best]:.2f} < {semantic_threshold:.2f}"
                if semantic_threshold <= 1
                else ""  # similarity cannot verify this claim: a CJK claim under MiniLM
            )
            reason = facts[best] or (
                f"the source does not state the claim (word overlap {lexical[best]:.2f} < "
                f"{lexical_threshold:.2f}{similarity})"
            )
        return Support(
            lexical=round(lexical[best], 4),
            semantic=round(semantic[best], 4),
            span_start=spans[best].start,
            span_end=spans[best].end,
            verified=verified,
            reason=reason,
        )

    @staticmethod
    def _facts(claim: str, source: str, span: CandidateSpan) -> str | None:
        text = source[span.start : span.end]
        reason = missing_facts(claim, text, context=span.context, chunk=source)
        if span.context and (label := _row_label(text)) and not _names_label(claim, label):
            # A row's figures belong to the row's subject: "Gadgets sold 150" is not the
            # Widget row's 150.
            row = f"the row is about {label!r}, which the claim does not name"
            reason = f"{reason}; {row}" if reason else row
        if scattered(claim, text):
            far = "the claim's parts are far apart in the source"
            reason = f"{reason}; {far}" if reason else far
        if len(span.sentences) > 1 and (misplaced := _misplaced_number(claim, source, span)):
            reason = f"{reason}; {misplaced}" if reason else misplaced
        return reason


def _misplaced_number(claim: str, source: str, span: CandidateSpan) -> str | None:
    """A claim number that the window holds only in a sentence sharing no word with the claim.

    "Thin Film Partnership revenue grew 36%" is not stated by "Thin Film Partnership revenue
    grew strongly. Module shipments rose 36%": the 36% belongs to another statement.
    """
    words = {t for t in content_tokens(claim) if not t[0].isdigit()}
    for quantity in quantities(claim, claim=True):
        holding = [source[a:b] for a, b in span.sentences if holds(source[a:b], quantity)]
        if holding and not any(words & content_tokens(sentence) for sentence in holding):
            return f"the source's {quantity.written} is about something else: {holding[0]!r}"
    return None


def _row_label(row: str) -> str:
    cells = [cell.strip() for cell in re.split(r" \| |\t", row)]
    return cells[0] if cells else ""


def _names_label(claim: str, label: str) -> bool:
    wanted = content_tokens(label)
    have = content_tokens(claim)
    stems = {t[:5] for t in have}
    return not wanted or any(t in have or t[:5] in stems for t in wanted)


def _joined(context: str, text: str) -> str:
    return f"{context}\n{text}" if context else text


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    # Embeddings are normalised, so the dot product is the cosine.
    return float(sum(x * y for x, y in zip(a, b, strict=True)))
