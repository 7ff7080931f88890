"""report.xlsx's spliced data rows equal what xlsxwriter writes cell by cell."""

from __future__ import annotations

import zipfile
from pathlib import Path

import openpyxl
import xlsxwriter

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
    ["140105001001", "0140", " 14 ", "a&b<c>", "x\r\ny", "_x0041_", "村委会", "=1+1"],
    [1 / 3, 12345678901234567.0, None, -0.0, 1e-300, 2.5, 1e20, 0.1],
    [10, None, 0, -7, 2**53 + 1, 3, 4, 5],
    [True, False, None, True, True, False, False, True],
    [None, None, "only here", None, None, None, None, "z" * 40_000],
    [None] * 8,
]


def _book(path: Path, *, cell_by_cell: bool) -> dict[int, list]:
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
    ws.write_row(0, 0, [f"c{j}" for j in range(len(COLUMNS))], header)
    if cell_by_cell:  # the reference: xlsxwriter's own writer, as report.py once did
        for i in range(len(COLUMNS[0])):
            for j, col in enumerate(COLUMNS):
                if col[i] is not None:
                    ws.write(i + 1, j, col[i], formats[j])
    ws.freeze_panes(1, 0)
    ws.autofilter(0, 0, len(COLUMNS[0]), len(COLUMNS) - 1)
    wb.close()
    return {ws.index: COLUMNS}


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
