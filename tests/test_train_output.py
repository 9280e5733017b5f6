"""What a training run leaves for a person: metrics.jsonl, curves.png, TensorBoard scalars, a log that
reads well without a terminal, and DataLoader worker counts that fit the CPUs.

The end-to-end test runs the ``fnc-reid`` console script with stdout / stderr piped, which is what
CI, ``| tee`` and a cluster job give it: no TTY.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import fnc
from fnc.cli import main
from fnc.data import read_dataset
from fnc.data.workers import DEFAULT_MAX_WORKERS, available_cpus, resolve_num_workers
from fnc.engine import Trainer
from fnc.engine.history import CURVES_FILE, METRICS_FILE, RunHistory, read_metrics
from fnc.engine.progress import EpochProgress
from fnc.viz.curves import PALETTE, line_chart, training_curves

sys.path.insert(0, str(Path(__file__).parent))
from _cli import REPO, cli  # noqa: E402
from _train_helpers import TINY_TRAIN, write_veri  # noqa: E402

# No --no-progress and no --num-workers: these tests are about the log and the worker default.
TINY = [*TINY_TRAIN, "--model", "baseline_resnet50", "--eval-every", "1", "--seed", "3"]
TRAIN_KEYS = {"epoch", "loss", "loss_id", "loss_triplet", "lr", "images_per_s", "epoch_time_s", "steps"}
EVAL_KEYS = {"mAP", "rank1", "rank5", "rank10", "mINP", "eval_time_s"}
# The trainer's line at the end of each epoch.
EPOCH_LINE = re.compile(
    r"fnc\.engine\.trainer: epoch (\d+)/(\d+): loss \d+\.\d+ \(id \d+\.\d+, triplet \d+\.\d+\), lr "
)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_veri(tmp_path_factory) -> str:
    return write_veri(tmp_path_factory.mktemp("veri"), n_train=1)


def _train(*args: str) -> subprocess.CompletedProcess:
    """``fnc-reid train`` as a user runs it, output piped (no TTY)."""
    return cli("train", *args)


def test_console_script_run_writes_metrics_curves_and_a_readable_log(tmp_path, tiny_veri):
    out = tmp_path / "run"
    # Default --num-workers: the trainer picks at most the CPUs this process may use.
    run = _train(*TINY, "--data", tiny_veri, "--output", str(out), "--epochs", "3")
    assert run.returncode == 0, run.stderr
    rows = read_metrics(out)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for row in rows:
        assert set(row) == TRAIN_KEYS | EVAL_KEYS, set(row) ^ (TRAIN_KEYS | EVAL_KEYS)
        assert row["steps"] == 3 and row["images_per_s"] > 0 and row["epoch_time_s"] > 0
        assert all(0.0 <= row[k] <= 1.0 for k in ("mAP", "rank1", "rank5", "rank10", "mINP"))
        # Eq. 7 with the default weights: total = 2 * id + 1 * triplet, as epoch means.
        assert row["loss"] == pytest.approx(2 * row["loss_id"] + row["loss_triplet"], rel=1e-6)
    # The same rows as the checkpoint's history, so a resume can continue the file.
    state = json.loads((out / "last" / "trainer_state.json").read_text())
    assert state["epoch"] == 3 and state["history"] == rows
    assert state["best_epoch"] in (1, 2, 3) and state["best_metrics"]["mAP"] == max(r["mAP"] for r in rows)

    png = out / CURVES_FILE
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    with Image.open(png) as img:
        assert img.format == "PNG" and img.size == (1560, 476)
        colours = {c for _, c in img.convert("RGB").getcolors(1 << 20)}
    assert PALETTE[0] in colours and PALETTE[1] in colours  # the first two lines were drawn

    err = run.stderr
    assert "\r" not in err, "progress bar refreshes in a non-TTY log"
    epochs = [m.groups() for m in map(EPOCH_LINE.search, err.splitlines()) if m]
    assert epochs == [("1", "3"), ("2", "3"), ("3", "3")], err
    # A few lines per epoch: the epoch's numbers, its evaluation, its checkpoint.
    assert len(err.splitlines()) <= 8 + 4 * 3, err
    assert "worker" not in err.lower(), err
    assert json.loads(run.stdout.strip().splitlines()[-1])["mAP"] == max(r["mAP"] for r in rows)

    # A row that the checkpoint does not know (as after a crash between the two writes) is dropped
    # on resume, and the resumed epochs follow the checkpoint's.
    with (out / METRICS_FILE).open("a") as f:
        f.write(json.dumps({**rows[-1], "epoch": 4}) + "\n")
    resumed = _train(
        *TINY, "--data", tiny_veri, "--output", str(out), "--epochs", "4", "--resume", "--num-workers", "0"
    )
    assert resumed.returncode == 0, resumed.stderr
    after = read_metrics(out)
    assert [r["epoch"] for r in after] == [1, 2, 3, 4]
    assert after[:3] == rows and after[3]["loss"] != rows[-1]["loss"]
    assert "resumed from" in resumed.stderr and [
        m.group(1) for m in map(EPOCH_LINE.search, resumed.stderr.splitlines()) if m
    ] == ["4"]


def test_tensorboard_without_the_package_is_a_one_line_error_up_front(tmp_path, tiny_veri, capsys, monkeypatch):
    # The package is an optional extra: hide it whether or not this environment has it.
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    out = tmp_path / "run"
    assert main(["train", *TINY, "--data", tiny_veri, "--output", str(out), "--tensorboard"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install tensorboard" in err, err
    assert not out.exists()  # nothing was trained or written
    data = read_dataset(tiny_veri)
    model = fnc.create_model("baseline_resnet50", num_classes=data.num_train_pids)
    with pytest.raises(ImportError, match="pip install tensorboard"):
        Trainer(model, data, out, epochs=1, tensorboard=True, num_workers=0)
    with pytest.raises(ValueError, match="output_dir"):
        Trainer(model, data, None, epochs=1, tensorboard=True, num_workers=0)


def test_tensorboard_scalars_when_installed(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rows = [{"epoch": e, "loss": 3.0 / e, "loss_id": 1.0 / e, "lr": 0.01, "steps": 3} for e in (1, 2, 3)]
    rows[2].update(mAP=0.5, rank1=0.75)
    history = RunHistory(tmp_path, tensorboard=True)
    history.write(rows[:2])
    history.write(rows)
    history.close()
    # A resumed process rewrites from its checkpoint's rows: epoch 3 is logged again, not twice.
    again = RunHistory(tmp_path, tensorboard=True)
    again.write(rows)
    again.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, pytest.approx(e.value)) for e in events.Scalars("train/loss")] == [(1, 3.0), (2, 1.5), (3, 1.0)]
    assert [(e.step, e.value) for e in events.Scalars("eval/mAP")] == [(3, 0.5)]
    assert "train/steps" not in events.Tags()["scalars"]


def test_metrics_file_is_rewritten_from_the_rows(tmp_path):
    history = RunHistory(tmp_path)
    rows = [{"epoch": 1, "loss": 2.0, "lr": 0.1}, {"epoch": 2, "loss": 1.0, "lr": 0.1, "mAP": 0.25}]
    history.write(rows)
    assert read_metrics(tmp_path / METRICS_FILE) == rows
    history.write(rows[:1])  # a resume from epoch 1 truncates the file to it
    assert read_metrics(tmp_path) == rows[:1]
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind
    (tmp_path / METRICS_FILE).write_text('{"epoch": 1}\nnot json\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2 is not JSON"):
        read_metrics(tmp_path)


def test_progress_logs_a_line_per_tenth_only_for_long_epochs(caplog):
    now = [0.0]

    def clock() -> float:
        return now[0]

    def run_epoch(seconds_per_step: float, **kwargs) -> list[str]:
        caplog.clear()
        progress = EpochProgress(range(40), "epoch 2/5", bar=False, clock=clock, **kwargs)
        for _ in progress:
            now[0] += seconds_per_step
            progress.update(images=16, loss=1.5, lr=1e-3)
        progress.close()
        return [r.getMessage() for r in caplog.records]

    with caplog.at_level(logging.INFO, logger="fnc.engine.progress"):
        assert run_epoch(0.05) == []  # a 2 s epoch: the trainer's end-of-epoch line is enough
        long = run_epoch(10.0)  # 400 s: one line per tenth, the last tenth is the trainer's line
        assert len(long) == 9, long
        assert long[0] == "epoch 2/5:  10% (4/40 steps), loss 1.5000, lr 1.00e-03, 1.6 images/s, eta 6m00s"
        assert run_epoch(10.0, enabled=False) == []
        # 20 s per tenth: a line at every other tenth, never two within 30 s.
        assert len(run_epoch(5.0)) == 4


def test_loader_workers_never_exceed_the_cpus(tmp_path, tiny_veri):
    cpus = available_cpus()
    if hasattr(os, "sched_getaffinity"):
        assert cpus == len(os.sched_getaffinity(0))
    assert resolve_num_workers(None) == min(DEFAULT_MAX_WORKERS, cpus)
    assert resolve_num_workers(3) == 3  # an explicit count is the user's
    with pytest.raises(ValueError, match="num_workers must be >= 0"):
        resolve_num_workers(-1)
    data = read_dataset(tiny_veri)
    model = fnc.create_model("baseline_resnet50", num_classes=data.num_train_pids)
    trainer = Trainer(model, data, None, epochs=1, batch_size=8, num_instances=2, input_size=(32, 32), device="cpu")
    assert trainer.loader.num_workers == trainer.num_workers == min(DEFAULT_MAX_WORKERS, cpus)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
def test_worker_default_follows_the_affinity_mask():
    code = "from fnc.data.workers import resolve_num_workers; print(resolve_num_workers(None))"
    one_cpu = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, PYTHONPATH=REPO),
        preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}),
    )
    assert one_cpu.stdout.strip() == "1"


def test_curves_picture_has_its_panels():
    rows = [
        {"epoch": e, "loss": 4.0 / e, "loss_id": 2.0 / e, "loss_triplet": 1.0 / e, "lr": 3.5e-5 * e}
        for e in range(1, 11)
    ]
    for r in rows[4::5]:
        r.update(mAP=0.1 * r["epoch"] / 5, rank1=0.2 * r["epoch"] / 5)
    img = training_curves(rows, title="runs/toy")
    assert img.size == (1560, 476)
    panels = [img.crop((x, 36, x + 520, 476)) for x in (0, 520, 1040)]
    colours = [{c for _, c in p.getcolors(1 << 20)} for p in panels]
    assert {PALETTE[0], PALETTE[1], PALETTE[2]} <= colours[0]  # total, id, triplet
    assert PALETTE[0] in colours[1] and PALETTE[1] not in colours[1]  # lr only
    assert {PALETTE[0], PALETTE[1]} <= colours[2]  # mAP, rank-1
    # Nothing evaluated: the panel says so instead of drawing empty axes.
    empty = line_chart({"mAP": ([], [])}, title="Evaluation", empty_text="not evaluated yet")
    assert PALETTE[0] not in {c for _, c in empty.getcolors(1 << 20)}
    # A log axis drops non-positive values instead of failing on them.
    assert line_chart({"lr": ([1, 2, 3], [0.0, 1e-4, 1e-2])}, title="lr", log_y=True).size == (520, 440)


def test_trainer_steps_equal_a_plain_pytorch_loop(tmp_path):
    """The trainer adds nothing to the maths: same model, losses, Ranger and batches as a plain loop
    give the same weights, so slow learning on a toy set is the data and the recipe, not the loop."""
    import copy

    from torch.utils.data import DataLoader

    from fnc.data.dataset import ImageDataset
    from fnc.data.sampler import PKSampler
    from fnc.data.transforms import build_transforms
    from fnc.losses.reid import ReIDLoss
    from fnc.optim.ranger import Ranger

    # 3 steps per epoch: 6 steps cross Ranger's Lookahead synchronisation (k=6) once.
    data = read_dataset(write_veri(tmp_path / "veri", n_train=1))
    recipe = {
        "batch_size": 8,
        "num_instances": 2,
        "input_size": (32, 32),
        "lr": 1e-2,
        "warmup_epochs": 0,
        "flip_p": 0.0,
        "padding": 0,
        "erase_p": 0.0,
        "num_workers": 0,
        "eval_every": 0,
        "progress": False,
        "device": "cpu",
        "seed": 5,
    }
    torch.manual_seed(0)
    model = fnc.create_model("baseline_resnet50", num_classes=data.num_train_pids)
    plain = copy.deepcopy(model)
    trainer = Trainer(model, data, None, epochs=2, **recipe)
    trainer.fit()

    cfg = trainer.config
    dc = trainer.data_config
    transform = build_transforms(
        dc.hw, dc.mean, dc.std, train=True, flip_p=0.0, padding=0, erase_p=0.0, interpolation=dc.interpolation
    )
    sampler = PKSampler(data.train, num_instances=2, batch_size=8, seed=cfg.seed)
    loader = DataLoader(ImageDataset(data.train, transform), batch_size=8, sampler=sampler)
    opt = Ranger(
        [p for p in plain.parameters() if p.requires_grad],
        lr=cfg.lr,
        betas=cfg.betas,
        weight_decay=cfg.weight_decay,
        k=cfg.lookahead_k,
        alpha=cfg.lookahead_alpha,
    )
    criterion = ReIDLoss(cfg.id_weight, cfg.triplet_weight, cfg.margin, cfg.label_smoothing)
    losses = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        plain.train()
        epoch_losses = []
        for images, pids, _ in loader:
            loss, _ = criterion([(o.feat, o.logits) for o in plain(images)], pids)
            opt.zero_grad()
            loss.backward()
            opt.step()
            epoch_losses.append(loss.item())
        losses.append(sum(epoch_losses) / len(epoch_losses))
    assert [r["loss"] for r in trainer.history] == pytest.approx(losses, rel=1e-5)
    for (name, a), b in zip(trainer.model.state_dict().items(), plain.state_dict().values()):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), name


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_a_terminal_gets_the_tqdm_bar(monkeypatch):
    import pty

    primary, secondary = pty.openpty()
    with open(secondary, "w") as terminal:
        monkeypatch.setattr(sys, "stderr", terminal)
        progress = EpochProgress(range(3), "epoch 1/1")
        assert progress.bar and progress._tqdm is not None
        for _ in progress:
            progress.update(images=8, loss=1.0)
        progress.close()
    os.close(primary)
    with open(os.devnull, "w") as piped:  # not a terminal: log lines, no bar
        monkeypatch.setattr(sys, "stderr", piped)
        assert not EpochProgress(range(3), "epoch 1/1").bar
