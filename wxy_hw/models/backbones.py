"""Backbones split into four stages: CIFAR-style ResNets and VGG with batch norm.

Every backbone exposes the same three things, so multi-exit wrapping, hardware mapping and
analysis never special-case an architecture (the timm "feature_info" idea):
``stem`` (nn.Module), ``stages`` (nn.ModuleList of 4) and ``stage_channels`` (list of int).
"""
from __future__ import annotations

import torch.nn as nn


def scaled(channels: int, width: float) -> int:
    """Channel count under a width multiplier (at least 4, so BN and heads stay meaningful)."""
    return max(4, int(round(channels * width)))


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with an identity (or 1×1 projection) shortcut."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(in_planes, planes, stride)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3, 1×1 expand (×4), with shortcut."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(in_planes, out, stride)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


def _shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Module:
    if stride == 1 and in_planes == out_planes:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride, bias=False), nn.BatchNorm2d(out_planes))


class ResNet(nn.Module):
    """CIFAR-style ResNet: 3×3 stem (no max-pool), four stages with strides 1, 2, 2, 2.

    ``stem_stride=2`` halves the resolution in the stem (stage 1 at 14×14 on 28-px images): every
    stage runs on a quarter of the positions (ResNet-18 w0.25 on 28 px: 3.9× fewer MACs).
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: list[int], in_channels: int = 3,
                 width: float = 1.0, stem_stride: int = 1) -> None:
        super().__init__()
        base = [scaled(c, width) for c in (64, 128, 256, 512)]
        self.stem: nn.Module = nn.Sequential(nn.Conv2d(in_channels, base[0], 3, stem_stride, 1, bias=False),
                                             nn.BatchNorm2d(base[0]), nn.ReLU(inplace=True))
        in_planes = base[0]
        stages = []
        for i, (planes, blocks) in enumerate(zip(base, layers)):
            stride = 1 if i == 0 else 2
            seq = []
            for j in range(blocks):
                seq.append(block(in_planes, planes, stride if j == 0 else 1))
                in_planes = planes * block.expansion
            stages.append(nn.Sequential(*seq))
        self.stages = nn.ModuleList(stages)
        self.stage_channels = [p * block.expansion for p in base]
        _init_weights(self)


VGG_CONFIGS: dict[int, list[list[int]]] = {
    11: [[64], [128], [256, 256], [512, 512], [512, 512]],
    13: [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    16: [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    19: [[64, 64], [128, 128], [256] * 4, [512] * 4, [512] * 4],
}


class VGG(nn.Module):
    """VGG with batch norm, its five conv blocks grouped into four stages.

    Stage 1 = blocks 1-2 (with the first max-pool between them); stages 2-4 each open with a
    max-pool followed by blocks 3, 4, 5. On 32 px the stage outputs are 16, 8, 4, 2 px.
    """

    def __init__(self, depth: int, in_channels: int = 3, width: float = 1.0) -> None:
        super().__init__()
        if depth not in VGG_CONFIGS:
            raise ValueError(f"VGG depth must be one of {sorted(VGG_CONFIGS)}, got {depth}")
        blocks = [[scaled(c, width) for c in blk] for blk in VGG_CONFIGS[depth]]
        self.stem: nn.Module = nn.Identity()
        c = in_channels
        convs = []
        for blk in blocks:
            layers: list[nn.Module] = []
            for out in blk:
                layers += [nn.Conv2d(c, out, 3, 1, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
                c = out
            convs.append(layers)
        pool = lambda: nn.MaxPool2d(2, 2)  # noqa: E731 - a fresh module per use
        self.stages = nn.ModuleList([
            nn.Sequential(*convs[0], pool(), *convs[1]),
            nn.Sequential(pool(), *convs[2]),
            nn.Sequential(pool(), *convs[3]),
            nn.Sequential(pool(), *convs[4]),
        ])
        self.stage_channels = [blocks[1][-1], blocks[2][-1], blocks[3][-1], blocks[4][-1]]
        _init_weights(self)


def _init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


RESNET_LAYERS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], list[int]]] = {
    # resnet8: one BasicBlock per stage (8 convolutions inside residual blocks).
    "resnet8": (BasicBlock, [1, 1, 1, 1]),
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
    "resnet101": (Bottleneck, [3, 4, 23, 3]),
    "resnet152": (Bottleneck, [3, 8, 36, 3]),
}


def build_backbone(arch: str, in_channels: int = 3, width: float = 1.0, stem_stride: int = 1) -> ResNet | VGG:
    """A four-stage backbone by name: resnet8/18/34/50/101/152 or vgg11/13/16/19."""
    if width <= 0:
        raise ValueError(f"width multiplier must be positive, got {width}")
    if stem_stride not in (1, 2):
        raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride}")
    if arch in RESNET_LAYERS:
        block, layers = RESNET_LAYERS[arch]
        return ResNet(block, layers, in_channels, width, stem_stride)
    if stem_stride != 1 and arch.startswith("vgg"):
        raise ValueError(f"stem_stride {stem_stride} is a ResNet option ({arch} has no stem); use stem_stride 1")
    if arch.startswith("vgg") and arch[3:].isdigit() and int(arch[3:]) in VGG_CONFIGS:
        return VGG(int(arch[3:]), in_channels, width)
    raise ValueError(f"unknown architecture '{arch}'; choose one of: {', '.join(available_archs())}")


def available_archs() -> list[str]:
    """Names accepted by build_backbone."""
    return list(RESNET_LAYERS) + [f"vgg{d}" for d in VGG_CONFIGS]
