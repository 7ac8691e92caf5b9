"""Corruption robustness (experiments/corruption_robustness.py): the corruption benchmark (seed-style table,
mCE), adversarial accuracy, the same corruption table on simulated hardware, plots."""
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
from ..data.corruptions import SEED_CORRUPTIONS, SEVERITIES, check_corruptions
from ..hardware.montecarlo import deploy_on
from ..hardware.spec import load_device
from ..output import colors as palette, deepest_exit, format_table, plt, save_figure, write_rows_csv
from ..utils import atomic_write_text
from .config import DatasetSettings
from .spine import open_checkpoint, resolve_checkpoints, stamp, start_run

# hwa (trained through reram noise) asks the converse question: does weight-noise robustness buy corruption robustness?
DEFAULT_METHODS = ("baseline", "augment", "ada", "auxiliary", "adv", "hwa")
DEFAULT_CORRUPTIONS = (*SEED_CORRUPTIONS, "rotation")


@dataclass
class RobustnessConfig(DatasetSettings):
    """Settings of the corruption-robustness study (field names = the CLI's option names)."""

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


def corruption_robustness_run(config: RobustnessConfig | None = None, *, out: str | Path | None = None,
                              progress: bool = True, log: Callable[[str], None] = print,
                              **settings: Any) -> dict[str, Any]:
    """Run the benchmark and write CSVs, tables, plots, config.toml and a manifest; returns a summary with the tables."""
    conf = RobustnessConfig.make(config, **settings)
    corruptions, severities, samples, adv_samples = conf.corruptions, conf.severities, conf.samples, conf.adv_samples
    chips, hw_samples, hw_severities, seed = conf.chips, conf.hw_samples, conf.hw_severities, conf.seed
    pca_corruption, pca_severity, corrupted_dir = conf.pca_corruption, conf.pca_severity, conf.corrupted_dir
    if corrupted_dir is None:
        check_corruptions(list(corruptions) + [pca_corruption])
    elif pca_corruption not in corruptions:
        pca_corruption = corruptions[0]
    for s in [*severities, *hw_severities, pca_severity]:
        if not 1 <= int(s) <= 5:
            raise ValueError(f"severities must lie in 1..5 (0 = clean is always included), got {s}")
    if samples < 1 or adv_samples < 0 or hw_samples < 1 or chips < 0:
        raise ValueError("--samples and --hw-samples must be ≥ 1; --adv-samples and --chips ≥ 0")
    specs = [load_device(d) for d in conf.devices]
    t_of = {s.name: s.inference_time() for s in specs}
    attacks = conf.attacks
    paths = resolve_checkpoints(conf.checkpoints, conf.methods, dataset=conf.dataset, data_dir=conf.data_dir, seed=seed,
                                progress=progress, torch_device=conf.torch_device,
                                budget=conf.budget)
    out, run = start_run(conf, out, Path("runs") / "robustness" / stamp(), dict(
        checkpoints={k: str(v) for k, v in paths.items()}, corruptions=list(corruptions), severities=list(severities),
        samples=samples, attacks=attacks, adv_samples=adv_samples, devices={s.name: s.summary() for s in specs},
        t_inference=t_of, chips=chips, hw_samples=hw_samples, hw_severities=list(hw_severities), dataset=conf.dataset,
        seed=seed, corrupted_dir=None if corrupted_dir is None else str(corrupted_dir)))
    say = (lambda msg: log(f"[robustness] {msg}")) if progress else (lambda msg: None)

    rows, adv, hw, consistency, pca = [], [], [], [], {}
    data_cache: dict[tuple, Any] = {}
    for label, path in paths.items():
        opened = open_checkpoint(path, conf.data_dir, conf.torch_device, data_cache)
        full = opened.data.test
        # a published corrupted set is aligned with the test split's order: take its first images
        test = take_subset(full, samples, seed) if corrupted_dir is None else \
            Split(full.images[:samples], full.labels[:samples])
        mean, std = opened.info["mean"], opened.info["std"]
        model = opened.model
        del opened
        say(f"{label}: {len(corruptions)} corruptions × {len(severities)} severities on {len(test)} test images")
        view = dict(seed=seed, cache_dir=conf.cache_dir, corrupted_dir=corrupted_dir)
        rows += corruption_rows(model, test, mean, std, corruptions, severities, **view, method=label)
        clean_feat = deepest_features(model, batches_of(test, mean, std))
        for c in corruptions:
            corrupted = corrupted_view(test, c, 3, **view)
            consistency.append(dict(method=label, corruption=c, severity=3, cosine=feature_consistency(
                clean_feat, deepest_features(model, batches_of(corrupted, mean, std)))))
        pc = corrupted_view(test, pca_corruption, pca_severity, **view)
        pca[label] = (clean_feat, deepest_features(model, batches_of(pc, mean, std)), test.labels)
        if adv_samples and attacks:
            say(f"{label}: adversarial accuracy ({', '.join(attacks)}) on {min(adv_samples, len(test))} images")
            adv += adversarial_rows(model, take_subset(test, adv_samples, seed), mean, std, attacks, seed=seed,
                                    method=label)
        hw_test = take_subset(test, hw_samples, seed) if corrupted_dir is None else \
            Split(test.images[:hw_samples], test.labels[:hw_samples])
        for spec in specs:
            if chips == 0:
                break
            say(f"{label}: {chips} {spec.name} chips (t = {human_time(t_of[spec.name])}), corruptions at severities "
                f"{list(hw_severities)} on {len(hw_test)} images")
            for chip in range(chips):
                deployed = deploy_on(model, spec, 1000 + chip, t_inference=t_of[spec.name])
                hw += corruption_rows(deployed, hw_test, mean, std, corruptions, hw_severities, **view,
                                      method=label, device=spec.name, chip=1000 + chip)
                del deployed
        del model

    exit_key = deepest_exit(rows)
    baseline = "baseline" if any(r["method"] == "baseline" for r in rows) else rows[0]["method"]
    ce = corruption_errors(rows, baseline, exit_key)
    write_rows_csv(out / "corruption.csv", rows)
    write_rows_csv(out / "corruption_errors.csv", ce)
    write_rows_csv(out / "feature_consistency.csv", consistency)
    tables = [_seed_table(rows, ce, consistency, list(corruptions), exit_key, baseline, len(test), list(severities))]
    plots = _plot_severity(rows, list(corruptions), exit_key, out / "accuracy_vs_severity")
    plots += _plot_pca(pca, pca_corruption, pca_severity, out / "feature_pca")
    if adv:
        write_rows_csv(out / "adversarial.csv", adv)
        tables.append(_adv_table(adv))
    if hw:
        write_rows_csv(out / "hardware.csv", hw)
        tables.append(_hw_table(hw, rows, exit_key, t_of, chips, len(hw_test), list(hw_severities)))
        plots += _plot_hw(hw, rows, exit_key, out / "hardware_corruption")
    table = "\n\n".join(tables)
    atomic_write_text(out / "table.md", table + "\n")
    run.finish(results={"mce": {r["method"]: r["ce"] for r in ce if r["corruption"] == "mean"}},
               plots=[p.name for p in plots])
    return {"run_dir": str(out), "table": table, "plots": [str(p) for p in plots]}


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


def _hw_table(hw, rows, exit_key, t_of, chips, n, severities) -> str:
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
    return format_table(trows, list(trows[0]), title=(
        f"On hardware ({times}; mean ± std over {chips} chips, {n} test images, exit {exit_key}): clean accuracy and "
        f"accuracy averaged over all corruptions at severities {severities}"))


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
