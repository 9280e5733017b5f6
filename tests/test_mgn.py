"""MGN against its oracle, fast-reid's ``meta_arch/mgn.py``: structure, size and embeddings."""

from __future__ import annotations

import re

import fastreid.config as fastreid_config  # test extra / README Install: a missing oracle fails, never skips
import fastreid.modeling.meta_arch as fastreid_meta_arch  # test extra / README Install: a missing oracle fails, never skips
import pytest
import torch

import fnc
from fnc.data.constants import IMAGENET_MEAN, IMAGENET_STD
from fnc.models.backbones import create_backbone
from fnc.models.mgn import _stripes

NUM_CLASSES = 7


def _fastreid_mgn(num_classes: int = NUM_CLASSES, embedding_dim: int = 256) -> torch.nn.Module:
    """fast-reid's MGN on ResNet-50 with BNNeck heads reducing to ``embedding_dim``."""
    cfg = fastreid_config.get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "MGN"
    cfg.MODEL.BACKBONE.NAME = "build_resnet_backbone"
    cfg.MODEL.BACKBONE.DEPTH = "50x"
    cfg.MODEL.BACKBONE.LAST_STRIDE = 1
    cfg.MODEL.BACKBONE.PRETRAIN = False
    cfg.MODEL.HEADS.NAME = "EmbeddingHead"
    cfg.MODEL.HEADS.EMBEDDING_DIM = embedding_dim
    cfg.MODEL.HEADS.WITH_BNNECK = True
    cfg.MODEL.HEADS.POOL_LAYER = "GlobalAvgPool"
    cfg.MODEL.HEADS.CLS_LAYER = "Linear"
    cfg.MODEL.HEADS.NUM_CLASSES = num_classes
    cfg.MODEL.DEVICE = "cpu"
    return fastreid_meta_arch.build_model(cfg)


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("head_dim", [256, 0])
def test_mgn_resnet50_matches_fastreid_size(head_dim):
    torch.manual_seed(0)
    ref = _fastreid_mgn(embedding_dim=head_dim)
    ours = fnc.create_model("mgn_resnet50", num_classes=NUM_CLASSES, head_dim=head_dim)
    assert _count(ours) == _count(ref)
    assert sum(b.numel() for b in ours.buffers()) == sum(
        b.numel() for n, b in ref.named_buffers() if not n.startswith("pixel_")
    )
    ref.eval()
    ours.eval()
    with torch.no_grad():
        want = ref(torch.rand(2, 3, 96, 64) * 255)
        got = ours(torch.randn(2, 3, 96, 64))
    assert got.shape == want.shape == (2, 8 * (head_dim or 2048))
    assert ours.embed_dim == want.shape[1]


def _map_fastreid(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """fast-reid MGN keys -> ours (stem indices -> names, res_conv4 re-indexed from 0 -> timm's)."""
    stem = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3.0"}
    out = {}
    for key, value in sd.items():
        if key.startswith("pixel_"):
            continue
        if m := re.fullmatch(r"backbone\.(\d)\.(.+)", key):
            new = f"backbone.{stem[m[1]]}.{m[2]}"
        elif m := re.fullmatch(r"(b[123])\.0\.(\d+)\.(.+)", key):
            new = f"{m[1]}.layer3.{int(m[2]) + 1}.{m[3]}"
        elif m := re.fullmatch(r"(b[123])\.1\.(.+)", key):
            new = f"{m[1]}.layer4.{m[2]}"
        elif m := re.fullmatch(r"(b\d+_head)\.weight", key):
            new = f"{m[1]}.bnneck.classifier.weight"
        elif m := re.fullmatch(r"(b\d+_head)\.bottleneck\.0\.weight", key):
            new, value = f"{m[1]}.fc.weight", value[:, :, 0, 0]
        elif m := re.fullmatch(r"(b\d+_head)\.bottleneck\.1\.(.+)", key):
            new = f"{m[1]}.bnneck.bn.{m[2]}"
        else:
            raise AssertionError(f"unmapped fast-reid key {key}")
        out[new] = value
    return out


def _randomise_bn(model: torch.nn.Module) -> None:
    """Non-trivial BN statistics and affine parameters, so a mis-wired block cannot hide."""
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                if m.bias.requires_grad:
                    m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))


@pytest.mark.parametrize("size", [(96, 64), (128, 64)])  # 6 and 8 rows: even and uneven stripes
def test_mgn_resnet50_embeddings_equal_fastreid_with_mapped_weights(size):
    torch.manual_seed(0)
    ref = _fastreid_mgn()
    # The one deliberate difference: fast-reid's stem max-pool has no padding and ceil_mode;
    # ours is timm's / torchvision's (padding 1), so ImageNet checkpoints run as trained.
    ref.backbone[3] = torch.nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    _randomise_bn(ref)
    ref.eval()
    ours = fnc.create_model("mgn_resnet50", num_classes=NUM_CLASSES).eval()
    ours.load_state_dict(_map_fastreid(ref.state_dict()), strict=True)

    images = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(1)) * 255
    normalised = (images / 255 - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(
        1, 3, 1, 1
    )
    with torch.no_grad():
        want = ref(images.clone())  # fast-reid normalises in place, on 0-255 input
        got = ours(normalised)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * want.abs().max().item())


def test_mgn_se_resnext101_size_is_trunk_plus_branch_copies_plus_heads():
    ours = fnc.create_model("mgn_se_resnext101", num_classes=NUM_CLASSES)
    net = create_backbone("se_resnext101")
    layer3_tail = sum(p.numel() for b in list(net.layer3.children())[1:] for p in b.parameters())
    layer4 = _count(net.layer4)
    head = 2048 * 256 + 2 * 256 + NUM_CLASSES * 256  # reduction, BN weight + bias, classifier
    assert _count(ours) == _count(net) + 2 * layer3_tail + 2 * layer4 + 8 * head
    assert ours.embed_dim == 2048


def test_stripes_follow_torch_chunk_and_fall_back_to_even_split():
    x = torch.arange(8.0).view(1, 1, 8, 1)
    assert [p.shape[2] for p in _stripes(x, 3)] == [3, 3, 2]  # torch.chunk, as fast-reid
    assert [p.shape[2] for p in _stripes(x[:, :, :4], 3)] == [2, 1, 1]  # chunk would give 2 pieces
    with pytest.raises(ValueError, match="3 horizontal stripes, but it has 2 row"):
        _stripes(x[:, :, :2], 3)


def test_mgn_global_branch_last_stride_2_keeps_part_branches_at_stride_1():
    model = fnc.create_model("mgn_resnet50", last_stride=2)
    assert model.b1.layer4[0].conv2.stride == (2, 2)
    assert model.b2.layer4[0].conv2.stride == model.b3.layer4[0].conv2.stride == (1, 1)
    torch.testing.assert_close(model.b2.layer4.state_dict(), model.b1.layer4.state_dict())
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 3, 64, 64)).shape == (2, 2048)


def test_imagenet_backbone_fills_the_trunk_and_every_branch_copy():
    from fnc.models._loader import load_checkpoint

    timm_like = create_backbone("resnet50").state_dict()  # timm's key names, by construction
    model = fnc.create_model("mgn_resnet50")
    load_checkpoint(model, timm_like, "test", weights_format="timm_backbone")
    own = model.state_dict()
    for branch in ("b1", "b2", "b3"):
        for i in range(1, 6):
            torch.testing.assert_close(own[f"{branch}.layer3.{i}.conv2.weight"], timm_like[f"layer3.{i}.conv2.weight"])
        torch.testing.assert_close(
            own[f"{branch}.layer4.0.downsample.0.weight"], timm_like["layer4.0.downsample.0.weight"]
        )
    torch.testing.assert_close(own["backbone.layer3.0.conv1.weight"], timm_like["layer3.0.conv1.weight"])


def test_mgn_branches_share_no_tensor_and_checkpointing_keeps_gradients():
    torch.manual_seed(0)
    model = fnc.create_model("mgn_resnet50", num_classes=NUM_CLASSES)
    ptrs = {b: {p.data_ptr() for p in getattr(model, b).parameters()} for b in ("backbone", "b1", "b2", "b3")}
    assert all(not ptrs[a] & ptrs[b] for a in ptrs for b in ptrs if a < b)
    x = torch.randn(2, 3, 64, 64)

    def grads():
        model.zero_grad()
        sum(o.feat.sum() + o.logits.sum() for o in model.train()(x)).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    model.set_grad_checkpointing(True)
    assert model.b1.grad_checkpointing and model.b3.grad_checkpointing
    checkpointed = grads()
    assert plain.keys() == checkpointed.keys()
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, rtol=1e-4, atol=1e-6, msg=name)
