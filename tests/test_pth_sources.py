"""Third-party .pth sources: fast-reid's own checkpoint files, release URLs, and files that must be refused.

Checkpoints are written by fast-reid's ``fastreid.utils.checkpoint.Checkpointer`` (model and
optimizer state, random weights and BN statistics, as in tests/test_fastreid_parity.py), loaded
through ``fnc.create_model(arch, checkpoint_path=...)`` and compared with fast-reid's own forward.
Release URLs are served by an HTTP server on 127.0.0.1 that this module starts; the real URLs are
never fetched.
"""

from __future__ import annotations

import http.server
import os
import threading
from dataclasses import replace
from pathlib import Path

import fastreid.modeling as fastreid_modeling  # test extra / README Install: a missing oracle fails, never skips
import fastreid.utils.checkpoint as fastreid_checkpoint  # test extra / README Install: a missing oracle fails, never skips
import numpy as np
import pytest
import torch
from PIL import Image
from test_fastreid_parity import (
    CASES,
    FLOAT32_REL_TOL,
    NUM_CLASSES,
    R50_CASES,
    _fastreid_cfg,
    _images,
    _max_rel,
    _normalise,
    _randomise,
)

import fnc
from fnc.models import (
    CheckpointMismatchError,
    CorruptCheckpointError,
    PretrainedNotFoundError,
    UnsafeCheckpointError,
    _registry,
)


def _checkpointer_file(ref: torch.nn.Module, folder: Path, name: str = "model_final") -> Path:
    """A file as fast-reid's training writes it: Checkpointer.save with the optimizer's state."""
    optimizer = torch.optim.SGD(ref.parameters(), lr=0.0, momentum=0.9)
    for p in ref.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()  # lr 0: momentum buffers exist, weights unchanged
    fastreid_checkpoint.Checkpointer(ref, str(folder), optimizer=optimizer).save(name, iteration=7)
    return folder / f"{name}.pth"


@pytest.fixture(scope="module", params=sorted(CASES))
def written(request, tmp_path_factory):
    """(arch, fast-reid model in eval mode, checkpoint file, input size)."""
    arch = request.param
    depth, sbs, size = CASES[arch]
    torch.manual_seed(0)
    ref = fastreid_modeling.build_model(_fastreid_cfg(depth, sbs))
    _randomise(ref, seed=1)
    path = _checkpointer_file(ref, tmp_path_factory.mktemp(arch))
    return arch, ref.eval(), path, size


@pytest.fixture
def fnc_cache(tmp_path, monkeypatch):
    """A fresh Hugging Face cache root, so the fnc-reid cache beside it is fresh too."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "fnc-reid"


def test_checkpointer_file_holds_optimizer_state(written):
    _, _, path, _ = written
    data = torch.load(path, map_location="cpu", weights_only=True)
    assert {"model", "optimizer", "iteration"} <= set(data) and data["optimizer"]["state"]


def test_checkpoint_path_embeds_as_fastreid(written, fnc_cache):
    arch, ref, path, size = written
    model = fnc.create_model(arch, checkpoint_path=path).eval()
    # fast-reid's stem (ceil_mode, no padding) comes with its format, not from the caller.
    assert model.backbone.maxpool.ceil_mode and model.backbone.maxpool.padding == 0
    images = _images(size)
    with torch.no_grad():
        want = ref(images.clone())
        got = model(_normalise(images))
    assert _max_rel(got, want) < FLOAT32_REL_TOL, f"{arch}: max relative difference {_max_rel(got, want):.2e}"
    # The conversion is cached by content: a second load unpickles nothing and gives the same tensors.
    converted = list((fnc_cache / "converted").glob("*.safetensors"))
    assert len(converted) == 1
    again = fnc.create_model(arch, checkpoint_path=path, num_classes=NUM_CLASSES).eval()
    assert list((fnc_cache / "converted").glob("*.safetensors")) == converted
    with torch.no_grad():
        torch.testing.assert_close(again(_normalise(images)), got, rtol=0, atol=0)
    if arch.startswith("sbs"):
        assert float(again.pool.p.detach()) == float(ref.heads.pool_layer.p.detach())
    torch.testing.assert_close(again.bnneck.classifier.weight, ref.heads.weight.detach(), rtol=0, atol=0)


def _fastreid_preprocess(files, size) -> torch.Tensor:
    """fast-reid's test transform (fastreid/data/transforms/build.py): T.Resize(size, interpolation=3)
    on the PIL image, i.e. PIL's bicubic resize, then its ToTensor, which keeps 0-255. (fastreid.data
    itself imports torch._six and cannot be imported on current torch.)"""
    h, w = size
    arrays = [np.asarray(Image.open(f).convert("RGB").resize((w, h), Image.BICUBIC), dtype=np.float32) for f in files]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


@pytest.mark.parametrize("written", R50_CASES, indirect=True)
def test_extract_on_files_matches_fastreid_preprocessing(written, fnc_cache, tmp_path):
    arch, ref, path, size = written
    rng = np.random.default_rng(3)
    files = []
    for i, (h, w) in enumerate([(97, 211), (180, 150), (64, 90)]):
        # Smooth images with detail: a gradient plus noise, as crops are.
        base = np.linspace(0, 255, w)[None, :, None] * np.linspace(0.3, 1, h)[:, None, None]
        pixels = np.clip(base + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)
        files.append(tmp_path / f"car{i}.jpg")
        Image.fromarray(pixels).save(files[-1], quality=95)
    model = fnc.create_model(arch, checkpoint_path=path)
    assert model.pretrained_cfg.interpolation == "bicubic"
    got = fnc.extract(model, [str(f) for f in files], input_size=size, progress=False)
    with torch.no_grad():
        want = ref(_fastreid_preprocess(files, size)).numpy()
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() >= 0.9999, f"{arch}: cosine {cos.min():.6f}"


@pytest.mark.parametrize("written", ["baseline_resnet50_ibn", "baseline_resnet101_ibn"], indirect=True)
def test_strong_baseline_checkpoint_loads(written, fnc_cache, tmp_path):
    """reid-strong-baseline / DMT names: base.*, bottleneck.*, classifier.weight; their stem pads by 1."""
    arch, ref, _, size = written
    sd = ref.state_dict()
    theirs = {k.replace("backbone.", "base.", 1): v for k, v in sd.items() if k.startswith("backbone.")}
    theirs.update({k.replace("heads.bottleneck.0.", "bottleneck."): v for k, v in sd.items() if "bottleneck.0." in k})
    theirs["classifier.weight"] = sd["heads.weight"]
    theirs["base.fc.weight"], theirs["base.fc.bias"] = torch.zeros(1000, 2048), torch.zeros(1000)
    torch.save(theirs, tmp_path / "resnet50_ibn_a_model_120.pth")
    model = fnc.create_model(arch, checkpoint_path=tmp_path / "resnet50_ibn_a_model_120.pth").eval()
    assert model.backbone.maxpool.padding == 1  # their IBN-a ResNet keeps IBN-Net's stem
    ours = fnc.create_model(arch, stem_pool="pad1").eval()
    ours.load_state_dict(fnc.models._fastreid.fastreid_to_fnc(sd, arch).state_dict, strict=False)
    with torch.no_grad():
        x = _normalise(_images(size))
        torch.testing.assert_close(model(x), ours(x), rtol=0, atol=0)


# --- URL tags, served from 127.0.0.1 ------------------------------------------------------------


class _Files(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):
        type(self).requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """(base URL, request log) of an HTTP server on 127.0.0.1 serving tmp_path/www."""
    root = tmp_path / "www"
    root.mkdir()
    handler = type("Handler", (_Files,), {"requests": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: handler(*a, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", handler.requests, root
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def tag_at(monkeypatch):
    """Point a registered tag's url at another address (the cfg table entry only)."""

    def point(name: str, url: str):
        arch, tag = name.split(".")
        cfgs = dict(_registry._pretrained_cfgs[arch])
        cfgs[tag] = replace(cfgs[tag], url=url)
        monkeypatch.setitem(_registry._pretrained_cfgs, arch, cfgs)

    return point


@pytest.mark.parametrize("written", ["sbs_resnet50_ibn"], indirect=True)
def test_url_tag_downloads_once_converts_and_loads_offline(written, server, tag_at, fnc_cache, monkeypatch):
    arch, ref, path, size = written
    base, requests, root = server
    sd = torch.load(path, map_location="cpu", weights_only=True)
    # A release-era file: pixel statistics saved, old head names.
    sd["model"]["pixel_mean"] = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
    sd["model"]["pixel_std"] = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
    sd["model"]["heads.classifier.weight"] = sd["model"].pop("heads.weight")
    (root / "releases").mkdir()
    torch.save(sd, root / "releases" / "veri_sbs_R50-ibn.pth")
    tag_at("sbs_resnet50_ibn.fastreid_veri", f"{base}/releases/veri_sbs_R50-ibn.pth")

    model = fnc.create_model("sbs_resnet50_ibn.fastreid_veri", pretrained=True).eval()
    assert requests == ["/releases/veri_sbs_R50-ibn.pth"]
    images = _images(size)
    with torch.no_grad():
        want = ref(images.clone())
        got = model(_normalise(images))
    assert _max_rel(got, want) < FLOAT32_REL_TOL
    converted = list(fnc_cache.glob("*/veri_sbs_R50-ibn.safetensors"))
    assert len(converted) == 1 and (converted[0].parent / "veri_sbs_R50-ibn.pth").is_file()
    assert not list(fnc_cache.rglob("*.incomplete"))

    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    # Only the converted safetensors file is read now: the downloaded pickle could be gone.
    (converted[0].parent / "veri_sbs_R50-ibn.pth").unlink()
    offline = fnc.create_model("sbs_resnet50_ibn.fastreid_veri", pretrained=True).eval()
    assert requests == ["/releases/veri_sbs_R50-ibn.pth"]
    with torch.no_grad():
        torch.testing.assert_close(offline(_normalise(images)), got, rtol=0, atol=0)


def test_url_offline_without_cache_says_how_to_fix_it(server, tag_at, fnc_cache, monkeypatch):
    base, requests, _ = server
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    tag_at("baseline_resnet50_ibn.in1k", f"{base}/resnet50_ibn_a-d9d0bb7b.pth")
    with pytest.raises(PretrainedNotFoundError, match=r"HF_HUB_OFFLINE.*Go online once.*checkpoint_path="):
        fnc.create_model("baseline_resnet50_ibn.in1k", pretrained=True)
    assert requests == []


def test_url_missing_file_is_not_found(server, tag_at, fnc_cache):
    base, requests, _ = server
    tag_at("baseline_resnet50_ibn.in1k", f"{base}/gone.pth")
    requests.clear()
    with pytest.raises(PretrainedNotFoundError, match="HTTP 404"):
        fnc.create_model("baseline_resnet50_ibn.in1k", pretrained=True)
    assert requests == ["/gone.pth"]
    assert not list(fnc_cache.rglob("*.pth"))  # nothing half-written is left to pass for a download


def test_ibn_net_imagenet_release_fills_the_backbone(server, tag_at, fnc_cache):
    """IBN-Net's release keys (conv1, bn1, layer1-4 with bn1.IN / bn1.BN, fc): the backbone, fc dropped."""
    base, requests, root = server
    torch.manual_seed(4)
    backbone = fnc.create_model("baseline_resnet50_ibn").backbone
    theirs = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in backbone.state_dict().items()}
    theirs["fc.weight"], theirs["fc.bias"] = torch.randn(1000, 2048), torch.randn(1000)
    torch.save(theirs, root / "resnet50_ibn_a-d9d0bb7b.pth")
    tag_at("baseline_resnet50_ibn.in1k", f"{base}/resnet50_ibn_a-d9d0bb7b.pth")
    model = fnc.create_model("baseline_resnet50_ibn.in1k", pretrained=True)
    assert model.backbone.maxpool.padding == 1  # IBN-Net's ImageNet stem
    own = model.backbone.state_dict()
    assert all(torch.equal(own[k], theirs[k]) for k in own)
    assert requests == ["/resnet50_ibn_a-d9d0bb7b.pth"]


# --- bad input ------------------------------------------------------------------------------------


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused_unrun(tmp_path, fnc_cache):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"backbone.conv1.weight": torch.zeros(1)}, "payload": _RunsCode(marker)}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"needs .*system.*weights_only=True"):
        fnc.create_model("baseline_resnet50_ibn", checkpoint_path=path)
    assert not marker.exists()


def test_url_pickle_that_runs_code_is_refused_unrun(server, tag_at, fnc_cache, tmp_path):
    base, _, root = server
    marker = tmp_path / "ran"
    torch.save({"model": _RunsCode(marker)}, root / "evil.pth")
    tag_at("sbs_resnet50_ibn.fastreid_veri", f"{base}/evil.pth")
    with pytest.raises(UnsafeCheckpointError, match="system"):
        fnc.create_model("sbs_resnet50_ibn.fastreid_veri", pretrained=True)
    assert not marker.exists()
    assert not list(fnc_cache.rglob("*.safetensors"))


@pytest.mark.parametrize("written", ["baseline_resnet50_ibn"], indirect=True)  # any file: only its bytes are cut
def test_truncated_file(written, tmp_path, fnc_cache):
    _, _, path, _ = written
    cut = tmp_path / "cut.pth"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CorruptCheckpointError, match=r"corrupt or truncated checkpoint .*cut\.pth"):
        fnc.create_model("baseline_resnet50_ibn", checkpoint_path=cut)


@pytest.mark.parametrize("written", ["sbs_resnet50_ibn"], indirect=True)
def test_checkpoint_of_another_architecture_lists_keys(written, fnc_cache):
    _, _, path, _ = written
    with pytest.raises(
        CheckpointMismatchError,
        match=r"'[^']*model_final\.pth' does not fit baseline_resnet50_ibn; unexpected keys 66: non_local\.stage2\.0\.",
    ):
        fnc.create_model("baseline_resnet50_ibn", checkpoint_path=path)
    with pytest.raises(CheckpointMismatchError, match=r"missing keys \d+: .*layer3\.6\."):
        fnc.create_model("baseline_resnet101_ibn", checkpoint_path=path)


@pytest.mark.parametrize("written", R50_CASES, indirect=True)
def test_pixel_mean_unlike_the_cfg_is_an_error(written, tmp_path, fnc_cache):
    _, _, path, _ = written
    data = torch.load(path, map_location="cpu", weights_only=True)
    data["model"]["pixel_mean"] = torch.tensor([127.5, 127.5, 127.5]).view(1, 3, 1, 1)
    data["model"]["pixel_std"] = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
    torch.save(data, tmp_path / "other_mean.pth")
    arch = written[0]
    with pytest.raises(CheckpointMismatchError, match=r"pixel_mean \[127\.500, 127\.500, 127\.500\].*mean \(0\.485"):
        fnc.create_model(arch, checkpoint_path=tmp_path / "other_mean.pth")
    # The check reads the conversion's metadata, so it holds on a cached load too.
    with pytest.raises(CheckpointMismatchError, match="pixel_mean"):
        fnc.create_model(arch, checkpoint_path=tmp_path / "other_mean.pth")


def test_unknown_pth_format_and_not_a_state_dict(tmp_path, fnc_cache):
    torch.save({"encoder.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointMismatchError, match=r"none of the \.pth formats.*encoder\.weight"):
        fnc.create_model("baseline_resnet50_ibn", checkpoint_path=tmp_path / "other.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CorruptCheckpointError, match="not a state dict"):
        fnc.create_model("baseline_resnet50_ibn", checkpoint_path=tmp_path / "list.pth")


def test_safetensors_paths_still_refuse_pickles(tmp_path, fnc_cache):
    """Only .pth / .pt names are read as pickles by design; a pickle under any other name is refused."""
    torch.save({"w": torch.zeros(1)}, tmp_path / "model.safetensors")
    with pytest.raises(UnsafeCheckpointError, match="torch.save archive"):
        fnc.create_model("baseline_resnet50_ibn", checkpoint_path=tmp_path / "model.safetensors")
    torch.save({"w": torch.zeros(1)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(UnsafeCheckpointError, match="refuses pickle"):
        fnc.create_model("baseline_resnet50_ibn", checkpoint_path=tmp_path / "pytorch_model.bin")


# --- convert_checkpoint ---------------------------------------------------------------------------


@pytest.mark.parametrize("written", ["sbs_resnet50_ibn"], indirect=True)
def test_convert_checkpoint_writes_a_loadable_folder(written, tmp_path, fnc_cache):
    arch, ref, path, size = written
    out = fnc.models.convert_checkpoint(path, tmp_path / "sbs-veri", "sbs_resnet50_ibn.fastreid_veri")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    card = (out / "README.md").read_text()
    assert "fast-reid checkpoint model_final.pth" in card and "97.0" in card
    loaded = fnc.create_model(checkpoint_path=out).eval()
    assert loaded.pretrained_cfg.metrics == {"rank1": 0.970, "mAP": 0.819, "mINP": 0.463}
    images = _images(size)
    with torch.no_grad():
        assert _max_rel(loaded(_normalise(images)), ref(images.clone())) < FLOAT32_REL_TOL
    with pytest.raises(ValueError, match="not a .pth"):
        fnc.models.convert_checkpoint(out / "model.safetensors", tmp_path / "x", arch)


@pytest.mark.parametrize("written", ["sbs_resnet50_ibn"], indirect=True)
def test_convert_command_writes_a_folder_push_can_publish(written, tmp_path, fnc_cache, capsys):
    from fnc.cli import main

    arch, ref, path, size = written
    out = tmp_path / "sbs-veri"
    code = main(
        [
            "convert",
            str(path),
            str(out),
            "--model",
            "sbs_resnet50_ibn.fastreid_veri",
            "--cache-dir",
            str(tmp_path / "cache"),
        ]
    )
    stdout = capsys.readouterr().out
    assert code == 0 and f"fnc-reid push {out}" in stdout
    loaded = fnc.create_model(checkpoint_path=out).eval()
    images = _images(size)
    with torch.no_grad():
        assert _max_rel(loaded(_normalise(images)), ref(images.clone())) < FLOAT32_REL_TOL

    # An existing, non-empty output folder is never written into; bad --metrics is one line.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert main(["convert", str(path), str(tmp_path / "mine"), "--model", arch]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    assert main(["convert", str(path), str(tmp_path / "new"), "--model", arch, "--metrics", "{mAP: 1}"]) == 2
    assert "--metrics is not JSON" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
