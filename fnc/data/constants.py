"""Constants every layer shares: the one owner of preprocessing defaults and image file types.

A leaf module (no imports from fnc): models, data readers, inference and training all read
these names instead of repeating the literals.
"""

from __future__ import annotations

__all__ = ["DEFAULT_INPUT_SIZE", "IMAGENET_MEAN", "IMAGENET_STD", "IMAGE_EXTENSIONS", "MAX_INPUT_SIDE"]

#: Per-channel mean / std of RGB input in [0, 1]: ImageNet's, the backbones' pre-training.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: (C, H, W): the paper trains and tests at "288*384", which this project reads as H=288, W=384
#: (docs/design.md).
DEFAULT_INPUT_SIZE = (3, 288, 384)

#: Largest H or W accepted as an input size. Re-ID models see crops of a few hundred pixels; at
#: 4096 x 4096 one float32 image is already 192 MiB before the first layer, and beyond that a
#: batch no longer fits in memory, so a larger value is a typo, refused before any allocation.
MAX_INPUT_SIDE = 4096

#: File extensions (lower-case) treated as images by the dataset readers and by ``extract``.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
