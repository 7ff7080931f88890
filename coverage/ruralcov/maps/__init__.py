"""Maps of a :class:`~ruralcov.pipeline.CoverageResult`: interactive pages and static PNGs.

``write_maps(result, folder)`` writes into ``<out>/maps/``:

- ``province.html``: county and township choropleths of fibre share (diverging at the target)
  and of speed share, the villages by class, search, full screen, scale bar, legend with the
  targets and the data provenance;
- ``county_<code>.html``: one page per county with its villages, fibre access points and
  routes, speed tests as 1 km cells, and a fibre plan when one is given;
- ``tiles/``: only for a large province page (past ``[maps] max_page_mb``, or with
  ``vector_tiles = "always"``): its villages and townships as a PMTiles archive of vector
  tiles, read from ``file://`` through chunk scripts, with per-county evidence and a search
  index (:mod:`~ruralcov.maps.vector`);
- ``index.html``: the entry page, counties sorted by their fibre gap with links;
- ``static/*.png``: matplotlib maps embedded in ``report.html``;
- ``assets/``: Leaflet (from the ``xstatic-leaflet`` package) and ruralcov's own script and
  styles. No page loads anything from the network unless a tile basemap is chosen.

Everything drawn comes from the result: the villages and summaries, the fibre assets the
analysis read (``fibre_points``, ``fibre_routes``) and the speed tests per 1 km cell that it
counted and classed (``cells``). No input file is read here, so the maps of a copied run
folder (:func:`ruralcov.runfolder.read_run`) are the run's own.

Parts: :mod:`~ruralcov.maps.data` (classes and the compact layer encoding, pure functions),
:mod:`~ruralcov.maps.pages` (folium pages), :mod:`~ruralcov.maps.vector` and
:mod:`~ruralcov.maps.tiles` (the vector tiles), :mod:`~ruralcov.maps.static` (PNGs),
:mod:`~ruralcov.maps.assets` (offline files). The index page is made with the report's page
helpers (:mod:`ruralcov.report.html`). The drawing parts (folium, matplotlib) are imported by
the functions that draw: results.gpkg takes its classes and colours from
:mod:`~ruralcov.maps.data`, and a run without maps loads no drawing library.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from ruralcov.areas import level_unions
from ruralcov.cells import CELL_M
from ruralcov.errors import ConfigError
from ruralcov.maps.data import (
    FIVE_WAY_MAP_CLASSES,
    MAP_CLASSES,
    encoded_floor,
    map_class,
    simplify_polygons,
    village_classes,
)
from ruralcov.pipeline import CoverageResult
from ruralcov.report.html import county_file, page

__all__ = [
    "FIVE_WAY_MAP_CLASSES",
    "MAP_CLASSES",
    "PLAN_COLUMNS",
    "PROVINCE_TOLERANCE_M",
    "cell_polygons",
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
#: The columns of a fibre plan (``plan.parquet``, :mod:`ruralcov.plan`) the county maps draw.
PLAN_COLUMNS = ("area_code", "order", "village_code", "connects_to", "link_km")
#: Margin around a county's villages, in degrees, within which its assets are drawn.
_PAD = 0.01


def _drawn(villages: gpd.GeoDataFrame) -> np.ndarray:
    g = villages.geometry.values
    return ~(shapely.is_missing(g) | shapely.is_empty(g))


def cell_polygons(cells: pd.DataFrame, metric_crs: str) -> np.ndarray:
    """The square of each speed-test cell in EPSG:4326.

    Parameters
    ----------
    cells
        ``CoverageResult.cells``: the cell ``[ix·CELL_M, (ix+1)·CELL_M) × [iy·CELL_M,
        (iy+1)·CELL_M)`` of each row, in metres of ``metric_crs``
        (:data:`ruralcov.cells.CELL_M`).
    metric_crs
        The run's metric CRS (``CoverageResult.metric_crs``).

    Returns
    -------
    numpy.ndarray
        One shapely polygon per row (its corners transformed, the sides straight).

    Examples
    --------
    >>> cell = cell_polygons(pd.DataFrame({"ix": [500], "iy": [0]}), "EPSG:32631")[0]
    >>> [round(v, 4) for v in cell.bounds]
    [3.0, 0.0, 3.009, 0.009]
    """
    if not len(cells):
        return np.empty(0, dtype=object)
    back = pyproj.Transformer.from_crs(metric_crs, "EPSG:4326", always_xy=True)
    x0 = cells["ix"].to_numpy(dtype=float) * CELL_M
    y0 = cells["iy"].to_numpy(dtype=float) * CELL_M
    xs = np.stack([x0, x0 + CELL_M, x0 + CELL_M, x0], axis=1)
    ys = np.stack([y0, y0, y0 + CELL_M, y0 + CELL_M], axis=1)
    lon, lat = back.transform(xs, ys)
    return shapely.polygons(np.stack([lon, lat], axis=2))


def _speed_cells(result: CoverageResult) -> tuple[pd.DataFrame | None, str | None]:
    """The run's speed-test cells with their squares, or None and why they are not drawn."""
    cells = result.cells
    if cells is None:
        if result.config.speed is None:
            return None, None
        note = ("Speed tests not drawn: the run holds no 1 km cells of them (cells.parquet; "
                "a run computes them when its maps are enabled).")
        log.warning("speed tests not drawn on the county maps: the run holds no 1 km cells")
        return None, note
    return cells.assign(geometry=cell_polygons(cells, result.metric_crs)), None


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


@dataclass(frozen=True)
class _Scene:
    """What every page of one ``write_maps`` call draws from."""

    #: All villages in EPSG:4326, and those with a polygon.
    villages: gpd.GeoDataFrame
    drawn: gpd.GeoDataFrame
    #: The drawn polygons simplified for the province page.
    simple: np.ndarray
    #: level -> simplified area polygons by code (county, township).
    areas: dict[str, pd.Series]
    #: (code, name, file) of each county page.
    counties: list[tuple[str, str, str]]


def _scene(result: CoverageResult) -> _Scene:
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
    levels = [level for level in ("county", "township")
              if level in result.summaries and f"{level}_code" in drawn.columns]
    dissolved = level_unions(result.area_unions, {
        level: (drawn.geometry.to_numpy(), drawn[f"{level}_code"]) for level in levels})
    areas = {}
    for level, merged in dissolved.items():
        areas[level] = pd.Series(
            simplify_polygons(
                merged.to_numpy(),
                metric_crs=result.metric_crs,
                tolerance_m=PROVINCE_TOLERANCE_M,
            ),
            index=merged.index,
            dtype=object,
        )
    counties: list[tuple[str, str, str]] = []
    if "county" in areas:
        summary = result.summaries["county"]
        names = dict(zip(summary["code"], summary["name"], strict=True))
        counties = [(code, str(names.get(code) or code), county_file(code))
                    for code in areas["county"].index]
    return _Scene(villages, drawn, simple, areas, counties)


def write_maps(
    result: CoverageResult,
    folder: Path | str,
    *,
    plan: pd.DataFrame | None = None,
    basemap: str | None = None,
) -> list[Path]:
    """Write the map pages, assets and static PNGs into ``folder``.

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

    Returns
    -------
    list of pathlib.Path
        The files written: the pages, the static PNGs and ``index.html``.

    Examples
    --------
    >>> write_maps(result, "out/run/maps")  # doctest: +SKIP
    [PosixPath('out/run/maps/province.html'), ...]
    """
    from ruralcov.maps.assets import copy_assets
    from ruralcov.maps.pages import BASEMAPS
    from ruralcov.maps.static import write_static_maps

    folder = Path(folder)
    basemap = basemap or getattr(result.config.maps, "basemap", "none")
    if basemap != "none" and basemap not in BASEMAPS:
        raise ConfigError(f"basemap {basemap!r} is not known; use one of {['none', *BASEMAPS]}")
    folder.mkdir(parents=True, exist_ok=True)
    copy_assets(folder)
    scene = _scene(result)
    path = folder / "province.html"
    path.write_bytes(_province_page(result, scene, folder, basemap=basemap))
    written = [path, *_county_pages(result, scene, folder, plan=plan, basemap=basemap)]
    simple_frame = gpd.GeoDataFrame(
        scene.drawn.drop(columns="geometry"), geometry=list(scene.simple), crs="EPSG:4326"
    )
    figures = write_static_maps(result, simple_frame, scene.areas.get("county"),
                                folder / "static")
    written.extend(p for p, _ in figures)
    index = folder / "index.html"
    index.write_text(
        _index_html(result, scene.counties, figures, plan is not None),
        encoding="utf-8",
        newline="\n",
    )
    written.append(index)
    return written


def _province_page(result: CoverageResult, scene: _Scene, folder: Path, *,
                   basemap: str) -> bytes:
    """The province page: its layers embedded, or, past ``[maps] max_page_mb`` (or with
    ``vector_tiles = "always"``), its villages and townships drawn from vector tiles written
    into ``folder/tiles`` (:mod:`ruralcov.maps.vector`)."""
    from ruralcov.maps.assets import copy_tile_assets
    from ruralcov.maps.pages import province_layers, province_map, shift_for
    from ruralcov.maps.vector import ZOOMS, tiled_layers

    hrefs = {code: file for code, _, file in scene.counties}
    layers = province_layers(result, scene.drawn, scene.simple, scene.areas, basemap=basemap,
                             county_hrefs=hrefs)
    mode = getattr(result.config.maps, "vector_tiles", "auto")
    limit = getattr(result.config.maps, "max_page_mb", 10.0) * 1e6
    size = 0
    # a page whose village coordinates alone pass the limit is not built to be measured:
    # nationally that page would take minutes and gigabytes
    floor = encoded_floor(scene.simple) if mode == "auto" else 0
    if mode == "never" or (mode == "auto" and floor <= limit):
        m = province_map(result, layers, scene.simple, basemap=basemap)
        html = m.get_root().render().encode("utf8")
        if mode == "never" or len(html) <= limit:
            return html
        size = len(html)
    log.info("province page of %s MB: villages and townships drawn from vector tiles",
             f"{size / 1e6:.1f}" if size else f"at least {floor / 1e6:.1f}")
    copy_tile_assets(folder)
    tiled = tiled_layers(layers, scene.drawn, scene.areas.get("township"), folder,
                         shift=shift_for(basemap))
    note = (f"Villages are drawn from zoom {ZOOMS['villages'][0] + 1}, townships from zoom "
            f"{ZOOMS['townships'][0] + 1}: zoom in to see them.")
    m = province_map(result, tiled, scene.simple, basemap=basemap, notes=[note])
    return m.get_root().render().encode("utf8")


def _county_pages(result: CoverageResult, scene: _Scene, folder: Path, *,
                  plan: pd.DataFrame | None, basemap: str) -> list[Path]:
    """One page per county: its villages, the assets around them, its speed-test cells and
    its part of the plan."""
    from ruralcov.maps.pages import county_map

    cells, cell_note = _speed_cells(result) if scene.counties else (None, None)
    plan_lines, plan_labels = _plan_parts(plan, scene.villages)
    points, routes = result.fibre_points, result.fibre_routes
    written = []
    for code, name, file in scene.counties:
        mine = scene.drawn[(scene.drawn["county_code"] == code).to_numpy()]
        minx, miny, maxx, maxy = shapely.total_bounds(mine.geometry.values)
        window = (slice(minx - _PAD, maxx + _PAD), slice(miny - _PAD, maxy + _PAD))
        my_cells = None
        if cells is not None:
            my_cells = cells[(cells["county_code"] == code).to_numpy()].reset_index(drop=True)
        my_plan = my_labels = None
        if plan_lines is not None:
            my_plan = plan_lines[(plan_lines["county"] == code).to_numpy()]
            my_labels = plan_labels[
                plan_labels["village_code"].isin(set(my_plan["village_code"])).to_numpy()
            ]
        notes = [
            f"{len(mine):,} villages drawn. Speed tests: cells of {CELL_M / 1000:g} km, "
            "coloured by the median download against the village target; grey where a cell "
            "has too few tests or devices to say.",
            *([cell_note] if cell_note else []),
        ]
        page_map = county_map(
            result,
            code,
            name,
            mine,
            mine.geometry.to_numpy(),
            outline=scene.areas["county"].get(code),
            points=points.cx[window] if len(points) else None,
            routes=routes.cx[window] if len(routes) else None,
            cells=my_cells,
            cell_geoms=None if my_cells is None else my_cells["geometry"].to_numpy(),
            plan=my_plan,
            plan_labels=my_labels,
            basemap=basemap,
            notes=notes,
        )
        path = folder / file
        page_map.save(str(path))
        written.append(path)
    return written


def report_figures(folder: Path | str) -> list[tuple[str, str]]:
    """The static maps found in a maps folder, for the report.

    Parameters
    ----------
    folder
        ``<out>/maps``.

    Returns
    -------
    list of (str, str)
        ``(path relative to the run folder, caption)`` in report order; empty when the maps
        were skipped.
    """
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
