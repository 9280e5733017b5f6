"""VehicleID's averaged gallery draws: ``evaluate_trials`` and ``fnc-reid eval --trials``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fnc.data import read_dataset, vehicleid_trials
from fnc.evaluation import evaluate_model, evaluate_trials
from fnc.models import create_model

sys.path.insert(0, str(Path(__file__).parent))
from _cli import cli, in_process  # noqa: E402
from _train_helpers import TEST_IDS, write_vehicleid, write_veri  # noqa: E402

KEYS = ("mAP", "rank1", "rank5", "rank10", "mINP")
MODEL = ["--model", "baseline_resnet50", "--no-pretrained", "--input-size", "32", "32", "--device", "cpu"]


@pytest.fixture(scope="module")
def vehicleid(tmp_path_factory) -> str:
    return write_vehicleid(tmp_path_factory.mktemp("vid"), n_train=1, n_test=2)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("baseline_resnet50").eval()


def test_trials_are_the_mean_and_std_of_each_draw_embedding_each_image_once(vehicleid, model):
    root = vehicleid.partition(":")[2]
    datasets = vehicleid_trials(root, test_size=800, trials=4)
    embedded = []
    handle = model.register_forward_hook(lambda m, args, out: embedded.append(len(args[0])))
    try:
        result = evaluate_trials(model, datasets, input_size=(32, 32), batch_size=16, rerank=True, k1=6, k2=3)
    finally:
        handle.remove()
    # 6 test identities x 3 cameras x 2 images, each embedded once for all 4 trials.
    assert sum(embedded) == len(TEST_IDS) * 3 * 2
    singles = [evaluate_model(model, d, input_size=(32, 32), rerank=True, k1=6, k2=3) for d in datasets]
    assert result["trials"] == 4
    for key in (*KEYS, *(k + "_rerank" for k in KEYS)):
        values = np.array([s[key] for s in singles])
        assert result[key] == pytest.approx(values.mean(), abs=1e-9)
        assert result[key + "_std"] == pytest.approx(values.std(ddof=1), abs=1e-9)
        assert 0.0 <= result[key] <= 1.0
    # The draws differ, so the metrics spread.
    assert result["mAP_std"] > 0


def test_one_trial_is_evaluate_model_with_zero_std(vehicleid, model):
    data = read_dataset(vehicleid, test_size=800, seed=0)
    one = evaluate_trials(model, [data], input_size=(32, 32))
    assert {k: one[k] for k in KEYS} == pytest.approx(evaluate_model(model, data, input_size=(32, 32)))
    assert all(one[k + "_std"] == 0.0 for k in KEYS) and one["trials"] == 1
    with pytest.raises(ValueError, match="at least one dataset"):
        evaluate_trials(model, [])


def test_eval_trials_json_through_the_console_script(vehicleid, model):
    proc = cli("eval", *MODEL, "--data", vehicleid, "--test-size", "800", "--trials", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(out) == {*KEYS, *(k + "_std" for k in KEYS), "trials", "rerank"}
    assert out["trials"] == 3 and out["rerank"] is False
    assert all(0.0 <= out[k] <= 1.0 for k in KEYS) and all(out[k + "_std"] >= 0.0 for k in KEYS)
    # The same seeded random model in this process gives the same numbers.
    expected = evaluate_trials(model, vehicleid_trials(vehicleid.partition(":")[2], 800, 3), input_size=(32, 32))
    assert {k: out[k] for k in out if k != "rerank"} == pytest.approx(expected, abs=1e-5)
    assert "std" in proc.stdout


def test_eval_trials_with_rerank_keeps_the_plain_numbers(vehicleid, capsys):
    # In-process: the console script's --trials run is the test above.
    proc = in_process(
        capsys,
        "eval",
        *MODEL,
        "--data",
        vehicleid,
        "--trials",
        "2",
        "--rerank",
        "--rerank-k1",
        "6",
        "--rerank-k2",
        "3",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["rerank"] is True and out["trials"] == 2
    assert set(out["plain"]) == {*KEYS, *(k + "_std" for k in KEYS)}


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--test-size", "800"], ["--test-size applies to vehicleid, veriwild data, not 'veri'"]),
        (["--trials", "10"], ["--trials applies to vehicleid data", "not 'veri'"]),
    ],
)
def test_options_of_other_formats_are_usage_errors(tmp_path, capsys, extra, fragments):
    data = write_veri(tmp_path, n_train=1, n_test=2)
    proc = in_process(capsys, "eval", *MODEL, "--data", data, *extra)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("fnc-reid eval: error: ")
    for fragment in fragments:
        assert fragment in line


def test_absent_test_size_names_those_that_exist(vehicleid, capsys):
    proc = in_process(capsys, "eval", *MODEL, "--data", vehicleid, "--test-size", "2400", "--trials", "2")
    assert proc.returncode == 2, proc.stderr
    assert "test_list_2400.txt" in proc.stderr and "test_size=800" in proc.stderr
    proc = in_process(capsys, "eval", *MODEL, "--data", vehicleid, "--trials", "0")
    assert proc.returncode == 2 and "--trials must be >= 1" in proc.stderr
