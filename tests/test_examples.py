"""Every script in ``examples/`` runs, on tiny inputs with random weights (nothing downloaded)."""

from __future__ import annotations

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


def run(script: str, *args, cwd=None) -> str:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *map(str, args)],
        env=ENV,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


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


def test_quickstart(vehicles, tmp_path):
    out = run(
        "quickstart.py",
        vehicles / "query",
        vehicles / "gallery",
        "--model",
        "fnc_resnet50",
        *SMALL,
        "--top",
        3,
        "--save",
        tmp_path / "ranked.png",
    )
    assert "3 queries, 9 gallery images, 1536-d embeddings" in out
    assert out.count(" -> ") == 3 and (tmp_path / "ranked.png").stat().st_size > 0


def test_rerank_ensemble(vehicles, tmp_path):
    out = run(
        "rerank_ensemble.py",
        vehicles / "query",
        vehicles / "gallery",
        "--fnc",
        "fnc_resnet50",
        "--bfe",
        "bfe_resnet50",
        *SMALL,
        "-o",
        tmp_path / "dist.npy",
    )
    assert np.load(tmp_path / "dist.npy").shape == (3, 9)
    # VeRi-style names: every step is scored.
    assert "FNC + BFE, re-ranked:" in out and "mAP" in out


def test_finetune_from_folder_layout(vehicles, tmp_path):
    # ROOT/<camera>/<vehicle id>/<image>, the layout the example turns into a CSV.
    root = tmp_path / "cams"
    for image in sorted((vehicles / "drawn" / "images").iterdir()):
        vehicle, camera = image.name.split("_")[:2]
        (root / camera / vehicle).mkdir(parents=True, exist_ok=True)
        shutil.copy(image, root / camera / vehicle)
    out = run(
        "finetune.py",
        root,
        "--output",
        tmp_path / "run",
        "--model",
        "fnc_resnet50",
        "--holdout-ids",
        3,
        "--epochs",
        1,
        "--batch-size",
        8,
        "--device",
        "cpu",
        *SMALL,
    )
    assert (root / "labels.csv").read_text().startswith("path,id,camera")
    assert "best: mAP" in out and (tmp_path / "run" / "best" / "model.safetensors").is_file()


def test_export_onnx(vehicles, tmp_path):
    pytest.importorskip("onnxruntime")
    image = sorted((vehicles / "query").iterdir())[0]
    out = run("export_onnx.py", "--model", "fnc_resnet50", *SMALL, "-o", tmp_path / "m.onnx", "--image", image)
    assert (tmp_path / "m.onnx").is_file() and "1536-d" in out
    diff = float(out.split("max abs difference ")[1].split()[0])
    assert diff < 1e-2  # PIL-only preprocessing vs fnc's: resize implementations differ slightly
