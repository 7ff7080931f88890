"""The tables of a run and the one way ruralcov writes a cell of a CSV file or a workbook.

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
- Text that a spreadsheet could read as a formula gets a leading ``'`` (:func:`neutralise`),
  in every CSV and workbook ruralcov writes: the run's tables, the audit, the diff, the plan.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ruralcov import aggregate
from ruralcov.pipeline import CoverageResult
from ruralcov.report.manifest import json_value
from ruralcov.schema import LEVELS, SUMMARY_COLUMNS, VILLAGE_COLUMNS
from ruralcov.validate import ISSUE_FIELDS

__all__ = [
    "FALSE",
    "GAP_TABLES",
    "TRUE",
    "codes_as_text",
    "column_decimals",
    "for_csv",
    "formula_like",
    "headline_figures",
    "is_bool",
    "is_code",
    "neutralise",
    "result_tables",
    "round_column",
    "village_rows",
    "write_csv",
    "write_csv_keeping",
    "write_tables",
]

#: Keys of ``CoverageResult.gaps`` and the CSV each is written to.
GAP_TABLES: dict[str, str] = {
    "no_fibre": "gaps_no_fibre",
    "below_speed": "gaps_below_speed",
    "insufficient_data": "gaps_insufficient_data",
}

#: How a boolean cell reads in every CSV and HTML table.
TRUE, FALSE = "TRUE", "FALSE"


# --------------------------------------------------------------------------- columns


def column_decimals(column: str) -> int | None:
    """Decimals a float column is rounded to in the CSV and HTML tables.

    Parameters
    ----------
    column
        The column's name; its suffix says what it holds.

    Returns
    -------
    int or None
        Decimals, or None to leave the value as it is (a target is written as given).

    Examples
    --------
    >>> [column_decimals(c) for c in ("download_median_mbps", "latency_median_ms",
    ...                               "fibre_share", "fibre_distance_m", "fibre_target")]
    [2, 1, 4, 1, None]
    """
    if column.endswith("_mbps"):
        return 2
    if column.endswith("_ms"):
        return 1
    if "share" in column:
        return 4
    if column.endswith("_m"):
        return 1
    return None


def round_column(column: str, series: pd.Series) -> pd.Series:
    """A float column rounded as every table ruralcov writes rounds it (:func:`column_decimals`);
    any other column as it is.

    Parameters
    ----------
    column
        The column's name.
    series
        Its values.

    Returns
    -------
    pandas.Series
        ``series``, rounded when it holds floats of a rounded kind.

    Examples
    --------
    >>> round_column("download_median_mbps", pd.Series([146.26999999999998])).tolist()
    [146.27]
    """
    decimals = column_decimals(column) if pd.api.types.is_float_dtype(series.dtype) else None
    return series if decimals is None else series.round(decimals)


def is_code(column: str) -> bool:
    """Whether a column holds codes, which are text in every file ruralcov writes.

    Parameters
    ----------
    column
        The column's name (its values are never looked at).

    Returns
    -------
    bool
        True for ``code`` and ``*_code``.

    Examples
    --------
    >>> is_code("village_code"), is_code("code"), is_code("codes")
    (True, True, False)
    """
    return column == "code" or column.endswith("_code")


def is_bool(series: pd.Series) -> bool:
    """Whether a column holds booleans, written ``TRUE``/``FALSE``.

    Parameters
    ----------
    series
        A column.

    Returns
    -------
    bool
        True for a boolean dtype, or an object column whose every present value is a
        boolean (a column read back from a CSV, or one with missing values).
    """
    if pd.api.types.is_bool_dtype(series.dtype):
        return True
    if series.dtype == object:
        values = series.dropna()
        return len(values) > 0 and all(isinstance(v, bool | np.bool_) for v in values)
    return False


def _code_text(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return None
    if isinstance(v, float | np.floating) and float(v).is_integer():
        return str(int(v))
    return str(v)


def codes_as_text(series: pd.Series) -> pd.Series:
    """Codes as text, whatever type a reader gave them.

    Parameters
    ----------
    series
        A column of codes.

    Returns
    -------
    pandas.Series
        Object column of ``str``: integers stored as floats lose their ``.0``; missing
        values are None.

    Examples
    --------
    >>> codes_as_text(pd.Series([140105.0, "0101", None])).tolist()
    ['140105', '0101', None]
    """
    return pd.Series([v if type(v) is str else _code_text(v) for v in series.tolist()],
                     index=series.index, name=series.name, dtype=object)


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy without geometry columns (a GeoDataFrame becomes a DataFrame)."""
    geo = [c for c in frame.columns if str(frame[c].dtype) == "geometry"]
    return pd.DataFrame(frame.drop(columns=geo))


def _ordered(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """Known columns in schema order first, then any extra columns in their own order."""
    known = [c for c in columns if c in frame.columns]
    extra = [c for c in frame.columns if c not in columns]
    return frame.loc[:, known + extra].reset_index(drop=True)


# --------------------------------------------------------------------------- what a run holds


def result_tables(result: CoverageResult) -> dict[str, pd.DataFrame]:
    """Every table of the run folder by name, in the order they are written.

    Parameters
    ----------
    result
        The analysed run (:func:`ruralcov.analyse`); its trends and its corrections ledger
        are tables too when it has them.

    Returns
    -------
    dict
        ``villages``, ``summary_<level>``, ``gaps_*``, ``trend_<level>`` (runs with periods),
        ``issues`` and ``corrections`` (runs with a ledger), unrounded and without geometry.

    Examples
    --------
    >>> list(result_tables(result))  # doctest: +SKIP
    ['villages', 'summary_province', ..., 'gaps_no_fibre', ..., 'issues']
    """
    tables: dict[str, pd.DataFrame] = {}
    tables["villages"] = _ordered(_plain(result.villages), VILLAGE_COLUMNS)
    levels = [lv for lv in LEVELS if lv in result.summaries]
    levels += [lv for lv in result.summaries if lv not in LEVELS]
    for level in levels:
        # speed_share_trend is a map-popup text; the figures are in trend_<level>.csv
        summary = _plain(result.summaries[level]).drop(columns="speed_share_trend", errors="ignore")
        tables[f"summary_{level}"] = _ordered(summary, SUMMARY_COLUMNS)
    for key, name in GAP_TABLES.items():
        gap = result.gaps.get(key)
        if gap is None:
            gap = tables["villages"].iloc[0:0]
        tables[name] = _ordered(_plain(gap), VILLAGE_COLUMNS)
    for key in ("fibre_but_slow", "fast_without_fibre"):  # only with capability records
        if key in result.gaps:
            tables[f"gaps_{key}"] = _ordered(_plain(result.gaps[key]), VILLAGE_COLUMNS)
    for level, trend in (getattr(result, "trends", None) or {}).items():  # ruralcov.trends
        tables[f"trend_{level}"] = _plain(trend).reset_index(drop=True)
    tables["issues"] = _ordered(_plain(result.issues), ISSUE_FIELDS)
    applied = getattr(result, "corrections", None)
    if applied is not None and len(applied):  # the corrections ledger (ruralcov.corrections)
        tables["corrections"] = _plain(applied).reset_index(drop=True)
    return tables


def headline_figures(result: CoverageResult) -> dict[str, Any]:
    """The headline numbers shown in the report and the workbook, over the whole register.

    Derived from ``result.villages`` by the README's definitions, then overridden by any key
    the pipeline put in ``result.headline`` (its numbers are the published ones).

    Parameters
    ----------
    result
        What :func:`ruralcov.analyse` or :func:`ruralcov.runfolder.read_run` returned.

    Returns
    -------
    dict
        ``register_units, villages, villages_with_geometry, fibre_villages, fibre_share,
        fibre_target, fibre_gap_villages, speed_meets, speed_below, speed_insufficient,
        speed_share, communities, communities_speed_meets, communities_speed_share`` and the
        targets ``village_download_mbps``, ``community_download_mbps``, as JSON values.
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
    figures.update({k: json_value(val) for k, val in result.headline.items()})
    return figures


# --------------------------------------------------------------------------- cells

#: First characters that make Excel, WPS or LibreOffice read a cell as a formula (OWASP "CSV
#: injection"), compared after NFKC so that the full-width forms typed with a Chinese input
#: method (``＝``, ``＋``, ``－``, ``＠``) count too, and after leading blanks, which a
#: spreadsheet may trim on import.
_FORMULA_SIGNS = frozenset("=+-@")
#: A cell starting with one of these can start a formula after a re-import (tab, CR, LF).
_CONTROL_START = ("\t", "\r", "\n")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", re.ASCII)  # 0-9 only


def formula_like(text: str) -> bool:
    """Whether a spreadsheet could read a text cell as a formula.

    Parameters
    ----------
    text
        The cell's text.

    Returns
    -------
    bool
        True when it starts with ``=``, ``+``, ``-`` or ``@`` (full-width forms and leading
        blanks included) and is no plain number, or starts with a tab or line break.

    Examples
    --------
    >>> formula_like("=1+1"), formula_like("-3.5"), formula_like(" @x"), formula_like("\\tA")
    (True, False, True, True)
    """
    if text[:1].isalnum():  # most names and codes: no letter or digit is a sign under NFKC
        return False
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
    :func:`for_csv` and :func:`ruralcov.report.xlsx.cell_values`). Only text is touched; a
    text cell that is a plain number (``"-3.5"``, ``"+1"``) stays as it is, since
    spreadsheets read it as that number, never as a formula.

    Parameters
    ----------
    value
        Any cell value.

    Returns
    -------
    object
        ``value``, or ``"'" + value`` for a text that starts like a formula.

    Examples
    --------
    >>> print(neutralise('=HYPERLINK("http://x")'), neutralise("-3.5"), neutralise(-3.5))
    '=HYPERLINK("http://x") -3.5 -3.5
    >>> neutralise("＝1+1"), neutralise(" @evil")
    ("'＝1+1", "' @evil")
    """
    if isinstance(value, str) and formula_like(value):
        return "'" + value
    return value


def _csv_cell(value: Any) -> Any:
    """One cell of an object column as written: booleans ``TRUE``/``FALSE``, numbers and
    missing values as they are, anything else as neutralised text."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, bool | np.bool_):
        return TRUE if value else FALSE
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
    if not any(map(formula_like, [v for v in series.unique() if isinstance(v, str)])):
        return series  # nothing looks like a formula
    return series.map(neutralise, na_action="ignore")


def _csv_column(column: str, series: pd.Series) -> pd.Series:
    """One column as :func:`for_csv` writes it."""
    if is_code(column):
        return _neutralised(codes_as_text(series))
    if series.dtype == np.bool_:
        return pd.Series(np.where(series.to_numpy(), TRUE, FALSE).astype(object),
                         index=series.index, dtype=object)
    if is_bool(series):
        return pd.Series([None if pd.isna(v) else (TRUE if v else FALSE) for v in series],
                         index=series.index, dtype=object)
    if pd.api.types.is_float_dtype(series.dtype):
        return round_column(column, series)
    return _neutralised(series)


def for_csv(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` as every CSV of ruralcov writes it (run tables, plan, audit, diff).

    Parameters
    ----------
    frame
        Any table a command writes as CSV.

    Returns
    -------
    pandas.DataFrame
        A copy with codes as text, booleans ``TRUE``/``FALSE``, floats rounded by column
        (:func:`column_decimals`), and every text cell, the header included, neutralised
        against formula injection (:func:`neutralise`).

    Examples
    --------
    >>> for_csv(pd.DataFrame({"village_code": [1.0], "fibre": [True], "=x": ["@y"]}))
      village_code fibre  '=x
    0            1  TRUE  '@y
    """
    out = frame.copy()
    for col in out.columns:
        out[col] = _csv_column(str(col), out[col])
    out.columns = [neutralise(str(c)) for c in out.columns]
    return out


# --------------------------------------------------------------------------- CSV files


def write_csv(frame: pd.DataFrame, path: Path | str) -> Path:
    """Write ``frame`` through :func:`for_csv` as a CSV file: UTF-8 with BOM, CRLF, no index.

    Parameters
    ----------
    frame
        Any table.
    path
        The file to write.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    for_csv(frame).to_csv(path, index=False, encoding="utf-8-sig", lineterminator="\r\n")
    return path


def village_rows(tables: Mapping[str, pd.DataFrame]) -> dict[str, np.ndarray]:
    """The tables made of whole rows of ``tables["villages"]``, with their positions there.

    The gap lists have the same columns and values as the rows of the villages table they
    list: the writers format a village's row once and place it again in every such table.
    Checked value by value, so a table that differs in any way is written on its own.

    Parameters
    ----------
    tables
        The run's tables by name (:func:`result_tables`), ``villages`` among them.

    Returns
    -------
    dict
        Table name -> positions of its rows in ``tables["villages"]``.
    """
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
    """Write every table of :func:`result_tables` as ``<folder>/<name>.csv``.

    Parameters
    ----------
    result
        What :func:`ruralcov.analyse` returned.
    folder
        The tables folder itself (``<out>/tables`` in a run folder); made when missing.

    Returns
    -------
    list of pathlib.Path
        The files written, as :func:`write_csv` writes them. The gap lists repeat the
        villages' CSV lines, formatted once.
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
            _write_lines(path, lines, pos)
        elif name == "villages" and reuse:
            lines = write_csv_keeping(frame, path, np.concatenate(list(reuse.values())))
        else:
            write_csv(frame, path)
        written.append(path)
    return written


def _write_lines(path: Path, lines: Mapping[int, str], rows: np.ndarray, *,
                 chunk: int = 50_000) -> None:
    """A CSV file of the header (``lines[-1]``) and the lines of ``rows``, a chunk of lines at
    a time (a national gap list is tens of MB of text)."""
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        fh.write(lines[-1] + "\r\n")
        for a in range(0, len(rows), chunk):
            fh.write("".join([lines[p] + "\r\n" for p in rows[a:a + chunk].tolist()]))


def write_csv_keeping(frame: pd.DataFrame, path: Path, keep: np.ndarray, *,
                      chunk: int = 50_000) -> dict[int, str] | None:
    """Write ``frame`` as :func:`write_csv` does, a chunk of rows at a time (made
    :func:`for_csv` a chunk at a time too: the national villages table as Python texts would
    take a gigabyte at once), and return some of its lines.

    Parameters
    ----------
    frame
        The table.
    path
        The file to write.
    keep
        0-based rows whose CSV lines to return.
    chunk
        Rows formatted at a time.

    Returns
    -------
    dict or None
        Row -> its line, and the header at -1; None when a cell holds a line break, so that
        lines are not rows.
    """
    wanted = np.unique(keep)
    kept: dict[int, str] | None = {}
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        for a in range(0, max(len(frame), 1), chunk):
            part = for_csv(frame.iloc[a:a + chunk])  # cell by cell: a chunk as in the whole
            text = part.to_csv(index=False, header=a == 0, lineterminator="\r\n")
            fh.write(text)
            if kept is not None:
                kept = _keep_lines(kept, text, a, len(part), wanted)
    return kept


def _keep_lines(kept: dict[int, str], text: str, a: int, rows: int,
                wanted: np.ndarray) -> dict[int, str] | None:
    """``kept`` with the lines of the chunk ``text`` (rows from ``a``) that are ``wanted``;
    None when the chunk has more lines than rows (a text with a line break)."""
    lines = text.split("\r\n")
    if a == 0:
        kept[-1] = lines.pop(0)
    if len(lines) != rows + 1:
        return None
    for p in wanted[np.searchsorted(wanted, a):np.searchsorted(wanted, a + rows)]:
        kept[int(p)] = lines[p - a]
    return kept


def _same_csv_kinds(table: pd.DataFrame, villages: pd.DataFrame) -> bool:
    """Whether :func:`for_csv` writes every column of ``table`` (rows of ``villages``) as it
    writes ``villages``: it writes an object column of booleans as TRUE/FALSE, which a
    selection of a column that also holds other values can be."""
    return all(is_bool(table[c]) == is_bool(villages[c])
               for c in table.columns if table[c].dtype == object)
