"""Pretrained weights and the Hub, against the local Hub-compatible server of conftest.py.

The server is seeded with randomly initialised timm models saved as safetensors under timm's
repo ids, so ``pretrained=True`` runs the real download path (huggingface_hub, HTTP, cache)
without the internet. Nothing of ours is mocked.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch
from huggingface_hub import HfApi

import fnc
from fnc.models import (
    BFE,
    FNC,
    CheckpointMismatchError,
    CorruptCheckpointError,
    PretrainedNotFoundError,
    ReIDModel,
    UnsafeCheckpointError,
)

TIMM = {  # our backbone -> (timm model, timm Hub repo)
    "resnet50": ("resnet50", "timm/resnet50.tv_in1k"),
    "se_resnext101": ("seresnext101_32x4d", "timm/seresnext101_32x4d.gluon_in1k"),
}
LOADER_LOG = "fnc.models._loader"
IMG = (2, 3, 64, 64)


def _images(shape=IMG):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(1))


def _timm_key(key: str) -> str | None:
    """The timm key a tensor of ours must hold (trunk or either FNC branch), None for heads."""
    if key.startswith("backbone."):
        return key[len("backbone.") :]
    first, _, rest = key.partition(".")
    return rest if first in ("spatial", "channel") and rest.startswith(("layer3.", "layer4.")) else None


@pytest.fixture(scope="session")
def timm_weights(hub, tmp_path_factory):
    """``seed(backbone)`` -> (state dict, timm model): a random timm model, uploaded once per session."""
    seeded: dict[str, tuple[dict, torch.nn.Module]] = {}

    def seed(backbone: str):
        if backbone not in seeded:
            timm_name, repo = TIMM[backbone]
            torch.manual_seed(123)
            model = timm.create_model(timm_name, pretrained=False).eval()
            gen = torch.Generator().manual_seed(7)
            with torch.no_grad():
                # timm initialises BN to 1/0 and stats to 0/1, as we do: perturb them, so that
                # "loaded" and "freshly initialised" tell apart for every tensor.
                for name, t in model.state_dict().items():
                    if t.is_floating_point() and (".bn" in name or name.startswith("bn1") or "downsample.1" in name):
                        t.add_(0.1 * torch.rand(t.shape, generator=gen))
            state = {k: v.contiguous() for k, v in model.state_dict().items()}
            path = tmp_path_factory.mktemp(backbone) / "model.safetensors"
            safetensors.torch.save_file(state, str(path))
            api = HfApi()
            api.create_repo(repo, exist_ok=True)
            api.upload_file(path_or_fileobj=str(path), path_in_repo="model.safetensors", repo_id=repo)
            seeded[backbone] = (state, model, path)
        return seeded[backbone]

    return seed


def _loader_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOADER_LOG and r.levelno == logging.INFO]


def _weight_gets(hub, filename="model.safetensors") -> list:
    return [(m, p) for m, p in hub.requests if m == "GET" and "/resolve/" in p and p.endswith(filename)]


# ----------------------------------------------------------------------------- pretrained tags


def test_every_model_has_an_in1k_tag_from_timm():
    # The IBN-a models' weights are not timm's: IBN-Net's and fast-reid's release files (tested in
    # tests/test_pth_sources.py).
    tags = fnc.list_models(pretrained=True, exclude_filters="*_ibn")
    assert tags == sorted(f"{m}.in1k" for m in fnc.list_models(exclude_filters="*_ibn"))
    repos = {
        "resnet50": "timm/resnet50.tv_in1k",
        "resnet101": "timm/resnet101.tv_in1k",
        "se_resnext101": "timm/seresnext101_32x4d.gluon_in1k",
    }
    for tag in tags:
        cfg = fnc.get_pretrained_cfg(tag)
        backbone = tag.split(".")[0].split("_", 1)[1]
        assert (cfg.hf_hub_id, cfg.hf_hub_filename) == (repos[backbone], "model.safetensors")
        assert cfg.weights_format == "timm_backbone" and cfg.classifier == ("fc",)
        assert cfg.input_size == (3, 288, 384) and cfg.license and cfg.source and cfg.dataset
    assert fnc.get_pretrained_cfg("fnc_se_resnext101").name == "fnc_se_resnext101.in1k"


def test_ibn_tags_are_release_urls_with_their_metrics():
    tags = fnc.list_models("*_ibn", pretrained=True)
    assert tags == [
        "baseline_resnet101_ibn.in1k",
        "baseline_resnet50_ibn.fastreid_vehicleid",
        "baseline_resnet50_ibn.fastreid_veriwild",
        "baseline_resnet50_ibn.in1k",
        "sbs_resnet50_ibn.fastreid_veri",
    ]
    for tag in tags:
        cfg = fnc.get_pretrained_cfg(tag)
        assert cfg.url.startswith("https://github.com/") and cfg.hf_hub_id is None and cfg.file is None
        assert cfg.input_size == (3, 256, 256) and cfg.interpolation == "bicubic"
        assert cfg.mean == (0.485, 0.456, 0.406) and cfg.std == (0.229, 0.224, 0.225)
        assert all(0 <= v <= 1 for v in cfg.metrics.values())
    in1k = fnc.get_pretrained_cfg("baseline_resnet50_ibn.in1k")
    assert in1k.url == "https://github.com/XingangPan/IBN-Net/releases/download/v1.0/resnet50_ibn_a-d9d0bb7b.pth"
    assert (in1k.license, in1k.weights_format, in1k.model_args) == ("mit", "timm_backbone", {})
    veri = fnc.get_pretrained_cfg("sbs_resnet50_ibn")
    assert veri.name == "sbs_resnet50_ibn.fastreid_veri" and veri.license == "apache-2.0"
    assert veri.url == "https://github.com/JDAI-CV/fast-reid/releases/download/v0.1.1/veri_sbs_R50-ibn.pth"
    assert veri.metrics == {"rank1": 0.970, "mAP": 0.819, "mINP": 0.463} and "MODEL_ZOO" in veri.source
    # fast-reid's BoT vehicle configs pool with GeM (p = 3); every fast-reid model has its ceil stem.
    wild = fnc.create_model("baseline_resnet50_ibn.fastreid_veriwild")
    assert wild.pool.p == 3.0 and not wild.pool.learn_p and wild.backbone.maxpool.ceil_mode
    assert (
        fnc.create_model("baseline_resnet50_ibn.fastreid_veriwild", pooling="avg").pool.__class__.__name__
        == "GlobalAvgPool"
    )
    assert fnc.create_model("baseline_resnet50_ibn").backbone.maxpool.padding == 1  # IBN-Net's stem by default


def test_headline_fnc_se_resnext101_holds_imagenet_in_trunk_and_both_branches(timm_weights, caplog):
    state, _, _ = timm_weights("se_resnext101")
    caplog.set_level(logging.INFO)
    model = fnc.create_model("fnc_se_resnext101", pretrained=True)
    own = model.state_dict()

    filled: dict[str, list[str]] = {}
    for key, value in own.items():
        timm_key = _timm_key(key)
        if timm_key is not None:
            assert torch.equal(value, state[timm_key]), key
            filled.setdefault(timm_key, []).append(key)
    # Every ImageNet tensor but timm's classifier is used; layer3[1:] and layer4 twice.
    assert set(filled) == {k for k in state if not k.startswith("fc.")}
    for timm_key, keys in filled.items():
        branch = timm_key.startswith("layer4.") or (
            timm_key.startswith("layer3.") and not timm_key.startswith("layer3.0.")
        )
        assert sorted(k.split(".")[0] for k in keys) == (["channel", "spatial"] if branch else ["backbone"])
    # Heads are initialised as SPEC says (BNNeck: BN weight 1, bias 0; no classifier by default).
    for neck in model.bnnecks():
        assert torch.equal(neck.bn.weight, torch.ones_like(neck.bn.weight)) and not neck.bn.bias.any()
    assert model.num_classes == 0 and model.pretrained_cfg.name == "fnc_se_resnext101.in1k"

    lines = _loader_lines(caplog)
    assert len(lines) == 1, lines
    n_loaded = sum(len(v) for v in filled.values())
    assert f"loaded {n_loaded} tensors from timm/seresnext101_32x4d.gluon_in1k" in lines[0]
    assert f"initialised {len(own) - n_loaded} (" in lines[0]
    assert "spatial.attention" in lines[0] and "channel.bnneck" in lines[0] and "fc" in lines[0]


@pytest.mark.parametrize("backbone", ["resnet50", "se_resnext101"])
def test_baseline_embeddings_equal_timm_features(timm_weights, backbone):
    _, timm_model, _ = timm_weights(backbone)
    # timm keeps stride 2 in layer4; with the same stride the networks must agree.
    model = fnc.create_model(f"baseline_{backbone}", pretrained=True, last_stride=2).eval()
    x = _images()
    with torch.no_grad():
        emb = model(x)
        pooled = timm_model.forward_head(timm_model.forward_features(x), pre_logits=True)
    # A fresh BNNeck in eval is x / sqrt(1 + eps) (running stats 0/1, weight 1, bias 0).
    expected = pooled / math.sqrt(1 + model.bnneck.bn.eps)
    torch.testing.assert_close(emb, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,kwargs", [("bfe_resnet50", {}), ("fnc_resnet50", {"separate": False})])
def test_in1k_fills_the_backbone_and_initialises_the_heads(timm_weights, name, kwargs):
    state, _, _ = timm_weights("resnet50")
    model = fnc.create_model(name, pretrained=True, num_classes=4, **kwargs)
    own = model.state_dict()
    backbone = {k[len("backbone.") :]: v for k, v in own.items() if k.startswith("backbone.")}
    assert set(backbone) == {k for k in state if not k.startswith("fc.")}
    assert all(torch.equal(v, state[k]) for k, v in backbone.items())
    if name.startswith("bfe"):
        # BFE's extra bottleneck is new, not a copy of layer4's last block.
        assert not torch.equal(own["erase_block.0.conv1.weight"], state["layer4.2.conv1.weight"])
    assert model.num_classes == 4


# ----------------------------------------------------------------------------- cache and offline


def test_second_load_comes_from_the_cache_and_offline_works(timm_weights, hub, hf_cache, request, caplog):
    timm_weights("resnet50")
    hub.clear_requests()
    first = fnc.create_model("fnc_resnet50", pretrained=True).state_dict()
    assert len(_weight_gets(hub)) == 1 and any(hf_cache.rglob("model.safetensors"))
    fnc.create_model("fnc_resnet50", pretrained=True)
    assert len(_weight_gets(hub)) == 1  # revalidated with HEAD, not downloaded again

    request.getfixturevalue("hf_offline")
    hub.clear_requests()
    caplog.set_level(logging.INFO)
    offline = fnc.create_model("fnc_resnet50", pretrained=True).state_dict()
    assert hub.requests == []  # not one request
    assert all(torch.equal(first[k], offline[k]) for k in first if _timm_key(k))
    assert len(_loader_lines(caplog)) == 1


def test_offline_without_cache_says_how_to_fix_it(timm_weights, hub, hf_cache, hf_offline):
    timm_weights("resnet50")
    with pytest.raises(PretrainedNotFoundError) as err:
        fnc.create_model("fnc_resnet50", pretrained=True)
    msg = str(err.value)
    assert "timm/resnet50.tv_in1k" in msg and "model.safetensors" in msg
    assert "not in the cache" in msg and str(hf_cache) in msg and "checkpoint_path=" in msg
    assert "HF_HUB_OFFLINE" in msg


def test_checkpoint_path_is_used_instead_of_the_hub(timm_weights, hub, hf_cache, hf_offline):
    state, _, path = timm_weights("resnet50")
    hub.clear_requests()
    model = fnc.create_model("fnc_resnet50", pretrained=True, checkpoint_path=path)
    assert hub.requests == [] and not any(hf_cache.rglob("*.safetensors"))
    assert torch.equal(model.state_dict()["channel.layer4.2.conv3.weight"], state["layer4.2.conv3.weight"])


# ----------------------------------------------------------------------------- publishing


def _trained_like(name: str, num_classes: int) -> ReIDModel:
    """A model whose every tensor differs from a fresh one: pretrained trunk, BN stats updated."""
    model = fnc.create_model(name, pretrained=True, num_classes=num_classes)
    with torch.no_grad():
        model.train()(_images((4, 3, 64, 64)))
    return model.eval()


def test_push_to_hub_then_hf_hub_gives_identical_embeddings(timm_weights, hub, hf_cache, caplog):
    timm_weights("resnet50")
    model = _trained_like("fnc_resnet50", num_classes=5)
    repo = "test-user/fnc-resnet50-roundtrip"
    model.push_to_hub(repo, dataset="veri776", metrics={"mAP": 0.812, "rank1": 0.954})
    x = _images()
    with torch.no_grad():
        reference = model(x)

    files = set(HfApi().list_repo_files(repo))
    assert {"config.json", "model.safetensors", "README.md"} <= files

    caplog.set_level(logging.INFO)
    loaded = fnc.create_model(f"hf-hub:{repo}")
    assert loaded.training and loaded.num_classes == 0  # create_model's default: feature extractor
    assert loaded.pretrained_cfg.hf_hub_id == repo and loaded.pretrained_cfg.dataset == "veri776"
    assert loaded.pretrained_cfg.metrics == {"mAP": 0.812, "rank1": 0.954}
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), reference)
    lines = _loader_lines(caplog)
    assert len(lines) == 1 and f"from {repo}" in lines[0] and "classifier dropped" in lines[0]

    # The mixin's from_pretrained keeps the classifier the config records.
    again = FNC.from_pretrained(repo)
    assert not again.training and again.num_classes == 5
    assert torch.equal(again.spatial.bnneck.classifier.weight, model.spatial.bnneck.classifier.weight)
    with torch.no_grad():
        assert torch.equal(again(x), reference)
    assert isinstance(ReIDModel.from_pretrained(repo), FNC)

    # A classifier of another size is re-initialised, said in the one log line.
    caplog.clear()
    other = fnc.create_model(f"hf-hub:{repo}", num_classes=3)
    assert other.num_classes == 3
    assert (
        "classifier dropped and re-initialised (checkpoint: 5 classes, model: num_classes=3)"
        in _loader_lines(caplog)[0]
    )

    card = Path(HfApi().hf_hub_download(repo, "README.md")).read_text()
    for needed in (
        "`fnc_resnet50`",
        "https://arxiv.org/abs/2004.12270",
        "Training data | veri776",
        "288 x 384 (H x W)",
        "License | apache-2.0",
        "| without | 81.2 | 95.4 |",
        "| with k-reciprocal (k1=75, k2=10, lambda=0.1) | not evaluated | not evaluated |",
        f'fnc.create_model("hf-hub:{repo}")',
        "library_name: fnc-reid",
    ):
        assert needed in card, needed
    config = json.loads(Path(HfApi().hf_hub_download(repo, "config.json")).read_text())
    assert config["architecture"] == "fnc_resnet50" and config["num_classes"] == 5
    assert config["separate"] is True and config["pretrained_cfg"]["metrics"] == {"mAP": 0.812, "rank1": 0.954}


def test_hf_hub_revision_pins_a_commit(timm_weights, hub, hf_cache):
    timm_weights("resnet50")
    model = _trained_like("baseline_resnet50", num_classes=0)
    repo = "test-user/baseline-resnet50-revisions"
    model.push_to_hub(repo)
    sha = HfApi().list_repo_commits(repo)[0].commit_id
    x = _images()
    with torch.no_grad():
        reference = model(x)
        model.bnneck.bn.running_mean.add_(1)
    model.push_to_hub(repo)
    with torch.no_grad():
        assert torch.equal(fnc.create_model(f"hf-hub:{repo}@{sha}").eval()(x), reference)
        assert torch.equal(fnc.create_model(f"hf-hub:{repo}", revision=sha).eval()(x), reference)
        assert not torch.equal(fnc.create_model(f"hf-hub:{repo}").eval()(x), reference)


def test_save_pretrained_folder_loads_back(timm_weights, tmp_path):
    timm_weights("resnet50")
    model = _trained_like("bfe_resnet50", num_classes=3)
    model.save_pretrained(tmp_path, dataset="cityflow", metrics={"mAP": 0.605, "rank1_rerank": 0.8})
    assert {p.name for p in tmp_path.iterdir()} == {"config.json", "model.safetensors", "README.md"}
    card = (tmp_path / "README.md").read_text()
    for needed in (
        "`bfe_resnet50`",
        "https://arxiv.org/abs/1811.07130",
        "Training data | cityflow",
        "| without | 60.5 | not evaluated |",
        "| not evaluated | 80.0 |",
        "hf-hub:<org>/<repo>",
    ):
        assert needed in card, needed
    x = _images()
    with torch.no_grad():
        reference = model(x)
        for loaded in (
            fnc.create_model(checkpoint_path=tmp_path, num_classes=3),
            fnc.create_model("bfe_resnet50", checkpoint_path=tmp_path, num_classes=3),
            BFE.from_pretrained(tmp_path),
            ReIDModel.from_pretrained(str(tmp_path)),
        ):
            assert loaded.num_classes == 3
            assert torch.equal(loaded.eval()(x), reference)
    with pytest.raises(CheckpointMismatchError, match="holds a bfe_resnet50 checkpoint, not fnc_resnet50"):
        fnc.create_model("fnc_resnet50", checkpoint_path=tmp_path)
    with pytest.raises(CheckpointMismatchError, match="not a FNC"):
        FNC.from_pretrained(tmp_path)


def test_metrics_are_fractions_and_a_percentage_is_refused(hub, tmp_path):
    model = fnc.create_model("baseline_resnet50")
    for bad in ({"mAP": 81.2}, {"rank1": -0.1}, {"mAP": float("nan")}, {"mAP": "0.5"}):
        key = next(iter(bad))
        with pytest.raises(ValueError, match=f"metric '{key}' is .*metrics are fractions in \\[0, 1\\]"):
            model.save_pretrained(tmp_path / "bad", metrics=bad)
        with pytest.raises(ValueError, match=f"metric '{key}'"):
            model.hub_config(metrics=bad)
    assert not (tmp_path / "bad").exists()
    with pytest.raises(ValueError, match="pass 0.812"):
        model.generate_model_card(metrics={"mAP": 81.2})
    hub.clear_requests()
    with pytest.raises(ValueError, match="metric 'mAP' is 81.2"):
        model.push_to_hub("test-user/percent-metrics", metrics={"mAP": 81.2})
    assert hub.requests == []  # refused before the repo is created
    # The edges are fractions too, and the card shows them with one decimal.
    card = str(model.generate_model_card(metrics={"mAP": 0.0, "rank1": 1.0}))
    assert "| without | 0.0 | 100.0 |" in card


# ----------------------------------------------------------------------------- errors


def _publish(tmp_path: Path, repo: str, files: dict[str, bytes | str]) -> None:
    api = HfApi()
    api.create_repo(repo, exist_ok=True)
    for name, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        api.upload_file(path_or_fileobj=data, path_in_repo=name, repo_id=repo)


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    """A saved baseline_resnet50 folder: its config and weights, to publish broken variants of."""
    folder = tmp_path_factory.mktemp("baseline")
    fnc.create_model("baseline_resnet50").save_pretrained(folder)
    return (folder / "config.json").read_text(), (folder / "model.safetensors").read_bytes()


def test_missing_repo(hf_cache):
    with pytest.raises(PretrainedNotFoundError, match="'test-user/no-such-repo' not found"):
        fnc.create_model("hf-hub:test-user/no-such-repo")
    with pytest.raises(PretrainedNotFoundError, match="no-such-repo"):
        ReIDModel.from_pretrained("test-user/no-such-repo")


def test_missing_weights_file(tmp_path, small_checkpoint, hf_cache):
    config, _ = small_checkpoint
    _publish(tmp_path, "test-user/config-only", {"config.json": config})
    with pytest.raises(
        PretrainedNotFoundError, match="'model.safetensors' not found in Hub repository test-user/config-only"
    ):
        fnc.create_model("hf-hub:test-user/config-only")
    _publish(tmp_path, "test-user/weights-only", {"model.safetensors": small_checkpoint[1]})
    with pytest.raises(PretrainedNotFoundError, match="test-user/weights-only has no config.json"):
        fnc.create_model("hf-hub:test-user/weights-only")


def test_wrong_revision(timm_weights, small_checkpoint, tmp_path, hf_cache):
    timm_weights("resnet50")
    with pytest.raises(
        PretrainedNotFoundError, match="revision 'v9' not found in Hub repository 'timm/resnet50.tv_in1k'"
    ):
        fnc.create_model("baseline_resnet50", pretrained=True, revision="v9")
    _publish(tmp_path, "test-user/rev", dict(zip(("config.json", "model.safetensors"), small_checkpoint)))
    with pytest.raises(PretrainedNotFoundError, match="revision 'nope' not found in Hub repository 'test-user/rev'"):
        fnc.create_model("hf-hub:test-user/rev@nope")
    with pytest.raises(ValueError, match="two revisions"):
        fnc.create_model("hf-hub:test-user/rev@main", revision="other")


@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
def test_truncated_or_corrupted_safetensors(small_checkpoint, tmp_path, hf_cache, damage):
    config, weights = small_checkpoint
    if damage == "truncated":
        bad = weights[: len(weights) // 2]
    else:  # a valid length prefix, then bytes that are no JSON header
        bad = weights[:8] + b"{" + bytes(range(256)) * 4 + weights[8 + 1 + 1024 :]
    repo = f"test-user/{damage}"
    _publish(tmp_path, repo, {"config.json": config, "model.safetensors": bad})
    with pytest.raises(CorruptCheckpointError) as err:
        fnc.create_model(f"hf-hub:{repo}")
    msg = str(err.value)
    assert "corrupt or truncated safetensors file" in msg and repo in msg and str(hf_cache) in msg
    assert "delete it" in msg
    local = tmp_path / "bad.safetensors"
    local.write_bytes(bad)
    with pytest.raises(CorruptCheckpointError, match="bad.safetensors"):
        fnc.create_model("baseline_resnet50", checkpoint_path=local)


def test_checkpoint_of_another_architecture(tmp_path, hf_cache):
    bfe = tmp_path / "bfe"
    fnc.create_model("bfe_resnet50").save_pretrained(bfe)
    with pytest.raises(CheckpointMismatchError) as err:
        fnc.create_model("fnc_resnet50", checkpoint_path=bfe / "model.safetensors")
    msg = str(err.value)
    assert "does not fit fnc_resnet50" in msg and "bfe" in msg and "model.safetensors" in msg
    assert "missing keys" in msg and "unexpected keys" in msg and "more)" in msg  # truncated lists, counts
    assert "spatial.layer3.1.conv1.weight" in msg  # missing: FNC's branch copies

    # A repo whose config says FNC but whose weights are BFE's.
    fnc_config = fnc.create_model("fnc_resnet50").hub_config()
    _publish(
        tmp_path,
        "test-user/mislabelled",
        {
            "config.json": json.dumps(fnc_config),
            "model.safetensors": (bfe / "model.safetensors").read_bytes(),
        },
    )
    with pytest.raises(CheckpointMismatchError, match="checkpoint test-user/mislabelled does not fit fnc_resnet50"):
        fnc.create_model("hf-hub:test-user/mislabelled")
    # timm weights of another backbone are another architecture too.
    r50 = tmp_path / "timm_r50.safetensors"
    safetensors.torch.save_file(timm.create_model("resnet50").state_dict(), str(r50))
    with pytest.raises(CheckpointMismatchError, match="shape mismatches|missing keys"):
        fnc.create_model("baseline_se_resnext101", checkpoint_path=r50)


class _Payload:
    """Unpickling this creates a marker file: proof that a pickle was (or was not) unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_is_refused_and_never_unpickled(small_checkpoint, tmp_path, hub, hf_cache):
    marker = tmp_path / "UNPICKLED"
    evil = pickle.dumps({"weight": _Payload(marker)})
    config, _ = small_checkpoint

    # A Hub repo with only pytorch_model.bin: refused without downloading it (the mixin would torch.load it).
    _publish(tmp_path, "test-user/pickle-only", {"config.json": config, "pytorch_model.bin": evil})
    hub.clear_requests()
    for load in (
        lambda: fnc.create_model("hf-hub:test-user/pickle-only"),
        lambda: ReIDModel.from_pretrained("test-user/pickle-only"),
    ):
        with pytest.raises(UnsafeCheckpointError, match="only pickle weights \\(pytorch_model.bin\\)"):
            load()
    assert not _weight_gets(hub, "pytorch_model.bin")

    # Local files: by name, and by content when a pickle is named .safetensors. A .pth / .pt is
    # a third-party checkpoint by design, read only by torch's weights-only unpickler, which
    # refuses this one (tests/test_pth_sources.py).
    (tmp_path / "model.bin").write_bytes(evil)
    with pytest.raises(UnsafeCheckpointError, match="model.bin.*refuses pickle"):
        fnc.create_model("baseline_resnet50", checkpoint_path=tmp_path / "model.bin")
    for name in ("model.pth", "model.pt"):
        (tmp_path / name).write_bytes(evil)
        with pytest.raises(UnsafeCheckpointError, match=f"{name}.*weights_only=True"):
            fnc.create_model("baseline_resnet50", checkpoint_path=tmp_path / name)
    disguised = tmp_path / "disguised.safetensors"
    disguised.write_bytes(evil)
    with pytest.raises(UnsafeCheckpointError, match="disguised.safetensors.*pickle"):
        fnc.create_model("baseline_resnet50", checkpoint_path=disguised)
    zipped = tmp_path / "zipped.safetensors"
    torch.save({"weight": torch.ones(1)}, zipped)
    with pytest.raises(UnsafeCheckpointError, match="torch.save archive"):
        fnc.create_model("baseline_resnet50", checkpoint_path=zipped)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "config.json").write_text(config)
    (folder / "pytorch_model.bin").write_bytes(evil)
    with pytest.raises(UnsafeCheckpointError, match="pytorch_model.bin"):
        ReIDModel.from_pretrained(folder)
    # A Hub filename that is a pickle is refused before any download.
    with pytest.raises(UnsafeCheckpointError):
        fnc.models._hub.download("test-user/pickle-only", "pytorch_model.bin")
    assert not marker.exists()
    assert not os.path.exists(str(marker))
