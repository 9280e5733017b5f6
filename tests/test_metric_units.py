"""The metric-unit contract end to end: fractions in [0, 1] in every file, percent only on the card.

A tiny training run writes ``OUTPUT/best``; its ``trainer_state.json`` and ``config.json`` hold
the evaluation as fractions; ``fnc-reid push`` uploads it to the local Hub (tests/hub_server.py)
with a card whose mAP / rank-1 cells are those fractions in percent; and both the folder and the
published repo load back with ``pretrained_cfg.metrics`` equal to the same fractions.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

import fnc
from fnc.cli import main
from fnc.data import read_dataset
from fnc.evaluation import evaluate_model

sys.path.insert(0, str(Path(__file__).parent))
from _train_helpers import write_veri  # noqa: E402

TINY = dict(
    batch_size=8,
    num_instances=2,
    input_size=(32, 32),
    num_workers=0,
    progress=False,
    eval_every=0,
    rerank=True,
    rerank_k1=6,
    rerank_k2=2,
)
CARD_KEYS = ("mAP", "rank1", "mAP_rerank", "rank1_rerank")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, str]:
    """The ``best`` folder of a one-epoch run, and the dataset it was evaluated on."""
    root = tmp_path_factory.mktemp("units")
    data = write_veri(root / "veri", n_train=1)
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fnc.fit(fnc.create_model("baseline_resnet50"), data, root / "run", epochs=1, **TINY)
    finally:
        torch.set_num_threads(threads)
    return root / "run" / "best", data


@pytest.fixture(scope="module")
def best(run) -> Path:
    return run[0]


def _recorded(folder: Path) -> dict[str, float]:
    return {
        k: v for k, v in json.loads((folder / "trainer_state.json").read_text())["metrics"].items() if k in CARD_KEYS
    }


def test_checkpoint_files_hold_fractions(run):
    best, data = run
    metrics = _recorded(best)
    assert set(metrics) == set(CARD_KEYS)
    assert all(0.0 <= v <= 1.0 for v in metrics.values()), metrics
    # Fractions, not small percentages: the saved model, scored again, gives the recorded numbers
    # (the evaluator's are fractions by construction: mAP and CMC of fnc.evaluate).
    again = evaluate_model(fnc.create_model(checkpoint_path=best), read_dataset(data), rerank=True, k1=6, k2=2)
    assert {k: again[k] for k in CARD_KEYS} == pytest.approx(metrics, abs=1e-6)
    config = json.loads((best / "config.json").read_text())
    assert {k: config["pretrained_cfg"]["metrics"][k] for k in CARD_KEYS} == metrics
    loaded = fnc.create_model(checkpoint_path=best)
    assert {k: loaded.pretrained_cfg.metrics[k] for k in CARD_KEYS} == metrics


def test_push_renders_percent_and_the_hub_copy_reads_back_fractions(best, hub, capsys):
    from huggingface_hub import HfApi

    metrics = _recorded(best)
    repo = "test-user/metric-units"
    assert main(["push", str(best), repo]) == 0, capsys.readouterr().err
    card = Path(HfApi().hf_hub_download(repo, "README.md")).read_text()
    row = next(line for line in card.splitlines() if line.startswith("| without |"))
    assert row == f"| without | {100 * metrics['mAP']:.1f} | {100 * metrics['rank1']:.1f} |", row
    reranked = next(line for line in card.splitlines() if line.startswith("| with k-reciprocal"))
    assert reranked.endswith(f"| {100 * metrics['mAP_rerank']:.1f} | {100 * metrics['rank1_rerank']:.1f} |"), reranked
    published = fnc.create_model(f"hf-hub:{repo}")
    assert {k: published.pretrained_cfg.metrics[k] for k in CARD_KEYS} == metrics
    # The card names the dataset format, never the local path the run read.
    assert published.pretrained_cfg.dataset == "veri"
