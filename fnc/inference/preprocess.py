"""The one path from a model to its preprocessing: input size, mean / std, interpolation.

:func:`resolve_data_config` is what the trainer, :func:`~fnc.inference.extract`, ONNX export and
the pictures of :mod:`fnc.viz` read; a model without a ``pretrained_cfg`` gets the shared
defaults of :mod:`fnc.data.constants` (288 x 384, ImageNet mean / std).
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from torch import nn

from fnc.data.constants import DEFAULT_INPUT_SIZE, IMAGENET_MEAN, IMAGENET_STD, MAX_INPUT_SIDE
from fnc.data.transforms import build_transforms

__all__ = ["DataConfig", "build_eval_transform", "check_input_size", "resolve_data_config"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataConfig:
    """How images are prepared for a model.

    Attributes:
        input_size: (C, H, W) the model sees.
        mean: per-channel mean of RGB input in [0, 1].
        std: per-channel standard deviation.
        interpolation: the resize interpolation the weights were trained with.
    """

    input_size: tuple[int, int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"

    @property
    def hw(self) -> tuple[int, int]:
        """(H, W) of :attr:`input_size`."""
        return self.input_size[1], self.input_size[2]


def check_input_size(input_size: object, name: str = "input_size") -> tuple[int, int]:
    """``input_size`` as (H, W), checked: two (or C, H, W three) positive ints up to ``MAX_INPUT_SIDE``.

    Args:
        input_size: (H, W) or (C, H, W).
        name: what the caller calls it, for the message (``"--input-size"`` on the command line).

    Raises:
        TypeError: not a sequence of ints.
        ValueError: the wrong length, a side < 1, or a side > ``MAX_INPUT_SIDE`` (4096).

    >>> check_input_size((3, 288, 384))
    (288, 384)
    """
    if isinstance(input_size, (str, bytes)) or not isinstance(input_size, Sequence):
        raise TypeError(f"{name} must be (H, W) or (C, H, W) ints, got {input_size!r}")
    if any(isinstance(s, bool) or not isinstance(s, numbers.Integral) for s in input_size):
        raise TypeError(f"{name} must hold ints, got {tuple(input_size)}")
    size = tuple(int(s) for s in input_size)
    if len(size) == 3:
        size = size[1:]
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"{name} must be (H, W) or (C, H, W) with positive sides, got {tuple(input_size)}")
    if max(size) > MAX_INPUT_SIDE:
        raise ValueError(
            f"{name} {size[0]} x {size[1]} exceeds {MAX_INPUT_SIDE} pixels per side: re-ID models take crops "
            f"of a few hundred pixels (this model family: 256-384), and one float32 image at that size "
            f"would need {3 * size[0] * size[1] * 4 / 2**30:.1f} GiB"
        )
    return size  # type: ignore[return-value]


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    param = next(model.parameters(), None)
    if param is None:
        return torch.device("cpu"), torch.float32
    return param.device, param.dtype


def resolve_data_config(model: nn.Module, input_size: Sequence[int] | None = None) -> DataConfig:
    """The preprocessing of ``model``: its ``pretrained_cfg``, or the shared defaults if it has none.

    Args:
        model: a fnc-reid model (any module; one without ``pretrained_cfg`` gets 288 x 384 and
            ImageNet mean / std).
        input_size: (H, W) or (C, H, W) overriding the model's size.

    Returns:
        The :class:`DataConfig`.

    Raises:
        ValueError: ``input_size`` is not (H, W) or (C, H, W) of positive sizes.

    >>> from torch import nn
    >>> resolve_data_config(nn.Linear(2, 2), (64, 96)).input_size
    (3, 64, 96)
    """
    cfg = getattr(model, "pretrained_cfg", None)
    if cfg is None:
        logger.info("%s has no pretrained_cfg; using the default size and ImageNet mean/std", type(model).__name__)
        size, mean, std, interpolation = DEFAULT_INPUT_SIZE, IMAGENET_MEAN, IMAGENET_STD, "bilinear"
    else:
        size, mean, std, interpolation = cfg.input_size, cfg.mean, cfg.std, cfg.interpolation
    hgt, wid = check_input_size(input_size if input_size is not None else size)
    return DataConfig((3, hgt, wid), tuple(float(m) for m in mean), tuple(float(s) for s in std), interpolation)


def build_eval_transform(
    model: nn.Module, input_size: Sequence[int] | None = None
) -> Callable[[Image.Image], torch.Tensor]:
    """The evaluation preprocessing of ``model``: resize (with the config's interpolation), to float in [0, 1], normalise.

    Args:
        model: a fnc-reid model; :func:`resolve_data_config` gives the size, mean and std.
        input_size: (H, W) (or (C, H, W)) overriding the config's size.

    Returns:
        A transform from an RGB PIL image (or an (H, W, 3) uint8 array) to a (3, H, W) float32 tensor.

    >>> import fnc
    >>> t = build_eval_transform(fnc.create_model("baseline_resnet50"))
    >>> t(Image.new("RGB", (100, 50))).shape
    torch.Size([3, 288, 384])
    """
    cfg = resolve_data_config(model, input_size)
    return build_transforms(cfg.hw, cfg.mean, cfg.std, train=False, interpolation=cfg.interpolation)
