"""The training recipe: :class:`TrainConfig`: the paper's values (Sec. 3.4, 4.2), BoT's where it is silent (docs/design.md)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TrainConfig"]


@dataclass
class TrainConfig:
    """The training recipe. Defaults are the paper's, BoT's where the paper is silent (see docs/design.md).

    Each field's ``metadata["help"]`` describes it; ``fnc-reid train`` turns every field into a
    flag (``batch_size`` -> ``--batch-size``) with that text as its help.

    Example:
        >>> TrainConfig(epochs=60).to_dict()["epochs"]
        60
    """

    epochs: int = field(default=120, metadata={"help": "epochs to train (120, BoT's: the paper gives the 40 / 70 milestones but no total; docs/design.md)."})
    batch_size: int = field(
        default=64,
        metadata={"help": (
            "global P x K batch (paper: 64, Sec. 4.2; split as BoT's 16 identities x 4 images, docs/design.md)."
        )},
    )
    num_instances: int = field(default=4, metadata={"help": "K, images per identity in a batch (4, BoT's; the paper gives no K)."})
    input_size: tuple[int, int] | None = field(
        default=None,
        metadata={"help": (
            "(H, W) of training and evaluation images; ``None`` = the model's ``pretrained_cfg`` (288 "
            "x 384: Sec. 4.2's \"288*384\" read as H x W, see docs/design.md)."
        )},
    )
    lr: float = field(default=3.5e-4, metadata={"help": "peak learning rate of Ranger (paper: 3.5e-4)."})
    warmup_epochs: int = field(
        default=10,
        metadata={"help": (
            "linear warm-up epochs from ``warmup_factor * lr`` (paper: 10, from 3.5e-5)."
        )},
    )
    warmup_factor: float = field(default=0.1, metadata={"help": "lr multiplier at epoch 0 (paper: 0.1)."})
    milestones: tuple[int, ...] = field(
        default=(40, 70),
        metadata={"help": (
            "epochs at which the lr is multiplied by ``gamma`` (paper: 40 and 70)."
        )},
    )
    gamma: float = field(default=0.1, metadata={"help": "step decay factor (paper: 0.1)."})
    weight_decay: float = field(
        default=5e-4,
        metadata={"help": (
            "decoupled weight decay of Ranger. The paper gives none; BoT's value is 5e-4 (applied "
            "here the Ranger / AdamW way, scaled by the lr)."
        )},
    )
    betas: tuple[float, float] = field(
        default=(0.95, 0.999),
        metadata={"help": (
            "Ranger's (RAdam's) moment coefficients (reference Ranger: 0.95, 0.999)."
        )},
    )
    lookahead_k: int = field(
        default=6,
        metadata={"help": (
            "Lookahead synchronisation period in steps (Ranger: 6)."
        )},
    )
    lookahead_alpha: float = field(
        default=0.5,
        metadata={"help": (
            "Lookahead slow-weight step (Ranger: 0.5)."
        )},
    )
    id_weight: float = field(
        default=2.0,
        metadata={"help": (
            "lambda of Eq. 7, weight of the summed ID losses (paper: 2)."
        )},
    )
    triplet_weight: float = field(
        default=1.0,
        metadata={"help": (
            "weight of the summed triplet losses (paper: 1)."
        )},
    )
    margin: float | None = field(
        default=0.3,
        metadata={"help": (
            "batch-hard triplet margin (BoT's 0.3; the paper gives none); ``None`` = soft margin."
        )},
    )
    center_weight: float = field(
        default=0.0,
        metadata={"help": (
            "weight of BoT's center loss on each branch's pre-BN feature (BoT: 5e-4); 0 = off, as the "
            "paper settles (Sec. 4.3: center loss degraded its results)."
        )},
    )
    center_lr: float = field(
        default=0.5,
        metadata={"help": (
            "learning rate of the centres' own SGD (BoT: 0.5; no warm-up or decay); their gradient is "
            "divided by ``center_weight`` first, so the weight scales only what the network sees."
        )},
    )
    label_smoothing: float = field(default=0.1, metadata={"help": "eps of the ID loss (paper: 0.1)."})
    flip_p: float = field(default=0.5, metadata={"help": "horizontal flip probability (0.5, BoT's; the paper names only erasing and smoothing)."})
    padding: int = field(
        default=10,
        metadata={"help": (
            "zero padding before the random crop, pixels (BoT: 10)."
        )},
    )
    erase_p: float = field(default=0.5, metadata={"help": "random erasing probability (paper: 0.5)."})
    skip_corrupt: bool = field(
        default=False,
        metadata={"help": (
            "replace a training image that cannot be decoded by another image of the same identity "
            "(each skip logged with the file name) instead of stopping with an error."
        )},
    )
    seed: int = field(
        default=0,
        metadata={"help": (
            "seeds Python, NumPy and torch (``seed + rank`` under DDP) and the P x K sampler."
        )},
    )
    eval_every: int = field(
        default=10,
        metadata={"help": (
            "evaluate every this many epochs, and always after the last (0: only after the last). "
            "Needs query / gallery data."
        )},
    )
    rerank: bool = field(
        default=False,
        metadata={"help": (
            "also report k-reciprocal re-ranked metrics (``*_rerank``) when evaluating; the best "
            "checkpoint is still chosen by plain mAP."
        )},
    )
    rerank_k1: int = field(default=75, metadata={"help": "re-ranking k1 (paper: 75)."})
    rerank_k2: int = field(default=10, metadata={"help": "re-ranking k2 (paper: 10)."})
    rerank_lambda: float = field(default=0.1, metadata={"help": "re-ranking lambda (paper: 0.1)."})
    protocol: str | None = field(
        default=None,
        metadata={"help": (
            "evaluation protocol, ``\"veri\"`` or ``\"aic\"``; ``None`` = ``\"aic\"`` for CityFlow "
            "data, else ``\"veri\"``."
        )},
    )
    eval_batch_size: int = field(default=64, metadata={"help": "images per forward pass when evaluating."})
    amp: bool | None = field(
        default=None,
        metadata={"help": (
            "mixed precision; ``None`` = on for CUDA, off on CPU (bfloat16 where the GPU supports it, "
            "else float16 with a gradient scaler)."
        )},
    )
    grad_checkpointing: bool = field(
        default=False,
        metadata={"help": (
            "recompute block activations in backward to save memory."
        )},
    )
    sync_bn: bool = field(
        default=False,
        metadata={"help": (
            "under DDP, BatchNorm statistics over the global batch instead of each rank's slice."
        )},
    )
    num_workers: int | None = field(
        default=None,
        metadata={"help": (
            "DataLoader worker processes of training and evaluation; ``None`` = 4, or fewer when the "
            "process may use fewer CPUs (its affinity mask: a 2-core job gets 2)."
        )},
    )
    device: str | None = field(
        default=None,
        metadata={"help": (
            "``\"cuda\"``, ``\"cpu\"``, ...; ``None`` = CUDA if available (``cuda:LOCAL_RANK`` under "
            "DDP)."
        )},
    )
    deterministic: bool = field(
        default=False,
        metadata={"help": (
            "``torch.use_deterministic_algorithms`` and no cuDNN autotuning; slower on GPU."
        )},
    )
    progress: bool = field(
        default=True,
        metadata={"help": (
            "report progress (rank 0 only): a tqdm bar on a terminal; in a log (no TTY) a line at "
            "each tenth of an epoch, at most one per 30 s, besides the line per epoch."
        )},
    )
    tensorboard: bool = field(
        default=False,
        metadata={"help": (
            "also write the per-epoch numbers of ``OUTPUT/metrics.jsonl`` as TensorBoard scalars under "
            "``OUTPUT/tensorboard`` (needs ``pip install tensorboard``)."
        )},
    )

    def __post_init__(self) -> None:
        if self.triplet_weight and self.num_instances < 2:
            raise ValueError(
                f"num_instances={self.num_instances}: the batch-hard triplet loss needs at least 2 images of each "
                "identity in a batch (a positive pair); use num_instances >= 2 (paper: 4), or triplet_weight=0 "
                "for the ID loss alone"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able copy (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are ignored (a newer version's extra settings)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kept = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names}
        return cls(**kept)
