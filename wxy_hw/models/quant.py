"""Quantization through Brevitas: any Conv/Linear/ReLU network (MultiExitNet included) as Brevitas layers.

``quantize_model`` returns a quantized copy: Conv2d → ``QuantConv2d``, Linear → ``QuantLinear``
(signed weights, per-tensor or per-output-channel float scales), ReLU → ``QuantReLU`` (unsigned
activations), and a ``QuantIdentity`` on the input. Post-training quantization calibrates the
activation scales on a few validation batches (Brevitas' ``calibration_mode``); the ``qat``
method trains through the same quantizers. A MultiExitNet keeps its stem / stages / heads, so
early exit, deployment and evaluation work unchanged; its config records the quantization so
checkpoints rebuild it.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any, Iterable

import torch
import torch.nn as nn

from ..utils import eval_mode
from .attach import ExitTracer, plain_config
from .multi_exit import MultiExitNet

MIN_BITS, MAX_BITS = 2, 8


def _check_bits(name: str, value: Any, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_BITS <= value <= MAX_BITS:
        raise ValueError(f"{name} must be an integer from {MIN_BITS} to {MAX_BITS}"
                         f"{' (or None for float)' if optional else ''}, got {value!r}")


@dataclass
class QuantConfig:
    """Bit widths and scaling granularity."""

    weight_bits: int = 8
    act_bits: int | None = 8       # None: activations stay float
    per_channel: bool = False      # per-output-channel weight scales

    def __post_init__(self) -> None:
        _check_bits("weight_bits", self.weight_bits)
        _check_bits("act_bits", self.act_bits, optional=True)


def _quant_layers():
    from brevitas.nn import QuantConv1d, QuantConv2d, QuantIdentity, QuantLinear, QuantReLU
    from brevitas.quant import (Int8ActPerTensorFloat, Int8WeightPerChannelFloat, Int8WeightPerTensorFloat,
                                Uint8ActPerTensorFloat)

    return (QuantConv2d, QuantLinear, QuantReLU, QuantIdentity, Int8WeightPerTensorFloat, Int8WeightPerChannelFloat,
            Int8ActPerTensorFloat, Uint8ActPerTensorFloat, QuantConv1d)


#: the weight layers quantize_model replaces by Brevitas layers; others stay float (and it says so)
QUANT_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Linear)
#: functional activations Brevitas' graph transform turns into nn.ReLU modules (then QuantReLU)
_RELU_FUNCTIONS = (torch.relu, torch.relu_, nn.functional.relu, nn.functional.relu_)
_FLOAT_FUNCTIONS = {torch.sigmoid, torch.tanh, nn.functional.gelu, nn.functional.silu, nn.functional.elu,
                    nn.functional.sigmoid, nn.functional.tanh, nn.functional.relu6, nn.functional.leaky_relu,
                    nn.functional.hardtanh, nn.functional.softplus}


def _convert(module: nn.Module, cfg: QuantConfig) -> nn.Module:
    (QuantConv2d, QuantLinear, QuantReLU, _, w_tensor, w_channel, _, u_act, QuantConv1d) = _quant_layers()
    w_quant = w_channel if cfg.per_channel else w_tensor
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        cls = QuantConv1d if isinstance(module, nn.Conv1d) else QuantConv2d
        q = cls(module.in_channels, module.out_channels, module.kernel_size, stride=module.stride,
                        padding=module.padding, dilation=module.dilation, groups=module.groups,
                        bias=module.bias is not None, weight_quant=w_quant, weight_bit_width=cfg.weight_bits,
                        device=module.weight.device)
    elif isinstance(module, nn.Linear):
        q = QuantLinear(module.in_features, module.out_features, bias=module.bias is not None, weight_quant=w_quant,
                        weight_bit_width=cfg.weight_bits, device=module.weight.device)
    elif isinstance(module, nn.ReLU) and cfg.act_bits is not None:
        return QuantReLU(act_quant=u_act, bit_width=cfg.act_bits)
    else:
        return module
    q.weight.data.copy_(module.weight.data)
    if module.bias is not None:
        q.bias.data.copy_(module.bias.data)
    return q


def _replace(root: nn.Module, cfg: QuantConfig) -> None:
    for name, child in list(root.named_children()):
        new = _convert(child, cfg)
        if new is not child:
            setattr(root, name, new)
        else:
            _replace(child, cfg)


def _functional_relus(model: nn.Module, act_bits: int | None) -> tuple[nn.Module, list[str]]:
    """Functional ReLUs → nn.ReLU modules through Brevitas' graph transform, where torch.fx traces.

    Returns the (possibly re-traced) model and what stays float: other functional activations
    found in the graph, or the reason a module could not be traced.
    """
    from brevitas.graph.standardize import TorchFunctionalToModule

    if act_bits is None or isinstance(model, MultiExitNet):  # our own backbones use nn.ReLU modules
        return model, []
    to_module = TorchFunctionalToModule(fn_to_module_map=tuple((f, nn.ReLU) for f in _RELU_FUNCTIONS))
    graphs = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.fx.GraphModule)]
    left: list[str] = []
    if not graphs:  # a plain network (or an attach_exits backbone read by hooks): trace it whole
        name = "backbone" if hasattr(model, "split_reason") else ""
        target = model.get_submodule(name)
        try:  # exit points stay whole modules, so the hooks of hook-read exits still fire
            gm = torch.fx.GraphModule(target, ExitTracer(set(getattr(model, "config", {}).get("exits", []) if name
                                                             else [])).trace(target))
        except Exception as exc:  # untraceable Python: nothing can be rewritten, so say so
            return model, [f"{name or type(model).__name__}: functional activations (torch.relu …), if any, "
                           f"stay float — torch.fx cannot trace it ({type(exc).__name__}); use nn.ReLU modules"]
        if any(n.op == "call_function" and n.target in _RELU_FUNCTIONS for n in gm.graph.nodes):
            # only then is the traced copy kept (the modules it calls keep their names and state-dict keys)
            if name:
                model.backbone = gm
            else:
                model = gm
            graphs = [(name, gm)]
    for name, gm in graphs:
        new = to_module.apply(gm)
        if name and new is not gm:
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, new)
        elif not name:
            model = new
        left += [f"{name or '<model>'}.{n.name} ({getattr(n.target, '__name__', n.target)})"
                 for n in new.graph.nodes if n.op == "call_function" and n.target in _FLOAT_FUNCTIONS]
    return model, left


def quantize_model(model: nn.Module, config: QuantConfig | dict | None = None,
                   calibration: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None) -> nn.Module:
    """A quantized copy of ``model`` (never mutates it); ``calibration`` batches set activation scales (PTQ).

    Conv1d / Conv2d / Linear become Brevitas layers and ReLUs QuantReLU — functional ``torch.relu`` /
    ``F.relu`` too, through Brevitas' graph transform where torch.fx traces the model; one
    warning names every weight layer and activation that stays float.
    """
    from .coverage import untouched_layers, warn_untouched

    cfg = config if isinstance(config, QuantConfig) else QuantConfig(**(config or {}))
    _, _, _, QuantIdentity, _, _, s_act, _, _ = _quant_layers()
    q = copy.deepcopy(model)
    q, float_acts = _functional_relus(q, cfg.act_bits)
    left = untouched_layers(q, QUANT_TYPES) + float_acts
    _replace(q, cfg)
    if cfg.act_bits is not None:
        stem = getattr(q, "stem", None)
        if isinstance(stem, nn.Module):
            q.stem = nn.Sequential(QuantIdentity(act_quant=s_act, bit_width=cfg.act_bits), stem)
        else:
            q = nn.Sequential(QuantIdentity(act_quant=s_act, bit_width=cfg.act_bits), q)
    warn_untouched("quantize_model", left, "stay float (Brevitas layers replace Conv1d / Conv2d / Linear / ReLU)")
    # the record a checkpoint keeps, so load_model re-quantizes before loading the weights
    # (a plain dict attribute, as on MultiExitNet: nn.Module.__setattr__ is typed for tensors and modules only)
    q.config = {**(getattr(model, "config", None) or plain_config(model)), "quant": asdict(cfg)}  # type: ignore[assignment]
    if calibration is not None:
        calibrate(q, calibration)
    return q


@torch.no_grad()
def calibrate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> nn.Module:
    """Post-training calibration of activation scales on (validation) batches."""
    from brevitas.graph.calibrate import calibration_mode

    dev = next(model.parameters()).device
    with eval_mode(model), calibration_mode(model):
        for x, _ in batches:
            model(x.to(dev))
    return model


def quantized_weight(layer: nn.Module) -> torch.Tensor:
    """The weight a layer computes with: Brevitas' fake-quantized weight, else the float weight."""
    quant_weight = getattr(layer, "quant_weight", None)
    if quant_weight is not None:
        return quant_weight().value.detach()
    weight = layer.weight
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{type(layer).__name__} has no weight tensor")
    return weight.detach()


class _ExitLogits(nn.Module):
    """Wraps a MultiExitNet so export sees a tuple of exit logits (ONNX has no dataclasses)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        out = self.model(x)
        return tuple(out.logits) if hasattr(out, "logits") else out


def export_onnx(model: nn.Module, path: str, *, fmt: str = "qcdq", input_shape: tuple[int, ...] | None = None) -> str:
    """Export a (quantized) model to ONNX through Brevitas: ``qcdq`` (standard QuantizeLinear /
    DequantizeLinear, runs in onnxruntime) or ``qonnx`` (QONNX ``Quant`` nodes, for FINN-style flows).

    Needs the ``export`` extra (onnx, onnxoptimizer, onnxscript). One output per exit.
    """
    try:
        from brevitas.export import export_onnx_qcdq, export_qonnx
    except ImportError as exc:  # pragma: no cover - brevitas is a dependency
        raise RuntimeError("ONNX export needs brevitas") from exc
    if fmt not in ("qcdq", "qonnx"):
        raise ValueError(f"export format must be 'qcdq' or 'qonnx', got {fmt!r}")
    cfg = getattr(model, "config", {})
    shape = input_shape or (1, cfg.get("in_channels", 3), cfg.get("image_size", 32), cfg.get("image_size", 32))
    dev = next(model.parameters()).device
    wrapped = _ExitLogits(model).eval()
    example = torch.zeros(shape, device=dev)
    try:
        if fmt == "qcdq":
            export_onnx_qcdq(wrapped, example, export_path=path)
        else:
            # torch's dynamo exporter cannot convert QONNX custom ops' opset; the TorchScript path can
            export_qonnx(wrapped, example, export_path=path, dynamo=False)
    except ModuleNotFoundError as exc:
        raise RuntimeError(f"ONNX export needs the 'export' extra: pip install onnx onnxoptimizer onnxscript "
                           f"({exc})") from exc
    return path
