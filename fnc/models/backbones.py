"""ResNet-50/101, SE-ResNeXt-101 (32x4d) and ResNet-50/101-IBN-a backbones.

He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016); Hu et al.,
"Squeeze-and-Excitation Networks" (CVPR 2018); Xie et al., "Aggregated Residual
Transformations" (ResNeXt, CVPR 2017); Pan, Luo, Shi, Tang, "Two at Once: Enhancing Learning
and Generalization Capacities via IBN-Net" (ECCV 2018).

Written here so fnc-reid needs no timm at run time, but every parameter and buffer has the
name and shape of timm's ``resnet50``, ``resnet101`` and ``seresnext101_32x4d`` (classifier
``fc`` excluded), so a timm checkpoint loads with ``strict=True`` and no key surgery.
The re-ID setting ``last_stride=1`` removes layer4's spatial down-sampling (BoT, FNC Sec. 3.1).

The IBN-a nets have no timm counterpart; their keys are fast-reid's backbone keys (which are
also the IBN-Net release's, less its ``fc``): the same names as the plain ResNet, with each IBN
``bn1`` holding ``bn1.IN.*`` and ``bn1.BN.*``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ._pretrained import PretrainedCfg
from .attention import SEModule

__all__ = [
    "IBN",
    "Bottleneck",
    "ResNet",
    "STEM_POOLS",
    "BackboneSpec",
    "BACKBONES",
    "create_backbone",
    "create_bottleneck",
    "in1k_cfg",
    "run_blocks",
    "init_weights",
]


class IBN(nn.Module):
    """IBN-a normalisation: InstanceNorm2d (affine) on the first ``planes // 2`` channels, BN on the rest.

    Instance normalisation removes per-image appearance (colour, contrast) from the low-level
    features it is applied to, while the BN half keeps the content information that
    discriminates identities (IBN-Net, Sec. 3).

    Shape:
        (B, planes, H, W) -> (B, planes, H, W)

    Example:
        >>> norm = IBN(64)
        >>> norm.IN.num_features, norm.BN.num_features
        (32, 32)
        >>> norm(torch.randn(2, 64, 8, 8)).shape
        torch.Size([2, 64, 8, 8])
    """

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.half = planes // 2
        self.IN = nn.InstanceNorm2d(self.half, affine=True)
        self.BN = nn.BatchNorm2d(planes - self.half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, rest = torch.split(x, [self.half, x.shape[1] - self.half], 1)
        return torch.cat((self.IN(first.contiguous()), self.BN(rest.contiguous())), 1)


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (stride on the 3x3 conv), optionally grouped (ResNeXt) and with SE.

    Args:
        inplanes: input channels.
        planes: bottleneck planes; the block outputs ``planes * 4`` channels.
        stride: stride of the 3x3 conv (and of the shortcut).
        downsample: shortcut projection, or None for identity.
        cardinality: groups of the 3x3 conv (32 for ResNeXt 32x4d).
        base_width: width per group (4 for 32x4d, 64 for plain ResNet).
        use_se: add a squeeze-and-excitation module after the last BN (SE-ResNeXt).
        ibn: the first norm is :class:`IBN` (IBN-a) instead of BatchNorm.

    Shape:
        (B, inplanes, H, W) -> (B, planes * 4, H / stride, W / stride)

    Example:
        >>> block = Bottleneck(256, 64)
        >>> block(torch.randn(2, 256, 8, 8)).shape
        torch.Size([2, 256, 8, 8])
    """

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        cardinality: int = 1,
        base_width: int = 64,
        use_se: bool = False,
        ibn: bool = False,
    ) -> None:
        super().__init__()
        # timm's width rule, so grouped-conv shapes match its checkpoints exactly.
        width = int(math.floor(planes * (base_width / 64)) * cardinality)
        outplanes = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = IBN(width) if ibn else nn.BatchNorm2d(width)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=cardinality, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.act2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(width, outplanes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(outplanes)
        self.se = SEModule(outplanes) if use_se else None
        self.act3 = nn.ReLU(inplace=True)
        self.downsample = downsample

    def zero_init_residual(self) -> None:
        """Zero the last BN's scale, so the block starts as its shortcut, ``relu(shortcut(x))``.

        Goyal et al. 2017 ("Accurate, Large Minibatch SGD", Sec. 5.1), torchvision's
        ``zero_init_residual`` and timm's ``zero_init_last``: a network trained from random
        weights then starts shallow in effect, and its early gradients stay small (see
        :class:`fnc.demo.DemoSize` for what it does to a from-scratch run). Pretrained weights
        replace it.

        Example:
            >>> block = Bottleneck(256, 64)
            >>> block.zero_init_residual()
            >>> x = torch.randn(1, 256, 4, 4)
            >>> torch.equal(block(x), x.relu())
            True
        """
        nn.init.zeros_(self.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.bn2(self.conv2(x)))
        x = self.bn3(self.conv3(x))
        if self.se is not None:
            x = self.se(x)
        return self.act3(x + shortcut)


def run_blocks(blocks: nn.Module, x: torch.Tensor, grad_checkpointing: bool = False) -> torch.Tensor:
    """Run a sequence of blocks, recomputing each block's activations in backward if asked.

    Gradient checkpointing trades one extra forward per block for not storing its activations.
    """
    if not (grad_checkpointing and torch.is_grad_enabled()):
        return blocks(x)
    for block in blocks.children():
        x = checkpoint(block, x, use_reentrant=False)
    return x


#: The stem's 3x3 / stride-2 max-pool. ``"pad1"``: padding 1 (torchvision, timm, the IBN-Net
#: ImageNet release); ``"ceil"``: no padding, ``ceil_mode=True`` (fast-reid's ResNet). Both give
#: the same map size on even inputs but windows one pixel apart, so weights trained with one
#: embed differently with the other.
STEM_POOLS: dict[str, dict] = {
    "pad1": {"kernel_size": 3, "stride": 2, "padding": 1},
    "ceil": {"kernel_size": 3, "stride": 2, "padding": 0, "ceil_mode": True},
}


class ResNet(nn.Module):
    """A ResNet / SE-ResNeXt / ResNet-IBN-a feature extractor with timm's module names (no classifier).

    Args:
        layers: number of bottlenecks per stage, e.g. (3, 4, 23, 3) for the 101-layer nets.
        cardinality: groups of the 3x3 convs.
        base_width: width per group.
        use_se: SE modules in every bottleneck.
        last_stride: stride of layer4 (1 for re-ID, 2 for ImageNet classification).
        ibn: IBN-a: every bottleneck of layer1-3 normalises after its first conv with
            :class:`IBN`; the stem and layer4 stay BatchNorm.
        stem_pool: the stem max-pool, a key of :data:`STEM_POOLS`.

    Shape:
        (B, 3, H, W) -> (B, 2048, H / s, W / s) with s = 16 if last_stride == 1 else 32.

    Example:
        >>> net = create_backbone("resnet50")
        >>> net(torch.randn(2, 3, 64, 64)).shape
        torch.Size([2, 2048, 4, 4])
    """

    def __init__(
        self,
        layers: tuple[int, int, int, int],
        cardinality: int = 1,
        base_width: int = 64,
        use_se: bool = False,
        last_stride: int = 1,
        ibn: bool = False,
        stem_pool: str = "pad1",
    ) -> None:
        super().__init__()
        if last_stride not in (1, 2):
            raise ValueError(f"last_stride must be 1 (re-ID) or 2 (ImageNet), got {last_stride!r}")
        if stem_pool not in STEM_POOLS:
            raise ValueError(
                f"stem_pool must be one of {sorted(STEM_POOLS)} ('pad1': torchvision / IBN-Net "
                f"weights, 'ceil': fast-reid weights), got {stem_pool!r}"
            )
        self.last_stride = last_stride
        self.num_features = 512 * Bottleneck.expansion
        self.grad_checkpointing = False
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(**STEM_POOLS[stem_pool])
        inplanes = 64
        stages = []
        for i, (planes, blocks, stride) in enumerate(zip((64, 128, 256, 512), layers, (1, 2, 2, last_stride))):
            stage, inplanes = self._make_layer(
                inplanes, planes, blocks, stride, cardinality, base_width, use_se, ibn and i < 3
            )
            stages.append(stage)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        init_weights(self)

    @staticmethod
    def _make_layer(
        inplanes: int,
        planes: int,
        blocks: int,
        stride: int,
        cardinality: int,
        base_width: int,
        use_se: bool,
        ibn: bool = False,
    ) -> tuple[nn.Sequential, int]:
        outplanes = planes * Bottleneck.expansion
        downsample = None
        if stride != 1 or inplanes != outplanes:
            downsample = nn.Sequential(
                nn.Conv2d(inplanes, outplanes, 1, stride=stride, bias=False), nn.BatchNorm2d(outplanes)
            )
        layer = [Bottleneck(inplanes, planes, stride, downsample, cardinality, base_width, use_se, ibn)]
        layer += [
            Bottleneck(outplanes, planes, 1, None, cardinality, base_width, use_se, ibn) for _ in range(1, blocks)
        ]
        return nn.Sequential(*layer), outplanes

    @property
    def stride(self) -> int:
        """Total down-sampling factor of the output map."""
        return 16 * self.last_stride

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.act1(self.bn1(self.conv1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_stem(x)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = run_blocks(stage, x, self.grad_checkpointing)
        return x


def init_weights(module: nn.Module) -> None:
    """BoT initialisation: convs and linears kaiming-normal (fan_out), BN weight 1 and bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _timm_in1k(hub_id: str, source: str) -> PretrainedCfg:
    # timm's ImageNet checkpoints hold the backbone and its 1000-class ``fc``, which re-ID drops.
    return PretrainedCfg(
        hf_hub_id=hub_id,
        weights_format="timm_backbone",
        classifier=("fc",),
        dataset="imagenet-1k (backbone only)",
        license="apache-2.0",
        source=source,
    )


def _ibn_net_in1k(filename: str, depth: int) -> PretrainedCfg:
    # IBN-Net's ImageNet release (v1.0, MIT); fast-reid starts its IBN-a models from the same files.
    # Its ResNet stem pools with padding 1, the backbones' default stem_pool.
    return PretrainedCfg(
        url=f"https://github.com/XingangPan/IBN-Net/releases/download/v1.0/{filename}",
        weights_format="timm_backbone",
        classifier=("fc",),
        dataset="imagenet-1k (backbone only)",
        license="mit",
        source=f"IBN-Net ResNet-{depth}-IBN-a ImageNet-1k weights, release v1.0 (XingangPan/IBN-Net)",
    )


@dataclass(frozen=True)
class BackboneSpec:
    """Architecture of one backbone, the timm model it is key-compatible with, and its ImageNet weights.

    Attributes:
        layers, cardinality, base_width, use_se: the :class:`ResNet` arguments.
        timm_name: the timm model whose state dict ours matches key for key.
        in1k: the ImageNet-1k backbone checkpoint every model on this backbone starts from
            (its ``.in1k`` tag), or None if there is none.
    """

    layers: tuple[int, int, int, int]
    cardinality: int = 1
    base_width: int = 64
    use_se: bool = False
    timm_name: str = ""
    ibn: bool = False
    in1k: PretrainedCfg | None = None


BACKBONES: dict[str, BackboneSpec] = {
    "resnet50": BackboneSpec(
        (3, 4, 6, 3),
        timm_name="resnet50",
        in1k=_timm_in1k("timm/resnet50.tv_in1k", "torchvision ResNet-50 ImageNet-1k weights, timm repackaging"),
    ),
    "resnet101": BackboneSpec(
        (3, 4, 23, 3),
        timm_name="resnet101",
        in1k=_timm_in1k("timm/resnet101.tv_in1k", "torchvision ResNet-101 ImageNet-1k weights, timm repackaging"),
    ),
    "se_resnext101": BackboneSpec(
        (3, 4, 23, 3),
        32,
        4,
        True,
        timm_name="seresnext101_32x4d",
        in1k=_timm_in1k(
            "timm/seresnext101_32x4d.gluon_in1k", "Gluon SE-ResNeXt-101 32x4d ImageNet-1k weights, timm repackaging"
        ),
    ),
    "resnet50_ibn": BackboneSpec((3, 4, 6, 3), ibn=True, in1k=_ibn_net_in1k("resnet50_ibn_a-d9d0bb7b.pth", 50)),
    "resnet101_ibn": BackboneSpec((3, 4, 23, 3), ibn=True, in1k=_ibn_net_in1k("resnet101_ibn_a-59ea0ac6.pth", 101)),
}


def _spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    return BACKBONES[name]


def in1k_cfg(backbone: str) -> PretrainedCfg:
    """The ``.in1k`` config of a model on ``backbone``: its ImageNet backbone checkpoint.

    The checkpoint holds only backbone tensors; a model's heads are initialised.

    Example:
        >>> in1k_cfg("resnet50").hf_hub_id
        'timm/resnet50.tv_in1k'
    """
    cfg = _spec(backbone).in1k
    if cfg is None:
        raise ValueError(f"backbone {backbone!r} has no ImageNet checkpoint")
    return cfg


def create_backbone(name: str, last_stride: int = 1, stem_pool: str = "pad1") -> ResNet:
    """Build a backbone by name (a key of :data:`BACKBONES`, e.g. ``resnet50``, ``resnet50_ibn``).

    Example:
        >>> create_backbone("se_resnext101", last_stride=1).stride
        16
        >>> type(create_backbone("resnet50_ibn").layer1[0].bn1).__name__
        'IBN'
    """
    spec = _spec(name)
    return ResNet(spec.layers, spec.cardinality, spec.base_width, spec.use_se, last_stride, spec.ibn, stem_pool)


def create_bottleneck(name: str, inplanes: int, planes: int) -> Bottleneck:
    """A stride-1 bottleneck of the same family as backbone ``name`` (e.g. BFE's extra block).

    Example:
        >>> create_bottleneck("resnet50", 2048, 512)(torch.randn(2, 2048, 4, 4)).shape
        torch.Size([2, 2048, 4, 4])
    """
    spec = _spec(name)
    block = Bottleneck(inplanes, planes, 1, None, spec.cardinality, spec.base_width, spec.use_se)
    init_weights(block)
    return block
