"""The rows each row rule found, collected batch by batch and turned into the issues frame.

The frame itself is :func:`ruralcov.checks.speed_issues`', the one the whole-file loader
builds too; the stream and the Dask engine fill the log, each from its own batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ruralcov import checks, io, units
from ruralcov.stream.checking import Checker, Prepared

__all__ = ["IssueLog"]


@dataclass
class IssueLog:
    """Source rows per rule (:data:`ruralcov.checks.RULES` keys), collected batch by batch."""

    rows: dict[str, list[np.ndarray]] = field(default_factory=dict)
    present: int = 0  # rows with a geometry before the range check
    swapped_all: bool = True  # exchanging lon/lat would bring every out-of-range row in range
    timed: int = 0  # usable rows with a readable time (device-day sampling)
    #: The checked downloads (usable and absurd rows), for the unit check.
    tally: units.SpeedTally = field(default_factory=units.SpeedTally)

    def add(self, key: str, rows: np.ndarray) -> None:
        """Add source rows found by rule ``key`` (:data:`ruralcov.checks.RULES`).

        Parameters
        ----------
        key
            The rule.
        rows
            The 1-based source rows.
        """
        if len(rows):
            self.rows.setdefault(key, []).append(np.asarray(rows, dtype=np.int64))

    def get(self, key: str) -> np.ndarray:
        """The source rows found by a rule so far.

        Parameters
        ----------
        key
            The rule.

        Returns
        -------
        numpy.ndarray
            The rows, in the order added.
        """
        parts = self.rows.get(key)
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)

    def record(self, prep: Prepared, village: np.ndarray) -> None:
        """Add what a checked and joined batch found.

        Parameters
        ----------
        prep
            The checked batch.
        village
            Each row's village position (-1: outside every village, or dropped).
        """
        rows = prep.rows
        for code, key in checks.STATUS_KEYS.items():
            self.add(key, rows[prep.status == code])
        for role in ("upload", "latency"):
            neg = getattr(prep, "neg_" + role)
            if neg is not None:
                self.add("neg_" + role, rows[neg])
        ok = prep.status == checks.OK
        self.add("outside", rows[ok & (village < 0)])
        if prep.day_ok is not None:
            self.add("bad_time", rows[ok & ~prep.day_ok])
            self.timed += int((ok & prep.day_ok).sum())
        self.tally = self.tally + checks.tally(prep.download, prep.status)
        self.present += int(prep.located.sum())
        self.swapped_all &= bool(prep.swap[prep.out_of_range].all())

    def check_units(self, checker: Checker) -> None:
        """Stop when the downloads of the whole file cannot be in the declared unit
        (:func:`ruralcov.units.check_plausible`, on the complete counts).

        Parameters
        ----------
        checker
            The checker of the batches (the file, column and unit).
        """
        s = checker.speed
        units.check_plausible(self.tally, column=s.download, path=checker.plan.path,
                              unit=s.download_unit)

    def frame(self, checker: Checker, *, duplicates: np.ndarray | None = None,
              sampled: np.ndarray | None = None) -> pd.DataFrame:
        """The issues of the file, as :func:`ruralcov.loaders.load_speed_tests` and the
        outside-villages check give them.

        Parameters
        ----------
        checker
            The checker of the batches.
        duplicates
            Sorted rows that copy an earlier row (dropped as ``duplicate_test``, so never
            also outside the villages).
        sampled
            Rows left out by device-day sampling.

        Returns
        -------
        pandas.DataFrame
            The issues (:func:`ruralcov.checks.speed_issues`).

        Raises
        ------
        CRSError
            When most geometries fall out of range (:func:`ruralcov.checks.out_of_range_error`).
        SchemaError
            When no usable row has a readable time (:func:`ruralcov.checks.check_times`).
        """
        s, p = checker.speed, checker.plan
        if checker.roles["time"]:
            checks.check_times(self.timed, len(self.get("bad_time")), speed=s)
        error = checks.out_of_range_error(
            "speed", n_out=len(self.get("out_of_range")), n_present=self.present, path=p.path,
            label=checker.label, swapped=self.swapped_all)
        if error is not None:
            raise error
        found = {key: self.get(key) for key in self.rows}
        found["sampled"] = np.empty(0, np.int64) if sampled is None else sampled
        dups = np.empty(0, np.int64) if duplicates is None else np.asarray(duplicates)
        if len(dups) and "outside" in found:
            found["outside"] = found["outside"][~np.isin(found["outside"], dups)]
        found["duplicate"] = dups
        reader = None
        if checker.crs_ignored:
            reader = io.crs_ignored_issue("speed", path=p.path, file_crs=p.file_crs,
                                          setting=s.crs)
        return checks.speed_issues(found, speed=s, present=p.columns, path=p.path,
                                   what=f"{p.lon}/{p.lat}", label=checker.label, reader=reader)
