"""The fibre extension planner: hand-made worlds with known answers, a property against an
independent minimum spanning tree, the run-folder command, and the demo (slow).

The "line" world is built in UTM 49N metres, so every distance is known by construction
(county 140101; H and F have fibre, the access point AP-1 sits in H's polygon)::

      D (5000, 3000)                      C (10000, 2000)
                                          |
  AP-1 (0, 0)  A (1000, 0)  B (2500, 0)   F (10000, 0)
  H  (0, 150)
  E  (0, -7000)       county 140102: G (0, -8000), fibre, with its own access point AP-2

Prim from {AP-1, H, F}: A 1000 via AP-1, B 1500 via A, C 2000 via F, D 3905.12 via B,
E 7000 via AP-1 (G and AP-2 are 1000 m from E but belong to another county).
"""

from __future__ import annotations

import json
import math

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import pytest
import shapely
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse.csgraph import minimum_spanning_tree
from shapely import Point, box

from ruralcov.cli import cli
from ruralcov.errors import ConfigError
from ruralcov.io import sha256_file
from ruralcov.plan import read_codes
from ruralcov.planner import (
    LINK_COLUMNS,
    SUMMARY_COLUMNS,
    PlanOptions,
    grow_network,
    plan_extension,
    plan_result,
    village_points,
)
from ruralcov.report import write_run

UTM = "EPSG:32649"
TO_LONLAT = pyproj.Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
X0, Y0 = pyproj.Transformer.from_crs("EPSG:4326", UTM, always_xy=True).transform(112.5, 37.8)

# code, county, fibre, settlement point (m from X0, Y0) or None (no polygon)
LINE = [
    ("140101001001", "H", True, (0, 150)),
    ("140101001002", "F", True, (10_000, 0)),
    ("140101001003", "A", False, (1_000, 0)),
    ("140101001004", "B", False, (2_500, 0)),
    ("140101001005", "C", False, (10_000, 2_000)),
    ("140101001006", "D", False, (5_000, 3_000)),
    ("140101001007", "E", False, (0, -7_000)),
    ("140102001001", "G", True, (0, -8_000)),
    ("140103001001", "J", True, (30_000, 0)),
    ("140103001002", "L", False, None),
]
CODE = {name: code for code, name, _, _ in LINE}
D_VIA_B = math.hypot(2_500, 3_000)
PRIM = [
    ("A", 1_000.0, "AP-1"),
    ("B", 1_500.0, "A"),
    ("C", 2_000.0, "F"),
    ("D", D_VIA_B, "B"),
    ("E", 7_000.0, "AP-1"),
]


def _lonlat(x: float, y: float) -> Point:
    lon, lat = TO_LONLAT.transform(X0 + x, Y0 + y)
    return Point(lon, lat)


def _square(x: float, y: float, half: float = 200.0):
    ring = [(x - half, y - half), (x + half, y - half), (x + half, y + half), (x - half, y + half)]
    return shapely.Polygon([(p.x, p.y) for p in (_lonlat(*c) for c in ring)])


def line_world() -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame, pd.Series]:
    """Villages, operational access points and committee points of the line world."""
    rows = []
    for code, name, fibre, xy in LINE:
        rows.append(
            {
                "village_code": code,
                "village_name": name,
                "kind": "village",
                "county_code": code[:6],
                "county_name": f"county {code[:6]}",
                "fibre": fibre,
                "geometry": None if xy is None else _square(*xy),
            }
        )
    villages = gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:4326")
    aps = gpd.GeoDataFrame(
        {"asset_id": ["AP-1", "AP-2", "AP-9"]},
        # AP-9 lies outside every village: it belongs to no area and is never used
        geometry=[_lonlat(0, 0), _lonlat(100, -8_000), _lonlat(2_500, -500)],
        crs="EPSG:4326",
    )
    points = pd.Series({code: _lonlat(*xy) for code, _, _, xy in LINE if xy is not None})
    return villages, aps, points


def _plan(**options):
    villages, aps, points = line_world()
    return plan_extension(villages, aps, options=PlanOptions(**options), points=points)


def _county(plan, code="140101"):
    links = plan.links[plan.links["area_code"] == code]
    return links, plan.summary.set_index("code").loc[code]


# --------------------------------------------------------------------------- hand-made


def test_line_world_order_links_and_lengths_are_prims():
    plan = _plan(target=0.98, route_factor=1.0, cost_per_km=1_000.0)
    links, summary = _county(plan)
    assert list(links.columns) == [*LINK_COLUMNS, "geometry"]
    assert links["village_code"].tolist() == [CODE[n] for n, _, _ in PRIM]
    assert links["order"].tolist() == [1, 2, 3, 4, 5]
    assert links["connects_to"].tolist() == [CODE.get(t, t) for _, _, t in PRIM]
    assert links["connects_to_kind"].tolist() == [
        "access_point",
        "planned_village",
        "fibre_village",
        "planned_village",
        "access_point",
    ]
    np.testing.assert_allclose(links["straight_km"], [d / 1000 for _, d, _ in PRIM], rtol=1e-9)
    np.testing.assert_allclose(links["cumulative_km"], np.cumsum([d / 1000 for _, d, _ in PRIM]))
    np.testing.assert_allclose(links["cost"], [d for _, d, _ in PRIM], rtol=1e-9)
    assert links["cumulative_villages"].tolist() == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(links["cumulative_share"], [3 / 7, 4 / 7, 5 / 7, 6 / 7, 1.0])
    # 7 villages, 2 with fibre: ceil(0.98 * 7) - 2 = 5
    assert summary["fibre_gap_villages"] == summary["planned_villages"] == 5
    assert summary["stop_reason"] == "target_reached" and summary["target_reached"]
    assert summary["network_points"] == 3  # H, F and AP-1
    assert summary["metric_crs"] == UTM
    # each link is a line from the village's point to the point it connects to
    first = links.iloc[0].geometry
    assert first.coords[0] == pytest.approx(_lonlat(1_000, 0).coords[0], abs=1e-12)
    assert first.coords[1] == pytest.approx(_lonlat(0, 0).coords[0], abs=1e-12)


def test_other_counties_on_target_or_without_candidates():
    plan = _plan()
    s = plan.summary.set_index("code")
    assert list(plan.summary.columns) == list(SUMMARY_COLUMNS)
    assert s.loc["140102", "stop_reason"] == "on_target"
    # L has no polygon: the gap of 1 cannot be planned, and the summary says why
    assert s.loc["140103", "fibre_gap_villages"] == 1
    assert s.loc["140103", "planned_villages"] == 0
    assert s.loc["140103", "unconnected_without_point"] == 1
    assert s.loc["140103", "stop_reason"] == "no_candidates"
    assert not s.loc["140103", "target_reached"]


def test_stops_at_the_target_and_route_factor_scales_cable():
    plan = _plan(target=0.5)  # ceil(3.5) = 4 villages needed, 2 have fibre
    links, summary = _county(plan)
    assert links["village_code"].tolist() == [CODE["A"], CODE["B"]]
    np.testing.assert_allclose(links["link_km"], [1.0 * 1.3, 1.5 * 1.3])
    assert summary["planned_km"] == pytest.approx(2.5 * 1.3)
    assert summary["fibre_share_after"] == pytest.approx(4 / 7) and 4 / 7 >= 0.5
    assert np.isnan(summary["planned_cost"])  # no cost per km given


def test_exclusions_change_the_tree():
    plan = _plan(exclude=frozenset({CODE["B"]}), route_factor=1.0, connect_all=True)
    links, summary = _county(plan)
    assert links["village_code"].tolist() == [CODE[n] for n in "ACDE"]
    # without B, D is nearest to A (5000 m), not to F (5831 m) or C (5099 m)
    assert links.set_index("village_code").loc[CODE["D"], "connects_to"] == CODE["A"]
    np.testing.assert_allclose(links["straight_km"], [1.0, 2.0, 5.0, 7.0])
    assert summary["excluded"] == 1 and summary["stop_reason"] == "no_candidates"


def test_max_link_flags_the_rest_for_wireless():
    plan = _plan(route_factor=1.0, max_link_km=5.0)
    links, summary = _county(plan)
    assert links["status"].tolist() == ["fibre"] * 4 + ["wireless_or_satellite"]
    flagged = links.iloc[-1]
    assert flagged["village_code"] == CODE["E"] and flagged["link_km"] == pytest.approx(7.0)
    assert flagged["cumulative_villages"] == 4 and np.isnan(flagged["cost"])
    assert summary["stop_reason"] == "max_link" and summary["flagged_villages"] == 1
    assert summary["planned_villages"] == 4 and not summary["target_reached"]
    assert summary["planned_km"] == pytest.approx((1000 + 1500 + 2000 + D_VIA_B) / 1000)


def test_budget_stops_before_the_link_that_does_not_fit():
    # links cost 1000, 1500, 2000, 3905: 4500 fits a budget of 4600, 8405 does not
    plan = _plan(route_factor=1.0, cost_per_km=1_000.0, budget=4_600.0)
    links, summary = _county(plan)
    assert links["village_code"].tolist() == [CODE[n] for n in "ABC"]
    assert summary["stop_reason"] == "budget"
    assert summary["planned_cost"] == pytest.approx(4_500.0)
    assert summary["fibre_share_after"] == pytest.approx(5 / 7)


def test_connect_all_plans_areas_already_on_target():
    villages, aps, points = line_world()
    extra = villages.iloc[[7]].assign(
        village_code="140102001002",
        village_name="G2",
        fibre=False,
        geometry=[_square(0, -11_000)],
    )
    villages = pd.concat([villages, extra], ignore_index=True)
    points[extra["village_code"].iloc[0]] = _lonlat(0, -11_000)
    # 140102: 2 villages, 1 fibre, gap ceil(1.96) - 1 = 1 (not on target); at 0.5 it is
    plan = plan_extension(villages, aps, options=PlanOptions(target=0.5), points=points)
    assert plan.summary.set_index("code").loc["140102", "stop_reason"] == "on_target"
    plan = plan_extension(
        villages,
        aps,
        options=PlanOptions(target=0.5, connect_all=True, route_factor=1.0),
        points=points,
    )
    links, summary = _county(plan, "140102")
    # G's point is 3000 m away, AP-2 (100, -8000) 3001.7 m
    assert links["connects_to"].tolist() == ["140102001001"]
    assert links["straight_km"].iloc[0] == pytest.approx(3.0)
    assert summary["stop_reason"] == "all_connected"


def test_township_level_and_options_are_checked():
    with pytest.raises(ConfigError, match="level"):
        PlanOptions(level="village").check()
    with pytest.raises(ConfigError, match="cost per km"):
        PlanOptions(budget=10.0).check()
    with pytest.raises(ConfigError, match="route factor"):
        PlanOptions(route_factor=0.9).check()
    villages, aps, points = line_world()
    with pytest.raises(ConfigError, match="not in the register"):
        plan_extension(villages, aps, options=PlanOptions(exclude=frozenset({"999"})))
    with pytest.raises(ConfigError, match="township"):
        plan_extension(
            villages.assign(township_code=None), aps, options=PlanOptions(level="township")
        )


def test_village_points_default_inside_and_committee_point_wins():
    crescent = box(0, 0, 3, 3).difference(box(1, 1, 3, 3))  # an L: its centroid lies outside
    v = gpd.GeoDataFrame(
        {"village_code": ["L", "M", "N"]},
        geometry=[crescent, box(5, 5, 6, 6), None],
        crs="EPSG:4326",
    )
    pts = village_points(v, points={"M": Point(5.1, 5.2)})
    assert crescent.covers(pts.iloc[0]) and not crescent.covers(crescent.centroid)
    assert pts.iloc[1].equals(Point(5.1, 5.2))
    assert pts.iloc[2] is None


def test_read_codes(tmp_path):
    path = tmp_path / "exclude.csv"
    path.write_text(
        "village_code,reason\n140101001004,relocation\n# note\n\n 140101001005 \n",
        encoding="utf-8-sig",
    )
    assert read_codes(path) == {"140101001004", "140101001005"}


# --------------------------------------------------------------------------- Prim


def _dense_prim(net: np.ndarray, cand: np.ndarray, dist=None) -> tuple[list[int], np.ndarray]:
    """Prim on the complete graph, by brute force: the order and each link's length."""
    dist = dist or (lambda a, b: np.hypot(*(a[:, None, :] - b[None, :, :]).transpose(2, 0, 1)))
    best = dist(cand, net).min(axis=1)
    left = np.ones(len(cand), dtype=bool)
    order, lengths = [], []
    for _ in range(len(cand)):
        j = int(np.flatnonzero(left)[np.argmin(best[left])])
        order.append(j)
        lengths.append(best[j])
        left[j] = False
        best = np.minimum(best, dist(cand, cand[[j]])[:, 0])
    return order, np.asarray(lengths)


def _mst_extension(net: np.ndarray, cand: np.ndarray) -> float:
    """Total MST length with the network contracted into node 0 (scipy, complete graph)."""
    n = len(cand)
    graph = np.zeros((n + 1, n + 1))
    graph[0, 1:] = np.hypot(*(cand[:, None, :] - net[None, :, :]).transpose(2, 0, 1)).min(axis=1)
    graph[1:, 1:] = np.triu(np.hypot(*(cand[:, None, :] - cand[None, :, :]).transpose(2, 0, 1)))
    return float(minimum_spanning_tree(np.triu(graph)).sum())


coord = st.floats(0, 20_000, allow_nan=False, allow_infinity=False)
cloud = st.lists(st.tuples(coord, coord), min_size=2, max_size=40, unique=True)


@settings(max_examples=150, deadline=None)
@given(points=cloud, m=st.integers(1, 5), seed=st.integers(0, 2**32 - 1))
def test_total_length_equals_the_independent_mst_extension(points, m, seed):
    # hypothesis likes round coordinates, whose many equal distances make the order of tied
    # links arbitrary; a sub-metre jitter makes ties vanishingly rare (they have their own
    # test below) while keeping hypothesis' clustered and extreme layouts
    xy = np.asarray(points) + np.random.default_rng(seed).uniform(-0.5, 0.5, (len(points), 2))
    d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    if (d[np.triu_indices(len(xy), 1)] < 1e-3).any():
        return  # csgraph reads a zero weight as "no edge"; duplicates are tested below
    m = min(m, len(xy) - 1)
    net, cand = xy[:m], xy[m:]
    order, via, length = grow_network(net, cand)
    assert sorted(order.tolist()) == list(range(len(cand)))
    assert length.sum() == pytest.approx(_mst_extension(net, cand), rel=1e-12, abs=1e-9)
    # every link connects to something already connected, and has that length
    seen = set(range(m))
    for j, v, w in zip(order, via, length, strict=True):
        assert int(v) in seen
        assert w == pytest.approx(np.hypot(*(np.vstack([net, cand])[v] - cand[j])))
        seen.add(m + int(j))
    # the same steps as brute-force Prim, so the plan stops at any target alike
    _, dense = _dense_prim(net, cand)
    np.testing.assert_allclose(np.cumsum(length), np.cumsum(dense), rtol=1e-12, atol=1e-9)


grid = st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), min_size=2, max_size=30)


@settings(max_examples=150, deadline=None)
@given(points=grid, m=st.integers(1, 4))
def test_degenerate_grids_equal_brute_force_prim(points, m):
    """Grid points: collinear runs, co-circular quadruples, duplicates and ties everywhere.

    The tree's total length is unique, so it must match. Which of several exactly tied links
    comes first may differ from all-pairs Prim (the sparse graph need not hold every tied
    link), so prefixes are compared on generic points only (above).
    """
    xy = np.asarray(points, dtype=float) * 100.0
    m = min(m, len(xy) - 1)
    net, cand = xy[:m], xy[m:]
    order, _, length = grow_network(net, cand)
    assert sorted(order.tolist()) == list(range(len(cand)))
    _, dense = _dense_prim(net, cand)
    assert length.sum() == pytest.approx(dense.sum(), rel=1e-12, abs=1e-9)


def test_collinear_and_duplicate_points():
    net = np.array([[0.0, 0.0]])
    line = np.array([[float(x), 2.0 * x] for x in (5, 1, 3, 9, 7, 2)])
    order, via, length = grow_network(net, line)
    assert length.sum() == pytest.approx(9 * math.hypot(1, 2))
    dup = np.array([[1.0, 1.0], [1.0, 1.0], [0.0, 0.0], [4.0, 4.0], [4.0, 0.0]])
    order, via, length = grow_network(np.array([[0.0, 0.0], [4.0, 4.0]]), dup)
    assert sorted(length.tolist()) == pytest.approx([0.0, 0.0, 0.0, math.sqrt(2), math.sqrt(10)])


def test_ties_go_to_the_lowest_rank():
    # (1, 0) is 1 m from both network points: it connects to the lower-ranked (2, 0)
    order, via, _ = grow_network([[0, 0], [2, 0]], [[1, 0], [1, 1]], network_rank=[1, 0])
    assert order.tolist() == [0, 1] and via.tolist() == [1, 2]
    # two candidates 1 m from the network: the lower-ranked goes first
    order, _, _ = grow_network([[0, 0]], [[1, 0], [-1, 0]], candidate_rank=[1, 0])
    assert order.tolist() == [1, 0]


# --------------------------------------------------------------------------- run folder


def _small_run(small_result, folder):
    """The small world as a run folder; its CSV fibre inputs get the CRS a user would set."""
    import dataclasses

    config = small_result.config
    fibre = tuple(dataclasses.replace(f, crs="EPSG:4326") for f in config.fibre)
    result = dataclasses.replace(small_result, config=dataclasses.replace(config, fibre=fibre))
    return write_run(result, folder, maps=False)


def test_plan_command_on_the_small_world(small_result, tmp_path):
    run = _small_run(small_result, tmp_path / "run")
    out = CliRunner().invoke(
        cli, ["plan", str(run), "--cost-per-km", "50000"], catch_exceptions=False
    )
    assert out.exit_code == 0, out.output
    assert "cost 1" in out.output and " CNY;" in out.output  # the profile's currency
    plan = pd.read_csv(
        run / "tables" / "plan.csv",
        dtype={"area_code": str, "village_code": str, "connects_to": str},
        encoding="utf-8-sig",
    )
    assert set(plan["currency"]) == {"CNY"}
    # 140105: gap 1 -> 北庄 (2,0), next to 西关 (1,0), whose point AP-2 shares (南庄 (3,0) is
    # as far in degrees but a little further in metres: further from UTM 49N's meridian).
    # AP-5 lies outside every polygon and is not used. 140106: gap 2, but 河西 has no
    # polygon -> only 下村, next to 上村 (AP-9 inside 下村 is planned, not operational).
    assert plan["village_code"].tolist() == ["140105002001", "140106002002"]
    assert plan["connects_to"].iloc[0] in {"140105001002", "AP-2"}
    assert plan["connects_to"].iloc[1] == "140106002001"
    geod = pyproj.Geod(ellps="WGS84")
    _, _, cell = geod.inv(112.525, 37.805, 112.515, 37.805)
    np.testing.assert_allclose(plan["straight_km"], cell / 1000, rtol=1e-3)
    summary = pd.read_csv(
        run / "tables" / "plan_summary_county.csv", dtype={"code": str}, encoding="utf-8-sig"
    ).set_index("code")
    assert summary.loc["140105", "stop_reason"] == "target_reached"
    assert summary.loc["140106", "stop_reason"] == "no_candidates"
    lines = gpd.read_parquet(run / "plan.parquet")
    assert {"area_code", "order", "village_code", "connects_to", "link_km"} <= set(lines.columns)
    assert (lines.geom_type == "LineString").all() and lines.crs.equals("EPSG:4326")
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    for rel, digest in manifest["plan"]["outputs"].items():
        assert sha256_file(run / rel) == digest
    assert manifest["outputs"]["report.html"] == sha256_file(run / "report.html")
    assert manifest["plan"]["options"]["cost_per_km"] == 50_000
    assert manifest["plan"]["options"]["currency"] == "CNY"
    html = (run / "report.html").read_text(encoding="utf-8")
    assert "50,000.00 CNY per km" in html
    assert html.count('<section id="plan">') == 1 and "北庄" not in html.split("plan")[0]
    out = CliRunner().invoke(cli, ["-q", "plan", str(run), "--cost-per-km", "6000",
                                   "--currency", "EUR"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    again = pd.read_csv(run / "tables" / "plan_summary_county.csv", encoding="utf-8-sig")
    assert set(again["currency"]) == {"EUR"}
    # planning again at another level replaces the plan, never the run's own files
    out = CliRunner().invoke(
        cli, ["-q", "plan", str(run), "--level", "township"], catch_exceptions=False
    )
    assert out.exit_code == 0, out.output
    assert not (run / "tables" / "plan_summary_county.csv").exists()
    assert (run / "tables" / "plan_summary_township.csv").exists()
    assert (run / "tables" / "summary_county.csv").exists()
    html = (run / "report.html").read_text(encoding="utf-8")
    assert html.count('<section id="plan">') == 1 and "tables/plan_summary_township.csv" in html


def test_committee_points_from_a_file(small_result, tmp_path):
    run = _small_run(small_result, tmp_path / "run")
    points = tmp_path / "committees.csv"
    # 北庄's committee sits at the east end of the village, 44 m from 南庄's point
    points.write_text("code,lon,lat\n140105002001,112.5345,37.805\n", encoding="utf-8")
    out = CliRunner().invoke(
        cli, ["-q", "plan", str(run), "--points", str(points)], catch_exceptions=False
    )
    assert out.exit_code == 0, out.output
    plan = pd.read_csv(run / "tables" / "plan.csv", dtype=str, encoding="utf-8-sig")
    first = plan.iloc[0]
    assert first["village_code"] == "140105002001" and first["connects_to"] == "140105002002"
    assert float(first["lon"]) == pytest.approx(112.5345)
    geod = pyproj.Geod(ellps="WGS84")
    _, _, d = geod.inv(112.5345, 37.805, 112.535, 37.805)
    assert float(first["straight_km"]) == pytest.approx(d / 1000, abs=1e-3)  # CSV: metres


def test_plan_is_drawn_on_the_county_maps(small_result, tmp_path):
    import dataclasses

    config = small_result.config
    fibre = tuple(dataclasses.replace(f, crs="EPSG:4326") for f in config.fibre)
    result = dataclasses.replace(small_result, config=dataclasses.replace(config, fibre=fibre))
    run = write_run(result, tmp_path / "run", maps=True)
    page = run / "maps" / "county_140105.html"
    assert "plan_links" not in page.read_text(encoding="utf-8")
    out = CliRunner().invoke(cli, ["-q", "plan", str(run)], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    html = page.read_text(encoding="utf-8")
    assert "plan_links" in html and "140105002001" in html
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["outputs"]["maps/county_140105.html"] == sha256_file(page)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget", "1000"], "cost per km"),
        (["--exclude", "999999999999"], "not in the register"),
        (["--route-factor", "0.5"], "route factor"),
    ],
)
def test_plan_command_errors_are_one_line(small_result, tmp_path, args, message):
    run = _small_run(small_result, tmp_path / "run")
    out = CliRunner().invoke(cli, ["plan", str(run), *args])
    assert out.exit_code == 2
    assert out.output.count("\n") == 1 and message in out.output
    assert not (run / "tables" / "plan.csv").exists()


def test_plan_command_refuses_a_folder_that_is_not_a_run(tmp_path):
    out = CliRunner().invoke(cli, ["plan", str(tmp_path)])
    assert out.exit_code == 2 and "not a ruralcov run folder" in out.output


def test_plan_grows_from_the_assets_the_run_read_not_from_its_inputs(small_result, tmp_path):
    run = _small_run(small_result, tmp_path / "run")
    # an access point added to the input after the run, inside 北庄 (the village 140105 needs)
    path = small_result.config.fibre[0].path
    path.write_text(
        path.read_text(encoding="utf-8") + "AP-7,operational,112.525,37.805\n", encoding="utf-8"
    )
    out = CliRunner().invoke(cli, ["-q", "plan", str(run)], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    plan = pd.read_csv(run / "tables" / "plan.csv", dtype=str, encoding="utf-8-sig")
    assert "AP-7" not in set(plan["connects_to"])  # the run did not count it
    assert plan["village_code"].tolist() == ["140105002001", "140106002002"]


# --------------------------------------------------------------------------- demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo's villages and operational access points, through ``analyse``.

    Speed tests play no part in the plan, so the demo is built with few of them (fibre and
    geometry come first from the seeded generator and are the same as in ``ruralcov demo``).
    """
    from ruralcov import analyse
    from ruralcov.config import config_from_dict, replace
    from ruralcov.demo import build_demo_inputs

    inputs = tmp_path_factory.mktemp("plan_demo") / "inputs"
    raw = build_demo_inputs(inputs, seed=2020, tests_per_village=0.2)
    result = analyse(replace(config_from_dict(raw, base=inputs), base=inputs))
    points = result.fibre_points
    points = points[points["operational"].astype(bool) & (points.geom_type == "Point")]
    return result, points, plan_result(result)


@pytest.mark.slow
def test_demo_planned_villages_equal_the_gap(demo):
    result, _, plan = demo
    county = result.summaries["county"].set_index("code")
    s = plan.summary.set_index("code")
    assert set(s.index) == set(county.index)
    np.testing.assert_array_equal(
        s["fibre_gap_villages"], county.loc[s.index, "fibre_gap_villages"]
    )
    below = s[s["fibre_gap_villages"] > 0]
    assert len(below) >= 10
    reachable = below[below["stop_reason"] == "target_reached"]
    assert (reachable["planned_villages"] == reachable["fibre_gap_villages"]).all()
    assert (reachable["fibre_share_after"] >= 0.98).all()
    # the rest are the development zones without outlines: every unconnected village lacks
    # a polygon, so there is nothing to plan and the summary says so
    rest = below[below["stop_reason"] != "target_reached"]
    assert (rest["stop_reason"] == "no_candidates").all()
    assert set(rest.index) <= {"140171", "140271", "140671", "140971"}
    assert (rest["unconnected_with_point"] == 0).all()
    planned = plan.links.groupby("area_code").size()
    assert planned.sum() == reachable["fibre_gap_villages"].sum()
    assert (
        not plan.links["village_code"]
        .isin(result.villages.loc[result.villages["fibre"], "village_code"])
        .any()
    )


@pytest.mark.slow
def test_demo_kilometres_equal_an_independent_prim(demo):
    """Three counties with the largest gaps, by brute-force Prim on geodesic distances
    between points found with a geopandas join (not the planner's code)."""
    result, points, plan = demo
    geod = pyproj.Geod(ellps="WGS84")
    v = result.villages[result.villages.geometry.notna()].copy()
    v["pt"] = v.geometry.representative_point()  # shapely point_on_surface
    # access points to the lowest-coded village covering them
    hits = gpd.sjoin(
        points[["asset_id", "geometry"]],
        v[["village_code", "county_code", "geometry"]],
        predicate="within",
    )
    within = gpd.sjoin(
        points[["asset_id", "geometry"]],
        v[["village_code", "county_code", "geometry"]],
        predicate="touches",
    )
    hits = pd.concat([hits, within]).sort_values("village_code").drop_duplicates("asset_id")

    def dist(a, b):
        lon1 = np.broadcast_to(a[:, None, 0], (len(a), len(b)))
        lat1 = np.broadcast_to(a[:, None, 1], (len(a), len(b)))
        lon2 = np.broadcast_to(b[None, :, 0], (len(a), len(b)))
        lat2 = np.broadcast_to(b[None, :, 1], (len(a), len(b)))
        return geod.inv(lon1, lat1, lon2, lat2)[2]

    s = plan.summary
    top = s[s["stop_reason"] == "target_reached"].nlargest(3, "fibre_gap_villages")
    for code, gap in zip(top["code"], top["fibre_gap_villages"], strict=True):
        c = v[v["county_code"] == code]
        net = np.vstack(
            [
                shapely.get_coordinates(c.loc[c["fibre"], "pt"].to_numpy()),
                shapely.get_coordinates(hits.loc[hits["county_code"] == code, "geometry"]),
            ]
        )
        cand = shapely.get_coordinates(c.loc[(c["kind"] == "village") & ~c["fibre"], "pt"])
        _, lengths = _dense_prim(net, cand, dist)
        expected_km = lengths[:gap].sum() / 1000 * 1.3
        got = s.set_index("code").loc[code, "planned_km"]
        assert got == pytest.approx(expected_km, rel=1e-3), code


def test_codes_changed_by_a_spreadsheet_stop_the_plan(tmp_path):
    from ruralcov.errors import SchemaError
    from ruralcov.plan import points_from_file

    points = tmp_path / "committees.csv"
    points.write_text("code,lon,lat\n140105002001,112.53,37.80\n1.40105E+11,112.54,37.80\n",
                      encoding="utf-8")
    with pytest.raises(SchemaError, match=r"points \(committees.csv\): column 'code' .*row 2 "
                                          r"'1.40105E\+11'"):
        points_from_file(points)
    exclude = tmp_path / "exclude.csv"
    exclude.write_text("village_code\n# moved\n140101001004.0\n", encoding="utf-8")
    with pytest.raises(SchemaError, match=r"exclusion list \(exclude.csv\).*row 3 "
                                          r"'140101001004.0'"):
        read_codes(exclude)
