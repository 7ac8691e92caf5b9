"""Energy and latency of inference on a device, layer by layer and per exit (units: pJ, ns).

Each Conv2d / Linear is mapped onto crossbars of ``array.rows × array.cols``: its weight matrix
(out × fan_in, im2col order for convolutions) needs ``row_tiles = ⌈fan_in / rows⌉`` ×
``col_tiles = ⌈out · cells / cols⌉`` arrays, with cells = cells_per_weight × 2 for a
differential pair. One inference of a layer is ``mvms`` matrix-vector products (output pixels
of a convolution, 1 for a linear layer). Per layer:

* array   = mvms · fan_in · out · cells · E_cell                 (every cell read once per MVM)
* DAC     = mvms · fan_in · col_tiles · E_dac                    (each row driver of each array)
* ADC     = mvms · out · cells_per_weight · row_tiles · E_adc    (one conversion per column pair,
  per bit slice, per row tile; the differential subtraction is analog)
* digital = mvms · out · (row_tiles · cells_per_weight + 2) · E_op (partial-sum / slice
  accumulation, then bias and activation)
* latency = mvms · t_MVM (arrays of a layer run in parallel, layers one after another: no
  pipelining across layers); leakage = P_leak · arrays · latency.

For digital technologies (``digital``, ``ideal``) E_cell is the energy of one MAC and there
are no converters. Values come from the device file's [energy] section, each with a source.
These are first-order, NeuroSim-style estimates; buffers and interconnect are not modelled.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch.nn as nn

from ..models.multi_exit import MultiExitNet
from .spec import DeviceSpec, load_device

COMPONENTS = ("array", "dac", "adc", "digital", "leakage")


@dataclass
class LayerCost:
    """Mapping and cost of one layer for one inference."""

    name: str
    macs: int
    mvms: int
    fan_in: int
    out: int
    arrays: int
    array_pJ: float
    dac_pJ: float
    adc_pJ: float
    digital_pJ: float
    leakage_pJ: float
    latency_ns: float

    @property
    def energy_pJ(self) -> float:
        """Total energy of the layer."""
        return self.array_pJ + self.dac_pJ + self.adc_pJ + self.digital_pJ + self.leakage_pJ


def _cost(name: str, fan_in: int, out: int, mvms: int, spec: DeviceSpec) -> LayerCost:
    e, m, a = spec.energy, spec.mapping, spec.array
    digital = spec.device["technology"] in ("digital", "ideal")
    slices = m["cells_per_weight"]
    cells = 1 if digital else slices * (2 if m["differential"] else 1)
    row_tiles = math.ceil(fan_in / a["rows"])
    col_tiles = math.ceil(out * cells / a["cols"])
    macs = mvms * fan_in * out
    array = macs * cells * e["cell_read_fJ"] * 1e-3
    dac = 0.0 if digital else mvms * fan_in * col_tiles * e["dac_pJ"]
    adc = 0.0 if digital else mvms * out * slices * row_tiles * e["adc_pJ"]
    dig = mvms * out * ((row_tiles * slices if not digital else 1) + 2) * e["digital_op_pJ"]
    latency = mvms * e["mvm_latency_ns"]
    leakage = e["leakage_uW"] * row_tiles * col_tiles * latency * 1e-3  # µW · ns = 1e-3 pJ
    return LayerCost(name, macs, mvms, fan_in, out, row_tiles * col_tiles, array, dac, adc, dig, leakage, latency)


def layer_costs(model: nn.Module, device: str | DeviceSpec, input_shape: tuple[int, ...]) -> list[LayerCost]:
    """Cost of every Conv2d / Linear for one input of ``input_shape`` (C, H, W), in execution order."""
    from .chip import layer_shapes

    spec = load_device(device)
    return [_cost(name, k, n, m, spec) for name, k, n, m in layer_shapes(model, input_shape)]


def _sum(layers: list[LayerCost]) -> dict[str, float]:
    out = {f"{c}_pJ": sum(getattr(layer, f"{c}_pJ") for layer in layers) for c in COMPONENTS}
    out["energy_pJ"] = sum(out[f"{c}_pJ"] for c in COMPONENTS)
    out["latency_ns"] = sum(layer.latency_ns for layer in layers)
    out["macs"] = sum(layer.macs for layer in layers)
    return out


def exit_energy(model: MultiExitNet, device: str | DeviceSpec, *, path: bool = False) -> list[dict[str, float]]:
    """Cumulative energy / latency / MACs at each exit.

    ``path=False``: running to exit k alone (backbone to its stage + head k) — the per-exit
    cost of a static network truncated there. ``path=True``: what a sample leaving at exit k
    costs in early-exit inference (every earlier head included).
    """
    cfg = model.config
    layers = layer_costs(model, device, (cfg["in_channels"], cfg["image_size"], cfg["image_size"]))
    out = []
    for k, stage in enumerate(model.exit_stages):
        heads = range(k + 1) if path else [k]
        keep = [layer for layer in layers
                if layer.name.startswith("stem") or any(layer.name.startswith(f"stages.{s}.") for s in range(stage + 1))
                or any(layer.name.startswith(f"heads.{h}.") for h in heads)]
        out.append({"exit": k + 1, **_sum(keep)})
    return out


def tops_per_watt(cost: dict[str, float]) -> float:
    """2 ops per MAC over energy: TOPS/W = 2·MACs / pJ."""
    return 2 * cost["macs"] / cost["energy_pJ"] if cost["energy_pJ"] else float("inf")


def as_rows(costs: list[LayerCost]) -> list[dict]:
    """Tidy rows for CSV."""
    return [dict(asdict(c), energy_pJ=c.energy_pJ) for c in costs]
