"""Robustness metrics: accuracy per corruption × severity, mCE / relative mCE, adversarial accuracy,
and the clean-vs-corrupted feature geometry (PCA, cosine consistency)."""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
import torch.nn as nn

from ..data.base import Split
from ..data.corruptions import SEVERITIES, check_corruptions, corrupt_split, load_hendrycks_c
from ..data.loader import BatchLoader
from ..models.evaluation import evaluate, model_device
from ..models.wrappers import PixelSpaceClassifier
from ..utils import eval_mode

# Attack budgets in pixel units ([0, 1]); the usual Fashion-MNIST choices (L∞ 0.1; L2 1.0 ≈ 0.036 per pixel).
DEFAULT_ATTACKS: dict[str, dict[str, float]] = {
    "fgsm": dict(eps=0.1),
    "pgd_linf": dict(eps=0.1, steps=20),
    "pgd_l2": dict(eps=1.0, steps=20),
}


def batches_of(split: Split, mean: Sequence[float], std: Sequence[float], batch_size: int = 500) -> list:
    """The split as normalised (x, y) batches (materialised once, reused across chips)."""
    return list(BatchLoader(split, batch_size, mean=tuple(mean), std=tuple(std)))


def corrupted_view(split: Split, name: str, severity: int, *, seed: int = 0, cache_dir: str | Path | None = None,
                   corrupted_dir: str | Path | None = None) -> Split:
    """``split`` corrupted: generated (and cached), or — with ``corrupted_dir`` — read from a published
    Hendrycks-format set, whose first len(split) images must be ``split``'s images in order."""
    if corrupted_dir is None:
        return corrupt_split(split, name, severity, seed=seed, cache_dir=cache_dir)
    block = load_hendrycks_c(corrupted_dir, name, severity)
    if len(block) < len(split) or not torch.equal(block.labels[:len(split)], split.labels):
        raise ValueError(f"{corrupted_dir}/{name}.npy does not line up with the clean test split (labels differ): "
                         "it must hold the dataset's test images in their original order")
    return Split(block.images[:len(split)], split.labels)


def corruption_rows(model: nn.Module, split: Split, mean: Sequence[float], std: Sequence[float],
                    corruptions: Sequence[str], severities: Sequence[int] = SEVERITIES, *, seed: int = 0,
                    cache_dir: str | Path | None = None, corrupted_dir: str | Path | None = None,
                    batch_size: int = 500, **keys: Any) -> list[dict[str, Any]]:
    """Tidy rows (corruption, severity, exit, accuracy, loss): the clean split first (severity 0)."""
    if corrupted_dir is None:
        check_corruptions(corruptions)
    rows = evaluate(model, batches_of(split, mean, std, batch_size)).rows(**keys, corruption="clean", severity=0)
    for name in corruptions:
        for s in severities:
            corrupted = corrupted_view(split, name, s, seed=seed, cache_dir=cache_dir, corrupted_dir=corrupted_dir)
            rows += evaluate(model, batches_of(corrupted, mean, std, batch_size)).rows(**keys, corruption=name, severity=s)
    return rows


def corruption_errors(rows: Iterable[dict[str, Any]], baseline: str, exit: str, key: str = "method") -> list[dict[str, Any]]:
    """Hendrycks & Dietterich's corruption errors, in %, of every model against ``baseline``.

    With E the top-1 error: CE_c = Σ_s E_{s,c} / Σ_s E^base_{s,c};
    relative CE_c = Σ_s (E_{s,c} − E_clean) / Σ_s (E^base_{s,c} − E^base_clean);
    mCE and relative mCE average them over corruptions. Rows: one per (model, corruption) plus
    one per model with corruption "mean" — NaN where the baseline's denominator is not positive.
    """
    err: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        if str(r["exit"]) == str(exit):
            err[r[key]][r["corruption"]][int(r["severity"])] = 100.0 - float(r["accuracy"])
    if baseline not in err:
        raise ValueError(f"corruption errors need the baseline model {baseline!r} among the rows; have {sorted(err)}")
    base = err[baseline]
    out = []
    for model, table in err.items():
        ce, rel = [], []
        for c, by_sev in table.items():
            if c == "clean":
                continue
            sev = sorted(by_sev)
            num = sum(by_sev[s] for s in sev)
            den = sum(base[c][s] for s in sev)
            rnum = sum(by_sev[s] - table["clean"][0] for s in sev)
            rden = sum(base[c][s] - base["clean"][0] for s in sev)
            ce_c = 100.0 * num / den if den > 0 else math.nan
            rel_c = 100.0 * rnum / rden if rden > 0 else math.nan
            ce.append(ce_c)
            rel.append(rel_c)
            out.append({key: model, "corruption": c, "ce": ce_c, "relative_ce": rel_c,
                        "accuracy": 100.0 - num / len(sev)})
        mean = lambda v: sum(v) / len(v) if v and not any(math.isnan(x) for x in v) else math.nan  # noqa: E731
        out.append({key: model, "corruption": "mean", "ce": mean(ce), "relative_ce": mean(rel),
                    "accuracy": 100.0 - sum(sum(t.values()) for c, t in table.items() if c != "clean")
                    / max(sum(len(t) for c, t in table.items() if c != "clean"), 1)})
    return out


def adversarial_rows(model: nn.Module, split: Split, mean: Sequence[float], std: Sequence[float],
                     attacks: dict[str, dict[str, float]] | None = None, *, exit_index: int = -1,
                     batch_size: int = 250, seed: int = 0, **keys: Any) -> list[dict[str, Any]]:
    """Accuracy (%) of one exit under torchattacks' FGSM / PGD-L∞ / PGD-L2 (white box, pixel space)."""
    import torchattacks

    attacks = DEFAULT_ATTACKS if attacks is None else attacks
    makers = {"fgsm": lambda m, a: torchattacks.FGSM(m, eps=a["eps"]),
              "pgd_linf": lambda m, a: torchattacks.PGD(m, eps=a["eps"], alpha=a.get("alpha", 2.5 * a["eps"] / a["steps"]),
                                                        steps=int(a["steps"]), random_start=True),
              "pgd_l2": lambda m, a: torchattacks.PGDL2(m, eps=a["eps"], alpha=a.get("alpha", 2.5 * a["eps"] / a["steps"]),
                                                        steps=int(a["steps"]), random_start=True)}
    unknown = sorted(set(attacks) - set(makers))
    if unknown:
        raise ValueError(f"unknown attack(s) {unknown}; choose from {sorted(makers)}")
    dev = model_device(model)
    wrapped = PixelSpaceClassifier(model, mean, std, exit_index).to(dev)
    rows = []
    with eval_mode(model):
        for name, params in [("clean", {}), *attacks.items()]:
            correct, n = 0, 0
            attack = makers[name](wrapped, params) if name != "clean" else None
            with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
                torch.manual_seed(seed)  # PGD's random start draws from the global RNG
                for i in range(0, len(split), batch_size):
                    x = split.images[i:i + batch_size].to(dev).float().div(255.0)
                    y = split.labels[i:i + batch_size].to(dev)
                    if attack is not None:
                        x = attack(x, y)
                    with torch.no_grad():
                        correct += int((wrapped(x).argmax(1) == y).sum())
                    n += len(y)
            rows.append(dict(keys, attack=name, epsilon=params.get("eps", 0.0), steps=params.get("steps", 0),
                             accuracy=100.0 * correct / n, n=n))
    return rows


@torch.no_grad()
def deepest_features(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """The pooled feature vector the deepest classifier sees, for every image."""
    model.eval()
    dev = model_device(model)
    return torch.cat([model(x.to(dev)).features[-1].float().cpu() for x, _ in batches])


def feature_consistency(clean: torch.Tensor, corrupted: torch.Tensor) -> float:
    """Mean cosine similarity between each image's clean and corrupted feature (1 = identical direction)."""
    return float(nn.functional.cosine_similarity(clean, corrupted, dim=1).mean())


def pca_2d(*blocks: torch.Tensor) -> list[torch.Tensor]:
    """Project several feature blocks onto the top-2 principal components of all of them together."""
    allf = torch.cat(blocks).double()
    centre = allf.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(allf - centre, full_matrices=False)
    comps = v[:2].T
    return [((b.double() - centre) @ comps).float() for b in blocks]
