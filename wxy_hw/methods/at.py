"""Attention transfer (Zagoruyko & Komodakis, ICLR 2017): match the teacher's spatial attention maps."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.multi_exit import MultiExitOutput
from . import options as check
from .base import Batch, TeacherMethod


def attention_map(feature_map: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Q = Σ_c |A_c|^p over channels, flattened and L2-normalised per sample: (N, C, H, W) → (N, H·W)."""
    q = feature_map.abs().pow(p).sum(1).flatten(1)
    return F.normalize(q, dim=1)


def attention_distance(student_map: torch.Tensor, teacher_map: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Mean squared difference of the normalised attention maps (teacher side detached by the caller).

    Maps of different spatial size (e.g. a teacher of another depth) are compared at the
    student's resolution: the teacher's map is average-pooled to it first.
    """
    if teacher_map.shape[-2:] != student_map.shape[-2:]:
        teacher_map = F.adaptive_avg_pool2d(teacher_map, (student_map.shape[-2], student_map.shape[-1]))
    return (attention_map(student_map, p) - attention_map(teacher_map, p)).pow(2).mean()


class AttentionTransfer(TeacherMethod):
    """CE + β/2 · Σ_j ‖Q_s^j/‖Q_s^j‖ − Q_t^j/‖Q_t^j‖‖² over the backbone's stage outputs.

    Q is the activation-based attention map with p = 2 (the paper's choice); the distance is
    averaged over samples and positions, and β = 1000 with the ½ in front follows the authors'
    CIFAR setting. The student is the plain single-exit network; the teacher is a frozen, trained
    checkpoint whose four stage outputs (``MultiExitOutput.stage_maps``) are matched stage by
    stage, so teacher and student may differ in width and depth but not in the number of stages.
    """

    name = "at"
    multi_exit = False

    def __init__(self, teacher: nn.Module | None = None, beta: float = 1000.0, p: float = 2.0) -> None:
        super().__init__()
        self.beta = check.nonnegative(self.name, "beta", beta, 1000)
        self.p = check.positive(self.name, "p", p, 2)
        self._hold_teacher(teacher)  # after the options: they are checked without a teacher too

    def forward(self, out: MultiExitOutput, batch: Batch) -> dict[str, torch.Tensor]:
        t_maps = self.teacher_outputs(batch.x).stage_maps
        if len(t_maps) != len(out.stage_maps) or not t_maps:
            raise ValueError(f"attention transfer matches stage outputs one to one: the student has "
                             f"{len(out.stage_maps)} stages, the teacher {len(t_maps)}")
        distances = [attention_distance(s, t, self.p) for s, t in zip(out.stage_maps, t_maps)]
        at = sum(distances[1:], distances[0])  # a tensor: t_maps is not empty
        return {"ce": F.cross_entropy(out.final, batch.y), "at": self.beta / 2 * at}
