"""FNC's attention over an image: the SAB (paper Eq. 1) attention of one position and the CAB
(Eq. 3) mask energy, as computed by the model's own blocks (:meth:`fnc.models.FNC.attention`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import nn

from fnc.inference.images import ImageLike, as_rgb_image
from fnc.inference.preprocess import _model_device_dtype, build_eval_transform, resolve_data_config
from fnc.models.fnc import FNC
from fnc.viz._draw import BACKGROUND, TEXT, colormap, font, text_centered

__all__ = ["attention_map"]


def _heat_overlay(image: Image.Image, heat: torch.Tensor, alpha: float) -> tuple[Image.Image, float, float]:
    """``heat`` (h, w) min-max scaled, bilinearly upsampled to the image and blended over it."""
    lo, hi = float(heat.min()), float(heat.max())
    scaled = (heat - lo) / (hi - lo) if hi > lo else torch.zeros_like(heat)
    up = F.interpolate(scaled[None, None].float(), size=(image.height, image.width), mode="bilinear", align_corners=False)
    colored = Image.fromarray(colormap(up[0, 0].cpu().numpy()))
    return Image.blend(image, colored, alpha), lo, hi


def attention_map(
    model: nn.Module,
    image: ImageLike,
    position: tuple[int, int] | None = None,
    *,
    channel: str = "masked",
    input_size: Sequence[int] | None = None,
    alpha: float = 0.55,
    save: str | os.PathLike | None = None,
) -> Image.Image:
    """Show where an FNC model looks: its SAB attention and CAB mask energy over the image.

    Three panels, each the image as the model sees it (resized to its input size):

    1. the input;
    2. the SAB attention (Eq. 1) of one query ``position`` of the spatial branch's layer4 map:
       row ``position`` of the (HW x HW) softmax, i.e. how much each position contributes to
       that one, upsampled and overlaid; the position is marked with a ring;
    3. the CAB's channel mask (Eq. 3, ``sigmoid(SE(x_raw))``) reduced over channels:
       ``channel="masked"`` (default) averages ``mask * x``, the attended features the channel
       branch pools, so it shows where the branch draws its signature from;
       ``channel="mask"`` averages the mask alone (the gate, whatever the activation). With
       ``fuse="add"`` (Table 6) the block adds ``SE(x_raw)`` instead of gating; the picture
       still shows its sigmoid, the same quantity.

    Each map is min-max scaled on its own (turbo colours, blue low to red high); the titles
    give its raw range.

    Args:
        model: an FNC model (``fnc_*``); BFE and baseline models have no SAB / CAB.
        image: path, PIL image or (H, W, 3) uint8 array.
        position: (row, col) on the layer4 grid, of size (H / model.stride, W / model.stride);
            default: the position with the largest mean activation of the SAB's input.
        channel: ``"masked"`` or ``"mask"``, see above.
        input_size: (H, W) overriding the model's ``pretrained_cfg`` size.
        alpha: opacity of the heat maps.
        save: also write the picture to this file.

    Returns:
        The RGB picture: ``3 * W + 32`` wide, ``H + 56`` high for an input size of H x W.

    Raises:
        TypeError: the model has no SAB / CAB.
        ValueError: ``position`` is off the grid, or an unknown ``channel``.

    >>> import fnc
    >>> model = fnc.create_model("fnc_resnet50")
    >>> attention_map(model, np.zeros((60, 80, 3), np.uint8), input_size=(64, 96)).size
    (320, 120)
    """
    if not isinstance(model, FNC):
        raise TypeError(
            f"attention_map needs an FNC model (fnc_*, with a SAB and a CAB); "
            f"{type(model).__name__} has no attention blocks to show"
        )
    if channel not in ("masked", "mask"):
        raise ValueError(f"channel must be 'masked' or 'mask', got {channel!r}")
    hgt, wid = resolve_data_config(model, input_size).hw
    rgb = as_rgb_image(image)
    shown = rgb.resize((wid, hgt), Image.BILINEAR)
    device, dtype = _model_device_dtype(model)
    x = build_eval_transform(model, (hgt, wid))(rgb).unsqueeze(0).to(device=device, dtype=dtype)

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            maps = model.attention(x)
    finally:
        model.train(was_training)
    grid_h, grid_w = maps.sab_input.shape[-2:]
    if position is None:
        flat = int(maps.sab_input[0].mean(0).flatten().argmax())
        position = (flat // grid_w, flat % grid_w)
    row, col = (int(p) for p in position)
    if not (0 <= row < grid_h and 0 <= col < grid_w):
        raise ValueError(f"position {tuple(position)} is off the {grid_h} x {grid_w} layer4 grid (row, col)")
    attn = maps.sab_attention[0, row * grid_w + col].reshape(grid_h, grid_w)
    mask = maps.cab_mask
    energy = (mask * maps.cab_input if channel == "masked" else mask)[0].mean(0)

    sab_panel, a_lo, a_hi = _heat_overlay(shown, attn, alpha)
    cab_panel, c_lo, c_hi = _heat_overlay(shown, energy, alpha)
    # Ring at the centre of the chosen cell, black inside white so it reads on any colour.
    cy, cx = (row + 0.5) * hgt / grid_h, (col + 0.5) * wid / grid_w
    radius = max(4.0, 0.5 * min(hgt / grid_h, wid / grid_w))
    ring = ImageDraw.Draw(sab_panel)
    ring.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], outline=(255, 255, 255), width=3)
    ring.ellipse([cx - radius + 2, cy - radius + 2, cx + radius - 2, cy + radius - 2], outline=(0, 0, 0), width=1)

    pad, title_h, bar_h = 8, 22, 18
    canvas = Image.new("RGB", (3 * wid + 4 * pad, hgt + title_h + bar_h + 2 * pad), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    title_font = font(12)
    titles = [
        f"input {hgt}x{wid}",
        f"SAB attention of ({row}, {col}) [{a_lo:.2g}, {a_hi:.2g}]",
        f"CAB {'mask x features' if channel == 'masked' else 'mask'} energy [{c_lo:.2g}, {c_hi:.2g}]",
    ]
    for i, (panel, title) in enumerate(zip((shown, sab_panel, cab_panel), titles)):
        left = pad + i * (wid + pad)
        canvas.paste(panel, (left, pad + title_h))
        text_centered(draw, left + wid / 2, pad + 3, title, title_font)
    # Colour bar under the two heat maps: the scale both share after min-max scaling.
    bar_left = 2 * pad + wid + 32
    bar_w = max(2 * wid + pad - 64, 8)
    bar_top = pad + title_h + hgt + 4
    ramp = colormap(np.linspace(0.0, 1.0, bar_w))[None].repeat(6, axis=0)
    canvas.paste(Image.fromarray(ramp), (bar_left, bar_top))
    draw.text((bar_left - 26, bar_top - 4), "low", fill=TEXT, font=title_font)
    draw.text((bar_left + bar_w + 4, bar_top - 4), "high", fill=TEXT, font=title_font)
    if save is not None:
        canvas.save(save)
    return canvas
