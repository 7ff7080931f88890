"""The speed tests of each county in square cells of 1 km: what the county maps draw.

The cells are part of the analysis (``CoverageResult.cells``, written to the run folder), so
a map is drawn from the run's result without reading the tests again. They are fed by the
same usable tests as the village statistics: a test inside a village, not a copy of an earlier
row, not left out by device-day sampling. A cell is ``[ix·CELL_M, (ix+1)·CELL_M) ×
[iy·CELL_M, (iy+1)·CELL_M)`` in the run's metric CRS (``CoverageResult.metric_crs``), counted
per county (the county of the test's village), and classed as a village is
(:func:`ruralcov.classify.speed_class`: at least ``min_tests`` tests and ``min_devices``
devices, the median against the village download target).

Every engine hands its usable tests to a :class:`CellCollector` (the stream and the Dask
engine batch by batch, the whole-file loader at once); only runs that draw maps collect them.
The collector keeps about 30 bytes per test (source row, village, cell, download, device key)
until the run's copies and sampled tests are known, outside the stream's ``buffer_mb``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyproj

from ruralcov.classify import speed_class
from ruralcov.config import Config

__all__ = ["CELL_COLUMNS", "CELL_M", "CellCollector", "cell_statistics"]

#: Side of the speed-test cells, in metres.
CELL_M = 1000.0
#: The columns of ``CoverageResult.cells``.
CELL_COLUMNS = ("county_code", "ix", "iy", "tests", "devices", "median_mbps", "speed_class")


def cell_statistics(county: np.ndarray, ix: np.ndarray, iy: np.ndarray, download: np.ndarray,
                    device: np.ndarray | None = None,
                    device_ok: np.ndarray | None = None) -> pd.DataFrame:
    """Tests, devices and median download per county and cell.

    Parameters
    ----------
    county
        The county code of each test (tests without one are left out).
    ix, iy
        Each test's cell.
    download
        Each test's download (Mbit/s).
    device, device_ok
        Each test's device key and whether it has a device id; None when the source has no
        device column (``devices`` is then empty).

    Returns
    -------
    pandas.DataFrame
        One row per non-empty cell, sorted by ``county_code, ix, iy``: ``tests`` (int64),
        ``devices`` (Int64: distinct device ids), ``median_mbps`` (the median download, the
        mean of the two middle values for an even count).

    Examples
    --------
    >>> cell_statistics(np.array(["a", "a", "a"], dtype=object), np.array([0, 0, 1]),
    ...                 np.array([0, 0, 0]), np.array([10., 30., 8.]),
    ...                 np.array([7, 7, 0], np.uint64), np.array([True, True, False]))
      county_code  ix  iy  tests  devices  median_mbps
    0           a   0   0      2        1         20.0
    1           a   1   0      1        0          8.0
    """
    frame = pd.DataFrame({"county_code": county, "ix": np.asarray(ix, dtype=np.int64),
                          "iy": np.asarray(iy, dtype=np.int64),
                          "download": np.asarray(download, dtype=np.float64)})
    keys = ["county_code", "ix", "iy"]
    out = frame.groupby(keys, sort=True)["download"].agg(tests="size", median_mbps="median")
    out = out.reset_index().astype({"tests": "int64"})
    devices = pd.array([pd.NA] * len(out), dtype="Int64")
    if device is not None and device_ok is not None:
        ok = np.asarray(device_ok, dtype=bool)
        known = frame[ok].assign(device=np.asarray(device)[ok])
        distinct = known.drop_duplicates([*keys, "device"]).groupby(keys, sort=True).size()
        at = pd.MultiIndex.from_frame(out[keys]) if len(out) else distinct.index[:0]
        devices = pd.array(distinct.reindex(at, fill_value=0).to_numpy(), dtype="Int64")
    out.insert(4, "devices", devices)
    return out


class CellCollector:
    """Collects the usable tests of a run, batch by batch, as cells; the cells at the end.

    Parameters
    ----------
    metric_crs
        The run's metric CRS (EPSG code or PROJ string).
    """

    def __init__(self, metric_crs: str) -> None:
        self._to_m = pyproj.Transformer.from_crs("EPSG:4326", metric_crs, always_xy=True)
        self.parts: list[dict[str, np.ndarray]] = []

    def add(self, village: np.ndarray, x: np.ndarray, y: np.ndarray,
            values: dict[str, np.ndarray]) -> None:
        """Add usable tests inside the villages (:class:`ruralcov.stream.KeptRows`).

        Parameters
        ----------
        village
            Their village positions.
        x, y
            Their longitude and latitude (EPSG:4326); tests that are not points (NaN) are left
            out.
        values
            Their ``row`` (source row) and ``down`` (Mbit/s) and, with a device column,
            ``dev`` (64-bit keys) and ``dev_ok``.
        """
        at = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
        mx, my = self._to_m.transform(x[at], y[at])
        part = {"row": np.asarray(values["row"], np.int64)[at],
                "village": np.asarray(village, np.int32)[at],
                "ix": np.floor(np.asarray(mx) / CELL_M).astype(np.int32),
                "iy": np.floor(np.asarray(my) / CELL_M).astype(np.int32),
                "down": np.asarray(values["down"], np.float64)[at]}
        if "dev" in values:
            part["dev"] = np.asarray(values["dev"], np.uint64)[at]
            part["dev_ok"] = np.asarray(values["dev_ok"], bool)[at]
        self.parts.append(part)

    def clear(self) -> None:
        """Forget the tests collected (the stream starts over)."""
        self.parts = []

    def cells(self, villages: pd.DataFrame, issues: pd.DataFrame, config: Config
              ) -> pd.DataFrame | None:
        """The cells of the tests collected, leaving out those the issues drop.

        Parameters
        ----------
        villages
            The run's villages, in the positions the tests were joined to (``county_code``).
        issues
            The run's speed findings: rows dropped after the join (copies, device-day
            sampling) are left out.
        config
            The ``[speed]`` thresholds and the village download target.

        Returns
        -------
        pandas.DataFrame or None
            :data:`CELL_COLUMNS`; None when the villages have no county codes.
        """
        if "county_code" not in villages.columns or config.speed is None:
            return None
        cols = self._collected()
        dropped = issues.loc[(issues["layer"] == "speed") & issues["dropped"], "row"]
        keep = ~np.isin(cols["row"], dropped.dropna().to_numpy(np.int64))
        county = villages["county_code"].to_numpy(dtype=object)[cols["village"][keep]]
        dev = cols.get("dev")
        out = cell_statistics(county, cols["ix"][keep], cols["iy"][keep], cols["down"][keep],
                              None if dev is None else dev[keep],
                              None if dev is None else cols["dev_ok"][keep])
        speed = config.speed
        out["speed_class"] = speed_class(
            out["tests"], out["devices"], out["median_mbps"],
            np.full(len(out), config.targets.village_download_mbps),
            min_tests=speed.min_tests, min_devices=speed.min_devices)
        return out.loc[:, list(CELL_COLUMNS)]

    def _collected(self) -> dict[str, np.ndarray]:
        """The fields of every test collected (``dev`` and ``dev_ok`` with a device column)."""
        fields = ["row", "village", "ix", "iy", "down"]
        if self.parts and all("dev" in p for p in self.parts):
            fields += ["dev", "dev_ok"]
        if not self.parts:
            return {f: np.empty(0, np.int64) for f in fields}
        return {f: np.concatenate([p[f] for p in self.parts]) for f in fields}
