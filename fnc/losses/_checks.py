"""The one input check the losses share: a non-empty float batch and integer labels beside it."""

from __future__ import annotations

import torch
from torch import Tensor


def check_batch(x: object, pids: object, name: str) -> None:
    """Raise a TypeError / ValueError naming the argument if ``x`` and ``pids`` cannot go into a loss.

    Args:
        x: the (B, ...) float tensor (features or logits).
        pids: the (B,) identity labels, an integer tensor on ``x``'s device.
        name: what ``x`` is called in the caller's signature (``"feat"``, ``"logits"``).

    Raises:
        TypeError: ``x`` is not a float tensor, or ``pids`` not an integer tensor.
        ValueError: an empty batch, or ``pids`` on another device.

    >>> check_batch(torch.zeros(2, 3), torch.tensor([0, 1]), "feat")
    >>> check_batch(torch.zeros(2, 3), [0, 1], "feat")
    Traceback (most recent call last):
        ...
    TypeError: pids must be a torch.Tensor of integer identity labels (torch.tensor(labels)), got list
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a float tensor, got {x.dtype}")
    if not isinstance(pids, Tensor):
        hint = (
            "; map string ids to integers 0..N-1 first"
            if isinstance(pids, (list, tuple)) and pids and isinstance(pids[0], str)
            else ""
        )
        raise TypeError(
            f"pids must be a torch.Tensor of integer identity labels (torch.tensor(labels)), got {type(pids).__name__}{hint}"
        )
    if pids.is_floating_point() or pids.is_complex() or pids.dtype == torch.bool:
        raise TypeError(f"pids must be an integer tensor of identity labels, got {pids.dtype}; use pids.long()")
    if x.dim() == 0 or x.shape[0] == 0:
        raise ValueError(f"empty batch: {name} has shape {tuple(x.shape)}; a loss needs at least one sample")
    if pids.device != x.device:
        raise ValueError(f"pids are on {pids.device} but {name} is on {x.device}; move them to the same device")
