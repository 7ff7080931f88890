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

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray


def _tree(geoms: NDArray[np.object_]) -> tuple[shapely.STRtree, NDArray[np.intp]]:
    """An STRtree over the non-empty geometries, and the positions they came from."""
    keep = np.flatnonzero(~(shapely.is_missing(geoms) | shapely.is_empty(geoms)))
    return shapely.STRtree(geoms[keep]), keep


def assign_points(
    points: ArrayLike, polygons: ArrayLike, *, priority: ArrayLike | None = None
) -> NDArray[np.intp]:
    """Position of the polygon each point falls in, or -1.

    Parameters
    ----------
    points
        Point geometries (missing ones get -1).
    polygons
        Polygon or MultiPolygon geometries (missing or empty ones never match).
    priority
        One number per polygon; a point covered by several polygons goes to the lowest.
        Defaults to the polygon's position.

    Examples
    --------
    >>> from shapely import box, points
    >>> assign_points(points([0.5, 1.0, 5.0], [0.5, 0.5, 5.0]), [box(0, 0, 1, 1), box(1, 0, 2, 1)])
    array([ 0,  0, -1])
    """
    pts = np.asarray(points, dtype=object)
    polys = np.asarray(polygons, dtype=object)
    prio = np.arange(len(polys)) if priority is None else np.asarray(priority)
    out = np.full(len(pts), -1, dtype=np.intp)
    if len(pts) == 0 or len(polys) == 0:
        return out
    tree, keep = _tree(polys)
    valid = ~shapely.is_missing(pts)
    pt_idx, tree_idx = tree.query(pts[valid], predicate="intersects")
    if len(pt_idx) == 0:
        return out
    poly_idx = keep[tree_idx]
    # Sort candidates by point, then priority; the first candidate of each point wins.
    order = np.lexsort((prio[poly_idx], pt_idx))
    pt_idx, poly_idx = pt_idx[order], poly_idx[order]
    first = np.r_[True, pt_idx[1:] != pt_idx[:-1]]
    out[np.flatnonzero(valid)[pt_idx[first]]] = poly_idx[first]
    return out


def nearest(
    geoms: ArrayLike,
    targets: ArrayLike,
    *,
    max_distance: float | None = None,
    priority: ArrayLike | None = None,
) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    """For each geometry, the nearest target and its distance (0 when they intersect).

    Returns ``(target_position, distance)``; -1 and NaN where there is no target within
    ``max_distance`` (None: no limit). Equally near targets (for instance several access points
    inside one village, all at distance 0) are resolved by the lowest ``priority``, so the
    answer does not depend on file order.

    Examples
    --------
    >>> from shapely import box, points
    >>> nearest([box(0, 0, 1, 1), box(10, 0, 11, 1)], points([1.5, 0.5], [0.5, 0.5]))
    (array([1, 0]), array([0. , 8.5]))
    """
    geo = np.asarray(geoms, dtype=object)
    tgt = np.asarray(targets, dtype=object)
    prio = np.arange(len(tgt)) if priority is None else np.asarray(priority)
    pos = np.full(len(geo), -1, dtype=np.intp)
    dist = np.full(len(geo), np.nan)
    if len(geo) == 0 or len(tgt) == 0:
        return pos, dist
    tree, keep = _tree(tgt)
    valid = ~(shapely.is_missing(geo) | shapely.is_empty(geo))
    if max_distance is not None and max_distance <= 0:
        # Only touching targets count: an exact predicate query, no distance search.
        g_idx, t_idx = tree.query(geo[valid], predicate="intersects")
        d = np.zeros(len(g_idx))
    else:
        (g_idx, t_idx), d = tree.query_nearest(
            geo[valid], max_distance=max_distance, return_distance=True, all_matches=True
        )
    if len(g_idx) == 0:
        return pos, dist
    t_idx = keep[t_idx]
    order = np.lexsort((prio[t_idx], d, g_idx))
    g_idx, t_idx, d = g_idx[order], t_idx[order], d[order]
    first = np.r_[True, g_idx[1:] != g_idx[:-1]]
    rows = np.flatnonzero(valid)[g_idx[first]]
    pos[rows] = t_idx[first]
    dist[rows] = d[first]
    return pos, dist
