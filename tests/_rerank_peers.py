"""Loads torchreid's re-ranking and rank-metric modules as test oracles without importing the
torchreid package (whose import pulls in its models, OpenCV and more)."""

from __future__ import annotations

import importlib.util
import os
import sys
import types

import numpy as np
import pytest


def _load(rel: str, name: str) -> types.ModuleType:
    spec = importlib.util.find_spec("torchreid")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("torchreid is not installed (pip install 'fnc-reid[test]')")
    path = os.path.join(spec.submodule_search_locations[0], rel)
    mspec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(mspec)
    # rank.py tries to import its Cython extension through the torchreid package; a None entry
    # makes that import fail at once, so it falls back to its Python evaluation.
    saved = sys.modules.get("torchreid", False)
    sys.modules["torchreid"] = None  # type: ignore[assignment]
    try:
        mspec.loader.exec_module(module)
    finally:
        if saved is False:
            del sys.modules["torchreid"]
        else:
            sys.modules["torchreid"] = saved
    return module


def reference_re_ranking():
    """torchreid's ``re_ranking``, unmodified."""
    return _load("reid/utils/rerank.py", "_peer_rerank").re_ranking


class _StableNumpy:
    """numpy, except that ``argsort`` is stable: ties are then broken by index."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def argsort(a, axis=-1):
        return np.argsort(a, axis=axis, kind="stable")


def stable_reference_re_ranking():
    """torchreid's ``re_ranking`` with a stable argsort, the tie rule fnc.rerank documents."""
    module = _load("reid/utils/rerank.py", "_peer_rerank_stable")
    module.np = _StableNumpy()
    return module.re_ranking


def reference_evaluate_rank():
    """torchreid's ``evaluate_rank`` (pure Python path)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _load("reid/metrics/rank.py", "_peer_rank").evaluate_rank
