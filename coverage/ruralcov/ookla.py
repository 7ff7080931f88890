"""Ookla open-data tiles: quadkeys, tile-to-village assignment and tile statistics.

Ookla publishes Speedtest results aggregated per zoom-16 Web Mercator tile (about 610 m at the
equator), one file per quarter and per network type (``fixed`` or ``mobile``), with the fields
``quadkey, avg_d_kbps, avg_u_kbps, avg_lat_ms, tests, devices`` (licence CC BY-NC-SA 4.0).
A tile's values are already averages, so a village's figure is by default the
**tests-weighted mean** of its tiles (each tile's average counts as many times as it has
tests; ``weighting = "tiles"``: the plain mean over tiles, as many published tables show) and
its tests and devices are the sums over its tiles. Devices summed over tiles may count one
device twice when it tested in two tiles; Ookla publishes no way to undo that.

Three assignments of tiles to villages:

- ``centroid`` (default): the whole tile goes to the village whose polygon covers the tile's
  centroid (lowest village code on a shared edge, as for speed tests). A tile is an
  axis-aligned longitude/latitude rectangle, so its centroid is its centre.
- ``area_weighted``: the tile is shared among the villages it overlaps in proportion to the
  overlap area, computed in the run's metric CRS (metres, never degrees). Its tests and
  devices are apportioned by the same fraction; the part of a tile outside every village is
  lost. The apportioned counts are the ones compared with ``min_tests``/``min_devices``; the
  ``tests``/``devices`` columns show them rounded to whole numbers.
- ``intersects``: the whole tile counts in every village it intersects, a shared edge or
  corner included, as a spatial join on ``intersects`` (``geopandas.sjoin``) counts it in
  published notebooks. A tile on a boundary is counted in each village it touches, so the
  sums over villages can exceed the file's.

Several quarters can be pooled into one source (``pool = true`` with ``periods``): every
tile-quarter row is one observation, ``tiles`` counts a village's distinct tiles (quadkeys)
and ``tile_rows`` its tile-quarter rows.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
from numpy.typing import ArrayLike, NDArray

from ruralcov import io, join
from ruralcov.config import TILE_ASSIGNMENTS, TILE_WEIGHTINGS, SpeedConfig
from ruralcov.errors import ConfigError, SchemaError
from ruralcov.loaders import Loaded, input_record, read_issues_mask
from ruralcov.validate import concat_issues, row_issues

__all__ = [
    "ASSIGNMENTS",
    "NETWORKS",
    "TILE_COLUMNS",
    "WEIGHTINGS",
    "assign_tiles",
    "load_tile_files",
    "load_tiles",
    "quadkey_polygons",
    "quadkey_tile",
    "tile_bounds",
    "tile_ids",
    "tile_statistics",
    "tile_summary",
]

NETWORKS: tuple[str, ...] = ("fixed", "mobile")
#: How tiles are assigned to villages (``[speed] assignment``; module docstring).
ASSIGNMENTS: tuple[str, ...] = TILE_ASSIGNMENTS
#: What each tile's mean counts with in a village's mean (``[speed] weighting``): its tests,
#: or one per tile row.
WEIGHTINGS: tuple[str, ...] = TILE_WEIGHTINGS
#: Ookla's published fields: their names are the schema, so they are not configurable.
TILE_COLUMNS: tuple[str, ...] = ("avg_d_kbps", "avg_u_kbps", "avg_lat_ms", "tests", "devices")
#: Columns that, when present, say which network a row belongs to.
_NETWORK_COLUMNS = ("network", "type", "conn_type", "layer_type")


def quadkey_tile(key: str) -> tuple[int, int, int]:
    """The Web Mercator tile a Bing/Ookla quadkey names.

    Parameters
    ----------
    key
        The quadkey: one digit 0-3 per zoom level.

    Returns
    -------
    tuple of int
        ``(x, y, zoom)``.

    Raises
    ------
    ValueError
        For a digit other than 0-3.

    Examples
    --------
    >>> quadkey_tile("0"), quadkey_tile("3"), quadkey_tile("213")
    ((0, 0, 1), (1, 1, 1), (3, 5, 3))
    """
    x = y = 0
    for digit in key:
        if digit not in "0123":
            raise ValueError(f"quadkey {key!r} has a digit other than 0-3")
        d = int(digit)
        x, y = (x << 1) | (d & 1), (y << 1) | (d >> 1)
    return x, y, len(key)


def tile_bounds(x: ArrayLike, y: ArrayLike, zoom: ArrayLike) -> tuple[NDArray, ...]:
    """The extent of Web Mercator tiles.

    Parameters
    ----------
    x, y, zoom
        Tile columns, rows (from the north) and zoom levels.

    Returns
    -------
    tuple of numpy.ndarray
        ``(west, south, east, north)`` in degrees.
    """
    x, y, n = np.asarray(x, float), np.asarray(y, float), 2.0 ** np.asarray(zoom, float)

    def lat(row: NDArray) -> NDArray:
        return np.degrees(np.arctan(np.sinh(np.pi * (1.0 - 2.0 * row / n))))

    return x / n * 360.0 - 180.0, lat(y + 1), (x + 1) / n * 360.0 - 180.0, lat(y)


def quadkey_polygons(keys: ArrayLike) -> NDArray[np.object_]:
    """Tile rectangles of quadkeys, for tile files that have keys but no polygons.

    Parameters
    ----------
    keys
        Quadkeys (text; None or empty for none).

    Returns
    -------
    numpy.ndarray
        Shapely boxes in EPSG:4326; None for a key that is not a quadkey.

    Examples
    --------
    >>> quadkey_polygons(["0"])[0].bounds
    (-180.0, 0.0, 0.0, 85.0511287798066)
    """
    tiles = []
    for key in keys:
        try:
            tiles.append(quadkey_tile(str(key)) if key is not None and str(key) else None)
        except ValueError:
            tiles.append(None)
    ok = np.array([t is not None for t in tiles], dtype=bool)
    out = np.full(len(tiles), None, dtype=object)
    if ok.any():
        xyz = np.array([t for t in tiles if t is not None], dtype=float)
        out[ok] = shapely.box(*tile_bounds(xyz[:, 0], xyz[:, 1], xyz[:, 2]))
    return out


def _check_network(s: SpeedConfig, frame: pd.DataFrame) -> None:
    """Fixed and mobile tiles are never mixed silently: the config names the network, and a
    path or a type column that says otherwise stops the run."""
    if s.network not in NETWORKS:
        raise ConfigError(
            f'[speed] kind = "ookla_tiles" needs network = "fixed" or "mobile" '
            f"(got {s.network!r}): Ookla publishes the two separately and a village's figure "
            "must come from one of them"
        )
    other = "mobile" if s.network == "fixed" else "fixed"
    parts = [p.lower() for p in Path(s.path).parts[-3:]] if s.path else []
    if any(other in p and s.network not in p for p in parts):
        raise ConfigError(
            f"[speed] network = {s.network!r} but the path {s.path} names {other!r} tiles; "
            "set network to match the file (fixed and mobile are never mixed)"
        )
    for col in _NETWORK_COLUMNS:
        if col in frame.columns:
            values = sorted({str(v).strip().lower() for v in frame[col].dropna()})
            wrong = [v for v in values if v != s.network]
            if wrong:
                raise SchemaError(
                    f"speed: column {col!r} of {s.path} has {wrong} rows but network = "
                    f"{s.network!r}; give one network per source (fixed and mobile are "
                    "never mixed)"
                )


def load_tiles(source: SpeedConfig) -> Loaded:
    """Read Ookla tiles with their polygons (from the file, or from ``quadkey`` without one).

    Parameters
    ----------
    source
        The ``[speed]`` block of kind ``ookla_tiles``.

    Returns
    -------
    Loaded
        A GeoDataFrame (EPSG:4326) with ``row`` (source row), ``quadkey``, ``download_mbps``,
        ``upload_mbps``, ``latency_ms``, ``tests``, ``devices``, ``avg_d_kbps``,
        ``avg_u_kbps`` and the tile polygon. Rows without a usable tile, with missing or
        negative measures, or with ``tests`` < 1 are dropped with a reason (the issues).

    Raises
    ------
    ConfigError
        Without a path, or when the path or a network column names the other network.
    SchemaError
        When one of Ookla's columns (:data:`TILE_COLUMNS`, the quadkey) is missing.
    """
    layer = "speed"
    if source.path is None:
        raise ConfigError("[speed] path is required")
    frame, read_issues = io.read_layer(
        source.path,
        layer=source.layer,
        crs=source.crs or "EPSG:4326",
        encoding=source.encoding,
        wkt=source.wkt,
        geometry="optional",
        name=layer,
    )
    _check_network(source, frame)
    qk = source.quadkey or "quadkey"
    has_geometry = frame.geometry.notna() & ~frame.geometry.is_empty
    missing = [c for c in (*TILE_COLUMNS, qk) if c not in frame.columns]
    if qk in missing and has_geometry.all():
        missing.remove(qk)
    if missing:
        raise SchemaError(
            f"speed: Ookla tile column(s) {missing} not found in {source.path}; an Ookla "
            f'open-data file has {list(TILE_COLUMNS)} and {qk!r} (set quadkey = "..." in '
            "[speed] if the key column has another name)"
        )
    geoms = np.asarray(frame.geometry.values, dtype=object)
    keys = frame[qk].astype("string") if qk in frame.columns else None
    if keys is not None:
        need = ~has_geometry.to_numpy()
        geoms[need] = quadkey_polygons(keys[need].tolist())
    num = {c: pd.to_numeric(frame[c], errors="coerce").astype(float) for c in TILE_COLUMNS}
    no_tile = pd.Series(shapely.is_missing(geoms), index=frame.index)
    bad = (num["avg_d_kbps"].isna() | num["tests"].isna()) & ~no_tile
    negative = ((num["avg_d_kbps"] < 0) | (num["tests"] < 0)) & ~no_tile & ~bad
    no_tests = (num["tests"] < 1) & ~no_tile & ~bad & ~negative
    issues = concat_issues([
        read_issues.assign(dropped=read_issues["row"].notna()),
        row_issues(no_tile & ~read_issues_mask(read_issues, len(frame)), layer=layer,
                   reason="missing_geometry", dropped=True,
                   message=f"tile has neither a polygon nor a valid quadkey in {qk!r}"),
        row_issues(bad, layer=layer, reason="bad_download", dropped=True,
                   message="avg_d_kbps or tests is missing or not a number"),
        row_issues(negative, layer=layer, reason="negative_speed", dropped=True,
                   message="avg_d_kbps or tests is negative"),
        row_issues(no_tests, layer=layer, reason="no_tests", dropped=True,
                   message="tile reports no tests; it carries no evidence"),
    ])
    usable = ~(no_tile | bad | negative | no_tests).to_numpy()
    gdf = gpd.GeoDataFrame(
        _tile_rows(num, keys, frame.index)[usable], geometry=list(geoms[usable]), crs="EPSG:4326"
    ).reset_index(drop=True)
    record = input_record(layer, source.path, len(frame), issues, digest=io.content_hash(frame))
    return Loaded(frame=gdf, issues=issues, record=record)


def load_tile_files(source: SpeedConfig) -> tuple[Loaded, ...]:
    """The tile files of a source: its one file, or with ``pool`` every period's file.

    Parameters
    ----------
    source
        The ``[speed]`` block of kind ``ookla_tiles``.

    Returns
    -------
    tuple of Loaded
        As :func:`load_tiles` gives each file; pooled, in period order, each file's findings
        and record under layer ``speed[<label>]`` (its rows are numbered in its own file).
    """
    if not source.pool or not source.periods:
        return (load_tiles(source),)
    files = []
    for label in sorted(source.periods):
        one = load_tiles(dataclasses.replace(source, path=source.periods[label]))
        layer = f"speed[{label}]"
        files.append(Loaded(frame=one.frame, issues=one.issues.assign(layer=layer),
                            record=dataclasses.replace(one.record, layer=layer)))
    return tuple(files)


def _tile_rows(
    num: dict[str, pd.Series], keys: pd.Series | None, index: pd.Index
) -> pd.DataFrame:
    """Every tile row in the columns of :func:`load_tiles` (none dropped yet), negative
    uploads, latencies and device counts left empty."""
    return pd.DataFrame(
        {
            "row": np.arange(1, len(index) + 1),
            "quadkey": keys if keys is not None else pd.Series(pd.NA, index=index),
            "download_mbps": num["avg_d_kbps"] / 1000.0,
            "upload_mbps": num["avg_u_kbps"].where(num["avg_u_kbps"] >= 0) / 1000.0,
            "latency_ms": num["avg_lat_ms"].where(num["avg_lat_ms"] >= 0),
            "tests": num["tests"],
            "devices": num["devices"].where(num["devices"] >= 0),
            # Ookla's own units, kept so that summaries divide once, at the end, as published.
            "avg_d_kbps": num["avg_d_kbps"],
            "avg_u_kbps": num["avg_u_kbps"].where(num["avg_u_kbps"] >= 0),
        }
    )


def assign_tiles(
    tiles: ArrayLike,
    villages: ArrayLike,
    *,
    method: str = "centroid",
    priority: ArrayLike | None = None,
    metric_crs: pyproj.CRS | str | None = None,
) -> pd.DataFrame:
    """Which village each tile counts for, and with what weight.

    Parameters
    ----------
    tiles, villages
        Tile and village polygons in EPSG:4326.
    method
        ``"centroid"``: the village covering the tile centroid gets weight 1 (ties: lowest
        ``priority``); ``"area_weighted"``: every overlapping village gets the share of the
        tile's area it covers, measured in ``metric_crs``; ``"intersects"``: every village the
        tile intersects (a shared edge or corner included) gets weight 1.
    metric_crs
        Required for ``area_weighted``: a projected CRS in metres.

    Returns
    -------
    pandas.DataFrame
        ``tile``, ``village`` (positions) and ``weight``; tiles outside every village do not
        appear.

    Examples
    --------
    >>> from shapely import box
    >>> assign_tiles([box(0, 0, 1, 1), box(5, 5, 6, 6)], [box(0, 0, 2, 2)]).values.tolist()
    [[0.0, 0.0, 1.0]]
    >>> two = [box(0, 0, 1, 1), box(1, 0, 2, 1)]
    >>> assign_tiles([box(0.5, 0, 1.5, 1), box(2, 0, 3, 1)], two, method="intersects"
    ...              ).values.tolist()
    [[0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    """
    if method not in ASSIGNMENTS:
        raise ValueError(f"`method` was {method!r} but is expected to be in {list(ASSIGNMENTS)}")
    t = np.asarray(tiles, dtype=object)
    v = np.asarray(villages, dtype=object)
    if method == "centroid":
        where = join.assign_points(shapely.centroid(t), v, priority=priority)
        hit = np.flatnonzero(where >= 0)
        return pd.DataFrame({"tile": hit, "village": where[hit], "weight": np.ones(len(hit))})
    if method == "area_weighted" and metric_crs is None:
        raise ValueError("area_weighted assignment needs metric_crs (areas in metres)")
    ok = ~(shapely.is_missing(v) | shapely.is_empty(v))
    vv = np.where(ok, v, None)
    ti, vi = shapely.STRtree(vv).query(t, predicate="intersects")
    weight = (
        np.ones(len(ti)) if metric_crs is None or method == "intersects"
        else _overlap_share(t[ti], vv[vi], metric_crs)
    )
    keep = weight > 0
    out = pd.DataFrame({"tile": ti[keep], "village": vi[keep], "weight": weight[keep]})
    return out.sort_values(["tile", "village"], ignore_index=True)


def _overlap_share(tiles: NDArray[np.object_], villages: NDArray[np.object_],
                   metric_crs: pyproj.CRS | str) -> NDArray[np.float64]:
    """The share of each tile's area inside the village paired with it, in metres."""
    # Edges are straight in longitude/latitude (the boundary rule of the whole engine), so
    # overlaps are cut there; each piece is then densified (~20 m) before projecting, so
    # that curved parallels do not leave slivers, and measured in metres.
    to_m = pyproj.Transformer.from_crs("EPSG:4326", metric_crs, always_xy=True).transform

    def area_m(geoms: NDArray[np.object_]) -> NDArray[np.float64]:
        dense = shapely.segmentize(geoms, 0.0002)
        return shapely.area(
            shapely.transform(dense, lambda xy: np.column_stack(to_m(xy[:, 0], xy[:, 1])))
        )

    return area_m(shapely.intersection(tiles, villages)) / area_m(tiles)


def tile_statistics(
    assignment: pd.DataFrame, tiles: pd.DataFrame, *, n_villages: int, weighting: str = "tests"
) -> pd.DataFrame:
    """Per-village figures from assigned tiles: weighted means and summed counts.

    Each tile's mean counts with weight ``tests × assignment weight`` (``weighting="tests"``)
    or ``assignment weight`` alone (``"tiles"``: the plain mean over tile rows with
    ``centroid`` and ``intersects``); a missing upload or latency leaves that tile out of that
    mean only. Download and upload are averaged in the file's kbit/s and divided by 1000 at
    the end, as published summaries of Ookla data divide (sums of whole kbit/s are exact).

    Parameters
    ----------
    assignment
        As :func:`assign_tiles` returns it.
    tiles
        One row per tile row (positions as in ``assignment``) with ``quadkey``,
        ``avg_d_kbps``, ``avg_u_kbps``, ``latency_ms``, ``tests``, ``devices`` (as
        :func:`load_tiles` gives them); a row without a quadkey is told apart by its polygon.
    n_villages
        Number of villages: the result has one row per village position.
    weighting
        One of :data:`WEIGHTINGS`.

    Returns
    -------
    pandas.DataFrame
        ``tiles`` (distinct tiles), ``tile_rows`` (tile rows: more than ``tiles`` when
        quarters are pooled), ``tests_weighted``, ``devices_weighted`` (apportioned,
        unrounded), ``tests``, ``devices`` (rounded), ``download_mean_mbps``,
        ``upload_mean_mbps``, ``latency_mean_ms``.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"`weighting` was {weighting!r} but is expected to be in "
                         f"{list(WEIGHTINGS)}")
    a_tile = assignment["tile"].to_numpy(dtype=np.intp)
    village = assignment["village"].to_numpy(dtype=np.intp)
    share = assignment["weight"].to_numpy(dtype=float)
    w_tests = share * tiles["tests"].to_numpy(float)[a_tile]
    w = w_tests if weighting == "tests" else share

    def mean(column: str, scale: float = 1.0) -> NDArray[np.float64]:
        x = tiles[column].to_numpy(float)[a_tile]
        ok = ~np.isnan(x)
        num = np.bincount(village[ok], weights=w[ok] * x[ok], minlength=n_villages)
        den = np.bincount(village[ok], weights=w[ok], minlength=n_villages)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / den, np.nan) / scale

    tests = np.bincount(village, weights=w_tests, minlength=n_villages)
    dev_w = share * tiles["devices"].to_numpy(float)[a_tile]
    dev_ok = ~np.isnan(dev_w)
    devices = np.bincount(village[dev_ok], weights=dev_w[dev_ok], minlength=n_villages)
    pairs = pd.DataFrame({"village": village, "tile": tile_ids(tiles)[a_tile]})
    distinct = pairs.drop_duplicates()["village"].to_numpy(dtype=np.intp)
    return pd.DataFrame(
        {
            "tiles": np.bincount(distinct, minlength=n_villages).astype(np.int64),
            "tile_rows": np.bincount(village, minlength=n_villages).astype(np.int64),
            "tests_weighted": tests,
            "devices_weighted": devices,
            "tests": np.rint(tests).astype(np.int64),
            "devices": pd.array(np.rint(devices).astype(np.int64), dtype="Int64"),
            "download_mean_mbps": mean("avg_d_kbps", 1000.0),
            "upload_mean_mbps": mean("avg_u_kbps", 1000.0),
            "latency_mean_ms": mean("latency_ms"),
        }
    )


def tile_ids(tiles: pd.DataFrame) -> NDArray[np.intp]:
    """One number per distinct tile: the same quadkey (or, without one, the same polygon) in
    several rows, as in quarters pooled together, is one tile.

    Parameters
    ----------
    tiles
        Tile rows with ``quadkey`` and, for rows without one, a geometry.

    Returns
    -------
    numpy.ndarray
        Equal numbers for rows of the same tile.

    Examples
    --------
    >>> tile_ids(pd.DataFrame({"quadkey": ["0123", "0122", "0123"]})).tolist()
    [0, 1, 0]
    """
    key = tiles["quadkey"].astype(object).to_numpy(copy=True)
    missing = pd.isna(key)
    if missing.any() and isinstance(tiles, gpd.GeoDataFrame):
        key[missing] = shapely.to_wkb(np.asarray(tiles.geometry.values, dtype=object)[missing])
    codes, _ = pd.factorize(pd.Series(key, dtype=object), use_na_sentinel=False)
    return codes.astype(np.intp)


def tile_summary(tiles: pd.DataFrame, *, weighting: str = "tests") -> dict[str, float]:
    """Figures over a set of tiles, to compare with published summaries of Ookla data: those
    of one village holding every tile (:func:`tile_statistics`).

    Parameters
    ----------
    tiles
        Tiles as :func:`load_tiles` returns them.
    weighting
        ``"tests"``: each tile's mean weighted by its tests (the figure a village or an area
        gets); ``"tiles"``: the plain mean over tiles, the convention of many published
        summaries of Ookla data (for instance the Guam figures in ``tests/data/ookla_guam``).

    Returns
    -------
    dict
        ``download`` and ``upload`` (Mbit/s) and ``latency`` (ms) means, summed ``tests`` and
        ``devices``.
    """
    everything = pd.DataFrame({"tile": np.arange(len(tiles)), "village": 0, "weight": 1.0})
    row = tile_statistics(everything, tiles, n_villages=1, weighting=weighting).iloc[0]
    return {
        "download": float(row["download_mean_mbps"]),
        "upload": float(row["upload_mean_mbps"]),
        "latency": float(row["latency_mean_ms"]),
        "tests": int(row["tests"]),
        "devices": int(row["devices"]),
    }
