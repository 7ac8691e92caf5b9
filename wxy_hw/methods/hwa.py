"""Hardware-aware training: train through the device's own noise so the minimum found tolerates it.

Every training forward runs with weights drawn from the deployment model of a device file —
the same ``program_weight`` the native engine deploys with (mapping, quantization, programming
noise, drift, mismatch, faults) plus read noise — and a straight-through gradient: the loss is
evaluated at W̃ = W + stopgrad(program(W) − W), its gradient applied to W. A fresh chip is
drawn every step (Joshi et al., Nat. Commun. 2020; aihwkit's weight modifiers do the same).

``--method hwa`` alone is the baseline (CE, single exit) trained this way;
``--method self_distillation+hwa`` composes it with any method.
"""
from __future__ import annotations


import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from ..hardware.engine import ANALOG_TYPES
from ..hardware.physics import is_ideal, program_weight
from ..hardware.spec import available_devices, load_device
from ..models.multi_exit import MultiExitOutput
from . import options as check
from .base import Batch, Method


class HardwareAware(Method):
    """Noise injection from a device spec; see the module docstring."""

    name = "hwa"
    multi_exit = False

    def __init__(self, device: str = "reram", noise_scale: float = 1.0, t_inference: float | None = None,
                 seed: int = 0, include_ce: bool = True) -> None:
        super().__init__()
        self.device = check.path_like(self.name, "device", device,
                                      f"a device name ({', '.join(available_devices())}) or a .toml path", "reram")
        self.noise_scale = check.nonnegative(self.name, "noise_scale", noise_scale, 1.0)
        if t_inference is not None:
            t_inference = check.nonnegative(self.name, "t_inference", t_inference, 86400)
        self.seed = check.seed(self.name, seed)
        self.include_ce = check.flag(self.name, "include_ce", include_ce)
        self.spec = load_device(self.device)
        # Train for the harder condition: one day after programming on drifting devices.
        self.t_inference = self.spec.inference_time(t_inference)

    def model_forward(self, model: nn.Module, x: torch.Tensor, batch: Batch | None = None) -> MultiExitOutput:
        if not model.training or is_ideal(self.spec, self.noise_scale):
            return model(x)
        gen = self.random_generator(x.device)
        noisy: dict[str, torch.Tensor] = {}
        for name, module in model.named_modules():
            if isinstance(module, ANALOG_TYPES):  # the layers deploy puts on crossbars
                w = module.weight
                prog = program_weight(w, self.spec, gen, self.t_inference, self.noise_scale)
                delta = prog.weight - w.detach()
                if prog.read_sigma is not None:
                    delta = delta + prog.read_sigma * torch.randn(w.shape, generator=gen, device=w.device, dtype=w.dtype)
                noisy[f"{name}.weight" if name else "weight"] = w + delta.detach()
        return functional_call(model, noisy, (x,), strict=False)

    def forward(self, out: MultiExitOutput, batch: Batch) -> dict[str, torch.Tensor]:
        return {"ce": F.cross_entropy(out.final, batch.y)} if self.include_ce else {}
