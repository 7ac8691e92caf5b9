"""Device specifications: TOML files in devices/ parsed into a validated ``DeviceSpec``.

A device is data, not code. Each value in a file is either plain (covered by its section's
``source``) or ``{ value = ..., source = "..." }``. A malformed file stops with one message
naming the file, the key and what was expected.
"""
from __future__ import annotations

import copy
import hashlib
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from ..utils import data_dir

K_BOLTZMANN = 1.380649e-23
Q_ELECTRON = 1.602176634e-19

PROGRAMMING_MODELS = ("none", "wan2022", "pcm_poly", "relative")
DRIFT_MODELS = ("none", "wan2022_relaxation", "pcm_power_law")
TECHNOLOGIES = ("reram", "pcm", "subthreshold_cmos", "digital", "ideal", "custom")
AIHWKIT_MODELS = ("none", "ReRamWan2022NoiseModel", "PCMLikeNoiseModel", "SubthresholdMismatchNoiseModel")

MAX_LEVELS = 256            # conductance levels per cell: 8 bits, the most bits_per_cell a chip may ask for
CONVERTER_BITS = (2, 16)    # one rule for ADC / DAC bits in device files and chip configurations
# periphery energies moved to the technology file and the chip configuration (wxy_hw/hardware/chip.py)
REMOVED = {"energy.adc_pJ", "energy.dac_pJ", "energy.digital_op_pJ"}

# section -> key -> (type, default or REQUIRED, check, description of what is expected)
REQUIRED = object()


def _range(lo: float | None = None, hi: float | None = None, lo_open: bool = False):
    def check(v: float) -> bool:
        if lo is not None and (v <= lo if lo_open else v < lo):
            return False
        return hi is None or v <= hi
    text = f"{'>' if lo_open else '>='} {lo:g}" if lo is not None else ""
    if hi is not None:
        text = f"{text} and <= {hi:g}" if text else f"<= {hi:g}"
    return check, f"a number {text}".strip()


def _choice(options: tuple[str, ...]):
    return (lambda v: v in options), "one of " + ", ".join(repr(o) for o in options)


_ANY = ((lambda v: True), "")
_FRACTION = _range(0.0, 1.0)


def _plain_name(v: str) -> bool:
    """A device name is a run directory's name (runs/<study>/<name>_<time>): no separator, no '..', no blank."""
    return bool(v.strip()) and v == v.strip() and not any(c in v for c in ("/", "\\", "\0")) and ".." not in v


MAX_ARRAY = 4096  # crossbar rows / cols: the chip flags (--rows, --cols) use the same ceiling

# Every physical value has a lower and an upper bound. The bounds are deliberately generous (a few
# times past anything published) so that they only stop typos and unit mix-ups (rows = 1e15,
# g_max_uS = 1e300, read_noise = 1e6), never a real device:
#   rows, cols ≤ 4096            published CIM macros stop at 1024-2048 rows (NeuRRAM 256, HERMES 256,
#                                 ISSCC SRAM/ReRAM macros ≤ 1024); IR drop makes longer lines useless
#   g_max_uS ≤ 1e4 µS (10 mS)    ReRAM / PCM cells conduct ≤ ~200 µS; 10 mS is a 100 Ω cell
#   on_off_ratio ≤ 1e6           ReRAM 10-100, PCM ~100-1000, flash / CMOS ≤ 1e5
#   clip_sigma ≤ 100             clipping is used at 2.5-4 σ; past ~|W|max/σ it clips nothing
#   programming_scale ≤ 100      a multiplier of the model's measured noise (studies sweep 0-3 ×)
#   read_noise, additive_sigma ≤ 1   σ in units of the full weight range |W|max: at 1 the read is all noise
#                                 (measured: ~1 % ReRAM, Wan et al. 2022; PCM a few %, Joshi et al. 2020)
#   lognormal_sigma ≤ 5          σ of ln(weight): 5 is a factor e^5 ≈ 150 (subthreshold mismatch ~0.1)
#   drift_nu_mean ≤ 1            PCM ν 0.005-0.1 (Joshi et al. 2020); ν = 1 would be G ∝ 1/t
#   t0_s ≤ 1e6 s, t_read_s ≤ 1 s   drift reference time (aihwkit 20 s) and read pulse (aihwkit 250 ns)
#   max_time_s ≤ 3.2e9 s         100 years; retention is specified at 10 years (3.2e8 s)
#   a_vt_mV_um ≤ 100             Pelgrom A_VT: 1-5 mV·µm in modern nodes, ~30 in 1 µm-era CMOS
#   width_um, length_um ≤ 1000   a transistor, not a die
#   slope_factor 1-5             subthreshold n is 1.0-2.0 (Enz-Krummenacher-Vittoz)
#   cell_read_fJ ≤ 1e4 fJ        ReRAM / PCM 1-100 fJ per cell read; a digital int8 MAC ~0.1 pJ
#   read_voltage_V ≤ 5 V         crossbars read at 0.1-0.5 V; 5 V is past any CMOS supply
#   read_pulse_ns ≤ 1e6 ns       as mvm_latency_ns (0: the pulse lasts the MVM's read, mvm_latency_ns)
#   leakage_uW ≤ 1e6 µW (1 W)    a whole accelerator's static power is at most watts
#   mvm_latency_ns ≤ 1e6 ns      PCM / ReRAM MVMs take 10 ns-1 µs (HERMES 130 ns); 1 ms is a typo
# section -> key -> (the value's type, its default or REQUIRED, (a check on the value, what the check expects))
SCHEMA: dict[str, dict[str, tuple[type, Any, tuple[Callable[[Any], bool], str]]]] = {
    "device": {
        "name": (str, REQUIRED, (_plain_name, "a plain name without '/', '\\' or '..' (it names the run directory)")),
        "technology": (str, REQUIRED, _choice(TECHNOLOGIES)),
        "description": (str, "", _ANY),
    },
    "mapping": {
        "g_max_uS": (float, REQUIRED, _range(0.0, 1e4, lo_open=True)),
        "on_off_ratio": (float, 10.0, _range(1.0, 1e6, lo_open=True)),
        "levels": (int, 0, ((lambda v: v == 0 or 2 <= v <= MAX_LEVELS),
                            f"0 (continuous) or an integer from 2 to {MAX_LEVELS} (8 bits per cell)")),
        "cells_per_weight": (int, 1, _range(1, 16)),
        # 0: each weight is programmed as one value on its cells (``levels`` ** ``cells_per_weight`` steps);
        # b ≥ 2: quantised per tile to signed b-bit integers, bit-sliced onto ⌊log2 levels⌋-bit cells
        "weight_bits": (int, 0, ((lambda v: v == 0 or 2 <= v <= 16), "0 (not bit-sliced) or an integer from 2 to 16")),
        "differential": (bool, True, _ANY),
        "clip_sigma": (float, 0.0, _range(0.0, 100.0)),
    },
    "noise": {
        "programming": (str, REQUIRED, _choice(PROGRAMMING_MODELS)),
        "programming_scale": (float, 1.0, _range(0.0, 100.0)),
        "read_noise": (float, 0.0, _range(0.0, 1.0)),
        "additive_sigma": (float, 0.0, _range(0.0, 1.0)),
        "lognormal_sigma": (float, 0.0, _range(0.0, 5.0)),
        "drift": (str, REQUIRED, _choice(DRIFT_MODELS)),
        "drift_nu_mean": (float, 0.05, _range(0.0, 1.0)),
        "drift_compensation": (bool, False, _ANY),
        "t0_s": (float, 20.0, _range(0.0, 1e6, lo_open=True)),
        "t_read_s": (float, 2.5e-7, _range(0.0, 1.0, lo_open=True)),
        "max_time_s": (float, 3.2e8, _range(0.0, 3.2e9, lo_open=True)),
        "stuck_at_lrs": (float, 0.0, _FRACTION),
        "stuck_at_hrs": (float, 0.0, _FRACTION),
    },
    "subthreshold": {
        "a_vt_mV_um": (float, REQUIRED, _range(0.0, 100.0, lo_open=True)),
        "width_um": (float, REQUIRED, _range(0.0, 1000.0, lo_open=True)),
        "length_um": (float, REQUIRED, _range(0.0, 1000.0, lo_open=True)),
        "slope_factor": (float, 1.5, _range(1.0, 5.0)),
        "temperature_K": (float, 300.0, _range(1.0, 1000.0)),
    },
    "ir_drop": {
        "beta": (float, 0.0, _range(0.0, 1.0)),
    },
    "array": {
        "rows": (int, 256, _range(1, MAX_ARRAY)),
        "cols": (int, 256, _range(1, MAX_ARRAY)),
        "adc_bits": (int, 0, ((lambda v: v == 0 or CONVERTER_BITS[0] <= v <= CONVERTER_BITS[1]),
                              "0 (ideal) or an integer from {} to {}".format(*CONVERTER_BITS))),
        "dac_bits": (int, 0, ((lambda v: v == 0 or CONVERTER_BITS[0] <= v <= CONVERTER_BITS[1]),
                              "0 (ideal) or an integer from {} to {}".format(*CONVERTER_BITS))),
        "ranging": (str, "fixed", _choice(("fixed", "per_sample"))),
        # rows driven at once (NeuroSim's parallelRead): each group's partial sum is digitised on its own; 0 = all
        "parallel_rows": (int, 0, _range(0, MAX_ARRAY)),
    },
    "energy": {
        # an analog cell's read is V_read^2 * g_max * t_pulse (read_voltage_V > 0); cell_read_fJ gives it directly
        # instead (a digital file's MAC energy). 0 = not given; exactly one of the two is required
        "cell_read_fJ": (float, 0.0, _range(0.0, 1e4)),
        "read_voltage_V": (float, 0.0, _range(0.0, 5.0)),
        "read_pulse_ns": (float, 0.0, _range(0.0, 1e6)),
        "leakage_uW": (float, 0.0, _range(0.0, 1e6)),
        "mvm_latency_ns": (float, 10.0, _range(0.0, 1e6, lo_open=True)),
    },
    "aihwkit": {
        "noise_model": (str, "none", _choice(AIHWKIT_MODELS)),
    },
}
REQUIRED_SECTIONS = ("device", "mapping", "noise", "array", "energy")


# aihwkit's ReRamWan2022NoiseModel has measured data at these times only (the native engine interpolates)
WAN2022_TIMES_S = (1.0, 86400.0, 172800.0)
NOMINAL_DRIFT_TIME_S = 86400.0  # one day after programming: the studies' default for drifting devices
BACKENDS = ("native", "aihwkit")


class DeviceSpecError(ValueError):
    """A device file is missing, malformed, or has an invalid value."""


@dataclass
class DeviceSpec:
    """A validated device: ``spec.section["key"]`` style access through typed sections."""

    name: str
    path: str
    sections: dict[str, dict[str, Any]]
    sources: dict[str, str] = field(default_factory=dict)
    sha256: str = ""

    def __getattr__(self, section: str) -> dict[str, Any]:
        try:
            return self.__dict__["sections"][section]
        except KeyError:
            raise AttributeError(section) from None

    @property
    def lognormal_sigma(self) -> float:
        """Multiplicative log-normal weight noise σ (from [subthreshold] through Pelgrom when present)."""
        if "subthreshold" in self.sections:
            s = self.sections["subthreshold"]
            sigma_vt_mV = s["a_vt_mV_um"] / math.sqrt(s["width_um"] * s["length_um"])
            u_t_mV = 1e3 * K_BOLTZMANN * s["temperature_K"] / Q_ELECTRON
            return sigma_vt_mV / (s["slope_factor"] * u_t_mV)
        return self.sections["noise"]["lognormal_sigma"]

    @property
    def read_pulse_ns(self) -> float:
        """How long a cell conducts per unit input pulse: energy.read_pulse_ns, else the MVM read (mvm_latency_ns)."""
        return self.energy["read_pulse_ns"] or self.energy["mvm_latency_ns"]

    @property
    def cell_read_fJ(self) -> float:
        """Energy of one unit-pulse read of a cell at g_max, in fJ: V_read^2 * g_max * t_pulse from the file's read
        voltage, conductance and pulse; or the file's cell_read_fJ where it gives the energy itself."""
        e = self.energy
        if e["read_voltage_V"] > 0:
            return e["read_voltage_V"] ** 2 * self.mapping["g_max_uS"] * self.read_pulse_ns  # V^2 uS ns = fJ
        return e["cell_read_fJ"]

    @property
    def g_min_uS(self) -> float:
        """Lowest programmable conductance: g_max / on_off_ratio."""
        return self.mapping["g_max_uS"] / self.mapping["on_off_ratio"]

    @property
    def has_drift(self) -> bool:
        """Whether accuracy depends on the inference time."""
        return self.noise["drift"] != "none"

    @property
    def nominal_time_s(self) -> float:
        """The inference time a study uses unless told otherwise: one day for a drifting device (or its model's
        limit, if shorter), else 1 s."""
        return float(min(NOMINAL_DRIFT_TIME_S, self.noise["max_time_s"]) if self.has_drift else 1.0)

    def check_time(self, t_inference: float) -> float:
        """``t_inference`` as a float; refuses a time the device model has no data for."""
        if not t_inference >= 0:  # also refuses NaN
            raise DeviceSpecError(f"t_inference must be ≥ 0 s, got {t_inference}")
        if self.has_drift and t_inference > self.noise["max_time_s"]:
            raise DeviceSpecError(f"device {self.name!r}: its drift model covers up to {self.noise['max_time_s']:g} s "
                                  f"(noise.max_time_s), asked for t_inference = {t_inference:g} s")
        return float(t_inference)

    def inference_time(self, t_inference: float | None = None, backend: str = "native") -> float:
        """The given time (else ``nominal_time_s``), checked against the device model and the backend."""
        return self.backend_time(backend, self.nominal_time_s if t_inference is None else t_inference)

    def backend_time(self, backend: str, t_inference: float) -> float:
        """``t_inference`` if ``backend`` can express this device at that time; refuses it otherwise.

        The native engine covers the device model's whole range; aihwkit's ReRamWan2022NoiseModel
        only has data at 1 s, 1 day and 2 days."""
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose {' or '.join(BACKENDS)}")
        t = self.check_time(t_inference)
        if backend == "aihwkit" and self.aihwkit["noise_model"] == "ReRamWan2022NoiseModel" and t not in WAN2022_TIMES_S:
            allowed = ", ".join(f"{x:g} s" for x in WAN2022_TIMES_S)
            raise DeviceSpecError(f"aihwkit's ReRamWan2022NoiseModel only has data at t_inference ∈ {{{allowed}}}; "
                                  f"got {t:g} s. Use one of those, or --backend native (which interpolates "
                                  "in log-time between them)")
        return t

    def times(self, wanted: Sequence[float], backend: str = "native") -> list[float]:
        """The requested times the device model covers (and, for aihwkit's ReRAM, the times it has data for)."""
        limit = self.noise["max_time_s"]
        times = [t for t in wanted if t <= limit]
        if limit < max(wanted) and limit not in times:
            times.append(limit)
        if backend == "aihwkit" and self.aihwkit["noise_model"] == "ReRamWan2022NoiseModel":
            times = [t for t in times if t in WAN2022_TIMES_S] or list(WAN2022_TIMES_S)
        return sorted(times)

    @property
    def is_digital(self) -> bool:
        """A digital (or ideal) chip: no converters, no cells, no analog effects."""
        return self.device["technology"] in ("digital", "ideal")

    def with_overrides(self, overrides: dict[str, Any]) -> DeviceSpec:
        """A copy with ``{"section.key": value}`` changes, validated like a file."""
        raw = copy.deepcopy(self.sections)
        for dotted, value in overrides.items():
            if "." not in dotted:
                raise DeviceSpecError(f"device override {dotted!r}: expected SECTION.KEY=VALUE, e.g. noise.read_noise=0.02")
            section, key = dotted.split(".", 1)
            raw.setdefault(section, {})[key] = value
        # a cell's read energy has one source: setting one of its two forms replaces the other
        for given, other in (("energy.cell_read_fJ", "read_voltage_V"), ("energy.read_voltage_V", "cell_read_fJ")):
            if given in overrides and f"energy.{other}" not in overrides:
                raw["energy"][other] = 0.0
        spec = parse_device(raw, f"{self.path} (with overrides {overrides})")
        spec.sources = dict(self.sources)
        spec.sha256 = self.sha256
        return spec

    def summary(self) -> dict[str, Any]:
        """Plain dict for manifests."""
        return {"name": self.name, "path": self.path, "sha256": self.sha256, **self.sections}


def _plain(value: Any, where: str, file: str, sources: dict[str, str]) -> Any:
    if isinstance(value, dict):
        if set(value) - {"value", "source"} or "value" not in value:
            raise DeviceSpecError(f"{file}: {where} must be a value or {{ value = ..., source = \"...\" }}, "
                                  f"got keys {sorted(value)}")
        if "source" in value:
            sources[where] = str(value["source"])
        return value["value"]
    return value


def parse_device(raw: dict[str, Any], file: str = "<device>") -> DeviceSpec:
    """Validate a parsed TOML document against SCHEMA and fill defaults."""
    sources: dict[str, str] = {}
    unknown = sorted(set(raw) - set(SCHEMA))
    if unknown:
        raise DeviceSpecError(f"{file}: unknown section [{unknown[0]}]; allowed sections: {', '.join(SCHEMA)}")
    for section in REQUIRED_SECTIONS:
        if section not in raw:
            raise DeviceSpecError(f"{file}: missing section [{section}] (required: {', '.join(REQUIRED_SECTIONS)})")
    sections: dict[str, dict[str, Any]] = {}
    for section, table in raw.items():
        if not isinstance(table, dict):
            raise DeviceSpecError(f"{file}: [{section}] must be a table")
        schema = SCHEMA[section]
        out: dict[str, Any] = {}
        for key, value in table.items():
            where = f"{section}.{key}"
            if key == "source":
                sources[section] = str(value)
                continue
            if where in REMOVED:
                raise DeviceSpecError(f"{file}: {where} is no longer read: converter, driver and digital energies "
                                      "come from the technology file (devices/technology) and the chip "
                                      "configuration; delete the key")
            if key not in schema:
                raise DeviceSpecError(f"{file}: unknown key {where}; [{section}] accepts: {', '.join(schema)}, source")
            typ, _, (check, expected) = schema[key]
            value = _plain(value, where, file, sources)
            if typ is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
                raise DeviceSpecError(f"{file}: {where} = {value!r} has type {type(value).__name__}; "
                                      f"expected {typ.__name__}{' (' + expected + ')' if expected else ''}")
            if typ is float and isinstance(value, float) and not math.isfinite(value):  # isinstance: always true here
                raise DeviceSpecError(f"{file}: {where} = {value!r} is not finite")
            if not check(value):
                problem = "is out of range" if isinstance(value, (int, float)) else "is not accepted"
                raise DeviceSpecError(f"{file}: {where} = {value!r} {problem}; expected {expected}")
            out[key] = value
        for key, (_, default, _) in schema.items():
            if key not in out:
                if default is REQUIRED:
                    raise DeviceSpecError(f"{file}: missing key {section}.{key}")
                out[key] = default
        sections[section] = out
    for section, schema in SCHEMA.items():  # optional sections get their defaults
        if section not in sections and all(d is not REQUIRED for _, d, _ in schema.values()):
            sections[section] = {k: d for k, (_, d, _) in schema.items()}
    energy = sections["energy"]
    if (energy["cell_read_fJ"] > 0) == (energy["read_voltage_V"] > 0):
        raise DeviceSpecError(f"{file}: give exactly one of energy.read_voltage_V (a cell read is V^2 * g_max * pulse) "
                              "and energy.cell_read_fJ (the energy itself, e.g. a digital MAC)")
    if "subthreshold" in sections and sections["noise"]["lognormal_sigma"] != 0.0:
        raise DeviceSpecError(f"{file}: give either [subthreshold] (σ derived by Pelgrom) or noise.lognormal_sigma, not both")
    return DeviceSpec(sections["device"]["name"], file, sections, sources)


def devices_dir() -> Path:
    """Where named devices live: $WXY_DEVICES, else the shipped device files (shipped_dir())."""
    env = os.environ.get("WXY_DEVICES")
    return Path(env) if env else shipped_dir()


def shipped_dir() -> Path:
    """The device and technology files that come with wxy_hw; the one place that knows where they are.

    In a source checkout (an editable install, or run from the clone) they are the top-level ``devices/``
    beside ``wxy_hw/`` and ``pyproject.toml``. A wheel carries the same folder inside the package
    (pyproject.toml maps ``devices/`` to the package ``wxy_hw.devices``), so an installed copy finds them there.
    """
    return data_dir("devices")


def available_devices() -> list[str]:
    """Names of the device files in devices_dir() (the shipped ones, or $WXY_DEVICES's)."""
    return sorted(p.stem for p in devices_dir().glob("*.toml"))


class HasSpec(Protocol):
    """Anything that carries a device spec: a resolved ``hardware.chip.Chip``."""

    @property
    def spec(self) -> DeviceSpec: ...


# what every deploy / evaluate function accepts as "the device": a name, a .toml path, a spec, or a resolved Chip
DeviceLike = str | Path | DeviceSpec | HasSpec


def load_device(name_or_path: DeviceLike, overrides: dict[str, Any] | None = None) -> DeviceSpec:
    """Load a device by name (devices/<name>.toml), by path to a TOML file, or take a ``DeviceSpec`` or a resolved
    ``Chip`` (its spec: the cells with the chip's array size, converters and IR drop) as it is."""
    inner = getattr(name_or_path, "spec", None)  # a hardware.chip.Chip (not imported: chip.py sits above this module)
    if isinstance(inner, DeviceSpec):
        name_or_path = inner
    if isinstance(name_or_path, DeviceSpec):
        return name_or_path.with_overrides(overrides) if overrides else name_or_path
    if not isinstance(name_or_path, (str, os.PathLike)):  # an object whose .spec is no DeviceSpec
        raise TypeError(f"expected a device name, a .toml path, a DeviceSpec or a resolved Chip, not {type(name_or_path).__name__}")
    candidate = Path(name_or_path)
    # a path when it names a .toml or an existing file; else a name (a folder ./reram does not hide the device reram)
    path = candidate if candidate.suffix == ".toml" or candidate.is_file() else devices_dir() / f"{name_or_path}.toml"
    if path.is_dir() or (not path.is_file() and candidate.is_dir()):
        path = candidate if candidate.is_dir() else path
        raise DeviceSpecError(f"device {str(name_or_path)!r}: {path} is a folder, not a device file; give a device name "
                              f"({', '.join(available_devices())}) or the path of a .toml file")
    if not path.is_file():
        raise DeviceSpecError(f"unknown device {str(name_or_path)!r}: no file {path}. Named devices: "
                              f"{', '.join(available_devices())}; or pass the path of your own .toml file")
    data = path.read_bytes()
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DeviceSpecError(f"{path}: not valid TOML ({exc})") from exc
    spec = parse_device(raw, str(path))
    spec.sha256 = hashlib.sha256(data).hexdigest()
    return spec.with_overrides(overrides) if overrides else spec
