"""The Dask engine: speed tests joined and reduced on a dask.distributed cluster.

``engine = "dask"`` in ``[run]`` (or ``ruralcov run --engine dask``) runs the speed-test step of
:func:`ruralcov.analyse` on a cluster: the tests (partitioned Parquet: a folder of parts or a
file's row groups, grouped up to ``dask_partition_rows`` rows; a CSV is one partition) become a
dask-geopandas GeoDataFrame of points; each partition is checked exactly as the local stream
checks a batch (:class:`ruralcov.stream.Checker`) and joined with the villages'
:class:`~ruralcov.join.PolygonIndex`, broadcast to every worker; the kept tests are shuffled by
village so that each village's tests meet in one partition, where the exact statistics are
computed by the same accumulator as the local engine. The result, the issues and the input
record are identical to the local engine's.

``dask_scheduler = "tcp://host:8786"`` uses an existing cluster (every worker needs ruralcov
installed and read access to the tests at the same path); without it a ``LocalCluster`` with
``dask_workers`` processes is started for the run and closed afterwards. :func:`check_cluster`
asks that scheduler for workers before the run reads anything, so that a wrong address stops
the run at once rather than after its villages and fibre are read.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ruralcov import checks, io, stream, units
from ruralcov.checks import OK
from ruralcov.config import Config, SpeedConfig
from ruralcov.errors import ConfigError
from ruralcov.join import PolygonIndex
from ruralcov.loaders import InputRecord
from ruralcov.validate import dropped_counts

__all__ = ["check_cluster", "cluster_client", "dask_speed_tests", "pieces", "read_piece",
           "read_piece_meta"]

#: Seconds to reach ``dask_scheduler`` and to find a worker there before the run stops: a
#: scheduler answers in milliseconds; distributed's own default (30 s) retries a closed port.
CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Piece:
    """One partition: row groups of one Parquet file, or a whole CSV; ``row0`` is 1-based."""

    file: str
    row_groups: tuple[int, ...] | None
    row0: int


def pieces(p: io.ReadPlan, *, rows_per_piece: int) -> list[Piece]:
    """Partitions of the tests with the source row number each starts at.

    Parameters
    ----------
    p
        How the tests are read (:func:`ruralcov.stream.speed_plan`).
    rows_per_piece
        Row groups of a Parquet file are grouped up to this many rows (a CSV is one piece).

    Returns
    -------
    list of Piece
        In source order.
    """
    if p.kind == "csv":
        return [Piece(str(p.path), None, 1)]
    out, row = [], 1
    for f in p.files:
        meta = pq.ParquetFile(f).metadata
        group: list[int] = []
        size, start = 0, row
        for g in range(meta.num_row_groups):
            n = meta.row_group(g).num_rows
            if group and size + n > rows_per_piece:
                out.append(Piece(str(f), tuple(group), start))
                group, size, start = [], 0, start + size
            group.append(g)
            size += n
        if group:
            out.append(Piece(str(f), tuple(group), start))
        row += meta.num_rows
    return out


def read_piece(piece: Piece, p: io.ReadPlan, speed: SpeedConfig) -> pd.DataFrame:
    """A partition checked like a stream batch (:class:`ruralcov.stream.Checker`).

    Parameters
    ----------
    piece
        The partition.
    p, speed
        The file and the ``[speed]`` section.

    Returns
    -------
    pandas.DataFrame
        One row per row read, with the columns of :func:`read_piece_meta`: source row,
        coordinates (EPSG:4326), status, measures, row hashes (usable rows) and what the range
        check found.
    """
    checker = stream.Checker(p, speed)
    if piece.row_groups is None:
        table = pa.concat_tables(list(io.iter_batches(p, checker.read_columns)))
    else:
        table = pq.ParquetFile(piece.file).read_row_groups(list(piece.row_groups),
                                                           columns=checker.read_columns)
    prep = checker.check(table, piece.row0)
    n = len(prep.status)
    optional = {"up": (prep.upload, np.nan), "lat": (prep.latency, np.nan),
                "neg_up": (prep.neg_upload, False), "neg_lat": (prep.neg_latency, False),
                "dev": (prep.device, np.zeros(n, np.uint64)), "dev_ok": (prep.device_ok, False),
                "day": (prep.day, np.int64(0)), "day_ok": (prep.day_ok, True),
                "skey": (prep.skey, np.uint64(0))}
    frame = pd.DataFrame({
        "row": prep.rows, "x": prep.x, "y": prep.y, "status": prep.status, "down": prep.download,
        **{c: value if value is not None else default for c, (value, default) in optional.items()},
        "located": prep.located, "out_of_range": prep.out_of_range, "swap": prep.swap,
        "h1": np.uint64(0), "h2": np.uint64(0),
    })
    usable = np.flatnonzero(prep.status == OK)
    frame.loc[usable, "h1"] = prep.h1
    frame.loc[usable, "h2"] = prep.h2
    return frame[list(read_piece_meta().columns)]


def _assign(part: Any, index: PolygonIndex) -> pd.DataFrame:
    """The village of each usable test of a dask-geopandas partition (-1 otherwise)."""
    village = np.full(len(part), -1, dtype=np.int64)
    ok = part["status"].to_numpy() == OK
    if ok.any():
        village[ok] = index.assign(np.asarray(part.geometry.values, dtype=object)[ok])
    out = pd.DataFrame(part.drop(columns="geometry"))
    out["village"] = village
    return out


def _duplicates(part: pd.DataFrame) -> pd.DataFrame:
    """Rows of this hash partition that copy an earlier row (the first copy is kept)."""
    part = part.sort_values("row")
    dup = checks.first_copies(part["h1"].to_numpy(np.uint64), part["h2"].to_numpy(np.uint64))
    return part.loc[dup, ["row", "village"]]


def _without(part: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    return part[~np.isin(part["row"].to_numpy(), rows)] if len(rows) else part


def _issue_rows(part: pd.DataFrame) -> pd.DataFrame:
    """Rows that make an issue: dropped, outside, or with a negative upload/latency."""
    hit = ((part["status"] != OK) | (part["village"] < 0) | part["neg_up"]
           | part["neg_lat"] | ~part["day_ok"] | part["out_of_range"])
    return part.loc[hit, ["row", "status", "village", "neg_up", "neg_lat", "out_of_range",
                          "swap", "day_ok"]]


def _present(part: pd.DataFrame) -> pd.DataFrame:
    """Rows with a geometry before the range check (as the reader counts them), and usable
    rows with a readable time."""
    st = part["status"].to_numpy()
    return pd.DataFrame({"present": [int(part["located"].sum())],
                         "timed": [int(((st == OK) & part["day_ok"].to_numpy()).sum())]})


def _tally(part: pd.DataFrame) -> pd.DataFrame:
    """The unit check's counts of a partition (:func:`ruralcov.checks.tally`), as its
    non-empty histogram bins."""
    counts = checks.tally(part["down"].to_numpy(), part["status"].to_numpy()).counts
    nz = np.flatnonzero(counts[0])
    return pd.DataFrame({"bin": nz, "all": counts[0][nz], "absurd": counts[1][nz]})


def _merged_tally(bins: pd.DataFrame) -> units.SpeedTally:
    """The partitions' bins of :func:`_tally` summed into one tally."""
    out = units.SpeedTally()
    np.add.at(out.counts[0], bins["bin"].to_numpy(np.int64), bins["all"].to_numpy(np.int64))
    np.add.at(out.counts[1], bins["bin"].to_numpy(np.int64), bins["absurd"].to_numpy(np.int64))
    return out


def _village_stats(part: pd.DataFrame, target: np.ndarray, fields: tuple[str, ...],
                   statistic: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Exact statistics of the villages whose tests are all in this partition, and the rows
    left out by device-day sampling."""
    cols = ["village", *stream.STAT_COLUMNS]
    if len(part) == 0:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in cols}), np.empty(0, np.int64)
    ids, local = np.unique(part["village"].to_numpy(), return_inverse=True)
    acc = stream.Accumulator(len(ids), has_upload="up" in fields, has_latency="lat" in fields,
                             has_device="dev" in fields, buffer_mb=1 << 20,
                             statistic=statistic, sample="day" in fields)
    values = {f: part[f].to_numpy(acc.dtypes[f]) for f in ("row", *fields)}
    acc.add(local, values)
    stats = acc.statistics(target[ids])
    stats["devices"] = stats["devices"].astype(float)
    stats.insert(0, "village", ids)
    return stats, acc.sampled


def _client_classes() -> tuple[Any, Any]:
    """dask.distributed's Client and LocalCluster, or the install hint when dask is missing."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ConfigError('engine = "dask" needs the dask extra: pip install "ruralcov[dask]"'
                          ) from exc
    return Client, LocalCluster


def check_cluster(config: Config) -> None:
    """Stop before the analysis when the Dask engine cannot run: dask is not installed, or
    ``[run] dask_scheduler`` is not an address, does not answer or has no worker (each within
    :data:`CONNECT_TIMEOUT_S`).

    The scheduler is asked through a bare connection, not a Client: a Client that failed to
    connect lingers and prints a traceback when the interpreter exits.

    Parameters
    ----------
    config
        A configuration with ``engine = "dask"``.

    Raises
    ------
    ConfigError
        Naming the address and what to start there.
    """
    _client_classes()
    address = config.run.dask_scheduler
    if not address:  # a LocalCluster is started for the run
        return
    where = f"[run] dask_scheduler = {address!r}"
    with ThreadPoolExecutor(1) as pool:  # its own event loop, also under a notebook's
        try:
            workers = pool.submit(asyncio.run, _workers_at(address)).result()
        except ValueError as exc:
            raise ConfigError(f"{where} is not a scheduler address ({exc}): write it as "
                              "tcp://host:8786") from None
        except (OSError, TimeoutError) as exc:
            reason = " ".join(str(exc).split())
            raise ConfigError(
                f"{where}: no Dask scheduler answered within {CONNECT_TIMEOUT_S:g} s"
                f"{f' ({reason})' if reason else ''}. Start one there with `dask scheduler` (it "
                "prints its address, tcp://host:8786), or leave dask_scheduler empty to run on "
                "a LocalCluster") from None
    if not workers:
        raise ConfigError(
            f"{where}: the scheduler has no workers after {CONNECT_TIMEOUT_S:g} s. Start them "
            f"with `dask worker {address} --nthreads 1` on each machine (with this ruralcov "
            "installed and the inputs at the same paths)")


async def _workers_at(address: str) -> int:
    """The number of workers of the scheduler at ``address``, waiting up to
    :data:`CONNECT_TIMEOUT_S` for a first one."""
    from distributed.core import rpc

    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    async with rpc(address, timeout=CONNECT_TIMEOUT_S) as scheduler:
        while True:
            info = await asyncio.wait_for(scheduler.identity(), 2 * CONNECT_TIMEOUT_S)
            if info["workers"] or time.monotonic() > deadline:
                return len(info["workers"])
            await asyncio.sleep(0.2)


@contextmanager
def cluster_client(config: Config) -> Iterator[Any]:
    """A dask.distributed Client: to ``dask_scheduler``, or to a LocalCluster for the run.

    Parameters
    ----------
    config
        The run's configuration (``[run]``: scheduler address or number of workers).

    Yields
    ------
    dask.distributed.Client
        Closed (with the LocalCluster) on leaving.

    Raises
    ------
    ConfigError
        When dask is not installed.
    """
    client_class, local_cluster = _client_classes()
    run = config.run
    if run.dask_scheduler:
        with client_class(run.dask_scheduler) as client:
            yield client
        return
    workers = run.dask_workers or os.cpu_count() or 1
    # The scheduler of a LocalCluster logs in this process: its shuffle plugin announces
    # every shuffle as a WARNING (two lines each, several shuffles a run): routine here.
    shuffle_log = logging.getLogger("distributed.shuffle")
    level = shuffle_log.level
    shuffle_log.setLevel(logging.ERROR)
    try:
        with local_cluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=None) as cluster, client_class(cluster) as client:
            yield client
    finally:
        shuffle_log.setLevel(level)


def dask_speed_tests(
    config: Config,
    polygons: Any,
    *,
    priority: np.ndarray,
    target_mbps: np.ndarray,
    client: Any = None,
    kept: stream.KeptRows | None = None,
) -> stream.StreamedSpeed | None:
    """Per-village speed statistics, issues and record computed on a Dask cluster.

    Parameters
    ----------
    config
        The run's configuration (``[speed]``, ``[run]``).
    polygons
        The villages' polygons (EPSG:4326).
    priority
        Each village's rank by code (a test on a shared boundary goes to the lowest).
    target_mbps
        Each village's download target.
    client
        An existing ``dask.distributed.Client`` (default: one from :func:`cluster_client`).
    kept
        Also hand the usable tests inside the villages to ``kept``
        (:class:`ruralcov.stream.KeptRows`), gathered from the workers at once.

    Returns
    -------
    ruralcov.stream.StreamedSpeed or None
        As :func:`ruralcov.stream.stream_speed_tests` gives them; None when the tests are in
        a format the stream does not read (the pipeline then loads them whole, locally).
    """
    speed = config.speed
    p = stream.speed_plan(speed)
    if p is None:
        return None
    if client is None:
        with cluster_client(config) as c:
            return dask_speed_tests(config, polygons, priority=priority,
                                    target_mbps=target_mbps, client=c, kept=kept)
    import dask

    checker = stream.Checker(p, speed)  # raises the loader's schema errors up front
    parts = pieces(p, rows_per_piece=config.run.dask_partition_rows)
    index = client.scatter(PolygonIndex(polygons, priority=priority), broadcast=True)
    tests, joined = _graph(parts, p, speed, index)
    n_out = max(1, min(len(parts) * 2, 64))
    found = dask.compute(*_first_pass(tests, joined, n_out, cells=kept is not None))
    issues_df, present_df, row_counts, dups_df, bins = found[:5]
    log = stream.IssueLog(tally=_merged_tally(bins))
    log.check_units(checker)  # before the statistics are computed
    dup_rows = np.sort(dups_df["row"].to_numpy(np.int64))
    target = np.asarray(target_mbps, dtype=float)
    stats_df, sampled = _statistics(joined, dup_rows, target, checker, n_out)
    if kept is not None:
        cells = found[5]
        values = {f: cells[f].to_numpy() for f in ("row", "down", "dev", "dev_ok")}
        if checker.roles["device"] is None:
            del values["dev"], values["dev_ok"]
        kept.add(cells["village"].to_numpy(), cells["x"].to_numpy(), cells["y"].to_numpy(),
                 values)
    issues = _issues(log, checker, issues_df, present_df, dup_rows, sampled)
    n_rows = int(np.sum(row_counts))
    stats = _full_stats(stats_df, len(target), has_device=checker.roles["device"] is not None)
    dropped = dropped_counts(issues, "speed")
    record = InputRecord(layer="speed", path=p.path, sha256=io.sha256_file(p.path),
                         rows_read=n_rows, rows_used=n_rows - sum(dropped.values()),
                         dropped=dropped)
    return stream.StreamedSpeed(stats=stats, issues=issues, record=record)


def _graph(parts: list[Piece], p: io.ReadPlan, speed: SpeedConfig, index: Any
           ) -> tuple[Any, Any]:
    """The checked partitions, and the same joined to the villages (Dask collections)."""
    import dask.dataframe as dd
    import dask_geopandas

    meta = read_piece_meta()
    tests = dd.from_map(read_piece, parts, p=p, speed=speed, meta=meta, enforce_metadata=False)
    points = dask_geopandas.from_dask_dataframe(
        tests, geometry=dask_geopandas.points_from_xy(tests, "x", "y", crs="EPSG:4326")
    )
    joined = points.map_partitions(_assign, index, meta=meta.assign(village=np.int64(0)))
    return tests, joined


def _first_pass(tests: Any, joined: Any, n_out: int, *, cells: bool) -> list[Any]:
    """What one pass over the partitions computes: the rows of issues, the counts of located
    and timed rows, the rows read, the copies, the unit check's bins (and with ``cells``
    the usable tests inside the villages, for :mod:`ruralcov.cells`)."""
    empty = pd.DataFrame({"row": np.int64(0), "village": np.int64(0)}, index=[0]).iloc[:0]
    usable = joined[joined["status"] == OK][["row", "h1", "h2", "village"]]
    dups = usable.shuffle(on="h1", npartitions=n_out).map_partitions(_duplicates, meta=empty)
    tallies = tests.map_partitions(_tally, meta=pd.DataFrame(
        {"bin": np.int64(0), "all": np.int64(0), "absurd": np.int64(0)}, index=[0]).iloc[:0])
    out = [joined.map_partitions(_issue_rows),
           tests.map_partitions(_present, meta=pd.DataFrame({"present": [0], "timed": [0]})),
           tests.map_partitions(len), dups, tallies]
    if cells:
        inside = joined[(joined["status"] == OK) & (joined["village"] >= 0)]
        out.append(inside[["row", "village", "x", "y", "down", "dev", "dev_ok"]])
    return out


def _statistics(joined: Any, dup_rows: np.ndarray, target: np.ndarray,
                checker: stream.Checker, n_out: int) -> tuple[pd.DataFrame, np.ndarray]:
    """The statistics of the villages that have tests, and the rows sampling left out: the
    usable tests but the copies, shuffled by village."""
    import dask

    roles = checker.roles
    fields = ("down",) + (("up",) if roles["upload"] else ()) + (
        ("lat",) if roles["latency"] else ()) + (
        ("dev", "dev_ok") if roles["device"] else ()) + (
        ("day", "day_ok", "skey") if roles["time"] else ())
    kept = joined[(joined["status"] == OK) & (joined["village"] >= 0)]
    kept = kept[["row", "village", "down", "up", "lat", "dev", "dev_ok", "day", "day_ok",
                 "skey"]]
    shuffled = kept.map_partitions(_without, dup_rows).shuffle(on="village", npartitions=n_out)
    reduce = dask.delayed(_village_stats, pure=True)
    statistic = checker.speed.statistic or "median"
    found = dask.compute(*[reduce(d, target, fields, statistic) for d in shuffled.to_delayed()])
    stats_df = pd.concat([f[0] for f in found if len(f[0])] or [found[0][0]],
                         ignore_index=True)
    return stats_df, np.sort(np.concatenate([f[1] for f in found]))


def _issues(log: stream.IssueLog, checker: stream.Checker, rows: pd.DataFrame,
            present: pd.DataFrame, dup_rows: np.ndarray, sampled: np.ndarray) -> pd.DataFrame:
    """The issues frame from the partitions' issue rows, as the stream's log builds it."""
    rows = rows.sort_values("row")
    for code, key in checks.STATUS_KEYS.items():
        log.add(key, rows.loc[rows["status"] == code, "row"].to_numpy())
    ok = rows["status"] == OK
    log.add("neg_upload", rows.loc[ok & rows["neg_up"], "row"].to_numpy())
    log.add("neg_latency", rows.loc[ok & rows["neg_lat"], "row"].to_numpy())
    log.add("outside", rows.loc[ok & (rows["village"] < 0), "row"].to_numpy())
    if checker.roles["time"]:
        log.add("bad_time", rows.loc[ok & ~rows["day_ok"], "row"].to_numpy())
    log.present = int(present["present"].sum())
    log.timed = int(present["timed"].sum())
    log.swapped_all = bool(rows.loc[rows["out_of_range"].astype(bool), "swap"].all())
    if log.present:
        checker.resolve_crs()  # this checker read no batch: the CRS the workers' did
    return log.frame(checker, duplicates=dup_rows, sampled=sampled)


def read_piece_meta() -> pd.DataFrame:
    """The (empty) frame :func:`read_piece` returns, for Dask's metadata.

    Returns
    -------
    pandas.DataFrame
        No rows; the columns and dtypes of a partition.
    """
    return pd.DataFrame({
        "row": np.int64(0), "x": 0.0, "y": 0.0, "status": np.int8(0), "down": 0.0, "up": 0.0,
        "lat": 0.0, "neg_up": False, "neg_lat": False, "dev": np.uint64(0), "dev_ok": False,
        "day": np.int64(0), "day_ok": True, "skey": np.uint64(0), "located": False,
        "out_of_range": False, "swap": False, "h1": np.uint64(0), "h2": np.uint64(0),
    }, index=[0]).iloc[:0]


def _full_stats(found: pd.DataFrame, n: int, *, has_device: bool) -> pd.DataFrame:
    """One row per village position: the computed villages, and empty ones for the rest."""
    out = pd.DataFrame({c: np.full(n, np.nan) for c in stream.STAT_COLUMNS})
    out["tests"] = 0
    out["devices"] = 0.0 if has_device else np.nan
    if len(found):
        pos = found["village"].to_numpy(np.int64)
        for c in stream.STAT_COLUMNS:
            values = out[c].to_numpy(copy=True)
            values[pos] = found[c].to_numpy()
            out[c] = values
    out["tests"] = out["tests"].astype(np.int64)
    out["devices"] = (out["devices"].astype("Int64") if has_device
                      else pd.Series(pd.NA, index=out.index, dtype=object))
    return out
