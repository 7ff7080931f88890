"""Speed tests streamed in batches: exact per-village statistics in bounded memory.

The tests file (Parquet or GeoParquet, a folder of Parquet parts, or CSV) is read in batches
with pyarrow; each batch is checked row by row exactly as :func:`ruralcov.loaders.load_speed_tests`
checks a whole file (same issues, same 1-based source rows, rows read = used + dropped), joined
to the villages with :class:`ruralcov.join.PolygonIndex`, and reduced to a compact *run*: the
kept rows (village, download, upload, latency, device key) sorted by village.

Kept rows gather in memory up to half of ``buffer_mb``; a thread then sorts them into a run
and appends it to a spill file on disk while the next half fills (reading never waits for a
sort, and memory stays within the buffer). At the end the villages are cut into ranges whose
tests fit in a fraction of the buffer; for each range the slices of every run are gathered
and the statistics computed exactly (medians as the mean of the two middle values, the
interval from the order statistics of :func:`ruralcov.classify.median_ci_ranks`), so the
result equals :func:`ruralcov.classify.speed_statistics` on the same tests while memory stays
bounded by the buffer and does not grow with the number of points. (The one exception: a
single village with more tests than the buffer holds is processed in one piece.)

Devices are counted by a 64-bit key per device id: the id itself for integer columns (exact),
a SipHash of the text otherwise. Two different ids of one village would have to share a 64-bit
hash to be counted once (probability below 3e-12 for a village with 10,000 devices).

Copies of an earlier row (every column and the location) are found with 64-bit row hashes.
A copy shares its original's location, hence its village, so a hash travels with the kept
rows in the runs and copies are found village by village, in row order, when each range is
gathered for the statistics (no extra pass over the data); copies among the rows outside
every village go through :class:`DuplicateFinder`. Only the columns the run uses are read
batch by batch, so the hash covers those; rows that share it are candidates, read back with
every column and hashed as a stream of every column hashes them (:func:`_copies`). When the
candidates would not fit in the buffer, the file is streamed again with every column, and two
64-bit hashes over all of them decide.

With ``statistic = "device_median"`` or ``sample = "device_day"`` (:mod:`ruralcov.sampling`)
the runs also carry each row's day and sampling key; the sample is drawn and the per-device
medians are taken village by village at the same point as the duplicate check.

Formats the stream does not read (GeoPackage, Shapefile, GeoJSON, WKT columns, non-WKB
GeoParquet encodings) go through the loader instead; :func:`supports` says which.
"""

from __future__ import annotations

import os
import queue
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pyproj
import shapely

from ruralcov import io, units
from ruralcov.classify import median_ci_ranks
from ruralcov.config import SpeedConfig
from ruralcov.crs import bd09_to_wgs84, gcj02_to_wgs84, parse_crs, source_crs
from ruralcov.errors import CRSError, InputError, SchemaError
from ruralcov.join import PolygonIndex
from ruralcov.loaders import (
    SAMPLED_OUT,
    InputRecord,
    bad_time_message,
    no_time_message,
    require_sampling_columns,
)
from ruralcov.periods import MISSING_PERIOD, no_period_column, period_rows
from ruralcov.sampling import days, sampling_keys, wall_clock_ns
from ruralcov.validate import concat_issues, dropped_counts, issue, row_issues

__all__ = ["StreamedSpeed", "sample_tally", "stream_speed_tests", "supports",
           "streamed_statistics"]

#: Row status codes of a prepared batch (0: usable); order = order of the loader's checks.
(OK, MISSING, BAD_GEOMETRY, OUT_OF_RANGE, NATIVE_MISSING, BAD_DOWNLOAD, NEGATIVE, ABSURD,
 NO_PERIOD) = range(9)

STAT_COLUMNS = (
    "tests", "devices", "download_median_mbps", "download_ci_low_mbps", "download_ci_high_mbps",
    "upload_median_mbps", "latency_median_ms", "share_tests_at_target",
)


# --- what to read ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """How a tests input is read: format, parts, geometry source, column names."""

    kind: str  # "parquet", "geoparquet" or "csv"
    path: Path
    files: tuple[Path, ...]
    columns: tuple[str, ...]  # every column of the file (geometry columns of GeoParquet excluded)
    lon: str | None = None
    lat: str | None = None
    geometry: str | None = None  # GeoParquet primary column (WKB)
    file_crs: pyproj.CRS | None = None
    rows: int | None = None  # known up front for Parquet
    csv_sep: str = ","
    csv_codec: str = "utf-8"


def plan(speed: SpeedConfig) -> Plan | None:
    """How :func:`stream_speed_tests` would read ``speed.path``; None when it cannot stream it.

    Raises the same errors as :func:`ruralcov.io.read_layer` for a missing file, missing
    coordinate columns or a column named twice in the header.
    """
    name = "speed"
    path = io._existing(speed.path, name)
    suffix = path.suffix.lower()
    if speed.layer:
        return None
    if path.is_dir() or suffix in io._PARQUET_SUFFIXES:
        files = io._parquet_parts(path, name) if path.is_dir() else [path]
        geo = io._geo_metadata(files[0], name)
        available = io._parquet_columns(files[0], name)
        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        if geo is not None:
            primary = geo.get("primary_column")
            meta = geo.get("columns", {}).get(primary, {})
            if meta.get("encoding", "WKB").upper() != "WKB":
                return None
            crs_meta = meta.get("crs", "OGC:CRS84")
            file_crs = None if crs_meta is None else pyproj.CRS.from_user_input(crs_meta)
            attrs = tuple(c for c in available if c not in geo.get("columns", {}))
            return Plan("geoparquet", path, tuple(files), attrs, geometry=primary,
                        file_crs=file_crs, rows=rows)
        io._check_columns([c for c in (speed.lon, speed.lat) if c], available, path, name)
        found = io._geometry_columns(available, speed.lon, speed.lat, None)
        if found is None or found[0] != "points":
            return None
        lon, lat = found[1]
        return Plan("parquet", path, tuple(files), tuple(available), lon=lon, lat=lat, rows=rows)
    if suffix in io._CSV_SUFFIXES:
        header = io._csv_header(path, speed.encoding, name)
        io._check_columns([c for c in (speed.lon, speed.lat) if c], header, path, name)
        found = io._geometry_columns(header, speed.lon, speed.lat, None)
        if found is None or found[0] != "points":
            return None
        codec = io._codec(speed.encoding)
        sep = io._sniff_sep(io._first_line(path, codec, name, speed.encoding), suffix)
        lon, lat = found[1]
        return Plan("csv", path, (path,), tuple(header), lon=lon, lat=lat, csv_sep=sep,
                    csv_codec=codec)
    return None


def supports(speed: SpeedConfig) -> bool:
    """True when the tests input can be streamed (Parquet, GeoParquet with WKB, CSV)."""
    return plan(speed) is not None


# --- reading batches ---------------------------------------------------------------------------


def _wanted(p: Plan, speed: SpeedConfig) -> dict[str, str | None]:
    """Role -> column name for the columns present in the file."""
    cols = set(p.columns)
    out = {"download": speed.download}
    for role in ("upload", "latency", "device"):
        name = getattr(speed, role)
        out[role] = name if name and name in cols else None
    return out


def iter_batches(p: Plan, read: list[str], *, batch_rows: int = 1 << 20) -> Iterator[pa.Table]:
    """Tables of about ``batch_rows`` rows in source order, with the columns ``read``."""
    if p.kind in ("parquet", "geoparquet"):
        for f in p.files:
            try:
                yield from _mapped_batches(f, read, batch_rows)
            except (OSError, pa.ArrowException) as exc:
                raise InputError(f"speed: cannot read Parquet {f}: {exc}") from exc
        return
    read_opts = pacsv.ReadOptions(
        column_names=list(p.columns), skip_rows=1, block_size=64 << 20,
        encoding="utf8" if p.csv_codec in ("utf-8", "utf-8-sig") else p.csv_codec,
    )
    parse = pacsv.ParseOptions(delimiter=p.csv_sep)
    convert = pacsv.ConvertOptions(
        include_columns=read, column_types={c: pa.string() for c in read},
        null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=True,
    )
    try:
        reader = pacsv.open_csv(p.path, read_options=read_opts, parse_options=parse,
                                convert_options=convert)
        pending: list[pa.RecordBatch] = []
        size = 0
        for batch in reader:
            pending.append(batch)
            size += batch.num_rows
            if size >= batch_rows:
                yield pa.Table.from_batches(pending)
                pending, size = [], 0
        if pending:
            yield pa.Table.from_batches(pending)
    except UnicodeDecodeError as exc:
        raise io._encoding_error(p.path, p.csv_codec, "speed", exc) from exc
    except pa.ArrowInvalid as exc:
        raise InputError(f"speed: cannot read {p.path} as CSV: {exc}") from exc


#: Bytes of column chunks read through one memory map of a Parquet file (see _mapped_batches).
MAP_BYTES = 64 << 20


def _mapped_batches(path: Path, read: list[str], batch_rows: int) -> Iterator[pa.Table]:
    """The batches of one Parquet file, read through a memory map.

    Read into memory, every column chunk lands in pages new to the process, which the kernel
    zeroes first (on this project's 2-core virtual machine, half the reading time of the
    bench's 10 M tests); mapped, pyarrow decodes the pages where the page cache holds them.
    Mapped pages count in the process's resident memory until unmapped, so the file is mapped
    anew every :data:`MAP_BYTES` of the chunks read: memory stays flat however large the file.
    """
    with pq.ParquetFile(path, memory_map=True) as pf:
        meta = pf.metadata
    sizes = [sum(meta.row_group(g).column(c).total_compressed_size
                 for c in range(meta.num_columns)
                 if meta.row_group(g).column(c).path_in_schema.split(".")[0] in read)
             for g in range(meta.num_row_groups)]
    start = 0
    while start < len(sizes):
        end, size = start + 1, sizes[start]
        while end < len(sizes) and size + sizes[end] <= MAP_BYTES:
            size += sizes[end]
            end += 1
        with pq.ParquetFile(path, memory_map=True) as pf:
            for batch in pf.iter_batches(batch_size=batch_rows, row_groups=range(start, end),
                                         columns=read, use_threads=True):
                yield pa.Table.from_batches([batch])
        start = end


def reuse_arrow_memory() -> None:
    """Have pyarrow allocate from jemalloc and keep the pages it frees, for this process.

    pyarrow's default pool hands the memory of each decoded batch back to the system and the
    next batch faults it in anew, zeroing every page: at 10 M rows a sixth of the stream's time
    (``bench/join.py``). Kept pages are reused batch after batch, so memory stays flat at a few
    batches' worth. The command line calls this before a run; a pyarrow built without jemalloc
    keeps its pool.
    """
    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:
        return
    pa.jemalloc_set_decay_ms(-1)  # before the pool's first allocation creates its arenas
    pa.set_memory_pool(pool)


def _prefetch(it: Iterator[Any], depth: int = 1) -> Iterator[Any]:
    """Run ``it`` in a thread, ``depth`` items ahead (pyarrow releases the GIL while decoding)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()

    def work() -> None:
        try:
            for item in it:
                q.put(item)
        except BaseException as exc:  # handed to the consumer
            q.put(exc)
        q.put(done)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    while True:
        item = q.get()
        if item is done:
            break
        if isinstance(item, BaseException):
            raise item
        yield item
    t.join()


# --- checking one batch ------------------------------------------------------------------------


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
    """A 64-bit key per device id (the id itself for integers, else a hash) and validity."""
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
    """One batch after the loader's checks: coordinates in EPSG:4326 and a status per row."""

    rows: np.ndarray  # 1-based source row of each row
    x: np.ndarray
    y: np.ndarray
    status: np.ndarray  # int8: OK or the reason the row is dropped
    download: np.ndarray
    upload: np.ndarray | None
    latency: np.ndarray | None
    neg_upload: np.ndarray | None
    neg_latency: np.ndarray | None
    device: np.ndarray | None  # uint64 keys
    device_ok: np.ndarray | None
    present: int  # rows with a geometry before the range check
    swapped: np.ndarray  # per out-of-range row: would swapping lon/lat help?
    other_geoms: np.ndarray | None = None  # non-point geometries (GeoParquet), None elsewhere
    h1: np.ndarray | None = None  # 2 x 64-bit hash of each usable row (duplicate check)
    h2: np.ndarray | None = None
    day: np.ndarray | None = None  # device-day sampling: day number, its validity, the key
    day_ok: np.ndarray | None = None
    skey: np.ndarray | None = None


class Checker:
    """The row checks of the reader and the loader, batch by batch (state: the CRS)."""

    def __init__(self, p: Plan, speed: SpeedConfig, *, every_column: bool = True) -> None:
        self.plan, self.speed = p, speed
        self.every_column = every_column
        self.roles = _wanted(p, speed)
        if speed.download not in p.columns:
            raise SchemaError(f"speed: download column {speed.download!r} not found in "
                              f"{speed.path}; the file has {list(p.columns)[:20]}. Set "
                              f'download = "..." in [speed]')
        require_sampling_columns(speed, p.columns, p.path)
        if speed.period_filter and speed.period not in p.columns:
            raise no_period_column(speed, p.columns)
        self.roles["time"] = speed.time_column
        self.given = parse_crs(speed.crs)
        self.source: pyproj.CRS | str | None = None
        self.transformer: pyproj.Transformer | None = None
        self.crs_ignored = False
        self._resolved = False

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
        """The columns not read batch by batch (see :func:`_copies`)."""
        read = set(self.read_columns)
        return [c for c in self.all_columns if c not in read]

    def _resolve_crs(self) -> None:
        """The CRS the coordinates are in, decided as :func:`ruralcov.io.read_layer` does."""
        if self._resolved:
            return
        file_crs, given = self.plan.file_crs, self.given
        path = self.plan.path
        source, self.crs_ignored = source_crs(file_crs, given, name="speed", path=path,
                                              section="speed")
        self.source = source
        if not isinstance(source, str):
            wgs84 = pyproj.CRS.from_epsg(4326)
            if source != wgs84:
                self.transformer = pyproj.Transformer.from_crs(source, wgs84, always_xy=True)
        self._resolved = True

    @property
    def label(self) -> str:
        s = self.source
        return s if isinstance(s, str) else (s.to_string() or s.name)

    def _to_wgs84(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(self.source, str):
            func = {"gcj02": gcj02_to_wgs84, "bd09": bd09_to_wgs84}[self.source]
            ok = np.isfinite(x) & np.isfinite(y)
            nx, ny = x.copy(), y.copy()
            if ok.any():
                nx[ok], ny[ok] = func(x[ok], y[ok])
            return nx, ny
        if self.transformer is not None:
            ok = np.isfinite(x) & np.isfinite(y)
            nx, ny = x.copy(), y.copy()
            if ok.any():
                nx[ok], ny[ok] = self.transformer.transform(x[ok], y[ok])
            return nx, ny
        return x, y

    def check(self, table: pa.Table, row0: int) -> Prepared:
        """The rows of ``table`` (source rows from ``row0``) checked; with a period column
        only the period's rows (:mod:`ruralcov.periods`)."""
        rows = row0 + np.arange(table.num_rows, dtype=np.int64)
        no_period = None
        if self.speed.period_filter:
            take, no_period = period_rows(table.column(self.speed.period), self.speed)
            if not take.all():
                table, rows = table.filter(pa.array(take)), rows[take]
        n = table.num_rows
        status = np.zeros(n, dtype=np.int8)
        other = None
        if self.plan.kind == "geoparquet":
            wkb = table.column(self.plan.geometry).combine_chunks()
            geoms = shapely.from_wkb(wkb.to_numpy(zero_copy_only=False))
            missing = shapely.is_missing(geoms)
            missing |= ~missing & shapely.is_empty(geoms)
            status[missing] = NATIVE_MISSING
            is_point = ~missing & (shapely.get_type_id(geoms) == 0)
            x = np.full(n, np.nan)
            y = np.full(n, np.nan)
            x[is_point] = shapely.get_x(geoms[is_point])
            y[is_point] = shapely.get_y(geoms[is_point])
            if (~missing & ~is_point).any():
                other = np.where(~missing & ~is_point, geoms, None)
            present_mask = ~missing
        else:
            x, miss_x = _floats(table.column(self.plan.lon))
            y, miss_y = _floats(table.column(self.plan.lat))
            missing = miss_x | miss_y
            bad = ~(np.isfinite(x) & np.isfinite(y)) & ~missing
            status[missing] = MISSING
            status[bad] = BAD_GEOMETRY
            present_mask = ~(missing | bad)
        present = int(present_mask.sum())
        swapped = np.zeros(0, dtype=bool)
        if present:
            self._resolve_crs()
            if other is not None:
                sel = np.flatnonzero(other != None)  # noqa: E711 - elementwise
                gdf = _to_wgs84_geoms(other[sel], self.source)
                other[sel] = gdf
            x, y = self._to_wgs84(x, y)
            with np.errstate(invalid="ignore"):
                if other is not None:
                    b = shapely.bounds(np.where(other != None, other, None))  # noqa: E711
                    bx0 = np.where(np.isnan(x), b[:, 0], x)
                    by0 = np.where(np.isnan(y), b[:, 1], y)
                    bx1 = np.where(np.isnan(x), b[:, 2], x)
                    by1 = np.where(np.isnan(y), b[:, 3], y)
                else:
                    bx0, by0, bx1, by1 = x, y, x, y
                inside = (np.isfinite(bx0) & np.isfinite(by0) & np.isfinite(bx1)
                          & np.isfinite(by1) & (bx0 >= -180) & (bx1 <= 180) & (by0 >= -90)
                          & (by1 <= 90))
                outside = present_mask & ~inside
                swapped = ((np.abs(by0) <= 180) & (np.abs(bx0) <= 90))[outside]
            status[outside] = OUT_OF_RANGE
            if other is not None:
                other[outside] = None
        unit = self.speed.download_unit
        download = units.to_mbps(_floats(table.column(self.speed.download))[0], unit)
        geom_ok = status == OK
        with np.errstate(invalid="ignore"):
            status[geom_ok & np.isnan(download)] = BAD_DOWNLOAD
            status[geom_ok & (download < 0)] = NEGATIVE
            status[geom_ok & units.absurd(download)] = ABSURD
        if no_period is not None:
            status[no_period] = NO_PERIOD
        counted = (status == OK) | (status == ABSURD)
        measures: dict[str, Any] = {}
        for role in ("upload", "latency"):
            col = self.roles[role]
            if col is None:
                measures[role] = measures["neg_" + role] = None
                continue
            values, _ = _floats(table.column(col))
            if role == "upload":  # latency is milliseconds whatever download_unit says
                values = units.to_mbps(values, unit)
            with np.errstate(invalid="ignore"):
                neg = values < 0
            measures["neg_" + role] = neg & counted
            measures[role] = np.where(neg, np.nan, values)
        dev = dev_ok = None
        if self.roles["device"] is not None:
            dev, dev_ok = device_keys(table.column(self.roles["device"]))
        h1, h2 = row_hashes(table, status == OK, self.plan, x, y, other)
        day = day_ok = skey = None
        if self.roles["time"] is not None:
            ns, day_ok = wall_clock_ns(table.column(self.roles["time"]),
                                       column=self.roles["time"])
            day = days(ns)
            skey = sampling_keys(ns, download, measures["upload"], measures["latency"],
                                 seed=self.speed.seed or 0)
        return Prepared(rows=rows, x=x, y=y, status=status, download=download,
                        h1=h1, h2=h2, day=day, day_ok=day_ok, skey=skey,
                        upload=measures["upload"], latency=measures["latency"],
                        neg_upload=measures["neg_upload"], neg_latency=measures["neg_latency"],
                        device=dev, device_ok=dev_ok, present=present, swapped=swapped,
                        other_geoms=other)


_NA = np.uint64(0x5A5A5A5A5A5A5A5A)
_NO_HASH = np.empty(0, np.uint64)  # the second hash of rows that carry one
_MAX_OFFSET = (1 << 32) - 1  # of a row from its run's first (Accumulator.kept)
_HASH_KEYS = ("0123456789123456", "ruralcov-dup-key")


def _column_keys(col: pa.Array, key: str) -> np.ndarray:
    """64-bit values standing for a column's cells: equal cells, equal values; missing cells
    (null or NaN) one value, as in the loader's text comparison."""
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        if pa.types.is_floating(col.type):
            v = col.cast(pa.float64()).to_numpy(zero_copy_only=False)
            bits = v.view(np.uint64).copy()
            bits[np.isnan(v)] = _NA
        else:
            bits = col.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False).view(
                np.uint64).copy()
        if col.null_count:
            bits[col.is_null().to_numpy(zero_copy_only=False)] = _NA
        return bits
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
            or pa.types.is_dictionary(col.type)):
        col = pc.cast(col, pa.string())
    if not pa.types.is_dictionary(col.type):
        col = pc.dictionary_encode(col)
    words = col.dictionary.to_numpy(zero_copy_only=False).astype(object)
    hashed = pd.util.hash_array(words, hash_key=key, categorize=False) if len(words) else (
        np.zeros(1, np.uint64))
    out = hashed[col.indices.fill_null(0).to_numpy(zero_copy_only=False)]
    if col.null_count:
        out[col.is_null().to_numpy(zero_copy_only=False)] = _NA
    return out


def row_hashes(table: pa.Table, rows: np.ndarray, p: Plan, x: np.ndarray, y: np.ndarray,
               other: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Two independent 64-bit hashes of every column (and the geometry) of the ``rows``.

    Two rows are taken as copies when both hashes agree: for different rows that happens with
    probability 2^-128, so the check equals the loader's exact comparison in practice.
    """
    k = _stat_kernels()
    sel = np.flatnonzero(rows)
    every = len(sel) == table.num_rows
    take = None if every else pa.array(sel)
    h = [np.zeros(len(sel), dtype=np.uint64) for _ in _HASH_KEYS]
    for i, name in enumerate(table.column_names):
        if name == p.geometry:
            continue
        col = table.column(name).combine_chunks()
        col = col if every else col.take(take)
        if col.null_count == 0 and (pa.types.is_float64(col.type)
                                    or pa.types.is_int64(col.type)):
            # both hashes in one pass over the column's own buffer, with the same keys
            k.fold_both(h[0], h[1], col.to_numpy(zero_copy_only=True).view(np.uint64),
                        pa.types.is_float64(col.type), i, 1000 + i)
            continue
        numeric = pa.types.is_integer(col.type) or pa.types.is_floating(col.type)
        keys = _column_keys(col, _HASH_KEYS[0]) if numeric else None  # the same for both
        for seed, key in enumerate(_HASH_KEYS):
            k.fold(h[seed], keys if numeric else _column_keys(col, key), seed * 1000 + i)
    if p.geometry:  # the location as read (after any CRS conversion)
        gx, gy = x[sel].view(np.uint64), y[sel].view(np.uint64)
        for seed, key in enumerate(_HASH_KEYS):
            hx = gx
            if other is not None and (other[sel] != None).any():  # noqa: E711
                wkb = shapely.to_wkb(other[sel], hex=True)
                hx = gx ^ pd.util.hash_array(wkb.astype(object), hash_key=key)
            k.fold(h[seed], np.ascontiguousarray(hx), seed * 1000 + 998)
            k.fold(h[seed], np.ascontiguousarray(gy), seed * 1000 + 999)
    return h[0], h[1]


def _sharing(rows: np.ndarray, village: np.ndarray, h1: np.ndarray,
             h2: np.ndarray | None = None) -> pd.DataFrame:
    """The rows whose village and hashes another row shares (row, village, h1[, h2])."""
    cols = {"row": np.asarray(rows, np.int64), "village": np.asarray(village, np.int64),
            "h1": np.asarray(h1, np.uint64)}
    if h2 is not None:
        cols["h2"] = np.asarray(h2, np.uint64)
    frame = pd.DataFrame(cols)
    return frame[frame.duplicated(list(cols)[1:], keep=False).to_numpy()]


class _TooManyCandidates(Exception):
    """More candidate copies to compare in every column than the buffer allows (:func:`_copies`)."""


def _copies(cands: pd.DataFrame, p: Plan, speed: SpeedConfig) -> np.ndarray:
    """Source rows (sorted) among ``cands`` that copy an earlier candidate in every column.

    The candidates share their village and a hash over the columns read with another row.
    Their every column is read back (one pass, up to the last candidate) and checked and
    hashed as a stream reading every column does: a row copies an earlier one of its village
    when both 64-bit hashes over every column agree, as in that stream.
    """
    if cands.empty:
        return np.empty(0, np.int64)
    cands = cands.sort_values("row", kind="stable")
    want = cands["row"].to_numpy()
    checker = Checker(p, speed)  # every column
    pieces, row0 = [], 1
    for table in iter_batches(p, checker.read_columns):
        lo, hi = np.searchsorted(want, [row0, row0 + table.num_rows])
        if hi > lo:
            pieces.append(table.take(pa.array(want[lo:hi] - row0)))
        row0 += table.num_rows
        if hi == len(want):
            break
    prep = checker.check(pa.concat_tables(pieces), 1)
    if not (prep.status == OK).all():  # pragma: no cover - the same rows, the same checks
        raise AssertionError("a candidate copy no longer passes the row checks")
    copy = cands.assign(h1=prep.h1, h2=prep.h2).duplicated(["village", "h1", "h2"])
    return want[copy.to_numpy()]


class DuplicateFinder:
    """Usable rows that copy an earlier row, found with bounded memory.

    Row hashes are kept per hash partition (64 of them, by the top bits); partitions spill to
    temporary files past ``buffer_mb``. At the end each partition is scanned in row order with
    an open-addressing table, so the first of each group of copies is kept, as in the loader.
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
        if len(h1):
            self.chunks.append((h1, h2, rows.astype(np.int64), village.astype(np.int64)))
            self.buffered += len(h1) * 32
            if self.buffered > self.budget:
                self._flush()

    def _partitioned(self) -> tuple[np.ndarray, list[np.ndarray]]:
        cols = [np.concatenate([c[i] for c in self.chunks]) for i in range(4)]
        part = (cols[0] >> np.uint64(58)).astype(np.int64)
        perm, offsets = _stat_kernels().order_by_group(part, self.PARTS)
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
        k = _stat_kernels()
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
            h1, h2 = part[0], part[1]
            if len(h1) < 2:
                continue
            size = 1 << int(np.ceil(np.log2(2 * len(h1))))
            yield part, k.first_seen(h1, h2, np.empty(size, np.uint64),
                                     np.empty(size, np.uint64), np.zeros(size, np.bool_))

    def duplicates(self) -> tuple[np.ndarray, np.ndarray]:
        """Rows (sorted) that copy an earlier row, and their villages."""
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
        """Rows sharing both hashes with another row (row, village, h1, h2): when the hashes
        cover only some columns, the rows :func:`_copies` compares in every column."""
        found = [_sharing(rows, village, h1, h2)
                 for (h1, h2, rows, village), dup in self._parts() if dup.any()]
        return pd.concat(found, ignore_index=True) if found else _sharing(*[np.empty(0)] * 4)

    def _load(self, q: int) -> list[np.ndarray]:
        """Partition ``q`` from its file (blocks of h1, h2, row, village per flush)."""
        path = os.path.join(self.folder, f"{q}.bin")
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
        if self.folder is not None:
            import shutil

            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


def _to_wgs84_geoms(geoms: np.ndarray, source: Any) -> np.ndarray:
    import geopandas as gpd

    from ruralcov.crs import to_wgs84

    if source is None:
        return geoms
    frame = gpd.GeoDataFrame(geometry=gpd.GeoSeries(geoms))
    return np.asarray(to_wgs84(frame, source).geometry.values, dtype=object)


def join_batch(prep: Prepared, index: PolygonIndex) -> np.ndarray:
    """Village position of each row of the batch (-1: dropped or outside every village)."""
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


# --- issues ------------------------------------------------------------------------------------


def status_tally(download: np.ndarray, status: np.ndarray) -> units.SpeedTally:
    """The unit check's counts of checked rows (a batch, or a Dask partition): those with a
    location and a numeric, non-negative download, usable or absurd."""
    return units.SpeedTally.of(download, (status == OK) | (status == ABSURD))


def sample_tally(speed: SpeedConfig, rows: int = 20_000) -> units.SpeedTally | None:
    """The unit check's counts of the first ``rows`` rows of a streamable tests file (None
    when it cannot be streamed or read), so that a unit mistake stops the run before the long
    stream does; any problem reading them is left for the stream to report."""
    from ruralcov.errors import RuralcovError

    try:
        p = plan(speed)
        if p is None:
            return None
        checker = Checker(p, speed, every_column=False)
        batches = iter_batches(p, checker.read_columns, batch_rows=rows)
        table = next(batches, None)
        getattr(batches, "close", lambda: None)()  # release the file (Windows locks it)
        if table is None:
            return None
        prep = checker.check(table.slice(0, rows), 1)
        return status_tally(prep.download, prep.status)
    except RuralcovError:
        return None


@dataclass
class IssueLog:
    """Source rows per finding, collected batch by batch and turned into the issues frame."""

    rows: dict[str, list[np.ndarray]] = field(default_factory=dict)
    present: int = 0
    swapped_all: bool = True
    timed: int = 0  # usable rows with a readable time (device-day sampling)
    #: The checked downloads (usable and absurd rows), for the unit check.
    tally: units.SpeedTally = field(default_factory=units.SpeedTally)

    def add(self, key: str, rows: np.ndarray) -> None:
        if len(rows):
            self.rows.setdefault(key, []).append(np.asarray(rows, dtype=np.int64))

    def get(self, key: str) -> np.ndarray:
        parts = self.rows.get(key)
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)

    def record(self, prep: Prepared, village: np.ndarray) -> None:
        rows = prep.rows
        for code, key in ((MISSING, "missing"), (BAD_GEOMETRY, "bad_geometry"),
                          (OUT_OF_RANGE, "out_of_range"), (NATIVE_MISSING, "native_missing"),
                          (BAD_DOWNLOAD, "bad_download"), (NEGATIVE, "negative"),
                          (ABSURD, "absurd"), (NO_PERIOD, "no_period")):
            self.add(key, rows[prep.status == code])
        for role in ("upload", "latency"):
            neg = getattr(prep, "neg_" + role)
            if neg is not None:
                self.add("neg_" + role, rows[neg])
        self.add("outside", rows[(prep.status == OK) & (village < 0)])
        if prep.day_ok is not None:
            ok = prep.status == OK
            self.add("bad_time", rows[ok & ~prep.day_ok])
            self.timed += int((ok & prep.day_ok).sum())
        self.tally = self.tally + status_tally(prep.download, prep.status)
        self.present += prep.present
        if len(prep.swapped):
            self.swapped_all &= bool(prep.swapped.all())

    def check_units(self, checker: Checker) -> None:
        """Stop when the downloads of the whole file cannot be in the declared unit
        (:func:`ruralcov.units.check_plausible`, on the complete counts)."""
        s = checker.speed
        units.check_plausible(self.tally, column=s.download, path=checker.plan.path,
                              unit=s.download_unit)

    def frame(self, checker: Checker, *, rows_read: int,
              duplicates: np.ndarray | None = None,
              sampled: np.ndarray | None = None) -> pd.DataFrame:
        """The issues :func:`load_speed_tests` plus the pipeline's outside check would give.

        ``duplicates``: sorted rows that copy an earlier row (dropped as ``duplicate_test``,
        so never also outside the villages); ``sampled``: rows left out by device-day sampling.
        """
        time_col = checker.roles["time"]
        if time_col and not self.timed and len(self.get("bad_time")):
            raise SchemaError(no_time_message(time_col, checker.plan.path))
        self.rows["sampled"] = [np.empty(0, np.int64) if sampled is None else sampled]
        dups = np.empty(0, np.int64) if duplicates is None else np.asarray(duplicates)
        if len(dups):
            out = self.get("outside")
            self.rows["outside"] = [out[~np.isin(out, dups)]]
        self.rows["duplicate"] = [dups]
        s, p = checker.speed, checker.plan
        layer = "speed"
        n_out = len(self.get("out_of_range"))
        if n_out and n_out * 2 > self.present:
            hint = (
                "longitude and latitude look swapped: exchange the lon and lat settings"
                if self.swapped_all
                else "the coordinates are probably projected (metres) but declared as "
                f'{checker.label}: set crs to the projected CRS, e.g. "EPSG:4549" (CGCS2000 / '
                f"3-degree Gauss-Kruger CM 120E), or check that lon and lat are not swapped"
            )
            raise CRSError(
                f"speed: {n_out} of {self.present} geometries in {p.path} fall outside "
                f"longitude -180..180 / latitude -90..90 after converting from {checker.label}; "
                f"{hint}"
            )

        def rows_issue(key: str, reason: str, message: str, *, dropped: bool,
                       severity: str = "warning") -> pd.DataFrame:
            rows = np.sort(self.get(key))
            mask = np.ones(len(rows), dtype=bool)
            return row_issues(mask, layer=layer, reason=reason, message=message, rows=rows,
                              dropped=dropped, severity=severity)

        what = f"{p.lon}/{p.lat}"
        read = [
            rows_issue("native_missing", "missing_geometry", "the row has no geometry",
                       dropped=True),
            rows_issue("missing", "missing_geometry", f"no coordinates in {what}", dropped=True),
            rows_issue("bad_geometry", "bad_geometry", f"cannot read a geometry from {what}",
                       dropped=True),
        ]
        if checker.crs_ignored:
            read.append(issue(layer=layer, reason="crs_setting_ignored", severity="info",
                              message=f"{p.path} declares its CRS ({p.file_crs.name}); "
                                      f"crs = {s.crs!r} was not used"))
        if n_out:
            read.append(rows_issue(
                "out_of_range", "coordinates_out_of_range",
                f"coordinates outside longitude -180..180 / latitude -90..90 in {checker.label}",
                dropped=True))
        found = [
            *read,
            rows_issue("absurd", "absurd_speed", units.absurd_message(s.download,
                                                                      s.download_unit),
                       dropped=True),
            rows_issue("duplicate", "duplicate_test",
                       "exact copy of an earlier row (every column and the location); "
                       "counted once", dropped=True),
            rows_issue("bad_download", "bad_download",
                       f"{s.download!r} is missing or not a number", dropped=True),
            rows_issue("negative", "negative_speed", f"{s.download!r} is negative",
                       dropped=True),
        ]
        for role in ("upload", "latency"):
            col = getattr(s, role)
            name = "upload_mbps" if role == "upload" else "latency_ms"
            if col and checker.roles[role]:
                found.append(rows_issue("neg_" + role, f"negative_{role}",
                                        f"{col!r} is negative; this value is ignored",
                                        dropped=False))
            elif col:
                found.append(issue(layer=layer, reason="column_absent", severity="info",
                                   message=f"no {role} column {col!r} in {p.path.name}; "
                                           f"{name} medians are left empty"))
        if s.device and not checker.roles["device"]:
            found.append(issue(layer=layer, reason="column_absent", severity="info",
                               message=f"no device column {s.device!r} in {p.path.name}; "
                                       "devices are unknown and min_devices is not applied"))
        found.append(rows_issue("no_period", "missing_period", MISSING_PERIOD, dropped=True))
        if time_col:
            found.append(rows_issue("bad_time", "bad_time", bad_time_message(s), dropped=False))
        found.append(rows_issue("outside", "outside_villages",
                                "speed test lies outside every village polygon", dropped=True))
        found.append(rows_issue("sampled", "sampled_out", SAMPLED_OUT, dropped=True,
                                severity="info"))
        return concat_issues(found)


# --- exact statistics in bounded memory --------------------------------------------------------

def _stat_kernels() -> Any:
    from ruralcov import _kernels

    return _kernels


_FIELDS = ("down", "up", "lat", "dev", "dev_ok")


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
        """Queue ``col`` to be written; returns its byte offset in the file."""
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
        """Add kept rows (``village`` >= 0) with their measures."""
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
                else:  # the flusher: one thread, leaving the other core to the reading
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

        With ``confirm``, rows sharing their hashes with an earlier row of their village are
        only candidates: ``confirm`` gets them all (see :func:`_sharing`) and returns the rows
        that are copies; the ranges holding candidates are gathered again once it has answered.
        More than ``max_candidates`` raises :class:`_TooManyCandidates`.
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
                    candidates.append(_sharing(vals["row"], village, vals["h1"], vals.get("h2")))
                    n_candidates += len(candidates[-1])
                    if max_candidates is not None and n_candidates > max_candidates:
                        raise _TooManyCandidates
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


def _sha256_in_background(path: Path) -> tuple[threading.Thread, dict[str, str]]:
    box: dict[str, str] = {}

    def work() -> None:
        box["sha256"] = io.sha256_file(path)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    return t, box


@dataclass(frozen=True)
class StreamedSpeed:
    """What :func:`stream_speed_tests` returns: per-village statistics, issues, the record."""

    stats: pd.DataFrame
    issues: pd.DataFrame
    record: InputRecord
    spilled_rows: int = 0


def _checked(tables: Iterator[pa.Table], checker: Checker, index: PolygonIndex
             ) -> Iterator[tuple[Prepared, np.ndarray]]:
    """Each batch checked and joined (run in the reader thread by :func:`_prefetch`: numpy and
    the numba kernels release the GIL, so this overlaps with accumulating the previous batch)."""
    source_rows = 0  # rows of the file so far (a period column skips some of them)
    for table in tables:
        prep = checker.check(table, source_rows + 1)
        source_rows += table.num_rows
        del table
        yield prep, join_batch(prep, index)


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
    hash_input
        Compute the file's SHA-256 for the manifest (in a background thread).

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
        streamed (see :func:`supports`).
    """
    p = plan(speed)
    if p is None:
        raise ValueError(f"speed: {speed.path} cannot be streamed; use load_speed_tests")
    Checker(p, speed)  # the schema errors, before anything is started
    hasher, digest = _sha256_in_background(p.path) if hash_input else (None, {})
    args = (p, speed, index, n_villages, target_mbps, buffer_mb, batch_rows, spill_dir)
    try:
        stats, issues, rows, spilled = _stream(*args, every_column=False)
    except _TooManyCandidates:  # so many possible copies that reading every column is cheaper
        stats, issues, rows, spilled = _stream(*args, every_column=True)
    if hasher is not None:
        hasher.join()
    dropped = dropped_counts(issues, "speed")
    record = InputRecord(layer="speed", path=p.path, sha256=digest.get("sha256", ""),
                         rows_read=rows, rows_used=rows - sum(dropped.values()), dropped=dropped)
    return StreamedSpeed(stats=stats, issues=issues, record=record, spilled_rows=spilled)


#: Rows that may be copies, per MB of buffer, compared after the stream (:func:`_copies`);
#: past that, the input is streamed again with every column read and hashed.
CANDIDATES_PER_MB = 4096


def _stream(p: Plan, speed: SpeedConfig, index: PolygonIndex, n_villages: int,
            target_mbps: np.ndarray, buffer_mb: float, batch_rows: int,
            spill_dir: str | Path | None, *, every_column: bool
            ) -> tuple[pd.DataFrame, pd.DataFrame, int, int]:
    """One pass of :func:`stream_speed_tests`: statistics, issues, rows read, rows spilled.

    Without ``every_column`` only the columns the checks and statistics use are read (half
    the decoding and hashing of ``bench/join.py``'s six-column file, of which the bare engine
    uses three); rows that agree in those are compared in every column afterwards
    (:func:`_copies`).
    """
    checker = Checker(p, speed, every_column=every_column)
    # Without every column read, the accumulator keeps one hash (over the columns read) and
    # rows sharing it are compared in every column after the stream; with every column, two
    # hashes over all of them decide (2^-128 for a false copy).
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
        tables = iter_batches(p, checker.read_columns, batch_rows=batch_rows)
        for prep, village in _prefetch(_checked(tables, checker, index)):
            log.record(prep, village)
            usable = np.flatnonzero(prep.status == OK)
            inside = village[usable] >= 0
            out = ~inside
            if out.any():
                dups.add(prep.h1[out], prep.h2[out], prep.rows[usable[out]],
                         village[usable[out]])
            keep = usable[inside] if not inside.all() else usable
            values = {"row": prep.rows[keep], "down": prep.download[keep],
                      "h1": prep.h1[inside] if not inside.all() else prep.h1}
            if not confirm:
                values["h2"] = prep.h2[inside] if not inside.all() else prep.h2
            if prep.upload is not None:
                values["up"] = prep.upload[keep]
            if prep.latency is not None:
                values["lat"] = prep.latency[keep]
            if prep.device is not None:
                values["dev"] = prep.device[keep]
                values["dev_ok"] = prep.device_ok[keep]
            if prep.day is not None:
                values.update(day=prep.day[keep], day_ok=prep.day_ok[keep],
                              skey=prep.skey[keep])
            acc.add(village[keep], values)
            rows += len(prep.status)
        log.check_units(checker)
        limit = int(CANDIDATES_PER_MB * buffer_mb)
        if confirm:
            found = dups.candidates()
            if len(found) > limit:
                raise _TooManyCandidates
            outside_dups = _copies(found, p, speed)
            stats = acc.statistics(target_mbps, lambda c: _copies(c, p, speed),
                                   max_candidates=limit - len(found))
        else:
            outside_dups, _ = dups.duplicates()
            stats = acc.statistics(target_mbps)
        dup_rows = np.sort(np.concatenate([outside_dups, acc.duplicates[0]]))
        issues = log.frame(checker, rows_read=rows, duplicates=dup_rows, sampled=acc.sampled)
    finally:
        acc.close()
        dups.close()
    return stats, issues, rows, acc.spilled_rows


def streamed_statistics(
    village: np.ndarray, download: np.ndarray, *, n_villages: int, target_mbps: np.ndarray,
    upload: np.ndarray | None = None, latency: np.ndarray | None = None,
    device: np.ndarray | None = None, buffer_mb: float = 256, batch_rows: int = 1 << 20,
    statistic: str = "median", sample: dict[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """:func:`ruralcov.classify.speed_statistics` computed by the streaming accumulator.

    The same arguments (``device`` as 64-bit keys, or ids hashed here), fed in batches of
    ``batch_rows``; used by the tests to prove that both give the same numbers and by the Dask
    engine on each shuffled partition. ``sample``: the ``day``, ``day_ok`` and ``skey`` arrays
    of device-day sampling (the rows left out are in ``frame.attrs["sampled"]``).
    """
    village = np.asarray(village, dtype=np.int64)
    download = np.asarray(download, dtype=np.float64)
    keys = ok = None
    if device is not None:
        keys, ok = device_keys(pa.array(np.asarray(device, dtype=object), from_pandas=True))
    acc = Accumulator(n_villages, has_upload=upload is not None, has_latency=latency is not None,
                      has_device=device is not None, buffer_mb=buffer_mb, statistic=statistic,
                      sample=sample is not None)
    try:
        for s in range(0, len(village), batch_rows):
            sl = slice(s, s + batch_rows)
            keep = np.flatnonzero(village[sl] >= 0) + s
            values = {"row": keep + 1, "down": download[keep]}
            if upload is not None:
                values["up"] = np.asarray(upload, dtype=np.float64)[keep]
            if latency is not None:
                values["lat"] = np.asarray(latency, dtype=np.float64)[keep]
            if keys is not None:
                values["dev"], values["dev_ok"] = keys[keep], ok[keep]
            if sample is not None:
                values.update({f: np.asarray(v)[keep] for f, v in sample.items()})
            acc.add(village[keep], values)
        stats = acc.statistics(target_mbps)
        stats.attrs["sampled"] = acc.sampled
        return stats
    finally:
        acc.close()
