"""Ranked retrieval lists: a query beside its top-k gallery matches.

Green-bordered when the id matches and red when it does not, as torchreid's
``visualize_ranked_results``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from fnc.inference.images import ImageLike
from fnc.viz._draw import (
    BACKGROUND,
    MATCH_COLOR,
    MISMATCH_COLOR,
    QUERY_COLOR,
    UNKNOWN_COLOR,
    font,
    text_centered,
    tile,
)

__all__ = ["ranked_list"]

# Layout, in pixels (documented in ranked_list's docstring).
_PAD, _GAP, _SEP, _LABEL_H, _FONT = 8, 6, 24, 32, 12


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
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    label_font = font(_FONT)
    label_y = _PAD + tile_h + 3

    canvas.paste(tile(query_image, thumb_size, border, QUERY_COLOR), (_PAD, _PAD))
    text_centered(draw, _PAD + tile_w / 2, label_y, "query", label_font)
    if query_id is not None:
        text_centered(draw, _PAD + tile_w / 2, label_y + _FONT + 3, f"id {query_id}", label_font)
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
        canvas.paste(tile(gallery_images[index], thumb_size, border, color), (x, _PAD))
        first = f"#{rank + 1}" + (f" id {gallery_ids[index]}" if gallery_ids is not None else "")
        text_centered(draw, x + tile_w / 2, label_y, first, label_font)
        if distances is not None:
            text_centered(draw, x + tile_w / 2, label_y + _FONT + 3, f"d {distances[index]:.3f}", label_font)
    if save is not None:
        canvas.save(save)
    return canvas
