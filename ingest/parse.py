"""Turn a file's bytes into ordered elements (text, kind, page, heading level)."""

from __future__ import annotations

import io
import os
from pathlib import PurePosixPath

from ingest import formats
from ingest.docx_pages import with_docx_pages
from ingest.elements import ElementKind, ParsedDocument, ParsedElement, ParseError
from ingest.markdown import parse_markdown
from ingest.sniff import check_zip, decode_text, sniffed_kind

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
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
}
_ZIP_LABELS = {".docx": "DOCX", ".pptx": "PPTX", ".xlsx": "XLSX", ".odt": "ODT"}
# What the bytes must look like for each family of extensions (None: text, no magic number).
_EXPECTED_KIND = {".pdf": "pdf", **dict.fromkeys(_ZIP_LABELS, "zip"),
                  **dict.fromkeys((".png", ".jpg", ".jpeg", ".tif", ".tiff"), "image")}  # fmt: skip


def content_type_for(path: str) -> str:
    suffix = PurePosixPath(path).suffix.lower()
    try:
        return SUPPORTED_TYPES[suffix]
    except KeyError:
        supported = ", ".join(sorted(SUPPORTED_TYPES))
        raise ParseError(
            f"unsupported file type {suffix or '(none)'!r}; supported: {supported}"
        ) from None


def parse_document(path: str, data: bytes, *, _depth: int = 0) -> ParsedDocument:
    """Parse by the file's extension, after checking the bytes agree with it."""
    content_type = content_type_for(path)
    suffix = PurePosixPath(path).suffix.lower()
    if not data:
        raise ParseError("the file is empty")
    _check_content_matches(suffix, data)
    elements = _parse(suffix, data, depth=_depth)
    elements = [e for e in elements if e.text.strip()]
    if not elements:
        raise ParseError("no text could be extracted from the file")
    return ParsedDocument(content_type=content_type, elements=elements)


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
    label = _ZIP_LABELS.get(suffix, suffix)
    what = names[actual] if actual else "text or unknown data"
    if expected == "zip":
        raise ParseError(
            f"not a {label} file: the content is not an Office Open XML package ({what})"
        )
    raise ParseError(f"not an image: the content is {what}")


def _parse(suffix: str, data: bytes, *, depth: int) -> list[ParsedElement]:
    if suffix == ".pdf":
        return _parse_pdf(data)
    if suffix in _ZIP_LABELS:
        archive = check_zip(data, label=_ZIP_LABELS[suffix])
        archive.close()
        return _parse_office(suffix, data)
    if suffix in (".png", ".jpg", ".jpeg", ".tif", ".tiff"):
        return formats.parse_image(data)
    if suffix == ".eml":
        return formats.parse_email(data, depth=depth)
    if suffix == ".rtf":
        return formats.parse_pandoc_format(data, suffix=suffix)
    text = decode_text(data)
    if suffix in (".md", ".markdown"):
        return parse_markdown(text)
    if suffix in (".html", ".htm"):
        from unstructured.partition.html import partition_html

        return formats.from_unstructured(partition_html(text=text, languages=[""]))
    if suffix in (".csv", ".tsv"):
        return formats.parse_csv(text, delimiter="\t" if suffix == ".tsv" else ",")
    if suffix == ".json":
        return formats.parse_json(text)
    return _partition_plain_text(text)


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
        return formats.parse_pandoc_format(data, suffix=suffix)
    except ParseError:
        raise
    except Exception as exc:  # the Office libraries raise many kinds for a damaged package
        raise ParseError(f"the {label} file is corrupt or unreadable: {exc}") from exc


def _partition_plain_text(text: str, page: int | None = None) -> list[ParsedElement]:
    from unstructured.partition.text import partition_text

    return formats.from_unstructured(partition_text(text=text, languages=[""]), page=page)


def _parse_pdf(data: bytes) -> list[ParsedElement]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

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
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise ParseError(f"the PDF is corrupt or unreadable: {exc}") from exc
    if not elements:
        if formats.ocr_languages() is None:
            raise ParseError("the PDF has no text layer (scanned?) and OCR is not installed")
        elements = formats.ocr_pdf(data)
    return elements
