"""Chip-architecture study (experiments/chip_study.py): accuracy and energy / area / latency of one model over
chip configurations (array size × ADC bits × bits per cell × device), Pareto fronts per exit, and the
NeuroSim VGG-8 validation."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..analysis.sweep import human_time
from ..models.evaluation import evaluate
from ..hardware.chip import ChipConfig
from ..hardware.cost import ENERGY_PARTS, chip_report
from ..hardware.trace import fingerprint, measure_activity
from ..hardware.montecarlo import evaluate_chips
from ..hardware.spec import load_device
from ..parallel import check_parallel, parallel_map, runs_on_ray
from ..output import colors as palette, format_table, log_axis, plt, save_figure, write_rows_csv
from ..utils import atomic_write_text
from .chip_validation import validation_rows
from .config import DatasetSettings
from .spine import open_checkpoint, resolve_checkpoints, stamp, start_run


def pareto_front(points: Sequence[dict[str, Any]], x: str, y: str) -> list[dict[str, Any]]:
    """Points not dominated in (lower ``x``, higher ``y``), sorted by ``x``."""
    front, best = [], -float("inf")
    for p in sorted(points, key=lambda p: (p[x], -p[y])):
        if p[y] > best:
            front.append(p)
            best = p[y]
    return front


def _as_list(v: Any, default: Sequence[Any]) -> list[Any]:
    if v is None:
        return list(default)
    return list(v) if isinstance(v, (list, tuple)) else [v]


@dataclass
class ChipStudyConfig(DatasetSettings):
    """Settings of the chip-architecture study (field names = the CLI's option names); every architecture
    setting is a list, the study sweeps their product (cols = rows unless given)."""

    KIND = "chip_study"
    RENAMED = {"checkpoint": "checkpoints"}

    method: str = "self_distillation"
    checkpoints: list[str] | None = None
    devices: list[str] = field(default_factory=lambda: ["reram", "pcm", "subthreshold_cmos", "digital_int8"])
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
    ir_beta_per_row: float = 0.0
    chips: int = 2
    samples: int = 500
    workers: int = 1                   # > 1: the configurations' chip evaluations as Ray tasks (the same CSVs)
    ray_address: str | None = None     # join a running Ray cluster

    def __post_init__(self) -> None:
        if isinstance(self.checkpoints, (str, Path)):
            self.checkpoints = [self.checkpoints]


def chip_study_run(config: ChipStudyConfig | None = None, *, out: str | Path | None = None, progress: bool = True,
                   log: Callable[[str], None] = print, **settings: Any) -> dict[str, Any]:
    """Run the study; writes study.csv, front.csv, validation.csv, table.md, plots, config.toml and a manifest.

    Every architecture setting takes one value or a list; the study sweeps their product
    (cols = rows unless given). Accuracy: the native engine with each configuration's
    resolved ``Chip`` (the same object the cost model prices), converters calibrated on a fixed, seeded selection of training images;
    cost: ``chip_report`` of the same configuration, input activity measured on those images.
    """
    conf = ChipStudyConfig.make(config, **settings)
    chips, samples, seed, devices = conf.chips, conf.samples, conf.seed, conf.devices
    if chips < 1 or samples < 1:
        raise ValueError("--chips and --samples must be ≥ 1")
    if conf.checkpoints and len(conf.checkpoints) > 1:
        raise ValueError(f"chip_study studies one model; --checkpoints got {len(conf.checkpoints)} files: give one")
    check_parallel(conf.workers, conf.ray_address)
    grid = dict(rows=_as_list(conf.rows, [None]), adc_bits=_as_list(conf.adc_bits, [8]), dac_bits=_as_list(conf.dac_bits, [1]),
                bits_per_cell=_as_list(conf.bits_per_cell, [None]), weight_bits=_as_list(conf.weight_bits, [8]),
                act_bits=_as_list(conf.act_bits, [8]), ranging=_as_list(conf.ranging, ["fixed"]))
    col_list = _as_list(conf.cols, [None])
    specs = {d: load_device(d) for d in devices}
    input_activity, cols_per_adc, ir_beta_per_row = conf.input_activity, conf.cols_per_adc, conf.ir_beta_per_row

    def configs(d: str):
        digital = specs[d].is_digital
        for r, cl, b, db, bpc, wb, ab, rg in itertools.product(grid["rows"], col_list, grid["adc_bits"],
                                                                 grid["dac_bits"], grid["bits_per_cell"],
                                                                 grid["weight_bits"], grid["act_bits"], grid["ranging"]):
            if digital and (b, db, bpc, rg) != (grid["adc_bits"][0], grid["dac_bits"][0], grid["bits_per_cell"][0],
                                                grid["ranging"][0]):
                continue  # a digital chip has no converters or cells: one point per array size and bit width
            cl = cl if cl is not None else r
            yield ChipConfig(device=d, rows=r, cols=cl, adc_bits=b, dac_bits=min(db, ab), weight_bits=wb, act_bits=ab,
                             bits_per_cell=None if digital else bpc, ranging=rg, input_activity=input_activity,
                             cols_per_adc=min(cols_per_adc, cl) if cl else cols_per_adc,
                             ir_beta_per_row=ir_beta_per_row)

    plan = {d: list(configs(d)) for d in devices}
    for d, cfgs in plan.items():  # refuse impossible grids before any training or evaluation
        for cfg in cfgs:
            cfg.resolve()
    t_of = {d: s.inference_time() for d, s in specs.items()}
    paths = resolve_checkpoints(conf.checkpoints, [conf.method], dataset=conf.dataset, data_dir=conf.data_dir, seed=seed,
                                progress=progress, torch_device=conf.torch_device,
                                budget=conf.budget)
    label, path = next(iter(paths.items()))
    out, run = start_run(conf, out, Path("runs") / "chip_study" / stamp(), dict(
        checkpoint=str(path), devices=list(devices), **grid, cols=col_list, input_activity=input_activity,
        cols_per_adc=cols_per_adc, ir_beta_per_row=ir_beta_per_row, chips=chips, samples=samples, t_inference=t_of,
        seed=seed))
    opened = open_checkpoint(path, conf.data_dir, conf.torch_device)
    test = opened.batches(opened.data.test, samples, seed, 250)
    calib = opened.calibration(seed)
    model = opened.model
    digital = evaluate(model, test)
    names = digital.names or [str(i + 1) for i in range(len(digital.accuracy))]
    say = (lambda msg: log(f"[chip_study] {msg}")) if progress else (lambda msg: None)
    activity = {ab: measure_activity(model, calib, ab) for ab in grid["act_bits"]}  # once per input bit width

    # accuracy depends on what the engine sees: array size, converters, input bits, ranging; each
    # distinct analog configuration is one task (in this process, or a Ray task with --workers)
    def accuracy_key(d: str, resolved: ChipConfig) -> tuple:
        return (d, resolved.rows, resolved.cols, resolved.adc_bits, resolved.act_bits, resolved.ranging)

    distinct: dict[tuple, tuple[str, ChipConfig]] = {}
    for d, cfgs in plan.items():
        for cfg in cfgs:
            if not specs[d].is_digital:
                distinct.setdefault(accuracy_key(d, cfg.resolve().config), (d, cfg))
    tasks = list(distinct.items())
    where = runs_on_ray(conf.workers, conf.ray_address)
    parallel = where is not None
    if parallel:
        say(f"{len(tasks)} analog configurations as {where}")
    # chips are batched when the chip allows (no converters); progress is printed here only (Ray tasks stay quiet)
    context = dict(model=model, specs=specs, test=test, calib=calib, t_of=t_of, seeds=[2000 + c for c in range(chips)],
                   say=None if parallel else say, samples=samples)
    results = parallel_map(_configuration_accuracy, context, [task for _, task in tasks], workers=conf.workers,
                           ray_address=conf.ray_address)
    accuracy_cache = {key: torch.tensor(accs, dtype=torch.float64) for (key, _), accs in zip(tasks, results)}

    rows_out: list[dict[str, Any]] = []
    for d, cfgs in plan.items():
        spec = specs[d]
        is_digital = spec.is_digital
        for cfg in cfgs:
            resolved = cfg.resolve().config
            key = accuracy_key(d, resolved)
            if is_digital:
                accuracy_cache[key] = torch.tensor([digital.accuracy], dtype=torch.float64)  # no analog effects
            acc = accuracy_cache[key]
            report = chip_report(model, cfg, activity=activity[resolved.act_bits], calibration=calib)
            for k, name in enumerate(names):
                cost = report["exits"][k]
                rows_out.append(dict(device=d, rows=resolved.rows, cols=resolved.cols,
                                     adc_bits="-" if is_digital else resolved.adc_bits,
                                     dac_bits="-" if is_digital else resolved.dac_bits,
                                     bits_per_cell="-" if is_digital else resolved.bits_per_cell,
                                     weight_bits=resolved.weight_bits, act_bits=resolved.act_bits,
                                     ranging="-" if is_digital else resolved.ranging,
                                     exit=name, accuracy_mean=float(acc[:, k].mean()),
                                     accuracy_std=float(acc[:, k].std()) if len(acc) > 1 else 0.0,
                                     digital_accuracy=digital.accuracy[k], energy_pJ=cost["energy_pJ"],
                                     path_energy_pJ=report["paths"][k]["energy_pJ"],
                                     area_mm2=report["chip"]["area_mm2"], latency_ns=cost["latency_ns"],
                                     tops_per_w=cost["tops_per_w"], arrays=report["chip"]["arrays"],
                                     **{f"{p}_pJ": cost[f"{p}_pJ"] for p in ENERGY_PARTS}))
    fronts = []
    for name in names:
        pts = [r for r in rows_out if r["exit"] == name]
        for p in pareto_front(pts, "energy_pJ", "accuracy_mean"):
            fronts.append(dict(p))
    validation = validation_rows()
    write_rows_csv(out / "study.csv", rows_out)
    write_rows_csv(out / "front.csv", fronts)
    write_rows_csv(out / "validation.csv", validation)
    plots = _plot_pareto(rows_out, names, "energy_pJ", "energy per inference (nJ)", 1e-3, out / "pareto_energy", label)
    plots += _plot_pareto(rows_out, names, "area_mm2", "chip area (mm²)", 1.0, out / "pareto_area", label)
    plots += _plot_breakdown(fronts, out / "energy_breakdown")
    front_rows = [{"exit": f["exit"], "device": f["device"], "rows×cols": f"{f['rows']}×{f['cols']}",
                   "ADC bits": f["adc_bits"], "bits/cell": f["bits_per_cell"], "ranging": f["ranging"],
                   "accuracy": f"{f['accuracy_mean']:.2f} ± {f['accuracy_std']:.2f}", "nJ": f["energy_pJ"] / 1e3,
                   "mm²": f["area_mm2"], "µs": f["latency_ns"] / 1e3, "TOPS/W": f["tops_per_w"]} for f in fronts]
    times = ", ".join(f"{d} at {human_time(t)}" for d, t in t_of.items() if not specs[d].is_digital)
    table = format_table(front_rows, list(front_rows[0]), title=(
        f"Pareto front of accuracy vs energy per inference, {label}, per exit ({samples} test images, mean ± std "
        f"over {chips} chips; {times}; weights {grid['weight_bits']} bits, inputs {grid['act_bits']} bits)"))
    table += "\n\n" + format_table([{k: v for k, v in r.items() if k != "source"} for r in validation],
                                    ["reference", "metric", "reference_value", "model_value", "ratio"],
                                    title="Validation of the cost model (ratio = model / reference; sources in "
                                          "validation.csv)")
    atomic_write_text(out / "table.md", table + "\n")
    run.finish(plots=[p.name for p in plots], calibration_images=fingerprint(calib))
    return {"run_dir": str(out), "table": table, "plots": [str(p) for p in plots]}


def _configuration_accuracy(context: dict[str, Any], task: tuple[str, ChipConfig]) -> list[list[float]]:
    """Accuracy per chip and exit (the ensemble left out) of one analog configuration: one task of the study."""
    d, cfg = task
    seeds = context["seeds"]
    if context["say"]:
        resolved = cfg.resolve().config
        context["say"](f"{d}: {resolved.rows}×{resolved.cols} arrays, {resolved.adc_bits}-bit ADC, {resolved.ranging} "
                       f"ranging — {len(seeds)} chips × {context['samples']} images")
    rows = evaluate_chips(context["model"], cfg.resolve(), context["test"], seeds,
                          t_inference=context["t_of"][d], calibration=context["calib"])
    return [[r["accuracy"] for r in rows if r["chip"] == s and r["exit"] != "ensemble"] for s in seeds]


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
