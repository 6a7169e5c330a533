"""Structure-aware chunking: sections and pages start new chunks; long text splits at sentences.

Every chunk is a span of the document's extracted text (elements joined by blank lines), so its
character offsets point back into that text exactly: `chunk.text == text[char_start:char_end]`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

from core.text import trim_span
from ingest.parse import ElementKind, ParsedDocument

ELEMENT_SEPARATOR = "\n\n"
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|(?<=[。！？；])")
_ROW_END = re.compile(r"\n")
_WHITESPACE = re.compile(r"\s+")

TokenCounter = Callable[[str], int]


@dataclass(frozen=True)
class Chunk:
    index: int
    text: str
    char_start: int
    char_end: int
    page: int | None
    section: str | None
    token_count: int


@dataclass(frozen=True)
class _Unit:
    start: int
    end: int
    tokens: int
    page: int | None
    is_title: bool
    section: str | None


def document_text(document: ParsedDocument) -> str:
    return ELEMENT_SEPARATOR.join(e.text for e in document.elements)


def chunk_document(
    document: ParsedDocument, *, max_tokens: int, overlap_tokens: int, count_tokens: TokenCounter
) -> list[Chunk]:
    """Split a parsed document into chunks of at most about `max_tokens` tokens."""
    if overlap_tokens >= max_tokens:
        raise ValueError("overlap must be smaller than the chunk budget")
    text = document_text(document)
    # An element is counted whole and then again as its own unit: count each string once.
    units = _units(document, text, max_tokens, functools.cache(count_tokens))
    return _pack(units, text, max_tokens, overlap_tokens)


def _units(
    document: ParsedDocument, text: str, max_tokens: int, count_tokens: TokenCounter
) -> list[_Unit]:
    units: list[_Unit] = []
    headings: list[tuple[int, str]] = []
    offset = 0
    for element in document.elements:
        start, end = offset, offset + len(element.text)
        offset = end + len(ELEMENT_SEPARATOR)
        is_title = element.kind is ElementKind.TITLE
        if is_title:
            headings = [(lvl, t) for lvl, t in headings if lvl < element.heading_level]
            headings.append((element.heading_level, element.text))
        section = " > ".join(t for _, t in headings) or None
        table = element.kind is ElementKind.TABLE
        for piece_start, piece_end in _split(text, start, end, max_tokens, count_tokens, table):
            units.append(
                _Unit(
                    start=piece_start,
                    end=piece_end,
                    tokens=count_tokens(text[piece_start:piece_end]),
                    page=element.page,
                    is_title=is_title,
                    section=section,
                )
            )
    return units


def _split(
    text: str, start: int, end: int, max_tokens: int, count_tokens: TokenCounter, table: bool
) -> list[tuple[int, int]]:
    """Pieces of text[start:end] within the budget: the whole element, else its sentences (a
    table's rows: each row carries its headers, so a chunk of rows reads alone)."""
    start, end = trim_span(text, start, end)
    if start >= end:
        return []
    if count_tokens(text[start:end]) <= max_tokens:
        return [(start, end)]
    # Sentences are the units to pack (so overlap can repeat whole sentences); a sentence that
    # is still too long is halved at whitespace, or between characters where there is none.
    boundary = _ROW_END if table else _SENTENCE_END
    cuts = [m.end() for m in boundary.finditer(text, start, end) if start < m.end() < end]
    pieces: list[tuple[int, int]] = []
    for piece_start, piece_end in zip([start, *cuts], [*cuts, end], strict=True):
        pieces.extend(_halve(text, piece_start, piece_end, max_tokens, count_tokens))
    return pieces


def _halve(
    text: str, start: int, end: int, max_tokens: int, count_tokens: TokenCounter
) -> list[tuple[int, int]]:
    start, end = trim_span(text, start, end)
    if start >= end:
        return []
    if end - start == 1 or count_tokens(text[start:end]) <= max_tokens:
        return [(start, end)]
    middle = (start + end) // 2
    spaces = [m.end() for m in _WHITESPACE.finditer(text, start, end) if start < m.end() < end]
    cut = min(spaces, key=lambda c: abs(c - middle)) if spaces else middle
    return _halve(text, start, cut, max_tokens, count_tokens) + _halve(
        text, cut, end, max_tokens, count_tokens
    )


def _pack(units: list[_Unit], text: str, max_tokens: int, overlap_tokens: int) -> list[Chunk]:
    chunks: list[Chunk] = []
    current: list[_Unit] = []

    def flush() -> None:
        if current:
            first, last = current[0], current[-1]
            chunks.append(
                Chunk(
                    index=len(chunks),
                    text=text[first.start : last.end],
                    char_start=first.start,
                    char_end=last.end,
                    page=first.page,
                    section=next((u.section for u in current if not u.is_title), first.section),
                    token_count=sum(u.tokens for u in current),
                )
            )

    for unit in units:
        if current:
            only_titles = all(u.is_title for u in current)
            size = sum(u.tokens for u in current)
            new_section = unit.is_title and not only_titles
            new_page = unit.page != current[-1].page  # a citation's page must be exact
            if new_section or new_page:
                flush()
                current = []
            elif size + unit.tokens > max_tokens:
                flush()
                current = _overlap(current, min(overlap_tokens, max_tokens - unit.tokens), unit)
        current.append(unit)
    flush()
    return chunks


def _overlap(previous: list[_Unit], overlap_tokens: int, next_unit: _Unit) -> list[_Unit]:
    """Trailing units of the previous chunk to repeat, within the overlap budget and page."""
    carried: list[_Unit] = []
    budget = overlap_tokens
    for unit in reversed(previous):
        if unit.is_title or unit.tokens > budget or unit.page != next_unit.page:
            break
        carried.insert(0, unit)
        budget -= unit.tokens
    return carried
