"""VERI-Wild reader (Lou et al., "VERI-Wild: A Large Dataset and a New Method for Vehicle
Re-Identification in the Wild", CVPR 2019), in the layout of the official release and fast-reid.

Layout::

    root/images/<vid>/<imgid>.jpg
    root/train_test_split/vehicle_info.txt       a header line, then "vid/imgid;camera;time;model;type;color"
    root/train_test_split/train_list.txt         lines "vid/imgid"
    root/train_test_split/test_3000.txt          gallery of the small test set (5000, 10000: medium, large)
    root/train_test_split/test_3000_query.txt    its query

Some copies name the lists ``train_list_start0.txt``, ``test_3000_id.txt`` and
``test_3000_id_query.txt`` and add columns after the path (a relabelled id, a camera); only the
path is read: the identity is the ``<vid>`` folder and the camera comes from ``vehicle_info.txt``,
so both namings give the same dataset. Evaluate with the ``veri`` protocol (gallery images of the
query's own id and camera removed), as fast-reid does.
"""

from __future__ import annotations

import re
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

__all__ = ["read_veriwild"]

_SPLIT_DIR = "train_test_split"
TEST_SIZES = (3000, 5000, 10000)
# "00001/000001", optionally with an extension and further whitespace-separated columns.
_LIST_LINE = re.compile(r"(?P<vid>\d+)/(?P<imgid>[^\s/.]+)(?:\.\w+)?(?:\s.*)?")
_INFO_KEY = re.compile(r"(?P<vid>\d+)/(?P<imgid>[^\s/.]+)")
_CAMERA = re.compile(r"c?(\d+)", re.IGNORECASE)


def _first_existing(split_dir: Path, names: tuple[str, ...]) -> Path | None:
    return next((split_dir / n for n in names if (split_dir / n).is_file()), None)


def _gallery_names(size: int) -> tuple[str, ...]:
    return (f"test_{size}.txt", f"test_{size}_id.txt")


def _query_names(size: int) -> tuple[str, ...]:
    return (f"test_{size}_query.txt", f"test_{size}_id_query.txt")


def _read_vehicle_info(path: Path) -> dict[str, tuple[int, int]]:
    """``imgid -> (vid, camera)`` from ``vehicle_info.txt`` (its first line is a header)."""
    info: dict[str, tuple[int, int]] = {}
    conflicts: dict[str, set[tuple[int, int]]] = {}
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.strip().split(";")
        key = _INFO_KEY.fullmatch(fields[0].strip())
        cam = _CAMERA.fullmatch(fields[1].strip()) if len(fields) > 1 else None
        if key is None or cam is None:
            raise ValueError(
                f"{path}:{lineno}: expected 'vid/imgid;camera;time;model;type;color' with integer vid and camera, "
                f"got {line.strip()!r}"
            )
        labels = (int(key["vid"]), int(cam[1]))
        if info.setdefault(key["imgid"], labels) != labels:
            conflicts.setdefault(key["imgid"], {info[key["imgid"]]}).add(labels)
    if conflicts:
        check_consistent_labels(
            [Record(imgid, vid, cam) for imgid, labels in conflicts.items() for vid, cam in labels], path
        )
    if not info:
        raise ValueError(
            f"{path} has no vehicle lines after its header; expected 'vid/imgid;camera;time;model;type;color'"
        )
    return info


def _read_list(path: Path, info: dict[str, tuple[int, int]], info_path: Path, image_dir: Path) -> list[Record]:
    records = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        m = _LIST_LINE.fullmatch(line.strip())
        if m is None:
            raise ValueError(f"{path}:{lineno}: expected 'vid/imgid' (e.g. 00001/000001), got {line.strip()!r}")
        vid, imgid = int(m["vid"]), m["imgid"]
        if imgid not in info:
            raise ValueError(f"{path}:{lineno}: image {imgid} is not in {info_path}")
        info_vid, camid = info[imgid]
        if info_vid != vid:
            raise ValueError(
                f"{path}:{lineno}: image {imgid} is listed under vehicle {vid}, {info_path} says {info_vid}"
            )
        records.append(Record(str(image_dir / m["vid"] / f"{imgid}.jpg"), vid, camid))
    require_nonempty(records, path.stem, path)
    return records


@register_format("veriwild")
def read_veriwild(root: str | Path, test_size: int = 3000) -> ReIDDataset:
    """Read VERI-Wild with the test set of ``test_size`` identities.

    Args:
        root: the dataset folder (holding ``images/`` and ``train_test_split/``).
        test_size: 3000 (small), 5000 (medium) or 10000 (large).

    Returns:
        The dataset: training ids relabelled to ``0..n-1``, query and gallery with the original
        vehicle ids, cameras from ``vehicle_info.txt``. Protocol ``veri``.

    Raises:
        FileNotFoundError: ``images/`` or split files are missing (all named in one error, with
            the test sizes whose lists exist), or listed images are missing (all listed).
        ValueError: an unknown ``test_size``, a malformed line (file and line named), an image
            missing from ``vehicle_info.txt`` or given two vehicle ids / cameras there (all
            listed), or an empty list.

    >>> ds = read_veriwild("/data/VERI-Wild", test_size=3000)  # doctest: +SKIP
    >>> ds.num_train_pids  # doctest: +SKIP
    30671
    """
    root = require_dir(Path(root), "VERI-Wild root")
    if test_size not in TEST_SIZES:
        raise ValueError(f"test_size must be one of {TEST_SIZES} (small, medium, large), got {test_size!r}")
    image_dir = root / "images"
    split_dir = root / _SPLIT_DIR
    wanted = {
        "train": ("train_list.txt", "train_list_start0.txt"),
        "info": ("vehicle_info.txt",),
        "gallery": _gallery_names(test_size),
        "query": _query_names(test_size),
    }
    found = {what: _first_existing(split_dir, names) for what, names in wanted.items()}
    missing = [" or ".join(str(split_dir / n) for n in wanted[what]) for what, path in found.items() if path is None]
    if not image_dir.is_dir():
        missing.insert(0, str(image_dir))
    if missing:
        sizes = [
            s
            for s in TEST_SIZES
            if _first_existing(split_dir, _gallery_names(s)) and _first_existing(split_dir, _query_names(s))
        ]
        present = f"test lists present for test_size={', '.join(map(str, sizes))}" if sizes else "no test lists present"
        raise FileNotFoundError(f"VERI-Wild at {root} is missing: {'; '.join(missing)} ({present})")
    info_path = found["info"]
    info = _read_vehicle_info(info_path)
    splits = {what: _read_list(found[what], info, info_path, image_dir) for what in ("train", "query", "gallery")}
    for what in ("train", "query", "gallery"):
        check_files_exist([r.path for r in splits[what]], found[what])
    return make_dataset(splits["train"], splits["query"], splits["gallery"], name=f"veriwild:{root}", protocol="veri")
