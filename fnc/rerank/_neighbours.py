"""Nearest-neighbour lists for k-reciprocal re-ranking, from distance matrices or from features.

Both builders return :class:`~._sparse.Neighbours`: for every one of the ``N = q + g`` rows the
first ``k1 + 1`` entries of the reference's normalised squared-distance row
``B[i] = float32(D[i] ** 2) / max(float32(D[i] ** 2))``, ordered by ``(B[i, j], j)``. The
reference orders rows with numpy's default (unstable) argsort; we break exact float32 ties by
column index instead, so the two can only differ when equal values straddle one of the cuts
``k2``, ``round(k1 / 2) + 1`` or ``k1 + 1`` of a row (duplicate features, for example).
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Iterator

import torch
from torch import Tensor

from ._sparse import Neighbours

# Extra candidates kept per row beyond k1 + 1, so that ties and near-ties at the cut are visible.
_MARGIN = 16
# float32 unit roundoff.
_U32 = 2.0**-24
# Two exact values closer than this relative gap may round to the same float32 B value.
_REL_GAP = 2.0**-20
_PAIR_BUDGET = 1 << 22
# Slack added to the per-block column list length; see _column_k.
_COL_K_EXTRA = 4
# Column candidates held per row before they are compacted, in units of the buffer size.
_CAND_SLOTS = 4
# float64 elements per chunk in exact_pairs: stays in cache.
_EXACT_BUDGET = 1 << 18


def _stable_sort_rows(vals: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
    o = idx.argsort(dim=1)
    vals, idx = vals.gather(1, o), idx.gather(1, o)
    o = torch.sort(vals, dim=1, stable=True).indices
    return vals.gather(1, o), idx.gather(1, o)


def _finalise(
    vals: Tensor,
    idx: Tensor,
    bound: Tensor,
    k: int,
    full_rows: Callable[[Tensor], Tensor],
) -> tuple[Tensor, Tensor]:
    """First ``k`` entries by ``(value, index)`` from a candidate buffer.

    ``vals`` are exact B values of the buffer ``idx``; ``bound`` is a lower bound on B outside it.
    Rows where an outside entry could still tie or beat the k-th value are redone from the full
    row given by ``full_rows(row_positions)``.
    """
    vals, idx = _stable_sort_rows(vals, idx)
    nbr, nval = idx[:, :k].clone(), vals[:, :k].clone()
    bad = (bound <= vals[:, k - 1]).nonzero().squeeze(1)
    if bad.numel():
        n = int(full_rows(bad[:1]).shape[1])
        step = max(1, _PAIR_BUDGET // n)
        for a in range(0, bad.numel(), step):
            rows = bad[a : a + step]
            s = torch.sort(full_rows(rows), dim=1, stable=True)
            nbr[rows], nval[rows] = s.indices[:, :k], s.values[:, :k]
    return nbr, nval


def _cuts(k1: int, k2: int, n: int) -> list[int]:
    h1 = int(round(k1 / 2.0)) + 1
    return sorted({c for c in (min(k2, n), min(h1, n), min(k1 + 1, n)) if c < n})


def _check_row_max(mx: Tensor, first_row: int, what: str) -> None:
    if not bool((mx > 0).all()):
        row = first_row + int((mx <= 0).nonzero()[0].item())
        raise ValueError(f"all distances in {what} row {row} are zero; re-ranking is undefined")


def matrix_neighbours(
    q_g: Tensor, q_q: Tensor, g_g: Tensor, k1: int, chunk_size: int
) -> Neighbours:
    """Neighbour lists from the three distance blocks, following the reference bit for bit.

    The reference squares in the input dtype, casts to float32 and divides every column of the
    stacked matrix by its maximum before transposing; row ``i`` of ``B`` is therefore column ``i``
    of the stacked squared matrix divided by that column's maximum.
    """
    nq, ng = q_g.shape
    n = nq + ng
    k_keep = min(k1 + 1, n)
    k_buf = min(k_keep + _MARGIN, n)
    device = q_g.device

    def columns(r0: int, r1: int) -> Tensor:
        parts = []
        if r0 < nq:
            a, b = r0, min(r1, nq)
            parts.append(torch.cat([q_q[:, a:b].T, q_g[a:b, :]], dim=1))
        if r1 > nq:
            a, b = max(r0, nq) - nq, r1 - nq
            parts.append(torch.cat([q_g[:, a:b].T, g_g[:, a:b].T], dim=1))
        return torch.cat(parts, 0).square().to(torch.float32)

    nbr = torch.empty(n, k_keep, dtype=torch.long, device=device)
    nval = torch.empty(n, k_keep, dtype=torch.float32, device=device)
    qg = torch.empty(nq, ng, dtype=torch.float32, device=device)
    row_max = torch.empty(n, dtype=torch.float32, device=device)
    for r0 in range(0, n, chunk_size):
        r1 = min(r0 + chunk_size, n)
        sq = columns(r0, r1)
        mx = sq.max(dim=1).values
        _check_row_max(mx, r0, "stacked distance")
        block = sq / mx.unsqueeze(1)
        del sq
        v, i = torch.topk(block, k_buf, dim=1, largest=False)
        bound = v[:, -1] if k_buf < n else torch.full_like(v[:, 0], math.inf)
        nbr[r0:r1], nval[r0:r1] = _finalise(v, i, bound, k_keep, lambda rows: block[rows])
        if r0 < nq:
            qg[r0 : min(r1, nq)] = block[: min(r1, nq) - r0, nq:]
        row_max[r0:r1] = mx

    def pair_values(rows: Tensor, cols: Tensor) -> Tensor:
        # B[i, x] = float32(A[x, i] ** 2) / max_i, with A the stacked [[q_q, q_g], [q_g.T, g_g]].
        out = torch.empty(rows.shape, dtype=q_g.dtype, device=device)
        xq, iq = cols < nq, rows < nq
        for sel, mat, r, c in (
            (xq & iq, q_q, cols, rows),
            (xq & ~iq, q_g, cols, rows - nq),
            (~xq & iq, q_g, rows, cols - nq),
            (~xq & ~iq, g_g, cols - nq, rows - nq),
        ):
            out[sel] = mat[r[sel], c[sel]]
        return out.square().to(torch.float32) / row_max[rows]

    return Neighbours(nbr=nbr, nval=nval, qg=qg, pair_values=pair_values)


class _Features:
    """The fused distance ``D = sum_m w_m * ||x_m[i] - x_m[j]||`` over stacked query+gallery."""

    def __init__(self, xs: list[Tensor], weights: list[float]) -> None:
        self.xs = xs
        self.w = weights
        self.single = len(xs) == 1
        # One model: rank on float32 squared distances and refine near-ties in float64.
        # Several: sums of square roots amplify float32 error near zero, so work in float64.
        self.dtype = torch.float32 if self.single else torch.float64
        self.xc = [x.to(self.dtype) for x in xs]
        if not self.single:
            # Widening is exact: the float64 copies also serve the exact computations, and the
            # originals need not be kept beside them.
            self.xs = self.xc
        self.sq = [(x * x).sum(1) for x in self.xc]
        self._buf: Tensor | None = None

    def _fuse(self, squared: Iterator[Tensor]) -> Tensor:
        """Ranking values from per-model squared distances (consumed one model at a time).

        One model: the squared distance itself. Several: ``sum_m w_m * sqrt(s_m)``, in place.
        """
        if self.single:
            return next(squared)
        out = None
        for s, w in zip(squared, self.w):
            s = s.sqrt_().mul_(w)
            out = s if out is None else out.add_(s)
        return out

    def block(self, r0: int, r1: int, c0: int) -> Tensor:
        """Ranking values for rows ``r0:r1`` against columns ``c0:``; monotone in ``D``."""

        def squared() -> Iterator[Tensor]:
            for x, sq in zip(self.xc, self.sq):
                shape = (r1 - r0, x.shape[0] - c0)
                if self.single:
                    # One buffer for every block: a fresh 100+ MiB tensor per block is a fresh
                    # mapping from the OS, page-faulted and zeroed each time.
                    if self._buf is None or self._buf.numel() < shape[0] * shape[1]:
                        self._buf = torch.empty(shape[0] * shape[1], dtype=x.dtype,
                                                device=x.device)
                    s = self._buf[: shape[0] * shape[1]].view(shape)
                    torch.addmm(sq[c0:].unsqueeze(0), x[r0:r1], x[c0:].T, alpha=-2.0, out=s)
                else:
                    s = torch.addmm(sq[c0:].unsqueeze(0), x[r0:r1], x[c0:].T, alpha=-2.0)
                yield s.add_(sq[r0:r1].unsqueeze(1)).clamp_(min=0)

        return self._fuse(squared())

    def release(self) -> None:
        self._buf = None

    def exact_pairs(self, rows: Tensor, cols: Tensor) -> Tensor:
        """float64 ranking values of row ``rows[i]`` against ``cols[i]`` (``(m,)`` or ``(m, k)``).

        The few pairs needing this are gathered and widened a cache-sized chunk at a time, and
        ``||a - b||^2`` is summed from exact float64 differences: bit-identical for identical
        feature rows, which exact ties rely on.
        """
        cols2 = cols.reshape(rows.numel(), -1)
        m, k = cols2.shape

        def squared() -> Iterator[Tensor]:
            for x in self.xs:
                s = torch.empty(m, k, dtype=torch.float64, device=x.device)
                step = max(1, _EXACT_BUDGET // (k * x.shape[1]))
                for a in range(0, m, step):
                    c = cols2[a : a + step]
                    diff = x.index_select(0, c.reshape(-1)).view(*c.shape, -1).double()
                    diff.sub_(x.index_select(0, rows[a : a + step]).double().unsqueeze(1))
                    s[a : a + step] = diff.square_().sum(2)
                yield s

        return self._fuse(squared()).view(cols.shape)

    def pair_block_values(self, rows: Tensor, cols: Tensor) -> Tensor:
        """Ranking values at many pairs sorted by (row, col), in the block precision."""
        # A sampled matrix product reads each feature row in place; gathering the rows first
        # costs about five times more memory traffic.
        n = self.xc[0].shape[0]
        crow = torch.zeros(n + 1, dtype=torch.long, device=rows.device)
        crow[1:] = torch.bincount(rows, minlength=n).cumsum(0)

        def squared() -> Iterator[Tensor]:
            for x, sq in zip(self.xc, self.sq):
                mask = torch.sparse_csr_tensor(
                    crow, cols, torch.zeros(rows.numel(), dtype=x.dtype, device=x.device),
                    size=(n, n),
                )
                with warnings.catch_warnings():
                    # sparse CSR is flagged as beta; sampled_addmm on it is stable since 2.0.
                    warnings.simplefilter("ignore", UserWarning)
                    dot = torch.sparse.sampled_addmm(mask, x, x.T, beta=0.0).values()
                yield (sq[rows] + sq[cols] - 2.0 * dot).clamp_(min=0)

        return self._fuse(squared())

    def exact_rows(self, rows: Tensor) -> Tensor:
        """float64 ranking values of whole rows, ``(len(rows), N)``."""

        def squared() -> Iterator[Tensor]:
            for x in self.xs:
                a = x[rows].double()
                sa = (a * a).sum(1, keepdim=True)
                parts = []
                step = max(1, _PAIR_BUDGET // x.shape[1])
                for c0 in range(0, x.shape[0], step):
                    b = x[c0 : c0 + step].double()
                    parts.append(sa + (b * b).sum(1) - 2.0 * a @ b.T)
                yield torch.cat(parts, 1).clamp_(min=0)

        return self._fuse(squared())

    def key(self, v: Tensor) -> Tensor:
        """float32 squared fused distance from float64 ranking values, as the reference squares."""
        d = self.w[0] * v.sqrt() if self.single else v
        return (d * d).to(torch.float32)

    def radius(self, rows: slice) -> Tensor | float:
        """Error bound of ``block`` in the ranking space (0 for the float64 path)."""
        if not self.single:
            return 0.0
        x = self.xc[0]
        norms = self.sq[0].sqrt()
        # Measured float32 GEMM error stays below ~4 u (|a| + |b|)^2 at d = 1536 (blocked FMA
        # sums); the band treated as a possible tie is (sqrt(d) / 2 + 8) u, ~7x that.
        eps = (0.5 * math.sqrt(x.shape[1]) + 8.0) * _U32
        return eps * (norms[rows] + norms.max()) ** 2


def _column_k(k_keep: int, k_buf: int, rows: int, n: int) -> int:
    """Candidates kept per column from a block of ``rows`` of the ``n`` shuffled rows.

    In the shuffled order the number of a row's ``k_keep`` nearest that fall in the block is
    binomial with ``p = rows / n``; keeping its mean plus six standard deviations plus
    ``_COL_K_EXTRA`` makes a cut list that loses one of them (and sends the row to the
    full-row path) a one-in-billions event, while keeping a few dozen of thousands.
    """
    p = rows / n
    mean = k_keep * p
    k = math.ceil(mean + 6.0 * math.sqrt(mean * (1.0 - p))) + _COL_K_EXTRA
    return max(1, min(k, k_buf, rows))


def _spread(nq: int, n: int, device: torch.device) -> Tensor:
    """A fixed shuffle of the queries and, after them, of the gallery."""
    g = torch.Generator().manual_seed(20200614)
    perm = torch.cat([torch.randperm(nq, generator=g), nq + torch.randperm(n - nq, generator=g)])
    return perm.to(device)


def feature_neighbours(
    xs: list[Tensor], weights: list[float], nq: int, k1: int, k2: int, chunk_size: int
) -> Neighbours:
    """Neighbour lists from stacked query+gallery features, one ``(N, d_m)`` tensor per model.

    ``xs`` is emptied (its tensors are replaced by shuffled copies).

    Row blocks ``r0:r1`` are compared with columns ``r0:`` only: the block's rows get their
    top-k and maximum along rows, later rows get them along columns (the matrix is symmetric), so
    every pair is computed once. Rows are complete, and finalised, as soon as their block is done.

    Along columns only the few nearest of each block are kept (:func:`_column_k`), with the
    value they stop at as a bound on what was left out; a row whose bound reaches its
    ``k1 + 1``-th neighbour is recomputed in full. Rows are processed in a fixed shuffled order,
    so that a row's neighbours are spread evenly over the blocks whatever the input order
    (galleries often come sorted by identity or track), which makes such rows rare. Results are
    reported in the input order, and exact ties are broken by input index.
    """
    n = xs[0].shape[0]
    ng = n - nq
    device = xs[0].device
    perm = _spread(nq, n, device)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(n, device=device)
    inv_g = inv[nq:] - nq
    f = _Features([x.index_select(0, perm) for x in xs], weights)
    # The caller's stacked copies are not needed any more: drop them now, not after the call.
    xs.clear()
    k_keep = min(k1 + 1, n)
    k_buf = min(k_keep + _MARGIN, n)
    cuts = _cuts(k1, k2, n)
    unit_key = f.single and f.w[0] == 1.0

    # Everything indexed by row position lives in the shuffled order until the end.
    # Column candidates are appended block after block at a shared offset and merged with a
    # row's own top-k once, when its block comes; they are compacted only if they overflow.
    width = max(_CAND_SLOTS * k_buf, 2 * k_buf)
    cand_v = torch.empty((n, width), dtype=f.dtype, device=device)
    cand_i = torch.empty((n, width), dtype=torch.long, device=device)
    off = 0
    lb = torch.full((n,), math.inf, dtype=f.dtype, device=device)
    mv = torch.full((n,), -math.inf, dtype=f.dtype, device=device)
    nbr = torch.empty(n, k_keep, dtype=torch.long, device=device)
    nval = torch.empty(n, k_keep, dtype=torch.float32, device=device)
    qg = torch.empty(nq, ng, dtype=torch.float32, device=device)
    row_max = torch.empty(n, dtype=torch.float32, device=device)

    for r0 in range(0, n, chunk_size):
        r1 = min(r0 + chunk_size, n)
        s = f.block(r0, r1, r0)
        t = torch.topk(s, min(k_buf, n - r0), dim=1, largest=False)
        cv = torch.cat([t.values, cand_v[r0:r1, :off]], 1)
        ci = torch.cat([t.indices + r0, cand_i[r0:r1, :off]], 1)
        if cv.shape[1] < k_buf:
            # Fewer candidates than slots (cut column lists on a tiny problem): pad, and the
            # bound below sends the row to the full-row path.
            pad = k_buf - cv.shape[1]
            cv = torch.cat([cv, cv.new_full((r1 - r0, pad), math.inf)], 1)
            ci = torch.cat([ci, ci.new_full((r1 - r0, pad), -1)], 1)
        top = torch.topk(cv, k_buf, dim=1, largest=False)
        cv, ci = top.values, ci.gather(1, top.indices)
        torch.maximum(mv[r0:r1], s.amax(dim=1), out=mv[r0:r1])
        if r1 < n:
            rest = s[:, r1 - r0 :]
            kc = _column_k(k_keep, k_buf, r1 - r0, n)
            t = torch.topk(rest, kc, dim=0, largest=False)
            if kc < r1 - r0:
                torch.minimum(lb[r1:], t.values[-1], out=lb[r1:])
            if off + kc > width:
                top = torch.topk(cand_v[r1:, :off], k_buf, dim=1, largest=False)
                cand_i[r1:, :k_buf] = cand_i[r1:, :off].gather(1, top.indices)
                cand_v[r1:, :k_buf] = top.values
                off = k_buf
            cand_v[r1:, off : off + kc] = t.values.T
            cand_i[r1:, off : off + kc] = t.indices.T + r0
            off += kc
            torch.maximum(mv[r1:], rest.amax(dim=0), out=mv[r1:])
        rows = torch.arange(r0, r1, device=device)
        # The maximum only scales its row: its float32 block error (~1e-7 relative) moves the
        # row's values by as much and cannot change their order.
        mx = f.key(mv[r0:r1].to(torch.float64))
        _check_row_max(mx, r0, "stacked distance")
        row_max[r0:r1] = mx

        def to_b(v: Tensor, rr: Tensor = rows) -> Tensor:
            if v.dtype == torch.float32 and unit_key:
                # float32(sqrt(v) ** 2) computed in float64 is v itself for a float32 v.
                return v / row_max[rr].unsqueeze(1)
            return f.key(v.to(torch.float64)) / row_max[rr].unsqueeze(1)

        # float64 temporaries of the query block are kept to a few rows at a time.
        for a in range(r0, min(r1, nq), 256):
            b = min(a + 256, r1, nq)
            qg[a:b] = to_b(s[a - r0 : b - r0, nq - r0 :], rows[a - r0 : b - r0]).index_select(
                1, inv_g
            )
        del s
        # A lower bound on every value left out of the buffer.
        outside = lb[r0:r1] if k_buf == n else torch.minimum(cv[:, -1], lb[r0:r1])

        def full_rows(p: Tensor, rr: Tensor) -> Tensor:
            return to_b(f.exact_rows(rr[p]), rr[p]).index_select(1, inv)

        if f.single:
            rad = f.radius(slice(r0, r1))
            sure = outside - rad > (cv[:, k_keep - 1] + rad) * (1 + _REL_GAP)
            for c in cuts:
                sure &= cv[:, c] - rad > (cv[:, c - 1] + rad) * (1 + _REL_GAP)
            nbr[r0:r1], nval[r0:r1] = perm[ci[:, :k_keep]], to_b(cv[:, :k_keep])
            unsure = (~sure).nonzero().squeeze(1)
            if unsure.numel():
                ur = rows[unsure]
                # Slots never filled (index -1) stay last.
                cu = ci[unsure]
                exact = f.exact_pairs(ur, cu.clamp(min=0)).masked_fill_(cu < 0, math.inf)
                bound = to_b((outside[unsure] - rad[unsure]).clamp(min=0).unsqueeze(1), ur)[:, 0]
                nbr[ur], nval[ur] = _finalise(
                    to_b(exact, ur), perm[ci[unsure]], bound, k_keep,
                    lambda p, ur=ur: full_rows(p, ur),
                )
        else:
            nbr[r0:r1], nval[r0:r1] = _finalise(
                to_b(cv), perm[ci], to_b(outside.unsqueeze(1))[:, 0], k_keep,
                lambda p: full_rows(p, rows),
            )

    f.release()
    # Back to the input order: row i of the shuffled order is input row perm[i].
    out_nbr = torch.empty_like(nbr)
    out_nbr[perm] = nbr
    out_nval = torch.empty_like(nval)
    out_nval[perm] = nval
    out_max = torch.empty_like(row_max)
    out_max[perm] = row_max
    qg_in = torch.empty_like(qg)
    qg_in[perm[:nq]] = qg
    del nbr, nval, qg
    # Only the block-precision features are needed from here on (the shuffled copies: a second
    # set in input order would double the float64 memory of a fused ensemble).
    f.xs = f.xc

    def pair_values(rows: Tensor, cols: Tensor) -> Tensor:
        # Pairs in input order, mapped to the shuffled one and sorted there by (row, column).
        n_ = inv.numel()
        code, order = (inv[rows] * n_ + inv[cols]).sort()
        v = torch.empty(rows.numel(), dtype=torch.float64, device=rows.device)
        v[order] = f.pair_block_values(code // n_, code % n_).to(torch.float64)
        return f.key(v) / out_max[rows]

    return Neighbours(nbr=out_nbr, nval=out_nval, qg=qg_in, pair_values=pair_values)
