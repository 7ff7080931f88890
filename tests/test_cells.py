"""The 1 km cells of the speed tests (``CoverageResult.cells``), which the county maps draw.

Expected cells come from a brute-force count of the tests file with pandas, shapely and pyproj
(which tests are usable, which village and county holds them, which cell they fall in), never
from the engines; every engine must give them.
"""

from __future__ import annotations

import dataclasses

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import Transformer

from ruralcov import analyse, load_config, stream
from ruralcov.config import replace
from test_stream import _messy_tests
from worlds import write_north_world

COUNTY = {"V1": "K1", "V2": "K1", "V4": "K1", "V5": "K1", "V3": "K2", "C1": "K2"}


def _two_counties(folder):
    """The north world with V3 and C1 moved to a second county K2."""
    config = write_north_world(folder)
    register = pd.read_csv(folder / "register.csv", dtype=str)
    register["county"] = register["code"].map(COUNTY).fillna("K1")
    register.to_csv(folder / "register.csv", index=False, encoding="utf-8-sig")
    return config


def _brute_force(tests: pd.DataFrame, polygons: gpd.GeoDataFrame, metric: str, *,
                 min_tests: int, min_devices: int, target: float) -> pd.DataFrame:
    """Cells of the usable tests, counted directly: numeric coordinates in range, a numeric
    download from 0 to 10,000 Mbit/s, not a copy of an earlier row, inside a village (the
    lowest code on a shared edge)."""
    lon = pd.to_numeric(tests["lon"], errors="coerce")
    lat = pd.to_numeric(tests["lat"], errors="coerce")
    down = pd.to_numeric(tests["down"], errors="coerce")
    ok = (lon.between(-180, 180) & lat.between(-90, 90) & down.between(0, 10_000)
          & ~tests.astype(str).duplicated())
    codes = []
    for x, y in zip(lon[ok], lat[ok], strict=True):
        pt = shapely.Point(x, y)
        inside = sorted(c for c, g in zip(polygons["vcode"], polygons.geometry, strict=True)
                        if g.covers(pt))
        codes.append(inside[0] if inside else None)
    found = tests[ok].assign(code=codes, down=down[ok]).dropna(subset=["code"])
    mx, my = Transformer.from_crs("EPSG:4326", metric, always_xy=True).transform(
        lon[found.index].to_numpy(), lat[found.index].to_numpy())
    found = found.assign(county_code=found["code"].map(COUNTY).fillna("K1"),
                         ix=np.floor(mx / 1000).astype(np.int64),
                         iy=np.floor(my / 1000).astype(np.int64))
    cells = found.groupby(["county_code", "ix", "iy"]).agg(
        tests=("down", "size"), devices=("device", "nunique"),
        median_mbps=("down", "median")).reset_index()
    enough = (cells["tests"] >= min_tests) & (cells["devices"] >= min_devices)
    cells["speed_class"] = np.where(
        enough, np.where(cells["median_mbps"] >= target, "meets", "below"), "insufficient_data")
    return cells.astype({"county_code": str, "tests": "int64", "devices": "Int64",
                         "speed_class": str})


def _run(config, engine, monkeypatch):
    if engine == "loader":
        with monkeypatch.context() as m:
            m.setattr(stream, "supports", lambda speed: False)
            return analyse(config)
    if engine == "dask":
        pytest.importorskip("dask.distributed")
        pytest.importorskip("dask_geopandas")
        config = replace(config, run=dataclasses.replace(config.run, engine="dask",
                                                         dask_workers=1))
    return analyse(config)


DASK_WARNINGS = [pytest.mark.filterwarnings(w) for w in (
    # distributed warns about ports and event loops when clusters start and stop in tests
    "ignore::DeprecationWarning", "ignore::ResourceWarning", "ignore::UserWarning:distributed.*",
    "ignore::pytest.PytestUnraisableExceptionWarning")]


@pytest.mark.parametrize("engine", ["stream", "loader", pytest.param("dask", marks=DASK_WARNINGS)])
def test_cells_equal_a_brute_force_count(tmp_path, monkeypatch, engine):
    """Messy tests (bad rows, copies, points on shared edges and outside every village) in
    two counties: the cells count exactly the usable tests, by county, cell and device."""
    config = load_config(_two_counties(tmp_path))
    polygons = gpd.read_file(tmp_path / "polygons.gpkg")
    # Spread over the villages and up to 4 km around them: many cells, some across a county
    # border, and copies of rows that are usable and of rows that are not.
    frame = _messy_tests(polygons.geometry.values, np.random.default_rng(5), 4000)
    frame = pd.concat([frame, frame.iloc[100:160]], ignore_index=True)
    frame.to_csv(tmp_path / "messy.csv", index=False)
    speed = dataclasses.replace(config.speed, path=tmp_path / "messy.csv")
    result = _run(replace(config, speed=speed), engine, monkeypatch)
    want = _brute_force(pd.read_csv(tmp_path / "messy.csv", dtype=str), polygons,
                        result.metric_crs, min_tests=5, min_devices=3, target=12.0)
    assert len(want) > 20 and set(want["county_code"]) == {"K1", "K2"}
    pd.testing.assert_frame_equal(result.cells, want, check_exact=True)


def test_cells_apply_min_devices(tmp_path):
    """Six tests of 30 Mbit/s from two devices make a cell with enough tests, a median above
    the 12 Mbit/s target, and too few devices (min_devices = 3): insufficient data, as for a
    village; with min_devices = 2 the same cell meets the target."""
    config = load_config(write_north_world(tmp_path))
    polygons = gpd.read_file(tmp_path / "polygons.gpkg").set_index("vcode").geometry
    rows = []
    for code, devices in (("V2", ["a", "b"] * 3), ("V4", list("pqrstu"))):
        c = polygons[code].centroid
        rows += [{"lon": c.x + 1e-5 * k, "lat": c.y, "down": 30.0, "up": 5.0, "ping": 20.0,
                  "device": d} for k, d in enumerate(devices)]
    pd.DataFrame(rows).to_csv(tmp_path / "few_devices.csv", index=False)
    speed = dataclasses.replace(config.speed, path=tmp_path / "few_devices.csv")
    cells = analyse(replace(config, speed=speed)).cells.sort_values("devices")
    assert cells[["tests", "devices", "median_mbps", "speed_class"]].values.tolist() == [
        [6, 2, 30.0, "insufficient_data"], [6, 6, 30.0, "meets"]]
    relaxed = replace(config, speed=dataclasses.replace(speed, min_devices=2))
    assert set(analyse(relaxed).cells["speed_class"]) == {"meets"}


def test_no_cells_without_maps(tmp_path):
    """A run that draws no maps does not count cells (``[maps] enabled = false`` or
    ``analyse(cells=False)``)."""
    config = load_config(write_north_world(tmp_path))
    assert analyse(config, cells=False).cells is None
    off = replace(config, maps=dataclasses.replace(config.maps, enabled=False))
    assert analyse(off).cells is None
    assert analyse(off, cells=True).cells is not None
