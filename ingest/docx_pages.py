"""Page numbers for DOCX elements, from the page breaks Word records in the file.

unstructured's DOCX partitioner counts only `w:lastRenderedPageBreak` (the breaks Word writes
where it laid out a new page) and reports no page at all when a file has none: an 872-page
handbook was cited as `page: null`. Here the body is read in document order and a page starts at
each of: a rendered page break, an explicit one (`w:br w:type="page"`), a paragraph marked
`w:pageBreakBefore`, and the end of a section that starts its successor on a new page. Word
writes a rendered break right after an explicit one; a break with no text since the last one
starts no new page, so the pair counts once.

Each element is then found, in order, in the body's text (whitespace ignored), and takes the page
where its text starts. An element not found there (a header, a footer) keeps the page of the
element before it.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import replace
from typing import Any

from ingest.elements import ParsedElement

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_KEY_CHARS = 24  # enough to tell paragraphs apart, short enough to survive small clean-ups
_NEW_PAGE_SECTIONS = {"nextPage", "oddPage", "evenPage"}


def page_marks(document_xml: bytes) -> tuple[str, list[tuple[int, int]]]:
    """The body's text without whitespace, and (offset, page) where each page starts in it."""
    from lxml import etree

    root = etree.fromstring(document_xml)
    body = root.find(f"{_W}body")
    if body is None:
        return "", [(0, 1)]
    text: list[str] = []
    length = 0
    page = 1
    marks = [(0, 1)]
    text_since_break = False

    def page_break() -> None:
        nonlocal page, text_since_break
        if not text_since_break:
            return  # a rendered break right after an explicit one: the same page
        page += 1
        marks.append((length, page))
        text_since_break = False

    for element in body.iter():
        tag = element.tag
        if tag == f"{_W}t" and element.text:
            piece = "".join(element.text.split())
            if piece:
                text.append(piece)
                length += len(piece)
                text_since_break = True
        elif _starts_a_page(element, body):
            page_break()
    return "".join(text), marks


def _starts_a_page(element: Any, body: Any) -> bool:
    tag = element.tag
    if tag == f"{_W}lastRenderedPageBreak":
        return True
    if tag == f"{_W}br":
        return bool(element.get(f"{_W}type") == "page")
    if tag == f"{_W}pageBreakBefore":
        return element.get(f"{_W}val", "true") not in ("false", "0", "off")
    if tag == f"{_W}sectPr" and element.getparent() is not body:
        # A paragraph's section properties end a section; the section's type says whether the
        # next one starts on a new page (Word's default, nextPage, is by far the usual one).
        kind = element.find(f"{_W}type")
        return kind is None or kind.get(f"{_W}val", "nextPage") in _NEW_PAGE_SECTIONS
    return False


def with_docx_pages(elements: list[ParsedElement], data: bytes) -> list[ParsedElement]:
    """The elements with the page each starts on (the file's page breaks; module docstring).
    A file without any page break keeps every page as it was (None)."""
    with zipfile.ZipFile(io.BytesIO(data)) as package:
        document_xml = package.read("word/document.xml")
    text, marks = page_marks(document_xml)
    if len(marks) == 1:
        return elements
    cursor = 0
    page = 1
    paged: list[ParsedElement] = []
    for element in elements:
        key = "".join(element.text.replace("|", " ").split())[:_KEY_CHARS]
        found = text.find(key, cursor) if key else -1
        if found >= 0:
            cursor = found + len(key)
            page = _page_at(marks, found)
        paged.append(replace(element, page=page))
    return paged


def _page_at(marks: list[tuple[int, int]], offset: int) -> int:
    page = 1
    for start, number in marks:
        if start > offset:
            break
        page = number
    return page
