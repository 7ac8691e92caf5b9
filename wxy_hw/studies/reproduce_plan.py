"""``reproduce.py --plan``: from a finished (pilot) reproduction, the seeds, chips and test images each claim
needs to be decided at its margin, and the time that would take.

Reads the pilot's ``claims.json`` (each judged claim's per-seed differences, chips, images, within-seed chip
variance and accuracy levels) and ``steps.json`` (each step's seconds), splits each claim's variance into
seed / chip / image parts (``analysis.power``) and asks, per claim, how many seeds reach the target power at
the pilot's chips and images and at a larger evaluation (``--plan-chips`` / ``--plan-images``). Time is the
pilot's own, scaled: training time per seed × seeds, plus evaluation time per seed × seeds × the growth of
chips × images. It is an estimate from one machine's run, and says so.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..analysis.power import sd_upper_bound, seeds_needed, split_variance
from ..run_dir import machine_seconds
from ..utils import read_json
from .train import RERUN

TRAINING_STEPS = ("methods",)  # step keys that train models: "methods" and "methods_<device>"


@dataclass(frozen=True)
class ClaimPlan:
    """One claim's need: seeds at the pilot's evaluation and at the larger one (None: beyond reach)."""

    section: str
    claim: str
    family: str
    margin: str
    pilot: str  # "s = 6.9 over 3 seeds × 3 chips × 300 images"
    verdict: str  # the pilot's own verdict ("no effect", "inconclusive", ...): a decided claim needs no more power
    parts: str  # "train 5.1, chip 3.0, image 2.2" (standard deviations, points)
    seeds_now: int | None
    seeds_larger: int | None
    seeds_cautious: int | None  # at the pilot's evaluation, its spread at the upper 80 % limit (sd_upper_bound)
    chips: int  # the pilot's chips and images per seed
    images: int


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else math.nan


def _numbers(values: Any) -> list[float]:
    """A claim's recorded per-seed differences as floats (a damaged record is refused, never guessed)."""
    if not isinstance(values, list) or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        raise ValueError(f"claims.json records differences {values!r}, not a list of numbers; rerun the pilot")
    return [float(v) for v in values]


def check_pilot(pilot: str | Path, flag: str = "") -> None:
    """``pilot`` must be a finished reproduction's folder (its claims.json in it); else one line naming it and the
    fix (``flag``: the option that named it, put before it)."""
    pilot = Path(pilot)
    if (pilot / "claims.json").is_file():
        return
    what = ("does not exist" if not pilot.exists() else "is a file, not a folder" if not pilot.is_dir()
            else "holds no claims.json")
    raise ValueError(f"{flag + ' ' if flag else ''}{pilot} {what}: give a finished reproduction folder (with "
                     "claims.json), e.g. runs/reproduce/small")


def claim_plans(pilot: Path, chips: int, images: int, alpha: float = 0.05, target: float = 0.8) -> list[ClaimPlan]:
    """The plan of every judged claim of the pilot reproduction in ``pilot``."""
    check_pilot(pilot)
    claims = read_json(pilot / "claims.json", fix=f"rerun the pilot ({RERUN})", kind=list)
    out = []
    for c in claims:
        d = c.get("details") or {} if isinstance(c, dict) else {}
        diffs = _numbers(d["differences"]) if "differences" in d else []
        if len(diffs) < 2:
            continue  # not testable here, or too few seeds to measure a spread
        c0, n0 = int(d["chips"]), int(d["images"])
        levels = d.get("levels") or [50.0, 50.0]  # a non-accuracy claim: the largest binomial bound
        parts = split_variance(_sd(diffs) ** 2, float(d.get("chip_var", 0.0)), c0, n0, *levels)
        margin = float(d["margin"]["value"])
        level = alpha / max(int(d.get("family_size", 1)), 1)
        kind = d.get("kind", "direction")
        bigger = (max(chips, c0), max(images, n0)) if c0 > 1 else (1, max(images, n0))
        out.append(ClaimPlan(
            c["section"], c["claim"], c.get("family", "seed"), f"{margin:g} {d['margin']['unit']}",
            f"s = {_sd(diffs):.2f} over {len(diffs)} seeds × {c0} chip{'s' if c0 > 1 else ''} × {n0} images",
            str(c.get("verdict", "")),
            ", ".join(f"{k} {math.sqrt(v):.2f}" for k, v in (("train", parts.train), ("chip", parts.chip / c0),
                                                              ("image", parts.image / n0))),
            seeds_needed(math.sqrt(parts.at(c0, n0)), margin, level, target, kind),
            seeds_needed(math.sqrt(parts.at(*bigger)), margin, level, target, kind),
            seeds_needed(sd_upper_bound(math.sqrt(parts.at(c0, n0)), len(diffs)), margin, level, target, kind), c0, n0))
    return out


def table1_plans(plans: list[ClaimPlan]) -> list[ClaimPlan]:
    """The seed's own Table-1 claims: what ``--budget decide`` is sized for."""
    return [p for p in plans if "Table 1" in p.section and p.family == "seed"]


def seeds_to_decide(pilot: Path, chips: int = 25, images: int = 2000, alpha: float = 0.05,
                    target: float = 0.8) -> int:
    """The fewest seeds that give every Table-1 claim of the seed ``target`` power at the larger evaluation
    (``chips`` × ``images``), from the pilot's spread; refused in one line when the pilot cannot say."""
    need = [p.seeds_larger for p in table1_plans(claim_plans(pilot, chips, images, alpha, target))]
    if not need:
        raise ValueError(f"{pilot} holds no judged Table-1 claim of the seed with 2 or more seeds: plan from a "
                         "finished pilot (python experiments/reproduce.py --budget converged)")
    if any(n is None for n in need):
        raise ValueError(f"at the pilot's spread ({pilot}) some Table-1 claim needs more than 10,000 seeds for "
                         f"{target:.0%} power: print the plan (--plan {pilot}) and decide which claims to drop")
    return max(n for n in need if n is not None)


def training_manifests(folder: Path) -> list[Path]:
    """The manifest.json of every training run of a reproduction (``methods*/<method>/s<seed>/``; a run set aside
    as ``s<seed>.damaged`` is not one of its runs)."""
    return [p for p in sorted(Path(folder).glob("methods*/*/s*/manifest.json")) if p.parent.name[1:].isdigit()]


def training_seconds(pilot: Path) -> float | None:
    """The seconds the pilot's models took, from each finished training run's manifest.json (its whole run: the
    training and the test it ends with; what an archive under results/ keeps too); None when it holds none.

    A model adopted (from the zoo or an earlier run, ``adopted_from``) was not trained here: it counts the training
    time its source recorded (``train_seconds``), else the mean time of the models that were trained, so the
    estimate is that of training every model, as a run without the zoo would. A run that did not finish
    (interrupted, failed) is not counted. Seconds of the machine (``run_dir.machine_seconds``)."""
    trained, adopted = [], 0
    for path in training_manifests(pilot):
        manifest = read_json(path, fix=f"rerun the pilot ({RERUN})")
        if manifest.get("status") != "complete":
            continue
        source = manifest.get("adopted_from")
        if not source:
            trained.append(machine_seconds(manifest))
        elif isinstance(source, dict) and float(source.get("train_seconds") or 0.0) > 0:
            trained.append(float(source["train_seconds"]))
        else:
            adopted += 1
    if not trained:
        return None
    return sum(trained) * (1 + adopted / len(trained))


def pilot_seconds(pilot: Path) -> tuple[float, float, int]:
    """(training seconds, evaluation seconds, seeds) the pilot spent: training from its runs (``training_seconds``,
    else steps.json's training steps), evaluation from steps.json."""
    if not (pilot / "steps.json").is_file():
        raise ValueError(f"{pilot} holds no steps.json (each step's seconds, which the time estimate scales): rerun "
                         f"the pilot ({RERUN}) to write it")
    steps: dict[str, Any] = read_json(pilot / "steps.json", fix=f"rerun the pilot ({RERUN})")
    train = training_seconds(pilot)
    if train is None:
        train = sum(float(r.get("seconds", 0)) for k, r in steps.items()
                    if k.split("/")[0].startswith(TRAINING_STEPS))
    evaluate = sum(float(r.get("seconds", 0)) for k, r in steps.items()
                   if not k.split("/")[0].startswith(TRAINING_STEPS))
    seeds = len({k.rsplit("/", 1)[-1] for k in steps if k.rsplit("/", 1)[-1].startswith("s")})
    return train, evaluate, max(seeds, 1)


def plan_table(pilot: Path, chips: int = 25, images: int = 2000, alpha: float = 0.05, target: float = 0.8) -> str:
    """The plan as Markdown: one row per claim, then the seeds and CPU time that decide the seed's claims."""
    plans = claim_plans(pilot, chips, images, alpha, target)
    if not plans:
        raise ValueError(f"{pilot} holds no judged claim with two or more seeds: run a pilot with --seeds 0 1 2 first")
    fmt = lambda n: "> 10,000" if n is None else str(n)  # noqa: E731
    lines = [f"Seeds for {target:.0%} power at each claim's margin (level {alpha:g} / family size, Holm's first step), "
             f"from the pilot in {pilot}. Larger evaluation: {chips} chips × {images} images per seed on hardware, "
             f"{images} images for digital claims (where it has more test images than the pilot, its count is the "
             "optimistic end: the residual spread is taken as image noise up to the unpaired binomial bound). "
             "Cautious: at the pilot's evaluation with its spread at the upper 80 % confidence limit (a spread from "
             "a few seeds is itself uncertain: from 3 seeds the limit is 2.1 × the observed one, from 5 seeds 1.6 ×).",
             "", "| section | claim | family | margin | pilot | pilot's verdict | parts (sd, points) | seeds now | "
             "seeds larger | seeds cautious |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for p in plans:
        lines.append(f"| {p.section} | {p.claim} | {p.family} | {p.margin} | {p.pilot} | {p.verdict or '—'} | {p.parts} | "
                     f"{fmt(p.seeds_now)} | {fmt(p.seeds_larger)} | {fmt(p.seeds_cautious)} |")
    train, evaluate, seeds = pilot_seconds(pilot)
    need = [p.seeds_larger for p in table1_plans(plans)]
    if need and train + evaluate > 0:
        worst = None if any(n is None for n in need) else max(n for n in need if n is not None)
        lines += ["", f"Pilot time: {train / 60:.1f} min training (a model adopted from the zoo or an earlier run "
                      f"counted at the mean time of those trained), {evaluate / 60:.1f} min evaluation, {seeds} seeds "
                      "(this machine)."]
        if worst is None:
            lines.append("The seed's Table-1 claims cannot reach that power within 10,000 seeds at this spread: the "
                         "models behind them must converge first (a smaller seed-to-seed spread), not run longer.")
        else:
            pilot_units = max((p.chips * p.images for p in plans if p.chips > 1), default=chips * images)
            hours = worst * (train + evaluate * chips * images / pilot_units) / seeds / 3600
            lines.append(f"Deciding every Table-1 claim needs {worst} seeds: about {hours:.1f} CPU hours on this "
                         "machine at the pilot's training budget (training × seeds; evaluation × seeds × the growth "
                         "of chips × images); GPU time is not estimated (no GPU run recorded).")
    return "\n".join(lines) + "\n"

