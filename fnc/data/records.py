"""Plain re-ID records, the dataset container every reader returns, and the checks readers share.

A record is ``(path, pid, camid)``. Readers relabel training identities to ``0..n-1`` (the
classifier's targets) and keep the original ids for query and gallery, where only equality matters.
"""

from __future__ import annotations

import logging
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from fnc.data.constants import IMAGE_EXTENSIONS

__all__ = [
    "IMAGE_EXTENSIONS",
    "ReIDDataset",
    "Record",
    "check_consistent_labels",
    "check_files_exist",
    "holdout_identities",
    "make_dataset",
    "relabel",
    "scan_folder",
]

logger = logging.getLogger(__name__)

_MAX_LISTED = 20  # a missing-file error lists this many paths, then counts the rest


class Record(NamedTuple):
    """One image: its path, identity and camera.

    >>> path, pid, camid = Record("img/0002_c002_00030600_0.jpg", 2, 2)
    """

    path: str
    pid: int
    camid: int


@dataclass
class ReIDDataset:
    """Train / query / gallery records of one dataset.

    Attributes:
        train: training records, ``pid`` relabelled to ``0..num_train_pids-1``.
        query: query records with the dataset's original ids.
        gallery: gallery records with the dataset's original ids. Either evaluation split may be
            empty when the dataset has no labelled test split (see each reader).
        pid_map: original training id -> training label.
        name: a short description, e.g. ``"veri:/data/VeRi"``.
        id_names: for a CSV with non-integer ids, integer id -> the CSV's string; else empty.
        camera_names: likewise for cameras.
        protocol: how the dataset is scored, set by its reader: ``"veri"`` (gallery images with
            the query's id and camera removed) or ``"aic"`` (CityFlow: nothing removed, mAP@100).

    >>> ds = make_dataset([Record("a.jpg", 7, 1), Record("b.jpg", 7, 2)], [], [], name="toy")
    >>> ds.train[0].pid, ds.pid_map, ds.num_train_pids
    (0, {7: 0}, 1)
    """

    train: list[Record]
    query: list[Record]
    gallery: list[Record]
    pid_map: dict[int, int]
    name: str = ""
    id_names: dict[int, str] = field(default_factory=dict)
    camera_names: dict[int, str] = field(default_factory=dict)
    protocol: str = "veri"

    @property
    def num_train_pids(self) -> int:
        """Number of training identities (the classifier's ``num_classes``)."""
        return len(self.pid_map)

    @property
    def num_train_cams(self) -> int:
        """Number of distinct cameras in the training split."""
        return len({r.camid for r in self.train})

    def summary(self) -> str:
        """A small table of images, identities and cameras per split."""
        lines = [f"{self.name or 'dataset'}:", f"  {'split':<8}{'images':>8}{'ids':>7}{'cams':>6}"]
        for split in ("train", "query", "gallery"):
            records = getattr(self, split)
            ids = len({r.pid for r in records})
            cams = len({r.camid for r in records})
            lines.append(f"  {split:<8}{len(records):>8}{ids:>7}{cams:>6}")
        return "\n".join(lines)


def relabel(records: Iterable[Record]) -> tuple[list[Record], dict[int, int]]:
    """Map identities to contiguous labels ``0..n-1`` in increasing order of the original id.

    Args:
        records: training records with original ids.

    Returns:
        ``(relabelled records, {original id: label})``.

    >>> relabel([Record("a", 5, 0), Record("b", 2, 0)])[1]
    {2: 0, 5: 1}
    """
    records = list(records)
    pid_map = {pid: label for label, pid in enumerate(sorted({r.pid for r in records}))}
    return [r._replace(pid=pid_map[r.pid]) for r in records], pid_map


def check_files_exist(paths: Iterable[str], source: str | Path) -> None:
    """Raise one error listing every path that does not exist.

    Args:
        paths: paths to check.
        source: the file or folder the paths came from, named in the error.

    Raises:
        FileNotFoundError: some paths are missing (all counted, the first 20 listed).

    >>> check_files_exist([], "labels.csv")
    """
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        listed = "\n  ".join(missing[:_MAX_LISTED])
        more = f"\n  ... and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
        raise FileNotFoundError(
            f"{len(missing)} image(s) listed in {source} do not exist:\n  {listed}{more}\n"
            "Check the dataset root and that the archive was extracted completely."
        )


def check_consistent_labels(records: Iterable[Record], source: str | Path) -> None:
    """Raise one error listing every image labelled twice with different identities or cameras.

    The same file under two vehicle ids (or two cameras) is a labelling mistake: training would
    pull its embedding towards both identities, and evaluation would count it as a match of both.
    The same file listed twice with the same labels is left alone.

    Args:
        records: every record read from ``source`` (all splits together).
        source: the label file(s) they came from, named in the error.

    Raises:
        ValueError: some paths carry contradicting labels (all counted, the first 20 listed, each
            with the labels it was given).

    >>> check_consistent_labels([Record("a.jpg", 1, 1), Record("a.jpg", 1, 1)], "labels.csv")
    """
    seen: dict[str, set[tuple[int, int]]] = defaultdict(set)
    for r in records:
        seen[r.path].add((r.pid, r.camid))
    bad = {path: labels for path, labels in seen.items() if len(labels) > 1}
    if bad:
        shown = [
            f"{path} (" + ", ".join(f"id {pid} camera {camid}" for pid, camid in sorted(labels)) + ")"
            for path, labels in list(bad.items())[:_MAX_LISTED]
        ]
        more = f"\n  ... and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
        raise ValueError(
            f"{len(bad)} image(s) in {source} are labelled with two different vehicle ids or cameras:\n  "
            + "\n  ".join(shown)
            + more
            + "\nFix the labels so that each image has one id and one camera."
        )


def require_dir(path: Path, what: str) -> Path:
    """Return ``path`` if it is a folder, else raise an error that says what was expected there."""
    if path.is_file():
        raise NotADirectoryError(f"{what}: {path} is a file, not a folder; pass the dataset's root folder")
    if not path.is_dir():
        raise FileNotFoundError(f"{what}: folder {path} does not exist")
    return path


def require_nonempty(records: Sequence[Record], split: str, source: str | Path) -> None:
    """Raise ``ValueError`` naming ``source`` if a split came out empty."""
    if not records:
        raise ValueError(f"the {split} split read from {source} is empty; check the path and the file's contents")


def scan_folder(folder: Path, pattern: re.Pattern[str]) -> list[Record]:
    """Records from the image files in a folder whose names carry the id and camera.

    Files that are not images (by extension, e.g. ``Thumbs.db``) are ignored; images whose name
    does not match are an error, since silently dropping them would change the split.

    Args:
        folder: the folder to scan (not recursive).
        pattern: a regex with groups ``pid`` and ``camid`` matched at the start of the file name.

    Returns:
        Records sorted by file name, with ids as written in the names.

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: the folder has no images, or some names cannot be parsed (all listed).
    """
    require_dir(folder, "image folder")
    records, bad = [], []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
            continue
        m = pattern.match(path.name)
        if m is None:
            bad.append(path.name)
            continue
        records.append(Record(str(path), int(m.group("pid")), int(m.group("camid"))))
    if bad:
        listed = ", ".join(bad[:_MAX_LISTED]) + (
            f", ... and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
        )
        raise ValueError(
            f"{len(bad)} file name(s) in {folder} do not match the expected pattern {pattern.pattern!r}: {listed}"
        )
    require_nonempty(records, folder.name, folder)
    return records


def holdout_identities(
    records: Sequence[Record],
    num_ids: int | Sequence[int],
    seed: int = 0,
) -> tuple[list[Record], list[Record], list[Record]]:
    """Hold identities out of a labelled training set to build query and gallery.

    The held-out identities are chosen at random with ``seed`` (or given explicitly). For each of
    them, the first image by path from every camera it appears in becomes a query; all its other
    images form the gallery. An identity with a single image goes to the gallery only, since as a
    query it could never be matched. Held-out images in the query's own camera stay in the gallery;
    the ``veri`` evaluation protocol (same id and camera removed) gives the more honest score.

    Args:
        records: labelled records with original ids.
        num_ids: how many identities to hold out, or the list of original ids to hold out.
        seed: seed for choosing the identities.

    Returns:
        ``(train, query, gallery)``, all with original ids.

    Raises:
        ValueError: not enough identities, unknown ids requested, or held-out identities with one
            image per camera (their queries would have no gallery image to find; the ids are named).

    >>> recs = [Record(f"{p}_{c}_{i}.jpg", p, c) for p in range(4) for c in (1, 2) for i in range(2)]
    >>> train, query, gallery = holdout_identities(recs, [3])
    >>> len(train), [r.path for r in query], len(gallery)
    (12, ['3_1_0.jpg', '3_2_0.jpg'], 2)
    """
    all_ids = sorted({r.pid for r in records})
    if isinstance(num_ids, int):
        if not 0 < num_ids < len(all_ids):
            raise ValueError(
                f"cannot hold out {num_ids} of {len(all_ids)} identities: need 0 < holdout_ids < {len(all_ids)} "
                "so that both training and evaluation have identities"
            )
        held = set(random.Random(seed).sample(all_ids, num_ids))
    else:
        held = set(num_ids)
        unknown = sorted(held - set(all_ids))
        if unknown:
            raise ValueError(f"holdout ids {unknown[:_MAX_LISTED]} are not in the training labels")
        if len(held) >= len(all_ids):
            raise ValueError("holding out every identity leaves nothing to train on")
    train = [r for r in records if r.pid not in held]
    by_id_cam: dict[int, dict[int, list[Record]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r.pid in held:
            by_id_cam[r.pid][r.camid].append(r)
    query, gallery = [], []
    # One image in each of its cameras: every image would be a query, with nothing to match.
    unmatched = sorted(
        pid for pid, cams in by_id_cam.items() if len(cams) > 1 and all(len(v) == 1 for v in cams.values())
    )
    if unmatched:
        raise ValueError(
            f"held-out identities {unmatched[:_MAX_LISTED]} have exactly one image per camera, so all their images "
            "would be queries and the gallery would hold none of them to find: evaluation could never match "
            "them. Hold out other identities (pass the ids to hold out, or another seed), fewer identities, "
            "or give labelled query/gallery images (a label file, or query/gallery rows)"
        )
    for pid in sorted(by_id_cam):
        cams = by_id_cam[pid]
        if sum(len(v) for v in cams.values()) == 1:
            gallery.extend(r for v in cams.values() for r in v)
            continue
        for camid in sorted(cams):
            first, *rest = sorted(cams[camid], key=lambda r: r.path)
            query.append(first)
            gallery.extend(rest)
    logger.info("held out %d identities: %d query and %d gallery images", len(held), len(query), len(gallery))
    return train, query, gallery


def make_dataset(
    train: Sequence[Record],
    query: Sequence[Record],
    gallery: Sequence[Record],
    name: str = "",
    protocol: str = "veri",
    **names: dict[int, str],
) -> ReIDDataset:
    """Relabel the training split and bundle the three splits into a :class:`ReIDDataset`.

    Args:
        train: training records with original ids.
        query: query records (kept as they are).
        gallery: gallery records (kept as they are).
        name: description for logs.
        protocol: the evaluation protocol of the dataset (see :class:`ReIDDataset`).
        **names: ``id_names`` / ``camera_names`` for datasets with string labels.

    Returns:
        The dataset.

    >>> make_dataset([Record("a.jpg", 3, 0)], [], [], name="toy").train
    [Record(path='a.jpg', pid=0, camid=0)]
    """
    relabelled, pid_map = relabel(train)
    ds = ReIDDataset(relabelled, list(query), list(gallery), pid_map, name=name, protocol=protocol, **names)
    logger.info("%s", ds.summary())
    return ds
