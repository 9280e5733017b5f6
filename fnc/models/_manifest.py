"""The manifest of a checkpoint folder: which files it holds, with their sizes and SHA-256.

A folder written by fnc-reid's trainer (``OUTPUT/last``, ``OUTPUT/best``) carries
``trainer_state.json``, whose ``"files"`` entry lists every other file of the folder with its size
and SHA-256. This module owns that format: :mod:`fnc.engine.checkpoint` writes it with
:func:`build_manifest`, and both it (on resume) and the model loader (``create_model(checkpoint_path=
folder)``, hence ``fnc-reid extract / eval --checkpoint``) check it with :func:`verify_manifest`, so a
folder whose files were truncated or altered after it was written is refused by name, never loaded.
A ``save_pretrained`` folder has no manifest and loads as it is.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ._loader import CorruptCheckpointError

__all__ = ["MANIFEST_NAME", "build_manifest", "file_sha256", "has_manifest", "verify_manifest"]

#: The file of a checkpoint folder that holds its manifest (and the trainer's state).
MANIFEST_NAME = "trainer_state.json"


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, read in 1 MiB blocks.

    >>> import tempfile
    >>> f = tempfile.mkdtemp() + "/a"; _ = open(f, "w").write("hi")
    >>> file_sha256(f)[:8]
    '8f434346'
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build_manifest(folder: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """``{name: {"size", "sha256"}}`` of every file in ``folder`` except the manifest itself.

    >>> import tempfile
    >>> d = tempfile.mkdtemp(); _ = open(d + "/a", "w").write("hi")
    >>> build_manifest(d)["a"]["size"]
    2
    """
    files = {}
    for path in sorted(Path(folder).iterdir()):
        if path.is_file() and path.name != MANIFEST_NAME:
            files[path.name] = {"size": path.stat().st_size, "sha256": file_sha256(path)}
    return files


def has_manifest(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` carries a manifest file (valid or not).

    >>> has_manifest("/nonexistent")
    False
    """
    return (Path(folder) / MANIFEST_NAME).is_file()


def verify_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """Check every file ``folder``'s manifest lists, and return the parsed manifest file.

    Args:
        folder: a folder with a ``trainer_state.json``.

    Returns:
        The parsed ``trainer_state.json``.

    Raises:
        FileNotFoundError: the folder has no manifest.
        CorruptCheckpointError: the manifest is unreadable, or a listed file is missing or differs
            in size or SHA-256; every such file is named, with the fix.

    >>> verify_manifest("runs/veri/best")["epoch"]  # doctest: +SKIP
    120
    """
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no {MANIFEST_NAME}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        files = meta["files"]
        listed = {name: (int(info["size"]), str(info["sha256"])) for name, info in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CorruptCheckpointError(
            f"{path} is unreadable ({e}); the checkpoint {folder} is corrupt: copy it again from where it was "
            "written, or use another checkpoint (e.g. the run's other folder, last or best)"
        ) from e
    bad = []
    for name, (size, digest) in listed.items():
        file = folder / name
        if not file.is_file():
            bad.append(f"{name} is missing")
        elif file.stat().st_size != size:
            bad.append(f"{name} has {file.stat().st_size} bytes, expected {size}")
        elif file_sha256(file) != digest:
            bad.append(f"{name} does not match its SHA-256")
    if bad:
        raise CorruptCheckpointError(
            f"checkpoint {folder} is corrupt: " + "; ".join(bad) + f" (checked against its {MANIFEST_NAME}); "
            "copy the folder again from where it was written, or use another checkpoint "
            "(e.g. the run's other folder, last or best)"
        )
    return meta
