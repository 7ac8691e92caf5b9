"""An inference copy of a digital model: batch norm folded into the convolution before it, NHWC layout.

Early exit pays for the stem, stage 1 and exit 1's head on every sample; at full resolution
with few channels those layers are memory-bound, and each BN is one more pass over the largest
activations. Folding BN (y = γ(Wx − μ)/σ + β → W'x + b') removes that pass and channels_last
lets oneDNN vectorise the narrow convolutions. The function is the same (float rounding aside,
~1e-6 relative); the copy is for digital inference only (deploy the trained model, not this).
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..models.backbones import BasicBlock, Bottleneck


def _fold_sequential(seq: nn.Sequential) -> None:
    for i in range(len(seq) - 1):
        conv, bn = seq[i], seq[i + 1]
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            seq[i] = fuse_conv_bn_eval(conv, bn)
            seq[i + 1] = nn.Identity()


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy with every BN that directly follows a Conv2d folded into it.

    Only places where the conv's output feeds the BN alone are folded: consecutive layers of an
    nn.Sequential, and the conv/bn pairs of the ResNet blocks; other BN layers stay as they are.
    """
    folded = copy.deepcopy(model).eval()
    for m in folded.modules():
        if isinstance(m, nn.Sequential):
            _fold_sequential(m)
        if isinstance(m, (BasicBlock, Bottleneck)):
            for conv, bn in (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")):
                if isinstance(getattr(m, bn, None), nn.BatchNorm2d):
                    setattr(m, conv, fuse_conv_bn_eval(getattr(m, conv), getattr(m, bn)))
                    setattr(m, bn, nn.Identity())
    return folded


@torch.no_grad()
def inference_copy(model: nn.Module, channels_last: bool = True) -> nn.Module:
    """``fold_batchnorm`` plus NHWC weights (feed it NHWC inputs: ``x.contiguous(memory_format=torch.channels_last)``)."""
    folded = fold_batchnorm(model)
    # Module.to takes memory_format at run time (documented); torch's overloads leave it out
    return folded.to(memory_format=torch.channels_last) if channels_last else folded  # type: ignore[call-overload]
