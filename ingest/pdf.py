"""PDF pages to elements: the text layer, tables as rows, and OCR for pages that need it.

A page is read from its text layer (pypdf) unless it is a scan: no text at all, only a few
characters over a full-page image (a scanner's stamp or page number), or a text layer that is a
scanner's garbage (`looks_garbled`) over a full-page image. Such a page is rendered (pypdfium2)
and read with Tesseract (`ingest.ocr`), keeping its page number. `ocr="force"` reads every page
with OCR. Tables with ruling lines are found with pdfplumber and kept as rows that carry their
headers (`ingest.tables`); the page's other text is read around them.
"""

from __future__ import annotations

import io
import re
import unicodedata
from typing import Any, Literal

from ingest import ocr
from ingest.elements import ElementKind, ParsedElement, ParseError
from ingest.tables import header_names, render_table

OcrMode = Literal["auto", "force"]
MAX_OCR_PAGES = 200
MAX_OCR_PIXELS = 50_000_000  # as for uploaded images
# A page without this many vector paths has no ruled table (a whole grid may be one path) and
# is not given to pdfplumber.
MIN_TABLE_PATHS = 1
# A page with fewer non-space characters than this over a full-page image is treated as a scan
# (a page number or a scanner's stamp is not the page's text).
FEW_CHARACTERS = 40
# An image covering at least this share of the page makes it a scanned page.
FULL_PAGE_SHARE = 0.5
# Shares above which a text layer is garbage (see looks_garbled; measured in
# tests/test_pdf.py::test_garbled_text_layers_are_told_from_real_text).
GARBLED_SYMBOL_SHARE = 0.25
GARBLED_SHORT_WORD_SHARE = 0.6
# A page whose text has at least this many lines, more than this share of them of one or two
# words, is read again by position (`is_fragmented`).
FRAGMENT_MIN_LINES = 6
FRAGMENT_SHARE = 0.6
_CID = re.compile(r"\(cid:\d+\)")


def parse_pdf(
    data: bytes, *, ocr_mode: OcrMode = "auto", partition: Any = None
) -> list[ParsedElement]:
    """Elements of every page in order, each with its 1-based page number.

    `partition(text, page)` classifies a text layer's paragraphs (titles vs narrative); by
    default each page's text is one element per paragraph. Raises ParseError for a real user
    password, a corrupt file, or a scan when OCR is not installed."""
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            _open_with_empty_password(reader, DependencyError)
        texts = [page.extract_text() or "" for page in reader.pages]
    except ParseError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise ParseError(f"the PDF is corrupt or unreadable: {exc}") from exc
    split = partition or _paragraphs
    import pypdfium2

    try:
        document = pypdfium2.PdfDocument(data)
    except pypdfium2.PdfiumError as exc:
        raise ParseError(f"the PDF is corrupt or unreadable: {exc}") from exc
    try:
        scans = _scanned_pages(document, texts, ocr_mode)
        tables = _tables_by_page(data, pages=_ruled_pages(document, skip=scans))
        fragmented = {n for n, text in enumerate(texts, start=1)
                      if n not in scans and n not in tables and is_fragmented(text)}  # fmt: skip
        texts = _lines_again(data, texts, pages=fragmented)
        elements: list[ParsedElement] = []
        unread_scans = 0
        for number, text in enumerate(texts, start=1):
            if number in scans:
                if ocr.languages() is None or number > MAX_OCR_PAGES:
                    unread_scans += 1
                    continue
                # One page rendered at a time: a 300 dpi A4 page is ~26 MB of pixels.
                image = _render(document[number - 1])
                elements.extend(ocr.read_image(image, page=number, what="PDF"))
            elif number in tables:
                elements.extend(tables[number])
            elif text.strip():
                elements.extend(split(text, number))
    finally:
        document.close()
    if not any(e.text.strip() for e in elements) and unread_scans:
        raise ParseError("the PDF has no text layer (scanned?) and OCR is not installed")
    return elements


def is_fragmented(text: str) -> bool:
    """Whether a page's text came out one cell or word per line: pypdf ends a line at each
    separately placed run of text, so an unruled table's row (`Freight 0 0 295,891`, its cells
    drawn one by one) comes out a line per cell. At least `FRAGMENT_MIN_LINES` lines, and more
    than `FRAGMENT_SHARE` of them one or two words long."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < FRAGMENT_MIN_LINES:
        return False
    short = sum(1 for line in lines if len(line.split()) <= 2)
    return short > FRAGMENT_SHARE * len(lines)


def _lines_again(data: bytes, texts: list[str], *, pages: set[int]) -> list[str]:
    """`texts` with the given pages' text read again by pdfplumber, which puts words on one
    line by their position (a table row stays a row); a page it cannot read is kept as is."""
    if not pages:
        return texts
    import pdfplumber

    again = list(texts)
    try:
        with pdfplumber.open(io.BytesIO(data)) as document:
            for number in sorted(pages):
                try:
                    again[number - 1] = document.pages[number - 1].extract_text() or ""
                except Exception:  # pdfminer raises many kinds on damaged content streams
                    continue
    except Exception:  # pdfminer cannot open what pypdf could: pypdf's text is kept
        return texts
    return again


def _render(page: Any) -> Any:
    """The page as a PIL image for OCR: at the resolution of its largest picture (a scan read
    at its own pixels; resampling a 150 dpi scan to 300 dpi blurs Chinese strokes enough to
    misread them), between 150 and 400 dpi, else at 300 dpi; and under MAX_OCR_PIXELS."""
    import pypdfium2.raw as pdfium_c

    width, height = page.get_size()  # in points, 72 a inch
    scale, largest = 300 / 72, 0.0
    for obj in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=2):
        left, bottom, right, top = obj.get_bounds()
        area = (right - left) * (top - bottom)
        pixels_wide, pixels_high = obj.get_px_size()
        if area > largest and right > left and top > bottom and pixels_wide > 0:
            largest = area
            # The picture may be drawn turned: compare the longer sides.
            scale = max(pixels_wide, pixels_high) / max(right - left, top - bottom)
    scale = max(150 / 72, min(scale, 400 / 72))
    scale = min(scale, (MAX_OCR_PIXELS / max(1.0, width * height)) ** 0.5)
    return page.render(scale=scale).to_pil()


def _open_with_empty_password(reader: Any, dependency_error: type[Exception]) -> None:
    """An owner-password-only PDF (print/copy restrictions) opens with the empty user password,
    as every viewer opens it; only a real user password makes it password-protected."""
    from pypdf import PasswordType

    try:
        opened = reader.decrypt("")
    except dependency_error as exc:
        raise ParseError(
            f"the PDF is encrypted with a cipher this server cannot read: {exc}"
        ) from exc
    if opened == PasswordType.NOT_DECRYPTED:
        raise ParseError("the PDF is password-protected")


def _paragraphs(text: str, page: int) -> list[ParsedElement]:
    return [ParsedElement(p.strip(), ElementKind.TEXT, page=page)
            for p in re.split(r"\n\s*\n", text) if p.strip()]  # fmt: skip


def looks_garbled(text: str) -> bool:
    """Whether a text layer is a scanner's garbage rather than words.

    Two signs, either enough: many characters that are neither letters, digits, spaces nor
    ordinary punctuation (unmapped glyphs, private-use and control characters, `(cid:N)`), or
    mostly one- and two-letter "words" in an alphabetic script (a mis-OCRed layer). Text in
    scripts written without spaces (Chinese, Japanese) is judged by the first sign only."""
    stripped = _CID.sub("\x00", text)
    chars = [ch for ch in stripped if not ch.isspace()]
    if len(chars) < FEW_CHARACTERS:
        return False
    odd = sum(1 for ch in chars if _is_odd(ch))
    if odd / len(chars) > GARBLED_SYMBOL_SHARE:
        return True
    words = [w for w in re.findall(r"[^\W\d_]+", stripped) if not _is_cjk(w[0])]
    if len(words) < 10:
        return False
    short = sum(1 for w in words if len(w) <= 2)
    return short / len(words) > GARBLED_SHORT_WORD_SHARE


def _is_odd(ch: str) -> bool:
    category = unicodedata.category(ch)
    if category[0] in "LN":
        return False
    if category[0] == "P":
        return ch == "\\"
    return ch not in "+-=<>%$€£¥@&#/*°§©®™"


def _is_cjk(ch: str) -> bool:
    return "\u2e80" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af" or "\uf900" <= ch <= "\ufaff"


def _scanned_pages(document: Any, texts: list[str], ocr_mode: OcrMode) -> set[int]:
    """Numbers of the pages to read with OCR (see the module's docstring)."""
    import pypdfium2.raw as pdfium_c

    pages: set[int] = set()
    for index, text in enumerate(texts[: len(document)]):
        chars = sum(1 for ch in text if not ch.isspace())
        if ocr_mode == "force":
            pages.add(index + 1)
            continue
        if chars >= FEW_CHARACTERS and not looks_garbled(text):
            continue
        page = document[index]
        width, height = page.get_size()
        covered = 0.0
        for obj in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=2):
            left, bottom, right, top = obj.get_bounds()
            covered = max(covered, (right - left) * (top - bottom) / max(1.0, width * height))
        # No text but some picture (a scan cropped small), or little/garbled text over a scan.
        if (chars == 0 and covered > 0) or covered >= FULL_PAGE_SHARE:
            pages.add(index + 1)
    return pages


def _ruled_pages(document: Any, *, skip: set[int]) -> set[int]:
    """Pages drawing enough lines or rectangles to hold a ruled table: only these are handed
    to pdfplumber, whose layout analysis costs far more than pypdf's text extraction."""
    import pypdfium2.raw as pdfium_c

    ruled: set[int] = set()
    for index in range(len(document)):
        if index + 1 in skip:
            continue
        paths = document[index].get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_PATH], max_depth=2)
        if sum(1 for _ in zip(range(MIN_TABLE_PATHS), paths, strict=False)) >= MIN_TABLE_PATHS:
            ruled.add(index + 1)
    return ruled


def _tables_by_page(data: bytes, *, pages: set[int]) -> dict[int, list[ParsedElement]]:
    """Elements of the pages that hold ruled tables: text above, between and below each table,
    and each table as rows (`render_table`). Pages without a table are not in the result, nor
    pages pdfminer cannot read (their text layer from pypdf is kept)."""
    import pdfplumber

    found: dict[int, list[ParsedElement]] = {}
    if not pages:
        return found
    # The header of the last table of the page before: a table running on to this page
    # without repeating its header keeps its column names (`render_table(continues=...)`).
    carried: list[str] | None = None
    try:
        with pdfplumber.open(io.BytesIO(data)) as document:
            for number, page in enumerate(document.pages, start=1):
                if number not in pages:
                    carried = None
                    continue
                try:
                    elements, carried = _page_with_tables(page, number, carried)
                except Exception:  # pdfminer raises many kinds on damaged content streams
                    carried = None
                    continue
                if elements:
                    found[number] = elements
    except Exception:  # pdfminer cannot open what pypdf could: text layers alone are kept
        return found
    return found


def _page_with_tables(
    page: Any, number: int, carried: list[str] | None
) -> tuple[list[ParsedElement], list[str] | None]:
    """The page's elements, and the column names of its last table (for the next page)."""
    if not (page.lines or page.rects):
        return [], None
    tables = [t for t in page.find_tables() if len(t.rows) >= 2]
    if not tables:
        return [], None
    boxes = [t.bbox for t in tables]

    def outside(obj: dict[str, Any]) -> bool:
        return not any(
            x0 <= obj.get("x0", 0) <= x1 and top <= obj.get("top", 0) <= bottom
            for x0, top, x1, bottom in boxes
        )

    placed: list[tuple[float, ParsedElement]] = []
    for line in page.filter(outside).extract_text_lines():
        placed.append((line["top"], ParsedElement(line["text"], ElementKind.TEXT, number)))
    names: list[str] | None = None
    for index, table in enumerate(sorted(tables, key=lambda t: t.bbox[1])):
        grid = table.extract()
        continues = carried if index == 0 else None
        rendered = render_table(grid, continues=continues)
        own = header_names(grid)
        names = continues if continues is not None and own is None else own
        if rendered:
            placed.append((table.bbox[1], ParsedElement(rendered, ElementKind.TABLE, number)))
    placed.sort(key=lambda item: item[0])
    return _merge_lines(placed), names


def _merge_lines(placed: list[tuple[float, ParsedElement]]) -> list[ParsedElement]:
    """Consecutive text lines become one element; tables stay elements of their own."""
    merged: list[ParsedElement] = []
    lines: list[str] = []
    for _, element in placed:
        if element.kind is ElementKind.TEXT:
            lines.append(element.text)
            continue
        if lines:
            merged.append(ParsedElement("\n".join(lines), ElementKind.TEXT, element.page))
            lines = []
        merged.append(element)
    if lines:
        merged.append(ParsedElement("\n".join(lines), ElementKind.TEXT, placed[-1][1].page))
    return merged
