"""Adapting a frozen classifier to a new input domain — or to one noisy chip — with the Calibrator,
and the references it is compared with (DANN fine-tuning; chip-in-the-loop weight fine-tuning).

Calibrator objective on a domain pair (classifier frozen, in eval mode; target labels unused):
    discriminators D_pix, D_feat: CE over (source = 0, target = 1, calibrated target = 2);
    calibrator: CE(D_pix(x̃), source) + CE(D_feat(f(x̃)), source)      (look like source, adversarially)
              + λ_ent · H(p(x̃)) + λ_δ · mean δ²                       (confident, small corrections)
with x̃ = x_t + δ(x_t). On a chip the "domain shift" is the chip's weight error: the calibrator
is trained, in simulation, so that the deployed chip on calibrated inputs predicts what the
digital model predicts on the raw inputs, T²·KL(p_digital^T(x) ‖ p_chip^T(x̃)) + λ_δ · mean δ².
"""
from __future__ import annotations

import copy
import math
from typing import Any, Iterable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from .batches import as_batches
from .models.evaluation import model_device
from .methods.base import kd_kl
from .models.calibrator import DOMAINS, Calibrator, FeatureDiscriminator, PixelDiscriminator
from .models.multi_exit import MultiExitOutput


class Calibrated(nn.Module):
    """calibrator → classifier, usable wherever a MultiExitNet is (evaluate, early exit)."""

    def __init__(self, calibrator: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.calibrator = calibrator
        self.classifier = classifier
        self.exit_stages = getattr(classifier, "exit_stages", None)

    def forward(self, x: torch.Tensor) -> MultiExitOutput:
        return self.classifier(self.calibrator(x))


def _frozen(model: nn.Module) -> nn.Module:
    """A frozen copy in eval mode (the caller's model keeps its mode and requires_grad flags)."""
    model = copy.deepcopy(model).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _cycle(batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    while True:
        yield from batches


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean Shannon entropy of the softmax (nats)."""
    logp = F.log_softmax(logits, 1)
    return -(logp.exp() * logp).sum(1).mean()


def train_calibrator(classifier: nn.Module, source: Iterable, target: Iterable, *, epochs: int = 5, lr: float = 1e-3,
                     width: int = 8, blocks: int = 1, epsilon: float = 1.0, entropy_weight: float = 0.1,
                     perturbation_weight: float = 0.01, pixel_weight: float = 1.0, feature_weight: float = 1.0,
                     seed: int = 0) -> tuple[Calibrator, list[dict[str, float]]]:
    """Unsupervised domain adaptation with a frozen classifier (see the module docstring).

    ``source`` and ``target`` are lists of normalised (x, y) batches; target labels are never read.
    Returns the calibrator (eval mode) and per-epoch loss rows.
    """
    torch.manual_seed(seed)
    dev = model_device(classifier)
    classifier = _frozen(classifier)
    source, target = as_batches(source, "train_calibrator: source"), as_batches(target, "train_calibrator: target")
    x0 = target.first_inputs()
    cal = Calibrator(x0.shape[1], width, blocks, epsilon).to(dev)
    d_pix = PixelDiscriminator(x0.shape[1]).to(dev)
    with torch.no_grad():
        feat_dim = classifier(x0[:2].to(dev)).features[-1].shape[1]
    d_feat = FeatureDiscriminator(feat_dim).to(dev)
    opt_c = torch.optim.Adam(cal.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(list(d_pix.parameters()) + list(d_feat.parameters()), lr=lr, betas=(0.5, 0.999))
    src = _cycle(source)
    history = []
    for epoch in range(epochs):
        sums = {"d": 0.0, "adv": 0.0, "entropy": 0.0, "delta": 0.0}
        for xt, _ in target:
            xs, _ = next(src)
            xs, xt = xs.to(dev), xt.to(dev)
            xc = cal(xt)
            with torch.no_grad():
                fs, ft = classifier(xs).features[-1], classifier(xt).features[-1]
            fc_detached = classifier(xc.detach()).features[-1].detach()
            # discriminators: tell the three input kinds apart
            label = lambda x, kind: torch.full((len(x),), DOMAINS[kind], device=dev, dtype=torch.long)  # noqa: E731
            terms_d = [F.cross_entropy(d(a), label(a, k)) for d, batch in
                       ((d_pix, ((xs, "source"), (xt, "target"), (xc.detach(), "calibrated"))),
                        (d_feat, ((fs, "source"), (ft, "target"), (fc_detached, "calibrated"))))
                       for a, k in batch]
            loss_d = sum(terms_d[1:], terms_d[0])
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            # calibrator: make calibrated target pass for source, confidently, with a small correction
            out = classifier(xc)
            adv = pixel_weight * F.cross_entropy(d_pix(xc), label(xc, "source")) + \
                feature_weight * F.cross_entropy(d_feat(out.features[-1]), label(xc, "source"))
            ent = entropy(out.final)
            delta = (xc - xt).pow(2).mean()
            loss_c = adv + entropy_weight * ent + perturbation_weight * delta
            opt_c.zero_grad(set_to_none=True)
            loss_c.backward()
            opt_c.step()
            for k, v in (("d", loss_d), ("adv", adv), ("entropy", ent), ("delta", delta)):
                sums[k] += float(v.detach()) / len(target)
        history.append(dict(epoch=epoch + 1, **sums))
    return cal.eval(), history


def train_chip_calibrator(digital: nn.Module, chip: nn.Module, batches: Iterable, *, epochs: int = 3,
                          lr: float = 1e-3, width: int = 8, blocks: int = 1, epsilon: float = 1.0,
                          temperature: float = 2.0, perturbation_weight: float = 0.01,
                          seed: int = 0) -> Calibrator:
    """A calibrator for one chip instance: the chip on calibrated inputs should answer as the digital
    model does on the raw inputs (unlabeled; see the module docstring)."""
    torch.manual_seed(seed)
    dev = model_device(chip)
    digital, chip = _frozen(digital), _frozen(chip)
    batches = as_batches(batches, "train_chip_calibrator: batches")
    cal = Calibrator(batches.first_inputs().shape[1], width, blocks, epsilon).to(dev)
    opt = torch.optim.Adam(cal.parameters(), lr=lr)
    t = temperature
    for _ in range(epochs):
        for x, _ in batches:
            x = x.to(dev)
            with torch.no_grad():
                teacher = digital(x).final
            xc = cal(x)
            loss = t * t * kd_kl(chip(xc).final, teacher, t) + perturbation_weight * (xc - x).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return cal.eval()


def finetune_chip(digital: nn.Module, chip: nn.Module, batches: Iterable, *, epochs: int = 3, lr: float = 1e-4,
                  temperature: float = 2.0) -> nn.Module:
    """Reference: chip-in-the-loop fine-tuning of the deployed weights (and BN) toward the digital
    model's outputs on the same unlabeled data — an upper bound that assumes the chip can be
    re-programmed to the fine-tuned values exactly."""
    dev = model_device(chip)
    digital = _frozen(digital)
    batches = as_batches(batches, "finetune_chip: batches")
    tuned = copy.deepcopy(chip)
    params = []
    for m in tuned.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
            for p in m.parameters(recurse=False):
                p.requires_grad_(True)
                params.append(p)
    opt = torch.optim.Adam(params, lr=lr)
    t = temperature
    tuned.eval()  # BN statistics stay the chip's; only parameters move
    for _ in range(epochs):
        for x, _ in batches:
            x = x.to(dev)
            with torch.no_grad():
                teacher = digital(x).final
            loss = t * t * kd_kl(tuned(x).final, teacher, t)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return _frozen(tuned)


class _ReverseGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.scale * grad, None


def train_dann(classifier: nn.Module, source: Iterable, target: Iterable, *, epochs: int = 5, lr: float = 0.01,
               domain_weight: float = 1.0, seed: int = 0) -> nn.Module:
    """DANN (Ganin & Lempitsky, ICML 2015): fine-tune the whole network on labeled source with a
    gradient-reversed domain classifier on its deepest feature; the reversal weight ramps
    2/(1+e^(−10p)) − 1 over training progress p, as in the paper. Returns the adapted copy."""
    torch.manual_seed(seed)
    dev = model_device(classifier)
    model = copy.deepcopy(classifier).train()
    for p in model.parameters():
        p.requires_grad_(True)
    source, target = as_batches(source, "train_dann: source"), as_batches(target, "train_dann: target")
    with torch.no_grad():
        feat_dim = model(source.first_inputs()[:2].to(dev)).features[-1].shape[1]
    domain = FeatureDiscriminator(feat_dim).to(dev)
    opt = torch.optim.SGD(list(model.parameters()) + list(domain.parameters()), lr=lr, momentum=0.9,
                          weight_decay=5e-4)
    tgt = _cycle(target)
    total = epochs * len(source)
    step = 0
    for _ in range(epochs):
        for xs, ys in source:
            xt, _ = next(tgt)
            xs, ys, xt = xs.to(dev), ys.to(dev), xt.to(dev)
            progress = step / max(total, 1)
            scale = domain_weight * (2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0)
            out = model(torch.cat([xs, xt]))
            feats = _ReverseGrad.apply(out.features[-1], scale)
            dom = torch.cat([torch.zeros(len(xs)), torch.ones(len(xt))]).long().to(dev)
            loss = F.cross_entropy(out.final[:len(xs)], ys) + F.cross_entropy(domain(feats), dom)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    return model.eval()


@torch.no_grad()
def mean_spectrum(batches: Iterable[torch.Tensor]) -> torch.Tensor:
    """Mean FFT magnitude (centred, channels averaged) of image batches."""
    total, n = None, 0
    for x in batches:
        mag = torch.fft.fftshift(torch.fft.fft2(x.float()).abs(), dim=(-2, -1)).mean(1).sum(0)
        total = mag if total is None else total + mag
        n += x.shape[0]
    if total is None:
        raise ValueError("mean_spectrum() received no batches")
    return total / max(n, 1)


def high_frequency_share(spectrum: torch.Tensor, cutoff: float = 0.25) -> float:
    """Share of spectral magnitude beyond ``cutoff`` × the Nyquist radius (DC excluded)."""
    h, w = spectrum.shape
    yy, xx = torch.meshgrid(torch.arange(h) - h // 2, torch.arange(w) - w // 2, indexing="ij")
    r = torch.sqrt(yy.float() ** 2 + xx.float() ** 2) / (min(h, w) / 2)
    mask_dc = r > 0
    total = float(spectrum[mask_dc].sum())
    return float(spectrum[(r > cutoff) & mask_dc].sum()) / total if total > 0 else 0.0
