"""fnc.export_onnx: onnxruntime gives PyTorch's embedding, at more than one batch size."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

import fnc

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

SIZE = (64, 64)


@pytest.fixture(scope="module", params=["fnc_resnet50", "baseline_resnet50"])
def exported(request, tmp_path_factory):
    torch.manual_seed(0)
    model = fnc.create_model(request.param)
    model.train()  # export must switch to eval and back
    path = fnc.export_onnx(model, tmp_path_factory.mktemp("onnx") / "sub" / "model.onnx", input_size=SIZE)
    assert model.training
    return model.eval(), path


@pytest.mark.parametrize("batch", [1, 3])
def test_onnxruntime_matches_pytorch(exported, batch):
    model, path = exported
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(batch, 3, *SIZE, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        ref = model(x).numpy()
    out = session.run(None, {"images": x.numpy()})[0]
    assert out.shape == (batch, model.embed_dim)
    # Untrained BNNeck features reach ~50 here; 1e-4 of that scale is float32 reassociation.
    scale = np.abs(ref).max()
    assert np.abs(out - ref).max() <= 1e-4 * scale
    norm = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    assert np.abs(norm(out) - norm(ref)).max() <= 1e-5  # the retrieval-relevant embedding


def test_graph_has_dynamic_batch_and_metadata(exported):
    model, path = exported
    proto = onnx.load(str(path))
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert proto.graph.input[0].name == "images" and dims[0].dim_param == "batch"
    assert [d.dim_value for d in dims[1:]] == [3, *SIZE]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["architecture"] == model.pretrained_cfg.architecture
    assert int(meta["embed_dim"]) == model.embed_dim
    assert json.loads(meta["input_size"]) == [3, *SIZE]
    assert json.loads(meta["mean"]) == list(model.pretrained_cfg.mean)
    assert not list(path.parent.glob("*.tmp")), "temporary file left behind"


def test_verify_and_missing_onnx_message(tmp_path, monkeypatch):
    model = fnc.create_model("baseline_resnet50")
    assert fnc.export_onnx(model, tmp_path / "m.onnx", (3, *SIZE), verify=True).is_file()
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match="pip install onnx onnxruntime"):
        fnc.export_onnx(model, tmp_path / "n.onnx", SIZE)
    assert not (tmp_path / "n.onnx").exists()
