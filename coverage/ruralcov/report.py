"""Writing a :class:`~ruralcov.pipeline.CoverageResult` as a run folder.

This module owns the run folder of DESIGN.md ("Run folder"): the GeoParquet village table, the
CSV tables, ``report.xlsx``, ``report.html``, ``manifest.json`` and ``config.toml`` (the maps are
delegated to :mod:`ruralcov.maps`). A run folder is written whole or not at all: everything
goes into a temporary sibling folder that replaces ``<out>`` only once it is complete, under a
lock, so a failed or killed run never leaves a partial folder behind (:mod:`ruralcov.outdir`).

Choices made for the people who open these files (Excel and WPS on Windows, often with a Chinese
locale, and auditors who compare numbers one village at a time):

- CSV files are UTF-8 with a byte-order mark (``utf-8-sig``) so that Excel and WPS detect the
  encoding (not cp936); separators are commas, decimal points are dots, lines end in CRLF
  (RFC 4180), missing values are empty cells.
- Booleans are written ``TRUE``/``FALSE``: Excel and WPS show their own booleans that way and
  turn these cells into real booleans (filterable), and pandas, R and csvkit read them back as
  booleans.
- Floats are rounded in the CSV and HTML tables only: speeds (``*_mbps``) to 0.01 Mbps,
  latencies (``*_ms``) to 0.1 ms, shares to 4 decimals, distances (``*_m``) to 0.1 m. A
  target (``fibre_target``) is written as given: 0.9800000000000001 is not 0.98, and its gap
  would not add up against a rounded target. ``villages.parquet`` and ``report.xlsx`` keep
  full precision (the workbook shows the rounded value through a number format).
- Codes (``code``, ``*_code``) are text everywhere. In ``report.xlsx`` they are text cells, so a
  12-digit village code never becomes ``1.40105E+11``. A CSV cannot carry that type: Excel
  shows long numeric-looking codes in scientific notation when it opens a CSV directly, which
  is why the workbook is the file to open in Excel; the CSV is for tools and for import with
  "text" columns.
- Strings are never interpreted as formulas or links in the workbook (a name starting with
  ``=`` stays a name).
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import math
import os
import platform
import re
import shutil
import unicodedata
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from datetime import UTC, datetime
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ruralcov import aggregate, outdir
from ruralcov.capability import FIVE_WAY_TEXT, is_five_way
from ruralcov.config import config_to_dict, dump_config, path_text, relative_inside
from ruralcov.errors import ConfigError, OutputExistsError
from ruralcov.pipeline import CoverageResult
from ruralcov.schema import LEVELS, SUMMARY_COLUMNS, VILLAGE_COLUMNS
from ruralcov.validate import ISSUE_FIELDS
from ruralcov.xlsxrows import splice_rows

__all__ = [
    "GAP_TABLES",
    "add_report_section",
    "build_manifest",
    "headline_figures",
    "html_table",
    "neutralise",
    "page",
    "render_report_html",
    "result_tables",
    "sha256_file",
    "write_run",
    "write_tables",
    "write_xlsx",
]

#: Keys of ``CoverageResult.gaps`` and the CSV each is written to.
GAP_TABLES: dict[str, str] = {
    "no_fibre": "gaps_no_fibre",
    "below_speed": "gaps_below_speed",
    "insufficient_data": "gaps_insufficient_data",
}

_VERSIONED = (
    "numpy", "pandas", "geopandas", "shapely", "pyproj", "pyogrio", "pyarrow", "xlsxwriter"
)
_XLSX_MAX_ROWS = 1_048_576  # Excel's hard limit, header included
_TRUE, _FALSE = "TRUE", "FALSE"


# --------------------------------------------------------------------------- tables


def _decimals(column: str) -> int | None:
    """Decimals a float column is rounded to in the CSV and HTML tables (None: leave as is)."""
    if column.endswith("_mbps"):
        return 2
    if column.endswith("_ms"):
        return 1
    if "share" in column:
        return 4
    if column.endswith("_m"):
        return 1
    return None


def _is_code(column: str) -> bool:
    return column == "code" or column.endswith("_code")


def _is_bool(series: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(series.dtype):
        return True
    if series.dtype == object:
        values = series.dropna()
        return len(values) > 0 and all(isinstance(v, bool | np.bool_) for v in values)
    return False


def _as_text(series: pd.Series) -> pd.Series:
    """Codes as text; integers stored as floats lose their ``.0``."""

    def conv(v: Any) -> Any:
        if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
            return None
        if isinstance(v, float | np.floating) and float(v).is_integer():
            return str(int(v))
        return str(v)

    return pd.Series([v if type(v) is str else conv(v) for v in series.tolist()],
                     index=series.index, name=series.name, dtype=object)


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy without geometry columns (a GeoDataFrame becomes a DataFrame)."""
    geo = [c for c in frame.columns if str(frame[c].dtype) == "geometry"]
    return pd.DataFrame(frame.drop(columns=geo))


def _ordered(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """Known columns in schema order first, then any extra columns in their own order."""
    known = [c for c in columns if c in frame.columns]
    extra = [c for c in frame.columns if c not in columns]
    return frame.loc[:, known + extra]


def result_tables(result: CoverageResult) -> dict[str, pd.DataFrame]:
    """Every table of the run folder by name (``villages``, ``summary_<level>``, ``gaps_*``,
    ``issues``), unrounded and without geometry, in the order they are written.

    Examples
    --------
    >>> list(result_tables(result))  # doctest: +SKIP
    ['villages', 'summary_province', ..., 'gaps_no_fibre', ..., 'issues']
    """
    tables: dict[str, pd.DataFrame] = {}
    tables["villages"] = _ordered(_plain(result.villages), VILLAGE_COLUMNS).reset_index(drop=True)
    levels = [lv for lv in LEVELS if lv in result.summaries]
    levels += [lv for lv in result.summaries if lv not in LEVELS]
    for level in levels:
        # speed_share_trend is a map-popup text; the figures are in trend_<level>.csv
        summary = _plain(result.summaries[level]).drop(columns="speed_share_trend", errors="ignore")
        tables[f"summary_{level}"] = _ordered(summary, SUMMARY_COLUMNS).reset_index(drop=True)
    for key, name in GAP_TABLES.items():
        gap = result.gaps.get(key)
        if gap is None:
            gap = tables["villages"].iloc[0:0]
        tables[name] = _ordered(_plain(gap), VILLAGE_COLUMNS).reset_index(drop=True)
    for key in ("fibre_but_slow", "fast_without_fibre"):  # only with capability records
        if key in result.gaps:
            tables[f"gaps_{key}"] = _ordered(
                _plain(result.gaps[key]), VILLAGE_COLUMNS
            ).reset_index(drop=True)
    for level, trend in (getattr(result, "trends", None) or {}).items():  # ruralcov.trends
        tables[f"trend_{level}"] = _plain(trend).reset_index(drop=True)
    tables["issues"] = _ordered(_plain(result.issues), ISSUE_FIELDS).reset_index(drop=True)
    applied = getattr(result, "corrections", None)
    if applied is not None and len(applied):  # the corrections ledger (ruralcov.corrections)
        tables["corrections"] = _plain(applied).reset_index(drop=True)
    return tables


#: First characters that make Excel, WPS or LibreOffice read a cell as a formula (OWASP "CSV
#: injection"), compared after NFKC so that the full-width forms typed with a Chinese input
#: method (``＝``, ``＋``, ``－``, ``＠``) count too, and after leading blanks, which a
#: spreadsheet may trim on import.
_FORMULA_SIGNS = frozenset("=+-@")
#: A cell starting with one of these can start a formula after a re-import (tab, CR, LF).
_CONTROL_START = ("\t", "\r", "\n")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", re.ASCII)  # 0-9 only


def _formula_like(text: str) -> bool:
    """Whether a spreadsheet could read ``text`` as a formula (a plain number never is)."""
    if text.startswith(_CONTROL_START):
        return True
    lead = text.lstrip()
    if not lead or unicodedata.normalize("NFKC", lead[0])[:1] not in _FORMULA_SIGNS:
        return False
    return not _NUMBER.fullmatch(lead)


def neutralise(value: Any) -> Any:
    """A text cell made safe against formula injection: a leading ``'`` when it starts
    like a formula.

    The one rule for every cell of every CSV and workbook ruralcov writes (through
    :func:`_for_csv` and :func:`_cell_values`). Only text is touched; a text cell that is a
    plain number (``"-3.5"``, ``"+1"``) stays as it is, since spreadsheets read it as that
    number, never as a formula.

    Examples
    --------
    >>> neutralise("=HYPERLINK(\"http://x\")"), neutralise("-3.5"), neutralise(-3.5)
    ('\'=HYPERLINK("http://x")', '-3.5', -3.5)
    >>> neutralise("＝1+1"), neutralise(" @evil")
    ("'＝1+1", "' @evil")
    """
    if isinstance(value, str) and _formula_like(value):
        return "'" + value
    return value


def _csv_cell(value: Any) -> Any:
    """One cell of an object column as written: booleans ``TRUE``/``FALSE``, numbers and
    missing values as they are, anything else as neutralised text."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, bool | np.bool_):
        return _TRUE if value else _FALSE
    if isinstance(value, int | float | np.integer | np.floating):
        return value
    return neutralise(value if type(value) is str else str(value))


def _neutralised(series: pd.Series) -> pd.Series:
    """``series`` with every text cell neutralised (:func:`neutralise`), whatever its dtype:
    object, ``str``/``string`` or categorical; numeric, boolean and date columns hold no
    text and are returned as they are."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        series = series.astype(object)
    elif dtype is not np.dtype(object) and not pd.api.types.is_string_dtype(dtype):
        return series
    if pd.api.types.infer_dtype(series, skipna=True) not in ("string", "empty"):
        return series.map(_csv_cell)  # mixed values: each as it is written
    if not any(_formula_like(v) for v in series.unique() if isinstance(v, str)):
        return series  # nothing looks like a formula
    return series.map(neutralise, na_action="ignore")


def _for_csv(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` as every CSV of ruralcov writes it (run tables, plan, audit, diff): codes as
    text, booleans ``TRUE``/``FALSE``, floats rounded by column (:func:`_decimals`), and every
    text cell, the header included, neutralised against formula injection."""
    out = frame.copy()
    for col in out.columns:
        series = out[col]
        if _is_code(str(col)):
            out[col] = _neutralised(_as_text(series))
        elif series.dtype == np.bool_:
            out[col] = pd.Series(np.where(series.to_numpy(), _TRUE, _FALSE).astype(object),
                                 index=series.index, dtype=object)
        elif _is_bool(series):
            out[col] = pd.Series(
                [None if pd.isna(v) else (_TRUE if v else _FALSE) for v in series],
                index=series.index,
                dtype=object,
            )
        elif pd.api.types.is_float_dtype(series.dtype):
            decimals = _decimals(str(col))
            if decimals is not None:
                out[col] = series.round(decimals)
        else:
            out[col] = _neutralised(series)
    out.columns = [neutralise(str(c)) for c in out.columns]
    return out


def village_rows(tables: Mapping[str, pd.DataFrame]) -> dict[str, np.ndarray]:
    """The tables made of whole rows of ``tables["villages"]`` (the gap lists: same columns,
    same values), each with the positions of its rows there: the writers format a village's
    row once and place it again in every such table. Checked value by value, so a table that
    differs in any way is written on its own."""
    villages = tables.get("villages")
    if villages is None or "village_code" not in villages.columns:
        return {}
    codes = pd.Index(villages["village_code"])
    if not codes.is_unique:
        return {}
    found = {}
    for name, table in tables.items():
        if name == "villages" or not len(table) or not table.columns.equals(villages.columns):
            continue
        pos = codes.get_indexer(table["village_code"])
        if (pos >= 0).all() and table.equals(villages.iloc[pos].reset_index(drop=True)):
            found[name] = pos
    return found


def write_tables(result: CoverageResult, folder: Path | str) -> list[Path]:
    """Write every table of :func:`result_tables` as ``<folder>/<name>.csv``; return the paths.

    ``folder`` is the tables folder itself (``<out>/tables`` in a run folder). Files are UTF-8
    with BOM, booleans ``TRUE``/``FALSE``, floats rounded as described in the module docstring.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tables = result_tables(result)
    reuse = village_rows(tables)
    lines: dict[int, str] | None = None  # villages' CSV lines the gap tables use (-1: header)
    written = []
    for name, frame in tables.items():
        path = folder / f"{name}.csv"
        pos = reuse.get(name)
        if pos is not None and lines is not None and _same_csv_kinds(frame, tables["villages"]):
            text = "\r\n".join([lines[-1], *(lines[p] for p in pos.tolist()), ""])
            path.write_text(text, encoding="utf-8-sig", newline="")
        elif name == "villages" and reuse:
            lines = _write_csv_keeping(_for_csv(frame), path, np.concatenate(list(reuse.values())))
        else:
            _for_csv(frame).to_csv(path, index=False, encoding="utf-8-sig", lineterminator="\r\n")
        written.append(path)
    return written


def _write_csv_keeping(frame: pd.DataFrame, path: Path, keep: np.ndarray,
                       chunk: int = 50_000) -> dict[int, str] | None:
    """Write ``frame`` as :func:`write_tables` does, a chunk of rows at a time, and return its
    lines at the 0-based rows ``keep`` (and the header at -1); None when a cell holds a line
    break, so that lines are not rows."""
    wanted = np.unique(keep)
    kept: dict[int, str] | None = {}
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        for a in range(0, max(len(frame), 1), chunk):
            text = frame.iloc[a:a + chunk].to_csv(index=False, header=a == 0,
                                                   lineterminator="\r\n")
            fh.write(text)
            if kept is None:
                continue
            lines = text.split("\r\n")
            if a == 0:
                kept[-1] = lines.pop(0)
            if len(lines) != len(frame.iloc[a:a + chunk]) + 1:  # a text with a line break
                kept = None
                continue
            for p in wanted[np.searchsorted(wanted, a):np.searchsorted(wanted, a + chunk)]:
                kept[int(p)] = lines[p - a]
    return kept


def _same_csv_kinds(table: pd.DataFrame, villages: pd.DataFrame) -> bool:
    """Whether :func:`_for_csv` writes every column of ``table`` (rows of ``villages``) as it
    writes ``villages``: it writes an object column of booleans as TRUE/FALSE, which a
    selection of a column that also holds other values can be."""
    return all(_is_bool(table[c]) == _is_bool(villages[c])
               for c in table.columns if table[c].dtype == object)


# --------------------------------------------------------------------------- workbook


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


def _cell_values(series: pd.Series) -> list[Any]:
    """Python values xlsxwriter writes with the right cell type; None for missing."""
    if _is_code(str(series.name)):
        return _neutralised_list(_as_text(series).tolist())
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
    return [texts[v] if type(v) is str else other(v) for v in values]


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


def write_xlsx(result: CoverageResult, path: Path | str, *, created: str | None = None) -> Path:
    """Write ``report.xlsx``: an ``about`` sheet, then every table of :func:`result_tables`.

    Each table sheet has a frozen header row, an autofilter and column widths fitted to the
    content. Codes are text cells; floats keep full precision with a display format. A table
    longer than Excel's row limit is cut there, and the ``about`` sheet says so.

    ``created`` (ISO 8601, the manifest's) is the workbook's creation time; the file holds no
    other time, so the same result and ``created`` give the same bytes (``ruralcov verify``
    compares them). Without it, the time now.
    """
    import xlsxwriter

    path = Path(path)
    tables = result_tables(result)
    workbook = xlsxwriter.Workbook(
        str(path),
        {
            "constant_memory": True,  # rows are streamed: the national register fits in memory
            "strings_to_numbers": False,
            "strings_to_formulas": False,
            "strings_to_urls": False,
        },
    )
    try:
        if created is not None:
            workbook.set_properties({"created": datetime.fromisoformat(created)})
        header = workbook.add_format({"bold": True, "bg_color": "#F3F3F3", "bottom": 1})
        text = workbook.add_format({"num_format": "@"})
        formats = {
            2: workbook.add_format({"num_format": "0.00"}),
            1: workbook.add_format({"num_format": "0.0"}),
            4: workbook.add_format({"num_format": "0.00%"}),
        }
        used: set[str] = set()
        about = workbook.add_worksheet(_sheet_name("about", used))
        notes = _about_rows(result)
        cut: list[str] = []
        sheets = [(name, frame) for name, frame in tables.items()]
        worksheets = [(workbook.add_worksheet(_sheet_name(n, used)), n, f) for n, f in sheets]
        rows: dict[int, list[list[Any]]] = {}
        subsets: dict[int, tuple[int, np.ndarray]] = {}  # gap sheet -> villages sheet, rows
        reuse = village_rows(tables)
        home = next((ws.index for ws, n, _ in worksheets if n == "villages"), -1)
        for ws, name, frame in worksheets:
            n_rows = min(len(frame), _XLSX_MAX_ROWS - 1)
            if n_rows < len(frame):
                cut.append(
                    f"{name}: only the first {n_rows:,} of {len(frame):,} rows fit in "
                    f"Excel; the full table is tables/{name}.csv"
                )
            columns = list(frame.columns)
            pos = reuse.get(name, np.empty(0, np.int64))[:n_rows]
            if len(pos) and home in rows and pos.max() < len(rows[home][0]):
                subsets[ws.index] = (home, pos)
                values = [[col[p] for p in pos[:500].tolist()] for col in rows[home]]  # widths
            else:
                values = [_cell_values(frame[c].iloc[:n_rows]) for c in columns]
            for j, col in enumerate(columns):
                fmt = None
                if _is_code(col):
                    fmt = text
                elif pd.api.types.is_float_dtype(frame[col].dtype):
                    decimals = _decimals(col)
                    fmt = formats.get(decimals) if decimals is not None else None
                sample = [v for v in values[j][:500] if v is not None]
                width = max([_display_width(col)] + [_display_width(v) for v in sample])
                ws.set_column(j, j, min(max(width + 2, 8), 60), fmt)
            ws.write_row(0, 0, [neutralise(str(c)) for c in columns], header)
            if values and ws.index not in subsets:  # data rows: spliced in after closing
                rows[ws.index] = values  # (ruralcov.xlsxrows, faster)
            ws.freeze_panes(1, 0)
            ws.autofilter(0, 0, max(n_rows, 1), max(len(columns) - 1, 0))
        about.set_column(0, 0, 28)
        about.set_column(1, 1, 100)
        for i, (key, value) in enumerate([*notes, *(("note", c) for c in cut)]):
            about.write_string(i, 0, key, header if i == 0 else None)
            about.write(i, 1, neutralise(value), header if i == 0 else None)
    finally:
        workbook.close()
    splice_rows(path, rows, subsets=subsets)
    return path


def _about_rows(result: CoverageResult) -> list[tuple[str, Any]]:
    figures = headline_figures(result)
    rows: list[tuple[str, Any]] = [
        ("item", "value"),
        ("run", result.config.run.name),
        ("provenance", result.config.run.provenance or "(not given)"),
        ("profile", result.config.run.profile),
    ]
    for key, value in figures.items():
        rows.append((key, _json_value(value)))
    return rows


# --------------------------------------------------------------------------- figures


def headline_figures(result: CoverageResult) -> dict[str, Any]:
    """The headline numbers shown in the report, over the whole register.

    Derived from ``result.villages`` by the DESIGN definitions, then overridden by any key the
    pipeline put in ``result.headline`` (its numbers are the published ones). Keys:
    ``register_units, villages, villages_with_geometry, fibre_villages, fibre_share,
    fibre_target, fibre_gap_villages, speed_meets, speed_below, speed_insufficient,
    speed_share, communities, communities_speed_meets, communities_speed_share`` and the
    targets ``village_download_mbps``, ``community_download_mbps``.
    """
    v = result.villages
    targets = result.config.targets
    adm = v[v["kind"] == "village"]
    com = v[v["kind"] == "community"]
    n, n_com = len(adm), len(com)
    fibre = int(adm["fibre"].fillna(False).astype(bool).sum())
    meets = int((adm["speed_class"] == "meets").sum())
    com_meets = int((com["speed_class"] == "meets").sum())
    figures: dict[str, Any] = {
        "register_units": len(v),
        "villages": n,
        "villages_with_geometry": int(adm["has_geometry"].fillna(False).astype(bool).sum()),
        "fibre_villages": fibre,
        "fibre_share": fibre / n if n else None,
        "fibre_target": targets.fibre_share,
        "fibre_gap_villages": aggregate.gap_villages(
            n, fibre, aggregate.target_fraction(targets.fibre_share)
        ),
        "speed_meets": meets,
        "speed_below": int((adm["speed_class"] == "below").sum()),
        "speed_insufficient": int((adm["speed_class"] == "insufficient_data").sum()),
        "speed_share": meets / n if n else None,
        "communities": n_com,
        "communities_speed_meets": com_meets,
        "communities_speed_share": com_meets / n_com if n_com else None,
        "village_download_mbps": targets.village_download_mbps,
        "community_download_mbps": targets.community_download_mbps,
    }
    figures.update({k: _json_value(val) for k, val in result.headline.items()})
    return figures


# --------------------------------------------------------------------------- HTML


def _css() -> str:
    return (resources.files("ruralcov") / "templates" / "report.css").read_text(encoding="utf-8")


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _fmt_int(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{int(value):,}"


def _fmt_pct(value: Any, decimals: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * float(value):.{decimals}f} %"


def _fmt_cell(column: str, value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool | np.bool_):
        return _TRUE if value else _FALSE
    if isinstance(value, float | np.floating):
        if "share" in column or column.endswith("_target"):
            return _fmt_pct(value)
        decimals = _decimals(column)
        return f"{value:.{decimals}f}" if decimals is not None else f"{value:g}"
    if isinstance(value, int | np.integer) and not _is_code(column):
        return f"{int(value):,}"
    return str(value)


def html_table(frame: pd.DataFrame, columns: list[str] | None = None) -> str:
    """A frame as an escaped HTML table (numbers right-aligned)."""
    columns = [c for c in (columns or list(frame.columns)) if c in frame.columns]
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = []
    for row in frame.loc[:, columns].itertuples(index=False, name=None):
        cells = []
        for col, value in zip(columns, row, strict=True):
            numeric = isinstance(value, int | float | np.integer | np.floating) and not isinstance(
                value, bool | np.bool_
            )
            cls = ' class="num"' if numeric and not _is_code(col) else ""
            cells.append(f"<td{cls}>{_e(_fmt_cell(col, value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<div class="table-wrap"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
        + "\n".join(body)
        + ("\n</tbody>\n</table></div>")
    )


def page(title: str, body: str) -> str:
    """A complete, self-contained HTML page (inline CSS, no external references)."""
    return (
        '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>\n{_css()}</style>\n</head>\n<body>\n"
        f"{body}\n</body>\n</html>\n"
    )


def _summary_level(result: CoverageResult) -> str | None:
    """County if present, else the finest level present below it, else the coarsest."""
    for level in ("county", "township", "city", "province"):
        if level in result.summaries:
            return level
    return next(iter(result.summaries), None)


def _sorted_by_gap(summary: pd.DataFrame) -> pd.DataFrame:
    keys = [c for c in ("fibre_gap_villages", "fibre_share", "code") if c in summary.columns]
    ascending = [k != "fibre_gap_villages" for k in keys]
    return summary.sort_values(keys, ascending=ascending, kind="stable", na_position="last")


def _issue_counts(issues: pd.DataFrame) -> pd.DataFrame:
    if issues.empty:
        return pd.DataFrame(columns=["layer", "reason", "severity", "findings", "rows_dropped"])
    frame = issues.assign(
        dropped=issues["dropped"].fillna(False).astype(bool) if "dropped" in issues else False
    )
    grouped = frame.groupby(["layer", "reason", "severity"], dropna=False, sort=True)
    counts = grouped.agg(findings=("reason", "size"), rows_dropped=("dropped", "sum"))
    return counts.reset_index().astype({"findings": "int64", "rows_dropped": "int64"})


def render_report_html(
    result: CoverageResult,
    *,
    created: str | None = None,
    figures: tuple[tuple[str, str], ...] | list[tuple[str, str]] = (),
    trend_figures: tuple[tuple[str, str], ...] | list[tuple[str, str]] = (),
) -> str:
    """``report.html``: headline numbers, provenance, the county table sorted by gap, issue
    counts, inputs and links into the run folder. Self-contained; every value is escaped.

    ``figures`` are ``(path relative to the run folder, caption)`` of static map PNGs
    (:func:`ruralcov.maps.report_figures`), shown under "Maps"."""
    cfg = result.config
    f = headline_figures(result)
    target = f.get("fibre_target")
    share = f.get("fibre_share")
    # on target by the exact gap, never share >= target in floats (two different exact
    # values can round to one float)
    on_target = share is not None and f.get("fibre_gap_villages") == 0
    parts = [f"<h1>ruralcov report — {_e(cfg.run.name)}</h1>"]
    meta = f"profile {_e(cfg.run.profile)}"
    if created:
        meta += f" · created {_e(created)}"
    parts.append(f'<p class="meta">{meta}</p>')
    provenance = cfg.run.provenance.strip() or "No provenance was given for these inputs."
    parts.append(
        f'<div class="provenance"><strong>Data provenance.</strong> {_e(provenance)}</div>'
    )

    def card(value: str, label: str, cls: str = "") -> str:
        cls_attr = f' class="value {cls}"' if cls else ' class="value"'
        return (
            f'<div class="card"><div{cls_attr}>{_e(value)}</div>'
            f'<div class="label">{_e(label)}</div></div>'
        )

    n = f.get("villages")
    without_geom = None if n is None else n - (f.get("villages_with_geometry") or 0)
    cards = [
        card(_fmt_int(f.get("register_units")), "entries in the village register"),
        card(
            _fmt_int(n),
            f"administrative villages (denominator; {_fmt_int(without_geom)} without geometry)",
        ),
        card(_fmt_int(f.get("fibre_villages")), "administrative villages with fibre"),
        card(
            _fmt_pct(share),
            f"fibre share vs target {_fmt_pct(target, 0)}",
            "good" if on_target else "bad",
        ),
        card(
            _fmt_int(f.get("fibre_gap_villages")),
            "villages short of the fibre target (gap)",
            "good" if not f.get("fibre_gap_villages") else "bad",
        ),
    ]
    speed_target = f.get("village_download_mbps")
    speed_cards = [
        card(
            _fmt_int(f.get("speed_meets")),
            f"villages meeting {speed_target:g} Mbps"
            if speed_target is not None
            else "villages meeting the speed target",
            "good",
        ),
        card(_fmt_int(f.get("speed_below")), "villages below the speed target", "bad"),
        card(_fmt_int(f.get("speed_insufficient")), "villages with too few speed tests"),
        card(
            f"{_fmt_int(f.get('communities_speed_meets'))} of {_fmt_int(f.get('communities'))}",
            "communities at the urban target"
            + (
                f" ({f['community_download_mbps']:g} Mbps)"
                if f.get("community_download_mbps") is not None
                else ""
            ),
        ),
    ]
    parts.append("<h2>Headline</h2>")
    parts.append('<div class="cards">' + "".join(cards) + "</div>")
    parts.append("<h2>Speed</h2>")
    parts.append('<div class="cards">' + "".join(speed_cards) + "</div>")
    parts.extend(_five_way_html(result, card))
    parts.extend(_trend_html(result, trend_figures))
    parts.append(
        "<p>Shares are divided by every administrative village of the register, including "
        "villages without geometry or speed tests. The gap is "
        "max(0, ceil(target × villages) − fibre villages), computed exactly.</p>"
    )

    level = _summary_level(result)
    if level is not None:
        summary = _sorted_by_gap(result.summaries[level])
        parts.append(f"<h2>By {_e(level)}, largest fibre gap first</h2>")
        parts.append(
            html_table(
                summary,
                [
                    "code",
                    "name",
                    "villages",
                    "villages_with_geometry",
                    "fibre_villages",
                    "fibre_share",
                    "fibre_gap_villages",
                    "speed_meets",
                    "speed_below",
                    "speed_insufficient",
                    "communities",
                    "communities_speed_meets",
                ],
            )
        )
        parts.append(
            f'<p>All levels: see the <a href="tables/summary_{_e(level)}.csv">'
            "summary tables</a> and the workbook.</p>"
        )

    if figures:
        parts.append('<h2>Maps</h2>\n<p>Interactive maps: <a href="maps/index.html">'
                     "maps/index.html</a> (province map and one map per county).</p>")
        parts.extend(
            f'<figure><img src="{_e(src)}" alt="{_e(caption)}" style="max-width:100%">'
            f"<figcaption>{_e(caption)}</figcaption></figure>"
            for src, caption in figures
        )

    applied = getattr(result, "corrections", None)
    if applied is not None and len(applied):
        parts.append(f"<h2>Corrections applied ({len(applied)})</h2>")
        parts.append(
            "<p>Overrides from the corrections ledger, applied after classification; every "
            'number above includes them. Also in <a href="tables/corrections.csv">'
            "tables/corrections.csv</a> and the villages' <code>corrections</code> column.</p>"
        )
        parts.append(html_table(applied))
    parts.append("<h2>Input findings</h2>")
    counts = _issue_counts(result.issues)
    if counts.empty:
        parts.append("<p>No findings about the inputs.</p>")
    else:
        parts.append(html_table(counts))
        parts.append(
            '<p>Every finding, row by row: <a href="tables/issues.csv">tables/issues.csv</a>.</p>'
        )
    if result.inputs:
        rows = pd.DataFrame(
            [
                {
                    "layer": rec.layer,
                    "file": Path(rec.path).name,
                    "rows_read": rec.rows_read,
                    "rows_used": rec.rows_used,
                    "rows_dropped": sum(rec.dropped.values()),
                }
                for rec in result.inputs
            ]
        )
        parts.append("<h2>Inputs</h2>")
        parts.append(html_table(rows))

    links = [
        ("maps/index.html", "maps"),
        ("report.xlsx", "workbook with every table (open this one in Excel or WPS)"),
        ("tables/villages.csv", "every village of the register"),
        *(
            (f"tables/{name}.csv", f"villages behind the gap: {key.replace('_', ' ')}")
            for key, name in GAP_TABLES.items()
        ),
        ("tables/issues.csv", "input findings"),
        ("villages.parquet", "villages with geometry (GeoParquet)"),
        ("manifest.json", "inputs, parameters, versions and file hashes"),
        ("config.toml", "configuration to reproduce this run"),
    ]
    parts.append("<h2>Files</h2>\n<ul>")
    parts.extend(
        f'<li><a href="{_e(href)}">{_e(href)}</a> — {_e(text)}</li>' for href, text in links
    )
    parts.append("</ul>")
    return page(f"ruralcov report — {cfg.run.name}", "\n".join(parts))


#: Five-way speed classes (ruralcov.capability) with the style of their card.
_FIVE_WAY_CSS = {"meets": "good", "fails": "bad"}


def _five_way_html(result: CoverageResult, card: Callable[..., str]) -> list[str]:
    """Cards for the five-way classes and links to the discrepancy lists (runs with
    capability records only)."""
    v = result.villages
    if not is_five_way(v):
        return []
    is_village = v["kind"] == "village"
    counts = v.loc[is_village, "speed_class"].value_counts()
    basis = str(v["speed_basis"].iloc[0]) if len(v) and "speed_basis" in v.columns else ""
    cards = [card(_fmt_int(int(counts.get(cls, 0))), f"{cls.replace('_', ' ')}: {text}",
                  _FIVE_WAY_CSS.get(cls, "")) for cls, text in FIVE_WAY_TEXT.items()]
    links = [
        (key, f"tables/gaps_{key}.csv", text)
        for key, text in (
            ("fibre_but_slow", "fibre on record but measured below the target"),
            ("fast_without_fibre", "no fibre on record, yet measurement or capability meets"),
        )
        if key in result.gaps
    ]
    return [
        "<h3>Speed classes: capability and measurement</h3>",
        '<div class="cards">' + "".join(cards) + "</div>",
        f"<p>Administrative villages by five-way class. The speed share counts basis "
        f"<code>{_e(basis)}</code> (see the README). Discrepancy lists:</p>\n<ul>",
        *(f'<li><a href="{_e(h)}">{_e(h)}</a> — {_e(x)} ({_fmt_int(len(result.gaps[k]))} '
          "villages)</li>" for k, h, x in links),
        "</ul>",
    ]


def _trend_html(
    result: CoverageResult, figures: tuple[tuple[str, str], ...] | list[tuple[str, str]]
) -> list[str]:
    """The period-by-period section (runs with ``[speed] periods`` only)."""
    trends = getattr(result, "trends", None)
    if not trends:
        return []
    top = next(lv for lv in (*LEVELS, *trends) if lv in trends)
    periods = sorted(set(trends[top]["period"]))
    out = [
        "<h2>Trend by period</h2>",
        f"<p>Periods {_e(', '.join(periods))}; the headline above is {_e(periods[-1])}. Fibre "
        "comes from the fibre inputs, which have no period, so only the speed figures move. "
        + " ".join(f'<a href="tables/trend_{_e(lv)}.csv">trend_{_e(lv)}.csv</a>'
                   for lv in trends) + "</p>",
        html_table(trends[top], ["code", "name", "period", "villages", "fibre_share",
                                 "speed_meets", "speed_share", "tests"]),
    ]
    if figures:
        out.append('<div class="trends">')
        out.extend(
            f'<figure style="display:inline-block;margin:4px"><img src="{_e(src)}" '
            f'alt="{_e(caption)}" width="320"><figcaption>{_e(caption)}</figcaption></figure>'
            for src, caption in figures
        )
        out.append("</div>")
    return out


def add_report_section(path: Path | str, section_id: str, section_html: str) -> None:
    """Put ``<section id="section_id">…</section>`` into an existing ``report.html``.

    For steps that add to a finished run folder (``ruralcov plan``): an earlier section with
    the same id is replaced, otherwise the section goes before the "Files" list (or at the end
    of the body). ``section_html`` must be one complete ``<section id=…>`` element.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    found = re.search(
        rf'<section id="{re.escape(section_id)}">.*?</section>\n?', text, flags=re.DOTALL
    )
    if found:
        text = text[: found.start()] + section_html + "\n" + text[found.end() :]
    else:
        at = text.find("<h2>Files</h2>")
        at = at if at >= 0 else text.rfind("</body>")
        text = text[:at] + section_html + "\n" + text[at:]
    path.write_text(text, encoding="utf-8", newline="\n")


# --------------------------------------------------------------------------- manifest


def _json_value(value: Any) -> Any:
    """Plain JSON-ready values: numpy scalars unwrapped, NaN and NA as None."""
    if isinstance(value, Mapping):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:  # pragma: no cover - all are dependencies
            out[name] = None
    return out


def _applied_records(result: CoverageResult) -> list[dict[str, Any]]:
    """The overrides of the corrections ledger applied in this run (none without a ledger)."""
    applied = getattr(result, "corrections", None)
    return [] if applied is None else applied.to_dict("records")


def build_manifest(
    result: CoverageResult,
    out: Path | str,
    outputs: Mapping[str, str],
    *,
    created: str | None = None,
    staging: Path | None = None,
) -> dict[str, Any]:
    """The manifest of a run folder at ``out`` as a dict.

    ``outputs`` maps each written file's path relative to the run folder to its sha256.
    Input paths inside ``out``, or inside ``staging`` (the temporary folder that becomes
    ``out``, where the demo writes its inputs), are written relative to it (the folder stays
    movable), others absolute as the configuration names them. Raises ``AssertionError`` if an
    input's rows do not balance (read = used + dropped): that is a bug in a reader, not a user
    error.
    """
    from ruralcov import __version__

    out = Path(out)
    roots = [out] + ([staging] if staging is not None else [])
    inputs = []
    for rec in result.inputs:
        dropped = {str(k): int(v) for k, v in rec.dropped.items()}
        if rec.rows_read != rec.rows_used + sum(dropped.values()):
            raise AssertionError(
                f"input {rec.layer} ({rec.path}): rows read {rec.rows_read} != rows used "
                f"{rec.rows_used} + rows dropped {sum(dropped.values())} {dropped}; "
                "this is a bug in ruralcov, please report it"
            )
        inputs.append(
            {
                "layer": rec.layer,
                "path": path_text(Path(rec.path), roots),
                "sha256": rec.sha256,
                "rows_read": int(rec.rows_read),
                "rows_used": int(rec.rows_used),
                "rows_dropped": sum(dropped.values()),
                "dropped": dropped,
            }
        )
    config = result.config
    return {
        "ruralcov_version": __version__,
        "created": created or datetime.now(UTC).isoformat(timespec="seconds"),
        "run_name": config.run.name,
        "profile": config.run.profile,
        "provenance": config.run.provenance,
        "targets": dataclasses.asdict(config.targets),
        "parameters": _json_value(config_to_dict(config, relative_to=roots)),
        "config_sha256": hashlib.sha256(
            json.dumps(
                _json_value(config_to_dict(config, relative_to=roots)), sort_keys=True
            ).encode("utf-8")
        ).hexdigest(),
        "metric_crs": result.metric_crs,
        "inputs": inputs,
        "outputs": dict(sorted(outputs.items())),
        "versions": _versions(),
        "headline": _json_value(dict(result.headline)),
        "corrections": _json_value(_applied_records(result)),
    }


# --------------------------------------------------------------------------- run folder


def _inside(path: Path, root: Path) -> bool:
    return relative_inside(path, root) is not None


#: Top-level entries of a run folder that ``write_run`` writes (and so never keeps).
_OWN_ENTRIES = frozenset(
    {
        "villages.parquet",
        "tables",
        "report.xlsx",
        "maps",
        "charts",
        "report.html",
        "manifest.json",
        "config.toml",
    }
)


def _entries_to_keep(result: CoverageResult, out: Path, extra: Path | None) -> list[Path]:
    """Entries of an existing ``out`` that the new run must carry over.

    That is ``extra`` when it lies inside ``out``, and the top-level folder holding any input
    this result was computed from (``ruralcov run out/demo/config.toml`` reads
    ``out/demo/inputs``; replacing the folder must not delete them).
    """
    if not out.is_dir():
        return []
    keep: list[Path] = []
    if extra is not None and _inside(extra, out):
        keep.append(out / relative_inside(extra, out).split("/")[0])  # type: ignore[union-attr]
    for rec in result.inputs:
        inside = relative_inside(Path(rec.path), out)
        if inside is None or inside == ".":
            continue
        top = out / inside.split("/")[0]
        if top.name in _OWN_ENTRIES:
            raise ConfigError(
                f"input {str(rec.path)!r} lies inside the run folder's own {top.name!r}, "
                "which this run overwrites; move the input out of the run folder"
            )
        if os.path.lexists(top) and top not in keep:
            keep.append(top)
    return keep


def _is_run_folder_or_empty(out: Path, keep: list[Path], *, run_counts: bool = True) -> bool:
    """True when ``out`` is empty apart from ``keep`` (or, with ``run_counts``, is a run)."""
    if run_counts and (out / "manifest.json").is_file():
        return True
    return all(p in keep for p in out.iterdir())


def _link_or_copy(src: str, dst: str) -> None:
    """Hard-link ``src`` to ``dst`` (instant, no space), or copy it where links fail."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _carry_over(entry: Path, target: Path) -> None:
    """Put ``entry`` of the old run into the new one, leaving the old run whole."""
    if entry.is_dir() and not entry.is_symlink():
        shutil.copytree(entry, target, symlinks=True, copy_function=_link_or_copy)
    elif entry.is_symlink():
        os.symlink(os.readlink(entry), target)
    else:
        _link_or_copy(str(entry), str(target))


def _trend_charts(result: CoverageResult, tmp: Path) -> list[tuple[str, str]]:
    """One PNG per county under ``charts/`` (runs with periods only): (src, caption)."""
    trend = (getattr(result, "trends", None) or {}).get("county")
    if trend is None:
        return []
    from ruralcov.trends import write_trend_charts

    made = write_trend_charts(trend, tmp / "charts", fibre_target=result.config.targets.fibre_share)
    return [(f"charts/{name}", caption) for name, caption in made]


def write_skipped_index(folder: Path | str) -> Path:
    """Write the ``maps/index.html`` of a run whose maps were switched off."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "index.html"
    body = (
        "<h1>Maps were skipped</h1>\n<p>This run was made without maps "
        "(<code>[maps] enabled = false</code> or <code>ruralcov run --no-maps</code>). "
        "Draw them later with <code>ruralcov map RUN_DIR</code>; the numbers are in the "
        '<a href="../report.html">report</a>.</p>'
    )
    path.write_text(page("Maps skipped", body), encoding="utf-8", newline="\n")
    return path


def _write_contents(result: CoverageResult, tmp: Path, out: Path, maps: bool, created: str, *,
                    figures: list[tuple[str, str]] | None = None) -> None:
    """Write every file of the run folder into ``tmp`` (which will become ``out``).

    Every file but the maps is a function of ``result``, ``out`` and ``created``, which is
    how ``ruralcov verify`` recomputes a run (``figures``: the static maps the report shows
    when ``maps`` is false and they exist already). Entries already in ``tmp`` (the inputs the
    run carries) are not outputs of the run and are left out of the manifest's ``outputs``.
    ``manifest.json`` is written last, under another name first, so that a folder holding it
    is complete."""
    carried = {p.name for p in tmp.iterdir()}
    # villages.parquet is written by a thread (pyarrow and GEOS work without the GIL) while the
    # tables and the workbook are formatted (Python work); it gets a frame of its own.
    with ThreadPoolExecutor(max_workers=1) as pool:
        parquet = pool.submit(result.villages.copy(deep=False).to_parquet,
                              tmp / "villages.parquet", index=False)
        write_tables(result, tmp / "tables")
        write_xlsx(result, tmp / "report.xlsx", created=created)
        parquet.result()
    maps_dir = tmp / "maps"
    figures = list(figures or [])
    if maps:  # folium is imported only when maps are drawn
        from ruralcov import maps as _maps  # maps builds on this module's HTML helpers

        _maps.write_maps(result, maps_dir)
        figures = _maps.report_figures(maps_dir)
    else:
        write_skipped_index(maps_dir)
    (tmp / "report.html").write_text(
        render_report_html(result, created=created, figures=figures,
                           trend_figures=_trend_charts(result, tmp)),
        encoding="utf-8",
        newline="\n",
    )
    dump_config(result.config, tmp / "config.toml", run_folder=out)
    outputs = {
        p.relative_to(tmp).as_posix(): sha256_file(p)
        for p in sorted(tmp.rglob("*"))
        if p.is_file() and p.relative_to(tmp).parts[0] not in carried
    }
    manifest = build_manifest(result, out, outputs, created=created, staging=tmp)
    part = tmp / "manifest.json.part"
    part.write_text(
        json.dumps(manifest, ensure_ascii=False, indent=2, allow_nan=False) + "\n",
        encoding="utf-8",
    )
    os.replace(part, tmp / "manifest.json")


def write_run(
    result: CoverageResult,
    out: Path | str,
    *,
    maps: bool | None = None,
    extra_inputs: Path | None = None,
    force: bool = False,
    stage: outdir.Staging | None = None,
) -> Path:
    """Write ``result`` as the run folder ``out`` (layout in DESIGN.md) and return its path.

    Parameters
    ----------
    result
        What :func:`ruralcov.analyse` returned.
    out
        The run folder. An existing run folder (one with a ``manifest.json``) is replaced only
        with ``force=True``, and then only once the new one is complete; a non-empty folder
        that is not a run folder is refused even with ``force`` rather than deleted.
    maps
        Draw the maps; ``None`` follows ``result.config.maps.enabled``. When false,
        ``maps/index.html`` only says that maps were skipped.
    extra_inputs
        A folder of inputs written for this run. Inside ``stage`` (the demo writes its inputs
        there) it stays where it is; inside an existing ``out`` it is carried into the new
        folder at the same place (hard-linked or copied: the old run stays whole until the
        swap); elsewhere it is copied to ``<out>/inputs``. It is not listed under ``outputs``
        in the manifest. Inputs the result was computed from that lie inside an existing
        ``out`` (``ruralcov run out/demo/config.toml``) are carried over the same way, even
        without this argument.
    force
        Replace an existing run folder. Without it, a published run is never overwritten by
        accident (``OutputExistsError``); a folder holding only this run's inputs counts as empty.
    stage
        The temporary folder to build in, already made for ``out`` by
        :func:`ruralcov.outdir.staging` (the CLI makes it before the analysis, to find a
        read-only or full disk early); by default one is made here.

    The run folder is locked while it is written (``<out>.lock``; another command writing it
    stops with :class:`~ruralcov.errors.FolderInUseError`), built in a temporary sibling
    ``<out>.tmp-<random>`` and swapped in whole; a failure or a kill at any instant leaves the
    previous run whole, and the next command removes what was left (:mod:`ruralcov.outdir`).
    A file-system error (disk full, read-only, ...) is an :class:`~ruralcov.errors.OutputError`
    naming the file.

    Examples
    --------
    >>> write_run(analyse(load_config("run.toml")), "out/run")  # doctest: +SKIP
    PosixPath('/…/out/run')
    """
    if maps is None:
        maps = result.config.maps.enabled
    extra = outdir.absolute(extra_inputs) if extra_inputs is not None else None
    with outdir.locked(out, command="ruralcov.write_run") as out:
        if extra is not None and not extra.is_dir():
            raise ConfigError(f"extra inputs folder {str(extra)!r} does not exist")
        outdir.preflight(out)  # (not a file)
        keep = _entries_to_keep(result, out, extra)
        if out.exists() and not _is_run_folder_or_empty(out, keep):
            raise ConfigError(
                f"{str(out)!r} exists and is not a ruralcov run folder (no manifest.json); "
                "ruralcov will not delete it. Choose another --out folder or empty this one."
            )
        if out.exists() and not force and not _is_run_folder_or_empty(
            out, keep, run_counts=False
        ):
            raise OutputExistsError(
                f"run folder {str(out)!r} already holds a run; use --force (force=True) to "
                "replace it, or choose another --out folder"
            )
        if stage is not None and stage.out != out:
            raise ValueError(f"stage {stage.tmp} is not for {out}")
        created = datetime.now(UTC).isoformat(timespec="seconds")
        with outdir.staging(out) if stage is None else nullcontext(stage) as stage:
            for entry in keep:
                target = stage.tmp / entry.relative_to(out)
                if not os.path.lexists(target):
                    _carry_over(entry, target)
            if extra is not None and not _inside(extra, out) and not _inside(extra, stage.tmp):
                shutil.copytree(extra, stage.tmp / "inputs")
            _write_contents(result, stage.tmp, out, bool(maps), created)
            stage.commit()
    return out
