"""Shares and gaps: exact arithmetic and consistency across levels."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from ruralcov.aggregate import gap_villages, headline, summarise, target_fraction


def test_target_fraction_is_exact():
    assert target_fraction(0.98) == Fraction(49, 50)
    assert target_fraction(0.1) == Fraction(1, 10)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 100_000), st.integers(0, 100), st.data())
def test_gap_matches_exact_ceiling(villages, percent, data):
    fibre = data.draw(st.integers(0, villages))
    target = Fraction(percent, 100)
    needed = math.ceil(target * villages)  # exact: Fraction arithmetic
    assert gap_villages(villages, fibre, target) == max(0, needed - fibre)


def test_gap_where_floats_go_wrong():
    # 0.07 * 100 = 7.000000000000001 in floating point: ceil would demand 8 villages.
    assert math.ceil(0.07 * 100) == 8
    assert gap_villages(100, 7, target_fraction(0.07)) == 0


def _villages(seed: int, n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    township = rng.integers(0, 12, n)
    return pd.DataFrame(
        {
            "village_code": [f"{i:06d}" for i in range(n)],
            "kind": rng.choice(["village", "community", "other"], n, p=[0.8, 0.15, 0.05]),
            "township_code": [f"T{t:02d}" for t in township],
            "county_code": [f"C{t // 4}" for t in township],
            "has_geometry": rng.random(n) < 0.95,
            "fibre": rng.random(n) < 0.9,
            "fibre_nearby": rng.random(n) < 0.1,
            "speed_class": rng.choice(["meets", "below", "insufficient_data"], n),
            "meets_targets": False,
            "tests": rng.integers(0, 20, n),
        }
    )


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_county_totals_equal_sum_of_townships(seed):
    v = _villages(seed)
    county = summarise(v, level="county", fibre_target=0.98).set_index("code")
    township = summarise(v, level="township", fibre_target=0.98)
    township["county"] = township["code"].map(lambda c: f"C{int(c[1:]) // 4}")
    sums = township.groupby("county")[
        [
            "villages",
            "fibre_villages",
            "speed_meets",
            "speed_below",
            "speed_insufficient",
            "communities",
            "villages_with_geometry",
        ]
    ].sum()
    pd.testing.assert_frame_equal(county[sums.columns], sums, check_names=False)
    # Every administrative village has exactly one speed class.
    assert (
        county["speed_meets"] + county["speed_below"] + county["speed_insufficient"]
        == county["villages"]
    ).all()


def test_summary_hand_made():
    v = pd.DataFrame(
        {
            "kind": ["village"] * 4 + ["community", "other"],
            "county_code": ["A"] * 6,
            "has_geometry": [True, True, True, False, True, True],
            "fibre": [True, True, False, False, True, True],
            "speed_class": [
                "meets",
                "below",
                "insufficient_data",
                "insufficient_data",
                "meets",
                "meets",
            ],
        }
    )
    row = summarise(v, level="county", fibre_target=0.98, names=pd.Series({"A": "甲县"})).iloc[0]
    assert row["name"] == "甲县"
    assert (row["villages"], row["villages_with_geometry"], row["fibre_villages"]) == (4, 3, 2)
    assert row["fibre_share"] == 0.5
    assert row["fibre_gap_villages"] == 2  # ceil(0.98 * 4) = 4, minus 2
    assert (row["speed_meets"], row["speed_below"], row["speed_insufficient"]) == (1, 1, 2)
    assert row["speed_share"] == 0.25
    assert (row["communities"], row["communities_speed_meets"]) == (1, 1)


def test_headline_counts_only_administrative_villages():
    v = _villages(1).assign(meets_targets=lambda d: d["fibre"] & (d["speed_class"] == "meets"))
    h = headline(v, fibre_target=0.98)
    is_v = v["kind"] == "village"
    assert h["villages"] == is_v.sum()
    assert h["fibre_villages"] == (is_v & v["fibre"]).sum()
    assert h["fibre_gap_villages"] == gap_villages(
        h["villages"], h["fibre_villages"], Fraction(49, 50)
    )
