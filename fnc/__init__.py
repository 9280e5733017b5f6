"""fnc-reid: vehicle re-identification models (FNC, BFE, BoT baseline), re-ranking and metrics.

Implements "Further Non-local and Channel Attention Networks for Vehicle Re-identification"
(Liu et al., CVPR Workshops 2020).
"""

__version__ = "0.1.0"

# The package, not its function: it is callable as rerank(...) and keeps its submodules reachable.
from fnc import rerank, viz
from fnc.engine import TrainConfig, Trainer, fit
from fnc.evaluation import EvalResult, evaluate
from fnc.export import export_onnx
from fnc.inference import extract, list_images
from fnc.models import create_model, get_pretrained_cfg, list_models
from fnc.rerank import re_ranking

__all__ = [
    "EvalResult",
    "TrainConfig",
    "Trainer",
    "__version__",
    "create_model",
    "evaluate",
    "export_onnx",
    "extract",
    "fit",
    "get_pretrained_cfg",
    "list_images",
    "list_models",
    "re_ranking",
    "rerank",
    "viz",
]
