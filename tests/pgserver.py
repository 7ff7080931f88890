"""A throwaway PostgreSQL + PostGIS server for the tests (no mocks: the real thing runs).

:func:`start` makes a cluster with ``initdb`` in a temporary folder and starts it with
``pg_ctl``, listening on a Unix socket in that folder only (no TCP port, nothing shared with
other processes). PostgreSQL refuses to run as root: as root, the cluster belongs to a system
user made for it (``useradd``) and its commands run through ``runuser``. :func:`stop` stops the
server and removes the folder.

``make test`` installs the Debian packages (``postgresql-15-postgis-3``) when they are missing;
without them :func:`missing` says what to install, and the fixture fails with that message
rather than skipping the tests.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

#: The system user that owns the cluster when the tests run as root.
PG_USER = "ruralcov-pg"
#: The database superuser, and the database the tests use (PostGIS installed).
SUPERUSER = "ruralcov"
DATABASE = "ruralcov_test"
#: A login that needs a password (scram-sha-256), for the password tests.
READER, READER_PASSWORD = "reader", "s3cret-Pa55word"
INSTALL = (
    "the PostGIS tests need PostgreSQL 15 and PostGIS 3 from Debian: "
    "apt-get install postgresql-15-postgis-3 (make test installs it), and psycopg 3: "
    "pip install -e '.[postgis]'"
)


@dataclass(frozen=True)
class Server:
    """A running test server."""

    bindir: Path
    folder: Path

    @property
    def socket_dir(self) -> Path:
        return self.folder / "sock"

    def dsn(self, user: str = SUPERUSER, database: str = DATABASE) -> str:
        """A connection URI over the Unix socket (no password in it)."""
        return f"postgresql://{user}@/{database}?host={self.socket_dir}"


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def missing() -> str | None:
    """None when PostgreSQL, PostGIS and psycopg are installed; else what to install."""
    bindir = _bindir()
    if bindir is None:
        return INSTALL
    version = bindir.parts[-2]
    if not glob.glob(f"/usr/share/postgresql/{version}/extension/postgis.control"):
        return INSTALL
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return INSTALL
    return None


def _as_owner(cmd: list[str]) -> list[str]:
    """``cmd`` run as the cluster's owner: the system user when this process is root."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", PG_USER, "--", *cmd]


def _owner() -> None:
    """Make the system user the cluster belongs to, when running as root."""
    if os.geteuid() != 0:
        return
    known = subprocess.run(["id", "-u", PG_USER], capture_output=True, check=False)
    if known.returncode != 0:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                        "/usr/sbin/nologin", PG_USER], check=True, capture_output=True)


def start() -> Server:
    """Start a cluster with PostGIS in its database (:data:`DATABASE`)."""
    import psycopg

    bindir = _bindir()
    assert bindir is not None, INSTALL
    _owner()
    folder = Path(tempfile.mkdtemp(prefix="ruralcov-pg-"))
    server = Server(bindir, folder)
    server.socket_dir.mkdir()
    if os.geteuid() == 0:
        shutil.chown(folder, PG_USER)
        shutil.chown(server.socket_dir, PG_USER)
    data = folder / "data"
    run = {"check": True, "capture_output": True, "text": True}
    subprocess.run(_as_owner([str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER,
                              "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"]), **run)
    (data / "pg_hba.conf").write_text(
        f"local all {READER} scram-sha-256\nlocal all all trust\n", encoding="utf-8")
    options = (f"-c listen_addresses='' -c unix_socket_directories='{server.socket_dir}' "
               "-c fsync=off -c full_page_writes=off -c synchronous_commit=off")
    subprocess.run(_as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-w",
                              "-l", str(folder / "server.log"), "start"]), **run)
    with psycopg.connect(server.dsn(database="postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {DATABASE}")
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION postgis")
        conn.execute(f"CREATE ROLE {READER} LOGIN PASSWORD '{READER_PASSWORD}'")
    return server


def stop(server: Server) -> None:
    """Stop the server at once and remove its folder."""
    subprocess.run(_as_owner([str(server.bindir / "pg_ctl"), "-D", str(server.folder / "data"),
                              "-m", "immediate", "-w", "stop"]), check=False,
                   capture_output=True)
    shutil.rmtree(server.folder, ignore_errors=True)


def load_frame(conn, table: str, frame, *, geometry: str | None = None, srid: int = 4326,
               key: str | None = "id") -> None:
    """Create ``table`` (``schema.name``) from a frame and copy its rows in, in order.

    Numbers stay numbers, everything else is text; ``geometry`` names a column of shapely
    geometries written as ``geometry(Geometry, srid)``; ``key`` adds a serial column first
    (the row order, for queries that need it).
    """
    import numpy as np
    import pandas as pd
    import shapely
    from psycopg import sql

    schema, name = table.split(".")
    defs, cols = [], []
    if key:
        defs.append(sql.SQL("{} bigserial PRIMARY KEY").format(sql.Identifier(key)))
    for c in frame.columns:
        if c == geometry:
            kind = f"geometry(Geometry, {srid})"
        elif pd.api.types.is_bool_dtype(frame[c]):
            kind = "boolean"
        elif pd.api.types.is_integer_dtype(frame[c]):
            kind = "bigint"
        elif pd.api.types.is_float_dtype(frame[c]):
            kind = "double precision"
        elif pd.api.types.is_datetime64_any_dtype(frame[c]):
            kind = "timestamptz"
        else:
            kind = "text"
        defs.append(sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(kind)))
        cols.append(c)
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    conn.execute(sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(schema, name),
                                                         sql.SQL(", ").join(defs)))
    values = []
    for c in cols:
        col = frame[c]
        if c == geometry:
            g = np.asarray(col, dtype=object)
            ok = ~shapely.is_missing(g)
            out = np.full(len(g), None, dtype=object)
            out[ok] = shapely.to_wkb(shapely.set_srid(g[ok], srid), hex=True, include_srid=True)
            values.append(out.tolist())
        else:
            values.append([None if pd.isna(v) else (v.item() if hasattr(v, "item") else v)
                           for v in col.astype(object)])
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(schema, name), sql.SQL(", ").join(map(sql.Identifier, cols)))
    with conn.cursor().copy(copy_sql) as copy:
        for row in zip(*values, strict=True):
            copy.write_row(row)
