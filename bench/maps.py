"""Province map size and draw time against ``geopandas.GeoDataFrame.explore()`` (not a test).

Both pages show the same village polygons of a run folder (the Shanxi demo by default) and
are opened side by side in the same headless Debian Chromium, network off (every request that
is not ``file:`` is aborted). explore()'s CDN scripts are replaced by the same local Leaflet
files ruralcov copies (jQuery, Bootstrap and Font Awesome, which its page does not need to
draw, are removed), so both pages load only local files.

Draw time is ``performance.now()`` at the second animation frame after the ``load`` event,
i.e. the time from navigation start until the first frame with everything drawn has been
painted. For ruralcov it is measured twice: the page as it opens (county choropleth), and
"villages": the open page plus switching to the village layer and waiting for its frame —
the like-for-like comparison with explore(), which draws every village polygon at load.
The median of ``--repeat`` loads in fresh pages is reported; bytes are the HTML file sizes
(Leaflet's own JS/CSS is loaded from files by both and not counted).

Usage::

    python bench/maps.py                 # runs the demo into a temporary folder first
    python bench/maps.py out/demo        # an existing run folder
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ruralcov.maps.assets import CHROMIUM, CHROMIUM_ARGS

ARGS = list(CHROMIUM_ARGS)
FRAME = (
    "new Promise(r => requestAnimationFrame(() => requestAnimationFrame("
    "() => r(performance.now()))))"
)

#: What a click on the "Villages" radio button does: the other theme off, the villages on.
SWITCH = """(() => {
  const m = Object.values(window).find(v => v instanceof L.Map);
  for (const g of Object.values(ruralcov.layers)) {
    if (g.rc.base && m.hasLayer(g)) m.removeLayer(g);
  }
  m.addLayer(ruralcov.layers.villages);
})()"""


def explore_page(villages, folder: Path, assets: Path) -> Path:
    """explore() of the villages with geometry, its CDN references swapped for local files."""
    drawn = villages[villages.geometry.notna() & ~villages.geometry.is_empty]
    m = drawn.explore(tiles=None)
    html = m.get_root().render()
    rel = Path("..") / assets.parent.name / assets.name
    html = re.sub(
        r'<script src="https://cdn[^"]*leaflet\.js"></script>',
        f'<script src="{rel.as_posix()}/leaflet.js"></script>',
        html,
    )
    html = re.sub(
        r'<link rel="stylesheet" href="https://cdn[^"]*leaflet\.css"/>',
        f'<link rel="stylesheet" href="{rel.as_posix()}/leaflet.css"/>',
        html,
    )
    html = re.sub(r'<script src="https?://[^"]*"></script>', "", html)
    html = re.sub(r'<link rel="stylesheet" href="https?://[^"]*"/>', "", html)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "explore.html"
    path.write_text(html, encoding="utf-8")
    return path


def measure(paths: dict[str, Path], repeat: int) -> dict[str, dict[str, float]]:
    from playwright.sync_api import sync_playwright

    out: dict[str, dict[str, list[float]]] = {}
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            tempfile.mkdtemp(prefix="rc-chromium-"),
            executable_path=CHROMIUM,
            headless=True,
            args=ARGS,
            viewport={"width": 1280, "height": 900},
        )
        ctx.route(
            "**/*", lambda r: r.continue_() if r.request.url.startswith("file:") else r.abort()
        )
        for _ in range(repeat):
            for name, path in paths.items():
                page = ctx.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
                page.goto(path.resolve().as_uri(), wait_until="load", timeout=180_000)
                t = page.evaluate(FRAME)
                rec = out.setdefault(name, {"draw_ms": [], "villages_ms": []})
                rec["draw_ms"].append(t)
                if name == "ruralcov":
                    t0 = page.evaluate("performance.now()")
                    page.evaluate(SWITCH)
                    t1 = page.evaluate(FRAME)
                    rec["villages_ms"].append(t + (t1 - t0))
                    rec.setdefault("drawn", []).append(page.evaluate("ruralcov.drawn('villages')"))
                else:
                    rec["villages_ms"].append(t)
                if errors:
                    raise SystemExit(f"{name}: page errors {errors}")
                page.close()
        ctx.close()
    return {name: {k: statistics.median(v) for k, v in rec.items()} for name, rec in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", type=Path, help="run folder (default: run the demo)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import geopandas as gpd

    from ruralcov.maps import write_maps
    from ruralcov.runfolder import read_run

    work = Path(tempfile.mkdtemp(prefix="rc-bench-maps-"))
    run = args.run
    if run is None:
        run = work / "demo"
        subprocess.run(
            [sys.executable, "-m", "ruralcov.cli", "-q", "demo", "--out", str(run), "--no-maps"],
            check=True,
        )
    result = read_run(run)
    t = time.perf_counter()
    write_maps(result, work / "maps")
    write_s = time.perf_counter() - t
    ours = work / "maps" / "province.html"
    villages = gpd.read_parquet(run / "villages.parquet")
    t = time.perf_counter()
    theirs = explore_page(villages, work / "explore", work / "maps" / "assets")
    explore_s = time.perf_counter() - t
    times = measure({"ruralcov": ours, "explore": theirs}, args.repeat)
    b_ours, b_theirs = ours.stat().st_size, theirs.stat().st_size
    n = int(villages.geometry.notna().sum())
    print(f"villages with geometry: {n:,}")
    print(
        f"bytes     ruralcov province.html {b_ours:>12,}   explore() {b_theirs:>12,}   "
        f"ratio {b_ours / b_theirs:.3f}  (target <= 0.333)"
    )
    r, e = times["ruralcov"], times["explore"]
    print(f"draw ms   ruralcov as opened   {r['draw_ms']:>9.0f}   explore() {e['draw_ms']:>9.0f}")
    print(
        f"draw ms   ruralcov + villages  {r['villages_ms']:>9.0f}   explore() "
        f"{e['villages_ms']:>9.0f}   ratio {r['villages_ms'] / e['villages_ms']:.3f} "
        "(target <= 1)"
    )
    print(f"village features drawn by ruralcov: {int(r['drawn']):,}")
    print(
        f"write seconds: ruralcov write_maps (all {len(list((work / 'maps').glob('*.html')))}"
        f" pages + PNGs) {write_s:.1f}; explore() page {explore_s:.1f}"
    )
    print(
        json.dumps(
            {
                "villages": n,
                "bytes_ruralcov": b_ours,
                "bytes_explore": b_theirs,
                "draw_ms": r["draw_ms"],
                "villages_ms": r["villages_ms"],
                "explore_ms": e["draw_ms"],
                "write_s": round(write_s, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
