"""The demo world: deterministic, a true partition, and with the variety the analysis needs.

Every check here is computed directly with shapely/geopandas from the generated files, never
with ruralcov's own join code, so that the demo can be used to test that code.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from ruralcov.config import config_from_dict
from ruralcov.demo import build_demo_inputs

pytestmark = pytest.mark.slow

METRIC = "EPSG:32649"
NO_OUTLINE = {"140171", "140271", "140671", "140971"}
OPERATIONAL = {"operational", "in_service"}
GENERATED = (
    "village_polygons.gpkg",
    "township_polygons.gpkg",
    "fibre_access_points.gpkg",
    "fibre_routes.gpkg",
    "fibre_register.csv",
    "speedtests.parquet",
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("demo")
    return folder, build_demo_inputs(folder)


@pytest.fixture(scope="module")
def register(demo: tuple[Path, dict]) -> pd.DataFrame:
    return pd.read_csv(demo[0] / "villages.csv", dtype=str, encoding="utf-8")


@pytest.fixture(scope="module")
def villages(demo: tuple[Path, dict]) -> gpd.GeoDataFrame:
    return gpd.read_file(demo[0] / "village_polygons.gpkg", layer="villages")


@pytest.fixture(scope="module")
def townships(demo: tuple[Path, dict]) -> gpd.GeoDataFrame:
    return gpd.read_file(demo[0] / "township_polygons.gpkg", layer="townships")


@pytest.fixture(scope="module")
def tests_frame(demo: tuple[Path, dict]) -> pd.DataFrame:
    return pd.read_parquet(demo[0] / "speedtests.parquet")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_writes_identical_files(demo, tmp_path):
    folder, raw = demo
    again = build_demo_inputs(tmp_path)
    assert again == raw
    for name in GENERATED:
        assert _sha256(tmp_path / name) == _sha256(folder / name), name


def test_config_loads(demo):
    folder, raw = demo
    config = config_from_dict(raw, base=folder)
    assert config.run.name == "shanxi-demo"
    assert "Synthetic" in config.run.provenance
    assert [f.kind for f in config.fibre] == ["table", "access_points", "routes"]
    assert config.fibre[1].max_distance_m == 500
    assert config.boundaries is not None and config.boundaries.path.is_file()
    assert config.speed is not None and config.speed.path.is_file()
    for path in (
        config.villages.path,
        *config.villages.names.values(),
        *(f.path for f in config.fibre),
    ):
        assert path.is_file(), path
    # TOML has no null: no value may be None anywhere.
    assert None not in raw["fibre"][0].values()


def test_every_village_with_an_outline_has_one_valid_polygon(register, villages):
    assert villages.crs.to_epsg() == 4326
    assert villages["code"].map(len).eq(12).all()
    assert villages["code"].is_unique
    expected = set(register.loc[~register["areaCode"].isin(NO_OUTLINE), "code"])
    assert set(villages["code"]) == expected
    assert len(villages) == 21_895 - register["areaCode"].isin(NO_OUTLINE).sum()
    assert villages.is_valid.all()
    assert not villages.is_empty.any()
    assert villages.geom_type.isin(["Polygon", "MultiPolygon"]).all()
    assert not villages["code"].str[:6].isin(NO_OUTLINE).any()


def test_villages_partition_their_township(villages, townships):
    cells = townships.set_index("code").geometry
    metric = villages.to_crs(METRIC)
    for township, group in metric.groupby(metric["code"].str[:9]):
        areas = group.area.sum()
        union = shapely.union_all(group.geometry.values)
        assert abs(areas - union.area) <= 1e-6 * areas, f"villages overlap in {township}"
    # The cells were cut so that they partition exactly in lon/lat, the files' CRS.
    for township, group in villages.groupby(villages["code"].str[:9]):
        union = shapely.union_all(group.geometry.values)
        cell = cells[township]
        assert union.symmetric_difference(cell).area <= 1e-9 * cell.area, township


def test_villages_do_not_overlap_across_townships(villages):
    geoms = villages.geometry.values
    pairs = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    pairs = pairs[:, pairs[0] < pairs[1]]
    overlap = shapely.area(shapely.intersection(geoms[pairs[0]], geoms[pairs[1]]))
    smaller = np.minimum(shapely.area(geoms[pairs[0]]), shapely.area(geoms[pairs[1]]))
    # Neighbours share their edges vertex for vertex; only floating-point dust may overlap.
    assert (overlap <= 1e-8 * smaller).all()


def test_townships_partition_their_county(demo, townships):
    outlines = gpd.read_file(demo[0] / "county_outlines.geojson").set_index("code").geometry
    assert len(outlines) == 117
    assert set(townships["code"].str[:6]) == set(outlines.index)
    for county, group in townships.groupby(townships["code"].str[:6]):
        union = shapely.union_all(group.geometry.values)
        outline = outlines[county]
        assert union.symmetric_difference(outline).area <= 1e-9 * outline.area, county


def test_speed_tests_fall_in_villages_and_include_bad_rows(tests_frame, villages):
    frame = tests_frame
    assert list(frame.columns) == [
        "lon", "lat", "download_mbps", "upload_mbps", "latency_ms", "device_id", "test_time",
    ]  # fmt: skip
    for column in ("lon", "lat", "download_mbps", "upload_mbps", "latency_ms"):
        assert frame[column].dtype == np.float64, column
    assert frame["test_time"].dt.year.eq(2020).all()
    assert 14 <= len(frame) / len(villages) <= 18

    missing = frame["lon"].isna() | frame["lat"].isna()
    negative = frame["download_mbps"] < 0
    assert missing.sum() > 0 and negative.sum() > 0
    good = frame[~missing & ~negative]
    points = gpd.GeoSeries(gpd.points_from_xy(good["lon"], good["lat"]), crs=4326)
    hit = shapely.STRtree(villages.geometry.values).query(points.values, predicate="intersects")
    inside = np.zeros(len(good), dtype=bool)
    inside[hit[0]] = True
    assert inside.mean() > 0.99
    assert (~inside).sum() > 0, "some points must fall outside every village"
    bad = missing.sum() + negative.sum() + (~inside).sum()
    assert bad <= 0.002 * len(frame)


def test_speed_evidence_varies(tests_frame, villages):
    good = tests_frame.dropna(subset=["lon", "lat"])
    good = good[good["download_mbps"] >= 0]
    points = gpd.GeoDataFrame(good, geometry=gpd.points_from_xy(good["lon"], good["lat"]), crs=4326)
    joined = gpd.sjoin(points, villages, predicate="within")
    per = joined.groupby("code").agg(
        tests=("device_id", "size"),
        devices=("device_id", "nunique"),
        median=("download_mbps", "median"),
    )
    per = per.reindex(villages["code"]).fillna({"tests": 0, "devices": 0})
    insufficient = (per["tests"] < 5) | (per["devices"] < 3)
    assert 0.04 <= insufficient.mean() <= 0.10
    enough = per[~insufficient]
    assert (enough["median"] < 12).any() and (enough["median"] >= 100).any()


def test_fibre_files(demo):
    folder = demo[0]
    points = gpd.read_file(folder / "fibre_access_points.gpkg", layer="access_points")
    assert points.crs.to_epsg() == 4326
    assert points["asset_id"].is_unique
    assert set(points["asset_type"]) == {"OLT", "splitter", "terminal_box"}
    assert set(points["status"]) == {"operational", "in_service", "planned", "under_construction"}
    assert points.geom_type.eq("Point").all()
    routes = gpd.read_file(folder / "fibre_routes.gpkg", layer="routes")
    assert routes["route_id"].is_unique
    assert routes.geom_type.eq("LineString").all()
    assert {"operational", "planned"} <= set(routes["status"])
    table = pd.read_csv(folder / "fibre_register.csv", dtype=str, encoding="utf-8")
    assert list(table.columns) == ["village_code", "has_fibre"]
    assert set(table["has_fibre"]) == {"yes", "no"}
    assert 1 <= table["village_code"].str[:6].nunique() <= 2


def test_fibre_share_varies_between_counties(demo, register, villages):
    """Brute force: every administrative village against every operational access point near
    its county, with shapely.dwithin in metres."""
    folder = demo[0]
    points = gpd.read_file(folder / "fibre_access_points.gpkg").to_crs(METRIC)
    operational = points[points["status"].isin(OPERATIONAL)]
    xy = shapely.get_coordinates(operational.geometry.values)
    table = pd.read_csv(folder / "fibre_register.csv", dtype=str, encoding="utf-8")
    claimed = set(table.loc[table["has_fibre"] == "yes", "village_code"])

    admin = set(register.loc[register["name"].str.endswith(("村委会", "村民委员会")), "code"])
    metric = villages[villages["code"].isin(admin)].to_crs(METRIC)
    by_ap: dict[str, float] = {}
    by_definition: dict[str, float] = {}
    for county, group in metric.groupby(metric["code"].str[:6]):
        x0, y0, x1, y1 = group.total_bounds
        near = (xy[:, 0] >= x0 - 600) & (xy[:, 0] <= x1 + 600)
        near &= (xy[:, 1] >= y0 - 600) & (xy[:, 1] <= y1 + 600)
        polys = np.asarray(group.geometry.values)
        fibre = shapely.dwithin(polys[:, None], shapely.points(xy[near])[None, :], 500).any(axis=1)
        by_ap[county] = fibre.mean()
        by_definition[county] = (fibre | group["code"].isin(claimed).to_numpy()).mean()

    shares = pd.Series(by_definition)
    below = shares < 0.98
    assert 0.2 <= below.mean() <= 0.4, shares.describe()
    assert (shares < 0.95).any(), "some counties should be well below the target"
    assert (shares >= 0.98).sum() >= 0.6 * len(shares)
    # The access points alone already show the variety (the claimed list only adds a few).
    assert (pd.Series(by_ap) < 0.98).any() and (pd.Series(by_ap) >= 0.98).any()


def test_non_fibre_villages_have_planned_assets_or_routes_nearby(demo, villages):
    folder = demo[0]
    metric = villages.to_crs(METRIC)
    points = gpd.read_file(folder / "fibre_access_points.gpkg").to_crs(METRIC)
    operational = points["status"].isin(OPERATIONAL).to_numpy()
    tree = shapely.STRtree(metric.geometry.values)
    with_fibre = np.zeros(len(metric), dtype=bool)
    with_fibre[tree.query(points.geometry.values[operational], "dwithin", distance=500)[1]] = True
    inside = np.zeros(len(metric), dtype=bool)
    inside[tree.query(points.geometry.values[operational], "within")[1]] = True
    assert (with_fibre & ~inside).sum() > 100, "some fibre only just outside the polygon"

    planned = np.zeros(len(metric), dtype=bool)
    planned[tree.query(points.geometry.values[~operational], "within")[1]] = True
    routes = gpd.read_file(folder / "fibre_routes.gpkg").to_crs(METRIC)
    live = routes[routes["status"] == "operational"].geometry.values
    nearby = np.zeros(len(metric), dtype=bool)
    nearby[tree.query(live, "dwithin", distance=1000)[1]] = True
    gaps = ~with_fibre
    assert (gaps & planned).sum() > 20
    assert (gaps & nearby).sum() > 20
    assert (gaps & ~nearby & ~planned).sum() > 20
