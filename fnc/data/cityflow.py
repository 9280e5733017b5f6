"""CityFlow-ReID reader, AI City Challenge 2020 track 2 layout (Tang et al., CVPR 2019; the FNC paper's data).

Layout::

    root/image_train/000001.jpg ...     train_label.xml   (id and camera of every training image)
    root/image_query/000001.jpg ...     name_query.txt    (one file name per line)
    root/image_test/000001.jpg ...      name_test.txt

``train_label.xml`` reads ``<TrainingImages><Items><Item imageName="000001.jpg" vehicleID="0001"
cameraID="c001"/>...`` and the released file declares ``encoding="gb2312"``. The query and test
labels were never released, so evaluation takes either a user label file or training identities
held out as query/gallery.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from fnc.data.records import (
    Record,
    ReIDDataset,
    check_consistent_labels,
    check_files_exist,
    holdout_identities,
    make_dataset,
    require_dir,
    require_nonempty,
)
from fnc.data.registry import register_format
from fnc.data.table import read_label_rows

__all__ = ["read_cityflow", "read_name_list", "read_train_label_xml"]

logger = logging.getLogger(__name__)

_DECLARATION = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"'][^>]*\?>")
_CAMERA = re.compile(r"c?(\d+)", re.IGNORECASE)
_EVAL_FOLDERS = {"image_query": "query", "image_test": "gallery"}


def _int_field(value: str | None, pattern: re.Pattern[str] | None, what: str, where: str) -> int:
    m = (pattern.fullmatch(value) if pattern else re.fullmatch(r"\d+", value)) if value is not None else None
    if m is None:
        raise ValueError(f"{where}: cannot parse {what} {value!r}")
    return int(m.group(1) if pattern else m.group(0))


def read_train_label_xml(path: str | Path) -> list[tuple[str, int, int]]:
    """Parse an AIC track-2 label XML into ``(image name, vehicle id, camera)`` triples.

    The declared encoding (gb2312 in the released file) is honoured by decoding in Python first:
    expat cannot parse multi-byte encodings other than UTF-8/16 itself.

    Args:
        path: ``train_label.xml`` (or a file in the same format).

    Returns:
        Triples in file order; ``cameraID="c001"`` becomes 1.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unknown encoding, malformed XML, no ``Item`` elements, or an item without a
            parsable ``imageName`` / ``vehicleID`` / ``cameraID`` (file and item named).

    >>> read_train_label_xml("AIC20_ReID/train_label.xml")[:1]  # doctest: +SKIP
    [('000001.jpg', 1, 1)]
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file {path} does not exist")
    raw = path.read_bytes()
    m = _DECLARATION.match(raw)
    encoding = m.group(1).decode("ascii") if m else "utf-8-sig"
    try:
        text = raw.decode(encoding)
    except LookupError:
        raise ValueError(f"{path}: unknown encoding {encoding!r} in the XML declaration") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not valid {encoding} text ({e.reason} at byte {e.start})") from None
    # ElementTree refuses a str that still declares a non-UTF-8 encoding.
    text = re.sub(r"^\s*<\?xml[^>]*\?>", "", text, count=1)
    try:
        tree = ET.fromstring(text)
    except ET.ParseError as e:
        raise ValueError(f"{path}: malformed XML: {e}") from None
    items = []
    for i, item in enumerate(tree.iter("Item")):
        name = item.get("imageName")
        where = f"{path}, Item {i} ({name or 'no imageName'})"
        if not name:
            raise ValueError(f"{where}: missing imageName")
        pid = _int_field(item.get("vehicleID"), None, "vehicleID", where)
        camid = _int_field(item.get("cameraID"), _CAMERA, "cameraID", where)
        items.append((name, pid, camid))
    if not items:
        raise ValueError(f"{path}: no <Item> elements; expected <TrainingImages><Items><Item imageName=... />")
    return items


def read_name_list(path: str | Path) -> list[str]:
    """File names from ``name_query.txt`` / ``name_test.txt`` (one per line, blanks skipped).

    Args:
        path: the list file.

    Returns:
        The names in file order.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file lists no names.

    >>> read_name_list("AIC20_ReID/name_query.txt")[:2]  # doctest: +SKIP
    ['000001.jpg', '000002.jpg']
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"name list {path} does not exist")
    names = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    if not names:
        raise ValueError(f"{path} lists no image names")
    return names


def _read_eval_labels(root: Path, label_file: Path) -> tuple[list[Record], list[Record]]:
    rows = read_label_rows(label_file, required=("path", "id", "camera"))
    found: dict[str, list[Record]] = {"query": [], "gallery": []}
    for row in rows:
        where = f"{label_file}:{row['_line']}"
        folder, _, name = row["path"].replace("\\", "/").partition("/")
        split = _EVAL_FOLDERS.get(folder)
        if split is None or not name:
            raise ValueError(
                f"{where}: path {row['path']!r} must be image_query/<name> or image_test/<name>, relative to {root}"
            )
        pid = _int_field(row["id"], None, "id", where)
        camid = _int_field(row["camera"], _CAMERA, "camera", where)
        found[split].append(Record(str(root / folder / name), pid, camid))
    # The official name lists, where present, fix which images the benchmark evaluates.
    for folder, split in _EVAL_FOLDERS.items():
        list_file = root / ("name_query.txt" if split == "query" else "name_test.txt")
        if not list_file.is_file():
            continue
        listed = [str(root / folder / n) for n in read_name_list(list_file)]
        labelled = {r.path: r for r in found[split]}
        unlabelled = [p for p in listed if p not in labelled]
        extra = sorted(set(labelled) - set(listed))
        if unlabelled or extra:
            raise ValueError(
                f"{label_file} does not match {list_file}: {len(unlabelled)} listed image(s) without a label "
                f"(e.g. {unlabelled[:3]}), {len(extra)} labelled image(s) not listed (e.g. {extra[:3]})"
            )
        found[split] = [labelled[p] for p in listed]
    for split, records in found.items():
        require_nonempty(records, split, label_file)
    return found["query"], found["gallery"]


@register_format("cityflow")
def read_cityflow(
    root: str | Path,
    label_file: str | Path | None = None,
    holdout_ids: int | Sequence[int] = 0,
    seed: int = 0,
) -> ReIDDataset:
    """Read CityFlow-ReID in the AI City 2020 track 2 layout.

    Training records come from ``image_train/`` and ``train_label.xml``. Query and gallery come from
    one of:

    * ``label_file``: a CSV with header ``path,id,camera`` whose paths are
      ``image_query/<name>`` or ``image_test/<name>`` (relative to ``root``; ``camera`` may be
      ``c001`` or ``1``). Where ``name_query.txt`` / ``name_test.txt`` exist, the labels must
      cover exactly the images they list, in their order.
    * ``holdout_ids``: that many training identities (or these ids) leave training and become
      query/gallery: one query image per identity per camera, the rest gallery; see
      :func:`~fnc.data.records.holdout_identities`.
    * neither: query and gallery are empty (train on everything, e.g. for a submission).

    Args:
        root: the dataset folder.
        label_file: query/test labels, if you have them.
        holdout_ids: number (or list) of training identities to hold out; 0 for none.
        seed: seed for choosing held-out identities.

    Returns:
        The dataset; training ids relabelled to ``0..n-1`` (333 identities with no hold-out).

    Raises:
        FileNotFoundError: the root, ``image_train/``, ``train_label.xml`` or any labelled image is
            missing (all missing images listed in one error).
        ValueError: malformed label files (file named), an image labelled with two vehicle ids or
            cameras (all listed), an empty split, or both ``label_file`` and ``holdout_ids``.

    >>> ds = read_cityflow("/data/AIC20_ReID", holdout_ids=50)  # doctest: +SKIP
    """
    root = require_dir(Path(root), "CityFlow-ReID root")
    if label_file is not None and holdout_ids:
        raise ValueError("pass either label_file (labelled query/test) or holdout_ids (split training ids), not both")
    xml_path = root / "train_label.xml"
    train_dir = require_dir(root / "image_train", "CityFlow-ReID training images")
    train = [Record(str(train_dir / name), pid, camid) for name, pid, camid in read_train_label_xml(xml_path)]
    check_consistent_labels(train, xml_path)
    check_files_exist([r.path for r in train], xml_path)
    require_nonempty(train, "train", xml_path)
    query: list[Record] = []
    gallery: list[Record] = []
    if label_file is not None:
        query, gallery = _read_eval_labels(root, Path(label_file))
        check_consistent_labels(query + gallery, label_file)
        check_files_exist([r.path for r in query + gallery], label_file)
    elif holdout_ids:
        train, query, gallery = holdout_identities(train, holdout_ids, seed)
    else:
        logger.info("%s: no label_file or holdout_ids, so no query/gallery for evaluation", root)
    return make_dataset(train, query, gallery, name=f"cityflow:{root}", protocol="aic")
