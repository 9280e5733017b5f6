"""ONNX export of a re-ID model's inference embedding, with a dynamic batch axis.

The graph maps ``images`` (batch, 3, H, W), float32 RGB, resized to H x W, to ``embeddings``
(batch, D). By default the input is already normalised (scaled to [0, 1], then mean / std
applied, as :func:`fnc.extract` feeds the model); with ``normalize_input=True`` the graph does
the mean / std step itself and takes RGB in [0, 1]. The preprocessing and model facts are stored
in the file's metadata (``metadata_props``) and in a JSON sidecar ``<file>.metadata.json`` with
the keys boxmot's ONNX re-ID backend reads (``model_name``, ``img_size``, ``preprocess``,
``model_kwargs``), so a deployment can read them without fnc-reid. ``onnx`` is needed to export
and ``onnxruntime`` to verify; neither is a dependency of fnc-reid, both are imported only when
called.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fnc.inference.preprocess import _model_device_dtype, resolve_data_config

__all__ = ["export_onnx", "metadata_path", "DEFAULT_OPSET", "INPUT_NAME", "MIN_OPSET", "OUTPUT_NAME"]

logger = logging.getLogger(__name__)

#: 17 is the newest opset the TorchScript exporter handles for every op we use, and every
#: onnxruntime since 1.11 runs it.
DEFAULT_OPSET = 17
#: FNC's position attention is ``scaled_dot_product_attention``, which ONNX has from opset 14.
MIN_OPSET = 14
INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"
_INSTALL_HINT = "pip install onnx onnxruntime"


def _require(module: str):
    try:
        return __import__(module)
    except ImportError as e:
        raise ImportError(f"ONNX export needs the {module!r} package: {_INSTALL_HINT}") from e


#: The sidecar schema boxmot's ``read_artifact_metadata`` accepts (its version 1 keys).
_SIDECAR_SCHEMA_VERSION = 1


def metadata_path(path: str | os.PathLike) -> Path:
    """The JSON sidecar written beside an exported file: ``model.onnx`` -> ``model.onnx.metadata.json``.

    >>> metadata_path("out/fnc.onnx").as_posix()
    'out/fnc.onnx.metadata.json'
    """
    path = Path(path)
    return path.with_name(path.name + ".metadata.json")


def _max_opset() -> int:
    # The TorchScript exporter's ceiling; the constant is private, so fall back to a known one.
    try:
        from torch.onnx import _constants

        return int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", _constants.ONNX_MAX_OPSET))
    except (ImportError, AttributeError):
        return 20


def _check_opset(opset: object) -> int:
    if isinstance(opset, bool) or not isinstance(opset, int):
        raise TypeError(f"opset must be an int ONNX opset version (default {DEFAULT_OPSET}), got {opset!r}")
    top = _max_opset()
    if not MIN_OPSET <= opset <= top:
        raise ValueError(
            f"opset must be in [{MIN_OPSET}, {top}], got {opset}: FNC's attention needs "
            f"scaled_dot_product_attention (opset {MIN_OPSET}+), and this torch exports up to opset "
            f"{top}; the default {DEFAULT_OPSET} runs on every onnxruntime since 1.11"
        )
    return opset


class _Normalized(nn.Module):
    """``model((x - mean) / std)``: the graph then takes RGB in [0, 1]."""

    def __init__(
        self, model: nn.Module, mean: Sequence[float], std: Sequence[float], dtype: torch.dtype, device: torch.device
    ) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=dtype, device=device).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=dtype, device=device).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


def _architecture(model: nn.Module) -> str:
    return getattr(getattr(model, "pretrained_cfg", None), "architecture", None) or type(model).__name__


def _fnc_version() -> str:
    # The installed distribution's version, read without importing the top-level package.
    try:
        return importlib.metadata.version("fnc-reid")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    input_size: Sequence[int] | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    normalize_input: bool = False,
    verify: bool = False,
) -> Path:
    """Export ``model``'s eval forward (the embedding) to an ONNX file.

    The batch axis is dynamic; H and W are fixed at ``input_size``. The model is traced in
    eval mode (its previous mode is restored) with torch's TorchScript-based exporter
    (``dynamo=False``): it needs only the ``onnx`` package, whereas the newer
    ``torch.export``-based exporter also needs ``onnxscript``. The file is written to a
    temporary name beside ``path`` and renamed, so ``path`` is never left half-written.
    Metadata props: ``architecture``, ``embed_dim``, ``input_size`` (JSON [C, H, W]), ``mean``,
    ``std``, ``interpolation``, ``normalize_input``, ``input_range``, ``fnc_version``. The same
    facts go to the sidecar :func:`metadata_path` (``<path>.metadata.json``) with boxmot's keys
    ``schema_version``, ``model_name``, ``img_size`` ([H, W]), ``preprocess`` (``"resize"``),
    ``model_kwargs_schema_version`` and ``model_kwargs`` (``{"img_size": [H, W]}``). boxmot
    normalises its crops with ImageNet mean / std before the graph, so for boxmot export with
    ``normalize_input=False`` (the models' mean / std are ImageNet's).

    Args:
        model: a fnc-reid model (any module whose eval forward maps (B, 3, H, W) to (B, D)).
        path: the ``.onnx`` file to write; parent folders are created.
        input_size: (H, W) (or (C, H, W)); default: the model's ``pretrained_cfg.input_size``.
        opset: ONNX opset version, an int in [``MIN_OPSET``, torch's maximum]; checked before
            anything is traced.
        normalize_input: put the mean / std normalisation inside the graph, so ``images`` is RGB
            in [0, 1] (pixel / 255, resized), as trackers that do no normalisation feed it. Off:
            ``images`` must already be normalised with the model's mean / std.
        verify: run the exported file with onnxruntime on a random batch of 2 and raise
            RuntimeError unless it matches PyTorch (max abs error <= 1e-4 x the largest
            embedding value); needs ``onnxruntime``.

    Returns:
        The path written.

    Raises:
        ImportError: ``onnx`` (or, with ``verify``, ``onnxruntime``) is missing; says what to install.
        TypeError: ``opset`` is not an int.
        ValueError: ``opset`` is out of range.

    Shape:
        ONNX graph: ``images`` (batch, 3, H, W) -> ``embeddings`` (batch, D)

    >>> import fnc
    >>> model = fnc.create_model("fnc_resnet50")
    >>> fnc.export_onnx(model, "fnc_resnet50.onnx", input_size=(64, 64))  # doctest: +SKIP
    PosixPath('fnc_resnet50.onnx')
    """
    opset = _check_opset(opset)
    onnx = _require("onnx")
    if verify:
        _require("onnxruntime")
    cfg = resolve_data_config(model, input_size)
    hgt, wid = cfg.hw
    device, dtype = _model_device_dtype(model)
    dummy = torch.zeros(1, 3, hgt, wid, device=device, dtype=dtype)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    was_training = model.training
    model.eval()
    graph: nn.Module = _Normalized(model, cfg.mean, cfg.std, dtype, device).eval() if normalize_input else model
    fd, tmp = tempfile.mkstemp(suffix=".onnx.tmp", prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # The input checks in ReIDModel.check_input read static shapes (C, H, W, fixed in this
            # graph anyway) and the batch only in train mode, so the tracer's "Python boolean"
            # warnings do not apply; the exporter's own deprecation notice is ours to handle.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
            torch.onnx.export(
                graph,
                (dummy,),
                tmp,
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=opset,
                do_constant_folding=True,
            )
        proto = onnx.load(tmp)
        meta = {
            "architecture": _architecture(model),
            "embed_dim": str(getattr(model, "embed_dim", "")),
            "input_size": json.dumps([3, hgt, wid]),
            "mean": json.dumps(list(cfg.mean)),
            "std": json.dumps(list(cfg.std)),
            "interpolation": cfg.interpolation,
            "normalize_input": json.dumps(bool(normalize_input)),
            "input_range": _input_range(normalize_input),
            "fnc_version": _fnc_version(),
        }
        onnx.helper.set_model_props(proto, meta)
        onnx.checker.check_model(proto)
        onnx.save(proto, tmp)
        if verify:
            _verify(model, tmp, hgt, wid, device, dtype, cfg.mean, cfg.std, normalize_input)
        os.replace(tmp, path)
        _write_sidecar(path, meta, hgt, wid, cfg.mean, cfg.std, normalize_input)
    finally:
        model.train(was_training)
        if os.path.exists(tmp):
            os.remove(tmp)
    logger.info("exported %s (%s x %s, opset %d) to %s", meta["architecture"], hgt, wid, opset, path)
    return path


def _input_range(normalize_input: bool) -> str:
    return "RGB in [0, 1]" if normalize_input else "RGB in [0, 1], normalised with mean / std"


def _write_sidecar(
    path: Path,
    meta: dict[str, str],
    hgt: int,
    wid: int,
    mean: Sequence[float],
    std: Sequence[float],
    normalize_input: bool,
) -> None:
    sidecar = {
        "schema_version": _SIDECAR_SCHEMA_VERSION,
        "model_name": meta["architecture"],
        "img_size": [hgt, wid],
        "preprocess": "resize",
        "model_kwargs_schema_version": 1,
        "model_kwargs": {"img_size": [hgt, wid]},
        "embed_dim": int(meta["embed_dim"]) if meta["embed_dim"].isdigit() else None,
        "mean": list(mean),
        "std": list(std),
        "interpolation": meta["interpolation"],
        "normalize_input": bool(normalize_input),
        "input_range": _input_range(normalize_input),
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "fnc_version": meta["fnc_version"],
    }
    target = metadata_path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, target)


def _verify(
    model: nn.Module,
    file: str,
    hgt: int,
    wid: int,
    device: torch.device,
    dtype: torch.dtype,
    mean: Sequence[float],
    std: Sequence[float],
    normalize_input: bool,
) -> None:
    import onnxruntime as ort

    gen = torch.Generator().manual_seed(0)
    if normalize_input:
        # The graph takes [0, 1] pixels; PyTorch gets them normalised, as extract would.
        x = torch.rand(2, 3, hgt, wid, generator=gen)
        normed = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    else:
        x = normed = torch.randn(2, 3, hgt, wid, generator=gen)
    with torch.no_grad():
        ref = model(normed.to(device=device, dtype=dtype)).float().cpu().numpy()
    session = ort.InferenceSession(file, providers=["CPUExecutionProvider"])
    out = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
    # Relative to the embedding's scale: BNNeck features of an untrained model reach ~1e2,
    # where float32 reassociation alone differs by ~1e-5 relative.
    err = float(np.abs(out - ref).max())
    scale = max(float(np.abs(ref).max()), 1.0)
    logger.info("onnxruntime vs PyTorch: max abs error %.3g (embedding max %.3g)", err, scale)
    if out.shape != ref.shape or err > 1e-4 * scale:
        raise RuntimeError(
            f"exported model disagrees with PyTorch: shape {out.shape} vs {ref.shape}, max abs "
            f"error {err:.3g} (allowed {1e-4 * scale:.3g})"
        )
