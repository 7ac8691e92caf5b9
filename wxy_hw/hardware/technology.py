"""Technology files: the CMOS node a chip's periphery is built in (supply, clock, converter and adder
energies, areas), one validated ``[technology]`` table per file, each value with its source."""
from __future__ import annotations

import math
import tomllib
from pathlib import Path

from .spec import DeviceSpecError, _plain, shipped_dir

TECH_DIR = shipped_dir() / "technology"
# key -> (lowest allowed, highest allowed or None): every key required, each a number with a source
# Every value has a lower and an upper bound (a technology file is data from anyone: 1e300 must not price a chip).
# The ceilings sit far outside any published CMOS node (14-180 nm) yet below absurd: supply <= 5 V (thick-oxide
# I/O), clock <= 10 GHz, areas per device <= 1e4 F^2 (a cell or transistor larger than 100 F x 100 F is no
# crossbar), energy per converter decision <= 1e5 fJ (NeuroSim's 130 nm SAR fit: ~0.1 pJ), energies of one add, SRAM
# bit or wire millimetre <= 1e3 pJ (45 nm: 0.03-10 pJ, Horowitz ISSCC 2014), capacitances per um <= 100 fF,
# transistor counts per block <= 1e6, leakage per array <= 1e6 uW (1 W).
TECH_SCHEMA: dict[str, tuple[float, float]] = {
    "node_nm": (1.0, 1000.0), "vdd": (0.1, 5.0), "clock_GHz": (1e-3, 10.0),
    "transistor_area_F2": (1.0, 1e4), "cell_area_F2": (1.0, 1e4), "adc_cycle_a_fJ": (0.0, 1e4),
    "adc_cycle_b_fJ": (0.0, 1e5),
    "sar_transistors_base": (1.0, 1e6), "sar_transistors_per_bit": (0.0, 1e6),
    "wire_cap_fF_per_um": (1e-3, 100.0), "gate_cap_fF_per_um": (0.0, 100.0), "access_width_F": (1.0, 100.0),
    "add16_pJ": (0.0, 1e3), "adder_transistors": (1.0, 1e6),
    "driver_transistors": (1.0, 1e6), "sram_bit_pJ": (0.0, 1e3), "sram_bit_area_um2": (1e-3, 1e3),
    "wire_pJ_per_bit_mm": (0.0, 1e3), "leakage_uW_per_array": (0.0, 1e6),
}


def load_technology(name: str | Path = "cmos22") -> dict[str, float]:
    """Values of a technology file (name in devices/technology, or a path), validated like a device file."""
    path = Path(name)
    if not path.suffix:
        path = TECH_DIR / f"{name}.toml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in TECH_DIR.glob("*.toml")))
        raise DeviceSpecError(f"technology {str(name)!r} not found ({path}); known: {known}, or a .toml path")
    try:
        doc = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DeviceSpecError(f"{path}: not valid TOML ({exc})") from exc
    if set(doc) != {"technology"}:
        raise DeviceSpecError(f"{path}: expected exactly one section [technology], got {sorted(doc)}")
    values: dict[str, float] = {}
    for key, raw in doc["technology"].items():
        if key == "source":
            continue
        if key not in TECH_SCHEMA:
            raise DeviceSpecError(f"{path}: unknown key technology.{key}; accepted: {', '.join(TECH_SCHEMA)}, source")
        value = _plain(raw, f"technology.{key}", str(path), {})
        lo, hi = TECH_SCHEMA[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not lo <= value <= hi:
            raise DeviceSpecError(f"{path}: technology.{key} = {value!r}; expected a number from {lo:g} to {hi:g} "
                                  "(the bounds and their reasons: TECH_SCHEMA in wxy_hw/hardware/technology.py)")
        values[key] = float(value)
    missing = [k for k in TECH_SCHEMA if k not in values]
    if missing:
        raise DeviceSpecError(f"{path}: missing key technology.{missing[0]} (required: {', '.join(TECH_SCHEMA)})")
    return values


# switching energies (C·V²) of the periphery; leakage power goes as V (first order: I_leak held, P = I·V)
SUPPLY_SQUARED = ("adc_cycle_a_fJ", "adc_cycle_b_fJ", "add16_pJ", "sram_bit_pJ", "wire_pJ_per_bit_mm")


def at_supply(tech: dict[str, float], vdd: float | None) -> dict[str, float]:
    """The technology's values with its periphery run at ``vdd`` volts (None: as the file says).

    Every switching energy of the file is C·V² at the file's supply, so it scales by (vdd / file vdd)²;
    leakage power by vdd / file vdd. Capacitances, areas and the clock stay as they are (first order: a
    lower supply slows gates, which this model does not track)."""
    if vdd is None or vdd == tech["vdd"]:
        return tech
    v = vdd / tech["vdd"]
    out = dict(tech, vdd=float(vdd), file_vdd=tech["vdd"])
    for key in SUPPLY_SQUARED:
        out[key] = tech[key] * v * v
    out["leakage_uW_per_array"] = tech["leakage_uW_per_array"] * v
    return out
