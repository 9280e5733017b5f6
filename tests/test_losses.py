"""Losses against values computed by hand on small tensors."""

import math
from typing import NamedTuple

import pytest
import torch
import torch.nn.functional as F

from fnc.losses import ReIDLoss, cross_entropy_loss, euclidean_dist, total_loss, triplet_loss


class BranchOutput(NamedTuple):
    """Stand-in for the models' per-branch training output (duck-typed by the losses)."""

    feat: torch.Tensor
    logits: torch.Tensor | None


# Four points on a line; identities {0, 1} and {2, 3}.
FEAT = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [7.0, 0.0]])
PIDS = torch.tensor([0, 0, 1, 1])
# Hardest positive / nearest negative per anchor, by hand:
#   a0: ap = 1, an = 3;  a1: ap = 1, an = 2;  a2: ap = 4, an = 2;  a3: ap = 4, an = 6.
AP = [1.0, 1.0, 4.0, 4.0]
AN = [3.0, 2.0, 2.0, 6.0]


def test_euclidean_dist_values_and_zero_gradient():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0]], requires_grad=True)
    d = euclidean_dist(x)
    assert torch.allclose(d, torch.tensor([[0.0, 5.0], [5.0, 0.0]]), atol=1e-5)
    d.sum().backward()
    assert torch.isfinite(x.grad).all()
    # Identical points (zero distance off the diagonal) must not produce NaN gradients either.
    y = torch.ones(3, 4, requires_grad=True)
    euclidean_dist(y).sum().backward()
    assert torch.isfinite(y.grad).all()


def test_triplet_hard_margin_by_hand():
    expected = sum(max(0.0, 0.3 + ap - an) for ap, an in zip(AP, AN)) / 4  # (0 + 0 + 2.3 + 0) / 4
    assert expected == pytest.approx(0.575)
    assert triplet_loss(FEAT, PIDS, margin=0.3).item() == pytest.approx(expected, abs=1e-5)
    assert triplet_loss(FEAT, PIDS, margin=0.0).item() == pytest.approx(2.0 / 4, abs=1e-5)


def test_triplet_soft_margin_by_hand():
    expected = sum(math.log1p(math.exp(ap - an)) for ap, an in zip(AP, AN)) / 4
    assert triplet_loss(FEAT, PIDS, margin=None).item() == pytest.approx(expected, abs=1e-5)


def test_triplet_singleton_identity_uses_self_as_positive():
    # Identity 1 has one image: its anchor's hardest positive is itself (distance ~0).
    feat = torch.tensor([[0.0], [1.0], [1.5]])
    pids = torch.tensor([0, 0, 1])
    # a0: ap 1, an 1.5 -> 0; a1: ap 1, an 0.5 -> 0.8; a2: ap 0, an 0.5 -> 0.
    assert triplet_loss(feat, pids, margin=0.3).item() == pytest.approx(0.8 / 3, abs=1e-5)


def test_triplet_gradient_is_finite_and_flows():
    feat = torch.randn(8, 16, generator=torch.Generator().manual_seed(0), requires_grad=True)
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    triplet_loss(feat, pids).backward()
    assert torch.isfinite(feat.grad).all() and feat.grad.abs().sum() > 0


def test_triplet_needs_two_identities():
    with pytest.raises(ValueError, match="at least two identities"):
        triplet_loss(torch.randn(4, 3), torch.zeros(4, dtype=torch.long))


def test_triplet_rejects_bad_shapes_and_margin():
    with pytest.raises(ValueError, match=r"\(B, B\)"):
        triplet_loss(torch.randn(4, 3), torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match="margin"):
        triplet_loss(FEAT, PIDS, margin=-1.0)


def test_cross_entropy_label_smoothing_by_hand():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0]])
    pids = torch.tensor([0, 2])
    eps, n = 0.1, 3
    expected = 0.0
    for row, y in zip(logits.tolist(), pids.tolist()):
        log_z = math.log(sum(math.exp(v) for v in row))
        logp = [v - log_z for v in row]
        q = [(1 - eps) * (c == y) + eps / n for c in range(n)]
        expected += -sum(qc * lc for qc, lc in zip(q, logp))
    expected /= 2
    assert cross_entropy_loss(logits, pids, label_smoothing=0.1).item() == pytest.approx(expected, abs=1e-6)
    assert cross_entropy_loss(logits, pids, label_smoothing=0.0).item() == pytest.approx(
        F.cross_entropy(logits, pids).item(), abs=1e-6
    )


def test_cross_entropy_rejects_bad_input():
    with pytest.raises(ValueError, match="label_smoothing"):
        cross_entropy_loss(torch.zeros(2, 3), torch.tensor([0, 1]), label_smoothing=1.5)
    with pytest.raises(ValueError, match="num_classes"):
        cross_entropy_loss(torch.zeros(2, 3), torch.tensor([0, 1, 2]))


def _two_branches():
    g = torch.Generator().manual_seed(1)
    logits_a = torch.randn(4, 5, generator=g)
    logits_b = torch.randn(4, 5, generator=g)
    return [BranchOutput(FEAT, logits_a), BranchOutput(FEAT * 2, logits_b)]


def test_total_loss_is_eq7():
    outs = _two_branches()
    total, parts = total_loss(outs, PIDS)
    ids = [cross_entropy_loss(o.logits, PIDS, 0.1) for o in outs]
    tris = [triplet_loss(o.feat, PIDS, 0.3) for o in outs]
    expected = 2.0 * (ids[0] + ids[1]) + (tris[0] + tris[1])
    assert total.item() == pytest.approx(expected.item(), abs=1e-5)
    assert parts["id"].item() == pytest.approx((ids[0] + ids[1]).item(), abs=1e-6)
    assert parts["triplet/1"].item() == pytest.approx(tris[1].item(), abs=1e-6)
    # Branch 1 has features scaled by 2: hardest gaps double, a2: 0.3 + 8 - 4 -> 4.3 / 4.
    assert parts["triplet/1"].item() == pytest.approx(4.3 / 4, abs=1e-5)


def test_total_loss_accepts_pairs_single_branch_and_module():
    outs = _two_branches()
    pairs = [(o.feat, o.logits) for o in outs]
    a, _ = total_loss(outs, PIDS)
    b, _ = ReIDLoss()(pairs, PIDS)
    assert a.item() == pytest.approx(b.item())
    one, parts = ReIDLoss(id_weight=2.0)(outs[0], PIDS)
    assert set(parts) == {"id", "id/0", "triplet", "triplet/0"}
    also_one, _ = ReIDLoss()(pairs[0], PIDS)
    assert one.item() == pytest.approx(also_one.item())


def test_total_loss_without_logits():
    outs = [BranchOutput(FEAT, None)]
    with pytest.raises(ValueError, match="id_weight=0"):
        total_loss(outs, PIDS)
    total, parts = total_loss(outs, PIDS, id_weight=0)
    assert "id" not in parts and total.item() == pytest.approx(0.575, abs=1e-5)


def test_total_loss_backward_reaches_every_branch():
    feats = [FEAT.clone().requires_grad_(), (FEAT * 2).requires_grad_()]
    logits = [torch.zeros(4, 3, requires_grad=True) for _ in range(2)]
    total, parts = ReIDLoss()(list(zip(feats, logits)), PIDS)
    total.backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in feats + logits)
    assert all(not p.requires_grad for p in parts.values())


def test_total_loss_rejects_garbage():
    with pytest.raises(TypeError):
        total_loss([], PIDS)
    with pytest.raises(TypeError, match="branch 0"):
        total_loss([object()], PIDS)
