"""CenterLoss against a hand computation and against BoT's distance-matrix formulation."""

from __future__ import annotations

import pytest
import torch

from fnc.losses import CenterLoss


def _bot_center_loss(x: torch.Tensor, centers: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BoT's ``layers/center_loss.py`` written out: full distance matrix, masked, clamped, / B."""
    b, n = x.shape[0], centers.shape[0]
    distmat = x.pow(2).sum(1, keepdim=True).expand(b, n) + centers.pow(2).sum(1, keepdim=True).expand(n, b).t()
    distmat = distmat - 2 * x @ centers.t()
    mask = labels.unsqueeze(1).expand(b, n).eq(torch.arange(n).expand(b, n))
    return (distmat * mask.float()).clamp(min=1e-12, max=1e12).sum() / b


def test_center_loss_by_hand():
    criterion = CenterLoss(num_classes=3, feat_dim=2)
    with torch.no_grad():
        criterion.centers.copy_(torch.tensor([[1.0, 1.0], [0.0, 0.0], [-1.0, 2.0]]))
    feat = torch.tensor([[2.0, 3.0], [0.0, 1.0], [-1.0, 0.0]])
    pids = torch.tensor([0, 1, 2])
    # ||(1, 2)||^2 + ||(0, 1)||^2 + ||(0, -2)||^2 = 5 + 1 + 4, over a batch of 3.
    loss = criterion(feat, pids)
    torch.testing.assert_close(loss, torch.tensor(10.0 / 3))
    loss.backward()
    # d/dc_y of ||x - c_y||^2 / B is -2 (x - c_y) / B; the unused centre gets none.
    want = torch.tensor([[-2.0, -4.0], [0.0, -2.0], [0.0, 4.0]]) / 3
    torch.testing.assert_close(criterion.centers.grad, want)


def test_center_loss_equals_bot_formulation():
    torch.manual_seed(0)
    criterion = CenterLoss(num_classes=5, feat_dim=8)
    feat = torch.randn(12, 8)
    pids = torch.randint(0, 5, (12,))
    want = _bot_center_loss(feat, criterion.centers.detach(), pids)
    # BoT clamps the masked-out zeros too: (num_classes - 1) * 1e-12 per sample, below float noise here.
    torch.testing.assert_close(criterion(feat, pids), want, rtol=1e-5, atol=1e-5)


def test_center_loss_bad_input():
    criterion = CenterLoss(num_classes=3, feat_dim=4)
    with pytest.raises(ValueError, match=r"expected features of shape \(B, 4\)"):
        criterion(torch.randn(2, 5), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"pids must be training labels in \[0, 3\)"):
        criterion(torch.randn(2, 4), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="num_classes and feat_dim must be >= 1"):
        CenterLoss(0, 4)
