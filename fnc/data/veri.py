"""VeRi-776 reader (Liu et al., "A Deep Learning-Based Approach to Progressive Vehicle Re-identification", ECCV 2016)."""

from __future__ import annotations

import re
from pathlib import Path

from fnc.data.records import ReIDDataset, make_dataset, require_dir, scan_folder
from fnc.data.registry import register_format

__all__ = ["read_veri776"]

# 0002_c002_00030600_0.jpg: vehicle id, camera, frame, index.
_NAME = re.compile(r"(?P<pid>\d+)_c(?P<camid>\d+)_")


@register_format("veri")
def read_veri776(root: str | Path) -> ReIDDataset:
    """Read VeRi-776 from its released folder layout.

    Expects ``root/image_train``, ``root/image_query`` and ``root/image_test`` holding images
    named ``<id>_c<camera>_<frame>_<n>.jpg``. The test folder is the gallery. Ids and cameras are
    the numbers in the names (``c002`` -> 2). Evaluate with the ``veri`` protocol, which removes
    gallery images of the query's own id and camera.

    Args:
        root: the dataset folder.

    Returns:
        The dataset; training ids relabelled to ``0..575``.

    Raises:
        FileNotFoundError: a folder is missing.
        ValueError: a folder has no images, or an image name cannot be parsed (named).

    >>> ds = read_veri776("/data/VeRi")  # doctest: +SKIP
    >>> ds.num_train_pids  # doctest: +SKIP
    576
    """
    root = require_dir(Path(root), "VeRi-776 root")
    train = scan_folder(root / "image_train", _NAME)
    query = scan_folder(root / "image_query", _NAME)
    gallery = scan_folder(root / "image_test", _NAME)
    return make_dataset(train, query, gallery, name=f"veri:{root}")
