"""Helpers for the map tests: a hostile-names variant of the small world, and an independent
reader of the layer data embedded in a map page."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
from shapely.geometry import LineString

from ruralcov.pipeline import CoverageResult

XSS = "<img src=x onerror=alert(1)>"
QUOTES = "引号\"村'委会 & </script><script>alert(2)</script>"

#: village code -> hostile name in the small world
HOSTILE = {"140105001001": XSS, "140105001002": QUOTES}


def hostile_result(result: CoverageResult) -> CoverageResult:
    """The small world with hostile village names (and a hostile township name)."""
    villages = result.villages.copy()
    for code, name in HOSTILE.items():
        villages.loc[villages["village_code"] == code, "village_name"] = name
    villages.loc[villages["township_code"] == "140105001", "township_name"] = XSS
    return dataclasses.replace(result, villages=villages)


def small_plan() -> gpd.GeoDataFrame:
    """A plan for county 140105: connect 北庄村委会 (order 1) from 西关村委会's access point."""
    return gpd.GeoDataFrame(
        {
            "area_code": ["140105"],
            "order": [1],
            "village_code": ["140105002001"],
            "connects_to": ["AP-2"],
            "link_km": [1.25],
        },
        geometry=[LineString([(112.515, 37.805), (112.525, 37.805)])],
        crs="EPSG:4326",
    )


def north_cells(folder: Path, metric_crs: str, *, cell_m: float = 1000.0) -> pd.DataFrame:
    """The north world's speed tests per 1 km cell, computed here with geopandas from the
    files ``tests/worlds.py`` wrote into ``folder``, independently of ruralcov: the usable
    tests (a download of at least 0 and a location) inside a village polygon, binned in
    ``metric_crs`` and classed by the world's rule (at least 5 tests from 3 devices; median
    against the 12 Mbps village target)."""
    raw = pd.read_csv(folder / "tests.csv")
    raw = raw[(raw["down"] >= 0) & raw["lon"].notna() & raw["lat"].notna()]
    pts = gpd.GeoDataFrame(raw, geometry=gpd.points_from_xy(raw["lon"], raw["lat"]),
                           crs="EPSG:4326")
    polys = gpd.read_file(folder / "polygons.gpkg", layer="villages")
    inside = gpd.sjoin(pts, polys, predicate="intersects")
    tests = pts.loc[sorted(set(inside.index))]  # a test on a shared edge is one test
    x, y = pyproj.Transformer.from_crs("EPSG:4326", metric_crs, always_xy=True).transform(
        tests["lon"].to_numpy(), tests["lat"].to_numpy()
    )
    frame = pd.DataFrame({"county_code": "K1", "ix": np.floor(x / cell_m).astype(np.int64),
                          "iy": np.floor(y / cell_m).astype(np.int64),
                          "down": tests["down"].to_numpy(), "device": tests["device"].to_numpy()})
    cells = frame.groupby(["county_code", "ix", "iy"], sort=True).agg(
        tests=("down", "size"), devices=("device", "nunique"), median_mbps=("down", "median")
    ).reset_index()
    enough = (cells["tests"] >= 5) & (cells["devices"] >= 3)
    meets = cells["median_mbps"] >= 12.0
    cells["speed_class"] = np.where(enough, np.where(meets, "meets", "below"),
                                    "insufficient_data")
    return cells


def with_cells(result: CoverageResult, cells: pd.DataFrame) -> CoverageResult:
    """``result`` with ``cells``, unless the analysis gave it cells already: then those stay
    (the maps must draw what the engine computed)."""
    if result.cells is not None:
        return result
    return dataclasses.replace(result, cells=cells)


def drawn_cells(data: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """``(tests, devices, median, class label)`` of each cell of a ``speed_cells`` layer."""
    labels = [c["label"] for c in data["classes"]]
    return list(zip(column(data, "tests"), column(data, "devices"),
                    column(data, "median download (Mbps)"), [labels[k] for k in data["cls"]],
                    strict=True))


_LAYER = re.compile(r"ruralcov\.layer\((\{.*?\})\);\n", re.S)


def layers(html: str) -> dict[str, dict[str, Any]]:
    """Every ``ruralcov.layer({...})`` payload of a page, by layer id (plain JSON: the page
    escapes ``<``, ``>`` and ``&`` as JSON unicode escapes)."""
    return {d["id"]: d for d in (json.loads(m) for m in _LAYER.findall(html))}


_TILED = re.compile(r"ruralcov\.tiled\((\{.*?\})\);\n", re.S)


def tiled_layers(html: str) -> dict[str, dict[str, Any]]:
    """Every ``ruralcov.tiled({...})`` payload of a page (themes drawn from vector tiles)."""
    return {d["id"]: d for d in (json.loads(m) for m in _TILED.findall(html))}


def with_maps(result: CoverageResult, **keys: Any) -> CoverageResult:
    """``result`` with other ``[maps]`` keys (``vector_tiles``, ``max_page_mb``)."""
    maps = dataclasses.replace(result.config.maps, **keys)
    return dataclasses.replace(result, config=dataclasses.replace(result.config, maps=maps))


def read_script(path: Path, call: str) -> list[Any]:
    """The arguments of the one call ``call(a, b, ...)`` that a data script makes (plain
    JSON values, as the evidence, search and chunk scripts hold them)."""
    text = path.read_text(encoding="utf-8")
    assert text.startswith(f"{call}(") and text.endswith(");\n"), path
    return json.loads("[" + text[len(call) + 1:-3] + "]")


def value(col: dict[str, Any], i: int) -> Any:
    v = col["v"][i]
    return col["d"][v] if "d" in col and v is not None else v


def column(data: dict[str, Any], label: str) -> list[Any]:
    col = next(c for c in data["cols"] if c["label"] == label)
    return [value(col, i) for i in range(len(col["v"]))]


def decode_ring(flat: list[int], q: float) -> list[tuple[float, float]]:
    out, x, y = [], 0, 0
    for i in range(0, len(flat), 2):
        x += flat[i]
        y += flat[i + 1]
        out.append((x / q, y / q))
    return out


# --------------------------------------------------------------------------- village legends

GAP = ("no fibre (gap)", "#d73027")
NOT_COUNTED = ("not an administrative village or community", "#d9d9d9")

#: The village legend of a run without capability records, as it has always been:
#: speed class of a village with fibre -> (label, fill colour); then the gap and the rest.
THREE_WAY_LEGEND = {
    "meets": ("fibre and speed target met", "#1a9850"),
    "below": ("fibre only: speed below target", "#fdae61"),
    "insufficient_data": ("fibre, too few speed tests", "#91bfdb"),
}

#: The village legend of a run with capability records: one class per five-way speed class
#: (the meaning of each class in words, as in ruralcov.capability's table), today's colours
#: for meets / fails (drawn as "below") / too few, and two new ones for the disagreements.
FIVE_WAY_LEGEND = {
    "meets": ("fibre; meets: capability and measurement both meet the target", "#1a9850"),
    "capability_only": (
        "fibre; capability only: capability meets, measurement below or too thin",
        "#a6d96a",
    ),
    "measured_only": (
        "fibre; measured only: measurement meets, capability below or not recorded",
        "#c2a5cf",
    ),
    "fails": ("fibre; fails: neither meets (at least one says below)", "#fdae61"),
    "insufficient_data": (
        "fibre; insufficient data: no capability record and too few measurements",
        "#91bfdb",
    ),
}


def legend_from_csv(
    run: Path, *, five_way: bool, county: str | None = None
) -> list[tuple[str, str, int]]:
    """The village legend ``(label, colour, count)`` a map page must show, counted straight
    from the run's ``tables/villages.csv``: every register unit with geometry (of ``county``),
    by kind, fibre and speed class, by the README's definitions."""
    v = pd.read_csv(run / "tables" / "villages.csv", dtype=str, encoding="utf-8-sig")
    v = v[v["has_geometry"].str.lower() == "true"]
    if county is not None:
        v = v[v["county_code"] == county]
    counted = v["kind"].isin(["village", "community"])
    fibre = v["fibre"].str.lower() == "true"
    scheme = FIVE_WAY_LEGEND if five_way else THREE_WAY_LEGEND
    out = [
        (label, colour, int((counted & fibre & (v["speed_class"] == cls)).sum()))
        for cls, (label, colour) in scheme.items()
    ]
    out.append((*GAP, int((counted & ~fibre).sum())))
    out.append((*NOT_COUNTED, int((~counted).sum())))
    assert sum(n for _, _, n in out) == len(v)  # every drawn unit in exactly one class
    return out


def legend_of(layer: dict[str, Any]) -> list[tuple[str, str, int]]:
    """The ``(label, colour, count)`` of every class of a layer payload."""
    return [(c["label"], c["color"], c["n"]) for c in layer["classes"]]
