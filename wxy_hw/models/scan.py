"""SCAN attention exits (Zhang et al., "SCAN: A Scalable Neural Networks Framework", NeurIPS 2019).

Each shallow exit gets an attention module — conv downsampling → BN → ReLU → transposed-conv
upsampling → BN → sigmoid — whose map in (0, 1) multiplies the stage's features before the
BYOT bottleneck classifier: Attention(F) = σ(φ(ψ(F, W_conv), W_deconv)), features ← F ⊙ Attention(F).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from .heads import BottleneckHead, register_head


class AttentionModule(nn.Module):
    """Downsample (3×3, stride 2) → BN → ReLU → upsample (4×4 transposed, stride 2) → BN → sigmoid."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(channels, channels, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.up = nn.Sequential(nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1, bias=False),
                                nn.BatchNorm2d(channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        att = self.up(self.down(x))
        if att.shape[-2:] != x.shape[-2:]:  # odd sizes (7 px): crop the transposed conv's extra row/column
            att = att[..., : x.shape[-2], : x.shape[-1]]
        return att


class ScanHead(nn.Module):
    """Attention-weighted features into a BYOT bottleneck classifier."""

    def __init__(self, in_channels: int, num_classes: int, **kwargs: Any) -> None:
        super().__init__()
        self.attention = AttentionModule(in_channels)
        self.classifier = BottleneckHead(in_channels, num_classes, **kwargs)
        self.out_features = self.classifier.out_features

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.classifier(x * self.attention(x))


register_head("scan", ScanHead)
