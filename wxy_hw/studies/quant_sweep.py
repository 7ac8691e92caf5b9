"""Quantization sweep (experiments/quant_sweep.py): per-exit accuracy vs bit widths, PTQ and QAT, digital
and on a device."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..analysis.plots import plot_metric_by_exit
from ..analysis.sweep import human_time
from ..models.evaluation import evaluate
from ..hardware.chip import ChipConfig
from ..hardware.cost import cells_per_weight, exit_energies
from ..hardware.montecarlo import evaluate_chips
from ..hardware.spec import load_device
from ..models.quant import QuantConfig, quantize_model
from ..output import format_table, write_rows_csv
from ..parallel import check_parallel, parallel_map, runs_on_ray
from ..utils import atomic_write_text
from .config import DatasetSettings
from .spine import (Checkpoint, Opened, check_checkpoint_dataset, open_checkpoint, resolve_checkpoints,
                    stamp, start_run)


def bits(value: Any) -> int | None:
    """A bit width from the command line or a config file: none / float / 32 mean float (no quantization)."""
    if value is None or str(value).lower() in ("none", "float", "32"):
        return None
    return int(value)


@dataclass
class QuantSweepConfig(DatasetSettings):
    """Settings of the quantization sweep (field names = the CLI's option names)."""

    KIND = "quant_sweep"
    RENAMED = {"realizations": "chips", "t_nominal": "t_inference"}

    device: str = "reram"
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


def _energy(model, device: str, keys: dict[str, Any], calib) -> dict[str, dict[str, Any]]:
    """Per exit label: energy per inference and cells per weight of this model on the device's chip.

    Cells per weight follow the model's bit widths and the device's bits per cell (a float
    model is priced as 8-bit weights and inputs, the ChipConfig defaults)."""
    wb, ab = keys["weight_bits"], keys["act_bits"]
    cfg = ChipConfig(device=device, **({} if wb == 32 else {"weight_bits": wb}), **({} if ab == 32 else {"act_bits": ab}))
    cells = cells_per_weight(cfg)
    return {name: {"energy_pJ": e, "cells_per_weight": cells} for name, e in exit_energies(model, cfg, calib).items()}


def _evaluate_everywhere(model, test, spec, t, realizations: int, seed: int, keys: dict[str, Any], device: str,
                         calib) -> list[dict]:
    rows = [dict(keys, setting="digital", exit=r["exit"], accuracy_mean=r["accuracy"], accuracy_std=0.0)
            for r in evaluate(model, test).rows()]
    seeds = [seed * 1000 + r for r in range(realizations)]
    rows_by_chip = evaluate_chips(model, spec, test, seeds, t_inference=t)  # K chips per pass
    chips = [[r for r in rows_by_chip if r["chip"] == s] for s in seeds]
    energy = _energy(model, device, keys, calib)
    for i, first in enumerate(chips[0]):
        accs = torch.tensor([c[i]["accuracy"] for c in chips])
        rows.append(dict(keys, setting=spec.name, exit=first["exit"], accuracy_mean=accs.mean().item(),
                         accuracy_std=accs.std().item() if len(accs) > 1 else 0.0,
                         **energy.get(str(first["exit"]), {})))
    return rows


def _point(context: dict[str, Any], task: tuple[str, str, int, int | None]) -> list[dict]:
    """One point of the sweep: the float model, its PTQ copy at (weight, activation) bits, or a QAT model;
    digital and on the device's chips."""
    key, mode, wb, ab = task
    m = context["models"][key]
    model = m["model"]
    if mode == "ptq":
        if context["log"]:
            context["log"](f"[quant_sweep] {m['label']}: PTQ w{wb}/a{ab}")
        model = quantize_model(model, QuantConfig(wb, ab, context["per_channel"]), calibration=m["val"])
    keys = dict(method=m["label"], mode=mode, weight_bits=wb, act_bits=ab or 32)
    return _evaluate_everywhere(model, m["test"], context["spec"], context["t"], context["realizations"],
                                context["seed"], keys, context["device"], m["calib"])


def quant_sweep_run(config: QuantSweepConfig | None = None, *, out: str | Path | None = None, progress: bool = True,
                    log: Callable[[str], None] = print, **settings: Any) -> dict[str, Any]:
    """PTQ at every (weight, activation) bit width plus given QAT checkpoints; CSV, plots, table, config.toml."""
    conf = QuantSweepConfig.make(config, **settings)
    weight_bits, act_bits, realizations, samples, seed = conf.weight_bits, conf.act_bits, conf.chips, conf.samples, conf.seed
    for b in weight_bits:
        QuantConfig(b, 8)  # validates before any training
    for b in act_bits:
        QuantConfig(8, b)
    check_parallel(conf.workers, conf.ray_address)
    qat = [Checkpoint(p) for p in conf.qat_checkpoints]
    for ckpt in qat:  # refuse a wrong QAT checkpoint now, not after the whole PTQ sweep
        check_checkpoint_dataset(ckpt.path, ckpt.payload, conf.dataset)
        if not ckpt.payload["model_config"].get("quant"):
            raise ValueError(f"{ckpt.path} is not a quantization-aware checkpoint (train it with --method ...+qat)")
    spec = load_device(conf.device)
    t = spec.inference_time(conf.t_inference)
    paths = resolve_checkpoints(conf.checkpoints, conf.methods, dataset=conf.dataset, data_dir=conf.data_dir, seed=seed,
                                progress=progress, torch_device=conf.torch_device,
                                budget=conf.budget)
    out, run = start_run(conf, out, Path("runs") / "quant_sweep" / f"{spec.name}_{stamp()}", dict(
        device=spec.summary(), checkpoints={k: str(v) for k, v in paths.items()},
        qat_checkpoints=[str(p) for p in conf.qat_checkpoints], weight_bits=list(weight_bits), act_bits=list(act_bits),
        per_channel=conf.per_channel, realizations=realizations, samples=samples, t_nominal=t, seed=seed))
    data_cache: dict[tuple, Any] = {}

    def data_for(opened: Opened):
        val = opened.batches(opened.data.val, conf.calib_batches * 256, seed)
        test = opened.batches(opened.data.test, samples, seed, 500)
        return val, test, opened.calibration(seed)

    # every point (model × mode × bit widths) is independent: here in order, or as Ray tasks
    models: dict[str, dict[str, Any]] = {}
    tasks: list[tuple[str, str, int, int | None]] = []
    for label, path in paths.items():
        opened = open_checkpoint(path, conf.data_dir, conf.torch_device, data_cache)
        val, test, calib = data_for(opened)
        models[label] = dict(model=opened.model, val=val, test=test, calib=calib, label=label)
        tasks.append((label, "float", 32, 32))
        tasks += [(label, "ptq", wb, ab) for ab in act_bits for wb in weight_bits]
    for i, ckpt in enumerate(qat):
        opened = open_checkpoint(ckpt, conf.data_dir, conf.torch_device, data_cache)
        _, test, calib = data_for(opened)
        quant = ckpt.payload["model_config"]["quant"]  # checked before any work
        label = ckpt.payload.get("method", "qat").replace("+qat", "")
        label = "baseline" if label == "qat" else label  # qat alone trains the plain network
        models[f"qat#{i}"] = dict(model=opened.model, test=test, calib=calib, label=label)
        tasks.append((f"qat#{i}", "qat", quant["weight_bits"], quant["act_bits"]))
    where = runs_on_ray(conf.workers, conf.ray_address)
    parallel = where is not None
    if parallel:
        log(f"[quant_sweep] {len(tasks)} points as {where}")
    context = dict(models=models, spec=spec, t=t, realizations=realizations, seed=seed, device=conf.device,
                   per_channel=conf.per_channel, log=log if progress and not parallel else None)
    rows: list[dict] = [row for point in parallel_map(_point, context, tasks, workers=conf.workers,
                                                       ray_address=conf.ray_address) for row in point]
    write_rows_csv(out / "quant_sweep.csv", rows)
    plots = []
    for setting in ("digital", spec.name):
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
    table = format_table(table_rows, list(table_rows[0]), title=f"Deepest-exit test accuracy (%) on {samples} images "
                                                                  f"(device: {realizations} chips, mean ± std)")
    atomic_write_text(out / "table.md", table + "\n")
    run.finish(plots=[p.name for p in plots])
    return {"run_dir": str(out), "table": table}
