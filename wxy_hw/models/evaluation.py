"""Per-exit evaluation: accuracy and loss of every exit and of the exit ensemble."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..batches import as_batches
from ..utils import eval_mode
from .multi_exit import MultiExitOutput


@dataclass
class ExitMetrics:
    """Accuracy (%) and mean cross-entropy per exit, plus the ensemble (mean of logits)."""

    accuracy: list[float]
    loss: list[float]
    ensemble_accuracy: float
    ensemble_loss: float
    n: int
    extra: dict = field(default_factory=dict)
    names: list[str] = field(default_factory=list)  # exit labels (``exit_labels``: one name per exit everywhere)

    @property
    def final(self) -> float:
        """Deepest exit's accuracy."""
        return self.accuracy[-1]

    def rows(self, **keys) -> list[dict]:
        """Tidy rows (one per exit, then 'ensemble') with the given key columns prepended."""
        names = self.names or [str(i + 1) for i in range(len(self.accuracy))]
        out = [dict(keys, exit=name, accuracy=acc, loss=loss) for name, acc, loss in zip(names, self.accuracy, self.loss)]
        if len(self.accuracy) > 1:
            out.append(dict(keys, exit="ensemble", accuracy=self.ensemble_accuracy, loss=self.ensemble_loss))
        return out


def exit_labels(model: nn.Module, count: int | None = None) -> list[str]:
    """The one name of each exit, shallow to deep, used by every table, CSV and report (accuracy and cost alike).

    An ``attach_exits`` model: the module each exit follows ('conv1', …, 'output'); a MultiExitNet:
    the 1-based stage each exit follows (a single-exit network's classifier is '4', so it lines up
    with the deepest exit of the multi-exit models); anything else: '1'..'K'. ``count``: the number
    of exits when the model does not say (a plain network: 1).
    """
    count = int(count if count is not None else getattr(model, "num_exits", 1))
    names = getattr(model, "exit_names", None)
    if names is not None and len(names) == count:
        return [str(n) for n in names]
    stages = getattr(model, "exit_stages", None)
    if stages and len(stages) == count:
        return [str(s + 1) for s in stages]
    return [str(k + 1) for k in range(count)]


def model_device(model: nn.Module) -> torch.device:
    """Device of a model's first parameter or buffer (CPU for a module with neither)."""
    for t in model.parameters():
        return t.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


class NonFiniteInputError(ValueError):
    """An evaluation batch holds NaN or infinite inputs: no score computed on it would mean anything."""


def check_finite_inputs(x: torch.Tensor, index: int) -> None:
    """Refuse a batch of non-finite inputs (NaN images score as a constant guess, i.e. a plausible chance level).

    One reduction per batch, cheap next to the forward pass it guards; integer inputs are always finite.
    """
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise NonFiniteInputError(f"evaluation input batch {index + 1} holds NaN or infinite values; nothing is scored "
                                  "on it: check the images and their normalisation (a std of 0 divides by zero)")


class _Tally:
    """Running per-exit and ensemble counts of correct predictions and summed loss."""

    def __init__(self) -> None:
        self.correct: list[int] = []
        self.losses: list[float] = []
        self.ens_correct, self.ens_loss, self.n = 0, 0.0, 0

    def add(self, out: torch.Tensor | MultiExitOutput, y: torch.Tensor) -> None:
        if isinstance(out, torch.Tensor):
            out = MultiExitOutput([out], [])
        if not self.correct:
            self.correct, self.losses = [0] * len(out), [0.0] * len(out)
        for i, logits in enumerate(out.logits):
            self.correct[i] += int((logits.argmax(1) == y).sum())
            self.losses[i] += float(F.cross_entropy(logits, y, reduction="sum"))
        ens = out.ensemble
        self.ens_correct += int((ens.argmax(1) == y).sum())
        self.ens_loss += float(F.cross_entropy(ens, y, reduction="sum"))
        self.n += len(y)

    def metrics(self, model: nn.Module) -> ExitMetrics:
        if self.n == 0:
            raise ValueError("evaluate() received no batches")
        n, correct = self.n, self.correct
        names = exit_labels(model, len(correct))
        return ExitMetrics([100.0 * c / n for c in correct], [s / n for s in self.losses],
                           100.0 * self.ens_correct / n, self.ens_loss / n, n, names=names)


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> ExitMetrics:
    """Evaluate a MultiExitNet — or any classifier returning logits — on (x, y) batches (eval mode, no grad)."""
    dev = model_device(model)
    tally = _Tally()
    with eval_mode(model):
        for i, (x, y) in enumerate(as_batches(batches, "evaluate: batches")):
            x, y = x.to(dev), y.to(dev)
            check_finite_inputs(x, i)
            tally.add(model(x), y)
    return tally.metrics(model)


@torch.no_grad()
def evaluate_chip_batch(chips: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> list[ExitMetrics]:
    """``evaluate`` for every chip of a ``ChipBatch`` (its forward returns one output per chip), in one pass."""
    chips.eval()
    dev = model_device(chips)
    # a hardware.batched.ChipBatch (a floor above this one, so not imported): k chips over one model
    k, model = cast(int, chips.k), cast(nn.Module, chips.model)
    tallies = [_Tally() for _ in range(k)]
    for i, (x, y) in enumerate(as_batches(batches, "evaluate_chip_batch: batches")):
        x, y = x.to(dev), y.to(dev)
        check_finite_inputs(x, i)
        for tally, out in zip(tallies, chips(x)):
            tally.add(out, y)
    return [t.metrics(model) for t in tallies]
