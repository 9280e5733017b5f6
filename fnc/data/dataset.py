"""``ImageDataset``: a torch Dataset over re-ID records that loads images and reports corrupt files."""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from fnc.data.records import Record

__all__ = ["CorruptImageError", "ImageDataset", "load_image", "to_rgb"]

logger = logging.getLogger(__name__)


class CorruptImageError(OSError):
    """An image file exists but cannot be decoded."""


#: PIL modes of 16-bit (and 32-bit integer) single-channel images: PNG's 16-bit grey opens as
#: ``I;16`` (or ``I`` in older Pillow), TIFF's as ``I;16`` / ``I;16B``.
_WIDE_GREY = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_WIDE_MAX = 65535


def to_rgb(image: Image.Image) -> Image.Image:
    """An image of any PIL mode as 8-bit RGB, read at its real bit depth.

    16-bit grey (``I;16``, ``I;16B``, ``I``) is scaled from 0..65535 to 0..255; PIL's own
    ``convert("RGB")`` would clip it instead, turning a full-range 16-bit picture almost white.
    (``I`` holds 32-bit integers; values beyond 16 bits are clipped.) RGBA is converted by dropping
    alpha, not by compositing on a background: re-ID crops with transparency are rare and have no
    agreed background. Grey, palette and CMYK go through ``convert("RGB")``.

    Args:
        image: a PIL image.

    Returns:
        An RGB PIL image (``image`` itself if it already is one).

    >>> grey16 = Image.fromarray(np.full((2, 2), 65535, np.uint16))
    >>> to_rgb(grey16).getpixel((0, 0))
    (255, 255, 255)
    """
    if image.mode == "RGB":
        return image
    if image.mode in _WIDE_GREY:
        wide = np.asarray(image).astype(np.float64)
        eight = np.clip(np.rint(wide * (255 / _WIDE_MAX)), 0, 255).astype(np.uint8)
        return Image.fromarray(eight).convert("RGB")
    return image.convert("RGB")


def load_image(path: str) -> Image.Image:
    """Open an image fully and convert it to RGB at its real bit depth (see :func:`to_rgb`).

    Grey, 16-bit grey, palette, RGBA and CMYK files included.

    Args:
        path: the image file.

    Returns:
        An RGB PIL image.

    Raises:
        FileNotFoundError: the file does not exist.
        CorruptImageError: the file cannot be decoded (truncated, not an image, ...); the message
            names the file (callers that can skip such files add how).

    >>> load_image("0002_c002_00030600_0.jpg").mode  # doctest: +SKIP
    'RGB'
    """
    try:
        with Image.open(path) as img:
            # load() forces a full decode, so truncated files fail here and not in a worker later.
            img.load()
            return to_rgb(img) if img.mode != "RGB" else img.copy()
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise CorruptImageError(f"cannot read image {path}: {e}. Remove or replace the file") from e


class ImageDataset(Dataset):
    """Map-style dataset returning ``(image, pid, camid)`` for each record.

    With ``skip_corrupt=True`` an undecodable image is replaced by the next readable image of the
    same identity (so a P x K batch keeps its identities), or of any identity if none is left;
    every skip is logged as a warning naming the file and counted in ``skipped`` (per process:
    each DataLoader worker keeps its own count and logs its own warnings).

    An item may be asked for as ``ds[i]`` or, as :class:`~fnc.data.PKSampler` with ``seeded=True``
    yields them, ``ds[(i, seed)]``: the transform then draws its randomness (flip, crop, erasing)
    from torch and Python RNGs seeded with ``seed`` and restores them afterwards, so an image's
    augmentation does not depend on which DataLoader worker (or the main process) loads it.

    Args:
        records: the records to load (e.g. ``ReIDDataset.train``).
        transform: applied to the RGB PIL image, e.g. :func:`~fnc.data.build_transforms`;
            ``None`` returns the PIL image.
        skip_corrupt: replace corrupt images instead of raising :class:`CorruptImageError`.

    Shape:
        item: ``(image (3, H, W), pid, camid)`` with a tensor-producing transform.

    >>> ds = ImageDataset(dataset.train, build_transforms())  # doctest: +SKIP
    >>> image, pid, camid = ds[0]  # doctest: +SKIP
    """

    def __init__(
        self,
        records: Sequence[Record],
        transform: Callable[[Image.Image], Any] | None = None,
        skip_corrupt: bool = False,
    ) -> None:
        self.records = [Record(*r) for r in records]
        self.transform = transform
        self.skip_corrupt = skip_corrupt
        self.skipped: set[str] = set()
        self._by_pid: dict[int, list[int]] = defaultdict(list)
        for i, r in enumerate(self.records):
            self._by_pid[r.pid].append(i)

    def __len__(self) -> int:
        return len(self.records)

    def _candidates(self, index: int) -> Iterator[int]:
        """Indices to try in order: the record itself, its identity's others, then everything else."""
        pid = self.records[index].pid
        same = self._by_pid[pid]
        pos = same.index(index)
        yield from same[pos:] + same[:pos]
        n = len(self.records)
        # Lazily, since the whole dataset is only walked when an identity has no readable image.
        for k in range(1, n):
            j = (index + k) % n
            if self.records[j].pid != pid:
                yield j

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[Any, int, int]:
        if isinstance(index, tuple):
            # (index, seed) from PKSampler(seeded=True): this image's augmentation is drawn from its
            # own seed, whichever process loads it, and the process's RNG streams are left as they were.
            index, seed = index
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                state = random.getstate()
                random.seed(seed)
                try:
                    return self._load(index)
                finally:
                    random.setstate(state)
        return self._load(index)

    def _load(self, index: int) -> tuple[Any, int, int]:
        record = self.records[index]
        if not self.skip_corrupt:
            try:
                image = load_image(record.path)
            except CorruptImageError as e:
                raise CorruptImageError(
                    f"{e}, or pass skip_corrupt=True (ImageDataset, TrainConfig; fnc-reid train --skip-corrupt) "
                    "to substitute another image of the same identity"
                ) from e
        else:
            image = None
            for candidate in self._candidates(index):
                path = self.records[candidate].path
                if path in self.skipped:
                    continue
                try:
                    image = load_image(path)
                except CorruptImageError as e:
                    self.skipped.add(path)
                    logger.warning("skipping corrupt image (%d skipped so far): %s", len(self.skipped), e)
                    continue
                if candidate != index:
                    logger.warning("using %s in place of corrupt %s", path, record.path)
                record = self.records[candidate]
                break
            if image is None:
                raise CorruptImageError(f"no readable image among the {len(self.records)} records")
        if self.transform is not None:
            image = self.transform(image)
        return image, record.pid, record.camid
