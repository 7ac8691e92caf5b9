"""Quantization-aware training: train through Brevitas quantizers (weights and activations).

``--method qat`` alone is the single-exit baseline trained quantized; ``self_distillation+qat``
(or any ``method+qat``) quantizes the primary method's model. Scales are learned from
statistics during training (Brevitas defaults); the checkpoint records the bit widths, so
``load_model`` rebuilds the quantized network.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.quant import MAX_BITS, MIN_BITS, QuantConfig, quantize_model
from ..models.multi_exit import MultiExitOutput
from . import options as check
from .base import Batch, Method


class QuantizationAware(Method):
    """Swap in Brevitas layers before training; CE on the deepest exit when used alone."""

    name = "qat"
    multi_exit = False

    def __init__(self, weight_bits: int = 4, act_bits: int | None = 8, per_channel: bool = True,
                 include_ce: bool = True) -> None:
        super().__init__()
        bits = f"an integer from {MIN_BITS} to {MAX_BITS}"
        self.weight_bits = check.integer(self.name, "weight_bits", weight_bits, bits,
                                         lambda v: MIN_BITS <= v <= MAX_BITS, 4)
        self.act_bits = None if act_bits is None else check.integer(
            self.name, "act_bits", act_bits, f"{bits} (or None for float)", lambda v: MIN_BITS <= v <= MAX_BITS, 8)
        self.per_channel = check.flag(self.name, "per_channel", per_channel)
        self.include_ce = check.flag(self.name, "include_ce", include_ce)
        self.config = QuantConfig(self.weight_bits, self.act_bits, self.per_channel)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        return quantize_model(model, self.config)

    def forward(self, out: MultiExitOutput, batch: Batch) -> dict[str, torch.Tensor]:
        return {"ce": F.cross_entropy(out.final, batch.y)} if self.include_ce else {}
