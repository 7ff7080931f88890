"""The map pages in a real browser: Debian's Chromium driven by Playwright, network off.

Every request that is not ``file:`` is aborted and recorded (a page that tries the network
fails the test). Checked on the small world (answers known by construction), on the same world
with hostile village names, and (slow) on the demo: no console errors, one drawn feature per
village with geometry, tooltips and popups with the right evidence, layers that hide when
switched off, search, and names that stay text and run nothing.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import playwright.sync_api as playwright_api
import pytest
from playwright.sync_api import expect

from mapworld import (
    HOSTILE,
    QUOTES,
    XSS,
    hostile_result,
    layers,
    legend_from_csv,
    small_plan,
    with_maps,
)
from ruralcov.maps import write_maps
from ruralcov.maps.assets import CHROMIUM, CHROMIUM_ARGS
from ruralcov.pipeline import CoverageResult

# `make test` installs Debian's chromium and playwright: a missing one fails, never skips.
ARGS = list(CHROMIUM_ARGS)
MAP = "Object.values(window).find(v => v instanceof L.Map)"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    profile = tempfile.mkdtemp(prefix="rc-chromium-")
    with playwright_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=ARGS,
            viewport={"width": 1200, "height": 900},
        )
        ctx.blocked = []  # type: ignore[attr-defined]

        def route(r: Any) -> None:
            if r.request.url.startswith("file:"):
                r.continue_()
            else:
                ctx.blocked.append(r.request.url)  # type: ignore[attr-defined]
                r.abort()

        ctx.route("**/*", route)
        yield ctx
        ctx.close()
    shutil.rmtree(profile, ignore_errors=True)


class Page:
    """A map page opened in the browser, with its console errors and dialogs recorded."""

    def __init__(self, browser: Any, path: Path) -> None:
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page = browser.new_page()
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.goto(path.resolve().as_uri(), wait_until="load")
        self.frame()
        self.blocked = browser.blocked

    def js(self, script: str) -> Any:
        return self.page.evaluate(script)

    def frame(self) -> None:
        self.js("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")

    def theme(self, label: str) -> None:
        """Click a radio button or checkbox of the layer control by its label."""
        self.page.locator(".leaflet-control-layers label", has_text=label).click()
        self.frame()

    def centre_of(self, layer: str, code: str) -> tuple[float, float]:
        """Page pixel of the middle of the feature of ``layer`` whose code is ``code``."""
        return tuple(
            self.js(
                f"""(() => {{
          const m = {MAP}, g = ruralcov.layers[{layer!r}].ensure(), d = g.rc;
          const codes = d.cols[d.title[1]];
          const i = codes.v.findIndex((v, k) => ruralcov.value(codes, k) === {code!r});
          const p = m.latLngToContainerPoint(g.getLayers()[i].getBounds().getCenter());
          const r = m.getContainer().getBoundingClientRect();
          return [p.x + r.left, p.y + r.top];
        }})()"""
            )
        )

    def close(self) -> None:
        self.page.close()


@pytest.fixture(scope="module")
def small_maps(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import build_small_result

    folder = tmp_path_factory.mktemp("browser_maps")
    result = build_small_result(folder / "inputs")
    write_maps(result, folder / "maps", plan=small_plan())
    write_maps(hostile_result(result), folder / "hostile")
    return folder


def test_province_map(browser: Any, small_maps: Path, small_result: CoverageResult) -> None:
    page = Page(browser, small_maps / "maps" / "province.html")
    assert page.errors == [] and page.blocked == []
    assert page.js("ruralcov.drawn('county_fibre_share')") == 2
    assert page.js("ruralcov.drawn('villages')") == 0
    # the legend names the target and the provenance
    legend = page.page.locator(".rc-legend").inner_text()
    assert "98%" in legend and small_result.config.run.provenance in legend

    page.theme("Villages: fibre and speed class")
    n_geometry = int(small_result.villages["has_geometry"].sum())
    assert page.js("ruralcov.drawn('villages')") == n_geometry == 8
    assert page.js("ruralcov.drawn('county_fibre_share')") == 0  # a radio theme replaces another
    legend = page.page.locator(".rc-legend").inner_text()
    assert "no fibre (gap) (2)" in legend

    # hover 西关村委会: its tooltip; click: the evidence
    x, y = page.centre_of("villages", "140105001002")
    page.page.mouse.move(x, y)
    tip = page.page.locator(".leaflet-tooltip").inner_text()
    assert "西关村委会 (140105001002)" in tip and "fibre only: speed below target" in tip
    page.page.mouse.click(x, y)
    popup = page.page.locator(".leaflet-popup-content").inner_text()
    for text in (
        "access_point_inside",
        "AP-2",
        "8.0",
        f"{8 * 0.8123456:.1f} – {8 * 1.2345678:.1f}",
        "东街街道",
        "小店区",
    ):
        assert text in popup, text
    page.js(f"{MAP}.closePopup()")

    # switching the county boundaries off hides them
    assert page.js("ruralcov.drawn('outlines')") == 2
    page.theme("County boundaries")
    assert page.js("ruralcov.drawn('outlines')") == 0
    assert page.page.locator(".leaflet-control-layers input[type=checkbox]").is_checked() is False
    assert page.errors == [] and page.blocked == []
    page.close()


def test_county_popup_links_to_county_map(browser: Any, small_maps: Path) -> None:
    page = Page(browser, small_maps / "maps" / "province.html")
    x, y = page.centre_of("county_fibre_share", "140106")
    page.page.mouse.click(x, y)
    popup = page.page.locator(".leaflet-popup-content")
    assert "gap (villages)" in popup.inner_text()
    link = popup.locator("a.rc-link")
    assert link.get_attribute("href") == "county_140106.html"
    link.click()
    page.page.wait_for_load_state("load")
    assert page.page.url.endswith("county_140106.html")
    assert page.errors == [] and page.blocked == []
    page.close()


def test_search_finds_a_village(browser: Any, small_maps: Path) -> None:
    page = Page(browser, small_maps / "maps" / "province.html")
    page.page.locator(".rc-search input").fill("140106002002")
    result = page.page.locator(".rc-results li").first
    assert result.inner_text() == "下村村委会 (140106002002)"
    result.click()
    page.frame()
    popup = page.page.locator(".leaflet-popup-content").inner_text()
    assert "下村村委会 (140106002002)" in popup
    assert "fibre route nearby\tyes" in popup and "R-1" in popup
    assert page.js("ruralcov.drawn('villages')") == 8
    assert page.errors == []
    page.close()


def test_county_map_with_plan(browser: Any, small_maps: Path) -> None:
    page = Page(browser, small_maps / "maps" / "county_140105.html")
    assert page.errors == [] and page.blocked == []
    assert page.js("ruralcov.drawn('villages')") == 5  # 东关 西关 南街 北庄 南庄
    assert page.js("ruralcov.drawn('fibre_points')") == 2
    assert page.js("ruralcov.drawn('plan_links')") == 1
    assert page.page.locator(".rc-num").all_inner_texts() == ["1"]
    page.theme("Fibre access points")
    assert page.js("ruralcov.drawn('fibre_points')") == 0
    page.close()


def test_hostile_names_stay_text(browser: Any, small_maps: Path) -> None:
    page = Page(browser, small_maps / "hostile" / "province.html")
    page.theme("Villages: fibre and speed class")
    for code, name in HOSTILE.items():
        x, y = page.centre_of("villages", code)
        page.page.mouse.move(x, y)
        assert page.page.locator(".leaflet-tooltip strong").inner_text() == f"{name} ({code})"
        page.page.mouse.click(x, y)
        content = page.page.locator(".leaflet-popup-content")
        # The popup opens asynchronously: wait for this village's heading, as a user would.
        expect(content.locator("h4")).to_have_text(f"{name} ({code})")
        assert XSS in content.inner_text()  # the township name, shown as text
        page.js(f"{MAP}.closePopup()")
        expect(content).to_have_count(0)
    page.page.locator(".rc-search input").fill("引号")
    assert page.page.locator(".rc-results li").first.inner_text() == f"{QUOTES} (140105001002)"
    page.page.locator(".rc-search input").fill("<img")
    assert page.page.locator(".rc-results li").first.inner_text() == f"{XSS} (140105001001)"
    page.page.wait_for_timeout(200)  # an injected onerror would have fired by now
    assert page.js("document.querySelectorAll('img[src=x]').length") == 0
    assert page.dialogs == [] and page.errors == []
    page.close()


@pytest.mark.slow
def test_demo_province_map(browser: Any, demo_run: Path) -> None:
    import geopandas as gpd

    out = demo_run
    villages = gpd.read_parquet(out / "villages.parquet")
    page = Page(browser, out / "maps" / "province.html")
    assert page.errors == [] and page.blocked == []
    page.theme("Villages: fibre and speed class")
    assert page.js("ruralcov.drawn('villages')") == int(villages["has_geometry"].sum())
    assert page.js("ruralcov.drawn('county_fibre_share')") == 0
    # the legend as drawn: every five-way class with its count from tables/villages.csv
    legend = page.page.locator(".rc-legend").inner_text()
    for label, _, n in legend_from_csv(out, five_way=True):
        assert f"{label} ({n:,})" in legend, (label, n, legend)
    page.theme("County: fibre share")
    assert (
        page.js("ruralcov.drawn('county_fibre_share')")
        == villages.loc[villages["has_geometry"], "county_code"].nunique()
    )
    assert page.errors == [] and page.blocked == []
    page.close()


# --- the province page drawn from vector tiles ([maps] vector_tiles) -------------------------


@pytest.fixture(scope="module")
def tiled_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CoverageResult]:
    """A run folder of the small world whose province page is drawn from vector tiles."""
    from conftest import build_small_result
    from ruralcov.report import write_run

    folder = tmp_path_factory.mktemp("tiled_run")
    result = with_maps(build_small_result(folder / "inputs"), vector_tiles="always")
    return write_run(result, folder / "run"), result


def _inside(result: CoverageResult, code: str) -> tuple[float, float]:
    """(lat, lon) of a point inside a village's polygon, from the world's own geometry."""
    v = result.villages.set_index("village_code")
    p = v.loc[code, "geometry"].representative_point()
    return p.y, p.x


def _pixel(page: Page, latlng: tuple[float, float]) -> tuple[float, float]:
    return tuple(page.js(f"""(() => {{
      const m = {MAP}, p = m.latLngToContainerPoint({list(latlng)});
      const r = m.getContainer().getBoundingClientRect();
      return [p.x + r.left, p.y + r.top];
    }})()"""))


def _zoom_to_county(page: Page, code: str) -> None:
    page.js(f"""(() => {{
      const g = ruralcov.layers.county_fibre_share.ensure(), d = g.rc;
      const codes = d.cols[d.title[1]];
      const i = codes.v.findIndex((v, k) => ruralcov.value(codes, k) === {code!r});
      {MAP}.fitBounds(g.getLayers()[i].getBounds(), {{animate: false}});
    }})()""")
    page.frame()


def test_tiled_province_map(browser: Any, tiled_run: tuple[Path, CoverageResult],
                            small_maps: Path) -> None:
    run, result = tiled_run
    page = Page(browser, run / "maps" / "province.html")
    assert page.errors == [] and page.blocked == []
    assert page.js("ruralcov.drawn('county_fibre_share')") == 2  # the counties stay embedded
    assert page.js("ruralcov.drawn('outlines')") == 2
    # one copy of the counties on the page: the other county theme and the outlines take
    # theirs from it, and get what the embedded page of the same world carries
    embedded = layers((small_maps / "maps" / "province.html").read_text(encoding="utf-8"))
    for layer_id in ("county_speed_share", "outlines"):
        assert page.js(f"ruralcov.layers[{layer_id!r}].rc.geom") == embedded[layer_id]["geom"]
    page.theme("Villages: fibre and speed class")
    # the legend's counts are those of tables/villages.csv
    legend = page.page.locator(".rc-legend").inner_text()
    for label, _, n in legend_from_csv(run, five_way=False):
        assert f"{label} ({n:,})" in legend, (label, n, legend)
    # zoom to 小店区: its villages come from the tiles
    _zoom_to_county(page, "140105")
    page.page.wait_for_function("ruralcov.tiledFeatures('villages') >= 5")
    # hover 西关村委会: its tooltip; click: its evidence, read from evidence/<county>.js
    x, y = _pixel(page, _inside(result, "140105001002"))
    page.page.mouse.move(x, y)
    expect(page.page.locator(".leaflet-tooltip")).to_contain_text("西关村委会 (140105001002)")
    assert "fibre only: speed below target" in page.page.locator(".leaflet-tooltip").inner_text()
    page.page.mouse.click(x, y)
    popup = page.page.locator(".leaflet-popup-content")
    expect(popup.locator("h4")).to_have_text("西关村委会 (140105001002)")
    for text in ("access_point_inside", "AP-2", "8.0",
                 f"{8 * 0.8123456:.1f} – {8 * 1.2345678:.1f}", "东街街道", "小店区"):
        assert text in popup.inner_text(), text
    # a neighbour gives its own evidence: 北庄村委会 has no fibre
    page.js(f"void {MAP}.closePopup()")
    x, y = _pixel(page, _inside(result, "140105002001"))
    page.page.mouse.click(x, y)
    expect(popup.locator("h4")).to_have_text("北庄村委会 (140105002001)")
    assert "no fibre (gap)" in popup.inner_text()
    assert page.errors == [] and page.blocked == []
    page.close()


def test_tiled_township_popup(browser: Any, tiled_run: tuple[Path, CoverageResult]) -> None:
    run, result = tiled_run
    page = Page(browser, run / "maps" / "province.html")
    page.theme("Township: fibre share")
    _zoom_to_county(page, "140105")
    page.page.wait_for_function("ruralcov.tiledFeatures('township_fibre_share') >= 2")
    # 北营镇: 1 of its 2 villages on fibre (北庄村委会 has none)
    x, y = _pixel(page, _inside(result, "140105002001"))
    page.page.mouse.click(x, y)
    popup = page.page.locator(".leaflet-popup-content")
    expect(popup.locator("h4")).to_have_text("北营镇 (140105002)")
    text = popup.inner_text()
    assert "fibre share\t50.0%" in text and "gap (villages)\t1" in text
    assert page.errors == [] and page.blocked == []
    page.close()


def test_tiled_search_finds_a_village(browser: Any,
                                      tiled_run: tuple[Path, CoverageResult]) -> None:
    run, _ = tiled_run
    page = Page(browser, run / "maps" / "province.html")
    page.page.locator(".rc-search input").fill("140106002002")
    result = page.page.locator(".rc-results li").first
    expect(result).to_have_text("下村村委会 (140106002002)")  # once search.js is read
    result.click()
    popup = page.page.locator(".leaflet-popup-content")
    expect(popup.locator("h4")).to_have_text("下村村委会 (140106002002)")
    assert "fibre route nearby\tyes" in popup.inner_text() and "R-1" in popup.inner_text()
    assert page.js("ruralcov.layers.villages._map !== undefined && "
                   f"{MAP}.hasLayer(ruralcov.layers.villages)")
    assert page.errors == [] and page.blocked == []
    page.close()


@pytest.mark.slow
def _villages_theme(browser: Any, html: Path, run: Path) -> Page:
    """A tiled page opened offline without errors, its villages theme on and its legend
    counting the run's tables/villages.csv."""
    page = Page(browser, html)
    assert page.errors == [] and page.blocked == []
    page.theme("Villages: fibre and speed class")
    legend = page.page.locator(".rc-legend").inner_text()
    for label, _, n in legend_from_csv(run, five_way=True):
        assert f"{label} ({n:,})" in legend, (label, n, legend)
    return page


def test_demo_tiled_province_map(browser: Any, demo_run: Path, tmp_path: Path) -> None:
    """The demo's province page forced onto vector tiles: it opens, a county's villages come
    from the tiles, a click shows the right village, the legend counts tables/villages.csv."""
    from ruralcov.runfolder import read_run

    result = read_run(demo_run)
    write_maps(with_maps(result, vector_tiles="always"), tmp_path / "maps")
    page = _villages_theme(browser, tmp_path / "maps" / "province.html", demo_run)
    v = result.villages[result.villages["has_geometry"]]
    county = v["county_code"].value_counts().index[0]
    _zoom_to_county(page, county)
    page.page.wait_for_function("ruralcov.tiledFeatures('villages') > 0")
    mine = v[v["county_code"] == county]
    for k in (0, len(mine) // 2, len(mine) - 1):
        row = mine.iloc[k]
        p = row.geometry.representative_point()
        page.js(f"void {MAP}.setView([{p.y}, {p.x}], 14, {{animate: false}})")
        page.frame()
        page.page.mouse.click(*_pixel(page, (p.y, p.x)))
        popup = page.page.locator(".leaflet-popup-content h4")
        expect(popup).to_have_text(f"{row['village_name']} ({row['village_code']})")
        page.js(f"void {MAP}.closePopup()")
    assert page.errors == [] and page.blocked == []
    page.close()


# --- the national world's page, drawn from vector tiles ---------------------------------------

#: What a village popup shows, label by label, from the row of ``tables/villages.csv`` (texts
#: as the CSV holds them): the column and how the page writes it (README: the map pages).
POPUP_FIELDS: dict[str, tuple[str, str | None]] = {
    "name": ("village_name", None), "code": ("village_code", None), "kind": ("kind", None),
    "township": ("township_name", None), "county": ("county_name", None),
    "fibre": ("fibre", "yes/no"), "fibre basis": ("fibre_basis", None),
    "fibre access point": ("fibre_asset_id", None),
    "distance to it (m)": ("fibre_distance_m", ",.0f"),
    "fibre route nearby": ("fibre_nearby", "yes/no"), "nearby route": ("fibre_route_id", None),
    "nearest access point": ("nearest_asset_id", None),
    "distance to nearest (m)": ("nearest_asset_m", ",.0f"),
    "speed tests": ("tests", ",d"), "devices": ("devices", ",d"),
    "median download (Mbps)": ("download_median_mbps", ".1f"),
    "95 % interval (Mbps)": ("download_ci_low_mbps", "interval"),
    "median upload (Mbps)": ("upload_median_mbps", ".1f"),
    "median latency (ms)": ("latency_median_ms", ".0f"),
    "tests at target": ("share_tests_at_target", ".0%"),
    "target (Mbps)": ("download_target_mbps", "g"), "speed class": ("speed_class", None),
    "speed class by period": ("speed_trend", None),
}


def _popup_rows(row: Any) -> dict[str, str]:
    """The popup table a village's row of villages.csv must give (``–`` for no value)."""
    out = {}
    for label, (col, how) in POPUP_FIELDS.items():
        if col not in row.index:
            continue
        text = row[col]
        if text == "":
            out[label] = "–"
        elif how == "yes/no":
            out[label] = {"true": "yes", "false": "no"}[text.lower()]
        elif how == "interval":
            low, high = row["download_ci_low_mbps"], row["download_ci_high_mbps"]
            out[label] = "–" if high == "" else f"{float(low):.1f} – {float(high):.1f}"
        elif how == ",d":
            out[label] = f"{int(float(text)):,d}"
        elif how is not None:
            out[label] = format(float(text), how)
        else:
            out[label] = text
    return out


def _popup_shown(page: Page) -> dict[str, str]:
    return dict(page.js("[...document.querySelectorAll('.leaflet-popup-content tr')]"
                        ".map(tr => [tr.cells[0].textContent, tr.cells[1].textContent])"))


@pytest.fixture(scope="module")
def national_tiled_run(national_worlds: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run folder of the three-province national world, its page drawn from tiles."""
    from conftest import NATIONAL_PROVINCES
    from ruralcov.report import write_run

    result = national_worlds[NATIONAL_PROVINCES][1]
    result = with_maps(result, enabled=True, vector_tiles="always")
    return write_run(result, tmp_path_factory.mktemp("national_map") / "run")


@pytest.mark.slow
def test_national_map_from_tiles(browser: Any, national_tiled_run: Path,
                                 national_worlds: dict) -> None:
    """Tibet, Qinghai and Ningxia on one page from file://, network off: it opens, the legend
    counts tables/villages.csv, search zooms to a village of a county and shows its row,
    the county's villages come from the tiles and a click shows the village under it."""
    import geopandas as gpd
    import pandas as pd
    import shapely

    from conftest import NATIONAL_PROVINCES

    run = national_tiled_run
    assert (run / "maps" / "tiles" / "province.pmtiles").is_file()
    table = pd.read_csv(run / "tables" / "villages.csv", dtype=str, keep_default_na=False,
                        encoding="utf-8-sig").set_index("village_code", drop=False)
    polygons = gpd.read_file(national_worlds[NATIONAL_PROVINCES][0] / "village_polygons.gpkg",
                             layer="villages").to_crs("EPSG:4326").set_index("code")
    assert set(table["province_code"]) == set(NATIONAL_PROVINCES)
    page = _villages_theme(browser, run / "maps" / "province.html", run)

    # the county with the most villages drawn; search finds one of them, zooms, shows its row
    drawn = table[table["has_geometry"].str.lower() == "true"]
    county = drawn["county_code"].value_counts().index[0]
    mine = drawn[drawn["county_code"] == county]
    first = mine.iloc[len(mine) // 2]
    page.page.locator(".rc-search input").fill(first["village_code"])
    hit = page.page.locator(".rc-results li").first
    expect(hit).to_have_text(f"{first['village_name']} ({first['village_code']})")
    hit.click()
    popup = page.page.locator(".leaflet-popup-content")
    expect(popup.locator("h4")).to_have_text(f"{first['village_name']} ({first['village_code']})")
    assert _popup_shown(page) == _popup_rows(first)
    page.js(f"void {MAP}.closePopup()")

    # the whole county in view: its villages from the tiles; a click at the middle of the
    # largest village's inscribed circle (its polygon from the inputs) shows its row
    _zoom_to_county(page, county)
    page.page.wait_for_function("ruralcov.tiledFeatures('villages') > 0")
    theirs = polygons.loc[mine.index[mine["kind"] == "village"]].geometry
    largest = theirs.index[shapely.area(theirs.to_numpy()).argmax()]  # in square degrees
    x, y = shapely.maximum_inscribed_circle(polygons.loc[largest].geometry).coords[0]
    page.page.mouse.click(*_pixel(page, (y, x)))
    row = table.loc[largest]
    expect(popup.locator("h4")).to_have_text(f"{row['village_name']} ({row['village_code']})")
    assert _popup_shown(page) == _popup_rows(row)
    assert page.errors == [] and page.blocked == []
    page.close()


# --- report.html ---------------------------------------------------------------------------


def test_report_county_row_opens_its_map(browser: Any, small_result: CoverageResult,
                                         tmp_path: Path) -> None:
    from ruralcov.report import write_run

    out = write_run(small_result, tmp_path / "run")
    page = Page(browser, out / "report.html")
    table = page.page.locator("h2", has_text="largest fibre gap first").locator(
        "xpath=following-sibling::div[1]")
    # 迎泽区 has the larger gap (2 of 3 villages short): the first row
    table.locator("tbody tr").first.get_by_role("link", name="迎泽区").click()
    page.page.wait_for_load_state("load")
    page.frame()
    assert page.page.url.endswith("/maps/county_140106.html")
    assert "迎泽区 (140106)" in page.page.locator(".rc-title").inner_text()
    # 工业园区, 上村村委会, 下村村委会: the county's units with a polygon
    assert page.js("ruralcov.drawn('villages')") == 3
    assert page.errors == [] and page.blocked == []
    page.close()


@pytest.mark.slow
def test_demo_report_table_fits_and_comes_before_the_charts(browser: Any,
                                                            demo_run: Path) -> None:
    import geopandas as gpd
    import pandas as pd

    county = pd.read_csv(demo_run / "tables" / "summary_county.csv", dtype={"code": str},
                         encoding="utf-8-sig")
    # the worst county that can be drawn: largest gap, then lowest share, then code
    mapped = county[county["villages_with_geometry"] > 0]
    worst = mapped.sort_values(["fibre_gap_villages", "fibre_share", "code"],
                               ascending=[False, True, True])["code"].iloc[0]
    page = Page(browser, demo_run / "report.html")
    page.page.set_viewport_size({"width": 1280, "height": 900})
    page.frame()
    # nothing scrolls sideways at 1280 px: not the page, not a table
    assert page.js("document.documentElement.scrollWidth <= document.documentElement"
                   ".clientWidth")
    assert page.js("[...document.querySelectorAll('.table-wrap')]"
                   ".filter(w => w.scrollWidth > w.clientWidth).length") == 0
    table = page.page.locator("h2", has_text="largest fibre gap first").locator(
        "xpath=following-sibling::div[1]")
    charts = page.page.locator("details.trends")
    n_charts = len(list((demo_run / "charts").glob("*.png")))
    assert n_charts >= 117 and charts.locator("img").count() == n_charts
    # the county table comes first; the charts wait folded below it
    assert table.bounding_box()["y"] < charts.bounding_box()["y"]
    assert charts.get_attribute("open") is None and not charts.locator("img").first.is_visible()
    assert "no outline: not mapped" in page.page.locator("body").inner_text()
    first = table.locator("tbody tr").first
    assert first.locator("td").first.inner_text() == worst
    first.locator("a").click()
    page.page.wait_for_load_state("load")
    page.frame()
    assert page.page.url.endswith(f"/maps/county_{worst}.html")
    assert f"({worst})" in page.page.locator(".rc-title").inner_text()
    villages = gpd.read_parquet(demo_run / "villages.parquet",
                                columns=["county_code", "has_geometry", "geometry"])
    drawn = int((villages["has_geometry"] & (villages["county_code"] == worst)).sum())
    assert page.js("ruralcov.drawn('villages')") == drawn
    assert page.errors == [] and page.blocked == []
    page.close()
