"""Training methods by name. Adding a method = one file with a Method subclass + one line here."""
from __future__ import annotations

import inspect
from typing import Any

from .base import Batch, Method, feature_l2, kd_kl
from .kd import KnowledgeDistillation
from .self_distillation import SelfDistillation
from .supervised import Baseline, DeeplySupervised

METHODS: dict[str, type[Method]] = {
    cls.name: cls for cls in (Baseline, DeeplySupervised, KnowledgeDistillation, SelfDistillation)
}


def available_methods() -> list[str]:
    """Names accepted by build_method."""
    return sorted(METHODS)


def method_class(name: str) -> type[Method]:
    """The Method subclass registered under ``name``."""
    if name not in METHODS:
        raise ValueError(f"unknown method '{name}'; choose one of: {', '.join(available_methods())}")
    return METHODS[name]


def build_method(name: str, **options: Any) -> Method:
    """Instantiate a method by name, with a clear error for options it does not take."""
    cls = method_class(name)
    params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise ValueError(f"method '{name}' has no option(s) {unknown}; it takes: {params}")
    return cls(**options)


__all__ = ["Batch", "Baseline", "DeeplySupervised", "KnowledgeDistillation", "METHODS", "Method",
           "SelfDistillation", "available_methods", "build_method", "feature_l2", "kd_kl", "method_class"]
