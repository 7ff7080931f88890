"""Regenerate the preview images in this folder from a demo run (see README.md here).

    python maps/gallery.py            # runs `ruralcov demo` into a temporary folder first
    python maps/gallery.py out/demo   # or uses an existing demo run folder (with maps)

Copies the static PNGs of ``<run>/maps/static`` and takes screenshots of the interactive
pages in Debian's headless Chromium (network off): the province map as it opens (county fibre
share), with the village theme, and the county map with the largest fibre gap (the first row of
the report's county table).

The pictures show the register's Chinese names: Chromium draws them with a CJK font found
through fontconfig, and the static PNGs with one of ``ruralcov.maps.static.CJK_FAMILIES``.
Without such a font the names would be empty boxes, so the script stops first and says which
package to install (``make test`` installs Debian's ``fonts-noto-cjk``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ruralcov.maps.assets import CHROMIUM, CHROMIUM_ARGS
from ruralcov.maps.static import FALLBACK_FAMILY, font_families
from ruralcov.report.html import county_file, ranked_areas

HERE = Path(__file__).resolve().parent
ARGS = list(CHROMIUM_ARGS)
FRAME = "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
INSTALL = ("install a CJK font first: Debian/Ubuntu `apt-get install fonts-noto-cjk` (or "
           "fonts-wqy-microhei); Windows has Microsoft YaHei, macOS PingFang SC")


def check_cjk_fonts() -> None:
    """Stop unless both Chromium (fontconfig) and matplotlib have a font for Chinese names."""
    fc_list = shutil.which("fc-list")
    found = fc_list and subprocess.run([fc_list, ":lang=zh", "family"], capture_output=True,
                                       text=True, check=False).stdout.strip()
    if not found:
        sys.exit(f"gallery: Chromium has no font for Chinese names; {INSTALL}")
    if font_families() == (FALLBACK_FAMILY,):
        sys.exit(f"gallery: matplotlib has no font for Chinese names; {INSTALL}")


def main() -> None:
    import pandas as pd
    from playwright.sync_api import sync_playwright

    check_cjk_fonts()
    if len(sys.argv) > 1:
        run = Path(sys.argv[1])
    else:
        run = Path(tempfile.mkdtemp(prefix="rc-gallery-")) / "demo"
        subprocess.run(
            [sys.executable, "-m", "ruralcov.cli", "-q", "demo", "--out", str(run)], check=True
        )
    maps = run / "maps"
    for png in sorted((maps / "static").glob("*.png")):
        shutil.copyfile(png, HERE / png.name)
    county = pd.read_csv(
        run / "tables" / "summary_county.csv", dtype={"code": str}, encoding="utf-8-sig"
    )
    ranked, _ = ranked_areas(county)  # areas without an outline have no county map
    shots = [
        ("province.html", "province_county_fibre_share.png", None),
        ("province.html", "province_villages.png", "Villages: fibre and speed class"),
        (county_file(ranked["code"].iloc[0]), "county_largest_gap.png", None),
    ]
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
        for page_name, out, theme in shots:
            page = ctx.new_page()
            page.goto((maps / page_name).resolve().as_uri(), wait_until="load")
            page.evaluate(FRAME)
            if theme:
                page.locator(".leaflet-control-layers label", has_text=theme).click()
                page.evaluate(FRAME)
            page.screenshot(path=str(HERE / out))
            page.close()
        ctx.close()
    print(f"previews written to {HERE}")


if __name__ == "__main__":
    main()
