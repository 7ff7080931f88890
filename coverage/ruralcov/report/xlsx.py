"""``report.xlsx``: every table of a run in one workbook, for Excel and WPS.

Codes are text cells (a 12-digit village code never becomes ``1.40105E+11``), floats keep full
precision behind a display format, and no string is ever read as a formula or a link (a name
starting with ``=`` stays a name: :func:`~ruralcov.report.tables.neutralise`). The data rows of
the table sheets are spliced in as sheet XML after xlsxwriter closes the workbook
(:mod:`ruralcov.xlsxrows`).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ruralcov.pipeline import CoverageResult
from ruralcov.report.manifest import json_value
from ruralcov.report.tables import (
    codes_as_text,
    column_decimals,
    headline_figures,
    is_code,
    neutralise,
    result_tables,
)
from ruralcov.xlsxrows import Rows, splice_rows

__all__ = ["XLSX_MAX_ROWS", "cell_values", "write_xlsx"]

#: Excel's hard limit of rows in a sheet, header included.
XLSX_MAX_ROWS = 1_048_576
#: Rows looked at to fit a column's width.
_WIDTH_SAMPLE = 500
_WORKBOOK_OPTIONS = {
    "constant_memory": True,  # rows are streamed: the national register fits in memory
    "strings_to_numbers": False,
    "strings_to_formulas": False,
    "strings_to_urls": False,
}


def _sheet_name(name: str, used: set[str]) -> str:
    name = re.sub(r"[\[\]:*?/\\]", "_", name)[:31] or "sheet"
    base, i = name, 2
    while name.lower() in used:
        suffix = f"~{i}"
        name, i = base[: 31 - len(suffix)] + suffix, i + 1
    used.add(name.lower())
    return name


def _display_width(value: Any) -> int:
    text = str(value)
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def cell_values(series: pd.Series) -> list[Any]:
    """The cells of a column as Python values that xlsxwriter writes with the right type.

    Parameters
    ----------
    series
        A column; its name decides whether it holds codes (:func:`~ruralcov.report.tables.
        is_code`), which become text.

    Returns
    -------
    list
        ``bool``, ``int``, ``float`` or neutralised ``str`` per cell; None for a missing or
        non-finite value.

    Examples
    --------
    >>> cell_values(pd.Series([1.5, float("nan")], name="x"))
    [1.5, None]
    >>> cell_values(pd.Series([140105.0], name="county_code")), cell_values(pd.Series(["=1"]))
    (['140105'], ["'=1"])
    """
    if is_code(str(series.name)):
        return _neutralised_list(codes_as_text(series).tolist())
    dtype = series.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "biuf":  # numpy bool/int/float
        arr = series.to_numpy()
        values = arr.tolist()  # the Python bool/int/float of each value
        if dtype.kind == "f":
            for i in np.flatnonzero(~np.isfinite(arr)).tolist():
                values[i] = None
        return values
    return _neutralised_list(series.astype(object).tolist(), _cell_value)


def _neutralised_list(values: list[Any], other: Callable[[Any], Any] = neutralise) -> list[Any]:
    """:func:`neutralise` of each text (once per distinct text), ``other`` of anything else."""
    texts = {v: neutralise(v) for v in {v for v in values if type(v) is str}}
    texts[None] = other(None)  # empty cells are many (evidence a village has not): once
    return [texts[v] if v is None or type(v) is str else other(v) for v in values]


def _cell_value(v: Any) -> Any:
    """One value of an object column as a cell value (None for missing)."""
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, bool | np.bool_):
        return bool(v)
    if isinstance(v, int | np.integer):
        return int(v)
    if isinstance(v, float | np.floating):
        return None if not math.isfinite(v) else float(v)
    return neutralise(str(v))


@dataclass(frozen=True)
class _Styles:
    """The cell formats of the workbook, added in this order (their order is in the file)."""

    header: Any
    text: Any
    decimals: dict[int, Any]

    @classmethod
    def of(cls, workbook: Any) -> _Styles:
        """The formats, added to ``workbook``."""
        header = workbook.add_format({"bold": True, "bg_color": "#F3F3F3", "bottom": 1})
        text = workbook.add_format({"num_format": "@"})
        decimals = {
            2: workbook.add_format({"num_format": "0.00"}),
            1: workbook.add_format({"num_format": "0.0"}),
            4: workbook.add_format({"num_format": "0.00%"}),
        }
        return cls(header, text, decimals)

    def column(self, name: str, dtype: Any) -> Any:
        """The format of a column: text for codes, a number format for rounded floats."""
        if is_code(name):
            return self.text
        if pd.api.types.is_float_dtype(dtype):
            decimals = column_decimals(name)
            return self.decimals.get(decimals) if decimals is not None else None
        return None


def write_xlsx(result: CoverageResult, path: Path | str, *, created: str | None = None) -> Path:
    """Write ``report.xlsx``: an ``about`` sheet, then every table of
    :func:`~ruralcov.report.tables.result_tables`.

    Each table sheet has a frozen header row, an autofilter and column widths fitted to the
    content. Codes are text cells; floats keep full precision with a display format. A table
    longer than Excel's row limit is cut there, and the ``about`` sheet says so.

    Parameters
    ----------
    result
        What :func:`ruralcov.analyse` returned.
    path
        The workbook to write.
    created
        The workbook's creation time (ISO 8601, the manifest's); the file holds no other
        time, so the same result and ``created`` give the same bytes (``ruralcov verify``
        compares them). Default: now.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    import xlsxwriter

    path = Path(path)
    tables = result_tables(result)
    workbook = xlsxwriter.Workbook(str(path), _WORKBOOK_OPTIONS)
    try:
        if created is not None:
            workbook.set_properties({"created": datetime.fromisoformat(created)})
        styles = _Styles.of(workbook)
        used: set[str] = set()
        about = workbook.add_worksheet(_sheet_name("about", used))
        sheets = [(workbook.add_worksheet(_sheet_name(n, used)), n, f) for n, f in tables.items()]
        rows, cut = _table_sheets(sheets, styles)
        notes = [*_about_rows(result), *(("note", c) for c in cut)]
        about.set_column(0, 0, 28)
        about.set_column(1, 1, 100)
        for i, (key, value) in enumerate(notes):
            about.write_string(i, 0, key, styles.header if i == 0 else None)
            about.write(i, 1, neutralise(value), styles.header if i == 0 else None)
    finally:
        workbook.close()
    splice_rows(path, rows)
    return path


def _table_sheets(sheets: list[tuple[Any, str, pd.DataFrame]], styles: _Styles
                  ) -> tuple[dict[int, Rows], list[str]]:
    """Lay out every table sheet (widths, header, filter); return the data rows by sheet
    (spliced in after closing, their cells made a chunk of rows at a time:
    :mod:`ruralcov.xlsxrows`) and a note per table cut short."""
    rows: dict[int, Rows] = {}
    cut: list[str] = []
    for ws, name, frame in sheets:
        n_rows = min(len(frame), XLSX_MAX_ROWS - 1)
        if n_rows < len(frame):
            cut.append(
                f"{name}: only the first {n_rows:,} of {len(frame):,} rows fit in "
                f"Excel; the full table is tables/{name}.csv"
            )
        if len(frame.columns):
            rows[ws.index] = _frame_rows(frame, n_rows)
        sample = [cell_values(frame[c].iloc[:min(n_rows, _WIDTH_SAMPLE)]) for c in frame.columns]
        _lay_out(ws, frame, sample, n_rows, styles)
    return rows, cut


def _frame_rows(frame: pd.DataFrame, n_rows: int) -> Rows:
    """The first ``n_rows`` rows of ``frame`` as cells (:func:`cell_values`), per chunk."""
    columns = list(frame.columns)
    return Rows(n_rows, len(columns),
                lambda a, b: [cell_values(frame[c].iloc[a:b]) for c in columns])


def _lay_out(ws: Any, frame: pd.DataFrame, values: list[list[Any]], n_rows: int,
             styles: _Styles) -> None:
    """Column widths and formats, the header row, frozen panes and the autofilter."""
    columns = list(frame.columns)
    for j, col in enumerate(columns):
        sample = [v for v in values[j][:_WIDTH_SAMPLE] if v is not None]
        width = max([_display_width(col)] + [_display_width(v) for v in sample])
        ws.set_column(j, j, min(max(width + 2, 8), 60), styles.column(col, frame[col].dtype))
    ws.write_row(0, 0, [neutralise(str(c)) for c in columns], styles.header)
    ws.freeze_panes(1, 0)
    ws.autofilter(0, 0, max(n_rows, 1), max(len(columns) - 1, 0))


def _about_rows(result: CoverageResult) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = [
        ("item", "value"),
        ("run", result.config.run.name),
        ("provenance", result.config.run.provenance or "(not given)"),
        ("profile", result.config.run.profile),
    ]
    rows.extend((key, json_value(value)) for key, value in headline_figures(result).items())
    return rows
