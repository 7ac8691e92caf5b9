"""The one cost model: a network mapped onto R×C crossbars, with energy, area and latency per layer and per exit.

It prices a resolved ``Chip`` (``chip.py``: a device file's cells plus a ``ChipConfig``'s periphery), the
same object the accuracy side deploys. Every study that reports a cost calls ``chip_report``; there is
no other set of energy formulas in the project.

Per Conv1d / Conv2d / Linear (im2col; K = fan-in, N = outputs, M = MVMs per inference, i.e.
output positions):

mapping   S = ⌈w_mag / bits_per_cell⌉ slices (w_mag = weight_bits − 1 with a differential pair,
          which carries the sign, else weight_bits); c = S·(2 if differential else 1) cells per
          weight; row tiles T_r = ⌈K/R⌉, column tiles T_c = ⌈N·c/C⌉, arrays = T_r·T_c. On the default chip
          (the device file's own cells) weight_bits is what those cells hold, so S = cells_per_weight: the
          slices the accuracy side programs (``ChipConfig.resolve``).
cycles    inputs are streamed bit-serially in n_in = ⌈act_bits/dac_bits⌉ cycles; an array reads
          its rows in g = ⌈min(K, R)/P⌉ groups of P parallel rows.
activity  a = fraction of the input bits driven that are 1, measured per layer on real activations
          (``measure_activity``; ``input_activity`` fixes it instead); s = mean conductance of the
          layer's cells relative to g_max, from its weights sliced as they are stored
          (``cell_state``): an off cell still conducts g_max/on_off.
energy    ADC      M · N·S·T_r·g·n_in conversions × max(decisions·(a·bits + b), FOM_W·2^bits, E_thermal(bits))
                   (decisions per conversion by converter type: SAR bits + 1, ramp 2^bits, flash 2^bits − 1;
                   a, b the node's energy per decision; floored by the ADC survey's Walden and Schreier
                   frontiers: ``adc_energy_pJ``)
          array    M · K·N·c·n_in·a·p × E_cell·(1/r + (1 − 1/r)·s)   (E_cell = the device file's read
                   energy at g_max per unit pulse, r = on/off ratio; p = 2^dac_bits − 1 unit pulses per
                   input cycle at full scale — pulse-count / pulse-width inputs; p = 1 bit-serial)
          DAC      M · K·T_c·n_in·a·p × C·(C_wire·pitch + C_gate·W_access)·V_dd²  (row drivers: a driven
                   row charges its wire and the gates of its C access transistors, NeuroSim's capRow)
          digital  M · (N·S·T_r·g·n_in shift-adds of (adc_bits + act_bits) bits + N·S·T_r tile/slice
                   accumulations of (adc_bits + act_bits + weight_bits) bits + N activations of
                   act_bits bits) × E_add/bit   (E_add/bit = the technology's 16-bit add / 16)
          buffer   M · (K + N)·act_bits × E_sram_bit      (input vector read, output written)
          interconnect  M · (K + N)·act_bits × E_wire · d, d = √(chip area)/2 (inputs broadcast on one bus)
          leakage  P_leak · arrays · layer latency
latency   M · n_in · g · (t_read + cols_per_adc · t_ADC): per input bit and row group one read pulse
          (the device file's mvm_latency_ns), then each ADC converts its cols_per_adc columns one
          after another, ``adc_cycles`` clock cycles each (SAR bits + 1, ramp 2^bits, flash 1);
          arrays of a layer work in parallel, layers one after another (``pipeline=False``);
          ``pipeline=True`` reports the layer-pipelined interval (the slowest layer) as well.
area      arrays · R·C · cell_area; ADCs (NeuroSim's SAR transistor count, linear in bits);
          one shift-add unit per ADC; one driver per row; per array an input register
          (R·act_bits bits) and an output buffer (C/cols_per_adc partial sums of 2·act_bits bits);
          a global buffer of act_bits × the largest layer input (NeuroSim's rule) ×2 for double
          buffering. Not modelled: pooling / activation units, control, interconnect wiring area.

Digital technologies (``digital``, ``ideal``) are modelled as a weight-stationary accelerator
with all weights in on-chip SRAM and R·C MAC units: energy = MACs × E_MAC (the device file's
cell_read_fJ) + buffer traffic; latency = M · ⌈K/R⌉ · ⌈N/C⌉ cycles (weight-stationary: one input vector per
cycle per array load of a layer's K×N weights, so a small layer uses few of the R·C units; the layer
rows report that utilisation). Transposed convolutions, which the
accuracy engine leaves digital, are priced the same way on any chip, at digital_int8's E_MAC.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
import torch.nn as nn

from ..batches import as_batches
from ..models.coverage import untouched_layers, warn_untouched
from ..models.evaluation import exit_labels
from .chip import Chip, ChipConfig
from .spec import DeviceSpec, load_device
from .technology import at_supply, load_technology
from .trace import (DIGITAL_UNIT_TYPES, LAYER_TYPES, LayerShape, _dedupe, _exit_shapes, layer_shapes,
                    measure_activity)

ENERGY_PARTS = ("array", "adc", "dac", "digital", "buffer", "interconnect", "leakage")
AREA_PARTS = ("array", "adc", "drivers", "digital", "tile_buffers", "buffer")
DIGITAL_REFERENCE = "digital_int8"


@dataclass
class LayerChip:
    """Mapping and cost of one layer for one inference."""

    name: str
    macs: int
    arrays: int
    latency_ns: float
    energy: dict[str, float] = field(default_factory=dict)   # pJ per part
    area: dict[str, float] = field(default_factory=dict)     # mm² per part
    activity: float = 0.0
    cell_state: float = 0.0
    utilisation: float = 1.0  # analog: share of the layer's array cells holding weights; digital: of MAC-unit cycles

    @property
    def energy_pJ(self) -> float:
        return sum(self.energy.values())


def _need(value: int | None, key: str) -> int:
    """A ChipConfig field ``resolve()`` fills: the cost model prices resolved chips (``Chip.config``) only."""
    if value is None:
        raise ValueError(f"ChipConfig.{key} is None: the cost model prices a resolved chip (ChipConfig.resolve())")
    return value


def _slices(cfg: ChipConfig) -> tuple[int, int]:
    wb = _need(cfg.weight_bits, "weight_bits")
    magnitude = wb - 1 if cfg.differential else wb
    s = math.ceil(magnitude / _need(cfg.bits_per_cell, "bits_per_cell"))
    return s, s * (2 if cfg.differential else 1)


def as_chip(chip: Chip | ChipConfig) -> Chip:
    """A resolved chip (a ``ChipConfig`` is resolved here, once)."""
    return chip if isinstance(chip, Chip) else chip.resolve()


def cells_per_weight(chip: Chip | ChipConfig) -> int:
    """Cells one weight occupies: ⌈magnitude bits / bits_per_cell⌉ slices, ×2 with a differential pair."""
    return _slices(as_chip(chip).config)[1]


def cell_state(weight: torch.Tensor, cfg: ChipConfig) -> float:
    """Mean conductance of the cells holding ``weight`` (0 = every cell off, 1 = every cell at g_max).

    Weights are quantized to weight_bits (symmetric, per tensor), their magnitude (differential:
    the sign goes to the pair, the other cell of the pair stays off) or offset-binary code (no pair)
    cut into bits_per_cell-bit digits; a digit d programs a cell to d / (2^bits_per_cell − 1).
    """
    w = weight.detach().double().flatten()
    wb = _need(cfg.weight_bits, "weight_bits")
    if cfg.differential:
        levels = 2 ** (wb - 1) - 1
        code = torch.round(w.abs() / w.abs().max().clamp_min(1e-30) * levels).long()
    else:
        half = 2 ** (wb - 1)
        code = (torch.round(w / w.abs().max().clamp_min(1e-30) * (half - 1)).long() + half).clamp(0, 2 * half - 1)
    s, cells = _slices(cfg)
    base = 2 ** _need(cfg.bits_per_cell, "bits_per_cell")
    total = sum(float(((code // base ** i) % base).sum()) for i in range(s))  # one slice at a time: big layers
    return total / ((base - 1) * w.numel() * cells)


# Murmann, "ADC Performance Survey 1997-2025" (github.com/bmurmann/ADC-survey, data commit aa0e22d, 725 ISSCC /
# VLSI designs), designs at f_snyq <= 100 MHz: the mean of the best five Walden figures of merit (fJ per conversion
# step) and of the best five Schreier figures of merit (dB). No published converter beats these, so they floor the
# energy of a conversion; they are node independent (the frontier designs span 28-180 nm).
SURVEY_WALDEN_FJ = 0.669
SURVEY_SCHREIER_DB = 186.4


def adc_decisions(bits: int, adc_type: str = "sar") -> int:
    """Comparator decisions (one clock cycle each, except flash) in one conversion: a SAR samples and decides one
    bit per cycle (bits + 1); a ramp / single-slope converter compares once per step of its ramp (2^bits); a flash
    converter fires its 2^bits − 1 comparators at once, in one cycle."""
    return {"sar": bits + 1, "ramp": 2 ** bits, "flash": 2 ** bits - 1}[adc_type]


def adc_cycles(bits: int, adc_type: str = "sar") -> int:
    """Clock cycles one conversion takes."""
    return 1 if adc_type == "flash" else adc_decisions(bits, adc_type)


def adc_energy_pJ(bits: int, tech: dict[str, float], adc_type: str = "sar") -> float:
    """Energy of one conversion in pJ: its comparator decisions at the node's energy per decision
    (adc_cycle_a_fJ · bits + adc_cycle_b_fJ), but never below what the best published converters reach: the
    survey's Walden frontier (FOM_W · 2^bits) and its Schreier frontier (thermal noise: E = 10^((SNDR −
    FOM_S)/10) / 2 with SNDR = 6.02 bits + 1.76 dB, which takes over above ~12 bits)."""
    per_decision_fJ = tech["adc_cycle_a_fJ"] * bits + tech["adc_cycle_b_fJ"]
    decisions_fJ = adc_decisions(bits, adc_type) * per_decision_fJ
    walden_fJ = SURVEY_WALDEN_FJ * 2 ** bits
    thermal_fJ = 10 ** ((6.02 * bits + 1.76 - SURVEY_SCHREIER_DB) / 10) / 2 * 1e15
    return max(decisions_fJ, walden_fJ, thermal_fJ) * 1e-3


def _analog_layer(shape: LayerShape, cfg: ChipConfig, spec: DeviceSpec, tech: dict[str, float],
                  activity: float) -> LayerChip:
    k, n, m = shape.k, shape.n, shape.m
    s, c = _slices(cfg)
    r, cols = _need(cfg.rows, "rows"), _need(cfg.cols, "cols")
    adc_bits = _need(cfg.adc_bits, "adc_bits")
    t_r, t_c = math.ceil(k / r), math.ceil(n * c / cols)
    arrays = t_r * t_c
    n_in = math.ceil(cfg.act_bits / cfg.dac_bits)
    p = cfg.parallel_rows or r
    g = math.ceil(min(k, r) / p)
    a = activity
    state = cell_state(shape.weight, cfg) if shape.weight is not None else 0.5
    off = 1.0 / spec.mapping["on_off_ratio"]
    f = tech["node_nm"] * 1e-3                                           # µm
    conversions = n * s * t_r * g * n_in
    e_adc = adc_energy_pJ(adc_bits, tech, cfg.adc_type)
    pitch_um = math.sqrt(tech["cell_area_F2"]) * f
    pulses = 2 ** cfg.dac_bits - 1  # a dac_bits-bit input cycle drives up to 2^dac_bits − 1 unit pulses
    # a driven row charges its wire and the gate of every cell's access transistor along it
    row_cap_fF = cols * (tech["wire_cap_fF_per_um"] * pitch_um
                         + tech["gate_cap_fF_per_um"] * tech["access_width_F"] * f)
    e_row = row_cap_fF * tech["vdd"] ** 2 * 1e-3 * pulses
    # adder energy grows with its width (ripple carry): shift-adds accumulate adc_bits + act_bits
    # bits over the input cycles, slice / tile accumulation adds the weight bits on top
    e_bit = tech["add16_pJ"] / 16
    adds_pJ = (conversions * (adc_bits + cfg.act_bits)
               + n * s * t_r * (adc_bits + cfg.act_bits + _need(cfg.weight_bits, "weight_bits"))
               + n * cfg.act_bits) * e_bit
    energy = {
        "array": m * k * n * c * n_in * a * pulses * spec.cell_read_fJ * (off + (1 - off) * state) * 1e-3,
        "adc": m * conversions * e_adc,
        "dac": m * k * t_c * n_in * a * e_row,
        "digital": m * adds_pJ,
        "buffer": m * (k + n) * cfg.act_bits * tech["sram_bit_pJ"],
    }
    adcs_per_array = math.ceil(cols / cfg.cols_per_adc)
    t_adc_ns = adc_cycles(adc_bits, cfg.adc_type) / tech["clock_GHz"]
    # one read pulse (the device file's mvm_latency_ns) per input bit and row group, then the ADCs
    latency = m * n_in * g * (spec.energy["mvm_latency_ns"] + cfg.cols_per_adc * t_adc_ns)
    energy["leakage"] = tech["leakage_uW_per_array"] * arrays * latency * 1e-3
    at = tech["transistor_area_F2"] * f * f * 1e-6                     # mm² per transistor
    tile_bits = r * cfg.act_bits + adcs_per_array * 2 * cfg.act_bits
    area = {
        "array": arrays * r * cols * tech["cell_area_F2"] * f * f * 1e-6,
        "adc": arrays * adcs_per_array * (tech["sar_transistors_base"]
                                          + tech["sar_transistors_per_bit"] * (adc_bits - 1)) * at,
        "drivers": arrays * r * tech["driver_transistors"] * at,
        "digital": arrays * adcs_per_array * tech["adder_transistors"] * at,
        "tile_buffers": arrays * tile_bits * tech["sram_bit_area_um2"] * 1e-6,
    }
    used = k * n * c / (arrays * r * cols)
    return LayerChip(shape.name, m * k * n, arrays, latency, energy, area, a, state, used)


def _digital_layer(shape: LayerShape, cfg: ChipConfig, spec: DeviceSpec, tech: dict[str, float],
                   activity: float) -> LayerChip:
    k, n, m = shape.k, shape.n, shape.m
    macs = m * k * n
    # weight-stationary R×C MAC array: a layer's K×N weights occupy ⌈K/R⌉·⌈N/C⌉ array loads, and each load
    # takes one input vector (one output position) per cycle, so a small layer leaves most units idle
    # (utilisation = MACs / (cycles · R·C)); assuming all R·C units busy on every layer made int8 look
    # up to 1000× faster than any real accelerator on small layers.
    rows, cols = _need(cfg.rows, "rows"), _need(cfg.cols, "cols")
    wb = _need(cfg.weight_bits, "weight_bits")
    cycles = m * math.ceil(k / rows) * math.ceil(n / cols)
    latency = cycles / tech["clock_GHz"]
    # the MAC energy is given at the technology file's supply; like the periphery it goes as V^2
    supply = (tech["vdd"] / tech["file_vdd"]) ** 2 if "file_vdd" in tech else 1.0
    # weight-stationary: each weight is read once per inference from the on-chip SRAM into its MAC unit
    # (leaving this fetch out made int8 look 11-46 % cheaper than it is on our networks)
    energy = {"array": macs * spec.cell_read_fJ * supply * 1e-3, "adc": 0.0, "dac": 0.0,
              "digital": m * n * tech["add16_pJ"],
              "buffer": (m * (k + n) * cfg.act_bits + k * n * wb) * tech["sram_bit_pJ"]}
    energy["leakage"] = spec.energy["leakage_uW"] * latency * 1e-3
    area = {"array": k * n * wb * tech["sram_bit_area_um2"] * 1e-6,   # weights held in SRAM
            "adc": 0.0, "drivers": 0.0, "digital": 0.0, "tile_buffers": 0.0}
    return LayerChip(shape.name, macs, 0, latency, energy, area, activity, 0.0, macs / (cycles * rows * cols))


def map_network(shapes: list[LayerShape] | list[tuple], chip: Chip | ChipConfig, activity: dict[str, float] | None = None,
                largest_input: int | None = None) -> dict[str, Any]:
    """Map layers onto the chip; returns per-layer costs plus the chip's area.

    ``activity`` maps layer names to measured input-bit activity; ``cfg.input_activity`` (a
    number) overrides it; one of the two is required.
    """
    shapes = [s if isinstance(s, LayerShape) else LayerShape(*s) for s in shapes]
    resolved = as_chip(chip)
    cfg, spec = resolved.config, resolved.spec
    tech = at_supply(load_technology(cfg.technology), cfg.vdd)
    digital = spec.is_digital
    layer_fn = _digital_layer if digital else _analog_layer

    def act(name: str) -> float:
        if cfg.input_activity is not None:
            return cfg.input_activity
        if activity is None or name not in activity:
            raise ValueError(f"no measured input activity for layer {name!r}: pass calibration batches "
                             "(measured activity) or set ChipConfig(input_activity=...) to fix it")
        return activity[name]

    # digital units on an analog chip (transposed convolutions) cost what the int8 reference chip's MACs do
    unit_spec = spec if digital or not any(s.digital for s in shapes) else load_device(DIGITAL_REFERENCE)
    layers = [_digital_layer(s, cfg, unit_spec, tech, 1.0) if s.digital
              else layer_fn(s, cfg, spec, tech, act(s.name) if not digital else 1.0) for s in shapes]
    largest = largest_input or max(s.k * s.m for s in shapes)
    area = {part: sum(layer.area[part] for layer in layers) for part in AREA_PARTS if part != "buffer"}
    area["buffer"] = 2 * largest * cfg.act_bits * tech["sram_bit_area_um2"] * 1e-6
    total_area = sum(area.values())
    # interconnect: each MVM's input vector is broadcast once to the layer's arrays on a shared bus
    # and its outputs return; every bit travels on average half the chip's side
    d_mm = math.sqrt(total_area) / 2
    for layer, s in zip(layers, shapes):
        layer.energy["interconnect"] = s.m * (s.k + s.n) * cfg.act_bits * tech["wire_pJ_per_bit_mm"] * d_mm
    return {"layers": layers, "area_mm2": area, "tech": tech, "spec": spec, "config": cfg, "chip": resolved}


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


def _batch_inputs(batches: Any) -> list[torch.Tensor]:
    return list(as_batches(batches, "chip_report: calibration", labels=False))


def chip_report(model: nn.Module, chip: Chip | ChipConfig, input_shape: tuple[int, ...] | None = None,
                calibration: Iterable | None = None, activity: dict[str, float] | None = None) -> dict[str, Any]:
    """Whole-chip totals, per layer, and per exit: truncated at exit k, and the early-exit path to k.

    Works on any module of Conv1d / Conv2d / Linear (one exit) and on any multi-exit module
    (``num_exits`` + ``forward_exit``). ``calibration`` — batches of training inputs — gives the
    measured input-bit activity (the default; ``activity`` passes one already measured with
    ``measure_activity``); without either, ``cfg.input_activity`` must fix one.
    The chip holds every layer (all exits' heads included) — the area is the whole chip's.
    """
    warn_untouched("chip_report", untouched_layers(model, LAYER_TYPES + DIGITAL_UNIT_TYPES),
                   "are not costed (the cost model maps Conv1d / Conv2d / Linear onto crossbars and prices "
                   "transposed convolutions as digital MACs)")
    xs = _batch_inputs(calibration) if calibration is not None else None
    if input_shape is None:
        if not xs:
            raise ValueError("chip_report needs input_shape (C, H, W) / (C, L) / (features,) or calibration batches")
        input_shape = tuple(xs[0].shape[1:])
    resolved = as_chip(chip)
    cfg = resolved.config
    if activity is None and xs and cfg.input_activity is None:
        activity = measure_activity(model, xs, cfg.act_bits)
    per_exit = _exit_shapes(model, input_shape)
    # the chip holds every layer any forward or exit runs (a layer only an exit uses included)
    shapes = _dedupe(layer_shapes(model, input_shape) + [s for exit_shapes in per_exit for s in exit_shapes])
    mapped = map_network(shapes, resolved, activity)
    layers = mapped["layers"]
    by_name = {layer.name: layer for layer in layers}
    out: dict[str, Any] = {"config": cfg.as_dict(), "converters": resolved.converters,
                           "chip": summarize(layers, mapped["area_mm2"], cfg.pipeline),
           "layers": [dict(name=lc.name, macs=lc.macs, arrays=lc.arrays, latency_ns=lc.latency_ns, utilisation=lc.utilisation,
                           input_activity=lc.activity, cell_state=lc.cell_state,
                           energy_pJ=lc.energy_pJ, **{f"{p}_pJ": v for p, v in lc.energy.items()},
                           **{f"area_{p}_mm2": v for p, v in lc.area.items()}) for lc in layers],
           "exits": [], "paths": []}
    path: list[str] = []
    labels = exit_labels(model, len(per_exit))  # the names evaluate() gives the same exits
    for k, names in enumerate([[s.name for s in exit_shapes] for exit_shapes in per_exit]):
        path += [n for n in names if n not in path]
        out["exits"].append({"exit": labels[k], "index": k + 1,
                             **summarize([by_name[n] for n in names], mapped["area_mm2"], cfg.pipeline)})
        out["paths"].append({"exit": labels[k], "index": k + 1,
                             **summarize([by_name[n] for n in path], mapped["area_mm2"], cfg.pipeline)})
    return out


def exit_energies(model: nn.Module, chip: Chip | ChipConfig, calibration: Iterable) -> dict[str, float]:
    """Energy per inference (pJ) by exit label (``exit_labels``, as the evaluation tables name exits), plus
    "ensemble" (every exit run)."""
    report = chip_report(model, chip, calibration=calibration)
    out = {e["exit"]: e["energy_pJ"] for e in report["exits"]}
    out["ensemble"] = report["paths"][-1]["energy_pJ"]
    return out
