"""Label-only methods: the single-exit baseline and deeply-supervised nets (DSN)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.multi_exit import MultiExitOutput
from . import options as check
from .base import Batch, Method


class Baseline(Method):
    """Cross-entropy on the plain single-exit network (the seed tables' "Baseline" column)."""

    name = "baseline"
    multi_exit = False

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = check.unit(self.name, "label_smoothing", label_smoothing, 0.1)

    def forward(self, out: MultiExitOutput, batch: Batch) -> dict[str, torch.Tensor]:
        return {"ce": F.cross_entropy(out.final, batch.y, label_smoothing=self.label_smoothing)}


class DeeplySupervised(Method):
    """DSN (Lee et al., 2015): cross-entropy on every exit, equal weights."""

    name = "dsn"

    def __init__(self, exit_weight: float = 1.0) -> None:
        super().__init__()
        self.exit_weight = check.nonnegative(self.name, "exit_weight", exit_weight, 1.0)

    def forward(self, out: MultiExitOutput, batch: Batch) -> dict[str, torch.Tensor]:
        terms = {}
        for i, logits in enumerate(out.logits):
            w = 1.0 if i == len(out) - 1 else self.exit_weight
            terms[f"ce{i + 1}"] = w * F.cross_entropy(logits, batch.y)
        return terms
