"""The other formats an archive holds: legacy Office (.doc .xls .ppt), Outlook .msg, EPUB,
OpenDocument text and RTF, each read by a well-kept library or a Debian tool.

| format | read by |
|---|---|
| .doc | `catdoc` (Debian package catdoc; antiword refuses small files and misreads CJK) |
| .ppt | `catppt` (Debian package catdoc) |
| .xls | xlrd (merged cells filled in, tables as in `ingest.tables`) |
| .msg | extract-msg (headers, body, attachments parsed by their own type) |
| .epub | the zip's OPF spine, each chapter as HTML |
| .odt | its `content.xml` (headings, paragraphs, lists, tables with merged cells) |
| .ods | its `content.xml`: a table per sheet, merged cells filled in |
| .rtf | striprtf |

Encrypted inputs are refused as "encrypted" (or "password-protected" for Office files).
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

from ingest.elements import ElementKind, ParsedElement, ParseError
from ingest.tables import render_table

TOOL_TIMEOUT_S = 120


def read(
    suffix: str, data: bytes, *, depth: int, notes: list[str] | None = None
) -> list[ParsedElement]:
    """Elements of a file of one of these formats (`READERS`), by its (checked) suffix; what of
    it was not read (a .msg attachment) goes to `notes`."""
    try:
        if suffix == ".msg":
            return parse_msg(data, depth=depth, notes=notes)
        return READERS[suffix](data)
    except ParseError:
        raise
    except Exception as exc:  # these libraries raise many kinds for a damaged file
        raise ParseError(f"the {suffix} file is corrupt or unreadable: {exc}") from exc


def actual_suffix(suffix: str, data: bytes) -> str:
    """The format a legacy-named file really is: Word and Excel save RTF, HTML and Office Open
    XML under .doc/.xls names, and every reader opens them; so does ragkb."""
    if suffix in (".doc", ".xls", ".ppt") and data.startswith(b"PK\x03\x04"):
        return suffix + "x"
    if suffix == ".doc" and data.lstrip().startswith(b"{\\rtf"):
        return ".rtf"
    return suffix


# --- legacy Office (OLE compound files) -------------------------------------------------------


def _ole_streams(data: bytes, label: str) -> set[str]:
    import olefile

    try:
        with olefile.OleFileIO(io.BytesIO(data)) as ole:
            return {"/".join(entry) for entry in ole.listdir(streams=True, storages=False)}
    except (OSError, ValueError, IndexError) as exc:
        raise ParseError(f"the {label} file is corrupt: {exc}") from exc


def _refuse_encrypted_ole(streams: set[str], label: str) -> None:
    if {"EncryptionInfo", "EncryptedPackage"} <= streams:
        raise ParseError(
            f"the {label} file is password-protected (an encrypted Office package): "
            "remove the password and upload it again"
        )


def _run_tool(tool: str, package: str, args: list[str], data: bytes, suffix: str) -> str:
    if shutil.which(tool) is None:
        raise ParseError(
            f"{suffix} files need {tool}, which is not installed on this server "
            f"(apt-get install {package})"
        )
    with tempfile.NamedTemporaryFile(suffix=suffix) as handle:
        handle.write(data)
        handle.flush()
        try:
            done = subprocess.run(
                [tool, *args, handle.name], capture_output=True, timeout=TOOL_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired:
            raise ParseError(
                f"{tool} took longer than {TOOL_TIMEOUT_S} s to read the file"
            ) from None
    message = done.stderr.decode("utf-8", "replace").strip()
    if done.returncode != 0:
        if "encrypt" in message.lower() or "password" in message.lower():
            raise ParseError(f"the {suffix} file is password-protected (encrypted)")
        raise ParseError(f"the {suffix} file is corrupt or unreadable: {message[:200]}")
    return done.stdout.decode("utf-8", "replace")


def _paragraph_elements(text: str, page: int | None = None) -> list[ParsedElement]:
    return [ParsedElement(p.strip(), ElementKind.TEXT, page=page)
            for p in re.split(r"\n\s*\n", text) if p.strip()]  # fmt: skip


def parse_doc(data: bytes) -> list[ParsedElement]:
    """A Word 97-2003 document through catdoc (one paragraph a line; UTF-16 and 8-bit text)."""
    streams = _ole_streams(data, "DOC")
    _refuse_encrypted_ole(streams, "DOC")
    if "WordDocument" not in streams:
        raise ParseError("not a Word 97-2003 document: the file has no WordDocument stream")
    word = _read_stream(data, "WordDocument")
    # [MS-DOC] FIB: flags at offset 0x0A, fEncrypted = 0x0100.
    if len(word) >= 12 and int.from_bytes(word[10:12], "little") & 0x0100:
        raise ParseError("the DOC file is password-protected (encrypted)")
    # -w: no line wrapping, so a paragraph is one line; -d utf-8: UTF-8 output.
    text = _run_tool("catdoc", "catdoc", ["-w", "-d", "utf-8"], data, ".doc")
    return _paragraph_elements(text.replace("\n", "\n\n"))


def parse_ppt(data: bytes) -> list[ParsedElement]:
    """A PowerPoint 97-2003 deck through catppt (its text, slide after slide)."""
    streams = _ole_streams(data, "PPT")
    _refuse_encrypted_ole(streams, "PPT")
    if "PowerPoint Document" not in streams:
        raise ParseError("not a PowerPoint 97-2003 file: it has no PowerPoint Document stream")
    text = _run_tool("catppt", "catdoc", ["-d", "utf-8"], data, ".ppt")
    return _paragraph_elements(text.replace("\n", "\n\n"))


def _read_stream(data: bytes, name: str) -> bytes:
    import olefile

    with olefile.OleFileIO(io.BytesIO(data)) as ole:
        stream: bytes = ole.openstream(name).read()
    return stream


def parse_xls(data: bytes) -> list[ParsedElement]:
    """One titled table per sheet of an Excel 97-2003 workbook (xlrd), merged cells filled in."""
    import xlrd

    streams = _ole_streams(data, "XLS")
    _refuse_encrypted_ole(streams, "XLS")
    try:
        book = xlrd.open_workbook(file_contents=data, formatting_info=True, on_demand=True)
    except xlrd.XLRDError as exc:
        if "encrypt" in str(exc).lower():
            raise ParseError("the XLS file is password-protected (encrypted)") from exc
        raise ParseError(f"the XLS file is corrupt or unreadable: {exc}") from exc
    elements: list[ParsedElement] = []
    try:
        for number in range(book.nsheets):
            sheet = book.sheet_by_index(number)
            grid: list[list[Any]] = [
                [_xls_value(book, sheet.cell(r, c)) for c in range(sheet.ncols)]
                for r in range(sheet.nrows)
            ]
            for row_lo, row_hi, col_lo, col_hi in sheet.merged_cells:
                value = grid[row_lo][col_lo] if row_lo < len(grid) else None
                for r in range(row_lo, min(row_hi, len(grid))):
                    for c in range(col_lo, min(col_hi, len(grid[r]))):
                        grid[r][c] = value
            rendered = render_table(grid)
            if rendered:
                elements.append(ParsedElement(sheet.name, ElementKind.TITLE, page=number + 1))
                elements.append(ParsedElement(rendered, ElementKind.TABLE, page=number + 1))
            book.unload_sheet(number)
    finally:
        book.release_resources()
    return elements


def _xls_value(book: Any, cell: Any) -> object:
    import xlrd

    if cell.ctype == xlrd.XL_CELL_DATE:
        try:
            moment = xlrd.xldate.xldate_as_datetime(cell.value, book.datemode)
        except (ValueError, OverflowError):
            return cell.value
        return moment.date() if moment.time() == moment.min.time() else moment
    if cell.ctype in (xlrd.XL_CELL_ERROR, xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK):
        return None
    return cell.value


# S/MIME encrypted (not merely signed: IPM.Note.SMIME.MultipartSigned is readable) and
# rights-protected (IRM) messages.
_ENCRYPTED_MESSAGE_CLASSES = ("IPM.NOTE.SMIME", "IPM.NOTE.RPMSG")
_SIGNED_ONLY = "IPM.NOTE.SMIME.MULTIPARTSIGNED"

# --- Outlook .msg -----------------------------------------------------------------------------


def parse_msg(
    data: bytes, *, depth: int = 0, notes: list[str] | None = None
) -> list[ParsedElement]:
    """Subject as the title, From/To/Date, the body, then each attachment by its own type."""
    import extract_msg

    streams = _ole_streams(data, "MSG")
    if "__substg1.0_001A001F" in streams:  # PidTagMessageClass, read before opening the rest
        message_class = _read_stream(data, "__substg1.0_001A001F").decode("utf-16-le", "replace")
        kind = message_class.strip("\x00").upper()
        if kind.startswith(_ENCRYPTED_MESSAGE_CLASSES) and not kind.startswith(_SIGNED_ONLY):
            raise ParseError(
                f"the MSG file is an encrypted e-mail ({message_class}); its body cannot be read"
            )
    try:
        message = extract_msg.openMsg(io.BytesIO(data), delayAttachments=False)
    except Exception as exc:  # extract-msg raises its own kinds for a damaged or unknown file
        raise ParseError(f"the MSG file is corrupt or unreadable: {exc}") from exc
    try:
        subject = str(getattr(message, "subject", "") or "") or "(no subject)"
        elements = [ParsedElement(subject, ElementKind.TITLE)]
        fields = (("From", "sender"), ("To", "to"), ("Date", "date"))
        lines = [f"{name}: {getattr(message, attribute)}"
                 for name, attribute in fields if getattr(message, attribute, None)]  # fmt: skip
        if lines:
            elements.append(ParsedElement("\n".join(lines), ElementKind.TEXT))
        body = str(getattr(message, "body", "") or "")
        elements.extend(_paragraph_elements(body.replace("\r\n", "\n")))
        attachments: list[tuple[str, bytes]] = []
        for attachment in message.attachments:
            payload = getattr(attachment, "data", None)
            name = attachment.longFilename or attachment.shortFilename or "attachment"
            if isinstance(payload, bytes):  # embedded messages and OLE objects are not bytes
                attachments.append((str(name), payload))
            elif notes is not None:
                notes.append(f"attachment {str(name)!r} not read: an embedded Outlook message "
                             "or object")  # fmt: skip
    finally:
        message.close()
    from ingest.formats import attached_elements

    for name, payload in attachments:
        elements.extend(attached_elements(name, payload, depth, notes))
    return elements


# --- EPUB -------------------------------------------------------------------------------------

_OPF_NS = {"opf": "http://www.idpf.org/2007/opf",
           "c": "urn:oasis:names:tc:opendocument:xmlns:container"}  # fmt: skip
# The IDPF and Adobe font-obfuscation algorithms hide fonts, not text; anything else is DRM.
_FONT_OBFUSCATION = ("http://www.idpf.org/2008/embedding", "http://ns.adobe.com/pdf/enc#RC")


def parse_epub(data: bytes) -> list[ParsedElement]:
    """Each chapter of the spine in reading order, read as HTML (headings, paragraphs, tables)."""
    from lxml import etree

    from ingest.sniff import check_zip

    with check_zip(data, label="EPUB") as archive:
        names = set(archive.namelist())
        try:
            container = etree.fromstring(archive.read("META-INF/container.xml"))
            rootfile = container.find(".//c:rootfile", _OPF_NS)
            opf_path = rootfile.get("full-path", "") if rootfile is not None else ""
            opf = etree.fromstring(archive.read(opf_path))
        except (KeyError, etree.XMLSyntaxError) as exc:
            raise ParseError(
                f"the EPUB file is corrupt: no readable package document ({exc})"
            ) from exc
        encrypted = _epub_encrypted(archive, names)
        base = PurePosixPath(opf_path).parent
        manifest = {item.get("id"): item.get("href", "")
                    for item in opf.iterfind(".//opf:manifest/opf:item", _OPF_NS)}  # fmt: skip
        chapters = [str(base / manifest[ref.get("idref")]).lstrip("./") if str(base) != "." else
                    manifest[ref.get("idref")]
                    for ref in opf.iterfind(".//opf:spine/opf:itemref", _OPF_NS)
                    if ref.get("idref") in manifest]  # fmt: skip
        if any(_unquote(c) in encrypted for c in chapters):
            raise ParseError("the EPUB file is encrypted (DRM); its text cannot be read")
        elements: list[ParsedElement] = []
        for chapter in chapters:
            name = _unquote(chapter)
            if name in names:
                elements.extend(_html_elements(archive.read(name)))
    return elements


def _unquote(path: str) -> str:
    from urllib.parse import unquote

    return unquote(path.split("#", 1)[0])


def _epub_encrypted(archive: zipfile.ZipFile, names: set[str]) -> set[str]:
    from lxml import etree

    if "META-INF/encryption.xml" not in names:
        return set()
    root = etree.fromstring(archive.read("META-INF/encryption.xml"))
    hidden: set[str] = set()
    for data in root.iter("{*}EncryptedData"):
        method = data.find("{*}EncryptionMethod")
        reference = data.find(".//{*}CipherReference")
        algorithm = method.get("Algorithm", "") if method is not None else ""
        if reference is not None and algorithm not in _FONT_OBFUSCATION:
            hidden.add(_unquote(reference.get("URI", "")))
    return hidden


def _html_elements(markup: bytes) -> list[ParsedElement]:
    from ingest.formats import html_elements
    from ingest.sniff import declared_html_charset, decode_text

    return html_elements(decode_text(markup, declared=declared_html_charset(markup)))


# --- OpenDocument text ------------------------------------------------------------------------

_TEXT = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
_TABLE = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"
_OFFICE = "urn:oasis:names:tc:opendocument:xmlns:office:1.0"


def _odf_content(data: bytes, label: str) -> Any:
    """The parsed content.xml of an OpenDocument file, after the zip and encryption checks."""
    from lxml import etree

    from ingest.sniff import check_zip

    with check_zip(data, label=label) as archive:
        try:
            manifest = archive.read("META-INF/manifest.xml")
        except KeyError:
            manifest = b""
        if b"encryption-data" in manifest:
            raise ParseError(
                f"the {label} file is encrypted (password-protected); remove the password"
            )
        try:
            return etree.fromstring(
                archive.read("content.xml"), etree.XMLParser(resolve_entities=False)
            )
        except (KeyError, etree.XMLSyntaxError) as exc:
            raise ParseError(
                f"the {label} file is corrupt: no readable content.xml ({exc})"
            ) from exc


def parse_ods(data: bytes) -> list[ParsedElement]:
    """One titled table per sheet of an OpenDocument spreadsheet (the sheet number is its page),
    merged cells filled in, rows rendered as in `ingest.tables`."""
    root = _odf_content(data, "ODS")
    elements: list[ParsedElement] = []
    for number, sheet in enumerate(root.iter(f"{{{_TABLE}}}table"), start=1):
        rendered = render_table(_odt_table(sheet))
        if rendered:
            name = sheet.get(f"{{{_TABLE}}}name") or f"Sheet {number}"
            elements.append(ParsedElement(name, ElementKind.TITLE, page=number))
            elements.append(ParsedElement(rendered, ElementKind.TABLE, page=number))
    return elements


def parse_odt(data: bytes) -> list[ParsedElement]:
    """Headings (with their outline level), paragraphs, list items and tables of content.xml."""
    root = _odf_content(data, "ODT")
    elements: list[ParsedElement] = []
    body = root.find(f".//{{{_OFFICE}}}text")
    _odt_walk(body if body is not None else root, elements, in_list=False)
    return elements


def _odt_walk(node: Any, elements: list[ParsedElement], *, in_list: bool) -> None:
    for child in node:
        tag = child.tag
        if tag == f"{{{_TEXT}}}h":
            level = int(child.get(f"{{{_TEXT}}}outline-level", "1") or 1)
            elements.append(
                ParsedElement(_odt_text(child), ElementKind.TITLE, heading_level=max(0, level - 1))
            )
        elif tag == f"{{{_TEXT}}}p":
            kind = ElementKind.LIST_ITEM if in_list else ElementKind.TEXT
            elements.append(ParsedElement(_odt_text(child), kind))
        elif tag == f"{{{_TEXT}}}list":
            _odt_walk(child, elements, in_list=True)
        elif tag == f"{{{_TABLE}}}table":
            elements.append(ParsedElement(render_table(_odt_table(child)), ElementKind.TABLE))
        elif tag in (f"{{{_TEXT}}}list-item", f"{{{_TEXT}}}section", f"{{{_TEXT}}}list-header"):
            _odt_walk(child, elements, in_list=in_list)


def _odt_text(node: Any) -> str:
    parts: list[str] = []

    def walk(element: Any) -> None:
        if element.text:
            parts.append(element.text)
        for child in element:
            local = child.tag.rsplit("}", 1)[-1]
            if local == "s":
                parts.append(" " * int(child.get(f"{{{_TEXT}}}c", "1") or 1))
            elif local == "tab":
                parts.append("\t")
            elif local == "line-break":
                parts.append("\n")
            elif local not in ("note", "annotation"):
                walk(child)
            if child.tail:
                parts.append(child.tail)

    walk(node)
    return "".join(parts).strip()


def _odt_table(table: Any) -> list[list[str]]:
    """The table's grid; a cell spanning rows or columns is copied into the cells it covers."""
    grid: list[list[str]] = []
    for row in table.iter(f"{{{_TABLE}}}table-row"):
        values: list[str] = []
        across_left, across_value = 0, ""
        for cell in row:
            local = cell.tag.rsplit("}", 1)[-1]
            if local == "covered-table-cell":
                column = len(values)
                if across_left > 0:  # covered by a cell to its left (columns spanned)
                    values.append(across_value)
                    across_left -= 1
                else:  # covered by a cell above (rows spanned)
                    values.append(grid[-1][column] if grid and column < len(grid[-1]) else "")
            elif local == "table-cell":
                text = " ".join(_odt_text(p) for p in cell)
                repeated = int(cell.get(f"{{{_TABLE}}}number-columns-repeated", "1") or 1)
                values.extend([text] * max(1, min(repeated, 100)))
                across_left = int(cell.get(f"{{{_TABLE}}}number-columns-spanned", "1") or 1) - 1
                across_value = text
        if any(values):
            repeat = int(row.get(f"{{{_TABLE}}}number-rows-repeated", "1") or 1)
            grid.extend([values] * max(1, min(repeat, 1000)))
    return grid


# --- RTF --------------------------------------------------------------------------------------

_CODEPAGE = re.compile(rb"\\ansicpg(\d+)")


def parse_rtf(data: bytes) -> list[ParsedElement]:
    """RTF through striprtf, decoding `\\'hh` bytes in the document's declared code page."""
    from striprtf.striprtf import rtf_to_text

    if not data.lstrip().startswith(b"{\\rtf"):
        raise ParseError("not an RTF file: the content does not start with {\\rtf")
    found = _CODEPAGE.search(data[:4096])
    encoding = f"cp{int(found.group(1))}" if found else "cp1252"
    try:
        "".encode(encoding)
    except LookupError:
        encoding = "cp1252"
    try:
        text: str = rtf_to_text(  # type: ignore[no-untyped-call]
            data.decode("latin-1"), encoding=encoding, errors="replace"
        )
    except (ValueError, IndexError, RecursionError) as exc:
        raise ParseError(f"the RTF file is corrupt or unreadable: {exc}") from exc
    return _paragraph_elements(text.replace("\n", "\n\n"))


READERS: dict[str, Callable[[bytes], list[ParsedElement]]] = {
    ".doc": parse_doc,
    ".xls": parse_xls,
    ".ppt": parse_ppt,
    ".msg": parse_msg,
    ".epub": parse_epub,
    ".odt": parse_odt,
    ".ods": parse_ods,
    ".rtf": parse_rtf,
}
