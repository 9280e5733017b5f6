"""Center loss (Wen, Zhang, Li, Qiao, "A Discriminative Feature Learning Approach for Deep Face
Recognition", ECCV 2016), in the form the BoT strong baseline trains it.

BoT (Luo et al., CVPR Workshops 2019) adds ``center_weight * L_center`` (weight 0.0005) to the
ID and triplet losses, on the same pre-BN feature as the triplet loss, and trains the centres
with their own SGD at learning rate 0.5 after dividing their gradient by ``center_weight``, so
that the weight scales the loss seen by the network but not the centres' update. The FNC paper
tried center loss and dropped it (Sec. 4.3); see docs/design.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from fnc.losses._checks import check_batch
from fnc.losses.reid import _as_branches

__all__ = ["BranchCenterLoss", "CenterLoss", "WithCenterLoss"]


class CenterLoss(nn.Module):
    """``L = 1/B * sum_i ||x_i - c_{y_i}||^2``, one learnable centre per identity.

    Each squared distance is clamped to ``[1e-12, 1e12]`` as in BoT; there is no ``1/2`` factor
    (Wen et al. write one; BoT's code has none, and its weight 0.0005 is calibrated
    without it). The centres are an ``nn.Parameter`` initialised from a standard
    normal, so they train with whatever optimizer holds them (BoT: their own SGD, lr 0.5).

    Args:
        num_classes: identities (rows of the centre matrix).
        feat_dim: dimension of the features.

    Shape:
        forward(feat, pids): feat (B, feat_dim), pids (B,) -> scalar.

    >>> criterion = CenterLoss(num_classes=3, feat_dim=2)
    >>> _ = torch.nn.init.zeros_(criterion.centers)
    >>> criterion(torch.tensor([[3.0, 4.0], [0.0, 1.0]]), torch.tensor([0, 2]))
    tensor(13., grad_fn=<DivBackward0>)
    """

    def __init__(self, num_classes: int, feat_dim: int) -> None:
        super().__init__()
        if num_classes < 1 or feat_dim < 1:
            raise ValueError(f"num_classes and feat_dim must be >= 1, got {num_classes} and {feat_dim}")
        self.num_classes = num_classes
        self.feat_dim = feat_dim
        self.centers = nn.Parameter(torch.randn(num_classes, feat_dim))

    def forward(self, feat: Tensor, pids: Tensor) -> Tensor:
        check_batch(feat, pids, "feat")
        if feat.dim() != 2 or feat.shape[1] != self.feat_dim:
            raise ValueError(
                f"expected features of shape (B, {self.feat_dim}), got {tuple(feat.shape)}; build "
                "CenterLoss with feat_dim = the dimension of the feature it is applied to"
            )
        if pids.shape != (feat.shape[0],):
            raise ValueError(f"expected pids of shape ({feat.shape[0]},), got {tuple(pids.shape)}")
        if pids.numel() and (int(pids.min()) < 0 or int(pids.max()) >= self.num_classes):
            raise ValueError(
                f"pids must be training labels in [0, {self.num_classes}), got range "
                f"[{int(pids.min())}, {int(pids.max())}]; build CenterLoss with num_classes = the "
                "number of training identities"
            )
        centers = self.centers[pids].to(feat.dtype)
        dist = (feat - centers).pow(2).sum(dim=1).clamp(min=1e-12, max=1e12)
        return dist.sum() / feat.shape[0]

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, feat_dim={self.feat_dim}"


class BranchCenterLoss(nn.Module):
    """One :class:`CenterLoss` per branch of a multi-branch model, summed over the branches.

    Each branch's centres live in that branch's feature space (its pre-BN feature, as the
    triplet loss sees it), so each gets its own ``CenterLoss`` of that branch's width.

    Args:
        num_classes: training identities.
        feat_dims: the feature width of each branch, in the model's output order.

    Shape:
        forward(outputs, pids): the model's training output (branches with ``.feat`` or
        ``(feat, logits)`` pairs), pids (B,) -> (scalar, {"center/<i>": scalar}).

    >>> criterion = BranchCenterLoss(num_classes=3, feat_dims=[4, 2])
    >>> total, parts = criterion([(torch.randn(2, 4), None), (torch.randn(2, 2), None)], torch.tensor([0, 1]))
    >>> sorted(parts)
    ['center/0', 'center/1']
    """

    def __init__(self, num_classes: int, feat_dims: Sequence[int]) -> None:
        super().__init__()
        if not feat_dims:
            raise ValueError("BranchCenterLoss needs the feature width of at least one branch")
        self.losses = nn.ModuleList(CenterLoss(num_classes, int(d)) for d in feat_dims)

    def forward(self, outputs: Any, pids: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        branches = _as_branches(outputs)
        if len(branches) != len(self.losses):
            raise ValueError(
                f"the model has {len(branches)} branches but the center loss was built for "
                f"{len(self.losses)}; build it with one feature width per branch"
            )
        total: Tensor | None = None
        parts: dict[str, Tensor] = {}
        for i, ((feat, _), loss) in enumerate(zip(branches, self.losses)):
            value = loss(feat, pids)
            parts[f"center/{i}"] = value.detach()
            total = value if total is None else total + value
        assert total is not None
        return total, parts


class WithCenterLoss(nn.Module):
    """``criterion + weight * center``: a re-ID criterion plus BoT's center-loss term.

    Called as the wrapped criterion is, ``(outputs, pids) -> (loss, parts)``; ``parts`` gains
    ``"center"`` (the unweighted sum over branches) and ``"center/<i>"``. The centres are this
    module's parameters (``center.parameters()``), for their own optimizer.

    Args:
        criterion: e.g. :class:`~fnc.losses.ReIDLoss`.
        center: the per-branch center losses.
        weight: the center term's weight (BoT: 0.0005).

    >>> from fnc.losses.reid import ReIDLoss
    >>> loss = WithCenterLoss(ReIDLoss(), BranchCenterLoss(2, [4]), 5e-4)
    >>> total, parts = loss([(torch.randn(4, 4), torch.randn(4, 2))], torch.tensor([0, 0, 1, 1]))
    >>> "center" in parts
    True
    """

    def __init__(self, criterion: nn.Module, center: BranchCenterLoss, weight: float) -> None:
        super().__init__()
        self.criterion = criterion
        self.center = center
        self.weight = float(weight)

    def forward(self, outputs: Any, pids: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        loss, parts = self.criterion(outputs, pids)
        center, center_parts = self.center(outputs, pids)
        parts = {**parts, **center_parts, "center": center.detach()}
        return loss + self.weight * center, parts

    def extra_repr(self) -> str:
        return f"weight={self.weight}"
