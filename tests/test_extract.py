"""fnc.extract: every input kind gives the features of calling the model on the same batch."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

import fnc
from fnc.data import CorruptImageError
from fnc.inference import build_eval_transform, list_images

SIZE = (64, 64)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return fnc.create_model("baseline_resnet50")


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(0)
    # Different sizes: preprocessing must resize each to the model's input size.
    return [rng.integers(0, 256, (40 + 8 * i, 50 + 4 * i, 3), dtype=np.uint8) for i in range(5)]


@pytest.fixture(scope="module")
def folder(tmp_path_factory, arrays):
    root = tmp_path_factory.mktemp("images")
    names = ["b/10.png", "b/2.png", "a.jpg", "b/1.png", "c/d/e.bmp"]
    for name, arr in zip(names, arrays):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(path, quality=95)
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.png").write_bytes(b"")
    return root


def _reference(model, images):
    """What the model gives on the same preprocessed batch, by hand."""
    transform = build_eval_transform(model, SIZE)
    batch = torch.stack([transform(im) for im in images])
    model.eval()
    with torch.no_grad():
        return model(batch).numpy()


def test_list_images_is_sorted_recursive_and_skips_non_images(folder):
    rel = [os.path.relpath(p, folder) for p in list_images(folder)]
    assert rel == [os.path.join(*p.split("/")) for p in ["a.jpg", "b/1.png", "b/10.png", "b/2.png", "c/d/e.bmp"]]


def test_folder_and_paths_match_the_model(model, folder):
    paths = list_images(folder)
    expected = _reference(model, [Image.open(p).convert("RGB") for p in paths])
    by_folder = fnc.extract(model, folder, batch_size=2, input_size=SIZE, progress=False)
    by_paths = fnc.extract(model, paths, batch_size=3, num_workers=1, input_size=SIZE, progress=False)
    assert by_folder.dtype == np.float32 and by_folder.shape == (5, model.embed_dim)
    np.testing.assert_allclose(by_folder, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(by_paths, expected, rtol=1e-5, atol=1e-5)


def test_pil_numpy_and_tensor_inputs_match_the_model(model, arrays):
    pils = [Image.fromarray(a) for a in arrays]
    expected = _reference(model, pils)
    np.testing.assert_allclose(
        fnc.extract(model, pils, batch_size=2, input_size=SIZE, progress=False), expected, rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        fnc.extract(model, arrays, batch_size=4, input_size=SIZE, progress=False), expected, rtol=1e-5, atol=1e-5
    )
    stack = np.stack([np.asarray(p.resize((50, 40))) for p in pils])  # (N, H, W, 3)
    np.testing.assert_allclose(
        fnc.extract(model, stack, input_size=SIZE, progress=False),
        _reference(model, [Image.fromarray(a) for a in stack]),
        rtol=1e-5,
        atol=1e-5,
    )
    batch = torch.randn(3, 3, *SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        direct = model.eval()(batch).numpy()
    # Tensors pass through unchanged: no resize or normalisation.
    np.testing.assert_allclose(fnc.extract(model, batch, batch_size=2, progress=False), direct, rtol=1e-5, atol=1e-5)


def test_normalize_restores_mode_and_uses_the_config_size(model, arrays):
    model.train()
    feats = fnc.extract(model, arrays[:2], normalize=True, input_size=SIZE, progress=False)
    assert model.training, "extract must restore train mode"
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, rtol=1e-5)
    # Default: the pretrained_cfg's (3, 288, 384); preprocessing goes through the config.
    assert build_eval_transform(model)(Image.fromarray(arrays[0])).shape == (3, 288, 384)
    empty = fnc.extract(model, [], progress=False)
    assert empty.shape == (0, model.embed_dim) and empty.dtype == np.float32


def test_clear_errors(model, tmp_path, folder):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(CorruptImageError, match="broken.jpg"):
        fnc.extract(model, [bad], input_size=SIZE, progress=False)
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        fnc.extract(model, [tmp_path / "missing.jpg"], progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        fnc.extract(model, tmp_path / "empty", progress=False)
    with pytest.raises(ValueError, match="uint8"):
        fnc.extract(model, [np.zeros((8, 8, 3), np.float32)], progress=False)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        fnc.extract(model, torch.zeros(3, 64, 64), progress=False)
