"""Training: ``Trainer`` / ``fit`` with the paper's recipe, atomic resumable checkpoints, DDP under
``torchrun``, and the evaluation hook.

The one place that imports everything (models, data, losses, optim, evaluation).

>>> import fnc
>>> from fnc.engine import fit
>>> model = fnc.create_model("fnc_se_resnext101", pretrained=True)  # doctest: +SKIP
>>> trainer = fit(model, "veri:/data/VeRi", "runs/veri")  # doctest: +SKIP
"""

from fnc.engine.checkpoint import CheckpointError, load_state_tree, read_checkpoint, recover_checkpoint, verify_checkpoint
from fnc.engine.distributed import SyncBatchNorm, convert_sync_batchnorm, gather_with_grad, init_distributed
from fnc.engine.evaluator import evaluate_model, infer_protocol
from fnc.engine.trainer import TrainConfig, Trainer, fit

__all__ = [
    "CheckpointError",
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
    "read_checkpoint",
    "recover_checkpoint",
    "verify_checkpoint",
]
