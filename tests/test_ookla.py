"""Ookla open-data tiles: quadkeys, assignment, statistics, and the Guam reproduction.

The Guam tiles (``tests/data/ookla_guam``, CC BY-NC-SA 4.0) come with figures a third party
published per quarter; ruralcov's reader must reproduce them exactly. ruralcov's own
tests-weighted village figures are checked against a computation written here from the raw
GeoJSON with the ``json`` module and ``math.fsum`` only.
"""

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


def _guam_world(folder: Path, quarter: str, **speed) -> Path:
    polys = _guam_villages()
    pd.DataFrame({"code": list(polys), "name": list(polys), "township": "T", "county": "K"}).to_csv(
        folder / "register.csv", index=False
    )
    gpd.GeoDataFrame({"code": list(polys)}, geometry=list(polys.values()), crs="EPSG:4326").to_file(
        folder / "villages.geojson"
    )
    config = {
        "run": {"name": "guam"},
        "villages": {
            "path": "register.csv",
            "register": "generic",
            "levels": {"township": "township", "county": "county"},
        },
        "boundaries": {"path": "villages.geojson", "code": "code"},
        "speed": {
            "path": str(GUAM / f"guam_fixed_{quarter}.geojson"),
            "kind": "ookla_tiles",
            "network": "fixed",
            "min_tests": 30,
            "min_devices": 10,
            **speed,
        },
        "targets": {"village_download_mbps": 25.0},
    }
    path = folder / "guam.toml"
    path.write_text(tomli_w.dumps(config), encoding="utf-8")
    return path


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
    pd.DataFrame({"code": ["A", "B"], "name": ["A", "B"]}).to_csv(
        folder / "register.csv", index=False
    )
    gpd.GeoDataFrame({"code": list(polys)}, geometry=list(polys.values()), crs="EPSG:4326").to_file(
        folder / "villages.geojson"
    )
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
    config = {
        "villages": {"path": "register.csv", "register": "generic"},
        "boundaries": {"path": "villages.geojson", "code": "code"},
        "speed": {
            "path": tiles_name,
            "kind": "ookla_tiles",
            "network": "fixed",
            "assignment": assignment,
            "min_tests": 1,
            "min_devices": 1,
        },
        "targets": {"village_download_mbps": 12.0},
    }
    path = folder / "split.toml"
    path.write_text(tomli_w.dumps(config), encoding="utf-8")
    return path


def test_centroid_on_a_shared_edge_goes_to_the_lowest_code(tmp_path):
    v = analyse(load_config(_split_world(tmp_path, "centroid"))).villages.set_index("village_code")
    assert v.at["A", "tests"] == 30 and v.at["A", "tiles"] == 2
    assert v.at["A", "download_mean_mbps"] == pytest.approx((10 * 40 + 20 * 10) / 30)
    assert v.at["B", "tests"] == 0 and v.at["B", "speed_class"] == "insufficient_data"
    assert v.at["A", "speed_class"] == "meets"  # 20 Mbps ≥ 12


def test_area_weighted_shares_a_tile_by_overlap_area_in_metres(tmp_path):
    v = analyse(load_config(_split_world(tmp_path, "area_weighted"))).villages.set_index(
        "village_code"
    )
    # Independent: the geodesic area of each half of T1 on the WGS 84 ellipsoid.
    geod = Geod(ellps="WGS84")
    w, s, e, n = (float(b) for b in ookla.tile_bounds(TX, TY, 16))
    half_w = abs(geod.geometry_area_perimeter(box(w, s, (w + e) / 2, n))[0])
    whole = abs(geod.geometry_area_perimeter(box(w, s, e, n))[0])
    fa = half_w / whole
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
