"""Real early exit: batched dynamic inference that stops computing for samples that have exited.

Stage 1 and exit 1 run on the whole batch; only samples whose confidence is below exit 1's
threshold continue into stage 2 (the batch is physically shrunk), and so on; survivors take
the deepest exit — or, with ``final="ensemble"``, the mean of the logits of every exit they
passed. Works on the digital model and on a deployed (noisy) copy, which keeps the same
stem / stages / heads structure.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from ..models.cost import exit_path_macs
from ..models.multi_exit import MultiExitNet


def confidence(logits: torch.Tensor, kind: str = "max_softmax") -> torch.Tensor:
    """Per-sample confidence in [0, 1]: max softmax, or 1 − normalised entropy."""
    p = F.softmax(logits.float(), dim=1)
    if kind == "max_softmax":
        return p.max(1).values
    if kind == "entropy":
        h = -(p * p.clamp_min(1e-12).log()).sum(1)
        return 1 - h / math.log(p.shape[1])
    raise ValueError(f"confidence must be 'max_softmax' or 'entropy', got {kind!r}")


@dataclass
class EarlyExitResult:
    """Per-sample outcome of dynamic inference."""

    predictions: torch.Tensor   # (N,) class
    exit_index: torch.Tensor    # (N,) 0-based position of the exit taken
    macs: torch.Tensor          # (N,) MACs spent on the sample's path
    confidence: torch.Tensor    # (N,) confidence at the exit taken

    def accuracy(self, labels: torch.Tensor) -> float:
        """Top-1 accuracy (%) against labels."""
        return 100.0 * (self.predictions.cpu() == labels.cpu()).float().mean().item()

    def exit_shares(self, num_exits: int) -> list[float]:
        """Fraction of samples leaving at each exit."""
        counts = torch.bincount(self.exit_index.cpu(), minlength=num_exits).float()
        return (counts / counts.sum()).tolist()


@torch.no_grad()
def early_exit_inference(model: MultiExitNet, x: torch.Tensor, thresholds: Sequence[float], *,
                         kind: str = "max_softmax", final: str = "deepest",
                         path_macs: Sequence[int] | None = None) -> EarlyExitResult:
    """Dynamic inference on one batch; ``thresholds`` has one value per shallow exit."""
    if not hasattr(model, "stages"):
        raise ValueError(f"early exit needs a backbone cut into stages, and this one is not "
                         f"({getattr(model, 'split_reason', type(model).__name__)}); evaluate its exits with model(x)")
    n_exits = len(model.heads)
    if len(thresholds) != n_exits - 1:
        raise ValueError(f"need {n_exits - 1} thresholds (one per shallow exit), got {len(thresholds)}")
    if final not in ("deepest", "ensemble"):
        raise ValueError(f"final must be 'deepest' or 'ensemble', got {final!r}")
    model.eval()
    costs = torch.tensor(list(path_macs) if path_macs is not None else exit_path_macs(model), dtype=torch.float64)
    n = x.shape[0]
    dev = x.device
    preds = torch.empty(n, dtype=torch.long, device=dev)
    exits = torch.empty(n, dtype=torch.long, device=dev)
    confs = torch.empty(n, device=dev)
    active = torch.arange(n, device=dev)
    logit_sum: torch.Tensor | None = None
    h = model.stem(x)
    k = 0
    for s, stage in enumerate(model.stages):
        h = stage(h)
        if s != model.exit_stages[k]:
            continue
        logits = model.heads[k](h)[0]
        logit_sum = logits if logit_sum is None else logit_sum + logits
        if k == n_exits - 1:
            out = logit_sum / n_exits if final == "ensemble" else logits
            preds[active], exits[active], confs[active] = out.argmax(1), k, confidence(out, kind)
            break
        c = confidence(logits, kind)
        done = c >= thresholds[k]
        if done.any():
            idx = active[done]
            preds[idx], exits[idx], confs[idx] = logits[done].argmax(1), k, c[done]
            keep = ~done
            nhwc = h.dim() == 4 and h.is_contiguous(memory_format=torch.channels_last) and not h.is_contiguous()
            active, logit_sum = active[keep], logit_sum[keep]
            if nhwc:  # gather whole NHWC rows: one copy, and the result stays channels-last for the next stage
                h = h.permute(0, 2, 3, 1)[keep].permute(0, 3, 1, 2)
            else:
                h = h[keep]
        k += 1
        if active.numel() == 0:
            break
    return EarlyExitResult(preds, exits, costs[exits.cpu()], confs)
