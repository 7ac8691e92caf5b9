"""Hendrycks-style common corruptions as batched torch ops, severities 1–5 (0 = clean).

Severity parameters are those of CIFAR-10-C (Hendrycks & Dietterich, ICLR 2019,
``make_cifar_c.py``), the right scale for 28–32 px images. We implement them in torch rather
than calling ``imagecorruptions`` because that package (a) refuses images under 32 px (our
Fashion-MNIST is 28 px), (b) carries ImageNet-scale parameters, (c) breaks in glass_blur,
gaussian_blur and fog with current numpy / scikit-image, and (d) works one image at a time in
numpy, too slow for training-time augmentation. Every op here takes a float batch in [0, 1]
of shape (N, C, H, W), any C, and a ``torch.Generator`` so a corrupted set is a pure function
of (images, corruption, severity, seed).

Where an op differs from the reference, it says so: motion blur reproduces ImageMagick's
one-sided Gaussian line kernel, zoom blur resamples bilinearly instead of with scipy's cubic
spline, rotation (not part of CIFAR-C; the seed's figure) rotates by ±15·severity degrees.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from ..utils import atomic_torch_save
from .base import Split

Corruption = Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]

# The nine corruptions of the seed's ADA tables, in its column order, then rotation.
SEED_CORRUPTIONS = ("glass_blur", "shot_noise", "speckle_noise", "gaussian_blur", "motion_blur", "defocus_blur",
                    "impulse_noise", "zoom_blur", "gaussian_noise")
SEVERITIES = (1, 2, 3, 4, 5)


def _param(table: Sequence, severity: int, name: str):
    if not 1 <= severity <= len(table):
        raise ValueError(f"{name}: severity must be 0 (clean) or 1..{len(table)}, got {severity}")
    return table[severity - 1]


# Random numbers are drawn on the generator's device and moved: a CPU generator then gives the
# same corrupted images whether the batch lives on the CPU or a GPU.
def _rand_like(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(x.shape, generator=gen, device=gen.device, dtype=x.dtype).to(x.device)


def _randn_like(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(x.shape, generator=gen, device=gen.device, dtype=x.dtype).to(x.device)


# --- noise ------------------------------------------------------------------------------
def gaussian_noise(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    c = _param((0.04, 0.06, 0.08, 0.09, 0.10), severity, "gaussian_noise")
    return (x + c * _randn_like(x, gen)).clamp(0, 1)


def shot_noise(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    c = _param((500, 250, 100, 75, 50), severity, "shot_noise")
    return (torch.poisson((x * c).to(gen.device), generator=gen).to(x.device) / c).clamp(0, 1)


def impulse_noise(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    """Salt-and-pepper on a fraction c of the values, half salt, half pepper (skimage's 's&p')."""
    c = _param((0.01, 0.02, 0.03, 0.05, 0.07), severity, "impulse_noise")
    hit = _rand_like(x, gen) < c
    salt = (_rand_like(x, gen) < 0.5).to(x.dtype)
    return torch.where(hit, salt, x)


def speckle_noise(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    c = _param((0.06, 0.1, 0.12, 0.16, 0.2), severity, "speckle_noise")
    return (x + x * c * _randn_like(x, gen)).clamp(0, 1)


# --- blur -------------------------------------------------------------------------------
def _filter(x: torch.Tensor, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """Correlate every channel with one 2-D kernel (odd size), padding with ``mode``."""
    n, c, h, w = x.shape
    kh, kw = kernel.shape
    padded = F.pad(x.reshape(n * c, 1, h, w), (kw // 2, kw // 2, kh // 2, kh // 2), mode=mode)
    return F.conv2d(padded, kernel.to(x)[None, None]).reshape(n, c, h, w)


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """scipy/skimage's Gaussian: radius int(truncate·σ + 0.5), normalised to sum 1."""
    radius = max(int(truncate * sigma + 0.5), 1)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).float()


def blur_gaussian(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with edge replication (skimage.filters.gaussian's mode='nearest')."""
    k = gaussian_kernel1d(sigma)
    return _filter(_filter(x, k[None, :], "replicate"), k[:, None], "replicate")


def gaussian_blur(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    sigma = _param((0.4, 0.6, 0.7, 0.8, 1.0), severity, "gaussian_blur")
    return blur_gaussian(x, sigma).clamp(0, 1)


def _disk(radius: float, alias_blur: float) -> torch.Tensor:
    """Hendrycks' defocus kernel: an aliased disk, normalised, smoothed by a 3×3 Gaussian."""
    r = 8 if radius <= 8 else int(math.ceil(radius))
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    disk = ((xx ** 2 + yy ** 2) <= radius ** 2).double()
    disk /= disk.sum()
    g = torch.exp(-0.5 * (torch.arange(-1, 2, dtype=torch.float64) / alias_blur) ** 2)
    g /= g.sum()
    disk = F.conv2d(F.pad(disk[None, None], (1, 1, 1, 1), mode="reflect"), (g[:, None] * g[None, :])[None, None])[0, 0]
    nz = disk.abs().sum(0) > 0  # crop the all-zero margin: same result, far cheaper convolution
    k = int(nz.nonzero().min())
    return disk[k:disk.shape[0] - k, k:disk.shape[1] - k].float()


def defocus_blur(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    radius, alias = _param(((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)), severity, "defocus_blur")
    return _filter(x, _disk(radius, alias), "reflect").clamp(0, 1)


def glass_blur(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    """Gaussian blur, local pixel swaps in Hendrycks' sequential scan order, Gaussian blur again.

    The scan runs over pixels (bottom-right to top-left) as the reference does — each swap sees
    the previous swaps — vectorised over the batch. As in the reference, offsets are drawn from
    [-δ, δ) and the image is quantised to 8 bits before swapping.
    """
    sigma, delta, iterations = _param(((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
                                      severity, "glass_blur")
    n, _, h, w = x.shape
    out = torch.round(blur_gaussian(x, sigma).clamp(0, 1) * 255).div(255).contiguous()
    batch = torch.arange(n, device=x.device)
    for _ in range(iterations):
        for i in range(h - delta, delta, -1):
            for j in range(w - delta, delta, -1):
                d = torch.randint(-delta, delta, (2, n), generator=gen, device=gen.device).to(x.device)
                ii, jj = i + d[1], j + d[0]
                here = out[:, :, i, j].clone()
                out[:, :, i, j] = out[batch, :, ii, jj]
                out[batch, :, ii, jj] = here
    return blur_gaussian(out, sigma).clamp(0, 1)


def _motion_kernel(radius: int, sigma: float, angle_deg: float) -> torch.Tensor:
    """ImageMagick's MotionBlurImage kernel: a one-sided Gaussian along a line at ``angle``."""
    width = 2 * radius + 1
    k = torch.exp(-0.5 * (torch.arange(width, dtype=torch.float64) / sigma) ** 2)
    k /= k.sum()
    a = math.radians(angle_deg)
    px, py = width * math.sin(a), width * math.cos(a)
    norm = math.hypot(px, py)
    size = 2 * width + 1
    kernel = torch.zeros(size, size, dtype=torch.float64)
    for i in range(width):
        ox = int(math.ceil(i * py / norm - 0.5))
        oy = int(math.ceil(i * px / norm - 0.5))
        kernel[width + oy, width + ox] += k[i]
    return kernel.float()


def motion_blur(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    radius, sigma = _param(((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)), severity, "motion_blur")
    angles = torch.rand(x.shape[0], generator=gen, device=gen.device) * 90 - 45
    n, c, h, w = x.shape
    kernels = torch.stack([_motion_kernel(radius, sigma, float(a)) for a in angles]).to(x)
    kk = kernels.shape[-1]
    padded = F.pad(x, (kk // 2,) * 4, mode="replicate")  # ImageMagick's default virtual pixel: edge
    # one kernel per image: grouped convolution over the (image, channel) planes
    weight = kernels.repeat_interleave(c, 0)[:, None]
    out = F.conv2d(padded.reshape(1, n * c, h + kk - 1, w + kk - 1), weight, groups=n * c)
    return out.reshape(n, c, h, w).clamp(0, 1)


def _affine(x: torch.Tensor, theta: torch.Tensor, padding: str) -> torch.Tensor:
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)


def zoom_blur(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    top = _param((1.06, 1.11, 1.16, 1.21, 1.26), severity, "zoom_blur")
    zooms = torch.arange(1.0, top - 1e-9, 0.01, dtype=torch.float64)
    acc = x.clone()
    n = x.shape[0]
    for z in zooms.tolist():
        theta = torch.tensor([[1 / z, 0, 0], [0, 1 / z, 0]]).expand(n, 2, 3)
        acc += _affine(x, theta, "border")  # centre crop of 1/z of the side, scaled back up
    return (acc / (len(zooms) + 1)).clamp(0, 1)


def rotation(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    """Rotate each image by ±15·severity degrees (random sign), bilinear, zero (black) fill."""
    angle = math.radians(15 * _param((1, 2, 3, 4, 5), severity, "rotation"))
    sign = torch.where(torch.rand(x.shape[0], generator=gen, device=gen.device) < 0.5, -1.0, 1.0).cpu()
    cos, sin = math.cos(angle), math.sin(angle) * sign
    theta = torch.zeros(x.shape[0], 2, 3)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    return _affine(x, theta, "zeros").clamp(0, 1)


CORRUPTIONS: dict[str, Corruption] = {f.__name__: f for f in (
    gaussian_noise, shot_noise, impulse_noise, speckle_noise, gaussian_blur, defocus_blur, glass_blur, motion_blur,
    zoom_blur, rotation)}


def available_corruptions() -> list[str]:
    """Names accepted by corrupt()."""
    return list(CORRUPTIONS)


def check_corruptions(names: Sequence[str]) -> list[str]:
    """Validate corruption names (one clear error listing the valid ones)."""
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown:
        raise ValueError(f"unknown corruption(s) {unknown}; choose from: {', '.join(CORRUPTIONS)}")
    return list(names)


def corrupt(x: torch.Tensor, name: str, severity: int, gen: torch.Generator | None = None) -> torch.Tensor:
    """Apply one corruption at one severity to a float batch in [0, 1]; severity 0 returns x."""
    check_corruptions([name])
    if severity == 0:
        return x
    if x.dim() != 4:
        raise ValueError(f"corrupt() expects a batch (N, C, H, W), got shape {tuple(x.shape)}")
    gen = gen if gen is not None else torch.Generator(device=x.device).manual_seed(0)
    return CORRUPTIONS[name](x, severity, gen)


def random_corruption(x: torch.Tensor, names: Sequence[str], gen: torch.Generator,
                      severities: Sequence[int] = SEVERITIES) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt each image with a random corruption from ``names`` at a random severity.

    Returns (corrupted batch, index into ``names`` per image). Images sharing (corruption,
    severity) are processed together, so a batch costs at most len(names)·len(severities) ops.
    """
    n = x.shape[0]
    kind = torch.randint(len(names), (n,), generator=gen, device=gen.device).to(x.device)
    sev = torch.tensor(list(severities), device=x.device)[
        torch.randint(len(severities), (n,), generator=gen, device=gen.device).to(x.device)]
    out = x.clone()
    for k, name in enumerate(names):
        for s in severities:
            idx = ((kind == k) & (sev == s)).nonzero().flatten()
            if len(idx):
                out[idx] = corrupt(x[idx], name, int(s), gen)
    return out, kind


def _seed_for(seed: int, name: str, severity: int) -> int:
    digest = hashlib.sha256(f"{seed}:{name}:{severity}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 62) - 1)


def corrupt_split(split: Split, name: str, severity: int, seed: int = 0, chunk: int = 2000,
                  cache_dir: str | Path | None = None) -> Split:
    """The split with every image corrupted (uint8, like CIFAR-C), deterministic in (images, name, severity, seed).

    With ``cache_dir`` the result is stored once under a key hashing the images, so later runs
    (and other methods' evaluations) read the same corrupted set.
    """
    check_corruptions([name])
    if severity == 0:
        return split
    path = None
    if cache_dir is not None:
        h = hashlib.sha256(split.images.numpy().tobytes()).hexdigest()[:16]
        path = Path(cache_dir) / f"{h}_n{len(split)}" / f"{name}_s{severity}_seed{seed}.pt"
        if path.exists():
            return Split(torch.load(path, weights_only=True), split.labels)
    gen = torch.Generator().manual_seed(_seed_for(seed, name, severity))
    parts = []
    for i in range(0, len(split), chunk):
        x = split.images[i:i + chunk].float().div(255.0)
        parts.append(torch.round(corrupt(x, name, severity, gen) * 255).to(torch.uint8))
    images = torch.cat(parts) if parts else split.images.clone()
    if path is not None:
        atomic_torch_save(images, path)
    return Split(images, split.labels)


def load_hendrycks_c(directory: str | Path, name: str, severity: int) -> Split:
    """One corruption × severity of a published corrupted test set in Hendrycks' on-disk format.

    CIFAR-10-C / CIFAR-100-C ship ``<corruption>.npy`` — uint8 (5·n, H, W, C), severities 1..5
    stacked in blocks of n — and ``labels.npy``. Use it to evaluate on the official sets
    instead of regenerating them (``experiments/corruption_robustness.py --corrupted-dir``).
    """
    from .base import DatasetNotFoundError

    directory = Path(directory)
    if not 1 <= severity <= 5:
        raise ValueError(f"severity must be 1..5 for an on-disk corrupted set, got {severity}")
    path, labels_path = directory / f"{name}.npy", directory / "labels.npy"
    for p in (path, labels_path):
        if not p.exists():
            raise DatasetNotFoundError(f"{p} not found: a Hendrycks-style corrupted set needs <corruption>.npy and "
                                       f"labels.npy in {directory} (e.g. the extracted CIFAR-10-C archive)")
    import numpy as np

    images, labels = _hendrycks_arrays(path, labels_path)
    n = len(images) // 5
    block = np.array(images[(severity - 1) * n: severity * n])  # a writable copy of one severity
    return Split(torch.from_numpy(block).permute(0, 3, 1, 2).contiguous(),
                 torch.from_numpy(np.asarray(labels[(severity - 1) * n: severity * n], dtype=np.int64)))


def _npy(path: Path) -> Any:
    """``path`` as a memory-mapped .npy array (its header read, no data): never a pickle, and a file that is not a
    plain array is one line naming it."""
    import numpy as np

    from .base import CorruptDatasetError

    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        why = "it holds pickled Python objects, which wxy_hw never loads" if "pickle" in str(exc).lower() or \
            "python objects" in str(exc).lower() else (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)
        raise CorruptDatasetError(f"{path} is not a plain numeric .npy array ({why.splitlines()[0]}); give the "
                                  "extracted CIFAR-10-C / CIFAR-100-C files (uint8 images, integer labels)") from None


def _hendrycks_arrays(path: Path, labels_path: Path) -> tuple[Any, Any]:
    """A corruption's images and the labels, checked: uint8 (5·n, H, W, C) and n integer labels per severity."""
    import numpy as np

    from .base import CorruptDatasetError

    images, labels = _npy(path), _npy(labels_path)
    if images.ndim != 4 or images.dtype != np.uint8 or len(images) % 5 or labels.ndim != 1 or \
            labels.dtype.kind not in "iu" or len(labels) != len(images):
        raise CorruptDatasetError(f"{path}: expected uint8 (5·n, H, W, C) with n integer labels per severity in "
                                  f"labels.npy, got {images.dtype} {images.shape} and labels {labels.dtype} "
                                  f"{labels.shape}")
    return images, labels


def check_hendrycks_dir(directory: str | Path, names: Sequence[str]) -> None:
    """Refuse, before any work, an on-disk corrupted set that lacks a corruption or holds anything but plain
    arrays of the right shape (headers only are read)."""
    from .base import DatasetNotFoundError

    directory = Path(directory)
    if not directory.is_dir():
        raise DatasetNotFoundError(f"--corrupted-dir {directory} is not a folder; give the folder of the extracted "
                                   "CIFAR-10-C archive (<corruption>.npy and labels.npy)")
    for name in names:
        path, labels_path = directory / f"{name}.npy", directory / "labels.npy"
        for p in (path, labels_path):
            if not p.is_file():
                raise DatasetNotFoundError(f"{p} not found: a Hendrycks-style corrupted set needs <corruption>.npy "
                                           f"and labels.npy in {directory} (e.g. the extracted CIFAR-10-C archive)")
        _hendrycks_arrays(path, labels_path)
