"""Library side of experiments/noise_sweep.py: cached default checkpoints, the sweeps, tables and plots."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from .analysis.plots import plot_flat_minima, plot_metric_by_exit
from .analysis.sweep import (DEFAULT_SCALES, DEFAULT_SIGMAS, DEFAULT_TIMES, device_times, flat_minima, human_time,
                             summarize, sweep_device)
from .checkpoint import CheckpointError, load_model, read_checkpoint
from .data import BatchLoader, Split, load_dataset
from .data.base import take_subset
from .evaluate import evaluate
from .experiment import continue_flags, train_run
from .methods import method_traits
from .parallel import check_parallel
from .hardware.aihwkit_backend import aihwkit_time, rpu_config
from .hardware.chip import ChipConfig, calibration_inputs, exit_energies
from .hardware.recalibrate import check_bn_recalibrate
from .hardware.engine import check_time
from .hardware.spec import load_device
from .utils import atomic_write_text, resolve_device
from .results import RunDirectory, format_table
from .train import TrainingInterrupted, write_rows_csv

# The default models a first-time user gets: small enough to train on a 2-core CPU in a few minutes.
DEFAULT_BUDGET = dict(arch="resnet18", width=0.25, epochs=4, subset=20000, batch_size=128, lr=0.1)


def cached_checkpoint(method: str, dataset: str = "fashion_mnist", data_dir: str | Path | None = None, seed: int = 0,
                      cache_dir: str | Path = "runs/cache", progress: bool = True, **budget: Any) -> Path:
    """best.pt of ``method`` trained with the default budget; trains it (or resumes) when absent."""
    b = {**DEFAULT_BUDGET, **budget}
    out = Path(cache_dir) / f"{dataset}_{b['arch']}_w{b['width']:g}_e{b['epochs']}_n{b['subset']}_s{seed}" / method
    manifest = out / "manifest.json"
    if (out / "best.pt").exists() and manifest.exists() and json.loads(manifest.read_text()).get("status") == "complete":
        return out / "best.pt"
    print(f"[wxy_hw] training the default {method} model on {dataset} "
          f"({b['arch']} width {b['width']:g}, {b['subset']} images, {b['epochs']} epochs) → {out}", flush=True)
    try:
        train_run(method=method, dataset=dataset, data_dir=data_dir, seed=seed, out=out, **continue_flags(out),
                  progress=progress, **b)
    except TrainingInterrupted as exc:
        raise TrainingInterrupted(f"{exc.where}; re-running the same command continues it", exc.where) from None
    return out / "best.pt"


def check_checkpoint_dataset(path: str | Path, payload: dict[str, Any], dataset: str | None, flag: str = "--dataset") -> None:
    """Refuse a checkpoint trained on another dataset than the one the command names (no silent substitution)."""
    trained = payload.get("data", {}).get("name")
    if dataset is not None and trained is not None and trained != dataset.lower().replace("-", "_"):
        raise CheckpointError(f"checkpoint {path} was trained on {trained!r} but {flag} is {dataset!r}; "
                              f"pass {flag} {trained} (or a checkpoint trained on {dataset})")


def resolve_checkpoints(checkpoints: Sequence[str | Path] | None, methods: Sequence[str], *,
                        dataset: str = "fashion_mnist", data_dir: str | Path | None = None, seed: int = 0,
                        progress: bool = True, torch_device: str = "auto",
                        budget: dict[str, Any] | None = None) -> dict[str, Path]:
    """{label: best.pt}: the given checkpoints labelled by their method, else the cached defaults of ``methods``."""
    if not checkpoints:
        for m in methods:
            method_traits(m)  # a misspelt second method must not wait for the first one's training
        return {m: cached_checkpoint(m, dataset, data_dir, seed, progress=progress, device=torch_device,
                                     **(budget or {})) for m in methods}
    paths: dict[str, Path] = {}
    for p in checkpoints:
        payload = read_checkpoint(p)
        check_checkpoint_dataset(p, payload, dataset)
        label = payload.get("method", Path(p).parent.name)
        paths[label if label not in paths else f"{label}:{Path(p).parent.name}"] = Path(p)
    return paths


def _batches(split: Split, data_info: dict[str, Any], batch_size: int = 500) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader = BatchLoader(split, batch_size, mean=tuple(data_info["mean"]), std=tuple(data_info["std"]))
    return list(loader)


def noise_sweep_run(*, device: str, methods: Sequence[str] = ("baseline", "self_distillation"),
                    checkpoints: Sequence[str | Path] | None = None, backend: str = "native",
                    scales: Sequence[float] = DEFAULT_SCALES, times: Sequence[float] | None = None,
                    t_nominal: float | None = None, sigmas: Sequence[float] = DEFAULT_SIGMAS, realizations: int = 5,
                    samples: int = 1000, dataset: str = "fashion_mnist", data_dir: str | Path | None = None,
                    out: str | Path | None = None, seed: int = 0, overrides: dict[str, Any] | None = None,
                    flat: bool = True, progress: bool = True, budget: dict[str, Any] | None = None,
                    torch_device: str = "auto", bn_recalibrate: int = 0, workers: int = 1,
                    ray_address: str | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the noise sweep and write CSVs, plots and a manifest; returns a summary (incl. the printed table).

    ``bn_recalibrate`` = N > 0 adds a "<method> + BN recal" series: every chip re-estimates its BN
    statistics on N unlabeled training images (a fixed, seeded selection), at a
    cost of N forward passes through the chip. ``workers`` / ``ray_address``: the sweep points as
    Ray tasks (``sweep_device``), the same CSVs.
    """
    check_parallel(workers, ray_address)
    spec = load_device(device, overrides)
    check_bn_recalibrate(bn_recalibrate)
    if realizations < 1:
        raise ValueError(f"--realizations must be ≥ 1, got {realizations}")
    if samples < 1:
        raise ValueError(f"--samples must be ≥ 1, got {samples}")
    for name, values in (("noise scales", scales), ("sigmas", sigmas), ("times", times or [])):
        if any(not (math.isfinite(v) and v >= 0) for v in values):
            raise ValueError(f"{name} must be finite and ≥ 0, got {list(values)}")
    if t_nominal is not None and not (math.isfinite(t_nominal) and t_nominal >= 0):
        raise ValueError(f"--t-inference must be finite and ≥ 0, got {t_nominal}")
    t_nom = float(t_nominal if t_nominal is not None else
                  (min(86400.0, spec.noise["max_time_s"]) if spec.has_drift else 1.0))
    time_points = device_times(spec, times or DEFAULT_TIMES, backend) if spec.has_drift else []
    # Refuse what the device model or backend cannot do now, not after minutes of training.
    for t in [t_nom, *time_points]:
        check_time(spec, t)
        if backend == "aihwkit":
            aihwkit_time(spec, t)
    if backend == "aihwkit":
        rpu_config(spec)
    elif backend != "native":
        raise ValueError(f"unknown backend {backend!r}; choose native or aihwkit")
    paths = resolve_checkpoints(checkpoints, methods, dataset=dataset, data_dir=data_dir, seed=seed,
                                progress=progress, torch_device=torch_device, budget=budget)
    out = Path(out) if out is not None else Path("runs") / "noise_sweep" / f"{spec.name}_{backend}_{time.strftime('%Y%m%d-%H%M%S')}"
    run = RunDirectory(out, dict(device=spec.summary(), backend=backend, checkpoints={k: str(v) for k, v in paths.items()},
                                 scales=list(scales), times=time_points, t_nominal=t_nom, sigmas=list(sigmas),
                                 realizations=realizations, samples=samples, dataset=dataset, seed=seed,
                                 overrides=overrides or {}, bn_recalibrate=bn_recalibrate), kind="noise_sweep")

    models, test_batches, train_batches, digital_rows = {}, {}, {}, []
    # energy per exit from the one cost model: the device's array (as overridden) with the ChipConfig
    # periphery (8-bit ADC, bit-serial 8-bit inputs); input activity measured on training images
    chip_cfg = ChipConfig(device=device, rows=int(spec.array["rows"]), cols=int(spec.array["cols"]))
    energy: dict[str, dict[str, float]] = {}
    calibration: dict[str, list[torch.Tensor]] = {}
    bn_images: dict[str, torch.Tensor | None] = {}
    data_cache: dict[str, Any] = {}
    for label, path in paths.items():
        payload = read_checkpoint(path)
        info = payload["data"]
        split_seed = payload.get("train_config", {}).get("seed", 0)
        key = (info["name"], info["image_size"], info["channels"], split_seed)
        if key not in data_cache:
            data_cache[key] = load_dataset(info["name"], data_dir, image_size=info["image_size"],
                                           channels=info["channels"], seed=split_seed)
        data = data_cache[key]
        models[label] = load_model(path, device=resolve_device(torch_device))
        test_batches[label] = _batches(take_subset(data.test, samples, seed), info)
        train_batches[label] = _batches(take_subset(data.train, samples, seed + 1), info)
        digital_rows += evaluate(models[label], test_batches[label]).rows(method=label)
        calib = calibration_inputs(data.train, tuple(info["mean"]), tuple(info["std"]), seed)
        calibration[label] = calib
        bn_images[label] = (torch.cat(calibration_inputs(data.train, tuple(info["mean"]), tuple(info["std"]), seed,
                                                         images=bn_recalibrate)) if bn_recalibrate else None)
        energy[label] = exit_energies(models[label], chip_cfg, calib)

    raw: list[dict[str, Any]] = []
    for label, model in models.items():
        raw += sweep_device({label: model}, spec, test_batches[label], scales=scales, times=time_points,
                            t_nominal=t_nom, realizations=realizations, seed=seed, backend=backend,
                            bn_images=bn_images[label], workers=workers, ray_address=ray_address,
                            **({"calibration": calibration[label]} if backend == "native" else {}),
                            progress=(lambda msg: log(f"[noise_sweep] {msg}")) if progress else None)
    scale_summary = summarize([r for r in raw if r["sweep"] == "scale"], ("method", "exit", "scale"))
    time_summary = summarize([r for r in raw if r["sweep"] == "time"], ("method", "exit", "t_inference"))
    write_rows_csv(out / "sweep.csv", raw)
    write_rows_csv(out / "summary_scale.csv", scale_summary)
    write_rows_csv(out / "digital.csv", digital_rows)
    plots = plot_metric_by_exit(scale_summary, "scale", out / "accuracy_vs_noise",
                                title=f"{spec.name} ({backend}), t = {human_time(t_nom)}, {realizations} chips, {samples} test images",
                                xlabel="noise scale (× nominal)")
    plots += plot_metric_by_exit(scale_summary, "scale", out / "loss_vs_noise", metric="loss",
                                 title=f"{spec.name} ({backend}): test loss", xlabel="noise scale (× nominal)")
    if time_summary:
        write_rows_csv(out / "summary_time.csv", time_summary)
        plots += plot_metric_by_exit(time_summary, "t_inference", out / "accuracy_vs_time", log_x=True,
                                     title=f"{spec.name} ({backend}) at nominal noise: accuracy after programming",
                                     xlabel="time since programming (s)")
    flat_summary: list[dict[str, Any]] = []
    if flat:
        log("[noise_sweep] flat-minima sweep: Gaussian weight noise on training images")
        flat_rows = []
        for label, model in models.items():
            flat_rows += flat_minima({label: model}, train_batches[label], sigmas, realizations=realizations, seed=seed)
        flat_summary = summarize(flat_rows, ("method", "exit", "sigma"))
        write_rows_csv(out / "flat_minima.csv", flat_summary)
        deepest = max((str(r["exit"]) for r in flat_summary if str(r["exit"]).isdigit()), key=int)
        plots += plot_flat_minima(flat_summary, out / "flat_minima", exit_key=deepest,
                                  title="Flat minima: Gaussian noise on the weights (deepest exit, training images)")

    table_rows = []
    for d in digital_rows:
        nominal = next((r for r in scale_summary if r["method"] == d["method"] and r["exit"] == d["exit"]
                        and r["scale"] == 1.0), None)
        table_rows.append({"method": d["method"], "exit": d["exit"], "digital": d["accuracy"],
                           f"{spec.name} @ nominal": None if nominal is None else
                           f"{nominal['accuracy_mean']:.2f} ± {nominal['accuracy_std']:.2f}",
                           "drop": None if nominal is None else d["accuracy"] - nominal["accuracy_mean"],
                           "energy_pJ": energy[d["method"]].get(str(d["exit"]))})
    write_rows_csv(out / "energy.csv", [{"method": m, "exit": k, "energy_pJ": v} for m, e in energy.items()
                                        for k, v in e.items()])
    table = format_table([dict(r, nJ=None if r["energy_pJ"] is None else r["energy_pJ"] / 1e3) for r in table_rows],
                         ["method", "exit", "digital", f"{spec.name} @ nominal", "drop", "nJ"],
                         title=f"Test accuracy (%) on {samples} test images: digital vs {spec.name} "
                               f"({backend}, t = {human_time(t_nom)}, mean ± std over {realizations} chips); "
                               f"energy per inference (nJ, wxy_hw.hardware.chip_report)")
    atomic_write_text(out / "table.md", table + "\n")
    run.finish(results={"nominal": table_rows}, plots=[str(p.name) for p in plots])
    return {"run_dir": str(out), "table": table, "plots": [str(p) for p in plots], "rows": len(raw)}
