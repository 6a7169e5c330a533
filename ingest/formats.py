"""Parsers for the office, mail, data and image formats (unstructured where it runs offline)."""

from __future__ import annotations

import contextlib
import csv
import email
import email.policy
import io
import json
import re
from collections.abc import Iterable
from dataclasses import replace
from email.message import EmailMessage, MIMEPart
from typing import Any

from ingest import ocr
from ingest.elements import ElementKind, ParsedElement, ParseError
from ingest.plaintext import parse_plain_text
from ingest.tables import html_table_grid, render_table

# unstructured's elements must hold this share of the letters and digits of a page's text, or
# the page is read as plain paragraphs (`html_elements`).
HTML_KEPT_SHARE = 0.9
_NO_LANGUAGE = [""]  # skip unstructured's per-document language detection (not used here)
MAX_ATTACHMENT_DEPTH = 2


def from_unstructured(elements: list[Any], page: int | None = None) -> list[ParsedElement]:
    kinds = {"Title": ElementKind.TITLE, "ListItem": ElementKind.LIST_ITEM,
             "Table": ElementKind.TABLE}  # fmt: skip
    parsed: list[ParsedElement] = []
    for element in elements:
        kind = kinds.get(element.category, ElementKind.TEXT)
        metadata = element.metadata
        text = str(element.text).strip()
        if kind is ElementKind.TABLE and getattr(metadata, "text_as_html", None):
            text = table_text_from_html(metadata.text_as_html) or text
        parsed.append(
            ParsedElement(
                text=text,
                kind=kind,
                page=page if page is not None else metadata.page_number,
                heading_level=(metadata.category_depth or 0) if kind is ElementKind.TITLE else 0,
            )
        )
    return parsed


def html_elements(text: str) -> list[ParsedElement]:
    """An HTML page's elements (unstructured), its tables rendered from the page's own markup:
    unstructured's re-rendered table drops rowspan/colspan, which `render_table` needs to carry
    a merged cell into every row it covers."""
    from lxml import etree
    from lxml import html as lxml_html
    from unstructured.partition.html import partition_html

    elements = from_unstructured(partition_html(text=text, languages=_NO_LANGUAGE))
    plain = html_plain_text(text)
    if _letters(e.text for e in elements) < HTML_KEPT_SHARE * _letters([plain]):
        # libxml2 stops at 255 nested elements (unclosed <font> or <div> tags pile up): the
        # page's text beyond them was lost, often all of it. Read as plain paragraphs instead.
        return parse_plain_text(plain)
    try:
        # lxml refuses a str that declares its encoding (XHTML's `<?xml ... encoding=...?>`).
        root = lxml_html.fromstring(re.sub(r"^\s*<\?xml[^>]*\?>", "", text))
    except (etree.ParserError, ValueError):
        return elements
    outer = [t for t in root.iter("table") if not any(a.tag == "table" for a in t.iterancestors())]
    tables = [i for i, e in enumerate(elements) if e.kind is ElementKind.TABLE]
    if len(outer) != len(tables):  # layout tables or nesting: keep unstructured's rendering
        return elements
    for index, table in zip(tables, outer, strict=True):
        grid, header_rows = html_table_grid(table)
        rendered = render_table(grid, header_rows=header_rows or None)
        if rendered:
            elements[index] = replace(elements[index], text=rendered)
    return elements


def _letters(texts: Iterable[str]) -> int:
    return sum(sum(1 for ch in text if ch.isalnum()) for text in texts)


_BLOCK_TAGS = frozenset((
    "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "fieldset",
    "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr",
    "li", "main", "nav", "ol", "p", "pre", "section", "table", "td", "th", "tr", "ul",
))  # fmt: skip
# Left out as unstructured leaves them out (navigation, page header and footer, forms).
_SKIPPED_TAGS = frozenset(
    ("script", "style", "head", "title", "template", "nav", "header", "footer", "form")
)


def html_plain_text(markup: str) -> str:
    """An HTML page's text, blank lines between its blocks, read by the standard library's
    tokenizer (no tree: any nesting depth); scripts, styles and the head are left out."""
    from html.parser import HTMLParser

    parts: list[str] = []
    skipping = 0

    class _Text(HTMLParser):
        def handle_starttag(self, tag: str, attrs: object) -> None:
            nonlocal skipping
            if tag in _SKIPPED_TAGS:
                skipping += 1
            elif tag in _BLOCK_TAGS:
                parts.append("\n\n")

        def handle_endtag(self, tag: str) -> None:
            nonlocal skipping
            if tag in _SKIPPED_TAGS:
                skipping = max(0, skipping - 1)
            elif tag in _BLOCK_TAGS:
                parts.append("\n\n")

        def handle_data(self, data: str) -> None:
            if not skipping:
                parts.append(data)

    reader = _Text(convert_charrefs=True)
    reader.feed(markup)
    reader.close()
    return "".join(parts)


def table_text_from_html(html: str) -> str:
    """A table as text, one line per row, each row carrying its headers (`ingest.tables`)."""
    from lxml import html as lxml_html

    root = lxml_html.fromstring(html)
    table = root if root.tag == "table" else next(root.iter("table"), root)
    grid, header_rows = html_table_grid(table)
    return render_table(grid, header_rows=header_rows or None)


def parse_pptx(data: bytes) -> list[ParsedElement]:
    """Each slide's elements (unstructured; the slide number is the page), its tables rendered
    from the deck's own cells: unstructured's table drops merged cells, which `render_table`
    needs to carry a value merged down or across into every row it covers."""
    from unstructured.partition.pptx import partition_pptx

    elements = from_unstructured(partition_pptx(file=io.BytesIO(data), languages=_NO_LANGUAGE))
    grids = pptx_table_grids(data)
    tables = [i for i, e in enumerate(elements) if e.kind is ElementKind.TABLE]
    if len(grids) != len(tables):  # tables in groups or placeholders: keep unstructured's
        return elements
    for index, grid in zip(tables, grids, strict=True):
        rendered = render_table(grid)
        if rendered:
            elements[index] = replace(elements[index], text=rendered)
    return elements


def pptx_table_grids(data: bytes) -> list[list[list[str]]]:
    """Every table of the deck, merged cells filled in, in unstructured's order: slide by
    slide, shapes (groups opened) from top to bottom and left to right, off-slide ones left
    out."""
    from pptx import Presentation
    from pptx.shapes.group import GroupShape

    def shapes_of(shapes: Any) -> Iterable[Any]:
        for shape in shapes:
            if isinstance(shape, GroupShape):
                yield from shapes_of(shape.shapes)
            else:
                yield shape

    grids: list[list[list[str]]] = []
    for slide in Presentation(io.BytesIO(data)).slides:
        ordered = sorted(shapes_of(slide.shapes), key=lambda s: (s.top or 0, s.left or 0))
        for shape in ordered:
            off_slide = (shape.top and shape.left) and (shape.top < 0 or shape.left < 0)
            if not getattr(shape, "has_table", False) or off_slide:
                continue
            table = shape.table
            rows = [[cell.text for cell in row.cells] for row in table.rows]
            for r, row in enumerate(table.rows):
                for c, cell in enumerate(row.cells):
                    if not cell.is_merge_origin:
                        continue
                    for dr in range(cell.span_height):
                        for dc in range(cell.span_width):
                            if r + dr < len(rows) and c + dc < len(rows[r + dr]):
                                rows[r + dr][c + dc] = cell.text
            grids.append(rows)
    return grids


def parse_xlsx(data: bytes) -> list[ParsedElement]:
    """One titled table per sheet (the sheet number is its page), merged cells filled in."""
    from openpyxl import load_workbook

    workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    elements: list[ParsedElement] = []
    try:
        for number, sheet in enumerate(workbook.worksheets, start=1):
            # The stored dimension can claim all 16,384 columns (a merged title row); without
            # it each row is only as long as its last cell.
            sheet.reset_dimensions()
            grid = [list(row) for row in sheet.iter_rows(min_row=1, min_col=1, values_only=True)]
            fill_merged(grid, xlsx_merged_ranges(data, getattr(sheet, "_worksheet_path", "")))
            rendered = render_table(grid)
            if rendered:
                elements.append(ParsedElement(sheet.title, ElementKind.TITLE, page=number))
                elements.append(ParsedElement(rendered, ElementKind.TABLE, page=number))
    finally:
        workbook.close()
    return elements


def xlsx_merged_ranges(data: bytes, sheet_path: str) -> list[tuple[int, int, int, int]]:
    """(min_col, min_row, max_col, max_row) of each merged range of one sheet, 1-based.

    openpyxl's read-only mode (bounded memory) does not report merged cells, so they are read
    from the sheet's `<mergeCells>` element directly."""
    import zipfile

    from lxml import etree
    from openpyxl.utils.cell import range_boundaries

    ranges: list[tuple[int, int, int, int]] = []
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        try:
            member = archive.open(sheet_path.lstrip("/"))
        except KeyError:
            return ranges
        with member:
            # Every element is let go once read: with a `tag` filter iterparse still built the
            # whole sheet's tree (+148 MB for a 1 MB workbook) before reaching <mergeCells>.
            for _, element in etree.iterparse(member, events=("end",)):
                if element.tag.endswith("}mergeCell"):
                    _merged_range(element.get("ref", ""), ranges, range_boundaries)
                if element.tag.endswith(("}row", "}mergeCell")):
                    element.clear()
                    parent = element.getparent()
                    while parent is not None and element.getprevious() is not None:
                        del parent[0]
    return ranges


def _merged_range(ref: str, ranges: list[tuple[int, int, int, int]], boundaries: Any) -> None:
    try:
        min_col, min_row, max_col, max_row = boundaries(ref)
    except (ValueError, TypeError):
        return
    if min_col and min_row and max_col and max_row:  # whole rows/columns: None
        ranges.append((min_col, min_row, max_col, max_row))


def fill_merged(grid: list[list[Any]], ranges: list[tuple[int, int, int, int]]) -> None:
    """Copy each merged range's top-left value into every cell it covers (within the grid: a
    title merged across all 16,384 columns fills only the columns that hold data)."""
    width = max((_last_filled(row) for row in grid), default=0)
    for min_col, min_row, max_col, max_row in ranges:
        max_col = min(max_col, width)
        if min_row > len(grid) or min_col > len(grid[min_row - 1]):
            continue
        value = grid[min_row - 1][min_col - 1]
        for r in range(min_row - 1, min(max_row, len(grid))):
            row = grid[r]
            if len(row) < max_col:
                row.extend([None] * (max_col - len(row)))
            for c in range(min_col - 1, max_col):
                row[c] = value


def _last_filled(row: list[Any]) -> int:
    """1 + the index of the row's last cell with a value (0 for an empty row)."""
    for index in range(len(row) - 1, -1, -1):
        if row[index] is not None and str(row[index]).strip():
            return index + 1
    return 0


CSV_SNIFF_BYTES = 16_384


def parse_csv(text: str, *, delimiter: str = ",") -> list[ParsedElement]:
    """A delimited file as one table. A .tsv is split on tabs; a .csv's delimiter (`,` `;` tab
    `|`: Excel writes `;` where the decimal mark is a comma) is sniffed from its first 16 KB,
    falling back to `,` when the sample says nothing clear."""
    dialect: type[csv.Dialect] | csv.Dialect = csv.excel_tab if delimiter == "\t" else csv.excel
    if delimiter != "\t":
        sample = text[:CSV_SNIFF_BYTES]
        if len(text) > CSV_SNIFF_BYTES and "\n" in sample:
            sample = sample[: sample.rindex("\n")]
        with contextlib.suppress(csv.Error):  # no clear delimiter: a comma
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    try:
        # Universal newlines: Excel for Mac's "CSV (Macintosh)" ends rows with a lone \r.
        rendered = render_table(list(csv.reader(io.StringIO(text, newline=None), dialect)))
    except csv.Error as exc:
        raise ParseError(csv_error_reason(exc)) from exc
    return [ParsedElement(rendered, ElementKind.TABLE)] if rendered else []


MAX_JSON_DEPTH = 500
_TOO_DEEP = f"the JSON is nested deeper than the limit of {MAX_JSON_DEPTH} levels"


def csv_error_reason(exc: csv.Error) -> str:
    """What is wrong with a CSV file, naming the limit where one was passed."""
    if "field larger than field limit" in str(exc):
        return (
            f"a CSV field is longer than the limit of {csv.field_size_limit():,} characters "
            "(an unclosed quote?)"
        )
    return f"the CSV file is malformed: {exc}"


def parse_json(text: str) -> list[ParsedElement]:
    """Each leaf as `path.to.key: value`, so a chunk keeps the names of the values it holds."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(f"not valid JSON: {exc}") from exc
    except RecursionError:  # the decoder recurses once per level, up to ~1,000
        raise ParseError(_TOO_DEEP) from None
    lines: list[str] = []

    def walk(node: Any, path: str, depth: int = 0) -> None:
        if depth > MAX_JSON_DEPTH:
            raise ParseError(_TOO_DEEP)
        if isinstance(node, dict):
            for key, child in node.items():
                walk(child, f"{path}.{key}" if path else str(key), depth + 1)
        elif isinstance(node, list):
            for index, child in enumerate(node):
                walk(child, f"{path}[{index}]", depth + 1)
        elif node is not None and str(node).strip():
            lines.append(f"{path}: {node}" if path else str(node))

    walk(value, "")
    return [ParsedElement(line, ElementKind.TEXT) for line in lines]


def parse_email(
    data: bytes, *, depth: int = 0, notes: list[str] | None = None
) -> list[ParsedElement]:
    """Headers as the title, the body, then each attachment parsed by its own type.

    Only the mail's own text becomes elements: an attachment that cannot be read is left out and
    said in `notes` (shown with the file, never indexed). An encrypted mail fails: its headers
    alone are not the document.
    """
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    if encrypted := encrypted_email_kind(message):
        if encrypted == _OPAQUE_SIGNED:
            raise ParseError("S/MIME opaque-signed e-mail: its body is inside the signature, "
                             "which is not unpacked")  # fmt: skip
        raise ParseError(f"encrypted e-mail ({encrypted}): the body cannot be read without the "
                         "recipient's key")  # fmt: skip
    elements = [ParsedElement(str(message.get("subject", "")) or "(no subject)", ElementKind.TITLE)]
    header_lines = [f"{h}: {message[h]}" for h in ("From", "To", "Date") if message.get(h)]
    if header_lines:
        elements.append(ParsedElement("\n".join(header_lines), ElementKind.TEXT))
    body = message.get_body(preferencelist=("plain", "html"))
    if body is not None:
        content = part_text(body)
        if body.get_content_type() == "text/html":
            elements.extend(html_elements(content))
        else:
            elements.extend(ParsedElement(p.strip(), ElementKind.TEXT)
                            for p in content.split("\n\n") if p.strip())  # fmt: skip
    for part in message.iter_attachments():
        name, payload = _attachment(part)
        if payload is not None:
            elements.extend(attached_elements(name, payload, depth, notes))
        else:
            _note(notes, f"attachment {name!r} not read: its content is empty or not a file")
    return elements


def _attachment(part: MIMEPart) -> tuple[str, bytes | None]:
    """An attachment's name and bytes. A forwarded mail (message/rfc822) is its own .eml; a part
    without a file name, or whose name has no known extension, is named by its content type
    (an inline text/plain part reads as a .txt file)."""
    from ingest.parse import SUPPORTED_TYPES

    name = part.get_filename() or ""
    content_type = part.get_content_type()
    if content_type == "message/rfc822":
        inner = part.get_payload()
        inner = inner[0] if isinstance(inner, list) and inner else inner
        if not isinstance(inner, email.message.Message):
            return name or "message.eml", None
        subject = str(inner.get("subject", "") or "message")
        return name or f"{subject}.eml", inner.as_bytes(policy=email.policy.default)
    payload = part.get_payload(decode=True)
    suffixes = {t: s for s, t in reversed(SUPPORTED_TYPES.items())}
    if "." + name.rsplit(".", 1)[-1].lower() not in SUPPORTED_TYPES and content_type in suffixes:
        name = (name or "attachment") + suffixes[content_type]
    return name or "attachment", payload if isinstance(payload, bytes) and payload else None


def part_text(part: MIMEPart) -> str:
    """A text part's content, decoded as a text file is (`decode_text`): its declared charset
    when the bytes fit it (Latin-1 read as windows-1252, as mail clients do), else detected
    with the cp1252 preference. A part without a charset, with `unknown-8bit` or an unknown
    label, or with a charset its bytes do not fit, is not read as `?` marks or refused."""
    from ingest.sniff import declared_html_charset, decode_text

    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return str(part.get_payload())
    declared = part.get_content_charset()
    if declared is None and part.get_content_type() == "text/html":
        declared = declared_html_charset(payload)
    if not payload.strip():
        return ""
    return decode_text(payload, declared=declared)


def attached_elements(
    name: str, payload: bytes, depth: int, notes: list[str] | None = None
) -> list[ParsedElement]:
    """An e-mail attachment as elements under an `Attachment: name` title, parsed by its type.
    One that cannot be read gives no elements (ragkb's words are never document text): why is
    said in `notes`."""
    from ingest.parse import parse_document  # attachments recurse into the general parser

    if depth >= MAX_ATTACHMENT_DEPTH:
        _note(notes, f"attachment {name!r} not read: nested more than "
                     f"{MAX_ATTACHMENT_DEPTH} mails deep")  # fmt: skip
        return []
    try:
        attached = parse_document(name, payload, _depth=depth + 1)
    except ParseError as exc:
        _note(notes, f"attachment {name!r} not read: {exc}")
        return []
    if notes is not None:
        notes.extend(attached.notes)
    elements = [ParsedElement(f"Attachment: {name}", ElementKind.TITLE, heading_level=1)]
    # Attachment headings sit below the attachment's own title.
    elements.extend(
        ParsedElement(
            e.text, e.kind, None, e.heading_level + 2 if e.kind is ElementKind.TITLE else 0
        )
        for e in attached.elements
    )
    return elements


def _note(notes: list[str] | None, note: str) -> None:
    if notes is not None:
        notes.append(note)


# RFC 1847/3156 (PGP/MIME) and RFC 8551 (S/MIME) content types of an encrypted body.
_ENCRYPTED_TYPES = {"multipart/encrypted": "PGP/MIME", "application/pgp-encrypted": "PGP/MIME"}
_PGP_ARMOR = "-----BEGIN PGP MESSAGE-----"
_OPAQUE_SIGNED = "S/MIME opaque-signed"


def encrypted_email_kind(message: EmailMessage) -> str | None:
    """How the mail's body is encrypted (PGP/MIME, S/MIME, inline PGP), or None if it is not.
    The mail's own parts are looked at, at any depth of multipart nesting (a client may wrap
    the encrypted part in multipart/mixed), but not inside a forwarded mail. An S/MIME
    opaque-signed body (signed-data) is named too: its text is inside the signature, which
    ragkb does not unpack."""
    for part in _own_parts(message):
        content_type = part.get_content_type()
        if content_type in _ENCRYPTED_TYPES:
            return _ENCRYPTED_TYPES[content_type]
        if content_type in ("application/pkcs7-mime", "application/x-pkcs7-mime"):
            smime_type = str(part.get_param("smime-type", "") or "").lower()
            if smime_type in ("", "enveloped-data", "authenveloped-data"):
                return "S/MIME"
            if smime_type == "signed-data":
                return _OPAQUE_SIGNED
    body = message.get_body(preferencelist=("plain", "html"))
    if body is not None:
        try:
            text = part_text(body)
        except ParseError:
            return None
        if body.get_content_type() == "text/html":
            text = "\n".join(e.text for e in html_elements(text))
        if text.lstrip().startswith(_PGP_ARMOR):
            return "inline PGP"
    return None


def _own_parts(part: MIMEPart) -> list[MIMEPart]:
    """The part and its multipart sub-parts, not descending into attached mails."""
    parts = [part]
    if part.is_multipart() and part.get_content_type() != "message/rfc822":
        for sub in part.iter_parts():
            parts.extend(_own_parts(sub))
    return parts


def ocr_languages() -> str | None:
    """The installed Tesseract languages ragkb reads with, or None without Tesseract."""
    return ocr.languages()


def ocr_image(image: Any, *, page: int | None = None, what: str = "image") -> list[ParsedElement]:
    return ocr.read_image(image, page=page, what=what)


def parse_image(data: bytes) -> list[ParsedElement]:
    """The picture's text by OCR; each page of a multi-page TIFF (a fax, a scanner's batch) in
    order with its page number (only the first was read), up to `ingest.pdf.MAX_OCR_PAGES`
    as for a PDF's scanned pages."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    from ingest.pdf import MAX_OCR_PAGES

    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise ParseError(f"the image is corrupt or unreadable: {exc}") from exc
    frames = int(getattr(image, "n_frames", 1) or 1)
    elements: list[ParsedElement] = []
    for number, frame in enumerate(ImageSequence.Iterator(image), start=1):
        if number > MAX_OCR_PAGES:
            break
        if frame.width * frame.height > 50_000_000:
            raise ParseError("the image is too large to read (over 50 megapixels)")
        page = number if frames > 1 else None
        elements.extend(ocr_image(frame.copy(), page=page))
    return elements
