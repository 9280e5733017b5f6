"""Third-party ``.pth`` checkpoints: read safely, mapped onto fnc-reid's keys, converted once to safetensors.

Release files outside the Hub (fast-reid's vehicle models, IBN-Net's ImageNet backbones) and the
checkpoints users download by hand (reid-strong-baseline, AICity DMT) are ``torch.save`` pickles.
fnc-reid reads them in exactly one way, ``torch.load(map_location="cpu", weights_only=True)``:
torch's restricted unpickler, which builds tensors and plain containers and refuses any other
global, so a file whose pickle would run code is refused (:class:`UnsafeCheckpointError`, naming
the global) before anything of it runs. The full unpickler is never used.

Each file is converted once: its state dict (the ``model`` entry of a training checkpoint, or a
bare state dict) is mapped onto fnc-reid's keys (:mod:`fnc.models._fastreid`) and written as a
safetensors file, with the source format and input statistics in its metadata. Every load,
including the first, then reads that safetensors file through the one strict loader
(:func:`fnc.models._loader.load_cfg_weights`), so a ``.pth`` is unpickled once per file, never
again. Downloads and conversions live in the fnc-reid cache folder (:func:`cache_folder`).

The format is told from the keys (:func:`detect_format`):

- ``fastreid``: ``backbone.*``, ``heads.*`` (``pixel_mean`` / ``pixel_std`` in release-era files),
  a whole Baseline; its models' stem pools with ``ceil_mode`` (``stem_pool="ceil"``);
- ``strong_baseline``: ``base.*``, ``bottleneck.*``, ``classifier.weight`` (reid-strong-baseline,
  AICity DMT), a whole Baseline with IBN-Net's padded stem;
- ``ibn_net``: ``conv1.*``, ``layer1-4.*``, ``fc.*`` (IBN-Net's ImageNet release), a backbone;
  ``fc`` is dropped by the loader.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from huggingface_hub import constants as hf_constants

from ._fastreid import ConvertedCheckpoint, fastreid_to_fnc, strong_baseline_to_fnc
from ._hub import HubOptions
from ._loader import (
    CheckpointMismatchError,
    CorruptCheckpointError,
    PretrainedNotFoundError,
    UnsafeCheckpointError,
)
from ._pretrained import PretrainedCfg

__all__ = [
    "PTH_SUFFIXES",
    "PthFormat",
    "PTH_FORMATS",
    "cache_folder",
    "is_pth",
    "read_pth",
    "detect_format",
    "convert_pth",
    "converted_pth_file",
    "fetch_url",
    "url_weights",
    "pth_file_weights",
]

#: File names read as torch pickles by design (with ``weights_only=True``); every other name is
#: safetensors, and a pickle there is refused by the loader.
PTH_SUFFIXES = (".pth", ".pt")
_CACHE_NAME = "fnc-reid"
# Input statistics are compared in [0, 1] units; fast-reid stores them in float32 on 0-255.
_STAT_TOLERANCE = 1e-4


@dataclass(frozen=True)
class PthFormat:
    """A third-party checkpoint format and what its converted safetensors file is for the loader.

    Attributes:
        name: ``"fastreid"``, ``"strong_baseline"`` or ``"ibn_net"``.
        description: the code base, for messages and model cards.
        weights_format: the converted file's :attr:`PretrainedCfg.weights_format`.
        classifier: checkpoint tensors the loader drops (IBN-Net's ImageNet ``fc``).
        model_args: architecture arguments every model of that code base has (fast-reid's
            ResNet stem pools with ``ceil_mode`` and no padding).
    """

    name: str
    description: str
    weights_format: str = "fnc"
    classifier: tuple[str, ...] = ()
    model_args: dict[str, Any] = field(default_factory=dict)


PTH_FORMATS: dict[str, PthFormat] = {
    "fastreid": PthFormat("fastreid", "fast-reid", model_args={"stem_pool": "ceil"}),
    "strong_baseline": PthFormat("strong_baseline", "reid-strong-baseline / AICity DMT"),
    "ibn_net": PthFormat("ibn_net", "IBN-Net ImageNet", "timm_backbone", ("fc",)),
}


def is_pth(path: str | os.PathLike) -> bool:
    """True for a file name read as a torch pickle by design (``.pth``, ``.pt``).

    Example:
        >>> is_pth("veri_sbs_R50-ibn.pth"), is_pth("model.safetensors")
        (True, False)
    """
    return os.fspath(path).lower().endswith(PTH_SUFFIXES)


def cache_folder(hub: HubOptions = HubOptions()) -> Path:
    """Where downloaded release files and converted checkpoints live.

    ``<cache_dir>/fnc-reid`` when ``hub.cache_dir`` is given, else ``fnc-reid`` beside the
    Hugging Face Hub cache (``$HF_HUB_CACHE/../fnc-reid``, normally ``~/.cache/huggingface/fnc-reid``),
    so it moves with HF_HOME / HF_HUB_CACHE.

    Example:
        >>> cache_folder(HubOptions(cache_dir="/tmp/c")).as_posix()
        '/tmp/c/fnc-reid'
    """
    if hub.cache_dir is not None:
        return Path(hub.cache_dir) / _CACHE_NAME
    return Path(hf_constants.HF_HUB_CACHE).parent / _CACHE_NAME


# torch names the refused global ("Unsupported global: GLOBAL posix.system ...") or opcode.
_GLOBAL = re.compile(r"(?:Unsupported global|GLOBAL)[:\s]+([\w.]+(?:\s*\.\s*\w+)*)")
_DETAIL = re.compile(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", re.S)


def read_pth(path: str | os.PathLike, where: str = "") -> dict[str, torch.Tensor]:
    """The state dict of a ``.pth`` file, read with ``torch.load(weights_only=True)`` and nothing else.

    A training checkpoint's ``"model"`` (fast-reid's ``Checkpointer``) or ``"state_dict"`` entry
    is taken; optimizer and scheduler state are ignored.

    Args:
        path: the file.
        where: context for messages, e.g. ``" from https://..."``.

    Raises:
        PretrainedNotFoundError: no such file.
        UnsafeCheckpointError: the pickle needs a global other than tensors and plain
            containers (it could run code); the global is named and nothing of it ran.
        CorruptCheckpointError: truncated or not a torch file; or it holds no state dict.

    Example:
        >>> import tempfile
        >>> f = tempfile.mkdtemp() + "/w.pth"
        >>> torch.save({"model": {"w": torch.ones(2)}, "iteration": 3}, f)
        >>> read_pth(f)
        {'w': tensor([1., 1.])}
    """
    path = Path(path)
    if not path.is_file():
        raise PretrainedNotFoundError(f"checkpoint file {str(path)!r}{where} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = _GLOBAL.search(str(err))
        detail = _DETAIL.search(str(err))
        if found or detail:
            what = (
                f"needs {found.group(1).replace(' ', '')} to load"
                if found
                else f"uses what torch's weights-only unpickler refuses ({detail.group(1).strip()})"
            )
            raise UnsafeCheckpointError(
                f"{str(path)!r}{where} is a pickle that {what}; fnc-reid reads .pth files only with "
                "torch.load(weights_only=True), which refuses anything but tensors and plain containers "
                "because unpickling it can run arbitrary code (nothing of the file was run). If you trust "
                "the file, re-save its state dict (tensors only) where you trust it, or as safetensors"
            ) from err
        raise CorruptCheckpointError(f"corrupt or truncated checkpoint {str(path)!r}{where}: {err}") from err
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as err:
        raise CorruptCheckpointError(
            f"corrupt or truncated checkpoint {str(path)!r}{where} ({type(err).__name__}: {err}); "
            "delete it (it is downloaded again if it came from a URL) and retry"
        ) from err
    for key in ("model", "state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj:
        raise CorruptCheckpointError(
            f"{str(path)!r}{where} holds {type(obj).__name__}, not a state dict (a dict of tensors, or a "
            "training checkpoint with a 'model' entry)"
        )
    return dict(obj)


def _strip_module(keys: list[str]) -> list[str]:
    # nn.DataParallel saves every key under "module.".
    if keys and all(k.startswith("module.") for k in keys):
        return [k[len("module.") :] for k in keys]
    return keys


def detect_format(state_dict: Mapping[str, Any], where: str = "") -> PthFormat:
    """Which code base wrote ``state_dict``, from its keys.

    Raises:
        CheckpointMismatchError: keys of none of :data:`PTH_FORMATS`, listed.

    Example:
        >>> detect_format({"base.conv1.weight": 0, "bottleneck.weight": 0}).name
        'strong_baseline'
    """
    keys = _strip_module(list(state_dict))
    if any(k.startswith("heads.") or k in ("pixel_mean", "pixel_std") for k in keys):
        return PTH_FORMATS["fastreid"]
    if any(k.startswith("base.") for k in keys):
        return PTH_FORMATS["strong_baseline"]
    if "conv1.weight" in keys and any(k.startswith("layer1.") for k in keys):
        return PTH_FORMATS["ibn_net"]
    shown = ", ".join(keys[:6]) + (", ..." if len(keys) > 6 else "")
    raise CheckpointMismatchError(
        f"checkpoint{where} is none of the .pth formats fnc-reid maps (keys: {shown}): fast-reid "
        "(backbone.*, heads.*), reid-strong-baseline / AICity DMT (base.*, bottleneck.*, classifier.weight) "
        "or IBN-Net ImageNet (conv1.*, layer1-4.*, fc.*); fnc-reid's own weights are safetensors "
        "(save_pretrained)"
    )


def _check_stats(converted: ConvertedCheckpoint, cfg: PretrainedCfg, where: str) -> None:
    for key, got, want, what in (
        ("pixel_mean", converted.pixel_mean, cfg.mean, "mean"),
        ("pixel_std", converted.pixel_std, cfg.std, "std"),
    ):
        if got is None:
            continue
        if len(got) != len(want) or max(abs(a - b) for a, b in zip(got, want)) > _STAT_TOLERANCE:
            on255 = ", ".join(f"{255 * v:.3f}" for v in got)
            raise CheckpointMismatchError(
                f"checkpoint{where} normalises its input with {key} [{on255}] (0-255), i.e. "
                f"{tuple(round(v, 4) for v in got)} in [0, 1], but {cfg.name or cfg.architecture} "
                f"is fed images normalised with {what} {tuple(want)}; its embeddings would be wrong. "
                "It was trained with other input statistics than this model's config says"
            )


def convert_pth(state_dict: Mapping[str, Any], arch: str, where: str = "") -> tuple[ConvertedCheckpoint, PthFormat]:
    """Map a third-party state dict onto ``arch``'s keys.

    Args:
        state_dict: from :func:`read_pth`.
        arch: the architecture it is for, e.g. ``"sbs_resnet50_ibn"``.
        where: context for messages.

    Returns:
        The tensors to save (fnc-reid keys for a whole model, IBN-Net's own keys for a
        backbone) with fast-reid's input statistics when it has them, and the detected
        :class:`PthFormat`.

    Raises:
        CheckpointMismatchError: an unknown format or key.

    Example:
        >>> sd = {"conv1.weight": torch.zeros(1), "layer1.0.conv1.weight": torch.zeros(1), "fc.bias": torch.zeros(1)}
        >>> converted, fmt = convert_pth(sd, "baseline_resnet50_ibn")
        >>> sorted(converted.state_dict), fmt.weights_format
        (['conv1.weight', 'fc.bias', 'layer1.0.conv1.weight'], 'timm_backbone')
    """
    fmt = detect_format(state_dict, where)
    if fmt.name == "fastreid":
        return fastreid_to_fnc(state_dict, arch), fmt
    if fmt.name == "strong_baseline":
        return strong_baseline_to_fnc(state_dict, arch), fmt
    not_tensors = sorted(k for k, v in state_dict.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise CheckpointMismatchError(f"checkpoint{where}: {', '.join(not_tensors[:5])} are not tensors")
    keys = _strip_module(list(state_dict))
    return ConvertedCheckpoint(dict(zip(keys, state_dict.values()))), fmt


def _save_atomic(tensors: Mapping[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.incomplete")
    try:
        # safetensors refuses tensors that share storage (a pickle may alias them): one copy each.
        safetensors.torch.save_file(
            {k: v.detach().clone().contiguous() for k, v in tensors.items()}, str(tmp), metadata
        )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def converted_pth_file(
    pth: str | os.PathLike, target: str | os.PathLike, cfg: PretrainedCfg, where: str = ""
) -> tuple[Path, PthFormat]:
    """``target``, a safetensors conversion of ``pth``, written once (atomically) and checked against ``cfg``.

    The metadata of ``target`` records the source format and the checkpoint's input statistics,
    so every load (the first and any later one, for any tag) checks them against ``cfg.mean`` /
    ``cfg.std`` without unpickling ``pth`` again.

    Raises:
        UnsafeCheckpointError, CorruptCheckpointError: as :func:`read_pth`.
        CheckpointMismatchError: as :func:`convert_pth`; or fast-reid's ``pixel_mean`` /
            ``pixel_std`` unlike ``cfg.mean`` / ``cfg.std``.

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> sd = {"conv1.weight": torch.zeros(1), "layer1.0.conv1.weight": torch.zeros(1)}
        >>> torch.save(sd, d + "/in1k.pth")
        >>> path, fmt = converted_pth_file(d + "/in1k.pth", d + "/in1k.safetensors", PretrainedCfg())
        >>> path.name, fmt.name
        ('in1k.safetensors', 'ibn_net')
    """
    target = Path(target)
    what = f" {os.fspath(pth)!r}{where}"
    if not target.is_file():
        converted, fmt = convert_pth(read_pth(pth, where), cfg.architecture, what)
        metadata = {"format": fmt.name, "converted_from": os.path.basename(os.fspath(pth))}
        for key in ("pixel_mean", "pixel_std"):
            if getattr(converted, key) is not None:
                metadata[key] = json.dumps(list(getattr(converted, key)))
        _save_atomic(converted.state_dict, target, metadata)
    return target, _check_converted(target, cfg, what)


def _check_converted(target: Path, cfg: PretrainedCfg, where: str) -> PthFormat:
    try:
        with safetensors.safe_open(str(target), "pt") as f:
            meta = f.metadata() or {}
    except Exception as err:  # safetensors raises its own Rust error type for every bad byte
        raise CorruptCheckpointError(
            f"corrupt converted checkpoint {str(target)!r} (converted from{where}): {err}; delete it"
        ) from err
    fmt = PTH_FORMATS.get(meta.get("format", ""))
    if fmt is None:
        raise CorruptCheckpointError(
            f"{str(target)!r} (converted from{where}) was not written by fnc-reid's .pth conversion; delete it"
        )
    stats = {k: tuple(json.loads(meta[k])) if k in meta else None for k in ("pixel_mean", "pixel_std")}
    _check_stats(ConvertedCheckpoint({}, **stats), cfg, where)
    return fmt


def _url_name(url: str) -> str:
    name = os.path.basename(urllib.parse.urlparse(url).path)
    return name if is_pth(name) else (name or "weights") + ".pth"


def fetch_url(url: str, hub: HubOptions = HubOptions()) -> Path:
    """Download ``url`` once into :func:`cache_folder` (atomically) and return the local file.

    A cached copy is used without a request (unless ``hub.force_download``). Offline
    (``HF_HUB_OFFLINE=1`` or ``hub.local_files_only``) nothing is requested.

    Raises:
        PretrainedNotFoundError: offline and not cached, an HTTP error, or the host cannot be
            reached; the message says how to fix it.
        CorruptCheckpointError: the download ended early (fewer bytes than announced).

    Example:
        >>> fetch_url("https://github.com/JDAI-CV/fast-reid/releases/download/v0.1.1/veri_sbs_R50-ibn.pth")  # doctest: +SKIP
        PosixPath('/root/.cache/huggingface/fnc-reid/.../veri_sbs_R50-ibn.pth')
    """
    folder = cache_folder(hub) / hashlib.sha256(url.encode()).hexdigest()[:16]
    path = folder / _url_name(url)
    if path.is_file() and not hub.force_download:
        return path
    if hf_constants.HF_HUB_OFFLINE or hub.local_files_only:
        reason = "offline mode is on (HF_HUB_OFFLINE=1)" if hf_constants.HF_HUB_OFFLINE else "local_files_only=True"
        raise PretrainedNotFoundError(
            f"{url} is not in the cache at {folder} and {reason}. Go online once to download it (it is "
            "converted and cached for later offline use), point cache_dir= at a cache that holds it, or "
            "download it yourself and pass checkpoint_path=<file.pth>"
        )
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{path.name}.{os.getpid()}.incomplete"
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
            announced = response.headers.get("Content-Length")
        size = tmp.stat().st_size
        if announced is not None and int(announced) != size:
            raise CorruptCheckpointError(f"download of {url} ended after {size} of {announced} bytes; retry")
        os.replace(tmp, path)
    except urllib.error.HTTPError as err:
        raise PretrainedNotFoundError(
            f"{url} answered HTTP {err.code} ({err.reason}); the release file may have moved"
        ) from err
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        reason = getattr(err, "reason", err)
        raise PretrainedNotFoundError(
            f"{url} cannot be reached ({reason}); go online once (the file is cached for offline use), or "
            "download it yourself and pass checkpoint_path=<file.pth>"
        ) from err
    finally:
        tmp.unlink(missing_ok=True)
    return path


def url_weights(cfg: PretrainedCfg, hub: HubOptions = HubOptions()) -> Path:
    """The local safetensors file of ``cfg.url``: downloaded and converted on first use, then cached.

    Once converted, the downloaded ``.pth`` is not read again (offline included).

    Raises:
        PretrainedNotFoundError, UnsafeCheckpointError, CorruptCheckpointError,
        CheckpointMismatchError: as :func:`fetch_url` and :func:`converted_pth_file`; also a file
            whose format does not give the weights ``cfg`` describes.

    Example:
        >>> from fnc.models._registry import get_pretrained_cfg
        >>> url_weights(get_pretrained_cfg("sbs_resnet50_ibn.fastreid_veri"))  # doctest: +SKIP
    """
    if cfg.url is None:
        raise ValueError(f"{cfg.name} has no url")
    folder = cache_folder(hub) / hashlib.sha256(cfg.url.encode()).hexdigest()[:16]
    target = folder / (Path(_url_name(cfg.url)).stem + ".safetensors")
    where = f" from {cfg.url}"
    if hub.force_download or not target.is_file():
        target.unlink(missing_ok=True)
        pth = fetch_url(cfg.url, hub)
    else:
        pth = folder / _url_name(cfg.url)
    path, fmt = converted_pth_file(pth, target, cfg, where)
    if fmt.weights_format != cfg.weights_format:
        raise CheckpointMismatchError(
            f"{cfg.url} is a {fmt.description} checkpoint ({fmt.weights_format}), but {cfg.name} describes "
            f"{cfg.weights_format} weights; the release file is not the one this tag was written for"
        )
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pth_file_weights(
    path: str | os.PathLike, cfg: PretrainedCfg, hub: HubOptions = HubOptions()
) -> tuple[Path, PthFormat]:
    """The safetensors conversion of a local ``.pth`` (``checkpoint_path=``), cached by the file's content.

    The conversion is keyed by the file's SHA-256, so an edited or replaced file is converted
    again and an unchanged one is not unpickled twice.

    Raises:
        PretrainedNotFoundError: no such file.
        UnsafeCheckpointError, CorruptCheckpointError, CheckpointMismatchError: as
            :func:`converted_pth_file`.

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> torch.save({"conv1.weight": torch.zeros(1), "layer1.0.conv1.weight": torch.zeros(1)}, d + "/w.pth")
        >>> pth_file_weights(d + "/w.pth", PretrainedCfg(), HubOptions(cache_dir=d))[1].name
        'ibn_net'
    """
    path = Path(path)
    if not path.is_file():
        raise PretrainedNotFoundError(f"checkpoint file {str(path)!r} does not exist")
    target = cache_folder(hub) / "converted" / f"{_sha256(path)[:16]}.safetensors"
    return converted_pth_file(path, target, cfg)
