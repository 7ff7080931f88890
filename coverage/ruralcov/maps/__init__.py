"""Maps of a :class:`~ruralcov.pipeline.CoverageResult`: interactive pages and static PNGs.

``write_maps(result, folder)`` writes into ``<out>/maps/``:

- ``province.html``: county and township choropleths of fibre share (diverging at the target)
  and of speed share, the villages by class, search, full screen, scale bar, legend with the
  targets and the data provenance;
- ``county_<code>.html``: one page per county with its villages, fibre access points and
  routes, speed tests as 1 km cells, and a fibre plan when one is given;
- ``index.html``: the entry page, counties sorted by their fibre gap with links;
- ``static/*.png``: matplotlib maps embedded in ``report.html``;
- ``assets/``: Leaflet (from the ``xstatic-leaflet`` package) and ruralcov's own script and
  styles. No page loads anything from the network unless a tile basemap is chosen.

Parts: :mod:`~ruralcov.maps.data` (classes and the compact layer encoding, pure functions),
:mod:`~ruralcov.maps.pages` (folium pages), :mod:`~ruralcov.maps.static` (PNGs),
:mod:`~ruralcov.maps.assets` (offline files).
"""

from __future__ import annotations

import logging
import re
from html import escape
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from ruralcov.errors import ConfigError, RuralcovError
from ruralcov.maps.assets import copy_assets
from ruralcov.maps.data import (
    FIVE_WAY_MAP_CLASSES,
    MAP_CLASSES,
    dissolve,
    map_class,
    simplify_polygons,
    speed_cells,
    village_classes,
)
from ruralcov.maps.pages import BASEMAPS, county_map, province_map
from ruralcov.maps.static import write_static_maps
from ruralcov.pipeline import CoverageResult

__all__ = [
    "FIVE_WAY_MAP_CLASSES",
    "MAP_CLASSES",
    "PROVINCE_TOLERANCE_M",
    "county_file",
    "map_class",
    "report_figures",
    "village_classes",
    "write_maps",
]

log = logging.getLogger(__name__)

#: Simplification tolerance of the province page in metres: below a pixel at the zoom that
#: shows a whole province, and the county pages keep full detail.
PROVINCE_TOLERANCE_M = 20.0
#: Side of the speed-test cells on the county pages, in metres.
CELL_M = 1000.0
#: Plan columns written by the planner (issue 7).
PLAN_COLUMNS = ("area_code", "order", "village_code", "connects_to", "link_km")


def county_file(code: str) -> str:
    """File name of a county's page: the code with anything but letters, digits, ``-`` and
    ``_`` replaced, so that a code can never make a path or a URL of its own.

    Examples
    --------
    >>> county_file("140105")
    'county_140105.html'
    >>> county_file("../x y")
    'county____x_y.html'
    """
    return "county_" + re.sub(r"[^0-9A-Za-z_-]", "_", str(code)) + ".html"


def _drawn(villages: gpd.GeoDataFrame) -> np.ndarray:
    g = villages.geometry.values
    return ~(shapely.is_missing(g) | shapely.is_empty(g))


def _speed_tests(result: CoverageResult, villages: gpd.GeoDataFrame) -> tuple[Any, str | None]:
    """The speed tests per 1 km cell and county, or None and the reason they are not drawn."""
    speed = result.config.speed
    if speed is None or "county_code" not in villages.columns:
        return None, None
    try:
        lon, lat, download, where = _read_tests(speed, villages)
    except (RuralcovError, OSError) as exc:
        log.warning("speed tests not drawn on the county maps: %s", exc)
        return None, f"Speed tests not drawn: {exc}"
    inside = where >= 0
    county = villages["county_code"].to_numpy(dtype=object)[where[inside]]
    to_m = pyproj.Transformer.from_crs("EPSG:4326", result.metric_crs, always_xy=True)
    x, y = to_m.transform(lon[inside], lat[inside])
    cells = speed_cells(x, y, download[inside], county, cell_m=CELL_M)
    back = pyproj.Transformer.from_crs(result.metric_crs, "EPSG:4326", always_xy=True)
    x0, y0 = cells["ix"].to_numpy() * CELL_M, cells["iy"].to_numpy() * CELL_M
    xs = np.stack([x0, x0 + CELL_M, x0 + CELL_M, x0], axis=1)
    ys = np.stack([y0, y0, y0 + CELL_M, y0 + CELL_M], axis=1)
    lon, lat = back.transform(xs, ys)
    rings = np.stack([lon, lat], axis=2)
    cells["geometry"] = list(shapely.polygons(rings)) if len(cells) else []
    return cells, None


def _read_tests(speed: Any, villages: gpd.GeoDataFrame) -> tuple[Any, Any, Any, Any]:
    """Longitude, latitude, download and village position (-1: outside) of every usable
    speed test, by the same reader, checks and boundary rule as the analysis."""
    from ruralcov import checks, io, join

    rank = villages["village_code"].rank(method="dense").to_numpy()
    try:
        from ruralcov import stream
    except ImportError:  # pragma: no cover - the streaming reader is optional here
        stream = None
    if stream is not None and stream.supports(speed):
        plan = stream.speed_plan(speed)
        checker = stream.Checker(plan, speed)
        index = join.PolygonIndex(villages.geometry.values, priority=rank)
        xs, ys, ds, ws = [], [], [], []
        row0 = 1
        for table in io.iter_batches(plan, checker.read_columns):
            prep = checker.check(table, row0)
            row0 += table.num_rows
            ok = prep.status == checks.OK
            if prep.other_geoms is not None:
                ok &= np.equal(prep.other_geoms, None)
            x, y = prep.x[ok], prep.y[ok]
            xs.append(x)
            ys.append(y)
            ds.append(prep.download[ok])
            ws.append(index.assign_xy(x, y))
        if xs:
            return (np.concatenate(xs), np.concatenate(ys), np.concatenate(ds), np.concatenate(ws))
        empty = np.empty(0)
        return empty, empty, empty, np.empty(0, dtype=np.intp)
    from ruralcov.loaders import load_speed_tests

    tests = load_speed_tests(speed).frame
    where = join.assign_points(tests.geometry.values, villages.geometry.values, priority=rank)
    pts = tests.geometry.values
    return shapely.get_x(pts), shapely.get_y(pts), tests["download_mbps"].to_numpy(), where


def _plan_parts(plan: pd.DataFrame | None, villages: gpd.GeoDataFrame) -> tuple[Any, Any]:
    """Plan links with the county of their village, and one numbered point per village."""
    if plan is None or len(plan) == 0:
        return None, None
    missing = [c for c in PLAN_COLUMNS if c not in plan.columns]
    if missing:
        raise ConfigError(f"the fibre plan lacks the column(s) {missing}; expected {PLAN_COLUMNS}")
    plan = gpd.GeoDataFrame(plan).to_crs("EPSG:4326") if plan.crs else gpd.GeoDataFrame(plan)
    lookup = villages.drop_duplicates("village_code").set_index("village_code")
    codes = plan["village_code"].astype(str)
    plan = plan.assign(
        village_code=codes,
        order=plan["order"].astype("Int64").astype(str),
        village_name=codes.map(lookup["village_name"]).to_numpy(),
        county=codes.map(lookup["county_code"]).fillna(plan["area_code"].astype(str)).to_numpy(),
    )
    first = plan.sort_values("order", key=lambda s: pd.to_numeric(s), kind="stable")
    first = first.drop_duplicates("village_code")
    geoms = lookup.geometry.reindex(first["village_code"]).to_numpy()
    ok = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    labels = gpd.GeoDataFrame(
        first.drop(columns="geometry")[ok],
        geometry=shapely.point_on_surface(geoms[ok]),
        crs="EPSG:4326",
    )
    return plan, labels


def write_maps(
    result: CoverageResult,
    folder: Path | str,
    *,
    plan: pd.DataFrame | None = None,
    basemap: str | None = None,
) -> list[Path]:
    """Write the map pages, assets and static PNGs into ``folder``; return the paths written.

    Parameters
    ----------
    result
        A result from :func:`ruralcov.analyse` or :func:`ruralcov.runfolder.read_run`.
    folder
        Usually ``<out>/maps``.
    plan
        Proposed fibre links (GeoDataFrame of LineStrings with ``area_code, order,
        village_code, connects_to, link_km``): drawn on the county maps with each planned
        village numbered by its ``order``.
    basemap
        ``none`` (offline), ``osm`` or ``amap``; default ``result.config.maps.basemap``.

    Examples
    --------
    >>> write_maps(result, "out/run/maps")  # doctest: +SKIP
    [PosixPath('out/run/maps/province.html'), ...]
    """
    folder = Path(folder)
    basemap = basemap or getattr(result.config.maps, "basemap", "none")
    if basemap != "none" and basemap not in BASEMAPS:
        raise ConfigError(f"basemap {basemap!r} is not known; use one of {['none', *BASEMAPS]}")
    folder.mkdir(parents=True, exist_ok=True)
    copy_assets(folder)
    villages = result.villages
    if villages.crs is not None and not villages.crs.equals("EPSG:4326"):
        villages = villages.to_crs("EPSG:4326")
    villages = villages.reset_index(drop=True)
    drawn = villages[_drawn(villages)].reset_index(drop=True)
    simple = simplify_polygons(
        drawn.geometry.to_numpy(), metric_crs=result.metric_crs, tolerance_m=PROVINCE_TOLERANCE_M
    )
    # areas are dissolved from the full geometry and simplified afterwards: the union of
    # separately simplified villages would show hairline gaps wherever neighbours differ
    areas = {}
    for level in ("county", "township"):
        if level in result.summaries and f"{level}_code" in drawn.columns:
            merged = dissolve(drawn.geometry.to_numpy(), drawn[f"{level}_code"])
            areas[level] = pd.Series(
                simplify_polygons(
                    merged.to_numpy(),
                    metric_crs=result.metric_crs,
                    tolerance_m=PROVINCE_TOLERANCE_M,
                ),
                index=merged.index,
                dtype=object,
            )
    written: list[Path] = []

    counties: list[tuple[str, str, str]] = []  # code, name, file
    if "county" in areas:
        summary = result.summaries["county"]
        names = dict(zip(summary["code"], summary["name"], strict=True))
        for code in areas["county"].index:
            counties.append((code, str(names.get(code) or code), county_file(code)))
    hrefs = {code: file for code, _, file in counties}

    m = province_map(result, drawn, simple, areas, basemap=basemap, county_hrefs=hrefs)
    path = folder / "province.html"
    m.save(str(path))
    written.append(path)

    cells, cell_note = _speed_tests(result, drawn) if counties else (None, None)
    plan_lines, plan_labels = _plan_parts(plan, villages)
    points, routes = result.fibre_points, result.fibre_routes
    notes_all = [cell_note] if cell_note else []
    for code, name, file in counties:
        mine = drawn[(drawn["county_code"] == code).to_numpy()]
        minx, miny, maxx, maxy = shapely.total_bounds(mine.geometry.values)
        pad = 0.01
        window = (slice(minx - pad, maxx + pad), slice(miny - pad, maxy + pad))
        my_points = points.cx[window] if len(points) else None
        my_routes = routes.cx[window] if len(routes) else None
        my_cells = my_cell_geoms = None
        if cells is not None:
            sel = (cells["group"] == code).to_numpy()
            my_cells = cells[sel].reset_index(drop=True)
            my_cell_geoms = my_cells["geometry"].to_numpy()
        my_plan = my_labels = None
        if plan_lines is not None:
            my_plan = plan_lines[(plan_lines["county"] == code).to_numpy()]
            my_labels = plan_labels[
                plan_labels["village_code"].isin(set(my_plan["village_code"])).to_numpy()
            ]
        notes = [
            f"{len(mine):,} villages drawn. Speed tests: cells of {CELL_M / 1000:g} km, "
            "coloured by the median download against the village target.",
            *notes_all,
        ]
        page = county_map(
            result,
            code,
            name,
            mine,
            mine.geometry.to_numpy(),
            outline=areas["county"].get(code),
            points=my_points,
            routes=my_routes,
            cells=my_cells,
            cell_geoms=my_cell_geoms,
            plan=my_plan,
            plan_labels=my_labels,
            basemap=basemap,
            notes=notes,
        )
        path = folder / file
        page.save(str(path))
        written.append(path)

    simple_frame = gpd.GeoDataFrame(
        drawn.drop(columns="geometry"), geometry=list(simple), crs="EPSG:4326"
    )
    figures = write_static_maps(result, simple_frame, areas.get("county"), folder / "static")
    written.extend(p for p, _ in figures)
    index = folder / "index.html"
    index.write_text(
        _index_html(result, counties, figures, plan is not None), encoding="utf-8", newline="\n"
    )
    written.append(index)
    return written


def report_figures(folder: Path | str) -> list[tuple[str, str]]:
    """``(path relative to the run folder, caption)`` of the static maps found in ``folder``
    (``<out>/maps``), in report order; empty when the maps were skipped."""
    from ruralcov.maps.static import FIGURES

    folder = Path(folder)
    return [
        (f"{folder.name}/static/{name}", caption)
        for name, caption in FIGURES.items()
        if (folder / "static" / name).is_file()
    ]


def _index_html(
    result: CoverageResult,
    counties: list[tuple[str, str, str]],
    figures: list[tuple[Path, str]],
    has_plan: bool,
) -> str:
    from ruralcov.report import page

    name = result.config.run.name
    provenance = result.config.run.provenance.strip() or "No provenance was given for these inputs."
    parts = [
        f"<h1>Maps — {escape(name)}</h1>",
        f'<div class="provenance"><strong>Data provenance.</strong> {escape(provenance)}</div>',
        '<p><a href="province.html"><strong>Province map</strong></a>: counties and townships '
        "by fibre share and speed share, every village by class, search by name or code.</p>",
    ]
    if has_plan:
        parts.append("<p>The county maps show the proposed fibre links of the plan.</p>")
    if counties and "county" in result.summaries:
        s = result.summaries["county"].set_index("code")
        rows = []
        order = sorted(
            counties,
            key=lambda c: (-int(s.at[c[0], "fibre_gap_villages"] or 0), str(c[0])),
        )
        for code, cname, file in order:
            r = s.loc[code]
            share = r["fibre_share"]
            share_text = "–" if pd.isna(share) else f"{100 * float(share):.1f} %"
            rows.append(
                f'<tr><td>{escape(str(code))}</td><td><a href="{escape(file)}">'
                f"{escape(cname)}</a></td>"
                f'<td class="num">{int(r["villages"]):,}</td>'
                f'<td class="num">{int(r["fibre_villages"]):,}</td>'
                f'<td class="num">{share_text}</td>'
                f'<td class="num">{int(r["fibre_gap_villages"]):,}</td></tr>'
            )
        parts.append("<h2>County maps, largest fibre gap first</h2>")
        parts.append(
            "<table>\n<thead><tr><th>code</th><th>county map</th><th>villages</th>"
            "<th>fibre villages</th><th>fibre share</th><th>gap (villages)</th></tr></thead>\n"
            "<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>"
        )
    for path, caption in figures:
        parts.append(
            f'<figure><img src="static/{escape(path.name)}" alt="{escape(caption)}" '
            f'style="max-width:100%"><figcaption>{escape(caption)}</figcaption></figure>'
        )
    parts.append('<p><a href="../report.html">Back to the report</a></p>')
    return page(f"Maps — {name}", "\n".join(parts))
