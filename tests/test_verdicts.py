"""Verdict rules: outcome classes from intervals, TOST, Holm within families, seeds required, bounded intervals."""
from __future__ import annotations

import math

import pytest

from wxy_hw.analysis.stats import bounded_interval, nested_interval, paired_test, ratio_interval
from wxy_hw.analysis.verdicts import (MIN_SEEDS, Evidence, Margin, direction_p, holm, judge, tost_p)

POINT = Margin(1.0, "points", "test margin")


def _t2_cdf(t: float) -> float:
    """Student t CDF with 2 degrees of freedom in closed form: 1/2 + t / (2·sqrt(2 + t²))."""
    return 0.5 + t / (2 * math.sqrt(2 + t * t))


def one(differences, **kw):
    return judge([Evidence(tuple(differences), kw.pop("margin", POINT), **kw)])[0]


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 → 3·0.01 = 0.03, 2·0.03 = 0.06, max(0.06, 1·0.04) = 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    out = holm([math.nan, 0.02])  # NaN is no test: m = 1
    assert math.isnan(out[0]) and out[1] == pytest.approx(0.02)
    assert holm([]) == []


def test_tost_and_direction_p_by_hand():
    # values 1, 2, 3: mean 2, s = 1, se = 1/√3, df = 2
    se = 1 / math.sqrt(3)
    assert direction_p([1, 2, 3]) == pytest.approx(2 * (1 - _t2_cdf(2 / se)))
    assert tost_p([1, 2, 3], 5.0) == pytest.approx(max(1 - _t2_cdf(7 / se), _t2_cdf(-3 / se)))
    assert tost_p([1, 2, 3], 5.0) == pytest.approx(0.01754, abs=1e-4)
    with pytest.raises(ValueError, match="positive"):
        tost_p([1, 2, 3], 0.0)


def test_outcome_classes():
    assert one([2.0, 2.5, 3.0]).outcome == "reproduced"
    assert one([-2.0, -2.5, -3.0]).outcome == "refuted"
    assert one([-2.0, -2.5, -3.0], expected_sign=-1).outcome == "reproduced"
    assert one([0.05, -0.05, 0.0, 0.02, -0.03]).outcome == "no effect"
    assert one([3.0, -4.0, 1.0]).outcome == "inconclusive"
    small = one([0.3, 0.35, 0.4])  # beyond 0 but below the margin: reproduced, and the reason says so
    assert small.outcome == "reproduced" and "below the 1-points margin" in small.reason


def test_fewer_than_three_seeds_give_no_verdict():
    assert MIN_SEEDS == 3
    for diffs in ([5.0], [5.0, 5.1]):
        j = one(diffs)
        assert j.outcome == "not judged" and f"{len(diffs)} seed" in j.reason and "at least 3" in j.reason


def test_identical_differences_are_not_certainty():
    """Two (or more) seeds with the same difference have no spread: the t test is undefined, never p = 0."""
    j = one([2.0, 2.0, 2.0])
    assert j.outcome == "inconclusive" and math.isnan(j.p_direction) and "no spread" in j.reason
    assert math.isnan(paired_test({(s, 0): 3.0 for s in range(3)}, {(s, 0): 1.0 for s in range(3)}).p_value)


def test_no_drop_claims_use_tost():
    assert one([0.1, -0.2, 0.05, 0.0], kind="no drop").outcome == "reproduced"  # inside ± 1
    assert one([3.0, 3.5, 4.0], kind="no drop").outcome == "reproduced"  # a gain is no drop
    refuted = one([-3.0, -3.5, -4.0], kind="no drop")
    assert refuted.outcome == "refuted" and "beyond 1 points" in refuted.reason
    assert one([-1.0, 0.5, -2.5], kind="no drop").outcome == "inconclusive"


def test_holm_within_family_only():
    """p ≈ 0.02 reproduces alone; among four seed claims Holm multiplies it by 4; an extension family leaves it."""
    alone = [1.0, 1.5, 2.0, 1.2, 0.9]
    assert 0.001 < direction_p(alone) < 0.0125
    others = [(0.5, -0.4, 0.3, -0.6, 0.1)] * 3
    crowded = judge([Evidence(tuple(alone), POINT)] + [Evidence(d, POINT) for d in others])
    assert crowded[0].p_direction_holm == pytest.approx(4 * direction_p(alone))
    assert crowded[0].family_size == 4
    apart = judge([Evidence(tuple(alone), POINT)] + [Evidence(d, POINT, family="extension") for d in others])
    assert apart[0].p_direction_holm == pytest.approx(direction_p(alone)) and apart[0].outcome == "reproduced"
    marginal = [0.2, 1.8, 0.6, 1.4, 0.4]  # p ≈ 0.03: reproduced alone, inconclusive among four
    assert 0.0125 < direction_p(marginal) < 0.05
    assert one(marginal).outcome == "reproduced"
    among = judge([Evidence(tuple(marginal), POINT)] + [Evidence(d, POINT) for d in others])[0]
    assert among.outcome == "inconclusive" and among.difference.low > 0  # its own interval excludes 0: say why not
    assert "not after Holm's correction" in among.reason and "spans 0" not in among.reason


def test_bad_evidence_is_refused():
    with pytest.raises(ValueError, match="kind"):
        Evidence((1.0,), POINT, kind="maybe")
    with pytest.raises(ValueError, match="family"):
        Evidence((1.0,), POINT, family="other")
    with pytest.raises(ValueError, match="expected_sign"):
        Evidence((1.0,), POINT, expected_sign=0)
    with pytest.raises(ValueError, match="positive"):
        Margin(0.0, "points", "none")


def test_bounded_intervals_stay_in_range():
    acc = bounded_interval([99.0, 100.0, 97.0])  # the t interval would pass 100
    assert acc.high <= 100.0 and acc.low >= 0.0 and acc.low <= acc.mean <= acc.high
    assert acc.mean == pytest.approx(98.6667, abs=1e-3) and "[" in str(acc)
    speed = ratio_interval([0.5, 3.0, 1.2])  # the t interval of 1.57 ± 3.2 would pass 0
    assert speed.low > 0 and speed.mean == pytest.approx((0.5 * 3.0 * 1.2) ** (1 / 3))
    nested = nested_interval({(s, c): v for s, vals in enumerate([[99, 100], [97, 99], [100, 98]])
                              for c, v in enumerate(vals)}, within=(0.0, 100.0))
    assert nested.high <= 100.0 and nested.unit == "seed"
    with pytest.raises(ValueError, match=r"lie in \[0"):
        bounded_interval([101.0, 50.0])
    with pytest.raises(ValueError, match="positive"):
        ratio_interval([1.0, 0.0])


def test_seeds_that_agree_more_than_their_chips_allow_are_judged_on_the_chips():
    # three seeds at −2.72 ± 0.03 look decisive, but each seed's mean over its chips carries variance 2.4 (pcm's
    # retention claim: chip_var 61 over 25 chips): se = √(2.4 / 3), t = −2.72 / 0.894 on 2 df
    tight = (-2.69, -2.76, -2.72)
    assert one(tight).outcome == "refuted"  # the seeds' spread alone
    floored = one(tight, floor=2.4)
    se = math.sqrt(2.4 / 3)
    t = abs(sum(tight) / 3) / se
    assert floored.p_direction == pytest.approx(2 * (1 - _t2_cdf(t)), rel=1e-6)
    assert floored.outcome == "inconclusive" and floored.difference.half_width > 3
    assert one(tight, floor=1e-6).outcome == "refuted"  # a floor below the seeds' own spread changes nothing
    # identical seeds are no longer "undefined" when the chips say how uncertain each seed is
    assert not math.isnan(one((1.5, 1.5, 1.5), floor=0.01).p_direction)
