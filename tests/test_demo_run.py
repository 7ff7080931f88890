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
def demo(demo_run):
    return demo_run  # the session's demo run (conftest.py)


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


def _brute_force(demo, period=None):
    """Fibre and speed class per village from config.toml and the inputs, independently
    (``period``: that period's tests file instead of the headline's)."""
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
    blocks = cfg["speed"] if isinstance(cfg["speed"], list) else [cfg["speed"]]
    s = next(b for b in blocks if b.get("kind", "tests") == "tests")
    tests = pd.read_parquet(base / (s["periods"][period] if period else s["path"]))
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
    caps = [b for b in blocks if b.get("kind") == "capability"]
    if caps:  # the README's five-way table, from the best record across providers
        rows = pd.concat([pd.read_csv(base / c["path"], dtype={c["code"]: str}) for c in caps])
        rows = rows[rows["village_code"].isin(reg.index) & (rows["download_mbps"] >= 0)]
        best = rows.groupby("village_code")["download_mbps"].max().reindex(reg.index)
        cap_meets = (best >= target).to_numpy()
        has_cap = best.notna().to_numpy()
        m_meets, m_below = cls == "meets", cls == "below"
        cls = np.select(
            [cap_meets & m_meets, cap_meets, m_meets, has_cap | m_below],
            ["meets", "capability_only", "measured_only", "fails"],
            default="insufficient_data",
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


def test_trend_of_the_earlier_quarter_agrees(demo):
    """trend_county.csv's 2020Q1 rows from a brute-force run over the 2020Q1 tests."""
    q1 = _brute_force(demo, period="2020Q1")
    trend = pd.read_csv(demo / "tables" / "trend_county.csv", dtype={"code": str},
                        encoding="utf-8-sig")
    assert sorted(set(trend["period"])) == ["2020Q1", "2020Q2"]
    cfg = tomllib.loads((demo / "config.toml").read_text(encoding="utf-8"))
    basis = cfg["run"].get("speed_basis", "capability")
    counted = {"capability": ("meets", "capability_only"), "measured": ("meets", "measured_only"),
               "either": ("meets", "capability_only", "measured_only")}[basis]
    is_village = [c.endswith(("村委会", "村民委员会")) for c in pd.read_csv(
        demo / cfg["villages"]["path"], dtype=str, encoding="utf-8"
    ).set_index(cfg["villages"]["code"]).loc[q1.index, cfg["villages"]["name"]]]
    q1 = q1[is_village]
    meets = q1["speed_class"].isin(counted).groupby(q1.index.str[:6]).sum()
    got = trend[trend["period"] == "2020Q1"].set_index("code")["speed_meets"]
    assert (got.reindex(meets.index).to_numpy() == meets.to_numpy()).all()
    fibre_q1 = q1["fibre"].groupby(q1.index.str[:6]).sum()
    for period in ("2020Q1", "2020Q2"):
        fibre = trend[trend["period"] == period].set_index("code")["fibre_villages"]
        assert (fibre.reindex(fibre_q1.index).to_numpy() == fibre_q1.to_numpy()).all()
    assert len(list((demo / "charts").glob("*.png"))) == trend["code"].nunique()
    html = (demo / "report.html").read_text(encoding="utf-8")
    assert "tables/gaps_fibre_but_slow.csv" in html and "capability only" in html


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
