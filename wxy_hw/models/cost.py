"""Parameter and MAC counts per exit, measured with torch's FlopCounterMode (no hand tables)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from .multi_exit import MultiExitNet
from ..utils import eval_mode


@dataclass
class ExitCost:
    """Cumulative cost of reaching one exit (backbone up to its stage plus its head)."""

    exit: int
    stage: int
    params: int
    macs: int


def _params(modules) -> int:
    seen: set[int] = set()
    total = 0
    for m in modules:
        for p in m.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
    return total


def _probe_input(model: MultiExitNet, image_size: int | None) -> torch.Tensor:
    """One zero sample: the recorded input shape of an attached backbone, else channels × size²."""
    cfg = model.config
    dev = next(model.parameters()).device
    if image_size is None and cfg.get("input_shape"):
        return torch.zeros(1, *cfg["input_shape"], device=dev)
    size = image_size or cfg["image_size"]
    return torch.zeros(1, cfg["in_channels"], size, size, device=dev)


@torch.no_grad()
def exit_costs(model: MultiExitNet, image_size: int | None = None) -> list[ExitCost]:
    """Per-exit cumulative parameters and multiply-accumulates for one input image.

    MACs are FlopCounterMode's FLOPs / 2 over convolutions and matrix products (BN, ReLU and
    pooling are not counted, as is customary).
    """
    x = _probe_input(model, image_size)
    costs = []
    with eval_mode(model):
        # a backbone read by hooks has no stages: each exit then costs the whole backbone plus its head
        for k, stage in enumerate(getattr(model, "exit_stages", range(model.num_exits))):
            counter = FlopCounterMode(display=False)
            with counter:
                model.forward_exit(x, k)
            costs.append(ExitCost(k, stage, _params(model.exit_modules(k)), counter.get_total_flops() // 2))
    return costs


def total_params(model: torch.nn.Module) -> int:
    """All trainable parameters of a model."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def exit_path_macs(model: MultiExitNet, image_size: int | None = None) -> list[int]:
    """MACs a sample spends when it leaves at exit k during early-exit inference.

    Unlike ``exit_costs`` (one exit alone), this includes every earlier head the sample passed
    through: backbone up to exit k's stage + heads 0..k.
    """
    if not hasattr(model, "stages"):
        raise ValueError(f"per-path MACs need a backbone cut into stages, and this one is not "
                         f"({getattr(model, 'split_reason', type(model).__name__)}); use exit_costs")
    h = _probe_input(model, image_size)
    with eval_mode(model):
        def macs(module: torch.nn.Module, x: torch.Tensor) -> tuple[int, torch.Tensor]:
            counter = FlopCounterMode(display=False)
            with counter:
                out = module(x)
            return counter.get_total_flops() // 2, out

        total, h = macs(model.stem, h)
        stage_end = []
        for stage in model.stages:
            m, h = macs(stage, h)
            total += m
            stage_end.append((total, h))
        path, heads = [], 0
        for k, s in enumerate(model.exit_stages):
            m, _ = macs(model.heads[k], stage_end[s][1])
            heads += m
            path.append(stage_end[s][0] + heads)
        return path
