"""Reading every input format into GeoDataFrames in EPSG:4326, with a table of findings.

:func:`read_layer` is the one door for spatial inputs (GeoPackage, Shapefile, zipped Shapefile,
GeoJSON, FlatGeobuf, GeoParquet, plain Parquet or CSV with lon/lat or WKT columns, a folder of
Parquet parts); :func:`read_table` for plain tables (CSV, Parquet, xlsx). Both fail with one
actionable :mod:`ruralcov.errors` message for whole-file problems (missing file, unknown
format, wrong encoding, missing columns, no CRS) and report row-level problems (missing or
unparseable coordinates, by the geometry rules of :mod:`ruralcov.checks`) as issues without
dropping the row: the caller decides.

Rows keep their source order and a RangeIndex, so row ``i`` of a frame is source data row
``i + 1`` in every issue.

Large point files (a CSV, Parquet or GeoParquet with WKB geometries, a folder of Parquet
parts) can also be read in batches of pyarrow tables: :func:`read_plan` says how (or that the
file needs :func:`read_layer`), :func:`iter_batches` yields the batches. The streaming engine
(:mod:`ruralcov.stream`), the Dask engine and the period labels read through these, so every
reader refuses the same files with the same messages.
"""

from __future__ import annotations

import codecs
import datetime
import hashlib
import json
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pyproj
import shapely

from ruralcov import checks
from ruralcov.config import DatabaseSource
from ruralcov.crs import parse_crs, source_crs, to_wgs84
from ruralcov.errors import (
    ConfigError,
    CRSError,
    InputError,
    RuralcovError,
    SchemaError,
    require_columns,
)
from ruralcov.validate import concat_issues, issue, no_issues, row_issues

__all__ = ["CONTENT_HASH", "SUPPORTED_FORMATS", "ReadPlan", "content_hash", "crs_ignored_issue",
           "crs_label", "first_batch", "iter_batches", "read_layer", "read_plan", "read_table",
           "sha256_file"]

#: Shown in every "cannot read" message.
SUPPORTED_FORMATS = (
    "GeoPackage (.gpkg), Shapefile (.shp, or zipped .zip), GeoJSON (.geojson/.json), "
    "FlatGeobuf (.fgb), GeoParquet or Parquet (.parquet/.geoparquet, or a folder of .parquet "
    "parts), CSV (.csv/.txt) with lon/lat or WKT columns, a PostgreSQL/PostGIS table or query "
    "(postgresql://)"
)
#: Key of ``frame.attrs`` holding the content hash of a frame read from a database.
CONTENT_HASH = "ruralcov_content_hash"
_TABLE_FORMATS = "CSV (.csv/.txt), Parquet (.parquet or a folder of parts), Excel (.xlsx)"

_VECTOR_SUFFIXES = (".gpkg", ".shp", ".geojson", ".json", ".fgb")
_PARQUET_SUFFIXES = (".parquet", ".geoparquet")
_CSV_SUFFIXES = (".csv", ".txt", ".tsv")
_EXCEL_SUFFIXES = (".xlsx", ".xlsm")
_GEOMETRY_MODES = ("required", "optional", "none")

# Auto-detected geometry columns, matched case-insensitively, in order of preference.
_LON_NAMES = ("lon", "lng", "long", "longitude", "x")
_LAT_NAMES = ("lat", "latitude", "y")
_WKT_NAMES = ("wkt", "geometry", "geom", "the_geom")

_GB_HINT = (
    'files saved by Excel or WPS on Chinese Windows are usually GB18030: set encoding = "gb18030"'
)


def sha256_file(path: Path | str) -> str:
    """SHA-256 of a file, or of a folder of Parquet parts, for the run manifest.

    Parameters
    ----------
    path
        A file (hashed byte for byte, read in blocks), or a folder read as one Parquet
        dataset (:func:`read_layer`).

    Returns
    -------
    str
        The hex digest. For a file it is the file's own SHA-256 (what ``sha256sum`` prints).
        For a folder it is the SHA-256 of one line ``<part name>\\0<part's SHA-256>\\n`` per
        ``*.parquet`` file directly inside it, in name order: renaming, adding, removing or
        changing a part changes it; other files and subfolders are not read, as no reader
        reads them.

    Raises
    ------
    InputError
        When ``path`` does not exist, or is a folder without ``.parquet`` parts.
    """
    if isinstance(path, DatabaseSource):  # a bug: the reader gives its content hash
        raise ValueError(f"{path.label} is a database, not a file: use content_hash(frame)")
    path = Path(path)
    if not path.exists():
        raise InputError(f"file {path} not found")
    if path.is_dir():
        digest = hashlib.sha256()
        for part in _parquet_parts(path, "input"):
            digest.update(f"{part.name}\0{sha256_file(part)}\n".encode())
        return digest.hexdigest()
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_layer(
    path: Path | str,
    *,
    layer: str | None = None,
    crs: str | None = None,
    encoding: str = "utf-8",
    lon: str | None = None,
    lat: str | None = None,
    wkt: str | None = None,
    columns: Sequence[str] | None = None,
    geometry: str = "required",
    name: str = "input",
) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """Read a spatial input into a GeoDataFrame in EPSG:4326 and a frame of issues.

    Parameters
    ----------
    path
        A file (format from its extension) or a folder of ``*.parquet`` parts.
    layer
        Layer of a multi-layer file (GeoPackage); required when the file has several.
    crs
        CRS of the coordinates when the file declares none (CSV, plain Parquet, a Shapefile
        without ``.prj``): anything :func:`ruralcov.crs.parse_crs` accepts. A CRS stored in the
        file wins, because it travels with the data; the one exception is ``"gcj02"`` /
        ``"bd09"`` on a file that declares longitude/latitude, since such files declare WGS84
        while holding offset coordinates.
    encoding
        Text encoding of CSV files (``"utf-8"``, with or without BOM, or ``"gb18030"``), and
        of Shapefile attributes when not UTF-8.
    lon, lat, wkt
        Geometry columns of a CSV or plain Parquet; auto-detected when not given. Ignored for
        formats that carry their own geometry.
    columns
        Attribute columns needed; only these (plus geometry) are read and returned.
    geometry
        ``"required"``: a file without geometry is an error; ``"optional"``: it gives all-None
        geometry; ``"none"``: geometry is never read.
    name
        Layer name used in messages and issues (``"villages"``, ``"fibre[0]"``).

    Returns
    -------
    frame, issues
        ``frame`` has a RangeIndex in source row order, a ``geometry`` column and CRS
        EPSG:4326. ``issues`` has one row per missing, unparseable or out-of-range geometry.

    Raises
    ------
    InputError, SchemaError, CRSError
        For a missing or unreadable file, missing columns, or an unknown/implausible CRS.
    """
    if geometry not in _GEOMETRY_MODES:
        raise ValueError(f"`geometry` was {geometry!r} but is expected to be in {_GEOMETRY_MODES}")
    req = _Request(
        _existing(path, name), name, layer=layer, encoding=encoding,
        columns=list(dict.fromkeys(columns)) if columns is not None else None, lon=lon,
        lat=lat, wkt=wkt, geometry=geometry,
    )
    frame, native, file_crs = _read_any(req)
    digest = content_hash(frame)
    frame, geoms, issues = _geometries(frame, native, req)
    out = gpd.GeoDataFrame(frame.reset_index(drop=True), geometry=gpd.GeoSeries(geoms), crs=None)
    if geometry != "none" and out.geometry.notna().any():
        out, crs_issues = _to_wgs84(out, file_crs, crs, path=req.path, name=name,
                                    section=req.section)
        issues = concat_issues([issues, crs_issues])
    else:
        out = out.set_crs("EPSG:4326", allow_override=True)
    if digest is not None:
        out.attrs[CONTENT_HASH] = digest
    return out, issues


def content_hash(frame: pd.DataFrame) -> str | None:
    """The content hash of a frame read from a database (:class:`ruralcov.postgis.RowDigest`),
    which the manifest records in place of a file's SHA-256; None for a frame read from a file.

    Parameters
    ----------
    frame
        What :func:`read_layer` or :func:`read_table` returned.

    Returns
    -------
    str or None
        The hex digest.
    """
    return frame.attrs.get(CONTENT_HASH)


@dataclass(frozen=True)
class _Request:
    """What :func:`read_layer` was asked to read from one file (see its parameters)."""

    path: Path
    name: str
    layer: str | None = None
    encoding: str = "utf-8"
    columns: list[str] | None = None
    lon: str | None = None
    lat: str | None = None
    wkt: str | None = None
    geometry: str = "required"

    @property
    def section(self) -> str:
        """The configuration section named in messages (``fibre`` for ``fibre[0]``)."""
        return self.name.split("[", 1)[0]

    @property
    def geometry_columns(self) -> list[str]:
        """The geometry columns named explicitly (they must exist in a tabular file)."""
        return [c for c in (self.lon, self.lat, self.wkt) if c] if self.geometry != "none" else []

    def needed(self, available: list[str]) -> list[str] | None:
        """Columns to read: the requested ones plus the geometry source columns."""
        if self.columns is None:
            return None
        extra: list[str] = []
        if self.geometry != "none":
            found = _geometry_columns(available, self.lon, self.lat, self.wkt)
            extra = found[1] if found else []
        return list(dict.fromkeys([*self.columns, *extra]))


def _geometries(frame: pd.DataFrame, native: np.ndarray | None, req: _Request
                ) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """The attribute columns, the geometries (the format's own, or built from lon/lat or WKT
    columns) and the findings about missing or unreadable ones."""
    if native is not None:
        return frame, native, _null_issues(native, req.name)
    if req.geometry == "none":
        return frame, np.full(len(frame), None, dtype=object), no_issues()
    geoms, found, issues = _tabular_geometry(frame, req)
    if req.columns is not None:
        frame = frame.loc[:, req.columns]
    elif found == ["geometry"]:
        frame = frame.drop(columns=found)
    return frame, geoms, issues


def read_table(
    path: Path | str,
    *,
    encoding: str = "utf-8",
    columns: Sequence[str] | None = None,
    name: str = "input",
    sheet: str | int = 0,
    uncached: str = "error",
) -> pd.DataFrame:
    """Read a non-spatial table: CSV (all columns as strings), Parquet or Excel (.xlsx).

    Codes such as ``140105001001`` and ``0351`` stay strings: a leading zero or twelve digits
    must never pass through a float. Errors follow :func:`read_layer`.

    Excel (``sheet``: the first one, or a name) is read as text like a CSV; real date cells
    (and numbers with a date format) become ``YYYY-MM-DD`` (with the time when there is one),
    not a number of days. A formula without a computed value (files written by scripts, such as
    openpyxl's, store the formula only) would read as an empty cell: with ``uncached="error"``
    that is an :class:`InputError` naming the cells; with ``"report"`` the frame says where
    they are in ``frame.attrs["uncached_formulas"]`` (row -> column -> ``Sheet!C4``), for
    callers that account for such rows themselves.

    Parameters
    ----------
    path
        A CSV, Parquet or Excel file, a folder of Parquet parts, or a spatial file (read
        without its geometry).
    encoding
        Text encoding of a CSV.
    columns
        Columns needed; only these are returned (a missing one is a SchemaError).
    name
        Layer name used in messages.
    sheet
        The Excel sheet.
    uncached
        ``"error"`` or ``"report"``: what an Excel formula without a computed value does.

    Returns
    -------
    pandas.DataFrame
        In source row order with a RangeIndex; codes as text.

    Raises
    ------
    InputError, SchemaError
        As :func:`read_layer`.
    """
    path = _existing(path, name)
    wanted = list(dict.fromkeys(columns)) if columns is not None else None
    suffix = "" if isinstance(path, DatabaseSource) else path.suffix.lower()
    if isinstance(path, DatabaseSource) or suffix in _VECTOR_SUFFIXES or suffix == ".zip":
        frame, _ = read_layer(path, encoding=encoding, columns=wanted, geometry="none", name=name)
        table = pd.DataFrame(frame.drop(columns="geometry"))
        table.attrs = dict(frame.attrs)
        return table
    if path.is_dir() or suffix in _PARQUET_SUFFIXES:
        files = _parquet_parts(path, name) if path.is_dir() else [path]
        available = _parquet_columns(files[0], name)
        _check_columns(wanted, available, path, name)
        return _read_plain_parquet(files, wanted, name)
    if suffix in _CSV_SUFFIXES:
        return _read_csv(path, encoding=encoding, columns=wanted, name=name)
    if suffix in _EXCEL_SUFFIXES:
        frame = _read_excel(path, sheet=sheet, name=name, uncached=uncached)
        _check_columns(wanted, list(frame.columns), path, name)
        if wanted is None:
            return frame
        out = frame.loc[:, wanted]
        out.attrs = frame.attrs
        return out
    raise InputError(
        f"{name}: cannot read {path}: unsupported format {suffix or '(no extension)'!r}; "
        f"supported tables: {_TABLE_FORMATS}"
    )


def header(path: Path | str, *, encoding: str = "utf-8", name: str = "input"
           ) -> list[str] | None:
    """The column names of a table, read without its rows.

    Parameters
    ----------
    path
        A CSV, a Parquet file or folder of parts, or a database table or query.
    encoding, name
        As for :func:`read_table`.

    Returns
    -------
    list of str or None
        The columns; None for formats whose header is not read apart (Excel, GDAL formats).

    Raises
    ------
    InputError, SchemaError
        As :func:`read_table`.
    """
    path = _existing(path, name)
    if isinstance(path, DatabaseSource):
        from ruralcov import postgis

        with postgis.connect(path, name=name) as conn, conn.transaction():
            return list(postgis.describe(conn, path, name=name).columns)
    suffix = path.suffix.lower()
    if path.is_dir() or suffix in _PARQUET_SUFFIXES:
        return _parquet_columns((_parquet_parts(path, name) if path.is_dir() else [path])[0],
                                name)
    return _csv_header(path, encoding, name) if suffix in _CSV_SUFFIXES else None


# --- reading in batches --------------------------------------------------------------------


@dataclass(frozen=True)
class ReadPlan:
    """How a point file is read in batches: format, parts, geometry source, column names."""

    kind: str  # "parquet", "geoparquet", "csv" or "postgis"
    path: Path  # a DatabaseSource for "postgis"
    files: tuple[Path, ...]
    columns: tuple[str, ...]  # every column of the file (geometry columns of GeoParquet excluded)
    lon: str | None = None
    lat: str | None = None
    geometry: str | None = None  # GeoParquet primary column (WKB)
    file_crs: pyproj.CRS | None = None
    rows: int | None = None  # known up front for Parquet
    csv_sep: str = ","
    csv_codec: str = "utf-8"


def read_plan(
    path: Path | str,
    *,
    layer: str | None = None,
    lon: str | None = None,
    lat: str | None = None,
    encoding: str = "utf-8",
    name: str = "input",
) -> ReadPlan | None:
    """How :func:`iter_batches` reads a point file; None when it cannot (use :func:`read_layer`).

    Batches are read from a CSV or plain Parquet with longitude/latitude columns, a
    GeoParquet whose geometries are WKB, or a folder of Parquet parts; not from formats GDAL
    reads, WKT columns or a named ``layer``.

    Parameters
    ----------
    path, layer, lon, lat, encoding, name
        As for :func:`read_layer`.

    Returns
    -------
    ReadPlan or None
        The format, the parts, every column and the geometry's source.

    Raises
    ------
    InputError, SchemaError
        As :func:`read_layer` for a missing or unreadable file, missing coordinate columns or
        a column named twice in the header.
    """
    path = _existing(path, name)
    if isinstance(path, DatabaseSource):
        return _database_plan(path, lon=lon, lat=lat, name=name)
    suffix = path.suffix.lower()
    if layer:
        return None
    if path.is_dir() or suffix in _PARQUET_SUFFIXES:
        return _parquet_plan(path, lon=lon, lat=lat, name=name)
    if suffix not in _CSV_SUFFIXES:
        return None
    header = _csv_header(path, encoding, name)
    _check_columns([c for c in (lon, lat) if c], header, path, name)
    found = _geometry_columns(header, lon, lat, None)
    if found is None or found[0] != "points":
        return None
    codec = _codec(encoding)
    sep = _sniff_sep(_first_line(path, codec, name, encoding), suffix)
    return ReadPlan("csv", path, (path,), tuple(header), lon=found[1][0], lat=found[1][1],
                    csv_sep=sep, csv_codec=codec)


def _parquet_plan(path: Path, *, lon: str | None, lat: str | None, name: str
                  ) -> ReadPlan | None:
    """The plan of a Parquet file or folder of parts (:func:`read_plan`)."""
    files = _parquet_parts(path, name) if path.is_dir() else [path]
    geo = _geo_metadata(files[0], name)
    available = _parquet_columns(files[0], name)
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    if geo is not None:
        primary = geo.get("primary_column")
        meta = geo.get("columns", {}).get(primary, {})
        if meta.get("encoding", "WKB").upper() != "WKB":
            return None
        crs_meta = meta.get("crs", "OGC:CRS84")
        file_crs = None if crs_meta is None else pyproj.CRS.from_user_input(crs_meta)
        attrs = tuple(c for c in available if c not in geo.get("columns", {}))
        return ReadPlan("geoparquet", path, tuple(files), attrs, geometry=primary,
                        file_crs=file_crs, rows=rows)
    _check_columns([c for c in (lon, lat) if c], available, path, name)
    found = _geometry_columns(available, lon, lat, None)
    if found is None or found[0] != "points":
        return None
    return ReadPlan("parquet", path, tuple(files), tuple(available), lon=found[1][0],
                    lat=found[1][1], rows=rows)


def _database_plan(source: DatabaseSource, *, lon: str | None, lat: str | None, name: str
                   ) -> ReadPlan | None:
    """The plan of a database table or query (:func:`read_plan`): its geometry column, or
    its longitude/latitude columns."""
    from ruralcov import postgis

    with postgis.connect(source, name=name) as conn, conn.transaction():
        layout = postgis.describe(conn, source, name=name)
    if layout.geometry is not None:
        return ReadPlan("postgis", source, (), layout.columns, geometry=layout.geometry,
                        file_crs=layout.crs)
    available = list(layout.columns)
    _check_columns([c for c in (lon, lat) if c], available, source, name)
    found = _geometry_columns(available, lon, lat, None)
    if found is None or found[0] != "points":
        return None
    return ReadPlan("postgis", source, (), layout.columns, lon=found[1][0], lat=found[1][1])


def iter_batches(plan: ReadPlan, columns: list[str], *, batch_rows: int = 1 << 20,
                 name: str = "speed", digest: Any = None) -> Iterator[pa.Table]:
    """The file of ``plan`` as tables of about ``batch_rows`` rows, in source order.

    Parameters
    ----------
    plan
        From :func:`read_plan`.
    columns
        The columns to read (a CSV's as text).
    batch_rows
        Rows per table (the last may have fewer).
    name
        The layer named in messages.
    digest
        A database's :class:`ruralcov.postgis.RowDigest`, fed every batch (its content hash
        for the manifest); files are hashed whole instead.

    Yields
    ------
    pyarrow.Table
        The next rows, with ``columns``.

    Raises
    ------
    InputError
        When a part cannot be read (as Parquet, as CSV, or in the file's encoding).
    """
    if plan.kind == "postgis":
        from ruralcov import postgis

        source: Any = plan.path
        yield from postgis.batches(source, columns, batch_rows=batch_rows, name=name,
                                   digest=digest)
        return
    if plan.kind in ("parquet", "geoparquet"):
        for f in plan.files:
            try:
                yield from _mapped_batches(f, columns, batch_rows)
            except (OSError, pa.ArrowException) as exc:
                raise InputError(f"{name}: cannot read Parquet {f}: {exc}") from exc
        return
    try:
        yield from _csv_batches(plan, columns, batch_rows)
    except UnicodeDecodeError as exc:
        raise _encoding_error(plan.path, plan.csv_codec, name, exc) from exc
    except pa.ArrowInvalid as exc:
        raise InputError(f"{name}: cannot read {plan.path} as CSV: {exc}") from exc


def _csv_batches(plan: ReadPlan, columns: list[str], batch_rows: int) -> Iterator[pa.Table]:
    """The batches of a CSV, every cell read as text (empty cells missing)."""
    read_opts = pacsv.ReadOptions(
        column_names=list(plan.columns), skip_rows=1, block_size=64 << 20,
        encoding="utf8" if plan.csv_codec in ("utf-8", "utf-8-sig") else plan.csv_codec,
    )
    convert = pacsv.ConvertOptions(
        include_columns=columns, column_types={c: pa.string() for c in columns},
        null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=True,
    )
    reader = pacsv.open_csv(plan.path, read_options=read_opts,
                            parse_options=pacsv.ParseOptions(delimiter=plan.csv_sep),
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


#: Bytes of column chunks read through one memory map of a Parquet file (see _mapped_batches).
MAP_BYTES = 64 << 20


def _mapped_batches(path: Path, read: list[str], batch_rows: int) -> Iterator[pa.Table]:
    """The batches of one Parquet file, read through a memory map.

    Read into memory, every column chunk lands in pages new to the process, which the kernel
    zeroes first; mapped, pyarrow decodes the pages where the page cache holds them.
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


def first_batch(plan: ReadPlan, columns: list[str], rows: int, *, name: str = "speed"
                ) -> pa.Table | None:
    """The first rows of a file read in batches, the file released at once (Windows keeps an
    open file locked).

    Parameters
    ----------
    plan
        From :func:`read_plan`.
    columns
        The columns to read.
    rows
        How many rows.
    name
        The layer named in messages.

    Returns
    -------
    pyarrow.Table or None
        At most ``rows`` rows; None when the file has none.
    """
    batches = iter_batches(plan, columns, batch_rows=rows, name=name)
    table = next(batches, None)
    batches.close()
    return None if table is None else table.slice(0, rows)


def _excel_text(value: object) -> object:
    """An Excel cell as text, as ``read_excel(dtype=str)`` gives it, except dates: a date is
    ``YYYY-MM-DD`` (with `` HH:MM:SS`` when it has a time), as it would be typed in a CSV."""
    if isinstance(value, datetime.datetime | pd.Timestamp):
        timed = value.time() != datetime.time()
        return value.strftime("%Y-%m-%d %H:%M:%S" if timed else "%Y-%m-%d")
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value if pd.isna(value) else str(value)  # type: ignore[arg-type]


def _read_excel(path: Path, *, sheet: str | int, name: str, uncached: str) -> pd.DataFrame:
    """One sheet as text columns (:func:`read_table`), uncached formulas found."""
    if uncached not in ("error", "report"):
        raise ValueError(f"`uncached` was {uncached!r} but is expected to be 'error' or 'report'")
    what = f"sheet {sheet!r} of {path}" if sheet != 0 else f"{path} as Excel"
    try:
        # The header row alone first: read with it, pandas renames a repeated name.
        head = pd.read_excel(path, sheet_name=sheet, header=None, nrows=1, dtype=str,
                             engine="openpyxl")
        frame = pd.read_excel(path, sheet_name=sheet, dtype=object, engine="openpyxl")
        found = _uncached_formulas(path, sheet)
    except Exception as exc:
        raise InputError(f"{name}: cannot read {what}: {exc}") from exc
    _unique_columns(head.iloc[0].tolist() if len(head) else [], path, name)
    columns = [_clean_name(c) for c in frame.columns]
    frame = pd.DataFrame(
        {j: pd.Series([_excel_text(v) for v in frame.iloc[:, j]], dtype=str)
         for j in range(frame.shape[1])}
    )
    frame.columns = columns
    header = [ref for row, _, ref in found if row < 0]
    if found and (uncached == "error" or header):
        refs = [ref for _, _, ref in found]
        shown = ", ".join(refs[:5]) + (f" and {len(refs) - 5} more" if len(refs) > 5 else "")
        raise InputError(
            f"{name}: {path}: formulas without a computed value in {shown} (the file was "
            "saved by a program that does not calculate formulas); open it in Excel or WPS "
            "and save it so that the values are computed, or replace the formulas by their "
            "values (Paste Special, Values)"
        )
    if found:  # rows at the end made only of such formulas were cut as empty: put them back
        last = max(row for row, _, _ in found)
        if last >= len(frame):
            frame = frame.reindex(range(last + 1))
        where: dict[int, dict[str, str]] = {}
        for row, col, ref in found:
            where.setdefault(row, {})[columns[col] if col < len(columns) else ""] = ref
        frame.attrs["uncached_formulas"] = where
    return frame


def _uncached_formulas(path: Path, sheet: str | int) -> list[tuple[int, int, str]]:
    """``(data row, column, "Sheet!C4")`` of each formula cell of ``sheet`` that has no
    computed value (data row 0 is sheet row 2, below the header; -1 is the header)."""
    import openpyxl
    from openpyxl.utils import get_column_letter

    def scan(data_only: bool, keep: Callable[[Any], bool]) -> tuple[str, dict[Any, Any]]:
        book = openpyxl.load_workbook(path, read_only=True, data_only=data_only)
        try:
            ws = book.worksheets[sheet] if isinstance(sheet, int) else book[sheet]
            return ws.title, {(c.row, c.column): c.value
                              for row in ws.iter_rows() for c in row if keep(c)}
        finally:
            book.close()

    title, formulas = scan(False, lambda c: getattr(c, "data_type", None) == "f")
    if not formulas:
        return []
    _, values = scan(True, lambda c: (getattr(c, "row", 0), getattr(c, "column", 0)) in formulas)
    return [
        (row - 2, col - 1, f"{title}!{get_column_letter(col)}{row}")
        for row, col in sorted(formulas)
        if values.get((row, col)) is None
    ]


# --- reading -------------------------------------------------------------------------------


def _existing(path: Path | str, name: str) -> Path:
    if isinstance(path, DatabaseSource):  # checked when it is read (ruralcov.postgis)
        return path  # type: ignore[return-value]
    path = Path(path)
    if not path.exists():
        raise InputError(f"{name}: file {path} not found")
    if path.is_file():
        _check_content(path, name)
    return path


# Leading bytes of the binary formats, and the extensions each may carry.
_MAGIC = (
    (b"PAR1", "Parquet", (*_PARQUET_SUFFIXES,)),
    (b"SQLite format 3\0", "GeoPackage (SQLite)", (".gpkg",)),
    (b"PK\x03\x04", "zip archive (zipped Shapefile or xlsx)", (".zip", *_EXCEL_SUFFIXES)),
    (b"fgb\x03", "FlatGeobuf", (".fgb",)),
    (b"\x00\x00\x27\x0a", "Shapefile", (".shp",)),
)
_RENAME = {"Parquet": ".parquet", "GeoPackage (SQLite)": ".gpkg", "FlatGeobuf": ".fgb"}


def _check_content(path: Path, name: str) -> None:
    """Refuse an empty file and one whose content contradicts its extension.

    A file renamed to the wrong extension would otherwise fail deep in a reader with a message
    about encodings or layers; naming the real format tells the user what to rename it to.
    """
    with path.open("rb") as fh:
        head = fh.read(4096)
    if not head.strip(b" \t\r\n\xef\xbb\xbf"):
        raise InputError(
            f"{name}: {path} is empty; export the data again (a file of 0 bytes or only "
            "blank lines has no rows to read)"
        )
    suffix = path.suffix.lower()
    for magic, label, suffixes in _MAGIC:
        if head.startswith(magic):
            if suffix not in suffixes:
                fix = _RENAME.get(label)
                hint = f"rename it to {path.stem}{fix}" if fix else "give it its real extension"
                raise InputError(
                    f"{name}: {path} has the extension {suffix or '(none)'!r} but holds "
                    f"{label} data; {hint}"
                )
            return
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    binary = (*_PARQUET_SUFFIXES, ".gpkg", ".fgb", ".zip", *_EXCEL_SUFFIXES)
    if suffix in binary and stripped[:1] in (b"{", b"[") and b"\0" not in head:
        # Anything else unreadable is left to the reader, whose error carries the cause.
        raise InputError(
            f"{name}: {path} has the extension {suffix!r} but holds GeoJSON/JSON text; "
            f"rename it to {path.stem}.geojson (or .json)"
        )


def _read_any(req: _Request) -> tuple[pd.DataFrame, np.ndarray | None, pyproj.CRS | None]:
    """The attribute frame, native geometries (None for tabular formats) and the file's CRS."""
    path, name, columns = req.path, req.name, req.columns
    if isinstance(path, DatabaseSource):
        return _read_database(req)
    suffix = path.suffix.lower()
    # Explicit geometry columns must exist in tabular files; listed with the other columns so
    # that one message names everything missing.
    if path.is_dir() or suffix in _PARQUET_SUFFIXES:
        files = _parquet_parts(path, name) if path.is_dir() else [path]
        geo = _geo_metadata(files[0], name)
        available = _parquet_columns(files[0], name)
        if geo is not None:
            geom_names = list(geo.get("columns", {}))
            attrs = [c for c in available if c not in geom_names]
            _check_columns(columns, attrs, path, name)
            if req.geometry == "none":
                return _read_plain_parquet(files, columns or attrs, name), None, None
            return _read_geoparquet(files, columns, geo["primary_column"], name)
        _check_columns(_union(columns, req.geometry_columns), available, path, name)
        return _read_plain_parquet(files, req.needed(available), name), None, None
    if suffix in _CSV_SUFFIXES:
        header = _csv_header(path, req.encoding, name)
        _check_columns(_union(columns, req.geometry_columns), header, path, name)
        frame = _read_csv(path, encoding=req.encoding, columns=req.needed(header), name=name)
        return frame, None, None
    if suffix in _VECTOR_SUFFIXES or suffix == ".zip":
        return _read_vector(req)
    raise InputError(
        f"{name}: cannot read {path}: unsupported format {suffix or '(no extension)'!r}; "
        f"supported formats: {SUPPORTED_FORMATS}"
    )


def _read_database(req: _Request) -> tuple[pd.DataFrame, np.ndarray | None, pyproj.CRS | None]:
    """A database table or query (:func:`_read_any`): its geometry column, or coordinates in
    columns as in a CSV; the content hash in ``frame.attrs``."""
    from ruralcov import postgis

    source = req.path
    frame, geoms, crs, digest = postgis.read_all(
        source, name=req.name, geometry=req.geometry != "none")  # type: ignore[arg-type]
    available = list(frame.columns)
    if geoms is None:
        _check_columns(_union(req.columns, req.geometry_columns), available, source, req.name)
        needed = req.needed(available)
    else:
        _check_columns(req.columns, available, source, req.name)
        needed = req.columns
    if needed is not None:
        frame = frame.loc[:, needed]
    frame.attrs[CONTENT_HASH] = digest
    return frame, geoms, crs


def _union(a: list[str] | None, b: list[str]) -> list[str] | None:
    if a is None:
        return b or None
    return list(dict.fromkeys([*a, *b]))


def _check_columns(wanted: list[str] | None, available: list[str], path: Path, name: str) -> None:
    if not wanted:
        return
    require_columns(wanted, available, where=f"{name}: {getattr(path, 'label', path)}",
                    fix="Rename the column in the file or set the column name in the "
                    "configuration")


def _clean_name(col: object) -> str:
    # Excel/WPS exports put a BOM or stray spaces into headers; config names never have them.
    return str(col).replace("\ufeff", "").strip()


def _unique_columns(header: Sequence[object], path: Path, name: str) -> None:
    """Refuse a header that names a column twice (blank names aside).

    Readers keep such files quietly: pandas renames the second ``code`` to ``code.1``, so
    which column is read depends on the reader. Every reader checks its file's header here,
    before anything is read, so the loader, the stream and the Dask engine fail alike.
    """
    seen: dict[str, int] = {}
    for i, col in enumerate(header, start=1):
        if col is None or (isinstance(col, float) and col != col):
            continue
        key = _clean_name(col)
        if not key:
            continue
        if key in seen:
            raise SchemaError(
                f"{name}: {path} has the column {key!r} twice in its header (columns "
                f"{seen[key]} and {i}); a reader would take one and ignore the other. Rename "
                "or remove one of them"
            )
        seen[key] = i


def _codec(encoding: str) -> str:
    try:
        info = codecs.lookup(encoding)
    except LookupError as exc:
        raise ConfigError(f'unknown encoding {encoding!r}; use "utf-8" or "gb18030"') from exc
    # utf-8-sig strips a BOM when present and reads plain UTF-8 unchanged.
    return "utf-8-sig" if info.name in ("utf-8", "utf-8-sig") else info.name


def _check_not_utf8(path: Path, codec: str, name: str) -> None:
    """Refuse UTF-8 text read as GB18030/GBK, which decodes without error into mojibake."""
    if codec.startswith("utf"):
        return
    with path.open("rb") as fh:
        sample = fh.read(1 << 16)
    if sample.isascii():
        return
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
    except UnicodeDecodeError:
        return
    raise InputError(
        f'{name}: {path} looks like UTF-8 text but encoding = "{codec}" was given; '
        f'set encoding = "utf-8" (Chinese names would otherwise be garbled)'
    )


def _encoding_error(path: Path, encoding: str, name: str, exc: Exception) -> InputError:
    return InputError(
        f"{name}: {path} is not valid {encoding} text ({exc}); {_GB_HINT} in the "
        f"[{name.split('[', 1)[0]}] section"
    )


def _sniff_sep(line: str, suffix: str) -> str:
    if suffix == ".tsv":
        return "\t"
    counts = {sep: line.count(sep) for sep in (",", "\t", ";", "|")}
    best = max(counts, key=lambda s: counts[s])
    return best if counts[best] else ","


def _first_line(path: Path, codec: str, name: str, encoding: str) -> str:
    try:
        with path.open("r", encoding=codec, newline="") as fh:
            return fh.readline()
    except UnicodeDecodeError as exc:
        raise _encoding_error(path, encoding, name, exc) from exc


def _csv_header(path: Path, encoding: str, name: str) -> list[str]:
    codec = _codec(encoding)
    _check_not_utf8(path, codec, name)
    line = _first_line(path, codec, name, encoding)
    sep = _sniff_sep(line, path.suffix.lower())
    try:
        head = pd.read_csv(path, sep=sep, nrows=0, encoding=codec, dtype=str)
        # The header as written: pandas renames a repeated name ("code" -> "code.1").
        raw = pd.read_csv(path, sep=sep, header=None, nrows=1, encoding=codec, dtype=str,
                          keep_default_na=False)
    except UnicodeDecodeError as exc:
        raise _encoding_error(path, encoding, name, exc) from exc
    except Exception as exc:
        raise InputError(f"{name}: cannot read {path} as CSV: {exc}") from exc
    _unique_columns(raw.iloc[0].tolist() if len(raw) else [], path, name)
    return [_clean_name(c) for c in head.columns]


def _read_csv(path: Path, *, encoding: str, columns: list[str] | None, name: str) -> pd.DataFrame:
    """All columns as strings; only empty cells are missing ("NA" may be a real name)."""
    codec = _codec(encoding)
    _check_not_utf8(path, codec, name)
    sep = _sniff_sep(_first_line(path, codec, name, encoding), path.suffix.lower())
    header = _csv_header(path, encoding, name)
    _check_columns(columns, header, path, name)
    try:
        frame = pd.read_csv(
            path,
            sep=sep,
            encoding=codec,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            usecols=None if columns is None else [header.index(c) for c in columns],
        )
    except UnicodeDecodeError as exc:
        raise _encoding_error(path, encoding, name, exc) from exc
    except Exception as exc:
        raise InputError(f"{name}: cannot read {path} as CSV: {exc}") from exc
    frame.columns = [_clean_name(c) for c in frame.columns]
    return frame.reset_index(drop=True)


def _parquet_parts(path: Path, name: str) -> list[Path]:
    parts = sorted(p for p in path.iterdir() if p.suffix.lower() == ".parquet" and p.is_file())
    if not parts:
        raise InputError(
            f"{name}: folder {path} holds no .parquet files; a folder input must contain the "
            f"parts of one Parquet dataset"
        )
    return parts


def _parquet_schema(path: Path, name: str) -> pa.Schema:
    try:
        return pq.read_schema(path)
    except Exception as exc:
        raise InputError(
            f"{name}: cannot read {path} as Parquet ({exc}); supported formats: {SUPPORTED_FORMATS}"
        ) from exc


def _parquet_columns(path: Path, name: str) -> list[str]:
    names = list(_parquet_schema(path, name).names)
    _unique_columns(names, path, name)
    return names


def _geo_metadata(path: Path, name: str) -> dict | None:
    meta = _parquet_schema(path, name).metadata or {}
    if b"geo" not in meta:
        return None
    try:
        return json.loads(meta[b"geo"])
    except ValueError as exc:
        raise InputError(f"{name}: {path} has unreadable GeoParquet metadata") from exc


def _read_plain_parquet(files: list[Path], columns: list[str] | None, name: str) -> pd.DataFrame:
    try:
        tables = [pq.read_table(f, columns=columns) for f in files]
        table = pa.concat_tables(tables, promote_options="default")
    except Exception as exc:
        raise InputError(f"{name}: cannot read Parquet {files[0].parent}: {exc}") from exc
    return table.to_pandas().reset_index(drop=True)


def _read_geoparquet(
    files: list[Path], columns: list[str] | None, primary: str, name: str
) -> tuple[pd.DataFrame, np.ndarray, pyproj.CRS | None]:
    read_cols = None if columns is None else [*columns, primary]
    try:
        with _decoding():
            parts = [gpd.read_parquet(f, columns=read_cols) for f in files]
    except Exception as exc:
        raise InputError(f"{name}: cannot read GeoParquet {files[0]}: {exc}") from exc
    frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    geo = gpd.GeoDataFrame(frame, geometry=primary)
    file_crs = parts[0].crs
    geoms = np.array(geo.geometry.values, dtype=object)
    attrs = pd.DataFrame(geo.drop(columns=primary)).reset_index(drop=True)
    if columns is not None:
        attrs = attrs.loc[:, columns]
    return attrs, geoms, file_crs


def _vector_source(path: Path, layer: str | None, name: str) -> str:
    """The GDAL path to open; a zip is searched for the one vector dataset it holds."""
    if path.suffix.lower() != ".zip":
        return str(path)
    try:
        with zipfile.ZipFile(path) as zf:
            members = [
                m
                for m in zf.namelist()
                if Path(m).suffix.lower() in _VECTOR_SUFFIXES and not Path(m).name.startswith(".")
            ]
    except zipfile.BadZipFile as exc:
        raise InputError(f"{name}: {path} is not a readable zip archive") from exc
    if layer is not None and len(members) > 1:
        members = [m for m in members if Path(m).stem == layer] or members
    if len(members) != 1:
        found = members or "nothing readable"
        raise InputError(
            f"{name}: {path} must hold exactly one dataset (a .shp with its .dbf/.shx/.prj, or "
            f"one of {SUPPORTED_FORMATS}); found {found}"
        )
    return f"/vsizip/{path.resolve().as_posix()}/{members[0]}"


def _read_vector(req: _Request) -> tuple[pd.DataFrame, np.ndarray | None, pyproj.CRS | None]:
    """A format GDAL reads (:func:`_read_any`)."""
    import pyogrio  # here: importing GDAL is slow, and the Parquet and CSV paths need none

    path, layer, name, columns, geometry = req.path, req.layer, req.name, req.columns, req.geometry

    source = _vector_source(path, layer, name)
    zipped = path.suffix.lower() == ".zip"
    try:
        layers = [str(row[0]) for row in pyogrio.list_layers(source)]
    except Exception as exc:
        raise InputError(
            f"{name}: cannot read {path} ({exc}); supported formats: {SUPPORTED_FORMATS}"
        ) from exc
    if zipped or layer is None:
        if not zipped and len(layers) > 1:
            raise InputError(
                f'{name}: {path} has {len(layers)} layers {layers}; set layer = "..." in '
                f"the [{name.split('[', 1)[0]}] section to choose one"
            )
        layer = layers[0] if layers else None
    elif layer not in layers:
        raise InputError(f"{name}: {path} has no layer {layer!r}; its layers are {layers}")
    try:
        info = pyogrio.read_info(source, layer=layer)
    except Exception as exc:
        raise InputError(f"{name}: cannot read {path}: {exc}") from exc
    fields = [str(f) for f in info["fields"]]
    _unique_columns(fields, path, name)
    has_geometry = info.get("geometry_type") is not None
    geo_cols = [] if has_geometry else req.geometry_columns
    _check_columns(_union(columns, geo_cols), fields, path, name)
    read_cols = columns if has_geometry else req.needed(fields)
    # Shapefiles without a .cpg are often GBK; GDAL cannot know, so the setting is passed on.
    enc = (
        None
        if _codec(req.encoding) == "utf-8-sig" or path.suffix.lower() not in (".shp", ".zip")
        else req.encoding
    )
    try:
        with _decoding():
            frame = pyogrio.read_dataframe(
                source,
                layer=layer,
                columns=read_cols,
                encoding=enc,
                read_geometry=has_geometry and geometry != "none",
            )
    except Exception as exc:
        raise InputError(f"{name}: cannot read {path}: {exc}") from exc
    if not isinstance(frame, gpd.GeoDataFrame):
        return pd.DataFrame(frame).reset_index(drop=True), None, None
    geoms = np.array(frame.geometry.values, dtype=object)
    attrs = pd.DataFrame(frame.drop(columns=frame.geometry.name)).reset_index(drop=True)
    return attrs, geoms, frame.crs


# --- geometry ------------------------------------------------------------------------------


def _geometry_columns(
    available: list[str], lon: str | None, lat: str | None, wkt: str | None
) -> tuple[str, list[str]] | None:
    """``("points", [lon, lat])``, ``("wkt", [col])`` or None when nothing is found."""
    if lon and lat:
        return "points", [lon, lat]
    if wkt:
        return "wkt", [wkt]
    lower = {c.lower(): c for c in reversed(available)}
    lon_col = next((lower[n] for n in _LON_NAMES if n in lower), None)
    lat_col = next((lower[n] for n in _LAT_NAMES if n in lower), None)
    if lon and lat_col:
        return "points", [lon, lat_col]
    if lat and lon_col:
        return "points", [lon_col, lat]
    if lon_col and lat_col and not (lon or lat):
        return "points", [lon_col, lat_col]
    wkt_col = next((lower[n] for n in _WKT_NAMES if n in lower), None)
    if wkt_col and not (lon or lat):
        return "wkt", [wkt_col]
    return None


def _tabular_geometry(frame: pd.DataFrame, req: _Request
                      ) -> tuple[np.ndarray, list[str], pd.DataFrame]:
    """Geometries built from lon/lat or WKT columns, vectorised, with per-row findings."""
    n, name = len(frame), req.name
    found = _geometry_columns(list(frame.columns), req.lon, req.lat, req.wkt)
    if found is None:
        if req.geometry == "optional":
            return np.full(n, None, dtype=object), [], no_issues()
        raise SchemaError(
            f"{name}: {req.path} has no geometry columns; its columns are "
            f'{list(frame.columns)}. Set lon = "..." and lat = "..." (point coordinates) or '
            f'wkt = "..." (WKT geometry) in the [{req.section}] section'
        )
    kind, cols = found
    geoms = np.full(n, None, dtype=object)
    if kind == "points":
        raw_x, raw_y = frame[cols[0]], frame[cols[1]]
        x, y = _floats(raw_x), _floats(raw_y)
        status = checks.coordinate_status(x, y, (raw_x.isna() | raw_y.isna()).to_numpy())
        missing, bad, ok = status == checks.MISSING, status == checks.BAD_GEOMETRY, status == 0
        geoms[ok] = shapely.points(x[ok], y[ok])
        what = f"{cols[0]}/{cols[1]}"
    else:
        raw = frame[cols[0]]
        values = raw.to_numpy(dtype=object, na_value=None)
        missing = raw.isna().to_numpy().copy()
        present = np.flatnonzero(~missing)
        if len(present) and isinstance(values[present[0]], bytes | bytearray):
            # A binary column is WKB, as in GeoParquet written without its metadata.
            with _decoding():
                geoms[present] = shapely.from_wkb(values[present], on_invalid="ignore")
        elif len(present):
            text = raw.iloc[present].astype(str).str.strip().to_numpy(dtype=object)
            # Whitespace-only cells count as empty, like blank cells.
            blank = text == ""
            missing[present[blank]] = True
            keep = present[~blank]
            with _decoding():
                geoms[keep] = shapely.from_wkt(text[~blank].astype(str), on_invalid="ignore")
        bad = ~missing & pd.isna(geoms)
        what = cols[0]
    empty = ~pd.isna(geoms) & shapely.is_empty(geoms)
    geoms[empty] = None
    issues = concat_issues(
        row_issues(mask, layer=name, reason=checks.RULE[key].reason,
                   message=checks.RULE[key].text(what=what))
        for mask, key in ((missing | empty, "missing"), (bad, "bad_geometry"))
    )
    return geoms, cols, issues


def _decoding() -> np.errstate:
    """Quiet numpy's "invalid value" flag while geometries are decoded (WKB, WKT).

    A NaN coordinate raises it; that geometry is reported as an issue and left out by
    :func:`_to_wgs84`, so the flag is no warning for the user (nor an error under pytest).
    """
    return np.errstate(invalid="ignore")


def _floats(values: pd.Series) -> np.ndarray:
    """Numbers from a column; unparseable text becomes NaN (reported by the caller)."""
    try:
        # The direct cast is the fast path for clean columns; text needs parsing.
        return values.astype("float64").to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        coerced = pd.to_numeric(values, errors="coerce")
        return coerced.to_numpy(dtype=np.float64, na_value=np.nan)


def _null_issues(geoms: np.ndarray, name: str) -> pd.DataFrame:
    missing = pd.isna(geoms)
    empty = ~missing & shapely.is_empty(geoms)
    geoms[empty] = None
    return row_issues(missing | empty, layer=name, reason=checks.RULE["native_missing"].reason,
                      message=checks.NO_GEOMETRY)


def _to_wgs84(
    frame: gpd.GeoDataFrame,
    file_crs: pyproj.CRS | None,
    setting: str | None,
    *,
    path: Path,
    name: str,
    section: str,
) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """Convert to EPSG:4326 with the file's CRS (or the setting) and check plausibility."""
    given = parse_crs(setting)
    found = [no_issues()]
    source, ignored = source_crs(file_crs, given, name=name, path=path, section=section)
    if ignored and file_crs is not None:
        found.append(crs_ignored_issue(name, path=path, file_crs=file_crs, setting=setting))
    label = crs_label(source)
    try:
        out = to_wgs84(frame, source)
    except RuralcovError:
        raise
    except Exception as exc:
        raise CRSError(f"{name}: cannot convert {path} from {label} to EPSG:4326: {exc}") from exc

    geoms = np.asarray(out.geometry.values, dtype=object)
    present = ~pd.isna(geoms)
    bounds = shapely.bounds(geoms)
    x0, y0, x1, y1 = bounds.T
    with np.errstate(invalid="ignore"):
        # A NaN vertex after the first leaves the bounds finite (GEOS skips it), but not the
        # length of the lines or rings: such a geometry cannot be used (nor repaired by GEOS).
        outside = present & ~(checks.in_range(x0, y0, x1, y1)
                              & np.isfinite(shapely.length(geoms)))
    error = checks.out_of_range_error(
        name, n_out=int(outside.sum()), n_present=int(present.sum()), path=path, label=label,
        swapped=bool(checks.swap_fits(x0, y0)[outside].all()))
    if error is not None:
        raise error
    if outside.any():
        geoms = geoms.copy()
        geoms[outside] = None
        out = out.set_geometry(gpd.GeoSeries(geoms, index=out.index, crs=out.crs))
        rule = checks.RULE["out_of_range"]
        found.append(row_issues(outside, layer=name, reason=rule.reason,
                                message=rule.text(label=label)))
    return out, concat_issues(found)


def crs_label(source: pyproj.CRS | str) -> str:
    """How messages name the CRS coordinates are read in.

    Parameters
    ----------
    source
        The CRS, or ``"gcj02"`` / ``"bd09"``.

    Returns
    -------
    str
        ``gcj02``, ``EPSG:4549``, ... (the CRS's name when it has no code).

    Examples
    --------
    >>> crs_label(pyproj.CRS.from_epsg(4549)), crs_label("gcj02")
    ('EPSG:4549', 'gcj02')
    """
    return source if isinstance(source, str) else (source.to_string() or source.name)


def crs_ignored_issue(name: str, *, path: Path, file_crs: pyproj.CRS,
                      setting: str | None) -> pd.DataFrame:
    """The ``crs_setting_ignored`` finding: the file declares its own CRS, which wins over
    the ``crs`` setting (:func:`ruralcov.crs.source_crs`).

    Parameters
    ----------
    name
        The layer the finding is about (``speed``, ``fibre[0]``).
    path
        The file.
    file_crs
        The CRS the file declares.
    setting
        The ``crs`` setting that was not used.

    Returns
    -------
    pandas.DataFrame
        One issue (severity ``info``, no row).
    """
    return issue(layer=name, reason="crs_setting_ignored", severity="info",
                 message=f"{path} declares its CRS ({file_crs.name}); crs = {setting!r} was not "
                 "used")
