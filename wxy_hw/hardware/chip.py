"""Chip model: a network mapped onto R×C crossbars, with energy, area and latency per layer and per exit.

One ``ChipConfig`` (array size, ADC/DAC bits, weight/activation bits, bits per cell, rows read
in parallel, columns per ADC) plus a device file and a technology file (``devices/technology``)
give, for every Conv2d / Linear (im2col for convolutions; notation K = fan-in, N = outputs,
M = MVMs per inference, i.e. output pixels):

mapping   S = ⌈w_mag / bits_per_cell⌉ slices (w_mag = weight_bits − 1 with a differential pair,
          which carries the sign, else weight_bits); c = S·(2 if differential else 1) cells per
          weight; row tiles T_r = ⌈K/R⌉, column tiles T_c = ⌈N·c/C⌉, arrays = T_r·T_c.
cycles    inputs are streamed bit-serially in n_in = ⌈act_bits/dac_bits⌉ cycles; an array reads
          its rows in g = ⌈min(K, R)/P⌉ groups of P parallel rows.
energy    ADC      M · N·S·T_r·g·n_in conversions × FOM·2^adc_bits        (Walden law)
          array    M · K·N·c·n_in·a × E_cell    (a = input-bit activity, E_cell from the device file)
          DAC      M · K·T_c·n_in·a × C_wire·pitch·C·V_dd² · (2^dac_bits − 1)  (row drivers)
          digital  M · (N·S·T_r·g·n_in shift-adds + N·S·T_r tile/slice accumulations + N activations) × E_add
          buffer   M · (K + N)·act_bits × E_sram_bit      (input vector read, output written)
          interconnect  M · (K + N)·act_bits × E_wire · d, d = √(chip area)/2 (inputs broadcast on one bus)
          leakage  P_leak · arrays · layer latency
latency   M · n_in · g · (t_read + cols_per_adc · t_ADC): per input bit and row group one read pulse
          (the device file's mvm_latency_ns), then each ADC converts its cols_per_adc columns one
          after another, (adc_bits + 1) clock cycles each (SAR);
          arrays of a layer work in parallel, layers one after another (``pipeline=False``);
          ``pipeline=True`` reports the layer-pipelined interval (the slowest layer) as well.
area      arrays · R·C · cell_area; ADCs (NeuroSim's SAR transistor count, linear in bits);
          one shift-add unit per ADC; one driver per row; a global buffer of
          act_bits × the largest layer input (NeuroSim's rule) ×2 for double buffering.
          Interconnect area and control are not modelled.

Digital technologies (``digital``, ``ideal``) are modelled as a weight-stationary accelerator
with all weights in on-chip SRAM and R·C MAC units: energy = MACs × E_MAC (the device file's
cell_read_fJ) + buffer traffic; latency = MACs / (R·C) cycles.
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .spec import DeviceSpec, load_device

TECH_DIR = Path(__file__).resolve().parents[2] / "devices" / "technology"
ENERGY_PARTS = ("array", "adc", "dac", "digital", "buffer", "interconnect", "leakage")
AREA_PARTS = ("array", "adc", "drivers", "digital", "buffer")


def load_technology(name: str | Path = "cmos22") -> dict[str, float]:
    """Values of a technology file (name in devices/technology, or a path), sources stripped."""
    path = Path(name)
    if not path.suffix:
        path = TECH_DIR / f"{name}.toml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in TECH_DIR.glob("*.toml")))
        raise ValueError(f"technology {str(name)!r} not found ({path}); known: {known}")
    raw = tomllib.loads(path.read_text()).get("technology", {})
    values = {k: (v["value"] if isinstance(v, dict) else v) for k, v in raw.items() if k != "source"}
    missing = [k for k in ("node_nm", "vdd", "clock_GHz", "cell_area_F2", "sar_fom_fJ") if k not in values]
    if missing:
        raise ValueError(f"{path}: [technology] lacks {missing}")
    return {k: float(v) for k, v in values.items()}


@dataclass(frozen=True)
class ChipConfig:
    """The architecture knobs a chip study sweeps (see the module docstring)."""

    device: str = "reram"
    rows: int = 128
    cols: int = 128
    adc_bits: int = 4
    dac_bits: int = 1
    weight_bits: int = 8
    act_bits: int = 8
    bits_per_cell: int = 1
    parallel_rows: int | None = None      # rows read at once (NeuroSim's parallelRead); None = all
    cols_per_adc: int = 8                 # columns multiplexed onto one ADC (NeuroSim numColMuxed = 8)
    differential: bool | None = None      # None: the device file's mapping.differential
    input_activity: float = 0.5           # fraction of input bits that are 1 (drives array and DAC energy)
    pipeline: bool = False
    technology: str = "cmos22"
    ir_beta_per_row: float = 0.0          # IR-drop attenuation β grows with the rows on a column: β = this · rows
    ideal_converters: bool = False        # accuracy side only: ADC/DAC without quantization (costs still counted)

    def __post_init__(self) -> None:
        checks = [(self.rows >= 2 and self.cols >= 2, "rows and cols must be ≥ 2"),
                  (1 <= self.adc_bits <= 16, "adc_bits must lie in 1..16"),
                  (1 <= self.dac_bits <= self.act_bits, "dac_bits must lie in 1..act_bits"),
                  (2 <= self.weight_bits <= 16 and 2 <= self.act_bits <= 16, "weight_bits and act_bits must lie in 2..16"),
                  (1 <= self.bits_per_cell <= 8, "bits_per_cell must lie in 1..8"),
                  (self.parallel_rows is None or 1 <= self.parallel_rows <= self.rows,
                   "parallel_rows must lie in 1..rows"),
                  (1 <= self.cols_per_adc <= self.cols, "cols_per_adc must lie in 1..cols"),
                  (0 < self.input_activity <= 1, "input_activity must lie in (0, 1]"),
                  (self.ir_beta_per_row >= 0, "ir_beta_per_row must be ≥ 0")]
        bad = [msg for ok, msg in checks if not ok]
        if bad:
            raise ValueError("invalid chip configuration: " + "; ".join(bad))

    def spec_overrides(self) -> dict[str, Any]:
        """What the accuracy side (the native engine) takes from this configuration."""
        return {"array.rows": self.rows, "array.cols": self.cols,
                "array.adc_bits": 0 if self.ideal_converters else max(self.adc_bits, 2),
                "array.dac_bits": 0 if self.ideal_converters else self.act_bits, "ir_drop.beta": min(1.0, self.ir_beta_per_row * self.rows)}


@dataclass
class LayerChip:
    """Mapping and cost of one layer for one inference."""

    name: str
    macs: int
    arrays: int
    latency_ns: float
    energy: dict[str, float] = field(default_factory=dict)   # pJ per part
    area: dict[str, float] = field(default_factory=dict)     # mm² per part

    @property
    def energy_pJ(self) -> float:
        return sum(self.energy.values())


def _slices(cfg: ChipConfig, differential: bool) -> tuple[int, int]:
    magnitude = cfg.weight_bits - 1 if differential else cfg.weight_bits
    s = math.ceil(magnitude / cfg.bits_per_cell)
    return s, s * (2 if differential else 1)


def _analog_layer(name: str, k: int, n: int, m: int, cfg: ChipConfig, spec: DeviceSpec,
                  tech: dict[str, float]) -> LayerChip:
    differential = spec.mapping["differential"] if cfg.differential is None else cfg.differential
    s, c = _slices(cfg, differential)
    r, cols = cfg.rows, cfg.cols
    t_r, t_c = math.ceil(k / r), math.ceil(n * c / cols)
    arrays = t_r * t_c
    n_in = math.ceil(cfg.act_bits / cfg.dac_bits)
    p = cfg.parallel_rows or r
    g = math.ceil(min(k, r) / p)
    a = cfg.input_activity
    f = tech["node_nm"] * 1e-3                                           # µm
    conversions = n * s * t_r * g * n_in
    e_adc = tech["sar_fom_fJ"] * 2 ** cfg.adc_bits * 1e-3
    pitch_um = math.sqrt(tech["cell_area_F2"]) * f
    e_row = tech["wire_cap_fF_per_um"] * pitch_um * cols * tech["vdd"] ** 2 * 1e-3 * (2 ** cfg.dac_bits - 1)
    adds = conversions + n * s * t_r + n
    energy = {
        "array": m * k * n * c * n_in * a * spec.energy["cell_read_fJ"] * 1e-3,
        "adc": m * conversions * e_adc,
        "dac": m * k * t_c * n_in * a * e_row,
        "digital": m * adds * tech["add16_pJ"],
        "buffer": m * (k + n) * cfg.act_bits * tech["sram_bit_pJ"],
    }
    adcs_per_array = math.ceil(cols / cfg.cols_per_adc)
    t_adc_ns = (cfg.adc_bits + 1) / tech["clock_GHz"]
    # one read pulse (the device file's mvm_latency_ns) per input bit and row group, then the ADCs
    latency = m * n_in * g * (spec.energy["mvm_latency_ns"] + cfg.cols_per_adc * t_adc_ns)
    energy["leakage"] = tech["leakage_uW_per_array"] * arrays * latency * 1e-3
    at = tech["transistor_area_F2"] * f * f * 1e-6                     # mm² per transistor
    area = {
        "array": arrays * r * cols * tech["cell_area_F2"] * f * f * 1e-6,
        "adc": arrays * adcs_per_array * (tech["sar_transistors_base"]
                                          + tech["sar_transistors_per_bit"] * (cfg.adc_bits - 1)) * at,
        "drivers": arrays * r * tech["driver_transistors"] * at,
        "digital": arrays * adcs_per_array * tech["adder_transistors"] * at,
    }
    return LayerChip(name, m * k * n, arrays, latency, energy, area)


def _digital_layer(name: str, k: int, n: int, m: int, cfg: ChipConfig, spec: DeviceSpec,
                   tech: dict[str, float]) -> LayerChip:
    macs = m * k * n
    latency = math.ceil(macs / (cfg.rows * cfg.cols)) / tech["clock_GHz"]
    energy = {"array": macs * spec.energy["cell_read_fJ"] * 1e-3, "adc": 0.0, "dac": 0.0,
              "digital": m * n * tech["add16_pJ"],
              "buffer": m * (k + n) * cfg.act_bits * tech["sram_bit_pJ"]}
    energy["leakage"] = spec.energy["leakage_uW"] * latency * 1e-3
    area = {"array": k * n * cfg.weight_bits * tech["sram_bit_area_um2"] * 1e-6,   # weights held in SRAM
            "adc": 0.0, "drivers": 0.0, "digital": 0.0}
    return LayerChip(name, macs, 0, latency, energy, area)


@torch.no_grad()
def layer_shapes(model: nn.Module, input_shape: tuple[int, ...]) -> list[tuple[str, int, int, int]]:
    """(name, fan-in K, outputs N, MVMs M) of every Conv2d / Linear for one input, in execution order."""
    names = {m: n for n, m in model.named_modules()}
    shapes: list[tuple[str, int, int, int]] = []

    def hook(mod, inp, out):
        k = mod.weight[0].numel()
        n = mod.weight.shape[0]
        m = out[0, 0].numel() if isinstance(mod, nn.Conv2d) else max(out[0].numel() // mod.out_features, 1)
        shapes.append((names[mod], k, n, m))

    handles = [mod.register_forward_hook(hook) for mod in model.modules() if isinstance(mod, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, *input_shape, device=next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return shapes


def map_network(shapes: list[tuple[str, int, int, int]], cfg: ChipConfig,
                largest_input: int | None = None) -> dict[str, Any]:
    """Map layers onto the chip; returns per-layer costs plus chip totals (energy, area, latency, TOPS/W)."""
    spec = load_device(cfg.device)
    tech = load_technology(cfg.technology)
    digital = spec.device["technology"] in ("digital", "ideal")
    layer_fn = _digital_layer if digital else _analog_layer
    layers = [layer_fn(name, k, n, m, cfg, spec, tech) for name, k, n, m in shapes]
    largest = largest_input or max(k * m for _, k, _, m in shapes)
    buffer_mm2 = 2 * largest * cfg.act_bits * tech["sram_bit_area_um2"] * 1e-6
    area = {part: sum(layer.area[part] for layer in layers) for part in AREA_PARTS if part != "buffer"}
    area["buffer"] = buffer_mm2
    total_area = sum(area.values())
    # interconnect: each MVM's input vector is broadcast once to the layer's arrays on a shared bus
    # and its outputs return; every bit travels on average half the chip's side
    d_mm = math.sqrt(total_area) / 2
    for layer, (_, k, n, m) in zip(layers, shapes):
        layer.energy["interconnect"] = m * (k + n) * cfg.act_bits * tech["wire_pJ_per_bit_mm"] * d_mm
    return {"layers": layers, "area_mm2": area, "tech": tech, "spec": spec}


def summarize(layers: list[LayerChip], area: dict[str, float], pipeline: bool = False) -> dict[str, Any]:
    """Totals of a set of layers: energy per part (pJ), area (mm²), latency (ns), TOPS/W, TOPS."""
    energy = {part: sum(layer.energy.get(part, 0.0) for layer in layers) for part in ENERGY_PARTS}
    e = sum(energy.values())
    macs = sum(layer.macs for layer in layers)
    latency = sum(layer.latency_ns for layer in layers)
    interval = max((layer.latency_ns for layer in layers), default=0.0) if pipeline else latency
    return {"macs": macs, "energy_pJ": e, **{f"{p}_pJ": v for p, v in energy.items()},
            "area_mm2": sum(area.values()), **{f"area_{p}_mm2": v for p, v in area.items()},
            "arrays": sum(layer.arrays for layer in layers), "latency_ns": latency, "interval_ns": interval,
            "tops_per_w": 2 * macs / e if e else math.inf,
            "tops": 2 * macs / interval * 1e-3 if interval else math.inf}


def chip_report(model: nn.Module, cfg: ChipConfig, input_shape: tuple[int, ...] | None = None) -> dict[str, Any]:
    """Whole-chip totals and, for a MultiExitNet, the cost of inference truncated at each exit.

    The chip holds every layer (all exits' heads included) — the area is the whole chip's; an
    exit's energy and latency count the stem, the stages up to it and its own head.
    """
    if input_shape is None:
        c = model.config
        input_shape = (c["in_channels"], c["image_size"], c["image_size"])
    shapes = layer_shapes(model, input_shape)
    mapped = map_network(shapes, cfg)
    layers = mapped["layers"]
    out = {"config": asdict(cfg), "chip": summarize(layers, mapped["area_mm2"], cfg.pipeline),
           "layers": [dict(name=l.name, macs=l.macs, arrays=l.arrays, latency_ns=l.latency_ns,
                           energy_pJ=l.energy_pJ, **{f"{p}_pJ": v for p, v in l.energy.items()},
                           **{f"area_{p}_mm2": v for p, v in l.area.items()}) for l in layers],
           "exits": []}
    stages = getattr(model, "exit_stages", None)
    if stages is not None:
        for i, stage in enumerate(stages):
            keep = [l for l in layers if l.name.startswith("stem") or l.name.startswith(f"heads.{i}.")
                    or any(l.name.startswith(f"stages.{s}.") for s in range(stage + 1))]
            out["exits"].append({"exit": str(stage + 1), **summarize(keep, mapped["area_mm2"], cfg.pipeline)})
    return out


class NeuroSimVGG8(nn.Module):
    """NeuroSim's VGG-8 for CIFAR-10 (NetWork.csv): 2×conv128, pool, 2×conv256, pool, 2×conv512, pool, fc1024, fc10."""

    def __init__(self) -> None:
        super().__init__()
        chans = [(3, 128), (128, 128), (128, 256), (256, 256), (256, 512), (512, 512)]
        layers: list[nn.Module] = []
        for i, (ci, co) in enumerate(chans):
            layers += [nn.Conv2d(ci, co, 3, padding=1, bias=False), nn.ReLU()]
            if i % 2 == 1:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(8192, 1024, bias=False), nn.ReLU(),
                                        nn.Linear(1024, 10, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
