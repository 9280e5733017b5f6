"""Re-identification metrics (mAP, CMC, mINP) under the ``veri`` and ``aic`` protocols, and the
evaluation of a model on a dataset's query and gallery.

:mod:`fnc.evaluation.rank` is the metric code (numpy / torch only, no models);
:mod:`fnc.evaluation.model` embeds images with a model and scores them.

>>> from fnc.evaluation import evaluate, evaluate_model  # doctest: +SKIP
"""

from fnc.evaluation.model import evaluate_model, evaluate_trials, infer_protocol, metrics_dict
from fnc.evaluation.rank import EvalResult, evaluate

__all__ = ["EvalResult", "evaluate", "evaluate_model", "evaluate_trials", "infer_protocol", "metrics_dict"]
