"""Light-weight Calibrator (experiments/calibrator_adapt.py): on a domain pair (vs source-only and DANN) and on
chip instances (vs no calibration and chip-in-the-loop fine-tuning), FFT spectra.

Three stages: ``_plan`` (settings checked, the one chip resolved, the classifier opened, run directory started),
``_measure`` (the calibrator's cost on that chip, the domain pair, the chip instances of that chip), ``_write``
(CSVs, tables, plots, manifest). The chip the energy prices is the chip the chip instances deploy."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..adaptation import (Calibrated, finetune_chip, high_frequency_share, mean_spectrum, train_calibrator,
                          train_chip_calibrator, train_dann)
from ..analysis.sweep import human_time
from ..data import Split, available_datasets, dataset_key, load_dataset
from ..data.corruptions import check_corruptions, corrupt_split
from ..models.evaluation import evaluate
from ..hardware import Chip, chip_ids, chip_report
from ..hardware.engine import deploy
from ..hardware.recalibrate import batchnorm_layers, recalibrate_bn
from ..models.calibrator import Calibrator, count_macs
from ..output import format_table, plt, save_figure, write_rows_csv
from ..run_dir import RunDirectory
from ..utils import atomic_write_text, resolve_device
from .config import ChipSettings, EvaluationSettings, SettingError, check_chips_per_seed
from .spine import (Checkpoint, Opened, StudyResult, cached_checkpoint, check_checkpoint_dataset, open_checkpoint,
                    stamp, start_run)

Batches = list[tuple[torch.Tensor, torch.Tensor]]
# images per chip instance, for training and for test: each chip trains its own calibrator and fine-tunes its own
# weights, so the chip study's cost grows with chips × epochs × these images
CHIP_IMAGES = 1000


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
class CalibratorConfig(EvaluationSettings, ChipSettings):
    """Settings of the calibrator study (field names = the CLI's option names).

    The chip (``device``, ``device_set``, the architecture settings): its chip instances are calibrated when
    ``device`` is given, and the calibrator's energy is priced on it (on reram when ``device`` is None). The
    device file's converters unless ``adc_bits`` is set (a file without converters: ideal converters in
    accuracy, energy priced at 8-bit ADCs; the tables say so).
    """

    KIND = "calibrator_adapt"
    RENAMED = {"checkpoint": "checkpoints"}
    CHIP_DEFAULTS = {"adc_bits": None, "ranging": None}
    PRICED_DEVICE = "reram"  # the chip that prices the energy when no device is given

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
        """The chip instances: --chip-seeds as given, else ``chips`` of the study's seed (``hardware.chip_ids``: seed
        0's are 0 .. chips-1; each seed its own, so a study repeated over seeds nests its chips in them)."""
        return list(self.chip_seeds) if self.chip_seeds is not None else chip_ids(self.seed, self.chips)

    def settings(self) -> dict[str, Any]:
        return dict(super().settings(), target="none" if self.target is None else self.target)


@dataclass
class CalibratorPlan:
    """What the study measures: its settings, the one chip (priced for energy; deployed as chip instances when
    ``chip_instances``), the inference time, the opened classifier, the torch device, the started run directory."""

    conf: CalibratorConfig
    chip: Chip
    chip_instances: bool
    t_chip: float
    ckpt: Checkpoint
    opened: Opened
    dev: torch.device
    out: Path
    run: RunDirectory
    say: Callable[[str], None]

    def batches(self, split: Split, n: int | None = None, bs: int = 128) -> Batches:
        """A fixed, seeded selection of ``n`` (default: ``samples``) images of ``split``."""
        return self.opened.batches(split, self.conf.samples if n is None else n, self.conf.seed, bs)


@dataclass
class DomainResult:
    """The domain pair: accuracy rows, the calibrator's training history, its spectra and example inputs."""

    label: str
    rows: list[dict[str, Any]]
    history: list[dict[str, Any]]
    n_target: int
    n_source: int
    spectra: dict[str, torch.Tensor]
    calibrator: Calibrator
    examples: torch.Tensor


@dataclass
class ChipsResult:
    """The chip instances: one row per chip, every calibrator on every chip, image counts."""

    rows: list[dict[str, Any]]
    cross: list[dict[str, Any]]
    n_test: int
    n_train: int


@dataclass
class CalibratorMeasurements:
    """The calibrator's cost on the chip, and the domain pair and chip instances where they ran."""

    cost: dict[str, Any]
    domain: DomainResult | None
    chips: ChipsResult | None


def calibrator_adapt_run(config: CalibratorConfig | None = None, *, out: str | Path | None = None,
                         progress: bool = True, log: Callable[[str], None] = print, **settings: Any) -> StudyResult:
    """Domain-pair adaptation (``target``) and/or chip-instance calibration (``device``); writes CSVs,
    tables, plots, config.toml and a manifest."""
    plan = _plan(CalibratorConfig.make(config, **settings), out, progress, log)
    return _write(plan, _measure(plan))


def _check(conf: CalibratorConfig) -> None:
    """Refuse settings that cannot run, before any work."""
    if conf.target is None and conf.device is None:
        raise ValueError("nothing to do: give --target (a domain pair) and/or --device (chip-instance calibration)")
    if conf.chip_seeds is None:
        check_chips_per_seed("chips", conf.chips)
    if conf.device is not None and len(conf.seeds) < 1:
        raise SettingError("chip_seeds" if conf.chip_seeds is not None else "chips", "needs at least one chip")
    if conf.checkpoints and len(conf.checkpoints) > 1:
        raise SettingError("checkpoints", f"takes one file (calibrator_adapt adapts one classifier), got "
                                          f"{len(conf.checkpoints)}")
    for name in ("epochs", "samples"):
        if getattr(conf, name) < 1:
            raise SettingError(name, f"must be ≥ 1, got {getattr(conf, name)}")
    target = conf.target
    if target is not None:  # a misspelt target must not cost the training of the classifier first
        base = target[:-2] if target.lower().endswith("-c") else target
        if dataset_key(base) not in available_datasets():
            raise ValueError(f"unknown target {target!r}: give one of {', '.join(available_datasets())}, "
                             "or <dataset>-C for a corrupted copy")
        if base != target:
            check_corruptions([conf.corruption])


def _plan(conf: CalibratorConfig, out: str | Path | None, progress: bool, log: Callable[[str], None]
          ) -> CalibratorPlan:
    """Check the settings, resolve the one chip, open (or train) the classifier; start the run directory."""
    _check(conf)
    # the one chip: the chip instances deploy it, the energy prices it (reram's when no device is given)
    chip = conf.chip(conf.device or conf.PRICED_DEVICE)
    t_chip = chip.spec.inference_time() if conf.device is not None else 1.0
    dev = resolve_device(conf.torch_device)
    ckpt = Checkpoint(conf.checkpoints[0] if conf.checkpoints else cached_checkpoint(
        "baseline", conf.source, conf.data_dir, conf.seed, progress=progress, torch_device=conf.torch_device,
        **conf.budget))
    check_checkpoint_dataset(ckpt.path, ckpt.payload, conf.source, "--source")
    opened = open_checkpoint(ckpt, conf.data_dir, dev)
    run_dir, run = start_run(conf, out, Path("runs") / "calibrator" / stamp(), dict(
        checkpoint=str(ckpt.path), source=opened.info["name"], target=conf.target, device=conf.device,
        chip_seeds=conf.seeds, corruption=conf.corruption, severity=conf.severity, epochs=conf.epochs,
        width=conf.width, blocks=conf.blocks, epsilon=conf.epsilon, samples=conf.samples, seed=conf.seed,
        chip=chip.summary()), checkpoints={"classifier": ckpt})
    say = (lambda msg: log(f"[calibrator] {msg}")) if progress else (lambda msg: None)
    return CalibratorPlan(conf, chip, conf.device is not None, t_chip, ckpt, opened, dev, run_dir, run, say)


def _measure(plan: CalibratorPlan) -> CalibratorMeasurements:
    """The calibrator's cost on the chip, then the domain pair (with a target), then the chip instances (with a
    device), in this order (the training steps seed torch's generator themselves, fine-tuning draws from it)."""
    calib = plan.opened.calibration(plan.conf.seed)  # fixed training images: activity, converter ranges
    cost = _cost(plan, calib)
    src_test = plan.batches(plan.opened.data.test)
    domain = _adapt_domain(plan, src_test) if plan.conf.target is not None else None
    chips = _calibrate_chips(plan, calib) if plan.chip_instances else None
    return CalibratorMeasurements(cost, domain, chips)


def _cost(plan: CalibratorPlan, calib_imgs: list[torch.Tensor]) -> dict[str, Any]:
    """Parameters, MACs and energy per inference of the calibrator and the classifier, on the study's chip; input
    activity measured on the fixed calibration images (the classifier's on uncalibrated inputs)."""
    conf, info, classifier = plan.conf, plan.opened.info, plan.opened.model
    shape = (info["channels"], info["image_size"], info["image_size"])
    # the probe's weights from the study's seed (torch's own generator starts from a random seed): its measured
    # input activity, hence its energy, is the same in every run; torch's generator is left as it was
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(conf.seed)
        probe = Calibrator(info["channels"], conf.width, conf.blocks, conf.epsilon).to(plan.dev)
    cost: dict[str, Any] = {"calibrator_params": sum(p.numel() for p in probe.parameters()),
                            "classifier_params": sum(p.numel() for p in classifier.parameters()),
                            "calibrator_macs": count_macs(probe, shape), "classifier_macs": count_macs(classifier, shape)}
    cost["mac_ratio"] = cost["calibrator_macs"] / cost["classifier_macs"]
    cost["energy_device"] = plan.chip.name
    cost["converters"] = plan.chip.converters
    cost["classifier_energy_pJ"] = chip_report(classifier, plan.chip, calibration=calib_imgs)["exits"][-1]["energy_pJ"]
    cost["calibrator_energy_pJ"] = chip_report(probe, plan.chip, calibration=calib_imgs)["chip"]["energy_pJ"]
    cost["calibrated_energy_pJ"] = cost["classifier_energy_pJ"] + cost["calibrator_energy_pJ"]
    cost["energy_ratio"] = cost["calibrator_energy_pJ"] / cost["classifier_energy_pJ"]
    return cost


def _adapt_domain(plan: CalibratorPlan, src_test: Batches) -> DomainResult:
    """Source-only vs DANN (fine-tuned features) vs the calibrator (classifier frozen) on the target domain."""
    conf, info, src, classifier = plan.conf, plan.opened.info, plan.opened.data, plan.opened.model
    assert conf.target is not None  # _measure adapts a domain pair only when a target is given
    tgt_train, tgt_test, tgt_label = _target_splits(conf.target, info, conf.data_dir, conf.seed, conf.corruption,
                                                    conf.severity, src)
    src_train, tgt_train_b, tgt_test_b = plan.batches(src.train), plan.batches(tgt_train), plan.batches(tgt_test)
    plan.say(f"{info['name']} → {tgt_label}: calibrator ({conf.epochs} epochs on {len(tgt_train_b)} unlabeled "
             "target batches)")
    cal, history = train_calibrator(classifier, src_train, tgt_train_b, epochs=conf.epochs, width=conf.width,
                                    blocks=conf.blocks, epsilon=conf.epsilon, seed=conf.seed)
    plan.say(f"{info['name']} → {tgt_label}: DANN reference ({conf.epochs} epochs)")
    dann = train_dann(classifier, src_train, tgt_train_b, epochs=conf.epochs, seed=conf.seed)
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
    with torch.no_grad():
        spectra = {"source": mean_spectrum(x for x, _ in src_test),
                   "target": mean_spectrum(x for x, _ in tgt_test_b),
                   "calibrated target": mean_spectrum(cal(x.to(plan.dev)).cpu() for x, _ in tgt_test_b)}
    return DomainResult(tgt_label, rows, history, sum(len(b[1]) for b in tgt_test_b), sum(len(b[1]) for b in src_test),
                        spectra, cal, tgt_test_b[0][0][:8].to(plan.dev))


def _calibrate_chips(plan: CalibratorPlan, calib: list[torch.Tensor]) -> ChipsResult:
    """For each chip instance: no calibration, its own calibrator, BN recalibration, fine-tuned weights; then every
    calibrator on every chip. Converters with a fixed range are calibrated on ``calib`` (the images the energy's
    activity was measured on)."""
    conf, src, classifier = plan.conf, plan.opened.data, plan.opened.model
    train_b = plan.batches(src.train, min(conf.samples, CHIP_IMAGES))
    test_b = plan.batches(src.test, min(conf.samples, CHIP_IMAGES), 250)
    plan.say(f"{plan.chip.name} (t = {human_time(plan.t_chip)}): {len(conf.seeds)} chips — calibrator and "
             "fine-tuning per chip")
    chips = {s: deploy(classifier, plan.chip, s, t_inference=plan.t_chip, calibration=calib) for s in conf.seeds}
    cals, rows, cross = {}, [], []
    for s, chip in chips.items():
        cals[s] = train_chip_calibrator(classifier, chip, train_b, epochs=conf.epochs, width=conf.width,
                                        blocks=conf.blocks, epsilon=conf.epsilon, seed=conf.seed)
        rows.append(_one_chip(plan, s, chip, cals[s], train_b, test_b))
    for a in conf.seeds:
        for b in conf.seeds:
            cross.append({"calibrator of chip": a, "evaluated on chip": b,
                          "accuracy": evaluate(Calibrated(cals[a], chips[b]), test_b).final})
    others = {a: [c["accuracy"] for c in cross if c["calibrator of chip"] == a and c["evaluated on chip"] != a]
              for a in conf.seeds}
    for r in rows:
        r["on other chips (mean)"] = sum(others[r["chip"]]) / len(others[r["chip"]]) if others[r["chip"]] else None
    return ChipsResult(rows, cross, sum(len(b[1]) for b in test_b), sum(len(b[1]) for b in train_b))


def _one_chip(plan: CalibratorPlan, seed: int, chip: torch.nn.Module, cal: Calibrator, train_b: Batches,
              test_b: Batches) -> dict[str, Any]:
    """One chip instance's row: digital, uncalibrated, its calibrator, BN recalibration, fine-tuned weights."""
    classifier = plan.opened.model
    tuned = finetune_chip(classifier, chip, train_b, epochs=plan.conf.epochs)
    # the zero-parameter baseline: the chip's BN statistics re-estimated on the same unlabeled images
    recal = recalibrate_bn(copy.deepcopy(chip), torch.cat([x for x, _ in train_b])) if batchnorm_layers(chip) else None
    return {"chip": seed, "digital": evaluate(classifier, test_b).final, "no calibration": evaluate(chip, test_b).final,
            "calibrator": evaluate(Calibrated(cal, chip), test_b).final,
            "BN recalibration": evaluate(recal, test_b).final if recal is not None else None,
            "fine-tuned weights": evaluate(tuned, test_b).final}


def _write(plan: CalibratorPlan, found: CalibratorMeasurements) -> StudyResult:
    """The domain pair's and the chip instances' CSVs, tables and plots; table.md and the finished manifest."""
    tables: list[str] = []
    plots: list[Path] = []
    results: dict[str, Any] = {"cost": found.cost}
    if found.domain is not None:
        tables.append(_write_domain(plan, found.domain, found.cost, results, plots))
    if found.chips is not None:
        tables.append(_write_chips(plan, found.chips, results, plots))
    table = "\n\n".join(tables)
    atomic_write_text(plan.out / "table.md", table + "\n")
    plan.run.finish(results=results, plots=[p.name for p in plots])
    rows = found.chips.rows if found.chips is not None else found.domain.rows if found.domain is not None else []
    return StudyResult(plan.out, table, rows, plots, {
        "cost": found.cost, "domain": found.domain.rows if found.domain is not None else None,
        "chips": found.chips.rows if found.chips is not None else None,
        "cross": found.chips.cross if found.chips is not None else None, "chip": plan.chip.summary()})


def _write_domain(plan: CalibratorPlan, domain: DomainResult, cost: dict[str, Any], results: dict[str, Any],
                  plots: list[Path]) -> str:
    """calibrator_history.csv, domain.csv, the spectra and example plots; its table."""
    out, source = plan.out, plan.opened.info["name"]
    write_rows_csv(out / "calibrator_history.csv", domain.history)
    write_rows_csv(out / "domain.csv", [dict(r, source=source, target=domain.label) for r in domain.rows])
    results["domain"] = domain.rows
    results["domain_images"] = {"target test": domain.n_target, "source test": domain.n_source}
    results["high_frequency_share"] = {k: high_frequency_share(v) for k, v in domain.spectra.items()}
    plots += _plot_spectra(domain.spectra, out / "fft_spectra", f"{source} → {domain.label}")
    plots += _plot_examples(domain.calibrator, domain.examples, out / "calibrated_examples")
    return format_table(domain.rows, list(domain.rows[0]), title=(
        f"{source} → {domain.label}: test accuracy (%), {domain.n_target} target / {domain.n_source} source test "
        f"images; calibrator {cost['calibrator_params']} params, {100 * cost['mac_ratio']:.1f} % of the "
        f"classifier's MACs, {100 * cost['energy_ratio']:.1f} % of its energy on {cost['energy_device']} "
        f"({plan.chip.config.adc_bits}-bit ADCs; {cost['calibrated_energy_pJ'] / 1e3:.1f} nJ per calibrated "
        "inference)"))


def _write_chips(plan: CalibratorPlan, chips: ChipsResult, results: dict[str, Any], plots: list[Path]) -> str:
    """chips.csv, chips_cross.csv and the transfer plot; its table (the converters stated)."""
    name, rows = plan.chip.name, chips.rows
    write_rows_csv(plan.out / "chips.csv", [dict(r, device=name) for r in rows])
    write_rows_csv(plan.out / "chips_cross.csv", [dict(r, device=name) for r in chips.cross])
    present = {k: [r[k] for r in rows if r[k] is not None] for k in rows[0] if k != "chip"}
    mean = {k: sum(v) / len(v) if v else None for k, v in present.items()}
    results["chips"] = rows
    results["chip_images"] = {"test": chips.n_test, "train": chips.n_train}
    plots += _plot_cross(chips.cross, plan.conf.seeds, name, plan.out / "chip_cross")
    return format_table(rows + [{"chip": "mean", **mean}], list(rows[0]), title=(
        f"Chip-instance calibration on {name} (t = {human_time(plan.t_chip)}; {plan.chip.converters}), "
        f"{chips.n_test} test images: each chip's own calibrator (and fine-tuned weights), trained on "
        f"{chips.n_train} unlabeled images; BN recalibration: the chip's BN statistics re-estimated on the same "
        "images (one forward pass each, nothing trained); last column: that calibrator on the other chips"))


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
