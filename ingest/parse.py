"""Turn a file's bytes into ordered elements (text, kind, page, heading level)."""

from __future__ import annotations

import io
import os
from pathlib import PurePosixPath
from typing import Any

from ingest.elements import ElementKind, ParsedDocument, ParsedElement, ParseError
from ingest.markdown import parse_markdown

__all__ = ["ElementKind", "ParseError", "ParsedDocument", "ParsedElement", "parse_document"]

# unstructured phones home unless told not to; nothing may leave the building.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")


SUPPORTED_TYPES: dict[str, str] = {
    ".txt": "text/plain",
    ".text": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".pdf": "application/pdf",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}

_ZIP_MAGIC = b"PK\x03\x04"
# unstructured detects each document's language (langdetect, ~25 ms a file) unless told the
# languages; `[""]` skips detection. Elements' language is not used here.
_NO_LANGUAGE = [""]


def content_type_for(path: str) -> str:
    suffix = PurePosixPath(path).suffix.lower()
    try:
        return SUPPORTED_TYPES[suffix]
    except KeyError:
        supported = ", ".join(sorted(SUPPORTED_TYPES))
        raise ParseError(
            f"unsupported file type {suffix or '(none)'!r}; supported: {supported}"
        ) from None


def parse_document(path: str, data: bytes) -> ParsedDocument:
    """Parse by the file's extension, after checking the bytes agree with it."""
    content_type = content_type_for(path)
    if not data:
        raise ParseError("the file is empty")
    if content_type == "application/pdf":
        elements = _parse_pdf(data)
    elif content_type.endswith("wordprocessingml.document"):
        if not data.startswith(_ZIP_MAGIC):
            raise ParseError("not a DOCX file: the content is not an Office Open XML package")
        elements = _parse_docx(data)
    else:
        text = _decode_text(data)
        if content_type == "text/markdown":
            elements = parse_markdown(text)
        elif content_type == "text/html":
            from unstructured.partition.html import partition_html

            elements = _from_unstructured(partition_html(text=text, languages=_NO_LANGUAGE))
        else:
            elements = _partition_plain_text(text)
    elements = [e for e in elements if e.text.strip()]
    if not elements:
        raise ParseError("no text could be extracted from the file")
    return ParsedDocument(content_type=content_type, elements=elements)


def _decode_text(data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise ParseError("binary content in a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParseError(f"text is not valid UTF-8 (byte {exc.start})") from exc


def _partition_plain_text(text: str, page: int | None = None) -> list[ParsedElement]:
    from unstructured.partition.text import partition_text

    return _from_unstructured(partition_text(text=text, languages=_NO_LANGUAGE), page=page)


def _parse_pdf(data: bytes) -> list[ParsedElement]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    if not data.startswith(b"%PDF"):
        raise ParseError("not a PDF file: the content does not start with %PDF")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise ParseError("the PDF is password-protected")
        elements: list[ParsedElement] = []
        for page_number, page in enumerate(reader.pages, start=1):
            page_text = page.extract_text() or ""
            if page_text.strip():
                # Classify titles vs narrative the same way as plain text, keeping the page.
                elements.extend(_partition_plain_text(page_text, page=page_number))
    except ParseError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise ParseError(f"the PDF is corrupt or unreadable: {exc}") from exc
    if not elements:
        raise ParseError("the PDF has no text layer (scanned?); OCR is not enabled")
    return elements


def _parse_docx(data: bytes) -> list[ParsedElement]:
    from unstructured.partition.docx import partition_docx

    try:
        return _from_unstructured(partition_docx(file=io.BytesIO(data), languages=_NO_LANGUAGE))
    except ParseError:
        raise
    except Exception as exc:  # python-docx raises many kinds for a damaged package
        raise ParseError(f"the DOCX file is corrupt or unreadable: {exc}") from exc


_KINDS = {
    "Title": ElementKind.TITLE,
    "ListItem": ElementKind.LIST_ITEM,
    "Table": ElementKind.TABLE,
}


def _from_unstructured(elements: list[Any], page: int | None = None) -> list[ParsedElement]:
    parsed: list[ParsedElement] = []
    for element in elements:
        kind = _KINDS.get(element.category, ElementKind.TEXT)
        metadata = element.metadata
        parsed.append(
            ParsedElement(
                text=str(element.text).strip(),
                kind=kind,
                page=page if page is not None else metadata.page_number,
                heading_level=(metadata.category_depth or 0) if kind is ElementKind.TITLE else 0,
            )
        )
    return parsed
