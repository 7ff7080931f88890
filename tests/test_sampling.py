"""Per-device medians and device-day sampling: hand-made answers, and every engine agreeing.

Expected values come from worlds whose answer is known by construction, from a brute-force
recomputation with plain Python (median per device, then across devices; the smallest sampling
key per device and day), and from the other engines (the whole-file loader, the Dask engine).
"""

from __future__ import annotations

import dataclasses
import statistics

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ruralcov import analyse, join, load_config, sampling, stream
from ruralcov.classify import median_ci_ranks, speed_statistics
from ruralcov.config import config_from_dict, replace
from ruralcov.errors import ConfigError, SchemaError
from test_stream import _assert_same_run, _both_ways, _equal_stats, _messy_tests, write_parts
from worlds import write_north_world

MEDIANS = ["download_median_mbps", "download_ci_low_mbps", "download_ci_high_mbps",
           "upload_median_mbps", "latency_median_ms"]


def test_device_median_hand_made():
    # Village 0: device a [5, 10, 50] -> 10, b [30] -> 30, c [2, 4] -> 3, a test without a
    # device [7] -> 7; device medians [3, 7, 10, 30] -> 8.5, while the seven tests
    # [2, 4, 5, 7, 10, 30, 50] -> 7. Village 1: one device a [20, 20, 20, 1] -> 20 either way.
    village = np.array([0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    down = np.array([5, 10, 50, 30, 2, 4, 7, 20, 20, 20, 1], dtype=float)
    device = np.array(["a", "a", "a", "b", "c", "c", None, "a", "a", "a", "a"], dtype=object)
    target = np.array([12.0, 12.0])
    tests = speed_statistics(village, down, n_villages=2, target_mbps=target, device=device)
    by_dev = speed_statistics(village, down, n_villages=2, target_mbps=target, device=device,
                              statistic="device_median")
    assert tests["download_median_mbps"].tolist() == [7.0, 20.0]
    assert by_dev["download_median_mbps"].tolist() == [8.5, 20.0]
    # Counts stay counts of tests and devices (the test without an id is not a known device).
    assert by_dev["tests"].tolist() == [7, 4]
    assert by_dev["devices"].tolist() == [3, 1]
    assert by_dev["share_tests_at_target"].tolist() == tests["share_tests_at_target"].tolist()
    got = stream.streamed_statistics(village, down, n_villages=2, target_mbps=target,
                                     device=device, statistic="device_median")
    _equal_stats(by_dev, got)


def _brute_device_median(village, down, up, device, n_villages):
    """Median per device (None: a device of its own), then across devices, in plain Python."""
    out = []
    for v in range(n_villages):
        groups: dict[object, list[int]] = {}
        for i in np.flatnonzero(village == v):
            groups.setdefault(("id", device[i]) if device[i] is not None else ("row", i),
                              []).append(i)
        md = [statistics.median(vals) for g in groups.values()
              if (vals := [down[i] for i in g if not np.isnan(down[i])])]
        mu = [statistics.median(vals) for g in groups.values()
              if (vals := [up[i] for i in g if not np.isnan(up[i])])]
        lo, hi = median_ci_ranks([len(md)])
        md.sort()
        out.append((statistics.median(md) if md else np.nan,
                    md[lo[0] - 1] if lo[0] else np.nan, md[hi[0] - 1] if hi[0] else np.nan,
                    statistics.median(mu) if mu else np.nan))
    return np.array(out, dtype=float).reshape(n_villages, 4)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(0, 300), n_villages=st.integers(1, 8), seed=st.integers(0, 2**31),
       buffer_mb=st.sampled_from([512, 0.001]), batch_rows=st.sampled_from([9, 1000]))
def test_device_median_equals_brute_force(n, n_villages, seed, buffer_mb, batch_rows):
    rng = np.random.default_rng(seed)
    village = rng.integers(-1, n_villages, n)
    down = rng.choice([0.0, 1.5, 4.0, 12.0, 30.25, 100.0, np.nan], n)
    up = np.where(rng.random(n) < 0.2, np.nan, rng.integers(0, 9, n) / 2)
    device = rng.choice(np.array(["a", "b", "c", "甲", None], dtype=object), n)
    target = np.full(n_villages, 12.0)
    want = _brute_device_median(village, down, up, device, n_villages)
    loaded = speed_statistics(village, down, n_villages=n_villages, target_mbps=target,
                              upload=up, device=device, statistic="device_median")
    cols = ["download_median_mbps", "download_ci_low_mbps", "download_ci_high_mbps",
            "upload_median_mbps"]
    np.testing.assert_array_equal(loaded[cols].to_numpy(dtype=float), want)
    streamed = stream.streamed_statistics(village, down, n_villages=n_villages,
                                          target_mbps=target, upload=up, device=device,
                                          statistic="device_median", buffer_mb=buffer_mb,
                                          batch_rows=batch_rows)
    _equal_stats(loaded, streamed)


# --- device-day sampling -----------------------------------------------------------------------


def test_wall_clock_days_keep_the_written_date():
    text = pa.array(["2024-03-01T23:30:00+08:00", "2024-03-01 00:10", "2024-03-02",
                     "2024-03-01T16:00:00Z", "not a time", None, " 2024-02-29T12:00:00 "])
    ns, ok = sampling.wall_clock_ns(text, column="t")
    assert ok.tolist() == [True, True, True, True, False, False, True]
    day0 = (np.datetime64("2024-03-01") - np.datetime64("1970-01-01")).astype(int)
    assert sampling.days(ns)[ok].tolist() == [day0, day0, day0 + 1, day0, day0 - 1]
    # A zoned timestamp column: the local date in its zone (07:30 in Shanghai is 23:30 UTC
    # of the day before).
    zoned = pd.Series(pd.to_datetime(["2024-03-01T07:30:00+08:00"]).tz_convert("Asia/Shanghai"))
    ns, ok = sampling.wall_clock_ns(zoned, column="t")
    assert sampling.days(ns).tolist() == [day0]
    with pytest.raises(SchemaError, match="ISO 8601"):
        sampling.wall_clock_ns(pa.array([1.5, 2.0]), column="t")


def _brute_sample(village, device, day, key):
    """Kept rows: per (village, device, day) the smallest key, the earliest row on ties."""
    best: dict[tuple, int] = {}
    for i in range(len(village)):
        if village[i] < 0 or device[i] is None or day[i] is None:
            continue
        g = (village[i], device[i], day[i])
        if g not in best or key[i] < key[best[g]]:
            best[g] = i
    keep = np.ones(len(village), dtype=bool)
    for i in range(len(village)):
        if village[i] >= 0 and device[i] is not None and day[i] is not None:
            keep[i] = best[(village[i], device[i], day[i])] == i
    return keep


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(0, 300), n_villages=st.integers(1, 6), seed=st.integers(0, 2**31),
       statistic=st.sampled_from(["median", "device_median"]),
       buffer_mb=st.sampled_from([512, 0.001]))
def test_device_day_sampling_equals_brute_force(n, n_villages, seed, statistic, buffer_mb):
    rng = np.random.default_rng(seed)
    village = rng.integers(-1, n_villages, n)
    down = rng.choice([1.5, 4.0, 12.0, 30.25], n)  # few values: equal keys happen
    device = rng.choice(np.array(["a", "b", "c", None], dtype=object), n)
    hours = rng.integers(0, 24 * 3, n)  # three days, several tests a day
    time_ns = (hours // 6 * 6 * 3600 * 10**9).astype(np.int64)
    day_ok = rng.random(n) > 0.1
    day = sampling.days(time_ns)
    key = sampling.sampling_keys(time_ns, down, None, None, seed=7)
    keep = _brute_sample(village, device, np.where(day_ok, day, None), key)
    codes, _ = pd.factorize(pd.Series(device, dtype=object), use_na_sentinel=True)
    assert (sampling.device_day_keep(village, codes, codes >= 0, day, day_ok, key)
            == keep).all()
    target = np.full(n_villages, 12.0)
    want = speed_statistics(village[keep], down[keep], n_villages=n_villages,
                            target_mbps=target, device=device[keep], statistic=statistic)
    got = stream.streamed_statistics(village, down, n_villages=n_villages, target_mbps=target,
                                     device=device, statistic=statistic, buffer_mb=buffer_mb,
                                     sample={"day": day, "day_ok": day_ok, "skey": key})
    _equal_stats(want, got)
    left_out = np.flatnonzero(~keep) + 1
    assert got.attrs["sampled"].tolist() == left_out.tolist()


def test_sampling_keys_do_not_depend_on_order_and_follow_the_seed():
    rng = np.random.default_rng(1)
    t = rng.integers(0, 10**15, 1000)
    d = rng.random(1000) * 100
    k = sampling.sampling_keys(t, d, None, d / 10, seed=3)
    perm = rng.permutation(1000)
    assert (sampling.sampling_keys(t[perm], d[perm], None, d[perm] / 10, seed=3)
            == k[perm]).all()
    assert (sampling.sampling_keys(t, d, None, d / 10, seed=4) != k).mean() > 0.99


# --- whole runs: stream, loader and (in test_distributed) Dask agree ---------------------------


def _timed_tests(polys, rng, n):
    """The messy tests with a time column: few devices, a handful of days, some bad times."""
    frame = _messy_tests(polys, rng, n)
    stamps = pd.Timestamp("2024-03-01") + pd.to_timedelta(rng.integers(0, 4 * 24, len(frame)),
                                                         unit="h")
    text = pd.Series(stamps.strftime("%Y-%m-%dT%H:%M:%S"), dtype=object)
    text[rng.random(len(frame)) < 0.03] = "yesterday"
    text.iloc[[20, 21]] = None
    frame["time"] = text.to_numpy()
    return frame


def sampled_config(tmp_path, *, rows=3000, fmt="csv", statistic="device_median", seed=None):
    import geopandas as gpd

    config = load_config(write_north_world(tmp_path))
    polys = gpd.read_file(tmp_path / "polygons.gpkg").geometry.values
    frame = _timed_tests(polys, np.random.default_rng(5), rows)
    if fmt == "csv":
        path = tmp_path / "timed.csv"
        frame.to_csv(path, index=False)
    else:
        path = write_parts(frame, tmp_path / "timed_parts", rows=700, row_group_size=300)
    speed = dataclasses.replace(config.speed, path=path, statistic=statistic,
                                sample="device_day", time="time", seed=seed)
    return replace(config, speed=speed, run=dataclasses.replace(config.run, buffer_mb=0.01))


def test_sampled_run_stream_equals_loader(tmp_path, monkeypatch):
    config = sampled_config(tmp_path)
    streamed, loaded = _both_ways(config, monkeypatch)
    _assert_same_run(streamed, loaded)
    issues = streamed.issues[streamed.issues["layer"] == "speed"]
    sampled = issues[issues["reason"] == "sampled_out"]
    assert len(sampled) > 500
    assert (sampled["severity"] == "info").all() and sampled["dropped"].all()
    assert len(issues[issues["reason"] == "bad_time"]) > 50
    record = next(r for r in streamed.inputs if r.layer == "speed")
    assert record.dropped["sampled_out"] == len(sampled)
    # What is left: one test per village, device and day among those with a device and a
    # readable time, and all the others; they are exactly the tests counted.
    frame = pd.read_csv(config.speed.path)
    kept = frame.drop(index=issues.loc[issues["dropped"], "row"].to_numpy() - 1)
    v = streamed.villages
    kept["village"] = join.assign_points(shapely.points(kept["lon"], kept["lat"]),
                                         v.geometry.values, priority=np.argsort(np.argsort(
                                             v["village_code"].to_numpy())))
    assert (kept["village"] >= 0).all() and len(kept) == v["tests"].sum()
    timed = kept[kept["device"].notna() & kept["time"].str.match(r"\d{4}-").fillna(False)]
    per_day = timed.groupby(["village", "device", timed["time"].str[:10]]).size()
    assert len(per_day) > 50 and (per_day == 1).all()


def test_sampling_changes_with_the_seed_only(tmp_path, monkeypatch):
    a = analyse(sampled_config(tmp_path / "a", seed=1))
    b = analyse(sampled_config(tmp_path / "b", seed=1))
    c = analyse(sampled_config(tmp_path / "c", seed=2))

    def rows(r):
        i = r.issues
        return set(i.loc[i["reason"] == "sampled_out", "row"])

    assert rows(a) == rows(b)
    assert rows(a) != rows(c) and len(rows(a)) == len(rows(c))  # same groups, other picks


def test_sampled_run_in_parquet_parts(tmp_path, monkeypatch):
    config = sampled_config(tmp_path, fmt="parquet", statistic="median")
    _assert_same_run(*_both_ways(config, monkeypatch))


def test_sampling_settings_are_checked(tmp_path):
    base = {"villages": {"path": "v.gpkg"}}
    with pytest.raises(ConfigError, match="statistic 'mean' is not known"):
        config_from_dict({**base, "speed": {"path": "t.csv", "statistic": "mean"}},
                         base=tmp_path)
    with pytest.raises(ConfigError, match="only for kind"):
        config_from_dict({**base, "speed": {"path": "t.parquet", "kind": "ookla_tiles",
                                            "network": "fixed", "sample": "device_day"}},
                         base=tmp_path)
    with pytest.raises(ConfigError, match="need the device column"):
        config_from_dict({**base, "speed": {"path": "t.csv", "device": "",
                                            "statistic": "device_median"}}, base=tmp_path)
    config = sampled_config(tmp_path)
    speed = dataclasses.replace(config.speed, time="when")
    with pytest.raises(SchemaError, match="needs the time column 'when'"):
        analyse(replace(config, speed=speed))
    frame = pd.read_csv(config.speed.path)
    frame["time"] = "soon"
    frame.to_csv(config.speed.path, index=False)
    with pytest.raises(SchemaError, match="no value of the time column 'time'"):
        analyse(config)
