"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), exact and bounded in memory.

Imports only torch, numpy and the standard library, so this folder works when copied out alone.

The package itself is callable and forwards to :func:`rerank`: ``fnc.rerank`` is therefore at
once the function users call (``fnc.rerank(query, gallery)``) and this package, so that
``fnc.rerank.re_ranking`` and ``import fnc.rerank._sparse`` keep working.
"""

import inspect
import sys
import types

from .kreciprocal import re_ranking, rerank

__all__ = ["re_ranking", "rerank"]


class _CallablePackage(types.ModuleType):
    """This package, callable as :func:`rerank`."""

    __signature__ = inspect.signature(rerank)

    def __call__(self, *args, **kwargs):
        return rerank(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
