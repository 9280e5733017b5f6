"""Global pooling of a feature map: average, or generalised mean (GeM) with fixed or learned p.

Radenovic, Tolias, Chum, "Fine-tuning CNN Image Retrieval with No Human Annotation"
(TPAMI 2018); the GeM form and constants of fast-reid's ``GeneralizedMeanPooling(P)``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["POOLINGS", "GeM", "GlobalAvgPool", "create_pool"]


class GlobalAvgPool(nn.Module):
    """Global average pooling to a vector.

    Shape:
        (B, C, H, W) -> (B, C)

    Example:
        >>> GlobalAvgPool()(torch.ones(2, 8, 4, 4)).shape
        torch.Size([2, 8])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3))


class GeM(nn.Module):
    """Generalised mean pooling: ``mean(clamp(x, min=eps) ** p) ** (1 / p)`` per channel.

    p = 1 is average pooling and p -> inf max pooling; p = 3 is the usual re-ID choice.

    Args:
        p: the exponent (its initial value when learned).
        learn_p: make p a trainable parameter (``pool.p``, shape (1,)), as fast-reid's
            ``GeneralizedMeanPoolingP``.
        eps: lower clamp, keeping the power defined (and differentiable) at zero activations.

    Shape:
        (B, C, H, W) -> (B, C)

    Example:
        >>> pool = GeM(p=3.0)
        >>> pool(torch.full((1, 2, 3, 3), 2.0))
        tensor([[2., 2.]])
        >>> [name for name, _ in GeM(learn_p=True).named_parameters()]
        ['p']
    """

    def __init__(self, p: float = 3.0, learn_p: bool = False, eps: float = 1e-6) -> None:
        super().__init__()
        if p <= 0:
            raise ValueError(f"GeM needs p > 0, got {p}")
        self.eps = eps
        self.learn_p = learn_p
        if learn_p:
            self.p = nn.Parameter(torch.full((1,), float(p)))
        else:
            self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=self.eps).pow(self.p).mean((2, 3)).pow(1.0 / self.p)

    def extra_repr(self) -> str:
        p = float(self.p.detach()) if isinstance(self.p, torch.Tensor) else self.p
        return f"p={p:g}, learn_p={self.learn_p}, eps={self.eps:g}"


#: Pooling names a model accepts: average, GeM p = 3 fixed, GeM p learned from 3.
POOLINGS = ("avg", "gem", "gem_learned")


def create_pool(name: str) -> nn.Module:
    """The pooling module for a name of :data:`POOLINGS`.

    Example:
        >>> create_pool("gem_learned")
        GeM(p=3, learn_p=True, eps=1e-06)
    """
    if name == "avg":
        return GlobalAvgPool()
    if name in ("gem", "gem_learned"):
        return GeM(3.0, learn_p=name == "gem_learned")
    raise ValueError(f"pooling must be one of {list(POOLINGS)}, got {name!r}")
