"""Pictures of what a re-ID model does: ranked retrieval lists and FNC's attention maps.

:func:`ranked_list` draws a query beside its top-k gallery matches, green-bordered when the id
matches and red when it does not (as torchreid's ``visualize_ranked_results``).
:func:`attention_map` shows, over the input, the spatial attention block's (SAB, paper Eq. 1)
attention of one position and the channel attention block's (CAB, Eq. 3) mask energy.
:func:`training_curves` draws a run's loss, learning rate and mAP / rank-1 against epoch. Drawn
with PIL only; no matplotlib.

>>> import numpy as np
>>> from fnc.viz import colormap
>>> colormap(np.array([0.0, 1.0])).tolist()
[[48, 18, 59], [122, 4, 3]]
"""

from fnc.viz._draw import MATCH_COLOR, MISMATCH_COLOR, QUERY_COLOR, UNKNOWN_COLOR, colormap
from fnc.viz.attention import attention_map
from fnc.viz.curves import line_chart, training_curves
from fnc.viz.ranked import ranked_list

__all__ = [
    "MATCH_COLOR",
    "MISMATCH_COLOR",
    "QUERY_COLOR",
    "UNKNOWN_COLOR",
    "attention_map",
    "colormap",
    "line_chart",
    "ranked_list",
    "training_curves",
]
