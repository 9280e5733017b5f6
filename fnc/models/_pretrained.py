"""Pretrained configuration: the metadata the loader and preprocessing actually use."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..data.constants import DEFAULT_INPUT_SIZE, IMAGENET_MEAN, IMAGENET_STD

__all__ = ["PretrainedCfg", "IMAGENET_MEAN", "IMAGENET_STD", "DEFAULT_INPUT_SIZE"]
PAPER = "https://arxiv.org/abs/2004.12270"


@dataclass(frozen=True)
class PretrainedCfg:
    """What one ``<architecture>.<tag>`` is: where its weights live and how to feed it.

    Attributes:
        architecture: registered model name, e.g. ``"fnc_se_resnext101"``.
        tag: weights tag, e.g. ``"in1k"``; ``""`` for an untagged (random-init) config.
        hf_hub_id: Hugging Face Hub repo holding the weights, or None.
        hf_hub_filename: file in that repo (safetensors only).
        weights_format: ``"timm_backbone"`` for an ImageNet backbone checkpoint with timm's keys
            (the loader fills every copy of each backbone tensor), ``"fnc"`` for a full model.
        input_size: (C, H, W) the weights were trained at.
        mean, std: per-channel normalisation of RGB input in [0, 1].
        interpolation: resize interpolation.
        num_classes: classifier size of the checkpoint (0 = none).
        classifier: prefixes of checkpoint tensors that are a classifier this model never uses
            (timm's ImageNet ``fc``), dropped on load. A re-ID checkpoint's own BNNeck
            classifiers are found by the loader and dropped only when their size differs from
            the model's ``num_classes``.
        dataset: training data of the weights.
        metrics: reported results in percent: ``mAP``, ``rank1`` and, with re-ranking,
            ``mAP_rerank``, ``rank1_rerank`` (the model card shows "not evaluated" for a missing one).
        license: license of the weights.
        source: where the weights come from.
        paper: the method's paper.
    """

    architecture: str = ""
    tag: str = ""
    hf_hub_id: str | None = None
    hf_hub_filename: str = "model.safetensors"
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

    @property
    def name(self) -> str:
        """``architecture.tag`` (or the bare architecture when untagged)."""
        return f"{self.architecture}.{self.tag}" if self.tag else self.architecture

    @property
    def has_weights(self) -> bool:
        return self.hf_hub_id is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Every model's default tag: its ImageNet-initialised backbone from timm's Hub repos.
_TIMM_IN1K = {
    "resnet50": ("timm/resnet50.tv_in1k", "torchvision ResNet-50 ImageNet-1k weights, timm repackaging"),
    "resnet101": ("timm/resnet101.tv_in1k", "torchvision ResNet-101 ImageNet-1k weights, timm repackaging"),
    "se_resnext101": (
        "timm/seresnext101_32x4d.gluon_in1k",
        "Gluon SE-ResNeXt-101 32x4d ImageNet-1k weights, timm repackaging",
    ),
}


def in1k_cfg(backbone: str) -> PretrainedCfg:
    """The ``.in1k`` config of a model on ``backbone``: timm's ImageNet backbone checkpoint.

    The checkpoint holds only backbone tensors; everything else is initialised as SPEC says.
    """
    hub_id, source = _TIMM_IN1K[backbone]
    return PretrainedCfg(
        hf_hub_id=hub_id,
        weights_format="timm_backbone",
        classifier=("fc",),
        dataset="imagenet-1k (backbone only)",
        license="apache-2.0",
        source=source,
    )
