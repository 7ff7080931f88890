"""Helpers for the map tests: a hostile-names variant of the small world, and an independent
reader of the layer data embedded in a map page."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import geopandas as gpd
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


_LAYER = re.compile(r"ruralcov\.layer\((\{.*?\})\);\n", re.S)


def layers(html: str) -> dict[str, dict[str, Any]]:
    """Every ``ruralcov.layer({...})`` payload of a page, by layer id (plain JSON: the page
    escapes ``<``, ``>`` and ``&`` as JSON unicode escapes)."""
    return {d["id"]: d for d in (json.loads(m) for m in _LAYER.findall(html))}


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
