"""Dataset containers, errors and the split/transform logic shared by every dataset."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not in any searched place."""


class CorruptDatasetError(ValueError):
    """A dataset file exists but cannot be parsed (bad magic number, truncated, ...)."""


@dataclass
class Split:
    """Images stored once as uint8 (N, C, H, W) plus int64 labels."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"{self.images.shape[0]} images but labels of shape {tuple(self.labels.shape)}")
        self.labels = self.labels.long()

    def __len__(self) -> int:
        return self.images.shape[0]


@dataclass
class DatasetSplits:
    """Train / validation / test splits of one dataset, plus what a model needs to know."""

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: list[str] = field(default_factory=list)
    allow_flip: bool = False
    source: str = ""
    subset: int | None = None  # the training images were capped at this many (None: all), after the validation carve
    val_fraction: float = 0.1  # the fraction of the training images carved out for validation

    def summary(self) -> str:
        """One line: sizes and shape."""
        return (f"{self.name}: train {len(self.train)} / val {len(self.val)} / test {len(self.test)}, "
                f"{self.num_classes} classes, {self.channels}x{self.image_size}x{self.image_size}")


def carve_validation(images: torch.Tensor, labels: torch.Tensor, fraction: float,
                     seed: int) -> tuple[Split, Split]:
    """Split off a deterministic, class-stratified validation set from training data."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
    gen = torch.Generator().manual_seed(seed)
    val_idx: list[torch.Tensor] = []
    for cls in labels.unique(sorted=True):
        members = (labels == cls).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=gen)]
        val_idx.append(members[: int(round(fraction * len(members)))])
    val = torch.cat(val_idx).sort().values if val_idx else torch.zeros(0, dtype=torch.long)
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[val] = False
    return Split(images[keep], labels[keep]), Split(images[val], labels[val])


def take_subset(split: Split, n: int | None, seed: int) -> Split:
    """A deterministic random subset of n samples (all when n is None or ≥ len)."""
    if n is None or n >= len(split):
        return split
    if n <= 0:
        raise ValueError(f"subset size must be positive, got {n}")
    idx = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return Split(split.images[idx], split.labels[idx])


def fit_geometry(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bring uint8 (N, C, h, w) images to size × size.

    28 → 32 pads with zeros (the usual MNIST-to-CIFAR-geometry convention), 32 → 28
    centre-crops, anything else is resized bilinearly.
    """
    h, w = images.shape[-2:]
    if (h, w) == (size, size):
        return images
    if h == w and size > h and (size - h) % 2 == 0 and size - h <= 8:
        p = (size - h) // 2
        return F.pad(images, (p, p, p, p))
    if h == w and size < h and (h - size) % 2 == 0 and h - size <= 8:
        c = (h - size) // 2
        return images[..., c:c + size, c:c + size].contiguous()
    out = F.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False,
                        antialias=size < h)
    return out.round().clamp(0, 255).to(torch.uint8)


def fit_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert stored images to 1 (luma) or 3 (repeated) channels."""
    c = images.shape[1]
    if c == channels:
        return images
    if c == 3 and channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (images.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    if c == 1 and channels == 3:
        # Kept as a view: the dataset stays stored once, the repeat happens lazily.
        return images.expand(-1, 3, -1, -1)
    raise ValueError(f"cannot convert {c}-channel images to {channels} channels (use 1 or 3)")


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images, in [0, 1] units."""
    x = images.float().div_(255.0)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(mean.tolist()), tuple(std.tolist())
