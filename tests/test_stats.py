"""Confidence intervals, the seed / chip variance split and the paired test, by hand and against scipy."""
from __future__ import annotations

import math

import pytest
from scipy import stats

from wxy_hw.analysis.stats import chip_floor, keyed, nested_interval, paired_test, t_interval


def test_t_interval_by_hand():
    iv = t_interval([1.0, 2.0, 3.0])
    # mean 2, s = 1, t(0.975, 2) = 4.302653 → half width 4.302653 / √3
    assert iv.mean == 2.0 and iv.half_width == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert str(iv) == "2.00 ± 2.48" and (iv.low, iv.high) == pytest.approx((2 - 2.484138, 2 + 2.484138), rel=1e-5)
    one = t_interval([5.0])
    assert math.isnan(one.half_width) and str(one) == "5.00"


def test_nested_interval_and_variance_split_by_hand():
    values = {(0, 0): 1.0, (0, 1): 3.0, (1, 0): 5.0, (1, 1): 7.0}
    iv = nested_interval(values)
    # seed means 2 and 6: MS_within = 4/2 = 2, MS_between = 2·(4 + 4)/1 = 16 → seed_var = (16 − 2)/2 = 7
    assert iv.unit == "seed" and iv.n == 2 and iv.mean == 4.0
    assert iv.chip_var == pytest.approx(2.0) and iv.seed_var == pytest.approx(7.0)
    assert iv.half_width == pytest.approx(12.706205 * math.sqrt(8) / math.sqrt(2), rel=1e-6)
    single = nested_interval({(0, c): v for c, v in enumerate([1.0, 2.0, 3.0])})
    assert single.unit == "chip" and single.n == 3 and math.isnan(single.seed_var)
    with pytest.raises(ValueError, match="same number of chips"):
        nested_interval({(0, 0): 1.0, (0, 1): 2.0, (1, 0): 3.0})


def test_paired_test_matches_scipy():
    a = {(0, c): v for c, v in enumerate([71.0, 69.5, 73.0, 70.0, 72.5])}
    b = {(0, c): v for c, v in enumerate([70.0, 69.0, 71.0, 70.5, 70.0])}
    res = paired_test(a, b)
    ref = stats.ttest_rel(list(a.values()), list(b.values()))
    assert res.unit == "chip" and res.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert res.difference.mean == pytest.approx(1.1)  # (1 + 0.5 + 2 − 0.5 + 2.5) / 5
    assert res.verdict(alpha=0.5) == "A > B" and res.verdict(alpha=0.01) == "no significant difference"
    # Several seeds: the unit is the seed; chips are averaged within each seed first.
    a2 = {(s, c): 10.0 + s + 0.5 * c for s in range(3) for c in range(2)}
    b2 = {(s, c): a2[s, c] - (1.0 + 0.3 * s * s + 0.01 * c) for s in range(3) for c in range(2)}
    res2 = paired_test(a2, b2)
    diffs = [sum(a2[s, c] - b2[s, c] for c in range(2)) / 2 for s in range(3)]
    assert res2.unit == "seed" and res2.difference.n == 3
    assert res2.p_value == pytest.approx(stats.ttest_1samp(diffs, 0.0).pvalue, rel=1e-9)
    # seeds that agree far more closely than their chips allow: the chips' variance is the floor. Differences
    # 1 ± 2 on two chips, seed means 1.000 / 1.001 / 1.002: within-seed mean square 8, so a seed's mean carries at
    # least 8 / 2 = 4; se = √(4 / 3), t = 1.001 / se on 2 degrees of freedom (the seeds' own spread, 0.001, ignored)
    a3 = {(s, c): 1.0 + 0.001 * s + (2.0 if c else -2.0) for s in range(3) for c in range(2)}
    res3 = paired_test(a3, {k: 0.0 for k in a3})
    assert chip_floor(a3) == pytest.approx(4.0)
    assert res3.p_value == pytest.approx(2 * stats.t.sf(1.001 / (4.0 / 3) ** 0.5, 2), rel=1e-9)
    assert res3.difference.half_width == pytest.approx(stats.t.ppf(0.975, 2) * (4.0 / 3) ** 0.5)
    assert chip_floor({(s, 0): float(s) for s in range(3)}) == 0.0  # one chip per seed: no floor
    # unbalanced chips (seeds of 2, 3 and 2 chips): the within-seed variance pooled over every chip, SS 8 + 8 + 8
    # over 1 + 2 + 1 df = 6, over the fewest chips a seed has (2): 3
    uneven = {**a3, (1, 2): 1.001}  # seed 1's third chip at its mean leaves its SS at 8
    assert chip_floor(uneven) == pytest.approx(24 / 4 / 2)
    with pytest.raises(ValueError, match="same \\(seed, chip\\) replicates"):
        paired_test(a, {(0, 0): 1.0})


def test_keyed_rows():
    rows = [{"seed": 0, "chip": 1, "accuracy": 50.0}, {"seed": 1, "accuracy": 60.0}]
    assert keyed(rows, "accuracy") == {(0, 1): 50.0, (1, 0): 60.0}
    with pytest.raises(ValueError, match="two rows"):
        keyed(rows + rows, "accuracy")
