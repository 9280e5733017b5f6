"""fast-reid's non-local block and the stage runner that inserts such blocks after a stage's last blocks.

Wang, Girshick, Gupta, He, "Non-local Neural Networks" (CVPR 2018), dot-product form, as
fast-reid's SBS models use it (``fastreid/layers/non_local.py``, ``WITH_NL``).
"""

from __future__ import annotations

import torch
from torch import nn

from .backbones import run_blocks

__all__ = ["NonLocal", "run_stage_with_non_local"]


class NonLocal(nn.Module):
    """Dot-product non-local block with a zero-initialised BN on its output: ``x + W(y)``.

    ``y_i = sum_j theta(x_i) . phi(x_j) g(x_j) / N`` over the ``N = H * W`` positions (no
    softmax), then ``W`` = 1x1 conv back to ``in_channels`` + BatchNorm whose weight and bias
    start at 0, so a new block is the identity and the pretrained trunk is undisturbed.

    ``inter_channels`` defaults to 1 because fast-reid computes it as
    ``reduc_ratio // reduc_ratio``: its SBS checkpoints hold one intermediate channel, and
    loading them needs exactly that width.

    Args:
        in_channels: C of the feature map.
        inter_channels: width of theta / phi / g.

    Shape:
        (B, C, H, W) -> (B, C, H, W)

    Example:
        >>> block = NonLocal(512)
        >>> x = torch.randn(2, 512, 8, 4)
        >>> bool(torch.equal(block(x), x))  # W's BN starts at zero
        True
    """

    def __init__(self, in_channels: int, inter_channels: int = 1) -> None:
        super().__init__()
        if inter_channels < 1:
            raise ValueError(f"inter_channels must be >= 1, got {inter_channels}")
        self.in_channels = in_channels
        self.inter_channels = inter_channels
        self.g = nn.Conv2d(in_channels, inter_channels, 1)
        self.W = nn.Sequential(nn.Conv2d(inter_channels, in_channels, 1), nn.BatchNorm2d(in_channels))
        nn.init.zeros_(self.W[1].weight)
        nn.init.zeros_(self.W[1].bias)
        self.theta = nn.Conv2d(in_channels, inter_channels, 1)
        self.phi = nn.Conv2d(in_channels, inter_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, hgt, wid = x.shape
        n = hgt * wid
        theta = self.theta(x).reshape(b, self.inter_channels, n).transpose(1, 2)  # (B, N, C')
        phi = self.phi(x).reshape(b, self.inter_channels, n)  # (B, C', N)
        g = self.g(x).reshape(b, self.inter_channels, n).transpose(1, 2)  # (B, N, C')
        # (theta phi) g / N computed as theta (phi g) / N: the same product without the N x N
        # affinity matrix, so memory stays linear in the number of positions.
        y = theta @ (phi @ g) / n
        y = y.transpose(1, 2).reshape(b, self.inter_channels, hgt, wid)
        return x + self.W(y)


def run_stage_with_non_local(
    stage: nn.Sequential, blocks: nn.ModuleList, x: torch.Tensor, grad_checkpointing: bool = False
) -> torch.Tensor:
    """Run ``stage`` with ``blocks[k]`` applied after each of its last ``len(blocks)`` blocks.

    fast-reid's placement: for a stage of n blocks and k non-local blocks, they follow blocks
    n - k, ..., n - 1 (e.g. blocks 2 and 3 of ResNet-50's layer2, 3-5 of its layer3).

    Example:
        >>> from fnc.models.backbones import create_backbone
        >>> net = create_backbone("resnet50")
        >>> x = torch.randn(2, 256, 16, 16)
        >>> y = run_stage_with_non_local(net.layer2, nn.ModuleList([NonLocal(512), NonLocal(512)]), x)
        >>> y.shape
        torch.Size([2, 512, 8, 8])
    """
    first = len(stage) - len(blocks)
    if first < 0:
        raise ValueError(f"{len(blocks)} non-local blocks for a stage of only {len(stage)} blocks")
    x = run_blocks(stage[:first], x, grad_checkpointing)
    for i, non_local in enumerate(blocks, start=first):
        x = non_local(run_blocks(stage[i : i + 1], x, grad_checkpointing))
    return x
