"""One builder for every model, and ``create_model``."""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from torch import nn

from ._pretrained import PretrainedCfg
from ._registry import get_pretrained_cfg, is_model, model_entrypoint, split_model_name_tag, unknown_model_error

__all__ = ["build_model_with_cfg", "create_model"]


def _check_kwargs(model_cls: type, variant: str, kwargs: dict[str, Any]) -> None:
    accepted = [p for p in inspect.signature(model_cls.__init__).parameters if p != "self"]
    for key in kwargs:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"{variant} got an unexpected argument {key!r}.{hint} It accepts: {', '.join(accepted)}."
            )


def build_model_with_cfg(
    model_cls: type[nn.Module],
    variant: str,
    pretrained: bool = False,
    pretrained_cfg: PretrainedCfg | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Construct ``model_cls(**kwargs)``, attach its pretrained config, and load weights if asked.

    Every entry point goes through here, so argument checking and weight loading exist once.
    """
    _check_kwargs(model_cls, variant, kwargs)
    model = model_cls(**kwargs)
    model.pretrained_cfg = pretrained_cfg if pretrained_cfg is not None else get_pretrained_cfg(variant)
    if pretrained:
        raise NotImplementedError(
            "pretrained=True is not available yet: weight loading from the Hugging Face Hub is "
            "being added; create the model with pretrained=False"
        )
    return model


def create_model(model_name: str, pretrained: bool = False, num_classes: int = 0, **kwargs: Any) -> nn.Module:
    """Create a registered model by name, timm-style.

    Args:
        model_name: ``arch`` or ``arch.tag`` (see :func:`fnc.list_models`).
        pretrained: load the tag's weights (the default tag when none is given).
        num_classes: identities of the classifier; 0 = none (feature extractor).
        **kwargs: architecture arguments such as ``last_stride``, ``separate``, ``fuse``.

    Returns:
        The model, in train mode like any new ``nn.Module``.

    Example:
        >>> import fnc, torch
        >>> model = fnc.create_model("fnc_resnet50", num_classes=10).eval()
        >>> model(torch.randn(2, 3, 64, 64)).shape
        torch.Size([2, 1536])
    """
    arch, _ = split_model_name_tag(model_name)
    if not is_model(arch):
        raise unknown_model_error(arch)
    cfg = get_pretrained_cfg(model_name)
    return model_entrypoint(arch)(pretrained=pretrained, pretrained_cfg=cfg, num_classes=num_classes, **kwargs)
