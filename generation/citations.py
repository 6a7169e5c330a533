"""Find `[n]` markers in an answer and map them to sources; drop numbers that match none."""

from __future__ import annotations

import re
from dataclasses import dataclass

from generation.sentences import split_sentences

_MARKER = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")
# A marker right after a sentence's closing punctuation ("… 48,200.[2]" or "… 48,200. [2]")
# cites that sentence: it is moved before the punctuation so the sentence split keeps them together.
_TRAILING_MARKERS = re.compile(r"([.!?。！？]+)([ \t]*)((?:\[\d+(?:\s*[,;]\s*\d+)*\][ \t]*)+)")
_SPACED_MARKER = re.compile(r"\s*" + _MARKER.pattern)
_WORD = re.compile(r"[^\W\d_]+|\d+", re.UNICODE)
# A sentence made of these words and markers only ("This is stated in [4].", "See [2].",
# "见[3]。") states nothing itself: its markers cite the sentence before it.
_CITATION_ONLY_WORDS = frozenset(
    [
        "this",
        "that",
        "it",
        "these",
        "those",
        "is",
        "was",
        "are",
        "were",
        "be",
        "can",
        "also",
        "as",
        "in",
        "on",
        "from",
        "to",
        "by",
        "per",
        "the",
        "a",
        "an",
        "and",
        "see",
        "stated",
        "mentioned",
        "described",
        "shown",
        "given",
        "reported",
        "noted",
        "found",
        "explained",
        "indicated",
        "confirmed",
        "supported",
        "documented",
        "source",
        "sources",
        "document",
        "documents",
        "according",
        "information",
        "cited",
        "reference",
        "references",
        "ref",
        "evidence",
        "states",
        "says",
        "said",
        "shows",
        "confirms",
        "above",
        "both",
        "details",
        "detail",
        "more",
        "见",
        "参见",
        "详见",
        "来源",
        "出处",
        "参考",
        "引自",
        "如",
        "所述",
        "这",
        "此",
        "以上",
        "上述",
        "信息",
        "在",
        "中",
        "有",
        "说明",
        "提到",
        "记载",
        "根据",
    ]
)
_CJK_CITATION_ONLY = re.compile(
    r"^(?:这|此|以上|上述)?(?:信息|内容)?(?:见|参见|详见|来源|出处|参考|引自|根据|如)?(?:在)?(?:中)?"
    r"(?:有)?(?:说明|提到|所述|记载)?$"
)


@dataclass(frozen=True)
class CitationMark:
    number: int
    claim: str  # the sentence that carries the marker


@dataclass(frozen=True)
class ParsedCitations:
    answer: str  # with markers that match no source removed
    marks: list[CitationMark]
    invalid_numbers: list[int]


def parse_citations(answer: str, *, source_count: int) -> ParsedCitations:
    """Citations in order of first use; numbers outside 1..source_count are removed.

    Each marker cites the sentence that carries it (split by `generation.sentences`: decimals,
    abbreviations and quotations do not end a sentence); a sentence that only points at a source
    ("This is stated in [4].") lends its markers to the sentence before it.
    """
    invalid: list[int] = []

    def keep_valid(match: re.Match[str]) -> str:
        numbers = [int(n) for n in re.split(r"\s*[,;]\s*", match.group(1))]
        valid = [n for n in numbers if 1 <= n <= source_count]
        invalid.extend(n for n in numbers if n not in valid)
        return "".join(f"[{n}]" for n in valid)

    cleaned = _MARKER.sub(keep_valid, answer)
    attached = _TRAILING_MARKERS.sub(lambda m: f"{m.group(3).rstrip()}{m.group(1)} ", cleaned)
    marks: list[CitationMark] = []
    seen: set[tuple[int, str]] = set()
    previous_claim: str | None = None
    for sentence in split_sentences(attached):
        claim = " ".join(_SPACED_MARKER.sub("", sentence).split())
        numbers = [
            int(n)
            for marker in _MARKER.finditer(sentence)
            for n in re.split(r"\s*[,;]\s*", marker.group(1))
        ]
        if is_citation_only(claim) and previous_claim is not None:
            claim = previous_claim
        elif not is_citation_only(claim):
            previous_claim = claim
        for number in numbers:
            if (number, claim) not in seen:
                seen.add((number, claim))
                marks.append(CitationMark(number=number, claim=claim))
    return ParsedCitations(answer=cleaned.strip(), marks=marks, invalid_numbers=invalid)


def is_citation_only(claim: str) -> bool:
    """True for a sentence that states nothing but where its facts are ("See source.", "见。")."""
    words = _WORD.findall(claim.lower())
    if any(w.isdigit() for w in words):
        return False
    latin = [w for w in words if w.isascii()]
    cjk = "".join(w for w in words if not w.isascii())
    return all(w in _CITATION_ONLY_WORDS for w in latin) and (
        not cjk or cjk in _CITATION_ONLY_WORDS or bool(_CJK_CITATION_ONLY.match(cjk))
    )
