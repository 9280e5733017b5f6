"""Attention blocks of FNC: the spatial attention block (SAB) and channel attention block (CAB).

Liu et al., "Further Non-local and Channel Attention Networks for Vehicle Re-identification"
(CVPR Workshops 2020), Sec. 3.2 (SAB, Eq. 1-2) and Sec. 3.3 (CAB, Eq. 3); SE from Hu et al.,
"Squeeze-and-Excitation Networks". ``fuse="add"`` gives the residual variants of the paper's
Table 6 ablation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SEModule", "SAB", "CAB"]

_FUSE_MODES = ("multiply", "add")


def _check_fuse(fuse: str) -> str:
    if fuse not in _FUSE_MODES:
        raise ValueError(f"fuse must be one of {_FUSE_MODES} (paper Table 6), got {fuse!r}")
    return fuse


class SEModule(nn.Module):
    """Squeeze-and-excitation: ``x * sigmoid(fc2(relu(fc1(gap(x)))))``.

    Module names (``fc1``, ``fc2`` as 1x1 convs with bias) follow timm, so SE-ResNeXt
    checkpoints load without renaming.

    Args:
        channels: input and output channels.
        reduction: squeeze ratio; the hidden width is ``channels // reduction``.

    Shape:
        (B, C, H, W) -> (B, C, H, W)

    Example:
        >>> SEModule(256)(torch.randn(2, 256, 4, 4)).shape
        torch.Size([2, 256, 4, 4])
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = channels // reduction
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.fc2(self.act(self.fc1(s))).sigmoid()


class SAB(nn.Module):
    """Spatial attention block, Eq. 1-2: a Non-local block gated by a sigmoid.

    ``g``, ``h`` and ``p`` are 1x1 convs C -> C/r; ``attn = softmax_keys(g(x)^T h(x))`` is an
    (HW x HW) map over positions, ``y = attn @ p(x)``, ``T`` is a 1x1 conv C/r -> C and the output
    is ``sigmoid(T(y)) * x`` (``fuse="multiply"``, the paper's) or ``x + T(y)`` (``fuse="add"``,
    the Non-local residual of Table 6). Eq. 1 has no 1/sqrt(d) scaling, so neither has this.
    All four convs keep their bias, as in the Non-local block the SAB is built on.

    Args:
        in_channels: C.
        reduction: r (2 in the paper).
        fuse: ``"multiply"`` or ``"add"``.
        fused_attention: compute ``attn @ p(x)`` with torch's fused
            ``scaled_dot_product_attention`` (``scale=1``), which never stores the HW x HW map;
            ``False`` uses the explicit softmax (same result, tested).

    Shape:
        (B, C, H, W) -> (B, C, H, W)

    Example:
        >>> sab = SAB(64)
        >>> sab(torch.randn(2, 64, 6, 4)).shape
        torch.Size([2, 64, 6, 4])
    """

    def __init__(
        self, in_channels: int, reduction: int = 2, fuse: str = "multiply", fused_attention: bool = True
    ) -> None:
        super().__init__()
        if in_channels % reduction:
            raise ValueError(f"in_channels ({in_channels}) must be divisible by reduction ({reduction})")
        inter = in_channels // reduction
        self.fuse = _check_fuse(fuse)
        self.fused_attention = fused_attention
        self.g = nn.Conv2d(in_channels, inter, 1)
        self.h = nn.Conv2d(in_channels, inter, 1)
        self.p = nn.Conv2d(in_channels, inter, 1)
        self.t = nn.Conv2d(inter, in_channels, 1)

    def zero_init_residual(self) -> None:
        """With ``fuse="add"``, zero ``T`` so the block starts as the identity, ``x + 0``.

        A Non-local block's residual starts at zero (Wang et al. 2018 zero their last BN); SAB's
        residual ends in ``T``, so ``T`` is zeroed. A no-op for ``"multiply"``, whose gate
        ``sigmoid(0) = 0.5`` could not start as the identity anyway. See docs/design.md.

        Example:
            >>> sab = SAB(8, fuse="add")
            >>> sab.zero_init_residual()
            >>> x = torch.randn(1, 8, 3, 2)
            >>> torch.equal(sab(x), x)
            True
        """
        if self.fuse == "add":
            nn.init.zeros_(self.t.weight)
            nn.init.zeros_(self.t.bias)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # (B, C/r, H, W) -> (B, HW, C/r): one row per position.
        return tuple(f(x).flatten(2).transpose(1, 2) for f in (self.g, self.h, self.p))  # type: ignore[return-value]

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. 1: the (B, HW, HW) attention; row i is position i's distribution over positions.

        Example:
            >>> SAB(64).attention_map(torch.randn(1, 64, 3, 2)).shape
            torch.Size([1, 6, 6])
        """
        q, k, _ = self._qkv(x)
        return torch.softmax(q @ k.transpose(1, 2), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, hgt, wid = x.shape
        q, k, v = self._qkv(x)
        if self.fused_attention:
            y = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1), scale=1.0).squeeze(1)
        else:
            y = torch.softmax(q @ k.transpose(1, 2), dim=-1) @ v
        y = self.t(y.transpose(1, 2).reshape(b, -1, hgt, wid))
        return x * y.sigmoid() if self.fuse == "multiply" else x + y


class CAB(nn.Module):
    """Channel attention block, Eq. 3: ``sigmoid(SE(x_raw)) * x``.

    ``x_raw`` comes from conv1x1(C -> 1024) + BN + ReLU, conv3x3(1024 -> 1024, 32 groups) + BN +
    ReLU, conv1x1(1024 -> C); ``SE`` is squeeze-and-excitation (reduction 16) applied as in
    SENet, ``x_raw * sigmoid(fc(gap(x_raw)))``. The two convs before a BN have no bias (the BN
    absorbs it); the last conv, followed by no BN, keeps its bias. ``fuse="add"`` gives
    ``x + SE(x_raw)`` (Table 6).

    Args:
        in_channels: C.
        mid_channels: width of the two conv blocks (1024 in the paper).
        groups: groups of the 3x3 conv (32 in the paper).
        se_reduction: SE squeeze ratio.
        fuse: ``"multiply"`` or ``"add"``.

    Shape:
        (B, C, H, W) -> (B, C, H, W)

    Example:
        >>> cab = CAB(64, mid_channels=32, groups=4)
        >>> cab(torch.randn(2, 64, 6, 4)).shape
        torch.Size([2, 64, 6, 4])
    """

    def __init__(
        self,
        in_channels: int,
        mid_channels: int = 1024,
        groups: int = 32,
        se_reduction: int = 16,
        fuse: str = "multiply",
    ) -> None:
        super().__init__()
        self.fuse = _check_fuse(fuse)
        self.conv1 = nn.Conv2d(in_channels, mid_channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_channels)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(mid_channels, mid_channels, 3, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(mid_channels)
        self.act2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(mid_channels, in_channels, 1)
        self.se = SEModule(in_channels, se_reduction)

    def zero_init_residual(self) -> None:
        """With ``fuse="add"``, zero the last conv so ``x_raw = 0``, ``SE(0) = 0`` and the block
        starts as the identity (as :meth:`SAB.zero_init_residual`); a no-op for ``"multiply"``.

        Example:
            >>> cab = CAB(16, mid_channels=8, groups=2, se_reduction=4, fuse="add")
            >>> cab.zero_init_residual()
            >>> x = torch.randn(2, 16, 3, 2)
            >>> torch.equal(cab(x), x)
            True
        """
        if self.fuse == "add":
            nn.init.zeros_(self.conv3.weight)
            nn.init.zeros_(self.conv3.bias)

    def channel_mask(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, C, H, W) mask ``sigmoid(SE(x_raw))`` that multiplies ``x`` (``fuse="multiply"``)."""
        return self.se(self._raw(x)).sigmoid()

    def _raw(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.bn2(self.conv2(x)))
        return self.conv3(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.se(self._raw(x))
        return x * s.sigmoid() if self.fuse == "multiply" else x + s
