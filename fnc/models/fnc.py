"""FNC: Further Non-local and Channel attention network (two branches, separate res4).

Liu, Xu, Hou, Zhao, Su, "Further Non-local and Channel Attention Networks for Vehicle
Re-identification", CVPR Workshops (AI City Challenge) 2020, https://arxiv.org/abs/2004.12270.

Layout (paper Sec. 3.1, Fig. 1; the split is the text's conv4_1, docs/design.md): a shared trunk (stem, layer1, layer2, layer3[0] = "conv4_1"),
then two branches, each with its own copy of layer3[1:] and layer4: the spatial branch applies
SAB, the channel branch CAB; each pools (GAP), reduces (2048 -> 1024 / 512) and ends in a
BNNeck. The inference signature is [spatial, channel], 1536-d.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import NamedTuple

import torch
from torch import nn

from ._base import ReIDModel
from ._builder import build_model_with_cfg
from ._registry import register_model
from .attention import CAB, SAB
from .backbones import create_backbone, in1k_cfg, init_weights, run_blocks
from .heads import BNNeck, BranchOutput, Reduction

__all__ = ["FNC", "AttentionBranch", "FNCAttention"]


class FNCAttention(NamedTuple):
    """What FNC's two attention blocks compute on one batch (see :meth:`FNC.attention`)."""

    #: (B, C, h, w): the spatial branch's layer4 map, the SAB's input.
    sab_input: torch.Tensor
    #: (B, hw, hw): Eq. 1's softmax; row i is position i's distribution over the positions.
    sab_attention: torch.Tensor
    #: (B, C, h, w): the channel branch's layer4 map, the CAB's input.
    cab_input: torch.Tensor
    #: (B, C, h, w): Eq. 3's ``sigmoid(SE(x_raw))``, the gate the CAB applies.
    cab_mask: torch.Tensor


class AttentionBranch(nn.Module):
    """One FNC branch: [layer3[1:], layer4] -> attention -> GAP -> Reduction -> BNNeck.

    ``layer3`` keeps timm's block indices (``layer3.1`` ... ``layer3.22``) so ImageNet
    checkpoints map onto it by prefix. With a shared res4 both stages are empty.

    Shape:
        train: (B, C, H, W) -> BranchOutput(feat (B, embed_dim), logits); eval: (B, embed_dim)
    """

    def __init__(
        self,
        layer3: nn.Module,
        layer4: nn.Module,
        attention: nn.Module,
        in_features: int,
        embed_dim: int,
        num_classes: int,
    ) -> None:
        super().__init__()
        self.grad_checkpointing = False
        self.layer3 = layer3
        self.layer4 = layer4
        self.attention = attention
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduction = Reduction(in_features, embed_dim)
        self.bnneck = BNNeck(embed_dim, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The attended (B, 2048, H, W) map, before pooling."""
        x = run_blocks(self.layer3, x, self.grad_checkpointing)
        x = run_blocks(self.layer4, x, self.grad_checkpointing)
        return self.attention(x)

    def forward(self, x: torch.Tensor) -> BranchOutput | torch.Tensor:
        x = self.pool(self.forward_features(x)).flatten(1)
        return self.bnneck(self.reduction(x))


class FNC(ReIDModel):
    """The FNC two-branch attention network.

    Args:
        backbone: ``"se_resnext101"`` (the paper's), ``"resnet50"`` or ``"resnet101"``.
        num_classes: training identities; 0 = no classifier.
        last_stride: layer4 stride; 1 (the paper's) doubles the attention maps' resolution.
        separate: each branch gets its own layer3[1:] and layer4 (the paper's final model);
            ``False`` shares them (Table 5's "not separate" ablation).
        fuse: ``"multiply"`` (sigmoid gating, the paper's) or ``"add"`` (Table 6 ablation).
        sab_reduction: r of SAB (2).
        spatial_dim: reduced dimension of the spatial branch (1024).
        channel_dim: reduced dimension of the channel branch (512).
        fused_attention: SAB uses torch's fused scaled-dot-product attention.

    Shape:
        train: (B, 3, H, W) -> (BranchOutput spatial, BranchOutput channel);
        eval: (B, 3, H, W) -> (B, spatial_dim + channel_dim)

    Example:
        >>> model = FNC("resnet50", num_classes=5).eval()
        >>> model(torch.randn(2, 3, 64, 64)).shape
        torch.Size([2, 1536])
    """

    def __init__(
        self,
        backbone: str = "se_resnext101",
        num_classes: int = 0,
        last_stride: int = 1,
        separate: bool = True,
        fuse: str = "multiply",
        sab_reduction: int = 2,
        spatial_dim: int = 1024,
        channel_dim: int = 512,
        fused_attention: bool = True,
    ) -> None:
        super().__init__()
        self.separate = separate
        trunk = create_backbone(backbone, last_stride)
        self.stride = trunk.stride
        self.embed_dim = spatial_dim + channel_dim
        channels = trunk.num_features
        if separate:
            # Split after conv4_1: the trunk keeps layer3[0]; each branch gets layer3[1:] and
            # layer4 under timm's indices. Deep copies, so the branches start equal but share nothing.
            blocks = list(trunk.layer3.children())
            tail3 = nn.Sequential(OrderedDict((str(i), b) for i, b in enumerate(blocks) if i > 0))
            layer4 = trunk.layer4
            trunk.layer3 = nn.Sequential(blocks[0])
            trunk.layer4 = nn.Sequential()
            stages = [(tail3, layer4), (copy.deepcopy(tail3), copy.deepcopy(layer4))]
        else:
            stages = [(nn.Sequential(), nn.Sequential()), (nn.Sequential(), nn.Sequential())]
        self.backbone = trunk
        sab = SAB(channels, sab_reduction, fuse, fused_attention)
        cab = CAB(channels, fuse=fuse)
        init_weights(sab)
        init_weights(cab)
        sab.zero_init_residual()
        cab.zero_init_residual()
        self.spatial = AttentionBranch(*stages[0], sab, channels, spatial_dim, num_classes)
        self.channel = AttentionBranch(*stages[1], cab, channels, channel_dim, num_classes)

    def forward_train(self, x: torch.Tensor) -> tuple[BranchOutput, BranchOutput]:
        x = self.backbone(x)
        return self.spatial(x), self.channel(x)

    def forward_embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.backbone(x)
        return torch.cat([self.spatial(x), self.channel(x)], dim=1)

    def attention(self, x: torch.Tensor) -> FNCAttention:
        """The SAB attention and CAB mask of ``x``, taken from one ordinary forward pass.

        Forward pre-hooks on the two attention blocks record their inputs while the model runs
        as it always does (in its current train / eval mode), so the maps are those of the real
        modules, whatever the layout (separate or shared res4).

        Args:
            x: (B, 3, H, W) preprocessed images.

        Returns:
            :class:`FNCAttention` with the blocks' inputs, the SAB's (B, hw, hw) attention and
            the CAB's (B, C, h, w) channel mask.

        Example:
            >>> model = FNC("resnet50").eval()
            >>> maps = model.attention(torch.randn(1, 3, 64, 64))
            >>> maps.sab_attention.shape, maps.cab_mask.shape
            (torch.Size([1, 16, 16]), torch.Size([1, 2048, 4, 4]))
        """
        seen: dict[str, torch.Tensor] = {}
        sab, cab = self.spatial.attention, self.channel.attention

        def record(name: str):
            def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
                seen[name] = args[0]

            return hook

        handles = [sab.register_forward_pre_hook(record("sab")), cab.register_forward_pre_hook(record("cab"))]
        try:
            self(x)
        finally:
            for handle in handles:
                handle.remove()
        return FNCAttention(seen["sab"], sab.attention_map(seen["sab"]), seen["cab"], cab.channel_mask(seen["cab"]))


def _create_fnc(variant: str, pretrained: bool = False, **kwargs) -> FNC:
    return build_model_with_cfg(FNC, variant, pretrained, **kwargs)


default_cfgs = {f"fnc_{name}.in1k": in1k_cfg(name) for name in ("se_resnext101", "resnet50", "resnet101")}


@register_model
def fnc_se_resnext101(pretrained: bool = False, **kwargs) -> FNC:
    """FNC on SE-ResNeXt-101 32x4d, the paper's model."""
    model_args = dict(backbone="se_resnext101")
    return _create_fnc("fnc_se_resnext101", pretrained, **dict(model_args, **kwargs))


@register_model
def fnc_resnet50(pretrained: bool = False, **kwargs) -> FNC:
    """FNC on ResNet-50."""
    model_args = dict(backbone="resnet50")
    return _create_fnc("fnc_resnet50", pretrained, **dict(model_args, **kwargs))


@register_model
def fnc_resnet101(pretrained: bool = False, **kwargs) -> FNC:
    """FNC on ResNet-101."""
    model_args = dict(backbone="resnet101")
    return _create_fnc("fnc_resnet101", pretrained, **dict(model_args, **kwargs))
