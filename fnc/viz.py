"""Pictures of what a re-ID model does: ranked retrieval lists and FNC's attention maps.

``ranked_list`` draws a query beside its top-k gallery matches, green-bordered when the id
matches and red when it does not (as torchreid's ``visualize_ranked_results``).
``attention_map`` shows, over the input, the spatial attention block's (SAB, paper Eq. 1)
attention of one position and the channel attention block's (CAB, Eq. 3) mask energy. Drawn
with PIL only; no matplotlib.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont, ImageOps
from torch import nn

from .inference import ImageLike, _hw, _model_device_dtype, as_rgb_image, build_eval_transform, model_cfg

__all__ = ["MATCH_COLOR", "MISMATCH_COLOR", "QUERY_COLOR", "UNKNOWN_COLOR", "attention_map", "colormap", "ranked_list"]

MATCH_COLOR = (0, 176, 0)
MISMATCH_COLOR = (220, 0, 0)
QUERY_COLOR = (30, 90, 200)
#: Border of gallery images when ids are not given.
UNKNOWN_COLOR = (150, 150, 150)
_BACKGROUND = (255, 255, 255)
_TEXT = (20, 20, 20)

# ranked_list layout, in pixels (documented in its docstring).
_PAD, _GAP, _SEP, _LABEL_H, _FONT = 8, 6, 24, 32, 12

# Turbo-like anchors (position, RGB): dark blue -> cyan -> green -> yellow -> red, readable
# over photos and in print, unlike a grey ramp.
_CMAP = np.array([
    (0.00, 48, 18, 59), (0.15, 70, 107, 227), (0.30, 30, 190, 230), (0.45, 60, 240, 130),
    (0.60, 190, 240, 50), (0.75, 250, 180, 40), (0.90, 230, 80, 20), (1.00, 122, 4, 3),
])


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
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


def _text_centered(draw: ImageDraw.ImageDraw, cx: float, y: float, text: str, font: Any) -> None:
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    draw.text((cx - (right - left) / 2, y), text, fill=_TEXT, font=font)


def _tile(image: ImageLike, thumb_hw: tuple[int, int], border: int, color: tuple[int, int, int]) -> Image.Image:
    """The image letterboxed into thumb_hw (aspect kept), framed by a ``border``-pixel border."""
    hgt, wid = thumb_hw
    thumb = ImageOps.pad(as_rgb_image(image), (wid, hgt), color=_BACKGROUND)
    return ImageOps.expand(thumb, border=border, fill=color)


def ranked_list(
    query_image: ImageLike,
    gallery_images: Sequence[ImageLike],
    *,
    distances: Sequence[float] | np.ndarray | None = None,
    ranked_indices: Sequence[int] | np.ndarray | None = None,
    query_id: Any = None,
    gallery_ids: Sequence[Any] | np.ndarray | None = None,
    k: int = 10,
    thumb_size: tuple[int, int] = (96, 128),
    border: int = 5,
    save: str | os.PathLike | None = None,
) -> Image.Image:
    """Draw a query and its top-k gallery images in one row.

    The ranking comes from ``distances`` (smaller is closer; ties keep gallery order), or from
    ``ranked_indices``, or, with neither, is the gallery's own order. With ``query_id`` and
    ``gallery_ids``, each gallery image gets a green border (:data:`MATCH_COLOR`) when its id
    equals the query's and red (:data:`MISMATCH_COLOR`) otherwise; without ids, grey. The query
    has a blue border. Under each image: rank and id, and the distance when given. Only the k
    shown gallery images are loaded, so ``gallery_images`` may be a long list of paths.

    Layout: images are letterboxed (aspect kept) into ``thumb_size`` and framed; the picture is
    ``16 + (k + 1) * (W + 2 * border) + (k - 1) * 6 + 24`` pixels wide and
    ``16 + H + 2 * border + 32`` high, with k capped at the gallery size.

    Args:
        query_image: path, PIL image or (H, W, 3) uint8 array.
        gallery_images: the gallery, same kinds, in the order ``distances`` / ``ids`` index.
        distances: (num_gallery,) distances from the query, e.g. one row of a distance matrix.
        ranked_indices: gallery indices, best first (at least k of them).
        query_id: the query's identity.
        gallery_ids: (num_gallery,) identities.
        k: gallery images to show.
        thumb_size: (H, W) of each thumbnail; the default is the 3:4 of the model input.
        border: border width.
        save: also write the picture to this file (format from the extension).

    Returns:
        The RGB picture.

    >>> gallery = [np.full((30, 40, 3), v, np.uint8) for v in (0, 120, 240)]
    >>> ranked_list(gallery[1], gallery, distances=[0.3, 0.1, 0.2], query_id=7,
    ...             gallery_ids=[7, 8, 7], k=2).size
    (460, 154)
    """
    if distances is not None and ranked_indices is not None:
        raise ValueError("give distances or ranked_indices, not both")
    num_gallery = len(gallery_images)
    if distances is not None:
        distances = np.asarray(distances, dtype=np.float64).reshape(-1)
        if len(distances) != num_gallery:
            raise ValueError(f"{len(distances)} distances for {num_gallery} gallery images")
        order = np.argsort(distances, kind="stable")
    elif ranked_indices is not None:
        order = np.asarray(ranked_indices, dtype=np.int64).reshape(-1)
        if len(order) and (order.min() < 0 or order.max() >= num_gallery):
            raise ValueError(f"ranked_indices must lie in [0, {num_gallery}), got {order.min()}..{order.max()}")
    else:
        order = np.arange(num_gallery)
    if gallery_ids is not None and len(gallery_ids) != num_gallery:
        raise ValueError(f"{len(gallery_ids)} gallery_ids for {num_gallery} gallery images")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k = min(k, len(order))
    if k == 0:
        raise ValueError("the gallery is empty: nothing to rank")
    if border < 0 or min(thumb_size) < 1:
        raise ValueError(f"need border >= 0 and a positive thumb_size, got {border}, {thumb_size}")

    hgt, wid = thumb_size
    tile_w, tile_h = wid + 2 * border, hgt + 2 * border
    width = 2 * _PAD + (k + 1) * tile_w + (k - 1) * _GAP + _SEP
    height = 2 * _PAD + tile_h + _LABEL_H
    canvas = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = _font(_FONT)
    label_y = _PAD + tile_h + 3

    canvas.paste(_tile(query_image, thumb_size, border, QUERY_COLOR), (_PAD, _PAD))
    _text_centered(draw, _PAD + tile_w / 2, label_y, "query", font)
    if query_id is not None:
        _text_centered(draw, _PAD + tile_w / 2, label_y + _FONT + 3, f"id {query_id}", font)
    # A thin rule between query and results, so the query is never read as rank 0.
    rule_x = _PAD + tile_w + _SEP // 2
    draw.line([(rule_x, _PAD), (rule_x, _PAD + tile_h)], fill=UNKNOWN_COLOR, width=1)

    known = query_id is not None and gallery_ids is not None
    for rank, index in enumerate(order[:k].tolist()):
        if known:
            color = MATCH_COLOR if gallery_ids[index] == query_id else MISMATCH_COLOR
        else:
            color = UNKNOWN_COLOR
        x = _PAD + tile_w + _SEP + rank * (tile_w + _GAP)
        canvas.paste(_tile(gallery_images[index], thumb_size, border, color), (x, _PAD))
        first = f"#{rank + 1}" + (f" id {gallery_ids[index]}" if gallery_ids is not None else "")
        _text_centered(draw, x + tile_w / 2, label_y, first, font)
        if distances is not None:
            _text_centered(draw, x + tile_w / 2, label_y + _FONT + 3, f"d {distances[index]:.3f}", font)
    if save is not None:
        canvas.save(save)
    return canvas


def _fnc_attention_modules(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    from .models import CAB, SAB

    spatial = getattr(getattr(model, "spatial", None), "attention", None)
    channel = getattr(getattr(model, "channel", None), "attention", None)
    if not (isinstance(spatial, SAB) and isinstance(channel, CAB)):
        raise TypeError(
            f"attention_map needs an FNC model (fnc_*, with a SAB in model.spatial and a CAB in "
            f"model.channel); {type(model).__name__} has no attention blocks to show"
        )
    return spatial, channel


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
    sab, cab = _fnc_attention_modules(model)
    if channel not in ("masked", "mask"):
        raise ValueError(f"channel must be 'masked' or 'mask', got {channel!r}")
    hgt, wid = _hw(input_size if input_size is not None else model_cfg(model).input_size)
    rgb = as_rgb_image(image)
    shown = rgb.resize((wid, hgt), Image.BILINEAR)
    device, dtype = _model_device_dtype(model)
    x = build_eval_transform(model, (hgt, wid))(rgb).unsqueeze(0).to(device=device, dtype=dtype)

    was_training = model.training
    model.eval()
    try:
        if hasattr(model, "check_input"):
            model.check_input(x)  # the backbone alone fails on a too-small size, cryptically
        with torch.inference_mode():
            trunk = model.backbone(x)
            # The attention blocks' own inputs: each branch's layer4 output (empty stages when
            # res4 is shared, in which case the trunk already ran layer4).
            s_in = model.spatial.layer4(model.spatial.layer3(trunk))
            c_in = model.channel.layer4(model.channel.layer3(trunk))
            grid_h, grid_w = s_in.shape[-2:]
            if position is None:
                flat = int(s_in[0].mean(0).flatten().argmax())
                position = (flat // grid_w, flat % grid_w)
            row, col = (int(p) for p in position)
            if not (0 <= row < grid_h and 0 <= col < grid_w):
                raise ValueError(f"position {tuple(position)} is off the {grid_h} x {grid_w} layer4 grid (row, col)")
            attn = sab.attention_map(s_in)[0, row * grid_w + col].reshape(grid_h, grid_w)
            mask = cab.channel_mask(c_in)
            energy = (mask * c_in if channel == "masked" else mask)[0].mean(0)
    finally:
        model.train(was_training)

    sab_panel, a_lo, a_hi = _heat_overlay(shown, attn, alpha)
    cab_panel, c_lo, c_hi = _heat_overlay(shown, energy, alpha)
    # Ring at the centre of the chosen cell, black inside white so it reads on any colour.
    cy, cx = (row + 0.5) * hgt / grid_h, (col + 0.5) * wid / grid_w
    radius = max(4.0, 0.5 * min(hgt / grid_h, wid / grid_w))
    ring = ImageDraw.Draw(sab_panel)
    ring.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], outline=(255, 255, 255), width=3)
    ring.ellipse([cx - radius + 2, cy - radius + 2, cx + radius - 2, cy + radius - 2], outline=(0, 0, 0), width=1)

    pad, title_h, bar_h = 8, 22, 18
    canvas = Image.new("RGB", (3 * wid + 4 * pad, hgt + title_h + bar_h + 2 * pad), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = _font(12)
    titles = [
        f"input {hgt}x{wid}",
        f"SAB attention of ({row}, {col}) [{a_lo:.2g}, {a_hi:.2g}]",
        f"CAB {'mask x features' if channel == 'masked' else 'mask'} energy [{c_lo:.2g}, {c_hi:.2g}]",
    ]
    for i, (panel, title) in enumerate(zip((shown, sab_panel, cab_panel), titles)):
        left = pad + i * (wid + pad)
        canvas.paste(panel, (left, pad + title_h))
        _text_centered(draw, left + wid / 2, pad + 3, title, font)
    # Colour bar under the two heat maps: the scale both share after min-max scaling.
    bar_left = 2 * pad + wid + 32
    bar_w = max(2 * wid + pad - 64, 8)
    bar_top = pad + title_h + hgt + 4
    ramp = colormap(np.linspace(0.0, 1.0, bar_w))[None].repeat(6, axis=0)
    canvas.paste(Image.fromarray(ramp), (bar_left, bar_top))
    draw.text((bar_left - 26, bar_top - 4), "low", fill=_TEXT, font=font)
    draw.text((bar_left + bar_w + 4, bar_top - 4), "high", fill=_TEXT, font=font)
    if save is not None:
        canvas.save(save)
    return canvas
