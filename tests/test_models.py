"""Model tests: the whole registry's contract, backbones against timm, SAB/CAB against the paper."""

from __future__ import annotations

import math

import pytest
import timm  # the oracle (test extra): missing, it fails rather than skips
import torch
import torch.nn.functional as F

import fnc
from fnc.models import BFE, CAB, FNC, SAB, Baseline, BatchDrop, BNNeck, create_backbone
from fnc.models.backbones import BACKBONES
from fnc.models.non_local import NonLocal

ALL_MODELS = fnc.list_models()
NUM_CLASSES = 5
IMG = (2, 3, 64, 64)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _images(shape=IMG):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(1))


def test_registry_holds_the_spec_models():
    assert ALL_MODELS == sorted(
        [
            "fnc_se_resnext101",
            "fnc_resnet50",
            "fnc_resnet101",
            "bfe_se_resnext101",
            "bfe_resnet50",
            "baseline_resnet50",
            "baseline_resnet101",
            "baseline_se_resnext101",
            "baseline_resnet50_ibn",
            "baseline_resnet101_ibn",
            "sbs_resnet50_ibn",
            "mgn_se_resnext101",
            "mgn_resnet50",
        ]
    )


# (embedding size, training branches) of each family.
_FAMILY = {"baseline": (2048, 1), "sbs": (2048, 1), "fnc": (1536, 2), "bfe": (1536, 2), "mgn": (2048, 8)}


@pytest.mark.parametrize("name", ALL_MODELS)
def test_model_contract(name):
    """Both modes' outputs, no NaN, gradients everywhere, eval determinism, reset_classifier."""
    model = fnc.create_model(name, num_classes=NUM_CLASSES)
    expected_dim, num_branches = _FAMILY[name.split("_")[0]]
    assert model.embed_dim == expected_dim and model.num_classes == NUM_CLASSES
    assert model.pretrained_cfg is not None and model.pretrained_cfg.architecture == name
    for block in model.modules():
        if isinstance(block, NonLocal):
            # Its output BN starts at zero (the block is the identity), which passes no gradient
            # to the convs before it on the first step; open it so the check reaches them.
            torch.nn.init.ones_(block.W[1].weight)

    x = _images()
    outs = model.train()(x)
    assert isinstance(outs, tuple) and len(outs) == num_branches
    assert sum(o.feat.shape[1] for o in outs) == expected_dim
    loss = 0
    for o in outs:
        assert o.logits.shape == (2, NUM_CLASSES)
        assert torch.isfinite(o.feat).all() and torch.isfinite(o.logits).all()
        loss = loss + o.feat.square().mean() + o.logits.logsumexp(1).mean()
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum())]
    assert not no_grad, f"parameters without gradient: {no_grad[:5]}"
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(n.endswith("bn.bias") and "bnneck" in n for n in frozen)  # only BNNeck biases

    model.eval()
    with torch.no_grad():
        emb = model(x)
        assert emb.shape == (2, expected_dim) and emb.dtype == torch.float32
        assert torch.isfinite(emb).all()
        assert torch.equal(emb, model(x))

    model.reset_classifier(11)
    assert model.num_classes == 11
    assert all(o.logits.shape == (2, 11) for o in model.train()(x))
    model.reset_classifier(0)
    assert model.num_classes == 0 and all(o.logits is None for o in model.train()(x))


@pytest.mark.parametrize("name", ["fnc_resnet50", "bfe_resnet50", "baseline_resnet50"])
def test_channels_last_matches_nchw(name):
    model = fnc.create_model(name).eval()
    x = _images()
    with torch.no_grad():
        ref = model(x)
        out = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    # Different kernels sum in a different order: compare at float32 noise of the output's scale.
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


def test_follows_input_device_and_dtype():
    model = fnc.create_model("fnc_resnet50").eval().double()
    with torch.no_grad():
        out = model(_images().double())
    assert out.dtype == torch.float64 and out.device == torch.device("cpu")


# --- backbones against timm ------------------------------------------------------------------


def _random_timm(timm_name: str) -> torch.nn.Module:
    """A randomly initialised timm model with non-trivial BN statistics and affine params.

    timm zero-initialises the last BN of each block; randomising every BN makes the residual
    branches matter, so a mis-wired block cannot hide.
    """
    model = timm.create_model(timm_name, pretrained=False)
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
    return model.eval()


def _set_timm_last_stride_1(model: torch.nn.Module) -> None:
    block = model.layer4[0]
    block.conv2.stride = (1, 1)
    block.downsample[0].stride = (1, 1)


@pytest.mark.parametrize("name", sorted(n for n, spec in BACKBONES.items() if spec.timm_name))
@pytest.mark.parametrize("last_stride", [2, 1])
def test_backbone_equals_timm(name, last_stride):
    ref = _random_timm(BACKBONES[name].timm_name)
    ref_sd = {k: v for k, v in ref.state_dict().items() if not k.startswith("fc.")}
    ours = create_backbone(name, last_stride=last_stride).eval()
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == {k: tuple(v.shape) for k, v in ref_sd.items()}
    ours.load_state_dict(ref_sd, strict=True)
    if last_stride == 1:
        _set_timm_last_stride_1(ref)
    x = _images((2, 3, 64, 96))
    with torch.no_grad():
        want = ref.forward_features(x)
        got = ours(x)
    assert got.shape == want.shape == (2, 2048, 64 // (16 * last_stride), 96 // (16 * last_stride))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * want.abs().max().item())


def test_baseline_keeps_timm_keys_under_backbone():
    ref = timm.create_model("resnet50", pretrained=False)
    model = fnc.create_model("baseline_resnet50")
    backbone_keys = {k[len("backbone.") :] for k in model.state_dict() if k.startswith("backbone.")}
    assert backbone_keys == {k for k in ref.state_dict() if not k.startswith("fc.")}


# --- SAB / CAB against the equations -------------------------------------------------------------


def _conv1x1(conv: torch.nn.Conv2d, v: torch.Tensor) -> torch.Tensor:
    """A 1x1 conv applied to one position's channel vector."""
    return conv.weight[:, :, 0, 0] @ v + conv.bias


def _sab_naive(sab: SAB, x: torch.Tensor) -> torch.Tensor:
    """Eq. 1-2 one position at a time: scores, softmax over keys, weighted sum, T, gate."""
    b, c, hgt, wid = x.shape
    out = torch.empty_like(x)
    for n in range(b):
        cols = x[n].reshape(c, hgt * wid)
        g = [_conv1x1(sab.g, cols[:, i]) for i in range(hgt * wid)]
        h = [_conv1x1(sab.h, cols[:, j]) for j in range(hgt * wid)]
        p = [_conv1x1(sab.p, cols[:, j]) for j in range(hgt * wid)]
        for i in range(hgt * wid):
            scores = torch.stack([g[i] @ h[j] for j in range(hgt * wid)])  # no 1/sqrt(d)
            weights = torch.exp(scores - scores.max())
            weights = weights / weights.sum()
            y = sum(weights[j] * p[j] for j in range(hgt * wid))
            t = _conv1x1(sab.t, y)
            xi = cols[:, i]
            out[n, :, i // wid, i % wid] = torch.sigmoid(t) * xi if sab.fuse == "multiply" else xi + t
    return out


@pytest.mark.parametrize("fuse", ["multiply", "add"])
@pytest.mark.parametrize("fused_attention", [True, False])
def test_sab_equals_per_position_equations(fuse, fused_attention):
    sab = SAB(16, reduction=2, fuse=fuse, fused_attention=fused_attention).double()
    x = torch.randn(2, 16, 3, 4, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(sab(x), _sab_naive(sab, x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_sab_fused_sdpa_equals_explicit_softmax(scale):
    """The fused kernel computes softmax(g h^T) p with scale 1, also when logits are large."""
    fused = SAB(256, fused_attention=True).eval()
    explicit = SAB(256, fused_attention=False).eval()
    explicit.load_state_dict(fused.state_dict())
    x = scale * torch.randn(2, 256, 12, 8)
    with torch.no_grad():
        a, b = fused(x), explicit(x)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item())
    attn = explicit.attention_map(x)
    assert attn.shape == (2, 96, 96)
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 96))


def _cab_explicit(cab: CAB, x: torch.Tensor) -> torch.Tensor:
    """Eq. 3 written out with functional ops in eval mode."""

    def bn(z, m):
        return F.batch_norm(z, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

    raw = F.relu(bn(F.conv2d(x, cab.conv1.weight), cab.bn1))
    raw = F.relu(bn(F.conv2d(raw, cab.conv2.weight, padding=1, groups=cab.conv2.groups), cab.bn2))
    raw = F.conv2d(raw, cab.conv3.weight, cab.conv3.bias)
    squeeze = raw.mean((2, 3), keepdim=True)
    excite = torch.sigmoid(
        F.conv2d(F.relu(F.conv2d(squeeze, cab.se.fc1.weight, cab.se.fc1.bias)), cab.se.fc2.weight, cab.se.fc2.bias)
    )
    se = raw * excite
    return torch.sigmoid(se) * x if cab.fuse == "multiply" else x + se


@pytest.mark.parametrize("fuse", ["multiply", "add"])
def test_cab_equals_eq3(fuse):
    cab = CAB(64, mid_channels=64, groups=32, fuse=fuse)
    for bn in (cab.bn1, cab.bn2):
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 1.5)
    cab.eval()
    x = torch.randn(2, 64, 5, 3)
    with torch.no_grad():
        torch.testing.assert_close(cab(x), _cab_explicit(cab, x), rtol=1e-5, atol=1e-6)


def test_cab_defaults_are_the_papers():
    cab = CAB(2048)
    assert cab.conv1.weight.shape == (1024, 2048, 1, 1)
    assert cab.conv2.weight.shape == (1024, 1024 // 32, 3, 3) and cab.conv2.groups == 32
    assert cab.conv3.weight.shape == (2048, 1024, 1, 1)
    assert cab.se.fc1.weight.shape == (2048 // 16, 2048, 1, 1)


def test_bad_fuse_mode():
    with pytest.raises(ValueError, match="fuse must be one of"):
        SAB(16, fuse="concat")


# --- FNC structure and parameter counts from SPEC -------------------------------------------------


def _numel(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _timm_counts(name: str) -> tuple[int, int, int]:
    """(whole backbone without fc, layer3[1:] + layer4, one stride-1 bottleneck of layer4)."""
    ref = timm.create_model(BACKBONES[name].timm_name, pretrained=False)
    backbone = _numel(ref) - _numel(ref.fc)
    tail = sum(_numel(b) for b in list(ref.layer3)[1:]) + _numel(ref.layer4)
    return backbone, tail, _numel(ref.layer4[1])


def _spec_head(dim: int, num_classes: int) -> int:
    return 2048 * dim + 2 * dim + 2 * dim + dim * num_classes  # reduction fc+BN, BNNeck BN, classifier


C, R = 2048, 2
SPEC_SAB = 3 * (C * C // R + C // R) + (C // R * C + C)
SPEC_CAB = (
    (C * 1024 + 2 * 1024)
    + (1024 * (1024 // 32) * 9 + 2 * 1024)
    + (1024 * C + C)
    + (C * C // 16 + C // 16 + C // 16 * C + C)
)


@pytest.mark.parametrize("name", ["se_resnext101", "resnet50"])
@pytest.mark.parametrize("separate", [True, False])
def test_fnc_parameter_count_matches_spec(name, separate):
    backbone, tail, _ = _timm_counts(name)
    model = FNC(name, num_classes=NUM_CLASSES, separate=separate)
    expected = backbone + (tail if separate else 0) + SPEC_SAB + SPEC_CAB
    expected += _spec_head(1024, NUM_CLASSES) + _spec_head(512, NUM_CLASSES)
    assert _numel(model) == expected


def test_bfe_and_baseline_parameter_counts_match_spec():
    backbone, _, bottleneck = _timm_counts("resnet50")
    bfe = BFE("resnet50", num_classes=NUM_CLASSES)
    assert _numel(bfe) == backbone + bottleneck + _spec_head(512, NUM_CLASSES) + _spec_head(1024, NUM_CLASSES)
    baseline = Baseline("resnet50", num_classes=NUM_CLASSES)
    assert _numel(baseline) == backbone + 2 * 2048 + 2048 * NUM_CLASSES


def test_fnc_separate_branches_share_nothing():
    model = FNC("resnet50", separate=True)
    spatial = {p.data_ptr() for p in model.spatial.parameters()}
    channel = {p.data_ptr() for p in model.channel.parameters()}
    trunk = {p.data_ptr() for p in model.backbone.parameters()}
    assert not spatial & channel and not trunk & (spatial | channel)
    assert len(model.backbone.layer3) == 1 and len(model.backbone.layer4) == 0
    assert [
        k.split(".")[2] for k in model.state_dict() if k.startswith("spatial.layer3.") and k.endswith("conv1.weight")
    ] == ["1", "2", "3", "4", "5"]  # timm's block indices after conv4_1
    # Both branches start as copies of the same weights.
    torch.testing.assert_close(model.spatial.layer4.state_dict(), model.channel.layer4.state_dict())


def test_fnc_not_separate_shares_res4():
    """separate=False: layer3[1:] and layer4 live once in the trunk and both branches train them."""
    model = FNC("resnet50", separate=False, num_classes=NUM_CLASSES)
    assert len(model.backbone.layer3) == 6 and len(model.backbone.layer4) == 3
    assert _numel(model.spatial.layer3) == _numel(model.spatial.layer4) == 0
    assert _numel(model.channel.layer3) == _numel(model.channel.layer4) == 0
    x = _images()
    for branch in (0, 1):
        model.zero_grad()
        model.train()(x)[branch].feat.sum().backward()
        assert model.backbone.layer4[2].conv3.weight.grad.abs().sum() > 0
        assert model.backbone.layer3[1].conv1.weight.grad.abs().sum() > 0


def test_bottleneck_zero_init_residual_starts_as_its_shortcut():
    """As torchvision's resnet50(zero_init_residual=True): only bn3's scale is zeroed, and the block
    then returns relu(shortcut(x)), with or without a projection shortcut and SE."""
    import torchvision

    from fnc.models import Bottleneck

    peer = torchvision.models.resnet50(weights=None, zero_init_residual=True)
    assert all(not b.bn3.weight.any() and b.bn2.weight.all() for b in peer.modules() if hasattr(b, "bn3"))
    torch.manual_seed(0)
    for block, x in (
        (Bottleneck(64, 16), torch.randn(2, 64, 6, 5)),
        (
            Bottleneck(32, 16, stride=2, downsample=torch.nn.Conv2d(32, 64, 1, stride=2), use_se=True),
            torch.randn(2, 32, 6, 5),
        ),
    ):
        block.zero_init_residual()
        assert not block.bn3.weight.any() and block.bn2.weight.all()
        shortcut = x if block.downsample is None else block.downsample(x)
        torch.testing.assert_close(block.eval()(x), shortcut.relu())


@pytest.mark.parametrize("name", ["bfe_resnet50", "sbs_resnet50_ibn"])
def test_gradient_checkpointing_gives_the_same_gradients(name):
    model = fnc.create_model(name, num_classes=NUM_CLASSES)
    x = _images()

    def grads():
        model.zero_grad()
        torch.manual_seed(7)  # same BatchDrop rectangle in both runs
        sum(o.feat.sum() + o.logits.sum() for o in model(x)).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    model.set_grad_checkpointing(True)
    assert model.backbone.grad_checkpointing
    ckpt = grads()
    assert plain.keys() == ckpt.keys()
    for n in plain:
        torch.testing.assert_close(ckpt[n], plain[n], rtol=1e-4, atol=1e-6, msg=n)


def test_batch_drop_zeroes_one_band_for_the_whole_batch():
    drop = BatchDrop(0.3, 1.0)
    x = torch.ones(4, 3, 20, 7)
    y = drop(x)
    zero_rows = (y[0, 0] == 0).all(dim=1)
    assert int(zero_rows.sum()) == 6 and (y == y[:1]).all()  # round(0.3 * 20) rows, full width
    rows = zero_rows.nonzero().flatten()
    assert (rows.diff() == 1).all()  # one contiguous band
    assert torch.equal(drop.eval()(x), x)


def test_bnneck_bias_is_frozen_at_zero_and_classifier_init():
    neck = BNNeck(256, num_classes=1000)
    assert not neck.bn.bias.requires_grad and torch.equal(neck.bn.bias, torch.zeros(256))
    assert neck.classifier.bias is None
    assert math.isclose(neck.classifier.weight.std().item(), 0.001, rel_tol=0.05)


# --- registry and arguments ---------------------------------------------------------------------


def test_unknown_model_suggests_close_names():
    with pytest.raises(ValueError, match="fnc_se_resnext101") as err:
        fnc.create_model("fnc_seresnext101")
    assert "Unknown model 'fnc_seresnext101'" in str(err.value)


def test_unknown_kwarg_names_model_and_argument():
    with pytest.raises(ValueError, match=r"fnc_resnet50 got an unexpected argument 'last_strde'.*last_stride"):
        fnc.create_model("fnc_resnet50", last_strde=2)


def test_kwargs_pass_through():
    model = fnc.create_model("fnc_resnet50", last_stride=2, separate=False, fuse="add")
    assert model.stride == 32 and not model.separate
    assert model.spatial.attention.fuse == "add" and model.channel.attention.fuse == "add"
    assert model.backbone.layer4[0].conv2.stride == (2, 2)


def test_name_tag_parsing():
    model = fnc.create_model("fnc_resnet50.in1k")
    assert model.pretrained_cfg.name == "fnc_resnet50.in1k"
    assert model.pretrained_cfg.hf_hub_id == "timm/resnet50.tv_in1k"
    with pytest.raises(ValueError, match="Unknown tag 'nope'.*fnc_resnet50.in1k"):
        fnc.create_model("fnc_resnet50.nope")


def test_list_models_filters():
    assert fnc.list_models("fnc_*") == ["fnc_resnet101", "fnc_resnet50", "fnc_se_resnext101"]
    assert fnc.list_models(["bfe_*", "*resnet101"]) == [
        "baseline_resnet101",
        "bfe_resnet50",
        "bfe_se_resnext101",
        "fnc_resnet101",
    ]
    assert fnc.list_models("*resnet50", exclude_filters="baseline_*") == [
        "bfe_resnet50",
        "fnc_resnet50",
        "mgn_resnet50",
    ]
    tagged = fnc.list_models(pretrained=True, exclude_filters="*_ibn")
    # Every model but the IBN-a ones has timm's ImageNet backbone as its only tag.
    assert len(tagged) == len(fnc.list_models(exclude_filters="*_ibn")) and all(t.endswith(".in1k") for t in tagged)
    # The IBN-a ones: IBN-Net's ImageNet backbones and fast-reid's vehicle models.
    assert fnc.list_models("*_ibn", pretrained=True) == [
        "baseline_resnet101_ibn.in1k",
        "baseline_resnet50_ibn.fastreid_vehicleid",
        "baseline_resnet50_ibn.fastreid_veriwild",
        "baseline_resnet50_ibn.in1k",
        "sbs_resnet50_ibn.fastreid_veri",
    ]
    assert fnc.list_models("*_ibn", pretrained=True, exclude_filters="*.in1k") == [
        "baseline_resnet50_ibn.fastreid_vehicleid",
        "baseline_resnet50_ibn.fastreid_veriwild",
        "sbs_resnet50_ibn.fastreid_veri",
    ]
    assert fnc.list_models("fnc_*", pretrained=True) == [f"{n}.in1k" for n in fnc.list_models("fnc_*")]


# --- bad input ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_model():
    return fnc.create_model("baseline_resnet50")


@pytest.mark.parametrize(
    "x, train, match",
    [
        (torch.randn(3, 64, 64), False, r"4-D batch \(B, 3, H, W\).*unsqueeze"),
        (torch.randn(2, 1, 64, 64), False, r"3 \(RGB\) channels"),
        (torch.randn(2, 4, 64, 64), False, r"3 \(RGB\) channels"),
        (torch.randn(2, 3, 8, 64), False, r"too small.*at least 16"),
        (torch.zeros(2, 3, 64, 64, dtype=torch.uint8), False, r"float tensor"),
        (torch.randn(1, 3, 64, 64), True, r"batch size 1 in train mode: BatchNorm"),
    ],
)
def test_bad_input_raises_clear_error(small_model, x, train, match):
    small_model.train(train)
    with pytest.raises(ValueError, match=match):
        small_model(x)


def test_single_image_in_eval_is_fine(small_model):
    with torch.no_grad():
        assert small_model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 2048)


# --- fast-reid's architecture options ---------------------------------------------------------------


@pytest.mark.parametrize("name, kwargs", [("sbs_resnet50_ibn", {}), ("baseline_resnet50_ibn", {"stem_pool": "ceil"})])
def test_fastreid_options_round_trip_through_config(tmp_path, name, kwargs):
    """stem_pool, non_local and pooling are constructor arguments, so config.json rebuilds them."""
    model = fnc.create_model(name, **kwargs).eval()
    model.save_pretrained(tmp_path)
    again = fnc.create_model(checkpoint_path=tmp_path).eval()
    assert again.backbone.maxpool.ceil_mode and again.backbone.maxpool.padding == 0
    assert type(again.pool) is type(model.pool)
    assert again.state_dict().keys() == model.state_dict().keys()
    x = _images()
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))


def test_non_local_blocks_follow_the_last_blocks_of_their_stage():
    model = fnc.create_model("baseline_resnet50_ibn", non_local=(0, 2, 3, 0))
    assert sorted(model.non_local) == ["stage2", "stage3"]
    assert [len(model.non_local[s]) for s in ("stage2", "stage3")] == [2, 3]
    seen = []
    for i in (2, 3):
        for j, block in enumerate(getattr(model.backbone, f"layer{i}")):
            block.register_forward_hook(lambda *_, i=i, j=j: seen.append(f"layer{i}.{j}"))
        for k, nl in enumerate(model.non_local[f"stage{i}"]):
            nl.register_forward_hook(lambda *_, i=i, k=k: seen.append(f"NL{i}.{k}"))
    with torch.no_grad():
        model.eval()(_images())
    assert seen == [
        "layer2.0",
        "layer2.1",
        "layer2.2",
        "NL2.0",
        "layer2.3",
        "NL2.1",
        "layer3.0",
        "layer3.1",
        "layer3.2",
        "layer3.3",
        "NL3.0",
        "layer3.4",
        "NL3.1",
        "layer3.5",
        "NL3.2",
    ]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"non_local": (0, 2, 3)}, "4 counts"),
        ({"non_local": (0, 5, 0, 0)}, "layer2 has 4 blocks, asked 5"),
        ({"pooling": "max"}, "pooling must be one of"),
        ({"stem_pool": "pad0"}, "stem_pool must be one of"),
    ],
)
def test_bad_fastreid_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fnc.create_model("baseline_resnet50_ibn", **kwargs)
