"""The fibre extension planner: which villages to connect next, in what order, at what cost.

For every area (county by default) below its fibre target the planner grows the existing
network one village at a time, always connecting the unconnected administrative village whose
settlement point is nearest to any connected point, until the area reaches its target. The
connected points are the operational fibre access points inside the area's villages, the
settlement points of the area's fibre villages (any kind) and the villages planned so far.
This is Prim's minimum spanning tree grown from the existing network, with the whole network
contracted to one node: run to the end it is the shortest tree that connects every village,
and each step adds the shortest link available at that point.

Distances are straight lines in a metric CRS chosen per area with
:func:`ruralcov.crs.metric_crs` (a UTM zone for a county), times a route factor for the detours
a cable takes along roads. Prim runs on a sparse graph, not on all pairs: each village's link
to the network is the one to its nearest network point (a k-d tree query), and links between
villages are Delaunay edges of the unconnected villages, which contain every edge of the tree
(see :func:`grow_network`). The tree is the same as Prim's on the complete graph, found in
``O(n log n)``.

The engine (:func:`village_points`, :func:`grow_network`, :func:`plan_extension`) is pure;
the run-folder side (:func:`read_run_inputs`, :func:`write_plan`, :func:`plan_run`) reads a
folder written by ``ruralcov run`` and adds the plan's files to it.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from html import escape as _e
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
from numpy.typing import ArrayLike, NDArray
from scipy.spatial import Delaunay, QhullError, cKDTree

from ruralcov import aggregate, crs, join, schema
from ruralcov.errors import ConfigError, InputError, SchemaError
from ruralcov.schema import LEVELS, present_levels

__all__ = [
    "DEFAULT_ROUTE_FACTOR",
    "LINK_COLUMNS",
    "Plan",
    "PlanOptions",
    "RunInputs",
    "STOP_REASONS",
    "SUMMARY_COLUMNS",
    "grow_network",
    "plan_extension",
    "plan_result",
    "plan_run",
    "plan_section_html",
    "points_from_file",
    "read_codes",
    "read_run_inputs",
    "village_points",
    "write_plan",
]

#: Cable length / straight-line length. Cables follow roads and field edges; measured road
#: circuity is about 1.2 in cities (Newell 1980), 1.26 for South Korea as a whole and up to
#: 1.44 in its mountainous provinces (Kim et al. 2015, J. Korean Soc. Agric. Eng. 57(4)).
#: 1.3 sits between flat and mountainous rural terrain; pass a measured value when known.
DEFAULT_ROUTE_FACTOR = 1.3

#: Why an area's plan ended, in ``plan_summary_<level>.csv``.
STOP_REASONS: dict[str, str] = {
    "on_target": "already at or above the target: nothing to connect",
    "target_reached": "the planned villages bring the area to its target",
    "all_connected": "every unconnected village is planned (connect-all)",
    "budget": "the next link would exceed the budget",
    "max_link": "the next link is longer than the maximum link length; the villages still "
    "needed are flagged for wireless or satellite",
    "no_candidates": "no unconnected village with a point is left (the rest have no "
    "geometry or are excluded)",
    "no_network": "the area has no access point and no fibre village to grow from",
}

LINK_COLUMNS: tuple[str, ...] = (
    "level",
    "area_code",
    "area_name",
    "order",
    "village_code",
    "village_name",
    "status",
    "connects_to",
    "connects_to_kind",
    "straight_km",
    "link_km",
    "cost",
    "cumulative_villages",
    "cumulative_share",
    "cumulative_km",
    "cumulative_cost",
    "lon",
    "lat",
)

SUMMARY_COLUMNS: tuple[str, ...] = (
    "level",
    "code",
    "name",
    "villages",
    "fibre_villages",
    "fibre_share",
    "fibre_target",
    "fibre_gap_villages",
    "to_connect",
    "unconnected_with_point",
    "unconnected_without_point",
    "excluded",
    "network_points",
    "planned_villages",
    "planned_km",
    "planned_cost",
    "fibre_villages_after",
    "fibre_share_after",
    "target_reached",
    "flagged_villages",
    "stop_reason",
    "metric_crs",
)

_FIBRE, _FLAGGED = "fibre", "wireless_or_satellite"
#: The files a plan owns in a run folder (an earlier plan's are removed before writing).
_PLAN_FILE = re.compile(r"tables/plan\.csv|tables/plan_summary_[a-z]+\.csv|plan\.parquet")


@dataclass(frozen=True)
class PlanOptions:
    """What to plan. Every option has a default; ``None`` means "not set"."""

    #: Fibre share to reach per area; ``None``: the run's ``[targets] fibre_share``.
    target: float | None = None
    #: Area level planned separately (``province``, ``city``, ``county`` or ``township``).
    level: str = "county"
    #: Cost of one kilometre of cable (any currency); ``None``: costs are left empty.
    cost_per_km: float | None = None
    #: Cable length / straight-line length, see :data:`DEFAULT_ROUTE_FACTOR`.
    route_factor: float = DEFAULT_ROUTE_FACTOR
    #: Plan every unconnected village instead of stopping at the target.
    connect_all: bool = False
    #: Village codes never to plan (e.g. scheduled for relocation); they stay in the
    #: denominator.
    exclude: frozenset[str] = field(default_factory=frozenset)
    #: Longest link (cable km) worth building; the villages still needed beyond it are
    #: flagged for wireless or satellite.
    max_link_km: float | None = None
    #: Cost cap per area; the plan stops before the link that would exceed it.
    budget: float | None = None

    def check(self) -> None:
        """Raise :class:`ConfigError` naming the first option out of range."""
        if self.target is not None and not 0 < self.target <= 1:
            raise ConfigError(f"plan target must be in (0, 1], got {self.target}")
        if self.level not in LEVELS:
            raise ConfigError(
                f"plan `level` was {self.level!r} but is expected to be in {list(LEVELS)}"
            )
        if self.cost_per_km is not None and not self.cost_per_km >= 0:
            raise ConfigError(f"cost per km must be zero or positive, got {self.cost_per_km}")
        if not self.route_factor >= 1:
            raise ConfigError(
                f"route factor must be at least 1 (a cable is never shorter than the straight "
                f"line), got {self.route_factor}"
            )
        if self.max_link_km is not None and not self.max_link_km > 0:
            raise ConfigError(f"maximum link length must be positive km, got {self.max_link_km}")
        if self.budget is not None:
            if not self.budget >= 0:
                raise ConfigError(f"budget must be zero or positive, got {self.budget}")
            if self.cost_per_km is None:
                raise ConfigError("a budget needs a cost per km (--cost-per-km)")


@dataclass(frozen=True)
class Plan:
    """A plan: one row per planned or flagged village, and one summary row per area."""

    #: :data:`LINK_COLUMNS` + ``geometry``: the link from the village's point to the point it
    #: connects to (EPSG:4326 LineString), ordered by area and order.
    links: gpd.GeoDataFrame
    #: :data:`SUMMARY_COLUMNS`, one row per area of the level (areas on target included).
    summary: pd.DataFrame
    options: PlanOptions
    #: The target actually used (the option, or the run's).
    target: float


# --------------------------------------------------------------------------- points


def village_points(
    villages: gpd.GeoDataFrame, *, points: Mapping[str, Any] | pd.Series | None = None
) -> gpd.GeoSeries:
    """The settlement point of each village, aligned to ``villages`` (EPSG:4326).

    A configured village-committee point wins when ``points`` (village code -> shapely Point in
    EPSG:4326) has one; otherwise ``shapely.point_on_surface`` of the polygon: unlike the
    centroid it always lies inside the village, even a crescent-shaped or multi-part one, so a
    link never ends in a neighbour. Villages with neither are missing (they cannot be planned).

    Examples
    --------
    >>> from shapely import Point, box
    >>> v = gpd.GeoDataFrame({"village_code": ["A", "B"]},
    ...                      geometry=[box(0, 0, 2, 2), None], crs="EPSG:4326")
    >>> village_points(v, points={"B": Point(5, 5)}).to_wkt().tolist()
    ['POINT (1 1)', 'POINT (5 5)']
    """
    geoms = np.asarray(villages.geometry.values, dtype=object)
    usable = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    out = np.full(len(geoms), None, dtype=object)
    out[usable] = shapely.point_on_surface(geoms[usable])
    if points is not None:
        given = pd.Series(points, dtype=object) if not isinstance(points, pd.Series) else points
        mapped = villages["village_code"].map(given)
        mapped = mapped.astype(object).where(mapped.notna(), None).to_numpy(dtype=object)
        ok = ~shapely.is_missing(mapped) & ~shapely.is_empty(mapped)
        out[ok] = mapped[ok]
    return gpd.GeoSeries(out, index=villages.index, crs="EPSG:4326", name="point")


# --------------------------------------------------------------------------- Prim


def _candidate_edges(xy: NDArray[np.float64]) -> NDArray[np.intp]:
    """Pairs (i, j) that contain every Euclidean minimum spanning tree edge of ``xy``.

    Delaunay edges in general; all pairs for three points or fewer; consecutive points along
    the line when all points are collinear (Qhull refuses those, and there the chain is the
    triangulation). Points Qhull drops as duplicates get the edges of the vertex they repeat.
    """
    n = len(xy)
    if n <= 3:
        i, j = np.triu_indices(n, k=1)
        return np.column_stack([i, j]).astype(np.intp)
    try:
        tri = Delaunay(xy)
    except QhullError:
        centred = xy - xy.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        order = np.argsort(centred @ vt[0], kind="stable")
        return np.column_stack([order[:-1], order[1:]]).astype(np.intp)
    s = tri.simplices
    pairs = np.vstack([s[:, [0, 1]], s[:, [1, 2]], s[:, [0, 2]]])
    if len(tri.coplanar):
        indptr, indices = tri.vertex_neighbor_vertices
        extra = []
        for p, _, v in tri.coplanar:
            extra.append((p, v))
            extra.extend((p, w) for w in indices[indptr[v] : indptr[v + 1]])
        pairs = np.vstack([pairs, np.asarray(extra, dtype=np.intp)])
    pairs = np.sort(pairs, axis=1)
    return np.unique(pairs, axis=0).astype(np.intp)


def grow_network(
    network_xy: ArrayLike,
    candidate_xy: ArrayLike,
    *,
    network_rank: ArrayLike | None = None,
    candidate_rank: ArrayLike | None = None,
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]:
    """Prim's order of connecting every candidate to a network, in a plane (metres).

    Parameters
    ----------
    network_xy
        ``(m, 2)`` points already connected (m ≥ 1).
    candidate_xy
        ``(n, 2)`` points to connect.
    network_rank, candidate_rank
        Tie-breaks: among equally long links the lowest candidate rank goes first, and it
        connects to the lowest-ranked point (network points before candidates). Default:
        positions.

    Returns
    -------
    order, via, length
        ``order[k]`` is the candidate connected at step ``k``; ``via[k]`` the point it
        connects to (``0..m-1``: a network point, ``m + j``: candidate ``j``, connected
        earlier); ``length[k]`` the straight-line length. All links together are the minimum
        spanning tree of the candidates with the network contracted to one node.

    Notes
    -----
    With the network contracted into one node, a candidate's only link to it is the one to
    its nearest network point (a k-d tree query), and a link between two candidates is in the
    tree only if no third candidate lies in the circle over it as a diameter (else the two
    shorter links around that candidate would replace it): a Gabriel edge, hence a Delaunay
    edge of the candidates alone. Prim on that sparse graph takes the same steps as Prim on
    all pairs, in ``O((m + n) log(m + n))``; only among exactly equal links may it take
    another of the tied ones (the triangulation of co-circular or repeated points need not
    hold them all), which leaves the total length unchanged.

    Examples
    --------
    >>> order, via, length = grow_network([[0, 0]], [[3, 0], [1, 0], [1, 5]])
    >>> order.tolist(), via.tolist(), length.tolist()
    ([1, 0, 2], [0, 2, 2], [1.0, 2.0, 5.0])
    """
    net = np.asarray(network_xy, dtype=float).reshape(-1, 2)
    cand = np.asarray(candidate_xy, dtype=float).reshape(-1, 2)
    m, n = len(net), len(cand)
    if m == 0:
        raise ValueError("grow_network needs at least one network point to grow from")
    if n == 0:
        return np.empty(0, np.intp), np.empty(0, np.intp), np.empty(0)
    nrank = np.arange(m) if network_rank is None else np.asarray(network_rank)
    crank = np.arange(n) if candidate_rank is None else np.asarray(candidate_rank)
    # dense ranks of every point for the heap keys: network first, then candidates
    net_key = np.argsort(np.argsort(nrank, kind="stable"), kind="stable")
    cand_key = np.argsort(np.argsort(crank, kind="stable"), kind="stable")
    key_to_point = np.empty(m + n, dtype=np.intp)
    key_to_point[net_key] = np.arange(m)
    key_to_point[m + cand_key] = m + np.arange(n)

    # the link of each candidate to the network: its nearest network point (lowest rank of
    # the equally near ones among the 8 nearest)
    k = min(8, m)
    _, idx = cKDTree(net).query(cand, k=k)
    idx = idx.reshape(n, k)
    # the same formula as for links between candidates, so that equal lengths tie exactly
    dist = np.hypot(cand[:, None, 0] - net[idx, 0], cand[:, None, 1] - net[idx, 1])
    tied = dist == dist.min(axis=1, keepdims=True)
    pick = np.argmin(np.where(tied, net_key[idx], m + n), axis=1)
    src_w = dist[np.arange(n), pick]
    src_key = net_key[idx[np.arange(n), pick]]

    # links between candidates: Delaunay edges of the candidates, in CSR form both ways
    pairs = _candidate_edges(cand)
    a, b = pairs[:, 0], pairs[:, 1]
    w = np.hypot(cand[a, 0] - cand[b, 0], cand[a, 1] - cand[b, 1])
    src, dst, ww = np.concatenate([a, b]), np.concatenate([b, a]), np.concatenate([w, w])
    sort = np.argsort(src, kind="stable")
    src, dst, ww = src[sort], dst[sort], ww[sort]
    indptr = np.searchsorted(src, np.arange(n + 1))
    dst_l, ww_l, indptr_l = dst.tolist(), ww.tolist(), indptr.tolist()
    ckey = cand_key.tolist()

    heap = [
        (w_, ckey[j], int(s_), j)
        for j, (w_, s_) in enumerate(zip(src_w.tolist(), src_key.tolist(), strict=True))
    ]
    heapq.heapify(heap)
    done = [False] * n
    order = np.empty(n, dtype=np.intp)
    via = np.empty(n, dtype=np.intp)
    length = np.empty(n)
    step = 0
    while heap and step < n:
        d, _, vk, j = heapq.heappop(heap)
        if done[j]:
            continue
        done[j] = True
        order[step], via[step], length[step] = j, key_to_point[vk], d
        step += 1
        for e in range(indptr_l[j], indptr_l[j + 1]):
            t = dst_l[e]
            if not done[t]:
                heapq.heappush(heap, (ww_l[e], ckey[t], m + ckey[j], t))
    if step < n:  # pragma: no cover - every candidate has its link to the network
        raise AssertionError("a candidate was never reached; this is a bug in ruralcov")
    return order, via, length


# --------------------------------------------------------------------------- the plan


def _target(options: PlanOptions, run_target: float | None) -> float:
    if options.target is not None:
        return float(options.target)
    if run_target is not None:
        return float(run_target)
    from ruralcov.config import TargetsConfig

    return float(TargetsConfig().fibre_share)


def _needed_by_gap(n_villages: int, n_fibre: int, target: Fraction) -> int:
    return int(aggregate.gap_villages(n_villages, n_fibre, target))


def _check_villages(villages: pd.DataFrame, level: str) -> None:
    need = ["village_code", "kind", "fibre", f"{level}_code"]
    missing = [c for c in need if c not in villages.columns]
    if missing:
        raise SchemaError(
            f"villages: column(s) {missing} needed by the planner are missing; plan a run "
            "folder written by `ruralcov run`, or a level the register has"
        )
    if villages[f"{level}_code"].isna().all():
        raise ConfigError(
            f"the register has no {level} codes; choose another --level "
            f"(levels with codes: {present_levels(villages)})"
        )


def plan_extension(
    villages: gpd.GeoDataFrame,
    access_points: gpd.GeoDataFrame | None = None,
    *,
    options: PlanOptions | None = None,
    run_target: float | None = None,
    points: Mapping[str, Any] | pd.Series | None = None,
    progress: Callable[[str], None] | None = None,
) -> Plan:
    """Plan the fibre extension of every area of ``options.level``.

    Parameters
    ----------
    villages
        The run's village table (``CoverageResult.villages`` or ``villages.parquet``):
        ``village_code, village_name, kind, fibre, <level>_code, <level>_name`` and polygons
        in EPSG:4326.
    access_points
        Operational fibre access points (Points, EPSG:4326) with an ``asset_id`` column. Each
        belongs to the area of the village polygon covering it (the lowest village code on a
        shared edge); points outside every village are not used.
    options
        :class:`PlanOptions`; defaults to growing each area to the run's target.
    run_target
        The run's ``[targets] fibre_share``, used when ``options.target`` is None (default:
        the default profile's target, 0.98).
    points
        Village-committee points by village code (see :func:`village_points`).
    progress
        Called with each area code as its plan starts.

    Returns
    -------
    Plan
        In ``links``, villages with ``status = "fibre"`` are the plan, in order; villages
        with ``status = "wireless_or_satellite"`` are the ones still needed that lie beyond
        ``max_link_km`` from the grown network (their ``link_km`` is that distance; they add
        nothing to the cumulative columns).
    """
    options = options or PlanOptions()
    options.check()
    level = options.level
    _check_villages(villages, level)
    target = _target(options, run_target)
    frac = aggregate.target_fraction(target)
    codes = villages["village_code"].astype(str)
    unknown = sorted(set(options.exclude) - set(codes))
    if unknown:
        raise ConfigError(
            f"{len(unknown)} excluded code(s) are not in the register, e.g. {unknown[:3]}; "
            "check the exclusion list"
        )
    tell = progress or (lambda area: None)
    pts = village_points(villages, points=points)
    has_pt = ~(shapely.is_missing(pts.values) | shapely.is_empty(pts.values))
    area_col = villages[f"{level}_code"]
    name_col = villages.get(f"{level}_name")

    ap_area = pd.Series(dtype=object)
    ap = access_points
    if ap is not None and len(ap):
        ap = ap[~(ap.geometry.isna() | ap.geometry.is_empty)]
        where = join.assign_points(
            ap.geometry.values,
            villages.geometry.values,
            priority=codes.rank(method="dense").to_numpy(),
        )
        ap = ap[where >= 0]
        ap_area = pd.Series(area_col.to_numpy()[where[where >= 0]], index=ap.index)

    link_rows: list[dict[str, Any]] = []
    summary_rows: list[dict[str, Any]] = []
    is_village = (villages["kind"] == "village").to_numpy()
    fibre = villages["fibre"].fillna(False).astype(bool).to_numpy()
    excluded = codes.isin(options.exclude).to_numpy()
    arrays = _Arrays(
        codes=codes.to_numpy(dtype=object),
        names=(
            villages["village_name"].to_numpy(dtype=object)
            if "village_name" in villages.columns
            else None
        ),
        points=np.asarray(pts.values, dtype=object),
    )
    area_values = area_col.to_numpy(dtype=object)
    area_names = name_col.to_numpy(dtype=object) if name_col is not None else None
    groups = pd.Series(np.arange(len(villages))).groupby(area_values, sort=True).indices
    ap_groups = (
        pd.Series(np.arange(len(ap_area))).groupby(ap_area.to_numpy(dtype=object)).indices
        if len(ap_area)
        else {}
    )
    for area, rows_of_area in groups.items():
        tell(area)
        in_area = np.zeros(len(villages), dtype=bool)
        in_area[rows_of_area] = True
        name = None
        if area_names is not None:
            known = [n for n in area_names[rows_of_area] if isinstance(n, str)]
            name = known[0] if known else None
        n_v = int((in_area & is_village).sum())
        n_f = int((in_area & is_village & fibre).sum())
        gap = _needed_by_gap(n_v, n_f, frac)
        unconnected = in_area & is_village & ~fibre
        cand = unconnected & ~excluded & has_pt
        net_v = in_area & fibre & has_pt
        area_ap = ap.iloc[ap_groups[area]] if ap is not None and area in ap_groups else None
        to_connect = int(cand.sum()) if options.connect_all else gap
        row = {
            "level": level,
            "code": area,
            "name": name,
            "villages": n_v,
            "fibre_villages": n_f,
            "fibre_share": n_f / n_v if n_v else np.nan,
            "fibre_target": target,
            "fibre_gap_villages": gap,
            "to_connect": to_connect,
            "unconnected_with_point": int((unconnected & has_pt).sum()),
            "unconnected_without_point": int((unconnected & ~has_pt).sum()),
            "excluded": int((unconnected & excluded).sum()),
            "network_points": int(net_v.sum()) + (0 if area_ap is None else len(area_ap)),
        }
        links, stop, crs_text = _plan_area(
            arrays, cand, net_v, area_ap, n_v, n_f, to_connect, options
        )
        for link in links:
            link.update(level=level, area_code=area, area_name=name)
        link_rows.extend(links)
        planned = [lk for lk in links if lk["status"] == _FIBRE]
        if stop == "all_connected" and len(planned) < int(unconnected.sum()):
            stop = "no_candidates"  # villages without a point or excluded are left
        km = float(sum(lk["link_km"] for lk in planned))
        after = n_f + len(planned)
        row.update(
            planned_villages=len(planned),
            planned_km=km,
            planned_cost=km * options.cost_per_km if options.cost_per_km is not None else np.nan,
            fibre_villages_after=after,
            fibre_share_after=after / n_v if n_v else np.nan,
            target_reached=_needed_by_gap(n_v, after, frac) == 0,
            flagged_villages=len(links) - len(planned),
            stop_reason=stop,
            metric_crs=crs_text,
        )
        summary_rows.append(row)

    summary = pd.DataFrame(summary_rows, columns=list(SUMMARY_COLUMNS))
    frame = pd.DataFrame(link_rows, columns=[*LINK_COLUMNS, "geometry"])
    links_gdf = gpd.GeoDataFrame(
        frame.drop(columns="geometry"),
        geometry=gpd.GeoSeries(frame["geometry"].to_numpy(dtype=object), crs="EPSG:4326"),
    )
    links_gdf["order"] = links_gdf["order"].astype("int64")
    links_gdf["cumulative_villages"] = links_gdf["cumulative_villages"].astype("int64")
    for col in (
        "straight_km",
        "link_km",
        "cost",
        "cumulative_share",
        "cumulative_km",
        "cumulative_cost",
        "lon",
        "lat",
    ):
        links_gdf[col] = links_gdf[col].astype(float)
    return Plan(links=links_gdf, summary=summary, options=options, target=target)


def plan_result(
    result: Any,
    options: PlanOptions | None = None,
    *,
    points: Mapping[str, Any] | pd.Series | None = None,
) -> Plan:
    """:func:`plan_extension` of a :class:`~ruralcov.pipeline.CoverageResult`: its villages,
    its operational access points and its target.

    Examples
    --------
    >>> plan = plan_result(ruralcov.analyse(config), PlanOptions(cost_per_km=6e4))  # doctest: +SKIP
    """
    assets = result.fibre_points
    operational = assets[assets["operational"].astype(bool) & (assets.geom_type == "Point")]
    return plan_extension(
        result.villages,
        operational,
        options=options,
        run_target=result.config.targets.fibre_share,
        points=points,
    )


@dataclass(frozen=True)
class _Arrays:
    """Per-village columns as arrays, taken once for all areas."""

    codes: NDArray[np.object_]
    names: NDArray[np.object_] | None
    points: NDArray[np.object_]


def _area_crs(bounds: tuple[float, float, float, float]) -> pyproj.CRS:
    """:func:`ruralcov.crs.metric_crs`, remembered per UTM zone.

    Within the UTM limits that function returns the zone of the extent's centre, so every area
    whose centre lies in the same zone gets the same CRS; the database query behind it costs
    ~0.2 s, which over a province's counties would dominate the plan.
    """
    west, south, east, north = bounds
    if east - west <= 6.0 and -80.0 <= south and north <= 84.0:
        lon0, lat0 = (west + east) / 2.0, (south + north) / 2.0
        key = (int((lon0 + 180.0) // 6.0) % 60, lat0 >= 0)
        if key not in _ZONE_CRS:
            _ZONE_CRS[key] = crs.metric_crs(bounds)
        return _ZONE_CRS[key]
    return crs.metric_crs(bounds)


_ZONE_CRS: dict[tuple[int, bool], pyproj.CRS] = {}


@functools.lru_cache(maxsize=64)
def _to_metric(metric: pyproj.CRS) -> pyproj.Transformer:
    # building a transformer costs a few ms: noticeable over a province's townships
    return pyproj.Transformer.from_crs("EPSG:4326", metric, always_xy=True)


def _plan_area(
    arrays: _Arrays,
    cand: NDArray[np.bool_],
    net_v: NDArray[np.bool_],
    area_ap: gpd.GeoDataFrame | None,
    n_v: int,
    n_f: int,
    to_connect: int,
    options: PlanOptions,
) -> tuple[list[dict[str, Any]], str, str | None]:
    """The links of one area, why its plan stopped, and the metric CRS used."""
    if to_connect == 0:
        return [], "all_connected" if options.connect_all else "on_target", None
    if not cand.any():
        return [], "no_candidates", None
    codes, names, pts = arrays.codes, arrays.names, arrays.points
    net_geoms = list(pts[net_v])
    net_labels = list(codes[net_v])
    net_kinds = ["fibre_village"] * len(net_labels)
    if area_ap is not None and len(area_ap):
        net_geoms += list(area_ap.geometry.values)
        net_labels += [str(a) for a in area_ap["asset_id"]]
        net_kinds += ["access_point"] * len(area_ap)
    if not net_geoms:
        return [], "no_network", None
    cand_geoms = pts[cand]
    cand_pos = np.flatnonzero(cand)
    all_geoms = np.concatenate([np.asarray(net_geoms, dtype=object), cand_geoms])
    lonlat = shapely.get_coordinates(all_geoms)
    west, south = lonlat.min(axis=0)
    east, north = lonlat.max(axis=0)
    metric = _area_crs((float(west), float(south), float(east), float(north)))
    x, y = _to_metric(metric).transform(lonlat[:, 0], lonlat[:, 1])
    xy = np.column_stack([x, y])
    m = len(net_geoms)
    # ties: access points and villages by their label text, like the boundary rule
    labels = np.asarray(net_labels + list(codes[cand_pos]), dtype=object)
    rank = pd.Series(labels).rank(method="dense").to_numpy()
    order, via, length = grow_network(
        xy[:m], xy[m:], network_rank=rank[:m], candidate_rank=rank[m:]
    )
    factor = options.route_factor
    cable_km = length / 1000.0 * factor
    n_plan = min(to_connect, len(order))
    stop = "all_connected" if options.connect_all else "target_reached"
    if to_connect > len(order):
        stop = "no_candidates"
    cost = options.cost_per_km
    if options.max_link_km is not None:
        too_long = np.flatnonzero(cable_km[:n_plan] > options.max_link_km)
        if len(too_long):
            n_plan, stop = int(too_long[0]), "max_link"
    if options.budget is not None and cost is not None:
        spent = np.cumsum(cable_km[:n_plan] * cost)
        over = np.flatnonzero(spent > options.budget * (1 + 1e-12))
        if len(over):
            n_plan, stop = int(over[0]), "budget"

    rows = []
    cum_km = 0.0
    for k in range(n_plan):
        j = order[k]
        v = via[k]
        cum_km += cable_km[k]
        to_label = labels[v]
        kind = net_kinds[v] if v < m else "planned_village"
        rows.append(
            _link_row(
                k + 1,
                cand_pos[j],
                codes,
                names,
                _FIBRE,
                to_label,
                kind,
                length[k] / 1000.0,
                cable_km[k],
                cost,
                k + 1,
                n_f + k + 1,
                n_v,
                cum_km,
                cand_geoms[j],
                all_geoms[v],
            )
        )
    if stop == "max_link":
        # every village left is beyond the limit from the grown network; flag the nearest
        # ones still needed (all of them with connect-all), nearest first
        left = np.setdiff1d(np.arange(len(cand_geoms)), order[:n_plan])
        grown = np.concatenate([np.arange(m), m + order[:n_plan]])
        dist, nearest = cKDTree(xy[grown]).query(xy[m + left])
        nearest = grown[nearest]
        sort = np.lexsort((rank[m + left], dist))
        n_flag = len(left) if options.connect_all else min(to_connect - n_plan, len(left))
        for i in sort[:n_flag]:
            j, v = left[i], nearest[i]
            rows.append(
                _link_row(
                    len(rows) + 1,
                    cand_pos[j],
                    codes,
                    names,
                    _FLAGGED,
                    labels[v],
                    net_kinds[v] if v < m else "planned_village",
                    dist[i] / 1000.0,
                    dist[i] / 1000.0 * factor,
                    cost,
                    n_plan,
                    n_f + n_plan,
                    n_v,
                    cum_km,
                    cand_geoms[j],
                    all_geoms[v],
                )
            )
    return rows, stop, metric.to_string()


def _link_row(
    order: int,
    pos: int,
    codes: NDArray,
    names: NDArray | None,
    status: str,
    to: str,
    to_kind: str,
    straight_km: float,
    link_km: float,
    cost_per_km: float | None,
    planned: int,
    fibre_after: int,
    n_v: int,
    cum_km: float,
    start: Any,
    end: Any,
) -> dict[str, Any]:
    fibre = status == _FIBRE
    return {
        "order": order,
        "village_code": codes[pos],
        "village_name": None if names is None else names[pos],
        "status": status,
        "connects_to": to,
        "connects_to_kind": to_kind,
        "straight_km": float(straight_km),
        "link_km": float(link_km),
        "cost": float(link_km * cost_per_km) if fibre and cost_per_km is not None else np.nan,
        "cumulative_villages": planned,
        "cumulative_share": fibre_after / n_v if n_v else np.nan,
        "cumulative_km": float(cum_km),
        "cumulative_cost": float(cum_km * cost_per_km) if cost_per_km is not None else np.nan,
        "lon": start.x,
        "lat": start.y,
        "geometry": shapely.LineString([(start.x, start.y), (end.x, end.y)]),
    }


# --------------------------------------------------------------------------- run folder


@dataclass(frozen=True)
class RunInputs:
    """What the planner needs from a run folder."""

    folder: Path
    villages: gpd.GeoDataFrame
    #: Operational access points of every ``access_points`` / ``ofds`` fibre source.
    access_points: gpd.GeoDataFrame
    #: The run's ``[targets] fibre_share``.
    target: float
    manifest: dict[str, Any]


def read_run_inputs(folder: Path | str) -> RunInputs:
    """Read ``villages.parquet``, ``config.toml`` and ``manifest.json`` of a run folder, and
    the operational access points from the fibre inputs the configuration lists.

    The fibre inputs must be the files the run used: a file whose sha256 differs from the
    manifest's is an :class:`InputError` (the plan would contradict the run's numbers).
    """
    from ruralcov.config import load_config
    from ruralcov.loaders import load_fibre
    from ruralcov.report import sha256_file
    from ruralcov.runfolder import read_manifest

    folder = Path(folder)
    for name in ("villages.parquet", "config.toml", "manifest.json"):
        if not (folder / name).is_file():
            raise InputError(
                f"{str(folder)!r} is not a ruralcov run folder ({name} is missing); "
                "give the folder written by `ruralcov run` or `ruralcov demo`"
            )
    manifest = read_manifest(folder)
    config = load_config(folder / "config.toml")
    villages = gpd.read_parquet(folder / "villages.parquet")
    if villages.crs is not None and not villages.crs.equals("EPSG:4326"):
        villages = villages.to_crs("EPSG:4326")
    hashes = {rec.get("layer"): rec.get("sha256") for rec in manifest.get("inputs", [])}
    frames = []
    for i, source in enumerate(config.fibre):
        if source.kind not in ("access_points", "ofds"):
            continue
        layer = f"fibre[{i}]"
        path = Path(source.path) if source.path is not None else None
        if path is None or not path.exists():
            raise InputError(
                f"{layer}: input {str(path)!r} listed in {folder / 'config.toml'} is missing; "
                "the planner needs the run's fibre access points"
            )
        if path.is_file() and hashes.get(layer) and sha256_file(path) != hashes[layer]:
            raise InputError(
                f"{layer}: {str(path)!r} changed since the run (its sha256 differs from "
                "manifest.json); run `ruralcov run` again before planning"
            )
        loaded, _ = load_fibre(source, i, villages["village_code"])
        frame = loaded.frame
        frames.append(frame[(frame["role"] == "points") & frame["operational"].astype(bool)])
    if frames:
        aps = pd.concat(frames, ignore_index=True)
    else:
        aps = gpd.GeoDataFrame({"asset_id": []}, geometry=gpd.GeoSeries([], crs="EPSG:4326"))
    return RunInputs(
        folder=folder,
        villages=villages,
        access_points=gpd.GeoDataFrame(aps, geometry="geometry", crs="EPSG:4326"),
        target=float(config.targets.fibre_share),
        manifest=manifest,
    )


def _csv(frame: pd.DataFrame, path: Path) -> None:
    """CSV as the run's other tables: UTF-8 with BOM, CRLF, TRUE/FALSE, codes as text."""
    from ruralcov.report import _for_csv

    out = _for_csv(pd.DataFrame(frame))
    for col in out.columns:
        if col.endswith("_km"):
            out[col] = out[col].round(3)  # metres
        elif col.endswith("cost"):
            out[col] = out[col].round(2)
        elif col in ("lon", "lat"):
            out[col] = out[col].round(7)  # about 1 cm
    _atomic(
        path, lambda tmp: out.to_csv(tmp, index=False, encoding="utf-8-sig", lineterminator="\r\n")
    )


def _atomic(path: Path, write: Callable[[Path], Any]) -> None:
    """Write through a temporary sibling so a failed write never leaves half a file."""
    from ruralcov.outdir import unique_name

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = unique_name(path.with_name(f".{path.name}"), "tmp")  # made by ``write``, with the umask
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fmt_km(value: float) -> str:
    return f"{value:,.1f}"


def plan_section_html(plan: Plan) -> str:
    """The plan as an HTML section for ``report.html`` (every value escaped)."""
    from ruralcov.report import html_table

    s = plan.summary
    o = plan.options
    below = s[s["fibre_gap_villages"] > 0]
    fibre = plan.links[plan.links["status"] == _FIBRE]
    cost = (
        f" at {o.cost_per_km:,.2f} per km: {fibre['cost'].sum():,.0f}"
        if o.cost_per_km is not None
        else " (no cost per km given)"
    )
    rules = [f"target {100 * plan.target:g} %", f"route factor {o.route_factor:g}"]
    if o.connect_all:
        rules.append("connect all")
    if o.exclude:
        rules.append(f"{len(o.exclude)} villages excluded")
    if o.max_link_km is not None:
        rules.append(f"maximum link {o.max_link_km:g} km")
    if o.budget is not None:
        rules.append(f"budget {o.budget:,.0f} per area")
    parts = [
        '<section id="plan">',
        "<h2>Fibre extension plan</h2>",
        f"<p>{_e('; '.join(rules))}. {len(below):,} of {len(s):,} {_e(o.level)} areas are "
        f"below the target. The plan connects {len(fibre):,} villages with "
        f"{_e(_fmt_km(fibre['link_km'].sum()))} km of cable{_e(cost)}; "
        f"{int(s['target_reached'].sum()):,} of {len(s):,} areas are at or above the target "
        "afterwards; "
        f"{int(s['flagged_villages'].sum()):,} villages are flagged for wireless or "
        "satellite.</p>",
        "<p>Each step connects the unconnected village whose settlement point is nearest to the "
        "network (access points, fibre villages, villages planned before it): Prim's minimum "
        "spanning tree grown from what exists. Cable length = straight line in the area's "
        "metric CRS × route factor.</p>",
    ]
    shown = s[(s["planned_villages"] > 0) | (s["fibre_gap_villages"] > 0)]
    shown = shown.sort_values(["planned_km", "code"], ascending=[False, True], kind="stable")
    shown = shown.assign(
        planned_km=[f"{v:,.1f}" for v in shown["planned_km"]],
        planned_cost=["" if pd.isna(v) else f"{v:,.0f}" for v in shown["planned_cost"]],
    )
    if len(shown):
        parts.append(
            html_table(
                shown,
                [
                    "code",
                    "name",
                    "villages",
                    "fibre_share",
                    "fibre_gap_villages",
                    "planned_villages",
                    "planned_km",
                    "planned_cost",
                    "fibre_share_after",
                    "flagged_villages",
                    "stop_reason",
                ],
            )
        )
    parts.append(
        f'<p>Village by village: <a href="tables/plan.csv">tables/plan.csv</a>; per area: '
        f'<a href="tables/plan_summary_{_e(o.level)}.csv">tables/plan_summary_'
        f'{_e(o.level)}.csv</a>; the links as lines: <a href="plan.parquet">plan.parquet</a> '
        "(GeoParquet).</p>"
    )
    parts.append("</section>")
    return "\n".join(parts)


def _options_json(plan: Plan) -> dict[str, Any]:
    raw = dataclasses.asdict(plan.options)
    raw["exclude"] = sorted(plan.options.exclude)
    raw["target"] = plan.target
    return raw


def write_plan(plan: Plan, folder: Path | str) -> list[Path]:
    """Add the plan to a run folder and return the files written.

    Writes ``tables/plan.csv`` (every planned and flagged village),
    ``tables/plan_summary_<level>.csv`` and ``plan.parquet`` (the proposed fibre links only,
    for the maps) and puts a plan section into ``report.html``. ``manifest.json`` gets a
    ``plan`` entry with the options and the sha256 of each plan file, and the new hash of
    ``report.html`` under ``outputs``. The plan files stay out of ``outputs`` on purpose:
    that list is what ``ruralcov run`` writes and ``ruralcov verify`` recomputes, and a plan
    is a later step with options of its own. The files of an earlier plan are replaced,
    including a summary of another level.
    """
    from ruralcov.report import add_report_section, sha256_file
    from ruralcov.runfolder import read_manifest

    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    manifest = read_manifest(folder)
    for old in (manifest.get("plan") or {}).get("outputs", {}):
        if _PLAN_FILE.fullmatch(str(old)):  # never anything the run itself wrote
            (folder / old).unlink(missing_ok=True)
    level = plan.options.level
    written = [
        folder / "tables" / "plan.csv",
        folder / "tables" / f"plan_summary_{level}.csv",
        folder / "plan.parquet",
    ]
    _csv(plan.links.drop(columns="geometry"), written[0])
    _csv(plan.summary, written[1])
    fibre = plan.links[plan.links["status"] == _FIBRE].reset_index(drop=True)
    _atomic(written[2], lambda tmp: fibre.to_parquet(tmp, index=False))
    report = folder / "report.html"
    if report.is_file():
        add_report_section(report, "plan", plan_section_html(plan))
        outputs = dict(manifest.get("outputs", {}))
        outputs["report.html"] = sha256_file(report)
        manifest["outputs"] = dict(sorted(outputs.items()))
    is_fibre = plan.links["status"] == _FIBRE
    manifest["plan"] = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "options": _options_json(plan),
        "planned_villages": int(is_fibre.sum()),
        "planned_km": float(plan.links.loc[is_fibre, "link_km"].sum()),
        "flagged_villages": int((~is_fibre).sum()),
        "outputs": {p.relative_to(folder).as_posix(): sha256_file(p) for p in written},
    }
    _atomic(
        manifest_path,
        lambda tmp: tmp.write_text(
            json.dumps(manifest, ensure_ascii=False, indent=2, allow_nan=False) + "\n",
            encoding="utf-8",
        ),
    )
    return written if not report.is_file() else [*written, report]


def read_codes(path: Path | str) -> frozenset[str]:
    """Village codes from a text file: one per line (first comma-separated field); blank
    lines, ``#`` comments and a header ``code`` / ``village_code`` are skipped. Codes a
    spreadsheet changed stop the plan (:func:`ruralcov.schema.read_codes`, rows are lines)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"exclusion list {str(path)!r} not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text; save the exclusion list as UTF-8") from exc
    codes: list[str | None] = []  # one per line, so that an error names the line
    for line in text.splitlines():
        field_ = line.split("#", 1)[0].split(",", 1)[0].strip().strip('"')
        keep = field_ and field_.lower() not in ("code", "village_code")
        codes.append(field_ if keep else None)
    checked = schema.read_codes(
        pd.Series(codes, dtype=object), source=f"exclusion list ({path.name})", column="code"
    )
    return frozenset(checked.dropna())


def plan_run(
    folder: Path | str,
    options: PlanOptions | None = None,
    *,
    points: Mapping[str, Any] | pd.Series | None = None,
    progress: Callable[[str], None] | None = None,
    write: bool = True,
    maps: bool | None = None,
) -> Plan:
    """Plan from a run folder (see :func:`read_run_inputs`) and, with ``write``, add it there.

    With ``write``, the plan files are written by :func:`write_plan`; then the maps are
    drawn again with the plan's links on the county maps (``ruralcov.runfolder.redraw_maps``)
    when ``maps`` is true, or when it is None and the run drew maps.

    Examples
    --------
    >>> plan = plan_run("out/demo", PlanOptions(cost_per_km=60_000))  # doctest: +SKIP
    >>> plan.summary[["code", "planned_villages", "planned_km"]].head()  # doctest: +SKIP
    """
    run = read_run_inputs(folder)
    plan = plan_extension(
        run.villages,
        run.access_points,
        options=options,
        run_target=run.target,
        points=points,
        progress=progress,
    )
    if write:
        write_plan(plan, run.folder)
        if maps or (maps is None and _has_maps(run.folder)):
            from ruralcov.runfolder import redraw_maps

            redraw_maps(run.folder)  # draws plan.parquet on the county maps
    return plan


def _has_maps(folder: Path) -> bool:
    """True when the run drew its maps (not only the "maps were skipped" page)."""
    maps_dir = folder / "maps"
    return maps_dir.is_dir() and any(p.name != "index.html" for p in maps_dir.iterdir())


def points_from_file(
    path: Path | str,
    *,
    code: str = "code",
    lon: str | None = None,
    lat: str | None = None,
    crs_text: str | None = None,
    encoding: str = "utf-8",
    layer: str | None = None,
) -> pd.Series:
    """Village-committee points by village code from any readable point file."""
    from ruralcov import io

    frame, _ = io.read_layer(
        path,
        layer=layer,
        crs=crs_text or "EPSG:4326",
        encoding=encoding,
        lon=lon,
        lat=lat,
        name="points",
    )
    if code not in frame.columns:
        raise SchemaError(
            f"points: code column {code!r} not found in {path}; the file has "
            f"{list(frame.columns)[:20]}; set it with --points-code"
        )
    ok = frame.geometry.notna() & (frame.geometry.geom_type == "Point")
    codes = schema.read_codes(frame[code], source=f"points ({Path(path).name})", column=code)[ok]
    return (
        pd.Series(frame.geometry[ok].to_numpy(dtype=object), index=codes.to_numpy())
        .groupby(level=0)
        .first()
    )
