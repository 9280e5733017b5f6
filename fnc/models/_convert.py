"""``convert_checkpoint``: a third-party ``.pth`` to a ``save_pretrained`` folder, ready to publish."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ._factory import create_model
from ._pth import is_pth

__all__ = ["convert_checkpoint"]


def convert_checkpoint(
    src: str | os.PathLike,
    out_dir: str | os.PathLike,
    model_name: str,
    *,
    dataset: str | None = None,
    metrics: Mapping[str, float] | None = None,
    license: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Convert a fast-reid, reid-strong-baseline / AICity DMT or IBN-Net ``.pth`` to a checkpoint folder.

    The file is read with ``torch.load(weights_only=True)`` only, mapped onto ``model_name``'s
    keys and loaded strictly, exactly as ``create_model(model_name, checkpoint_path=src)`` does;
    the folder then holds ``model.safetensors``, ``config.json`` (architecture and its
    arguments, e.g. fast-reid's ``stem_pool="ceil"``) and a model card naming the source file.
    Load it with ``fnc.create_model(checkpoint_path=out_dir)`` or publish it with ``push_to_hub``.

    Args:
        src: the ``.pth`` / ``.pt`` file.
        out_dir: the folder to write (created if needed).
        model_name: the architecture, or ``arch.tag`` whose cfg (dataset, metrics, input
            statistics) describes these weights, e.g. ``"sbs_resnet50_ibn.fastreid_veri"``.
        dataset: training data, for ``config.json`` and the card.
        metrics: results as fractions in [0, 1] (e.g. ``{"mAP": 0.819}``).
        license: the weights' license.
        cache_dir: cache folder for the intermediate safetensors conversion.

    Returns:
        ``out_dir`` as a Path.

    Raises:
        ValueError: ``src`` is not a ``.pth`` / ``.pt`` file name; a metric outside [0, 1].
        UnsafeCheckpointError, CorruptCheckpointError, CheckpointMismatchError: as
            :func:`fnc.create_model` with ``checkpoint_path=``.

    Example:
        >>> convert_checkpoint("veri_sbs_R50-ibn.pth", "sbs-veri", "sbs_resnet50_ibn.fastreid_veri")  # doctest: +SKIP
        PosixPath('sbs-veri')
    """
    if not is_pth(src):
        raise ValueError(
            f"{os.fspath(src)!r} is not a .pth / .pt file; convert_checkpoint converts third-party torch "
            "checkpoints (a safetensors file or save_pretrained folder needs no conversion)"
        )
    model = create_model(model_name, checkpoint_path=src, cache_dir=cache_dir).eval()
    out = Path(out_dir)
    model.save_pretrained(out, dataset=dataset, metrics=metrics, license=license)
    return out
