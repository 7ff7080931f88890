"""What a spreadsheet sees in the files ruralcov writes: every cell of a CSV or xlsx, and an
oracle for cells that could be read as a formula (written apart from ruralcov's own rule).

Texts that start formulas (OWASP "CSV injection"), for the tests to plant in inputs.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import openpyxl
import pandas as pd

#: Planted texts: formulas, a link, a DDE-style payload, tab/CR/blank prefixes, the full-width
#: signs of a Chinese input method; "-3.5" and "+1" are plain numbers and stay as they are.
HYPERLINK = '=HYPERLINK("http://x","y")'
INJECTED = [
    "=1+1",
    "+1",
    "-1+1",
    "@evil",
    HYPERLINK,
    "\t=1+1",
    "\r@x",
    " =2+2",
    "＝1+1",
    "-3.5",
]

#: What each planted text becomes in a written cell, when it was read as a code or a claimed
#: name (blanks around them are stripped): a quote before anything that could start a
#: formula; the plain numbers stay.
SAFE = ["'=1+1", "+1", "'-1+1", "'@evil", "'" + HYPERLINK, "'=1+1", "'@x", "'=2+2", "'＝1+1",
        "-3.5"]

_SIGNS = set("=+-@＝＋－＠")
_ESCAPE = re.compile("_x([0-9A-Fa-f]{4})_")


def formula_like(cell: str) -> bool:
    """True when a spreadsheet could take ``cell`` for a formula: it starts with tab, CR or
    LF, or its first non-blank character is a formula sign and it is not a plain number."""
    if cell[:1] in ("\t", "\r", "\n"):
        return True
    lead = cell.lstrip()
    if not lead or lead[0] not in _SIGNS:
        return False
    try:
        float(lead)
    except ValueError:
        return True
    return not set(lead) <= set("0123456789+-.eE")  # "-١" or "+1_0" are no plain numbers


def csv_cells(path: Path) -> list[str]:
    """Every cell of a CSV written by ruralcov, header included."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        return [cell for row in csv.reader(fh) for cell in row]


def xlsx_cells(path: Path) -> list[object]:
    """Every cell value of every sheet; fails on a formula cell. Text comes back with
    control characters as xlsx stores them escaped (``_x000D_``) turned back."""
    book = openpyxl.load_workbook(path)
    values: list[object] = []
    for ws in book.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                assert cell.data_type != "f", f"{path.name}:{ws.title}!{cell.coordinate}"
                value = cell.value
                if isinstance(value, str):
                    value = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value)
                values.append(value)
    return values


def unsafe_cells(*paths: Path) -> list[tuple[str, object]]:
    """(file, cell) of every cell of the CSV and xlsx ``paths`` a spreadsheet could run."""
    bad = []
    for path in paths:
        cells = xlsx_cells(path) if path.suffix == ".xlsx" else csv_cells(path)
        bad += [(path.name, c) for c in cells if isinstance(c, str) and formula_like(c)]
    return bad


def claimed_lists(folder: Path) -> dict[str, Path]:
    """A claimed list whose codes, names and townships are the planted texts, then V1, as
    CSV and as xlsx (text cells, as typed in Excel; a real number for the plain number)."""
    rows = [[t, t, t] for t in INJECTED] + [["V1", "Nordby", "T1"]]
    frame = pd.DataFrame(rows, columns=["village_code", "name", "township"])
    # CRLF lines, so that the CSV writer quotes the cell with a CR (pandas quotes only "\n")
    frame.to_csv(folder / "claimed.csv", index=False, lineterminator="\r\n")
    book = openpyxl.Workbook()
    ws = book.active
    ws.append(list(frame.columns))
    for row in rows:
        ws.append([-3.5 if t == "-3.5" else t for t in row])
    for row in ws.iter_rows(min_row=2):
        for cell in row:
            if cell.data_type == "f":  # openpyxl takes "=..." for a formula
                cell.data_type = "s"
    book.save(folder / "claimed.xlsx")
    return {"csv": folder / "claimed.csv", "xlsx": folder / "claimed.xlsx"}
