"""The province page of a large run: villages and townships from vector tiles.

When the embedded page would pass ``[maps] max_page_mb`` (or ``vector_tiles = "always"``),
:func:`tiled_layers` writes, into ``maps/tiles/``:

- ``province.pmtiles``: the village and township polygons as Mapbox Vector Tiles
  (:mod:`ruralcov.maps.tiles`), each feature with its county, its row in that county's
  evidence and its class on each theme, and the archive's chunk scripts beside it;
- ``evidence/<n>.js``: the popups' and tooltips' rows of county ``n`` (its villages and
  townships), the same columns as the embedded page shows;
- ``search.js``: every village's name, code, county, row and a point inside it, loaded when
  the search box is first used.

The themes keep the legend of the embedded page: classes and counts come from the result's
tables (:func:`~ruralcov.maps.pages.village_layer`, :func:`~ruralcov.maps.pages.area_layer`),
never from the tiles. The counties stay embedded (a province has a few dozen, China about
2,900), one copy of their polygons shared by the county themes and outlines
(:func:`shared_geometry`), and so do the county pages.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely

from ruralcov.maps.data import column_texts, script_json, split_columns
from ruralcov.maps.tiles import TileLayer, tile_pyramid, write_archive

__all__ = ["TILE_DIR", "TILED", "ZOOMS", "shared_geometry", "tiled_layers"]

#: Folder of the tiles, the evidence and the search index, relative to the page.
TILE_DIR = "tiles"
#: Themes drawn from tiles: layer id -> (tile layer, class property).
TILED = {
    "villages": ("villages", "k"),
    "township_fibre_share": ("townships", "f"),
    "township_speed_share": ("townships", "s"),
}
#: Data zooms of each tile layer (displayed one zoom higher; beyond the last the reader
#: enlarges it): villages from a province's zoom, townships from a country's.
ZOOMS = {"villages": (6, 12), "townships": (4, 10)}


def _groups(codes: pd.Series, order: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """The county index of each row and its position among its county's rows."""
    c = codes.astype(str).map(order).fillna(len(order)).to_numpy(dtype=np.int64)
    i = pd.Series(c).groupby(c).cumcount().to_numpy(dtype=np.int64)
    return c, i


def _parts(layers: list[tuple[dict[str, Any], bool]], drawn: pd.DataFrame,
           townships: pd.Series | None, order: dict[str, int]) -> dict[str, Any]:
    """Each tiled theme's rows: county index, row in the county, class, geometry."""
    county_of = dict(zip(drawn["township_code"].astype(str), drawn["county_code"].astype(str),
                         strict=True)) if "township_code" in drawn.columns else {}
    out = {}
    for data, _ in layers:
        if data["id"] not in TILED:
            continue
        if data["id"] == "villages":
            codes, geoms = drawn["county_code"], drawn.geometry.to_numpy()
        else:
            own = column_texts(next(c for c in data["cols"] if c["label"] == "code"))
            codes = pd.Series([county_of.get(t) for t in own], dtype=object)
            geoms = townships.loc[own].to_numpy()
        c, i = _groups(codes, order)
        out[data["id"]] = (data, c, i, np.asarray(data["cls"], dtype=np.int64), geoms)
    return out


def _tile_layers(parts: dict[str, Any]) -> list[TileLayer]:
    """The tile layers: one per tile layer name, with the class property of each theme."""
    layers: dict[str, dict[str, Any]] = {}
    for layer_id, (_, c, i, cls, geoms) in parts.items():
        name, prop = TILED[layer_id]
        entry = layers.setdefault(name, {"geoms": geoms, "props": {"c": c, "i": i}})
        entry["props"][prop] = cls
    return [TileLayer(name, np.asarray(e["geoms"], dtype=object), e["props"], *ZOOMS[name])
            for name, e in layers.items()]


def _write_evidence(parts: dict[str, Any], n_counties: int, folder: Path) -> None:
    """``evidence/<n>.js`` per county: each tiled theme's columns and classes of its rows."""
    folder.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[np.ndarray]] = {}
    for layer_id, (_, c, _, _, _) in parts.items():
        order = np.argsort(c, kind="stable")
        rows[layer_id] = np.split(order, np.searchsorted(c[order], np.arange(1, n_counties + 1)))
    cols = {layer_id: split_columns(data["cols"], rows[layer_id])
            for layer_id, (data, _, _, _, _) in parts.items()}
    for n in range(n_counties + 1):
        ev = {layer_id: {"cols": next(cols[layer_id]), "cls": cls[rows[layer_id][n]].tolist()}
              for layer_id, (_, _, _, cls, _) in parts.items()}
        (folder / f"{n}.js").write_text(f"ruralcov.evidence({n},{script_json(ev)});\n",
                                        encoding="utf-8", newline="\n")


def _write_search(part: Any, folder: Path, q: float) -> None:
    """``search.js``: name, code, county, row and an inside point of every village."""
    data, c, i, _, geoms = part
    labels = [col["label"] for col in data["cols"]]
    names = column_texts(data["cols"][labels.index("name")])
    codes = column_texts(data["cols"][labels.index("code")])
    inside = shapely.get_coordinates(shapely.point_on_surface(geoms))
    xy = np.rint(inside * q).astype(np.int64).ravel().tolist()
    index = {"q": q, "name": names, "code": codes, "c": c.tolist(), "i": i.tolist(), "xy": xy}
    (folder / "search.js").write_text(f"ruralcov.searchIndex({script_json(index)});\n",
                                      encoding="utf-8", newline="\n")


def _closed_rings(polygons: list[Any]) -> list[Any]:
    """The rings of one geometry of polygons as encoded lines: every ring of every part,
    its closing vertex back (the encoding of the polygons' boundaries)."""
    return [[*ring, -sum(ring[2::2]), -sum(ring[3::2])] for part in polygons for ring in part]


def shared_geometry(layers: list[tuple[dict[str, Any], bool]]) -> list[tuple[dict[str, Any], bool]]:
    """The embedded layers with each copy of an earlier layer's geometry replaced by
    ``geom_of`` (that layer's id), which ``ruralcov_tiles.js`` resolves: on a tiled page the
    county themes and the county outlines carry one copy of the counties, not three (a
    layer of lines shares the rings of polygons, closed again). Only exact copies are
    shared."""
    seen: dict[str, Any] = {}
    out = []
    for data, overlay in layers:
        geom = data.get("geom")
        if "tiles" in data or geom is None:
            out.append((data, overlay))
            continue
        for layer_id, polygons in seen.items():
            same = (geom == polygons if data["kind"] == "polygons" else
                    data["kind"] == "lines" and geom == [_closed_rings(g) for g in polygons])
            if same:
                data = {("geom_of" if k == "geom" else k): (layer_id if k == "geom" else v)
                        for k, v in data.items()}
                break
        else:
            if data["kind"] == "polygons":
                seen[data["id"]] = geom
        out.append((data, overlay))
    return out


def tiled_layers(
    layers: list[tuple[dict[str, Any], bool]],
    drawn: pd.DataFrame,
    townships: pd.Series | None,
    folder: Path,
    *,
    shift: Any = None,
    q: float = 1e5,
) -> list[tuple[dict[str, Any], bool]]:
    """Write the tiles, evidence and search index, and return the page's layers with the
    villages and townships drawn from them.

    Parameters
    ----------
    layers
        :func:`~ruralcov.maps.pages.province_layers` (its themes' classes, counts and
        columns are the ones the tiles and the evidence carry).
    drawn
        The villages with a polygon, in the order of the village layer, full detail.
    townships
        Township polygons by code, or None.
    folder
        The maps folder; ``tiles/`` in it is written anew.
    shift
        Moves coordinates first, as in the embedded layers
        (:func:`ruralcov.maps.pages.shift_for`).
    q
        The grid of the search index's points, ``1/q`` degree.

    Returns
    -------
    list of (dict, bool)
        ``layers`` with each theme of :data:`TILED` given ``tiles`` (what
        ``ruralcov.tiled`` reads).
    """
    target = folder / TILE_DIR
    if target.exists():
        shutil.rmtree(target)
    codes = sorted(drawn["county_code"].dropna().astype(str).unique())
    order = {code: n for n, code in enumerate(codes)}
    if shift is not None:
        drawn = drawn.set_geometry(shapely.transform(drawn.geometry.to_numpy(), shift,
                                                     interleaved=False))
        if townships is not None:
            townships = pd.Series(shapely.transform(townships.to_numpy(), shift,
                                                    interleaved=False), index=townships.index)
    parts = _parts(layers, drawn, townships, order)
    tile_layers = _tile_layers(parts)
    metadata = {
        "name": "ruralcov",
        "description": "Villages and townships of a ruralcov run; properties: c county, "
                       "i row in evidence/<c>.js, k village class, f and s township classes.",
        "vector_layers": [{"id": t.name, "fields": dict.fromkeys(t.props, "Number"),
                           "minzoom": t.min_zoom, "maxzoom": t.max_zoom} for t in tile_layers],
    }
    bounds = shapely.total_bounds(drawn.geometry.to_numpy())
    archive = write_archive(tile_pyramid(tile_layers), target / "province.pmtiles",
                            bounds=bounds, metadata=metadata)
    _write_evidence(parts, len(codes), target / "evidence")
    if "villages" in parts:
        _write_search(parts["villages"], target, q)
    out = []
    for data, overlay in layers:
        if data["id"] in TILED:
            name, prop = TILED[data["id"]]
            tiles = {"archive": archive, "source": name, "prop": prop,
                     "min_zoom": ZOOMS[name][0], "max_zoom": ZOOMS[name][1]}
            data = {**data, "tiles": tiles}
        out.append((data, overlay))
    return shared_geometry(out)
