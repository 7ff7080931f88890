"""Source presets (``preset = "mlab_ndt"`` / ``"fcc_bdc"`` in a ``[[speed]]`` block), on the
hand-made example files of tests/data/mlab_ndt and tests/data/fcc_bdc, whose answers are known
by construction (each folder's README.md says how)."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tomli_w

from ruralcov import analyse, load_config, write_run
from ruralcov.config import config_from_dict
from ruralcov.errors import ConfigError, SchemaError

DATA = Path(__file__).parent / "data"
MLAB, BDC = DATA / "mlab_ndt", DATA / "fcc_bdc"

#: M-Lab example, by construction: village -> (tests, median download, median MinRTT, class)
#: with min_tests = 3. 200001 has 10..50 Mbps and the test on its edge with 200002 (60 Mbps,
#: to the lowest code); 200002 has 4, 6, 8; 200003 only two tests.
MLAB_EXPECTED = {
    "200001": (6, 35.0, 17.0, "meets"),
    "200002": (3, 6.0, 45.0, "below"),
    "200003": (2, 150.0, 10.0, "insufficient_data"),
}
#: FCC BDC example, by construction: village -> (best download, upload, technology class,
#: provider_id, providers counted, capability class); the default technologies leave out
#: satellite (60, 61) and unlicensed fixed wireless (70); 310002's best is the cable location
#: on its edge with 310003 (lowest code), without which it would be copper at 6 Mbit/s.
BDC_EXPECTED = {
    "310001": (1000.0, 1000.0, "fibre", "100", 2, "meets"),
    "310002": (20.0, 2.0, "cable", "600", 2, "meets"),
    "310003": (50.0, 10.0, "fixed_wireless_licensed", "400", 1, "meets"),
    "310004": (4.0, 1.0, "copper", "300", 1, "below"),
}


def copy_example(src: Path, dst: Path, **speed: object) -> Path:
    """The example folder copied to ``dst``, its ``[[speed]]`` block changed by ``speed``
    (a value None removes the key)."""
    shutil.copytree(src, dst)
    cfg = dst / "config.toml"
    raw = tomllib.loads(cfg.read_text(encoding="utf-8"))
    for key, value in speed.items():
        if value is None:
            raw["speed"][0].pop(key, None)
        else:
            raw["speed"][0][key] = value
    cfg.write_text(tomli_w.dumps(raw), encoding="utf-8")
    return cfg


def village_table(result) -> pd.DataFrame:
    return result.villages.set_index("village_code")


# --- M-Lab NDT ------------------------------------------------------------------------------


def check_mlab(result) -> None:
    v = village_table(result)
    for code, (tests, down, rtt, cls) in MLAB_EXPECTED.items():
        assert v.at[code, "tests"] == tests, code
        assert v.at[code, "speed_class"] == cls, code
        if cls != "insufficient_data":
            assert v.at[code, "download_median_mbps"] == down, code
            assert v.at[code, "latency_median_ms"] == rtt, code
    assert v["devices"].isna().all()  # no device id in the unified views
    assert v["upload_median_mbps"].isna().all()  # the download view only


@pytest.mark.parametrize("export", ["unified_downloads_dots.csv",
                                    "unified_downloads_underscores.csv"])
def test_mlab_both_flattenings_give_the_answer_by_construction(tmp_path, export):
    result = analyse(load_config(copy_example(MLAB, tmp_path / "m", path=export)))
    check_mlab(result)
    rec = next(r for r in result.inputs if r.layer == "speed")
    assert (rec.rows_read, rec.rows_used) == (14, 11)
    assert rec.dropped == {"missing_geometry": 1, "bad_download": 1, "outside_villages": 1}
    flat = "." if "dots" in export else "_"
    assert result.config.speed.download == f"a{flat}MeanThroughputMbps"
    assert result.config.speed.lon == f"client{flat}Geo{flat}Longitude"


def test_mlab_parquet_export_and_the_run_folder_recomputes(tmp_path):
    """A Parquet export (columns read from its schema) gives the same answer; the run folder's
    config.toml (preset plus the columns as found) recomputes it."""
    cfg = copy_example(MLAB, tmp_path / "m", path="ndt.parquet")
    frame = pd.read_csv(MLAB / "unified_downloads_underscores.csv", dtype=str)
    for col in ("a_MeanThroughputMbps", "a_MinRTT", "client_Geo_Latitude",
                "client_Geo_Longitude"):
        frame[col] = pd.to_numeric(frame[col])
    frame.to_parquet(cfg.parent / "ndt.parquet")
    result = analyse(load_config(cfg))
    check_mlab(result)
    out = write_run(result, tmp_path / "run", maps=False)
    written = tomllib.loads((out / "config.toml").read_text(encoding="utf-8"))
    assert written["speed"]["preset"] == "mlab_ndt"
    assert written["speed"]["download"] == "a_MeanThroughputMbps"
    check_mlab(analyse(load_config(out / "config.toml")))


def test_mlab_says_devices_are_unknown_in_every_reader(tmp_path):
    """The run records once that min_devices is not applied, whether the file is streamed or
    read whole by the loader."""
    from ruralcov.loaders import load_speed_tests, preset_columns

    result = analyse(load_config(MLAB / "config.toml"))
    said = result.issues[result.issues["reason"] == "no_device_id"]
    assert len(said) == 1 and said.iloc[0]["severity"] == "info"
    assert "client IP is not exported" in said.iloc[0]["message"]
    speed = load_config(MLAB / "config.toml").speed
    loaded = load_speed_tests(preset_columns(speed, name="speed"))
    assert (loaded.issues["reason"] == "no_device_id").sum() == 1
    assert loaded.record.rows_used == 12  # outside_villages is found by the join, later


def mlab_block(**keys: object) -> dict:
    return {"villages": {"path": "v.csv"},
            "speed": [{"preset": "mlab_ndt", "path": "ndt.csv", **keys}]}


@pytest.mark.parametrize(("keys", "match"), [
    ({"min_devices": 3}, r'preset = "mlab_ndt" has no device column .* min_devices = 3 could '
                         r"never be applied; set min_devices = 0"),
    ({"kind": "capability"}, r'preset = "mlab_ndt" is a source of kind = "tests", not '
                             r"'capability'"),
    ({"preset": "mlab-ndt"}, r"preset 'mlab-ndt' is not known \(did you mean 'mlab_ndt'\?\)"),
    ({"path": "ndt_unified_uploads_2024.csv"}, r"looks like an export of M-Lab's upload view"),
    ({"technologies": ["fibre"]}, r'technologies: only for kind = "capability"'),
])
def test_mlab_config_errors(keys, match):
    with pytest.raises(ConfigError, match=match):
        config_from_dict(mlab_block(**keys))


def test_mlab_min_devices_with_a_device_column_is_allowed():
    speed = config_from_dict(mlab_block(device="client_id", min_devices=2)).speed
    assert (speed.device, speed.min_devices, speed.download) == (
        "client_id", 2, "a.MeanThroughputMbps")


def test_a_file_with_both_spellings_stops(tmp_path):
    cfg = copy_example(MLAB, tmp_path / "m")
    frame = pd.read_csv(cfg.parent / "unified_downloads_dots.csv", dtype=str)
    frame["a_MeanThroughputMbps"] = frame["a.MeanThroughputMbps"]
    frame.to_csv(cfg.parent / "unified_downloads_dots.csv", index=False)
    with pytest.raises(SchemaError, match=r"has both 'a.MeanThroughputMbps' and "
                                          r"'a_MeanThroughputMbps'; set download = "):
        analyse(load_config(cfg))


# --- FCC BDC ----------------------------------------------------------------------------------


def test_bdc_example_gives_the_answer_by_construction():
    result = analyse(load_config(BDC / "config.toml"))
    v = village_table(result)
    for code, (down, up, tech, provider, n, cls) in BDC_EXPECTED.items():
        got = (v.at[code, "capability_download_mbps"], v.at[code, "capability_upload_mbps"],
               v.at[code, "capability_technology"], str(v.at[code, "capability_provider"]),
               v.at[code, "capability_providers"], v.at[code, "capability_class"])
        assert got == (down, up, tech, provider, n, cls), code
    # no measurement: capability meets -> capability_only, below -> fails
    assert v["speed_class"].tolist() == ["capability_only"] * 3 + ["fails"]
    assert result.headline["speed_meets"] == 3


def test_bdc_every_row_is_counted_or_reported():
    result = analyse(load_config(BDC / "config.toml"))
    rec = next(r for r in result.inputs if r.layer == "capability[0]")
    assert (rec.rows_read, rec.rows_used) == (14, 6)
    assert rec.dropped == {"missing_geometry": 1, "outside_villages": 1,
                           "unknown_technology": 1, "bad_download": 1,
                           "technology_not_counted": 4}
    assert rec.rows_read == rec.rows_used + sum(rec.dropped.values())
    issues = result.issues[result.issues["layer"] == "capability[0]"].set_index("reason")
    assert issues.at["outside_villages", "code"] == "1900000009"  # named by location_id
    assert issues.at["unknown_technology", "row"] == 9
    assert "'99' is not a technology code" in issues.at["unknown_technology", "message"]


def test_bdc_counting_every_technology(tmp_path):
    """With every class counted, satellite is the best record where nothing terrestrial is
    faster: 310002 gets OrbitNet's 220 Mbit/s NGSO, 310004 GeoSat's 25 Mbit/s GSO."""
    every = ["fibre", "cable", "copper", "satellite_gso", "satellite_ngso",
             "fixed_wireless_unlicensed", "fixed_wireless_licensed", "fixed_wireless_lbr",
             "other"]
    result = analyse(load_config(copy_example(BDC, tmp_path / "b", technologies=every)))
    v = village_table(result)
    best = {c: (v.at[c, "capability_download_mbps"], v.at[c, "capability_technology"])
            for c in BDC_EXPECTED}
    assert best == {"310001": (1000.0, "fibre"), "310002": (220.0, "satellite_ngso"),
                    "310003": (50.0, "fixed_wireless_licensed"),
                    "310004": (25.0, "satellite_gso")}
    rec = next(r for r in result.inputs if r.layer == "capability[0]")
    assert rec.rows_used == 10 and "technology_not_counted" not in rec.dropped


def test_located_capability_without_a_preset(tmp_path):
    """code = "" places any capability file's rows by lon/lat; without the preset the
    technology is the file's own text and every row with a place and a download counts."""
    cfg = copy_example(BDC, tmp_path / "b", preset=None, kind="capability", code="",
                       lon="longitude", lat="latitude", crs="EPSG:4326",
                       download="max_advertised_download_speed",
                       upload="max_advertised_upload_speed", provider="brand_name")
    result = analyse(load_config(cfg))
    v = village_table(result)
    assert v.at["310002", "capability_download_mbps"] == 220.0
    assert v.at["310002", "capability_technology"] == "61"
    assert v.at["310003", "capability_download_mbps"] == 100.0  # code 99 is just text here
    assert v.at["310003", "capability_provider"] == "Mystery Net"
    rec = next(r for r in result.inputs if r.layer == "capability[0]")
    assert (rec.rows_used, rec.dropped) == (11, {"missing_geometry": 1, "outside_villages": 1,
                                                 "bad_download": 1})


def test_bdc_config_errors():
    base = {"villages": {"path": "v.csv"}}
    with pytest.raises(ConfigError, match=r"technologies \['fiber'\] are not technology "
                                          r"classes of the fcc_bdc preset \(did you mean "
                                          r"'fibre'\?\)"):
        config_from_dict({**base, "speed": [{"preset": "fcc_bdc", "path": "a.csv",
                                             "technologies": ["fiber"]}]})
    with pytest.raises(ConfigError, match="technologies must be a list of text"):
        config_from_dict({**base, "speed": [{"preset": "fcc_bdc", "path": "a.csv",
                                             "technologies": 50}]})
    cap = config_from_dict({**base, "speed": [{"preset": "fcc_bdc", "path": "a.csv"}]})
    s = cap.capability[0]
    assert (s.code, s.lon, s.lat, s.download, s.provider) == (
        "", "longitude", "latitude", "max_advertised_download_speed", "provider_id")
    assert s.technologies == ("fibre", "cable", "copper", "fixed_wireless_licensed",
                              "fixed_wireless_lbr")


def test_bdc_without_coordinates_stops(tmp_path):
    """The public BDC files have no coordinates: a file not joined to the Fabric stops,
    naming the columns."""
    cfg = copy_example(BDC, tmp_path / "b")
    frame = pd.read_csv(cfg.parent / "availability.csv", dtype=str)
    frame.drop(columns=["latitude", "longitude"]).to_csv(cfg.parent / "availability.csv",
                                                         index=False)
    with pytest.raises(SchemaError, match="longitude"):
        analyse(load_config(cfg))


def test_bdc_edge_location_goes_to_the_lowest_code():
    """Independently of the engine: the cable location lies exactly on the edge shared by
    310002 and 310003 (the polygons' vertex text and the point's are the same decimals)."""
    frame = pd.read_csv(BDC / "availability.csv", dtype=str)
    edge = frame[frame["location_id"] == "1900000007"].iloc[0]
    assert edge["longitude"] == "-97.46"
    rings = {f["properties"]["code"]: f["geometry"]["coordinates"][0]
             for f in json.loads((BDC / "villages.geojson").read_text(encoding="utf-8"))[
                 "features"]}
    covered = [code for code, ring in rings.items()
               if min(x for x, _ in ring) <= float(edge["longitude"]) <= max(x for x, _ in ring)]
    assert covered == ["310002", "310003"]
    result = analyse(load_config(BDC / "config.toml"))
    assert village_table(result).at["310002", "capability_provider"] == "600"
    assert not np.isnan(village_table(result).at["310003", "capability_download_mbps"])
