"""Datasets by name: ``load_dataset("fashion_mnist", ...)`` returns train / val / test splits."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from .base import (DatasetSplits, Split, carve_validation, channel_stats, fit_channels, fit_geometry,
                   take_subset)
from .sources import (RawDataset, load_cifar10, load_cifar100, load_digits, load_fashion_mnist,
                      load_mnist5k, load_synthetic)

DATASETS: dict[str, Callable[..., RawDataset]] = {
    "fashion_mnist": load_fashion_mnist,
    "mnist5k": load_mnist5k,
    "digits": load_digits,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "synthetic": load_synthetic,
}

# Native geometry, so callers can ask for "the dataset's own" size and channel count.
NATIVE = {"fashion_mnist": (28, 1), "mnist5k": (28, 1), "digits": (28, 1),
          "cifar10": (32, 3), "cifar100": (32, 3), "synthetic": (28, 1)}


def available_datasets() -> list[str]:
    """Names accepted by load_dataset."""
    return sorted(DATASETS)


def dataset_key(name: str) -> str:
    """The registry's key of a dataset name, as checkpoints record it ("Fashion-MNIST" → "fashion_mnist")."""
    return name.lower().replace("-", "_")


def load_dataset(name: str, data_dir: str | Path | None = None, *, val_fraction: float = 0.1,
                 subset: int | None = None, image_size: int | None = None, channels: int | None = None,
                 seed: int = 0) -> DatasetSplits:
    """Load a dataset by name and return deterministic train / validation / test splits.

    ``subset`` caps the training set (after the validation split is carved, which stays
    full-size up to ``subset // 5`` so selection is not starved) and the test set at the same
    size; ``image_size`` pads 28→32 or crops 32→28 (else resizes); ``channels`` is 1 or 3.
    """
    key = dataset_key(name)
    if key not in DATASETS:
        raise ValueError(f"unknown dataset '{name}'; choose one of: {', '.join(available_datasets())}")
    native_size, native_channels = NATIVE[key]
    size = image_size or native_size
    chans = channels or native_channels
    if chans not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {chans}")
    if size < 8:
        raise ValueError(f"image_size must be at least 8, got {size}")
    raw = DATASETS[key](data_dir)
    train_x = fit_geometry(raw.train_images, size)
    test_x = fit_geometry(raw.test_images, size)
    train, val = carve_validation(train_x, raw.train_labels, val_fraction, seed)
    if subset is not None:
        train = take_subset(train, subset, seed)
        val = take_subset(val, max(subset // 5, 1), seed + 1)
    test = Split(test_x, raw.test_labels)
    if subset is not None:
        test = take_subset(test, subset, seed + 2)
    train = Split(fit_channels(train.images, chans), train.labels)
    val = Split(fit_channels(val.images, chans), val.labels)
    test = Split(fit_channels(test.images, chans), test.labels)
    mean, std = channel_stats(train.images)
    return DatasetSplits(key, train, val, test, raw.num_classes, chans, size, mean, std,
                         raw.class_names, raw.allow_flip, raw.source, subset, val_fraction)
