"""Checks of a method's options, made by its constructor: each refusal is one ``OptionError`` line naming the
method, the option, what it must be and a value that works. A command line words it as the flag it came from."""
from __future__ import annotations

import math
import numbers
import os
from typing import Any, Callable, Sequence

from ..utils import MAX_SEED


class OptionError(ValueError):
    """A method option of the wrong type or outside its range."""

    def __init__(self, method: str, option: str, value: Any, rule: str, example: Any) -> None:
        self.method, self.option, self.value, self.rule, self.example = method, option, value, rule, example
        super().__init__(f"{method}'s {option} must be {rule}, got {shown(value)} (e.g. {option}={example})")

    def __reduce__(self) -> tuple[Any, ...]:  # pickled whole (Ray tasks send errors back to the caller)
        return type(self), (self.method, self.option, self.value, self.rule, self.example)

    def flag_line(self, flag: str = "--method-arg", key: str | None = None) -> str:
        """The refusal in the command line's words: the flag as typed (``key``: the option's name there, e.g.
        ``hwa.noise_scale``), the rule, a value that works."""
        key = key or self.option
        return (f"{flag} {key}={shown(self.value)}: {self.method}'s {self.option} must be {self.rule}; "
                f"give e.g. {flag} {key}={self.example}")


def shown(value: Any) -> str:
    """A value as it is typed after ``KEY=`` (a string without its quotes)."""
    return value if isinstance(value, str) else repr(value)


def real(method: str, option: str, value: Any, rule: str, ok: Callable[[float], bool], example: Any) -> float:
    """``value`` as a float: a finite real number (no bool, no string) for which ``ok`` holds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or not ok(float(value)):
        raise OptionError(method, option, value, rule, example)
    return float(value)


def integer(method: str, option: str, value: Any, rule: str, ok: Callable[[int], bool], example: Any) -> int:
    """``value`` as an int: a whole number (no bool, no float) for which ``ok`` holds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not ok(int(value)):
        raise OptionError(method, option, value, rule, example)
    return int(value)


def unit(method: str, option: str, value: Any, example: Any) -> float:
    """A weight or share in [0, 1]."""
    return real(method, option, value, "a number from 0 to 1", lambda v: 0 <= v <= 1, example)


def positive(method: str, option: str, value: Any, example: Any) -> float:
    """A finite number > 0 (a temperature, a step size)."""
    return real(method, option, value, "a finite number > 0", lambda v: v > 0, example)


def nonnegative(method: str, option: str, value: Any, example: Any) -> float:
    """A finite number ≥ 0 (a loss weight, a noise scale)."""
    return real(method, option, value, "a finite number ≥ 0", lambda v: v >= 0, example)


def count(method: str, option: str, value: Any, example: Any) -> int:
    """An integer ≥ 1 (steps, a feature width)."""
    return integer(method, option, value, "an integer ≥ 1", lambda v: v >= 1, example)


def seed(method: str, value: Any) -> int:
    """A seed of the method's own random stream."""
    return integer(method, "seed", value, "an integer from 0 to 2**63 - 1", lambda v: 0 <= v <= MAX_SEED, 0)


def flag(method: str, option: str, value: Any, example: bool = True) -> bool:
    """An on/off option: True or False, never a string or a number that merely reads as one."""
    if not isinstance(value, bool):
        raise OptionError(method, option, value, "true or false", str(example).lower())
    return value


def choice(method: str, option: str, value: Any, choices: Sequence[str]) -> str:
    """One of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise OptionError(method, option, value, "one of " + ", ".join(choices), choices[0])
    return value


def path_like(method: str, option: str, value: Any, rule: str, example: str) -> str:
    """A name or a path, as a string."""
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise OptionError(method, option, value, rule, example)
    return str(value)
