"""Flatness of each exit's minimum: weight-noise loss, top Hessian eigenvalue, 1-D loss
landscape, and per-layer gradient norms during training.

The seed paper argues that self-distillation finds flatter minima (Gaussian weight noise
raises the loss less) and gives shallow layers larger gradients; these are the tools that
measure both, per exit of a MultiExitNet. No function here changes the model it is given:
perturbations happen on a deep copy, and the Hessian only reads the weights (its modes are
restored afterwards).
"""
from __future__ import annotations

import copy
import math
import statistics
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.evaluation import evaluate
from ..models.multi_exit import MultiExitOutput

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
ExitIndex = int | str

WEIGHT_LAYERS: tuple[type[nn.Conv2d], type[nn.Linear]] = (nn.Conv2d, nn.Linear)


# --- shared helpers ------------------------------------------------------------------------
def weight_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d | nn.Linear]]:
    """(name, module) for every Conv2d / Linear layer, in model order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, WEIGHT_LAYERS)]


def _reusable(batches: Batches) -> Batches:
    # every function evaluates the batches many times: a one-shot iterator must be kept
    return list(batches) if isinstance(batches, Iterator) else batches


def _generator(*keys: int) -> torch.Generator:
    """A CPU generator seeded from a tuple of integers (distinct tuples, independent streams)."""
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def _randn_like(t: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    # drawn on the CPU so the numbers do not depend on the device the model lives on
    return torch.randn(t.shape, generator=gen, dtype=t.dtype).to(t.device)


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode inside the block; every submodule's own train/eval flag restored afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def _exit_logits(out: MultiExitOutput, exit_index: ExitIndex) -> torch.Tensor:
    if exit_index == "ensemble":
        return out.ensemble
    if isinstance(exit_index, str):
        raise ValueError(f"exit_index must be an integer or 'ensemble', got {exit_index!r}")
    return out.logits[exit_index]


def _select_exits(rows: list[dict], exit_index: ExitIndex) -> list[dict]:
    """Keep the rows of one exit ('all', 'ensemble' or an index, negative from the deepest)."""
    if exit_index == "all":
        return rows
    if exit_index == "ensemble":
        label = "ensemble"
    elif isinstance(exit_index, str):
        raise ValueError(f"exit_index must be an integer, 'ensemble' or 'all', got {exit_index!r}")
    else:
        n = sum(r["exit"] != "ensemble" for r in rows)
        if not -n <= exit_index < n:
            raise IndexError(f"exit_index {exit_index} out of range for a model with {n} exits")
        label = str(exit_index % n + 1)
    kept = [r for r in rows if r["exit"] == label]
    if not kept:
        raise ValueError(f"no exit {label!r} in this model's results (a single-exit model has no ensemble)")
    return kept


# --- Gaussian weight noise -----------------------------------------------------------------
def _noisy(w0: torch.Tensor, sigma: float, relative: bool, gen: torch.Generator) -> torch.Tensor:
    """``w0`` plus Gaussian noise of std sigma (times max|w0| when relative); sigma 0 returns w0 itself."""
    if sigma == 0:
        return w0
    std = sigma * w0.abs().max() if relative else sigma
    return w0 + std * _randn_like(w0, gen)


def gaussian_weight_noise_loss(model: nn.Module, batches: Batches, sigmas: Sequence[float],
                               realizations: int = 5, seed: int = 0, relative: bool = True) -> list[dict]:
    """Per-exit accuracy and loss with Gaussian noise on every Conv2d/Linear weight.

    Rows {sigma, realization, exit, accuracy, loss}; exits "1".."N" then "ensemble" (as in
    ExitMetrics.rows, which leaves the ensemble out of a single-exit model). Relative noise has
    std sigma·max|W| per layer, so layers of different scale are perturbed alike. The noise of
    one (sigma, realization) comes from a generator seeded by (seed, sigma index, realization).
    """
    if realizations < 1:
        raise ValueError(f"realizations must be at least 1, got {realizations}")
    if any(s < 0 or not math.isfinite(s) for s in sigmas):
        raise ValueError(f"sigmas must be finite and non-negative, got {list(sigmas)}")
    batches = _reusable(batches)
    noisy = copy.deepcopy(model)
    weights = [m.weight for _, m in weight_layers(noisy)]
    clean = [w.detach().clone() for w in weights]
    clean_metrics = None
    rows: list[dict] = []
    for si, sigma in enumerate(sigmas):
        for r in range(realizations):
            if sigma == 0 and clean_metrics is not None:
                # no noise: every realization is the clean model, evaluated once
                rows.extend(clean_metrics.rows(sigma=sigma, realization=r))
                continue
            gen = _generator(seed, si, r)
            with torch.no_grad():
                for w, w0 in zip(weights, clean):
                    w.copy_(_noisy(w0, sigma, relative, gen))
            metrics = evaluate(noisy, batches)
            if sigma == 0:
                clean_metrics = metrics
            rows.extend(metrics.rows(sigma=sigma, realization=r))
    return rows


def expected_loss_increase(rows: Iterable[dict]) -> list[dict]:
    """Aggregate noise rows over realizations: {sigma, exit, loss_mean, loss_increase, accuracy_mean, accuracy_std}.

    loss_increase is relative to the same exit's sigma-0 loss (NaN when no sigma 0 was run);
    accuracy_std is the sample standard deviation over realizations (0 for a single one).
    """
    groups: dict[tuple[float, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((float(r["sigma"]), str(r["exit"])), []).append(r)
    base = {e: statistics.fmean(x["loss"] for x in g) for (s, e), g in groups.items() if s == 0}
    out = []
    for (sigma, exit_), g in groups.items():
        loss_mean = statistics.fmean(x["loss"] for x in g)
        accs = [x["accuracy"] for x in g]
        out.append(dict(sigma=sigma, exit=exit_, loss_mean=loss_mean,
                        loss_increase=loss_mean - base.get(exit_, math.nan),
                        accuracy_mean=statistics.fmean(accs),
                        accuracy_std=statistics.stdev(accs) if len(accs) > 1 else 0.0))
    return out


# --- top Hessian eigenvalue ----------------------------------------------------------------
def _hvp(model: nn.Module, params: Sequence[torch.Tensor], batches: Batches, exit_index: ExitIndex,
         v: list[torch.Tensor]) -> list[torch.Tensor]:
    """H·v for the batch-size-weighted mean CE over all batches (one double backward per batch)."""
    total = [torch.zeros_like(p) for p in params]
    n = 0
    for x, y in batches:
        loss = F.cross_entropy(_exit_logits(model(x), exit_index), y)
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        # parameters off this exit's path (deeper stages, other heads) have no gradient: H is 0 there
        dot = sum((g * u).sum() for g, u in zip(grads, v) if g is not None)
        if isinstance(dot, torch.Tensor) and dot.requires_grad:
            hv = torch.autograd.grad(dot, params, allow_unused=True)
            for t, h in zip(total, hv):
                if h is not None:
                    t.add_(h.detach(), alpha=len(y))
        n += len(y)
    if n == 0:
        raise ValueError("top_hessian_eigenvalue() received no batches")
    return [t / n for t in total]


def _dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return float(sum((x * y).sum() for x, y in zip(a, b)))


def top_hessian_eigenvalue(model: nn.Module, batches: Batches, exit_index: ExitIndex = -1,
                           iterations: int = 20, tol: float = 1e-3, seed: int = 0) -> float:
    """Dominant eigenvalue of the Hessian of one exit's CE loss w.r.t. all trainable parameters.

    Power iteration on Hessian-vector products, in eval mode so BatchNorm uses its running
    statistics and the loss is a fixed function of the weights. Stops after ``iterations`` or
    once the Rayleigh quotient changes by less than ``tol`` relative. Power iteration finds the
    eigenvalue of largest magnitude, which is the largest one whenever the Hessian's positive
    curvature dominates, as it does near a trained minimum.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    batches = _reusable(batches)
    params = [p for p in model.parameters() if p.requires_grad]
    gen = _generator(seed)
    v = [_randn_like(p.detach(), gen) for p in params]
    eig = 0.0
    # enable_grad: the double backward must work even when called under torch.no_grad()
    with _eval_mode(model), torch.enable_grad():
        for it in range(iterations):
            norm = math.sqrt(_dot(v, v))
            if norm == 0.0:
                return 0.0  # H·v vanished: the loss is flat along every direction tried
            v = [u / norm for u in v]
            hv = _hvp(model, params, batches, exit_index, v)
            new = _dot(v, hv)  # Rayleigh quotient of the unit vector v
            converged = it > 0 and abs(new - eig) <= tol * abs(eig)
            eig, v = new, hv
            if converged:
                break
    return eig


# --- 1-D filter-normalised loss landscape --------------------------------------------------
def filter_normalized_direction(model: nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random Gaussian direction per parameter, each filter rescaled to its weight filter's norm.

    Li et al. (NeurIPS 2018): a "filter" is a conv output channel or a linear output row.
    Only Conv2d/Linear weights get a direction; biases and BatchNorm parameters get zero, the
    paper's "ignore BN" choice (BN rescales filters anyway, so moving its parameters would
    confound the scale the normalisation is meant to remove).
    """
    gen = _generator(seed)
    weights = {id(m.weight) for _, m in weight_layers(model)}
    direction = {}
    for name, p in model.named_parameters():
        w = p.detach()
        if id(p) not in weights:
            direction[name] = torch.zeros_like(w)
            continue
        d = _randn_like(w, gen)
        scale = w.flatten(1).norm(dim=1) / d.flatten(1).norm(dim=1).clamp_min(torch.finfo(w.dtype).tiny)
        direction[name] = d * scale.view(-1, *[1] * (w.dim() - 1))
    return direction


def loss_landscape_1d(model: nn.Module, batches: Batches, alphas: Sequence[float],
                      exit_index: ExitIndex = -1, seed: int = 0) -> list[dict]:
    """Loss and accuracy along W + alpha·d for a filter-normalised random direction d.

    Rows {alpha, exit, loss, accuracy} for one exit (an index, 'ensemble') or for 'all' exits.
    alpha 0 is the clean model exactly.
    """
    batches = _reusable(batches)
    moved = copy.deepcopy(model)
    direction = filter_normalized_direction(moved, seed)
    params = [(p, p.detach().clone(), direction[n]) for n, p in moved.named_parameters() if direction[n].any()]
    rows: list[dict] = []
    for alpha in alphas:
        with torch.no_grad():
            for p, p0, d in params:
                p.copy_(p0 if alpha == 0 else p0 + alpha * d)
        metrics = evaluate(moved, batches)
        rows.extend(dict(alpha=alpha, exit=r["exit"], loss=r["loss"], accuracy=r["accuracy"])
                    for r in _select_exits(metrics.rows(), exit_index))
    return rows


# --- gradient norms during training --------------------------------------------------------
class GradientMonitor:
    """Per-layer L2 norm of each Conv2d/Linear weight gradient, recorded after backward().

    mon = GradientMonitor(model); ... loss.backward(); mon.record(step). Layers whose
    weight has no gradient that step (off the path of every exit trained) are left out.
    """

    def __init__(self, model: nn.Module) -> None:
        self.layers = weight_layers(model)
        self._rows: list[dict] = []

    def record(self, step: int) -> list[dict]:
        """Append (and return) this step's rows {step, layer, grad_norm}."""
        named = [(n, m.weight.grad) for n, m in self.layers if m.weight.grad is not None]
        if not named:
            return []
        # one stacked transfer instead of a device sync per layer
        norms = torch.stack([g.detach().float().norm() for _, g in named]).tolist()
        rows = [dict(step=step, layer=n, grad_norm=v) for (n, _), v in zip(named, norms)]
        self._rows.extend(rows)
        return rows

    def rows(self) -> list[dict]:
        """All recorded rows, in recording order."""
        return list(self._rows)

    def summary(self) -> list[dict]:
        """Per layer (model order) {layer, steps, grad_norm_mean, grad_norm_median}."""
        by_layer: dict[str, list[float]] = {}
        for r in self._rows:
            by_layer.setdefault(r["layer"], []).append(r["grad_norm"])
        return [dict(layer=n, steps=len(by_layer[n]), grad_norm_mean=statistics.fmean(by_layer[n]),
                     grad_norm_median=statistics.median(by_layer[n]))
                for n, _ in self.layers if n in by_layer]

    def restore(self, rows: list[dict]) -> None:
        """Start from ``rows`` recorded earlier (a resumed training's finished epochs)."""
        self._rows = list(rows)

    def reset(self) -> None:
        """Forget every recorded row."""
        self._rows.clear()
