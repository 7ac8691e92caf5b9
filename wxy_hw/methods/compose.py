"""Method composition: ``a+b`` trains with the sum of the components' loss terms (e.g. ``self_distillation+hwa``)."""
from __future__ import annotations

from typing import Any, Sequence, cast

import torch
import torch.nn as nn

from ..models.multi_exit import MultiExitOutput
from .base import Batch, Method


class ComposedMethod(Method):
    """``a+b``: the sum of the components' loss terms; at most one of them may alter the forward."""

    def __init__(self, components: list[Method]) -> None:
        super().__init__()
        self.parts = nn.ModuleList(components)
        self.name = "+".join(c.name for c in components)  # type: ignore[misc]
        self.multi_exit = components[0].multi_exit  # type: ignore[misc]
        self.needs_teacher = any(c.needs_teacher for c in components)  # type: ignore[misc]
        forwards = [c for c in components if type(c).model_forward is not Method.model_forward]
        if len(forwards) > 1:
            raise ValueError(f"cannot compose {self.name}: {', '.join(c.name for c in forwards)} each change the forward")
        batchers = [c for c in components if type(c).prepare_batch is not Method.prepare_batch]
        if len(batchers) > 1:
            raise ValueError(f"cannot compose {self.name}: {', '.join(c.name for c in batchers)} each build the "
                             "training batch")
        self._forward_owner = forwards[0] if forwards else None

    @property
    def methods(self) -> list[Method]:
        """The components in order: ``parts`` as Methods (iterating an nn.ModuleList yields plain Modules)."""
        return cast("list[Method]", list(self.parts))

    def prepare_model(self, model: nn.Module) -> nn.Module:
        for part in self.methods:
            model = part.prepare_model(model)
        return model

    def model_forward(self, model: nn.Module, x: torch.Tensor, batch: Batch | None = None) -> MultiExitOutput:
        return self._forward_owner.model_forward(model, x, batch) if self._forward_owner else model(x)

    def bind_data(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().bind_data(mean, std)
        for part in self.methods:
            part.bind_data(mean, std)

    def set_epoch(self, epoch: int, epochs: int) -> None:
        for part in self.methods:
            part.set_epoch(epoch, epochs)

    def selection_start(self, epochs: int) -> int:
        return max(part.selection_start(epochs) for part in self.methods)

    def prepare_batch(self, batch: Batch, model: nn.Module) -> Batch:
        for part in self.methods:
            batch = part.prepare_batch(batch, model)
        return batch

    def forward(self, out: MultiExitOutput, batch: Batch) -> dict[str, torch.Tensor]:
        terms: dict[str, torch.Tensor] = {}
        for part in self.methods:
            for key, value in part(out, batch).items():
                terms[key if key not in terms else f"{part.name}.{key}"] = value
        return terms

    def options(self) -> dict[str, Any]:
        return {part.name: part.options() for part in self.methods}
