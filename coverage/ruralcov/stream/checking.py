"""Each batch of tests checked by the row rules of :mod:`ruralcov.checks` and joined to the
villages.

:class:`Checker` applies the rules the whole-file loader applies, batch by batch: the same
status per row, the same source rows. It also converts the coordinates to EPSG:4326 (the CRS
decided as :func:`ruralcov.io.read_layer` decides it), turns device ids into 64-bit keys and
hashes each usable row for the duplicate rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyproj
import shapely

from ruralcov import checks, io, units
from ruralcov.checks import NATIVE_MISSING, OK, OUT_OF_RANGE
from ruralcov.config import SpeedConfig
from ruralcov.crs import bd09_to_wgs84, gcj02_to_wgs84, parse_crs, source_crs, to_wgs84
from ruralcov.join import PolygonIndex
from ruralcov.periods import period_rows

__all__ = ["Checker", "Prepared", "device_keys", "join_batch"]


def _floats(col: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Values as float64 (NaN where not a number) and the mask of missing cells."""
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if col.null_count == 0 and pa.types.is_float64(col.type):
        return col.to_numpy(zero_copy_only=True), np.zeros(len(col), dtype=bool)
    missing = col.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        values = col.cast(pa.float64()).to_numpy(zero_copy_only=False)
        return np.asarray(values, dtype=np.float64), missing
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        try:  # the fast path; anything pyarrow refuses is parsed as pandas would
            values = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
            return np.asarray(values, dtype=np.float64), missing
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    series = col.to_pandas()
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64,
                                                           na_value=np.nan), missing


def device_keys(col: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A 64-bit key per device id, and which ids are present.

    Integer ids are their own key (exact); other ids are hashed as text (SipHash), so two ids
    would have to share a 64-bit hash to be counted as one device.

    Parameters
    ----------
    col
        The device column.

    Returns
    -------
    keys, valid
        ``uint64`` keys and a boolean mask of the present ids.
    """
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    valid = col.is_valid().to_numpy(zero_copy_only=False)
    if pa.types.is_integer(col.type):
        keys = col.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
        return keys.view(np.uint64), valid
    if pa.types.is_floating(col.type):
        values = col.cast(pa.float64()).to_numpy(zero_copy_only=False)
        valid &= ~np.isnan(values)
        return pd.util.hash_array(np.where(valid, values, 0.0)), valid
    if not pa.types.is_dictionary(col.type):
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            col = col.cast(pa.string())
        col = pc.dictionary_encode(col)
    dictionary = col.dictionary.to_numpy(zero_copy_only=False).astype(object)
    hashed = pd.util.hash_array(dictionary, categorize=False)
    idx = col.indices.fill_null(0).to_numpy(zero_copy_only=False)
    return hashed[idx] if len(hashed) else np.zeros(len(col), np.uint64), valid


@dataclass
class Prepared:
    """One batch after the row checks: coordinates in EPSG:4326 and a status per row."""

    rows: np.ndarray  # 1-based source row of each row
    x: np.ndarray
    y: np.ndarray
    status: np.ndarray  # int8: checks.OK or the rule that drops the row
    download: np.ndarray
    upload: np.ndarray | None
    latency: np.ndarray | None
    neg_upload: np.ndarray | None
    neg_latency: np.ndarray | None
    device: np.ndarray | None  # uint64 keys
    device_ok: np.ndarray | None
    located: np.ndarray  # rows with a geometry before the range check
    out_of_range: np.ndarray  # rows out of range (before a missing period overrides that)
    swap: np.ndarray  # out-of-range rows that exchanging lon and lat would bring into range
    other_geoms: np.ndarray | None = None  # non-point geometries (GeoParquet), None elsewhere
    h1: np.ndarray | None = None  # 2 x 64-bit hash of each usable row (duplicate rule)
    h2: np.ndarray | None = None
    day: np.ndarray | None = None  # device-day sampling: day number, its validity, the key
    day_ok: np.ndarray | None = None
    skey: np.ndarray | None = None


class Checker:
    """The row rules of :mod:`ruralcov.checks`, batch by batch (state: the CRS).

    Parameters
    ----------
    p
        How the file is read (:func:`ruralcov.io.read_plan`).
    speed
        The ``[speed]`` section.
    every_column
        Read and hash every column (else only those the checks and statistics use: see
        :attr:`read_columns`).

    Raises
    ------
    SchemaError
        When the file lacks the download column, a column sampling needs or the period column.
    """

    def __init__(self, p: io.ReadPlan, speed: SpeedConfig, *, every_column: bool = True) -> None:
        self.plan, self.speed = p, speed
        self.every_column = every_column
        cols = set(p.columns)
        #: Role -> column name, for the optional columns present in the file.
        self.roles: dict[str, str | None] = {"download": speed.download}
        for role in ("upload", "latency", "device"):
            name = getattr(speed, role)
            self.roles[role] = name if name and name in cols else None
        checks.require_column(speed, "download", p.columns)
        checks.require_sampling_columns(speed, p.columns, p.path)
        if speed.period_filter:
            checks.require_column(speed, "period", p.columns)
        self.roles["time"] = speed.time_column
        self.given = parse_crs(speed.crs)
        self.source: pyproj.CRS | str | None = None
        self.transformer: pyproj.Transformer | None = None
        self.crs_ignored = False
        self.resolved = False

    @property
    def all_columns(self) -> list[str]:
        """Every column: a duplicate test is a copy of an earlier row in all of them."""
        cols = [*self.plan.columns, *([self.plan.geometry] if self.plan.geometry else [])]
        return list(dict.fromkeys(cols))

    @property
    def read_columns(self) -> list[str]:
        """The columns read batch by batch: every column, or (without ``every_column``) those
        the checks and statistics use; the row hashes cover the columns read."""
        if self.every_column:
            return self.all_columns
        used = {self.plan.lon, self.plan.lat, self.plan.geometry, self.speed.download,
                *(self.roles[r] for r in ("upload", "latency", "device", "time")),
                self.speed.period if self.speed.period_filter else None}
        return [c for c in self.all_columns if c in used]

    @property
    def other_columns(self) -> list[str]:
        """The columns not read batch by batch (:func:`ruralcov.stream.duplicates.copies`
        compares candidate copies in them)."""
        read = set(self.read_columns)
        return [c for c in self.all_columns if c not in read]

    def resolve_crs(self) -> None:
        """Decide the CRS the coordinates are in, as :func:`ruralcov.io.read_layer` does."""
        if self.resolved:
            return
        source, self.crs_ignored = source_crs(self.plan.file_crs, self.given, name="speed",
                                              path=self.plan.path, section="speed")
        self.source = source
        if not isinstance(source, str):
            wgs84 = pyproj.CRS.from_epsg(4326)
            if source != wgs84:
                self.transformer = pyproj.Transformer.from_crs(source, wgs84, always_xy=True)
        self.resolved = True

    @property
    def label(self) -> str:
        """The CRS read from, as messages name it (empty before any row was located)."""
        return "" if self.source is None else io.crs_label(self.source)

    def _to_wgs84(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        convert: Any = None
        if isinstance(self.source, str):
            convert = {"gcj02": gcj02_to_wgs84, "bd09": bd09_to_wgs84}[self.source]
        elif self.transformer is not None:
            convert = self.transformer.transform
        if convert is None:
            return x, y
        ok = np.isfinite(x) & np.isfinite(y)
        nx, ny = x.copy(), y.copy()
        if ok.any():
            nx[ok], ny[ok] = convert(x[ok], y[ok])
        return nx, ny

    def check(self, table: pa.Table, row0: int) -> Prepared:
        """The rows of ``table`` checked; with a period column only the period's rows
        (:mod:`ruralcov.periods`).

        Parameters
        ----------
        table
            A batch, with :attr:`read_columns`.
        row0
            The 1-based source row of its first row.

        Returns
        -------
        Prepared
            Status, coordinates and measures of each row read.
        """
        rows = row0 + np.arange(table.num_rows, dtype=np.int64)
        no_period = None
        if self.speed.period_filter:
            take, no_period = period_rows(table.column(self.speed.period), self.speed)
            if not take.all():
                table, rows = table.filter(pa.array(take)), rows[take]
        x, y, status, other = self._locate(table)
        located = status == OK
        outside, swap = np.zeros(len(status), dtype=bool), np.zeros(len(status), dtype=bool)
        if located.any():
            x, y, outside, swap = self._in_range(x, y, located, other)
            status[outside] = OUT_OF_RANGE
        unit = self.speed.download_unit
        download = units.to_mbps(_floats(table.column(self.speed.download))[0], unit)
        checks.download_status(status, download)
        if no_period is not None:
            status[no_period] = checks.NO_PERIOD
        prep = Prepared(rows=rows, x=x, y=y, status=status, download=download, upload=None,
                        latency=None, neg_upload=None, neg_latency=None, device=None,
                        device_ok=None, located=located, out_of_range=outside, swap=swap,
                        other_geoms=other)
        self._measures(table, prep)
        prep.h1, prep.h2 = checks.row_hashes(table, status == OK, geometry=self.plan.geometry,
                                             x=x, y=y, other=other)
        return prep

    def _locate(self, table: pa.Table
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """Coordinates as read, the geometry rules' status, and non-point geometries."""
        if self.plan.geometry is None:  # coordinates in columns (CSV, Parquet, a database)
            x, miss_x = _floats(table.column(self.plan.lon))
            y, miss_y = _floats(table.column(self.plan.lat))
            return x, y, checks.coordinate_status(x, y, miss_x | miss_y), None
        n = table.num_rows
        wkb = table.column(self.plan.geometry).combine_chunks()
        geoms = shapely.from_wkb(wkb.to_numpy(zero_copy_only=False))
        missing = shapely.is_missing(geoms)
        missing |= ~missing & shapely.is_empty(geoms)
        status = np.where(missing, np.int8(NATIVE_MISSING), np.int8(OK))
        is_point = ~missing & (shapely.get_type_id(geoms) == 0)
        x, y = np.full(n, np.nan), np.full(n, np.nan)
        x[is_point] = shapely.get_x(geoms[is_point])
        y[is_point] = shapely.get_y(geoms[is_point])
        other = None
        if (~missing & ~is_point).any():
            other = np.where(~missing & ~is_point, geoms, None)
        return x, y, status, other

    def _in_range(self, x: np.ndarray, y: np.ndarray, located: np.ndarray,
                  other: np.ndarray | None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Coordinates in EPSG:4326 (non-point geometries converted in place), the located
        rows out of range (their geometry dropped) and those a swap of lon/lat would fix."""
        self.resolve_crs()
        if other is not None:
            sel = np.flatnonzero(other != None)  # noqa: E711 - elementwise
            other[sel] = _to_wgs84_geoms(other[sel], self.source)
        x, y = self._to_wgs84(x, y)
        bx0, by0, bx1, by1 = x, y, x, y
        if other is not None:
            b = shapely.bounds(np.where(other != None, other, None))  # noqa: E711
            bx0, by0 = np.where(np.isnan(x), b[:, 0], x), np.where(np.isnan(y), b[:, 1], y)
            bx1, by1 = np.where(np.isnan(x), b[:, 2], x), np.where(np.isnan(y), b[:, 3], y)
        outside = located & ~checks.in_range(bx0, by0, bx1, by1)
        if other is not None:
            other[outside] = None
        return x, y, outside, outside & checks.swap_fits(bx0, by0)

    def _measures(self, table: pa.Table, prep: Prepared) -> None:
        """Upload, latency, device keys and the sampling fields of ``prep``'s rows."""
        unit = self.speed.download_unit
        for role in ("upload", "latency"):
            col = self.roles[role]
            if col is None:
                continue
            values, _ = _floats(table.column(col))
            if role == "upload":  # latency is milliseconds whatever download_unit says
                values = units.to_mbps(values, unit)
            kept, neg = checks.measure_values(values, prep.status)
            setattr(prep, role, kept)
            setattr(prep, "neg_" + role, neg)
        if self.roles["device"] is not None:
            prep.device, prep.device_ok = device_keys(table.column(self.roles["device"]))
        if self.roles["time"] is not None:
            prep.day, prep.day_ok, prep.skey = checks.time_keys(
                table.column(self.roles["time"]), self.speed, prep.download, prep.upload,
                prep.latency)


def _to_wgs84_geoms(geoms: np.ndarray, source: Any) -> np.ndarray:
    if source is None:
        return geoms
    import geopandas as gpd

    frame = gpd.GeoDataFrame(geometry=gpd.GeoSeries(geoms))
    return np.asarray(to_wgs84(frame, source).geometry.values, dtype=object)


def join_batch(prep: Prepared, index: PolygonIndex) -> np.ndarray:
    """The village position of each row of a checked batch.

    Parameters
    ----------
    prep
        The batch.
    index
        The villages' index (EPSG:4326).

    Returns
    -------
    numpy.ndarray
        ``int64`` positions; -1 for rows dropped by a rule or outside every village.
    """
    village = np.full(len(prep.status), -1, dtype=np.int64)
    ok = prep.status == OK
    if prep.other_geoms is None:
        if ok.all():
            village = index.assign_xy(prep.x, prep.y).astype(np.int64)
        else:
            sel = np.flatnonzero(ok)
            village[sel] = index.assign_xy(prep.x[sel], prep.y[sel])
        return village
    pts = ok & np.isfinite(prep.x)
    sel = np.flatnonzero(pts)
    village[sel] = index.assign_xy(prep.x[sel], prep.y[sel])
    sel = np.flatnonzero(ok & ~pts)
    if len(sel):
        village[sel] = index.assign(prep.other_geoms[sel])
    return village
