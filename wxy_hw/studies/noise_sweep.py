"""Noise sweep (experiments/noise_sweep.py): accuracy and loss of every exit on a device vs noise scale and
time since programming, plus the flat-minima curve.

Three stages with typed hand-overs: ``_plan`` (settings checked, the one chip resolved, models found, run
directory started), ``_measure`` (digital accuracy, the chip's energy per exit, the device sweeps, the
flat-minima sweep), ``_write`` (CSVs, figures, table, manifest). ``--seeds`` runs one sweep per seed
(``_seeds_plan`` → ``_seeds_measure`` → ``_seeds_write``).
"""
from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..analysis.plots import plot_flat_minima, plot_metric_by_exit
from ..analysis.stats import nested_interval, paired_test
from ..analysis.sweep import DEFAULT_SCALES, DEFAULT_SIGMAS, DEFAULT_TIMES, flat_minima, human_time, summarize, sweep_device
from ..models.evaluation import evaluate
from ..hardware.aihwkit_backend import rpu_config
from ..hardware.chip import Chip
from ..hardware.cost import exit_energies
from ..hardware.recalibrate import check_bn_recalibrate
from ..hardware.spec import DeviceSpecError
from ..parallel import check_parallel
from ..output import deepest_exit, format_table, write_rows_csv
from ..run_dir import RunDirectory
from ..utils import atomic_write_text
from .config import ChipSettings, DatasetSettings, SettingError, check_chips_per_seed, check_given_checkpoints
from .spine import DEFAULT_SEEDS, Checkpoint, StudyResult, open_checkpoint, resolve_checkpoints, stamp, start_run

Log = Callable[[str], None]


@dataclass
class NoiseSweepConfig(DatasetSettings, ChipSettings):
    """Settings of the noise sweep (field names = the CLI's option names).

    The chip: the device file's converters unless ``adc_bits`` is set (a file without converters is
    simulated with ideal ones and its energy priced at an 8-bit ADC; the table says so).
    """

    KIND = "noise_sweep"
    RENAMED = {"realizations": "chips", "t_nominal": "t_inference", "overrides": "device_set"}
    CHIP_DEFAULTS = {"adc_bits": None, "ranging": None}

    # the users' question: which training survives the device? (hwa models are trained for --device)
    methods: list[str] = field(default_factory=lambda: ["baseline", "self_distillation", "hwa",
                                                        "self_distillation+hwa"])
    checkpoints: list[str] | None = None
    backend: str = "native"
    scales: list[float] = field(default_factory=lambda: list(DEFAULT_SCALES))
    times: list[float] | None = None
    t_inference: float | None = None
    sigmas: list[float] = field(default_factory=lambda: list(DEFAULT_SIGMAS))
    flat: bool = True
    bn_recalibrate: int = 64
    # the BN-recalibrated series on the curves too (each of its chips is deployed alone, not batched: it costs
    # about as much as the rest of the sweep); by default it is measured at the table's nominal point only
    bn_recalibrate_curves: bool = False
    chips: int = 5  # chips per point of the curves
    samples: int = 500  # test images per chip on the curves
    # the headline (nominal) point of the table: more chips on more images than the curves, since the chip-to-chip
    # spread (6-18 points on reram) dominates; None: the curves' chips / samples
    headline_chips: int | None = 25
    headline_samples: int | None = 2000
    digital_samples: int | None = None  # test images of the digital accuracy; None: the whole test set
    workers: int = 1  # > 1: the sweep points as Ray tasks (the same CSVs)
    ray_address: str | None = None  # join a running Ray cluster
    # training seeds of the cached default models: one sweep per seed, intervals over seeds × chips; None: the zoo's
    # (DEFAULT_SEEDS) without checkpoints, one sweep of the given ones; a single seed: one sweep, no interval
    seeds: list[int] | None = None


@dataclass
class NoiseSweepPlan:
    """What the sweep will do, nothing measured yet: the one chip (accuracy deploys it, the energy prices it),
    the times, the checkpoints and the started run directory."""

    conf: NoiseSweepConfig
    chip: Chip
    t_inference: float
    times: list[float]
    paths: dict[str, Checkpoint]
    out: Path
    run: RunDirectory


@dataclass
class SweptModel:
    """One checkpoint opened for the sweep: its model, fixed image selections, digital accuracy rows and
    per-exit energy on the chip."""

    model: torch.nn.Module
    test: list[tuple[torch.Tensor, torch.Tensor]]  # the curves' test images
    headline: list[tuple[torch.Tensor, torch.Tensor]]  # the headline point's test images
    train: list[tuple[torch.Tensor, torch.Tensor]]  # images the model trained on (else of its training split)
    trained_known: bool  # False: the checkpoint does not record its training images (the whole split is used)
    digital: list[dict[str, Any]]
    calibration: list[torch.Tensor]
    bn_images: torch.Tensor | None
    energy: dict[str, float]


@dataclass
class NoiseSweepMeasurements:
    """The sweep's results: raw device rows (method × sweep × value × chip × exit), digital accuracy, energy
    per exit by method (pJ) and the flat-minima summary (empty without --flat)."""

    raw: list[dict[str, Any]]
    digital: list[dict[str, Any]]
    energy: dict[str, dict[str, float]]
    flat: list[dict[str, Any]]
    headline: list[dict[str, Any]]  # the nominal point: chip × exit rows, each with the digital accuracy on its images


def noise_sweep_run(config: NoiseSweepConfig | None = None, *, out: str | Path | None = None, progress: bool = True,
                    log: Log = print, **settings: Any) -> StudyResult:
    """Run the noise sweep and write CSVs, plots, config.toml and a manifest; returns a StudyResult (incl. the table;
    ``details``: ``raw``, the device rows, and ``rows``, their number).

    ``settings``: the fields of NoiseSweepConfig (or pass one). ``bn_recalibrate`` = N > 0 adds a
    "<method> + BN recal" series: every chip re-estimates its BN statistics on N unlabeled training
    images (a fixed, seeded selection), at a cost of N forward passes through the chip.
    """
    conf = NoiseSweepConfig.make(config, **settings)
    if conf.times and not (spec := conf.chip().spec).has_drift:  # accepted (one command for every device), and said
        if progress:
            log(f"[noise_sweep] {spec.name} does not drift: its accuracy is the same at every time, so "
                f"--times {' '.join(f'{t:g}' for t in conf.times)} adds no time axis")
        conf = dataclasses.replace(conf, times=None)
    seeds = default_seeds(conf)
    if len(seeds) == 1:  # one training seed: the plain sweep at that seed (an interval needs two)
        conf = dataclasses.replace(conf, seeds=None, seed=seeds[0])
    elif seeds:
        seeds_plan = _seeds_plan(dataclasses.replace(conf, seeds=seeds), out)
        return _seeds_write(seeds_plan, _seeds_measure(seeds_plan, progress, log))
    plan = _plan(conf, out, progress)
    return _write(plan, _measure(plan, progress, log))


def default_seeds(conf: NoiseSweepConfig) -> list[int]:
    """The training seeds a sweep runs: ``seeds`` when given; else none for given checkpoints (one sweep of them),
    ``seed`` alone when it is not 0, and the zoo's DEFAULT_SEEDS otherwise."""
    if conf.seeds:
        return [int(s) for s in conf.seeds]
    if conf.checkpoints:
        return []
    return [conf.seed] if conf.seed != 0 else list(DEFAULT_SEEDS)


def _check(conf: NoiseSweepConfig) -> tuple[Chip, float, list[float]]:
    """Refuse what the settings, the device model or the backend cannot do now, not after minutes of training:
    the chip, the nominal inference time and the time points of a drifting device."""
    check_parallel(conf.workers, conf.ray_address)
    chip = conf.chip()  # the one chip: accuracy deploys it, the energy column prices it
    spec = chip.spec
    check_bn_recalibrate(conf.bn_recalibrate)
    if conf.chips < 1:
        raise SettingError("chips", f"must be ≥ 1, got {conf.chips}")
    for name in ("samples", "headline_chips", "headline_samples", "digital_samples"):
        value = getattr(conf, name)
        if value is not None and value < 1:
            raise SettingError(name, f"must be ≥ 1, got {value}")
    for name in ("chips", "headline_chips"):
        check_chips_per_seed(name, getattr(conf, name))
    for name, values in (("scales", conf.scales), ("sigmas", conf.sigmas), ("times", conf.times or [])):
        if any(not (math.isfinite(v) and v >= 0) for v in values):
            raise SettingError(name, f"must be finite and ≥ 0, got {list(values)}")
    if conf.t_inference is not None and not (math.isfinite(conf.t_inference) and conf.t_inference >= 0):
        raise SettingError("t_inference", f"must be finite and ≥ 0, got {conf.t_inference}")
    t_nom = spec.inference_time(conf.t_inference, conf.backend)
    if conf.times and spec.has_drift:  # asked for: swept as asked or refused, never clipped or replaced unsaid
        beyond = [t for t in conf.times if t > spec.noise["max_time_s"]]
        if beyond:
            raise SettingError("times", f"{beyond[0]:g} s lies beyond the drift model of {spec.name!r}, which covers up to "
                                        f"{spec.noise['max_time_s']:g} s (noise.max_time_s): give times up to that")
        for t in conf.times:
            try:
                spec.backend_time(conf.backend, t)
            except DeviceSpecError as exc:  # aihwkit's Wan2022 model: three times only
                raise SettingError("times", f"{t:g} s: {exc}") from None
    # the default times: those the device model covers, its last one added (what the table's caption says)
    time_points = spec.times(conf.times or DEFAULT_TIMES, conf.backend) if spec.has_drift else []
    for t in time_points:
        spec.backend_time(conf.backend, t)
    if conf.backend == "aihwkit":
        rpu_config(spec)  # everything else aihwkit must express about this device
    return chip, t_nom, time_points


def _plan(conf: NoiseSweepConfig, out: str | Path | None, progress: bool) -> NoiseSweepPlan:
    """Settings checked, the chip resolved, the checkpoints found (the cached defaults trained when absent) and
    the run directory started."""
    chip, t_nom, time_points = _check(conf)
    spec = chip.spec
    check_given_checkpoints(conf)
    paths = resolve_checkpoints(conf.checkpoints, conf.methods, dataset=conf.dataset, data_dir=conf.data_dir,
                                seed=conf.seed, progress=progress, torch_device=conf.torch_device,
                                budget=conf.budget, hwa_device=conf.device)
    run_dir, run = start_run(conf, out, Path("runs") / "noise_sweep" / f"{spec.name}_{conf.backend}_{stamp()}", dict(
        device=spec.summary(), backend=conf.backend, checkpoints={k: str(v) for k, v in paths.items()},
        scales=list(conf.scales), times=time_points, t_inference=t_nom, sigmas=list(conf.sigmas), chips=conf.chips,
        samples=conf.samples, dataset=conf.dataset, seed=conf.seed, device_set=conf.device_set,
        bn_recalibrate=conf.bn_recalibrate, chip=chip.summary()), checkpoints=paths)
    return NoiseSweepPlan(conf, chip, t_nom, time_points, dict(paths), run_dir, run)


def _open_models(plan: NoiseSweepPlan) -> dict[str, SweptModel]:
    """Every checkpoint opened, with its seeded test / training selections, calibration images and its energy
    per exit on the plan's chip (input activity measured on training images)."""
    conf, seed, samples = plan.conf, plan.conf.seed, plan.conf.samples
    models: dict[str, SweptModel] = {}
    data_cache: dict[tuple, Any] = {}
    for label, path in plan.paths.items():
        opened = open_checkpoint(path, conf.data_dir, conf.torch_device, data_cache)
        test = opened.batches(opened.data.test, samples, seed, 500)
        headline = opened.batches(opened.data.test, conf.headline_samples or samples, seed, 500)
        every = len(opened.data.test) if conf.digital_samples is None else conf.digital_samples
        trained = opened.trained_images()
        train = opened.batches(trained if trained is not None else opened.data.train, samples, seed + 1, 500)
        digital = evaluate(opened.model, opened.batches(opened.data.test, every, seed, 500)).rows(method=label)
        calibration = opened.calibration(seed)
        models[label] = SweptModel(
            model=opened.model, test=test, headline=headline, train=train, trained_known=trained is not None,
            digital=digital, calibration=calibration,
            bn_images=torch.cat(opened.calibration(seed, conf.bn_recalibrate)) if conf.bn_recalibrate else None,
            energy=exit_energies(opened.model, plan.chip, calibration))
    return models


def _measure(plan: NoiseSweepPlan, progress: bool, log: Log) -> NoiseSweepMeasurements:
    """Digital accuracy and energy of every model, the device sweeps on the chip, then the flat-minima sweep."""
    conf = plan.conf
    models = _open_models(plan)
    digital = [row for m in models.values() for row in m.digital]
    raw: list[dict[str, Any]] = []
    for label, m in models.items():
        raw += sweep_device({label: m.model}, plan.chip.spec, m.test, scales=conf.scales, times=plan.times,
                            t_inference=plan.t_inference, chips=conf.chips, seed=conf.seed, backend=conf.backend,
                            bn_images=m.bn_images if conf.bn_recalibrate_curves else None, workers=conf.workers,
                            ray_address=conf.ray_address,
                            **({"calibration": m.calibration} if conf.backend == "native" else {}),
                            progress=(lambda msg: log(f"[noise_sweep] {msg}")) if progress else None)
    headline = _headline(plan, models, progress, log)
    flat: list[dict[str, Any]] = []
    if conf.flat:
        log("[noise_sweep] flat-minima sweep: Gaussian weight noise on the images each model trained on, then on "
            "held-out test images")
        flat_rows = []
        for label, m in models.items():
            if not m.trained_known:
                log(f"[noise_sweep] {label}: its checkpoint does not record which training images it saw; the "
                    "'trained' rows use images of its whole training split")
            for images, batches in (("trained", m.train), ("held out", m.test)):
                flat_rows += [{"images": images, **r} for r in
                              flat_minima({label: m.model}, batches, conf.sigmas, chips=conf.chips, seed=conf.seed)]
        flat = summarize(flat_rows, ("images", "method", "exit", "sigma"))
    return NoiseSweepMeasurements(raw, digital, {label: m.energy for label, m in models.items()}, flat, headline)


def _headline(plan: NoiseSweepPlan, models: dict[str, SweptModel], progress: bool, log: Log) -> list[dict[str, Any]]:
    """The nominal point (scale 1 at t_inference) on ``headline_chips`` chips × ``headline_samples`` images: rows of
    chip × exit, each with the model's digital accuracy on the same images (the retention is paired)."""
    conf = plan.conf
    rows: list[dict[str, Any]] = []
    for label, m in models.items():
        digital = {r["exit"]: r["accuracy"] for r in evaluate(m.model, m.headline).rows()}
        chip_rows = sweep_device({label: m.model}, plan.chip.spec, m.headline, scales=[1.0], times=[],
                                 t_inference=plan.t_inference, chips=conf.headline_chips or conf.chips, seed=conf.seed,
                                 backend=conf.backend, bn_images=m.bn_images, workers=conf.workers,
                                 ray_address=conf.ray_address,
                                 **({"calibration": m.calibration} if conf.backend == "native" else {}),
                                 progress=(lambda msg: log(f"[noise_sweep] headline: {msg}")) if progress else None)
        rows += [{"method": r["method"], "exit": r["exit"], "chip": r["chip"], "accuracy": r["accuracy"],
                  "digital": digital[r["exit"]]} for r in chip_rows]
    return rows


def _write(plan: NoiseSweepPlan, m: NoiseSweepMeasurements) -> StudyResult:
    """CSVs, figures, the nominal table and the finished manifest."""
    out = plan.out
    scale_summary = summarize([r for r in m.raw if r["sweep"] == "scale"], ("method", "exit", "scale"))
    time_summary = summarize([r for r in m.raw if r["sweep"] == "time"], ("method", "exit", "t_inference"))
    write_rows_csv(out / "sweep.csv", m.raw)
    write_rows_csv(out / "summary_scale.csv", scale_summary)
    write_rows_csv(out / "digital.csv", m.digital)
    write_rows_csv(out / "headline.csv", m.headline)
    if time_summary:
        write_rows_csv(out / "summary_time.csv", time_summary)
    if plan.conf.flat:
        write_rows_csv(out / "flat_minima.csv", m.flat)
    write_rows_csv(out / "energy.csv", [{"method": method, "exit": k, "energy_pJ": v}
                                        for method, e in m.energy.items() for k, v in e.items()])
    plots = _plot(plan, scale_summary, time_summary, [r for r in m.flat if r["images"] == "trained"])
    table_rows = _nominal_rows(plan, m)
    table = _table(plan, table_rows)
    atomic_write_text(out / "table.md", table + "\n")
    plan.run.finish(results={"nominal": table_rows}, plots=[str(p.name) for p in plots])
    return StudyResult(run_dir=out, table=table, rows=m.raw, figures=plots,
                       details={"rows": len(m.raw), "raw": m.raw, "headline": m.headline, "digital": m.digital})


def _plot(plan: NoiseSweepPlan, scale_summary: list[dict[str, Any]], time_summary: list[dict[str, Any]],
          flat_summary: list[dict[str, Any]]) -> list[Path]:
    """Accuracy and loss vs noise scale, accuracy vs time (drifting devices), the flat-minima curve."""
    conf, out, name = plan.conf, plan.out, plan.chip.spec.name
    plots = plot_metric_by_exit(scale_summary, "scale", out / "accuracy_vs_noise",
                                title=f"{name} ({conf.backend}), t = {human_time(plan.t_inference)}, {conf.chips} "
                                      f"chips, {conf.samples} test images", xlabel="noise scale (× nominal)")
    plots += plot_metric_by_exit(scale_summary, "scale", out / "loss_vs_noise", metric="loss",
                                 title=f"{name} ({conf.backend}): test loss", xlabel="noise scale (× nominal)")
    if time_summary:
        plots += plot_metric_by_exit(time_summary, "t_inference", out / "accuracy_vs_time", log_x=True,
                                     title=f"{name} ({conf.backend}) at nominal noise: accuracy after programming",
                                     xlabel="time since programming (s)")
    if conf.flat:
        plots += plot_flat_minima(flat_summary, out / "flat_minima", exit_key=deepest_exit(flat_summary),
                                  title="Flat minima: Gaussian noise on the weights (deepest exit, training images)")
    return plots


def _at_nominal(headline: list[dict[str, Any]], method: str, exit_: Any) -> dict[str, float] | None:
    """Mean and std over the headline chips of one series and exit, and the digital accuracy on the same images."""
    accs = [r["accuracy"] for r in headline if r["method"] == method and r["exit"] == exit_]
    if not accs:
        return None
    same = next(r["digital"] for r in headline if r["method"] == method and r["exit"] == exit_)
    mean = sum(accs) / len(accs)
    std = math.sqrt(sum((a - mean) ** 2 for a in accs) / (len(accs) - 1)) if len(accs) > 1 else 0.0
    return {"mean": mean, "std": std, "digital": same}


def _nominal_rows(plan: NoiseSweepPlan, m: NoiseSweepMeasurements) -> list[dict[str, Any]]:
    """Per method and exit: digital accuracy (all its test images), the device at nominal noise (mean ± std over the
    headline chips), the drop from digital on the same images, the energy per inference (pJ) and, with BN
    recalibration, the recalibrated chips."""
    rows = []
    for d in m.digital:
        nominal = _at_nominal(m.headline, d["method"], d["exit"])
        rows.append({"method": d["method"], "exit": d["exit"], "digital": d["accuracy"],
                     f"{plan.chip.spec.name} @ nominal": None if nominal is None else
                     f"{nominal['mean']:.2f} ± {nominal['std']:.2f}",
                     "drop": None if nominal is None else nominal["digital"] - nominal["mean"],
                     "energy_pJ": m.energy[d["method"]].get(str(d["exit"]))})
    if plan.conf.bn_recalibrate:
        for r in rows:
            recal = _at_nominal(m.headline, f"{r['method']} + BN recal", r["exit"])
            r["+ BN recal"] = None if recal is None else f"{recal['mean']:.2f} ± {recal['std']:.2f}"
    return rows


def _images(n: int | None) -> str:
    return "all test images" if n is None else f"{n} test images"


def _table(plan: NoiseSweepPlan, rows: list[dict[str, Any]]) -> str:
    """The nominal table; its title states the chip's converters."""
    conf, name, recal = plan.conf, plan.chip.spec.name, plan.conf.bn_recalibrate
    return format_table([dict(r, nJ=None if r["energy_pJ"] is None else r["energy_pJ"] / 1e3) for r in rows],
                        ["method", "exit", "digital", f"{name} @ nominal", "drop", *(["+ BN recal"] if recal else []),
                         "nJ"],
                        title=f"Test accuracy (%): digital on {_images(conf.digital_samples)} vs {name} at nominal "
                              f"noise ({conf.backend}, t = {human_time(plan.t_inference)}, mean ± std over "
                              f"{conf.headline_chips or conf.chips} chips × {conf.headline_samples or conf.samples} "
                              f"test images; drop: from digital on the same images; the curves use {conf.chips} chips × "
                              f"{conf.samples} images); "
                              f"energy per inference (nJ, wxy_hw.hardware.chip_report; {plan.chip.converters})"
                              + (f"; + BN recal: each chip's BN statistics re-estimated on {recal} "
                                 "unlabeled training images" if recal else ""))


# --seeds: one sweep per training seed, then intervals over seeds × chips

@dataclass
class SeedsPlan:
    """The seeds of a --seeds sweep, the chip (named in the table) and the started run directory."""

    conf: NoiseSweepConfig
    seeds: list[int]
    chip: Chip
    out: Path
    run: RunDirectory


@dataclass
class SeedsMeasurements:
    """Raw device rows of every seed's sweep (with a ``seed`` column) and their chip accuracies grouped by
    (method, exit, sweep, value) → {(seed, chip): accuracy}."""

    raw: list[dict[str, Any]]
    groups: dict[tuple, dict[tuple[int, int], float]]
    headline: dict[tuple[str, str], dict[tuple[int, int], float]]  # (method, exit) → {(seed, chip): accuracy}
    digital: dict[tuple[str, str], dict[tuple[int, int], float]]  # (method, exit) → {(seed, 0): accuracy}


def _seeds_plan(conf: NoiseSweepConfig, out: str | Path | None) -> SeedsPlan:
    """The seeds checked (distinct; cached default models only) and the run directory started."""
    seeds = [int(s) for s in conf.seeds or []]
    if len(set(seeds)) != len(seeds):
        raise SettingError("seeds", f"lists a seed twice: {seeds}")
    if conf.checkpoints:
        raise SettingError("seeds", "sweeps the cached default models of each seed; with checkpoints give one seed")
    chip = _check(conf)[0]  # every setting refused before the folder starts, as each seed's sweep would refuse it
    run_dir, run = start_run(conf, out, Path("runs") / "noise_sweep" / f"{chip.spec.name}_{conf.backend}_seeds_{stamp()}",
                             dict(device=chip.spec.summary(), backend=conf.backend, seeds=seeds))
    return SeedsPlan(conf, seeds, chip, run_dir, run)


def _seeds_measure(plan: SeedsPlan, progress: bool, log: Log) -> SeedsMeasurements:
    """One sweep per training seed into ``<out>/s<seed>``; the chips' accuracies grouped for intervals."""
    raw: list[dict[str, Any]] = []
    headline: dict[tuple[str, str], dict[tuple[int, int], float]] = defaultdict(dict)
    digital: dict[tuple[str, str], dict[tuple[int, int], float]] = defaultdict(dict)
    for s in plan.seeds:
        log(f"[noise_sweep] models of training seed {s} (the zoo's, else trained once)")
        one = noise_sweep_run(dataclasses.replace(plan.conf, seeds=[s], seed=s), out=plan.out / f"s{s}",
                              progress=progress, log=log)
        raw += [dict(r, seed=s) for r in one["raw"]]
        for r in one["headline"]:
            headline[r["method"], str(r["exit"])][(s, int(r["chip"]))] = float(r["accuracy"])
        for r in one["digital"]:
            digital[r["method"], str(r["exit"])][(s, 0)] = float(r["accuracy"])
    groups: dict[tuple, dict[tuple[int, int], float]] = defaultdict(dict)
    for r in raw:
        value = r["scale"] if r["sweep"] == "scale" else r["t_inference"]
        groups[r["method"], str(r["exit"]), r["sweep"], value][(r["seed"], int(r["chip"]))] = float(r["accuracy"])
    return SeedsMeasurements(raw, groups, headline, digital)


def _seeds_write(plan: SeedsPlan, m: SeedsMeasurements) -> StudyResult:
    """Mean ± 95 % interval over seeds × chips (seed the unit, variance split into between-seed and between-chip
    parts) per point, and the deepest exit at nominal noise with paired tests against the baseline."""
    n = len(plan.seeds)
    rows = []
    for (method, exit_, sweep, value), cells in m.groups.items():
        iv = nested_interval(cells, within=(0.0, 100.0))
        rows.append(dict(method=method, exit=exit_, sweep=sweep, value=value, seeds=n, chips=len(cells) // n,
                         accuracy_mean=iv.mean, ci95_low=iv.low, ci95_high=iv.high, seed_var=iv.seed_var,
                         chip_var=iv.chip_var))
    write_rows_csv(plan.out / "sweep.csv", m.raw)
    write_rows_csv(plan.out / "summary_seeds.csv", rows)
    table_rows = _seeds_nominal_rows(plan, m)
    conf, name = plan.conf, plan.chip.spec.name
    columns = ["method", "exit", "digital", f"{name} @ nominal", "seed / chip variance", "− baseline (p)"]
    table = format_table(table_rows, columns, title=(
        f"Deepest-exit test accuracy (%) over seeds {', '.join(map(str, plan.seeds))}: mean [95 % t interval over "
        f"seeds, logit scale]. digital: {_images(conf.digital_samples)} per seed; {name} at nominal noise: "
        f"{conf.headline_chips or conf.chips} chips × {conf.headline_samples or conf.samples} test images per seed "
        "(chips nested in seeds; the interval's width comes from the seeds, the split of the variance between seeds and "
        "chips beside it); − baseline: paired over seeds on the same chips and images (t test)"))
    atomic_write_text(plan.out / "table.md", table + "\n")
    plan.run.finish(results={"nominal": table_rows})
    return StudyResult(run_dir=plan.out, table=table, rows=rows, details={"rows": len(m.raw), "raw": m.raw})


def _seeds_nominal_rows(plan: SeedsPlan, m: SeedsMeasurements) -> list[dict[str, Any]]:
    """Per series: its deepest exit, digital and at the headline point over seeds × chips, and a paired test against
    the baseline."""
    series = dict.fromkeys(method for method, _ in m.headline)
    deepest = {s: max(int(e) for (mm, e) in m.headline if mm == s and e.isdigit()) for s in series}
    nominal = {s: m.headline[s, str(deepest[s])] for s in series}
    rows = []
    for method, cells in nominal.items():
        iv = nested_interval(cells, within=(0.0, 100.0))
        digital = m.digital.get((method.removesuffix(" + BN recal"), str(deepest[method])))
        row = {"method": method, "exit": deepest[method],
               "digital": str(nested_interval(digital, within=(0.0, 100.0))) if digital else "",
               f"{plan.chip.spec.name} @ nominal": str(iv),
               "seed / chip variance": f"{iv.seed_var:.1f} / {iv.chip_var:.1f}"}
        if "baseline" in nominal and method != "baseline":
            test = paired_test(cells, nominal["baseline"])
            p = "n/a: no spread" if math.isnan(test.p_value) else f"{test.p_value:.3f}"
            row["− baseline (p)"] = f"{test.difference} ({p})"
        rows.append(row)
    return rows
