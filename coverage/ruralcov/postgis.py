"""Reading inputs from PostgreSQL/PostGIS: a table or a read-only query, in batches.

An input section whose ``path`` is a ``postgresql://`` URI reads the ``table`` or ``query`` it
names (:class:`ruralcov.config.DatabaseSource`). Every read goes through :func:`batches`: a
server-side cursor in a read-only, repeatable-read transaction, fetched ``batch_rows`` rows at
a time into pyarrow tables, so that the speed tests stream through the same checks and engine
as a Parquet file with bounded memory (:func:`ruralcov.io.iter_batches`), and the whole-table
readers (:func:`ruralcov.io.read_layer`, :func:`ruralcov.io.read_table`) concatenate the
same batches.

The geometry is the relation's one ``geometry`` (or ``geography``) column, sent as WKB with
its SRID (the table's declared SRID, or the rows' own when the column has none; an SRID of 0
means no CRS, so the section's ``crs`` applies). Numbers, booleans and times keep their types
(``numeric`` as float8); every other type is read as text.

A database input has no file to hash: :class:`RowDigest` is its content hash for the manifest,
an ordered hash of the rows read and their number. Passwords never come from the
configuration (:func:`ruralcov.config.check_dsn`): libpq finds them in ``PGPASSWORD``,
``~/.pgpass`` (``PGPASSFILE``) or a ``PGSERVICE`` entry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyproj

from ruralcov import checks
from ruralcov.config import DatabaseSource
from ruralcov.errors import ConfigError, InputError, SchemaError, require_columns

__all__ = ["GEOMETRY_TYPES", "Layout", "RowDigest", "batches", "connect", "describe",
           "psycopg_module", "read_all"]

#: PostgreSQL types read as geometry.
GEOMETRY_TYPES = ("geometry", "geography")
#: Types read as themselves (others are read as text): PostgreSQL name -> arrow type.
_TYPES: dict[str, pa.DataType] = {
    "int2": pa.int64(), "int4": pa.int64(), "int8": pa.int64(), "oid": pa.int64(),
    "float4": pa.float64(), "float8": pa.float64(), "numeric": pa.float64(),
    "bool": pa.bool_(), "date": pa.date32(), "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
}
_SRID = "__ruralcov_srid"
_INSTALL = ("reading or writing PostgreSQL needs psycopg 3: pip install 'ruralcov[postgis]' "
            "(or pip install 'psycopg[binary]')")
_PASSWORD_HINT = ("a password comes from PGPASSWORD, ~/.pgpass (PGPASSFILE) or a PGSERVICE "
                  "entry, never from the configuration")


def psycopg_module() -> Any:
    """The psycopg 3 module, or a :class:`ConfigError` saying how to install it.

    Returns
    -------
    module
        ``psycopg``.

    Raises
    ------
    ConfigError
        When psycopg is not installed.
    """
    try:
        import psycopg
    except ImportError as exc:
        raise ConfigError(_INSTALL) from exc
    return psycopg


def connect(dsn: str, *, name: str, read_only: bool = True) -> Any:
    """A connection to ``dsn``; a failure is one :class:`InputError` naming the fix.

    Parameters
    ----------
    dsn
        The connection URI (no password: :func:`ruralcov.config.check_dsn`).
    name
        What the connection is for, in messages (``speed``, ``PostGIS output``).
    read_only
        Every transaction is read-only (inputs); the server refuses any write.

    Returns
    -------
    psycopg.Connection
        Not in autocommit: work happens in explicit transactions.

    Raises
    ------
    ConfigError, InputError
        psycopg missing; the server unreachable, the login refused, the database unknown.
    """
    psycopg = psycopg_module()
    try:
        conn = psycopg.connect(str.__str__(dsn), autocommit=False)
    except psycopg.Error as exc:
        raise InputError(f"{name}: cannot connect to {dsn}: {_first_line(exc)}; check the "
                         f"host, port, database and user ({_PASSWORD_HINT})") from exc
    conn.read_only = read_only
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    return conn


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def _errors(source: DatabaseSource, name: str) -> Iterator[None]:
    """A server error while reading ``source`` as one :class:`InputError` naming it."""
    psycopg = psycopg_module()
    try:
        yield
    except psycopg.Error as exc:
        what = f"table {source.table}" if source.table else f"query {source.query!r}"
        raise InputError(f"{name}: cannot read {what} from {str.__str__(source)}: "
                         f"{_first_line(exc)}") from exc


def _relation(source: DatabaseSource) -> Any:
    """The table (each dotted part quoted as an identifier) or the query as a subquery."""
    from psycopg import sql

    if source.table is not None:
        return sql.Identifier(*source.table.split(".", 1))
    # '%' doubled: the query is sent with the extended protocol, which reads placeholders
    return sql.SQL("({}) AS ruralcov_query").format(sql.SQL(source.query.replace("%", "%%")))


@dataclass(frozen=True)
class Layout:
    """What a table or query holds: its columns, their types and the geometry."""

    #: Every column but the geometry, in the relation's order.
    columns: tuple[str, ...]
    #: PostgreSQL type name of each column (the geometry's included).
    types: dict[str, str]
    #: The geometry (or geography) column; None when there is none.
    geometry: str | None = None
    #: Its SRID (0: none declared).
    srid: int = 0
    #: The CRS of that SRID; None for SRID 0.
    crs: pyproj.CRS | None = None


def describe(conn: Any, source: DatabaseSource, *, name: str) -> Layout:
    """The columns and geometry of ``source``, read in ``conn``'s current transaction.

    Parameters
    ----------
    conn
        From :func:`connect`.
    source
        The table or query.
    name
        The layer, for messages.

    Returns
    -------
    Layout
        Columns, types, the geometry column, its SRID and CRS.

    Raises
    ------
    InputError, SchemaError
        A missing table, a failing query, two columns of one name, several geometry columns,
        rows of several SRIDs.
    """
    from psycopg import sql

    with _errors(source, name), conn.cursor(binary=True) as cur:
        cur.execute(sql.SQL("SELECT * FROM {} LIMIT 0").format(_relation(source)), ())
        res = cur.pgresult
        names = [c.name for c in cur.description]
        oids = [res.ftype(i) for i in range(len(names))]
        mods = [res.fmod(i) for i in range(len(names))]
        cur.execute("SELECT oid::int8, typname::text FROM pg_type WHERE oid::int8 = ANY(%s)",
                    (list(set(oids)),))
        types_by_oid = dict(cur.fetchall())
    types = [types_by_oid.get(o, "text") for o in oids]
    _unique_columns(names, source, name)
    geoms = [(n, m) for n, t, m in zip(names, types, mods, strict=True) if t in GEOMETRY_TYPES]
    if len(geoms) > 1:
        raise SchemaError(f"{name}: {source.label} has {len(geoms)} geometry columns "
                          f"{[g for g, _ in geoms]}; select one with query = \"SELECT ...\"")
    layout = Layout(tuple(n for n in names if not geoms or n != geoms[0][0]),
                    dict(zip(names, types, strict=True)))
    if not geoms:
        return layout
    column, mod = geoms[0]
    srid = _srid(conn, source, column, mod, types[names.index(column)], name)
    return Layout(layout.columns, layout.types, column, srid, _crs(conn, srid, source, name))


def _unique_columns(names: Sequence[str], source: DatabaseSource, name: str) -> None:
    """Refuse a relation with two columns of one name (a query joining two tables, say):
    which one a reader takes would be a guess, as for a file (:func:`ruralcov.io.read_layer`)."""
    seen = pd.Index(names)
    twice = sorted(set(seen[seen.duplicated()]))
    if twice:
        raise SchemaError(f"{name}: {source.label} has the column(s) {twice} twice; give them "
                          "distinct names (SELECT a.code AS code, b.code AS other_code ...)")


def _srid(conn: Any, source: DatabaseSource, column: str, mod: int, kind: str,
          name: str) -> int:
    """The SRID the column declares, else the first row's (all rows are checked to share
    it as they are read)."""
    from psycopg import sql

    with _errors(source, name), conn.cursor(binary=True) as cur:
        if mod >= 0:
            cur.execute("SELECT postgis_typmod_srid(%s)", (mod,))
            declared = cur.fetchone()[0]
            if declared or kind == "geography":
                return int(declared or 4326)
        geom = sql.Identifier(column)
        cur.execute(sql.SQL("SELECT ST_SRID({g}) FROM {r} WHERE {g} IS NOT NULL LIMIT 1").format(
            g=geom, r=_relation(source)), ())
        row = cur.fetchone()
    return int(row[0]) if row else 0


def _crs(conn: Any, srid: int, source: DatabaseSource, name: str) -> pyproj.CRS | None:
    """The CRS of ``srid`` from the database's ``spatial_ref_sys`` (its authority code, else
    its WKT); None for SRID 0."""
    if srid == 0:
        return None
    with _errors(source, name), conn.cursor() as cur:
        cur.execute("SELECT auth_name, auth_srid, srtext FROM spatial_ref_sys WHERE srid = %s",
                    (srid,))
        row = cur.fetchone()
    try:
        if row and row[0] and row[1]:
            return pyproj.CRS.from_user_input(f"{row[0]}:{row[1]}")
        return pyproj.CRS.from_user_input(row[2] if row and row[2] else f"EPSG:{srid}")
    except pyproj.exceptions.CRSError as exc:
        raise InputError(f"{name}: {source.label}: SRID {srid} is not a CRS pyproj knows "
                         f"({exc}); transform the geometries to a known SRID") from exc


def _select_list(layout: Layout, columns: Sequence[str]) -> tuple[Any, list[pa.Field]]:
    """The SELECT list reading ``columns`` (the geometry as WKB, then its SRID) and the arrow
    field of each."""
    from psycopg import sql

    items, fields = [], []
    for col in columns:
        kind = layout.types[col]
        ident = sql.Identifier(col)
        if col == layout.geometry:
            cast = sql.SQL("::geometry") if kind == "geography" else sql.SQL("")
            items.append(sql.SQL("ST_AsBinary({c}{t}) AS {c}").format(c=ident, t=cast))
            items.append(sql.SQL("ST_SRID({c}) AS {s}").format(c=ident, s=sql.Identifier(_SRID)))
            fields += [pa.field(col, pa.binary()), pa.field(_SRID, pa.int64())]
        elif kind in _TYPES:
            cast = sql.SQL("::float8") if kind == "numeric" else sql.SQL("")
            items.append(sql.SQL("{c}{t} AS {c}").format(c=ident, t=cast))
            fields.append(pa.field(col, _TYPES[kind]))
        else:
            items.append(sql.SQL("{c}::text AS {c}").format(c=ident))
            fields.append(pa.field(col, pa.string()))
    return sql.SQL(", ").join(items), fields


def _table(rows: list[tuple[Any, ...]], fields: list[pa.Field]) -> pa.Table:
    """Fetched rows as an arrow table of ``fields``."""
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in fields]
    return pa.table([pa.array(c, type=f.type) for c, f in zip(cols, fields, strict=True)],
                    schema=pa.schema(fields))


def _checked_srid(table: pa.Table, srid: int, source: DatabaseSource, name: str) -> pa.Table:
    """``table`` without the SRID column, once every geometry is found in the layout's SRID."""
    if _SRID not in table.column_names:
        return table
    found = table.column(_SRID).drop_null().unique().to_pylist()
    other = sorted(s for s in found if s != srid)
    if other:
        raise InputError(f"{name}: {source.label} holds geometries in SRID {srid} and "
                         f"{other}; one layer is one CRS: ST_Transform them to one SRID")
    return table.drop_columns([_SRID])


def batches(source: DatabaseSource, columns: Sequence[str] | None = None, *,
            batch_rows: int = 1 << 18, name: str = "input",
            digest: RowDigest | None = None) -> Iterator[pa.Table]:
    """The rows of ``source`` as arrow tables of at most ``batch_rows`` rows, in the order
    the server sends them, from one server-side cursor.

    The read is one read-only, repeatable-read transaction; synchronised sequential scans
    are off, so a table that does not change is read in the same order every time.

    Parameters
    ----------
    source
        The table or query.
    columns
        Columns to read (the geometry as WKB); None: every column, the geometry last.
    batch_rows
        Rows fetched at a time: memory stays near one batch however large the table.
    name
        The layer, for messages.
    digest
        Fed every batch (:class:`RowDigest`), for the manifest.

    Yields
    ------
    pyarrow.Table
        The next rows.

    Raises
    ------
    InputError, SchemaError
        As :func:`describe`; a server error while reading.
    """
    from psycopg import sql

    with connect(source, name=name) as conn, conn.transaction(), _errors(source, name):
        conn.execute("SET LOCAL synchronize_seqscans = off")
        layout = describe(conn, source, name=name)
        wanted = list(columns) if columns is not None else [
            *layout.columns, *([layout.geometry] if layout.geometry else [])]
        require_columns(wanted, list(layout.types), where=f"{name}: {source.label}",
                        fix="Name the column in the configuration as the table has it, or "
                        "rename it in the query (SELECT x AS name)")
        select, fields = _select_list(layout, wanted)
        query = sql.SQL("SELECT {s} FROM {r}").format(s=select, r=_relation(source))
        with conn.cursor(name="ruralcov_read", binary=True) as cur:
            cur.execute(query, ())
            while rows := cur.fetchmany(batch_rows):
                table = _checked_srid(_table(rows, fields), layout.srid, source, name)
                if digest is not None:
                    digest.update(table)
                yield table


def read_all(source: DatabaseSource, *, name: str, geometry: bool = True
             ) -> tuple[pd.DataFrame, np.ndarray | None, pyproj.CRS | None, str]:
    """The whole of ``source``: attributes, geometries and CRS, and its content hash.

    Parameters
    ----------
    source
        The table or query.
    name
        The layer, for messages.
    geometry
        Read the geometry column (when there is one).

    Returns
    -------
    frame, geometries, crs, digest
        The attribute columns in the relation's order (RangeIndex in the order read), the
        shapely geometries (None when none are read), their CRS (None for SRID 0 or no
        geometry), and :meth:`RowDigest.hexdigest` of the rows read.
    """
    import shapely

    with connect(source, name=name) as conn, conn.transaction():
        layout = describe(conn, source, name=name)
    keep = geometry and layout.geometry is not None
    digest = RowDigest()
    columns = [*layout.columns, *([layout.geometry] if keep else [])]
    tables = list(batches(source, columns, name=name, digest=digest))
    fields = _select_list(layout, columns)[1]
    table = pa.concat_tables(tables) if tables else pa.schema(
        [f for f in fields if f.name != _SRID]).empty_table()
    geoms = None
    if keep:
        with np.errstate(invalid="ignore"):
            geoms = np.asarray(shapely.from_wkb(
                table.column(layout.geometry).to_numpy(zero_copy_only=False)), dtype=object)
        table = table.drop_columns([layout.geometry])
    frame = table.to_pandas().reset_index(drop=True)
    return frame, geoms, layout.crs if keep else None, digest.hexdigest()


class RowDigest:
    """The content hash of a database input: SHA-256 over the two 64-bit hashes of every
    row read, in the order read, and then the number of rows.

    Rows are hashed cell by cell as the duplicate rule hashes them
    (:func:`ruralcov.checks.row_hashes`; the WKB of a geometry as bytes), so the digest does
    not depend on how the rows were cut into batches, and changes when a row, a value or the
    order of the rows does.

    Examples
    --------
    >>> one, two = RowDigest(), RowDigest()
    >>> table = pa.table({"code": ["a", "b"], "down": [1.0, 2.0]})
    >>> one.update(table); two.update(table.slice(0, 1)); two.update(table.slice(1))
    >>> one.rows, one.hexdigest() == two.hexdigest()
    (2, True)
    """

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self.rows = 0

    def update(self, table: pa.Table) -> None:
        """Fold the rows of ``table`` in."""
        cols = {}
        for name in table.column_names:
            col = table.column(name).combine_chunks()
            if pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type):
                values = np.asarray(col.to_pylist(), dtype=object)
                col = pa.array(pd.util.hash_array(values, categorize=False).view(np.int64),
                               mask=col.is_null().to_numpy(zero_copy_only=False))
            cols[name] = col
        h1, h2 = checks.row_hashes(pa.table(cols), np.ones(table.num_rows, dtype=bool))
        self._sha.update(np.column_stack([h1, h2]).astype("<u8").tobytes())
        self.rows += table.num_rows

    def hexdigest(self) -> str:
        """The digest of the rows so far."""
        sha = self._sha.copy()
        sha.update(f"\nrows={self.rows}".encode())
        return sha.hexdigest()
