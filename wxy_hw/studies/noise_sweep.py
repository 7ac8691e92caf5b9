"""Noise sweep (experiments/noise_sweep.py): accuracy and loss of every exit on a device vs noise scale and
time since programming, plus the flat-minima curve."""
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
from ..hardware.cost import exit_energies
from ..hardware.recalibrate import check_bn_recalibrate
from ..hardware.spec import load_device
from ..parallel import check_parallel
from ..output import deepest_exit, format_table, write_rows_csv
from ..utils import atomic_write_text
from .config import ChipSettings, DatasetSettings
from .spine import open_checkpoint, resolve_checkpoints, stamp, start_run


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
    chips: int = 5
    samples: int = 500
    workers: int = 1  # > 1: the sweep points as Ray tasks (the same CSVs)
    ray_address: str | None = None  # join a running Ray cluster
    seeds: list[int] | None = None  # several training seeds: one sweep per seed, intervals over seeds × chips


def noise_sweep_run(config: NoiseSweepConfig | None = None, *, out: str | Path | None = None, progress: bool = True,
                    log: Callable[[str], None] = print, **settings: Any) -> dict[str, Any]:
    """Run the noise sweep and write CSVs, plots, config.toml and a manifest; returns a summary (incl. the table).

    ``settings``: the fields of NoiseSweepConfig (or pass one). ``bn_recalibrate`` = N > 0 adds a
    "<method> + BN recal" series: every chip re-estimates its BN statistics on N unlabeled training
    images (a fixed, seeded selection), at a cost of N forward passes through the chip.
    """
    conf = NoiseSweepConfig.make(config, **settings)
    if conf.seeds:
        return _sweep_over_seeds(conf, out, progress, log)
    check_parallel(conf.workers, conf.ray_address)
    chip = conf.chip()  # the one chip: accuracy deploys it, the energy column prices it
    spec = chip.spec
    check_bn_recalibrate(conf.bn_recalibrate)
    if conf.chips < 1:
        raise ValueError(f"--chips must be ≥ 1, got {conf.chips}")
    if conf.samples < 1:
        raise ValueError(f"--samples must be ≥ 1, got {conf.samples}")
    for name, values in (("noise scales", conf.scales), ("sigmas", conf.sigmas), ("times", conf.times or [])):
        if any(not (math.isfinite(v) and v >= 0) for v in values):
            raise ValueError(f"{name} must be finite and ≥ 0, got {list(values)}")
    if conf.t_inference is not None and not (math.isfinite(conf.t_inference) and conf.t_inference >= 0):
        raise ValueError(f"--t-inference must be finite and ≥ 0, got {conf.t_inference}")
    # Refuse what the device model or backend cannot do now, not after minutes of training.
    t_nom = spec.inference_time(conf.t_inference, conf.backend)
    time_points = spec.times(conf.times or DEFAULT_TIMES, conf.backend) if spec.has_drift else []
    for t in time_points:
        spec.backend_time(conf.backend, t)
    if conf.backend == "aihwkit":
        rpu_config(spec)  # everything else aihwkit must express about this device
    seed, samples, realizations = conf.seed, conf.samples, conf.chips
    paths = resolve_checkpoints(conf.checkpoints, conf.methods, dataset=conf.dataset, data_dir=conf.data_dir, seed=seed,
                                progress=progress, torch_device=conf.torch_device,
                                budget=conf.budget, hwa_device=conf.device)
    out, run = start_run(conf, out, Path("runs") / "noise_sweep" / f"{spec.name}_{conf.backend}_{stamp()}", dict(
        device=spec.summary(), backend=conf.backend, checkpoints={k: str(v) for k, v in paths.items()},
        scales=list(conf.scales), times=time_points, t_nominal=t_nom, sigmas=list(conf.sigmas), realizations=realizations,
        samples=samples, dataset=conf.dataset, seed=seed, overrides=conf.device_set, bn_recalibrate=conf.bn_recalibrate,
        chip=chip.summary()))

    models, test_batches, train_batches, digital_rows = {}, {}, {}, []
    energy: dict[str, dict[str, float]] = {}
    calibration: dict[str, list[torch.Tensor]] = {}
    bn_images: dict[str, torch.Tensor | None] = {}
    data_cache: dict[tuple, Any] = {}
    for label, path in paths.items():
        opened = open_checkpoint(path, conf.data_dir, conf.torch_device, data_cache)
        models[label] = opened.model
        test_batches[label] = opened.batches(opened.data.test, samples, seed, 500)
        train_batches[label] = opened.batches(opened.data.train, samples, seed + 1, 500)
        digital_rows += evaluate(models[label], test_batches[label]).rows(method=label)
        calibration[label] = opened.calibration(seed)
        bn_images[label] = torch.cat(opened.calibration(seed, conf.bn_recalibrate)) if conf.bn_recalibrate else None
        energy[label] = exit_energies(models[label], chip, calibration[label])  # activity measured on training images

    raw: list[dict[str, Any]] = []
    for label, model in models.items():
        raw += sweep_device({label: model}, spec, test_batches[label], scales=conf.scales, times=time_points,
                            t_nominal=t_nom, realizations=realizations, seed=seed, backend=conf.backend,
                            bn_images=bn_images[label], workers=conf.workers, ray_address=conf.ray_address,
                            **({"calibration": calibration[label]} if conf.backend == "native" else {}),
                            progress=(lambda msg: log(f"[noise_sweep] {msg}")) if progress else None)
    scale_summary = summarize([r for r in raw if r["sweep"] == "scale"], ("method", "exit", "scale"))
    time_summary = summarize([r for r in raw if r["sweep"] == "time"], ("method", "exit", "t_inference"))
    write_rows_csv(out / "sweep.csv", raw)
    write_rows_csv(out / "summary_scale.csv", scale_summary)
    write_rows_csv(out / "digital.csv", digital_rows)
    plots = plot_metric_by_exit(scale_summary, "scale", out / "accuracy_vs_noise",
                                title=f"{spec.name} ({conf.backend}), t = {human_time(t_nom)}, {realizations} chips, {samples} test images",
                                xlabel="noise scale (× nominal)")
    plots += plot_metric_by_exit(scale_summary, "scale", out / "loss_vs_noise", metric="loss",
                                 title=f"{spec.name} ({conf.backend}): test loss", xlabel="noise scale (× nominal)")
    if time_summary:
        write_rows_csv(out / "summary_time.csv", time_summary)
        plots += plot_metric_by_exit(time_summary, "t_inference", out / "accuracy_vs_time", log_x=True,
                                     title=f"{spec.name} ({conf.backend}) at nominal noise: accuracy after programming",
                                     xlabel="time since programming (s)")
    flat_summary: list[dict[str, Any]] = []
    if conf.flat:
        log("[noise_sweep] flat-minima sweep: Gaussian weight noise on training images")
        flat_rows = []
        for label, model in models.items():
            flat_rows += flat_minima({label: model}, train_batches[label], conf.sigmas, chips=realizations, seed=seed)
        flat_summary = summarize(flat_rows, ("method", "exit", "sigma"))
        write_rows_csv(out / "flat_minima.csv", flat_summary)
        deepest = deepest_exit(flat_summary)
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
    if conf.bn_recalibrate:
        for r in table_rows:
            recal = next((x for x in scale_summary if x["method"] == f"{r['method']} + BN recal"
                          and x["exit"] == r["exit"] and x["scale"] == 1.0), None)
            r["+ BN recal"] = None if recal is None else f"{recal['accuracy_mean']:.2f} ± {recal['accuracy_std']:.2f}"
    table = format_table([dict(r, nJ=None if r["energy_pJ"] is None else r["energy_pJ"] / 1e3) for r in table_rows],
                         ["method", "exit", "digital", f"{spec.name} @ nominal", "drop",
                          *(["+ BN recal"] if conf.bn_recalibrate else []), "nJ"],
                         title=f"Test accuracy (%) on {samples} test images: digital vs {spec.name} "
                               f"({conf.backend}, t = {human_time(t_nom)}, mean ± std over {realizations} chips); "
                               f"energy per inference (nJ, wxy_hw.hardware.chip_report; {chip.converters})"
                               + (f"; + BN recal: each chip's BN statistics re-estimated on {conf.bn_recalibrate} "
                                  "unlabeled training images" if conf.bn_recalibrate else ""))
    atomic_write_text(out / "table.md", table + "\n")
    run.finish(results={"nominal": table_rows}, plots=[str(p.name) for p in plots])
    return {"run_dir": str(out), "table": table, "plots": [str(p) for p in plots], "rows": len(raw), "raw": raw}


def _sweep_over_seeds(conf: NoiseSweepConfig, out: str | Path | None, progress: bool,
                      log: Callable[[str], None]) -> dict[str, Any]:
    """One sweep per training seed into ``<out>/s<seed>``, then mean ± 95 % interval over seeds × chips (seed the
    unit, variance split into between-seed and between-chip parts) and paired tests against the baseline."""
    seeds = [int(s) for s in conf.seeds or []]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds lists a seed twice: {seeds}")
    if conf.checkpoints:
        raise ValueError("--seeds sweeps the cached default models of each seed; with --checkpoints give one --seed")
    spec = load_device(conf.device, conf.device_set)
    out, run = start_run(conf, out, Path("runs") / "noise_sweep" / f"{spec.name}_{conf.backend}_seeds_{stamp()}",
                         dict(device=spec.summary(), backend=conf.backend, seeds=seeds))
    raw: list[dict[str, Any]] = []
    for s in seeds:
        log(f"[noise_sweep] training seed {s}")
        one = noise_sweep_run(dataclasses.replace(conf, seeds=None, seed=s), out=out / f"s{s}", progress=progress,
                              log=log)
        raw += [dict(r, seed=s) for r in one["raw"]]
    groups: dict[tuple, dict[tuple[int, int], float]] = defaultdict(dict)
    for r in raw:
        value = r["scale"] if r["sweep"] == "scale" else r["t_inference"]
        groups[r["method"], str(r["exit"]), r["sweep"], value][(r["seed"], int(r["chip"]))] = float(r["accuracy"])
    rows = []
    for (method, exit_, sweep, value), cells in groups.items():
        iv = nested_interval(cells)
        rows.append(dict(method=method, exit=exit_, sweep=sweep, value=value, seeds=len(seeds),
                         chips=len(cells) // len(seeds), accuracy_mean=iv.mean, ci95=iv.half_width,
                         seed_var=iv.seed_var, chip_var=iv.chip_var))
    write_rows_csv(out / "sweep.csv", raw)
    write_rows_csv(out / "summary_seeds.csv", rows)
    deepest = {m: max(int(e) for (mm, e, _, _) in groups if mm == m and e.isdigit()) for (m, *_rest) in groups}
    nominal = {m: groups[m, str(deepest[m]), "scale", 1.0] for m in deepest if (m, str(deepest[m]), "scale", 1.0) in groups}
    table_rows = []
    for m, cells in nominal.items():
        iv = nested_interval(cells)
        row = {"method": m, "exit": deepest[m], f"{spec.name} @ nominal": str(iv),
               "seed / chip variance": f"{iv.seed_var:.1f} / {iv.chip_var:.1f}"}
        if "baseline" in nominal and m != "baseline":
            test = paired_test(cells, nominal["baseline"])
            row["− baseline (p)"] = f"{test.difference} ({test.p_value:.3f})"
        table_rows.append(row)
    table = format_table(table_rows, ["method", "exit", f"{spec.name} @ nominal", "seed / chip variance",
                                      "− baseline (p)"],
                         title=f"Deepest-exit test accuracy (%) on {spec.name} at nominal noise: mean ± 95 % t interval "
                               f"over seeds {', '.join(map(str, seeds))} (chips nested in seeds, {conf.chips} per seed); "
                               "p: paired t-test over seeds on the same chips")
    atomic_write_text(out / "table.md", table + "\n")
    run.finish(results={"nominal": table_rows})
    return {"run_dir": str(out), "table": table, "rows": len(raw)}
