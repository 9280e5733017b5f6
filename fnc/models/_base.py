"""What every fnc-reid model shares: the model contract, input checks, classifier reset."""

from __future__ import annotations

import torch
from torch import nn

from ._mixin import HubMixin
from ._pretrained import PretrainedCfg
from .heads import BNNeck

__all__ = ["ReIDModel"]


class ReIDModel(nn.Module, HubMixin):
    """Base class of the re-ID models.

    The contract: in ``train()`` mode ``forward(x)`` returns a tuple with one
    :class:`~fnc.models.heads.BranchOutput` per branch; in ``eval()`` mode, the (B, embed_dim)
    inference embedding. Subclasses set ``embed_dim`` and ``stride`` and implement
    ``forward_train`` and ``forward_embed``.

    Hub support (``save_pretrained``, ``from_pretrained``, ``push_to_hub``) comes from
    :class:`~fnc.models._mixin.HubMixin`; constructors take only JSON-able arguments so that the
    mixin's ``config.json`` rebuilds the model.
    """

    embed_dim: int
    #: Total down-sampling of the deepest feature map; the smallest input the network accepts.
    stride: int

    def __init__(self) -> None:
        super().__init__()
        self.pretrained_cfg: PretrainedCfg | None = None

    def bnnecks(self) -> list[BNNeck]:
        """The model's BNNeck heads, one per branch, in module order."""
        return [m for m in self.modules() if isinstance(m, BNNeck)]

    def classifier_keys(self) -> list[str]:
        """State-dict keys of the identity classifiers, present or not (``num_classes=0``).

        The loader asks for these to tell a checkpoint's classifier of another size (dropped and
        re-initialised) from any other mismatch (an error).

        Example:
            >>> import fnc
            >>> fnc.create_model("bfe_resnet50").classifier_keys()
            ['global_bnneck.classifier.weight', 'erase_bnneck.classifier.weight']
        """
        return [f"{name}.classifier.weight" for name, m in self.named_modules() if isinstance(m, BNNeck)]

    @property
    def num_classes(self) -> int:
        """Identities of the classifier (0: no classifier, feature extractor only)."""
        return self.bnnecks()[0].num_classes

    def reset_classifier(self, num_classes: int) -> None:
        """Give every branch a fresh classifier with ``num_classes`` outputs (0 removes it).

        Example:
            >>> import fnc
            >>> model = fnc.create_model("baseline_resnet50", num_classes=10)
            >>> model.reset_classifier(333)
            >>> model.num_classes
            333
        """
        for neck in self.bnnecks():
            neck.reset_classifier(num_classes)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute block activations in backward to save memory (training only)."""
        for m in self.modules():
            if hasattr(m, "grad_checkpointing"):
                m.grad_checkpointing = enable

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ValueError naming what was expected if ``x`` cannot go through the model: its
        shape, a non-empty batch, a float dtype and device matching the weights."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected a torch.Tensor of shape (B, 3, H, W), got {type(x).__name__}")
        if x.ndim != 4:
            hint = "; add a batch dimension with x.unsqueeze(0)" if x.ndim == 3 else ""
            raise ValueError(f"expected a 4-D batch (B, 3, H, W), got shape {tuple(x.shape)}{hint}")
        if x.shape[1] != 3:
            raise ValueError(
                f"expected 3 (RGB) channels in dim 1 of (B, 3, H, W), got shape {tuple(x.shape)}; "
                "convert grey or RGBA images to RGB (PIL: image.convert('RGB'))"
            )
        if not x.is_floating_point():
            raise ValueError(
                f"expected a float tensor, got {x.dtype}; scale to [0, 1] and normalise with the "
                "model's pretrained_cfg mean/std"
            )
        if x.shape[0] == 0:
            raise ValueError(f"empty batch: got shape {tuple(x.shape)}; pass at least one image")
        if x.is_meta:
            raise ValueError(
                "the input is a meta-device tensor, which holds no data; pass a tensor on the model's device"
            )
        param = next(self.parameters(), None)
        if param is not None:
            if x.device != param.device:
                raise ValueError(
                    f"the input is on {x.device} but the model is on {param.device}; move one of them "
                    f"(x.to({str(param.device)!r}) or model.to({str(x.device)!r}))"
                )
            # Under autocast the layers cast for themselves; otherwise a dtype mismatch fails
            # deep inside the first convolution.
            if x.dtype != param.dtype and not torch.is_autocast_enabled(x.device.type):
                raise ValueError(
                    f"the input is {x.dtype} but the model's weights are {param.dtype}; convert the "
                    f"input (x.to({param.dtype})) or the model (model.to({x.dtype}))"
                )
        hgt, wid = x.shape[-2:]
        if hgt < self.stride or wid < self.stride:
            raise ValueError(
                f"image {hgt}x{wid} (HxW) is too small for {type(self).__name__}: its feature map "
                f"is 1/{self.stride} of the input, so H and W must be at least {self.stride} "
                "(the paper uses 288x384)"
            )
        if self.training and x.shape[0] < 2:
            raise ValueError(
                "batch size 1 in train mode: BatchNorm needs at least 2 samples to compute batch "
                "statistics; train with a batch of 2 or more (P x K sampling gives 64), or call "
                "model.eval() to embed a single image"
            )

    def forward_train(self, x: torch.Tensor) -> tuple:
        raise NotImplementedError

    def forward_embed(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor):
        """``train()``: tuple of BranchOutput (one per branch); ``eval()``: (B, embed_dim)."""
        self.check_input(x)
        return self.forward_train(x) if self.training else self.forward_embed(x)
