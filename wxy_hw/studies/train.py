"""Training runs (experiments/train.py): one model, one method, one seed, resumable."""
from __future__ import annotations

import contextlib
import inspect
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import distributed
from ..checkpoint import CheckpointError, load_model, load_weights, model_from_payload, read_checkpoint
from ..data import DatasetSplits, dataset_key, load_dataset, make_loaders
from ..models.evaluation import ExitMetrics, evaluate
from ..methods import build_method, check_method_options, default_heads, method_class, method_traits
from ..methods.base import Method
from ..models import build_model, exit_costs
from ..models.cost import ExitCost
from ..models.multi_exit import NUM_STAGES, MultiExitNet
from ..output import format_table, write_rows_csv
from ..results import exit_columns, seed_table_row
from ..run_dir import RunDirectory, read_marker, run_dir_guard, set_aside_run
from ..train import EpochHook, RunDiverged, TrainConfig, Trainer, TrainingInterrupted, TrainResult, divergence_verdict
from ..utils import (DamagedFileError, atomic_write, atomic_write_text, file_sha256, json_types, read_hashed, read_json,
                     resolve_device, seed_everything)
from .config import StudyConfig
from .result import StudyResult


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
    init: str | None = None  # start from this checkpoint's weights (fine-tuning; same model, data split and seed)
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


@dataclass(frozen=True)
class TrainPlan:
    """A training run checked before any work: the settings resolved (exit heads, exit stages, the method's
    options with its seed), the run directory, and the teacher's checkpoint read (for kd, fitnet, at)."""

    conf: TrainRunConfig
    out: Path
    heads: str
    exit_stages: tuple[int, ...] | None
    multi_exit: bool
    method_options: dict[str, Any]
    teacher_payload: dict[str, Any] | None
    init_payload: dict[str, Any] | None
    resume: bool
    overwrite: bool
    init_sha256: str | None = None  # the --init file's content, hashed as it is read (the manifest's record)
    teacher_sha256: str | None = None  # the --teacher file's, the same way (what --reuse compares a teacher by)


@dataclass
class TrainSetup:
    """The run assembled, nothing trained yet: optimisation settings, data, the model (prepared for its method),
    the method's loss, the exits' costs (of the float architecture) and the trainer."""

    config: TrainConfig
    data: DatasetSplits
    model: MultiExitNet
    loss: Method
    costs: list[ExitCost]
    trainer: Trainer


@dataclass
class TrainMeasurements:
    """What training measured: the fit (history, best epoch) and the validation-selected checkpoint evaluated once
    on test and on validation."""

    result: TrainResult
    best: MultiExitNet
    test: ExitMetrics
    val: ExitMetrics


def train_run(config: TrainRunConfig | None = None, *, out: str | Path | None = None, resume: bool = False,
              overwrite: bool = False, progress: bool = True, on_epoch: EpochHook | None = None,
              **settings: Any) -> StudyResult:
    """Train, select on validation, test the selected checkpoint once; returns the run's StudyResult (its
    ``details``: the summary written to results.json, plus ``table``).

    ``settings``: the fields of TrainRunConfig (``device`` is accepted for ``torch_device``). ``on_epoch``: see
    ``Trainer.fit`` (a search's pruner; True stops the run with ``TrainingPruned``, the run left unfinished)."""
    conf = TrainRunConfig.make(config, **settings)
    plan = plan_training(conf, out, resume=resume, overwrite=overwrite)
    # under torchrun every rank trains; rank 0 alone claims the run directory and writes into it
    dist_info, device = distributed.setup(conf.torch_device)
    lead = dist_info is None or dist_info.lead
    guard = run_dir_guard(plan.out, overwrite=overwrite, resume=resume, kind="train",
                          inputs=[p for p in (conf.teacher, conf.init) if p])
    with guard if lead else contextlib.nullcontext():
        if resume:
            _check_resumable(plan.out)
        setup = _assemble(plan, device, progress)
        if not lead:
            assert dist_info is not None  # only a torchrun rank other than 0 is not the lead
            return _follow(plan, setup, dist_info)
        run = _open_run(plan, setup)
        measured = _fit_and_test(plan, setup, on_epoch)
        return _write_run(plan, setup, measured, run, dist_info)


def plan_training(conf: TrainRunConfig, out: str | Path | None, *, resume: bool = False,
                  overwrite: bool = False) -> TrainPlan:
    """The run's settings checked and resolved, in the order a user meets the problems; nothing written."""
    method = conf.method
    method_options = dict(conf.method_options or {})
    multi_exit, needs_teacher = method_traits(method)
    heads = conf.heads or default_heads(method)
    exit_stages = _exit_stages(conf.exit_stages, multi_exit, method)
    if not 0 < conf.val_fraction < 1:
        raise ValueError(f"--val-fraction must be in (0, 1): model selection needs a validation split, "
                         f"got {conf.val_fraction}")
    if any("seed" in inspect.signature(method_class(m).__init__).parameters for m in method.split("+")):
        method_options.setdefault("seed", conf.seed)  # a method's own random stream (device noise, corruptions) follows --seed
    check_method_options(method, method_options)  # a bad option is one line before the run directory is claimed
    if resume and overwrite:
        raise ValueError("--resume continues the run in --out, --overwrite replaces it: give one of them")
    if needs_teacher and conf.teacher is None:
        raise ValueError(f"method '{method}' needs --teacher PATH (a best.pt of a trained model)")
    if not needs_teacher and conf.teacher is not None:
        raise ValueError(f"method '{method}' learns from no teacher, so --teacher {conf.teacher} would be ignored: drop "
                         "it, or give a method that distils from one (kd, fitnet, at)")
    # refused before any work; each file read once and hashed, so the record names the bytes the run uses
    teacher_payload, teacher_sha256 = None, None
    if needs_teacher:
        assert conf.teacher is not None  # a missing --teacher was refused above
        content, teacher_sha256 = read_hashed(conf.teacher)
        teacher_payload = _teacher_payload(conf.teacher, conf.dataset, content)
    init_payload, init_sha256 = None, None
    if conf.init:
        content, init_sha256 = read_hashed(conf.init)
        init_payload = _init_payload(conf, content)
    out = Path(out) if out is not None else default_run_dir(conf.dataset, conf.arch, conf.width, method, conf.seed)
    return TrainPlan(conf, out, heads, exit_stages, multi_exit, method_options, teacher_payload, init_payload,
                     resume, overwrite, init_sha256, teacher_sha256)


def _assemble(plan: TrainPlan, device: str, progress: bool) -> TrainSetup:
    """Data, model, method and trainer of the run (a resumed run's last.pt checked against them)."""
    conf = plan.conf
    config = _train_config(conf, device, progress)
    seed_everything(conf.seed)
    data = load_dataset(conf.dataset, conf.data_dir, val_fraction=conf.val_fraction, subset=conf.subset,
                        image_size=conf.image_size, channels=conf.channels, seed=conf.seed)
    net = build_model(conf.arch, data.num_classes, data.channels, conf.width, data.image_size, plan.heads,
                      multi_exit=plan.multi_exit, exit_stages=plan.exit_stages, stem_stride=conf.stem_stride)
    options = dict(plan.method_options)
    if plan.teacher_payload is not None:
        options.update(_teacher_options(plan, net))
    loss = build_method(conf.method, **options)
    costs = exit_costs(net)  # of the float architecture: quantization does not change MACs
    if plan.init_payload is not None and not plan.resume:  # a resumed run's last.pt holds its newer weights
        assert plan.conf.init is not None
        load_weights(net, plan.init_payload, plan.conf.init)
    model = loss.prepare_model(net)
    # every method's prepare_model returns the MultiExitNet itself or (QAT) a quantized copy of the same class
    assert isinstance(model, MultiExitNet)
    trainer = Trainer(model, loss, data, config, plan.out)
    if plan.resume:
        trainer.resume()  # refuses a mismatched / unreadable last.pt before the manifest is touched
        _refuse_other_options(plan.out, loss)
    return TrainSetup(config, data, model, loss, costs, trainer)


def _refuse_other_options(run_dir: Path, method: Method) -> None:
    """Refuse to resume a run with other method options than its manifest says it began with: a last.pt written
    before checkpoints recorded them passes the trainer's check, yet a default changed since (auxiliary_adv's
    merge_bn) would finish it as another method."""
    begun = (read_marker(run_dir) or {}).get("config") or {}
    recorded, now = begun.get("method_options"), json_types(method.options())
    # the options it recorded: one added to the method since is the run's, at its default
    diffs = [f"{k}: began with {v!r}, now {now.get(k)!r}" for k, v in sorted(recorded.items())
             if json_types(v) != now.get(k)] if isinstance(recorded, dict) else []
    if not diffs:
        return
    raise CheckpointError(f"cannot resume {run_dir}: its method options differ from those it began with ("
                          + "; ".join(diffs) + "); move the run aside to train it again, or resume it with the "
                          "options it began with (--method-arg)")


def _train_config(conf: TrainRunConfig, device: str, progress: bool) -> TrainConfig:
    return TrainConfig(epochs=conf.epochs, batch_size=conf.batch_size, lr=conf.lr, weight_decay=conf.weight_decay,
                       schedule=conf.schedule, seed=conf.seed, torch_device=device, augment=conf.augment,
                       max_steps_per_epoch=conf.max_steps_per_epoch, grad_norms_every=conf.grad_norms_every,
                       progress=progress)


def _teacher_options(plan: TrainPlan, model: MultiExitNet) -> dict[str, Any]:
    """The teacher network (and, for a hint loss, the student's feature width) as method options; a teacher whose
    classes, channels or image size differ from the student's is refused."""
    conf = plan.conf
    # called only for a method that needs a teacher: plan_training read its checkpoint from --teacher
    assert plan.teacher_payload is not None and conf.teacher is not None
    teacher_model = model_from_payload(plan.teacher_payload, conf.teacher)
    tc = teacher_model.config
    for key in ("num_classes", "in_channels", "image_size"):
        if tc[key] != model.config[key]:
            raise CheckpointError(f"teacher {conf.teacher} has {key} {tc[key]} but the student on {conf.dataset} needs "
                                  f"{model.config[key]}; give a teacher trained with the same --dataset, "
                                  "--image-size and --channels")
    options: dict[str, Any] = {"teacher": teacher_model}
    if plan.method_options.get("hint_weight") and "student_features" not in plan.method_options:
        options["student_features"] = model.stage_channels[-1]
    return options


def _follow(plan: TrainPlan, setup: TrainSetup, dist_info: distributed.DistInfo) -> StudyResult:
    """A torchrun rank other than 0: train alongside rank 0, which writes and reports."""
    result = setup.trainer.fit()
    distributed.teardown()
    summary = {"run_dir": str(plan.out), "rank": dist_info.rank, "best_epoch": result.best_epoch,
               "best_val": round(result.best_val, 4), "wall_time_s": round(result.wall_time_s, 2), "table": ""}
    return StudyResult(plan.out, "", details=summary)


def _open_run(plan: TrainPlan, setup: TrainSetup) -> RunDirectory:
    """The run directory's manifest (every setting, the data, what a resumed run continued from) and config.toml."""
    run = RunDirectory(plan.out, _run_settings(plan, setup.data, setup.loss.options(), setup.config), kind="train")
    # first, before anything else is written: the start and teacher by content (a resumed run keeps its run's record;
    # one begun before runs recorded it has none), so a file later replaced at the same path is told apart from the
    # one it began from
    for key, now in _started_from(plan).items():
        kept = run.previous.get(key) if plan.resume else now
        if kept:
            run.manifest[key] = kept
        if isinstance(kept, dict) and kept.get("sha256") != now["sha256"]:  # continued with another file than begun
            run.manifest.setdefault("resumed_with", {})[key] = now
    run.write_manifest()
    plan.conf.write(plan.out)
    run.manifest["data"] = setup.data.summary()
    # CPU training is bit-reproducible at a fixed thread count only (the float sums' order follows the threads)
    run.manifest["torch_threads"] = torch.get_num_threads()
    if setup.trainer.resumed_from:
        run.manifest["resumed_from"] = setup.trainer.resumed_from  # e.g. a learning rate lowered after divergence
    if plan.resume:  # every earlier resume stays on record: a lowered learning rate is not forgotten by the next one
        before = [r for r in run.previous.get("earlier_resumes") or [] if isinstance(r, dict)]
        last = {k: run.previous[k] for k in ("resumed_from", "resumed_with") if run.previous.get(k)}
        if before or last:
            run.manifest["earlier_resumes"] = before + ([last] if last else [])
    run.write_manifest()
    return run


def _started_from(plan: TrainPlan) -> dict[str, dict[str, Any]]:
    """The files the run starts from (``init``) and learns from (``teacher``) by content, as its manifest records
    them: a file later replaced at the same path is told apart from the one the run used."""
    conf = plan.conf
    return {key: {"path": str(path), "sha256": sha} for key, path, sha in
            (("init", conf.init, plan.init_sha256), ("teacher", conf.teacher, plan.teacher_sha256)) if path and sha}


def _run_settings(plan: TrainPlan, data: DatasetSplits, method_options: dict[str, Any],
                  config: TrainConfig) -> dict[str, Any]:
    """The run's settings as its manifest records them (what compare_methods compares before reusing a run)."""
    conf = plan.conf
    return dict(method=conf.method, method_options=method_options, arch=conf.arch, width=conf.width, heads=plan.heads,
                stem_stride=conf.stem_stride, exit_stages=conf.exit_stages, dataset=conf.dataset,
                data_dir=str(conf.data_dir) if conf.data_dir else None, subset=conf.subset,
                val_fraction=conf.val_fraction, image_size=data.image_size, channels=data.channels,
                teacher=str(conf.teacher) if conf.teacher else None, resumed=plan.resume, **_public(config),
                resolved_device=str(resolve_device(config.torch_device)))


def _summary(plan: TrainPlan, best_epoch: int, best_val: float, val: ExitMetrics, test: ExitMetrics,
             costs: list[ExitCost], wall_time_s: float) -> dict[str, Any]:
    """results.json of a run: the selected checkpoint on validation and test, its exits' costs."""
    conf = plan.conf
    return {
        "run_dir": str(plan.out), "method": conf.method, "arch": conf.arch, "width": conf.width, "dataset": conf.dataset,
        "best_epoch": best_epoch, "best_val": round(best_val, 4),
        "val": {"exits": val.accuracy, "ensemble": val.ensemble_accuracy},
        "test": {"exits": test.accuracy, "ensemble": test.ensemble_accuracy, "loss": test.loss},
        "costs": [dict(exit=c.exit + 1, stage=c.stage + 1, params=c.params, macs=c.macs) for c in costs],
        "wall_time_s": round(wall_time_s, 2),
    }


def recorded_start(manifest: dict[str, Any], start: str | Path, key: str = "init") -> bool | None:
    """Whether a training run began from (``init``) or learnt from (``teacher``) the bytes now at ``start``, by the
    sha256 its manifest recorded; None when the run recorded none (begun before runs recorded it, or not a fine-tune
    or a student)."""
    recorded = manifest.get(key)
    if not isinstance(recorded, dict) or not recorded.get("sha256"):
        return None
    return recorded["sha256"] == file_sha256(start)


def adopt_run(conf: TrainRunConfig, checkpoint: Path, out: Path, source: dict[str, Any],
              log: Path | None = None) -> dict[str, Any]:
    """A finished training run in ``out`` made of a model already trained with exactly ``conf``'s settings (a zoo
    model, ``studies.zoo.match``, or an earlier folder's run, ``earlier_runs.find_earlier``): its checkpoint as
    best.pt, its training log as metrics.csv, and that checkpoint evaluated once on test and validation as
    ``train_run`` evaluates its own; nothing is trained. ``source`` (where the model came from: zoo id or run
    folder, and the sha256 it was matched by) goes into the manifest and results.json. The run's summary."""
    plan = plan_training(conf, out, overwrite=out.exists())
    device = resolve_device(conf.torch_device)
    config = _train_config(conf, str(device), progress=False)
    with run_dir_guard(out, overwrite=plan.overwrite, kind="train", inputs=[checkpoint]):
        # read once: the file written, the model evaluated and the sha256 recorded are the same bytes, even if the
        # source changes meanwhile
        content, sha256 = read_hashed(checkpoint)
        if content is None:
            raise CheckpointError(f"{checkpoint} is gone (it was there when it was matched); {RERUN}")
        source = {"sha256": sha256, **source}  # the sha256 it was matched by, where the caller had one
        if source["sha256"] != sha256:
            raise CheckpointError(f"{checkpoint} changed after it was matched (its sha256 differs); {RERUN}")
        payload = read_checkpoint(checkpoint, data=True, content=content)
        data = load_dataset(conf.dataset, conf.data_dir, val_fraction=conf.val_fraction, subset=conf.subset,
                            image_size=conf.image_size, channels=conf.channels, seed=conf.seed)
        model = model_from_payload(payload, checkpoint, device=device)
        teacher = _teacher_options(plan, model) if plan.teacher_payload is not None else {}
        options = build_method(conf.method, **plan.method_options, **teacher).options()
        run = RunDirectory(out, _run_settings(plan, data, options, config), kind="train")
        conf.write(out)
        run.manifest["data"], run.manifest["adopted_from"] = data.summary(), source
        # the start and teacher it stands for (a fine-tune's digital model): a later retrained one tells it apart
        run.manifest.update(_started_from(plan))
        atomic_write(out / "best.pt", lambda handle: handle.write(content))
        if log is not None and log.is_file():
            atomic_write_text(out / "metrics.csv", log.read_text())
        loaders = make_loaders(data, conf.batch_size, seed=conf.seed, device=device)
        test, val = evaluate(model, loaders["test"]), evaluate(model, loaders["val"])
        summary = _summary(plan, int(payload.get("best_epoch", payload.get("epoch", 0))),
                           float(payload.get("best_val", val.final)), val, test, exit_costs(model), 0.0)
        summary["adopted_from"] = source
        atomic_write_text(out / "results.json", json.dumps(summary, indent=2) + "\n")
        run.finish(results={k: summary[k] for k in ("best_epoch", "best_val", "val", "test", "costs")})
    return summary


def _fit_and_test(plan: TrainPlan, setup: TrainSetup, on_epoch: EpochHook | None = None) -> TrainMeasurements:
    """Train, then test once, on the checkpoint chosen on validation; Ctrl-C says how to continue."""
    trainer = setup.trainer
    try:
        result = trainer.fit(on_epoch=on_epoch)
        best = load_model(result.best_path, expect=setup.model, device=trainer.device)
        assert isinstance(best, MultiExitNet)  # load_model without model= rebuilds a MultiExitNet
        loaders = make_loaders(setup.data, plan.conf.batch_size, seed=plan.conf.seed, device=trainer.device)
        return TrainMeasurements(result, best, test=evaluate(best, loaders["test"]), val=evaluate(best, loaders["val"]))
    except KeyboardInterrupt:
        where = f"training in {plan.out} stopped {trainer.stopped_at()}"
        how = ("continue with the same command plus --resume" if trainer.last_path.exists()
               else "start it again with --overwrite")
        raise TrainingInterrupted(f"{where}; {how}", where) from None


def _train_table(conf: TrainRunConfig, m: TrainMeasurements) -> str:
    """The seed's Table-1 row of the selected checkpoint on test."""
    label = f"{conf.arch} ({conf.method})"
    if m.best.num_exits == 1:
        row = seed_table_row(label, m.test.accuracy, None, baseline=m.test.final)
        columns = ["Model", "Baseline"]
    else:
        row = seed_table_row(label, m.test.accuracy, m.test.ensemble_accuracy)
        columns = ["Model", "Baseline", *exit_columns(m.best.num_exits), "Ensemble"]
    return format_table([row], columns, title=f"Test accuracy (%) on {conf.dataset}, checkpoint of epoch "
                                              f"{m.result.best_epoch} (selected on validation)")


def _write_run(plan: TrainPlan, setup: TrainSetup, m: TrainMeasurements, run: RunDirectory,
               dist_info: distributed.DistInfo | None) -> StudyResult:
    """metrics.csv, results.json and the manifest's verdict; a diverged run is kept for inspection and refused."""
    conf, out = plan.conf, plan.out
    rows = m.result.history + m.test.rows(epoch=m.result.best_epoch, split="test")
    write_rows_csv(out / "metrics.csv", rows)
    table = _train_table(conf, m)
    summary = _summary(plan, m.result.best_epoch, m.result.best_val, m.val, m.test, setup.costs, m.result.wall_time_s)
    verdict = divergence_verdict(m.val, setup.data.num_classes, setup.trainer.full_epochs)
    if verdict:
        summary["status"] = "diverged"
    atomic_write_text(out / "results.json", json.dumps(summary, indent=2) + "\n")
    results = {k: summary[k] for k in ("best_epoch", "best_val", "val", "test", "costs")}
    if verdict:  # finite numbers that mean nothing: kept for inspection, never reported as a result
        run.manifest["results"] = results
        if dist_info is not None:
            distributed.teardown()
        raise RunDiverged(f"training diverged at lr {conf.lr:g}: the checkpoint selected on validation (epoch "
                          f"{m.result.best_epoch}) has {verdict}; the run in {out} is marked diverged; train "
                          f"again with a lower learning rate: --overwrite --lr {conf.lr / 10:g}")
    run.finish(results=results)
    summary["table"] = table
    if dist_info is not None:
        summary["processes"] = dist_info.world
        distributed.teardown()
    return StudyResult(out, table, rows=rows, details=summary)


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


def _init_payload(conf: TrainRunConfig, content: bytes | None) -> dict[str, Any]:
    """The --init checkpoint (its ``content``, read once), validated: trained on the same dataset, training subset,
    validation fraction and seed (so the validation images that select the fine-tuned model were never trained
    on)."""
    assert conf.init is not None
    payload = read_checkpoint(conf.init, data=True, content=content)
    data, train = payload["data"], payload.get("train_config") or {}
    saw = {"dataset": data["name"], "subset": data.get("train_subset"), "val_fraction": data.get("val_fraction"),
           "seed": train.get("seed")}
    wanted = {"dataset": dataset_key(conf.dataset), "subset": conf.subset,
              "val_fraction": conf.val_fraction, "seed": conf.seed}
    differ = [f"--{k.replace('_', '-')} {saw[k]} (this run: {wanted[k]})" for k in saw if saw[k] != wanted[k]]
    if differ:
        raise CheckpointError(f"--init {conf.init} was trained with {', '.join(differ)}: its training images "
                              "would overlap this run's validation split; fine-tune with its settings")
    return payload


def _teacher_payload(teacher: str | Path, dataset: str, content: bytes | None) -> dict[str, Any]:
    """The teacher's checkpoint (its ``content``, read once), validated; refused when it was trained on another
    dataset than the student's (its classes would mean other things, however many there are)."""
    payload = read_checkpoint(teacher, data=True, content=content)
    trained, wanted = payload["data"]["name"], dataset_key(dataset)
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
    try:
        return read_finished(run_dir, fix="it is trained again")
    except (DamagedFileError, CheckpointError, FileNotFoundError) as exc:
        aside = set_aside_run(run_dir)
        why = (f"{exc.path.name} {exc.problem}" if isinstance(exc, DamagedFileError) else
               f"{Path(str(exc.filename)).name} is missing" if isinstance(exc, FileNotFoundError) else str(exc))
        print(f"[{who}] training {run_dir} again (the damaged run is kept as {aside.name}): {why}", flush=True)
        return None


def read_finished(run_dir: Path, fix: str) -> dict[str, Any] | None:
    """The manifest of the finished training run in ``run_dir`` (None: unfinished), its results.json and best.pt
    read back; a damaged file raises (DamagedFileError, CheckpointError, FileNotFoundError) and nothing is moved."""
    manifest = read_json(run_dir / "manifest.json", fix=fix)
    if manifest.get("status") != "complete":
        return None
    read_json(run_dir / "results.json", fix=fix)
    read_checkpoint(run_dir / "best.pt")
    return manifest
