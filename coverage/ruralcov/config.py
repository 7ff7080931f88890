"""The run configuration: frozen dataclasses loaded from TOML, every key with a default.

Relative paths are resolved against the configuration file's folder, so a run folder's
``config.toml`` recomputes the run wherever the folder is moved. They are made absolute
without following symbolic links, so reports show an input where the user put it (a linked
``data/current`` stays ``data/current``, not the folder it points to). Unknown keys are errors,
not silently ignored: a typo in a key would otherwise change a published number.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruralcov.errors import ConfigError, did_you_mean
from ruralcov.presets import check as check_preset
from ruralcov.presets import with_preset
from ruralcov.schema import LEVELS, REGISTERS, status_key

#: Targets presets. ``shanxi-2020``: Shanxi's rural broadband plan (98 % of administrative
#: villages on fibre, 12 Mbps in villages, 100 Mbps in towns).
PROFILES: dict[str, dict[str, float]] = {
    "shanxi-2020": {
        "fibre_share": 0.98,
        "village_download_mbps": 12.0,
        "community_download_mbps": 100.0,
    },
}

#: The currency of plan costs per profile (ISO 4217), the default of ``ruralcov plan --currency``.
CURRENCIES: dict[str, str] = {"shanxi-2020": "CNY"}

FIBRE_KINDS = ("access_points", "routes", "table", "ofds")
#: ``tests``: one row per speed test; ``ookla_tiles``: Ookla open-data tiles
#: (:mod:`ruralcov.ookla`); ``capability``: declared access capability per village code
#: (:mod:`ruralcov.capability`). ``tests`` and ``ookla_tiles`` are measurements.
SPEED_KINDS = ("tests", "ookla_tiles", "capability")
MEASURED_KINDS = ("tests", "ookla_tiles")
#: Ookla tiles (:mod:`ruralcov.ookla`): ``[speed] assignment`` of tiles to villages (None:
#: ``centroid``) and ``weighting`` of a village's means (None: ``tests``; ``tiles``: one per row).
TILE_ASSIGNMENTS = ("centroid", "area_weighted", "intersects")
TILE_WEIGHTINGS = ("tests", "tiles")
#: Which evidence the headline speed share counts when capability records are given
#: (``[run] speed_basis``, default ``capability``: the 12 Mbps target is a capability
#: standard): see :mod:`ruralcov.capability`.
SPEED_BASES = ("capability", "measured", "either")
#: Per-test records (:mod:`ruralcov.sampling`): the village statistic, and the sampling.
STATISTICS = ("median", "device_median")
SAMPLES = ("none", "device_day")
#: ``[speed] download_unit``: the unit of the download and upload columns of ``tests`` and
#: ``capability`` sources (None: ``mbps``); converted to Mbit/s by :mod:`ruralcov.units`.
DOWNLOAD_UNITS = ("mbps", "kbps", "bps")
#: ``local``: the streaming engine in this process (``ruralcov.stream``); ``dask``: the same
#: analysis on a dask.distributed cluster through dask-geopandas (``ruralcov.distributed``).
ENGINES = ("local", "dask")
#: Map backgrounds: ``none`` (offline, the default), or tiles fetched by the browser from
#: OpenStreetMap (``osm``) or AMap/Gaode (``amap``, GCJ-02: the maps shift geometries to match).
BASEMAPS = ("none", "osm", "amap")
#: When the province page draws villages and townships from vector tiles (:mod:`ruralcov.maps`).
VECTOR_TILES = ("auto", "always", "never")


#: How a ``path`` names a PostgreSQL/PostGIS database instead of a file.
DSN_SCHEMES = ("postgresql://", "postgres://")


def is_dsn(value: object) -> bool:
    """Whether ``value`` is a PostgreSQL connection URI (a ``path`` that names a database).

    Examples
    --------
    >>> is_dsn("postgresql://planner@gis.example:5432/rural"), is_dsn("villages.csv")
    (True, False)
    """
    return isinstance(value, str) and value.strip().lower().startswith(DSN_SCHEMES)


def check_dsn(dsn: str, *, where: str) -> str:
    """``dsn`` when it holds no password; a password in a configuration would be copied into
    every run folder's ``config.toml`` and manifest.

    Parameters
    ----------
    dsn
        A connection URI, ``postgresql://user@host:5432/db``.
    where
        The key that gave it, for the message (``[speed] path``, ``--to-postgis``).

    Returns
    -------
    str
        The URI, stripped of surrounding blanks.

    Raises
    ------
    ConfigError
        When the URI has a password (``user:secret@`` or ``?password=``), or is not a
        PostgreSQL URI.

    Examples
    --------
    >>> check_dsn(" postgresql://planner@localhost/rural ", where="[villages] path")
    'postgresql://planner@localhost/rural'
    """
    dsn = dsn.strip()
    if not is_dsn(dsn):
        raise ConfigError(f"{where}: {dsn!r} is not a PostgreSQL URI; write "
                          "postgresql://user@host:5432/database")
    try:
        parts = urllib.parse.urlsplit(dsn)
        secret = parts.password is not None or any(
            k.lower() == "password" for k, _ in urllib.parse.parse_qsl(parts.query))
    except ValueError as exc:
        raise ConfigError(f"{where}: {dsn!r} is not a valid PostgreSQL URI ({exc})") from exc
    if secret:
        raise ConfigError(
            f"{where}: the PostgreSQL URI contains a password, which would be written into "
            "the run folder's config.toml and manifest; remove it from the URI and give it "
            "through the PGPASSWORD environment variable, a ~/.pgpass file (PGPASSFILE) or a "
            "PGSERVICE entry instead"
        )
    return dsn


class DatabaseSource(str):
    """A ``path`` that names a PostgreSQL/PostGIS database: the connection URI (never with a
    password: :func:`check_dsn`) and the ``table`` or read-only ``query`` read from it.

    It is the URI as text wherever a path is shown or written (``config.toml``, messages),
    and carries what is read from the database (:mod:`ruralcov.postgis`).

    Examples
    --------
    >>> src = DatabaseSource("postgresql://planner@localhost/rural", table="gis.villages")
    >>> str(src), src.name, src.query is None
    ('postgresql://planner@localhost/rural', 'gis.villages', True)
    """

    table: str | None
    query: str | None

    def __new__(cls, dsn: str, *, table: str | None = None,
                query: str | None = None) -> DatabaseSource:
        obj = super().__new__(cls, dsn)
        obj.table, obj.query = table, query
        return obj

    def __getnewargs_ex__(self) -> tuple[tuple[str], dict[str, str | None]]:
        return (str.__str__(self),), {"table": self.table, "query": self.query}

    @property
    def name(self) -> str:
        """What is read, as messages name an input file: the table, or ``query``."""
        return self.table or "query"

    @property
    def label(self) -> str:
        """The URI and what is read from it, for messages."""
        return f"{str.__str__(self)} ({'table ' + self.table if self.table else 'query'})"


def key(default: Any = None, *, factory: Any = None, help: str) -> Any:  # noqa: A002
    """A configuration key: its default and the one line of help that the configuration
    reference, ``ruralcov init``'s template and the docs site print (:func:`reference`)."""
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


def table_key() -> Any:
    """The ``table`` key of an input section read from PostgreSQL (:class:`DatabaseSource`)."""
    return key(None, help='path = "postgresql://...": the table read, "schema.name" (its '
               "geometry column and SRID are used).")


def query_key() -> Any:
    """The ``query`` key of an input section read from PostgreSQL (:class:`DatabaseSource`)."""
    return key(None, help='path = "postgresql://...": a SELECT read instead of a table, in a '
               "read-only transaction.")


@dataclass(frozen=True)
class RunConfig:
    name: str = key(
        "ruralcov",
        help=(
            'Run name: one plain folder name; the run folder is out/<name> unless out or --out is'
            ' given.'
        ),
    )
    out: Path | None = key(
        None,
        help="Run folder, relative to this file; --out overrides (default: out/<name>).",
    )
    profile: str = key(
        "shanxi-2020",
        help=(
            'Targets preset: shanxi-2020 (98 % fibre, 12 Mbps villages, 100 Mbps towns); '
            '[targets] overrides single values.'
        ),
    )
    provenance: str = key(
        "",
        help="Shown in the report and the map legend: where the data come from, what is synthetic.",
    )
    engine: str = key(
        "local",
        help=(
            'Speed-test engine: local (streaming in this process) or dask (a dask.distributed '
            'cluster).'
        ),
    )
    buffer_mb: float = key(
        256.0,
        help=(
            'Memory (MiB) for joined speed tests before they spill to a temporary file; peak '
            'memory stays near it however many tests there are.'
        ),
    )
    dask_scheduler: str = key(
        "",
        help=(
            'engine = dask: address of an existing scheduler (tcp://host:8786); empty starts a '
            'LocalCluster.'
        ),
    )
    dask_workers: int = key(
        0,
        help="engine = dask without a scheduler: LocalCluster worker processes (0: one per core).",
    )
    dask_partition_rows: int = key(
        2_000_000,
        help="engine = dask: rows per partition (Parquet row groups grouped up to this size).",
    )
    speed_basis: str | None = key(
        None,
        help=(
            'With capability records, what the speed share counts: capability (default), measured'
            ' or either.'
        ),
    )


@dataclass(frozen=True)
class VillagesConfig:
    path: Path | None = key(
        None,
        help=(
            'The register, one row per village-level unit: CSV, xlsx, GeoPackage, Shapefile, '
            'GeoJSON, GeoParquet, FlatGeobuf, Parquet, or postgresql:// (required).'
        ),
    )
    layer: str | None = key(
        None,
        help="Layer of a GeoPackage or sheet-less vector file (default: the first).",
    )
    table: str | None = table_key()
    query: str | None = query_key()
    code: str = key("code", help="Column of the village code.")
    name: str = key("name", help="Column of the village name.")
    register: str = key(
        "cn-nbs",
        help=(
            'cn-nbs: levels and kind from the 12-digit NBS code and the name; generic: from the '
            'columns in levels and kind.'
        ),
    )
    levels: Mapping[str, str] = key(
        factory=dict,
        help=(
            'generic: level -> column, e.g. { township = "tcode", county = "ccode" }; cn-nbs: '
            'columns checked against the code.'
        ),
    )
    kind: str | None = key(
        None,
        help=(
            'generic: column holding village / community / other (absent: every row is a '
            'village).'
        ),
    )
    crs: str | None = key(
        None,
        help=(
            'CRS of coordinates when the file has none (EPSG:4326, or gcj02 / bd09 for '
            'AMap/Baidu).'
        ),
    )
    encoding: str = key(
        "utf-8",
        help="Text encoding of a CSV: utf-8 (with or without BOM) or gb18030.",
    )
    lon: str | None = key(
        None,
        help="CSV with point columns: longitude column (default: detected).",
    )
    lat: str | None = key(None, help="CSV with point columns: latitude column (default: detected).")
    wkt: str | None = key(
        None,
        help="CSV with a WKT geometry column: its name (default: detected).",
    )
    names: Mapping[str, Path] = key(
        factory=dict,
        help='Optional code,name tables per level, e.g. { county = "counties.csv" }.',
    )


@dataclass(frozen=True)
class BoundariesConfig:
    """Village polygons in a separate file, joined to the register by code."""

    path: Path | None = key(
        None,
        help="Village polygons in their own file, joined to the register by code.",
    )
    layer: str | None = key(None, help="Layer of a GeoPackage (default: the first).")
    table: str | None = table_key()
    query: str | None = query_key()
    code: str = key("code", help="Column of the village code.")
    crs: str | None = key(None, help="CRS of coordinates when the file has none.")
    encoding: str = key("utf-8", help="Text encoding of a CSV: utf-8 or gb18030.")
    wkt: str | None = key(
        None,
        help="CSV with a WKT geometry column: its name (default: detected).",
    )


@dataclass(frozen=True)
class FibreConfig:
    path: Path | None = key(
        None,
        help=(
            'Fibre source: access points, routes, a table by village code, or OFDS GeoJSON (one '
            '[[fibre]] block each).'
        ),
    )
    layer: str | None = key(None, help="Layer of a GeoPackage (default: the first).")
    table: str | None = table_key()
    query: str | None = query_key()
    kind: str = key("access_points", help="access_points | routes | table | ofds.")
    id: str = key("asset_id", help="Column of the asset id (access points and routes).")
    code: str = key("village_code", help="table: column of the village code.")
    value: str | None = key(
        None,
        help=(
            'table: yes/no column (yes, 1, true, 是, 有 ...); absent: every listed village has '
            'fibre.'
        ),
    )
    status: str | None = key(
        None,
        help=(
            'Status column; only rows whose status is in operational count ("" : every row is '
            'operational; default status, none for tables).'
        ),
    )
    operational: tuple[str, ...] = key(
        ("operational", "in_service"),
        help=(
            'Status values that mean in service (compared after NFKC, case folding, blanks/-/_ '
            'alike).'
        ),
    )
    max_distance_m: float = key(
        0.0,
        help="Access points within this many metres of a village polygon count for it.",
    )
    nearby_m: float = key(
        1000.0,
        help=(
            'Routes within this many metres make a village without fibre fibre_nearby (reported, '
            'not counted).'
        ),
    )
    crs: str | None = key(None, help="CRS of coordinates when the file has none.")
    encoding: str = key("utf-8", help="Text encoding of a CSV: utf-8 or gb18030.")
    lon: str | None = key(
        None,
        help="CSV with point columns: longitude column (default: detected).",
    )
    lat: str | None = key(None, help="CSV with point columns: latitude column (default: detected).")
    wkt: str | None = key(
        None,
        help="CSV with a WKT geometry column: its name (default: detected).",
    )


@dataclass(frozen=True)
class SpeedConfig:
    path: Path | None = key(
        None,
        help="Speed source: a file, or a folder of Parquet parts (one [[speed]] block per source).",
    )
    layer: str | None = key(None, help="Layer of a GeoPackage (default: the first).")
    table: str | None = table_key()
    query: str | None = query_key()
    kind: str = key(
        "tests",
        help=(
            'tests (one row per test) | ookla_tiles (Ookla open-data tiles) | capability '
            '(declared capability per village code).'
        ),
    )
    lon: str = key("lon", help='Longitude column of the tests (and of capability rows, '
                   'code = "").')
    lat: str = key("lat", help='Latitude column of the tests (and of capability rows, '
                   'code = "").')
    download: str = key(
        "download_mbps",
        help="Download column (Mbit/s unless download_unit says otherwise).",
    )
    upload: str | None = key("upload_mbps", help="Upload column (optional in the file).")
    latency: str | None = key("latency_ms", help="Latency column in ms (optional in the file).")
    device: str | None = key(
        "device_id",
        help="Device id column (optional in the file; without it min_devices is not applied).",
    )
    min_tests: int = key(5, help="Fewer tests than this in a village: insufficient_data.")
    min_devices: int = key(
        3,
        help="Fewer distinct devices than this in a village: insufficient_data.",
    )
    crs: str | None = key(None, help="CRS of coordinates when the file has none.")
    encoding: str = key("utf-8", help="Text encoding of a CSV: utf-8 or gb18030.")
    network: str | None = key(None, help="ookla_tiles: fixed or mobile (required: never mixed).")
    assignment: str | None = key(
        None,
        help=(
            "ookla_tiles: centroid (default: the tile's centre), area_weighted (shared by area) "
            "or intersects (whole, in every village it touches)."
        ),
    )
    weighting: str | None = key(
        None,
        help="ookla_tiles: means weighted by tests (default) or tiles (each tile row counts one).",
    )
    pool: bool | None = key(
        None,
        help="ookla_tiles with periods: true pools their files as one source (no trend by period).",
    )
    quadkey: str | None = key(
        None,
        help="ookla_tiles: quadkey column, used when a row has no tile polygon (default quadkey).",
    )
    wkt: str | None = key(
        None,
        help="ookla_tiles: WKT tile column of a CSV/Parquet file (default: detected).",
    )
    code: str | None = key(None, help='capability: village code column (default '
                           'village_code); "": rows placed in villages by lon/lat.')
    technology: str | None = key(
        None,
        help="capability: technology column (default technology, optional in the file).",
    )
    provider: str | None = key(
        None,
        help="capability: provider column (default provider, optional in the file).",
    )
    periods: Mapping[str, Path] | None = key(
        None,
        help=(
            'tests / ookla_tiles: one file per period, { "2020Q1" = "q1.parquet", ... }; labels '
            'sort as text in time order, the last is the headline and sets path.'
        ),
    )
    statistic: str | None = key(
        None,
        help=(
            'tests: median (of tests, default) or device_median (per device, then across '
            'devices).'
        ),
    )
    sample: str | None = key(
        None,
        help="tests: none (default) or device_day (one test per device per day and village).",
    )
    time: str | None = key(
        None,
        help="tests with sample = device_day: the date-time column (default time).",
    )
    seed: int | None = key(
        None,
        help="tests with sample = device_day: seed of the sampling (default 0).",
    )
    period: str | None = key(
        None,
        help="tests: a column holding each test's period (2020Q1, ...): one analysis per value.",
    )
    period_value: str | None = key(
        None,
        help="tests with period: the one period this analysis reads (set by the run per period).",
    )
    download_unit: str | None = key(
        None,
        help=(
            'tests / capability: unit of the download and upload columns: mbps (default), kbps or'
            ' bps.'
        ),
    )
    preset: str | None = key(None, help="A known export's kind, columns and units: mlab_ndt "
                             "(M-Lab NDT unified_downloads) | fcc_bdc (FCC BDC availability).")
    technologies: tuple[str, ...] | None = key(None, help="capability: technology values "
                                               "counted, other rows left out as "
                                               "technology_not_counted (default all; fcc_bdc: "
                                               "no satellite, no unlicensed wireless).")

    @property
    def time_column(self) -> str | None:
        """The time column read for sampling (None without sampling)."""
        return (self.time or "time") if self.sample == "device_day" else None

    @property
    def by_device(self) -> bool:
        """The village statistic is taken over per-device medians (``device_median``)."""
        return self.statistic == "device_median"

    @property
    def period_filter(self) -> bool:
        """Only the rows of ``period_value`` are read (a period of a period column)."""
        return self.period is not None and self.period_value is not None

    @property
    def period_headline(self) -> bool:
        """The headline run of a period column: it also drops the rows without a period."""
        return self.period_filter and self.periods is not None


@dataclass(frozen=True)
class TargetsConfig:
    fibre_share: float = key(
        0.98,
        help="Share of administrative villages on fibre to reach, between 0 and 1.",
    )
    village_download_mbps: float = key(
        12.0,
        help="Speed target of administrative villages (Mbit/s, zero or more).",
    )
    community_download_mbps: float = key(
        100.0,
        help="Speed target of communities (urban residents' committees).",
    )


@dataclass(frozen=True)
class MapsConfig:
    enabled: bool = key(True, help="Draw the maps (ruralcov run --no-maps sets false).")
    basemap: str = key(
        "none",
        help=(
            'none (offline, default) | osm | amap: anything but none makes the browser fetch '
            'background tiles online.'
        ),
    )
    vector_tiles: str = key(
        "auto",
        help=(
            "auto | always | never: draw the province page's villages and townships from "
            "vector tiles (maps/tiles/) instead of embedding them; auto when the page would "
            "pass max_page_mb."
        ),
    )
    max_page_mb: float = key(
        10.0,
        help="Size (MB) past which vector_tiles = auto draws the province page from tiles.",
    )


@dataclass(frozen=True)
class CorrectionsConfig:
    """The corrections ledger: reviewed overrides applied after classification
    (:mod:`ruralcov.corrections`)."""

    path: Path | None = key(
        None,
        help=(
            'Corrections ledger (CSV/xlsx): reviewed overrides of fibre or speed class, with '
            'reason and evidence.'
        ),
    )
    encoding: str = key("utf-8", help="Text encoding of a CSV: utf-8 or gb18030.")


@dataclass(frozen=True)
class OutputConfig:
    """Where a run is published besides its run folder (:mod:`ruralcov.report.postgis`)."""

    postgis: str | None = key(
        None,
        help=(
            'Also write the run to this PostGIS database, postgresql://user@host:5432/db '
            '(password: PGPASSWORD or .pgpass); --to-postgis sets it.'
        ),
    )
    schema: str = key(
        "ruralcov",
        help="Schema of the PostGIS tables (made when missing); --schema sets it.",
    )


@dataclass(frozen=True)
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    villages: VillagesConfig = field(default_factory=VillagesConfig)
    boundaries: BoundariesConfig | None = None
    fibre: tuple[FibreConfig, ...] = ()
    #: The measurement source (kind ``tests`` or ``ookla_tiles``), if any.
    speed: SpeedConfig | None = None
    targets: TargetsConfig = field(default_factory=TargetsConfig)
    maps: MapsConfig = field(default_factory=MapsConfig)
    corrections: CorrectionsConfig | None = None
    #: Where the run is published besides its folder (``[output]``), if anywhere.
    output: OutputConfig | None = None
    #: Access-capability sources (``[[speed]]`` blocks of kind ``capability``).
    capability: tuple[SpeedConfig, ...] = ()
    #: Folder the configuration was read from; relative paths were resolved against it.
    base: Path = field(default_factory=Path.cwd)


_SECTIONS = {
    "run": RunConfig,
    "villages": VillagesConfig,
    "boundaries": BoundariesConfig,
    "fibre": FibreConfig,
    "speed": SpeedConfig,
    "targets": TargetsConfig,
    "maps": MapsConfig,
    "corrections": CorrectionsConfig,
    "output": OutputConfig,
}
_PATH_KEYS = {"path", "out"}


def _build(cls: type, section: str, raw: Any, base: Path) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"[{section}] must be a table of keys, got {type(raw).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(names))
    if unknown:
        hint = "".join(
            f"; {k!r}{did_you_mean(k, names)}" for k in unknown if did_you_mean(k, names)
        )
        raise ConfigError(
            f"unknown key(s) {unknown} in [{section}]{hint}; allowed keys are {sorted(names)}"
        )
    values = {key: _value(key, value, section, base) for key, value in raw.items()}
    try:
        obj = cls(**values)
    except TypeError as exc:  # pragma: no cover - guarded by the unknown-key check
        raise ConfigError(f"[{section}]: {exc}") from exc
    _check_types(obj, section)
    return _with_database(obj, section)


def _with_database(obj: Any, section: str) -> Any:
    """An input section whose ``path`` is a PostgreSQL URI, with that path made a
    :class:`DatabaseSource` of its ``table`` or ``query``; the keys checked either way."""
    if not hasattr(obj, "table"):
        if is_dsn(getattr(obj, "path", None)):
            raise ConfigError(f"[{section}] path: a database is read by [villages], "
                              "[boundaries], [[fibre]] and [[speed]]; export this table to a "
                              "file")
        return obj
    if not is_dsn(obj.path):
        given = [k for k in ("table", "query") if getattr(obj, k) is not None]
        if given:
            raise ConfigError(f"[{section}] {' and '.join(given)} read from a database: set "
                              'path = "postgresql://user@host:5432/db" (or leave them out)')
        return obj
    query = obj.query.strip().rstrip(";").strip() if obj.query is not None else None
    if (obj.table is None) == (query is None) or obj.table == "" or query == "":
        raise ConfigError(
            f'[{section}] path = "{obj.path}" is a database: name what to read with either '
            'table = "schema.name" or query = "SELECT ..." (one of the two)'
        )
    if obj.layer is not None:
        raise ConfigError(f'[{section}] layer is for GeoPackage files; a database input names '
                          'its table = "schema.name"')
    if getattr(obj, "periods", None):
        raise ConfigError(f"[{section}] periods name one file per period; a database input "
                          'holds them in one table: set period = "<column>" instead')
    source = DatabaseSource(obj.path, table=obj.table, query=query)
    return dataclasses.replace(obj, path=source, query=query)


def _value(key: str, value: Any, section: str, base: Path) -> Any:
    """A key's TOML value as its field holds it: paths resolved against ``base``, the
    ``periods`` and ``names`` tables as label -> path, ``operational`` as a tuple."""
    if key == "path" and is_dsn(value):  # a database, read by ruralcov.postgis
        return check_dsn(value, where=f"[{section}] path")
    if key in _PATH_KEYS:
        return None if value is None else _resolve(value, base, f"{section}.{key}")
    if key == "periods" and value is not None:
        if not isinstance(value, Mapping) or not value:
            raise ConfigError(f"[{section}] periods must be a table of label = path, "
                              'e.g. periods = { "2020Q1" = "tests_q1.parquet" }')
        return {str(k): _resolve(v, base, f"{section}.periods.{k}")
                for k, v in sorted(value.items())}
    if key == "names":
        if not isinstance(value, Mapping):
            raise ConfigError(f"[{section}] names must be a table of level = path")
        return {k: _resolve(v, base, f"{section}.names.{k}") for k, v in value.items()}
    if key in ("operational", "technologies"):
        if not isinstance(value, str | list | tuple):
            raise ConfigError(f"[{section}] {key} must be a list of text, got {value!r}")
        return tuple(str(v) for v in ([value] if isinstance(value, str) else value))
    return value


def _resolve(value: Any, base: Path, key: str) -> Path:
    if not isinstance(value, str | Path) or not str(value):
        raise ConfigError(f"{key} must be a non-empty path string, got {value!r}")
    return as_written(base / Path(value).expanduser())


def as_written(path: Path | str) -> Path:
    """``path`` absolute and normalised, its symbolic links left as they are.

    Reports and manifests name an input the way the user wrote it; ``Path.resolve`` would name
    the target of every link instead.

    Parameters
    ----------
    path
        A path, relative to the working folder or absolute; ``~`` is expanded.

    Returns
    -------
    pathlib.Path
        The absolute path, ``..`` and ``.`` removed as text.

    Examples
    --------
    >>> as_written("/data/current/../2026q3/villages.csv").as_posix()
    '/data/2026q3/villages.csv'
    """
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


def relative_inside(path: Path | str, root: Path | str) -> str | None:
    """``path`` relative to ``root`` when it lies inside it.

    Compared as written first, then with symbolic links followed, so that a file reached
    through a link to the run folder (or the run folder through a link) still counts as inside.

    Parameters
    ----------
    path
        The path to place.
    root
        The folder it may lie in.

    Returns
    -------
    str or None
        The relative path in POSIX form (``"."`` for ``root`` itself), None when outside.

    Examples
    --------
    >>> relative_inside("/runs/a/tables/x.csv", "/runs/a"), relative_inside("/elsewhere", "/runs")
    ('tables/x.csv', None)
    """
    for a, b in (
        (as_written(path), as_written(root)),
        (Path(os.path.realpath(path)), Path(os.path.realpath(root))),
    ):
        try:
            return a.relative_to(b).as_posix()
        except ValueError:
            continue
    return None


def path_text(path: Path | str, roots: Sequence[Path]) -> str:
    """How a path is written in a configuration or manifest: relative inside a root, so that a
    run folder stays movable, else absolute as written.

    Parameters
    ----------
    path
        The path to write.
    roots
        Folders tried in order; the first that holds ``path`` is the one it is relative to.

    Returns
    -------
    str
        ``path`` relative to the first of ``roots`` it lies in (POSIX form), else
        :func:`as_written`.
    """
    for root in roots:
        inside = relative_inside(path, root)
        if inside is not None:
            return inside
    return str(as_written(path))


#: Characters Windows does not allow in a file name (and the path separators), and its
#: reserved device names: a run name is one folder name, on every system.
_BAD_NAME_CHARS = re.compile(r'[<>:"/\\|?*\x00-\x1f]')
_RESERVED_NAMES = re.compile(r"(con|prn|aux|nul|com[1-9]|lpt[1-9])(\..*)?", re.IGNORECASE)


def check_run_name(name: str) -> None:
    """Raise :class:`ConfigError` unless ``name`` is a plain folder name.

    ``ruralcov run`` writes to ``out/<name>`` without ``--out``: a name with ``..`` or a
    separator would write elsewhere (``"../../../pwn"``), and one Windows cannot store would
    stop the run of a colleague there.

    Parameters
    ----------
    name
        ``[run] name``.

    Raises
    ------
    ConfigError
        Naming why the name is not a plain folder name and what to write instead.
    """
    bad = _BAD_NAME_CHARS.search(name)
    why = (
        "it is empty" if not name.strip()
        else f"it is {name!r}, which names a folder above or the same" if name in (".", "..")
        else f"it contains {bad.group()!r}" if bad
        else "it ends with a dot or a space, which Windows drops" if name[-1] in ". "
        else "it is a device name on Windows" if _RESERVED_NAMES.fullmatch(name)
        else None
    )
    if why is not None:
        raise ConfigError(
            f"[run] name {name!r} is not a plain folder name: {why}. Use letters, digits, "
            "'-', '_' or '.', e.g. name = \"shanxi-2026q3\"; to write elsewhere, set "
            "[run] out or --out"
        )


def _check_types(obj: Any, section: str) -> None:
    """Reject a value whose type does not match the field's default, naming the key."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        default = f.default if f.default is not dataclasses.MISSING else None
        if value is None or default is None:
            continue
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int | float):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if ok and not math.isfinite(value):
                # TOML allows nan and inf; no setting means either, and a nan target
                # compares false with everything, so every village would silently fail it.
                raise ConfigError(
                    f"[{section}] {f.name} must be a finite number, got {value!r}"
                )
        elif isinstance(default, str):
            ok = isinstance(value, str)
        else:
            ok = True
        if not ok:
            raise ConfigError(
                f"[{section}] {f.name} must be {type(default).__name__}, got {value!r}"
            )


def config_from_dict(raw: Mapping[str, Any], *, base: Path | None = None) -> Config:
    """Build and check a :class:`Config` from parsed TOML.

    Parameters
    ----------
    raw
        The parsed TOML: a table per section (``[[fibre]]`` and ``[[speed]]`` may be lists).
    base
        The folder relative paths are resolved against (None: the working folder).

    Returns
    -------
    Config
        Every key filled in (defaults, the targets of ``[run] profile``), paths absolute.

    Raises
    ------
    ConfigError
        For an unknown section or key, a value of the wrong type or out of range, naming it.
    """
    base = as_written(base or Path.cwd())
    unknown = sorted(set(raw) - set(_SECTIONS))
    if unknown:
        hint = "".join(
            f"; [{k}]{did_you_mean(k, _SECTIONS)}" for k in unknown if did_you_mean(k, _SECTIONS)
        )
        raise ConfigError(
            f"unknown section(s) {unknown}{hint}; allowed sections are {sorted(_SECTIONS)}"
        )
    # Built in this order, so that of several mistakes the first section's is reported.
    run = _run_section(raw.get("run", {}), base)
    villages = _villages_section(raw.get("villages", {}), base)
    boundaries = _optional_section(BoundariesConfig, "boundaries", raw, base)
    fibre = _fibre_sources(raw.get("fibre", []), base)
    speed, capability = _speed_sources(raw.get("speed"), base, run)
    targets = _targets_section(raw.get("targets", {}), run, base)
    maps = _build(MapsConfig, "maps", raw.get("maps", {}), base)
    if maps.basemap not in BASEMAPS:
        raise ConfigError(
            f"[maps] basemap {maps.basemap!r} is not known; use one of {list(BASEMAPS)}"
        )
    if maps.vector_tiles not in VECTOR_TILES:
        raise ConfigError(f"[maps] vector_tiles {maps.vector_tiles!r} is not known; use one of "
                          f"{list(VECTOR_TILES)}")
    if maps.max_page_mb < 0:
        raise ConfigError(f"[maps] max_page_mb must be 0 or more, got {maps.max_page_mb!r}")
    corrections = _optional_section(CorrectionsConfig, "corrections", raw, base)
    output = _output_section(raw["output"], base) if "output" in raw else None
    if run.engine == "dask" and speed is not None and isinstance(speed.path, DatabaseSource):
        raise ConfigError('[run] engine = "dask" reads speed tests from files; a [speed] '
                          'source in a database runs with engine = "local" (streamed from a '
                          "server-side cursor)")
    return Config(
        run=run,
        villages=villages,
        boundaries=boundaries,
        fibre=fibre,
        speed=speed,
        targets=targets,
        maps=maps,
        corrections=corrections,
        output=output,
        capability=capability,
        base=base,
    )


def _output_section(raw: Any, base: Path) -> OutputConfig:
    output = _build(OutputConfig, "output", raw, base)
    if output.postgis is not None:
        output = dataclasses.replace(
            output, postgis=check_dsn(output.postgis, where="[output] postgis"))
    if not output.schema.strip():
        raise ConfigError('[output] schema must name a schema, e.g. schema = "ruralcov"')
    return output


def _run_section(raw: Any, base: Path) -> RunConfig:
    run = _build(RunConfig, "run", raw, base)
    check_run_name(run.name)
    if run.profile not in PROFILES:
        raise ConfigError(
            f"[run] profile {run.profile!r} is not known{did_you_mean(run.profile, PROFILES)}; "
            f"use one of {list(PROFILES)}"
        )
    if run.engine not in ENGINES:
        raise ConfigError(
            f"[run] engine {run.engine!r} is not supported; use one of {list(ENGINES)}"
        )
    if run.buffer_mb <= 0 or run.dask_workers < 0 or run.dask_partition_rows < 1:
        raise ConfigError("[run] buffer_mb and dask_partition_rows must be positive and "
                          "dask_workers zero (one per core) or more")
    return run


def _villages_section(raw: Any, base: Path) -> VillagesConfig:
    villages = _build(VillagesConfig, "villages", raw, base)
    if villages.path is None:
        raise ConfigError("[villages] path is required: the village register or village polygons")
    if villages.register not in REGISTERS:
        raise ConfigError(
            f"[villages] register {villages.register!r} is not known"
            f"{did_you_mean(villages.register, REGISTERS)}; use one of {list(REGISTERS)}"
        )
    for key in (*villages.levels, *villages.names):
        if key not in LEVELS:
            raise ConfigError(f"[villages] level {key!r} is not known; levels are {list(LEVELS)}")
    return villages


def _optional_section(cls: type, section: str, raw: Mapping[str, Any], base: Path) -> Any:
    """A section that may be left out, but needs its ``path`` when present."""
    if section not in raw:
        return None
    built = _build(cls, section, raw[section], base)
    if built.path is None:
        raise ConfigError(f"[{section}] path is required when the section is present")
    return built


def _fibre_sources(raw: Any, base: Path) -> tuple[FibreConfig, ...]:
    """``[fibre]`` or ``[[fibre]]``, each with the default ``status`` column of its kind."""
    blocks = [raw] if isinstance(raw, Mapping) else raw
    fibre = tuple(_build(FibreConfig, "fibre", f, base) for f in blocks)
    fibre = tuple(
        f
        if f.status is not None
        else dataclasses.replace(f, status="" if f.kind == "table" else "status")
        for f in fibre
    )
    for f in fibre:
        if f.path is None:
            raise ConfigError("[fibre] path is required for every fibre source")
        if f.kind not in FIBRE_KINDS:
            raise ConfigError(
                f"[fibre] kind {f.kind!r} is not known{did_you_mean(f.kind, FIBRE_KINDS)}; "
                f"use one of {list(FIBRE_KINDS)}"
            )
        if f.max_distance_m < 0 or f.nearby_m < 0:
            raise ConfigError("[fibre] max_distance_m and nearby_m must be zero or positive metres")
        blank = [v for v in f.operational if status_key(v) is None]
        if blank:
            raise ConfigError(
                f"[fibre] operational {list(f.operational)} has blank value(s) {blank}; list "
                "the status values that mean in service (an asset with no status is reported, "
                "never counted)"
            )
    return fibre


def _targets_section(raw: Any, run: RunConfig, base: Path) -> TargetsConfig:
    """The profile's targets, with the keys ``[targets]`` gives replaced."""
    targets = _build(TargetsConfig, "targets", {**PROFILES[run.profile], **dict(raw)}, base)
    if not 0 <= targets.fibre_share <= 1:
        raise ConfigError(
            f"[targets] fibre_share must be between 0 and 1, got {targets.fibre_share}"
        )
    for key in ("village_download_mbps", "community_download_mbps"):
        # 0 is legal (every measured village meets it); below 0 is a typo, not a target.
        if getattr(targets, key) < 0:
            raise ConfigError(
                f"[targets] {key} must be zero or more Mbps, got {getattr(targets, key)}"
            )
    return targets


def _speed_sources(
    raw: Any, base: Path, run: RunConfig
) -> tuple[SpeedConfig | None, tuple[SpeedConfig, ...]]:
    """``[speed]`` or ``[[speed]]``: at most one measurement source and any number of
    capability sources (one per provider file, say)."""
    if raw is None:
        return None, ()
    blocks = [raw] if isinstance(raw, Mapping) else list(raw)
    sources = [_build(SpeedConfig, "speed", with_preset(b) if isinstance(b, Mapping) else b,
                      base) for b in blocks]
    sources = [_with_periods(s) for s in sources]
    for s in sources:
        if s.path is None:
            raise ConfigError("[speed] path is required for every speed source")
        if s.kind not in SPEED_KINDS:
            raise ConfigError(
                f"[speed] kind {s.kind!r} is not supported{did_you_mean(s.kind, SPEED_KINDS)}; "
                f"use one of {list(SPEED_KINDS)}"
            )
        if s.min_tests < 1 or s.min_devices < 0:
            raise ConfigError("[speed] min_tests must be ≥ 1 and min_devices ≥ 0")
        check_preset(s)
        for key, allowed in (("network", ("fixed", "mobile")),
                             ("assignment", TILE_ASSIGNMENTS), ("weighting", TILE_WEIGHTINGS),
                             ("statistic", STATISTICS), ("sample", SAMPLES),
                             ("download_unit", DOWNLOAD_UNITS)):
            value = getattr(s, key)
            if value is not None and value not in allowed:
                raise ConfigError(f"[speed] {key} {value!r} is not known"
                                  f"{did_you_mean(value, allowed)}; use one of {list(allowed)}")
        tuning = [k for k in ("statistic", "sample", "time", "seed", "period", "period_value")
                  if getattr(s, k) is not None]
        if tuning and s.kind != "tests":
            raise ConfigError(f"[speed] {', '.join(tuning)}: only for kind = \"tests\" "
                              f"(per-test records), not {s.kind!r}")
        if s.download_unit is not None and s.kind == "ookla_tiles":
            raise ConfigError(
                f'[speed] download_unit = "{s.download_unit}": kind = "ookla_tiles" is always '
                "kbit/s (avg_d_kbps, avg_u_kbps by Ookla's schema) and converted by the tile "
                "reader; remove download_unit"
            )
        if s.period_value is not None and s.period is None:
            raise ConfigError("[speed] period_value names one period of a period column: "
                              'set period = "<column>" too')
        if (s.by_device or s.sample == "device_day") and not s.device:
            raise ConfigError('[speed] statistic = "device_median" and sample = "device_day" '
                              'need the device column: set device = "..."')
        if s.kind == "ookla_tiles" and s.network is None:
            raise ConfigError(
                f'[speed] {s.path.name}: kind = "ookla_tiles" needs network = "fixed" or '
                '"mobile"; Ookla publishes them separately and they are never mixed'
            )
        _check_tile_keys(s)
    measured = [s for s in sources if s.kind in MEASURED_KINDS]
    if len(measured) > 1:
        raise ConfigError(
            f"[speed] {len(measured)} measurement sources ({[s.kind for s in measured]}); "
            "give at most one of kind tests or ookla_tiles per run (their statistics cannot "
            "be pooled), plus any number of kind capability"
        )
    if run.speed_basis is not None and run.speed_basis not in SPEED_BASES:
        raise ConfigError(
            f"[run] speed_basis {run.speed_basis!r} is not known; use one of {list(SPEED_BASES)}"
        )
    return (measured[0] if measured else None,
            tuple(s for s in sources if s.kind == "capability"))


def _check_tile_keys(s: SpeedConfig) -> None:
    """The keys of Ookla tiles' methods: on tiles only, and ``pool`` with the ``periods`` it
    pools."""
    if s.pool is not None and not isinstance(s.pool, bool):
        raise ConfigError(f"[speed] pool must be true or false, got {s.pool!r}")
    tile_only = [k for k in ("assignment", "weighting", "pool") if getattr(s, k) is not None]
    if tile_only and s.kind != "ookla_tiles":
        raise ConfigError(f"[speed] {', '.join(tile_only)}: only for kind = \"ookla_tiles\" "
                          f"(tiles of means), not {s.kind!r}")
    if s.pool and not s.periods:
        raise ConfigError('[speed] pool = true pools the files of periods: give periods = '
                          '{ "2023Q1" = "q1.parquet", "2023Q2" = "q2.parquet" } (and no path)')


def _with_periods(s: SpeedConfig) -> SpeedConfig:
    """A source with ``periods``: its ``path`` is the latest period's file (the headline)."""
    if not s.periods:
        return s
    if s.kind not in MEASURED_KINDS:
        raise ConfigError(f"[speed] periods are for kind tests or ookla_tiles, not {s.kind!r}; "
                          "capability records hold for every period of the run")
    latest = s.periods[max(s.periods)]
    if s.path is not None and s.path != latest:
        raise ConfigError(f"[speed] path {str(s.path)!r} is not the latest period's file "
                          f"({max(s.periods)!r}: {str(latest)!r}); with periods, leave path out")
    return dataclasses.replace(s, path=latest)


def load_config(path: str | Path) -> Config:
    """Read a TOML configuration file.

    Parameters
    ----------
    path
        The file; relative paths in it are relative to its folder.

    Returns
    -------
    Config
        As :func:`config_from_dict` builds it.

    Raises
    ------
    ConfigError
        When the file is missing, is not valid TOML (or UTF-8), or a key or value is wrong,
        naming what is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file {str(path)!r} not found")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    return config_from_dict(raw, base=as_written(path).parent)


def config_to_dict(
    config: Config, *, relative_to: Path | Sequence[Path] | None = None
) -> dict[str, Any]:
    """The fully resolved configuration as plain TOML-ready values.

    Parameters
    ----------
    config
        The configuration.
    relative_to
        A folder, or several (a run folder and the temporary folder it is built in): paths
        under one are written relative to it, so that a run folder stays movable; others are
        absolute, as written.

    Returns
    -------
    dict
        One table per section: ``fibre`` a list of tables, ``speed`` a list when there are
        capability sources (the measurement source first); keys whose value is None are left
        out.
    """
    roots = (
        () if relative_to is None
        else (relative_to,) if isinstance(relative_to, Path)
        else tuple(relative_to)
    )

    def conv(value: Any) -> Any:
        if isinstance(value, DatabaseSource):
            return str.__str__(value)
        if isinstance(value, Path):
            return path_text(value, roots)
        if isinstance(value, Mapping):
            return {k: conv(v) for k, v in value.items()}
        if isinstance(value, tuple | list):
            return [conv(v) for v in value]
        return value

    def section(obj: Any) -> dict[str, Any]:
        return {
            f.name: conv(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if getattr(obj, f.name) is not None
        }

    out: dict[str, Any] = {"run": section(config.run), "villages": section(config.villages)}
    if config.boundaries is not None:
        out["boundaries"] = section(config.boundaries)
    if config.fibre:
        out["fibre"] = [section(f) for f in config.fibre]
    if config.capability:  # several sources: the [[speed]] list, measurement first
        speeds = [config.speed] if config.speed is not None else []
        out["speed"] = [section(s) for s in (*speeds, *config.capability)]
    elif config.speed is not None:
        out["speed"] = section(config.speed)
    out["targets"] = section(config.targets)
    out["maps"] = section(config.maps)
    if config.corrections is not None:
        out["corrections"] = section(config.corrections)
    if config.output is not None:
        out["output"] = section(config.output)
    return out


def dump_config(config: Config, path: Path, *, run_folder: Path | None = None) -> None:
    """Write the resolved configuration as TOML, paths relative to the file's folder.

    Parameters
    ----------
    config
        The configuration.
    path
        The TOML file to write; ``[run] out`` is left out (the run folder is wherever this
        file is).
    run_folder
        The folder ``path``'s folder will become (a run is built in a temporary sibling);
        paths inside it are written relative too.
    """
    import tomli_w

    roots = [path.parent] + ([run_folder] if run_folder is not None else [])
    data = config_to_dict(config, relative_to=roots)
    data["run"].pop("out", None)  # the run folder is wherever this file is
    path.write_text(tomli_w.dumps(data), encoding="utf-8")


def replace(config: Config, **sections: Any) -> Config:
    """A copy of ``config`` with whole sections replaced (``config`` itself is frozen).

    Parameters
    ----------
    config
        The configuration.
    **sections
        Fields of :class:`Config` and their new values, e.g. ``run=...`` or ``base=...``.

    Returns
    -------
    Config
        The copy; nothing is checked again.
    """
    return dataclasses.replace(config, **sections)
