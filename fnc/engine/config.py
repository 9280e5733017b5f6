"""The training recipe: :class:`TrainConfig`: the paper's values (Sec. 3.4, 4.2), BoT's where it is silent (docs/design.md)."""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from fnc.evaluation.rank import PROTOCOLS
from fnc.inference.preprocess import check_input_size

__all__ = ["TrainConfig", "config_error_field"]


def _fail(cls: type[Exception], name: str, problem: str) -> Exception:
    # The field rides on the error so the command line can name its flag (--erase-p for erase_p).
    error = cls(f"{name} {problem}")
    error.field = name.partition("[")[0]  # type: ignore[attr-defined]
    return error


def config_error_field(error: BaseException) -> str | None:
    """The :class:`TrainConfig` field a validation error is about, or ``None`` for any other error.

    >>> try:
    ...     TrainConfig(erase_p=5)
    ... except ValueError as e:
    ...     config_error_field(e)
    'erase_p'
    """
    return getattr(error, "field", None)


def _int(name: str, value: Any, low: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _fail(TypeError, name, f"must be an int, got {value!r}")
    if low is not None and value < low:
        raise _fail(ValueError, name, f"must be >= {low}, got {value}")


def _float(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _fail(TypeError, name, f"must be a number, got {value!r}")
    if not math.isfinite(value):
        raise _fail(ValueError, name, f"must be finite, got {value}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        bounds = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
        raise _fail(ValueError, name, f"must be in {bounds}, got {value}")


def _bool(name: str, value: Any, optional: bool = False) -> None:
    if not (isinstance(value, bool) or (optional and value is None)):
        raise _fail(TypeError, name, f"must be {'True, False or None' if optional else 'True or False'}, got {value!r}")


@dataclass
class TrainConfig:
    """The training recipe. Defaults are the paper's, BoT's where the paper is silent (see docs/design.md).

    Each field's ``metadata["help"]`` describes it; ``fnc-reid train`` turns every field into a
    flag (``batch_size`` -> ``--batch-size``) with that text as its help.

    Example:
        >>> TrainConfig(epochs=60).to_dict()["epochs"]
        60
    """

    epochs: int = field(
        default=120,
        metadata={
            "help": "epochs to train (120, BoT's: the paper gives the 40 / 70 milestones but no total; docs/design.md)."
        },
    )
    batch_size: int = field(
        default=64,
        metadata={
            "help": (
                "global P x K batch (paper: 64, Sec. 4.2; split as BoT's 16 identities x 4 images, docs/design.md)."
            )
        },
    )
    num_instances: int = field(
        default=4, metadata={"help": "K, images per identity in a batch (4, BoT's; the paper gives no K)."}
    )
    input_size: tuple[int, int] | None = field(
        default=None,
        metadata={
            "help": (
                "(H, W) of training and evaluation images; ``None`` = the model's ``pretrained_cfg`` (288 "
                'x 384: Sec. 4.2\'s "288*384" read as H x W, see docs/design.md).'
            )
        },
    )
    lr: float = field(default=3.5e-4, metadata={"help": "peak learning rate of Ranger (paper: 3.5e-4)."})
    warmup_epochs: int = field(
        default=10,
        metadata={"help": ("linear warm-up epochs from ``warmup_factor * lr`` (paper: 10, from 3.5e-5).")},
    )
    warmup_factor: float = field(default=0.1, metadata={"help": "lr multiplier at epoch 0 (paper: 0.1)."})
    milestones: tuple[int, ...] = field(
        default=(40, 70),
        metadata={"help": ("epochs at which the lr is multiplied by ``gamma`` (paper: 40 and 70).")},
    )
    gamma: float = field(default=0.1, metadata={"help": "step decay factor (paper: 0.1)."})
    weight_decay: float = field(
        default=5e-4,
        metadata={
            "help": (
                "decoupled weight decay of Ranger. The paper gives none; BoT's value is 5e-4 (applied "
                "here the Ranger / AdamW way, scaled by the lr)."
            )
        },
    )
    betas: tuple[float, float] = field(
        default=(0.95, 0.999),
        metadata={"help": ("Ranger's (RAdam's) moment coefficients (reference Ranger: 0.95, 0.999).")},
    )
    lookahead_k: int = field(
        default=6,
        metadata={"help": ("Lookahead synchronisation period in steps (Ranger: 6).")},
    )
    lookahead_alpha: float = field(
        default=0.5,
        metadata={"help": ("Lookahead slow-weight step (Ranger: 0.5).")},
    )
    id_weight: float = field(
        default=2.0,
        metadata={"help": ("lambda of Eq. 7, weight of the summed ID losses (paper: 2).")},
    )
    triplet_weight: float = field(
        default=1.0,
        metadata={"help": ("weight of the summed triplet losses (paper: 1).")},
    )
    margin: float | None = field(
        default=0.3,
        metadata={"help": ("batch-hard triplet margin (BoT's 0.3; the paper gives none); ``None`` = soft margin.")},
    )
    center_weight: float = field(
        default=0.0,
        metadata={
            "help": (
                "weight of BoT's center loss on each branch's pre-BN feature (BoT: 5e-4); 0 = off, as the "
                "paper settles (Sec. 4.3: center loss degraded its results)."
            )
        },
    )
    center_lr: float = field(
        default=0.5,
        metadata={
            "help": (
                "learning rate of the centres' own SGD (BoT: 0.5; no warm-up or decay); their gradient is "
                "divided by ``center_weight`` first, so the weight scales only what the network sees."
            )
        },
    )
    label_smoothing: float = field(default=0.1, metadata={"help": "eps of the ID loss (paper: 0.1)."})
    flip_p: float = field(
        default=0.5,
        metadata={"help": "horizontal flip probability (0.5, BoT's; the paper names only erasing and smoothing)."},
    )
    padding: int = field(
        default=10,
        metadata={"help": ("zero padding before the random crop, pixels (BoT: 10).")},
    )
    erase_p: float = field(default=0.5, metadata={"help": "random erasing probability (paper: 0.5)."})
    skip_corrupt: bool = field(
        default=False,
        metadata={
            "help": (
                "replace a training image that cannot be decoded by another image of the same identity "
                "(each skip logged with the file name) instead of stopping with an error."
            )
        },
    )
    seed: int = field(
        default=0,
        metadata={"help": ("seeds Python, NumPy and torch (``seed + rank`` under DDP) and the P x K sampler.")},
    )
    eval_every: int = field(
        default=10,
        metadata={
            "help": (
                "evaluate every this many epochs, and always after the last (0: only after the last). "
                "Needs query / gallery data."
            )
        },
    )
    rerank: bool = field(
        default=False,
        metadata={
            "help": (
                "also report k-reciprocal re-ranked metrics (``*_rerank``) when evaluating; the best "
                "checkpoint is still chosen by plain mAP."
            )
        },
    )
    rerank_k1: int = field(default=75, metadata={"help": "re-ranking k1 (paper: 75)."})
    rerank_k2: int = field(default=10, metadata={"help": "re-ranking k2 (paper: 10)."})
    rerank_lambda: float = field(default=0.1, metadata={"help": "re-ranking lambda (paper: 0.1)."})
    protocol: str | None = field(
        default=None,
        metadata={
            "help": (
                'evaluation protocol, ``"veri"`` or ``"aic"``; ``None`` = ``"aic"`` for CityFlow data, else ``"veri"``.'
            )
        },
    )
    eval_batch_size: int = field(default=64, metadata={"help": "images per forward pass when evaluating."})
    amp: bool | None = field(
        default=None,
        metadata={
            "help": (
                "mixed precision; ``None`` = on for CUDA, off on CPU (bfloat16 where the GPU supports it, "
                "else float16 with a gradient scaler)."
            )
        },
    )
    grad_checkpointing: bool = field(
        default=False,
        metadata={"help": ("recompute block activations in backward to save memory.")},
    )
    sync_bn: bool = field(
        default=False,
        metadata={"help": ("under DDP, BatchNorm statistics over the global batch instead of each rank's slice.")},
    )
    num_workers: int | None = field(
        default=None,
        metadata={
            "help": (
                "DataLoader worker processes of training and evaluation; ``None`` = 4, or fewer when the "
                "process may use fewer CPUs (its affinity mask: a 2-core job gets 2)."
            )
        },
    )
    device: str | None = field(
        default=None,
        metadata={
            "help": ('``"cuda"``, ``"cpu"``, ...; ``None`` = CUDA if available (``cuda:LOCAL_RANK`` under DDP).')
        },
    )
    deterministic: bool = field(
        default=False,
        metadata={"help": ("``torch.use_deterministic_algorithms`` and no cuDNN autotuning; slower on GPU.")},
    )
    progress: bool = field(
        default=True,
        metadata={
            "help": (
                "report progress (rank 0 only): a tqdm bar on a terminal; in a log (no TTY) a line at "
                "each tenth of an epoch, at most one per 30 s, besides the line per epoch."
            )
        },
    )
    tensorboard: bool = field(
        default=False,
        metadata={
            "help": (
                "also write the per-epoch numbers of ``OUTPUT/metrics.jsonl`` as TensorBoard scalars under "
                "``OUTPUT/tensorboard`` (needs ``pip install tensorboard``)."
            )
        },
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field's type and range; run on construction (and by ``dataclasses.replace``).

        Raises:
            TypeError: a field of the wrong type (``epochs=3.5``, ``rerank="yes"``).
            ValueError: a value out of range (``erase_p=5``, ``rerank_k2 > rerank_k1``, an
                unknown ``protocol`` or ``device``). Both name the field (also as the error's
                ``field`` attribute, read with :func:`config_error_field`).

        >>> TrainConfig(erase_p=5)
        Traceback (most recent call last):
            ...
        ValueError: erase_p must be in [0, 1], got 5
        """
        for name in (
            "epochs",
            "batch_size",
            "num_instances",
            "lookahead_k",
            "rerank_k1",
            "rerank_k2",
            "eval_batch_size",
        ):
            _int(name, getattr(self, name), 1)
        for name in ("warmup_epochs", "padding", "seed", "eval_every"):
            _int(name, getattr(self, name), 0)
        if self.num_workers is not None:  # None: as many as the CPUs allow (fnc.data.workers)
            _int("num_workers", self.num_workers, 0)
        _float("triplet_weight", self.triplet_weight, 0.0)
        if self.triplet_weight and self.num_instances < 2:
            raise _fail(
                ValueError,
                "num_instances",
                f"is {self.num_instances}, but the batch-hard triplet loss needs at least 2 images of each identity "
                "in a batch (a positive pair); use num_instances >= 2 (the default is 4), or triplet_weight=0 "
                "for the ID loss alone",
            )
        if self.batch_size % self.num_instances:
            raise _fail(
                ValueError,
                "batch_size",
                f"must be a multiple of num_instances={self.num_instances} "
                f"(P identities x K images), got {self.batch_size}",
            )
        if self.rerank_k2 > self.rerank_k1:
            raise _fail(ValueError, "rerank_k2", f"must not exceed rerank_k1={self.rerank_k1}, got {self.rerank_k2}")
        if self.input_size is not None:
            try:
                check_input_size(self.input_size, "input_size")
            except (TypeError, ValueError) as e:
                raise _fail(type(e), "input_size", str(e).removeprefix("input_size ")) from None
        _float("lr", self.lr, 0.0, low_open=True)
        _float("warmup_factor", self.warmup_factor, 0.0, 1.0, low_open=True)
        _float("gamma", self.gamma, 0.0, low_open=True)
        _float("weight_decay", self.weight_decay, 0.0)
        _float("lookahead_alpha", self.lookahead_alpha, 0.0, 1.0, low_open=True)
        _float("id_weight", self.id_weight, 0.0)
        _float("triplet_weight", self.triplet_weight, 0.0)
        if self.id_weight == 0 and self.triplet_weight == 0:
            raise _fail(ValueError, "id_weight", "and triplet_weight are both 0, so there is no loss to train on")
        if self.margin is not None:
            _float("margin", self.margin, 0.0)
        for name in ("label_smoothing", "flip_p", "erase_p", "rerank_lambda"):
            _float(name, getattr(self, name), 0.0, 1.0)
        if isinstance(self.betas, (str, bytes)) or not isinstance(self.betas, Sequence) or len(self.betas) != 2:
            raise _fail(TypeError, "betas", f"must be a pair (beta1, beta2), got {self.betas!r}")
        for i, beta in enumerate(self.betas):
            _float(f"betas[{i}]", beta, 0.0, 1.0, high_open=True)
        if isinstance(self.milestones, (str, bytes)) or not isinstance(self.milestones, Sequence):
            raise _fail(TypeError, "milestones", f"must be a sequence of epochs, got {self.milestones!r}")
        for m in self.milestones:
            _int("milestones", m, 0)
        _float("center_weight", self.center_weight, 0.0)
        _float("center_lr", self.center_lr, 0.0, low_open=True)
        for name in (
            "rerank",
            "grad_checkpointing",
            "sync_bn",
            "deterministic",
            "progress",
            "skip_corrupt",
            "tensorboard",
        ):
            _bool(name, getattr(self, name))
        _bool("amp", self.amp, optional=True)
        if self.protocol is not None and self.protocol not in PROTOCOLS:
            raise _fail(
                ValueError,
                "protocol",
                f"must be one of {', '.join(PROTOCOLS)} (or None: from the data), got {self.protocol!r}",
            )
        if self.device is not None:
            if not isinstance(self.device, str):
                raise _fail(TypeError, "device", f"must be a string such as 'cuda' or 'cpu', got {self.device!r}")
            try:
                torch.device(self.device)
            except RuntimeError:
                raise _fail(
                    ValueError, "device", f"{self.device!r} is not a torch device; use cpu, cuda, cuda:1, mps, ..."
                ) from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able copy (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are ignored (a newer version's extra settings)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kept = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names}
        return cls(**kept)
