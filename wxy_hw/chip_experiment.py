"""Library side of experiments/chip_study.py: accuracy and energy / area / latency of one model over
chip configurations (array size × ADC bits × bits per cell × device), Pareto fronts per exit, and the
NeuroSim VGG-8 validation."""
from __future__ import annotations

import dataclasses
import itertools
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from .analysis.plots import _colors, _save  # noqa: E402
from .analysis.sweep import human_time  # noqa: E402
from .checkpoint import load_model, read_checkpoint  # noqa: E402
from .data import BatchLoader, load_dataset  # noqa: E402
from .data.base import take_subset  # noqa: E402
from .evaluate import evaluate  # noqa: E402
from .hardware.chip import ENERGY_PARTS, ChipConfig, NeuroSimVGG8, chip_report  # noqa: E402
from .hardware.engine import check_time, deploy  # noqa: E402
from .hardware.spec import load_device  # noqa: E402
from .noise_experiment import resolve_checkpoints  # noqa: E402
from .results import RunDirectory, format_table  # noqa: E402
from .train import write_rows_csv  # noqa: E402
from .utils import atomic_write_text, resolve_device  # noqa: E402

# NeuroSim's published VGG-8 / CIFAR-10 points (22 nm RRAM, 128×128, 4-bit ADC, 8-bit W/A, 1 bit/cell):
# the issue's reference values (parallel rows 32 and 64) and DNN_NeuroSim_V1.4's Data/1.4_Release_test.csv.
NEUROSIM_VGG8 = [
    dict(parallel_rows=32, tops_per_w=11.25, area_mm2=382.0, source="NeuroSim VGG-8 reference (issue 8)"),
    dict(parallel_rows=64, tops_per_w=19.88, area_mm2=None, source="NeuroSim VGG-8 reference (issue 8)"),
    dict(parallel_rows=64, tops_per_w=20.06, area_mm2=83.1, source="DNN_NeuroSim_V1.4 Data/1.4_Release_test.csv"),
    dict(parallel_rows=128, tops_per_w=23.94, area_mm2=84.8, source="DNN_NeuroSim_V1.4 Data/1.4_Release_test.csv"),
]
NEUROSIM_INPUT_TOGGLE = 0.18  # DNN_NeuroSim_V1.4 Param.cpp: measured input-bit activity of VGG-8


def neurosim_validation(device: str = "reram") -> list[dict[str, Any]]:
    """Our chip model on NeuroSim's VGG-8 configuration, beside NeuroSim's published numbers."""
    rows = []
    for ref in NEUROSIM_VGG8:
        cfg = ChipConfig(device=device, rows=128, cols=128, adc_bits=4, dac_bits=1, weight_bits=8, act_bits=8,
                         bits_per_cell=1, parallel_rows=ref["parallel_rows"], differential=False,
                         input_activity=NEUROSIM_INPUT_TOGGLE)
        ours = chip_report(NeuroSimVGG8(), cfg, (3, 32, 32))["chip"]
        rows.append({"parallel rows": ref["parallel_rows"], "reference": ref["source"],
                     "NeuroSim TOPS/W": ref["tops_per_w"], "ours TOPS/W": ours["tops_per_w"],
                     "TOPS/W ratio": ref["tops_per_w"] / ours["tops_per_w"],
                     "NeuroSim mm²": ref["area_mm2"], "ours mm²": ours["area_mm2"],
                     "area ratio": None if ref["area_mm2"] is None else ref["area_mm2"] / ours["area_mm2"],
                     "ours ADC µJ": ours["adc_pJ"] / 1e6, "ours array µJ": ours["array_pJ"] / 1e6,
                     "ours latency µs": ours["latency_ns"] / 1e3, "ours arrays": ours["arrays"]})
    return rows


def pareto_front(points: Sequence[dict[str, Any]], x: str, y: str) -> list[dict[str, Any]]:
    """Points not dominated in (lower ``x``, higher ``y``), sorted by ``x``."""
    front, best = [], -float("inf")
    for p in sorted(points, key=lambda p: (p[x], -p[y])):
        if p[y] > best:
            front.append(p)
            best = p[y]
    return front


def chip_study_run(*, method: str = "self_distillation", checkpoint: str | Path | None = None,
                   devices: Sequence[str] = ("reram", "pcm", "subthreshold_cmos", "digital_int8"),
                   rows: Sequence[int] = (64, 128, 256, 512), adc_bits: Sequence[int] = (3, 4, 6, 8),
                   bits_per_cell: Sequence[int] = (1, 2, 4), weight_bits: int = 8, act_bits: int = 8,
                   cols_per_adc: int = 8, ir_beta_per_row: float = 0.0, chips: int = 2, samples: int = 500,
                   dataset: str = "fashion_mnist", data_dir: str | Path | None = None, out: str | Path | None = None,
                   seed: int = 0, budget: dict[str, Any] | None = None, torch_device: str = "auto",
                   progress: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the study; writes study.csv, front.csv, neurosim_vgg8.csv, table.md, plots and a manifest."""
    if chips < 1 or samples < 1:
        raise ValueError("--chips and --samples must be ≥ 1")
    specs = {d: load_device(d) for d in devices}
    for r, b, c in itertools.product(rows, adc_bits, bits_per_cell):  # refuse bad grids before training
        ChipConfig(rows=r, cols=r, adc_bits=b, bits_per_cell=c, weight_bits=weight_bits, act_bits=act_bits,
                   cols_per_adc=min(cols_per_adc, r))
    t_of = {d: float(min(86400.0, s.noise["max_time_s"]) if s.has_drift else 1.0) for d, s in specs.items()}
    for d, s in specs.items():
        check_time(s, t_of[d])
    dev = resolve_device(torch_device)
    paths = resolve_checkpoints([checkpoint] if checkpoint else None, [method], dataset=dataset, data_dir=data_dir,
                                seed=seed, progress=progress, torch_device=torch_device, budget=budget)
    label, path = next(iter(paths.items()))
    out = Path(out) if out is not None else Path("runs") / "chip_study" / time.strftime("%Y%m%d-%H%M%S")
    run = RunDirectory(out, dict(checkpoint=str(path), devices=list(devices), rows=list(rows), adc_bits=list(adc_bits),
                                 bits_per_cell=list(bits_per_cell), weight_bits=weight_bits, act_bits=act_bits,
                                 cols_per_adc=cols_per_adc, ir_beta_per_row=ir_beta_per_row, chips=chips,
                                 samples=samples, t_inference=t_of, seed=seed), kind="chip_study")
    payload = read_checkpoint(path)
    info = payload["data"]
    data = load_dataset(info["name"], data_dir, image_size=info["image_size"], channels=info["channels"],
                        seed=payload.get("train_config", {}).get("seed", 0))
    test = list(BatchLoader(take_subset(data.test, samples, seed), 250, mean=tuple(info["mean"]), std=tuple(info["std"])))
    model = load_model(path, device=dev)
    digital = evaluate(model, test)
    names = digital.names or [str(i + 1) for i in range(len(digital.accuracy))]
    say = (lambda msg: log(f"[chip_study] {msg}")) if progress else (lambda msg: None)

    rows_out: list[dict[str, Any]] = []
    for d, spec in specs.items():
        is_digital = spec.device["technology"] in ("digital", "ideal")
        grid = [(r, b) for r in rows for b in adc_bits] if not is_digital else [(r, None) for r in rows]
        for r, b in grid:
            cfg0 = ChipConfig(device=d, rows=r, cols=r, adc_bits=b or 8, weight_bits=weight_bits, act_bits=act_bits,
                              cols_per_adc=min(cols_per_adc, r), ir_beta_per_row=ir_beta_per_row)
            if is_digital:
                accs = [digital.accuracy]  # no analog effects: the digital model's accuracy
            else:
                say(f"{d}: {r}×{r} arrays, {b}-bit ADC — {chips} chips × {samples} images")
                accs = [evaluate(deploy(model, spec, 2000 + c, t_inference=t_of[d], overrides=cfg0.spec_overrides()),
                                 test).accuracy for c in range(chips)]
            acc = torch.tensor(accs, dtype=torch.float64)
            for c in (bits_per_cell if not is_digital else [None]):
                cfg = cfg0 if c is None else dataclasses.replace(cfg0, bits_per_cell=c)
                report = chip_report(model, cfg)
                for k, name in enumerate(names):
                    cost = report["exits"][k] if report["exits"] else report["chip"]
                    rows_out.append(dict(device=d, rows=r, adc_bits=b if b else "-", bits_per_cell=c if c else "-",
                                         exit=name, accuracy_mean=float(acc[:, k].mean()),
                                         accuracy_std=float(acc[:, k].std()) if len(acc) > 1 else 0.0,
                                         digital_accuracy=digital.accuracy[k], energy_pJ=cost["energy_pJ"],
                                         area_mm2=report["chip"]["area_mm2"], latency_ns=cost["latency_ns"],
                                         tops_per_w=cost["tops_per_w"], arrays=report["chip"]["arrays"],
                                         **{f"{p}_pJ": cost[f"{p}_pJ"] for p in ENERGY_PARTS}))
    fronts = []
    for name in names:
        pts = [r for r in rows_out if r["exit"] == name]
        for p in pareto_front(pts, "energy_pJ", "accuracy_mean"):
            fronts.append(dict(p))
    validation = neurosim_validation()
    write_rows_csv(out / "study.csv", rows_out)
    write_rows_csv(out / "front.csv", fronts)
    write_rows_csv(out / "neurosim_vgg8.csv", validation)
    plots = _plot_pareto(rows_out, names, "energy_pJ", "energy per inference (nJ)", 1e-3, out / "pareto_energy", label)
    plots += _plot_pareto(rows_out, names, "area_mm2", "chip area (mm²)", 1.0, out / "pareto_area", label)
    plots += _plot_breakdown(fronts, out / "energy_breakdown")
    front_rows = [{"exit": f["exit"], "device": f["device"], "rows×cols": f"{f['rows']}×{f['rows']}",
                   "ADC bits": f["adc_bits"], "bits/cell": f["bits_per_cell"],
                   "accuracy": f"{f['accuracy_mean']:.2f} ± {f['accuracy_std']:.2f}", "nJ": f["energy_pJ"] / 1e3,
                   "mm²": f["area_mm2"], "µs": f["latency_ns"] / 1e3, "TOPS/W": f["tops_per_w"]} for f in fronts]
    times = ", ".join(f"{d} at {human_time(t)}" for d, t in t_of.items() if not specs[d].device["technology"]
                      in ("digital", "ideal"))
    table = format_table(front_rows, list(front_rows[0]), title=(
        f"Pareto front of accuracy vs energy per inference, {label}, per exit ({samples} test images, mean ± std "
        f"over {chips} chips; {times}; {weight_bits}-bit weights, {act_bits}-bit activations)"))
    table += "\n\n" + format_table(validation, list(validation[0]), title=(
        "Validation: NeuroSim's VGG-8 / CIFAR-10 configuration (22 nm, 128×128, 4-bit ADC, 8-bit W/A, 1 bit/cell, "
        f"input-bit activity {NEUROSIM_INPUT_TOGGLE}) in our chip model"))
    atomic_write_text(out / "table.md", table + "\n")
    run.finish(plots=[p.name for p in plots])
    return {"run_dir": str(out), "table": table, "plots": [str(p) for p in plots]}


def _plot_pareto(rows, exits, key: str, xlabel: str, scale: float, path: Path, label: str) -> list[Path]:
    devices = list(dict.fromkeys(r["device"] for r in rows))
    colors = _colors(devices)
    fig, axes = plt.subplots(1, len(exits), figsize=(3.6 * len(exits), 3.5), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], exits):
        pts = [r for r in rows if r["exit"] == name]
        for d in devices:
            mine = [r for r in pts if r["device"] == d]
            ax.scatter([r[key] * scale for r in mine], [r["accuracy_mean"] for r in mine], s=10, color=colors[d],
                       label=d, alpha=0.7)
        front = pareto_front(pts, key, "accuracy_mean")
        ax.plot([r[key] * scale for r in front], [r["accuracy_mean"] for r in front], "k--", lw=1, label="front")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overlap on short decades
        ax.set_title(f"exit {name}", fontsize=9)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{label}: accuracy vs {xlabel.split(' (')[0]} over array size × ADC bits × bits/cell × device",
                 fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _plot_breakdown(fronts, path: Path) -> list[Path]:
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(fronts) + 2), 3.8))
    bottom = [0.0] * len(fronts)
    for part in ENERGY_PARTS:
        vals = [f[f"{part}_pJ"] / 1e3 for f in fronts]
        ax.bar(range(len(fronts)), vals, bottom=bottom, label=part)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xticks(range(len(fronts)))
    ax.set_xticklabels([f"e{f['exit']} {f['device'][:5]}\n{f['rows']} r, {f['adc_bits']} b, {f['bits_per_cell']} c"
                        for f in fronts], fontsize=6, rotation=90)
    ax.set_ylabel("energy per inference (nJ)")
    ax.set_title("Energy breakdown of the Pareto-front configurations")
    ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    return _save(fig, path)
