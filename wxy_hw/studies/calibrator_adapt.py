"""Light-weight Calibrator (experiments/calibrator_adapt.py): on a domain pair (vs source-only and DANN) and on
chip instances (vs no calibration and chip-in-the-loop fine-tuning), FFT spectra."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..adaptation import (Calibrated, finetune_chip, high_frequency_share, mean_spectrum, train_calibrator,
                          train_chip_calibrator, train_dann)
from ..analysis.sweep import human_time
from ..data import Split, available_datasets, load_dataset
from ..data.corruptions import check_corruptions, corrupt_split
from ..models.evaluation import evaluate
from ..hardware import ChipConfig, chip_report
from ..hardware.engine import deploy
from ..hardware.recalibrate import batchnorm_layers, recalibrate_bn
from ..hardware.spec import load_device
from ..models.calibrator import Calibrator, count_macs
from ..output import format_table, plt, save_figure, write_rows_csv
from ..utils import atomic_write_text, resolve_device
from .config import EvaluationSettings
from .spine import Checkpoint, cached_checkpoint, check_checkpoint_dataset, open_checkpoint, stamp, start_run


def _target_splits(target: str, info: dict[str, Any], data_dir, seed: int, corruption: str, severity: int,
                   source_data) -> tuple[Split, Split, str]:
    """(unlabeled training split, test split, label) of the target domain, in the classifier's geometry."""
    if target.lower().endswith("-c"):  # e.g. fashion_mnist-C: the source dataset, corrupted
        check_corruptions([corruption])
        base = target[:-2]
        data = source_data if base == info["name"] else load_dataset(base, data_dir, image_size=info["image_size"],
                                                                   channels=info["channels"], seed=seed)
        return (corrupt_split(data.train, corruption, severity, seed=seed),
                corrupt_split(data.test, corruption, severity, seed=seed + 1), f"{base}-C ({corruption} s{severity})")
    data = load_dataset(target, data_dir, image_size=info["image_size"], channels=info["channels"], seed=seed)
    return data.train, data.test, target


@dataclass
class CalibratorConfig(EvaluationSettings):
    """Settings of the calibrator study (field names = the CLI's option names)."""

    KIND = "calibrator_adapt"
    RENAMED = {"checkpoint": "checkpoints"}

    source: str = "mnist5k"
    target: str | None = "digits"
    corruption: str = "gaussian_noise"
    severity: int = 5
    device: str | None = None
    chips: int = 5
    chip_seeds: list[int] | None = None
    checkpoints: list[str] | None = None
    epochs: int = 5
    width: int = 8
    blocks: int = 1
    epsilon: float = 1.0
    samples: int = 2000

    def __post_init__(self) -> None:
        if isinstance(self.target, str) and self.target.lower() == "none":
            self.target = None  # a config file cannot hold None: "none" stands for it
        if isinstance(self.checkpoints, (str, Path)):
            self.checkpoints = [self.checkpoints]

    @property
    def seeds(self) -> list[int]:
        """The chip instances: --chip-seeds as given, else seeds 0 .. chips-1."""
        return list(self.chip_seeds) if self.chip_seeds is not None else list(range(self.chips))

    def settings(self) -> dict[str, Any]:
        return dict(super().settings(), target="none" if self.target is None else self.target)


def calibrator_adapt_run(config: CalibratorConfig | None = None, *, out: str | Path | None = None,
                         progress: bool = True, log: Callable[[str], None] = print, **settings: Any) -> dict[str, Any]:
    """Domain-pair adaptation (``target``) and/or chip-instance calibration (``device``); writes CSVs,
    tables, plots, config.toml and a manifest."""
    conf = CalibratorConfig.make(config, **settings)
    source, target, device, chip_seeds = conf.source, conf.target, conf.device, conf.seeds
    corruption, severity, epochs, width, blocks = conf.corruption, conf.severity, conf.epochs, conf.width, conf.blocks
    epsilon, samples, data_dir, seed = conf.epsilon, conf.samples, conf.data_dir, conf.seed
    if target is None and device is None:
        raise ValueError("nothing to do: give --target (a domain pair) and/or --device (chip-instance calibration)")
    spec = load_device(device) if device else None
    t_chip = 1.0
    if spec is not None:
        t_chip = spec.inference_time()
        if len(chip_seeds) < 1:
            raise ValueError("--chips needs at least one chip")
    if conf.checkpoints and len(conf.checkpoints) > 1:
        raise ValueError(f"calibrator_adapt adapts one classifier; --checkpoints got {len(conf.checkpoints)} files: give one")
    if epochs < 1 or samples < 1:
        raise ValueError("--epochs and --samples must be ≥ 1")
    if target is not None:  # a misspelt target must not cost the training of the classifier first
        base = target[:-2] if target.lower().endswith("-c") else target
        if base.lower().replace("-", "_") not in available_datasets():
            raise ValueError(f"unknown target {target!r}: give one of {', '.join(available_datasets())}, "
                             "or <dataset>-C for a corrupted copy")
        if base != target:
            check_corruptions([corruption])
    dev = resolve_device(conf.torch_device)
    say = (lambda msg: log(f"[calibrator] {msg}")) if progress else (lambda msg: None)
    ckpt = Checkpoint(conf.checkpoints[0] if conf.checkpoints else cached_checkpoint(
        "baseline", source, data_dir, seed, progress=progress, device=conf.torch_device,
        **conf.budget))
    check_checkpoint_dataset(ckpt.path, ckpt.payload, source, "--source")
    opened = open_checkpoint(ckpt, data_dir, dev)
    info, src, classifier = opened.info, opened.data, opened.model

    def batches(split: Split, n: int = samples, bs: int = 128) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return opened.batches(split, n, seed, bs)

    out, run = start_run(conf, out, Path("runs") / "calibrator" / stamp(), dict(
        checkpoint=str(ckpt.path), source=info["name"], target=target, device=device, chip_seeds=list(chip_seeds),
        corruption=corruption, severity=severity, epochs=epochs, width=width, blocks=blocks, epsilon=epsilon,
        samples=samples, seed=seed))
    shape = (info["channels"], info["image_size"], info["image_size"])
    probe = Calibrator(info["channels"], width, blocks, epsilon).to(dev)
    cost = {"calibrator_params": sum(p.numel() for p in probe.parameters()),
            "classifier_params": sum(p.numel() for p in classifier.parameters()),
            "calibrator_macs": count_macs(probe, shape), "classifier_macs": count_macs(classifier, shape)}
    cost["mac_ratio"] = cost["calibrator_macs"] / cost["classifier_macs"]
    # energy per inference on one chip (the --device's, else reram) from the one cost model; input
    # activity measured on the fixed calibration images (the classifier's on uncalibrated inputs)
    chip_cfg = ChipConfig(device=device or "reram")
    calib_imgs = opened.calibration(seed)
    cost["energy_device"] = chip_cfg.device
    cost["classifier_energy_pJ"] = chip_report(classifier, chip_cfg, calibration=calib_imgs)["exits"][-1]["energy_pJ"]
    cost["calibrator_energy_pJ"] = chip_report(probe, chip_cfg, calibration=calib_imgs)["chip"]["energy_pJ"]
    cost["calibrated_energy_pJ"] = cost["classifier_energy_pJ"] + cost["calibrator_energy_pJ"]
    cost["energy_ratio"] = cost["calibrator_energy_pJ"] / cost["classifier_energy_pJ"]
    tables, plots, results = [], [], {"cost": cost}
    src_test = batches(src.test)

    if target is not None:
        tgt_train, tgt_test, tgt_label = _target_splits(target, info, data_dir, seed, corruption, severity, src)
        src_train, tgt_train_b, tgt_test_b = batches(src.train), batches(tgt_train), batches(tgt_test)
        say(f"{info['name']} → {tgt_label}: calibrator ({epochs} epochs on {len(tgt_train_b)} unlabeled target batches)")
        cal, history = train_calibrator(classifier, src_train, tgt_train_b, epochs=epochs, width=width, blocks=blocks,
                                        epsilon=epsilon, seed=seed)
        write_rows_csv(out / "calibrator_history.csv", history)
        say(f"{info['name']} → {tgt_label}: DANN reference ({epochs} epochs)")
        dann = train_dann(classifier, src_train, tgt_train_b, epochs=epochs, seed=seed)
        calibrated = Calibrated(cal, classifier)
        rows = [
            {"method": "source only", "target acc": evaluate(classifier, tgt_test_b).final,
             "source acc": evaluate(classifier, src_test).final, "source acc (inputs calibrated)": None},
            {"method": "DANN (fine-tuned features)", "target acc": evaluate(dann, tgt_test_b).final,
             "source acc": evaluate(dann, src_test).final, "source acc (inputs calibrated)": None},
            {"method": "calibrator (classifier frozen)", "target acc": evaluate(calibrated, tgt_test_b).final,
             "source acc": evaluate(classifier, src_test).final,
             "source acc (inputs calibrated)": evaluate(calibrated, src_test).final},
        ]
        write_rows_csv(out / "domain.csv", [dict(r, source=info["name"], target=tgt_label) for r in rows])
        tables.append(format_table(rows, list(rows[0]), title=(
            f"{info['name']} → {tgt_label}: test accuracy (%), {sum(len(b[1]) for b in tgt_test_b)}"
            f" target / {sum(len(b[1]) for b in src_test)} source test images; calibrator {cost['calibrator_params']} "
            f"params, {100 * cost['mac_ratio']:.1f} % of the classifier's MACs, {100 * cost['energy_ratio']:.1f} % of "
            f"its energy on {cost['energy_device']} ({cost['calibrated_energy_pJ'] / 1e3:.1f} nJ per calibrated "
            f"inference)")))
        results["domain"] = rows
        with torch.no_grad():
            spectra = {"source": mean_spectrum(x for x, _ in src_test),
                       "target": mean_spectrum(x for x, _ in tgt_test_b),
                       "calibrated target": mean_spectrum(cal(x.to(dev)).cpu() for x, _ in tgt_test_b)}
        results["high_frequency_share"] = {k: high_frequency_share(v) for k, v in spectra.items()}
        plots += _plot_spectra(spectra, out / "fft_spectra", f"{info['name']} → {tgt_label}")
        plots += _plot_examples(cal, tgt_test_b[0][0][:8].to(dev), out / "calibrated_examples")

    if spec is not None:
        train_b = batches(src.train, min(samples, 1000))
        test_b = batches(src.test, min(samples, 1000), 250)
        say(f"{spec.name} (t = {human_time(t_chip)}): {len(chip_seeds)} chips — calibrator and fine-tuning per chip")
        chips = {s: deploy(classifier, spec, s, t_inference=t_chip) for s in chip_seeds}
        cals, rows, cross = {}, [], []
        for s, chip in chips.items():
            cals[s] = train_chip_calibrator(classifier, chip, train_b, epochs=epochs, width=width, blocks=blocks,
                                            epsilon=epsilon, seed=seed)
            tuned = finetune_chip(classifier, chip, train_b, epochs=epochs)
            # the zero-parameter baseline: the chip's BN statistics re-estimated on the same unlabeled images
            recal = recalibrate_bn(copy.deepcopy(chip), torch.cat([x for x, _ in train_b])) \
                if batchnorm_layers(chip) else None
            rows.append({"chip": s, "digital": evaluate(classifier, test_b).final, "no calibration":
                         evaluate(chip, test_b).final, "calibrator": evaluate(Calibrated(cals[s], chip), test_b).final,
                         "BN recalibration": evaluate(recal, test_b).final if recal is not None else None,
                         "fine-tuned weights": evaluate(tuned, test_b).final})
            del tuned, recal
        for a in chip_seeds:
            for b in chip_seeds:
                cross.append({"calibrator of chip": a, "evaluated on chip": b,
                              "accuracy": evaluate(Calibrated(cals[a], chips[b]), test_b).final})
        others = {a: [c["accuracy"] for c in cross if c["calibrator of chip"] == a and c["evaluated on chip"] != a]
                  for a in chip_seeds}
        for r in rows:
            r["on other chips (mean)"] = sum(others[r["chip"]]) / len(others[r["chip"]]) if others[r["chip"]] else None
        write_rows_csv(out / "chips.csv", [dict(r, device=spec.name) for r in rows])
        write_rows_csv(out / "chips_cross.csv", [dict(r, device=spec.name) for r in cross])
        present = {k: [r[k] for r in rows if r[k] is not None] for k in rows[0] if k != "chip"}
        mean = {k: sum(v) / len(v) if v else None for k, v in present.items()}
        tables.append(format_table(rows + [{"chip": "mean", **mean}], list(rows[0]), title=(
            f"Chip-instance calibration on {spec.name} (t = {human_time(t_chip)}), {sum(len(b[1]) for b in test_b)} "
            f"test images: each chip's own calibrator (and fine-tuned weights), trained on "
            f"{sum(len(b[1]) for b in train_b)} unlabeled images; BN recalibration: the chip's BN statistics "
            f"re-estimated on the same images (one forward pass each, nothing trained); last column: that "
            f"calibrator on the other chips")))
        results["chips"] = rows
        plots += _plot_cross(cross, list(chip_seeds), spec.name, out / "chip_cross")

    table = "\n\n".join(tables)
    atomic_write_text(out / "table.md", table + "\n")
    run.finish(results=results, plots=[p.name for p in plots])
    return {"run_dir": str(out), "table": table, "plots": [str(p) for p in plots]}


def _plot_spectra(spectra: dict[str, torch.Tensor], path: Path, title: str) -> list[Path]:
    fig, axes = plt.subplots(1, len(spectra), figsize=(3.2 * len(spectra), 3.2))
    for ax, (name, spec) in zip(axes, spectra.items()):
        im = ax.imshow(torch.log1p(spec).numpy(), cmap="magma")
        ax.set_title(f"{name}\nhigh-freq. share {high_frequency_share(spec):.3f}", fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"{title}: mean |FFT| of the inputs (log, centred)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


@torch.no_grad()
def _plot_examples(cal, x: torch.Tensor, path: Path) -> list[Path]:
    xc = cal(x)
    fig, axes = plt.subplots(3, len(x), figsize=(1.2 * len(x), 3.8))
    for i in range(len(x)):
        for row, (img, name) in enumerate(((x[i], "target"), (xc[i], "calibrated"), (xc[i] - x[i], "δ"))):
            axes[row, i].imshow(img.mean(0).cpu().numpy(), cmap="gray" if row < 2 else "coolwarm")
            axes[row, i].axis("off")
            if i == 0:
                axes[row, i].set_title(name, fontsize=8, loc="left")
    fig.tight_layout()
    return save_figure(fig, path)


def _plot_cross(cross, seeds, device: str, path: Path) -> list[Path]:
    m = torch.tensor([[next(c["accuracy"] for c in cross if c["calibrator of chip"] == a and c["evaluated on chip"] == b)
                       for b in seeds] for a in seeds])
    fig, ax = plt.subplots(figsize=(1 + 0.8 * len(seeds), 0.8 + 0.8 * len(seeds)))
    im = ax.imshow(m.numpy(), cmap="viridis")
    for i in range(len(seeds)):
        for j in range(len(seeds)):
            ax.text(j, i, f"{float(m[i, j]):.1f}", ha="center", va="center", fontsize=7, color="w")
    ax.set_xticks(range(len(seeds)), [str(s) for s in seeds])
    ax.set_yticks(range(len(seeds)), [str(s) for s in seeds])
    ax.set_xlabel("evaluated on chip")
    ax.set_ylabel("calibrator trained for chip")
    ax.set_title(f"{device}: calibrator transfer", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return save_figure(fig, path)
