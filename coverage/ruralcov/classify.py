"""Per-village statistics and the rules that turn them into classes.

Speed statistics are exact: medians are computed from the sorted values of each village, and
the 95 % interval of the median is distribution-free, from order statistics: with ``n`` tests the
interval is ``[x_(l), x_(n-l+1)]`` where ``l`` is the largest rank with
``P(Binomial(n, 1/2) < l) <= 0.025``, so that it covers the true median with at least 95 %
probability whatever the distribution of speeds. With 5 tests or fewer no such interval exists
and the bounds are left empty.
"""

from __future__ import annotations

import functools
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from ruralcov.schema import SPEED_CLASSES


def median_ci_ranks(n: ArrayLike, *, confidence: float = 0.95) -> tuple[NDArray, NDArray]:
    """1-based ranks ``(l, u)`` of the order statistics bounding the median (as the module
    docstring says).

    Parameters
    ----------
    n
        Numbers of values (tests) per group, any shape.
    confidence
        Coverage of the interval; 0.95 is read from ``median_ranks.bin`` below
        :data:`TABULATED`, anything else computed (:func:`binomial_ranks`).

    Returns
    -------
    tuple of numpy.ndarray
        ``l`` and ``u`` in the shape of ``n``; both 0 where no interval exists (5 values or
        fewer at 95 %).

    Examples
    --------
    >>> median_ci_ranks([5, 6, 10, 100])
    (array([ 0,  1,  2, 40]), array([ 0,  6,  9, 61]))
    """
    n = np.asarray(n, dtype=np.int64)
    counts, where = np.unique(n, return_inverse=True)  # villages share counts: once each
    lo = np.zeros(len(counts), np.int64)
    small = (counts >= 0) & (counts < TABULATED) & (confidence == 0.95)
    lo[small] = rank_table()[counts[small]]
    if not small.all():
        lo[~small] = binomial_ranks(counts[~small], confidence=confidence)
    hi = np.where(lo > 0, counts - lo + 1, 0)
    return lo[where].reshape(n.shape), hi[where].reshape(n.shape)


#: Counts below this have their 95 % ranks from :data:`RANK_FILE` (see :func:`rank_file_bytes`).
TABULATED = 1 << 20
#: ``median_ranks.bin``, shipped with the package.
RANK_FILE = Path(__file__).with_name("median_ranks.bin")


@functools.cache
def rank_table() -> NDArray[np.int64]:
    """The 95 % ranks of :data:`RANK_FILE`, read once per process.

    Returns
    -------
    numpy.ndarray
        ``l`` of the 95 % interval (:func:`median_ci_ranks`) for every count below
        :data:`TABULATED`, indexed by the count.
    """
    steps = np.unpackbits(np.frombuffer(zlib.decompress(RANK_FILE.read_bytes()), np.uint8))
    return np.concatenate([[0], np.cumsum(steps[:TABULATED - 1], dtype=np.int64)])


def rank_file_bytes() -> bytes:
    """The contents of :data:`RANK_FILE`, computed: the 95 % ranks of every count below
    :data:`TABULATED`.

    ``l`` rises by 0 or 1 from one count to the next, so the steps are stored as bits
    (zlib-compressed, 4 kB). The ranks come from scipy's binomial quantile
    (:func:`binomial_ranks`); tabulated, runs import scipy (a slow import) only for villages
    of a million tests or more. Written by
    ``python -c "import ruralcov.classify as c; c.write_rank_file()"``.

    Returns
    -------
    bytes
        The file's contents.
    """
    lo = binomial_ranks(np.arange(TABULATED), confidence=0.95)
    steps = np.diff(lo)
    if steps.min() < 0 or steps.max() > 1:  # pragma: no cover - not for a binomial(n, 1/2)
        raise AssertionError("ranks do not rise by 0 or 1")
    return zlib.compress(np.packbits(steps.astype(np.uint8)).tobytes(), 9)


def write_rank_file() -> None:  # pragma: no cover - run by hand (see rank_file_bytes)
    """Write :func:`rank_file_bytes` to :data:`RANK_FILE`."""
    RANK_FILE.write_bytes(rank_file_bytes())


def binomial_ranks(n: NDArray[np.int64], *, confidence: float) -> NDArray[np.int64]:
    """``l`` of :func:`median_ci_ranks`, from the binomial quantile.

    Parameters
    ----------
    n
        Numbers of values per group.
    confidence
        Coverage of the interval (0.95: 95 %).

    Returns
    -------
    numpy.ndarray
        The 1-based rank ``l`` per count; 0 where the interval does not exist.
    """
    try:  # scipy.stats' own binomial ufuncs (boost), without importing scipy.stats
        from scipy.special._ufuncs import _binom_cdf, _binom_ppf
    except ImportError:  # pragma: no cover - a scipy that moved them
        from scipy.stats import binom

        _binom_cdf, _binom_ppf = binom.cdf, binom.ppf

    alpha = (1.0 - confidence) / 2.0
    m = np.maximum(n, 1).astype(np.float64)

    def cdf(k: NDArray) -> NDArray:  # P(B <= k), 0 below 0 (binom.cdf)
        return np.where(k >= 0, _binom_cdf(np.floor(np.maximum(k, 0)), m, 0.5), 0.0)

    # ppf gives the smallest k with P(B <= k) >= alpha, so P(B <= k - 1) < alpha:
    # taking l = k leaves at most alpha below x_(l). Above, u = n - l + 1 by symmetry.
    lo = np.where(n > 0, _binom_ppf(alpha, m, 0.5), 0).astype(np.int64)
    ok = (lo >= 1) & (cdf(lo - 1) <= alpha)
    return np.where(ok, lo, 0)


def _sorted_groups(
    groups: NDArray[np.intp], values: NDArray[np.float64], n_groups: int
) -> tuple[NDArray[np.float64], NDArray[np.intp], NDArray[np.intp]]:
    """Values sorted within groups (NaN and group -1 left out), with group starts and counts."""
    keep = (groups >= 0) & ~np.isnan(values)
    g, v = groups[keep], values[keep]
    order = np.lexsort((v, g))
    counts = np.bincount(g, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return v[order], starts, counts


def _pick(sorted_values: NDArray, starts: NDArray, ranks: NDArray) -> NDArray[np.float64]:
    """Value of 1-based ``ranks`` within each group; NaN where the rank is 0."""
    out = np.full(len(starts), np.nan)
    ok = ranks > 0
    out[ok] = sorted_values[starts[ok] + ranks[ok] - 1]
    return out


def group_median(
    groups: ArrayLike, values: ArrayLike, *, n_groups: int
) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """Exact median of ``values`` per group (mean of the two middle values for even counts).

    Parameters
    ----------
    groups
        Group position of each value (-1: none; left out).
    values
        The values; NaN values are left out.
    n_groups
        Number of groups: the results have one element per group position.

    Returns
    -------
    tuple of numpy.ndarray
        The medians (NaN for a group without values) and the number of values per group.

    Examples
    --------
    >>> group_median([0, 0, 0, 0, 1, -1], [4.0, 1.0, 3.0, 2.0, float("nan"), 9.0], n_groups=2)
    (array([2.5, nan]), array([4, 0]))
    """
    v, starts, counts = _sorted_groups(np.asarray(groups), np.asarray(values, float), n_groups)
    low = np.where(counts > 0, (counts + 1) // 2, 0)
    high = np.where(counts > 0, counts // 2 + 1, 0)
    high = np.where(counts % 2 == 1, low, high)
    return (_pick(v, starts, low) + _pick(v, starts, high)) / 2.0, counts


def speed_statistics(
    village: ArrayLike,
    download: ArrayLike,
    *,
    n_villages: int,
    target_mbps: ArrayLike,
    upload: ArrayLike | None = None,
    latency: ArrayLike | None = None,
    device: ArrayLike | None = None,
    statistic: str = "median",
) -> pd.DataFrame:
    """Per-village speed statistics from individual tests.

    Exact, as the module docstring says: medians from the sorted values of each village, the
    interval from order statistics.

    Parameters
    ----------
    village
        Position of each test's village (-1: none; such tests are ignored).
    download, upload, latency
        Per-test values; NaN values are left out of that measure only.
    n_villages
        Number of villages; the result has one row per village position.
    target_mbps
        The download target of each village (rural or urban), for the share at target.
    device
        Per-test device identifier; ``devices`` is the number of distinct ones (NaN if absent).
    statistic
        ``median`` (of tests) or ``device_median``: the medians, interval, upload and latency
        over the per-device medians (a test without a device id is a device of its own);
        see :mod:`ruralcov.sampling`.

    Returns
    -------
    pandas.DataFrame
        One row per village position: ``tests``, ``devices``, ``download_median_mbps``,
        ``download_ci_low_mbps``, ``download_ci_high_mbps``, ``upload_median_mbps``,
        ``latency_median_ms`` and ``share_tests_at_target``.
    """
    village = np.asarray(village, dtype=np.intp)
    download = np.asarray(download, dtype=float)
    target = np.asarray(target_mbps, dtype=float)
    v, starts, tests = _sorted_groups(village, download, n_villages)
    lo, hi = median_ci_ranks(tests)
    median, _ = group_median(village, download, n_groups=n_villages)
    inside = (village >= 0) & ~np.isnan(download)
    at_target = np.bincount(
        village[inside],
        weights=(download[inside] >= target[village[inside]]).astype(float),
        minlength=n_villages,
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(tests > 0, at_target / np.maximum(tests, 1), np.nan)
    out = pd.DataFrame(
        {
            "tests": tests.astype(np.int64),
            "devices": np.nan,
            "download_median_mbps": median,
            "download_ci_low_mbps": _pick(v, starts, lo),
            "download_ci_high_mbps": _pick(v, starts, hi),
            "upload_median_mbps": np.nan,
            "latency_median_ms": np.nan,
            "share_tests_at_target": share,
        }
    )
    if upload is not None:
        out["upload_median_mbps"] = group_median(village, upload, n_groups=n_villages)[0]
    if latency is not None:
        out["latency_median_ms"] = group_median(village, latency, n_groups=n_villages)[0]
    out["devices"] = (
        pd.NA if device is None else _device_counts(village, inside, device, n_villages)
    )
    if statistic == "device_median" and device is not None:
        by_device = _device_level(village, download, upload, latency, device, n_villages, target)
        for col in ("download_median_mbps", "download_ci_low_mbps", "download_ci_high_mbps",
                    "upload_median_mbps", "latency_median_ms"):
            out[col] = by_device[col].to_numpy()
    return out


def _device_counts(
    village: NDArray, inside: NDArray, device: ArrayLike, n_villages: int
) -> pd.arrays.IntegerArray:
    """Distinct device ids per village among its tests with a download (``inside``)."""
    codes, _ = pd.factorize(pd.Series(np.asarray(device, dtype=object)), use_na_sentinel=True)
    known = inside & (codes >= 0)
    pairs = pd.DataFrame({"v": village[known], "d": codes[known]}).drop_duplicates()
    return pd.array(np.bincount(pairs["v"].to_numpy(), minlength=n_villages), dtype="Int64")


def _device_level(village: NDArray, download: NDArray, upload: ArrayLike | None,
                  latency: ArrayLike | None, device: ArrayLike, n_villages: int,
                  target: NDArray) -> pd.DataFrame:
    """:func:`speed_statistics` over one value per (village, device): its tests' median."""
    codes, _ = pd.factorize(pd.Series(np.asarray(device, dtype=object)), use_na_sentinel=True)
    unknown = codes < 0  # a test without a device id is a device of its own
    codes = codes.astype(np.int64)
    codes[unknown] = codes.max(initial=-1) + 1 + np.arange(int(unknown.sum()))
    inside = np.flatnonzero(village >= 0)
    pair, first = np.unique(np.stack([village[inside], codes[inside]]), axis=1,
                            return_inverse=True)[0:2]
    group = np.full(len(village), -1, dtype=np.intp)
    group[inside] = first.ravel()
    n_groups = pair.shape[1]

    def medians(values: ArrayLike | None) -> NDArray | None:
        return None if values is None else group_median(group, values, n_groups=n_groups)[0]

    return speed_statistics(pair[0], medians(download), n_villages=n_villages,
                            target_mbps=target, upload=medians(upload),
                            latency=medians(latency))


def speed_class(
    tests: ArrayLike,
    devices: ArrayLike,
    median_mbps: ArrayLike,
    target_mbps: ArrayLike,
    *,
    min_tests: int,
    min_devices: int,
) -> NDArray[np.object_]:
    """``meets`` / ``below`` / ``insufficient_data`` for each village.

    Evidence is enough with at least ``min_tests`` tests and ``min_devices`` distinct devices;
    where devices are unknown (no device column) only the test count is checked.

    Parameters
    ----------
    tests, devices
        Per village: the number of tests and of distinct devices (NA: devices unknown).
    median_mbps
        Per village: the median download (NaN: none).
    target_mbps
        Per village: the download target it is held to.
    min_tests, min_devices
        The least evidence a class other than ``insufficient_data`` needs.

    Returns
    -------
    numpy.ndarray
        One of :data:`~ruralcov.schema.SPEED_CLASSES` per village (object array).

    Examples
    --------
    >>> speed_class([10, 10, 2], [5, 5, 2], [20.0, 8.0, 50.0], [12, 12, 12],
    ...             min_tests=5, min_devices=3).tolist()
    ['meets', 'below', 'insufficient_data']
    """
    tests = np.asarray(tests, dtype=float)
    dev = pd.array(devices, dtype="Float64").to_numpy(dtype=float, na_value=np.nan)
    median = np.asarray(median_mbps, dtype=float)
    enough = (tests >= min_tests) & (np.isnan(dev) | (dev >= min_devices)) & ~np.isnan(median)
    meets = median >= np.asarray(target_mbps, dtype=float)
    classes = np.where(
        enough, np.where(meets, SPEED_CLASSES[0], SPEED_CLASSES[1]), SPEED_CLASSES[2]
    )
    return classes.astype(object)


TRUE_WORDS = frozenset({"1", "true", "t", "yes", "y", "是", "有", "已通", "通"})
FALSE_WORDS = frozenset({"0", "false", "f", "no", "n", "否", "无", "未通", ""})


def parse_yes_no(values: pd.Series) -> pd.Series:
    """Booleans from yes/no-like text (English and Chinese).

    Parameters
    ----------
    values
        Cells of a yes/no column, e.g. ``has_fibre`` of a fibre register table.

    Returns
    -------
    pandas.Series
        Nullable booleans: True for :data:`TRUE_WORDS`, False for :data:`FALSE_WORDS` and
        missing cells, NA for anything else (for the caller to report), case and blanks
        around ignored.

    Examples
    --------
    >>> parse_yes_no(pd.Series([" Yes", "否", None, "maybe"])).tolist()
    [True, False, False, <NA>]
    """
    text = values.astype("string").str.strip().str.lower()
    out = pd.Series(pd.NA, index=values.index, dtype="boolean")
    out[text.isin(TRUE_WORDS).fillna(False)] = True
    out[text.isin(FALSE_WORDS).fillna(False) | text.isna()] = False
    return out


def fibre_evidence(
    villages: ArrayLike,
    *,
    register_fibre: ArrayLike,
    points: ArrayLike,
    point_ids: ArrayLike,
    point_max_distance: ArrayLike,
    routes: ArrayLike,
    route_ids: ArrayLike,
    route_nearby: ArrayLike,
) -> pd.DataFrame:
    """The fibre rule, in order: register table; access point inside; access point near.

    Parameters
    ----------
    villages
        Village polygons in a metric CRS (missing ones match nothing).
    register_fibre
        Per village: True when a fibre register table says it has fibre.
    points, point_ids, point_max_distance
        Operational access points (metric CRS), their ids, and the distance in metres within
        which each counts (from its source's ``max_distance_m``).
    routes, route_ids, route_nearby
        Operational routes, their ids and each one's ``nearby_m``.

    Returns
    -------
    pandas.DataFrame
        One row per village with ``fibre, fibre_basis, fibre_asset_id, fibre_distance_m,
        fibre_nearby, fibre_route_id, fibre_route_distance_m, nearest_asset_id,
        nearest_asset_m``. The nearest access point is reported whatever its distance
        (planners' evidence); the ``fibre_*`` asset columns are filled only when it counted.
    """
    from ruralcov.join import code_priority, nearest

    polys = np.asarray(villages, dtype=object)
    register = np.asarray(register_fibre, dtype=bool)
    pts = np.asarray(points, dtype=object)
    pids = np.asarray(point_ids, dtype=object)
    pmax = np.asarray(point_max_distance, dtype=float)
    # Ties between equally near assets go to the lowest id, independent of file order.
    id_rank = code_priority(pids)
    near_pos, near_d = nearest(polys, pts, priority=id_rank)
    nearest_id = nearest_or_none(pids, near_pos)
    # Each access point counts within its own source's distance; each route is nearby within
    # its own nearby_m. Equally near candidates go to the lowest id, whatever their source.
    count_pos, count_d = nearest(polys, pts, max_distance=pmax, priority=id_rank)
    has_ap = count_pos >= 0
    basis = np.where(
        register,
        "register",
        np.where(
            has_ap & (count_d == 0),
            "access_point_inside",
            np.where(has_ap, "access_point_near", "none"),
        ),
    ).astype(object)
    fibre = register | has_ap
    from_ap = ~register & has_ap
    r_ids = np.asarray(route_ids, dtype=object)
    route_pos, route_d = nearest(
        polys, routes, max_distance=route_nearby, priority=code_priority(r_ids)
    )
    has_route = route_pos >= 0
    return pd.DataFrame(
        {
            "fibre": fibre,
            "fibre_basis": basis,
            "fibre_asset_id": pd.Series(
                np.where(from_ap, nearest_or_none(pids, count_pos), None), dtype=object
            ),
            "fibre_distance_m": np.where(from_ap, count_d, np.nan),
            "fibre_nearby": ~fibre & has_route,
            "fibre_route_id": pd.Series(
                np.where(has_route, nearest_or_none(r_ids, route_pos), None), dtype=object
            ),
            "fibre_route_distance_m": np.where(has_route, route_d, np.nan),
            "nearest_asset_id": pd.Series(nearest_id, dtype=object),
            "nearest_asset_m": near_d,
        }
    )


def nearest_or_none(ids: NDArray[np.object_], pos: NDArray[np.intp]) -> NDArray[np.object_]:
    """The ids at positions found by a nearest search, None where nothing was found.

    Parameters
    ----------
    ids
        The ids of the searched geometries.
    pos
        Positions into ``ids``; -1 where nothing was found.

    Returns
    -------
    numpy.ndarray
        ``ids[pos]`` as an object array, None where ``pos`` is -1.
    """
    out = np.full(len(pos), None, dtype=object)
    ok = pos >= 0
    out[ok] = ids[pos[ok]]
    return out
