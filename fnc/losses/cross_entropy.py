"""Identity (classification) loss: cross-entropy with label smoothing (FNC paper Eq. 4-5)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from fnc.losses._checks import check_batch

__all__ = ["cross_entropy_loss"]


def cross_entropy_loss(logits: Tensor, pids: Tensor, label_smoothing: float = 0.1) -> Tensor:
    """Label-smoothed cross-entropy, averaged over the batch.

    The target puts ``1 - eps + eps / N`` on the true identity and ``eps / N`` on each of the
    other ``N - 1`` classes, which is exactly what ``torch.nn.functional.cross_entropy``'s
    ``label_smoothing`` does and what Eq. 4-5 (Szegedy et al.) describe.

    Args:
        logits: classifier outputs (after BNNeck).
        pids: training identity labels in ``[0, num_classes)``.
        label_smoothing: eps; 0.1 in the paper, 0 gives plain cross-entropy.

    Returns:
        Scalar loss.

    Shape:
        logits: (B, num_classes); pids: (B,).

    >>> cross_entropy_loss(torch.zeros(2, 4), torch.tensor([0, 3])).item() == torch.log(torch.tensor(4.0)).item()
    True
    """
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    check_batch(logits, pids, "logits")
    if logits.dim() != 2 or pids.shape != (logits.shape[0],):
        raise ValueError(
            f"expected logits (B, num_classes) and pids (B,), got {tuple(logits.shape)} and {tuple(pids.shape)}"
        )
    return F.cross_entropy(logits.float(), pids, label_smoothing=label_smoothing)
