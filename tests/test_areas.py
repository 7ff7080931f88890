"""The areas' unions (:mod:`ruralcov.areas`): equal to plain shapely unions on hand-made
worlds, the same files whether ``analyse`` starts them early or the writers make them, and
an error in a union raised by the run."""

from __future__ import annotations

import hashlib
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from click.testing import CliRunner

from ruralcov import analyse, areas
from ruralcov.cli import cli
from ruralcov.config import load_config
from ruralcov.report.gpkg import GPKG_FILE
from ruralcov.report.writer import write_contents
from worlds import write_north_world

CREATED = "2026-03-04T05:06:07+00:00"


def _grid(kind: str) -> tuple[np.ndarray, pd.Series, pd.Series]:
    """A 4 x 2 grid of unit squares: townships W (x < 2) and E, one county. ``collinear``:
    the square at (0, 0) has an extra vertex on the straight edge it shares with (1, 0),
    which that square lacks (W is a coverage once straightened); ``bent``: that vertex lies
    0.01 inside (1, 0), an overlap (W is no coverage, and so neither is the county)."""
    squares = [shapely.box(x, y, x + 1, y + 1) for x in range(4) for y in range(2)]
    extra = {"noded": None, "collinear": (1, 0.5), "bent": (1.01, 0.5)}[kind]
    if extra is not None:
        squares[0] = shapely.Polygon([(0, 0), (1, 0), extra, (1, 1), (0, 1)])
    township = pd.Series(["W" if g.bounds[0] < 2 else "E" for g in squares])
    return np.array(squares, dtype=object), township, pd.Series(["K"] * len(squares))


def _spy(monkeypatch: pytest.MonkeyPatch, geoms: np.ndarray) -> list[tuple[int, str]]:
    """The sizes of the groups whose coverage union is tried, and whether their polygons were
    ``geoms`` as they are or straightened (the real function is called)."""
    tried: list[tuple[int, str]] = []
    real = areas._coverage_union
    given = set(map(id, geoms))

    def counting(parts):
        tried.append((len(parts), "as is" if set(map(id, parts)) <= given else "straightened"))
        return real(parts)

    monkeypatch.setattr(areas, "_coverage_union", counting)
    return tried


@pytest.mark.parametrize("kind", ["noded", "collinear", "bent"])
def test_unions_equal_shapely_unions_of_each_key(kind, monkeypatch):
    geoms, township, county = _grid(kind)
    tried = _spy(monkeypatch, geoms)
    got = areas.dissolve_many([(geoms, township), (geoms, county)])
    for merged, keys in zip(got, (township, county), strict=True):
        assert list(merged.index) == sorted(set(keys))
        for key, area in merged.items():
            brute = shapely.union_all(geoms[(keys == key).to_numpy()])
            assert shapely.equals(area, brute) and area.geom_type == "Polygon"
    # each group's attempts are made once; a county starts where its townships got to: it
    # skips what could not hold; no group is tried again straightened when that changes none
    # of its villages
    want = {"noded": [(4, "as is"), (4, "as is"), (8, "as is")],
            "collinear": [(4, "as is"), (4, "as is"), (4, "straightened"), (8, "straightened")],
            "bent": [(4, "as is"), (4, "as is")]}[kind]  # straightening changes nothing there
    assert sorted(tried) == want


def test_straightening_drops_only_vertices_on_the_line_through_their_neighbours():
    """A square with extra vertices on two edges (one a hair off the line, well within the
    tolerance) and a hole with one, beside a triangle: the extra vertices go, the corners
    stay, rings are closed, and a ring never loses its corners."""
    tiny = 1e-13
    shell = [(0, 0), (0.5, tiny), (1, 0), (1, 0.25), (1, 1), (0, 1)]
    hole = [(0.2, 0.2), (0.2, 0.3), (0.2, 0.4), (0.4, 0.4), (0.4, 0.2)]
    square = shapely.Polygon(shell, [hole])
    triangle = shapely.Polygon([(2, 0), (3, 0), (2.5, 1)])
    sliver = shapely.Polygon([(4, 0), (5, 0), (4.5, 1e-12)])  # all within tolerance: kept whole
    got, of, changed = areas._straightened(
        np.array([square, shapely.MultiPolygon([triangle, sliver]), triangle]))
    assert len(got) == 4 and of.tolist() == [0, 1, 1, 2] and changed.tolist() == [1, 0, 0]
    assert shapely.equals_exact(got[3], triangle, tolerance=0)
    parts = np.array([square, shapely.MultiPolygon([triangle, sliver]), triangle, None])
    whole = areas._straightened(parts)
    for chunk in (1, 2, 3):  # a chunk at a time: the same polygons, owners and flags
        cut = areas._straightened(parts, chunk=chunk)
        assert [shapely.to_wkb(g) for g in cut[0]] == [shapely.to_wkb(g) for g in whole[0]]
        assert cut[1].tolist() == whole[1].tolist() == [0, 1, 1, 2]
        assert cut[2].tolist() == whole[2].tolist() == [True, False, False, False]
    assert shapely.equals_exact(got[0], shapely.Polygon(
        [(0, 0), (1, 0), (1, 1), (0, 1)], [[(0.2, 0.2), (0.2, 0.4), (0.4, 0.4), (0.4, 0.2)]]),
        tolerance=0)
    assert shapely.equals_exact(got[1], triangle, tolerance=0)
    assert shapely.equals_exact(got[2], sliver, tolerance=0)


@pytest.mark.parametrize("pair", [
    # a vertex the neighbour lacks on their only shared edge, overlapping squares, an island
    [shapely.Polygon([(0, 0), (1, 0), (1, 0.5), (1, 1), (0, 1)]), shapely.box(1, 0, 2, 1)],
    [shapely.box(0, 0, 1, 1), shapely.box(0.5, 0, 1.5, 1)],
    [shapely.box(0, 0, 1, 1), shapely.box(0.2, 0.2, 0.8, 0.8)],
])
def test_what_geos_coverage_union_gets_wrong_is_no_coverage(pair):
    """GEOS's coverage union returns these unmerged (an invalid multipolygon) rather than
    refusing them; the area is their general union all the same."""
    geoms = np.array(pair, dtype=object)
    assert not shapely.is_valid(shapely.coverage_union_all(geoms))  # what GEOS does
    assert areas._coverage_union(geoms) is None
    (merged,) = areas.dissolve_many([(geoms, pd.Series(["A", "A"]))])
    assert shapely.equals(merged["A"], shapely.union_all(geoms))
    assert merged["A"].geom_type == "Polygon" and shapely.is_valid(merged["A"])


def test_scattered_misnoded_townships_are_their_shapely_unions():
    """Townships numbered out of place: three keys scattered over a 4 x 4 grid of squares,
    each in several pieces (some squares touch one of their own, some only at a corner, some
    none), the square at (0, 0) misnoded so that the general union runs, subset by subset.
    Each union equals plain shapely's, part for part."""
    rows = ["AABC", "BCAB", "CBCA", "ACBA"]  # y = 0 .. 3, x = 0 .. 3
    squares = [shapely.box(x, y, x + 1, y + 1) for x in range(4) for y in range(4)]
    squares[0] = shapely.Polygon([(0, 0), (1, 0), (1, 0.5), (1, 1), (0, 1)])  # a T-junction
    township = pd.Series([rows[y][x] for x in range(4) for y in range(4)])
    geoms = np.array(squares, dtype=object)
    (merged,) = areas.dissolve_many([(geoms, township)])
    assert list(merged.index) == ["A", "B", "C"]
    for key, area in merged.items():
        brute = shapely.union_all(geoms[(township == key).to_numpy()])
        assert shapely.equals(area, brute)
        assert len(shapely.get_parts(area)) == len(shapely.get_parts(brute)) > 1
    assert len(shapely.get_parts(merged["A"])) == 4  # (0,0)+(1,0), (2,1), (3,2)+(3,3), (0,3)


@pytest.mark.parametrize("kind", ["collinear", "bent"])
def test_the_unions_alone_and_together_are_the_same_bytes(kind):
    geoms, township, county = _grid(kind)
    together = areas.dissolve_many([(geoms, township), (geoms, county)])
    for merged, keys in zip(together, (township, county), strict=True):
        alone = areas.dissolve(geoms, keys)  # no township beside the county: it tries its own
        assert [shapely.to_wkb(g) for g in alone] == [shapely.to_wkb(g) for g in merged]


def _slivers_one_by_one(geom, rel=1e-6):
    """The sliver removal as written before it was vectorised: part by part, hole by hole."""
    parts = []
    for part in getattr(geom, "geoms", [geom]):
        if part.geom_type != "Polygon":
            continue
        holes = [r for r in part.interiors if shapely.Polygon(r).area >= rel * part.area]
        parts.append(shapely.Polygon(part.exterior, holes))
    if not parts:
        return geom
    return parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)


def test_slivers_go_and_holes_stay_as_part_by_part():
    outer = shapely.box(0, 0, 100, 100)
    hole = shapely.box(10, 10, 20, 20)  # 1 % of the part: a lake, kept
    slit = shapely.box(50, 50, 50.001, 50.05)  # 5e-9 of the part: a sliver, dropped
    first = outer.difference(hole).difference(slit)
    second = shapely.box(200, 0, 201, 1).difference(shapely.box(200.5, 0.5, 200.5 + 1e-7, 0.6))
    cases = [first, shapely.MultiPolygon([first, second]), shapely.box(0, 0, 1, 1),
             shapely.GeometryCollection([first, shapely.LineString([(0, 0), (300, 300)])]),
             shapely.GeometryCollection(), shapely.Polygon()]
    for geom in cases:
        want = _slivers_one_by_one(geom)
        assert shapely.to_wkb(areas._without_slivers(geom)) == shapely.to_wkb(want)
    kept = areas._without_slivers(first)
    assert len(kept.interiors) == 1 and shapely.equals(shapely.Polygon(kept.interiors[0]), hole)
    assert len(areas._without_slivers(second).interiors) == 0


def _misnode(world: Path, kind: str) -> None:
    """Give village V1 of the north world an extra vertex on the edge it shares with V2:
    ``collinear`` on that edge (T1 and K1 are coverages once straightened), ``bent`` a tenth
    of the village's width inside V2 (an overlap: T1 and K1 take their general unions)."""
    path = world.parent / "polygons.gpkg"
    frame = gpd.read_file(path, layer="villages")
    v1 = frame.index[frame["vcode"] == "V1"][0]
    x0, y0, x1, y1 = frame.geometry[v1].bounds
    x = x1 + (0.1 * (x1 - x0) if kind == "bent" else 0)
    frame.loc[v1, "geometry"] = shapely.Polygon(
        [(x0, y0), (x1, y0), (x, (y0 + y1) / 2), (x1, y1), (x0, y1)])
    frame.to_file(path, layer="villages")


def _digests(folder: Path) -> dict[str, str]:
    names = [GPKG_FILE, "villages.parquet", "report.xlsx",
             *(p.relative_to(folder).as_posix() for p in sorted((folder / "tables").iterdir()))]
    return {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in names}


@pytest.mark.parametrize("misnoded", [None, "collinear", "bent"])
def test_early_unions_write_the_same_run_as_late_ones(tmp_path, misnoded):
    world = write_north_world(tmp_path / "in")
    if misnoded:
        _misnode(world, misnoded)
    config = load_config(world)
    early, late = analyse(config, area_unions=True), analyse(config)
    assert late.area_unions is None and early.area_unions is not None
    villages = early.villages
    for level in ("township", "county"):  # the writers take the early ones
        keys = villages[f"{level}_code"]
        assert early.area_unions.take(level, villages.geometry.to_numpy(), keys) is not None
        other = keys.copy()
        other.iloc[0] = "elsewhere"  # another key: not these unions
        assert early.area_unions.take(level, villages.geometry.to_numpy(), other) is None
    digests = []
    for name, result in (("early", early), ("late", late)):
        folder = tmp_path / name
        folder.mkdir()
        write_contents(result, folder, out=tmp_path / "run", maps=False, created=CREATED)
        digests.append(_digests(folder))
    assert digests[0] == digests[1]
    counties = gpd.read_file(tmp_path / "early" / GPKG_FILE, layer="counties")
    drawn = early.villages.geometry.dropna().to_numpy()
    assert shapely.equals(counties.geometry[0], shapely.union_all(drawn))


def test_an_error_in_a_union_is_raised_by_the_run(tmp_path, monkeypatch):
    world = write_north_world(tmp_path / "in")

    def broken(geom, rel=1e-6):
        raise RuntimeError("a union failed")

    monkeypatch.setattr(areas, "_without_slivers", broken)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="a union failed"):
        CliRunner().invoke(cli, ["-q", "run", str(world), "--out", str(out), "--no-maps"],
                           catch_exceptions=False)
    assert not (out / "manifest.json").exists()
