"""Static PNG maps (matplotlib) for ``report.html`` and the gallery under the top-level ``maps/``.

Drawn in the run's metric CRS (metres), so shapes are not stretched as they would be in
longitude/latitude. The figures name the province in their title and label the counties with
the largest fibre gap, in the register's own (Chinese) names. Those need a CJK font: the
figures use the first of :data:`CJK_FAMILIES` the machine has (Windows ships Microsoft YaHei
and SimHei, macOS PingFang; on Linux ``fonts-noto-cjk`` or ``fonts-wqy-microhei``), set for
these figures only (:func:`fonts`), never in the global ``rcParams`` of a user's session. On a
machine with none, a name that the fallback font cannot draw is replaced by its code, with one
warning in the log saying which package to install: a figure never shows empty boxes.
"""

from __future__ import annotations

import functools
import logging
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from ruralcov.maps.data import area_classes, fibre_met, village_class_index
from ruralcov.report.html import ranked_areas

__all__ = [
    "CJK_FAMILIES",
    "FIGURES",
    "county_share_figure",
    "font_families",
    "fonts",
    "village_class_figure",
    "village_legend",
    "write_static_maps",
]

log = logging.getLogger(__name__)

#: Fonts that draw Chinese names, in the order they are preferred: Linux (Noto Sans CJK, from
#: the Debian package ``fonts-noto-cjk``), Windows (Microsoft YaHei, SimHei), macOS (PingFang
#: SC), Linux again (WenQuanYi Micro Hei, ``fonts-wqy-microhei``).
CJK_FAMILIES: tuple[str, ...] = (
    "Noto Sans CJK SC",
    "Microsoft YaHei",
    "SimHei",
    "PingFang SC",
    "WenQuanYi Micro Hei",
)
#: matplotlib's own font, the last of the list: Latin names and every label's digits.
FALLBACK_FAMILY = "DejaVu Sans"
#: Counties labelled by name on the county figure: the first rows of the report's table.
LABELLED_COUNTIES = 5

#: File name -> caption of each static map, in the order they appear in the report.
FIGURES: dict[str, str] = {
    "county_fibre_share.png": "Fibre share by county against the target (diverging at the "
    "target: warm below, cool at or above); the counties with the largest fibre gap are "
    "labelled with their share and gap.",
    "village_classes.png": "Every village with geometry by fibre and speed class.",
}


def _axes(width_px: int = 1100, height_px: int = 1000) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_px / 100, height_px / 100), dpi=100)
    ax = fig.add_axes((0.01, 0.01, 0.62, 0.93))  # the legend goes to the right, the title on top
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


@functools.cache
def font_families() -> tuple[str, ...]:
    """The font family list of the figures: the :data:`CJK_FAMILIES` this machine has, then
    :data:`FALLBACK_FAMILY`.

    matplotlib keeps a cache of the fonts it found when it first ran; a CJK font installed
    afterwards (``apt-get install fonts-noto-cjk``) is not in it. When none of the CJK
    families is known, the system's font folders are looked through once and the fonts the
    cache lacks are added to matplotlib's font list (which only makes them available).

    Returns
    -------
    tuple of str
        Family names, first choice first; only the fallback on a machine without CJK fonts.
    """
    from matplotlib import font_manager

    manager = font_manager.fontManager
    if not set(CJK_FAMILIES) & {f.name for f in manager.ttflist}:
        known = {str(f.fname) for f in manager.ttflist}
        for path in font_manager.findSystemFonts():
            if path not in known:
                try:
                    manager.addfont(path)
                except (OSError, RuntimeError, ValueError):  # a broken font file: skip it
                    log.debug("font %s could not be read", path)
    names = {f.name for f in manager.ttflist}
    return (*(f for f in CJK_FAMILIES if f in names), FALLBACK_FAMILY)


@contextmanager
def fonts() -> Iterator[tuple[str, ...]]:
    """Draw with :func:`font_families`, for the figures made inside only.

    A ``matplotlib.rc_context``: a user's own plots in the same session keep their fonts.

    Yields
    ------
    tuple of str
        The family list in use.
    """
    import matplotlib

    families = font_families()
    with matplotlib.rc_context({"font.family": list(families)}):
        yield families


@functools.cache
def _drawable(families: tuple[str, ...]) -> frozenset[int]:
    """Code points the fonts ``families`` have a glyph for."""
    from matplotlib import font_manager

    points: set[int] = set()
    for family in families:
        prop = font_manager.FontProperties(family=family)
        points.update(font_manager.get_font(font_manager.findfont(prop)).get_charmap())
    return frozenset(points)


def _label(name: Any, code: Any, families: tuple[str, ...]) -> str:
    """``name`` when the fonts can draw every character of it, else ``code`` (with one
    warning per process saying how to get a font)."""
    text = "" if name is None or (isinstance(name, float) and np.isnan(name)) else str(name)
    if not text:
        return str(code)
    if all(ord(ch) in _drawable(families) for ch in text if not ch.isspace()):
        return text
    _warn_no_cjk_font()
    return str(code)


@functools.cache
def _warn_no_cjk_font() -> None:
    log.warning(
        "no font for Chinese names was found: the static maps show codes instead. Install "
        "one (Debian/Ubuntu: apt-get install fonts-noto-cjk; Windows has Microsoft YaHei, "
        "macOS PingFang SC) and draw the maps again (ruralcov map RUN_DIR)"
    )


def _province(result: Any, families: tuple[str, ...]) -> str:
    """The province as the figures name it: the run's one province, else the run name."""
    v = result.villages
    if "province_name" in v.columns and "province_code" in v.columns:
        pairs = v[["province_code", "province_name"]].dropna().drop_duplicates()
        if len(pairs) == 1:
            return _label(pairs["province_name"].iat[0], pairs["province_code"].iat[0],
                          families)
    return str(result.config.run.name)


def county_share_figure(result: Any, counties: pd.Series, *,
                        families: tuple[str, ...] = (FALLBACK_FAMILY,)) -> Any:
    """The county fibre-share map, diverging at the target, with the counties of the largest
    fibre gap labelled by name (the first rows of the report's county table).

    Parameters
    ----------
    result
        The result drawn (its ``county`` summary).
    counties
        The county polygons (EPSG:4326) by code.
    families
        The font families the names are drawn with (:func:`fonts`): a name the fonts
        cannot draw is labelled with its code.

    Returns
    -------
    matplotlib.figure.Figure
        The figure, not saved.
    """
    target = result.config.targets.fibre_share
    summary = result.summaries["county"].set_index("code")
    shown = summary.reindex(counties.index)
    frame = gpd.GeoDataFrame(
        {"share": shown["fibre_share"].to_numpy()},
        geometry=list(counties.to_numpy()),
        index=counties.index,
        crs="EPSG:4326",
    ).to_crs(result.metric_crs)
    cls, keys = area_classes(frame["share"], target, met=fibre_met(shown))
    colours = np.array([c for _, c in keys], dtype=object)[cls]
    fig, ax = _axes()
    frame.plot(ax=ax, color=list(colours), edgecolor="#444444", linewidth=0.5)
    used = sorted(set(cls.tolist()))
    _legend(ax, [keys[i] for i in used], f"fibre share (target {target:.0%})")
    ranked, _ = ranked_areas(summary.reset_index())
    worst = ranked[ranked["code"].isin(frame.index) & (ranked["fibre_gap_villages"] > 0)]
    for row in worst.head(LABELLED_COUNTIES).itertuples(index=False):
        at = frame.geometry.loc[row.code].representative_point()
        _halo_text(ax, at.x, at.y, f"{_label(row.name, row.code, families)}\n"
                   f"{row.fibre_share:.1%}, gap {int(row.fibre_gap_villages):,}")
    labelled = min(len(worst), LABELLED_COUNTIES)
    fig.suptitle(f"{_province(result, families)} — fibre share by county"
                 + (f" (labelled: the {labelled} largest fibre gaps)" if labelled else ""),
                 x=0.01, ha="left", fontsize=13)
    return fig


def village_class_figure(result: Any, villages: gpd.GeoDataFrame, *,
                         families: tuple[str, ...] = (FALLBACK_FAMILY,)) -> Any:
    """Every village with geometry by fibre and speed class.

    Parameters
    ----------
    result
        The result drawn.
    villages
        The village polygons with their columns, those with a geometry only.
    families
        The font families of the text (:func:`fonts`).

    Returns
    -------
    matplotlib.figure.Figure
        The figure, not saved.
    """
    frame = villages.to_crs(result.metric_crs)
    cls, scheme = village_class_index(frame)
    fig, ax = _axes()
    for i, (_, fill, _, _) in enumerate(scheme.values()):
        if (cls == i).any():
            _fill(ax, frame[cls == i].geometry.to_numpy(), fill)
    ax.autoscale_view()
    _legend(ax, village_legend(frame), "villages")
    fig.suptitle(f"{_province(result, families)} — villages by fibre and speed class",
                 x=0.01, ha="left", fontsize=13)
    return fig


def _halo_text(ax: Any, x: float, y: float, text: str) -> None:
    """A label readable on any fill: dark text with a white outline."""
    from matplotlib import patheffects

    ax.annotate(text, (x, y), ha="center", va="center", fontsize=9, color="#111111",
                path_effects=[patheffects.withStroke(linewidth=3, foreground="white")])


def write_static_maps(
    result: Any,
    villages: gpd.GeoDataFrame,
    counties: pd.Series | None,
    folder: Path,
) -> list[tuple[Path, str]]:
    """Write the PNGs of :data:`FIGURES`, drawn with :func:`fonts`.

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
    out: list[tuple[Path, str]] = []
    drawn = villages[villages.geometry.notna() & ~villages.geometry.is_empty]
    with fonts() as families:
        figures = []
        if counties is not None and len(counties) and "county" in result.summaries:
            figures.append(("county_fibre_share.png",
                            county_share_figure(result, counties, families=families)))
        if len(drawn):
            figures.append(("village_classes.png",
                            village_class_figure(result, drawn, families=families)))
        for name, fig in figures:
            path = folder / name
            fig.savefig(path, dpi=100)
            out.append((path, FIGURES[name]))
    return out
