"""report.xlsx's spliced data rows equal what xlsxwriter writes cell by cell."""

from __future__ import annotations

import zipfile
from pathlib import Path

import openpyxl
import pytest
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
    ["140105001001", "0140", " 14 ", "a&b<c>", "x\r\ny\x00", "_x0041_", "村委会", "=1+1"],
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


def test_rows_placed_again_in_a_later_sheet(tmp_path: Path) -> None:
    """A sheet of rows of an earlier sheet (a gap list of villages) reuses their XML: the same
    bytes as xlsxwriter writing those rows cell by cell; a sheet with other column formats,
    with rows its source lacks, or whose source comes after it, is refused."""
    pos = [7, 0, 2, 2]
    picked = [[col[p] for p in pos] for col in COLUMNS]

    def book(path: Path, *, cell_by_cell: bool, text_format: bool = True) -> int:
        wb = xlsxwriter.Workbook(str(path), OPTIONS)
        formats = [wb.add_format({"num_format": "@"}), wb.add_format({"num_format": "0.00"})]
        for name, cols in (("villages", COLUMNS), ("gaps", picked)):
            ws = wb.add_worksheet(name)
            for j, fmt in enumerate(formats):
                ws.set_column(j, j, 12, fmt if text_format or name == "villages" else None)
            ws.write_row(0, 0, [f"c{j}" for j in range(len(cols))])
            if cell_by_cell:
                for i in range(len(cols[0])):
                    for j, col in enumerate(cols):
                        if col[i] is not None:
                            ws.write(i + 1, j, col[i], formats[j] if j < 2 else None)
        wb.close()
        return ws.index

    book(tmp_path / "reference.xlsx", cell_by_cell=True)
    gaps = book(tmp_path / "placed.xlsx", cell_by_cell=False)
    splice_rows(tmp_path / "placed.xlsx", {0: COLUMNS}, subsets={gaps: (0, pos)})
    with zipfile.ZipFile(tmp_path / "reference.xlsx") as a, zipfile.ZipFile(
        tmp_path / "placed.xlsx"
    ) as b:
        for name in ("xl/worksheets/sheet1.xml", "xl/worksheets/sheet2.xml"):
            assert a.read(name) == b.read(name), name
    book(tmp_path / "other.xlsx", cell_by_cell=False, text_format=False)
    with pytest.raises(ValueError, match="formats differ"):
        splice_rows(tmp_path / "other.xlsx", {0: COLUMNS}, subsets={gaps: (0, pos)})
    book(tmp_path / "outside.xlsx", cell_by_cell=False)
    with pytest.raises(ValueError, match="rows outside"):
        splice_rows(tmp_path / "outside.xlsx", {0: COLUMNS},
                    subsets={gaps: (0, [0, len(COLUMNS[0])])})
    book(tmp_path / "order.xlsx", cell_by_cell=False)
    with pytest.raises(ValueError, match="not a plain sheet before it"):
        splice_rows(tmp_path / "order.xlsx", {gaps: picked}, subsets={0: (gaps, [0])})
