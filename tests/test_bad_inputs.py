"""Bad and hostile inputs: each gives a clear error of the documented type that names what is wrong.

Command-line mistakes are checked before any data is read or model built, so every case here
points the data / image arguments at paths that do not exist: if the option were checked late,
the error would name the missing path instead of the option. Most cases run ``fnc.cli.main``
in-process; the exit-code promise of README ("0 ok, 1 the job failed, 2 a usage mistake with one
line on stderr") is tested through the installed ``fnc-reid`` script for every command.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fnc
from fnc.cli._common import error_message
from fnc.data import read_dataset
from fnc.engine.config import TrainConfig, config_error_field
from fnc.evaluation import evaluate
from fnc.losses import CenterLoss, cross_entropy_loss, triplet_loss

sys.path.insert(0, str(Path(__file__).parent))
from _cli import ENV, assert_one_line, cli, cli_many, in_process  # noqa: E402

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without a GPU")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    (root / "a_file").write_text("not a folder\n")
    (root / "binary.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe binary")
    return root


# --------------------------------------------------------------------------- usage mistakes, exit 2

MISSING = "/nonexistent/fnc-bad-inputs"
TRAIN = ("train", "--model", "baseline_resnet50", "--data", f"veri:{MISSING}", "--no-pretrained")
EVAL = ("eval", "--model", "baseline_resnet50", "--data", f"veri:{MISSING}", "--no-pretrained")
EXTRACT = ("extract", "baseline_resnet50", f"{MISSING}/images", "--no-pretrained")
RERANK = ("rerank", f"{MISSING}/q.npy", f"{MISSING}/g.npy", "-o", "/tmp/fnc-bad-dist.npy")

USAGE_CASES = [
    # (id, argv (FILE = the module's plain file), fragments the one line must contain)
    ("train-output-file", (*TRAIN, "--output", "FILE"), ("--output", "is a file")),
    ("train-output-under-file", (*TRAIN, "--output", "FILE/run"), ("--output", "is a file, not a folder")),
    (
        "train-output-unwritable",
        (*TRAIN, "--output", "/proc/fnc-bad-inputs/run"),
        ("--output", "cannot write in /proc"),
    ),
    ("train-protocol", (*TRAIN, "--output", "OUT", "--protocol", "bogus"), ("--protocol", "bogus", "veri, aic")),
    ("train-rerank-k1", (*TRAIN, "--output", "OUT", "--rerank-k1", "-5"), ("--rerank-k1", "-5")),
    ("train-rerank-k2", (*TRAIN, "--output", "OUT", "--rerank-k2", "80"), ("--rerank-k2", "rerank_k1")),
    ("train-rerank-lambda", (*TRAIN, "--output", "OUT", "--rerank-lambda", "7"), ("--rerank-lambda", "[0, 1]")),
    ("train-erase-p", (*TRAIN, "--output", "OUT", "--erase-p", "5"), ("--erase-p", "[0, 1]", "5")),
    ("train-flip-p", (*TRAIN, "--output", "OUT", "--flip-p", "-0.1"), ("--flip-p",)),
    ("train-lr-nan", (*TRAIN, "--output", "OUT", "--lr", "nan"), ("--lr", "finite")),
    ("train-epochs", (*TRAIN, "--output", "OUT", "--epochs", "0"), ("--epochs", ">= 1")),
    ("train-batch-pk", (*TRAIN, "--output", "OUT", "--batch-size", "10"), ("--batch-size", "num_instances")),
    ("train-betas", (*TRAIN, "--output", "OUT", "--betas", "1.5", "0.9"), ("--betas",)),
    ("train-input-size", (*TRAIN, "--output", "OUT", "--input-size", "100000", "100000"), ("--input-size", "4096")),
    ("train-device-unknown", (*TRAIN, "--output", "OUT", "--device", "tpu"), ("--device", "tpu")),
    pytest.param(
        "train-device-cuda",
        (*TRAIN, "--output", "OUT", "--device", "cuda"),
        ("--device cuda", "no CUDA"),
        marks=NO_CUDA,
    ),
    (
        "train-model",
        ("train", "--model", "nosuch_net", "--data", f"veri:{MISSING}", "--output", "OUT"),
        ("nosuch_net",),
    ),
    ("train-epochs-type", (*TRAIN, "--output", "OUT", "--epochs", "3.5"), ("--epochs", "3.5")),
    ("eval-rerank-k1", (*EVAL, "--rerank-k1", "-5"), ("--rerank-k1", "-5")),
    ("eval-rerank-lambda", (*EVAL, "--rerank-lambda", "7"), ("--rerank-lambda", "[0, 1]")),
    ("eval-protocol", (*EVAL, "--protocol", "bogus"), ("--protocol", "bogus")),
    ("eval-input-size", (*EVAL, "--input-size", "100000", "100000"), ("--input-size", "4096")),
    ("eval-batch-size", (*EVAL, "--batch-size", "0"), ("--batch-size", ">= 1")),
    pytest.param("eval-device-cuda", (*EVAL, "--device", "cuda:0"), ("--device cuda:0", "no CUDA"), marks=NO_CUDA),
    (
        "extract-input-size",
        (*EXTRACT, "-o", "OUT/f.npy", "--input-size", "100000", "100000"),
        ("--input-size", "4096", "GiB"),
    ),
    ("extract-input-size-zero", (*EXTRACT, "-o", "OUT/f.npy", "--input-size", "0", "64"), ("--input-size", "positive")),
    pytest.param(
        "extract-device-cuda",
        (*EXTRACT, "-o", "OUT/f.npy", "--device", "cuda"),
        ("--device cuda", "no CUDA"),
        marks=NO_CUDA,
    ),
    ("extract-device-unknown", (*EXTRACT, "-o", "OUT/f.npy", "--device", "gpu0"), ("--device", "gpu0")),
    ("extract-output-suffix", (*EXTRACT, "-o", "OUT/f.txt"), ("-o", ".npy")),
    ("extract-output-folder", (*EXTRACT, "-o", "DIR.npy"), ("-o", "is a folder")),
    ("extract-output-under-file", (*EXTRACT, "-o", "FILE/f.npy"), ("-o", "is a file, not a folder")),
    ("extract-workers", (*EXTRACT, "-o", "OUT/f.npy", "--num-workers", "-1"), ("--num-workers", ">= 0")),
    ("extract-model", ("extract", "nosuch_net", f"{MISSING}/images", "-o", "OUT/f.npy"), ("nosuch_net",)),
    (
        "rerank-weights-inf",
        (*RERANK, "--fuse", "a.npy", "b.npy", "--weights", "inf", "1"),
        ("--weights", "finite", "inf"),
    ),
    ("rerank-weights-nan", (*RERANK, "--fuse", "a.npy", "b.npy", "--weights", "nan", "1"), ("--weights", "nan")),
    ("rerank-weights-negative", (*RERANK, "--fuse", "a.npy", "b.npy", "--weights", "1", "-1"), ("--weights", ">= 0")),
    ("rerank-weights-zero", (*RERANK, "--fuse", "a.npy", "b.npy", "--weights", "0", "0"), ("--weights", "all 0")),
    (
        "rerank-weights-count",
        (*RERANK, "--fuse", "a.npy", "b.npy", "--weights", "1"),
        ("--weights", "one weight per model (2"),
    ),
    ("rerank-k1", (*RERANK, "--k1", "-5"), ("--k1", "-5")),
    ("rerank-lambda", (*RERANK, "--lambda", "7"), ("--lambda", "[0, 1]")),
    ("rerank-lambda-inf", (*RERANK, "--lambda", "inf"), ("--lambda",)),
    ("demo-output-file", ("demo", "--output", "FILE"), ("--output", "is a file")),
    ("demo-epochs", ("demo", "--output", "OUT", "--epochs", "0"), ("--epochs",)),
    ("parse-missing", ("extract", "baseline_resnet50", "x.jpg"), ("-o/--output", "--help")),
    ("parse-type", ("rerank", "q.npy", "g.npy", "-o", "d.npy", "--k1", "many"), ("--k1", "many")),
]


def _fill(argv, files, tmp_path):
    (tmp_path / "DIR.npy").mkdir(exist_ok=True)
    subst = {"FILE": str(files / "a_file"), "OUT": str(tmp_path / "out"), "DIR.npy": str(tmp_path / "DIR.npy")}
    out = []
    for a in argv:
        head, sep, rest = a.partition("/")
        out.append(subst.get(a, subst[head] + sep + rest if head in subst and sep else a))
    return out


def _case_id(case):
    return case.values[0] if hasattr(case, "values") else case[0]


@pytest.mark.parametrize(("name", "argv", "fragments"), USAGE_CASES, ids=[_case_id(c) for c in USAGE_CASES])
def test_usage_mistake_is_one_line_exit_2(capsys, files, tmp_path, name, argv, fragments):
    argv = _fill(argv, files, tmp_path)
    assert_one_line(in_process(capsys, *argv), 2, argv[0], *fragments)
    assert not (tmp_path / "out").exists()  # nothing was written before the mistake was found


# --------------------------------------------------------------------------- data readers


def test_veri_root_that_is_a_file(files):
    with pytest.raises(NotADirectoryError, match="is a file, not a folder") as e:
        read_dataset(f"veri:{files / 'a_file'}")
    assert str(files / "a_file") in str(e.value)


def test_binary_label_csv_names_the_file(files, capsys):
    with pytest.raises(ValueError, match="not a UTF-8 text CSV") as e:
        read_dataset(f"csv:{files / 'binary.csv'}")
    assert str(files / "binary.csv") in str(e.value)
    proc = in_process(capsys, *TRAIN[:3], "--data", f"csv:{files / 'binary.csv'}", "--output", str(files / "o"))
    assert_one_line(proc, 2, "train", "binary.csv", "UTF-8")


def test_nul_bytes_in_csv(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_bytes(b"path,id,camera\na.jpg,1\x00,2\n")
    with pytest.raises(ValueError, match="NUL") as e:
        read_dataset(f"csv:{path}")
    assert str(path) in str(e.value)


# --------------------------------------------------------------------------- TrainConfig


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"epochs": 3.5}, TypeError, "epochs"),
        ({"epochs": True}, TypeError, "epochs"),
        ({"epochs": 0}, ValueError, "epochs"),
        ({"batch_size": "64"}, TypeError, "batch_size"),
        ({"batch_size": 10}, ValueError, "batch_size"),
        ({"erase_p": 5}, ValueError, "erase_p"),
        ({"flip_p": float("nan")}, ValueError, "flip_p"),
        ({"lr": 0}, ValueError, "lr"),
        ({"lr": float("inf")}, ValueError, "lr"),
        ({"margin": -0.1}, ValueError, "margin"),
        ({"label_smoothing": 2}, ValueError, "label_smoothing"),
        ({"rerank_k1": -5}, ValueError, "rerank_k1"),
        ({"rerank_k2": 100}, ValueError, "rerank_k2"),
        ({"rerank_lambda": 7}, ValueError, "rerank_lambda"),
        ({"rerank": "yes"}, TypeError, "rerank"),
        ({"protocol": "bogus"}, ValueError, "protocol"),
        ({"device": "tpu"}, ValueError, "device"),
        ({"device": 0}, TypeError, "device"),
        ({"input_size": (100000, 100000)}, ValueError, "input_size"),
        ({"input_size": (64.0, 64)}, TypeError, "input_size"),
        ({"input_size": (64,)}, ValueError, "input_size"),
        ({"milestones": (40, -1)}, ValueError, "milestones"),
        ({"betas": (0.9,)}, TypeError, "betas"),
        ({"betas": (1.0, 0.9)}, ValueError, "betas"),
        ({"num_workers": -1}, ValueError, "num_workers"),
        ({"id_weight": 0, "triplet_weight": 0}, ValueError, "id_weight"),
        ({"amp": "auto"}, TypeError, "amp"),
    ],
)
def test_train_config_names_the_field(kwargs, error, field):
    with pytest.raises(error) as e:
        TrainConfig(**kwargs)
    assert type(e.value) is error
    assert str(e.value).startswith(field) and config_error_field(e.value) == field


def test_train_config_accepts_the_documented_forms():
    TrainConfig(input_size=[64, 64], milestones=[5], betas=[0.9, 0.99])  # lists, as JSON gives them
    cfg = TrainConfig(input_size=(64, 64), milestones=(5,), margin=None, amp=None, device="cpu", seed=np.int64(3))
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="erase_p"):
        fnc.fit(fnc.create_model("baseline_resnet50"), f"veri:{MISSING}", None, erase_p=5)


# --------------------------------------------------------------------------- API: model, losses, metrics


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return fnc.create_model("baseline_resnet50", num_classes=4).eval()


@pytest.mark.parametrize("num_classes", [3.5, True, "4", None])
def test_num_classes_type(num_classes):
    with pytest.raises(TypeError, match="num_classes must be an int"):
        fnc.create_model("baseline_resnet50", num_classes=num_classes)


def test_num_classes_negative_and_numpy_int():
    with pytest.raises(ValueError, match="num_classes must be >= 0"):
        fnc.create_model("baseline_resnet50", num_classes=-1)
    assert fnc.create_model("baseline_resnet50", num_classes=np.int64(3)).num_classes == 3


@pytest.mark.parametrize(
    ("x", "fragment"),
    [
        (torch.zeros(2, 3, 64, 64, dtype=torch.float64), "float64"),
        (torch.zeros(0, 3, 64, 64), "empty batch"),
        (torch.zeros(2, 3, 64, 64, device="meta"), "meta"),
    ],
    ids=["float64", "zero-batch", "meta"],
)
def test_model_input(model, x, fragment):
    with pytest.raises(ValueError, match=fragment):
        model(x)


def test_model_input_float64_under_autocast_is_left_to_autocast(model):
    # Autocast casts for the layers itself, so only the plain path checks dtypes.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(torch.zeros(2, 3, 64, 64, dtype=torch.bfloat16)).shape == (2, model.embed_dim)


FEAT = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
PIDS = torch.tensor([0, 0, 1, 1])


@pytest.mark.parametrize(
    ("call", "error", "fragment"),
    [
        (lambda: triplet_loss(FEAT, ["a", "a", "b", "b"]), TypeError, "map string ids"),
        (lambda: triplet_loss(FEAT, PIDS.float()), TypeError, "pids.long()"),
        (lambda: triplet_loss(FEAT.long(), PIDS), TypeError, "feat must be a float"),
        (lambda: triplet_loss(torch.zeros(0, 8), PIDS[:0]), ValueError, "empty batch"),
        (lambda: cross_entropy_loss(torch.zeros(4, 3), [0, 0, 1, 1]), TypeError, "pids must be a torch.Tensor"),
        (lambda: cross_entropy_loss(torch.zeros(4, 3), PIDS.float()), TypeError, "integer tensor"),
        (lambda: cross_entropy_loss(torch.zeros(0, 3), PIDS[:0]), ValueError, "empty batch: logits"),
        (lambda: CenterLoss(2, 8)(FEAT, None), TypeError, "pids"),
    ],
    ids=[
        "triplet-str",
        "triplet-float-pids",
        "triplet-int-feat",
        "triplet-empty",
        "ce-list",
        "ce-float-pids",
        "ce-empty",
        "center-none",
    ],
)
def test_loss_inputs(call, error, fragment):
    with pytest.raises(error, match=fragment):
        call()


def test_losses_take_float64():
    assert torch.isfinite(triplet_loss(FEAT.double(), PIDS))
    assert torch.isfinite(cross_entropy_loss(torch.zeros(4, 3, dtype=torch.float64), PIDS))


DIST = np.random.default_rng(0).random((3, 4)).astype(np.float32)


@pytest.mark.parametrize(
    ("args", "error", "fragment"),
    [
        (
            (DIST, np.array(["a", "b", "c"]), np.arange(4), np.zeros(3), np.ones(4)),
            TypeError,
            "q_pids must hold integers",
        ),
        ((DIST, np.arange(3), np.arange(4), None, np.ones(4)), TypeError, "q_camids is None"),
        ((DIST, np.arange(3), np.arange(4), np.zeros(3), None), TypeError, "g_camids is None"),
        (
            (np.array([["x"]]), np.arange(1), np.arange(1), np.zeros(1), np.ones(1)),
            TypeError,
            "distmat must be a numeric",
        ),
        ((DIST[:0], np.arange(0), np.arange(4), np.zeros(0), np.ones(4)), ValueError, "empty query"),
    ],
    ids=["str-pids", "q-camids-none", "g-camids-none", "str-distmat", "zero-query"],
)
def test_evaluate_inputs(args, error, fragment):
    with pytest.raises(error, match=fragment):
        evaluate(*args)


def test_evaluate_accepts_float64_and_lists():
    r = evaluate(DIST.astype(np.float64), [0, 1, 2], [0, 1, 2, 3], [0, 0, 0], [1, 1, 1, 1])
    assert 0.0 <= r.mAP <= 1.0


# --------------------------------------------------------------------------- ONNX export


@pytest.mark.parametrize(
    ("opset", "error", "fragment"),
    [
        (1, ValueError, "opset must be in [14"),
        (13, ValueError, "scaled_dot_product_attention"),
        (10_000, ValueError, "opset must be in"),
        ("17", TypeError, "opset must be an int"),
        (True, TypeError, "opset must be an int"),
    ],
)
def test_export_opset_checked_first(model, tmp_path, opset, error, fragment):
    pytest.importorskip("onnx")
    with pytest.raises(error) as e:
        fnc.export_onnx(model, tmp_path / "m.onnx", input_size=(64, 64), opset=opset)
    assert fragment in str(e.value)
    assert len(str(e.value).splitlines()) == 1 and len(str(e.value)) < 400  # the hint, no graph dump
    assert list(tmp_path.iterdir()) == []


def test_export_normalize_input_and_sidecar(model, tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from fnc.export.onnx import metadata_path

    path = fnc.export_onnx(model, tmp_path / "m.onnx", input_size=(64, 64), normalize_input=True, verify=True)
    pixels = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    cfg = model.pretrained_cfg
    normed = (pixels - torch.tensor(cfg.mean).view(1, 3, 1, 1)) / torch.tensor(cfg.std).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = model(normed).numpy()
    out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": pixels.numpy()})[0]
    assert np.abs(out - ref).max() <= 1e-4 * max(np.abs(ref).max(), 1.0)

    sidecar = json.loads(metadata_path(path).read_text())
    assert metadata_path(path).name == "m.onnx.metadata.json"
    assert sidecar["schema_version"] == 1
    assert sidecar["model_name"] == "baseline_resnet50"
    assert sidecar["img_size"] == [64, 64] and sidecar["model_kwargs"] == {"img_size": [64, 64]}
    assert sidecar["preprocess"] == "resize" and sidecar["model_kwargs_schema_version"] == 1
    assert sidecar["normalize_input"] is True and sidecar["mean"] == list(cfg.mean) and sidecar["std"] == list(cfg.std)
    props = {p.key: p.value for p in __import__("onnx").load(str(path)).metadata_props}
    assert json.loads(props["normalize_input"]) is True

    plain = fnc.export_onnx(model, tmp_path / "plain.onnx", input_size=(64, 64))
    assert json.loads(metadata_path(plain).read_text())["normalize_input"] is False


def test_sidecar_read_by_boxmot(model, tmp_path):
    pytest.importorskip("onnx")
    artifacts = pytest.importorskip("boxmot.reid.core.artifacts")
    registry = pytest.importorskip("boxmot.reid.core.registry")
    path = fnc.export_onnx(model, tmp_path / "veh.onnx", input_size=(64, 96))
    assert artifacts.read_artifact_metadata(path)["model_name"] == "baseline_resnet50"
    reg = registry.ReIDModelRegistry
    assert reg.get_model_name(path) == "baseline_resnet50"
    assert tuple(reg.get_checkpoint_model_kwargs(path)["img_size"]) == (64, 96)
    assert reg.get_checkpoint_preprocess(path) == "resize"


# --------------------------------------------------------------------------- corrupt images, workers


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / f"{i}.png")
    (root / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return root


def test_worker_error_is_unwrapped():
    wrapped = ValueError(
        "Caught CorruptImageError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\n    raise\nfnc.data.dataset.CorruptImageError: cannot read image a.jpg: bad\n'
    )
    assert error_message(wrapped) == "cannot read image a.jpg: bad"
    assert error_message(ValueError("plain\n  two lines")) == "plain two lines"


def test_extract_corrupt_image_in_a_worker_is_one_line(capsys, images, tmp_path):
    argv = (
        "extract",
        "baseline_resnet50",
        images,
        "-o",
        tmp_path / "f.npy",
        "--no-pretrained",
        "--input-size",
        "64",
        "64",
        "--num-workers",
        "1",
        "--quiet",
    )
    line = assert_one_line(in_process(capsys, *argv), 2, "extract", "1.png", "--skip-corrupt")
    assert "DataLoader worker" not in line
    assert not (tmp_path / "f.npy").exists()

    proc = in_process(capsys, *argv, "--skip-corrupt")
    assert proc.returncode == 0, proc.stderr
    assert "skipped 1 unreadable image(s)" in proc.stderr and "1.png" in proc.stderr
    feats = np.load(tmp_path / "f.npy")
    rows = (tmp_path / "f.txt").read_text().splitlines()
    assert feats.shape[0] == 2 and np.isfinite(feats).all()
    assert [Path(r).name for r in rows] == ["0.png", "2.png"]


def test_extract_api_skip_corrupt_keeps_row_order(model, images):
    paths = sorted(str(p) for p in images.iterdir())
    with pytest.raises(fnc.data.CorruptImageError, match="skip_corrupt=True"):
        fnc.extract(model, paths, input_size=(64, 64), progress=False)
    feats = fnc.extract(model, paths, input_size=(64, 64), progress=False, skip_corrupt=True, batch_size=2)
    assert np.isnan(feats).any(axis=1).tolist() == [False, True, False]


def test_extract_api_input_size_bound(model):
    with pytest.raises(ValueError, match="4096"):
        fnc.extract(model, np.zeros((1, 8, 8, 3), np.uint8), input_size=(100000, 100000), progress=False)


# --------------------------------------------------------------------------- README's exit codes, via the script


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt") / "m"
    fnc.create_model("baseline_resnet50").save_pretrained(folder)
    return folder


def test_exit_codes_of_every_command(files, checkpoint, tmp_path):
    """README: 0 ok, 1 the job failed, 2 a usage mistake (one line on stderr), for every command."""
    from fnc.cli import build_parser

    commands = set(build_parser()._subparsers._group_actions[0].choices)
    q, g = tmp_path / "q.npy", tmp_path / "g.npy"
    rng = np.random.default_rng(0)
    np.save(q, rng.random((3, 4), dtype=np.float32))
    np.save(g, rng.random((5, 4), dtype=np.float32))
    out = tmp_path / "out"
    usage = {
        "list": ("list", "--pretrained=yes"),
        "info": ("info", "nosuch_net"),
        "extract": (*EXTRACT, "-o", out / "f.npy", "--input-size", "100000", "100000"),
        "rerank": ("rerank", q, g, "-o", out / "d.npy", "--weights", "inf"),
        "train": (*TRAIN, "--output", files / "a_file"),
        "eval": (*EVAL, "--rerank-lambda", "7"),
        "push": ("push", tmp_path / "no-checkpoint", "org/name"),
        "convert": ("convert", tmp_path / "missing.pth", out / "converted", "--model", "nosuch_net"),
        "demo": ("demo", "--output", files / "a_file"),
    }
    assert set(usage) == commands, "a new command needs its row here"
    # One start-up per run, so the independent runs go together.
    offline = dict(ENV, HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}", HF_TOKEN="hf_test")
    *mistakes, ok, info, nothing = cli_many(
        *usage.values(),
        ("rerank", q, g, "-o", out / "d.npy", "--k1", "4", "--k2", "2"),
        ("info", "baseline_resnet50", "--json"),
        ("list", "zzz_no_model"),
    )
    push = cli("push", checkpoint, "org/name", env=offline)
    for command, proc in zip(usage, mistakes):
        assert_one_line(proc, 2, command)

    assert ok.returncode == 0 and np.load(out / "d.npy").shape == (3, 5), ok.stderr
    assert info.returncode == 0

    assert nothing.returncode == 1 and "Traceback" not in nothing.stderr
    # A failed job may log what it did first; its last stderr line says why it failed.
    assert push.returncode == 1 and "Traceback" not in push.stderr, push.stderr
    last = push.stderr.strip().splitlines()[-1]
    assert last.startswith("fnc-reid push: failed: cannot reach the Hub") and "HF_ENDPOINT" in last
