"""Speed statistics and classification rules on hand-made numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom
from shapely import box, points

from ruralcov import classify
from ruralcov.classify import (
    fibre_evidence,
    group_median,
    median_ci_ranks,
    parse_yes_no,
    speed_class,
    speed_statistics,
)


@pytest.mark.parametrize("n", [6, 7, 10, 25, 50, 100, 1000])
def test_ci_ranks_cover_at_least_95_percent_and_are_tightest(n):
    lo, hi = (int(v[0]) for v in median_ci_ranks([n]))
    assert hi == n - lo + 1
    coverage = binom.cdf(hi - 1, n, 0.5) - binom.cdf(lo - 1, n, 0.5)
    assert coverage >= 0.95
    # One rank tighter on both sides would fall under 95 %.
    tighter = binom.cdf(hi - 2, n, 0.5) - binom.cdf(lo, n, 0.5)
    assert tighter < 0.95


def test_rank_table_holds_the_binomial_quantile_of_every_count():
    """The file tabulating the ranks below TABULATED tests is what scipy's quantile gives,
    count by count (and counts from TABULATED on are computed, not looked up)."""
    import zlib

    written = zlib.decompress(classify.RANK_FILE.read_bytes())
    assert zlib.decompress(classify.rank_file_bytes()) == written  # binomial_ranks, every count
    table = classify.rank_table()
    assert len(table) == classify.TABULATED and table[100] == 40  # n = 100: the classic 40
    big = np.array([classify.TABULATED, classify.TABULATED + 1, 3 * classify.TABULATED])
    np.testing.assert_array_equal(
        median_ci_ranks(big)[0], classify.binomial_ranks(big, confidence=0.95)
    )


def test_ci_ranks_equal_scipy_stats_binom():
    # The ranks come from a table below TABULATED and scipy.special's binomial functions above;
    # the reference is scipy.stats.binom's ppf and cdf, over every n to 30,000 and large random
    # ones (on both sides of TABULATED).
    n = np.r_[np.arange(0, 30_000), np.random.default_rng(5).integers(30_000, 10**8, 3000)]
    lo, hi = median_ci_ranks(n)
    m = np.maximum(n, 1)
    want = np.where(n > 0, binom.ppf(0.025, m, 0.5), 0).astype(np.int64)
    want = np.where((want >= 1) & (binom.cdf(want - 1, m, 0.5) <= 0.025), want, 0)
    assert (lo == want).all() and (hi == np.where(want > 0, n - want + 1, 0)).all()


def test_ci_ranks_known_values():
    # Classic table values: n = 100 gives ranks 40 and 61; n <= 5 has no 95 % interval.
    lo, hi = median_ci_ranks([5, 100])
    assert lo.tolist() == [0, 40] and hi.tolist() == [0, 61]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.floats(0, 1000)), min_size=1, max_size=80))
def test_group_median_equals_numpy(pairs):
    g = np.array([p[0] for p in pairs])
    v = np.array([p[1] for p in pairs])
    med, counts = group_median(g, v, n_groups=5)
    for k in range(5):
        vals = v[g == k]
        assert counts[k] == len(vals)
        if len(vals):
            assert med[k] == pytest.approx(np.median(vals))
        else:
            assert np.isnan(med[k])


def test_speed_statistics_hand_made():
    # Village 0: downloads 1..10 from 3 devices; village 1: 2 tests; village 2: none.
    village = np.array([0] * 10 + [1, 1, -1])
    download = np.array([*range(1, 11), 50.0, 150.0, 999.0], dtype=float)
    device = np.array(["a", "b", "c"] * 3 + ["a", "x", "x", "z"], dtype=object)
    upload = np.where(village == 0, 2.0, 9.0)
    stats = speed_statistics(
        village,
        download,
        n_villages=3,
        target_mbps=np.array([5.0, 100.0, 12.0]),
        upload=upload,
        device=device,
    )
    assert stats["tests"].tolist() == [10, 2, 0]
    assert stats["devices"].tolist() == [3, 1, 0]
    assert stats["download_median_mbps"].tolist()[:2] == [5.5, 100.0]
    # n = 10: ranks 2 and 9.
    assert stats.loc[0, ["download_ci_low_mbps", "download_ci_high_mbps"]].tolist() == [2, 9]
    assert np.isnan(stats.loc[1, "download_ci_low_mbps"])
    assert stats["share_tests_at_target"].tolist()[:2] == [0.6, 0.5]
    assert np.isnan(stats.loc[2, "share_tests_at_target"])
    assert stats["upload_median_mbps"].tolist()[:2] == [2.0, 9.0]


def test_speed_class_rules():
    classes = speed_class(
        tests=[5, 5, 4, 5, 5],
        devices=pd.array([3, 3, 3, 2, None], dtype="Int64"),
        median_mbps=[12.0, 11.99, 50.0, 50.0, 50.0],
        target_mbps=[12, 12, 12, 12, 12],
        min_tests=5,
        min_devices=3,
    )
    # Exactly at target meets; too few tests or devices is insufficient; unknown devices
    # only check the test count.
    assert classes.tolist() == ["meets", "below", "insufficient_data", "insufficient_data", "meets"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 200), min_size=5, max_size=30), st.floats(0, 50))
def test_raising_speeds_never_lowers_class(speeds, bump):
    rank = {"insufficient_data": 0, "below": 1, "meets": 2}
    village = np.zeros(len(speeds), dtype=np.intp)
    device = np.array([f"d{i}" for i in range(len(speeds))], dtype=object)

    def cls(values):
        s = speed_statistics(
            village, np.array(values), n_villages=1, target_mbps=[12.0], device=device
        )
        return speed_class(
            s["tests"], s["devices"], s["download_median_mbps"], [12.0], min_tests=5, min_devices=3
        )[0]

    assert rank[cls([v + bump for v in speeds])] >= rank[cls(speeds)]


def test_parse_yes_no():
    got = parse_yes_no(pd.Series(["yes", "No", "是", "否", "1", None, "maybe"]))
    assert got.tolist() == [True, False, True, False, True, False, pd.NA]


def test_fibre_evidence_order_and_evidence():
    # Metric world (metres): five 1 km square villages in a row along x.
    villages = [box(i * 1000, 0, i * 1000 + 1000, 1000) for i in range(5)]
    # AP-2 inside v2, AP-4near 400 m east of v4, AP-0 inside v0 (which the register covers).
    pts = points([2500, 5400, 500], [500, 500, 500])
    ev = fibre_evidence(
        villages,
        register_fibre=[True, False, False, False, False],
        points=pts,
        point_ids=np.array(["AP-2", "AP-4near", "AP-0"], dtype=object),
        point_max_distance=[450.0, 450.0, 450.0],
        routes=[box(1100, 1200, 1900, 1300).exterior],  # 200 m north of v1, 1100 m from v3
        route_ids=np.array(["R1"], dtype=object),
        route_nearby=[1000.0],
    )
    assert ev["fibre"].tolist() == [True, False, True, False, True]
    assert ev["fibre_basis"].tolist() == [
        "register",
        "none",
        "access_point_inside",
        "none",
        "access_point_near",
    ]
    assert ev["fibre_asset_id"].tolist() == [None, None, "AP-2", None, "AP-4near"]
    assert ev.loc[4, "fibre_distance_m"] == pytest.approx(400.0)
    # Only villages without fibre are "nearby"; v0 and v2 are near the route but have fibre.
    assert ev["fibre_nearby"].tolist() == [False, True, False, False, False]
    assert ev.loc[1, "fibre_route_distance_m"] == pytest.approx(200.0)
    # v1 is 500 m from both AP-0 and AP-2: the tie goes to the lowest id.
    assert ev.loc[1, "nearest_asset_id"] == "AP-0"
    assert ev.loc[3, "nearest_asset_id"] == "AP-2"
    assert ev.loc[3, "nearest_asset_m"] == pytest.approx(500.0)


def test_equally_near_routes_and_access_points_of_two_sources_go_to_the_lowest_id():
    # One 1 km village; two sources with different distances: their assets are equally near
    # (300 m), and each is within its own source's distance, so the lowest id wins both times.
    village = [box(0, 0, 1000, 1000)]
    ev = fibre_evidence(
        village,
        register_fibre=[False],
        points=points([1300, -300, 500], [500, 500, 2500]),
        point_ids=np.array(["B-ap", "A-ap", "C-far"], dtype=object),
        point_max_distance=[500.0, 300.0, 2000.0],
        routes=[shapely.LineString([(-300, 0), (-300, 1000)]),
                shapely.LineString([(1300, 0), (1300, 1000)]),
                shapely.LineString([(0, 1100), (1000, 1100)])],
        route_ids=np.array(["R-b", "R-a", "R-c"], dtype=object),
        route_nearby=[400.0, 1000.0, 50.0],
    )
    assert ev.loc[0, "fibre_asset_id"] == "A-ap"
    assert ev.loc[0, "fibre_distance_m"] == pytest.approx(300.0)
    # R-c is nearest (100 m) but beyond its own 50 m; R-a and R-b tie at 300 m.
    assert ev.loc[0, "fibre_route_id"] == "R-a"
    assert ev.loc[0, "fibre_route_distance_m"] == pytest.approx(300.0)
