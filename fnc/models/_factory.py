"""``create_model``: a registered name, a Hub repo, a folder or a file, to a model with its weights.

The factory resolves the source (:func:`~fnc.models._builder.resolve_source`) and calls the
architecture's registered entry point, which builds through
:func:`~fnc.models._builder.build_model_with_cfg`; ``ReIDModel.from_pretrained`` comes here too.
"""

from __future__ import annotations

import numbers
import os
from typing import Any

from torch import nn

from ._builder import WeightSource, resolve_source
from ._hub import HubOptions
from ._loader import CheckpointMismatchError
from ._registry import model_entrypoint

__all__ = ["create_model", "create_model_from_source"]


def create_model_from_source(source: WeightSource, expected_cls: type | None = None, **kwargs: Any) -> nn.Module:
    """Build ``source``'s architecture through its entry point and load its weights.

    Args:
        source: from :func:`~fnc.models._builder.resolve_source`.
        expected_cls: raise unless the model is an instance of this class
            (``FNC.from_pretrained`` on a BFE checkpoint).
        **kwargs: architecture arguments; they override those the source records, which
            override those the weights' cfg needs (``cfg.model_args``).

    Raises:
        CheckpointMismatchError: the model is not an ``expected_cls``.

    Example:
        >>> from fnc.models._builder import resolve_source
        >>> create_model_from_source(resolve_source("baseline_resnet50"), num_classes=3).num_classes
        3
    """
    cfg = source.cfg
    args = {**cfg.model_args, **source.model_args, **kwargs}
    model = model_entrypoint(cfg.architecture)(pretrained=source.load, pretrained_cfg=cfg, hub=source.hub, **args)
    if expected_cls is not None and not isinstance(model, expected_cls):
        where = cfg.file if cfg.file is not None else f"hf-hub:{cfg.hf_hub_id}"
        raise CheckpointMismatchError(
            f"{where!r} holds a {cfg.architecture} checkpoint ({type(model).__name__}), not a "
            f"{expected_cls.__name__}; load it with fnc.create_model(...) or "
            f"{type(model).__name__}.from_pretrained(...)"
        )
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
        pretrained: load the tag's weights (the default tag when none is given): each
            model's ``.in1k`` ImageNet backbone (timm's Hub repos; IBN-Net's release for the
            IBN-a models), heads initialised; or a trained re-ID model, e.g. fast-reid's
            ``sbs_resnet50_ibn.fastreid_veri`` (see ``fnc.list_models(pretrained=True)``).
        num_classes: identities of the classifier; 0 = none (feature extractor). A checkpoint's
            classifier of another size is dropped and re-initialised (said in the log).
        checkpoint_path: a local ``.safetensors`` file (timm backbone or whole model), a folder
            written by ``save_pretrained``, or a third-party ``.pth`` / ``.pt`` (fast-reid,
            reid-strong-baseline / AICity DMT, IBN-Net; read with
            ``torch.load(weights_only=True)`` only, format told from its keys, converted once
            to a cached safetensors file); used instead of the tag's weights.
        cache_dir: Hugging Face cache folder (default: HF_HUB_CACHE); release ``.pth`` files
            and their conversions go to ``<cache_dir>/fnc-reid`` (default:
            ``$HF_HUB_CACHE/../fnc-reid``).
        revision: branch, tag or commit of the Hub repo.
        **kwargs: architecture arguments such as ``last_stride``, ``separate``, ``fuse``; they
            override those a tag's weights need (e.g. ``stem_pool`` / ``pooling`` of the
            ``.fastreid_*`` tags).

    Returns:
        The model, in train mode like any new ``nn.Module``.

    Raises:
        PretrainedNotFoundError: no such repo, revision, file, or cached copy when offline.
        UnsafeCheckpointError: a pickle where safetensors is expected (refused, never
            unpickled), or a ``.pth`` that needs a global besides tensors (refused by
            ``weights_only`` loading; the global is named).
        CorruptCheckpointError: a truncated or corrupted file.
        CheckpointMismatchError: weights of another architecture (missing / unexpected keys).
        TypeError: ``num_classes`` is not an int (a float or a bool).
        ValueError: ``num_classes`` is negative.

    Example:
        >>> import fnc, torch
        >>> model = fnc.create_model("fnc_resnet50", num_classes=10).eval()
        >>> model(torch.randn(2, 3, 64, 64)).shape
        torch.Size([2, 1536])
        >>> model = fnc.create_model("fnc_se_resnext101", pretrained=True)  # doctest: +SKIP
        >>> model = fnc.create_model("sbs_resnet50_ibn.fastreid_veri", pretrained=True)  # doctest: +SKIP
    """
    # Checked before anything is resolved or built, so the error names the argument, not nn.Linear.
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
        raise TypeError(f"num_classes must be an int (identities of the classifier, 0 = none), got {num_classes!r}")
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0 (0 = no classifier), got {num_classes}")
    hub = HubOptions(revision=revision, cache_dir=cache_dir)
    source = resolve_source(model_name, pretrained, checkpoint_path, hub)
    return create_model_from_source(source, num_classes=num_classes, **kwargs).train()
