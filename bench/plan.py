"""Benchmark of the fibre extension planner on the Shanxi demo (not part of the test suite).

Times ``ruralcov plan`` province-wide (reading the run folder included) and the engine alone
in harder settings: every county and every township planned to the last unconnected village,
the whole province as one area (the demo's ~550 unconnected villages grown from ~42,000
network points), and a stress case (all ~18,800 villages grown from 1 in 50 access points).
The last two are also run with brute-force Prim over all pairs, to show what the sparse graph
(k-d tree + Delaunay) saves, and both totals are compared.

Usage::

    python bench/plan.py                 # builds the demo run into a temporary folder
    python bench/plan.py out/demo        # or plans an existing demo run folder (a copy)
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyproj
import shapely

from ruralcov.plan import plan_run
from ruralcov.planner import PlanOptions, access_points, grow_network, plan_extension
from ruralcov.runfolder import read_run


def _demo_run(folder: Path) -> Path:
    from ruralcov import analyse, write_run
    from ruralcov.config import config_from_dict, replace
    from ruralcov.demo import build_demo_inputs

    inputs = folder / "inputs"
    raw = build_demo_inputs(inputs, seed=2020)
    result = analyse(replace(config_from_dict(raw, base=inputs), base=inputs))
    return write_run(result, folder / "run", maps=False, extra_inputs=inputs)


def _dense_prim(net: np.ndarray, cand: np.ndarray) -> float:
    """Prim over all pairs: O(n) per step, O(n²) in all."""
    best = np.full(len(cand), np.inf)
    for start in range(0, len(net), 2000):  # nearest network point, in blocks
        block = net[start : start + 2000]
        d = np.hypot(cand[:, None, 0] - block[None, :, 0], cand[:, None, 1] - block[None, :, 1])
        best = np.minimum(best, d.min(axis=1))
    left = np.ones(len(cand), dtype=bool)
    total = 0.0
    for _ in range(len(cand)):
        j = int(np.flatnonzero(left)[np.argmin(best[left])])
        total += best[j]
        left[j] = False
        best = np.minimum(best, np.hypot(cand[:, 0] - cand[j, 0], cand[:, 1] - cand[j, 1]))
    return total


def _timed(label: str, func):  # noqa: ANN001, ANN202
    t0 = time.perf_counter()
    value = func()
    print(f"{label:<58} {time.perf_counter() - t0:7.2f} s")
    return value


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ruralcov-bench-plan-") as tmp:
        if len(sys.argv) > 1:
            run = Path(tmp) / "run"
            shutil.copytree(sys.argv[1], run)
        else:
            run = _timed("build the demo run (not part of the plan)", lambda: _demo_run(Path(tmp)))
        plan = _timed(
            "ruralcov plan RUN --no-maps (read run, plan, write files)",
            lambda: plan_run(run, maps=False),
        )
        fibre = plan.links[plan.links["status"] == "fibre"]
        s = plan.summary
        print(
            f"  {int((s['fibre_gap_villages'] > 0).sum())} counties below target, "
            f"{len(fibre)} villages planned, {fibre['link_km'].sum():,.1f} km"
        )
        inputs = _timed("read the run folder", lambda: read_run(run, tables=False))
        v, aps = inputs.villages, access_points(inputs)
        for level in ("county", "township"):
            p = _timed(
                f"engine: every {level}, connect all",
                lambda level=level: plan_extension(
                    v, aps, options=PlanOptions(level=level, connect_all=True)
                ),
            )
            print(f"  {len(p.links)} villages, {p.links['link_km'].sum():,.1f} km")

        # the whole province as one area, sparse Prim against all pairs
        from ruralcov.crs import metric_crs
        from ruralcov.planner import village_points

        pts = village_points(v)
        ok = pts.notna().to_numpy()
        metric = metric_crs(tuple(v.geometry.total_bounds))
        tr = pyproj.Transformer.from_crs("EPSG:4326", metric, always_xy=True)

        def xy(geoms: np.ndarray) -> np.ndarray:
            c = shapely.get_coordinates(geoms)
            return np.column_stack(tr.transform(c[:, 0], c[:, 1]))

        fib = v["fibre"].to_numpy(dtype=bool)
        village = (v["kind"] == "village").to_numpy()
        net = np.vstack([xy(pts.values[ok & fib]), xy(aps.geometry.values)])
        cand = xy(pts.values[ok & village & ~fib])
        print(f"province as one area: {len(net):,} network points, {len(cand):,} candidates")
        _, _, length = _timed(
            "  Delaunay + Prim (ruralcov.planner.grow_network)", lambda: grow_network(net, cand)
        )
        dense = _timed("  brute-force Prim over all pairs", lambda: _dense_prim(net, cand))
        print(
            f"  totals: {length.sum() / 1000:,.3f} km vs {dense / 1000:,.3f} km "
            f"(relative difference {abs(length.sum() / dense - 1):.1e})"
        )
        # stress: every administrative village unconnected, grown from 1 in 50 access points
        cand = xy(pts.values[ok & village])
        net = xy(aps.geometry.values[::50])
        print(
            f"stress, province as one area: {len(net):,} network points, {len(cand):,} candidates"
        )
        _, _, length = _timed(
            "  Delaunay + Prim (ruralcov.planner.grow_network)", lambda: grow_network(net, cand)
        )
        dense = _timed("  brute-force Prim over all pairs", lambda: _dense_prim(net, cand))
        print(
            f"  totals: {length.sum() / 1000:,.3f} km vs {dense / 1000:,.3f} km "
            f"(relative difference {abs(length.sum() / dense - 1):.1e})"
        )


if __name__ == "__main__":
    main()
