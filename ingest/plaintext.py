"""Plain text to elements without guessing: one text element per paragraph (blank-line apart).

unstructured's `partition_text` classifies every paragraph with NLP heuristics (part-of-speech
tagging, sentence counting): 100 KB of text took 114 s and 1.1 GB; a 5 MB file kept a worker busy
for over half an hour. A text file says nothing about headings, so nothing is guessed: it is read
like a Markdown file without markup. Where a heuristic is still worth running (the title lines of
a PDF page), it sees at most `MAX_HEURISTIC_CHARS` of text at a time.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ingest.elements import ElementKind, ParsedElement

# unstructured's title/narrative heuristics run on a PDF page only below this size (characters):
# a text page of a report is 2-5 thousand characters; a page of more is a data dump, read plainly.
MAX_HEURISTIC_CHARS = 20_000
_BLANK_LINE = re.compile(r"\n[ \t\r\f\v]*\n")
TITLE_MAX_WORDS = 10
_BULLET = re.compile(r"^[•◦▪‣∙·●○■□◆◇➢➤►\-*]\s+\S")


def parse_page_lines(
    text: str, *, page: int | None, is_title: Callable[[str], bool]
) -> list[ParsedElement]:
    """A PDF page's extracted lines as elements: a short line that reads as a heading is a title
    (`is_title`, the costly classifier, sees only those), a bulleted line a list item, and the
    lines between them one text element, line breaks kept."""
    elements: list[ParsedElement] = []
    lines: list[str] = []

    def flush() -> None:
        if lines:
            elements.append(ParsedElement("\n".join(lines), ElementKind.TEXT, page=page))
            lines.clear()

    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            flush()
        elif _BULLET.match(line):
            flush()
            elements.append(ParsedElement(line, ElementKind.LIST_ITEM, page=page))
        elif _title_candidate(line) and is_title(line):
            flush()
            elements.append(ParsedElement(line, ElementKind.TITLE, page=page))
        else:
            lines.append(line)
    flush()
    return elements


def _title_candidate(line: str) -> bool:
    """Cheap tests a heading passes: at most `TITLE_MAX_WORDS` words, a letter, no sentence or
    clause punctuation at its end, and it does not start in lowercase (a wrapped line does)."""
    return (
        len(line.split()) <= TITLE_MAX_WORDS
        and any(ch.isalpha() for ch in line)
        and line[-1] not in ".,;:!?-。，；：！？"
        and not line[0].islower()
    )


def parse_plain_text(text: str, *, page: int | None = None) -> list[ParsedElement]:
    """Each paragraph as a text element (line breaks inside a paragraph are kept). Line ends
    may be `\r\n` (Windows), `\n` or a lone `\r` (classic Mac OS, some exports)."""
    paragraphs = _BLANK_LINE.split(text.replace("\r\n", "\n").replace("\r", "\n"))
    return [ParsedElement(p.strip(), ElementKind.TEXT, page=page) for p in paragraphs if p.strip()]
