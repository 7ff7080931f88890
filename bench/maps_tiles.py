"""Open time of a province page drawn from vector tiles, and its response when zoomed to a
county (not a test: the tests check what is drawn, never how fast).

The run folder's maps are redrawn with ``[maps] vector_tiles = "always"`` into a temporary
folder (the run folder is not changed; ``--keep DIR`` keeps them in DIR instead), or, with
``--as-is``, the run folder's own ``maps/province.html`` is measured as it is (it must be drawn
from tiles: a national run past ``[maps] max_page_mb``). The page is opened from ``file://`` in
headless Debian Chromium, network off (every request that is not ``file:`` is aborted).
Reported, median of ``--repeat`` fresh pages:

- ``open_ms``: ``performance.now()`` at the second animation frame after ``load`` (the
  county theme drawn); the issue's goal for the national page is 3,000 ms;
- ``county_ms``: switching to the villages and zooming to the county with the most villages,
  until every tile in view is drawn (the tile layer's ``load`` event) and a frame painted;
- ``popup_ms``: a click on a village of that county until its evidence popup shows;
- ``frame_ms``: the longest of 20 animation frames while panning that county (responsive:
  under 100 ms).

Also reported: ``write_maps_s`` (not with ``--as-is``), the page's bytes, the bytes of
``tiles/`` and of the whole maps folder.

Usage::

    python bench/maps_tiles.py out/demo
    python bench/maps_tiles.py out/demo --keep /tmp/demo-tiled-maps
    python bench/maps_tiles.py out/china-demo --as-is     # the national run's own page
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ruralcov.maps import write_maps
from ruralcov.maps.assets import CHROMIUM, CHROMIUM_ARGS
from ruralcov.runfolder import read_run

MAP = "Object.values(window).find(v => v instanceof L.Map)"
FRAME = ("new Promise(r => requestAnimationFrame(() => requestAnimationFrame("
         "() => r(performance.now()))))")


def _zoom(code: str) -> str:
    return f"""new Promise(done => {{
      const m = {MAP}, g = ruralcov.layers.county_fibre_share.ensure(), d = g.rc;
      const codes = d.cols[d.title[1]];
      const i = codes.v.findIndex((v, k) => ruralcov.value(codes, k) === {code!r});
      const v = ruralcov.layers.villages, t0 = performance.now();
      v.once("load", () => requestAnimationFrame(() => done(performance.now() - t0)));
      m.removeLayer(ruralcov.layers.county_fibre_share);
      m.addLayer(v);
      m.fitBounds(g.getLayers()[i].getBounds(), {{animate: false}});
    }})"""


PAN = f"""new Promise(done => {{
  const m = {MAP}; let last = performance.now(), worst = 0, n = 0;
  function step() {{
    const now = performance.now(); worst = Math.max(worst, now - last); last = now;
    if (++n > 20) return done(worst);
    m.panBy([40, 25], {{animate: false}});
    requestAnimationFrame(step);
  }}
  requestAnimationFrame(step);
}})"""


def measure(page_path: Path, county: str, point: tuple[float, float], repeat: int) -> dict:
    from playwright.sync_api import sync_playwright

    runs: dict[str, list[float]] = {"open_ms": [], "county_ms": [], "popup_ms": [],
                                     "frame_ms": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=list(CHROMIUM_ARGS))
        for _ in range(repeat):
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:")
                       else r.abort())
            page.goto(page_path.resolve().as_uri(), wait_until="load")
            runs["open_ms"].append(page.evaluate(FRAME))
            runs["county_ms"].append(page.evaluate(_zoom(county)))
            xy = page.evaluate(f"(() => {{ const m = {MAP}, r = m.getContainer()"
                               f".getBoundingClientRect(), q = m.latLngToContainerPoint("
                               f"{list(point)}); return [q.x + r.left, q.y + r.top]; }})()")
            t0 = time.perf_counter()
            page.mouse.click(*xy)
            page.locator(".leaflet-popup-content h4").wait_for()
            runs["popup_ms"].append(1000 * (time.perf_counter() - t0))
            runs["frame_ms"].append(page.evaluate(PAN))
            page.close()
        browser.close()
    return {k: round(statistics.median(v), 1) for k, v in runs.items()}


def _sizes(folder: Path) -> dict[str, int]:
    def total(d: Path) -> int:
        return sum(f.stat().st_size for f in d.rglob("*") if f.is_file())

    return {"page_bytes": (folder / "province.html").stat().st_size,
            "tiles_bytes": total(folder / "tiles"), "maps_bytes": total(folder)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run folder (ruralcov demo --out ...)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--as-is", action="store_true",
                        help="measure RUN/maps as they are, without drawing them again")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="draw the maps into DIR and keep them (default: a temporary folder)")
    args = parser.parse_args(argv)
    if args.as_is and args.keep:
        parser.error("--as-is measures RUN/maps; --keep is for maps drawn again")
    if args.as_is:
        import geopandas as gpd

        folder = args.run / "maps"
        if not (folder / "tiles" / "province.pmtiles").is_file():
            parser.error(f"{folder}/province.html is not drawn from vector tiles")
        villages = gpd.read_parquet(args.run / "villages.parquet",
                                    columns=["county_code", "has_geometry", "geometry"])
    else:
        result = read_run(args.run)
        maps = dataclasses.replace(result.config.maps, vector_tiles="always")
        result = dataclasses.replace(result, config=dataclasses.replace(result.config, maps=maps))
        villages = result.villages
    v = villages[villages["has_geometry"]]
    county = v["county_code"].value_counts().index[0]
    inside = v[v["county_code"] == county].geometry.iloc[0].representative_point()
    report: dict = {"villages_drawn": len(v), "county": county}
    with tempfile.TemporaryDirectory(prefix="rc-tiles-") as tmp:
        if not args.as_is:
            folder = args.keep or Path(tmp) / "maps"
            t0 = time.perf_counter()
            write_maps(result, folder)
            report["write_maps_s"] = round(time.perf_counter() - t0, 1)
        report.update(_sizes(folder))
        report.update(measure(folder / "province.html", county, (inside.y, inside.x),
                              args.repeat))
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
