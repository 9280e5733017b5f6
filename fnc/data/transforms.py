"""Training and evaluation image transforms of the FNC recipe, with ``torchvision.transforms.v2``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import v2

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "build_transforms"]

from fnc.data.constants import DEFAULT_INPUT_SIZE, IMAGENET_MEAN, IMAGENET_STD

_INTERPOLATIONS = {"bilinear": v2.InterpolationMode.BILINEAR, "bicubic": v2.InterpolationMode.BICUBIC}


def build_transforms(
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE[1:],
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    train: bool = True,
    flip_p: float = 0.5,
    padding: int = 10,
    erase_p: float = 0.5,
    interpolation: str = "bilinear",
) -> v2.Compose:
    """Image transform from a PIL RGB image to a normalised float tensor.

    Training (BoT's; the paper names only random erasing, docs/design.md): resize -> horizontal flip (``flip_p``) -> pad ``padding`` pixels
    with zeros + random crop back to ``input_size`` -> to float in [0, 1] -> normalise -> random
    erasing (``erase_p``). Erasing runs after normalisation and fills with 0, i.e. the mean
    colour, with torchvision's default area (0.02-0.33) and aspect ratio (0.3-3.3) ranges.
    Evaluation: resize -> to float -> normalise.

    Args:
        input_size: ``(H, W)``; the paper's "288*384" is H=288, W=384.
        mean: per-channel mean for normalisation (ImageNet, the backbones' pre-training).
        std: per-channel std.
        train: build the training (augmenting) transform, else the evaluation one.
        flip_p: probability of a horizontal flip.
        padding: pixels of zero padding before the random crop; 0 disables pad + crop.
        erase_p: probability of random erasing; 0 disables it.
        interpolation: resize interpolation, ``"bilinear"`` or ``"bicubic"`` (fast-reid's
            models are fed bicubic resizes); a PIL image is resized by PIL.

    Returns:
        A ``v2.Compose``.

    Shape:
        output: (3, H, W) float32.

    >>> from PIL import Image
    >>> build_transforms((32, 48))(Image.new("RGB", (20, 10))).shape
    torch.Size([3, 32, 48])
    """
    size = tuple(input_size)
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"input_size must be (H, W) with positive sides, got {input_size}")
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATIONS)}, got {interpolation!r}")
    # Resize before ToImage: a PIL image is resized by PIL itself, exactly as fast-reid's
    # T.Resize(size, interpolation=3) does, so a model it trained sees the same pixels.
    ops: list[v2.Transform] = [v2.Resize(size, _INTERPOLATIONS[interpolation], antialias=True), v2.ToImage()]
    if train:
        if flip_p > 0:
            ops.append(v2.RandomHorizontalFlip(p=flip_p))
        if padding > 0:
            ops += [v2.Pad(padding), v2.RandomCrop(size)]
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))]
    if train and erase_p > 0:
        ops.append(v2.RandomErasing(p=erase_p, value=0))
    return v2.Compose(ops)
