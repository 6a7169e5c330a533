"""Checks on a file's bytes before any parser sees them: real type, zip bombs, text encoding."""

from __future__ import annotations

import io
import re
import zipfile

import olefile

from ingest.elements import ParseError

ZIP_MAGIC = b"PK\x03\x04"
# Encrypted Office Open XML files (and legacy .doc/.xls) are OLE compound files, not zips.
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
PDF_MAGIC = b"%PDF"
_IMAGE_MAGIC = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"II*\x00": "TIFF",
                b"MM\x00*": "TIFF", b"GIF8": "GIF"}  # fmt: skip

# Decompression-bomb limits for zip-based formats (DOCX, XLSX, PPTX, ODT): checked from the
# archive's directory, before anything is decompressed.
MAX_UNCOMPRESSED_BYTES = 512 * 1024 * 1024
MAX_COMPRESSION_RATIO = 200
MAX_ZIP_MEMBERS = 10_000


def sniffed_kind(data: bytes) -> str | None:
    """What the bytes are, by their magic number: pdf, zip, ole, image, or None (text?)."""
    if data.startswith(PDF_MAGIC):
        return "pdf"
    if data.startswith(ZIP_MAGIC):
        return "zip"
    if data.startswith(OLE_MAGIC):
        return "ole"
    if any(data.startswith(magic) for magic in _IMAGE_MAGIC):
        return "image"
    return None


# Streams that name what an OLE compound file holds ([MS-OFFCRYPTO], [MS-DOC], [MS-XLS], [MS-PPT]).
_ENCRYPTED_PACKAGE_STREAMS = ("EncryptionInfo", "EncryptedPackage")
_LEGACY_OFFICE_STREAMS = {
    "WordDocument": "a legacy Word 97-2003 document (.doc)",
    "Workbook": "a legacy Excel 97-2003 workbook (.xls)",
    "Book": "a legacy Excel 5.0 workbook (.xls)",
    "PowerPoint Document": "a legacy PowerPoint 97-2003 presentation (.ppt)",
}


def describe_ole(data: bytes) -> str:
    """What an OLE compound file (magic D0 CF 11 E0) is, read from its stream directory."""
    try:
        with olefile.OleFileIO(io.BytesIO(data)) as ole:
            streams = {"/".join(entry) for entry in ole.listdir(streams=True, storages=False)}
    except (OSError, ValueError, IndexError) as exc:
        return f"a corrupt OLE compound file ({exc})"
    if all(name in streams for name in _ENCRYPTED_PACKAGE_STREAMS):
        return "password-protected (an encrypted Office package)"
    for stream, kind in _LEGACY_OFFICE_STREAMS.items():
        if stream in streams:
            return kind
    return "an OLE compound file, not an Office Open XML package"


def check_zip(data: bytes, *, label: str) -> zipfile.ZipFile:
    """Open a zip-based document after refusing encrypted members and decompression bombs."""
    if data.startswith(OLE_MAGIC):
        # Office writes a password-protected DOCX/XLSX/PPTX as an OLE container; so were the
        # pre-2007 binary formats. The reason says which, so the user knows what to do.
        found = describe_ole(data)
        advice = (
            "remove the password and upload it again"
            if found.startswith("password")
            else f"save it as .{label.lower()} and upload it again"
        )
        raise ParseError(f"the {label} file is {found}: {advice}")
    if not data.startswith(ZIP_MAGIC):
        raise ParseError(f"not a {label} file: the content is not an Office Open XML package")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except (zipfile.BadZipFile, ValueError) as exc:
        raise ParseError(f"the {label} file is corrupt: {exc}") from exc
    if len(members) > MAX_ZIP_MEMBERS:
        raise ParseError(f"the {label} file has {len(members)} parts (zip bomb?)")
    total = sum(m.file_size for m in members)
    compressed = max(1, sum(m.compress_size for m in members))
    if total > MAX_UNCOMPRESSED_BYTES or total / compressed > MAX_COMPRESSION_RATIO:
        raise ParseError(
            f"the {label} file expands to {total} bytes from {compressed} "
            "(decompression bomb?); refused"
        )
    if any(m.flag_bits & 0x1 for m in members):
        raise ParseError(f"the {label} file is password-protected (encrypted)")
    return archive


def decode_text(data: bytes, *, declared: str | None = None) -> str:
    """Text in whatever encoding it came in; binary content is refused.

    UTF-8 first (or UTF-16 without a byte-order mark, told by its zero bytes: Latin text in
    UTF-16 has one in every other byte); then the encoding the file declares (an HTML
    `<meta charset>`, a mail part's charset), if it decodes; then the detected one (GB18030,
    Shift-JIS, ...). Among single-byte code pages the detector cannot tell languages apart on
    short samples (French cp1252 came out as cp1257: `façade` read `faēade`), so windows-1252
    (a superset of Latin-1) is taken whenever the detector counts it among the encodings that
    fit; another code page only when the detector ruled cp1252 out.
    A multi-byte guess (UTF-16, Big5, GB18030: the detector's answer for `très` or `Müller`
    alone) loses to cp1252 when the cp1252 reading is Western text (`reads_as_western`).
    """
    head = data[:8192]
    utf16 = _utf16_without_bom(head)
    if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")) and not utf16:
        raise ParseError("binary content in a text file")
    try:
        text = data.decode(utf16) if utf16 else data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = _declared_or_detected(data, declared)
    # Many control characters: binary junk that happens to decode (or a code page "decoded").
    sample = text[:8192]
    controls = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\t\n\r\f")
    if controls > 0.05 * max(1, len(sample)):
        raise ParseError("binary content in a text file")
    return text


def _utf16_without_bom(head: bytes) -> str | None:
    """ "utf-16-le" or "utf-16-be" for UTF-16 text without a byte-order mark: zero bytes in at
    least a third of the odd (LE) or even (BE) positions and almost none in the others."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or len(head) < 4:
        return None
    even, odd = head[0::2], head[1::2]
    zeros_even, zeros_odd = even.count(0), odd.count(0)
    if zeros_odd * 3 >= len(odd) and zeros_even * 50 <= len(even):
        return "utf-16-le"
    if zeros_even * 3 >= len(even) and zeros_odd * 50 <= len(odd):
        return "utf-16-be"
    return None


# cp1252's typographic marks (and the no-break space) that Western text holds beside letters.
_WESTERN_MARKS = set("\u00a0“”‘’‚„–—…€«»•·°§©®™£¢¥¿¡ªº±×÷¹²³¼½¾")
_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")
_ODD_ASCII = set("[]^`{}|~\\@<>_") | {chr(c) for c in range(32) if chr(c) not in "\t\n\r\f"}


def reads_as_western(text: str) -> bool:
    """Whether a cp1252 reading of bytes is Western European text: each run of non-ASCII
    characters is at most 3 long and made of Latin letters and typographic marks, and next to
    none of the ASCII is brackets, carets or control characters. Chinese in GB18030 or Big5
    read as cp1252 gives longer runs and symbols (`Äê¼Ù`); UTF-16 gives brackets and controls."""
    runs = _NON_ASCII_RUN.findall(text)
    if not runs:
        return False
    for run in runs:
        if len(run) > 3:
            return False
        for ch in run:
            if ch not in _WESTERN_MARKS and not (ch.isalpha() and ch <= "\u017f"):
                return False
    odd = sum(1 for ch in text if ch in _ODD_ASCII)
    return odd * 100 <= len(text)


# What an HTML page says its encoding is, in its first bytes (WHATWG "prescan", simplified),
# or an XHTML file (an EPUB chapter) in its XML declaration.
_META_CHARSET = re.compile(
    rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)"""
    rb"""|^\s*<\?xml[^>]+encoding\s*=\s*["']([A-Za-z0-9_.:-]+)""",
    re.IGNORECASE,
)


def declared_html_charset(data: bytes) -> str | None:
    """The charset an HTML file declares in a `<meta>` tag of its first 4 KB (or an XHTML file
    in its `<?xml ... encoding=...?>`), or None."""
    match = _META_CHARSET.search(data[:4096])
    if match is None:
        return None
    return (match.group(1) or match.group(2)).decode("ascii").lower()


def _declared_or_detected(data: bytes, declared: str | None) -> str:
    if declared:
        # WHATWG: a page labelled Latin-1 / ASCII is decoded as windows-1252.
        if declared in ("iso-8859-1", "latin1", "latin-1", "us-ascii", "ascii"):
            declared = "cp1252"
        try:
            return data.decode(declared)
        except (LookupError, UnicodeDecodeError):
            pass  # a wrong or unknown label: detect instead
    from charset_normalizer import from_bytes
    from charset_normalizer.utils import is_multi_byte_encoding

    matches = from_bytes(data)
    best = matches.best()
    if best is None:
        raise ParseError("binary content in a text file: no text encoding fits it")
    if is_multi_byte_encoding(best.encoding):
        try:
            western = data.decode("cp1252")
        except UnicodeDecodeError:
            western = ""
        if reads_as_western(western):
            return western
    if not is_multi_byte_encoding(best.encoding) and any(
        "cp1252" in match.could_be_from_charset for match in matches
    ):
        try:
            return data.decode("cp1252")
        except UnicodeDecodeError:
            pass  # bytes cp1252 leaves undefined (0x81, 0x8D, ...): not cp1252 after all
    return str(best)
