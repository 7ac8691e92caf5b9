"""Training runs (experiments/train.py): one model, one method, one seed, resumable."""
from __future__ import annotations

import contextlib
import inspect
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import distributed
from ..checkpoint import CheckpointError, load_model, model_from_payload, read_checkpoint
from ..data import load_dataset, make_loaders
from ..models.evaluation import evaluate
from ..methods import build_method, default_heads, method_class, method_traits
from ..models import build_model, exit_costs
from ..models.multi_exit import NUM_STAGES
from ..output import format_table, write_rows_csv
from ..results import exit_columns, seed_table_row
from ..run_dir import RunDirectory, read_marker, run_dir_guard
from ..train import RunDiverged, TrainConfig, Trainer, TrainingInterrupted, divergence_verdict
from ..utils import DamagedFileError, atomic_write_text, read_json, resolve_device, seed_everything, set_aside
from .config import StudyConfig


def default_run_dir(dataset: str, arch: str, width: float, method: str, seed: int) -> Path:
    """runs/train/<dataset>_<arch>_w<width>_<method>_s<seed>."""
    return Path("runs") / "train" / f"{dataset}_{arch}_w{width:g}_{method}_s{seed}"


@dataclass
class TrainRunConfig(StudyConfig):
    """Settings of one training run (field names = experiments/train.py's option names)."""

    KIND = "train"
    RENAMED = {"device": "torch_device", "max_steps": "max_steps_per_epoch"}

    method: str = "self_distillation"
    method_options: dict[str, Any] = field(default_factory=dict)
    arch: str = "resnet18"
    width: float = 0.25
    heads: str | None = None
    stem_stride: int = 1
    exit_stages: list[int] | None = None   # 1-based stage numbers that get an exit; None: every stage
    dataset: str = "fashion_mnist"
    data_dir: str | None = None
    subset: int | None = None
    val_fraction: float = 0.1
    image_size: int | None = None
    channels: int | None = None
    epochs: int = 5
    batch_size: int = 128
    lr: float = 0.1
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    seed: int = 0
    torch_device: str = "auto"
    augment: bool = True
    teacher: str | None = None
    max_steps_per_epoch: int | None = None
    grad_norms_every: int = 0


def _exit_stages(stages: list[int] | None, multi_exit: bool, method: str) -> tuple[int, ...] | None:
    """--exit-stages (1-based, as the tables name exits) as the model's 0-based stage indices."""
    if stages is None:
        return None
    if not multi_exit:
        raise ValueError(f"--exit-stages needs a multi-exit method; '{method}' trains the deepest exit only")
    if any(not 1 <= s <= NUM_STAGES for s in stages) or NUM_STAGES not in stages:
        raise ValueError(f"--exit-stages {' '.join(map(str, stages))}: give stages from 1 to {NUM_STAGES} that include "
                         f"the deepest, {NUM_STAGES} (e.g. --exit-stages 2 3 4)")
    return tuple(sorted({s - 1 for s in stages}))


def train_run(config: TrainRunConfig | None = None, *, out: str | Path | None = None, resume: bool = False,
              overwrite: bool = False, progress: bool = True, **settings: Any) -> dict[str, Any]:
    """Train, select on validation, test the selected checkpoint once; returns a summary dict.

    ``settings``: the fields of TrainRunConfig (``device`` is accepted for ``torch_device``)."""
    conf = TrainRunConfig.make(config, **settings)
    method, method_options, arch, width, heads = conf.method, conf.method_options, conf.arch, conf.width, conf.heads
    dataset, data_dir, subset, val_fraction = conf.dataset, conf.data_dir, conf.subset, conf.val_fraction
    image_size, channels, epochs, batch_size, lr = conf.image_size, conf.channels, conf.epochs, conf.batch_size, conf.lr
    weight_decay, schedule, seed, device, augment = conf.weight_decay, conf.schedule, conf.seed, conf.torch_device, conf.augment
    teacher, max_steps_per_epoch, grad_norms_every = conf.teacher, conf.max_steps_per_epoch, conf.grad_norms_every
    method_options = dict(method_options or {})
    multi_exit, needs_teacher = method_traits(method)
    heads = heads or default_heads(method)
    exit_stages = _exit_stages(conf.exit_stages, multi_exit, method)
    if not 0 < val_fraction < 1:
        raise ValueError(f"--val-fraction must be in (0, 1): model selection needs a validation split, got {val_fraction}")
    if any("seed" in inspect.signature(method_class(m).__init__).parameters for m in method.split("+")):
        method_options.setdefault("seed", seed)  # a method's own random stream (device noise, corruptions) follows --seed
    if resume and overwrite:
        raise ValueError("--resume continues the run in --out, --overwrite replaces it: give one of them")
    if needs_teacher and teacher is None:
        raise ValueError(f"method '{method}' needs --teacher PATH (a best.pt of a trained model)")
    teacher_payload = _teacher_payload(teacher, dataset) if needs_teacher else None  # refused before any work
    out = Path(out) if out is not None else default_run_dir(dataset, arch, width, method, seed)
    # under torchrun every rank trains; rank 0 alone claims the run directory and writes into it
    dist_info, device = distributed.setup(device)
    lead = dist_info is None or dist_info.lead
    guard = run_dir_guard(out, overwrite=overwrite, resume=resume, kind="train", inputs=[teacher] if teacher else [])
    with guard if lead else contextlib.nullcontext():
        if resume:
            _check_resumable(out)
        config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, schedule=schedule,
                             seed=seed, torch_device=device, augment=augment, max_steps_per_epoch=max_steps_per_epoch,
                             grad_norms_every=grad_norms_every, progress=progress)
        seed_everything(seed)
        data = load_dataset(dataset, data_dir, val_fraction=val_fraction, subset=subset, image_size=image_size,
                            channels=channels, seed=seed)
        model = build_model(arch, data.num_classes, data.channels, width, data.image_size, heads,
                            multi_exit=multi_exit, exit_stages=exit_stages, stem_stride=conf.stem_stride)
        if needs_teacher:
            teacher_model = model_from_payload(teacher_payload, teacher)
            tc = teacher_model.config
            for key in ("num_classes", "in_channels", "image_size"):
                if tc[key] != model.config[key]:
                    raise CheckpointError(f"teacher {teacher} has {key} {tc[key]} but the student on {dataset} needs "
                                          f"{model.config[key]}; give a teacher trained with the same --dataset, "
                                          "--image-size and --channels")
            method_options["teacher"] = teacher_model
            if method_options.get("hint_weight"):
                method_options.setdefault("student_features", model.stage_channels[-1])
        loss = build_method(method, **method_options)
        costs = exit_costs(model)  # of the float architecture: quantization does not change MACs
        model = loss.prepare_model(model)
        trainer = Trainer(model, loss, data, config, out)
        if resume:
            trainer.resume()  # refuses a mismatched / unreadable last.pt before the manifest is touched
        if not lead:
            result = trainer.fit()
            distributed.teardown()
            return {"run_dir": str(out), "rank": dist_info.rank, "best_epoch": result.best_epoch,
                    "best_val": round(result.best_val, 4), "wall_time_s": round(result.wall_time_s, 2), "table": ""}
        run = RunDirectory(out, dict(method=method, method_options=loss.options(), arch=arch, width=width, heads=heads,
                                     stem_stride=conf.stem_stride, exit_stages=conf.exit_stages,
                                     dataset=dataset, data_dir=str(data_dir) if data_dir else None, subset=subset,
                                     val_fraction=val_fraction, image_size=data.image_size, channels=data.channels,
                                     teacher=str(teacher) if teacher else None, resumed=resume,
                                     **_public(config), resolved_device=str(resolve_device(device))),
                           kind="train")
        conf.write(out)
        run.manifest["data"] = data.summary()
        if trainer.resumed_from:
            run.manifest["resumed_from"] = trainer.resumed_from  # e.g. a learning rate lowered after divergence
        run.write_manifest()
        try:
            result = trainer.fit()
            # Test once, on the checkpoint chosen on validation.
            best = load_model(result.best_path, expect=model, device=trainer.device)
            loaders = make_loaders(data, batch_size, seed=seed, device=trainer.device)
            test = evaluate(best, loaders["test"])
            val = evaluate(best, loaders["val"])
        except KeyboardInterrupt:
            where = f"training in {out} stopped {trainer.stopped_at()}"
            how = ("continue with the same command plus --resume" if trainer.last_path.exists()
                   else "start it again with --overwrite")
            raise TrainingInterrupted(f"{where}; {how}", where) from None
        rows = result.history + test.rows(epoch=result.best_epoch, split="test")
        write_rows_csv(out / "metrics.csv", rows)

        label = f"{arch} ({method})"
        if best.num_exits == 1:
            row = seed_table_row(label, test.accuracy, None, baseline=test.final)
        else:
            row = seed_table_row(label, test.accuracy, test.ensemble_accuracy)
        columns = ["Model", "Baseline", *exit_columns(best.num_exits), "Ensemble"] if best.num_exits > 1 \
            else ["Model", "Baseline"]
        table = format_table([row], columns, title=f"Test accuracy (%) on {dataset}, checkpoint of epoch "
                                                    f"{result.best_epoch} (selected on validation)")
        summary = {
            "run_dir": str(out), "method": method, "arch": arch, "width": width, "dataset": dataset,
            "best_epoch": result.best_epoch, "best_val": round(result.best_val, 4),
            "val": {"exits": val.accuracy, "ensemble": val.ensemble_accuracy},
            "test": {"exits": test.accuracy, "ensemble": test.ensemble_accuracy, "loss": test.loss},
            "costs": [dict(exit=c.exit + 1, stage=c.stage + 1, params=c.params, macs=c.macs) for c in costs],
            "wall_time_s": round(result.wall_time_s, 2),
        }
        verdict = divergence_verdict(val, data.num_classes, trainer.full_epochs)
        if verdict:
            summary["status"] = "diverged"
        atomic_write_text(out / "results.json", json.dumps(summary, indent=2) + "\n")
        results = {k: summary[k] for k in ("best_epoch", "best_val", "val", "test", "costs")}
        if verdict:  # finite numbers that mean nothing: kept for inspection, never reported as a result
            run.manifest["results"] = results
            if dist_info is not None:
                distributed.teardown()
            raise RunDiverged(f"training diverged at lr {lr:g}: the checkpoint selected on validation (epoch "
                              f"{result.best_epoch}) has {verdict}; the run in {out} is marked diverged; train "
                              f"again with a lower learning rate: --overwrite --lr {lr / 10:g}")
        run.finish(results=results)
        summary["table"] = table
        if dist_info is not None:
            summary["processes"] = dist_info.world
            distributed.teardown()
        return summary


def continue_flags(out: Path) -> dict[str, bool]:
    """For commands that re-run into their own directories: resume an interrupted run, restart one that never
    saved a checkpoint (failed in its first epoch, or killed before it)."""
    marker = read_marker(out) or {}
    # a run marked diverged learned nothing worth continuing: it starts again
    resume = (out / "last.pt").exists() and marker.get("status") != "diverged"
    return {"resume": resume, "overwrite": not resume and out.exists()}


def _check_resumable(out: Path) -> None:
    """--resume needs an unfinished run with a last.pt; refuse before anything is read or written."""
    if not (out / "last.pt").is_file():
        raise CheckpointError(f"--resume: no {out / 'last.pt'} to continue from; start the run without --resume")
    try:
        status = read_json(out / "manifest.json", fix="train it again with --overwrite").get("status")
    except (OSError, DamagedFileError):
        status = None
    if status == "complete":
        raise ValueError(f"--resume: {out} holds a finished run (status complete), nothing to continue; "
                         "pass --overwrite to train it again, or choose another --out")
    if status == "diverged":  # it ran all its epochs: resuming would only repeat the verdict
        raise ValueError(f"--resume: {out} holds a run that diverged after all its epochs, nothing to continue; "
                         "train it again with a lower learning rate: --overwrite --lr LOWER")


def _teacher_payload(teacher: str | Path, dataset: str) -> dict[str, Any]:
    """The teacher's checkpoint, read and validated; refused when it was trained on another dataset than the
    student's (its classes would mean other things, however many there are)."""
    payload = read_checkpoint(teacher, data=True)
    trained, wanted = payload["data"]["name"], dataset.lower().replace("-", "_")
    if trained != wanted:
        raise CheckpointError(f"teacher {teacher} was trained on {trained!r} but the student trains on {dataset!r}; "
                              f"give a teacher trained on {dataset} (train one with --method baseline --dataset "
                              f"{dataset})")
    return payload


def _public(config: TrainConfig) -> dict[str, Any]:
    d = asdict(config)
    d.pop("progress", None)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


# what a command that re-runs into its own folders (compare_methods, reproduce) advises after a stop
RERUN = "re-run the same command; finished parts are reused"



def finished_run(run_dir: Path, who: str) -> dict[str, Any] | None:
    """The manifest of the finished training run in ``run_dir`` when its files read back, else None.

    A finished run whose manifest, results.json or best.pt does not read back is renamed to
    ``<run_dir>.damaged`` (kept, not deleted) with one line, so the caller trains it again: these
    are the tool's own runs, redone as a crash would have been, never handed on to fail later.
    """
    if not (run_dir / "manifest.json").is_file():
        return None
    again = "it is trained again"
    try:
        manifest = read_json(run_dir / "manifest.json", fix=again)
        if manifest.get("status") != "complete":
            return None
        read_json(run_dir / "results.json", fix=again)
        read_checkpoint(run_dir / "best.pt")
    except (DamagedFileError, CheckpointError, FileNotFoundError) as exc:
        aside = set_aside(run_dir)
        why = (f"{exc.path.name} {exc.problem}" if isinstance(exc, DamagedFileError) else
               f"{Path(str(exc.filename)).name} is missing" if isinstance(exc, FileNotFoundError) else str(exc))
        print(f"[{who}] training {run_dir} again (the damaged run is kept as {aside.name}): {why}", flush=True)
        return None
    return manifest
