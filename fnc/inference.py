"""Feature extraction: images in, one re-ID embedding per image out.

``extract`` turns paths, a folder, PIL images, numpy arrays or preprocessed tensors into an
(N, D) float32 array, preprocessing them as the model's ``pretrained_cfg`` says (resize to its
H x W, scale to [0, 1], normalise with its mean / std; :func:`fnc.data.build_transforms` with
``train=False``). Retrieval then compares rows, e.g. by Euclidean or cosine distance.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .data import build_transforms, load_image
from .data.constants import IMAGE_EXTENSIONS
from .models import PretrainedCfg

__all__ = ["IMAGE_EXTENSIONS", "ImageLike", "as_rgb_image", "build_eval_transform", "extract", "list_images"]

logger = logging.getLogger(__name__)


#: One image: a file path, a PIL image, or an (H, W, 3) / (H, W) uint8 numpy array.
ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray]


def list_images(folder: str | os.PathLike) -> list[str]:
    """Image files under ``folder``, recursively, in the order :func:`extract` reads a folder.

    The order is the sorted list of paths relative to ``folder`` (plain string sort, so
    ``a/1.jpg`` < ``a/10.jpg`` < ``a/2.jpg`` < ``b.jpg``); hidden files and folders (a name
    starting with ``.``) are skipped. Row ``i`` of ``extract(model, folder)`` is ``list_images(folder)[i]``.

    Args:
        folder: the folder to walk.

    Returns:
        The image paths, each ``os.path.join(folder, relative_path)``.

    Raises:
        NotADirectoryError: ``folder`` is not a folder.

    >>> list_images("VeRi/image_query")[:2]  # doctest: +SKIP
    ['VeRi/image_query/0002_c002_00030600_0.jpg', 'VeRi/image_query/0002_c003_00084280_0.jpg']
    """
    root = os.fspath(folder)
    if not os.path.isdir(root):
        raise NotADirectoryError(f"not a folder: {root}")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(os.path.relpath(os.path.join(dirpath, name), root))
    return [os.path.join(root, rel) for rel in sorted(found)]


def as_rgb_image(image: ImageLike) -> Image.Image:
    """One image as an RGB PIL image.

    Args:
        image: a file path (read with :func:`fnc.data.load_image`), a PIL image (any mode), or a
            uint8 numpy array of shape (H, W, 3) (RGB) or (H, W) (grey).

    Raises:
        FileNotFoundError: a path that does not exist.
        fnc.data.CorruptImageError: a file that cannot be decoded; the message names it.
        ValueError, TypeError: an array or object that is not an image.

    >>> as_rgb_image(np.zeros((4, 6, 3), np.uint8)).size
    (6, 4)
    """
    if isinstance(image, (str, os.PathLike)):
        return load_image(os.fspath(image))
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
            raise ValueError(
                f"expected a uint8 array of shape (H, W, 3) (RGB) or (H, W), got {image.dtype} "
                f"{image.shape}; for float data pass a preprocessed torch tensor (N, 3, H, W) instead"
            )
        return Image.fromarray(image).convert("RGB")
    raise TypeError(
        f"expected an image path, PIL image or uint8 numpy array, got {type(image).__name__}"
    )


def _hw(input_size: Sequence[int]) -> tuple[int, int]:
    size = tuple(int(s) for s in input_size)
    if len(size) == 3:
        size = size[1:]
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"input_size must be (H, W) or (C, H, W), got {tuple(input_size)}")
    return size  # type: ignore[return-value]


def model_cfg(model: nn.Module) -> PretrainedCfg:
    """The model's ``pretrained_cfg``, or the defaults (288 x 384, ImageNet mean / std) if it has none."""
    cfg = getattr(model, "pretrained_cfg", None)
    if cfg is None:
        logger.info("%s has no pretrained_cfg; using 288x384 and ImageNet mean/std", type(model).__name__)
        cfg = PretrainedCfg()
    return cfg


def build_eval_transform(
    model: nn.Module, input_size: Sequence[int] | None = None
) -> Callable[[Image.Image], torch.Tensor]:
    """The evaluation preprocessing of ``model``: resize, to float in [0, 1], normalise.

    Args:
        model: a fnc-reid model; its ``pretrained_cfg`` gives the size, interpolation, mean and std.
        input_size: (H, W) (or (C, H, W)) overriding the config's size.

    Returns:
        A transform from an RGB PIL image to a (3, H, W) float32 tensor.

    >>> import fnc
    >>> t = build_eval_transform(fnc.create_model("baseline_resnet50"))
    >>> t(Image.new("RGB", (100, 50))).shape
    torch.Size([3, 288, 384])
    """
    cfg = model_cfg(model)
    size = _hw(input_size if input_size is not None else cfg.input_size)
    return build_transforms(size, cfg.mean, cfg.std, train=False, interpolation=cfg.interpolation)


class _ImageListDataset(Dataset):
    """Preprocessed images of a list of ImageLike items (loaded lazily, in workers if any)."""

    def __init__(self, items: Sequence[ImageLike], transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.items = items
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(as_rgb_image(self.items[index]))


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


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    param = next(model.parameters(), None)
    if param is None:
        return torch.device("cpu"), torch.float32
    return param.device, param.dtype


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

    Returns:
        (N, D) float32 array, row i the embedding of image i (``D = model.embed_dim``).

    Raises:
        FileNotFoundError: paths that do not exist (all checked before extraction starts).
        fnc.data.CorruptImageError: an image file that cannot be decoded; names the file.
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
        batches: Any = images.split(batch_size)
        total = len(batches)
    else:
        dataset = _ImageListDataset(_as_items(images), build_eval_transform(model, input_size))
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
            for batch in tqdm(batches, total=total, desc="extract", unit="batch", disable=not progress):
                feats = model(batch.to(device=device, dtype=dtype, non_blocking=True)).float()
                if normalize:
                    feats = F.normalize(feats, dim=1)
                chunks.append(feats.cpu().numpy())
    finally:
        model.train(was_training)
    if not chunks:
        return np.empty((0, embed_dim or 0), np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)
