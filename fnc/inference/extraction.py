"""Feature extraction: images in, one re-ID embedding per image out.

``extract`` turns paths, a folder, PIL images, numpy arrays or preprocessed tensors into an
(N, D) float32 array, preprocessing them as the model's ``pretrained_cfg`` says (resize to its
H x W, scale to [0, 1], normalise with its mean / std: :func:`fnc.inference.resolve_data_config`). Retrieval then compares rows, e.g. by Euclidean or cosine distance.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from fnc.data.constants import IMAGE_EXTENSIONS
from fnc.data.dataset import CorruptImageError
from fnc.inference.images import ImageLike, as_rgb_image, list_images
from fnc.inference.preprocess import _model_device_dtype, build_eval_transform, resolve_data_config

__all__ = ["extract"]

logger = logging.getLogger(__name__)


class _ImageListDataset(Dataset):
    """Preprocessed images of a list of ImageLike items (loaded lazily, in workers if any), each
    with a flag that says whether it could be read (always True unless ``skip_corrupt``)."""

    def __init__(
        self,
        items: Sequence[ImageLike],
        transform: Callable[[Image.Image], torch.Tensor],
        hw: tuple[int, int],
        skip_corrupt: bool = False,
    ) -> None:
        self.items = items
        self.transform = transform
        self.hw = hw
        self.skip_corrupt = skip_corrupt

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, bool]:
        item = self.items[index]
        try:
            return self.transform(as_rgb_image(item)), True
        except CorruptImageError as e:
            if not self.skip_corrupt:
                # The reader's hint is the training one; here the option is extract's own.
                raise CorruptImageError(
                    f"cannot read image {os.fspath(item)}: {e.__cause__ or e}. Remove or replace the file, or "
                    "pass skip_corrupt=True (fnc-reid extract --skip-corrupt) to give it a row of NaN"
                ) from e.__cause__
            logger.warning("skipped unreadable image %s (its row is NaN): %s", os.fspath(item), e.__cause__ or e)
            return torch.zeros(3, *self.hw), False


def _as_items(images: Any) -> list[ImageLike]:
    """The list of single images behind any accepted ``images`` argument (not tensors)."""
    if isinstance(images, (str, os.PathLike)):
        if os.path.isdir(images):
            items = list_images(images)
            if not items:
                raise ValueError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) under {os.fspath(images)}")
            return items
        images = [images]
    if isinstance(images, Image.Image):
        return [images]
    if isinstance(images, np.ndarray):
        # (N, H, W, 3) is a stack; (H, W, 3) and (H, W) are one image.
        return list(images) if images.ndim == 4 else [images]
    if isinstance(images, Sequence):
        items = list(images)
        missing = [os.fspath(p) for p in items if isinstance(p, (str, os.PathLike)) and not os.path.isfile(p)]
        if missing:
            # Checked up front so a typo fails before minutes of extraction, not in the middle.
            more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
            raise FileNotFoundError(f"{len(missing)} image file(s) not found: {missing[:3]}{more}")
        return items
    raise TypeError(
        "images must be a folder, a path, a list of paths / PIL images / uint8 arrays, an "
        f"(N, H, W, 3) uint8 array or an (N, 3, H, W) float tensor; got {type(images).__name__}"
    )


def extract(
    model: nn.Module,
    images: Any,
    *,
    batch_size: int = 32,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    normalize: bool = False,
    input_size: Sequence[int] | None = None,
    progress: bool = True,
    skip_corrupt: bool = False,
) -> np.ndarray:
    """Embed images with a re-ID model: one row per image, in input order.

    Accepted ``images``:

    - a folder: every image file under it, recursively, in :func:`list_images` order (call
      ``list_images(folder)`` to know which row is which file);
    - a path, or a list of paths, PIL images and (H, W, 3) uint8 RGB arrays (mixed is fine);
    - an (N, H, W, 3) uint8 numpy array;
    - an (N, 3, H, W) float tensor, taken as already preprocessed: no resizing or
      normalisation, only batching and moving to ``device``.

    Everything but tensors is preprocessed with :func:`build_eval_transform` (the model's
    ``pretrained_cfg``: resize to H x W, to [0, 1], normalise). Images are loaded and
    preprocessed by a DataLoader with ``num_workers`` worker processes; 0 (the default) loads in
    this process, which is simplest and enough when the model, not decoding, is the bottleneck
    (CPU inference); on a GPU, 4-8 workers keep it fed. The model runs in eval mode under
    ``torch.inference_mode``; its previous train / eval mode is restored afterwards.

    Args:
        model: a fnc-reid model (any module whose eval forward maps (B, 3, H, W) to (B, D)).
        images: see above.
        batch_size: images per forward pass.
        num_workers: DataLoader worker processes for loading and preprocessing.
        device: where to run; ``None`` = the device of the model's parameters. The model is
            not moved: pass a device it is on (``model.to(device)`` first).
        normalize: L2-normalise each row (cosine distance = 1 - dot product).
        input_size: (H, W) overriding the config's input size.
        progress: show a tqdm progress bar over batches.
        skip_corrupt: an image file that cannot be decoded gets a row of NaN (logged as a
            warning naming the file) instead of raising, so row i stays image i; drop those
            rows with ``feats[~np.isnan(feats).any(1)]`` (``fnc-reid extract --skip-corrupt``
            leaves them and their paths out of its files).

    Returns:
        (N, D) float32 array, row i the embedding of image i (``D = model.embed_dim``).

    Raises:
        FileNotFoundError: paths that do not exist (all checked before extraction starts).
        fnc.data.CorruptImageError: an image file that cannot be decoded (without
            ``skip_corrupt``); names the file.
        ValueError, TypeError: inputs that are not images, or a tensor that is not (N, 3, H, W).

    >>> import fnc
    >>> model = fnc.create_model("baseline_resnet50")
    >>> images = np.zeros((2, 60, 80, 3), np.uint8)
    >>> fnc.extract(model, images, input_size=(64, 64), progress=False).shape
    (2, 2048)
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    param_device, dtype = _model_device_dtype(model)
    device = param_device if device is None else torch.device(device)

    if isinstance(images, torch.Tensor):
        if images.ndim != 4 or not images.is_floating_point():
            raise ValueError(
                f"a tensor input must be a preprocessed (N, 3, H, W) float batch, got {images.dtype} "
                f"{tuple(images.shape)}; pass PIL images or uint8 arrays to have them preprocessed"
            )
        batches: Any = [(b, None) for b in images.split(batch_size)]
        total = len(batches)
    else:
        hw = resolve_data_config(model, input_size).hw
        dataset = _ImageListDataset(_as_items(images), build_eval_transform(model, input_size), hw, skip_corrupt)
        batches = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=False,
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
        )
        total = len(batches)

    embed_dim = getattr(model, "embed_dim", None)
    chunks: list[np.ndarray] = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch, readable in tqdm(batches, total=total, desc="extract", unit="batch", disable=not progress):
                feats = model(batch.to(device=device, dtype=dtype, non_blocking=True)).float()
                if normalize:
                    feats = F.normalize(feats, dim=1)
                if readable is not None and not bool(readable.all()):
                    feats[~readable.to(feats.device)] = float("nan")
                chunks.append(feats.cpu().numpy())
    finally:
        model.train(was_training)
    if not chunks:
        return np.empty((0, embed_dim or 0), np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)
