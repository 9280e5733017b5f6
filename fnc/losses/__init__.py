"""Re-ID training losses: batch-hard triplet, label-smoothed cross-entropy, center loss, and the FNC
total (Eq. 7).

A leaf package: torch only. Model outputs are taken by duck typing (``.feat`` / ``.logits`` or
``(feat, logits)`` pairs), so nothing here imports ``fnc.models``.
"""

from fnc.losses.center import BranchCenterLoss, CenterLoss, WithCenterLoss
from fnc.losses.cross_entropy import cross_entropy_loss
from fnc.losses.reid import ReIDLoss, total_loss
from fnc.losses.triplet import euclidean_dist, hard_example_mining, triplet_loss

__all__ = [
    "BranchCenterLoss",
    "CenterLoss",
    "WithCenterLoss",
    "ReIDLoss",
    "cross_entropy_loss",
    "euclidean_dist",
    "hard_example_mining",
    "total_loss",
    "triplet_loss",
]
