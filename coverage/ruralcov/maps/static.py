"""Static PNG maps (matplotlib) for ``report.html`` and the gallery under the top-level ``maps/``.

Drawn in the run's metric CRS (metres), so shapes are not stretched as they would be in
longitude/latitude. Text on the figures is fixed English wording: user data (names) would
need CJK fonts that a machine may not have, and the report's caption carries the run name.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from ruralcov.maps.data import area_classes, fibre_met, village_class_index

__all__ = ["FIGURES", "village_legend", "write_static_maps"]

#: File name -> caption of each static map, in the order they appear in the report.
FIGURES: dict[str, str] = {
    "county_fibre_share.png": "Fibre share by county against the target (diverging at the "
    "target: warm below, cool at or above).",
    "village_classes.png": "Every village with geometry by fibre and speed class.",
}


def _axes(width_px: int = 1100, height_px: int = 1000) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_px / 100, height_px / 100), dpi=100)
    ax = fig.add_axes((0.01, 0.01, 0.62, 0.98))  # the legend goes to the right
    ax.set_axis_off()
    ax.set_aspect("equal")
    return fig, ax


def _legend(ax: Any, items: list[tuple[str, str]], title: str) -> None:
    from matplotlib.patches import Patch

    # long labels (the five-way classes say what they mean) wrap to stay inside the figure
    handles = [
        Patch(facecolor=c, edgecolor="#555555", label=textwrap.fill(lab, 52)) for lab, c in items
    ]
    ax.legend(
        handles=handles,
        title=title,
        loc="center left",
        bbox_to_anchor=(1.02, 0.5),
        fontsize=10,
        title_fontsize=11,
        frameon=False,
    )


def _fill(ax: Any, geoms: Any, colour: str) -> None:
    """Polygons as one matplotlib collection of paths (holes kept): much faster than one
    patch per polygon for tens of thousands of villages."""
    import shapely
    from matplotlib.collections import PathCollection
    from matplotlib.path import Path as MplPath

    parts = shapely.get_parts(geoms)
    parts = parts[~shapely.is_empty(parts)]
    paths = []
    for poly in parts:
        rings = [np.asarray(poly.exterior.coords)[:, :2]]
        rings += [np.asarray(r.coords)[:, :2] for r in poly.interiors]
        paths.append(MplPath.make_compound_path(*(MplPath(r, closed=True) for r in rings)))
    ax.add_collection(PathCollection(paths, facecolors=colour, edgecolors="none", linewidths=0))


def village_legend(villages: pd.DataFrame) -> list[tuple[str, str]]:
    """The legend of the village figure.

    Parameters
    ----------
    villages
        The villages with geometry.

    Returns
    -------
    list of (str, str)
        ``(label with count, fill colour)`` of each class of
        :func:`~ruralcov.maps.data.village_classes` that ``villages`` hold, counted as the
        province page counts them.
    """
    cls, scheme = village_class_index(villages)
    counts = np.bincount(cls, minlength=len(scheme))
    return [
        (f"{label} ({n:,})", fill)
        for (label, fill, _, _), n in zip(scheme.values(), counts.tolist(), strict=True)
        if n
    ]


def write_static_maps(
    result: Any,
    villages: gpd.GeoDataFrame,
    counties: pd.Series | None,
    folder: Path,
) -> list[tuple[Path, str]]:
    """Write the PNGs of :data:`FIGURES`.

    Parameters
    ----------
    result
        The result drawn.
    villages
        The (simplified) village polygons with their columns.
    counties
        The county polygons by code (None or empty: the county figure is skipped).
    folder
        Where to write (``<out>/maps/static``).

    Returns
    -------
    list of (pathlib.Path, str)
        ``(path, caption)`` of each figure written.
    """
    folder.mkdir(parents=True, exist_ok=True)
    metric = result.metric_crs
    out: list[tuple[Path, str]] = []
    target = result.config.targets.fibre_share
    if counties is not None and len(counties) and "county" in result.summaries:
        summary = result.summaries["county"].set_index("code")
        shown = summary.reindex(counties.index)
        frame = gpd.GeoDataFrame(
            {"share": shown["fibre_share"].to_numpy()},
            geometry=list(counties.to_numpy()),
            crs="EPSG:4326",
        ).to_crs(metric)
        cls, keys = area_classes(frame["share"], target, met=fibre_met(shown))
        colours = np.array([c for _, c in keys], dtype=object)[cls]
        fig, ax = _axes()
        frame.plot(ax=ax, color=list(colours), edgecolor="#444444", linewidth=0.5)
        used = sorted(set(cls.tolist()))
        _legend(ax, [keys[i] for i in used], f"fibre share (target {target:.0%})")
        path = folder / "county_fibre_share.png"
        fig.savefig(path, dpi=100)
        out.append((path, FIGURES[path.name]))
    drawn = villages[villages.geometry.notna() & ~villages.geometry.is_empty]
    if len(drawn):
        frame = drawn.to_crs(metric)
        cls, scheme = village_class_index(frame)
        fig, ax = _axes()
        for i, (_, fill, _, _) in enumerate(scheme.values()):
            if (cls == i).any():
                _fill(ax, frame[cls == i].geometry.to_numpy(), fill)
        ax.autoscale_view()
        _legend(ax, village_legend(frame), "villages")
        path = folder / "village_classes.png"
        fig.savefig(path, dpi=100)
        out.append((path, FIGURES[path.name]))
    return out
