"""Constants every layer shares: the one owner of preprocessing defaults and image file types.

A leaf module (no imports from fnc): models, data readers, inference and training all read
these names instead of repeating the literals.
"""

from __future__ import annotations

__all__ = ["DEFAULT_INPUT_SIZE", "IMAGENET_MEAN", "IMAGENET_STD", "IMAGE_EXTENSIONS"]

#: Per-channel mean / std of RGB input in [0, 1]: ImageNet's, the backbones' pre-training.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: (C, H, W): the paper trains and tests at "288*384", which this project reads as H=288, W=384
#: (docs/design.md).
DEFAULT_INPUT_SIZE = (3, 288, 384)

#: File extensions (lower-case) treated as images by the dataset readers and by ``extract``.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
