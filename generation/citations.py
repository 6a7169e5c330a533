"""Find `[n]` markers in an answer and map them to sources; drop numbers that match none."""

from __future__ import annotations

import re
from dataclasses import dataclass

_MARKER = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")
# A marker right after a sentence's closing punctuation ("… 48,200.[2]" or "… 48,200. [2]")
# cites that sentence: it is moved before the punctuation so the sentence split keeps them together.
_TRAILING_MARKERS = re.compile(r"([.!?。！？]+)([ \t]*)((?:\[\d+(?:\s*[,;]\s*\d+)*\][ \t]*)+)")
_SPACED_MARKER = re.compile(r"\s*" + _MARKER.pattern)
_SENTENCE = re.compile(r"[^.!?。！？\n]*(?:[.!?。！？]+|\n|$)")


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
    """Citations in order of first use; numbers outside 1..source_count are removed."""
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
    for sentence_match in _SENTENCE.finditer(attached):
        sentence = sentence_match.group(0)
        claim = " ".join(_SPACED_MARKER.sub("", sentence).split())
        for marker in _MARKER.finditer(sentence):
            for number in (int(n) for n in re.split(r"\s*[,;]\s*", marker.group(1))):
                if (number, claim) not in seen:
                    seen.add((number, claim))
                    marks.append(CitationMark(number=number, claim=claim))
    return ParsedCitations(answer=cleaned.strip(), marks=marks, invalid_numbers=invalid)
