"""Re-identification metrics (mAP, CMC, mINP) under the ``veri`` and ``aic`` protocols."""

from .rank import EvalResult, evaluate

__all__ = ["EvalResult", "evaluate"]
