"""Tests for ruralcov.crs: CRS parsing, GCJ-02/BD-09 offsets and the metric CRS."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pyproj
import pytest
import shapely
from shapely.geometry import LineString, Point, Polygon

from ruralcov.crs import (
    bd09_to_gcj02,
    bd09_to_wgs84,
    gcj02_to_bd09,
    gcj02_to_wgs84,
    metric_crs,
    parse_crs,
    shift_geometries,
    to_wgs84,
    wgs84_to_bd09,
    wgs84_to_gcj02,
)
from ruralcov.errors import CRSError

# Published reference pairs for Tiananmen (116.404, 39.915), from the example output in
# wandergis/coordtransform, test/app.js (the widely used JavaScript implementation):
#   bd09togcj02:  [116.39762729119315, 39.90865673957631]
#   gcj02tobd09:  [116.41036949371029, 39.92133699351021]
#   wgs84togcj02: [116.41024449916938, 39.91640428150164]
#   gcj02towgs84: [116.39775550083061, 39.91359571849836]   (one-step approximation)
# The two inverse values come from one-step approximations; our inverses iterate, so they are
# compared with a ~1 m tolerance and checked exactly through the forward maps instead.
POINT = (116.404, 39.915)
REF_WGS84_TO_GCJ02 = (116.41024449916938, 39.91640428150164)
REF_GCJ02_TO_BD09 = (116.41036949371029, 39.92133699351021)
REF_BD09_TO_GCJ02 = (116.39762729119315, 39.90865673957631)
REF_GCJ02_TO_WGS84_ONE_STEP = (116.39775550083061, 39.91359571849836)

SHANXI = (110.2, 34.6, 114.6, 40.7)


def test_parse_crs_offset_names_and_epsg():
    for text in ("gcj02", "GCJ-02", " gcj_02 "):
        assert parse_crs(text) == "gcj02"
    for text in ("bd09", "BD-09", "Bd09"):
        assert parse_crs(text) == "bd09"
    assert parse_crs(None) is None
    assert parse_crs("") is None
    assert parse_crs("EPSG:4326") == pyproj.CRS.from_epsg(4326)
    assert parse_crs("epsg:32649").to_epsg() == 32649


def test_parse_crs_unknown_text_is_crs_error():
    with pytest.raises(CRSError, match="unknown CRS 'mars'.*gcj02"):
        parse_crs("mars")


def test_wgs84_to_gcj02_matches_published_pair():
    lon, lat = wgs84_to_gcj02(*POINT)
    assert lon == pytest.approx(REF_WGS84_TO_GCJ02[0], abs=1e-9)
    assert lat == pytest.approx(REF_WGS84_TO_GCJ02[1], abs=1e-9)


def test_gcj02_to_wgs84_inverts_published_pair_exactly():
    lon, lat = gcj02_to_wgs84(*REF_WGS84_TO_GCJ02)
    assert lon == pytest.approx(POINT[0], abs=1e-7)
    assert lat == pytest.approx(POINT[1], abs=1e-7)
    # Against the published one-step value: same answer to about a metre, not better.
    lon, lat = gcj02_to_wgs84(*POINT)
    assert lon == pytest.approx(REF_GCJ02_TO_WGS84_ONE_STEP[0], abs=2e-5)
    assert lat == pytest.approx(REF_GCJ02_TO_WGS84_ONE_STEP[1], abs=2e-5)
    # ... and ours is the exact inverse.
    back = wgs84_to_gcj02(lon, lat)
    assert back[0] == pytest.approx(POINT[0], abs=1e-9)
    assert back[1] == pytest.approx(POINT[1], abs=1e-9)


def test_gcj02_to_bd09_matches_published_pair():
    lon, lat = gcj02_to_bd09(*POINT)
    assert lon == pytest.approx(REF_GCJ02_TO_BD09[0], abs=1e-9)
    assert lat == pytest.approx(REF_GCJ02_TO_BD09[1], abs=1e-9)


def test_bd09_to_gcj02_matches_published_pair():
    lon, lat = bd09_to_gcj02(*POINT)
    assert lon == pytest.approx(REF_BD09_TO_GCJ02[0], abs=1e-5)
    assert lat == pytest.approx(REF_BD09_TO_GCJ02[1], abs=1e-5)
    lon, lat = bd09_to_gcj02(*REF_GCJ02_TO_BD09)
    assert lon == pytest.approx(POINT[0], abs=1e-7)
    assert lat == pytest.approx(POINT[1], abs=1e-7)


def test_round_trips_across_china_within_1e_6_degree():
    rng = np.random.default_rng(7)
    lon = rng.uniform(74, 134, 2000)
    lat = rng.uniform(18, 53, 2000)
    for fwd, inv in ((wgs84_to_gcj02, gcj02_to_wgs84), (wgs84_to_bd09, bd09_to_wgs84)):
        x, y = inv(*fwd(lon, lat))
        assert np.abs(x - lon).max() < 1e-6
        assert np.abs(y - lat).max() < 1e-6
    # The offset is real: hundreds of metres, not zero.
    gx, gy = wgs84_to_gcj02(lon, lat)
    assert np.hypot(gx - lon, gy - lat).min() > 1e-4


def test_points_outside_china_are_unchanged():
    lon = np.array([2.3522, -74.006, 151.2093, 139.6917])  # Paris, New York, Sydney, Tokyo
    lat = np.array([48.8566, 40.7128, -33.8688, 35.6895])
    for func in (wgs84_to_gcj02, gcj02_to_wgs84):
        x, y = func(lon, lat)
        np.testing.assert_array_equal(x, lon)
        np.testing.assert_array_equal(y, lat)


def test_nan_coordinates_do_not_break_vectorised_conversion():
    x, y = gcj02_to_wgs84(np.array([112.5, np.nan]), np.array([37.8, np.nan]))
    assert np.isfinite(x[0]) and np.isnan(x[1]) and np.isnan(y[1])


def test_shift_geometries_keeps_none_index_and_crs():
    ring = [(112.0, 37.0), (112.1, 37.0), (112.1, 37.1), (112.0, 37.0)]
    geoms = gpd.GeoSeries(
        [Point(*REF_WGS84_TO_GCJ02), None, Polygon(ring), LineString(ring[:2])],
        index=[10, 11, 12, 13],
        crs="EPSG:4326",
    )
    out = shift_geometries(geoms, gcj02_to_wgs84)
    assert list(out.index) == [10, 11, 12, 13]
    assert out.crs == geoms.crs
    assert out.iloc[1] is None
    assert out.iloc[0].x == pytest.approx(POINT[0], abs=1e-7)
    assert out.iloc[0].y == pytest.approx(POINT[1], abs=1e-7)
    assert out.iloc[2].geom_type == "Polygon"
    back = shift_geometries(out, wgs84_to_gcj02)
    assert shapely.equals_exact(back.iloc[2], geoms.iloc[2], tolerance=1e-9)
    arr = shift_geometries(np.array([Point(1, 1), None], dtype=object), gcj02_to_wgs84)
    assert isinstance(arr, np.ndarray) and arr[1] is None


def test_to_wgs84_from_gcj02_bd09_and_projected():
    gcj = gpd.GeoDataFrame({"a": [1]}, geometry=[Point(*REF_WGS84_TO_GCJ02)])
    out = to_wgs84(gcj, "gcj02")
    assert out.crs.to_epsg() == 4326
    assert out.geometry.iloc[0].x == pytest.approx(POINT[0], abs=1e-7)
    assert gcj.crs is None  # input untouched
    bd = gpd.GeoDataFrame(geometry=[Point(*REF_GCJ02_TO_BD09)])
    out = to_wgs84(bd, "bd09")
    assert out.geometry.iloc[0].x == pytest.approx(gcj02_to_wgs84(*POINT)[0], abs=1e-7)
    merc = gpd.GeoDataFrame(geometry=[Point(POINT)], crs="EPSG:4326").to_crs(3857)
    out = to_wgs84(merc, pyproj.CRS.from_epsg(3857))
    assert out.geometry.iloc[0].x == pytest.approx(POINT[0], abs=1e-9)


def test_metric_crs_utm_for_shanxi():
    crs = metric_crs(SHANXI)
    assert crs.to_epsg() in (32649, 32650)
    assert crs.axis_info[0].unit_name == "metre"


def test_metric_crs_equal_area_for_wide_extent():
    crs = metric_crs((80.0, 20.0, 120.0, 50.0))
    assert crs.to_epsg() is None
    assert crs.coordinate_operation.method_name == "Lambert Azimuthal Equal Area"
    assert crs.axis_info[0].unit_name == "metre"
    params = {p.name: p.value for p in crs.coordinate_operation.params}
    assert params["Longitude of natural origin"] == pytest.approx(100.0)
    assert params["Latitude of natural origin"] == pytest.approx(35.0)


def test_metric_distances_agree_with_geodesic_in_shanxi():
    rng = np.random.default_rng(2020)
    n = 500
    lon1 = rng.uniform(SHANXI[0] + 0.5, SHANXI[2] - 0.5, n)
    lat1 = rng.uniform(SHANXI[1] + 0.5, SHANXI[3] - 0.5, n)
    geod = pyproj.Geod(ellps="WGS84")
    lon2, lat2, _ = geod.fwd(lon1, lat1, rng.uniform(0, 360, n), rng.uniform(10e3, 50e3, n))
    _, _, true = geod.inv(lon1, lat1, lon2, lat2)
    tr = pyproj.Transformer.from_crs(4326, metric_crs(SHANXI), always_xy=True)
    x1, y1 = tr.transform(lon1, lat1)
    x2, y2 = tr.transform(lon2, lat2)
    planar = np.hypot(x2 - x1, y2 - y1)
    assert np.abs(planar / true - 1).max() < 0.002
