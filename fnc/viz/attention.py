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
    up = F.interpolate(
        scaled[None, None].float(), size=(image.height, image.width), mode="bilinear", align_corners=False
    )
    colored = Image.fromarray(colormap(up[0, 0].cpu().numpy()))
    return Image.blend(image, colored, alpha), lo, hi


#: Outline colours of the most attended cells, 1st to 3rd (then repeating).
_TOP_COLORS = ((255, 255, 255), (255, 230, 0), (255, 120, 255))
#: Above this top weight a row of the SAB softmax is reported as nearly one-hot.
_ONE_HOT = 0.9


def _grid(panel: Image.Image, grid_h: int, grid_w: int) -> None:
    """White lines between the layer4 cells, so a "position" reads as a cell of the picture."""
    draw = ImageDraw.Draw(panel)
    ch, cw = panel.height / grid_h, panel.width / grid_w
    for i in range(1, grid_h):
        draw.line([(0, i * ch), (panel.width, i * ch)], fill=(255, 255, 255), width=1)
    for j in range(1, grid_w):
        draw.line([(j * cw, 0), (j * cw, panel.height)], fill=(255, 255, 255), width=1)


def attention_map(
    model: nn.Module,
    image: ImageLike,
    position: tuple[int, int] | None = None,
    *,
    channel: str = "masked",
    input_size: Sequence[int] | None = None,
    zoom: int = 1,
    top_k: int = 3,
    alpha: float = 0.55,
    save: str | os.PathLike | None = None,
) -> Image.Image:
    """Show where an FNC model looks: its SAB attention and CAB mask energy over the image.

    The model runs at ``input_size`` (default: the size its ``pretrained_cfg`` records, i.e.
    the size it was trained at, so the SAB grid is the one it learned on); the panels are
    then enlarged ``zoom`` times for reading. Three panels, each with the layer4 grid drawn:

    1. the input;
    2. the SAB attention (Eq. 1) of one query ``position`` of the spatial branch's layer4 map:
       row ``position`` of the (HW x HW) softmax, i.e. how much each position contributes to
       that one, upsampled and overlaid; the position is marked with a ring, and the
       ``top_k`` most attended cells are outlined and numbered with their weights (cells
       under 1% are left out, except the first). The paper's softmax is unscaled (no
       ``1 / sqrt(C)``), so a trained SAB is often nearly one-hot; when the top weight
       exceeds 0.9 the caption says so;
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
            the caller knows where the object is (the demo passes a cell on the vehicle);
            default: the position with the largest mean activation of the SAB's input.
        channel: ``"masked"`` or ``"mask"``, see above.
        input_size: (H, W) the model runs at, overriding its ``pretrained_cfg`` size.
        zoom: integer enlargement of the drawn panels (the model's input is not enlarged).
        top_k: how many of the most attended cells to outline.
        alpha: opacity of the heat maps.
        save: also write the picture to this file.

    Returns:
        The RGB picture: ``3 * W * zoom + 32`` wide, ``H * zoom + 74`` high for an input size
        of H x W.

    Raises:
        TypeError: the model has no SAB / CAB.
        ValueError: ``position`` is off the grid, an unknown ``channel``, ``zoom`` or
            ``top_k`` below 1.

    >>> import fnc
    >>> model = fnc.create_model("fnc_resnet50")
    >>> attention_map(model, np.zeros((60, 80, 3), np.uint8), input_size=(64, 96), zoom=2).size
    (608, 202)
    """
    if not isinstance(model, FNC):
        raise TypeError(
            f"attention_map needs an FNC model (fnc_*, with a SAB and a CAB); "
            f"{type(model).__name__} has no attention blocks to show"
        )
    if channel not in ("masked", "mask"):
        raise ValueError(f"channel must be 'masked' or 'mask', got {channel!r}")
    if int(zoom) != zoom or zoom < 1:
        raise ValueError(f"zoom must be an integer >= 1 (the panels' enlargement), got {zoom!r}")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1 (how many attended cells to outline), got {top_k}")
    zoom = int(zoom)
    hgt, wid = resolve_data_config(model, input_size).hw
    rgb = as_rgb_image(image)
    shown = rgb.resize((wid * zoom, hgt * zoom), Image.BILINEAR)
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
    attn = maps.sab_attention[0, row * grid_w + col].float()
    weights, order = attn.sort(descending=True)
    top = [(int(i) // grid_w, int(i) % grid_w, float(w)) for w, i in zip(weights[:top_k], order[:top_k])]
    top = [t for n, t in enumerate(top) if n == 0 or t[2] >= 0.01]
    attn = attn.reshape(grid_h, grid_w)
    mask = maps.cab_mask
    energy = (mask * maps.cab_input if channel == "masked" else mask)[0].mean(0)

    sab_panel, a_lo, a_hi = _heat_overlay(shown, attn, alpha)
    cab_panel, c_lo, c_hi = _heat_overlay(shown, energy, alpha)
    input_panel = shown.copy()
    for panel in (input_panel, sab_panel, cab_panel):
        _grid(panel, grid_h, grid_w)
    big_h, big_w = shown.height, shown.width
    ch, cw = big_h / grid_h, big_w / grid_w
    draw = ImageDraw.Draw(sab_panel)
    small = font(11)
    # Outlines nested inwards by rank, so coinciding cells stay distinguishable.
    for n, (r, c, w) in reversed(list(enumerate(top))):
        inset = 2 + 2 * n
        color = _TOP_COLORS[n % len(_TOP_COLORS)]
        draw.rectangle(
            [c * cw + inset, r * ch + inset, (c + 1) * cw - inset, (r + 1) * ch - inset], outline=color, width=2
        )
        draw.text((c * cw + inset + 3, r * ch + inset + 1 + 12 * n), f"{n + 1}: {w:.2f}", fill=color, font=small)
    # Ring at the centre of the chosen cell, black inside white so it reads on any colour.
    cy, cx = (row + 0.5) * ch, (col + 0.5) * cw
    radius = max(4.0, 0.3 * min(ch, cw))
    draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], outline=(255, 255, 255), width=3)
    draw.ellipse([cx - radius + 2, cy - radius + 2, cx + radius - 2, cy + radius - 2], outline=(0, 0, 0), width=1)

    pad, title_h, bar_h, caption_h = 8, 22, 18, 18
    canvas = Image.new("RGB", (3 * big_w + 4 * pad, big_h + title_h + bar_h + caption_h + 2 * pad), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    title_font = font(12)
    titles = [
        f"input {hgt}x{wid}, SAB grid {grid_h}x{grid_w}",
        f"SAB attention of ({row}, {col}) [{a_lo:.2g}, {a_hi:.2g}]",
        f"CAB {'mask x features' if channel == 'masked' else 'mask'} energy [{c_lo:.2g}, {c_hi:.2g}]",
    ]
    for i, (panel, title) in enumerate(zip((input_panel, sab_panel, cab_panel), titles)):
        left = pad + i * (big_w + pad)
        canvas.paste(panel, (left, pad + title_h))
        text_centered(draw, left + big_w / 2, pad + 3, title, title_font)
    # Colour bar under the two heat maps: the scale both share after min-max scaling.
    bar_left = 2 * pad + big_w + 32
    bar_w = max(2 * big_w + pad - 64, 8)
    bar_top = pad + title_h + big_h + 4
    ramp = colormap(np.linspace(0.0, 1.0, bar_w))[None].repeat(6, axis=0)
    canvas.paste(Image.fromarray(ramp), (bar_left, bar_top))
    draw.text((bar_left - 26, bar_top - 4), "low", fill=TEXT, font=title_font)
    draw.text((bar_left + bar_w + 4, bar_top - 4), "high", fill=TEXT, font=title_font)
    cells = ", ".join(f"{n + 1}: ({r}, {c}) {w:.2f}" for n, (r, c, w) in enumerate(top))
    caption = f"SAB of the ringed cell: most attended {cells}"
    if top[0][2] > _ONE_HOT:
        caption += " - nearly one-hot (the paper's unscaled softmax)"
    draw.text((pad, bar_top + bar_h), caption, fill=TEXT, font=title_font)
    if save is not None:
        canvas.save(save)
    return canvas
