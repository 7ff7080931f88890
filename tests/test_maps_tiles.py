"""The province page drawn from vector tiles (``[maps] vector_tiles``, ``max_page_mb``), checked
without a browser: the threshold, the PMTiles archive decoded with the independent readers of
the ``pmtiles`` and ``mapbox-vector-tile`` packages against the small world's known answers,
the chunk scripts, the per-county evidence and the search index. The browser checks are in
test_maps_browser.py."""

from __future__ import annotations

import base64
import gzip
import logging
import math
from pathlib import Path

import mapbox_vector_tile
import numpy as np
import pytest
import shapely
from pmtiles.reader import MemorySource, Reader
from shapely.geometry import shape

from mapworld import column, layers, read_script, tiled_layers, with_maps
from ruralcov.config import config_from_dict
from ruralcov.errors import ConfigError, RuralcovError
from ruralcov.maps import write_maps
from ruralcov.maps.data import MAP_CLASSES, encode_geometry, encoded_floor, script_json
from ruralcov.pipeline import CoverageResult

#: the small world's drawn villages and their classes, by the README's definitions
#: (as test_maps.test_village_layer_matches_the_small_world reads them)
CLASSES = {
    "140105001001": "fibre_meets",
    "140105001002": "fibre_below",
    "140105001003": "fibre_meets",  # a community at 100 Mbps
    "140105002001": "no_fibre",
    "140105002002": "fibre_meets",
    "140106001002": "not_counted",
    "140106002002": "no_fibre",
}


@pytest.fixture(scope="module")
def tiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CoverageResult]:
    from conftest import build_small_result

    folder = tmp_path_factory.mktemp("tiled_maps")
    result = build_small_result(folder / "inputs")
    write_maps(with_maps(result, vector_tiles="always"), folder / "maps")
    return folder / "maps", result


def _tile_of(lon: float, lat: float, z: int) -> tuple[int, int, float, float]:
    """Web Mercator tile of a point and the point in its 4096 units (y down), the textbook
    formula."""
    n = 2**z
    x = (lon + 180.0) / 360.0 * n
    y = (1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n
    return int(x), int(y), (x - int(x)) * 4096, (y - int(y)) * 4096


def test_a_large_page_is_drawn_from_tiles_and_a_small_one_stays_as_it_was(
        small_result: CoverageResult, tmp_path: Path) -> None:
    write_maps(small_result, tmp_path / "default")
    write_maps(with_maps(small_result, vector_tiles="never"), tmp_path / "never")
    write_maps(with_maps(small_result, max_page_mb=0.0), tmp_path / "over")
    default = (tmp_path / "default" / "province.html").read_bytes()
    assert default == (tmp_path / "never" / "province.html").read_bytes()
    assert not (tmp_path / "default" / "tiles").exists()
    assert "villages" in layers(default.decode("utf-8"))
    assert default.index(b".fitBounds(") > default.index(b"ruralcov.layer(")
    # auto past max_page_mb: the villages and townships come from tiles, the counties stay
    over = (tmp_path / "over" / "province.html").read_text(encoding="utf-8")
    assert set(tiled_layers(over)) == {"villages", "township_fibre_share",
                                       "township_speed_share"}
    assert set(layers(over)) == {"county_fibre_share", "county_speed_share", "outlines"}
    # one copy of the county polygons (shared_geometry; the browser test checks what it gives)
    assert "geom" in layers(over)["county_fibre_share"]
    for layer_id in ("county_speed_share", "outlines"):
        assert "geom" not in layers(over)[layer_id]
        assert layers(over)[layer_id]["geom_of"] == "county_fibre_share"
    assert (tmp_path / "over" / "tiles" / "province.pmtiles").is_file()
    # the view is set before the first layer is added (projected once, at the zoom shown)
    assert over.index(".fitBounds(") < over.index("ruralcov.layer(")
    for script in ("pmtiles.js", "protomaps-leaflet.js", "ruralcov_tiles.js"):
        assert f'src="assets/{script}"' in over
        assert (tmp_path / "over" / "assets" / script).is_file()


def test_the_floor_of_the_page_is_below_its_json() -> None:
    """encoded_floor never passes the JSON it bounds: squares, holes, several parts, empties,
    and coordinates whose differences take many digits."""
    rng = np.random.default_rng(7)
    holed = shapely.Polygon([(0, 0), (1, 0), (1, 1), (0, 1)], [[(.2, .2), (.4, .2), (.4, .4)]])
    many = shapely.MultiPolygon([shapely.box(0, 0, 1, 1), shapely.box(2, 2, 3, 3)])
    blobs = shapely.buffer(shapely.points(rng.uniform(70, 130, (200, 2))), 0.01)
    for geoms in ([shapely.box(0, 0, 1e-5, 1e-5)], [holed, many, None, shapely.Polygon()],
                  list(blobs)):
        floor = encoded_floor(geoms)
        assert 0 < floor <= len(script_json(encode_geometry(geoms, q=1e5)))


def test_a_page_known_too_large_is_not_built_to_be_measured(
        small_result: CoverageResult, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Past the floor the embedded page is not built; between the floor and the page's size it
    is built, measured and dropped: the two write the same files."""
    floor = encoded_floor(small_result.villages.geometry.to_numpy())  # squares: not simplified
    with caplog.at_level(logging.INFO, logger="ruralcov.maps"):
        write_maps(with_maps(small_result, max_page_mb=floor / 2e6), tmp_path / "below")
        assert "province page of at least 0.0 MB" in caplog.text
        caplog.clear()
        write_maps(with_maps(small_result, max_page_mb=floor / 1e6), tmp_path / "above")
        assert "province page of at least" not in caplog.text
        assert "drawn from vector tiles" in caplog.text
    for name in ("province.html", "tiles/province.pmtiles", "tiles/search.js",
                 "tiles/evidence/0.js", "tiles/evidence/1.js"):
        assert (tmp_path / "below" / name).read_bytes() == (tmp_path / "above" / name).read_bytes()


def test_every_village_is_in_its_tile_with_its_evidence_and_class(
        tiled: tuple[Path, CoverageResult]) -> None:
    maps, result = tiled
    page = tiled_layers((maps / "province.html").read_text(encoding="utf-8"))["villages"]
    labels = [c["label"] for c in page["classes"]]
    archive = Reader(MemorySource((maps / "tiles" / "province.pmtiles").read_bytes()))
    assert archive.metadata()["vector_layers"][0]["id"] in {"villages", "townships"}
    v = result.villages[result.villages["has_geometry"]]
    assert len(v) == 8
    for code, polygon in zip(v["village_code"], v.geometry, strict=True):
        inside = shapely.point_on_surface(polygon)
        x, y, px, py = _tile_of(inside.x, inside.y, 12)
        tile = mapbox_vector_tile.decode(gzip.decompress(archive.get(12, x, y)),
                                         default_options={"y_coord_down": True})
        hits = [f["properties"] for f in tile["villages"]["features"]
                if shape(f["geometry"]).contains(shapely.Point(px, py))]
        assert len(hits) == 1, code
        c, i, k = hits[0]["c"], hits[0]["i"], hits[0]["k"]
        evidence = read_script(maps / "tiles" / "evidence" / f"{c}.js", "ruralcov.evidence")
        assert evidence[0] == c
        rows = evidence[1]["villages"]
        assert column(rows, "code")[i] == code
        assert column(rows, "county")[i] == result.villages.set_index("village_code").loc[
            code, "county_name"]
        if code in CLASSES:
            assert labels[k] == MAP_CLASSES[CLASSES[code]][0], code
            assert rows["cls"][i] == k
    # the evidence of 西关村委会 (AP-2 inside, 8 tests from 4 devices, median 8.0)
    ev = read_script(maps / "tiles" / "evidence" / "0.js", "ruralcov.evidence")[1]["villages"]
    row = column(ev, "code").index("140105001002")
    assert column(ev, "fibre access point")[row] == "AP-2"
    assert column(ev, "median download (Mbps)")[row] == "8.0"


def test_legend_counts_come_from_the_tables(tiled: tuple[Path, CoverageResult]) -> None:
    maps, result = tiled
    page = tiled_layers((maps / "province.html").read_text(encoding="utf-8"))["villages"]
    counts = {c["label"]: c["n"] for c in page["classes"]}
    assert counts[MAP_CLASSES["no_fibre"][0]] == 2  # 河西村委会 has no polygon
    assert counts[MAP_CLASSES["fibre_meets"][0]] == 4
    assert sum(counts.values()) == int(result.villages["has_geometry"].sum())


def test_chunk_scripts_are_the_archive(tiled: tuple[Path, CoverageResult]) -> None:
    maps, _ = tiled
    archive = (maps / "tiles" / "province.pmtiles").read_bytes()
    chunks = sorted((maps / "tiles").glob("province.pmtiles.*.js"),
                    key=lambda p: int(p.name.split(".")[-2]))
    data = b""
    for k, path in enumerate(chunks):
        name, n, text = read_script(path, "ruralcov.chunk")
        assert (name, n) == ("province.pmtiles", k)
        data += base64.b64decode(text)
    assert data == archive


def test_search_index_points_lie_in_their_village(tiled: tuple[Path, CoverageResult]) -> None:
    maps, result = tiled
    (index,) = read_script(maps / "tiles" / "search.js", "ruralcov.searchIndex")
    polygons = result.villages.set_index("village_code").geometry
    assert sorted(index["code"]) == sorted(result.villages.loc[
        result.villages["has_geometry"], "village_code"])
    for j, code in enumerate(index["code"]):
        point = shapely.Point(index["xy"][2 * j] / index["q"], index["xy"][2 * j + 1] / index["q"])
        assert polygons[code].buffer(1e-5).contains(point), code


def test_tiled_page_without_the_browser_libraries_is_an_error(
        small_result: CoverageResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RURALCOV_JS", str(tmp_path / "nowhere"))
    with pytest.raises(RuralcovError, match="make js"):
        write_maps(with_maps(small_result, vector_tiles="always"), tmp_path / "maps")


@pytest.mark.parametrize(("key", "value", "message"), [
    ("vector_tiles", "sometimes", "vector_tiles 'sometimes' is not known"),
    ("vector_tiles", True, "vector_tiles must be str"),
    ("max_page_mb", -1, "max_page_mb must be 0 or more"),
])
def test_bad_vector_tile_keys(key: str, value: object, message: str, tmp_path: Path) -> None:
    raw = {"villages": {"path": str(tmp_path / "v.csv")}, "maps": {key: value}}
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw, base=tmp_path)
