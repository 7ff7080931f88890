"""The spatial engine against worlds whose answers are known by construction."""

from __future__ import annotations

import numpy as np
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely import Polygon, box, points

from ruralcov.join import assign_points, nearest

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
    st.sampled_from([0.0, 0.5, 1.0, 3.0, 20.0]),
)
def test_nearest_equals_brute_force(xy, limit):
    polys = [Polygon([(0, 0), (4, 0), (4, 3)]), box(10, 10, 14, 12), box(-20, -5, -18, 5)]
    arr = np.array(xy)
    pos, dist = nearest(polys, points(arr[:, 0], arr[:, 1]), max_distance=limit)
    for k, poly in enumerate(polys):
        d = [poly.distance(shapely.Point(x, y)) for x, y in xy]
        best = min(range(len(d)), key=lambda i: (d[i], i))
        if d[best] <= limit:
            assert pos[k] == best and np.isclose(dist[k], d[best])
        else:
            assert pos[k] == -1
