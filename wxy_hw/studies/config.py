"""Study settings as typed config objects, written into every run directory as ``config.toml``.

A config file is data: it is read with ``tomllib`` and written by the small writer below; no
value in it is ever evaluated. The field names are the CLI's option names (``--t-inference`` →
``t_inference``), so ``--config RUN/config.toml`` sets a study's defaults and flags given on the
command line override them.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from ..hardware.chip import Chip, ChipConfig
from ..hardware.montecarlo import CHIP_IDS_PER_SEED
from ..hardware.spec import load_device
from ..utils import atomic_write_text, warn_deprecated

C = TypeVar("C", bound="StudyConfig")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


class ConfigFileError(ValueError):
    """A config file that cannot be read, or that names settings the command does not have."""


class SettingError(ValueError):
    """A study setting out of range, named by its field (``chips``); the CLI names the flag (``--chips``) instead."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.field, self.problem = field, problem

    def __reduce__(self) -> tuple[Any, ...]:  # pickled whole (Ray tasks send errors back to the caller)
        return type(self), (self.field, self.problem)


def check_chips_per_seed(field: str, chips: int | None, offset: int = 0) -> None:
    """Refuse more chips than one seed's block of chip ids holds (``hardware.chip_ids``: seed·1000 + offset + i)."""
    limit = CHIP_IDS_PER_SEED - offset
    if chips is not None and chips > limit:
        ids = f"seed·{CHIP_IDS_PER_SEED}" + (f" + {offset}" if offset else "") + " + i"
        raise SettingError(field, f"at most {limit} chips per seed (chip ids are {ids}), got {chips}")


def _key(k: str) -> str:
    return k if _BARE_KEY.match(k) else json.dumps(k, ensure_ascii=False)


def _value(v: Any, where: str) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, (str, Path)):
        return json.dumps(str(v), ensure_ascii=False)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):  # None inside a list (a float bit width) is written as "none"
        return "[" + ", ".join(_value("none" if x is None else x, where) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(str(k))} = {_value(x, where)}" for k, x in v.items() if x is not None) + "}"
    raise TypeError(f"{where}: cannot write a {type(v).__name__} into a config file")


def toml_value(value: Any) -> str:
    """One value as a config file spells it (for messages about a value read from one)."""
    try:
        return _value(value, "value")
    except TypeError:  # a TOML date or time: no setting takes one
        return str(value)


def to_toml(values: dict[str, Any], header: str = "") -> str:
    """A flat TOML document (dicts as inline tables); None values are left out, noted as comments."""
    lines = [f"# {line}" for line in header.splitlines()]
    for k, v in values.items():
        lines.append(f"# {k}: unset (the default)" if v is None else f"{_key(k)} = {_value(v, k)}")
    return "\n".join(lines) + "\n"


def read_toml(path: str | Path) -> dict[str, Any]:
    """The settings in a config file; one clear error for a missing or malformed file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigFileError(f"--config {path}: no such file") from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"--config {path}: not a readable TOML file ({exc})") from None


@dataclasses.dataclass
class StudyConfig:
    """Base of every study's settings; subclasses are plain dataclasses whose fields are the settings."""

    KIND: ClassVar[str] = "study"
    RENAMED: ClassVar[dict[str, str]] = {}  # old keyword → field (accepted, with a warning, until utils.REMOVED_IN)

    @classmethod
    def make(cls: type[C], config: C | None = None, **settings: Any) -> C:
        """``config`` as given, or one built from keyword settings (old keyword names accepted, with a
        DeprecationWarning naming the release that removes them)."""
        if config is not None:
            if settings:
                raise TypeError(f"give either a {cls.__name__} or keyword settings, not both")
            return config
        budget = settings.pop("budget", None)  # the former ``budget={"epochs": .., "subset": ..}`` keyword
        if budget is not None:
            warn_deprecated(f"keyword budget= ({cls.__name__})", "train_epochs=, train_subset=, train_width=, ...",
                            stacklevel=4)  # the caller of the study function that called make
        for key, value in (budget or {}).items():
            settings.setdefault(f"train_{key}", value)
        for old, new in cls.RENAMED.items():
            if old in settings:
                warn_deprecated(f"keyword {old}= ({cls.__name__})", f"{new}=", stacklevel=4)
                settings.setdefault(new, settings.pop(old))
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(settings) - names)
        if unknown:
            raise TypeError(f"{cls.__name__}: unknown setting(s) {', '.join(unknown)}")
        return cls(**settings)

    def settings(self) -> dict[str, Any]:
        """Field → value, in field order."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def to_toml(self) -> str:
        """The config file text."""
        return to_toml(self.settings(), f"wxy_hw {self.KIND} settings; rerun with --config this-file --out NEW_DIR")

    def write(self, run_dir: str | Path) -> Path:
        """Write ``<run_dir>/config.toml`` (atomically)."""
        return self.write_to(Path(run_dir) / "config.toml")

    def write_to(self, path: str | Path) -> Path:
        """Write the config file at ``path`` (atomically; its folder made if needed)."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return atomic_write_text(Path(path), self.to_toml())


@dataclasses.dataclass
class EvaluationSettings(StudyConfig):
    """The settings every evaluation study shares: data directory, the cached default models' budget, seed,
    torch device (the CLI's add_study_args)."""

    data_dir: str | None = None
    train_epochs: int | None = None
    train_subset: int | None = None
    train_width: float | None = None
    train_stem_stride: int | None = None
    train_exit_stages: list[int] | None = None
    retrain: bool = False  # train the default models afresh (neither runs/cache nor the zoo)
    seed: int = 0
    torch_device: str = "auto"

    def settings(self) -> dict[str, Any]:
        """Field → value: the study's own settings first, then the shared ones."""
        values = super().settings()
        shared = [k for k in ("dataset", "data_dir", "train_epochs", "train_subset", "train_width", "train_stem_stride",
                              "train_exit_stages", "retrain", "seed", "torch_device") if k in values]
        return {**{k: v for k, v in values.items() if k not in shared}, **{k: values[k] for k in shared}}

    @property
    def budget(self) -> dict[str, Any]:
        """The train_* settings: overrides of the cached default models' budget and architecture."""
        return {k: v for k, v in (("epochs", self.train_epochs), ("subset", self.train_subset), ("width", self.train_width),
                                  ("stem_stride", self.train_stem_stride), ("exit_stages", self.train_exit_stages),
                                  ("retrain", self.retrain or None))
                if v is not None}


# what picks or trains a study's default models: with --checkpoints given there is nothing for it to act on
DEFAULT_MODEL_FIELDS = ("methods", "method", "train_epochs", "train_subset", "train_width", "train_stem_stride",
                        "train_exit_stages", "retrain")


def check_given_checkpoints(conf: StudyConfig) -> None:
    """Refuse (one line) a setting that chooses or trains the default models beside given checkpoints, which the
    study would otherwise ignore without a word."""
    if not getattr(conf, "checkpoints", None):
        return
    for f in dataclasses.fields(conf):
        if f.name not in DEFAULT_MODEL_FIELDS:
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if getattr(conf, f.name) != default:
            raise SettingError(f.name, "chooses or trains the default models, and with --checkpoints the given files "
                                       "are measured instead: drop one of them")


@dataclasses.dataclass
class DatasetSettings(EvaluationSettings):
    """EvaluationSettings plus --dataset (the one a given checkpoint must have been trained on)."""

    dataset: str = "fashion_mnist"


# the architecture settings every study that prices a chip shares (one vocabulary: the CLI's add_chip_args)
CHIP_FIELDS = ("rows", "cols", "adc_bits", "dac_bits", "bits_per_cell", "weight_bits", "act_bits", "ranging",
               "input_activity", "adc_type")


@dataclasses.dataclass
class ChipSettings:
    """The one chip a study deploys (accuracy) and prices (energy): the device (a name or a .toml path), its
    ``--device-set`` values, and the periphery. A field left None takes the study's ``CHIP_DEFAULTS``, then
    ``ChipConfig``'s; arrays are square unless ``cols`` is given. The same fields are the CLI's flags."""

    CHIP_DEFAULTS: ClassVar[dict[str, Any]] = {}

    device: str | None = "reram"  # None only where a study allows it (calibrator_adapt: no chip instances)
    device_set: dict[str, Any] = dataclasses.field(default_factory=dict)
    rows: int | None = None
    cols: int | None = None
    adc_bits: int | None = None
    dac_bits: int | None = None
    bits_per_cell: int | None = None
    weight_bits: int | None = None
    act_bits: int | None = None
    ranging: str | None = None
    input_activity: float | None = None
    adc_type: str | None = None  # None: ChipConfig's (sar)

    def periphery(self) -> dict[str, Any]:
        """The architecture settings that are set (or defaulted by the study), as ChipConfig keywords."""
        out = {**self.CHIP_DEFAULTS, **{k: getattr(self, k) for k in CHIP_FIELDS if getattr(self, k) is not None}}
        if out.get("rows") is not None and self.cols is None:
            out["cols"] = out["rows"]
        return out

    def chip(self, device: str | None = None, **fixed: Any) -> Chip:
        """The resolved chip: ``device`` (default: this config's) with ``--device-set`` applied and the periphery;
        ``fixed`` settings win over the config's (a study's sweep of bit widths)."""
        name = device or self.device
        if name is None:
            raise SettingError("device", "is needed: name the chip's device (a name or a .toml path)")
        cells = load_device(name, self.device_set)
        return ChipConfig(device=cells, **{**self.periphery(), **fixed}).resolve()


# settings whose values are files or folders a study reads: --overwrite never clears a directory holding one
INPUT_SETTINGS = ("checkpoints", "qat_checkpoints", "teacher", "init", "config", "data_dir", "device")


def input_paths(settings: Any) -> list[Path]:
    """The paths a study reads among the values of ``settings`` (a study config, or a command's parsed flags):
    checkpoints, config file, teacher, data folder, a device given as a .toml file."""
    found: list[Path] = []
    for name in INPUT_SETTINGS:
        value = getattr(settings, name, None)
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(v, (str, Path)) and str(v) and (name != "device" or str(v).endswith(".toml")):
                found.append(Path(v))
    return found
