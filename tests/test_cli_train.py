"""``fnc-reid train`` / ``fnc-reid eval``: learning through the CLI, SIGKILL + ``--resume``, user errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fnc.cli import main

sys.path.insert(0, str(Path(__file__).parent))
from _cli import ENV, script  # noqa: E402
from _train_helpers import TINY_TRAIN, write_csv, write_veri  # noqa: E402

# See test_train.py: settings that learn in a few dozen CPU steps; the defaults stay the paper's.
FAST = [
    "--batch-size",
    "16",
    "--num-instances",
    "4",
    "--input-size",
    "32",
    "32",
    "--lr",
    "1e-2",
    "--warmup-epochs",
    "0",
    "--lookahead-alpha",
    "1.0",
    "--betas",
    "0.9",
    "0.99",
    "--padding",
    "0",
    "--erase-p",
    "0",
    "--num-workers",
    "0",
    "--eval-every",
    "0",
    "--no-progress",
    "--no-pretrained",
]
TINY = [*TINY_TRAIN, "--model", "baseline_resnet50", "--num-workers", "0", "--eval-every", "0", "--no-progress"]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_veri(tmp_path_factory) -> str:
    return write_veri(tmp_path_factory.mktemp("veri"), n_train=1)


def _json_line(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_cli_training_raises_map(tmp_path, capsys):
    # 4 images per camera: 9 steps per epoch, so 4 epochs (and 4 checkpoint writes) make 36 steps.
    spec = write_csv(tmp_path / "data", n_train=4)
    base = ["--data", spec, "--json"]
    assert (
        main(
            [
                "eval",
                "--model",
                "baseline_resnet50",
                "--no-pretrained",
                "--seed",
                "1",
                "--input-size",
                "32",
                "32",
                *base,
            ]
        )
        == 0
    )
    before = _json_line(capsys.readouterr().out)
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--model",
                "baseline_resnet50",
                "--data",
                spec,
                "--output",
                str(out),
                "--epochs",
                "4",
                "--seed",
                "1",
                *FAST,
            ]
        )
        == 0
    )
    capsys.readouterr()
    # The checkpoint records its 32 x 32 training size, so no --input-size is needed here.
    assert main(["eval", "--checkpoint", str(out / "best"), "--rerank", *base]) == 0
    after = _json_line(capsys.readouterr().out)
    print(f"CLI: mAP {before['mAP']:.3f} -> {after['plain']['mAP']:.3f} (re-ranked {after['mAP']:.3f})")
    assert set(before) == {"mAP", "rank1", "rank5", "rank10", "mINP", "rerank"}
    assert all(0.0 <= before[k] <= 1.0 for k in ("mAP", "rank1", "rank5", "rank10", "mINP"))
    assert after["rerank"] is True and set(after["plain"]) == {"mAP", "rank1", "rank5", "rank10", "mINP"}
    # Measured: an untrained network scores 0.16-0.22 (seeds 1-8); these 36 steps reach 0.37-0.65
    # (seeds 1-4) on an AVX2 CPU, where seed 1 gives 0.37; it gave 0.6 on the machine this test
    # was first written on: float32 kernels differ between CPUs, and so does so short a run.
    assert after["plain"]["mAP"] > before["mAP"] + 0.1, (before, after)
    assert (out / "last" / "training_state.safetensors").is_file()


def _epoch_of(last: Path) -> int | None:
    try:
        return json.loads((last / "trainer_state.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError):
        return None


def test_sigkill_then_resume_ends_on_the_same_weights(tmp_path):
    spec = write_csv(tmp_path / "data", n_train=1)  # 3 steps per epoch
    train = ["train", "--data", spec, "--epochs", "2", *TINY]
    # The uninterrupted run and the one to kill run side by side, to overlap their start-up.
    straight = subprocess.Popen(
        script(*train, "--output", str(tmp_path / "a")),
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc = subprocess.Popen(
        script(*train, "--output", str(tmp_path / "b")),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = tmp_path / "b" / "last"
    deadline = time.monotonic() + 240
    while _epoch_of(last) is None and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    killed_at = _epoch_of(last)
    assert killed_at == 1

    straight_out, straight_err = straight.communicate(timeout=300)
    assert straight.returncode == 0, straight_err

    resumed = subprocess.run(
        script(*train, "--output", str(tmp_path / "b"), "--resume"), env=ENV, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {last} at epoch 1/2" in resumed.stderr
    a = load_file(str(tmp_path / "a" / "last" / "model.safetensors"))
    b = load_file(str(last / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert _json_line(straight_out) == _json_line(resumed.stdout)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["train", "--model", "no_such_model", "--output", "{tmp}/o", "--data", "{veri}"], "Unknown model"),
        (
            ["train", "--model", "baseline_resnet50", "--output", "{tmp}/o", "--data", "veri:{tmp}/missing"],
            "does not exist",
        ),
        (
            ["train", "--model", "baseline_resnet50", "--output", "{tmp}/o", "--data", "{veri}", "--holdout-ids", "2"],
            "--holdout-ids",
        ),
        (["eval", "--model", "baseline_resnet50", "--no-pretrained", "--data", "pascal:{tmp}"], "FORMAT:PATH"),
        (["eval", "--checkpoint", "{tmp}/nothing", "--data", "{veri}"], "does not exist"),
    ],
)
def test_user_mistakes_are_one_line_exit_2(tmp_path, tiny_veri, capsys, argv, needle):
    argv = [a.format(tmp=tmp_path, veri=tiny_veri) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"fnc-reid {argv[0]}: error:") and needle in err[0], err
    assert "Traceback" not in err[0]


def test_existing_output_needs_resume(tmp_path, tiny_veri, capsys):
    (tmp_path / "o" / "last").mkdir(parents=True)
    assert main(["train", "--model", "baseline_resnet50", "--output", str(tmp_path / "o"), "--data", tiny_veri]) == 2
    assert "--resume" in capsys.readouterr().err


@pytest.mark.parametrize("command, flag", [("train", "--resume"), ("eval", "--rerank")])
def test_help(capsys, command, flag):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert flag in capsys.readouterr().out


def test_a_failure_inside_the_job_is_exit_1_with_its_traceback(capsys):
    # A ValueError while the job runs is fnc-reid failing, not a mistake on the command line.
    from fnc.cli._common import job, reported

    @reported("train")
    def run(args):
        with job():
            raise ValueError("loss is nan at step 3")

    assert run(None) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1] == "fnc-reid train: failed: loss is nan at step 3"

    @reported("train")
    def mistake(args):
        raise ValueError("--batch-size must be >= 1")

    assert mistake(None) == 2
    assert capsys.readouterr().err == "fnc-reid train: error: --batch-size must be >= 1\n"
