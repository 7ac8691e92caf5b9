"""Intervals and paired tests for results over training seeds and chip instances.

Device results are nested: chips are drawn per trained model, and models per training seed.
The honest interval for a mean over seeds × chips therefore treats the seed as the unit
(chips of one seed are not independent replicates of the training): it is a t interval over
the per-seed means with S − 1 degrees of freedom. With a single seed the only spread left is
the chips', and the interval says so (``unit == "chip"``): it cannot speak for other seeds.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence

from scipy import stats as _st


@dataclass(frozen=True)
class Interval:
    """Mean with a two-sided t confidence interval, and where its spread comes from."""

    mean: float
    half_width: float  # NaN when there is a single replicate: no interval can be given
    n: int  # replicates the interval is over
    unit: str  # "seed" or "chip"
    level: float = 0.95
    seed_var: float = 0.0  # variance component between seeds (random-effects estimate)
    chip_var: float = 0.0  # variance component between chips of one seed
    bounds: tuple[float, float] | None = None  # an asymmetric interval (from a transform), else mean ± half_width

    @property
    def low(self) -> float:
        return self.bounds[0] if self.bounds else self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.bounds[1] if self.bounds else self.mean + self.half_width

    def __str__(self) -> str:
        if math.isnan(self.half_width):
            return f"{self.mean:.2f}"
        if self.bounds:
            return f"{self.mean:.2f} [{self.low:.2f}, {self.high:.2f}]"
        return f"{self.mean:.2f} ± {self.half_width:.2f}"


def t_interval(values: Sequence[float], level: float = 0.95, unit: str = "seed", floor: float = 0.0) -> Interval:
    """Mean ± t_{(1+level)/2, n−1} · s/√n of independent replicates; ``floor``: the least variance each replicate is
    known to carry (``standard_error``), used in place of s² when the replicates happen to agree more closely."""
    n = len(values)
    if n == 0:
        raise ValueError("a confidence interval needs at least one value")
    if not 0 < level < 1:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    mean = sum(values) / n
    if n == 1:
        return Interval(mean, float("nan"), 1, unit, level)
    return Interval(mean, float(_st.t.ppf((1 + level) / 2, n - 1)) * standard_error(values, floor), n, unit, level)


def bounded_interval(values: Sequence[float], low: float = 0.0, high: float = 100.0, level: float = 0.95,
                     unit: str = "seed") -> Interval:
    """Mean of values confined to [low, high] (accuracy in %), with a t interval on the logit scale mapped back,
    so it never leaves the range. Values on a bound are moved inside it by 0.05 % of the range first."""
    if not high > low:
        raise ValueError(f"a bounded interval needs high > low, got [{low}, {high}]")
    if any(not low <= v <= high for v in values):
        raise ValueError(f"values must lie in [{low}, {high}], got {[v for v in values if not low <= v <= high][:3]}")
    eps = 5e-4
    span = high - low

    def to_logit(v: float) -> float:
        q = min(max((v - low) / span, eps), 1 - eps)
        return math.log(q / (1 - q))

    base = t_interval(values, level, unit)
    if math.isnan(base.half_width):
        return base
    on_logit = t_interval([to_logit(v) for v in values], level, unit)
    back = [low + span / (1 + math.exp(-x)) for x in (on_logit.low, on_logit.high)]
    bounds = (min(back[0], base.mean), max(back[1], base.mean))
    return Interval(base.mean, (bounds[1] - bounds[0]) / 2, base.n, unit, level, bounds=bounds)


def ratio_interval(values: Sequence[float], level: float = 0.95, unit: str = "seed") -> Interval:
    """Geometric mean of positive ratios (speedups, energy ratios) with a t interval on the log scale mapped back:
    it never reaches 0 or below."""
    if any(not v > 0 for v in values):
        raise ValueError(f"ratios must be positive, got {[v for v in values if not v > 0][:3]}")
    on_log = t_interval([math.log(v) for v in values], level, unit)
    if math.isnan(on_log.half_width):
        return Interval(math.exp(on_log.mean), math.nan, on_log.n, unit, level)
    lo, hi = math.exp(on_log.low), math.exp(on_log.high)
    return Interval(math.exp(on_log.mean), (hi - lo) / 2, on_log.n, unit, level, bounds=(lo, hi))


def nested_interval(values: dict[tuple[int, int], float], level: float = 0.95,
                    within: tuple[float, float] | None = None) -> Interval:
    """Interval of the mean over {(seed, chip): value}, with the seed / chip variance split.

    ``within=(low, high)``: the values are confined to that range (accuracy: (0, 100)) and the interval is
    taken on the logit scale (``bounded_interval``), so it stays inside it.

    Variance components come from the one-way random-effects ANOVA (chips nested in seeds):
    chip_var = MS_within, seed_var = max(0, (MS_between − MS_within) / chips per seed).
    """
    by_seed = _by_seed(values)
    if not by_seed:
        raise ValueError("a confidence interval needs at least one value")
    sizes = {len(v) for v in by_seed.values()}
    if len(sizes) != 1:
        raise ValueError(f"every seed needs the same number of chips for the variance split, got {sorted(sizes)}")
    chips = sizes.pop()
    seed_means = [sum(v) / chips for v in by_seed.values()]
    pooled = [x for v in by_seed.values() for x in v]
    s = len(seed_means)
    ms_within = _within_mean_square(by_seed)
    if s > 1:
        grand = sum(seed_means) / s
        ms_between = chips * sum((m - grand) ** 2 for m in seed_means) / (s - 1)
        base = (bounded_interval(seed_means, *within, level=level) if within
                else t_interval(seed_means, level, "seed"))
        seed_var = max(0.0, (ms_between - ms_within) / chips)
    else:
        base = (bounded_interval(pooled, *within, level=level, unit="chip") if within
                else t_interval(pooled, level, "chip"))
        seed_var = float("nan")  # not estimable from one seed
    return Interval(base.mean, base.half_width, base.n, base.unit, level, seed_var, ms_within, base.bounds)


@dataclass(frozen=True)
class PairedTest:
    """A − B over matched replicates: mean difference, its interval, and the paired t-test p-value."""

    difference: Interval
    p_value: float
    unit: str

    def verdict(self, alpha: float = 0.05) -> str:
        """"A > B", "A < B" or "no significant difference" at level alpha (two-sided)."""
        if math.isnan(self.p_value) or self.p_value >= alpha:
            return "no significant difference"
        return "A > B" if self.difference.mean > 0 else "A < B"


def paired_test(a: dict[tuple[int, int], float], b: dict[tuple[int, int], float], level: float = 0.95) -> PairedTest:
    """Paired t-test of A − B on the same (seed, chip) keys (use chip 0 for digital results).

    With several seeds the pairs are the per-seed mean differences (the seed is the
    independent unit), whose variance is never taken below chip_var / chips (``chip_floor``);
    with one seed they are the chips.
    """
    if set(a) != set(b):
        raise ValueError(f"a paired test needs the same (seed, chip) replicates on both sides; "
                         f"only in A: {sorted(set(a) - set(b))[:5]}, only in B: {sorted(set(b) - set(a))[:5]}")
    diff = {k: a[k] - b[k] for k in a}
    seeds = {s for s, _ in diff}
    if len(seeds) > 1:
        per_seed: dict[int, list[float]] = defaultdict(list)
        for (s, _), d in diff.items():
            per_seed[s].append(d)
        units, unit = [sum(v) / len(v) for _, v in sorted(per_seed.items())], "seed"
        floor = chip_floor(diff)
    else:
        units, unit, floor = [d for _, d in sorted(diff.items())], "chip", 0.0
    return PairedTest(t_interval(units, level, unit, floor), direction_p(units, floor), unit)


def chip_floor(values: dict[tuple[int, int], float]) -> float:
    """The variance a seed's mean over its chips carries from the chips alone: the within-seed (chip) mean square
    of the nested ANOVA over the fewest chips a seed has (pooled over unequal chip counts too); 0 with one chip
    per seed (digital results) or one seed."""
    by_seed = _by_seed(values)
    chips = min((len(v) for v in by_seed.values()), default=1)
    return _within_mean_square(by_seed) / chips if len(by_seed) > 1 and chips > 1 else 0.0


def _by_seed(values: dict[tuple[int, int], float]) -> dict[int, list[float]]:
    """{(seed, chip): value} grouped by seed, each seed's values in chip order."""
    by_seed: dict[int, list[float]] = defaultdict(list)
    for (seed, _chip), v in sorted(values.items()):
        by_seed[seed].append(v)
    return by_seed


def _within_mean_square(by_seed: dict[int, list[float]]) -> float:
    """Pooled within-seed variance: Σ squared deviations from each seed's mean over Σ (chips − 1); 0 without any
    seed of two or more chips."""
    df = sum(len(v) - 1 for v in by_seed.values())
    ss = sum((x - sum(v) / len(v)) ** 2 for v in by_seed.values() for x in v)
    return ss / df if df > 0 else 0.0


def standard_error(values: Sequence[float], floor: float = 0.0) -> float:
    """s / √n of at least two values, with s² never below ``floor``.

    ``floor``: the variance each value is known to carry from what was averaged inside it — a seed's mean over c
    chips carries at least chip_var / c, estimated from every chip of every seed (many degrees of freedom). Three
    seeds can agree far more closely than that by chance (heavy-tailed chips: pcm's retention differences spread
    0.03 over seeds against 1.56 expected from 75 chips), and an interval from their spread alone would claim a
    precision the chips do not allow. The degrees of freedom stay n − 1: conservative where the floor binds (the
    test then rejects a true null less often than its level), never liberal."""
    n = len(values)
    mean = sum(values) / n
    return math.sqrt(max(sum((v - mean) ** 2 for v in values) / (n - 1), floor)) / math.sqrt(n)


def direction_p(values: Sequence[float], floor: float = 0.0) -> float:
    """Two-sided one-sample t test of mean = 0 (``floor``: as in ``standard_error``); NaN with fewer than 2 values or
    no spread (the t test is undefined then, not certain)."""
    if len(values) < 2 or standard_error(values, floor) == 0.0:
        return math.nan
    t = (sum(values) / len(values)) / standard_error(values, floor)
    return float(2 * _st.t.sf(abs(t), len(values) - 1))


def seed_differences(a: dict[tuple[int, int], float], b: dict[tuple[int, int], float]) -> list[float]:
    """Per-seed mean of A − B over the chips of each seed (sorted by seed): the independent units of a verdict."""
    if set(a) != set(b):
        raise ValueError(f"a paired comparison needs the same (seed, chip) replicates on both sides; "
                         f"only in A: {sorted(set(a) - set(b))[:5]}, only in B: {sorted(set(b) - set(a))[:5]}")
    per_seed: dict[int, list[float]] = defaultdict(list)
    for (s, _), va in sorted(a.items()):
        per_seed[s].append(va - b[(s, _)])
    return [sum(v) / len(v) for _, v in sorted(per_seed.items())]


def keyed(rows: Iterable[dict], value: str, seed: str = "seed", chip: str = "chip") -> dict[tuple[int, int], float]:
    """{(seed, chip): row[value]} from tidy rows (a row without a chip column counts as chip 0)."""
    out: dict[tuple[int, int], float] = {}
    for r in rows:
        key = (int(r[seed]), int(r.get(chip, 0) or 0))
        if key in out:
            raise ValueError(f"two rows for seed {key[0]}, chip {key[1]}: filter the rows to one configuration first")
        out[key] = float(r[value])
    return out
