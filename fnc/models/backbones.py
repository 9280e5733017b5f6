"""ResNet-50/101 and SE-ResNeXt-101 (32x4d) backbones, state-dict compatible with timm.

He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016); Hu et al.,
"Squeeze-and-Excitation Networks" (CVPR 2018); Xie et al., "Aggregated Residual
Transformations" (ResNeXt, CVPR 2017).

Written here so fnc-reid needs no timm at run time, but every parameter and buffer has the
name and shape of timm's ``resnet50``, ``resnet101`` and ``seresnext101_32x4d`` (classifier
``fc`` excluded), so a timm checkpoint loads with ``strict=True`` and no key surgery.
The re-ID setting ``last_stride=1`` removes layer4's spatial down-sampling (BoT, FNC Sec. 3.1).
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
    "Bottleneck", "ResNet", "BackboneSpec", "BACKBONES", "create_backbone", "create_bottleneck", "in1k_cfg",
    "run_blocks", "init_weights",
]


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
    ) -> None:
        super().__init__()
        # timm's width rule, so grouped-conv shapes match its checkpoints exactly.
        width = int(math.floor(planes * (base_width / 64)) * cardinality)
        outplanes = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=cardinality, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.act2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(width, outplanes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(outplanes)
        self.se = SEModule(outplanes) if use_se else None
        self.act3 = nn.ReLU(inplace=True)
        self.downsample = downsample

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


class ResNet(nn.Module):
    """A ResNet / SE-ResNeXt feature extractor with timm's module names (no classifier).

    Args:
        layers: number of bottlenecks per stage, e.g. (3, 4, 23, 3) for the 101-layer nets.
        cardinality: groups of the 3x3 convs.
        base_width: width per group.
        use_se: SE modules in every bottleneck.
        last_stride: stride of layer4 (1 for re-ID, 2 for ImageNet classification).

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
    ) -> None:
        super().__init__()
        if last_stride not in (1, 2):
            raise ValueError(f"last_stride must be 1 (re-ID) or 2 (ImageNet), got {last_stride!r}")
        self.last_stride = last_stride
        self.num_features = 512 * Bottleneck.expansion
        self.grad_checkpointing = False
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = 64
        stages = []
        for planes, blocks, stride in zip((64, 128, 256, 512), layers, (1, 2, 2, last_stride)):
            stage, inplanes = self._make_layer(inplanes, planes, blocks, stride, cardinality, base_width, use_se)
            stages.append(stage)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        init_weights(self)

    @staticmethod
    def _make_layer(
        inplanes: int, planes: int, blocks: int, stride: int, cardinality: int, base_width: int, use_se: bool
    ) -> tuple[nn.Sequential, int]:
        outplanes = planes * Bottleneck.expansion
        downsample = None
        if stride != 1 or inplanes != outplanes:
            downsample = nn.Sequential(
                nn.Conv2d(inplanes, outplanes, 1, stride=stride, bias=False), nn.BatchNorm2d(outplanes)
            )
        layer = [Bottleneck(inplanes, planes, stride, downsample, cardinality, base_width, use_se)]
        layer += [Bottleneck(outplanes, planes, 1, None, cardinality, base_width, use_se) for _ in range(1, blocks)]
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
    in1k: PretrainedCfg | None = None


BACKBONES: dict[str, BackboneSpec] = {
    "resnet50": BackboneSpec(
        (3, 4, 6, 3), timm_name="resnet50",
        in1k=_timm_in1k("timm/resnet50.tv_in1k", "torchvision ResNet-50 ImageNet-1k weights, timm repackaging"),
    ),
    "resnet101": BackboneSpec(
        (3, 4, 23, 3), timm_name="resnet101",
        in1k=_timm_in1k("timm/resnet101.tv_in1k", "torchvision ResNet-101 ImageNet-1k weights, timm repackaging"),
    ),
    "se_resnext101": BackboneSpec(
        (3, 4, 23, 3), 32, 4, True, timm_name="seresnext101_32x4d",
        in1k=_timm_in1k(
            "timm/seresnext101_32x4d.gluon_in1k", "Gluon SE-ResNeXt-101 32x4d ImageNet-1k weights, timm repackaging"
        ),
    ),
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


def create_backbone(name: str, last_stride: int = 1) -> ResNet:
    """Build a backbone by name (``resnet50``, ``resnet101``, ``se_resnext101``).

    Example:
        >>> create_backbone("se_resnext101", last_stride=1).stride
        16
    """
    spec = _spec(name)
    return ResNet(spec.layers, spec.cardinality, spec.base_width, spec.use_se, last_stride)


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
