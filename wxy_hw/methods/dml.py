"""Deep mutual learning (Zhang et al., CVPR 2018): two students of one architecture teach each other."""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.multi_exit import MultiExitOutput
from . import options as check
from .base import Batch, Method, kd_kl


class DeepMutualLearning(Method):
    """Each network: CE + KL(p_peer ‖ p_self), the peer's prediction detached.

    The trained model is student 1; its peer (same architecture, its own initialisation drawn
    from ``seed``) is part of this method, so it joins the optimizer and the checkpoint and is
    discarded after training. Both networks are updated in one step from the predictions of the
    same batch; the paper updates them alternately, recomputing the first network's prediction
    before the second's step — with one SGD step between them the two differ only at second
    order in the learning rate. T = 1 as in the paper.
    """

    name = "dml"
    multi_exit = False

    def __init__(self, temperature: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        self.temperature = check.positive(self.name, "temperature", temperature, 1)
        self.seed = check.seed(self.name, seed)
        self.peer: nn.Module | None = None

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Create the peer: a copy of the model's architecture with a fresh initialisation."""
        self.peer = copy.deepcopy(model)
        state = torch.random.get_rng_state()
        torch.manual_seed(self.seed + 1_000_003)  # the peer must not start where student 1 starts
        try:
            for m in self.peer.modules():
                reset = getattr(m, "reset_parameters", None)
                if m is not self.peer and callable(reset):
                    reset()
        finally:
            torch.random.set_rng_state(state)
        return model

    def forward(self, out: MultiExitOutput, batch: Batch) -> dict[str, torch.Tensor]:
        if self.peer is None:
            raise RuntimeError("method 'dml' has no peer network: call prepare_model(model) before training")
        peer_logits = self.peer(batch.x).final
        t, t2 = self.temperature, self.temperature ** 2
        return {"ce": F.cross_entropy(out.final, batch.y),
                "kl": t2 * kd_kl(out.final, peer_logits.detach(), t),
                "peer_ce": F.cross_entropy(peer_logits, batch.y),
                "peer_kl": t2 * kd_kl(peer_logits, out.final.detach(), t)}
