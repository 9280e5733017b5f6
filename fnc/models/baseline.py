"""The BoT strong baseline: backbone -> GAP -> BNNeck, 2048-d.

Luo, Gu, Liao, Lai, Jiang, "Bag of Tricks and A Strong Baseline for Deep Person
Re-identification", CVPR Workshops 2019, https://arxiv.org/abs/1903.07071 (FNC paper
ref. [10]; the "Baseline" rows of its Tables 2-5).
"""

from __future__ import annotations

import torch

from ._base import ReIDModel
from ._builder import build_model_with_cfg
from ._registry import register_model
from .backbones import create_backbone, in1k_cfg
from .heads import BNNeck, BranchOutput

__all__ = ["Baseline"]


class Baseline(ReIDModel):
    """BoT baseline. The backbone sits under ``backbone.`` with timm's key names.

    Args:
        backbone: ``"resnet50"``, ``"resnet101"`` or ``"se_resnext101"``.
        num_classes: training identities; 0 = no classifier.
        last_stride: layer4 stride (1, BoT's setting).

    Shape:
        train: (B, 3, H, W) -> (BranchOutput,); eval: (B, 3, H, W) -> (B, 2048)

    Example:
        >>> Baseline("resnet50").eval()(torch.randn(2, 3, 64, 64)).shape
        torch.Size([2, 2048])
    """

    def __init__(self, backbone: str = "resnet50", num_classes: int = 0, last_stride: int = 1) -> None:
        super().__init__()
        self.backbone = create_backbone(backbone, last_stride)
        self.stride = self.backbone.stride
        self.embed_dim = self.backbone.num_features
        self.bnneck = BNNeck(self.embed_dim, num_classes)

    def forward_train(self, x: torch.Tensor) -> tuple[BranchOutput]:
        return (self.bnneck(self.backbone(x).mean((2, 3))),)

    def forward_embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.bnneck(self.backbone(x).mean((2, 3)))


def _create_baseline(variant: str, pretrained: bool = False, **kwargs) -> Baseline:
    return build_model_with_cfg(Baseline, variant, pretrained, **kwargs)


default_cfgs = {f"baseline_{name}.in1k": in1k_cfg(name) for name in ("resnet50", "resnet101", "se_resnext101")}


@register_model
def baseline_resnet50(pretrained: bool = False, **kwargs) -> Baseline:
    """BoT baseline on ResNet-50."""
    model_args = dict(backbone="resnet50")
    return _create_baseline("baseline_resnet50", pretrained, **dict(model_args, **kwargs))


@register_model
def baseline_resnet101(pretrained: bool = False, **kwargs) -> Baseline:
    """BoT baseline on ResNet-101."""
    model_args = dict(backbone="resnet101")
    return _create_baseline("baseline_resnet101", pretrained, **dict(model_args, **kwargs))


@register_model
def baseline_se_resnext101(pretrained: bool = False, **kwargs) -> Baseline:
    """BoT baseline on SE-ResNeXt-101 32x4d."""
    model_args = dict(backbone="se_resnext101")
    return _create_baseline("baseline_se_resnext101", pretrained, **dict(model_args, **kwargs))
