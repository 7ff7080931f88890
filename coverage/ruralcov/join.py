"""The spatial engine: points to village polygons, and villages to their nearest fibre assets.

All functions are pure and vectorised over shapely 2 arrays. Distances are in the units of the
geometries given, so callers pass geometries already projected to a metric CRS.

Boundary rule: a point lies in a village when the polygon *covers* it (interior or boundary).
A point covered by several villages (on a shared edge or vertex, or where polygons overlap)
goes to the one with the lowest ``priority`` - the pipeline passes the rank of the village code,
so it goes to the village with the lowest code. Every point therefore has at most one village,
and the rule does not depend on file order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import shapely
from numpy.typing import ArrayLike, NDArray


def code_priority(codes: ArrayLike) -> NDArray[np.float64]:
    """Each village's priority for :func:`assign_points`: the rank of its code, so that a point
    on a shared edge goes to the village with the lowest code (the boundary rule above).

    Parameters
    ----------
    codes
        The village codes, in the order of the polygons.

    Returns
    -------
    numpy.ndarray
        Dense ranks (1 for the lowest code).

    Examples
    --------
    >>> code_priority(["B", "A", "C", "A"]).tolist()
    [2.0, 1.0, 3.0, 1.0]
    """
    return pd.Series(np.asarray(codes, dtype=object)).rank(method="dense").to_numpy()


def _tree(geoms: NDArray[np.object_]) -> tuple[shapely.STRtree, NDArray[np.intp]]:
    """An STRtree over the non-empty geometries, and the positions they came from."""
    keep = np.flatnonzero(~(shapely.is_missing(geoms) | shapely.is_empty(geoms)))
    return shapely.STRtree(geoms[keep]), keep


def assign_points(
    points: ArrayLike,
    polygons: ArrayLike,
    *,
    priority: ArrayLike | None = None,
    method: str = "auto",
) -> NDArray[np.intp]:
    """Position of the polygon each point falls in, or -1.

    Parameters
    ----------
    points
        Point geometries (missing ones get -1).
    polygons
        Polygon or MultiPolygon geometries (missing or empty ones never match).
    priority
        One number per polygon; a point covered by several polygons goes to the lowest (equal
        priorities: the lowest position). Defaults to the polygon's position.
    method
        ``"tree"``: an STRtree query with GEOS predicates; ``"grid"``: a :class:`PolygonIndex`
        (numba), same answers, much faster on many points; ``"auto"``: the grid from 5,000
        points on.

    Returns
    -------
    numpy.ndarray
        One polygon position per point; -1 where none covers it.

    Examples
    --------
    >>> from shapely import box, points
    >>> assign_points(points([0.5, 1.0, 5.0], [0.5, 0.5, 5.0]), [box(0, 0, 1, 1), box(1, 0, 2, 1)])
    array([ 0,  0, -1])
    """
    if method not in ("auto", "tree", "grid"):
        raise ValueError(
            f"`method` was {method!r} but is expected to be in ['auto', 'tree', 'grid']"
        )
    pts = np.asarray(points, dtype=object)
    polys = np.asarray(polygons, dtype=object)
    prio = np.arange(len(polys)) if priority is None else np.asarray(priority)
    if len(pts) == 0 or len(polys) == 0:
        return np.full(len(pts), -1, dtype=np.intp)
    if method == "grid" or (method == "auto" and len(pts) >= 5000):
        return PolygonIndex(polys, priority=prio).assign(pts)
    return _assign_tree(pts, polys, prio)


def _assign_tree(
    pts: NDArray[np.object_], polys: NDArray[np.object_], prio: NDArray
) -> NDArray[np.intp]:
    """:func:`assign_points` through an STRtree and GEOS's exact predicates."""
    out = np.full(len(pts), -1, dtype=np.intp)
    if len(pts) == 0 or len(polys) == 0:
        return out
    tree, keep = _tree(polys)
    valid = ~shapely.is_missing(pts)
    pt_idx, tree_idx = tree.query(pts[valid], predicate="intersects")
    if len(pt_idx) == 0:
        return out
    poly_idx = keep[tree_idx]
    # Sort candidates by point, then priority, then position; the first of each point wins.
    order = np.lexsort((poly_idx, prio[poly_idx], pt_idx))
    pt_idx, poly_idx = pt_idx[order], poly_idx[order]
    first = np.r_[True, pt_idx[1:] != pt_idx[:-1]]
    out[np.flatnonzero(valid)[pt_idx[first]]] = poly_idx[first]
    return out


def nearest(
    geoms: ArrayLike,
    targets: ArrayLike,
    *,
    max_distance: float | ArrayLike | None = None,
    priority: ArrayLike | None = None,
) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    """For each geometry, the nearest target and its distance (0 when they intersect).

    Parameters
    ----------
    geoms, targets
        Geometries in one metric CRS (distances are in its units).
    max_distance
        Targets further away do not count: one number, or one per target (for instance each
        fibre source's own distance), finite and at least 0. None: no limit.
    priority
        One number per target: equally near targets (for instance several access points
        inside one village, all at distance 0) go to the lowest (equal priorities: the lowest
        position), so the answer does not depend on file order. Defaults to the position.

    Returns
    -------
    target_position, distance
        -1 and NaN where no target is within its ``max_distance``.

    Raises
    ------
    ValueError
        When a ``max_distance`` is negative, NaN or infinite (None is the way to say "no
        limit").

    Examples
    --------
    >>> from shapely import box, points
    >>> nearest([box(0, 0, 1, 1), box(10, 0, 11, 1)], points([1.5, 0.5], [0.5, 0.5]))
    (array([1, 0]), array([0. , 8.5]))
    >>> nearest([box(0, 0, 1, 1)], points([3, 2], [0.5, 0.5]), max_distance=[1.0, 0.5])
    (array([-1]), array([nan]))
    """
    geo = np.asarray(geoms, dtype=object)
    tgt = np.asarray(targets, dtype=object)
    prio = np.arange(len(tgt)) if priority is None else np.asarray(priority)
    limit = None
    if max_distance is not None:
        limit = np.broadcast_to(np.asarray(max_distance, dtype=float), (len(tgt),))
        if not (np.isfinite(limit) & (limit >= 0)).all():
            raise ValueError(
                "`max_distance` must be finite and at least 0 for every target (None: no "
                f"limit); got {np.unique(limit[~(np.isfinite(limit) & (limit >= 0))])[:5]}"
            )
    pos = np.full(len(geo), -1, dtype=np.intp)
    dist = np.full(len(geo), np.nan)
    if len(geo) == 0 or len(tgt) == 0:
        return pos, dist
    tree, keep = _tree(tgt)
    rows = np.flatnonzero(~(shapely.is_missing(geo) | shapely.is_empty(geo)))
    if len(rows) == 0 or len(keep) == 0:
        return pos, dist
    if limit is None:
        g_idx, t_idx, d = _nearest_unbounded(tree, geo[rows], prio[keep])
    else:
        g_idx, t_idx, d = _within(tree, geo[rows], limit[keep], prio[keep])
    pos[rows[g_idx]] = keep[t_idx]
    dist[rows[g_idx]] = d
    return pos, dist


#: How many (geometry, target) candidate pairs a bounded search holds at a time: the distances
#: of a batch are computed at once, and a few very long routes near many villages must not
#: blow up memory.
_PAIRS_AT_ONCE = 2_000_000


def _first_per_geom(
    g_idx: NDArray[np.intp], t_idx: NDArray[np.intp], d: NDArray[np.float64],
    prio: NDArray,
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]:
    """Of candidate pairs, the one per geometry with the smallest distance, then priority,
    then target position."""
    order = np.lexsort((t_idx, prio[t_idx], d, g_idx))
    g_idx, t_idx, d = g_idx[order], t_idx[order], d[order]
    first = np.r_[True, g_idx[1:] != g_idx[:-1]] if len(g_idx) else np.zeros(0, dtype=bool)
    return g_idx[first], t_idx[first], d[first]


def _within(
    tree: shapely.STRtree, geoms: NDArray[np.object_], limit: NDArray[np.float64],
    prio: NDArray,
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]:
    """Per geometry, the best tree item within that item's own ``limit``.

    Candidates are the items whose envelope meets the geometry's envelope grown by the
    largest limit; their exact distances are then filtered by each item's limit. The
    geometries go in batches sized so that about ``_PAIRS_AT_ONCE`` pairs exist at a time.
    """
    xmin, ymin, xmax, ymax = shapely.bounds(geoms).T
    grow = float(limit.max())
    items = tree.geometries
    found: list[tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]] = []
    start, size = 0, 1024
    while start < len(geoms):
        stop = min(start + size, len(geoms))
        boxes = shapely.box(xmin[start:stop] - grow, ymin[start:stop] - grow,
                            xmax[start:stop] + grow, ymax[start:stop] + grow)
        g_idx, t_idx = tree.query(boxes)
        d = shapely.distance(geoms[start + g_idx], items[t_idx])
        ok = d <= limit[t_idx]
        found.append(_first_per_geom(start + g_idx[ok], t_idx[ok], d[ok], prio))
        per_geom = max(len(g_idx), 1) / (stop - start)
        start, size = stop, int(np.clip(_PAIRS_AT_ONCE / per_geom, 256, 131_072))
    g_idx, t_idx, d = (np.concatenate(parts) for parts in zip(*found, strict=True))
    return g_idx, t_idx, d


def _nearest_unbounded(
    tree: shapely.STRtree, geoms: NDArray[np.object_], prio: NDArray
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]:
    """Per geometry, the best tree item at any distance.

    A bounded search at the median size of the geometries' envelopes answers most of them
    (a target that near is found exactly, nearer ones too); GEOS's nearest-neighbour search,
    slower per geometry, answers only the rest.
    """
    xmin, ymin, xmax, ymax = shapely.bounds(geoms).T
    radius = float(np.median(np.maximum(xmax - xmin, ymax - ymin)))
    near = _within(tree, geoms, np.full(len(tree.geometries), radius), prio)
    rest = np.setdiff1d(np.arange(len(geoms)), near[0])
    (g_idx, t_idx), d = tree.query_nearest(geoms[rest], return_distance=True, all_matches=True)
    far = _first_per_geom(rest[g_idx], t_idx, d, prio)
    return tuple(np.concatenate(p) for p in zip(near, far, strict=True))  # type: ignore[return-value]


# --- the grid index: a fast, exact point-in-polygon engine -------------------------------------
#
# Cells of a regular grid over the polygons are of three kinds: cells no polygon edge comes near
# (inside one polygon, or outside all) answer a point without any test; the others keep the
# polygons whose edges touch them, sorted by priority, with those edges, and test them exactly.
# A polygon whose covering is the parity of its rings (one part, holes inside) knows whether it
# covers the cell's centre; a point's answer is that one, flipped for each of the polygon's edges
# in the cell that the path from the point to the centre crosses - a few edges, however long the
# boundary. Other polygons get a crossing-number test over their rings. "Exact" because every
# orientation sign the tests use is either proven by Shewchuk's error bound or declared
# uncertain; points with an uncertain sign (on or within rounding distance of an edge or vertex)
# are handed to GEOS through the STRtree path above, which is exact too. The index therefore
# answers every point exactly as ``assign_points`` with ``method="tree"`` does.

#: Results of the kernel: a polygon position, or one of these.
_OUTSIDE, _UNCERTAIN = -1, -3


def _kernels() -> Any:
    """The numba kernels (compiled on first use, then loaded from numba's on-disk cache)."""
    from ruralcov import _kernels

    return _kernels


class PolygonIndex:
    """A grid index over village polygons that assigns millions of points per second, exactly.

    Built once from the polygons and their priorities; :meth:`assign_xy` then answers
    coordinate arrays with the same result as :func:`assign_points` (``method="tree"``): the
    covering polygon with the lowest priority, or -1. Ties in priority go to the lowest position.
    Coordinates must be in the CRS of the polygons. The grid has about ``cells_per_edge`` cells
    per polygon vertex (at most ``max_cells``): 4 balances building it against answering
    10 M points over 20,000 villages (``bench/join.py``); more cells answer faster and cost
    memory and build time.

    Examples
    --------
    >>> from shapely import box
    >>> index = PolygonIndex([box(0, 0, 1, 1), box(1, 0, 2, 1)])
    >>> index.assign_xy(np.array([0.5, 1.0, 5.0]), np.array([0.5, 0.5, 5.0])).tolist()
    [0, 0, -1]
    """

    def __init__(
        self,
        polygons: ArrayLike,
        *,
        priority: ArrayLike | None = None,
        cells_per_edge: float = 4.0,
        max_cells: int = 1 << 25,
    ) -> None:
        polys = np.asarray(polygons, dtype=object)
        self.polygons = polys
        self.priority = np.arange(len(polys)) if priority is None else np.asarray(priority)
        if len(self.priority) != len(polys):
            raise ValueError("`priority` must have one value per polygon")
        types = shapely.get_type_id(polys)
        keep = np.flatnonzero(
            ~(shapely.is_missing(polys) | shapely.is_empty(polys)) & np.isin(types, (3, 6))
        )
        # Anything that is not a (Multi)Polygon is left to the STRtree, like before.
        self._others = np.setdiff1d(
            np.flatnonzero(~(shapely.is_missing(polys) | shapely.is_empty(polys))), keep
        )
        self.keep = keep.astype(np.int64)
        self._grid_ok = len(keep) > 0
        if not self._grid_ok:
            return
        kind, coords, offsets = shapely.to_ragged_array(shapely.force_2d(polys[keep]))
        if len(offsets) == 3:  # MultiPolygons: rings, parts, polygons
            ring_off, part_ring, poly_part = offsets
        else:  # Polygons only: each polygon is one part
            ring_off, part_ring = offsets
            poly_part = np.arange(len(keep) + 1)
        self._xs = np.ascontiguousarray(coords[:, 0], dtype=np.float64)
        self._ys = np.ascontiguousarray(coords[:, 1], dtype=np.float64)
        self._ring_off = ring_off.astype(np.int64)
        self._part_ring = part_ring.astype(np.int64)
        self._poly_part = poly_part.astype(np.int64)
        # Dense rank by (priority, position): the order in which covering polygons win.
        order = np.lexsort((keep, self.priority[keep]))
        rank = np.empty(len(keep), dtype=np.int64)
        rank[order] = np.arange(len(keep))
        self._rank = rank
        bbox = shapely.bounds(polys[keep])
        self._bbox = np.ascontiguousarray(bbox)
        x0, y0 = bbox[:, 0].min(), bbox[:, 1].min()
        x1, y1 = bbox[:, 2].max(), bbox[:, 3].max()
        n_edges = len(self._xs)
        n_cells = int(min(max(cells_per_edge * n_edges, 1024), max_cells))
        w, h = max(x1 - x0, 1e-12), max(y1 - y0, 1e-12)
        cs = float(np.sqrt(w * h / n_cells))
        cs = max(cs, w / 65536, h / 65536, 1e-12)
        # One cell of slack on each side so that no polygon touches the grid's border.
        self._gx0, self._gy0, self._cs = x0 - cs, y0 - cs, cs
        self._nx = int(np.floor(w / cs)) + 3
        self._ny = int(np.floor(h / cs)) + 3
        self._build()

    def _build(self) -> None:
        k = _kernels()
        # Ring -> compact polygon id.
        part_of_ring = np.repeat(np.arange(len(self._part_ring) - 1), np.diff(self._part_ring))
        poly_of_part = np.repeat(np.arange(len(self._poly_part) - 1), np.diff(self._poly_part))
        ring_poly = poly_of_part[part_of_ring].astype(np.int64)
        margin = 1e-3 * self._cs
        args = (self._xs, self._ys, self._ring_off, ring_poly, self._gx0, self._gy0, self._cs,
                self._nx, self._ny, margin)
        if len(self._xs) >= 1 << 32:  # build_slots packs (rank, edge) into one 64-bit key
            raise ValueError("PolygonIndex: at most 2**32 - 1 vertices")
        empty_i64 = np.empty(0, dtype=np.int64)
        start = np.zeros(len(self._ring_off), dtype=np.int64)
        k.rasterize(*args, start, empty_i64, empty_i64, empty_i64, True)
        np.cumsum(start, out=start)
        cells, pids, edges = (np.empty(int(start[-1]), dtype=np.int64) for _ in range(3))
        k.rasterize(*args, start, cells, pids, edges, False)
        n_cells = self._nx * self._ny
        slot_cells, slot_start, cand_rank, cand_edge_start, cand_edges = k.build_slots(
            cells, pids, edges, self._rank, n_cells)
        del cells, pids, edges
        cand = np.argsort(self._rank)[cand_rank]
        # The answer at a point follows from the answer at its cell's centre and the edges in
        # between when covering is the parity of all the polygon's rings: one part whose holes
        # (if any) lie inside it, as in a valid polygon.
        n_parts = np.diff(self._poly_part)
        n_rings = self._part_ring[self._poly_part[1:]] - self._part_ring[self._poly_part[:-1]]
        by_parity = (n_parts == 1) & (n_rings == 1)
        holed = np.flatnonzero((n_parts == 1) & (n_rings > 1))
        by_parity[holed] = shapely.is_valid(self.polygons[self.keep[holed]])
        ref = np.where(by_parity[cand], 0, -1).astype(np.int8)
        state = np.full(n_cells, -1, dtype=np.int32)
        state[slot_cells] = -(np.arange(len(slot_cells), dtype=np.int32) + 2)
        slot_owner = np.full(len(slot_cells), -1, dtype=np.int64)
        ok = k.fill(state, slot_start, cand, slot_owner, ref, by_parity, self._rank, self._bbox,
                    self._gx0, self._gy0, self._cs, self._nx, self._ny, self._xs, self._ys,
                    self._ring_off, self._part_ring, self._poly_part)
        if not ok:  # pragma: no cover - cannot happen with the margin used
            self._grid_ok = False
            return
        # Cells whose owner outranks every edge-touching polygon need no test at all.
        first = cand[slot_start[:-1]]
        direct = (slot_owner >= 0) & (self._rank[np.maximum(slot_owner, 0)] < self._rank[first])
        state[slot_cells[direct]] = slot_owner[direct].astype(np.int32)
        self._state = state
        self._rec_start, self._rec = k.pack_slots(slot_start, cand, slot_owner, self._rank,
                                                  cand_edge_start, cand_edges, ref, self._xs,
                                                  self._ys)

    @property
    def nbytes(self) -> int:
        """Memory held by the grid arrays."""
        if not self._grid_ok:
            return 0
        return sum(a.nbytes for a in (self._state, self._rec_start, self._rec, self._xs,
                                      self._ys))

    def _candidates(self) -> NDArray[np.int64]:
        """The candidates tested in boundary cells, one column each, in four rows: slot (the
        cell's ``-state - 2``), polygon (compact position), answer at the cell's centre (-1:
        none, its rings are tested), and where that answer is kept in the records (tests set
        it to -1 to compare both ways of answering)."""
        return _kernels().record_candidates(self._rec_start, self._rec)

    def assign_xy(self, x: ArrayLike, y: ArrayLike) -> NDArray[np.intp]:
        """The polygon covering each point.

        Parameters
        ----------
        x, y
            The points' coordinates, in the CRS of the polygons.

        Returns
        -------
        numpy.ndarray
            Positions; -1 where no polygon covers the point (also for NaN).
        """
        x = np.ascontiguousarray(x, dtype=np.float64)
        y = np.ascontiguousarray(y, dtype=np.float64)
        out = np.full(len(x), _OUTSIDE, dtype=np.int64)
        if len(x) == 0:
            return out.astype(np.intp)
        if self._grid_ok:
            _kernels().assign(
                x, y, out, self._state, self._rec_start, self._rec, self.keep, self._gx0,
                self._gy0, self._cs, self._nx, self._ny, self._xs, self._ys, self._ring_off,
                self._part_ring, self._poly_part,
            )
        # Points near a boundary, and any non-polygon geometries, are settled by GEOS.
        redo = out == _UNCERTAIN
        if len(self._others) or not self._grid_ok:
            redo |= np.isfinite(x) & np.isfinite(y)
        if redo.any():
            idx = np.flatnonzero(redo)
            out[idx] = _assign_tree(shapely.points(x[idx], y[idx]), self.polygons,
                                    self.priority)
        return out.astype(np.intp)

    def assign(self, points: ArrayLike) -> NDArray[np.intp]:
        """Like :meth:`assign_xy` for geometries; non-point geometries go through the STRtree.

        Parameters
        ----------
        points
            Geometries (missing ones get -1).

        Returns
        -------
        numpy.ndarray
            Positions of the covering polygons (for other geometries: the intersecting
            polygon with the lowest priority), or -1.
        """
        pts = np.asarray(points, dtype=object)
        out = np.full(len(pts), -1, dtype=np.intp)
        missing = shapely.is_missing(pts)
        is_point = ~missing & (shapely.get_type_id(pts) == 0) & ~shapely.is_empty(pts)
        if is_point.any():
            sel = np.flatnonzero(is_point)
            out[sel] = self.assign_xy(shapely.get_x(pts[sel]), shapely.get_y(pts[sel]))
        other = ~missing & ~is_point
        if other.any():
            sel = np.flatnonzero(other)
            out[sel] = _assign_tree(pts[sel], self.polygons, self.priority)
        return out
