"""Inputs that used to be taken silently and give wrong results: each now fails by name, or is read right.

A corrupt checkpoint folder (its own manifest says so) and NaN weights; 16-bit PNGs; the same image
under two vehicle ids in every label format; held-out identities that leave nothing to find;
``num_instances=1``; control characters in extracted file names; and ``skip_corrupt`` wherever the
corrupt-image error can arise. Each case asserts the exact error type and that the message names
the thing at fault; command-line cases run ``fnc.cli.main`` in-process, the code behind the
``fnc-reid`` script without a Python start-up per case (tests/test_bad_inputs.py runs the script itself).
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fnc
from fnc.data import CorruptImageError, holdout_identities, read_dataset, read_vehicleid, read_veriwild
from fnc.data.dataset import load_image
from fnc.data.records import Record
from fnc.engine import TrainConfig, Trainer
from fnc.engine.checkpoint import save_training_folder
from fnc.inference.images import as_rgb_image
from fnc.models import CorruptCheckpointError

sys.path.insert(0, str(Path(__file__).parent))
from _cli import in_process  # noqa: E402
from _train_helpers import write_cityflow, write_csv, write_veri  # noqa: E402
from test_data_vehicle import _veriwild  # noqa: E402


def assert_user_error(proc: subprocess.CompletedProcess, command: str, *fragments: str) -> str:
    """Exit 2, no traceback, the last stderr line is the error (the readers may log before it)."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(f"fnc-reid {command}: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


# ------------------------------------------------------------------ checkpoints


@pytest.fixture(scope="module")
def corrupt_checkpoint(tmp_path_factory) -> Path:
    """A trainer checkpoint folder whose model.safetensors was altered after its manifest was written."""
    folder = tmp_path_factory.mktemp("run") / "best"
    torch.manual_seed(0)
    save_training_folder(folder, fnc.create_model("baseline_resnet50", num_classes=4), None, {"epoch": 1})
    # A damaged copy: still a valid safetensors file of the same size, its last floats now 1e30.
    path = folder / "model.safetensors"
    raw = path.read_bytes()
    path.write_bytes(raw[:-64] + np.full(16, 1e30, np.float32).tobytes())
    return folder


def test_create_model_verifies_a_checkpoint_folders_manifest(corrupt_checkpoint):
    with pytest.raises(
        CorruptCheckpointError,
        match=r"best is corrupt: model\.safetensors does not match its SHA-256.*copy the folder again",
    ):
        fnc.create_model(checkpoint_path=corrupt_checkpoint)


@pytest.mark.parametrize("command", ["extract", "eval"])
def test_cli_checkpoint_with_a_bad_manifest_is_refused(corrupt_checkpoint, tmp_path, capsys, command):
    if command == "extract":
        Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
        proc = in_process(
            capsys,
            "extract",
            "baseline_resnet50",
            tmp_path / "a.png",
            "-o",
            tmp_path / "f.npy",
            "--checkpoint",
            corrupt_checkpoint,
            "--input-size",
            32,
            32,
            "--quiet",
        )
    else:
        proc = in_process(
            capsys,
            "eval",
            "--checkpoint",
            corrupt_checkpoint,
            "--data",
            write_veri(tmp_path / "veri", n_train=1, n_test=2),
        )
    assert_user_error(proc, command, str(corrupt_checkpoint), "model.safetensors does not match its SHA-256")
    assert not (tmp_path / "f.npy").exists()


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("source", ["folder", "file"])
def test_non_finite_weights_are_refused_with_the_tensor_named(tmp_path, value, source):
    torch.manual_seed(0)
    model = fnc.create_model("baseline_resnet50")
    key = "backbone.layer1.0.conv1.weight"
    with torch.no_grad():
        model.state_dict()[key].view(-1)[3] = value
    model.save_pretrained(tmp_path / "ckpt")
    path = tmp_path / "ckpt" if source == "folder" else tmp_path / "ckpt" / "model.safetensors"
    name = None if source == "folder" else "baseline_resnet50"
    with pytest.raises(CorruptCheckpointError, match=rf"NaN or inf values in tensors 1: {key}"):
        fnc.create_model(name, checkpoint_path=path)


# ------------------------------------------------------------------ images


def _gradient16() -> np.ndarray:
    return np.tile(np.linspace(0, 65535, 256).round().astype(np.uint16), (8, 1))


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_16_bit_images_are_scaled_not_clipped(tmp_path, mode):
    grad = _gradient16()
    arrays = {"I;16": grad, "I;16B": grad.astype(">u2"), "I": grad.astype(np.int32)}
    image = Image.fromarray(arrays[mode])
    assert image.mode == mode
    expected = np.rint(grad[0] * (255 / 65535)).astype(np.uint8)
    rgb = np.asarray(as_rgb_image(image))
    np.testing.assert_array_equal(rgb[0, :, 0], expected)
    assert (rgb == 255).mean() < 0.01  # convert("RGB") made 98% of it white
    if mode == "I;16":  # the file path goes through the same conversion
        image.save(tmp_path / "g.png")
        assert Image.open(tmp_path / "g.png").mode == "I;16"
        np.testing.assert_array_equal(np.asarray(load_image(str(tmp_path / "g.png"))), rgb)


# ------------------------------------------------------------------ contradicting labels


def _csv_with_duplicate(root: Path) -> tuple[str, dict]:
    spec = write_csv(root, n_train=1, n_test=2)
    path = Path(spec.partition(":")[2])
    rows = list(csv.reader(path.open()))
    image = rows[1][0]
    rows.append([image, "car-999", rows[1][2], "train"])  # the first image again, another vehicle
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    return spec, {"image": str(root / image)}


def _cityflow_xml_duplicate(root: Path) -> tuple[str, dict]:
    spec, label_file = write_cityflow(root, n_train=1, n_test=2)
    xml = root / "train_label.xml"
    text = xml.read_bytes().decode("gb2312")
    text = text.replace("</Items>", '<Item imageName="000001.jpg" vehicleID="0999" cameraID="c001" />\n</Items>')
    xml.write_bytes(text.encode("gb2312"))
    return spec, {"label_file": label_file, "image": str(root / "image_train" / "000001.jpg")}


def _cityflow_label_file_duplicate(root: Path) -> tuple[str, dict]:
    spec, label_file = write_cityflow(root, n_train=1, n_test=2)
    for name in ("name_query.txt", "name_test.txt"):
        (root / name).unlink()  # the official lists would catch the extra row first
    rows = list(csv.reader(label_file.open()))
    rows.append([rows[1][0], "999", rows[1][2]])
    with label_file.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    return spec, {"label_file": label_file, "image": str(root / rows[1][0])}


def _vehicleid_duplicate(root: Path) -> tuple[str, dict]:
    for imgid in range(1, 9):
        (root / "image").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(root / "image" / f"{imgid:07d}.jpg")
    (root / "train_test_split").mkdir()
    (root / "train_test_split" / "train_list.txt").write_text("0000001 10\n0000002 10\n0000003 11\n0000004 11\n")
    # 0000002 is vehicle 10 in the training list and vehicle 20 here.
    (root / "train_test_split" / "test_list_800.txt").write_text(
        "0000005 20\n0000006 20\n0000002 20\n0000007 21\n0000008 21\n"
    )
    return f"vehicleid:{root}", {"image": str(root / "image" / "0000002.jpg")}


def _veriwild_duplicate(root: Path) -> tuple[str, dict]:
    _veriwild(root)
    info = root / "train_test_split" / "vehicle_info.txt"
    info.write_text(info.read_text() + "00005/000001;3;2018-03-11 11:40:10;Changan;MPV;white\n")
    return f"veriwild:{root}", {"image": "000001 (id 1 camera 3, id 5 camera 3)"}


@pytest.mark.parametrize(
    "writer",
    [
        _csv_with_duplicate,
        _cityflow_xml_duplicate,
        _cityflow_label_file_duplicate,
        _vehicleid_duplicate,
        _veriwild_duplicate,
    ],
    ids=lambda w: w.__name__.strip("_"),
)
def test_an_image_under_two_vehicle_ids_is_an_error_listing_it(tmp_path, writer):
    spec, info = writer(tmp_path / "data")
    kwargs = {"label_file": info["label_file"]} if "label_file" in info else {}
    with pytest.raises(ValueError, match="labelled with two different vehicle ids or cameras") as err:
        read_dataset(spec, **kwargs)
    assert info["image"] in str(err.value)


def test_the_same_labels_twice_are_not_a_contradiction(tmp_path):
    assert read_vehicleid is not None and read_veriwild is not None
    from fnc.data.records import check_consistent_labels

    check_consistent_labels([Record("a.jpg", 1, 2), Record("a.jpg", 1, 2), Record("b.jpg", 1, 2)], "x")


# ------------------------------------------------------------------ held-out identities


def test_holdout_with_one_image_per_camera_names_the_ids():
    recs = [Record(f"{p}_{c}.jpg", p, c) for p in range(4) for c in (1, 2)]  # one image per camera
    with pytest.raises(ValueError, match=r"held-out identities \[1, 3\] have exactly one image per camera.*label file"):
        holdout_identities(recs, [1, 3])
    recs.append(Record("3_1_b.jpg", 3, 1))  # a second image in camera 1: now id 3 has a gallery image
    train, query, gallery = holdout_identities(recs, [3])
    assert [r.path for r in gallery] == ["3_1_b.jpg"]


def test_cli_eval_with_holdout_ids_names_them_not_the_flag(tmp_path, capsys):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    rows = [("path", "id", "camera")]
    for pid in range(1, 4):
        for cam in (1, 2):
            Image.new("RGB", (16, 16), (pid * 40, cam * 60, 0)).save(root / "images" / f"{pid}_{cam}.png")
            rows.append((f"images/{pid}_{cam}.png", str(pid), str(cam)))
    with (root / "labels.csv").open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    proc = in_process(
        capsys,
        "eval",
        "--model",
        "baseline_resnet50",
        "--no-pretrained",
        "--data",
        f"csv:{root / 'labels.csv'}",
        "--holdout-ids",
        1,
    )
    line = assert_user_error(proc, "eval", "one image per camera")
    assert "pass --label-file or --holdout-ids" not in line


# ------------------------------------------------------------------ recipe


def test_num_instances_1_is_refused_by_name(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"num_instances is 1, but the batch-hard triplet loss needs at least 2"):
        TrainConfig(num_instances=1)
    TrainConfig(num_instances=1, triplet_weight=0.0)  # the ID loss alone needs no pairs
    proc = in_process(
        capsys,
        "train",
        "--model",
        "baseline_resnet50",
        "--no-pretrained",
        "--data",
        "csv:/nonexistent.csv",
        "--output",
        tmp_path / "run",
        "--num-instances",
        1,
    )
    assert_user_error(proc, "train", "--num-instances is 1")


# ------------------------------------------------------------------ extract's row order


def test_extract_refuses_names_that_would_break_the_row_order_file(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("a.png", "b\nc.png", "d\te.png"):
        Image.new("RGB", (16, 16)).save(folder / name, format="PNG")
    proc = in_process(
        capsys,
        "extract",
        "baseline_resnet50",
        folder,
        "-o",
        tmp_path / "f.npy",
        "--no-pretrained",
        "--input-size",
        32,
        32,
    )
    assert_user_error(
        proc, "extract", "2 image path(s) contain a newline or other control character", repr(str(folder / "b\nc.png"))
    )
    assert not (tmp_path / "f.npy").exists() and not (tmp_path / "f.txt").exists()


# ------------------------------------------------------------------ skip_corrupt


@pytest.fixture
def data_with_a_corrupt_image(tmp_path):
    spec = write_csv(tmp_path / "data", n_train=1, n_test=2)  # 36 training images: 4 or 5 steps
    data = read_dataset(spec)
    broken = data.train[0].path
    Path(broken).write_bytes(b"not an image")
    return data, broken


def test_trainer_suggests_and_accepts_skip_corrupt(data_with_a_corrupt_image):
    data, broken = data_with_a_corrupt_image
    tiny = dict(
        epochs=1, batch_size=8, num_instances=2, input_size=(32, 32), num_workers=0, progress=False, eval_every=0
    )
    torch.manual_seed(0)
    trainer = Trainer(fnc.create_model("baseline_resnet50"), data, None, **tiny)
    with pytest.raises(
        CorruptImageError,
        match=rf"{broken}.*skip_corrupt=True \(ImageDataset, TrainConfig; fnc-reid train --skip-corrupt\)",
    ):
        trainer.fit()
    torch.manual_seed(0)
    trainer = Trainer(fnc.create_model("baseline_resnet50"), data, None, config=TrainConfig(skip_corrupt=True), **tiny)
    trainer.fit()
    assert trainer.history[0]["steps"] >= 1


def test_cli_train_has_skip_corrupt(capsys):
    proc = in_process(capsys, "train", "--help")
    assert "--skip-corrupt" in proc.stdout


def test_extract_suggests_and_accepts_skip_corrupt(data_with_a_corrupt_image):
    data, broken = data_with_a_corrupt_image
    model = fnc.create_model("baseline_resnet50")
    paths = [r.path for r in data.train[:3]]
    with pytest.raises(CorruptImageError, match=rf"{broken}.*skip_corrupt=True \(fnc-reid extract --skip-corrupt\)"):
        fnc.extract(model, paths, input_size=(32, 32), progress=False)
    feats = fnc.extract(model, paths, input_size=(32, 32), progress=False, skip_corrupt=True, batch_size=2)
    assert feats.shape == (3, 2048)
    assert np.isnan(feats).any(axis=1).tolist() == [True, False, False]
    np.testing.assert_allclose(
        feats[1:], fnc.extract(model, paths[1:], input_size=(32, 32), progress=False), rtol=1e-5, atol=1e-5
    )
