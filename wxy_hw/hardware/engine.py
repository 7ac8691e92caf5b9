"""The native (W+σ)X → Y engine: deploy a trained model onto one simulated chip instance.

``deploy(model, device, seed)`` deep-copies the model and replaces every Conv2d / Linear by an
analog twin holding the weights *as programmed on that chip* (mapping, quantization, faults,
programming noise, drift and drift compensation, from ``physics.program_weight``). At inference
the twin adds what happens on every read:

* read noise — ``read_noise_mode="per_batch"`` (default, fast): a fresh weight perturbation
  W + σ⊙ξ drawn for every forward call and shared by the batch; ``"per_mvm"`` (exact, slower):
  independent per input vector and output, as a new read on each MVM gives,
  y_j += sqrt(Σ_i σ_ij² x_i²)·ξ, computed with one small extra conv over the squared input per
  crossbar row-tile. Both give each sample the same marginal distribution (so the same expected
  accuracy); per_batch only correlates the noise across the samples of one batch;
* (W − f(X)) IR drop — the column current I_j = Σ_i |G_ij||V_i| lowers the effective read
  voltage along the line, modelled to first order as y_j ← y_j·(1 − β·I_j / I_max), with
  I_max = rows_used · g_max · V_max the current of a fully-on column at full input;
* DAC / ADC resolution — inputs and MAC outputs quantized to 2^(b−1)−1 signed levels, when the
  chip has converters (``array.adc_bits`` / ``array.dac_bits`` > 0). ``array.ranging = "fixed"``
  (the default, as a chip is built): one full-scale range per layer for the DAC and one per array
  (row tile × block of ``cols`` output columns; per group of rows when ``array.parallel_rows``
  reads a tile a group at a time) for the ADC, calibrated once at deployment on a
  few batches of training inputs (``deploy(..., calibration=batches)``), values beyond it clip;
  ``"per_sample"``: every sample ranges itself (abs-max per sample — an ideal no chip has).

Float weights are programmed as one value each on the device's cells, or, when ``mapping.weight_bits``
is set (a chip configuration with explicit bits per cell), bit-sliced like Brevitas layers
(``physics.program_sliced_float``). Inputs enter in one step at the DAC's precision and slices are
recombined before the ADC: bit-serial inputs and per-slice conversions, which make a small read's
ADC lossless on real chips, are priced by the cost model but not simulated here.

Biases stay digital. With every effect off (``devices/ideal.toml`` or zero noise and no
quantization) the deployed model is bit-identical to the digital one.
"""
from __future__ import annotations

import copy
import hashlib
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .physics import (Programmed, is_ideal, program_bit_sliced, program_chips, program_sliced_float, read_groups,
                      tile_ids)
from ..models.coverage import untouched_layers, warn_untouched
from ..models.quant import quantized_weight
from .spec import DeviceLike, DeviceSpec, load_device


def chip_seed(seed: int, layer_index: int, salt: str = "prog") -> int:
    """A per-layer generator seed derived from the chip seed (stable across runs and platforms)."""
    digest = hashlib.sha256(f"{salt}:{seed}:{layer_index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def quantize_signed(x: torch.Tensor, bits: int, dims: tuple[int, ...]) -> torch.Tensor:
    """Symmetric quantization to 2^(bits−1)−1 levels per side, range = abs-max over ``dims``."""
    levels = 2 ** (bits - 1) - 1
    scale = x.detach().abs().amax(dim=dims, keepdim=True).clamp_min(1e-12) / levels
    return torch.round(x / scale) * scale


def quantize_fixed(x: torch.Tensor, bits: int, full_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric quantization to 2^(bits−1)−1 levels per side over a fixed range (values beyond it clip)."""
    levels = 2 ** (bits - 1) - 1
    scale = full_scale.clamp_min(1e-12) / levels
    return torch.round(x / scale).clamp(-levels, levels) * scale


# The mixins go before nn.Conv1d / nn.Conv2d / nn.Linear; to the type checker they are modules.
if TYPE_CHECKING:
    _ModuleBase = nn.Module
else:
    _ModuleBase = object


class AnalogMixin(_ModuleBase):
    """Per-read effects shared by the analog Conv2d and Linear twins."""

    weight: torch.Tensor
    read_sigma: torch.Tensor | None
    w_max_tiles: torch.Tensor
    row_tile: torch.Tensor
    read_group: torch.Tensor
    dac_range: torch.Tensor
    adc_range: torch.Tensor
    read_tile_ind: torch.Tensor | None
    read_tile_sig2: torch.Tensor | None

    def _setup_analog(self, prog: Programmed, spec: DeviceSpec, read_seed: int, read_noise_mode: str) -> None:
        self.weight = nn.Parameter(prog.weight.detach().clone(), requires_grad=False)
        self.register_buffer("read_sigma", None if prog.read_sigma is None else prog.read_sigma.detach().clone())
        w_max = prog.w_max.detach().reshape(prog.weight.shape[0], -1)
        tiles = tile_ids(w_max.shape[1], int(spec.array["rows"]), w_max.device)
        # |W|max of the crossbar tile holding (output j, row tile t): what that tile maps onto g_max
        self.register_buffer("w_max_tiles", torch.stack([w_max[:, tiles == t].amax(1)
                                                         for t in range(int(tiles[-1]) + 1)], 1))
        self._setup_read_tiles(spec)
        self.ir_beta = float(spec.ir_drop["beta"])
        self.rows = int(spec.array["rows"])
        # which crossbar row tile each input row lands on, and which read group (the rows one conversion
        # sums: the whole tile, or array.parallel_rows of it at a time): fixed by the mapping, so computed once
        fan_in = self.weight[0].numel()
        self.register_buffer("row_tile", tile_ids(fan_in, self.rows, self.weight.device), persistent=False)
        self.n_row_tiles = int(self.row_tile[-1]) + 1
        self.parallel_rows = int(spec.array["parallel_rows"])
        self.register_buffer("read_group", read_groups(fan_in, self.rows, self.parallel_rows, self.weight.device),
                             persistent=False)
        self.n_read_groups = int(self.read_group[-1]) + 1
        first = torch.searchsorted(self.read_group, torch.arange(self.n_read_groups, device=self.weight.device))
        self.group_tile = [int(t) for t in self.row_tile[first]]  # the tile each read group lies in
        self.tile_rows = [int(n) for n in torch.bincount(self.row_tile)]  # rows of each tile (IR drop's I_max)
        self.adc_bits = int(spec.array["adc_bits"])
        self.dac_bits = int(spec.array["dac_bits"])
        self.ranging = str(spec.array["ranging"])
        self.cols = int(spec.array["cols"])
        n_groups = -(-self.weight.shape[0] // self.cols)
        # fixed converter ranges (set by calibrate_converters); observed maxima while calibrating
        self.register_buffer("dac_range", torch.zeros(()))
        self.register_buffer("adc_range", torch.zeros(self.n_read_groups, n_groups))
        self.calibrating = False
        self.read_seed = read_seed
        self.read_noise_mode = read_noise_mode
        self._gen: torch.Generator | None = None

    def _setup_read_tiles(self, spec: DeviceSpec) -> None:
        """Pre-compute the per-read-group form of the read-noise variance.

        σ is constant inside a crossbar tile, hence inside each read group of it, so
        Σ_i σ_ij² x_i² = Σ_r σ_rj² S_r with S_r the squared input summed over read group r: one conv
        with n_groups output channels instead of a second full-size MAC.
        """
        self.register_buffer("read_tile_ind", None)
        self.register_buffer("read_tile_sig2", None)
        if self.read_sigma is None or getattr(self, "groups", 1) != 1:
            return
        out = self.weight.shape[0]
        fan_in = self.weight[0].numel()
        tile = read_groups(fan_in, int(spec.array["rows"]), int(spec.array["parallel_rows"]), self.weight.device)
        n_r = int(tile[-1]) + 1
        ind = F.one_hot(tile, n_r).T.to(self.weight.dtype)                      # (n_r, fan_in)
        sig2 = self.read_sigma.reshape(out, fan_in) ** 2
        sums = sig2 @ ind.T                                                      # (out, n_r)
        self.read_tile_sig2 = sums / ind.sum(1)                                  # mean σ² per tile
        self.read_tile_ind = ind.reshape(n_r, *self.weight.shape[1:])

    def _ir_drop(self, x: torch.Tensor, w: torch.Tensor, mac) -> torch.Tensor:
        """The output lost to IR drop: Σ over read groups of each group's partial sum × β·I_t/I_max,t.

        Per read group t (a whole tile, or the rows read at once): y_t ← y_t·(1 − β·I_t/I_max,t),
        I_t = Σ_{i∈t} |w_ij|·|x_i| / x_max and I_max,t = rows·|W|max with rows those of the group's whole
        tile — column currents in weight units (the g_min offset of the differential pair is neglected),
        relative to the tile's fully-on column at full input, so a group read alone drops less.
        """
        groups = self.read_group
        lost: torch.Tensor | None = None
        for t in range(self.n_read_groups):  # at least one
            w_t = w * self._tile_mask(groups, t, w)
            part = self._ir_lost(x, w_t, mac(x, w_t), groups, t, mac)
            lost = part if lost is None else lost + part
        assert lost is not None
        return lost

    def _tile_mask(self, groups: torch.Tensor, t: int, w: torch.Tensor):
        return (groups == t).to(w.dtype).view(1, *w.shape[1:]) if self.n_read_groups > 1 else 1.0

    def _ir_lost(self, x: torch.Tensor, w_t: torch.Tensor, y_t: torch.Tensor, groups: torch.Tensor, t: int,
                 mac) -> torch.Tensor:
        """IR-drop loss of read group t's partial sum ``y_t`` (see _ir_drop)."""
        x_max = x.detach().abs().amax(dim=tuple(range(1, x.dim())), keepdim=True).clamp_min(1e-12)
        current = mac(x.abs() / x_max, w_t.abs())
        tile = self.group_tile[t]
        # relative to the whole tile's fully-on column: a group read alone draws only its share of that current
        rows_t = self.tile_rows[tile]
        w_max = _per_channel(self.w_max_tiles[:, tile], x)
        return y_t * self.ir_beta * (current / (rows_t * w_max)).clamp(max=1.0)

    def _per_array_adc(self, x: torch.Tensor, w: torch.Tensor, mac,
                       noise_sd: Sequence[torch.Tensor] | None) -> torch.Tensor:
        """Each read group digitises its own partial sum, then the digital side adds them.

        This is where the array size meets accuracy: an ADC sees only ``rows`` inputs' worth of
        current (``parallel_rows`` when a tile is read in groups), so a larger read puts more of the
        sum behind one coarse conversion. Range: fixed per group and column block, or per sample.
        """
        groups = self.read_group
        y: torch.Tensor | None = None
        for t in range(self.n_read_groups):  # at least one
            w_t = w * self._tile_mask(groups, t, w)
            y_t = mac(x, w_t)
            if noise_sd is not None:  # per-MVM read noise of this tile's cells
                y_t = y_t + noise_sd[t] * torch.randn(y_t.shape, generator=self._generator(y_t.device),
                                                      device=y_t.device, dtype=y_t.dtype)
            if self.ir_beta > 0:
                y_t = y_t - self._ir_lost(x, w_t, y_t, groups, t, mac)
            y = self._adc(y_t, t) if y is None else y + self._adc(y_t, t)
        assert y is not None
        return y

    def _group_index(self, n: int, device: torch.device) -> torch.Tensor:
        return torch.arange(n, device=device) // self.cols

    def _adc(self, y: torch.Tensor, tile: int) -> torch.Tensor:
        """Digitise the partial sums of read group ``tile``: fixed range per group and column block, or per sample."""
        if self.ranging == "per_sample":
            return quantize_signed(y, self.adc_bits, tuple(range(1, y.dim())))
        group = self._group_index(y.shape[1], y.device)
        if self.calibrating:
            peak = y.detach().abs().transpose(0, 1).reshape(y.shape[1], -1).amax(1)
            obs = torch.zeros_like(self.adc_range[tile]).scatter_reduce(0, group, peak, "amax")
            self.adc_range[tile] = torch.maximum(self.adc_range[tile], obs)
            return y
        return quantize_fixed(y, self.adc_bits, _per_channel(self.adc_range[tile][group], y))

    def _dac(self, x: torch.Tensor) -> torch.Tensor:
        """Drive the inputs: fixed per-layer range, or per sample."""
        if self.ranging == "per_sample":
            return quantize_signed(x, self.dac_bits, tuple(range(1, x.dim())))
        if self.calibrating:
            self.dac_range = torch.maximum(self.dac_range, x.detach().abs().max())
            return x
        return quantize_fixed(x, self.dac_bits, self.dac_range)

    def reseed_reads(self, seed: int) -> None:
        """Restart the read-noise stream (each chip's reads are reproducible too)."""
        self.read_seed = seed
        self._gen = None

    def _generator(self, device: torch.device) -> torch.Generator:
        if self._gen is None or self._gen.device != device:
            self._gen = torch.Generator(device=device).manual_seed(self.read_seed)
        return self._gen

    def _analog(self, x: torch.Tensor, mac, mac_abs) -> torch.Tensor:
        """Run the MAC with DAC/ADC, read noise and IR drop; ``mac(x, w)`` is the bias-free op."""
        if self.dac_bits:
            x = self._dac(x)
        w = self.weight
        if self.read_sigma is not None and self.read_noise_mode == "per_batch":
            w = w + self.read_sigma * torch.randn(w.shape, generator=self._generator(w.device), device=w.device,
                                                  dtype=w.dtype)
        per_mvm_untiled = (self.read_sigma is not None and self.read_noise_mode == "per_mvm"
                           and self.read_tile_ind is None)  # grouped convs: keep the whole-layer path
        if self.adc_bits and self.n_read_groups > 1 and not per_mvm_untiled:
            noise_sd = None
            if self.read_sigma is not None and self.read_noise_mode == "per_mvm":
                sig2 = self.read_tile_sig2  # set with read_tile_ind (_setup_read_tiles)
                if self.read_tile_ind is not None and sig2 is not None:
                    sq = mac(x * x, self.read_tile_ind)                          # (B, n_r, ...)
                    noise_sd = [(sq[:, t:t + 1] * _per_channel(sig2[:, t], sq)).clamp_min(0).sqrt()
                                for t in range(sq.shape[1])]
            return self._per_array_adc(x, w, mac, noise_sd)
        y = mac(x, w)
        if self.read_sigma is not None and self.read_noise_mode == "per_mvm":
            if self.read_tile_ind is not None:
                sq = mac(x * x, self.read_tile_ind)                              # (B, n_r, ...)
                var = torch.einsum("br...,or->bo...", sq, self.read_tile_sig2)
            else:
                var = mac_abs(x * x, self.read_sigma * self.read_sigma)
            y = y + var.clamp_min(0).sqrt() * torch.randn(y.shape, generator=self._generator(y.device),
                                                           device=y.device, dtype=y.dtype)
        if self.ir_beta > 0:
            y = y - self._ir_drop(x, w, mac)
        if self.adc_bits:
            y = self._adc(y, 0)
        return y


def _per_channel(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(1, -1, *([1] * (like.dim() - 2)))


class _AnalogConv(AnalogMixin):
    """What the analog Conv1d and Conv2d twins share: construction from a conv, and the forward."""

    if TYPE_CHECKING:  # from the nn.Conv1d / nn.Conv2d each twin also derives from
        bias: torch.Tensor | None

        def __init__(self, *args: Any, **kwargs: Any) -> None: ...

        def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor,
                          bias: torch.Tensor | None) -> torch.Tensor: ...

    @classmethod
    def from_conv(cls, conv: nn.Conv1d | nn.Conv2d, prog: Programmed, spec: DeviceSpec, read_seed: int,
                  read_noise_mode: str = "per_batch") -> _AnalogConv:
        """Twin of ``conv`` with programmed weights."""
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                  conv.groups, conv.bias is not None, conv.padding_mode, device=conv.weight.device,
                  dtype=conv.weight.dtype)
        if conv.bias is not None:
            new.bias = nn.Parameter(conv.bias.detach().clone(), requires_grad=False)
        new._setup_analog(prog, spec, read_seed, read_noise_mode)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.read_sigma is None and self.ir_beta == 0 and not self.adc_bits and not self.dac_bits:
            return self._conv_forward(x, self.weight, self.bias)  # exactly torch's conv path
        mac = lambda inp, w: self._conv_forward(inp, w, None)  # noqa: E731
        y = self._analog(x, mac, mac)
        return y if self.bias is None else y + _per_channel(self.bias, y)


class AnalogConv2d(_AnalogConv, nn.Conv2d):
    """nn.Conv2d whose weights live on a simulated crossbar (see the module docstring)."""


class AnalogConv1d(_AnalogConv, nn.Conv1d):
    """nn.Conv1d on a simulated crossbar: unrolled like a Conv2d, C_in·k rows per output column."""


class AnalogLinear(AnalogMixin, nn.Linear):
    """nn.Linear whose weights live on a simulated crossbar (see the module docstring)."""

    @classmethod
    def from_linear(cls, lin: nn.Linear, prog: Programmed, spec: DeviceSpec, read_seed: int,
                    read_noise_mode: str = "per_batch") -> AnalogLinear:
        """Twin of ``lin`` with programmed weights."""
        new = cls(lin.in_features, lin.out_features, lin.bias is not None, device=lin.weight.device,
                  dtype=lin.weight.dtype)
        if lin.bias is not None:
            new.bias = nn.Parameter(lin.bias.detach().clone(), requires_grad=False)
        new._setup_analog(prog, spec, read_seed, read_noise_mode)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.read_sigma is None and self.ir_beta == 0 and not self.adc_bits and not self.dac_bits:
            return F.linear(x, self.weight, self.bias)
        y = self._analog(x, lambda inp, w: F.linear(inp, w), lambda inp, w: F.linear(inp, w))
        return y if self.bias is None else y + self.bias


#: the layers the engine maps onto crossbars; every other weight layer stays digital (and deploy says so)
ANALOG_TYPES: tuple[type[nn.Conv1d], type[nn.Conv2d], type[nn.Linear]] = (nn.Conv1d, nn.Conv2d, nn.Linear)


def analog_layers(model: nn.Module) -> list[tuple[str, nn.Conv1d | nn.Conv2d | nn.Linear]]:
    """(name, module) of every Conv1d / Conv2d / Linear, in a stable order (their order in named_modules)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, ANALOG_TYPES)]


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def program_layer(layer: nn.Module, spec: DeviceSpec, seeds: list[int], idx: int, t_inference: float,
                  noise_scale: float) -> Programmed:
    """Layer ``idx`` of the chips ``seeds`` as programmed (stacked along a leading chip dim).

    Brevitas layers on a device with discrete levels are bit-sliced (program_bit_sliced, one chip
    at a time); on a continuous device their b-bit grid is programmed as it is, not re-rounded.
    """
    w = quantized_weight(layer)  # a Brevitas layer is programmed with its quantized weights
    gens = [torch.Generator(device=w.device).manual_seed(chip_seed(s, idx)) for s in seeds]
    quant_weight = getattr(layer, "quant_weight", None)  # a Brevitas layer's
    if quant_weight is not None and spec.mapping["levels"] >= 2:
        qw = quant_weight()
        progs = [program_bit_sliced(qw.int().detach(), qw.scale.detach(), int(qw.bit_width.item()), spec, g,
                                    t_inference, noise_scale) for g in gens]
        sigmas = [p.read_sigma for p in progs if p.read_sigma is not None]  # every chip's or none (one spec)
        read = torch.stack(sigmas) if sigmas else None
        return Programmed(torch.stack([p.weight for p in progs]), read, torch.stack([p.w_max for p in progs]))
    if quant_weight is None and spec.mapping["weight_bits"]:  # a chip that bit-slices float weights
        return program_sliced_float(w, spec, gens, t_inference, noise_scale)
    layer_spec = spec.with_overrides({"mapping.levels": 0}) if quant_weight is not None and \
        spec.mapping["levels"] else spec
    return program_chips(w, layer_spec, gens, t_inference, noise_scale)


@torch.no_grad()
def deploy(model: nn.Module, device: DeviceLike, seed: int = 0, *, t_inference: float = 1.0,
           noise_scale: float = 1.0, overrides: dict[str, Any] | None = None,
           read_noise_mode: str = "per_batch", calibration: Iterable | None = None) -> nn.Module:
    """A deployed copy of ``model`` on one chip instance of ``device`` (the input model is untouched).

    Works on MultiExitNet (all exits at once) and on any module: its Conv1d / Conv2d / Linear go on
    crossbars, other weight layers stay digital and are named in one warning.
    ``seed`` picks the chip; ``t_inference`` is seconds since programming; ``noise_scale``
    multiplies every stochastic effect (programming, read, drift spread, 1/f, mismatch, fault rates).
    ``read_noise_mode`` is "per_batch" (fast) or "per_mvm" (exact per-read independence).
    ``calibration``: batches of training inputs on which converters with a fixed range
    (``array.ranging = "fixed"``) are calibrated once — required when the chip has converters.
    """
    if read_noise_mode not in ("per_batch", "per_mvm"):
        raise ValueError(f"read_noise_mode must be 'per_batch' or 'per_mvm', got {read_noise_mode!r}")
    if noise_scale < 0:
        raise ValueError(f"noise_scale must be ≥ 0, got {noise_scale}")
    spec = load_device(device, overrides)
    spec.check_time(t_inference)
    warn_untouched("deploy", untouched_layers(model, ANALOG_TYPES), "stay digital (the engine maps Conv1d / Conv2d / "
                   "Linear onto crossbars)")
    deployed = copy.deepcopy(model).eval()
    ideal = is_ideal(spec, noise_scale)
    for idx, (name, layer) in enumerate(analog_layers(deployed)):
        if ideal:
            continue
        prog = program_layer(layer, spec, [seed], idx, t_inference, noise_scale)
        prog = Programmed(prog.weight[0], None if prog.read_sigma is None else prog.read_sigma[0], prog.w_max[0])
        read_seed = chip_seed(seed, idx, "read")
        twin = (AnalogConv2d.from_conv(layer, prog, spec, read_seed, read_noise_mode) if isinstance(layer, nn.Conv2d)
                else AnalogConv1d.from_conv(layer, prog, spec, read_seed, read_noise_mode)
                if isinstance(layer, nn.Conv1d)
                else AnalogLinear.from_linear(layer, prog, spec, read_seed, read_noise_mode))
        twin.train(False)
        if name == "":  # the model is itself a single Conv2d / Linear
            deployed = twin
        else:
            _set_submodule(deployed, name, twin)
    # (a plain dict attribute: nn.Module.__setattr__ is typed for tensors and modules only)
    deployed.deploy_info = {"device": spec.name, "seed": seed,  # type: ignore[assignment]
                            "t_inference": t_inference, "noise_scale": noise_scale, "backend": "native",
                            "read_noise_mode": read_noise_mode}
    for p in deployed.parameters():
        p.requires_grad_(False)
    if not ideal and spec.array["ranging"] == "fixed" and (spec.array["adc_bits"] or spec.array["dac_bits"]):
        if calibration is None:
            raise ValueError(f"device {spec.name!r} has converters with a fixed range (array.ranging = 'fixed'): "
                             "pass calibration=<batches of training inputs> to deploy, or set "
                             "array.ranging = 'per_sample'")
        calibrate_converters(deployed, calibration)
    return deployed


@torch.no_grad()
def calibrate_converters(deployed: nn.Module, batches: Iterable) -> None:
    """Set every fixed converter range from the largest value it sees on ``batches`` (as a chip is
    calibrated at deployment), then restart each layer's read-noise stream so that calibration
    leaves the chip's later reads unchanged."""
    layers = [m for m in deployed.modules() if isinstance(m, AnalogMixin)]
    if not layers:  # nothing to calibrate (an ideal chip, or another backend's layers)
        return
    dev = next(deployed.parameters()).device
    for m in layers:
        m.dac_range.zero_()
        m.adc_range.zero_()
        m.calibrating = True
    try:
        seen = 0
        for b in batches:
            deployed((b[0] if isinstance(b, (tuple, list)) else b).to(dev))
            seen += 1
        if not seen:
            raise ValueError("converter calibration needs at least one batch of inputs")
    finally:
        for m in layers:
            m.calibrating = False
            m.reseed_reads(m.read_seed)


def weight_errors(model: nn.Module, deployed: nn.Module) -> torch.Tensor:
    """Programmed minus trained weights, normalised by each layer's |W|max, all layers flattened."""
    out = []
    for (_, a), (_, b) in zip(analog_layers(model), analog_layers(deployed)):
        w = a.weight.detach()
        out.append(((b.weight.detach() - w) / w.abs().amax().clamp_min(1e-12)).flatten())
    return torch.cat(out)
