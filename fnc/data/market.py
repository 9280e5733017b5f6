"""Market-1501-style folders (Zheng et al., "Scalable Person Re-identification: A Benchmark", ICCV 2015).

Also reads other datasets released in this layout (e.g. DukeMTMC-reID names ``0001_c2_f0046182.jpg``).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from fnc.data.records import Record, ReIDDataset, make_dataset, require_dir, require_nonempty, scan_folder
from fnc.data.registry import register_format

__all__ = ["read_market1501"]

logger = logging.getLogger(__name__)

# 0002_c1s1_000451_03.jpg, -1_c1s1_000401_03.jpg (junk), 0000_c1s1_... (distractor).
_NAME = re.compile(r"(?P<pid>-?\d+)_c(?P<camid>\d+)")
_JUNK, _DISTRACTOR = -1, 0


def _drop(records: list[Record], pids: set[int], split: str, folder: Path) -> list[Record]:
    kept = [r for r in records if r.pid not in pids]
    if len(kept) != len(records):
        logger.info(
            "%s: dropped %d image(s) with id in %s from %s", folder, len(records) - len(kept), sorted(pids), split
        )
    return kept


@register_format("market")
def read_market1501(root: str | Path) -> ReIDDataset:
    """Read a Market-1501-style dataset folder.

    Expects ``root/bounding_box_train``, ``root/query`` and ``root/bounding_box_test`` with images
    named ``<id>_c<camera>...``. Following the benchmark's protocol (and torchreid): id ``-1``
    marks junk detections and is dropped from every split; id ``0000`` marks distractors, which
    stay in the gallery (they are valid wrong answers) but are dropped from train and query.
    Every drop is logged with its count.

    Args:
        root: the dataset folder.

    Returns:
        The dataset; training ids relabelled to ``0..n-1``.

    Raises:
        FileNotFoundError: a folder is missing.
        ValueError: a folder has no usable images, or an image name cannot be parsed (named).

    >>> ds = read_market1501("/data/Market-1501-v15.09.15")  # doctest: +SKIP
    >>> ds.num_train_pids  # doctest: +SKIP
    751
    """
    root = require_dir(Path(root), "Market-1501 root")
    splits = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
    out = {}
    for split, sub in splits.items():
        folder = root / sub
        records = scan_folder(folder, _NAME)
        dropped = {_JUNK} if split == "gallery" else {_JUNK, _DISTRACTOR}
        out[split] = _drop(records, dropped, split, folder)
        require_nonempty(out[split], split, folder)
    return make_dataset(out["train"], out["query"], out["gallery"], name=f"market:{root}")
