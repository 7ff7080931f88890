"""Layer data for the interactive maps: classes, simplified geometry and a compact encoding.

Everything here is a pure function of frames and arrays (no files, no printing). The encoding
is what keeps the province page small and quick to draw (see the README, "Maps"):

- village polygons are simplified in the metric CRS, in metres (``shapely.coverage_simplify``
  when the villages form a valid coverage, so that neighbours keep one shared edge; otherwise
  a per-polygon topology-preserving ``simplify`` with the same tolerance);
- coordinates become integers on a grid of ``1/q`` degree, and every ring stores its first
  vertex and then differences, which are short numbers in JSON;
- attributes are stored column by column, and a column with repeated texts (township and
  county names, classes) as a dictionary plus small integers.

The page script ``templates/ruralcov_map.js`` decodes this format.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyproj
import shapely
from numpy.typing import NDArray

from ruralcov.areas import dissolve, dissolve_many
from ruralcov.capability import FIVE_WAY_TEXT, is_five_way

__all__ = [
    "AREA_FIBRE",
    "ASSET_CLASSES",
    "FIVE_WAY_MAP_CLASSES",
    "MAP_CLASSES",
    "area_classes",
    "column_texts",
    "columns",
    "dissolve",
    "dissolve_many",
    "encode_geometry",
    "encoded_floor",
    "fibre_met",
    "map_class",
    "script_json",
    "share_bins",
    "simplify_polygons",
    "split_columns",
    "village_class_index",
    "village_classes",
]

#: Village map class -> (legend label, fill colour, outline colour, outline weight).
#: Villages without fibre are the gap: drawn red with a dark outline so they stand out.
MAP_CLASSES: dict[str, tuple[str, str, str, float]] = {
    "fibre_meets": ("fibre and speed target met", "#1a9850", "#ffffff", 0.4),
    "fibre_below": ("fibre only: speed below target", "#fdae61", "#ffffff", 0.4),
    "fibre_insufficient": ("fibre, too few speed tests", "#91bfdb", "#ffffff", 0.4),
    "no_fibre": ("no fibre (gap)", "#d73027", "#67001f", 1.2),
    "not_counted": ("not an administrative village or community", "#d9d9d9", "#ffffff", 0.4),
}

#: Speed class (three-way or five-way) of a village with fibre -> its map class.
_WITH_FIBRE = {
    "meets": "fibre_meets",
    "below": "fibre_below",
    "insufficient_data": "fibre_insufficient",
    "capability_only": "fibre_capability_only",
    "measured_only": "fibre_measured_only",
    "fails": "fibre_fails",
}
#: Fill colours of the five-way classes: meets, fails (as "below") and too few keep the
#: colours of :data:`MAP_CLASSES`; where capability and measurement disagree, light green
#: (the capability meets) and light purple (only the measurement meets).
_FIVE_WAY_FILL = {
    "meets": "#1a9850",
    "capability_only": "#a6d96a",
    "measured_only": "#c2a5cf",
    "fails": "#fdae61",
    "insufficient_data": "#91bfdb",
}

#: The village map classes of a run with capability records: with fibre, one class per
#: five-way speed class (:data:`ruralcov.capability.FIVE_WAY`, labelled with the class and
#: its meaning as in the report); without fibre, the gap as in :data:`MAP_CLASSES`.
FIVE_WAY_MAP_CLASSES: dict[str, tuple[str, str, str, float]] = {
    **{
        _WITH_FIBRE[c]: (f"fibre; {c.replace('_', ' ')}: {text}", _FIVE_WAY_FILL[c], "#ffffff", 0.4)
        for c, text in FIVE_WAY_TEXT.items()
    },
    "no_fibre": MAP_CLASSES["no_fibre"],
    "not_counted": MAP_CLASSES["not_counted"],
}

#: The fibre assets of the maps by role (``points``, ``routes``): the legend label and style of
#: the operational ones, then of those not in service (drawn, never counted). ``color`` fills
#: a point or draws a line; ``stroke``, ``weight`` (pixels), ``radius`` and ``fill`` (opacity)
#: as Leaflet reads them; ``dash`` a dash pattern in pixels.
ASSET_CLASSES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "points": (
        {"label": "operational access point", "color": "#1b1b1b", "stroke": "#ffffff",
         "weight": 1, "radius": 4, "fill": 1},
        {"label": "access point not in service (never counted)", "color": "#ffffff",
         "stroke": "#7f7f7f", "weight": 1.5, "radius": 4, "fill": 0.6},
    ),
    "routes": (
        {"label": "operational fibre route", "color": "#6a3d9a", "weight": 2},
        {"label": "route not in service (never counted)", "color": "#9e9e9e", "weight": 2,
         "dash": "4 4"},
    ),
}

#: Diverging colours for shares: four warm steps below the target, two cool steps at or above.
_BELOW = ("#b2182b", "#d6604d", "#f4a582", "#fddbc7")
_ABOVE = ("#92c5de", "#2166ac")
_SEQUENTIAL = ("#edf8b1", "#c7e9b4", "#7fcdbb", "#1d91c0", "#0c2c84")
_NO_DATA = "#bdbdbd"

AREA_FIBRE = "fibre_share"


def village_classes(villages: pd.DataFrame) -> dict[str, tuple[str, str, str, float]]:
    """The village map classes of a village table.

    Parameters
    ----------
    villages
        A village table with ``speed_class``.

    Returns
    -------
    dict
        :data:`FIVE_WAY_MAP_CLASSES` when it holds five-way speed classes
        (:func:`ruralcov.capability.is_five_way`), else :data:`MAP_CLASSES`.
    """
    return FIVE_WAY_MAP_CLASSES if is_five_way(villages) else MAP_CLASSES


def map_class(villages: pd.DataFrame) -> pd.Series:
    """The map class of each village.

    Communities are classed like villages (fibre, then speed against the urban target); other
    register units are ``not_counted``. A village with fibre gets the class of its speed
    class, whichever scheme made it (three-way, or five-way with capability records).

    Parameters
    ----------
    villages
        A village table with ``kind``, ``fibre`` and ``speed_class``.

    Returns
    -------
    pandas.Series
        A key of :func:`village_classes` per village, aligned to its index.

    Raises
    ------
    ValueError
        For a speed class without a map class (a bug, never a guess).

    Examples
    --------
    >>> v = pd.DataFrame({"kind": ["village", "village", "other", "village"],
    ...                   "fibre": [True, False, True, True],
    ...                   "speed_class": ["below", "meets", "meets", "measured_only"]})
    >>> map_class(v).tolist()
    ['fibre_below', 'no_fibre', 'not_counted', 'fibre_measured_only']
    """
    fibre = villages["fibre"].fillna(False).astype(bool).to_numpy()
    counted = villages["kind"].isin(["village", "community"]).to_numpy()
    speed = villages["speed_class"].astype(object).map(_WITH_FIBRE).to_numpy(dtype=object)
    unknown = counted & fibre & pd.isna(speed)
    if unknown.any():  # a class the map would put in the wrong box: a bug, never a guess
        found = sorted(map(str, set(villages["speed_class"].to_numpy(dtype=object)[unknown])))
        raise ValueError(f"speed class(es) {found} have no map class; known: {list(_WITH_FIBRE)}")
    cls = np.where(~counted, "not_counted", np.where(~fibre, "no_fibre", speed))
    return pd.Series(cls, index=villages.index, name="map_class", dtype=object)


def village_class_index(
    villages: pd.DataFrame,
) -> tuple[NDArray[np.intp], dict[str, tuple[str, str, str, float]]]:
    """The class of each village as a position, for the legend and the colours.

    Parameters
    ----------
    villages
        As :func:`map_class` takes it.

    Returns
    -------
    cls, scheme
        Position of each village's :func:`map_class` in ``scheme``, and ``scheme``: its
        :func:`village_classes`.

    Examples
    --------
    >>> v = pd.DataFrame({"kind": ["village", "village"], "fibre": [True, True],
    ...                   "speed_class": ["fails", "meets"]})
    >>> cls, scheme = village_class_index(v)
    >>> [list(scheme)[i] for i in cls]
    ['fibre_fails', 'fibre_meets']
    """
    scheme = village_classes(villages)
    pos = {key: i for i, key in enumerate(scheme)}
    keys = map_class(villages).to_numpy(dtype=object)
    outside = sorted({str(k) for k in keys if k not in pos})
    if outside:  # a three-way class in a five-way table (or back): a bug, never hidden
        raise ValueError(f"map class(es) {outside} are not among {list(scheme)}")
    return np.array([pos[k] for k in keys], dtype=np.intp), scheme


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %" if abs(100 * x - round(100 * x)) < 1e-9 else f"{100 * x:.1f} %"


def share_bins(target: float | None) -> list[tuple[float, float, str, str]]:
    """The classes of a share in [0, 1], diverging at the target.

    Below the target the steps are 5, 10 and 20 percentage points wide (warm: the further
    below, the darker); at or above it there are two cool steps. Without a target the scale
    is sequential in fifths.

    Parameters
    ----------
    target
        The target share, or None.

    Returns
    -------
    list of (float, float, str, str)
        ``(low, high, label, colour)`` per class; ``high`` is exclusive except for the last
        class, which ends at 1.

    Examples
    --------
    >>> [label for _, _, label, _ in share_bins(0.98)]
    ['below 78 %', '78 % to 88 %', '88 % to 93 %', '93 % to 98 %', '98 % to 99 %', '99 % to 100 %']
    """
    if target is None:
        edges = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
        return [
            (lo, hi, f"{_pct(lo)} to {_pct(hi)}", colour)
            for lo, hi, colour in zip(edges[:-1], edges[1:], _SEQUENTIAL, strict=True)
        ]
    t = min(max(float(target), 0.0), 1.0)
    below = [e for e in (round(t - d, 10) for d in (0.20, 0.10, 0.05)) if e > 0]
    low_edges = [0.0, *below, t] if t > 0 else []
    bins: list[tuple[float, float, str, str]] = []
    colours = _BELOW[-(len(low_edges) - 1) :] if len(low_edges) > 1 else ()
    for i, (lo, hi) in enumerate(zip(low_edges[:-1], low_edges[1:], strict=True)):
        label = f"below {_pct(hi)}" if i == 0 else f"{_pct(lo)} to {_pct(hi)}"
        bins.append((lo, hi, label, colours[i]))
    if t < 1:
        mid = round(t + (1 - t) / 2, 10)
        bins.append((t, mid, f"{_pct(t)} to {_pct(mid)}", _ABOVE[0]))
        bins.append((mid, 1.0, f"{_pct(mid)} to 100 %", _ABOVE[1]))
    else:
        bins.append((1.0, 1.0, "100 %", _ABOVE[1]))
    return bins


def fibre_met(summary: pd.DataFrame, *, measure: str = AREA_FIBRE) -> pd.Series | None:
    """The exact "fibre target met" of each area of a summary, for :func:`area_classes`.

    Parameters
    ----------
    summary
        A summary table (:data:`ruralcov.schema.SUMMARY_COLUMNS`).
    measure
        The share the map shows.

    Returns
    -------
    pandas.Series or None
        Whether each area's published gap is 0; None for another measure or a summary
        without gaps.
    """
    if measure != AREA_FIBRE or "fibre_gap_villages" not in summary.columns:
        return None
    return pd.to_numeric(summary["fibre_gap_villages"], errors="coerce").eq(0)


def area_classes(
    share: pd.Series, target: float | None, *, met: Any = None
) -> tuple[NDArray[np.intp], list[tuple[str, str]]]:
    """The class of each area's share.

    Parameters
    ----------
    share
        The share of each area.
    target
        The target (classes diverge there), or None.
    met
        The exact "target met" of each area (:func:`fibre_met`, a fibre gap of 0): it
        decides the side of the target, since a share compared as a float can round onto
        the target from below, and the map would then show an area with a gap as at the
        target.

    Returns
    -------
    cls, labels
        Class index of each area, and the ``(label, colour)`` of every class (of
        :func:`share_bins`, then "no administrative villages" for a missing share).
    """
    bins = share_bins(target)
    values = pd.to_numeric(share, errors="coerce").to_numpy(dtype=float)
    cls = np.full(len(values), len(bins), dtype=np.intp)
    for i, (lo, hi, _, _) in enumerate(bins):
        last = i == len(bins) - 1
        inside = (values >= lo) & ((values <= hi) if last else (values < hi))
        cls[inside & (cls == len(bins))] = i
    if met is not None and target is not None:
        first_at = sum(1 for lo, _, _, _ in bins if lo < min(max(float(target), 0.0), 1.0))
        met_arr, known = np.asarray(met, dtype=bool), ~np.isnan(values)
        if first_at > 0:  # a float share on the target that the exact gap says is below
            cls[known & ~met_arr & (cls >= first_at)] = first_at - 1
        cls[known & met_arr & (cls < first_at)] = first_at
    labels = [(label, colour) for _, _, label, colour in bins]
    labels.append(("no administrative villages", _NO_DATA))
    return cls, labels


# --------------------------------------------------------------------------- geometry


def _transformer(src: str, dst: str) -> Callable[[Any, Any], Any]:
    t = pyproj.Transformer.from_crs(src, dst, always_xy=True)
    return lambda x, y: t.transform(x, y)


def simplify_polygons(
    geoms: NDArray[np.object_], *, metric_crs: str, tolerance_m: float
) -> NDArray[np.object_]:
    """Polygons simplified with a tolerance in metres.

    A valid coverage (no overlaps, matching shared edges) is simplified as a whole so that
    neighbours keep exactly one shared boundary; anything else polygon by polygon with
    ``preserve_topology``. Missing or empty geometries stay as they are, and a polygon that
    would vanish keeps its unsimplified shape, so every village is still drawn.

    Parameters
    ----------
    geoms
        Polygons in EPSG:4326.
    metric_crs
        The CRS the tolerance is measured in.
    tolerance_m
        The tolerance in metres; 0 or less leaves the polygons as they are.

    Returns
    -------
    numpy.ndarray
        The polygons in EPSG:4326.
    """
    geoms = np.asarray(geoms, dtype=object)
    out = geoms.copy()
    ok = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    if tolerance_m <= 0 or not ok.any():
        return out
    to_m = _transformer("EPSG:4326", metric_crs)
    back = _transformer(metric_crs, "EPSG:4326")
    metric = shapely.transform(geoms[ok], to_m, interleaved=False)
    if bool(shapely.coverage_is_valid(metric)):
        simple = shapely.coverage_simplify(metric, tolerance_m)
    else:
        simple = shapely.simplify(metric, tolerance_m, preserve_topology=True)
    lost = shapely.is_empty(simple) | (shapely.area(simple) <= 0)
    simple = np.where(lost, metric, simple)
    out[ok] = shapely.transform(simple, back, interleaved=False)
    return out


def encode_geometry(
    geoms: Sequence[Any] | NDArray[np.object_],
    *,
    q: float,
    shift: Callable[[Any, Any], Any] | None = None,
) -> list[Any]:
    """Geometries as nested lists of integers for the page script.

    Parameters
    ----------
    geoms
        Shapely geometries in EPSG:4326.
    q
        Grid of ``1/q`` degree the coordinates are rounded to.
    shift
        Moves coordinates first (WGS 84 to GCJ-02 for AMap tiles).

    Returns
    -------
    list
        Per geometry: polygons ``[[ring, ...], ...]`` (one list per polygon part), lines
        ``[ring, ...]``, points ``[x, y]``, missing or empty geometries ``[]``; a ring is
        ``[x0, y0, dx1, dy1, ...]`` in units of ``1/q`` degree, without the closing vertex.

    Examples
    --------
    >>> from shapely import box
    >>> encode_geometry([box(0, 0, 1, 2), None], q=10)
    [[[[10, 0, 0, 20, -10, 0, 0, -20]]], []]
    """
    geoms = np.asarray(list(geoms) if not isinstance(geoms, np.ndarray) else geoms, dtype=object)
    out: list[Any] = [[] for _ in range(len(geoms))]
    if not len(geoms):
        return out
    usable = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    if shift is not None and usable.any():
        geoms = geoms.copy()
        geoms[usable] = shapely.transform(geoms[usable], shift, interleaved=False)
    types = np.where(usable, shapely.get_type_id(np.where(usable, geoms, None)), -1)
    points = np.flatnonzero(types == 0)
    if len(points):
        xy = np.rint(shapely.get_coordinates(geoms[points]) * q).astype(np.int64).tolist()
        for i, pair in zip(points, xy, strict=True):
            out[i] = pair
    for wanted, closed in (((3, 6), True), ((1, 2, 5), False)):
        idx = np.flatnonzero(np.isin(types, wanted))
        if len(idx):
            for i, value in zip(idx, _encode_ragged(geoms[idx], q, closed), strict=True):
                out[i] = value
    return out


def encoded_floor(geoms: Sequence[Any] | NDArray[np.object_]) -> int:
    """Characters that the JSON of :func:`encode_geometry` of polygons takes at least.

    Every coordinate of a ring but its closing vertex is an integer, and every integer is at
    least a digit followed by a comma or a bracket: two characters. Counted from the vertex
    counts alone, so that a page that would be too large is known before it is built.

    Examples
    --------
    >>> from shapely import box
    >>> encoded_floor([box(0, 0, 1, 2), None]), len(script_json(encode_geometry(
    ...     [box(0, 0, 1, 2), None], q=10)))
    (16, 32)
    """
    g = np.asarray(list(geoms) if not isinstance(geoms, np.ndarray) else geoms, dtype=object)
    g = g[~(shapely.is_missing(g) | shapely.is_empty(g))]
    parts = shapely.get_parts(g)
    parts = parts[~shapely.is_empty(parts)]
    rings = len(parts) + int(shapely.get_num_interior_rings(parts).sum())
    return 4 * (int(shapely.get_num_coordinates(parts).sum()) - rings)


def _encode_ragged(geoms: NDArray[np.object_], q: float, closed: bool) -> list[Any]:
    """Polygons (``closed``) or lines, vectorised through ``shapely.to_ragged_array``."""
    parts, owner = shapely.get_parts(geoms, return_index=True)
    keep = ~shapely.is_empty(parts)
    parts, owner = parts[keep], owner[keep]
    if closed:
        multi = shapely.multipolygons(parts, indices=owner)
        _, coords, (ring_off, part_off, geom_off) = shapely.to_ragged_array(multi)
    else:
        multi = shapely.multilinestrings(parts, indices=owner)
        _, coords, (ring_off, geom_off) = shapely.to_ragged_array(multi)
        part_off = np.arange(len(ring_off))
    ints = np.rint(coords[:, :2] * q).astype(np.int64)
    lengths = np.diff(ring_off)
    if closed:  # drop each ring's closing vertex
        drop = np.zeros(len(ints), dtype=bool)
        drop[ring_off[1:] - 1] = lengths > 1
        ints = ints[~drop]
        lengths = lengths - (lengths > 1)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    deltas = ints.copy()
    deltas[1:] -= ints[:-1]
    deltas[starts[:-1][lengths > 0]] = ints[starts[:-1][lengths > 0]]
    flat = deltas.ravel().tolist()
    rings = [flat[2 * a : 2 * b] for a, b in zip(starts[:-1], starts[1:], strict=True)]
    part_rings = [rings[a:b] for a, b in zip(part_off[:-1], part_off[1:], strict=True)]
    if closed:
        return [part_rings[a:b] for a, b in zip(geom_off[:-1], geom_off[1:], strict=True)]
    return [sum(part_rings[a:b], []) for a, b in zip(geom_off[:-1], geom_off[1:], strict=True)]


# --------------------------------------------------------------------------- attributes


def _texts(series: pd.Series, fmt: str | None) -> list[str | None]:
    """Display texts of a column: numbers by ``fmt``, booleans yes/no, missing as None."""
    missing = series.isna().to_numpy()
    values = series.to_numpy(dtype=object)
    present = values[~missing]
    if (
        len(present)
        and all(isinstance(v, bool | np.bool_) for v in present[:50])
        and all(isinstance(v, bool | np.bool_) for v in present)
    ):
        texts = ["yes" if v else "no" for v in present]
    elif fmt and pd.api.types.is_numeric_dtype(series.dtype):
        nums = series.to_numpy()[~missing]
        if fmt.endswith("d"):  # integer formats on counts read back as floats
            nums = nums.astype(np.int64)
        texts = [format(v, fmt) for v in nums.tolist()]
    elif pd.api.types.is_float_dtype(series.dtype):
        texts = [str(int(v)) if v.is_integer() else str(v) for v in present.tolist()]
    else:
        texts = [str(v) for v in present.tolist()]
    out: list[str | None] = [None] * len(values)
    for i, t in zip(np.flatnonzero(~missing).tolist(), texts, strict=True):
        out[i] = t
    return out


def columns(
    frame: pd.DataFrame, spec: Sequence[tuple[str, str, str | None]]
) -> list[dict[str, Any]]:
    """Column-oriented attributes for the page script.

    Parameters
    ----------
    frame
        The table.
    spec
        ``(column, label, fmt)`` per attribute shown; ``fmt`` is a format spec for numbers.

    Returns
    -------
    list of dict
        One ``{"label", "v"[, "d"]}`` per column of ``spec`` that ``frame`` has. Values are
        display texts (booleans yes/no, missing values None); a column of few distinct texts
        gets a dictionary ``d``, and ``v`` holds positions in it.
    """
    return [_column(label, _texts(frame[name], fmt)) for name, label, fmt in spec
            if name in frame.columns]


def _column(label: str, texts: list[str | None]) -> dict[str, Any]:
    """One column of :func:`columns` from its display texts."""
    col: dict[str, Any] = {"label": label}
    distinct = sorted({t for t in texts if t is not None})
    if len(texts) > 20 and len(distinct) <= len(texts) // 3:
        pos = {t: i for i, t in enumerate(distinct)}
        col["d"] = distinct
        col["v"] = [None if t is None else pos[t] for t in texts]
    else:
        col["v"] = texts
    return col


def column_texts(col: dict[str, Any]) -> list[str | None]:
    """The display texts of a column of :func:`columns`, its dictionary resolved.

    Examples
    --------
    >>> column_texts(columns(pd.DataFrame({"x": ["a"] * 30}), [("x", "x", None)])[0])[:2]
    ['a', 'a']
    """
    d = col.get("d")
    return [v if d is None or v is None else d[v] for v in col["v"]]


def split_columns(cols: list[dict[str, Any]],
                  groups: Iterable[Sequence[int]]) -> Iterator[list[dict[str, Any]]]:
    """Groups of rows of the columns of :func:`columns`, each encoded as :func:`columns`
    would encode it (a map page's evidence per county comes from its layer's columns).

    Each column's texts are resolved once for all groups: resolving them per group cost a
    national page tens of CPU-minutes.

    Parameters
    ----------
    cols
        Columns from :func:`columns`.
    groups
        Per group, the positions of its rows, in order.

    Yields
    ------
    list of dict
        The columns of a group's rows; any other key of a column (``hide``) kept.

    Examples
    --------
    >>> cols = columns(pd.DataFrame({"x": list("abc")}), [("x", "name", None)])
    >>> list(split_columns(cols, [[2, 0], [1]]))
    [[{'label': 'name', 'v': ['c', 'a']}], [{'label': 'name', 'v': ['b']}]]
    """
    texts = []
    for col in cols:
        t = column_texts(col)
        resolved = np.empty(len(t), dtype=object)
        resolved[:] = t
        texts.append(resolved)
    extras = [{k: v for k, v in col.items() if k not in ("label", "v", "d")} for col in cols]
    for rows in groups:
        at = np.asarray(rows, dtype=np.intp)
        yield [{**_column(col["label"], t[at].tolist()), **extra}
               for col, t, extra in zip(cols, texts, extras, strict=True)]


def script_json(obj: Any) -> str:
    """JSON that is safe inside an HTML ``<script>``.

    Parameters
    ----------
    obj
        The data a page script is handed (layer data, legend texts, bounds): any JSON value.

    Returns
    -------
    str
        Compact JSON with ``<``, ``>``, ``&`` and the line separators escaped, so that no user
        text (``</script>``, ``<!--``) can end the script or start markup.
    """
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )
