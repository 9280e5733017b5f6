"""fnc-reid models as the appearance model of boxmot's trackers.

boxmot's appearance trackers accept any object with ``get_features(boxes, image)`` as
``reid_model``; :class:`AppearanceModel` is that object for a fnc-reid model::

    from boxmot import BotSort
    from fnc.integrations.boxmot import AppearanceModel

    reid = AppearanceModel("runs/veri/best", device="cuda")  # a fnc-reid train folder, or "hf-hub:org/repo"
    tracker = BotSort(reid_model=reid)
    tracks = tracker.update(detections, frame_bgr)  # detections: (N, 6) x1, y1, x2, y2, conf, cls

This module never imports boxmot: it only implements the one method boxmot calls (boxmot is
AGPL-3.0; fnc-reid is Apache-2.0 and does not depend on it). Install boxmot yourself to track.

What boxmot 25 calls on ``reid_model``: only ``get_features(geometry, image)``, with
``geometry`` the (N, 4) float32 ``x1, y1, x2, y2`` boxes of the detections that need an
embedding (never called with N = 0) and ``image`` the frame as an (H, W, 3) uint8 BGR array.
The tracker checks ``callable(reid_model.get_features)`` at construction, and on each result
checks shape (N, D), finite values and non-zero norms, then L2-normalises the rows itself.
Nothing else (no ``warmup``, ``model``, ``device`` or ``half`` attribute) is read from an
injected model.

Trackers that accept ``reid_model`` (boxmot 25): ``BotSort``, ``StrongSort``, ``DeepOcSort``,
``HybridSort``, ``OccluBoost`` (embeddings on by default) and ``BoostTrack`` (pass
``use_embeddings=True``; its default is off). ``ByteTrack``, ``OcSort`` and ``SFSORT`` use no
appearance and refuse the argument. Leave the tracker's own ``device`` / ``half`` /
``reid_weights`` / ``reid_preprocess`` at their defaults: boxmot refuses them together with
``reid_model``; the device is chosen here, with ``AppearanceModel(..., device="cuda")``.
Construct the tracker class itself: ``boxmot.create_tracker(TrackerSpec(...))`` takes
algorithm options only and refuses ``reid_model``. The C++ variants (``NativeBotSortTracker``,
``NativeOccluBoostTracker``) take ``reid_model`` through the same code path, but need a local
CMake build of boxmot's native code and are not covered by fnc-reid's tests.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..inference.preprocess import build_eval_transform
from ..models import create_model

__all__ = ["AppearanceModel"]

logger = logging.getLogger(__name__)

# Row layouts whose first four columns are x1, y1, x2, y2: boxes, boxmot's detection rows
# (+ conf, cls) and its track rows (+ conf, cls, det_ind, id); 5 / 7 / 9 columns are oriented boxes.
_AABB_COLUMNS = (4, 6, 8)


def _preprocessing(model: nn.Module) -> Callable[[np.ndarray], torch.Tensor]:
    """The model's evaluation preprocessing (:func:`fnc.inference.build_eval_transform`) on one RGB crop.

    Maps an (h, w, 3) uint8 RGB array to a (3, H, W) float32 tensor, exactly as ``extract``
    prepares an image file (a PIL image, so PIL does the resize as it does for files).
    """
    transform = build_eval_transform(model)
    return lambda crop: transform(Image.fromarray(crop))


class AppearanceModel:
    """A fnc-reid model as boxmot's ``reid_model``: one L2-normalised embedding per box.

    Pass it to a boxmot tracker: ``BotSort(reid_model=AppearanceModel(...))``; the module
    docstring lists the trackers that take it. Each frame the tracker calls
    :meth:`get_features` with the boxes that need an embedding.

    Args:
        model_or_name: a fnc-reid model (any module whose eval forward maps (B, 3, H, W) to
            (B, D), with a ``pretrained_cfg``), or what :func:`fnc.models.create_model` takes:
            a model name (``arch[.tag]``), an ``"hf-hub:org/repo"`` id, or a folder written by
            ``save_pretrained`` / ``fnc-reid train``.
        device: where the model runs; the model is moved there. ``None`` keeps the model
            where it is (the device of its parameters).
        batch_size: crops per forward pass.
        **create_kwargs: forwarded to ``create_model`` when ``model_or_name`` is not a model,
            e.g. ``pretrained=True`` (a bare name otherwise builds random weights).

    Attributes:
        model: the wrapped module (run in eval mode; its train / eval mode is restored after
            each call).
        device: the torch device crops are sent to.
        batch_size: crops per forward pass.
        input_size: (H, W) crops are resized to, from ``model.pretrained_cfg``.

    Raises:
        TypeError: ``model_or_name`` is neither a module nor a str / path, or ``create_kwargs``
            were given with a module.
        ValueError: ``batch_size`` < 1, or a ``pretrained_cfg`` with an unusable input size or
            interpolation.

    >>> import fnc, numpy as np
    >>> reid = AppearanceModel(fnc.create_model("baseline_resnet50"))
    >>> frame = np.zeros((240, 320, 3), np.uint8)
    >>> reid.get_features(np.array([[10, 20, 110, 90]]), frame).shape
    (1, 2048)
    """

    def __init__(
        self,
        model_or_name: nn.Module | str | os.PathLike,
        device: str | torch.device | None = None,
        batch_size: int = 32,
        **create_kwargs: Any,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if isinstance(model_or_name, nn.Module):
            if create_kwargs:
                raise TypeError(
                    f"create_model arguments {sorted(create_kwargs)} given with an already built model; "
                    "pass a model name instead, or build the model with them first"
                )
            model = model_or_name
        elif isinstance(model_or_name, (str, os.PathLike)):
            source = os.fspath(model_or_name)
            if os.path.isdir(source):
                model = create_model(checkpoint_path=source, **create_kwargs)
            else:
                if not source.startswith("hf-hub:") and not create_kwargs.get("pretrained", False):
                    logger.warning(
                        "AppearanceModel(%r) has random weights, so appearance matching is noise; "
                        "pass a trained checkpoint folder, an 'hf-hub:' id, or pretrained=True",
                        source,
                    )
                model = create_model(source, **create_kwargs)
        else:
            raise TypeError(
                "model_or_name must be a fnc-reid model, a model name, an 'hf-hub:org/repo' id or a "
                f"checkpoint folder, got {type(model_or_name).__name__}"
            )
        param = next(model.parameters(), None)
        if device is not None:
            model = model.to(device)
            self.device = torch.device(device)
        else:
            self.device = param.device if param is not None else torch.device("cpu")
        self._dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        self.model = model
        self.batch_size = int(batch_size)
        self._transform = _preprocessing(model)
        # Read back from the transform so the config has one reader.
        self.input_size: tuple[int, int] = tuple(self._transform(np.zeros((1, 1, 3), np.uint8)).shape[1:])

    def __repr__(self) -> str:
        name = getattr(getattr(self.model, "pretrained_cfg", None), "name", "") or type(self.model).__name__
        return (
            f"{type(self).__name__}({name!r}, device={str(self.device)!r}, batch_size={self.batch_size}, "
            f"input_size={self.input_size})"
        )

    def _crops(self, xyxy: Any, img_bgr: np.ndarray) -> list[np.ndarray]:
        """The RGB crop of each box, clipped to the frame (validation lives here)."""
        if (
            not isinstance(img_bgr, np.ndarray)
            or img_bgr.dtype != np.uint8
            or img_bgr.ndim != 3
            or img_bgr.shape[2] != 3
        ):
            described = (
                f"{img_bgr.dtype} array of shape {img_bgr.shape}"
                if isinstance(img_bgr, np.ndarray)
                else type(img_bgr).__name__
            )
            raise ValueError(f"img_bgr must be an (H, W, 3) uint8 BGR array (an OpenCV frame), got {described}")
        boxes = np.asarray(xyxy, dtype=np.float64)
        if boxes.ndim == 1:
            boxes = boxes.reshape(-1, 4) if boxes.size == 0 else boxes.reshape(1, -1)
        if boxes.ndim != 2 or boxes.shape[1] not in _AABB_COLUMNS:
            raise ValueError(
                f"xyxy must be (N, 4) boxes x1, y1, x2, y2 (or boxmot's (N, 6) / (N, 8) rows, whose first "
                f"four columns are the box), got shape {boxes.shape}; oriented boxes (5 / 7 / 9 columns) "
                "are not supported"
            )
        boxes = boxes[:, :4]
        if not np.isfinite(boxes).all():
            bad = int(np.flatnonzero(~np.isfinite(boxes).all(axis=1))[0])
            raise ValueError(f"box {bad} has non-finite coordinates: {boxes[bad].tolist()}")
        inverted = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
        if inverted.any():
            bad = int(np.flatnonzero(inverted)[0])
            raise ValueError(
                f"box {bad} = {boxes[bad].tolist()} has x2 < x1 or y2 < y1; boxes must be x1, y1, x2, y2 "
                "(convert x, y, w, h boxes with x2 = x + w, y2 = y + h)"
            )
        height, width = img_bgr.shape[:2]
        # Pixel edges rounded and clipped as boxmot's own ReID backends do, so a tracker tuned
        # with those sees the same crops. A box with no pixels inside the frame becomes a black
        # crop of the input size (also boxmot's choice): the tracker needs one row per box, and
        # stopping a video on a detector's edge case would be worse than one uninformative row.
        corners = np.rint(boxes).astype(np.int64)
        x1, x2 = np.clip(corners[:, 0], 0, width), np.clip(corners[:, 2], 0, width)
        y1, y2 = np.clip(corners[:, 1], 0, height), np.clip(corners[:, 3], 0, height)
        crops = []
        for i in range(len(boxes)):
            if x2[i] > x1[i] and y2[i] > y1[i]:
                crops.append(np.ascontiguousarray(img_bgr[y1[i] : y2[i], x1[i] : x2[i], ::-1]))
            else:
                crops.append(np.zeros((*self.input_size, 3), np.uint8))
        return crops

    def get_features(self, xyxy: Any, img_bgr: np.ndarray) -> np.ndarray:
        """Embed the box crops of one frame: what boxmot's trackers call each frame.

        Each box is rounded to whole pixels and clipped to the frame; the crop is converted
        BGR -> RGB, resized to :attr:`input_size` and normalised as ``model.pretrained_cfg``
        says (for a bilinear config, exactly :func:`fnc.inference.extract` on the crop), then
        embedded in batches of :attr:`batch_size` under ``torch.inference_mode``. A box with no
        pixel inside the frame still gets a row, from a black crop.

        Args:
            xyxy: (N, 4) boxes ``x1, y1, x2, y2`` in pixels (boxmot's (N, 6) detection rows
                ``x1, y1, x2, y2, conf, cls`` also work), any real dtype.
            img_bgr: the frame, an (H, W, 3) uint8 BGR array as OpenCV reads it.

        Returns:
            (N, D) float32, row i the L2-normalised embedding of box i; (0, D) for no boxes.

        Raises:
            ValueError: a frame that is not (H, W, 3) uint8, boxes of another shape, with
                non-finite coordinates, or with x2 < x1 / y2 < y1 (the message names the box).

        >>> import fnc, numpy as np
        >>> reid = AppearanceModel(fnc.create_model("baseline_resnet50"))
        >>> feats = reid.get_features([[0, 0, 50, 40], [300, 200, 400, 260]], np.zeros((240, 320, 3), np.uint8))
        >>> feats.shape, feats.dtype
        ((2, 2048), dtype('float32'))
        """
        crops = self._crops(xyxy, img_bgr)
        if not crops:
            return np.empty((0, int(getattr(self.model, "embed_dim", 0) or 0)), np.float32)
        chunks: list[np.ndarray] = []
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                for start in range(0, len(crops), self.batch_size):
                    batch = torch.stack([self._transform(c) for c in crops[start : start + self.batch_size]])
                    feats = self.model(batch.to(device=self.device, dtype=self._dtype, non_blocking=True))
                    chunks.append(F.normalize(feats.float(), dim=1).cpu().numpy())
        finally:
            self.model.train(was_training)
        return np.concatenate(chunks).astype(np.float32, copy=False)
