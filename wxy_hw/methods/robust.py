"""Robust training: plain corruption augmentation, ADA, and PGD adversarial training.

All three build their training batch from the loader's batch (``prepare_batch``) in pixel
space: the clean images are un-normalised, corrupted or attacked, clipped to [0, 1] and
normalised again. ``augment`` and ``ada`` see exactly the same views (every clean image plus
one corrupted copy), so the only difference between them is ADA's relation loss.
"""
from __future__ import annotations

import numbers
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.corruptions import CORRUPTIONS, SEVERITIES, random_corruption
from ..models.multi_exit import MultiExitOutput
from ..models.wrappers import PixelSpaceClassifier  # also re-exported by wxy_hw.methods
from . import options as check
from .base import Batch, Method, kd_kl

# The seed trains augmentation and ADA with only these two corruptions; the other seven of its
# tables (and rotation) are then unseen at training time.
TRAIN_CORRUPTIONS = ("gaussian_noise", "gaussian_blur")


def training_corruptions(method: str, corruptions: Any) -> tuple[str, ...]:
    """At least one known corruption name: a sequence of names, or one comma-separated string (as
    ``--method-arg corruptions=gaussian_noise,rotation`` gives it)."""
    names = [c.strip() for c in corruptions.split(",") if c.strip()] if isinstance(corruptions, str) else corruptions
    rule = f"comma-separated corruption names from: {', '.join(CORRUPTIONS)}"
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(c, str) for c in names):
        raise check.OptionError(method, "corruptions", corruptions, rule, ",".join(TRAIN_CORRUPTIONS))
    unknown = [c for c in names if c not in CORRUPTIONS]
    if unknown:  # the unknown ones named: a typo among several names is found at once
        raise check.OptionError(method, "corruptions", corruptions, f"{rule} (unknown corruption(s): "
                                f"{', '.join(unknown)})", ",".join(TRAIN_CORRUPTIONS))
    return tuple(names)


def training_severities(method: str, severities: Any) -> tuple[int, ...]:
    """At least one severity, each an integer from 1 to 5."""
    ok = isinstance(severities, (list, tuple)) and severities and all(
        isinstance(s, numbers.Integral) and not isinstance(s, bool) and 1 <= int(s) <= 5 for s in severities)
    if not ok:
        raise check.OptionError(method, "severities", severities, "a list of integers from 1 to 5", "[1,3,5]")
    return tuple(int(s) for s in severities)


def attack_budget(method: str, epsilon: Any, steps: Any, step_size: Any) -> tuple[float, int, float]:
    """(epsilon, steps, step size) of an L∞ PGD attack in pixel units; the step size defaults to 2.5·ε / steps."""
    eps = check.real(method, "epsilon", epsilon, "a number in (0, 1) (epsilon is in pixel units)",
                     lambda v: 0 < v < 1, 0.1)
    n = check.count(method, "steps", steps, 5)
    size = 2.5 * eps / n if step_size is None else check.positive(method, "step_size", step_size, 0.05)
    return eps, n, size


class _CorruptedViews(Method):
    """Shared batch builder: [clean; corrupted] with a random corruption and severity per image."""

    multi_exit = False

    def __init__(self, corruptions: Sequence[str] = TRAIN_CORRUPTIONS, severities: Sequence[int] = SEVERITIES,
                 seed: int = 0) -> None:
        super().__init__()
        self.corruptions = training_corruptions(self.name, corruptions)
        self.severities = training_severities(self.name, severities)
        self.seed = check.seed(self.name, seed)

    def prepare_batch(self, batch: Batch, model: nn.Module) -> Batch:
        if not model.training:
            return batch
        gen = self.random_generator(torch.device("cpu"))
        with torch.no_grad():
            pixels = self.to_pixels(batch.x).clamp(0, 1)
            corrupted, kind = random_corruption(pixels, self.corruptions, gen, self.severities)
            x = torch.cat([batch.x, self.from_pixels(corrupted)])
        n = len(batch.y)
        return Batch(x, torch.cat([batch.y, batch.y]), domain=torch.cat([torch.zeros_like(kind), kind + 1]), n_clean=n)


class Augment(_CorruptedViews):
    """Data augmentation: cross-entropy on each clean image and on one corrupted copy of it."""

    name = "augment"

    def forward(self, out: MultiExitOutput, batch: Batch) -> dict[str, torch.Tensor]:
        return {"ce": F.cross_entropy(out.final, batch.y)}


def _pooled_unit(feature_map: torch.Tensor) -> torch.Tensor:
    """Channel vector of a stage (global average pool), scaled to unit length."""
    v = feature_map.mean((2, 3)) if feature_map.dim() == 4 else feature_map
    return F.normalize(v.flatten(1), dim=1)


class ADA(_CorruptedViews):
    """ADA — Augment Data Augmentation by relationship: corrupted images must yield the clean features.

    Loss on a batch of clean images x and corrupted copies x̃ (same labels y):

        CE(f(x), y) + CE(f(x̃), y)                                 (both views are classified)
      + λ_feat · Σ_stages mean_i ‖u_s(x̃_i) − sg(u_s(x_i))‖²        (same features, every stage)
      + λ_rel  · Σ_stages ‖G_s(x̃) − sg(G_s(x))‖²_F / n²            (same relations within the batch)
      + λ_kl   · T² · KL(sg(p_T(x)) ‖ p_T(x̃))                      (same prediction)

    u_s is stage s's globally pooled channel vector scaled to unit length and G_s = U_s U_sᵀ the
    batch's cosine-similarity matrix. Why this form: unit length makes the feature term
    scale-free (BN can otherwise shrink features to cheat it); the Gram term carries the
    "relationship" of the method's name — the corrupted image must sit among the other images
    where its clean original sits, not merely near it; the clean view is the anchor (stop-
    gradient), so robustness is bought by moving the corrupted features, never by dragging the
    clean ones (and clean accuracy) toward the corrupted distribution.
    """

    name = "ada"

    def __init__(self, corruptions: Sequence[str] = TRAIN_CORRUPTIONS, severities: Sequence[int] = SEVERITIES,
                 seed: int = 0, feature_weight: float = 1.0, relation_weight: float = 1.0, kl_weight: float = 1.0,
                 temperature: float = 3.0) -> None:
        super().__init__(corruptions, severities, seed)
        self.feature_weight = check.nonnegative(self.name, "feature_weight", feature_weight, 1.0)
        self.relation_weight = check.nonnegative(self.name, "relation_weight", relation_weight, 1.0)
        self.kl_weight = check.nonnegative(self.name, "kl_weight", kl_weight, 1.0)
        self.temperature = check.positive(self.name, "temperature", temperature, 3)

    def forward(self, out: MultiExitOutput, batch: Batch) -> dict[str, torch.Tensor]:
        terms = {"ce": F.cross_entropy(out.final, batch.y)}
        n = batch.n_clean
        if n is None:  # evaluation-style batch without views: plain CE
            return terms
        maps = out.stage_maps or out.features
        feat = out.final.new_zeros(())
        rel = out.final.new_zeros(())
        for m in maps:
            u = _pooled_unit(m)
            clean, corrupted = u[:n].detach(), u[n:]
            feat = feat + (corrupted - clean).pow(2).sum(1).mean()
            rel = rel + (corrupted @ corrupted.T - clean @ clean.T).pow(2).sum() / n ** 2
        terms["feature"] = self.feature_weight * feat
        terms["relation"] = self.relation_weight * rel
        t = self.temperature
        terms["kl"] = self.kl_weight * t * t * kd_kl(out.final[n:], out.final[:n].detach(), t)
        return terms


def pgd_examples(method: Method, model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float, steps: int,
                 step_size: float) -> torch.Tensor:
    """L∞ PGD examples (torchattacks, random start) of normalised images ``x`` against ``model``, normalised back.

    torchattacks draws its random start from the global RNG: it is forked from the method's own generator, so
    runs (and resumed runs) are reproducible without disturbing anyone else's stream."""
    import torchattacks  # imported lazily: only adversarial methods and evaluation need it

    wrapped = PixelSpaceClassifier(model, method._mean.flatten().tolist(), method._std.flatten().tolist())
    attack = torchattacks.PGD(wrapped, eps=epsilon, alpha=step_size, steps=steps, random_start=True)
    gen = method.random_generator(torch.device("cpu"))
    seed = int(torch.randint(2 ** 62, (1,), generator=gen))
    with torch.random.fork_rng(devices=[x.device] if x.is_cuda else []):
        torch.manual_seed(seed)
        adv = attack(method.to_pixels(x).clamp(0, 1), y)
    return method.from_pixels(adv.detach())


class AdversarialTraining(Method):
    """PGD adversarial training (Madry et al., ICLR 2018): CE on L∞ PGD examples made each step.

    The attack runs in pixel space with torchattacks' PGD (random start), the model in eval
    mode while it is attacked (BN statistics come from the training forward only).
    ``clean_weight`` > 0 adds CE on the clean images (a TRADES-free mix; 0 = Madry).
    """

    name = "adv"
    multi_exit = False

    def __init__(self, epsilon: float = 0.1, steps: int = 5, step_size: float | None = None,
                 clean_weight: float = 0.0, seed: int = 0) -> None:
        super().__init__()
        self.epsilon, self.steps, self.step_size = attack_budget(self.name, epsilon, steps, step_size)
        self.clean_weight = check.nonnegative(self.name, "clean_weight", clean_weight, 0.5)
        self.seed = check.seed(self.name, seed)

    def prepare_batch(self, batch: Batch, model: nn.Module) -> Batch:
        if not model.training:
            return batch
        x_adv = pgd_examples(self, model, batch.x, batch.y, self.epsilon, self.steps, self.step_size)
        if self.clean_weight > 0:
            n = len(batch.y)
            return Batch(torch.cat([x_adv, batch.x]), torch.cat([batch.y, batch.y]), n_clean=n)
        return Batch(x_adv, batch.y)

    def forward(self, out: MultiExitOutput, batch: Batch) -> dict[str, torch.Tensor]:
        if self.clean_weight > 0 and batch.n_clean is not None:
            n = batch.n_clean
            return {"ce_adv": F.cross_entropy(out.final[:n], batch.y[:n]),
                    "ce_clean": self.clean_weight * F.cross_entropy(out.final[n:], batch.y[n:])}
        return {"ce": F.cross_entropy(out.final, batch.y)}

    def options(self) -> dict[str, Any]:
        return dict(epsilon=self.epsilon, steps=self.steps, step_size=self.step_size, clean_weight=self.clean_weight,
                    seed=self.seed)
