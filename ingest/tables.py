"""Tables as text in which every row carries its own context.

A table is chunked at row boundaries, and a chunk cut from the middle of a long table must still
say what its columns are. Repeating the header at the top of each chunk would make a chunk's text
something other than a span of the document, and citations quote exact spans; so the context is
written into each row instead: a data row reads `Region: North | Band: 27 | Count: 601`. Merged
cells (a region merged down 30 rows, a header spanning two columns) are filled into every cell
they cover before rendering, so the row stands alone. Rows above the header (a sheet's caption)
and tables without a recognisable header are rendered as plain `a | b | c` lines.

The cost is the header names repeated on every row: about twice the characters for a table of
short values and short column names, which is the price of a row that answers a question alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# A header row is looked for among the first rows (captions and blank title rows come first).
_HEADER_SEARCH_ROWS = 20
_MAX_HEADER_CELL_CHARS = 80
_NUMBER = re.compile(r"^[-+(]?[$€£¥]?\s?[\d.,\s]+%?\)?$")
_WHITESPACE = re.compile(r"\s+")
# A year heading a column (`2023`, `FY 2023` is a name already): 1900-2099.
_YEAR = re.compile(r"^(19|20)\d\d$")


def clean_cell(value: object) -> str:
    """A cell's text on one line (a newline inside a cell would read as a new row)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return _WHITESPACE.sub(" ", str(value)).strip()


def render_table(
    rows: Sequence[Sequence[object]],
    *,
    header_rows: int | None = None,
    continues: Sequence[str] | None = None,
) -> str:
    """One line per non-empty row; data rows as `Header: value | ...` under a header.

    `rows` is the full grid, merged cells already filled in. `header_rows` says how many leading
    rows are the header (Markdown, HTML `<thead>`/`<th>`); None guesses it (`find_header`).
    Several header rows are joined per column (`Q1 / Sales`). Empty cells are left out of a data
    row; a column without a header name shows its value alone. `continues` is the header names
    (`header_names`) of the table these rows continue (a table split across PDF pages): rows
    as wide as it, without a header of their own, are its data rows.
    """
    grid = _grid(rows)
    if not grid:
        return ""
    width = len(grid[0])
    if continues is not None and _continues(grid, continues):
        return "\n".join(_data_row(list(continues), row) for row in grid)
    if header_rows is None:
        start, count = find_header(grid)
    else:
        start, count = 0, min(header_rows, len(grid))
    if count == 0 or start + count >= len(grid):
        return "\n".join(_plain(row) for row in grid)
    names = [_join_header([grid[r][c] for r in range(start, start + count)]) for c in range(width)]
    lines = [_plain(row) for row in grid[:start]]
    lines.append(" | ".join(names))
    lines.extend(_data_row(names, row) for row in grid[start + count :])
    return "\n".join(lines)


def header_names(rows: Sequence[Sequence[object]]) -> list[str] | None:
    """The column names `render_table` gives these rows' data rows, or None without a header."""
    grid = _grid(rows)
    if not grid:
        return None
    start, count = find_header(grid)
    if count == 0 or start + count >= len(grid):
        return None
    return [_join_header([grid[r][c] for r in range(start, start + count)])
            for c in range(len(grid[0]))]  # fmt: skip


def _grid(rows: Sequence[Sequence[object]]) -> list[list[str]]:
    grid = [_trim([clean_cell(c) for c in row]) for row in rows]
    grid = [row for row in grid if row]
    width = max((len(row) for row in grid), default=0)
    return [row + [""] * (width - len(row)) for row in grid]


def _continues(grid: list[list[str]], names: Sequence[str]) -> bool:
    """Whether `grid` reads as more rows of a table headed by `names`: as wide, and not
    starting with a header of its own (the same names repeated, or a row that looks like
    one while the next rows do not)."""
    if len(grid[0]) != len(names) or [c for c in grid[0] if c] == [n for n in names if n]:
        return False
    start, count = find_header(grid)
    return count == 0 or start > 0


def _data_row(names: Sequence[str], row: Sequence[str]) -> str:
    cells = [f"{name}: {value}" if name and name != value else value
             for name, value in zip(names, row, strict=True) if value]  # fmt: skip
    return " | ".join(cells)


def find_header(grid: Sequence[Sequence[str]]) -> tuple[int, int]:
    """(first row, number of rows) of the header, or (0, 0) when no row looks like one.

    A header row is among the first `_HEADER_SEARCH_ROWS` (a sheet's notes come first), fills
    at least half the table's width, and holds only short, distinct names that are not numbers
    (a year is a name: `Country | 2022 | 2023`); a name merged across columns repeats in
    neighbouring cells. Such a group heads a second header row when the row below names its
    columns (`Sales` over `Q1 | Q2`): the two are read as one (`Sales / Q1`). At least one row
    must follow the header.
    """
    width = max((len(row) for row in grid), default=0)
    for index, row in enumerate(grid[:_HEADER_SEARCH_ROWS]):
        if index + 1 < len(grid) and width >= 2 and _header_like(row, width):
            below = grid[index + 1]
            spans = _spanned_columns(row)
            if (
                spans
                and index + 2 < len(grid)
                and all(below[c] for c in spans)
                and _header_like([below[c] for c in spans], len(spans), distinct=True)
                # Beside the groups the row below is empty or repeats the name above (merged
                # down): a data row there would have values of its own.
                and all(below[c] in ("", row[c]) for c in range(width) if c not in spans)
            ):
                return index, 2
            return index, 1
    return 0, 0


def _header_like(row: Sequence[str], width: int, *, distinct: bool = False) -> bool:
    names = [cell for cell in row if cell]
    # A name merged across columns is repeated in the cells beside it: counted once; one name
    # merged across the whole row is a caption.
    groups = [n for i, n in enumerate(row) if n and (distinct or i == 0 or row[i - 1] != n)]
    # Only years: a header over a column of row labels (`| 2022 | 2023`), else a data row.
    only_years = all(_YEAR.match(n) for n in names) and bool(row[0])
    return (
        len(names) * 2 >= width
        and len(set(groups)) == len(groups)
        and not (len(groups) == 1 and len(names) > 1)
        and all(len(n) <= _MAX_HEADER_CELL_CHARS and _is_name(n) for n in names)
        and not only_years
    )


def _is_name(cell: str) -> bool:
    return not _NUMBER.match(cell) or bool(_YEAR.match(cell))


def _spanned_columns(row: Sequence[str]) -> list[int]:
    """Columns covered by a name repeated in neighbouring cells (a cell merged across them)."""
    padded = ["", *row, ""]
    return [c for c in range(len(row)) if row[c] and row[c] in (padded[c], padded[c + 2])]


def _plain(row: list[str]) -> str:
    """A row outside the header's reach: its cells, a cell merged across columns said once."""
    cells = _trim(row)
    return " | ".join(c for i, c in enumerate(cells) if i == 0 or c != cells[i - 1])


def _trim(row: list[str]) -> list[str]:
    """The row without its trailing empty cells (a sheet's unused columns)."""
    end = len(row)
    while end and not row[end - 1]:
        end -= 1
    return row[:end]


def _join_header(parts: list[str]) -> str:
    kept: list[str] = []
    for part in parts:
        if part and (not kept or kept[-1] != part):
            kept.append(part)
    return " / ".join(kept)


def html_table_grid(table: object) -> tuple[list[list[str]], int]:
    """An lxml `<table>` element as a full grid (rowspan/colspan filled in) and its number of
    header rows (rows in `<thead>` or made only of `<th>` cells, at the top)."""
    from lxml.html import HtmlElement

    assert isinstance(table, HtmlElement)
    grid: list[list[str]] = []
    pending: dict[int, tuple[int, str]] = {}  # column -> (rows still covered, value)
    header_rows = 0
    counting_header = True
    for tr in table.iter("tr"):
        cells = [c for c in tr if c.tag in ("td", "th")]
        is_header = bool(cells) and (
            all(c.tag == "th" for c in cells) or any(a.tag == "thead" for a in tr.iterancestors())
        )
        if counting_header and is_header:
            header_rows += 1
        else:
            counting_header = False
        row: list[str] = []
        column = 0
        queue = list(cells)
        while queue or any(c >= column for c in pending):
            if not queue and column not in pending:
                row.append("")
                column += 1
                continue
            if column in pending:
                left, value = pending[column]
                row.append(value)
                if left > 1:
                    pending[column] = (left - 1, value)
                else:
                    del pending[column]
                column += 1
                continue
            cell = queue.pop(0)
            value = clean_cell(cell.text_content())
            span = _int_attribute(cell.get("colspan"), limit=1000)
            down = _int_attribute(cell.get("rowspan"), limit=100_000)
            for _ in range(span):
                if down > 1:
                    pending[column] = (down - 1, value)
                row.append(value)
                column += 1
        grid.append(row)
    return grid, header_rows


def _int_attribute(value: str | None, *, limit: int) -> int:
    try:
        return max(1, min(int(value or 1), limit))
    except ValueError:
        return 1
