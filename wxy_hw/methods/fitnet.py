"""FitNets (Romero et al., ICLR 2015): hint training of the student's lower half, then KD."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.multi_exit import NUM_STAGES, MultiExitOutput
from . import options as check
from .base import Batch, TeacherMethod, kd_kl


class FitNet(TeacherMethod):
    """Stage 1: ½‖r(F_s) − F_t‖² between the student's guided stage and the teacher's hint stage.
    Stage 2: (1 − α)·CE + α·T²·KL(p_teacher^T ‖ p_student^T) on the whole student.

    The paper's two-stage schedule: the first ``hint_fraction`` of the epochs train only the
    layers up to the guided stage (and the regressor r, a 3×3 convolution from the student's to
    the teacher's width, as in the paper's convolutional regressor); the rest is knowledge
    distillation. Guided / hint layer = the output of backbone stage ``hint_stage`` (0-based;
    default 1, the middle of a four-stage network, as the paper places it). The squared distance
    is averaged over samples, channels and positions (summed, it reached inf within three steps at
lr 0.1 on Fashion-MNIST: the hint map has thousands of entries). α = 0.9 and T = 4 as for ``kd``.
    """

    name = "fitnet"
    multi_exit = False

    def __init__(self, teacher: nn.Module | None = None, hint_stage: int = 1, hint_fraction: float = 0.5,
                 alpha: float = 0.9, temperature: float = 4.0) -> None:
        super().__init__()
        # a backbone stage, 0-based; negative ones count from the deepest, as Python indices do
        self.hint_stage = check.integer(self.name, "hint_stage", hint_stage,
                                        f"an integer from {-NUM_STAGES} to {NUM_STAGES - 1} (a backbone stage)",
                                        lambda v: -NUM_STAGES <= v < NUM_STAGES, 1)
        self.hint_fraction = check.real(self.name, "hint_fraction", hint_fraction,
                                        "a number in [0, 1) (the share of epochs spent on hint training)",
                                        lambda v: 0 <= v < 1, 0.5)
        self.alpha = check.unit(self.name, "alpha", alpha, 0.9)
        self.temperature = check.positive(self.name, "temperature", temperature, 4)
        self._hold_teacher(teacher)  # after the options: they are checked without a teacher too
        self.regressor: nn.Module | None = None
        self._hint_phase = False

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Build the regressor from the student's guided-stage width to the teacher's hint-stage width."""
        widths = []
        for who, net in (("student", model), ("teacher", self.teacher)):
            channels = getattr(net, "stage_channels", None)
            if channels is None or not -len(channels) <= self.hint_stage < len(channels):
                raise ValueError(f"fitnet: the {who} has no backbone stage {self.hint_stage} to place the hint at "
                                 f"(stages: {channels})")
            widths.append(channels[self.hint_stage])
        self.regressor = nn.Conv2d(widths[0], widths[1], 3, padding=1)
        return model

    def set_epoch(self, epoch: int, epochs: int) -> None:
        self._hint_phase = epoch < round(self.hint_fraction * epochs)

    def forward(self, out: MultiExitOutput, batch: Batch) -> dict[str, torch.Tensor]:
        t_out = self.teacher_outputs(batch.x)
        if self._hint_phase:
            if self.regressor is None:
                raise RuntimeError("method 'fitnet' has no regressor: call prepare_model(model) before training")
            guided = self.regressor(out.stage_maps[self.hint_stage])
            hint = t_out.stage_maps[self.hint_stage]
            if hint.shape[-2:] != guided.shape[-2:]:
                hint = F.adaptive_avg_pool2d(hint, guided.shape[-2:])
            return {"hint": 0.5 * (guided - hint).pow(2).mean()}
        return {"ce": (1.0 - self.alpha) * F.cross_entropy(out.final, batch.y),
                "kd": self.alpha * self.temperature ** 2 * kd_kl(out.final, t_out.final, self.temperature)}
