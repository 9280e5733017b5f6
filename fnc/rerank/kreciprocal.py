"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal
Encoding", CVPR 2017), as used at test time by FNC (Liu et al., CVPRW 2020: k1=75, k2=10,
lambda=0.1 over an FNC+BFE ensemble).

:func:`re_ranking` is a drop-in for the function torchreid and fast-reid ship (same signature,
same output to float32 rounding); :func:`rerank` works from features, fuses several models and
never builds an ``N x N`` matrix (``N = num_query + num_gallery``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ._neighbours import Stacked, feature_neighbours, matrix_neighbours
from ._sparse import k_reciprocal_distance

ArrayLike = np.ndarray | Tensor

# Target size of one block of distances, in bytes.
_BLOCK_BYTES = 1 << 27
# Rows a block keeps when _BLOCK_BYTES alone would give fewer, up to this size (see _chunk).
_MIN_ROWS = 1024
_BLOCK_BYTES_MAX = 1 << 30


def _as_tensor(x: ArrayLike, name: str) -> Tensor:
    if isinstance(x, Tensor):
        return x.detach()
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(x).__name__}")


# Largest finite float32: the reference squares distances and casts them to float32.
_F32_MAX = float(torch.finfo(torch.float32).max)


def _check_finite(x: Tensor, name: str) -> float:
    """Raise on NaN or inf, naming the first bad row; return the largest absolute value."""
    if not (x.is_floating_point() and x.numel()):
        return float(x.abs().max()) if x.numel() else 0.0
    # One pass: min and max propagate NaN and reach any infinity.
    lo, hi = torch.aminmax(x)
    if not (bool(torch.isfinite(lo)) and bool(torch.isfinite(hi))):
        bad = ~torch.isfinite(x)
        row = int(bad.reshape(x.shape[0], -1).any(1).nonzero()[0].item())
        raise ValueError(f"{name} row {row} contains NaN or inf")
    return max(-float(lo), float(hi))


def _first_row_above(x: Tensor, limit: float) -> int:
    return int((x.abs().reshape(x.shape[0], -1) > limit).any(1).nonzero()[0].item())


def _check_params(k1: int, k2: int, lambda_value: float) -> None:
    if int(k1) != k1 or k1 < 1:
        raise ValueError(f"k1 must be an integer >= 1, got {k1}")
    if int(k2) != k2 or k2 < 1:
        raise ValueError(f"k2 must be an integer >= 1, got {k2}")
    if k2 > k1:
        raise ValueError(f"k2 must not exceed k1, got k1={k1}, k2={k2}")
    if not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"lambda_value must be in [0, 1], got {lambda_value}")


def _chunk(chunk_size: int | None, n: int, bytes_per_entry: int) -> int:
    if chunk_size is None:
        rows = _BLOCK_BYTES // (bytes_per_entry * n)
        # torch's CPU top-k partially sorts a slice only when k * 64 <= its length, and else
        # selects and sorts, 2-2.5x slower per element (measured). The per-column selections
        # take up to 16 of a block's rows, so a block keeps 1024 rows while that stays within
        # _BLOCK_BYTES_MAX (1000 x 100,000: 84 s instead of 112 s).
        floor = min(_MIN_ROWS, max(256, _BLOCK_BYTES_MAX // (bytes_per_entry * n)))
        return int(min(4096, max(floor, rows)))
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
    return int(chunk_size)


def _output(out: Tensor, like_numpy: bool) -> ArrayLike:
    return out.cpu().numpy() if like_numpy else out


def re_ranking(
    q_g_dist: ArrayLike,
    q_q_dist: ArrayLike,
    g_g_dist: ArrayLike,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    *,
    chunk_size: int | None = None,
) -> ArrayLike:
    """k-reciprocal re-ranking from distance matrices; a drop-in for torchreid's ``re_ranking``.

    Like the reference, the distances are squared (in their own dtype), cast to float32 and each
    row is divided by its maximum. The k-reciprocal sets, the Jaccard distance and the inverted
    index are computed sparsely, so memory beyond the inputs is ``O(N * k1)`` plus the output.
    Exact float32 ties are broken by gallery index (a stable sort); the reference's unstable
    argsort may order them differently, which changes the result only where tied values straddle
    a row's ``k2``, ``round(k1 / 2) + 1`` or ``k1 + 1`` cut.

    Args:
        q_g_dist: query-gallery Euclidean distances.
        q_q_dist: query-query distances.
        g_g_dist: gallery-gallery distances.
        k1: size of the k-reciprocal neighbourhood.
        k2: size of the query expansion (1 disables it); ``k2 <= k1``.
        lambda_value: weight of the original distance in the result.
        chunk_size: rows processed at a time (default: about 128 MiB of float32 per block,
            and at least 1024 rows while that is under 1 GiB).

    Returns:
        Re-ranked distances, float32, numpy if ``q_g_dist`` is numpy, else a tensor on its device.

    Shape:
        - q_g_dist: ``(num_query, num_gallery)``
        - q_q_dist: ``(num_query, num_query)``
        - g_g_dist: ``(num_gallery, num_gallery)``
        - output: ``(num_query, num_gallery)``

    Example:
        >>> import numpy as np
        >>> from fnc.rerank import re_ranking
        >>> x = np.random.default_rng(0).normal(size=(30, 8))
        >>> d = np.linalg.norm(x[:, None] - x[None], axis=2)
        >>> re_ranking(d[:5, 5:], d[:5, :5], d[5:, 5:], k1=6, k2=3).shape
        (5, 25)
    """
    _check_params(k1, k2, lambda_value)
    like_numpy = isinstance(q_g_dist, np.ndarray)
    qg = _as_tensor(q_g_dist, "q_g_dist")
    qq = _as_tensor(q_q_dist, "q_q_dist")
    gg = _as_tensor(g_g_dist, "g_g_dist")
    if qg.ndim != 2 or qq.ndim != 2 or gg.ndim != 2:
        raise ValueError("q_g_dist, q_q_dist and g_g_dist must be 2-D")
    nq, ng = qg.shape
    if nq == 0 or ng == 0:
        raise ValueError(f"empty query or gallery: q_g_dist has shape {tuple(qg.shape)}")
    if qq.shape != (nq, nq) or gg.shape != (ng, ng):
        raise ValueError(
            f"shape mismatch: q_g_dist {tuple(qg.shape)}, q_q_dist {tuple(qq.shape)} "
            f"(expected {(nq, nq)}), g_g_dist {tuple(gg.shape)} (expected {(ng, ng)})"
        )
    if not (qg.device == qq.device == gg.device):
        raise ValueError("q_g_dist, q_q_dist and g_g_dist must be on the same device")
    for x, name in ((qg, "q_g_dist"), (qq, "q_q_dist"), (gg, "g_g_dist")):
        top = _check_finite(x, name)
        if top * top > _F32_MAX:
            row = _first_row_above(x, math.sqrt(_F32_MAX))
            raise ValueError(
                f"{name} row {row} has a distance whose square overflows float32 (largest "
                f"{top:.3g}, limit {math.sqrt(_F32_MAX):.3g}); divide the distances by a constant "
                "first (the re-ranked result does not depend on their scale)"
            )
    dtype = torch.promote_types(torch.promote_types(qg.dtype, qq.dtype), gg.dtype)
    if not dtype.is_floating_point:
        dtype = torch.float64
    qg, qq, gg = qg.to(dtype), qq.to(dtype), gg.to(dtype)
    n = nq + ng
    with torch.no_grad():
        nb = matrix_neighbours(qg, qq, gg, k1, _chunk(chunk_size, n, 16))
        out = k_reciprocal_distance(nb, nq, k1, k2, lambda_value)
    return _output(out, like_numpy)


def _as_list(x: ArrayLike | Sequence[ArrayLike], name: str) -> list[Tensor]:
    items = list(x) if isinstance(x, (list, tuple)) else [x]
    if not items:
        raise ValueError(f"{name} is an empty list")
    out = []
    for i, item in enumerate(items):
        label = f"{name}[{i}]" if isinstance(x, (list, tuple)) else name
        t = _as_tensor(item, label)
        if t.ndim != 2:
            raise ValueError(f"{label} must be 2-D (num_images, dim), got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            t = t.to(torch.float32)
        _check_finite(t, label)
        out.append(t)
    return out


def rerank(
    query: ArrayLike | Sequence[ArrayLike],
    gallery: ArrayLike | Sequence[ArrayLike],
    *,
    k1: int = 75,
    k2: int = 10,
    lambda_value: float = 0.1,
    weights: Sequence[float] | None = None,
    chunk_size: int | None = None,
) -> ArrayLike:
    """k-reciprocal re-ranking from features, optionally fusing several models, in bounded memory.

    With one model ``D`` is the Euclidean distance; with several, ``D = sum_m w_m * D_m``. The
    result equals :func:`re_ranking` applied to ``D``'s query-gallery, query-query and
    gallery-gallery blocks computed in float64, up to float32 rounding of the values.

    No ``N x N`` matrix is built: distances come in row blocks of ``chunk_size`` rows (each pair
    once, the matrix being symmetric, over rows in a fixed shuffled order), keeping per row only
    a few candidates per block, its ``k1 + 17`` nearest and its maximum; a row whose short lists
    could have dropped a neighbour is recomputed in full. The k-reciprocal sets and the Jaccard
    distance are sparse. With one model the blocks are float32 and the neighbours closer to a
    cut than the float32 error band are recomputed in float64, so the neighbour sets are those
    of the float64 distances, and each row's maximum is taken in float64; on CPUs with native
    bfloat16 dot products the gallery blocks are bfloat16 GEMMs that only choose candidates
    (``k1 + 121`` a row, within a proven error band), confirmed in float32. With several models
    the blocks are float64. Exact ties are broken by index, see :func:`re_ranking`. The argument
    that no short list can drop a neighbour is in ``docs/rerank.md``. Tensors on a GPU are
    processed there. ``fnc.rerank`` itself (the package) is callable as this function.

    Args:
        query: query features, or a list of them (one per model).
        gallery: gallery features, or a list in the same model order.
        k1: size of the k-reciprocal neighbourhood; default the paper's 75 (Sec. 4.2), as every
            fnc-reid entry point (:func:`re_ranking` keeps torchreid's 20 / 6 / 0.3).
        k2: size of the query expansion (paper: 10); ``k2 <= k1``.
        lambda_value: weight of the original distance (paper: 0.1).
        weights: one non-negative weight per model (default: all 1).
        chunk_size: rows per block; the default keeps a block near 128 MiB
            (``chunk_size * N`` entries), and at least 1024 rows while that is under 1 GiB.

    Returns:
        Re-ranked distances, float32: numpy for numpy input, else a tensor on the input's device.

    Raises:
        ValueError: NaN or inf in a row (named), mismatched shapes or devices, parameters out of
            range, weights not finite and non-negative, or features so large that squared
            distances overflow float32 (divide them by a constant: the result is scale-free).

    Shape:
        - query: ``(num_query, dim_m)`` per model
        - gallery: ``(num_gallery, dim_m)`` per model
        - output: ``(num_query, num_gallery)``

    Example:
        >>> import torch
        >>> from fnc.rerank import rerank
        >>> g = torch.Generator().manual_seed(0)
        >>> q, gal = torch.randn(4, 16, generator=g), torch.randn(40, 16, generator=g)
        >>> rerank(q, gal, k1=10, k2=3).shape
        torch.Size([4, 40])
        >>> rerank([q, q[:, :8]], [gal, gal[:, :8]], k1=10, k2=3, weights=[1.0, 0.5]).shape
        torch.Size([4, 40])
    """
    _check_params(k1, k2, lambda_value)
    first = query[0] if isinstance(query, (list, tuple)) and query else query
    like_numpy = isinstance(first, np.ndarray)
    qs, gs = _as_list(query, "query"), _as_list(gallery, "gallery")
    if len(qs) != len(gs):
        raise ValueError(f"query has {len(qs)} models but gallery has {len(gs)}")
    if weights is None:
        weights = [1.0] * len(qs)
    weights = [float(w) for w in weights]
    if len(weights) != len(qs):
        raise ValueError(f"{len(weights)} weights given for {len(qs)} models")
    if any(not 0 <= w < math.inf for w in weights) or not any(w > 0 for w in weights):
        raise ValueError(f"weights must be finite, non-negative and not all zero, got {weights}")
    device = qs[0].device
    nq, ng = qs[0].shape[0], gs[0].shape[0]
    if nq == 0 or ng == 0:
        raise ValueError(f"empty query or gallery: {nq} queries, {ng} gallery images")
    for m, (q, g) in enumerate(zip(qs, gs)):
        if q.device != device or g.device != device:
            raise ValueError("all features must be on the same device")
        if q.shape[0] != nq or g.shape[0] != ng:
            raise ValueError(
                f"model {m} has {q.shape[0]} queries and {g.shape[0]} gallery images, model 0 has {nq} and {ng}"
            )
        if q.shape[1] != g.shape[1]:
            raise ValueError(f"model {m}: query dim {q.shape[1]} != gallery dim {g.shape[1]}")
    keep = [i for i, w in enumerate(weights) if w > 0]
    _check_squares_fit([qs[i] for i in keep], [gs[i] for i in keep], [weights[i] for i in keep])
    xs = [Stacked(qs[i], gs[i]) for i in keep]
    weights = [weights[i] for i in keep]
    n = nq + ng
    with torch.no_grad(), _highest_matmul_precision():
        chunk = _chunk(chunk_size, n, 4 if len(xs) == 1 else 8 * (len(xs) + 1))
        nb = feature_neighbours(xs, weights, nq, k1, k2, chunk)
        out = k_reciprocal_distance(nb, nq, k1, k2, lambda_value)
    return _output(out, like_numpy)


def _check_squares_fit(qs: list[Tensor], gs: list[Tensor], weights: list[float]) -> None:
    """Squared (fused) distances must be finite in float32, as the reference casts them."""
    # ||a - b|| <= 2 max ||x||; a float32 norm that overflows is inf and fails the test too.
    norms = [[torch.linalg.vector_norm(x.float(), dim=1) for x in pair] for pair in zip(qs, gs)]
    tops = [max(float(v.max()) for v in pair) for pair in norms]
    bound = sum(2.0 * w * t for w, t in zip(weights, tops))
    if bound * bound <= _F32_MAX and all(4.0 * t * t <= _F32_MAX for t in tops):
        return
    m = max(range(len(tops)), key=lambda i: weights[i] * tops[i])
    side = 0 if float(norms[m][0].max()) >= float(norms[m][1].max()) else 1
    row = int(norms[m][side].argmax())
    where = f"{('query', 'gallery')[side]} row {row}" + (f" of model {m}" if len(qs) > 1 else "")
    size = f"norm {tops[m]:.3g}" if math.isfinite(tops[m]) else "a norm beyond float32 range"
    raise ValueError(
        f"squared distances overflow float32: {where} has {size}, so a squared distance can "
        f"reach {bound * bound:.3g} (float32 max {_F32_MAX:.3g}); divide the features by a "
        "constant first (the re-ranked result does not depend on their scale)"
    )


class _highest_matmul_precision:
    """TF32 would void the float32 error band the exactness argument rests on."""

    def __enter__(self) -> None:
        self.prev = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")

    def __exit__(self, *exc: object) -> None:
        torch.set_float32_matmul_precision(self.prev)
