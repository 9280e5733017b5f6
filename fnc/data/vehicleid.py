"""PKU VehicleID reader (Liu et al., "Deep Relative Distance Learning: Tell the Difference Between
Similar Vehicles", CVPR 2016), in the layout fast-reid reads.

Layout::

    root/image/<imgid>.jpg
    root/train_test_split/train_list.txt         lines "<imgid> <vid>"
    root/train_test_split/test_list_800.txt      small test set (800 identities)
    root/train_test_split/test_list_1600.txt     medium
    root/train_test_split/test_list_2400.txt     large (3200, 6000 and 13164 in some copies)

VehicleID has no query / gallery split and no cameras. The protocol the literature reports draws
one random image of every test identity into the gallery and queries with all the others, then
averages over 10 such draws (:func:`vehicleid_trials`). Every image counts as its own camera, as
in fast-reid, so the ``veri`` protocol's same-id-same-camera removal removes nothing.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from pathlib import Path

from fnc.data.records import (
    Record,
    ReIDDataset,
    check_consistent_labels,
    check_files_exist,
    make_dataset,
    require_dir,
    require_nonempty,
)
from fnc.data.registry import register_format

__all__ = ["read_vehicleid", "vehicleid_trials"]

_SPLIT_DIR = "train_test_split"
_TEST_LIST = re.compile(r"test_list_(\d+)\.txt")
_LINE = re.compile(r"(?P<imgid>\d+)\s+(?P<vid>\d+)")


def _read_list(path: Path, image_dir: Path) -> list[Record]:
    """Records of one ``<imgid> <vid>`` list; the image id doubles as the (unique) camera."""
    records = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        m = _LINE.fullmatch(line.strip())
        if m is None:
            raise ValueError(
                f"{path}:{lineno}: expected '<image id> <vehicle id>' (two integers), got {line.strip()!r}"
            )
        imgid = m["imgid"]
        records.append(Record(str(image_dir / f"{imgid}.jpg"), int(m["vid"]), int(imgid)))
    require_nonempty(records, path.stem, path)
    return records


def _test_sizes(split_dir: Path) -> list[int]:
    if not split_dir.is_dir():
        return []
    return sorted(int(m[1]) for p in split_dir.iterdir() if (m := _TEST_LIST.fullmatch(p.name)))


def _read_splits(root: str | Path, test_size: int) -> tuple[Path, list[Record], list[Record]]:
    root = require_dir(Path(root), "VehicleID root")
    if isinstance(test_size, bool) or not isinstance(test_size, int) or test_size <= 0:
        raise ValueError(f"test_size must be a positive integer such as 800, 1600 or 2400, got {test_size!r}")
    image_dir = root / "image"
    split_dir = root / _SPLIT_DIR
    train_list = split_dir / "train_list.txt"
    test_list = split_dir / f"test_list_{test_size}.txt"
    missing = [str(p) for p in (image_dir, train_list, test_list) if not p.exists()]
    if missing:
        sizes = _test_sizes(split_dir)
        present = (
            f"test lists present: test_size={', '.join(map(str, sizes))}" if sizes else "no test_list_<N>.txt present"
        )
        raise FileNotFoundError(
            f"VehicleID at {root} is missing {', '.join(missing)} ({present}); expected image/<imgid>.jpg, "
            f"{_SPLIT_DIR}/train_list.txt and {_SPLIT_DIR}/test_list_<N>.txt"
        )
    train = _read_list(train_list, image_dir)
    test = _read_list(test_list, image_dir)
    # One image under two vehicle ids, within a list or across the two, is a labelling mistake.
    check_consistent_labels(train + test, f"{train_list} and {test_list}")
    check_files_exist([r.path for r in train], train_list)
    check_files_exist([r.path for r in test], test_list)
    return root, train, test


def _draw_gallery(test: list[Record], seed: int) -> tuple[list[Record], list[Record]]:
    """One seeded random image per identity into the gallery, the rest into the query."""
    by_id: dict[int, list[Record]] = defaultdict(list)
    for r in test:
        by_id[r.pid].append(r)
    rng = random.Random(seed)
    query, gallery = [], []
    for pid in sorted(by_id):
        images = by_id[pid]
        pick = rng.randrange(len(images))
        gallery.append(images[pick])
        query.extend(r for i, r in enumerate(images) if i != pick)
    return query, gallery


@register_format("vehicleid")
def read_vehicleid(root: str | Path, test_size: int = 800, seed: int = 0) -> ReIDDataset:
    """Read VehicleID with one seeded gallery draw of the ``test_size`` test set.

    Args:
        root: the dataset folder (holding ``image/`` and ``train_test_split/``).
        test_size: which ``test_list_<N>.txt`` to evaluate on: 800 (small), 1600 (medium), 2400
            (large), or another size the copy has.
        seed: seed of the gallery draw (one random image per test identity).

    Returns:
        The dataset: training ids relabelled to ``0..n-1``; the gallery holds one image of each
        test identity and the query all the others; every image is its own camera. Protocol
        ``veri``, which then removes nothing.

    Raises:
        FileNotFoundError: ``image/`` or a list file is missing (all of them named in one error,
            with the test sizes that exist), or a listed image is missing (all listed).
        ValueError: a bad ``test_size``, an empty list, a malformed line (file and line named), or
            an image listed under two vehicle ids (all listed).

    >>> ds = read_vehicleid("/data/VehicleID", test_size=800, seed=0)  # doctest: +SKIP
    >>> len(ds.gallery)  # doctest: +SKIP
    800
    """
    root, train, test = _read_splits(root, test_size)
    query, gallery = _draw_gallery(test, seed)
    return make_dataset(train, query, gallery, name=f"vehicleid:{root}", protocol="veri")


def vehicleid_trials(root: str | Path, test_size: int = 800, trials: int = 10) -> list[ReIDDataset]:
    """The literature's VehicleID protocol: ``trials`` gallery draws, with seeds ``0..trials-1``.

    The lists are read and checked once; each dataset equals ``read_vehicleid(root, test_size,
    seed=i)``. Evaluate each and report the mean and standard deviation of the metrics.

    Args:
        root: the dataset folder.
        test_size: the test set, as in :func:`read_vehicleid`.
        trials: number of gallery draws (10 in the literature).

    Returns:
        One dataset per draw, in seed order.

    Raises:
        ValueError: ``trials`` < 1, or as :func:`read_vehicleid`.

    >>> datasets = vehicleid_trials("/data/VehicleID", test_size=800)  # doctest: +SKIP
    >>> len(datasets)  # doctest: +SKIP
    10
    """
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"trials must be a positive integer (10 in the literature), got {trials!r}")
    root, train, test = _read_splits(root, test_size)
    out = []
    for seed in range(trials):
        query, gallery = _draw_gallery(test, seed)
        out.append(make_dataset(train, query, gallery, name=f"vehicleid:{root}", protocol="veri"))
    return out
