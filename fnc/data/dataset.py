"""``ImageDataset``: a torch Dataset over re-ID records that loads images and reports corrupt files."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from PIL import Image
from torch.utils.data import Dataset

from fnc.data.records import Record

__all__ = ["CorruptImageError", "ImageDataset", "load_image"]

logger = logging.getLogger(__name__)


class CorruptImageError(OSError):
    """An image file exists but cannot be decoded."""


def load_image(path: str) -> Image.Image:
    """Open an image fully and convert it to RGB (grey, palette, RGBA and CMYK files included).

    RGBA is converted by dropping alpha (PIL's ``convert("RGB")``), not by compositing on a
    background: re-ID crops with transparency are rare and have no agreed background.

    Args:
        path: the image file.

    Returns:
        An RGB PIL image.

    Raises:
        FileNotFoundError: the file does not exist.
        CorruptImageError: the file cannot be decoded (truncated, not an image, ...); the message
            names the file.

    >>> load_image("0002_c002_00030600_0.jpg").mode  # doctest: +SKIP
    'RGB'
    """
    try:
        with Image.open(path) as img:
            # convert() forces a full decode, so truncated files fail here and not in a worker later.
            return img.convert("RGB")
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise CorruptImageError(
            f"cannot read image {path}: {e}. Remove or replace the file, or pass skip_corrupt=True "
            "to substitute another image of the same identity"
        ) from e


class ImageDataset(Dataset):
    """Map-style dataset returning ``(image, pid, camid)`` for each record.

    With ``skip_corrupt=True`` an undecodable image is replaced by the next readable image of the
    same identity (so a P x K batch keeps its identities), or of any identity if none is left;
    every skip is logged as a warning naming the file and counted in ``skipped`` (per process:
    each DataLoader worker keeps its own count and logs its own warnings).

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

    def __getitem__(self, index: int) -> tuple[Any, int, int]:
        record = self.records[index]
        if not self.skip_corrupt:
            image = load_image(record.path)
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
