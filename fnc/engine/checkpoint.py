"""Checkpoint folders that ``create_model(checkpoint_path=...)`` and ``from_pretrained`` load, written atomically.

A checkpoint folder holds the model as the Hub layout has it (``config.json`` +
``model.safetensors``) and, for a resumable one, the training state beside it:

* ``training_state.safetensors``: every tensor of the optimiser, gradient scaler and RNG states;
* ``trainer_state.json``: everything else (epoch, sampler and scheduler state, metrics, the run's
  configuration) with tensors replaced by their key in the safetensors file, and a manifest of the
  folder's files (size and SHA-256).

Nothing is unpickled on load: tensors come from safetensors, the rest from JSON.

Atomicity: a folder is written under a temporary name in the same directory, every file and the
folder are fsynced, and ``os.replace`` moves it into place, so ``DIR/last`` is either the previous
complete checkpoint or the new complete one. The previous one is moved aside to ``DIR/.last.old``
for the instant between the two renames; :func:`recover_checkpoint` puts it back if a crash hit that
instant. ``trainer_state.json`` is written last and its manifest is checked on resume, so a folder
whose files were later truncated or altered is refused rather than trained on.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file, save_model

from fnc.engine.outputs import check_output_folder
from fnc.models._loader import CorruptCheckpointError
from fnc.models._manifest import MANIFEST_NAME, build_manifest, verify_manifest
from fnc.models._pretrained import CONFIG_NAME, WEIGHTS_NAME

__all__ = [
    "BEST",
    "CONFIG_FILE",
    "CheckpointError",
    "LAST",
    "MODEL_FILE",
    "STATE_FILE",
    "TENSORS_FILE",
    "atomic_folder",
    "check_checkpoint_destination",
    "checkpoint_pending",
    "get_rng_state",
    "is_checkpoint_folder",
    "load_state_tree",
    "read_checkpoint",
    "recover_checkpoint",
    "save_model_folder",
    "save_training_folder",
    "set_rng_state",
    "verify_checkpoint",
]

logger = logging.getLogger(__name__)

# The model files are the Hub layout's, named where the models define it.
MODEL_FILE = WEIGHTS_NAME
CONFIG_FILE = CONFIG_NAME
STATE_FILE = MANIFEST_NAME
TENSORS_FILE = "training_state.safetensors"
FORMAT_VERSION = 1
#: The folders a training run writes under its output folder: resumable, and best by mAP.
LAST = "last"
BEST = "best"


class CheckpointError(RuntimeError):
    """A checkpoint folder is missing, incomplete or corrupt."""


# ---------------------------------------------------------------------------------------------
# Nested state <-> (JSON tree, flat tensor dict)


def _flatten(obj: Any, tensors: dict[str, torch.Tensor], key: str) -> Any:
    if isinstance(obj, torch.Tensor):
        if key in tensors:
            raise ValueError(f"two tensors map to the key {key!r}")
        # clone: safetensors refuses tensors that share storage (and views of larger buffers).
        tensors[key] = obj.detach().to("cpu", copy=True).contiguous()
        return {"__tensor__": key}
    if isinstance(obj, collections.Counter):
        # MultiStepLR keeps its milestones in a Counter and relies on missing keys counting 0.
        return {"__counter__": [[k, v] for k, v in obj.items()]}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _flatten(v, tensors, f"{key}.{k}") for k, v in obj.items()}
        # Optimiser state is keyed by parameter index: keep int keys as ints.
        return {"__items__": [[k, _flatten(v, tensors, f"{key}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, tensors, f"{key}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_flatten(v, tensors, f"{key}.{i}") for i, v in enumerate(obj)]
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(
        f"cannot store {type(obj).__name__} at {key!r} in a checkpoint (tensors, numbers, str, lists, dicts only)"
    )


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__counter__" in obj:
        return collections.Counter({k: v for k, v in obj["__counter__"]})
    if "__items__" in obj:
        return {k: _unflatten(v, tensors) for k, v in obj["__items__"]}
    if "__tuple__" in obj:
        return tuple(_unflatten(v, tensors) for v in obj["__tuple__"])
    if "__ndarray__" in obj:
        return np.asarray(obj["__ndarray__"], dtype=obj["dtype"])
    return {k: _unflatten(v, tensors) for k, v in obj.items()}


def load_state_tree(folder: str | Path, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The training state of a verified checkpoint folder, tensors included.

    Args:
        folder: a checkpoint folder written by the trainer.
        meta: its ``trainer_state.json`` if already verified (:func:`verify_checkpoint`).

    Returns:
        The dict that was saved, with tensors (on CPU) back in place.

    Raises:
        CheckpointError: the folder is not a complete resumable checkpoint.

    >>> state = load_state_tree("runs/veri/last")  # doctest: +SKIP
    >>> state["epoch"]  # doctest: +SKIP
    11
    """
    folder = Path(folder)
    meta = verify_checkpoint(folder) if meta is None else meta
    if not meta.get("resumable"):
        raise CheckpointError(f"{folder} holds a model only (no training state); resume from the run's {LAST!r} folder")
    tensors = load_file(str(folder / TENSORS_FILE), device="cpu")
    return _unflatten(meta["state"], tensors)


# ---------------------------------------------------------------------------------------------
# RNG


def get_rng_state() -> dict[str, Any]:
    """Every global RNG training touches: Python, NumPy, torch CPU and CUDA."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(legacy=False),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned (possibly after a JSON round trip)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = dict(state["numpy"])
    numpy_state["state"] = {
        k: np.asarray(v, dtype=np.uint32) if k == "key" else v for k, v in numpy_state["state"].items()
    }
    np.random.set_state(numpy_state)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


# ---------------------------------------------------------------------------------------------
# Files


def _fsync(path: Path) -> None:
    # Directories can be fsynced on POSIX only; on Windows os.replace is already durable enough.
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _old_name(final: Path) -> Path:
    return final.parent / f".{final.name}.old"


def atomic_folder(final: str | Path, write: Callable[[Path], None], meta: dict[str, Any]) -> Path:
    """Write a folder under a temporary name, seal it with a manifest, and rename it into place.

    Args:
        final: the folder to (re)place, e.g. ``runs/x/last``.
        write: fills the temporary folder it is given with the checkpoint's files.
        meta: JSON-able content of ``trainer_state.json``; the manifest of the files is added
            under ``"files"``.

    Returns:
        ``final``.

    Raises:
        OutputExistsError: ``final`` exists and is not a checkpoint folder fnc-reid wrote.

    >>> atomic_folder("runs/x/last", lambda d: (d / "a.txt").write_text("hi"), {"epoch": 0})  # doctest: +SKIP
    """
    final = Path(final)
    # Only a folder this module wrote is ever replaced: a user's folder of the same name is refused.
    check_checkpoint_destination(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        write(tmp)
        for path in tmp.iterdir():
            if path.is_file():
                _fsync(path)
        files = build_manifest(tmp)
        # The manifest file is written last: a folder without a readable one is never complete.
        state_path = tmp / STATE_FILE
        state_path.write_text(json.dumps({**meta, "format_version": FORMAT_VERSION, "files": files}, indent=1))
        _fsync(state_path)
        _fsync(tmp)
        old = _old_name(final)
        if old.exists():
            shutil.rmtree(old)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync(final.parent)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def checkpoint_pending(final: str | Path) -> bool:
    """Whether a checkpoint is at ``final`` or waits to be restored there by :func:`recover_checkpoint`.

    >>> checkpoint_pending("runs/none/last")
    False
    """
    final = Path(final)
    return final.exists() or _old_name(final).exists()


def recover_checkpoint(final: str | Path) -> Path | None:
    """Find the complete checkpoint at ``final`` after a crash, cleaning up what a crash left.

    Removes temporary folders of interrupted writes; if the crash fell between moving the
    previous checkpoint aside and renaming the new one into place, moves the previous one back.

    Args:
        final: where the checkpoint should be, e.g. ``runs/x/last``.

    Returns:
        ``final`` if a checkpoint is there now, else ``None``.
    """
    final = Path(final)
    if final.parent.is_dir():
        for leftover in final.parent.glob(f".{final.name}.tmp-*"):
            logger.warning("removing %s, left by an interrupted checkpoint write", leftover)
            shutil.rmtree(leftover, ignore_errors=True)
    old = _old_name(final)
    if not final.exists() and old.is_dir():
        logger.warning("restoring %s from %s (a checkpoint write was interrupted)", final, old)
        os.replace(old, final)
    return final if final.exists() else None


def verify_checkpoint(folder: str | Path) -> dict[str, Any]:
    """Check a checkpoint folder against its manifest and return its ``trainer_state.json``.

    The manifest format and its check are :mod:`fnc.models._manifest`'s, shared with the model
    loader, so ``create_model(checkpoint_path=folder)`` refuses the same folders a resume does.

    Args:
        folder: a checkpoint folder written by the trainer.

    Returns:
        The parsed ``trainer_state.json``.

    Raises:
        CheckpointError: the folder or its manifest is missing or unreadable, or a listed file
            is missing or differs in size or SHA-256 (each named).

    >>> verify_checkpoint("runs/veri/best")["metrics"]["mAP"]  # doctest: +SKIP
    0.71
    """
    folder = Path(folder)
    if not (folder / STATE_FILE).is_file():
        raise CheckpointError(f"{folder} is not a complete checkpoint: {STATE_FILE} is missing")
    try:
        return verify_manifest(folder)
    except CorruptCheckpointError as e:
        raise CheckpointError(str(e)) from e


def is_checkpoint_folder(folder: str | Path) -> bool:
    """Whether ``folder`` was written by fnc-reid's trainer (its ``trainer_state.json`` is ours).

    Another tool's file of the same name (Hugging Face's Trainer writes one too) does not count:
    ours is a JSON object with this module's ``format_version`` and a ``files`` manifest. Only such
    a folder is ever replaced by a new checkpoint (see :mod:`fnc.engine.outputs`).

    >>> is_checkpoint_folder("/nonexistent")
    False
    """
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        return False
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and "format_version" in meta and isinstance(meta.get("files"), dict)


def check_checkpoint_destination(final: str | Path) -> None:
    """Refuse, before any work, to replace ``final`` unless it is absent, empty or a checkpoint we wrote.

    Raises:
        OutputExistsError: ``final`` is a file, or a folder fnc-reid did not write (named, with
            what it holds).

    >>> check_checkpoint_destination("/nonexistent/run/best")
    """
    check_output_folder(final, is_checkpoint_folder, what="checkpoint folder")


def read_checkpoint(folder: str | Path) -> dict[str, Any]:
    """``trainer_state.json`` of a verified checkpoint (no tensors loaded); see :func:`verify_checkpoint`."""
    return verify_checkpoint(folder)


# ---------------------------------------------------------------------------------------------
# Model files


def save_model_folder(model: torch.nn.Module, folder: Path, card: dict[str, Any] | None = None) -> None:
    """Write ``model`` into ``folder`` in the Hub layout (``config.json`` + ``model.safetensors``).

    Uses the model's own ``save_pretrained`` when it has one (the Hub mixin), so the folder loads
    with ``create_model(checkpoint_path=...)`` and ``from_pretrained``; otherwise writes the
    state dict and a ``config.json`` naming the architecture.

    Args:
        model: the (unwrapped) model.
        folder: an existing folder.
        card: ``dataset`` / ``metrics`` for the config and model card (``save_pretrained`` keywords).
    """
    if hasattr(model, "save_pretrained"):
        model.save_pretrained(folder, **{k: v for k, v in (card or {}).items() if v is not None})
        return
    save_model(model, str(folder / MODEL_FILE))
    cfg = getattr(model, "pretrained_cfg", None)
    config = {"architecture": getattr(cfg, "architecture", type(model).__name__)}
    if hasattr(model, "num_classes"):
        config["num_classes"] = int(model.num_classes)
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=1))


def save_training_folder(
    final: str | Path,
    model: torch.nn.Module,
    state: dict[str, Any] | None,
    meta: dict[str, Any],
    card: dict[str, Any] | None = None,
) -> Path:
    """Write one checkpoint folder atomically: the model, and the training state if given.

    Args:
        final: the folder, e.g. ``runs/x/last``.
        model: the (unwrapped) model.
        state: nested training state (tensors allowed); ``None`` writes a model-only folder.
        meta: JSON-able extras for ``trainer_state.json`` (epoch, metrics, config).
        card: ``dataset`` / ``metrics`` for ``save_pretrained``'s config and model card.

    Returns:
        ``final``.
    """
    meta = dict(meta, resumable=state is not None)
    tensors: dict[str, torch.Tensor] = {}
    if state is not None:
        meta["state"] = _flatten(state, tensors, "state")

    def write(folder: Path) -> None:
        save_model_folder(model, folder, card)
        if state is not None:
            save_file(tensors, str(folder / TENSORS_FILE))

    return atomic_folder(final, write, meta)
