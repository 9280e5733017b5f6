"""The FNC paper's learning-rate schedule: linear warm-up, then step decay, from torch's schedulers."""

from __future__ import annotations

from collections.abc import Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import ChainedScheduler, LinearLR, LRScheduler, MultiStepLR

__all__ = ["build_scheduler"]


def build_scheduler(
    optimizer: Optimizer,
    warmup_epochs: int = 10,
    milestones: Sequence[int] = (40, 70),
    gamma: float = 0.1,
    warmup_factor: float = 0.1,
) -> LRScheduler:
    """Warm-up + multi-step schedule, stepped once per epoch.

    With the optimiser's lr = 3.5e-4 the defaults give the paper's curve: 3.5e-5 at epoch 0,
    rising linearly to 3.5e-4 at epoch ``warmup_epochs`` = 10, then x0.1 at epochs 40 and 70
    (3.5e-5, 3.5e-6). Milestones are absolute epoch numbers counted from 0, not from the end of
    the warm-up: the two schedulers run side by side in a ``ChainedScheduler`` and their factors
    multiply (``SequentialLR`` would restart ``MultiStepLR``'s count at the hand-over and shift
    the milestones by ``warmup_epochs``).

    Args:
        optimizer: the optimiser whose ``lr`` is the peak learning rate.
        warmup_epochs: epochs of linear warm-up; 0 disables it.
        milestones: epochs at which the lr is multiplied by ``gamma``.
        gamma: decay factor.
        warmup_factor: lr multiplier at epoch 0.

    Returns:
        A scheduler; call ``scheduler.step()`` once at the end of every epoch. Its
        ``state_dict()`` resumes it.

    >>> import torch
    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=3.5e-4)
    >>> sched = build_scheduler(opt)
    >>> round(opt.param_groups[0]["lr"], 10)
    3.5e-05
    """
    milestones = list(milestones)
    if warmup_epochs < 0:
        raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
    if milestones != sorted(milestones) or any(m <= 0 for m in milestones):
        raise ValueError(f"milestones must be positive and increasing, got {milestones}")
    if not 0.0 < warmup_factor <= 1.0:
        raise ValueError(f"warmup_factor must be in (0, 1], got {warmup_factor}")
    schedulers: list[LRScheduler] = []
    if warmup_epochs > 0:
        schedulers.append(LinearLR(optimizer, start_factor=warmup_factor, end_factor=1.0, total_iters=warmup_epochs))
    schedulers.append(MultiStepLR(optimizer, milestones=milestones, gamma=gamma))
    return ChainedScheduler(schedulers)
