"""``ruralcov demo`` end to end, checked against an independent brute-force recomputation.

The recomputation reads ``config.toml`` and the inputs with plain geopandas/pandas (not
ruralcov's readers) and applies the README's definitions directly with geopandas joins.
"""

from __future__ import annotations

import csv
import json
import tomllib

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from ruralcov.cli import cli
from ruralcov.schema import SUMMARY_COLUMNS, VILLAGE_COLUMNS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    result = CliRunner().invoke(cli, ["-q", "demo", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def villages(demo):
    return pd.read_csv(
        demo / "tables" / "villages.csv",
        dtype={"village_code": str, "county_code": str, "township_code": str},
        encoding="utf-8-sig",
    )


def test_villages_table_has_every_register_unit_and_column(demo, villages):
    assert (demo / "tables" / "villages.csv").read_bytes()[:3] == b"\xef\xbb\xbf"
    assert len(villages) == 21_895
    assert set(VILLAGE_COLUMNS) <= set(villages.columns)
    no_outline = villages["county_code"].isin(["140171", "140271", "140671", "140971"])
    assert not villages.loc[no_outline, "has_geometry"].any()
    assert villages.loc[~no_outline, "has_geometry"].all()


def test_county_summary_covers_every_county(demo, villages):
    county = pd.read_csv(
        demo / "tables" / "summary_county.csv", dtype={"code": str}, encoding="utf-8-sig"
    )
    assert list(county.columns) == list(SUMMARY_COLUMNS)
    assert set(county["code"]) == set(villages["county_code"])
    assert county["villages"].sum() == (villages["kind"] == "village").sum()
    assert (county["fibre_share"] < 0.98).any() and (county["fibre_share"] >= 0.98).any()


def test_manifest_counts_balance_and_hashes(demo):
    manifest = json.loads((demo / "manifest.json").read_text(encoding="utf-8"))
    for rec in manifest["inputs"]:
        assert rec["rows_read"] == rec["rows_used"] + sum(rec["dropped"].values()), rec["layer"]
    speed = next(r for r in manifest["inputs"] if r["layer"] == "speed")
    assert speed["dropped"].get("outside_villages", 0) > 0
    assert "tables/villages.csv" in manifest["outputs"]


def test_report_labels_synthetic_layers(demo):
    html = (demo / "report.html").read_text(encoding="utf-8")
    assert "Synthetic" in html or "synthetic" in html


def _brute_force(demo):
    """Fibre and speed class per village from config.toml and the inputs, independently."""
    cfg = tomllib.loads((demo / "config.toml").read_text(encoding="utf-8"))
    base = demo
    register = pd.read_csv(base / cfg["villages"]["path"], dtype=str, encoding="utf-8")
    register = register.rename(
        columns={cfg["villages"]["code"]: "code", cfg["villages"]["name"]: "name"}
    )
    kind = np.where(
        register["name"].str.endswith(("村委会", "村民委员会")),
        "village",
        np.where(register["name"].str.endswith(("居委会", "居民委员会")), "community", "other"),
    )
    register["kind"] = kind
    b = cfg["boundaries"]
    polys = gpd.read_file(base / b["path"], layer=b.get("layer")).rename(
        columns={b["code"]: "code"}
    )
    polys_m = polys.to_crs(32649)
    fibre = pd.Series(False, index=register["code"])
    for src in cfg["fibre"]:
        path = base / src["path"]
        if src["kind"] == "table":
            t = pd.read_csv(path, dtype=str)
            yes = t[t[src["value"]].str.lower().isin(["yes", "1", "true", "是"])][src["code"]]
            fibre[fibre.index.isin(yes)] = True
        elif src["kind"] == "access_points":
            ap = gpd.read_file(path, layer=src.get("layer")).to_crs(32649)
            ap = ap[ap[src["status"]].str.lower().isin([s.lower() for s in src["operational"]])]
            near = gpd.sjoin_nearest(
                polys_m, ap[["geometry"]], max_distance=src["max_distance_m"], distance_col="d"
            )
            # Within max_distance_m, with a margin of 1 mm for the projection's rounding.
            fibre[fibre.index.isin(near.loc[near["d"] <= src["max_distance_m"] + 1e-3, "code"])] = (
                True
            )
    s = cfg["speed"]
    tests = pd.read_parquet(base / s["path"])
    ok = tests[s["lon"]].notna() & tests[s["lat"]].notna() & (tests[s["download"]] >= 0)
    tests = tests[ok]
    # Points in polygons in the data's own lon/lat plane, as the README defines it.
    pts = gpd.GeoDataFrame(
        tests, geometry=gpd.points_from_xy(tests[s["lon"]], tests[s["lat"]]), crs=4326
    )
    joined = gpd.sjoin(pts, polys.to_crs(4326)[["code", "geometry"]], predicate="intersects")
    joined = joined.sort_values("code").reset_index().drop_duplicates("index", keep="first")
    grouped = joined.groupby("code")
    stats = pd.DataFrame(
        {
            "tests": grouped.size(),
            "devices": grouped[s["device"]].nunique(),
            "median": grouped[s["download"]].median(),
        }
    )
    reg = register.set_index("code")
    stats = stats.reindex(reg.index)
    targets = cfg["targets"]
    target = np.where(
        reg["kind"] == "community",
        targets["community_download_mbps"],
        targets["village_download_mbps"],
    )
    enough = (stats["tests"] >= s["min_tests"]) & (stats["devices"] >= s["min_devices"])
    cls = np.where(
        enough, np.where(stats["median"] >= target, "meets", "below"), "insufficient_data"
    )
    return pd.DataFrame(
        {
            "fibre": fibre.reindex(reg.index).to_numpy(),
            "speed_class": cls,
            "tests": stats["tests"].fillna(0).astype(int).to_numpy(),
        },
        index=reg.index,
    )


def test_independent_recomputation_agrees_for_every_village(demo, villages):
    expected = _brute_force(demo)
    got = villages.set_index("village_code").loc[expected.index]
    assert (got["tests"].to_numpy() == expected["tests"].to_numpy()).all()
    mismatch_fibre = expected.index[got["fibre"].to_numpy() != expected["fibre"].to_numpy()]
    assert list(mismatch_fibre) == []
    mismatch_speed = expected.index[
        got["speed_class"].to_numpy() != expected["speed_class"].to_numpy()
    ]
    assert list(mismatch_speed) == []


def test_rerun_from_config_toml_gives_same_numbers(demo, tmp_path):
    result = CliRunner().invoke(
        cli,
        ["-q", "run", str(demo / "config.toml"), "--out", str(tmp_path / "again"), "--no-maps"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    a = (demo / "tables" / "summary_county.csv").read_text(encoding="utf-8-sig")
    b = (tmp_path / "again" / "tables" / "summary_county.csv").read_text(encoding="utf-8-sig")
    assert list(csv.reader(a.splitlines())) == list(csv.reader(b.splitlines()))
