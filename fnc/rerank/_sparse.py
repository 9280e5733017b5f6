"""Sparse k-reciprocal encoding (Zhong et al., CVPR 2017) over precomputed neighbour lists.

Everything here works on index/value tensors of size ``O(N * k)``; the only dense array is the
``(num_query, num_gallery)`` result. The steps mirror the reference implementation shipped by
torchreid and fast-reid (k-reciprocal sets, the 2/3 expansion rule, Gaussian weights, query
expansion over the ``k2`` nearest rows, Jaccard distance through an inverted index) so that the
outputs agree with it to float32 rounding.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

# Elements per temporary in the gather/scatter steps: bounds peak memory at a few hundred MiB.
_BUDGET = 1 << 23
# Product entries per row range in the 2/3 expansion (~24 bytes each while the product exists).
_EXPAND_BUDGET = 1 << 21
# (query, gallery) pairs met per step of the sparse Jaccard join (~30 bytes each while held).
_JOIN_BUDGET = 1 << 21
# The dense Jaccard join is used when its min-sum count is at most this many times the pairs.
_DENSE_JOIN = 16
# Query entries whose gallery runs differ in length by less than this factor share a grid.
_PAD_GROWTH = 1.25
# Largest neighbour-graph bitmap (n^2 / 8 bytes) used for reciprocity tests.
_BITMAP_BYTES = 1 << 28


def _sort_codes(code: Tensor, bound: int) -> tuple[Tensor, Tensor]:
    """``code.sort()`` for non-negative integer codes below ``bound``; ties keep their order.

    On the CPU the position is packed into the low bits and the packed keys are sorted by
    numpy's (SIMD, single-threaded) sort: several times faster than a parallel torch argsort
    of int64 keys, and unaffected by other processes competing for the cores.
    """
    m = code.numel()
    bits = max(1, (m - 1).bit_length())
    if code.device.type != "cpu" or m < 2 or max(bound - 1, 1).bit_length() + bits > 62:
        return torch.sort(code, stable=True)
    packed = (code.reshape(-1).to(torch.int64) << bits) | torch.arange(m, dtype=torch.int64)
    packed = torch.from_numpy(np.sort(packed.numpy()))
    return packed >> bits, packed & ((1 << bits) - 1)


def _sorted(code: Tensor) -> Tensor:
    """Sorted values of an integer code tensor."""
    if code.device.type != "cpu":
        return code.sort().values
    return torch.from_numpy(np.sort(code.reshape(-1).numpy()))


def _unique(code: Tensor) -> Tensor:
    s = _sorted(code)
    if s.numel() < 2:
        return s
    keep = torch.ones(s.numel(), dtype=torch.bool, device=s.device)
    keep[1:] = s[1:] != s[:-1]
    return s[keep]


@dataclass
class Neighbours:
    """What the sparse stage needs from the (never materialised) ``N x N`` distance matrix.

    ``N = num_query + num_gallery``; row ``i`` of the normalised matrix ``B`` is the squared
    distance row divided by its maximum, as in the reference.

    Attributes:
        nbr: ``(N, K1)`` indices, ``K1 = min(k1 + 1, N)``. For every cut ``c`` in
            ``{min(k2, N), min(round(k1 / 2) + 1, N), K1}``, ``nbr[i, :c]`` holds the first ``c``
            entries of row ``i`` sorted by ``(B[i, j], j)``; the order inside a cut is free.
        nval: ``(N, K1)`` float32 values ``B[i, nbr[i, t]]``.
        qg: ``(num_query, num_gallery)`` float32 block ``B[:num_query, num_query:]``.
        pair_values: ``(rows, cols) -> B[rows, cols]`` as float32, for entries outside ``nbr``.
    """

    nbr: Tensor
    nval: Tensor
    qg: Tensor
    pair_values: Callable[[Tensor, Tensor], Tensor]


def _isin_sorted(x: Tensor, ref_sorted: Tensor) -> Tensor:
    if ref_sorted.numel() == 0:
        return torch.zeros_like(x, dtype=torch.bool)
    pos = torch.searchsorted(ref_sorted, x).clamp_(max=ref_sorted.numel() - 1)
    return ref_sorted[pos] == x


def _reciprocal_mask(nbr: Tensor) -> Tensor:
    """``mask[i, t]`` is True when ``i`` is itself among the neighbours of ``nbr[i, t]``."""
    n, k = nbr.shape
    words = (n + 63) // 64
    if n * words * 8 <= _BITMAP_BYTES:
        # The neighbour graph as an n x n bitmap: one gather per lookup instead of a binary
        # search. A row's neighbours are distinct, so adding their bits into a word ORs them.
        bits = torch.zeros(n * words, dtype=torch.int64, device=nbr.device)
        word = torch.arange(n, device=nbr.device).unsqueeze(1) * words + nbr // 64
        one = torch.ones((), dtype=torch.int64, device=nbr.device)
        bits.index_add_(0, word.reshape(-1), torch.bitwise_left_shift(one, nbr % 64).reshape(-1))
        i = torch.arange(n, device=nbr.device).unsqueeze(1)
        back = bits.index_select(0, (nbr * words + i // 64).reshape(-1)).view(n, k)
        return torch.bitwise_right_shift(back, i % 64).bitwise_and_(1).bool()
    rows = torch.arange(n, device=nbr.device).unsqueeze(1).expand(n, k)
    forward = _sorted((rows * n + nbr).reshape(-1))
    backward = (nbr * n + rows).reshape(-1)
    return _isin_sorted(backward, forward).view(n, k)


def _csr(
    rows: Tensor, cols: Tensor, n: int, vals: Tensor | None = None, presorted: bool = False,
    n_rows: int | None = None,
) -> Tensor:
    """An ``n_rows x n`` (default ``n x n``) CSR matrix, columns sorted within rows; ones where
    no values are given.

    ``presorted`` says the entries already come sorted by row, then column.
    """
    n_rows = n if n_rows is None else n_rows
    if presorted:
        code, order = rows * n + cols, None
    else:
        code, order = _sort_codes(rows * n + cols, n_rows * n)
    if vals is None:
        vals = torch.ones(code.numel(), dtype=torch.float32, device=rows.device)
    elif order is not None:
        vals = vals[order]
    crow = torch.zeros(n_rows + 1, dtype=torch.long, device=rows.device)
    crow[1:] = torch.bincount(code // n, minlength=n_rows).cumsum(0)
    with warnings.catch_warnings():
        # sparse CSR is flagged as beta; the products used here are stable since torch 2.0.
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, code % n, vals, size=(n_rows, n))


def _csr_codes(m: Tensor, n: int, n_rows: int | None = None) -> tuple[Tensor, Tensor]:
    """Sorted ``row * n + col`` codes of a CSR matrix's stored entries, and their values."""
    n_rows = n if n_rows is None else n_rows
    crow, col, val = m.crow_indices(), m.col_indices(), m.values()
    rows = torch.repeat_interleave(torch.arange(n_rows, device=col.device), crow[1:] - crow[:-1])
    code, order = _sort_codes(rows * n + col, n_rows * n)
    return code, val[order]


def _spmm(a: Tensor, b: Tensor) -> Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return a @ b


def _expansion(nbr: Tensor, half: Tensor) -> tuple[Tensor, Tensor]:
    """Rows and columns (sorted by row, then column) of the support of ``V``.

    ``nbr`` holds each row's ``k1 + 1`` nearest and ``half`` its ``round(k1 / 2) + 1``
    nearest, both sorted by index within rows, so that every list derived from them comes
    out sorted without a sort.
    """
    n = nbr.shape[0]
    recip = _reciprocal_mask(nbr)
    k_rows = recip.nonzero(as_tuple=True)[0]
    k_cols = nbr[recip]
    half_mask = _reciprocal_mask(half)
    h_rows = half_mask.nonzero(as_tuple=True)[0]
    h_cols = half[half_mask]
    half_size = half_mask.sum(1).to(torch.float64)
    h_t = _csr(h_cols, h_rows, n)
    h = _csr(h_rows, h_cols, n, presorted=True)
    k_code = k_rows * n + k_cols
    k_ptr = _row_ptr(k_rows, n)
    parts = [k_code]
    # Row ranges whose products stay near _EXPAND_BUDGET entries before merging: on hard features
    # the sets barely overlap and some rows are in many H(c) (hubs), so R @ H^T over all rows at
    # once would hold sum_{j in R(i)} |{c : j in H(c)}| entries for every row i.
    in_h = torch.bincount(h_cols, minlength=n)
    work = torch.zeros(n, dtype=torch.long, device=nbr.device).index_add_(0, k_rows, in_h[k_cols])
    csum = work.cumsum(0)
    a = 0
    while a < n:
        base = int(csum[a - 1]) if a > 0 else 0
        b = int(torch.searchsorted(csum, torch.tensor(base + _EXPAND_BUDGET,
                                                      device=csum.device)))
        b = min(max(b, a + 1), n)
        s, e = int(k_ptr[a]), int(k_ptr[b])
        if s == e:
            a = b
            continue
        r, c = k_rows[s:e] - a, k_cols[s:e]
        m = b - a
        # |H(c) & R(i)| for every pair at once: (R @ H^T)[i, c] counts the shared members.
        shared_code, shared = _csr_codes(_spmm(_csr(r, c, n, presorted=True, n_rows=m), h_t), n,
                                         n_rows=m)
        code = r * n + c
        pos = torch.searchsorted(shared_code, code).clamp_(max=max(shared_code.numel() - 1, 0))
        count = torch.where(shared_code[pos] == code, shared[pos], torch.zeros_like(shared[pos]))
        del shared_code, shared
        # Same float64 comparison as the reference: len(intersection) > 2/3 * len(set).
        take = count.to(torch.float64) > (2.0 / 3.0) * half_size[c]
        if bool(take.any()):
            added, _ = _csr_codes(
                _spmm(_csr(r[take], c[take], n, presorted=True, n_rows=m), h), n, n_rows=m
            )
            parts.append(added + a * n)
        a = b
    codes = _unique(torch.cat(parts))
    return codes // n, codes % n


def _lookup_values(nbr: Tensor, nval: Tensor, nb: Neighbours, rows: Tensor, cols: Tensor) -> Tensor:
    """``B[rows, cols]``: from the neighbour lists (``nbr`` sorted within rows), else computed."""
    n = nbr.shape[0]
    code = (torch.arange(n, device=rows.device).unsqueeze(1) * n + nbr).reshape(-1)
    val = nval.reshape(-1)
    q = rows * n + cols
    pos = torch.searchsorted(code, q).clamp_(max=code.numel() - 1)
    found = code[pos] == q
    out = val[pos]
    if not bool(found.all()):
        miss = ~found
        out[miss] = nb.pair_values(rows[miss], cols[miss])
    return out


def _row_ptr(rows: Tensor, n: int) -> Tensor:
    counts = torch.bincount(rows, minlength=n)
    ptr = torch.zeros(n + 1, dtype=torch.long, device=rows.device)
    ptr[1:] = counts.cumsum(0)
    return ptr


def _query_expansion(rows: Tensor, cols: Tensor, vals: Tensor, nbr: Tensor, k2: int, n: int):
    """``V_qe[i] = mean(V[j] for j in the k2 nearest of i)``, sparse.

    ``rows, cols`` come sorted by row, then column; the output is grouped by row, its columns
    in no particular order (nothing downstream needs them sorted).
    """
    k2e = min(k2, n)
    src = nbr[:, :k2e]
    avg = _csr(torch.arange(n, device=nbr.device).repeat_interleave(k2e), src.reshape(-1), n)
    m = _spmm(avg, _csr(rows, cols, n, vals, presorted=True))
    crow = m.crow_indices()
    out_rows = torch.repeat_interleave(torch.arange(n, device=nbr.device), crow[1:] - crow[:-1])
    return out_rows, m.col_indices(), m.values() / k2e


def k_reciprocal_distance(
    nb: Neighbours, num_query: int, k1: int, k2: int, lambda_value: float
) -> Tensor:
    """Re-ranked ``(num_query, num_gallery)`` float32 distance from neighbour lists.

    Args:
        nb: neighbour lists and values of all ``N`` rows.
        num_query: the first ``num_query`` rows are queries, the rest gallery.
        k1, k2, lambda_value: the k-reciprocal parameters.

    Returns:
        ``jaccard * (1 - lambda_value) + B[q, g] * lambda_value``.
    """
    n = nb.nbr.shape[0]
    ng = n - num_query
    device = nb.nbr.device
    # np.around(k1 / 2.) in the reference rounds half to even, as Python's round does.
    h1 = min(int(round(k1 / 2.0)) + 1, n)
    # Each cut is a set: sorted by index, the lists below need no further sorting.
    nbr, order = nb.nbr.sort(dim=1)
    rows, cols = _expansion(nbr, nb.nbr[:, :h1].sort(dim=1).values)
    dist = _lookup_values(nbr, nb.nval.gather(1, order), nb, rows, cols)
    del nbr, order
    weight = torch.exp(-dist)
    total = torch.zeros(n, dtype=torch.float32, device=device).index_add_(0, rows, weight)
    vals = weight / total.index_select(0, rows)
    if k2 != 1:
        rows, cols, vals = _query_expansion(rows, cols, vals, nb.nbr, k2, n)

    # Entries come grouped by row, queries first: the two parts are slices.
    split = int(torch.searchsorted(rows, torch.tensor([num_query], device=device)).item())
    # Inverted index over gallery rows only: query columns of the Jaccard matrix are discarded.
    g_rows, g_cols, g_vals = rows[split:], cols[split:], vals[split:]
    order = _sort_codes(g_cols * n + g_rows, n * n)[1]
    g_rows, g_cols, g_vals = (t.index_select(0, order) for t in (g_rows, g_cols, g_vals))
    col_ptr = _row_ptr(g_cols, n)
    col_len = col_ptr[1:] - col_ptr[:-1]

    q_rows, q_cols, q_vals = rows[:split], cols[:split], vals[:split]
    row_ptr = _row_ptr(q_rows, num_query)
    work = torch.zeros(num_query, dtype=torch.long, device=device).index_add_(
        0, q_rows, col_len[q_cols]
    )
    csum = work.cumsum(0)
    used = _unique(q_cols)
    pairs = int(csum[-1].item())
    if (num_query + ng) * used.numel() <= _BUDGET and num_query * ng * used.numel() <= (
        _DENSE_JOIN * pairs
    ):
        # Small or crowded problems: V is nearly dense, and a dense min-sum over the columns
        # the queries use costs less than expanding every (query, gallery) pair.
        return _dense_join(
            q_rows, q_cols, q_vals, g_rows - num_query, g_cols, g_vals, used, num_query, ng, nb,
            lambda_value,
        )
    # int32 indices halve the traffic of the pair arrays, the bulk of the work.
    idx_t = torch.int32 if num_query * ng < 2**31 and q_cols.numel() < 2**31 else torch.long
    g_rows = (g_rows - num_query).to(idx_t)
    q_off = (q_rows * ng).to(idx_t)
    col_start = col_ptr[:-1].to(idx_t)
    # One zero-valued sentinel entry at the end: padded pairs read it and add min(v, 0) = 0.
    sentinel = g_vals.numel()
    g_vals = torch.cat([g_vals, g_vals.new_zeros(1)])
    g_rows = torch.cat([g_rows, g_rows.new_zeros(1)])
    temp_min = torch.zeros(num_query, ng, dtype=torch.float32, device=device)
    flat_out = temp_min.view(-1)
    a = 0
    while a < num_query:
        base = int(csum[a - 1].item()) if a > 0 else 0
        b = int(torch.searchsorted(csum, torch.tensor(base + _JOIN_BUDGET,
                                                      device=device)).item())
        b = min(max(b, a + 1), num_query)
        s, e = int(row_ptr[a].item()), int(row_ptr[b].item())
        qc = q_cols[s:e]
        length = col_len[qc]
        # Query entry t meets the gallery entries of its column, a contiguous run of
        # ``length[t]`` from ``col_start``. Entries of similar length are handled together as
        # an (entries x longest) grid: the query side broadcasts instead of being gathered per
        # pair, and short runs are padded with the sentinel.
        lens, order = torch.sort(length)
        bucket = torch.floor(torch.log(lens.clamp(min=1).double()) / math.log(_PAD_GROWTH))
        bucket[lens == 0] = -1
        edges = torch.unique_consecutive(bucket, return_counts=True)
        ends = edges[1].cumsum(0).tolist()
        starts = [0] + ends[:-1]
        for kind, lo, hi in zip(edges[0].tolist(), starts, ends):
            if kind < 0:
                continue  # columns no gallery row uses
            idx = order[lo:hi]
            width = int(lens[hi - 1].item())
            ar = torch.arange(width, dtype=idx_t, device=device)
            pos = col_start[qc.index_select(0, idx)].unsqueeze(1) + ar
            pos = torch.where(ar < length.index_select(0, idx).unsqueeze(1).to(idx_t), pos,
                              sentinel).view(-1)
            # index_select, unlike advanced indexing, gathers with int32 indices without
            # widening them: several times faster on these streams of millions of pairs.
            m = torch.minimum(g_vals.index_select(0, pos).view(-1, width),
                              q_vals[s:e].index_select(0, idx).unsqueeze(1))
            flat = g_rows.index_select(0, pos).view(-1, width)
            flat += q_off[s:e].index_select(0, idx).unsqueeze(1)
            del pos
            flat_out.index_add_(0, flat.view(-1), m.view(-1))
            del flat, m
        a = b
    return _blend(temp_min, nb, lambda_value)


def _blend(temp_min: Tensor, nb: Neighbours, lambda_value: float) -> Tensor:
    """``jaccard * (1 - lambda) + B * lambda`` with ``jaccard = 1 - t / (2 - t)``, in place."""
    den = torch.sub(2.0, temp_min)
    temp_min.div_(den).neg_().add_(1.0)
    del den
    return temp_min.mul_(1 - lambda_value).add_(nb.qg, alpha=lambda_value)


def _dense_join(
    q_rows: Tensor, q_cols: Tensor, q_vals: Tensor, g_rows: Tensor, g_cols: Tensor,
    g_vals: Tensor, used: Tensor, num_query: int, ng: int, nb: Neighbours, lambda_value: float,
) -> Tensor:
    """``sum_c min(V[q, c], V[g, c])`` with ``V`` dense over the columns ``used`` by queries."""
    device = q_vals.device
    w = used.numel()
    vq = torch.zeros(num_query, w, dtype=torch.float32, device=device)
    vq[q_rows, torch.searchsorted(used, q_cols)] = q_vals
    vg = torch.zeros(ng, w, dtype=torch.float32, device=device)
    keep = _isin_sorted(g_cols, used)
    vg[g_rows[keep], torch.searchsorted(used, g_cols[keep])] = g_vals[keep]
    temp_min = torch.empty(num_query, ng, dtype=torch.float32, device=device)
    step = max(1, _BUDGET // max(ng * w, 1))
    for a in range(0, num_query, step):
        b = min(a + step, num_query)
        temp_min[a:b] = torch.minimum(vq[a:b, None, :], vg[None, :, :]).sum(-1)
    return _blend(temp_min, nb, lambda_value)
