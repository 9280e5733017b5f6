"""The choices docs/design.md records: fuse="add" starts as the identity, rerank()'s defaults are
the paper's while re_ranking keeps torchreid's, and nothing cites a document the repository lacks."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from fnc.models import CAB, FNC, SAB
from fnc.rerank import re_ranking, rerank

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_fnc_add_blocks_start_as_the_identity_and_still_learn():
    torch.manual_seed(0)
    model = FNC("resnet50", num_classes=4, fuse="add")
    x = torch.randn(2, 2048, 6, 4)
    model.eval()
    assert torch.equal(model.spatial.attention(x), x)
    assert torch.equal(model.channel.attention(x), x)
    # The residual's last conv gets a gradient, so the block leaves the identity once trained.
    model.train()
    out = model(torch.randn(4, 3, 64, 64))
    sum(o.feat.pow(2).sum() for o in out).backward()
    assert model.spatial.attention.t.weight.grad.abs().sum() > 0
    assert model.channel.attention.conv3.weight.grad.abs().sum() > 0


def test_multiply_keeps_the_initialisation_it_had():
    torch.manual_seed(0)
    model = FNC("resnet50", fuse="multiply").eval()
    assert model.spatial.attention.t.weight.abs().sum() > 0 and model.channel.attention.conv3.weight.abs().sum() > 0
    # zero_init_residual is a no-op for "multiply" blocks.
    for block in (SAB(16), CAB(16, mid_channels=8, groups=2, se_reduction=4)):
        before = {k: v.clone() for k, v in block.state_dict().items()}
        block.zero_init_residual()
        assert all(torch.equal(before[k], v) for k, v in block.state_dict().items())


def test_rerank_defaults_are_the_papers_and_re_ranking_keeps_torchreids():
    def defaults(fn):
        params = inspect.signature(fn).parameters
        return tuple(params[k].default for k in ("k1", "k2", "lambda_value"))

    assert defaults(rerank) == (75, 10, 0.1)
    assert defaults(re_ranking) == (20, 6, 0.3)
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(10, 8)), rng.normal(size=(90, 8))

    def d(a, b):
        return np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))

    expected = re_ranking(d(q, g), d(q, q), d(g, g), 75, 10, 0.1)
    np.testing.assert_allclose(rerank(q, g), expected, atol=1e-5, rtol=0)


def test_no_file_cites_a_document_the_repository_does_not_have():
    word = re.compile(r"\bSPEC\b")
    files = [*ROOT.joinpath("fnc").rglob("*.py"), *ROOT.joinpath("docs").glob("*.md"), ROOT / "README.md"]
    cited = [str(p.relative_to(ROOT)) for p in files if word.search(p.read_text(encoding="utf-8"))]
    assert not cited, cited
    design = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    for topic in ("conv4\\_1", "separate=False", 'fuse="add"', "center_weight", "VehicleID", "re_ranking"):
        assert topic in design, topic
