"""Re-ID heads: the feature reduction module, BNNeck, and BFE's batch drop block.

BNNeck from Luo et al., "Bag of Tricks and A Strong Baseline for Deep Person
Re-identification" (CVPR Workshops 2019); the reduction module from FNC Sec. 3.1; batch drop
from Dai et al., "Batch DropBlock Network for Person Re-identification and Beyond" (ICCV 2019).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

__all__ = ["BranchOutput", "Reduction", "BNNeck", "BatchDrop"]


class BranchOutput(NamedTuple):
    """One branch's training output.

    Attributes:
        feat: (B, D) feature before the BNNeck's BN, for the triplet loss.
        logits: (B, num_classes) identity logits for the ID loss, or None when the model has no
            classifier (``num_classes=0``).
    """

    feat: torch.Tensor
    logits: torch.Tensor | None


class Reduction(nn.Sequential):
    """Feature reduction (FNC Sec. 3.1): 1x1 conv + BN + ReLU on the pooled vector.

    A 1x1 conv on a pooled (B, C, 1, 1) map is a linear layer, so it is one here; no bias,
    since the BN that follows absorbs it.

    Shape:
        (B, in_features) -> (B, out_features)

    Example:
        >>> Reduction(2048, 512)(torch.randn(4, 2048)).shape
        torch.Size([4, 512])
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, out_features, bias=False)
        self.bn = nn.BatchNorm1d(out_features)
        self.act = nn.ReLU(inplace=True)
        nn.init.kaiming_normal_(self.fc.weight, mode="fan_out", nonlinearity="relu")


class BNNeck(nn.Module):
    """BNNeck: BatchNorm1d with its bias frozen at 0, then a bias-free identity classifier.

    In training, returns :class:`BranchOutput` with the pre-BN feature (triplet loss) and the
    logits of the post-BN feature (ID loss); in eval, returns the post-BN feature.

    Args:
        in_features: D.
        num_classes: identities of the classifier; 0 for none (feature extractor only).

    Shape:
        train: (B, D) -> BranchOutput(feat (B, D), logits (B, num_classes) or None);
        eval: (B, D) -> (B, D)

    Example:
        >>> neck = BNNeck(512, num_classes=10)
        >>> out = neck(torch.randn(4, 512))
        >>> out.feat.shape, out.logits.shape
        (torch.Size([4, 512]), torch.Size([4, 10]))
        >>> neck.eval()(torch.randn(4, 512)).shape
        torch.Size([4, 512])
    """

    def __init__(self, in_features: int, num_classes: int = 0) -> None:
        super().__init__()
        self.in_features = in_features
        self.bn = nn.BatchNorm1d(in_features)
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)
        # BoT: a shift after the classifier-facing BN would move the embedding off the
        # hypersphere the ID loss shapes, so the bias stays 0 and is not trained.
        self.bn.bias.requires_grad_(False)
        self.classifier: nn.Linear | None = None
        self.reset_classifier(num_classes)

    @property
    def num_classes(self) -> int:
        return 0 if self.classifier is None else self.classifier.out_features

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a fresh one (normal, std 0.001) of ``num_classes`` outputs."""
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0 = no classifier), got {num_classes}")
        if num_classes == 0:
            self.classifier = None
            return
        device = self.bn.weight.device
        self.classifier = nn.Linear(self.in_features, num_classes, bias=False, device=device)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, feat: torch.Tensor) -> BranchOutput | torch.Tensor:
        neck = self.bn(feat)
        if not self.training:
            return neck
        logits = None if self.classifier is None else self.classifier(neck)
        return BranchOutput(feat, logits)


class BatchDrop(nn.Module):
    """Batch DropBlock: in training, zero one random rectangle, the same for the whole batch.

    The rectangle spans ``round(h_ratio * H)`` rows and ``round(w_ratio * W)`` columns (BFE uses
    0.3 and full width). Its position is drawn from torch's global RNG, so ``torch.manual_seed``
    makes it reproducible and gradient checkpointing replays it. Identity in eval.

    Shape:
        (B, C, H, W) -> (B, C, H, W)

    Example:
        >>> drop = BatchDrop()
        >>> y = drop(torch.ones(2, 1, 10, 4))
        >>> int((y[0, 0] == 0).sum()), bool((y[0] == y[1]).all())
        (12, True)
    """

    def __init__(self, h_ratio: float = 0.3, w_ratio: float = 1.0) -> None:
        super().__init__()
        if not (0.0 <= h_ratio <= 1.0 and 0.0 <= w_ratio <= 1.0):
            raise ValueError(f"h_ratio and w_ratio must be in [0, 1], got {h_ratio}, {w_ratio}")
        self.h_ratio = h_ratio
        self.w_ratio = w_ratio

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        hgt, wid = x.shape[-2:]
        rh, rw = round(self.h_ratio * hgt), round(self.w_ratio * wid)
        top = int(torch.randint(0, hgt - rh + 1, (1,)))
        left = int(torch.randint(0, wid - rw + 1, (1,)))
        mask = x.new_ones((1, 1, hgt, wid))
        mask[..., top : top + rh, left : left + rw] = 0
        return x * mask
