"""One builder for every model, and one place that decides where its weights come from.

Every weight source goes the same way::

    resolve_source(name, pretrained, checkpoint_path, hub)  ->  WeightSource(cfg, model_args, load, hub)
    entry point -> build_model_with_cfg(cls, variant, pretrained=load, pretrained_cfg=cfg, hub=hub)
                -> load_pretrained(model, cfg, hub)  ->  _loader.load_cfg_weights (strict, safetensors only)

:func:`resolve_source` has one branch per source a user can name:

- ``"hf-hub:org/repo[@rev]"``: its ``config.json`` names the architecture and its arguments; the
  cfg's ``hf_hub_id`` is the repo;
- a ``save_pretrained`` folder as ``checkpoint_path``: the same, read from the folder; the cfg's
  ``file`` is the folder's ``model.safetensors``. A trainer's checkpoint folder carries a manifest
  (:mod:`fnc.models._manifest`), which is verified first;
- a ``.safetensors`` file as ``checkpoint_path``: the registered tag's cfg with ``file`` set;
- a ``.pth`` / ``.pt`` file as ``checkpoint_path`` (fast-reid, reid-strong-baseline / DMT, IBN-Net,
  told from its keys): the tag's cfg with ``file`` set and the format's weights format, plus the
  architecture arguments that code base's models have (fast-reid's ``stem_pool="ceil"``); telling
  the format reads it once with ``torch.load(weights_only=True)`` and converts it to a
  safetensors file cached by content (:mod:`fnc.models._pth`), which is what gets loaded;
- a registered ``arch`` / ``arch.tag``: the registry's cfg (``hf_hub_id`` for ``pretrained=True``).

:func:`load_pretrained` then fetches what the cfg points at, in one chain: ``cfg.file`` (a local
safetensors file, or a ``.pth``'s cached conversion) before ``cfg.hf_hub_id`` (downloaded through the Hugging Face cache with the
call's :class:`~fnc.models._hub.HubOptions`) before ``cfg.url`` (a release ``.pth`` on plain
HTTP(S), downloaded once into the fnc-reid cache and converted there once to safetensors). Every
link ends in a safetensors file read by the one strict loader.
"""

from __future__ import annotations

import difflib
import inspect
import os
import typing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import nn

from ._hub import HF_HUB_PREFIX, HubOptions, download, hub_location, parse_hf_hub_name, read_hub_config
from ._loader import (
    PICKLE_SUFFIXES,
    CheckpointMismatchError,
    PretrainedNotFoundError,
    check_safetensors_name,
    load_cfg_weights,
    read_json,
)
from ._manifest import has_manifest, verify_manifest
from ._pretrained import CONFIG_NAME, WEIGHTS_NAME, PretrainedCfg, cfg_from_config
from ._pth import is_pth, pth_file_weights, url_weights
from ._registry import get_pretrained_cfg, is_model, list_pretrained_tags, model_entrypoint, split_model_name_tag

__all__ = ["WeightSource", "build_model_with_cfg", "load_pretrained", "model_arguments", "resolve_source"]


@dataclass(frozen=True)
class WeightSource:
    """A resolved weight source: what to build and where its weights are.

    Attributes:
        cfg: the weights' config; ``cfg.architecture`` is the model to build, ``cfg.file`` or
            ``cfg.hf_hub_id`` where the weights are.
        model_args: constructor arguments the source records (a published ``config.json``, or
            those a ``.pth`` file's code base implies); empty for a registered tag (its
            ``cfg.model_args`` say what its weights need).
        load: whether the weights are loaded (always, except a tag without ``pretrained=True``).
        hub: Hub options for fetching them (the revision of ``hf-hub:org/repo@rev`` included).

    Example:
        >>> WeightSource(PretrainedCfg(architecture="fnc_resnet50", file="w.safetensors")).load
        True
    """

    cfg: PretrainedCfg
    model_args: dict[str, Any] = field(default_factory=dict)
    load: bool = True
    hub: HubOptions = HubOptions()


def resolve_source(
    model_name: str | None = None,
    pretrained: bool = False,
    checkpoint_path: str | os.PathLike | None = None,
    hub: HubOptions = HubOptions(),
) -> WeightSource:
    """Turn any weight source into the :class:`PretrainedCfg` to build and load with.

    Args:
        model_name: ``arch``, ``arch.tag`` or ``"hf-hub:org/repo[@revision]"``; may be None when
            ``checkpoint_path`` is a ``save_pretrained`` folder.
        pretrained: load the tag's weights (a registered name only).
        checkpoint_path: a ``.safetensors`` file, a ``save_pretrained`` folder, or a ``.pth`` /
            ``.pt`` of fast-reid, reid-strong-baseline / AICity DMT or IBN-Net.
        hub: how to reach the Hub.

    Raises:
        ValueError: no source, an unknown name, or two conflicting ones.
        PretrainedNotFoundError: a folder or repo without ``config.json`` / ``model.safetensors``.
        UnsafeCheckpointError: a folder holding only pickle weights; a ``.pth`` whose pickle
            needs a global besides tensors (it could run code).
        CorruptCheckpointError: a truncated ``.pth``.
        CheckpointMismatchError: a published config naming another or an unknown architecture;
            a ``.pth`` of no known format, or whose ``pixel_mean`` / ``pixel_std`` differ from the
            tag's mean / std.
        CorruptCheckpointError: a folder whose manifest (``trainer_state.json``, written by the
            trainer) does not match its files; the files are named.

    Example:
        >>> src = resolve_source("fnc_resnet50", pretrained=True)
        >>> src.cfg.name, src.cfg.hf_hub_id, src.load
        ('fnc_resnet50.in1k', 'timm/resnet50.tv_in1k', True)
    """
    if model_name is not None and model_name.startswith(HF_HUB_PREFIX):
        repo_id, name_revision = parse_hf_hub_name(model_name)
        if name_revision and hub.revision and name_revision != hub.revision:
            raise ValueError(f"two revisions given: {model_name!r} and revision={hub.revision!r}; pass one")
        if checkpoint_path is not None:
            raise ValueError(f"pass either {model_name!r} or checkpoint_path=, not both")
        hub = replace(hub, revision=name_revision or hub.revision)
        config = read_hub_config(repo_id, hub)
        return _published(config, hub_location(repo_id, hub.revision), None, hub, hf_hub_id=repo_id)
    if checkpoint_path is not None and os.path.isdir(checkpoint_path):
        folder = os.fspath(checkpoint_path)
        if has_manifest(folder):
            # A trainer's checkpoint folder says what its files must be: never load one that differs.
            verify_manifest(folder)
        config = _folder_config(folder)
        return _published(config, repr(folder), model_name, hub, file=_folder_weights(folder))
    if model_name is None:
        raise ValueError(
            "create_model needs a model name (see fnc.list_models()), an 'hf-hub:org/repo' id, or "
            "checkpoint_path=<folder written by save_pretrained>"
        )
    cfg = get_pretrained_cfg(model_name)
    if checkpoint_path is not None and is_pth(checkpoint_path):
        # Converted (or found converted) now: the format says what the weights are and which
        # architecture arguments they need before the model is built.
        fmt = pth_file_weights(checkpoint_path, cfg, hub)[1]
        local = replace(
            cfg,
            file=os.fspath(checkpoint_path),
            hf_hub_id=None,
            url=None,
            weights_format=fmt.weights_format,
            classifier=fmt.classifier,
            source=f"{fmt.description} checkpoint {os.path.basename(checkpoint_path)}",
        )
        if not split_model_name_tag(model_name)[1]:
            # The default tag describes other weights (an ImageNet backbone); a bare name claims nothing.
            local = replace(local, dataset="", metrics={}, license="")
        return WeightSource(local, dict(fmt.model_args), hub=hub)
    if checkpoint_path is not None:
        return WeightSource(replace(cfg, file=os.fspath(checkpoint_path)), hub=hub)
    return WeightSource(cfg, load=pretrained, hub=hub)


def _folder_config(folder: str) -> dict:
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise PretrainedNotFoundError(
            f"{folder!r} has no {CONFIG_NAME}; a checkpoint folder is what save_pretrained() writes "
            f"({CONFIG_NAME} + {WEIGHTS_NAME}); for a bare weights file, create the model by name and "
            "pass checkpoint_path=<file.safetensors>"
        )
    return read_json(path)


def _folder_weights(folder: str) -> str:
    path = Path(folder) / WEIGHTS_NAME
    if not path.is_file():
        pickles = sorted(p.name for p in Path(folder).iterdir() if p.name.lower().endswith(PICKLE_SUFFIXES))
        if pickles:
            check_safetensors_name(pickles[0], f" in {folder!r} (there is no {WEIGHTS_NAME})")
        raise PretrainedNotFoundError(f"{folder!r} has no {WEIGHTS_NAME}")
    return str(path)


def _published(config: dict, where: str, model_name: str | None, hub: HubOptions, **location: str) -> WeightSource:
    """The source of a published checkpoint (folder or Hub repo) from its ``config.json``."""
    arch = config.get("architecture")
    if not isinstance(arch, str) or not is_model(arch):
        raise CheckpointMismatchError(
            f"{CONFIG_NAME} of {where} names architecture {arch!r}, which this fnc-reid does not have "
            "(fnc.list_models() lists them; a newer fnc-reid may)"
        )
    asked = None if model_name is None else split_model_name_tag(model_name)[0]
    if asked is not None and asked != arch:
        raise CheckpointMismatchError(
            f"checkpoint {where} holds a {arch} checkpoint, not {asked}; create it without a model "
            "name (its config names the architecture)"
        )
    args = {k: v for k, v in config.items() if k not in ("architecture", "pretrained_cfg")}
    return WeightSource(cfg_from_config(config, arch, **location), args, load=True, hub=hub)


def _weights_file(cfg: PretrainedCfg, hub: HubOptions) -> tuple[str, str]:
    """The local path of the weights ``cfg`` points at, and the name messages give them."""
    if cfg.file is not None and is_pth(cfg.file):
        return str(pth_file_weights(cfg.file, cfg, hub)[0]), repr(cfg.file)
    if cfg.file is not None:
        return cfg.file, repr(cfg.file)
    if cfg.hf_hub_id is not None:
        return download(cfg.hf_hub_id, cfg.hf_hub_filename, hub), hub_location(cfg.hf_hub_id, hub.revision)
    if cfg.url is not None:
        return str(url_weights(cfg, hub)), cfg.url
    tags = ", ".join(f"{cfg.architecture}.{t}" for t in list_pretrained_tags(cfg.architecture)) or "none"
    raise PretrainedNotFoundError(
        f"{cfg.name} has no pretrained weights (tags with weights: {tags}); pick a tag, or pass "
        "checkpoint_path=<.safetensors file, save_pretrained folder or third-party .pth>"
    )


def load_pretrained(
    model: nn.Module, pretrained_cfg: PretrainedCfg | None = None, hub: HubOptions = HubOptions()
) -> None:
    """Fill ``model`` with the weights ``pretrained_cfg`` (default: ``model.pretrained_cfg``) points at.

    ``cfg.file`` (a local ``.safetensors`` file) wins over ``cfg.hf_hub_id``, fetched through the
    Hugging Face cache, which wins over ``cfg.url``, a release ``.pth`` downloaded once into the
    fnc-reid cache and converted there once to safetensors; loading is strict (see
    :mod:`fnc.models._loader`).

    Example:
        >>> import fnc
        >>> model = fnc.create_model("fnc_resnet50")
        >>> load_pretrained(model, model.pretrained_cfg)  # doctest: +SKIP
    """
    cfg = pretrained_cfg if pretrained_cfg is not None else model.pretrained_cfg
    path, source = _weights_file(cfg, hub)
    load_cfg_weights(model, path, cfg, source)


def constructor_arguments(model_cls: type) -> dict[str, inspect.Parameter]:
    """The parameters of ``model_cls.__init__`` (without ``self``), annotations resolved to types.

    Example:
        >>> from fnc.models import FNC
        >>> constructor_arguments(FNC)["separate"].annotation
        <class 'bool'>
    """
    signature = inspect.signature(model_cls.__init__)
    hints = typing.get_type_hints(model_cls.__init__)
    return {
        name: param.replace(annotation=hints.get(name, param.annotation))
        for name, param in signature.parameters.items()
        if name != "self" and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD)
    }


def model_arguments(name: str) -> dict[str, inspect.Parameter]:
    """The constructor arguments a registered architecture accepts as ``create_model(name, **kwargs)``.

    The class is the entry point's return annotation (every entry point builds one class through
    :func:`build_model_with_cfg`); nothing is built.

    Args:
        name: ``arch`` or ``arch.tag``.

    Returns:
        Parameter name -> :class:`inspect.Parameter` with the annotation resolved to a type and
        the class default (an entry point may preset some, e.g. ``backbone``).

    Raises:
        ValueError: an unknown architecture (close names listed).

    Example:
        >>> model_arguments("fnc_resnet50")["fuse"].default
        'multiply'
    """
    entry = model_entrypoint(name)
    model_cls = typing.get_type_hints(entry).get("return")
    if not isinstance(model_cls, type):
        raise TypeError(f"entry point {entry.__name__} must annotate the model class it returns")
    return constructor_arguments(model_cls)


def _check_kwargs(model_cls: type, variant: str, kwargs: dict[str, Any]) -> None:
    accepted = list(constructor_arguments(model_cls))
    for key in kwargs:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{variant} got an unexpected argument {key!r}.{hint} It accepts: {', '.join(accepted)}.")


def build_model_with_cfg(
    model_cls: type[nn.Module],
    variant: str,
    pretrained: bool = False,
    pretrained_cfg: PretrainedCfg | None = None,
    hub: HubOptions = HubOptions(),
    **kwargs: Any,
) -> nn.Module:
    """Construct ``model_cls(**kwargs)``, attach its pretrained config, and load weights if asked.

    Every entry point goes through here, so argument checking and weight loading exist once.

    Args:
        model_cls: the model class.
        variant: the registered name, e.g. ``"fnc_resnet50"``.
        pretrained: load the weights ``pretrained_cfg`` points at (see :func:`load_pretrained`).
        pretrained_cfg: the weights' config (default: the variant's default tag).
        hub: how to reach the Hub.
        **kwargs: constructor arguments.

    Example:
        >>> from fnc.models import Baseline
        >>> build_model_with_cfg(Baseline, "baseline_resnet50", backbone="resnet50").pretrained_cfg.name
        'baseline_resnet50.in1k'
    """
    _check_kwargs(model_cls, variant, kwargs)
    model = model_cls(**kwargs)
    model.pretrained_cfg = pretrained_cfg if pretrained_cfg is not None else get_pretrained_cfg(variant)
    if pretrained:
        load_pretrained(model, model.pretrained_cfg, hub)
    return model
