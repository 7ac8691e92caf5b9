"""Per-exit evaluation: accuracy and loss of every exit and of the exit ensemble."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class ExitMetrics:
    """Accuracy (%) and mean cross-entropy per exit, plus the ensemble (mean of logits)."""

    accuracy: list[float]
    loss: list[float]
    ensemble_accuracy: float
    ensemble_loss: float
    n: int
    extra: dict = field(default_factory=dict)

    @property
    def final(self) -> float:
        """Deepest exit's accuracy."""
        return self.accuracy[-1]

    def rows(self, **keys) -> list[dict]:
        """Tidy rows (one per exit, then 'ensemble') with the given key columns prepended."""
        out = [dict(keys, exit=str(i + 1), accuracy=a, loss=l)
               for i, (a, l) in enumerate(zip(self.accuracy, self.loss))]
        if len(self.accuracy) > 1:
            out.append(dict(keys, exit="ensemble", accuracy=self.ensemble_accuracy, loss=self.ensemble_loss))
        return out


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> ExitMetrics:
    """Evaluate a MultiExitNet (eval mode, no grad) on (x, y) batches."""
    was_training = model.training
    model.eval()
    correct: list[int] = []
    losses: list[float] = []
    ens_correct, ens_loss, n = 0, 0.0, 0
    try:
        for x, y in batches:
            out = model(x)
            if not correct:
                correct, losses = [0] * len(out), [0.0] * len(out)
            for i, logits in enumerate(out.logits):
                correct[i] += int((logits.argmax(1) == y).sum())
                losses[i] += float(F.cross_entropy(logits, y, reduction="sum"))
            ens = out.ensemble
            ens_correct += int((ens.argmax(1) == y).sum())
            ens_loss += float(F.cross_entropy(ens, y, reduction="sum"))
            n += len(y)
    finally:
        model.train(was_training)
    if n == 0:
        raise ValueError("evaluate() received no batches")
    return ExitMetrics([100.0 * c / n for c in correct], [l / n for l in losses],
                       100.0 * ens_correct / n, ens_loss / n, n)
