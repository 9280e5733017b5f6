"""The re-ID model card that ``save_pretrained`` / ``push_to_hub`` write as ``README.md``.

Metrics arrive as fractions in [0, 1] (the one unit everywhere in fnc-reid); this is the only
place they become percentages, with one decimal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from ._pretrained import PAPER, check_metrics

__all__ = ["render_card", "model_card"]

# Methods' own papers (FNC's is the package's; BFE and BoT are its peers).
_PAPERS = {
    "fnc": ("Further Non-local and Channel Attention Networks for Vehicle Re-identification", PAPER),
    "bfe": ("Batch DropBlock Network for Person Re-identification and Beyond", "https://arxiv.org/abs/1811.07130"),
    "baseline": (
        "Bag of Tricks and A Strong Baseline for Deep Person Re-identification",
        "https://arxiv.org/abs/1903.07071",
    ),
}
_HUB_DATASET_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")
_RERANK = "k-reciprocal (k1=75, k2=10, lambda=0.1)"


_TABLE_KEYS = frozenset(
    {
        "mAP",
        "map",
        "rank1",
        "rank-1",
        "top1",
        "mAP_rerank",
        "map_rerank",
        "rank1_rerank",
        "rank-1_rerank",
        "top1_rerank",
    }
)


def _percent(metrics: Mapping[str, float], *names: str) -> str:
    for name in names:
        if name in metrics:
            return f"{100 * metrics[name]:.1f}"
    return "not evaluated"


def render_card(info: Mapping[str, Any]) -> str:
    """The model card's markdown body (no Jinja, so no extra dependency).

    Args:
        info: ``architecture``, ``model_args``, ``num_classes``, ``embed_dim``, ``input_size``,
            ``mean``, ``std``, ``interpolation`` and optionally ``dataset``, ``license``,
            ``source``, ``repo_id`` and ``metrics`` (fractions in [0, 1]).

    Raises:
        ValueError: a metric outside [0, 1].

    Example:
        >>> body = render_card(dict(architecture="fnc_resnet50", model_args={}, num_classes=0,
        ...     embed_dim=1536, input_size=(3, 288, 384), mean=(0.5,) * 3, std=(0.5,) * 3,
        ...     interpolation="bilinear", metrics={"mAP": 0.812}))
        >>> "| without | 81.2 | not evaluated |" in body
        True
    """
    arch, method = info["architecture"], info["architecture"].split("_")[0]
    title, url = _PAPERS.get(method, _PAPERS["fnc"])
    metrics = check_metrics(info.get("metrics"))
    c, h, w = info["input_size"]
    repo = info.get("repo_id") or "<org>/<repo>"
    classes = info["num_classes"]
    args = ", ".join(f"{k}={v!r}" for k, v in info["model_args"].items())
    lines = [
        f"# {arch}",
        "",
        "A vehicle re-identification model from [fnc-reid](https://pypi.org/project/fnc-reid/): "
        "it maps a vehicle crop to an embedding; rank a gallery by the Euclidean (or cosine) "
        "distance between embeddings.",
        "",
        "| | |",
        "|---|---|",
        f"| Architecture | `{arch}` ({args}) |",
        f"| Paper | [{title}]({url}) |",
        f"| Training data | {info.get('dataset') or 'not stated'} |",
        f"| Input size | {h} x {w} (H x W), {c} channels RGB in [0, 1], normalised with mean "
        f"{tuple(info['mean'])}, std {tuple(info['std'])}; {info['interpolation']} resize |",
        f"| Embedding | {info['embed_dim']}-d |",
        f"| Classifier | {f'{classes} identities' if classes else 'none (feature extractor)'} |",
        f"| License | {info.get('license') or 'not stated'} |",
    ]
    if info.get("source"):
        lines.append(f"| Initialised from | {info['source']} |")
    lines += [
        "",
        "## Results",
        "",
        f"Dataset: {info.get('dataset') or 'not stated'}. Metrics are percentages.",
        "",
        "| Re-ranking | mAP | rank-1 |",
        "|---|---|---|",
        f"| without | {_percent(metrics, 'mAP', 'map')} | {_percent(metrics, 'rank1', 'rank-1', 'top1')} |",
        f"| with {_RERANK} | {_percent(metrics, 'mAP_rerank', 'map_rerank')} | "
        f"{_percent(metrics, 'rank1_rerank', 'rank-1_rerank', 'top1_rerank')} |",
    ]
    # Benchmarks with several test sets (VehicleID, VERI-Wild) report e.g. rank1_small, mAP_large.
    others = [k for k in metrics if k not in _TABLE_KEYS]
    if others:
        lines += ["", "| other metric | % |", "|---|---|"] + [f"| {k} | {100 * metrics[k]:.1f} |" for k in others]
    lines += [
        "",
        "## Usage",
        "",
        "```python",
        "# pip install fnc-reid",
        "import fnc, torch",
        "",
        f'model = fnc.create_model("hf-hub:{repo}").eval()',
        f"images = torch.rand(2, {c}, {h}, {w})  # RGB in [0, 1]",
        "mean = torch.tensor(model.pretrained_cfg.mean).view(1, 3, 1, 1)",
        "std = torch.tensor(model.pretrained_cfg.std).view(1, 3, 1, 1)",
        "with torch.no_grad():",
        f"    embeddings = model((images - mean) / std)  # (2, {info['embed_dim']})",
        "```",
        "",
    ]
    return "\n".join(lines)


def model_card(info: Mapping[str, Any], card_data: ModelCardData) -> ModelCard:
    """The whole card: ``card_data`` (the mixin's library name, tags, pipeline) completed with the
    license, the paper's arXiv tag and a Hub dataset id, then :func:`render_card`'s body.

    Example:
        >>> from huggingface_hub import ModelCardData
        >>> info = dict(architecture="bfe_resnet50", model_args={}, num_classes=0, embed_dim=1536,
        ...     input_size=(3, 288, 384), mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bilinear")
        >>> "arxiv:2004.12270" in str(model_card(info, ModelCardData()))
        True
    """
    data = ModelCardData(**card_data.to_dict())
    data.license = info.get("license") or None
    data.tags = sorted(set(data.tags or []) | {f"arxiv:{PAPER.rsplit('/', 1)[1]}"})
    if info.get("dataset") and _HUB_DATASET_ID.match(str(info["dataset"])):
        data.datasets = [info["dataset"]]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{render_card(info)}")
