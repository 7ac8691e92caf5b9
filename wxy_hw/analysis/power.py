"""How many seeds, chips and test images a claim needs to be decided, from a pilot's variances.

A verdict's unit is the seed: its per-seed difference A − B averages the chips and the test images
of that seed. Its variance over seeds splits into three parts, each shrinking with its own count:

    Var(per-seed difference) = σ²_train + σ²_chip / chips + σ²_image / images

* σ²_chip: the within-seed variance of the per-chip difference (the pilot's nested ANOVA);
* σ²_image: the binomial variance of a difference of two accuracies on N images. Unpaired it would be
  (p_A·(1 − p_A) + p_B·(1 − p_B)) · 100² (points²) at the pilot's accuracies; both models answer the *same*
  images (and a corruption claim averages several corrupted copies of each), so the paired variance —
  (p₁₀ + p₀₁ − (p₁₀ − p₀₁)²) over the images one model gets right and the other wrong — is smaller, often
  far smaller. That bound is therefore used only as a ceiling: the image part is the bound or what the
  observed variance leaves after the chips, whichever is smaller;
* σ²_train: what is left of the pilot's observed variance (never below 0) — seed to seed.

At the pilot's own chips and images the three parts add up to the observed variance (the spread the seeds
showed; the image bound never raises it), except where the chips alone imply more — chip_var / chips, the same
floor the verdicts put under a seed's variance (``stats.standard_error``); a larger evaluation shrinks the chip
and image parts. Which share of the residual is image noise is not known from per-seed differences alone; giving
it the largest share the bound allows makes the larger evaluation's count the optimistic end (more test images
help at most that much), while the count at the pilot's own evaluation is the estimate.

Power is that of the paired t test at the claim's margin (the smallest effect that matters), at
level alpha / family size (the first step of Holm: a plan that holds for the smallest p-value of a
family), from the noncentral t distribution; for a "no drop" claim, that of TOST when the true
difference is 0 (normal approximation: 2·Φ(margin/se − z) − 1). A spread estimated from a few seeds is itself
uncertain: ``sd_upper_bound`` gives the count at its upper 80 % limit, the cautious end of a plan.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats as _st

MAX_SEEDS = 10_000


@dataclass(frozen=True)
class VarianceParts:
    """The three parts of a per-seed difference's variance (points²), at one chip and one image."""

    train: float  # seed to seed
    chip: float  # × 1/chips
    image: float  # × 1/images

    def at(self, chips: int, images: int) -> float:
        """Variance of one seed's difference with ``chips`` chips and ``images`` test images."""
        return self.train + self.chip / max(chips, 1) + self.image / max(images, 1)


def split_variance(observed: float, chip_var: float, chips: int, images: int, level_a: float, level_b: float
                   ) -> VarianceParts:
    """The pilot's observed variance of per-seed differences split into train / chip / image parts."""
    bound = sum((p / 100) * (1 - p / 100) for p in (level_a, level_b)) * 100 ** 2
    chip = chip_var if chips > 1 and math.isfinite(chip_var) else 0.0
    beyond_chips = max(0.0, observed - chip / max(chips, 1))
    image = min(bound, beyond_chips * max(images, 1))  # paired: the unpaired bound is a ceiling, not an estimate
    train = max(0.0, beyond_chips - image / max(images, 1))
    return VarianceParts(train, chip, image)


def sd_upper_bound(sd: float, n: int, confidence: float = 0.8) -> float:
    """The one-sided upper ``confidence`` limit of a standard deviation estimated from ``n`` values
    (s·√((n − 1) / χ²_{1−confidence, n−1})): what a plan should assume when a pilot's few seeds may have understated
    the spread, as three seeds (2 degrees of freedom) easily do (Browne 1995, Stat. Med. 14: 1933, the "upper
    confidence limit" sample size). nan for fewer than 2 values."""
    if n < 2 or not math.isfinite(sd):
        return math.nan
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    return sd * math.sqrt((n - 1) / float(_st.chi2.ppf(1 - confidence, n - 1)))


def power(seeds: int, sd: float, margin: float, alpha: float = 0.05, kind: str = "direction") -> float:
    """Probability that ``seeds`` seeds decide a claim whose per-seed differences have spread ``sd``: a true effect
    of ``margin`` found significant (two-sided t test), or for "no drop", a true 0 placed inside ± margin (TOST)."""
    if seeds < 2:
        return 0.0
    if sd <= 0:
        return 1.0
    se = sd / math.sqrt(seeds)
    if kind == "no drop":
        z = float(_st.norm.ppf(1 - alpha))
        return max(0.0, 2 * float(_st.norm.cdf(margin / se - z)) - 1)
    df = seeds - 1
    crit = float(_st.t.ppf(1 - alpha / 2, df))
    nc = margin / se
    return float(_st.nct.sf(crit, df, nc) + _st.nct.cdf(-crit, df, nc))


def seeds_needed(sd: float, margin: float, alpha: float = 0.05, target: float = 0.8, kind: str = "direction",
                 minimum: int = 3) -> int | None:
    """The fewest seeds (at least ``minimum``) with ``power`` ≥ ``target``; None beyond MAX_SEEDS."""
    if not 0 < target < 1:
        raise ValueError(f"target power must lie in (0, 1), got {target}")
    if power(minimum, sd, margin, alpha, kind) >= target:
        return minimum
    low, high = minimum, minimum * 2  # power grows with the seeds: double to bracket, then bisect
    while power(high, sd, margin, alpha, kind) < target:
        if high > MAX_SEEDS:
            return None
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if power(mid, sd, margin, alpha, kind) < target else (low, mid)
    return high
