"""Training methods by name. Adding a method = one file with a Method subclass + one line here."""
from __future__ import annotations

import inspect
from typing import Any

from ..utils import json_types
from .at import AttentionTransfer
from .auxiliary import AdversarialAuxiliaryTraining, AuxiliaryTraining
from .base import Batch, Method, MissingTeacher, feature_l2, kd_kl
from .dml import DeepMutualLearning
from .fitnet import FitNet
from .compose import ComposedMethod
from .hwa import HardwareAware
from .kd import KnowledgeDistillation
from .options import OptionError
from .qat import QuantizationAware
from .robust import ADA, AdversarialTraining, Augment, PixelSpaceClassifier
from .self_distillation import Scan, SelfDistillation
from .supervised import Baseline, DeeplySupervised

METHODS: dict[str, type[Method]] = {
    cls.name: cls for cls in (Baseline, DeeplySupervised, KnowledgeDistillation, FitNet, AttentionTransfer,
                              DeepMutualLearning, SelfDistillation, Scan, HardwareAware, QuantizationAware, Augment,
                              ADA, AuxiliaryTraining, AdversarialAuxiliaryTraining, AdversarialTraining)
}


def available_methods() -> list[str]:
    """Names accepted by build_method."""
    return sorted(METHODS)


def method_class(name: str) -> type[Method]:
    """The Method subclass registered under ``name`` (a single method, not a composition)."""
    if name not in METHODS:
        raise ValueError(f"unknown method '{name}'; choose one of: {', '.join(available_methods())} "
                         "(or compose them with '+', e.g. self_distillation+hwa)")
    return METHODS[name]


def method_traits(name: str) -> tuple[bool, bool]:
    """(multi_exit, needs_teacher) of a method or composition such as ``self_distillation+hwa``."""
    classes = [method_class(part) for part in name.split("+")]
    return classes[0].multi_exit, any(c.needs_teacher for c in classes)


def default_heads(name: str) -> str:
    """Exit heads a method's model gets unless the user picks (--heads): scan → attention heads."""
    return method_class(name.split("+")[0]).default_heads


def _accepted(cls: type[Method]) -> list[str]:
    return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]


def resolved_options(name: str, asked: dict[str, Any]) -> dict[str, Any]:
    """The options a method — or a '+' composition, per component as ``options()`` nests them — resolves ``asked``
    to, defaults included (some follow others: hwa's t_inference its device). A component that needs a teacher
    cannot be built without one: its signature's defaults there, less those left None (resolved from the teacher)."""
    classes = [method_class(p) for p in name.split("+")]
    out: dict[str, Any] = {}
    for i, cls in enumerate(classes):
        opts = _component_options(i, cls, asked)
        if cls.needs_teacher:
            params = inspect.signature(cls.__init__).parameters.values()
            out[cls.name] = {**{p.name: p.default for p in params if p.name != "self"
                                and p.default not in (inspect.Parameter.empty, None)}, **opts}
        else:
            out[cls.name] = cls(**opts).options()
    return out if len(classes) > 1 else out[classes[0].name]


def changed_options(name: str, asked: dict[str, Any], recorded: dict[str, Any], *, asked_too: bool = False) -> list[str]:
    """The options a run recorded (``recorded``: its method's ``options()``) that resolve to something else now: one
    it took by default, a default changed since it was trained ("option: run has X, now Y"), and with ``asked_too``
    one asked for otherwise ("option: run has X, asked Y"). The method's random seed is left out (a run's seed is
    its training seed, compared as such)."""
    now = resolved_options(name, asked)
    parts = [(None, now, recorded)] if "+" not in name else [
        (part, now[part], recorded.get(part) or {}) for part in now]
    out = []
    for part, resolved, theirs in parts:
        for key, value in resolved.items():
            if key == "seed" or (key in asked and not asked_too) or key not in theirs \
                    or json_types(theirs[key]) == json_types(value):
                continue
            label = key if part is None else f"{part}.{key}"
            out.append(f"{label}: run has {theirs[key]!r}, {'asked' if key in asked else 'now'} {value!r}")
    return out


def changed_defaults(name: str, asked: dict[str, Any], recorded: dict[str, Any]) -> list[str]:
    """``changed_options`` for a run matched on the options it was asked (an earlier folder's, the zoo's): those it
    took by default and would now take otherwise."""
    return changed_options(name, asked, recorded)


def _component_options(i: int, cls: type[Method], options: dict[str, Any]) -> dict[str, Any]:
    """The options the ``i``-th component of a composition gets: those it accepts; a hardware- or quantization-aware
    part after the first leaves the cross-entropy to the primary method."""
    opts = {k: v for k, v in options.items() if k in _accepted(cls)}
    if cls in (HardwareAware, QuantizationAware) and i > 0:
        opts.setdefault("include_ce", False)  # the primary method already supervises the exits
    return opts


def _refuse_unknown(name: str, classes: list[type[Method]], options: dict[str, Any]) -> None:
    """An option no component of ``name`` takes is an error naming those they take."""
    unknown = sorted(set(options) - {k for c in classes for k in _accepted(c)})
    if unknown:
        takes = {c.name: _accepted(c) for c in classes}
        raise ValueError(f"method '{name}' has no option(s) {unknown}; it takes: "
                         f"{takes if len(classes) > 1 else takes[classes[0].name]}")


def build_method(name: str, **options: Any) -> Method:
    """Instantiate a method — or a '+' composition — by name, with a clear error for unknown options.

    In a composition every component receives the options it accepts; an option no component
    takes is an error. Each component checks its options' types and ranges (``OptionError``, a ValueError).
    """
    classes = [method_class(p) for p in name.split("+")]
    _refuse_unknown(name, classes, options)
    if len(classes) == 1:
        return classes[0](**options)
    return ComposedMethod([cls(**_component_options(i, cls, options)) for i, cls in enumerate(classes)])


def check_method_options(name: str, options: dict[str, Any], flag: str = "--method-arg",
                         keys: dict[str, str] | None = None) -> None:
    """Refuse, before any work, the options ``name`` would refuse when built: each component is built once (a
    teacher method up to its teacher, which only training reads). Every refusal is one ValueError line in the
    command line's words, naming ``flag`` and the method (``keys``: an option's name as typed where it differs,
    a comparison's ``METHOD.key``); an unknown method is refused as ``method_class`` does."""
    classes = [method_class(p) for p in name.split("+")]
    try:
        _refuse_unknown(name, classes, options)
    except ValueError as exc:  # it names the method and the options it takes
        raise ValueError(f"{flag}: {exc}") from None
    try:
        if not any(c.needs_teacher for c in classes):
            build_method(name, **options)
            return
        for i, cls in enumerate(classes):
            try:
                cls(**_component_options(i, cls, options))
            except MissingTeacher:  # its options passed: a teacher method checks them before its teacher
                pass
    except OptionError as exc:
        raise ValueError(exc.flag_line(flag, (keys or {}).get(exc.option))) from None
    except (ValueError, TypeError) as exc:  # a check of a component's own (a device file's, say), in its words
        raise ValueError(f"{flag}: method '{name}': {exc}") from None


def comparison_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options ``name`` gets in a comparison of several methods: every one it accepts, and those scoped to it
    (``METHOD.key``, e.g. ``self_distillation+hwa.noise_scale``)."""
    accepted = {p for part in name.split("+") for p in _accepted(method_class(part))}
    general = {k: v for k, v in options.items() if "." not in k and k in accepted}
    scoped = {k.split(".", 1)[1]: v for k, v in options.items() if k.startswith(name + ".")}
    return {**general, **scoped}


__all__ = ["ADA", "AdversarialAuxiliaryTraining", "AdversarialTraining", "AttentionTransfer", "DeepMutualLearning", "FitNet", "Augment",
           "AuxiliaryTraining", "PixelSpaceClassifier", "Batch", "Baseline", "ComposedMethod", "HardwareAware",
           "method_traits", "DeeplySupervised", "KnowledgeDistillation", "METHODS", "Method", "QuantizationAware",
           "Scan", "SelfDistillation", "available_methods", "default_heads", "build_method", "changed_defaults",
           "changed_options", "check_method_options", "comparison_options", "MissingTeacher", "OptionError",
           "resolved_options", "feature_l2", "kd_kl", "method_class"]
