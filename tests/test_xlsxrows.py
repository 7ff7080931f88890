"""report.xlsx's spliced data rows equal what xlsxwriter writes cell by cell."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import openpyxl
import pytest
import xlsxwriter

from ruralcov import xlsxrows
from ruralcov.xlsxrows import column_name, splice_rows

OPTIONS = {
    "constant_memory": True,
    "strings_to_numbers": False,
    "strings_to_formulas": False,
    "strings_to_urls": False,
}

# Every kind of cell report.write_xlsx writes: codes as text, floats with a format, integers,
# booleans, empty cells, and text that needs escaping (XML, control characters, a literal
# _xHHHH_, edge whitespace, CJK, a string past Excel's 32,767-character limit).
COLUMNS = [
    ["140105001001", "0140", " 14 ", "a&b<c>", "x\r\ny\x00", "_x0041_", "村委会", "=1+1"],
    [1 / 3, 12345678901234567.0, None, -0.0, 1e-300, 2.5, 1e20, 0.1],
    [10, None, 0, -7, 2**53 + 1, 3, 4, 5],
    [True, False, None, True, True, False, False, True],
    [None, None, "only here", None, None, None, None, "z" * 40_000],
    [None] * 8,
]


def _book(path: Path, *, cell_by_cell: bool, columns: list = COLUMNS) -> dict[int, list]:
    wb = xlsxwriter.Workbook(str(path), OPTIONS)
    header = wb.add_format({"bold": True})
    formats = [
        wb.add_format({"num_format": "@"}),
        wb.add_format({"num_format": "0.00"}),
        None,
        None,
        None,
        None,
    ]
    about = wb.add_worksheet("about")
    about.write_string(0, 0, "item", header)
    ws = wb.add_worksheet("villages")
    for j, fmt in enumerate(formats):
        ws.set_column(j, j, 12, fmt)
    ws.write_row(0, 0, [f"c{j}" for j in range(len(columns))], header)
    if cell_by_cell:  # the reference: xlsxwriter's own writer, as report.py once did
        for i in range(len(columns[0])):
            for j, col in enumerate(columns):
                if col[i] is not None:
                    ws.write(i + 1, j, col[i], formats[j])
    ws.freeze_panes(1, 0)
    ws.autofilter(0, 0, len(columns[0]), len(columns) - 1)
    wb.close()
    return {ws.index: columns}


def test_spliced_sheet_is_byte_identical_to_xlsxwriter(tmp_path: Path) -> None:
    reference = tmp_path / "reference.xlsx"
    spliced = tmp_path / "spliced.xlsx"
    _book(reference, cell_by_cell=True)
    splice_rows(spliced, _book(spliced, cell_by_cell=False))
    with zipfile.ZipFile(reference) as a, zipfile.ZipFile(spliced) as b:
        assert a.namelist() == b.namelist()
        for name in a.namelist():
            if name != "docProps/core.xml":  # holds the creation time
                assert a.read(name) == b.read(name), name
    sheet = openpyxl.load_workbook(spliced)["villages"]
    assert sheet["A2"].value == "140105001001" and sheet["A2"].number_format == "@"
    assert sheet["B2"].value == 1 / 3 and sheet["B2"].number_format == "0.00"
    assert sheet["D3"].value is False and sheet["C2"].value == 10
    assert sheet.freeze_panes == "A2" and sheet.auto_filter.ref == "A1:F9"


def test_column_names() -> None:
    assert [column_name(j) for j in (0, 25, 26, 51, 52, 701, 702)] == [
        "A",
        "Z",
        "AA",
        "AZ",
        "BA",
        "ZZ",
        "AAA",
    ]


def test_rows_made_a_chunk_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows made 3 at a time (cell values included) give the bytes xlsxwriter writes cell by
    cell, and never more than a chunk of rows is asked for; the last row with a value (the
    sheet's dimension) is found across chunks when the table ends in empty rows."""
    monkeypatch.setattr(xlsxrows, "CHUNK", 3)
    ending_empty = [[*col, None, None, None, None] for col in COLUMNS]  # 12 rows, 8 with values
    for columns in (COLUMNS, ending_empty):
        asked: list[tuple[int, int]] = []

        def values(a: int, b: int, columns: list = columns, asked: list = asked) -> list:
            asked.append((a, b))
            return [c[a:b] for c in columns]

        reference, spliced = tmp_path / "reference.xlsx", tmp_path / "spliced.xlsx"
        _book(reference, cell_by_cell=True, columns=columns)
        index = next(iter(_book(spliced, cell_by_cell=False, columns=columns)))
        splice_rows(spliced, {index: xlsxrows.Rows(len(columns[0]), len(columns), values)})
        with zipfile.ZipFile(reference) as a, zipfile.ZipFile(spliced) as b:
            for name in a.namelist():
                if name != "docProps/core.xml":  # holds the creation time
                    assert a.read(name) == b.read(name), name
        assert max(b - a for a, b in asked) == 3
        n = len(columns[0])
        assert {(a, min(a + 3, n)) for a in range(0, n, 3)} <= set(asked)
    dimension = re.search(rb'<dimension ref="([^"]*)"', zipfile.ZipFile(spliced).read(
        "xl/worksheets/sheet2.xml")).group(1)
    assert dimension == b"A1:F9"  # 8 data rows after the header, the 4 empty ones left out
