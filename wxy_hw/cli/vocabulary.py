"""The shared flag vocabulary of every study's command line: argument groups, argparse value types (each
checked when parsed), the deprecated spellings. The words:

  --device       the simulated hardware (a name from devices/ or $WXY_DEVICES, or a .toml path)
  --device-set   SECTION.KEY=VALUE changes to it   --rows --cols --adc-bits ...   the chip's periphery
  --torch-device where the simulation runs (auto, cpu, cuda, cuda:1)
  --chips N      chip instances          --checkpoints P [P ...]   given models
  --out DIR      the run directory       --seed S                  --dataset, --data-dir
  --config FILE  a run's config.toml (flags given on the command line override it)
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import math
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

from ..data import available_datasets
from ..hardware.chip import ADC_TYPES
from ..hardware.spec import MAX_ARRAY
from ..methods import available_methods
from ..models import HEADS, available_archs
from ..models.multi_exit import MAX_IMAGE_SIZE, MAX_WIDTH, MIN_IMAGE_SIZE
from ..studies.config import StudyConfig
from ..utils import MAX_SEED, deprecated


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and every option's default after its help (on/off flags: off)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.nargs == 0:  # a flag: "(default: True)" on --no-flat would read backwards
            return action.help
        return super()._get_help_string(action)


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose refusal is one line (the usage block it would print first is what --help is for)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (--help lists every flag)\n")


def new_parser(doc: str | None, prog: str) -> argparse.ArgumentParser:
    """An ArgumentParser with the shared help format, one-line refusals and ``--config FILE``."""
    parser = OneLineParser(prog=prog, description=doc, formatter_class=HelpFormatter)
    parser.add_argument("--config", type=Path, default=None, metavar="FILE",
                        help="read settings from a run's config.toml (flags given here override it)")
    return parser


class Deprecated(argparse.Action):
    """A hidden old spelling of an option: stores into the new one's dest and prints one deprecation line (which
    names the release that removes it, ``wxy_hw.utils.REMOVED_IN``)."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, new: str, wrap: bool = False, **kwargs: Any):
        self.new, self.wrap = new, wrap
        kwargs["help"] = argparse.SUPPRESS
        kwargs.setdefault("default", argparse.SUPPRESS)
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"warning: {deprecated(str(option_string), self.new)}", file=sys.stderr)
        setattr(namespace, self.dest, [values] if self.wrap else values)


class KeyValue(argparse.Action):
    """A repeatable KEY=VALUE option collected into one dict (values parsed as Python literals); a value without
    KEY= is refused as any bad flag is (exit status 2)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        merged = dict(getattr(namespace, self.dest, None) or {})
        try:
            merged.update(parse_method_args([values], option_string or "--method-arg"))
        except ValueError as exc:
            raise argparse.ArgumentError(None, str(exc)) from None  # argparse: one line, exit status 2
        setattr(namespace, self.dest, merged)


def defaults(cls: type[StudyConfig]) -> dict[str, Any]:
    """A config class's default values by field name (the CLI shows them in --help)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


# --- argparse types: every numeric flag is checked when parsed, before any work starts -------------
def _number(kind: Callable[[str], Any], what: str, ok: Callable[[Any], bool]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if (isinstance(value, float) and not math.isfinite(value)) or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    parse.__name__ = what  # argparse names the type in its messages
    return parse


positive_int = _number(int, "an integer ≥ 1", lambda v: v >= 1)


nonneg_int = _number(int, "an integer ≥ 0", lambda v: v >= 0)


# a seed must fit torch's and numpy's generators (64-bit); larger ones fail deep inside torch with its own words
seed_int = _number(int, "a seed from 0 to 2**63 - 1", lambda v: 0 <= v <= MAX_SEED)


positive_float = _number(float, "a finite number > 0", lambda v: v > 0)


nonneg_float = _number(float, "a finite number ≥ 0", lambda v: v >= 0)


fraction = _number(float, "a number strictly between 0 and 1", lambda v: 0 < v < 1)


activity = _number(float, "a number in (0, 1]", lambda v: 0 < v <= 1)


severity = _number(int, "a severity from 1 to 5", lambda v: 1 <= v <= 5)


exit_stage = _number(int, "a stage from 1 to 4", lambda v: 1 <= v <= 4)


# The calibrator is meant to be light-weight (default 8 channels, 1 block): 256 channels is already wider
# than the classifier it adapts at the default width (16-128 channels).
MAX_CALIBRATOR_WIDTH, MAX_CALIBRATOR_BLOCKS = 256, 16


width_multiplier = _number(float, f"a width multiplier > 0 and ≤ {MAX_WIDTH:g}", lambda v: 0 < v <= MAX_WIDTH)


image_size = _number(int, f"an image size from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}",
                     lambda v: MIN_IMAGE_SIZE <= v <= MAX_IMAGE_SIZE)


calibrator_width = _number(int, f"an integer from 1 to {MAX_CALIBRATOR_WIDTH}",
                           lambda v: 1 <= v <= MAX_CALIBRATOR_WIDTH)


calibrator_blocks = _number(int, f"an integer from 1 to {MAX_CALIBRATOR_BLOCKS}",
                            lambda v: 1 <= v <= MAX_CALIBRATOR_BLOCKS)


# crossbar rows / cols: the device files' ceiling (wxy_hw/hardware/spec.py says why)
array_size = _number(int, f"an integer from 2 to {MAX_ARRAY}", lambda v: 2 <= v <= MAX_ARRAY)


def torch_device(text: str) -> str:
    """A --torch-device torch can use here (auto, cpu, cuda, cuda:N), checked when parsed; kept as written."""
    from ..utils import resolve_device  # torch is imported by then; local so the import block stays short

    try:
        resolve_device(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


torch_device.__name__ = "a torch device (auto, cpu, cuda, cuda:N)"


def add_dataset_args(parser: argparse.ArgumentParser | argparse._ArgumentGroup, dataset: bool = True) -> None:
    """--dataset and --data-dir, the same words in every CLI."""
    if dataset:
        parser.add_argument("--dataset", default="fashion_mnist", choices=available_datasets(),
                            help="dataset (a given checkpoint must have been trained on it)")
    parser.add_argument("--data-dir", default=None,
                        help="directory holding the dataset files (else $WXY_DATA, then system locations)")


def add_data_args(parser: argparse.ArgumentParser) -> None:
    """--dataset, --data-dir, --subset, --val-fraction, --image-size, --channels."""
    g = parser.add_argument_group("data")
    add_dataset_args(g)
    g.add_argument("--subset", type=positive_int, default=None, help="use N training (and test) images, for fast runs")
    g.add_argument("--val-fraction", type=fraction, default=0.1, help="validation share carved from train")
    g.add_argument("--image-size", type=image_size, default=None,
                   help=f"28 or 32, at most {MAX_IMAGE_SIZE} (None: the dataset's own)")
    g.add_argument("--channels", type=int, default=None, choices=[1, 3], help="1 or 3 (None: the dataset's own)")


def add_study_args(parser: argparse.ArgumentParser, *, cached_models: bool = True, dataset: bool = True) -> None:
    """Flags every evaluation study shares: data, the cached default models' budget, output, seed, torch device."""
    g = parser.add_argument_group("data, cached default models, output")
    add_dataset_args(g, dataset)
    if cached_models:
        g.add_argument("--train-epochs", type=positive_int, default=None,
                       help="epochs of the cached default models (None: the default budget)")
        g.add_argument("--train-subset", type=positive_int, default=None,
                       help="training images of the cached default models (None: the default budget)")
        g.add_argument("--train-width", type=width_multiplier, default=None,
                       help="channel width multiplier of the cached default models (None: the default, 0.25); "
                            "each width is cached apart")
        g.add_argument("--train-stem-stride", type=int, choices=[1, 2], default=None,
                       help="ResNet stem stride of the cached default models (None: the default, 2, every stage at "
                            "half the input's resolution; 1 keeps it); each stride is cached apart")
        g.add_argument("--train-exit-stages", type=exit_stage, nargs="+",
                       default=None, metavar="STAGE",
                       help="stages (1-4, the deepest included) with an exit in the cached multi-exit models "
                            "(None: all four; single-exit methods keep their one exit); cached apart")
        g.add_argument("--retrain", action="store_true",
                       help="train the default models afresh, neither reusing runs/cache nor the shipped zoo")
    add_output_args(g)
    g.add_argument("--seed", type=seed_int, default=0, help="seed of every random choice (images, chips, training)")
    g.add_argument("--torch-device", type=torch_device, default="auto",
                   help="where the simulation runs: auto (CUDA if available), cpu, cuda, cuda:1 ...")
    g.add_argument("--quiet", dest="progress", action="store_false", help="no progress output")


def add_output_args(parser: argparse.ArgumentParser | argparse._ArgumentGroup, default: str = "runs/<study>/<time>") -> None:
    """--out and --overwrite."""
    parser.add_argument("--out", type=Path, default=None, help=f"run directory (None: {default})")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run already in --out (its outputs are cleared)")


def add_chips_arg(parser: argparse.ArgumentParser, default: int, help: str, old: str | None = "--realizations",
                  kind: Callable[[str], Any] | None = None) -> None:
    """--chips N (the number of chip instances), with the old spelling as a hidden alias."""
    kind = kind or positive_int
    parser.add_argument("--chips", type=kind, default=default, help=help)
    if old:
        parser.add_argument(old, dest="chips", type=kind, action=Deprecated, new="--chips")


def add_device_arg(parser: argparse.ArgumentParser, default: str | None, extra: str = "") -> None:
    """--device: the simulated hardware, a device name or a .toml path."""
    from ..hardware.spec import available_devices  # the names shipped with the package

    parser.add_argument("--device", default=default, help=f"simulated hardware: a device name "
                        f"({', '.join(available_devices())}) or a .toml path{extra}")


def add_models_args(parser: argparse.ArgumentParser, methods: list[str], checkpoints_help: str) -> None:
    """--methods (cached default models, trained when absent) and --checkpoints (given models instead)."""
    parser.add_argument("--methods", nargs="+", default=methods,
                        help="methods whose cached default checkpoints to use (trained when absent)")
    add_checkpoints_arg(parser, checkpoints_help)


def add_checkpoints_arg(parser: argparse.ArgumentParser, help: str, single_alias: bool = False) -> None:
    """--checkpoints P [P ...] (given models instead of the cached defaults); ``single_alias``: old --checkpoint P."""
    parser.add_argument("--checkpoints", nargs="+", default=None, metavar="BEST_PT", help=help)
    if single_alias:
        parser.add_argument("--checkpoint", dest="checkpoints", action=Deprecated, new="--checkpoints", wrap=True)


def add_train_args(parser: argparse.ArgumentParser) -> None:
    """Model, method and optimisation flags."""
    g = parser.add_argument_group("model and method")
    g.add_argument("--method", default="self_distillation",
                   help="one of " + ", ".join(available_methods()) + ", or a '+' composition (self_distillation+hwa)")
    g.add_argument("--method-arg", dest="method_options", action=KeyValue, default={}, metavar="KEY=VALUE",
                   help="method hyper-parameter, repeatable (e.g. --method-arg temperature=4)")
    g.add_argument("--teacher", default=None, help="teacher checkpoint (best.pt) for --method kd")
    g.add_argument("--init", default=None, metavar="CHECKPOINT",
                   help="start from this checkpoint's weights (the same model, dataset, subset and seed): e.g. "
                        "hardware-aware fine-tuning of a trained digital model with --method hwa")
    g.add_argument("--arch", default="resnet18", choices=available_archs(), help="backbone")
    g.add_argument("--width", type=width_multiplier, default=0.25,
                   help=f"channel width multiplier (1.0 = the paper's widths; at most {MAX_WIDTH:g})")
    g.add_argument("--heads", default=None, choices=sorted(HEADS),
                   help="shallow exit heads: byot (bottleneck), byot_light, scan (attention + bottleneck); "
                        "default: scan for --method scan, else byot")
    g.add_argument("--stem-stride", type=int, default=1, choices=[1, 2],
                   help="ResNet stem stride: 2 halves the resolution of every stage (about 4x fewer MACs)")
    g.add_argument("--exit-stages", type=exit_stage, nargs="+", default=None, metavar="STAGE",
                   help="stages (1-4) that get an exit, the deepest (4) included; e.g. 2 3 4 drops exit 1, whose "
                        "full-resolution head every early-exit sample pays (default: all four for multi-exit methods)")
    o = parser.add_argument_group("optimisation")
    o.add_argument("--epochs", type=positive_int, default=5, help="training epochs")
    o.add_argument("--batch-size", type=positive_int, default=128, help="images per step")
    o.add_argument("--lr", type=positive_float, default=0.1, help="peak learning rate")
    o.add_argument("--weight-decay", type=nonneg_float, default=5e-4, help="L2 weight decay")
    o.add_argument("--schedule", default="cosine", choices=["cosine", "step", "constant"], help="learning-rate schedule")
    o.add_argument("--no-augment", dest="augment", action="store_false", help="disable random crop / flip")
    o.add_argument("--seed", type=seed_int, default=0, help="seed of the data split, initialisation and batches")
    o.add_argument("--torch-device", type=torch_device, default="auto",
                   help="where training runs: auto (CUDA if available), cpu, cuda, cuda:1, ...")
    o.add_argument("--device", dest="torch_device", type=torch_device, action=Deprecated,
                   new="--torch-device (--device names the simulated hardware)")
    o.add_argument("--max-steps", dest="max_steps_per_epoch", type=positive_int, default=None,
                   help="cap on steps per epoch (smoke tests)")
    o.add_argument("--grad-norms-every", type=nonneg_int, default=0, metavar="N",
                   help="record per-layer gradient norms every N steps into grad_norms.csv (0: off)")
    o.add_argument("--quiet", dest="progress", action="store_false", help="no progress bars")


# what each KEY=VALUE flag's refusal offers as a value that works
_KEY_VALUE_EXAMPLES = {"--method-arg": ("KEY=VALUE", "temperature=4"),
                       "--device-set": ("SECTION.KEY=VALUE", "noise.stuck_at_hrs=0.02")}


def parse_method_args(items: list[str], flag: str = "--method-arg") -> dict[str, Any]:
    """["alpha=0.5", "preset=paper"] → {"alpha": 0.5, "preset": "paper"} (values parsed as Python literals); an
    item without KEY= is a one-line ValueError naming ``flag``."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item or not item.split("=", 1)[0].strip():
            form, example = _KEY_VALUE_EXAMPLES.get(flag, ("KEY=VALUE", "key=1"))
            raise ValueError(f"{flag} {item}: expected {form}; give e.g. {flag} {example}")
        key, raw = item.split("=", 1)
        try:
            value: Any = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = {"true": True, "false": False}.get(raw.lower(), raw)
        out[key.strip().replace("-", "_") if flag == "--method-arg" else key.strip()] = value
    return out


def add_parallel_args(parser: argparse.ArgumentParser, workers: int = 1, ray_address: str | None = None) -> None:
    """--workers N and --ray-address ADDR: a study's independent points as Ray tasks (wxy_hw.parallel)."""
    g = parser.add_argument_group("parallel")
    g.add_argument("--workers", type=positive_int, default=workers,
                   help="run independent points as Ray tasks on a local Ray instance with N CPUs (1: in this "
                        "process, Ray not imported)")
    g.add_argument("--ray-address", default=ray_address, metavar="ADDR",
                   help="join a running Ray cluster (e.g. 10.0.0.1:6379, or 'auto') instead of starting one")


def add_t_inference_arg(parser: argparse.ArgumentParser | argparse._ArgumentGroup, default: float | None,
                        what: str = "seconds since programming") -> None:
    """--t-inference T: when after programming the chips are read (None: the device file's nominal time)."""
    parser.add_argument("--t-inference", type=nonneg_float, default=default,
                        help=f"{what} (None: 1 day for drifting devices, else 1 s)")


def add_device_set_arg(parser: argparse.ArgumentParser | argparse._ArgumentGroup, default: dict[str, Any]) -> None:
    """--device-set SECTION.KEY=VALUE (repeatable): values of the device file changed for this run."""
    parser.add_argument("--device-set", dest="device_set", action=KeyValue, default=default, metavar="SECTION.KEY=VALUE",
                        help="override a device value, repeatable (e.g. --device-set noise.stuck_at_hrs=0.02); it "
                             "reaches both the accuracy run and the energy")


def add_chip_settings(parser: argparse.ArgumentParser, config: type, extra: str = "") -> None:
    """The flags of ``studies.config.ChipSettings``: --device, --device-set and the chip architecture, with
    the study's defaults (its CHIP_DEFAULTS say which a None leaves to the device file)."""
    d = defaults(config)
    add_device_arg(parser, d["device"], extra)
    add_device_set_arg(parser, d["device_set"])
    add_chip_args(parser, defaults=d, file_converters="adc_bits" in getattr(config, "CHIP_DEFAULTS", {}))


def add_chip_args(parser: argparse.ArgumentParser, *, sweep: bool = False, defaults: dict[str, Any] | None = None,
                  file_converters: bool = False) -> None:
    """--rows --cols --adc-bits --dac-bits --bits-per-cell --weight-bits --act-bits (+ --ranging, --input-activity).

    With ``sweep`` each takes a list (a chip study sweeps their product). None: the device file's
    array size and the ChipConfig defaults (wxy_hw/hardware/chip.py).
    """
    g = parser.add_argument_group("chip architecture (wxy_hw.hardware.ChipConfig; None: the device file's array)")
    many: dict[str, Any] = {"nargs": "+"} if sweep else {}
    d = defaults or {}
    g.add_argument("--rows", type=array_size, default=d.get("rows"), **many,
                   help="crossbar rows (None: the device file's)")
    g.add_argument("--cols", type=array_size, default=d.get("cols"), **many,
                   help="crossbar columns (None: = rows, else the device file's)")
    g.add_argument("--adc-bits", type=positive_int, default=d.get("adc_bits"), **many,
                   help="ADC resolution, 2-16 (None: " + ("the device file's converters; a file without them is "
                        "simulated with ideal converters, its energy priced with 8-bit ADCs)" if file_converters else "8)"))
    g.add_argument("--dac-bits", type=positive_int, default=d.get("dac_bits"), **many,
                   help="input bits per DAC cycle (None: 1, bit-serial)")
    g.add_argument("--bits-per-cell", type=positive_int, default=d.get("bits_per_cell"), **many,
                   help="weight bits per cell; this or --weight-bits given: weights bit-sliced in accuracy and cost "
                        "alike (None: what the device's levels hold). Both None: each weight is one value on the "
                        "device file's own cells, simulated and priced as such")
    g.add_argument("--weight-bits", type=positive_int, default=d.get("weight_bits"), **many,
                   help="bits of bit-sliced weights (None: 8 when sliced; the device's own cells hold ⌊log2 levels⌋ "
                        "and a sign bit)")
    g.add_argument("--act-bits", type=positive_int, default=d.get("act_bits"), **many,
                   help="input (activation) bits (None: 8)")
    g.add_argument("--ranging", default=d.get("ranging"), **many, choices=["fixed", "per_sample"],
                   help="converter ranges: fixed (calibrated once on training images) or per_sample (None: "
                        + ("the device file's)" if file_converters else "fixed)"))
    g.add_argument("--adc-type", default=d.get("adc_type"), choices=list(ADC_TYPES),
                   help="the converter circuit, which sets how its energy and time grow with bits: sar (bits + 1 "
                        "decisions), ramp (2^bits steps, integrate-and-fire), flash (2^bits - 1 comparators at once) "
                        "(None: sar)")
    g.add_argument("--input-activity", type=activity, default=d.get("input_activity"),
                   help="fix the input-bit activity (0-1] instead of measuring it on training images")
