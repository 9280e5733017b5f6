"""No output path ever changes or deletes a file fnc-reid did not write.

Each writer is pointed at a folder holding the user's own files where its outputs go: the trainer
(``fnc.fit`` and ``fnc-reid train``) at a folder with an unrelated ``best/``, ``fnc-reid extract -o``
at an existing ``.npy`` / row-order ``.txt`` (CityFlow's official ``name_test.txt`` included),
``fnc-reid demo --output`` at a folder with the user's ``data/labels.csv`` and pictures. The whole
tree is hashed before and after: a refused write must leave every byte, and ``--overwrite`` (where
it exists) replaces only the files the command writes. ONNX export onto an existing file is the
export module's own check and is tested in tests/test_export.py.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fnc
from fnc.demo import run_demo
from fnc.engine import Trainer
from fnc.engine.checkpoint import recover_checkpoint, save_training_folder
from fnc.engine.outputs import OutputExistsError

sys.path.insert(0, str(Path(__file__).parent))
from _cli import in_process  # noqa: E402
from _train_helpers import write_veri  # noqa: E402

_BESIDE = Path(sys.executable).parent / "fnc-reid"
EXE = str(_BESIDE) if _BESIDE.is_file() else shutil.which("fnc-reid")
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
TINY = dict(batch_size=8, num_instances=2, input_size=(32, 32), num_workers=0, progress=False, epochs=1)


def cli(*args) -> subprocess.CompletedProcess:
    assert EXE, "the fnc-reid console script is not installed: pip install -e ."
    return subprocess.run([EXE, *map(str, args)], env=ENV, capture_output=True, text=True, timeout=300)


def tree(root: Path) -> dict[str, str]:
    """``relative path -> SHA-256`` of every file under ``root`` (folders as ``<dir>``)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = "<dir>" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def assert_one_line_error(proc: subprocess.CompletedProcess, command: str, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    # train logs the dataset summary before it builds the trainer; the error is the last line.
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr, proc.stderr
    assert lines[-1].startswith(f"fnc-reid {command}: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[-1], (fragment, lines[-1])


@pytest.fixture(scope="module")
def veri(tmp_path_factory) -> str:
    return write_veri(tmp_path_factory.mktemp("veri"), n_train=1, n_test=2)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(root / f"{i:02d}.png")
    return root


def _user_best(out: Path) -> None:
    """A folder named best/ that the user made: notes and weights of their own."""
    (out / "best").mkdir(parents=True)
    (out / "best" / "notes.txt").write_text("my best model, do not delete")
    (out / "best" / "model.safetensors").write_bytes(b"someone else's weights")
    (out / "results.csv").write_text("run,mAP\na,0.5\n")


# ------------------------------------------------------------------ the trainer


@pytest.mark.parametrize("folder", ["best", "last"])
def test_fit_never_replaces_an_unrelated_checkpoint_folder(tmp_path, veri, folder):
    out = tmp_path / "run"
    (out / folder).mkdir(parents=True)
    (out / folder / "notes.txt").write_text("mine")
    # Another tool's trainer_state.json (Hugging Face's Trainer writes one) is not ours either.
    (out / folder / "trainer_state.json").write_text('{"global_step": 10}')
    before = tree(tmp_path)
    with pytest.raises(OutputExistsError, match=rf"{folder}.*not written by fnc-reid.*notes\.txt"):
        Trainer(fnc.create_model("baseline_resnet50"), veri, out, **TINY)
    assert tree(tmp_path) == before


def test_fit_replaces_only_its_own_checkpoints(tmp_path, veri):
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.csv").write_text("mine")
    (out / "best").mkdir()  # empty: nothing to lose
    torch.manual_seed(0)
    fnc.fit(fnc.create_model("baseline_resnet50"), veri, out, **TINY)
    first = tree(out)
    assert first["results.csv"] == hashlib.sha256(b"mine").hexdigest()
    # A second run into the same folder replaces the first run's own folders (fnc-reid wrote them).
    torch.manual_seed(1)
    fnc.fit(fnc.create_model("baseline_resnet50"), veri, out, **TINY)
    second = tree(out)
    assert second["results.csv"] == first["results.csv"]
    assert second["best/model.safetensors"] != first["best/model.safetensors"]
    assert sorted(p.name for p in out.iterdir()) == ["best", "curves.png", "last", "metrics.jsonl", "results.csv"]


def test_save_into_an_unrelated_folder_is_refused_even_late(tmp_path):
    # The check also guards the write itself, for a folder that appeared during training.
    _user_best(tmp_path)
    before = tree(tmp_path)
    with pytest.raises(OutputExistsError, match="notes.txt"):
        save_training_folder(tmp_path / "best", torch.nn.Linear(2, 2), None, {"epoch": 1})
    assert tree(tmp_path) == before


def test_cli_train_refuses_an_unrelated_best_folder(tmp_path, veri, capsys):
    _user_best(tmp_path / "run")
    before = tree(tmp_path)
    proc = in_process(
        capsys,
        "train",
        "--model",
        "baseline_resnet50",
        "--no-pretrained",
        "--data",
        veri,
        "--output",
        tmp_path / "run",
        "--epochs",
        1,
        "--batch-size",
        8,
        "--num-instances",
        2,
        "--input-size",
        32,
        32,
        "--num-workers",
        0,
        "--no-progress",
    )
    assert_one_line_error(proc, "train", str(tmp_path / "run" / "best"), "notes.txt")
    assert tree(tmp_path) == before


def test_recovery_removes_an_interrupted_best_write(tmp_path, veri):
    out = tmp_path / "run"
    torch.manual_seed(0)
    fnc.fit(fnc.create_model("baseline_resnet50"), veri, out, **TINY)
    (out / ".best.tmp-abc123").mkdir()  # what a kill during a best/ write leaves
    (out / ".best.tmp-abc123" / "model.safetensors").write_bytes(b"half")
    assert recover_checkpoint(out / "best") == out / "best"
    assert sorted(p.name for p in out.iterdir()) == ["best", "curves.png", "last", "metrics.jsonl"]
    # And the trainer runs that recovery itself when it starts.
    (out / ".best.tmp-def456").mkdir()
    torch.manual_seed(0)
    fnc.fit(fnc.create_model("baseline_resnet50"), veri, out, resume=True, **dict(TINY, epochs=2))
    assert sorted(p.name for p in out.iterdir()) == ["best", "curves.png", "last", "metrics.jsonl"]


# ------------------------------------------------------------------ extract


@pytest.mark.parametrize("existing", ["name_test.txt", "name_test.npy", "both"])
def test_extract_never_overwrites_without_overwrite(tmp_path, images, capsys, existing):
    # A CityFlow root: `-o name_test.npy` must not destroy the official name_test.txt.
    root = tmp_path / "AIC20_ReID"
    root.mkdir()
    names = ["name_test.txt", "name_test.npy"] if existing == "both" else [existing]
    for name in names:
        (root / name).write_bytes(b"000001.jpg\n000002.jpg\n" if name.endswith(".txt") else b"user's array")
    (root / "train_label.xml").write_text("<TrainingImages/>")
    before = tree(tmp_path)
    base = [
        "extract",
        "baseline_resnet50",
        images,
        "-o",
        root / "name_test.npy",
        "--no-pretrained",
        "--input-size",
        32,
        32,
        "--quiet",
    ]
    # In-process, the same code as the script without its start-up; "both" runs the script itself.
    run = cli if existing == "both" else lambda *args: in_process(capsys, *args)
    proc = run(*base)
    assert_one_line_error(proc, "extract", *(str(root / n) for n in names), "--overwrite")
    assert tree(tmp_path) == before
    # --overwrite replaces exactly the two files extract writes, nothing else.
    proc = run(*base, "--overwrite")
    assert proc.returncode == 0, proc.stderr
    after = tree(tmp_path)
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert changed == {"AIC20_ReID/name_test.npy", "AIC20_ReID/name_test.txt"}
    assert np.load(root / "name_test.npy").shape == (3, 2048)
    assert (root / "name_test.txt").read_text().splitlines() == fnc.list_images(images)


# ------------------------------------------------------------------ demo


def _user_data(out: Path) -> None:
    (out / "data" / "images").mkdir(parents=True)
    (out / "data" / "labels.csv").write_text("path,id,camera\nimages/0001_c001_00.jpg,1,1\n")
    Image.new("RGB", (8, 8), (255, 0, 0)).save(out / "data" / "images" / "0001_c001_00.jpg")
    (out / "ranked_list.png").write_bytes(b"my own picture")


def test_demo_never_writes_over_the_users_data(tmp_path):
    out = tmp_path / "mine"
    _user_data(out)
    before = tree(tmp_path)
    proc = cli("demo", "--quick", "--output", out, "--no-progress")
    assert_one_line_error(proc, "demo", str(out), "labels.csv", "--overwrite")
    assert tree(tmp_path) == before
    with pytest.raises(OutputExistsError, match="ranked_list.png"):
        run_demo(out, quick=True, progress=False, echo=lambda *a: None)
    assert tree(tmp_path) == before


def test_demo_overwrite_replaces_only_its_files_and_reruns_into_its_own_folder(tmp_path):
    out = tmp_path / "mine"
    _user_data(out)
    (out / "notes.txt").write_text("mine, not the demo's")
    before = tree(tmp_path)
    proc = cli("demo", "--quick", "--epochs", 1, "--output", out, "--no-progress", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    after = tree(tmp_path)
    assert after["mine/notes.txt"] == before["mine/notes.txt"]  # not one of the demo's paths
    assert after["mine/data/labels.csv"] != before["mine/data/labels.csv"]  # asked for
    assert all(k in after for k in before)  # nothing deleted
    # The folder is now the demo's: a second demo may replace its files without --overwrite.
    run_demo(out, quick=True, epochs=1, progress=False, echo=lambda *a: None)
    assert tree(tmp_path)["mine/notes.txt"] == before["mine/notes.txt"]


def test_fit_never_replaces_a_users_own_history_files(tmp_path, veri):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"mine": 1}\n')
    before = tree(tmp_path)
    with pytest.raises(OutputExistsError, match="metrics.jsonl"):
        fnc.fit(fnc.create_model("baseline_resnet50"), veri, out, **TINY)
    assert tree(tmp_path) == before
