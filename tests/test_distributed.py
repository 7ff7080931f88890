"""The Dask engine on a LocalCluster with 2 worker processes equals the local engine."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from ruralcov import analyse, load_config
from ruralcov.config import replace
from test_stream import _assert_same_run, _messy_tests, write_parts
from worlds import write_north_world

distributed = pytest.importorskip("dask.distributed")
pytest.importorskip("dask_geopandas")

pytestmark = pytest.mark.filterwarnings(
    # distributed warns about ports and event loops when clusters start and stop in tests
    "ignore::DeprecationWarning",
    "ignore::ResourceWarning",
    "ignore::UserWarning:distributed.*",
    "ignore::pytest.PytestUnraisableExceptionWarning",
)


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as c:
        yield c


def _dask(config, cluster, **run):
    run = dataclasses.replace(config.run, engine="dask", dask_scheduler=cluster.scheduler_address,
                              **run)
    return replace(config, run=run)


def test_north_world_dask_equals_local(tmp_path, cluster):
    config = load_config(write_north_world(tmp_path))
    _assert_same_run(analyse(_dask(config, cluster)), analyse(config))


def test_random_world_dask_equals_local(tmp_path, cluster):
    import geopandas as gpd

    config = load_config(write_north_world(tmp_path))
    polys = gpd.read_file(tmp_path / "polygons.gpkg").geometry.values
    frame = _messy_tests(polys, np.random.default_rng(8), 5000)
    parts = write_parts(frame, tmp_path / "parts", rows=1300, row_group_size=400)
    speed = dataclasses.replace(config.speed, path=parts)
    config = replace(config, speed=speed)
    local = analyse(config)
    on_dask = analyse(_dask(config, cluster, dask_partition_rows=500))
    _assert_same_run(on_dask, local)
    assert (local.villages["tests"] > 0).sum() >= 5


def test_cli_engine_option(tmp_path, cluster):
    from click.testing import CliRunner

    from ruralcov.cli import cli

    path = write_north_world(tmp_path)
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("[run]\n", f'[run]\ndask_scheduler = '
                                             f'"{cluster.scheduler_address}"\n'),
                    encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["-q", "run", str(path), "--out", str(out), "--no-maps",
                                      "--engine", "dask"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "tables" / "villages.csv", encoding="utf-8-sig")
    assert table.set_index("village_code").loc["V1", "tests"] == 7


def test_device_median_and_sampling_dask_equals_local(tmp_path, cluster):
    from test_sampling import sampled_config

    config = sampled_config(tmp_path, fmt="parquet")
    local = analyse(config)
    on_dask = analyse(_dask(config, cluster, dask_partition_rows=600))
    _assert_same_run(on_dask, local)
    assert (local.issues["reason"] == "sampled_out").sum() > 500


def test_period_column_dask_equals_local(tmp_path, cluster):
    from test_periods import _one_file

    _, config, _ = _one_file(tmp_path)
    local = analyse(config)
    on_dask = analyse(_dask(config, cluster))
    _assert_same_run(on_dask, local)
    for level in local.trends:
        pd.testing.assert_frame_equal(on_dask.trends[level], local.trends[level])


def test_download_unit_on_dask(tmp_path, cluster):
    """Dask converts with download_unit exactly as the local engine (the kbit/s world gives the
    world's answers), and decides the unit rule on the complete counts of its partitions."""
    from ruralcov.errors import UnitError
    from test_bad_inputs import assert_intact
    from test_stream import _equal_stats, _mixed_units

    config = load_config(write_north_world(tmp_path))
    tests = pd.read_csv(tmp_path / "tests.csv")
    tests[["down", "up"]] *= 1000
    tests.to_parquet(tmp_path / "kbps.parquet")
    speed = dataclasses.replace(config.speed, path=tmp_path / "kbps.parquet",
                                download_unit="kbps")
    on_dask = analyse(_dask(replace(config, speed=speed), cluster))
    assert_intact(on_dask)
    mbps = analyse(config)  # the world in Mbit/s, local engine: every statistic the same
    _equal_stats(on_dask.villages, mbps.villages)
    pd.testing.assert_frame_equal(on_dask.issues, mbps.issues)
    mixed = dataclasses.replace(config.speed, path=_mixed_units(tmp_path, "parquet"))
    with pytest.raises(UnitError, match=r'500 \(2\.4%\).*download_unit = "kbps"'):
        analyse(_dask(replace(config, speed=mixed), cluster, dask_partition_rows=5000))


def test_out_of_range_rows_with_and_without_a_period_dask_equals_local(tmp_path, cluster):
    """Two rows whose coordinates are out of range, one without a period value: that one is
    reported for its missing period alone, the other as out of range, by the Dask engine as by
    the local one (the range check's findings are kept per row, whatever the period check
    says afterwards)."""
    from test_periods import _one_file

    _, config, _ = _one_file(tmp_path)
    frame = pd.read_csv(config.speed.path)
    extra = frame.iloc[[0, 1]].assign(lat=95.0, quarter=[None, "2020Q2"])
    pd.concat([frame, extra], ignore_index=True).to_csv(config.speed.path, index=False)
    local = analyse(config)
    on_dask = analyse(_dask(config, cluster))
    _assert_same_run(on_dask, local)
    speed = local.issues[local.issues["layer"] == "speed"].set_index("row")["reason"]
    assert speed[len(frame) + 1] == "missing_period"
    assert speed[len(frame) + 2] == "coordinates_out_of_range"
