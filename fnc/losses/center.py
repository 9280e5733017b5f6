"""Center loss (Wen, Zhang, Li, Qiao, "A Discriminative Feature Learning Approach for Deep Face
Recognition", ECCV 2016), in the form the BoT strong baseline trains it.

BoT (Luo et al., CVPR Workshops 2019) adds ``center_weight * L_center`` (weight 0.0005) to the
ID and triplet losses, on the same pre-BN feature as the triplet loss, and trains the centres
with their own SGD at learning rate 0.5 after dividing their gradient by ``center_weight``, so
that the weight scales the loss seen by the network but not the centres' update. The FNC paper
tried center loss and dropped it (Sec. 4.2).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fnc.losses._checks import check_batch

__all__ = ["CenterLoss"]


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
