"""The bad-input catalogue: every broken file is built here from the north world (tests/worlds.py).

Each case asserts its exact outcome, one of two:

- **error**: ``ruralcov run`` exits 2 with one line ``ruralcov: error: ...`` naming the problem
  (and the fix), no traceback, no run folder;
- **issue**: the run goes on; the finding is in the issues with its reason and row, the input's
  rows balance (read = used + dropped), and every village the broken row does not touch keeps
  the result known by construction (``worlds.EXPECTED``).
"""

from __future__ import annotations

import datetime
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import openpyxl
import pandas as pd
import pyproj
import pytest
import tomli_w
from click.testing import CliRunner
from shapely import Polygon, box

from ruralcov import analyse, load_config
from ruralcov.cli import cli
from ruralcov.crs import wgs84_to_gcj02
from ruralcov.validate import check_positions
from sheetcells import SAFE, claimed_lists, unsafe_cells
from worlds import EXPECTED, square, write_north_world

# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def world(tmp_path: Path) -> Path:
    return write_north_world(tmp_path / "in")


def edit(cfg: Path, changes: dict[str, object]) -> None:
    """Set (or with None remove) dotted keys: ``speed.download``, ``fibre.0.status``."""
    raw = tomllib.loads(cfg.read_text(encoding="utf-8"))
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        node: object = raw
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})  # type: ignore[index]
        if value is None:
            node.pop(key, None)  # type: ignore[union-attr]
        else:
            node[key] = value  # type: ignore[index]
    cfg.write_text(tomli_w.dumps(raw), encoding="utf-8")


def run_cli(cfg: Path, tmp_path: Path):
    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli, ["-q", "run", str(cfg), "--out", str(out), "--no-maps"], catch_exceptions=False
    )
    return result, out


def assert_error(cfg: Path, tmp_path: Path, *words: str) -> str:
    result, out = run_cli(cfg, tmp_path)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ruralcov: error: "), result.stderr
    assert "Traceback" not in result.output
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert not out.exists()
    return lines[0]


def found(result, layer: str, reason: str) -> pd.DataFrame:
    i = result.issues
    return i[(i["layer"] == layer) & (i["reason"] == reason)]


def record(result, layer: str):
    rec = next(r for r in result.inputs if r.layer == layer)
    assert rec.rows_read == rec.rows_used + sum(rec.dropped.values())
    return rec


def assert_intact(result, *, skip: tuple[str, ...] = ()) -> None:
    """Villages not in ``skip`` keep the answers known by construction."""
    v = result.villages.set_index("village_code")
    for code, (fibre, basis, nearby, tests, devices, median, cls) in EXPECTED.items():
        if code in skip:
            continue
        row = v.loc[code]
        got = (
            bool(row["fibre"]),
            row["fibre_basis"],
            bool(row["fibre_nearby"]),
            int(row["tests"]),
            int(row["devices"]),
            None if pd.isna(row["download_median_mbps"]) else float(row["download_median_mbps"]),
            row["speed_class"],
        )
        assert got == (fibre, basis, nearby, tests, devices, median, cls), code


def speed_frame(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "tests.csv")


def speed_as_gpkg(cfg: Path, frame: pd.DataFrame) -> None:
    """Speed tests as a GeoPackage (read whole by ``loaders.load_speed_tests``)."""
    gdf = gpd.GeoDataFrame(
        frame.drop(columns=["lon", "lat"]),
        geometry=gpd.points_from_xy(frame["lon"], frame["lat"]),
        crs="EPSG:4326",
    )
    gdf.to_file(cfg.parent / "tests.gpkg", layer="tests")
    edit(cfg, {"speed.path": "tests.gpkg", "speed.layer": "tests"})


def analysed(cfg: Path):
    return analyse(load_config(cfg))


def speeds_in(folder: Path, per_mbps: float) -> pd.DataFrame:
    """The world's tests with download and upload written in another unit (1000: kbit/s,
    10^6: bit/s); latency stays in milliseconds. Whole numbers times 1000 are exact."""
    frame = speed_frame(folder)
    frame[["down", "up"]] = frame[["down", "up"]] * per_mbps
    return frame


def write_as(cfg: Path, frame: pd.DataFrame, fmt: str) -> None:
    """The tests as the world's CSV (streamed), a Parquet file (streamed) or a GeoPackage
    (read whole by the loader)."""
    if fmt == "gpkg":
        speed_as_gpkg(cfg, frame)
    elif fmt == "parquet":
        frame.to_parquet(cfg.parent / "tests.parquet")
        edit(cfg, {"speed.path": "tests.parquet"})
    else:
        frame.to_csv(cfg.parent / "tests.csv", index=False)


# --- errors: exit 2, one line ----------------------------------------------------------------


def test_e01_missing_file(world, tmp_path):
    edit(world, {"villages.path": "nowhere.csv"})
    assert_error(world, tmp_path, "nowhere.csv", "not found")


def test_e02_empty_file(world, tmp_path):
    (world.parent / "register.csv").write_bytes(b"")
    assert_error(world, tmp_path, "register.csv", "is empty")


def test_e03_header_without_rows(world, tmp_path):
    (world.parent / "register.csv").write_text("code,name,kind,township,county\n", "utf-8")
    assert_error(world, tmp_path, "register.csv", "no data rows")


def test_e04_lying_extension_parquet_named_csv(world, tmp_path):
    speed_frame(world.parent).to_parquet(world.parent / "tests.csv")
    assert_error(world, tmp_path, "tests.csv", "holds Parquet data", "rename it to tests.parquet")


def test_e05_lying_extension_geojson_named_gpkg(world, tmp_path):
    polys = gpd.read_file(world.parent / "polygons.gpkg", layer="villages")
    (world.parent / "polygons.gpkg").write_text(polys.to_json(), encoding="utf-8")
    assert_error(world, tmp_path, "polygons.gpkg", "GeoJSON/JSON text", "polygons.geojson")


def test_e06_corrupt_parquet(world, tmp_path):
    path = world.parent / "tests.parquet"
    speed_frame(world.parent).to_parquet(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated: the footer is gone
    edit(world, {"speed.path": "tests.parquet"})
    assert_error(world, tmp_path, "tests.parquet", "Parquet")


def test_e07_unsupported_format(world, tmp_path):
    (world.parent / "register.docx").write_bytes((world.parent / "register.csv").read_bytes())
    edit(world, {"villages.path": "register.docx"})
    assert_error(world, tmp_path, "register.docx", "unsupported format '.docx'")


def test_e08_misspelt_column_in_config(world, tmp_path):
    edit(world, {"villages.code": "cdoe"})
    assert_error(world, tmp_path, "'cdoe'", "did you mean 'code'?")


def test_e09_misspelt_header_in_file(world, tmp_path):
    path = world.parent / "register.csv"
    text = path.read_text(encoding="utf-8-sig").replace("code,name,", "code,nmae,", 1)
    path.write_text(text, encoding="utf-8")
    assert_error(world, tmp_path, "['name']", "did you mean 'nmae'?")


def test_e10_misspelt_status_column(world, tmp_path):
    edit(world, {"fibre.0.status": "staus"})
    assert_error(world, tmp_path, "fibre[0]", "'staus'", "did you mean 'status'?")


def test_e11_misspelt_config_key(world, tmp_path):
    raw = tomllib.loads(world.read_text(encoding="utf-8"))
    raw["fibre"][0]["max_distanc_m"] = raw["fibre"][0].pop("max_distance_m")
    world.write_text(tomli_w.dumps(raw), encoding="utf-8")
    assert_error(world, tmp_path, "max_distanc_m", "did you mean 'max_distance_m'?")


def test_e12_misspelt_config_section(world, tmp_path):
    raw = tomllib.loads(world.read_text(encoding="utf-8"))
    raw["speeed"] = raw.pop("speed")
    world.write_text(tomli_w.dumps(raw), encoding="utf-8")
    assert_error(world, tmp_path, "speeed", "did you mean 'speed'?")


def test_e13_unknown_key_without_close_match(world, tmp_path):
    edit(world, {"speed.colour": "red"})
    line = assert_error(world, tmp_path, "unknown key(s) ['colour'] in [speed]", "allowed keys")
    assert "did you mean" not in line


def test_e14_misspelt_fibre_kind(world, tmp_path):
    edit(world, {"fibre.0.kind": "acess_points"})
    assert_error(world, tmp_path, "'acess_points'", "did you mean 'access_points'?")


def test_e15_points_given_as_villages(world, tmp_path):
    polys = gpd.read_file(world.parent / "polygons.gpkg", layer="villages")
    polys.geometry = polys.geometry.representative_point()
    polys.to_file(world.parent / "polygons.gpkg", layer="villages")
    assert_error(world, tmp_path, "boundaries", "every geometry is a Point", "polygons")


def test_e16_lat_lon_swapped_in_tests(world, tmp_path):
    frame = speed_frame(world.parent).rename(columns={"lon": "lat", "lat": "lon"})
    frame.to_csv(world.parent / "tests.csv", index=False)
    # 69.6°E 18.9°N is a valid place (the Arabian Sea): only the villages' extent tells
    assert_error(world, tmp_path, "speed", "look swapped", "exchange the lon and lat")


def test_e17_lat_lon_swapped_in_fibre_csv(world, tmp_path):
    aps = gpd.read_file(world.parent / "access_points.gpkg", layer="nodes")
    pd.DataFrame(
        {
            "asset_id": aps["asset_id"],
            "status": aps["status"],
            "lon": aps.geometry.y,
            "lat": aps.geometry.x,
        }
    ).to_csv(world.parent / "aps.csv", index=False)
    edit(world, {"fibre.0.path": "aps.csv", "fibre.0.layer": None, "fibre.0.crs": "EPSG:4326"})
    assert_error(world, tmp_path, "fibre[0]", "look swapped")


def test_e18_projected_coordinates_declared_as_4326(world, tmp_path):
    frame = speed_frame(world.parent)
    to_utm = pyproj.Transformer.from_crs(4326, 32634, always_xy=True)
    frame["lon"], frame["lat"] = to_utm.transform(frame["lon"].to_numpy(), frame["lat"].to_numpy())
    frame.to_csv(world.parent / "tests.csv", index=False)
    assert_error(world, tmp_path, "tests.csv", "projected", "EPSG:4326")


def test_e19_no_crs_and_none_configured(world, tmp_path):
    edit(world, {"speed.crs": None})
    assert_error(world, tmp_path, "tests.csv", "has no CRS", 'crs = "EPSG:4326"')


def test_e20_gb18030_read_as_utf8(world, tmp_path):
    path = world.parent / "register.csv"
    path.write_bytes(path.read_text(encoding="utf-8-sig").encode("gb18030"))
    assert_error(world, tmp_path, "register.csv", "not valid utf-8", 'encoding = "gb18030"')


def test_e21_utf8_declared_as_gb18030(world, tmp_path):
    edit(world, {"villages.encoding": "gb18030"})
    assert_error(world, tmp_path, "register.csv", "looks like UTF-8", 'encoding = "utf-8"')


def test_e22_mixed_encodings(world, tmp_path):
    path = world.parent / "register.csv"
    data = path.read_bytes() + "V7,Østby,village,T2,K1\r\n".encode("gb18030")
    path.write_bytes(data)
    assert_error(world, tmp_path, "register.csv", "not valid utf-8")


def test_e23_no_row_of_kind_village(world, tmp_path):
    path = world.parent / "register.csv"
    frame = pd.read_csv(path, encoding="utf-8-sig", dtype=str)
    frame["kind"] = "community"
    frame.to_csv(path, index=False)
    assert_error(world, tmp_path, "none of the 8 rows", "administrative village", "'kind' column")


LEDGER_HEAD = "village_code,field,value,reason,evidence,author,date\n"


def test_e24_correction_for_unknown_code(world, tmp_path):
    (world.parent / "ledger.csv").write_text(
        LEDGER_HEAD + "V99,fibre,yes,asset_verified_on_site,photo 1,Kari,2026-05-02\n", "utf-8"
    )
    edit(world, {"corrections.path": "ledger.csv"})
    assert_error(world, tmp_path, "ledger.csv", "row 1", "'V99' is not in the register")


def test_e25_correction_with_unknown_reason(world, tmp_path):
    (world.parent / "ledger.csv").write_text(
        LEDGER_HEAD + "V3,fibre,no,asset_not_in_servce,photo 1,Kari,2026-05-02\n", "utf-8"
    )
    edit(world, {"corrections.path": "ledger.csv"})
    assert_error(world, tmp_path, "row 1", "did you mean 'asset_not_in_service'?")


def test_e26_misspelt_download_column(world, tmp_path):
    speed_as_gpkg(world, speed_frame(world.parent))
    edit(world, {"speed.download": "dwon"})
    assert_error(world, tmp_path, "'dwon'", "did you mean 'down'?")


def test_e27_missing_speed_file(world, tmp_path):
    (world.parent / "tests.csv").unlink()
    assert_error(world, tmp_path, "speed", "tests.csv", "not found")


def _recode_register(cfg: Path, change) -> None:
    """Rewrite the register's code column through ``change`` (as a spreadsheet saved it)."""
    path = cfg.parent / "register.csv"
    reg = pd.read_csv(path, encoding="utf-8-sig", dtype=str)
    reg["code"] = reg["code"].map(change)
    reg.to_csv(path, index=False)


EXCEL_FIX = "format the column as text in the spreadsheet and export again"


@pytest.mark.parametrize(
    ("style", "shown"),
    [("{:.5E}", "1.40105E+11"), ("{:.1e}", "1.4e+11")],
    ids=["excel", "python"],
)
def test_e28_register_codes_in_scientific_notation(world, tmp_path, style, shown):
    _as_cn_nbs(world)
    # Excel shows and saves 140105001001 as 1.40105E+11: the eight villages would be one.
    _recode_register(world, lambda c: style.format(int(c)))
    assert_error(world, tmp_path, "register.csv", "column 'code'", f"row 1 '{shown}'",
                 "scientific notation", EXCEL_FIX)


def test_e29_register_codes_with_trailing_dot_zero(world, tmp_path):
    _as_cn_nbs(world)
    _recode_register(world, lambda c: f"{c}.0")  # a float column written out by a script
    assert_error(world, tmp_path, "register.csv", "column 'code'", "row 1 '140105001001.0'",
                 "'.0'", EXCEL_FIX)


def test_e30_register_code_shorter_than_the_register(world, tmp_path):
    codes = _as_cn_nbs(world)
    _recode_register(world, lambda c: "14010500200" if c == codes["V6"] else c)  # 11 digits
    assert_error(world, tmp_path, "register.csv", "column 'code'", "row 6 '14010500200'",
                 "fewer digits than the 12", EXCEL_FIX)


def test_e31_generic_register_codes_that_lost_leading_zeros(world, tmp_path):
    path = world.parent / "register.csv"
    reg = pd.read_csv(path, encoding="utf-8-sig", dtype=str)
    extra = pd.DataFrame({"code": ["Y1", "Y2", "Y3"], "name": "Gard", "kind": "other",
                          "township": "T2", "county": "K1"})
    reg = pd.concat([reg, extra], ignore_index=True)
    # 11 codes of 7 digits; Excel drops the leading zero of one (the rule needs >= 90 %)
    reg["code"] = [f"07{i:05d}" for i in range(1, 12)]
    reg.loc[5, "code"] = reg.loc[5, "code"].lstrip("0")
    reg.to_csv(path, index=False)
    assert_error(world, tmp_path, "register.csv", "column 'code'", "row 6 '700006'",
                 "fewer digits than the 7", EXCEL_FIX)


def test_e32_boundary_code_shorter_than_the_register(world, tmp_path):
    codes = _as_cn_nbs(world)
    path = world.parent / "polygons.gpkg"
    polys = gpd.read_file(path, layer="villages")
    polys.loc[polys["vcode"] == codes["V1"], "vcode"] = "14010500100"
    polys.to_file(path, layer="villages")
    assert_error(world, tmp_path, "polygons.gpkg", "column 'vcode'", "'14010500100'",
                 "fewer digits than the 12")


def test_e33_boundary_float_code_that_is_no_whole_number(world, tmp_path):
    codes = _as_cn_nbs(world)
    path = world.parent / "polygons.gpkg"
    polys = gpd.read_file(path, layer="villages")
    polys["vcode"] = polys["vcode"].astype(float)
    polys.loc[polys["vcode"] == float(codes["V1"]), "vcode"] = 140105001001.5
    polys.to_file(path, layer="villages")
    assert_error(world, tmp_path, "polygons.gpkg", "column 'vcode'", "not an exact whole number",
                 "store the codes as text")


@pytest.mark.parametrize("target", ["fibre_table", "corrections", "names"])
def test_e34_spreadsheet_codes_in_other_inputs(world, tmp_path, target):
    codes = _as_cn_nbs(world)
    folder = world.parent
    if target == "fibre_table":
        op = pd.read_csv(folder / "operator.csv", dtype=str)
        op["village_code"] = op["village_code"].map(lambda c: f"{int(c):.5E}")
        op.to_csv(folder / "operator.csv", index=False)
        words = ("operator.csv", "column 'village_code'", "'1.40105E+11'", EXCEL_FIX)
    elif target == "corrections":
        (folder / "ledger.csv").write_text(
            LEDGER_HEAD + "1.40105E+11,fibre,yes,asset_verified_on_site,photo 1,Kari,2026-05-02\n",
            "utf-8",
        )
        edit(world, {"corrections.path": "ledger.csv"})
        words = ("ledger.csv", "column 'village_code'", "'1.40105E+11'", EXCEL_FIX)
    else:
        towns = sorted({c[:9] for c in codes.values()})
        pd.DataFrame({"code": [f"{t}.0" for t in towns], "name": ["Nord", "Sør"]}).to_csv(
            folder / "towns.csv", index=False
        )
        edit(world, {"villages.names": {"township": "towns.csv"}})
        words = ("names.township", "towns.csv", "column 'code'", "'140105001.0'", EXCEL_FIX)
    assert_error(world, tmp_path, *words)


@pytest.mark.parametrize("file", ["register.csv", "tests.csv", "tests.parquet"])
def test_e35_column_named_twice(world, tmp_path, file):
    path = world.parent / file
    if file == "register.csv":
        text = path.read_text(encoding="utf-8-sig").splitlines()
        # a copy of the township column pasted at the end, under the header 'code'
        rows = [line + "," + line.split(",")[3] for line in text[1:]]
        path.write_text("\n".join([text[0] + ",code", *rows]) + "\n", encoding="utf-8")
        column = "'code'"
    else:  # the tests go through the streaming engine, which reads its own headers
        frame = speed_frame(world.parent)
        data = [frame[c].tolist() for c in frame.columns] + [frame["up"].tolist()]
        names = [*frame.columns, "down"]
        if file == "tests.csv":
            pd.DataFrame(dict(enumerate(data))).set_axis(names, axis=1).to_csv(path, index=False)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_arrays([pa.array(d) for d in data], names=names), path)
            edit(world, {"speed.path": file})
        column = "'down'"
    assert_error(world, tmp_path, file, f"the column {column} twice", "Rename or remove one")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("village_download_mbps", -5.0),
        ("community_download_mbps", -1.0),
        ("village_download_mbps", float("nan")),
        ("community_download_mbps", float("inf")),
    ],
)
def test_e36_speed_target_negative_or_not_finite(world, tmp_path, key, value):
    edit(world, {f"targets.{key}": value})
    assert_error(world, tmp_path, f"[targets] {key}")


@pytest.mark.parametrize("fmt", ["csv", "gpkg"])
def test_e37_download_in_kbps_read_as_mbps(world, tmp_path, fmt):
    """The issue's case: kbit/s read as Mbit/s dropped most tests as absurd and published the
    survivors' villages; now the run stops and names the setting (stream and loader)."""
    write_as(world, speeds_in(world.parent, 1000), fmt)
    line = assert_error(world, tmp_path, "'down'", f"tests.{fmt}", "median", "Mbit/s",
                        "kbit/s", 'download_unit = "kbps"', "[speed]")
    assert "above 10,000 Mbit/s" in line  # what was seen: the absurd share too


@pytest.mark.parametrize("fmt", ["csv", "gpkg"])
def test_e38_download_in_bps_read_as_mbps(world, tmp_path, fmt):
    write_as(world, speeds_in(world.parent, 1e6), fmt)
    line = assert_error(world, tmp_path, "'down'", "bit/s", 'download_unit = "bps"')
    assert "30 (100.0%) are above 10,000 Mbit/s" in line  # every located numeric test


def test_e39_mbps_declared_as_kbps(world, tmp_path):
    """The other side: Mbit/s values divided by 1000 give a median far below 0.1 Mbit/s."""
    edit(world, {"speed.download_unit": "kbps"})
    assert_error(world, tmp_path, "'down'", "does not read as kbit/s", "0.1 to 2,000",
                 'download_unit = "mbps"')


def test_e40_download_unit_for_ookla_tiles_and_unknown_units(world, tmp_path):
    edit(world, {"speed.download_unit": "kbit"})
    assert_error(world, tmp_path, "download_unit", "'kbit'", "mbps", "kbps", "bps")
    edit(world, {"speed.download_unit": "kbps", "speed.kind": "ookla_tiles",
                 "speed.network": "fixed"})
    assert_error(world, tmp_path, "download_unit", "ookla_tiles", "kbit/s")


def ledger_xlsx(cfg: Path, rows: list[list[object]]) -> Path:
    """The corrections ledger as an xlsx written by openpyxl (as a script would write it:
    formulas without computed values), on sheet ``ledger``."""
    book = openpyxl.Workbook()
    ws = book.active
    ws.title = "ledger"
    ws.append(LEDGER_HEAD.strip().split(","))
    for row in rows:
        ws.append(row)
    path = cfg.parent / "ledger.xlsx"
    book.save(path)
    edit(cfg, {"corrections.path": "ledger.xlsx"})
    return path


def test_e41_ledger_formula_without_value(world, tmp_path):
    ledger_xlsx(world, [["V3", "fibre", '=IF(1,"yes","no")', "asset_verified_on_site",
                         "photo 1", "Kari", "2026-05-02"]])
    assert_error(world, tmp_path, "corrections", "ledger.xlsx", "ledger!C2",
                 "formulas without a computed value", "save it", "Paste Special, Values")


#: Broken manifests: raw text, or a change to the real one.
BROKEN_MANIFESTS = {
    "not JSON": "{",
    "not UTF-8": b"\xff\xfe{}",
    "a list": "[]",
    "no keys": "{}",
    "created not a time": lambda m: m.__setitem__("created", "yesterday"),
    "rows as text": lambda m: m["inputs"][0].__setitem__("rows_read", "12"),
    "a hash as a number": lambda m: m["outputs"].__setitem__("report.html", 5),
}


@pytest.mark.parametrize(("command", "broken"), [
    *(("verify", name) for name in BROKEN_MANIFESTS),
    ("audit", "a list"), ("plan", "no keys"), ("map", "rows as text"),
])
def test_e42_run_folder_with_a_broken_manifest(world, tmp_path, command, broken):
    result, out = run_cli(world, tmp_path)
    assert result.exit_code == 0, result.output
    path = out / "manifest.json"
    change = BROKEN_MANIFESTS[broken]
    if callable(change):
        manifest = json.loads(path.read_text(encoding="utf-8"))
        change(manifest)
        change = json.dumps(manifest)
    path.write_bytes(change if isinstance(change, bytes) else change.encode("utf-8"))
    claimed = tmp_path / "claimed.csv"
    claimed.write_text("village_code\nV1\n", encoding="utf-8")
    args = {"audit": ["--claimed", str(claimed)], "plan": ["--no-maps"]}.get(command, [])
    result = CliRunner().invoke(cli, ["-q", command, str(out), *args], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ruralcov: error: "), result.stderr
    assert "manifest.json" in lines[0] and "Traceback" not in result.output


# --- the run folder cannot be written: exit 2, one line, the previous run untouched ----------
# Real file systems, no mocks: a 1 MiB tmpfs (full, or read-only), a process file-size limit.
# Mounting needs root, as `make test` in CI has; elsewhere these cases fail, never skip.


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def assert_write_error(args: list, *words: str, env: dict | None = None,
                       limit_bytes: int | None = None) -> str:
    """``ruralcov -q ARGS`` in a subprocess: exit 2 and one line holding ``words``."""
    def limited() -> None:  # the process may write no file larger than limit_bytes
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    done = subprocess.run(
        [sys.executable, "-m", "ruralcov.cli", "-q", *map(str, args)], capture_output=True,
        text=True, encoding="utf-8", env=env, timeout=300,
        preexec_fn=limited if limit_bytes is not None else None,
    )
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ruralcov: error: "), done.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


@pytest.fixture
def disk(tmp_path: Path):
    """A 1 MiB tmpfs at ``tmp_path/disk``, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.fail("this case mounts a 1 MiB tmpfs and needs root (CI runs the tests as root)")
    folder = tmp_path / "disk"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], check=True)
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=True)


def _fill(folder: Path, *, leave: int) -> None:
    """Fill the file system of ``folder`` until about ``leave`` bytes are free."""
    free = shutil.disk_usage(folder).free
    (folder / "filler").write_bytes(b"\0" * max(free - leave, 0))
    assert shutil.disk_usage(folder).free <= leave + 4096


def _previous_run(cfg: Path, out: Path) -> dict[str, bytes]:
    result = CliRunner().invoke(cli, ["-q", "run", str(cfg), "--out", str(out), "--no-maps"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return _files(out)


def _untouched(out: Path, before: dict[str, bytes]) -> None:
    assert _files(out) == before
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith("run.")) == []


def cli_error(args: list, *words: str) -> str:
    """``ruralcov -q ARGS`` in this process: exit 2 and one line holding ``words``."""
    result = CliRunner().invoke(cli, ["-q", *map(str, args)])
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert line.startswith("ruralcov: error: ") and "\n" not in line, result.stderr
    for word in words:
        assert word in line, (word, line)
    return line


def test_e43_parent_of_out_is_a_file(world, tmp_path):
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    cli_error(["run", world, "--out", tmp_path / "notes.txt" / "run", "--no-maps"],
              "Not a directory (ENOTDIR)", "is a file, not a folder")
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_e44_run_name_too_long_for_the_file_system(world, tmp_path, monkeypatch):
    edit(world, {"run.name": "n" * 250})  # a legal name, but out/<name>.tmp-* is too long
    monkeypatch.chdir(tmp_path)
    cli_error(["run", world, "--no-maps"], "File name too long (ENAMETOOLONG)", "shorter")
    assert not (tmp_path / "out").exists()  # the folders it made for the run are gone again


def test_e45_symbolic_link_loop_in_out(world, tmp_path):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    cli_error(["run", world, "--out", tmp_path / "loop" / "run", "--no-maps"],
              "(ELOOP)", "symbolic link")


def test_e46_disk_too_full_before_the_analysis(world, disk):
    out = disk / "run"
    before = _previous_run(world, out)
    _fill(disk, leave=16 * 1024)  # less than the village inputs (polygons.gpkg: ~100 kB)
    assert_write_error(["run", world, "--out", out, "--no-maps", "--force"],
                       "kB free", "needs at least", "free some space")
    _untouched(out, before)


def test_e47_disk_full_while_writing(world, disk):
    polys = gpd.read_file(world.parent / "polygons.gpkg", layer="villages")
    polys.to_file(world.parent / "polygons.geojson")  # 2 kB: the preflight's floor is low
    edit(world, {"boundaries.path": "polygons.geojson", "boundaries.layer": None})
    out = disk / "run"
    before = _previous_run(world, out)
    _fill(disk, leave=48 * 1024)  # above the floor, below the run folder (~100 kB on tmpfs)
    assert_write_error(["run", world, "--out", out, "--no-maps", "--force"],
                       "No space left on device (ENOSPC)", str(out), "free some space")
    _untouched(out, before)


def test_e48_file_too_large_for_the_process(world, tmp_path):
    out = tmp_path / "run"
    before = _previous_run(world, out)
    assert_write_error(["run", world, "--out", out, "--no-maps", "--force"],
                       "File too large (EFBIG)", str(out), "ulimit -f", limit_bytes=20_000)
    _untouched(out, before)


def test_e49_read_only_output(world, disk):
    out = disk / "run"
    before = _previous_run(world, out)
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    assert_write_error(["run", world, "--out", out, "--no-maps", "--force"],
                       "Read-only file system (EROFS)", "read-only", "another --out")
    _untouched(out, before)


def test_e50_run_name_that_climbs_out_of_out(world, tmp_path, monkeypatch):
    edit(world, {"run.name": "../../../pwn"})  # out/../../../pwn from a/b/c would be a/pwn
    here = tmp_path / "a" / "b" / "c"
    here.mkdir(parents=True)
    monkeypatch.chdir(here)
    cli_error(["run", world, "--no-maps"],
              "[run] name '../../../pwn' is not a plain folder name")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")
                  if not p.is_relative_to(world.parent)) == ["a", "a/b", "a/b/c"]


def test_e51_ookla_method_misspelt_or_on_tests(world, tmp_path):
    tiles = {"speed.kind": "ookla_tiles", "speed.network": "fixed"}
    edit(world, {**tiles, "speed.weighting": "tile"})
    assert_error(world, tmp_path, "[speed] weighting 'tile'", "did you mean 'tiles'?")
    edit(world, {"speed.weighting": None, "speed.assignment": "intersect"})
    assert_error(world, tmp_path, "[speed] assignment 'intersect'", "did you mean 'intersects'?")
    edit(world, {"speed.assignment": None, "speed.pool": True})
    assert_error(world, tmp_path, "pool = true", "give periods")
    # a tile method on per-test records would be ignored silently: it stops the run
    edit(world, {"speed.pool": None, "speed.kind": None, "speed.network": None,
                 "speed.weighting": "tiles"})
    assert_error(world, tmp_path, 'weighting: only for kind = "ookla_tiles"', "not 'tests'")


def test_e52_preset_without_devices_given_min_devices(world, tmp_path):
    # M-Lab's unified views carry no device id: min_devices could never be applied
    edit(world, {"speed.preset": "mlab_ndt", "speed.device": None})
    assert_error(world, tmp_path, 'preset = "mlab_ndt" has no device column',
                 "min_devices = 3 could never be applied", "set min_devices = 0")


def test_e53_demo_province_not_in_the_register(tmp_path):
    out = tmp_path / "demo"
    cli_error(["demo", "--province", "64", "--province", "99", "--out", out],
              "--province 99: not a province code of the register", "64, 65")
    assert not out.exists() and list(tmp_path.iterdir()) == []

def test_e54_dask_scheduler_unreachable_or_without_workers(world, tmp_path):
    """A wrong [run] dask_scheduler stops the run before it reads any input (the register is
    gone here, and the message is still about the scheduler)."""
    pytest.importorskip("dask.distributed")
    from daskprocs import dask_cluster, free_port

    (world.parent / "register.csv").unlink()
    closed = f"tcp://127.0.0.1:{free_port()}"
    edit(world, {"run.engine": "dask", "run.dask_scheduler": closed})
    assert_error(world, tmp_path, f"[run] dask_scheduler = '{closed}'",
                 "no Dask scheduler answered within 5 s", "`dask scheduler`")
    edit(world, {"run.dask_scheduler": "tcp://127.0.0.1"})  # the port forgotten
    assert_error(world, tmp_path, "is not a scheduler address (missing port number",
                 "tcp://host:8786")
    with dask_cluster(tmp_path / "logs", workers=0) as address:  # a scheduler, no worker
        edit(world, {"run.dask_scheduler": address})
        assert_error(world, tmp_path, "the scheduler has no workers after 5 s",
                     f"`dask worker {address} --nthreads 1`")

# --- recorded issues: the run goes on --------------------------------------------------------


def test_i01_duplicate_village_code(world):
    path = world.parent / "register.csv"
    frame = pd.read_csv(path, encoding="utf-8-sig", dtype=str)
    extra = frame.iloc[[2]].assign(name="Austby II")
    pd.concat([frame, extra]).to_csv(path, index=False)
    result = analysed(world)
    hits = found(result, "villages", "duplicate_code")
    assert hits[["row", "code"]].values.tolist() == [[9, "V3"]] and hits["dropped"].all()
    assert record(result, "villages").dropped == {"duplicate_code": 1}
    assert len(result.villages) == 8  # the first V3 is kept
    assert result.villages.set_index("village_code").loc["V3", "village_name"] == "Austby"
    assert_intact(result)


def _as_cn_nbs(cfg: Path) -> dict[str, str]:
    """The north world with 12-digit cn-nbs codes and Chinese committee names."""
    codes = {
        "V1": "140105001001",
        "V2": "140105001002",
        "V3": "140105001003",
        "V4": "140105002001",
        "V5": "140105002002",
        "V6": "140105002003",
        "C1": "140105002004",
        "X1": "140105002005",
    }
    folder = cfg.parent
    reg = pd.read_csv(folder / "register.csv", encoding="utf-8-sig", dtype=str)
    suffix = {"village": "村委会", "community": "居委会", "other": ""}
    reg["name"] = reg["name"] + reg["kind"].map(suffix)
    reg["township"] = reg["code"].map(codes).str[:9]
    reg["code"] = reg["code"].map(codes)
    reg.drop(columns=["kind", "county"]).to_csv(folder / "register.csv", index=False)
    polys = gpd.read_file(folder / "polygons.gpkg", layer="villages")
    polys["vcode"] = polys["vcode"].map(codes)
    polys.to_file(folder / "polygons.gpkg", layer="villages")
    op = pd.read_csv(folder / "operator.csv", dtype=str)
    op["village_code"] = op["village_code"].map(codes)
    op.to_csv(folder / "operator.csv", index=False)
    edit(cfg, {"villages.register": "cn-nbs", "villages.levels": None, "villages.kind": None})
    return codes


@pytest.mark.parametrize("bad", ["1401050020030", "14010500200X"], ids=["13-digits", "letter"])
def test_i02_code_of_wrong_length(world, bad):
    # A code shorter than 12 digits lost digits in a spreadsheet: an error (test_e30).
    codes = _as_cn_nbs(world)
    path = world.parent / "register.csv"
    reg = pd.read_csv(path, dtype=str)
    reg.loc[reg["code"] == codes["V6"], "code"] = bad
    reg.to_csv(path, index=False)
    result = analysed(world)
    hits = found(result, "villages", "bad_code")
    assert hits[["row", "code"]].values.tolist() == [[6, bad]]
    assert not hits["dropped"].any() and len(result.villages) == 8
    back = {v: k for k, v in codes.items()}
    result.villages["village_code"] = result.villages["village_code"].map(back)
    assert_intact(result, skip=("V6",))


def test_i03_code_prefix_disagrees_with_township(world):
    codes = _as_cn_nbs(world)
    path = world.parent / "register.csv"
    reg = pd.read_csv(path, dtype=str)
    reg.loc[reg["code"] == codes["V3"], "township"] = "140105002"  # the code says ...001
    reg.to_csv(path, index=False)
    edit(world, {"villages.levels": {"township": "township"}})
    result = analysed(world)
    hits = found(result, "villages", "code_parent_mismatch")
    assert hits[["row", "code"]].values.tolist() == [[3, codes["V3"]]]
    assert "140105001" in hits["message"].iat[0] and "140105002" in hits["message"].iat[0]
    v = result.villages.set_index("village_code")
    assert v.loc[codes["V3"], "township_code"] == "140105001"  # the code's prefix is used
    assert record(result, "villages").dropped == {}


def _replace_polygon(cfg: Path, code: str, geom) -> None:
    path = cfg.parent / "polygons.gpkg"
    polys = gpd.read_file(path, layer="villages")
    geoms = list(polys.geometry)
    geoms[polys.index[polys["vcode"] == code][0]] = geom
    gpd.GeoDataFrame({"vcode": polys["vcode"]}, geometry=geoms, crs=4326).to_file(
        path, layer="villages"
    )


def test_i04_self_intersecting_polygon_is_repaired(world):
    x0, y0, x1, y1 = square(0, 0).bounds
    xm = (x0 + x1) / 2
    # V1's square with a zero-width spike up its middle: self-intersecting, same area
    spiked = Polygon([(x0, y0), (x1, y0), (x1, y1), (xm, y1), (xm, y1 + 0.004), (xm, y1), (x0, y1)])
    assert not spiked.is_valid
    _replace_polygon(world, "V1", spiked)
    result = analysed(world)
    hits = found(result, "boundaries", "invalid_geometry_repaired")
    assert hits[["row", "code"]].values.tolist() == [[1, "V1"]] and not hits["dropped"].any()
    v1 = result.villages.set_index("village_code").loc["V1", "geometry"]
    assert v1.is_valid and v1.equals(square(0, 0))
    assert_intact(result)


@pytest.mark.parametrize("geom", [Polygon(), None], ids=["empty", "null"])
def test_i05_empty_and_null_geometry(world, geom):
    _replace_polygon(world, "V5", geom)
    result = analysed(world)
    hits = found(result, "boundaries", "missing_geometry")
    assert hits[["row", "code"]].values.tolist() == [[5, "V5"]] and hits["dropped"].all()
    assert record(result, "boundaries").dropped == {"missing_geometry": 1}
    v = result.villages.set_index("village_code")
    assert not v.loc["V5", "has_geometry"]
    assert_intact(result)  # V5 had no evidence anyway: it stays in the denominator


def test_i06_one_point_among_polygons(world):
    _replace_polygon(world, "V5", square(1, 1).centroid)
    result = analysed(world)
    hits = found(result, "boundaries", "not_a_polygon")
    assert hits[["row", "code"]].values.tolist() == [[5, "V5"]] and hits["dropped"].all()
    assert not result.villages.set_index("village_code").loc["V5", "has_geometry"]
    assert_intact(result)


def test_i07_boundary_with_unknown_code(world):
    path = world.parent / "polygons.gpkg"
    polys = gpd.read_file(path, layer="villages")
    extra = gpd.GeoDataFrame({"vcode": ["Q9"]}, geometry=[square(5, 5)], crs=4326)
    pd.concat([polys, extra], ignore_index=True).to_file(path, layer="villages")
    result = analysed(world)
    hits = found(result, "boundaries", "unknown_code")
    assert hits[["row", "code"]].values.tolist() == [[7, "Q9"]]
    assert record(result, "boundaries").dropped == {"unknown_code": 1}
    assert_intact(result)


def test_i08_coordinates_outside_the_valid_range(world):
    frame = speed_frame(world.parent)
    frame.loc[len(frame)] = {
        "lon": X_V5,
        "lat": 95.0,
        "down": 50,
        "up": 1,
        "ping": 1,
        "device": "z",
    }
    frame.to_csv(world.parent / "tests.csv", index=False)
    result = analysed(world)
    speed = result.issues[result.issues["layer"] == "speed"]
    hit = speed[speed["row"] == len(frame)]
    assert len(hit) == 1 and hit["dropped"].all() and "range" in hit["reason"].iat[0]
    rec = record(result, "speed")
    assert rec.rows_read == 33 and rec.rows_used == 29
    assert_intact(result)


X_V5 = square(1, 1).centroid.x


def test_i09_nan_speed(world):
    frame = speed_frame(world.parent)
    frame.loc[0, "down"] = np.nan  # one of V1's seven tests
    frame.to_csv(world.parent / "tests.csv", index=False)
    result = analysed(world)
    hits = found(result, "speed", "bad_download")
    assert hits["row"].tolist() == [1] and hits["dropped"].all()
    v1 = result.villages.set_index("village_code").loc["V1"]
    assert int(v1["tests"]) == 6 and v1["speed_class"] == "meets"
    assert_intact(result, skip=("V1",))


def test_i10_negative_speed(world):
    result = analysed(world)  # the world has one on purpose (row 30)
    hits = found(result, "speed", "negative_speed")
    assert hits["row"].tolist() == [30] and hits["dropped"].all()
    assert_intact(result)


def test_i11_absurd_speed(world):
    frame = speed_frame(world.parent)
    frame.loc[len(frame)] = {**frame.iloc[0].to_dict(), "down": 25_000.0}  # 25 Gbit/s in V1
    speed_as_gpkg(world, frame)
    result = analysed(world)
    hits = found(result, "speed", "absurd_speed")
    assert hits["row"].tolist() == [len(frame)] and hits["dropped"].all()
    assert "10 Gbit/s" in hits["message"].iat[0]
    assert record(result, "speed").dropped["absurd_speed"] == 1
    assert_intact(result)


@pytest.mark.parametrize(("fmt", "per_mbps", "unit"), [("csv", 1000, "kbps"),
                                                      ("parquet", 1000, "kbps"),
                                                      ("gpkg", 1000, "kbps"),
                                                      ("csv", 1e6, "bps")])
def test_i11b_speeds_in_kbps_with_download_unit(world, fmt, per_mbps, unit):
    """With the unit declared, the kbit/s (bit/s) world gives exactly the world's answers,
    known by construction; upload is converted too (a quarter of each download), latency not."""
    write_as(world, speeds_in(world.parent, per_mbps), fmt)
    edit(world, {"speed.download_unit": unit})
    result = analysed(world)
    assert_intact(result)
    assert len(found(result, "speed", "absurd_speed")) == 0
    v = result.villages[result.villages["tests"] > 0]
    assert (v["upload_median_mbps"] == v["download_median_mbps"] / 4).all()
    assert (v["latency_median_ms"] == 20.0).all()
    assert result.config.speed.download_unit == unit


def test_i12_duplicate_tests(world):
    frame = speed_frame(world.parent)
    v3_first = frame.index[frame["down"] == 4.0][0]
    frame = pd.concat([frame, frame.loc[[v3_first, v3_first]]], ignore_index=True)
    speed_as_gpkg(world, frame)
    result = analysed(world)
    hits = found(result, "speed", "duplicate_test")
    assert hits["row"].tolist() == [33, 34] and hits["dropped"].all()
    assert record(result, "speed").dropped["duplicate_test"] == 2
    assert_intact(result)  # V3 still has its 6 tests, not 8


def test_i13_tests_outside_every_village(world):
    result = analysed(world)  # the world's last row lies 1° west of every village
    hits = found(result, "speed", "outside_villages")
    assert hits["row"].tolist() == [32] and hits["dropped"].all()
    assert_intact(result)


def test_i14_missing_coordinates(world):
    result = analysed(world)  # row 31 has no lon/lat
    speed = result.issues[(result.issues["layer"] == "speed") & (result.issues["row"] == 31)]
    assert len(speed) == 1 and speed["dropped"].all()
    assert "missing" in speed["reason"].iat[0]
    assert_intact(result)


def test_i15_negative_upload_is_ignored_not_dropped(world):
    frame = speed_frame(world.parent)
    frame.loc[0, "up"] = -3.0
    frame.to_csv(world.parent / "tests.csv", index=False)
    result = analysed(world)
    hits = found(result, "speed", "negative_upload")
    assert hits["row"].tolist() == [1] and not hits["dropped"].any()
    assert_intact(result)


def test_i16_asset_with_unknown_status(world):
    path = world.parent / "access_points.gpkg"
    aps = gpd.read_file(path, layer="nodes")
    aps.loc[aps["asset_id"] == "AP-2", "status"] = "in servce"  # a typo of in_service
    aps.to_file(path, layer="nodes")
    result = analysed(world)
    hits = found(result, "fibre[0]", "unknown_status")
    assert hits["code"].tolist() == ["AP-2"] and not hits["dropped"].any()
    assert "in servce" in hits["message"].iat[0]
    v2 = result.villages.set_index("village_code").loc["V2"]
    assert not v2["fibre"]  # not counted, but now visible instead of silently missing
    assert found(result, "fibre[0]", "unknown_status").shape[0] == 1  # 'planned' is known
    assert_intact(result, skip=("V2",))


def test_i17_fibre_table_bad_value_and_unknown_code(world):
    pd.DataFrame(
        {"village_code": ["V4", "V5", "V99"], "has_fibre": ["yes", "maybe", "yes"]}
    ).to_csv(world.parent / "operator.csv", index=False)
    result = analysed(world)
    assert found(result, "fibre[2]", "bad_value")["code"].tolist() == ["V5"]
    assert found(result, "fibre[2]", "unknown_code")["code"].tolist() == ["V99"]
    assert record(result, "fibre[2]").dropped == {"bad_value": 1, "unknown_code": 1}
    assert_intact(result)


def test_i18_gb18030_register_with_encoding_set(world):
    path = world.parent / "register.csv"
    path.write_bytes(path.read_text(encoding="utf-8-sig").encode("gb18030"))
    edit(world, {"villages.encoding": "gb18030"})
    result = analysed(world)
    assert result.villages.set_index("village_code").loc["V2", "village_name"] == "Sørby"
    assert_intact(result)


def test_i19_utf8_with_bom(world):
    path = world.parent / "register.csv"
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")  # the world writes utf-8-sig
    result = analysed(world)
    names = result.villages.set_index("village_code")["village_name"]
    assert names["V2"] == "Sørby" and names["X1"] == "Industriområde"
    assert_intact(result)


def test_i20_crs_setting_ignored_when_the_file_has_one(world):
    edit(world, {"boundaries.crs": "EPSG:3857"})
    result = analysed(world)
    hits = found(result, "boundaries", "crs_setting_ignored")
    assert len(hits) == 1 and hits["severity"].iat[0] == "info"
    assert_intact(result)


def test_i21_gcj02_points_declared_as_wgs84():
    # A Shanxi grid of small villages (about 180 m); the access points sit in the middle of
    # each but were copied from AMap (GCJ-02) and declared WGS 84: shifted by ~ 500 m.
    cells = [
        box(112.5 + i * 0.002, 37.8, 112.5 + i * 0.002 + 0.002, 37.802) for i in range(0, 40, 4)
    ]
    centres = np.array([(c.centroid.x, c.centroid.y) for c in cells])
    gx, gy = wgs84_to_gcj02(centres[:, 0], centres[:, 1])
    found_ = check_positions(
        np.asarray(gx),
        np.asarray(gy),
        villages=np.asarray(cells, dtype=object),
        layer="fibre[0]",
        path="aps.csv",
    )
    assert found_["reason"].tolist() == ["crs_suspect_gcj02"]
    assert 'crs = "gcj02"' in found_["message"].iat[0]
    # the same points in WGS 84, or declared gcj02: nothing to say
    ok = check_positions(
        centres[:, 0],
        centres[:, 1],
        villages=np.asarray(cells, dtype=object),
        layer="fibre[0]",
        path="aps.csv",
    )
    assert ok.empty
    declared = check_positions(
        np.asarray(gx),
        np.asarray(gy),
        villages=np.asarray(cells, dtype=object),
        layer="fibre[0]",
        path="aps.csv",
        crs="gcj02",
    )
    assert declared.empty


def test_i22_corrections_applied_and_reported(world):
    (world.parent / "ledger.csv").write_text(
        LEDGER_HEAD + "V3,fibre,yes,asset_verified_on_site,photo IMG_1,Kari,2026-05-02\n",
        "utf-8",
    )
    edit(world, {"corrections.path": "ledger.csv"})
    result = analysed(world)
    v3 = result.villages.set_index("village_code").loc["V3"]
    assert v3["fibre"] and v3["fibre_basis"] == "correction"
    assert "asset_verified_on_site" in v3["corrections"]
    assert found(result, "corrections", "correction_applied")["code"].tolist() == ["V3"]
    assert result.headline["fibre_villages"] == 4  # 3 by construction + the correction
    assert_intact(result, skip=("V3",))


def test_i23_status_spelt_otherwise_is_counted(world):
    path = world.parent / "access_points.gpkg"
    aps = gpd.read_file(path, layer="nodes")
    # as exported by other systems: case, blanks, hyphens, full-width letters
    aps["status"] = aps["asset_id"].map(
        {"AP-1": " Operational ", "AP-2": "IN-SERVICE", "AP-3": "Planned",
         "AP-C": "ＩＮ＿ＳＥＲＶＩＣＥ"}
    )
    aps.to_file(path, layer="nodes")
    # the operator's table with a status column: V4 "In Service", V5 (no fibre) "in  service"
    op = pd.read_csv(world.parent / "operator.csv", dtype=str)
    op["state"] = ["In Service", "in  service"]
    op.to_csv(world.parent / "operator.csv", index=False)
    edit(world, {"fibre.2.status": "state"})
    result = analysed(world)
    assert found(result, "fibre[0]", "unknown_status").empty
    assert found(result, "fibre[2]", "unknown_status").empty
    assert record(result, "fibre[0]").dropped == {"not_operational": 1}  # AP-3, planned
    assert result.headline["fibre_villages"] == 3  # V1, V2, V4 by construction
    assert_intact(result)


def test_i24_blank_status_is_reported_not_silently_dropped(world):
    path = world.parent / "access_points.gpkg"
    aps = gpd.read_file(path, layer="nodes")
    aps.loc[aps["asset_id"] == "AP-2", "status"] = None
    aps.to_file(path, layer="nodes")
    result = analysed(world)
    hits = found(result, "fibre[0]", "unknown_status")
    assert hits["code"].tolist() == ["AP-2"] and not hits["dropped"].any()
    assert "is empty" in hits["message"].iat[0]
    assert not result.villages.set_index("village_code").loc["V2", "fibre"]
    assert_intact(result, skip=("V2",))


def test_i25_boundary_codes_stored_as_exact_floats(world):
    codes = _as_cn_nbs(world)
    path = world.parent / "polygons.gpkg"
    polys = gpd.read_file(path, layer="villages")
    polys["vcode"] = polys["vcode"].astype(float)  # a numeric column, as GIS tools make them
    polys.to_file(path, layer="villages")
    assert gpd.read_file(path, layer="villages")["vcode"].dtype == np.float64
    result = analysed(world)
    back = {v: k for k, v in codes.items()}
    assert set(result.villages["village_code"]) == set(back)  # no '.0', nothing lost
    assert found(result, "boundaries", "unknown_code").empty
    result.villages["village_code"] = result.villages["village_code"].map(back)
    assert_intact(result)


def test_i26_ledger_with_real_excel_dates(world):
    """A date typed in Excel is a date cell, and a date-formatted number is one too: both are
    dates (Excel counts days from 1899-12-30: 46145 is 2026-05-03)."""
    path = ledger_xlsx(world, [
        ["V3", "fibre", "yes", "asset_verified_on_site", "photo 1", "Kari",
         datetime.datetime(2026, 5, 2)],
        ["V1", "speed_class", "insufficient_data", "test_data_not_representative", "outage",
         "Ola", 46145],
    ])
    book = openpyxl.load_workbook(path)
    book["ledger"]["G3"].number_format = "yyyy-mm-dd"
    book.save(path)
    result = analysed(world)
    applied = result.corrections.set_index("village_code")
    assert applied.loc["V3", "date"] == "2026-05-02"
    assert applied.loc["V1", "date"] == "2026-05-03"
    v = result.villages.set_index("village_code")
    assert v.loc["V3", "fibre"] and v.loc["V1", "speed_class"] == "insufficient_data"
    assert_intact(result, skip=("V1", "V3"))


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_i27_claimed_list_with_formula_texts(world, tmp_path, kind):
    """Codes, names and townships of a claimed list that start formulas are written behind a
    quote in every cell of the audit (CSV and xlsx); plain numbers stay numbers."""
    result, run = run_cli(world, tmp_path)
    assert result.exit_code == 0, result.output
    out = tmp_path / "audit"
    result = CliRunner().invoke(cli, [
        "-q", "audit", str(run), "--claimed", str(claimed_lists(tmp_path)[kind]),
        "--code", "village_code", "--name", "name", "--township", "township", "--out", str(out),
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert unsafe_cells(out / "audit.csv", out / "audit_summary.csv", out / "audit.xlsx") == []
    table = pd.read_csv(out / "audit.csv", encoding="utf-8-sig", dtype=str, keep_default_na=False)
    claimed = table[table["claim_row"] != ""]
    assert claimed["status"].tolist() == ["unknown_code"] * len(SAFE) + ["confirmed"]
    for col, honest in (("claimed_code", "V1"), ("claimed_name", "Nordby"),
                        ("claimed_township", "T1")):
        assert claimed[col].tolist() == [*SAFE, honest], col
    sheet = openpyxl.load_workbook(out / "audit.xlsx")["audit"]
    header = [c.value for c in sheet[1]]
    codes = [r[header.index("claimed_code")] for r in sheet.iter_rows(min_row=2, values_only=True)]
    assert codes[: len(SAFE) + 1] == [*SAFE, "V1"]  # text cells, the same texts


def test_i28_claimed_list_with_formula_without_value(world, tmp_path):
    """A claimed code that is a formula without a computed value is neither read as "no code"
    nor dropped: its row is reported as uncached_formula, naming the cell, and counted."""
    result, run = run_cli(world, tmp_path)
    assert result.exit_code == 0, result.output
    book = openpyxl.Workbook()
    ws = book.active
    ws.title = "claims"
    for row in (["village_code", "note"], ["V1", "ok"], ['="V"&2', "typed by a script"],
                ["V4", '=UPPER("x")'], ['="V"&5', None]):
        ws.append(row)
    book.save(tmp_path / "claimed.xlsx")
    out = tmp_path / "audit"
    result = CliRunner().invoke(cli, ["audit", str(run), "--claimed",
                                      str(tmp_path / "claimed.xlsx"), "--out", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "audit.csv", encoding="utf-8-sig", dtype=str, keep_default_na=False)
    claimed = table[table["claim_row"] != ""]
    # rows 2 and 4 (sheet rows 3 and 5) have no code to match; a formula in the note column
    # does not matter (row 3, V4)
    assert claimed[["claim_row", "status"]].values.tolist() == [
        ["1", "confirmed"], ["2", "uncached_formula"], ["3", "confirmed"],
        ["4", "uncached_formula"],
    ]
    assert claimed["message"].iat[1].startswith("claims!A3: a formula without a computed value")
    assert "claims!A5" in claimed["message"].iat[3]
    summary = pd.read_csv(out / "audit_summary.csv", encoding="utf-8-sig").set_index("status")
    assert summary.loc["uncached_formula", "rows"] == 2
    assert "uncached_formula" in result.stdout


def test_i29_boundary_polygon_with_a_nan_vertex(world):
    # an unusable geometry, like an empty one: left out and listed, the village stays counted
    x0, y0, x1, y1 = square(1, 1).bounds
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # shapely warns about the NaN
        _replace_polygon(world, "V5", Polygon([(x0, y0), (x1, y0), (np.nan, y1), (x0, y1)]))
    result = analysed(world)
    why = found(result, "boundaries", "coordinates_out_of_range")  # as any unusable coordinate
    assert why["row"].tolist() == [5]
    hits = found(result, "boundaries", "missing_geometry")
    assert hits[["row", "code"]].values.tolist() == [[5, "V5"]] and hits["dropped"].all()
    assert record(result, "boundaries").dropped == {"missing_geometry": 1}
    v = result.villages.set_index("village_code")
    assert not v.loc["V5", "has_geometry"]
    assert result.headline["villages"] == 6  # still in the denominator
    assert_intact(result)


def test_i30_capability_rows_placed_by_location(world):
    """code = "": capability rows carry a point, placed in villages as tests are (lowest code
    on a shared edge); a row outside every village or without coordinates is dropped, listed
    and counted."""
    mid = square(0, 0).centroid
    edge = square(1, 0).bounds[0]  # the edge V1 | V2: the same double as V1's right side
    pd.DataFrame({
        "location_id": ["L1", "L2", "L3", "L4"],
        "lon": [mid.x, edge, mid.x - 1.0, None],
        "lat": [mid.y, mid.y, mid.y, None],
        "down": [50, 80, 100, 100],
    }).to_csv(world.parent / "located.csv", index=False)
    raw = tomllib.loads(world.read_text(encoding="utf-8"))
    raw["speed"] = [raw["speed"], {"path": "located.csv", "kind": "capability", "code": "",
                                   "crs": "EPSG:4326", "download": "down"}]
    world.write_text(tomli_w.dumps(raw), encoding="utf-8")
    result = analysed(world)
    v = result.villages.set_index("village_code")
    assert v.at["V1", "capability_download_mbps"] == 80.0  # the edge row went to V1
    assert v["capability_download_mbps"].drop("V1").isna().all()
    assert found(result, "capability[0]", "outside_villages")[["row", "code"]].values.tolist(
    ) == [[3, "L3"]]
    rec = record(result, "capability[0]")
    assert (rec.rows_read, rec.rows_used) == (4, 2)
    assert rec.dropped == {"missing_geometry": 1, "outside_villages": 1}
    for code, expected in EXPECTED.items():  # the measurements are untouched
        assert v.at[code, "measured_class"] == expected[-1], code


def test_catalogue_has_at_least_30_cases():
    names = [n for n in globals() if n.startswith(("test_e", "test_i"))]
    assert len(names) >= 30, names
