"""The seed's claims, rerun at one budget, with seeds, intervals and a verdict each.

``python experiments/reproduce.py --budget small`` runs the studies a user would run
(``compare_methods``, ``early_exit_energy``, ``corruption_robustness``, ``calibrator_adapt``,
``noise_sweep`` on every device), once per seed, through their configs and library runners, then
reads their CSVs and writes one self-contained ``report.html`` and ``report.md``: per claim the
seed's number (its table), ours as mean ± 95 % interval over seeds (× chips on hardware), the
paired test and a verdict. Three stages: ``plan_steps`` (every step's config, and the command line
that runs the same study alone), the steps run or reused, then the claims and the report.

Every number in the report comes from a command listed in ``commands.sh`` of the output
directory, which reruns it. A finished step is reused when the same command is asked again
and its files read back as they were written (``steps.json`` holds each step's command and the
sha256 and size of its outputs; ``compare_methods`` checks its own training runs), so an
interrupted reproduction continues where it stopped, a larger budget in the same directory
retrains nothing twice, and a damaged step is rerun. Paths in ``steps.json``, the commands and
``commands.sh`` are relative to the output directory, so a moved reproduction still reuses its steps.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
import shlex
import shutil
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ..analysis.report import Claim, Section, write_report
from ..analysis.stats import (Interval, PairedTest, chip_floor, nested_interval, paired_test, ratio_interval, seed_differences,
                              t_interval)
from ..analysis.verdicts import Evidence, Margin, judge
from ..checkpoint import CheckpointError
from ..data import CorruptDatasetError, DatasetNotFoundError
from ..distributed import LostRankError
from ..hardware.aihwkit_backend import AihwkitUnavailable
from ..output import deepest_exit
from ..run_dir import RunDirectory, run_dir_guard, set_aside_run
from ..train import NonFiniteLossError
from ..utils import DamagedFileError, NoSpaceError, atomic_write, atomic_write_text, file_sha256, read_csv, read_json
from .calibrator_adapt import CHIP_IMAGES, CalibratorConfig, calibrator_adapt_run
from .compare_methods import CompareConfig, compare_methods_run, plan_comparison, trained_already
from .earlier_runs import check_folders
from .config import SettingError, StudyConfig, input_paths, read_toml
from .corruption_robustness import RobustnessConfig, corruption_robustness_run
from .early_exit_energy import EarlyExitConfig, early_exit_run
from .noise_sweep import NoiseSweepConfig, noise_sweep_run
from .reproduce_plan import seeds_to_decide, training_manifests
from .result import StudyResult
from ..methods.robust import TRAIN_CORRUPTIONS
from .spine import HWA_DEFAULT_NOISE, HWA_FINETUNE
from .train import RERUN

ALPHA = 0.05

# The smallest effect that matters, per kind of claim: fixed here, before any run, and never tuned on a result.
METHOD_MARGIN = Margin(1.0, "points", "a training method that gains less than 1 accuracy point does not change which "
                       "method a user picks; at 90 % accuracy a 10,000-image test set alone carries ± 0.6 points (95 %)")
CHIP_MARGIN = Margin(2.0, "points", "on a chip one model's accuracy spreads 6-18 points from chip to chip (reram, "
                     "docs/results.md): a method difference under 2 points is lost in the choice of chip")
CE_MARGIN = Margin(1.0, "CE points", "1 % of the baseline's corruption error (mCE is normalised to the baseline = 100)")
NO_DROP_MARGIN = Margin(1.0, "points", "the seed's 'no accuracy drop': a drop under 1 point is inside one test set's "
                        "binomial noise")


@dataclass(frozen=True)
class Basis:
    """What a claim is judged against: its margin, the test images behind each of its values, its family."""

    margin: Margin
    images: int
    family: str = "seed"  # "seed": the seed claims it; "extension": ours


@dataclass(frozen=True)
class Budget:
    """How much of everything one reproduction spends; ``small`` is sized for a 2-core CPU in ≤ 30 minutes."""

    name: str
    dataset: str
    epochs: int
    subset: int | None  # training (and test) images; None = the whole dataset
    seeds: tuple[int, ...]
    chips: int  # chip instances per seed on every device
    samples: int  # test images per chip evaluation
    devices: tuple[str, ...] = ("reram", "pcm", "subthreshold_cmos")
    arch: str = "resnet18"
    width: float = 0.25
    stem_stride: int = 1
    batch_size: int = 128
    lr: float = 0.1
    teacher_arch: str = "resnet34"
    teacher_width: float = 0.5
    corruptions: tuple[str, ...] = ("gaussian_noise", "gaussian_blur", "shot_noise", "motion_blur")
    severities: tuple[int, ...] = (1, 3, 5)
    corruption_samples: int = 1000
    adv_samples: int = 500
    pgd_steps: int = 10
    domain: tuple[str, str] = ("mnist5k", "digits")  # (source, target) of the calibrator's domain adaptation
    calibrator_epochs: int = 5
    calibrator_samples: int = 2000
    bn_images: int = 64
    sigmas: tuple[float, ...] = (0.0, 0.04, 0.08)
    scope: str = "all"  # which claims it tests (SCOPES): every one, the seed's Table-1 claims, or the on-chip ones
    note: str = ""


BUDGETS: dict[str, Budget] = {
    # a few minutes on synthetic images: exercises every step and every claim; its verdicts mean nothing
    "smoke": Budget("smoke", dataset="synthetic", epochs=1, subset=None, seeds=(0, 1), chips=2, samples=100,
                    devices=("reram",), corruptions=("gaussian_noise",), severities=(3,), corruption_samples=100,
                    adv_samples=40, pgd_steps=2, domain=("synthetic", "synthetic-C"), calibrator_epochs=1,
                    calibrator_samples=200, bn_images=16,
                    arch="resnet8", teacher_arch="resnet8", teacher_width=0.5, sigmas=(0.0, 0.08),
                    note="smoke test on synthetic images: checks the pipeline, not the science"),
    # small: batch 64 at lr 0.05 doubles the SGD steps of batch 128 for the same images; at batch 128 /
    # lr 0.1, 2 epochs of 3000 images left dml at 16 % and fitnet at 24 % (measured, 3 seeds)
    "small": Budget("small", dataset="fashion_mnist", epochs=2, subset=3000, seeds=(0, 1, 2), chips=3, samples=300,
                    batch_size=64, lr=0.05,
                    teacher_arch="resnet18", teacher_width=0.5, corruptions=("gaussian_noise", "shot_noise",
                                                                             "motion_blur"),
                    severities=(3, 5), corruption_samples=300, adv_samples=100, pgd_steps=5, calibrator_epochs=2,
                    calibrator_samples=500, bn_images=32, sigmas=(0.0, 0.05, 0.1),
                    note="≤ 30 min on a 2-core CPU: 3 seeds of a 3000-image, 2-epoch budget; its models are far "
                         "from converged, so most verdicts are expected to be inconclusive"),
    "medium": Budget("medium", dataset="fashion_mnist", epochs=4, subset=20000, seeds=(0, 1, 2), chips=10,
                     samples=1000, note="the default-model budget of the studies, 3 seeds (hours on a CPU)"),
    # the zoo's recipe (studies.spine.DEFAULT_BUDGET): every training image, 15 epochs, stem stride 2, the evaluation
    # the main job uses at its headline point (25 chips × 2,000 images). Its 36 trainings beyond the zoo's own
    # models (11 methods and a ResNet-34 teacher per seed) take most of a day on a 2-core CPU: scripts/train_zoo.sh
    # --reproduce converged shelves each in zoo/reproduce/ as it finishes (over as many sittings as it takes), and
    # the reproduction adopts them
    "converged": Budget("converged", dataset="fashion_mnist", epochs=15, subset=None, seeds=(0, 1, 2), chips=25,
                        samples=2000, stem_stride=2, corruption_samples=2000, adv_samples=1000, pgd_steps=10,
                        calibrator_epochs=10, calibrator_samples=5000, bn_images=256,
                        note="the zoo's recipe (all 54,000 training images, 15 epochs, stem stride 2), 3 seeds, the "
                             "main job's headline evaluation (25 chips × 2,000 images); the models beyond the zoo's "
                             "main shelf come from its reproduce/ shelf (scripts/train_zoo.sh --reproduce converged)"),
    # the converged recipe cut to the seed's Table-1 claims (self-distillation, SCAN, ADA): the pilot a CPU can run.
    # baseline and self_distillation come from the zoo (the same recipe, evaluated, not retrained), so it trains
    # scan, augment and ada per seed: about 1.5 hours on this 2-core machine
    "table1": Budget("table1", dataset="fashion_mnist", epochs=15, subset=None, seeds=(0, 1, 2), chips=25,
                     samples=2000, stem_stride=2, corruption_samples=2000, adv_samples=0, scope="table1",
                     note="the converged recipe (the zoo's: all 54,000 training images, 15 epochs, stem stride 2), 3 "
                          "seeds, cut to the seed's Table-1 claims: the pilot a 2-core CPU runs in about 1.5 hours "
                          "(the other claims: --budget converged)"),
    # the converged recipe cut to the claims the zoo's own models answer: flat minima (baseline, self_distillation)
    # and the on-chip claims per device (with hwa and self_distillation+hwa fine-tuned through each device). Every
    # model is the zoo's, adopted, so it trains nothing: 20-40 minutes of evaluation on this 2-core machine
    "hardware": Budget("hardware", dataset="fashion_mnist", epochs=15, subset=None, seeds=(0, 1, 2), chips=25,
                       samples=2000, stem_stride=2, bn_images=64, scope="hardware",
                       note="the converged recipe (the zoo's: all 54,000 training images, 15 epochs, stem stride 2), 3 "
                            "seeds, cut to the claims the zoo's models answer (flat minima; on-chip accuracy and "
                            "retention on every device, 25 chips × 2,000 images per seed, BN recalibration on 64 "
                            "unlabeled images as in the main job): it trains nothing"),
    "full": Budget("full", dataset="fashion_mnist", epochs=30, subset=None, seeds=(0, 1, 2, 3, 4), chips=25,
                   samples=2000, corruptions=("glass_blur", "shot_noise", "speckle_noise", "gaussian_blur",
                                              "motion_blur", "defocus_blur", "impulse_noise", "zoom_blur",
                                              "gaussian_noise"),
                   severities=(1, 2, 3, 4, 5), corruption_samples=5000, adv_samples=1000, pgd_steps=20,
                   calibrator_epochs=10, calibrator_samples=5000, bn_images=256, sigmas=(0.0, 0.04, 0.08, 0.12),
                   note="all 60,000 training images, 30 epochs, 5 seeds (a GPU machine)"),
}


@dataclass
class ReproduceConfig(StudyConfig):
    """The reproduce command's settings (written as config.toml beside the report)."""

    KIND = "reproduce"
    budget: str = "small"
    seeds: list[int] | None = None  # None: the budget's
    data_dir: str | None = None
    torch_device: str = "auto"
    codesign: list[str] = field(default_factory=list)  # finished co-design searches shown in the report
    pilot: str | None = None  # --budget decide: the finished converged reproduction its seeds are planned from
    devices: list[str] | None = None  # None: the budget's; a subset extends one device's on-chip claims alone
    workers: int = 1  # the training steps' runs side by side (compare_methods --workers)
    ray_address: str | None = None
    # earlier reproductions whose trainings with exactly this budget's settings are adopted (compare_methods --reuse)
    reuse: list[str] | None = None


def with_devices(budget: Budget, devices: Sequence[str] | None) -> Budget:
    """``budget`` (one cut to the on-chip claims) with only ``devices`` of its own (None: unchanged), in the budget's
    order, so one device's undecided claims can be extended to more seeds without training or sweeping the others
    (the device-independent flat-minima claim is measured in the first one's sweep, as in the full budget)."""
    if not devices:
        return budget
    if budget.scope != "hardware":
        raise ValueError(f"--devices cuts the on-chip claims of --budget hardware; --budget {budget.name} tests other "
                         "claims too (or, for Table 1, none on a chip): drop --devices")
    unknown = [d for d in devices if d not in budget.devices]
    if unknown:
        raise ValueError(f"--devices: not a device of --budget {budget.name}: {', '.join(unknown)}; give one or more "
                         f"of {', '.join(budget.devices)} (the zoo's hardware-aware models are trained for these)")
    return dataclasses.replace(budget, devices=tuple(d for d in budget.devices if d in devices))


DECIDE = "decide"  # a budget planned from a pilot, not a fixed one (decide_budget)
PILOT_FILES = ("report.md", "report.html", "claims.json", "commands.sh", "config.toml", "steps.json",
               "differences.png")


def decide_budget(pilot: Path, chips: int = 25, images: int = 2000) -> Budget:
    """``--budget decide``: the converged recipe with the fewest seeds that give every Table-1 claim of the seed
    80 % power at ``chips`` × ``images`` per seed, planned from a finished converged reproduction in ``pilot``."""
    # after a decide run the folder holds its results; the plan is always the pilot's own (kept in <pilot>/pilot/),
    # so rerunning the same command neither re-plans from the larger run's spread nor changes its seeds
    source = Path(pilot) / "pilot" if (Path(pilot) / "pilot" / "claims.json").is_file() else Path(pilot)
    conf_path = source / "config.toml"
    if not conf_path.is_file():
        raise ValueError(f"--pilot {pilot}: no config.toml there; give a finished reproduction (python "
                         "experiments/reproduce.py --budget converged)")
    try:
        pilot_conf = read_toml(conf_path)
    except ValueError as exc:
        raise ValueError(f"--pilot {pilot}: its config.toml does not read ({exc}); rerun the pilot") from None
    if pilot_conf.get("budget") not in ("converged", "table1"):
        raise ValueError(f"--pilot {pilot} ran budget {pilot_conf.get('budget')!r}: decide sizes the seed's Table-1 "
                         "claims on converged models, from a pilot that judged them (python experiments/reproduce.py "
                         "--budget table1, or --budget converged)")
    base = BUDGETS[pilot_conf["budget"]]  # its recipe and its scope: a Table-1 pilot is extended as one
    ran = [int(x) for x in pilot_conf.get("seeds") or base.seeds]
    n = max(seeds_to_decide(source, chips, images), len(ran))
    extra = [x for x in range(n + max(ran) + 1) if x not in ran][:n - len(ran)]  # the pilot's seeds first
    return dataclasses.replace(base, name=DECIDE, seeds=tuple(ran + extra), chips=chips, samples=images,
                               note=f"the converged recipe{' cut to Table 1' if base.scope == 'table1' else ''} with "
                                    f"the {n} seeds that give every Table-1 claim of the "
                                    f"seed 80 % power at {chips} chips × {images} images, planned from the pilot in "
                                    f"{source}")


def keep_pilot_report(pilot: Path) -> Path:
    """Copy the pilot's report files into ``<pilot>/pilot/`` before a decide run extends that folder (kept once)."""
    keep = Path(pilot) / "pilot"
    if keep.is_dir():
        return keep
    staging = Path(pilot) / "pilot.tmp"
    staging.mkdir(exist_ok=True)
    for name in PILOT_FILES:
        src = Path(pilot) / name
        if src.is_file():
            shutil.copy2(src, staging / name)
    staging.rename(keep)  # the folder appears whole or not at all
    return keep


# The trained models every claim draws on; hwa variants are trained per device.
METHODS = ("baseline", "self_distillation", "dsn", "kd", "fitnet", "at", "dml", "scan", "augment", "ada",
           "auxiliary", "auxiliary_adv", "adv")
HWA_METHODS = ("hwa", "self_distillation+hwa")
# per scope, the methods it trains: "table1" those of the seed's Table 1 (self-distillation, SCAN and ADA, each
# against the baseline; ADA against augmentation too)
SCOPES = {"all": METHODS, "table1": ("baseline", "self_distillation", "scan", "augment", "ada"),
          "hardware": ("baseline", "self_distillation")}
# what a cut scope tests, for the report's preamble
SCOPE_WORDS = {"table1": "the seed's Table-1 claims only (self-distillation, SCAN and ADA against their baselines; "
                         "ADA's clean accuracy, its Table 3, from the same models)",
               "hardware": "the flat-minima claim and the on-chip claims only (what the zoo's models answer)"}
ROBUSTNESS_MODELS = ("baseline", "augment", "ada", "auxiliary", "auxiliary_adv", "adv")


class ReproductionError(RuntimeError):
    """A step of the reproduction failed; the message names the command to rerun alone."""


COMMANDS_HEADER = ("#!/bin/sh\n# every command behind report.md, in order; their paths are relative to this folder,\n"
                   "# so the script runs here (wxy-hw <study> is python experiments/<study>.py of the repository)\n"
                   "set -e\ncd \"$(dirname \"$0\")\"\n")

# the study each step runs, by the name of the command that runs the same study alone (``wxy-hw <study>``,
# recorded in steps.json and commands.sh): ``RUNNERS[study](config, out=..., progress=False)``
RUNNERS: dict[str, Callable[..., StudyResult]] = {
    "compare_methods": compare_methods_run, "early_exit_energy": early_exit_run,
    "corruption_robustness": corruption_robustness_run, "calibrator_adapt": calibrator_adapt_run,
    "noise_sweep": noise_sweep_run}

# a step's failures that a user can fix (the command lines' USER_ERRORS): one line naming the step, no traceback
STEP_ERRORS = (ValueError, DatasetNotFoundError, CorruptDatasetError, CheckpointError, NonFiniteLossError,
               FileExistsError, FileNotFoundError, AihwkitUnavailable, NoSpaceError, LostRankError)

def stated_effect(seed_value: str) -> float | None:
    """The effect the seed states for a claim: the first signed number in parentheses of its value ("78.64 vs 77.09
    (+1.55)" → 1.55, "(−9.24)" → −9.24); None where it states none."""
    found = re.search(r"\(([+\-−])(\d+(?:\.\d+)?)(?![\d.,eE])", seed_value)
    if found is None:
        return None
    return (-1.0 if found.group(1) in "-−" else 1.0) * float(found.group(2))


def _deepest_row(rows: list[dict[str, str]], method: str, path: Path) -> dict[str, str]:
    """``method``'s row at its deepest numbered exit in a per-exit CSV (``path``, named when it has none)."""
    mine = [r for r in rows if r["method"] == method]
    if not any(r["exit"].isdigit() for r in mine):
        raise DamagedFileError(path, f"has no row of {method}", RERUN)
    label = deepest_exit(mine)
    return next(r for r in mine if r["exit"] == label)


def _rows(path: Path, *columns: str) -> list[dict[str, str]]:
    """A step's CSV, which must hold ``columns`` (steps are verified before reuse, so damage here is new)."""
    return read_csv(path, fix=RERUN, columns=columns)


class _Settings:
    """One step's settings, built twice at once: as its config's fields and as the equivalent command line
    (``--field-name`` and its words), so that the run, its record in steps.json and commands.sh agree."""

    def __init__(self) -> None:
        self.fields: dict[str, Any] = {}
        self.argv: list[str] = []

    def add(self, name: str, value: Any, *words: str, flag: str | None = None) -> _Settings:
        """``name = value``, written ``--name WORDS`` (default: the value as words, one per item of a list; none
        for an on/off flag such as ``--no-flat``)."""
        if not words and not isinstance(value, bool):
            words = tuple(map(str, value)) if isinstance(value, list) else (str(value),)
        self.argv += [flag or "--" + name.replace("_", "-"), *words]
        self.fields[name] = value
        return self

    def options(self, name: str, values: dict[str, Any]) -> _Settings:
        """Method options, one ``--method-arg KEY=VALUE`` each (the flag takes one pair)."""
        for k, v in values.items():
            self.argv += ["--method-arg", f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"]
        self.fields[name] = dict(values)
        return self

    def path(self, name: str, path: Path, folder: Path) -> _Settings:
        """One path inside the reproduction folder (as ``paths``)."""
        return self.add(name, str(folder / path), str(path))

    def number(self, name: str, value: float) -> _Settings:
        """A float written ``{:g}``, and taken back from those words as the command line reads them."""
        text = f"{value:g}"
        return self.add(name, float(text), text)

    def paths(self, name: str, paths: Sequence[Path], folder: Path) -> _Settings:
        """Paths inside the reproduction folder: relative to it on the command line, joined to it for the run."""
        return self.add(name, [str(folder / p) for p in paths], *map(str, paths))


@dataclass(frozen=True)
class Step:
    """One study run of a reproduction: what the study's runner gets, and the command that runs it alone."""

    study: str  # the RUNNERS key, and the command (wxy-hw <study>)
    run_dir: Path  # relative to the reproduction folder
    config: StudyConfig  # the runner's settings (paths joined to the folder)
    argv: tuple[str, ...]  # the command's arguments (paths relative to the folder), steps.json's record of the step
    reusable: bool = True  # False: the study re-runs into its folder itself, reusing its finished training runs

    @property
    def key(self) -> str:
        return self.run_dir.as_posix()

    @property
    def command(self) -> str:
        """The command line that runs this step alone, from the reproduction folder."""
        return shlex.join(["wxy-hw", self.study, *self.argv])


def _step(study: str, cls: type[StudyConfig], settings: _Settings, run_dir: Path, reusable: bool = True) -> Step:
    argv = (*settings.argv, "--out", run_dir.as_posix(), "--quiet")
    return Step(study, run_dir, cls(**settings.fields), argv, reusable)


@dataclass
class ReproductionPlan:
    """Every step of one budget, by role: the trainings, then per seed the studies whose CSVs the claims read."""

    methods: Step
    hwa: dict[str, Step]  # by device
    early: dict[int, Step]  # by seed
    robust: dict[int, Step]
    domain: dict[int, Step]
    chipcal: dict[int, Step]
    sweep: dict[tuple[str, int], Step]  # by (device, seed)

    def steps(self) -> list[Step]:
        """In the order they run (and commands.sh lists them): trainings first, then seed by seed (a budget cut to
        some claims has only the steps behind them)."""
        order = [self.methods, *self.hwa.values()]
        seeds = dict.fromkeys([*self.early, *self.robust, *self.domain, *self.chipcal, *(s for _, s in self.sweep)])
        for s in seeds:
            order += [by_seed[s] for by_seed in (self.early, self.robust, self.domain, self.chipcal) if s in by_seed]
            order += [step for (_, seed), step in self.sweep.items() if seed == s]
        return order


def _problem(exc: BaseException) -> str:
    """A step's error as its command would print it (a setting named by its flag)."""
    if isinstance(exc, SettingError):
        return f"--{exc.field.replace('_', '-')} {exc.problem}"
    return str(exc)


def _fingerprints(run_dir: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file a finished step wrote (not its lock), by path relative to ``run_dir``."""
    return {p.relative_to(run_dir).as_posix(): {"sha256": file_sha256(p), "size": p.stat().st_size}
            for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name != ".lock"}


def _damage(run_dir: Path, files: dict[str, dict[str, Any]] | None) -> str | None:
    """Why a step's folder cannot be reused as recorded (the first problem), or None.

    Always: its manifest reads back. With ``files`` (the record of a finished step): every CSV parses
    with its header (the most telling problem first), and every file has its recorded size and sha256."""
    try:
        read_json(run_dir / "manifest.json", fix=RERUN)
    except FileNotFoundError:
        return "manifest.json is missing"
    except DamagedFileError as exc:
        return f"manifest.json {exc.problem}"
    if files is None:
        return None
    for path in sorted(run_dir.rglob("*.csv")):
        try:
            read_csv(path, fix=RERUN)
        except DamagedFileError as exc:
            return f"{path.relative_to(run_dir).as_posix()} {exc.problem}"
    for name, want in files.items():
        path = run_dir / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != want.get("size"):
            return f"{name} has {size} bytes, {want.get('size')} when the step finished (truncated or changed)"
        if file_sha256(path) != want.get("sha256"):
            return f"{name} changed since the step finished (its sha256 differs)"
    return None


class Reproduction:
    """Runs (or reuses) the studies of one budget into ``out`` and turns their CSVs into claims: plan the steps,
    run them, judge the claims, write the report."""

    def __init__(self, budget: Budget, out: str | Path, *, torch_device: str = "auto",
                 data_dir: str | Path | None = None, log: Callable[[str], None] = print,
                 sections: Sequence[Section] = (), workers: int = 1, ray_address: str | None = None,
                 reuse: Sequence[str | Path] = ()) -> None:
        self.b, self.out, self.log = budget, Path(out), log
        self.workers, self.ray_address = workers, ray_address  # how the training steps train, not what
        # where trained models may come from instead (absolute, as the data: commands.sh runs from the folder)
        others = [p for p in reuse if Path(p).resolve() != self.out.resolve()]  # its own folder is no earlier run
        self.reuse = [p.resolve() for p in check_folders(others, reproductions=True)]
        self.sections = list(sections)  # read before any step runs: a bad --codesign folder fails first
        # the data lie outside the folder: absolute, so commands.sh (run from the folder) finds them too
        self.torch_device, self.data_dir = torch_device, Path(data_dir).resolve() if data_dir else None
        self.plan = self.plan_steps()
        self.commands: list[str] = []
        self.claims: list[Claim] = []
        self._steps_file = self.out / "steps.json"
        self._steps: dict[str, Any] = read_json(
            self._steps_file, fix="delete it to rerun every step (compare_methods still reuses its finished "
                                  "training runs)") if self._steps_file.exists() else {}

    # --- the plan: every step's config and command ----------------------------------------------------
    def checkpoint(self, method: str, seed: int, device: str | None = None) -> Path:
        """A trained model's best.pt, relative to the reproduction folder."""
        return Path("methods" if device is None else f"methods_{device}") / method / f"s{seed}" / "best.pt"

    def plan_steps(self) -> ReproductionPlan:
        """Every step of the budget, nothing run: the configs the studies get and the commands that match them."""
        b = self.b
        if b.scope == "table1":  # the trainings and the corruption study the Table-1 claims read, nothing else
            return ReproductionPlan(methods=self._training_step(Path("methods"), list(self.methods)), hwa={},
                                    early={}, robust={s: self._robust_step(s) for s in b.seeds}, domain={},
                                    chipcal={}, sweep={})
        hwa = {dev: self._training_step(Path(f"methods_{dev}"), list(HWA_METHODS), device=dev) for dev in b.devices}
        sweep = {(dev, s): self._sweep_step(dev, s, flat=i == 0) for s in b.seeds for i, dev in enumerate(b.devices)}
        if b.scope == "hardware":  # the four models per device and their sweeps, nothing else
            return ReproductionPlan(methods=self._training_step(Path("methods"), list(self.methods)), hwa=hwa,
                                    early={}, robust={}, domain={}, chipcal={}, sweep=sweep)
        return ReproductionPlan(
            methods=self._training_step(Path("methods"), list(METHODS), teacher=True), hwa=hwa,
            early={s: self._early_step(s) for s in b.seeds}, robust={s: self._robust_step(s) for s in b.seeds},
            domain={s: self._domain_step(s) for s in b.seeds}, chipcal={s: self._chipcal_step(s) for s in b.seeds},
            sweep=sweep)

    @property
    def methods(self) -> tuple[str, ...]:
        """The methods this budget trains (its scope's)."""
        if self.b.scope not in SCOPES:
            raise ValueError(f"budget {self.b.name} has scope {self.b.scope!r}; give one of {', '.join(SCOPES)}")
        return SCOPES[self.b.scope]

    def _data(self, settings: _Settings) -> _Settings:
        settings.add("dataset", self.b.dataset)
        return settings.add("data_dir", str(self.data_dir)) if self.data_dir else settings

    def _training_step(self, run_dir: Path, methods: list[str], *, teacher: bool = False,
                       device: str | None = None) -> Step:
        """compare_methods of ``methods`` over the seeds (with a teacher per seed); for ``device``, the hardware-aware
        methods fine-tuned from the same seed's digital models of the methods step, as the zoo's are
        (``spine.HWA_FINETUNE``, each at its default noise ``spine.HWA_DEFAULT_NOISE``)."""
        b = self.b
        s = _Settings().add("methods", methods).add("seeds", list(b.seeds))
        epochs, lr = b.epochs, float(b.lr)
        if teacher:
            s.add("teacher_arch", b.teacher_arch).number("teacher_width", b.teacher_width)
        if device is not None:
            noise = {f"{m}.noise_scale": x for m, x in HWA_DEFAULT_NOISE.items() if m in methods and x != 1.0}
            s.options("method_options", {"device": device, **noise}).path("init_from", Path("methods"), self.out)
            epochs, lr = min(int(HWA_FINETUNE["epochs"]), b.epochs), float(HWA_FINETUNE["lr"])
        self._data(s).add("arch", b.arch).number("width", b.width).add("epochs", epochs)
        if b.stem_stride != 1:
            s.add("stem_stride", b.stem_stride)
        if b.subset:
            s.add("subset", b.subset)
        if b.batch_size != 128:
            s.add("batch_size", b.batch_size)
        if lr != 0.1:
            s.number("lr", lr)
        s.add("torch_device", self.torch_device)
        if self.workers > 1:
            s.add("workers", self.workers)
        if self.ray_address:
            s.add("ray_address", self.ray_address)
        earlier = [str(folder / run_dir) for folder in self.reuse if (folder / run_dir).is_dir()]
        if earlier:  # the same step's folder of each earlier reproduction that has one
            s.add("reuse", earlier)
        return _step("compare_methods", CompareConfig, s, run_dir, reusable=False)

    def _early_step(self, seed: int) -> Step:
        b = self.b
        models = [self.checkpoint(m, seed) for m in ("baseline", "self_distillation", "scan")]
        s = _Settings().add("device", b.devices[0]).paths("checkpoints", models, self.out)
        s.add("chips", b.chips).add("samples", b.samples).add("seed", seed).add("torch_device", self.torch_device)
        return _step("early_exit_energy", EarlyExitConfig, self._data(s), Path("early_exit", f"s{seed}"))

    def _robust_step(self, seed: int) -> Step:
        b = self.b
        models = [self.checkpoint(m, seed) for m in ROBUSTNESS_MODELS if m in self.methods]
        s = _Settings().paths("checkpoints", models, self.out)
        s.add("corruptions", list(b.corruptions)).add("severities", list(b.severities))
        s.add("samples", b.corruption_samples).add("adv_samples", b.adv_samples).add("pgd_steps", b.pgd_steps)
        s.add("chips", 0).add("seed", seed).add("torch_device", self.torch_device)
        return _step("corruption_robustness", RobustnessConfig, self._data(s), Path("robustness", f"s{seed}"))

    def _calibration(self, settings: _Settings, seed: int) -> _Settings:
        b = self.b
        settings.add("epochs", b.calibrator_epochs).add("samples", b.calibrator_samples).add("seed", seed)
        settings.add("torch_device", self.torch_device)
        return settings.add("data_dir", str(self.data_dir)) if self.data_dir else settings

    def _domain_step(self, seed: int) -> Step:
        b = self.b
        s = _Settings().add("source", b.domain[0]).add("target", b.domain[1]).add("train_epochs", b.epochs)
        return _step("calibrator_adapt", CalibratorConfig, self._calibration(s, seed), Path("calibrator_domain", f"s{seed}"))

    def _chipcal_step(self, seed: int) -> Step:
        b = self.b
        s = _Settings().add("source", b.dataset).add("target", "none").add("device", b.devices[0])
        s.paths("checkpoints", [self.checkpoint("baseline", seed)], self.out).add("chips", b.chips)
        return _step("calibrator_adapt", CalibratorConfig, self._calibration(s, seed), Path("calibrator_chips", f"s{seed}"))

    def _sweep_step(self, device: str, seed: int, *, flat: bool) -> Step:
        """noise_sweep of the four models on ``device`` (the flat-minima sweep on the first device only)."""
        b = self.b
        models = [self.checkpoint("baseline", seed), self.checkpoint("self_distillation", seed),
                  self.checkpoint("hwa", seed, device), self.checkpoint("self_distillation+hwa", seed, device)]
        s = _Settings().add("device", device).paths("checkpoints", models, self.out)
        s.add("scales", [1.0], "1").add("times", [86400.0], "86400").add("chips", b.chips).add("samples", b.samples)
        s.add("headline_chips", b.chips).add("headline_samples", b.samples)
        s.add("bn_recalibrate", b.bn_images).add("seed", seed).add("torch_device", self.torch_device)
        if flat:
            sigmas = [str(x) for x in b.sigmas]
            s.add("sigmas", [float(x) for x in sigmas], *sigmas)
        else:
            s.add("flat", False, flag="--no-flat")
        return _step("noise_sweep", NoiseSweepConfig, self._data(s), Path("noise_sweep", device, f"s{seed}"))

    # --- running: each step run or reused ----------------------------------------------------------------
    def step(self, step: Step) -> str:
        """Run ``step`` unless the same finished run is in its folder and reads back as recorded; its command.

        Its folder, its record in steps.json and its command are relative to the reproduction folder: a moved
        folder still reuses its steps."""
        self.commands.append(step.command)
        previous = self._previous(step)
        if previous == "finished":
            self.log(f"[reproduce] reusing {step.key}")
            return step.command
        self.log(f"[reproduce] {step.command}")
        if step.study == "compare_methods":  # hours of training or minutes of evaluation: said before it starts
            self._say_trained_already(step)
        started = time.perf_counter()
        result = self._run(step, overwrite=previous == "other")
        self.log(result.table)
        # seconds: what `reproduce.py --plan` scales to estimate a larger run's time
        self._steps[step.key] = {"argv": list(step.argv), "files": _fingerprints(self.out / step.run_dir),
                                 "seconds": round(time.perf_counter() - started, 1)}
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self._steps_file, json.dumps(self._steps, indent=1) + "\n")
        return step.command

    def _say_trained_already(self, step: Step) -> None:
        """How many of a training step's models need no training (``compare_methods.trained_already``), in one line;
        nothing where the step cannot be planned (the step itself then says why, as its error)."""
        assert isinstance(step.config, CompareConfig)
        try:
            ready, runs = trained_already(plan_comparison(step.config, self.out / step.run_dir, progress=False))
        except (ValueError, OSError):
            return
        # the command that trains them onto the zoo's shelf: for a budget train_zoo knows, with its seeds if others
        own = BUDGETS.get(self.b.name)
        seeds = "" if own is None or own.seeds == self.b.seeds else " --seeds " + " ".join(map(str, self.b.seeds))
        hint = (f" (scripts/train_zoo.sh --reproduce {self.b.name}{seeds} trains them onto the zoo's shelf, each kept "
                "as it finishes)") if own is not None and runs > ready and step.key == "methods" else ""
        self.log(f"[reproduce] {step.key}: {ready} of {runs} models are trained already (finished there, in the zoo "
                 f"or in --reuse folders), {runs - ready} to train{hint}")

    def _previous(self, step: Step) -> str:
        """What the step's folder holds: "finished" (this step, reading back as recorded: reused), "other" (an
        earlier step of ours with other settings, or unfinished: replaced) or "none" (nothing to reuse; a damaged
        run is set aside, kept, with one line)."""
        where = self.out / step.run_dir
        if not (step.reusable and where.exists()):
            return "none"
        record = self._steps.get(step.key)
        # this step's own record (same command line), or None
        same_record = record if isinstance(record, dict) and record.get("argv") == list(step.argv) else None
        same = same_record is not None
        problem = _damage(where, same_record.get("files", {}) if same_record is not None else None)
        if problem is None and same and read_json(where / "manifest.json", fix=RERUN).get("status") == "complete":
            return "finished"
        if problem is not None:  # said even with --quiet: a file the tool wrote changed under it
            aside = set_aside_run(where)
            print(f"[reproduce] rerunning {step.key}: {problem} (the damaged run is kept as {aside.name})", flush=True)
            return "none"
        return "other"

    def _run(self, step: Step, *, overwrite: bool) -> StudyResult:
        """The step's study, through its runner in this process, its folder held as its command would hold it."""
        where = self.out / step.run_dir
        try:
            with run_dir_guard(where, overwrite=overwrite, resume=not step.reusable, kind=step.config.KIND,
                               inputs=input_paths(step.config)):
                # a training step says each run as it finishes (hours of silence otherwise); a study prints its table
                said = {"announce": self.log} if step.study == "compare_methods" else {}
                return RUNNERS[step.study](step.config, out=where, progress=False, **said)
        except KeyboardInterrupt:  # Ctrl-C or a signal stopped the step: the reproduction stops with it
            raise KeyboardInterrupt(f"reproduce stopped in step {step.key}") from None
        except STEP_ERRORS as exc:
            raise ReproductionError(f"step {step.key} failed: {_problem(exc)}; fix that and {RERUN} (the step alone, "
                                    f"from {self.out}: {step.command})") from exc

    def run(self) -> tuple[Path, Path]:
        """Every step, then every claim, then the report; the folder's manifest says how it ended."""
        with run_dir_guard(self.out, resume=True, kind=ReproduceConfig.KIND):
            run = RunDirectory(self.out, {"budget": asdict(self.b)}, kind=ReproduceConfig.KIND)
            self.out.mkdir(parents=True, exist_ok=True)
            for step in self.plan.steps():
                self.step(step)
            self.collect()
            paths = self.write()
            run.finish(claims=len(self.claims), report=[p.name for p in paths])
        return paths

    # --- writing ---------------------------------------------------------------------------------------
    def write(self) -> tuple[Path, Path]:
        """commands.sh, claims.json, the forest plot of every paired difference, report.html and report.md."""
        atomic_write_text(self.out / "commands.sh", COMMANDS_HEADER + "\n".join(dict.fromkeys(self.commands)) + "\n")
        atomic_write_text(self.out / "claims.json", json.dumps([_claim_dict(c) for c in self.claims], indent=1) + "\n")
        figure = forest_plot(self.claims_with_tests, self.out / "differences.png")
        if self.claims:
            self.claims[0].figures.insert(0, figure)
        return write_report(self.out, self.claims, title=f"wxy_hw reproduction of the seed's claims ({self.b.name})",
                            preamble=self._preamble(), alpha=ALPHA, sections=self.sections)

    def _preamble(self) -> str:
        b = self.b
        cut = ("" if b.scope == "all" else f" It tests {SCOPE_WORDS[b.scope]}, on the models "
               + ", ".join(self.methods + (HWA_METHODS if self.plan.hwa else ())) + "; the other claims are not run "
               "at this budget.")
        return (f"Budget '{b.name}': {b.note}.{cut} {b.dataset}, {b.arch} width {b.width:g}, stem stride {b.stem_stride}, "
                f"{b.epochs} epochs, "
                f"{'all' if b.subset is None else b.subset} training images, batch {b.batch_size}, peak lr "
                f"{b.lr:g}, seeds {', '.join(map(str, b.seeds))}; "
                + (f"{b.chips} chips per seed on {', '.join(b.devices)}" if self.plan.sweep else "no chips")
                + ". The seed reports CIFAR-100 / ImageNet "
                "numbers of much larger networks: compare signs and orders, not levels. Intervals are 95 % "
                "t intervals with the seed as the unit (chips nested in seeds on hardware); those of accuracies are "
                "taken on the logit scale, those of ratios on the log scale, so they stay in range. Every command is "
                "in commands.sh beside this file (its paths are relative to this folder)." + self._provenance())

    def _provenance(self) -> str:
        """Where the models came from: trained here, the zoo's, or adopted from earlier runs (``--reuse``), by the
        ``adopted_from`` of each finished training run's manifest."""
        made: Counter[str] = Counter()
        earlier: set[str] = set()
        for path in training_manifests(self.out):
            try:
                manifest = read_json(path, fix=RERUN)
            except DamagedFileError:
                continue  # not a finished run: its step would have redone it
            if manifest.get("status") != "complete":
                continue
            source = manifest.get("adopted_from") or {}
            made["zoo" if "zoo" in source else "earlier" if "run" in source else "here"] += 1
            if "run" in source:
                earlier.add(str(Path(source["run"]).parent.parent))
        if not made:
            return ""
        parts = [f"{made['here']} trained here"]
        if made["zoo"]:
            parts.append(f"{made['zoo']} the zoo's")
        if made["earlier"]:
            parts.append(f"{made['earlier']} adopted from earlier runs in {', '.join(sorted(earlier))}")
        adopted = (" (those not trained here were trained with exactly these settings: evaluated, not retrained; "
                   "each run's manifest names its source)") if made["zoo"] or made["earlier"] else ""
        total = sum(made.values())
        return f" Of its {total} model{'s' if total != 1 else ''}, {'; '.join(parts)}{adopted}."

    # --- claims ----------------------------------------------------------------------------------------
    claims_with_tests: list[tuple[str, PairedTest]]

    def add_difference(self, section: str, claim: str, seed_value: str, a: dict, b: dict, names: tuple[str, str],
                       command: str, *, basis: Basis, expected_sign: int = 1,
                       kind: str = "direction", bounded: bool = True, note: str = "", figures: Iterable[Path] = (),
                       above: tuple[str, Interval, float] | None = None) -> None:
        """A claim "A beats B" (``expected_sign`` −1: "A is below B"; ``kind`` "no drop": "A loses nothing against
        B"), judged with every other claim once all are in (``judge_claims``). ``bounded``: A and B are accuracies
        (their intervals stay in 0-100). ``above``: (what, interval, threshold) that must also lie above the
        threshold for the claim to hold (SCAN's acceleration above 1×)."""
        test = paired_test(a, b)
        within = (0.0, 100.0) if bounded else None
        ia, ib = _interval(a, within), _interval(b, within)
        # chips per seed: a chip's id carries its seed (seed·1000 + i), so the distinct ids over all seeds overcount
        chips = max(Counter(s for s, _ in a).values(), default=1)
        units = f"{len({s for s, _ in a})} seeds" + (f" × {chips} chips" if chips > 1 else "")
        per_chip = {k: a[k] - b[k] for k in a}
        chip_var = nested_interval(per_chip).chip_var
        floor = chip_floor(per_chip)  # a seed's mean over its chips is no surer than they allow
        ours = f"{names[0]} {ia} vs {names[1]} {ib}; Δ = {t_interval(seed_differences(a, b), floor=floor)} ({units})"
        if above is not None:
            ours += f"; {above[0]} {above[1]}"
        evidence = Evidence(tuple(seed_differences(a, b)), basis.margin, basis.family, kind, expected_sign, floor)
        self._pending.append((Claim(section, claim, seed_value, ours, "not judged", command, note,
                                    [f for f in figures if f.exists()], basis.family),
                              evidence, above, {"seed_effect": stated_effect(seed_value), "chips": chips,
                                                "images": basis.images,
                                                "chip_var": chip_var, "levels": [ia.mean, ib.mean] if bounded else None}))
        self.claims_with_tests.append((f"{section}: {claim}", test))

    def add_untestable(self, section: str, claim: str, seed_value: str, ours: str, command: str, why: str,
                       family: str = "seed") -> None:
        """A claim our models cannot test as the seed states it: shown, counted, never judged."""
        self._untestable.append((len(self._pending), Claim(section, claim, seed_value, ours, "not judged", command,
                                                           family=family, reason=f"not testable here: {why}")))

    def collect(self) -> None:
        self.claims, self.claims_with_tests = [], []
        self._pending: list[tuple[Claim, Evidence, tuple[str, Interval, float] | None, dict[str, Any]]] = []
        self._untestable: list[tuple[int, Claim]] = []
        if self.b.scope == "hardware":  # a budget cut to the on-chip claims runs only the sweeps these read
            self._flat_minima()
            self._hardware()
        else:
            self._self_distillation()
            self._robustness()
        if self.b.scope == "all":  # a budget cut to Table 1 runs none of the studies these read
            self._scan()
            self._calibrator()
            self._flat_minima()
            self._hardware()
        self.judge_claims()

    def judge_claims(self) -> None:
        """Every pending claim's verdict, Holm-adjusted within its family; untestable claims kept in their place."""
        judged = judge([e for _, e, _, _ in self._pending], alpha=ALPHA)
        claims: list[Claim] = []
        for i, ((claim, evidence, above, extra), j) in enumerate(zip(self._pending, judged)):
            claims += [c for at, c in self._untestable if at == i]
            outcome, reason = j.outcome, j.reason
            if above is not None and outcome != "not judged":  # e.g. SCAN: no drop *and* an acceleration above 1×
                what, interval, threshold = above
                if interval.high < threshold:
                    outcome, reason = "refuted", f"{what} {interval} lies below {threshold:g}"
                elif outcome == "reproduced" and not interval.low > threshold:
                    outcome, reason = "inconclusive", f"{reason}; but {what} {interval} is not above {threshold:g}"
            effect = extra.get("seed_effect")
            if outcome == "no effect" and effect is not None and abs(effect) < evidence.margin.value:
                # a tie at this margin is what the seed's own numbers would give: not a contradiction of them
                reason += (f"; the seed's own effect, {effect:+g}, lies inside the margin too: at this margin its "
                           "numbers would also read as no effect")
            claim.verdict, claim.reason = outcome, reason
            claim.details = {"differences": list(evidence.differences), "kind": evidence.kind,
                             "expected_sign": evidence.expected_sign, "margin": asdict(evidence.margin),
                             "p_direction": j.p_direction, "p_equivalence": j.p_equivalence,
                             "p_direction_holm": j.p_direction_holm, "p_equivalence_holm": j.p_equivalence_holm,
                             "family_size": j.family_size, **extra}
            claims.append(claim)
        claims += [c for at, c in self._untestable if at >= len(self._pending)]
        self.claims = claims

    def _test_images(self) -> int:
        """Test images behind a trained model's digital accuracy (the test set, capped at the budget's subset)."""
        return self.b.subset or 10000

    def _test_accuracies(self) -> tuple[dict[tuple[str, str], dict], str]:
        """Every trained model's test accuracy per exit, by (method, exit) then (seed, 0); the deepest exit's label."""
        rows = _rows(self.out / "methods" / "comparison.csv", "method", "seed", "exit", "accuracy")
        acc: dict[tuple[str, str], dict] = defaultdict(dict)
        for r in rows:
            acc[r["method"], r["exit"]][(int(r["seed"]), 0)] = float(r["accuracy"])
        return acc, deepest_exit(rows)

    def _self_distillation(self) -> None:
        acc, deepest = self._test_accuracies()
        sd = lambda e: acc["self_distillation", e]  # noqa: E731
        base = acc["baseline", deepest]
        cmd, t1 = self.plan.methods.command, "Self-distillation (Table 1)"
        same = Basis(METHOD_MARGIN, self._test_images())
        self.add_difference(t1, "the deepest self-distilled classifier beats the baseline",
                            "ResNet18 CIFAR-100: 78.64 vs 77.09 (+1.55)", sd(deepest), base, ("SD 4/4", "baseline"), cmd,
                            basis=same)
        self.add_difference(t1, "the ensemble of the self-distilled classifiers beats the baseline",
                            "79.67 vs 77.09 (+2.58)", sd("ensemble"), base, ("SD ensemble", "baseline"), cmd, basis=same)
        self.add_difference(t1, "the shallowest classifier stays below the baseline",
                            "67.85 vs 77.09 (−9.24)", sd("1"), base, ("SD 1/4", "baseline"), cmd, expected_sign=-1,
                            basis=same)
        self._scan_table1(acc, base, deepest, same)
        if self.b.scope != "all":
            return
        t3 = "Self-distillation vs deeply supervised net (Table 3)"
        # "self distillation works better on all the classifiers": every exit and the ensemble (ResNet18 row)
        for e, seed_value in (("1", "67.85 vs 67.23 (+0.62)"), ("2", "74.57 vs 73.80 (+0.77)"),
                              ("3", "78.23 vs 77.75 (+0.48)"), (deepest, "78.64 vs 78.38 (+0.26)"),
                              ("ensemble", "79.67 vs 79.27 (+0.40)")):
            self.add_difference(t3, f"self-distillation beats DSN at {'the ensemble' if e == 'ensemble' else 'exit ' + e}",
                                f"ResNet18 CIFAR-100: {seed_value}", sd(e), acc["dsn", e], ("SD", "DSN"), cmd, basis=same)
        t2 = "Self-distillation vs distillation from a teacher (Table 2)"
        teacher = f"our teacher: {self.b.teacher_arch} width {self.b.teacher_width:g}{self._teacher_accuracy(acc, deepest)}, same budget"
        for m, value in (("kd", "77.79 (+0.85)"), ("fitnet", "78.21 (+0.43)"), ("at", "78.54 (+0.10)"),
                         ("dml", "77.54 (+1.10)")):
            self.add_difference(t2, f"self-distillation beats {m.upper() if m != 'fitnet' else 'FitNet'}",
                                f"ResNet152 → ResNet18, CIFAR-100: 78.64 vs {value}", sd(deepest), acc[m, deepest],
                                ("SD", m), cmd, basis=same,
                                note=teacher)
        self.add_untestable(t2, "self-distillation trains faster than distillation from a teacher",
                            "4.6× faster (ResNet152 → ResNet18)", "not measured", cmd,
                            "the ratio is set by the teacher's size (a ResNet152 in the seed), and the wall times here "
                            "compare no methods: runs train two at a time on a shared CPU, and some are adopted from "
                            "earlier runs")

    @staticmethod
    def _clean_cost(acc: dict[tuple[str, str], dict], deepest: str) -> str:
        """Clean test accuracy of auxiliary_adv and adv beside the seed's: its auxiliary model lost clean accuracy as
        adversarial training did, so its primary path saw adversarial inputs; one that keeps its clean accuracy did
        not, and cannot be expected to resist PGD."""
        mean = {m: sum(v.values()) / len(v) for m in ("auxiliary_adv", "adv", "baseline")
                if (v := acc.get((m, deepest)))}
        ours = ", ".join(f"{m} {x:.2f} %" for m, x in mean.items())
        return (f"clean test accuracy here: {ours} (the seed's: auxiliary 85.76, adversarial training 83.90, normal "
                "training 94.75 — its auxiliary model lost clean accuracy as adversarial training did)")

    def _teacher_accuracy(self, acc: dict[tuple[str, str], dict], deepest: str) -> str:
        """", test 92.75 % (mean of 3 seeds; the student baseline 92.20 %)": how far above its students the teachers
        were (a teacher barely better than its student has little to teach), both over the seeds whose teacher's
        results are here; "" where there are none."""
        teachers = {}
        for s in self.b.seeds:
            path = self.out / "methods" / "teacher" / f"s{s}" / "results.json"
            if path.is_file():
                teachers[s] = float(read_json(path, fix=RERUN)["test"]["exits"][-1])
        if not teachers:
            return ""
        base = [v for (s, _), v in acc.get(("baseline", deepest), {}).items() if s in teachers]
        vs = f"; the student baseline {sum(base) / len(base):.2f} %" if len(base) == len(teachers) else ""
        n = len(teachers)
        return f", test {sum(teachers.values()) / n:.2f} % (mean of {n} seed{'s' if n > 1 else ''}{vs})"

    def _scan_table1(self, acc: dict[tuple[str, str], dict], base: dict, deepest: str, same: Basis) -> None:
        scan = lambda e: acc["scan", e]  # noqa: E731
        cmd = self.plan.methods.command
        self.add_difference("SCAN (Table 1)", "SCAN's classifier 2/4 beats the baseline",
                            "ResNet18 CIFAR-100: 77.74 vs 77.09 (+0.65)", scan("2"), base, ("SCAN 2/4", "baseline"), cmd,
                            basis=same)
        self.add_difference("SCAN (Table 1)", "SCAN's deepest classifier beats the baseline",
                            "79.13 vs 77.09 (+2.04)", scan(deepest), base, ("SCAN 4/4", "baseline"), cmd, basis=same)

    def _scan(self) -> None:
        """Threshold-based dynamic inference, on its own terms: the thresholds accelerate SCAN with no drop against
        the same SCAN model run to its deepest exit (TOST), the acceleration's interval above 1×."""
        accel, dyn_acc, full = {}, {}, {}
        cut_accel, cut, base = {}, {}, {}  # SCAN stopped at its exit 2 against the baseline's whole network
        base_accel = {}  # SCAN with thresholds against the baseline (the seed's figure: x = 1 is each baseline)
        for s in self.b.seeds:
            d = self.out / "early_exit" / f"s{s}"
            dyn = [r for r in _rows(d / "dynamic.csv", "method", "setting", "mac_acceleration", "accuracy", "mean_macs")
                   if r["method"] == "scan" and r["setting"] == "digital"]
            per = _rows(d / "per_exit.csv", "method", "exit", "digital_accuracy", "macs")
            scan_rows = {r["exit"]: r for r in per if r["method"] == "scan" and r["exit"].isdigit()}
            deepest = _deepest_row(per, "scan", d / "per_exit.csv")
            accel[s] = float(dyn[0]["mac_acceleration"])
            dyn_acc[(s, 0)] = float(dyn[0]["accuracy"])
            full[(s, 0)] = float(deepest["digital_accuracy"])
            baseline = _deepest_row(per, "baseline", d / "per_exit.csv")  # one exit: its whole network
            cut_accel[s] = float(baseline["macs"]) / float(scan_rows["2"]["macs"])
            base_accel[s] = float(baseline["macs"]) / float(dyn[0]["mean_macs"])
            cut[(s, 0)], base[(s, 0)] = float(scan_rows["2"]["digital_accuracy"]), float(baseline["digital_accuracy"])
        d0 = self.out / "early_exit" / f"s{self.b.seeds[0]}"

        def no_drop(section: str, claim: str, seed_value: str, a: dict, b: dict, names: tuple[str, str], what: str,
                    ratios: dict[int, float], note: str, figures: Iterable[Path] = ()) -> None:
            """A "no accuracy drop" claim (TOST) that also needs its MAC acceleration's interval above 1×."""
            self.add_difference(section, claim, seed_value, a, b, names, self.plan.early[self.b.seeds[0]].command,
                                basis=Basis(NO_DROP_MARGIN, self.b.samples), kind="no drop",
                                above=(what, ratio_interval([ratios[s] for s in self.b.seeds]), 1.0), note=note,
                                figures=figures)

        no_drop("SCAN acceleration", "SCAN's classifier 2/4 alone runs faster than the baseline with no accuracy drop",
                "2.17× acceleration and 3.20× compression on average, no accuracy drop", cut, base,
                ("SCAN 2/4", "baseline"), "MAC acceleration (×)", cut_accel,
                "MACs of the baseline over those of SCAN cut off at its exit 2 (the backbone to stage 2 and that exit's "
                "own head, attention included); compression (parameters) is not measured")
        no_drop("SCAN dynamic inference", "thresholds (searched on validation) accelerate inference with no accuracy drop",
                "4.41× (CIFAR-100) and 1.99× (ImageNet) acceleration at no accuracy drop", dyn_acc, full,
                ("SCAN with thresholds", "SCAN's deepest exit"), "MAC acceleration (×, geometric mean)", accel,
                "the same SCAN model with and without its thresholds; the acceleration must also lie above 1×",
                figures=[d0 / "threshold_front.png", d0 / "exit_shares.png"])
        no_drop("SCAN dynamic inference", "thresholds accelerate inference with no accuracy drop against the baseline",
                "4.41× (CIFAR-100), 1.99× (ImageNet); the figure's x axis: acceleration over each network's baseline",
                dyn_acc, base, ("SCAN with thresholds", "baseline"),
                "MAC acceleration over the baseline (×, geometric mean)", base_accel,
                "the figure's other reading: the thresholded SCAN against the baseline network on the same test images "
                "(MACs of the baseline over SCAN's mean MACs with thresholds)")

    def _robustness(self) -> None:
        corr: dict[str, dict] = defaultdict(dict)
        unseen: dict[str, dict] = defaultdict(dict)  # only the corruptions augmentation and ADA never trained on
        unseen_names: dict[str, None] = {}  # which, in the order measured
        mce: dict[str, dict] = defaultdict(dict)
        adv: dict[str, dict] = defaultdict(dict)
        for s in self.b.seeds:
            d = self.out / "robustness" / f"s{s}"
            rows = _rows(d / "corruption.csv", "method", "exit", "corruption", "accuracy")
            deepest = deepest_exit(rows)
            by_method: dict[str, list[float]] = defaultdict(list)
            unseen_by_method: dict[str, list[float]] = defaultdict(list)
            for r in rows:  # clean accuracy is the whole test set's (comparison.csv), not these images'
                if r["exit"] == deepest and r.get("device", "") in ("", None) and r["corruption"] != "clean":
                    by_method[r["method"]].append(float(r["accuracy"]))
                    if r["corruption"] not in TRAIN_CORRUPTIONS:
                        unseen_by_method[r["method"]].append(float(r["accuracy"]))
                        unseen_names.setdefault(r["corruption"])
            for m, v in by_method.items():
                corr[m][(s, 0)] = sum(v) / len(v)
            for m, v in unseen_by_method.items():
                unseen[m][(s, 0)] = sum(v) / len(v)
            for r in _rows(d / "corruption_errors.csv", "method", "corruption", "ce"):
                if r["corruption"] == "mean":
                    mce[r["method"]][(s, 0)] = float(r["ce"])
            if (d / "adversarial.csv").exists():
                for r in _rows(d / "adversarial.csv", "method", "attack", "accuracy"):
                    if r["attack"] == "pgd_linf":
                        adv[r["method"]][(s, 0)] = float(r["accuracy"])
        s0 = self.out / "robustness" / f"s{self.b.seeds[0]}"
        cmd = self.plan.robust[self.b.seeds[0]].command
        same = Basis(METHOD_MARGIN, self.b.corruption_samples)
        sec = "ADA (Table 1, CIFAR-100-C)"
        self.add_difference(sec, "ADA beats data augmentation on corrupted images (mean over corruptions × severities)",
                            "mean over 9 corruptions: 60.18 vs 59.50 (+0.68)", corr["ada"], corr["augment"],
                            ("ADA", "augmentation"), cmd, figures=[s0 / "accuracy_vs_severity.png"], basis=same)
        self.add_difference(sec, "data augmentation beats the baseline on corrupted images",
                            "59.50 vs 46.24 (+13.26)", corr["augment"], corr["baseline"], ("augmentation", "baseline"), cmd,
                            basis=same)
        if unseen:  # the seed's mean is mostly over corruptions never trained on (7 of 9); a budget's may not be
            sec, held_out = "ADA (extension: corruptions never trained on)", Basis(METHOD_MARGIN, self.b.corruption_samples,
                                                                                     "extension")
            names = ", ".join(unseen_names)
            self.add_difference(sec, f"ADA beats data augmentation on corruptions neither trained on ({names})",
                                "the seed's 7 such corruptions of 9: 60.69 vs 60.03 (+0.67)", unseen["ada"],
                                unseen["augment"], ("ADA", "augmentation"), cmd, basis=held_out,
                                note=f"both trained on {' and '.join(TRAIN_CORRUPTIONS)}")
            self.add_difference(sec, f"data augmentation beats the baseline on corruptions it never trained on ({names})",
                                "the seed's 7 such corruptions of 9: 60.03 vs 46.37 (+13.66)", unseen["augment"],
                                unseen["baseline"], ("augmentation", "baseline"), cmd, basis=held_out)
        acc, deepest = self._test_accuracies()  # clean: the whole test set, as every other trained-model claim
        self.add_difference("ADA (Table 3, clean images)", "ADA beats data augmentation on clean images",
                            "ResNet18 CIFAR-100: 73.53 vs 66.34 (+7.19)", acc["ada", deepest], acc["augment", deepest],
                            ("ADA", "augmentation"), self.plan.methods.command,
                            basis=Basis(METHOD_MARGIN, self._test_images()))
        if "auxiliary" not in self.methods:
            return
        sec = "Auxiliary Training"
        self.add_difference(sec, "auxiliary training raises clean accuracy over the baseline",
                            "ResNet18 CIFAR-100: 79.47 vs 77.09 (+2.38)", acc["auxiliary", deepest],
                            acc["baseline", deepest], ("auxiliary", "baseline"), self.plan.methods.command,
                            basis=Basis(METHOD_MARGIN, self._test_images()))
        self.add_difference(sec, "auxiliary training lowers the mean corruption error (mCE, baseline = 100)",
                            "ResNet18 CIFAR-100-C: CE 69.34 vs 92.21 (AlexNet = 100); summary: 21.46 % natural "
                            "robustness improvement", mce["auxiliary"], mce["baseline"],
                            ("auxiliary", "baseline"), cmd, expected_sign=-1,
                            basis=Basis(CE_MARGIN, self.b.corruption_samples), bounded=False)
        claim, seed_value = ("auxiliary training beats adversarial training under PGD-L∞",
                             "PGD-L∞: 46.45 vs 43.52 (+2.93; clean: 85.76, normal training 94.75); summary: 3.17 % "
                             "adversarial accuracy improvement")
        if adv.get("auxiliary_adv") and adv.get("adv"):
            self.add_difference(sec, claim, seed_value, adv["auxiliary_adv"], adv["adv"],
                                ("auxiliary (+ PGD view)", "adversarial training"), cmd,
                                basis=Basis(METHOD_MARGIN, self.b.adv_samples),
                                note="as the talk describes it: PGD copies (the same ε and steps as adversarial "
                                     "training) are one more auxiliary input type beside noise and blur, with their own "
                                     "classifier, and their own BN layers until period 2 routes every input through "
                                     "the primary ones (method auxiliary_adv, merge_bn=True; the seed's clean accuracy "
                                     "says its deployed path saw them); " + self._clean_cost(acc, deepest))
        else:
            self.add_untestable(sec, claim, seed_value, "not measured", cmd,
                                "this budget runs no PGD evaluation of auxiliary_adv and adv")

    def _calibrator(self) -> None:
        src: dict[tuple[int, int], float] = {}
        cal: dict[tuple[int, int], float] = {}
        dann: dict[tuple[int, int], float] = {}
        on_source: dict[str, dict[tuple[int, int], float]] = {"calibrator": {}, "DANN": {}}
        for s in self.b.seeds:
            for r in _rows(self.out / "calibrator_domain" / f"s{s}" / "domain.csv", "method", "target acc",
                           "source acc"):
                target = {"source only": src, "calibrator (classifier frozen)": cal,
                          "DANN (fine-tuned features)": dann}.get(r["method"])
                if target is not None:
                    target[(s, 0)] = float(r["target acc"])
                if target is cal or target is dann:
                    on_source["calibrator" if target is cal else "DANN"][(s, 0)] = float(r["source acc"])
        sec, cmd = "Calibrator (domain adaptation)", self.plan.domain[self.b.seeds[0]].command
        pair = " → ".join(self.b.domain)
        stand_in = (f"stand-ins: {pair} for the seed's MNIST → USPS (sklearn's 8×8 digits, upsampled, in place of "
                    "USPS, which is not available offline)")
        same = Basis(METHOD_MARGIN, self._recorded_images("calibrator_domain", "domain_images", "target test",
                                                          self.b.calibrator_samples))
        self.add_difference(sec, f"the input calibrator raises target accuracy over the unadapted classifier ({pair})",
                            "MNIST → USPS: 95.6 (ours; no source-only row in the table)", cal, src,
                            ("calibrator", "source only"), cmd, note=stand_in, basis=same)
        self.add_difference(sec, "the input calibrator beats feature-level adaptation (DANN in place of ADDA)",
                            "MNIST → USPS: 95.6 vs 90.1 (+5.5; ADDN [34], i.e. ADDA); a tie with CDAN (95.6 vs 95.6)",
                            cal, dann,
                            ("calibrator", "DANN"), cmd, note=stand_in + "; DANN stands in for ADDA (both adversarial "
                            "feature alignment); the seed reports no win over CDAN", basis=same)
        self.add_difference(sec, "after adaptation the calibrator keeps the better source-domain accuracy (vs DANN)",
                            "a preview figure, no number: 'the best source domain performance after the adaptation'",
                            on_source["calibrator"], on_source["DANN"], ("calibrator", "DANN"), cmd,
                            note=stand_in + "; the calibrator's value is the untouched classifier's (source images "
                            "skip the calibrator; through it they score domain.csv's 'source acc (inputs calibrated)'), "
                            "so this tests whether DANN's fine-tuning costs source accuracy",
                            basis=Basis(METHOD_MARGIN, self._recorded_images("calibrator_domain", "domain_images",
                                                                             "source test", self.b.calibrator_samples)))
        self.add_untestable(sec, "the calibrator beats the state of the art on the digits benchmark by 2.5 points",
                            "97.6 (CycleGAN + calibrator) vs 95.1 (MCD), averaged over MNIST → USPS, USPS → "
                            "MNIST and SVHN → MNIST",
                            "not measured", cmd, "one stand-in pair here (no USPS or SVHN offline) and no method "
                            "of the seed's table but a DANN stand-in for ADDA")
        none, calc, bn = {}, {}, {}
        for s in self.b.seeds:
            for r in _rows(self.out / "calibrator_chips" / f"s{s}" / "chips.csv", "chip", "no calibration", "calibrator"):
                key = (s, int(r["chip"]))
                none[key], calc[key] = float(r["no calibration"]), float(r["calibrator"])
                if r.get("BN recalibration") not in (None, ""):
                    bn[key] = float(r["BN recalibration"])
        dev = self.b.devices[0]
        sec, cmd = f"Calibrator on {dev} chips (extension)", self.plan.chipcal[self.b.seeds[0]].command
        fig = self.out / "calibrator_chips" / f"s{self.b.seeds[0]}" / "chip_cross.png"
        chip = Basis(CHIP_MARGIN, self._recorded_images("calibrator_chips", "chip_images", "test",
                                                        min(self.b.calibrator_samples, CHIP_IMAGES)), "extension")
        self.add_difference(sec, "a per-chip calibrator recovers accuracy lost on the chip",
                            "not in the seed (the calibrator adapts domains)", calc, none, ("calibrator", "none"), cmd,
                            figures=[fig], basis=chip)
        if bn and set(bn) == set(calc):
            self.add_difference(sec, "the calibrator beats zero-parameter BN recalibration on the same images",
                                "not in the seed", calc, bn, ("calibrator", "BN recal"), cmd, basis=chip)

    def _recorded_images(self, study: str, key: str, field: str, before: int) -> int:
        """Test images behind a calibrator step's accuracies as its manifests recorded them (the fewest over the
        seeds: the target domain's test split may hold fewer than asked); ``before``: the count asked, for a step
        run before the counts were recorded."""
        counts = []
        for s in self.b.seeds:
            results = read_json(self.out / study / f"s{s}" / "manifest.json", fix=RERUN).get("results") or {}
            counts.append(int((results.get(key) or {}).get(field, before)))
        return min(counts, default=before)

    def _flat_minima(self) -> None:
        """The seed's figure is about training accuracy: the drop is measured on the images each model trained on
        (the seed's claim) and, apart, on held-out test images (an extension)."""
        sigma = max(self.b.sigmas)
        drop: dict[str, dict[str, dict]] = {"trained": defaultdict(dict), "held out": defaultdict(dict)}
        for s in self.b.seeds:
            rows = _rows(self.out / "noise_sweep" / self.b.devices[0] / f"s{s}" / "flat_minima.csv", "images",
                         "method", "exit", "sigma", "accuracy_mean")
            deepest = deepest_exit(rows)
            for images, by_method in drop.items():
                for m in ("baseline", "self_distillation"):
                    at = {float(r["sigma"]): float(r["accuracy_mean"]) for r in rows
                          if r["method"] == m and r["exit"] == deepest and r["images"] == images}
                    by_method[m][(s, 0)] = at[sigma] - at[0.0]
        d0 = self.out / "noise_sweep" / self.b.devices[0] / f"s{self.b.seeds[0]}"
        cmd = self.plan.sweep[self.b.devices[0], self.b.seeds[0]].command
        for images, family in (("trained", "seed"), ("held out", "extension")):
            what = "training accuracy (images it trained on)" if images == "trained" else "held-out test accuracy"
            by_method = drop[images]
            self.add_difference("Flat minima" + ("" if family == "seed" else " (extension)"),
                                f"self-distillation loses less {what} under Gaussian weight noise "
                                f"(σ = {sigma:g} × |W|max, deepest exit)",
                                "figure (a)/(b): SD more robust to noise on the parameters (no number)",
                                by_method["self_distillation"], by_method["baseline"],
                                ("SD change", "baseline change"), cmd, basis=Basis(METHOD_MARGIN, self.b.samples, family),
                                bounded=False,
                                figures=[d0 / "flat_minima.png"] if family == "seed" else ())

    def _hardware(self) -> None:
        """On-chip claims as levels and as retention (on-chip − digital of the same model on the same images)."""
        for dev in self.b.devices:
            acc: dict[str, dict] = defaultdict(dict)
            kept: dict[str, dict] = defaultdict(dict)
            for s in self.b.seeds:
                rows = _rows(self.out / "noise_sweep" / dev / f"s{s}" / "headline.csv", "method", "exit", "chip",
                             "accuracy", "digital")
                deepest: dict[str, int] = {}
                for r in rows:
                    if r["exit"].isdigit():
                        deepest[r["method"]] = max(deepest.get(r["method"], 0), int(r["exit"]))
                for r in rows:
                    if r["exit"] == str(deepest[r["method"]]):
                        series, key = _series(r["method"]), (s, int(r["chip"]))
                        acc[series][key] = float(r["accuracy"])
                        kept[series][key] = float(r["accuracy"]) - float(r["digital"])  # on the same images
            sec = f"On {dev} chips (extension)"
            cmd = self.plan.sweep[dev, self.b.seeds[0]].command
            fig = [self.out / "noise_sweep" / dev / f"s{self.b.seeds[0]}" / "accuracy_vs_noise.png"]
            chip = Basis(CHIP_MARGIN, self.b.samples, "extension")
            self.add_difference(sec, "self-distillation keeps more of its accuracy on the chip than the baseline "
                                "(retention: on-chip − digital)", "predicted by the flat-minima figure; not measured "
                                "in the seed", kept["self_distillation"], kept["baseline"],
                                ("SD retention", "baseline retention"), cmd, figures=fig, bounded=False, basis=chip)
            self.add_difference(sec, "self-distillation is more accurate on the chip than the baseline (level)",
                                "not in the seed", acc["self_distillation"], acc["baseline"], ("SD", "baseline"), cmd,
                                basis=chip)
            self.add_difference(sec, "hardware-aware training beats the baseline on the chip",
                                "not in the seed (Joshi et al. 2020)", acc["hwa"], acc["baseline"],
                                ("HWA", "baseline"), cmd, basis=chip)
            self.add_difference(sec, "self-distillation adds to hardware-aware training",
                                "not in the seed", acc["self_distillation+hwa"], acc["hwa"], ("SD+HWA", "HWA"), cmd,
                                basis=chip)
            if acc.get("baseline + BN recal"):
                self.add_difference(sec, f"BN recalibration through the chip ({self.b.bn_images} unlabeled images) "
                                    "recovers accuracy", "not in the seed", acc["baseline + BN recal"],
                                    acc["baseline"], ("baseline + BN recal", "baseline"), cmd, basis=chip)


def _series(label: str) -> str:
    """The method of a noise_sweep series label (checkpoint labels may carry ':<run dir>')."""
    recal = label.endswith(" + BN recal")
    base = label[: -len(" + BN recal")] if recal else label
    return base.split(":")[0] + (" + BN recal" if recal else "")


def _interval(values: dict[tuple[int, int], float], within: tuple[float, float] | None = None) -> Interval:
    """The level's interval over seeds (chips nested in them), kept inside ``within`` when given."""
    return nested_interval(values, within=within)


def _claim_dict(c: Claim) -> dict[str, Any]:
    d = asdict(c)
    d["figures"] = [str(f) for f in c.figures]
    return d


def forest_plot(tests: Sequence[tuple[str, PairedTest]], path: Path) -> Path:
    """One row per paired comparison: the difference and its 95 % interval, zero marked."""
    from ..analysis.plots import plt  # the headless backend is set there once

    fig, ax = plt.subplots(figsize=(9, 0.32 * len(tests) + 1.2))
    for i, (_, t) in enumerate(reversed(tests)):
        d = t.difference
        half = 0.0 if math.isnan(d.half_width) else d.half_width
        color = "#2a7" if (t.p_value < ALPHA and d.mean > 0) else "#c33" if t.p_value < ALPHA else "#888"
        ax.errorbar(d.mean, i, xerr=half, fmt="o", color=color, capsize=3, ms=4)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(tests)))
    ax.set_yticklabels([label if len(label) < 90 else label[:87] + "…" for label, _ in reversed(tests)], fontsize=7)
    ax.set_xlabel("A − B (accuracy points or CE points), mean ± 95 % interval")
    fig.tight_layout()
    atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=110))  # never a half-written figure
    plt.close(fig)
    return path
