"""What the pictures share: colours, the font, the colour scale and framed thumbnails (PIL only)."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from fnc.inference.images import ImageLike, as_rgb_image

__all__ = ["MATCH_COLOR", "MISMATCH_COLOR", "QUERY_COLOR", "UNKNOWN_COLOR", "colormap"]

MATCH_COLOR = (0, 176, 0)
MISMATCH_COLOR = (220, 0, 0)
QUERY_COLOR = (30, 90, 200)
#: Border of gallery images when ids are not given.
UNKNOWN_COLOR = (150, 150, 150)
BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)

# Turbo-like anchors (position, RGB): dark blue -> cyan -> green -> yellow -> red, readable
# over photos and in print, unlike a grey ramp.
_CMAP = np.array(
    [
        (0.00, 48, 18, 59),
        (0.15, 70, 107, 227),
        (0.30, 30, 190, 230),
        (0.45, 60, 240, 130),
        (0.60, 190, 240, 50),
        (0.75, 250, 180, 40),
        (0.90, 230, 80, 20),
        (1.00, 122, 4, 3),
    ]
)


def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's default font at ``size`` points, so every picture's text looks the same.

    >>> font(12) is not None
    True
    """
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow < 10.1 or no FreeType: the fixed bitmap font
        return ImageFont.load_default()


def colormap(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to RGB with a turbo-like colour scale.

    Args:
        values: any shape, clipped to [0, 1].

    Returns:
        uint8 array of shape ``values.shape + (3,)``.

    >>> colormap(np.array([0.0, 1.0])).tolist()
    [[48, 18, 59], [122, 4, 3]]
    """
    v = np.clip(np.asarray(values, np.float64), 0.0, 1.0)
    rgb = [np.interp(v, _CMAP[:, 0], _CMAP[:, c]) for c in (1, 2, 3)]
    return np.rint(np.stack(rgb, axis=-1)).astype(np.uint8)


def text_centered(draw: ImageDraw.ImageDraw, cx: float, y: float, text: str, font: Any) -> None:
    """Write ``text`` horizontally centred on ``cx``, its top at ``y``."""
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    draw.text((cx - (right - left) / 2, y), text, fill=TEXT, font=font)


def tile(image: ImageLike, thumb_hw: tuple[int, int], border: int, color: tuple[int, int, int]) -> Image.Image:
    """The image letterboxed into thumb_hw (aspect kept), framed by a ``border``-pixel border."""
    hgt, wid = thumb_hw
    thumb = ImageOps.pad(as_rgb_image(image), (wid, hgt), color=BACKGROUND)
    return ImageOps.expand(thumb, border=border, fill=color)
