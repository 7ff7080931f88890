"""``results.gpkg``: the run's layers for QGIS, styled as the web map (small world)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from xml.etree import ElementTree as ET

import pyogrio
import shapely

from ruralcov import outdir
from ruralcov.maps.data import ASSET_CLASSES, MAP_CLASSES, map_class, share_bins
from ruralcov.report import write_run
from ruralcov.report.gpkg import GPKG_FILE, write_gpkg
from ruralcov.verify import verify_run

CREATED = "2026-03-04T05:06:07+00:00"
LAYERS = ["villages", "townships", "counties", "gaps_no_fibre", "gaps_below_speed",
          "gaps_insufficient_data", "access_points", "routes"]


def _rgba(colour: str) -> str:
    return ",".join(str(int(colour[i:i + 2], 16)) for i in (1, 3, 5)) + ",255"


def _legend(qml: str) -> list[tuple[str, str, str]]:
    """(value, label, colour of the first symbol layer) of each category of a QML style."""
    root = ET.fromstring(qml.split("\n", 1)[1])  # after the DOCTYPE line
    renderer = root.find("renderer-v2")
    assert renderer.get("type") == "categorizedSymbol" and renderer.get("attr") == "map_class"
    symbols = {s.get("name"): s for s in renderer.find("symbols")}
    out = []
    for cat in renderer.find("categories"):
        layer = symbols[cat.get("symbol")].find("layer")
        props = {p.get("k"): p.get("v") for p in layer.findall("prop")}
        out.append((cat.get("value"), cat.get("label"),
                    props.get("color") or props.get("line_color")))
    return out


def test_layers_read_back_with_the_results(small_result, tmp_path):
    path = tmp_path / GPKG_FILE
    write_gpkg(small_result, path, created=CREATED)
    names = [str(n) for n, _ in pyogrio.list_layers(path)]
    assert names == [*LAYERS, "layer_styles"]
    villages = pyogrio.read_dataframe(path, layer="villages")
    want = small_result.villages
    assert villages["village_code"].tolist() == want["village_code"].tolist()
    assert villages["map_class"].tolist() == map_class(want).tolist()
    assert villages["tests"].tolist() == want["tests"].tolist()
    for got, expected in zip(villages.geometry, want.geometry, strict=True):
        assert (got is None and expected is None) or got.equals_exact(expected, 0)
    for key, rows in small_result.gaps.items():
        gap = pyogrio.read_dataframe(path, layer=f"gaps_{key}")
        assert gap["village_code"].tolist() == rows["village_code"].tolist()
    # county 140106: 工业园区 and 上村村委会, 下村村委会 (河西村委会 has no polygon)
    counties = pyogrio.read_dataframe(path, layer="counties").set_index("code")
    drawn = want[want["county_code"] == "140106"].geometry.dropna()
    assert counties.loc["140106"].geometry.equals(shapely.union_all(drawn.to_numpy()))
    assert counties.loc["140106", "fibre_gap_villages"] == 2
    assert counties.loc["140106", "map_class"] == share_bins(0.98)[0][2]  # 1/3: below 78 %
    points = pyogrio.read_dataframe(path, layer="access_points")
    assert points["map_class"].tolist() == ["operational", "operational", "not_operational"]


def test_one_default_style_per_layer_with_the_maps_legend(small_result, tmp_path):
    path = tmp_path / GPKG_FILE
    write_gpkg(small_result, path, created=CREATED)
    styles = pyogrio.read_dataframe(path, layer="layer_styles")
    assert sorted(styles["f_table_name"]) == sorted(LAYERS)
    assert styles["useAsDefault"].all() and (styles["f_geometry_column"] == "geom").all()
    legend = dict(zip(styles["f_table_name"], map(_legend, styles["styleQML"]), strict=True))
    web = [(k, label, _rgba(fill)) for k, (label, fill, _, _) in MAP_CLASSES.items()]
    for layer in ("villages", "gaps_no_fibre", "gaps_below_speed", "gaps_insufficient_data"):
        assert legend[layer] == web, layer
    # the areas as on the map: the share classes, filled at 80 % opacity (alpha 204)
    area = [(label, label, _rgba(colour)[:-3] + "204") for _, _, label, colour in
            share_bins(0.98)]
    assert legend["counties"][:-1] == area
    assert legend["routes"] == [
        ("operational", ASSET_CLASSES["routes"][0]["label"], "106,61,154,255"),
        ("not_operational", ASSET_CLASSES["routes"][1]["label"], "158,158,158,255")]
    for layer in LAYERS:  # every class a feature has is in its layer's legend
        values = set(pyogrio.read_dataframe(path, layer=layer, read_geometry=False)["map_class"])
        assert values <= {v for v, _, _ in legend[layer]}, layer


def test_the_run_folder_lists_it_and_writes_it_the_same_again(small_result, tmp_path):
    out = write_run(small_result, tmp_path / "run", maps=False)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert GPKG_FILE in manifest["outputs"]
    checks = verify_run(out, rerun=False)
    assert checks.loc[checks["path"] == GPKG_FILE, "status"].tolist() == ["ok"]
    again = tmp_path / "again.gpkg"
    write_gpkg(small_result, again, created=manifest["created"])
    digest = hashlib.sha256(again.read_bytes()).hexdigest()
    assert digest == manifest["outputs"][GPKG_FILE]  # a function of the result and the time


def _files(folder) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_made_after_the_workbook_or_beside_it_every_file_is_the_same(small_result, tmp_path,
                                                                      monkeypatch):
    """Large runs make the layers only once report.xlsx is written (their memory and the
    workbook's are not held at once); small ones make them in a thread beside the tables and
    the workbook and, with room to spare on the disk, write the GeoPackage there too. The
    order changes no byte of any file."""
    import threading

    from ruralcov.report import gpkg, writer

    calls: list[str] = []
    gpkg_started = threading.Event()
    overlapped: dict[str, bool] = {}
    for module, name in ((writer, "gpkg_layers"), (gpkg, "gpkg_layers"), (writer, "write_xlsx"),
                         (writer, "write_gpkg")):
        real = getattr(module, name)

        def traced(*args, _real=real, _name=name, **kwargs):
            calls.append(f"{_name} start")
            if _name == "write_gpkg":
                gpkg_started.set()
            if _name == "write_xlsx" and mode == "beside":  # the workbook waits for it
                overlapped[mode] = gpkg_started.wait(timeout=60)
            out = _real(*args, **kwargs)
            calls.append(f"{_name} end")
            return out

        monkeypatch.setattr(module, name, traced)
    written = {}
    free = shutil.disk_usage(tmp_path).free
    # (register units from which a run is sequential, the room the GeoPackage needs beside)
    modes = {"sequential": (1, 0), "beside": (10**9, 0), "no room": (10**9, 2 * free)}
    for mode, (first, room) in modes.items():
        monkeypatch.setattr(writer, "SEQUENTIAL_FROM", first)
        monkeypatch.setattr(writer, "GPKG_ROOM", room)
        calls.clear()
        gpkg_started.clear()
        folder = tmp_path / mode.replace(" ", "_")
        folder.mkdir()
        writer.write_contents(small_result, folder, out=tmp_path / "run", maps=False,
                              created=CREATED)
        written[mode] = _files(folder)
        if mode == "sequential":  # made by write_gpkg after the workbook
            assert calls == ["write_xlsx start", "write_xlsx end", "write_gpkg start",
                             "gpkg_layers start", "gpkg_layers end", "write_gpkg end"]
        elif mode == "beside":  # made and written by a thread while the workbook is written
            assert overlapped == {"beside": True}
            assert calls.index("write_gpkg start") < calls.index("write_xlsx end")
        else:  # made by a thread started before the workbook, written after it
            assert calls.index("write_xlsx end") < calls.index("write_gpkg start")
            assert calls.count("gpkg_layers start") == 1
    assert len(small_result.villages) < writer.SEQUENTIAL_FROM  # small runs: beside it
    for mode in ("beside", "no room"):
        assert written[mode].keys() == written["sequential"].keys()
        assert GPKG_FILE in written[mode] and "report.xlsx" in written[mode]
        differ = [name for name in written[mode]
                  if written[mode][name] != written["sequential"][name]]
        assert differ == []


def test_ample_room_is_free_space_and_the_file_size_limit(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    assert outdir.ample_room(tmp_path, free // 2)
    assert not outdir.ample_room(tmp_path, 2 * free)
    assert not outdir.ample_room(tmp_path / "missing", 1)
    # a process whose files may not grow beyond 1 MB (ulimit -f 1024)
    code = ("import resource, sys; from ruralcov import outdir; "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, resource.RLIM_INFINITY)); "
            "print(outdir.ample_room(sys.argv[1], 2**20), outdir.ample_room(sys.argv[1], 2**21))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["True", "False"]


def test_layers_written_in_chunks_of_rows_read_back_as_written_whole(small_result, tmp_path,
                                                                     monkeypatch):
    """Layers written 2 rows at a time (appended to the layer) read back as the layers written
    in one piece: the same layers, fields and types, geometry type, ids, values, geometries
    (WKB) and spatial index. One village is a MultiPolygon among Polygons, so a chunk of
    Polygons alone (or of villages without polygons) would make another layer type."""
    import dataclasses

    import pandas as pd

    from ruralcov.report import gpkg

    villages = small_result.villages.copy()
    drawn = villages.index[villages.geometry.notna()]
    villages.loc[drawn[-1], "geometry"] = shapely.MultiPolygon(
        [villages.geometry[drawn[-1]], shapely.box(120, 30, 120.01, 30.01)])
    result = dataclasses.replace(small_result, villages=villages)
    assert len(villages) > 4 and set(villages.geom_type.dropna()) == {"Polygon", "MultiPolygon"}
    monkeypatch.setattr(gpkg, "LAYER_ROWS", 10**9)
    write_gpkg(result, tmp_path / "whole.gpkg", created=CREATED)
    monkeypatch.setattr(gpkg, "LAYER_ROWS", 2)
    write_gpkg(result, tmp_path / "chunks.gpkg", created=CREATED)
    write_gpkg(result, tmp_path / "again.gpkg", created=CREATED)
    whole, chunks = tmp_path / "whole.gpkg", tmp_path / "chunks.gpkg"
    assert chunks.read_bytes() == (tmp_path / "again.gpkg").read_bytes()  # `ruralcov verify`
    assert pyogrio.list_layers(whole).tolist() == pyogrio.list_layers(chunks).tolist()
    for name, _ in pyogrio.list_layers(whole):
        a, b = pyogrio.read_info(whole, layer=name), pyogrio.read_info(chunks, layer=name)
        assert a["features"] == b["features"] and a["geometry_type"] == b["geometry_type"]
        assert a["fields"].tolist() == b["fields"].tolist(), name
        assert a["dtypes"].tolist() == b["dtypes"].tolist(), name
        x = pyogrio.read_dataframe(whole, layer=name, fid_as_index=True)
        y = pyogrio.read_dataframe(chunks, layer=name, fid_as_index=True)
        pd.testing.assert_frame_equal(pd.DataFrame(x.drop(columns="geometry", errors="ignore")),
                                      pd.DataFrame(y.drop(columns="geometry", errors="ignore")))
        if "geometry" in x:
            assert x.geometry.to_wkb().tolist() == y.geometry.to_wkb().tolist(), name
    assert pyogrio.read_info(chunks, layer="villages")["geometry_type"] == "MultiPolygon"
    box = (112.5, 37.8, 112.6, 37.9)  # the spatial index answers as the one of the whole layer
    a = pyogrio.read_dataframe(whole, layer="villages", bbox=box, fid_as_index=True)
    b = pyogrio.read_dataframe(chunks, layer="villages", bbox=box, fid_as_index=True)
    assert a.index.tolist() == b.index.tolist() and len(a)
