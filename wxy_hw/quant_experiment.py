"""Library side of experiments/quant_sweep.py: per-exit accuracy vs bit widths, PTQ and QAT, digital and on a device."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import torch

from .analysis.plots import plot_metric_by_exit
from .analysis.sweep import human_time
from .checkpoint import load_model, read_checkpoint
from .data import BatchLoader, load_dataset
from .data.base import take_subset
from .evaluate import evaluate
from .hardware.chip import ChipConfig, calibration_inputs, cells_per_weight, exit_energies
from .hardware.engine import check_time, deploy
from .hardware.quant import QuantConfig, quantize_model
from .hardware.spec import load_device
from .noise_experiment import check_checkpoint_dataset, resolve_checkpoints
from .results import RunDirectory, format_table
from .train import write_rows_csv
from .utils import atomic_write_text, resolve_device


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
    chips = [evaluate(deploy(model, spec, seed * 1000 + r, t_inference=t), test).rows() for r in range(realizations)]
    energy = _energy(model, device, keys, calib)
    for i, first in enumerate(chips[0]):
        accs = torch.tensor([c[i]["accuracy"] for c in chips])
        rows.append(dict(keys, setting=spec.name, exit=first["exit"], accuracy_mean=accs.mean().item(),
                         accuracy_std=accs.std().item() if len(accs) > 1 else 0.0,
                         **energy.get(str(first["exit"]), {})))
    return rows


def quant_sweep_run(*, device: str = "reram", methods: Sequence[str] = ("baseline", "self_distillation"),
                    checkpoints: Sequence[str | Path] | None = None, qat_checkpoints: Sequence[str | Path] = (),
                    weight_bits: Sequence[int] = (8, 6, 4, 3, 2), act_bits: Sequence[int | None] = (8,),
                    per_channel: bool = False, realizations: int = 3, samples: int = 1000, calib_batches: int = 4,
                    t_nominal: float | None = None, dataset: str = "fashion_mnist", data_dir: str | Path | None = None,
                    out: str | Path | None = None, seed: int = 0, budget: dict[str, Any] | None = None,
                    torch_device: str = "auto", progress: bool = True, log=print) -> dict[str, Any]:
    """PTQ at every (weight, activation) bit width plus given QAT checkpoints; CSV, plots, table."""
    for b in weight_bits:
        QuantConfig(b, 8)  # validates before any training
    for b in act_bits:
        QuantConfig(8, b)
    for path in qat_checkpoints:  # refuse a wrong QAT checkpoint now, not after the whole PTQ sweep
        payload = read_checkpoint(path)
        check_checkpoint_dataset(path, payload, dataset)
        if not payload["model_config"].get("quant"):
            raise ValueError(f"{path} is not a quantization-aware checkpoint (train it with --method ...+qat)")
    spec = load_device(device)
    t = float(t_nominal if t_nominal is not None else (min(86400.0, spec.noise["max_time_s"]) if spec.has_drift else 1.0))
    check_time(spec, t)
    dev = resolve_device(torch_device)
    paths = resolve_checkpoints(checkpoints, methods, dataset=dataset, data_dir=data_dir, seed=seed,
                                progress=progress, torch_device=torch_device, budget=budget)
    out = Path(out) if out is not None else Path("runs") / "quant_sweep" / f"{spec.name}_{time.strftime('%Y%m%d-%H%M%S')}"
    run = RunDirectory(out, dict(device=spec.summary(), checkpoints={k: str(v) for k, v in paths.items()},
                                 qat_checkpoints=[str(p) for p in qat_checkpoints], weight_bits=list(weight_bits),
                                 act_bits=list(act_bits), per_channel=per_channel, realizations=realizations,
                                 samples=samples, t_nominal=t, seed=seed), kind="quant_sweep")
    rows: list[dict] = []

    def data_for(path: Path):
        payload = read_checkpoint(path)
        info = payload["data"]
        data = load_dataset(info["name"], data_dir, image_size=info["image_size"], channels=info["channels"],
                            seed=payload.get("train_config", {}).get("seed", 0))
        norm = dict(mean=tuple(info["mean"]), std=tuple(info["std"]))
        val = list(BatchLoader(take_subset(data.val, calib_batches * 256, seed), 256, **norm))
        test = list(BatchLoader(take_subset(data.test, samples, seed), 500, **norm))
        calib = calibration_inputs(data.train, norm["mean"], norm["std"], seed)
        return payload, val, test, calib

    for label, path in paths.items():
        _, val, test, calib = data_for(path)
        model = load_model(path, device=dev)
        rows += _evaluate_everywhere(model, test, spec, t, realizations, seed,
                                     dict(method=label, mode="float", weight_bits=32, act_bits=32), device, calib)
        for ab in act_bits:
            for wb in weight_bits:
                if progress:
                    log(f"[quant_sweep] {label}: PTQ w{wb}/a{ab}")
                q = quantize_model(model, QuantConfig(wb, ab, per_channel), calibration=val)
                rows += _evaluate_everywhere(q, test, spec, t, realizations, seed,
                                             dict(method=label, mode="ptq", weight_bits=wb, act_bits=ab or 32),
                                             device, calib)
    for path in qat_checkpoints:
        payload, _, test, calib = data_for(Path(path))
        quant = payload["model_config"]["quant"]  # checked before any work
        label = payload.get("method", "qat").replace("+qat", "")
        label = "baseline" if label == "qat" else label  # qat alone trains the plain network
        rows += _evaluate_everywhere(load_model(path, device=dev), test, spec, t, realizations, seed,
                                     dict(method=label, mode="qat", weight_bits=quant["weight_bits"],
                                          act_bits=quant["act_bits"] or 32), device, calib)
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
