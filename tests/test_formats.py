"""Office, mail, data and scanned formats, and the bad input each one can bring."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.chunk import chunk_document
from ingest.elements import ElementKind
from ingest.formats import ocr_languages
from ingest.parse import ParseError, parse_document
from tests.docgen import (
    make_docx,
    make_eml,
    make_encrypted_office,
    make_paged_docx,
    make_pdf,
    make_pptx,
    make_scanned_pdf,
    make_xlsx,
    make_zip_bomb,
)

needs_ocr = pytest.mark.skipif(ocr_languages() is None, reason="Tesseract is not installed")


def test_pptx_keeps_slide_numbers_and_titles(tmp_path: Path) -> None:
    slides = [("Roadmap", "Ship search in May."), ("Budget", "Travel is capped at 2,000 EUR.")]
    path = make_pptx(tmp_path / "d.pptx", slides)
    doc = parse_document("d.pptx", path.read_bytes())
    assert (ElementKind.TITLE, "Budget", 2) in [(e.kind, e.text, e.page) for e in doc.elements]
    assert any(e.page == 2 and "2,000 EUR" in e.text for e in doc.elements)


def test_xlsx_sheets_become_tables(tmp_path: Path) -> None:
    path = make_xlsx(tmp_path / "s.xlsx", {"Prices": [["item", "eur"], ["badge", 12]],
                                           "Staff": [["name"], ["Ana"]]})  # fmt: skip
    doc = parse_document("s.xlsx", path.read_bytes())
    tables = [(e.text, e.page) for e in doc.elements if e.kind is ElementKind.TABLE]
    # A header row's names go with every value below them (ingest.tables).
    # One column: no header is guessed.
    assert tables == [("item | eur\nitem: badge | eur: 12", 1), ("name\nAna", 2)]


def test_csv_json_and_legacy_encodings() -> None:
    assert parse_document("t.csv", b"a,b\n1,2\n").elements[0].text == "a | b\na: 1 | b: 2"
    json_doc = parse_document("c.json", b'{"policy": {"days": 25, "tags": ["leave"]}}')
    assert [e.text for e in json_doc.elements] == ["policy.days: 25", "policy.tags[0]: leave"]
    chinese = "员工每年享有二十五天带薪年假。这是公司的规定。".encode("gb18030")
    assert "二十五天" in parse_document("zh.txt", chinese).elements[0].text
    latin = "Le café est servi à dix heures dans la salle commune du bâtiment.".encode("latin-1")
    assert "café" in parse_document("fr.txt", latin).elements[0].text


def test_eml_with_its_attachments(tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "a.pdf", [("Annex", ["Parking costs 40 EUR a month."])])
    docx = make_docx(tmp_path / "b.docx", [("Rules", ["Visitors sign in at reception."])])
    data = make_eml("New rules", "See the two attachments.",
                    {"annex.pdf": pdf.read_bytes(), "rules.docx": docx.read_bytes(),
                     "junk.pdf": b"not a pdf"})  # fmt: skip
    doc = parse_document("m.eml", data)
    text = "\n".join(e.text for e in doc.elements)
    assert doc.title == "New rules"
    assert "Parking costs 40 EUR" in text
    assert "Visitors sign in" in text
    # One bad attachment does not lose the mail, and ragkb's own words are not the mail's text.
    assert "not read" not in text
    assert [n.split(":")[0] for n in doc.notes] == ["attachment 'junk.pdf' not read"]


@needs_ocr
def test_every_page_of_a_multi_page_tiff_is_read() -> None:
    """A fax or a scanner's batch as one TIFF: only its first page was read."""
    import io

    from tests.docgen import page_image

    first = page_image("Page one says the invoice total is 4280 EUR")
    second = page_image("Page two says payment is due within thirty days")
    buffer = io.BytesIO()
    first.save(buffer, "TIFF", save_all=True, append_images=[second])  # type: ignore[attr-defined]
    doc = parse_document("fax.tif", buffer.getvalue())
    assert [(e.page, e.text) for e in doc.elements] == [
        (1, "Page one says the invoice total is 4280 EUR"),
        (2, "Page two says payment is due within thirty days"),
    ]


@needs_ocr
def test_scanned_pdf_is_read_with_ocr(tmp_path: Path) -> None:
    path = make_scanned_pdf(tmp_path / "scan.pdf", "Invoice total 4280 EUR")
    doc = parse_document("scan.pdf", path.read_bytes())
    assert "4280" in " ".join(e.text for e in doc.elements)
    assert doc.elements[0].page == 1


@pytest.mark.parametrize("suffix", [".docx", ".xlsx", ".pptx"])
def test_zip_bombs_are_refused_before_parsing(tmp_path: Path, suffix: str) -> None:
    bomb = make_zip_bomb(tmp_path / f"b{suffix}")
    with pytest.raises(ParseError, match="decompression bomb"):
        parse_document(f"b{suffix}", bomb.read_bytes())


@pytest.mark.parametrize("suffix", [".docx", ".xlsx", ".pptx"])
def test_password_protected_office_files_are_refused_with_a_reason(
    tmp_path: Path, suffix: str
) -> None:
    plain = {
        ".docx": lambda p: make_docx(p, [("Secret", ["The code is 1234."])]),
        ".xlsx": lambda p: make_xlsx(p, {"Codes": [["door", 1234]]}),
        ".pptx": lambda p: make_pptx(p, [("Secret", "The code is 1234.")]),
    }[suffix](tmp_path / f"locked{suffix}")
    locked = make_encrypted_office(plain).read_bytes()
    with pytest.raises(ParseError, match=r"password-protected.*remove the password"):
        parse_document(f"locked{suffix}", locked)


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        # An OLE signature with nothing valid behind it.
        ("a.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600, "corrupt OLE"),
        ("a.txt", b"%PDF-1.4 this is a pdf", "wrong extension"),
        ("a.md", b"PK\x03\x04zipzipzip", "wrong extension"),
        ("a.pdf", b"PK\x03\x04zipzip", "not a PDF"),
        ("a.xlsx", b"%PDF-1.4", "not a XLSX"),
        ("a.png", b"just text", "not an image"),
        ("a.json", b"{not json", "not valid JSON"),
        ("a.txt", bytes(range(1, 32)) * 300, "binary"),
    ],
)
def test_bad_input_fails_with_a_reason(name: str, data: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse_document(name, data)


@pytest.mark.parametrize("rendered", [False, True], ids=["explicit-break", "rendered-break"])
def test_docx_chunks_carry_their_page_numbers(tmp_path: Path, rendered: bool) -> None:
    pages = [
        ["The handbook covers the Rotterdam and Lyon offices.", "Badges are issued at reception."],
        ["Vacation requests go to the team lead two weeks ahead."],
        ["The Lyon office closes at 17:00 on Fridays.", "Parking is free for visitors."],
    ]
    path = make_paged_docx(tmp_path / "handbook.docx", pages, rendered=rendered)
    doc = parse_document("handbook.docx", path.read_bytes())
    found = {e.text: e.page for e in doc.elements}
    assert found["The handbook covers the Rotterdam and Lyon offices."] == 1
    assert found["Vacation requests go to the team lead two weeks ahead."] == 2
    assert found["The Lyon office closes at 17:00 on Fridays."] == 3
    assert found["Parking is free for visitors."] == 3
    chunks = chunk_document(
        doc, max_tokens=50, overlap_tokens=5, count_tokens=lambda t: len(t.split())
    )
    lyon = [c for c in chunks if "Lyon office closes" in c.text]
    assert lyon
    assert all(c.page == 3 for c in lyon)
