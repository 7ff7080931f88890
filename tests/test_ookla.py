"""Ookla open-data tiles: quadkeys, assignment, statistics, and the Guam reproduction.

The Guam tiles (``tests/data/ookla_guam``, CC BY-NC-SA 4.0) come with figures a third party
published per quarter; ruralcov's reader must reproduce them exactly, and so must a village
holding all of Guam with ``weighting = "tiles"`` (``centroid`` or ``intersects``). ruralcov's
own tests-weighted village figures are checked against a computation written here from the
raw GeoJSON with the ``json`` module and ``math.fsum`` only; ``intersects`` against a
``geopandas.sjoin`` with pandas means; pooled quarters against the published sums and
tile-count-weighted published means. Each method is also checked on the "row world", whose
answers are computed by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
import tomli_w
from click.testing import CliRunner
from pyproj import Geod
from shapely import box

from ruralcov import analyse, load_config, ookla
from ruralcov.cli import cli
from ruralcov.config import SpeedConfig
from ruralcov.errors import RuralcovError

GUAM = Path(__file__).parent / "data" / "ookla_guam"
PUBLISHED = json.loads((GUAM / "published_stats_guam_fixed.json").read_text(encoding="utf-8"))
QUARTERS = sorted(PUBLISHED)
Z16 = 2**16


def _tiles(quarter: str) -> pd.DataFrame:
    path = GUAM / f"guam_fixed_{quarter}.geojson"
    return ookla.load_tiles(SpeedConfig(path=path, kind="ookla_tiles", network="fixed")).frame


# ----------------------------------------------------------------------------- quadkeys


def test_quadkey_tile_digits():
    # Bing's documented example: quadkey 213 is tile (3, 5) at level 3.
    assert ookla.quadkey_tile("213") == (3, 5, 3)
    assert ookla.quadkey_tile("") == (0, 0, 0)
    with pytest.raises(ValueError):
        ookla.quadkey_tile("0124")


def test_quadkey_polygons_equal_the_published_tile_polygons():
    """Ookla ships each tile's polygon beside its key: they must be the same rectangles."""
    tiles = _tiles("2019Q1")
    from_keys = ookla.quadkey_polygons(tiles["quadkey"].tolist())
    for got, want in zip(from_keys, tiles.geometry, strict=True):
        assert got.bounds == pytest.approx(want.bounds, abs=1e-9)
    assert ookla.quadkey_polygons(["12x", None])[0] is None


# ----------------------------------------------------------------------------- Guam


@pytest.mark.parametrize("quarter", QUARTERS)
def test_guam_published_figures_reproduced_exactly(quarter):
    got = ookla.tile_summary(_tiles(quarter), weighting="tiles")
    want = PUBLISHED[quarter]["guam"]
    assert {k: got[k] for k in want} == want  # exact, float equality included


def _raw_features(quarter: str) -> list[dict]:
    raw = json.loads((GUAM / f"guam_fixed_{quarter}.geojson").read_text(encoding="utf-8"))
    return [f for f in raw["features"]]


def _lon_edge(x: int) -> float:
    return x / Z16 * 360.0 - 180.0


def _lat_edge(y: int) -> float:
    return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * y / Z16))))


# Guam is split into four villages along tile edges (so no tile centre lies on a boundary),
# plus a village out at sea that no tile reaches.
X_SPLIT, Y_SPLIT = 59_122, 30_296  # zoom-16 tile column / row edges near 144.77°E, 13.45°N
WEST, EAST, SOUTH, NORTH = 144.5, 145.1, 13.1, 13.8


def _guam_villages() -> dict[str, object]:
    xs, ys = _lon_edge(X_SPLIT), _lat_edge(Y_SPLIT)
    return {
        "G1": box(WEST, ys, xs, NORTH),
        "G2": box(xs, ys, EAST, NORTH),
        "G3": box(WEST, SOUTH, xs, ys),
        "G4": box(xs, SOUTH, EAST, ys),
        "G5": box(145.3, 13.9, 145.4, 14.0),
    }


def _write_world(folder: Path, polys: dict[str, object], *, speed: dict, target: float,
                 levels: dict[str, str] | None = None) -> Path:
    """A small world's register, village polygons and configuration, written into ``folder``."""
    register = pd.DataFrame({"code": list(polys), "name": list(polys), **(levels or {})})
    register.to_csv(folder / "register.csv", index=False)
    gpd.GeoDataFrame({"code": list(polys)}, geometry=list(polys.values()), crs="EPSG:4326").to_file(
        folder / "villages.geojson"
    )
    villages = {"path": "register.csv", "register": "generic"}
    if levels:
        villages["levels"] = {level: level for level in levels}
    config = {
        "villages": villages,
        "boundaries": {"path": "villages.geojson", "code": "code"},
        "speed": {"kind": "ookla_tiles", "network": "fixed", **speed},
        "targets": {"village_download_mbps": target},
    }
    path = folder / "world.toml"
    path.write_text(tomli_w.dumps(config), encoding="utf-8")
    return path


def _guam_world(folder: Path, quarter: str, *, villages: dict | None = None, **speed) -> Path:
    one = {} if "periods" in speed else {"path": str(GUAM / f"guam_fixed_{quarter}.geojson")}
    return _write_world(folder, villages or _guam_villages(),
                        speed={**one, "min_tests": 30, "min_devices": 10, **speed},
                        target=25.0, levels={"township": "T", "county": "K"})


def _independent(quarter: str) -> dict[str, dict[str, float]]:
    """Per village, from the raw JSON: tile centre → village by comparing with the split
    lines, then tests-weighted means and sums with math.fsum."""
    xs, ys = _lon_edge(X_SPLIT), _lat_edge(Y_SPLIT)
    acc: dict[str, dict[str, list[float]]] = {}
    for f in _raw_features(quarter):
        ring = f["geometry"]["coordinates"][0]
        cx = (min(p[0] for p in ring) + max(p[0] for p in ring)) / 2
        cy = (min(p[1] for p in ring) + max(p[1] for p in ring)) / 2
        code = ("G1" if cx < xs else "G2") if cy > ys else ("G3" if cx < xs else "G4")
        p = f["properties"]
        a = acc.setdefault(code, {"d": [], "u": [], "l": [], "t": [], "dev": []})
        a["d"].append(p["tests"] * p["avg_d_kbps"] / 1000)
        a["u"].append(p["tests"] * p["avg_u_kbps"] / 1000)
        a["l"].append(p["tests"] * p["avg_lat_ms"])
        a["t"].append(p["tests"])
        a["dev"].append(p["devices"])
    out = {}
    for code, a in acc.items():
        t = math.fsum(a["t"])
        out[code] = {
            "tests": t,
            "devices": math.fsum(a["dev"]),
            "download": math.fsum(a["d"]) / t,
            "upload": math.fsum(a["u"]) / t,
            "latency": math.fsum(a["l"]) / t,
        }
    return out


@pytest.mark.parametrize("quarter", ["2019Q1", "2023Q4"])
def test_guam_village_figures_match_an_independent_computation(tmp_path, quarter):
    result = analyse(load_config(_guam_world(tmp_path, quarter)))
    v = result.villages.set_index("village_code")
    want = _independent(quarter)
    assert set(want) == {"G1", "G2", "G3", "G4"}  # every quadrant has tiles
    for code, w in want.items():
        assert v.at[code, "tests"] == w["tests"]
        assert v.at[code, "devices"] == w["devices"]
        assert v.at[code, "download_mean_mbps"] == pytest.approx(w["download"], rel=1e-12)
        assert v.at[code, "upload_mean_mbps"] == pytest.approx(w["upload"], rel=1e-12)
        assert v.at[code, "latency_mean_ms"] == pytest.approx(w["latency"], rel=1e-12)
        enough = w["tests"] >= 30 and w["devices"] >= 10
        cls = ("meets" if w["download"] >= 25.0 else "below") if enough else "insufficient_data"
        assert v.at[code, "speed_class"] == cls
    assert v.at["G5", "tests"] == 0 and v.at["G5", "speed_class"] == "insufficient_data"
    # Every tile lies in a village: the sums over villages are Guam's published sums.
    assert int(v["tests"].sum()) == PUBLISHED[quarter]["guam"]["tests"]
    rec = next(r for r in result.inputs if r.layer == "speed")
    assert rec.rows_read == rec.rows_used == len(_raw_features(quarter))
    # The Guam-wide tests-weighted figure equals the tests-weighted mean of the villages.
    total = ookla.tile_summary(_tiles(quarter), weighting="tests")
    assert total["download"] == pytest.approx(
        math.fsum(w["download"] * w["tests"] for w in want.values())
        / math.fsum(w["tests"] for w in want.values()),
        rel=1e-12,
    )


# ----------------------------------------------------------------------------- assignment

# Two villages share the meridian through the centre of one zoom-16 tile (T1); a second
# tile (T2) lies wholly in village A. Keys only, no geometry: the polygons come from the keys.
TX, TY = 34_000, 20_000  # a tile at about 6.8°E, 48.6°N (far from the equator)


def _quadkey(x: int, y: int, z: int = 16) -> str:
    return "".join(
        str(((x >> (z - 1 - i)) & 1) | (((y >> (z - 1 - i)) & 1) << 1)) for i in range(z)
    )


def _split_world(folder: Path, assignment: str, *, tiles_name: str = "tiles.csv") -> Path:
    w, s, e, n = (float(b) for b in ookla.tile_bounds(TX, TY, 16))
    mid = (w + e) / 2
    east2 = float(ookla.tile_bounds(TX - 1, TY, 16)[0])
    polys = {"A": box(east2 - 0.001, s, mid, n), "B": box(mid, s, e + 0.01, n)}
    pd.DataFrame(
        {
            "quadkey": [_quadkey(TX, TY), _quadkey(TX - 1, TY)],
            "avg_d_kbps": [40_000, 10_000],
            "avg_u_kbps": [8_000, 2_000],
            "avg_lat_ms": [10, 30],
            "tests": [10, 20],
            "devices": [4, 6],
        }
    ).to_csv(folder / tiles_name, index=False)
    speed = {"path": tiles_name, "assignment": assignment, "min_tests": 1, "min_devices": 1}
    return _write_world(folder, polys, speed=speed, target=12.0)


def test_centroid_on_a_shared_edge_goes_to_the_lowest_code(tmp_path):
    v = analyse(load_config(_split_world(tmp_path, "centroid"))).villages.set_index("village_code")
    assert v.at["A", "tests"] == 30 and v.at["A", "tiles"] == 2
    assert v.at["A", "download_mean_mbps"] == pytest.approx((10 * 40 + 20 * 10) / 30)
    assert v.at["B", "tests"] == 0 and v.at["B", "speed_class"] == "insufficient_data"
    assert v.at["A", "speed_class"] == "meets"  # 20 Mbps ≥ 12


def _west_half_share() -> float:
    """Independent: the geodesic area of T1's western half on the WGS 84 ellipsoid, as a
    share of the whole tile's."""
    geod = Geod(ellps="WGS84")
    w, s, e, n = (float(b) for b in ookla.tile_bounds(TX, TY, 16))
    half_w = abs(geod.geometry_area_perimeter(box(w, s, (w + e) / 2, n))[0])
    whole = abs(geod.geometry_area_perimeter(box(w, s, e, n))[0])
    return half_w / whole


def test_area_weighted_shares_a_tile_by_overlap_area_in_metres(tmp_path):
    v = analyse(load_config(_split_world(tmp_path, "area_weighted"))).villages.set_index(
        "village_code"
    )
    fa = _west_half_share()
    assert fa == pytest.approx(0.5, abs=1e-6)
    assert v.at["A", "tests_weighted"] == pytest.approx(20 + 10 * fa, rel=1e-6)
    assert v.at["B", "tests_weighted"] == pytest.approx(10 * (1 - fa), rel=1e-6)
    assert v.at["B", "devices_weighted"] == pytest.approx(4 * (1 - fa), rel=1e-6)
    assert v.at["A", "download_mean_mbps"] == pytest.approx(
        (20 * 10 + 10 * fa * 40) / (20 + 10 * fa), rel=1e-6
    )
    assert v.at["B", "download_mean_mbps"] == pytest.approx(40.0)
    assert v.at["B", "latency_mean_ms"] == pytest.approx(10.0)
    assert (v.at["A", "tests"], v.at["B", "tests"]) == (25, 5)


def test_area_weighted_tile_means_count_each_tile_by_its_share(tmp_path):
    """``weighting = "tiles"`` with shared tiles: each tile row counts with its area share."""
    world = _split_world(tmp_path, "area_weighted")
    text = world.read_text(encoding="utf-8")
    world.write_text(text.replace("[speed]\n", '[speed]\nweighting = "tiles"\n'),
                     encoding="utf-8")
    v = analyse(load_config(world)).villages.set_index("village_code")
    fa = _west_half_share()
    # A: T2 whole (10 Mbps, 2 Mbps up, 30 ms) and share fa of T1 (40, 8, 10); B: 1 - fa of T1.
    # (Shares in the run's metric CRS agree with geodesic ones to 1e-6, as above.)
    assert _figures(v, "A", rel=1e-6) == ((10 + fa * 40) / (1 + fa), (2 + fa * 8) / (1 + fa),
                                (30 + fa * 10) / (1 + fa))
    assert _figures(v, "B") == (40.0, 8.0, 10.0)
    assert v.at["A", "tests_weighted"] == pytest.approx(20 + 10 * fa, rel=1e-6)  # as by tests
    assert (v.at["A", "tiles"], v.at["B", "tiles"]) == (2, 1)
    assert set(v["speed_statistic"]) == {"tile_mean"}


# ----------------------------------------------------------------------------- fixed vs mobile


def test_network_is_required_and_never_mixed(tmp_path):
    path = _split_world(tmp_path, "centroid")
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('network = "fixed"\n', ""), encoding="utf-8")
    with pytest.raises(RuralcovError, match="network"):
        load_config(path)
    # a mobile file declared fixed, by its path
    mobile = tmp_path / "mobile"
    mobile.mkdir()
    mpath = _split_world(mobile, "centroid", tiles_name="ookla_mobile_2023q1.csv")
    with pytest.raises(RuralcovError, match="mobile"):
        analyse(load_config(mpath))
    # ... and by a type column
    tiles = pd.read_csv(tmp_path / "tiles.csv").assign(type=["fixed", "mobile"])
    tiles.to_csv(tmp_path / "tiles.csv", index=False)
    path.write_text(text, encoding="utf-8")
    res = CliRunner().invoke(
        cli, ["run", str(path), "--out", str(tmp_path / "out"), "--no-maps"], catch_exceptions=False
    )
    assert res.exit_code == 2
    assert "mobile" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------ third parties' methods

# The "row world": village P is exactly tile (TX, TY); village Q is tiles (TX+1, TY) and
# (TX+2, TY). Four tiles: T0 = P's tile, T1 and T2 = Q's tiles, T3 = (TX+1, TY+1) below T1,
# which touches P at a corner and Q along its top edge but has its centre in neither. Tiles and
# villages are written with the same coordinates (the test's own tile edges), so that edges
# and corners are shared exactly.
ROW_TILES = {  # name: (x, y, avg_d_kbps, avg_u_kbps, avg_lat_ms, tests, devices)
    "T0": (TX, TY, 40_000, 8_000, 10, 10, 4),
    "T1": (TX + 1, TY, 10_000, 2_000, 30, 20, 6),
    "T2": (TX + 2, TY, 19_000, 3_000, 20, 30, 5),
    "T3": (TX + 1, TY + 1, 30_000, 6_000, 40, 10, 2),
}
#: A later quarter: T1 and T2 again, with other figures.
ROW_TILES_LATER = {
    "T1": (TX + 1, TY, 20_000, 4_000, 20, 10, 3),
    "T2": (TX + 2, TY, 25_000, 5_000, 10, 30, 5),
}


def _edges(x0: int, y0: int, x1: int, y1: int):
    """The rectangle from the west edge of column x0 to the east edge of x1, rows y0..y1."""
    return box(_lon_edge(x0), _lat_edge(y1 + 1), _lon_edge(x1 + 1), _lat_edge(y0))


def _tile_file(path: Path, tiles: dict[str, tuple]) -> Path:
    rows = list(tiles.values())
    gpd.GeoDataFrame(
        {
            "quadkey": [_quadkey(r[0], r[1]) for r in rows],
            **{c: [r[i] for r in rows] for i, c in enumerate(ookla.TILE_COLUMNS, start=2)},
        },
        geometry=[_edges(r[0], r[1], r[0], r[1]) for r in rows],
        crs="EPSG:4326",
    ).to_file(path)
    return path


def _row_world(folder: Path, **speed) -> Path:
    polys = {"P": _edges(TX, TY, TX, TY), "Q": _edges(TX + 1, TY, TX + 2, TY)}
    _tile_file(folder / "tiles_2023Q1.geojson", ROW_TILES)
    _tile_file(folder / "tiles_2023Q2.geojson", ROW_TILES_LATER)
    one = {} if "periods" in speed else {"path": "tiles_2023Q1.geojson"}
    return _write_world(folder, polys, speed={**one, "min_tests": 1, "min_devices": 1, **speed},
                        target=20.0)


def _row_villages(folder: Path, **speed) -> pd.DataFrame:
    return analyse(load_config(_row_world(folder, **speed))).villages.set_index("village_code")


def _figures(v: pd.DataFrame, code: str, *, rel: float = 1e-12) -> tuple:
    cols = ("download_mean_mbps", "upload_mean_mbps", "latency_mean_ms")
    return tuple(pytest.approx(float(v.at[code, c]), rel=rel) for c in cols)


# Hand-computed from ROW_TILES (Mbit/s, Mbit/s, ms):
#   centroid:   P = {T0}, Q = {T1, T2}; T3 is outside every village.
#   intersects: P = {T0, T1 (edge), T3 (corner)}, Q = {T0 (edge), T1, T2, T3 (edge)}.
ROW_EXPECTED = {
    ("centroid", "tests"): {
        "P": ((40.0, 8.0, 10.0), 10, 4, 1),
        "Q": (((200 + 570) / 50, (40 + 90) / 50, (600 + 600) / 50), 50, 11, 2),
    },
    ("centroid", "tiles"): {
        "P": ((40.0, 8.0, 10.0), 10, 4, 1),
        "Q": (((10 + 19) / 2, (2 + 3) / 2, (30 + 20) / 2), 50, 11, 2),
    },
    ("intersects", "tests"): {
        "P": (((400 + 200 + 300) / 40, (80 + 40 + 60) / 40, (100 + 600 + 400) / 40), 40, 12, 3),
        "Q": (((400 + 200 + 570 + 300) / 70, (80 + 40 + 90 + 60) / 70,
               (100 + 600 + 600 + 400) / 70), 70, 17, 4),
    },
    ("intersects", "tiles"): {
        "P": (((40 + 10 + 30) / 3, (8 + 2 + 6) / 3, (10 + 30 + 40) / 3), 40, 12, 3),
        "Q": (((40 + 10 + 19 + 30) / 4, (8 + 2 + 3 + 6) / 4, (10 + 30 + 20 + 40) / 4),
              70, 17, 4),
    },
}


@pytest.mark.parametrize(("assignment", "weighting"), sorted(ROW_EXPECTED))
def test_each_method_on_a_world_known_by_construction(tmp_path, assignment, weighting):
    result = analyse(load_config(_row_world(tmp_path, assignment=assignment,
                                            weighting=weighting)))
    v = result.villages.set_index("village_code")
    for code, (means, tests, devices, tiles) in ROW_EXPECTED[assignment, weighting].items():
        assert _figures(v, code) == means, code
        assert (v.at[code, "tests"], v.at[code, "devices"]) == (tests, devices), code
        assert v.at[code, "tests_weighted"] == tests  # whole tiles: nothing apportioned
        assert v.at[code, "tiles"] == v.at[code, "tile_rows"] == tiles, code
    statistic = "tests_weighted_mean" if weighting == "tests" else "tile_mean"
    assert set(v["speed_statistic"]) == {statistic}
    rec = record_of(result, "speed")
    outside = found_rows(result, "speed", "outside_villages")
    if assignment == "centroid":  # T3's centre lies in no village
        assert outside == [4] and rec.dropped == {"outside_villages": 1}
    else:  # every tile touches a village: none is lost, and T0, T1, T3 count twice
        assert outside == [] and rec.dropped == {}
        assert v["tests"].sum() == 110 > sum(t[5] for t in ROW_TILES.values())


def record_of(result, layer: str):
    rec = next(r for r in result.inputs if r.layer == layer)
    assert rec.rows_read == rec.rows_used + sum(rec.dropped.values())
    return rec


def found_rows(result, layer: str, reason: str) -> list[int]:
    i = result.issues
    return sorted(int(r) for r in i[(i["layer"] == layer) & (i["reason"] == reason)]["row"])


def test_default_is_centroid_weighted_by_tests(tmp_path):
    default = _row_villages(tmp_path)
    for code, (means, tests, _, _) in ROW_EXPECTED["centroid", "tests"].items():
        assert _figures(default, code) == means and default.at[code, "tests"] == tests


# Pooled: T0 and T3 once (2023Q1), T1 and T2 in both quarters, hand-computed per village as
# (means, tests, devices, distinct tiles, tile rows).
POOLED_EXPECTED = {
    ("centroid", "tests"): {
        "P": ((40.0, 8.0, 10.0), 10, 4, 1, 1),
        "Q": (((200 + 570 + 200 + 750) / 90, (40 + 90 + 40 + 150) / 90,
               (600 + 600 + 200 + 300) / 90), 90, 19, 2, 4),
    },
    ("centroid", "tiles"): {
        "P": ((40.0, 8.0, 10.0), 10, 4, 1, 1),
        "Q": (((10 + 19 + 20 + 25) / 4, (2 + 3 + 4 + 5) / 4, (30 + 20 + 20 + 10) / 4),
              90, 19, 2, 4),
    },
    ("intersects", "tiles"): {
        "P": (((40 + 10 + 30 + 20) / 4, (8 + 2 + 6 + 4) / 4, (10 + 30 + 40 + 20) / 4),
              50, 15, 3, 4),
        "Q": (((40 + 10 + 19 + 30 + 20 + 25) / 6, (8 + 2 + 3 + 6 + 4 + 5) / 6,
               (10 + 30 + 20 + 40 + 20 + 10) / 6), 110, 25, 4, 6),
    },
}


@pytest.mark.parametrize(("assignment", "weighting"), sorted(POOLED_EXPECTED))
def test_pooled_quarters_are_one_source(tmp_path, assignment, weighting):
    periods = {"2023Q1": "tiles_2023Q1.geojson", "2023Q2": "tiles_2023Q2.geojson"}
    result = analyse(load_config(_row_world(tmp_path, periods=periods, pool=True,
                                            assignment=assignment, weighting=weighting)))
    v = result.villages.set_index("village_code")
    for code, (means, tests, devices, tiles, rows) in POOLED_EXPECTED[
            assignment, weighting].items():
        assert _figures(v, code) == means, code
        assert (v.at[code, "tests"], v.at[code, "devices"]) == (tests, devices), code
        assert (v.at[code, "tiles"], v.at[code, "tile_rows"]) == (tiles, rows), code
    # One source: no trend, no headline period; each file an input under its own layer.
    assert result.trends is None and "speed_period" not in v.columns
    first, second = record_of(result, "speed[2023Q1]"), record_of(result, "speed[2023Q2]")
    assert (first.rows_read, second.rows_read) == (4, 2)
    assert not [r for r in result.inputs if r.layer == "speed"]
    outside = found_rows(result, "speed[2023Q1]", "outside_villages")
    assert outside == ([4] if assignment == "centroid" else [])
    assert found_rows(result, "speed[2023Q2]", "outside_villages") == []


def test_pooled_run_writes_the_tile_columns(tmp_path):
    periods = {"2023Q1": "tiles_2023Q1.geojson", "2023Q2": "tiles_2023Q2.geojson"}
    cfg = _row_world(tmp_path, periods=periods, pool=True)
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["-q", "run", str(cfg), "--out", str(out), "--no-maps"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "tables" / "villages.csv", encoding="utf-8-sig")
    assert table.set_index("village_code").loc["Q", ["tiles", "tile_rows"]].tolist() == [2, 4]
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert [i["layer"] for i in manifest["inputs"] if i["layer"].startswith("speed")] == [
        "speed[2023Q1]", "speed[2023Q2]"]


@pytest.mark.parametrize(
    ("speed", "words"),
    [
        ({"weighting": "tile"}, ["[speed] weighting 'tile'", "did you mean 'tiles'?",
                                 "['tests', 'tiles']"]),
        ({"assignment": "intersect"}, ["[speed] assignment 'intersect'",
                                       "did you mean 'intersects'?", "area_weighted"]),
        ({"pool": True}, ["pool = true", "periods"]),
        ({"pool": "yes"}, ["[speed] pool must be true or false"]),
    ],
)
def test_unknown_methods_stop_with_one_line(tmp_path, speed, words):
    cfg = _row_world(tmp_path, **speed)
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["run", str(cfg), "--out", str(out), "--no-maps"])
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ruralcov: error: "), res.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert not out.exists()


# ----------------------------------------------------------------------------- Guam, per method


def _guam_villages_through_centres() -> dict[str, object]:
    """Guam split in four along lines through tile centres: every tile of the column and the
    row the lines cross overlaps two (or four) villages."""
    xs = (_lon_edge(X_SPLIT) + _lon_edge(X_SPLIT + 1)) / 2
    ys = (_lat_edge(Y_SPLIT) + _lat_edge(Y_SPLIT + 1)) / 2
    return {
        "G1": box(WEST, ys, xs, NORTH),
        "G2": box(xs, ys, EAST, NORTH),
        "G3": box(WEST, SOUTH, xs, ys),
        "G4": box(xs, SOUTH, EAST, ys),
    }


@pytest.mark.parametrize("assignment", ["centroid", "intersects"])
@pytest.mark.parametrize("quarter", ["2019Q1", "2021Q3", "2023Q4"])
def test_guam_tile_means_reproduce_the_published_figures(tmp_path, quarter, assignment):
    """One village holding all of Guam, unweighted tile means: the published figures, exact."""
    world = _guam_world(tmp_path, quarter, assignment=assignment, weighting="tiles",
                        villages={"GU": box(WEST, SOUTH, EAST, NORTH)})
    v = analyse(load_config(world)).villages.set_index("village_code")
    got = {"download": v.at["GU", "download_mean_mbps"], "upload": v.at["GU", "upload_mean_mbps"],
           "latency": v.at["GU", "latency_mean_ms"], "tests": v.at["GU", "tests"],
           "devices": v.at["GU", "devices"]}
    assert got == PUBLISHED[quarter]["guam"]  # exact, float equality included
    assert v.at["GU", "tiles"] == v.at["GU", "tile_rows"] == len(_raw_features(quarter))


@pytest.mark.parametrize("weighting", ["tests", "tiles"])
@pytest.mark.parametrize("quarter", ["2019Q1", "2023Q4"])
def test_guam_intersects_matches_a_geopandas_sjoin(tmp_path, quarter, weighting):
    """Published notebooks' method: ``geopandas.sjoin(tiles, villages, predicate="intersects")``
    then pandas means per village, computed here from the raw files."""
    world = _guam_world(tmp_path, quarter, assignment="intersects", weighting=weighting,
                        villages=_guam_villages_through_centres())
    v = analyse(load_config(world)).villages.set_index("village_code")
    tiles = gpd.read_file(GUAM / f"guam_fixed_{quarter}.geojson")
    villages = gpd.read_file(tmp_path / "villages.geojson")
    j = gpd.sjoin(tiles, villages, predicate="intersects")
    assert len(j) > len(tiles)  # tiles under the lines count in two or four villages
    j = j.assign(d=j["avg_d_kbps"] * j["tests"], u=j["avg_u_kbps"] * j["tests"],
                 lat=j["avg_lat_ms"] * j["tests"])
    per = j.groupby("code").agg(
        tests=("tests", "sum"), devices=("devices", "sum"), rows=("tests", "size"),
        d=("d", "sum"), u=("u", "sum"), lat=("lat", "sum"),
        d_mean=("avg_d_kbps", "mean"), u_mean=("avg_u_kbps", "mean"),
        lat_mean=("avg_lat_ms", "mean"),
    )
    assert set(per.index) == {"G1", "G2", "G3", "G4"}
    for code, w in per.iterrows():
        if weighting == "tests":
            want = (w["d"] / w["tests"] / 1000, w["u"] / w["tests"] / 1000,
                    w["lat"] / w["tests"])
        else:
            want = (w["d_mean"] / 1000, w["u_mean"] / 1000, w["lat_mean"])
        assert _figures(v, code) == want, code
        assert (v.at[code, "tests"], v.at[code, "devices"]) == (w["tests"], w["devices"])
        assert v.at[code, "tiles"] == v.at[code, "tile_rows"] == w["rows"]


def test_guam_pooled_quarters_against_the_published_figures(tmp_path):
    """All 20 quarters pooled, one village for Guam: tests and devices are the sums of the
    published sums; the tile mean is the published means weighted by each quarter's tile
    count; the tests-weighted mean and the distinct tiles come from the raw JSON."""
    periods = {q: str(GUAM / f"guam_fixed_{q}.geojson") for q in QUARTERS}
    guam = {"GU": box(WEST, SOUTH, EAST, NORTH)}
    rows = {q: _raw_features(q) for q in QUARTERS}
    n = {q: len(rows[q]) for q in QUARTERS}
    for weighting in ("tiles", "tests"):
        folder = tmp_path / weighting
        folder.mkdir()
        world = _guam_world(folder, QUARTERS[0], periods=periods, pool=True,
                            weighting=weighting, villages=guam)
        result = analyse(load_config(world))
        v = result.villages.set_index("village_code")
        assert v.at["GU", "tests"] == sum(PUBLISHED[q]["guam"]["tests"] for q in QUARTERS)
        assert v.at["GU", "devices"] == sum(PUBLISHED[q]["guam"]["devices"] for q in QUARTERS)
        assert v.at["GU", "tile_rows"] == sum(n.values())
        keys = {f["properties"]["quadkey"] for q in QUARTERS for f in rows[q]}
        assert v.at["GU", "tiles"] == len(keys) < sum(n.values())
        if weighting == "tiles":
            want = tuple(math.fsum(n[q] * PUBLISHED[q]["guam"][k] for q in QUARTERS)
                         / sum(n.values()) for k in ("download", "upload", "latency"))
        else:
            props = [f["properties"] for q in QUARTERS for f in rows[q]]
            tests = math.fsum(p["tests"] for p in props)
            want = tuple(math.fsum(p["tests"] * p[k] for p in props) / tests / scale
                         for k, scale in (("avg_d_kbps", 1000), ("avg_u_kbps", 1000),
                                          ("avg_lat_ms", 1)))
        assert _figures(v, "GU") == want
        assert [r.layer for r in result.inputs if r.layer.startswith("speed")] == [
            f"speed[{q}]" for q in QUARTERS]
        assert result.trends is None
