"""Every script in ``examples/`` runs, on tiny inputs with random weights (nothing downloaded)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fnc.demo import make_synthetic_dataset

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
SMALL = ["--no-pretrained", "--input-size", "32", "48"]


@pytest.fixture(scope="module")
def vehicles(tmp_path_factory) -> Path:
    """Synthetic vehicles (VeRi-style names) split into query/ and gallery/ folders."""
    root = tmp_path_factory.mktemp("vehicles")
    csv_path = make_synthetic_dataset(
        root / "drawn",
        num_train_ids=6,
        num_test_ids=3,
        num_cams=2,
        shots_per_cam=2,
        image_size=(48, 64),
        queries_per_id=1,
        seed=1,
    )
    for split in ("query", "gallery"):
        (root / split).mkdir()
    for line in csv_path.read_text().splitlines()[1:]:
        path, _, _, split = line.split(",")
        if split in ("query", "gallery"):
            shutil.copy(csv_path.parent / path, root / split)
    return root


def _camera_folders(vehicles: Path, root: Path) -> Path:
    """ROOT/<camera>/<vehicle id>/<image>, the layout finetune.py turns into a CSV."""
    for image in sorted((vehicles / "drawn" / "images").iterdir()):
        vehicle, camera = image.name.split("_")[:2]
        (root / camera / vehicle).mkdir(parents=True, exist_ok=True)
        shutil.copy(image, root / camera / vehicle)
    return root


@pytest.fixture(scope="module")
def examples(vehicles, tmp_path_factory):
    """Every example started at once (one Python start-up each, side by side): ``examples(name)``
    waits for that script and returns ``(its output folder, its stdout)``; it must exit 0."""
    out = tmp_path_factory.mktemp("examples")
    query, gallery = vehicles / "query", vehicles / "gallery"
    argv = {
        "quickstart.py": (query, gallery, "--model", "fnc_resnet50", *SMALL, "--top", 3, "--save", out / "ranked.png"),
        "rerank_ensemble.py": (query, gallery, "--fnc", "fnc_resnet50", "--bfe", "bfe_resnet50", *SMALL)
        + ("-o", out / "dist.npy"),
        "finetune.py": (_camera_folders(vehicles, out / "cams"), "--output", out / "run", "--model", "fnc_resnet50")
        + ("--holdout-ids", 3, "--epochs", 1, "--batch-size", 8, "--device", "cpu", *SMALL),
        "export_onnx.py": (
            "--model",
            "fnc_resnet50",
            *SMALL,
            "-o",
            out / "m.onnx",
            "--image",
            sorted(query.iterdir())[0],
        ),
    }
    if importlib.util.find_spec("onnxruntime") is None:
        del argv["export_onnx.py"]
    procs = {
        script: subprocess.Popen(
            [sys.executable, str(EXAMPLES / script), *map(str, args)],
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for script, args in argv.items()
    }

    def finished(script: str) -> tuple[Path, str]:
        stdout, stderr = procs[script].communicate(timeout=300)
        assert procs[script].returncode == 0, stderr[-3000:]
        return out, stdout

    yield finished
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_quickstart(examples):
    out, stdout = examples("quickstart.py")
    assert "3 queries, 9 gallery images, 1536-d embeddings" in stdout
    assert stdout.count(" -> ") == 3 and (out / "ranked.png").stat().st_size > 0


def test_rerank_ensemble(examples):
    out, stdout = examples("rerank_ensemble.py")
    assert np.load(out / "dist.npy").shape == (3, 9)
    # VeRi-style names: every step is scored.
    assert "FNC + BFE, re-ranked:" in stdout and "mAP" in stdout


def test_finetune_from_folder_layout(examples):
    out, stdout = examples("finetune.py")
    assert (out / "cams" / "labels.csv").read_text().startswith("path,id,camera")
    assert "best: mAP" in stdout and (out / "run" / "best" / "model.safetensors").is_file()


def test_export_onnx(examples):
    pytest.importorskip("onnxruntime")
    out, stdout = examples("export_onnx.py")
    assert (out / "m.onnx").is_file() and "1536-d" in stdout
    diff = float(stdout.split("max abs difference ")[1].split()[0])
    assert diff < 1e-2  # PIL-only preprocessing vs fnc's: resize implementations differ slightly
