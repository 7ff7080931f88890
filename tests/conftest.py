"""Shared fixtures: a tiny hand-made world whose every number is known by construction.

``small_result`` is a :class:`ruralcov.CoverageResult` as ``analyse`` would return it for
(province 14 山西省, city 1401 太原市; fibre f, speed tests t / devices d, median Mbps)::

  county 140105 小店区
    township 140105001 东街街道
      140105001001 东关村委会     village    (0,0)  f register          10t 5d  50.0 meets
      140105001002 西关村委会     village    (1,0)  f AP-2 inside        8t 4d   8.0 below
      140105001003 南街社区居委会 community  (0,1)  f register          12t 6d 120.0 meets
    township 140105002 北营镇
      140105002001 北庄村委会     village    (2,0)  no fibre             2t 1d   3.0 insufficient
      140105002002 南庄村委会     village    (3,0)  f AP-5 at 150 m      6t 3d  12.0 meets
  county 140106 迎泽区
    township 140106001 河西镇
      140106001001 河西村委会     village    NO GEOMETRY, no fibre   0t          insufficient
      140106001002 工业园区       other      (10,1) no fibre             0t          insufficient
    township 140106002 上村镇
      140106002001 上村村委会     village    (11,0) f register          20t 10d 30.0 meets
      140106002002 下村村委会     village    (12,0) no fibre, route R-1 at 400 m (fibre_nearby);
                                              planned AP-9 inside;   7t 3d   5.0 below

Square (x,y) is the 0.01° cell (about 1 km) at lon 112.5 + 0.01·x, lat 37.8 + 0.01·y.
Targets: Shanxi 2020 (98 % fibre, 12 Mbps villages, 100 Mbps communities);
``min_tests = 5``, ``min_devices = 3``; access points count within ``max_distance_m = 200``,
routes are "nearby" within ``nearby_m = 500``.

Known answers (administrative villages only in the denominator):

========= ======== ===== ===== === ===== ===== ============
area      villages fibre share gap meets below insufficient
========= ======== ===== ===== === ===== ===== ============
province  7        4     4/7   3   3     2     2
140105    4        3     3/4   1   2     1     1
140106    3        1     1/3   2   1     1     1
========= ======== ===== ===== === ===== ===== ============

Gap = ``max(0, ceil(0.98 × villages) − fibre)``; 9 register units: 7 villages, 1 community
(meets 100 Mbps), 1 other. Gap lists: no_fibre 140105002001, 140106001001, 140106002002;
below_speed 140105001002, 140106002002; insufficient_data 140105002001, 140106001001.
Inputs balance: villages 10 read = 9 used + 1 duplicate; speed 68 = 65 + 2 negative + 1 outside.
``build_small_result(folder)`` builds the same result without pytest.
"""

from __future__ import annotations

import hashlib
from fractions import Fraction
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import LineString, Point, box

from ruralcov.config import Config, FibreConfig, RunConfig, SpeedConfig, VillagesConfig
from ruralcov.pipeline import CoverageResult, InputRecord
from ruralcov.schema import SUMMARY_COLUMNS, VILLAGE_COLUMNS
from ruralcov.validate import concat_issues, issue

LON0, LAT0, STEP = 112.5, 37.8, 0.01

PROVENANCE = (
    "Test world: village polygons, fibre access points and speed tests are hand-made "
    "(synthetic); names and codes imitate the NBS register."
)

NAMES = {
    "14": "山西省",
    "1401": "太原市",
    "140105": "小店区",
    "140106": "迎泽区",
    "140105001": "东街街道",
    "140105002": "北营镇",
    "140106001": "河西镇",
    "140106002": "上村镇",
}

# code, name, kind, square (x, y) or None, fibre, basis, asset, distance, nearby, route,
# route distance, nearest operational access point and its distance (m, approximate),
# tests, devices, median download
# fmt: off
_V = [
    ("140105001001", "东关村委会", "village", (0, 0), True, "register", None, None, False, None, None, "AP-2", 440.0, 10, 5, 50.0),  # noqa: E501
    ("140105001002", "西关村委会", "village", (1, 0), True, "access_point_inside", "AP-2", 0.0, False, None, None, "AP-2", 0.0, 8, 4, 8.0),  # noqa: E501
    ("140105001003", "南街社区居委会", "community", (0, 1), True, "register", None, None, False, None, None, "AP-2", 709.0, 12, 6, 120.0),  # noqa: E501
    ("140105002001", "北庄村委会", "village", (2, 0), False, "none", None, None, False, None, None, "AP-2", 440.0, 2, 1, 3.0),  # noqa: E501
    ("140105002002", "南庄村委会", "village", (3, 0), True, "access_point_near", "AP-5", 150.0, False, None, None, "AP-5", 150.0, 6, 3, 12.0),  # noqa: E501
    ("140106001001", "河西村委会", "village", None, False, "none", None, None, False, None, None, None, None, 0, 0, None),  # noqa: E501
    ("140106001002", "工业园区", "other", (10, 1), False, "none", None, None, False, None, None, "AP-5", 5158.0, 0, 0, None),  # noqa: E501
    ("140106002001", "上村村委会", "village", (11, 0), True, "register", None, None, False, None, None, "AP-5", 6010.0, 20, 10, 30.0),  # noqa: E501
    ("140106002002", "下村村委会", "village", (12, 0), False, "none", None, None, True, "R-1", 400.0, "AP-5", 6890.0, 7, 3, 5.0),  # noqa: E501
]
# fmt: on


def _square(xy: tuple[int, int] | None):
    if xy is None:
        return None
    x, y = xy
    return box(LON0 + x * STEP, LAT0 + y * STEP, LON0 + (x + 1) * STEP, LAT0 + (y + 1) * STEP)


def _speed_class(kind: str, tests: int, devices: int, median: float | None) -> str:
    if tests < 5 or devices < 3:
        return "insufficient_data"
    target = 100.0 if kind == "community" else 12.0
    return "meets" if median >= target else "below"


def small_villages() -> gpd.GeoDataFrame:
    """The village table of the small world (schema.VILLAGE_COLUMNS + geometry)."""
    rows = []
    for (
        code,
        name,
        kind,
        xy,
        fibre,
        basis,
        asset,
        dist,
        nearby,
        route,
        rdist,
        nearest,
        nearest_m,
        tests,
        devices,
        median,
    ) in _V:
        speed_class = _speed_class(kind, tests, devices, median)
        target = 100.0 if kind == "community" else 12.0
        rows.append(
            {
                "village_code": code,
                "village_name": name,
                "kind": kind,
                "township_code": code[:9],
                "township_name": NAMES[code[:9]],
                "county_code": code[:6],
                "county_name": NAMES[code[:6]],
                "city_code": code[:4],
                "city_name": NAMES[code[:4]],
                "province_code": code[:2],
                "province_name": NAMES[code[:2]],
                "has_geometry": xy is not None,
                "fibre": fibre,
                "fibre_basis": basis,
                "fibre_asset_id": asset,
                "fibre_distance_m": np.nan if dist is None else dist,
                "fibre_nearby": nearby,
                "fibre_route_id": route,
                "fibre_route_distance_m": np.nan if rdist is None else rdist,
                "nearest_asset_id": nearest,
                "nearest_asset_m": np.nan if nearest_m is None else nearest_m,
                "tests": tests,
                "devices": devices,
                "download_median_mbps": np.nan if median is None else median,
                # a loose but ordered interval around the median, with full float precision
                "download_ci_low_mbps": np.nan if median is None else median * 0.8123456,
                "download_ci_high_mbps": np.nan if median is None else median * 1.2345678,
                "upload_median_mbps": np.nan if median is None else median / 3,
                "latency_median_ms": np.nan if median is None else 20.0 + 100.0 / median,
                "share_tests_at_target": (
                    np.nan if median is None else (1.0 if median >= target else 1 / 3)
                ),
                "download_target_mbps": target,
                "speed_class": speed_class,
                "meets_targets": bool(fibre and speed_class == "meets"),
                "geometry": _square(xy),
            }
        )
    frame = gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:4326")
    frame["tests"] = frame["tests"].astype("int64")
    frame["devices"] = frame["devices"].astype("int64")
    missing = [c for c in VILLAGE_COLUMNS if c not in frame.columns]
    assert not missing, f"the small world lacks village columns {missing}; add them above"
    return frame.loc[:, [*VILLAGE_COLUMNS, "geometry"]]


def _summary(villages: pd.DataFrame, level: str, target: float) -> pd.DataFrame:
    """Summaries straight from the definitions; the tests check them against literals."""
    rows = []
    key = f"{level}_code"
    for code, group in villages.groupby(key, sort=True):
        adm = group[group["kind"] == "village"]
        com = group[group["kind"] == "community"]
        n, fib = len(adm), int(adm["fibre"].sum())
        frac = Fraction(str(target))
        gap = max(0, -(-frac.numerator * n // frac.denominator) - fib)
        meets = int((adm["speed_class"] == "meets").sum())
        com_meets = int((com["speed_class"] == "meets").sum())
        rows.append(
            {
                "level": level,
                "code": code,
                "name": NAMES[code],
                "villages": n,
                "villages_with_geometry": int(adm["has_geometry"].sum()),
                "fibre_villages": fib,
                "fibre_share": fib / n if n else np.nan,
                "fibre_target": target,
                "fibre_gap_villages": gap,
                "speed_meets": meets,
                "speed_below": int((adm["speed_class"] == "below").sum()),
                "speed_insufficient": int((adm["speed_class"] == "insufficient_data").sum()),
                "speed_share": meets / n if n else np.nan,
                "communities": len(com),
                "communities_speed_meets": com_meets,
                "communities_speed_share": com_meets / len(com) if len(com) else np.nan,
            }
        )
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_small_result(folder: Path) -> CoverageResult:
    """The small world's result, with its (tiny, real) input files written into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    villages = small_villages()
    vil_path = folder / "villages.csv"
    register = pd.DataFrame({"code": villages["village_code"], "name": villages["village_name"]})
    # one duplicated row, dropped by validation
    register = pd.concat([register, register.iloc[[0]]], ignore_index=True)
    register.to_csv(vil_path, index=False, encoding="utf-8")
    fibre_path = folder / "fibre_nodes.csv"
    # AP-9 is planned and lies inside 下村村委会: it must not give that village fibre
    fibre_path.write_text(
        "asset_id,status,lon,lat\nAP-2,operational,112.515,37.805\n"
        "AP-5,operational,112.5417,37.805\nAP-9,planned,112.625,37.805\n",
        encoding="utf-8",
    )
    routes_path = folder / "fibre_routes.csv"
    routes_path.write_text(
        'asset_id,status,wkt\nR-1,operational,"LINESTRING (112.625 37.7964, 112.64 37.7964)"\n',
        encoding="utf-8",
    )
    speed_path = folder / "speedtests.csv"
    speed_path.write_text("lon,lat,download_mbps,device_id\n" + "0,0,1,d\n" * 68, encoding="utf-8")

    # resolved as load_config would leave it (status filled in per kind)
    config = Config(
        run=RunConfig(name="small-world", profile="shanxi-2020", provenance=PROVENANCE),
        villages=VillagesConfig(path=vil_path, register="cn-nbs"),
        fibre=(
            FibreConfig(
                path=fibre_path, status="status", lon="lon", lat="lat", max_distance_m=200.0
            ),
            FibreConfig(
                path=routes_path, kind="routes", status="status", wkt="wkt", nearby_m=500.0
            ),
        ),
        speed=SpeedConfig(path=speed_path),
        base=folder,
    )
    target = config.targets.fibre_share
    summaries = {
        level: _summary(villages, level, target)
        for level in ("province", "city", "county", "township")
    }
    table = pd.DataFrame(villages.drop(columns="geometry"))
    gaps = {
        "no_fibre": table[(table["kind"] == "village") & ~table["fibre"]],
        "below_speed": table[
            table["kind"].isin(["village", "community"]) & (table["speed_class"] == "below")
        ],
        "insufficient_data": table[
            table["kind"].isin(["village", "community"])
            & (table["speed_class"] == "insufficient_data")
        ],
    }
    gaps = {k: v.reset_index(drop=True) for k, v in gaps.items()}
    issues = concat_issues(
        [
            issue(
                layer="villages",
                reason="duplicate_code",
                row=10,
                code="140105001001",
                message="code 140105001001 repeats row 1; the later row is left out",
                dropped=True,
            ),
            issue(
                layer="villages",
                reason="no_geometry",
                row=6,
                code="140106001001",
                severity="info",
                message="village 140106001001 has no polygon; it stays in the denominator",
            ),
            issue(
                layer="speed",
                reason="negative_speed",
                row=3,
                message="download_mbps is negative",
                dropped=True,
            ),
            issue(
                layer="speed",
                reason="negative_speed",
                row=4,
                message="download_mbps is negative",
                dropped=True,
            ),
            issue(
                layer="speed",
                reason="outside_villages",
                row=5,
                message="speed test lies outside every village polygon",
                dropped=True,
            ),
        ]
    )
    # rows read = rows used + rows dropped; 65 = the tests counted in the village table
    inputs = (
        InputRecord("villages", vil_path, _sha256(vil_path), 10, 9, {"duplicate_code": 1}),
        InputRecord("fibre[0]", fibre_path, _sha256(fibre_path), 3, 3, {}),
        InputRecord("fibre[1]", routes_path, _sha256(routes_path), 1, 1, {}),
        InputRecord(
            "speed",
            speed_path,
            _sha256(speed_path),
            68,
            65,
            {"negative_speed": 2, "outside_villages": 1},
        ),
    )
    # the keys of aggregate.headline, written out literally
    headline = {
        "register_units": 9,
        "villages": 7,
        "communities": 1,
        "other_units": 1,
        "villages_with_geometry": 6,
        "fibre_villages": 4,
        "fibre_share": 4 / 7,
        "fibre_target": 0.98,
        "fibre_gap_villages": 3,
        "fibre_target_met": False,
        "fibre_nearby_villages": 1,
        "speed_meets": 3,
        "speed_below": 2,
        "speed_insufficient": 2,
        "speed_share": 3 / 7,
        "communities_speed_meets": 1,
        "communities_speed_share": 1.0,
        "meets_targets_villages": 3,
        "tests_used": 65,
    }
    fibre_points = gpd.GeoDataFrame(
        {
            "asset_id": ["AP-2", "AP-5", "AP-9"],
            "status": ["operational", "operational", "planned"],
            "operational": [True, True, False],
            "source": ["fibre[0]"] * 3,
            "max_distance_m": [200.0] * 3,
            "nearby_m": [1000.0] * 3,
        },
        geometry=[Point(112.515, 37.805), Point(112.5417, 37.805), Point(112.625, 37.805)],
        crs="EPSG:4326",
    )
    fibre_routes = gpd.GeoDataFrame(
        {
            "asset_id": ["R-1"],
            "status": ["operational"],
            "operational": [True],
            "source": ["fibre[1]"],
            "max_distance_m": [0.0],
            "nearby_m": [500.0],
        },
        geometry=[LineString([(112.625, 37.7964), (112.64, 37.7964)])],
        crs="EPSG:4326",
    )
    return CoverageResult(
        config=config,
        villages=villages,
        summaries=summaries,
        gaps=gaps,
        issues=issues,
        inputs=inputs,
        headline=headline,
        fibre_points=fibre_points,
        fibre_routes=fibre_routes,
        metric_crs="EPSG:32649",
    )


@pytest.fixture
def small_result(tmp_path_factory: pytest.TempPathFactory) -> CoverageResult:
    """The small world (see the module docstring); inputs live in their own temp folder."""
    return build_small_result(tmp_path_factory.mktemp("small_inputs"))


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ruralcov demo`` written once per session, maps included (slow tests only): read it,
    never change it, so that every test sees the same run folder."""
    from click.testing import CliRunner

    from ruralcov.cli import cli

    out = tmp_path_factory.mktemp("demo_run") / "demo"
    result = CliRunner().invoke(cli, ["-q", "demo", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def pg_server():
    """A throwaway PostgreSQL + PostGIS server on a Unix socket (``tests/pgserver.py``),
    started once per session and stopped at its end. Without the packages the tests that use
    it fail, saying what to install: they are never skipped."""
    import pgserver

    why = pgserver.missing()
    if why is not None:
        pytest.fail(why, pytrace=False)
    server = pgserver.start()
    try:
        yield server
    finally:
        pgserver.stop(server)


#: The provinces of the small national worlds: Tibet 54 and Qinghai 63 (which share a border)
#: and Ningxia 64.
NATIONAL_PROVINCES = ("54", "63", "64")


def _build_national(folder: Path, provinces: tuple[str, ...]) -> CoverageResult:
    import dataclasses

    from ruralcov import analyse
    from ruralcov.config import config_from_dict, replace
    from ruralcov.national import build_national_inputs

    raw = build_national_inputs(folder, provinces=provinces, tests_per_village=2.0)
    config = replace(config_from_dict(raw, base=folder), base=folder)
    return analyse(replace(config, maps=dataclasses.replace(config.maps, enabled=False)))


@pytest.fixture(scope="session")
def national_worlds(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, ...], tuple]:
    """(provinces) -> (inputs folder, result) of the national demo world (slow tests only):
    :data:`NATIONAL_PROVINCES` together and each alone, built once per session, maps off.
    Read them, never change them."""
    out = {}
    for codes in (NATIONAL_PROVINCES, *((p,) for p in NATIONAL_PROVINCES)):
        folder = tmp_path_factory.mktemp("national-" + "-".join(codes))
        out[codes] = (folder, _build_national(folder, codes))
    return out
