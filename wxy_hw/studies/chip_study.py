"""Chip-architecture study (experiments/chip_study.py): accuracy and energy / area / latency of one model over
chip configurations (array size × ADC bits × bits per cell × device), Pareto fronts per exit, and the
NeuroSim VGG-8 validation.

Three stages: ``plan_chip_study`` (settings checked, every swept chip resolved with ``--device-set`` applied,
the model found), ``measure_chip_study`` (accuracy of each distinct analog chip, ``chip_report`` of every
chip: the same ``Chip`` objects on both sides), ``write_chip_study`` (CSVs, table, plots, manifest)."""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..analysis.pareto import non_dominated
from ..analysis.sweep import human_time
from ..models.evaluation import evaluate
from ..hardware.chip import Chip, ChipConfig
from ..hardware.cost import ENERGY_PARTS, chip_report
from ..hardware.spec import DeviceSpec, load_device
from ..hardware.trace import fingerprint, measure_activity
from ..hardware.montecarlo import evaluate_chips
from ..parallel import check_parallel, parallel_map, runs_on_ray
from ..output import colors as palette, format_table, log_axis, plt, save_figure, write_rows_csv
from ..run_dir import RunDirectory
from ..utils import atomic_write_text
from .chip_validation import validation_rows, validation_table
from .config import DatasetSettings, SettingError, check_given_checkpoints
from .spine import Checkpoint, StudyResult, open_checkpoint, resolve_checkpoints, stamp, start_run


def pareto_front(points: Sequence[dict[str, Any]], x: str, y: str) -> list[dict[str, Any]]:
    """Points not dominated in (lower ``x``, higher ``y``), sorted by ``x`` (``analysis.pareto``'s rule)."""
    return sorted(non_dominated(points, {x: "min", y: "max"}), key=lambda p: (p[x], -p[y]))


def _as_list(v: Any, default: Sequence[Any]) -> list[Any]:
    if v is None:
        return list(default)
    return list(v) if isinstance(v, (list, tuple)) else [v]


@dataclass
class ChipStudyConfig(DatasetSettings):
    """Settings of the chip-architecture study (field names = the CLI's option names); every architecture
    setting is a list, the study sweeps their product (cols = rows unless given). ``device_set`` changes
    values of every swept device's file (``--device-set``): accuracy and energy see them alike."""

    KIND = "chip_study"
    RENAMED = {"checkpoint": "checkpoints"}

    method: str = "self_distillation"
    checkpoints: list[str] | None = None
    devices: list[str] = field(default_factory=lambda: ["reram", "pcm", "subthreshold_cmos", "digital_int8"])
    device_set: dict[str, Any] = field(default_factory=dict)
    rows: list[int] = field(default_factory=lambda: [64, 128, 256, 512])
    cols: list[int] | None = None
    adc_bits: list[int] = field(default_factory=lambda: [3, 4, 6, 8])
    dac_bits: list[int] = field(default_factory=lambda: [1])
    bits_per_cell: list[int] = field(default_factory=lambda: [1, 2, 4])
    weight_bits: list[int] = field(default_factory=lambda: [8])
    act_bits: list[int] = field(default_factory=lambda: [8])
    ranging: list[str] = field(default_factory=lambda: ["fixed"])
    input_activity: float | None = None
    cols_per_adc: int = 8
    adc_type: str = "sar"              # one converter circuit for every swept chip (hardware.chip.ADC_TYPES)
    ir_beta_per_row: float = 0.0
    chips: int = 2
    samples: int = 500
    workers: int = 1                   # > 1: the configurations' chip evaluations as Ray tasks (the same CSVs)
    ray_address: str | None = None     # join a running Ray cluster

    def __post_init__(self) -> None:
        if isinstance(self.checkpoints, (str, Path)):
            self.checkpoints = [self.checkpoints]


@dataclass
class ChipStudyPlan:
    """What the study will measure, nothing measured yet: each device's cells (``--device-set`` applied), every
    swept chip resolved from them, the swept values, and the one model."""

    devices: dict[str, DeviceSpec]     # as named on the command line → its cells
    chips: dict[str, list[Chip]]       # per device, the chips of the sweep (resolved: accuracy and cost share them)
    grid: dict[str, list[Any]]         # the swept settings (cols apart: None = rows)
    cols: list[int | None]
    t_of: dict[str, float]             # per device, the time since programming the accuracy is read at
    label: str
    checkpoint: Checkpoint


@dataclass
class ChipStudyMeasurements:
    """Accuracy and cost of every chip of the plan: one row per chip and exit, the fronts, the validation."""

    names: list[str]                   # the exits
    rows: list[dict[str, Any]]
    fronts: list[dict[str, Any]]
    validation: list[dict[str, Any]]
    calibration: list[torch.Tensor]    # the training images that calibrated converters and measured activity


def chip_study_run(config: ChipStudyConfig | None = None, *, out: str | Path | None = None, progress: bool = True,
                   log: Callable[[str], None] = print, **settings: Any) -> StudyResult:
    """Run the study; writes study.csv, front.csv, validation.csv, table.md, plots, config.toml and a manifest.

    Every architecture setting takes one value or a list; the study sweeps their product
    (cols = rows unless given). Accuracy: the native engine with each configuration's
    resolved ``Chip`` (the same object the cost model prices), converters calibrated on a fixed, seeded selection of
    training images; cost: ``chip_report`` of the same chip, input activity measured on those images.
    ``device_set`` values reach every device, in accuracy and cost alike.
    """
    conf = ChipStudyConfig.make(config, **settings)
    plan = plan_chip_study(conf, progress)
    run_dir, run = _start(conf, plan, out)
    measured = measure_chip_study(plan, conf, progress, log)
    return write_chip_study(plan, measured, conf, run_dir, run)


def _check_settings(conf: ChipStudyConfig) -> None:
    for name in ("chips", "samples"):
        if getattr(conf, name) < 1:
            raise SettingError(name, f"must be ≥ 1, got {getattr(conf, name)}")
    if conf.checkpoints and len(conf.checkpoints) > 1:
        raise SettingError("checkpoints", f"got {len(conf.checkpoints)} files: chip_study studies one model, give one")
    check_parallel(conf.workers, conf.ray_address)


def _sweep_grid(conf: ChipStudyConfig) -> tuple[dict[str, list[Any]], list[int | None]]:
    """The swept values of each setting (a single value as a one-item list), and cols (None: = rows)."""
    grid = dict(rows=_as_list(conf.rows, [None]), adc_bits=_as_list(conf.adc_bits, [8]),
                dac_bits=_as_list(conf.dac_bits, [1]), bits_per_cell=_as_list(conf.bits_per_cell, [None]),
                weight_bits=_as_list(conf.weight_bits, [8]), act_bits=_as_list(conf.act_bits, [8]),
                ranging=_as_list(conf.ranging, ["fixed"]))
    return grid, _as_list(conf.cols, [None])


def _device_chips(cells: DeviceSpec, grid: dict[str, list[Any]], cols: list[int | None],
                  conf: ChipStudyConfig) -> list[Chip]:
    """The resolved chips of one device over the sweep (refusing an impossible grid before anything runs)."""
    digital, g = cells.is_digital, grid
    firsts = (g["adc_bits"][0], g["dac_bits"][0], g["bits_per_cell"][0], g["ranging"][0])
    chips = []
    for r, cl, b, db, bpc, wb, ab, rg in itertools.product(g["rows"], cols, g["adc_bits"], g["dac_bits"],
                                                             g["bits_per_cell"], g["weight_bits"], g["act_bits"],
                                                             g["ranging"]):
        if digital and (b, db, bpc, rg) != firsts:
            continue  # a digital chip has no converters or cells: one point per array size and bit width
        cl = cl if cl is not None else r
        chips.append(ChipConfig(device=cells, rows=r, cols=cl, adc_bits=b, dac_bits=min(db, ab), weight_bits=wb,
                                act_bits=ab, bits_per_cell=None if digital else bpc, ranging=rg,
                                input_activity=conf.input_activity,
                                cols_per_adc=min(conf.cols_per_adc, cl) if cl else conf.cols_per_adc,
                                ir_beta_per_row=conf.ir_beta_per_row, adc_type=conf.adc_type).resolve())
    return chips


def plan_chip_study(conf: ChipStudyConfig, progress: bool = True) -> ChipStudyPlan:
    """Check the settings, resolve every chip of the sweep (``--device-set`` applied to each device), find the
    model (the cached default trained when absent): nothing measured, no run directory yet."""
    _check_settings(conf)
    grid, cols = _sweep_grid(conf)
    devices = {d: load_device(d, conf.device_set) for d in conf.devices}
    chips = {d: _device_chips(cells, grid, cols, conf) for d, cells in devices.items()}
    t_of = {d: cells.inference_time() for d, cells in devices.items()}
    check_given_checkpoints(conf)
    paths = resolve_checkpoints(conf.checkpoints, [conf.method], dataset=conf.dataset, data_dir=conf.data_dir,
                                seed=conf.seed, progress=progress, torch_device=conf.torch_device, budget=conf.budget)
    label, checkpoint = next(iter(paths.items()))
    return ChipStudyPlan(devices, chips, grid, cols, t_of, label, checkpoint)


def _start(conf: ChipStudyConfig, plan: ChipStudyPlan, out: str | Path | None) -> tuple[Path, RunDirectory]:
    return start_run(conf, out, Path("runs") / "chip_study" / stamp(), dict(
        checkpoint=str(plan.checkpoint), devices=list(plan.devices), device_set=dict(conf.device_set), **plan.grid,
        cols=plan.cols, input_activity=conf.input_activity, cols_per_adc=conf.cols_per_adc,
        ir_beta_per_row=conf.ir_beta_per_row, chips=conf.chips, samples=conf.samples, t_inference=plan.t_of,
        seed=conf.seed), checkpoints={plan.label: plan.checkpoint})


def measure_chip_study(plan: ChipStudyPlan, conf: ChipStudyConfig, progress: bool = True,
                       log: Callable[[str], None] = print) -> ChipStudyMeasurements:
    """Accuracy of every distinct analog chip (per chip instance and exit), the digital model's, and
    ``chip_report`` of every chip of the plan; the Pareto fronts per exit and the cost model's validation."""
    opened = open_checkpoint(plan.checkpoint, conf.data_dir, conf.torch_device)
    test = opened.batches(opened.data.test, conf.samples, conf.seed, 250)
    calib = opened.calibration(conf.seed)
    model = opened.model
    digital = evaluate(model, test)
    names = digital.names or [str(i + 1) for i in range(len(digital.accuracy))]
    say = (lambda msg: log(f"[chip_study] {msg}")) if progress else (lambda msg: None)
    activity = {ab: measure_activity(model, calib, ab) for ab in plan.grid["act_bits"]}  # once per input bit width
    accuracy = _analog_accuracy(plan, conf, model, test, calib, say)
    rows: list[dict[str, Any]] = []
    for d, chips in plan.chips.items():
        for chip in chips:
            acc = torch.tensor([digital.accuracy], dtype=torch.float64) if chip.spec.is_digital else \
                accuracy[_accuracy_key(d, chip)]  # a digital chip: no analog effects
            report = chip_report(model, chip, activity=activity[chip.config.act_bits], calibration=calib)
            rows += [_study_row(d, chip, report, k, name, acc, digital.accuracy[k]) for k, name in enumerate(names)]
    return ChipStudyMeasurements(names, rows, _fronts(rows, names), validation_rows(), calib)


def _accuracy_key(d: str, chip: Chip) -> tuple:
    """What the accuracy depends on: the resolved spec the engine deploys (array size, converters, input bits,
    ranging, rows read at once, bit slicing), not what only the cost model prices."""
    return (d, json.dumps(chip.spec.sections, sort_keys=True, default=str))


def _analog_accuracy(plan: ChipStudyPlan, conf: ChipStudyConfig, model: torch.nn.Module, test: list, calib: list,
                     say: Callable[[str], None]) -> dict[tuple, torch.Tensor]:
    """Accuracy (chip instance × exit) of each distinct analog chip: one task each, in this process or as a Ray
    task with ``workers``; chips are batched when the chip allows (no converters)."""
    distinct: dict[tuple, tuple[str, Chip]] = {}
    for d, chips in plan.chips.items():
        for chip in chips:
            if not chip.spec.is_digital:
                distinct.setdefault(_accuracy_key(d, chip), (d, chip))
    tasks = list(distinct.items())
    where = runs_on_ray(conf.workers, conf.ray_address)
    parallel = where is not None
    if parallel:
        say(f"{len(tasks)} analog configurations as {where}")
    # progress is printed here only (Ray tasks stay quiet)
    context = dict(model=model, test=test, calib=calib, t_of=plan.t_of, seeds=[2000 + c for c in range(conf.chips)],
                   say=None if parallel else say, samples=conf.samples)
    results = parallel_map(_configuration_accuracy, context, [task for _, task in tasks], workers=conf.workers,
                           ray_address=conf.ray_address)
    return {key: torch.tensor(accs, dtype=torch.float64) for (key, _), accs in zip(tasks, results)}


def _configuration_accuracy(context: dict[str, Any], task: tuple[str, Chip]) -> list[list[float]]:
    """Accuracy per chip and exit (the ensemble left out) of one analog configuration: one task of the study."""
    d, chip = task
    seeds = context["seeds"]
    if context["say"]:
        c = chip.config
        context["say"](f"{d}: {c.rows}×{c.cols} arrays, {c.adc_bits}-bit ADC, {c.ranging} "
                       f"ranging — {len(seeds)} chips × {context['samples']} images")
    rows = evaluate_chips(context["model"], chip, context["test"], seeds,
                          t_inference=context["t_of"][d], calibration=context["calib"])
    return [[r["accuracy"] for r in rows if r["chip"] == s and r["exit"] != "ensemble"] for s in seeds]


def _study_row(d: str, chip: Chip, report: dict[str, Any], k: int, name: str, acc: torch.Tensor,
               digital_accuracy: float) -> dict[str, Any]:
    """One row of study.csv: one chip at exit ``k``."""
    c, is_digital, cost = chip.config, chip.spec.is_digital, report["exits"][k]
    return dict(device=d, rows=c.rows, cols=c.cols, adc_bits="-" if is_digital else c.adc_bits,
                dac_bits="-" if is_digital else c.dac_bits, bits_per_cell="-" if is_digital else c.bits_per_cell,
                weight_bits=c.weight_bits, act_bits=c.act_bits, ranging="-" if is_digital else c.ranging,
                exit=name, accuracy_mean=float(acc[:, k].mean()),
                accuracy_std=float(acc[:, k].std()) if len(acc) > 1 else 0.0,
                digital_accuracy=digital_accuracy, energy_pJ=cost["energy_pJ"],
                path_energy_pJ=report["paths"][k]["energy_pJ"], area_mm2=report["chip"]["area_mm2"],
                latency_ns=cost["latency_ns"], tops_per_w=cost["tops_per_w"], arrays=report["chip"]["arrays"],
                **{f"{p}_pJ": cost[f"{p}_pJ"] for p in ENERGY_PARTS})


def _fronts(rows: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """The Pareto front (lower energy, higher accuracy) of each exit, exit by exit."""
    return [dict(p) for name in names
            for p in pareto_front([r for r in rows if r["exit"] == name], "energy_pJ", "accuracy_mean")]


def write_chip_study(plan: ChipStudyPlan, measured: ChipStudyMeasurements, conf: ChipStudyConfig, out: Path,
                     run: RunDirectory) -> StudyResult:
    """study.csv, front.csv, validation.csv, the plots, table.md and the finished manifest."""
    rows, fronts, names = measured.rows, measured.fronts, measured.names
    write_rows_csv(out / "study.csv", rows)
    write_rows_csv(out / "front.csv", fronts)
    write_rows_csv(out / "validation.csv", measured.validation)
    plots = _plot_pareto(rows, names, "energy_pJ", "energy per inference (nJ)", 1e-3, out / "pareto_energy",
                         plan.label)
    plots += _plot_pareto(rows, names, "area_mm2", "chip area (mm²)", 1.0, out / "pareto_area", plan.label)
    plots += _plot_breakdown(fronts, out / "energy_breakdown")
    table = _front_table(plan, fronts, conf) + "\n\n" + validation_table(measured.validation)
    atomic_write_text(out / "table.md", table + "\n")
    run.finish(plots=[p.name for p in plots], calibration_images=fingerprint(measured.calibration))
    return StudyResult(out, table, rows, plots, {"fronts": fronts, "validation": measured.validation})


def _front_table(plan: ChipStudyPlan, fronts: list[dict[str, Any]], conf: ChipStudyConfig) -> str:
    front_rows = [{"exit": f["exit"], "device": f["device"], "rows×cols": f"{f['rows']}×{f['cols']}",
                   "ADC bits": f["adc_bits"], "bits/cell": f["bits_per_cell"], "ranging": f["ranging"],
                   "accuracy": f"{f['accuracy_mean']:.2f} ± {f['accuracy_std']:.2f}", "nJ": f["energy_pJ"] / 1e3,
                   "mm²": f["area_mm2"], "µs": f["latency_ns"] / 1e3, "TOPS/W": f["tops_per_w"]} for f in fronts]
    times = ", ".join(f"{d} at {human_time(t)}" for d, t in plan.t_of.items() if not plan.devices[d].is_digital)
    device_set = f"; device values set: {_words(conf.device_set)}" if conf.device_set else ""
    return format_table(front_rows, list(front_rows[0]), title=(
        f"Pareto front of accuracy vs energy per inference, {plan.label}, per exit ({conf.samples} test images, "
        f"mean ± std over {conf.chips} chips; {times}; weights {plan.grid['weight_bits']} bits, inputs "
        f"{plan.grid['act_bits']} bits{device_set})"))


def _words(values: dict[str, Any]) -> str:
    return ", ".join(f"{k} = {v}" for k, v in values.items())


def _plot_pareto(rows, exits, key: str, xlabel: str, scale: float, path: Path, label: str) -> list[Path]:
    devices = list(dict.fromkeys(r["device"] for r in rows))
    colors = palette(devices)
    fig, axes = plt.subplots(1, len(exits), figsize=(3.6 * len(exits), 3.5), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], exits):
        pts = [r for r in rows if r["exit"] == name]
        for d in devices:
            mine = [r for r in pts if r["device"] == d]
            ax.scatter([r[key] * scale for r in mine], [r["accuracy_mean"] for r in mine], s=10, color=colors[d],
                       label=d, alpha=0.7)
        front = pareto_front(pts, key, "accuracy_mean")
        ax.plot([r[key] * scale for r in front], [r["accuracy_mean"] for r in front], "k--", lw=1, label="front")
        log_axis(ax)  # labels at minor ticks too when the range spans less than a couple of decades
        ax.set_title(f"exit {name}", fontsize=9)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{label}: accuracy vs {xlabel.split(' (')[0]} over array size × ADC bits × bits/cell × device",
                 fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def _plot_breakdown(fronts, path: Path) -> list[Path]:
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(fronts) + 2), 3.8))
    bottom = [0.0] * len(fronts)
    for part in ENERGY_PARTS:
        vals = [f[f"{part}_pJ"] / 1e3 for f in fronts]
        ax.bar(range(len(fronts)), vals, bottom=bottom, label=part)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xticks(range(len(fronts)))
    ax.set_xticklabels([f"e{f['exit']} {f['device']}\n{f['rows']} r, {f['adc_bits']} b, {f['bits_per_cell']} c"
                        for f in fronts], fontsize=6, rotation=90)
    ax.set_ylabel("energy per inference (nJ)")
    ax.set_title("Energy breakdown of the Pareto-front configurations")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, never over them
    fig.tight_layout()
    return save_figure(fig, path)
