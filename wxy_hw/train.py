"""Trainer: SGD loop, schedule, per-exit validation, validation-based selection, atomic
checkpoints, bit-exact resume, and a clear stop on a non-finite loss.

The Trainer knows no method: it sums the named loss terms the method returns.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterable, Sequence, cast

import torch
from tqdm.auto import tqdm

from . import distributed
from .batches import as_batches
from .checkpoint import CheckpointError, config_mismatch, read_checkpoint, save_checkpoint, validate_payload
from .data import DatasetSplits, make_loaders
from .models.evaluation import ExitMetrics, evaluate
from .methods.base import Batch, Method
from .models.attach import plain_config
from .models.multi_exit import MultiExitNet, MultiExitOutput
from .output import interactive, write_rows_csv
from .run_dir import RunDirectory, run_dir_guard
from .utils import DamagedFileError, eval_mode, json_types, read_csv, resolve_device, set_aside, warn_deprecated


# called after each epoch with (1-based epoch, validation metrics); True stops the run (``TrainingPruned``)
EpochHook = Callable[[int, ExitMetrics], bool]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class TrainingDiverged(NonFiniteLossError):
    """An epoch ended with a non-finite validation loss or non-finite weights; nothing of it was saved."""


class RunDiverged(TrainingDiverged):
    """A run that finished with finite numbers but learned nothing (exploded loss, chance accuracy): its files are
    kept for inspection, its manifest says ``diverged``, and its accuracy is never reported as a result."""

    run_status = "diverged"  # what RunDirectory.abort records


# When a finished run counts as diverged (divergence_verdict). A classifier that guesses uniformly has loss ln C,
# which is also where a freshly initialised network starts: the reference both rules are measured against.
# Measured on synthetic data: --lr 3 / 10 / 30 end at 3e5 / 2e7 / 1e11–1e29, while a legitimate two-step smoke
# run (attention transfer, BN statistics barely moved) reaches 308, i.e. 134 × ln 10; hence 1e4, not 100.
EXPLODED_LOSS = 1e4    # × ln C: logits thousands of units apart and confidently wrong: only a blown-up network
COLLAPSED_LOSS = 10.0  # × ln C: with accuracy at chance, a loss this far above the start is a run that blew up
CHANCE_MARGIN = 5.0    # points above 100 / C: small validation sets scatter a few points around chance


def divergence_verdict(val: ExitMetrics, num_classes: int, full_epochs: bool) -> str | None:
    """What shows that the selected checkpoint (its validation metrics ``val``) learned nothing, or None.

    Only real evidence counts, because short runs sit near chance legitimately (a smoke test of one step
    per epoch evaluates BN statistics that have barely moved): (1) a deepest-exit validation loss above
    EXPLODED_LOSS × ln C, in any run; (2) after full epochs, accuracy within CHANCE_MARGIN of chance
    AND a loss above COLLAPSED_LOSS × ln C — at chance but near ln C is an untrained model, not a blown-up one.
    """
    uniform = math.log(max(num_classes, 2))
    chance = 100.0 / max(num_classes, 1)
    loss, acc = val.loss[-1], val.final
    exploded = not math.isfinite(loss) or loss > EXPLODED_LOSS * uniform
    collapsed = full_epochs and acc <= chance + CHANCE_MARGIN and loss > COLLAPSED_LOSS * uniform
    if not (exploded or collapsed):
        return None
    return (f"validation loss {loss:.3g} (a uniform guess scores {uniform:.2f}) and accuracy {acc:.1f} % "
            f"(chance {chance:.1f} %)")


class TrainingPruned(RuntimeError):
    """A caller's ``on_epoch`` hook stopped the run after an epoch (a search's pruner judged it poor): its last.pt is
    saved, its manifest is not marked complete, so it is never reused as a finished model (it can be resumed)."""

    run_status = "pruned"  # what RunDirectory.abort records

    def __init__(self, message: str, epoch: int) -> None:
        super().__init__(message)
        self.epoch = epoch

    def __reduce__(self) -> tuple[Any, ...]:  # pickled whole (Ray tasks send errors back to the caller)
        return type(self), (str(self), self.epoch)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, with where the run stopped (``where``) and how to continue (the message)."""

    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(message)
        self.where = where or message

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (str(self), self.where)


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping settings (everything a run needs besides model/method/data)."""

    epochs: int = 5
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    schedule: str = "cosine"            # "cosine" | "step" | "constant"
    milestones: tuple[float, ...] = (0.5, 0.75)  # step schedule: fractions of the run
    gamma: float = 0.1
    warmup_epochs: int = 0
    augment: bool = True
    seed: int = 0
    torch_device: str = "auto"          # where training runs: auto (CUDA if available), cpu, cuda, cuda:N
    select_on: str = "final"            # validation metric for the best checkpoint: "final" | "ensemble"
    max_steps_per_epoch: int | None = None  # cap for smoke tests and benchmarks
    grad_norms_every: int = 0           # >0: record per-layer gradient norms every N steps (grad_norms.csv)
    channels_last: bool = True          # NHWC convolutions: ~20 % faster on CPU (oneDNN) and on tensor cores
    progress: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be ≥ 1, got {self.epochs}")
        if self.lr <= 0 or not math.isfinite(self.lr):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if self.schedule not in ("cosine", "step", "constant"):
            raise ValueError(f"schedule must be cosine, step or constant, got {self.schedule!r}")
        if self.select_on not in ("final", "ensemble"):
            raise ValueError(f"select_on must be 'final' or 'ensemble', got {self.select_on!r}")
        self.milestones = tuple(self.milestones)


# ``device``, the former name of torch_device (--device names the simulated hardware), is still accepted as a keyword
# and read as an attribute, with a warning, until wxy_hw REMOVED_IN (utils). It is no field: asdict(), the saved
# train_config and the manifests hold torch_device only (what resume and reuse compare never included it).
def _accept_old_device(init: Any) -> Any:
    @functools.wraps(init)
    def __init__(self: TrainConfig, *args: Any, device: str | None = None, **kwargs: Any) -> None:
        if device is not None:
            warn_deprecated("TrainConfig(device=...)", "TrainConfig(torch_device=...)")
            kwargs.setdefault("torch_device", device)
        init(self, *args, **kwargs)
    return __init__


def _old_device(config: TrainConfig) -> str:
    warn_deprecated("TrainConfig.device", "TrainConfig.torch_device")
    return config.torch_device


TrainConfig.__init__ = _accept_old_device(TrainConfig.__init__)  # type: ignore[method-assign]
TrainConfig.device = property(_old_device)  # type: ignore[attr-defined]


@dataclass
class TrainResult:
    """What fit() leaves behind."""

    best_epoch: int
    best_val: float
    history: list[dict[str, Any]]
    best_path: Path
    last_path: Path
    val: ExitMetrics | None = None   # the selected checkpoint on the validation batches (fit fills it)
    test: ExitMetrics | None = None  # ... and on fit's test_loader, when one is given
    wall_time_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def lr_factor(config: TrainConfig, epoch: int) -> float:
    """Learning-rate multiplier for a (0-based) epoch."""
    if epoch < config.warmup_epochs:
        return (epoch + 1) / (config.warmup_epochs + 1)
    if config.schedule == "constant":
        return 1.0
    if config.schedule == "step":
        return config.gamma ** sum(epoch >= int(round(m * config.epochs)) for m in config.milestones)
    span = max(config.epochs - config.warmup_epochs, 1)
    return 0.5 * (1.0 + math.cos(math.pi * (epoch - config.warmup_epochs) / span))


class Trainer:
    """Trains one model with one method on one dataset, writing into ``run_dir``."""

    def __init__(self, model: MultiExitNet, method: Method, data: DatasetSplits, config: TrainConfig,
                 run_dir: str | Path) -> None:
        self.config = config
        self.device = resolve_device(config.torch_device)
        self.model = model.to(self.device)
        self.channels_last = config.channels_last and channels_last_safe(self.model, self.device)
        if self.channels_last:  # Module.to takes memory_format at run time (documented); torch's overloads leave it out
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.method = method.to(self.device)
        self.method.bind_data(data.mean, data.std)
        self.data = data
        # torchrun: every rank trains on its shard of each global batch; BN statistics and
        # gradients are global, so N processes train what one process does (see distributed.py)
        self.dist = distributed.current()
        self.lead = self.dist is None or self.dist.lead
        self.ddp: torch.nn.Module | None = None
        if self.dist is not None:
            self.model = distributed.global_batch_norm(self.model, self.device)
            if type(method).model_forward is Method.model_forward:
                from torch.nn.parallel import DistributedDataParallel

                # buffers (BN running statistics) are identical on every rank: nothing to broadcast
                self.ddp = DistributedDataParallel(self.model, broadcast_buffers=False,
                                                   device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.run_dir = Path(run_dir)
        self.last_path = self.run_dir / "last.pt"
        self.best_path = self.run_dir / "best.pt"
        self.loaders = self._build_loaders(data)
        params = [p for p in list(self.model.parameters()) + list(method.parameters()) if p.requires_grad]
        self._params = params
        self.optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                                         weight_decay=config.weight_decay, nesterov=config.nesterov)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda e: lr_factor(config, e))
        self.history: list[dict[str, Any]] = []
        self.grad_monitor = None
        if config.grad_norms_every > 0:
            from .analysis.flatness import GradientMonitor

            self.grad_monitor = GradientMonitor(self.model)
        self.start_epoch = 0
        self.best_epoch = -1
        self.best_val = -1.0
        self.resumed_from: dict[str, Any] = {}  # what resume() continued from (epoch, a changed lr)

    def _build_loaders(self, data: DatasetSplits) -> dict[str, Any]:
        shard = (0, 1) if self.dist is None else (self.dist.rank, self.dist.world)
        return make_loaders(data, self.config.batch_size, seed=self.config.seed, device=self.device,
                            augment=self.config.augment, shard=shard)

    # --- checkpoints -----------------------------------------------------------------------
    def _data_info(self) -> dict[str, Any]:
        d = self.data
        # train_subset / val_fraction: which training images the model saw (a study re-selects them exactly)
        return dict(name=d.name, num_classes=d.num_classes, channels=d.channels, image_size=d.image_size,
                    mean=list(d.mean), std=list(d.std), class_names=list(d.class_names),
                    train_subset=d.subset, val_fraction=d.val_fraction)

    def _save(self, path: Path, epoch: int, full: bool) -> None:
        if not self.lead:  # under torchrun, rank 0 writes; the other ranks hold the same weights
            return
        extra: dict[str, Any] = dict(method=self.method.name, method_options=self._method_options(),
                                     method_state=self.method.state_dict(),
                                     epoch=epoch, data=self._data_info(),
                                     train_config=_plain(asdict(self.config)),
                                     best_epoch=self.best_epoch, best_val=self.best_val)
        if full:
            extra.update(optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                         history=self.history, torch_rng=torch.get_rng_state())
        save_checkpoint(path, self.model, **extra)

    @property
    def first_selectable(self) -> int:
        """The first epoch (0-based) whose checkpoint validation may select: the method's last phase may finish the
        model (Auxiliary Training's merge), so none before it; never past the run's last epoch."""
        return min(self.method.selection_start(self.config.epochs), self.config.epochs - 1)

    def _method_options(self) -> dict[str, Any]:
        """The method's options as a checkpoint holds them (JSON types: tuples become lists)."""
        return json_types(self.method.options())

    def resume(self) -> None:
        """Continue from ``run_dir/last.pt`` (after checking it belongs to this run)."""
        payload = read_checkpoint(self.last_path)
        if "optimizer" not in payload:
            raise CheckpointError(f"{self.last_path} holds no optimizer state; it cannot be resumed")
        validate_payload(payload, self.last_path, resume=True)  # the loop state, before any of it is loaded
        diffs = config_mismatch(payload["model_config"], self.model.config)
        if payload.get("method") != self.method.name:
            diffs.append(f"method: checkpoint has {payload.get('method')!r}, expected {self.method.name!r}")
        saved_options, options = payload.get("method_options"), self._method_options()
        if isinstance(saved_options, dict):  # recorded since method defaults could change (auxiliary_adv's merge_bn)
            diffs += [f"method option {k}: checkpoint has {v!r}, expected {options.get(k)!r}"
                      for k, v in sorted(saved_options.items()) if v != options.get(k)]  # one added since: its default
        saved_cfg = payload.get("train_config", {})
        for key in ("seed", "batch_size", "epochs", "schedule"):  # lr may be lowered, e.g. after divergence
            if saved_cfg.get(key) != _plain(asdict(self.config)).get(key):
                diffs.append(f"{key}: checkpoint has {saved_cfg.get(key)!r}, expected {getattr(self.config, key)!r}")
        if diffs:
            raise CheckpointError(f"cannot resume from {self.last_path}; the run differs: " + "; ".join(diffs)
                                  + " (resume with the settings of the run, or start a new one with --out DIR)")
        self.model.load_state_dict(payload["model_state"])
        self.method.load_state_dict(payload["method_state"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        torch.set_rng_state(payload["torch_rng"])
        self.history = list(payload["history"])
        self.start_epoch = int(payload["epoch"]) + 1
        self.best_epoch = int(payload["best_epoch"])
        self.best_val = float(payload["best_val"])
        if self.best_epoch - 1 < self.first_selectable:
            self.best_epoch, self.best_val = -1, -1.0  # selected before the method's last phase (an older rule)
        self.resumed_from = {"epoch": self.start_epoch}
        self._restore_grad_norms()
        if saved_cfg.get("lr") != self.config.lr:
            self._set_base_lr(self.config.lr)
            self.resumed_from["lr"] = {"checkpoint": saved_cfg.get("lr"), "now": self.config.lr}

    def _restore_grad_norms(self) -> None:
        """A resumed run keeps the gradient norms its finished epochs recorded (grad_norms.csv is rewritten whole at
        each epoch's end); rows of the epoch being redone are dropped. A damaged file is set aside, with one line."""
        path = self.run_dir / "grad_norms.csv"
        if self.grad_monitor is None or not path.is_file():
            return
        try:
            rows = read_csv(path, fix="it is set aside", columns=("step", "layer", "grad_norm"))
        except DamagedFileError as exc:
            print(f"[wxy_hw] {exc}: kept as {set_aside(path).name}; the resumed run records its own", file=sys.stderr)
            return
        done = self.start_epoch * len(self.loaders["train"])  # steps of the finished epochs (epoch * len + step)
        self.grad_monitor.restore([dict(step=int(r["step"]), layer=r["layer"], grad_norm=float(r["grad_norm"]))
                                   for r in rows if int(r["step"]) < done])

    def _set_base_lr(self, lr: float) -> None:
        """Continue the restored schedule from a new base learning rate."""
        self.scheduler.base_lrs = [lr for _ in self.optimizer.param_groups]
        for group in self.optimizer.param_groups:
            group["initial_lr"] = lr
            group["lr"] = lr * lr_factor(self.config, self.start_epoch)

    @property
    def full_epochs(self) -> bool:
        """Whether every epoch sees the whole training split (no ``max_steps_per_epoch`` cap below its length)."""
        cap = self.config.max_steps_per_epoch
        return cap is None or cap >= len(self.loaders["train"])

    def continue_advice(self) -> str:
        """After divergence: the command change that can work (a lower lr, from the last good checkpoint if any)."""
        lower = f"{self.config.lr / 10:g}"
        if self.last_path.exists():
            epoch = int(read_checkpoint(self.last_path)["epoch"]) + 1
            return (f"last good checkpoint: {self.last_path} (epoch {epoch}); continue from it with a lower learning "
                    f"rate: the same command with --resume --lr {lower}")
        return f"no epoch finished, so nothing to resume: start again with a lower rate: --overwrite --lr {lower}"

    def stopped_at(self) -> str:
        """Where an interrupted run stands: the epoch it was in and its last complete checkpoint."""
        if not self.last_path.exists():
            return "in its first epoch, before any checkpoint was written"
        epoch = int(read_checkpoint(self.last_path)["epoch"]) + 1
        where = "after its last epoch, before testing" if epoch >= self.config.epochs else \
            f"in epoch {epoch + 1}/{self.config.epochs}"
        return f"{where}; last complete checkpoint: {self.last_path} (epoch {epoch})"

    def _refuse_divergence(self, epoch: int, val: ExitMetrics) -> None:
        """A non-finite validation loss or weight is divergence: stop before the epoch is saved anywhere."""
        state = [t for t in self.model.state_dict().values() if t.is_floating_point()]
        finite_w = all(bool(torch.isfinite(t).all()) for t in state)
        if finite_w and all(math.isfinite(v) for v in val.loss):
            return
        largest = max(float(t.abs().max()) for t in state if t.numel())
        raise TrainingDiverged(
            f"training diverged in epoch {epoch + 1}/{self.config.epochs} at lr {self.config.lr:g}: validation loss "
            f"{val.loss[-1]:.4g}, largest |weight| {largest:.3g}{'' if finite_w else ' (non-finite weights)'}; "
            f"nothing of this epoch was saved; {self.continue_advice()}")

    # --- training --------------------------------------------------------------------------
    def fit(self, resume: bool = False, stop_after_epoch: int | None = None,
            on_epoch: EpochHook | None = None) -> TrainResult:
        """Run (or continue) training; returns the validation-selected result.

        ``stop_after_epoch`` ends the run early, as an interruption would (time-boxed jobs,
        resume tests); the schedule still follows ``config.epochs``. ``on_epoch(epoch, val)`` is called after
        each epoch is saved (1-based epoch, its validation metrics); True raises ``TrainingPruned``.
        """
        t0 = time.time()
        if resume:
            self.resume()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        end = self.config.epochs if stop_after_epoch is None else min(stop_after_epoch, self.config.epochs)
        for epoch in range(self.start_epoch, end):
            try:
                train_loss, train_acc = self._train_epoch(epoch)
                val = evaluate(self.model, self.loaders["val"])
            except RuntimeError as exc:
                if self.dist is None:
                    raise
                explained = distributed.explain_lost_rank(exc, self.dist, f"in epoch {epoch + 1}")
                if explained is exc:
                    raise
                raise explained from None
            self._refuse_divergence(epoch, val)
            lr = self.optimizer.param_groups[0]["lr"]
            self.scheduler.step()
            self.history.append(dict(epoch=epoch + 1, split="train", exit="final", accuracy=train_acc,
                                     loss=train_loss, lr=lr))
            self.history.extend(dict(r, lr=lr) for r in val.rows(epoch=epoch + 1, split="val"))
            score = val.final if self.config.select_on == "final" else val.ensemble_accuracy
            if epoch >= self.first_selectable and score > self.best_val:
                self.best_val, self.best_epoch = score, epoch + 1
                self._save(self.best_path, epoch, full=False)
            self._save(self.last_path, epoch, full=True)
            self._write_metrics()
            if self.config.progress and self.lead:
                exits = " ".join(f"{a:.2f}" for a in val.accuracy)
                tqdm.write(f"epoch {epoch + 1}/{self.config.epochs}  train loss {train_loss:.4f} acc {train_acc:.2f}"
                           f"  | val exits [{exits}] ens {val.ensemble_accuracy:.2f}  (best {self.best_val:.2f} @ "
                           f"epoch {self.best_epoch})")
            if on_epoch is not None and on_epoch(epoch + 1, val):
                raise TrainingPruned(f"training in {self.run_dir} pruned after epoch {epoch + 1}/{self.config.epochs} "
                                     f"(validation {score:.2f} %); its last.pt is kept", epoch + 1)
        return TrainResult(self.best_epoch, self.best_val, self.history, self.best_path, self.last_path,
                           wall_time_s=time.time() - t0)

    def _train_epoch(self, epoch: int) -> tuple[float, float]:
        self.model.train()
        self.method.train()
        loader = self.loaders["train"]
        loader.set_epoch(epoch)
        self.method.set_epoch(epoch, self.config.epochs)
        total = len(loader) if self.config.max_steps_per_epoch is None else min(len(loader), self.config.max_steps_per_epoch)
        bar = tqdm(total=total, desc=f"epoch {epoch + 1}", leave=False,
                   disable=not (self.config.progress and self.lead and interactive()), dynamic_ncols=True)
        forward_model = self.ddp if self.ddp is not None else self.model
        loss_sum, correct, seen = 0.0, 0, 0
        for step, (x, y) in enumerate(loader):
            if step >= total:
                break
            share = len(y)  # this rank's part of the global batch, before a method adds views
            batch = self.method.prepare_batch(Batch(x, y), self.model)
            x, y = batch.x, batch.y
            if self.channels_last:
                x = batch.x = x.contiguous(memory_format=torch.channels_last)
            out = self.method.model_forward(forward_model, x, batch)
            terms = self.method(out, batch)
            if not terms:
                raise ValueError(f"method {self.method.name!r} returned no loss terms; it has nothing to train "
                                 "(hwa alone needs include_ce=True)")
            loss = sum(terms.values())
            # ranks average their gradients; weighting each rank's mean loss by its share of the
            # global batch makes that average the gradient of the global batch's mean loss
            scaled = loss if self.dist is None else \
                loss * (share * self.dist.world / getattr(loader, "global_size", share * self.dist.world))
            if not torch.isfinite(loss):
                bad = {k: float(v.detach()) for k, v in terms.items()}
                raise NonFiniteLossError(
                    f"loss became {float(loss.detach())} at epoch {epoch + 1}, step {step + 1} (terms: {bad}); "
                    f"{self.continue_advice()} (or check the data)")
            self.optimizer.zero_grad(set_to_none=True)
            scaled.backward()
            if self.dist is not None and self.ddp is None:
                distributed.average_gradients(self._params, self.dist.world)
            if self.grad_monitor is not None and step % self.config.grad_norms_every == 0:
                self.grad_monitor.record(epoch * len(loader) + step)
            self.optimizer.step()
            loss_sum += float(loss.detach()) * len(y)
            correct += int((out.final.argmax(1) == y).sum())
            seen += len(y)
            if step % 10 == 0 or step == total - 1:
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100.0 * correct / seen:.1f}")
            bar.update(1)
        bar.close()
        totals = [loss_sum, float(correct), float(seen)]
        if self.dist is not None:
            totals = distributed.all_sum(totals)
        loss_sum, n_correct, n_seen = totals
        return loss_sum / max(n_seen, 1), 100.0 * n_correct / max(n_seen, 1)

    def _write_metrics(self) -> None:
        if not self.lead:
            return
        write_rows_csv(self.run_dir / "metrics.csv", self.history)
        if self.grad_monitor is not None and self.grad_monitor.rows():
            write_rows_csv(self.run_dir / "grad_norms.csv", self.grad_monitor.rows())


def channels_last_safe(model: torch.nn.Module, device: torch.device) -> bool:
    """False where torch 2.13's CPU (oneDNN) backward crashes the process in channels_last.

    Measured here: a strided 1×1 convolution with 5–15 input channels (ResNet shortcuts at width
    ≤ 0.2) segfaults in backward for some batch sizes (3, 5, 7 ...). Such narrow models gain
    nothing from NHWC anyway, so they train in the default layout.
    """
    if device.type != "cpu":
        return True
    return not any(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1) and m.stride != (1, 1)
                   and m.in_channels < 16 for m in model.modules())


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    """Tuples → lists so configs compare equal after a checkpoint round-trip."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


# --- fit(): the Trainer on any model and any (x, y) batches -------------------------------------

class _SingleExit(torch.nn.Module):
    """A plain logits network seen as a one-exit model; its weights keep the network's own names."""

    num_exits = 1

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        self.config = getattr(net, "config", None) or plain_config(net)

    def forward(self, x: torch.Tensor) -> MultiExitOutput:
        out = self.net(x)
        return out if isinstance(out, MultiExitOutput) else MultiExitOutput([out], [out])

    # Checkpoints hold the network's own state dict, so it reloads into the user's network directly.
    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        return self.net.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False):
        return self.net.load_state_dict(state_dict, strict=strict, assign=assign)


class _LoaderTrainer(Trainer):
    """The Trainer reading user batches instead of a DatasetSplits."""

    def __init__(self, model: torch.nn.Module, method: Method, train: Iterable, val: Iterable, config: TrainConfig,
                 run_dir: str | Path, mean: Sequence[float], std: Sequence[float]) -> None:
        self._user_batches = (train, val)
        # duck-typed stand-ins: the network has the exits and config a MultiExitNet has, and the namespace the mean
        # and std the Trainer reads from a DatasetSplits (the methods below replace the rest of its use)
        super().__init__(cast(MultiExitNet, model), method,
                         cast(DatasetSplits, SimpleNamespace(mean=tuple(mean), std=tuple(std))), config, run_dir)

    def _build_loaders(self, data: Any) -> dict[str, Any]:
        train, val = self._user_batches
        return {"train": as_batches(train, "fit: train_loader", device=self.device),
                "val": as_batches(val, "fit: val_loader", device=self.device)}

    def _data_info(self) -> dict[str, Any]:
        cfg = self.model.config
        return dict(name="user", num_classes=cfg.get("num_classes"), input_shape=cfg.get("input_shape"),
                    mean=list(self.data.mean), std=list(self.data.std))


def _classes(model: torch.nn.Module, batches: Iterable) -> int:
    """The number of classes a network predicts (the width of its logits on one batch)."""
    with torch.no_grad(), eval_mode(model):
        for x, _ in batches:
            out = model(x[:2])
            return int((out.final if isinstance(out, MultiExitOutput) else out).shape[1])
    return 2


def fit(model: torch.nn.Module, method: str | Method, train_loader: Iterable, val_loader: Iterable, *, epochs: int,
        out: str | Path, resume: bool = False, overwrite: bool = False, stop_after_epoch: int | None = None,
        mean: Sequence[float] = (0.0,), std: Sequence[float] = (1.0,), test_loader: Iterable | None = None,
        **options: Any) -> TrainResult:
    """Train ``model`` with ``method`` on any re-iterable (x, y) batches; checkpoints go to ``out``.

    ``model`` is a MultiExitNet, an ``attach_exits`` model, or any network returning logits
    (single-exit methods only). ``options`` are TrainConfig fields (lr, schedule, torch_device, seed …;
    batch size and augmentation are the loader's), then options of the method named by
    ``method``. ``mean`` / ``std`` tell pixel-space methods (augment, ada, adv) how the inputs were
    normalised; ``resume`` and ``stop_after_epoch`` behave as in ``Trainer.fit``. ``out`` is a run
    directory as the CLI's ``--out`` is: a new or empty folder, a previous ``fit`` run to continue
    (``resume``) or to replace (``overwrite``, which removes only that run's own outputs); anything
    else is refused before training, and ``manifest.json`` records how the run ended. On return the
    trained network, ``result.extra["model"]``, holds the validation-selected (best.pt) weights:
    that is ``model`` itself, or for qat the quantized copy it trained. ``result.val`` (and, with
    ``test_loader``, ``result.test``) are that checkpoint's per-exit ``ExitMetrics``. A run whose
    selected checkpoint learned nothing (``divergence_verdict``) is marked diverged and raises
    ``RunDiverged``. Every loader may be any source of batches (``wxy_hw.batches.as_batches``).
    """
    if "device" in options:  # the former name of torch_device; a method's simulated device once it is gone
        warn_deprecated("fit(device=...)", "fit(torch_device=...)")
        options.setdefault("torch_device", options.pop("device"))
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg_opts = {k: v for k, v in options.items() if k in fields}
    method_opts = {k: v for k, v in options.items() if k not in fields}
    if isinstance(method, str):
        # a name is looked up in the registry, which imports every method: only here, so the trainer itself
        # depends on the Method interface alone (any object implementing it trains)
        from .methods import build_method

        loss = build_method(method, **method_opts)
    elif method_opts:
        raise ValueError(f"fit: {sorted(method_opts)} are not TrainConfig fields; give method options to "
                         "build_method(name, ...) when passing a method object")
    else:
        loss = method
    exits = int(getattr(model, "num_exits", 1))
    if loss.multi_exit and exits < 2:
        raise ValueError(f"fit: method {loss.name!r} trains several exits but {type(model).__name__} has one output; "
                         "add exits with wxy_hw.models.attach_exits(model, at=[...], num_classes=..., input_shape=...) "
                         "or use a single-exit method (baseline, hwa, qat, augment, ada, adv)")
    cfg_opts.setdefault("channels_last", False)  # the user's network and data decide their own layout
    config = TrainConfig(epochs=epochs, **cfg_opts)
    net = loss.prepare_model(model)
    wrapped = net if hasattr(net, "num_exits") and hasattr(net, "config") else _SingleExit(net)
    if resume and overwrite:
        raise ValueError("fit: resume=True continues the run in out, overwrite=True replaces it: give one of them")
    with run_dir_guard(out, overwrite=overwrite, resume=resume, kind="fit"):
        trainer = _LoaderTrainer(wrapped, loss, train_loader, val_loader, config, out, mean, std)
        run = RunDirectory(out, dict(method=loss.name, epochs=epochs, resumed=resume,
                                     **{k: v for k, v in cfg_opts.items() if isinstance(v, (int, float, str, bool))}),
                           kind="fit")
        result = trainer.fit(resume=resume, stop_after_epoch=stop_after_epoch)
        if result.best_epoch < 1:  # stopped before the method's checkpoints may be selected (Auxiliary's period 2)
            raise TrainingInterrupted(f"fit: stopped after epoch {stop_after_epoch}, before {loss.name}'s checkpoints "
                                      f"may be selected (from epoch {trainer.first_selectable + 1}); continue it "
                                      "with resume=True",
                                      f"epoch {stop_after_epoch}")
        if result.best_path.exists():
            wrapped.load_state_dict(read_checkpoint(result.best_path)["model_state"])
        # the selected checkpoint's own numbers, computed once here so the caller need not evaluate again
        result.val = evaluate(wrapped, trainer.loaders["val"])
        if test_loader is not None:
            result.test = evaluate(wrapped, as_batches(test_loader, "fit: test_loader", device=trainer.device))
        numbers = dict(best_epoch=result.best_epoch, best_val=result.best_val, val_exits=result.val.accuracy,
                       **({"test_exits": result.test.accuracy} if result.test is not None else {}))
        verdict = divergence_verdict(result.val, _classes(wrapped, trainer.loaders["val"]), trainer.full_epochs)
        if verdict:
            run.manifest["results"] = numbers
            raise RunDiverged(f"fit: training diverged at lr {config.lr:g}: the checkpoint selected on validation "
                              f"(epoch {result.best_epoch}) has {verdict}; the run in {out} is marked diverged: "
                              f"fit again with a lower lr (e.g. lr={config.lr / 10:g}, overwrite=True)")
        run.finish(**numbers)
    result.extra["model"] = net
    return result
