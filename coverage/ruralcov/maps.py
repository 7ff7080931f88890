"""Maps of a :class:`~ruralcov.pipeline.CoverageResult`, written as offline HTML pages.

For now the maps are plain pages with an inline SVG drawing: ``maps/index.html`` (entry page with
a per-county table) and ``maps/province.html`` (every village polygon coloured by its class, with
a tooltip per village). Nothing is loaded from the network — no script, style or tile server —
so the pages open on an office PC without internet access. Interactive maps (pan, zoom, county
pages) will replace the SVG page later with the same file names.

The drawing uses an equirectangular projection scaled by the cosine of the mid latitude: right for
looking at a province, never used for measuring (distances and areas are computed in the metric
CRS by the engine).
"""

from __future__ import annotations

import math
from html import escape as _e
from pathlib import Path

import numpy as np
import pandas as pd
import shapely
from shapely.geometry.base import BaseGeometry

from ruralcov.pipeline import CoverageResult
from ruralcov.report import html_table, page

__all__ = ["MAP_CLASSES", "map_class", "write_maps", "write_skipped_index"]

#: Map class -> (legend label, fill colour). Every village gets exactly one class.
MAP_CLASSES: dict[str, tuple[str, str]] = {
    "fibre_meets": ("fibre, speed meets target", "#1a9850"),
    "fibre_below": ("fibre, speed below target", "#fdae61"),
    "fibre_insufficient": ("fibre, too few speed tests", "#91bfdb"),
    "no_fibre": ("no fibre", "#d73027"),
    "not_counted": ("not an administrative village or community", "#d9d9d9"),
}

_WIDTH = 1000.0  # SVG user units across the drawing


def map_class(villages: pd.DataFrame) -> pd.Series:
    """The map class of each village (a key of :data:`MAP_CLASSES`), aligned to its index.

    Examples
    --------
    >>> v = pd.DataFrame({"kind": ["village", "village", "other"],
    ...                   "fibre": [True, False, True],
    ...                   "speed_class": ["below", "meets", "meets"]})
    >>> map_class(v).tolist()
    ['fibre_below', 'no_fibre', 'not_counted']
    """
    fibre = villages["fibre"].fillna(False).astype(bool).to_numpy()
    speed = villages["speed_class"].astype(object).to_numpy()
    counted = villages["kind"].isin(["village", "community"]).to_numpy()
    cls = np.select(
        [~counted, ~fibre, speed == "meets", speed == "below"],
        ["not_counted", "no_fibre", "fibre_meets", "fibre_below"],
        default="fibre_insufficient",
    )
    return pd.Series(cls, index=villages.index, name="map_class", dtype=object)


def _rings(geom: BaseGeometry) -> list[np.ndarray]:
    polys = getattr(geom, "geoms", [geom])
    rings = []
    for poly in polys:
        if poly.is_empty or poly.geom_type != "Polygon":
            continue
        rings.append(np.asarray(poly.exterior.coords))
        rings.extend(np.asarray(r.coords) for r in poly.interiors)
    return rings


def _svg(result: CoverageResult) -> tuple[str, int]:
    """The province drawing as an SVG element, and the number of villages drawn."""
    v = result.villages
    drawn = v[v.geometry.notna() & ~v.geometry.is_empty]
    if drawn.crs is not None and not drawn.crs.equals("EPSG:4326"):
        drawn = drawn.to_crs("EPSG:4326")
    if drawn.empty:
        return "<p>No village has geometry, so there is nothing to draw.</p>", 0
    minx, miny, maxx, maxy = drawn.total_bounds
    kx = math.cos(math.radians((miny + maxy) / 2))
    span_x = max((maxx - minx) * kx, 1e-9)
    span_y = max(maxy - miny, 1e-9)
    scale = _WIDTH / max(span_x, span_y)
    width, height = span_x * scale, span_y * scale
    # simplify to about half an SVG unit: invisible at this scale, keeps the page small
    geoms = shapely.simplify(drawn.geometry.to_numpy(), 0.5 / scale, preserve_topology=True)
    classes = map_class(drawn)
    paths = []
    for geom, cls, row in zip(geoms, classes, drawn.itertuples(index=False), strict=True):
        d = []
        for ring in _rings(geom):
            xs = (ring[:, 0] - minx) * kx * scale
            ys = (maxy - ring[:, 1]) * scale
            pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
            d.append(f"M{pts}Z")
        if not d:
            continue
        median = getattr(row, "download_median_mbps", None)
        speed = "no tests" if median is None or pd.isna(median) else f"{median:.1f} Mbps"
        tip = (
            f"{row.village_name} ({row.village_code})\n{row.kind}; "
            f"fibre: {'yes' if row.fibre else 'no'} ({row.fibre_basis}); "
            f"speed: {row.speed_class}, median {speed}, {row.tests} tests"
        )
        paths.append(
            f'<path d="{" ".join(d)}" fill="{MAP_CLASSES[cls][1]}" '
            f'data-code="{_e(row.village_code)}"><title>{_e(tip)}</title></path>'
        )
    svg = (
        f'<svg class="map" role="img" '
        f'viewBox="-5 -5 {width + 10:.1f} {height + 10:.1f}" width="100%">\n'
        + "\n".join(paths)
        + "\n</svg>"
    )
    return svg, len(paths)


def _legend(classes: pd.Series) -> str:
    counts = classes.value_counts()
    items = [
        f'<li><span class="swatch" style="background:{colour}"></span>{_e(label)} '
        f"({int(counts.get(key, 0)):,})</li>"
        for key, (label, colour) in MAP_CLASSES.items()
    ]
    return '<ul class="legend">' + "".join(items) + "</ul>"


def _provenance(result: CoverageResult) -> str:
    text = result.config.run.provenance.strip() or "No provenance was given for these inputs."
    return f'<div class="provenance"><strong>Data provenance.</strong> {_e(text)}</div>'


def write_maps(result: CoverageResult, folder: Path | str) -> list[Path]:
    """Write ``index.html`` and ``province.html`` into ``folder``; return the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = result.config.run.name
    svg, n_drawn = _svg(result)
    missing = len(result.villages) - n_drawn
    province = [
        f"<h1>Villages by fibre and speed — {_e(name)}</h1>",
        _provenance(result),
        _legend(map_class(result.villages[result.villages.geometry.notna()])),
        f"<p>{n_drawn:,} villages drawn; {missing:,} register entries without geometry are "
        "not drawn but stay in every count. Hover over a village for its details.</p>",
        svg,
        '<p><a href="index.html">All maps</a> · <a href="../report.html">Report</a></p>',
    ]
    province_path = folder / "province.html"
    province_path.write_text(
        page(f"Province map — {name}", "\n".join(province)), encoding="utf-8", newline="\n"
    )

    index = [
        f"<h1>Maps — {_e(name)}</h1>",
        _provenance(result),
        '<p><a href="province.html">Province map</a>: every village coloured by fibre and '
        "speed class.</p>",
    ]
    if "county" in result.summaries:
        county = (
            result.summaries["county"]
            .sort_values(["fibre_gap_villages", "code"], ascending=[False, True], kind="stable")
            .copy()
        )
        county["map"] = "county map: to come"
        index.append("<h2>Counties, largest fibre gap first</h2>")
        index.append(
            html_table(
                county,
                [
                    "code",
                    "name",
                    "villages",
                    "fibre_villages",
                    "fibre_share",
                    "fibre_gap_villages",
                    "map",
                ],
            )
        )
    index.append('<p><a href="../report.html">Back to the report</a></p>')
    index_path = folder / "index.html"
    index_path.write_text(page(f"Maps — {name}", "\n".join(index)), encoding="utf-8", newline="\n")
    return [index_path, province_path]


def write_skipped_index(folder: Path | str) -> Path:
    """Write the ``index.html`` of a run whose maps were switched off."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "index.html"
    body = (
        "<h1>Maps were skipped</h1>\n<p>This run was made without maps "
        "(<code>[maps] enabled = false</code> or <code>ruralcov run --no-maps</code>). "
        'The numbers are in the <a href="../report.html">report</a>.</p>'
    )
    path.write_text(page("Maps skipped", body), encoding="utf-8", newline="\n")
    return path
