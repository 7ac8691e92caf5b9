"""The light-weight input Calibrator and the discriminators that train it.

``Calibrator``: a small image-to-image residual network that adds a bounded perturbation to its
input, x' = x + ε·tanh(g(x)); the classifier behind it stays frozen (Ye et al., "Light-weight
Calibrator: a separable component for unsupervised domain adaptation"). Its last convolution
starts at zero, so an untrained calibrator is the identity.

``PixelDiscriminator`` (on images) and ``FeatureDiscriminator`` (on the classifier's deepest
feature) classify an input as source (0), target (1) or calibrated target (2).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from ..utils import eval_mode

DOMAINS = {"source": 0, "target": 1, "calibrated": 2}


class _Residual(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True), nn.Conv2d(width, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


class Calibrator(nn.Module):
    """x → x + epsilon·tanh(g(x)); g = conv → ``blocks`` residual blocks → conv (zero-initialised)."""

    def __init__(self, in_channels: int = 1, width: int = 8, blocks: int = 1, epsilon: float = 1.0) -> None:
        super().__init__()
        if width < 1 or blocks < 0 or epsilon <= 0:
            raise ValueError(f"calibrator needs width ≥ 1, blocks ≥ 0, epsilon > 0; got {width}, {blocks}, {epsilon}")
        self.epsilon = float(epsilon)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*[_Residual(width) for _ in range(blocks)])
        self.head = nn.Conv2d(width, in_channels, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        assert self.head.bias is not None  # built with a bias (nn.Conv2d's default)
        nn.init.zeros_(self.head.bias)

    def perturbation(self, x: torch.Tensor) -> torch.Tensor:
        """The bounded additive correction ε·tanh(g(x)) (in the classifier's normalised input units)."""
        return self.epsilon * torch.tanh(self.head(self.blocks(self.stem(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.perturbation(x)


class PixelDiscriminator(nn.Module):
    """Strided conv net on images → logits over (source, target, calibrated)."""

    def __init__(self, in_channels: int = 1, width: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.BatchNorm2d(2 * width), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * width, 4 * width, 3, 2, 1), nn.BatchNorm2d(4 * width), nn.LeakyReLU(0.2, inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, len(DOMAINS)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FeatureDiscriminator(nn.Module):
    """MLP on a feature vector → logits over (source, target, calibrated)."""

    def __init__(self, in_features: int, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, hidden),
                                 nn.ReLU(inplace=True), nn.Linear(hidden, len(DOMAINS)))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(f)


@torch.no_grad()
def count_macs(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    """MACs of one forward on one input (FlopCounterMode FLOPs / 2, convolutions and matmuls)."""
    with eval_mode(module):
        counter = FlopCounterMode(display=False)
        with counter:
            module(torch.zeros(1, *input_shape, device=next(module.parameters()).device))
        return counter.get_total_flops() // 2
