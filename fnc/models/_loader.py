"""The one weight loader: safe safetensors reading, timm-backbone key mapping, strict checks.

Every way of getting weights into a model (``pretrained=True``, ``checkpoint_path=``,
``hf-hub:``, ``from_pretrained``) ends in :func:`load_cfg_weights` -> :func:`load_checkpoint`,
so a checkpoint is read, checked and reported the same way everywhere:

- only safetensors is read; a pickle (``.bin``, ``.pth``, ``.pt``, ``.ckpt``, or a file whose
  bytes are a pickle or a torch zip archive) is refused before anything is deserialised;
- an ImageNet backbone checkpoint with timm's keys fills every copy of each backbone tensor
  (FNC's trunk and both branches' layer3[1:] / layer4);
- loading is strict: anything missing, unexpected or of the wrong shape raises
  :class:`CheckpointMismatchError` with the key lists, and a tensor holding NaN or inf raises
  :class:`CorruptCheckpointError` naming it; only a classifier whose size differs
  from the model's is dropped (the model keeps its fresh one), and that is said in the log.
  The model says which keys are its classifiers (``classifier_keys()``), so this module knows
  no head class;
- exactly one INFO line per load says what was loaded and what was initialised.
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path

import safetensors.torch
import torch
from torch import nn

from ._pretrained import PretrainedCfg

__all__ = [
    "CheckpointMismatchError",
    "CorruptCheckpointError",
    "PretrainedNotFoundError",
    "UnsafeCheckpointError",
    "PICKLE_SUFFIXES",
    "check_safetensors_name",
    "read_safetensors",
    "load_checkpoint",
    "load_cfg_weights",
    "read_json",
    "remap_timm_backbone",
]

_logger = logging.getLogger(__name__)

PICKLE_SUFFIXES = (".bin", ".pth", ".pt", ".ckpt", ".pkl", ".pickle", ".tar")
_MAX_LISTED = 10
# ``backbone.<timm key>`` or ``<branch>.layerN.<...>`` (a branch's own copy of timm's stage N):
# the naming fnc-reid keeps for backbone tensors (timm's), so a timm checkpoint maps by prefix alone.
_BACKBONE_KEY = re.compile(r"^(?:backbone\.(?P<trunk>.+)|[^.]+\.(?P<stage>layer[1-4]\..+))$")


class PretrainedNotFoundError(FileNotFoundError):
    """Weights could not be found: no such repo, file, revision, local path, or cached copy."""


class UnsafeCheckpointError(ValueError):
    """The checkpoint is a pickle (``.bin``/``.pth``/...), which is refused: it can run code."""


class CorruptCheckpointError(ValueError):
    """The file is not a readable safetensors file (truncated download, corrupted bytes)."""


class CheckpointMismatchError(ValueError):
    """The checkpoint's keys or shapes do not fit the model (e.g. another architecture)."""


def _pickle_refusal(what: str) -> UnsafeCheckpointError:
    return UnsafeCheckpointError(
        f"{what} is a pickle checkpoint; fnc-reid refuses pickle files for safety (unpickling can "
        "run arbitrary code) and reads only safetensors. Convert it once, in an environment you "
        "trust: `from safetensors.torch import save_file; "
        "save_file(torch.load(path, weights_only=True), 'model.safetensors')`, then pass the "
        ".safetensors file as checkpoint_path="
    )


def check_safetensors_name(filename: str, where: str = "") -> None:
    """Refuse a pickle by its name, before it is downloaded or opened.

    Raises:
        UnsafeCheckpointError: ``filename`` ends in a pickle suffix (``.bin``, ``.pth``, ...).
    """
    if filename.lower().endswith(PICKLE_SUFFIXES):
        raise _pickle_refusal(f"{filename!r}{where}")


def _check_header(path: Path, where: str) -> None:
    """Sniff the first bytes, so a pickle renamed to .safetensors is never handed to a parser."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(9)
    fix = "; delete it (from the Hugging Face cache if it was downloaded) and load it again"
    # safetensors: an 8-byte little-endian header length, then the JSON header's '{'.
    if len(head) == 9 and head[8:9] == b"{":
        (header_len,) = struct.unpack("<Q", head[:8])
        if 8 + header_len <= size:
            return
        raise CorruptCheckpointError(
            f"corrupt or truncated safetensors file {str(path)!r}{where}: its header says "
            f"{8 + header_len} bytes, the file has {size}{fix}"
        )
    # torch.save writes a zip archive (PK\x03\x04) or, before torch 1.6, a raw pickle
    # (PROTO opcode \x80 and a protocol number).
    if head.startswith(b"PK\x03\x04") or (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")):
        raise _pickle_refusal(f"{str(path)!r}{where} (its bytes are a pickle / torch.save archive)")
    raise CorruptCheckpointError(f"corrupt or truncated safetensors file {str(path)!r}{where}{fix}")


def read_safetensors(path: str | os.PathLike, where: str = "") -> dict[str, torch.Tensor]:
    """Read a safetensors file to CPU tensors, refusing pickles and naming the file on corruption.

    Args:
        path: the ``.safetensors`` file.
        where: context for messages, e.g. ``" from timm/resnet50.tv_in1k"``.

    Raises:
        PretrainedNotFoundError: no such file.
        UnsafeCheckpointError: a pickle, by name or by content; it is never unpickled.
        CorruptCheckpointError: truncated or corrupted.

    Example:
        >>> import tempfile, torch, safetensors.torch
        >>> f = tempfile.mkdtemp() + "/w.safetensors"
        >>> safetensors.torch.save_file({"w": torch.ones(2)}, f)
        >>> read_safetensors(f)["w"]
        tensor([1., 1.])
    """
    path = Path(path)
    check_safetensors_name(path.name, where)
    if not path.is_file():
        raise PretrainedNotFoundError(f"checkpoint file {str(path)!r}{where} does not exist")
    _check_header(path, where)
    try:
        return safetensors.torch.load_file(str(path), device="cpu")
    except Exception as err:  # safetensors raises its own Rust error type for every bad byte
        raise CorruptCheckpointError(
            f"corrupt or truncated safetensors file {str(path)!r}{where} ({err}); delete it (from "
            "the Hugging Face cache if it was downloaded) and load it again"
        ) from err


def _timm_key(model_key: str) -> str | None:
    m = _BACKBONE_KEY.match(model_key)
    return None if m is None else (m["trunk"] or m["stage"])


def remap_timm_backbone(state_dict: Mapping[str, torch.Tensor], model_keys: Iterable[str]) -> dict[str, torch.Tensor]:
    """Map a timm backbone state dict onto every model key that holds a copy of each tensor.

    ``backbone.<k>`` takes timm's ``k``; ``<branch>.layerN.<...>`` takes ``layerN.<...>``, so
    FNC's spatial and channel branches both get layer3[1:] and layer4. Checkpoint keys with no
    place in the model are kept under their own name, so the strict check reports them.

    Example:
        >>> sd = {"layer4.0.conv1.weight": torch.zeros(1)}
        >>> sorted(remap_timm_backbone(sd, ["spatial.layer4.0.conv1.weight", "channel.layer4.0.conv1.weight"]))
        ['channel.layer4.0.conv1.weight', 'spatial.layer4.0.conv1.weight']
    """
    targets: dict[str, list[str]] = {}
    for key in model_keys:
        timm_key = _timm_key(key)
        if timm_key is not None:
            targets.setdefault(timm_key, []).append(key)
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        for target in targets.get(key, [key]):
            out[target] = tensor
    return out


def _classifier_keys(model: nn.Module) -> set[str]:
    """State-dict keys of the model's identity classifiers, as the model declares them.

    A model with identity classifiers names their keys (present or, with ``num_classes=0``,
    absent) with a ``classifier_keys()`` method, as :class:`~fnc.models.ReIDModel` does; any
    other module has none.
    """
    declared = getattr(model, "classifier_keys", None)
    return set(declared()) if callable(declared) else set()


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    more = f", ... ({len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
    return f"{len(keys)}: {shown}{more}"


def _groups(keys: Iterable[str], model_keys: Iterable[str]) -> str:
    """Module names that own ``keys``: ``spatial.attention``, ``erase_block``, ... in model order."""
    branches = {k.split(".")[0] for k in model_keys if _timm_key(k) and not k.startswith("backbone.")}
    names: dict[str, None] = {}
    for key in keys:
        parts = key.split(".")
        names[".".join(parts[:2] if parts[0] in branches else parts[:1])] = None
    return ", ".join(names)


def load_checkpoint(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    source: str,
    weights_format: str = "fnc",
    drop_prefixes: tuple[str, ...] = (),
    name: str | None = None,
) -> None:
    """Load ``state_dict`` into ``model`` strictly, and log one line saying what happened.

    Args:
        model: the model to fill, built with the checkpoint's architecture.
        state_dict: the checkpoint, e.g. from :func:`read_safetensors`.
        source: where it came from (repo id or path), for messages.
        weights_format: ``"fnc"`` (a whole fnc-reid model: every model tensor must be there) or
            ``"timm_backbone"`` (timm ImageNet backbone: backbone tensors must be there, heads
            are initialised).
        drop_prefixes: checkpoint tensors that are not for this model by design (timm's ImageNet
            classifier ``fc``); dropped and counted.
        name: the model's name in the log line; its class name if None.

    Raises:
        CheckpointMismatchError: missing, unexpected or mis-shaped tensors, listed with counts.
        CorruptCheckpointError: a tensor holds NaN or inf (each such tensor named).

    Example:
        >>> from fnc.models import Baseline
        >>> model = Baseline("resnet50")
        >>> load_checkpoint(model, model.state_dict(), "itself")
    """
    if weights_format not in ("fnc", "timm_backbone"):
        raise ValueError(f"unknown weights_format {weights_format!r}; expected 'fnc' or 'timm_backbone'")
    name = name or type(model).__name__
    own = model.state_dict()
    # timm's fc.* is its ImageNet classifier; the prefix is matched as a module, so "fc" is not "fc1".
    dropped = [k for k in state_dict if any(k == p or k.startswith(p + ".") for p in drop_prefixes)]
    ckpt = {k: v for k, v in state_dict.items() if k not in set(dropped)}
    if weights_format == "timm_backbone":
        ckpt = remap_timm_backbone(ckpt, own)
        expected = [k for k in own if _timm_key(k) is not None]
    else:
        expected = list(own)

    classifier_note = ""
    classifier_keys = _classifier_keys(model)
    ckpt_cls = sorted(k for k in ckpt if k in classifier_keys)
    own_cls = sorted(k for k in own if k in classifier_keys)
    if weights_format == "fnc" and (ckpt_cls or own_cls):
        ckpt_sizes = {ckpt[k].shape[0] for k in ckpt_cls}
        same = ckpt_cls == own_cls and all(ckpt[k].shape == own[k].shape for k in own_cls)
        if not same:
            # A classifier belongs to its training identities: another size is re-initialised, not an error.
            for k in ckpt_cls:
                ckpt.pop(k)
            expected = [k for k in expected if k not in own_cls]
            now = f"num_classes={model.num_classes}" if hasattr(model, "num_classes") else "another size"
            if not ckpt_cls:
                classifier_note = f"; classifier initialised (checkpoint has none; model: {now})"
            else:
                had = "/".join(map(str, sorted(ckpt_sizes)))
                action = "dropped and re-initialised" if own_cls else "dropped"
                classifier_note = f"; classifier {action} (checkpoint: {had} classes, model: {now})"

    missing = [k for k in expected if k not in ckpt]
    unexpected = [k for k in ckpt if k not in own]
    mis_shaped = [
        f"{k} (checkpoint {tuple(ckpt[k].shape)}, model {tuple(own[k].shape)})"
        for k in ckpt
        if k in own and ckpt[k].shape != own[k].shape
    ]
    if missing or unexpected or mis_shaped:
        arch = getattr(getattr(model, "pretrained_cfg", None), "architecture", "") or name
        parts = [f"checkpoint {source} does not fit {arch}"]
        if missing:
            parts.append(f"missing keys {_listing(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_listing(unexpected)}")
        if mis_shaped:
            parts.append(f"shape mismatches {_listing(mis_shaped)}")
        parts.append(
            "is it a checkpoint of another architecture? Create the model it was saved from "
            "(a published repo loads with fnc.create_model('hf-hub:<repo>'))"
        )
        raise CheckpointMismatchError("; ".join(parts))

    non_finite = [k for k, v in ckpt.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if non_finite:
        raise CorruptCheckpointError(
            f"checkpoint {source} holds NaN or inf values in tensors {_listing(non_finite)}; a model with them "
            "embeds every image as NaN. It was saved from a diverged run or damaged: use an earlier checkpoint "
            "(e.g. the run's best) or retrain with a lower lr"
        )
    result = model.load_state_dict(ckpt, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys  # checked above with a better message
    initialised = [k for k in own if k not in ckpt]
    what = "whole model"
    if weights_format == "timm_backbone":
        copies = list(dict.fromkeys(k.split(".")[0] for k in ckpt))
        what = "ImageNet backbone" + (f", copied into {' + '.join(copies)}" if copies != ["backbone"] else "")
    dropped_note = f"; dropped {len(dropped)} checkpoint tensors ({', '.join(drop_prefixes)})" if dropped else ""
    init_note = f"; initialised {len(initialised)} ({_groups(initialised, own)})" if initialised else "; initialised 0"
    _logger.info(
        "%s: loaded %d tensors from %s (%s)%s%s%s",
        name,
        len(ckpt),
        source,
        what,
        init_note,
        classifier_note,
        dropped_note,
    )


def load_cfg_weights(
    model: nn.Module, path: str | os.PathLike, cfg: PretrainedCfg, source: str, name: str | None = None
) -> None:
    """Read ``path`` and load it as ``cfg`` describes (format, classifier keys to drop).

    Example:
        >>> import tempfile, safetensors.torch
        >>> from fnc.models import Baseline
        >>> model = Baseline("resnet50")
        >>> f = tempfile.mkdtemp() + "/m.safetensors"
        >>> safetensors.torch.save_file(model.state_dict(), f)
        >>> load_cfg_weights(model, f, PretrainedCfg(), f)
    """
    # A local file is named by its path already; say "from" only for another source (a Hub repo).
    where = "" if str(source) in (str(path), repr(str(path))) else f" from {source}"
    state_dict = read_safetensors(path, where)
    fmt = cfg.weights_format
    if any(k.startswith("backbone.") for k in state_dict):
        # A whole fnc-reid model (e.g. a save_pretrained file passed as checkpoint_path=).
        fmt = "fnc"
    drop = cfg.classifier if fmt == "timm_backbone" else ()
    load_checkpoint(model, state_dict, source, fmt, drop, name=name or cfg.name or None)


def read_json(path: str | os.PathLike, where: str = "") -> dict:
    """A JSON object from ``path``, with a clear error if it is not one."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as err:
        raise CorruptCheckpointError(f"cannot read config {str(path)!r}{where}: {err}") from err
    if not isinstance(data, dict):
        raise CorruptCheckpointError(f"config {str(path)!r}{where} is not a JSON object")
    return data
