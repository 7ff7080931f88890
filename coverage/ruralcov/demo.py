"""The seeded synthetic world for the demo: real Shanxi register, synthetic everything else.

This module owns :func:`build_demo_inputs`, which writes a complete set of demo inputs into a
folder and returns the matching configuration. What is real and what is invented:

- **real**: the Shanxi village register (NBS 2023 codes and names, 21,895 village-level units)
  and the 117 county outlines, both shipped in :mod:`ruralcov.demo_data` (see its README);
- **synthetic** (seeded, deterministic): village and township polygons (townships partition
  their county outline, villages partition their township; Voronoi cells of random seeds
  relaxed twice with Lloyd's algorithm), fibre access points and routes, an operator's claimed
  fibre list, speed tests of two quarters (2020Q1 and 2020Q2, the headline) and operators'
  declared access capability per village (``capability.csv``, best across providers).

The synthetic world is built so that every branch of the analysis has something to show: about
a quarter to a third of counties fall short of the 98 % fibre target (preferring counties with
large villages, i.e. the mountains), some villages have fibre only through an access point just
outside their polygon, some have only planned or under-construction assets, some have a route
passing by but no access point, some have too few speed tests, and a handful of speed-test rows
are bad (negative speed, missing or out-of-province coordinates).

The world is drawn one province at a time (:func:`province_layers`, with the settings of a
:class:`Province`): the Shanxi demo is one province, the national world
(:mod:`ruralcov.national`) is every province in turn, written one after the other by
:class:`InputWriter`. Distances are measured in the province's metric CRS (UTM 49N,
EPSG:32649, for Shanxi); files are written in EPSG:4326.
"""

from __future__ import annotations

import importlib.resources
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
import pyproj
import shapely

from ruralcov.schema import cn_nbs_kind

__all__ = [
    "DEMO_PROVENANCE",
    "InputWriter",
    "Layers",
    "Province",
    "MAX_DISTANCE_M",
    "NEARBY_M",
    "build_demo_inputs",
    "demo_config",
    "province_layers",
    "shanxi",
]

METRIC_CRS = "EPSG:32649"
WGS84 = "EPSG:4326"

#: Shown in the report and the map legend (``[run] provenance``).
DEMO_PROVENANCE = (
    "Real: Shanxi village register (NBS 2023) and county outlines. "
    "Synthetic: village geometry, fibre, speed tests of 2020Q1 and 2020Q2 and the access-"
    "capability table (seeded generator, seed {seed})."
)

_REGISTER_FILES = {
    "villages.csv": "shanxi_villages.csv",
    "townships.csv": "shanxi_townships.csv",
    "counties.csv": "shanxi_counties.csv",
    "cities.csv": "shanxi_cities.csv",
    "province.csv": "shanxi_province.csv",
    "county_outlines.geojson": "shanxi_counties.geojson",
}

#: The demo's fibre join distances (``max_distance_m`` and ``nearby_m`` in its configuration).
MAX_DISTANCE_M = 500.0
NEARBY_M = 1000.0
_OPERATORS = np.array(["中国电信", "中国联通", "中国移动"])
_LLOYD_ITERATIONS = 2
# GeoPackages store a "last change" timestamp; pin it so that a seed gives identical bytes.
_GPKG_DATE = "2020-12-31T00:00:00.000Z"
#: Where the Shanxi demo puts its speed tests outside every village: Hebei (east), Henan
#: (south-east) and Shaanxi (west) of Shanxi (and null island, see :func:`_bad_tests`).
_SHANXI_NEIGHBOURS = ((115.3, 37.0, 116.5, 39.5), (113.8, 34.2, 115.0, 34.8),
                      (108.0, 35.0, 109.5, 37.0))


@dataclass(frozen=True)
class Province:
    """How the synthetic layers of one province are drawn.

    The Shanxi demo is one province (:func:`shanxi`); the national world draws every province
    with its own settings (:mod:`ruralcov.national`), so that a province drawn alone and the
    same province drawn inside the nation are the same files.

    Attributes
    ----------
    code
        The 2-digit province code (the unknown codes of the bad capability rows start with it).
    seed
        Entropy of the province's random streams: the main stream is
        ``default_rng(list(seed))``, the 2020Q1 and capability streams add 1 and 2.
    metric_crs
        Where distances are measured (fibre evidence), a CRS in metres covering the province.
    plane_scale
        Metres per degree of longitude and latitude in the middle of the province: the cells
        are cut in this scaled lon/lat plane (see :func:`_build_geometry`).
    prefix
        Put after ``AP-``, ``RT-`` and ``dev-`` in asset, route and device ids, so that the ids
        of several provinces in one file stay unique.
    outside
        Boxes (west, south, east, north) where the bad speed tests outside every village go.
    ap_clear_m, route_clear_m
        How far an operational access point or route stays from the villages meant to have
        no fibre or no fibre nearby; beyond the analysis's 500 m and 1 km by more than the
        scale error between two metric CRSs, when the province is analysed in another CRS.
    border
        Other provinces' county outlines near this one, an array of polygons in
        ``metric_crs`` (None: none): no access point or route comes within ``ap_clear_m`` /
        ``route_clear_m`` of them, so a province gives its neighbours no fibre evidence.
    settle
        Put an access point that three draws left within ``ap_clear_m`` of a village meant to
        have no fibre on a clear spot of its village (:func:`_clear_spot`), so that no
        distance falls near 500 m where two CRSs disagree. The Shanxi demo leaves its few
        such points where they are (its published files stay as they were).
    """

    code: str
    seed: tuple[int, ...]
    metric_crs: str = METRIC_CRS
    plane_scale: tuple[float, float] = (111_320.0 * math.cos(math.radians(37.5)), 110_950.0)
    prefix: str = ""
    outside: tuple[tuple[float, float, float, float], ...] = _SHANXI_NEIGHBOURS
    ap_clear_m: float = MAX_DISTANCE_M + 1.0
    route_clear_m: float = NEARBY_M + 10.0
    border: Any = None
    settle: bool = False

    def stream(self, *more: int) -> np.random.Generator:
        """The province's random stream ``more`` (none: the main one)."""
        return np.random.default_rng([*self.seed, *more])


def shanxi(seed: int) -> Province:
    """The Shanxi demo's province: Shanxi's UTM zone and neighbours, ids without a prefix.

    Examples
    --------
    >>> shanxi(2020).metric_crs
    'EPSG:32649'
    """
    return Province(code="14", seed=(seed,))


@dataclass(frozen=True)
class Layers:
    """The synthetic layers of one province, as :class:`InputWriter` writes them."""

    townships: pd.DataFrame
    villages: pd.DataFrame
    access_points: pd.DataFrame
    routes: pd.DataFrame
    fibre_table: pd.DataFrame
    tests: pd.DataFrame
    earlier: pd.DataFrame
    capability: pd.DataFrame


def build_demo_inputs(
    inputs_dir: Path, *, seed: int = 2020, tests_per_village: float = 16.0
) -> dict:
    """Write the demo inputs into inputs_dir and return the raw configuration dict (TOML-shaped)
    whose relative paths are relative to inputs_dir.

    Parameters
    ----------
    inputs_dir
        Folder to write into (created if missing). Existing demo files are overwritten.
    seed
        Seed of :func:`numpy.random.default_rng`; the same seed writes identical files.
    tests_per_village
        Mean number of speed tests per village with a polygon (overdispersed counts).

    Returns
    -------
    dict
        The demo configuration in the shape of a parsed TOML file; load it with
        ``ruralcov.config.config_from_dict(raw, base=inputs_dir)``.

    Examples
    --------
    >>> import tempfile
    >>> from ruralcov.config import config_from_dict
    >>> folder = Path(tempfile.mkdtemp())  # doctest: +SKIP
    >>> raw = build_demo_inputs(folder, tests_per_village=2)  # doctest: +SKIP
    >>> config_from_dict(raw, base=folder).run.name  # doctest: +SKIP
    'shanxi-demo'
    """
    inputs_dir = Path(inputs_dir)
    inputs_dir.mkdir(parents=True, exist_ok=True)
    data = importlib.resources.files("ruralcov.demo_data")
    for dest, src in _REGISTER_FILES.items():
        (inputs_dir / dest).write_bytes(data.joinpath(src).read_bytes())

    register = pd.read_csv(inputs_dir / "villages.csv", dtype=str, encoding="utf-8")
    townships = pd.read_csv(inputs_dir / "townships.csv", dtype=str, encoding="utf-8")
    outlines = gpd.read_file(inputs_dir / "county_outlines.geojson").to_crs(WGS84)
    with InputWriter(inputs_dir) as writer:
        writer.add(province_layers(register, townships, outlines, shanxi(seed),
                                   tests_per_village=tests_per_village))
    return demo_config(name="shanxi-demo", provenance=DEMO_PROVENANCE.format(seed=seed))


def province_layers(
    register: pd.DataFrame,
    townships: pd.DataFrame,
    outlines: gpd.GeoDataFrame,
    province: Province,
    *,
    tests_per_village: float,
) -> Layers:
    """The synthetic layers of one province, drawn from the province's own random streams.

    Parameters
    ----------
    register, townships
        The province's village-level units and townships (the register's CSV columns).
    outlines
        Its county outlines in EPSG:4326, with a 6-digit ``code``; a county without one
        keeps its villages in the register, without geometry.
    province
        How to draw (:func:`shanxi`, or one province of the national world).
    tests_per_village
        Mean number of speed tests per village with a polygon (overdispersed counts).

    Returns
    -------
    Layers
        Every synthetic layer; the same arguments give the same layers.
    """
    if tests_per_village <= 0:
        raise ValueError(f"tests_per_village must be positive, got {tests_per_village!r}")
    rng = province.stream()
    world = _build_geometry(register, townships, outlines, rng, province)
    fibre = _build_fibre(world, rng, province)
    tests = _build_speedtests(world, fibre.is_fibre, rng, tests_per_village, province)
    # The later layers draw from their own streams: changing one leaves the files above as
    # they are.
    earlier = _earlier_quarter(tests, fibre.is_fibre, province.stream(1))
    capability = _build_capability(world, fibre.is_fibre, province.stream(2), province)
    to_wgs = _transformer(province.metric_crs, WGS84)
    return Layers(
        townships=world.townships,
        villages=world.villages,
        access_points=_points_wgs84(fibre.access_points, to_wgs),
        routes=_routes_wgs84(fibre.routes, to_wgs),
        fibre_table=fibre.table,
        tests=tests.drop(columns="_village"),
        earlier=earlier.drop(columns="_village"),
        capability=capability,
    )


class InputWriter:
    """Writes the layers of one province or more, one after the other, into the demo files.

    The first province creates each file, the next ones append to it (GeoPackage layers,
    CSV rows, Parquet row groups), so a national world never holds more than one province
    in memory. Use it as a context manager: the Parquet files are finished on exit.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._parquet: dict[str, pq.ParquetWriter] = {}
        self._started: set[str] = set()
        self._pinned = _pinned_gpkg_date()

    def __enter__(self) -> InputWriter:
        self._pinned.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            for writer in self._parquet.values():
                writer.close()
            for name, layer, kind in _GPKG_FILES:
                if name not in self._started:  # no province had any: an empty layer
                    _write_gpkg(gpd.GeoDataFrame(geometry=[], crs=WGS84), self.folder / name,
                                layer, geometry_type=kind)
        finally:
            self._pinned.__exit__(*exc)

    def add(self, layers: Layers) -> None:
        """Write (or append) the layers of one province."""
        self._gpkg("township_polygons.gpkg", _polygons(layers.townships))
        self._gpkg("village_polygons.gpkg", _polygons(layers.villages))
        self._gpkg("fibre_access_points.gpkg", layers.access_points)
        self._gpkg("fibre_routes.gpkg", layers.routes)
        self._csv("fibre_register.csv", layers.fibre_table)
        self._parquet_rows("speedtests.parquet", layers.tests)
        self._parquet_rows("speedtests_2020q1.parquet", layers.earlier)
        self._csv("capability.csv", layers.capability)

    def _gpkg(self, name: str, gdf: gpd.GeoDataFrame) -> None:
        if gdf.empty:
            return
        layer = next(layer for file, layer, _ in _GPKG_FILES if file == name)
        _write_gpkg(gdf, self.folder / name, layer, append=name in self._started)
        self._started.add(name)

    def _csv(self, name: str, frame: pd.DataFrame) -> None:
        first = name not in self._started
        frame.to_csv(self.folder / name, index=False, encoding="utf-8", header=first,
                     mode="w" if first else "a")
        self._started.add(name)

    def _parquet_rows(self, name: str, frame: pd.DataFrame) -> None:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if name not in self._parquet:
            self._parquet[name] = pq.ParquetWriter(self.folder / name, table.schema)
        self._parquet[name].write_table(table)


#: The GeoPackages of the demo inputs: file, layer, geometry type.
_GPKG_FILES = (
    ("township_polygons.gpkg", "townships", "MultiPolygon"),
    ("village_polygons.gpkg", "villages", "MultiPolygon"),
    ("fibre_access_points.gpkg", "access_points", "Point"),
    ("fibre_routes.gpkg", "routes", "LineString"),
)


def demo_config(*, name: str, provenance: str) -> dict[str, Any]:
    """The configuration of the demo inputs :class:`InputWriter` writes, in the shape of a
    parsed TOML file (paths relative to the inputs folder).

    Parameters
    ----------
    name, provenance
        ``[run] name`` and ``[run] provenance``.

    Returns
    -------
    dict
        Load it with ``ruralcov.config.config_from_dict(raw, base=inputs_dir)``.
    """
    return {
        "run": {"name": name, "profile": "shanxi-2020", "provenance": provenance},
        "villages": {
            "path": "villages.csv",
            "code": "code",
            "name": "name",
            "register": "cn-nbs",
            "encoding": "utf-8",
            "names": {
                "township": "townships.csv",
                "county": "counties.csv",
                "city": "cities.csv",
                "province": "province.csv",
            },
        },
        "boundaries": {"path": "village_polygons.gpkg", "layer": "villages", "code": "code"},
        "fibre": [
            {
                "path": "fibre_register.csv",
                "kind": "table",
                "code": "village_code",
                "value": "has_fibre",
            },
            {
                "path": "fibre_access_points.gpkg",
                "layer": "access_points",
                "kind": "access_points",
                "id": "asset_id",
                "status": "status",
                "operational": ["operational", "in_service"],
                "max_distance_m": MAX_DISTANCE_M,
                "nearby_m": NEARBY_M,
            },
            {
                "path": "fibre_routes.gpkg",
                "layer": "routes",
                "kind": "routes",
                "id": "route_id",
                "status": "status",
                "nearby_m": NEARBY_M,
            },
        ],
        "speed": [{
            "periods": {"2020Q1": "speedtests_2020q1.parquet", "2020Q2": "speedtests.parquet"},
            "kind": "tests",
            "lon": "lon",
            "lat": "lat",
            "download": "download_mbps",
            "upload": "upload_mbps",
            "latency": "latency_ms",
            "device": "device_id",
            "min_tests": 5,
            "min_devices": 3,
            "crs": WGS84,
        }, {
            "path": "capability.csv",
            "kind": "capability",
            "code": "village_code",
            "download": "download_mbps",
            "upload": "upload_mbps",
            "technology": "technology",
            "provider": "provider",
        }],
        "maps": {"enabled": True},
    }


# --------------------------------------------------------------------------------------------
# Geometry: townships partition their county, villages partition their township.


class _World:
    """The register with synthetic polygons, in EPSG:4326 and in the province's metric CRS."""

    def __init__(self, villages: pd.DataFrame, townships: pd.DataFrame) -> None:
        #: One row per register village: code, name, township, county, kind, geometry_wgs84
        #: and geometry (Province.metric_crs); both None when the county has no outline.
        self.villages = villages
        #: One row per township cell: code, county, plane (cut geometry), geometry_wgs84.
        self.townships = townships


def _build_geometry(
    register: pd.DataFrame,
    townships: pd.DataFrame,
    outlines: gpd.GeoDataFrame,
    rng: np.random.Generator,
    province: Province,
) -> _World:
    # The cells are cut in a plane that is a pure scaling of lon/lat (Province.plane_scale,
    # within 5 % of true metres across a province of Shanxi's size): straight
    # edges there are straight edges in EPSG:4326, so the cells written in EPSG:4326 partition
    # exactly. Cut in UTM, a long edge of one cell would bow by up to a metre against the
    # neighbour's edge when written as lon/lat, and points would fall into two villages.
    scale = np.array(province.plane_scale)
    plane = shapely.transform(outlines.geometry.to_numpy(), lambda c: c * scale)
    outline_by_county = dict(zip(outlines["code"], plane, strict=True))
    village_codes = register.groupby("streetCode", sort=True)["code"].apply(list).to_dict()
    township_rows: list[tuple[str, str, Any]] = []
    village_geom: dict[str, Any] = {}
    for county, group in townships.sort_values("code").groupby("areaCode", sort=True):
        outline = outline_by_county.get(county)
        if outline is None:
            continue  # development zone without an outline: register only
        codes = group["code"].tolist()
        cells = _partition(outline, len(codes), rng)
        for tcode, cell in zip(codes, cells, strict=True):
            township_rows.append((tcode, county, cell))
            vcodes = village_codes.get(tcode, [])
            if vcodes:
                vcells = _partition(cell, len(vcodes), rng)
                village_geom.update(zip(vcodes, vcells, strict=True))

    to_metric = _transformer(WGS84, province.metric_crs)
    tdf = pd.DataFrame(township_rows, columns=["code", "county", "plane"])
    tdf["geometry_wgs84"] = _plane_to_wgs84(tdf["plane"].to_numpy(), scale)
    vdf = pd.DataFrame(
        {
            "code": register["code"].to_numpy(),
            "name": register["name"].to_numpy(),
            "township": register["streetCode"].to_numpy(),
            "county": register["areaCode"].to_numpy(),
            "kind": cn_nbs_kind(register["name"]).to_numpy(),
        }
    )
    plane_geoms = np.array([village_geom.get(c) for c in vdf["code"]], dtype=object)
    has = pd.notna(plane_geoms)
    wgs = np.full(len(vdf), None, dtype=object)
    wgs[has] = _plane_to_wgs84(plane_geoms[has], scale)
    metric = np.full(len(vdf), None, dtype=object)
    metric[has] = _project(wgs[has], to_metric)
    vdf["geometry_wgs84"] = wgs
    vdf["geometry"] = metric  # Province.metric_crs, for distances (fibre evidence)
    return _World(vdf, tdf)


def _partition(region: Any, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` cells partitioning ``region``: Voronoi cells of random seeds, clipped and relaxed."""
    if n == 1:
        return np.array([region], dtype=object)
    shapely.prepare(region)
    seeds = _sample_in(np.array([region]), np.array([n]), rng)
    cells = np.empty(0, dtype=object)
    for iteration in range(_LLOYD_ITERATIONS + 1):
        seeds = _distinct(seeds, region)
        diagram = shapely.voronoi_polygons(
            shapely.multipoints(seeds), extend_to=region, ordered=True
        )
        cells = shapely.intersection(shapely.get_parts(diagram), region)
        if iteration == _LLOYD_ITERATIONS:
            break
        # Lloyd step: move each seed to its cell's centroid, or onto the cell when the
        # centroid of a concave cell falls outside the region.
        centroids = shapely.centroid(cells)
        centroids = np.column_stack([shapely.get_x(centroids), shapely.get_y(centroids)])
        inside = shapely.contains_xy(region, centroids[:, 0], centroids[:, 1])
        if not inside.all():
            centroids[~inside] = shapely.get_coordinates(shapely.point_on_surface(cells[~inside]))
        seeds = centroids
    return _polygonal(cells)


def _distinct(seeds: np.ndarray, region: Any) -> np.ndarray:
    """``seeds`` with every repeated point moved apart on a spiral of metre steps, and a seed
    of an empty cell (NaN) put on the region: Voronoi cells need distinct points, and a sliver
    of a township that rejection sampling keeps missing gives several seeds one point."""
    lost = np.isnan(seeds).any(axis=1)
    if lost.any():
        seeds = seeds.copy()
        seeds[lost] = shapely.get_coordinates(shapely.point_on_surface(region))
    order = np.lexsort((seeds[:, 1], seeds[:, 0]))
    repeated = np.zeros(len(seeds), dtype=bool)
    repeated[order[1:]] = (np.diff(seeds[order], axis=0) == 0).all(axis=1)
    if not repeated.any():
        return seeds
    k = np.arange(1, int(repeated.sum()) + 1)
    angle = k * 2.399963  # the golden angle: no two steps of the spiral meet
    seeds = seeds.copy()
    seeds[repeated] += np.sqrt(k)[:, None] * np.column_stack([np.cos(angle), np.sin(angle)])
    return seeds


def _polygonal(geoms: np.ndarray) -> np.ndarray:
    """Keep only the polygonal part of each geometry, made valid (Polygon or MultiPolygon)."""
    geoms = np.asarray(geoms, dtype=object).copy()
    bad = ~shapely.is_valid(geoms)
    if bad.any():
        geoms[bad] = shapely.make_valid(geoms[bad])
    types = shapely.get_type_id(geoms)
    for i in np.flatnonzero((types != 3) & (types != 6)):
        parts = [
            p for p in shapely.get_parts(geoms[i]) if p.geom_type in ("Polygon", "MultiPolygon")
        ]
        polys = [q for p in parts for q in shapely.get_parts(p)]
        geoms[i] = polys[0] if len(polys) == 1 else shapely.MultiPolygon(polys)
    return geoms


def _sample_in(geoms: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Uniform random points inside each geometry (``counts[i]`` points in ``geoms[i]``).

    Rejection sampling from each bounding box, vectorised over all points; returns an
    ``(sum(counts), 2)`` array in the order of ``geoms``.
    """
    shapely.prepare(geoms)
    idx = np.repeat(np.arange(len(geoms)), counts)
    bounds = shapely.bounds(geoms)[idx]
    xy = np.empty((len(idx), 2))
    todo = np.arange(len(idx))
    for _ in range(60):
        if todo.size == 0:
            break
        b = bounds[todo]
        x = b[:, 0] + rng.random(todo.size) * (b[:, 2] - b[:, 0])
        y = b[:, 1] + rng.random(todo.size) * (b[:, 3] - b[:, 1])
        ok = shapely.contains_xy(geoms[idx[todo]], x, y)
        xy[todo[ok], 0] = x[ok]
        xy[todo[ok], 1] = y[ok]
        todo = todo[~ok]
    if todo.size:  # slivers that rejection sampling keeps missing
        xy[todo] = shapely.get_coordinates(shapely.point_on_surface(geoms[idx[todo]]))
    return xy


def _transformer(src: str, dst: str) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(src, dst, always_xy=True)


def _plane_to_wgs84(geoms: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return _polygonal(shapely.transform(np.asarray(geoms, dtype=object), lambda c: c / scale))


def _project(geoms: np.ndarray, transformer: pyproj.Transformer) -> np.ndarray:
    return shapely.transform(
        np.asarray(geoms, dtype=object),
        lambda c: np.column_stack(transformer.transform(c[:, 0], c[:, 1])),
    )


@contextmanager
def _pinned_gpkg_date() -> Iterator[None]:
    previous = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": _GPKG_DATE})
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": previous})


def _polygons(frame: pd.DataFrame) -> gpd.GeoDataFrame:
    has = frame["geometry_wgs84"].notna().to_numpy()
    return gpd.GeoDataFrame(
        {"code": frame.loc[has, "code"].to_numpy()},
        geometry=frame.loc[has, "geometry_wgs84"].to_numpy(),
        crs=WGS84,
    )


def _write_gpkg(
    gdf: gpd.GeoDataFrame, path: Path, layer: str, *, append: bool = False, **kwargs: Any
) -> None:
    if path.exists() and not append:
        os.remove(path)
    pyogrio.write_dataframe(gdf, path, layer=layer, driver="GPKG", append=append, **kwargs)


# --------------------------------------------------------------------------------------------
# Fibre: access points, routes and an operator's claimed list.


class _Fibre:
    def __init__(
        self,
        access_points: pd.DataFrame,
        routes: pd.DataFrame,
        table: pd.DataFrame,
        is_fibre: np.ndarray,
    ) -> None:
        self.access_points = access_points
        self.routes = routes
        self.table = table
        #: Per register village (aligned to ``_World.villages``): fibre as the analysis should
        #: find it (claimed in the table, or an operational access point within 500 m).
        self.is_fibre = is_fibre


def _build_fibre(world: _World, rng: np.random.Generator, province: Province) -> _Fibre:
    """Access points, routes and a claimed list that give the analysis every case to show.

    The steps draw from ``rng`` in a fixed order (a seed writes the same files), so they are
    called in this order only.
    """
    v = world.villages
    planned_fibre, counties, admin_n = _fibre_villages(v, rng)
    groups = _evidence_groups(v, planned_fibre, rng)
    ap_xy = _place_access_points(v, groups, rng, province)
    ap, planned_xy, olt_of_township = _access_points(v, groups, ap_xy, counties, rng)
    ends = _route_ends(v, groups, ap_xy, planned_xy, olt_of_township, rng)
    routes = _routes(v, groups, ends, rng, province.route_clear_m)
    # Away from the other provinces (a national world), then numbered.
    ap = _clear_of(ap, shapely.points(ap[["x", "y"]].to_numpy()), province.border,
                   province.ap_clear_m)
    routes = _clear_of(routes, routes["geometry"].to_numpy(), province.border,
                       province.route_clear_m)
    ap.insert(0, "asset_id", _numbered(f"AP-{province.prefix}", len(ap)))
    routes.insert(0, "route_id", _numbered(f"RT-{province.prefix}", len(routes)))
    by_ap = _near_operational_point(v, ap)
    table, is_fibre = _claimed_list(v, counties, admin_n, groups.planned, by_ap, rng)
    return _Fibre(ap, routes, table, is_fibre)


def _clear_of(frame: pd.DataFrame, geoms: np.ndarray, border: Any, reach: float) -> pd.DataFrame:
    """The rows of ``frame`` whose geometry lies farther than ``reach`` from every polygon of
    ``border``."""
    if border is None or len(frame) == 0 or len(border) == 0:
        return frame
    near = shapely.STRtree(border).query(
        np.asarray(geoms, dtype=object), predicate="dwithin", distance=reach
    )[0]
    keep = np.ones(len(frame), dtype=bool)
    keep[near] = False
    return frame[keep].reset_index(drop=True)


def _numbered(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:06d}" for i in range(1, n + 1)]


def _fibre_villages(
    v: pd.DataFrame, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which villages get fibre, their counties and each county's administrative villages.

    Per county a fibre rate; about 30 % of counties (weighted towards large villages, i.e.
    mountain counties) fall short of the 98 % target.
    """
    n = len(v)
    has_geom = v["geometry"].notna().to_numpy()
    kind = v["kind"].to_numpy()
    county = v["county"].to_numpy()
    geoms = v["geometry"].to_numpy()
    planned_fibre = np.zeros(n, dtype=bool)
    counties = np.unique(county[has_geom])
    admin_n = np.array([np.sum((county == c) & (kind == "village")) for c in counties])
    area = np.array([shapely.area(geoms[has_geom & (county == c)]).sum() for c in counties])
    rural = admin_n >= 20
    weight = np.where(rural, area / np.maximum(admin_n, 1), 0.0)
    n_below = int(round(rng.uniform(0.26, 0.32) * len(counties)))
    n_below = min(n_below, int(np.count_nonzero(weight)))  # a city province: few rural counties
    below = set(
        rng.choice(counties, size=n_below, replace=False, p=weight / weight.sum())
        if n_below else []
    )
    for c, n_admin in zip(counties, admin_n, strict=True):
        members = np.flatnonzero((county == c) & has_geom)
        admin = members[kind[members] == "village"]
        need = -(-98 * n_admin // 100)  # villages needed for 98 %, exact integer arithmetic
        if c in below:
            k = min(int(n_admin * rng.uniform(0.85, 0.965)), need - 1)
        else:
            k = max(need, int(round(n_admin * rng.uniform(0.98, 1.0))))
        k = int(np.clip(k, 0, n_admin))
        planned_fibre[rng.choice(admin, size=k, replace=False)] = True
        other = members[kind[members] != "village"]
        p_other = np.where(kind[other] == "community", 0.995, 0.9)
        planned_fibre[other] = rng.random(other.size) < p_other
    return planned_fibre, counties, admin_n


@dataclass(frozen=True)
class _Evidence:
    """Register positions of the villages with a polygon, by the evidence they are given.

    Fibre villages: an operational access point inside (most) or just outside (within
    100–450 m of the polygon). Villages without fibre: a planned asset, a route passing by,
    or nothing.
    """

    fibre: np.ndarray
    inside: np.ndarray
    outside: np.ndarray
    without: np.ndarray
    planned: np.ndarray
    nearby: np.ndarray


def _evidence_groups(
    v: pd.DataFrame, planned_fibre: np.ndarray, rng: np.random.Generator
) -> _Evidence:
    """The groups of :class:`_Evidence`: 7 % of the fibre villages get their access point
    outside; of the villages without fibre, 30 % a planned asset and 35 % a route nearby."""
    has_geom = v["geometry"].notna().to_numpy()
    fib = np.flatnonzero(planned_fibre)
    outside = fib[rng.random(fib.size) < 0.07]
    non = np.flatnonzero(has_geom & ~planned_fibre)
    r = rng.random(non.size)
    return _Evidence(
        fibre=fib,
        inside=np.setdiff1d(fib, outside),
        outside=outside,
        without=non,
        planned=non[r < 0.3],
        nearby=non[(r >= 0.3) & (r < 0.65)],
    )


def _place_access_points(
    v: pd.DataFrame, groups: _Evidence, rng: np.random.Generator, province: Province
) -> np.ndarray:
    """One access point per fibre village (NaN rows for the others), never by accident within
    ``province.ap_clear_m`` (the fibre distance and a margin) of a village meant to have none
    or of another province: drawn again up to three times, then (``province.settle``) put on
    a :func:`_clear_spot`."""
    geoms = v["geometry"].to_numpy()
    fib = groups.fibre
    clear_m, settle = province.ap_clear_m, province.settle
    avoid = geoms[groups.without]
    if province.border is not None:
        avoid = np.concatenate([avoid, province.border])
    tree = shapely.STRtree(avoid)
    ap_xy = np.full((len(v), 2), np.nan)
    ap_xy[groups.inside] = _deep_points(geoms[groups.inside], rng)
    ap_xy[groups.outside] = _points_outside(geoms[groups.outside], rng)
    for _ in range(3):
        hits = _hits(tree, ap_xy[fib], clear_m)
        if not hits.any():
            break
        moved = fib[hits]
        ap_xy[moved] = _deep_points(geoms[moved], rng)
    still = fib[_hits(tree, ap_xy[fib], clear_m)] if settle else ()
    for i in still:
        ap_xy[i] = _clear_spot(geoms[i], avoid, tree, clear_m)
    return ap_xy


def _clear_spot(geom: Any, avoid: np.ndarray, tree: shapely.STRtree, clear_m: float) -> Any:
    """A point of ``geom`` beyond ``clear_m`` of every polygon of ``avoid`` (villages meant to
    have no fibre, other provinces; ``tree`` indexes them) or, when the village has none, a
    point off the band around the fibre distance where another metric CRS could put it on
    either side (from ``2 * MAX_DISTANCE_M - clear_m`` to ``clear_m``)."""
    near = avoid[tree.query(geom, predicate="dwithin", distance=clear_m)]
    reach = shapely.union_all(shapely.buffer(near, clear_m, quad_segs=4))
    band = shapely.difference(
        reach, shapely.union_all(shapely.buffer(near, 2 * MAX_DISTANCE_M - clear_m, quad_segs=4))
    )
    for free in (shapely.difference(geom, reach), shapely.difference(geom, band)):
        if not free.is_empty:
            return shapely.get_coordinates(shapely.point_on_surface(free))[0]
    return shapely.get_coordinates(shapely.point_on_surface(geom))[0]


def _access_points(
    v: pd.DataFrame,
    groups: _Evidence,
    ap_xy: np.ndarray,
    counties: np.ndarray,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, np.ndarray, dict[str, int]]:
    """The access-point table (metric ``x``, ``y``), the planned points' coordinates, and the
    village whose access point is each township's OLT (the township's first fibre village)."""
    geoms = v["geometry"].to_numpy()
    county = v["county"].to_numpy()
    placed = groups.fibre
    statuses = np.where(rng.random(placed.size) < 0.85, "operational", "in_service")
    asset_type = np.where(rng.random(placed.size) < 0.7, "terminal_box", "splitter")
    county_operator = {c: _OPERATORS[rng.choice(3, p=[0.45, 0.35, 0.2])] for c in counties}
    operator = np.array([county_operator[c] for c in county[placed]], dtype=object)
    second = rng.random(placed.size) < 0.1
    operator[second] = _OPERATORS[rng.integers(0, 3, second.sum())]

    township = v["township"].to_numpy()
    first_in_township = placed[~pd.Series(township[placed]).duplicated().to_numpy()]
    olt_of_township = dict(zip(township[first_in_township], first_in_township, strict=True))
    asset_type[np.isin(placed, first_in_township)] = "OLT"

    planned = groups.planned
    planned_xy = _sample_in(geoms[planned], np.ones(planned.size, dtype=int), rng)
    planned_status = np.where(rng.random(planned.size) < 0.55, "planned", "under_construction")
    planned_type = np.where(rng.random(planned.size) < 0.7, "terminal_box", "splitter")

    ap = pd.DataFrame(
        {
            "x": np.concatenate([ap_xy[placed, 0], planned_xy[:, 0]]),
            "y": np.concatenate([ap_xy[placed, 1], planned_xy[:, 1]]),
            "asset_type": np.concatenate([asset_type, planned_type]),
            "status": np.concatenate([statuses, planned_status]),
            "operator": np.concatenate([operator, [county_operator[c] for c in county[planned]]]),
            "village": np.concatenate([placed, planned]),
        }
    )
    ap = ap.sort_values("village", kind="stable").reset_index(drop=True)
    return ap, planned_xy, olt_of_township


def _routes(
    v: pd.DataFrame,
    groups: _Evidence,
    ends: tuple[np.ndarray, np.ndarray, np.ndarray],
    rng: np.random.Generator,
    clear_m: float,
) -> pd.DataFrame:
    """Routes with ``status`` and a bent line (metric CRS) between the :func:`_route_ends`.

    Operational routes that would pass within ``clear_m`` (1 km and a margin) of a village
    without fibre that is not meant to have fibre nearby are left out (an operator's route
    data is incomplete), so that "fibre nearby" stays a property of some gaps, not of all.
    """
    geoms = v["geometry"].to_numpy()
    a, b, status = ends
    # A bend half way, up to 15 % of the length to the side, so routes are not ruler-straight.
    mid = (a + b) / 2
    normal = np.column_stack([-(b - a)[:, 1], (b - a)[:, 0]])
    mid += normal * rng.uniform(-0.15, 0.15, size=(len(a), 1))
    lines = shapely.linestrings(np.stack([a, mid, b], axis=1))
    quiet = np.setdiff1d(groups.without, groups.nearby)
    near_quiet = shapely.STRtree(geoms[quiet]).query(
        lines, predicate="dwithin", distance=clear_m
    )[0]
    drop = np.zeros(len(lines), dtype=bool)
    drop[near_quiet] = True
    keep = ~(drop & (status == "operational")) & ~np.isnan(a).any(axis=1)
    return pd.DataFrame({"status": status[keep], "geometry": lines[keep]})


def _route_ends(
    v: pd.DataFrame,
    groups: _Evidence,
    ap_xy: np.ndarray,
    planned_xy: np.ndarray,
    olt_of_township: dict[str, int],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start and end points and status of every route.

    A feeder from the township OLT to each access point; a trunk from each township OLT to
    the county's first OLT; a short operational route from the nearest access point into
    some villages without fibre (fibre nearby, no access point); planned routes to some
    planned access points. A route without an access point to start from starts at NaN.
    """
    geoms = v["geometry"].to_numpy()
    township = v["township"].to_numpy()
    placed = groups.fibre
    county_olt: dict[str, int] = {}
    for t, i in sorted(olt_of_township.items()):
        county_olt.setdefault(t[:6], i)
    feeders = np.array([i for i in placed if olt_of_township[township[i]] != i], dtype=int)
    origin = np.array([olt_of_township[township[i]] for i in feeders], dtype=int)
    trunk_from = np.array(sorted(olt_of_township.values()), dtype=int)
    trunk_to = np.array([county_olt[township[i][:6]] for i in trunk_from], dtype=int)
    trunk = trunk_from != trunk_to
    starts = [ap_xy[origin], ap_xy[trunk_to[trunk]]]
    ends = [ap_xy[feeders], ap_xy[trunk_from[trunk]]]
    route_status = [np.full(feeders.size, "operational"), np.full(int(trunk.sum()), "operational")]
    ap_tree = shapely.STRtree(shapely.points(ap_xy[placed]))
    nearby_end = _sample_in(geoms[groups.nearby], np.ones(groups.nearby.size, dtype=int), rng)
    with_route = rng.random(groups.planned.size) < 0.5
    for end, status in ((nearby_end, "operational"), (planned_xy[with_route], "planned")):
        nearest = ap_tree.query_nearest(shapely.points(end), all_matches=False)
        start = np.full_like(end, np.nan)
        start[nearest[0]] = ap_xy[placed[nearest[1]]]
        starts.append(start)
        ends.append(end)
        route_status.append(np.full(len(end), status))
    return np.concatenate(starts), np.concatenate(ends), np.concatenate(route_status)


def _near_operational_point(v: pd.DataFrame, ap: pd.DataFrame) -> np.ndarray:
    """Per register village: an operational access point within 500 m, as the analysis will
    find it."""
    has_geom = v["geometry"].notna().to_numpy()
    operational = ap["status"].isin(["operational", "in_service"]).to_numpy()
    ap_points = shapely.points(ap.loc[operational, ["x", "y"]].to_numpy())
    vtree = shapely.STRtree(v["geometry"].to_numpy()[has_geom])
    pairs = vtree.query(ap_points, predicate="dwithin", distance=MAX_DISTANCE_M)
    by_ap = np.zeros(len(v), dtype=bool)
    by_ap[np.flatnonzero(has_geom)[pairs[1]]] = True
    return by_ap


def _claimed_list(
    v: pd.DataFrame,
    counties: np.ndarray,
    admin_n: np.ndarray,
    planned: np.ndarray,
    by_ap: np.ndarray,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, np.ndarray]:
    """The operator's claimed list for two rural counties, and fibre as the analysis should
    find it with that list.

    The list is mostly right, with planned villages claimed as done, a few fibre villages
    missing, and one code that is not in the register (a typo).
    """
    county = v["county"].to_numpy()
    rural_counties = counties[admin_n >= 100]
    claimed = sorted(rng.choice(rural_counties, size=min(2, rural_counties.size), replace=False))
    rows = np.flatnonzero(np.isin(county, claimed) & (v["kind"].to_numpy() == "village"))
    has_fibre = by_ap[rows].copy()
    planned_claim = np.isin(rows, planned) & (rng.random(rows.size) < 0.5)
    missing = has_fibre & (rng.random(rows.size) < 0.02)
    has_fibre[planned_claim] = True
    has_fibre[missing] = False
    codes = v["code"].to_numpy()[rows].tolist()
    values = np.where(has_fibre, "yes", "no").tolist()
    if codes:
        codes.append(codes[len(codes) // 2][:9] + "999")  # the typo
        values.append("yes")
    table = pd.DataFrame({"village_code": codes, "has_fibre": values})
    is_fibre = by_ap.copy()
    is_fibre[rows[has_fibre]] = True
    return table, is_fibre


def _hits(tree: shapely.STRtree, xy: np.ndarray, clear_m: float) -> np.ndarray:
    """Which points lie within ``clear_m`` of a village meant to have no fibre."""
    hits = np.zeros(len(xy), dtype=bool)
    pairs = tree.query(shapely.points(xy), predicate="dwithin", distance=clear_m)
    hits[pairs[0]] = True
    return hits


def _deep_points(geoms: np.ndarray, rng: np.random.Generator, candidates: int = 6) -> np.ndarray:
    """One point per polygon, the deepest of a few random candidates (away from neighbours)."""
    xy = _sample_in(geoms, np.full(len(geoms), candidates), rng).reshape(len(geoms), candidates, 2)
    depth = shapely.distance(
        shapely.boundary(np.repeat(geoms, candidates)).reshape(len(geoms), candidates),
        shapely.points(xy),
    )
    best = np.argmax(depth, axis=1)
    return xy[np.arange(len(geoms)), best]


def _points_outside(geoms: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One point per polygon at 100–450 m outside its boundary."""
    dist = rng.uniform(100.0, 450.0, len(geoms))
    rings = shapely.boundary(shapely.buffer(geoms, dist, quad_segs=4))
    rings = np.array(
        [shapely.get_geometry(r, 0) if shapely.get_num_geometries(r) > 1 else r for r in rings]
    )
    return shapely.get_coordinates(
        shapely.line_interpolate_point(rings, rng.random(len(geoms)), normalized=True)
    )


def _points_wgs84(ap: pd.DataFrame, to_wgs: pyproj.Transformer) -> gpd.GeoDataFrame:
    lon, lat = to_wgs.transform(ap["x"].to_numpy(), ap["y"].to_numpy())
    return gpd.GeoDataFrame(
        ap[["asset_id", "asset_type", "status", "operator"]].astype(str),
        geometry=shapely.points(np.column_stack([lon, lat])),
        crs=WGS84,
    )


def _routes_wgs84(routes: pd.DataFrame, to_wgs: pyproj.Transformer) -> gpd.GeoDataFrame:
    lines = _project(routes["geometry"].to_numpy(), to_wgs)
    return gpd.GeoDataFrame(routes[["route_id", "status"]].astype(str), geometry=lines, crs=WGS84)


# --------------------------------------------------------------------------------------------
# Speed tests.


def _build_speedtests(
    world: _World,
    is_fibre: np.ndarray,
    rng: np.random.Generator,
    tests_per_village: float,
    province: Province,
) -> pd.DataFrame:
    v = world.villages
    has_geom = np.flatnonzero(v["geometry"].notna().to_numpy())
    m = has_geom.size
    # Overdispersed counts: negative binomial with shape 5 (variance = mean + mean² / 5); with
    # the device shares below, about 6–7 % of villages have too little evidence at 16 tests.
    shape = 5.0
    n_tests = rng.negative_binomial(shape, shape / (shape + tests_per_village), m)
    share = rng.uniform(0.4, 0.8, m)
    n_dev = np.clip(np.rint(n_tests * share), 1, None).astype(int)
    lone = rng.random(m) < 0.02  # one household's line tested again and again
    n_dev[lone] = rng.integers(1, 3, lone.sum())
    n_dev = np.minimum(n_dev, np.maximum(n_tests, 1))

    fibre = is_fibre[has_geom]
    community = v["kind"].to_numpy()[has_geom] == "community"
    median = np.where(
        fibre,
        np.exp(rng.uniform(math.log(50), math.log(150), m)),
        rng.uniform(3.0, 15.0, m),
    )
    fast = fibre & community
    median[fast] = np.exp(rng.normal(math.log(170), 0.35, fast.sum()))
    slow_fibre = fibre & ~community & (rng.random(m) < 0.02)  # congested splitters, old modems
    median[slow_fibre] = rng.uniform(7.0, 14.0, slow_fibre.sum())
    up_ratio = np.where(fibre, rng.uniform(0.25, 0.6, m), rng.uniform(0.08, 0.2, m))
    latency = np.where(fibre, rng.uniform(8.0, 20.0, m), rng.uniform(25.0, 60.0, m))

    vi = np.repeat(np.arange(m), n_tests)
    total = vi.size
    xy = _sample_in(v["geometry_wgs84"].to_numpy()[has_geom], n_tests, rng)
    sigma = np.where(fibre[vi], 0.45, 0.35)
    download = median[vi] * np.exp(rng.normal(0.0, 1.0, total) * sigma)
    upload = download * up_ratio[vi] * np.exp(rng.normal(0.0, 0.2, total))
    lat_ms = latency[vi] * np.exp(rng.normal(0.0, 0.4, total))

    # Devices: the first tests of a village use distinct devices, the rest reuse them.
    first = np.concatenate([[0], np.cumsum(n_tests)[:-1]])
    rank = np.arange(total) - first[vi]
    local = np.where(rank < n_dev[vi], rank, rng.integers(0, 1 << 30, total) % n_dev[vi])
    dev_base = np.concatenate([[0], np.cumsum(n_dev)[:-1]])
    device_number = rng.permutation(int(n_dev.sum()))[dev_base[vi] + local]
    device = np.char.add(f"dev-{province.prefix}", np.char.zfill(device_number.astype(str), 7))

    # The headline quarter, 2020Q2 (91 days from 1 April). The draw spans a year and is folded
    # into the quarter: a draw of another range would take other numbers from the generator
    # and change every value drawn after it.
    start = np.datetime64("2020-04-01T00:00:00", "s")
    seconds = rng.integers(0, 366 * 86400, total) % (91 * 86400)
    frame = pd.DataFrame(
        {
            "lon": xy[:, 0],
            "lat": xy[:, 1],
            "download_mbps": np.round(download, 2),
            "upload_mbps": np.round(upload, 2),
            "latency_ms": np.round(lat_ms, 1),
            "device_id": device.astype(object),
            "test_time": start + seconds.astype("timedelta64[s]"),
            "_village": has_geom[vi],  # register row; dropped before writing
        }
    )
    frame = pd.concat([frame, _bad_tests(frame, rng, province.outside)], ignore_index=True)
    frame = frame.sort_values(["test_time", "device_id"], kind="stable").reset_index(drop=True)
    frame["test_time"] = frame["test_time"].astype("datetime64[ms]").dt.tz_localize("UTC")
    return frame


def _earlier_quarter(
    tests: pd.DataFrame, is_fibre: np.ndarray, rng: np.random.Generator
) -> pd.DataFrame:
    """2020Q1 from the 2020Q2 tests: 85 % of the rows, 91 days earlier, and in about one fibre
    village in eight every download at a fifth (before a splitter upgrade), so that the
    trend has villages that moved from below to meets. Bad rows come along as they are."""
    keep = rng.random(len(tests)) < 0.85
    frame = tests[keep].reset_index(drop=True)
    upgraded = is_fibre & (rng.random(is_fibre.size) < 0.125)
    slow = upgraded[frame["_village"].to_numpy()] & (frame["download_mbps"] > 0)
    frame.loc[slow, "download_mbps"] = np.round(frame.loc[slow, "download_mbps"] / 5, 2)
    frame["test_time"] = frame["test_time"] - pd.Timedelta(days=91)
    return frame


def _build_capability(
    world: _World, is_fibre: np.ndarray, rng: np.random.Generator, province: Province
) -> pd.DataFrame:
    """Declared access capability, one row per village and provider: most fibre villages have
    FTTH records from one to three operators (100–1000 Mbps), some have none; a quarter of the
    villages without fibre have fixed wireless (20–50 Mbps, meets the 12 Mbps target), a
    quarter old ADSL (4 or 8 Mbps), the rest nothing. A few bad rows (unknown code, negative
    download, no code) show how they are reported."""
    v = world.villages
    n = len(v)
    codes = v["code"].to_numpy()
    u = rng.random(n)
    record = np.where(is_fibre, u < 0.9, u < 0.5)
    tech = np.where(is_fibre, "FTTH", np.where(u < 0.25, "FWA", "ADSL"))
    n_prov = np.where(record, np.where(is_fibre, rng.integers(1, 4, n), 1), 0)
    idx = np.repeat(np.arange(n), n_prov)
    k = idx.size
    ftth = rng.choice([100.0, 200.0, 300.0, 500.0, 1000.0], k)
    fwa = np.round(rng.uniform(20.0, 50.0, k), 0)
    adsl = rng.choice([4.0, 8.0], k)
    t = tech[idx]
    down = np.where(t == "FTTH", ftth, np.where(t == "FWA", fwa, adsl))
    up = np.where(t == "FTTH", down / 5, np.where(t == "FWA", down / 4, 0.5))
    first = np.concatenate([[0], np.cumsum(n_prov)[:-1]])
    rank = np.arange(k) - first[idx]
    provider = _OPERATORS[(rng.integers(0, 3, n)[idx] + rank) % 3]
    frame = pd.DataFrame({"village_code": codes[idx].astype(object), "provider": provider,
                          "technology": t, "download_mbps": down, "upload_mbps": up})
    bad = pd.DataFrame({
        "village_code": [*(f"{province.code}999999999{d}" for d in "987"), codes[0], codes[1],
                         None],
        "provider": _OPERATORS[[0, 1, 2, 0, 1, 2]],
        "technology": ["FTTH"] * 6,
        "download_mbps": [100.0, 100.0, 100.0, -100.0, -1.0, 100.0],
        "upload_mbps": [20.0] * 6,
    })
    return pd.concat([frame, bad], ignore_index=True)


def _bad_tests(
    frame: pd.DataFrame, rng: np.random.Generator, outside: tuple[tuple[float, ...], ...]
) -> pd.DataFrame:
    """About 0.1 % extra rows the analysis must report: negative speed, no coordinates,
    or a place outside every village (in the boxes ``outside`` and at (0, 0))."""
    n_bad = max(9, round(0.001 * len(frame)))
    bad = frame.iloc[rng.choice(len(frame), n_bad, replace=False)].copy().reset_index(drop=True)
    third = n_bad // 3
    bad.loc[: third - 1, "download_mbps"] = -bad.loc[: third - 1, "download_mbps"]
    bad.loc[third : 2 * third - 1, ["lon", "lat"]] = np.nan
    rest = np.arange(2 * third, n_bad)
    boxes = np.array(outside)
    box = boxes[rng.integers(0, len(boxes), rest.size)]
    bad.loc[rest, "lon"] = box[:, 0] + rng.random(rest.size) * (box[:, 2] - box[:, 0])
    bad.loc[rest, "lat"] = box[:, 1] + rng.random(rest.size) * (box[:, 3] - box[:, 1])
    bad.loc[rest[:2], ["lon", "lat"]] = 0.0
    return bad
