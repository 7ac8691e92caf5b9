"""Running a study from its command line: parse (flags over a ``--config`` file, each value checked by its
flag's own rule), build the study's config, hold ``--out``, run, print the table; user errors as one line
(a setting's field name turned into its flag)."""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..checkpoint import CheckpointError
from ..data import CorruptDatasetError, DatasetNotFoundError
from ..distributed import LostRankError
from ..hardware.aihwkit_backend import AihwkitUnavailable
from ..methods import check_method_options, comparison_options
from ..run_dir import exit_status, run_dir_guard
from ..studies.config import (INPUT_SETTINGS, C, ConfigFileError, SettingError, StudyConfig, input_paths, read_toml,
                               toml_value)
from ..studies.result import StudyResult
from ..train import NonFiniteLossError
from ..utils import NoSpaceError
from .vocabulary import Deprecated, KeyValue


USER_ERRORS = (ValueError, DatasetNotFoundError, CorruptDatasetError, CheckpointError, NonFiniteLossError,
               FileExistsError, FileNotFoundError, AihwkitUnavailable, NoSpaceError,
               LostRankError)


class _Refused:
    """A config-file value its flag's rule refused: an error unless the command line sets that flag too."""

    def __init__(self, message: str) -> None:
        self.message = message

    def __bool__(self) -> bool:  # KeyValue merges onto ``current or {}``: a refused table counts as none
        return False

    def __repr__(self) -> str:
        return "(refused)"


_TOML_KINDS = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
               dict: "a table"}


def _got(value: Any) -> str:
    return f"{toml_value(value)} ({_TOML_KINDS.get(type(value), type(value).__name__)})"


def _expected(action: argparse.Action) -> str:
    """What one value of ``action`` must be, in words: its choices, else its type's name."""
    if action.choices is not None:
        return "one of " + ", ".join(str(c) for c in action.choices)
    kind = action.type
    names: dict[Any, str] = {None: "a string", str: "a string", int: "an integer", float: "a number", Path: "a path"}
    return names.get(kind, getattr(kind, "__name__", "a value"))


def _one_value(action: argparse.Action, value: Any) -> Any:
    """``value`` through the flag's own type and choices, as if it had been typed after the flag."""
    if isinstance(value, (list, dict)) or (isinstance(value, bool) and action.type is not bool):
        raise ValueError(f"expected {_expected(action)}, got {_got(value)}")
    if action.type in (None, str) and not isinstance(value, str):
        raise ValueError(f"expected {_expected(action)}, got {_got(value)}")
    convert = action.type
    try:
        if convert is not None and not callable(convert):  # a type registered by name: calling it fails as before
            raise TypeError(f"{convert!r} is not callable")
        out = value if convert is None else convert(value if isinstance(value, str) else str(value))
    except argparse.ArgumentTypeError as exc:  # the type's own words where it has more to say (--torch-device)
        text = str(exc)
        raise ValueError(text if not text.startswith("expected") else
                         f"expected {_expected(action)}, got {_got(value)}") from None
    except (TypeError, ValueError):
        raise ValueError(f"expected {_expected(action)}, got {_got(value)}") from None
    if action.choices is not None and out not in action.choices:
        raise ValueError(f"expected {_expected(action)}, got {_got(value)}")
    return out


def _config_value(action: argparse.Action, key: str, value: Any) -> Any:
    """A config-file value checked by the rule of the flag that sets ``key``: its type, choices and count."""
    if action.nargs == 0:  # an on/off flag (--no-flat): only a TOML boolean, never a string such as "no"
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {_got(value)}")
        return value
    if isinstance(action, KeyValue):  # --method-arg KEY=VALUE, --device-set S.K=V: an inline table
        if not isinstance(value, dict):
            raise ValueError(f"expected a table such as {{ key = 1 }}, got {_got(value)}")
        return value
    if action.nargs in ("+", "*") or isinstance(action.nargs, int):
        if not isinstance(value, list):
            raise ValueError(f"expected a list, each {_expected(action)} (write {key} = [{toml_value(value)}]), "
                             f"got {_got(value)}")
        if not value and action.nargs == "+" and action.default != []:
            raise ValueError(f"expected a list of at least one value, each {_expected(action)}, got []")
        return [_one_value(action, v) for v in value]
    return _one_value(action, value)


def _config_defaults(parser: argparse.ArgumentParser, path: Path, values: dict[str, Any]) -> dict[str, Any]:
    """The config file's values as parser defaults, each checked by its flag's rule (a refused one is marked, so
    that a flag given on the command line can still override it)."""
    out = {}
    for key, value in values.items():
        actions = [a for a in parser._actions if a.dest == key and a.option_strings]
        action = next((a for a in actions if not isinstance(a, Deprecated)), actions[0] if actions else None)
        if action is None:  # a setting without a flag: its config class takes it as it is
            out[key] = value
            continue
        try:
            out[key] = _config_value(action, key, value)
        except ValueError as exc:
            out[key] = _Refused(f"--config {path}: {key}: {exc}")
    return out


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None, cls: type[StudyConfig]) -> argparse.Namespace:
    """Parse ``argv``; with ``--config FILE`` its settings become the defaults, so flags given here override them.

    Every config value passes its flag's own rule (type, choices, one value or a list, true / false), so a
    file is checked exactly as the command line is; a bad one is one line naming the file and the key."""
    only_config = argparse.ArgumentParser(add_help=False)  # a first look for --config alone (no action runs twice)
    only_config.add_argument("--config", type=Path, default=None)
    pre, _ = only_config.parse_known_args(argv)
    if pre.config is not None:
        try:
            values = read_toml(pre.config)
        except ConfigFileError as exc:
            parser.error(str(exc))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            parser.error(f"--config {pre.config}: unknown setting(s) {', '.join(unknown)} for {parser.prog} "
                         f"(it takes {', '.join(sorted(known))})")
        parser.set_defaults(**_config_defaults(parser, pre.config, values))
    args = parser.parse_args(argv)
    refused = [v for v in vars(args).values() if isinstance(v, _Refused)]
    if refused:
        parser.error(refused[0].message)
    try:
        check_method_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def check_method_args(args: argparse.Namespace) -> None:
    """--method-arg values checked by the methods they go to (each built once), so a bad one is one line before
    any run directory is claimed: the --method of a run, or each of a comparison's --methods (which gets the
    options it accepts and those scoped to it, METHOD.key)."""
    options = getattr(args, "method_options", None)
    if not isinstance(options, dict):
        return
    methods = getattr(args, "methods", None)
    if methods:
        for name in methods:
            scoped = {k.split(".", 1)[1]: k for k in options if k.startswith(name + ".")}
            check_method_options(name, comparison_options(name, options), keys=scoped)
    elif isinstance(getattr(args, "method", None), str):
        check_method_options(args.method, options)


def config_of(cls: type[C], args: argparse.Namespace) -> C:
    """The study's config object from parsed arguments (fields without a flag keep their defaults)."""
    given = vars(args)
    return cls(**{f.name: given[f.name] for f in dataclasses.fields(cls) if f.name in given})


def run_study(argv: Sequence[str] | None, parser: argparse.ArgumentParser, cls: type[StudyConfig],
              runner: Callable[..., StudyResult | dict[str, Any]], args: argparse.Namespace | None = None) -> int:
    """Parse (unless ``args`` are given), hold --out, run the study on its config, print its table; user errors as
    one line."""
    args = parse(parser, argv, cls) if args is None else args
    try:
        config = config_of(cls, args)
        with run_guard(args, kind=cls.KIND):  # --overwrite replaces only a run of this study
            summary = runner(config, out=args.out, progress=args.progress)
    except (Exception, KeyboardInterrupt) as exc:
        return fail(exc)
    return report(summary)


def report(summary: StudyResult | dict[str, Any]) -> int:
    """Print an experiment's table and run directory; the exit status of a successful CLI."""
    print(summary["table"])
    print(f"\nrun directory: {summary['run_dir']}")
    return 0


def fail(exc: BaseException) -> int:
    """Print a user error as one line (exit 2), Ctrl-C / SIGTERM / SIGHUP as one line (exit 128 + signal, 130 for
    Ctrl-C); re-raise anything else, a bug."""
    if isinstance(exc, KeyboardInterrupt):
        print(f"interrupted: {exc}" if str(exc) else
              "interrupted: files already written are complete; a started run's manifest is marked interrupted",
              file=sys.stderr)
        return exit_status(exc)
    if isinstance(exc, SettingError):  # the library names the field, the command line its flag
        print(f"error: --{exc.field.replace('_', '-')} {exc.problem}", file=sys.stderr)
        return 2
    if isinstance(exc, USER_ERRORS):
        print(f"error: {exc}", file=sys.stderr)
        return 2
    raise exc


INPUT_FLAGS = INPUT_SETTINGS  # the same names: a flag's dest is its setting's field


@contextmanager
def run_guard(args: argparse.Namespace, kind: str | None = None) -> Iterator[None]:
    """Hold --out for the whole command: refuse a used one (unless --overwrite / --resume) before any work,
    keep a second process out, never clear a directory holding the command's inputs, and mark the manifest
    failed / interrupted if the command does not finish (Ctrl-C, SIGTERM and SIGHUP alike)."""
    if int(os.environ.get("RANK", "0")) > 0:  # torchrun: rank 0 holds --out for the whole job
        yield
        return
    with run_dir_guard(getattr(args, "out", None), overwrite=getattr(args, "overwrite", False),
                       resume=getattr(args, "resume", False), kind=kind, inputs=input_paths(args)):
        yield
