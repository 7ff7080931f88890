"""The unit rules of :mod:`ruralcov.units` against independent computations (numpy's median,
counts by hand); the runs that use them are in test_bad_inputs, test_stream and
test_distributed."""

from __future__ import annotations

import numpy as np
import pytest

from ruralcov.errors import UnitError
from ruralcov.units import SpeedTally, check_plausible, likely_unit, to_mbps


@pytest.mark.parametrize("seed", range(5))
def test_tally_median_and_merge(seed):
    rng = np.random.default_rng(seed)
    down = np.exp(rng.normal(np.log(30), 2, 5001))  # Mbit/s over many decades
    down[:40] = 0.0
    checked = rng.random(len(down)) < 0.9
    whole = SpeedTally.of(down, checked)
    parts = SpeedTally.of(down[:1000], checked[:1000]) + SpeedTally.of(down[1000:],
                                                                       checked[1000:])
    np.testing.assert_array_equal(whole.counts, parts.counts)  # batches merge exactly
    assert whole.checked == checked.sum()
    assert whole.absurd == (checked & (down > 10_000)).sum()
    want = np.median(down[checked])
    assert abs(np.log10(whole.median() / want)) <= 0.01  # within its bin (1/100 decade)


def test_likely_unit():
    assert likely_unit(25_000) == "kbps"  # 25 Mbit/s written in kbit/s
    assert likely_unit(25e6) == "bps"
    assert likely_unit(25) == "mbps"
    assert likely_unit(1e13) is None and likely_unit(0.0) is None


def test_exact_conversion_of_whole_multiples():
    mbps = np.arange(0, 100_000) / 100  # every value with two decimals up to 1000 Mbit/s
    np.testing.assert_array_equal(to_mbps(np.round(mbps * 1000, 6), "kbps"), mbps)
    np.testing.assert_array_equal(to_mbps(np.round(mbps * 1e6, 3), "bps"), mbps)


def test_stray_absurd_rows_do_not_stop():
    ok = np.full(2000, 20.0)
    check = dict(column="down", path="t.csv", unit=None)
    check_plausible(SpeedTally.of(np.r_[ok, np.full(9, 5e4)], np.ones(2009, bool)), **check)
    check_plausible(SpeedTally.of(np.r_[ok, np.full(20, 5e4)], np.ones(2020, bool)), **check)
    with pytest.raises(UnitError, match=r"21 \(1\.0%\)"):  # above 1 % and at least 10
        check_plausible(SpeedTally.of(np.r_[ok, np.full(21, 5e4)], np.ones(2021, bool)),
                        **check)
