"""The row rules of speed tests and point inputs, each written once.

A rule says which rows it finds, the ``reason`` and message of their issue, whether they are
dropped and how severe the finding is (:data:`RULES`). The rules are numpy functions over
arrays, so that every reader applies the same ones to what it holds:

- :func:`ruralcov.io.read_layer` applies the geometry rules (no coordinates, an unreadable
  geometry, coordinates out of range) to every spatial input, with their messages; the caller
  decides whether such a row is dropped;
- :func:`ruralcov.loaders.load_speed_tests` applies the speed-test rules to a whole file, its
  pandas columns turned into arrays;
- the stream (:mod:`ruralcov.stream`) applies them batch by batch, and the Dask engine
  (:mod:`ruralcov.distributed`) partition by partition through the stream's checker.

A checked row gets a status code: :data:`OK`, or the first rule that rules it out (the
location before the download; a row without a period is reported for that alone).
:func:`speed_issues` turns the rows each rule found into the issues frame, in one order
whatever the engine, so that the three give the same ``issues.csv`` row for row.

Copies of an earlier row are found by two independent 64-bit hashes of each row over every
column and the location (:func:`row_hashes`): two rows are taken as copies when both agree,
which for different rows happens with probability 2^-128.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from ruralcov import presets, units
from ruralcov.config import SpeedConfig
from ruralcov.errors import CRSError, SchemaError, did_you_mean
from ruralcov.sampling import days, sampling_keys, wall_clock_ns
from ruralcov.validate import concat_issues, issue, no_issues, row_issues

__all__ = [
    "OK", "RULES", "STATUS_KEYS", "Rule", "counted", "coordinate_status", "download_status",
    "check_times", "first_copies", "in_range", "measure_values", "out_of_range_error",
    "require_column", "require_sampling_columns", "row_hashes", "rule_issues",
    "speed_issues", "swap_fits", "tally", "text_table", "time_keys",
]

#: Row status codes of checked speed tests (0: usable), in the order the rules apply.
(OK, MISSING, BAD_GEOMETRY, OUT_OF_RANGE, NATIVE_MISSING, BAD_DOWNLOAD, NEGATIVE, ABSURD,
 NO_PERIOD) = range(9)

#: The rule (:data:`RULES` key) of each status code but :data:`OK`.
STATUS_KEYS: dict[int, str] = {
    MISSING: "missing", BAD_GEOMETRY: "bad_geometry", OUT_OF_RANGE: "out_of_range",
    NATIVE_MISSING: "native_missing", BAD_DOWNLOAD: "bad_download", NEGATIVE: "negative",
    ABSURD: "absurd", NO_PERIOD: "no_period",
}


@dataclass(frozen=True)
class Rule:
    """One row rule: the rows it finds make issues with this reason, message and severity.

    ``message`` is a format string over the fields of :func:`message_fields` (the columns
    and the unit of the configuration, the coordinate columns, the CRS read from).
    """

    key: str
    reason: str
    message: str
    dropped: bool = True
    severity: str = "warning"

    def text(self, **fields: str | None) -> str:
        """The message with the run's names filled in.

        Parameters
        ----------
        **fields
            The names the message uses (:func:`message_fields`).

        Returns
        -------
        str
            The issue's message.

        Examples
        --------
        >>> RULE["negative"].text(download="down")
        "'down' is negative"
        """
        return self.message.format(**fields)


#: The message of a missing geometry in a format that stores geometries.
NO_GEOMETRY = "the row has no geometry"
#: The ``missing_period`` issue (:mod:`ruralcov.periods`).
MISSING_PERIOD = "no value in the period column; the test belongs to no period"
#: The ``sampled_out`` issue: a test left out by ``sample = "device_day"``.
SAMPLED_OUT = ("device-day sampling kept another test of this device on this day in this "
               "village")
RANGE = "longitude -180..180 / latitude -90..90"

#: Every rule of a speed-test row, in the order of their issues.
RULES: tuple[Rule, ...] = (
    Rule("native_missing", "missing_geometry", NO_GEOMETRY),
    Rule("missing", "missing_geometry", "no coordinates in {what}"),
    Rule("bad_geometry", "bad_geometry", "cannot read a geometry from {what}"),
    Rule("out_of_range", "coordinates_out_of_range", f"coordinates outside {RANGE} in {{label}}"),
    Rule("absurd", "absurd_speed", "{absurd}"),
    # Exports appended twice or merged from overlapping queries repeat rows; counted twice
    # they would inflate ``tests`` and could lift a village over ``min_tests``.
    Rule("duplicate", "duplicate_test",
         "exact copy of an earlier row (every column and the location); counted once"),
    # Every row without a geometry is one of the reader's findings above; a row that were not
    # would still be dropped, for this reason.
    Rule("no_location", "missing_geometry", "speed test has no location"),
    Rule("bad_download", "bad_download", "{download!r} is missing or not a number"),
    Rule("negative", "negative_speed", "{download!r} is negative"),
    Rule("neg_upload", "negative_upload", "{upload!r} is negative; this value is ignored",
         dropped=False),
    Rule("neg_latency", "negative_latency", "{latency!r} is negative; this value is ignored",
         dropped=False),
    Rule("no_period", "missing_period", MISSING_PERIOD),
    Rule("bad_time", "bad_time", "{time!r} is missing or not a date and time; the test is "
         "kept, outside the device-day sampling", dropped=False),
    Rule("outside", "outside_villages", "{what_test} lies outside every village polygon"),
    Rule("sampled", "sampled_out", SAMPLED_OUT, severity="info"),
)
RULE = {r.key: r for r in RULES}
#: The order of a file's issues: the rules', with the reader's own findings (``reader``:
#: the CRS) before the range rule, and the findings about each optional column (its negative
#: values, or its absence) in the place of its rule.
ORDER = ("native_missing", "missing", "bad_geometry", "reader", "out_of_range", "absurd",
         "duplicate", "no_location", "bad_download", "negative", "upload", "latency", "device",
         "no_period", "bad_time", "outside", "sampled")


def message_fields(speed: SpeedConfig, *, what: str = "", label: str = "") -> dict[str, Any]:
    """The names a rule's message may use.

    Parameters
    ----------
    speed
        The ``[speed]`` section: its columns and download unit.
    what
        The coordinate columns (``lon/lat``), named by the geometry rules.
    label
        The CRS the coordinates were read in, named by the range rule.

    Returns
    -------
    dict
        Field name -> text, for :meth:`Rule.text`.
    """
    return {"what": what, "label": label, "download": speed.download, "upload": speed.upload,
            "latency": speed.latency, "time": speed.time_column, "what_test": "speed test",
            "absurd": units.absurd_message(speed.download, speed.download_unit)}


def rule_issues(key: str, rows: np.ndarray, *, layer: str = "speed",
                **fields: Any) -> pd.DataFrame:
    """One issue per source row found by rule ``key``.

    Parameters
    ----------
    key
        The rule (:data:`RULES`).
    rows
        The 1-based source rows it found (sorted here).
    layer
        The layer of the issues.
    **fields
        The names its message uses (:func:`message_fields`).

    Returns
    -------
    pandas.DataFrame
        The issues, in row order, with the rule's reason, message, severity and ``dropped``.
    """
    rule = RULE[key]
    rows = np.sort(np.asarray(rows, dtype=np.int64))
    return row_issues(np.ones(len(rows), dtype=bool), layer=layer, reason=rule.reason,
                      message=rule.text(**fields), rows=rows, dropped=rule.dropped,
                      severity=rule.severity)


def speed_issues(found: Mapping[str, np.ndarray], *, speed: SpeedConfig,
                 present: Iterable[str], path: Path, what: str = "", label: str = "",
                 reader: pd.DataFrame | None = None) -> pd.DataFrame:
    """The issues of a tests file, in the order of :data:`ORDER` whatever the engine.

    Parameters
    ----------
    found
        Rule key -> source rows it found (rules without rows may be left out).
    speed
        The ``[speed]`` section: the columns and unit the messages name.
    present
        The file's columns: a configured upload, latency or device column it lacks is a
        ``column_absent`` finding.
    path
        The tests file, named by those findings.
    what, label
        The coordinate columns and the CRS read from, named by the geometry rules.
    reader
        Findings of the reader itself: the whole-file reader's geometry and CRS issues
        (:func:`ruralcov.io.read_layer`), or the stream's CRS finding.

    Returns
    -------
    pandas.DataFrame
        The issues (:data:`ruralcov.validate.ISSUE_FIELDS`).
    """
    fields = message_fields(speed, what=what, label=label)
    cols = set(present)
    parts: list[pd.DataFrame] = []
    for key in ORDER:
        if key == "reader":
            parts.append(no_issues() if reader is None else reader)
        elif key in ("upload", "latency", "device"):
            parts.append(_column_part(key, found, speed, cols, path, fields))
        elif key in found:
            parts.append(rule_issues(key, found[key], **fields))
    return concat_issues(parts)


def _column_part(role: str, found: Mapping[str, np.ndarray], speed: SpeedConfig,
                 cols: set[str], path: Path, fields: dict[str, Any]) -> pd.DataFrame:
    """A measure's negative values, or a file-level finding that its column is absent."""
    col = getattr(speed, role)
    if col and col in cols:
        key = f"neg_{role}"
        return rule_issues(key, found[key], **fields) if key in found else no_issues()
    if not col:
        said = presets.note(speed, role)
        return no_issues() if said is None else issue(
            layer="speed", reason="no_device_id", severity="info", message=said)
    if role == "device":
        then = "devices are unknown and min_devices is not applied"
    else:
        then = f"{'upload_mbps' if role == 'upload' else 'latency_ms'} medians are left empty"
    return issue(layer="speed", reason="column_absent", severity="info",
                 message=f"no {role} column {col!r} in {path.name}{did_you_mean(col, cols)}; "
                 f"{then}")


# --- the rules ---------------------------------------------------------------------------------


def coordinate_status(x: np.ndarray, y: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """The geometry rules of coordinates read from two columns.

    Parameters
    ----------
    x, y
        The coordinates as numbers (NaN where a cell is not one).
    missing
        Where a cell is empty.

    Returns
    -------
    numpy.ndarray
        ``int8`` status: :data:`MISSING` where a cell is empty, :data:`BAD_GEOMETRY` where
        one is not a finite number, :data:`OK` otherwise.

    Examples
    --------
    >>> coordinate_status(np.array([1.0, np.nan, np.inf]), np.array([2.0, 3.0, 4.0]),
    ...                   np.array([False, True, False])).tolist()
    [0, 1, 2]
    """
    status = np.zeros(len(x), dtype=np.int8)
    status[missing] = MISSING
    status[~(np.isfinite(x) & np.isfinite(y)) & ~missing] = BAD_GEOMETRY
    return status


def in_range(x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray) -> np.ndarray:
    """The range rule: which geometries' bounds are finite and within range.

    Parameters
    ----------
    x0, y0, x1, y1
        The bounds (for a point: its coordinates twice), in the CRS read into (EPSG:4326).

    Returns
    -------
    numpy.ndarray
        True where the bounds lie within longitude -180..180 and latitude -90..90.

    Examples
    --------
    >>> in_range(*np.array([[112.5, 200.0, np.nan], [37.8, 37.8, 1.0]] * 2)).tolist()
    [True, False, False]
    """
    with np.errstate(invalid="ignore"):
        return (np.isfinite(x0) & np.isfinite(y0) & np.isfinite(x1) & np.isfinite(y1)
                & (x0 >= -180) & (x1 <= 180) & (y0 >= -90) & (y1 <= 90))


def swap_fits(x0: np.ndarray, y0: np.ndarray) -> np.ndarray:
    """Whether exchanging longitude and latitude would bring a geometry into range.

    Parameters
    ----------
    x0, y0
        The lower bounds (for a point: its coordinates).

    Returns
    -------
    numpy.ndarray
        True where ``y0`` is a longitude and ``x0`` a latitude.
    """
    with np.errstate(invalid="ignore"):
        return (np.abs(y0) <= 180) & (np.abs(x0) <= 90)


def out_of_range_error(name: str, *, n_out: int, n_present: int, path: Path | str,
                       label: str, swapped: bool) -> CRSError | None:
    """The error when more than half of the geometries fall out of range: a wrong CRS or
    exchanged axes, not stray rows.

    Parameters
    ----------
    name
        The layer (``speed``, ``fibre[0]``).
    n_out, n_present
        Geometries out of range, and geometries read.
    path
        The file.
    label
        The CRS the coordinates were read in.
    swapped
        Exchanging longitude and latitude would bring every such geometry into range.

    Returns
    -------
    CRSError or None
        The error to raise, naming the likely fix; None when at most half are out of range.
    """
    if not n_out or n_out * 2 <= n_present:
        return None
    hint = (
        "longitude and latitude look swapped: exchange the lon and lat settings"
        if swapped
        else "the coordinates are probably projected (metres) but declared as "
        f'{label}: set crs to the projected CRS, e.g. "EPSG:4549" (CGCS2000 / '
        f"3-degree Gauss-Kruger CM 120E), or check that lon and lat are not swapped"
    )
    return CRSError(
        f"{name}: {n_out} of {n_present} geometries in {path} fall outside {RANGE} after "
        f"converting from {label}; {hint}"
    )


def download_status(status: np.ndarray, download: np.ndarray) -> None:
    """The download rules, applied in place to the rows with a usable location.

    Parameters
    ----------
    status
        Each row's status so far; rows still :data:`OK` become :data:`BAD_DOWNLOAD` (missing
        or not a number), :data:`NEGATIVE` or :data:`ABSURD` (:func:`ruralcov.units.absurd`).
    download
        Each row's download in Mbit/s.
    """
    geom_ok = status == OK
    with np.errstate(invalid="ignore"):
        status[geom_ok & np.isnan(download)] = BAD_DOWNLOAD
        status[geom_ok & (download < 0)] = NEGATIVE
        status[geom_ok & units.absurd(download)] = ABSURD


def counted(status: np.ndarray) -> np.ndarray:
    """Rows with a location and a numeric, non-negative download (usable or absurd): the
    unit check's rows, and those whose negative upload or latency is reported.

    Parameters
    ----------
    status
        Each row's status.

    Returns
    -------
    numpy.ndarray
        A boolean mask.
    """
    return (status == OK) | (status == ABSURD)


def tally(download: np.ndarray, status: np.ndarray) -> units.SpeedTally:
    """The unit check's counts of checked rows (a file, a batch or a Dask partition).

    Parameters
    ----------
    download, status
        Each row's download (Mbit/s) and status.

    Returns
    -------
    ruralcov.units.SpeedTally
        The counts of the :func:`counted` rows.
    """
    return units.SpeedTally.of(download, counted(status))


def measure_values(values: np.ndarray, status: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The negative-measure rule of an upload or latency column.

    Parameters
    ----------
    values
        The column as numbers (upload in Mbit/s, latency in milliseconds).
    status
        Each row's status.

    Returns
    -------
    values, negative
        The values with negatives left empty, and the :func:`counted` rows whose value is
        negative (reported; the row is kept).
    """
    with np.errstate(invalid="ignore"):
        neg = values < 0
    return np.where(neg, np.nan, values), neg & counted(status)


def require_column(speed: SpeedConfig, key: str, columns: Iterable[str]) -> None:
    """Stop when the tests file lacks a column the ``[speed]`` section names.

    Parameters
    ----------
    speed
        The ``[speed]`` section.
    key
        The setting naming the column (``download``, ``period``).
    columns
        The file's columns.

    Raises
    ------
    SchemaError
        Naming the closest column and the setting to change.
    """
    cols, column = list(columns), getattr(speed, key)
    if column not in cols:
        raise SchemaError(
            f"speed: {key} column {column!r} not found in {speed.path}"
            f"{did_you_mean(column, cols)}; "
            f'the file has {cols[:20]}. Set {key} = "..." in [speed]'
        )


def require_sampling_columns(s: SpeedConfig, columns: Iterable[str], path: Path) -> None:
    """Stop when the file lacks the device or time column ``statistic`` / ``sample`` need.

    Parameters
    ----------
    s
        The ``[speed]`` section.
    columns
        The file's columns.
    path
        The file.

    Raises
    ------
    SchemaError
        Naming the setting that needs the column.
    """
    columns = list(columns)
    needs = [("device", s.device, 'statistic = "device_median"' if s.by_device else None),
             ("device", s.device, 'sample = "device_day"' if s.time_column else None),
             ("time", s.time_column, 'sample = "device_day"' if s.time_column else None)]
    for key, column, why in needs:
        if why and column not in columns:
            raise SchemaError(
                f"speed: {why} needs the {key} column {column!r}, not found in {path}"
                f"{did_you_mean(column, columns)}; the file has {columns[:20]}. "
                f'Set {key} = "..." in [speed]'
            )


def time_keys(values: Any, speed: SpeedConfig, download: np.ndarray,
              upload: np.ndarray | None, latency: np.ndarray | None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What device-day sampling needs of each test (:mod:`ruralcov.sampling`).

    Parameters
    ----------
    values
        The time column.
    speed
        The ``[speed]`` section (the seed).
    download, upload, latency
        The measures the sampling key hashes (upload and latency may be None).

    Returns
    -------
    day, day_ok, key
        The day number, whether the time was readable, and the sampling key.
    """
    column = speed.time_column or ""
    ns, day_ok = wall_clock_ns(values, column=column)
    return days(ns), day_ok, sampling_keys(ns, download, upload, latency, seed=speed.seed or 0)


def check_times(timed: int, untimed: int, *, speed: SpeedConfig) -> None:
    """Stop when the usable rows have times but none reads as one: the time column holds
    something else, and sampling would silently keep every test.

    Parameters
    ----------
    timed, untimed
        Usable rows with a readable time, and without one.
    speed
        The ``[speed]`` section (its file and time column).

    Raises
    ------
    SchemaError
        When ``untimed`` but not ``timed``.
    """
    if untimed and not timed:
        raise SchemaError(
            f"speed: no value of the time column {speed.time_column!r} in {speed.path} reads "
            "as a date and time; give ISO 8601 text such as 2024-03-01T07:30:00 or a "
            'timestamp column, or set time = "..." in [speed]')


# --- copies of an earlier row ------------------------------------------------------------------

_NA = np.uint64(0x5A5A5A5A5A5A5A5A)  # the key of a missing cell (_kernels._NA_KEY)
_HASH_KEYS = ("0123456789123456", "ruralcov-dup-key")


def _kernels() -> Any:
    from ruralcov import _kernels

    return _kernels


def column_keys(col: pa.Array, key: str) -> np.ndarray:
    """64-bit values standing for a column's cells, for the row hashes.

    Parameters
    ----------
    col
        The column.
    key
        The hash key of text cells (each of the two row hashes has its own).

    Returns
    -------
    numpy.ndarray
        ``uint64``: equal cells, equal values (numbers by their bits, text hashed); missing
        cells (null or NaN) one value, as a comparison of the cells as text would have it.
    """
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        if pa.types.is_floating(col.type):
            v = col.cast(pa.float64()).to_numpy(zero_copy_only=False)
            bits = v.view(np.uint64).copy()
            bits[np.isnan(v)] = _NA
        else:
            bits = col.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False).view(
                np.uint64).copy()
        if col.null_count:
            bits[col.is_null().to_numpy(zero_copy_only=False)] = _NA
        return bits
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
            or pa.types.is_dictionary(col.type)):
        col = pc.cast(col, pa.string())
    if not pa.types.is_dictionary(col.type):
        col = pc.dictionary_encode(col)
    words = col.dictionary.to_numpy(zero_copy_only=False).astype(object)
    hashed = pd.util.hash_array(words, hash_key=key, categorize=False) if len(words) else (
        np.zeros(1, np.uint64))
    out = hashed[col.indices.fill_null(0).to_numpy(zero_copy_only=False)]
    if col.null_count:
        out[col.is_null().to_numpy(zero_copy_only=False)] = _NA
    return out


def row_hashes(table: pa.Table, rows: np.ndarray, *, geometry: str | None = None,
               x: np.ndarray | None = None, y: np.ndarray | None = None,
               other: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Two independent 64-bit hashes of every column of some rows: the duplicate rule's key.

    Parameters
    ----------
    table
        The rows' columns.
    rows
        A mask of the rows to hash.
    geometry
        A WKB column that is not hashed as such: the location as read (after any CRS
        conversion) is, as ``x``/``y`` (NaN for non-points) and, for the non-point
        geometries in ``other``, their WKB.
    x, y, other
        That location, for every row of ``table``.

    Returns
    -------
    h1, h2
        ``uint64`` hashes of the selected rows.
    """
    k = _kernels()
    sel = np.flatnonzero(rows)
    every = len(sel) == table.num_rows
    take = None if every else pa.array(sel)
    h = [np.zeros(len(sel), dtype=np.uint64) for _ in _HASH_KEYS]
    for i, name in enumerate(table.column_names):
        if name == geometry:
            continue
        col = table.column(name).combine_chunks()
        col = col if every else col.take(take)
        if col.null_count == 0 and (pa.types.is_float64(col.type)
                                    or pa.types.is_int64(col.type)):
            # both hashes in one pass over the column's own buffer, with the same keys
            k.fold_both(h[0], h[1], col.to_numpy(zero_copy_only=True).view(np.uint64),
                        pa.types.is_float64(col.type), i, 1000 + i)
            continue
        numeric = pa.types.is_integer(col.type) or pa.types.is_floating(col.type)
        keys = column_keys(col, _HASH_KEYS[0]) if numeric else None  # the same for both
        for seed, key in enumerate(_HASH_KEYS):
            k.fold(h[seed], keys if numeric else column_keys(col, key), seed * 1000 + i)
    if geometry and x is not None and y is not None:
        _fold_location(h, sel, x, y, other)
    return h[0], h[1]


def _fold_location(h: list[np.ndarray], sel: np.ndarray, x: np.ndarray, y: np.ndarray,
                   other: np.ndarray | None) -> None:
    """Fold the location of the selected rows into both hashes."""
    k = _kernels()
    gx, gy = x[sel].view(np.uint64), y[sel].view(np.uint64)
    for seed, key in enumerate(_HASH_KEYS):
        hx = gx
        if other is not None and (other[sel] != None).any():  # noqa: E711
            wkb = shapely.to_wkb(other[sel], hex=True)
            hx = gx ^ pd.util.hash_array(wkb.astype(object), hash_key=key)
        k.fold(h[seed], np.ascontiguousarray(hx), seed * 1000 + 998)
        k.fold(h[seed], np.ascontiguousarray(gy), seed * 1000 + 999)


def first_copies(h1: np.ndarray, h2: np.ndarray) -> np.ndarray:
    """The duplicate rule over row hashes: which rows copy an earlier one.

    Parameters
    ----------
    h1, h2
        Each row's hashes (:func:`row_hashes`), in row order.

    Returns
    -------
    numpy.ndarray
        True for each row whose hash pair an earlier row has (the first of a group is kept).

    Examples
    --------
    >>> first_copies(np.array([1, 2, 1, 1], np.uint64), np.array([5, 5, 5, 6], np.uint64))
    array([False, False,  True, False])
    """
    if len(h1) < 2:
        return np.zeros(len(h1), dtype=bool)
    size = 1 << int(np.ceil(np.log2(2 * len(h1))))
    return _kernels().first_seen(np.ascontiguousarray(h1, np.uint64),
                                 np.ascontiguousarray(h2, np.uint64), np.empty(size, np.uint64),
                                 np.empty(size, np.uint64), np.zeros(size, np.bool_))


def text_table(frame: pd.DataFrame, geometries: np.ndarray) -> pa.Table:
    """The cells a copy must repeat, from a frame read whole.

    Parameters
    ----------
    frame
        The attribute columns.
    geometries
        Each row's geometry.

    Returns
    -------
    pyarrow.Table
        Every column as text and the geometry as hex WKB: :func:`row_hashes` over this is the
        loader's duplicate rule (as a comparison of the cells as text).
    """
    geoms = np.asarray(geometries, dtype=object)
    present = ~pd.isna(geoms)
    wkb = np.full(len(geoms), None, dtype=object)
    wkb[present] = shapely.to_wkb(geoms[present], hex=True)
    cols = {f"c{i}": pa.array(frame[c].astype("string"), type=pa.string())
            for i, c in enumerate(frame.columns)}
    return pa.table({**cols, "wkb": pa.array(wkb, type=pa.string())})
