"""Kept tests gathered into village-sorted runs, spilled to disk, and their exact statistics.

Kept rows gather in memory up to half of ``buffer_mb``; a thread then sorts them into a run
and appends it to a spill file on disk while the next half fills (reading never waits for a
sort, and memory stays within the buffer). At the end the villages are cut into ranges whose
tests fit in a fraction of the buffer; for each range the slices of every run are gathered
and the statistics computed exactly (medians as the mean of the two middle values, the
interval from the order statistics of :func:`ruralcov.classify.median_ci_ranks`), so the
result equals :func:`ruralcov.classify.speed_statistics` on the same tests while memory stays
bounded by the buffer and does not grow with the number of points. (The one exception: a
single village with more tests than the buffer holds is processed in one piece.)

Devices are counted by their 64-bit keys (:func:`ruralcov.stream.checking.device_keys`): two
different ids of one village would have to share a 64-bit hash to be counted once
(probability below 3e-12 for a village with 10,000 devices).

Copies of an earlier row of the same village, and with ``sample = "device_day"`` the tests
device-day sampling leaves out (:mod:`ruralcov.sampling`), are left out village by village at
the same point, on the data already gathered for the statistics (no extra pass).
"""

from __future__ import annotations

import os
import queue
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ruralcov.classify import median_ci_ranks
from ruralcov.stream.duplicates import TooManyCandidates, sharing

__all__ = ["STAT_COLUMNS", "Accumulator", "SpillFile"]

#: The per-village statistics, as :func:`ruralcov.classify.speed_statistics` names them.
STAT_COLUMNS = (
    "tests", "devices", "download_median_mbps", "download_ci_low_mbps", "download_ci_high_mbps",
    "upload_median_mbps", "latency_median_ms", "share_tests_at_target",
)

_NO_HASH = np.empty(0, np.uint64)  # the second hash of rows that carry one
_MAX_OFFSET = (1 << 32) - 1  # of a row from its run's first (Accumulator.kept)


def _stat_kernels() -> Any:
    from ruralcov import _kernels

    return _kernels


class SpillFile:
    """A temporary file of columns appended by a writer thread and read back at the end.

    Writing a run's column overlaps with sorting the next one (numpy writes without the GIL);
    at most one column waits for the writer, so memory stays bounded.
    """

    def __init__(self, folder: str | Path | None) -> None:
        fd, self.path = tempfile.mkstemp(prefix="ruralcov-spill-", suffix=".bin", dir=folder)
        self._file = os.fdopen(fd, "w+b")
        self.size = 0  # bytes appended so far (written or waiting)
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write, daemon=True)
        self._thread.start()

    def _write(self) -> None:
        while (col := self._queue.get()) is not None:
            if self._error is None:
                try:
                    col.tofile(self._file)
                except BaseException as exc:  # raised in the caller's thread
                    self._error = exc
            del col

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def append(self, col: np.ndarray) -> int:
        """Queue a column to be written.

        Parameters
        ----------
        col
            The column (written as its bytes).

        Returns
        -------
        int
            Its byte offset in the file.
        """
        self._raise()
        where = self.size
        self.size += col.nbytes
        self._queue.put(col)
        return where

    def finish(self) -> None:
        """Wait until everything appended is written (then the file can be read)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._raise()
        self._file.flush()

    def read(self, where: int, dtype: np.dtype, count: int) -> np.ndarray:
        """Values read back (after :meth:`finish`).

        Parameters
        ----------
        where
            Byte offset (from :meth:`append`).
        dtype, count
            What to read.

        Returns
        -------
        numpy.ndarray
            ``count`` values of ``dtype``.
        """
        self._file.seek(where)
        return np.fromfile(self._file, dtype=dtype, count=count)

    def close(self) -> None:
        """Stop the writer and delete the file (also after an error)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._file.close()
        os.unlink(self.path)


class Accumulator:
    """Kept tests, as village-sorted runs in memory or in a spill file; exact stats at the end.

    Parameters
    ----------
    n_villages
        Number of villages (positions 0 .. n - 1).
    has_upload, has_latency, has_device
        Which measures the tests carry.
    buffer_mb
        Memory for kept rows: half fills while the other half is sorted and spilled to disk
        (and, at the end, an eighth for one range of villages at a time).
    spill_dir
        Folder for the spill file (default: the system's temporary folder).
    hashes
        Rows carry that many 64-bit row hashes (``h1``, and ``h2`` with 2): copies of an
        earlier row of the same village are left out at the end (a copy shares its location,
        hence its village, so the check runs village by village on data already grouped for
        the statistics) and listed in :attr:`duplicates`. With one hash (over some of the
        columns) rows sharing it are candidates that :meth:`statistics` has confirmed.
    statistic, sample
        ``"median"`` or ``"device_median"``; with ``sample`` the rows carry ``day``, ``day_ok``
        and ``skey`` and are sampled one per device and day (:mod:`ruralcov.sampling`), the rows
        left out listed in :attr:`sampled`.
    """

    def __init__(self, n_villages: int, *, has_upload: bool, has_latency: bool, has_device: bool,
                 buffer_mb: float = 256, spill_dir: str | Path | None = None,
                 hashes: int = 0, statistic: str = "median",
                 sample: bool = False) -> None:
        self.n = n_villages
        self.fields = ["row", "down"] + (["up"] if has_upload else []) + (
            ["lat"] if has_latency else [])
        if has_device:
            self.fields += ["dev", "dev_ok"]
        self.fields += ["h1", "h2"][:hashes]
        self.statistic = statistic
        self.sample = sample and has_device
        if self.sample:
            self.fields += ["day", "day_ok", "skey"]
        #: After :meth:`statistics`: source rows (sorted) left out as copies, and their villages.
        self.duplicates = (np.empty(0, np.int64), np.empty(0, np.int64))
        #: After :meth:`statistics`: source rows (sorted) left out by device-day sampling.
        self.sampled = np.empty(0, np.int64)
        self.dtypes = {"row": np.int64, "down": np.float64, "up": np.float64, "lat": np.float64,
                       "dev": np.uint64, "dev_ok": np.bool_, "h1": np.uint64, "h2": np.uint64,
                       "day": np.int64, "day_ok": np.bool_, "skey": np.uint64}
        #: How the fields are kept and spilled: source rows as 32-bit offsets from the first
        #: row of their run (a bench test keeps 20 bytes instead of 24).
        self.kept = {**self.dtypes, "row": np.uint32}
        self.row_bytes = sum(np.dtype(self.kept[f]).itemsize for f in self.fields)
        self.budget = int(buffer_mb * (1 << 20))
        self.counts = np.zeros(n_villages, dtype=np.int64)  # tests (download not NaN)
        self.rows = np.zeros(n_villages, dtype=np.int64)
        self.chunks: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []
        self.base = 0  # the row the offsets of the buffered rows count from
        #: Spilled runs: village offsets, byte offset of each field, base row.
        self.disk_runs: list[tuple[np.ndarray, dict[str, int], int]] = []
        self.buffered = 0
        self.spill_dir = spill_dir
        self._spill: SpillFile | None = None
        self._flusher: threading.Thread | None = None
        self._flush_error: BaseException | None = None
        self.spilled_rows = 0

    def add(self, village: np.ndarray, values: dict[str, np.ndarray]) -> None:
        """Add kept rows.

        Parameters
        ----------
        village
            Their village positions (all >= 0).
        values
            Their fields (``row``, ``down`` and the others of :attr:`fields`; more are
            ignored).
        """
        if len(village) == 0:
            return
        rows = values["row"]
        lo, hi = int(rows.min()), int(rows.max())
        if hi - lo > _MAX_OFFSET:  # wider apart than an offset reaches: window by window
            window = (rows - lo) >> 32
            for w in np.unique(window):
                take = window == w
                self.add(village[take], {f: v[take] for f, v in values.items()})
            return
        if self.chunks and (lo < self.base or hi - self.base > _MAX_OFFSET):
            self._flush()
        if not self.chunks:
            self.base = lo
        values = {**values, "row": (rows - self.base).astype(np.uint32)}
        village = village.astype(np.int32)
        self.rows += np.bincount(village, minlength=self.n)
        valid = ~np.isnan(values["down"])
        self.counts += np.bincount(village[valid], minlength=self.n) if not valid.all() else (
            np.bincount(village, minlength=self.n))
        self.chunks.append((village, {f: values[f] for f in self.fields}))
        self.buffered += len(village) * (self.row_bytes + 4)
        if self.buffered > self.budget // 2:
            self._flush()

    def _sorted(self, chunks: list[tuple[np.ndarray, dict[str, np.ndarray]]], sink: Any = None
                ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The rows of ``chunks`` sorted by village, one column at a time to bound memory:
        each column is scattered chunk by chunk into place and, with ``sink(field, column)``,
        handed over (and dropped) before the next one is built."""
        k = _stat_kernels()
        village = np.concatenate([c[0] for c in chunks])
        dest, offsets = k.group_positions(village, self.n)
        del village
        run = {}
        for f in self.fields:
            col = np.empty(len(dest), dtype=self.kept[f])
            a = 0
            for c in chunks:
                part = c[1].pop(f)
                if sink is None:  # the last run, after the reading: the cores are free
                    k.scatter(part, dest[a:a + len(part)], col)
                else:  # the flusher: one thread, leaving the other cores to the reading
                    col[dest[a:a + len(part)]] = part
                a += len(part)
                del part
            if sink is None:
                run[f] = col
            else:
                sink(f, col)
            del col
        chunks.clear()
        return offsets, run

    def _flush(self) -> None:
        """Hand the buffered rows to the flusher thread, which sorts them into one run and
        appends it to the spill file while the next rows come in (half the buffer each; one
        run at a time, so runs stay in source order)."""
        self._wait()
        if self._spill is None:
            self._spill = SpillFile(self.spill_dir)
        chunks, self.chunks, self.buffered = self.chunks, [], 0
        self._flusher = threading.Thread(target=self._spill_run, args=(chunks, self.base),
                                         daemon=True)
        self._flusher.start()

    def _spill_run(self, chunks: list[tuple[np.ndarray, dict[str, np.ndarray]]],
                   base: int) -> None:
        try:
            where: dict[str, int] = {}

            def write(f: str, col: np.ndarray) -> None:
                where[f] = self._spill.append(col)  # type: ignore[union-attr]

            offsets, _ = self._sorted(chunks, write)
            self.disk_runs.append((offsets, where, base))
            self.spilled_rows += int(offsets[-1])
        except BaseException as exc:  # raised in the caller's thread by _wait
            self._flush_error = exc

    def _wait(self) -> None:
        """Wait for the run being spilled; raise what went wrong there."""
        if self._flusher is not None:
            self._flusher.join()
            self._flusher = None
        if self._flush_error is not None:
            raise self._flush_error

    def close(self) -> None:
        if self._flusher is not None:
            self._flusher.join()
            self._flusher = None
        if self._spill is not None:
            self._spill.close()
            self._spill = None

    def _ranges(self) -> list[tuple[int, int]]:
        """Village ranges whose tests take at most an eighth of the buffer each (a village with
        more tests than that is a range of its own; the last run stays in memory meanwhile)."""
        gathered = sum(np.dtype(self.dtypes[f]).itemsize for f in self.fields)
        per_range = max(self.budget // (8 * gathered), 1)
        ranges, start, acc = [], 0, 0
        for v in range(self.n):
            c = int(self.rows[v])
            if acc and acc + c > per_range:
                ranges.append((start, v))
                start, acc = v, 0
            acc += c
        ranges.append((start, self.n))
        return ranges

    def _gather(self, a: int, b: int,
                memory: tuple[np.ndarray, dict[str, np.ndarray], int] | None
                ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The rows of villages [a, b) grouped by village: local offsets and values (source
        rows as such). The spilled runs come in the order they were written and the run in
        ``memory`` last, so rows keep their source order within a village."""
        pieces: dict[str, list[np.ndarray]] = {f: [] for f in self.fields}
        starts: list[np.ndarray] = []  # per run: where its villages' rows start in the pieces
        size = 0
        for offsets, where, base in self.disk_runs:
            s, e = int(offsets[a]), int(offsets[b])
            if e > s:
                for f in self.fields:
                    dt = np.dtype(self.kept[f])
                    pieces[f].append(self._spill.read(where[f] + s * dt.itemsize, dt, e - s))
                pieces["row"][-1] = pieces["row"][-1] + np.int64(base)
                starts.append(offsets[a:b + 1] - s + size)
                size += e - s
        if memory is not None and memory[0][b] > memory[0][a]:
            offsets, run, base = memory
            s, e = int(offsets[a]), int(offsets[b])
            for f in self.fields:
                pieces[f].append(run[f][s:e])
            pieces["row"][-1] = pieces["row"][-1] + np.int64(base)
            starts.append(offsets[a:b + 1] - s + size)
        if len(starts) <= 1:  # one run (or none): already grouped
            local = starts[0] if starts else np.zeros(b - a + 1, np.int64)
            return local, {f: p[0] if p else np.empty(0, self.dtypes[f])
                           for f, p in pieces.items()}
        runs = np.stack(starts)
        local = np.concatenate([[0], np.cumsum(np.diff(runs, axis=1).sum(axis=0))])
        out = {}
        for f, p in pieces.items():
            out[f] = np.empty(int(local[-1]), dtype=self.dtypes[f])
            _stat_kernels().interleave(np.concatenate(p), runs, local, out[f])
        return local, out

    def _leave_out(self, a: int, offsets: np.ndarray, vals: dict[str, np.ndarray],
                   drop: np.ndarray, rows_out: list[np.ndarray],
                   villages_out: list[np.ndarray] | None = None
                   ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Leave the rows marked in ``drop`` out of villages ``a``.. and their counts; their
        source rows (and villages) are appended to the lists."""
        if not drop.any():
            return offsets, vals
        where = np.flatnonzero(drop)
        village = np.searchsorted(offsets, where, side="right") - 1
        rows_out.append(vals["row"][where])
        if villages_out is not None:
            villages_out.append(village + a)
        n = len(offsets) - 1
        self.rows[a:a + n] -= np.bincount(village, minlength=n)
        self.counts[a:a + n] -= np.bincount(village[~np.isnan(vals["down"][where])], minlength=n)
        offsets = offsets - np.concatenate([[0], np.cumsum(np.bincount(village, minlength=n))])
        keep = ~drop
        return offsets, {f: v[keep] for f, v in vals.items()}

    def _sample_and_stats(self, a: int, b: int, offsets: np.ndarray,
                          vals: dict[str, np.ndarray], target: np.ndarray, out: np.ndarray,
                          sampled: list[np.ndarray]) -> None:
        """Villages [a, b) without their copies: device-day sample, then statistics."""
        if self.sample:
            k = _stat_kernels()
            drop = k.device_day_sample(offsets, vals["dev"], vals["dev_ok"], vals["day"],
                                       vals["day_ok"], vals["skey"])
            offsets, vals = self._leave_out(a, offsets, vals, drop, sampled)
        self._stats(a, b, offsets, vals, target, out)

    def _stats(self, a: int, b: int, offsets: np.ndarray, vals: dict[str, np.ndarray],
               target: np.ndarray, out: np.ndarray) -> None:
        """The statistics of villages [a, b) into ``out[a:b]``."""
        k = _stat_kernels()
        empty_f, empty_u, empty_b = np.empty(0), np.empty(0, np.uint64), np.empty(0, np.bool_)
        has_up, has_lat, has_dev = "up" in self.fields, "lat" in self.fields, "dev" in self.fields
        up, lat = vals.get("up", empty_f), vals.get("lat", empty_f)
        dev, dev_ok = vals.get("dev", empty_u), vals.get("dev_ok", empty_b)
        lo, hi = median_ci_ranks(self.counts[a:b])
        k.village_stats(offsets, vals["down"], up, lat, dev, dev_ok, has_up, has_lat, has_dev,
                        target[a:b], lo, hi, out[a:b])
        if self.statistic != "device_median" or not has_dev:
            return  # without device ids every test is a device of its own: medians of tests
        groups, md, mu, ml = k.device_medians(offsets, vals["down"], up, lat, dev, dev_ok,
                                              has_up, has_lat)
        n_dev = np.bincount(np.repeat(np.arange(b - a), np.diff(groups))[~np.isnan(md)],
                            minlength=b - a)
        lo, hi = median_ci_ranks(n_dev)
        by_device = np.empty((b - a, out.shape[1]))
        k.village_stats(groups, md, mu, ml, empty_u, empty_b, has_up, has_lat, False,
                        target[a:b], lo, hi, by_device)
        out[a:b, 2:7] = by_device[:, 2:7]  # medians, interval, upload, latency

    def statistics(self, target_mbps: np.ndarray,
                   confirm: Callable[[pd.DataFrame], np.ndarray] | None = None,
                   max_candidates: int | None = None) -> pd.DataFrame:
        """Per village: the columns of :func:`ruralcov.classify.speed_statistics`, exactly.

        Parameters
        ----------
        target_mbps
            Each village's download target.
        confirm
            With one row hash (over some columns), rows sharing it with an earlier row of
            their village are only candidates: ``confirm`` gets them all (as
            :func:`ruralcov.stream.duplicates.sharing` gives them) and returns the rows that
            are copies; the ranges holding candidates are gathered again once it has answered.
        max_candidates
            More candidates raise :class:`ruralcov.stream.duplicates.TooManyCandidates`.

        Returns
        -------
        pandas.DataFrame
            One row per village, :data:`STAT_COLUMNS`. Afterwards :attr:`duplicates` and
            :attr:`sampled` list the rows left out.
        """
        k = _stat_kernels()
        target = np.asarray(target_mbps, dtype=np.float64)
        out = np.empty((self.n, 8))
        dup_rows: list[np.ndarray] = []
        dup_villages: list[np.ndarray] = []
        sampled: list[np.ndarray] = []
        pending: list[tuple[int, int]] = []
        candidates: list[pd.DataFrame] = []
        n_candidates = 0
        self._wait()
        # The last run stays in memory.
        memory = (*self._sorted(self.chunks), self.base) if self.chunks else None
        self.buffered = 0
        if self._spill is not None:
            self._spill.finish()
        for a, b in self._ranges() if self.disk_runs else [(0, self.n)]:
            offsets, vals = self._gather(a, b, memory)
            if "h1" in vals:
                dup = k.group_duplicates(offsets, vals["h1"], vals.get("h2", _NO_HASH),
                                         k.numba.get_num_threads())
                if confirm is not None and dup.any():
                    village = np.repeat(np.arange(a, b), np.diff(offsets))
                    candidates.append(sharing(vals["row"], village, vals["h1"], vals.get("h2")))
                    n_candidates += len(candidates[-1])
                    if max_candidates is not None and n_candidates > max_candidates:
                        raise TooManyCandidates
                    pending.append((a, b))
                    continue
                offsets, vals = self._leave_out(a, offsets, vals, dup, dup_rows, dup_villages)
            self._sample_and_stats(a, b, offsets, vals, target, out, sampled)
            del vals
        if pending:
            copies = confirm(pd.concat(candidates, ignore_index=True))  # type: ignore[misc]
            for a, b in pending:
                offsets, vals = self._gather(a, b, memory)
                offsets, vals = self._leave_out(a, offsets, vals, np.isin(vals["row"], copies),
                                                dup_rows, dup_villages)
                self._sample_and_stats(a, b, offsets, vals, target, out, sampled)
                del vals
        if dup_rows:
            rows, villages = np.concatenate(dup_rows), np.concatenate(dup_villages)
            order = np.argsort(rows, kind="stable")
            self.duplicates = (rows[order], villages[order])
        if sampled:
            self.sampled = np.sort(np.concatenate(sampled))
        frame = pd.DataFrame(out, columns=list(STAT_COLUMNS))
        frame["tests"] = self.counts.astype(np.int64)
        frame["devices"] = (frame["devices"].astype("Int64") if "dev" in self.fields
                            else pd.Series(pd.NA, index=frame.index, dtype=object))
        return frame
