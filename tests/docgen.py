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
