"""MultiExitNet: a four-stage backbone with a classifier after chosen stages.

``forward(x)`` returns a ``MultiExitOutput`` — every exit's logits (shallow → deep) and the
feature vector each exit's classifier saw. Every method, hardware backend and analysis
consumes that one structure. A single-exit network (the baseline) is the same class with
only the deepest exit, so checkpoints, deployment and evaluation need no second code path.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from ..utils import eval_mode
from .backbones import build_backbone
from .heads import LinearHead, build_head

NUM_STAGES = 4


@dataclass
class MultiExitOutput:
    """Per-exit logits and features, shallow → deep, plus the backbone's stage maps."""

    logits: list[torch.Tensor]
    features: list[torch.Tensor]
    stage_maps: list[torch.Tensor] = field(default_factory=list)

    @property
    def final(self) -> torch.Tensor:
        """Logits of the deepest exit."""
        return self.logits[-1]

    @property
    def ensemble(self) -> torch.Tensor:
        """Ensemble of all exits: the mean of their logits."""
        return torch.stack(self.logits).mean(0)

    def __len__(self) -> int:
        return len(self.logits)


class MultiExitNet(nn.Module):
    """Backbone stages with exit heads; see the module docstring for the output contract."""

    def __init__(self, arch: str = "resnet18", num_classes: int = 10, in_channels: int = 3,
                 width: float = 1.0, image_size: int = 32, heads: str = "byot",
                 exit_stages: tuple[int, ...] | list[int] = (0, 1, 2, 3), stem_stride: int = 1) -> None:
        super().__init__()
        exit_stages = tuple(sorted(set(int(s) for s in exit_stages)))
        if not exit_stages or exit_stages[-1] != NUM_STAGES - 1 or exit_stages[0] < 0:
            raise ValueError(f"exit_stages must be a subset of 0..{NUM_STAGES - 1} that includes the deepest "
                             f"stage {NUM_STAGES - 1}; got {exit_stages}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        self.config: dict[str, Any] = dict(arch=arch, num_classes=num_classes, in_channels=in_channels,
                                           width=float(width), image_size=image_size, heads=heads,
                                           exit_stages=list(exit_stages))
        if stem_stride != 1:  # recorded only when set, so configs saved before the option still match
            self.config["stem_stride"] = int(stem_stride)
        backbone = build_backbone(arch, in_channels, width, stem_stride)
        self.stem: nn.Module = backbone.stem
        self.stages: nn.ModuleList = backbone.stages
        self.stage_channels: list[int] = list(backbone.stage_channels)
        self.stage_sizes = self._probe_sizes(in_channels, image_size)
        self.exit_stages = exit_stages
        deep_c, deep_s = self.stage_channels[-1], self.stage_sizes[-1]
        head_list: list[nn.Module] = []
        for s in exit_stages:
            if s == NUM_STAGES - 1:
                head_list.append(LinearHead(deep_c, num_classes))
            else:
                ratio = max(int(round(self.stage_sizes[s] / deep_s)), 1)
                head_list.append(build_head(heads, self.stage_channels[s], num_classes,
                                            out_channels=deep_c, downsample=ratio))
        self.heads = nn.ModuleList(head_list)

    @torch.no_grad()
    def _probe_sizes(self, in_channels: int, image_size: int) -> list[int]:
        x = torch.zeros(1, in_channels, image_size, image_size)
        with eval_mode(self):
            sizes = []
            x = self.stem(x)
            for stage in self.stages:
                x = stage(x)
                sizes.append(x.shape[-1])
        return sizes

    @property
    def num_exits(self) -> int:
        """Number of classifiers (1 for a single-exit model)."""
        return len(self.heads)

    def forward(self, x: torch.Tensor) -> MultiExitOutput:
        logits, feats, maps = [], [], []
        h = self.stem(x)
        k = 0
        for s, stage in enumerate(self.stages):
            h = stage(h)
            maps.append(h)
            if k < len(self.exit_stages) and self.exit_stages[k] == s:
                out, feat = self.heads[k](h)
                logits.append(out)
                feats.append(feat)
                k += 1
        return MultiExitOutput(logits, feats, maps)

    def exit_modules(self, exit_index: int) -> list[nn.Module]:
        """Modules on the path from the input to exit ``exit_index`` (stem, stages, that head)."""
        stage = self.exit_stages[exit_index]
        return [self.stem, *self.stages[: stage + 1], self.heads[exit_index]]

    def forward_exit(self, x: torch.Tensor, exit_index: int) -> torch.Tensor:
        """Logits of one exit, computing only the stages that exit needs."""
        h = self.stem(x)
        for stage in self.stages[: self.exit_stages[exit_index] + 1]:
            h = stage(h)
        return self.heads[exit_index](h)[0]


# The sizes a model may be built with, read by the command line (--width, --image-size) and by the checkpoint
# reader alike, so whatever trains also reopens. They are bounded so that a slip (--width 1e6) is one line, not an
# allocation traceback. Width 16 × the paper's ResNet-18 (64-512 channels) is 1024-8192 channels and ~2.9 G
# parameters (11 GiB of fp32 weights before gradients and optimiser state), already wider than the widest
# published ResNets (WRN-28-10, Zagoruyko & Komodakis 2016). The datasets are 28-32 px (resized on request);
# ImageNet-class models use 224-512 px; at 1024 px one 64-channel stride-1 feature map of one image is 256 MiB.
MAX_WIDTH = 16.0
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 1024
IMAGE_CHANNELS = (1, 3)


def build_model(arch: str = "resnet18", num_classes: int = 10, in_channels: int = 3, width: float = 1.0,
                image_size: int = 32, heads: str = "byot", multi_exit: bool = True,
                exit_stages: tuple[int, ...] | list[int] | None = None, stem_stride: int = 1) -> MultiExitNet:
    """A MultiExitNet (exits after all four stages) or, with multi_exit=False, the plain single-exit net."""
    if exit_stages is None:
        exit_stages = tuple(range(NUM_STAGES)) if multi_exit else (NUM_STAGES - 1,)
    return MultiExitNet(arch, num_classes, in_channels, width, image_size, heads, exit_stages, stem_stride)
