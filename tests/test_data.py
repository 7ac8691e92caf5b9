"""Datasets: readers, splits, geometry, errors, and the batch loader."""
from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from wxy_hw.data import BatchLoader, CorruptDatasetError, DatasetNotFoundError, Split, load_dataset, make_loaders
from wxy_hw.data.base import carve_validation, fit_channels, fit_geometry
from wxy_hw.data.sources import DEBIAN_FASHION_MNIST


def write_idx(path: Path, array: np.ndarray, magic: int, compress: bool = True) -> None:
    header = struct.pack(">i", magic) + b"".join(struct.pack(">i", d) for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as handle:
            handle.write(raw)
    else:
        path.write_bytes(raw)


def fake_fashion(root: Path, n_train: int = 50, n_test: int = 20, compress: bool = True) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    write_idx(root / "train-images-idx3-ubyte", rng.integers(0, 256, (n_train, 28, 28)), 2051, compress)
    write_idx(root / "train-labels-idx1-ubyte", np.arange(n_train) % 10, 2049, compress)
    write_idx(root / "t10k-images-idx3-ubyte", rng.integers(0, 256, (n_test, 28, 28)), 2051, compress)
    write_idx(root / "t10k-labels-idx1-ubyte", np.arange(n_test) % 10, 2049, compress)
    return root


@pytest.mark.parametrize("compress", [True, False])
def test_fashion_mnist_reads_idx_files_from_data_dir(tmp_path, compress):
    fake_fashion(tmp_path / "fm", compress=compress)
    d = load_dataset("fashion_mnist", tmp_path / "fm", val_fraction=0.2)
    assert (len(d.train), len(d.val), len(d.test)) == (40, 10, 20)
    assert d.train.images.shape[1:] == (1, 28, 28) and d.num_classes == 10


def test_fashion_mnist_wxy_data_env_and_subdir(tmp_path, monkeypatch):
    fake_fashion(tmp_path / "fashion_mnist")
    monkeypatch.setenv("WXY_DATA", str(tmp_path))
    d = load_dataset("fashion_mnist", val_fraction=0.2)
    assert len(d.test) == 20 and str(tmp_path) in d.source


def test_wrong_magic_number_is_a_clear_error(tmp_path):
    root = fake_fashion(tmp_path / "fm")
    write_idx(root / "train-images-idx3-ubyte", np.zeros((50, 28, 28)), 1234)
    with pytest.raises(CorruptDatasetError, match="magic number 1234, expected 2051"):
        load_dataset("fashion_mnist", root)


def test_truncated_file_is_a_clear_error(tmp_path):
    root = fake_fashion(tmp_path / "fm", compress=False)
    path = root / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CorruptDatasetError, match="truncated"):
        load_dataset("fashion_mnist", root)


def test_broken_gzip_is_a_clear_error(tmp_path):
    root = fake_fashion(tmp_path / "fm")
    (root / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(CorruptDatasetError, match="train-labels"):
        load_dataset("fashion_mnist", root)


def test_missing_cifar_names_dataset_places_and_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("WXY_DATA", raising=False)
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("cifar10", tmp_path)
    msg = str(info.value)
    assert "cifar10" in msg and str(tmp_path) in msg and "cifar-10-batches-py" in msg and "--data-dir" in msg


def test_missing_fashion_mnist_message_names_apt_package(tmp_path, monkeypatch):
    monkeypatch.delenv("WXY_DATA", raising=False)
    monkeypatch.setattr("wxy_hw.data.sources.DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist") as info:
        load_dataset("fashion_mnist", tmp_path)
    assert str(tmp_path / "nowhere") in str(info.value) and "\n" not in str(info.value)


def write_cifar(root: Path, hundred: bool = False, n: int = 30) -> Path:
    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    classes = 100 if hundred else 10
    key = b"fine_labels" if hundred else b"labels"

    def batch(count):
        return {b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
                key: list(rng.integers(0, classes, count))}

    if hundred:
        for name in ("train", "test"):
            with open(root / name, "wb") as f:
                pickle.dump(batch(n), f)
        with open(root / "meta", "wb") as f:
            pickle.dump({b"fine_label_names": [f"c{i}".encode() for i in range(100)]}, f)
    else:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            with open(root / name, "wb") as f:
                pickle.dump(batch(n), f)
        with open(root / "batches.meta", "wb") as f:
            pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, f)
    return root


def test_cifar10_python_batches(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py")
    d = load_dataset("cifar10", tmp_path, val_fraction=0.1)
    assert len(d.train) + len(d.val) == 150 and len(d.test) == 30
    assert d.train.images.shape[1:] == (3, 32, 32) and d.class_names[3] == "c3" and d.allow_flip


def test_cifar100_fine_labels_and_grey_28px(tmp_path):
    root = write_cifar(tmp_path / "c100", hundred=True)
    d = load_dataset("cifar100", root, image_size=28, channels=1)
    assert d.num_classes == 100 and d.test.images.shape[1:] == (1, 28, 28)


def test_corrupt_cifar_pickle(tmp_path):
    root = write_cifar(tmp_path / "cifar-10-batches-py")
    (root / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(CorruptDatasetError, match="data_batch_3"):
        load_dataset("cifar10", tmp_path)


@pytest.mark.slow
def test_mnist5k_and_digits_load_offline():
    m = load_dataset("mnist5k")
    assert len(m.train) + len(m.val) + len(m.test) == 5000 and m.train.images.shape[1:] == (1, 28, 28)
    d = load_dataset("digits", image_size=32, channels=3)
    assert len(d.train) + len(d.val) + len(d.test) == 1797 and d.train.images.shape[1:] == (3, 32, 32)
    assert not d.allow_flip  # flipping digits would change their labels
    assert d.train.images.max() > 200  # 0..16 intensities were rescaled to 0..255


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir() and not os.environ.get("WXY_DATA"),
                    reason="Debian's dataset-fashion-mnist is not installed (scripts/setup.sh installs it)")
def test_real_fashion_mnist_split_sizes():
    d = load_dataset("fashion_mnist", subset=1000)
    full = load_dataset("fashion_mnist")
    assert (len(full.train), len(full.val), len(full.test)) == (54000, 6000, 10000)
    assert len(d.train) == 1000 and len(d.val) == 200 and len(d.test) == 1000
    assert full.train.images.dtype == torch.uint8  # held once, compactly


def test_validation_split_is_deterministic_stratified_and_disjoint():
    images = torch.arange(200, dtype=torch.uint8).view(200, 1, 1, 1).expand(200, 1, 2, 2).contiguous()
    labels = torch.arange(200) % 4
    tr1, va1 = carve_validation(images, labels, 0.1, seed=3)
    tr2, va2 = carve_validation(images, labels, 0.1, seed=3)
    assert torch.equal(va1.images, va2.images)
    assert len(va1) == 20 and torch.bincount(va1.labels).tolist() == [5, 5, 5, 5]
    ids_tr = set(tr1.images[:, 0, 0, 0].tolist())
    assert ids_tr.isdisjoint(va1.images[:, 0, 0, 0].tolist()) and len(ids_tr) == 180
    _, va3 = carve_validation(images, labels, 0.1, seed=4)
    assert not torch.equal(va1.images, va3.images)


def test_geometry_pad_crop_and_channels():
    x = torch.full((2, 1, 28, 28), 7, dtype=torch.uint8)
    padded = fit_geometry(x, 32)
    assert padded.shape == (2, 1, 32, 32) and padded[0, 0, 0, 0] == 0 and padded[0, 0, 2, 2] == 7
    assert torch.equal(fit_geometry(padded, 28), x)
    assert fit_geometry(x, 20).shape == (2, 1, 20, 20)
    rgb = fit_channels(x, 3)
    assert rgb.shape == (2, 3, 28, 28) and rgb.data_ptr() == x.data_ptr()  # a view, not a copy
    assert fit_channels(torch.full((1, 3, 4, 4), 100, dtype=torch.uint8), 1).unique().item() == 100


def test_synthetic_is_deterministic(synthetic):
    again = load_dataset("synthetic", seed=0)
    assert torch.equal(synthetic.train.images, again.train.images)
    assert synthetic.num_classes == 10 and len(synthetic.test) == 200


def test_loader_covers_split_normalises_and_reshuffles_per_epoch(synthetic):
    loader = BatchLoader(synthetic.train, 64, mean=synthetic.mean, std=synthetic.std, shuffle=True, seed=1)
    ys = torch.cat([y for _, y in loader])
    assert sorted(ys.tolist()) == sorted(synthetic.train.labels.tolist())
    xs = torch.cat([x for x, _ in loader])
    assert abs(xs.mean().item()) < 0.05 and abs(xs.std().item() - 1) < 0.05
    order0 = torch.cat([y for _, y in loader])
    loader.set_epoch(1)
    order1 = torch.cat([y for _, y in loader])
    loader.set_epoch(0)
    assert torch.equal(order0, torch.cat([y for _, y in loader])) and not torch.equal(order0, order1)


def test_augmentation_shifts_but_keeps_content():
    img = torch.zeros(1, 1, 16, 16, dtype=torch.uint8)
    img[0, 0, 6:10, 6:10] = 255
    split = Split(img.repeat(64, 1, 1, 1), torch.zeros(64, dtype=torch.long))
    loader = BatchLoader(split, 64, mean=(0.0,), std=(1.0,), augment=True, seed=0)
    x, _ = next(iter(loader))
    assert x.shape == (64, 1, 16, 16)
    assert torch.allclose(x.sum(dim=(1, 2, 3)), torch.full((64,), 16.0))  # the square is never cropped away
    assert len({tuple(v.nonzero()[0].tolist()) for v in x}) > 3  # but it moves


def test_make_loaders_and_bad_arguments(synthetic):
    loaders = make_loaders(synthetic, 32)
    assert set(loaders) == {"train", "val", "test"}
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        load_dataset("synthetic", channels=2)
