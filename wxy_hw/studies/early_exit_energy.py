"""Early exit on a device (experiments/early_exit_energy.py): per-exit accuracy and energy, dynamic inference
at thresholds searched on validation, Pareto front, plots."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..analysis.sweep import human_time
from ..models.evaluation import evaluate
from ..hardware.chip import ChipConfig
from ..hardware.cost import ENERGY_PARTS, chip_report
from ..hardware.trace import fingerprint
from ..hardware.montecarlo import deploy_on
from ..hardware.recalibrate import check_bn_recalibrate
from ..inference import early_exit_inference, exit_table, nsga2_front, search_thresholds
from ..models.cost import exit_path_macs
from ..parallel import check_parallel, parallel_map, runs_on_ray
from ..output import colors as palette, format_table, plt, save_figure, write_rows_csv
from ..utils import atomic_write_text
from .config import ChipSettings, DatasetSettings
from .spine import open_checkpoint, resolve_checkpoints, stamp, start_run

@dataclass
class EarlyExitConfig(DatasetSettings, ChipSettings):
    """Settings of the early-exit energy study (field names = the CLI's option names)."""

    KIND = "early_exit"
    RENAMED = {"realizations": "chips", "t_nominal": "t_inference"}

    methods: list[str] = field(default_factory=lambda: ["baseline", "dsn", "self_distillation", "scan"])
    checkpoints: list[str] | None = None
    chips: int = 3
    samples: int = 2000
    t_inference: float | None = None
    bn_recalibrate: int = 0
    workers: int = 1                   # > 1: the chips (model × chip instance) as Ray tasks (the same CSVs)
    ray_address: str | None = None     # join a running Ray cluster

    @classmethod
    def make(cls, config: "EarlyExitConfig | None" = None, **settings: Any) -> "EarlyExitConfig":
        chip = settings.pop("chip", None) or {}  # the former ``chip={...}`` keyword: the architecture settings
        return super().make(config, **{**chip, **settings})


def _dynamic(model, val, test, path_macs, path_energy, full_macs, seed: int) -> dict[str, Any]:
    """Search thresholds on val, run real early exit on test; accuracy, cost and timing."""
    table = exit_table(model, val, path_macs, full_macs)
    found = search_thresholds(table, seed=seed)
    preds, labels, macs, exits, t_dyn = [], [], [], [], 0.0
    t_full = 0.0
    last = len(model.heads) - 1
    for x, y in test:
        x = x.to(next(model.parameters()).device)
        t0 = time.perf_counter()
        r = early_exit_inference(model, x, found["thresholds"], path_macs=path_macs)
        t_dyn += time.perf_counter() - t0
        t0 = time.perf_counter()
        with torch.no_grad():
            model.forward_exit(x, last)
        t_full += time.perf_counter() - t0
        preds.append(r.predictions.cpu()), labels.append(y), macs.append(r.macs), exits.append(r.exit_index.cpu())
    preds, labels, macs, exits = torch.cat(preds), torch.cat(labels), torch.cat(macs), torch.cat(exits)
    energy = torch.tensor(path_energy, dtype=torch.float64)[exits]
    shares = (torch.bincount(exits, minlength=len(path_macs)).float() / len(exits)).tolist()
    return {"thresholds": found["thresholds"], "val_accuracy": found["accuracy"], "val_target": found["target_accuracy"],
            "accuracy": 100.0 * (preds == labels).float().mean().item(), "mean_macs": macs.mean().item(),
            "mac_acceleration": full_macs / macs.mean().item(), "mean_energy_pJ": energy.mean().item(),
            "wall_speedup": t_full / t_dyn, "exit_shares": shares, "table": table}


def _chip_task(context: dict[str, Any], task: tuple[str, int]) -> tuple[list[float], dict[str, Any] | None]:
    """Chip ``100 + r`` of one model: its per-exit test accuracy, and real early exit on it at thresholds
    searched on validation through the same chip (None for a single-exit model)."""
    label, r = task
    m, chip = context["models"][label], context["chip"]

    def chip_instance():  # deployed afresh for each use: the same chip, its reads drawn as in a fresh session
        return deploy_on(m["model"], chip, 100 + r, bn_images=m["bn_images"], t_inference=context["t_nom"],
                         calibration=m["calib"])

    accuracy = evaluate(chip_instance(), m["test"]).accuracy
    if len(m["model"].heads) < 2:
        return accuracy, None
    path_energy = [p["energy_pJ"] for p in m["dev"]["paths"]]
    return accuracy, _dynamic(chip_instance(), m["val"], m["test"], exit_path_macs(m["model"]), path_energy,
                              m["dev"]["exits"][-1]["macs"], context["seed"])


def early_exit_run(config: EarlyExitConfig | None = None, *, out: str | Path | None = None, progress: bool = True,
                   log: Callable[[str], None] = print, **settings: Any) -> dict[str, Any]:
    """Run the study and write per_exit.csv, dynamic.csv, front.csv, plots, config.toml and a manifest.

    ``bn_recalibrate`` = N > 0: every chip re-estimates its BN statistics on N unlabeled training
    images after deployment (N forward passes per chip; ``hardware.recalibrate_bn``).

    The architecture settings (rows, cols, adc_bits, ...): accuracy (deploy) and energy
    (chip_report) both use that one chip; the int8 column is the digital_int8 chip with the same
    array size and bit widths.
    """
    conf = EarlyExitConfig.make(config, **settings)
    realizations, samples, seed = conf.chips, conf.samples, conf.seed
    chip = conf.chip()  # the one chip, accuracy and energy (refuses an impossible configuration before any work)
    spec = chip.spec
    int8 = ChipConfig(device="digital_int8", **{k: v for k, v in conf.periphery().items()
                                                if k in ("rows", "cols", "weight_bits", "act_bits")}).resolve()
    t_nom = spec.inference_time(conf.t_inference)
    if realizations < 1 or samples < 1:
        raise ValueError("--chips and --samples must be ≥ 1")
    check_bn_recalibrate(conf.bn_recalibrate)
    check_parallel(conf.workers, conf.ray_address)
    paths = resolve_checkpoints(conf.checkpoints, conf.methods, dataset=conf.dataset, data_dir=conf.data_dir, seed=seed,
                                progress=progress, torch_device=conf.torch_device,
                                budget=conf.budget)
    out, run = start_run(conf, out, Path("runs") / "early_exit" / f"{spec.name}_{stamp()}", dict(
        device=spec.summary(), checkpoints={k: str(v) for k, v in paths.items()}, realizations=realizations,
        samples=samples, t_nominal=t_nom, seed=seed, dataset=conf.dataset, chip=chip.summary(),
        bn_recalibrate=conf.bn_recalibrate))
    calibrated: dict[str, str] = {}
    per_exit, dynamic, front_rows = [], [], []
    tables = {}
    data_cache: dict[tuple, Any] = {}
    # the digital side of each model here; its chips (the Monte Carlo) as independent tasks, here or on Ray
    models: dict[str, dict[str, Any]] = {}
    for label, path in paths.items():
        opened = open_checkpoint(path, conf.data_dir, conf.torch_device, data_cache)
        model, data = opened.model, opened.data
        calib = opened.calibration(seed)
        calibrated[label] = fingerprint(calib)
        report_dev = chip_report(model, chip, calibration=calib)
        report_dig = chip_report(model, int8, calibration=calib)
        models[label] = dict(model=model, val=opened.batches(data.val, samples, seed),
                             test=opened.batches(data.test, samples, seed), calib=calib, dev=report_dev,
                             dig=report_dig, n_val=len(data.val),
                             bn_images=torch.cat(opened.calibration(seed, conf.bn_recalibrate)) if conf.bn_recalibrate
                             else None)
    context = dict(models=models, chip=chip, t_nom=t_nom, seed=seed)
    tasks = [(label, r) for label in models for r in range(realizations)]
    where = runs_on_ray(conf.workers, conf.ray_address)
    if where:
        log(f"[early_exit] {len(tasks)} chips as {where}")
    by_chip = dict(zip(tasks, parallel_map(_chip_task, context, tasks, workers=conf.workers,
                                           ray_address=conf.ray_address)))
    for label, m in models.items():
        model, test, report_dev, report_dig = m["model"], m["test"], m["dev"], m["dig"]
        e_dev, e_dig = report_dev["exits"], report_dig["exits"]
        digital = evaluate(model, test)
        chips = [by_chip[(label, r)][0] for r in range(realizations)]
        for k, name in enumerate(digital.names or [str(i + 1) for i in range(len(digital.accuracy))]):
            accs = torch.tensor([ch[k] for ch in chips])
            per_exit.append(dict(method=label, exit=name, digital_accuracy=digital.accuracy[k],
                                 device_accuracy_mean=accs.mean().item(),
                                 device_accuracy_std=accs.std().item() if len(accs) > 1 else 0.0,
                                 macs=e_dev[k]["macs"], device_energy_pJ=e_dev[k]["energy_pJ"],
                                 int8_energy_pJ=e_dig[k]["energy_pJ"], device_latency_ns=e_dev[k]["latency_ns"],
                                 device_path_energy_pJ=report_dev["paths"][k]["energy_pJ"],
                                 **{f"device_{part}_pJ": e_dev[k][f"{part}_pJ"] for part in ENERGY_PARTS}))
        if len(model.heads) < 2:
            continue
        if progress:
            log(f"[early_exit] {label}: threshold search (GA on {m['n_val'] if samples >= m['n_val'] else samples} "
                "validation images) and dynamic inference")
        pm = exit_path_macs(model)
        pe_dig = [r["energy_pJ"] for r in report_dig["paths"]]
        d = _dynamic(model, m["val"], test, pm, pe_dig, e_dev[-1]["macs"], seed)
        tables[(label, "digital")] = d.pop("table")
        dynamic.append(dict(method=label, setting="digital", chip="-", deepest_accuracy=digital.accuracy[-1],
                            full_energy_pJ=e_dig[-1]["energy_pJ"], **d))
        for r in range(realizations):
            d = dict(by_chip[(label, r)][1])
            tables[(label, f"chip{r}")] = d.pop("table")
            dynamic.append(dict(method=label, setting=spec.name, chip=100 + r, deepest_accuracy=chips[r][-1],
                                full_energy_pJ=e_dev[-1]["energy_pJ"], **d))
        for setting in ("digital", "chip0"):
            for p in nsga2_front(tables[(label, setting)], seed=seed):
                front_rows.append(dict(method=label, setting=setting, accuracy=p["accuracy"], mean_macs=p["mean_cost"],
                                       acceleration=p["acceleration"], thresholds=p["thresholds"]))

    write_rows_csv(out / "per_exit.csv", per_exit)
    write_rows_csv(out / "dynamic.csv", [{k: (str(v) if isinstance(v, list) else v) for k, v in r.items()} for r in dynamic])
    write_rows_csv(out / "front.csv", [{k: (str(v) if isinstance(v, list) else v) for k, v in r.items()} for r in front_rows])
    plots = _plot_energy_accuracy(per_exit, spec.name, t_nom, out / "energy_vs_accuracy")
    if front_rows:
        plots += _plot_front(front_rows, spec.name, out / "threshold_front")
    if dynamic:
        plots += _plot_shares(dynamic, per_exit, spec.name, out / "exit_shares")
    table = _summary_table(per_exit, dynamic, spec.name)
    atomic_write_text(out / "table.md", table + "\n")
    run.finish(plots=[p.name for p in plots], calibration_images=calibrated)
    return {"run_dir": str(out), "table": table}


def _summary_table(per_exit, dynamic, device: str) -> str:
    rows = [{"method": r["method"], "exit": r["exit"], "digital acc": r["digital_accuracy"],
             f"{device} acc": f"{r['device_accuracy_mean']:.2f} ± {r['device_accuracy_std']:.2f}",
             "MMACs": r["macs"] / 1e6, f"{device} nJ": r["device_energy_pJ"] / 1e3, "int8 nJ": r["int8_energy_pJ"] / 1e3}
            for r in per_exit]
    text = format_table(rows, list(rows[0]), title="Per exit (test): accuracy, MACs and energy per inference")
    if dynamic:
        agg: dict[tuple, list] = {}
        for r in dynamic:
            agg.setdefault((r["method"], r["setting"]), []).append(r)
        drows = []
        for (m, s), rs in agg.items():
            mean = lambda key: sum(r[key] for r in rs) / len(rs)  # noqa: E731
            drows.append({"method": m, "setting": s, "chips": len(rs), "deepest acc": mean("deepest_accuracy"),
                          "dynamic acc": mean("accuracy"), "MAC accel.": mean("mac_acceleration"),
                          "energy nJ": mean("mean_energy_pJ") / 1e3,
                          "energy saving": mean("full_energy_pJ") / mean("mean_energy_pJ"),
                          "wall speedup": mean("wall_speedup"),
                          "exit shares": " / ".join(f"{sum(r['exit_shares'][i] for r in rs) / len(rs):.2f}"
                                                    for i in range(len(rs[0]["exit_shares"])))})
        text += "\n\n" + format_table(drows, list(drows[0]), title="Dynamic inference at thresholds searched on "
                                      "validation (GA, accuracy ≥ deepest exit), evaluated on test")
    return text


def _plot_energy_accuracy(per_exit, device: str, t: float, path: Path):
    methods = list(dict.fromkeys(r["method"] for r in per_exit))
    colors = palette(methods)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, (ekey, akey, title) in zip(axes, [("int8_energy_pJ", "digital_accuracy", "digital int8"),
                                             ("device_energy_pJ", "device_accuracy_mean", f"{device}, t = {human_time(t)}")]):
        for m in methods:
            rows = [r for r in per_exit if r["method"] == m and r["exit"] != "ensemble"]
            xs, ys = [r[ekey] / 1e3 for r in rows], [r[akey] for r in rows]
            ax.plot(xs, ys, marker="o", color=colors[m], label=m)
            for r, x_, y_ in zip(rows, xs, ys):
                ax.annotate(r["exit"], (x_, y_), textcoords="offset points", xytext=(3, 3), fontsize=7)
        ax.set_xlabel("energy per inference (nJ)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Accuracy vs energy per exit (marker label = exit)")
    fig.tight_layout()
    return save_figure(fig, path)


def _plot_front(front_rows, device: str, path: Path):
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    keys = list(dict.fromkeys((r["method"], r["setting"]) for r in front_rows))
    colors = palette([f"{m} ({s})" for m, s in keys])
    for m, s in keys:
        rows = [r for r in front_rows if r["method"] == m and r["setting"] == s]
        ax.plot([r["acceleration"] for r in rows], [r["accuracy"] for r in rows], marker=".",
                ls="-" if s == "digital" else "--", color=colors[f"{m} ({s})"],
                label=f"{m} ({'digital' if s == 'digital' else device + ' chip'})")
    ax.set_xlabel("MAC acceleration vs the full network")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("Threshold Pareto front (NSGA-II, validation)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def _plot_shares(dynamic, per_exit, device: str, path: Path):
    """Share of test samples leaving at each exit, one bar per exit labelled by the stage it follows
    (models compared here may have exits after different stages, e.g. one trained with --exit-stages)."""
    groups = list(dict.fromkeys((r["method"], r["setting"]) for r in dynamic))
    labels: dict[str, list[str]] = {}
    for m, _ in groups:
        n = len(next(r for r in dynamic if r["method"] == m)["exit_shares"])
        names = [r["exit"] for r in per_exit if r["method"] == m and r["exit"] != "ensemble"]
        labels[m] = names if len(names) == n else [str(i + 1) for i in range(n)]
    order = sorted(set().union(*labels.values()), key=lambda e: (not e.isdigit(), int(e) if e.isdigit() else 0, e))
    colors = palette([f"after stage {e}" for e in order])
    fig, ax = plt.subplots(figsize=(2.2 * len(groups) + 3, 3.8))
    width = 0.8 / len(order)
    for i, e in enumerate(order):
        xs, vals = [], []
        for g, (m, s) in enumerate(groups):
            if e not in labels[m]:
                continue
            rs = [r for r in dynamic if r["method"] == m and r["setting"] == s]
            xs.append(g + i * width)
            vals.append(sum(r["exit_shares"][labels[m].index(e)] for r in rs) / len(rs))
        ax.bar(xs, vals, width, label=f"exit after stage {e}", color=colors[f"after stage {e}"])
    ax.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))])
    ax.set_xticklabels([f"{m.replace(':', ':' + chr(10))}\n{s}" for m, s in groups], fontsize=7)
    ax.set_ylabel("share of test samples")
    ax.set_title("Where samples leave (thresholds from validation)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return save_figure(fig, path)
