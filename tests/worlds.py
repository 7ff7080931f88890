"""Small hand-made worlds written as real files, with answers known by construction.

The "north" world sits at 69.6°N (far from the equator, where degrees of longitude are short),
uses the generic register preset (nothing Chinese) and exercises every fibre and speed rule.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import tomli_w
from pyproj import Geod
from shapely import LineString, Point, box

GEOD = Geod(ellps="WGS84")
X0, Y0, STEP = 18.90, 69.60, 0.02  # village squares of 0.02° (about 780 m by 2.2 km)


def square(col: int, row: int):
    return box(X0 + col * STEP, Y0 + row * STEP, X0 + (col + 1) * STEP, Y0 + (row + 1) * STEP)


#: code -> (name, kind, township, column, row); None position: no polygon.
VILLAGES = {
    "V1": ("Nordby", "village", "T1", 0, 0),
    "V2": ("Sørby", "village", "T1", 1, 0),
    "V3": ("Austby", "village", "T1", 2, 0),
    "V4": ("Vestby", "village", "T2", 0, 1),
    "V5": ("Fjellby", "village", "T2", 1, 1),
    "V6": ("Utenkart", "village", "T2", None, None),
    "C1": ("Sentrum", "community", "T2", 2, 1),
    "X1": ("Industriområde", "other", "T2", None, None),
}

EXPECTED = {
    # code: (fibre, basis, fibre_nearby, tests, devices, median, class)
    "V1": (True, "access_point_inside", False, 7, 3, 20.0, "meets"),
    "V2": (True, "access_point_near", False, 6, 2, 30.0, "insufficient_data"),
    "V3": (False, "none", True, 6, 3, 8.0, "below"),
    "V4": (True, "register", False, 5, 5, 12.0, "meets"),
    "V5": (False, "none", False, 0, 0, None, "insufficient_data"),
    "V6": (False, "none", False, 0, 0, None, "insufficient_data"),
    "C1": (True, "access_point_inside", False, 5, 5, 80.0, "below"),
}


def write_north_world(folder: Path) -> Path:
    """Write register, polygons, fibre and speed files into ``folder``; return the config."""
    folder.mkdir(parents=True, exist_ok=True)
    register = pd.DataFrame(
        [
            {"code": c, "name": n, "kind": k, "township": t, "county": "K1"}
            for c, (n, k, t, _, _) in VILLAGES.items()
        ]
    )
    register.to_csv(folder / "register.csv", index=False, encoding="utf-8-sig")
    polys = {c: square(col, row) for c, (_, _, _, col, row) in VILLAGES.items() if col is not None}
    gpd.GeoDataFrame(
        {"vcode": list(polys)}, geometry=list(polys.values()), crs="EPSG:4326"
    ).to_file(folder / "polygons.gpkg", layer="villages")

    def inside(code: str) -> Point:
        return polys[code].centroid

    # AP-2 lies 300 m south of V2 (max_distance_m is 350), 490 m from V1 and V3;
    # AP-C in the middle of C1 is 388 m from its neighbour V5, beyond 350 m.
    lon, lat, _ = GEOD.fwd(polys["V2"].centroid.x, polys["V2"].bounds[1], 180, 300)
    aps = [
        ("AP-1", "operational", inside("V1")),
        ("AP-2", "in_service", Point(lon, lat)),
        ("AP-3", "planned", inside("V3")),
        ("AP-C", "operational", inside("C1")),
    ]
    gpd.GeoDataFrame(
        {"asset_id": [a[0] for a in aps], "status": [a[1] for a in aps]},
        geometry=[a[2] for a in aps],
        crs="EPSG:4326",
    ).to_file(folder / "access_points.gpkg", layer="nodes")
    # A route 200 m south of V3 only (V2 has fibre anyway).
    lon0, lat0, _ = GEOD.fwd(polys["V3"].bounds[0], polys["V3"].bounds[1], 180, 200)
    lon1, _, _ = GEOD.fwd(polys["V3"].bounds[2], polys["V3"].bounds[1], 180, 200)
    gpd.GeoDataFrame(
        {"route_id": ["R-1"], "status": ["operational"]},
        geometry=[LineString([(lon0 + 0.005, lat0), (lon1, lat0)])],
        crs="EPSG:4326",
    ).to_file(folder / "routes.geojson", driver="GeoJSON")
    pd.DataFrame({"village_code": ["V4", "V5"], "has_fibre": ["yes", "no"]}).to_csv(
        folder / "operator.csv", index=False
    )

    rows = []

    def tests(code: str, speeds: list[float], devices: list[str]) -> None:
        c = polys[code].centroid
        for k, (s, d) in enumerate(zip(speeds, devices, strict=True)):
            rows.append(
                {
                    "lon": c.x + 0.0001 * k,
                    "lat": c.y,
                    "down": s,
                    "up": s / 4,
                    "ping": 20.0,
                    "device": d,
                }
            )

    tests("V1", [10, 15, 20, 25, 30, 35], ["a", "b", "c", "a", "b", "c"])
    tests("V2", [30] * 6, ["a", "b"] * 3)
    tests("V3", [4, 6, 8, 8, 10, 12], ["a", "b", "c", "a", "b", "c"])
    tests("V4", [10, 11, 12, 13, 14], ["p", "q", "r", "s", "t"])
    tests("C1", [60, 70, 80, 90, 150], ["p", "q", "r", "s", "t"])
    # On the edge shared by V1 and V2: goes to V1 (lowest code); its 20 Mbps keeps V1's median.
    rows.append(
        {
            "lon": X0 + STEP,
            "lat": Y0 + STEP / 2,
            "down": 20.0,
            "up": 5.0,
            "ping": 20.0,
            "device": "a",
        }
    )
    # Bad rows: negative speed, missing coordinates, a point outside every village.
    rows.append(
        {
            "lon": X0 + STEP / 2,
            "lat": Y0 + STEP / 2,
            "down": -1.0,
            "up": 1,
            "ping": 1,
            "device": "z",
        }
    )
    rows.append({"lon": None, "lat": None, "down": 50.0, "up": 1, "ping": 1, "device": "z"})
    rows.append({"lon": X0 - 1, "lat": Y0, "down": 50.0, "up": 1, "ping": 1, "device": "z"})
    pd.DataFrame(rows).to_csv(folder / "tests.csv", index=False)

    config = {
        "run": {"name": "north", "provenance": "Hand-made test world."},
        "villages": {
            "path": "register.csv",
            "code": "code",
            "name": "name",
            "register": "generic",
            "levels": {"township": "township", "county": "county"},
            "kind": "kind",
            "encoding": "utf-8",
        },
        "boundaries": {"path": "polygons.gpkg", "layer": "villages", "code": "vcode"},
        "fibre": [
            {
                "path": "access_points.gpkg",
                "layer": "nodes",
                "kind": "access_points",
                "id": "asset_id",
                "status": "status",
                "max_distance_m": 350.0,
            },
            {"path": "routes.geojson", "kind": "routes", "id": "route_id", "nearby_m": 1000.0},
            {
                "path": "operator.csv",
                "kind": "table",
                "code": "village_code",
                "value": "has_fibre",
                "status": "",
            },
        ],
        "speed": {
            "path": "tests.csv",
            "lon": "lon",
            "lat": "lat",
            "download": "down",
            "upload": "up",
            "latency": "ping",
            "device": "device",
            "crs": "EPSG:4326",
            "min_tests": 5,
            "min_devices": 3,
        },
    }
    path = folder / "north.toml"
    path.write_text(tomli_w.dumps(config), encoding="utf-8")
    return path


def expected_frame() -> pd.DataFrame:
    cols = [
        "fibre",
        "fibre_basis",
        "fibre_nearby",
        "tests",
        "devices",
        "download_median_mbps",
        "speed_class",
    ]
    frame = pd.DataFrame.from_dict(EXPECTED, orient="index", columns=cols)
    frame["download_median_mbps"] = frame["download_median_mbps"].astype(float)
    return frame.replace({np.nan: None})
