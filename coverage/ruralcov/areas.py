"""The areas of a register: the union of the village polygons of each township and county.

``results.gpkg`` and the maps draw every area as the union of its villages' polygons. On a
province these unions are the dearest part of writing a run (seconds of GEOS for a county of
thousands of villages), and they need nothing but the villages' polygons and codes. So they
are here, below the pipeline: :func:`ruralcov.analyse` can start them (:class:`AreaUnions`) as
soon as the villages are read, in threads beside the speed tests (GEOS works without the GIL),
and the writers take them when they need them (:func:`level_unions`), or make them then.
Either way every union is computed by :func:`dissolve_many`, so the files are the same.
"""

from __future__ import annotations

import operator
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import shapely
from numpy.typing import NDArray

__all__ = ["LEVELS", "AreaUnions", "dissolve", "dissolve_many", "level_unions"]

#: The levels whose areas are drawn and written, smallest first.
LEVELS: tuple[str, ...] = ("township", "county")


def dissolve(geoms: NDArray[np.object_], keys: pd.Series) -> pd.Series:
    """Union of the geometries of each key (e.g. villages into their township).

    Parameters
    ----------
    geoms
        Polygons.
    keys
        The key of each polygon; missing keys and geometries are left out.

    Returns
    -------
    pandas.Series
        One (multi)polygon per key, by key, without the slivers left where neighbours do
        not quite meet.
    """
    return dissolve_many([(geoms, keys)])[0]


_Group = tuple[int, Any, NDArray[np.object_], NDArray[np.intp]]


def _groups(work: Sequence[tuple[NDArray[np.object_], pd.Series]]) -> list[_Group]:
    """``(pair, key, polygons, their rows)`` of every key of every pair of ``work``, keys in
    order."""
    groups = []
    for n, (geoms, keys) in enumerate(work):
        geoms = np.asarray(geoms, dtype=object)
        keep = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms)) & keys.notna().to_numpy()
        frame = pd.DataFrame({"key": keys.to_numpy()[keep], "i": np.flatnonzero(keep)})
        groups += [(n, key, geoms[idx.to_numpy()], idx.to_numpy())
                   for key, idx in frame.groupby("key", sort=True)["i"]]
    return groups


def _subsets(groups: list[_Group]) -> list[list[int]]:
    """For each group, the groups of other pairs whose polygons (the same objects) all lie
    in it, smallest first: a township in its county."""
    owner: dict[int, dict[int, int]] = {}  # pair -> id of a polygon -> its group
    for g, (n, _, parts, _) in enumerate(groups):
        owner.setdefault(n, {}).update(dict.fromkeys(map(id, parts), g))
    inside: list[list[int]] = [[] for _ in groups]
    for g, (n, _, parts, _) in enumerate(groups):
        for m, of in owner.items():
            if m == n:
                continue
            hosts = {of.get(id(p), -1) for p in parts}
            if len(hosts) == 1 and (host := hosts.pop()) >= 0 and len(groups[host][2]) > len(parts):
                inside[host].append(g)
    return [sorted(s, key=lambda g: len(groups[g][2])) for s in inside]


#: Share of an area's extent within which a vertex counts as lying on the line through its two
#: neighbours (:func:`_straightened`): 0.05 mm across a province of 500 km.
STRAIGHT = 1e-10


class _Attempts:
    """The coverage union of each group, tried once (whichever thread asks first).

    ``(stage, union)``: stage 0, the polygons as they are form a coverage; 1, they do once
    straightened (:func:`_straightened`); 2, they do not, and union is None. A group starts
    at the stage its sub-groups reached: a township that is no coverage as it is makes its
    county none either (overlaps and unmatched edges stay in any larger set), so the county
    skips the attempts that could not hold (seconds) for the township's (milliseconds). The
    polygons of a pair are straightened once, for all its groups and for the other pairs of
    the same polygons (a township's and its county's).
    """

    def __init__(self, work: Sequence[tuple[NDArray[np.object_], pd.Series]],
                 groups: list[_Group], subsets: list[list[int]]) -> None:
        self.work = work
        self.groups = groups
        self.subsets = subsets
        self.locks = [threading.Lock() for _ in groups]
        self.done: dict[int, tuple[int, Any]] = {}
        self.straight_lock = threading.Lock()
        self.straight: dict[int, tuple[NDArray[np.object_], NDArray[np.intp],
                                       NDArray[np.bool_]]] = {}

    def __call__(self, g: int) -> tuple[int, Any]:
        """The stage and coverage union of group ``g``."""
        with self.locks[g]:
            if g not in self.done:
                start = max((self(s)[0] for s in self.subsets[g]), default=0)
                self.done[g] = self._attempts(g, start)
            return self.done[g]

    def _attempts(self, g: int, start: int) -> tuple[int, Any]:
        """The first coverage union of group ``g`` that holds from stage ``start`` on."""
        if start <= 0 and (merged := _coverage_union(self.groups[g][2])) is not None:
            return 0, merged
        if start <= 1 and (straight := self._straightened(g)) is not None and (
                merged := _coverage_union(straight)) is not None:
            return 1, merged
        return 2, None

    def _straightened(self, g: int) -> NDArray[np.object_] | None:
        """The polygons of group ``g``, straightened with its pair's polygons; None when
        straightening changed none of them (the attempt as they are has failed already)."""
        n, _, _, rows = self.groups[g]
        geoms = np.asarray(self.work[n][0], dtype=object)
        with self.straight_lock:
            if id(geoms) not in self.straight:
                self.straight[id(geoms)] = _straightened(geoms)
            polygons, of, changed = self.straight[id(geoms)]
        if not changed[rows].any():
            return None
        return polygons[np.isin(of, rows)]  # a group's villages, straightened


def _coverage_union(parts: NDArray[np.object_]) -> Any:
    """The coverage union of ``parts`` (fast), or None where they are not a coverage.

    GEOS refuses some inputs that are not a coverage, not all: two villages of which one has
    a vertex on the other's edge that the other lacks come back unmerged, as parts sharing an
    edge (an invalid multipolygon), and overlapping villages would be counted twice. So the
    result is kept only when it is valid and its area is that of its parts."""
    try:
        merged = shapely.coverage_union_all(parts)
    except shapely.errors.GEOSException:
        return None
    total = float(np.sum(shapely.area(parts)))
    if not shapely.is_valid(merged) or abs(shapely.area(merged) - total) > 1e-9 * total:
        return None
    return merged


def _straightened(parts: NDArray[np.object_], rel: float = STRAIGHT, *, chunk: int = 50_000
                  ) -> tuple[NDArray[np.object_], NDArray[np.intp], NDArray[np.bool_]]:
    """The polygons of ``parts`` without the vertices that lie within ``rel`` times the
    extent of ``parts`` of the line through their two neighbours, the index in ``parts`` of
    each, and whether each of ``parts`` lost a vertex (the others are left as they are).

    Those are the vertices one village has on an edge it shares with another that lacks
    them (an edge densified or segmentized on one side only): they keep two villages that
    meet edge to edge from matching vertex for vertex, so GEOS's coverage union refuses
    them, and the general union of a province of such villages takes seconds. Without them
    the villages match again; no edge moves by more than that distance, and a ring is left
    whole rather than cut below three vertices. ``chunk`` villages at a time, so that a
    nation's coordinates are never all held at once.
    """
    x0, y0, x1, y1 = shapely.total_bounds(parts)
    tol = rel * max(x1 - x0, y1 - y0)
    done = [_straightened_chunk(parts[i:i + chunk], tol) for i in range(0, len(parts), chunk)]
    polygons = np.concatenate([d[0] for d in done]) if done else np.empty(0, dtype=object)
    owner = np.concatenate([d[1] + i * chunk for i, d in enumerate(done)]) if done else \
        np.empty(0, dtype=np.intp)
    changed = np.concatenate([d[2] for d in done]) if done else np.empty(0, dtype=bool)
    return polygons, owner, changed


def _straightened_chunk(parts: NDArray[np.object_], tol: float
                        ) -> tuple[NDArray[np.object_], NDArray[np.intp], NDArray[np.bool_]]:
    """:func:`_straightened` of ``parts``, vertices within ``tol``."""
    polygons, owner = shapely.get_parts(parts, return_index=True)
    solid = (shapely.get_type_id(polygons) == 3) & ~shapely.is_empty(polygons)
    polygons, owner = polygons[solid], owner[solid]
    changed = np.zeros(len(parts), dtype=bool)
    rings, polygon = shapely.get_rings(polygons, return_index=True)
    xy, ring = shapely.get_coordinates(rings, return_index=True)
    if not len(ring):
        return polygons, owner, changed
    closing = np.r_[ring[1:] != ring[:-1], True]  # each ring's last vertex repeats its first
    xy, ring = xy[~closing], ring[~closing]
    first = np.r_[0, np.flatnonzero(ring[1:] != ring[:-1]) + 1]
    size = np.diff(np.r_[first, len(ring)])
    base, n = np.repeat(first, size), np.repeat(size, size)
    at = np.arange(len(ring)) - base
    a, b = xy[base + (at - 1) % n], xy[base + (at + 1) % n]  # the neighbours, cyclically
    dx, dy = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]
    cross = dx * (xy[:, 1] - a[:, 1]) - dy * (xy[:, 0] - a[:, 0])
    length = np.hypot(dx, dy)
    keep = (length == 0) | (np.abs(cross) > tol * length)
    keep |= np.repeat(np.add.reduceat(keep, first) < 3, size)
    redo = np.zeros(len(polygons), dtype=bool)
    redo[polygon[ring[~keep]]] = True  # polygons that lost a vertex: made again
    if redo.any():
        again = redo[polygon]  # their rings
        picked = again[ring] & keep
        rings = shapely.linearrings(xy[picked], indices=np.unique(ring[picked],
                                                                  return_inverse=True)[1])
        polygons[redo] = shapely.polygons(rings, indices=np.unique(polygon[again],
                                                                   return_inverse=True)[1])
    changed[owner[redo]] = True
    return polygons, owner, changed


def _union(g: int, attempt: _Attempts, stop: threading.Event | None) -> Any:
    """The union of group ``g`` without slivers: the coverage union where its polygons form a
    coverage (as they are, or straightened), else the general union of each subset of them
    that touch each other (GEOS's disjoint-subset union: a township's scattered hamlets and
    exclaves, or the townships of a register numbered out of place, are unioned piece by
    piece, not overlaid as one)."""
    if stop is not None and stop.is_set():
        raise CancelledError
    merged = attempt(g)[1]
    if merged is None:
        merged = shapely.disjoint_subset_union_all(attempt.groups[g][2])
    return _without_slivers(merged)


def dissolve_many(work: Sequence[tuple[NDArray[np.object_], pd.Series]], *,
                  workers: int | None = None,
                  stop: threading.Event | None = None) -> list[pd.Series]:
    """:func:`dissolve` of each ``(geoms, keys)`` of ``work``, the unions all at once.

    Every key's union is a task of one pool of threads, the largest first: GEOS works
    without the GIL, and a province's unions (its townships and its counties, each of
    thousands of polygons) are most of the time of its ``results.gpkg``. Each union is
    computed as :func:`dissolve` alone computes it (a larger area whose sub-area is no
    coverage skips its own coverage union, which could not hold either).

    Parameters
    ----------
    work
        Pairs of polygons and their keys, as :func:`dissolve` takes them.
    workers
        Threads; None: one per core.
    stop
        When set, the unions not yet started are given up (:class:`AreaUnions.cancel`).

    Returns
    -------
    list of pandas.Series
        :func:`dissolve` of each pair, in order.
    """
    groups = _groups(work)
    attempt = _Attempts(work, groups, _subsets(groups))
    largest_first = sorted(range(len(groups)), key=lambda k: -len(groups[k][2]))
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        merged = dict(zip(largest_first,
                          pool.map(lambda k: _union(k, attempt, stop), largest_first),
                          strict=True))
    out: list[dict[Any, Any]] = [{} for _ in work]
    for k, (n, key, _, _) in enumerate(groups):
        out[n][key] = merged[k]
    return [pd.Series(found, dtype=object) for found in out]


def _without_slivers(geom: Any, rel: float = 1e-6) -> Any:
    """``geom`` without holes smaller than ``rel`` times its part's area: the slits left
    where neighbouring villages do not quite meet, which would show as lines inside an area.
    Only polygons are kept (a union's stray lines or points are dropped)."""
    parts = shapely.get_parts(geom)
    parts = parts[(shapely.get_type_id(parts) == 3) & ~shapely.is_empty(parts)]
    if not len(parts):
        return geom
    rings, part = shapely.get_rings(parts, return_index=True)
    shell = np.r_[True, part[1:] != part[:-1]]  # each part's rings: its shell, then its holes
    area = shapely.area(shapely.polygons(rings))
    keep = shell | (area >= rel * shapely.area(parts)[part])
    polygons = shapely.polygons(rings[keep], indices=part[keep])
    return polygons[0] if len(polygons) == 1 else shapely.multipolygons(polygons)


def _members(geoms: NDArray[np.object_], keys: pd.Series) -> tuple[NDArray[Any], NDArray[Any]]:
    """The polygons that count and their keys, as :func:`dissolve_many` keeps them."""
    geoms = np.asarray(geoms, dtype=object)
    keep = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms)) & keys.notna().to_numpy()
    return geoms[keep], keys.to_numpy()[keep]


class AreaUnions:
    """The unions of some levels' areas, being made in threads of their own.

    :func:`ruralcov.analyse` starts them when the villages are read (``area_unions=True``);
    :func:`level_unions` takes them for ``results.gpkg`` and the maps. The first to take them
    waits for them, and gets any error of a union raised there.

    Parameters
    ----------
    geoms
        The villages' polygons.
    levels
        level -> the villages' keys (codes) at that level.
    workers
        Threads of the unions; None: one per core.
    """

    def __init__(self, geoms: NDArray[np.object_], levels: Mapping[str, pd.Series], *,
                 workers: int | None = None) -> None:
        # copies: the caller goes on adding to the frame these came from, in its own thread
        geoms = np.array(geoms, dtype=object)
        work = [(geoms, pd.Series(keys.to_numpy(copy=True))) for keys in levels.values()]
        self._members = {level: _members(*pair) for level, pair in zip(levels, work, strict=True)}
        self._levels = list(levels)
        self._stop = threading.Event()
        runner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ruralcov-areas")
        self._future: Future[list[pd.Series]] = runner.submit(
            dissolve_many, work, workers=workers, stop=self._stop)
        runner.shutdown(wait=False)  # its thread ends with the unions

    def cancel(self) -> None:
        """Give up the unions not yet started (the run failed before it needed them)."""
        self._stop.set()

    def take(self, level: str, geoms: NDArray[np.object_], keys: pd.Series) -> pd.Series | None:
        """:func:`dissolve` of ``(geoms, keys)`` when it is one of these unions, else None.

        It is when ``level`` is one of them and ``geoms`` and ``keys`` hold the same polygons
        (the same objects) with the same keys as they were made of; then this waits for them,
        and raises the error of a union that failed.
        """
        if level not in self._members:
            return None
        was_geoms, was_keys = self._members[level]
        now_geoms, now_keys = _members(geoms, keys)
        same = (len(was_geoms) == len(now_geoms)
                and all(map(operator.is_, was_geoms, now_geoms))
                and bool(np.all(was_keys == now_keys)))
        if not same:
            return None
        return self._future.result()[self._levels.index(level)]


def level_unions(pending: AreaUnions | None,
                 work: Mapping[str, tuple[NDArray[np.object_], pd.Series]]
                 ) -> dict[str, pd.Series]:
    """:func:`dissolve` of each level's ``(geoms, keys)``: taken from ``pending`` where it
    made them already, the others all at once (:func:`dissolve_many`).

    Parameters
    ----------
    pending
        ``CoverageResult.area_unions``, or None.
    work
        level -> the polygons and their keys at that level.

    Returns
    -------
    dict
        level -> one (multi)polygon per key, in the order of ``work``.
    """
    taken = {level: pending.take(level, *pair) if pending is not None else None
             for level, pair in work.items()}
    rest = [level for level, got in taken.items() if got is None]
    if rest:
        taken.update(zip(rest, dissolve_many([work[level] for level in rest]), strict=True))
    return {level: taken[level] for level in work}
