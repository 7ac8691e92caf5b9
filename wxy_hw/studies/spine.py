"""The spine every study stands on: default checkpoints (trained and cached when absent), one call that
opens a checkpoint once (model + its data splits + normalisation), and one that starts the run directory.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

import torch

from ..checkpoint import CheckpointError, model_from_payload, read_checkpoint
from ..data import BatchLoader, DatasetSplits, Split, available_datasets, dataset_key, load_dataset
from ..data.base import take_subset
from ..hardware.trace import calibration_inputs
from ..methods import changed_defaults, default_heads, method_traits
from ..models.multi_exit import MultiExitNet
from ..run_dir import RunDirectory, read_marker, set_aside_run
from ..utils import DamagedFileError, file_sha256, read_hashed, read_json, resolve_device
from .config import StudyConfig, read_toml
from .result import StudyResult  # noqa: F401 (every study imports it from here)
from . import zoo
from ..train import EpochHook
from .train import TrainingInterrupted, TrainRunConfig, continue_flags, finished_run, recorded_start, train_run

# The default models a first-time user gets, trained to convergence and shipped in the zoo (zoo/, retrained by
# scripts/train_zoo.sh) for seeds 0-4: every training image, the stem at stride 2 (the most robust shape on reram,
# docs/results.md, and 4x fewer MACs than stride 1), a cosine schedule over 15 epochs with crop / flip
# (baseline: 92.2 % on the test set; about 10 CPU-minutes per model here). A model the zoo lacks trains once
# into runs/cache.
DEFAULT_BUDGET = dict(arch="resnet18", width=0.25, stem_stride=2, epochs=15, subset=None, batch_size=128, lr=0.1)
DEFAULT_SEEDS = (0, 1, 2)  # the main job's training seeds (the zoo holds these and more: 3-4 for the on-chip claims)
HWA_DEFAULT_DEVICE = "reram"  # the hwa method's own default device
# A hardware-aware model is its digital counterpart (the same budget's baseline / self_distillation model) fine-tuned
# through the device's noise for these epochs (at most the budget's) at this learning rate (cosine), as aihwkit's hardware-aware training
# starts from a trained digital network (Rasch et al., Nat. Commun. 14, 5282, 2023). Trained from scratch through
# the noise for the zoo's 15 epochs, hwa and self_distillation+hwa stayed 2.4-2.7 points below the baseline on
# the digital test set (docs/results.md).
HWA_FINETUNE = dict(epochs=5, lr=0.01)
# The device noise (a scale of the device file's) each hardware-aware default model is fine-tuned through when a
# study names none: the largest of 1, 0.75, 0.5 whose seed-0 validation accuracy stays within 1.5 points of the
# baseline's (92.65 %; docs/results.md). hwa at 1: 91.43 %. self_distillation+hwa at 1: 89.45 % (at lr 0.001 too:
# 89.68 %, so not the step size), at 0.75: 90.70 %, at 0.5: 91.35 %. Its cache name says so (``_noise0.5``).
HWA_DEFAULT_NOISE = {"self_distillation+hwa": 0.5}
# The self_distillation model cut for CPU early exit (issue 16, docs/results.md), measured against the earlier
# default (stem stride 1), which ran stage 1 at 28×28 with 16 channels, where a convolution costs about twice per
# MAC what stage 3's does: the same MAC budget (30.5 vs 28.6 MMAC at the deepest exit) spent evenly — the stem
# halves the resolution, twice the channels, and no exit after stage 1.
EARLY_EXIT_VARIANT = dict(width=0.5, stem_stride=2, exit_stages=[2, 3, 4])


def is_hardware_aware(method: str) -> bool:
    """Whether ``method`` (or a part of a '+' composition) trains through a device's noise."""
    return "hwa" in method.split("+")


def digital_counterpart(method: str) -> str:
    """The digital method a hardware-aware one is fine-tuned from: ``method`` without its hwa part (hwa alone:
    baseline)."""
    return "+".join(m for m in method.split("+") if m != "hwa") or "baseline"


# The training settings a cached model takes from train_run's defaults (no budget names them): compared with a cached
# run's record too, so a default changed there is another model as well.
IMPLIED = {f.name: f.default for f in fields(TrainRunConfig)
           if f.name in ("weight_decay", "schedule", "augment", "val_fraction", "max_steps_per_epoch")}

# The training settings a study's manifest records per checkpoint (Checkpoint.record): those that make two models differ.
CHECKPOINT_RECORD = ("epochs", "batch_size", "lr", "weight_decay", "schedule", "augment", "seed")

ZOO_FIRST = "first"  # cached_checkpoint(use_zoo=...): the zoo's model before the cache's (a zoo fine-tune's start)


def cached_checkpoint(method: str, dataset: str = "fashion_mnist", data_dir: str | Path | None = None, seed: int = 0,
                      cache_dir: str | Path = "runs/cache", progress: bool = True, hwa_device: str | None = None,
                      hwa_noise: float | None = None, on_epoch: EpochHook | None = None, **budget: Any) -> Path:
    """best.pt of ``method`` trained with the default budget: the trained run in ``cache_dir``, else the zoo's
    (``studies.zoo``: shipped with wxy_hw, sha256-checked), else it trains it (or resumes). ``retrain=True``
    (the studies' --retrain) skips both and trains it afresh into ``cache_dir``; ``use_zoo=False`` skips the zoo
    only (a run already in ``cache_dir`` is kept: how the zoo itself is retrained); ``use_zoo="start"`` skips it for
    the model itself but takes a hardware-aware model's digital start from it (how the zoo's fine-tunes are
    retrained from the shipped digital models: that start is the zoo's file even where ``cache_dir`` holds a training
    run of the digital model, and a cached fine-tune that started from anything else is trained again).

    A hardware-aware method is its digital counterpart (found or trained first, as above) fine-tuned through
    ``hwa_device``'s noise (default reram) for ``HWA_FINETUNE``, cached per device (``<method>@<device>_ft5``),
    so each device gets the model trained for it. A stem stride
    or a set of exit stages other than the default is part of the cache name too
    (``<method>_stem2_exits234``), as are exit heads other than the method's (``_heads-linear``) and a hwa noise
    strength other than 1 (``hwa_noise``: the device noise scaled, ``_noise0.5``; None: the method's
    ``HWA_DEFAULT_NOISE``). ``on_epoch``: a search's pruner (``Trainer.fit``), used only when the model is trained here.
    """
    retrain = bool(budget.pop("retrain", False))
    zoo_use = budget.pop("use_zoo", True)  # True, False, "start" or (for a fine-tune's start) ZOO_FIRST
    use_zoo = bool(zoo_use) and zoo_use != "start"  # for the model itself
    start_from_zoo = bool(zoo_use)  # for a hardware-aware model's digital start
    b = {**DEFAULT_BUDGET, **budget}
    multi_exit = method_traits(method)[0]
    if b.get("exit_stages") is not None and not multi_exit:
        b.pop("exit_stages")  # exit placement shapes multi-exit models; a single-exit method keeps its one exit
    if "heads" in b and (b["heads"] is None or not multi_exit or b["heads"] == default_heads(method)):
        b.pop("heads")  # the method's own heads are the default's cache entry (a single exit keeps its linear one)
    options: dict[str, Any] = {}
    name = method
    if is_hardware_aware(method):
        options["device"] = str(hwa_device or HWA_DEFAULT_DEVICE)
        name = f"{method}@{Path(options['device']).stem}"
        if hwa_noise is None:
            hwa_noise = HWA_DEFAULT_NOISE.get(method, 1.0)
        if hwa_noise != 1.0:
            options["noise_scale"] = float(hwa_noise)
    # a non-default shape names the cache folder and the training message alike: (folder suffix, words)
    stride = b.get("stem_stride", 1)
    shape = ([(f"_stem{stride}", f", stem stride {stride}")] if stride != DEFAULT_BUDGET["stem_stride"] else []) + \
        ([("_exits" + "".join(map(str, b["exit_stages"])), f", exits after stages {b['exit_stages']}")]
         if b.get("exit_stages") is not None else []) + \
        ([(f"_heads-{b['heads']}", f", {b['heads']} exit heads")] if b.get("heads") is not None else []) + \
        ([(f"_noise{options['noise_scale']:g}", f", device noise × {options['noise_scale']:g}")]
         if "noise_scale" in options else [])
    name += "".join(suffix for suffix, _ in shape)
    init: dict[str, Any] = {}
    finetune = {**HWA_FINETUNE, "epochs": min(HWA_FINETUNE["epochs"], b["epochs"])}  # never longer than the training
    if is_hardware_aware(method):
        name += f"_ft{finetune['epochs']}"
    out = Path(cache_dir) / zoo.cache_key(dataset, b["arch"], b["width"], b["epochs"], b["subset"], seed) / name
    if zoo_use == ZOO_FIRST and not retrain and (first := zoo.find(out.parent.name, name)) is not None:
        return first  # the start of a fine-tune the zoo ships: the zoo's own file, whatever the cache holds
    # a cached run that no longer reads back is set aside and retrained (one line): the cache is the tool's own,
    # and a user who asked for a noise sweep should get one, not a hunt for a damaged folder
    finished = None if retrain else finished_run(out, "wxy_hw")
    reuse = finished is not None
    stale = changed_defaults(method, options, (finished or {}).get("config", {}).get("method_options") or {})
    finetune_asked = {k: finetune[k] for k in ("epochs", "lr")} if is_hardware_aware(method) else {}
    # a finished run's settings, or those an interrupted one began with (resuming it at another learning rate
    # would finish a model of two recipes)
    begun = finished if finished is not None else {} if retrain else read_marker(out) or {}
    drift = other_settings(begun, {**IMPLIED, **b, **finetune_asked, "method": method, "seed": seed})
    if (reuse and stale) or drift:
        # trained when its method's defaults (auxiliary_adv's merge_bn) or the default recipe (the stem stride, the
        # learning rate) were others, under the same cache name: another model than the one asked for
        why = (f"with defaults since changed ({'; '.join(stale)})" if stale else
               f"with other settings than asked ({'; '.join(drift)})")
        aside = set_aside_run(out, "stale")
        print(f"[wxy_hw] {out} was trained {why}: trained again (the old run is kept as {aside.name})", flush=True)
        reuse = False
    start: Path | None = None
    other_start = False
    if is_hardware_aware(method) and zoo_use == "start":
        # a fine-tune the zoo will ship starts from the file the zoo ships (a study matches it by content): one
        # cached from another start (a training run's full-precision file), finished or not, is trained again
        start = cached_checkpoint(digital_counterpart(method), dataset, data_dir, seed, cache_dir, progress,
                                  retrain=retrain, use_zoo=ZOO_FIRST, **budget)
        other_start = (out / "config.toml").is_file() and not _started_from(out, start)
        if other_start:
            print(f"[wxy_hw] {out} was fine-tuned from another file than the zoo's {start}: trained again", flush=True)
            reuse = False
    if reuse:
        return out / "best.pt"
    shipped = None if retrain or not use_zoo else zoo.find(out.parent.name, name)
    if shipped is not None:
        return shipped
    words = "".join(w for _, w in shape)
    if is_hardware_aware(method):
        digital = digital_counterpart(method)
        if start is None:
            start = cached_checkpoint(digital, dataset, data_dir, seed, cache_dir, progress, retrain=retrain,
                                      use_zoo=start_from_zoo, **budget)
        if start.is_absolute() and start.is_relative_to(Path.cwd()):
            start = start.relative_to(Path.cwd())  # the run's config.toml names it as a checkout would (zoo/...)
        init = {"init": str(start), **finetune}
        words += f", fine-tuned from {digital} at lr {finetune['lr']:g}"
    print(f"[wxy_hw] training the {method} model (cached for every study) on {dataset} ({b['arch']} width {b['width']:g}{words}, "
          f"{b['subset'] or 'all'} images, {init.get('epochs', b['epochs'])} epochs) → {out}", flush=True)
    try:
        # retrained, or begun from another start (never resumed: the resumed run would record the zoo's start)
        flags = {"resume": False, "overwrite": True} if out.exists() and (retrain or other_start) else continue_flags(out)
        train_run(method=method, method_options=options, dataset=dataset, data_dir=data_dir, seed=seed, out=out,
                  resume=flags["resume"], overwrite=flags["overwrite"], progress=progress, on_epoch=on_epoch,
                  **{**b, **init})
    except TrainingInterrupted as exc:
        raise TrainingInterrupted(f"{exc.where}; re-running the same command continues it", exc.where) from None
    return out / "best.pt"


def other_settings(manifest: dict[str, Any], asked: dict[str, Any]) -> list[str]:
    """The settings that make a model (``zoo.model_differences``, starting files apart) in which the training run of
    ``manifest`` differs from ``asked``, only the keys asked compared; none for a run that recorded no config."""
    return zoo.model_differences(manifest["config"] or {}, asked, only_asked=True) if "config" in manifest else []


def _started_from(run: Path, start: Path) -> bool:
    """Whether the training run in ``run`` was fine-tuned from ``start``, by content: the sha256 its manifest recorded
    when the start was loaded; a run recorded before that (no ``init`` entry) by the file now at its config.toml's
    init path."""
    try:
        same = recorded_start(read_json(run / "manifest.json", fix="it is trained again"), start)
    except (OSError, DamagedFileError):
        same = None
    if same is not None:
        return same
    try:
        init = read_toml(run / "config.toml").get("init")
    except (OSError, ValueError):
        return False
    return init is not None and Path(init).is_file() and file_sha256(Path(init)) == file_sha256(start)


def check_checkpoint_dataset(path: str | Path, payload: dict[str, Any], dataset: str | None, flag: str = "--dataset") -> None:
    """Refuse a checkpoint trained on another dataset than the one the command names (no silent substitution)."""
    trained = payload.get("data", {}).get("name")
    if dataset is not None and trained is not None and trained != dataset_key(dataset):
        # advice only a dataset this tool can load: a name such as "../x" or "my_loader" is no --dataset to pass
        other = f"pass {flag} {trained} (or a checkpoint trained on {dataset})" if trained in available_datasets() \
            else f"give a checkpoint trained on {dataset} (no {flag} names {trained!r})"
        raise CheckpointError(f"checkpoint {path} was trained on {trained!r} but {flag} is {dataset!r}; {other}")


class Checkpoint:
    """A checkpoint file, read at most once per run (``payload`` on first use)."""

    def __init__(self, path: str | Path, payload: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self._payload = payload
        self._sha256: str | None = None  # of the bytes ``payload`` was read from
        self._model: MultiExitNet | None = None

    @property
    def payload(self) -> dict[str, Any]:
        """The file's contents, read and validated on first use — with the ``data`` record a study rebuilds the
        dataset from (``read_checkpoint(data=True)``)."""
        if self._payload is None:
            content, self._sha256 = read_hashed(self.path)
            self._payload = read_checkpoint(self.path, data=True, content=content)
        return self._payload

    @property
    def model(self) -> MultiExitNet:
        """The network the file holds, rebuilt and loaded once (on the CPU, eval mode): a checkpoint whose
        architecture or weights do not fit is refused here, before a study starts its run directory."""
        if self._model is None:
            try:
                self._model = model_from_payload(self.payload, self.path)
            except CheckpointError:
                raise
            except (KeyError, ValueError, TypeError, RuntimeError) as exc:
                raise CheckpointError(f"checkpoint {self.path}: its model cannot be rebuilt ({exc}); give a best.pt "
                                      "written by experiments/train.py") from None
        return self._model

    def record(self) -> dict[str, Any]:
        """What a study's manifest keeps of a model it measured, so a table names the exact network behind it: the
        file's sha256 and how it was trained (shape, budget, seed, the selected epoch)."""
        payload = self.payload
        train = payload.get("train_config") or {}
        data = payload.get("data") or {}
        return {"path": str(self.path), "sha256": self._sha256 or file_sha256(self.path), "method": payload.get("method"),
                "model": payload.get("model_config"), "dataset": data.get("name"),
                "train_subset": data.get("train_subset"), "best_epoch": payload.get("best_epoch"),
                **{k: train[k] for k in CHECKPOINT_RECORD if k in train}}

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"Checkpoint({str(self.path)!r})"


def resolve_checkpoints(checkpoints: Sequence[str | Path] | None, methods: Sequence[str], *,
                        dataset: str = "fashion_mnist", data_dir: str | Path | None = None, seed: int = 0,
                        progress: bool = True, torch_device: str = "auto",
                        budget: dict[str, Any] | None = None, flag: str = "--dataset",
                        hwa_device: str | None = None) -> dict[str, Checkpoint]:
    """{label: checkpoint}: the given checkpoints labelled by their method, else the cached defaults of ``methods``
    (hardware-aware ones trained for ``hwa_device``)."""
    if not checkpoints:
        for m in methods:
            method_traits(m)  # a misspelt second method must not wait for the first one's training
        cached = {m: Checkpoint(cached_checkpoint(m, dataset, data_dir, seed, progress=progress, torch_device=torch_device,
                                                  hwa_device=hwa_device, **(budget or {}))) for m in methods}
        for ckpt in cached.values():
            _ = ckpt.model  # validated now, before the study starts its run directory (read once: kept for the study)
        return cached
    found: dict[str, Checkpoint] = {}
    for i, p in enumerate(checkpoints):
        ckpt = Checkpoint(p)
        check_checkpoint_dataset(p, ckpt.payload, dataset, flag)
        _ = ckpt.model  # its architecture and weights fit, checked before any run directory starts
        label = ckpt.payload.get("method", Path(p).parent.name)
        # checkpoints of one method: told apart by their folder, then by the folder above it (seeds of the
        # cached models differ only there), then by their position; never one silently replacing another
        here = Path(p).resolve().parent
        named = [f"{label}:{here.name}"] if here.name != label else []
        for candidate in [label, *named, f"{label}:{here.parent.name}/{here.name}", f"{label}#{i + 1}"]:
            if candidate not in found:
                found[candidate] = ckpt
                break
    return found


@dataclass
class Opened:
    """A checkpoint opened for a study: the model (eval mode, on the torch device), its data, its normalisation."""

    checkpoint: Checkpoint
    model: MultiExitNet
    data: DatasetSplits
    mean: tuple[float, ...]
    std: tuple[float, ...]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.checkpoint.path

    @property
    def norm(self) -> dict[str, tuple[float, ...]]:
        """``mean`` / ``std`` as BatchLoader keywords."""
        return {"mean": self.mean, "std": self.std}

    def trained_images(self) -> Split | None:
        """The training images this model was trained on (its subset of the training split), or None when the
        checkpoint does not record them (written before it did): then only the whole training split is known."""
        if "train_subset" not in self.info:
            return None
        subset = self.info["train_subset"]
        seed = int(self.checkpoint.payload.get("train_config", {}).get("seed", 0))
        return take_subset(self.data.train, int(subset) if subset is not None else None, seed)

    def batches(self, split: Split, n: int, seed: int, batch_size: int = 256) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """A fixed, seeded selection of ``n`` images of ``split`` as normalised (x, y) batches."""
        return list(BatchLoader(take_subset(split, n, seed), batch_size, mean=self.mean, std=self.std))

    def calibration(self, seed: int, images: int | None = None) -> list[torch.Tensor]:
        """The fixed, seeded training images that calibrate converters and measure input activity."""
        extra = {} if images is None else {"images": images}
        return calibration_inputs(self.data.train, self.mean, self.std, seed, **extra)


def open_checkpoint(checkpoint: Checkpoint | str | Path, data_dir: str | Path | None = None,
                    torch_device: str | torch.device = "auto",
                    data_cache: dict[tuple, DatasetSplits] | None = None) -> Opened:
    """Read a checkpoint once and rebuild what a study needs: model, the data splits it was trained on, normalisation.

    ``data_cache`` (a dict kept across calls) loads a dataset once for several checkpoints trained on it.
    """
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else Checkpoint(checkpoint)
    payload = ckpt.payload
    info = payload["data"]
    val_fraction = float(info.get("val_fraction", 0.1))
    key = (info["name"], info["image_size"], info["channels"], payload.get("train_config", {}).get("seed", 0),
           val_fraction)
    cache = data_cache if data_cache is not None else {}
    if key not in cache:
        cache[key] = load_dataset(info["name"], data_dir, image_size=info["image_size"], channels=info["channels"],
                                  seed=key[3], val_fraction=val_fraction)
    model = copy.deepcopy(ckpt.model).to(resolve_device(torch_device))  # each opening its own copy, as before
    return Opened(ckpt, model, cache[key], tuple(info["mean"]), tuple(info["std"]), info)


def start_run(config: StudyConfig, out: str | Path | None, default: Path, manifest: dict[str, Any],
              checkpoints: dict[str, Checkpoint] | None = None) -> tuple[Path, RunDirectory]:
    """Start the run directory (``out``, else ``default``): manifest.json plus the study's config.toml. The
    manifest records each of ``checkpoints`` (label → Checkpoint.record()) under "checkpoint_records"."""
    out = Path(out) if out is not None else default
    records = {label: ckpt.record() for label, ckpt in (checkpoints or {}).items()}  # hashed before the run starts
    run = RunDirectory(out, manifest, kind=config.KIND)
    if records:
        run.manifest["checkpoint_records"] = records
        run.write_manifest()
    config.write(out)
    return out, run


def stamp() -> str:
    """The time stamp of a default run directory name."""
    return time.strftime("%Y%m%d-%H%M%S")
