"""Per-device statistics and one-test-per-device-per-day sampling of speed tests.

A few heavy testers can dominate a village's tests. Two ``[speed]`` settings limit their weight,
and both engines (:mod:`ruralcov.stream`, the whole-file loader through
:func:`ruralcov.classify.speed_statistics`, and the Dask engine) apply them identically:

``statistic = "device_median"``
    the median download of each device's tests first, then the median across devices (the way
    the US broadband challenge process scores a location from several tests); the 95 % interval
    is the order-statistic interval over the device medians. Upload and latency likewise. A test
    without a device id counts as a device of its own. ``tests``, ``devices`` and
    ``share_tests_at_target`` stay counts of tests.

``sample = "device_day"``
    one test per device per calendar day in each village (as M-Lab samples its tests), before
    any statistic. Among a device's tests of one day the kept one has the smallest *sampling
    key*, a 64-bit hash of the seed and the test's own time, download, upload and latency, so
    the choice depends neither on file order nor on batch sizes, and another ``seed`` draws
    another sample. Tests of one device with the same time and speeds (ties) keep the earlier
    row. The day is the calendar date of the time as written (a time with a UTC offset keeps its
    local date; a timestamp column with a time zone is read in that zone). Tests without a
    device id or a readable time are kept unsampled (the latter recorded as ``bad_time``); the
    others left out are recorded as ``sampled_out`` (dropped, one issue per row).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ruralcov.config import SAMPLES, STATISTICS
from ruralcov.errors import SchemaError

__all__ = ["STATISTICS", "SAMPLES", "wall_clock_ns", "sampling_keys", "device_day_keep", "days"]

_DAY_NS = 86_400 * 10**9
#: A time followed by a UTC offset or ``Z``: the offset is removed so that the date and time
#: are the ones written.
_OFFSET = r"^(.*\d:\d\d(?::\d\d(?:[.,]\d+)?)?)\s*(?:Z|[+-]\d\d(?::?\d\d)?)$"
_NAN_BITS = np.uint64(0x7FF8000000000001)


def wall_clock_ns(values: pa.Array | pa.ChunkedArray | pd.Series, *, column: str
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Local wall-clock time of each cell in nanoseconds since 1970-01-01, and validity.

    Accepts timestamp and date columns (a time zone is honoured: the local time in that zone),
    and text in ISO 8601 (``2024-03-01``, ``2024-03-01 07:30``, ``2024-03-01T07:30:00+08:00``;
    an offset is dropped, keeping the time as written). Unreadable cells are invalid.

    Parameters
    ----------
    values
        The time column.
    column
        Its name, for the error message.

    Returns
    -------
    time_ns, valid
        ``int64`` nanoseconds (0 where invalid) and the valid cells.

    Raises
    ------
    SchemaError
        For a column of another type (numbers, say).

    Examples
    --------
    >>> ns, ok = wall_clock_ns(pd.Series(["2024-03-01T07:30:00+08:00", "soon"]), column="t")
    >>> days(ns).tolist(), ok.tolist()
    ([19783, 0], [True, False])
    """
    if isinstance(values, pd.Series):
        values = pa.array(values, from_pandas=True) if len(values) else pa.array([], pa.null())
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    t = arr.type
    if pa.types.is_dictionary(t):
        arr, t = arr.cast(t.value_type), t.value_type
    if pa.types.is_timestamp(t):
        if t.tz is not None:
            arr = pc.local_timestamp(arr)
        ns = arr.cast(pa.timestamp("ns"), safe=False)
    elif pa.types.is_date(t):
        ns = arr.cast(pa.timestamp("ns"))
    elif pa.types.is_null(t):
        ns = pa.nulls(len(arr), pa.timestamp("ns"))
    elif pa.types.is_string(t) or pa.types.is_large_string(t):
        text = pc.replace_substring_regex(pc.utf8_trim_whitespace(arr), _OFFSET, r"\1")
        parsed = pd.to_datetime(pd.Series(text.to_pandas(), dtype=object), format="ISO8601",
                                errors="coerce")
        ns = pa.array(parsed.astype("datetime64[ns]"), from_pandas=True)
    else:
        raise SchemaError(f"speed: time column {column!r} holds {t} values; give dates and times "
                          "as ISO 8601 text (2024-03-01T07:30:00) or as a timestamp column")
    valid = ns.is_valid().to_numpy(zero_copy_only=False)
    out = ns.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
    return np.asarray(out, dtype=np.int64), valid


def days(time_ns: np.ndarray) -> np.ndarray:
    """Calendar day number of wall-clock times.

    Parameters
    ----------
    time_ns
        Nanoseconds since 1970-01-01 (:func:`wall_clock_ns`).

    Returns
    -------
    numpy.ndarray
        Days since 1970-01-01.
    """
    return np.floor_divide(np.asarray(time_ns, dtype=np.int64), _DAY_NS)


def _bits(values: np.ndarray | None, n: int) -> np.ndarray:
    if values is None:
        return np.full(n, _NAN_BITS, dtype=np.uint64)
    v = np.ascontiguousarray(values, dtype=np.float64)
    bits = v.view(np.uint64).copy()
    bits[np.isnan(v)] = _NAN_BITS
    return bits


def sampling_keys(time_ns: np.ndarray, download: np.ndarray, upload: np.ndarray | None,
                  latency: np.ndarray | None, *, seed: int) -> np.ndarray:
    """The 64-bit sampling key of each test: a hash of the seed and the test's own values.

    Parameters
    ----------
    time_ns
        Each test's wall-clock time (:func:`wall_clock_ns`).
    download, upload, latency
        Its measures (upload and latency may be None).
    seed
        The ``[speed] seed``: another seed draws another sample.

    Returns
    -------
    numpy.ndarray
        ``uint64`` keys; among a device's tests of one day the smallest is kept.
    """
    from ruralcov import _kernels

    n = len(download)
    h = np.full(n, np.uint64(seed & 0xFFFFFFFFFFFFFFFF), dtype=np.uint64)
    _kernels.combine(h, np.ascontiguousarray(time_ns, dtype=np.int64).view(np.uint64), 1)
    for i, values in enumerate((download, upload, latency)):
        _kernels.combine(h, _bits(values, n), 2 + i)
    return h


def device_day_keep(village: np.ndarray, device: np.ndarray, device_ok: np.ndarray,
                    day: np.ndarray, day_ok: np.ndarray, key: np.ndarray) -> np.ndarray:
    """True for the tests kept by ``device_day`` sampling (rows in source order).

    A plain pandas formulation, used by the whole-file path; the stream computes the same
    with a numba kernel village by village.

    Parameters
    ----------
    village
        Each test's village position (-1: outside every village, kept).
    device, device_ok
        Each test's device code and whether it has one (tests without one are kept).
    day, day_ok
        Each test's day number and whether its time was readable (unreadable: kept).
    key
        Each test's sampling key (:func:`sampling_keys`).

    Returns
    -------
    numpy.ndarray
        True for the kept tests.
    """
    n = len(village)
    keep = np.ones(n, dtype=bool)
    pick = np.flatnonzero((np.asarray(village) >= 0) & np.asarray(device_ok, bool)
                          & np.asarray(day_ok, bool))
    if not len(pick):
        return keep
    frame = pd.DataFrame({"v": np.asarray(village)[pick], "d": np.asarray(device)[pick],
                          "day": np.asarray(day)[pick], "k": np.asarray(key)[pick],
                          "row": pick})
    frame = frame.sort_values(["v", "d", "day", "k", "row"], kind="stable")
    first = ~frame.duplicated(["v", "d", "day"], keep="first")
    keep[frame["row"].to_numpy()[~first.to_numpy()]] = False
    return keep
