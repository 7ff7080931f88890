"""Periods from a column of one tests file equal one file per period (ruralcov.periods).

The north world's two quarters (``test_trends``: 2020Q2 is the world's tests file, 2020Q1 the
same rows with every download halved) are written once as two files and once as one file
with a ``quarter`` column, shuffled, plus rows without a quarter. Both runs must give the same
villages, trend tables and counts; the rows without a quarter are dropped once, in the
headline period, so that every row of the file is accounted for.
"""

from __future__ import annotations

import dataclasses
import tomllib

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import tomli_w

from ruralcov import analyse, load_config
from ruralcov.config import replace
from ruralcov.errors import SchemaError
from test_stream import _assert_same_run, _both_ways, _equal_stats
from test_trends import _two_periods

BLANKS = 7


def _one_file(folder, fmt="csv"):
    """The two quarters as one file with a quarter column; returns (files config, column
    config, rows per quarter)."""
    by_files = _two_periods(folder)
    q2 = pd.read_csv(folder / "tests.csv").assign(quarter="2020Q2")
    q1 = pd.read_csv(folder / "tests_q1.csv").assign(quarter="2020Q1")
    rng = np.random.default_rng(4)
    blank = q2.sample(BLANKS, random_state=1).assign(quarter=[None, "", " "] + [None] * 4)
    both = pd.concat([q1, q2, blank], ignore_index=True)
    both = both.iloc[rng.permutation(len(both))].reset_index(drop=True)
    raw = tomllib.loads(by_files.read_text(encoding="utf-8"))
    if fmt == "csv":
        path = folder / "both.csv"
        both.to_csv(path, index=False)
    else:  # GeoJSON, read whole by the loader; the quarters' files too, written alike
        path = folder / "both.geojson"
        both = _geojson(both, path)
        _geojson(q1, folder / "q1.geojson")
        _geojson(q2, folder / "q2.geojson")
        raw["speed"]["periods"] = {"2020Q1": "q1.geojson", "2020Q2": "q2.geojson"}
        by_files.write_text(tomli_w.dumps(raw), encoding="utf-8")
    del raw["speed"]["periods"]
    raw["speed"].update(path=path.name, period="quarter")
    by_column = folder / "by_column.toml"
    by_column.write_text(tomli_w.dumps(raw), encoding="utf-8")
    counts = both["quarter"].str.strip().replace("", None).value_counts(dropna=False)
    return load_config(by_files), load_config(by_column), counts


def _geojson(frame, path):
    ok = frame["lon"].notna() & frame["lat"].notna()
    gpd.GeoDataFrame(frame.drop(columns=["lon", "lat"])[ok],
                     geometry=gpd.points_from_xy(frame.loc[ok, "lon"], frame.loc[ok, "lat"]),
                     crs="EPSG:4326").to_file(path, driver="GeoJSON")
    return frame[ok]


@pytest.mark.parametrize("fmt", ["csv", "geojson"])
def test_period_column_equals_files_per_period(tmp_path, fmt):
    files_config, column_config, counts = _one_file(tmp_path, fmt)
    by_files, by_column = analyse(files_config), analyse(column_config)
    a = by_column.villages.set_index("village_code")
    b = by_files.villages.set_index("village_code").loc[a.index]
    _equal_stats(a, b)
    for col in ("speed_class", "speed_trend", "speed_period"):
        assert a[col].tolist() == b[col].tolist()
    assert set(by_column.trends) == set(by_files.trends)
    for level in by_files.trends:
        pd.testing.assert_frame_equal(by_column.trends[level], by_files.trends[level])
    # Every row of the file once: each quarter's rows, the blanks in the headline only.
    records = {r.layer: r for r in by_column.inputs if r.layer.startswith("speed")}
    assert records["speed[2020Q1]"].rows_read == counts["2020Q1"]
    assert records["speed"].rows_read == counts["2020Q2"] + BLANKS
    assert records["speed"].dropped["missing_period"] == BLANKS
    assert "missing_period" not in records["speed[2020Q1]"].dropped
    missing = by_column.issues[by_column.issues["reason"] == "missing_period"]
    assert len(missing) == BLANKS and set(missing["layer"]) == {"speed"}


def test_period_column_stream_equals_loader(tmp_path, monkeypatch):
    _, config, _ = _one_file(tmp_path)
    streamed, loaded = _both_ways(config, monkeypatch)
    _assert_same_run(streamed, loaded)
    for level in streamed.trends:
        pd.testing.assert_frame_equal(streamed.trends[level], loaded.trends[level])
    pd.testing.assert_frame_equal(streamed.issues.reset_index(drop=True),
                                  loaded.issues.reset_index(drop=True))


def test_period_column_errors(tmp_path):
    _, config, _ = _one_file(tmp_path)
    wrong = replace(config, speed=dataclasses.replace(config.speed, period="quater"))
    with pytest.raises(SchemaError, match="period column 'quater'.*did you mean 'quarter'"):
        analyse(wrong)
    frame = pd.read_csv(config.speed.path)
    frame["quarter"] = None
    frame.to_csv(config.speed.path, index=False)
    with pytest.raises(SchemaError, match="has no values"):
        analyse(config)
