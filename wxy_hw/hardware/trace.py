"""What a network runs, as a chip sees it: the Conv / Linear layers each forward (and each exit) executes, their
shapes (fan-in K, outputs N, MVMs M), the input-bit activity measured on real inputs, and the fixed
calibration images every study measures a chip on."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable, Protocol, cast

import torch
import torch.nn as nn

from ..utils import eval_mode

LAYER_TYPES = (nn.Conv1d, nn.Conv2d, nn.Linear)
# weight layers the accuracy engine leaves digital (it maps LAYER_TYPES only): on an analog chip they
# are priced as digital MACs, at the int8 reference chip's energy per MAC, so accuracy and energy still
# describe the same chip (SCAN's attention heads upsample with transposed convolutions)
DIGITAL_UNIT_TYPES = (nn.ConvTranspose1d, nn.ConvTranspose2d)


@dataclass(frozen=True)
class LayerShape:
    """A layer as the chip sees it: fan-in K, outputs N, MVMs per inference M, and its weights."""

    name: str
    k: int
    n: int
    m: int
    weight: torch.Tensor | None = None
    digital: bool = False   # a layer the engine leaves digital (DIGITAL_UNIT_TYPES)


class _ExitModel(Protocol):
    """What is_multi_exit checks a model for (the trace reads it duck-typed, like the studies)."""

    @property
    def num_exits(self) -> int: ...

    def forward_exit(self, x: torch.Tensor, k: int) -> torch.Tensor: ...


def is_multi_exit(model: nn.Module) -> bool:
    """Any module with ``num_exits`` and ``forward_exit(x, k)`` (MultiExitNet, attach_exits models)."""
    return hasattr(model, "num_exits") and callable(getattr(model, "forward_exit", None))


@torch.no_grad()
def _run_recording(model: nn.Module, x: torch.Tensor, exit_index: int | None) -> list[LayerShape]:
    """Run the model (or its exit ``exit_index``) once and record every Conv / Linear it executes, in order."""
    names = {mod: name for name, mod in model.named_modules()}
    seen: list[LayerShape] = []

    def hook(mod, inp, out):
        if isinstance(mod, DIGITAL_UNIT_TYPES):
            # weight (in, out/groups, *kernel): every input position multiplies in/groups channels into
            # out·kernel partial outputs, which col2im then adds up
            k, n, m = mod.weight.shape[0] // mod.groups, mod.weight[0].numel() * mod.groups, inp[0][0, 0].numel()
            seen.append(LayerShape(names[mod], k, n, m, mod.weight.detach(), digital=True))
            return
        k = mod.weight[0].numel()
        n = mod.weight.shape[0]
        if isinstance(mod, nn.Linear):
            m = max(out[0].numel() // mod.out_features, 1)
        else:
            m = out[0, 0].numel()
        seen.append(LayerShape(names[mod], k, n, m, mod.weight.detach()))

    handles = [mod.register_forward_hook(hook) for mod in model.modules()
               if isinstance(mod, LAYER_TYPES + DIGITAL_UNIT_TYPES)]
    try:
        with eval_mode(model):
            # cast: a model asked for an exit is multi-exit (is_multi_exit), duck-typed on purpose
            model(x) if exit_index is None else cast(_ExitModel, model).forward_exit(x, exit_index)
    finally:
        for h in handles:
            h.remove()
    return seen


def layer_shapes(model: nn.Module, input_shape: tuple[int, ...]) -> list[LayerShape]:
    """Every Conv1d / Conv2d / Linear a forward of one ``input_shape`` input runs, in execution order."""
    x = torch.zeros(1, *input_shape, device=next(model.parameters()).device)
    return _dedupe(_run_recording(model, x, None))


def _dedupe(shapes: list[LayerShape]) -> list[LayerShape]:
    out, seen = [], set()
    for s in shapes:  # a layer called twice in one forward still occupies one place on the chip
        if s.name not in seen:
            seen.add(s.name)
            out.append(s)
    return out


def _exit_shapes(model: nn.Module, input_shape: tuple[int, ...]) -> list[list[LayerShape]]:
    if not is_multi_exit(model):
        return [layer_shapes(model, input_shape)]
    x = torch.zeros(1, *input_shape, device=next(model.parameters()).device)
    return [_dedupe(_run_recording(model, x, k)) for k in range(int(cast(_ExitModel, model).num_exits))]  # cast: checked above


@torch.no_grad()
def measure_activity(model: nn.Module, batches: Iterable[torch.Tensor | tuple], act_bits: int = 8) -> dict[str, float]:
    """Fraction of input bits that are 1, per Conv / Linear, on real activations of ``batches``.

    The DAC of a layer has one fixed range (the abs-max of that layer's inputs over the batches,
    as the engine calibrates it); an input x is driven as the act_bits-bit magnitude
    round(|x| / range · (2^act_bits − 1)), and each of its bits is one pulse or none.
    """
    xs = [b[0] if isinstance(b, (tuple, list)) else b for b in batches]
    if not xs:
        raise ValueError("measure_activity needs at least one batch of inputs")
    names = {mod: name for name, mod in model.named_modules()}
    layers = [mod for mod in model.modules() if isinstance(mod, LAYER_TYPES)]
    top = 2 ** act_bits - 1
    ranges: dict[str, float] = {}
    ones: dict[str, float] = {}
    count: dict[str, float] = {}

    def span(mod, inp):
        ranges[names[mod]] = max(ranges.get(names[mod], 0.0), float(inp[0].detach().abs().max()))

    def bits(mod, inp):
        name = names[mod]
        q = torch.round(inp[0].detach().abs().double() / max(ranges[name], 1e-30) * top).long()
        ones[name] = ones.get(name, 0.0) + sum(float(((q >> i) & 1).sum()) for i in range(act_bits))
        count[name] = count.get(name, 0.0) + q.numel() * act_bits

    dev = next(model.parameters()).device
    with eval_mode(model):
        for fn in (span, bits):
            handles = [mod.register_forward_pre_hook(fn) for mod in layers]
            try:
                for x in xs:
                    model(x.to(dev))
            finally:
                for h in handles:
                    h.remove()
    return {name: ones[name] / count[name] for name in count}


def calibration_inputs(split, mean: tuple[float, ...], std: tuple[float, ...], seed: int = 0, images: int = 256,
                       batch_size: int = 128) -> list[torch.Tensor]:
    """The fixed, seeded selection of training images every study calibrates a chip on (converter
    ranges, measured activity): the same images for a given checkpoint and seed, so one configuration
    has one price."""
    from ..data import BatchLoader
    from ..data.base import take_subset

    return [x for x, _ in BatchLoader(take_subset(split, images, seed), batch_size, mean=mean, std=std)]


def fingerprint(xs: list[torch.Tensor]) -> str:
    """Short hash of calibration inputs, for manifests (proves two studies calibrated on the same images)."""
    h = hashlib.sha256()
    for x in xs:
        h.update(x.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
