"""Quantization sweep (experiments/quant_sweep.py): per-exit accuracy vs bit widths, PTQ and QAT, digital
and on a device.

Every (weight bits, activation bits) point has one chip (``QuantSweepConfig.chip``): the device with its
``--device-set`` values, the device file's converters unless ``--adc-bits`` is set, and the point's bit
widths; the accuracy run deploys it and the energy prices it. Three stages with typed hand-overs:
``_plan`` (settings and QAT checkpoints checked, the points and their chips, models found, run directory
started), ``_measure`` (every point digital and on its chip, here or as Ray tasks), ``_write`` (CSV,
figures, table, manifest).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from ..analysis.plots import plot_metric_by_exit
from ..analysis.sweep import human_time
from ..models.evaluation import evaluate
from ..hardware.chip import Chip, ChipConfig
from ..hardware.cost import cells_per_weight, exit_energies
from ..hardware.montecarlo import chip_ids, evaluate_chips
from ..hardware.spec import DeviceSpec, load_device
from ..models.quant import QuantConfig, quantize_model
from ..output import format_table, write_rows_csv
from ..parallel import check_parallel, parallel_map, runs_on_ray
from ..run_dir import RunDirectory
from ..utils import atomic_write_text
from .config import DatasetSettings, check_given_checkpoints
from .spine import (Checkpoint, Opened, StudyResult, check_checkpoint_dataset, open_checkpoint, resolve_checkpoints,
                    stamp, start_run)

FLOAT = 32  # the bit width a float model (or float activations) is listed with
Task = tuple[str, str, int, "int | None"]  # (model key, mode, weight bits, activation bits; None / 32: float)


def bits(value: Any) -> int | None:
    """A bit width from the command line or a config file: none / float / 32 mean float (no quantization)."""
    if value is None or str(value).lower() in ("none", "float", "32"):
        return None
    return int(value)


@dataclass
class QuantSweepConfig(DatasetSettings):
    """Settings of the quantization sweep (field names = the CLI's option names).

    ``weight_bits`` and ``act_bits`` are the sweep (lists); the chip of each point is ``chip(wb, ab)``.
    """

    KIND = "quant_sweep"
    RENAMED = {"realizations": "chips", "t_nominal": "t_inference"}

    device: str = "reram"
    device_set: dict[str, Any] = field(default_factory=dict)  # device file values changed for this run
    adc_bits: int | None = None  # None: the device file's converters (none: ideal in accuracy, energy at 8-bit ADCs)
    methods: list[str] = field(default_factory=lambda: ["baseline", "self_distillation"])
    checkpoints: list[str] | None = None
    qat_checkpoints: list[str] = field(default_factory=list)
    weight_bits: list[int] = field(default_factory=lambda: [8, 6, 4, 3, 2])
    act_bits: list[int | None] = field(default_factory=lambda: [8])
    per_channel: bool = False
    chips: int = 3
    samples: int = 1000
    calib_batches: int = 4
    t_inference: float | None = None
    workers: int = 1                   # > 1: the points (model × bit widths) as Ray tasks (the same CSV)
    ray_address: str | None = None     # join a running Ray cluster

    def __post_init__(self) -> None:
        self.act_bits = [bits(b) for b in self.act_bits]

    def chip(self, weight_bits: int | None = None, act_bits: int | None = None) -> Chip:
        """The chip of one point: the device with ``device_set`` applied, its file's converters unless ``adc_bits``
        is set, and these bit widths (None or 32, a float model or float activations: ChipConfig's 8 bits)."""
        widths: dict[str, Any] = {k: v for k, v in (("weight_bits", weight_bits), ("act_bits", act_bits))
                                  if v not in (None, FLOAT)}
        return ChipConfig(device=load_device(self.device, self.device_set), adc_bits=self.adc_bits, **widths).resolve()


@dataclass
class QuantSweepPlan:
    """What the sweep will do, nothing measured yet: the device's cells, the inference time, the checkpoints, the
    points (model × mode × bit widths, in CSV order) with one chip per (weight bits, activation bits), the run."""

    conf: QuantSweepConfig
    cells: DeviceSpec
    t: float
    paths: dict[str, Checkpoint]
    qat: list[Checkpoint]
    tasks: list[Task]
    chips: dict[tuple[int, int], Chip]
    out: Path
    run: RunDirectory

    @property
    def converters(self) -> str:
        return _converters(self.chips.values())


@dataclass
class QuantSweepMeasurements:
    """One row per point × setting (digital, the device) × exit: accuracy mean ± std over chips and, on the
    device, energy per inference (pJ) and cells per weight of the point's chip."""

    rows: list[dict[str, Any]]


def quant_sweep_run(config: QuantSweepConfig | None = None, *, out: str | Path | None = None, progress: bool = True,
                    log: Callable[[str], None] = print, **settings: Any) -> StudyResult:
    """PTQ at every (weight, activation) bit width plus given QAT checkpoints; CSV, plots, table, config.toml."""
    conf = QuantSweepConfig.make(config, **settings)
    plan = _plan(conf, out, progress)
    return _write(plan, _measure(plan, progress, log))


def _converters(chips: Iterable[Chip]) -> str:
    """The converters of a sweep's chips in words: they share the ADC and ranging; their inputs follow each point's
    activation bits."""
    chip = next(iter(chips))
    c = chip.config
    if chip.spec.is_digital or c.ideal_converters:
        return chip.converters
    return f"{c.adc_bits}-bit ADC, inputs at each point's activation bits (float: 8), {c.ranging} ranging"


def _chip_key(weight_bits: int, act_bits: int | None) -> tuple[int, int]:
    return weight_bits, act_bits or FLOAT


def _check(conf: QuantSweepConfig) -> list[Checkpoint]:
    """Bit widths, parallel settings and QAT checkpoints checked before any training; the QAT checkpoints."""
    for b in conf.weight_bits:
        QuantConfig(b, 8)  # validates before any training
    for ab in conf.act_bits:
        QuantConfig(8, ab)
    check_parallel(conf.workers, conf.ray_address)
    qat = [Checkpoint(p) for p in conf.qat_checkpoints]
    for ckpt in qat:  # refuse a wrong QAT checkpoint now, not after the whole PTQ sweep
        check_checkpoint_dataset(ckpt.path, ckpt.payload, conf.dataset)
        if not ckpt.payload["model_config"].get("quant"):
            raise ValueError(f"{ckpt.path} is not a quantization-aware checkpoint (train it with --method ...+qat)")
    return qat


def _tasks(conf: QuantSweepConfig, labels: list[str], qat: list[Checkpoint]) -> list[Task]:
    """Every point in CSV order: per model the float one and its PTQ copies, then the QAT checkpoints."""
    tasks: list[Task] = []
    for label in labels:
        tasks.append((label, "float", FLOAT, FLOAT))
        tasks += [(label, "ptq", wb, ab) for ab in conf.act_bits for wb in conf.weight_bits]
    for i, ckpt in enumerate(qat):
        quant = ckpt.payload["model_config"]["quant"]  # checked before any work
        tasks.append((f"qat#{i}", "qat", quant["weight_bits"], quant["act_bits"]))
    return tasks


def _plan(conf: QuantSweepConfig, out: str | Path | None, progress: bool) -> QuantSweepPlan:
    """Settings checked, one chip per bit-width pair, the checkpoints found (the cached defaults trained when
    absent) and the run directory started."""
    qat = _check(conf)
    cells = load_device(conf.device, conf.device_set)
    t = cells.inference_time(conf.t_inference)
    pairs = dict.fromkeys(_chip_key(wb, ab) for _, _, wb, ab in _tasks(conf, ["any model"], qat))
    chips = {(wb, ab): conf.chip(wb, ab) for wb, ab in pairs}  # a bad --adc-bits is refused before any training
    check_given_checkpoints(conf)
    paths = resolve_checkpoints(conf.checkpoints, conf.methods, dataset=conf.dataset, data_dir=conf.data_dir,
                                seed=conf.seed, progress=progress, torch_device=conf.torch_device, budget=conf.budget)
    tasks = _tasks(conf, list(paths), qat)
    run_dir, run = start_run(conf, out, Path("runs") / "quant_sweep" / f"{cells.name}_{stamp()}", dict(
        device=cells.summary(), checkpoints={k: str(v) for k, v in paths.items()},
        qat_checkpoints=[str(p) for p in conf.qat_checkpoints], weight_bits=list(conf.weight_bits),
        act_bits=list(conf.act_bits), per_channel=conf.per_channel, chip_count=conf.chips, samples=conf.samples,
        t_inference=t, seed=conf.seed, device_set=conf.device_set, converters=_converters(chips.values()),
        chips={f"w{wb}/a{ab}": chip.summary() for (wb, ab), chip in chips.items()}),
        checkpoints={**paths, **{f"qat#{i + 1}": c for i, c in enumerate(qat)}})
    return QuantSweepPlan(conf, cells, t, dict(paths), qat, tasks, chips, run_dir, run)


def _open_models(plan: QuantSweepPlan) -> dict[str, dict[str, Any]]:
    """Every model of the plan's tasks with its seeded selections: validation batches (PTQ calibration, not for
    QAT models), test batches and the training images that measure input activity."""
    conf, seed = plan.conf, plan.conf.seed
    data_cache: dict[tuple, Any] = {}

    def data_for(opened: Opened):
        val = opened.batches(opened.data.val, conf.calib_batches * 256, seed)
        test = opened.batches(opened.data.test, conf.samples, seed, 500)
        return val, test, opened.calibration(seed)

    models: dict[str, dict[str, Any]] = {}
    for label, path in plan.paths.items():
        opened = open_checkpoint(path, conf.data_dir, conf.torch_device, data_cache)
        val, test, calib = data_for(opened)
        models[label] = dict(model=opened.model, val=val, test=test, calib=calib, label=label)
    for i, ckpt in enumerate(plan.qat):
        opened = open_checkpoint(ckpt, conf.data_dir, conf.torch_device, data_cache)
        _, test, calib = data_for(opened)
        label = ckpt.payload.get("method", "qat").replace("+qat", "")
        label = "baseline" if label == "qat" else label  # qat alone trains the plain network
        models[f"qat#{i}"] = dict(model=opened.model, test=test, calib=calib, label=label)
    return models


def _measure(plan: QuantSweepPlan, progress: bool, log: Callable[[str], None]) -> QuantSweepMeasurements:
    """Every point (model × mode × bit widths) is independent: here in order, or as Ray tasks."""
    conf = plan.conf
    models = _open_models(plan)
    where = runs_on_ray(conf.workers, conf.ray_address)
    parallel = where is not None
    if parallel:
        log(f"[quant_sweep] {len(plan.tasks)} points as {where}")
    context = dict(models=models, chips=plan.chips, t=plan.t, count=conf.chips, seed=conf.seed,
                   per_channel=conf.per_channel, log=log if progress and not parallel else None)
    rows = [row for point in parallel_map(_point, context, plan.tasks, workers=conf.workers,
                                          ray_address=conf.ray_address) for row in point]
    return QuantSweepMeasurements(rows)


def _point(context: dict[str, Any], task: Task) -> list[dict]:
    """One point of the sweep: the float model, its PTQ copy at (weight, activation) bits, or a QAT model;
    digital and on the chips of its bit widths."""
    key, mode, wb, ab = task
    m = context["models"][key]
    model = m["model"]
    if mode == "ptq":
        if context["log"]:
            context["log"](f"[quant_sweep] {m['label']}: PTQ w{wb}/a{ab}")
        model = quantize_model(model, QuantConfig(wb, ab, context["per_channel"]), calibration=m["val"])
    keys = dict(method=m["label"], mode=mode, weight_bits=wb, act_bits=ab or FLOAT)
    return _evaluate_everywhere(model, m["test"], context["chips"][_chip_key(wb, ab)], context["t"],
                                context["count"], context["seed"], keys, m["calib"])


def _evaluate_everywhere(model, test, chip: Chip, t: float, count: int, seed: int, keys: dict[str, Any],
                         calib) -> list[dict]:
    """Digital accuracy per exit, then the mean ± std over ``count`` instances of ``chip`` with the energy
    per inference and cells per weight the cost model prices for the same chip."""
    rows = [dict(keys, setting="digital", exit=r["exit"], accuracy_mean=r["accuracy"], accuracy_std=0.0)
            for r in evaluate(model, test).rows()]
    seeds = chip_ids(seed, count)
    # K chips per pass; fixed-range converters are calibrated on the training images the energy's activity is measured on
    rows_by_chip = evaluate_chips(model, chip, test, seeds, t_inference=t, calibration=calib)
    instances = [[r for r in rows_by_chip if r["chip"] == s] for s in seeds]
    energy = _energy(model, chip, calib)
    for i, first in enumerate(instances[0]):
        accs = torch.tensor([c[i]["accuracy"] for c in instances])
        rows.append(dict(keys, setting=chip.name, exit=first["exit"], accuracy_mean=accs.mean().item(),
                         accuracy_std=accs.std().item() if len(accs) > 1 else 0.0,
                         **energy.get(str(first["exit"]), {})))
    return rows


def _energy(model, chip: Chip, calib) -> dict[str, dict[str, Any]]:
    """Per exit label: energy per inference and cells per weight of this model on the point's chip (whose bit
    widths follow the model's; a float model is priced as 8-bit weights and inputs, the ChipConfig defaults)."""
    cells = cells_per_weight(chip)
    return {name: {"energy_pJ": e, "cells_per_weight": cells} for name, e in exit_energies(model, chip, calib).items()}


def _write(plan: QuantSweepPlan, m: QuantSweepMeasurements) -> StudyResult:
    """quant_sweep.csv, accuracy-vs-bits figures, the deepest-exit table (its title states the converters), manifest."""
    conf, out, rows, t = plan.conf, plan.out, m.rows, plan.t
    write_rows_csv(out / "quant_sweep.csv", rows)
    plots = []
    for setting in ("digital", plan.cells.name):
        summary = [dict(r, method=f"{r['method']} ({r['mode']}, a{r['act_bits']})") for r in rows
                   if r["setting"] == setting and r["mode"] != "float"]
        plots += plot_metric_by_exit(summary, "weight_bits", out / f"accuracy_vs_bits_{setting}",
                                     title=f"{setting}{'' if setting == 'digital' else f', t = {human_time(t)}'}: "
                                           "accuracy vs weight bits", xlabel="weight bits")
    final = [r for r in rows if r["exit"] in ("4",)]
    table_rows = [{"method": r["method"], "mode": r["mode"], "w bits": r["weight_bits"], "a bits": r["act_bits"],
                   "setting": r["setting"], "deepest exit acc": f"{r['accuracy_mean']:.2f} ± {r['accuracy_std']:.2f}",
                   "cells/weight": r.get("cells_per_weight"),
                   "nJ": r["energy_pJ"] / 1e3 if "energy_pJ" in r else None} for r in final]
    table = format_table(table_rows, list(table_rows[0]),
                         title=f"Deepest-exit test accuracy (%) on {conf.samples} images (device: {conf.chips} chips, "
                               f"mean ± std; {plan.converters}); energy per inference (nJ) of each point's chip")
    atomic_write_text(out / "table.md", table + "\n")
    plan.run.finish(plots=[p.name for p in plots])
    return StudyResult(run_dir=out, table=table, rows=rows, figures=plots)
