"""Model registry: ``register_model``, ``list_models`` and ``name.tag`` resolution (timm-style)."""

from __future__ import annotations

import difflib
import fnmatch
import sys
from collections.abc import Callable, Iterable
from dataclasses import replace

from ._pretrained import PretrainedCfg

__all__ = [
    "register_model",
    "list_models",
    "is_model",
    "model_entrypoint",
    "split_model_name_tag",
    "get_pretrained_cfg",
    "list_pretrained_tags",
    "unknown_model_error",
]

_model_entrypoints: dict[str, Callable] = {}
# architecture -> {tag: cfg}, in registration order; the first tag with weights is the default.
_pretrained_cfgs: dict[str, dict[str, PretrainedCfg]] = {}


def register_model(fn: Callable) -> Callable:
    """Register a model entry point under its function name.

    Pretrained configs are read from the defining module's ``default_cfgs`` dict
    (``{"<arch>.<tag>": PretrainedCfg(...)}``), which must be defined before the entry points.
    """
    name = fn.__name__
    if name in _model_entrypoints:
        raise RuntimeError(f"model {name!r} is registered twice")
    _model_entrypoints[name] = fn
    tags: dict[str, PretrainedCfg] = {}
    for key, cfg in getattr(sys.modules[fn.__module__], "default_cfgs", {}).items():
        arch, tag = split_model_name_tag(key)
        if arch == name:
            tags[tag] = replace(cfg, architecture=arch, tag=tag)
    if not tags:
        tags[""] = PretrainedCfg(architecture=name)
    _pretrained_cfgs[name] = tags
    return fn


def split_model_name_tag(name: str) -> tuple[str, str]:
    """``"fnc_resnet50.in1k"`` -> ``("fnc_resnet50", "in1k")``; no tag gives ``""``."""
    arch, _, tag = name.partition(".")
    return arch, tag


def unknown_model_error(name: str) -> ValueError:
    """A ValueError for an unregistered name that lists the closest registered names."""
    close = difflib.get_close_matches(name, list(_model_entrypoints), n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return ValueError(
        f"Unknown model {name!r}.{hint} Registered models: {', '.join(sorted(_model_entrypoints))} "
        "(see fnc.list_models())."
    )


def is_model(name: str) -> bool:
    """True if ``name`` (with or without ``.tag``) names a registered architecture."""
    return split_model_name_tag(name)[0] in _model_entrypoints


def model_entrypoint(name: str) -> Callable:
    """The registered entry point of an architecture; ValueError with suggestions if unknown."""
    arch = split_model_name_tag(name)[0]
    if arch not in _model_entrypoints:
        raise unknown_model_error(arch)
    return _model_entrypoints[arch]


def list_pretrained_tags(name: str) -> list[str]:
    """Tags of an architecture that have weights, default first."""
    arch = split_model_name_tag(name)[0]
    if arch not in _pretrained_cfgs:
        raise unknown_model_error(arch)
    return [tag for tag, cfg in _pretrained_cfgs[arch].items() if cfg.has_weights]


def get_pretrained_cfg(name: str) -> PretrainedCfg:
    """The config of ``arch.tag``; for a bare ``arch``, its default tag.

    Example:
        >>> get_pretrained_cfg("fnc_se_resnext101").input_size
        (3, 288, 384)
    """
    arch, tag = split_model_name_tag(name)
    if arch not in _pretrained_cfgs:
        raise unknown_model_error(arch)
    tags = _pretrained_cfgs[arch]
    if not tag:
        with_weights = [t for t, cfg in tags.items() if cfg.has_weights]
        return tags[with_weights[0] if with_weights else next(iter(tags))]
    if tag not in tags:
        known = ", ".join(f"{arch}.{t}" for t in tags if t) or "none"
        raise ValueError(f"Unknown tag {tag!r} for model {arch!r}; known tags: {known}.")
    return tags[tag]


def list_models(
    filter: str | Iterable[str] = "*",
    pretrained: bool = False,
    exclude_filters: str | Iterable[str] = (),
) -> list[str]:
    """Registered model names matching fnmatch patterns, sorted.

    Args:
        filter: a pattern or patterns, e.g. ``"fnc_*"``; a name matches if any pattern does.
        pretrained: list ``arch.tag`` names that have weights, instead of architectures.
        exclude_filters: patterns to drop from the result.

    Example:
        >>> list_models("bfe_*")
        ['bfe_resnet50', 'bfe_se_resnext101']
        >>> list_models("fnc_resnet50*", pretrained=True)
        ['fnc_resnet50.in1k']
    """
    includes = [filter] if isinstance(filter, str) else list(filter)
    excludes = [exclude_filters] if isinstance(exclude_filters, str) else list(exclude_filters)
    if pretrained:
        names = [f"{a}.{t}" for a, tags in _pretrained_cfgs.items() for t, c in tags.items() if c.has_weights]
    else:
        names = list(_model_entrypoints)

    # A pattern without a tag also matches that architecture's tagged names.
    def matches(name: str, patterns: list[str]) -> bool:
        arch = split_model_name_tag(name)[0]
        return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(arch, p) for p in patterns)

    return sorted(n for n in names if matches(n, includes) and not matches(n, excludes))
