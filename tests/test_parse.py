from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

from ingest.parse import ElementKind, ParseError, parse_document
from tests.docgen import make_docx, make_encrypted_pdf, make_pdf


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail loudly if a parser tries to download anything (e.g. a spaCy model)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a parser tried to use the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_markdown_keeps_titles_and_levels(no_network: None) -> None:
    doc = parse_document("h.md", b"# Handbook\n\n## Vacation\n\nEmployees get 25 days of leave.\n")
    assert [(e.kind, e.text, e.heading_level) for e in doc.elements] == [
        (ElementKind.TITLE, "Handbook", 0),
        (ElementKind.TITLE, "Vacation", 1),
        (ElementKind.TEXT, "Employees get 25 days of leave.", 0),
    ]
    assert doc.title == "Handbook"


def test_html_and_text(no_network: None) -> None:
    html = b"<html><body><h1>Policy</h1><p>Badges must be worn at all times.</p></body></html>"
    assert [e.text for e in parse_document("p.html", html).elements] == [
        "Policy",
        "Badges must be worn at all times.",
    ]
    text = parse_document("n.txt", "Ünïcode text is fine here.".encode())
    assert text.elements[0].text == "Ünïcode text is fine here."


def test_pdf_keeps_page_numbers(tmp_path: Path) -> None:
    pdf = make_pdf(
        tmp_path / "r.pdf",
        [("Report", ["Third quarter overview."]), ("Warehouse", ["Rotterdam shipped 48,200."])],
    )
    doc = parse_document("r.pdf", pdf.read_bytes())
    pages = {e.text: e.page for e in doc.elements}
    assert pages["Warehouse"] == 2
    assert any(e.page == 2 and "48,200" in e.text for e in doc.elements)


def test_docx(tmp_path: Path, no_network: None) -> None:
    path = make_docx(tmp_path / "d.docx", [("Travel", ["Book trains for trips under 500 km."])])
    doc = parse_document("d.docx", path.read_bytes())
    assert (ElementKind.TITLE, "Travel") in [(e.kind, e.text) for e in doc.elements]


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("a.pdf", b"%PDF-1.4 garbage garbage", "corrupt"),
        ("a.pdf", b"hello, not a pdf", "not a PDF"),
        ("a.docx", b"plain text, not a zip", "not a DOCX"),
        ("a.txt", b"", "empty"),
        ("a.txt", b"\x00\x01\x02binary junk", "binary"),
        ("a.exe", b"MZ...", "unsupported file type"),
        ("noext", b"text", "unsupported file type"),
        ("a.md", b"   \n\n  ", "no text"),
    ],
)
def test_bad_input_fails_with_a_reason(name: str, data: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse_document(name, data)


def test_password_protected_pdf(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match="password"):
        parse_document("s.pdf", make_encrypted_pdf(tmp_path / "s.pdf").read_bytes())


def test_scanned_pdf_without_text_layer(tmp_path: Path) -> None:
    from reportlab.pdfgen import canvas

    path = tmp_path / "scan.pdf"
    pdf = canvas.Canvas(str(path))
    pdf.rect(100, 100, 200, 200, fill=1)  # a picture, no text
    pdf.showPage()
    pdf.save()
    # OCR (when installed) finds no text in a picture of a black square.
    with pytest.raises(ParseError, match=r"no text layer|no text could be extracted"):
        parse_document("scan.pdf", path.read_bytes())
