"""Publishing a checkpoint folder to the Hugging Face Hub, for ``Trainer.push_to_hub`` and ``fnc-reid push``.

A folder written by training already records what its model card needs: its ``config.json``
carries the dataset format and the evaluation metrics (fractions in [0, 1]) beside the weights,
and the card renders them as percent. Publishing therefore verifies the folder, loads its model
and pushes it, with only what the caller overrides.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fnc.engine.checkpoint import CONFIG_FILE, MODEL_FILE, STATE_FILE, read_checkpoint
from fnc.models import create_model

__all__ = ["push_checkpoint"]


def push_checkpoint(
    folder: str | Path,
    repo_id: str,
    *,
    dataset: str | None = None,
    license: str | None = None,
    private: bool = False,
    commit_message: str | None = None,
    **kwargs: Any,
) -> str:
    """Upload a checkpoint folder to a Hub model repo: weights, ``config.json`` and a re-ID model card.

    Args:
        folder: a folder written by training (``OUTPUT/best``, ``OUTPUT/last``) or by
            ``save_pretrained``; a training folder is checked against its manifest first.
        repo_id: ``org/name`` on the Hub (created if needed; the token comes from ``HF_TOKEN``).
        dataset: the card's training dataset instead of the one the folder records.
        license: the license of the weights, for the card.
        private: create the repo private.
        commit_message: the commit message.
        **kwargs: further ``push_to_hub`` arguments (``revision``, ``token``, ...).

    Returns:
        The commit URL.

    Raises:
        FileNotFoundError: ``folder`` has no ``config.json`` / ``model.safetensors``.
        ValueError: ``repo_id`` is not ``org/name``.
        fnc.engine.CheckpointError: a training folder whose files do not match its manifest.
        huggingface_hub.errors.HfHubHTTPError: the Hub refused the upload.

    >>> push_checkpoint("runs/veri/best", "my-org/fnc-veri776")  # doctest: +SKIP
    'https://huggingface.co/my-org/fnc-veri776/commit/...'
    """
    folder = Path(folder)
    if not folder.is_dir() or not (folder / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{folder} is not a checkpoint folder (expected {CONFIG_FILE} and {MODEL_FILE} in it)")
    if repo_id.count("/") > 1 or not repo_id.strip("/"):
        raise ValueError(f"REPO_ID must look like org/name, got {repo_id!r}")
    if (folder / STATE_FILE).is_file():
        read_checkpoint(folder)  # a damaged training folder is refused before anything is uploaded
    model = create_model(checkpoint_path=folder)
    if commit_message:
        kwargs["commit_message"] = commit_message
    return model.push_to_hub(repo_id, dataset=dataset, license=license, private=private, **kwargs)
