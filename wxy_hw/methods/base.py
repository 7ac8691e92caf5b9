"""The training-method contract: a loss object (model outputs, batch) → named loss terms.

The Trainer sums the terms it is given and knows nothing else about a method. A method is an
``nn.Module`` so it may own learnable pieces (a FitNet regressor, say); its trainable
parameters join the optimizer and its state joins the checkpoint.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.multi_exit import MultiExitOutput


@dataclass
class Batch:
    """One training batch: normalised inputs and integer labels."""

    x: torch.Tensor
    y: torch.Tensor


class Method(nn.Module):
    """Base class: subclasses set ``name``/``multi_exit`` and implement ``forward``."""

    name: ClassVar[str] = "method"
    #: whether the method trains a multi-exit model (False: the plain single-exit network)
    multi_exit: ClassVar[bool] = True
    #: whether the method needs a trained teacher checkpoint
    needs_teacher: ClassVar[bool] = False
    #: exit heads a model gets for this method when the user does not choose (--heads)
    default_heads: ClassVar[str] = "byot"

    def forward(self, out: MultiExitOutput, batch: Batch) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Transform the model once before training (QAT swaps in quantized layers); default: as is."""
        return model

    def model_forward(self, model: nn.Module, x: torch.Tensor) -> MultiExitOutput:
        """How the trainer runs the model on a batch; methods that perturb the forward override it."""
        return model(x)

    def options(self) -> dict[str, Any]:
        """The method's hyper-parameters, for manifests."""
        sig = inspect.signature(type(self).__init__)
        return {k: getattr(self, k) for k in sig.parameters if k != "self" and hasattr(self, k)
                and isinstance(getattr(self, k), (int, float, str, bool, type(None), list, tuple))}


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(teacher/T) ‖ softmax(student/T)), averaged over the batch (teacher detached by caller)."""
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)


def feature_l2(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Squared L2 distance between feature vectors, summed over features, averaged over the batch."""
    return (student - teacher).pow(2).flatten(1).sum(1).mean()
