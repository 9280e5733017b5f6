"""Re-ID rank metrics: mAP, CMC and mINP under the VeRi-776 / Market and AI City protocols.

``veri`` matches torchreid's ``evaluate_rank`` (``use_metric_cuhk03=False``); ``aic`` follows the
CityFlow-ReID / AI City Challenge evaluation (ranked list cut at 100, nothing removed).
Vectorised in torch: no per-query Python loop and no full sort of the distance matrix.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

ArrayLike = np.ndarray | Tensor

#: The evaluation protocols :func:`evaluate` knows.
PROTOCOLS = ("veri", "aic")

# AI City Challenge track 2 scores the first 100 entries of each ranked list.
_AIC_TOP = 100
# Above this many gathered thresholds per matrix entry, _positions searches the whole matrix.
_DENSE_RATIO = 2


# eq=False: the generated __eq__ would compare the cmc arrays ambiguously.
@dataclass(frozen=True, eq=False)
class EvalResult:
    """Scores averaged over the queries that have at least one valid match.

    Attributes:
        mAP: mean average precision (``aic``: mAP@100).
        cmc: ``cmc[k]`` is the fraction of queries with a match within the first ``k + 1``.
        mINP: mean inverse negative penalty (Ye et al., 2021): ``num_matches / rank_of_last``.
        num_valid: number of queries scored.
    """

    mAP: float
    cmc: np.ndarray
    mINP: float
    num_valid: int

    @property
    def rank1(self) -> float:
        return float(self.cmc[0])

    @property
    def rank5(self) -> float:
        return float(self.cmc[min(4, len(self.cmc) - 1)])

    @property
    def rank10(self) -> float:
        return float(self.cmc[min(9, len(self.cmc) - 1)])


def _vector(x: ArrayLike, n: int, name: str) -> Tensor:
    if x is None:
        raise TypeError(f"{name} is None; pass one integer per row (cameras: 0 for all if unknown)")
    if isinstance(x, Tensor):
        t = x.detach().cpu()
    else:
        array = np.asarray(x)
        if not (
            np.issubdtype(array.dtype, np.integer)
            or np.issubdtype(array.dtype, np.bool_)
            or np.issubdtype(array.dtype, np.floating)
        ):
            raise TypeError(
                f"{name} must hold integers, got dtype {array.dtype}; map string ids to integers first "
                "(e.g. np.unique(ids, return_inverse=True)[1])"
            )
        t = torch.as_tensor(array)
    if t.ndim != 1 or t.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), got {tuple(t.shape)}")
    return t


def _positions(dist: Tensor, rel: Tensor, kept: Tensor) -> tuple[Tensor, Tensor]:
    """1-based positions of each query's matches in its ranked list of kept entries.

    Returns ``(pos, count)``: ``pos`` is ``(num_query, max_matches)``, ascending, padded with a
    large value; ``count`` the number of matches per query. Ties are broken by gallery index.
    """
    nq, ng = dist.shape
    r, c = rel.nonzero(as_tuple=True)
    count = torch.bincount(r, minlength=nq)
    width = max(int(count.max()), 1)
    slot = torch.arange(r.numel()) - (count.cumsum(0) - count)[r]
    thr = torch.full((nq, width), torch.inf, dtype=dist.dtype)
    thr[r, slot] = dist[r, c]
    thr = thr.sort(dim=1).values
    # Only kept entries up to the last match distance can precede a match: gather them (the
    # matches included) instead of bucketing the whole matrix.
    last = thr.gather(1, (count - 1).unsqueeze(1))
    cand = dist <= last
    if not bool(kept.all()):
        cand &= kept
    m = int(torch.count_nonzero(cand))
    # above: how many match distances are <= an entry's distance; entry g precedes the j-th
    # match (1-based) exactly when above < j, barring ties. An entry equal to a match distance
    # sits on the threshold just below its bucket (on_thr).
    if m * width > _DENSE_RATIO * nq * ng and dist.dtype == torch.float32 and ng < 2**31:
        # Most entries precede some last match (a weak model): sorting every row outright is
        # cheaper than placing each entry among the thresholds.
        return _positions_by_sort(dist, rel, kept, count, width)
    if m * width > _DENSE_RATIO * nq * ng:
        # As above for other dtypes: search the whole matrix at once rather than gather each
        # entry's thresholds.
        dist = dist.contiguous()
        above = torch.searchsorted(thr, dist, right=True)
        above.masked_fill_(~cand, width)
        hist = torch.bincount(
            (above + (torch.arange(nq) * (width + 1)).unsqueeze(1)).view(-1),
            minlength=nq * (width + 1),
        )
        on_thr = thr.gather(1, (above - 1).clamp_(min=0)) == dist
        on_thr &= cand
        on_thr &= above > 0
        on_count = on_thr.sum(1)
        del above, on_thr, cand
    else:
        cr, cc = cand.nonzero(as_tuple=True)
        del cand
        v = dist[cr, cc]
        above = torch.empty_like(cr)
        step = max(1, (1 << 22) // width)
        for a in range(0, cr.numel(), step):
            above[a : a + step] = torch.searchsorted(
                thr[cr[a : a + step]], v[a : a + step].unsqueeze(1), right=True
            ).squeeze(1)
        on_thr = (thr.reshape(-1)[cr * width + (above - 1).clamp(min=0)] == v) & (above > 0)
        hist = torch.bincount(cr * (width + 1) + above, minlength=nq * (width + 1))
        on_count = torch.bincount(cr[on_thr], minlength=nq)
    pos = hist.view(nq, width + 1)[:, :width].cumsum(1) + 1
    pos = torch.where(torch.arange(width) < count.unsqueeze(1), pos, torch.iinfo(torch.long).max)
    # Rows where a kept entry ties with a match distance (other than the match itself) are
    # redone with a stable sort, so that ties are broken by gallery index as documented.
    tied_matches = ((thr[:, 1:] == thr[:, :-1]) & (thr[:, 1:] < torch.inf)).any(1)
    tied = (on_count > count) | tied_matches
    for i in tied.nonzero().squeeze(1).tolist():
        order = torch.sort(dist[i], stable=True).indices
        keep_order = order[kept[i, order]]
        hits = rel[i, keep_order].nonzero().squeeze(1) + 1
        pos[i, : hits.numel()] = hits
    return pos, count


def _sort_keys(dist: Tensor, bits: int, cols: Tensor) -> Tensor:
    """int64 keys ordered like ``(dist, col)``: the distance's bits above the column index."""
    lo = float(dist.min()) if dist.numel() else 0.0
    if lo < 0:
        # IEEE floats order like sign-magnitude integers: flip the magnitude of negatives
        # (+ 0.0 first turns -0.0 into +0.0, which must tie with it).
        b = (dist + 0.0).view(torch.int32)
        key = (b ^ ((b >> 31) & 0x7FFFFFFF)).to(torch.int64)
    else:
        key = dist.view(torch.int32).to(torch.int64)
        if lo == 0:
            key.clamp_(min=0)  # -0.0 (the only negative bit pattern here) ties with +0.0
    key.bitwise_left_shift_(bits)
    return key.bitwise_or_(cols)


def _positions_by_sort(dist: Tensor, rel: Tensor, kept: Tensor, count: Tensor, width: int) -> tuple[Tensor, Tensor]:
    """:func:`_positions` for float32 distances by a full sort of every row.

    Each distance's bits, mapped to integers in the same order, are packed above its gallery
    index, so one integer sort orders a row by (distance, index), ties included; a match's
    rank is then where its own key falls in its sorted row, less the removed entries before
    it. numpy's integer sort is SIMD and releases the GIL: row chunks are sorted in threads.
    """
    nq, ng = dist.shape
    bits = max(1, (ng - 1).bit_length())
    key = _sort_keys(dist.contiguous(), bits, torch.arange(ng))
    arr = key.numpy()
    workers = max(1, min(torch.get_num_threads(), nq))
    step = -(-nq // workers)
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda a: arr[a : a + step].sort(axis=1), range(0, nq, step)))

    def ranks(mask: Tensor) -> Tensor:
        # 0-based sorted positions of the entries in mask, ascending in an (nq, max per row)
        # grid; padding keys are the largest int64, so padding positions are ng.
        r, c = mask.nonzero(as_tuple=True)
        n = torch.bincount(r, minlength=nq)
        w = max(int(n.max()) if r.numel() else 0, 1)
        slot = torch.arange(r.numel()) - (n.cumsum(0) - n)[r]
        q = torch.full((nq, w), torch.iinfo(torch.long).max, dtype=torch.long)
        q[r, slot] = _sort_keys(dist[r, c], bits, c)
        return torch.searchsorted(key, q.sort(dim=1).values)

    pos = ranks(rel)
    if not bool(kept.all()):
        # Rank among kept entries: less the removed ones sorted before.
        pos -= torch.searchsorted(ranks(~kept), pos)
    pos += 1
    pos.masked_fill_(torch.arange(width) >= count.unsqueeze(1), torch.iinfo(torch.long).max)
    return pos, count


def evaluate(
    distmat: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    *,
    protocol: str = "veri",
    max_rank: int = 50,
) -> EvalResult:
    """mAP, CMC and mINP of a query-gallery distance matrix.

    Protocols:
        - ``veri`` (VeRi-776, also Market-1501): gallery entries with the query's id *and*
          camera are removed; AP is over the whole remaining list. Equals torchreid's
          ``evaluate_rank(..., use_metric_cuhk03=False)``.
        - ``aic`` (CityFlow-ReID / AI City): nothing is removed and the list is cut at 100:
          ``AP@100 = sum_{k <= 100} P(k) rel(k) / min(R, 100)`` with ``R`` the number of
          gallery entries of the query's id, as in the AI City Challenge evaluation. CMC and
          mINP use the full uncut list.

    Queries with no valid match are skipped with a warning; a ``ValueError`` is raised if none
    is left. Equal distances are ordered by gallery index.

    Args:
        distmat: distances, smaller is more similar.
        q_pids, g_pids: identities of queries and gallery images.
        q_camids, g_camids: cameras of queries and gallery images.
        protocol: ``"veri"`` or ``"aic"``.
        max_rank: length of the CMC curve (capped at the gallery size).

    Returns:
        An :class:`EvalResult`.

    Shape:
        - distmat: ``(num_query, num_gallery)``
        - q_pids, q_camids: ``(num_query,)``; g_pids, g_camids: ``(num_gallery,)``
        - cmc: ``(min(max_rank, num_gallery),)``

    Example:
        >>> import numpy as np
        >>> from fnc.evaluation import evaluate
        >>> d = np.array([[0.1, 0.5, 0.9], [0.8, 0.2, 0.3]])
        >>> r = evaluate(d, np.array([1, 2]), np.array([1, 2, 2]), np.array([0, 0]),
        ...              np.array([1, 1, 1]))
        >>> round(r.mAP, 4), r.rank1
        (1.0, 1.0)
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected 'veri' or 'aic'")
    if not isinstance(distmat, Tensor):
        distmat = np.asarray(distmat)
        if not (np.issubdtype(distmat.dtype, np.number) or np.issubdtype(distmat.dtype, np.bool_)):
            raise TypeError(f"distmat must be a numeric array, got dtype {distmat.dtype}")
    dist = torch.as_tensor(distmat.detach().cpu() if isinstance(distmat, Tensor) else distmat)
    if dist.ndim != 2:
        raise ValueError(f"distmat must be 2-D, got shape {tuple(dist.shape)}")
    nq, ng = dist.shape
    if nq == 0 or ng == 0:
        raise ValueError(f"empty query or gallery: distmat has shape {tuple(dist.shape)}")
    if not dist.is_floating_point():
        dist = dist.to(torch.float64)
    # One multi-threaded pass: min and max propagate NaN and reach any infinity.
    lo, hi = torch.aminmax(dist)
    if not (bool(torch.isfinite(lo)) and bool(torch.isfinite(hi))):
        bad = ~torch.isfinite(dist)
        raise ValueError(f"distmat row {int(bad.any(1).nonzero()[0])} contains NaN or inf")
    if int(max_rank) != max_rank or max_rank < 1:
        raise ValueError(f"max_rank must be a positive integer, got {max_rank}")
    qp, gp = _vector(q_pids, nq, "q_pids"), _vector(g_pids, ng, "g_pids")
    qc, gc = _vector(q_camids, nq, "q_camids"), _vector(g_camids, ng, "g_camids")

    same = gp.unsqueeze(0) == qp.unsqueeze(1)
    if protocol == "veri":
        kept = ~(same & (gc.unsqueeze(0) == qc.unsqueeze(1)))
        rel = same & kept
    else:
        kept = torch.ones_like(same)
        rel = same
    valid = rel.any(1)
    num_valid = int(valid.sum())
    if num_valid == 0:
        raise ValueError("no query has a valid match in the gallery")
    if num_valid < nq:
        warnings.warn(f"{nq - num_valid} of {nq} queries have no valid match and are skipped", stacklevel=2)
        dist, rel, kept = dist[valid], rel[valid], kept[valid]

    pos, count = _positions(dist, rel, kept)
    j = torch.arange(1, pos.shape[1] + 1, dtype=torch.float64)
    real = j <= count.unsqueeze(1)
    prec = torch.where(real, j / pos.to(torch.float64), 0.0)
    if protocol == "veri":
        ap = prec.sum(1) / count
    else:
        ap = torch.where(pos <= _AIC_TOP, prec, 0.0).sum(1) / count.clamp(max=_AIC_TOP)
    last = pos.gather(1, (count - 1).unsqueeze(1)).squeeze(1)
    inp = count.to(torch.float64) / last
    max_rank = min(int(max_rank), ng)
    first = pos[:, 0]
    cmc = (first.unsqueeze(1) <= torch.arange(1, max_rank + 1)).to(torch.float64).mean(0)
    return EvalResult(mAP=float(ap.mean()), cmc=cmc.numpy(), mINP=float(inp.mean()), num_valid=num_valid)
