"""One chip, described once: a device file's cells plus the periphery a ``ChipConfig`` adds, resolved into a ``Chip``.

The accuracy side (``deploy``, ``evaluate_chips``, the batched chips, the aihwkit backend) deploys
``chip`` (or ``chip.spec``: the device with this chip's array size, converters and IR drop) and the
cost model (``cost.chip_report``) prices the same ``chip``; ``--device-set`` values and architecture
flags therefore reach accuracy and energy alike. Where the accuracy run idealises the converters (a
device file without converters and no ``adc_bits`` asked for), ``Chip.converters`` says so and the
energy still prices a ``PRICED_ADC_BITS``-bit ADC.
"""
from __future__ import annotations

import importlib
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..utils import warn_deprecated
from .spec import CONVERTER_BITS, DeviceSpec, load_device

ADC_BITS = CONVERTER_BITS  # one rule for device files ([array] adc_bits) and chip configurations
RANGING = ("fixed", "per_sample")
# sar: successive approximation (NeuroSim's, most ISSCC macros); ramp: single-slope / integrate-and-fire neurons that
# count up to 2^bits steps (NeuRRAM); flash: 2^bits - 1 comparators fire at once (fast, few bits)
ADC_TYPES = ("sar", "ramp", "flash")
# the ADC the cost model prices when the accuracy run has ideal converters (a device file with adc_bits = 0):
# 8 bits is NeuroSim's default and the resolution of the ISSCC / VLSI macros the model is compared with
PRICED_ADC_BITS = 8


@dataclass(frozen=True)
class ChipConfig:
    """The periphery a chip adds to a device's cells; None = the device file's (see ``resolve``).

    ``device`` is a name, a ``.toml`` path, or a ``DeviceSpec`` (e.g. one with ``--device-set`` values applied).
    """

    device: str | Path | DeviceSpec = "reram"
    rows: int | None = None               # None: the device file's [array] rows
    cols: int | None = None               # None: the device file's [array] cols
    adc_bits: int | None = 8              # None: the device file's converters (ideal when it has none, priced at 8 bits)
    dac_bits: int = 1                     # bits per input cycle (1 = bit-serial inputs)
    # weight_bits and bits_per_cell both None: the device file's own cells, one value per weight on
    # mapping.cells_per_weight cells (pairs) of mapping.levels levels, deployed and priced as such (weight_bits = what
    # those cells hold; 8 on continuous cells, whose analog value is priced at 8 bits). Either one given: both sides
    # bit-slice weight_bits-bit weights (default 8) onto cells used at 2^bits_per_cell levels (default ⌊log2 levels⌋).
    weight_bits: int | None = None
    act_bits: int = 8
    bits_per_cell: int | None = None
    parallel_rows: int | None = None      # rows read and digitised at once (NeuroSim's parallelRead); None = all
    cols_per_adc: int = 8                 # columns multiplexed onto one ADC (NeuroSim numColMuxed = 8)
    differential: bool | None = None      # None: the device file's mapping.differential
    input_activity: float | None = None   # None: measured on calibration images; a number fixes it
    ranging: str | None = "fixed"         # converters: "fixed" (calibrated once) or "per_sample"; None: the file's
    pipeline: bool = False
    technology: str = "cmos22"
    ir_beta_per_row: float | None = None  # IR-drop attenuation β = this · rows; None: the device file's ir_drop.beta
    ideal_converters: bool = False        # accuracy side only: ADC/DAC without quantization (costs still counted)
    adc_type: str = "sar"                 # the converter's circuit, which sets how its energy grows with bits (ADC_TYPES)
    vdd: float | None = None              # periphery supply in V; None: the technology file's (energies scale as vdd^2)

    def __post_init__(self) -> None:
        lo, hi = ADC_BITS
        checks = [(self.rows is None or self.rows >= 2, "rows", "an integer ≥ 2", self.rows),
                  (self.cols is None or self.cols >= 2, "cols", "an integer ≥ 2", self.cols),
                  (self.adc_bits is None or lo <= self.adc_bits <= hi, "adc_bits", f"{lo}..{hi}", self.adc_bits),
                  (self.weight_bits is None or 2 <= self.weight_bits <= 16, "weight_bits", "2..16",
                   self.weight_bits),
                  (1 <= self.act_bits <= 16, "act_bits", "1..16", self.act_bits),
                  (1 <= self.dac_bits <= self.act_bits, "dac_bits", "1..act_bits", self.dac_bits),
                  (self.bits_per_cell is None or 1 <= self.bits_per_cell <= 8, "bits_per_cell", "1..8",
                   self.bits_per_cell),
                  (self.parallel_rows is None or self.parallel_rows >= 1, "parallel_rows", "1..rows",
                   self.parallel_rows),
                  (self.cols_per_adc >= 1, "cols_per_adc", "1..cols", self.cols_per_adc),
                  (self.input_activity is None or 0 < self.input_activity <= 1, "input_activity", "(0, 1]",
                   self.input_activity),
                  (self.ranging is None or self.ranging in RANGING, "ranging", " or ".join(RANGING), self.ranging),
                  (self.ir_beta_per_row is None or self.ir_beta_per_row >= 0, "ir_beta_per_row", "≥ 0",
                   self.ir_beta_per_row),
                  (self.adc_type in ADC_TYPES, "adc_type", " / ".join(ADC_TYPES), self.adc_type),
                  (self.vdd is None or 0.1 <= self.vdd <= 5.0, "vdd", "0.1..5 V", self.vdd)]
        if self.rows is not None and self.parallel_rows is not None:
            checks.append((self.parallel_rows <= self.rows, "parallel_rows", f"1..rows ({self.rows})",
                           self.parallel_rows))
        if self.cols is not None:
            checks.append((self.cols_per_adc <= self.cols, "cols_per_adc", f"1..cols ({self.cols})",
                           self.cols_per_adc))
        bad = [f"{key} = {value} must lie in {allowed}" for ok, key, allowed, value in checks if not ok]
        if bad:
            raise ValueError("invalid chip configuration: " + "; ".join(bad))

    @property
    def device_name(self) -> str:
        return self.device.name if isinstance(self.device, DeviceSpec) else str(self.device)

    def as_dict(self) -> dict[str, Any]:
        """Plain values for manifests and tables (the device by name)."""
        d = asdict(replace(self, device="-"))
        d["device"] = self.device_name
        return d

    def resolve(self) -> Chip:
        """The one chip: every None filled from the device file, and the device's spec with this periphery.

        ``adc_bits = None`` takes the device file's converters: its ``adc_bits`` and ``ranging`` when it has
        an ADC; a file without one (0) is simulated with ideal converters and priced at ``PRICED_ADC_BITS``.
        """
        cells = load_device(self.device)
        levels = int(cells.mapping["levels"])
        differential = cells.mapping["differential"] if self.differential is None else self.differential
        sliced = not cells.is_digital and (self.bits_per_cell is not None or self.weight_bits is not None)
        weight_bits = self.weight_bits or 8
        if not sliced and not cells.is_digital and levels >= 2:
            # the file's own cells: one value on cells_per_weight cells of ⌊log2 levels⌋ bits each (a sign bit
            # more on a differential pair), priced as the cells_per_weight slices the accuracy side programs
            stored = int(math.log2(levels)) * int(cells.mapping["cells_per_weight"])
            weight_bits = max(2, min(16, stored + (1 if differential else 0)))
        magnitude = weight_bits - 1 if differential else weight_bits
        bpc = self.bits_per_cell
        if bpc is None:
            bpc = min(int(math.log2(levels)), magnitude) if levels >= 2 else magnitude
        if levels >= 2 and 2 ** bpc > levels and not cells.is_digital:
            raise ValueError(f"invalid chip configuration: bits_per_cell = {bpc} must lie in 1.."
                             f"{int(math.log2(levels))} (device {cells.name!r} has {levels} levels per cell)")
        file_adc = int(cells.array["adc_bits"])
        adc_bits, ideal = self.adc_bits, self.ideal_converters
        if adc_bits is None:
            adc_bits, ideal = (file_adc, ideal) if file_adc else (PRICED_ADC_BITS, True)
        # replace() re-runs the checks: parallel_rows / cols_per_adc against the resolved array size
        cfg = replace(self, rows=self.rows or int(cells.array["rows"]), cols=self.cols or int(cells.array["cols"]),
                      weight_bits=weight_bits, bits_per_cell=bpc, differential=differential, adc_bits=adc_bits,
                      ideal_converters=ideal,
                      ranging=self.ranging or str(cells.array["ranging"]))
        assert cfg.rows is not None and cfg.ranging is not None  # filled just above
        beta = cells.ir_drop["beta"] if cfg.ir_beta_per_row is None else min(1.0, cfg.ir_beta_per_row * cfg.rows)
        periphery = {"array.rows": cfg.rows, "array.cols": cfg.cols, "array.ranging": cfg.ranging,
                     "array.adc_bits": 0 if ideal else adc_bits, "array.dac_bits": 0 if ideal else cfg.act_bits,
                     "ir_drop.beta": beta,
                     "array.parallel_rows": cfg.parallel_rows if cfg.parallel_rows and cfg.parallel_rows < cfg.rows
                     else 0}
        if sliced:
            # asked for: the accuracy side bit-slices weight_bits-bit weights onto cells used at 2^bits_per_cell
            # levels, each slice with its own device noise, as the cost model prices them
            periphery.update({"mapping.levels": 2 ** bpc, "mapping.cells_per_weight": 1,
                              "mapping.weight_bits": cfg.weight_bits})
        changed = {k: v for k, v in periphery.items() if _get(cells, k) != v}
        return Chip(cfg, cells.with_overrides(changed) if changed else cells)


def _get(spec: DeviceSpec, dotted: str) -> Any:
    section, key = dotted.split(".")
    return spec.sections[section][key]


@dataclass(frozen=True)
class Chip:
    """A resolved chip: ``config`` (no None left but the optional knobs) and ``spec``, the device's cells with
    this chip's array size, converters and IR drop, which the accuracy side deploys and the cost model prices."""

    config: ChipConfig
    spec: DeviceSpec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def converters(self) -> str:
        """What the accuracy run's converters are, in words (tables and manifests say it)."""
        c = self.config
        if self.spec.is_digital:
            return "digital"
        if c.ideal_converters:
            return f"ideal converters in accuracy; energy priced with {c.adc_bits}-bit ADCs"
        return f"{c.adc_bits}-bit ADC, {c.act_bits}-bit inputs, {c.ranging} ranging"

    def summary(self) -> dict[str, Any]:
        """Plain dict for manifests: the resolved configuration and the converters in words."""
        return {**self.config.as_dict(), "converters": self.converters}


# Names that lived here before the cost model, the layer trace and the technology files got their own modules.
# They still import from here, with a warning, until wxy_hw.utils.REMOVED_IN.
_MOVED = {**{n: "cost" for n in ("ENERGY_PARTS", "AREA_PARTS", "DIGITAL_REFERENCE", "LayerChip", "cells_per_weight",
                                  "cell_state", "adc_energy_pJ", "map_network", "summarize", "chip_report",
                                  "exit_energies")},
          **{n: "trace" for n in ("LAYER_TYPES", "DIGITAL_UNIT_TYPES", "LayerShape", "is_multi_exit", "layer_shapes",
                                  "measure_activity", "calibration_inputs", "fingerprint")},
          **{n: "technology" for n in ("TECH_SCHEMA", "TECH_DIR", "load_technology")}}


def __getattr__(name: str) -> Any:
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    home = f"wxy_hw.hardware.{_MOVED[name]}"
    warn_deprecated(f"wxy_hw.hardware.chip.{name}", f"{home}.{name}", stacklevel=3)
    return getattr(importlib.import_module(home), name)
