"""Monte Carlo over chip instances: deploy R chips one at a time and evaluate every exit on each."""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.nn as nn

from ..models.evaluate import evaluate
from .engine import calibrate_converters, deploy
from .recalibrate import recalibrate_bn
from .spec import DeviceSpec


def _deploy_aihwkit(*args: Any, **kwargs: Any) -> nn.Module:
    from .aihwkit_backend import deploy_aihwkit

    return deploy_aihwkit(*args, **kwargs)


BACKENDS: dict[str, Callable[..., nn.Module]] = {"native": deploy, "aihwkit": _deploy_aihwkit}


def deploy_on(model: nn.Module, device: str | DeviceSpec, seed: int, backend: str = "native", *,
              bn_images: torch.Tensor | None = None, **kwargs: Any) -> nn.Module:
    """One chip instance, ready to read, with the named backend ("native" fast path, "aihwkit" reference).

    ``bn_images`` (N unlabeled training images) re-estimates every BN layer's statistics through
    the chip after deployment (``recalibrate_bn``); fixed converter ranges are then calibrated
    again on the deployment's ``calibration`` batches, since the activations they see have changed.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    chip = BACKENDS[backend](model, device, seed, **kwargs)
    if bn_images is not None:
        recalibrate_bn(chip, bn_images)
        if kwargs.get("calibration") is not None:
            calibrate_converters(chip, kwargs["calibration"])
    return chip


def evaluate_chips(model: nn.Module, device: str | DeviceSpec, batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
                   seeds: Iterable[int], *, backend: str = "native", bn_images: torch.Tensor | None = None,
                   **deploy_kwargs: Any) -> list[dict[str, Any]]:
    """Tidy rows (chip seed × exit) of accuracy and loss; only one deployed copy is alive at a time.

    ``bn_images``: see ``deploy_on`` (per-chip BN recalibration).
    """
    rows: list[dict[str, Any]] = []
    for seed in seeds:
        chip = deploy_on(model, device, seed, backend, bn_images=bn_images, **deploy_kwargs)
        rows.extend(evaluate(chip, batches).rows(chip=seed))
        del chip
    return rows


def summarize_chips(rows: Iterable[dict[str, Any]], keys: Sequence[str] = ("exit",)) -> list[dict[str, Any]]:
    """Mean, std and standard error of accuracy and loss over chips, grouped by ``keys``."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[tuple(r[k] for k in keys)].append(r)
    out = []
    for key, members in groups.items():
        acc = torch.tensor([m["accuracy"] for m in members], dtype=torch.float64)
        loss = torch.tensor([m["loss"] for m in members], dtype=torch.float64)
        n = len(members)
        std = float(acc.std()) if n > 1 else 0.0
        out.append(dict(zip(keys, key), chips=n, accuracy_mean=float(acc.mean()), accuracy_std=std,
                        accuracy_sem=std / math.sqrt(n), loss_mean=float(loss.mean()),
                        loss_std=float(loss.std()) if n > 1 else 0.0))
    return out
