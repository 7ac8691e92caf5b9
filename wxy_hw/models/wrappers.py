"""Model wrappers that change a model's interface, not its weights."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from .multi_exit import MultiExitOutput


class PixelSpaceClassifier(nn.Module):
    """Wrap a MultiExitNet as pixels-in-[0,1] → logits of one exit, the interface attack libraries expect."""

    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float], exit_index: int = -1) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.exit_index = exit_index
        # Mirror the wrapped model's mode: attack libraries restore "the model's" mode from the
        # wrapper's flag after attacking, which would otherwise flip an eval model into training.
        self.train(model.training)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        out = self.model((pixels - self.mean.to(pixels)) / self.std.to(pixels))
        return out.logits[self.exit_index] if isinstance(out, MultiExitOutput) else out
