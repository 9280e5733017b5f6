"""Training: ``Trainer`` / ``fit`` with the paper's recipe, atomic resumable checkpoints, DDP under
``torchrun``, and publishing a checkpoint folder to the Hub.

The one layer that imports everything (models, data, losses, optim, evaluation, inference); only
the command line imports it.

>>> import fnc
>>> from fnc.engine import fit
>>> model = fnc.create_model("fnc_se_resnext101", pretrained=True)  # doctest: +SKIP
>>> trainer = fit(model, "veri:/data/VeRi", "runs/veri")  # doctest: +SKIP
"""

from fnc.engine.checkpoint import (
    BEST,
    LAST,
    CheckpointError,
    load_state_tree,
    read_checkpoint,
    recover_checkpoint,
    verify_checkpoint,
)
from fnc.engine.config import TrainConfig
from fnc.engine.distributed import SyncBatchNorm, convert_sync_batchnorm, gather_with_grad, init_distributed
from fnc.engine.outputs import OutputExistsError
from fnc.engine.publish import push_checkpoint
from fnc.engine.trainer import Trainer, fit
from fnc.evaluation.model import evaluate_model, infer_protocol

__all__ = [
    "BEST",
    "CheckpointError",
    "LAST",
    "OutputExistsError",
    "SyncBatchNorm",
    "TrainConfig",
    "Trainer",
    "convert_sync_batchnorm",
    "evaluate_model",
    "fit",
    "gather_with_grad",
    "infer_protocol",
    "init_distributed",
    "load_state_tree",
    "push_checkpoint",
    "read_checkpoint",
    "recover_checkpoint",
    "verify_checkpoint",
]
