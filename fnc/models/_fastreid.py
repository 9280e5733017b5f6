"""Key mapping of third-party re-ID checkpoints onto the Baseline's keys: fast-reid, reid-strong-baseline.

Pure functions over a state dict (no file access): the caller reads the file safely, passes the
tensors here, and loads the result strictly, so a key this module does not know is an error
rather than a tensor silently left out.

fast-reid (``fastreid.modeling.meta_arch.Baseline``; JDAI-CV/fast-reid, Apache-2.0):

=====================================================  =================================
fast-reid key                                          fnc-reid key
=====================================================  =================================
``backbone.{conv1,bn1,layer1-4}.*``                    ``backbone.*`` (same names)
``backbone.NL_<s>.<k>.*``                              ``non_local.stage<s>.<k>.*``
``heads.bottleneck.0.*``, release-era ``heads.bnneck.*``  ``bnneck.bn.*``
``heads.weight``, release-era ``heads.classifier.weight``  ``bnneck.classifier.weight``
``heads.pool_layer.p`` (GeM with learned p)            ``pool.p``
``pixel_mean``, ``pixel_std`` (0-255 scale)            returned, divided by 255, for the caller to check
=====================================================  =================================

reid-strong-baseline (michuanhaohao/reid-strong-baseline) and the AICity 2020 DMT code built on
it: ``base.*`` -> ``backbone.*``, ``bottleneck.*`` -> ``bnneck.bn.*``, ``classifier.weight`` ->
``bnneck.classifier.weight``; ``base.fc.*`` (the ImageNet classifier their IBN-a ResNet class
keeps) is listed in ``dropped``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

import torch

from ._loader import CheckpointMismatchError
from ._registry import split_model_name_tag

__all__ = ["ConvertedCheckpoint", "fastreid_to_fnc", "strong_baseline_to_fnc"]

_BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
_TRUNK = r"((?:conv1|bn1|layer[1-4])\..+)"

_FASTREID_RULES: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"^backbone\.NL_([1-4])\.(\d+\..+)$"), r"non_local.stage\1.\2"),
    (re.compile(rf"^backbone\.{_TRUNK}$"), r"backbone.\1"),
    (re.compile(rf"^heads\.(?:bottleneck\.0|bnneck)\.{_BN}$"), r"bnneck.bn.\1"),
    (re.compile(r"^heads\.(?:classifier\.)?weight$"), "bnneck.classifier.weight"),
    (re.compile(r"^heads\.pool_layer\.p$"), "pool.p"),
)
_FASTREID_PIXEL_STATS = ("pixel_mean", "pixel_std")

_STRONG_BASELINE_RULES: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(rf"^base\.{_TRUNK}$"), r"backbone.\1"),
    (re.compile(rf"^bottleneck\.{_BN}$"), r"bnneck.bn.\1"),
    (re.compile(r"^classifier\.weight$"), "bnneck.classifier.weight"),
)
_STRONG_BASELINE_DROPPED = re.compile(r"^base\.fc\.(weight|bias)$")

# What a key that no rule knows most likely is, to say in the error.
_HINTS: tuple[tuple[str, str], ...] = (
    (
        "heads.bottleneck.1.",
        (
            "a reduction layer before the BNNeck (fast-reid MODEL.HEADS.EMBEDDING_DIM > 0), which the Baseline does not have"
        ),
    ),
    ("classifier.bias", "a classifier with a bias (reid-strong-baseline MODEL.NECK 'no'), which has no BNNeck"),
    ("backbone.NL_", "non-local blocks outside layer1-4"),
)


class ConvertedCheckpoint(NamedTuple):
    """A third-party state dict mapped onto fnc-reid's keys.

    Attributes:
        state_dict: tensors under the Baseline's key names, ready for a strict load.
        pixel_mean: the checkpoint's input mean in [0, 1] units (fast-reid stores it in 0-255),
            or None when the checkpoint holds none; compare it with the model's cfg.
        pixel_std: the same for the input std.
        dropped: source keys deliberately not mapped (an ImageNet ``fc`` no re-ID model uses).
    """

    state_dict: dict[str, torch.Tensor]
    pixel_mean: tuple[float, ...] | None = None
    pixel_std: tuple[float, ...] | None = None
    dropped: tuple[str, ...] = ()


def _check_arch(arch: str, source: str) -> None:
    name = split_model_name_tag(arch)[0]
    if not name.startswith(("baseline_", "sbs_")):
        raise CheckpointMismatchError(
            f"a {source} checkpoint holds a BoT / SBS model; load it into a baseline_* or sbs_* model "
            f"(e.g. baseline_resnet50_ibn, sbs_resnet50_ibn), not {arch!r}"
        )


def _tensors(state_dict: Mapping[str, object], source: str) -> dict[str, torch.Tensor]:
    not_tensors = sorted(k for k, v in state_dict.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        hint = " (a training checkpoint: pass its 'model' entry)" if "model" in not_tensors else ""
        raise CheckpointMismatchError(
            f"expected a {source} state dict of tensors, but {', '.join(not_tensors[:5])} "
            f"{'is' if len(not_tensors) == 1 else 'are'} not tensors{hint}"
        )
    keys = list(state_dict)
    # nn.DataParallel saves every key under "module.".
    if keys and all(k.startswith("module.") for k in keys):
        return {k[len("module.") :]: v for k, v in state_dict.items()}  # type: ignore[misc]
    return dict(state_dict)  # type: ignore[arg-type]


def _apply_rules(
    state_dict: dict[str, torch.Tensor],
    rules: tuple[tuple[re.Pattern, str], ...],
    skip: Mapping[str, str],
    arch: str,
    source: str,
) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        if key in skip:
            continue
        for pattern, target in rules:
            if pattern.match(key):
                new = pattern.sub(target, key)
                if new in out:
                    raise CheckpointMismatchError(
                        f"{source} checkpoint holds both {origin[new]!r} and {key!r}, which are the same "
                        f"tensor ({new!r}); it mixes two naming schemes"
                    )
                out[new], origin[new] = value, key
                break
        else:
            unknown.append(key)
    if unknown:
        hints = sorted({h for prefix, h in _HINTS for k in unknown if k.startswith(prefix)})
        shown = ", ".join(unknown[:10]) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        raise CheckpointMismatchError(
            f"{len(unknown)} key(s) of the {source} checkpoint have no place in {arch}: {shown}"
            + (f" ({'; '.join(hints)})" if hints else "")
            + f". Is it a {source} BoT / SBS checkpoint of this architecture?"
        )
    return out


def _pixel_stat(value: torch.Tensor, key: str) -> tuple[float, ...]:
    if value.numel() != 3:
        raise CheckpointMismatchError(f"fast-reid {key} should hold 3 values (RGB), got shape {tuple(value.shape)}")
    return tuple(float(v) / 255.0 for v in value.reshape(3))


def fastreid_to_fnc(state_dict: Mapping[str, torch.Tensor], arch: str) -> ConvertedCheckpoint:
    """Map a fast-reid ``Baseline`` state dict (BoT or SBS, current or release-era names) onto ``arch``.

    Args:
        state_dict: the tensors of a fast-reid checkpoint (its ``"model"`` entry).
        arch: the fnc-reid architecture it is for, e.g. ``"sbs_resnet50_ibn"``.

    Returns:
        The mapped tensors, and fast-reid's ``pixel_mean`` / ``pixel_std`` in [0, 1] units if
        present (fast-reid normalises inside the model; fnc-reid models take normalised input).
        fast-reid trains its SBS classifier as a cosine one (``CircleSoftmax``); its weight maps
        onto the BNNeck's linear classifier, which then starts from it rather than reproducing
        fast-reid's logits. The embedding does not depend on the classifier.

    Raises:
        CheckpointMismatchError: a key no rule maps (listed), two keys for one tensor, a value
            that is not a tensor, or an ``arch`` that is not a baseline / SBS model.

    Example:
        >>> sd = {"backbone.conv1.weight": torch.zeros(64, 3, 7, 7), "heads.pool_layer.p": torch.ones(1),
        ...       "heads.bottleneck.0.weight": torch.ones(2048), "pixel_mean": torch.tensor([127.5] * 3)}
        >>> out = fastreid_to_fnc(sd, "sbs_resnet50_ibn")
        >>> sorted(out.state_dict), out.pixel_mean
        (['backbone.conv1.weight', 'bnneck.bn.weight', 'pool.p'], (0.5, 0.5, 0.5))
    """
    _check_arch(arch, "fast-reid")
    tensors = _tensors(state_dict, "fast-reid")
    stats = {k: _pixel_stat(tensors[k], k) for k in _FASTREID_PIXEL_STATS if k in tensors}
    mapped = _apply_rules(tensors, _FASTREID_RULES, {k: "" for k in stats}, arch, "fast-reid")
    return ConvertedCheckpoint(mapped, stats.get("pixel_mean"), stats.get("pixel_std"))


def strong_baseline_to_fnc(state_dict: Mapping[str, torch.Tensor], arch: str) -> ConvertedCheckpoint:
    """Map a reid-strong-baseline / AICity DMT state dict (``base.*``, ``bottleneck.*``) onto ``arch``.

    These checkpoints carry no input statistics (their code normalises with ImageNet's), so
    ``pixel_mean`` / ``pixel_std`` are None; ``dropped`` lists ``base.fc.*`` when present.

    Raises:
        CheckpointMismatchError: as :func:`fastreid_to_fnc`.

    Example:
        >>> sd = {"base.layer1.0.bn1.IN.weight": torch.ones(32), "bottleneck.bias": torch.zeros(2048),
        ...       "classifier.weight": torch.zeros(576, 2048), "base.fc.weight": torch.zeros(1000, 2048)}
        >>> out = strong_baseline_to_fnc(sd, "baseline_resnet101_ibn")
        >>> sorted(out.state_dict), out.dropped
        (['backbone.layer1.0.bn1.IN.weight', 'bnneck.bn.bias', 'bnneck.classifier.weight'], ('base.fc.weight',))
    """
    _check_arch(arch, "reid-strong-baseline")
    tensors = _tensors(state_dict, "reid-strong-baseline")
    dropped = {k: "" for k in tensors if _STRONG_BASELINE_DROPPED.match(k)}
    mapped = _apply_rules(tensors, _STRONG_BASELINE_RULES, dropped, arch, "reid-strong-baseline")
    return ConvertedCheckpoint(mapped, dropped=tuple(dropped))
