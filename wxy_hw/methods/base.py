"""The training-method contract: a loss object (model outputs, batch) → named loss terms.

The Trainer sums the terms it is given and knows nothing else about a method. A method is an
``nn.Module`` so it may own learnable pieces (a FitNet regressor, say); its trainable
parameters join the optimizer and its state joins the checkpoint.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence, TypeVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.multi_exit import MultiExitOutput

_M = TypeVar("_M", bound=nn.Module)


@dataclass
class Batch:
    """One training batch: normalised inputs and integer labels.

    Methods that train on several views of each image (clean + corrupted, clean + adversarial)
    stack the views along the batch: the first ``n_clean`` rows are the clean images, the view
    of clean row i sits at rows i + k·n_clean, and ``domain`` labels each row's input type
    (0 = clean, k = k-th corruption).
    """

    x: torch.Tensor
    y: torch.Tensor
    domain: torch.Tensor | None = None
    n_clean: int | None = None


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

    def bind_data(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Learn the dataset's normalisation, so methods that corrupt or attack images can work in pixels."""
        self._mean = torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
        self._std = torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1)

    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised input → pixels in [0, 1] (needs bind_data)."""
        if getattr(self, "_mean", None) is None:
            raise RuntimeError(f"method {self.name!r} works in pixel space: call bind_data(mean, std) first")
        return x * self._std.to(x) + self._mean.to(x)

    def from_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] → normalised input."""
        return (x - self._mean.to(x)) / self._std.to(x)

    def set_epoch(self, epoch: int, epochs: int) -> None:
        """Called by the trainer before each epoch (0-based) — for methods with phases; default: nothing."""

    def selection_start(self, epochs: int) -> int:
        """The first epoch (0-based) whose checkpoint validation may select: a method whose last phase finishes
        the model (Auxiliary Training's merge) is not selected before it; default: every epoch."""
        return 0

    def prepare_batch(self, batch: Batch, model: nn.Module) -> Batch:
        """Turn the loader's batch into what the method trains on (extra views, attacks); default: as is."""
        return batch

    def model_forward(self, model: nn.Module, x: torch.Tensor, batch: Batch | None = None) -> MultiExitOutput:
        """How the trainer runs the model on a batch; methods that perturb the forward override it."""
        return model(x)

    def random_generator(self, device: torch.device) -> torch.Generator:
        """The method's own random stream (seeded by ``self.seed``), saved with checkpoints."""
        gen = getattr(self, "_gen", None)
        if gen is None or gen.device != device:
            self._gen = torch.Generator(device=device).manual_seed(int(getattr(self, "seed", 0)))
        return self._gen

    # The random stream's state travels with checkpoints, so a run resumes bit-identically.
    def get_extra_state(self) -> Any:
        gen = getattr(self, "_gen", None)
        return {"gen": None} if gen is None else {"gen": gen.get_state(), "gen_device": str(gen.device)}

    def set_extra_state(self, state: Any) -> None:
        if state and state.get("gen") is not None:
            self._gen = torch.Generator(device=state.get("gen_device", "cpu"))
            self._gen.set_state(state["gen"])

    def options(self) -> dict[str, Any]:
        """The method's hyper-parameters, for manifests."""
        sig = inspect.signature(type(self).__init__)
        return {k: getattr(self, k) for k in sig.parameters if k != "self" and hasattr(self, k)
                and isinstance(getattr(self, k), (int, float, str, bool, type(None), list, tuple))}


class MissingTeacher(ValueError):
    """A teacher method built without its teacher (its options were checked before)."""


class TeacherMethod(Method):
    """A method that learns from a frozen, trained teacher (kd, fitnet, at).

    The teacher is held outside the module tree, so it is neither trained nor saved with the
    student, but it follows the method across devices and dtypes.
    """

    needs_teacher = True

    def _hold_teacher(self, teacher: _M | None) -> _M:
        """Keep ``teacher`` frozen (not as a submodule) and return it: never None past this call. Called after the
        options are checked, so that a command line can check them before it has the teacher (``MissingTeacher``)."""
        if teacher is None:
            raise MissingTeacher(f"method {self.name!r} needs a teacher: train one first (e.g. --method baseline with a "
                             "larger --arch/--width) and pass its checkpoint with --teacher PATH")
        self._teacher = [teacher.eval().requires_grad_(False)]
        return teacher

    @property
    def teacher(self) -> nn.Module:
        """The frozen teacher model."""
        return self._teacher[0]

    def _apply(self, fn, *args, **kwargs):  # keep the teacher on the same device/dtype as the method
        super()._apply(fn, *args, **kwargs)
        self._teacher[0]._apply(fn, *args, **kwargs)
        return self

    @torch.no_grad()
    def teacher_outputs(self, x: torch.Tensor) -> MultiExitOutput:
        """The teacher's outputs on a batch, in evaluation mode."""
        self.teacher.eval()
        return self.teacher(x)


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(teacher/T) ‖ softmax(student/T)), averaged over the batch (teacher detached by caller)."""
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)


def feature_l2(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Squared L2 distance between feature vectors, summed over features, averaged over the batch."""
    return (student - teacher).pow(2).flatten(1).sum(1).mean()
