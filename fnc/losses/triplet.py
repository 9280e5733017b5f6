"""Batch-hard triplet loss (Hermans et al. 2017; FNC paper Eq. 6) on Euclidean distances."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from fnc.losses._checks import check_batch

__all__ = ["euclidean_dist", "hard_example_mining", "triplet_loss"]


def euclidean_dist(x: Tensor, y: Tensor | None = None, eps: float = 1e-12) -> Tensor:
    """Pairwise Euclidean distances, safe to differentiate at zero distance.

    Args:
        x: first set of vectors.
        y: second set; ``None`` means ``x`` against itself.
        eps: squared distances are clamped to at least this before the square root, because
            d sqrt(u)/du is infinite at u = 0 (an anchor against itself) and would turn the
            gradient into NaN.

    Returns:
        Distances ``dist[i, j] = ||x_i - y_j||_2`` (``sqrt(eps)`` where the points coincide).

    Shape:
        x: (M, D); y: (N, D); output: (M, N).

    >>> euclidean_dist(torch.tensor([[0.0, 0.0], [3.0, 4.0]]))[0, 1]
    tensor(5.)
    """
    if y is None:
        y = x
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"expected (M, D) and (N, D) inputs, got {tuple(x.shape)} and {tuple(y.shape)}")
    # Compute in float32 at least: the expansion below cancels badly in half precision.
    dtype = torch.promote_types(x.dtype, torch.float32)
    x, y = x.to(dtype), y.to(dtype)
    sq = x.pow(2).sum(1, keepdim=True) + y.pow(2).sum(1).unsqueeze(0) - 2.0 * (x @ y.t())
    return sq.clamp(min=eps).sqrt()


def hard_example_mining(dist: Tensor, pids: Tensor) -> tuple[Tensor, Tensor]:
    """For each anchor, the farthest positive and the nearest negative in the batch.

    The anchor itself counts as a positive (distance ~0), so an anchor whose identity has no
    other image in the batch still gets a loss from its nearest negative, as in BoT.

    Args:
        dist: pairwise distances of the batch against itself.
        pids: identity label of each sample.

    Returns:
        ``(dist_ap, dist_an)``: hardest-positive and hardest-negative distance per anchor.

    Shape:
        dist: (B, B); pids: (B,); outputs: (B,) each.

    >>> d = euclidean_dist(torch.tensor([[0.0], [1.0], [3.0]]))
    >>> ap, an = hard_example_mining(d, torch.tensor([0, 0, 1]))
    >>> ap.round(decimals=3).tolist(), an.round(decimals=3).tolist()
    ([1.0, 1.0, 0.0], [3.0, 2.0, 2.0])
    """
    if dist.dim() != 2 or dist.shape[0] != dist.shape[1] or pids.shape != (dist.shape[0],):
        raise ValueError(f"expected dist (B, B) and pids (B,), got {tuple(dist.shape)} and {tuple(pids.shape)}")
    same = pids.unsqueeze(0) == pids.unsqueeze(1)
    if bool(same.all()):
        raise ValueError(
            "batch-hard triplet loss needs at least two identities in the batch; "
            "sample batches with PKSampler (P identities x K images)"
        )
    # Masked fill instead of boolean indexing keeps shapes static when identities are
    # unevenly represented in the batch.
    dist_ap = dist.masked_fill(~same, float("-inf")).amax(dim=1)
    dist_an = dist.masked_fill(same, float("inf")).amin(dim=1)
    return dist_ap, dist_an


def triplet_loss(
    feat: Tensor,
    pids: Tensor,
    margin: float | None = 0.3,
    normalize: bool = False,
) -> Tensor:
    """Batch-hard triplet loss, averaged over anchors.

    ``mean_a max(0, margin + d(a, hardest positive) - d(a, hardest negative))``. Eq. 6 of the
    paper writes a sum over anchors; we average, as BoT does, so the loss scale does not depend on
    the batch size and lambda = 2 in Eq. 7 keeps the meaning it has in BoT-based code.

    Args:
        feat: embeddings, before BNNeck's batch norm (the BNNeck split, paper Sec. 2 and 3.1).
        pids: identity labels.
        margin: the hinge margin alpha (0.3, BoT's value; the paper gives none). ``None`` selects
            the soft-margin variant ``softplus(d_ap - d_an)`` of Hermans et al.
        normalize: L2-normalise the features first (off in the paper's recipe).

    Returns:
        Scalar loss.

    Shape:
        feat: (B, D); pids: (B,).

    >>> feat = torch.tensor([[0.0], [1.0], [3.0]])
    >>> triplet_loss(feat, torch.tensor([0, 0, 1]), margin=0.3).round(decimals=4)
    tensor(0.)
    >>> triplet_loss(feat, torch.tensor([0, 1, 1]), margin=0.3).round(decimals=4)
    tensor(0.4333)
    """
    if margin is not None and margin < 0:
        raise ValueError(f"margin must be >= 0 or None (soft margin), got {margin}")
    check_batch(feat, pids, "feat")
    if normalize:
        feat = F.normalize(feat, dim=1)
    dist_ap, dist_an = hard_example_mining(euclidean_dist(feat), pids)
    if margin is None:
        return F.softplus(dist_ap - dist_an).mean()
    return F.relu(dist_ap - dist_an + margin).mean()
