"""Speed tests to village polygons: ruralcov against DuckDB spatial and geopandas, each engine
timed as a whole process.

Every engine gets the same synthetic world: about 20,000 village polygons (Voronoi cells of
settlements, segmentized to ~35 vertices) over a Shanxi-sized area (110.2-114.6 E,
34.6-40.7 N), and test points clustered around the settlements, written as Parquet parts. Each
engine answers the same question from the files, in a process of its own, and writes its answer
to a file: the number of tests and the median download per village. The bench checks that the
answers agree and prints, per engine, the median wall-clock seconds of the rounds, the CPU
seconds, the peak RSS, and the ratios; the last line is JSON.

    python bench/join.py --points 10_000_000 --end-to-end --repeat 5
    python bench/join.py --points 1_000_000 --points 10_000_000 --end-to-end
    python bench/join.py --points 100_000_000 --engines ruralcov   # written to disk in chunks

What is timed: the whole process, from the spawn to the exit, as a user running the engine
would wait for it: interpreter start, imports, reading the polygons and the tests, the join,
the statistics and writing the result file (and, for ``run``, the whole run folder). The wall
clock is taken by this (idle) parent around the child; the CPU seconds and the peak RSS are the
child's own (``os.wait4``). No engine runs inside this process, nor inherits anything from an
engine: the parent imports neither ruralcov nor DuckDB. The rounds alternate the engines (each
round starts with the next engine), so that a noisy phase of the shared machine falls on all of
them; each engine's median over the rounds is reported, and every run with the load average
before it. Before the rounds every engine runs once untimed on 10,000 points (numba's cache,
the libraries in the page cache) and the test files are read once (the page cache).

Engines:
  run        ``ruralcov -q run CONFIG --out DIR --no-maps --force``: the command line over a
             register CSV, the polygons as boundaries and the folder of Parquet parts; reading,
             validation, join, statistics, tables, villages.parquet, results.gpkg,
             report.xlsx, report.html, manifest. The answer is read from villages.parquet.
  duckdb     duckdb==1.4.4 and its spatial extension (from the duckdb-ext-spatial package),
             ``python`` importing nothing but duckdb, writing its answer with ``COPY ... TO``
             Parquet. Its best setup found on the project's 2-core machine (bench/README.md):
             ``threads`` = the machine's cores, ``preserve_insertion_order = false``, the
             default memory limit (the query needs 0.6 GB of it), no R-tree index on the
             polygons: DuckDB 1.4 plans a join on a spatial predicate as its SPATIAL_JOIN, which
             builds its own R-tree over the smaller side, so a ``CREATE INDEX ... USING RTREE``
             is built and never read (EXPLAIN shows a sequential scan of the polygons under the
             SPATIAL_JOIN). ``--duckdb-query`` picks the predicate: ``contains``
             (``ST_Contains(polygon, ST_Point(lon, lat))``: as fast as ``within`` within the
             noise, 32.7 against 32.2 CPU-s at 10 M, and faster than ``intersects``), ``within``,
             ``intersects``.
  ruralcov   the bare engine: ``ruralcov.stream.stream_speed_tests`` (pyarrow batches, numba
             grid index, exact statistics in bounded memory) without the rest of a run.
  geopandas  read_parquet, points_from_xy, sjoin(predicate="within"), groupby (the obvious
             user code).

Medians are compared with a relative tolerance of 1e-12 (DuckDB interpolates the median as
``a + 0.5 (b - a)``, pandas and ruralcov take ``(a + b) / 2``); counts must be identical.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BBOX = (110.2, 34.6, 114.6, 40.7)
HERE = Path(__file__).resolve().parent
CHUNK = 5_000_000


# --- the world ---------------------------------------------------------------------------------


def make_villages(folder: Path, *, n: int = 20_000, vertices: int = 35, seed: int = 4) -> Path:
    """Village polygons as GeoParquet (code, geometry) and a register CSV for ``ruralcov run``."""
    import geopandas as gpd
    import numpy as np
    import pandas as pd
    import shapely

    path = folder / "villages.parquet"
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = BBOX
    seeds = np.column_stack([rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)])
    cells = shapely.voronoi_polygons(shapely.multipoints(seeds), extend_to=shapely.box(*BBOX))
    cells = shapely.intersection(np.asarray(shapely.get_parts(cells)), shapely.box(*BBOX))
    # Order cells like their seeds, so village k surrounds settlement k.
    tree = shapely.STRtree(cells)
    pt_idx, cell_idx = tree.query(shapely.points(seeds), predicate="intersects")
    order = np.full(n, -1)
    order[pt_idx] = cell_idx
    cells = cells[order]
    perimeter = shapely.length(cells)
    cells = shapely.segmentize(cells, perimeter / vertices)
    codes = np.array([f"1401{k:08d}" for k in range(n)])
    gdf = gpd.GeoDataFrame({"code": codes, "sx": seeds[:, 0], "sy": seeds[:, 1]},
                           geometry=cells, crs="EPSG:4326")
    gdf.to_parquet(path)
    pd.DataFrame({"code": codes, "name": [f"村{k}村委会" for k in range(n)]}).to_csv(
        folder / "register.csv", index=False, encoding="utf-8"
    )
    return path


def make_points(folder: Path, villages: Path, n_points: int, *, seed: int = 7) -> Path:
    """Tests clustered around the settlements, in Parquet parts of CHUNK rows (1M-row groups)."""
    import geopandas as gpd
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = folder / f"tests_{n_points}"
    if (out / "_done").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    v = gpd.read_parquet(villages)
    sx, sy = v["sx"].to_numpy(), v["sy"].to_numpy()
    radius = np.sqrt(v.geometry.area.to_numpy() / np.pi)
    rng = np.random.default_rng(seed)
    weight = rng.lognormal(0, 1.0, len(v))
    weight /= weight.sum()
    for part, start in enumerate(range(0, n_points, CHUNK)):
        m = min(CHUNK, n_points - start)
        k = rng.choice(len(v), size=m, p=weight)
        r = radius[k] * np.abs(rng.normal(0, 0.6, m))
        a = rng.uniform(0, 2 * np.pi, m)
        lon = sx[k] + r * np.cos(a)
        lat = sy[k] + r * np.sin(a)
        stray = rng.random(m) < 0.02  # a few tests anywhere, some outside the province
        lon[stray] = rng.uniform(BBOX[0] - 0.2, BBOX[2] + 0.2, stray.sum())
        lat[stray] = rng.uniform(BBOX[1] - 0.2, BBOX[3] + 0.2, stray.sum())
        down = np.round(rng.lognormal(np.log(30), 0.8, m), 2)
        table = pa.table({
            "lon": lon, "lat": lat, "download_mbps": down,
            "upload_mbps": np.round(down * rng.uniform(0.1, 0.5, m), 2),
            "latency_ms": np.round(rng.lognormal(np.log(25), 0.5, m), 1),
            "device_id": rng.integers(0, max(n_points // 8, 1), m),
        })
        pq.write_table(table, out / f"part-{part:04d}.parquet", row_group_size=1_000_000)
    (out / "_done").touch()
    return out




# --- engines (each runs in its own process: ``join.py --child ENGINE ...``) -------------------


def _write_answer(path: Path, code, tests, median) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"code": code, "tests": tests, "median": median}), path)


def engine_ruralcov(villages: Path, tests: Path, out: Path) -> None:
    import geopandas as gpd
    import numpy as np

    from ruralcov.config import SpeedConfig
    from ruralcov.join import PolygonIndex
    from ruralcov.stream import reuse_arrow_memory, stream_speed_tests

    reuse_arrow_memory()  # as the command line does
    v = gpd.read_parquet(villages, columns=["code", "geometry"])
    rank = v["code"].rank(method="dense").to_numpy()
    index = PolygonIndex(v.geometry.values, priority=rank)
    speed = SpeedConfig(path=tests, upload=None, latency=None, device=None, crs="EPSG:4326")
    res = stream_speed_tests(speed, index, n_villages=len(v), target_mbps=np.full(len(v), 12.0),
                             hash_input=False)
    s = res.stats
    _write_answer(out, v["code"].to_numpy(), s["tests"].to_numpy(),
                  s["download_median_mbps"].to_numpy())


def engine_geopandas(villages: Path, tests: Path, out: Path) -> None:
    import geopandas as gpd
    import numpy as np
    import pandas as pd

    v = gpd.read_parquet(villages, columns=["code", "geometry"])
    t = pd.read_parquet(tests, columns=["lon", "lat", "download_mbps"])
    pts = gpd.GeoDataFrame(t[["download_mbps"]], geometry=gpd.points_from_xy(t.lon, t.lat),
                           crs="EPSG:4326")
    del t
    joined = gpd.sjoin(pts, v, predicate="within", how="inner")
    g = joined.groupby("code")["download_mbps"].agg(["size", "median"]).reindex(v["code"])
    _write_answer(out, v["code"].to_numpy(), g["size"].fillna(0).to_numpy(np.int64),
                  g["median"].to_numpy())


def _spatial_extension() -> str:
    import importlib.util

    spec = importlib.util.find_spec("duckdb_ext")
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        found = sorted(Path(root).rglob("spatial.duckdb_extension"))
        if found:
            return str(found[0])
    raise SystemExit("duckdb-ext-spatial is not installed: pip install duckdb==1.4.4 "
                     "duckdb-ext-spatial")


#: The join predicates tried for DuckDB (``--duckdb-query``); each plans as a SPATIAL_JOIN.
DUCKDB_PREDICATES = {
    "contains": "ST_Contains(v.geom, ST_Point(t.lon, t.lat))",
    "within": "ST_Within(ST_Point(t.lon, t.lat), v.geom)",
    "intersects": "ST_Intersects(v.geom, ST_Point(t.lon, t.lat))",
}


def duckdb_sql(villages: Path, tests: Path, out: Path, *, query: str = "contains") -> list[str]:
    """The statements the DuckDB engine runs (its best setup, see the module's docstring)."""
    glob = f"{tests}/*.parquet" if tests.is_dir() else str(tests)
    return [
        f"LOAD '{_spatial_extension()}'",
        f"SET threads = {os.cpu_count()}",
        "SET preserve_insertion_order = false",
        f"CREATE TABLE villages AS SELECT code, geometry AS geom FROM read_parquet('{villages}')",
        f"""COPY (
            SELECT v.code, count(*) AS tests, median(t.download_mbps) AS median
            FROM read_parquet('{glob}') t
            JOIN villages v ON {DUCKDB_PREDICATES[query]}
            GROUP BY v.code
        ) TO '{out}' (FORMAT parquet)""",
    ]


def engine_duckdb(villages: Path, tests: Path, out: Path, *, query: str = "contains") -> None:
    import duckdb

    con = duckdb.connect()
    for statement in duckdb_sql(villages, tests, out, query=query):
        con.execute(statement)
    con.close()


ENGINES = {"ruralcov": engine_ruralcov, "geopandas": engine_geopandas, "duckdb": engine_duckdb}


def run_config(villages: Path, tests: Path, folder: Path) -> Path:
    """The configuration ``ruralcov run`` reads: the register, the polygons, the tests."""
    import tomli_w

    config = {
        "run": {"name": "bench"},
        "villages": {"path": str(folder / "register.csv")},
        "boundaries": {"path": str(villages), "code": "code"},
        "speed": {"path": str(tests), "crs": "EPSG:4326"},
    }
    cfg = folder / f"bench_run_{tests.name}.toml"
    cfg.write_text(tomli_w.dumps(config), encoding="utf-8")
    return cfg


def command(engine: str, villages: Path, tests: Path, folder: Path, *,
            duckdb_query: str = "contains") -> tuple[list[str], Path]:
    """The child's command line and the file its answer lands in."""
    if engine == "run":
        out = folder / "answer_run"
        exe = Path(sys.executable).with_name("ruralcov")
        cfg = run_config(villages, tests, folder)
        return [str(exe), "-q", "run", str(cfg), "--out", str(out), "--no-maps", "--force"], out
    out = folder / f"answer_{engine}.parquet"
    return [sys.executable, __file__, "--child", engine, str(villages), str(tests), str(out),
            duckdb_query], out


def timed(cmd: list[str]) -> dict:
    """Run ``cmd`` as a process of its own: wall seconds from the spawn to the exit (taken
    here), and the child's CPU seconds and peak RSS (``os.wait4``)."""
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{cmd[0]} ... exited with {proc.returncode}")
    return {"seconds": seconds, "cpu": usage.ru_utime + usage.ru_stime,
            "rss": usage.ru_maxrss * 1024, "load": load}


def answer(engine: str, out: Path) -> dict:
    """An engine's answer file as arrays (code, tests, median) in the order of its codes."""
    import numpy as np
    import pandas as pd

    if engine == "run":
        t = pd.read_parquet(out / "villages.parquet",
                            columns=["village_code", "tests", "download_median_mbps"])
        t.columns = ["code", "tests", "median"]
    else:
        t = pd.read_parquet(out)
    return {"code": t["code"].to_numpy().astype(str), "tests": t["tests"].to_numpy(np.int64),
            "median": t["median"].to_numpy(dtype=float)}


def compare(a: dict, b: dict) -> dict:
    """Counts identical, medians equal to 1e-12 relative, on ``a``'s villages (a village
    missing from ``b``, as from DuckDB's inner join, has no tests and no median)."""
    import numpy as np
    import pandas as pd

    left = pd.DataFrame({"tests": a["tests"], "median": a["median"]}, index=a["code"])
    right = pd.DataFrame({"tests": b["tests"], "median": b["median"]}, index=b["code"])
    right = right.reindex(left.index)
    right["tests"] = right["tests"].fillna(0)
    counts = bool((left["tests"].to_numpy() == right["tests"].to_numpy()).all())
    m1, m2 = left["median"].to_numpy(), right["median"].to_numpy(dtype=float)
    both_nan = np.isnan(m1) & np.isnan(m2)
    close = both_nan | np.isclose(m1, m2, rtol=1e-12, atol=0)
    exact = both_nan | (m1 == m2)
    return {"counts_identical": counts, "medians_equal": bool(close.all()),
            "medians_bitwise_identical": int(exact.sum()), "villages": len(m1)}


def rounds(engines: list[str], villages: Path, tests: Path, folder: Path, *, repeat: int,
           duckdb_query: str) -> dict[str, list[dict]]:
    """``repeat`` rounds of every engine, each round starting with the next engine."""
    runs: dict[str, list[dict]] = {e: [] for e in engines}
    for r in range(repeat):
        for engine in engines[r % len(engines):] + engines[:r % len(engines)]:
            cmd, _ = command(engine, villages, tests, folder, duckdb_query=duckdb_query)
            runs[engine].append(timed(cmd))
            last = runs[engine][-1]
            print(f"    round {r + 1}: {engine:<10} {last['seconds']:7.2f} s  (cpu "
                  f"{last['cpu']:6.2f} s, load {last['load']:.2f})", flush=True)
    return runs


def summary(engines: list[str], runs: dict[str, list[dict]]) -> dict:
    """Per engine: the median seconds and CPU seconds, every run, the peak RSS."""
    out = {}
    for e in engines:
        rs = runs[e]
        out[e] = {"seconds": round(statistics.median(r["seconds"] for r in rs), 3),
                  "cpu_seconds": round(statistics.median(r["cpu"] for r in rs), 3),
                  "seconds_each": [round(r["seconds"], 3) for r in rs],
                  "load_before_each": [round(r["load"], 2) for r in rs],
                  "peak_rss_gib": round(max(r["rss"] for r in rs) / 2**30, 3)}
        each = ", ".join(f"{r['seconds']:.2f}" for r in rs)
        every = f"  (runs: {each})" if len(rs) > 1 else ""
        print(f"  {e:<10} {out[e]['seconds']:8.2f} s   cpu {out[e]['cpu_seconds']:7.2f} s   "
              f"peak RSS {out[e]['peak_rss_gib']:5.2f} GiB{every}", flush=True)
    return out


#: ``--end-to-end``'s goal (issue #19): the run in at most half DuckDB's time, in 1.5 GB.
GOAL_RATIO, GOAL_RSS = 0.5, 1.5e9


def ratios(results: dict) -> dict:
    """Each engine's median seconds over the base engine's, and ``run/duckdb``."""
    base = "ruralcov" if "ruralcov" in results else next(iter(results))
    out = {f"{e}/{base}": round(results[e]["seconds"] / results[base]["seconds"], 3)
           for e in results if e != base}
    if "run" in results and "duckdb" in results:
        out["run/duckdb"] = round(results["run"]["seconds"] / results["duckdb"]["seconds"], 3)
    return out


def paired_ratios(runs: dict[str, list[dict]]) -> list[float]:
    """``run``'s seconds over DuckDB's in each round (the two ran next to each other)."""
    return [round(r["seconds"] / d["seconds"], 3)
            for r, d in zip(runs["run"], runs["duckdb"], strict=True)]


def goal_line(results: dict, time_ratios: dict, paired: list[float]) -> str | None:
    """The whole-process ratio of ``ruralcov run --no-maps`` to DuckDB against the goal: met
    when both the ratio of the medians and the median of the rounds' ratios are within it
    (on a shared machine a load that comes and goes can favour either engine's median)."""
    if "run/duckdb" not in time_ratios:
        return None
    ratio, rss = time_ratios["run/duckdb"], results["run"]["peak_rss_gib"] * 2**30
    by_round = statistics.median(paired)
    met = max(ratio, by_round) <= GOAL_RATIO and rss <= GOAL_RSS
    return (f"  whole processes: `ruralcov run --no-maps` {results['run']['seconds']:.2f} s / "
            f"DuckDB {results['duckdb']['seconds']:.2f} s = {ratio:.2f}; round by round "
            f"{', '.join(f'{x:.2f}' for x in paired)} (median {by_round:.2f}); goal <= "
            f"{GOAL_RATIO}; run's peak RSS {rss / 1e9:.2f} GB (goal <= {GOAL_RSS / 1e9:.1f}): "
            f"{'met' if met else 'NOT met'}")


def warm_up(engines: list[str], villages: Path, folder: Path, *, duckdb_query: str) -> None:
    """Every engine once on 10,000 points, untimed: numba compiles ruralcov's kernels on a
    machine's first run, and every engine's libraries come into the page cache."""
    t0 = time.perf_counter()
    small = make_points(folder, villages, 10_000)
    for engine in engines:
        cmd, _ = command(engine, villages, small, folder, duckdb_query=duckdb_query)
        subprocess.run(cmd, check=True)
    print(f"warm-up of {', '.join(engines)} on 10,000 points: {time.perf_counter() - t0:.1f} s",
          flush=True)


def read_once(tests: Path) -> None:
    """Read the test files once, so that every engine starts from the page cache."""
    for part in sorted(tests.glob("*.parquet")) if tests.is_dir() else [tests]:
        with part.open("rb") as fh:
            while fh.read(1 << 24):
                pass


def one_size(n: int, engines: list[str], villages: Path, folder: Path, args) -> dict:
    """Time every engine on ``n`` points; check their answers agree; print and return it."""
    t0 = time.perf_counter()
    tests = make_points(folder, villages, n)
    read_once(tests)
    print(f"\n{n:,} points in {tests} ({time.perf_counter() - t0:.1f} s); "
          f"{args.repeat} round(s), engines alternating", flush=True)
    runs = rounds(engines, villages, tests, folder, repeat=args.repeat,
                  duckdb_query=args.duckdb_query)
    results = summary(engines, runs)
    answers = {e: answer(e, command(e, villages, tests, folder)[1]) for e in engines}
    base = "ruralcov" if "ruralcov" in answers else engines[0]
    agreement = {e: compare(answers[base], a) for e, a in answers.items() if e != base}
    for e, agree in agreement.items():
        print(f"  {base} vs {e}: counts identical {agree['counts_identical']}, medians equal "
              f"{agree['medians_equal']} ({agree['medians_bitwise_identical']} of "
              f"{agree['villages']} bitwise)")
    time_ratios = ratios(results)
    print("  ratios of median wall-clock seconds: "
          + ", ".join(f"{k} {v:.2f}" for k, v in time_ratios.items()))
    paired = paired_ratios(runs) if "run" in runs and "duckdb" in runs else []
    goal = goal_line(results, time_ratios, paired)
    if goal:
        print(goal)
    return {"points": n, "engines": results, "agreement": agreement,
            "time_ratios": time_ratios, "run/duckdb_each_round": paired}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=lambda s: int(s.replace("_", "")), action="append",
                    help="test points (repeatable; default 1M and 10M)")
    ap.add_argument("--villages", type=int, default=20_000)
    ap.add_argument("--engines", default="ruralcov,duckdb,geopandas")
    ap.add_argument("--end-to-end", action="store_true",
                    help="also time `ruralcov run --no-maps` on the same data")
    ap.add_argument("--repeat", type=int, default=3,
                    help="rounds of the engines, alternating; medians are reported")
    ap.add_argument("--duckdb-query", choices=sorted(DUCKDB_PREDICATES), default="contains",
                    help="DuckDB's join predicate (see above)")
    ap.add_argument("--data", type=Path, default=HERE / "data",
                    help="folder for the generated world (reused when present)")
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        engine, villages, tests, out, query = args.child
        extra = {"query": query} if engine == "duckdb" else {}
        ENGINES[engine](Path(villages), Path(tests), Path(out), **extra)
        return
    sizes = args.points or [1_000_000, 10_000_000]
    engines = [e for e in args.engines.split(",") if e]
    if args.end_to_end and "run" not in engines:
        engines.append("run")
    folder = args.data / f"v{args.villages}"
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    villages = make_villages(folder, n=args.villages)
    print(f"world: {args.villages} villages ({time.perf_counter() - t0:.1f} s); "
          f"{os.cpu_count()} cpus", flush=True)
    warm_up(engines, villages, folder, duckdb_query=args.duckdb_query)
    report: dict = {"villages": args.villages, "cpus": os.cpu_count(),
                    "duckdb_query": args.duckdb_query, "repeat": args.repeat,
                    "runs": [one_size(n, engines, villages, folder, args) for n in sizes]}
    shutil.rmtree(folder / "answer_run", ignore_errors=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
