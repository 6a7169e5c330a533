"""Split text into sentences the way a reader means them, for claims and for quoted spans.

A plain "split at . ! ?" cuts decimals ("9.82"), abbreviations ("e.g.", "Dr."), initials and
quotations ('He said "Stop!" and left.'). Here a Latin full stop, "!" or "?" ends a sentence only
when whitespace (or the end) follows it, after any closing quotes or brackets, and the next word
does not continue the sentence; the CJK full stop, exclamation and question marks always
end one (with their closing quotes); a newline always does, so table rows and list items stay
apart.
"""

from __future__ import annotations

import re

_TERMINAL = re.compile(r"[.!?。！？]+")
_CLOSERS = "\"'”’»」』）)]】"
_CJK_TERMINALS = frozenset("。！？")
# Words that end with a full stop without ending the sentence (lower-cased, without the stop).
_ABBREVIATIONS = frozenset(
    [
        "e.g",
        "i.e",
        "etc",
        "al",
        "vs",
        "cf",
        "approx",
        "ca",
        "dr",
        "mr",
        "mrs",
        "ms",
        "prof",
        "st",
        "no",
        "nos",
        "fig",
        "figs",
        "eq",
        "eqs",
        "ref",
        "refs",
        "vol",
        "pp",
        "inc",
        "ltd",
        "co",
        "corp",
        "jr",
        "sr",
        "dept",
        "est",
        "min",
        "max",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "u.s",
        "u.k",
        "u.n",
        "p.m",
        "a.m",
        "ph.d",
    ]
)
_WORD_BEFORE = re.compile(r"([\w.]+)$")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of the non-blank sentences of `text`, in order, whitespace trimmed."""
    spans: list[tuple[int, int]] = []
    start = 0
    for line_start, line_end in _lines(text):
        start = line_start
        for end in _boundaries(text, line_start, line_end):
            spans.append((start, end))
            start = end
        spans.append((start, line_end))
    return [s for s in (_trim(text, a, b) for a, b in spans) if s[1] > s[0]]


def split_sentences(text: str) -> list[str]:
    """The sentences of `text` (see `sentence_spans`)."""
    return [text[a:b] for a, b in sentence_spans(text)]


def _lines(text: str) -> list[tuple[int, int]]:
    lines, start = [], 0
    for match in re.finditer(r"\n", text):
        lines.append((start, match.start()))
        start = match.end()
    lines.append((start, len(text)))
    return lines


def _boundaries(text: str, start: int, end: int) -> list[int]:
    """Offsets just after each sentence end inside text[start:end]."""
    ends: list[int] = []
    for match in _TERMINAL.finditer(text, start, end):
        stop = match.end()
        while stop < end and text[stop] in _CLOSERS:
            stop += 1
        if _ends_sentence(text, match.start(), match.end(), stop, end):
            ends.append(stop)
    return ends


def _ends_sentence(text: str, mark_start: int, mark_end: int, stop: int, end: int) -> bool:
    if text[mark_start] in _CJK_TERMINALS:
        return True
    if stop >= end or not text[stop].isspace():
        return False  # the line's end closes it anyway; "9.82", "e.g.x", "a.b.com"
    following = text[stop:end].lstrip()
    if not following or following[0].islower():
        # 'said "Stop!" and left', "approx. three": English sentences do not start lower-case.
        return False
    if text[mark_start:mark_end] == ".":
        word = _WORD_BEFORE.search(text, 0, mark_start)
        before = word.group(1).lower() if word else ""
        if len(before) == 1 and before.isalpha():
            return False  # an initial: "J. Smith"
        if before in _ABBREVIATIONS and before != "etc":
            return False  # "Dr. Smith", "Fig. 2", "e.g. Paris"
    return True


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end
