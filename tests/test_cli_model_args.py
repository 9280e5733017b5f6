"""``--model-arg KEY=VALUE`` on train / eval / extract / info.

What each command builds from the arguments goes through the ``fnc-reid`` console script; the checks
of a bad key or value (one stderr line, exit 2) run ``fnc.cli.main`` in-process, the same code
without a Python start-up per case.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from PIL import Image

from fnc.cli._common import UsageError
from fnc.cli._model_args import convert_value, parse_model_args
from fnc.models import model_arguments

sys.path.insert(0, str(Path(__file__).parent))
from _cli import cli, cli_many, in_process  # noqa: E402
from _train_helpers import TINY_TRAIN, write_veri  # noqa: E402

TINY = [*TINY_TRAIN, "--epochs", "1", "--num-workers", "0", "--eval-every", "0", "--no-progress"]


def one_error_line(proc: subprocess.CompletedProcess, command: str) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"fnc-reid {command}: error: --model-arg "), proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("text", "annotation", "expected"),
    [
        ("true", bool, True),
        ("Yes", bool, True),
        ("1", bool, True),
        ("false", bool, False),
        ("no", bool, False),
        ("0", bool, False),
        ("3", int, 3),
        ("0.25", float, 0.25),
        ("add", str, "add"),
        ("none", str | None, None),
        ("None", str | None, None),
        ("sab", str | None, "sab"),
        ("0,2,3,0", Sequence[int], (0, 2, 3, 0)),
        ("1, 2", list[int], [1, 2]),
        ("288,384", tuple[int, int], (288, 384)),
        ("b", Literal["a", "b"], "b"),
    ],
)
def test_values_are_typed_from_the_annotation(text, annotation, expected):
    value = convert_value(text, annotation)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("text", "annotation"),
    [
        ("maybe", bool),
        ("1.5", int),
        ("x", float),
        ("0,two", Sequence[int]),
        ("1,2,3", tuple[int, int]),
        ("c", Literal["a", "b"]),
    ],
)
def test_values_of_another_type_are_refused(text, annotation):
    with pytest.raises(ValueError):
        convert_value(text, annotation)


def test_an_unannotated_parameter_takes_its_default_s_type():
    assert convert_value("4", inspect.Parameter.empty, 2) == 4
    assert convert_value("x", inspect.Parameter.empty) == "x"


def test_model_arguments_are_the_constructor_s_and_check_create_model():
    params = model_arguments("fnc_resnet50.in1k")
    assert {"separate", "fuse", "sab_reduction", "last_stride"} <= set(params) and "self" not in params
    assert params["separate"].annotation is bool and params["fuse"].default == "multiply"
    assert set(model_arguments("baseline_resnet50")) >= {"attention", "non_local", "pooling"}
    assert parse_model_args(["separate=0", "fuse=add", "sab-reduction=4"], "fnc_resnet50") == {
        "separate": False,
        "fuse": "add",
        "sab_reduction": 4,
    }
    with pytest.raises(UsageError, match="expected KEY=VALUE"):
        parse_model_args(["separate"], "fnc_resnet50")
    with pytest.raises(ValueError, match="Unknown model"):
        model_arguments("fnc_resnet5O")


def test_info_builds_with_the_model_args():
    plain, shared = cli_many(
        ("info", "fnc_resnet50", "--json"),
        ("info", "fnc_resnet50", "--json", "--model-arg", "separate=false", "--model-arg", "spatial_dim=64"),
    )
    assert plain.returncode == 0 and shared.returncode == 0, shared.stderr
    a, b = json.loads(plain.stdout), json.loads(shared.stdout)
    assert b["model_args"] == {"separate": False, "spatial_dim": 64} and a["model_args"] == {}
    assert b["embed_dim"] == 64 + 512 and a["embed_dim"] == 1536
    # One shared layer3[1:] + layer4 instead of two copies.
    assert b["params"] < a["params"] - 10_000_000
    assert a["arguments"]["separate"] == "bool"


@pytest.mark.parametrize("command", ["info", "extract", "eval", "train"])
def test_an_unknown_key_is_one_line_with_close_matches(command, tmp_path, capsys):
    args = {
        "info": ["info", "fnc_resnet50"],
        "extract": ["extract", "fnc_resnet50", str(tmp_path), "-o", str(tmp_path / "f.npy"), "--no-pretrained"],
        "eval": ["eval", "--model", "fnc_resnet50", "--no-pretrained", "--data", f"veri:{tmp_path}"],
        "train": ["train", "--model", "fnc_resnet50", "--data", f"veri:{tmp_path}", "--output", str(tmp_path / "run")],
    }[command]
    if command in ("eval", "train"):
        write_veri(tmp_path, n_train=1, n_test=2)
    else:
        Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
    line = one_error_line(in_process(capsys, *args, "--model-arg", "seperate=false"), command)
    assert "fnc_resnet50 has no argument 'seperate'" in line and "did you mean separate" in line


def test_an_unparsable_value_names_key_value_and_type(capsys):
    line = one_error_line(in_process(capsys, "info", "baseline_resnet50", "--model-arg", "non_local=0,2,x,0"), "info")
    assert "non_local=0,2,x,0" in line and "expected comma-separated int values" in line
    line = one_error_line(in_process(capsys, "info", "fnc_resnet50", "--model-arg", "separate=maybe"), "info")
    assert "separate=maybe" in line and "expected bool" in line


def test_extract_with_model_args(tmp_path):
    for i in range(3):
        Image.fromarray(np.full((20, 24, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    out = tmp_path / "f.npy"
    proc = cli(
        "extract",
        "fnc_resnet50",
        str(tmp_path),
        "-o",
        out,
        "--no-pretrained",
        "--quiet",
        "--input-size",
        "32",
        "32",
        "--model-arg",
        "spatial_dim=16",
        "--model-arg",
        "channel_dim=8",
        "--model-arg",
        "fuse=add",
    )
    assert proc.returncode == 0, proc.stderr
    assert np.load(out).shape == (3, 24)


ABLATIONS = [
    # (model, --model-arg values, what the checkpoint's config.json must record)
    ("fnc_resnet50", ["separate=false", "fuse=add"], {"separate": False, "fuse": "add"}),
    ("baseline_resnet50", ["attention=sab"], {"attention": "sab"}),
]


def test_ablations_train_from_the_command_line_and_evaluate(tmp_path, capsys):
    data = write_veri(tmp_path / "veri", n_train=1, n_test=2)
    # Both trainings at once, through the script (one start-up each, side by side).
    runs = cli_many(
        *(
            ("train", "--model", model, "--data", data, "--output", tmp_path / model, *TINY)
            + tuple(a for kv in model_args for a in ("--model-arg", kv))
            for model, model_args, _ in ABLATIONS
        )
    )
    for (model, _, recorded), proc in zip(ABLATIONS, runs):
        assert proc.returncode == 0, proc.stderr
        config = json.loads((tmp_path / model / "best" / "config.json").read_text())
        assert {k: config[k] for k in recorded} == recorded, model
        # The checkpoint's config rebuilds the variant; eval needs no --model-arg.
        proc = in_process(
            capsys, "eval", "--checkpoint", tmp_path / model / "best", "--data", data, "--json", "--device", "cpu"
        )
        assert proc.returncode == 0, proc.stderr
        assert 0.0 <= json.loads(proc.stdout.strip().splitlines()[-1])["mAP"] <= 1.0
