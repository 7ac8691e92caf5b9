"""torchrun support for training: process group, global batch norm, gradient averaging.

``torchrun --nproc-per-node N experiments/train.py ...`` sets RANK / WORLD_SIZE / LOCAL_RANK;
``setup`` then joins the process group (gloo on CPU, nccl on CUDA). Every rank builds the same
model from the same seed, reads its shard of each global batch (``BatchLoader(shard=...)``) and
the gradients are averaged (DistributedDataParallel), so N processes at global batch B train the
model one process trains at batch B — to float tolerance — provided batch norm sees the global
batch too: per-rank BN statistics (plain DDP) normalise each shard by its own mean and variance,
a different function of the data. ``global_batch_norm`` therefore makes BN layers compute their
statistics over all ranks (``nn.SyncBatchNorm`` on CUDA; on CPU, where torch's SyncBatchNorm
refuses to run, a two-pass all-reduce of sums with autograd through the collective).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, TypeVar, cast

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a torchrun job."""

    rank: int
    world: int
    local_rank: int

    @property
    def lead(self) -> bool:
        """Rank 0: the one process that writes metrics, checkpoints and reports."""
        return self.rank == 0


def launched() -> bool:
    """True when started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def current() -> DistInfo | None:
    """This process's place in an initialised process group, or None when training alone."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def setup(device: str = "auto") -> tuple[DistInfo | None, str]:
    """Join torchrun's process group (if launched by it); returns (info, the device this rank trains on)."""
    if not launched():
        return None, device
    if not dist.is_available():
        raise RuntimeError("torchrun launched several processes but this torch has no torch.distributed; "
                           "run experiments/train.py with plain python")
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"torchrun local rank {local_rank} has no GPU ({torch.cuda.device_count()} visible): "
                               "use --nproc-per-node ≤ the number of GPUs, or --torch-device cpu")
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    elif device == "auto":
        device = "cpu"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return current(), device


class LostRankError(RuntimeError):
    """Another process of a torchrun job ended (killed or failed) while this one waited for it."""


# words of gloo's and nccl's errors when the other end of a collective has gone away
_PEER_LOST = ("connection closed by peer", "connection reset by peer", "broken pipe", "gloo", "nccl",
              "timed out", "socket", "processgroup")


def explain_lost_rank(exc: BaseException, info: DistInfo, where: str) -> BaseException:
    """A collective's failure under torchrun as one line naming the ranks (``exc`` itself when it is not one)."""
    text = str(exc).lower()
    if not isinstance(exc, RuntimeError) or not any(w in text for w in _PEER_LOST):
        return exc
    others = [r for r in range(info.world) if r != info.rank]
    who = f"rank {others[0]}" if len(others) == 1 else f"one of ranks {', '.join(map(str, others))}"
    return LostRankError(f"torchrun rank {info.rank} of {info.world} lost {who} {where} (that process was killed or "
                         "failed; torchrun's summary names it); restart the same torchrun command with --resume")


def teardown() -> None:
    """Leave the process group (after every rank has finished)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks, differentiable: the gradient of a sum over ranks is the sum of the gradients."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        dist.all_reduce(t)
        return t

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


# The mixin goes before a concrete BN class (global_batch_norm); to the type checker it is one.
if TYPE_CHECKING:
    _BNMixinBase = _BatchNorm
else:
    _BNMixinBase = object


class _GlobalStats(_BNMixinBase):
    """Mixin for a BN class: in training under a process group, statistics over every rank's samples."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and current() is not None):
            return super().forward(x)
        all_reduce = _AllReduceSum.apply
        c = x.shape[1]
        dims = [0, *range(2, x.dim())]
        shape = [1, c] + [1] * (x.dim() - 2)
        total = all_reduce(torch.cat([x.sum(dims), x.new_tensor([x.numel() // c])]))
        n = total[c]
        mean = total[:c] / n
        # two passes (mean, then squared deviations), as accurate as one process's batch norm
        var = all_reduce((x - mean.view(shape)).pow(2).sum(dims)) / n
        if self.track_running_stats:
            tracked, running_mean, running_var = self.num_batches_tracked, self.running_mean, self.running_var
            assert tracked is not None and running_mean is not None and running_var is not None  # BN keeps them then
            with torch.no_grad():
                tracked.add_(1)
                f = self.momentum if self.momentum is not None else 1.0 / float(tracked)
                running_mean.mul_(1 - f).add_(mean.detach(), alpha=f)
                running_var.mul_(1 - f).add_(var.detach() * n / (n - 1).clamp_min(1), alpha=f)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


_GLOBAL_CLASSES: dict[type, type] = {}
_M = TypeVar("_M", bound=nn.Module)


def global_batch_norm(model: _M, device: torch.device) -> _M:
    """Make every BN layer of ``model`` use global-batch statistics in distributed training (in place).

    On CUDA this is ``nn.SyncBatchNorm``; on CPU each BN module gets a subclass with the same
    parameters, buffers and state-dict keys, so checkpoints load into the plain model.
    """
    if device.type == "cuda":
        # BN layers below the root are replaced in place, so the root itself comes back
        return cast(_M, nn.SyncBatchNorm.convert_sync_batchnorm(model))
    for m in model.modules():
        if isinstance(m, _BatchNorm) and not isinstance(m, _GlobalStats):
            cls = type(m)
            if cls not in _GLOBAL_CLASSES:
                _GLOBAL_CLASSES[cls] = type(f"Global{cls.__name__}", (_GlobalStats, cls), {})
            m.__class__ = _GLOBAL_CLASSES[cls]
    return model


def average_gradients(params: Iterable[torch.Tensor], world: int) -> None:
    """Average gradients over ranks by hand (what DDP's reducer does), for methods whose own forward
    cannot go through the DDP wrapper."""
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(world)


def all_sum(values: list[float]) -> list[float]:
    """Sum a few numbers over ranks (epoch loss / accuracy counts)."""
    if current() is None:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()
