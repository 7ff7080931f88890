"""The national demo world run with the local engine and with the Dask engine, each as a whole
process, and the run folders' tables compared byte for byte.

    python bench/dask_engine.py                        # all 31 provinces (~10 M tests)
    python bench/dask_engine.py --province 64 --province 63 --workers 2

The world is the one ``ruralcov demo --national --no-maps`` writes (``--province``: those
provinces), built once into ``bench/data/`` (git-ignored) and reused; its ``config.toml`` is
then run twice, ``ruralcov -q run CONFIG --out DIR --no-maps --force`` and the same with
``--engine dask`` (a LocalCluster of ``--workers`` processes of one thread, started and closed
by the run). Each run is timed from the spawn to the exit of the child by this idle parent
(which imports neither ruralcov nor dask); CPU seconds are the child's ``os.wait4`` usage,
which holds the worker processes it reaped; memory is sampled every 0.2 s over the child's
whole process tree (psutil): the peak of the summed RSS of the run, the cluster's scheduler
side and its workers. The last line is JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "data"


def _ruralcov() -> str:
    return str(Path(sys.executable).with_name("ruralcov"))


def build_world(folder: Path, provinces: list[str], tests_per_village: float) -> Path:
    """The demo's run folder (its inputs and config.toml), built when it is not there yet."""
    config = folder / "config.toml"
    if config.exists():
        return config
    which = [a for p in provinces for a in ("--province", p)] or ["--national"]
    subprocess.run([_ruralcov(), "demo", *which, "--no-maps", "--tests-per-village",
                    str(tests_per_village), "--out", str(folder)], check=True)
    return config


def _sample(pid: int, peak: dict, stop: threading.Event) -> None:
    """The largest summed RSS of the process ``pid`` and its descendants, and how many of them
    were alive then."""
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    while not stop.is_set():
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        if total > peak["rss"]:
            peak.update(rss=total, processes=len(procs))
        stop.wait(0.2)


def timed(cmd: list[str]) -> dict:
    """Wall clock, CPU seconds and peak RSS (the child's own and summed over its tree)."""
    load = os.getloadavg()[0]
    start = time.perf_counter()
    child = subprocess.Popen(cmd)
    peak = {"rss": 0, "processes": 0}
    stop = threading.Event()
    sampler = threading.Thread(target=_sample, args=(child.pid, peak, stop), daemon=True)
    sampler.start()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"{' '.join(cmd)} exited with {child.returncode}")
    return {"wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_rss_gb": round(peak["rss"] / 1e9, 2), "processes": peak["processes"],
            "max_rss_one_process_gb": round(usage.ru_maxrss * 1024 / 1e9, 2),
            "load_before": round(load, 2)}


def tables(run: Path) -> dict[str, str]:
    """sha256 of every table of a run folder: the Parquet files and tables/*.csv."""
    files = sorted([*run.glob("*.parquet"), *run.glob("tables/*.csv")])
    return {p.relative_to(run).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--province", action="append", default=[], dest="provinces",
                        help="a province of the national world (repeatable; default: all)")
    parser.add_argument("--tests-per-village", type=float, default=16.0)
    parser.add_argument("--workers", type=int, default=0,
                        help="LocalCluster worker processes (0: one per core)")
    parser.add_argument("--engines", nargs="+", default=["local", "dask"])
    args = parser.parse_args()
    name = "national" if not args.provinces else "provinces-" + "-".join(sorted(args.provinces))
    world = DATA / f"dask-engine-{name}-{args.tests_per_village:g}"
    config = build_world(world / "world", args.provinces, args.tests_per_village)
    if args.workers:
        text = config.read_text(encoding="utf-8")
        config = config.with_name("config-workers.toml")  # beside it: its paths are relative
        config.write_text(text.replace("dask_workers = 0", f"dask_workers = {args.workers}"),
                          encoding="utf-8")
    out: dict[str, dict] = {}
    for engine in args.engines:
        run = world / f"run-{engine}"
        cmd = [_ruralcov(), "-q", "run", str(config), "--out", str(run), "--no-maps", "--force",
               "--engine", engine]
        out[engine] = timed(cmd)
        out[engine]["tables"] = tables(run)
        r = out[engine]
        print(f"{engine:<6} {r['wall_s']:7.1f} s  CPU {r['cpu_s']:7.1f} s  peak RSS "
              f"{r['peak_rss_gb']:5.2f} GB over {r['processes']} processes (one process at most "
              f"{r['max_rss_one_process_gb']:.2f} GB)  load before {r['load_before']}",
              flush=True)
    hashes = [r.pop("tables") for r in out.values()]
    differ = sorted(k for k in hashes[0] if any(h.get(k) != hashes[0][k] for h in hashes[1:]))
    same = all(set(h) == set(hashes[0]) for h in hashes) and not differ
    print(f"tables: {len(hashes[0])} files, {'identical' if same else 'DIFFER: ' + str(differ)}")
    print(json.dumps({"world": name, "tests_per_village": args.tests_per_village,
                      "runs": out, "tables_identical": same, "tables": sorted(hashes[0])}))


if __name__ == "__main__":
    main()
