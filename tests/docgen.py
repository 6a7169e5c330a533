"""Small real documents made by the tests themselves (PDF, DOCX)."""

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


def make_docx(path: Path, sections: list[tuple[str, list[str]]]) -> Path:
    import docx

    document = docx.Document()
    for heading, paragraphs in sections:
        document.add_heading(heading, level=1)
        for paragraph in paragraphs:
            document.add_paragraph(paragraph)
    document.save(str(path))
    return path
