"""The interactive map pages, built with folium: the province map and one map per county.

Folium provides the page, the map, the scale bar, optional tile layers and the layer control;
the data layers are ``DataLayer`` elements whose compact data (:mod:`ruralcov.maps.data`) the
page script ``ruralcov_map.js`` turns into Leaflet layers drawn on a canvas. That script also
provides the legend, the village search and the full-screen button (no plugin is loaded).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape
from typing import Any

import folium
import numpy as np
import pandas as pd
from folium.elements import Element, MacroElement
from folium.template import Template

from ruralcov.cells import CELL_M
from ruralcov.maps.assets import offline
from ruralcov.maps.data import (
    ASSET_CLASSES,
    area_classes,
    columns,
    encode_geometry,
    fibre_met,
    script_json,
    village_class_index,
)
from ruralcov.schema import SPEED_CLASSES

__all__ = [
    "BASEMAPS",
    "DataLayer",
    "TiledLayer",
    "cell_legend",
    "county_map",
    "province_layers",
    "province_map",
]

#: Opt-in tile backgrounds: name -> (URL template, attribution, subdomains, GCJ-02 tiles).
BASEMAPS: dict[str, tuple[str, str, str, bool]] = {
    "osm": (
        "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
        "© OpenStreetMap contributors",
        "abc",
        False,
    ),
    "amap": (
        "https://webrd0{s}.is.autonavi.com/appmaptile?lang=zh_cn&size=1&scale=1&style=8"
        "&x={x}&y={y}&z={z}",
        "© AMap (高德地图); geometry shifted to GCJ-02 to match",
        "1234",
        True,
    ),
}

#: Evidence shown for a village: (column, label, number format).
VILLAGE_FIELDS: tuple[tuple[str, str, str | None], ...] = (
    ("village_name", "name", None),
    ("village_code", "code", None),
    ("kind", "kind", None),
    ("township_name", "township", None),
    ("county_name", "county", None),
    ("fibre", "fibre", None),
    ("fibre_basis", "fibre basis", None),
    ("fibre_asset_id", "fibre access point", None),
    ("fibre_distance_m", "distance to it (m)", ",.0f"),
    ("fibre_nearby", "fibre route nearby", None),
    ("fibre_route_id", "nearby route", None),
    ("nearest_asset_id", "nearest access point", None),
    ("nearest_asset_m", "distance to nearest (m)", ",.0f"),
    ("tests", "speed tests", ",d"),
    ("devices", "devices", ",d"),
    ("download_median_mbps", "median download (Mbps)", ".1f"),
    ("download_interval", "95 % interval (Mbps)", None),
    ("upload_median_mbps", "median upload (Mbps)", ".1f"),
    ("latency_median_ms", "median latency (ms)", ".0f"),
    ("share_tests_at_target", "tests at target", ".0%"),
    ("download_target_mbps", "target (Mbps)", "g"),
    ("speed_class", "speed class", None),
    ("speed_trend", "speed class by period", None),  # runs with periods (ruralcov.trends)
)

AREA_FIELDS: tuple[tuple[str, str, str | None], ...] = (
    ("name", "name", None),
    ("code", "code", None),
    ("villages", "administrative villages", ",d"),
    ("fibre_villages", "with fibre", ",d"),
    ("fibre_share", "fibre share", ".1%"),
    ("fibre_target", "target", ".0%"),
    ("fibre_gap_villages", "gap (villages)", ",d"),
    ("speed_meets", "meeting the speed target", ",d"),
    ("speed_share", "speed share", ".1%"),
    ("speed_share_trend", "speed share by period", None),
    ("villages_with_geometry", "villages with geometry", ",d"),
    ("href", "county map", None),
)

Shift = Callable[[Any, Any], Any] | None


class DataLayer(folium.map.Layer):
    """A map layer drawn by ``ruralcov.layer(data)`` in the page script.

    ``overlay=False`` makes it one of the radio-button themes of the layer control.
    """

    _template = Template(
        "{% macro script(this, kwargs) %}\n"
        "var {{ this.get_name() }} = ruralcov.layer({{ this.payload }});\n"
        "{% endmacro %}"
    )

    def __init__(self, data: dict[str, Any], *, overlay: bool = True, show: bool = True):
        super().__init__(name=data["name"], overlay=overlay, control=True, show=show)
        self._name = "RuralcovLayer"
        data = {**data, "base": not overlay}
        self.payload = script_json(data)


class TiledLayer(DataLayer):
    """A theme drawn from vector tiles by ``ruralcov.tiled(data)`` (``ruralcov_tiles.js``).

    The page holds the theme's legend and names; the features and their evidence are in the
    files ``data["tiles"]`` names (:mod:`ruralcov.maps.vector`).
    """

    _template = Template(
        "{% macro script(this, kwargs) %}\n"
        "var {{ this.get_name() }} = ruralcov.tiled({{ this.payload }});\n"
        "{% endmacro %}"
    )

    def __init__(self, data: dict[str, Any], *, overlay: bool = False, show: bool = True):
        kept = {k: v for k, v in data.items() if k not in ("geom", "cols", "cls")}
        super().__init__(kept, overlay=overlay, show=show)
        self._name = "RuralcovTiledLayer"


class _View(MacroElement):
    """The map's view set before any layer is added (pages drawn from tiles): the layers
    are then projected once, at the zoom shown, not first at folium's opening zoom and again
    when the controls fit the bounds (the national page opened 0.6-1.2 s sooner)."""

    _template = Template(
        "{% macro script(this, kwargs) %}\n"
        "{{ this._parent.get_name() }}.fitBounds({{ this.bounds }}, {animate: false});\n"
        "{% endmacro %}"
    )

    def __init__(self, bounds: Sequence[float]) -> None:
        super().__init__()
        self._name = "RuralcovView"
        self.bounds = script_json([[bounds[1], bounds[0]], [bounds[3], bounds[2]]])


class _Controls(MacroElement):
    """Legend, search and full-screen button; added after every layer."""

    _template = Template(
        "{% macro script(this, kwargs) %}\n"
        "{{ this._parent.get_name() }}.fitBounds({{ this.bounds }}, {animate: false});\n"
        "ruralcov.fullscreen({{ this._parent.get_name() }});\n"
        "{% if this.search %}ruralcov.search({{ this._parent.get_name() }}, "
        "{{ this.search }});{% endif %}\n"
        "ruralcov.legend({{ this._parent.get_name() }}, {{ this.info }});\n"
        "{% endmacro %}"
    )

    def __init__(
        self, info: dict[str, Any], search: Sequence[str], bounds: Sequence[float]
    ) -> None:
        super().__init__()
        self._name = "RuralcovControls"
        self.bounds = script_json([[bounds[1], bounds[0]], [bounds[3], bounds[2]]])
        self.info = script_json(info)
        self.search = script_json(list(search)) if search else ""


def _base_map(bounds: Sequence[float], basemap: str, *, tiles: bool = False) -> folium.Map:
    m = folium.Map(
        location=[(bounds[1] + bounds[3]) / 2, (bounds[0] + bounds[2]) / 2],
        tiles=None,
        prefer_canvas=True,
        control_scale=True,
        zoom_snap=0.25,
    )
    offline(m, tiles=tiles)
    if basemap != "none":
        url, attr, subdomains, _ = BASEMAPS[basemap]
        folium.TileLayer(
            tiles=url,
            attr=attr,
            name=f"background: {basemap}",
            overlay=True,
            control=True,
            subdomains=subdomains,
        ).add_to(m)
    return m


def stable_ids(m: folium.Map) -> folium.Map:
    """Number the page's elements in order instead of folium's random ids.

    The same result then always writes the same bytes, and the manifest's hashes mean
    something.

    Parameters
    ----------
    m
        A finished map: every layer and control added.

    Returns
    -------
    folium.Map
        ``m``, changed in place.
    """
    seen: set[int] = set()

    def walk(element: Any) -> None:
        if id(element) in seen:
            return
        seen.add(id(element))
        element._id = f"{len(seen):06x}"
        for child in list(getattr(element, "_children", {}).values()):
            walk(child)

    walk(m.get_root())
    return m


def shift_for(basemap: str) -> Shift:
    """The coordinate shift that makes geometry line up with a basemap's tiles.

    Parameters
    ----------
    basemap
        ``none`` or a key of :data:`BASEMAPS`.

    Returns
    -------
    callable or None
        WGS 84 to GCJ-02 for tiles drawn in GCJ-02 (AMap), else None.
    """
    if basemap != "none" and BASEMAPS[basemap][3]:
        from ruralcov.crs import wgs84_to_gcj02

        return wgs84_to_gcj02
    return None


def _title(m: folium.Map, text: str, links: Sequence[tuple[str, str]]) -> None:
    anchors = "".join(f'<a href="{escape(h)}">{escape(t)}</a>' for h, t in links)
    m.get_root().html.add_child(
        Element(f'<div class="rc-title">{escape(text)}{anchors}</div>'), name="rc_title"
    )


def _classes(
    keys: Sequence[tuple[str, str]], counts: np.ndarray, **style: Any
) -> list[dict[str, Any]]:
    return [
        {"label": label, "color": colour, "n": int(n), **style}
        for (label, colour), n in zip(keys, counts, strict=True)
    ]


def _layer(
    layer_id: str,
    name: str,
    kind: str,
    geoms: Any,
    *,
    q: float,
    shift: Shift,
    cols: list[dict[str, Any]],
    cls: Sequence[int],
    classes: list[dict[str, Any]],
    title: Sequence[int] = (0,),
    **extra: Any,
) -> dict[str, Any]:
    """The data of a layer with a legend, as ``ruralcov.layer`` reads it: the keys every such
    layer has, in one order (so the page's bytes stay the same), ``extra`` (``tip``, ``label``)
    before the classes."""
    return {
        "id": layer_id,
        "name": name,
        "kind": kind,
        "q": q,
        "geom": encode_geometry(geoms, q=q, shift=shift),
        "cols": cols,
        "title": list(title),
        **extra,
        "cls": list(cls),
        "classes": classes,
        "legend": True,
    }


def village_evidence(villages: pd.DataFrame) -> pd.DataFrame:
    """The village table as its popups show it.

    Parameters
    ----------
    villages
        A village table with ``download_ci_low_mbps`` and ``download_ci_high_mbps``.

    Returns
    -------
    pandas.DataFrame
        A copy with the text column ``download_interval`` (the 95 % interval of the median).
    """
    v = villages.copy()
    lo, hi = v["download_ci_low_mbps"], v["download_ci_high_mbps"]
    v["download_interval"] = [
        None if pd.isna(a) or pd.isna(b) else f"{a:.1f} – {b:.1f}"
        for a, b in zip(lo.tolist(), hi.tolist(), strict=True)
    ]
    return v


def village_layer(
    villages: pd.DataFrame,
    geoms: Any,
    *,
    q: float,
    shift: Shift,
    layer_id: str = "villages",
    name: str = "Villages: fibre and speed class",
) -> dict[str, Any]:
    """The villages as a layer of polygons coloured by their map class.

    Parameters
    ----------
    villages
        The villages drawn.
    geoms
        Their polygons (EPSG:4326), perhaps simplified.
    q, shift
        As :func:`~ruralcov.maps.data.encode_geometry` takes them.
    layer_id, name
        The layer's id and its name in the layer control.

    Returns
    -------
    dict
        Layer data for ``ruralcov.layer``: classes of
        :func:`~ruralcov.maps.data.map_class`, with every class of
        :func:`~ruralcov.maps.data.village_classes` and its count in the legend.
    """
    v = village_evidence(villages)
    cls, scheme = village_class_index(v)
    counts = np.bincount(cls, minlength=len(scheme))
    classes = [
        {"label": label, "color": fill, "stroke": stroke, "weight": weight, "n": int(n)}
        for (label, fill, stroke, weight), n in zip(scheme.values(), counts, strict=True)
    ]
    return _layer(layer_id, name, "polygons", geoms, q=q, shift=shift,
                  cols=columns(v, VILLAGE_FIELDS), cls=cls.tolist(), classes=classes,
                  title=(0, 1), tip=[])


def area_layer(
    summary: pd.DataFrame,
    geoms: pd.Series,
    *,
    level: str,
    measure: str,
    target: float | None,
    q: float,
    shift: Shift,
    hrefs: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A choropleth of a share over the areas of a level.

    Parameters
    ----------
    summary
        The level's summary table.
    geoms
        Area polygons indexed by area code; areas without one are left out of the map (they
        stay in the tables).
    level
        The level (``county``, ``township``).
    measure
        ``fibre_share`` or ``speed_share``.
    target
        The target the classes diverge at, or None.
    q, shift
        As :func:`~ruralcov.maps.data.encode_geometry` takes them.
    hrefs
        Area code -> the file of its own page (a link in the popup).

    Returns
    -------
    dict
        Layer data for ``ruralcov.layer``.
    """
    s = summary[summary["code"].isin(geoms.index)].reset_index(drop=True)
    s = s.assign(href=[(hrefs or {}).get(c) for c in s["code"]])
    cls, keys = area_classes(s[measure], target, met=fibre_met(s, measure=measure))
    counts = np.bincount(cls, minlength=len(keys))
    what = "fibre share" if measure == "fibre_share" else "speed share"
    cols = columns(s, AREA_FIELDS)
    labels = [c["label"] for c in cols]
    data = _layer(
        f"{level}_{measure}", f"{level.capitalize()}: {what}", "polygons",
        geoms.loc[s["code"]].to_numpy(), q=q, shift=shift, cols=cols, cls=cls.tolist(),
        classes=_classes(keys, counts, stroke="#555555", weight=0.6, fill=0.8), title=(0, 1),
        tip=[labels.index(x) for x in ("administrative villages", what, "gap (villages)")],
    )
    if "county map" in labels:
        col = cols[labels.index("county map")]
        col["hide"] = True
        data["link"] = {"col": labels.index("county map"), "text": "Open the county map"}
    return data


def outline_layer(geoms: pd.Series, *, q: float, shift: Shift, name: str) -> dict[str, Any]:
    """Area boundaries as thin lines that never catch the mouse.

    Parameters
    ----------
    geoms
        Area polygons.
    q, shift
        As :func:`~ruralcov.maps.data.encode_geometry` takes them.
    name
        The layer's name in the layer control.

    Returns
    -------
    dict
        Layer data for ``ruralcov.layer``.
    """
    boundaries = [g.boundary for g in geoms.to_numpy()]
    return {
        "id": "outlines",
        "name": name,
        "kind": "lines",
        "q": q,
        "inert": True,
        "geom": encode_geometry(boundaries, q=q, shift=shift),
        "cols": [],
        "title": [],
        "classes": [{"label": "boundary", "color": "#333333", "weight": 1.0}],
        "cls": [0] * len(boundaries),
    }


def _legend_info(result: Any, title: str, notes: Sequence[str]) -> dict[str, Any]:
    t = result.config.targets
    provenance = result.config.run.provenance.strip() or "no provenance was given for these inputs"
    return {
        "title": title,
        "provenance": provenance,
        "notes": [
            f"Targets: {t.fibre_share:.0%} of administrative villages on fibre; "
            f"{t.village_download_mbps:g} Mbps in villages, {t.community_download_mbps:g} Mbps "
            "in communities.",
            *notes,
        ],
    }


def province_layers(
    result: Any,
    villages: pd.DataFrame,
    village_geoms: Any,
    areas: dict[str, pd.Series],
    *,
    basemap: str = "none",
    county_hrefs: dict[str, str] | None = None,
    q: float = 1e5,
) -> list[tuple[dict[str, Any], bool]]:
    """The layers of the province page.

    Parameters
    ----------
    result
        The result drawn.
    villages
        The villages with a polygon.
    village_geoms
        Their polygons, simplified.
    areas
        Level -> simplified area polygons by code.
    basemap
        ``none`` or a key of :data:`BASEMAPS`.
    county_hrefs
        County code -> the file of its page.
    q
        Coordinates are rounded to ``1/q`` degree.

    Returns
    -------
    list of (dict, bool)
        Layer data for ``ruralcov.layer`` and whether it is an overlay: county and township
        choropleths (fibre and speed share) and the villages by class as themes, then the
        county outlines as an overlay.
    """
    shift = shift_for(basemap)
    target = result.config.targets.fibre_share
    layers = []
    for level in ("county", "township"):
        if level not in areas or level not in result.summaries:
            continue
        for measure in ("fibre_share", "speed_share"):
            data = area_layer(
                result.summaries[level],
                areas[level],
                level=level,
                measure=measure,
                target=target if measure == "fibre_share" else None,
                q=q,
                shift=shift,
                hrefs=county_hrefs if level == "county" else None,
            )
            layers.append((data, False))
    layers.append((village_layer(villages, village_geoms, q=q, shift=shift), False))
    if "county" in areas:
        layers.append((outline_layer(areas["county"], q=q, shift=shift,
                                     name="County boundaries"), True))
    return layers


def province_map(
    result: Any,
    layers: Sequence[tuple[dict[str, Any], bool]],
    village_geoms: Any,
    *,
    basemap: str = "none",
    notes: Sequence[str] = (),
) -> folium.Map:
    """The province page.

    Parameters
    ----------
    result
        The result drawn.
    layers
        :func:`province_layers`; a theme whose data has ``tiles`` is drawn from vector tiles
        (:class:`TiledLayer`).
    village_geoms
        The villages' polygons (the page opens on their bounds).
    basemap
        ``none`` or a key of :data:`BASEMAPS`.
    notes
        Lines for the legend after the count of villages drawn.

    Returns
    -------
    folium.Map
        The themes as radio buttons (the first shown), the overlays as check boxes.
    """
    drawn = [g for g in np.asarray(village_geoms, dtype=object) if g is not None]
    bounds = _bounds(drawn)
    tiled = any("tiles" in data for data, _ in layers)
    m = _base_map(bounds, basemap, tiles=tiled)
    if tiled:  # embedded pages stay as they were
        _View(bounds).add_to(m)
    first = True
    for data, overlay in layers:
        if overlay:
            DataLayer(data).add_to(m)
            continue
        (TiledLayer if "tiles" in data else DataLayer)(data, overlay=False, show=first).add_to(m)
        first = False
    n_drawn = len(drawn)
    missing = len(result.villages) - n_drawn
    notes = [
        f"{n_drawn:,} villages drawn; {missing:,} register entries without geometry are not "
        "drawn but stay in every count.",
        *notes,
        "Speed share: villages meeting the speed target / administrative villages.",
        "Click an area or a village for its evidence; counties link to their own map.",
    ]
    return _finish(m, result, result.config.run.name, notes, bounds,
                   title=f"Fibre and speed coverage — {result.config.run.name}",
                   links=[("index.html", "all maps"), ("../report.html", "report")])


def county_map(
    result: Any,
    code: str,
    name: str,
    villages: pd.DataFrame,
    village_geoms: Any,
    *,
    outline: Any,
    points: pd.DataFrame | None,
    routes: pd.DataFrame | None,
    cells: pd.DataFrame | None,
    cell_geoms: Any,
    plan: pd.DataFrame | None,
    plan_labels: pd.DataFrame | None,
    basemap: str = "none",
    notes: Sequence[str] = (),
    q: float = 1e5,
) -> folium.Map:
    """The page of one county.

    Parameters
    ----------
    result, basemap, q
        As :func:`province_map` takes them.
    code, name
        The county.
    villages, village_geoms
        Its villages with a polygon, and their polygons.
    outline
        The county's polygon, or None.
    points, routes
        Fibre access points and routes around the county (``operational``, ``source``).
    cells, cell_geoms
        Its speed-test cells (``CoverageResult.cells``) and their squares
        (:func:`ruralcov.maps.cell_polygons`), or None.
    plan, plan_labels
        Its links of a fibre plan and the numbered villages, or None.
    notes
        Lines for the legend.

    Returns
    -------
    folium.Map
        Villages by class, fibre access points and routes (counted or not), speed-test cells
        by the class the analysis gave them, and the proposed links of a plan.
    """
    shift = shift_for(basemap)
    drawn = [g for g in np.asarray(village_geoms, dtype=object) if g is not None]
    bounds = _bounds(drawn if drawn else [outline])
    m = _base_map(bounds, basemap)
    DataLayer(village_layer(villages, village_geoms, q=q, shift=shift, name="Villages")).add_to(m)
    if outline is not None:
        DataLayer(
            outline_layer(pd.Series([outline]), q=q, shift=shift, name="County boundary")
        ).add_to(m)
    layers = [
        *_cell_layers(result, cells, cell_geoms, q=q, shift=shift),
        *(DataLayer(_asset_layer(frame, kind, q=q, shift=shift))
          for frame, kind in ((routes, "routes"), (points, "points"))
          if frame is not None and len(frame)),
    ]
    if plan is not None and len(plan):
        layers.append(DataLayer(_plan_layer(plan, q=q, shift=shift)))
        if plan_labels is not None and len(plan_labels):
            layers.append(DataLayer(_plan_labels(plan_labels, q=q, shift=shift)))
    for layer in layers:
        layer.add_to(m)
    links = [("province.html", "province map"), ("index.html", "all maps"),
             ("../report.html", "report")]
    return _finish(m, result, f"{name} ({code})", notes, bounds,
                   title=f"{name} ({code}) — {result.config.run.name}", links=links)


def _finish(m: folium.Map, result: Any, heading: str, notes: Sequence[str],
            bounds: Sequence[float], *, title: str, links: Sequence[tuple[str, str]]) -> folium.Map:
    """What every page adds after its layers: the layer control, the legend (``heading`` and
    ``notes`` under the run's targets), the village search, the title bar; ids made stable."""
    folium.LayerControl(collapsed=False).add_to(m)
    _Controls(_legend_info(result, heading, notes), ["villages"], bounds).add_to(m)
    _title(m, title, links)
    return stable_ids(m)


def _cell_layers(result: Any, cells: pd.DataFrame | None, geoms: Any, *, q: float,
                 shift: Shift) -> list[DataLayer]:
    """The speed-test cells as a layer, hidden at first (none without cells)."""
    if cells is None or not len(cells):
        return []
    speed = result.config.speed
    legend = cell_legend(target=result.config.targets.village_download_mbps,
                         min_tests=speed.min_tests if speed else 1,
                         min_devices=speed.min_devices if speed else 0)
    return [DataLayer(_cells_layer(cells, geoms, q=q, shift=shift, legend=legend), show=False)]


def _bounds(geoms: Sequence[Any]) -> tuple[float, float, float, float]:
    import shapely

    if not geoms:
        return (-1.0, -1.0, 1.0, 1.0)
    b = shapely.total_bounds(np.asarray(geoms, dtype=object))
    if not np.all(np.isfinite(b)):
        return (-1.0, -1.0, 1.0, 1.0)
    return tuple(float(x) for x in b)  # type: ignore[return-value]


def _asset_layer(frame: pd.DataFrame, kind: str, *, q: float, shift: Shift) -> dict[str, Any]:
    op = frame["operational"].fillna(False).astype(bool).to_numpy()
    cls = np.where(op, 0, 1)
    counts = np.bincount(cls, minlength=2)
    classes = [dict(c) for c in ASSET_CLASSES["points" if kind == "points" else "routes"]]
    for c, n in zip(classes, counts, strict=True):
        c["n"] = int(n)
    spec = (("asset_id", "id", None), ("status", "status", None), ("source", "source", None))
    return _layer(
        f"fibre_{kind}", "Fibre access points" if kind == "points" else "Fibre routes",
        "points" if kind == "points" else "lines", frame.geometry.to_numpy(), q=q, shift=shift,
        cols=columns(frame, spec), cls=cls.tolist(), classes=classes,
    )


#: Colour of each speed class of a cell (:data:`ruralcov.schema.SPEED_CLASSES`).
_CELL_COLOURS = {"meets": "#1a9850", "below": "#f46d43", "insufficient_data": "#bdbdbd"}


def cell_legend(*, target: float, min_tests: int, min_devices: int) -> list[tuple[str, str]]:
    """The legend of the speed-test cells.

    A cell has the class the analysis gave its tests (:func:`ruralcov.classify.speed_class`
    with the run's ``min_tests`` and ``min_devices``), as a village does.

    Parameters
    ----------
    target
        The village download target (Mbps) the cells were classed against.
    min_tests, min_devices
        The run's minimum evidence (``[speed]``); ``min_devices`` 0 when devices are not
        counted.

    Returns
    -------
    list of (str, str)
        ``(label, colour)`` of each class, in :data:`ruralcov.schema.SPEED_CLASSES` order.

    Examples
    --------
    >>> [label for label, _ in cell_legend(target=12.0, min_tests=5, min_devices=3)]
    ['median ≥ 12 Mbps', 'median < 12 Mbps', 'too few: under 5 tests or under 3 devices']
    """
    few = f"too few: under {min_tests} tests" + (
        f" or under {min_devices} devices" if min_devices > 0 else "")
    labels = {"meets": f"median ≥ {target:g} Mbps", "below": f"median < {target:g} Mbps",
              "insufficient_data": few}
    return [(labels[c], _CELL_COLOURS[c]) for c in SPEED_CLASSES]


def _cells_layer(
    cells: pd.DataFrame, geoms: Any, *, q: float, shift: Shift, legend: list[tuple[str, str]]
) -> dict[str, Any]:
    """The speed-test cells of a county, coloured by the speed class the analysis gave them."""
    pos = {c: i for i, c in enumerate(SPEED_CLASSES)}
    found = cells["speed_class"].map(pos)
    if found.isna().any():  # a class the legend does not have: a bug, never a guess
        odd = sorted(map(str, set(cells.loc[found.isna(), "speed_class"])))
        raise ValueError(f"cell speed class(es) {odd} are not among {list(SPEED_CLASSES)}")
    cls = found.to_numpy(dtype=np.intp)
    counts = np.bincount(cls, minlength=len(SPEED_CLASSES))
    frame = cells.assign(label=f"{CELL_M / 1000:g} km cell")
    spec = (
        ("label", "cell", None),
        ("tests", "tests", ",d"),
        ("devices", "devices", ",d"),
        ("median_mbps", "median download (Mbps)", ".1f"),
    )
    cols = columns(frame, spec)
    labels = [c["label"] for c in cols]
    return _layer(
        "speed_cells", f"Speed tests ({CELL_M / 1000:g} km cells)", "polygons", geoms, q=q,
        shift=shift, cols=cols, cls=cls.tolist(),
        classes=_classes(legend, counts, stroke="#ffffff", weight=0.3, fill=0.7),
        tip=[labels.index(x) for x in ("tests", "median download (Mbps)")],
    )


_PLAN_FIELDS = (
    ("order", "order", None),
    ("village_code", "village", None),
    ("village_name", "name", None),
    ("connects_to", "connects to", None),
    ("link_km", "link (km)", ".2f"),
    ("area_code", "area", None),
)


def _plan_layer(plan: pd.DataFrame, *, q: float, shift: Shift) -> dict[str, Any]:
    n = len(plan)
    link = {"label": "proposed link", "color": "#542788", "weight": 3, "n": n, "dash": "6 4"}
    return _layer(
        "plan_links", "Plan: proposed fibre links", "lines", plan.geometry.to_numpy(), q=q,
        shift=shift, cols=columns(plan, _PLAN_FIELDS), cls=[0] * n, classes=[link],
        title=(0, 1),
    )


def _plan_labels(labels: pd.DataFrame, *, q: float, shift: Shift) -> dict[str, Any]:
    n = len(labels)
    village = {"label": "village in the plan, numbered by build order", "color": "#542788",
               "n": n}
    return _layer(
        "plan_order", "Plan: build order", "labels", labels.geometry.to_numpy(), q=q,
        shift=shift, cols=columns(labels, _PLAN_FIELDS), cls=[0] * n, classes=[village],
        title=(0, 1), label=0,
    )
