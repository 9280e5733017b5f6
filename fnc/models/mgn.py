"""MGN: the Multiple Granularity Network, the FNC paper's Table 2 comparison (on SE-ResNeXt-101).

Wang, Yuan, Chen, Li, Zhou, "Learning Discriminative Features with Multiple Granularities for
Person Re-Identification", ACM MM 2018, https://arxiv.org/abs/1804.01438.

Built as fast-reid builds it (``fastreid/modeling/meta_arch/mgn.py``): a shared trunk (stem,
layer1, layer2, layer3[0]), then three branches, each with its own copy of layer3[1:] and of
layer4. Branch ``b1`` keeps the backbone's layer4 (stride ``last_stride``); ``b2`` and ``b3``
use a stride-1 layer4, whose map is cut into 2 and 3 horizontal stripes. Eight heads (the three
whole maps and the five stripes) each pool (GAP), reduce 2048 -> 256 (a bias-free linear map,
fast-reid's 1x1 conv) and end in a BNNeck. The inference embedding is the eight post-BN
features in fast-reid's order [b1, b2, b3, b21, b22, b31, b32, b33], 2048-d.
"""

from __future__ import annotations

import copy
import dataclasses
from collections import OrderedDict

import torch
from torch import nn

from ._base import ReIDModel
from ._builder import build_model_with_cfg
from ._registry import register_model
from .backbones import create_backbone, in1k_cfg, init_weights, run_blocks
from .heads import BNNeck, BranchOutput

__all__ = ["MGN", "MGNBranch", "MGNHead"]

#: Heads in the order of the training tuple and of the embedding (fast-reid's concatenation).
HEAD_NAMES = ("b1_head", "b2_head", "b3_head", "b21_head", "b22_head", "b31_head", "b32_head", "b33_head")


class MGNBranch(nn.Module):
    """One MGN branch's own res4 tail and res5: layer3[1:] (timm's indices) and a layer4.

    Shape:
        (B, 1024, H, W) -> (B, 2048, H / s, W / s), s the stride of its layer4.
    """

    def __init__(self, layer3: nn.Module, layer4: nn.Module) -> None:
        super().__init__()
        self.grad_checkpointing = False
        self.layer3 = layer3
        self.layer4 = layer4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = run_blocks(self.layer3, x, self.grad_checkpointing)
        return run_blocks(self.layer4, x, self.grad_checkpointing)


class MGNHead(nn.Module):
    """GAP -> bias-free linear reduction (none if ``out_features == 0``) -> BNNeck.

    fast-reid's ``EmbeddingHead`` with ``EMBEDDING_DIM`` and ``WITH_BNNECK``: its 1x1 conv on the
    pooled map is this linear map. The training feature is the reduced one before the BNNeck's
    BN, as in the other models' branches.

    Shape:
        train: (B, C, H, W) -> BranchOutput(feat (B, D), logits); eval: (B, C, H, W) -> (B, D)
    """

    def __init__(self, in_features: int, out_features: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, out_features, bias=False) if out_features else None
        self.bnneck = BNNeck(out_features or in_features, num_classes)
        if self.fc is not None:
            init_weights(self.fc)

    def forward(self, x: torch.Tensor) -> BranchOutput | torch.Tensor:
        x = x.mean((2, 3))
        return self.bnneck(x if self.fc is None else self.fc(x))


def _stripes(x: torch.Tensor, n: int) -> tuple[torch.Tensor, ...]:
    """``n`` horizontal stripes: fast-reid's ``torch.chunk`` (ceil(H/n) rows, the last shorter).

    Where ``torch.chunk`` gives fewer than ``n`` pieces (H = 4 rows for three stripes, e.g. a
    64-pixel-high input, on which fast-reid fails), the rows are split as evenly as possible.
    """
    rows = x.shape[2]
    if rows < n:
        raise ValueError(
            f"MGN cuts the feature map into {n} horizontal stripes, but it has {rows} row(s); "
            f"feed images at least {16 * n} pixels high"
        )
    parts = torch.chunk(x, n, dim=2)
    return parts if len(parts) == n else torch.tensor_split(x, n, dim=2)


class MGN(ReIDModel):
    """The MGN three-branch, eight-head network, as fast-reid builds it.

    Args:
        backbone: ``"se_resnext101"`` (the FNC paper's comparison), ``"resnet50"`` (MGN's own)
            or ``"resnet101"``.
        num_classes: training identities; 0 = no classifier.
        last_stride: stride of the global branch's layer4. 1 is fast-reid's setting; the MGN
            paper keeps 2 there. The stripe branches always use stride 1.
        head_dim: each head's reduced dimension (256, MGN's); 0 keeps the 2048-d pooled feature.

    Training output and losses: one :class:`~fnc.models.heads.BranchOutput` per head, so
    :class:`~fnc.losses.ReIDLoss` gives each of the eight an ID term (as fast-reid) and a
    triplet term on its reduced feature. fast-reid's MGN loss differs there: its triplet terms
    are on b1, b2, b3 and on each branch's concatenated stripes (five, not eight), on the
    feature its ``NECK_FEAT`` picks, and it averages the terms (x 1/8, x 1/5) where Eq. 7 sums
    them; the architecture and the embedding are the same.

    Shape:
        train: (B, 3, H, W) -> 8 x BranchOutput, in the order [b1, b2, b3, b21, b22, b31, b32,
        b33]; eval: (B, 3, H, W) -> (B, 8 * head_dim)

    Example:
        >>> model = MGN("resnet50").eval()
        >>> model(torch.randn(2, 3, 64, 64)).shape
        torch.Size([2, 2048])
    """

    def __init__(
        self, backbone: str = "se_resnext101", num_classes: int = 0, last_stride: int = 1, head_dim: int = 256
    ) -> None:
        super().__init__()
        if head_dim < 0:
            raise ValueError(f"head_dim must be >= 0 (0 = no reduction), got {head_dim}")
        trunk = create_backbone(backbone, last_stride)
        part_net = trunk if last_stride == 1 else create_backbone(backbone, 1)
        self.stride = trunk.stride
        channels = trunk.num_features
        self.embed_dim = len(HEAD_NAMES) * (head_dim or channels)
        blocks = list(trunk.layer3.children())
        tail3 = nn.Sequential(OrderedDict((str(i), b) for i, b in enumerate(blocks) if i > 0))
        global_layer4 = trunk.layer4
        # fast-reid builds the stride-1 layer4 afresh and loads the backbone's layer4 into it;
        # deep copies give every branch the same start and nothing shared.
        part_layer4 = copy.deepcopy(global_layer4) if part_net is trunk else part_net.layer4
        if part_net is not trunk:
            part_layer4.load_state_dict(global_layer4.state_dict())
        trunk.layer3 = nn.Sequential(blocks[0])
        trunk.layer4 = nn.Sequential()
        self.backbone = trunk
        self.b1 = MGNBranch(tail3, global_layer4)
        self.b2 = MGNBranch(copy.deepcopy(tail3), part_layer4)
        self.b3 = MGNBranch(copy.deepcopy(tail3), copy.deepcopy(part_layer4))
        for name in HEAD_NAMES:
            self.add_module(name, MGNHead(channels, head_dim, num_classes))

    def _heads(self, x: torch.Tensor) -> list:
        x = self.backbone(x)
        g1, g2, g3 = self.b1(x), self.b2(x), self.b3(x)
        maps = (g1, g2, g3, *_stripes(g2, 2), *_stripes(g3, 3))
        return [getattr(self, name)(m) for name, m in zip(HEAD_NAMES, maps, strict=True)]

    def forward_train(self, x: torch.Tensor) -> tuple[BranchOutput, ...]:
        return tuple(self._heads(x))

    def forward_embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(self._heads(x), dim=1)


def _create_mgn(variant: str, pretrained: bool = False, **kwargs) -> MGN:
    return build_model_with_cfg(MGN, variant, pretrained, **kwargs)


_PAPER = "https://arxiv.org/abs/1804.01438"
default_cfgs = {
    f"mgn_{name}.in1k": dataclasses.replace(in1k_cfg(name), paper=_PAPER) for name in ("se_resnext101", "resnet50")
}


@register_model
def mgn_se_resnext101(pretrained: bool = False, **kwargs) -> MGN:
    """MGN on SE-ResNeXt-101 32x4d, as the FNC paper compares it (Table 2)."""
    model_args = dict(backbone="se_resnext101")
    return _create_mgn("mgn_se_resnext101", pretrained, **dict(model_args, **kwargs))


@register_model
def mgn_resnet50(pretrained: bool = False, **kwargs) -> MGN:
    """MGN on ResNet-50, the original MGN setting."""
    model_args = dict(backbone="resnet50")
    return _create_mgn("mgn_resnet50", pretrained, **dict(model_args, **kwargs))
