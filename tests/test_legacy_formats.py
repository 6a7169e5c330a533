"""The formats an archive holds besides today's Office: .xls .doc .ppt .msg .epub .odt .ods .rtf."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.elements import ElementKind
from ingest.parse import ParseError, parse_document
from tests.docgen import make_epub, make_merged_xls, make_ods, make_odt, region_rows


def _text(name: str, data: bytes) -> str:
    return "\n".join(e.text for e in parse_document(name, data).elements)


def test_xls_sheet_with_a_merged_region(tmp_path: Path) -> None:
    rows = region_rows({"North": {27: 601}, "South": {27: 381}})
    path = make_merged_xls(tmp_path / "bands.xls", rows)
    doc = parse_document("bands.xls", path.read_bytes())
    assert doc.content_type == "application/vnd.ms-excel"
    assert (doc.elements[0].kind, doc.elements[0].text) == (ElementKind.TITLE, "Bands")
    lines = doc.elements[1].text.split("\n")
    assert "Region: North | Band: Band 27 | Count: 601" in lines
    assert "Region: South | Band: Band 27 | Count: 381" in lines


def test_epub_chapters_in_spine_order(tmp_path: Path) -> None:
    path = make_epub(tmp_path / "b.epub", "Handbook", [
        ("Leave", "Employees receive twenty-five days of paid leave."),
        ("Travel", "Economy class is booked for flights under six hours."),
    ])  # fmt: skip
    doc = parse_document("b.epub", path.read_bytes())
    titles = [e.text for e in doc.elements if e.kind is ElementKind.TITLE]
    assert titles == ["Leave", "Travel"]
    assert "twenty-five days of paid leave" in _text("b.epub", path.read_bytes())


def test_epub_with_drm_says_encrypted(tmp_path: Path) -> None:
    import zipfile

    path = make_epub(tmp_path / "d.epub", "Locked", [("One", "Hidden text.")])
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(
            "META-INF/encryption.xml",
            '<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" '
            'xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData>'
            '<enc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>'
            '<enc:CipherData><enc:CipherReference URI="OEBPS/text/c0.xhtml"/></enc:CipherData>'
            "</enc:EncryptedData></encryption>",
        )
    with pytest.raises(ParseError, match="encrypted"):
        parse_document("d.epub", path.read_bytes())


ODT_BODY = (
    '<text:h text:outline-level="1">Bands</text:h>'
    "<text:p>Counts per region and band.</text:p>"
    "<text:list><text:list-item><text:p>Counted in May</text:p></text:list-item></text:list>"
    "<table:table><table:table-row><table:table-cell><text:p>Region</text:p></table:table-cell>"
    "<table:table-cell><text:p>Band</text:p></table:table-cell>"
    "<table:table-cell><text:p>Count</text:p></table:table-cell></table:table-row>"
    '<table:table-row><table:table-cell table:number-rows-spanned="2"><text:p>North</text:p>'
    "</table:table-cell><table:table-cell><text:p>Band 26</text:p></table:table-cell>"
    "<table:table-cell><text:p>590</text:p></table:table-cell></table:table-row>"
    "<table:table-row><table:covered-table-cell/><table:table-cell><text:p>Band 27</text:p>"
    "</table:table-cell><table:table-cell><text:p>601</text:p></table:table-cell>"
    "</table:table-row></table:table>"
)


def test_odt_headings_lists_and_merged_table_cells(tmp_path: Path) -> None:
    doc = parse_document("a.odt", make_odt(tmp_path / "a.odt", ODT_BODY).read_bytes())
    kinds = [(e.kind, e.text.split("\n")[-1]) for e in doc.elements]
    assert kinds == [
        (ElementKind.TITLE, "Bands"),
        (ElementKind.TEXT, "Counts per region and band."),
        (ElementKind.LIST_ITEM, "Counted in May"),
        (ElementKind.TABLE, "Region: North | Band: Band 27 | Count: 601"),
    ]


def test_encrypted_odt_says_encrypted(tmp_path: Path) -> None:
    path = make_odt(tmp_path / "e.odt", ODT_BODY, encrypted=True)
    with pytest.raises(ParseError, match="encrypted"):
        parse_document("e.odt", path.read_bytes())


def test_rtf_in_its_declared_code_page() -> None:
    rtf = (
        rb"{\rtf1\ansi\ansicpg1252\deff0{\fonttbl{\f0 Arial;}}"
        rb"\f0 Le caf\'e9 est servi \'e0 dix heures.\par "
        rb"Die Mitarbeiter erhalten f\u252?nfundzwanzig Tage.\par}"
    )
    assert _text("a.rtf", rtf).split("\n") == [
        "Le café est servi à dix heures.",
        "Die Mitarbeiter erhalten fünfundzwanzig Tage.",
    ]
    chinese = rb"{\rtf1\ansi\ansicpg936 \'d4\'b1\'b9\'a4\'c4\'ea\'bc\'d9\par}"
    assert _text("zh.rtf", chinese) == "员工年假"


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("a.doc", b"just some text", "not a DOC file"),
        ("a.xls", b"%PDF-1.4", "not a XLS file"),
        ("a.msg", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600, "corrupt"),
        ("a.epub", b"PK\x03\x04zipzip", "corrupt"),
        ("a.rtf", b"plain text, not rtf", "not an RTF file"),
    ],
)
def test_bad_legacy_input_fails_with_a_reason(name: str, data: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse_document(name, data)


def test_a_docx_saved_as_doc_is_read_as_what_it_is(tmp_path: Path) -> None:
    from tests.docgen import make_docx

    path = make_docx(tmp_path / "a.docx", [("Rules", ["Visitors sign in at reception."])])
    assert "Visitors sign in" in _text("renamed.doc", path.read_bytes())


def test_doc_in_8_bit_and_utf16_text() -> None:
    from tests.docgen import make_doc

    french = make_doc(["Congés", "Le café est servi à dix heures."])
    assert _text("fr.doc", french).split("\n") == ["Congés", "Le café est servi à dix heures."]
    chinese = make_doc(["年假规定", "员工每年享有二十五天带薪年假。"])
    assert _text("zh.doc", chinese).split("\n") == ["年假规定", "员工每年享有二十五天带薪年假。"]


def test_password_protected_doc_says_so() -> None:
    from tests.docgen import make_doc

    with pytest.raises(ParseError, match="password-protected"):
        parse_document("locked.doc", make_doc(["Secret"], encrypted=True))


def test_ppt_slides_text() -> None:
    from tests.docgen import make_ppt

    deck = make_ppt([("Roadmap", "Ship search in May."), ("预算", "差旅上限为两千欧元。")])
    assert _text("d.ppt", deck).split("\n") == [
        "Roadmap", "Ship search in May.", "预算", "差旅上限为两千欧元。",
    ]  # fmt: skip


def test_msg_with_its_attachment(tmp_path: Path) -> None:
    from tests.docgen import make_msg, make_pdf

    pdf = make_pdf(tmp_path / "a.pdf", [("Annex", ["Parking costs 40 EUR a month."])])
    data = make_msg("New rules", "See the attachment.\r\n\r\nVisitors sign in at reception.",
                    {"annex.pdf": pdf.read_bytes()})  # fmt: skip
    doc = parse_document("m.msg", data)
    assert doc.title == "New rules"
    text = "\n".join(e.text for e in doc.elements)
    assert "Visitors sign in at reception." in text
    assert "Attachment: annex.pdf" in text
    assert "Parking costs 40 EUR a month." in text


def test_encrypted_msg_says_encrypted() -> None:
    from tests.docgen import make_msg

    data = make_msg("Salaries", "(encrypted)", message_class="IPM.Note.SMIME")
    with pytest.raises(ParseError, match="encrypted e-mail"):
        parse_document("s.msg", data)


def test_a_password_protected_xls_says_so(tmp_path: Path) -> None:
    from tests.docgen import make_encrypted_office, make_xlsx

    # Excel's password protection turns any workbook into an encrypted OLE package.
    locked = make_encrypted_office(make_xlsx(tmp_path / "l.xlsx", {"Codes": [["door", 1234]]}))
    with pytest.raises(ParseError, match="password-protected"):
        parse_document("locked.xls", locked.read_bytes())


def test_ods_sheets_with_merged_cells(tmp_path: Path) -> None:
    def row(*cells: str) -> str:
        return "<table:table-row>" + "".join(cells) + "</table:table-row>"

    def cell(text: str, down: int = 1) -> str:
        span = f' table:number-rows-spanned="{down}"' if down > 1 else ""
        return f"<table:table-cell{span}><text:p>{text}</text:p></table:table-cell>"

    covered = "<table:covered-table-cell/>"
    empty = '<table:table-cell table:number-columns-repeated="16000"/>'
    sheet = (
        '<table:table table:name="Bandes">'
        + row(cell("Région"), cell("Bande"), cell("Nombre"), empty)
        + row(cell("Nord", down=2), cell("Bande 26"), cell("590"))
        + row(covered, cell("Bande 27"), cell("601"))
        + row(cell("Sud"), cell("Bande 27"), cell("381"))
        + '<table:table-row table:number-rows-repeated="1048000">'
        + empty + "</table:table-row></table:table>"
    )  # fmt: skip
    doc = parse_document("b.ods", make_ods(tmp_path / "b.ods", sheet))
    assert doc.content_type == "application/vnd.oasis.opendocument.spreadsheet"
    assert (doc.elements[0].kind, doc.elements[0].text, doc.elements[0].page) == (
        ElementKind.TITLE, "Bandes", 1,
    )  # fmt: skip
    assert doc.elements[1].text.split("\n")[1:] == [
        "Région: Nord | Bande: Bande 26 | Nombre: 590",
        "Région: Nord | Bande: Bande 27 | Nombre: 601",
        "Région: Sud | Bande: Bande 27 | Nombre: 381",
    ]
    with pytest.raises(ParseError, match="ODS file is encrypted"):
        parse_document("l.ods", make_ods(tmp_path / "l.ods", sheet, encrypted=True))
