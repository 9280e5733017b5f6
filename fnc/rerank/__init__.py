"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), exact and bounded in memory.

Imports only torch, numpy and the standard library, so this folder works when copied out alone.
"""

from .kreciprocal import re_ranking, rerank

__all__ = ["re_ranking", "rerank"]
