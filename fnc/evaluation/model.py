"""Evaluation of a model on a dataset: embed query and gallery, rank, score (optionally re-ranked).

Used by the trainer's evaluation hook and ``fnc-reid eval``; the metric code itself is
:mod:`fnc.evaluation.rank`, which knows nothing of models.

Features are the model's eval embeddings, L2-normalised (BoT's ``FEAT_NORM``), compared by
Euclidean distance; re-ranking is :func:`fnc.rerank.rerank` on the same features.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from fnc.data.records import ReIDDataset
from fnc.evaluation.rank import EvalResult, evaluate
from fnc.inference.extraction import extract
from fnc.rerank.kreciprocal import rerank as rerank_fn

__all__ = ["evaluate_model", "evaluate_trials", "infer_protocol", "metrics_dict"]


def infer_protocol(data: ReIDDataset) -> str:
    """The protocol the dataset's reader set: ``"aic"`` for CityFlow-ReID, ``"veri"`` otherwise.

    >>> from fnc.data.records import make_dataset
    >>> infer_protocol(make_dataset([], [], [], name="cityflow:/data/AIC20", protocol="aic"))
    'aic'
    """
    return data.protocol


def metrics_dict(result: EvalResult, suffix: str = "") -> dict[str, float]:
    """``mAP``, ``rank1/5/10`` and ``mINP`` of an evaluation result, as fractions in [0, 1].

    A gallery shorter than 10 gives rank-k of its last CMC entry for larger k.

    >>> import numpy as np
    >>> r = evaluate(np.array([[0.1, 0.9]]), np.array([1]), np.array([1, 2]), np.array([0]), np.array([1, 1]))
    >>> metrics_dict(r)["rank1"]
    1.0
    """
    cmc = np.asarray(result.cmc, dtype=np.float64).ravel()
    out = {"mAP": float(result.mAP)}
    for k in (1, 5, 10):
        out[f"rank{k}"] = float(cmc[min(k, len(cmc)) - 1])
    out["mINP"] = float(result.mINP)
    return {f"{k}{suffix}": v for k, v in out.items()}


def evaluate_model(
    model: nn.Module,
    data: ReIDDataset,
    *,
    protocol: str = "veri",
    input_size: Sequence[int] | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    rerank: bool = False,
    k1: int = 75,
    k2: int = 10,
    lambda_value: float = 0.1,
) -> dict[str, float]:
    """Score ``model`` on ``data.query`` against ``data.gallery``.

    Args:
        model: a fnc-reid model (its train / eval mode is restored afterwards).
        data: a dataset with non-empty ``query`` and ``gallery``.
        protocol: ``"veri"`` or ``"aic"``, see :func:`fnc.evaluate`.
        input_size: (H, W); default the model's ``pretrained_cfg``.
        batch_size: images per forward pass.
        num_workers: DataLoader workers for decoding.
        device: where to run; default the model's device.
        rerank: also compute k-reciprocal re-ranked metrics (keys with ``_rerank``).
        k1, k2, lambda_value: re-ranking parameters (paper: 75, 10, 0.1).

    Returns:
        Fractions ``mAP``, ``rank1``, ``rank5``, ``rank10``, ``mINP`` (and ``*_rerank``).

    >>> from fnc.data import read_dataset
    >>> evaluate_model(model, read_dataset("veri:/data/VeRi"))  # doctest: +SKIP
    {'mAP': 0.81, 'rank1': 0.96, 'rank5': 0.98, 'rank10': 0.99, 'mINP': 0.44}
    """
    if not data.query or not data.gallery:
        raise ValueError(f"{data.name or 'the dataset'} has no query/gallery split to evaluate on")
    kw = dict(
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
        normalize=True,
        input_size=input_size,
        progress=False,
    )
    q = torch.from_numpy(extract(model, [r.path for r in data.query], **kw))
    g = torch.from_numpy(extract(model, [r.path for r in data.gallery], **kw))
    return _score(q, g, data, protocol, rerank, k1, k2, lambda_value)


def _score(
    q: torch.Tensor,
    g: torch.Tensor,
    data: ReIDDataset,
    protocol: str,
    rerank: bool,
    k1: int,
    k2: int,
    lambda_value: float,
) -> dict[str, float]:
    """Metrics of query features ``q`` against gallery features ``g`` (rows in ``data``'s order)."""
    q_pids = np.array([r.pid for r in data.query])
    g_pids = np.array([r.pid for r in data.gallery])
    q_cams = np.array([r.camid for r in data.query])
    g_cams = np.array([r.camid for r in data.gallery])
    distmat = torch.cdist(q.double(), g.double()).numpy()
    out = metrics_dict(evaluate(distmat, q_pids, g_pids, q_cams, g_cams, protocol=protocol))
    if rerank:
        # k1 above the number of images would only repeat the full neighbourhood.
        n = len(q) + len(g)
        k1_eff = min(k1, n - 1)
        reranked = np.asarray(rerank_fn(q.numpy(), g.numpy(), k1=k1_eff, k2=min(k2, k1_eff), lambda_value=lambda_value))
        out.update(metrics_dict(evaluate(reranked, q_pids, g_pids, q_cams, g_cams, protocol=protocol), "_rerank"))
    return out


def evaluate_trials(
    model: nn.Module,
    datasets: Sequence[ReIDDataset],
    *,
    protocol: str = "veri",
    input_size: Sequence[int] | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    rerank: bool = False,
    k1: int = 75,
    k2: int = 10,
    lambda_value: float = 0.1,
) -> dict[str, float]:
    """Mean and standard deviation of :func:`evaluate_model`'s metrics over several query / gallery draws.

    The VehicleID protocol (:func:`fnc.data.vehicleid_trials`): each dataset is one random gallery
    draw of the same test images. Every distinct image is embedded once, whatever the number of
    trials; each trial then scores its own split of those features.

    Args:
        model: a fnc-reid model (its train / eval mode is restored afterwards).
        datasets: one dataset per trial, each with non-empty ``query`` and ``gallery``.
        protocol, input_size, batch_size, num_workers, device, rerank, k1, k2, lambda_value:
            as in :func:`evaluate_model`.

    Returns:
        Fractions: the mean of each metric under its own key (``mAP``, ``rank1``, ``rank5``,
        ``rank10``, ``mINP``, and ``*_rerank``), its sample standard deviation over the trials
        as ``<key>_std`` (0 for a single trial), and ``trials``, the number of draws.

    Raises:
        ValueError: no datasets, or one without a query / gallery split.

    >>> from fnc.data import vehicleid_trials
    >>> evaluate_trials(model, vehicleid_trials("/data/VehicleID", 800, trials=10))  # doctest: +SKIP
    {'mAP': 0.83, 'rank1': 0.77, ..., 'mAP_std': 0.004, ..., 'trials': 10}
    """
    if not datasets:
        raise ValueError("evaluate_trials needs at least one dataset (one per trial)")
    for i, data in enumerate(datasets):
        if not data.query or not data.gallery:
            raise ValueError(f"trial {i} ({data.name or 'dataset'}) has no query/gallery split to evaluate on")
    paths = list(dict.fromkeys(r.path for data in datasets for r in (*data.query, *data.gallery)))
    kw = dict(
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
        normalize=True,
        input_size=input_size,
        progress=False,
    )
    feats = torch.from_numpy(extract(model, paths, **kw))
    row = {p: i for i, p in enumerate(paths)}
    runs = []
    for data in datasets:
        q = feats[[row[r.path] for r in data.query]]
        g = feats[[row[r.path] for r in data.gallery]]
        runs.append(_score(q, g, data, protocol, rerank, k1, k2, lambda_value))
    out: dict[str, float] = {}
    for key in runs[0]:
        values = np.array([r[key] for r in runs], dtype=np.float64)
        out[key] = float(values.mean())
        out[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    out["trials"] = len(runs)
    return out
