"""Per-chip batch-norm recalibration: re-estimate BN statistics through a deployed chip.

The zero-parameter baseline for chip-instance adaptation (a reviewer's first question next to a
trained calibrator or chip-in-the-loop fine-tuning): a chip's programmed weights shift the
pre-activation statistics that the digital model's BN layers normalise with, so measuring those
statistics again on the chip itself, from a few unlabeled images, undoes much of the shift.
Nothing is trained and no label is used; the cost is one forward pass per image on the chip.
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..batches import as_batches


def batchnorm_layers(model: nn.Module) -> list[_BatchNorm]:
    """Every BN layer of a model that tracks running statistics."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


def check_bn_recalibrate(n: int) -> None:
    """A study's --bn-recalibrate N: 0 (off) or a number of images ≥ 2 (BN needs a batch variance)."""
    if n < 0 or n == 1:
        raise ValueError(f"--bn-recalibrate is a number of images, 0 (off) or ≥ 2; got {n}")


@torch.no_grad()
def recalibrate_bn(chip: nn.Module, images: torch.Tensor | Iterable, batch_size: int = 128) -> nn.Module:
    """Replace every BN layer's running mean/variance by their values measured through ``chip``.

    ``images`` are N unlabeled, normalised inputs (a fixed selection of training images, so a
    chip and N give one result). Statistics are the exact average over all N images (cumulative
    averaging over near-equal batches, not an exponential one), so the batch size only matters
    through BN's per-batch variance estimate. Only BN layers run in training mode; every other
    layer — the analog ones included — keeps its inference behaviour. Returns ``chip`` (changed in place: a
    deployed copy, never the trained model).
    """
    if not isinstance(images, torch.Tensor):  # any source of batches: its inputs, concatenated
        images = torch.cat(list(as_batches(images, "recalibrate_bn: images", labels=False)))
    if images.dim() < 2 or len(images) < 2:
        raise ValueError(f"BN recalibration needs N ≥ 2 images, got a tensor of shape {tuple(images.shape)}")
    if batch_size < 2:
        raise ValueError(f"BN recalibration batch_size must be ≥ 2 (BN needs a batch variance), got {batch_size}")
    layers = batchnorm_layers(chip)
    if not layers:
        raise ValueError("BN recalibration: the model has no batch-norm layer with running statistics")
    was_training = chip.training
    momenta = [m.momentum for m in layers]
    chip.eval()
    try:
        for m in layers:
            m.reset_running_stats()
            m.momentum = None  # cumulative average: every image counts once, whatever the order
            m.train()
        device = next((p.device for p in chip.parameters()), images.device)
        # Near-equal chunks (sizes differ by at most one, none of a single image): the cumulative
        # average weights batches equally, so equal batches make it the average over images.
        for chunk in torch.tensor_split(images, min(-(-len(images) // batch_size), len(images) // 2)):
            chip(chunk.to(device))
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        chip.train(was_training)
    info = getattr(chip, "deploy_info", None)
    if isinstance(info, dict):
        info["bn_recalibrated_on"] = int(len(images))
    return chip
