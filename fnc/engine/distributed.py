"""DDP under ``torchrun``: process-group setup from its environment, cross-rank gathering for the
losses, and synchronised BatchNorm that also runs on CPU (gloo).

Why the losses see the global batch: batch-hard triplet mining (Eq. 6) picks each anchor's hardest
positive and negative in the batch. If every rank mined only its own slice, a DDP run would optimise
a different loss than one process with the same global batch. :func:`gather_with_grad` concatenates
the features of all ranks with a differentiable all-gather, every rank computes the loss of the
whole batch, and DDP's gradient averaging then gives exactly the single-process gradient (as
fast-reid does for its triplet loss).
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "DistInfo",
    "SyncBatchNorm",
    "convert_sync_batchnorm",
    "gather_with_grad",
    "init_distributed",
    "is_main_process",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device, timeout_minutes: float = 60.0) -> DistInfo:
    """Join the process group that ``torchrun`` describes in ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``.

    Without those variables (a plain ``python`` run) nothing is initialised and a single-process
    :class:`DistInfo` is returned. An already initialised group is used as it is. The backend is
    NCCL for CUDA devices and gloo otherwise.

    Args:
        device: the training device; for CUDA, the process's GPU is ``cuda:LOCAL_RANK``.
        timeout_minutes: collective timeout; generous because rank 0 evaluates while the others wait.

    Returns:
        This process's rank, the world size and the local rank.

    >>> init_distributed(torch.device("cpu"))  # outside torchrun
    DistInfo(rank=0, world_size=1, local_rank=0)
    """
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) <= 1:
        return DistInfo()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_minutes))
    info = DistInfo(dist.get_rank(), dist.get_world_size(), local_rank)
    logger.info("joined process group: rank %d of %d (%s)", info.rank, info.world_size, backend)
    return info


def is_main_process() -> bool:
    """True on rank 0 or outside distributed training (the process that logs and writes)."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank along dim 0, keeping the gradient path to each rank's part.

    Backward sums the gradients all ranks computed for this rank's slice, so a loss that every rank
    computes identically on the gathered batch, followed by DDP's averaging, yields the gradient of
    that loss in one process.

    Shape:
        x: (B_local, ...) -> (world_size * B_local, ...), rank order.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return _GatherCat.apply(x)


class _GatherCat(torch.autograd.Function):
    """All-gather along dim 0 whose backward sums every rank's gradient for this rank's slice.

    Every rank's slice has the same size (the P x K sampler gives each rank whole batches).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        ctx.rows = x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        start = dist.get_rank() * ctx.rows
        return grad[start : start + ctx.rows]


class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over ranks: every rank's output depends on every rank's input, so the
    gradient of each input is the sum of all ranks' output gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad)
        return grad


def _all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    return _AllReduceSum.apply(x)


class SyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics cover the whole global batch, on any device and backend.

    ``torch.nn.SyncBatchNorm`` uses CUDA-only kernels; this is the same computation from
    differentiable all-reduces (two-pass: the global mean, then the global mean squared deviation),
    so it also runs with gloo on CPU. In eval mode, or outside a process group, it is plain BatchNorm.
    State-dict keys equal BatchNorm's, so checkpoints are interchangeable.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input (B, C, ...), got {input.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, x.shape[1]] + [1] * (x.dim() - 2)
        xf = x.to(torch.promote_types(x.dtype, torch.float32))  # statistics in at least float32
        count = _all_reduce_sum(xf.new_tensor([x.numel() / x.shape[1]]))
        mean = _all_reduce_sum(xf.sum(dims)) / count
        centred = xf - mean.view(shape)
        var = _all_reduce_sum(centred.pow(2).sum(dims)) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = var * (count / (count - 1).clamp(min=1))
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        y = centred * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm with one synchronised across ranks (``--sync-bn``).

    CUDA uses ``torch.nn.SyncBatchNorm`` (fused kernels); other devices use :class:`SyncBatchNorm`.
    Parameters and buffers are shared with the originals, not copied, and frozen parameters (the
    BNNeck bias) stay frozen.

    Args:
        model: the model, before wrapping in DDP.
        device: the training device.

    Returns:
        The converted model.
    """
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _convert(model)


def _convert(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, SyncBatchNorm):
        out = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        if module.track_running_stats:
            out.running_mean, out.running_var = module.running_mean, module.running_var
            out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _convert(child))
    return out
