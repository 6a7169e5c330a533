"""Markdown to elements with markdown-it (CommonMark + tables): structure from the syntax itself.

unstructured's `partition_md` renders HTML and then guesses each paragraph's kind with spaCy and
a language detector: ~65 ms a file, more than embedding a short file costs. Markdown already says
what is a heading, a list item or a table, so nothing needs guessing here.
"""

from __future__ import annotations

from functools import cache

from markdown_it import MarkdownIt
from markdown_it.token import Token

from ingest.elements import ElementKind, ParsedElement
from ingest.plaintext import parse_plain_text
from ingest.tables import render_table

# markdown-it stops reading blocks nested deeper than this (the commonmark preset's 20 dropped
# every item below the 10th level of a nested list, and a 20-deep quote whole); deeper text is
# read as plain paragraphs instead (`parse_markdown`).
MAX_NESTING = 100


@cache
def _parser() -> MarkdownIt:
    parser = MarkdownIt("commonmark").enable("table")
    parser.options["maxNesting"] = MAX_NESTING
    return parser


def parse_markdown(text: str) -> list[ParsedElement]:
    """The document's headings, paragraphs, list items, tables and code blocks. A document
    nested deeper than `MAX_NESTING` (markdown-it would leave the deeper text out) is read
    as plain paragraphs, every word kept."""
    tokens = _parser().parse(text)
    if any(token.level >= MAX_NESTING - 1 for token in tokens):
        return parse_plain_text(text)
    elements: list[ParsedElement] = []
    list_depth = 0
    heading_level: int | None = None
    table_rows: list[list[str]] | None = None
    for token in tokens:
        kind = token.type
        if kind == "heading_open":
            heading_level = int(token.tag[1:]) - 1
        elif kind == "heading_close":
            heading_level = None
        elif kind in ("bullet_list_open", "ordered_list_open"):
            list_depth += 1
        elif kind in ("bullet_list_close", "ordered_list_close"):
            list_depth -= 1
        elif kind == "table_open":
            table_rows = []
        elif kind == "tr_open" and table_rows is not None:
            table_rows.append([])
        elif kind == "table_close" and table_rows is not None:
            # GFM tables always have one header row.
            rendered = render_table(table_rows, header_rows=1)
            elements.append(ParsedElement(text=rendered, kind=ElementKind.TABLE))
            table_rows = None
        elif kind == "inline":
            content = _inline_text(token)
            if table_rows is not None:
                if table_rows:
                    table_rows[-1].append(content)
            elif heading_level is not None:
                elements.append(
                    ParsedElement(text=content, kind=ElementKind.TITLE, heading_level=heading_level)
                )
            else:
                item = ElementKind.LIST_ITEM if list_depth else ElementKind.TEXT
                elements.append(ParsedElement(text=content, kind=item))
        elif kind in ("fence", "code_block"):
            elements.append(ParsedElement(text=token.content.rstrip("\n"), kind=ElementKind.TEXT))
        elif kind == "html_block":
            elements.append(ParsedElement(text=token.content.strip(), kind=ElementKind.TEXT))
    return [e for e in elements if e.text.strip()]


def _inline_text(token: Token) -> str:
    """The text a reader sees: emphasis and link syntax dropped, breaks kept as newlines."""
    parts: list[str] = []
    for child in token.children or []:
        if child.type in ("text", "code_inline", "html_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append("\n")
        elif child.type == "image":
            parts.append(child.content)
    return "".join(parts).strip()
