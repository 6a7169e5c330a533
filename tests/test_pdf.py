"""PDFs as a PDF reader opens them: scanned pages among text pages, owner-password-only files,
turned scans, Chinese OCR, garbage text layers."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.ocr import installed, join_cjk
from ingest.parse import ParseError, parse_document
from ingest.pdf import is_fragmented, looks_garbled, parse_pdf
from tests.docgen import make_encrypted_pdf, make_mixed_pdf, make_owner_password_pdf, page_image

needs_ocr = pytest.mark.skipif("eng" not in installed(), reason="Tesseract is not installed")
needs_osd = pytest.mark.skipif("osd" not in installed(), reason="Tesseract OSD is not installed")

SCANNED = "Invoice total 4280 EUR\nPayment due within thirty days"


def _pages(elements: list[object]) -> dict[int, str]:
    pages: dict[int, str] = {}
    for e in elements:
        page, text = e.page, e.text  # type: ignore[attr-defined]
        pages[page] = f"{pages.get(page, '')}\n{text}".strip()
    return pages


@needs_ocr
def test_a_scanned_page_among_text_pages_is_read_with_its_page_number(tmp_path: Path) -> None:
    path = make_mixed_pdf(tmp_path / "m.pdf", [
        "Chapter one explains the travel policy for all employees of the company.",
        page_image(SCANNED),
        "Chapter three explains the expense policy for all employees of the company.",
    ])  # fmt: skip
    pages = _pages(parse_document("m.pdf", path.read_bytes()).elements)
    assert sorted(pages) == [1, 2, 3]
    assert "Invoice total 4280 EUR" in pages[2]
    assert "travel policy" in pages[1]
    assert "expense policy" in pages[3]


@needs_ocr
def test_a_scan_with_only_a_stamped_page_number_is_still_read(tmp_path: Path) -> None:
    path = make_mixed_pdf(tmp_path / "s.pdf", ["Cover page of the annual report, with a summary.",
                                               page_image(SCANNED)],
                          hidden_text={2: "- 2 -"})  # fmt: skip
    pages = _pages(parse_document("s.pdf", path.read_bytes()).elements)
    assert "Invoice total 4280 EUR" in pages[2]


@needs_osd
@pytest.mark.parametrize("turned", [90, 180, 270])
def test_turned_scans_are_read_upright(tmp_path: Path, turned: int) -> None:
    path = make_mixed_pdf(tmp_path / "r.pdf", [page_image(SCANNED * 3, rotate=turned)])
    text = " ".join(e.text for e in parse_document("r.pdf", path.read_bytes()).elements)
    assert "Invoice total 4280 EUR" in text


def test_spaces_tesseract_puts_between_chinese_characters_are_removed() -> None:
    assert (
        join_cjk("因 此 ， 员 工 每 年 享 有 二 十 五 天 年 假 。")
        == "因此，员工每年享有二十五天年假。"
    )
    assert join_cjk("Total 4280 EUR 合 计") == "Total 4280 EUR 合计"  # other spaces stay


def test_owner_password_only_pdf_opens(tmp_path: Path) -> None:
    path = make_owner_password_pdf(tmp_path / "o.pdf", "Printing this handbook is not allowed.")
    doc = parse_document("o.pdf", path.read_bytes())
    assert "Printing this handbook is not allowed." in " ".join(e.text for e in doc.elements)


@pytest.mark.parametrize("algorithm", ["RC4-40", "RC4-128", "AES-128", "AES-256"])
def test_every_cipher_with_an_owner_password_only_opens(tmp_path: Path, algorithm: str) -> None:
    from pypdf import PdfReader, PdfWriter

    from tests.docgen import make_pdf

    plain = make_pdf(tmp_path / "p.pdf", [("Restricted", ["Printing this is not allowed."])])
    for user, expected in (("", "Printing this is not allowed."), ("u", "password-protected")):
        writer = PdfWriter()
        for page in PdfReader(plain).pages:
            writer.add_page(page)
        writer.encrypt(user_password=user, owner_password="o", algorithm=algorithm)
        with (tmp_path / "e.pdf").open("wb") as out:
            writer.write(out)
        try:
            text = " ".join(
                e.text for e in parse_document("e.pdf", (tmp_path / "e.pdf").read_bytes()).elements
            )
        except ParseError as exc:
            text = str(exc)
        assert expected in text


def test_a_real_user_password_is_password_protected(tmp_path: Path) -> None:
    path = make_encrypted_pdf(tmp_path / "locked.pdf")
    with pytest.raises(ParseError, match="password-protected"):
        parse_document("locked.pdf", path.read_bytes())


GARBAGE_LAYERS = [
    # Unmapped glyphs: what a text layer without a ToUnicode map extracts as.
    "\x01\x02\x03 \x04\x05\x06\x07 \x08\x0e\x0f \x10\x11\x12 " * 8,
    "(cid:12)(cid:40)(cid:73) (cid:3)(cid:88)(cid:17)(cid:5) " * 10,
    "\ue000\ue013\ue021 \ue044\ue0a1 \ue011\ue012\ue013\ue014 " * 10,
    "^~|\\ `~^ |\\|^ ~`\\ ^^|~ " * 10,
    # A scanner's own bad OCR: words broken into fragments.
    "Tl ie q ui ck br o wn f x j u mp s ov er t e la zy d g a nd r un s aw ay " * 3,
]
REAL_LAYERS = [
    "Employees receive twenty-five days of paid vacation per calendar year. " * 3,
    "Le café est servi à dix heures dans la salle commune du bâtiment principal. " * 3,
    "Die Mitarbeiter erhalten fünfundzwanzig Tage bezahlten Urlaub pro Jahr. " * 3,
    "员工每年享有二十五天带薪年假。这是公司的规定，适用于所有正式员工。" * 3,
    "Account Q1 Q2 Total\nFreight 0 0 295,891\nStorage 1,200 800 2,000\nRent 3,100 3,100 6,200",
    "Section 4.2 (a) — see § 12; rates: 3.5% / 4.0% (2024-01-01 to 2024-12-31) @ €1,200.",
]


def test_garbled_text_layers_are_told_from_real_text() -> None:
    """The measure behind GARBLED_SYMBOL_SHARE and GARBLED_SHORT_WORD_SHARE."""
    assert [looks_garbled(t) for t in GARBAGE_LAYERS] == [True] * len(GARBAGE_LAYERS)
    assert [looks_garbled(t) for t in REAL_LAYERS] == [False] * len(REAL_LAYERS)


@needs_ocr
def test_a_garbage_text_layer_over_a_scan_is_read_again_with_ocr(tmp_path: Path) -> None:
    path = make_mixed_pdf(tmp_path / "g.pdf", [page_image(SCANNED)],
                          hidden_text={1: GARBAGE_LAYERS[4]})  # fmt: skip
    text = " ".join(e.text for e in parse_document("g.pdf", path.read_bytes()).elements)
    assert "Invoice total 4280 EUR" in text
    assert "br o wn" not in text


@needs_ocr
def test_ocr_force_reads_a_plausible_but_wrong_text_layer_again(tmp_path: Path) -> None:
    wrong = "Invoice total 9999 USD\nPayment due within ninety days"
    path = make_mixed_pdf(tmp_path / "w.pdf", [page_image(SCANNED)], hidden_text={1: wrong})
    data = path.read_bytes()
    kept = " ".join(e.text for e in parse_pdf(data))
    assert "9999" in kept  # a text layer that reads as words is believed by default
    forced = " ".join(e.text for e in parse_pdf(data, ocr_mode="force"))
    assert "4280" in forced
    assert "9999" not in forced


CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")  # Debian fonts-wqy-microhei


@needs_osd
@pytest.mark.skipif(not CJK_FONT.exists(), reason="no Chinese font to draw the scan with")
def test_a_chinese_scan_reads_as_chinese_without_spaces(tmp_path: Path) -> None:
    scan = page_image("员工每年享有二十五天带薪年假。\n因此，请提前两周申请。",
                      font=str(CJK_FONT), font_size=48)  # fmt: skip
    path = make_mixed_pdf(tmp_path / "zh.pdf", [scan])
    text = "\n".join(e.text for e in parse_document("zh.pdf", path.read_bytes()).elements)
    assert "因此，请提前两周申请。" in text
    assert "二十五天" in text


def test_an_unruled_table_keeps_each_row_on_its_line(tmp_path: Path) -> None:
    """Cells drawn one by one (no ruling lines): pypdf gave one cell per line, losing which
    figure belongs to which account; each row is read again as one line."""
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(tmp_path / "u.pdf"))
    rows = [["Account", "Q1", "Q2", "Total"], ["Freight", "0", "0", "295,891"],
            ["Storage", "1,200", "800", "2,000"]]  # fmt: skip
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            pdf.drawString(60 + c * 100, 800 - r * 16, value)
    pdf.showPage()
    pdf.save()
    lines = [
        line
        for e in parse_document("u.pdf", (tmp_path / "u.pdf").read_bytes()).elements
        for line in e.text.split("\n")
    ]
    assert "Freight 0 0 295,891" in lines
    assert "Storage 1,200 800 2,000" in lines
    # Prose is not a fragmented page.
    assert not is_fragmented("A page of prose.\nIt has long lines of text.\n" * 5)
