"""Models: backbones, attention blocks, heads, FNC / BFE / MGN / baseline, and the registry."""

from ._base import ReIDModel
from ._builder import WeightSource, build_model_with_cfg, load_pretrained, model_arguments, resolve_source
from ._convert import convert_checkpoint
from ._factory import create_model
from ._hub import HubOptions
from ._loader import CheckpointMismatchError, CorruptCheckpointError, PretrainedNotFoundError, UnsafeCheckpointError
from ._pretrained import CONFIG_NAME, WEIGHTS_NAME, PretrainedCfg
from ._registry import (
    get_pretrained_cfg,
    is_model,
    list_models,
    list_pretrained_tags,
    model_entrypoint,
    register_model,
    split_model_name_tag,
)
from .attention import CAB, SAB, SEModule
from .backbones import Bottleneck, ResNet, create_backbone, in1k_cfg
from .baseline import Baseline
from .bfe import BFE
from .fnc import FNC
from .heads import BatchDrop, BNNeck, BranchOutput, Reduction
from .mgn import MGN

__all__ = [
    "BFE",
    "BNNeck",
    "Baseline",
    "BatchDrop",
    "Bottleneck",
    "BranchOutput",
    "CAB",
    "FNC",
    "MGN",
    "CheckpointMismatchError",
    "CorruptCheckpointError",
    "PretrainedNotFoundError",
    "UnsafeCheckpointError",
    "load_pretrained",
    "PretrainedCfg",
    "ReIDModel",
    "Reduction",
    "ResNet",
    "SAB",
    "SEModule",
    "build_model_with_cfg",
    "create_backbone",
    "create_model",
    "get_pretrained_cfg",
    "is_model",
    "list_models",
    "list_pretrained_tags",
    "model_arguments",
    "model_entrypoint",
    "register_model",
    "split_model_name_tag",
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "HubOptions",
    "WeightSource",
    "in1k_cfg",
    "resolve_source",
    "convert_checkpoint",
]
