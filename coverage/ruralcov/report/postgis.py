"""Publishing a run to PostgreSQL/PostGIS: its tables, in one transaction.

``ruralcov run ... --to-postgis DSN`` (or ``[output] postgis``) writes, in the schema of
``[output] schema``, one row per run in ``runs`` (its manifest) and the run's rows in
``villages`` (with the polygon, a spatial index), ``summaries``, ``gaps`` and ``issues``:
the same rows as the run folder's ``tables/``. Every table has a primary key starting with
``run`` and a foreign key to ``runs`` (deleting a run deletes its rows), and every column a
comment with its definition (:func:`ruralcov.schema.column_definition`).

Everything is written in one transaction, committed only once the run folder is written: a
failure anywhere rolls it back and leaves the database as it was. A run of the same name is
replaced only with ``force``. The schema is quoted as an identifier and the run name is sent
as a value, so neither can inject SQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import shapely

from ruralcov.errors import OutputError, OutputExistsError
from ruralcov.pipeline import CoverageResult
from ruralcov.postgis import connect, psycopg_module
from ruralcov.report.tables import GAP_TABLES, result_tables
from ruralcov.schema import column_definition

__all__ = ["TABLES", "Publication", "publishing"]

#: Table -> (its own key columns after ``run``, what a row is).
TABLES: dict[str, tuple[tuple[str, ...], str]] = {
    "villages": (("village_code",), "One row per register entry of a ruralcov run, with its "
                 "polygon (EPSG:4326)."),
    "summaries": (("level", "code"), "Shares and gaps per area of a ruralcov run."),
    "gaps": (("list", "village_code"), "The villages behind each gap of a ruralcov run: list "
             "no_fibre, below_speed or insufficient_data."),
    "issues": (("issue_id",), "Every finding about the inputs of a ruralcov run."),
}
_EXTRA = {
    "run": "The ruralcov run (runs.run).",
    "list": "The gap list: no_fibre, below_speed or insufficient_data.",
    "issue_id": "Number of the finding in the run's tables/issues.csv (1 = the first).",
    "geom": "The village polygon, EPSG:4326 (empty without one).",
}
_RUNS = ("CREATE TABLE IF NOT EXISTS {t} (run text PRIMARY KEY, created timestamptz NOT NULL, "
         "ruralcov_version text, headline jsonb, manifest jsonb)")


def _sql_type(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "boolean"
    if pd.api.types.is_integer_dtype(series):
        return "bigint"
    if pd.api.types.is_float_dtype(series):
        return "double precision"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "timestamptz"
    return "text"


def _values(series: pd.Series) -> list[Any]:
    """A column as plain Python values, missing ones as None."""
    out = series.astype(object).where(series.notna(), None).tolist()
    return [v.item() if isinstance(v, np.generic) else v for v in out]


class Publication:
    """One run being written to a database (see :func:`publishing`)."""

    def __init__(self, conn: Any, *, schema: str, run: str, force: bool) -> None:
        from psycopg import sql

        self.conn, self.schema, self.run, self.force = conn, schema, run, force
        self.sql = sql

    def _t(self, table: str) -> Any:
        return self.sql.Identifier(self.schema, table)

    def exists(self) -> bool:
        """Whether the schema already holds a run of this name."""
        name = self._t("runs").as_string(self.conn)
        found = self.conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()
        if found[0] is None:
            return False
        row = self.conn.execute(self.sql.SQL("SELECT 1 FROM {} WHERE run = %s").format(
            self._t("runs")), (self.run,)).fetchone()
        return row is not None

    def refuse_existing(self) -> bool:
        """Whether a run of this name exists (to be replaced: ``force``); without ``force``
        an :class:`~ruralcov.errors.OutputExistsError`."""
        if not self.exists():
            return False
        if not self.force:
            raise OutputExistsError(
                f"PostGIS output: schema {self.schema!r} already holds a run named "
                f"{self.run!r}; add --force to replace it, or change [run] name")
        return True

    def begin(self, result: CoverageResult) -> None:
        """Make the tables and write the run's rows (not yet committed)."""
        sql = self.sql
        self.conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
            sql.Identifier(self.schema)))
        self.conn.execute(sql.SQL(_RUNS).format(t=self._t("runs")))
        # one writer at a time per schema: the check below and the insert see the same runs
        self.conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(
            self._t("runs")))
        if self.refuse_existing():
            self.conn.execute(sql.SQL("DELETE FROM {} WHERE run = %s").format(self._t("runs")),
                              (self.run,))
        from ruralcov import __version__

        self.conn.execute(sql.SQL("INSERT INTO {} (run, created, ruralcov_version, headline) "
                                  "VALUES (%s, now(), %s, %s::jsonb)").format(self._t("runs")),
                          (self.run, __version__, json.dumps(_json(result.headline))))
        for table, frame in _frames(result).items():
            self._write(table, frame)
        self.conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING GIST (geom)")
                          .format(sql.Identifier("villages_geom_idx"), self._t("villages")))

    def _write(self, table: str, frame: pd.DataFrame) -> None:
        """Create ``table`` (or add the columns it lacks), comment it and copy ``frame``."""
        sql = self.sql
        keys, what = TABLES[table]
        columns = [c for c in frame.columns if c != "geom"]
        defs = [sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(_sql_type(frame[c])))
                for c in columns]
        if "geom" in frame.columns:
            defs.append(sql.SQL("geom geometry(Geometry, 4326)"))
        runs = self._t("runs")
        self.conn.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {t} (run text NOT NULL REFERENCES {r} (run) ON DELETE "
            "CASCADE, {d}, PRIMARY KEY (run, {k}))").format(
            t=self._t(table), r=runs, d=sql.SQL(", ").join(defs),
            k=sql.SQL(", ").join(map(sql.Identifier, keys))))
        for d in defs:
            self.conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {}").format(
                self._t(table), d))
        self.conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(
            self._t(table), sql.Literal(what)))
        for c in ["run", *frame.columns]:
            text = _EXTRA.get(c) or column_definition(c)
            self.conn.execute(sql.SQL("COMMENT ON COLUMN {}.{} IS {}").format(
                self._t(table), sql.Identifier(c), sql.Literal(text)))
        self._copy(table, frame)

    def _copy(self, table: str, frame: pd.DataFrame) -> None:
        sql = self.sql
        names = ["run", *frame.columns]
        cols = [[self.run] * len(frame)] + [_values(frame[c]) for c in frame.columns]
        with self.conn.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(
                self._t(table), sql.SQL(", ").join(map(sql.Identifier, names)))) as copy:
            for row in zip(*cols, strict=True):
                copy.write_row(row)

    def finish(self, manifest: dict[str, Any]) -> None:
        """Record the run folder's manifest (and its time) in ``runs``; committed when the
        :func:`publishing` block ends."""
        self.conn.execute(self.sql.SQL("UPDATE {} SET manifest = %s::jsonb, created = %s "
                                       "WHERE run = %s").format(self._t("runs")),
                          (json.dumps(manifest), manifest["created"], self.run))


def _json(value: Any) -> Any:
    from ruralcov.report.manifest import json_value

    return json_value(value)


def _frames(result: CoverageResult) -> dict[str, pd.DataFrame]:
    """The rows of each table, as the run folder's ``tables/`` has them."""
    tables = result_tables(result)
    villages = tables["villages"].copy()
    geoms = pd.Series(result.villages.geometry.to_numpy(),
                      index=result.villages["village_code"].to_numpy())
    geom = np.asarray(geoms.reindex(villages["village_code"]).to_numpy(), dtype=object)
    present = ~shapely.is_missing(geom) & ~shapely.is_empty(geom)
    ewkb = np.full(len(geom), None, dtype=object)
    ewkb[present] = shapely.to_wkb(shapely.set_srid(geom[present], 4326), hex=True,
                                   include_srid=True)
    villages["geom"] = ewkb
    levels = [k for k in tables if k.startswith("summary_")]
    summaries = pd.concat([tables[k] for k in levels], ignore_index=True)
    gaps = pd.concat([tables[name].assign(list=key) for key, name in GAP_TABLES.items()],
                     ignore_index=True)
    gaps = gaps[["list", *[c for c in gaps.columns if c != "list"]]]
    issues = tables["issues"].reset_index(drop=True)
    issues.insert(0, "issue_id", np.arange(1, len(issues) + 1, dtype=np.int64))
    return {"villages": villages, "summaries": summaries, "gaps": gaps, "issues": issues}


@contextmanager
def publishing(dsn: str, *, schema: str, run: str, force: bool) -> Iterator[Publication]:
    """A connection to publish the run ``run`` to, in one transaction.

    The block writes with :meth:`Publication.begin` and :meth:`Publication.finish`; the
    transaction commits when the block ends without error and rolls back otherwise.

    Parameters
    ----------
    dsn
        The database (no password: :func:`ruralcov.config.check_dsn`).
    schema
        The schema of the tables (made when missing).
    run
        The run's name (``[run] name``).
    force
        Replace a run of the same name.

    Yields
    ------
    Publication
        Checked first: an existing run without ``force`` stops here, before any work.

    Raises
    ------
    ConfigError, InputError, OutputExistsError, OutputError
        psycopg missing, the server unreachable, a run of that name, a failed write.
    """
    psycopg = psycopg_module()
    with connect(dsn, name="PostGIS output", read_only=False) as conn:
        pub = Publication(conn, schema=schema, run=run, force=force)
        try:
            with conn.transaction():  # before the analysis, not after minutes of work
                pub.refuse_existing()
            with conn.transaction():
                yield pub
        except psycopg.Error as exc:
            raise OutputError(f"PostGIS output to {dsn}: {str(exc).strip().splitlines()[0]}; "
                              "nothing was written to the database") from exc
