"""Any source of batches a user has, as one re-iterable: a DataLoader, a list of (x, y) batches, a Dataset, tensors.

Every public function that takes data (``fit``, ``evaluate``, ``evaluate_chips``, ``chip_report``'s
calibration, the calibrator and chip fine-tuning loops, BN recalibration) reads it through
``as_batches``, so each accepts the same things and refuses the same things with one line. Data
is usually read several times (once per chip, once per epoch), so a one-shot iterator (a
generator, ``iter(loader)``) is refused rather than silently read once.
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

DEFAULT_BATCH = 256  # images per batch when the data come whole (a Dataset, tensors): a CPU-friendly size
ACCEPTS = "a DataLoader, a list of (x, y) batches, a TensorDataset or an (x, y) pair of tensors"


class Batches:
    """A re-iterable of (x, y) batches (or of inputs x, with ``labels=False``), checked as it is read."""

    def __init__(self, source: Iterable, what: str, *, labels: bool = True,
                 device: torch.device | str | None = None) -> None:
        self.source, self.what, self.labels = source, what, labels
        self.device = torch.device(device) if device is not None else None
        self._len: int | None = None

    def set_epoch(self, epoch: int) -> None:
        """Forward the epoch to a sampler that reshuffles by epoch (DistributedSampler)."""
        set_epoch = getattr(getattr(self.source, "sampler", None), "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)

    def __len__(self) -> int:
        if self._len is None:
            try:
                self._len = len(self.source)  # type: ignore[arg-type]
            except TypeError:  # an iterable without len: count one pass
                self._len = sum(1 for _ in self.source)
        return self._len

    def __iter__(self) -> Iterator[Any]:
        for i, batch in enumerate(self.source):
            x, y = self._split(batch, i)
            if self.device is not None:
                x = x.to(self.device)
                y = y.to(self.device) if y is not None else None
            yield (x, y) if self.labels else x

    def first_inputs(self) -> torch.Tensor:
        """The inputs of the first batch (to size a model or a calibrator)."""
        for batch in self:
            return batch[0] if self.labels else batch
        raise ValueError(f"{self.what} holds no batch; pass {ACCEPTS} with at least one batch")

    def _split(self, batch: Any, i: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        if isinstance(batch, torch.Tensor) and not self.labels:
            return batch, None
        if isinstance(batch, (tuple, list)) and len(batch) >= 2 and isinstance(batch[0], torch.Tensor) \
                and isinstance(batch[1], torch.Tensor):
            return batch[0], batch[1]
        shape = f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else ""
        need = "(x, y) tensor pairs" if self.labels else "input tensors (or (x, y) pairs)"
        raise ValueError(f"{self.what}: batch {i} is a {type(batch).__name__}{shape}; it must yield {need}")


def _whole(x: torch.Tensor, y: torch.Tensor | None, batch_size: int) -> list[Any]:
    if y is None:
        return list(x.split(batch_size))
    return list(zip(x.split(batch_size), y.split(batch_size)))


def as_batches(data: Any, what: str, *, labels: bool = True, batch_size: int = DEFAULT_BATCH,
               device: torch.device | str | None = None) -> Batches:
    """``data`` as a re-iterable ``Batches`` (see the module docstring); ``what`` names it in errors (e.g. the
    argument's name). Whole data (a Dataset, tensors) are cut into batches of ``batch_size``, in order."""
    if isinstance(data, Batches):
        return data if device is None and data.labels == labels else \
            Batches(data.source, data.what, labels=labels, device=device or data.device)
    if isinstance(data, torch.Tensor):
        if labels:
            raise ValueError(f"{what}: got a tensor of inputs without labels; pass {ACCEPTS}")
        return Batches(_whole(data, None, batch_size), what, labels=False, device=device)
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data) \
            and data[0].dim() >= 2 and data[1].dim() == 1 and len(data[0]) == len(data[1]):
        return Batches(_whole(data[0], data[1], batch_size), what, labels=labels, device=device)
    if isinstance(data, Dataset) and not isinstance(data, torch.utils.data.IterableDataset):
        return Batches(DataLoader(data, batch_size=batch_size, shuffle=False), what, labels=labels, device=device)
    if isinstance(data, Iterator):
        raise ValueError(f"{what}: got a one-shot iterator ({type(data).__name__}), but the data are read more than "
                         f"once (per chip, per epoch); pass {ACCEPTS}")
    if not isinstance(data, Iterable):
        raise ValueError(f"{what}: expected {ACCEPTS}; got a {type(data).__name__}")
    return Batches(data, what, labels=labels, device=device)
