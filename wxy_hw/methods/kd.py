"""Teacher → student knowledge distillation (Hinton et al., 2015) with an optional FitNet hint."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.multi_exit import MultiExitNet, MultiExitOutput
from . import options as check
from .base import Batch, TeacherMethod, feature_l2, kd_kl


class KnowledgeDistillation(TeacherMethod):
    """(1 − α)·CE + α·T²·KL(p_teacher^T ‖ p_student^T) [+ γ·‖r(F_s) − F_t‖²].

    Defaults α = 0.9, T = 4 follow the common CIFAR setting (Hinton's T² keeps gradient
    magnitudes comparable across temperatures). The hint (FitNet, Romero et al. 2015) is off
    by default; when on, a learned linear regressor r maps the student's final feature to the
    teacher's width. The student is the plain single-exit network; the teacher is a frozen,
    trained checkpoint (any wxy_hw model; its deepest exit is used).
    """

    name = "kd"
    multi_exit = False

    def __init__(self, teacher: MultiExitNet | None = None, alpha: float = 0.9, temperature: float = 4.0,
                 hint_weight: float = 0.0, student_features: int | None = None) -> None:
        super().__init__()
        self.alpha = check.unit(self.name, "alpha", alpha, 0.9)
        self.temperature = check.positive(self.name, "temperature", temperature, 4)
        self.hint_weight = check.nonnegative(self.name, "hint_weight", hint_weight, 0.5)
        if student_features is not None:
            student_features = check.count(self.name, "student_features", student_features, 64)
        teacher = self._hold_teacher(teacher)  # after the options: they are checked without a teacher too
        self.regressor: nn.Module | None = None
        if self.hint_weight:
            if student_features is None:
                raise ValueError("kd with hint_weight > 0 needs student_features (the student's final feature width)")
            self.regressor = nn.Linear(student_features, teacher.stage_channels[-1])

    def forward(self, out: MultiExitOutput, batch: Batch) -> dict[str, torch.Tensor]:
        t_out = self.teacher_outputs(batch.x)
        terms = {"ce": (1.0 - self.alpha) * F.cross_entropy(out.final, batch.y),
                 "kd": self.alpha * self.temperature ** 2 * kd_kl(out.final, t_out.final, self.temperature)}
        if self.regressor is not None:
            terms["hint"] = self.hint_weight * feature_l2(self.regressor(out.features[-1]), t_out.features[-1])
        return terms
