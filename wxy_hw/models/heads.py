"""Exit heads: the classifier attached after a backbone stage.

A head maps a stage's feature map to ``(logits, feature_vector)``; the feature vector is
what its linear layer saw, and is what the self-distillation hint compares across exits.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn


class LinearHead(nn.Module):
    """Global average pool → linear: the deepest exit (the backbone's own classifier)."""

    def __init__(self, in_channels: int, num_classes: int, **_: object) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)
        self.out_features = in_channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = torch.flatten(self.pool(x), 1)
        return self.fc(feat), feat


class BottleneckHead(nn.Module):
    """BYOT-style shallow exit: 1×1 conv → strided k×k conv → 1×1 conv → pool → linear.

    As in Be Your Own Teacher's official code the middle width is a quarter of the deepest
    width and the k×k convolution has stride k, where k is the ratio of this stage's spatial
    size to the deepest stage's: the head reaches the deepest feature shape in one cheap step,
    and its 1×1 output conv lifts the feature to the deepest width so the hint loss can compare
    them directly (the head doubles as the paper's adaptation layer).
    """

    def __init__(self, in_channels: int, num_classes: int, *, out_channels: int, downsample: int,
                 light: bool = False, **_: object) -> None:
        super().__init__()
        mid = max(out_channels // 4, 4)
        if light:
            # Never wider than the stage feeding it: the full-resolution 1×1 conv + BN of the first
            # head is then no wider than a backbone layer (≈ 1.2× instead of ≈ 1.4× step time).
            mid = max(min(mid, in_channels), 4)
        k = max(int(downsample), 1)
        self.bottleneck = nn.Sequential(
            nn.Conv2d(in_channels, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, k, stride=k, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(out_channels, num_classes)
        self.out_features = out_channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = torch.flatten(self.pool(self.bottleneck(x)), 1)
        return self.fc(feat), feat


HEADS: dict[str, Callable[..., nn.Module]] = {
    "byot": BottleneckHead,
    "byot_light": lambda in_channels, num_classes, **kw: BottleneckHead(in_channels, num_classes, light=True, **kw),
    "linear": LinearHead,
}


def register_head(name: str, factory: Callable[..., nn.Module]) -> None:
    """Make ``factory(in_channels, num_classes, **kw)`` an exit head kind (``--heads name``)."""
    HEADS[name] = factory


def build_head(kind: str, in_channels: int, num_classes: int, **kwargs: object) -> nn.Module:
    """A shallow exit head by name (see HEADS)."""
    if kind not in HEADS:
        raise ValueError(f"unknown exit head '{kind}'; choose one of: {', '.join(HEADS)}")
    return HEADS[kind](in_channels, num_classes, **kwargs)
