"""Coordinate reference systems: parsing user CRS text, China's GCJ-02/BD-09 offsets, metric CRS.

Chinese web maps (AMap/Gaode, Tencent, Google in China) publish coordinates in GCJ-02, an
obfuscated WGS84 with a position-dependent offset of a few hundred metres; Baidu adds a second
offset on top (BD-09). Neither is an EPSG CRS, so files carrying them usually *declare*
EPSG:4326 while their points lie 300-600 m away from the truth. Configuration therefore names
them as ``crs = "gcj02"`` / ``"bd09"`` and this module converts them back to WGS84 with the
published formulas (Krasovsky ellipsoid constants), vectorised with numpy.

Areas and distances are never computed in degrees: :func:`metric_crs` picks a local UTM zone or
an equal-area CRS for the extent of the data.

The converters take longitudes and latitudes in degrees, scalars or arrays (broadcast
together), and return a ``(longitudes, latitudes)`` pair of arrays.
"""

from __future__ import annotations

from collections.abc import Callable

import geopandas as gpd
import numpy as np
import pyproj
import shapely
from numpy.typing import ArrayLike, NDArray
from pyproj.aoi import AreaOfInterest
from pyproj.database import query_utm_crs_info

from ruralcov.errors import CRSError

__all__ = [
    "OFFSET_CRS",
    "bd09_to_gcj02",
    "bd09_to_wgs84",
    "gcj02_to_bd09",
    "gcj02_to_wgs84",
    "metric_crs",
    "parse_crs",
    "shift_geometries",
    "to_wgs84",
    "wgs84_to_bd09",
    "wgs84_to_gcj02",
]

#: The offset "CRS" names accepted in configuration, as returned by :func:`parse_crs`.
OFFSET_CRS: tuple[str, ...] = ("gcj02", "bd09")

Coords = tuple[NDArray[np.float64], NDArray[np.float64]]
CoordFunc = Callable[[ArrayLike, ArrayLike], Coords]

# Krasovsky 1940 ellipsoid, as used by the published GCJ-02 algorithm.
_A = 6378245.0
_EE = 0.00669342162296594323
# BD-09 rotates/scales GCJ-02 with this angular factor.
_X_PI = np.pi * 3000.0 / 180.0
# The inverses are solved by fixed-point iteration; the forward maps are contractions close to
# the identity (offset gradients ~1e-3), so each step gains about three digits.
_TOL_DEG = 1e-10
_MAX_ITER = 30
# The rough bounding box used by the published algorithm: outside it GCJ-02 equals WGS84.
_CHINA_BBOX = (72.004, 0.8293, 137.8347, 55.8271)
# UTM keeps scale error under ~0.1 % within a zone and its neighbours' edges; beyond ~6 degrees
# of longitude an equal-area azimuthal CRS distorts distances less.
_UTM_MAX_WIDTH_DEG = 6.0


def parse_crs(text: str | pyproj.CRS | None) -> pyproj.CRS | str | None:
    """Parse a CRS setting into a :class:`pyproj.CRS`, ``"gcj02"`` or ``"bd09"``.

    GCJ-02 and BD-09 are returned as strings because they are offsets applied to WGS84, not
    CRSs that PROJ knows.

    Parameters
    ----------
    text
        Anything :meth:`pyproj.CRS.from_user_input` accepts (``"EPSG:4326"``, WKT, PROJ
        string), or ``"gcj02"``/``"GCJ-02"``/``"bd09"``/``"BD-09"`` in any case.
        ``None`` or an empty string means "not set".

    Returns
    -------
    pyproj.CRS or str or None
        The CRS, ``"gcj02"`` or ``"bd09"``, or None when not set.

    Raises
    ------
    CRSError
        If the text is not a CRS PROJ can interpret.

    Examples
    --------
    >>> parse_crs("GCJ-02")
    'gcj02'
    >>> parse_crs("EPSG:4326").to_epsg()
    4326
    """
    if text is None:
        return None
    if isinstance(text, pyproj.CRS):
        return text
    stripped = str(text).strip()
    if not stripped:
        return None
    key = stripped.lower().replace("-", "").replace("_", "").replace(" ", "")
    if key in OFFSET_CRS:
        return key
    try:
        return pyproj.CRS.from_user_input(stripped)
    except pyproj.exceptions.CRSError as exc:
        raise CRSError(
            f'unknown CRS {stripped!r}: use an EPSG code such as "EPSG:4326" (longitude/'
            f'latitude) or "EPSG:4549" (CGCS2000 / 3-degree Gauss-Kruger), a WKT or PROJ '
            f'string, or "gcj02" / "bd09" for coordinates taken from AMap or Baidu maps'
        ) from exc


def _arrays(lon: ArrayLike, lat: ArrayLike) -> Coords:
    x = np.asarray(lon, dtype=np.float64)
    y = np.asarray(lat, dtype=np.float64)
    return np.broadcast_arrays(x, y)  # type: ignore[return-value]


def _outside_china(lon: NDArray[np.float64], lat: NDArray[np.float64]) -> NDArray[np.bool_]:
    west, south, east, north = _CHINA_BBOX
    return (lon < west) | (lon > east) | (lat < south) | (lat > north)


def _gcj02_offset(lon: NDArray[np.float64], lat: NDArray[np.float64]) -> Coords:
    """The published GCJ-02 offset (degrees) at WGS84 ``(lon, lat)``; zero outside China."""
    x = lon - 105.0
    y = lat - 35.0
    # Periodic terms shared by both components.
    wave = (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * np.sqrt(np.abs(x))
    dlat += wave
    dlat += (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
    dlat += (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * np.sqrt(np.abs(x))
    dlon += wave
    dlon += (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
    dlon += (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0
    # Metres on the Krasovsky ellipsoid to degrees at this latitude.
    rad = lat / 180.0 * np.pi
    w = 1.0 - _EE * np.sin(rad) ** 2
    sqrt_w = np.sqrt(w)
    dlat = dlat * 180.0 / ((_A * (1.0 - _EE)) / (w * sqrt_w) * np.pi)
    dlon = dlon * 180.0 / (_A / sqrt_w * np.cos(rad) * np.pi)
    outside = _outside_china(lon, lat)
    return np.where(outside, 0.0, dlon), np.where(outside, 0.0, dlat)


def _invert(
    forward: CoordFunc, lon: NDArray[np.float64], lat: NDArray[np.float64], start: Coords
) -> Coords:
    """Solve ``forward(x, y) == (lon, lat)`` by fixed-point iteration from ``start``."""
    x, y = np.array(start[0], dtype=np.float64), np.array(start[1], dtype=np.float64)
    for _ in range(_MAX_ITER):
        fx, fy = forward(x, y)
        ex, ey = fx - lon, fy - lat
        x = x - ex
        y = y - ey
        err = np.maximum(np.abs(ex), np.abs(ey))
        # NaN coordinates never converge and must not keep the loop running.
        if not np.any(err[np.isfinite(err)] > _TOL_DEG):
            break
    return x, y


def wgs84_to_gcj02(lon: ArrayLike, lat: ArrayLike) -> Coords:
    """WGS84 longitude/latitude to GCJ-02 (AMap/Gaode, Tencent); unchanged outside China.

    Parameters
    ----------
    lon, lat
        WGS84 degrees.

    Returns
    -------
    tuple of numpy.ndarray
        GCJ-02 longitudes and latitudes (arrays).

    Examples
    --------
    >>> lon, lat = wgs84_to_gcj02([116.404], [39.915])
    >>> round(float(lon[0]), 6), round(float(lat[0]), 6)
    (116.410244, 39.916404)
    """
    x, y = _arrays(lon, lat)
    dx, dy = _gcj02_offset(x, y)
    return x + dx, y + dy


def gcj02_to_wgs84(lon: ArrayLike, lat: ArrayLike) -> Coords:
    """GCJ-02 longitude/latitude to WGS84, solved iteratively to better than 1e-9 degree.

    The common one-step inverse (subtract the offset evaluated at the GCJ-02 point) is off by
    up to ~1e-5 degree (about a metre); iterating removes that error, which matters when a
    fibre access point sits on a village boundary.

    Parameters
    ----------
    lon, lat
        Degrees in GCJ-02, as AMap and Tencent maps give them.

    Returns
    -------
    tuple of numpy.ndarray
        WGS84 longitudes and latitudes, within 1e-9 degree.
    """
    x, y = _arrays(lon, lat)
    dx, dy = _gcj02_offset(x, y)
    return _invert(wgs84_to_gcj02, x, y, (x - dx, y - dy))


def gcj02_to_bd09(lon: ArrayLike, lat: ArrayLike) -> Coords:
    """GCJ-02 longitude/latitude to BD-09 (Baidu maps).

    Parameters
    ----------
    lon, lat
        GCJ-02 degrees.

    Returns
    -------
    tuple of numpy.ndarray
        The same points in BD-09.
    """
    x, y = _arrays(lon, lat)
    z = np.hypot(x, y) + 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) + 0.000003 * np.cos(x * _X_PI)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def bd09_to_gcj02(lon: ArrayLike, lat: ArrayLike) -> Coords:
    """BD-09 longitude/latitude to GCJ-02, solved iteratively like :func:`gcj02_to_wgs84`.

    Parameters
    ----------
    lon, lat
        Degrees in BD-09, as Baidu maps give them.

    Returns
    -------
    tuple of numpy.ndarray
        The same points in GCJ-02.
    """
    bx, by = _arrays(lon, lat)
    x = bx - 0.0065
    y = by - 0.006
    z = np.hypot(x, y) - 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) - 0.000003 * np.cos(x * _X_PI)
    return _invert(gcj02_to_bd09, bx, by, (z * np.cos(theta), z * np.sin(theta)))


def wgs84_to_bd09(lon: ArrayLike, lat: ArrayLike) -> Coords:
    """WGS84 longitude/latitude to BD-09 (through GCJ-02).

    Parameters
    ----------
    lon, lat
        WGS84 longitude and latitude.

    Returns
    -------
    tuple of numpy.ndarray
        BD-09 longitudes and latitudes (arrays).
    """
    return gcj02_to_bd09(*wgs84_to_gcj02(lon, lat))


def bd09_to_wgs84(lon: ArrayLike, lat: ArrayLike) -> Coords:
    """BD-09 longitude/latitude to WGS84 (through GCJ-02).

    Parameters
    ----------
    lon, lat
        BD-09 longitude and latitude.

    Returns
    -------
    tuple of numpy.ndarray
        WGS84 longitudes and latitudes (arrays).
    """
    return gcj02_to_wgs84(*bd09_to_gcj02(lon, lat))


def shift_geometries(geoms: gpd.GeoSeries | ArrayLike, func: CoordFunc) -> gpd.GeoSeries | NDArray:
    """Apply a coordinate function such as :func:`gcj02_to_wgs84` to every vertex.

    Parameters
    ----------
    geoms
        Geometries (a GeoSeries or an array of shapely geometries).
    func
        Maps arrays of x (longitude) and y (latitude) to new ones.

    Returns
    -------
    geopandas.GeoSeries or numpy.ndarray
        The same kind of container (a GeoSeries keeps its index, name and CRS); missing
        geometries stay missing. Geometries come back 2D: heights play no part in coverage.
    """

    def apply(x: NDArray[np.float64], y: NDArray[np.float64]) -> Coords:
        return func(x, y)

    if isinstance(geoms, gpd.GeoSeries):
        values = shapely.transform(geoms.values, apply, interleaved=False)
        return gpd.GeoSeries(values, index=geoms.index, crs=geoms.crs, name=geoms.name)
    return shapely.transform(np.asarray(geoms, dtype=object), apply, interleaved=False)


def to_wgs84(gdf: gpd.GeoDataFrame, crs: pyproj.CRS | str) -> gpd.GeoDataFrame:
    """A new frame in EPSG:4326 from one whose coordinates are in ``crs``.

    Parameters
    ----------
    gdf
        The frame; its own ``crs`` attribute is replaced by ``crs`` (the caller decides which
        CRS applies, see :func:`ruralcov.io.read_layer`).
    crs
        A :class:`pyproj.CRS`, or ``"gcj02"``/``"bd09"`` as returned by :func:`parse_crs`.

    Returns
    -------
    geopandas.GeoDataFrame
        A copy in EPSG:4326 (the offsets removed for GCJ-02 and BD-09).
    """
    wgs84 = pyproj.CRS.from_epsg(4326)
    if isinstance(crs, str):
        funcs: dict[str, CoordFunc] = {"gcj02": gcj02_to_wgs84, "bd09": bd09_to_wgs84}
        if crs not in funcs:
            raise CRSError(f"unknown offset CRS {crs!r}; expected one of {list(funcs)}")
        out = gdf.copy()
        out = out.set_geometry(shift_geometries(out.geometry, funcs[crs]))
        return out.set_crs(wgs84, allow_override=True)
    out = gdf.set_crs(crs, allow_override=True)
    if out.crs == wgs84:
        return out.copy()
    return out.to_crs(wgs84)


def metric_crs(bounds: tuple[float, float, float, float]) -> pyproj.CRS:
    """A CRS in metres suited to data within ``bounds`` (lon/lat, EPSG:4326).

    A province-sized extent (at most about 6 degrees of longitude, e.g. Shanxi at 110.2-114.6
    degrees E) gets the WGS84 UTM zone of its centre: distances there are true to ~0.1 % and
    the EPSG code reads well in a manifest. Wider extents (a country) would be stretched by a
    transverse Mercator far from its central meridian, so they get a Lambert azimuthal
    equal-area CRS centred on the extent, which keeps areas exact and distances close.

    Parameters
    ----------
    bounds
        ``(west, south, east, north)`` in degrees.

    Returns
    -------
    pyproj.CRS
        A WGS84 UTM zone, or a Lambert azimuthal equal-area CRS in metres.

    Examples
    --------
    >>> metric_crs((110.2, 34.6, 114.6, 40.7)).to_epsg()
    32649
    """
    west, south, east, north = (float(v) for v in bounds)
    lon0 = (west + east) / 2.0
    lat0 = (south + north) / 2.0
    if east - west <= _UTM_MAX_WIDTH_DEG and -80.0 <= south and north <= 84.0:
        infos = query_utm_crs_info(
            datum_name="WGS 84",
            area_of_interest=AreaOfInterest(west, south, east, north),
        )
        zone = int((lon0 + 180.0) // 6.0) % 60 + 1
        wanted = f"{326 if lat0 >= 0 else 327}{zone:02d}"
        codes = [info.code for info in infos]
        if wanted in codes:
            return pyproj.CRS.from_epsg(int(wanted))
    return pyproj.CRS.from_proj4(
        f"+proj=laea +lat_0={lat0:.6f} +lon_0={lon0:.6f} +datum=WGS84 +units=m +no_defs"
    )


def source_crs(
    file_crs: pyproj.CRS | None, given: pyproj.CRS | str | None, *, name: str, path: object,
    section: str,
) -> tuple[pyproj.CRS | str, bool]:
    """The CRS a layer's coordinates are in, and whether the ``crs`` setting was ignored.

    The file's own CRS wins, except that a "gcj02"/"bd09" setting applies to a file declaring a
    geographic CRS (AMap/Baidu exports declare WGS 84 but hold offset coordinates). A file
    without a CRS needs the setting.

    Parameters
    ----------
    file_crs
        The CRS the file declares (None: none).
    given
        The ``crs`` setting, as :func:`parse_crs` returns it (None: not set).
    name, path, section
        The layer, its file and its configuration section, for the message.

    Returns
    -------
    tuple
        The CRS that applies, and True when the setting differs from the file's CRS and was
        ignored (for the caller to report).

    Raises
    ------
    CRSError
        When neither the file nor the setting gives a CRS, naming the setting to add.
    """
    if file_crs is None:
        if given is None:
            raise CRSError(
                f'{name}: {path} has no CRS; set crs = "EPSG:4326" in the [{section}] section '
                f"if the coordinates are longitude/latitude"
            )
        return given, False
    if isinstance(given, str) and file_crs.is_geographic:
        return given, False
    return file_crs, given is not None and given != file_crs
