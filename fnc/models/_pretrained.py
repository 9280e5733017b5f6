"""Pretrained configuration and the published-checkpoint format: what every weight source becomes.

:class:`PretrainedCfg` says what one set of weights is and where it lives (``file``,
``hf_hub_id`` or ``url``); the builder loads from whichever is set. This module also owns
the published format that ``save_pretrained`` writes and every reader reads back: the file names
(:data:`CONFIG_NAME`, :data:`WEIGHTS_NAME`) and which cfg fields travel in ``config.json``.
It imports nothing from ``fnc.models``: it is the bottom of the package's import graph.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..data.constants import DEFAULT_INPUT_SIZE, IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "PretrainedCfg",
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "PUBLISHED_FIELDS",
    "PAPER",
    "check_metrics",
    "cfg_from_config",
]

PAPER = "https://arxiv.org/abs/2004.12270"
#: The two files of a published checkpoint (a ``save_pretrained`` folder or a Hub repo).
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
#: Fields of :class:`PretrainedCfg` that describe published weights and travel in ``config.json``
#: under ``pretrained_cfg`` (where the weights live is not among them: the reader knows that).
PUBLISHED_FIELDS = (
    "tag",
    "dataset",
    "metrics",
    "license",
    "source",
    "paper",
    "input_size",
    "mean",
    "std",
    "interpolation",
)


@dataclass(frozen=True)
class PretrainedCfg:
    """What one set of weights is: where it lives and how to feed the model it fills.

    Every weight source (a registered ``<architecture>.<tag>``, ``hf-hub:org/repo``, a
    ``save_pretrained`` folder, a ``.safetensors`` or ``.pth`` file, a release URL) becomes one of
    these; the builder loads from ``file`` if set, else from ``hf_hub_id``, else from ``url``.

    Attributes:
        architecture: registered model name, e.g. ``"fnc_se_resnext101"``.
        tag: weights tag, e.g. ``"in1k"``; ``""`` for an untagged (random-init) config.
        hf_hub_id: Hugging Face Hub repo holding the weights, or None.
        hf_hub_filename: file in that repo (safetensors only).
        file: a local ``.safetensors`` file holding the weights, or None (wins over the Hub).
        url: an HTTP(S) address of a release ``.pth`` published outside the Hub (fast-reid's,
            IBN-Net's), or None. It is downloaded once into the cache, read with
            ``torch.load(weights_only=True)``, mapped onto fnc-reid's keys and converted to
            safetensors beside it; later loads read only the safetensors file.
        weights_format: ``"timm_backbone"`` for an ImageNet backbone checkpoint with timm's keys
            (the loader fills every copy of each backbone tensor), ``"fnc"`` for a full model.
        input_size: (C, H, W) the weights were trained at.
        mean, std: per-channel normalisation of RGB input in [0, 1].
        interpolation: resize interpolation.
        num_classes: classifier size of the checkpoint (0 = none).
        classifier: prefixes of checkpoint tensors that are a classifier this model never uses
            (timm's ImageNet ``fc``), dropped on load. A re-ID model's own identity classifiers
            are the keys it declares with ``classifier_keys()``; they are dropped only when their
            size differs from the model's ``num_classes``.
        dataset: training data of the weights.
        metrics: reported results as fractions in [0, 1] (0.812, not 81.2): ``mAP``, ``rank1``
            and, with re-ranking, ``mAP_rerank``, ``rank1_rerank``. The model card shows them as
            percentages, and "not evaluated" for a missing one.
        license: license of the weights.
        source: where the weights come from.
        paper: the method's paper.
        model_args: architecture arguments the weights need (e.g. ``{"stem_pool": "ceil",
            "pooling": "gem"}`` for fast-reid's BoT on VERI-Wild); ``create_model`` applies them
            unless the caller passes the same argument.

    Example:
        >>> PretrainedCfg(architecture="fnc_resnet50", tag="in1k").name
        'fnc_resnet50.in1k'
    """

    architecture: str = ""
    tag: str = ""
    hf_hub_id: str | None = None
    hf_hub_filename: str = WEIGHTS_NAME
    file: str | None = None
    url: str | None = None
    weights_format: str = "fnc"
    input_size: tuple[int, int, int] = DEFAULT_INPUT_SIZE
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    num_classes: int = 0
    classifier: tuple[str, ...] = ()
    dataset: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    license: str = ""
    source: str = ""
    paper: str = PAPER
    model_args: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """``architecture.tag`` (or the bare architecture when untagged)."""
        return f"{self.architecture}.{self.tag}" if self.tag else self.architecture

    @property
    def has_weights(self) -> bool:
        """True if the cfg names a place the builder loads weights from (``file``, ``hf_hub_id``, ``url``)."""
        return self.file is not None or self.hf_hub_id is not None or self.url is not None

    def to_dict(self) -> dict[str, Any]:
        """All fields as a plain dict."""
        return asdict(self)


def check_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    """``metrics`` as a plain dict of floats, each checked to be a fraction in [0, 1].

    Raises:
        ValueError: a value that is not a number in [0, 1], naming the key.

    Example:
        >>> check_metrics({"mAP": 0.812})
        {'mAP': 0.812}
        >>> check_metrics({"mAP": 81.2})
        Traceback (most recent call last):
        ...
        ValueError: metric 'mAP' is 81.2; metrics are fractions in [0, 1] (mAP 0.812 means 81.2%), pass 0.812
    """
    out: dict[str, float] = {}
    for key, value in dict(metrics or {}).items():
        number = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else None
        if number is None or not math.isfinite(number) or not 0 <= number <= 1:
            hint = f", pass {number / 100:g}" if number is not None and 1 < number <= 100 else ""
            raise ValueError(
                f"metric {key!r} is {value!r}; metrics are fractions in [0, 1] (mAP 0.812 means 81.2%){hint}"
            )
        out[str(key)] = float(number)
    return out


def cfg_from_config(config: Mapping[str, Any], architecture: str, **where: Any) -> PretrainedCfg:
    """The :class:`PretrainedCfg` of a published checkpoint, from its ``config.json``.

    Args:
        config: the parsed ``config.json``.
        architecture: the registered architecture it names.
        **where: where the weights live: ``file=`` or ``hf_hub_id=``.

    Example:
        >>> cfg_from_config({"num_classes": 3, "pretrained_cfg": {"dataset": "veri776"}}, "fnc_resnet50").dataset
        'veri776'
    """
    saved = dict(config.get("pretrained_cfg") or {})
    known = {k: saved[k] for k in PUBLISHED_FIELDS if k in saved}
    for key in ("input_size", "mean", "std"):
        if key in known:
            known[key] = tuple(known[key])
    return PretrainedCfg(
        architecture=architecture,
        weights_format="fnc",
        num_classes=int(config.get("num_classes", 0) or 0),
        **known,
        **where,
    )
