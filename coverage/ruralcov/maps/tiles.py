"""Vector tiles of the large map pages: polygons cut into Mapbox Vector Tiles in a PMTiles archive.

A province page whose embedded layers would pass ``[maps] max_page_mb`` draws its villages and
townships from tiles instead (:func:`ruralcov.maps.write_maps` decides). Each zoom level has
its own simplification: the polygons are projected to Web Mercator in the units of a tile at
that zoom (``EXTENT`` per tile) and simplified by :data:`TOLERANCE` units (under a screen
pixel), so a tile of the whole province holds few vertices and one of a county its detail.
Tiles carry no text, only small integers per feature (its county, its row in that county's
evidence, its class); names and evidence stay in the per-county evidence scripts.

The archive is a plain PMTiles v3 file (written with the ``pmtiles`` package of Protomaps;
tiles gzip-compressed), readable by any PMTiles client (QGIS, pmtiles.io). Browsers refuse
``fetch`` and range reads on ``file://``, so the archive is also cut into byte chunks, each a
small script (``ruralcov.chunk(name, k, "<base64>")``) that the page loads with a ``<script>``
element when the PMTiles reader asks for bytes in it: the page then works from ``file://``
with the network off, and from any static web server, reading only the chunks it shows.

The MVT encoding (protobuf by hand: the format has four messages, and every value here is an
unsigned integer) is vectorised with numpy over the rings of a tile.
"""

from __future__ import annotations

import base64
import gzip
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray

__all__ = [
    "CHUNK_BYTES",
    "EXTENT",
    "TOLERANCE",
    "TileLayer",
    "chunk_names",
    "encode_tile",
    "mercator_units",
    "tile_pyramid",
    "write_archive",
]

#: Units of a tile side (the MVT default).
EXTENT = 4096
#: Simplification tolerance in tile units at every zoom: a tile is drawn 512 CSS pixels wide
#: (the reader's default, one data zoom per two display zooms), so 4 units are half a pixel.
TOLERANCE = 4.0
#: Units of the buffer drawn around each tile, so that outlines do not stop at tile edges.
BUFFER = 64
#: Bytes of the archive per chunk script (base64 makes each file a third larger).
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class TileLayer:
    """One layer of the tiles: polygons with unsigned integer properties.

    Attributes
    ----------
    name
        The layer name in each tile (``villages``, ``townships``).
    geoms
        Polygons or multipolygons in EPSG:4326; missing or empty ones are left out.
    props
        Property name -> one unsigned integer per polygon.
    min_zoom, max_zoom
        The data zooms the layer is in (beyond ``max_zoom`` the reader scales the last zoom).
    """

    name: str
    geoms: NDArray[np.object_]
    props: Mapping[str, NDArray[np.integer]]
    min_zoom: int
    max_zoom: int


def mercator_units(geoms: NDArray[np.object_]) -> NDArray[np.object_]:
    """Geometries in Web Mercator scaled to [0, 1] (x east, y south), as tiles are cut.

    Parameters
    ----------
    geoms
        Geometries in EPSG:4326.

    Returns
    -------
    numpy.ndarray
        The same geometries; at zoom ``z`` a unit is ``2**z`` tiles.

    Examples
    --------
    >>> [round(c, 6) for c in mercator_units(np.array([shapely.Point(0, 0)]))[0].coords[0]]
    [0.5, 0.5]
    """

    def project(xy: NDArray[np.float64]) -> NDArray[np.float64]:
        lat = np.clip(xy[:, 1], -85.05112878, 85.05112878)
        x = (xy[:, 0] + 180.0) / 360.0
        y = 0.5 - np.log(np.tan(np.pi / 4 + np.radians(lat) / 2)) / (2 * np.pi)
        return np.stack([x, y], axis=1)

    return shapely.transform(np.asarray(geoms, dtype=object), project)


# --------------------------------------------------------------------------- MVT encoding


def _varints(values: NDArray[np.integer]) -> tuple[NDArray[np.uint8], NDArray[np.intp]]:
    """Protobuf varints of unsigned integers: the bytes, and the byte count of each value."""
    v = np.asarray(values, dtype=np.uint64)
    n = np.ones(len(v), dtype=np.intp)
    for k in range(1, 10):
        n += v >= np.uint64(1 << (7 * k))
    out = np.zeros(int(n.sum()), dtype=np.uint8)
    pos = np.concatenate([[0], np.cumsum(n)[:-1]]).astype(np.intp)
    for k in range(int(n.max(initial=0))):
        sel = n > k
        byte = (v[sel] >> np.uint64(7 * k)) & np.uint64(0x7F)
        more = (n[sel] > k + 1).astype(np.uint64) << np.uint64(7)
        out[pos[sel] + k] = (byte | more).astype(np.uint8)
    return out, n


def _varint(value: int) -> bytes:
    """One protobuf varint (plain Python: the per-feature fields are many and short)."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _zigzag(v: NDArray[np.int64]) -> NDArray[np.int64]:
    return (v << 1) ^ (v >> 63)


def _rings(parts: NDArray[np.object_], origin: tuple[float, float]) -> tuple[Any, ...]:
    """The rings of polygons in tile units around ``origin``: integer vertices without the
    closing one and without repeats, the ring of each vertex, the vertices of each ring and
    the polygon of each ring; exteriors oriented as MVT wants them (positive area, y down)."""
    # parts, then rings (exterior first), then vertices, each in order: the order of
    # shapely.to_ragged_array, without its per-call cost (a national pyramid has ~10^6 tiles)
    pieces, owner = shapely.get_parts(parts, return_index=True)
    rings, ring_piece = shapely.get_rings(shapely.orient_polygons(pieces), return_index=True)
    coords, ring_of = shapely.get_coordinates(rings, return_index=True)
    ints = np.rint(coords - np.asarray(origin)).astype(np.int64)
    last = np.zeros(len(ints), dtype=bool)
    last[:-1] = ring_of[1:] != ring_of[:-1]
    last[-1:] = True
    same = np.zeros(len(ints), dtype=bool)
    same[1:] = (ints[1:] == ints[:-1]).all(axis=1) & (ring_of[1:] == ring_of[:-1])
    keep = ~(last | same)
    ints, ring_of = ints[keep], ring_of[keep]
    size = np.bincount(ring_of, minlength=len(rings))
    return ints, ring_of, size, owner[ring_piece]


def _geometry_commands(parts: NDArray[np.object_], origin: tuple[float, float]) -> Any:
    """The MVT geometry commands of polygons in tile units, rings of fewer than three
    vertices left out: one integer array for all, the polygon of each command, and the
    polygons left with a ring."""
    ints, ring_of, size, ring_feature = _rings(parts, origin)
    rings = np.flatnonzero(size >= 3)
    if not len(rings):
        return np.zeros(0, np.int64), np.zeros(0, np.intp), np.zeros(0, np.intp)
    vertex = (size >= 3)[ring_of]
    ints, ring_of = ints[vertex], ring_of[vertex]
    sizes = size[rings]
    # the cursor moves on across a polygon's rings and starts at 0 for each polygon
    deltas = np.diff(ints, axis=0, prepend=np.zeros((1, 2), np.int64))
    owner_of_vertex = ring_feature[ring_of]
    starts = np.flatnonzero(np.r_[True, owner_of_vertex[1:] != owner_of_vertex[:-1]])
    deltas[starts] = ints[starts]
    # per ring: MoveTo(1) x y, LineTo(n-1) x y ..., ClosePath
    n_cmd = 2 * sizes + 3
    out = np.empty(int(n_cmd.sum()), dtype=np.int64)
    at = np.concatenate([[0], np.cumsum(n_cmd)[:-1]])
    out[at] = 9
    out[at + 3] = 2 | ((sizes - 1) << 3)
    out[at + n_cmd - 1] = 15
    coord = np.ones(len(out), dtype=bool)
    coord[at] = coord[at + 3] = coord[at + n_cmd - 1] = False
    out[coord] = _zigzag(deltas).ravel()
    return out, np.repeat(ring_feature[rings], n_cmd), np.unique(ring_feature[rings])


def encode_tile(layers: Sequence[tuple[str, NDArray[np.object_], Mapping[str, Any]]],
                origin: tuple[float, float]) -> bytes:
    """One Mapbox Vector Tile (version 2) of polygon layers.

    Parameters
    ----------
    layers
        ``(name, polygons, props)`` per layer: polygons in tile units (y down), already
        clipped to the tile and its buffer; props name -> an unsigned integer per polygon.
    origin
        The tile's top-left corner in the same units.

    Returns
    -------
    bytes
        The tile, uncompressed; an empty layer is left out.

    Examples
    --------
    >>> square = shapely.box(0, 0, 10, 10)
    >>> tile = encode_tile([("v", np.array([square]), {"k": np.array([3])})], (0.0, 0.0))
    >>> len(tile) > 20
    True
    """
    out = b""
    for name, parts, props in layers:
        if not len(parts):
            continue
        cmds, owner, kept = _geometry_commands(np.asarray(parts, dtype=object), origin)
        if not len(kept):
            continue
        keys = list(props)
        values = sorted({int(props[k][i]) for k in keys for i in kept})
        vpos = {v: j for j, v in enumerate(values)}
        body, cmd_len = _varints(cmds)
        cut = np.concatenate([[0], np.cumsum(np.bincount(owner, weights=cmd_len,
                                                         minlength=len(parts)))]).astype(int)
        features = []
        for i in kept.tolist():
            tags = b"".join(_varint(j) + _varint(vpos[int(props[k][i])])
                            for j, k in enumerate(keys))
            geometry = bytes(body[cut[i]:cut[i + 1]])
            feature = (_field(2, tags)
                       + _varint(3 << 3) + _varint(3)  # type POLYGON
                       + _field(4, geometry))
            features.append(_field(2, feature))
        layer = (_varint(15 << 3) + _varint(2) + _field(1, name.encode("utf-8"))
                 + b"".join(features)
                 + b"".join(_field(3, k.encode("utf-8")) for k in keys)
                 + b"".join(_field(4, _varint(5 << 3) + _varint(v)) for v in values)
                 + _varint(5 << 3) + _varint(EXTENT))
        out += _field(3, layer)
    return out


# --------------------------------------------------------------------------- the pyramid


def _zoom_geoms(units: NDArray[np.object_], z: int) -> NDArray[np.object_]:
    """Polygons in tile units of zoom ``z``, simplified by :data:`TOLERANCE`; a polygon that
    would vanish keeps its shape."""
    scale = float(EXTENT << z)
    scaled = shapely.transform(units, lambda xy: xy * scale)
    simple = shapely.simplify(scaled, TOLERANCE, preserve_topology=True)
    lost = shapely.is_empty(simple) | (shapely.area(simple) <= 0)
    return np.where(lost, scaled, simple)


def _tiles_of(bounds: NDArray[np.float64], z: int) -> NDArray[np.int64]:
    """The (x, y) of every tile that the bounds (tile units of zoom z) touch, sorted."""
    lo = np.floor((bounds[:, :2] - BUFFER) / EXTENT).astype(np.int64)
    hi = np.floor((bounds[:, 2:] + BUFFER) / EXTENT).astype(np.int64)
    lo, hi = np.clip(lo, 0, (1 << z) - 1), np.clip(hi, 0, (1 << z) - 1)
    found: set[tuple[int, int]] = set()
    for (x0, y0), (x1, y1) in zip(lo.tolist(), hi.tolist(), strict=True):
        found.update((x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1))
    return np.array(sorted(found), dtype=np.int64).reshape(-1, 2)


def tile_pyramid(layers: Sequence[TileLayer]) -> Iterator[tuple[int, int, int, bytes]]:
    """Every non-empty tile of the layers, gzip-compressed.

    Parameters
    ----------
    layers
        The layers; each is cut at its own zooms.

    Yields
    ------
    (z, x, y, bytes)
        In zoom order, then x, then y.
    """
    units = []
    for layer in layers:
        g = np.asarray(layer.geoms, dtype=object)
        ok = np.flatnonzero(~(shapely.is_missing(g) | shapely.is_empty(g)))
        units.append((layer, ok, mercator_units(g[ok])))
    zooms = sorted({z for layer in layers for z in range(layer.min_zoom, layer.max_zoom + 1)})
    for z in zooms:
        present = [(layer, ok, _zoom_geoms(u, z)) for layer, ok, u in units
                   if layer.min_zoom <= z <= layer.max_zoom]
        trees = [shapely.STRtree(g) for _, _, g in present]
        bounds = np.concatenate([shapely.bounds(g) for _, _, g in present])
        for x, y in _tiles_of(bounds, z).tolist():
            x0, y0 = x * EXTENT, y * EXTENT
            box = (x0 - BUFFER, y0 - BUFFER, x0 + EXTENT + BUFFER, y0 + EXTENT + BUFFER)
            parts = []
            for (layer, ok, g), tree in zip(present, trees, strict=True):
                hit = np.sort(tree.query(shapely.box(*box)))
                clipped = shapely.clip_by_rect(g[hit], *box)
                poly = np.isin(shapely.get_type_id(clipped), (3, 6)) & ~shapely.is_empty(clipped)
                hit, clipped = hit[poly], clipped[poly]
                props = {k: np.asarray(v)[ok[hit]] for k, v in layer.props.items()}
                parts.append((layer.name, clipped, props))
            tile = encode_tile(parts, (float(x0), float(y0)))
            if tile:
                yield z, x, y, gzip.compress(tile, mtime=0)


# --------------------------------------------------------------------------- the archive


def chunk_names(name: str, size: int) -> list[str]:
    """File names of the chunk scripts of an archive of ``size`` bytes.

    Examples
    --------
    >>> chunk_names("province.pmtiles", 3 * CHUNK_BYTES + 1)
    ['province.pmtiles.0.js', 'province.pmtiles.1.js', 'province.pmtiles.2.js', \
'province.pmtiles.3.js']
    """
    return [f"{name}.{k}.js" for k in range(max(1, math.ceil(size / CHUNK_BYTES)))]


def write_archive(tiles: Iterator[tuple[int, int, int, bytes]], path: Path, *,
                  bounds: Sequence[float], metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Write the tiles into a PMTiles archive and its chunk scripts beside it.

    Parameters
    ----------
    tiles
        ``(z, x, y, gzip bytes)`` as :func:`tile_pyramid` yields them.
    path
        The archive (``.pmtiles``); the chunks are ``<path>.<k>.js``.
    bounds
        ``(west, south, east, north)`` of the data.
    metadata
        The archive's JSON metadata (``vector_layers`` and a description).

    Returns
    -------
    dict
        What the page's reader needs: ``name`` (the archive's file name), ``size``,
        ``chunk`` (bytes per chunk), ``min_zoom`` and ``max_zoom``.
    """
    from pmtiles.tile import Compression, TileType, zxy_to_tileid
    from pmtiles.writer import Writer

    entries = sorted((zxy_to_tileid(z, x, y), z, data) for z, x, y, data in tiles)
    zooms = [z for _, z, _ in entries] or [0]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        writer = Writer(f)
        for tile_id, _, data in entries:
            writer.write_tile(tile_id, data)
        west, south, east, north = (float(b) for b in bounds)
        writer.finalize(
            {
                "tile_type": TileType.MVT,
                "tile_compression": Compression.GZIP,
                "min_lon_e7": int(west * 1e7), "min_lat_e7": int(south * 1e7),
                "max_lon_e7": int(east * 1e7), "max_lat_e7": int(north * 1e7),
                "center_zoom": min(zooms),
                "center_lon_e7": int((west + east) / 2 * 1e7),
                "center_lat_e7": int((south + north) / 2 * 1e7),
            },
            dict(metadata),
        )
    data = path.read_bytes()
    for k, chunk_name in enumerate(chunk_names(path.name, len(data))):
        text = base64.b64encode(data[k * CHUNK_BYTES:(k + 1) * CHUNK_BYTES]).decode("ascii")
        (path.parent / chunk_name).write_text(
            f'ruralcov.chunk("{path.name}",{k},"{text}");\n', encoding="utf-8", newline="\n")
    return {"name": path.name, "size": len(data), "chunk": CHUNK_BYTES,
            "min_zoom": min(zooms), "max_zoom": max(zooms)}
