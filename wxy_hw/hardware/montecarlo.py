"""Monte Carlo over chip instances: deploy R chips (batched K at a time where the chip allows) and evaluate every exit."""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.nn as nn

from ..batches import as_batches
from ..models.evaluation import evaluate, evaluate_chip_batch, model_device
from .batched import DEFAULT_MAX_MEMORY, batch_blocker, chips_per_pass, deploy_chips
from .engine import analog_layers, calibrate_converters, deploy
from .recalibrate import recalibrate_bn
from .spec import DeviceLike, load_device


def _deploy_aihwkit(*args: Any, **kwargs: Any) -> nn.Module:
    from .aihwkit_backend import deploy_aihwkit

    return deploy_aihwkit(*args, **kwargs)


BACKENDS: dict[str, Callable[..., nn.Module]] = {"native": deploy, "aihwkit": _deploy_aihwkit}

CHIP_IDS_PER_SEED = 1000  # room for a seed's chips, its offsets included: ids never repeat across seeds


def chip_ids(seed: int, chips: int, offset: int = 0) -> list[int]:
    """The chip instances a study run with ``seed`` deploys: ``seed·1000 + offset + r`` for r < ``chips``.

    Each training seed gets chips of its own, so a study repeated over seeds nests its chips in them (what the
    intervals over seeds × chips assume: ``analysis.stats.nested_interval``), and a chip's id says its seed.
    ``offset`` keeps one study's chips apart from another's at the same seed (seed 0's chips are offset, offset + 1,
    ...: the ids every study drew before the seed was part of them)."""
    if chips < 0 or offset < 0 or offset + chips > CHIP_IDS_PER_SEED:
        raise ValueError(f"{chips} chips from offset {offset}: a seed holds chip ids 0-{CHIP_IDS_PER_SEED - 1} "
                         f"(seed·{CHIP_IDS_PER_SEED} + i); ask for at most {CHIP_IDS_PER_SEED - offset} chips")
    return [seed * CHIP_IDS_PER_SEED + offset + r for r in range(chips)]


def check_deployable(model: nn.Module) -> None:
    """Refuse a network with no Conv1d / Conv2d / Linear layer: a device holds nothing of it, so its "chip" accuracy
    would be its digital accuracy under another name."""
    if not analog_layers(model):
        raise ValueError(f"{type(model).__name__} has no Conv1d / Conv2d / Linear layer: nothing of it goes on the "
                         "device, so a chip evaluation would only repeat its digital accuracy; give a network whose "
                         "weights are in convolution or linear layers")


def deploy_on(model: nn.Module, device: DeviceLike, seed: int, backend: str = "native", *,
              bn_images: torch.Tensor | None = None, **kwargs: Any) -> nn.Module:
    """One chip instance, ready to read, with the named backend ("native" fast path, "aihwkit" reference).

    ``bn_images`` (N unlabeled training images) re-estimates every BN layer's statistics through
    the chip after deployment (``recalibrate_bn``); fixed converter ranges are then calibrated
    again on the deployment's ``calibration`` batches, since the activations they see have changed.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    check_deployable(model)
    chip = BACKENDS[backend](model, device, seed, **kwargs)
    if bn_images is not None:
        recalibrate_bn(chip, bn_images)
        if kwargs.get("calibration") is not None:
            calibrate_converters(chip, kwargs["calibration"])
    return chip


def evaluate_chips(model: nn.Module, device: DeviceLike, batches: Iterable,
                   seeds: Iterable[int], *, backend: str = "native", bn_images: torch.Tensor | Iterable | None = None,
                   max_memory: int = DEFAULT_MAX_MEMORY, chip_batch: int | None = None,
                   **deploy_kwargs: Any) -> list[dict[str, Any]]:
    """Tidy rows (chip seed × exit) of accuracy and loss, in seed order.

    Native chips are deployed and evaluated K at a time in one pass (``deploy_chips``: the same
    chips and reads as one at a time), K bounded by ``max_memory`` bytes (or fixed by
    ``chip_batch``). What cannot be batched — the aihwkit backend, converters, IR drop,
    ``per_mvm`` read noise, BN recalibration (``bn_images``, see ``deploy_on``; its statistics are
    per chip) — runs one chip at a time, with one deployed copy alive. A network with nothing a device
    holds (``check_deployable``) and a batch of non-finite inputs are refused with one line.
    """
    check_deployable(model)  # before any chip is programmed
    batches = as_batches(batches, "evaluate_chips: batches")
    if bn_images is not None and not isinstance(bn_images, torch.Tensor):
        bn_images = torch.cat(list(as_batches(bn_images, "evaluate_chips: bn_images", labels=False)))
    seeds = list(seeds)
    rows: list[dict[str, Any]] = []
    if backend == "native" and seeds:
        spec = load_device(device, deploy_kwargs.get("overrides"))
        if batch_blocker(spec, deploy_kwargs.get("read_noise_mode", "per_batch"), bn_images) is None:
            if chip_batch is not None and chip_batch < 1:
                raise ValueError(f"chip_batch must be ≥ 1 chips, got {chip_batch}")
            first = batches.first_inputs().to(model_device(model))
            k = chip_batch or chips_per_pass(model, first, max_memory)
            kwargs = {key: v for key, v in deploy_kwargs.items() if key != "overrides"}
            for start in range(0, len(seeds), k):
                chunk = seeds[start:start + k]
                chips = deploy_chips(model, spec, chunk, **kwargs)
                for seed, metrics in zip(chunk, evaluate_chip_batch(chips, batches)):
                    rows.extend(metrics.rows(chip=seed))
                del chips
            return rows
    for seed in seeds:
        chip = deploy_on(model, device, seed, backend, bn_images=bn_images, **deploy_kwargs)
        rows.extend(evaluate(chip, batches).rows(chip=seed))
        del chip
    return rows


def join_exits(accuracy: Iterable[dict[str, Any]], cost: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Accuracy rows (``evaluate(...).rows()``, ``summarize_chips``) joined with cost rows (``chip_report``'s
    "exits" or "paths") on the one exit name: one row per exit, the accuracy columns then the cost's; an exit
    that only one side has (the ensemble, say) is left out. Refuses two sides that name no exit alike."""
    costs = {c["exit"]: c for c in cost}
    rows = [{**a, **{k: v for k, v in costs[a["exit"]].items() if k != "exit"}} for a in accuracy if a["exit"] in costs]
    if costs and not rows:
        raise ValueError(f"join_exits: the accuracy rows and the cost rows name no exit alike ({sorted(costs)}); "
                         "were they computed on the same model?")
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
