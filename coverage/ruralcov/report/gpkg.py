"""``results.gpkg``: the run's layers in one GeoPackage that opens styled in QGIS.

The villages, the townships and counties (their polygons dissolved from the villages', with
the summary's numbers), the three gap lists and, when the run read them, the fibre access
points and routes. Every layer has a ``map_class`` column and a default QGIS style in the
GeoPackage's ``layer_styles`` table (the table QGIS itself writes when a style is saved to a
GeoPackage), built from the classes and colours of the web map (:mod:`ruralcov.maps.data`), so
QGIS draws each layer with the same legend as ``maps/index.html``.

The file is a function of the result and the run's time only (GDAL's dates are pinned to it),
so ``ruralcov verify`` recomputes it byte for byte.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import geopandas as gpd
import numpy as np
import pandas as pd

from ruralcov.areas import level_unions
from ruralcov.maps.data import (
    ASSET_CLASSES,
    area_classes,
    fibre_met,
    map_class,
    village_classes,
)
from ruralcov.pipeline import CoverageResult

__all__ = ["GPKG_FILE", "gpkg_layers", "pinned_gpkg_date", "style_qml", "write_gpkg"]

#: The GeoPackage of a run folder.
GPKG_FILE = "results.gpkg"
#: The geometry column of every layer.
GEOMETRY = "geom"
#: The area levels written as layers, in order.
_AREA_LEVELS = {"township": "townships", "county": "counties"}
_FIELD = "map_class"
#: Rows written to a layer at a time: pyogrio holds what it writes at once as an Arrow table
#: and its polygons as WKB (+0.28 GB for the national villages layer, 620,573 rows, in one
#: piece; +1.0 GB without Arrow, a Python object per text cell).
LAYER_ROWS = 50_000


@contextmanager
def pinned_gpkg_date(when: str) -> Iterator[None]:
    """Have GDAL write ``when`` as every date of a GeoPackage (``gpkg_contents.last_change``)
    instead of the current time, so the same layers make the same bytes.

    Parameters
    ----------
    when
        An ISO 8601 time (a run's ``created``) or GDAL's ``YYYY-MM-DDTHH:MM:SS.sssZ``.
    """
    import pyogrio

    stamp = datetime.fromisoformat(when.replace("Z", "+00:00"))
    stamp = stamp.astimezone(UTC) if stamp.tzinfo else stamp
    previous = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
    text = stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": text})
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": previous})


# --- QGIS styles ---------------------------------------------------------------------------


def _rgba(colour: str, alpha: float = 1.0) -> str:
    """``#rrggbb`` as QGIS writes a colour: ``r,g,b,a``."""
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"{r},{g},{b},{round(255 * alpha)}"


def _layer(parent: ET.Element, cls: str, props: dict[str, str]) -> None:
    """One symbol layer with its properties, written both ways QGIS 3 reads them."""
    layer = ET.SubElement(parent, "layer", {"class": cls, "enabled": "1", "pass": "0",
                                            "locked": "0"})
    options = ET.SubElement(layer, "Option", {"type": "Map"})
    for k, v in props.items():
        ET.SubElement(options, "Option", {"name": k, "type": "QString", "value": v})
    for k, v in props.items():
        ET.SubElement(layer, "prop", {"k": k, "v": v})


def _symbol(kind: str, style: dict[str, Any]) -> tuple[str, str, dict[str, str]]:
    """(symbol type, symbol layer class, properties) of a fill, marker or line style.

    ``style`` holds ``color`` (the fill, or a line's colour), ``stroke`` (an outline),
    ``weight`` (pixels), and for markers ``radius`` (pixels) and ``fill`` (opacity).
    """
    weight = str(style.get("weight", 1))
    if kind == "fill":
        return "fill", "SimpleFill", {
            "color": _rgba(style["color"], style.get("fill", 1.0)), "style": "solid",
            "outline_color": _rgba(style.get("stroke", "#ffffff")), "outline_style": "solid",
            "outline_width": weight, "outline_width_unit": "Pixel"}
    if kind == "marker":
        return "marker", "SimpleMarker", {
            "name": "circle", "color": _rgba(style["color"], style.get("fill", 1.0)),
            "outline_color": _rgba(style.get("stroke", "#000000")), "outline_style": "solid",
            "outline_width": weight, "outline_width_unit": "Pixel",
            "size": str(2 * style.get("radius", 4)), "size_unit": "Pixel"}
    dash = style.get("dash")
    props = {"line_color": _rgba(style["color"]), "line_width": weight,
             "line_width_unit": "Pixel", "line_style": "solid", "capstyle": "round",
             "joinstyle": "round", "use_custom_dash": "1" if dash else "0"}
    if dash:
        props.update(customdash=";".join(str(dash).split()), customdash_unit="Pixel")
    return "line", "SimpleLine", props


def style_qml(kind: str, categories: Sequence[tuple[str, str, dict[str, Any]]], *,
              field: str = _FIELD) -> str:
    """A QGIS style (QML) drawing a layer by category of ``field``.

    Parameters
    ----------
    kind
        ``fill`` (polygons), ``marker`` (points) or ``line``.
    categories
        ``(value, legend label, style)`` of each class, in legend order (styles as in
        :func:`_symbol`).
    field
        The column holding each feature's class.

    Returns
    -------
    str
        The QML document: a categorized renderer with one symbol per class.

    Examples
    --------
    >>> qml = style_qml("fill", [("a", "class a", {"color": "#1a9850"})])
    >>> ET.fromstring(qml).find("renderer-v2").get("type")
    'categorizedSymbol'
    """
    root = ET.Element("qgis", {"version": "3.28.0", "styleCategories": "Symbology"})
    renderer = ET.SubElement(root, "renderer-v2", {
        "type": "categorizedSymbol", "attr": field, "symbollevels": "0", "forceraster": "0",
        "enableorderby": "0", "referencescale": "-1"})
    cats = ET.SubElement(renderer, "categories")
    symbols = ET.SubElement(renderer, "symbols")
    for i, (value, label, style) in enumerate(categories):
        ET.SubElement(cats, "category", {"value": value, "label": label, "symbol": str(i),
                                         "render": "true", "type": "string"})
        sym_type, cls, props = _symbol(kind, style)
        symbol = ET.SubElement(symbols, "symbol", {
            "type": sym_type, "name": str(i), "alpha": "1", "clip_to_extent": "1",
            "force_rhr": "0", "frame_rate": "10", "is_animated": "0"})
        _layer(symbol, cls, props)
    ET.SubElement(root, "layerGeometryType").text = {"fill": "2", "line": "1", "marker": "0"}[kind]
    body = ET.tostring(root, encoding="unicode")
    return "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n" + body + "\n"


# --- layers --------------------------------------------------------------------------------


def _village_layer(frame: pd.DataFrame, geometry: Any) -> tuple[gpd.GeoDataFrame, str]:
    """Villages (or a gap list's) with their map class, and the style of the classes."""
    scheme = village_classes(frame)
    out = gpd.GeoDataFrame(pd.DataFrame(frame).assign(**{_FIELD: map_class(frame).to_numpy()}),
                           geometry=gpd.GeoSeries(geometry, crs="EPSG:4326"))
    qml = style_qml("fill", [(key, label, {"color": fill, "stroke": stroke, "weight": weight})
                             for key, (label, fill, stroke, weight) in scheme.items()])
    return out, qml


def _area_layer(result: CoverageResult, level: str, merged: pd.Series
                ) -> tuple[gpd.GeoDataFrame, str]:
    """The areas of ``level``: the summary's rows, the union of their villages' polygons
    (``merged``, by code), and the fibre-share class of the web map's area layers."""
    summary = result.summaries[level].reset_index(drop=True)
    target = result.config.targets.fibre_share
    cls, labels = area_classes(summary["fibre_share"], target, met=fibre_met(summary))
    names = np.array([label for label, _ in labels], dtype=object)
    frame = summary.assign(**{_FIELD: names[cls]})
    geometry = [merged.get(code) for code in summary["code"]]
    out = gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries(geometry, crs="EPSG:4326"))
    qml = style_qml("fill", [(label, label, {"color": colour, "stroke": "#555555",
                                             "weight": 0.6, "fill": 0.8})
                             for label, colour in labels])
    return out, qml


def _asset_layer(frame: gpd.GeoDataFrame, role: str) -> tuple[gpd.GeoDataFrame, str]:
    """Access points or routes, operational or not, styled as on the maps."""
    keys = ("operational", "not_operational")
    op = frame["operational"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    out = gpd.GeoDataFrame(pd.DataFrame(frame).assign(
        **{_FIELD: np.where(op, keys[0], keys[1])}), geometry=frame.geometry.name,
        crs="EPSG:4326")
    qml = style_qml("marker" if role == "points" else "line",
                    [(k, style["label"], style)
                     for k, style in zip(keys, ASSET_CLASSES[role], strict=True)])
    return out, qml


def gpkg_layers(result: CoverageResult) -> list[tuple[str, gpd.GeoDataFrame, str]]:
    """The layers of ``results.gpkg`` in order, each with its QGIS style.

    Parameters
    ----------
    result
        What :func:`ruralcov.analyse` returned.

    Returns
    -------
    list of (name, frame, qml)
        ``villages``; ``townships`` and ``counties`` (when the register has those levels);
        ``gaps_no_fibre``, ``gaps_below_speed``, ``gaps_insufficient_data``; and
        ``access_points`` and ``routes`` when the run read any. Every frame is in EPSG:4326
        with a ``map_class`` column (the style's categories).
    """
    villages = result.villages.reset_index(drop=True)
    if villages.crs is not None and not villages.crs.equals("EPSG:4326"):
        villages = villages.to_crs("EPSG:4326")
    table = pd.DataFrame(villages.drop(columns=villages.geometry.name))
    layers = [("villages", *_village_layer(table, villages.geometry.to_numpy()))]
    levels = [level for level in _AREA_LEVELS
              if level in result.summaries and f"{level}_code" in villages.columns]
    drawn = villages.geometry.notna().to_numpy()  # a mask: the drawn rows, not a copy of them
    geoms = villages.geometry.to_numpy()[drawn]
    merged = level_unions(result.area_unions, {
        level: (geoms, villages[f"{level}_code"][drawn]) for level in levels})
    for level, areas in merged.items():
        layers.append((_AREA_LEVELS[level], *_area_layer(result, level, areas)))
    by_code = pd.Series(villages.geometry.to_numpy(), index=villages["village_code"])
    for name, gap in result.gaps.items():
        geometry = by_code.reindex(gap["village_code"]).to_numpy()
        layers.append((f"gaps_{name}", *_village_layer(gap.reset_index(drop=True), geometry)))
    for role, frame, name in (("points", result.fibre_points, "access_points"),
                              ("routes", result.fibre_routes, "routes")):
        if frame is not None and len(frame):
            layers.append((name, *_asset_layer(frame, role)))
    return layers


def _styles(layers: list[tuple[str, gpd.GeoDataFrame, str]], created: str) -> pd.DataFrame:
    """The ``layer_styles`` table: one default style per layer, as QGIS stores them."""
    return pd.DataFrame({
        "f_table_catalog": "", "f_table_schema": "",
        "f_table_name": [name for name, _, _ in layers], "f_geometry_column": GEOMETRY,
        "styleName": [name for name, _, _ in layers],
        "styleQML": [qml for _, _, qml in layers], "styleSLD": "",
        "useAsDefault": True,
        "description": [f"ruralcov: {name}, the classes and colours of the web map"
                        for name, _, _ in layers],
        "owner": "", "ui": None,
        "update_time": pd.Timestamp(created),
    })


def _refused_by_disk(path: Path, exc: Exception) -> None:
    """Raise the file system's own error when it refuses a write next to ``path`` (full,
    read-only, over the file-size limit): GDAL reports such a failure as an SQLite message
    without the error number that names the fix (:func:`ruralcov.outdir.output_error`)."""
    probe = path.with_name(path.name + ".probe")
    try:
        with probe.open("wb") as fh:
            fh.write(bytes(1 << 20))
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as refused:
        raise refused from exc
    finally:
        probe.unlink(missing_ok=True)


def _geometry_kind(geometry: gpd.GeoSeries) -> tuple[str, bool | None]:
    """The layer geometry type and multi promotion pyogrio infers from a whole layer
    (``write_dataframe``'s rule: one type, or a type and its multi promoted to the multi; a
    Z suffix when any geometry has one), so that every chunk is written as the whole
    layer would be."""
    kinds = set(geometry.geom_type.dropna().unique())
    name, promote = "Unknown", None
    if len(kinds) == 1:
        name = kinds.pop()
    elif len(kinds) == 2:
        multi = next((f"Multi{k}" for k in ("Polygon", "LineString", "Point")
                      if kinds == {k, f"Multi{k}"}), None)
        if multi is not None:
            name, promote = multi, True
    drawn = geometry[geometry.notna() & ~geometry.is_empty]
    if name != "Unknown" and drawn.has_z.any():
        name += " Z"
    return name, promote


def _write_layer(frame: gpd.GeoDataFrame, path: Path, name: str) -> None:
    """Write ``frame`` as the layer ``name`` of ``path``, :data:`LAYER_ROWS` rows at a time
    (the first chunk makes the layer, the others are appended to it): what is read back is
    the layer written in one piece (same fields, types, values, geometries and ids)."""
    import pyogrio

    kind: dict[str, Any] = {}
    if len(frame) > LAYER_ROWS:
        kind = dict(zip(("geometry_type", "promote_to_multi"), _geometry_kind(frame.geometry),
                        strict=True))
    for a in range(0, max(len(frame), 1), LAYER_ROWS):
        # through Arrow, GDAL writes without holding the GIL: a run folder's workbook is
        # formatted beside it (``report.writer``)
        pyogrio.write_dataframe(frame.iloc[a:a + LAYER_ROWS], path, layer=name, driver="GPKG",
                                use_arrow=True, GEOMETRY_NAME=GEOMETRY, SPATIAL_INDEX="YES",
                                append=a > 0, **kind)


def write_gpkg(result: CoverageResult, path: Path | str, *, created: str,
               layers: list[tuple[str, gpd.GeoDataFrame, str]] | None = None
               ) -> tuple[str, str]:
    """Write ``results.gpkg``: every layer of :func:`gpkg_layers` and their default styles.

    Parameters
    ----------
    result
        What :func:`ruralcov.analyse` returned.
    path
        The file to write (replaced when it exists).
    created
        The run's time: the only time the file holds.
    layers
        :func:`gpkg_layers` of ``result`` when already made (the run folder's writer makes
        them in a thread while it writes the tables); made here otherwise.

    Returns
    -------
    tuple of str
        The file's name and what it holds, for the report's list of files.
    """
    import pyogrio

    path = Path(path)
    path.unlink(missing_ok=True)
    layers = gpkg_layers(result) if layers is None else layers
    try:
        with pinned_gpkg_date(created):
            for name, frame, _ in layers:
                _write_layer(frame, path, name)
            pyogrio.write_dataframe(_styles(layers, created), path, layer="layer_styles",
                                    driver="GPKG", FID="id")
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as exc:
        _refused_by_disk(path, exc)
        raise
    return (GPKG_FILE, "villages, areas, gap lists and fibre assets in one GeoPackage, "
            "styled as the maps for QGIS")
