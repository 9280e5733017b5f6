"""ONNX export of a re-ID model's inference embedding, with a dynamic batch axis.

The graph maps ``images`` (batch, 3, H, W), float32, already preprocessed (resized, scaled to
[0, 1], normalised with the model's mean / std), to ``embeddings`` (batch, D). The
preprocessing and model facts are stored in the file's metadata (``metadata_props``) so a
deployment can read them without fnc-reid. ``onnx`` is needed to export and ``onnxruntime`` to
verify; neither is a dependency of fnc-reid, both are imported only when called.
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

__all__ = ["export_onnx", "DEFAULT_OPSET", "INPUT_NAME", "OUTPUT_NAME"]

logger = logging.getLogger(__name__)

#: 17 is the newest opset the TorchScript exporter handles for every op we use, and every
#: onnxruntime since 1.11 runs it.
DEFAULT_OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"
_INSTALL_HINT = "pip install onnx onnxruntime"


def _require(module: str):
    try:
        return __import__(module)
    except ImportError as e:
        raise ImportError(f"ONNX export needs the {module!r} package: {_INSTALL_HINT}") from e


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
    verify: bool = False,
) -> Path:
    """Export ``model``'s eval forward (the embedding) to an ONNX file.

    The batch axis is dynamic; H and W are fixed at ``input_size``. The model is traced in
    eval mode (its previous mode is restored) with torch's TorchScript-based exporter
    (``dynamo=False``): it needs only the ``onnx`` package, whereas the newer
    ``torch.export``-based exporter also needs ``onnxscript``. The file is written to a
    temporary name beside ``path`` and renamed, so ``path`` is never left half-written.
    Metadata props: ``architecture``, ``embed_dim``, ``input_size`` (JSON [C, H, W]), ``mean``,
    ``std``, ``interpolation``, ``fnc_version``.

    Args:
        model: a fnc-reid model (any module whose eval forward maps (B, 3, H, W) to (B, D)).
        path: the ``.onnx`` file to write; parent folders are created.
        input_size: (H, W) (or (C, H, W)); default: the model's ``pretrained_cfg.input_size``.
        opset: ONNX opset version.
        verify: run the exported file with onnxruntime on a random batch of 2 and raise
            RuntimeError unless it matches PyTorch (max abs error <= 1e-4 x the largest
            embedding value); needs ``onnxruntime``.

    Returns:
        The path written.

    Raises:
        ImportError: ``onnx`` (or, with ``verify``, ``onnxruntime``) is missing; says what to install.

    Shape:
        ONNX graph: ``images`` (batch, 3, H, W) -> ``embeddings`` (batch, D)

    >>> import fnc
    >>> model = fnc.create_model("fnc_resnet50")
    >>> fnc.export_onnx(model, "fnc_resnet50.onnx", input_size=(64, 64))  # doctest: +SKIP
    PosixPath('fnc_resnet50.onnx')
    """
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
                model,
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
            "fnc_version": _fnc_version(),
        }
        onnx.helper.set_model_props(proto, meta)
        onnx.checker.check_model(proto)
        onnx.save(proto, tmp)
        if verify:
            _verify(model, tmp, hgt, wid, device, dtype)
        os.replace(tmp, path)
    finally:
        model.train(was_training)
        if os.path.exists(tmp):
            os.remove(tmp)
    logger.info("exported %s (%s x %s, opset %d) to %s", meta["architecture"], hgt, wid, opset, path)
    return path


def _verify(model: nn.Module, file: str, hgt: int, wid: int, device: torch.device, dtype: torch.dtype) -> None:
    import onnxruntime as ort

    x = torch.randn(2, 3, hgt, wid, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(x.to(device=device, dtype=dtype)).float().cpu().numpy()
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
