"""K chips of one model in one pass: weights stacked along a chip dimension, inputs shared.

``deploy_chips(model, device, seeds)`` programs every analog layer for all K chips at once
(``physics.program_chips``: the mapping once, each chip from its own seed's streams, so chip k
holds exactly the weights ``deploy(model, device, seeds[k])`` programs) and returns a
``ChipBatch``. Its forward takes one batch of images and returns chip k's output for every k:
the images are repeated chip-major (K·b samples, chip k's block k), digital layers (BN, ReLU,
pooling, heads' digital parts) run once over all K·b samples, and each analog layer applies
chip k's weights to block k. Read noise comes from each chip's own per-layer stream with the
one-chip path's shapes and order (one draw of W + σ⊙ξ per layer call of a forward), so a chip
reads exactly as it does alone.

That is the "stacked" layout (the default on CUDA). On a CPU the K-fold activations leave the
caches, so the default there is the "loop" layout: the same stacked chips, each run in turn on the
shared input batch with its own weights (one deepcopy and one stacked programming per K chips,
no per-chip module construction). In the stacked layout, each zero-padded conv runs the K chips as
one grouped conv (K× the groups) and each Linear as one batched matmul; images are processed in
sub-batches of ``IMAGES_PER_CHIP`` images per chip (``IMAGES_PER_CHIP_CUDA`` on a GPU), with the reads drawn
once per forward and reused across sub-batches, so the working set stays small. In the loop
layout every chip's arithmetic is the same whatever K is (results do not depend on how chips are
chunked, e.g. across Ray workers); the stacked layout agrees with it up to float rounding.
``chips_per_pass`` bounds K by a memory budget (default 2 GiB).

What is not batched (``batch_blocker`` names it; ``evaluate_chips`` then runs chips one at a
time): converters (ADC / DAC, fixed or per-sample ranging), IR drop and ``per_mvm`` read noise,
whose per-array loops are per chip anyway, and BN recalibration, whose statistics are per chip.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.multi_exit import MultiExitOutput
from ..models.coverage import untouched_layers, warn_untouched
from .engine import ANALOG_TYPES, _set_submodule, analog_layers, chip_seed, program_layer
from .physics import is_ideal
from .spec import DeviceLike, DeviceSpec, load_device

IMAGES_PER_CHIP = 64         # images per chip per sub-batch on a CPU: large enough for efficient convs,
                             # small enough that K chips' activations stay near the caches
IMAGES_PER_CHIP_CUDA = 1024  # on a GPU, fewer and larger kernels: launches, not caches, are the cost
GROUPED_OPS = True           # stacked layout: one grouped conv / batched matmul over the K chips per
                             # layer call (False: one op per chip, for the benchmark's comparison)
DEFAULT_MAX_MEMORY = 2 << 30  # bytes of working memory one chip batch may use


def batch_blocker(spec: DeviceSpec, read_noise_mode: str = "per_batch", bn_images: Any = None,
                  backend: str = "native") -> str | None:
    """Why these chips must run one at a time, or None when they can be batched."""
    if backend != "native":
        return f"the {backend} backend programs one chip at a time"
    if bn_images is not None:
        return "BN recalibration estimates per-chip statistics"
    if spec.array["adc_bits"] or spec.array["dac_bits"]:
        return "converters (ADC / DAC) run per-array loops per chip"
    if spec.ir_drop["beta"] > 0:
        return "IR drop runs per-array loops per chip"
    if read_noise_mode != "per_batch":
        return f"read_noise_mode {read_noise_mode!r} draws per-MVM noise per chip"
    return None


class ChipBatchLayer(nn.Module):
    """One Conv1d / Conv2d / Linear programmed on K chips; input chip-major (K·b, ...)."""

    weight: torch.Tensor  # buffers, registered in __init__
    read_sigma: torch.Tensor | None
    bias: torch.Tensor | None

    def __init__(self, layer: nn.Conv1d | nn.Conv2d | nn.Linear, weight: torch.Tensor,
                 read_sigma: torch.Tensor | None, read_seeds: Sequence[int]) -> None:
        super().__init__()
        self.k = len(read_seeds)
        self.register_buffer("weight", weight.detach().contiguous())                 # (K, out, ...)
        self.register_buffer("read_sigma", None if read_sigma is None else read_sigma.detach().contiguous())
        self.register_buffer("bias", None if layer.bias is None else layer.bias.detach().clone())
        # the layer's own op (stride, padding, padding_mode, groups), kept unregistered: the
        # trained weights it holds are never read again
        self.is_conv = isinstance(layer, (nn.Conv1d, nn.Conv2d))
        self._op: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor] = \
            layer._conv_forward if isinstance(layer, (nn.Conv1d, nn.Conv2d)) else F.linear
        # a zero-padded conv runs all K chips as one conv with K× the groups (other padding modes
        # pad inside _conv_forward, so they keep the per-chip op)
        self._grouped: tuple[Callable[..., torch.Tensor], tuple[int, ...], str | tuple[int, ...], tuple[int, ...],
                             int] | None = None
        if isinstance(layer, (nn.Conv1d, nn.Conv2d)) and layer.padding_mode == "zeros":
            fn = F.conv2d if isinstance(layer, nn.Conv2d) else F.conv1d
            self._grouped = (fn, layer.stride, layer.padding, layer.dilation, layer.groups)
        self.read_seeds = list(read_seeds)
        self._gens = [torch.Generator(device=weight.device).manual_seed(s) for s in self.read_seeds]
        self._draws: list[torch.Tensor] | None = None  # W + σ⊙ξ of each call in the current forward
        self._call = 0
        self.active: int | None = None  # chip-loop layout: the one chip this forward runs

    def begin(self) -> None:
        """Start a forward: reads are drawn on each call of the first sub-batch, then reused."""
        self._draws, self._call = [], 0

    def rewind(self) -> None:
        """Next sub-batch of the same forward: the same reads again."""
        self._call = 0

    def end(self) -> None:
        self._draws, self._call = None, 0

    def _weights(self) -> torch.Tensor:
        if self.read_sigma is None:
            return self.weight
        if self._draws is not None and self._call < len(self._draws):
            w = self._draws[self._call]
        else:  # one draw per chip, as the one-chip twin draws torch.randn(w.shape) per call
            noise = torch.stack([torch.randn(self.weight.shape[1:], generator=g, device=self.weight.device,
                                             dtype=self.weight.dtype) for g in self._gens])
            w = self.weight + self.read_sigma * noise
            if self._draws is not None:
                self._draws.append(w)
        self._call += 1
        return w

    def _chip_weight(self, k: int) -> torch.Tensor:
        """Chip k's read of this layer: one draw from chip k's own stream, as its one-chip twin draws."""
        if self.read_sigma is None:
            return self.weight[k]
        noise = torch.randn(self.weight.shape[1:], generator=self._gens[k], device=self.weight.device,
                            dtype=self.weight.dtype)
        return self.weight[k] + self.read_sigma[k] * noise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.active is not None:  # chip loop: the whole batch on one chip
            noisy = self.read_sigma is not None
            y = self._op(x, self._chip_weight(self.active), None if noisy else self.bias)
            if noisy and self.bias is not None:
                y = y + (self.bias.view(1, -1, *([1] * (y.dim() - 2))) if self.is_conv else self.bias)
            return y
        w = self._weights()
        b = x.shape[0] // self.k
        if b * self.k != x.shape[0]:
            raise ValueError(f"a chip batch of {self.k} chips needs a chip-major batch (a multiple of {self.k} "
                             f"samples), got {x.shape[0]}")
        noisy = self.read_sigma is not None
        k = self.k
        if GROUPED_OPS and self._grouped is not None:
            # chip-major (K·b, C, ...) → (b, K·C, ...): group k of the conv sees chip k's block
            fn, stride, padding, dilation, groups = self._grouped
            xs = x.reshape(k, b, *x.shape[1:]).transpose(0, 1).reshape(b, k * x.shape[1], *x.shape[2:])
            y = fn(xs, w.reshape(-1, *w.shape[2:]), None, stride, padding, dilation, groups * k)
            y = y.reshape(b, k, -1, *y.shape[2:]).transpose(0, 1).reshape(k * b, -1, *y.shape[2:])
            noisy = True  # the bias is added below
        elif GROUPED_OPS and not self.is_conv:
            y = torch.matmul(x.reshape(k, -1, x.shape[-1]), w.transpose(1, 2)).reshape(*x.shape[:-1], -1)
            noisy = True
        else:
            # the one-chip twin adds the bias after a bias-free MAC when it reads noisily; same order here
            y = torch.cat([self._op(x[i * b:(i + 1) * b], w[i], None if noisy else self.bias) for i in range(k)])
        if noisy and self.bias is not None:
            y = y + (self.bias.view(1, -1, *([1] * (y.dim() - 2))) if self.is_conv else self.bias)
        return y


class ChipBatch(nn.Module):
    """K deployed chips of one model; ``forward(x)`` returns [chip k's output for x] over k."""

    def __init__(self, model: nn.Module, seeds: Sequence[int], info: dict[str, Any], layout: str = "auto") -> None:
        super().__init__()
        if layout not in ("auto", "loop", "stacked"):
            raise ValueError(f"layout must be 'auto', 'loop' or 'stacked', got {layout!r}")
        self.model = model
        self.seeds = list(seeds)
        self.k = len(self.seeds)
        self.deploy_info = info
        self.layout = layout

    def _resolved_layout(self, x: torch.Tensor) -> str:
        # Measured on a 2-core CPU (ResNet-18 w0.25, K = 16): the stacked batch's K-fold
        # activations leave the caches (batch norm 4× slower, +14 % in copies), so per chip it costs
        # 1.6× a clean forward; looping over chips on shared inputs costs the clean forward plus
        # the reads. On a GPU the stacked batch fills the device instead.
        if self.layout != "auto":
            return self.layout
        return "stacked" if x.device.type == "cuda" else "loop"

    def chip_layers(self) -> list[ChipBatchLayer]:
        return [m for m in self.model.modules() if isinstance(m, ChipBatchLayer)]

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> list[torch.Tensor | MultiExitOutput]:
        layers = self.chip_layers()
        if self._resolved_layout(x) == "loop":
            outs: list[torch.Tensor | MultiExitOutput] = []
            try:
                for k in range(self.k):
                    for m in layers:
                        m.active = k
                    out = self.model(x)
                    outs.append(out if isinstance(out, torch.Tensor) else MultiExitOutput(list(out.logits), []))
            finally:
                for m in layers:
                    m.active = None
            return outs
        per_chip = min(len(x), images_per_chip(x.device))
        for m in layers:
            m.begin()
        pieces: list[list[torch.Tensor]] = []   # sub-batch → exit → (K·b, classes)
        plain = True
        try:
            for xs in x.split(per_chip):
                for m in layers:
                    m.rewind()
                out = self.model(xs.repeat(self.k, *([1] * (xs.dim() - 1))))
                plain = isinstance(out, torch.Tensor)
                pieces.append([out] if plain else list(out.logits))
        finally:
            for m in layers:
                m.end()
        logits = [torch.cat([p[e] for p in pieces]) if len(pieces) > 1 else pieces[0][e] for e in range(len(pieces[0]))]
        n = len(x)
        # sub-batch outputs are chip-major within each piece: regroup per chip
        sizes = [len(xs) for xs in x.split(per_chip)]
        results: list[torch.Tensor | MultiExitOutput] = []
        for k in range(self.k):
            per_exit = []
            for lg in logits:
                chunks, start = [], 0
                for s in sizes:
                    chunks.append(lg[start + k * s:start + (k + 1) * s])
                    start += self.k * s
                per_exit.append(torch.cat(chunks) if len(chunks) > 1 else chunks[0])
            assert per_exit[0].shape[0] == n
            results.append(per_exit[0] if plain else MultiExitOutput(per_exit, []))
        return results


def images_per_chip(device: torch.device) -> int:
    """Images per chip in one sub-batch of the stacked layout on this torch device."""
    return IMAGES_PER_CHIP_CUDA if device.type == "cuda" else IMAGES_PER_CHIP


@torch.no_grad()
def deploy_chips(model: nn.Module, device: DeviceLike, seeds: Sequence[int], *, t_inference: float = 1.0,
                 noise_scale: float = 1.0, overrides: dict[str, Any] | None = None,
                 read_noise_mode: str = "per_batch", calibration: Iterable | None = None,
                 layout: str = "auto") -> ChipBatch:
    """The chips ``seeds`` of ``device`` as one ChipBatch (same arguments and chips as ``deploy``).

    ``layout``: "stacked" runs the K chips as one chip-major batch, "loop" runs the chips one
    after another on each input batch (digital layers per chip, no K-fold activations); "auto"
    takes "stacked" on CUDA and "loop" on CPU. Both give every chip its one-chip reads.

    ``calibration`` is accepted for a uniform call and unused: chips with converters are refused
    (``batch_blocker``) and deploy one at a time.
    """
    if noise_scale < 0:
        raise ValueError(f"noise_scale must be ≥ 0, got {noise_scale}")
    if not seeds:
        raise ValueError("deploy_chips needs at least one chip seed")
    spec = load_device(device, overrides)
    spec.check_time(t_inference)
    reason = batch_blocker(spec, read_noise_mode)
    if reason:
        raise ValueError(f"these chips cannot be batched ({reason}): deploy them one at a time with deploy()")
    warn_untouched("deploy", untouched_layers(model, ANALOG_TYPES), "stay digital (the engine maps Conv1d / Conv2d / "
                   "Linear onto crossbars)")
    batched = copy.deepcopy(model).eval()
    seeds = list(seeds)
    if not is_ideal(spec, noise_scale):
        for idx, (name, layer) in enumerate(analog_layers(batched)):
            prog = program_layer(layer, spec, seeds, idx, t_inference, noise_scale)
            twin = ChipBatchLayer(layer, prog.weight, prog.read_sigma,
                                  [chip_seed(s, idx, "read") for s in seeds])
            if name == "":  # the model is itself a single layer
                batched = twin
            else:
                _set_submodule(batched, name, twin)
    for p in batched.parameters():
        p.requires_grad_(False)
    info = {"device": spec.name, "seeds": seeds, "t_inference": t_inference, "noise_scale": noise_scale,
            "backend": "native", "read_noise_mode": read_noise_mode}
    return ChipBatch(batched, seeds, info, layout)


@torch.no_grad()
def chips_per_pass(model: nn.Module, sample: torch.Tensor, max_memory: int = DEFAULT_MAX_MEMORY) -> int:
    """How many chips one ChipBatch may hold within ``max_memory`` bytes (at least 1).

    Estimate per chip: the stacked weights three times (programmed, read-noise draw, its noise)
    plus four times the largest activation of one sample (a layer's input, output, a residual and
    the repeat) for each of its images in a sub-batch (``sample`` is a batch of the size evaluated).
    """
    largest = [0]

    def hook(_m: nn.Module, _inp: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor) and out.dim() > 0:  # quantizers also return 0-dim scales
            largest[0] = max(largest[0], out[0].numel() * out.element_size())

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    was_training = model.training
    try:
        model.eval()
        model(sample[:1])
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    weight_bytes = sum(layer.weight.numel() * layer.weight.element_size() for _, layer in analog_layers(model))
    per_chip = 3 * weight_bytes + 4 * largest[0] * min(len(sample), images_per_chip(sample.device))
    return max(1, min(4096, int(max_memory // max(per_chip, 1))))
