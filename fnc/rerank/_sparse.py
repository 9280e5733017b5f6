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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

# Elements per temporary in the gather/scatter steps and the dense join, and per membership
# block of the 2/3 expansion: bounds peak memory at a few hundred MiB.
_BUDGET = 1 << 23
# Membership tests per row range of the 2/3 expansion (~10 bytes each while the range is held).
_EXPAND_BUDGET = 1 << 21
# (query, gallery) pairs met per step of the sparse Jaccard join: its three reused buffers
# (16 bytes a pair) stay in cache.
_JOIN_BUDGET = 1 << 18
# Query entries from which the sparse join runs in two threads (below, thread start-up outweighs it).
_PARALLEL_JOIN = 1 << 16
# The dense Jaccard join is used when its min-sum count is at most this many times the pairs.
_DENSE_JOIN = 16
# Columns whose gallery runs differ in length by less than this factor share a padded grid.
_PAD_GROWTH = 1.1
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
    rows: Tensor,
    cols: Tensor,
    n: int,
    vals: Tensor | None = None,
    presorted: bool = False,
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


def _spmm(a: Tensor, b: Tensor) -> Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return a @ b


def _ranges(work: Tensor, budget: int, max_rows: int) -> list[tuple[int, int]]:
    """Consecutive row ranges ``(a, b)`` of at most ``max_rows`` rows whose ``work`` sums to at
    most ``budget`` (a range has at least one row, which may exceed the budget alone)."""
    n = work.numel()
    csum = work.cumsum(0)
    out, a = [], 0
    while a < n:
        base = int(csum[a - 1]) if a > 0 else 0
        b = int(torch.searchsorted(csum, torch.tensor([base + budget], device=csum.device), right=True))
        b = min(max(b, a + 1), a + max(1, max_rows), n)
        out.append((a, b))
        a = b
    return out


def _expansion(nbr: Tensor, half: Tensor) -> tuple[Tensor, Tensor]:
    """Rows and columns (sorted by row, then column) of the support of ``V``.

    ``nbr`` holds each row's ``k1 + 1`` nearest and ``half`` its ``round(k1 / 2) + 1``
    nearest, both sorted by index within rows. The support of row ``i`` is its k-reciprocal set
    ``R(i)`` and every half set ``H(c)``, ``c`` in ``R(i)``, with
    ``|H(c) & R(i)| > 2/3 |H(c)|``. ``H(c)`` is kept padded, as the row ``half[c]`` whose
    non-reciprocal entries point at a column never set, so each test is one gather from a dense
    membership block of ``R``.
    """
    n, h = half.shape
    device = nbr.device
    recip = _reciprocal_mask(nbr)
    k_rows = recip.nonzero(as_tuple=True)[0]
    k_cols = nbr[recip]
    del recip
    half_mask = _reciprocal_mask(half)
    # Same float64 comparison as the reference: len(intersection) > 2/3 * len(set).
    limit = (2.0 / 3.0) * half_mask.sum(1).to(torch.float64)
    # Membership rows are n + 1 wide: column n is never set, and the padding of a half set
    # (its non-reciprocal entries) points there.
    w = n + 1
    half = half.masked_fill(~half_mask, n)
    del half_mask
    k_ptr = _row_ptr(k_rows, n)
    rows_out, cols_out = [], []
    ranges = _ranges((k_ptr[1:] - k_ptr[:-1]) * h, _EXPAND_BUDGET, _BUDGET // w)
    # One membership block for every range, cleared where it was set, and the support
    # collected from the entries themselves: a fresh block per range, zeroed and then scanned
    # for its members, made this step O(n^2).
    member = torch.zeros(max(b - a for a, b in ranges) * w, dtype=torch.bool, device=device)
    for a, b in ranges:
        s, e = int(k_ptr[a]), int(k_ptr[b])
        if s == e:
            continue
        pi, pc = k_rows[s:e] - a, k_cols[s:e]
        own = pi * w + pc
        member[own] = True
        flat = half.index_select(0, pc).add_((pi * w).unsqueeze(1))
        count = torch.take(member, flat).sum(1, dtype=torch.int32)
        take = (count.to(torch.float64) > limit[pc]).nonzero().squeeze(1)
        add = flat[take].view(-1)
        # Only what the row's own set lacks: on clustered features the taken half sets lie
        # almost wholly inside it, and sorting them all was most of this step.
        add = add[~torch.take(member, add)]
        member[own] = False
        add = add[add % w < n]
        if add.numel():
            # The row's own set and what the half sets add; sorted codes are (row, column) order.
            code = _unique(torch.cat([own, add]))
            rows_out.append(code // w + a)
            cols_out.append(code % w)
        else:
            rows_out.append(k_rows[s:e])
            cols_out.append(pc)
        del flat
    if not rows_out:
        return k_rows, k_cols
    return torch.cat(rows_out), torch.cat(cols_out)


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


def _csr_parts(m: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    return m.crow_indices(), m.col_indices(), m.values()


def _row_slice(m: Tensor, a: int, b: int) -> Tensor:
    """Rows ``a:b`` of a CSR matrix, as a CSR matrix."""
    crow, col, val = _csr_parts(m)
    s, e = int(crow[a]), int(crow[b])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow[a : b + 1] - s, col[s:e], val[s:e], size=(b - a, m.shape[1]))


def _query_expansion(
    rows: Tensor, cols: Tensor, vals: Tensor, nbr: Tensor, k2: int, num_query: int
) -> tuple[tuple[Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor]]:
    """The two views of ``V_qe[i] = mean(V[j] for j in the k2 nearest of i)`` the join reads.

    Returns, as CSR parts ``(crow, col, val)``: the query rows of ``V_qe``
    (``num_query x N``) and the inverted index of its gallery rows (``N x num_gallery``: row
    ``c`` lists the gallery rows whose ``V_qe`` holds column ``c``). Both are sparse products
    in the orientation that yields them directly: ``A_q V`` and ``V^T A_g^T`` with ``A`` the
    k2-nearest indicator, so the gallery part is never built row-wise and transposed by a sort.
    ``rows, cols`` come sorted by row, then column.
    """
    n = nbr.shape[0]
    ng = n - num_query
    device = nbr.device
    k2e = min(k2, n)
    split = int(torch.searchsorted(rows, torch.tensor([num_query], device=device)))
    vt = _csr(cols, rows, n, vals)
    if k2e == 1:
        # Every row is its own nearest (k2 = 1 disables the expansion): V_qe = V.
        v = _csr(rows[:split], cols[:split], n, vals[:split], presorted=True, n_rows=num_query)
        g = torch.arange(ng, device=device)
        a_gt = _csr(g + num_query, g, ng, n_rows=n, presorted=True)
    else:
        src = nbr[:, :k2e]
        q_ids = torch.arange(num_query, device=device).repeat_interleave(k2e)
        a_q = _csr(q_ids, src[:num_query].reshape(-1), n, n_rows=num_query)
        v = _spmm(a_q, _csr(rows, cols, n, vals, presorted=True))
        g_ids = torch.arange(ng, device=device).repeat_interleave(k2e)
        a_gt = _csr(src[num_query:].reshape(-1), g_ids, ng, n_rows=n)
    crow_q, col_q, val_q = _csr_parts(v)
    # The inverted index in row ranges of V^T whose products hold about _BUDGET entries, each
    # kept with int32 columns: it is the largest structure of the sparse stage.
    per_l = a_gt.crow_indices()[1:] - a_gt.crow_indices()[:-1]
    vt_crow, vt_col, _ = _csr_parts(vt)
    work = torch.zeros(n, dtype=torch.long, device=device).index_add_(
        0,
        torch.repeat_interleave(torch.arange(n, device=device), vt_crow[1:] - vt_crow[:-1]),
        per_l[vt_col],
    )
    counts, cols_g, vals_g = [], [], []
    for a, b in _ranges(work, _BUDGET, n):
        part = _spmm(_row_slice(vt, a, b), a_gt)
        crow, col, val = _csr_parts(part)
        counts.append(crow[1:] - crow[:-1])
        cols_g.append(col.to(torch.int32))
        vals_g.append(val)
        del part, crow, col, val
    del vt, a_gt
    crow_g = torch.zeros(n + 1, dtype=torch.long, device=device)
    crow_g[1:] = torch.cat(counts).cumsum(0)
    if k2e > 1:
        val_q = val_q / k2e
        vals_g = [v_ / k2e for v_ in vals_g]
    return (crow_q, col_q, val_q), (crow_g, torch.cat(cols_g), torch.cat(vals_g))


def k_reciprocal_distance(nb: Neighbours, num_query: int, k1: int, k2: int, lambda_value: float) -> Tensor:
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
    h1 = min(round(k1 / 2.0) + 1, n)
    # Each cut is a set: sorted by index, the lists below need no further sorting.
    nbr, order = nb.nbr.sort(dim=1)
    rows, cols = _expansion(nbr, nb.nbr[:, :h1].sort(dim=1).values)
    dist = _lookup_values(nbr, nb.nval.gather(1, order), nb, rows, cols)
    del nbr, order
    weight = torch.exp(-dist)
    total = torch.zeros(n, dtype=torch.float32, device=device).index_add_(0, rows, weight)
    vals = weight / total.index_select(0, rows)
    del weight, dist
    query, gallery = _query_expansion(rows, cols, vals, nb.nbr, k2, num_query)
    del rows, cols, vals
    q_cols = query[1]
    g_crow = gallery[0]
    col_len = g_crow[1:] - g_crow[:-1]
    pairs = int(col_len[q_cols].sum())
    used = _unique(q_cols)
    if (num_query + ng) * used.numel() <= _BUDGET and num_query * ng * used.numel() <= (_DENSE_JOIN * pairs):
        # Small or crowded problems: V is nearly dense, and a dense min-sum over the columns
        # the queries use costs less than meeting every (query, gallery) pair.
        temp_min = _dense_join(query, gallery, used, num_query, ng)
    else:
        # The grids replace the inverted index: drop it before the join's buffers exist.
        grids = _GalleryGrids(*gallery)
        del gallery
        temp_min = _sparse_join(query, grids, num_query, ng)
    return _blend(temp_min, nb, lambda_value)


class _GalleryGrids:
    """The inverted index as padded grids, so that a column's gallery run is one row copy.

    Columns are grouped by run length (within a factor ``_PAD_GROWTH``); group ``t`` is a
    ``(columns, width)`` grid of values and of gallery rows, short runs padded with value 0 at
    gallery row 0 (a padded slot adds ``min(v, 0) = 0``). ``group[c]`` and ``slot[c]`` locate
    column ``c``; ``width[t]`` is 0 for the group of empty columns.
    """

    def __init__(self, crow: Tensor, g_rows: Tensor, g_vals: Tensor) -> None:
        device = g_vals.device
        n = crow.numel() - 1
        length = crow[1:] - crow[:-1]
        lens, order = torch.sort(length)
        bucket = torch.floor(torch.log(lens.clamp(min=1).double()) / math.log(_PAD_GROWTH))
        bucket[lens == 0] = -1
        _, sizes = torch.unique_consecutive(bucket, return_counts=True)
        ends = sizes.cumsum(0)
        widths = lens[ends - 1]
        self.group = torch.empty(n, dtype=torch.long, device=device)
        self.slot = torch.empty(n, dtype=torch.long, device=device)
        self.width = widths
        self.vals: list[Tensor] = []
        self.rows: list[Tensor] = []
        total = int((sizes * widths).sum())
        flat_v = torch.zeros(total, dtype=g_vals.dtype, device=device)
        flat_r = torch.zeros(total, dtype=torch.int32, device=device)
        off, lo = 0, 0
        for t, (size, w) in enumerate(zip(sizes.tolist(), widths.tolist())):
            cs = order[lo : lo + size]
            self.group[cs] = t
            self.slot[cs] = torch.arange(size, device=device)
            grid_v = flat_v[off : off + size * w].view(size, w)
            grid_r = flat_r[off : off + size * w].view(size, w)
            if w:
                ar = torch.arange(w, device=device)
                step = max(1, _BUDGET // w)
                for a in range(0, size, step):
                    c = cs[a : a + step]
                    ok = ar < length[c].unsqueeze(1)
                    pos = (crow[c].unsqueeze(1) + ar).masked_fill_(~ok, 0)
                    grid_v[a : a + step] = g_vals[pos].masked_fill_(~ok, 0)
                    grid_r[a : a + step] = g_rows[pos].masked_fill_(~ok, 0)
                    del ok, pos
            self.vals.append(grid_v)
            self.rows.append(grid_r)
            off += size * w
            lo += size


def _sparse_join(query: tuple[Tensor, Tensor, Tensor], grids: _GalleryGrids, num_query: int, ng: int) -> Tensor:
    """``temp_min[q, g] = sum_c min(V[q, c], V[g, c])``, meeting only pairs that share ``c``.

    Query entries are grouped by query block (consecutive queries meeting about
    ``_JOIN_BUDGET`` pairs, whose output rows stay in cache) and by gallery grid; each group
    copies its columns' runs, takes the minimum with the query values, and adds the result into
    the block's output rows with one scatter. The temporaries are reused buffers of
    ``_JOIN_BUDGET`` pairs.
    """
    q_crow, q_cols, q_vals = query
    device = q_vals.device
    q_rows = torch.repeat_interleave(torch.arange(num_query, device=device), q_crow[1:] - q_crow[:-1])
    group = grids.group[q_cols]
    width = grids.width[group]
    keep = width > 0
    q_rows, q_cols, q_vals, group, width = (t[keep] for t in (q_rows, q_cols, q_vals, group, width))
    slot = grids.slot[q_cols]
    # Query blocks: consecutive queries whose pairs start in the same _JOIN_BUDGET window.
    work = torch.zeros(num_query, dtype=torch.long, device=device).index_add_(0, q_rows, width)
    window = (work.cumsum(0) - work) // _JOIN_BUDGET
    first = torch.ones(num_query, dtype=torch.bool, device=device)
    first[1:] = window[1:] != window[:-1]
    block = first.cumsum(0) - 1
    starts = first.nonzero().squeeze(1).tolist() + [num_query]
    n_groups = grids.width.numel()
    key, order = _sort_codes(block[q_rows] * n_groups + group, len(starts) * n_groups)
    slot, q_vals = slot[order], q_vals[order]
    q_off = (q_rows[order] - torch.tensor(starts, device=device)[block[q_rows[order]]]) * ng
    q_off = q_off.to(torch.int32 if num_query * ng < 2**31 else torch.long)
    del order, q_rows, q_cols, group, width
    keys, counts = torch.unique_consecutive(key, return_counts=True)
    del key
    ends = counts.cumsum(0).tolist()
    temp_min = torch.zeros(num_query, ng, dtype=torch.float32, device=device)
    flat_out = temp_min.view(-1)
    size = max(_JOIN_BUDGET, int(grids.width.max()) if grids.width.numel() else 1)
    items = list(zip(keys.tolist(), [0] + ends[:-1], ends))

    def join(part: list[tuple[int, int, int]]) -> None:
        buf_v = torch.empty(size, dtype=torch.float32, device=device)
        buf_r = torch.empty(size, dtype=torch.int32, device=device)
        buf_i = torch.empty(size, dtype=torch.long, device=device)
        for k, lo, hi in part:
            b, t = divmod(k, n_groups)
            w = int(grids.width[t])
            out = flat_out[starts[b] * ng : starts[b + 1] * ng]
            single = starts[b + 1] - starts[b] == 1
            step = max(1, _JOIN_BUDGET // w)
            for s in range(lo, hi, step):
                e = min(s + step, hi)
                p = slot[s:e]
                v = buf_v[: (e - s) * w].view(e - s, w)
                torch.index_select(grids.vals[t], 0, p, out=v)
                torch.minimum(v, q_vals[s:e].unsqueeze(1), out=v)
                r = buf_r[: (e - s) * w].view(e - s, w)
                torch.index_select(grids.rows[t], 0, p, out=r)
                i = buf_i[: (e - s) * w].view(e - s, w)
                if single:
                    # A block of one query (the rule on large problems) adds no offset, and a
                    # plain widening copy is twice as fast as the mixed-dtype add.
                    i.copy_(r)
                else:
                    torch.add(r, q_off[s:e].unsqueeze(1), out=i)
                # scatter_add_ with int64 indices is about twice as fast as index_add_.
                out.scatter_add_(0, i.view(-1), v.view(-1))

    cut = _half_at_block(items, n_groups) if device.type == "cpu" and torch.get_num_threads() > 1 else 0
    if cut and items[-1][2] >= _PARALLEL_JOIN:
        # scatter_add_ runs on one core: two threads take the two halves of the query blocks
        # (disjoint output rows), each with one intra-op thread (torch releases the GIL in its
        # kernels), instead of one thread whose other ops use both cores.
        def alone(part: list[tuple[int, int, int]]) -> None:
            torch.set_num_threads(1)
            join(part)

        prev = torch.get_num_threads()
        try:
            with ThreadPoolExecutor(2) as pool:
                for f in [pool.submit(alone, items[:cut]), pool.submit(alone, items[cut:])]:
                    f.result()
        finally:
            # Under OpenMP the setting is per thread and the pool's threads are gone; where a
            # backend keeps it process-wide, this gives the caller's value back.
            torch.set_num_threads(prev)
    else:
        join(items)
    return temp_min


def _half_at_block(items: list[tuple[int, int, int]], n_groups: int) -> int:
    """Index that splits the ``(key, lo, hi)`` groups of the join into two runs of about equal
    entries at a change of query block; 0 when there is only one block."""
    total = items[-1][2] if items else 0
    for j, (k, lo, _) in enumerate(items):
        if j and lo * 2 >= total and k // n_groups != items[j - 1][0] // n_groups:
            return j
    return 0


def _blend(temp_min: Tensor, nb: Neighbours, lambda_value: float) -> Tensor:
    """``jaccard * (1 - lambda) + B * lambda`` with ``jaccard = 1 - t / (2 - t)``, in place.

    In row ranges: a whole-size ``2 - t`` would be one more output-sized array at the end of
    the call, where the memory peaks (400 MB at 1000 x 100,000).
    """
    step = max(1, _BUDGET // max(temp_min.shape[1], 1))
    for a in range(0, temp_min.shape[0], step):
        t = temp_min[a : a + step]
        t.div_(torch.sub(2.0, t)).neg_().add_(1.0)
        t.mul_(1 - lambda_value).add_(nb.qg[a : a + step], alpha=lambda_value)
    return temp_min


def _dense_join(
    query: tuple[Tensor, Tensor, Tensor],
    gallery: tuple[Tensor, Tensor, Tensor],
    used: Tensor,
    num_query: int,
    ng: int,
) -> Tensor:
    """``sum_c min(V[q, c], V[g, c])`` with ``V`` dense over the columns ``used`` by queries."""
    q_crow, q_cols, q_vals = query
    g_crow, g_rows, g_vals = gallery
    device = q_vals.device
    n = g_crow.numel() - 1
    w = used.numel()
    q_rows = torch.repeat_interleave(torch.arange(num_query, device=device), q_crow[1:] - q_crow[:-1])
    g_cols = torch.repeat_interleave(torch.arange(n, device=device), g_crow[1:] - g_crow[:-1])
    vq = torch.zeros(num_query, w, dtype=torch.float32, device=device)
    vq[q_rows, torch.searchsorted(used, q_cols)] = q_vals
    vg = torch.zeros(ng, w, dtype=torch.float32, device=device)
    keep = _isin_sorted(g_cols, used)
    vg[g_rows[keep].long(), torch.searchsorted(used, g_cols[keep])] = g_vals[keep]
    temp_min = torch.empty(num_query, ng, dtype=torch.float32, device=device)
    step = max(1, _BUDGET // max(ng * w, 1))
    for a in range(0, num_query, step):
        b = min(a + step, num_query)
        temp_min[a:b] = torch.minimum(vq[a:b, None, :], vg[None, :, :]).sum(-1)
    return temp_min
