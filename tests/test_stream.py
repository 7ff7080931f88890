"""The streaming engine equals the whole-file path: same statistics, issues and counts.

Expected values come from the existing exact functions (``classify.speed_statistics``,
``loaders.load_speed_tests`` through ``analyse`` with streaming switched off), never from
hard-coded numbers; small buffers force the spill-to-disk path.
"""

from __future__ import annotations

import dataclasses

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ruralcov import analyse, io, load_config, stream
from ruralcov.classify import speed_statistics
from ruralcov.config import replace
from ruralcov.stream import driver
from worlds import write_north_world

STATS = list(stream.STAT_COLUMNS)


def _equal_stats(a: pd.DataFrame, b: pd.DataFrame) -> None:
    for col in STATS:
        x, y = a[col], b[col]
        if col == "devices":
            x = x.astype("Float64").to_numpy(dtype=float, na_value=np.nan)
            y = y.astype("Float64").to_numpy(dtype=float, na_value=np.nan)
        np.testing.assert_array_equal(np.asarray(x, dtype=float), np.asarray(y, dtype=float),
                                      err_msg=col)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(0, 400),
    n_villages=st.integers(1, 12),
    seed=st.integers(0, 2**31),
    buffer_mb=st.sampled_from([512, 0.002, 0.0002]),
    batch_rows=st.sampled_from([7, 50, 1000]),
)
def test_streamed_statistics_equal_speed_statistics(n, n_villages, seed, buffer_mb, batch_rows):
    rng = np.random.default_rng(seed)
    village = rng.integers(-1, n_villages, n)
    # Few distinct values so that ties, even counts and equal medians are common.
    download = rng.choice([0.0, 1.5, 4.0, 12.0, 12.0, 30.25, 100.0, np.nan], n)
    upload = np.where(rng.random(n) < 0.2, np.nan, rng.integers(0, 9, n) / 2)
    latency = rng.normal(30, 5, n)
    device = rng.choice(np.array(["a", "b", "c", "甲", None], dtype=object), n)
    target = rng.choice([12.0, 100.0], n_villages)
    want = speed_statistics(village, download, n_villages=n_villages, target_mbps=target,
                            upload=upload, latency=latency, device=device)
    got = stream.streamed_statistics(village, download, n_villages=n_villages,
                                     target_mbps=target, upload=upload, latency=latency,
                                     device=device, buffer_mb=buffer_mb, batch_rows=batch_rows)
    _equal_stats(want, got)
    assert list(got.columns) == list(want.columns)


def _both_ways(config, monkeypatch):
    """analyse() with the stream, and with the whole-file loader (stream switched off)."""
    streamed = analyse(config)
    with monkeypatch.context() as m:
        m.setattr(stream, "supports", lambda speed: False)
        loaded = analyse(config)
    return streamed, loaded


def _assert_same_run(streamed, loaded):
    a = streamed.villages.set_index("village_code")
    b = loaded.villages.set_index("village_code").loc[a.index]
    _equal_stats(a, b)
    assert a["speed_class"].tolist() == b["speed_class"].tolist()
    ia = streamed.issues[streamed.issues["layer"] == "speed"].reset_index(drop=True)
    ib = loaded.issues[loaded.issues["layer"] == "speed"].reset_index(drop=True)
    pd.testing.assert_frame_equal(ia, ib)
    ra = next(r for r in streamed.inputs if r.layer == "speed")
    rb = next(r for r in loaded.inputs if r.layer == "speed")
    assert ra == rb
    assert ra.rows_read == ra.rows_used + sum(ra.dropped.values())


def test_north_world_stream_equals_loader(tmp_path, monkeypatch):
    config = load_config(write_north_world(tmp_path))
    assert stream.supports(config.speed)
    _assert_same_run(*_both_ways(config, monkeypatch))


def _messy_tests(polys, rng, n):
    """Tests in and around the polygons, with every kind of bad row."""
    x0, y0, x1, y1 = shapely.total_bounds(polys)
    lon = rng.uniform(x0 - 0.01, x1 + 0.01, n)
    lat = rng.uniform(y0 - 0.01, y1 + 0.01, n)
    frame = pd.DataFrame({
        "lon": lon.round(6), "lat": lat.round(6),
        "down": rng.choice([3.0, 8.5, 12.0, 40.0, 95.5], n),
        "up": rng.normal(5, 4, n).round(1), "ping": rng.normal(30, 10, n).round(1),
        "device": rng.choice(["p", "q", "r", "s"], n),
    })
    # On a shared edge and on a corner (lowest code wins), exactly.
    sq = polys[0]
    frame.loc[0, ["lon", "lat"]] = [sq.bounds[2], (sq.bounds[1] + sq.bounds[3]) / 2]
    frame.loc[1, ["lon", "lat"]] = [sq.bounds[2], sq.bounds[3]]
    frame = frame.astype(object)
    frame.loc[2, "lon"] = None
    frame.loc[3, "down"] = -4.0
    frame.loc[4, "down"] = 25_000.0  # absurd
    frame.loc[5, "up"] = -1.0
    frame.loc[6, "ping"] = -3.0
    frame.loc[7, "lat"] = 95.0  # out of range
    frame.loc[8, "device"] = None
    frame.loc[9, "down"] = None
    dup = frame.iloc[[10, 11, 10, 12]].copy()  # copies, one of them twice
    return pd.concat([frame, dup], ignore_index=True)


def write_parts(frame, folder, *, rows, row_group_size=None):
    """The messy tests (numbers typed) as a folder of Parquet parts of ``rows`` rows."""
    typed = frame.astype({c: float for c in ("lon", "lat", "down", "up", "ping")})
    folder.mkdir()
    for k, start in enumerate(range(0, len(typed), rows)):
        typed.iloc[start:start + rows].to_parquet(folder / f"p{k}.parquet",
                                                  row_group_size=row_group_size)
    return folder


@pytest.mark.parametrize("fmt", ["csv", "parquet", "parquet_parts", "geoparquet"])
def test_messy_world_stream_equals_loader(tmp_path, monkeypatch, fmt):
    config = load_config(write_north_world(tmp_path))
    polys = gpd.read_file(tmp_path / "polygons.gpkg").geometry.values
    frame = _messy_tests(polys, np.random.default_rng(3), 3000)
    speed = config.speed
    if fmt == "csv":
        path = tmp_path / "messy.csv"
        frame.to_csv(path, index=False)
    elif fmt.startswith("parquet"):
        typed = frame.astype({c: float for c in ("lon", "lat", "down", "up", "ping")})
        if fmt == "parquet":
            path = tmp_path / "messy.parquet"
            typed.to_parquet(path)
        else:
            path = write_parts(frame, tmp_path / "messy_parts", rows=1100)
    else:
        typed = frame.astype({c: float for c in ("lon", "lat", "down", "up", "ping")})
        ok = typed["lon"].notna() & typed["lat"].notna()
        geoms = np.full(len(typed), None, dtype=object)
        geoms[ok.to_numpy()] = shapely.points(typed.loc[ok, "lon"], typed.loc[ok, "lat"])
        path = tmp_path / "messy.geoparquet"
        gpd.GeoDataFrame(typed.drop(columns=["lon", "lat"]), geometry=geoms,
                         crs="EPSG:4326").to_parquet(path)
    speed = dataclasses.replace(speed, path=path)
    # A tiny buffer: joined tests and row hashes spill to disk many times.
    config = replace(config, speed=speed, run=dataclasses.replace(config.run, buffer_mb=0.01))
    assert stream.supports(speed)
    streamed, loaded = _both_ways(config, monkeypatch)
    _assert_same_run(streamed, loaded)
    reasons = set(streamed.issues.loc[streamed.issues["layer"] == "speed", "reason"])
    assert {"negative_speed", "absurd_speed", "duplicate_test", "outside_villages",
            "negative_upload", "negative_latency", "coordinates_out_of_range"} <= reasons


@pytest.fixture(params=["default pool", "reused memory"])
def arrow_memory(request):
    """pyarrow's default pool, or jemalloc keeping freed pages as ``ruralcov run`` sets it."""
    previous = pa.default_memory_pool()
    if request.param == "reused memory":
        stream.reuse_arrow_memory()
        if pa.default_memory_pool().backend_name != "jemalloc":
            pytest.skip("pyarrow built without jemalloc")
    yield request.param
    pa.set_memory_pool(previous)


@pytest.mark.parametrize("buffer_mb", [0.01, 64])
def test_many_copies_stream_equals_loader(tmp_path, monkeypatch, buffer_mb, arrow_memory):
    """Copies inside and outside the villages, copies of copies, far from their originals:
    found village by village in the accumulator (spilled or not) exactly as the loader does,
    whichever memory pool pyarrow allocates from."""
    config = load_config(write_north_world(tmp_path))
    polys = gpd.read_file(tmp_path / "polygons.gpkg").geometry.values
    rng = np.random.default_rng(11)
    frame = _messy_tests(polys, rng, 2000)
    copies = frame.iloc[rng.integers(0, len(frame), 900)]
    frame = pd.concat([frame, copies, copies.iloc[::3]], ignore_index=True)
    frame = frame.iloc[rng.permutation(len(frame))].reset_index(drop=True)
    typed = frame.astype({c: float for c in ("lon", "lat", "down", "up", "ping")})
    path = tmp_path / "copies.parquet"
    typed.to_parquet(path)
    speed = dataclasses.replace(config.speed, path=path)
    config = replace(config, speed=speed, run=dataclasses.replace(config.run, buffer_mb=buffer_mb))
    streamed, loaded = _both_ways(config, monkeypatch)
    _assert_same_run(streamed, loaded)
    issues = streamed.issues
    dups = issues[(issues["layer"] == "speed") & (issues["reason"] == "duplicate_test")]
    assert len(dups) > 500  # the loader's pandas comparison of every column is the reference


@pytest.mark.parametrize("fmt", ["csv", "parquet_parts", "geoparquet"])
@pytest.mark.parametrize("buffer_mb", [64, 0.01])
def test_copies_in_columns_the_run_does_not_read(tmp_path, monkeypatch, fmt, buffer_mb):
    """A column no run setting uses is not read batch by batch: rows agreeing in every other
    column but that one are not copies, rows agreeing in it too are, inside and outside the
    villages, as the loader finds them. With room for the candidates they are compared after
    the stream (only the unread column read back); with too many (a tiny buffer) the file is
    streamed again with every column."""
    config = load_config(write_north_world(tmp_path))
    polys = gpd.read_file(tmp_path / "polygons.gpkg").geometry.values
    rng = np.random.default_rng(17)
    frame = _messy_tests(polys, rng, 1500).assign(note=rng.choice(["a", "b", None], 1504))
    near = frame.iloc[rng.integers(0, len(frame), 300)].copy()
    near["note"] = near["note"].map({"a": "b", "b": None, None: "a"})  # differs in the note only
    same = frame.iloc[rng.integers(0, len(frame), 300)]
    frame = pd.concat([frame, near, same, near.iloc[::4]], ignore_index=True)
    frame = frame.iloc[rng.permutation(len(frame))].reset_index(drop=True)
    if fmt == "csv":
        path = tmp_path / "copies.csv"
        frame.to_csv(path, index=False)
    elif fmt == "parquet_parts":
        path = write_parts(frame, tmp_path / "copies_parts", rows=1000)
    else:
        typed = frame.astype({c: float for c in ("lon", "lat", "down", "up", "ping")})
        ok = (typed["lon"].notna() & typed["lat"].notna()).to_numpy()
        geoms = np.full(len(typed), None, dtype=object)
        geoms[ok] = shapely.points(typed.loc[ok, "lon"], typed.loc[ok, "lat"])
        path = tmp_path / "copies.geoparquet"
        gpd.GeoDataFrame(typed.drop(columns=["lon", "lat"]), geometry=geoms,
                         crs="EPSG:4326").to_parquet(path)
    speed = dataclasses.replace(config.speed, path=path)
    config = replace(config, speed=speed, run=dataclasses.replace(config.run, buffer_mb=buffer_mb))
    checker = stream.Checker(stream.speed_plan(speed), speed, every_column=False)
    assert checker.other_columns == ["note"]
    passes, compared = [], []
    real_pass, real_copies = driver.one_pass, driver.copies
    monkeypatch.setattr(driver, "one_pass",
                        lambda *a, **k: passes.append(k["every_column"]) or real_pass(*a, **k))
    monkeypatch.setattr(driver, "copies",
                        lambda c, *a: compared.append(len(c)) or real_copies(c, *a))
    streamed, loaded = _both_ways(config, monkeypatch)
    _assert_same_run(streamed, loaded)
    dups = streamed.issues[streamed.issues["reason"] == "duplicate_test"]
    assert len(dups) > 250
    if buffer_mb == 64:
        assert passes == [False] and sum(compared) > len(dups)
    else:
        assert passes == [False, True]


def test_projected_crs_stream_equals_loader(tmp_path, monkeypatch):
    config = load_config(write_north_world(tmp_path))
    tests = pd.read_csv(tmp_path / "tests.csv")
    ok = tests["lon"].notna()
    x, y = np.full(len(tests), np.nan), np.full(len(tests), np.nan)
    from pyproj import Transformer

    fwd = Transformer.from_crs("EPSG:4326", "EPSG:32634", always_xy=True)
    x[ok], y[ok] = fwd.transform(tests.loc[ok, "lon"], tests.loc[ok, "lat"])
    tests["lon"], tests["lat"] = x, y
    path = tmp_path / "utm.parquet"
    tests.to_parquet(path)
    speed = dataclasses.replace(config.speed, path=path, crs="EPSG:32634")
    streamed, loaded = _both_ways(replace(config, speed=speed), monkeypatch)
    _assert_same_run(streamed, loaded)


def test_unreadable_formats_fall_back_to_the_loader(tmp_path):
    config = load_config(write_north_world(tmp_path))
    tests = pd.read_csv(tmp_path / "tests.csv").dropna()
    path = tmp_path / "tests.gpkg"
    gpd.GeoDataFrame(tests, geometry=gpd.points_from_xy(tests.lon, tests.lat),
                     crs="EPSG:4326").to_file(path)
    speed = dataclasses.replace(config.speed, path=path)
    assert not stream.supports(speed)
    v = analyse(replace(config, speed=speed)).villages.set_index("village_code")
    assert v.loc["V1", "tests"] == 7


def test_duplicate_finder_spills_and_keeps_the_first(tmp_path):
    rng = np.random.default_rng(0)
    h1 = rng.integers(0, 2**63, 5000, dtype=np.uint64)
    h2 = rng.integers(0, 2**63, 5000, dtype=np.uint64)
    copies = rng.integers(0, 5000, 800)
    h1, h2 = np.r_[h1, h1[copies]], np.r_[h2, h2[copies]]
    rows = np.arange(1, len(h1) + 1)
    finder = stream.DuplicateFinder(buffer_mb=0.01, spill_dir=tmp_path)
    for s in range(0, len(h1), 333):
        finder.add(h1[s:s + 333], h2[s:s + 333], rows[s:s + 333], rows[s:s + 333] % 7)
    got, village = finder.duplicates()
    finder.close()
    key = pd.Series(list(zip(h1.tolist(), h2.tolist(), strict=True)))
    want = rows[key.duplicated(keep="first").to_numpy()]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(village, want % 7)
    assert not list(tmp_path.iterdir())


def test_spill_file_reads_back_what_was_appended_and_reports_write_errors(tmp_path):
    spill = stream.SpillFile(tmp_path)
    cols = [np.arange(n, dtype=dt) for n, dt in [(1000, np.int64), (7, np.float64), (0, np.uint8),
                                                 (50_000, np.uint64)]]
    where = [spill.append(c) for c in cols]
    spill.finish()
    for c, w in zip(cols, where, strict=True):
        np.testing.assert_array_equal(spill.read(w, c.dtype, len(c)), c)
    spill.close()
    assert list(tmp_path.iterdir()) == []
    # A device that is always full: the writer's error reaches the caller, the file goes away.
    spill = stream.SpillFile(tmp_path)
    spill._file.close()
    spill._file = open("/dev/full", "w+b")  # noqa: SIM115 - closed by spill.close()
    spill.append(np.zeros(1 << 20))
    with pytest.raises(OSError):
        spill.finish()
    spill.close()
    assert list(tmp_path.iterdir()) == []


def test_a_run_that_cannot_be_spilled_fails_the_stream(tmp_path):
    """Runs are sorted and spilled by a thread of the accumulator while rows keep coming in:
    an error there reaches the caller, and closing leaves no file behind."""
    acc = stream.Accumulator(3, has_upload=False, has_latency=False, has_device=False,
                             buffer_mb=1, spill_dir=tmp_path)
    acc._spill = stream.SpillFile(tmp_path)  # its writer thread waits for the first column
    acc._spill._file.close()
    acc._spill._file = open("/dev/full", "w+b")  # noqa: SIM115 - closed by acc.close()
    n = 200_000  # 4 MB of rows: each batch fills more than half the buffer, so it is spilled
    batch = {"row": np.arange(n), "down": np.ones(n)}
    with pytest.raises(OSError):
        for _ in range(4):
            acc.add(np.zeros(n, np.int64), dict(batch))
        acc.statistics(np.full(3, 12.0))
    acc.close()
    assert list(tmp_path.iterdir()) == []


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 40), min_size=0, max_size=30), seed=st.integers(0, 2**31),
       n_shares=st.integers(1, 5), pairs=st.booleans())
def test_group_duplicates_equals_a_set_per_group(sizes, seed, n_shares, pairs):
    """Village by village, split across any number of threads' shares: a row is a copy when
    its hash pair (or its one hash, without a second) appeared earlier in its own village
    (plain Python sets as the reference)."""
    from ruralcov import _kernels

    rng = np.random.default_rng(seed)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    h1 = rng.integers(0, 4, offsets[-1]).astype(np.uint64)  # few values: many copies
    h2 = rng.integers(0, 3, offsets[-1]).astype(np.uint64)
    keys = list(zip(h1.tolist(), h2.tolist(), strict=True)) if pairs else h1.tolist()
    want = np.zeros(offsets[-1], dtype=bool)
    for g in range(len(sizes)):
        seen: set = set()
        for i in range(offsets[g], offsets[g + 1]):
            want[i] = keys[i] in seen
            seen.add(keys[i])
    got = _kernels.group_duplicates(offsets, h1, h2 if pairs else h2[:0], n_shares)
    np.testing.assert_array_equal(got, want)


def test_loading_kernels_and_ranks_imports_no_scipy_yet_numba_keeps_blas(tmp_path):
    """Neither the first kernel nor the median ranks import scipy.linalg or scipy.special (a
    third of a second of every run); numba still knows BLAS is there and imports it when a
    function needs it. In a fresh interpreter: this one has scipy imported by the tests."""
    import subprocess
    import sys

    code = """
import sys
import numpy as np
from ruralcov import _kernels
from ruralcov.classify import median_ci_ranks
import numba.np.arraymath as arraymath
ranks = median_ci_ranks([100])[0].tolist()  # the classic table: 40
offsets = _kernels.group_positions(np.array([1, 0, 1], np.int32), 2)[1].tolist()
loaded = sorted(m for m in sys.modules if m.startswith(("scipy.linalg", "scipy.special")))
print(ranks, offsets, loaded, arraymath._HAVE_BLAS)
dot = _kernels.njit(lambda a: np.dot(a, a))
print(dot(np.arange(4.0)), "scipy.linalg" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=tmp_path).stdout.splitlines()
    assert out == ["[40] [0, 1, 3] [] True", "14.0 True"]


@pytest.mark.parametrize("buffer_mb", [64, 0.002])
def test_rows_far_apart_keep_their_numbers(buffer_mb):
    """Kept rows are 32-bit offsets from the first row of their run: rows further apart than
    that, inside one batch or from one batch to the next, go to windows or runs of their own,
    and copies come back under their own source rows and medians are unchanged, spilled to
    disk or not."""
    rng = np.random.default_rng(3)
    n, n_villages = 3000, 7
    gaps = rng.integers(1, 4, n)
    gaps[rng.choice(n, 5, replace=False)] += 1 << 32  # five jumps past a 32-bit offset
    rows = np.cumsum(gaps)
    village = rng.integers(0, n_villages, n)
    down = rng.random(n) * 100
    h1 = rng.integers(0, 2**63, n, dtype=np.uint64)
    h2 = rng.integers(0, 2**63, n, dtype=np.uint64)
    later = rng.choice(np.arange(n // 2, n), 400, replace=False)
    earlier = rng.integers(0, n // 2, 400)
    for arr in (village, down, h1, h2):
        arr[later] = arr[earlier]
    acc = stream.Accumulator(n_villages, has_upload=False, has_latency=False, has_device=False,
                             buffer_mb=buffer_mb, hashes=2)
    try:
        for s in range(0, n, 250):
            sl = slice(s, s + 250)
            acc.add(village[sl], {"row": rows[sl], "down": down[sl], "h1": h1[sl], "h2": h2[sl]})
        got = acc.statistics(np.full(n_villages, 12.0))
    finally:
        acc.close()
    copy = pd.DataFrame({"v": village, "h1": h1, "h2": h2}).duplicated().to_numpy()
    np.testing.assert_array_equal(acc.duplicates[0], rows[copy])
    np.testing.assert_array_equal(acc.duplicates[1], village[copy])
    want = speed_statistics(village[~copy], down[~copy], n_villages=n_villages,
                            target_mbps=np.full(n_villages, 12.0))
    _equal_stats(want, got)
    assert acc.spilled_rows > 0  # a jump starts a run: the one before goes to disk


@pytest.mark.parametrize("map_bytes", [1, 1 << 30])
def test_parquet_read_through_bounded_memory_maps(tmp_path, monkeypatch, map_bytes):
    """A Parquet file is read through memory maps of at most MAP_BYTES of the columns read
    (a row group at least): every row comes back once, in order, whatever the windows, and
    a file without rows gives no batch."""
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"lon": rng.random(7000), "lat": rng.random(7000),
                          "down": rng.random(7000), "note": rng.choice(["x", "y"], 7000)})
    path = tmp_path / "tests.parquet"
    frame.to_parquet(path, row_group_size=1000)
    frame.iloc[:0].to_parquet(tmp_path / "empty.parquet")
    plan, empty = io.read_plan(path), io.read_plan(tmp_path / "empty.parquet")
    opened = []
    real = io.pq.ParquetFile
    monkeypatch.setattr(io.pq, "ParquetFile", lambda *a, **k: opened.append(k) or real(*a, **k))
    monkeypatch.setattr(io, "MAP_BYTES", map_bytes)
    got = pa.concat_tables(io.iter_batches(plan, ["lon", "down"], batch_rows=1500)).to_pandas()
    pd.testing.assert_frame_equal(got, frame[["lon", "down"]])
    assert all(k == {"memory_map": True} for k in opened)
    assert len(opened) == (1 + 7 if map_bytes == 1 else 1 + 1)  # the footer, then each map
    assert list(io.iter_batches(empty, ["lon"], batch_rows=100)) == []


def _mixed_units(folder, fmt):
    """20,000 tests in Mbit/s (20 Mbit/s in V1) followed by 500 in kbit/s (20,000): the first
    rows, which the pipeline checks before streaming, look clean; the whole file does not."""
    sq = gpd.read_file(folder / "polygons.gpkg").geometry.values[0]
    rng = np.random.default_rng(4)
    n = 20_500
    x0, y0, x1, y1 = sq.bounds
    frame = pd.DataFrame({
        "lon": rng.uniform(x0 + 1e-4, x1 - 1e-4, n).round(7),
        "lat": rng.uniform(y0 + 1e-4, y1 - 1e-4, n).round(7),
        "down": np.r_[np.full(20_000, 20.0), np.full(500, 20_000.0)],
        "up": 5.0, "ping": 20.0, "device": rng.choice(["a", "b", "c"], n),
    })
    path = folder / f"mixed.{fmt}"
    frame.to_csv(path, index=False) if fmt == "csv" else frame.to_parquet(path)
    return path


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_unit_check_on_the_complete_counts(tmp_path, fmt):
    """The rule is decided on every row streamed, not only on the early sample: 500 rows in
    kbit/s after 20,000 clean ones (2.4 % above 10 Gbit/s) stop the run, naming a mix."""
    from ruralcov.errors import UnitError

    config = load_config(write_north_world(tmp_path))
    speed = dataclasses.replace(config.speed, path=_mixed_units(tmp_path, fmt))
    sample = stream.sample_tally(speed)
    assert sample.checked == 20_000 and sample.absurd == 0  # the early check passes
    with pytest.raises(UnitError) as exc:
        analyse(replace(config, speed=speed))
    message = str(exc.value)
    for words in ("'down'", f"mixed.{fmt}", "20,500 checked rows", "500 (2.4%)",
                  'download_unit = "kbps"', "mixes units"):
        assert words in message, (words, message)
    assert "first" not in message


def test_sample_tally_counts_the_first_rows(tmp_path):
    config = load_config(write_north_world(tmp_path))
    sample = stream.sample_tally(config.speed, rows=10)
    assert (sample.checked, sample.absurd) == (10, 0)  # the world's first 10 rows are clean
    assert 10 <= sample.median() <= 30
    whole = stream.sample_tally(config.speed)
    # 32 rows: 28 tests and 1 edge test in villages, 1 outside every village (checked),
    # 1 negative and 1 without coordinates (not checked).
    assert (whole.checked, whole.absurd) == (30, 0)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_column_named_twice_stops_the_stream_and_the_loader_alike(tmp_path, fmt):
    from ruralcov.errors import SchemaError
    from ruralcov.loaders import load_speed_tests

    config = load_config(write_north_world(tmp_path))
    frame = pd.read_csv(tmp_path / "tests.csv")
    names = [*frame.columns, "down"]  # the upload column again, under the download's name
    columns = [pa.array(frame[c]) for c in frame.columns] + [pa.array(frame["up"])]
    table = pa.Table.from_arrays(columns, names=names)
    path = tmp_path / f"twice.{fmt}"
    if fmt == "csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, path)
    else:
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    speed = dataclasses.replace(config.speed, path=path)
    with pytest.raises(SchemaError) as streamed:
        stream.speed_plan(speed)
    with pytest.raises(SchemaError) as loaded:
        load_speed_tests(speed)
    assert str(streamed.value) == str(loaded.value)
    assert f"twice.{fmt} has the column 'down' twice in its header (columns 3 and 7)" in str(
        streamed.value)


@pytest.mark.parametrize("setting", ["download", "period"])
def test_a_misspelt_column_stops_the_stream_and_the_loader_alike(tmp_path, monkeypatch, setting):
    """A download or period column the file lacks stops either engine with the same message,
    naming the closest column (one rule, :func:`ruralcov.checks.require_column`)."""
    from ruralcov.errors import SchemaError

    config = load_config(write_north_world(tmp_path))
    frame = pd.read_csv(tmp_path / "tests.csv").assign(quarter="2024Q1")
    frame.to_csv(tmp_path / "tests.csv", index=False)
    wrong = {"download": {"download": "dwn"}, "period": {"period": "quater"}}[setting]
    config = replace(config, speed=dataclasses.replace(config.speed, **wrong))
    with pytest.raises(SchemaError) as streamed:
        analyse(config)
    with monkeypatch.context() as m, pytest.raises(SchemaError) as loaded:
        m.setattr(stream, "supports", lambda speed: False)
        analyse(config)
    assert str(streamed.value) == str(loaded.value)
    closest = {"download": "'down'", "period": "'quarter'"}[setting]
    assert f"{setting} column {next(iter(wrong.values()))!r} not found" in str(streamed.value)
    assert closest in str(streamed.value)
