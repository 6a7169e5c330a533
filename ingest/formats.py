"""Parsers for the office, mail, data and image formats (unstructured where it runs offline)."""

from __future__ import annotations

import csv
import email
import email.policy
import io
import json
import shutil
from email.message import EmailMessage
from functools import cache
from typing import Any

from ingest.elements import ElementKind, ParsedElement, ParseError

_NO_LANGUAGE = [""]  # skip unstructured's per-document language detection (not used here)
OCR_LANGUAGES = ("eng", "chi_sim")
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


def table_text_from_html(html: str) -> str:
    """A table as text: one line per row, cells separated by ` | ` (rows stay readable)."""
    from lxml import html as lxml_html

    root = lxml_html.fromstring(html)
    rows = []
    for row in root.iter("tr"):
        cells = [" ".join(c.text_content().split()) for c in row if c.tag in ("td", "th")]
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)


def parse_pptx(data: bytes) -> list[ParsedElement]:
    from unstructured.partition.pptx import partition_pptx

    return from_unstructured(partition_pptx(file=io.BytesIO(data), languages=_NO_LANGUAGE))


def parse_xlsx(data: bytes) -> list[ParsedElement]:
    """One titled table per sheet (the sheet number is its page)."""
    from openpyxl import load_workbook

    workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    elements: list[ParsedElement] = []
    try:
        for number, sheet in enumerate(workbook.worksheets, start=1):
            rows = [
                " | ".join("" if v is None else str(v) for v in row)
                for row in sheet.iter_rows(values_only=True)
                if any(v is not None and str(v).strip() for v in row)
            ]
            if rows:
                elements.append(ParsedElement(sheet.title, ElementKind.TITLE, page=number))
                elements.append(ParsedElement("\n".join(rows), ElementKind.TABLE, page=number))
    finally:
        workbook.close()
    return elements


def parse_csv(text: str, *, delimiter: str = ",") -> list[ParsedElement]:
    try:
        rows = [" | ".join(cells) for cells in csv.reader(io.StringIO(text), delimiter=delimiter)]
    except csv.Error as exc:
        raise ParseError(csv_error_reason(exc)) from exc
    rendered = "\n".join(r for r in rows if r.strip(" |"))
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
    from ingest.parse import parse_document  # attachments recurse into the general parser

    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    if encrypted := encrypted_email_kind(message):
        raise ParseError(f"encrypted e-mail ({encrypted}): the body cannot be read without the "
                         "recipient's key")  # fmt: skip
    elements = [ParsedElement(str(message.get("subject", "")) or "(no subject)", ElementKind.TITLE)]
    header_lines = [f"{h}: {message[h]}" for h in ("From", "To", "Date") if message.get(h)]
    if header_lines:
        elements.append(ParsedElement("\n".join(header_lines), ElementKind.TEXT))
    body = message.get_body(preferencelist=("plain", "html"))
    if body is not None:
        content = body.get_content()
        if body.get_content_type() == "text/html":
            from unstructured.partition.html import partition_html

            elements.extend(from_unstructured(partition_html(text=content, languages=[""])))
        else:
            elements.extend(ParsedElement(p.strip(), ElementKind.TEXT)
                            for p in content.split("\n\n") if p.strip())  # fmt: skip
    for part in message.iter_attachments():
        name = part.get_filename() or "attachment"
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        if depth >= MAX_ATTACHMENT_DEPTH:
            _note(notes, f"attachment {name!r} not read: nested more than "
                         f"{MAX_ATTACHMENT_DEPTH} mails deep")  # fmt: skip
            continue
        try:
            attached = parse_document(name, payload, _depth=depth + 1)
        except ParseError as exc:
            _note(notes, f"attachment {name!r} not read: {exc}")
            continue
        elements.append(ParsedElement(f"Attachment: {name}", ElementKind.TITLE, heading_level=1))
        if notes is not None:
            notes.extend(attached.notes)
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


def encrypted_email_kind(message: EmailMessage) -> str | None:
    """How the mail's body is encrypted (PGP/MIME, S/MIME, inline PGP), or None if it is not."""
    content_type = message.get_content_type()
    if content_type in _ENCRYPTED_TYPES:
        return _ENCRYPTED_TYPES[content_type]
    if content_type in ("application/pkcs7-mime", "application/x-pkcs7-mime"):
        smime_type = str(message.get_param("smime-type", "") or "").lower()
        if smime_type in ("", "enveloped-data", "authenveloped-data"):
            return "S/MIME"
    body = message.get_body(preferencelist=("plain",))
    if body is not None:
        try:
            text = body.get_content()
        except (LookupError, ValueError):
            return None
        if isinstance(text, str) and text.lstrip().startswith(_PGP_ARMOR):
            return "inline PGP"
    return None


def parse_pandoc_format(data: bytes, *, suffix: str) -> list[ParsedElement]:
    """RTF and ODT through unstructured, which needs the pandoc program."""
    if shutil.which("pandoc") is None:
        raise ParseError(
            f"{suffix} files need pandoc, which is not installed on this server "
            "(apt-get install pandoc)"
        )
    if suffix == ".odt":
        from unstructured.partition.odt import partition_odt

        return from_unstructured(partition_odt(file=io.BytesIO(data), languages=_NO_LANGUAGE))
    from unstructured.partition.rtf import partition_rtf

    return from_unstructured(partition_rtf(file=io.BytesIO(data), languages=_NO_LANGUAGE))


@cache
def ocr_languages() -> str | None:
    """The installed Tesseract languages ragkb reads with, or None without Tesseract."""
    if shutil.which("tesseract") is None:
        return None
    try:
        import pytesseract

        installed = set(pytesseract.get_languages())
    except Exception:  # pytesseract missing or tesseract broken: OCR is off
        return None
    wanted = [lang for lang in OCR_LANGUAGES if lang in installed]
    return "+".join(wanted) or None


def ocr_image(image: Any, *, page: int | None = None, what: str = "image") -> list[ParsedElement]:
    languages = ocr_languages()
    if languages is None:
        raise ParseError(f"the {what} has no text layer and OCR (Tesseract) is not installed")
    import pytesseract

    text = pytesseract.image_to_string(image, lang=languages)
    return [ParsedElement(p.strip(), ElementKind.TEXT, page=page)
            for p in text.split("\n\n") if p.strip()]  # fmt: skip


def parse_image(data: bytes) -> list[ParsedElement]:
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise ParseError(f"the image is corrupt or unreadable: {exc}") from exc
    if image.width * image.height > 50_000_000:
        raise ParseError("the image is too large to read (over 50 megapixels)")
    return ocr_image(image)


def ocr_pdf(data: bytes, *, max_pages: int = 200) -> list[ParsedElement]:
    """Render each page (pypdfium2) and read it with Tesseract, keeping page numbers."""
    import pypdfium2

    document = pypdfium2.PdfDocument(data)
    try:
        elements: list[ParsedElement] = []
        for index in range(min(len(document), max_pages)):
            image = document[index].render(scale=300 / 72).to_pil()
            elements.extend(ocr_image(image, page=index + 1, what="PDF"))
        return elements
    finally:
        document.close()
