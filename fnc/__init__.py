"""fnc-reid: vehicle re-identification models (FNC, BFE, BoT baseline), re-ranking and metrics.

Implements "Further Non-local and Channel Attention Networks for Vehicle Re-identification"
(Liu et al., CVPR Workshops 2020).
"""

__version__ = "0.1.0"

from .models import create_model, get_pretrained_cfg, list_models
# The package, not its function: it is callable as rerank() and keeps its submodules reachable.
from . import rerank
from .rerank import re_ranking
from .evaluation import evaluate, EvalResult
from .inference import extract, list_images
from .export import export_onnx
from .engine import TrainConfig, Trainer, fit
from . import viz
