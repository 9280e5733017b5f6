"""The paper's total training loss over any number of branches (FNC paper Eq. 7)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from fnc.losses.cross_entropy import cross_entropy_loss
from fnc.losses.triplet import triplet_loss

__all__ = ["ReIDLoss", "total_loss"]


def _as_branches(outputs: Any) -> list[tuple[Tensor, Tensor | None]]:
    """Normalise model outputs to a list of ``(feat, logits)`` pairs.

    Accepts one branch or a sequence of branches, each either an object with ``.feat`` and
    ``.logits`` (the models' ``BranchOutput``) or a plain ``(feat, logits)`` pair. Duck typing keeps
    this package free of any import from ``fnc.models``.
    """
    if hasattr(outputs, "feat"):
        outputs = [outputs]
    elif isinstance(outputs, Sequence) and len(outputs) > 0 and isinstance(outputs[0], Tensor):
        # A bare (feat, logits) pair rather than a sequence of branches.
        outputs = [outputs]
    if not isinstance(outputs, Sequence) or len(outputs) == 0:
        raise TypeError(
            "expected the model's training output: a non-empty sequence of branches, each with "
            f"`.feat` and `.logits` or a (feat, logits) pair; got {type(outputs).__name__}"
        )
    branches = []
    for i, out in enumerate(outputs):
        if hasattr(out, "feat") and hasattr(out, "logits"):
            feat, logits = out.feat, out.logits
        elif isinstance(out, Sequence) and len(out) == 2:
            feat, logits = out
        else:
            raise TypeError(
                f"branch {i}: expected `.feat`/`.logits` or a (feat, logits) pair, got {type(out).__name__}"
            )
        if not isinstance(feat, Tensor):
            raise TypeError(
                f"branch {i}: feat must be a Tensor, got {type(feat).__name__}; is the model in train mode?"
            )
        branches.append((feat, logits))
    return branches


def total_loss(
    outputs: Any,
    pids: Tensor,
    id_weight: float = 2.0,
    triplet_weight: float = 1.0,
    margin: float | None = 0.3,
    label_smoothing: float = 0.1,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Eq. 7: ``id_weight * sum_i L_id(branch i) + triplet_weight * sum_j L_triplet(branch j)``.

    Each branch contributes one label-smoothed cross-entropy on its logits and one batch-hard
    triplet loss on its pre-BN feature. A branch without logits (a model built with
    ``num_classes=0``) only has a triplet term, and then ``id_weight`` must be 0.

    Args:
        outputs: the model's training output: a sequence of branches, each with ``.feat``
            (B, d) and ``.logits`` (B, num_classes) or ``None``, or ``(feat, logits)`` pairs.
        pids: training identity labels.
        id_weight: lambda of Eq. 7 (2 in the paper).
        triplet_weight: weight of the triplet sum (1 in the paper).
        margin: triplet margin; ``None`` for the soft margin.
        label_smoothing: eps of the ID loss.

    Returns:
        ``(total, parts)``: the scalar loss to back-propagate, and detached parts for logging:
        ``"id"``, ``"triplet"`` (unweighted sums over branches) and ``"id/<i>"``,
        ``"triplet/<i>"`` per branch.

    Shape:
        pids: (B,).

    >>> feat, logits = torch.randn(4, 8), torch.randn(4, 3)
    >>> total, parts = total_loss([(feat, logits), (feat, logits)], torch.tensor([0, 0, 1, 1]))
    >>> sorted(parts)
    ['id', 'id/0', 'id/1', 'triplet', 'triplet/0', 'triplet/1']
    """
    branches = _as_branches(outputs)
    id_sum: Tensor | None = None
    tri_sum: Tensor | None = None
    parts: dict[str, Tensor] = {}
    for i, (feat, logits) in enumerate(branches):
        tri = triplet_loss(feat, pids, margin=margin)
        parts[f"triplet/{i}"] = tri.detach()
        tri_sum = tri if tri_sum is None else tri_sum + tri
        if logits is None:
            if id_weight != 0:
                raise ValueError(
                    f"branch {i} has no logits (model built with num_classes=0) but id_weight={id_weight}; "
                    "build the model with num_classes=<number of training identities>, or pass id_weight=0 "
                    "for triplet-only training"
                )
            continue
        ce = cross_entropy_loss(logits, pids, label_smoothing=label_smoothing)
        parts[f"id/{i}"] = ce.detach()
        id_sum = ce if id_sum is None else id_sum + ce
    assert tri_sum is not None  # _as_branches guarantees at least one branch
    total = triplet_weight * tri_sum
    if id_sum is not None:
        total = total + id_weight * id_sum
        parts["id"] = id_sum.detach()
    parts["triplet"] = tri_sum.detach()
    return total, parts


class ReIDLoss(nn.Module):
    """Module form of :func:`total_loss` holding the recipe's hyper-parameters.

    Args:
        id_weight: lambda of Eq. 7 (2 in the paper).
        triplet_weight: weight of the triplet sum (1 in the paper).
        margin: batch-hard triplet margin (0.3, BoT's; the paper gives none); ``None`` = soft margin.
        label_smoothing: eps of the ID loss (0.1 in the paper).

    Shape:
        forward(outputs, pids): outputs as in :func:`total_loss`, pids (B,) -> (scalar, dict).

    >>> criterion = ReIDLoss()
    >>> total, parts = criterion([(torch.randn(4, 8), torch.randn(4, 3))], torch.tensor([0, 0, 2, 2]))
    >>> total.shape
    torch.Size([])
    """

    def __init__(
        self,
        id_weight: float = 2.0,
        triplet_weight: float = 1.0,
        margin: float | None = 0.3,
        label_smoothing: float = 0.1,
    ) -> None:
        super().__init__()
        self.id_weight = id_weight
        self.triplet_weight = triplet_weight
        self.margin = margin
        self.label_smoothing = label_smoothing

    def forward(self, outputs: Any, pids: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return total_loss(
            outputs,
            pids,
            id_weight=self.id_weight,
            triplet_weight=self.triplet_weight,
            margin=self.margin,
            label_smoothing=self.label_smoothing,
        )

    def extra_repr(self) -> str:
        return (
            f"id_weight={self.id_weight}, triplet_weight={self.triplet_weight}, "
            f"margin={self.margin}, label_smoothing={self.label_smoothing}"
        )
