"""Shares and gaps: exact arithmetic and consistency across levels."""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mapworld import column, layers
from ruralcov.aggregate import gap_villages, headline, summarise, target_fraction, target_met
from ruralcov.maps import write_maps
from ruralcov.maps.data import area_classes, fibre_met, share_bins
from ruralcov.report import render_report_html
from test_bad_inputs import analysed, edit, run_cli
from worlds import write_north_world


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


def _brute_gap(villages: int, fibre: int, decimal: str) -> int:
    """The gap by its definition, independently: the smallest whole number of villages ``k``
    with ``k / villages >= target`` (the target read as the exact decimal it is written as),
    found by counting up, less the fibre villages, and never below 0."""
    target = Fraction(Decimal(decimal))
    if villages == 0:
        return 0
    k = 0
    while Fraction(k, villages) < target:
        k += 1
    return max(0, k - fibre)


#: (villages, fibre villages, target as written in the TOML); 18,842 / 18,241 is the demo.
GAP_CASES = [
    (2000, 1960, "0.98"),
    (2000, 1960, "0.9800000000000001"),  # 2000 * 9800000000000001 does not fit int64
    (18842, 18241, "0.98"),
    (18842, 18241, "0.9800000000000001"),
    (18842, 18466, "0.9800000000000001"),
    (18842, 18241, "1e-30"),  # 10**30 does not fit int64 either
    (1, 0, "1e-30"),
    (5, 0, "5e-324"),  # the smallest float
    (7, 0, "1.0"),
    (7, 6, "1.0"),
    (7, 7, "1.0"),
    (7, 0, "0.0"),
    (0, 0, "0.98"),
    (10, 3, "0.30000000000000004"),  # 0.1 + 0.2
    (10, 2, "0.30000000000000004"),
    (100, 7, "0.07"),
    (1000, 999, "0.9999999999999999"),  # 1 - 1e-16
    (1000, 1000, "0.9999999999999999"),
    (6, 5, "0.8333333333333334"),  # 5/6 rounds to this float, yet is below it
    (3, 2, "0.6666666666666666"),  # 2/3 rounds to this float, and is above it
    (10**6, 980_000, "0.9800000000000001"),
]


@pytest.mark.parametrize(("villages", "fibre", "decimal"), GAP_CASES)
def test_gap_is_exact_for_any_decimal_a_toml_float_holds(villages, fibre, decimal):
    share = float(decimal)
    assert repr(share) == decimal  # the decimal is the float's own text (what TOML holds)
    expected = _brute_gap(villages, fibre, decimal)
    target = target_fraction(share)
    assert gap_villages(villages, fibre, target) == expected
    assert target_met(villages, fibre, target) == (expected == 0)


def test_gap_over_arrays_is_exact_and_silent():
    # every case at once, as summarise passes the areas (filterwarnings=error: no overflow
    # warning either)
    for decimal in sorted({d for _, _, d in GAP_CASES}):
        n = np.array([v for v, _, _ in GAP_CASES], dtype=np.int64)
        f = np.array([x for _, x, _ in GAP_CASES], dtype=np.int64)
        expected = [_brute_gap(v, x, decimal) for v, x, _ in GAP_CASES]
        got = gap_villages(n, f, target_fraction(float(decimal)))
        assert got.dtype == np.int64 and got.tolist() == expected, decimal
        met = target_met(n, f, target_fraction(float(decimal)))
        assert met.tolist() == [e == 0 for e in expected], decimal


def test_summary_and_headline_gap_with_a_long_target():
    # 2,000 villages, 1,960 with fibre: exactly 98 %, which meets 98 % and not 0.9800000000000001
    v = pd.DataFrame(
        {
            "village_code": [f"{i:06d}" for i in range(2000)],
            "kind": "village",
            "county_code": "C0",
            "has_geometry": True,
            "fibre": np.arange(2000) < 1960,
            "fibre_nearby": False,
            "speed_class": "meets",
            "meets_targets": False,
            "tests": 0,
        }
    )
    for share, gap in ((0.98, 0), (0.9800000000000001, 1)):
        s = summarise(v, level="county", fibre_target=share)
        assert s["fibre_gap_villages"].tolist() == [gap]
        h = headline(v, fibre_target=share)
        assert h["fibre_gap_villages"] == gap and h["fibre_target_met"] == (gap == 0)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 300),
    st.data(),
    st.sampled_from([0.5, 0.8333333333333334, 0.98, 0.9800000000000001, 1.0, 1e-30]),
)
def test_map_side_of_the_target_agrees_with_the_gap(villages, data, share):
    fibre = data.draw(st.integers(0, villages))
    gap = _brute_gap(villages, fibre, repr(share))
    s = pd.DataFrame({"fibre_share": [fibre / villages], "fibre_gap_villages": [gap]})
    cls, _ = area_classes(s["fibre_share"], share, met=fibre_met(s))
    bins = share_bins(share)
    at_or_above = bins[cls[0]][0] >= min(share, 1.0)
    assert at_or_above == (gap == 0)


def _grow_north(cfg: Path, villages: int, fibre: int) -> None:
    """Add ``villages`` register-only administrative villages (township T3 of county K1, no
    polygon), the first ``fibre`` of them on fibre by the operator table. The north world
    has 6 villages, 3 on fibre (T1: 2 of 3, T2: 1 of 3)."""
    folder = cfg.parent
    codes = [f"W{i:04d}" for i in range(villages)]
    with (folder / "register.csv").open("a", encoding="utf-8") as out:
        out.writelines(f"{c},Ny {c},village,T3,K1\n" for c in codes)
    with (folder / "operator.csv").open("a", encoding="utf-8") as out:
        out.writelines(f"{c},{'yes' if i < fibre else 'no'}\n" for i, c in enumerate(codes))


def _table(out: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(out / "tables" / name, dtype={"code": str}, encoding="utf-8-sig")


@pytest.mark.parametrize(
    ("share", "county_gap", "township_gaps"),
    [
        # 1,960 of 2,000 villages: exactly 98 % meets 98 % ...
        (0.98, 0, {"T1": 1, "T2": 2, "T3": 0}),
        # ... and not 98 % plus one in 10**16 (the product overflowed int64: gap 0, met)
        (0.9800000000000001, 1, {"T1": 1, "T2": 2, "T3": 0}),
    ],
)
def test_run_with_a_target_of_many_digits(tmp_path, share, county_gap, township_gaps):
    world = write_north_world(tmp_path / "in")
    _grow_north(world, 1994, 1957)
    edit(world, {"targets.fibre_share": share})
    result, out = run_cli(world, tmp_path)
    assert result.exit_code == 0, result.output
    county = _table(out, "summary_county.csv").set_index("code")
    assert county.loc["K1", ["villages", "fibre_villages"]].tolist() == [2000, 1960]
    assert county.loc["K1", "fibre_gap_villages"] == county_gap
    assert county.loc["K1", "fibre_target"] == share  # written as given, not rounded
    township = _table(out, "summary_township.csv").set_index("code")
    assert township["fibre_gap_villages"].to_dict() == township_gaps
    h = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["headline"]
    assert h["fibre_gap_villages"] == county_gap
    assert h["fibre_target_met"] is (county_gap == 0)


def test_run_with_a_tiny_target(tmp_path):
    # 1e-30 of any number of villages is one village: T3 (5 villages, none on fibre) is 1 short
    world = write_north_world(tmp_path / "in")
    _grow_north(world, 5, 0)
    edit(world, {"targets.fibre_share": 1e-30})
    result, out = run_cli(world, tmp_path)
    assert result.exit_code == 0, result.output
    township = _table(out, "summary_township.csv").set_index("code")
    assert township["fibre_gap_villages"].to_dict() == {"T1": 0, "T2": 0, "T3": 1}
    h = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["headline"]
    assert h["fibre_gap_villages"] == 0 and h["fibre_target_met"] is True


def test_report_and_map_agree_with_the_gap_where_the_float_share_equals_the_target(tmp_path):
    # 15 of 18 villages = 5/6, which rounds to the float 0.8333333333333334 but is below the
    # decimal 0.8333333333333334: one village short, though share >= target in floats
    world = write_north_world(tmp_path / "in")
    _grow_north(world, 12, 12)
    edit(world, {"targets.fibre_share": 0.8333333333333334})
    result = analysed(world)
    assert result.headline["fibre_share"] == result.config.targets.fibre_share  # floats equal
    assert result.headline["fibre_gap_villages"] == 1
    assert result.headline["fibre_target_met"] is False
    html = render_report_html(result)
    card = re.search(r'<div class="value ([a-z]+)">83\.3[0-9]* ?%</div>', html)
    assert card is not None and card.group(1) == "bad", html
    write_maps(result, tmp_path / "maps")
    county = layers((tmp_path / "maps" / "province.html").read_text(encoding="utf-8"))[
        "county_fibre_share"
    ]
    labels = [c["label"] for c in county["classes"]]
    got = dict(zip(column(county, "code"), (labels[k] for k in county["cls"]), strict=True))
    target = result.config.targets.fibre_share
    below = {label for lo, hi, label, _ in share_bins(target) if hi <= target and lo < target}
    assert got["K1"] in below, (got, below)


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
