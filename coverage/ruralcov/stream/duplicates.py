"""Copies of an earlier row among streamed tests, found in bounded memory.

The rule and its message are :mod:`ruralcov.checks`' (``duplicate_test``: a copy of an
earlier row in every column and the location, by two 64-bit row hashes). A copy shares its
original's location, hence its village: copies inside the villages are found village by
village by the accumulator (:mod:`ruralcov.stream.accumulate`) when it gathers them for the
statistics, copies among the rows outside every village by :class:`DuplicateFinder`.

When only the columns the run uses are read batch by batch, the hashes cover those; rows that
share them are candidates, read back with every column and hashed as a stream of every column
hashes them (:func:`copies`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ruralcov import checks, io
from ruralcov.config import SpeedConfig
from ruralcov.stream.checking import Checker

__all__ = ["CANDIDATES_PER_MB", "DuplicateFinder", "TooManyCandidates", "copies", "sharing"]

#: Rows that may be copies, per MB of buffer, compared after the stream (:func:`copies`);
#: past that, the input is streamed again with every column read and hashed.
CANDIDATES_PER_MB = 4096


def sharing(rows: np.ndarray, village: np.ndarray, h1: np.ndarray,
            h2: np.ndarray | None = None) -> pd.DataFrame:
    """The rows whose village and hashes another row shares.

    Parameters
    ----------
    rows, village, h1, h2
        Source row, village position and row hashes of each row (``h2`` may be left out).

    Returns
    -------
    pandas.DataFrame
        Columns ``row, village, h1`` (and ``h2``), the rows in the given order.
    """
    cols = {"row": np.asarray(rows, np.int64), "village": np.asarray(village, np.int64),
            "h1": np.asarray(h1, np.uint64)}
    if h2 is not None:
        cols["h2"] = np.asarray(h2, np.uint64)
    frame = pd.DataFrame(cols)
    return frame[frame.duplicated(list(cols)[1:], keep=False).to_numpy()]


class TooManyCandidates(Exception):
    """More candidate copies to compare in every column than the buffer allows (:func:`copies`)."""


def copies(cands: pd.DataFrame, p: io.ReadPlan, speed: SpeedConfig) -> np.ndarray:
    """Source rows among ``cands`` that copy an earlier candidate in every column.

    The candidates share their village and a hash over the columns read with another row.
    Their every column is read back (one pass, up to the last candidate) and checked and
    hashed as a stream reading every column does: a row copies an earlier one of its village
    when both 64-bit hashes over every column agree, as in that stream.

    Parameters
    ----------
    cands
        From :func:`sharing` (``row`` and ``village`` are used).
    p, speed
        The file and its ``[speed]`` section.

    Returns
    -------
    numpy.ndarray
        The copies' source rows, sorted.
    """
    if cands.empty:
        return np.empty(0, np.int64)
    cands = cands.sort_values("row", kind="stable")
    want = cands["row"].to_numpy()
    checker = Checker(p, speed)  # every column
    pieces, row0 = [], 1
    for table in io.iter_batches(p, checker.read_columns):
        lo, hi = np.searchsorted(want, [row0, row0 + table.num_rows])
        if hi > lo:
            pieces.append(table.take(pa.array(want[lo:hi] - row0)))
        row0 += table.num_rows
        if hi == len(want):
            break
    prep = checker.check(pa.concat_tables(pieces), 1)
    if not (prep.status == checks.OK).all():  # pragma: no cover - the same rows, the same checks
        raise AssertionError("a candidate copy no longer passes the row checks")
    copy = cands.assign(h1=prep.h1, h2=prep.h2).duplicated(["village", "h1", "h2"])
    return want[copy.to_numpy()]


def _order_by_group(part: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    from ruralcov import _kernels

    return _kernels.order_by_group(part, n)


class DuplicateFinder:
    """Usable rows that copy an earlier row, found with bounded memory.

    Row hashes are kept per hash partition (64 of them, by the top bits); partitions spill to
    temporary files past ``buffer_mb``. At the end each partition is scanned in row order
    (:func:`ruralcov.checks.first_copies`), so the first of each group of copies is kept, as in
    the loader.

    Parameters
    ----------
    buffer_mb
        Memory for hashes before partitions spill.
    spill_dir
        Folder for the spilled partitions (default: the system's temporary folder).
    """

    PARTS = 64

    def __init__(self, *, buffer_mb: float, spill_dir: str | Path | None = None) -> None:
        self.budget = int(buffer_mb * (1 << 20))
        self.chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self.buffered = 0
        self.spill_dir = spill_dir
        self.folder: str | None = None
        self.sizes: list[list[int]] = [[] for _ in range(self.PARTS)]  # rows per block written

    def add(self, h1: np.ndarray, h2: np.ndarray, rows: np.ndarray, village: np.ndarray) -> None:
        """Add usable rows.

        Parameters
        ----------
        h1, h2
            Their row hashes (:func:`ruralcov.checks.row_hashes`).
        rows, village
            Their source rows and village positions.
        """
        if len(h1):
            self.chunks.append((h1, h2, rows.astype(np.int64), village.astype(np.int64)))
            self.buffered += len(h1) * 32
            if self.buffered > self.budget:
                self._flush()

    def _partitioned(self) -> tuple[np.ndarray, list[np.ndarray]]:
        cols = [np.concatenate([c[i] for c in self.chunks]) for i in range(4)]
        part = (cols[0] >> np.uint64(58)).astype(np.int64)
        perm, offsets = _order_by_group(part, self.PARTS)
        self.chunks, self.buffered = [], 0
        return offsets, [c[perm] for c in cols]

    def _flush(self) -> None:
        if not self.chunks:
            return
        if self.folder is None:
            self.folder = tempfile.mkdtemp(prefix="ruralcov-dups-", dir=self.spill_dir)
        offsets, cols = self._partitioned()
        for q in range(self.PARTS):
            a, b = offsets[q], offsets[q + 1]
            if b > a:
                with open(os.path.join(self.folder, f"{q}.bin"), "ab") as fh:
                    for c in cols:
                        c[a:b].tofile(fh)
                self.sizes[q].append(int(b - a))

    def _parts(self) -> Iterator[tuple[list[np.ndarray], np.ndarray]]:
        """Each hash partition (h1, h2, row, village) with at least two rows, and which of its
        rows copy an earlier one."""
        if self.folder is None and self.buffered <= (16 << 20):
            if not self.chunks:
                return
            offsets, cols = self._partitioned()
            parts: Any = [[c[offsets[q]:offsets[q + 1]] for c in cols]
                          for q in range(self.PARTS)]
        else:  # one partition in memory at a time
            self._flush()
            parts = (self._load(q) for q in range(self.PARTS))
        for part in parts:
            if len(part[0]) >= 2:
                yield part, checks.first_copies(part[0], part[1])

    def duplicates(self) -> tuple[np.ndarray, np.ndarray]:
        """The rows that copy an earlier row.

        Returns
        -------
        rows, village
            Their source rows (sorted) and villages.
        """
        rows_out, vill_out = [], []
        for (_, _, rows, village), dup in self._parts():
            rows_out.append(rows[dup])
            vill_out.append(village[dup])
        if not rows_out:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        rows, village = np.concatenate(rows_out), np.concatenate(vill_out)
        order = np.argsort(rows)
        return rows[order], village[order]

    def candidates(self) -> pd.DataFrame:
        """The rows sharing both hashes with another row: when the hashes cover only some
        columns, the rows :func:`copies` compares in every column.

        Returns
        -------
        pandas.DataFrame
            ``row, village, h1, h2``.
        """
        found = [sharing(rows, village, h1, h2)
                 for (h1, h2, rows, village), dup in self._parts() if dup.any()]
        return pd.concat(found, ignore_index=True) if found else sharing(*[np.empty(0)] * 4)

    def _load(self, q: int) -> list[np.ndarray]:
        """Partition ``q`` from its file (blocks of h1, h2, row, village per flush)."""
        path = os.path.join(self.folder, f"{q}.bin")  # type: ignore[arg-type]
        if not os.path.exists(path):
            return [np.empty(0, np.uint64)] * 2 + [np.empty(0, np.int64)] * 2
        raw = np.fromfile(path, dtype=np.uint64)
        pieces: list[list[np.ndarray]] = [[], [], [], []]
        pos = 0
        for m in self.sizes[q]:
            for i in range(4):
                pieces[i].append(raw[pos:pos + m])
                pos += m
        h1, h2, rows, village = (np.concatenate(p) for p in pieces)
        return [h1, h2, rows.view(np.int64), village.view(np.int64)]

    def close(self) -> None:
        """Delete the spilled partitions."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
