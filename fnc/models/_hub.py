"""Hugging Face Hub I/O: the endpoint, ``hf-hub:`` names, downloads with clear errors, published configs.

Downloads go through ``hf_hub_download``, so HF_ENDPOINT, HF_HUB_OFFLINE, HF_TOKEN and the shared
cache behave as in every other Hugging Face library; its errors become fnc-reid errors that name
the repo, file and revision and say how to fix the problem. The five per-call Hub arguments
travel together as one :class:`HubOptions`. Nothing here builds a model: that is
:mod:`fnc.models._builder`; the ``save_pretrained`` / ``from_pretrained`` mixin is
:mod:`fnc.models._mixin`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub import constants as hf_constants
from huggingface_hub.utils import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from ._loader import (
    PICKLE_SUFFIXES,
    CorruptCheckpointError,
    PretrainedNotFoundError,
    UnsafeCheckpointError,
    check_safetensors_name,
    read_json,
)
from ._pretrained import CONFIG_NAME, WEIGHTS_NAME

__all__ = [
    "HF_HUB_PREFIX",
    "HubOptions",
    "hub_endpoint",
    "parse_hf_hub_name",
    "hub_location",
    "download",
    "read_hub_config",
]

HF_HUB_PREFIX = "hf-hub:"


@dataclass(frozen=True)
class HubOptions:
    """How to reach the Hub for one call: the arguments ``hf_hub_download`` takes besides the file.

    Attributes:
        revision: branch, tag or commit sha (None: ``main``).
        cache_dir: Hugging Face cache folder (None: HF_HUB_CACHE); release ``.pth`` files and
            their safetensors conversions go to its ``fnc-reid/`` subfolder (None: beside
            HF_HUB_CACHE, see :func:`fnc.models._pth.cache_folder`).
        force_download: download again even if cached.
        local_files_only: use the cache only, never the network.
        token: Hub token (None: HF_TOKEN or the stored login; False: none).

    Example:
        >>> HubOptions(revision="v1").revision
        'v1'
    """

    revision: str | None = None
    cache_dir: str | os.PathLike | None = None
    force_download: bool = False
    local_files_only: bool = False
    token: str | bool | None = None


def hub_endpoint() -> str:
    """The Hub endpoint in use (HF_ENDPOINT, default https://huggingface.co).

    Example:
        >>> hub_endpoint().startswith("http")
        True
    """
    return hf_constants.ENDPOINT


def parse_hf_hub_name(name: str) -> tuple[str, str | None]:
    """``"hf-hub:org/repo@rev"`` -> ``("org/repo", "rev")``; no ``@`` gives revision None.

    Example:
        >>> parse_hf_hub_name("hf-hub:org/fnc-cityflow@v1")
        ('org/fnc-cityflow', 'v1')
    """
    repo = name[len(HF_HUB_PREFIX) :] if name.startswith(HF_HUB_PREFIX) else name
    repo, _, revision = repo.partition("@")
    if not repo or repo.count("/") > 1:
        raise ValueError(f"{name!r} is not a Hub model id; expected 'hf-hub:org/repo' or 'hf-hub:org/repo@revision'")
    return repo, revision or None


def hub_location(repo_id: str, revision: str | None) -> str:
    """``repo@revision`` (or the bare repo id), as messages name a Hub source.

    Example:
        >>> hub_location("org/repo", "v1")
        'org/repo@v1'
    """
    return f"{repo_id}@{revision}" if revision else repo_id


def _pickles_in_repo(repo_id: str, revision: str | None, token: str | bool | None) -> list[str]:
    try:
        files = HfApi(token=token).list_repo_files(repo_id, revision=revision)
    except Exception:  # only a hint for the error message; the original error is what matters
        return []
    return [f for f in files if f.lower().endswith(PICKLE_SUFFIXES)]


def _hub_error(err: Exception, repo_id: str, filename: str, hub: HubOptions) -> Exception:
    """An fnc-reid error for a failed ``hf_hub_download``, naming what was asked and the fix."""
    revision = hub.revision
    what = f"{filename!r} of {hub_location(repo_id, revision)}"
    endpoint = hub_endpoint()
    # LocalEntryNotFoundError first: in huggingface_hub < 1.0 it subclasses EntryNotFoundError.
    if isinstance(err, (LocalEntryNotFoundError, OfflineModeIsEnabled)):
        cache = hub.cache_dir or hf_constants.HF_HUB_CACHE
        offline = hf_constants.HF_HUB_OFFLINE
        reason = "offline mode is on (HF_HUB_OFFLINE=1)" if offline else f"{endpoint} cannot be reached"
        return PretrainedNotFoundError(
            f"{what} is not in the cache at {cache} and {reason}. Go online once to download it "
            f"(it is cached for later offline use), point cache_dir= at a cache that holds it, or "
            f"pass checkpoint_path=<local .safetensors file>"
        )
    if isinstance(err, GatedRepoError):
        return PretrainedNotFoundError(
            f"{repo_id} on {endpoint} is gated or private and this request has no access; "
            "accept its terms on the Hub and set HF_TOKEN (or run `hf auth login`)"
        )
    if isinstance(err, RepositoryNotFoundError):
        return PretrainedNotFoundError(
            f"Hub repository {repo_id!r} not found on {endpoint}; check the name "
            "(fnc.list_models(pretrained=True) lists the built-in tags), or set HF_TOKEN if it is private"
        )
    if isinstance(err, RevisionNotFoundError):
        return PretrainedNotFoundError(
            f"revision {revision!r} not found in Hub repository {repo_id!r}; use an existing branch, "
            "tag or commit sha, or no revision for 'main'"
        )
    if isinstance(err, EntryNotFoundError):
        if filename == WEIGHTS_NAME:
            pickles = _pickles_in_repo(repo_id, revision, hub.token)
            if pickles:
                return UnsafeCheckpointError(
                    f"Hub repository {hub_location(repo_id, revision)} has no {WEIGHTS_NAME}, only pickle "
                    f"weights ({', '.join(pickles)}); fnc-reid refuses pickle files for safety and "
                    "does not download them. Ask the owner for a safetensors file, or convert it "
                    "yourself where you trust it (safetensors.torch.save_file) and pass "
                    "checkpoint_path="
                )
        return PretrainedNotFoundError(
            f"file {filename!r} not found in Hub repository {hub_location(repo_id, revision)}"
        )
    return err


def download(repo_id: str, filename: str, hub: HubOptions = HubOptions()) -> str:
    """``hf_hub_download`` with fnc-reid errors; returns the local (cached) path.

    Args:
        repo_id: ``org/repo``.
        filename: a ``.safetensors`` file or ``config.json`` (a pickle name is refused unfetched).
        hub: revision, cache and token of this call.

    Raises:
        PretrainedNotFoundError: no such repo, revision or file; or offline and not cached.
        UnsafeCheckpointError: the file is a pickle, or the repo only has pickle weights.

    Example:
        >>> path = download("timm/resnet50.tv_in1k", "model.safetensors")  # doctest: +SKIP
    """
    if filename != CONFIG_NAME:
        check_safetensors_name(filename, f" in Hub repository {hub_location(repo_id, hub.revision)}")
    try:
        return hf_hub_download(
            repo_id,
            filename,
            revision=hub.revision,
            cache_dir=hub.cache_dir,
            force_download=hub.force_download,
            local_files_only=hub.local_files_only,
            token=hub.token,
        )
    except (HfHubHTTPError, EntryNotFoundError, LocalEntryNotFoundError, OfflineModeIsEnabled) as err:
        mapped = _hub_error(err, repo_id, filename, hub)
        if mapped is err:
            raise
        raise mapped from err


def read_hub_config(repo_id: str, hub: HubOptions = HubOptions()) -> dict:
    """The ``config.json`` of a checkpoint published on the Hub with ``push_to_hub``.

    Raises:
        PretrainedNotFoundError: no such repo or revision, or the repo has no ``config.json``.
        CorruptCheckpointError: the config is no JSON object or names no architecture.

    Example:
        >>> read_hub_config("my-org/fnc-se-resnext101-cityflow")["architecture"]  # doctest: +SKIP
        'fnc_se_resnext101'
    """
    where = hub_location(repo_id, hub.revision)
    try:
        path = download(repo_id, CONFIG_NAME, hub)
    except PretrainedNotFoundError as err:
        if f"file {CONFIG_NAME!r} not found" in str(err):
            raise PretrainedNotFoundError(
                f"Hub repository {where} has no {CONFIG_NAME}, so it was not published with fnc-reid "
                "(model.save_pretrained / push_to_hub); for a bare weights file, create the model by "
                "name and pass checkpoint_path="
            ) from err
        raise
    config = read_json(path, f" of Hub repository {where}")
    if not isinstance(config.get("architecture"), str):
        raise CorruptCheckpointError(
            f"{CONFIG_NAME} of {where} names no 'architecture'; it was not written by fnc-reid's "
            "save_pretrained / push_to_hub"
        )
    return config
