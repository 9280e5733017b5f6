"""BFE: Batch Feature Erasing (Batch DropBlock Network) for re-ID, FNC's ensemble partner.

Dai, Chen, Gu, Zhu, Tan, "Batch DropBlock Network for Person Re-identification and Beyond",
ICCV 2019, https://arxiv.org/abs/1811.07130 (FNC paper ref. [3]; Table 4 fuses FNC with it).

Layout (Dai et al.'s, widths as docs/design.md): backbone with last stride 1; a global branch (GAP -> Reduction 2048 -> 512 ->
BNNeck) and an erasing branch (one extra bottleneck -> batch drop, 0.3 of the height and the
full width, the same rectangle for the whole batch, training only -> global max pool ->
Reduction 2048 -> 1024 -> BNNeck). The inference signature is [global, erasing], 1536-d.
"""

from __future__ import annotations

import torch
from torch import nn

from ._base import ReIDModel
from ._builder import build_model_with_cfg
from ._registry import register_model
from .backbones import create_backbone, create_bottleneck, in1k_cfg, run_blocks
from .heads import BatchDrop, BNNeck, BranchOutput, Reduction

__all__ = ["BFE"]


class BFE(ReIDModel):
    """The BFE two-branch network.

    Args:
        backbone: ``"se_resnext101"`` or ``"resnet50"`` (any registered backbone works).
        num_classes: training identities; 0 = no classifier.
        last_stride: layer4 stride (1, BFE's setting).
        global_dim: reduced dimension of the global branch (512).
        erase_dim: reduced dimension of the erasing branch (1024).
        drop_h_ratio: height fraction of the dropped rectangle (0.3).
        drop_w_ratio: width fraction of the dropped rectangle (1.0: full width).

    Shape:
        train: (B, 3, H, W) -> (BranchOutput global, BranchOutput erasing);
        eval: (B, 3, H, W) -> (B, global_dim + erase_dim)

    Example:
        >>> model = BFE("resnet50").eval()
        >>> model(torch.randn(2, 3, 64, 64)).shape
        torch.Size([2, 1536])
    """

    def __init__(
        self,
        backbone: str = "se_resnext101",
        num_classes: int = 0,
        last_stride: int = 1,
        global_dim: int = 512,
        erase_dim: int = 1024,
        drop_h_ratio: float = 0.3,
        drop_w_ratio: float = 1.0,
    ) -> None:
        super().__init__()
        self.grad_checkpointing = False
        self.backbone = create_backbone(backbone, last_stride)
        self.stride = self.backbone.stride
        self.embed_dim = global_dim + erase_dim
        channels = self.backbone.num_features
        self.global_reduction = Reduction(channels, global_dim)
        self.global_bnneck = BNNeck(global_dim, num_classes)
        # One extra bottleneck of the backbone's own family (SE-ResNeXt for se_resnext101),
        # as BFE adds a ResNet bottleneck to its ResNet-50; freshly initialised.
        self.erase_block = nn.Sequential(create_bottleneck(backbone, channels, channels // 4))
        self.batch_drop = BatchDrop(drop_h_ratio, drop_w_ratio)
        self.erase_reduction = Reduction(channels, erase_dim)
        self.erase_bnneck = BNNeck(erase_dim, num_classes)

    def _branches(self, x: torch.Tensor) -> tuple:
        x = self.backbone(x)
        g = self.global_bnneck(self.global_reduction(x.mean((2, 3))))
        e = self.batch_drop(run_blocks(self.erase_block, x, self.grad_checkpointing))
        e = self.erase_bnneck(self.erase_reduction(e.amax((2, 3))))
        return g, e

    def forward_train(self, x: torch.Tensor) -> tuple[BranchOutput, BranchOutput]:
        return self._branches(x)

    def forward_embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(self._branches(x), dim=1)


def _create_bfe(variant: str, pretrained: bool = False, **kwargs) -> BFE:
    return build_model_with_cfg(BFE, variant, pretrained, **kwargs)


default_cfgs = {f"bfe_{name}.in1k": in1k_cfg(name) for name in ("se_resnext101", "resnet50")}


@register_model
def bfe_se_resnext101(pretrained: bool = False, **kwargs) -> BFE:
    """BFE on SE-ResNeXt-101 32x4d, as fused with FNC in the paper's Table 4."""
    model_args = dict(backbone="se_resnext101")
    return _create_bfe("bfe_se_resnext101", pretrained, **dict(model_args, **kwargs))


@register_model
def bfe_resnet50(pretrained: bool = False, **kwargs) -> BFE:
    """BFE on ResNet-50, the original BFE setting."""
    model_args = dict(backbone="resnet50")
    return _create_bfe("bfe_resnet50", pretrained, **dict(model_args, **kwargs))
