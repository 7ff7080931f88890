"""Speed tests to village polygons: ruralcov's engine against geopandas and DuckDB spatial.

Every engine gets the same synthetic world: about 20,000 village polygons (Voronoi cells of
settlements, segmentized to ~35 vertices) over a Shanxi-sized area (110.2-114.6 E,
34.6-40.7 N), and test points clustered around the settlements, written as Parquet. Each
engine, one after another in a fresh process, answers the same question from the file: the
number of tests and the median download per village. The bench checks that the answers agree,
prints seconds and peak RSS per engine and the ratios, and ends with one line of JSON.

    python bench/join.py --points 10_000_000
    python bench/join.py --points 1_000_000 --points 10_000_000 --end-to-end
    python bench/join.py --points 100_000_000 --engines ruralcov   # written to disk in chunks

Engines:
  ruralcov   ruralcov.stream: batches read with pyarrow, joined with the numba grid index,
             exact per-village statistics in bounded memory;
  geopandas  read_parquet, points_from_xy, sjoin(predicate="within"), groupby (the obvious
             user code);
  duckdb     duckdb==1.4.4 with the spatial extension loaded from the installed
             duckdb-ext-spatial package, an R-tree index on the polygons, ST_Contains.
  run        (--end-to-end) ``ruralcov run --no-maps`` over a folder of Parquet parts and a
             register of the same villages: reading, validation, join, statistics, tables.

Peak RSS is the child process's ``ru_maxrss``. Medians are compared with a relative tolerance
of 1e-12 (DuckDB interpolates the median as ``a + 0.5 (b - a)``, pandas and ruralcov take
``(a + b) / 2``); counts must be identical.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BBOX = (110.2, 34.6, 114.6, 40.7)
HERE = Path(__file__).resolve().parent
CHUNK = 5_000_000


# --- the world ---------------------------------------------------------------------------------


def make_villages(folder: Path, *, n: int = 20_000, vertices: int = 35, seed: int = 4) -> Path:
    """Village polygons as GeoParquet (code, geometry) and a register CSV for ``ruralcov run``."""
    import geopandas as gpd
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


# --- engines (each runs in its own process) ----------------------------------------------------


def _villages(path: Path):
    import geopandas as gpd

    return gpd.read_parquet(path, columns=["code", "geometry"])


def engine_ruralcov(villages: Path, tests: Path) -> dict:
    from ruralcov.config import SpeedConfig
    from ruralcov.join import PolygonIndex
    from ruralcov.stream import reuse_arrow_memory, stream_speed_tests

    reuse_arrow_memory()  # as the command line does
    v = _villages(villages)
    rank = v["code"].rank(method="dense").to_numpy()
    index = PolygonIndex(v.geometry.values, priority=rank)
    speed = SpeedConfig(path=tests, upload=None, latency=None, device=None, crs="EPSG:4326")
    res = stream_speed_tests(speed, index, n_villages=len(v), target_mbps=np.full(len(v), 12.0),
                             hash_input=False)
    s = res.stats
    return {"code": v["code"].to_numpy(), "tests": s["tests"].to_numpy(),
            "median": s["download_median_mbps"].to_numpy()}


def engine_geopandas(villages: Path, tests: Path) -> dict:
    import geopandas as gpd
    import pandas as pd

    v = _villages(villages)
    t = pd.read_parquet(tests, columns=["lon", "lat", "download_mbps"])
    pts = gpd.GeoDataFrame(t[["download_mbps"]], geometry=gpd.points_from_xy(t.lon, t.lat),
                           crs="EPSG:4326")
    del t
    joined = gpd.sjoin(pts, v, predicate="within", how="inner")
    g = joined.groupby("code")["download_mbps"].agg(["size", "median"])
    g = g.reindex(v["code"])
    return {"code": v["code"].to_numpy(), "tests": g["size"].fillna(0).to_numpy(np.int64),
            "median": g["median"].to_numpy()}


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


def engine_duckdb(villages: Path, tests: Path) -> dict:
    import duckdb

    con = duckdb.connect()
    con.execute(f"LOAD '{_spatial_extension()}'")
    con.execute(f"SET threads = {os.cpu_count()}")
    con.execute(
        f"CREATE TABLE villages AS SELECT code, geometry AS geom FROM '{villages}'"
    )
    con.execute("CREATE INDEX villages_rtree ON villages USING RTREE (geom)")
    glob = f"{tests}/*.parquet" if tests.is_dir() else str(tests)
    rows = con.execute(
        f"""
        SELECT v.code, count(*) AS tests, median(t.download_mbps) AS median
        FROM read_parquet('{glob}') t
        JOIN villages v ON ST_Contains(v.geom, ST_Point(t.lon, t.lat))
        GROUP BY v.code
        """
    ).fetchnumpy()
    codes = con.execute("SELECT code FROM villages").fetchnumpy()["code"]
    import pandas as pd

    g = pd.DataFrame({"tests": rows["tests"], "median": rows["median"]},
                     index=rows["code"]).reindex(codes)
    return {"code": np.asarray(codes), "tests": g["tests"].fillna(0).to_numpy(np.int64),
            "median": g["median"].to_numpy(dtype=float)}


def engine_run(villages: Path, tests: Path) -> dict:
    """``ruralcov run --no-maps`` end to end (reading, validation, join, stats, tables)."""
    import pandas as pd
    import tomli_w
    from click.testing import CliRunner

    from ruralcov.cli import cli

    folder = villages.parent
    config = {
        "run": {"name": "bench"},
        "villages": {"path": str(folder / "register.csv")},
        "boundaries": {"path": str(villages), "code": "code"},
        "speed": {"path": str(tests), "crs": "EPSG:4326"},
    }
    cfg = folder / "bench_run.toml"
    cfg.write_text(tomli_w.dumps(config), encoding="utf-8")
    out = folder / "bench_run_out"
    result = CliRunner().invoke(cli, ["-q", "run", str(cfg), "--out", str(out), "--no-maps",
                                      "--force"],
                                catch_exceptions=False)
    if result.exit_code != 0:
        raise SystemExit(result.output)
    table = pd.read_parquet(out / "villages.parquet",
                            columns=["village_code", "tests", "download_median_mbps"])
    return {"code": table["village_code"].to_numpy(), "tests": table["tests"].to_numpy(np.int64),
            "median": table["download_median_mbps"].to_numpy(dtype=float)}


ENGINES = {"ruralcov": engine_ruralcov, "geopandas": engine_geopandas, "duckdb": engine_duckdb,
           "run": engine_run}


def child(engine: str, villages: Path, tests: Path, result: Path) -> None:
    t0 = time.perf_counter()
    got = ENGINES[engine](villages, tests)
    seconds = time.perf_counter() - t0
    got["code"] = np.asarray(got["code"]).astype(str)
    np.savez(result, **got, seconds=seconds,
             rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def run_engine(engine: str, villages: Path, tests: Path, folder: Path) -> dict:
    result = folder / f"result_{engine}.npz"
    cmd = [sys.executable, __file__, "--child", engine, str(villages), str(tests), str(result)]
    subprocess.run(cmd, check=True)
    with np.load(result, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def compare(a: dict, b: dict) -> dict:
    """Counts identical, medians equal to 1e-12 relative, on villages in the same order."""
    import pandas as pd

    left = pd.DataFrame({"tests": a["tests"], "median": a["median"]}, index=a["code"])
    right = pd.DataFrame({"tests": b["tests"], "median": b["median"]}, index=b["code"])
    right = right.reindex(left.index)
    counts = bool((left["tests"].to_numpy() == right["tests"].to_numpy()).all())
    m1, m2 = left["median"].to_numpy(), right["median"].to_numpy()
    both_nan = np.isnan(m1) & np.isnan(m2)
    close = both_nan | np.isclose(m1, m2, rtol=1e-12, atol=0)
    exact = both_nan | (m1 == m2)
    return {"counts_identical": counts, "medians_equal": bool(close.all()),
            "medians_bitwise_identical": int(exact.sum()), "villages": len(m1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=lambda s: int(s.replace("_", "")), action="append",
                    help="test points (repeatable; default 1M and 10M)")
    ap.add_argument("--villages", type=int, default=20_000)
    ap.add_argument("--engines", default="ruralcov,duckdb,geopandas")
    ap.add_argument("--end-to-end", action="store_true",
                    help="also time `ruralcov run --no-maps` on the same data")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs of each engine, in turn; the median is reported (noisy machines)")
    ap.add_argument("--data", type=Path, default=HERE / "data",
                    help="folder for the generated world (reused when present)")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        engine, villages, tests, result = args.child
        child(engine, Path(villages), Path(tests), Path(result))
        return
    sizes = args.points or [1_000_000, 10_000_000]
    engines = [e for e in args.engines.split(",") if e]
    if args.end_to_end and "run" not in engines:
        engines.append("run")
    folder = args.data / f"v{args.villages}"
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    villages = make_villages(folder, n=args.villages)
    print(f"world: {args.villages} villages ({time.perf_counter() - t0:.1f} s)", flush=True)
    report: dict = {"villages": args.villages, "cpus": os.cpu_count(), "runs": []}
    warm = [e for e in engines if e in ("ruralcov", "run")]
    if warm:  # numba compiles ruralcov's kernels on a machine's first run: not timed
        t0 = time.perf_counter()
        small = make_points(folder, villages, 10_000)
        for engine in warm:
            run_engine(engine, villages, small, folder)
        print(f"warm-up of {', '.join(warm)} on 10,000 points (numba's cache): "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
    for n in sizes:
        t0 = time.perf_counter()
        tests = make_points(folder, villages, n)
        print(f"\n{n:,} points in {tests} ({time.perf_counter() - t0:.1f} s)", flush=True)
        runs: dict[str, list[dict]] = {e: [] for e in engines}
        for _ in range(args.repeat):  # engines in turn, so that a slow phase hits them all
            for engine in engines:
                runs[engine].append(run_engine(engine, villages, tests, folder))
        results = {}
        for engine, rs in runs.items():
            seconds = [float(r["seconds"]) for r in rs]
            results[engine] = dict(rs[0], seconds=float(np.median(seconds)),
                                   rss=max(float(r["rss"]) for r in rs))
            every = f"  (runs: {', '.join(f'{t:.2f}' for t in seconds)})" if len(rs) > 1 else ""
            print(f"  {engine:<10} {results[engine]['seconds']:8.2f} s   peak RSS "
                  f"{results[engine]['rss'] / 2**30:6.2f} GiB{every}", flush=True)
        entry: dict = {"points": n, "engines": {
            e: {"seconds": round(float(r["seconds"]), 3),
                "seconds_each": [round(float(x["seconds"]), 3) for x in runs[e]],
                "peak_rss_gib": round(float(r["rss"]) / 2**30, 3)} for e, r in results.items()}}
        base = "ruralcov" if "ruralcov" in results else engines[0]
        entry["agreement"] = {e: compare(results[base], r) for e, r in results.items() if e != base}
        for e, agree in entry["agreement"].items():
            print(f"  {base} vs {e}: counts identical {agree['counts_identical']}, medians equal "
                  f"{agree['medians_equal']} ({agree['medians_bitwise_identical']} of "
                  f"{agree['villages']} bitwise)")
        ratios = {}
        for e in results:
            if e != base:
                ratios[f"{e}/{base}"] = round(float(results[e]["seconds"]) /
                                              float(results[base]["seconds"]), 2)
        if "run" in results and "duckdb" in results:
            ratios["run/duckdb"] = round(float(results["run"]["seconds"]) /
                                         float(results["duckdb"]["seconds"]), 2)
        entry["time_ratios"] = ratios
        print("  ratios: " + ", ".join(f"{k} {v}" for k, v in ratios.items()))
        report["runs"].append(entry)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
