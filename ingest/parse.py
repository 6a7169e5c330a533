"""Turn a file's bytes into ordered elements (text, kind, page, heading level)."""

from __future__ import annotations

import io
import os
import sys
from dataclasses import replace
from pathlib import PurePosixPath

from ingest import formats, office_legacy
from ingest.docx_pages import with_docx_pages
from ingest.elements import ElementKind, ParsedDocument, ParsedElement, ParseError
from ingest.heuristics import cap_heuristics
from ingest.markdown import parse_markdown
from ingest.normalize import normalize_text
from ingest.pdf import OcrMode
from ingest.plaintext import MAX_HEURISTIC_CHARS, parse_page_lines, parse_plain_text
from ingest.sniff import check_zip, declared_html_charset, decode_text, sniffed_kind

__all__ = ["ElementKind", "ParseError", "ParsedDocument", "ParsedElement", "parse_document"]

# unstructured phones home unless told not to; nothing may leave the building.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")

_OOXML = "application/vnd.openxmlformats-officedocument"
SUPPORTED_TYPES: dict[str, str] = {
    ".txt": "text/plain",
    ".text": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".pdf": "application/pdf",
    ".docx": f"{_OOXML}.wordprocessingml.document",
    ".pptx": f"{_OOXML}.presentationml.presentation",
    ".xlsx": f"{_OOXML}.spreadsheetml.sheet",
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".json": "application/json",
    ".eml": "message/rfc822",
    ".rtf": "application/rtf",
    ".odt": "application/vnd.oasis.opendocument.text",
    ".ods": "application/vnd.oasis.opendocument.spreadsheet",
    ".doc": "application/msword",
    ".xls": "application/vnd.ms-excel",
    ".ppt": "application/vnd.ms-powerpoint",
    ".msg": "application/vnd.ms-outlook",
    ".epub": "application/epub+zip",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
}
_ZIP_LABELS = {".docx": "DOCX", ".pptx": "PPTX", ".xlsx": "XLSX", ".odt": "ODT", ".ods": "ODS",
               ".epub": "EPUB"}  # fmt: skip
_OLE_LABELS = {".doc": "DOC", ".xls": "XLS", ".ppt": "PPT", ".msg": "MSG"}
# What the bytes must look like for each family of extensions (None: text, no magic number).
_EXPECTED_KIND = {".pdf": "pdf", **dict.fromkeys(_ZIP_LABELS, "zip"),
                  **dict.fromkeys(_OLE_LABELS, "ole"),
                  **dict.fromkeys((".png", ".jpg", ".jpeg", ".tif", ".tiff"), "image")}  # fmt: skip


# Formats read without unstructured's classifiers.
_WITHOUT_HEURISTICS = {".txt", ".text", ".md", ".markdown", ".csv", ".tsv", ".json"}


def content_type_for(path: str) -> str:
    suffix = PurePosixPath(path).suffix.lower()
    try:
        return SUPPORTED_TYPES[suffix]
    except KeyError:
        supported = ", ".join(sorted(SUPPORTED_TYPES))
        raise ParseError(
            f"unsupported file type {suffix or '(none)'!r}; supported: {supported}"
        ) from None


def parse_document(
    path: str, data: bytes, *, ocr: OcrMode = "auto", _depth: int = 0
) -> ParsedDocument:
    """Parse by the file's extension, after checking the bytes agree with it. `ocr="force"`
    reads every PDF page with OCR (`ingest.pdf`)."""
    content_type = content_type_for(path)
    suffix = PurePosixPath(path).suffix.lower()
    if not data:
        raise ParseError("the file is empty")
    suffix = office_legacy.actual_suffix(suffix, data)
    _check_content_matches(suffix, data)
    notes: list[str] = []
    if suffix not in _WITHOUT_HEURISTICS:
        cap_heuristics()  # before any unstructured partitioner runs
    try:
        elements = (
            _parse_pdf(data, ocr)
            if suffix == ".pdf"
            else _parse(suffix, data, depth=_depth, notes=notes)
        )
    except RecursionError:  # a parser library recursing once per level of nesting
        raise ParseError(
            f"the {suffix} file is nested deeper than its parser can follow (the limit of "
            f"{sys.getrecursionlimit()} levels)"
        ) from None
    # Before chunking: chunks' spans (and so citations) point into the normalised text.
    elements = [replace(e, text=normalize_text(e.text)) for e in elements]
    elements = [e for e in elements if e.text.strip()]
    if not elements:
        raise ParseError("no text could be extracted from the file")
    return ParsedDocument(content_type=content_type, elements=elements, notes=tuple(notes))


def _check_content_matches(suffix: str, data: bytes) -> None:
    """A file whose bytes are another type than its name says is refused, saying which."""
    actual = sniffed_kind(data)
    expected = _EXPECTED_KIND.get(suffix)
    if expected == actual or (expected == "zip" and actual == "ole"):
        return  # (an encrypted OOXML file is an OLE container: check_zip says so)
    names = {"pdf": "a PDF", "zip": "a zip-based (Office) file", "ole": "an OLE (legacy "
             "Office or encrypted) file", "image": "an image"}  # fmt: skip
    if expected is None:
        if actual is not None:
            raise ParseError(f"the content is {names[actual]}, not {suffix} text (wrong extension)")
        return
    if expected == "pdf":
        raise ParseError("not a PDF file: the content does not start with %PDF")
    if expected == "ole":
        what = names[actual] if actual else "text or unknown data"
        raise ParseError(
            f"not a {_OLE_LABELS[suffix]} file: the content is not an OLE compound file ({what})"
        )
    label = _ZIP_LABELS.get(suffix, suffix)
    what = names[actual] if actual else "text or unknown data"
    if expected == "zip":
        raise ParseError(
            f"not a {label} file: the content is not an Office Open XML package ({what})"
        )
    raise ParseError(f"not an image: the content is {what}")


def _parse(suffix: str, data: bytes, *, depth: int, notes: list[str]) -> list[ParsedElement]:
    if suffix in _ZIP_LABELS:
        archive = check_zip(data, label=_ZIP_LABELS[suffix])
        archive.close()
        return _parse_office(suffix, data)
    if suffix in (".png", ".jpg", ".jpeg", ".tif", ".tiff"):
        return formats.parse_image(data)
    if suffix == ".eml":
        return formats.parse_email(data, depth=depth, notes=notes)
    if suffix in office_legacy.READERS:
        return office_legacy.read(suffix, data, depth=depth, notes=notes)
    html = suffix in (".html", ".htm")
    text = decode_text(data, declared=declared_html_charset(data) if html else None)
    if suffix in (".md", ".markdown"):
        return parse_markdown(text)
    if suffix in (".html", ".htm"):
        return formats.html_elements(text)
    if suffix in (".csv", ".tsv"):
        return formats.parse_csv(text, delimiter="\t" if suffix == ".tsv" else ",")
    if suffix == ".json":
        return formats.parse_json(text)
    return parse_plain_text(text)


def _parse_office(suffix: str, data: bytes) -> list[ParsedElement]:
    label = _ZIP_LABELS[suffix]
    try:
        if suffix == ".docx":
            from unstructured.partition.docx import partition_docx

            elements = partition_docx(file=io.BytesIO(data), languages=[""])
            return with_docx_pages(formats.from_unstructured(elements), data)
        if suffix == ".pptx":
            return formats.parse_pptx(data)
        if suffix == ".xlsx":
            return formats.parse_xlsx(data)
        return office_legacy.read(suffix, data, depth=0)
    except ParseError:
        raise
    except Exception as exc:  # the Office libraries raise many kinds for a damaged package
        raise ParseError(f"the {label} file is corrupt or unreadable: {exc}") from exc


def _partition_plain_text(text: str, page: int | None = None) -> list[ParsedElement]:
    # Normalised before the heuristics split lines apart: `docu-\nment` is joined while whole.
    text = normalize_text(text)
    if len(text) > MAX_HEURISTIC_CHARS:  # the heuristics' cost grows with the text: read plainly
        return parse_plain_text(text, page=page)
    # unstructured's classifier (spaCy, ~20 ms a line here) only for the lines that could be
    # headings; the others are text without asking (a PDF page took ~10 s when every line was).
    from unstructured.partition.text_type import is_possible_narrative_text, is_possible_title

    def is_title(line: str) -> bool:
        return is_possible_title(line) and not is_possible_narrative_text(line)

    return parse_page_lines(text, page=page, is_title=is_title)


def _parse_pdf(data: bytes, ocr: OcrMode) -> list[ParsedElement]:
    from ingest.pdf import parse_pdf

    return parse_pdf(data, ocr_mode=ocr, partition=_partition_plain_text)
