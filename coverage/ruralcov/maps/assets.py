"""The files every map page loads, copied next to the pages so that nothing comes from the network.

Leaflet's JavaScript, CSS and control images come from the ``xstatic-leaflet`` package (plain
Leaflet release files, installed with ruralcov from PyPI; nothing third-party is committed
here). ruralcov's own script and style sheet (search box, full-screen button, legend, layer
decoding) come from ``ruralcov/templates``. Folium's default CDN references (Leaflet, jQuery,
Bootstrap, Font Awesome) are replaced on every map by :func:`offline`.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

import folium

from ruralcov.errors import RuralcovError

__all__ = ["ASSET_DIR", "CHROMIUM", "CHROMIUM_ARGS", "copy_assets", "leaflet_dir", "offline"]

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


def offline(m: folium.Map) -> folium.Map:
    """Make a map load only the local assets (instead of folium's CDN defaults).

    Parameters
    ----------
    m
        A new map, whose page would otherwise load Leaflet, jQuery, Bootstrap and Font
        Awesome from their CDNs.

    Returns
    -------
    folium.Map
        ``m``, changed in place.
    """
    m.default_js = [
        ("leaflet", f"{ASSET_DIR}/leaflet.js"),
        ("ruralcov_map", f"{ASSET_DIR}/ruralcov_map.js"),
    ]
    m.default_css = [
        ("leaflet_css", f"{ASSET_DIR}/leaflet.css"),
        ("ruralcov_map_css", f"{ASSET_DIR}/ruralcov_map.css"),
    ]
    return m
