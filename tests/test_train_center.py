"""Center loss in the trainer: off by default, per-branch centres with their own SGD, exact resume.

That DDP keeps the centres equal to one process is checked in test_ddp.py, in its single launch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

import fnc
from fnc.data import read_dataset
from fnc.engine import TrainConfig, Trainer
from fnc.losses import BranchCenterLoss, ReIDLoss, WithCenterLoss

sys.path.insert(0, str(Path(__file__).parent))
from _train_helpers import write_veri  # noqa: E402

TINY = dict(batch_size=8, num_instances=2, input_size=(32, 32), num_workers=0, progress=False, eval_every=0)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return read_dataset(write_veri(tmp_path_factory.mktemp("veri"), n_train=1))


def _trainer(data, arch="baseline_resnet50", output=None, **overrides) -> Trainer:
    torch.manual_seed(0)
    model = fnc.create_model(arch, num_classes=data.num_train_pids)
    return Trainer(model, data, output, **{**TINY, **overrides})


def test_center_loss_is_off_by_default(data):
    cfg = TrainConfig()
    assert (cfg.center_weight, cfg.center_lr) == (0.0, 0.5)
    trainer = _trainer(data, epochs=1)
    assert type(trainer.criterion) is ReIDLoss and trainer.center_optimizer is None
    assert "criterion" not in trainer.state_dict()


def test_one_center_loss_per_branch_sized_from_its_feature(data):
    trainer = _trainer(data, "fnc_resnet50", epochs=1, center_weight=5e-4)
    assert isinstance(trainer.criterion, WithCenterLoss) and isinstance(trainer.criterion.center, BranchCenterLoss)
    sizes = [(c.num_classes, c.feat_dim) for c in trainer.criterion.center.losses]
    assert sizes == [(12, 1024), (12, 512)]  # FNC's spatial and channel branches
    opt = trainer.center_optimizer
    assert type(opt) is torch.optim.SGD and opt.param_groups[0]["lr"] == 0.5
    # The centres are not in the network's optimiser (nor its schedule).
    network = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert not network & {id(c.centers) for c in trainer.criterion.center.losses}


def test_the_center_term_decreases_and_the_centres_follow_bot(data):
    trainer = _trainer(data, epochs=3, center_weight=5e-4, warmup_epochs=0)
    centres = trainer.criterion.center.losses[0].centers
    before = centres.detach().clone()
    images, pids, _ = next(iter(trainer.loader))
    loss, parts = trainer.train_step(images, pids)
    assert {"center", "center/0", "id", "triplet"} <= set(parts)
    # BoT: the centres' SGD step uses the gradient divided by center_weight, i.e. that of L_center alone.
    # d/dc_y of 1/B sum ||x - c_y||^2 is 2 (c_y - mean x) n_y / B; lr 0.5 moves c_y that far.
    moved = (before - centres.detach()).abs().sum(1)
    assert int((moved > 0).sum()) == len(set(pids.tolist()))
    trainer.fit()
    centers = [h["center"] for h in trainer.history]
    print("center term per epoch:", [round(c, 1) for c in centers])
    assert centers[-1] < 0.7 * centers[0], centers


def test_resume_with_center_loss_is_bit_identical(tmp_path, data):
    straight = _trainer(data, output=tmp_path / "a", epochs=2, center_weight=5e-4)
    straight.fit()
    first = _trainer(data, output=tmp_path / "b", epochs=1, center_weight=5e-4)
    first.fit()
    meta = json.loads((tmp_path / "b" / "last" / "trainer_state.json").read_text())
    assert meta["epoch"] == 1
    resumed = _trainer(data, output=tmp_path / "b", epochs=2, center_weight=5e-4)
    resumed.fit(resume=True)
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert torch.equal(straight.criterion.center.losses[0].centers, resumed.criterion.center.losses[0].centers)
    assert straight.history[-1]["center"] == resumed.history[-1]["center"]


def test_center_flags_come_from_the_recipe_metadata(capsys):
    from fnc.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = capsys.readouterr().out
    assert "--center-weight" in help_text and "--center-lr" in help_text
