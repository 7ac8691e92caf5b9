"""Argument groups and error handling shared by the experiment CLIs."""
from __future__ import annotations

import argparse
import os
import ast
import math
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from .checkpoint import CheckpointError
from .hardware.aihwkit_backend import AihwkitUnavailable
from .data import CorruptDatasetError, DatasetNotFoundError, available_datasets
from .methods import available_methods
from .models import HEADS, available_archs
from .results import run_dir_guard
from .train import NonFiniteLossError

USER_ERRORS = (ValueError, DatasetNotFoundError, CorruptDatasetError, CheckpointError, NonFiniteLossError,
               FileExistsError, FileNotFoundError, AihwkitUnavailable)


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
positive_float = _number(float, "a finite number > 0", lambda v: v > 0)
nonneg_float = _number(float, "a finite number ≥ 0", lambda v: v >= 0)
fraction = _number(float, "a number strictly between 0 and 1", lambda v: 0 < v < 1)
activity = _number(float, "a number in (0, 1]", lambda v: 0 < v <= 1)
severity = _number(int, "a severity from 1 to 5", lambda v: 1 <= v <= 5)


def add_data_args(parser: argparse.ArgumentParser) -> None:
    """--dataset, --data-dir, --subset, --val-fraction, --image-size, --channels."""
    g = parser.add_argument_group("data")
    g.add_argument("--dataset", default="fashion_mnist", choices=available_datasets())
    g.add_argument("--data-dir", type=Path, default=None,
                   help="directory holding the dataset files (else $WXY_DATA, then system locations)")
    g.add_argument("--subset", type=positive_int, default=None, help="use N training (and test) images, for fast runs")
    g.add_argument("--val-fraction", type=fraction, default=0.1, help="validation share carved from train (default 0.1)")
    g.add_argument("--image-size", type=_number(int, "an image size ≥ 8", lambda v: v >= 8), default=None,
                   help="28 or 32 (default: the dataset's own)")
    g.add_argument("--channels", type=int, default=None, choices=[1, 3], help="default: the dataset's own")


def add_study_args(parser: argparse.ArgumentParser, *, cached_models: bool = True, dataset: bool = True) -> None:
    """Flags every evaluation experiment shares: data, the cached default models' budget, output, seed, device."""
    g = parser.add_argument_group("data, cached default models, output")
    if dataset:
        g.add_argument("--dataset", default="fashion_mnist", choices=available_datasets())
    g.add_argument("--data-dir", type=Path, default=None,
                   help="directory holding the dataset files (else $WXY_DATA, then system locations)")
    if cached_models:
        g.add_argument("--train-epochs", type=positive_int, default=None, help="budget of the cached default models")
        g.add_argument("--train-subset", type=positive_int, default=None,
                       help="training images of the cached default models")
    g.add_argument("--out", type=Path, default=None, help="run directory (default: runs/<experiment>/<time>)")
    g.add_argument("--overwrite", action="store_true", help="replace the run already in --out (its outputs are cleared)")
    g.add_argument("--seed", type=nonneg_int, default=0)
    g.add_argument("--torch-device", default="auto",
                   help="where the simulation runs: auto (CUDA if available), cpu, cuda, cuda:1 ...")
    g.add_argument("--quiet", action="store_true", help="no progress output")


def study_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of add_study_args that every experiment runner takes."""
    out = dict(data_dir=args.data_dir, out=args.out, seed=args.seed, torch_device=args.torch_device,
               progress=not args.quiet)
    if hasattr(args, "train_epochs"):
        out["budget"] = cached_budget(args)
    return out


def cached_budget(args: argparse.Namespace) -> dict[str, Any]:
    """The --train-epochs / --train-subset overrides of the cached default models' budget."""
    return {k: v for k, v in (("epochs", args.train_epochs), ("subset", args.train_subset)) if v is not None}


def add_train_args(parser: argparse.ArgumentParser) -> None:
    """Model, method and optimisation flags."""
    g = parser.add_argument_group("model and method")
    g.add_argument("--method", default="self_distillation",
                   help="one of " + ", ".join(available_methods()) + ", or a '+' composition (self_distillation+hwa)")
    g.add_argument("--method-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="method hyper-parameter, repeatable (e.g. --method-arg temperature=4)")
    g.add_argument("--teacher", type=Path, default=None, help="teacher checkpoint (best.pt) for --method kd")
    g.add_argument("--arch", default="resnet18", choices=available_archs())
    g.add_argument("--width", type=positive_float, default=0.25, help="channel width multiplier (1.0 = the paper's widths)")
    g.add_argument("--heads", default=None, choices=sorted([*HEADS, "scan"]),
                   help="shallow exit heads: byot (bottleneck), byot_light, scan (attention + bottleneck); "
                        "default: scan for --method scan, else byot")
    o = parser.add_argument_group("optimisation")
    o.add_argument("--epochs", type=positive_int, default=5)
    o.add_argument("--batch-size", type=positive_int, default=128)
    o.add_argument("--lr", type=positive_float, default=0.1)
    o.add_argument("--weight-decay", type=nonneg_float, default=5e-4)
    o.add_argument("--schedule", default="cosine", choices=["cosine", "step", "constant"])
    o.add_argument("--no-augment", action="store_true", help="disable random crop / flip")
    o.add_argument("--seed", type=nonneg_int, default=0)
    o.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, ...")
    o.add_argument("--max-steps", type=positive_int, default=None, help="cap on steps per epoch (smoke tests)")
    o.add_argument("--grad-norms-every", type=nonneg_int, default=0, metavar="N",
                   help="record per-layer gradient norms every N steps into grad_norms.csv (0: off)")
    o.add_argument("--quiet", action="store_true", help="no progress bars")


def parse_method_args(items: list[str], flag: str = "--method-arg") -> dict[str, Any]:
    """["alpha=0.5", "preset=paper"] → {"alpha": 0.5, "preset": "paper"} (values parsed as Python literals)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"error: {flag} expects KEY=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            value: Any = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = {"true": True, "false": False}.get(raw.lower(), raw)
        out[key.strip().replace("-", "_") if flag == "--method-arg" else key.strip()] = value
    return out


def report(summary: dict[str, Any]) -> int:
    """Print an experiment's table and run directory; the exit status of a successful CLI."""
    print(summary["table"])
    print(f"\nrun directory: {summary['run_dir']}")
    return 0


def fail(exc: BaseException) -> int:
    """Print a user error as one line (exit 2), Ctrl-C as one line (exit 130); re-raise anything else, a bug."""
    if isinstance(exc, KeyboardInterrupt):
        print(f"interrupted: {exc}" if str(exc) else
              "interrupted: files already written are complete; a started run's manifest is marked interrupted",
              file=sys.stderr)
        return 130
    if isinstance(exc, USER_ERRORS):
        print(f"error: {exc}", file=sys.stderr)
        return 2
    raise exc


def add_parallel_args(parser: argparse.ArgumentParser) -> None:
    """--workers N and --ray-address ADDR: a study's independent points as Ray tasks (wxy_hw.parallel)."""
    g = parser.add_argument_group("parallel")
    g.add_argument("--workers", type=positive_int, default=1,
                   help="run independent points as Ray tasks on a local Ray instance with N CPUs (default 1: "
                        "in this process, Ray not imported)")
    g.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="join a running Ray cluster (e.g. 10.0.0.1:6379, or 'auto') instead of starting one")


@contextmanager
def run_guard(args: argparse.Namespace) -> Iterator[None]:
    """Hold --out for the whole command: refuse a used one (unless --overwrite / --resume) before any work,
    keep a second process out, and mark the manifest failed / interrupted if the command does not finish."""
    if int(os.environ.get("RANK", "0")) > 0:  # torchrun: rank 0 holds --out for the whole job
        yield
        return
    with run_dir_guard(getattr(args, "out", None), overwrite=getattr(args, "overwrite", False),
                       resume=getattr(args, "resume", False)):
        yield


def train_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of ``experiment.train_run`` from the data and training flags."""
    return dict(method_options=parse_method_args(args.method_arg), arch=args.arch, width=args.width, heads=args.heads,
                dataset=args.dataset, data_dir=args.data_dir, subset=args.subset, val_fraction=args.val_fraction,
                image_size=args.image_size, channels=args.channels, epochs=args.epochs, batch_size=args.batch_size,
                lr=args.lr, weight_decay=args.weight_decay, schedule=args.schedule, seed=args.seed,
                device=args.device, augment=not args.no_augment, teacher=args.teacher,
                max_steps_per_epoch=args.max_steps, grad_norms_every=args.grad_norms_every,
                progress=not args.quiet)


# the architecture flags of every study that reports a cost (one vocabulary: early_exit_energy, chip_study, ...)
CHIP_FLAGS = ("rows", "cols", "adc_bits", "dac_bits", "bits_per_cell", "weight_bits", "act_bits")


def add_chip_args(parser: argparse.ArgumentParser, *, sweep: bool = False) -> None:
    """--rows --cols --adc-bits --dac-bits --bits-per-cell --weight-bits --act-bits (+ --ranging, --input-activity).

    With ``sweep`` each takes a list (a chip study sweeps their product); defaults: the device
    file's array size and the ChipConfig defaults (wxy_hw/hardware/chip.py).
    """
    g = parser.add_argument_group("chip architecture (wxy_hw.hardware.ChipConfig; default: the device file's array)")
    many = {"nargs": "+"} if sweep else {}
    g.add_argument("--rows", type=positive_int, default=None, **many, help="crossbar rows (default: the device file's)")
    g.add_argument("--cols", type=positive_int, default=None, **many, help="crossbar columns (default: = rows, else the device file's)")
    g.add_argument("--adc-bits", type=positive_int, default=None, **many, help="ADC resolution, 2-16 (default 8)")
    g.add_argument("--dac-bits", type=positive_int, default=None, **many, help="input bits per DAC cycle (default 1: bit-serial)")
    g.add_argument("--bits-per-cell", type=positive_int, default=None, **many,
                   help="weight bits per cell (default: what the device's levels hold)")
    g.add_argument("--weight-bits", type=positive_int, default=None, **many, help="weight bits (default 8)")
    g.add_argument("--act-bits", type=positive_int, default=None, **many, help="input (activation) bits (default 8)")
    g.add_argument("--ranging", default=None, **many, choices=["fixed", "per_sample"],
                   help="converter ranges: fixed (calibrated once on training images, default) or per_sample")
    g.add_argument("--input-activity", type=activity, default=None,
                   help="fix the input-bit activity (0-1] instead of measuring it on training images")


def chip_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The architecture flags given on the command line (None = the default), as ChipConfig keywords."""
    out = {k: getattr(args, k) for k in (*CHIP_FLAGS, "ranging", "input_activity") if getattr(args, k, None) is not None}
    if "rows" in out and "cols" not in out:
        out["cols"] = out["rows"]  # square arrays unless told otherwise
    return out
