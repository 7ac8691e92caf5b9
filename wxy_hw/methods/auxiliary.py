"""Auxiliary Training (Zhang et al., CVPR 2020): per-corruption auxiliary classifiers on a shared backbone.

Training period 1. Each batch holds the clean images and one corrupted copy of each (a random
training corruption and severity per image). Clean images run through the network as usual
and are classified by the *primary* classifier (the model's own deepest head). Images with
corruption k run through the same convolutions but

* **selective batch normalization** — their own BN layers (affine parameters and running
  statistics) for input type k, so corrupted statistics never pollute the clean ones, and
* their own **auxiliary classifier** k (a copy of the primary's linear layer).

**Input-aware self-distillation** ties each corrupted image to its own clean original: the
primary classifier's prediction and pooled feature on the clean image (stop-gradient) teach
auxiliary classifier k on the corrupted copy (KL at temperature T, and an L2 term between
unit-length features). Because the convolutions are shared, the backbone learns to extract
the clean image's features from the corrupted one.

Training period 2 (from ``merge_start`` of the run). An L2 penalty λ(t)·Σ_k ‖θ_k − θ_primary‖²
on the classifier weights, ramped linearly to ``merge_weight``, pulls the auxiliary and
primary classifiers to one point. ``merge_bn=True`` (not in the paper) also merges the
normalization in period 2: corrupted images then pass through the primary BN layers too, so
the statistics the deployed network keeps have seen them. (Plain SGD shrinks the gap by a factor |1 − 4·lr·λ| per
step, so keep lr·merge_weight well below 0.5 — the defaults give 0.1.) At test time only the primary path runs: the auxiliaries
live in the method (its checkpoint state), never in the saved model, so the deployed network
has exactly the baseline's parameters and cost. Validation selects the checkpoint from period 2's
epochs only (``selection_start``): period 1's models are not yet the method's.

``auxiliary_adv`` adds adversarial examples as one more input type (the paper's robustness
experiment, where the auxiliary model is compared with adversarial training under PGD): each
clean image also gets an L∞ PGD copy made against the current network, with its own BN layers
and auxiliary classifier, distilled from the clean image like the corrupted copies. It merges the
normalization in period 2 by default (``merge_bn=True``), unlike ``auxiliary``: the talk's auxiliary
model lost clean accuracy as adversarial training did (85.76 % against 83.90 %; 94.75 % trained
normally), so its deployed path saw the adversarial images. With selective BN throughout
(``merge_bn=False``) the PGD copies never pass the primary BN layers: on Fashion-MNIST (converged
recipe, seeds 0 and 1) that model kept its clean accuracy (92.13 and 91.94 % on the test set) and had
none under PGD-L∞ (0.0 % on 1,000 test images, ε = 0.1, 10 steps; merged, 85.83 and 86.51 % clean).
"""
from __future__ import annotations

import copy
from typing import Sequence, cast

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from ..data.corruptions import SEVERITIES
from ..models.multi_exit import MultiExitOutput
from . import options as check
from .base import Batch, kd_kl
from .robust import TRAIN_CORRUPTIONS, _CorruptedViews, _pooled_unit, attack_budget, pgd_examples

_BN = nn.modules.batchnorm._BatchNorm


class AuxiliaryTraining(_CorruptedViews):
    """See the module docstring."""

    _primary_fc: nn.Linear  # the model's own deepest classifier, set by prepare_model

    name = "auxiliary"

    def __init__(self, corruptions: Sequence[str] = TRAIN_CORRUPTIONS, severities: Sequence[int] = SEVERITIES,
                 seed: int = 0, distill_weight: float = 1.0, feature_weight: float = 1.0, temperature: float = 3.0,
                 merge_start: float = 0.5, merge_weight: float = 1.0, selective_bn: bool = True,
                 merge_bn: bool = False) -> None:
        super().__init__(corruptions, severities, seed)
        name = self.name  # auxiliary_adv's own name in its refusals
        self.distill_weight = check.nonnegative(name, "distill_weight", distill_weight, 1.0)
        self.feature_weight = check.nonnegative(name, "feature_weight", feature_weight, 1.0)
        self.temperature = check.positive(name, "temperature", temperature, 3)
        self.merge_start = check.real(name, "merge_start", merge_start, "a number from 0 to 1 (a fraction of the run)",
                                      lambda v: 0 <= v <= 1, 0.5)
        self.merge_weight = check.nonnegative(name, "merge_weight", merge_weight, 1.0)
        self.selective_bn = check.flag(name, "selective_bn", selective_bn)
        self.merge_bn = check.flag(name, "merge_bn", merge_bn)
        self.merge_lambda = 0.0
        self.aux_fc = nn.ModuleList()
        self.aux_bn = nn.ModuleList()
        self._bn_names: list[str] = []

    @property
    def input_types(self) -> tuple[str, ...]:
        """The auxiliary input types, each with its own BN layers and classifier: the training corruptions."""
        return self.corruptions

    # --- model surgery (kept outside the model, so checkpoints hold the plain network) ----------
    def prepare_model(self, model: nn.Module) -> nn.Module:
        fc = getattr(cast(nn.ModuleList, model.heads)[-1], "fc", None)
        if not isinstance(fc, nn.Linear):
            raise ValueError("auxiliary training needs a model whose deepest exit ends in a linear layer (.fc)")
        self.aux_fc = nn.ModuleList(copy.deepcopy(fc) for _ in self.input_types)
        self._bn_names = [n for n, m in model.named_modules() if isinstance(m, _BN)]
        modules = dict(model.named_modules())
        self.aux_bn = nn.ModuleList(
            nn.ModuleDict({n.replace(".", "__"): copy.deepcopy(modules[n]) for n in self._bn_names})
            for _ in self.input_types) if self.selective_bn else nn.ModuleList()
        object.__setattr__(self, "_primary_fc", fc)  # a reference, not a submodule of the method
        return model

    def _bn_tensors(self, k: int) -> dict[str, torch.Tensor]:
        """Parameters and buffers of input type k's BN layers, keyed by the model's own names."""
        tensors = {}
        for name in self._bn_names:
            bn = cast(nn.ModuleDict, self.aux_bn[k])[name.replace(".", "__")]
            for key, value in list(bn.named_parameters()) + list(bn.named_buffers()):
                tensors[f"{name}.{key}"] = value
        return tensors

    @property
    def _aux_linears(self) -> list[nn.Linear]:
        """``aux_fc`` as the copies of the primary nn.Linear it holds (iterating a ModuleList yields plain Modules)."""
        return cast("list[nn.Linear]", list(self.aux_fc))

    # --- schedule -----------------------------------------------------------------------------
    def _merge_epoch(self, epochs: int) -> int:
        """The first epoch (0-based) of period 2."""
        return int(round(self.merge_start * epochs))

    def selection_start(self, epochs: int) -> int:
        """Period 2 makes the deployed model (classifiers merged; with ``merge_bn`` the primary BN layers see every
        input type): a checkpoint from period 1 is not the method's model, whatever its clean validation accuracy."""
        return self._merge_epoch(epochs)

    def set_epoch(self, epoch: int, epochs: int) -> None:
        start = self._merge_epoch(epochs)
        self.merge_lambda = 0.0 if epoch < start else self.merge_weight * (epoch + 1 - start) / max(epochs - start, 1)

    # --- forward ------------------------------------------------------------------------------
    def model_forward(self, model: nn.Module, x: torch.Tensor, batch: Batch | None = None) -> MultiExitOutput:
        if not model.training or batch is None or batch.domain is None:
            return model(x)
        if len(self.aux_fc) != len(self.input_types):
            raise RuntimeError("auxiliary: call method.prepare_model(model) before training")
        if not self.selective_bn or (self.merge_bn and self.merge_lambda > 0):
            out = model(x)
            feats = out.features[-1]
            parts = [(torch.arange(len(x), device=x.device), self._classify(0, feats, out.final, batch.domain), feats)]
        else:
            parts = []
            for d in range(len(self.input_types) + 1):
                idx = (batch.domain == d).nonzero().flatten()
                if len(idx) == 0:
                    continue
                xd = x[idx]
                out = model(xd) if d == 0 else functional_call(model, self._bn_tensors(d - 1), (xd,), strict=False)
                logits = out.final if d == 0 else self.aux_fc[d - 1](out.features[-1])
                parts.append((idx, logits, out.features[-1]))
        order = torch.cat([p[0] for p in parts])
        inverse = torch.argsort(order)
        logits = torch.cat([p[1] for p in parts])[inverse]
        feats = torch.cat([p[2] for p in parts])[inverse]
        return MultiExitOutput([logits], [feats])

    def _classify(self, _: int, feats: torch.Tensor, primary: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        """Shared-BN variant: each row's classifier is the one of its input type."""
        logits = primary
        for k, fc in enumerate(self.aux_fc):
            mask = (domain == k + 1).unsqueeze(1)
            logits = torch.where(mask, fc(feats), logits)
        return logits

    def forward(self, out: MultiExitOutput, batch: Batch) -> dict[str, torch.Tensor]:
        terms = {"ce": F.cross_entropy(out.final, batch.y)}
        n = batch.n_clean
        if n is None:
            return terms
        t = self.temperature
        teacher = out.final[:n].detach().repeat(len(batch.y) // n - 1, 1)
        terms["distill"] = self.distill_weight * t * t * kd_kl(out.final[n:], teacher, t)
        clean = _pooled_unit(out.features[-1][:n]).detach().repeat(len(batch.y) // n - 1, 1)
        terms["feature"] = self.feature_weight * (_pooled_unit(out.features[-1][n:]) - clean).pow(2).sum(1).mean()
        if self.merge_lambda > 0:
            primary = self._primary_fc
            gap = sum(((fc.weight - primary.weight).pow(2).sum() + (fc.bias - primary.bias).pow(2).sum()
                       for fc in self._aux_linears), torch.zeros((), device=out.final.device))
            terms["merge"] = self.merge_lambda * gap
        return terms

    @torch.no_grad()
    def classifier_gap(self) -> list[float]:
        """‖θ_k − θ_primary‖ per auxiliary classifier (→ 0 as period 2 merges them)."""
        primary = self._primary_fc
        return [float(torch.cat([(fc.weight - primary.weight).flatten(), fc.bias - primary.bias]).norm())
                for fc in self._aux_linears]


class AdversarialAuxiliaryTraining(AuxiliaryTraining):
    """Auxiliary training with adversarial examples as one more auxiliary input type (see the module docstring)."""

    name = "auxiliary_adv"

    def __init__(self, corruptions: Sequence[str] = TRAIN_CORRUPTIONS, severities: Sequence[int] = SEVERITIES,
                 seed: int = 0, distill_weight: float = 1.0, feature_weight: float = 1.0, temperature: float = 3.0,
                 merge_start: float = 0.5, merge_weight: float = 1.0, selective_bn: bool = True,
                 merge_bn: bool = True, epsilon: float = 0.1, steps: int = 5, step_size: float | None = None) -> None:
        super().__init__(corruptions, severities, seed, distill_weight, feature_weight, temperature, merge_start,
                         merge_weight, selective_bn, merge_bn)
        # the same attack budget as adversarial training (`adv`), so the two compare
        self.epsilon, self.steps, self.step_size = attack_budget(self.name, epsilon, steps, step_size)

    @property
    def input_types(self) -> tuple[str, ...]:
        return (*self.corruptions, "pgd_linf")

    def prepare_batch(self, batch: Batch, model: nn.Module) -> Batch:
        """[clean; corrupted; PGD] with domains 0, 1..K (the corruption) and K + 1 (adversarial)."""
        views = super().prepare_batch(batch, model)
        if not model.training or views.domain is None:
            return views
        x_adv = pgd_examples(self, model, batch.x, batch.y, self.epsilon, self.steps, self.step_size)
        adversarial = torch.full_like(batch.y, len(self.input_types))
        return Batch(torch.cat([views.x, x_adv]), torch.cat([views.y, batch.y]),
                     domain=torch.cat([views.domain, adversarial]), n_clean=views.n_clean)

