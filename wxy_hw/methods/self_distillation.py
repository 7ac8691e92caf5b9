"""Be Your Own Teacher (Zhang et al., ICCV 2019): the deepest exit teaches the shallow ones.

Paper (seed, "Self Distillation: Loss Function")::

    loss = Σ_i CE(q_i, y) + KL(q_i, q_C) + β · ‖F_i − F_C‖²

Official code (luanyunteng/pytorch-be-your-own-teacher) differs, and its numbers are the
published ones, so it is our default:

* shallow exit i:  (1 − α)·CE(q_i, y) + α·KL(p_C^T ‖ p_i^T) with α = 0.3, T = 3, no T² factor;
* deepest exit:    CE only;
* hint:            β = 0.03 on the squared distance between each shallow exit's bottleneck
  feature and the deepest feature (the bottleneck head is the learned adaptation layer).

Differences kept deliberately: the KL is Hinton's direction (teacher ‖ student, as the code
does) rather than the paper's literal KL(q_i, q_C); the teacher logits and features are
detached (the deepest exit learns from labels only); the hint is averaged over the batch
(the official code sums over it, which ties β to the batch size). ``preset="paper"`` gives
the paper's unit weights: CE + KL + β·hint with α-free sums.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..models.multi_exit import MultiExitOutput
from . import options as check
from .base import Batch, Method, feature_l2, kd_kl

PRESETS: dict[str, dict[str, Any]] = {
    "official": dict(alpha=0.3, temperature=3.0, hint_weight=0.03, t2_scaling=False, ce_weight=None),
    # SCAN's official code: λ = 0.5 between KD and CE, KD × T² at T = 3, feature loss 5e-7 on the
    # batch-summed squared distance — 6.4e-5 per sample at its batch size of 128.
    "scan": dict(alpha=0.5, temperature=3.0, hint_weight=6.4e-5, t2_scaling=True, ce_weight=None),
    "paper": dict(alpha=1.0, temperature=1.0, hint_weight=0.03, t2_scaling=False, ce_weight=1.0),
}


class SelfDistillation(Method):
    """BYOT loss; see the module docstring for the exact terms and defaults."""

    name = "self_distillation"

    def __init__(self, preset: str = "official", alpha: float | None = None, temperature: float | None = None,
                 hint_weight: float | None = None, t2_scaling: bool | None = None) -> None:
        super().__init__()
        name = self.name  # scan's own name in its refusals
        self.preset = check.choice(name, "preset", preset, list(PRESETS))
        p = dict(PRESETS[preset])
        self.alpha = p["alpha"] if alpha is None else check.unit(name, "alpha", alpha, 0.3)
        self.temperature = p["temperature"] if temperature is None else check.positive(name, "temperature",
                                                                                       temperature, 3)
        self.hint_weight = p["hint_weight"] if hint_weight is None else check.nonnegative(name, "hint_weight",
                                                                                          hint_weight, 0.03)
        self.t2_scaling = p["t2_scaling"] if t2_scaling is None else check.flag(name, "t2_scaling", t2_scaling)
        # "official": CE weight 1 − α on shallow exits; "paper": CE and KL both weight 1.
        self.ce_weight = p["ce_weight"] if p["ce_weight"] is not None else 1.0 - self.alpha

    def forward(self, out: MultiExitOutput, batch: Batch) -> dict[str, torch.Tensor]:
        if len(out) < 2:
            raise ValueError("self_distillation needs a multi-exit model (got a single exit)")
        teacher_logits = out.final.detach()
        teacher_feat = out.features[-1].detach()
        t2 = self.temperature ** 2 if self.t2_scaling else 1.0
        terms = {f"ce{len(out)}": F.cross_entropy(out.final, batch.y)}
        for i in range(len(out) - 1):
            terms[f"ce{i + 1}"] = self.ce_weight * F.cross_entropy(out.logits[i], batch.y)
            terms[f"kd{i + 1}"] = self.alpha * t2 * kd_kl(out.logits[i], teacher_logits, self.temperature)
            if self.hint_weight:
                if out.features[i].shape != teacher_feat.shape:
                    raise ValueError(f"{self.name}'s hint compares each exit's features with the deepest one's, but exit "
                                     f"{i + 1} gives {tuple(out.features[i].shape[1:])} and the deepest "
                                     f"{tuple(teacher_feat.shape[1:])}: use heads that map to the deepest features "
                                     "(--heads byot or byot_light), or --method-arg hint_weight=0")
                terms[f"hint{i + 1}"] = self.hint_weight * feature_l2(out.features[i], teacher_feat)
        return terms


class Scan(SelfDistillation):
    """SCAN (Zhang et al., NeurIPS 2019): self-distillation on attention exits (``--heads scan``).

    Defaults follow SCAN's official code — (1 − λ)·CE + λ·T²·KL with λ = 0.5, T = 3, and a
    feature loss of 5e-7 on the batch-summed squared distance (6.4e-5 per sample here, as our
    hint is averaged over the batch). Models default to attention heads for this method.
    """

    name = "scan"
    default_heads = "scan"

    def __init__(self, preset: str = "scan", alpha: float | None = None, temperature: float | None = None,
                 hint_weight: float | None = None, t2_scaling: bool | None = None) -> None:
        super().__init__(preset, alpha, temperature, hint_weight, t2_scaling)
