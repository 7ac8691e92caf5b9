"""Verdicts on claims: a margin fixed before running, outcome classes read from intervals, TOST, Holm.

A claim compares A with B over training seeds (the seed is the independent unit: chips and test
images are averaged inside it first). Its evidence is the list of per-seed differences A − B.

Two kinds of claim:

* **direction** — "A beats B" (``expected_sign`` +1) or "A is below B" (−1):
  *reproduced* when the difference's interval lies beyond 0 in the claim's direction, *refuted*
  when it lies beyond 0 the other way, *no effect* when the two one-sided tests (TOST) place it
  inside ± margin, *inconclusive* otherwise.
* **no drop** — "A loses nothing against B": *reproduced* when TOST places the difference inside
  ± margin, or A is significantly above B; *refuted* when the difference lies below −margin
  (one-sided, at the same level); *inconclusive* otherwise.

Multiplicity: within a declared family (the seed's own claims; our extensions), the direction
p-values and the TOST p-values are each Holm-adjusted (step-down, strong control of the
family-wise error at ``alpha``), and outcomes read the adjusted values. On hardware a seed's difference
averages chips, and its variance is never taken below what those chips alone give (``Evidence.floor``:
chip_var / chips, from every chip of every seed), however closely three seeds happen to agree. Fewer than
``MIN_SEEDS`` seeds give no verdict (*not judged*); a difference with no spread between seeds
and no chips under it stays *inconclusive* (the t statistic is undefined: identical seeds
usually mean the seed changed nothing, not that the effect is certain); on hardware the chips'
floor gives even identical seeds a defined test.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from scipy import stats as _st

from .stats import Interval, direction_p, standard_error as _se, t_interval

OUTCOMES = ("reproduced", "refuted", "no effect", "inconclusive", "not judged")
KINDS = ("direction", "no drop")
FAMILIES = ("seed", "extension")
MIN_SEEDS = 3


@dataclass(frozen=True)
class Margin:
    """The smallest effect that matters for a claim, fixed in code before any run, with its reason."""

    value: float
    unit: str
    reason: str

    def __post_init__(self) -> None:
        if not (self.value > 0 and math.isfinite(self.value)):
            raise ValueError(f"a margin is a positive number, got {self.value}")


@dataclass(frozen=True)
class Evidence:
    """What one claim is judged on: the per-seed differences A − B, the claim's kind, direction and margin."""

    differences: tuple[float, ...]
    margin: Margin
    family: str = "seed"
    kind: str = "direction"
    expected_sign: int = 1
    floor: float = 0.0  # the least variance of one seed's difference: chip_var / chips on hardware (stats.standard_error)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"claim kind must be one of {KINDS}, got {self.kind!r}")
        if self.family not in FAMILIES:
            raise ValueError(f"claim family must be one of {FAMILIES}, got {self.family!r}")
        if self.expected_sign not in (1, -1):
            raise ValueError(f"expected_sign must be +1 or −1, got {self.expected_sign}")


@dataclass(frozen=True)
class Judgement:
    """One claim's outcome, the numbers it was read from, and why (one line)."""

    outcome: str
    difference: Interval  # the (1 − alpha) t interval of the mean difference over seeds
    p_direction: float  # two-sided paired t test of difference = 0 (NaN: undefined)
    p_equivalence: float  # TOST of |difference| ≥ margin (NaN: undefined)
    p_direction_holm: float = math.nan
    p_equivalence_holm: float = math.nan
    reason: str = ""
    family_size: int = 1
    margin: Margin | None = field(default=None, compare=False)


def tost_p(values: Sequence[float], margin: float, floor: float = 0.0) -> float:
    """Two one-sided t tests of −margin < mean < margin: the larger of the two p-values (NaN when undefined).

    p < alpha ⟺ the (1 − 2·alpha) t interval lies inside (−margin, margin)."""
    if margin <= 0:
        raise ValueError(f"an equivalence margin is positive, got {margin}")
    if len(values) < 2 or _se(values, floor) == 0.0:
        return math.nan
    mean, se, df = sum(values) / len(values), _se(values, floor), len(values) - 1
    p_low = float(_st.t.sf((mean + margin) / se, df))  # H0: mean ≤ −margin
    p_high = float(_st.t.cdf((mean - margin) / se, df))  # H0: mean ≥ +margin
    return max(p_low, p_high)


def below_margin_p(values: Sequence[float], margin: float, floor: float = 0.0) -> float:
    """One-sided t test of H0: mean ≥ −margin (small when the mean lies clearly below −margin)."""
    if len(values) < 2 or _se(values, floor) == 0.0:
        return math.nan
    return float(_st.t.cdf((sum(values) / len(values) + margin) / _se(values, floor), len(values) - 1))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (monotone, capped at 1); NaN stays NaN and does not count as a test."""
    finite = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    m = len(finite)
    out = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(finite):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def _outcome(e: Evidence, interval: Interval, p_dir: float, p_eq: float, p_below: float, alpha: float
             ) -> tuple[str, str]:
    n, m = len(e.differences), e.margin
    if n < MIN_SEEDS:
        return "not judged", f"{n} seed{'s' if n != 1 else ''}: a verdict needs at least {MIN_SEEDS}"
    if math.isnan(p_dir):
        return "inconclusive", "no spread between seeds: the t test is undefined (did the seed change anything?)"
    up = interval.mean > 0
    if e.kind == "no drop":
        if not math.isnan(p_eq) and p_eq < alpha:
            return "reproduced", f"inside ± {m.value:g} {m.unit} (TOST, Holm-adjusted p = {p_eq:.3g})"
        if p_dir < alpha and up:
            return "reproduced", f"A above B (Holm-adjusted p = {p_dir:.3g}): no drop"
        if p_below < alpha:
            return "refuted", f"a drop beyond {m.value:g} {m.unit} (one-sided p = {p_below:.3g})"
        return "inconclusive", "neither inside the margin nor beyond it at this many seeds"
    if p_dir < alpha:
        agrees = up == (e.expected_sign > 0)
        beyond = abs(interval.mean) >= m.value
        size = "" if beyond else f"; the mean effect is below the {m.value:g}-{m.unit} margin"
        return ("reproduced" if agrees else "refuted"), f"interval beyond 0 (Holm-adjusted p = {p_dir:.3g}){size}"
    if not math.isnan(p_eq) and p_eq < alpha:
        return "no effect", f"inside ± {m.value:g} {m.unit} (TOST, Holm-adjusted p = {p_eq:.3g})"
    if interval.low > 0 or interval.high < 0:  # significant alone, not among the family's tests
        return "inconclusive", (f"interval beyond 0 on its own, but not after Holm's correction within its family "
                                f"(adjusted p = {p_dir:.3g})")
    return "inconclusive", f"interval spans 0 and reaches beyond ± {m.value:g} {m.unit}"


def judge(evidence: Sequence[Evidence], alpha: float = 0.05, level: float = 0.95) -> list[Judgement]:
    """Every claim's outcome, Holm-adjusted within its family (claims not judged do not count as tests)."""
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must lie in (0, 0.5), got {alpha}")
    raw = []
    for e in evidence:
        judged = len(e.differences) >= MIN_SEEDS
        vals = list(e.differences)
        raw.append((direction_p(vals, e.floor) if judged else math.nan,
                    tost_p(vals, e.margin.value, e.floor) if judged else math.nan))
    adjusted: dict[int, tuple[float, float]] = {}
    for fam in FAMILIES:
        idx = [i for i, e in enumerate(evidence) if e.family == fam]
        dirs, eqs = holm([raw[i][0] for i in idx]), holm([raw[i][1] for i in idx])
        adjusted.update({i: (d, q) for i, d, q in zip(idx, dirs, eqs)})
    out = []
    for i, e in enumerate(evidence):
        vals = list(e.differences)
        if not vals:
            raise ValueError("a claim needs at least one seed's difference")
        interval = t_interval(vals, level, floor=e.floor)
        p_dir, p_eq = adjusted[i]
        p_below = below_margin_p(vals, e.margin.value, e.floor) if e.kind == "no drop" else math.nan
        outcome, reason = _outcome(e, interval, p_dir, p_eq, p_below, alpha)
        size = sum(1 for j, f in enumerate(evidence) if f.family == e.family and not math.isnan(raw[j][0]))
        out.append(Judgement(outcome, interval, raw[i][0], raw[i][1], p_dir, p_eq, reason, size, e.margin))
    return out
