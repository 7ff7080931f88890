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

Everything here is a pure function of tables and arrays (no file is read or written): the
run-folder side, which reads a run and adds the plan's files to it, is :mod:`ruralcov.plan`.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
from numpy.typing import ArrayLike, NDArray
from scipy.spatial import Delaunay, QhullError, cKDTree

from ruralcov import aggregate, crs, join
from ruralcov.config import CURRENCIES
from ruralcov.errors import ConfigError, SchemaError
from ruralcov.pipeline import CoverageResult
from ruralcov.schema import LEVELS, present_levels

__all__ = [
    "DEFAULT_ROUTE_FACTOR",
    "FLAGGED",
    "LINK_COLUMNS",
    "PLANNED",
    "STOP_REASONS",
    "SUMMARY_COLUMNS",
    "Plan",
    "PlanOptions",
    "access_points",
    "grow_network",
    "plan_extension",
    "plan_result",
    "village_points",
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
    "currency",
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
    "currency",
    "fibre_villages_after",
    "fibre_share_after",
    "target_reached",
    "flagged_villages",
    "stop_reason",
    "metric_crs",
)

#: ``status`` of a village the plan connects with fibre, and of one it flags because it lies
#: beyond ``max_link_km`` from the grown network.
PLANNED, FLAGGED = "fibre", "wireless_or_satellite"


@dataclass(frozen=True)
class PlanOptions:
    """What to plan. Every option has a default; ``None`` means "not set"."""

    #: Fibre share to reach per area; ``None``: the run's ``[targets] fibre_share``.
    target: float | None = None
    #: Area level planned separately (``province``, ``city``, ``county`` or ``township``).
    level: str = "county"
    #: Cost of one kilometre of cable; ``None``: costs are left empty.
    cost_per_km: float | None = None
    #: Currency of ``cost_per_km`` and every cost (``CNY``); ``None``: the run's profile's
    #: (:data:`ruralcov.config.CURRENCIES`), as :func:`plan_result` sets it.
    currency: str | None = None
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
    link never ends in a neighbour.

    Parameters
    ----------
    villages
        Village table with ``village_code`` and polygons (EPSG:4326).
    points
        Village code -> shapely Point in EPSG:4326.

    Returns
    -------
    geopandas.GeoSeries
        One point per village, aligned to ``villages``; missing for villages with neither
        (they cannot be planned).

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
    src_w, src_key = _links_to_network(net, cand, net_key)
    order, via_key, length = _prim(src_w, src_key, cand_key, _candidate_graph(cand), m)
    return order, key_to_point[via_key], length


def _links_to_network(net: NDArray[np.float64], cand: NDArray[np.float64],
                      net_key: NDArray[np.intp]) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """Each candidate's link to the network: its length and the key of the nearest network
    point (the lowest key of the equally near ones among the 8 nearest)."""
    m, n = len(net), len(cand)
    k = min(8, m)
    _, idx = cKDTree(net).query(cand, k=k)
    idx = idx.reshape(n, k)
    # the same formula as for links between candidates, so that equal lengths tie exactly
    dist = np.hypot(cand[:, None, 0] - net[idx, 0], cand[:, None, 1] - net[idx, 1])
    tied = dist == dist.min(axis=1, keepdims=True)
    pick = np.argmin(np.where(tied, net_key[idx], m + n), axis=1)
    return dist[np.arange(n), pick], net_key[idx[np.arange(n), pick]]


def _candidate_graph(cand: NDArray[np.float64]) -> tuple[list[int], list[int], list[float]]:
    """Links between candidates (Delaunay edges of the candidates) in CSR form both ways, as
    lists: row offsets, target candidates, lengths."""
    n = len(cand)
    pairs = _candidate_edges(cand)
    a, b = pairs[:, 0], pairs[:, 1]
    w = np.hypot(cand[a, 0] - cand[b, 0], cand[a, 1] - cand[b, 1])
    src, dst, ww = np.concatenate([a, b]), np.concatenate([b, a]), np.concatenate([w, w])
    sort = np.argsort(src, kind="stable")
    src, dst, ww = src[sort], dst[sort], ww[sort]
    indptr = np.searchsorted(src, np.arange(n + 1))
    return indptr.tolist(), dst.tolist(), ww.tolist()


def _prim(src_w: NDArray[np.float64], src_key: NDArray[np.intp], cand_key: NDArray[np.intp],
          graph: tuple[list[int], list[int], list[float]],
          m: int) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]:
    """Prim's steps from the contracted network: the candidate of each step, the key of the
    point it connects to and the link's length. Heap entries are (length, candidate key,
    key of the point connected to, candidate), so that ties go to the lowest keys."""
    indptr_l, dst_l, ww_l = graph
    n = len(src_w)
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
        order[step], via[step], length[step] = j, vk, d
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


def _area_crs(bounds: tuple[float, float, float, float]) -> pyproj.CRS:
    """:func:`ruralcov.crs.metric_crs`, remembered per UTM zone.

    Within the UTM limits that function returns the zone of the extent's centre, so every area
    whose centre lies in the same zone gets the same CRS; the CRS database query behind it
    takes far longer than planning a county, and would dominate a province's plan.
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
    # one transformer per CRS: building one is slow next to planning a township
    return pyproj.Transformer.from_crs("EPSG:4326", metric, always_xy=True)


def access_points(result: CoverageResult) -> gpd.GeoDataFrame:
    """The operational fibre access points of a result, the network a plan grows from.

    Parameters
    ----------
    result
        A result with its fibre assets: analysed, or read back from a run folder.

    Returns
    -------
    geopandas.GeoDataFrame
        The rows of ``result.fibre_points`` that are operational Points (EPSG:4326).
    """
    assets = result.fibre_points
    return assets[assets["operational"].astype(bool) & (assets.geom_type == "Point")]


def plan_result(
    result: CoverageResult,
    *,
    options: PlanOptions | None = None,
    points: Mapping[str, Any] | pd.Series | None = None,
    progress: Callable[[str], None] | None = None,
) -> Plan:
    """:func:`plan_extension` of a :class:`~ruralcov.pipeline.CoverageResult`: its villages,
    its operational access points (:func:`access_points`) and its target.

    Parameters
    ----------
    result
        What :func:`ruralcov.analyse` or :func:`ruralcov.runfolder.read_run` returned.
    options, points, progress
        As :func:`plan_extension` takes them.

    Returns
    -------
    Plan
        As :func:`plan_extension` returns it.

    Examples
    --------
    >>> plan = plan_result(analyse(config), options=PlanOptions(cost_per_km=6e4))  # doctest: +SKIP
    """
    options = options or PlanOptions()
    if options.currency is None:
        currency = CURRENCIES.get(result.config.run.profile)
        options = dataclasses.replace(options, currency=currency)
    return plan_extension(
        result.villages,
        access_points(result),
        options=options,
        run_target=result.config.targets.fibre_share,
        points=points,
        progress=progress,
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
    _check_villages(villages, options.level)
    target = _target(options, run_target)
    codes = villages["village_code"].astype(str)
    unknown = sorted(set(options.exclude) - set(codes))
    if unknown:
        raise ConfigError(
            f"{len(unknown)} excluded code(s) are not in the register, e.g. {unknown[:3]}; "
            "check the exclusion list"
        )
    tell = progress or (lambda area: None)
    v = _Villages.of(villages, codes, options, points)
    ap, ap_groups = _access_points_by_area(access_points, villages, codes, v.areas)
    groups = pd.Series(np.arange(len(villages))).groupby(v.areas, sort=True).indices
    link_rows: list[dict[str, Any]] = []
    summary_rows: list[dict[str, Any]] = []
    for area, rows_of_area in groups.items():
        tell(area)
        area_ap = ap.iloc[ap_groups[area]] if ap is not None and area in ap_groups else None
        row, links = _area_plan(v, area, rows_of_area, area_ap, options, target)
        summary_rows.append(row)
        link_rows.extend(links)
    summary = pd.DataFrame(summary_rows, columns=list(SUMMARY_COLUMNS))
    summary["currency"] = options.currency if options.cost_per_km is not None else None
    links = _links_frame(link_rows)
    links["currency"] = options.currency if options.cost_per_km is not None else None
    return Plan(links=links, summary=summary, options=options, target=target)


@dataclass(frozen=True)
class _Villages:
    """Per-village columns as arrays, taken once for all areas."""

    codes: NDArray[np.object_]
    names: NDArray[np.object_] | None
    #: settlement points (:func:`village_points`), and whether there is one
    points: NDArray[np.object_]
    has_point: NDArray[np.bool_]
    is_village: NDArray[np.bool_]
    fibre: NDArray[np.bool_]
    excluded: NDArray[np.bool_]
    #: area code and name of each village at the planned level
    areas: NDArray[np.object_]
    area_names: NDArray[np.object_] | None

    @classmethod
    def of(cls, villages: gpd.GeoDataFrame, codes: pd.Series, options: PlanOptions,
           points: Mapping[str, Any] | pd.Series | None) -> _Villages:
        pts = np.asarray(village_points(villages, points=points).values, dtype=object)
        names = villages.get(f"{options.level}_name")
        return cls(
            codes=codes.to_numpy(dtype=object),
            names=(villages["village_name"].to_numpy(dtype=object)
                   if "village_name" in villages.columns else None),
            points=pts,
            has_point=~(shapely.is_missing(pts) | shapely.is_empty(pts)),
            is_village=(villages["kind"] == "village").to_numpy(),
            fibre=villages["fibre"].fillna(False).astype(bool).to_numpy(),
            excluded=codes.isin(options.exclude).to_numpy(),
            areas=villages[f"{options.level}_code"].to_numpy(dtype=object),
            area_names=names.to_numpy(dtype=object) if names is not None else None,
        )


def _access_points_by_area(
    ap: gpd.GeoDataFrame | None, villages: gpd.GeoDataFrame, codes: pd.Series,
    areas: NDArray[np.object_],
) -> tuple[gpd.GeoDataFrame | None, dict[Any, NDArray[np.intp]]]:
    """The access points inside a village (by the boundary rule of the analysis) and, per
    area, their positions among them."""
    if ap is None or not len(ap):
        return ap, {}
    ap = ap[~(ap.geometry.isna() | ap.geometry.is_empty)]
    where = join.assign_points(
        ap.geometry.values,
        villages.geometry.values,
        priority=join.code_priority(codes),
    )
    ap = ap[where >= 0]
    ap_area = areas[where[where >= 0]]
    if not len(ap_area):
        return ap, {}
    return ap, pd.Series(np.arange(len(ap_area))).groupby(ap_area).indices


def _area_plan(
    v: _Villages, area: Any, rows_of_area: NDArray[np.intp],
    area_ap: gpd.GeoDataFrame | None, options: PlanOptions, target: float,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The summary row and the links of one area."""
    frac = aggregate.target_fraction(target)
    in_area = np.zeros(len(v.codes), dtype=bool)
    in_area[rows_of_area] = True
    name = None
    if v.area_names is not None:
        known = [n for n in v.area_names[rows_of_area] if isinstance(n, str)]
        name = known[0] if known else None
    n_v = int((in_area & v.is_village).sum())
    n_f = int((in_area & v.is_village & v.fibre).sum())
    gap = _needed_by_gap(n_v, n_f, frac)
    unconnected = in_area & v.is_village & ~v.fibre
    cand = unconnected & ~v.excluded & v.has_point
    net_v = in_area & v.fibre & v.has_point
    to_connect = int(cand.sum()) if options.connect_all else gap
    links, stop, crs_text = _plan_area(v, cand, net_v, area_ap, n_v, n_f, to_connect, options)
    for link in links:
        link.update(level=options.level, area_code=area, area_name=name)
    planned = [lk for lk in links if lk["status"] == PLANNED]
    if stop == "all_connected" and len(planned) < int(unconnected.sum()):
        stop = "no_candidates"  # villages without a point or excluded are left
    km = float(sum(lk["link_km"] for lk in planned))
    after = n_f + len(planned)
    row = {
        "level": options.level,
        "code": area,
        "name": name,
        "villages": n_v,
        "fibre_villages": n_f,
        "fibre_share": n_f / n_v if n_v else np.nan,
        "fibre_target": target,
        "fibre_gap_villages": gap,
        "to_connect": to_connect,
        "unconnected_with_point": int((unconnected & v.has_point).sum()),
        "unconnected_without_point": int((unconnected & ~v.has_point).sum()),
        "excluded": int((unconnected & v.excluded).sum()),
        "network_points": int(net_v.sum()) + (0 if area_ap is None else len(area_ap)),
        "planned_villages": len(planned),
        "planned_km": km,
        "planned_cost": km * options.cost_per_km if options.cost_per_km is not None else np.nan,
        "fibre_villages_after": after,
        "fibre_share_after": after / n_v if n_v else np.nan,
        "target_reached": _needed_by_gap(n_v, after, frac) == 0,
        "flagged_villages": len(links) - len(planned),
        "stop_reason": stop,
        "metric_crs": crs_text,
    }
    return row, links


def _links_frame(link_rows: list[dict[str, Any]]) -> gpd.GeoDataFrame:
    """The links of every area as :attr:`Plan.links`."""
    frame = pd.DataFrame(link_rows, columns=[*LINK_COLUMNS, "geometry"])
    links = gpd.GeoDataFrame(
        frame.drop(columns="geometry"),
        geometry=gpd.GeoSeries(frame["geometry"].to_numpy(dtype=object), crs="EPSG:4326"),
    )
    links["order"] = links["order"].astype("int64")
    links["cumulative_villages"] = links["cumulative_villages"].astype("int64")
    for col in ("straight_km", "link_km", "cost", "cumulative_share", "cumulative_km",
                "cumulative_cost", "lon", "lat"):
        links[col] = links[col].astype(float)
    return links



@dataclass(frozen=True)
class _AreaPoints:
    """The points of one area's plan, network first, then the candidates."""

    #: network point labels (village codes, asset ids), then the candidates' codes
    labels: NDArray[np.object_]
    #: ``fibre_village`` or ``access_point`` per network point
    kinds: list[str]
    #: EPSG:4326 points, and the same in metres of ``metric``
    geoms: NDArray[np.object_]
    xy: NDArray[np.float64]
    #: dense rank of each label: ties go to the lowest
    rank: NDArray[np.float64]
    #: number of network points
    m: int
    #: position of each candidate among the villages
    cand_pos: NDArray[np.intp]
    metric: pyproj.CRS

    @classmethod
    def of(cls, v: _Villages, cand: NDArray[np.bool_], net_v: NDArray[np.bool_],
           area_ap: gpd.GeoDataFrame | None) -> _AreaPoints | None:
        """The points, or None when the area has no network to grow from."""
        net_geoms = list(v.points[net_v])
        net_labels = list(v.codes[net_v])
        kinds = ["fibre_village"] * len(net_labels)
        if area_ap is not None and len(area_ap):
            net_geoms += list(area_ap.geometry.values)
            net_labels += [str(a) for a in area_ap["asset_id"]]
            kinds += ["access_point"] * len(area_ap)
        if not net_geoms:
            return None
        cand_pos = np.flatnonzero(cand)
        geoms = np.concatenate([np.asarray(net_geoms, dtype=object), v.points[cand]])
        lonlat = shapely.get_coordinates(geoms)
        west, south = lonlat.min(axis=0)
        east, north = lonlat.max(axis=0)
        metric = _area_crs((float(west), float(south), float(east), float(north)))
        x, y = _to_metric(metric).transform(lonlat[:, 0], lonlat[:, 1])
        # ties: access points and villages by their label text, like the boundary rule
        labels = np.asarray(net_labels + list(v.codes[cand_pos]), dtype=object)
        rank = pd.Series(labels).rank(method="dense").to_numpy()
        return cls(labels, kinds, geoms, np.column_stack([x, y]), rank, len(net_geoms),
                   cand_pos, metric)

    def kind(self, point: int) -> str:
        return self.kinds[point] if point < self.m else "planned_village"


def _plan_area(
    v: _Villages,
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
    p = _AreaPoints.of(v, cand, net_v, area_ap)
    if p is None:
        return [], "no_network", None
    m = p.m
    order, via, length = grow_network(
        p.xy[:m], p.xy[m:], network_rank=p.rank[:m], candidate_rank=p.rank[m:]
    )
    cable_km = length / 1000.0 * options.route_factor
    n_plan, stop = _stop(cable_km, to_connect, options)
    rows = _Rows(v, p, options.cost_per_km, n_f, n_v)
    cum_km = np.cumsum(cable_km[:n_plan])
    links = [
        rows.row(k + 1, order[k], via[k], PLANNED, length[k] / 1000.0, cable_km[k], k + 1,
                 cum_km[k])
        for k in range(n_plan)
    ]
    if stop == "max_link":
        total = float(cum_km[-1]) if n_plan else 0.0
        links += _flagged(p, rows, order[:n_plan], to_connect, options, start=len(links),
                          cum_km=total)
    return links, stop, p.metric.to_string()


def _stop(cable_km: NDArray[np.float64], to_connect: int,
          options: PlanOptions) -> tuple[int, str]:
    """How many of Prim's steps the plan takes, and why it stops there."""
    n_plan = min(to_connect, len(cable_km))
    stop = "all_connected" if options.connect_all else "target_reached"
    if to_connect > len(cable_km):
        stop = "no_candidates"
    if options.max_link_km is not None:
        too_long = np.flatnonzero(cable_km[:n_plan] > options.max_link_km)
        if len(too_long):
            n_plan, stop = int(too_long[0]), "max_link"
    cost = options.cost_per_km
    if options.budget is not None and cost is not None:
        spent = np.cumsum(cable_km[:n_plan] * cost)
        over = np.flatnonzero(spent > options.budget * (1 + 1e-12))
        if len(over):
            n_plan, stop = int(over[0]), "budget"
    return n_plan, stop


def _flagged(p: _AreaPoints, rows: _Rows, planned: NDArray[np.intp], to_connect: int,
             options: PlanOptions, *, start: int, cum_km: float) -> list[dict[str, Any]]:
    """The villages still needed beyond the maximum link from the grown network (all of them
    with connect-all), nearest first, flagged for wireless or satellite."""
    m = p.m
    left = np.setdiff1d(np.arange(len(p.cand_pos)), planned)
    grown = np.concatenate([np.arange(m), m + planned])
    dist, nearest = cKDTree(p.xy[grown]).query(p.xy[m + left])
    nearest = grown[nearest]
    sort = np.lexsort((p.rank[m + left], dist))
    n_plan = len(planned)
    n_flag = len(left) if options.connect_all else min(to_connect - n_plan, len(left))
    return [
        rows.row(start + i + 1, left[s], nearest[s], FLAGGED, dist[s] / 1000.0,
                 dist[s] / 1000.0 * options.route_factor, n_plan, cum_km)
        for i, s in enumerate(sort[:n_flag])
    ]


@dataclass(frozen=True)
class _Rows:
    """Makes the link rows of one area."""

    v: _Villages
    p: _AreaPoints
    cost_per_km: float | None
    n_f: int
    n_v: int

    def row(self, order: int, j: int, via: int, status: str, straight_km: float,
            link_km: float, planned: int, cum_km: float) -> dict[str, Any]:
        """The link of candidate ``j`` to point ``via``; ``planned`` villages planned so far
        in the area, ``cum_km`` their cable."""
        pos = self.p.cand_pos[j]
        start, end = self.p.geoms[self.p.m + j], self.p.geoms[via]
        cost = self.cost_per_km
        fibre_after = self.n_f + planned
        return {
            "order": order,
            "village_code": self.v.codes[pos],
            "village_name": None if self.v.names is None else self.v.names[pos],
            "status": status,
            "connects_to": self.p.labels[via],
            "connects_to_kind": self.p.kind(via),
            "straight_km": float(straight_km),
            "link_km": float(link_km),
            "cost": float(link_km * cost) if status == PLANNED and cost is not None else np.nan,
            "cumulative_villages": planned,
            "cumulative_share": fibre_after / self.n_v if self.n_v else np.nan,
            "cumulative_km": float(cum_km),
            "cumulative_cost": float(cum_km * cost) if cost is not None else np.nan,
            "lon": start.x,
            "lat": start.y,
            "geometry": shapely.LineString([(start.x, start.y), (end.x, end.y)]),
        }
