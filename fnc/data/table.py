"""Generic CSV reader (``path,id,camera[,split]``) for datasets with no reader of their own."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from fnc.data.records import (
    Record,
    ReIDDataset,
    check_consistent_labels,
    check_files_exist,
    holdout_identities,
    make_dataset,
    require_nonempty,
)
from fnc.data.registry import register_format

__all__ = ["read_csv", "read_label_rows"]

_SPLITS = {"train": "train", "query": "query", "gallery": "gallery", "test": "gallery"}


def _read_text(path: Path) -> str:
    """The file's text (UTF-8, a byte-order mark dropped); a binary file is a ValueError naming it."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path} is not a UTF-8 text CSV (undecodable byte at offset {e.start}); pass the label CSV "
            "(header line path,id,camera), not an image or another binary file"
        ) from None
    if "\x00" in text:
        raise ValueError(
            f"{path} contains NUL bytes, so it is not a text CSV; pass the label CSV (header line path,id,camera)"
        )
    return text


def read_label_rows(path: str | Path, required: Sequence[str], optional: Sequence[str] = ()) -> list[dict[str, str]]:
    """Rows of a label CSV as dicts of stripped strings, each with its line number under ``"_line"``.

    Args:
        path: the CSV file (UTF-8, a byte-order mark is accepted).
        required: columns the header must have, all non-empty in every row.
        optional: columns that may be present.

    Returns:
        One dict per data row.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a required column is missing from the header, or a row leaves one empty
            (file and line named), or the file has no rows.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file {path} does not exist")
    with io.StringIO(_read_text(path), newline="") as f:
        reader = csv.reader(f)
        header = [h.strip().lower() for h in next(reader, [])]
        missing = [c for c in required if c not in header]
        if missing:
            expected = ",".join(list(required) + [f"[{c}]" for c in optional])
            raise ValueError(
                f"{path}: header {','.join(header) or '(empty file)'} lacks column(s) {missing}; "
                f"expected a header line like: {expected}"
            )
        wanted = [c for c in list(required) + list(optional) if c in header]
        index = {c: header.index(c) for c in wanted}
        rows = []
        for line, values in enumerate(reader, start=2):
            if not values or all(not v.strip() for v in values):
                continue  # blank lines, e.g. a trailing newline
            if len(values) < len(header):
                raise ValueError(f"{path}:{line}: expected {len(header)} columns, got {len(values)}: {values}")
            row = {c: values[i].strip() for c, i in index.items()}
            for c in required:
                if not row[c]:
                    raise ValueError(f"{path}:{line}: empty value in column {c!r}")
            row["_line"] = str(line)
            rows.append(row)
    if not rows:
        raise ValueError(f"{path} has a header but no rows")
    return rows


def _to_ints(values: list[str]) -> tuple[list[int], dict[int, str]]:
    """Integers as written if every value is one; otherwise strings numbered in sorted order."""
    try:
        return [int(v) for v in values], {}
    except ValueError:
        names = sorted(set(values))
        number = {name: i for i, name in enumerate(names)}
        return [number[v] for v in values], dict(enumerate(names))


@register_format("csv")
def read_csv(
    path: str | Path,
    root: str | Path | None = None,
    holdout_ids: int | Sequence[int] = 0,
    seed: int = 0,
) -> ReIDDataset:
    """Read a dataset described by a CSV file.

    The header is ``path,id,camera`` with an optional ``split`` column (``train``, ``query``,
    ``gallery``; ``test`` means gallery). Without it every row is training data. Paths are
    relative to ``root`` (default: the CSV's folder) unless absolute. ``id`` and ``camera`` may be
    integers, kept as written, or any strings, numbered in sorted order (the strings are kept in
    ``id_names`` / ``camera_names``).

    Args:
        path: the CSV file.
        root: folder the image paths are relative to.
        holdout_ids: with no query/gallery rows, hold this many training identities out as
            query/gallery (or the list of ids to hold out); see :func:`holdout_identities`.
            0 keeps every training identity for training and leaves query/gallery empty.
        seed: seed for choosing held-out identities.

    Returns:
        The dataset; training ids relabelled to ``0..n-1``.

    Raises:
        FileNotFoundError: the CSV or any listed image is missing (all listed in one error).
        ValueError: bad header, empty value or unknown split (file and line named), an empty
            split, an image listed under two ids or cameras (all listed), or ``holdout_ids``
            together with query/gallery rows.

    >>> ds = read_csv("my_cameras/labels.csv")  # doctest: +SKIP
    """
    path = Path(path)
    rows = read_label_rows(path, required=("path", "id", "camera"), optional=("split",))
    base = Path(root) if root is not None else path.parent
    pids, id_names = _to_ints([r["id"] for r in rows])
    camids, camera_names = _to_ints([r["camera"] for r in rows])
    splits: dict[str, list[Record]] = {"train": [], "query": [], "gallery": []}
    for row, pid, camid in zip(rows, pids, camids):
        split = _SPLITS.get(row.get("split", "train").lower())
        if split is None:
            raise ValueError(f"{path}:{row['_line']}: unknown split {row['split']!r}; use one of {sorted(_SPLITS)}")
        image = Path(row["path"])
        splits[split].append(Record(str(image if image.is_absolute() else base / image), pid, camid))
    check_consistent_labels([r for recs in splits.values() for r in recs], path)
    check_files_exist([r.path for recs in splits.values() for r in recs], path)
    require_nonempty(splits["train"], "train", path)
    has_eval = bool(splits["query"] or splits["gallery"])
    if has_eval:
        if holdout_ids:
            raise ValueError(f"{path} already has query/gallery rows; drop holdout_ids or the split column")
        require_nonempty(splits["query"], "query", path)
        require_nonempty(splits["gallery"], "gallery", path)
    elif holdout_ids:
        splits["train"], splits["query"], splits["gallery"] = holdout_identities(splits["train"], holdout_ids, seed)
    return make_dataset(
        splits["train"],
        splits["query"],
        splits["gallery"],
        name=f"csv:{path}",
        id_names=id_names,
        camera_names=camera_names,
    )
