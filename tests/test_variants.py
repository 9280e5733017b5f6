"""The paper's comparison variants: MGN and Baseline + SAB / CAB build, train a step, and reload."""

from __future__ import annotations

import pytest
import torch

import fnc
from fnc.losses import ReIDLoss
from fnc.models import CAB, SAB, Baseline

NUM_CLASSES = 4
VARIANTS = [
    ("mgn_resnet50", {}),
    ("baseline_resnet50", {"attention": "sab"}),
    ("baseline_resnet50", {"attention": "cab"}),
]


@pytest.mark.parametrize(("name", "kwargs"), VARIANTS, ids=["mgn", "baseline+sab", "baseline+cab"])
def test_variant_trains_a_step_and_reloads_from_save_pretrained(name, kwargs, tmp_path):
    torch.manual_seed(0)
    model = fnc.create_model(name, num_classes=NUM_CLASSES, **kwargs)
    x = torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    loss, parts = ReIDLoss()(model.train()(x), pids)
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    unchanged = [n for n, p in model.named_parameters() if p.requires_grad and torch.equal(p, before[n])]
    assert not unchanged, f"not updated by the step: {unchanged[:5]}"
    if "attention" in kwargs:
        assert any(n.startswith("attention.") for n in before)

    model.eval()
    with torch.no_grad():
        want = model(x)
    model.save_pretrained(tmp_path / "ckpt")
    reloaded = fnc.create_model(checkpoint_path=tmp_path / "ckpt", num_classes=NUM_CLASSES).eval()
    assert type(reloaded) is type(model) and reloaded.num_classes == NUM_CLASSES
    if "attention" in kwargs:
        assert isinstance(reloaded.attention, {"sab": SAB, "cab": CAB}[kwargs["attention"]])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), want, rtol=0, atol=0)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("attention", ["sab", "cab"])
def test_baseline_se_resnext101_attention_adds_exactly_the_block(attention):
    plain = fnc.create_model("baseline_se_resnext101")
    attended = fnc.create_model("baseline_se_resnext101", attention=attention)
    # SAB: g, h, p (2048 -> 1024) and t (1024 -> 2048), biased 1x1 convs. CAB: 1x1 2048 -> 1024,
    # BN, grouped 3x3 (32 groups), BN, biased 1x1 1024 -> 2048, SE (2048 -> 128 -> 2048, biased).
    block = {
        "sab": 3 * (2048 * 1024 + 1024) + 1024 * 2048 + 2048,
        "cab": 2048 * 1024
        + 2 * 1024
        + 1024 * 32 * 9
        + 2 * 1024
        + 1024 * 2048
        + 2048
        + 2048 * 128
        + 128
        + 128 * 2048
        + 2048,
    }[attention]
    assert _count(attended) - _count(plain) == block
    assert attended.embed_dim == plain.embed_dim == 2048


def test_baseline_attention_is_applied_to_res5_before_pooling():
    torch.manual_seed(0)
    model = Baseline("resnet50", attention="cab").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = model.bnneck(model.attention(model.backbone(x)).mean((2, 3)))
        torch.testing.assert_close(model(x), want, rtol=0, atol=0)


def test_baseline_unknown_attention_is_named():
    with pytest.raises(ValueError, match=r"attention must be 'sab', 'cab' or None .* got 'nl'"):
        fnc.create_model("baseline_resnet50", attention="nl")
