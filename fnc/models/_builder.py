"""One builder for every model, ``create_model``, and where every model's weights come from.

Weights come from one of three places, tried in this order: a local ``checkpoint_path`` (a
``.safetensors`` file, or a folder written by ``save_pretrained``), a published checkpoint
(``hf-hub:org/repo``: its ``config.json`` rebuilds the architecture), or the tag's pretrained
config (``pretrained=True``; today every tag is an ImageNet backbone from timm's Hub repos).
All of them end in the one strict loader of :mod:`fnc.models._loader`.
"""

from __future__ import annotations

import difflib
import inspect
import os
from typing import Any

from torch import nn

from ._hub import (
    HF_HUB_PREFIX,
    cfg_from_config,
    download,
    parse_hf_hub_name,
    published_weights,
    read_published_config,
)
from ._loader import CheckpointMismatchError, PretrainedNotFoundError, load_cfg_weights, read_json
from ._pretrained import PretrainedCfg
from ._registry import (
    get_pretrained_cfg,
    is_model,
    list_pretrained_tags,
    model_entrypoint,
    split_model_name_tag,
    unknown_model_error,
)

__all__ = ["build_model_with_cfg", "create_model", "create_model_from_published", "load_pretrained"]


def _check_kwargs(model_cls: type, variant: str, kwargs: dict[str, Any]) -> None:
    accepted = [p for p in inspect.signature(model_cls.__init__).parameters if p != "self"]
    for key in kwargs:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"{variant} got an unexpected argument {key!r}.{hint} It accepts: {', '.join(accepted)}."
            )


def load_pretrained(
    model: nn.Module,
    pretrained_cfg: PretrainedCfg,
    checkpoint_path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    revision: str | None = None,
) -> None:
    """Fill ``model`` with the weights ``pretrained_cfg`` names, or those at ``checkpoint_path``.

    A local ``checkpoint_path`` wins over the Hub: a ``.safetensors`` file (timm backbone keys
    or a whole fnc-reid model) or a ``save_pretrained`` folder. Otherwise the file is fetched
    from ``pretrained_cfg.hf_hub_id`` through the Hugging Face cache.

    Example:
        >>> import fnc
        >>> model = fnc.create_model("fnc_resnet50")
        >>> load_pretrained(model, model.pretrained_cfg)  # doctest: +SKIP
    """
    cfg = pretrained_cfg
    if checkpoint_path is not None:
        path = os.fspath(checkpoint_path)
        if os.path.isdir(path):
            _check_folder_architecture(path, cfg.architecture)
            path = published_weights(path)
        load_cfg_weights(model, path, cfg, repr(os.fspath(checkpoint_path)))
        return
    if not cfg.has_weights:
        tags = ", ".join(f"{cfg.architecture}.{t}" for t in list_pretrained_tags(cfg.architecture)) or "none"
        raise PretrainedNotFoundError(
            f"{cfg.name} has no pretrained weights (tags with weights: {tags}); pick a tag, or pass "
            "checkpoint_path=<.safetensors file or save_pretrained folder>"
        )
    path = download(cfg.hf_hub_id, cfg.hf_hub_filename, revision=revision, cache_dir=cache_dir)
    source = f"{cfg.hf_hub_id}@{revision}" if revision else cfg.hf_hub_id
    load_cfg_weights(model, path, cfg, source)


def _check_folder_architecture(folder: str, architecture: str) -> None:
    config_path = os.path.join(folder, "config.json")
    if architecture and os.path.isfile(config_path):
        saved = read_json(config_path).get("architecture")
        if saved and saved != architecture:
            raise CheckpointMismatchError(
                f"checkpoint folder {folder!r} holds a {saved} checkpoint, not {architecture}; load it "
                f"with fnc.create_model(checkpoint_path={folder!r}) (its config names the architecture)"
            )


def build_model_with_cfg(
    model_cls: type[nn.Module],
    variant: str,
    pretrained: bool = False,
    pretrained_cfg: PretrainedCfg | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    revision: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Construct ``model_cls(**kwargs)``, attach its pretrained config, and load weights if asked.

    Every entry point goes through here, so argument checking and weight loading exist once.
    Weights are loaded when ``pretrained`` is true or a ``checkpoint_path`` is given (see
    :func:`load_pretrained`).
    """
    _check_kwargs(model_cls, variant, kwargs)
    model = model_cls(**kwargs)
    model.pretrained_cfg = pretrained_cfg if pretrained_cfg is not None else get_pretrained_cfg(variant)
    if pretrained or checkpoint_path is not None:
        load_pretrained(model, model.pretrained_cfg, checkpoint_path, cache_dir, revision)
    return model


def create_model_from_published(
    source: str,
    model_name: str | None = None,
    config: dict | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
    token: str | bool | None = None,
    expected_cls: type | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Rebuild and load a published checkpoint: a ``save_pretrained`` folder or a Hub repo id.

    ``config.json`` names the architecture and its arguments; ``kwargs`` override them (e.g.
    ``num_classes``; a classifier of another size is re-initialised). ``model_name``, if given,
    must be the architecture the config names.

    Example:
        >>> import fnc, tempfile
        >>> folder = tempfile.mkdtemp()
        >>> fnc.create_model("baseline_resnet50", num_classes=3).save_pretrained(folder)
        >>> create_model_from_published(folder).num_classes
        3
    """
    is_dir = os.path.isdir(source)
    hub_args = dict(revision=revision, cache_dir=cache_dir, force_download=force_download,
                    local_files_only=local_files_only, token=token)
    if config is None or "architecture" not in config:
        config, where = read_published_config(source, **hub_args)
    else:
        where = repr(source) if is_dir else (f"{source}@{revision}" if revision else source)
    arch = config.get("architecture")
    if not isinstance(arch, str) or not is_model(arch):
        raise CheckpointMismatchError(
            f"config.json of {where} names architecture {arch!r}, which this fnc-reid does not have "
            "(fnc.list_models() lists them; a newer fnc-reid may)"
        )
    if model_name is not None and split_model_name_tag(model_name)[0] != arch:
        raise CheckpointMismatchError(
            f"{where} holds a {arch} checkpoint, not {split_model_name_tag(model_name)[0]}; create it "
            f"without a model name (its config names the architecture)"
        )
    args = {k: v for k, v in config.items() if k not in ("architecture", "pretrained_cfg")}
    args.update(kwargs)
    cfg = cfg_from_config(config, arch, None if is_dir else source)
    model = model_entrypoint(arch)(pretrained=False, pretrained_cfg=cfg, **args)
    if expected_cls is not None and not isinstance(model, expected_cls):
        raise CheckpointMismatchError(
            f"{where} holds a {arch} checkpoint ({type(model).__name__}), not a {expected_cls.__name__}; "
            f"load it with fnc.create_model({('hf-hub:' + source) if not is_dir else source!r})"
        )
    path = published_weights(source, **hub_args)
    load_cfg_weights(model, path, cfg, where, name=arch)
    return model


def create_model(
    model_name: str | None = None,
    pretrained: bool = False,
    num_classes: int = 0,
    checkpoint_path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    revision: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Create a registered model by name, timm-style, with weights from the Hub or a local file.

    Args:
        model_name: ``arch`` or ``arch.tag`` (see :func:`fnc.list_models`), or
            ``"hf-hub:org/repo"`` / ``"hf-hub:org/repo@revision"`` for a checkpoint published
            with ``push_to_hub`` (its config names the architecture; its weights are always
            loaded). May be omitted when ``checkpoint_path`` is a ``save_pretrained`` folder.
        pretrained: load the tag's weights (the default tag when none is given): today each
            model's ``.in1k`` ImageNet backbone from timm's Hub repos; heads are initialised.
        num_classes: identities of the classifier; 0 = none (feature extractor). A checkpoint's
            classifier of another size is dropped and re-initialised (said in the log).
        checkpoint_path: a local ``.safetensors`` file (timm backbone or whole model) or a folder
            written by ``save_pretrained``; used instead of the Hub.
        cache_dir: Hugging Face cache folder (default: HF_HUB_CACHE).
        revision: branch, tag or commit of the Hub repo.
        **kwargs: architecture arguments such as ``last_stride``, ``separate``, ``fuse``.

    Returns:
        The model, in train mode like any new ``nn.Module``.

    Raises:
        PretrainedNotFoundError: no such repo, revision, file, or cached copy when offline.
        UnsafeCheckpointError: a pickle checkpoint (refused, never unpickled).
        CorruptCheckpointError: a truncated or corrupted safetensors file.
        CheckpointMismatchError: weights of another architecture (missing / unexpected keys).

    Example:
        >>> import fnc, torch
        >>> model = fnc.create_model("fnc_resnet50", num_classes=10).eval()
        >>> model(torch.randn(2, 3, 64, 64)).shape
        torch.Size([2, 1536])
        >>> model = fnc.create_model("fnc_se_resnext101", pretrained=True)  # doctest: +SKIP
    """
    if model_name is not None and model_name.startswith(HF_HUB_PREFIX):
        repo_id, name_revision = parse_hf_hub_name(model_name)
        if name_revision and revision and name_revision != revision:
            raise ValueError(f"two revisions given: {model_name!r} and revision={revision!r}; pass one")
        if checkpoint_path is not None:
            raise ValueError(f"pass either {model_name!r} or checkpoint_path=, not both")
        model = create_model_from_published(
            repo_id, revision=name_revision or revision, cache_dir=cache_dir, num_classes=num_classes, **kwargs
        )
        return model.train()
    if checkpoint_path is not None and os.path.isdir(checkpoint_path):
        model = create_model_from_published(
            os.fspath(checkpoint_path), model_name=model_name, num_classes=num_classes, **kwargs
        )
        return model.train()
    if model_name is None:
        raise ValueError(
            "create_model needs a model name (see fnc.list_models()), an 'hf-hub:org/repo' id, or "
            "checkpoint_path=<folder written by save_pretrained>"
        )
    arch, _ = split_model_name_tag(model_name)
    if not is_model(arch):
        raise unknown_model_error(arch)
    cfg = get_pretrained_cfg(model_name)
    return model_entrypoint(arch)(
        pretrained=pretrained,
        pretrained_cfg=cfg,
        num_classes=num_classes,
        checkpoint_path=checkpoint_path,
        cache_dir=cache_dir,
        revision=revision,
        **kwargs,
    )
