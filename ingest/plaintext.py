"""Plain text to elements without guessing: one text element per paragraph (blank-line apart).

unstructured's `partition_text` classifies every paragraph with NLP heuristics (part-of-speech
tagging, sentence counting): 100 KB of text took 114 s and 1.1 GB; a 5 MB file kept a worker busy
for over half an hour. A text file says nothing about headings, so nothing is guessed: it is read
like a Markdown file without markup. Where a heuristic is still worth running (the title lines of
a PDF page), it sees at most `MAX_HEURISTIC_CHARS` of text at a time.
"""

from __future__ import annotations

import re

from ingest.elements import ElementKind, ParsedElement

# unstructured's title/narrative heuristics run on a PDF page only below this size (characters):
# a text page of a report is 2-5 thousand characters; a page of more is a data dump, read plainly.
MAX_HEURISTIC_CHARS = 20_000
_BLANK_LINE = re.compile(r"\n[ \t\r\f\v]*\n")


def parse_plain_text(text: str, *, page: int | None = None) -> list[ParsedElement]:
    """Each paragraph as a text element (line breaks inside a paragraph are kept)."""
    paragraphs = _BLANK_LINE.split(text.replace("\r\n", "\n"))
    return [ParsedElement(p.strip(), ElementKind.TEXT, page=page) for p in paragraphs if p.strip()]
