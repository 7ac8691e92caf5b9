"""A fast in-memory batch iterator over uint8 splits.

torch's DataLoader costs more per batch than the model on 28-px images on a 2-core CPU;
slicing a tensor held once in memory does not. Normalisation and augmentation happen per
batch on the target device, so the dataset is never copied per epoch.
"""
from __future__ import annotations

import functools
from typing import Iterator

import torch
import torch.nn.functional as F

from .base import DatasetSplits, Split


class BatchLoader:
    """Iterate (x float normalised, y long) batches; reshuffled per epoch from (seed, epoch)."""

    def __init__(self, split: Split, batch_size: int, *, mean: tuple[float, ...], std: tuple[float, ...],
                 shuffle: bool = False, augment: bool = False, allow_flip: bool = False,
                 seed: int = 0, device: str | torch.device = "cpu", drop_last: bool = False,
                 shard: tuple[int, int] = (0, 1)) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        rank, world = shard
        if not 0 <= rank < world:
            raise ValueError(f"shard must be (rank, world) with 0 ≤ rank < world, got {shard}")
        if batch_size < world:
            raise ValueError(f"batch size {batch_size} is smaller than the {world} processes sharing each batch: "
                             f"use --batch-size ≥ {world}")
        self.split = split
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.allow_flip = allow_flip
        self.seed = seed
        self.device = torch.device(device)
        self.drop_last = drop_last
        # (rank, world): this process reads its contiguous part of every global batch (torchrun)
        self.shard = shard
        self.global_size = 0  # size of the global batch the last yielded shard belongs to
        self.epoch = 0
        self._mean = torch.tensor(mean, device=self.device).view(1, -1, 1, 1)
        self._std = torch.tensor(std, device=self.device).view(1, -1, 1, 1)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration's order (and augmentation) a function of (seed, epoch) only."""
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.split)
        if self.drop_last or 0 < n % self.batch_size < self.shard[1]:
            return n // self.batch_size  # a last batch too small to give every process a sample is dropped
        return -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.split)
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            x = self.split.images[idx].to(self.device, non_blocking=True).float().div_(255.0)
            y = self.split.labels[idx].to(self.device, non_blocking=True)
            if self.augment:
                x = self._augment(x, gen)
            x = (x - self._mean) / self._std
            self.global_size = len(y)
            if self.shard[1] > 1:
                # the whole global batch is drawn (order and augmentation) as one process draws it,
                # then cut, so the shards together are exactly the single-process batch
                part = torch.tensor_split(torch.arange(len(y)), self.shard[1])[self.shard[0]]
                x, y = x[part[0]:part[-1] + 1], y[part[0]:part[-1] + 1]
            yield x, y

    def _augment(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Random crop with zero padding (1/8 of the side) and, where labels allow, horizontal flip."""
        n, _, h, w = x.shape
        pad = max(h // 8, 1)
        padded = F.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
        rows = (dy.view(n, 1) + torch.arange(h)).to(x.device)
        cols = (dx.view(n, 1) + torch.arange(w)).to(x.device)
        out = padded[torch.arange(n, device=x.device).view(n, 1, 1, 1), torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1),
                     rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]
        if self.allow_flip:
            flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
            out = torch.where(flip.view(n, 1, 1, 1), out.flip(-1), out)
        return out


def make_loaders(data: DatasetSplits, batch_size: int, *, seed: int = 0, device: str | torch.device = "cpu",
                 augment: bool = True, eval_batch_size: int | None = None,
                 shard: tuple[int, int] = (0, 1)) -> dict[str, BatchLoader]:
    """Train (shuffled, augmented; ``shard`` = this process's part of each batch), val and test loaders."""
    loader = functools.partial(BatchLoader, mean=data.mean, std=data.std, device=device)
    eval_bs = eval_batch_size or max(batch_size, 512)
    return {
        "train": loader(data.train, batch_size, shuffle=True, augment=augment, allow_flip=data.allow_flip,
                        seed=seed, shard=shard),
        "val": loader(data.val, eval_bs),
        "test": loader(data.test, eval_bs),
    }
