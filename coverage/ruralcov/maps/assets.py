"""The files every map page loads, copied next to the pages so that nothing comes from the network.

Leaflet's JavaScript, CSS and control images come from the ``xstatic-leaflet`` package (plain
Leaflet release files, installed with ruralcov from PyPI; nothing third-party is committed
here). ruralcov's own script and style sheet (search box, full-screen button, legend, layer
decoding) come from ``ruralcov/templates``. Folium's default CDN references (Leaflet, jQuery,
Bootstrap, Font Awesome) are replaced on every map by :func:`offline`.

A page drawn from vector tiles (:mod:`ruralcov.maps.vector`) also loads protomaps-leaflet and
the PMTiles reader, the release files of the npm packages ``protomaps-leaflet`` and
``pmtiles``: ``make js`` installs them with ``npm ci`` into ``js/node_modules`` of the
repository (the versions in ``js/package-lock.json``); ``RURALCOV_JS`` names another
``node_modules`` folder. They are copied next to the page, never committed.
"""

from __future__ import annotations

import os
import shutil
from importlib import resources
from pathlib import Path

import folium

from ruralcov.errors import RuralcovError

__all__ = [
    "ASSET_DIR",
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "TILE_SCRIPTS",
    "copy_assets",
    "copy_tile_assets",
    "leaflet_dir",
    "node_modules",
    "offline",
]

#: Debian's chromium, as the map tests, the map bench and the gallery open the pages.
CHROMIUM = "/usr/bin/chromium"
#: Flags for a headless chromium run as root on a machine without a network: without the
#: background-networking ones chromium keeps trying, and failing, to reach Google's hosts.
CHROMIUM_ARGS: tuple[str, ...] = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

#: Folder of the assets, relative to the map pages.
ASSET_DIR = "assets"

_OWN = ("ruralcov_map.js", "ruralcov_map.css")
#: The scripts of a page drawn from vector tiles, in load order: (copied name, package, file in
#: the package; None for ruralcov's own).
TILE_SCRIPTS: tuple[tuple[str, str | None, str], ...] = (
    ("pmtiles.js", "pmtiles", "dist/pmtiles.js"),
    ("protomaps-leaflet.js", "protomaps-leaflet", "dist/protomaps-leaflet.js"),
    ("ruralcov_tiles.js", None, "ruralcov_tiles.js"),
)


def leaflet_dir() -> Path:
    """Folder of the installed Leaflet release files.

    Returns
    -------
    pathlib.Path
        The folder holding ``leaflet.js``, ``leaflet.css`` and ``images/``.

    Raises
    ------
    RuralcovError
        When the package xstatic-leaflet is not installed.
    """
    try:
        import xstatic.pkg.leaflet as xleaflet
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise RuralcovError(
            "the maps need the package xstatic-leaflet (Leaflet's files); install it with "
            "`python -m pip install xstatic-leaflet` or skip maps with --no-maps"
        ) from exc
    return Path(xleaflet.BASE_DIR)


def copy_assets(folder: Path) -> Path:
    """Copy Leaflet and ruralcov's own map script and styles next to the map pages.

    Parameters
    ----------
    folder
        The maps folder (the pages in it load the copies).

    Returns
    -------
    pathlib.Path
        ``folder/assets``.
    """
    target = Path(folder) / ASSET_DIR
    (target / "images").mkdir(parents=True, exist_ok=True)
    src = leaflet_dir()
    for name in ("leaflet.js", "leaflet.css"):
        shutil.copyfile(src / name, target / name)
    for image in sorted((src / "images").glob("*.png")):
        shutil.copyfile(image, target / "images" / image.name)
    templates = resources.files("ruralcov") / "templates"
    for name in _OWN:
        (target / name).write_bytes((templates / name).read_bytes())
    return target


def node_modules() -> Path:
    """The ``node_modules`` folder holding protomaps-leaflet and pmtiles.

    Returns
    -------
    pathlib.Path
        ``$RURALCOV_JS`` when set, else ``js/node_modules`` of the repository.

    Raises
    ------
    RuralcovError
        When the packages are not there.
    """
    folder = Path(os.environ.get("RURALCOV_JS") or Path(__file__).parents[3] / "js"
                  / "node_modules")
    missing = [f"{pkg}/{file}" for _, pkg, file in TILE_SCRIPTS
               if pkg and not (folder / pkg / file).is_file()]
    if missing:
        raise RuralcovError(
            f"the province map is drawn from vector tiles and needs {', '.join(missing)} in "
            f"{folder}: run `make js` (npm ci in js/), or set RURALCOV_JS to a node_modules "
            'folder holding them, or embed the map with [maps] vector_tiles = "never"'
        )
    return folder


def copy_tile_assets(folder: Path) -> Path:
    """Copy the scripts of a page drawn from vector tiles next to it (:data:`TILE_SCRIPTS`).

    Parameters
    ----------
    folder
        The maps folder.

    Returns
    -------
    pathlib.Path
        ``folder/assets``.
    """
    source = node_modules()
    target = Path(folder) / ASSET_DIR
    templates = resources.files("ruralcov") / "templates"
    for name, pkg, file in TILE_SCRIPTS:
        data = (source / pkg / file).read_bytes() if pkg else (templates / file).read_bytes()
        (target / name).write_bytes(data)
    return target


def offline(m: folium.Map, *, tiles: bool = False) -> folium.Map:
    """Make a map load only the local assets (instead of folium's CDN defaults).

    Parameters
    ----------
    m
        A new map, whose page would otherwise load Leaflet, jQuery, Bootstrap and Font
        Awesome from their CDNs.
    tiles
        Load the scripts of a page drawn from vector tiles too (:data:`TILE_SCRIPTS`).

    Returns
    -------
    folium.Map
        ``m``, changed in place.
    """
    m.default_js = [
        ("leaflet", f"{ASSET_DIR}/leaflet.js"),
        ("ruralcov_map", f"{ASSET_DIR}/ruralcov_map.js"),
        *((name, f"{ASSET_DIR}/{name}") for name, _, _ in (TILE_SCRIPTS if tiles else ())),
    ]
    m.default_css = [
        ("leaflet_css", f"{ASSET_DIR}/leaflet.css"),
        ("ruralcov_map_css", f"{ASSET_DIR}/ruralcov_map.css"),
    ]
    return m
