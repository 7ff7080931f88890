"""PostGIS in and out, against a real PostgreSQL + PostGIS server (``tests/pgserver.py``).

- every input layer read from tables and queries gives the north world's hand-made answers,
  and the same village table as its files;
- the speed tests stream from a server-side cursor in batches;
- a query is read-only, and a password never comes from (nor lands in) a configuration;
- ``--to-postgis`` writes the run's tables in one transaction (keys, spatial index, column
  definitions, the manifest in ``runs``), replaces a run only with ``--force``, rolls back
  whole on a failure, and quotes the schema and run name;
- per-village test counts and median download computed by PostGIS SQL (``ST_Covers``, the
  lowest code on ties, ``percentile_cont(0.5)``) equal the engine's, on a hand-made world with
  points on shared edges and vertices, and on the demo.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import psycopg
import pyarrow.parquet as pq
import pytest
import shapely
import tomli_w
from click.testing import CliRunner
from shapely.geometry import Point, box

import worlds
from pgserver import READER, READER_PASSWORD, load_frame
from ruralcov import io
from ruralcov.cli import cli
from ruralcov.config import DatabaseSource, load_config
from ruralcov.errors import ConfigError, InputError
from ruralcov.pipeline import analyse
from ruralcov.schema import VILLAGE_COLUMNS


def _load_north(conn: psycopg.Connection, folder: Path) -> None:
    """The north world's files as tables of the schema ``north`` (access points in EPSG:3857:
    the reader converts by the SRID)."""
    conn.execute("DROP SCHEMA IF EXISTS north CASCADE")
    load_frame(conn, "north.register", pd.read_csv(folder / "register.csv", dtype=str), key=None)
    polygons = gpd.read_file(folder / "polygons.gpkg")
    load_frame(conn, "north.polygons", polygons.rename_geometry("geom"), geometry="geom",
               key=None)
    points = gpd.read_file(folder / "access_points.gpkg").to_crs(3857)
    load_frame(conn, "north.access_points", points.rename_geometry("geom"), geometry="geom",
               srid=3857, key=None)
    routes = gpd.read_file(folder / "routes.geojson")
    load_frame(conn, "north.routes", routes.rename_geometry("geom"), geometry="geom", key=None)
    load_frame(conn, "north.operator", pd.read_csv(folder / "operator.csv", dtype=str), key=None)
    tests = pd.read_csv(folder / "tests.csv")
    geom = [None if pd.isna(x) else Point(x, y) for x, y in zip(tests["lon"], tests["lat"],
                                                              strict=True)]
    load_frame(conn, "north.tests", tests.drop(columns=["lon", "lat"]).assign(geom=geom),
               geometry="geom")
    conn.execute(f"GRANT USAGE ON SCHEMA north TO {READER}")
    conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA north TO {READER}")


def _north_config(folder: Path, dsn: str, name: str = "north-pg") -> Path:
    """The north world's configuration with every input in the database."""
    raw = tomllib.loads((folder / "north.toml").read_text(encoding="utf-8"))
    raw["run"]["name"] = name
    raw["villages"].update(path=dsn, table="north.register")
    raw["boundaries"] = {"path": dsn, "table": "north.polygons", "code": "vcode"}
    raw["fibre"][0].update(path=dsn, table="north.access_points")
    raw["fibre"][0].pop("layer")
    raw["fibre"][1].update(path=dsn, query="SELECT route_id, status, geom FROM north.routes")
    raw["fibre"][2].update(path=dsn, table="north.operator")
    raw["speed"].update(path=dsn, query="SELECT down, up, ping, device, geom FROM north.tests "
                        "ORDER BY id")
    path = folder / f"{name}.toml"
    path.write_text(tomli_w.dumps(raw), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def north(pg_server, tmp_path_factory):
    """The north world as files and as tables: (folder, files config, database config)."""
    folder = tmp_path_factory.mktemp("north")
    files = worlds.write_north_world(folder)
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        _load_north(conn, folder)
    return folder, files, _north_config(folder, pg_server.dsn())


def _cli(*args: str):
    return CliRunner().invoke(cli, ["-q", *args])


# --- inputs --------------------------------------------------------------------------------


def test_every_layer_from_postgis_gives_the_hand_made_answers(north):
    folder, files, from_db = north
    result = analyse(load_config(from_db))
    got = result.villages.set_index("village_code")
    expected = worlds.expected_frame()
    for code, row in expected.iterrows():
        assert got.loc[code, "fibre"] == row["fibre"], code
        assert got.loc[code, "fibre_basis"] == row["fibre_basis"], code
        assert got.loc[code, "tests"] == row["tests"], code
        assert got.loc[code, "devices"] == row["devices"], code
        assert got.loc[code, "speed_class"] == row["speed_class"], code
        median = got.loc[code, "download_median_mbps"]
        assert (pd.isna(median) and row["download_median_mbps"] is None) or (
            median == row["download_median_mbps"]), code
    # the same checks and engine as the files: the same village table, the same findings
    from_files = analyse(load_config(files))
    pd.testing.assert_frame_equal(
        pd.DataFrame(result.villages[list(VILLAGE_COLUMNS)]),
        pd.DataFrame(from_files.villages[list(VILLAGE_COLUMNS)]))
    assert sorted(result.issues["reason"]) == sorted(from_files.issues["reason"])
    records = {r.layer: r for r in result.inputs}
    assert records["speed"].dropped == {"missing_geometry": 1, "negative_speed": 1,
                                        "outside_villages": 1}
    assert records["speed"].rows_read == 32
    assert isinstance(records["fibre[0]"].path, DatabaseSource)
    assert records["fibre[0]"].path.table == "north.access_points"


def test_speed_tests_stream_from_a_server_side_cursor_in_batches(north, pg_server):
    _, _, from_db = north
    speed = load_config(from_db).speed
    plan = io.read_plan(speed.path, lon=speed.lon, lat=speed.lat, name="speed")
    assert plan.kind == "postgis" and plan.geometry == "geom"
    batches = io.iter_batches(plan, [*plan.columns, plan.geometry], batch_rows=5)
    first = next(batches)
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        open_cursors = conn.execute(
            "SELECT query FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND "
            "query LIKE 'FETCH FORWARD 5 FROM %ruralcov_read%'").fetchall()
    rest = list(batches)
    assert len(open_cursors) == 1, open_cursors  # the read is a cursor on the server
    sizes = [first.num_rows, *(b.num_rows for b in rest)]
    assert max(sizes) == 5 and sum(sizes) == 32


def test_a_query_is_read_only_and_a_percent_sign_is_text(north, pg_server):
    dsn = pg_server.dsn()
    for query in ("SELECT 1 AS x; DROP TABLE north.tests",
                  "SELECT 1 AS x) AS q; COMMIT; DROP TABLE north.tests; --",
                  "DELETE FROM north.tests RETURNING *",
                  "WITH gone AS (DELETE FROM north.tests RETURNING *) SELECT * FROM gone"):
        with pytest.raises(InputError, match="cannot read query"):
            io.read_table(DatabaseSource(dsn, query=query), name="villages")
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM north.tests").fetchone()[0] == 32
    found = io.read_table(DatabaseSource(
        dsn, query="SELECT code FROM north.register WHERE name LIKE '%by' ORDER BY code"),
        name="villages")
    assert found["code"].tolist() == ["V1", "V2", "V3", "V4", "V5"]


def test_passwords_come_from_pgpassword_or_pgpass_never_the_configuration(
        north, pg_server, tmp_path, monkeypatch):
    folder, _, _ = north
    reader = pg_server.dsn(user=READER)
    cfg = _north_config(folder, reader, name="north-reader")
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    refused = _cli("run", str(cfg), "--out", str(tmp_path / "a"), "--no-maps")
    assert refused.exit_code == 2 and "PGPASSWORD" in refused.stderr, refused.output
    assert "Traceback" not in refused.output and not (tmp_path / "a").exists()

    monkeypatch.setenv("PGPASSWORD", READER_PASSWORD)
    done = _cli("run", str(cfg), "--out", str(tmp_path / "a"), "--no-maps")
    assert done.exit_code == 0, done.output
    for path in (tmp_path / "a").rglob("*"):
        if path.is_file():
            assert READER_PASSWORD.encode() not in path.read_bytes(), path
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text(encoding="utf-8"))
    inputs = {r["layer"]: r for r in manifest["inputs"]}
    assert inputs["villages"]["table"] == "north.register"
    assert inputs["speed"]["query"].startswith("SELECT down, up, ping")
    assert inputs["speed"]["path"] == reader and len(inputs["speed"]["sha256"]) == 64

    monkeypatch.delenv("PGPASSWORD")
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"*:*:*:{READER}:{READER_PASSWORD}\n", encoding="utf-8")
    pgpass.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    again = _cli("run", str(cfg), "--out", str(tmp_path / "b"), "--no-maps")
    assert again.exit_code == 0, again.output
    manifest_b = json.loads((tmp_path / "b" / "manifest.json").read_text(encoding="utf-8"))
    # the same rows read again: the same content hashes
    assert [r["sha256"] for r in manifest_b["inputs"]] == [r["sha256"] for r in
                                                          manifest["inputs"]]

    text = cfg.read_text(encoding="utf-8").replace(
        f"{READER}@", f"{READER}:{READER_PASSWORD}@", 1)
    cfg.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="PGPASSWORD"):
        load_config(cfg)


def test_verify_recomputes_a_run_read_from_postgis(north, tmp_path):
    from ruralcov.verify import verify_run

    _, _, from_db = north
    done = _cli("run", str(from_db), "--out", str(tmp_path / "run"), "--no-maps")
    assert done.exit_code == 0, done.output
    checks = verify_run(tmp_path / "run")
    assert set(checks["status"]) == {"ok", "note"}, checks[checks["status"] != "ok"]
    notes = checks[checks["status"] == "note"]
    assert sorted(notes["check"]) == ["input"] * 6  # the six database inputs
    assert checks.loc[checks["path"] == "results.gpkg", "status"].tolist() == ["ok", "ok"]


def test_the_content_hash_follows_the_rows(north, pg_server):
    _, _, from_db = north
    before = {r.layer: r.sha256 for r in analyse(load_config(from_db)).inputs}
    with psycopg.connect(pg_server.dsn()) as conn:
        conn.execute("UPDATE north.tests SET down = down + 0.5 WHERE id = 3")
    try:
        after = {r.layer: r.sha256 for r in analyse(load_config(from_db)).inputs}
    finally:
        with psycopg.connect(pg_server.dsn()) as conn:
            conn.execute("UPDATE north.tests SET down = down - 0.5 WHERE id = 3")
    assert after["speed"] != before["speed"]
    assert {k: v for k, v in after.items() if k != "speed"} == {
        k: v for k, v in before.items() if k != "speed"}


# --- output --------------------------------------------------------------------------------

WEIRD_SCHEMA = 'out"; DROP TABLE public.victim; --'
WEIRD_RUN = "o'brien; DROP TABLE public.victim; --"


def _tables_of(conn: psycopg.Connection, schema: str) -> set[str]:
    return {r[0] for r in conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
        (schema,)).fetchall()}


def test_to_postgis_writes_the_tables_with_keys_index_and_definitions(north, pg_server,
                                                                      tmp_path):
    folder, files, _ = north
    raw = tomllib.loads(files.read_text(encoding="utf-8"))
    raw["run"]["name"] = WEIRD_RUN
    cfg = folder / "weird.toml"
    cfg.write_text(tomli_w.dumps(raw), encoding="utf-8")
    dsn = pg_server.dsn()
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS public.victim (x int)")
    out = tmp_path / "run"
    done = _cli("run", str(cfg), "--out", str(out), "--no-maps", "--to-postgis", dsn,
                "--schema", WEIRD_SCHEMA)
    assert done.exit_code == 0, done.output
    tables = out / "tables"
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT to_regclass('public.victim')").fetchone()[0] is not None
        assert _tables_of(conn, WEIRD_SCHEMA) == {"runs", "villages", "summaries", "gaps",
                                                  "issues"}
        q = psycopg.sql.SQL("SELECT count(*) FROM {} WHERE run = %s")
        counts = {t: conn.execute(q.format(psycopg.sql.Identifier(WEIRD_SCHEMA, t)),
                                  (WEIRD_RUN,)).fetchone()[0]
                  for t in ("runs", "villages", "summaries", "gaps", "issues")}
        csv_rows = {p.stem: len(pd.read_csv(p, dtype=str)) for p in tables.glob("*.csv")}
        assert counts == {
            "runs": 1, "villages": csv_rows["villages"],
            "summaries": sum(n for k, n in csv_rows.items() if k.startswith("summary_")),
            "gaps": sum(n for k, n in csv_rows.items() if k.startswith("gaps_")),
            "issues": csv_rows["issues"]}
        keys = conn.execute(
            "SELECT c.conrelid::regclass::text FROM pg_constraint c JOIN pg_namespace n ON "
            "n.oid = c.connamespace WHERE n.nspname = %s AND c.contype = 'p'",
            (WEIRD_SCHEMA,)).fetchall()
        assert len(keys) == 5
        index = conn.execute("SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND "
                             "tablename = 'villages' AND indexdef LIKE '%%gist%%'",
                             (WEIRD_SCHEMA,)).fetchall()
        assert len(index) == 1
        undefined = conn.execute(
            "SELECT c.table_name, c.column_name FROM information_schema.columns c WHERE "
            "c.table_schema = %s AND c.table_name <> 'runs' AND col_description("
            "format('%%I.%%I', c.table_schema, c.table_name)::regclass, c.ordinal_position) "
            "IS NULL", (WEIRD_SCHEMA,)).fetchall()
        assert undefined == []
        manifest = conn.execute(psycopg.sql.SQL("SELECT manifest FROM {} WHERE run = %s").format(
            psycopg.sql.Identifier(WEIRD_SCHEMA, "runs")), (WEIRD_RUN,)).fetchone()[0]
        assert manifest == json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        rows = conn.execute(psycopg.sql.SQL(
            "SELECT village_code, ST_AsBinary(geom), tests FROM {} WHERE run = %s").format(
            psycopg.sql.Identifier(WEIRD_SCHEMA, "villages")), (WEIRD_RUN,)).fetchall()
    villages = gpd.read_parquet(out / "villages.parquet").set_index("village_code")
    for code, wkb, tests in rows:
        want = villages.loc[code, "geometry"]
        assert (wkb is None and want is None) or shapely.from_wkb(bytes(wkb)).equals_exact(
            want, 0), code
        assert tests == villages.loc[code, "tests"]

    # the same run again: refused before any work without --force, replaced with it
    again = _cli("run", str(cfg), "--out", str(tmp_path / "other"), "--no-maps", "--to-postgis",
                 dsn, "--schema", WEIRD_SCHEMA)
    assert again.exit_code == 2 and "already holds a run" in again.stderr
    assert not (tmp_path / "other").exists()
    forced = _cli("run", str(cfg), "--out", str(tmp_path / "other"), "--no-maps",
                  "--to-postgis", dsn, "--schema", WEIRD_SCHEMA, "--force")
    assert forced.exit_code == 0, forced.output
    with psycopg.connect(dsn) as conn:
        n = conn.execute(psycopg.sql.SQL("SELECT count(*) FROM {}").format(
            psycopg.sql.Identifier(WEIRD_SCHEMA, "villages"))).fetchone()[0]
    assert n == counts["villages"]


def test_a_failed_write_leaves_nothing_half_written(north, pg_server, tmp_path):
    _, files, _ = north
    dsn = pg_server.dsn()
    with psycopg.connect(dsn) as conn:
        conn.execute("DROP SCHEMA IF EXISTS broken CASCADE")
        conn.execute("CREATE SCHEMA broken")
        # an issues table someone made: its NOT NULL column stops the copy of the issues,
        # the last table written
        conn.execute("CREATE TABLE broken.issues (run text, issue_id bigint, "
                     "must_fill text NOT NULL)")
    failed = _cli("run", str(files), "--out", str(tmp_path / "run"), "--no-maps",
                  "--to-postgis", dsn, "--schema", "broken")
    assert failed.exit_code == 2, failed.output
    assert "nothing was written to the database" in failed.stderr
    assert "Traceback" not in failed.output
    assert not (tmp_path / "run").exists()  # nor to the run folder
    with psycopg.connect(dsn) as conn:
        assert _tables_of(conn, "broken") == {"issues"}
        columns = conn.execute("SELECT column_name FROM information_schema.columns WHERE "
                               "table_schema = 'broken' AND table_name = 'issues'").fetchall()
        assert sorted(c for (c,) in columns) == ["issue_id", "must_fill", "run"]


def test_output_dsn_with_a_password_is_refused(north, tmp_path):
    _, files, _ = north
    refused = _cli("run", str(files), "--out", str(tmp_path / "run"), "--no-maps",
                   "--to-postgis", "postgresql://ruralcov:secret@localhost/db")
    assert refused.exit_code == 2 and "PGPASSWORD" in refused.stderr
    assert "secret" not in refused.stderr and not (tmp_path / "run").exists()


# --- cross-check against PostGIS SQL -------------------------------------------------------

#: Per village: usable tests (download a number in [0, 10000] Mbit/s and a location), copies
#: of an earlier row left out, each placed in the lowest code among the polygons covering it.
CROSS_CHECK = """
WITH usable AS (
    SELECT DISTINCT ON ({cols}) download_mbps, ST_SetSRID(ST_MakePoint(lon, lat), 4326) AS pt,
           ctid AS tid
    FROM {tests}
    WHERE lon IS NOT NULL AND lat IS NOT NULL AND download_mbps >= 0
      AND download_mbps <= 10000 AND download_mbps <> 'NaN'::float8
    ORDER BY {cols}, ctid
), placed AS (
    SELECT DISTINCT ON (u.tid) u.tid, u.download_mbps, v.code
    FROM usable u JOIN {villages} v ON ST_Covers(v.geom, u.pt)
    ORDER BY u.tid, v.code
)
SELECT code, count(*) AS tests,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY download_mbps) AS median
FROM placed GROUP BY code
"""


def _sql_statistics(dsn: str, schema: str, villages: gpd.GeoDataFrame,
                    tests: pd.DataFrame) -> pd.DataFrame:
    """Load the polygons and tests as ``<schema>.villages`` and ``<schema>.tests``, and
    compute the statistics of every village by :data:`CROSS_CHECK`."""
    with psycopg.connect(dsn) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        load_frame(conn, f"{schema}.villages", villages.rename_geometry("geom"),
                   geometry="geom", key=None)
        load_frame(conn, f"{schema}.tests", tests, key=None)
        conn.execute(f"CREATE INDEX ON {schema}.villages USING GIST (geom)")
        conn.execute(f"ANALYZE {schema}.villages")
        query = CROSS_CHECK.format(cols=", ".join(tests.columns), tests=f"{schema}.tests",
                                   villages=f"{schema}.villages")
        rows = conn.execute(query).fetchall()
    return pd.DataFrame(rows, columns=["code", "tests", "median"]).set_index("code")


def _assert_same_statistics(result, sql: pd.DataFrame) -> None:
    """Every village: the SQL count and median equal the engine's (no tests: no SQL row).

    ``percentile_cont`` interpolates ``a + (b - a) * 0.5`` between the two middle values, the
    engine takes ``(a + b) / 2``: the same number up to the last bit of a double."""
    got = result.villages.set_index("village_code")
    want = sql.reindex(got.index)
    tests = want["tests"].fillna(0).astype(int)
    assert (got["tests"] == tests).all(), got.index[got["tests"] != tests].tolist()[:5]
    a, b = got["download_median_mbps"].to_numpy(), want["median"].to_numpy(dtype=float)
    both = ~np.isnan(a)
    assert (np.isnan(a) == np.isnan(b)).all()
    assert (np.abs(a[both] - b[both]) <= np.spacing(np.abs(b[both]))).all()


def _edge_world(folder: Path) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """A 3 x 3 grid of quarter-degree squares, codes not in grid order, and tests in their
    interiors, on shared edges, on vertices shared by four squares, on the outer boundary and
    outside; binary fractions, so every coordinate is exact."""
    codes = ["V5", "V2", "V8", "V1", "V9", "V3", "V7", "V4", "V6"]
    x0, y0, step = 112.0, 37.0, 0.25
    squares = [box(x0 + i * step, y0 + j * step, x0 + (i + 1) * step, y0 + (j + 1) * step)
               for j in range(3) for i in range(3)]
    polygons = gpd.GeoDataFrame({"code": codes}, geometry=squares, crs="EPSG:4326")
    ks = range(-1, 14)  # quarter steps: interiors, edges and vertices, and outside
    points = [(x0 + i * step / 4, y0 + j * step / 4) for i in ks for j in ks
              if j % 2 or j % 4 == 0]
    rng = np.random.default_rng(7)
    tests = pd.DataFrame({"lon": [p[0] for p in points], "lat": [p[1] for p in points]})
    tests["download_mbps"] = np.round(rng.uniform(1, 200, len(tests)), 2)
    tests["device_id"] = [f"d{i % 11}" for i in range(len(tests))]
    register = pd.DataFrame({"code": codes, "name": [f"village {c}" for c in codes],
                             "township": "T1", "county": "K1"})
    register.to_csv(folder / "register.csv", index=False)
    return polygons, tests


def _config(folder: Path, dsn: str, *, register: dict, speed_table: str, boundaries: str,
            code: str) -> Path:
    raw = {
        "run": {"name": "cross-check"},
        "villages": register,
        "boundaries": {"path": dsn, "table": boundaries, "code": code},
        "speed": {"path": dsn, "table": speed_table, "lon": "lon", "lat": "lat",
                  "download": "download_mbps", "crs": "EPSG:4326"},
        "maps": {"enabled": False},
    }
    path = folder / "cross.toml"
    path.write_text(tomli_w.dumps(raw), encoding="utf-8")
    return path


def test_sql_agrees_on_shared_edges_and_vertices(pg_server, tmp_path):
    polygons, tests = _edge_world(tmp_path)
    dsn = pg_server.dsn()
    sql = _sql_statistics(dsn, "edges", polygons, tests)
    cfg = _config(tmp_path, dsn, register={
        "path": "register.csv", "register": "generic",
        "levels": {"township": "township", "county": "county"}},
        speed_table="edges.tests", boundaries="edges.villages", code="code")
    result = analyse(load_config(cfg))
    _assert_same_statistics(result, sql)
    # the world does what it says: points on every shared edge and vertex, counted once
    assert result.villages["tests"].sum() == sql["tests"].sum()
    on_vertex = (tests["lon"] == 112.25) & (tests["lat"] == 37.25)
    assert on_vertex.sum() == 1  # four squares meet there: V5, V2, V1, V9; V1 takes it


def test_sql_agrees_with_the_engine_on_the_demo(pg_server, tmp_path):
    from ruralcov.demo import build_demo_inputs

    inputs = tmp_path / "inputs"
    build_demo_inputs(inputs)
    villages = gpd.read_file(inputs / "village_polygons.gpkg", layer="villages")
    tests = pq.read_table(inputs / "speedtests.parquet").to_pandas()
    dsn = pg_server.dsn()
    sql = _sql_statistics(dsn, "demo", villages, tests)
    cfg = _config(inputs, dsn, register={"path": "villages.csv", "register": "cn-nbs"},
                  speed_table="demo.tests", boundaries="demo.villages", code="code")
    result = analyse(load_config(cfg))
    assert len(result.villages) > 18_000 and result.villages["tests"].sum() > 250_000
    _assert_same_statistics(result, sql)

