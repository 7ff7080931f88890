"""Map pages checked as HTML (as geopandas' test_explore.py does): files, offline references,
the embedded layer data against the small world's known answers, escaping, plan, basemaps,
static PNGs, the run-folder reader and ``ruralcov map``. The browser checks are in
test_maps_browser.py."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from mapworld import (
    HOSTILE,
    QUOTES,
    XSS,
    column,
    decode_ring,
    drawn_cells,
    hostile_result,
    layers,
    legend_from_csv,
    legend_of,
    north_cells,
    small_plan,
    with_cells,
)
from ruralcov import analyse
from ruralcov.cli import cli
from ruralcov.config import config_from_dict, load_config
from ruralcov.crs import wgs84_to_gcj02
from ruralcov.errors import ConfigError
from ruralcov.io import sha256_file
from ruralcov.maps import county_file, write_maps
from ruralcov.maps.data import MAP_CLASSES, area_classes, encode_geometry, share_bins
from ruralcov.maps.static import village_legend
from ruralcov.pipeline import CoverageResult
from ruralcov.planner import plan_result
from ruralcov.report import write_run
from ruralcov.runfolder import read_run
from worlds import EXPECTED, write_north_world

# an http(s) URL in a place where the browser would fetch it
NETWORK_REF = re.compile(
    r"""(<script[^>]*\ssrc\s*=\s*["']?\s*(https?:)?//)|(<link[^>]*\shref\s*=\s*["']?\s*(https?:)?//)"""
    r"""|(url\(\s*["']?\s*(https?:)?//)|(@import)|(<iframe)""",
    re.I,
)


@pytest.fixture
def maps(small_result: CoverageResult, tmp_path: Path) -> Path:
    write_maps(small_result, tmp_path / "maps")
    return tmp_path / "maps"


def _html(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_files(maps: Path) -> None:
    names = {p.relative_to(maps).as_posix() for p in maps.rglob("*") if p.is_file()}
    assert {
        "index.html",
        "province.html",
        "county_140105.html",
        "county_140106.html",
        "static/county_fibre_share.png",
        "static/village_classes.png",
        "assets/leaflet.js",
        "assets/leaflet.css",
        "assets/ruralcov_map.js",
        "assets/ruralcov_map.css",
        "assets/images/layers.png",
    } <= names
    for png in maps.glob("static/*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_page_loads_anything_from_the_network(maps: Path) -> None:
    pages = sorted(maps.glob("*.html"))
    assert len(pages) == 4
    for page in pages:
        html = _html(page)
        assert not NETWORK_REF.search(html), page.name
        for src in re.findall(r'<(?:script|link)[^>]*(?:src|href)="([^"]+)"', html):
            assert (maps / src).is_file(), (page.name, src)
    for css in maps.glob("assets/*.css"):
        assert not NETWORK_REF.search(_html(css)), css.name


def test_village_layer_matches_the_small_world(maps: Path, small_result: CoverageResult) -> None:
    data = layers(_html(maps / "province.html"))["villages"]
    v = small_result.villages
    drawn = v[v["has_geometry"]]
    assert len(data["geom"]) == len(drawn) == 8
    codes = column(data, "code")
    assert codes == drawn["village_code"].tolist()
    labels = [c["label"] for c in data["classes"]]
    got = {code: labels[k] for code, k in zip(codes, data["cls"], strict=True)}
    # classes from the fixture's table, by the README's definitions
    assert got["140105001001"] == MAP_CLASSES["fibre_meets"][0]
    assert got["140105001002"] == MAP_CLASSES["fibre_below"][0]
    assert got["140105001003"] == MAP_CLASSES["fibre_meets"][0]  # community at 100 Mbps
    assert got["140105002001"] == MAP_CLASSES["no_fibre"][0]
    assert got["140105002002"] == MAP_CLASSES["fibre_meets"][0]
    assert got["140106001002"] == MAP_CLASSES["not_counted"][0]
    assert got["140106002002"] == MAP_CLASSES["no_fibre"][0]
    counts = {c["label"]: c["n"] for c in data["classes"]}
    assert counts[MAP_CLASSES["no_fibre"][0]] == 2  # 河西村委会 has no polygon
    # the evidence of 西关村委会 (AP-2 inside, 8 tests from 4 devices, median 8.0)
    i = codes.index("140105001002")
    row = {c["label"]: column(data, c["label"])[i] for c in data["cols"]}
    assert row["fibre basis"] == "access_point_inside"
    assert row["fibre access point"] == "AP-2"
    assert row["speed tests"] == "8" and row["devices"] == "4"
    assert row["median download (Mbps)"] == "8.0"
    assert row["95 % interval (Mbps)"] == f"{8 * 0.8123456:.1f} – {8 * 1.2345678:.1f}"
    assert row["township"] == "东街街道" and row["county"] == "小店区"


def test_village_geometry_round_trips(maps: Path, small_result: CoverageResult) -> None:
    data = layers(_html(maps / "county_140105.html"))["villages"]
    v = small_result.villages.set_index("village_code")
    for code, geom in zip(column(data, "code"), data["geom"], strict=True):
        ring = decode_ring(geom[0][0], data["q"])
        expected = np.asarray(v.loc[code, "geometry"].exterior.coords)[:-1]
        assert np.allclose(ring, expected, atol=0.5 / data["q"])


def test_area_choropleths_diverge_at_the_target(maps: Path) -> None:
    found = layers(_html(maps / "province.html"))
    county = found["county_fibre_share"]
    labels = [c["label"] for c in county["classes"]]
    got = dict(zip(column(county, "code"), (labels[k] for k in county["cls"]), strict=True))
    # 140105: 3 of 4 villages (75 %), 140106: 1 of 3 — both more than 20 points below 98 %
    assert got == {"140105": "below 78 %", "140106": "below 78 %"}
    assert column(county, "gap (villages)") == ["1", "2"]
    assert column(county, "county map") == ["county_140105.html", "county_140106.html"]
    township = found["township_fibre_share"]
    # 东街街道 2/2, 北营镇 1/2, 河西镇 0/1 (its village has no polygon; 工业园区 draws it),
    # 上村镇 1/2
    assert column(township, "code") == ["140105001", "140105002", "140106001", "140106002"]
    assert column(township, "fibre share") == ["100.0%", "50.0%", "0.0%", "50.0%"]
    t_labels = [c["label"] for c in township["classes"]]
    assert [t_labels[k] for k in township["cls"]] == [
        "99 % to 100 %",
        "below 78 %",
        "below 78 %",
        "below 78 %",
    ]


def test_share_classes() -> None:
    bins = share_bins(0.98)
    shares = pd.Series([0.0, 0.5, 0.7799, 0.78, 0.9799, 0.98, 0.99, 1.0, np.nan])
    cls, keys = area_classes(shares, 0.98)
    names = [keys[i][0] for i in cls]
    assert names == [
        "below 78 %",
        "below 78 %",
        "below 78 %",
        "78 % to 88 %",
        "93 % to 98 %",
        "98 % to 99 %",
        "99 % to 100 %",
        "99 % to 100 %",
        "no administrative villages",
    ]
    warm = {c for _, _, _, c in bins[:4]}
    cool = {c for _, _, _, c in bins[4:]}
    assert not warm & cool


@given(st.floats(0, 1), st.sampled_from([0.5, 0.9, 0.98, 1.0]))
def test_every_share_gets_one_class_on_the_right_side(share: float, target: float) -> None:
    cls, keys = area_classes(pd.Series([share]), target)
    low, high, _, _ = share_bins(target)[cls[0]]
    assert low <= share <= high
    below = cls[0] < sum(1 for lo, hi, _, _ in share_bins(target) if hi <= target and lo < target)
    assert below == (share < target)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(-180_000, 180_000), st.integers(-85_000, 85_000)),
        min_size=3,
        max_size=12,
    )
)
def test_encoded_lines_decode_to_rounded_coordinates(points: list[tuple[int, int]]) -> None:
    coords = np.array([(x / 1000 + 0.0003, y / 1000) for x, y in points])
    (encoded,) = encode_geometry([shapely.LineString(coords)], q=1e3)
    assert np.allclose(decode_ring(encoded[0], 1e3), np.round(coords * 1000) / 1000, atol=1e-12)


def test_hostile_names_are_data_not_markup(small_result: CoverageResult, tmp_path: Path) -> None:
    write_maps(hostile_result(small_result), tmp_path / "maps")
    for page in sorted((tmp_path / "maps").glob("*.html")):
        html = _html(page)
        assert "<img src=x" not in html, page.name
        assert "</script><script>alert" not in html, page.name
        assert "onerror=alert(1)>" not in html.replace("onerror=alert(1)\\u003e", ""), page.name
    data = layers(_html(tmp_path / "maps" / "province.html"))["villages"]
    names = dict(zip(column(data, "code"), column(data, "name"), strict=True))
    for code, name in HOSTILE.items():
        assert names[code] == name  # the exact text comes back, quotes and Chinese included
    index = _html(tmp_path / "maps" / "index.html")
    assert XSS not in index and QUOTES not in index


def test_legend_states_target_and_provenance(maps: Path, small_result: CoverageResult) -> None:
    html = _html(maps / "province.html")
    info = json.loads(re.search(r"ruralcov\.legend\([^,]+, (\{.*?\})\);\n", html).group(1))
    assert small_result.config.run.provenance in info["provenance"]
    assert "98%" in info["notes"][0] and "12 Mbps" in info["notes"][0]
    assert "6 villages drawn" not in info["notes"][1]
    assert info["notes"][1].startswith("8 villages drawn; 1 register entries without geometry")


def test_index_lists_counties_by_gap(maps: Path) -> None:
    html = _html(maps / "index.html")
    first, second = html.index("county_140106.html"), html.index("county_140105.html")
    assert first < second  # gap 2 before gap 1
    assert 'href="province.html"' in html and "static/county_fibre_share.png" in html


def test_county_pages_draw_assets_and_plan(small_result: CoverageResult, tmp_path: Path) -> None:
    write_maps(small_result, tmp_path / "maps", plan=small_plan())
    found = layers(_html(tmp_path / "maps" / "county_140105.html"))
    assert column(found["fibre_points"], "id") == ["AP-2", "AP-5"]
    other = layers(_html(tmp_path / "maps" / "county_140106.html"))
    assert column(other["fibre_points"], "id") == ["AP-9"]
    assert other["fibre_points"]["classes"][other["fibre_points"]["cls"][0]]["label"].startswith(
        "access point not in service"
    )
    assert column(other["fibre_routes"], "id") == ["R-1"]
    assert column(found["plan_order"], "order") == ["1"]
    assert column(found["plan_order"], "village") == ["140105002001"]
    assert column(found["plan_links"], "link (km)") == ["1.25"]
    assert "plan_links" not in other


def test_plan_missing_a_column_is_an_error(small_result: CoverageResult, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="link_km"):
        write_maps(small_result, tmp_path / "m", plan=small_plan().drop(columns="link_km"))


def test_amap_basemap_shifts_geometry(small_result: CoverageResult, tmp_path: Path) -> None:
    write_maps(small_result, tmp_path / "maps", basemap="amap")
    html = _html(tmp_path / "maps" / "county_140105.html")
    assert "autonavi.com" in html  # opt-in tiles are the one network reference allowed
    data = layers(html)["villages"]
    x, y = decode_ring(data["geom"][0][0][0], data["q"])[0]
    gx, gy = wgs84_to_gcj02([112.51], [37.8])  # first vertex of 东关村委会's square
    assert (x, y) == pytest.approx((gx[0], gy[0]), abs=1e-5)
    assert abs(x - 112.51) > 1e-4  # the GCJ-02 offset is hundreds of metres here


def test_default_has_no_tiles(maps: Path) -> None:
    html = _html(maps / "province.html")
    assert "tileLayer" not in html and "openstreetmap" not in html


def test_unknown_basemap_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="basemap 'bing'.*'none', 'osm', 'amap'"):
        config_from_dict(
            {"villages": {"path": "v.csv"}, "maps": {"basemap": "bing"}}, base=tmp_path
        )


def test_county_file_names_are_safe() -> None:
    assert county_file("140105") == "county_140105.html"
    assert county_file('../"><script>') == "county_______script_.html"


def test_report_embeds_static_maps(small_result: CoverageResult, tmp_path: Path) -> None:
    out = write_run(small_result, tmp_path / "run")
    html = _html(out / "report.html")
    for name in ("county_fibre_share.png", "village_classes.png"):
        assert f'<img src="maps/static/{name}"' in html
        assert (out / "maps" / "static" / name).is_file()


def test_read_run_gives_back_the_tables(small_result: CoverageResult, tmp_path: Path) -> None:
    out = write_run(small_result, tmp_path / "run")
    back = read_run(out)
    for level, summary in small_result.summaries.items():
        got = back.summaries[level]
        assert got["code"].tolist() == summary["code"].tolist()
        for col in ("villages", "fibre_villages", "fibre_gap_villages", "speed_meets"):
            assert got[col].tolist() == summary[col].tolist(), (level, col)
        assert np.allclose(got["fibre_share"], summary["fibre_share"], equal_nan=True)
    assert back.metric_crs == small_result.metric_crs
    assert back.villages["village_code"].tolist() == small_result.villages["village_code"].tolist()
    assert back.config.run.provenance == small_result.config.run.provenance
    # every asset the run read, counted or not, comes back from assets.parquet (the small
    # world's CSV inputs have no CRS: reading them again would fail)
    for got, want in ((back.fibre_points, small_result.fibre_points),
                      (back.fibre_routes, small_result.fibre_routes)):
        for col in ("asset_id", "status", "operational", "source", "max_distance_m"):
            assert got[col].tolist() == want[col].tolist(), col
        assert got.geometry.to_wkt().tolist() == want.geometry.to_wkt().tolist()
    assert back.cells is None  # the small world has none


def test_map_and_plan_of_a_copied_run_without_its_inputs(tmp_path: Path) -> None:
    """The maps and the plan of a run folder come from the folder alone: a copy whose inputs
    are gone draws the same assets and speed-test cells, and plans the same links."""
    config = write_north_world(tmp_path / "in")
    result = analyse(load_config(config))
    expected = north_cells(config.parent, result.metric_crs)
    result = with_cells(result, expected)
    original = write_run(result, tmp_path / "run", maps=True)
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(original, copy)
    shutil.rmtree(tmp_path / "in")
    for args in (["map", copy], ["plan", copy]):  # plan draws the maps again, with the links
        res = CliRunner().invoke(cli, ["-q", *map(str, args)], catch_exceptions=False)
        assert res.exit_code == 0, res.output
    before = layers(_html(original / "maps" / "county_K1.html"))
    after = layers(_html(copy / "maps" / "county_K1.html"))
    for layer in ("fibre_points", "fibre_routes", "speed_cells"):
        assert after[layer] == before[layer], layer
    assert column(after["fibre_points"], "id") == ["AP-1", "AP-2", "AP-3", "AP-C"]
    assert column(after["fibre_routes"], "id") == ["R-1"]
    # the cells as computed from the world's files; every test inside a village in one cell
    cells = drawn_cells(after["speed_cells"])
    assert sum(int(t) for t, _, _, _ in cells) == sum(e[3] for e in EXPECTED.values())
    assert cells == [(str(r.tests), str(r.devices), f"{r.median_mbps:.1f}",
                      {"meets": "median ≥ 12 Mbps", "below": "median < 12 Mbps",
                       "insufficient_data": "too few: under 5 tests or under 3 devices"}[
                          r.speed_class]) for r in expected.itertuples()]
    # by construction: V2's 6 tests and the edge test share a cell, from devices a and b only
    assert ("7", "2", "30.0", "too few: under 5 tests or under 3 devices") in cells
    plan = pd.read_csv(copy / "tables" / "plan.csv", dtype=str, encoding="utf-8-sig")
    want = plan_result(result).links
    assert sorted(plan["village_code"]) == ["V3", "V5"]
    assert plan["village_code"].tolist() == want["village_code"].tolist()
    assert plan["connects_to"].tolist() == want["connects_to"].tolist()
    assert "plan_links" in after


def test_map_command_redraws_maps(small_result: CoverageResult, tmp_path: Path) -> None:
    out = write_run(small_result, tmp_path / "run", maps=False)
    assert not (out / "maps" / "province.html").exists()
    small_plan().to_parquet(out / "plan.parquet")
    res = CliRunner().invoke(cli, ["map", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "4 map pages written" in res.output
    assert "plan_links" in layers(_html(out / "maps" / "county_140105.html"))
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    for rel in ("maps/province.html", "maps/index.html", "maps/assets/leaflet.js"):
        assert manifest["outputs"][rel] == sha256_file(out / rel)
    assert not [p for p in out.iterdir() if p.name.startswith("maps.")]  # no temp folders left


def test_map_command_on_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["map", str(tmp_path)], catch_exceptions=False)
    assert res.exit_code == 2
    assert res.output.count("\n") == 1
    assert "villages.parquet is missing" in res.output


def test_map_and_plan_of_a_run_folder_without_its_assets(small_result: CoverageResult,
                                                        tmp_path: Path) -> None:
    """A run folder written before ruralcov kept the assets it read: one line, no input read."""
    out = write_run(small_result, tmp_path / "run", maps=False)
    (out / "assets.parquet").unlink()
    for command in ("map", "plan"):
        res = CliRunner().invoke(cli, [command, str(out)], catch_exceptions=False)
        assert res.exit_code == 2, res.output
        assert res.output.count("\n") == 1 and "assets.parquet is missing" in res.output
    assert not (out / "tables" / "plan.csv").exists()


# --------------------------------------------------------------------------- village legends


def assert_legends_count_the_csv(run: Path, *, five_way: bool) -> list[tuple[str, str, int]]:
    """The village legend of the province page, of every county page and of the static figure
    against ``legend_from_csv`` (counted from tables/villages.csv); returns the province's."""
    maps = run / "maps"
    want = legend_from_csv(run, five_way=five_way)
    assert legend_of(layers(_html(maps / "province.html"))["villages"]) == want
    pages = sorted(maps.glob("county_*.html"))
    assert pages
    for page in pages:
        county = page.stem.removeprefix("county_")
        got = legend_of(layers(_html(page))["villages"])
        assert got == legend_from_csv(run, five_way=five_way, county=county), page.name
    v = read_run(run, tables=False).villages
    static = village_legend(v[v["has_geometry"].astype(bool)])
    assert static == [(f"{label} ({n:,})", colour) for label, colour, n in want if n]
    return want


def test_village_legend_of_a_run_without_capability_is_today_s(tmp_path: Path) -> None:
    cfg = write_north_world(tmp_path / "in")
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["-q", "run", str(cfg), "--out", str(out)])
    assert res.exit_code == 0, res.output
    want = assert_legends_count_the_csv(out, five_way=False)
    # by construction (tests/worlds.py), units with a polygon: V1 and V4 fibre and meet, V2
    # fibre with too few devices, C1 fibre below the urban target, V3 and V5 without fibre
    assert [n for _, _, n in want] == [2, 1, 1, 2, 0]


@pytest.mark.slow
def test_demo_village_legends_count_the_csv(demo_run: Path) -> None:
    want = assert_legends_count_the_csv(demo_run, five_way=True)
    # the demo has capability records, and units with geometry in every class (so that
    # every count is checked), none of them in the three-way "too few speed tests"
    assert len(want) == 7 and all(n > 0 for _, _, n in want)
    assert MAP_CLASSES["fibre_insufficient"][0] not in {label for label, _, _ in want}
    # the report's five-way cards count administrative villages (with or without geometry)
    v = pd.read_csv(demo_run / "tables" / "villages.csv", dtype=str, encoding="utf-8-sig")
    by_class = v[v["kind"] == "village"]["speed_class"].value_counts()
    html = _html(demo_run / "report.html")
    for cls in ("meets", "capability_only", "measured_only", "fails", "insufficient_data"):
        card = re.search(
            r'<div class="value[^"]*">([0-9,]+)</div><div class="label">'
            + re.escape(cls.replace("_", " ")) + ":",
            html,
        )
        assert card is not None and int(card.group(1).replace(",", "")) == by_class[cls], cls


# --- Chinese names on the static maps ------------------------------------------------------


def _county_polygons(result: CoverageResult) -> pd.Series:
    """The county outlines dissolved here with geopandas from the village squares."""
    drawn = result.villages[result.villages.geometry.notna()]
    return drawn.dissolve("county_code").geometry


def test_static_maps_draw_chinese_names_with_a_cjk_font(small_result: CoverageResult,
                                                         tmp_path: Path) -> None:
    import warnings

    import matplotlib
    from matplotlib import font_manager
    from matplotlib.text import Text

    from ruralcov.maps.static import CJK_FAMILIES, county_share_figure, fonts

    before = list(matplotlib.rcParams["font.family"])
    with fonts() as families, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig = county_share_figure(small_result, _county_polygons(small_result),
                                  families=families)
        fig.savefig(tmp_path / "county.png", dpi=50)
        texts = [t for t in fig.findobj(Text) if t.get_text()]
        used = {t.get_text(): font_manager.findfont(t.get_fontproperties()) for t in texts}
    # no "Glyph ... missing from font(s)" (filterwarnings=error would fail on it too)
    assert [str(w.message) for w in caught if "missing from font" in str(w.message)] == []
    assert families[0] in CJK_FAMILIES and families[-1] == "DejaVu Sans"
    # the province in the title; both counties labelled (both short of 98 %), largest gap
    # first, with share and gap from the small world's table
    chinese = [t for t in used if re.search("[\u4e00-\u9fff]", t)]
    assert any(t.startswith("山西省 — fibre share by county") for t in chinese), chinese
    assert "迎泽区\n33.3%, gap 2" in chinese and "小店区\n75.0%, gap 1" in chinese
    for text in chinese:  # the font chosen for the text has a glyph for every character
        font = font_manager.get_font(used[text])
        assert font.family_name.startswith(("Noto Sans CJK", "Microsoft YaHei", "SimHei",
                                            "PingFang", "WenQuanYi")), font.family_name
        assert all(font.get_char_index(ord(ch)) for ch in text if not ch.isspace()), text
    assert list(matplotlib.rcParams["font.family"]) == before  # nothing leaks out


def test_static_maps_without_a_cjk_font_show_codes(small_result: CoverageResult,
                                                   tmp_path: Path) -> None:
    from matplotlib.text import Text

    from ruralcov.maps.static import county_share_figure

    # only matplotlib's own font: a name it cannot draw is replaced by its code, so no glyph
    # is missing (a warning would fail this test)
    fig = county_share_figure(small_result, _county_polygons(small_result),
                              families=("DejaVu Sans",))
    fig.savefig(tmp_path / "county.png", dpi=50)
    texts = [t.get_text() for t in fig.findobj(Text) if t.get_text()]
    assert "140106\n33.3%, gap 2" in texts and "140105\n75.0%, gap 1" in texts
    assert any(t.startswith("14 — fibre share by county") for t in texts), texts


# --- areas dissolved from villages ---------------------------------------------------------


def test_dissolve_many_unions_each_key_of_each_level_as_dissolve_does() -> None:
    from ruralcov.maps.data import dissolve, dissolve_many

    # a 2 x 2 grid of unit squares (a coverage), and the same grid with an extra vertex on
    # one shared edge (not a coverage: the general union), a missing key and no geometry
    squares = [shapely.box(x, y, x + 1, y + 1) for x in (0, 1) for y in (0, 1)]
    misnoded = [shapely.segmentize(squares[0], 0.5), *squares[1:], None]
    columns = pd.Series(["west", "west", "east", None, "east"])  # the 5th has no geometry
    whole = pd.Series(["all"] * 5)
    work = [(np.array(squares + [None], dtype=object), columns),
            (np.array(misnoded, dtype=object), columns),
            (np.array(misnoded, dtype=object), whole)]
    got = dissolve_many(work)
    expected = [{"east": shapely.box(1, 0, 2, 1), "west": shapely.box(0, 0, 1, 2)},
                {"east": shapely.box(1, 0, 2, 1), "west": shapely.box(0, 0, 1, 2)},
                {"all": shapely.box(0, 0, 2, 2)}]
    for areas, want, (geoms, keys) in zip(got, expected, work, strict=True):
        assert list(areas.index) == sorted(want)
        assert all(shapely.equals(areas[key], want[key]) for key in want)
        alone = dissolve(geoms, keys)  # one at a time: the same geometries, bit for bit
        assert [shapely.to_wkb(g) for g in alone] == [shapely.to_wkb(g) for g in areas]


def test_a_run_without_maps_loads_no_drawing_library(tmp_path: Path) -> None:
    """`ruralcov run --no-maps` writes results.gpkg with the maps' classes and colours
    (:mod:`ruralcov.maps.data`) but never imports folium or matplotlib (a third of a second of
    every run); a run with maps does. In fresh interpreters: this one has them imported."""
    import subprocess
    import sys

    config = write_north_world(tmp_path / "world")
    code = """
import sys
from ruralcov.cli import cli
cli(["-q", "run", sys.argv[1], "--out", sys.argv[2], "--force", *sys.argv[3:]],
    standalone_mode=False)
print(sorted(m for m in ("folium", "matplotlib", "branca") if m in sys.modules))
"""
    loaded = {}
    for name, extra in (("without", ["--no-maps"]), ("with", [])):
        out = subprocess.run([sys.executable, "-c", code, str(config), str(tmp_path / name),
                              *extra], capture_output=True, text=True, check=True, cwd=tmp_path)
        loaded[name] = out.stdout.splitlines()[-1]
        assert (tmp_path / name / "results.gpkg").is_file()
    assert loaded == {"without": "[]", "with": "['branca', 'folium', 'matplotlib']"}
