"""The spatial engine against worlds whose answers are known by construction."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely import Polygon, box, points

from ruralcov.join import PolygonIndex, assign_points, nearest

# Two unit squares sharing the edge x = 1, and an L-shaped MultiPolygon village far away.
WEST = box(0, 0, 1, 1)
EAST = box(1, 0, 2, 1)
MULTI = shapely.MultiPolygon([box(10, 10, 11, 11), box(12, 10, 13, 11)])


def test_interior_points_go_to_their_polygon():
    pts = points([0.5, 1.5, 10.5, 12.5, 5.0], [0.5, 0.5, 10.5, 10.5, 5.0])
    assert assign_points(pts, [WEST, EAST, MULTI]).tolist() == [0, 1, 2, 2, -1]


def test_point_on_shared_edge_goes_to_lowest_priority():
    on_edge = points([1.0, 1.0], [0.5, 0.0])  # mid-edge and shared corner
    assert assign_points(on_edge, [WEST, EAST], priority=[2, 1]).tolist() == [1, 1]
    assert assign_points(on_edge, [WEST, EAST], priority=[1, 2]).tolist() == [0, 0]


def test_point_on_outer_boundary_is_inside():
    assert assign_points(points([0.0], [0.3]), [WEST, EAST]).tolist() == [0]


def test_missing_geometries_never_match():
    pts = np.array([None, shapely.Point(0.5, 0.5)], dtype=object)
    assert assign_points(pts, [None, WEST]).tolist() == [-1, 1]


def test_nearest_zero_distance_only_touching():
    pts = points([0.5, 3.0], [0.5, 0.5])
    pos, dist = nearest([WEST, EAST], pts, max_distance=0)
    assert pos.tolist() == [0, -1]
    assert dist[0] == 0 and np.isnan(dist[1])


def test_nearest_within_distance_and_ties_by_priority():
    pts = points([2.5, 2.5, 0.2], [0.5, 0.5, 0.2])  # two equal points east, one inside west
    pos, dist = nearest([WEST, EAST], pts, max_distance=1.0, priority=[3, 1, 2])
    assert pos.tolist() == [2, 1]
    assert dist.tolist() == [0.0, 0.5]


@st.composite
def worlds(draw):
    """Random grid villages (shared edges by construction) and points, some on edges."""
    nx, ny = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    cells = [box(i, j, i + 1, j + 1) for i in range(nx) for j in range(ny)]
    # Merge a random pair into a MultiPolygon-free larger polygon sometimes: keeps a partition.
    coords = draw(
        st.lists(
            st.tuples(
                st.integers(-2, 4 * nx + 2).map(lambda v: v / 4),
                st.integers(-2, 4 * ny + 2).map(lambda v: v / 4),
            ),
            min_size=1,
            max_size=60,
        )
    )
    priority = draw(st.permutations(list(range(len(cells)))))
    return cells, np.array(coords, dtype=float), np.array(priority)


@settings(max_examples=60, deadline=None)
@given(worlds())
def test_assign_equals_brute_force_shapely(world):
    cells, xy, priority = world
    got = assign_points(points(xy[:, 0], xy[:, 1]), cells, priority=priority)
    for (x, y), g in zip(xy, got, strict=True):
        pt = shapely.Point(x, y)
        covering = [k for k, c in enumerate(cells) if c.covers(pt)]
        expected = min(covering, key=lambda k: priority[k]) if covering else -1
        assert g == expected


@settings(max_examples=40, deadline=None)
@given(
    # Quarter-unit coordinates: exact in floating point, and often exactly on an edge.
    st.lists(
        st.tuples(
            st.integers(-200, 200).map(lambda v: v / 4), st.integers(-200, 200).map(lambda v: v / 4)
        ),
        min_size=1,
        max_size=30,
    ),
    st.sampled_from([None, 0.0, 0.5, 1.0, 3.0, 20.0]),
)
def test_nearest_equals_brute_force(xy, limit):
    polys = [Polygon([(0, 0), (4, 0), (4, 3)]), box(10, 10, 14, 12), box(-20, -5, -18, 5)]
    arr = np.array(xy)
    pos, dist = nearest(polys, points(arr[:, 0], arr[:, 1]), max_distance=limit)
    for k, poly in enumerate(polys):
        d = [poly.distance(shapely.Point(x, y)) for x, y in xy]
        best = min(range(len(d)), key=lambda i: (d[i], i))
        if limit is None or d[best] <= limit:
            assert pos[k] == best and dist[k] == d[best]
        else:
            assert pos[k] == -1 and np.isnan(dist[k])


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(-100, 100).map(lambda v: v / 4),
            st.integers(-100, 100).map(lambda v: v / 4),
            st.sampled_from([0.0, 0.5, 2.0, 7.25]),
            st.integers(0, 3),
        ),
        min_size=1,
        max_size=30,
    ),
)
def test_nearest_with_a_limit_per_target_equals_brute_force(targets):
    # Each target counts within its own limit (a fibre source's distance); ties by priority.
    polys = [Polygon([(0, 0), (4, 0), (4, 3)]), box(10, 10, 14, 12), box(-20, -5, -18, 5), None]
    xy = [(x, y) for x, y, _, _ in targets]
    limit = [lim for _, _, lim, _ in targets]
    prio = [p for _, _, _, p in targets]
    arr = np.array(xy)
    pos, dist = nearest(polys, points(arr[:, 0], arr[:, 1]), max_distance=limit, priority=prio)
    assert pos[3] == -1
    for k, poly in enumerate(polys[:3]):
        d = [poly.distance(shapely.Point(x, y)) for x, y in xy]
        ok = [i for i in range(len(d)) if d[i] <= limit[i]]
        if ok:
            best = min(ok, key=lambda i: (d[i], prio[i], i))
            assert pos[k] == best and dist[k] == d[best]
        else:
            assert pos[k] == -1 and np.isnan(dist[k])


def test_nearest_holds_few_pairs_at_a_time_and_refuses_a_bad_limit(monkeypatch):
    # 3,000 villages on a line, one long route along them all and points scattered: with at
    # most 500 candidate pairs at once the search goes in many batches, same answers.
    import ruralcov.join as join

    villages = [box(i * 10, 0, i * 10 + 8, 8) for i in range(3000)]
    rng = np.random.default_rng(7)
    targets = np.concatenate([
        points(rng.uniform(-50, 30_050, 400), rng.uniform(-60, 70, 400)),
        [shapely.LineString([(0, 28), (30_000, 28)])],  # 20 m from every village
    ])
    limits = np.r_[rng.choice([0.0, 5.0, 25.0], 400), 21.0]
    whole = nearest(villages, targets, max_distance=limits)
    monkeypatch.setattr(join, "_PAIRS_AT_ONCE", 500)
    batched = nearest(villages, targets, max_distance=limits)
    assert np.array_equal(whole[0], batched[0])
    assert np.array_equal(whole[1], batched[1], equal_nan=True)
    assert (whole[0] >= 0).all() and (whole[0] == 400).sum() > 1000
    for k in rng.choice(3000, 50, replace=False):
        d = shapely.distance(villages[k], targets)
        ok = np.flatnonzero(d <= limits)
        best = ok[np.lexsort((ok, d[ok]))[0]]
        assert whole[0][k] == best and whole[1][k] == d[best]
    for bad in (-1.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="max_distance"):
            nearest(villages[:2], targets[:2], max_distance=bad)


# --- the grid index (PolygonIndex): same answers as brute-force shapely ------------------------


@st.composite
def random_polygons(draw):
    """Overlapping random polygons on a quarter-unit grid: triangles, boxes with holes,
    MultiPolygons; plus points on the same grid, so many lie exactly on edges and vertices."""
    q = st.integers(0, 40).map(lambda v: v / 4)
    polys = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["triangle", "box", "holed", "multi"]))
        if kind == "triangle":
            pts = [(draw(q), draw(q)) for _ in range(3)]
            poly = Polygon(pts)
            if not poly.is_valid or poly.area == 0:
                poly = box(0, 0, 1, 1)
        else:
            x0, y0 = draw(st.integers(0, 30)) / 4, draw(st.integers(0, 30)) / 4
            w, h = draw(st.integers(2, 12)) / 4, draw(st.integers(2, 12)) / 4
            poly = box(x0, y0, x0 + w, y0 + h)
            if kind == "holed":
                poly = poly.difference(box(x0 + 0.25, y0 + 0.25, x0 + w - 0.25, y0 + h - 0.25))
            elif kind == "multi":
                poly = shapely.MultiPolygon([poly, box(x0 + w + 0.5, y0, x0 + w + 1, y0 + 0.5)])
        polys.append(poly)
    coords = draw(st.lists(st.tuples(st.integers(-4, 52), st.integers(-4, 52)),
                           min_size=1, max_size=200))
    xy = np.array(coords, dtype=float) / 4
    priority = draw(st.lists(st.integers(0, 3), min_size=len(polys), max_size=len(polys)))
    return polys, xy, np.array(priority)


def brute_force(polys, xy, priority):
    out = []
    for x, y in xy:
        pt = shapely.Point(x, y)
        covering = [k for k, p in enumerate(polys) if p.covers(pt)]
        out.append(min(covering, key=lambda k: (priority[k], k)) if covering else -1)
    return np.array(out)


@settings(max_examples=150, deadline=None)
@given(random_polygons())
def test_grid_index_equals_brute_force_shapely(world):
    polys, xy, priority = world
    want = brute_force(polys, xy, priority)
    index = PolygonIndex(polys, priority=priority)
    assert index.assign_xy(xy[:, 0], xy[:, 1]).tolist() == want.tolist()
    pts = points(xy[:, 0], xy[:, 1])
    assert assign_points(pts, polys, priority=priority, method="grid").tolist() == want.tolist()
    assert assign_points(pts, polys, priority=priority, method="tree").tolist() == want.tolist()


@settings(max_examples=40, deadline=None)
@given(worlds(), st.sampled_from([0.05, 0.5, 4.0]))
def test_grid_index_on_partitions_any_cell_size(world, cells_per_edge):
    cells, xy, priority = world
    want = brute_force(cells, xy, priority)
    index = PolygonIndex(cells, priority=priority, cells_per_edge=cells_per_edge)
    assert index.assign_xy(xy[:, 0], xy[:, 1]).tolist() == want.tolist()


def test_grid_index_on_many_random_points_and_voronoi_villages():
    rng = np.random.default_rng(5)
    seeds = shapely.multipoints(rng.uniform(0, 10, (300, 2)))
    cells = shapely.get_parts(shapely.voronoi_polygons(seeds, extend_to=box(0, 0, 10, 10)))
    cells = shapely.intersection(cells, box(0, 0, 10, 10))
    cells = shapely.segmentize(cells, 0.2)
    xy = rng.uniform(-0.5, 10.5, (200_000, 2))
    # Vertices of the cells themselves: exactly on boundaries shared by several villages.
    xy = np.vstack([xy, shapely.get_coordinates(cells)[:5000]])
    priority = rng.permutation(len(cells))
    got = PolygonIndex(cells, priority=priority).assign_xy(xy[:, 0], xy[:, 1])
    want = assign_points(points(xy[:, 0], xy[:, 1]), cells, priority=priority, method="tree")
    np.testing.assert_array_equal(got, want)
    sample = rng.choice(len(xy), 300, replace=False)
    np.testing.assert_array_equal(got[sample], brute_force(cells, xy[sample], priority))


def _near_boundaries(polys, rng, n):
    """Points a hair's breadth (1e-9 to 1e-15) off random vertices and edge midpoints."""
    xy = shapely.get_coordinates(shapely.boundary(np.asarray(polys, dtype=object)))
    mid = (xy[:-1] + xy[1:]) / 2
    base = np.vstack([xy, mid])[rng.integers(0, 2 * len(xy) - 1, n)]
    return base + rng.choice([-1, 1], (n, 2)) * 10.0 ** rng.integers(-15, -8, (n, 2))


@settings(max_examples=80, deadline=None)
@given(random_polygons(), st.integers(0, 2**31))
def test_centre_path_equals_ring_tests_and_shapely(world, seed):
    """Boundary cells answer from the cell centre and the few edges on the way to the point:
    the same as testing every ring, and as shapely, for points anywhere and a hair's breadth
    off vertices and edges."""
    polys, _, priority = world
    rng = np.random.default_rng(seed)
    xy = np.vstack([rng.uniform(-1, 13, (300, 2)), _near_boundaries(polys, rng, 200)])
    index = PolygonIndex(polys, priority=priority, cells_per_edge=rng.choice([0.5, 8, 64]))
    _, _, ref, where = index._candidates()
    known = ref >= 0
    got = index.assign_xy(xy[:, 0], xy[:, 1])
    index._rec[where] = -1  # the same index, every candidate tested ring by ring
    np.testing.assert_array_equal(got, index.assign_xy(xy[:, 0], xy[:, 1]))
    np.testing.assert_array_equal(got, brute_force(polys, xy, priority))
    # MultiPolygons are tested ring by ring; single polygons mostly from the centre.
    if any(p.geom_type == "Polygon" for p in polys):
        assert known.any()


def test_centre_path_used_on_villages_and_equal_to_the_tree():
    rng = np.random.default_rng(8)
    seeds = shapely.multipoints(rng.uniform(0, 10, (200, 2)))
    cells = shapely.get_parts(shapely.voronoi_polygons(seeds, extend_to=box(0, 0, 10, 10)))
    cells = shapely.segmentize(shapely.intersection(cells, box(0, 0, 10, 10)), 0.05)
    index = PolygonIndex(cells)
    assert (index._candidates()[2] >= 0).mean() > 0.99  # nearly all answered from the centre
    xy = np.vstack([rng.uniform(0, 10, (100_000, 2)), _near_boundaries(cells, rng, 20_000)])
    got = index.assign_xy(xy[:, 0], xy[:, 1])
    want = assign_points(points(xy[:, 0], xy[:, 1]), cells, method="tree")
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("origin", [(0.0, 0.0), (112.3, 37.8)])
def test_centre_answers_are_exact_when_edges_run_through_centres(origin):
    """Vertices on cell centres, an edge along a row of centres, another along a column and a
    diagonal through centres (up to rounding): every answer kept for a centre is shapely's,
    none is kept for a centre on the boundary, and points there and a hair off are right."""
    ox, oy = origin
    frame = box(ox, oy, ox + 10, oy + 10)
    probe = PolygonIndex([frame, box(ox + 1, oy + 1, ox + 2, oy + 2)])  # the same vertex count
    g0x, g0y, cs = probe._gx0, probe._gy0, probe._cs

    def centre(ix, iy):  # as the index computes it
        return g0x + (ix + 0.5) * cs, g0y + (iy + 0.5) * cs

    shape = Polygon([centre(3, 3), centre(13, 3), centre(13, 8), centre(8, 13), centre(3, 8)])
    index = PolygonIndex([frame, shape], priority=[1, 0])
    assert (index._gx0, index._gy0, index._cs) == (g0x, g0y, cs)
    slot, cand, ref, _ = index._candidates()
    cells = np.flatnonzero(index._state <= -2)
    cell_of_slot = dict(zip(-index._state[cells] - 2, cells, strict=True))
    polys = [frame, shape]
    on_boundary = 0
    for s, c, r in zip(slot, cand, ref, strict=True):
        iy, ix = divmod(cell_of_slot[s], index._nx)
        pt = shapely.Point(centre(ix, iy))
        on = shapely.intersects(polys[c].boundary, pt)
        on_boundary += on
        if on:
            assert r == -1
        elif r >= 0:
            assert r == polys[c].covers(pt)
    assert on_boundary >= 10  # the row, the column and the corners at least
    centres = np.array([centre(ix, iy) for ix in range(index._nx) for iy in range(index._ny)])
    rng = np.random.default_rng(5)
    xy = np.vstack([centres, centres + rng.choice([-1, 1], centres.shape) * 1e-13 * (1 + ox)])
    np.testing.assert_array_equal(index.assign_xy(xy[:, 0], xy[:, 1]),
                                  brute_force(polys, xy, [1, 0]))


def test_invalid_polygons_are_tested_ring_by_ring():
    """A shell crossing itself with a hole: covering is not the parity of its rings, so its
    cells never answer from the centre; results equal the ring tests."""
    bowtie = Polygon([(0, 0), (4, 4), (4, 0), (0, 4)], [[(0.5, 1.5), (0.5, 2.5), (1, 2)]])
    assert not bowtie.is_valid
    index = PolygonIndex([bowtie, box(5, 5, 6, 6)])
    _, cand, ref, where = index._candidates()
    of_bowtie = cand == 0
    assert of_bowtie.any() and (ref[of_bowtie] == -1).all()
    assert (ref[~of_bowtie] >= 0).all()
    rng = np.random.default_rng(3)
    xy = rng.uniform(-0.5, 6.5, (5000, 2))
    got = index.assign_xy(xy[:, 0], xy[:, 1])
    index._rec[where] = -1
    np.testing.assert_array_equal(got, index.assign_xy(xy[:, 0], xy[:, 1]))


def test_grid_index_missing_points_and_polygons():
    index = PolygonIndex([None, WEST, shapely.Polygon(), EAST])
    x = np.array([0.5, np.nan, 1.5, 1.0])
    y = np.array([0.5, 0.5, 0.5, 0.5])
    assert index.assign_xy(x, y).tolist() == [1, -1, 3, 1]


def test_fibre_evidence_at_100k_access_points_matches_shapely():
    """Access points within a distance of village polygons, vectorised, at 100,000 assets."""
    from ruralcov.classify import fibre_evidence

    rng = np.random.default_rng(11)
    seeds = shapely.multipoints(rng.uniform(0, 60_000, (3000, 2)))
    cells = shapely.get_parts(shapely.voronoi_polygons(seeds, extend_to=box(0, 0, 60_000,
                                                                              60_000)))
    villages = shapely.intersection(cells, box(0, 0, 60_000, 60_000))
    # Keep some villages away from all assets: holes in the coverage.
    xy = rng.uniform(-2_000, 62_000, (120_000, 2))
    far = (xy[:, 0] > 20_000) & (xy[:, 0] < 30_000)
    xy = xy[~far]
    aps = points(xy[:, 0], xy[:, 1])
    ids = np.array([f"AP-{k:06d}" for k in range(len(aps))], dtype=object)
    limit = np.where(np.arange(len(aps)) % 2 == 0, 0.0, 150.0)
    routes = shapely.linestrings([(25_000, 0), (25_000, 60_000)])
    got = fibre_evidence(villages, register_fibre=np.zeros(len(villages), bool), points=aps,
                         point_ids=ids, point_max_distance=limit, routes=[routes],
                         route_ids=np.array(["R"], dtype=object), route_nearby=[500.0])
    assert len(aps) >= 100_000
    for k in rng.choice(len(villages), 60, replace=False):
        d = shapely.distance(villages[k], aps)
        ok = d <= limit
        if ok.any():
            best = min(np.flatnonzero(ok), key=lambda i: (d[i], ids[i]))
            assert got.loc[k, "fibre"] and got.loc[k, "fibre_asset_id"] == ids[best]
            assert got.loc[k, "fibre_distance_m"] == pytest.approx(d[best])
            assert got.loc[k, "fibre_basis"] == ("access_point_inside" if d[best] == 0
                                                 else "access_point_near")
        else:
            assert not got.loc[k, "fibre"]
            near = shapely.distance(villages[k], routes) <= 500
            assert bool(got.loc[k, "fibre_nearby"]) == near
        nearest_i = min(range(len(d)), key=lambda i: (d[i], ids[i]))
        assert got.loc[k, "nearest_asset_id"] == ids[nearest_i]
