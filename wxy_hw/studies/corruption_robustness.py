"""Corruption robustness (experiments/corruption_robustness.py): the corruption benchmark (seed-style table,
mCE), adversarial accuracy, the same corruption table on simulated hardware, plots.

Three stages: ``plan_robustness`` (settings checked, devices loaded with ``--device-set`` applied, models
found), ``measure_robustness`` (per model: corruptions, feature consistency, attacks, chips),
``write_robustness`` (CSVs, tables, plots, manifest). Accuracy only: no energy is priced here."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..analysis.robustness import (DEFAULT_ATTACKS, adversarial_rows, batches_of, corrupted_view, corruption_errors,
                                   corruption_rows, deepest_features, feature_consistency, pca_2d)
from ..analysis.sweep import human_time
from ..data.base import Split, take_subset
from ..data.corruptions import SEED_CORRUPTIONS, SEVERITIES, check_corruptions, check_hendrycks_dir
from ..hardware.montecarlo import deploy_on
from ..hardware.spec import DeviceSpec, load_device
from ..output import colors as palette, deepest_exit, format_table, plt, save_figure, write_rows_csv
from ..run_dir import RunDirectory
from ..utils import atomic_write_text
from .config import DatasetSettings, SettingError, check_given_checkpoints
from .spine import Checkpoint, StudyResult, open_checkpoint, resolve_checkpoints, stamp, start_run

# hwa (trained through reram noise) asks the converse question: does weight-noise robustness buy corruption robustness?
DEFAULT_METHODS = ("baseline", "augment", "ada", "auxiliary", "adv", "hwa")
DEFAULT_CORRUPTIONS = (*SEED_CORRUPTIONS, "rotation")


@dataclass
class RobustnessConfig(DatasetSettings):
    """Settings of the corruption-robustness study (field names = the CLI's option names); ``device_set``
    changes values of every device of the hardware table (``--device-set``)."""

    KIND = "corruption_robustness"

    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    checkpoints: list[str] | None = None
    corruptions: list[str] = field(default_factory=lambda: list(DEFAULT_CORRUPTIONS))
    severities: list[int] = field(default_factory=lambda: list(SEVERITIES))
    corrupted_dir: str | None = None
    samples: int = 2000
    adv_samples: int = 1000
    eps_linf: float = DEFAULT_ATTACKS["pgd_linf"]["eps"]
    eps_l2: float = DEFAULT_ATTACKS["pgd_l2"]["eps"]
    pgd_steps: int = int(DEFAULT_ATTACKS["pgd_linf"]["steps"])
    devices: list[str] = field(default_factory=lambda: ["reram", "subthreshold_cmos"])
    device_set: dict[str, Any] = field(default_factory=dict)
    chips: int = 3
    hw_samples: int = 500
    hw_severities: list[int] = field(default_factory=lambda: [1, 3, 5])
    pca_corruption: str = "gaussian_noise"
    pca_severity: int = 5
    cache_dir: str = "runs/cache/corruptions"

    @property
    def attacks(self) -> dict[str, dict[str, float]]:
        """The white-box attacks and their budgets (pixel units)."""
        return {"fgsm": dict(eps=self.eps_linf), "pgd_linf": dict(eps=self.eps_linf, steps=self.pgd_steps),
                "pgd_l2": dict(eps=self.eps_l2, steps=self.pgd_steps)}


@dataclass
class RobustnessPlan:
    """What the study will measure, nothing measured yet: the models, the devices of the hardware table
    (``--device-set`` applied), and the corruption whose features the PCA figure shows."""

    paths: dict[str, Checkpoint]
    devices: list[DeviceSpec]
    t_of: dict[str, float]             # per device name, the time since programming the chips are read at
    pca_corruption: str


@dataclass
class RobustnessMeasurements:
    """Tidy rows of every measurement, and the test-set sizes the tables state."""

    rows: list[dict[str, Any]] = field(default_factory=list)          # digital corruption accuracy
    adv: list[dict[str, Any]] = field(default_factory=list)           # adversarial accuracy
    hw: list[dict[str, Any]] = field(default_factory=list)            # corruption accuracy on chips
    consistency: list[dict[str, Any]] = field(default_factory=list)   # clean vs corrupted deepest features
    pca: dict[str, tuple] = field(default_factory=dict)               # label → (clean, corrupted features, labels)
    n_test: int = 0
    n_hw: int = 0


def corruption_robustness_run(config: RobustnessConfig | None = None, *, out: str | Path | None = None,
                              progress: bool = True, log: Callable[[str], None] = print,
                              **settings: Any) -> StudyResult:
    """Run the benchmark and write CSVs, tables, plots, config.toml and a manifest; returns a summary with the tables.

    ``device_set`` values reach every device of the hardware table (``load_device(device, device_set)``)."""
    conf = RobustnessConfig.make(config, **settings)
    plan = plan_robustness(conf, progress)
    run_dir, run = _start(conf, plan, out)
    measured = measure_robustness(plan, conf, progress, log)
    return write_robustness(plan, measured, conf, run_dir, run)


def _check_settings(conf: RobustnessConfig) -> str:
    """Refuse settings out of range; the corruption the PCA figure shows."""
    pca_corruption = conf.pca_corruption
    if conf.corrupted_dir is None:
        check_corruptions(list(conf.corruptions) + [pca_corruption])
    else:
        check_hendrycks_dir(conf.corrupted_dir, conf.corruptions)
        if pca_corruption not in conf.corruptions:
            pca_corruption = conf.corruptions[0]
    for name, values in (("severities", conf.severities), ("hw_severities", conf.hw_severities),
                         ("pca_severity", [conf.pca_severity])):
        for s in values:
            if not 1 <= int(s) <= 5:
                raise SettingError(name, f"must lie in 1..5 (0 = clean is always included), got {s}")
    for name, least in (("samples", 1), ("hw_samples", 1), ("adv_samples", 0), ("chips", 0)):
        if getattr(conf, name) < least:
            raise SettingError(name, f"must be ≥ {least}, got {getattr(conf, name)}")
    return pca_corruption


def plan_robustness(conf: RobustnessConfig, progress: bool = True) -> RobustnessPlan:
    """Check the settings, load the devices (``device_set`` applied to each), find the models (the cached
    defaults trained when absent): nothing measured, no run directory yet."""
    pca_corruption = _check_settings(conf)
    devices = [load_device(d, conf.device_set) for d in conf.devices]
    t_of = {s.name: s.inference_time() for s in devices}
    check_given_checkpoints(conf)
    paths = resolve_checkpoints(conf.checkpoints, conf.methods, dataset=conf.dataset, data_dir=conf.data_dir,
                                seed=conf.seed, progress=progress, torch_device=conf.torch_device, budget=conf.budget)
    return RobustnessPlan(paths, devices, t_of, pca_corruption)


def _start(conf: RobustnessConfig, plan: RobustnessPlan, out: str | Path | None) -> tuple[Path, RunDirectory]:
    return start_run(conf, out, Path("runs") / "robustness" / stamp(), dict(
        checkpoints={k: str(v) for k, v in plan.paths.items()}, corruptions=list(conf.corruptions),
        severities=list(conf.severities), samples=conf.samples, attacks=conf.attacks, adv_samples=conf.adv_samples,
        devices={s.name: s.summary() for s in plan.devices}, device_set=dict(conf.device_set), t_inference=plan.t_of,
        chips=conf.chips, hw_samples=conf.hw_samples, hw_severities=list(conf.hw_severities), dataset=conf.dataset,
        seed=conf.seed, corrupted_dir=None if conf.corrupted_dir is None else str(conf.corrupted_dir)),
        checkpoints=plan.paths)


def _first(split: Split, n: int, seed: int, corrupted_dir: str | None) -> Split:
    """``n`` test images: a seeded selection, or the first ``n`` (a published corrupted set is aligned with the
    test split's order)."""
    return take_subset(split, n, seed) if corrupted_dir is None else Split(split.images[:n], split.labels[:n])


def measure_robustness(plan: RobustnessPlan, conf: RobustnessConfig, progress: bool = True,
                       log: Callable[[str], None] = print) -> RobustnessMeasurements:
    """Every model in turn: corruption accuracy, feature consistency and PCA features, adversarial accuracy,
    and the corruption accuracy of ``chips`` chips per device."""
    say = (lambda msg: log(f"[robustness] {msg}")) if progress else (lambda msg: None)
    measured = RobustnessMeasurements()
    data_cache: dict[tuple, Any] = {}
    for label, path in plan.paths.items():
        opened = open_checkpoint(path, conf.data_dir, conf.torch_device, data_cache)
        test = _first(opened.data.test, conf.samples, conf.seed, conf.corrupted_dir)
        norm, model = (opened.info["mean"], opened.info["std"]), opened.model
        del opened
        _measure_model(measured, label, model, test, norm, plan, conf, say)
        hw_test = _first(test, conf.hw_samples, conf.seed, conf.corrupted_dir)
        measured.hw += _hardware_rows(model, hw_test, norm, label, plan, conf, say)
        measured.n_test, measured.n_hw = len(test), len(hw_test)
        del model
    return measured


def _measure_model(measured: RobustnessMeasurements, label: str, model: torch.nn.Module, test: Split,
                   norm: tuple, plan: RobustnessPlan, conf: RobustnessConfig, say: Callable[[str], None]) -> None:
    """One model, digitally: corruption rows, feature consistency at severity 3, PCA features, attacks."""
    mean, std = norm
    corruptions, attacks = conf.corruptions, conf.attacks
    say(f"{label}: {len(corruptions)} corruptions × {len(conf.severities)} severities on {len(test)} test images")
    view = _view(conf)
    measured.rows += corruption_rows(model, test, mean, std, corruptions, conf.severities, **view, method=label)
    clean_feat = deepest_features(model, batches_of(test, mean, std))
    for c in corruptions:
        corrupted = corrupted_view(test, c, 3, **view)
        measured.consistency.append(dict(method=label, corruption=c, severity=3, cosine=feature_consistency(
            clean_feat, deepest_features(model, batches_of(corrupted, mean, std)))))
    pc = corrupted_view(test, plan.pca_corruption, conf.pca_severity, **view)
    measured.pca[label] = (clean_feat, deepest_features(model, batches_of(pc, mean, std)), test.labels)
    if conf.adv_samples and attacks:
        say(f"{label}: adversarial accuracy ({', '.join(attacks)}) on {min(conf.adv_samples, len(test))} images")
        measured.adv += adversarial_rows(model, take_subset(test, conf.adv_samples, conf.seed), mean, std, attacks,
                                         seed=conf.seed, method=label)


def _view(conf: RobustnessConfig) -> dict[str, Any]:
    """How corrupted images are made (or read): corrupted_view's and corruption_rows' keywords."""
    return dict(seed=conf.seed, cache_dir=conf.cache_dir, corrupted_dir=conf.corrupted_dir)


def _hardware_rows(model: torch.nn.Module, hw_test: Split, norm: tuple, label: str, plan: RobustnessPlan,
                   conf: RobustnessConfig, say: Callable[[str], None]) -> list[dict[str, Any]]:
    """Corruption accuracy of ``chips`` chips of every device (``--device-set`` applied), one chip at a time."""
    mean, std = norm
    chips, rows = conf.chips, []
    for spec in plan.devices:
        if chips == 0:
            break
        say(f"{label}: {chips} {spec.name} chips (t = {human_time(plan.t_of[spec.name])}), corruptions at severities "
            f"{list(conf.hw_severities)} on {len(hw_test)} images")
        for chip in range(chips):
            deployed = deploy_on(model, spec, 1000 + chip, t_inference=plan.t_of[spec.name])
            rows += corruption_rows(deployed, hw_test, mean, std, conf.corruptions, conf.hw_severities, **_view(conf),
                                    method=label, device=spec.name, chip=1000 + chip)
            del deployed
    return rows


def write_robustness(plan: RobustnessPlan, measured: RobustnessMeasurements, conf: RobustnessConfig, out: Path,
                     run: RunDirectory) -> StudyResult:
    """corruption.csv, corruption_errors.csv, feature_consistency.csv, adversarial.csv, hardware.csv, the
    tables (table.md), the plots and the finished manifest."""
    rows, corruptions = measured.rows, list(conf.corruptions)
    exit_key = deepest_exit(rows)
    baseline = "baseline" if any(r["method"] == "baseline" for r in rows) else rows[0]["method"]
    ce = corruption_errors(rows, baseline, exit_key)
    write_rows_csv(out / "corruption.csv", rows)
    write_rows_csv(out / "corruption_errors.csv", ce)
    write_rows_csv(out / "feature_consistency.csv", measured.consistency)
    tables = [_seed_table(rows, ce, measured.consistency, corruptions, exit_key, baseline, measured.n_test,
                          list(conf.severities))]
    plots = _plot_severity(rows, corruptions, exit_key, out / "accuracy_vs_severity")
    plots += _plot_pca(measured.pca, plan.pca_corruption, conf.pca_severity, out / "feature_pca")
    if measured.adv:
        write_rows_csv(out / "adversarial.csv", measured.adv)
        tables.append(_adv_table(measured.adv))
    if measured.hw:
        write_rows_csv(out / "hardware.csv", measured.hw)
        tables.append(_hw_table(measured.hw, rows, exit_key, plan.t_of, conf.chips, measured.n_hw,
                                list(conf.hw_severities), conf.device_set))
        plots += _plot_hw(measured.hw, rows, exit_key, out / "hardware_corruption")
    table = "\n\n".join(tables)
    atomic_write_text(out / "table.md", table + "\n")
    run.finish(results={"mce": {r["method"]: r["ce"] for r in ce if r["corruption"] == "mean"}},
               plots=[p.name for p in plots])
    return StudyResult(out, table, rows, plots, {"corruption_errors": ce, "adversarial": measured.adv,
                                                 "hardware": measured.hw})


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _seed_table(rows, ce, consistency, corruptions, exit_key, baseline, n, severities) -> str:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    table_rows = []
    for m in methods:
        mine = [r for r in rows if r["method"] == m and str(r["exit"]) == exit_key]
        row: dict[str, Any] = {"method": m, "clean": next(r["accuracy"] for r in mine if r["corruption"] == "clean")}
        for c in corruptions:
            row[c] = _mean([r["accuracy"] for r in mine if r["corruption"] == c])
        row["mean corr."] = _mean([row[c] for c in corruptions])
        mean_ce = next(r for r in ce if r["method"] == m and r["corruption"] == "mean")
        row["mCE"] = mean_ce["ce"]
        row["rel. mCE"] = mean_ce["relative_ce"]
        row["feat. cos"] = _mean([r["cosine"] for r in consistency if r["method"] == m])
        table_rows.append(row)
    return format_table(table_rows, list(table_rows[0]), title=(
        f"Test accuracy (%) per corruption, averaged over severities {severities} ({n} test images, exit {exit_key}); "
        f"mCE / relative mCE in % of {baseline} (lower is better); feat. cos = mean cosine similarity of clean and "
        "corrupted (severity 3) deepest features"))


def _adv_table(adv) -> str:
    methods = list(dict.fromkeys(r["method"] for r in adv))
    attacks = list(dict.fromkeys(r["attack"] for r in adv))
    label = {r["attack"]: (r["attack"] if r["attack"] == "clean" else
                           f"{r['attack']} ε={r['epsilon']:g}" + (f" ({r['steps']} steps)" if r["steps"] else ""))
             for r in adv}
    trows = [{"method": m, **{label[a]: next(r["accuracy"] for r in adv if r["method"] == m and r["attack"] == a)
                               for a in attacks}} for m in methods]
    return format_table(trows, list(trows[0]), title=f"Adversarial accuracy (%), white box, deepest exit, "
                        f"{adv[0]['n']} test images (torchattacks; ε in pixel units of [0, 1])")


def _hw_table(hw, rows, exit_key, t_of, chips, n, severities, device_set=None) -> str:
    methods = list(dict.fromkeys(r["method"] for r in hw))
    devices = list(dict.fromkeys(r["device"] for r in hw))
    trows = []
    for m in methods:
        mine = [r for r in rows if r["method"] == m and str(r["exit"]) == exit_key]
        row: dict[str, Any] = {"method": m, "digital clean": next(r["accuracy"] for r in mine if r["corruption"] == "clean"),
                               "digital corr.": _mean([r["accuracy"] for r in mine if r["corruption"] != "clean"
                                                       and r["severity"] in severities])}
        for d in devices:
            per_chip: dict[Any, dict[str, list[float]]] = {}
            for r in hw:
                if r["method"] == m and r["device"] == d and str(r["exit"]) == exit_key:
                    slot = per_chip.setdefault(r["chip"], {"clean": [], "corr": []})
                    slot["clean" if r["corruption"] == "clean" else "corr"].append(r["accuracy"])
            clean = torch.tensor([_mean(v["clean"]) for v in per_chip.values()])
            corr = torch.tensor([_mean(v["corr"]) for v in per_chip.values()])
            sd = (lambda t: float(t.std()) if len(t) > 1 else 0.0)  # noqa: E731
            row[f"{d} clean"] = f"{float(clean.mean()):.2f} ± {sd(clean):.2f}"
            row[f"{d} corr."] = f"{float(corr.mean()):.2f} ± {sd(corr):.2f}"
        trows.append(row)
    times = ", ".join(f"{d} at {human_time(t)}" for d, t in t_of.items())
    changed = "; device values set: " + ", ".join(f"{k} = {v}" for k, v in device_set.items()) if device_set else ""
    return format_table(trows, list(trows[0]), title=(
        f"On hardware ({times}{changed}; mean ± std over {chips} chips, {n} test images, exit {exit_key}): clean "
        f"accuracy and accuracy averaged over all corruptions at severities {severities}"))


def _plot_severity(rows, corruptions, exit_key, path: Path) -> list[Path]:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    colors = palette(methods)
    cols = 5
    nrows = -(-len(corruptions) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.0 * cols, 2.7 * nrows), sharey=True, squeeze=False)
    for ax, c in zip(axes.flat, corruptions):
        for m in methods:
            mine = [r for r in rows if r["method"] == m and str(r["exit"]) == exit_key]
            pts = sorted([(0, r["accuracy"]) for r in mine if r["corruption"] == "clean"] +
                         [(int(r["severity"]), r["accuracy"]) for r in mine if r["corruption"] == c])
            ax.plot(*zip(*pts), marker="o", ms=3, color=colors[m], label=m)
        ax.set_title(c.replace("_", " "), fontsize=9)
        ax.set_xticks(range(6))
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(corruptions):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("test accuracy (%)")
    for ax in axes[-1]:
        ax.set_xlabel("severity (0 = clean)")
    handles = [plt.Line2D([], [], color=colors[m], marker="o", ms=3, label=m) for m in methods]
    fig.legend(handles=handles, loc="upper center", ncol=len(methods), bbox_to_anchor=(0.5, 1.03), frameon=False)
    fig.tight_layout()
    return save_figure(fig, path)


def _plot_pca(pca, corruption: str, severity: int, path: Path) -> list[Path]:
    """The seed's figure: clean (dots) and corrupted (crosses) features per class, top-2 PCs per model."""
    fig, axes = plt.subplots(1, len(pca), figsize=(3.4 * len(pca), 3.4), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, (label, (clean, corrupted, labels)) in zip(axes[0], pca.items()):
        k = min(len(labels), 600)  # a readable number of points
        pc, pk = pca_2d(clean[:k], corrupted[:k])
        colors = [cmap(int(c) % 10) for c in labels[:k]]
        ax.scatter(pc[:, 0], pc[:, 1], c=colors, s=6, marker="o", alpha=0.6, linewidths=0)
        ax.scatter(pk[:, 0], pk[:, 1], c=colors, s=10, marker="x", alpha=0.6, linewidths=0.7)
        ax.set_title(f"{label}  (cos {feature_consistency(clean, corrupted):.2f})", fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"Deepest features, top-2 PCs: clean (•) vs {corruption.replace('_', ' ')} severity {severity} (×); "
                 "colour = class", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def _plot_hw(hw, rows, exit_key, path: Path) -> list[Path]:
    methods = list(dict.fromkeys(r["method"] for r in hw))
    devices = list(dict.fromkeys(r["device"] for r in hw))
    severities = sorted({int(r["severity"]) for r in hw})
    fig, axes = plt.subplots(1, len(devices) + 1, figsize=(3.6 * (len(devices) + 1), 3.4), sharey=True, squeeze=False)
    colors = palette(methods)
    for ax, d in zip(axes[0], ["digital", *devices]):
        for m in methods:
            src = [r for r in rows if r["method"] == m] if d == "digital" else \
                [r for r in hw if r["method"] == m and r["device"] == d]
            src = [r for r in src if str(r["exit"]) == exit_key]
            ys = [_mean([r["accuracy"] for r in src if int(r["severity"]) == s]) for s in [0, *severities]]
            ax.plot([0, *severities], ys, marker="o", ms=3, color=colors[m], label=m)
        ax.set_title(d, fontsize=9)
        ax.set_xlabel("severity (mean over corruptions)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Does corruption robustness carry over to weight noise? (mean over chips)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
