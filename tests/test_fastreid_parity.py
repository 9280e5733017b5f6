"""fast-reid as the oracle: its BoT / SBS IBN models, mapped with fastreid_to_fnc, embed as ours do.

fast-reid (``pip install --no-deps fastreid==1.4.0 yacs termcolor tabulate``) builds the
reference models from configs written here (the wheel ships no .yml): ``bagtricks_R50-ibn``,
``bagtricks_R101-ibn`` and ``sbs_R50-ibn``. Every weight and BN statistic is randomised so
that each tensor's placement matters, then both models embed the same images.
"""

from __future__ import annotations

import copy

import fastreid.config as fastreid_config  # test extra / README Install: a missing oracle fails, never skips
import fastreid.modeling as fastreid_modeling  # test extra / README Install: a missing oracle fails, never skips
import pytest
import torch
from torch import nn

import fnc
from fnc.data.constants import IMAGENET_MEAN, IMAGENET_STD
from fnc.models import CheckpointMismatchError
from fnc.models._fastreid import fastreid_to_fnc, strong_baseline_to_fnc
from fnc.models.non_local import NonLocal
from fnc.models.pooling import GeM

NUM_CLASSES = 7

# arch -> (fast-reid DEPTH, SBS head and non-local blocks, input H x W)
CASES = {
    "baseline_resnet50_ibn": ("50x", False, (128, 128)),
    "sbs_resnet50_ibn": ("50x", True, (128, 128)),
    "baseline_resnet101_ibn": ("101x", False, (64, 64)),
}
# R101 differs from R50 only in layer3's block count, i.e. in the key mapping: the float32 embedding,
# parameter counts and checkpoint-name tests cover it; the rest run on the two R50 models.
R50_CASES = sorted(a for a in CASES if "resnet50" in a)


def _fastreid_cfg(depth: str, sbs: bool):
    """fast-reid's Base-bagtricks / Base-SBS settings that shape the inference network."""
    cfg = fastreid_config.get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "Baseline"
    cfg.MODEL.DEVICE = "cpu"
    backbone = cfg.MODEL.BACKBONE
    backbone.NAME = "build_resnet_backbone"
    backbone.DEPTH = depth
    backbone.WITH_IBN = True
    backbone.WITH_NL = sbs
    backbone.PRETRAIN = False
    backbone.LAST_STRIDE = 1
    backbone.NORM = "BN"
    heads = cfg.MODEL.HEADS
    heads.NAME = "EmbeddingHead"
    heads.NORM = "BN"
    heads.WITH_BNNECK = True
    heads.NECK_FEAT = "after"
    heads.EMBEDDING_DIM = 0
    heads.NUM_CLASSES = NUM_CLASSES
    heads.POOL_LAYER = "GeneralizedMeanPoolingP" if sbs else "GlobalAvgPool"
    heads.CLS_LAYER = "CircleSoftmax" if sbs else "Linear"
    heads.SCALE, heads.MARGIN = (64, 0.35) if sbs else (1, 0.0)
    return cfg


def _randomise(model: nn.Module, seed: int) -> None:
    """Every BN / IN affine and BN statistic random, non-local W's BN non-zero, GeM p off 3.

    A zero-initialised non-local output BN would make the blocks the identity and hide a
    mis-wired one; random statistics make a swapped buffer visible.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
            if isinstance(m, nn.Conv2d) and m.bias is not None:
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
        for name, p in model.named_parameters():
            if name.endswith("pool_layer.p"):
                p.fill_(2.5 + float(torch.rand((), generator=g)))
            elif name == "heads.weight":
                p.copy_(torch.randn(p.shape, generator=g))


@pytest.fixture(scope="module", params=sorted(CASES))
def pair(request):
    """(arch, fast-reid model, its state dict, input size), the fast-reid model in eval mode."""
    arch = request.param
    depth, sbs, size = CASES[arch]
    torch.manual_seed(0)
    ref = fastreid_modeling.build_model(_fastreid_cfg(depth, sbs))
    _randomise(ref, seed=1)
    return arch, ref.eval(), ref.state_dict(), size


def _images(size, seed=2) -> torch.Tensor:
    """A batch of 2 images in fast-reid's 0-255 input range."""
    return 255 * torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(seed))


def _normalise(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN, dtype=images.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=images.dtype).view(1, 3, 1, 1)
    return (images / 255 - mean) / std


def _ours(arch: str, state_dict, **kwargs) -> nn.Module:
    converted = fastreid_to_fnc(state_dict, arch)
    model = fnc.create_model(arch, num_classes=NUM_CLASSES, stem_pool="ceil", **kwargs)
    model.load_state_dict(converted.state_dict, strict=True)
    return model.eval()


# How far two float32 forward passes of the same weights may be apart, relative to the largest
# output. float32 rounding alone moves fast-reid's own SBS embedding by up to 1.1e-5 from its
# float64 value (one thread on an AVX2 CPU; 1.4e-6 with two), and ours by 5.6e-6 (6.4e-6); the two
# networks' float32 outputs were measured 1.25e-5 apart there. The float64 test below pins the
# wiring itself to 1e-12, and one real difference (the stem pool, test_stem_pool_matters) moves the
# output by more than 1e-3.
FLOAT32_REL_TOL = 5e-5


def _max_rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max() / want.abs().max())


def test_embeddings_equal_fastreid(pair):
    arch, ref, state_dict, size = pair
    model = _ours(arch, state_dict)
    images = _images(size)
    with torch.no_grad():
        want = ref(images.clone())  # fast-reid normalises its input in place
        got = model(_normalise(images))
    assert got.shape == want.shape == (2, 2048)
    assert _max_rel(got, want) < FLOAT32_REL_TOL, f"{arch}: max relative difference {_max_rel(got, want):.2e}"


@pytest.mark.parametrize("pair", R50_CASES, indirect=True)
def test_embeddings_equal_fastreid_in_float64(pair):
    """In float64 the two networks agree to rounding: the float32 gap above is summation order only."""
    arch, ref, state_dict, size = pair
    model = _ours(arch, state_dict).double()
    images = _images(size).double()
    ref64 = copy.deepcopy(ref).double()
    # fast-reid keeps its pixel stats in float32 buffers; give them float64 precision too.
    ref64.pixel_mean = 255 * torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    ref64.pixel_std = 255 * torch.tensor(IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
    with torch.no_grad():
        want = ref64(images.clone())
        got = model(_normalise(images))
    assert _max_rel(got, want) < 1e-12, f"{arch}: max relative difference {_max_rel(got, want):.2e}"


def test_parameter_counts_equal_fastreid(pair):
    arch, ref, state_dict, _ = pair
    model = fnc.create_model(arch, num_classes=NUM_CLASSES)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in ref.parameters())
    assert len(model.state_dict()) == len(state_dict)


def test_architecture_options_are_fastreids(pair):
    arch, ref, _, _ = pair
    model = fnc.create_model(arch)
    non_local = [n for n, m in model.named_modules() if isinstance(m, NonLocal)]
    ref_non_local = [n for n, m in ref.named_modules() if type(m).__name__ == "Non_local"]
    assert len(non_local) == len(ref_non_local) == (5 if arch.startswith("sbs") else 0)
    assert all(m.inter_channels == 1 for m in model.modules() if isinstance(m, NonLocal))
    pool = model.pool
    assert isinstance(pool, GeM) == arch.startswith("sbs")
    if isinstance(pool, GeM):
        assert pool.learn_p and float(pool.p.detach()) == 3.0 and pool.eps == 1e-6
    # IBN in layer1-3 only, half of bn1's channels instance-normalised.
    ibn = {n.split(".")[1] for n, m in model.named_modules() if type(m).__name__ == "IBN"}
    assert ibn == {"layer1", "layer2", "layer3"}
    assert model.backbone.layer1[0].bn1.IN.num_features == 32


@pytest.mark.parametrize("pair", ["baseline_resnet50_ibn"], indirect=True)
def test_stem_pool_matters(pair):
    """The IBN-Net padding-1 stem embeds fast-reid's weights differently: the option is real."""
    arch, ref, state_dict, size = pair
    model = _ours(arch, state_dict)
    model.backbone.maxpool = nn.MaxPool2d(3, 2, padding=1)
    images = _images(size)
    with torch.no_grad():
        assert _max_rel(model(_normalise(images)), ref(images.clone())) > 1e-3


def test_release_era_names_map_the_same(pair):
    """fast-reid v0.1 checkpoints: heads.bnneck.*, heads.classifier.weight, persistent pixel stats."""
    arch, _, state_dict, _ = pair
    old = {}
    for key, value in state_dict.items():
        key = key.replace("heads.bottleneck.0.", "heads.bnneck.").replace("heads.weight", "heads.classifier.weight")
        old[key] = value
    old["pixel_mean"] = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
    old["pixel_std"] = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
    new = fastreid_to_fnc(state_dict, arch)
    converted = fastreid_to_fnc(old, arch)
    assert converted.state_dict.keys() == new.state_dict.keys()
    assert all(converted.state_dict[k] is new.state_dict[k] for k in new.state_dict)
    torch.testing.assert_close(torch.tensor(converted.pixel_mean), torch.tensor(IMAGENET_MEAN))
    torch.testing.assert_close(torch.tensor(converted.pixel_std), torch.tensor(IMAGENET_STD))
    assert new.pixel_mean is None and new.pixel_std is None  # fast-reid 1.x does not save them


@pytest.mark.parametrize("pair", ["baseline_resnet50_ibn", "baseline_resnet101_ibn"], indirect=True)
def test_strong_baseline_names(pair):
    """reid-strong-baseline / DMT name the same IBN-a trunk base.*, the BNNeck bottleneck.*."""
    arch, _, state_dict, _ = pair
    theirs = {k.replace("backbone.", "base.", 1): v for k, v in state_dict.items() if k.startswith("backbone.")}
    theirs.update(
        {
            k.replace("heads.bottleneck.0.", "bottleneck."): v
            for k, v in state_dict.items()
            if k.startswith("heads.bottleneck.0.")
        }
    )
    theirs["classifier.weight"] = state_dict["heads.weight"]
    theirs["base.fc.weight"] = torch.zeros(1000, 2048)
    theirs["base.fc.bias"] = torch.zeros(1000)
    converted = strong_baseline_to_fnc({f"module.{k}": v for k, v in theirs.items()}, arch)
    assert converted.dropped == ("base.fc.weight", "base.fc.bias")
    assert converted.state_dict.keys() == fastreid_to_fnc(state_dict, arch).state_dict.keys()
    assert converted.pixel_mean is None


# --- bad input --------------------------------------------------------------------------------


def test_unknown_keys_are_listed(pair):
    arch, _, state_dict, _ = pair
    bad = dict(state_dict)
    bad["heads.bottleneck.1.weight"] = torch.ones(2048)
    bad["heads.extra.weight"] = torch.ones(3)
    with pytest.raises(
        CheckpointMismatchError, match=r"2 key\(s\).*heads\.bottleneck\.1\.weight.*heads\.extra\.weight.*EMBEDDING_DIM"
    ):
        fastreid_to_fnc(bad, arch)


def test_missing_non_local_is_a_strict_load_error():
    """A BoT checkpoint into the SBS architecture maps, and the strict load names what is missing."""
    bot = fnc.create_model("baseline_resnet50_ibn").state_dict()
    theirs = {f"backbone.{k[len('backbone.') :]}": v for k, v in bot.items() if k.startswith("backbone.")}
    converted = fastreid_to_fnc(theirs, "sbs_resnet50_ibn")
    with pytest.raises(RuntimeError, match="non_local.stage2.0.g.weight"):
        fnc.create_model("sbs_resnet50_ibn").load_state_dict(converted.state_dict, strict=True)


def test_bad_arguments():
    tensor = torch.ones(1)
    with pytest.raises(CheckpointMismatchError, match="baseline_\\* or sbs_\\*"):
        fastreid_to_fnc({"heads.weight": tensor}, "fnc_resnet50")
    with pytest.raises(CheckpointMismatchError, match="pass its 'model' entry"):
        fastreid_to_fnc({"model": {"heads.weight": tensor}, "iteration": 3}, "sbs_resnet50_ibn")
    with pytest.raises(CheckpointMismatchError, match="both 'heads.weight' and 'heads.classifier.weight'"):
        fastreid_to_fnc({"heads.weight": tensor, "heads.classifier.weight": tensor}, "sbs_resnet50_ibn")
    with pytest.raises(CheckpointMismatchError, match="3 values"):
        fastreid_to_fnc({"pixel_mean": torch.ones(4)}, "sbs_resnet50_ibn")
    with pytest.raises(CheckpointMismatchError, match="classifier with a bias"):
        strong_baseline_to_fnc({"classifier.weight": tensor, "classifier.bias": tensor}, "baseline_resnet50_ibn")
