"""The product subcommands through the installed ``fnc-reid`` console script.

list, info, extract, rerank, push (against the local Hub of conftest.py) and demo: their
``--help``, outputs, exit codes, and user mistakes reported as one stderr line, no traceback.
Each command's real work runs through the script; the checks of its arguments, help text and exit
codes run ``fnc.cli.main`` in-process (the same code without a Python start-up per case;
tests/test_bad_inputs.py holds the script's exit code of every command).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fnc

sys.path.insert(0, str(Path(__file__).parent))
from _cli import cli, cli_many, in_process  # noqa: E402

COMMANDS = ["list", "info", "extract", "rerank", "push", "convert", "demo"]


def assert_user_error(proc: subprocess.CompletedProcess, command: str, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith(f"fnc-reid {command}: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Two small folders of 3 query and 5 gallery images."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for split, n in (("query", 3), ("gallery", 5)):
        (root / split).mkdir()
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(root / split / f"{i:02d}.png")
    return root


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command, capsys):
    proc = in_process(capsys, command, "--help")
    assert proc.returncode == 0 and proc.stdout.startswith(f"usage: fnc-reid {command}")
    assert "example" in proc.stdout


def test_top_level_help_lists_the_subcommands():
    proc = cli("--help")
    assert proc.returncode == 0
    for command in COMMANDS + ["train", "eval"]:
        assert f"    {command} " in proc.stdout


def test_list_filters_and_exit_codes(capsys):
    proc = cli("list", "fnc", "--pretrained")
    assert proc.returncode == 0
    assert proc.stdout.split() == fnc.list_models("*fnc*", pretrained=True)
    proc = in_process(capsys, "list", "bfe_*")
    assert proc.stdout.split() == ["bfe_resnet50", "bfe_se_resnext101"]
    proc = in_process(capsys, "list", "no_such_model")
    assert proc.returncode == 1 and proc.stdout == "" and "no model matches" in proc.stderr


def test_info_text_json_and_unknown_model(capsys):
    proc = cli("info", "fnc_resnet50")
    assert proc.returncode == 0
    assert "1536-d" in proc.stdout and "3 x 288 x 384" in proc.stdout and "timm/resnet50.tv_in1k" in proc.stdout
    info = json.loads(in_process(capsys, "info", "bfe_resnet50.in1k", "--json").stdout)
    model = fnc.create_model("bfe_resnet50")
    assert info["params"] == sum(p.numel() for p in model.parameters())
    assert info["embed_dim"] == 1536 and info["input_size"] == [3, 288, 384]
    assert info["pretrained_tags"][0]["hf_hub_id"] == "timm/resnet50.tv_in1k" and info["pretrained_tags"][0]["license"]
    assert_user_error(in_process(capsys, "info", "fnc_resnt50"), "info", "fnc_resnet50")
    assert in_process(capsys, "info").returncode == 2  # argparse: MODEL is required


def test_extract_writes_features_and_row_order(images, tmp_path):
    torch.manual_seed(0)
    model = fnc.create_model("baseline_resnet50")
    model.save_pretrained(tmp_path / "ckpt")
    out = tmp_path / "feats" / "q.npy"
    proc = cli(
        "extract",
        "baseline_resnet50",
        images / "query",
        images / "gallery" / "00.png",
        "-o",
        out,
        "--checkpoint",
        tmp_path / "ckpt",
        "--input-size",
        32,
        32,
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    feats = np.load(out)
    rows = out.with_suffix(".txt").read_text().splitlines()
    assert rows == fnc.list_images(images / "query") + [str(images / "gallery" / "00.png")]
    # The checkpoint's weights, so the same numbers as extracting here.
    expected = fnc.extract(model, rows, input_size=(32, 32), progress=False)
    assert feats.shape == (4, 2048) and feats.dtype == np.float32
    np.testing.assert_allclose(feats, expected, rtol=1e-4, atol=1e-4)
    assert str(out) in proc.stdout


def test_extract_user_mistakes(images, tmp_path, capsys):
    base = ["fnc_resnet50", "--no-pretrained", "--input-size", 32, 32]
    assert_user_error(
        in_process(capsys, "extract", *base, tmp_path / "missing", "-o", tmp_path / "f.npy"), "extract", "missing"
    )
    assert_user_error(
        in_process(capsys, "extract", *base, images / "query", "-o", tmp_path / "f.csv"), "extract", ".npy"
    )
    assert_user_error(
        in_process(capsys, "extract", "fnc_resnet5", images / "query", "-o", tmp_path / "f.npy"),
        "extract",
        "fnc_resnet50",
    )
    assert_user_error(
        in_process(
            capsys, "extract", *base, images / "query", "-o", tmp_path / "f.npy", "--checkpoint", tmp_path / "nope"
        ),
        "extract",
        "--checkpoint",
    )
    missing_arg = in_process(capsys, "extract", "fnc_resnet50", images / "query")  # argparse: -o is required
    assert missing_arg.returncode == 2 and "-o/--output" in missing_arg.stderr and "Traceback" not in missing_arg.stderr


def test_rerank_single_and_fused(tmp_path):
    g = torch.Generator().manual_seed(0)
    q1, g1 = torch.randn(4, 16, generator=g).numpy(), torch.randn(12, 16, generator=g).numpy()
    q2, g2 = torch.randn(4, 8, generator=g).numpy(), torch.randn(12, 8, generator=g).numpy()
    for name, arr in dict(q1=q1, g1=g1, q2=q2, g2=g2).items():
        np.save(tmp_path / f"{name}.npy", arr)
    q, g = tmp_path / "q1.npy", tmp_path / "g1.npy"
    # Independent runs, started together (one Python start-up each).
    single, fused, capped = cli_many(
        ("rerank", q, g, "-o", tmp_path / "d.npy", "--k1", 6, "--k2", 3, "--lambda", 0.3),
        ("rerank", q, g, "--fuse", tmp_path / "q2.npy", tmp_path / "g2.npy", "--weights", 1, 0.5)
        + ("-o", tmp_path / "fused.npy", "--k1", 6, "--k2", 3),
        # The paper's k1=75 on 16 images: capped, said on stderr, still exit 0.
        ("rerank", q, g, "-o", tmp_path / "d75.npy"),
    )
    assert single.returncode == 0, single.stderr
    np.testing.assert_allclose(
        np.load(tmp_path / "d.npy"), fnc.rerank(q1, g1, k1=6, k2=3, lambda_value=0.3), rtol=1e-6, atol=1e-7
    )

    assert fused.returncode == 0, fused.stderr
    expected = fnc.rerank([q1, q2], [g1, g2], k1=6, k2=3, lambda_value=0.1, weights=[1, 0.5])
    np.testing.assert_allclose(np.load(tmp_path / "fused.npy"), expected, rtol=1e-6, atol=1e-7)
    assert "2 models fused" in fused.stdout

    assert capped.returncode == 0 and "k1=15" in capped.stderr


def test_rerank_user_mistakes(tmp_path, capsys):
    np.save(tmp_path / "q.npy", np.zeros((3, 8), np.float32))
    np.save(tmp_path / "g.npy", np.zeros((5, 8), np.float32))
    np.save(tmp_path / "g4.npy", np.zeros((5, 4), np.float32))
    np.save(tmp_path / "v.npy", np.zeros(5, np.float32))
    (tmp_path / "t.npy").write_text("not numpy")
    q, g, o = tmp_path / "q.npy", tmp_path / "g.npy", ["-o", tmp_path / "d.npy"]
    assert_user_error(in_process(capsys, "rerank", q, tmp_path / "none.npy", *o), "rerank", "does not exist")
    for args, fragment in [
        ((q, tmp_path / "g4.npy"), "same model"),
        ((q, tmp_path / "v.npy"), "2-D"),
        ((q, tmp_path / "t.npy"), "not a .npy"),
        ((q, g, "--weights", 1, 2), "one weight per model"),
        ((q, g, "--k1", 3, "--k2", 5), "k2"),
        ((q, g, "--fuse", q, tmp_path / "g4.npy"), "same model"),
    ]:
        assert_user_error(in_process(capsys, "rerank", *args, *o), "rerank", fragment)
    assert not (tmp_path / "d.npy").exists()


def test_push_publishes_a_loadable_checkpoint(hub, tmp_path):
    torch.manual_seed(0)
    model = fnc.create_model("baseline_resnet50", num_classes=3).eval()
    model.save_pretrained(tmp_path / "ckpt", dataset="veri776", metrics={"mAP": 0.125})
    proc = cli("push", tmp_path / "ckpt", "test-user/cli-push", "--message", "from the CLI")
    assert proc.returncode == 0, proc.stderr
    assert "hf-hub:test-user/cli-push" in proc.stdout
    loaded = fnc.create_model("hf-hub:test-user/cli-push").eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    assert loaded.pretrained_cfg.dataset == "veri776"


def test_push_user_mistakes(tmp_path, capsys):
    assert_user_error(in_process(capsys, "push", tmp_path / "nothing", "org/name"), "push", "not a checkpoint folder")
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    assert_user_error(in_process(capsys, "push", tmp_path / "ckpt", "a/b/c"), "push", "org/name")


def test_demo_quick_writes_readable_pictures(tmp_path):
    proc = cli("demo", "--quick", "--output", tmp_path / "demo", "--no-progress", "--json")
    assert proc.returncode == 0, proc.stderr
    # --json: the numbers as the last line, fractions in every row.
    numbers = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(numbers) == {"untrained", "trained", "reranked", "seconds"} and numbers["seconds"] > 0
    for key in ("untrained", "trained", "reranked"):
        assert set(numbers[key]) == {"mAP", "rank1", "rank5", "mINP"}
        assert all(0.0 <= v <= 1.0 for v in numbers[key].values())
    for name in ("ranked_list.png", "attention_maps.png"):
        path = tmp_path / "demo" / name
        assert str(path) in proc.stdout
        with Image.open(path) as im:
            assert im.format == "PNG" and im.width > 200
    assert "untrained" in proc.stdout and "mAP" in proc.stdout


def test_demo_user_mistake(tmp_path, capsys):
    assert_user_error(in_process(capsys, "demo", "--epochs", 0, "--output", tmp_path / "x"), "demo", "--epochs")
