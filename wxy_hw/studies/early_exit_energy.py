"""Early exit on a device (experiments/early_exit_energy.py): per-exit accuracy and energy, dynamic inference
at thresholds searched on validation, Pareto front, plots.

Three stages: ``_plan`` (settings checked, the one chip resolved, checkpoints found, run directory started),
``_measure`` (every model's cost reports, its chips as independent tasks, per-exit / dynamic / front rows),
``_write`` (CSVs, plots, table, manifest)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..analysis.sweep import human_time
from ..models.evaluation import evaluate
from ..hardware.chip import Chip, ChipConfig
from ..hardware.cost import ENERGY_PARTS, chip_report
from ..hardware.trace import fingerprint
from ..hardware.montecarlo import chip_ids, deploy_on
from ..hardware.recalibrate import check_bn_recalibrate
from ..inference import early_exit_inference, exit_table, nsga2_front, search_thresholds
from ..models.cost import exit_path_macs
from ..models.multi_exit import MultiExitNet
from ..parallel import check_parallel, parallel_map, runs_on_ray
from ..output import colors as palette, format_table, plt, save_figure, write_rows_csv
from ..run_dir import RunDirectory
from ..utils import atomic_write_text
from .config import ChipSettings, DatasetSettings, SettingError, check_chips_per_seed, check_given_checkpoints
from .spine import Checkpoint, StudyResult, open_checkpoint, resolve_checkpoints, stamp, start_run

Batches = list[tuple[torch.Tensor, torch.Tensor]]


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
    def make(cls, config: EarlyExitConfig | None = None, **settings: Any) -> EarlyExitConfig:
        chip = settings.pop("chip", None) or {}  # the former ``chip={...}`` keyword: the architecture settings
        return super().make(config, **{**chip, **settings})


@dataclass
class EarlyExitPlan:
    """What the study measures: its settings, the one chip (deployed for accuracy, priced for energy), the
    digital int8 chip of the same array size and bit widths (the int8 column), the inference time, the
    checkpoints by label, and the started run directory."""

    conf: EarlyExitConfig
    chip: Chip
    int8: Chip
    t_inference: float
    paths: dict[str, Checkpoint]
    out: Path
    run: RunDirectory


@dataclass
class ExitModel:
    """One model's digital side: its validation / test batches, calibration images, BN-recalibration images
    and the cost reports of the study's chip (``dev``) and of the int8 chip (``dig``)."""

    model: MultiExitNet
    val: Batches
    test: Batches
    calib: list[torch.Tensor]
    dev: dict[str, Any]
    dig: dict[str, Any]
    n_val: int
    bn_images: torch.Tensor | None


EARLY_EXIT_CHIP_OFFSET = 100  # this study's chips are seed·1000 + 100 + r: apart from a noise sweep's at the same seed


def chip_id(seed: int, r: int) -> int:
    """The id of chip ``r`` of the study run with ``seed`` (``hardware.chip_ids``: nested in the seed)."""
    return chip_ids(seed, r + 1, EARLY_EXIT_CHIP_OFFSET)[r]


@dataclass
class ChipContext:
    """What every chip task needs (shipped once to Ray workers)."""

    models: dict[str, ExitModel]
    chip: Chip
    t_inference: float
    seed: int


@dataclass
class EarlyExitMeasurements:
    """The rows of per_exit.csv, dynamic.csv and front.csv, and each model's calibration-image fingerprint."""

    per_exit: list[dict[str, Any]] = field(default_factory=list)
    dynamic: list[dict[str, Any]] = field(default_factory=list)
    front: list[dict[str, Any]] = field(default_factory=list)
    calibrated: dict[str, str] = field(default_factory=dict)


def early_exit_run(config: EarlyExitConfig | None = None, *, out: str | Path | None = None, progress: bool = True,
                   log: Callable[[str], None] = print, **settings: Any) -> StudyResult:
    """Run the study and write per_exit.csv, dynamic.csv, front.csv, plots, config.toml and a manifest.

    ``bn_recalibrate`` = N > 0: every chip re-estimates its BN statistics on N unlabeled training
    images after deployment (N forward passes per chip; ``hardware.recalibrate_bn``).

    The architecture settings (rows, cols, adc_bits, ...) and ``device_set``: accuracy (deploy) and
    energy (chip_report) both use that one chip; the int8 column is the digital_int8 chip with the same
    array size and bit widths.
    """
    plan = _plan(EarlyExitConfig.make(config, **settings), out, progress)
    return _write(plan, _measure(plan, progress, log))


def _plan(conf: EarlyExitConfig, out: str | Path | None, progress: bool) -> EarlyExitPlan:
    """Check the settings, resolve the chips and find (or train) the checkpoints; start the run directory."""
    chip = conf.chip()  # the one chip, accuracy and energy (refuses an impossible configuration before any work)
    spec = chip.spec
    int8 = ChipConfig(device="digital_int8", **{k: v for k, v in conf.periphery().items()
                                                if k in ("rows", "cols", "weight_bits", "act_bits")}).resolve()
    t_nom = spec.inference_time(conf.t_inference)
    for name in ("chips", "samples"):
        if getattr(conf, name) < 1:
            raise SettingError(name, f"must be ≥ 1, got {getattr(conf, name)}")
    check_chips_per_seed("chips", conf.chips, EARLY_EXIT_CHIP_OFFSET)
    check_bn_recalibrate(conf.bn_recalibrate)
    check_parallel(conf.workers, conf.ray_address)
    check_given_checkpoints(conf)
    paths = resolve_checkpoints(conf.checkpoints, conf.methods, dataset=conf.dataset, data_dir=conf.data_dir,
                                seed=conf.seed, progress=progress, torch_device=conf.torch_device, budget=conf.budget)
    run_dir, run = start_run(conf, out, Path("runs") / "early_exit" / f"{spec.name}_{stamp()}", dict(
        device=spec.summary(), checkpoints={k: str(v) for k, v in paths.items()}, chips=conf.chips,
        samples=conf.samples, t_inference=t_nom, seed=conf.seed, dataset=conf.dataset, chip=chip.summary(),
        bn_recalibrate=conf.bn_recalibrate), checkpoints=paths)
    return EarlyExitPlan(conf, chip, int8, t_nom, paths, run_dir, run)


def _measure(plan: EarlyExitPlan, progress: bool, log: Callable[[str], None]) -> EarlyExitMeasurements:
    """The digital side of each model here; its chips (the Monte Carlo) as independent tasks, here or on Ray;
    then each model's per-exit, dynamic-inference and front rows."""
    conf, found = plan.conf, EarlyExitMeasurements()
    models = _open_models(plan, found.calibrated)
    context = ChipContext(models, plan.chip, plan.t_inference, conf.seed)
    tasks = [(label, r) for label in models for r in range(conf.chips)]
    where = runs_on_ray(conf.workers, conf.ray_address)
    if where:
        log(f"[early_exit] {len(tasks)} chips as {where}")
    by_chip = dict(zip(tasks, parallel_map(_chip_task, context, tasks, workers=conf.workers,
                                           ray_address=conf.ray_address)))
    for label, m in models.items():
        chips = [by_chip[(label, r)] for r in range(conf.chips)]
        digital = evaluate(m.model, m.test)
        found.per_exit += _per_exit_rows(label, m, digital, [accuracy for accuracy, _ in chips])
        if len(m.model.heads) < 2:
            continue
        if progress:
            n = m.n_val if conf.samples >= m.n_val else conf.samples
            log(f"[early_exit] {label}: threshold search (GA on {n} validation images) and dynamic inference")
        dynamic, tables = _dynamic_rows(plan, label, m, digital, chips)
        found.dynamic += dynamic
        found.front += _front_rows(label, tables, conf.seed)
    return found


def _open_models(plan: EarlyExitPlan, calibrated: dict[str, str]) -> dict[str, ExitModel]:
    """Open every checkpoint: its batches, calibration images (fingerprints into ``calibrated``) and the cost
    reports of both chips."""
    conf, seed, samples = plan.conf, plan.conf.seed, plan.conf.samples
    data_cache: dict[tuple, Any] = {}
    models: dict[str, ExitModel] = {}
    for label, path in plan.paths.items():
        opened = open_checkpoint(path, conf.data_dir, conf.torch_device, data_cache)
        model, data = opened.model, opened.data
        calib = opened.calibration(seed)
        calibrated[label] = fingerprint(calib)
        report_dev = chip_report(model, plan.chip, calibration=calib)
        report_dig = chip_report(model, plan.int8, calibration=calib)
        val, test = opened.batches(data.val, samples, seed), opened.batches(data.test, samples, seed)
        bn_images = torch.cat(opened.calibration(seed, conf.bn_recalibrate)) if conf.bn_recalibrate else None
        models[label] = ExitModel(model, val, test, calib, report_dev, report_dig, len(data.val), bn_images)
    return models


def _chip_task(context: ChipContext, task: tuple[str, int]) -> tuple[list[float], dict[str, Any] | None]:
    """Chip r of one model (``chip_id``): its per-exit test accuracy, and real early exit on it at thresholds
    searched on validation through the same chip (None for a single-exit model)."""
    label, r = task
    m = context.models[label]

    def chip_instance():  # deployed afresh for each use: the same chip, its reads drawn as in a fresh session
        return deploy_on(m.model, context.chip, chip_id(context.seed, r), bn_images=m.bn_images, t_inference=context.t_inference,
                         calibration=m.calib)

    accuracy = evaluate(chip_instance(), m.test).accuracy
    if len(m.model.heads) < 2:
        return accuracy, None
    path_energy = [p["energy_pJ"] for p in m.dev["paths"]]
    return accuracy, dynamic_inference(chip_instance(), m.val, m.test, exit_path_macs(m.model), path_energy,
                              m.dev["exits"][-1]["macs"], context.seed)


def _per_exit_rows(label: str, m: ExitModel, digital, chips: list[list[float]]) -> list[dict[str, Any]]:
    """per_exit.csv rows of one model: digital and chip accuracy (mean ± std over chips), MACs, energy parts."""
    e_dev, e_dig = m.dev["exits"], m.dig["exits"]
    rows = []
    for k, name in enumerate(digital.names or [str(i + 1) for i in range(len(digital.accuracy))]):
        accs = torch.tensor([ch[k] for ch in chips])
        rows.append(dict(method=label, exit=name, digital_accuracy=digital.accuracy[k],
                         device_accuracy_mean=accs.mean().item(),
                         device_accuracy_std=accs.std().item() if len(accs) > 1 else 0.0,
                         macs=e_dev[k]["macs"], device_energy_pJ=e_dev[k]["energy_pJ"],
                         int8_energy_pJ=e_dig[k]["energy_pJ"], device_latency_ns=e_dev[k]["latency_ns"],
                         device_path_energy_pJ=m.dev["paths"][k]["energy_pJ"],
                         **{f"device_{part}_pJ": e_dev[k][f"{part}_pJ"] for part in ENERGY_PARTS}))
    return rows


def _dynamic_rows(plan: EarlyExitPlan, label: str, m: ExitModel, digital, chips: list[tuple[list[float], Any]]
                  ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """dynamic.csv rows of one multi-exit model (digital, then each chip) and the exit tables by setting."""
    e_dev, e_dig = m.dev["exits"], m.dig["exits"]
    pe_dig = [r["energy_pJ"] for r in m.dig["paths"]]
    d = dynamic_inference(m.model, m.val, m.test, exit_path_macs(m.model), pe_dig, e_dev[-1]["macs"], plan.conf.seed)
    tables = {"digital": d.pop("table")}
    rows = [dict(method=label, setting="digital", chip="-", deepest_accuracy=digital.accuracy[-1],
                 full_energy_pJ=e_dig[-1]["energy_pJ"], **d)]
    for r, (accuracy, found) in enumerate(chips):
        d = dict(found)
        tables[f"chip{r}"] = d.pop("table")
        rows.append(dict(method=label, setting=plan.chip.spec.name, chip=chip_id(plan.conf.seed, r), deepest_accuracy=accuracy[-1],
                         full_energy_pJ=e_dev[-1]["energy_pJ"], **d))
    return rows, tables


def _front_rows(label: str, tables: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """front.csv rows: the NSGA-II threshold front of the digital model and of chip 0."""
    return [dict(method=label, setting=setting, accuracy=p["accuracy"], mean_macs=p["mean_cost"],
                 acceleration=p["acceleration"], thresholds=p["thresholds"])
            for setting in ("digital", "chip0") for p in nsga2_front(tables[setting], seed=seed)]


def dynamic_inference(model, val, test, path_macs, path_energy, full_macs, seed: int, timed: bool = True,
                      cost: list[float] | None = None) -> dict[str, Any]:
    """Search thresholds on val (the least mean cost at the deepest exit's accuracy: MACs, or ``cost`` per exit path,
    e.g. its energy on the chip), run real early exit on test; accuracy, cost, exit shares and (``timed``) wall time
    against the full network, else a speedup of NaN."""
    table = exit_table(model, val, path_macs, full_macs) if cost is None else exit_table(model, val, cost, cost[-1])
    found = search_thresholds(table, seed=seed)
    (preds, labels, macs, exits), t_dyn, t_full = _timed_early_exit(model, test, found["thresholds"], path_macs, timed)
    energy = torch.tensor(path_energy, dtype=torch.float64)[exits]
    shares = (torch.bincount(exits, minlength=len(path_macs)).float() / len(exits)).tolist()
    return {"thresholds": found["thresholds"], "val_accuracy": found["accuracy"], "val_target": found["target_accuracy"],
            "accuracy": 100.0 * (preds == labels).float().mean().item(), "mean_macs": macs.mean().item(),
            "mac_acceleration": full_macs / macs.mean().item(), "mean_energy_pJ": energy.mean().item(),
            "wall_speedup": t_full / t_dyn, "exit_shares": shares, "table": table}


def _timed_early_exit(model, test, thresholds, path_macs, timed: bool = True
                      ) -> tuple[tuple[torch.Tensor, ...], float, float]:
    """Real early exit on every test batch, timed against the full network: (predictions, labels, MACs, exit
    indices), seconds early exit took, seconds the full network took (NaN unless ``timed``)."""
    preds, labels, macs, exits, t_dyn = [], [], [], [], 0.0
    t_full = 0.0
    last = len(model.heads) - 1
    for x, y in test:
        x = x.to(next(model.parameters()).device)
        t0 = time.perf_counter()
        r = early_exit_inference(model, x, thresholds, path_macs=path_macs)
        t_dyn += time.perf_counter() - t0
        if timed:
            t0 = time.perf_counter()
            with torch.no_grad():
                model.forward_exit(x, last)
            t_full += time.perf_counter() - t0
        else:
            t_full = float("nan")
        preds.append(r.predictions.cpu())
        labels.append(y)
        macs.append(r.macs)
        exits.append(r.exit_index.cpu())
    return (torch.cat(preds), torch.cat(labels), torch.cat(macs), torch.cat(exits)), t_dyn, t_full


def _write(plan: EarlyExitPlan, found: EarlyExitMeasurements) -> StudyResult:
    """per_exit.csv, dynamic.csv, front.csv, the plots, table.md and the finished manifest."""
    out, name = plan.out, plan.chip.spec.name
    listed = lambda rows: [{k: (str(v) if isinstance(v, list) else v) for k, v in r.items()} for r in rows]  # noqa: E731
    write_rows_csv(out / "per_exit.csv", found.per_exit)
    write_rows_csv(out / "dynamic.csv", listed(found.dynamic))
    write_rows_csv(out / "front.csv", listed(found.front))
    plots = _plot_energy_accuracy(found.per_exit, name, plan.t_inference, out / "energy_vs_accuracy")
    if found.front:
        plots += _plot_front(found.front, name, out / "threshold_front")
    if found.dynamic:
        plots += _plot_shares(found.dynamic, found.per_exit, name, out / "exit_shares")
    table = _summary_table(found.per_exit, found.dynamic, name, plan.chip.converters)
    atomic_write_text(out / "table.md", table + "\n")
    plan.run.finish(plots=[p.name for p in plots], calibration_images=found.calibrated)
    return StudyResult(out, table, found.per_exit, plots, {"dynamic": found.dynamic, "front": found.front,
                                                          "chip": plan.chip.summary()})


def _summary_table(per_exit, dynamic, device: str, converters: str) -> str:
    rows = [{"method": r["method"], "exit": r["exit"], "digital acc": r["digital_accuracy"],
             f"{device} acc": f"{r['device_accuracy_mean']:.2f} ± {r['device_accuracy_std']:.2f}",
             "MMACs": r["macs"] / 1e6, f"{device} nJ": r["device_energy_pJ"] / 1e3, "int8 nJ": r["int8_energy_pJ"] / 1e3}
            for r in per_exit]
    text = format_table(rows, list(rows[0]), title="Per exit (test): accuracy, MACs and energy per inference "
                        f"({device}: {converters})")
    if dynamic:
        text += "\n\n" + format_table(*_dynamic_summary(dynamic), title="Dynamic inference at thresholds searched on "
                                      "validation (GA, accuracy ≥ deepest exit), evaluated on test")
    return text


def _dynamic_summary(dynamic) -> tuple[list[dict[str, Any]], list[str]]:
    """The dynamic-inference table: one row per (method, setting), means over its chips."""
    agg: dict[tuple, list] = {}
    for r in dynamic:
        agg.setdefault((r["method"], r["setting"]), []).append(r)
    drows = []
    for (m, s), rs in agg.items():
        mean = lambda key, rs=rs: sum(r[key] for r in rs) / len(rs)  # noqa: E731 (rs bound now: this row's chips)
        drows.append({"method": m, "setting": s, "chips": len(rs), "deepest acc": mean("deepest_accuracy"),
                      "dynamic acc": mean("accuracy"), "MAC accel.": mean("mac_acceleration"),
                      "energy nJ": mean("mean_energy_pJ") / 1e3,
                      "energy saving": mean("full_energy_pJ") / mean("mean_energy_pJ"),
                      "wall speedup": mean("wall_speedup"),
                      "exit shares": " / ".join(f"{sum(r['exit_shares'][i] for r in rs) / len(rs):.2f}"
                                                for i in range(len(rs[0]["exit_shares"])))})
    return drows, list(drows[0])


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
