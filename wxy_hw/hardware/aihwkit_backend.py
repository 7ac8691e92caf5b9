"""The aihwkit backend: the same DeviceSpec mapped onto aihwkit's inference tiles (the reference).

ReRAM → ``ReRamWan2022NoiseModel``, PCM → ``PCMLikeNoiseModel``, subthreshold CMOS →
``SubthresholdMismatchNoiseModel`` (a subclass of aihwkit's ``BaseNoiseModel`` defined here).
Conductance mapping uses the device's g_max and g_min, with target conductances rounded to the
device's levels (``mapping.levels``) before aihwkit programs them; weights are normalised per tile
(``weight_scaling_omega = 1``) so that read noise ``forward.w_noise`` is relative to the tile's
|W|max, as in the native engine. DAC / ADC resolution comes from the [array] section; tiles are
``array.rows × array.cols``: a layer larger than one array is split over several tiles by
aihwkit's ``TileModuleArray`` (``mapping.max_input_size`` / ``max_output_size``), balanced as the
native engine splits it. Conv1d goes on tiles as a Conv2d with a 1×k kernel (``Conv2dCarrier``):
aihwkit's own AnalogConv1d needs indexed tiles, which only a single C++ tile has. aihwkit is
imported lazily: the rest of wxy_hw works without it.
"""
from __future__ import annotations

import copy
from typing import Any, TypeGuard

import torch
import torch.nn as nn
import torch.nn.functional as F

from .spec import DeviceLike, DeviceSpec, load_device
from ..models.coverage import untouched_layers, warn_untouched
from .engine import ANALOG_TYPES, _set_submodule, analog_layers


class AihwkitUnavailable(RuntimeError):
    """aihwkit is not installed or cannot express a requested setting."""


def _noise_model_classes():
    try:
        from aihwkit.inference.converter.conductance import SinglePairConductanceConverter
        from aihwkit.inference.noise.base import BaseNoiseModel
        from aihwkit.inference.noise.pcm import PCMLikeNoiseModel
        from aihwkit.inference.noise.reram import ReRamWan2022NoiseModel
    except ImportError as exc:  # pragma: no cover - aihwkit is a declared dependency
        raise AihwkitUnavailable("the aihwkit backend needs aihwkit 1.2.0 (scripts/setup.sh builds it); "
                                 "use --backend native meanwhile") from exc

    class SubthresholdMismatchNoiseModel(BaseNoiseModel):
        """Frozen log-normal mismatch g·exp(σ ξ) of current-mode subthreshold weights; no drift."""

        def __init__(self, sigma: float, g_converter=None):
            super().__init__(g_converter)
            self.sigma = float(sigma)

        @torch.no_grad()
        def apply_programming_noise_to_conductance(self, g_target: torch.Tensor) -> torch.Tensor:
            return g_target * torch.exp(self.sigma * torch.randn_like(g_target))

        @torch.no_grad()
        def generate_drift_coefficients(self, g_target: torch.Tensor):
            return None

        @torch.no_grad()
        def apply_drift_noise_to_conductance(self, g_prog, drift_noise_param, t_inference):
            return g_prog

    class ReRamWan2022ReferenceScale(ReRamWan2022NoiseModel):
        """aihwkit's Wan2022 model with relaxation converted back at the reference weights' scale.

        aihwkit 1.2.0's ``apply_drift_noise`` re-derives the weight↔conductance scale from the
        *programmed* (noisy) weights, while the relaxed conductances are drawn around the
        *reference* targets; every weight then comes back multiplied by |W_prog|max / |W_ref|max
        (a few per cent too large). This subclass keeps the reference scale; the noise itself
        (polynomials, draws) is aihwkit's.
        """

        @torch.no_grad()
        def apply_programming_noise(self, weights):
            targets, params = self.g_converter.convert_to_conductances(weights)
            noisy = [self.apply_programming_noise_to_conductance(g) for g in targets]
            return self.g_converter.convert_back_to_weights(noisy, params), [targets, params]

        @torch.no_grad()
        def apply_drift_noise(self, weights, drift_noise_parameters, t_inference):
            targets, params = drift_noise_parameters
            relaxed = [self.apply_drift_noise_to_conductance(g, g, t_inference) for g in targets]
            return self.g_converter.convert_back_to_weights(relaxed, params)

    class LeveledPairConverter(SinglePairConductanceConverter):
        """aihwkit's differential pair with target conductances rounded to the device's levels.

        Each device of the pair takes one of ``levels`` conductances evenly spaced over
        [g_min, g_max] (the partner sits at g_min), as ``physics.quantize_unit`` does natively;
        aihwkit's noise models then program and drift these targets.
        """

        def __init__(self, g_max: float, g_min: float, levels: int) -> None:
            super().__init__(g_max=g_max, g_min=g_min)
            self.levels = int(levels)

        @torch.no_grad()
        def convert_to_conductances(self, weights):
            conductances, params = super().convert_to_conductances(weights)
            span, steps = self.g_max - self.g_min, self.levels - 1
            return [self.g_min + torch.round((g - self.g_min) / span * steps) / steps * span for g in conductances], params

    return (SinglePairConductanceConverter, ReRamWan2022ReferenceScale, PCMLikeNoiseModel, SubthresholdMismatchNoiseModel,
            LeveledPairConverter)


def rpu_config(spec: DeviceSpec, noise_scale: float = 1.0, torch_tile: bool | None = None):
    """An aihwkit (Torch)InferenceRPUConfig expressing ``spec``; raises where aihwkit cannot.

    ``torch_tile=None`` picks TorchInferenceRPUConfig (pure torch) where it fits and the C++
    InferenceRPUConfig otherwise: aihwkit's torch tile does not implement ``forward.w_noise``.
    """
    converter_cls, wan_cls, pcm_cls, sub_cls, leveled_cls = _noise_model_classes()
    from aihwkit.inference.compensation.drift import GlobalDriftCompensation
    from aihwkit.simulator.configs import InferenceRPUConfig, TorchInferenceRPUConfig
    from aihwkit.simulator.parameters.enums import BoundManagementType, NoiseManagementType, WeightNoiseType

    m, n, a = spec.mapping, spec.noise, spec.array
    kind = spec.aihwkit["noise_model"]
    unsupported = [f"noise.{k}" for k in ("additive_sigma", "stuck_at_lrs", "stuck_at_hrs") if n[k] > 0]
    if m["levels"] and not m["differential"]:
        unsupported.append("mapping.levels on a single (non-differential) device")
    if m["clip_sigma"] > 0:
        unsupported.append("mapping.clip_sigma")
    if m["cells_per_weight"] > 1:
        unsupported.append("mapping.cells_per_weight > 1")
    if m["weight_bits"]:
        unsupported.append("mapping.weight_bits (bit-sliced weights)")
    if a["parallel_rows"]:
        unsupported.append("array.parallel_rows (tiles read in groups of rows)")
    if kind != "SubthresholdMismatchNoiseModel" and spec.lognormal_sigma > 0:
        unsupported.append("log-normal mismatch outside the subthreshold model")
    expected = {"ReRamWan2022NoiseModel": ("wan2022", ("wan2022_relaxation", "none")),
                "PCMLikeNoiseModel": ("pcm_poly", ("pcm_power_law",)),
                "SubthresholdMismatchNoiseModel": ("none", ("none",)), "none": ("none", ("none",))}.get(kind)
    if expected and (n["programming"] != expected[0] or n["drift"] not in expected[1]):
        unsupported.append(f"noise.programming = {n['programming']!r} / noise.drift = {n['drift']!r} with {kind}")
    if spec.ir_drop["beta"] > 0:
        unsupported.append("ir_drop.beta")
    if not m["differential"]:
        unsupported.append("mapping.differential = false")
    if unsupported:
        raise AihwkitUnavailable(f"device {spec.name!r}: the aihwkit backend does not express {', '.join(unsupported)}; "
                                 "use --backend native, or turn these off in the device file")
    conv = (leveled_cls(m["g_max_uS"], spec.g_min_uS, m["levels"]) if m["levels"]
            else converter_cls(g_max=m["g_max_uS"], g_min=spec.g_min_uS))
    s = float(noise_scale)
    if kind == "ReRamWan2022NoiseModel":
        model = wan_cls(g_converter=conv, noise_scale=s * n["programming_scale"])
    elif kind == "PCMLikeNoiseModel":
        model = pcm_cls(g_converter=conv, t_0=n["t0_s"], t_read=n["t_read_s"], prog_noise_scale=s * n["programming_scale"],
                        read_noise_scale=s, drift_scale=n["drift_nu_mean"] / 0.05)
    elif kind == "SubthresholdMismatchNoiseModel":
        model = sub_cls(spec.lognormal_sigma * s, g_converter=conv)
    elif kind == "none":  # a noise-free device (ideal, digital_int8): only the conductance levels act
        model = sub_cls(0.0, g_converter=conv)
    else:
        raise AihwkitUnavailable(f"device {spec.name!r} names no aihwkit noise model ([aihwkit] noise_model = 'none'); "
                                 "use --backend native")
    read = s * n["read_noise"]
    if torch_tile is None:
        torch_tile = read == 0
    elif torch_tile and read > 0:
        raise AihwkitUnavailable("aihwkit's TorchInferenceRPUConfig does not support read noise (forward.w_noise); "
                                 "use the C++ InferenceRPUConfig (torch_tile=False)")
    cfg = (TorchInferenceRPUConfig if torch_tile else InferenceRPUConfig)()
    cfg.noise_model = model
    cfg.drift_compensation = GlobalDriftCompensation() if n["drift_compensation"] and n["drift"] != "none" else None
    cfg.mapping.max_input_size = a["rows"]
    cfg.mapping.max_output_size = a["cols"]
    cfg.mapping.digital_bias = True
    cfg.mapping.weight_scaling_omega = 1.0
    cfg.mapping.weight_scaling_columnwise = False
    f = cfg.forward
    f.inp_noise, f.out_noise = 0.0, 0.0
    f.inp_res = 1 / (2 ** (a["dac_bits"] - 1) - 1) if a["dac_bits"] else -1
    f.out_res = 1 / (2 ** (a["adc_bits"] - 1) - 1) if a["adc_bits"] else -1
    f.out_bound = -1
    f.inp_bound = 1.0
    f.bound_management = BoundManagementType.NONE
    f.noise_management = NoiseManagementType.ABS_MAX
    if read > 0:
        f.w_noise = read
        f.w_noise_type = WeightNoiseType.ADDITIVE_CONSTANT
    return cfg


def aihwkit_time(spec: DeviceSpec, t_inference: float) -> float:
    """Validate t for aihwkit (``DeviceSpec.backend_time``): its Wan2022 model only knows 1 s, 1 day and 2 days."""
    return spec.backend_time("aihwkit", t_inference)


class Conv2dCarrier(nn.Module):
    """A Conv1d or Conv2d in the one form aihwkit maps onto any tile: a zero-padded ``nn.Conv2d``.

    A Conv1d becomes a Conv2d with a 1×k kernel over a height-1 image (the module still takes
    (N, C, L)); the weight's rows keep their order (C, k), so tiles split as for the Conv1d.
    Padding aihwkit's convolutions do not take (``'same'`` / ``'valid'``, non-zero padding modes)
    is applied here first, digitally, as torch's own convolution does.
    """

    def __init__(self, conv: nn.Conv1d | nn.Conv2d) -> None:
        super().__init__()
        self.one_d = isinstance(conv, nn.Conv1d)
        explicit = isinstance(conv.padding, str) or conv.padding_mode != "zeros"
        # torch's own (left, right, ...) padding for this conv, string paddings resolved
        self.pad: tuple[int, ...] | None = tuple(conv._reversed_padding_repeated_twice) if explicit else None
        self.pad_mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
        padding = (0,) * len(conv.kernel_size) if explicit else tuple(conv.padding)
        lift = (lambda v, one: (one, *v)) if self.one_d else (lambda v, one: tuple(v))
        self.conv = nn.Conv2d(conv.in_channels, conv.out_channels, lift(conv.kernel_size, 1),
                              stride=lift(conv.stride, 1), padding=lift(padding, 0), dilation=lift(conv.dilation, 1),
                              bias=conv.bias is not None, device=conv.weight.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            self.conv.weight.copy_(conv.weight.reshape(self.conv.weight.shape))
            bias = self.conv.bias  # built with a bias exactly when conv has one
            if conv.bias is not None and bias is not None:
                bias.copy_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        unbatched = x.dim() == (2 if self.one_d else 3)
        if unbatched:  # aihwkit's convolutions expect a batch dimension
            x = x.unsqueeze(0)
        if self.pad is not None:
            x = F.pad(x, self.pad, mode=self.pad_mode)
        y = self.conv(x.unsqueeze(2)).squeeze(2) if self.one_d else self.conv(x)
        return y.squeeze(0) if unbatched else y


def _needs_carrier(m: nn.Module) -> TypeGuard[nn.Conv1d | nn.Conv2d]:
    """Conv1d always (AnalogConv1d needs indexed tiles); Conv2d when aihwkit would refuse its padding."""
    return type(m) is nn.Conv1d or (type(m) is nn.Conv2d and (isinstance(m.padding, str) or m.padding_mode != "zeros"))


def check_expressible(model: nn.Module) -> None:
    """One AihwkitUnavailable line for layers the native engine maps but aihwkit cannot."""
    grouped = [f"{n} (groups={m.groups})" for n, m in model.named_modules()
               if isinstance(m, (nn.Conv1d, nn.Conv2d)) and m.groups > 1]
    if grouped:
        raise AihwkitUnavailable(f"aihwkit's analog convolutions have no groups, and this model has grouped / "
                                 f"depthwise ones: {', '.join(grouped[:5])}{' …' if len(grouped) > 5 else ''}; "
                                 "use --backend native")
    # aihwkit's conversion map matches exact types: a subclass (a Brevitas quantized layer, say) would
    # silently stay digital while the native engine programs it
    sub = [f"{n or '<model>'} ({type(m).__name__})" for n, m in model.named_modules()
           if isinstance(m, ANALOG_TYPES) and type(m) not in ANALOG_TYPES]
    if sub:
        raise AihwkitUnavailable(f"aihwkit converts only plain Conv1d / Conv2d / Linear, not subclasses such as "
                                 f"{', '.join(sub[:5])}{' …' if len(sub) > 5 else ''}; use --backend native "
                                 "(backend='native'), which maps them")


def to_aihwkit_form(model: nn.Module) -> nn.Module:
    """``model`` (changed in place) with each Conv1d, and each Conv2d whose padding aihwkit refuses, in a carrier."""
    if _needs_carrier(model):
        return Conv2dCarrier(model)
    for name, m in list(model.named_modules()):
        if name and _needs_carrier(m):
            _set_submodule(model, name, Conv2dCarrier(m))
    return model


def _conversion_map() -> dict[type[nn.Module], type[nn.Module]]:
    """What aihwkit converts: the native engine's layers (Conv1d arrives as Conv2d); Conv3d stays digital on both."""
    from aihwkit.nn import AnalogConv2d, AnalogLinear, AnalogSequential

    return {nn.Linear: AnalogLinear, nn.Conv2d: AnalogConv2d, nn.Sequential: AnalogSequential}


@torch.no_grad()
def deploy_aihwkit(model: nn.Module, device: DeviceLike, seed: int = 0, *, t_inference: float = 1.0,
                   noise_scale: float = 1.0, overrides: dict[str, Any] | None = None,
                   torch_tile: bool | None = None) -> nn.Module:
    """A deployed copy of ``model`` as aihwkit analog layers, programmed and drifted for one chip.

    Conv1d / Conv2d / Linear go on tiles of ``array.rows × array.cols``, larger layers over several
    tiles; Conv1d as a 1×k Conv2d (``Conv2dCarrier``). Grouped convolutions and subclassed layers
    are refused (``check_expressible``).
    """
    _noise_model_classes()  # a clear AihwkitUnavailable when aihwkit is missing
    from aihwkit.nn.conversion import convert_to_analog

    spec = load_device(device, overrides)
    spec.check_time(t_inference)
    t = aihwkit_time(spec, t_inference)
    check_expressible(model)
    warn_untouched("deploy_aihwkit", untouched_layers(model, ANALOG_TYPES), "stay digital (mapped: Conv1d / Conv2d / "
                   "Linear)")
    cfg = rpu_config(spec, noise_scale, torch_tile)
    analog = convert_to_analog(to_aihwkit_form(copy.deepcopy(model).cpu()), cfg, conversion_map=_conversion_map())
    analog.eval()
    with torch.random.fork_rng():  # aihwkit draws from torch's global generator: leave the caller's alone
        torch.manual_seed(seed)
        analog.program_analog_weights()
        analog.drift_analog_weights(t)
    analog.deploy_info = {"device": spec.name, "seed": seed, "t_inference": t, "noise_scale": noise_scale,
                          "backend": "aihwkit"}
    return analog


def aihwkit_weight_errors(model: nn.Module, analog: nn.Module) -> torch.Tensor:
    """Programmed minus trained weights from aihwkit tiles, normalised per layer by |W|max."""
    from aihwkit.nn.modules.base import AnalogLayerBase

    digital = [m for _, m in analog_layers(model)]
    layers = [m for m in analog.modules() if isinstance(m, AnalogLayerBase) and hasattr(m, "analog_module")]
    out = []
    for d, a in zip(digital, layers):
        w_prog = a.get_weights(apply_weight_scaling=True)[0]
        w = d.weight.detach().reshape(w_prog.shape)
        out.append(((w_prog - w) / w.abs().amax().clamp_min(1e-12)).flatten())
    return torch.cat(out)
