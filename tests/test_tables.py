"""Every chunk cut from a table carries its column headers and the merged values over its rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.chunk import chunk_document, document_text
from ingest.elements import ElementKind
from ingest.parse import parse_document
from ingest.tables import render_table
from tests.docgen import make_merged_xlsx, make_table_pdf, region_rows


def _words(text: str) -> int:
    return len(text.split())


def _rows(name: str, data: bytes) -> list[str]:
    doc = parse_document(name, data)
    return [
        line for e in doc.elements if e.kind is ElementKind.TABLE for line in e.text.split("\n")
    ]


def test_rows_carry_their_headers_and_leave_empty_cells_out() -> None:
    grid = [["Sales report 2024", None, None], ["Region", "Band", "Count"],
            ["North", "Band 1", 7], ["North", None, 8.0]]  # fmt: skip
    assert render_table(grid).split("\n") == [
        "Sales report 2024",  # a caption above the header stays a plain line
        "Region | Band | Count",
        "Region: North | Band: Band 1 | Count: 7",
        "Region: North | Count: 8",
    ]
    # No header-like first row (numbers): plain rows.
    assert render_table([["1", "2"], ["3", "4"]]) == "1 | 2\n3 | 4"


def test_xlsx_merged_region_reaches_every_row_it_covers(tmp_path: Path) -> None:
    rows = region_rows({"North": {27: 601}, "South": {27: 381}})
    path = make_merged_xlsx(tmp_path / "bands.xlsx", rows)
    lines = _rows("bands.xlsx", path.read_bytes())
    assert "Region: North | Band: Band 27 | Count: 601" in lines
    assert "Region: South | Band: Band 27 | Count: 381" in lines


def test_a_chunk_deep_in_a_long_sheet_says_what_its_columns_are(tmp_path: Path) -> None:
    rows = region_rows({"North": {27: 601}, "South": {27: 381}})
    path = make_merged_xlsx(tmp_path / "bands.xlsx", rows)
    doc = parse_document("bands.xlsx", path.read_bytes())
    text = document_text(doc)
    chunks = chunk_document(doc, max_tokens=40, overlap_tokens=8, count_tokens=_words)
    assert len(chunks) > 5
    (hit,) = [c for c in chunks if "Count: 381" in c.text and c.text.startswith("Region")]
    assert hit.text == text[hit.char_start : hit.char_end]  # the cited span is exact
    for line in hit.text.split("\n"):  # every row of the chunk stands alone
        assert line.startswith("Region: South | Band: Band ")
        assert "| Count: " in line


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("t.csv", b"Region,Band,Count\nNorth,Band 27,601\nSouth,Band 27,381\n"),
        ("t.csv", b"Region;Band;Count\nNorth;Band 27;601\nSouth;Band 27;381\n"),  # semicolons
        ("t.tsv", b"Region\tBand\tCount\nNorth\tBand 27\t601\nSouth\tBand 27\t381\n"),
        (
            "t.md",
            b"# Bands\n\n| Region | Band | Count |\n|---|---|---|\n"
            b"| North | Band 27 | 601 |\n| South | Band 27 | 381 |\n",
        ),
        (
            "t.html",
            b"<html><body><table><tr><th>Region</th><th>Band</th><th>Count</th></tr>"
            b"<tr><td rowspan='1'>North</td><td>Band 27</td><td>601</td></tr>"
            b"<tr><td>South</td><td>Band 27</td><td>381</td></tr></table></body></html>",
        ),
    ],
)
def test_every_table_format_renders_rows_with_headers(name: str, data: bytes) -> None:
    lines = _rows(name, data)
    assert "Region: South | Band: Band 27 | Count: 381" in lines
    assert "Region: North | Band: Band 27 | Count: 601" in lines


def test_html_rowspan_and_colspan_fill_the_cells_they_cover() -> None:
    html = (b"<table><thead><tr><th rowspan='2'>Region</th><th colspan='2'>Q1</th></tr>"
            b"<tr><th>Sales</th><th>Cost</th></tr></thead>"
            b"<tbody><tr><td rowspan='2'>North</td><td>10</td><td>4</td></tr>"
            b"<tr><td>12</td><td>5</td></tr></tbody></table>")  # fmt: skip
    assert _rows("t.html", html)[1:] == [
        "Region: North | Q1 / Sales: 10 | Q1 / Cost: 4",
        "Region: North | Q1 / Sales: 12 | Q1 / Cost: 5",
    ]


def test_docx_table_with_a_vertically_merged_cell(tmp_path: Path) -> None:
    import docx

    document = docx.Document()
    table = document.add_table(rows=4, cols=3)
    for r, row in enumerate([["Region", "Band", "Count"], ["North", "Band 26", "590"],
                             ["", "Band 27", "601"], ["South", "Band 27", "381"]]):  # fmt: skip
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    table.cell(1, 0).merge(table.cell(2, 0))
    table.cell(1, 0).text = "North"
    document.save(str(tmp_path / "t.docx"))
    lines = _rows("t.docx", (tmp_path / "t.docx").read_bytes())
    assert "Region: North | Band: Band 27 | Count: 601" in lines
    assert "Region: South | Band: Band 27 | Count: 381" in lines


def test_pptx_table(tmp_path: Path) -> None:
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[5])
    slide.shapes.title.text = "Bands"
    shape = slide.shapes.add_table(3, 3, Inches(1), Inches(2), Inches(6), Inches(2))
    for r, row in enumerate([["Region", "Band", "Count"], ["North", "Band 27", "601"],
                             ["South", "Band 27", "381"]]):  # fmt: skip
        for c, value in enumerate(row):
            shape.table.cell(r, c).text = value
    deck.save(str(tmp_path / "t.pptx"))
    assert "Region: South | Band: Band 27 | Count: 381" in _rows(
        "t.pptx", (tmp_path / "t.pptx").read_bytes()
    )


def test_pdf_table_keeps_its_columns(tmp_path: Path) -> None:
    rows = [["Account", "Q1", "Q2", "Total"], ["Freight", "0", "0", "295,891"],
            ["Storage", "1,200", "800", "2,000"]]  # fmt: skip
    path = make_table_pdf(tmp_path / "t.pdf", "Ledger", rows)
    doc = parse_document("t.pdf", path.read_bytes())
    tables = [e for e in doc.elements if e.kind is ElementKind.TABLE]
    assert [t.page for t in tables] == [1]
    assert "Account: Freight | Q1: 0 | Q2: 0 | Total: 295,891" in tables[0].text.split("\n")
    assert doc.elements[0].text == "Ledger"  # the text around the table is kept, in order


def test_a_caption_merged_across_the_sheet_is_said_once(tmp_path: Path) -> None:
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["Band counts, May 2024"])
    sheet.merge_cells("A1:XFD1")  # merged across every column Excel has
    for row in region_rows({"North": {27: 601}}, bands=2):
        sheet.append(row)
    workbook.save(str(tmp_path / "c.xlsx"))
    assert _rows("c.xlsx", (tmp_path / "c.xlsx").read_bytes()) == [
        "Band counts, May 2024",
        "Region | Band | Count",
        "Region: North | Band: Band 1 | Count: 101",
        "Region: North | Band: Band 2 | Count: 102",
    ]


def test_a_semicolon_csv_with_decimal_commas_keeps_its_columns() -> None:
    data = "Region;Band;Share\nNorth;Band 27;0,601\nSouth;Band 27;0,381\n".encode("cp1252")
    assert _rows("t.csv", data)[1:] == [
        "Region: North | Band: Band 27 | Share: 0,601",
        "Region: South | Band: Band 27 | Share: 0,381",
    ]
    # Rows ended by a lone \r (Excel for Mac's "CSV (Macintosh)") were "malformed".
    mac = "Région,Nombre\rBesançon,7\rMünchen,12\r".encode("cp1252")
    assert _rows("mac.csv", mac)[1:] == [
        "Région: Besançon | Nombre: 7",
        "Région: München | Nombre: 12",
    ]
    # A .tsv is split on tabs even when its text holds commas.
    tsv = b"Name\tNote\nAna\tlikes tea, coffee, and cake\nBo\tno, thanks\n"
    assert _rows("t.tsv", tsv)[1:] == ["Name: Ana | Note: likes tea, coffee, and cake",
                                       "Name: Bo | Note: no, thanks"]  # fmt: skip


def test_a_header_merged_over_sub_headers_names_both(tmp_path: Path) -> None:
    """`Sales` merged over `Q1 | Q2` (DOCX gridSpan, XLS merged cells): a row reads
    `Sales / Q1: 10`, and the columns beside the merge keep their names."""
    import docx
    import xlwt

    document = docx.Document()
    table = document.add_table(rows=4, cols=4)
    for r, row in enumerate([["Region", "Sales", "Sales", "Staff"], ["", "Q1", "Q2", ""],
                             ["North", "10", "20", "5"], ["South", "30", "40", "6"]]):  # fmt: skip
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    table.cell(0, 1).merge(table.cell(0, 2)).text = "Sales"
    document.save(str(tmp_path / "h.docx"))
    assert _rows("h.docx", (tmp_path / "h.docx").read_bytes())[-1] == (
        "Region: South | Sales / Q1: 30 | Sales / Q2: 40 | Staff: 6"
    )
    book = xlwt.Workbook()
    sheet = book.add_sheet("S")
    sheet.write(0, 0, "Region")
    sheet.write_merge(0, 0, 1, 2, "Sales")
    for c, value in enumerate(["", "Q1", "Q2", "North", 10, 20]):
        sheet.write(1 + c // 3, c % 3, value)
    book.save(str(tmp_path / "h.xls"))
    assert _rows("h.xls", (tmp_path / "h.xls").read_bytes())[-1] == (
        "Region: North | Sales / Q1: 10 | Sales / Q2: 20"
    )


def test_a_merged_header_over_data_rows_is_one_header_row() -> None:
    grid = [["Item", "Notes", "Notes"], ["Rent", "paid monthly", "by transfer"],
            ["Water", "paid yearly", "by card"]]  # fmt: skip
    assert render_table(grid).split("\n")[1:] == [
        "Item: Rent | Notes: paid monthly | Notes: by transfer",
        "Item: Water | Notes: paid yearly | Notes: by card",
    ]


def test_years_head_columns_and_notes_may_come_first(tmp_path: Path) -> None:
    from openpyxl import Workbook

    assert _rows("y.csv", b"Country,2022,2023\nFrance,10,12\nGermany,11,13\n")[-1] == (
        "Country: Germany | 2022: 11 | 2023: 13"
    )
    # A pivot's corner cell is empty; a row of numbers alone is still data, not a header.
    assert render_table([["", 2022, 2023], ["France", 10, 12]]).split("\n")[-1] == (
        "France | 2022: 10 | 2023: 12"
    )
    assert render_table([[1999, 2001], [2002, 2005]]) == "1999 | 2001\n2002 | 2005"
    workbook = Workbook()
    sheet = workbook.active
    for i in range(7):  # a sheet's notes above its table
        sheet.append([f"Note {i}: figures are provisional"])
    for row in region_rows({"North": {27: 601}}):
        sheet.append(row)
    workbook.save(str(tmp_path / "n.xlsx"))
    assert "Region: North | Band: Band 27 | Count: 601" in _rows(
        "n.xlsx", (tmp_path / "n.xlsx").read_bytes()
    )


@pytest.mark.parametrize("repeated", [False, True])
def test_a_pdf_table_running_over_pages_keeps_its_header(tmp_path: Path, repeated: bool) -> None:
    """Rows on the second and third pages of a ruled table say what their columns are, whether
    or not the producer repeated the header on each page."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.platypus import SimpleDocTemplate, Table, TableStyle

    rows = region_rows({"North": {}, "South": {35: 381}}, bands=45)
    table = Table([[str(c) for c in row] for row in rows], repeatRows=1 if repeated else 0)
    table.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.black)]))
    SimpleDocTemplate(str(tmp_path / "t.pdf"), pagesize=A4).build([table])
    doc = parse_document("t.pdf", (tmp_path / "t.pdf").read_bytes())
    tables = [e for e in doc.elements if e.kind is ElementKind.TABLE]
    assert [t.page for t in tables] == [1, 2, 3]
    lines = [line for t in tables for line in t.text.split("\n")]
    assert "Region: South | Band: Band 35 | Count: 381" in lines
    assert "Region: North | Band: Band 45 | Count: 145" in lines
    data = [line for line in lines if line != "Region | Band | Count"]
    assert len(data) == 90
    assert all(line.startswith("Region: ") for line in data)


def test_pptx_table_with_merged_cells(tmp_path: Path) -> None:
    """unstructured's PPTX table left a merged cell's value in its first row only."""
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[5])
    slide.shapes.title.text = "Bands"
    table = slide.shapes.add_table(5, 3, Inches(1), Inches(2), Inches(6), Inches(2)).table
    for r, row in enumerate([["Region", "Band", "Count"], ["North", "Band 26", "590"],
                             ["", "Band 27", "601"], ["South", "Band 27", "381"],
                             ["Total", "", "1572"]]):  # fmt: skip
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    table.cell(1, 0).merge(table.cell(2, 0))
    table.cell(4, 0).merge(table.cell(4, 1))
    deck.save(str(tmp_path / "m.pptx"))
    assert _rows("m.pptx", (tmp_path / "m.pptx").read_bytes())[1:] == [
        "Region: North | Band: Band 26 | Count: 590",
        "Region: North | Band: Band 27 | Count: 601",
        "Region: South | Band: Band 27 | Count: 381",
        "Region: Total | Band: Total | Count: 1572",
    ]
