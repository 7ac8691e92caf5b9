"""Co-design search (experiments/codesign.py): which network shape, trained how, on which chip, survives the
hardware at the least energy — the seed's open problem, *Robust W*, posed as a multi-objective search.

A trial is one design: a network shape (width, stem stride, the stages that carry exits, the exit head), a
training method (with hwa's noise strength), a chip (array rows, ADC bits, bits per cell, rows read at once,
converter ranging) and a deployment (BN recalibration; early-exit thresholds searched on validation through each
chip, as early_exit_energy does). Optuna proposes designs (NSGA-II by default, or TPE) and keeps them in an SQLite
study in the run directory, so an interrupted search resumes (``--resume``).

Trainings are the expensive part: each (shape, method, seed) trains once, through the studies' cache
(runs/cache, then the shipped zoo), and every chip configuration is then measured on the cached model. A training
reports its validation accuracy per epoch to an Optuna pruner (median or successive halving, among trainings of the
same method) that stops poor ones; ``trainings`` caps how many distinct models a search may train, the unit an
equal-compute comparison counts. Objectives come from the one accuracy engine (``deploy_on``) and the one cost
model (``chip_report``) over ``chips`` chip instances: mean and 10th-percentile on-chip accuracy, yield (chips
within ``yield_margin`` points of the digital accuracy on the same images), energy and latency per inference on
the early-exit path, area.

The reference design — the default model (baseline, the default shape) on the main job's chip — is measured in
every search at the same training budget. ``confirm_seeds`` retrains the front's best points and the reference
from scratch with other seeds: the search's own numbers are selected, so only these carry an interval.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Literal, Sequence, cast

import numpy as np
import torch

from ..analysis.pareto import dominated_share, hypervolume_2d, non_dominated
from ..checkpoint import CheckpointError, read_checkpoint
from ..data.base import Split, take_subset
from ..analysis.stats import bounded_interval, t_interval
from ..hardware.chip import ChipConfig, RANGING
from ..hardware.cost import chip_report
from ..hardware.montecarlo import deploy_on
from ..hardware.spec import load_device
from ..methods import build_method, default_heads, method_traits
from ..methods.base import Batch
from ..models import HEADS, available_archs, build_model
from ..models.cost import exit_path_macs
from ..models.evaluation import evaluate
from ..output import format_table, plt, save_figure, write_rows_csv
from ..parallel import check_parallel, parallel_map, runs_on_ray
from ..run_dir import read_marker, run_dir_guard
from ..train import TrainingPruned
from ..analysis.report import Section
from ..utils import DamagedFileError, atomic_write_text, read_json
from .config import SettingError, StudyConfig
from .early_exit_energy import dynamic_inference
from .spine import DEFAULT_BUDGET, Checkpoint, StudyResult, cached_checkpoint, is_hardware_aware, open_checkpoint, stamp, start_run

Direction = Literal["maximize", "minimize"]
# the default model's shape (the reference's, the grid's)
DEFAULT_ARCH, DEFAULT_WIDTH = cast(str, DEFAULT_BUDGET["arch"]), cast(float, DEFAULT_BUDGET["width"])
DEFAULT_STEM = cast(int, DEFAULT_BUDGET["stem_stride"])
# what a design is judged on: Optuna direction, the column it is read from, its words
OBJECTIVES: dict[str, tuple[Direction, str, str]] = {
    "accuracy": ("maximize", "accuracy_mean", "mean on-chip accuracy (%)"),
    "p10_accuracy": ("maximize", "accuracy_p10", "10th-percentile chip's accuracy (%)"),
    "yield": ("maximize", "yield", "share of chips within the margin of digital"),
    "energy": ("minimize", "energy_pJ", "energy per inference on the early-exit path (pJ)"),
    "latency": ("minimize", "latency_ns", "latency per inference on the early-exit path (ns)"),
    "area": ("minimize", "area_mm2", "chip area (mm²)"),
}
SAMPLERS = ("nsga2", "tpe")
ALL_STAGES = "1234"  # an exit after every stage: the default multi-exit model's (its cache entry and the zoo's)
PRUNERS = ("median", "halving", "none")
# chip c of every design is seed SEARCH_CHIPS + c during the search (chip_study's seeds: designs meet the same draws)
# and REPORT_CHIPS + c where a number is reported (the reference, the confirmation): chips the search never saw
SEARCH_CHIPS, REPORT_CHIPS = 2000, 3000
REJECTIONS = 200  # proposals in a row that need a training over the cap before the search stops


@dataclass
class CodesignConfig(StudyConfig):
    """Settings of the co-design search (field names = the CLI's option names); every search dimension is a list
    of the values the search may choose."""

    KIND = "codesign"

    device: str = "reram"
    device_set: dict[str, Any] = field(default_factory=dict)
    t_inference: float | None = None
    # network shape
    arch: list[str] = field(default_factory=lambda: [DEFAULT_ARCH])
    width: list[float] = field(default_factory=lambda: [0.25, 0.5])
    stem_stride: list[int] = field(default_factory=lambda: [2])
    exit_stage_sets: list[str] = field(default_factory=lambda: ["234", "34"])
    heads: list[str] = field(default_factory=lambda: ["byot", "byot_light"])
    # training
    methods: list[str] = field(default_factory=lambda: ["baseline", "self_distillation", "hwa",
                                                        "self_distillation+hwa"])
    hwa_noise: list[float] = field(default_factory=lambda: [1.0, 0.5])
    # chip
    rows: list[int] = field(default_factory=lambda: [64, 128, 256])
    adc_bits: list[int] = field(default_factory=lambda: [4, 6, 8])
    # 0: the device file's cells (the main job's chip); b ≥ 1: weights bit-sliced onto b-bit cells (ChipConfig)
    bits_per_cell: list[int] = field(default_factory=lambda: [0])
    # 0: every row at once; off by default because each group of rows is a conversion the engine runs on its own
    parallel_rows: list[int] = field(default_factory=lambda: [0])
    ranging: list[str] = field(default_factory=lambda: ["fixed", "per_sample"])
    # deployment
    bn_recalibrate: list[int] = field(default_factory=lambda: [0, 64])
    # objectives and how they are measured
    objectives: list[str] = field(default_factory=lambda: ["accuracy", "energy"])
    chips: int = 10
    samples: int = 500  # validation (thresholds) and test images per chip: the chips' spread dominates their noise
    yield_margin: float = 2.0
    # the search
    trials: int = 30
    trainings: int = 8
    population: int = 8
    sampler: str = "nsga2"
    pruner: str = "median"
    confirm_seeds: list[int] = field(default_factory=list)
    confirm_points: int = 2
    grid: list[str] = field(default_factory=list)  # today's grid at equal compute: these methods, default shape
    # the models' training budget (the same for every design and the reference)
    dataset: str = "fashion_mnist"
    data_dir: str | None = None
    train_epochs: int = 5
    train_subset: int = 20000  # 0: every training image
    retrain: bool = False
    seed: int = 0
    torch_device: str = "auto"
    workers: int = 1
    ray_address: str | None = None


@dataclass(frozen=True)
class Design:
    """One point of the search: what is trained (shape, method, seed) and the chip it is deployed on. A chip
    setting of None is the device file's (the reference's main-job chip)."""

    method: str
    width: float
    stem_stride: int
    arch: str = DEFAULT_ARCH
    exit_stages: str | None = None   # "234": stages with an exit (multi-exit methods only)
    heads: str | None = None
    hwa_noise: float | None = None   # hardware-aware methods only
    rows: int | None = None
    adc_bits: int | None = None
    bits_per_cell: int | None = None
    parallel_rows: int = 0
    ranging: str | None = None
    bn_recalibrate: int = 0
    seed: int = 0

    @property
    def training(self) -> tuple:
        """What the model depends on: designs with equal keys share one trained model."""
        return (self.method, self.arch, self.width, self.stem_stride, self.exit_stages, self.heads, self.hwa_noise,
                self.seed)

    def training_name(self) -> str:
        parts = [self.method, f"{self.arch} w{self.width:g}", f"stem{self.stem_stride}"]
        parts += [f"exits{self.exit_stages}"] if self.exit_stages else []
        parts += [f"{self.heads} heads"] if self.heads else []
        parts += [f"noise×{self.hwa_noise:g}"] if self.hwa_noise is not None else []
        return " ".join(parts) + f" s{self.seed}"

    def chip_config(self, cells: Any) -> ChipConfig:
        """The chip this design deploys on and prices (arrays square)."""
        rows = self.rows
        return ChipConfig(device=cells, rows=rows, cols=rows, adc_bits=self.adc_bits,
                          bits_per_cell=self.bits_per_cell or None,
                          parallel_rows=None if not self.parallel_rows or (rows and self.parallel_rows >= rows)
                          else self.parallel_rows, ranging=self.ranging)


def suggest(trial: Any, conf: CodesignConfig) -> Design:
    """The design Optuna proposes in ``trial`` (exit stages and heads only for multi-exit methods, the noise
    strength only for hardware-aware ones: conditional dimensions)."""
    method = trial.suggest_categorical("method", conf.methods)
    multi = method_traits(method)[0]
    return Design(
        method=method, arch=trial.suggest_categorical("arch", conf.arch),
        width=trial.suggest_categorical("width", conf.width),
        stem_stride=trial.suggest_categorical("stem_stride", conf.stem_stride),
        exit_stages=trial.suggest_categorical("exit_stages", conf.exit_stage_sets) if multi else None,
        heads=trial.suggest_categorical("heads", conf.heads) if multi else None,
        hwa_noise=trial.suggest_categorical("hwa_noise", conf.hwa_noise) if is_hardware_aware(method) else None,
        rows=trial.suggest_categorical("rows", conf.rows), adc_bits=trial.suggest_categorical("adc_bits", conf.adc_bits),
        bits_per_cell=trial.suggest_categorical("bits_per_cell", conf.bits_per_cell),
        parallel_rows=trial.suggest_categorical("parallel_rows", conf.parallel_rows),
        ranging=trial.suggest_categorical("ranging", conf.ranging),
        bn_recalibrate=trial.suggest_categorical("bn_recalibrate", conf.bn_recalibrate), seed=conf.seed)


def reference_design(conf: CodesignConfig) -> Design:
    """The default model (baseline, default shape) on the main job's chip (the device file's array and
    converters), at the search's training budget and seed."""
    return Design("baseline", DEFAULT_WIDTH, DEFAULT_STEM, seed=conf.seed)


def check_config(conf: CodesignConfig) -> None:
    """Refuse an impossible search before anything runs (one line naming the setting)."""
    bad = [o for o in conf.objectives if o not in OBJECTIVES]
    if bad or not conf.objectives or len(set(conf.objectives)) != len(conf.objectives):
        raise SettingError("objectives", f"must be distinct names among {', '.join(OBJECTIVES)}, got "
                                         f"{' '.join(conf.objectives) or 'none'}")
    if conf.train_subset < 0:
        raise SettingError("train_subset", f"must be ≥ 1 training images, or 0 for all, got {conf.train_subset}")
    for name in ("trials", "trainings", "chips", "samples", "train_epochs", "confirm_points"):
        if getattr(conf, name) < 1:
            raise SettingError(name, f"must be ≥ 1, got {getattr(conf, name)}")
    if conf.population < 2:
        raise SettingError("population", f"must be ≥ 2 (NSGA-II breeds pairs), got {conf.population}")
    if conf.seed in conf.confirm_seeds:
        raise SettingError("confirm_seeds", f"must differ from --seed {conf.seed}: the confirmation retrains from "
                                            "scratch, with seeds the search never used")
    hwa = [m for m in conf.methods + conf.grid if is_hardware_aware(m)]
    if hwa and (conf.device_set or conf.t_inference is not None):
        raise SettingError("methods", f"{hwa[0]} trains through the device file's own noise at its nominal time, which "
                                      "--device-set / --t-inference would change for the chips alone; search "
                                      "without them, or without hardware-aware methods")
    if conf.sampler not in SAMPLERS:
        raise SettingError("sampler", f"must be one of {', '.join(SAMPLERS)}, got {conf.sampler!r}")
    if conf.pruner not in PRUNERS:
        raise SettingError("pruner", f"must be one of {', '.join(PRUNERS)}, got {conf.pruner!r}")
    if not 0 <= conf.yield_margin <= 100:
        raise SettingError("yield_margin", f"must be in 0..100 accuracy points, got {conf.yield_margin}")
    for name in ("arch", "width", "stem_stride", "exit_stage_sets", "heads", "methods", "hwa_noise", "rows", "adc_bits",
                 "bits_per_cell", "parallel_rows", "ranging", "bn_recalibrate"):
        if not getattr(conf, name):
            raise SettingError(name, "needs at least one value to search")
    for a in conf.arch:
        if a not in available_archs():
            raise SettingError("arch", f"{a!r}: choose among {', '.join(available_archs())}")
    for flag, methods in (("methods", conf.methods), ("grid", conf.grid)):
        for m in methods:
            if method_traits(m)[1]:  # a misspelt method is refused here, by name
                raise SettingError(flag, f"{m} needs a teacher model; the search trains students of none")
    _check_heads(conf)
    for s in conf.exit_stage_sets:
        if not s.isdigit() or not set(s) <= set("1234") or "4" not in s:
            raise SettingError("exit_stage_sets", f"{s!r}: give stage digits 1-4 with the deepest, e.g. 234")
    for r in conf.ranging:
        if r not in RANGING:
            raise SettingError("ranging", f"{r!r}: choose {' or '.join(RANGING)}")
    if any(n <= 0 for n in conf.hwa_noise):
        raise SettingError("hwa_noise", f"must be > 0 (a scale of the device's noise), got {conf.hwa_noise}")
    check_parallel(conf.workers, conf.ray_address)
    cells = load_device(conf.device, conf.device_set)
    if cells.is_digital:
        raise SettingError("device", f"{conf.device} is digital: the search deploys on analog chips")
    for rows in conf.rows:  # every chip of the space resolves (the device's own limits) before any training
        for bits in conf.adc_bits:
            for bpc in conf.bits_per_cell:
                Design("baseline", 0.25, 2, rows=rows, adc_bits=bits, bits_per_cell=bpc).chip_config(cells).resolve()
    cells.inference_time(conf.t_inference)


def _check_heads(conf: CodesignConfig) -> None:
    """Every multi-exit method's loss on every head kind, tried on a tiny model and batch: a pairing that cannot
    train (self-distillation's hint on heads whose features differ from the deepest) is refused before any work."""
    for h in conf.heads:
        if h not in HEADS:
            raise SettingError("heads", f"{h!r}: choose among {', '.join(sorted(HEADS))}")
    x, y = torch.randn(2, 1, 16, 16), torch.tensor([0, 1])
    for m in conf.methods:
        if not method_traits(m)[0]:
            continue
        loss = build_method(m, **({"device": conf.device} if is_hardware_aware(m) else {}))
        for h in conf.heads:
            net = build_model("resnet8", 2, 1, 0.125, 16, h, multi_exit=True)
            try:
                loss(net(x), Batch(x, y))
            except ValueError as exc:
                raise SettingError("heads", f"{h} with {m}: {exc}") from None


# --- the two tasks: train one model (pruned on validation), measure one design on its chips ------------------
@dataclass
class Context:
    """What every task needs (shipped once to Ray workers): the settings and each method's training curves so far
    (the pruner's evidence)."""

    conf: CodesignConfig
    curves: dict[tuple, list[dict[str, Any]]] = field(default_factory=dict)  # peers → [{state, curve, system_attrs}]
    data_cache: dict[tuple, Any] = field(default_factory=dict)


def peers(training: tuple) -> tuple:
    """The trainings a pruner compares one with: the same method on the same backbone (arch, width, stem stride),
    whatever their exits, heads or hwa noise — a narrower network, or one trained through noise, is slower on clean
    validation and is never judged against a wider or a clean one."""
    return training[:4]


def _pruner(name: str) -> Any:
    import optuna

    if name == "median":  # a training below the median of its method's curves at the same epoch, from epoch 2
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=2, reduction_factor=3)
    return optuna.pruners.NopPruner()


def _pruning_hook(conf: CodesignConfig, history: list[dict[str, Any]]) -> tuple[Callable[..., bool], dict[str, Any]]:
    """An ``on_epoch`` hook whose verdicts are Optuna's pruner's: an in-memory study holding the method's earlier
    trainings (curves and the pruner's own records), this training one more trial of it. Built in the worker, so a
    Ray task needs no shared storage; the search records the outcome in its SQLite study."""
    import optuna
    from optuna.trial import TrialState, create_trial

    study = optuna.create_study(direction="maximize", pruner=_pruner(conf.pruner))
    for h in history:
        curve = {int(k): float(v) for k, v in h["curve"].items()}
        complete = h["state"] == "COMPLETE"
        study.add_trial(create_trial(state=TrialState.COMPLETE if complete else TrialState.PRUNED,
                                     value=max(curve.values()) if complete else None, intermediate_values=curve,
                                     system_attrs=h.get("system_attrs", {})))
    trial = study.ask()
    record: dict[str, Any] = {"curve": {}, "study": study, "trial": trial}

    def hook(epoch: int, val: Any) -> bool:
        score = float(val.final)
        record["curve"][epoch] = score
        trial.report(score, epoch)
        return epoch < conf.train_epochs and bool(trial.should_prune())  # a finished training is kept

    return hook, record


def train_task(context: Context, design: Design) -> dict[str, Any]:
    """Train (or find) the model of ``design``: {state COMPLETE / PRUNED, checkpoint, curve, the pruner's record}."""
    conf = context.conf
    hook, record = _pruning_hook(conf, context.curves.get(peers(design.training), []))
    try:
        path = cached_checkpoint(design.method, conf.dataset, conf.data_dir, design.seed, progress=False,
                                 hwa_device=conf.device, hwa_noise=design.hwa_noise, on_epoch=hook,
                                 torch_device=conf.torch_device, **budget_of(conf, design)).resolve()
        state = "COMPLETE"
    except TrainingPruned:
        path, state = None, "PRUNED"
    attrs = dict(record["study"].get_trials(deepcopy=False)[-1].system_attrs) if record["curve"] else {}
    best = float(read_checkpoint(path)["best_val"]) if path is not None else None
    return {"state": state, "checkpoint": None if path is None else str(path), "curve": record["curve"],
            "system_attrs": attrs, "best_val": best}


def budget_of(conf: CodesignConfig, design: Design) -> dict[str, Any]:
    """cached_checkpoint's budget for the design's model."""
    return dict(arch=design.arch, width=design.width, stem_stride=design.stem_stride, epochs=conf.train_epochs,
                subset=conf.train_subset or None,
                exit_stages=[int(c) for c in design.exit_stages] if design.exit_stages not in (None, ALL_STAGES) else None,
                heads=design.heads, retrain=conf.retrain)


def measure_task(context: Context, task: tuple[Design, str, str]) -> dict[str, Any]:
    """One design on its chips: per chip the accuracy of what the chip delivers (real early exit at thresholds
    searched through that chip for the least energy at the deepest exit's accuracy, for a multi-exit model; the
    deepest exit otherwise), its mean energy and latency per inference, the chip's area, and the digital accuracy
    on the same images.

    ``phase`` "search": thresholds on one half of a seeded selection of validation images, accuracy on the other
    half, chips ``SEARCH_CHIPS + c`` — the search never sees a test image. "report" (the reference, the
    confirmation): thresholds on the first half, accuracy on test images, fresh chips ``REPORT_CHIPS + c``."""
    design, checkpoint, phase = task
    conf = context.conf
    opened = open_checkpoint(checkpoint, conf.data_dir, conf.torch_device, context.data_cache)
    model, data = opened.model, opened.data
    cells = load_device(conf.device, conf.device_set)
    chip = design.chip_config(cells).resolve()
    t = cells.inference_time(conf.t_inference)
    calib = opened.calibration(conf.seed)
    report = chip_report(model, chip, calibration=calib)
    tune, held = validation_halves(data.val, conf.samples, conf.seed)
    val = opened.batches(tune, len(tune), conf.seed)
    images = opened.batches(held, len(held), conf.seed) if phase == "search" else \
        opened.batches(data.test, conf.samples, conf.seed)
    first = SEARCH_CHIPS if phase == "search" else REPORT_CHIPS
    digital = evaluate(model, images).accuracy[-1]
    bn = torch.cat(opened.calibration(conf.seed, design.bn_recalibrate)) if design.bn_recalibrate else None
    path_energy = [p["energy_pJ"] for p in report["paths"]]
    path_latency = [p["latency_ns"] for p in report["paths"]]
    multi = len(model.heads) > 1
    per_chip = []
    for c in range(conf.chips):
        deployed = deploy_on(model, chip, first + c, bn_images=bn, t_inference=t, calibration=calib)
        if multi:
            d = dynamic_inference(deployed, val, images, exit_path_macs(model), path_energy,
                                  report["exits"][-1]["macs"], conf.seed, timed=False, cost=path_energy)
            shares = d["exit_shares"]
            per_chip.append(dict(chip=first + c, accuracy=d["accuracy"], energy_pJ=d["mean_energy_pJ"],
                                 latency_ns=float(np.dot(shares, path_latency)), exit_shares=shares))
        else:
            per_chip.append(dict(chip=first + c, accuracy=evaluate(deployed, images).accuracy[-1],
                                 energy_pJ=path_energy[-1], latency_ns=path_latency[-1], exit_shares=[1.0]))
    return {**summarize_chips(per_chip, digital, report["chip"]["area_mm2"], conf.yield_margin),
            "chance_accuracy": 100.0 / data.num_classes}


def validation_halves(split: Split, n: int, seed: int) -> tuple[Split, Split]:
    """Two disjoint seeded selections of ``n`` validation images each (fewer when the split is small): the first
    tunes early-exit thresholds, the second scores the search."""
    both = take_subset(split, 2 * n, seed)
    half = len(both) // 2
    return Split(both.images[:half], both.labels[:half]), Split(both.images[half:], both.labels[half:])


def summarize_chips(per_chip: list[dict[str, Any]], digital: float, area_mm2: float, margin: float) -> dict[str, Any]:
    """The objectives of one design from its chips: mean, 10th-percentile (linear interpolation) and yield (chips at
    ≥ digital − margin) of accuracy; mean energy and latency; the area."""
    acc = np.array([c["accuracy"] for c in per_chip], dtype=np.float64)
    return dict(accuracy_mean=float(acc.mean()), accuracy_p10=float(np.percentile(acc, 10)),
                accuracy_std=float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
                **{"yield": float((acc >= digital - margin).mean())}, digital_accuracy=float(digital),
                energy_pJ=float(np.mean([c["energy_pJ"] for c in per_chip])),
                latency_ns=float(np.mean([c["latency_ns"] for c in per_chip])), area_mm2=float(area_mm2),
                chips=per_chip)


# --- the search: an Optuna study of designs and one of trainings, both in the run directory's SQLite file --------
RESUMABLE = ("trials", "confirm_seeds", "confirm_points", "workers", "ray_address", "torch_device")


@dataclass
class Search:
    """The search's state: the designs study (multi-objective), the trainings study (one trial per trained model,
    its validation curve), and every trained model by its key."""

    designs: Any
    trainings: Any
    trained: dict[tuple, dict[str, Any]]
    storage: Any = None

    def measured(self) -> list[Any]:
        """The designs trials that count towards ``trials``: measured, or pruned with their training."""
        from optuna.trial import TrialState

        return [t for t in self.designs.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
                if t.user_attrs.get("outcome") in ("measured", "training pruned")]

    def curves(self) -> dict[tuple, list[dict[str, Any]]]:
        """The training curves so far by peer group (``peers``): the pruner's evidence."""
        out: dict[tuple, list[dict[str, Any]]] = {}
        for key, r in self.trained.items():
            if r["curve"]:
                out.setdefault(peers(key), []).append({k: r[k] for k in ("state", "curve", "system_attrs")})
        return out

    def record_training(self, design: Design, result: dict[str, Any]) -> None:
        """Add a finished (or pruned) training to the trainings study and to ``trained``."""

        from optuna.trial import TrialState, create_trial

        curve = {int(k): float(v) for k, v in result["curve"].items()}
        complete = result["state"] == "COMPLETE"
        self.trainings.add_trial(create_trial(
            state=TrialState.COMPLETE if complete else TrialState.PRUNED,
            value=result["best_val"] if complete else None, intermediate_values=curve,
            system_attrs=result["system_attrs"],
            user_attrs={"key": list(design.training), "method": design.method,
                        "name": design.training_name(), "checkpoint": result["checkpoint"],
                        "reused": not curve}))
        self.trained[design.training] = {**result, "curve": curve, "method": design.method}


def _sampler(conf: CodesignConfig, trials_before: int = 0) -> Any:
    """The search's sampler; a resumed search seeds it past the trials it already holds, so it does not propose
    its first designs again."""
    import optuna

    seed = conf.seed + 1_000_003 * trials_before
    if conf.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)
    return optuna.samplers.NSGAIISampler(population_size=conf.population, seed=seed)


DAMAGED_DB_FIX = "the search cannot continue from it: start it again with --overwrite, or choose another --out"


def _check_database(path: Path) -> None:
    """An existing study.db must read back as an SQLite database (whole: ``PRAGMA quick_check``), else one line
    naming it (a ``DamagedFileError``), not the database driver's traceback. Opened read-write, as Optuna opens it,
    so a journal a killed process left is rolled back, not taken for damage."""
    import sqlite3

    if not path.is_file():
        return
    try:
        with contextlib.closing(sqlite3.connect(path)) as db:
            result = [row[0] for row in db.execute("PRAGMA quick_check")]
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as exc:
        raise DamagedFileError(path, f"is not a readable SQLite database ({exc})", DAMAGED_DB_FIX) from None
    if tables and "studies" not in tables:  # another program's database: never written into
        raise DamagedFileError(path, f"is an SQLite database without Optuna's tables (it holds "
                                     f"{', '.join(sorted(tables)[:5])})", DAMAGED_DB_FIX)
    if result != ["ok"]:
        raise DamagedFileError(path, f"is a damaged SQLite database ({'; '.join(map(str, result))[:120]})",
                               DAMAGED_DB_FIX)


def _storage(out: Path) -> Any:
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = out / "study.db"
    _check_database(path)
    try:
        storage = optuna.storages.RDBStorage(f"sqlite:///{path.resolve()}")
        storage.get_all_studies()  # reads its tables now: a database of something else fails here, in one line
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise DamagedFileError(path, f"is not an Optuna study database ({reason})", DAMAGED_DB_FIX) from None
    return storage


def check_resume(out: Path, conf: CodesignConfig) -> None:
    """Refuse to resume a search with other settings than it started with (only ``RESUMABLE`` ones may change),
    or where ``out`` holds no search (a study.db with its designs) at all, before anything in ``out`` is written."""

    import optuna

    storage = _storage(out) if (out / "study.db").is_file() else None
    if storage is None or "designs" not in [s.study_name for s in optuna.get_all_study_summaries(storage)]:
        # as train.py --resume without a last.pt: nothing to continue, and a new search is not what was asked
        how = "with --overwrite instead of --resume" if read_marker(out) is not None else "without --resume"
        raise ValueError(f"--resume: {out} holds no search to continue (no {out / 'study.db'} with one); start a new "
                         f"search there {how}, or give --out the folder of the search to continue")
    designs = optuna.load_study(study_name="designs", storage=storage)
    before = designs.user_attrs.get("settings", {})  # Optuna keeps user attributes as JSON: lists, not tuples
    now = {k: list(v) if isinstance(v, tuple) else v for k, v in conf.settings().items() if k not in RESUMABLE}
    changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    if changed:
        raise ValueError(f"--resume: the search in {out} was started with other {', '.join(changed)}; resume with "
                         f"its settings (--config {out / 'config.toml'}), changing only {', '.join(RESUMABLE)}")


def open_search(out: Path, conf: CodesignConfig, resume: bool) -> Search:
    """The run's SQLite study (created, or loaded to resume: a trial a killed process left running is failed and
    proposed again first, so the design it held is measured once)."""

    import optuna
    from optuna.trial import TrialState

    storage = _storage(out)
    exists = "designs" in [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if exists and not resume:
        raise FileExistsError(f"{out / 'study.db'} holds a search; continue it with --resume, or choose another --out")
    before = len(optuna.load_study(study_name="designs", storage=storage).trials) if exists else 0
    designs = optuna.create_study(study_name="designs", storage=storage, sampler=_sampler(conf, before),
                                  load_if_exists=True, directions=[OBJECTIVES[o][0] for o in conf.objectives])
    trainings = optuna.create_study(study_name="trainings", storage=storage, direction="maximize", load_if_exists=True)
    if exists:
        check_resume(out, conf)
    else:
        designs.set_user_attr("settings", {k: v for k, v in conf.settings().items() if k not in RESUMABLE})
    for study in (designs, *([_grid_study(storage, conf)] if conf.grid else [])):
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(t.number, state=TrialState.FAIL)
            study.enqueue_trial(t.params)
    trained = {}
    for t in trainings.get_trials(deepcopy=False):
        key = tuple(t.user_attrs["key"])
        trained[key] = {"state": t.state.name, "checkpoint": t.user_attrs["checkpoint"], "method": t.user_attrs["method"],
                        "curve": dict(t.intermediate_values), "system_attrs": dict(t.system_attrs),
                        "best_val": t.value}
    return Search(designs, trainings, trained, storage)


def _propose(search: Search, conf: CodesignConfig, room: int, log: Callable[[str], None], prune: bool = True
             ) -> tuple[list[tuple[Any, Design]], bool]:
    """Up to ``room`` new trials, each a new design whose model exists or fits under the training cap (the distinct
    models this study's trials used, the reference's included once a trial uses it). Without measuring: a design
    already measured is told its values again (``repeat``), one whose model was pruned is pruned with it (unless
    ``prune`` is off: then the model is finished), one over the cap is failed (samplers ignore failed trials).
    None of these counts towards ``trials``. Also whether ``REJECTIONS`` such proposals in a row stopped it."""
    from optuna.trial import TrialState

    done = {design_of(t.params, conf): t for t in search.measured() if t.state == TrialState.COMPLETE}
    used = {design_of(t.params, conf).training for t in search.measured()}
    batch: list[tuple[Any, Design]] = []
    rejected = 0
    while len(batch) < room and len(search.measured()) + len(batch) < conf.trials:
        trial = search.designs.ask()
        design = suggest(trial, conf)
        known = search.trained.get(design.training)
        mine = used | {d.training for _, d in batch}
        if design in done or any(d == design for _, d in batch):
            earlier = done.get(design)
            trial.set_user_attr("outcome", "repeat")
            if earlier is not None:
                search.designs.tell(trial, earlier.values)
            else:
                search.designs.tell(trial, state=TrialState.FAIL)
        elif prune and known is not None and known["state"] == "PRUNED":
            trial.set_user_attr("outcome", "training pruned")
            search.designs.tell(trial, state=TrialState.PRUNED)
            return batch, False  # counts towards trials: the caller re-checks
        elif design.training not in mine and len(mine) >= conf.trainings:
            trial.set_user_attr("outcome", "over the training cap")
            search.designs.tell(trial, state=TrialState.FAIL)
        else:
            batch.append((trial, design))
            rejected = 0
            continue
        rejected += 1
        if rejected >= REJECTIONS:
            log(f"[codesign] {REJECTIONS} proposals in a row were repeats or needed a model beyond --trainings "
                f"{conf.trainings}: the search stops at {len(search.measured()) + len(batch)} trials")
            return batch, True
    return batch, False


def run_trainings(search: Search, context: Context, designs: Sequence[Design], conf: CodesignConfig,
                  log: Callable[[str], None], prune: bool = True) -> None:
    """Train the models ``designs`` need that are not trained yet (each once; in parallel with ``workers``)."""
    todo = list({d.training: d for d in designs if d.training not in search.trained
                 or (not prune and search.trained[d.training]["state"] == "PRUNED")}.values())
    if not todo:
        return
    context.curves = search.curves() if prune and conf.pruner != "none" else {}
    log(f"[codesign] {len(todo)} model(s) to train or find (runs/cache, the zoo): "
        + "; ".join(d.training_name() for d in todo))
    t0 = time.time()
    results = parallel_map(train_task, context, todo, workers=conf.workers, ray_address=conf.ray_address)
    for d, r in zip(todo, results):
        search.record_training(d, r)
        found = "" if r["curve"] else " (found trained)"
        log(f"[codesign]   {d.training_name()}: " + (f"validation {r['best_val']:.2f} %{found}" if r["state"] == "COMPLETE"
                                                       else f"pruned after epoch {max(r['curve'])}"))
    log(f"[codesign]   ({time.time() - t0:.0f} s)")


def measure(search: Search, context: Context, designs: Sequence[Design], conf: CodesignConfig,
            phase: str = "search") -> list[dict[str, Any] | None]:
    """Each design's objectives (None where its model was pruned); ``phase``: see ``measure_task``."""
    ready = [(d, search.trained[d.training]["checkpoint"], phase) for d in designs
             if search.trained[d.training]["state"] == "COMPLETE"]
    found = iter(parallel_map(measure_task, context, ready, workers=conf.workers, ray_address=conf.ray_address))
    return [next(found) if search.trained[d.training]["state"] == "COMPLETE" else None for d in designs]


def search_loop(search: Search, context: Context, conf: CodesignConfig, log: Callable[[str], None],
                label: str = "trial", prune: bool = True) -> None:
    """Propose, train, measure and tell until ``trials`` designs are done (``workers`` designs at a time)."""
    from optuna.trial import TrialState

    while len(search.measured()) < conf.trials:
        room = min(max(1, conf.workers), conf.trials - len(search.measured()))
        batch, stopped = _propose(search, conf, room, log, prune)
        run_trainings(search, context, [d for _, d in batch], conf, log, prune)
        for (trial, design), found in zip(batch, measure(search, context, [d for _, d in batch], conf)):
            if found is None:
                trial.set_user_attr("outcome", "training pruned")
                search.designs.tell(trial, state=TrialState.PRUNED)
                continue
            for k, v in found.items():
                trial.set_user_attr(k, v)
            trial.set_user_attr("outcome", "measured")
            search.designs.tell(trial, [found[OBJECTIVES[o][1]] for o in conf.objectives])
            log(f"[codesign] {label} {trial.number} ({len(search.measured())}/{conf.trials}): {describe(design)} → "
                f"{found['accuracy_mean']:.2f} % on chip (p10 {found['accuracy_p10']:.2f}, yield "
                f"{found['yield']:.0%}), {found['energy_pJ'] / 1e3:.2f} nJ")
        if stopped:
            return


def describe(d: Design) -> str:
    """A design in a few words."""
    chip = ("the device file's chip" if d.rows is None else
            f"{d.rows}-row arrays, {d.adc_bits}-bit ADC, "
            + (f"{d.bits_per_cell} b/cell, " if d.bits_per_cell else "the device's cells, ") + f"{d.ranging} ranging"
            + (f", {d.parallel_rows} rows at once" if d.parallel_rows else "")
            + (f", BN recal {d.bn_recalibrate}" if d.bn_recalibrate else ""))
    return f"{d.training_name()}; {chip}"


# --- today's grid at equal compute: noise_sweep's methods on the default shape × chip_study's periphery grid -----
def grid_config(conf: CodesignConfig) -> CodesignConfig:
    """The grid as a search space of its own: the ``grid`` methods on the default shape (every stage with an exit,
    the method's own heads, hwa at the device's noise) × every chip of rows × ADC bits × bits per cell, at the first
    ranging and without BN recalibration (what chip_study sweeps); no cap (it trains one model per method)."""
    return replace(conf, methods=list(conf.grid), arch=[DEFAULT_ARCH], width=[DEFAULT_WIDTH],
                   stem_stride=[DEFAULT_STEM], exit_stage_sets=[ALL_STAGES],
                   heads=sorted({default_heads(m) for m in conf.grid if method_traits(m)[0]}) or ["byot"],
                   hwa_noise=[1.0], ranging=conf.ranging[:1], bn_recalibrate=[0], parallel_rows=[0],
                   trials=len(grid_designs(conf)), trainings=10 ** 6)


def grid_designs(conf: CodesignConfig) -> list[dict[str, Any]]:
    """Every grid design as a trial's parameters."""
    out = []
    for m in conf.grid:
        multi, hwa = method_traits(m)[0], is_hardware_aware(m)
        for rows in conf.rows:
            for bits in conf.adc_bits:
                for bpc in conf.bits_per_cell:
                    out.append(dict(method=m, arch=DEFAULT_ARCH, width=DEFAULT_WIDTH, stem_stride=DEFAULT_STEM,
                                    **({"exit_stages": ALL_STAGES, "heads": default_heads(m)} if multi else {}),
                                    **({"hwa_noise": 1.0} if hwa else {}), rows=rows, adc_bits=bits,
                                    bits_per_cell=bpc, parallel_rows=0, ranging=conf.ranging[0], bn_recalibrate=0))
    return out


def _grid_study(storage: Any, conf: CodesignConfig) -> Any:
    """The grid's study in the same storage: every grid design enqueued once, measured in order."""
    import optuna

    exists = "grid" in [s.study_name for s in optuna.get_all_study_summaries(storage)]
    study = optuna.create_study(study_name="grid", storage=storage, load_if_exists=True,
                                sampler=optuna.samplers.RandomSampler(seed=conf.seed),
                                directions=[OBJECTIVES[o][0] for o in conf.objectives])
    if not exists:
        for params in grid_designs(conf):
            study.enqueue_trial(params)
    return study


def run_grid(search: Search, context: Context, conf: CodesignConfig, log: Callable[[str], None]) -> Search:
    """Measure every grid design (resuming like the search), with the search's trained models and pruner-free."""
    gconf = grid_config(conf)
    grid = Search(_grid_study(search.storage, conf), search.trainings, search.trained, search.storage)
    if len(grid.measured()) < gconf.trials:
        log(f"[codesign] today's grid at equal compute: {' '.join(conf.grid)} on the default shape × "
            f"{len(conf.rows) * len(conf.adc_bits) * len(conf.bits_per_cell)} chips ({gconf.trials} designs)")
    search_loop(grid, context, gconf, log, label="grid", prune=False)
    return grid


def compare(found: Found, conf: CodesignConfig, trainings: dict[str, int]) -> list[dict[str, Any]]:
    """The search's front against the grid's in on-chip accuracy vs energy (both measured the same way, on the
    search's validation images and chips): the area each front dominates over accuracy above chance and decades of
    energy below 1.1 × the largest measured (hypervolume, in %·decades), the share of each front the other
    dominates, the best accuracy each reaches at no more than the reference's energy; with the distinct models and
    the measurements each spent."""
    searched = [dict(r, log_energy=math.log10(r["energy_pJ"])) for r in found.rows
                if r["outcome"] == "measured" and r["trial"] != "reference"]
    grid = [dict(r, log_energy=math.log10(r["energy_pJ"])) for r in found.grid if r["outcome"] == "measured"]
    if not searched or not grid:
        return []
    objectives = {"accuracy_mean": "max", "log_energy": "min"}
    fronts = {"search": non_dominated(searched, objectives), "grid": non_dominated(grid, objectives)}
    worst = dict(accuracy_mean=found.reference["chance_accuracy"],
                 log_energy=math.log10(1.1 * max(r["energy_pJ"] for r in searched + grid)))
    budget = found.reference["energy_pJ"]
    out = []
    for name, other, rows in (("search", "grid", searched), ("grid", "search", grid)):
        mine = fronts[name]
        cheap = [r["accuracy_mean"] for r in rows if r["energy_pJ"] <= budget]
        out.append(dict(designs=name, measured=len(rows), trainings=trainings[name], front=len(mine),
                        hypervolume=hypervolume_2d(mine, objectives, worst),
                        dominated_by_other=dominated_share(mine, fronts[other], objectives),
                        best_at_reference_energy=max(cheap) if cheap else float("nan")))
    return out


# --- the command: reference, search, confirmation, outputs ------------------------------------------------------
@dataclass
class Found:
    """What a finished search measured: every trial's row, the front, the reference, the chips, the confirmation."""

    rows: list[dict[str, Any]]
    front: list[dict[str, Any]]
    reference: dict[str, Any]
    chips: list[dict[str, Any]]
    confirm: list[dict[str, Any]] = field(default_factory=list)
    confirm_summary: list[dict[str, Any]] = field(default_factory=list)
    importances: list[dict[str, Any]] = field(default_factory=list)
    grid: list[dict[str, Any]] = field(default_factory=list)  # today's grid (``grid``), its front marked
    comparison: list[dict[str, Any]] = field(default_factory=list)


def codesign_run(config: CodesignConfig | None = None, *, out: str | Path | None = None, progress: bool = True,
                 resume: bool = False, log: Callable[[str], None] = print, **settings: Any) -> StudyResult:
    """Run (or, ``resume``, continue) the search; writes trials.csv, front.csv, chips.csv, importances.csv,
    confirm.csv, configs/trial_<n>.toml (one per measured design: ``--config`` reruns it alone), front.png / .svg,
    table.md, study.db, config.toml and the manifest."""
    conf = CodesignConfig.make(config, **settings)
    check_config(conf)
    say = log if progress else (lambda msg: None)
    out = Path(out) if out is not None else Path("runs") / "codesign" / f"{Path(conf.device).stem}_{stamp()}"
    with run_dir_guard(out, resume=resume, kind=CodesignConfig.KIND):
        if resume:
            check_resume(out, conf)  # before config.toml is rewritten: the refusal points at the original
        run_dir, run = start_run(conf, out, out, dict(device=conf.device, objectives=conf.objectives, seed=conf.seed,
                                                      resumed=resume))
        run.own("study.db", "study.db-journal")  # written by optuna's sqlite storage, not through atomic_write
        search = open_search(run_dir, conf, resume)
        context = Context(conf)
        where = runs_on_ray(conf.workers, conf.ray_address)
        say(f"[codesign] {conf.trials} designs on {conf.device} (≤ {conf.trainings} trainings of {conf.train_epochs} "
            f"epochs on {conf.train_subset or 'all'} images; {conf.chips} chips × {conf.samples} images each)"
            + (f" as {where}" if where else ""))
        ref = reference_design(conf)
        run_trainings(search, context, [ref], conf, say, prune=False)
        search_loop(search, context, conf, say)
        reference = measure(search, context, [ref], conf)[0]
        assert reference is not None  # the reference trains unpruned
        found = collect(search, conf, reference)
        if conf.grid:
            grid = run_grid(search, context, conf, say)
            found.grid, grid_chips = grid_rows(grid, conf)
            found.chips += grid_chips
            spent = {name: len({design_of(t.params, conf).training for t in study.measured()})
                     for name, study in (("search", search), ("grid", grid))}
            found.comparison = compare(found, conf, spent)
        if conf.confirm_seeds:
            found.confirm, found.confirm_summary = confirm(search, context, conf, found, say)
        found.importances = importances(search, conf)
        return write(found, conf, run_dir, run, training_records(search))


def trial_rows(search: Search, conf: CodesignConfig, prefix: str = "") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One row per trial that counts (measured, or pruned with its model; labelled ``prefix`` + its number), and
    the chips of the measured ones."""
    rows, chips = [], []
    for t in search.measured():
        outcome, label = t.user_attrs["outcome"], f"{prefix}{t.number}"
        measured = {k: t.user_attrs[k] for k in (*OBJECTIVE_COLUMNS, "accuracy_std", "digital_accuracy", "chips")
                    if k in t.user_attrs} if outcome == "measured" else None
        rows.append(_row(label, design_of(t.params, conf), measured, outcome))
        chips += [dict(trial=label, **c) for c in (measured or {}).get("chips", [])]
    return rows, chips


def grid_rows(grid: Search, conf: CodesignConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The grid's rows (trial "g<number>", its own front marked) and its chips."""
    rows, chips = trial_rows(grid, conf, "g")
    objectives = {"accuracy_mean": "max", "energy_pJ": "min"}
    front = {id(r) for r in non_dominated([r for r in rows if r["outcome"] == "measured"], objectives)}
    for r in rows:
        r["on_front"] = id(r) in front
    return rows, chips


def design_of(params: dict[str, Any], conf: CodesignConfig) -> Design:
    """The design a trial's parameters describe (the inverse of ``suggest``)."""
    return Design(method=params["method"], arch=params["arch"], width=params["width"], stem_stride=params["stem_stride"],
                  exit_stages=params.get("exit_stages"), heads=params.get("heads"), hwa_noise=params.get("hwa_noise"),
                  rows=params["rows"], adc_bits=params["adc_bits"], bits_per_cell=params["bits_per_cell"],
                  parallel_rows=params["parallel_rows"], ranging=params["ranging"],
                  bn_recalibrate=params["bn_recalibrate"], seed=conf.seed)


def _row(label: str, design: Design, measured: dict[str, Any] | None, outcome: str) -> dict[str, Any]:
    values = {k: v for k, v in (measured or {}).items() if k != "chips"}
    return dict(trial=label, outcome=outcome, **{k: v for k, v in asdict(design).items()}, **values)


def collect(search: Search, conf: CodesignConfig, reference: dict[str, Any]) -> Found:
    """The rows of every trial (the reference first), the front over the searched objectives, the chips."""
    ref = reference_design(conf)
    rows = [_row("reference", ref, reference, "measured")]
    chips = [dict(trial="reference", **c) for c in reference["chips"]]
    searched_rows, searched_chips = trial_rows(search, conf)
    rows += searched_rows
    chips += searched_chips
    directions = {OBJECTIVES[o][1]: "max" if OBJECTIVES[o][0] == "maximize" else "min" for o in conf.objectives}
    searched = [r for r in rows if r["outcome"] == "measured" and r["trial"] != "reference"]
    front_ids = {id(r) for r in non_dominated(searched, directions)}
    for r in rows:
        r["on_front"] = id(r) in front_ids
    front = sorted((r for r in rows if r["on_front"]), key=lambda r: r["energy_pJ"])
    return Found(rows, front, rows[0], chips)


OBJECTIVE_COLUMNS = tuple(col for _, col, _ in OBJECTIVES.values())


def confirm(search: Search, context: Context, conf: CodesignConfig, found: Found, log: Callable[[str], None]
            ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The front's ``confirm_points`` most accurate designs and the reference, each retrained from scratch with
    every seed of ``confirm_seeds`` and measured on the same chips and images: per point its accuracy interval over
    seeds, and its difference from the reference paired by seed."""
    best = sorted(found.front, key=lambda r: -r["accuracy_mean"])[:conf.confirm_points]
    best += sorted((r for r in found.grid if r["on_front"]), key=lambda r: -r["accuracy_mean"])[:conf.confirm_points]
    points = [("reference", reference_design(conf))] + [(r["trial"], design_of_row(r, conf)) for r in best]
    log(f"[codesign] confirming {len(points) - 1} front point(s) (the grid's too, with --grid) and the reference with seeds "
        f"{' '.join(map(str, conf.confirm_seeds))} (retrained from scratch)")
    rows = []
    for seed in conf.confirm_seeds:
        designs = [replace(d, seed=seed) for _, d in points]
        run_trainings(search, context, designs, conf, log, prune=False)
        for (label, _), m in zip(points, measure(search, context, designs, conf, phase="report")):
            assert m is not None  # confirmation trains unpruned
            rows.append(dict(point=label, seed=seed, **{k: v for k, v in m.items() if k != "chips"}))
    return rows, confirm_summary(rows, conf.confirm_seeds)


def design_of_row(row: dict[str, Any], conf: CodesignConfig) -> Design:
    return Design(**{f: row[f] for f in Design.__dataclass_fields__})


def confirm_summary(rows: list[dict[str, Any]], seeds: Sequence[int]) -> list[dict[str, Any]]:
    """Per point: accuracy (mean over chips, then an interval over seeds that stays in 0-100), its difference from
    the reference paired by seed (t interval), energy relative to the reference, yield, all over ``seeds``."""
    by = {(r["point"], r["seed"]): r for r in rows}
    out = []
    for point in dict.fromkeys(r["point"] for r in rows):
        acc = [by[(point, s)]["accuracy_mean"] for s in seeds]
        diff = [by[(point, s)]["accuracy_mean"] - by[("reference", s)]["accuracy_mean"] for s in seeds]
        energy = [by[(point, s)]["energy_pJ"] / by[("reference", s)]["energy_pJ"] for s in seeds]
        out.append(dict(point=point, seeds=len(seeds), accuracy=str(bounded_interval(acc)),
                        accuracy_mean=float(np.mean(acc)), vs_reference=str(t_interval(diff)) if point != "reference"
                        else "—", vs_reference_mean=float(np.mean(diff)),
                        energy_vs_reference=float(np.exp(np.mean(np.log(energy)))),  # geometric mean of ratios
                        yield_mean=float(np.mean([by[(point, s)]["yield"] for s in seeds])),
                        p10_mean=float(np.mean([by[(point, s)]["accuracy_p10"] for s in seeds]))))
    return out


MIN_IMPORTANCE_TRIALS = 10  # fewer measured designs give PED-ANOVA no top quantile worth the name


def importances(search: Search, conf: CodesignConfig) -> list[dict[str, Any]]:
    """Optuna's parameter importances (PED-ANOVA) of each varied dimension for each searched objective, as shares of
    their sum, over the measured designs only (repeats left out); none with fewer than ``MIN_IMPORTANCE_TRIALS`` of
    them, or where every importance is zero (Optuna would then report equal shares)."""
    import warnings

    import optuna
    from optuna.trial import TrialState

    measured = [t for t in search.measured() if t.state == TrialState.COMPLETE]
    if len(measured) < MIN_IMPORTANCE_TRIALS:
        return []
    study = optuna.create_study(directions=[OBJECTIVES[o][0] for o in conf.objectives])
    study.add_trials(measured)
    varied = {k for k in SEARCHED if len(set(map(str, getattr(conf, CHOICES.get(k, k))))) > 1}
    out = []
    for i, name in enumerate(conf.objectives):
        sign = -1.0 if OBJECTIVES[name][0] == "maximize" else 1.0  # PED-ANOVA explains low values of its target

        def target(t: Any, i: int = i, sign: float = sign) -> float:
            return sign * float(t.values[i])

        try:
            with warnings.catch_warnings():
                # the sign is handled above; a small search leaves some values with few trials (said in the docs)
                warnings.filterwarnings("ignore", message=r"(PedAnovaImportanceEvaluator computes|Some regimes)")
                found = optuna.importance.get_param_importances(study, target=target, normalize=False)
        except (RuntimeError, ValueError, ZeroDivisionError):
            continue
        total = sum(v for p, v in found.items() if p in varied)
        if not total > 0:  # nothing to tell apart: no table of equal shares
            continue
        out += [dict(objective=name, parameter=p, importance=float(v) / total) for p, v in found.items() if p in varied]
    return out


# the config field holding each searched dimension's choices, where its name differs
CHOICES = {"method": "methods", "exit_stages": "exit_stage_sets"}


def point_config(conf: CodesignConfig, d: Design) -> CodesignConfig:
    """A search of one design (every dimension narrowed to its value, one trial, no confirmation): ``--config``
    with it reruns that design alone, to the same numbers (the same model, chips and images)."""
    assert d.rows is not None and d.adc_bits is not None and d.bits_per_cell is not None and d.ranging is not None, \
        "a searched design names its chip (only the reference keeps the device file's)"
    return replace(conf, methods=[d.method], arch=[d.arch], width=[d.width], stem_stride=[d.stem_stride],
                   exit_stage_sets=[d.exit_stages] if d.exit_stages else conf.exit_stage_sets[:1],
                   heads=[d.heads] if d.heads else conf.heads[:1],
                   hwa_noise=[d.hwa_noise] if d.hwa_noise is not None else conf.hwa_noise[:1],
                   rows=[d.rows], adc_bits=[d.adc_bits], bits_per_cell=[d.bits_per_cell],
                   parallel_rows=[d.parallel_rows], ranging=[d.ranging], bn_recalibrate=[d.bn_recalibrate],
                   trials=1, trainings=1, confirm_seeds=[], grid=[], seed=d.seed)


SEARCHED = ("method", "arch", "width", "stem_stride", "exit_stages", "heads", "hwa_noise", "rows", "adc_bits", "bits_per_cell",
            "parallel_rows", "ranging", "bn_recalibrate")


def front_common(found: Found) -> list[dict[str, Any]]:
    """What the front's designs share: per dimension its most common value there, that value's share on the front
    and among every measured design (a choice that matters is far more common on the front)."""
    measured = [r for r in found.rows if r["outcome"] == "measured" and r["trial"] != "reference"]
    out = []
    for k in SEARCHED:
        on_front = [r[k] for r in found.front]
        if not on_front:
            continue
        value = max(sorted(set(map(str, on_front))), key=lambda v: sum(str(x) == v for x in on_front))
        out.append(dict(dimension=k, value=value, front_share=sum(str(x) == value for x in on_front) / len(on_front),
                        all_share=sum(str(r[k]) == value for r in measured) / len(measured)))
    return out


def training_records(search: Search) -> dict[str, dict[str, Any]]:
    """Each finished training's checkpoint record (sha256, method, shape, budget, seed, selected epoch) by its
    training name, as every evaluation study keeps of the models it measured: a front's design names the exact
    network behind it. A training whose file is gone or unreadable since (a cache cleared before a resume) is recorded
    as such, with the reason, and the search still writes its results."""
    records: dict[str, dict[str, Any]] = {}
    for t in search.trainings.get_trials(deepcopy=False):
        path = t.user_attrs.get("checkpoint")
        if not path:
            continue
        try:
            records[t.user_attrs["name"]] = Checkpoint(path).record()
        except (OSError, CheckpointError) as exc:  # the record is a trace: it never costs the search its results
            records[t.user_attrs["name"]] = {"path": path, "unreadable": str(exc).splitlines()[0]}
    return records


def write(found: Found, conf: CodesignConfig, out: Path, run: Any,
          records: dict[str, dict[str, Any]] | None = None) -> StudyResult:
    """The CSVs, every measured design's config, the figure, table.md and the finished manifest (with ``records``,
    the trainings' checkpoint records, under "checkpoint_records")."""
    write_rows_csv(out / "trials.csv", found.rows)
    write_rows_csv(out / "front.csv", found.front)
    write_rows_csv(out / "chips.csv", [{k: (str(v) if isinstance(v, list) else v) for k, v in c.items()}
                                       for c in found.chips])
    if found.importances:
        write_rows_csv(out / "importances.csv", found.importances)
    if found.grid:
        write_rows_csv(out / "grid.csv", found.grid)
        write_rows_csv(out / "comparison.csv", found.comparison)
    if found.confirm:
        write_rows_csv(out / "confirm.csv", found.confirm)
        write_rows_csv(out / "confirm_summary.csv", found.confirm_summary)
    for r in found.rows:
        if r["outcome"] == "measured" and r["trial"] != "reference":
            point_config(conf, design_of_row(r, conf)).write_to(out / "configs" / f"trial_{int(r['trial']):04d}.toml")
    for r in found.grid:
        if r["outcome"] == "measured":
            point_config(conf, design_of_row(r, conf)).write_to(out / "configs" / f"grid_{int(r['trial'][1:]):04d}.toml")
    plots = plot_front(found, conf, out / "front")
    table = summary_table(found, conf)
    atomic_write_text(out / "table.md", table + "\n")
    run.finish(plots=[p.name for p in plots], trials=len(found.rows) - 1, front=[r["trial"] for r in found.front],
               **({"checkpoint_records": records} if records else {}))
    return StudyResult(out, table, found.rows, plots, {"front": found.front, "reference": found.reference,
                                                       "grid": found.grid, "comparison": found.comparison,
                                                       "confirm": found.confirm_summary,
                                                       "importances": found.importances})


def summary_table(found: Found, conf: CodesignConfig) -> str:
    """The front (with the reference), what its designs share, the importances, the confirmation."""
    ref = found.reference

    def line(r: dict[str, Any]) -> dict[str, Any]:
        return {"trial": r["trial"], "design": describe(design_of_row(r, conf)),
                "on-chip %": f"{r['accuracy_mean']:.2f} ± {r['accuracy_std']:.2f}", "p10 %": r["accuracy_p10"],
                "yield": f"{r['yield']:.0%}", "digital %": r["digital_accuracy"], "nJ": r["energy_pJ"] / 1e3,
                "× ref energy": r["energy_pJ"] / ref["energy_pJ"], "µs": r["latency_ns"] / 1e3, "mm²": r["area_mm2"]}

    measured = sum(r["outcome"] == "measured" for r in found.rows) - 1
    pruned = sum(r["outcome"] == "training pruned" for r in found.rows)
    t = conf.t_inference
    parts = [format_table([line(ref)] + [line(r) for r in found.front], list(line(ref)), title=(
        f"Co-design search on {conf.device}{'' if t is None else f' at t = {t:g} s'}: the front over "
        f"{' and '.join(conf.objectives)} of {measured} measured designs ({pruned} pruned with their training), "
        f"beside the reference (the default model on the main job's chip); mean ± std over {conf.chips} chips "
        f"(seeds {SEARCH_CHIPS}+) on {conf.samples} validation images the early-exit thresholds were not tuned on (the "
        f"search never sees a test image); yield: chips within {conf.yield_margin:g} points of digital; these "
        f"numbers are selected by the search (optimistic): see the confirmation"))]
    measured_rows = [r for r in found.rows if r["outcome"] == "measured" and r["trial"] != "reference"]
    if measured_rows:
        best_yield = sorted(measured_rows, key=lambda r: (-r["yield"], r["energy_pJ"]))[:3]
        parts.append(format_table([line(r) for r in best_yield], list(line(ref)), title=(
            f"The highest yields (chips within {conf.yield_margin:g} points of digital), the least energy first among "
            "equal yields")))
    common = front_common(found)
    if common:
        parts.append(format_table(common, ["dimension", "value", "front_share", "all_share"],
                                  title="What the front's designs share (share of the value on the front vs among all "
                                        "measured designs)"))
    if found.importances:
        parts.append(format_table(found.importances, ["objective", "parameter", "importance"],
                                  title="Optuna parameter importances (PED-ANOVA) per objective, as shares of their "
                                        "sum: which dimensions separate the best designs from the rest (noisy with "
                                        "few designs)"))
    if found.comparison:
        parts.append(format_table(found.comparison, ["designs", "measured", "trainings", "front", "hypervolume",
                                                     "dominated_by_other", "best_at_reference_energy"], title=(
            f"The search against today's grid ({' '.join(conf.grid)} on the default shape × every chip of rows × "
            f"ADC bits × bits per cell) in on-chip accuracy vs energy on the search's images and chips: hypervolume "
            f"in accuracy points × decades of energy, above chance and below 1.1× the largest energy; trainings: "
            f"distinct models used (widths differ in cost); dominated_by_other: the share of this front the other "
            f"front dominates; "
            f"best_at_reference_energy: the most accurate design at ≤ the reference's energy (selected numbers: "
            f"see the confirmation)")))
    if found.confirm_summary:
        parts.append(format_table(found.confirm_summary, ["point", "seeds", "accuracy", "vs_reference",
                                                          "energy_vs_reference", "yield_mean", "p10_mean"], title=(
            f"Confirmation: the front's most accurate designs and the reference retrained from scratch with seeds "
            f"{' '.join(map(str, conf.confirm_seeds))}, measured on {conf.samples} test images and {conf.chips} "
            f"fresh chips (seeds {REPORT_CHIPS}+); accuracy: mean over chips, 95 % interval over seeds (logit "
            f"scale); vs_reference: paired by seed (t interval); energy: geometric mean of the ratios")))
    return "\n\n".join(parts)


def plot_front(found: Found, conf: CodesignConfig, path: Path) -> list[Path]:
    """On-chip accuracy vs energy per inference, every measured design coloured by yield, the front joined, the
    reference starred, confirmed points with their intervals over seeds."""
    measured = [r for r in found.rows if r["outcome"] == "measured" and r["trial"] != "reference"]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    sc = ax.scatter([r["energy_pJ"] / 1e3 for r in measured], [r["accuracy_mean"] for r in measured],
                    c=[r["yield"] for r in measured], cmap="viridis", vmin=0, vmax=1, s=28, edgecolors="none",
                    label="designs")
    front = sorted(found.front, key=lambda r: r["energy_pJ"])
    ax.plot([r["energy_pJ"] / 1e3 for r in front], [r["accuracy_mean"] for r in front], "k--", lw=1,
            label="front (search)")
    grid = [r for r in found.grid if r["outcome"] == "measured"]
    if grid:
        ax.scatter([r["energy_pJ"] / 1e3 for r in grid], [r["accuracy_mean"] for r in grid], marker="x", s=18,
                   color="grey", label="today's grid")
        gfront = sorted((r for r in grid if r["on_front"]), key=lambda r: r["energy_pJ"])
        ax.plot([r["energy_pJ"] / 1e3 for r in gfront], [r["accuracy_mean"] for r in gfront], ":", color="grey", lw=1,
                label="front (grid)")
    ref = found.reference
    ax.scatter([ref["energy_pJ"] / 1e3], [ref["accuracy_mean"]], marker="*", s=160, color="crimson",
               label="reference (default model, main job's chip)")
    by_trial = {r["trial"]: r for r in found.rows}
    for c in found.confirm_summary:
        rows = [r for r in found.confirm if r["point"] == c["point"]]
        e = float(np.mean([r["energy_pJ"] for r in rows])) / 1e3
        ci = bounded_interval([r["accuracy_mean"] for r in rows])
        low, high = (ci.low, ci.high) if not math.isnan(ci.half_width) else (ci.mean, ci.mean)
        ax.errorbar([e], [ci.mean], yerr=[[ci.mean - low], [high - ci.mean]], fmt="s", color="black", ms=4, capsize=3,
                    label="retrained from scratch: test images, fresh chips, 95 % CI over seeds"
                    if c is found.confirm_summary[0] else None)
        if c["point"] in by_trial and c["point"] != "reference":
            ax.annotate(f"#{c['point']}", (e, ci.mean), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("energy per inference on the early-exit path (nJ)")
    ax.set_ylabel(f"on-chip accuracy, mean of {conf.chips} chips (%; the search: validation images)")
    fig.colorbar(sc, ax=ax, label=f"yield (chips within {conf.yield_margin:g} pt of digital)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    ax.set_title(f"Co-design search on {conf.device}", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def report_section(run_dir: str | Path) -> Section:
    """A finished search as a section of reproduce.py's report: its table.md and front figure (refused in one line
    when the folder holds no finished search)."""
    run_dir = Path(run_dir)
    try:
        manifest = read_json(run_dir / "manifest.json", fix="give the folder of a finished codesign run")
    except (OSError, DamagedFileError) as exc:
        raise ValueError(f"--codesign {run_dir}: no readable manifest.json ({exc})") from None
    if manifest.get("kind") != CodesignConfig.KIND or manifest.get("status") != "complete":
        raise ValueError(f"--codesign {run_dir}: not a finished codesign run (kind {manifest.get('kind')!r}, status "
                         f"{manifest.get('status')!r}); give the folder a finished `wxy-hw codesign` wrote")
    figure = run_dir / "front.png"
    return Section(f"Co-design search: {run_dir.name}", (run_dir / "table.md").read_text(),
                   (figure,) if figure.is_file() else ())
