"""The BoT strong baseline: backbone -> GAP -> BNNeck, 2048-d; and fast-reid's SBS variant of it.

Luo, Gu, Liao, Lai, Jiang, "Bag of Tricks and A Strong Baseline for Deep Person
Re-identification", CVPR Workshops 2019, https://arxiv.org/abs/1903.07071 (FNC paper
ref. [10]; the "Baseline" rows of its Tables 2-5). He, Liao, Zhang, Zhang, Mei, "FastReID: A
Pytorch Toolbox for General Instance Re-identification", https://arxiv.org/abs/2006.02631:
its BoT (``bagtricks``) and SBS (``sbs``: + non-local blocks, GeM with learned p) models are
this class's ``pooling`` / ``non_local`` / ``stem_pool`` options on an IBN-a backbone.
``attention="sab" | "cab"`` puts one of FNC's
blocks on res5's output before pooling, the "Baseline + SAB" / "Baseline + CAB" rows of Table 5.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import nn

from ._base import ReIDModel
from ._builder import build_model_with_cfg
from ._pretrained import PretrainedCfg
from ._registry import register_model
from .attention import CAB, SAB
from .backbones import create_backbone, in1k_cfg, init_weights, run_blocks
from .heads import BNNeck, BranchOutput
from .non_local import NonLocal, run_stage_with_non_local
from .pooling import create_pool

__all__ = ["Baseline"]


class Baseline(ReIDModel):
    """BoT baseline. The backbone sits under ``backbone.`` with timm's key names.

    Args:
        backbone: a backbone name, e.g. ``"resnet50"``, ``"resnet101"``, ``"se_resnext101"``,
            ``"resnet50_ibn"`` (see :data:`fnc.models.backbones.BACKBONES`).
        num_classes: training identities; 0 = no classifier.
        last_stride: layer4 stride (1, BoT's setting).
        pooling: ``"avg"`` (BoT), ``"gem"`` (GeM, p = 3) or ``"gem_learned"`` (GeM with p
            learned from 3, fast-reid's SBS).
        non_local: non-local blocks after the last blocks of layer1..layer4, e.g.
            ``(0, 2, 3, 0)`` for fast-reid's SBS ResNet-50 (``non_local.stage<N>.<k>.*``).
        stem_pool: the backbone's stem max-pool: ``"pad1"`` (torchvision / IBN-Net) or
            ``"ceil"`` (fast-reid); see :data:`fnc.models.backbones.STEM_POOLS`.
        attention: ``"sab"`` or ``"cab"`` applies FNC's spatial or channel attention block
            (paper Sec. 3.2 / 3.3, default settings) to res5's output before pooling; ``None``
            (the default) is the plain baseline.

    Shape:
        train: (B, 3, H, W) -> (BranchOutput,); eval: (B, 3, H, W) -> (B, 2048)

    Example:
        >>> Baseline("resnet50").eval()(torch.randn(2, 3, 64, 64)).shape
        torch.Size([2, 2048])
        >>> sbs = Baseline("resnet50_ibn", pooling="gem_learned", non_local=(0, 2, 3, 0), stem_pool="ceil")
        >>> sbs.eval()(torch.randn(2, 3, 64, 64)).shape
        torch.Size([2, 2048])
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        num_classes: int = 0,
        last_stride: int = 1,
        pooling: str = "avg",
        non_local: Sequence[int] = (0, 0, 0, 0),
        stem_pool: str = "pad1",
        attention: str | None = None,
    ) -> None:
        super().__init__()
        self.backbone = create_backbone(backbone, last_stride, stem_pool)
        self.stride = self.backbone.stride
        self.embed_dim = self.backbone.num_features
        self.non_local = self._make_non_local(non_local)
        self.attention = _create_attention(attention, self.embed_dim)
        self.pool = create_pool(pooling)
        self.bnneck = BNNeck(self.embed_dim, num_classes)

    def _make_non_local(self, counts: Sequence[int]) -> nn.ModuleDict | None:
        stages = (self.backbone.layer1, self.backbone.layer2, self.backbone.layer3, self.backbone.layer4)
        counts = list(counts)
        if len(counts) != 4 or not all(isinstance(c, int) and c >= 0 for c in counts):
            raise ValueError(
                f"non_local must give 4 counts >= 0, one per stage (layer1..layer4), got {counts!r}; "
                "e.g. (0, 2, 3, 0) for fast-reid's SBS ResNet-50"
            )
        too_many = [
            f"layer{i} has {len(s)} blocks, asked {c}" for i, (s, c) in enumerate(zip(stages, counts), 1) if c > len(s)
        ]
        if too_many:
            raise ValueError(f"non_local={counts!r} puts more blocks than a stage has: {'; '.join(too_many)}")
        if not any(counts):
            return None
        return nn.ModuleDict(
            {
                f"stage{i}": nn.ModuleList([NonLocal(stage[-1].bn3.num_features) for _ in range(c)])
                for i, (stage, c) in enumerate(zip(stages, counts), 1)
                if c
            }
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The res5 map, (B, 2048, H / stride, W / stride): non-local blocks included, attended
        when the model has an attention block."""
        x = self._backbone_features(x)
        return x if self.attention is None else self.attention(x)

    def _backbone_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.non_local is None:
            return self.backbone(x)
        net = self.backbone
        x = net.forward_stem(x)
        for i, stage in enumerate((net.layer1, net.layer2, net.layer3, net.layer4), 1):
            key = f"stage{i}"
            if key in self.non_local:
                x = run_stage_with_non_local(stage, self.non_local[key], x, net.grad_checkpointing)
            else:
                x = run_blocks(stage, x, net.grad_checkpointing)
        return x

    def forward_train(self, x: torch.Tensor) -> tuple[BranchOutput]:
        return (self.bnneck(self.pool(self.forward_features(x))),)

    def forward_embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.bnneck(self.pool(self.forward_features(x)))


def _create_attention(name: str | None, channels: int) -> nn.Module | None:
    if name is None:
        return None
    blocks = {"sab": SAB, "cab": CAB}
    if name not in blocks:
        raise ValueError(f"attention must be 'sab', 'cab' or None (the plain baseline), got {name!r}")
    block = blocks[name](channels)
    init_weights(block)  # as FNC initialises its blocks
    return block


def _create_baseline(variant: str, pretrained: bool = False, **kwargs) -> Baseline:
    return build_model_with_cfg(Baseline, variant, pretrained, **kwargs)


# fast-reid's vehicle models (VeRi, VehicleID, VERI-Wild) see 256 x 256 images resized bicubic,
# normalised with ImageNet's mean / std; the IBN models' tags all feed them the same way.
_FASTREID_INPUT = dict(input_size=(3, 256, 256), interpolation="bicubic")
_FASTREID_RELEASE = "https://github.com/JDAI-CV/fast-reid/releases/download/v0.1.1/"
_FASTREID_ZOO = "fast-reid MODEL_ZOO.md (JDAI-CV/fast-reid), release v0.1.1"
_FASTREID_PAPER = "https://arxiv.org/abs/2006.02631"


def _fastreid(filename: str, config: str, dataset: str, metrics: dict[str, float], **model_args) -> PretrainedCfg:
    # fast-reid's ResNet stem pools with ceil_mode and no padding; its weights need that stem.
    return PretrainedCfg(
        url=_FASTREID_RELEASE + filename,
        dataset=dataset,
        metrics=metrics,
        license="apache-2.0",
        source=f"fast-reid {config} ({filename}); metrics as reported by {_FASTREID_ZOO}, not measured by fnc-reid",
        paper=_FASTREID_PAPER,
        model_args={"stem_pool": "ceil", **model_args},
        **_FASTREID_INPUT,
    )


default_cfgs = {f"baseline_{name}.in1k": in1k_cfg(name) for name in ("resnet50", "resnet101", "se_resnext101")}
default_cfgs.update(
    {
        "baseline_resnet50_ibn.in1k": replace(in1k_cfg("resnet50_ibn"), **_FASTREID_INPUT),
        "baseline_resnet101_ibn.in1k": replace(in1k_cfg("resnet101_ibn"), **_FASTREID_INPUT),
        # configs/VehicleID/bagtricks_R50-ibn.yml and configs/VERIWild/bagtricks_R50-ibn.yml: BoT with
        # HEADS.POOL_LAYER gempool, fast-reid's GeneralizedMeanPooling with p fixed at 3.
        "baseline_resnet50_ibn.fastreid_vehicleid": _fastreid(
            "vehicleid_bot_R50-ibn.pth",
            "BoT(R50-ibn) configs/VehicleID/bagtricks_R50-ibn.yml",
            "vehicleid",
            {
                "rank1_small": 0.866,
                "rank5_small": 0.979,
                "rank1_medium": 0.829,
                "rank5_medium": 0.960,
                "rank1_large": 0.806,
                "rank5_large": 0.939,
            },
            pooling="gem",
        ),
        "baseline_resnet50_ibn.fastreid_veriwild": _fastreid(
            "veriwild_bot_R50-ibn.pth",
            "BoT(R50-ibn) configs/VERIWild/bagtricks_R50-ibn.yml",
            "veriwild",
            {
                "rank1_small": 0.964,
                "mAP_small": 0.877,
                "mINP_small": 0.692,
                "rank1_medium": 0.951,
                "mAP_medium": 0.835,
                "mINP_medium": 0.612,
                "rank1_large": 0.925,
                "mAP_large": 0.773,
                "mINP_large": 0.498,
            },
            pooling="gem",
        ),
        # configs/VeRi/sbs_R50-ibn.yml on configs/Base-SBS.yml: non-local, GeM with learned p
        # (gempoolP), the architecture sbs_resnet50_ibn builds.
        "sbs_resnet50_ibn.fastreid_veri": _fastreid(
            "veri_sbs_R50-ibn.pth",
            "SBS(R50-ibn) configs/VeRi/sbs_R50-ibn.yml",
            "veri776",
            {"rank1": 0.970, "mAP": 0.819, "mINP": 0.463},
        ),
    }
)


@register_model
def baseline_resnet50(pretrained: bool = False, **kwargs) -> Baseline:
    """BoT baseline on ResNet-50."""
    model_args = dict(backbone="resnet50")
    return _create_baseline("baseline_resnet50", pretrained, **dict(model_args, **kwargs))


@register_model
def baseline_resnet101(pretrained: bool = False, **kwargs) -> Baseline:
    """BoT baseline on ResNet-101."""
    model_args = dict(backbone="resnet101")
    return _create_baseline("baseline_resnet101", pretrained, **dict(model_args, **kwargs))


@register_model
def baseline_se_resnext101(pretrained: bool = False, **kwargs) -> Baseline:
    """BoT baseline on SE-ResNeXt-101 32x4d."""
    model_args = dict(backbone="se_resnext101")
    return _create_baseline("baseline_se_resnext101", pretrained, **dict(model_args, **kwargs))


@register_model
def baseline_resnet50_ibn(pretrained: bool = False, **kwargs) -> Baseline:
    """BoT baseline on ResNet-50-IBN-a: fast-reid's ``bagtricks_R50-ibn`` (its ``.fastreid_*`` tags
    set the stem and pooling their weights were trained with)."""
    model_args = dict(backbone="resnet50_ibn")
    return _create_baseline("baseline_resnet50_ibn", pretrained, **dict(model_args, **kwargs))


@register_model
def baseline_resnet101_ibn(pretrained: bool = False, **kwargs) -> Baseline:
    """BoT baseline on ResNet-101-IBN-a (fast-reid's ``bagtricks_R101-ibn`` with ``stem_pool="ceil"``)."""
    model_args = dict(backbone="resnet101_ibn")
    return _create_baseline("baseline_resnet101_ibn", pretrained, **dict(model_args, **kwargs))


@register_model
def sbs_resnet50_ibn(pretrained: bool = False, **kwargs) -> Baseline:
    """fast-reid's SBS on ResNet-50-IBN-a: non-local blocks in layer2 (2) and layer3 (3), learned-p GeM."""
    model_args = dict(backbone="resnet50_ibn", pooling="gem_learned", non_local=(0, 2, 3, 0), stem_pool="ceil")
    return _create_baseline("sbs_resnet50_ibn", pretrained, **dict(model_args, **kwargs))
