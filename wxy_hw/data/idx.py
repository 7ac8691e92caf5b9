"""Reader for the idx(.gz) format used by MNIST and Fashion-MNIST."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch

from .base import CorruptDatasetError

_IMAGES_MAGIC = 2051
_LABELS_MAGIC = 2049


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise CorruptDatasetError(f"{path}: cannot be read as (gzipped) idx data ({exc}). "
                                  "Re-install or re-download the file.") from exc


def read_idx(path: str | Path, expect: str) -> torch.Tensor:
    """Read an idx file of images (uint8 N×H×W) or labels (uint8 N), checking magic and length."""
    path = Path(path)
    raw = _read_bytes(path)
    magic_wanted = _IMAGES_MAGIC if expect == "images" else _LABELS_MAGIC
    header_len = 16 if expect == "images" else 8
    if len(raw) < header_len:
        raise CorruptDatasetError(f"{path}: {len(raw)} bytes is shorter than an idx header; the file is truncated")
    magic = struct.unpack(">i", raw[:4])[0]
    if magic != magic_wanted:
        raise CorruptDatasetError(f"{path}: magic number {magic}, expected {magic_wanted} for idx {expect}; "
                                  "this is not an idx file of that kind")
    if expect == "images":
        n, rows, cols = struct.unpack(">iii", raw[4:16])
        shape: tuple[int, ...] = (n, rows, cols)
    else:
        n = struct.unpack(">i", raw[4:8])[0]
        shape = (n,)
    need = int(np.prod(shape))
    body = len(raw) - header_len
    if body != need:
        raise CorruptDatasetError(f"{path}: header announces {need} bytes of data but the file holds {body}; "
                                  "the file is truncated or corrupt")
    array = np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(shape)
    return torch.from_numpy(array.copy())
