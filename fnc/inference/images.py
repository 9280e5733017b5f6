"""Image inputs: what counts as one image, and which files of a folder are images.

One list of image file types (:data:`fnc.data.constants.IMAGE_EXTENSIONS`) serves these helpers
and the dataset readers alike.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from fnc.data.constants import IMAGE_EXTENSIONS
from fnc.data.dataset import load_image, to_rgb

__all__ = ["ImageLike", "as_rgb_image", "list_images"]


#: One image: a file path, a PIL image, or an (H, W, 3) / (H, W) uint8 numpy array.
ImageLike = str | os.PathLike | Image.Image | np.ndarray


def list_images(folder: str | os.PathLike) -> list[str]:
    """Image files under ``folder``, recursively, in the order :func:`fnc.inference.extract` reads a folder.

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
        image: a file path (read with :func:`fnc.data.load_image`), a PIL image (any mode, 16-bit
            grey scaled to 8 bits by :func:`fnc.data.dataset.to_rgb`), or a
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
        return to_rgb(image)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
            raise ValueError(
                f"expected a uint8 array of shape (H, W, 3) (RGB) or (H, W), got {image.dtype} "
                f"{image.shape}; for float data pass a preprocessed torch tensor (N, 3, H, W) instead"
            )
        return to_rgb(Image.fromarray(image))
    raise TypeError(f"expected an image path, PIL image or uint8 numpy array, got {type(image).__name__}")
