"""Small real documents made by the tests themselves (PDF, DOCX, XLSX, PPTX, EML)."""

from __future__ import annotations

from pathlib import Path


def make_pdf(path: Path, pages: list[tuple[str, list[str]]]) -> Path:
    """A text PDF: one (heading, lines) per page."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(path), pagesize=A4)
    for heading, lines in pages:
        pdf.setFont("Helvetica-Bold", 16)
        pdf.drawString(72, 780, heading)
        pdf.setFont("Helvetica", 11)
        for i, line in enumerate(lines):
            pdf.drawString(72, 750 - 16 * i, line)
        pdf.showPage()
    pdf.save()
    return path


def make_encrypted_pdf(path: Path) -> Path:
    from pypdf import PdfReader, PdfWriter

    plain = make_pdf(path.with_suffix(".plain.pdf"), [("Secret", ["The code is 1234."])])
    writer = PdfWriter()
    for page in PdfReader(plain).pages:
        writer.add_page(page)
    writer.encrypt("pw")
    with path.open("wb") as out:
        writer.write(out)
    plain.unlink()
    return path


def make_encrypted_office(path: Path, password: str = "pw") -> Path:
    """Encrypt an Office Open XML file in place, as Office does with a password (Agile
    encryption in an OLE container)."""
    import io

    from msoffcrypto.format.ooxml import OOXMLFile

    encrypted = io.BytesIO()
    with path.open("rb") as plain:
        OOXMLFile(plain).encrypt(password, encrypted)
    path.write_bytes(encrypted.getvalue())
    return path


def make_docx(path: Path, sections: list[tuple[str, list[str]]]) -> Path:
    import docx

    document = docx.Document()
    for heading, paragraphs in sections:
        document.add_heading(heading, level=1)
        for paragraph in paragraphs:
            document.add_paragraph(paragraph)
    document.save(str(path))
    return path


def make_paged_docx(path: Path, pages: list[list[str]], *, rendered: bool = False) -> Path:
    """A DOCX whose pages are separated the way Word records them: an explicit page break
    (`w:br w:type="page"`) or, with `rendered`, the break Word writes where it laid out a new
    page (`w:lastRenderedPageBreak`, here at the start of each new page's first paragraph)."""
    import docx
    from docx.enum.text import WD_BREAK
    from docx.oxml import OxmlElement

    document = docx.Document()
    for number, paragraphs in enumerate(pages, start=1):
        for index, text in enumerate(paragraphs):
            paragraph = document.add_paragraph()
            run = paragraph.add_run(text)
            if rendered and number > 1 and index == 0:
                run._r.insert(0, OxmlElement("w:lastRenderedPageBreak"))
        if not rendered and number < len(pages):
            document.add_paragraph().add_run().add_break(WD_BREAK.PAGE)
    document.save(str(path))
    return path


def make_pptx(path: Path, slides: list[tuple[str, str]]) -> Path:
    """One (title, body) per slide."""
    from pptx import Presentation

    deck = Presentation()
    for title, body in slides:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
    deck.save(str(path))
    return path


def make_xlsx(path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    from openpyxl import Workbook

    workbook = Workbook()
    workbook.remove(workbook.active)
    for name, rows in sheets.items():
        sheet = workbook.create_sheet(name)
        for row in rows:
            sheet.append(row)
    workbook.save(str(path))
    return path


def make_eml(subject: str, body: str, attachments: dict[str, bytes]) -> bytes:
    from email.message import EmailMessage

    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = "hr@example.com"
    message["To"] = "all@example.com"
    message.set_content(body)
    for name, data in attachments.items():
        message.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return message.as_bytes()


def make_zip_bomb(path: Path, *, inner: str = "word/document.xml", size: int = 20_000_000) -> Path:
    """A zip whose one member expands ~1000-fold (zeros): a decompression bomb in miniature."""
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(inner, b"\x00" * size)
    return path


def make_scanned_pdf(path: Path, text: str) -> Path:
    """A PDF that is only a picture of `text` (no text layer), as a scanner makes."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (1700, 400), "white")
    font = ImageFont.load_default(size=64)
    ImageDraw.Draw(image).text((60, 150), text, fill="black", font=font)
    image.save(str(path), "PDF", resolution=200)
    return path


def region_rows(regions: dict[str, dict[int, int]], bands: int = 35) -> list[list[object]]:
    """Rows of a banding sheet: Region | Band | Count, each region `bands` rows long; counts
    not given in `regions` are 100 + band."""
    rows: list[list[object]] = [["Region", "Band", "Count"]]
    for region, counts in regions.items():
        for band in range(1, bands + 1):
            rows.append([region, f"Band {band}", counts.get(band, 100 + band)])
    return rows


def make_merged_xlsx(path: Path, rows: list[list[object]], merge_column: int = 1) -> Path:
    """An XLSX whose first column is merged down over each run of equal values, as people lay
    out a region spanning many rows (only the run's first cell keeps the value)."""
    from openpyxl import Workbook
    from openpyxl.utils import get_column_letter

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Bands"
    for row in rows:
        sheet.append(row)
    letter, column = get_column_letter(merge_column), merge_column - 1
    start = 2  # sheet row numbers: row r holds rows[r - 1]; row 1 is the header
    for r in range(3, len(rows) + 2):
        if r == len(rows) + 1 or rows[r - 1][column] != rows[start - 1][column]:
            if r - 1 > start:
                sheet.merge_cells(f"{letter}{start}:{letter}{r - 1}")
            start = r
    workbook.save(str(path))
    return path


def make_merged_xls(path: Path, rows: list[list[object]]) -> Path:
    """The same sheet as make_merged_xlsx as an Excel 97-2003 .xls (xlwt), column A merged."""
    import xlwt

    book = xlwt.Workbook()
    sheet = book.add_sheet("Bands")
    for c, name in enumerate(rows[0]):
        sheet.write(0, c, name)
    start = 1
    for r in range(1, len(rows) + 1):
        if r == len(rows) or rows[r][0] != rows[start][0]:
            if r - 1 > start:
                sheet.write_merge(start, r - 1, 0, 0, rows[start][0])
            else:
                sheet.write(start, 0, rows[start][0])
            for i in range(start, r):
                for c in range(1, len(rows[i])):
                    sheet.write(i, c, rows[i][c])
            start = r
    book.save(str(path))
    return path


def page_image(text: str, *, size: tuple[int, int] = (1240, 1754), font_size: int = 40,
               rotate: int = 0, font: str | None = None) -> object:  # fmt: skip
    """A white A4 page at 150 dpi with `text` (lines split on newlines), turned `rotate`
    degrees anticlockwise as a scanner would feed it."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", size, "white")
    face = ImageFont.truetype(font, font_size) if font else ImageFont.load_default(size=font_size)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(text.split("\n")):
        draw.text((100, 150 + i * int(font_size * 1.6)), line, fill="black", font=face)
    return image.rotate(rotate, expand=True) if rotate else image


def make_mixed_pdf(
    path: Path, pages: list[object], *, hidden_text: dict[int, str] | None = None
) -> Path:
    """A PDF whose pages are text (a str: lines drawn as a text layer) or scans (a PIL image
    drawn over the full page). `hidden_text` puts an invisible text layer (render mode 3, as
    scanners' OCR does) on the given 1-based pages."""
    import io

    from reportlab.lib.pagesizes import A4
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(path), pagesize=A4)
    width, height = A4
    for number, page in enumerate(pages, start=1):
        if isinstance(page, str):
            pdf.setFont("Helvetica", 11)
            for i, line in enumerate(page.split("\n")):
                pdf.drawString(72, 760 - 16 * i, line)
        else:
            buffer = io.BytesIO()
            page.save(buffer, "PNG")  # type: ignore[attr-defined]
            pdf.drawImage(ImageReader(buffer), 0, 0, width=width, height=height)
        if hidden_text and number in hidden_text:
            layer = pdf.beginText(72, 700)
            layer.setTextRenderMode(3)
            layer.setFont("Helvetica", 11)
            for line in hidden_text[number].split("\n"):
                layer.textLine(line)
            pdf.drawText(layer)
        pdf.showPage()
    pdf.save()
    return path


def make_owner_password_pdf(path: Path, text: str) -> Path:
    """A PDF encrypted with an owner password only (empty user password; print/copy limits)."""
    from pypdf import PdfReader, PdfWriter

    plain = make_pdf(path.with_suffix(".plain.pdf"), [("Restricted", [text])])
    writer = PdfWriter()
    for page in PdfReader(plain).pages:
        writer.add_page(page)
    writer.encrypt(user_password="", owner_password="owner-secret", permissions_flag=0)
    with path.open("wb") as out:
        writer.write(out)
    plain.unlink()
    return path


def make_table_pdf(path: Path, heading: str, rows: list[list[str]]) -> Path:
    """A PDF with a heading and a ruled table (reportlab platypus, grid lines drawn)."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Table, TableStyle

    table = Table(rows)
    table.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.black)]))
    story = [Paragraph(heading, getSampleStyleSheet()["Heading1"]), table]
    SimpleDocTemplate(str(path), pagesize=A4).build(story)
    return path


def make_epub(path: Path, title: str, chapters: list[tuple[str, str]]) -> Path:
    """A minimal EPUB 3 (zip: mimetype, container, OPF, one XHTML per (heading, paragraph))."""
    import zipfile

    items = "".join(f'<item id="c{i}" href="text/c{i}.xhtml" media-type="application/xhtml+xml"/>'
                    for i in range(len(chapters)))  # fmt: skip
    spine = "".join(f'<itemref idref="c{i}"/>' for i in range(len(chapters)))
    opf = (
        '<?xml version="1.0" encoding="utf-8"?><package xmlns="http://www.idpf.org/2007/opf" '
        'version="3.0" unique-identifier="id"><metadata xmlns:dc="http://purl.org/dc/elements/1.1/">'
        f'<dc:identifier id="id">x</dc:identifier><dc:title>{title}</dc:title></metadata>'
        f"<manifest>{items}</manifest><spine>{spine}</spine></package>"
    )
    container = (
        '<?xml version="1.0"?><container version="1.0" '
        'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
        '<rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
        "</rootfiles></container>"
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        archive.writestr("META-INF/container.xml", container)
        archive.writestr("OEBPS/content.opf", opf)
        for i, (heading, paragraph) in enumerate(chapters):
            archive.writestr(
                f"OEBPS/text/c{i}.xhtml",
                '<?xml version="1.0" encoding="utf-8"?><html xmlns="http://www.w3.org/1999/xhtml">'
                f"<head><title>{heading}</title></head><body><h1>{heading}</h1><p>{paragraph}</p>"
                "</body></html>",
            )
    return path


def make_odt(path: Path, body_xml: str, *, encrypted: bool = False) -> Path:
    """A minimal ODT: `body_xml` inside office:text (text: and table: namespaces declared)."""
    return _opendocument(path, "text", body_xml, encrypted=encrypted)


def make_ods(path: Path, sheet_xml: str, *, encrypted: bool = False) -> bytes:
    """A minimal ODS: `sheet_xml` (table:table elements) inside office:spreadsheet."""
    return _opendocument(path, "spreadsheet", sheet_xml, encrypted=encrypted).read_bytes()


def _opendocument(path: Path, kind: str, body_xml: str, *, encrypted: bool) -> Path:
    """An OpenDocument package of `kind` (text, spreadsheet): `body_xml` inside office:<kind>,
    its manifest marking content.xml encrypted when asked."""
    import zipfile

    media_type = f"application/vnd.oasis.opendocument.{kind}"
    content = (
        '<?xml version="1.0" encoding="UTF-8"?><office:document-content '
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
        'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" office:version="1.2">'
        f"<office:body><office:{kind}>{body_xml}</office:{kind}></office:body>"
        "</office:document-content>"
    )
    entry = ('<manifest:encryption-data manifest:checksum-type="SHA1/1K" manifest:checksum="x"/>'
             if encrypted else "")  # fmt: skip
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
        'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0">'
        f'<manifest:file-entry manifest:full-path="/" manifest:media-type="{media_type}"/>'
        f'<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml">'
        f"{entry}</manifest:file-entry></manifest:manifest>"
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", media_type, compress_type=zipfile.ZIP_STORED)
        archive.writestr("META-INF/manifest.xml", manifest)
        archive.writestr("content.xml", content)
    return path


_END, _FREE, _FAT = 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFD


def make_ole(streams: dict[str, bytes]) -> bytes:
    """An OLE compound file (MS-CFB version 3, 512-byte sectors) holding `streams`, named by
    path ("storage/stream"); small streams go to the mini stream as the format requires. Written
    here because no tool installable on the test machine writes legacy Office or .msg files."""
    import struct

    # The directory: the root (0), then every storage and stream, each with its children.
    entries: list[dict[str, object]] = [{"name": "Root Entry", "type": 5, "children": []}]
    index: dict[str, int] = {"": 0}
    for path in sorted(streams):
        parts = path.split("/")
        for depth in range(1, len(parts) + 1):
            key = "/".join(parts[:depth])
            if key in index:
                continue
            index[key] = len(entries)
            kind = 2 if depth == len(parts) else 1
            entries.append({"name": parts[depth - 1], "type": kind, "children": [],
                            "data": streams[key] if kind == 2 else b""})  # fmt: skip
            parent = entries[index["/".join(parts[: depth - 1])]]
            parent["children"].append(index[key])  # type: ignore[attr-defined]

    mini = bytearray()
    minifat: list[int] = []
    big: list[tuple[int, bytes]] = []  # (entry, data) stored in regular sectors
    for number, entry in enumerate(entries):
        data = entry.get("data", b"")
        assert isinstance(data, bytes)
        if entry["type"] != 2:
            continue
        if len(data) < 4096:
            entry["start"] = len(mini) // 64 if data else _END
            count = (len(data) + 63) // 64
            first = len(minifat)
            minifat.extend(first + i + 1 for i in range(count))
            if count:
                minifat[-1] = _END
            mini += data + b"\x00" * (count * 64 - len(data))
        else:
            big.append((number, data))

    def sectors(size: int) -> int:
        return (size + 511) // 512

    dir_sectors = sectors(128 * len(entries))
    minifat_sectors = sectors(4 * len(minifat))
    mini_sectors = sectors(len(mini))
    data_sectors = sum(sectors(len(d)) for _, d in big)
    fat_sectors = 1
    while True:
        total = fat_sectors + dir_sectors + minifat_sectors + mini_sectors + data_sectors
        if fat_sectors * 128 >= total:
            break
        fat_sectors += 1
    assert fat_sectors <= 109, "fixture too large for a header-only DIFAT"

    fat: list[int] = [_FAT] * fat_sectors
    position = fat_sectors

    def chain(count: int) -> int:
        nonlocal position
        if count == 0:
            return _END
        start = position
        fat.extend([*range(start + 1, start + count), _END])
        position += count
        return start

    dir_start = chain(dir_sectors)
    minifat_start = chain(minifat_sectors)
    mini_start = chain(mini_sectors)
    entries[0]["start"], entries[0]["size"] = mini_start, len(mini)
    blobs = []
    for number, data in big:
        entries[number]["start"] = chain(sectors(len(data)))
        blobs.append(data + b"\x00" * (sectors(len(data)) * 512 - len(data)))
    fat.extend([_FREE] * (fat_sectors * 128 - len(fat)))

    def order(name: str) -> tuple[int, str]:
        return (len(name), name.upper())

    left = dict.fromkeys(range(len(entries)), _FREE)
    right = dict(left)
    child = dict(left)

    def tree(members: list[int]) -> int:
        """A balanced binary tree of siblings, in MS-CFB's name order; its root's number."""
        if not members:
            return _FREE
        middle = len(members) // 2
        left[members[middle]] = tree(members[:middle])
        right[members[middle]] = tree(members[middle + 1 :])
        return members[middle]

    for number, entry in enumerate(entries):
        kids = sorted(entry["children"], key=lambda n: order(str(entries[n]["name"])))  # type: ignore[attr-defined]
        child[number] = tree(kids)

    directory = bytearray()
    for number, entry in enumerate(entries):
        name = str(entry["name"]).encode("utf-16-le")
        data = entry.get("data", b"")
        size = int(entry.get("size", len(data) if isinstance(data, bytes) else 0))  # type: ignore[call-overload]
        start = int(entry.get("start", _END if entry["type"] == 1 else 0))  # type: ignore[call-overload]
        if entry["type"] == 1:
            start, size = 0, 0
        directory += struct.pack(
            "<64sHBBIII16sIQQIQ",
            name, len(name) + 2, entry["type"], 1, left[number], right[number], child[number],
            b"\x00" * 16, 0, 0, 0, start, size,
        )  # fmt: skip
    for _ in range(dir_sectors * 4 - len(entries)):
        directory += struct.pack("<64sHBBIII16sIQQIQ", b"", 0, 0, 0, _FREE, _FREE, _FREE,
                                 b"\x00" * 16, 0, 0, 0, 0, 0)  # fmt: skip

    difat = list(range(fat_sectors)) + [_FREE] * (109 - fat_sectors)
    header = struct.pack(
        "<8s16sHHHHH6sIIIIIIIII109I",
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", b"\x00" * 16, 0x3E, 3, 0xFFFE, 9, 6, b"\x00" * 6,
        0, fat_sectors, dir_start, 0, 4096, minifat_start if minifat else _END,
        minifat_sectors, _END, 0, *difat,
    )  # fmt: skip
    out = bytearray(header)
    out += struct.pack(f"<{len(fat)}I", *fat)
    out += directory
    table = minifat + [_FREE] * (minifat_sectors * 128 - len(minifat))
    out += struct.pack(f"<{len(table)}I", *table)
    out += bytes(mini) + b"\x00" * (mini_sectors * 512 - len(mini))
    for blob in blobs:
        out += blob
    return bytes(out)


def make_doc(paragraphs: list[str], *, encrypted: bool = False) -> bytes:
    """A minimal Word 97-2003 .doc ([MS-DOC]): a FIB, the text as one piece (8-bit cp1252 when
    it fits, else UTF-16), and the piece table in the 1Table stream; `encrypted` sets the
    FIB's fEncrypted flag as Word's password protection does."""
    import struct

    text = "".join(p + "\r" for p in paragraphs)
    try:
        body, fc = text.encode("cp1252"), (0x400 * 2) | 0x40000000  # "compressed" 8-bit text
    except UnicodeEncodeError:
        body, fc = text.encode("utf-16-le"), 0x400
    word = bytearray(0x400) + body
    word += b"\x00" * (512 - len(word) % 512)
    # fWhichTblStm (1Table), fExtChar (MUST be set), fEncrypted
    flags = 0x0200 | 0x1000 | (0x0100 if encrypted else 0)
    struct.pack_into("<HHHHHH", word, 0, 0xA5EC, 0x00C1, 0, 0x0409, 0, flags)
    struct.pack_into("<H", word, 0x0C, 0x00BF)  # nFibBack
    struct.pack_into("<II", word, 0x18, 0x400, 0x400 + len(body))
    struct.pack_into("<H", word, 0x20, 14)  # csw
    struct.pack_into("<H", word, 0x3E, 22)  # cslw
    struct.pack_into("<I", word, 0x40, len(word))  # cbMac
    struct.pack_into("<I", word, 0x4C, len(text))  # ccpText
    struct.pack_into("<H", word, 0x98, 0x5D)  # cbRgFcLcb (Word 97)
    pieces = struct.pack("<II", 0, len(text)) + struct.pack("<HIH", 0, fc, 0)
    clx = b"\x02" + struct.pack("<I", len(pieces)) + pieces
    struct.pack_into("<II", word, 0x1A2, 0, len(clx))  # fcClx, lcbClx
    return make_ole({"WordDocument": bytes(word), "1Table": clx + b"\x00" * 16})


def make_ppt(slides: list[tuple[str, str]]) -> bytes:
    """A minimal PowerPoint 97-2003 .ppt ([MS-PPT]): a document container whose slide list
    holds each slide's title and body as text atoms (UTF-16)."""
    import struct

    def record(version: int, kind: int, body: bytes) -> bytes:
        return struct.pack("<HHI", version, kind, len(body)) + body

    atoms = b""
    for title, body in slides:
        for text_type, text in ((0, title), (1, body)):  # TextHeaderAtom: 0 title, 1 body
            atoms += record(0, 0x0F9F, struct.pack("<I", text_type))
            atoms += record(0, 0x0FA0, text.encode("utf-16-le"))  # TextCharsAtom
    document = record(0x000F, 0x03E8, record(0x000F, 0x0FF0, atoms))
    return make_ole({"PowerPoint Document": document, "Current User": b""})


def make_msg(
    subject: str,
    body: str,
    attachments: dict[str, bytes] | None = None,
    *,
    message_class: str = "IPM.Note",
) -> bytes:
    """A minimal Outlook .msg ([MS-OXMSG]): string properties as UTF-16 streams, the property
    stream, an empty named-property map, and each attachment by value in its own storage."""
    import struct

    def unicode_props(values: dict[int, str], prefix: str) -> tuple[dict[str, bytes], bytes]:
        streams, entries = {}, b""
        for prop_id, value in values.items():
            encoded = value.encode("utf-16-le")
            streams[f"{prefix}__substg1.0_{prop_id:04X}001F"] = encoded
            entries += struct.pack("<IIII", (prop_id << 16) | 0x001F, 0x6, len(encoded) + 2, 0)
        return streams, entries

    attachments = attachments or {}
    streams, entries = unicode_props(
        {
            0x001A: message_class,
            0x0037: subject,
            0x1000: body,
            0x0C1A: "HR",
            0x0C1F: "hr@example.com",
            0x0E04: "all@example.com",
        },
        "",
    )
    header = struct.pack("<8sIIII8s", b"", 0, len(attachments), 0, len(attachments), b"")
    streams["__properties_version1.0"] = header + entries
    for name in ("00020102", "00030102", "00040102"):
        streams[f"__nameid_version1.0/__substg1.0_{name}"] = b""
    for number, (filename, data) in enumerate(attachments.items()):
        prefix = f"__attach_version1.0_#{number:08X}/"
        named, props = unicode_props({0x3707: filename, 0x3704: filename[:8]}, prefix)
        streams.update(named)
        streams[f"{prefix}__substg1.0_37010102"] = data
        props += struct.pack("<IIII", 0x37010102, 0x6, len(data), 0)
        props += struct.pack("<IIII", 0x37050003, 0x6, 1, 0)  # PR_ATTACH_METHOD: by value
        streams[f"{prefix}__properties_version1.0"] = b"\x00" * 8 + props
    return make_ole(streams)
