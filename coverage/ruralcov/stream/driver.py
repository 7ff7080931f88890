"""The stream run: batches read, checked, joined, accumulated; the statistics and issues.

:func:`stream_speed_tests` reads the tests batch by batch (in a thread ahead of the rest), has
each checked and joined (:mod:`ruralcov.stream.checking`), records what the rules found
(:class:`~ruralcov.stream.issues.IssueLog`) and hands the usable rows inside the villages to
the accumulator (:mod:`ruralcov.stream.accumulate`), and those outside to the duplicate finder
(:mod:`ruralcov.stream.duplicates`). Only the columns the checks and statistics use are read
batch by batch; rows that agree in those are compared in every column afterwards, unless there
are so many that streaming the file again with every column is cheaper.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import pyarrow as pa

from ruralcov import checks, io, postgis, units
from ruralcov.config import SpeedConfig
from ruralcov.crs import parse_crs
from ruralcov.errors import RuralcovError
from ruralcov.join import PolygonIndex
from ruralcov.loaders import InputRecord
from ruralcov.stream.accumulate import Accumulator
from ruralcov.stream.checking import Checker, Prepared, device_keys, join_batch
from ruralcov.stream.duplicates import (
    CANDIDATES_PER_MB,
    DuplicateFinder,
    TooManyCandidates,
    copies,
)
from ruralcov.stream.issues import IssueLog
from ruralcov.stream.reading import prefetch, speed_plan
from ruralcov.validate import dropped_counts

__all__ = ["KeptRows", "StreamedSpeed", "one_pass", "sample_points", "sample_tally",
           "stream_speed_tests", "streamed_statistics"]


class KeptRows(Protocol):
    """Receives the usable tests inside the villages, batch by batch (:mod:`ruralcov.cells`).

    ``add`` gets their villages, longitude and latitude, and the accumulator's fields
    (``row``, ``down`` and, with a device column, ``dev`` and ``dev_ok``); ``clear`` forgets
    them when the stream starts over. Rows later found to be copies or sampled out are among
    them: they are in the issues.
    """

    def add(self, village: np.ndarray, x: np.ndarray, y: np.ndarray,
            values: dict[str, np.ndarray]) -> None: ...

    def clear(self) -> None: ...


@dataclass(frozen=True)
class StreamedSpeed:
    """What :func:`stream_speed_tests` returns: per-village statistics, issues, the record."""

    stats: pd.DataFrame
    issues: pd.DataFrame
    record: InputRecord
    spilled_rows: int = 0


def _sha256_in_background(path: Path) -> tuple[threading.Thread, dict[str, str]]:
    box: dict[str, str] = {}

    def work() -> None:
        box["sha256"] = io.sha256_file(path)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    return t, box


def stream_speed_tests(
    speed: SpeedConfig,
    index: PolygonIndex,
    *,
    n_villages: int,
    target_mbps: np.ndarray,
    buffer_mb: float = 256,
    batch_rows: int = 1 << 18,
    spill_dir: str | Path | None = None,
    hash_input: bool = True,
    kept: KeptRows | None = None,
) -> StreamedSpeed:
    """Read, check and join the tests of ``speed`` batch by batch; exact per-village stats.

    Parameters
    ----------
    speed
        The [speed] section (file, columns, CRS).
    index
        The villages' :class:`~ruralcov.join.PolygonIndex` (EPSG:4326, priority = code rank).
    n_villages, target_mbps
        Number of villages and each one's download target.
    buffer_mb
        Memory for kept tests before they spill to disk.
    batch_rows
        Rows per batch read (small batches keep every array under numpy's huge-page size,
        so their memory is reused rather than faulted in anew).
    spill_dir
        Folder for the spilled tests (default: the system's temporary folder).
    hash_input
        Compute the file's SHA-256 for the manifest (in a background thread).
    kept
        Also hand the usable tests inside the villages to ``kept`` (:class:`KeptRows`).

    Returns
    -------
    StreamedSpeed
        ``stats`` with the columns of :func:`ruralcov.classify.speed_statistics` (one row per
        village), ``issues`` as ``load_speed_tests`` plus the outside-villages check give them,
        and the input's record (rows read = used + dropped).

    Raises
    ------
    InputError, SchemaError, CRSError
        As :func:`ruralcov.loaders.load_speed_tests`; ValueError when the input cannot be
        streamed (see :func:`ruralcov.stream.supports`).
    """
    p = speed_plan(speed)
    if p is None:
        raise ValueError(f"speed: {speed.path} cannot be streamed; use load_speed_tests")
    Checker(p, speed)  # the schema errors, before anything is started
    # A database is read once, every column at a time: a second read (to compare candidate
    # copies) could see rows that changed meanwhile. Its rows are hashed as they come.
    database = p.kind == "postgis"
    content = postgis.RowDigest() if database else None
    hasher, digest = (_sha256_in_background(p.path) if hash_input and not database
                      else (None, {}))
    options = {"buffer_mb": buffer_mb, "batch_rows": batch_rows, "spill_dir": spill_dir,
               "kept": kept, "digest": content}
    try:
        stats, issues, rows, spilled = one_pass(p, speed, index, n_villages, target_mbps,
                                                every_column=database, **options)
    except TooManyCandidates:  # so many possible copies that reading every column is cheaper
        if kept is not None:
            kept.clear()
        stats, issues, rows, spilled = one_pass(p, speed, index, n_villages, target_mbps,
                                                every_column=True, **options)
    if hasher is not None:
        hasher.join()
    dropped = dropped_counts(issues, "speed")
    sha = content.hexdigest() if content is not None else digest.get("sha256", "")
    record = InputRecord(layer="speed", path=p.path, sha256=sha,
                         rows_read=rows, rows_used=rows - sum(dropped.values()), dropped=dropped)
    return StreamedSpeed(stats=stats, issues=issues, record=record, spilled_rows=spilled)


def _checked(tables: Iterator[pa.Table], checker: Checker, index: PolygonIndex
             ) -> Iterator[tuple[Prepared, np.ndarray]]:
    """Each batch checked and joined (run in the reader thread by :func:`prefetch`: numpy and
    the numba kernels release the GIL, so this overlaps with accumulating the previous batch)."""
    source_rows = 0  # rows of the file so far (a period column skips some of them)
    for table in tables:
        prep = checker.check(table, source_rows + 1)
        source_rows += table.num_rows
        del table
        yield prep, join_batch(prep, index)


def _kept_values(prep: Prepared, usable: np.ndarray, inside: np.ndarray, *,
                 hashes: int) -> dict[str, np.ndarray]:
    """The accumulator's fields of the usable rows inside the villages (``inside``: which of
    the ``usable`` rows are)."""
    every = inside.all()
    keep = usable if every else usable[inside]
    values = {"row": prep.rows[keep], "down": prep.download[keep]}
    for f, h in (("h1", prep.h1), ("h2", prep.h2))[:hashes]:
        values[f] = h if every else h[inside]  # type: ignore[index]
    optional = {"up": prep.upload, "lat": prep.latency, "dev": prep.device,
                "dev_ok": prep.device_ok, "day": prep.day, "day_ok": prep.day_ok,
                "skey": prep.skey}
    values.update({f: v[keep] for f, v in optional.items() if v is not None})
    return values


def one_pass(p: io.ReadPlan, speed: SpeedConfig, index: PolygonIndex, n_villages: int,
             target_mbps: np.ndarray, *, buffer_mb: float, batch_rows: int,
             spill_dir: str | Path | None, every_column: bool, kept: KeptRows | None = None,
             digest: postgis.RowDigest | None = None
             ) -> tuple[pd.DataFrame, pd.DataFrame, int, int]:
    """One pass of :func:`stream_speed_tests` over the file.

    Without ``every_column`` only the columns the checks and statistics use are read, and the
    accumulator keeps one hash (over the columns read): rows sharing it are compared in every
    column after the stream (:func:`ruralcov.stream.duplicates.copies`). With every column,
    two hashes over all of them decide (2^-128 for a false copy).

    Parameters
    ----------
    p
        How the file is read (:func:`ruralcov.stream.speed_plan`).
    speed, index, n_villages, target_mbps, buffer_mb, batch_rows, spill_dir, kept
        As for :func:`stream_speed_tests`.
    every_column
        Read (and hash) every column batch by batch.
    digest
        A database's content hash, fed every batch read.

    Returns
    -------
    stats, issues, rows_read, rows_spilled
        As :func:`stream_speed_tests` gives them; raises
        :class:`~ruralcov.stream.duplicates.TooManyCandidates` when comparing the candidate
        copies would not fit in the buffer.
    """
    checker = Checker(p, speed, every_column=every_column)
    confirm = bool(checker.other_columns)
    log = IssueLog()
    acc = Accumulator(
        n_villages, has_upload=checker.roles["upload"] is not None,
        has_latency=checker.roles["latency"] is not None,
        has_device=checker.roles["device"] is not None, buffer_mb=buffer_mb, spill_dir=spill_dir,
        hashes=1 if confirm else 2, statistic=speed.statistic or "median",
        sample=checker.roles["time"] is not None,
    )
    # Copies inside the villages are found by the accumulator, village by village; this finds
    # copies among the (usually few) usable rows outside every village.
    dups = DuplicateFinder(buffer_mb=min(buffer_mb / 4, 128), spill_dir=spill_dir)
    rows = 0  # rows read (of the period, with a period column)
    try:
        tables = io.iter_batches(p, checker.read_columns, batch_rows=batch_rows, digest=digest)
        for prep, village in prefetch(_checked(tables, checker, index)):
            log.record(prep, village)
            usable = np.flatnonzero(prep.status == checks.OK)
            inside = village[usable] >= 0
            if not inside.all():
                out = ~inside
                dups.add(prep.h1[out], prep.h2[out], prep.rows[usable[out]],
                         village[usable[out]])
            values = _kept_values(prep, usable, inside, hashes=1 if confirm else 2)
            where = usable if inside.all() else usable[inside]
            acc.add(village[where], values)
            if kept is not None:
                kept.add(village[where], prep.x[where], prep.y[where], values)
            rows += len(prep.status)
        log.check_units(checker)
        stats, dup_rows = _statistics(acc, dups, target_mbps, p, speed, confirm=confirm,
                                      limit=int(CANDIDATES_PER_MB * buffer_mb))
        issues = log.frame(checker, duplicates=dup_rows, sampled=acc.sampled)
    finally:
        acc.close()
        dups.close()
    return stats, issues, rows, acc.spilled_rows


def _statistics(acc: Accumulator, dups: DuplicateFinder, target_mbps: np.ndarray,
                p: io.ReadPlan, speed: SpeedConfig, *, confirm: bool, limit: int
                ) -> tuple[pd.DataFrame, np.ndarray]:
    """The accumulator's statistics and every copy (sorted rows), candidates confirmed in
    every column when the hashes cover only some."""
    if confirm:
        found = dups.candidates()
        if len(found) > limit:
            raise TooManyCandidates
        outside_dups = copies(found, p, speed)
        stats = acc.statistics(target_mbps, lambda c: copies(c, p, speed),
                               max_candidates=limit - len(found))
    else:
        outside_dups, _ = dups.duplicates()
        stats = acc.statistics(target_mbps)
    return stats, np.sort(np.concatenate([outside_dups, acc.duplicates[0]]))


def streamed_statistics(
    village: np.ndarray, download: np.ndarray, *, n_villages: int, target_mbps: np.ndarray,
    upload: np.ndarray | None = None, latency: np.ndarray | None = None,
    device: np.ndarray | None = None, buffer_mb: float = 256, batch_rows: int = 1 << 20,
    statistic: str = "median", sample: dict[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """:func:`ruralcov.classify.speed_statistics` computed by the streaming accumulator.

    The same arguments, fed in batches of ``batch_rows``: the tests prove with it that both
    give the same numbers.

    Parameters
    ----------
    village, download, n_villages, target_mbps, upload, latency, statistic
        As for :func:`ruralcov.classify.speed_statistics`.
    device
        Device ids (hashed to 64-bit keys here).
    buffer_mb, batch_rows
        The accumulator's memory and the rows fed at a time.
    sample
        The ``day``, ``day_ok`` and ``skey`` arrays of device-day sampling.

    Returns
    -------
    pandas.DataFrame
        The statistics; the rows sampling left out are in ``frame.attrs["sampled"]``.
    """
    village = np.asarray(village, dtype=np.int64)
    download = np.asarray(download, dtype=np.float64)
    keys = ok = None
    if device is not None:
        keys, ok = device_keys(pa.array(np.asarray(device, dtype=object), from_pandas=True))
    acc = Accumulator(n_villages, has_upload=upload is not None, has_latency=latency is not None,
                      has_device=device is not None, buffer_mb=buffer_mb, statistic=statistic,
                      sample=sample is not None)
    measures = {"up": upload, "lat": latency}
    columns = {f: np.asarray(v, dtype=np.float64) for f, v in measures.items() if v is not None}
    others = {"dev": keys, "dev_ok": ok, **(sample or {})}
    columns.update({f: np.asarray(v) for f, v in others.items() if v is not None})
    try:
        for s in range(0, len(village), batch_rows):
            keep = np.flatnonzero(village[s:s + batch_rows] >= 0) + s
            values = {"row": keep + 1, "down": download[keep]}
            values.update({f: v[keep] for f, v in columns.items()})
            acc.add(village[keep], values)
        stats = acc.statistics(target_mbps)
        stats.attrs["sampled"] = acc.sampled
        return stats
    finally:
        acc.close()


def _first_rows(speed: SpeedConfig, rows: int, *, every_column: bool = False
                ) -> tuple[Checker, pa.Table] | None:
    """A checker of the tests file and its first ``rows`` rows; None when it cannot be
    streamed or has no rows."""
    p = speed_plan(speed)
    if p is None:
        return None
    checker = Checker(p, speed, every_column=every_column)
    table = io.first_batch(p, checker.read_columns, rows)
    return None if table is None else (checker, table)


def sample_tally(speed: SpeedConfig, *, rows: int = 20_000) -> units.SpeedTally | None:
    """The unit check's counts of the first ``rows`` rows of a streamable tests file.

    So that a unit mistake stops the run before the long stream does; any problem reading
    them is left for the stream to report.

    Parameters
    ----------
    speed
        The ``[speed]`` section.
    rows
        Rows counted.

    Returns
    -------
    ruralcov.units.SpeedTally or None
        None when the file cannot be streamed or read.
    """
    try:
        first = _first_rows(speed, rows)
        if first is None:
            return None
        prep = first[0].check(first[1], 1)
        return checks.tally(prep.download, prep.status)
    except RuralcovError:
        return None


def sample_points(speed: SpeedConfig | None, *, rows: int = 20_000
                  ) -> tuple[np.ndarray, np.ndarray] | None:
    """Longitude and latitude of the first ``rows`` tests, for
    :func:`ruralcov.validate.check_positions`.

    Only a sample: the full file is streamed later, and a swap shows in any part of it.

    Parameters
    ----------
    speed
        The tests' section; None when the run has no tests to sample.
    rows
        How many of the first rows to read.

    Returns
    -------
    tuple of numpy.ndarray or None
        None unless the file is a CSV or Parquet file (or a database table) with lon/lat
        columns in WGS 84 or GCJ-02/BD-09, and readable.
    """
    if speed is None:
        return None
    try:
        given = parse_crs(speed.crs)
        if given is not None and not isinstance(given, str) and not given.is_geographic:
            return None
        plan = speed_plan(speed)
        if plan is None or plan.kind not in ("csv", "parquet", "postgis") or not (
                plan.lon and plan.lat):
            return None
        batch = io.first_batch(plan, [plan.lon, plan.lat], rows)
    except RuralcovError:
        return None  # the full read reports the problem with its own message
    if batch is None:
        return None
    x = pd.to_numeric(pd.Series(batch.column(plan.lon).to_pylist()), errors="coerce")
    y = pd.to_numeric(pd.Series(batch.column(plan.lat).to_pylist()), errors="coerce")
    return x.to_numpy(dtype=float), y.to_numpy(dtype=float)
