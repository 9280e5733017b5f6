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
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from ._blas import SlicedGemm, numpy_gemm_for
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
# Feature rows per chunk of the whole-matrix passes (norms, centre): a few MB, in cache.
_ROWS_STEP = 1024
# Rows per range when values of scattered pairs are computed (a few MB of features, in cache).
_PAIR_ROWS = 2048
# Largest values kept per row to find its exact maximum.
_MAX_KEEP = 4
# Rows whose maximum is computed from their full float64 row at a time.
_FULL_ROWS = 64
# Screened rows whose kept largest values cannot single out their maximum wait until this many
# have gathered, then take it from their full float32 rows together: one pass over the features
# for all of them. One at a time, each pass reads every feature row for a few rows' dot products
# (at 1000 x 100,000, noise 4: 615 rows, 264 passes of 600 MB, 19 s of 136).
_DEFER_ROWS = 256
# bfloat16 unit roundoff (8 significand bits, round to nearest even).
_U_BF16 = 2.0**-8
# Screening: on CPUs with native bfloat16 dot products the gallery blocks are bfloat16 GEMMs
# (about 4x a float32 GEMM) whose values only select candidates; see _ScreenBand.
_SCREEN = True
# Candidates kept per row beyond k1 + 1 when screening. A screened value may be off by its band
# (0.0077 at a row's k1 + 1-th for unit-norm 1536-d features, see _ScreenBand), so the buffer
# must reach that far beyond it: 35 columns (57 at most) on 1000 rows of the hardest benchmark
# features (noise 4, plain mAP 0.24); 120 leaves twice that. A row that needs more is not
# dropped: its bound fails and it takes the full-row path (no row did at 1052 x 18,290, noise 1-4).
_SCREEN_MARGIN = 120
# Largest values kept per row when screening, in units of _MAX_KEEP: the maximum's band holds a
# few columns; a row with more takes its maximum from its full float32 row.
_SCREEN_KEEP = 4
# Capture thresholds (see _FeatureSearch._thresholds): one-model CPU searches (screened or not) of at least this many
# rows find their candidates by comparing each block with per-row thresholds taken from about
# _SAMPLE sampled columns, instead of by top-k selections along the block's rows and columns.
_CAPTURE_ROWS = 8192
# ... and at most this many: at 1000 x 100,000 (noise 4) capture took 67-72 s but peaked at
# 4115-4141 MiB above the inputs, over the 4 GiB the top-k path stays under (3728 MiB, 87 s).
_CAPTURE_MAX_ROWS = 50_000
_SAMPLE = 2048
# A row's threshold is its sample's j-th smallest, j its sampled share of k_buf plus this many
# standard deviations: fewer than k_buf values below it is then about a 1-in-700 event per row
# (normal approximation), and still harmless unless far fewer (the buffer is only cut shorter;
# see docs/rerank.md).
_CAPTURE_SD = 3.0
# Captures the sample predicts per row, in units of k_buf, above which the search keeps top-k
# selections (many exact duplicates would make every threshold admit them all).
_CAPTURE_LIMIT = 8
# Block entries compared with the thresholds at a time (see _capture): a few MB, in cache.
_CAPTURE_STEP = 1 << 20


def _sampled_dots(crow: Tensor, cols: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``a[r] . b[cols[p]]`` for the CSR pattern ``(crow, cols)`` over the rows of ``a``."""
    # A sampled matrix product reads each feature row in place; gathering the rows first
    # costs about five times more memory traffic.
    with warnings.catch_warnings():
        # sparse CSR is flagged as beta; sampled_addmm on it is stable since 2.0.
        warnings.simplefilter("ignore", UserWarning)
        mask = torch.sparse_csr_tensor(
            crow, cols, torch.zeros(cols.numel(), dtype=a.dtype, device=a.device), size=(a.shape[0], b.shape[0])
        )
        return torch.sparse.sampled_addmm(mask, a, b.T, beta=0.0).values()


def _true_positions(m: Tensor) -> Tensor:
    """Positions of the True entries of a flat boolean tensor (starting at its storage's first
    byte), ascending.

    Few entries are True: the bytes are scanned eight at a time as int64 words, and only the
    non-zero words are opened (on 2^20 entries, 1% True: 0.37 ms against 1.47 ms for
    ``nonzero``; capture masks at CityFlow size, noise 4, are 1.2% True).
    """
    n8 = m.numel() // 8 * 8
    words = m[:n8].view(torch.int64).nonzero().squeeze(1)
    r, c = m[:n8].view(-1, 8).index_select(0, words).nonzero(as_tuple=True)
    out = words.index_select(0, r).mul_(8).add_(c)
    if n8 < m.numel():
        out = torch.cat([out, m[n8:].nonzero().squeeze(1) + n8])
    return out


def _transposed(x: Tensor, rows: int = 64) -> Tensor:
    """``x.T`` as a contiguous copy, ``rows`` rows of ``x`` at a time.

    A plain ``x.T.contiguous()`` of a block-sized ``x`` writes each row of ``x`` across the
    whole output; a few rows at a time keep the written lines in cache (1734 x 18,290 float32:
    0.28 s against 0.06 s).

    >>> x = torch.arange(6.0).view(2, 3)
    >>> torch.equal(_transposed(x, rows=1), x.T)
    True
    """
    out = torch.empty(x.shape[1], x.shape[0], dtype=x.dtype, device=x.device)
    for a in range(0, x.shape[0], rows):
        out[:, a : a + rows] = x[a : a + rows].T
    return out


def _select(x: Tensor, k: int, dim: int, largest: bool = False) -> tuple[Tensor, Tensor]:
    """The ``k`` smallest (``largest``: largest) of each slice of a 2-D ``x`` along ``dim`` and
    their positions, in no particular order; what ``torch.topk(..., sorted=False)`` returns.

    On the CPU, long slices go through group extrema: the slice is cut into groups of ``g``,
    the ``k`` groups with the smallest minima are kept, and the ``k`` smallest of their
    ``k g`` entries are taken (entries of a last, partial group always stay). No true member is
    lost: a group holding one of the ``k`` smallest has a minimum at most the ``k``-th value,
    and fewer than ``k`` other groups can have smaller minima (each would hold a distinct
    smaller entry). With ties the choice among equal values may differ from ``topk``'s, which
    no caller relies on: every entry left out is at least the largest one kept. The minima are
    one fast vectorised pass; top-k then partitions a fifth to a third of the entries
    (measured on a 1734 x 19,342 block: 137 -> 98 ms along columns, k = 46; 72 -> 60 ms along
    rows, k = 196; 63 -> 62 ms for the 16 largest along columns).

    >>> x = torch.tensor([[5.0, 1.0, 4.0, 2.0, 3.0, 0.0, 9.0, 8.0, 7.0, 6.0]] * 2)
    >>> v, i = _select(x, 2, dim=1)
    >>> sorted(v[0].tolist()), sorted(i[0].tolist())
    ([0.0, 1.0], [1, 5])
    """
    length = x.shape[dim]
    g = max(2, min(8, round(0.8 * math.sqrt(length / max(k, 1)))))
    groups = length // g
    if x.device.type != "cpu" or x.dim() != 2 or groups < 2 * k or k < 1:
        t = torch.topk(x, k, dim=dim, largest=largest, sorted=False)
        return t.values, t.indices
    ext_fn = torch.amax if largest else torch.amin
    if dim == 0:
        cols = x.shape[1]
        x3 = x[: groups * g].view(groups, g, cols)
        tg = torch.topk(ext_fn(x3, dim=1), k, dim=0, largest=largest, sorted=False).indices
        vals = x3.gather(0, tg.unsqueeze(1).expand(k, g, cols)).reshape(k * g, cols)
        if groups * g < length:
            vals = torch.cat([vals, x[groups * g :]], 0)
        t = torch.topk(vals, k, dim=0, largest=largest, sorted=False)
        i = t.indices
        pos = tg.gather(0, (i // g).clamp(max=k - 1)) * g + i % g
    else:
        rows = x.shape[0]
        x3 = x[:, : groups * g].view(rows, groups, g)
        tg = torch.topk(ext_fn(x3, dim=2), k, dim=1, largest=largest, sorted=False).indices
        vals = x3.gather(1, tg.unsqueeze(2).expand(rows, k, g)).reshape(rows, k * g)
        if groups * g < length:
            vals = torch.cat([vals, x[:, groups * g :]], 1)
        t = torch.topk(vals, k, dim=1, largest=largest, sorted=False)
        i = t.indices
        pos = tg.gather(1, (i // g).clamp(max=k - 1)) * g + i % g
    # Positions past the k groups are the partial group's, appended after them.
    in_group = i < k * g
    return t.values, torch.where(in_group, pos, i - k * g + groups * g)


def screening_available(x: Tensor) -> bool:
    """Whether bfloat16 screening applies to float32 features ``x`` (CPU with native bf16 dots).

    Only oneDNN's kernels are used: they accumulate bfloat16 products in float32, which the
    error bound of :class:`_ScreenBand` assumes.
    """
    if not _SCREEN or x.device.type != "cpu" or x.dtype != torch.float32:
        return False
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class _ScreenBand:
    """How far a screened squared distance ``s~`` can be from the exact one, given ``s~``.

    ``s~ = |a|^2 + |b|^2 - 2 c~`` with ``c~`` a oneDNN bfloat16 GEMM entry: the products of
    ``a~ = bf16(a)`` and ``b~`` accumulated in float32, rounded to bfloat16 on output. With
    ``r_a = a - a~``:

    - ``|a.b - a~.b~| <= |r_a| |b~| + |a~| |r_b| + |r_a| |r_b|`` (Cauchy-Schwarz on the split);
    - float32 accumulation of the exact bf16 products adds at most ``gamma_d |a~| |b~|`` in any
      order (``gamma_d = d u / (1 - d u)``, ``u = 2^-24``), flushed subnormal products at most
      ``d 2^-126``;
    - the output rounding adds at most ``2^-8 / (1 - 2^-8) |c~|``, and ``|c~|`` follows from
      ``s~`` itself: ``c~ = (|a|^2 + |b|^2 - s~) / 2`` up to float32 rounding, bounded with the
      largest and smallest ``|b|^2`` (and by ``|a~| max |b~|`` when ``s~`` was clamped to 0).

    The column's terms are replaced by their maxima over all rows, so the band of row ``i``
    holds against every column (and, by symmetry, the band of column ``j`` against every row).
    Near a row's neighbours ``|c~|`` is small, so the band there is mostly the split term
    (about 0.0075 for unit-norm 1536-d features) instead of the 0.015 a uniform bound gives.
    ``s~ - band(s~)`` and ``s~ + band(s~)`` increase with ``s~``, so the band at a list's cut
    value bounds everything beyond the cut. Norms are taken in float32 and enlarged by 2^-10.
    """

    def __init__(self, x: Tensor, xb: Tensor, sq: Tensor) -> None:
        d = x.shape[1]
        grow = 1.0 + 2.0**-10
        nb = torch.empty(x.shape[0], dtype=torch.float32, device=x.device)
        r = torch.empty_like(nb)
        for a in range(0, x.shape[0], _ROWS_STEP):
            b = a + _ROWS_STEP
            xa, ba = x[a:b], xb[a:b].float()
            nb[a:b] = torch.linalg.vector_norm(ba, dim=1)
            # a - bf16(a) is exact in float32: the two are within a factor 2 (Sterbenz).
            r[a:b] = torch.linalg.vector_norm(xa - ba, dim=1)
        nb.mul_(grow)
        r.mul_(grow)
        nmax, rmax = float(nb.max()), float(r.max())
        gamma = d * _U32 / (1.0 - d * _U32)
        self.u_out = _U_BF16 / (1.0 - _U_BF16) * grow
        self.split = (r * nmax + nb * rmax + r * rmax + gamma * nb * nmax + d * 2.0**-126) * grow
        # |c~| can never exceed this (|a~| |b~| plus the accumulation and output rounding).
        self.cap = nb * nmax * (1.0 + gamma) * (1.0 + _U_BF16) * grow
        self.sq = sq
        self.sq_max, self.sq_min = float(sq.max()), float(sq.min())

    def __call__(self, rows: slice, v: Tensor) -> Tensor:
        """Band of rows ``rows`` at screened values ``v`` (``(len(rows),)`` or ``(len(rows), k)``)."""
        sq, split, cap = self.sq[rows], self.split[rows], self.cap[rows]
        if v.dim() == 2:
            sq, split, cap = sq.unsqueeze(1), split.unsqueeze(1), cap.unsqueeze(1)
        # |c~| from s~, widened for the float32 rounding of the two additions.
        c = torch.maximum(sq + self.sq_max - v, v - sq - self.sq_min) * (0.5 + 2.0**-16)
        c = c + 2.0**-20 * (sq + self.sq_max)
        c = torch.where(v > 0, torch.minimum(c, cap), cap)
        return 2.0 * (split + self.u_out * c)


def _centred(x: Tensor) -> Tensor:
    """``x`` less its column mean, in place: ``x`` is a fresh copy.

    The centre only conditions the expansion ``|a|^2 + |b|^2 - 2 a.b`` (distances do not
    depend on it), so it is summed in ``x``'s dtype a cache-sized chunk at a time and the
    chunks in float64: a float64 reduction over the columns was 20x slower.
    """
    total = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    for a in range(0, x.shape[0], _ROWS_STEP):
        total += x[a : a + _ROWS_STEP].sum(0).double()
    return x.sub_((total / max(1, x.shape[0])).to(x.dtype))


def _row_sq(x: Tensor) -> Tensor:
    """``(x * x).sum(1)`` a cache-sized chunk at a time (3x faster than one whole-size product)."""
    out = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    for a in range(0, x.shape[0], _ROWS_STEP):
        xa = x[a : a + _ROWS_STEP]
        out[a : a + _ROWS_STEP] = (xa * xa).sum(1)
    return out


def _expand(s: Tensor, sq_cols: Tensor, sq_rows: Tensor) -> Tensor:
    """``|a|^2 + |b|^2 - 2 s`` in place on float32 dot products ``s``, clamped at 0: the one
    expression every screened value comes from, which :class:`_ScreenBand` bounds."""
    torch.add(sq_cols.unsqueeze(0), s, alpha=-2.0, out=s)
    return s.add_(sq_rows.unsqueeze(1)).clamp_(min=0)


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
    n: int,
) -> tuple[Tensor, Tensor]:
    """First ``k`` entries by ``(value, index)`` from a candidate buffer.

    ``vals`` are exact B values of the buffer ``idx``; ``bound`` is a lower bound on B outside it.
    Rows where an outside entry could still tie or beat the k-th value are redone from the full
    row (``n`` values) given by ``full_rows(row_positions)``.
    """
    vals, idx = _stable_sort_rows(vals, idx)
    nbr, nval = idx[:, :k].clone(), vals[:, :k].clone()
    bad = (bound <= vals[:, k - 1]).nonzero().squeeze(1)
    if bad.numel():
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


def matrix_neighbours(q_g: Tensor, q_q: Tensor, g_g: Tensor, k1: int, chunk_size: int) -> Neighbours:
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
        nbr[r0:r1], nval[r0:r1] = _finalise(v, i, bound, k_keep, lambda rows, b=block: b[rows], block.shape[1])
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


class Stacked:
    """Query rows then gallery rows of one model, read where they are: a stack without a copy.

    Only what the search reads of its inputs: ``shape``, ``dtype``, ``device``, row gathers
    (``index_select(0, idx)`` and ``x[idx]`` with an index tensor). The stacked copy would be one
    more feature matrix in memory for the whole pass (600 MB at 1000 x 100,000 x 1536 float32).

    >>> x = Stacked(torch.zeros(2, 3), torch.ones(4, 3))
    >>> x.shape, x[torch.tensor([1, 2])].sum().item()
    ((6, 3), 3.0)
    """

    def __init__(self, query: Tensor, gallery: Tensor) -> None:
        self.query, self.gallery = query, gallery
        self.split = query.shape[0]
        self.shape = (query.shape[0] + gallery.shape[0], query.shape[1])
        self.dtype = torch.promote_types(query.dtype, gallery.dtype)
        self.device = query.device

    def index_select(self, dim: int, idx: Tensor) -> Tensor:
        if dim != 0:
            raise ValueError("Stacked gathers rows only")
        out = torch.empty((idx.numel(), self.shape[1]), dtype=self.dtype, device=self.device)
        first = idx < self.split
        k = int(first.sum())
        if bool(first[:k].all()) and self.dtype == self.query.dtype == self.gallery.dtype:
            # Query rows first, then gallery rows (a shuffle within each): two plain gathers,
            # twice as fast as the masked ones below.
            torch.index_select(self.query, 0, idx[:k], out=out[:k])
            torch.index_select(self.gallery, 0, idx[k:] - self.split, out=out[k:])
            return out
        out[first] = self.query.index_select(0, idx[first]).to(self.dtype)
        rest = ~first
        out[rest] = self.gallery.index_select(0, idx[rest] - self.split).to(self.dtype)
        return out

    def __getitem__(self, idx: Tensor) -> Tensor:
        return self.index_select(0, idx.reshape(-1)).view(*idx.shape, self.shape[1])


class _Features:
    """The fused distance ``D = sum_m w_m * ||x_m[i] - x_m[j]||`` over stacked query+gallery."""

    def __init__(
        self,
        xs: list[Tensor | Stacked],
        weights: list[float],
        perm: Tensor,
        screen: bool = False,
        gemm: SlicedGemm | None = None,
    ) -> None:
        """``xs``: the inputs in input order; rows are used in the order ``perm``. ``gemm``: an
        entered :class:`~._blas.SlicedGemm` for numpy's products (without it numpy's BLAS runs
        them on its own threads)."""
        self.xs = xs
        self.perm: Tensor | None = perm
        self.w = weights
        self.single = len(xs) == 1
        # One model: rank on float32 squared distances and refine near-ties in float64.
        # Several: sums of square roots amplify float32 error near zero, so work in float64.
        self.dtype = torch.float32 if self.single else torch.float64
        # Distances do not depend on the origin, but the expansion |a|^2 + |b|^2 - 2 a.b loses
        # about u (|a| + |b|)^2 to cancellation: on features far from the origin next to their
        # spread (un-normalised embeddings) that swamps the distances themselves. Blocks and
        # float32 values therefore work on centred (shuffled) copies; the exact float64 values
        # below read the inputs through ``perm``.
        self.xc = [_centred(x.index_select(0, perm).to(self.dtype)) for x in xs]
        if not self.single:
            # float64 centring rounds at 1e-16 relative: the centred copies also serve the exact
            # computations, and the originals need not be kept beside them.
            self.xs, self.perm = self.xc, None
        self.sq = [_row_sq(x) for x in self.xc]
        self._buf: Tensor | None = None
        self._buf2: Tensor | None = None
        self._dot_buf: Tensor | None = None
        self._mask_a: Tensor | None = None
        self._mask_t: Tensor | None = None
        self._norms: Tensor | None = None
        self.screen = screen and self.single and screening_available(self.xc[0])
        self.numpy_gemm = self.single and not self.screen and numpy_gemm_for(self.xc[0])
        self.gemm = gemm
        if self.screen:
            self.xb = self.xc[0].to(torch.bfloat16)
            self.band_screen = _ScreenBand(self.xc[0], self.xb, self.sq[0])

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

    def _reuse(self, name: str, numel: int, dtype: torch.dtype, device: torch.device) -> Tensor:
        # One buffer for every block: a fresh 100+ MiB tensor per block is a fresh mapping from
        # the OS, page-faulted and zeroed each time.
        buf = getattr(self, name)
        if buf is None or buf.numel() < numel:
            buf = torch.empty(numel, dtype=dtype, device=device)
            setattr(self, name, buf)
        return buf[:numel]

    def reserve(self, numel: int, second: int = 0) -> None:
        """Allocate the reused block buffers for blocks of up to ``numel`` entries (and a second
        float32 buffer of ``second``)."""
        if self.single:
            self._reuse("_buf", numel, self.dtype, self.xc[0].device)
            if second:
                self._reuse("_buf2", second, self.dtype, self.xc[0].device)
        if self.screen:
            self._reuse("_dot_buf", numel, self.xb.dtype, self.xb.device)

    def masks(self, numel: int) -> tuple[Tensor, Tensor]:
        """Two reused boolean buffers of ``numel`` entries."""
        dev = self.xc[0].device
        return self._reuse("_mask_a", numel, torch.bool, dev), self._reuse("_mask_t", numel, torch.bool, dev)

    def against(self, r0: int, r1: int, cols: Tensor) -> Tensor:
        """Block values of rows ``r0:r1`` against the rows ``cols`` (one model): the same
        expression as :meth:`block` (screened when the search screens), so the same band holds."""
        sqs = self.sq[0].index_select(0, cols)
        if self.screen:
            return _expand(torch.mm(self.xb[r0:r1], self.xb.index_select(0, cols).T).float(), sqs, self.sq[0][r0:r1])
        x = self.xc[0]
        s = torch.empty(r1 - r0, cols.numel(), dtype=x.dtype, device=x.device)
        self._gemm_expand(x[r0:r1], x.index_select(0, cols), sqs, s)
        return s.add_(self.sq[0][r0:r1].unsqueeze(1)).clamp_(min=0)

    def block(self, r0: int, r1: int, c0: int, screened: bool = False, buffer: str = "_buf") -> Tensor:
        """Ranking values for rows ``r0:r1`` against columns ``c0:``; monotone in ``D``.

        ``screened``: bfloat16 dot products, off by at most ``band(rows, v, screened=True)``.
        ``buffer``: the reused float32 buffer the values are written to (one model), ``"_buf"``
        or ``"_buf2"`` (for a block still needed while the next one is computed).
        """
        if screened:
            x, sq = self.xb, self.sq[0]
            shape = (r1 - r0, x.shape[0] - c0)
            dot = self._reuse("_dot_buf", shape[0] * shape[1], x.dtype, x.device).view(shape)
            torch.mm(x[r0:r1], x[c0:].T, out=dot)
            s = self._reuse(buffer, shape[0] * shape[1], sq.dtype, x.device).view(shape)
            # Widened first: a mixed-dtype add is about 10x slower than the copy and two adds.
            return _expand(s.copy_(dot), sq[c0:], sq[r0:r1])

        def squared() -> Iterator[Tensor]:
            for x, sq in zip(self.xc, self.sq):
                shape = (r1 - r0, x.shape[0] - c0)
                if self.single:
                    s = self._reuse(buffer, shape[0] * shape[1], x.dtype, x.device).view(shape)
                    self._gemm_expand(x[r0:r1], x[c0:], sq[c0:], s)
                else:
                    s = torch.addmm(sq[c0:].unsqueeze(0), x[r0:r1], x[c0:].T, alpha=-2.0)
                yield s.add_(sq[r0:r1].unsqueeze(1)).clamp_(min=0)

        return self._fuse(squared())

    def _gemm_expand(self, a: Tensor, b: Tensor, sq_b: Tensor, out: Tensor) -> Tensor:
        """``out = |b|^2 - 2 a.b`` (float32, one model), through numpy's BLAS where it is the
        faster one (:func:`~._blas.numpy_blas_preferred`), else one ``addmm``."""
        if self.numpy_gemm:
            if self.gemm is not None:
                self.gemm.matmul(a.numpy(), b.numpy().T, out.numpy())
            else:
                np.matmul(a.numpy(), b.numpy().T, out=out.numpy())
            return torch.add(sq_b.unsqueeze(0), out, alpha=-2.0, out=out)
        return torch.addmm(sq_b.unsqueeze(0), a, b.T, alpha=-2.0, out=out)

    def release(self) -> None:
        self._buf = self._buf2 = self._dot_buf = self._mask_a = self._mask_t = None
        if self.screen:
            del self.xb

    def exact_pairs(self, rows: Tensor, cols: Tensor) -> Tensor:
        """float64 ranking values of row ``rows[i]`` against ``cols[i]`` (``(m,)`` or ``(m, k)``).

        The few pairs needing this are gathered and widened a cache-sized chunk at a time, and
        ``||a - b||^2`` is summed from exact float64 differences: bit-identical for identical
        feature rows, which exact ties rely on.
        """
        cols2 = cols.reshape(rows.numel(), -1)
        m, k = cols2.shape
        if self.perm is not None:
            rows, cols2 = self.perm[rows], self.perm[cols2]

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
        """Ranking values at many pairs sorted by (row, col), in the (unscreened) block precision.

        Rows are taken ``_PAIR_ROWS`` at a time and their pairs grouped by column, as in
        :meth:`row_pairs`: each column's feature row is read once for all the range's rows that
        pair with it, and the range's own rows stay in cache (grouped by row, every pair read
        its column's row from memory: 1.6 million pairs took 0.43-0.49 s at CityFlow size, noise 3,
        now 0.14 s).
        """
        n = self.xc[0].shape[0]
        dots = [torch.empty(rows.numel(), dtype=x.dtype, device=x.device) for x in self.xc]
        bounds = torch.searchsorted(rows, torch.arange(0, n + _PAIR_ROWS, _PAIR_ROWS, device=rows.device)).tolist()
        for r0, (s, e) in zip(range(0, n, _PAIR_ROWS), zip(bounds[:-1], bounds[1:])):
            if s == e:
                continue
            m = min(_PAIR_ROWS, n - r0)
            code, order = (cols[s:e] * m + (rows[s:e] - r0)).sort()
            crow = torch.zeros(n + 1, dtype=torch.long, device=rows.device)
            crow[1:] = torch.bincount(code // m, minlength=n).cumsum(0)
            for x, out in zip(self.xc, dots):
                out[s + order] = _sampled_dots(crow, code % m, x, x[r0 : r0 + m])

        def squared() -> Iterator[Tensor]:
            for sq, dot in zip(self.sq, dots):
                yield (sq[rows] + sq[cols] - 2.0 * dot).clamp_(min=0)

        return self._fuse(squared())

    def row_pairs(self, r0: int, r1: int, cols: Tensor, fill: float) -> Tensor:
        """float32 ranking values of rows ``r0:r1`` against ``cols[i]`` (``(r1 - r0, k)``, one model).

        What a screened block's candidates are confirmed with: the same float32 error band as
        an unscreened block. Slots with column -1 (never filled) get ``fill``.
        """
        x, sq = self.xc[0], self.sq[0]
        n, m = x.shape[0], r1 - r0
        valid = cols >= 0
        # Pairs grouped by column: each column's feature row is read once for all the block rows
        # that list it (the block's own rows stay in cache), about 3x faster than by row.
        # Unfilled slots are left out of the pattern (a CSR row must not repeat an entry).
        local = torch.arange(m, device=cols.device).unsqueeze(1).expand_as(cols)[valid]
        code, order = (cols[valid] * m + local).sort()
        col, row = code // m, code % m
        crow = torch.zeros(n + 1, dtype=torch.long, device=cols.device)
        crow[1:] = torch.bincount(col, minlength=n).cumsum(0)
        dot = _sampled_dots(crow, row, x, x[r0:r1])
        vals = torch.empty_like(dot)
        vals[order] = (sq[r0 + row] + sq[col] - 2.0 * dot).clamp_(min=0)
        v = torch.full(cols.shape, fill, dtype=x.dtype, device=x.device)
        v[valid] = vals
        return v

    def rows32(self, rows: Tensor) -> Tensor:
        """float32 ranking values of whole rows, ``(len(rows), N)`` (one model)."""
        x, sq = self.xc[0], self.sq[0]
        return torch.addmm(sq.unsqueeze(0), x[rows], x.T, alpha=-2.0).add_(sq[rows].unsqueeze(1)).clamp_(min=0)

    def exact_rows(self, rows: Tensor) -> Tensor:
        """float64 ranking values of whole rows, ``(len(rows), N)``."""

        def squared() -> Iterator[Tensor]:
            perm = self.perm
            for x in self.xs:
                a = x[rows if perm is None else perm[rows]].double()
                sa = (a * a).sum(1, keepdim=True)
                parts = []
                step = max(1, _PAIR_BUDGET // x.shape[1])
                for c0 in range(0, x.shape[0], step):
                    b = x[c0 : c0 + step] if perm is None else x[perm[c0 : c0 + step]]
                    b = b.double()
                    parts.append(sa + (b * b).sum(1) - 2.0 * a @ b.T)
                yield torch.cat(parts, 1).clamp_(min=0)

        return self._fuse(squared())

    def key(self, v: Tensor) -> Tensor:
        """float32 squared fused distance from float64 ranking values, as the reference squares."""
        d = self.w[0] * v.sqrt() if self.single else v
        return (d * d).to(torch.float32)

    def band(self, rows: slice, v: Tensor, screened: bool) -> Tensor | float:
        """Error bound of block values ``v`` of rows ``rows``: :meth:`radius`, or when
        ``screened`` the screening band at ``v`` plus it (covering values of either precision).
        """
        rad = self.radius(rows)
        if not screened:
            return rad if v.dim() == 1 or not torch.is_tensor(rad) else rad.unsqueeze(1)
        return self.band_screen(rows, v) + (rad if v.dim() == 1 else rad.unsqueeze(1))

    def radius(self, rows: slice) -> Tensor | float:
        """Error bound of an unscreened ``block`` in the ranking space (0 for the float64 path)."""
        if not self.single:
            return 0.0
        if self._norms is None:
            self._norms = self.sq[0].sqrt()
            self._norm_max = float(self._norms.max())
        # Measured float32 GEMM error stays below ~4 u (|a| + |b|)^2 at d = 1536 (blocked FMA
        # sums); the band treated as a possible tie is (sqrt(d) / 2 + 8) u, ~7x that.
        eps = (0.5 * math.sqrt(self.xc[0].shape[1]) + 8.0) * _U32
        return eps * (self._norms[rows] + self._norm_max) ** 2


def _padded(parts: list[tuple[Tensor, Tensor, Tensor]], r0: int, m: int, fill: float) -> tuple[Tensor, Tensor]:
    """Ragged entries of rows ``r0:r0 + m`` as ``(m, w)`` values and columns, ``w`` the longest
    row; unused slots hold ``fill`` and column -1. Each part is ``(rows, cols, vals)`` sorted
    by row, so a slot is the part's offset in the row plus the entry's rank in its run (no sort)."""
    rows = [r.long() - r0 for r, _, _ in parts]
    counts = [torch.bincount(r, minlength=m) for r in rows]
    total = torch.stack(counts).sum(0)
    w = max(1, int(total.max()))
    dev, dtype = parts[0][2].device, parts[0][2].dtype
    pv = torch.full((m * w,), fill, dtype=dtype, device=dev)
    pi = torch.full((m * w,), -1, dtype=torch.long, device=dev)
    base = torch.zeros(m, dtype=torch.long, device=dev)
    for r, count, (_, c, v) in zip(rows, counts, parts):
        if r.numel():
            first = base - (count.cumsum(0) - count)
            slot = r * w + first.index_select(0, r) + torch.arange(r.numel(), device=dev)
            pv.index_copy_(0, slot, v.to(dtype))
            pi.index_copy_(0, slot, c.long())
        base += count
    return pv.view(m, w), pi.view(m, w)


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


class _FeatureSearch:
    """One pass over the upper triangle of the distance matrix, in row blocks.

    Every index is a position in the shuffled order (see :func:`_spread`) until
    :meth:`neighbours` maps the result back to the input order. Row block ``r0:r1`` is compared
    with columns ``r0:`` only: the block's rows are complete once it is done (their earlier
    columns came, as column candidates, from the earlier blocks), and later rows receive the
    block's columns as candidates.

    Per row it keeps, besides its own block's ``k_buf`` nearest:

    - column candidates: from each earlier block, the ``_column_k`` nearest of that block, and
      in ``lb`` the smallest value a block left out (a lower bound on everything not kept);
    - its ``max_keep`` largest values and their columns, from which the exact maximum follows.

    Large one-model CPU searches (``capture``) keep neither: each block is compared with per-row
    thresholds from sampled columns (:meth:`_thresholds`), and what falls below or above them
    is captured for the rows concerned (:meth:`_capture`).
    """

    def __init__(
        self,
        xs: list[Tensor | Stacked],
        weights: list[float],
        nq: int,
        k1: int,
        k2: int,
        chunk: int,
        gemm: SlicedGemm | None = None,
    ) -> None:
        n = xs[0].shape[0]
        device = xs[0].device
        self.n, self.nq, self.chunk, self.device = n, nq, chunk, device
        self.perm = _spread(nq, n, device)
        self.inv = torch.empty_like(self.perm)
        self.inv[self.perm] = torch.arange(n, device=device)
        self.inv_g = self.inv[nq:] - nq
        self.f = _Features(list(xs), weights, self.perm, screen=True, gemm=gemm)
        # The caller's list lets go of its inputs: with several models the float64 copies
        # replace them, so nothing else holds them during the pass.
        xs.clear()
        self.screen = self.f.screen
        self.k_keep = min(k1 + 1, n)
        # At least one beyond k1 + 1: the check at the last cut reads the value after it.
        self.k_buf = min(self.k_keep + max(1, _SCREEN_MARGIN if self.screen else _MARGIN), n)
        # What the column lists must deliver: a screened row needs its whole buffer's band.
        self.k_need = self.k_buf if self.screen else self.k_keep
        self.max_keep = _MAX_KEEP * (_SCREEN_KEEP if self.screen else 1)
        self.cuts = _cuts(k1, k2, n)
        self.unit_key = self.f.single and self.f.w[0] == 1.0
        self.capture = self.f.single and device.type == "cpu" and _CAPTURE_ROWS <= n <= _CAPTURE_MAX_ROWS
        blocks = list(self._blocks())
        # The sample is the first gallery block (see _thresholds) when it follows a single query
        # block and is large enough; else sampled columns are compared with every row first.
        self.block_sample = (
            self.capture and len(blocks) > 1 and blocks[0] == (0, nq) and blocks[1][1] - nq >= _SAMPLE // 2
        )
        if self.capture and not self.block_sample:
            self.capture = self._thresholds(self._sampled_values())
        # Captured entries of earlier blocks for later rows, per list ("near", "far"): chunks of
        # (row, column, value) sorted by row, and how far each has been handed out.
        self._pending: dict[str, list[list]] = {"near": [], "far": []}
        self.nbr = torch.empty(n, self.k_keep, dtype=torch.long, device=device)
        self.nval = torch.empty(n, self.k_keep, dtype=torch.float32, device=device)
        self.qg = torch.empty(nq, n - nq, dtype=torch.float32, device=device)
        self.row_max = torch.empty(n, dtype=torch.float32, device=device)
        # Blocks whose lists wait for rows' maxima (see _settle_deferred), and those rows.
        self._deferred: list[tuple[Tensor, Tensor, int, int, bool]] = []
        self._waiting: list[Tensor] = []
        if not self.capture:
            self._start_top_k()

    def _start_top_k(self) -> None:
        """The per-row arrays of the top-k path (the search does not capture)."""
        n, dt, device = self.n, self.f.dtype, self.device
        # Column candidates are appended block after block at a shared offset and merged with
        # a row's own top-k once, when its block comes; compacted only if they overflow.
        self.width = max(_CAND_SLOTS * self.k_buf, 2 * self.k_buf)
        self.cand_v = torch.empty((n, self.width), dtype=dt, device=device)
        # int32 columns: the largest array of the pass (n x width), 4 bytes an entry saved.
        self.cand_i = torch.empty((n, self.width), dtype=torch.int32 if n < 2**31 else torch.long, device=device)
        self.off = 0
        self.lb = torch.full((n,), math.inf, dtype=dt, device=device)
        self.top_v = torch.full((n, self.max_keep), -math.inf, dtype=dt, device=device)
        self.top_i = torch.full((n, self.max_keep), -1, dtype=torch.long, device=device)

    # --- the pass ------------------------------------------------------------------------

    def run(self) -> Neighbours:
        blocks = list(self._blocks())
        # The largest block first: growing the buffers later would leave the smaller ones behind
        # (the query block comes first and is often the smaller).
        second = self.nq * self.n if self.block_sample else 0
        self.f.reserve(max((r1 - r0) * (self.n - r0) for r0, r1 in blocks), second=second)
        first = []
        if self.block_sample:
            # The query block waits in the second buffer while the first gallery block, the
            # sample, is computed; the thresholds come from the two.
            (_, r1), (g0, g1) = blocks[:2]
            first = [(0, r1, self.f.block(0, r1, 0, False, buffer="_buf2"))]
            first.append((g0, g1, self.f.block(g0, g1, g0, self.screen)))
            self.capture = self._thresholds(self._block_sample_values(first[0][2], first[1][2], g0, g1))
            if not self.capture:
                self.f._buf2 = self.f._mask_a = self.f._mask_t = None
                self._start_top_k()
        for b, (r0, r1) in enumerate(blocks):
            # Query blocks stay float32: their values are the query-gallery output.
            screened = self.screen and r0 >= self.nq
            s = first[b][2] if b < len(first) else self.f.block(r0, r1, r0, screened)
            if b < len(first):
                first[b] = None
            if self.capture:
                cv, ci = self._capture(s, r0, r1, screened)
                self._store_query_block(s, r0, r1)
                del s
                self._finalise_block(cv, ci, r0, r1, screened)
                if r0 == 0:
                    self.f._buf2 = None
                continue
            cv, ci = self._row_candidates(s, r0, r1)
            self._keep_largest(s, r0, r1)
            if r1 < self.n:
                self._push_columns(s[:, r1 - r0 :], r0, r1, screened)
            waiting = self._set_row_max(r0, r1, screened)
            self._store_query_block(s, r0, r1)
            del s
            if waiting.numel():
                # Nothing later in the pass reads this block's lists: they can wait for the
                # rows' maxima, which the next batch of full rows settles.
                self._deferred.append((cv, ci, r0, r1, screened))
                self._waiting.append(waiting)
                if sum(w.numel() for w in self._waiting) >= _DEFER_ROWS:
                    self._settle_deferred()
            else:
                self._finalise_block(cv, ci, r0, r1, screened)
        self._settle_deferred()
        return self._neighbours()

    def _blocks(self) -> Iterator[tuple[int, int]]:
        """Row blocks ``(r0, r1)``: the queries, then the gallery, ``chunk`` rows at a time.

        No block mixes the two: a query block's float32 GEMM would otherwise also cover gallery
        rows that bfloat16 screening serves at a quarter of the cost.
        """
        for a, b in ((0, self.nq), (self.nq, self.n)):
            for r0 in range(a, b, self.chunk):
                yield r0, min(r0 + self.chunk, b)

    def _settle_deferred(self) -> None:
        """Maxima of the waiting rows from their full rows, then the waiting blocks' lists."""
        if not self._waiting:
            return
        rows = torch.cat(self._waiting)
        for a in range(0, rows.numel(), _DEFER_ROWS):
            u = rows[a : a + _DEFER_ROWS]
            # No zero check: the provisional maximum, a lower bound, passed it in _set_row_max.
            self.row_max[u] = self.f.key(self._full_row_max(u))
        for block in self._deferred:
            self._finalise_block(*block)
        self._deferred, self._waiting = [], []

    # --- capture thresholds ---------------------------------------------------------------

    def _sampled_values(self) -> tuple[int, Iterator[tuple[int, int, Tensor]]]:
        """Sample values of every row against every ``step``-th row of the shuffled order,
        screened, ``_PAIR_ROWS`` rows at a time: ``(m, chunks of (a, b, values))``."""
        f, n = self.f, self.n
        samp = torch.arange(0, n, max(1, n // _SAMPLE), device=self.device)

        def chunks() -> Iterator[tuple[int, int, Tensor]]:
            for a in range(0, n, _PAIR_ROWS):
                b = min(a + _PAIR_ROWS, n)
                yield a, b, f.against(a, b, samp)

        return samp.numel(), chunks()

    def _block_sample_values(
        self, sq: Tensor, sg: Tensor, g0: int, g1: int
    ) -> tuple[int, Iterator[tuple[int, int, Tensor]]]:
        """Sample values of every row against the rows ``g0:g1`` of the first gallery block,
        read from the blocks already computed: the query block ``sq`` (its columns ``g0:g1``,
        float32) and the gallery block ``sg`` (its columns, screened)."""

        def chunks() -> Iterator[tuple[int, int, Tensor]]:
            for a in range(0, g0, _PAIR_ROWS):
                b = min(a + _PAIR_ROWS, g0)
                yield a, b, sq[a:b, g0:g1].contiguous()
            for a in range(g0, self.n, _PAIR_ROWS):
                b = min(a + _PAIR_ROWS, self.n)
                yield a, b, _transposed(sg[:, a - g0 : b - g0])

        return g1 - g0, chunks()

    def _thresholds(self, sample: tuple[int, Iterator[tuple[int, int, Tensor]]]) -> bool:
        """Per-row thresholds from sampled columns; whether the search uses them.

        ``sample`` is ``m`` and the values of every row against ``m`` sampled columns: the rows
        of the first gallery block, or every ``step``-th row of the shuffled order (either way
        a uniform sample of the row's values, whatever the features, as the shuffle does not
        depend on them). For row ``i`` with sample values ``w`` (in the block precision; a
        screened search's query rows have float32 ones, which the screened band also covers;
        ``band`` is the screened band when the search screens, else the float32 radius):

        - ``near[i]``: the ``j``-th smallest of ``w``. At least ``j`` values of the row are at
          most it, so a block entry is *captured* for the row's near list when its block value
          is ``<= near[i]``, and every entry not captured has an exact value of at least
          ``lb[i] = near[i] - band(near[i])``;
        - ``far[i]``: ``max(w) - band(max(w))`` is a lower bound on the exact maximum, and an
          entry whose block value is below ``far[i] = max(w) - band(max(w)) - band_max`` (the
          band's largest value for the row) has an exact value below that bound: it can neither
          be the maximum nor tie it. Entries at or above ``far[i]`` are captured for the far list.

        Returns False (top-k selections instead) when the sample predicts more than
        ``_CAPTURE_LIMIT * k_buf`` captures per row on average.
        """
        f, n = self.f, self.n
        m, chunks = sample
        p = min(1.0, m / n)
        mean = self.k_buf * p
        j = max(1, min(m, math.ceil(mean + _CAPTURE_SD * math.sqrt(mean * (1.0 - p))) + 1))
        near = torch.empty(n, dtype=torch.float32, device=self.device)
        far = torch.empty_like(near)
        count = torch.zeros(n, dtype=torch.int32, device=self.device)
        for a, b, w in chunks:
            near[a:b] = _select(w, j, dim=1)[0].amax(1)
            far[a:b] = self._far_bound(slice(a, b), w.amax(1))
            count[a:b] = (w <= near[a:b].unsqueeze(1)).sum(1, dtype=torch.int32)
            count[a:b] += (w >= far[a:b].unsqueeze(1)).sum(1, dtype=torch.int32)
        if float(count.double().mean()) * (n / m) > _CAPTURE_LIMIT * self.k_buf:
            return False
        self.near, self.far = near, far
        self.lb = near - f.band(slice(0, n), near, screened=self.screen)
        return True

    def _far_bound(self, rows: slice, top: Tensor) -> Tensor:
        """The far threshold of rows ``rows`` from their largest sample values ``top``.

        ``low = top - band(top)`` is at most the row's exact maximum. An entry of block value
        ``v`` can reach it only if ``v + band(v) >= low``. For ``v > 0``, ``v + band(v)`` grows
        with ``v`` (the band's slope is below 2^-7), so when ``t = low - band(low)`` has
        ``t + band(t) < low`` and no value ``v <= 0`` can reach ``low`` either (``band_max <
        low``), every entry below ``t`` is out: ``t`` is the threshold. Otherwise it is
        ``low - band_max``, which holds for any ``v``.
        """
        f = self.f
        widest = f.band(rows, torch.zeros_like(top), screened=self.screen)
        low = top - f.band(rows, top, screened=self.screen)
        t = low - f.band(rows, low, screened=self.screen)
        # The margin covers the float32 rounding of the band's own arithmetic.
        slack = low * (1.0 - 2.0**-20)
        ok = (t > 0) & (t + f.band(rows, t, screened=self.screen) < slack) & (widest < slack)
        return torch.where(ok, t, low - widest)

    def _capture(self, s: Tensor, r0: int, r1: int, screened: bool) -> tuple[Tensor, Tensor]:
        """Capture block ``s``'s entries against the thresholds: the block's rows get their near
        buffers (returned, as :meth:`_row_candidates` does) and their maxima (set); entries for
        later rows wait in ``_pending`` for those rows' blocks.

        Each row's captured set is complete when its block comes: its columns from ``r0`` on are
        in its own block row, the earlier ones were captured, as columns, by the earlier blocks.
        """
        n, rb = self.n, r1 - r0
        width = s.shape[1]
        near, far = self.near, self.far
        step = max(1, _CAPTURE_STEP // width)
        ma, mt = self.f.masks(min(rb, step) * width)
        # One mask of the entries some list captures, its own rows' lists and, along the
        # columns from r1 on, the later rows' (comparisons into reused buffers, no temporary
        # per comparison), then one scan for the positions; which list wants an entry is then
        # decided on the few captured. A few rows at a time (about _CAPTURE_STEP entries), so
        # that the comparisons after the first find the values and the masks in cache.
        flats = []
        for a in range(0, rb, step):
            b = min(a + step, rb)
            sa = s[a:b]
            hit, tmp = ma[: sa.numel()].view(sa.shape), mt[: sa.numel()].view(sa.shape)
            torch.le(sa, near[r0 + a : r0 + b].unsqueeze(1), out=hit)
            torch.ge(sa, far[r0 + a : r0 + b].unsqueeze(1), out=tmp)
            hit |= tmp
            if r1 < n:
                # The block's row is the later rows' column.
                later_s, later_m, later_t = sa[:, rb:], hit[:, rb:], tmp[:, rb:]
                torch.le(later_s, near[r1:].unsqueeze(0), out=later_t)
                later_m |= later_t
                torch.ge(later_s, far[r1:].unsqueeze(0), out=later_t)
                later_m |= later_t
            flats.append(_true_positions(hit.view(-1)) + a * width)
        flat = torch.cat(flats)
        v = s.view(-1).index_select(0, flat)
        i = flat // width
        c = flat - i * width
        row, col = i + r0, c + r0
        own = {
            "near": (v <= near.index_select(0, row)).nonzero().squeeze(1),
            "far": (v >= far.index_select(0, row)).nonzero().squeeze(1),
        }
        if r1 < n:
            # Entries for later rows: the destination row is the entry's column.
            lat = (c >= rb).nonzero().squeeze(1)
            dest, src, v2 = col.index_select(0, lat), row.index_select(0, lat), v.index_select(0, lat)
            for name, thr, keep in (("near", near, torch.le), ("far", far, torch.ge)):
                sel = keep(v2, thr.index_select(0, dest)).nonzero().squeeze(1)
                d, o = dest.index_select(0, sel).to(torch.int32).sort()
                if d.numel():
                    o = sel.index_select(0, o)
                    self._pending[name].append([d, src.index_select(0, o).to(torch.int32), v2.index_select(0, o), 0])
        out = {}
        for name, fill in (("near", math.inf), ("far", -math.inf)):
            e = own[name]
            parts = [(row.index_select(0, e), col.index_select(0, e), v.index_select(0, e))]
            parts += self._handed_out(name, r1)
            out[name] = _padded(parts, r0, rb, fill)
        self._capture_max(r0, r1, out["far"][1], out["far"][0], screened)
        return self._near_buffer(*out["near"])

    def _handed_out(self, name: str, r1: int) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Pending entries of ``name`` for rows before ``r1`` (all rows from the current block
        on have not been handed out yet), removed from the pending chunks."""
        out, left = [], []
        for chunk in self._pending[name]:
            dest, src, val, pos = chunk
            end = int(torch.searchsorted(dest, r1))
            if end > pos:
                out.append((dest[pos:end], src[pos:end], val[pos:end]))
            chunk[3] = end
            if end < dest.numel():
                left.append(chunk)
        self._pending[name] = left
        return out

    def _near_buffer(self, pv: Tensor, pi: Tensor) -> tuple[Tensor, Tensor]:
        """The ``k_buf`` smallest captured entries per row, sorted (padded with inf / -1)."""
        k_buf = self.k_buf
        if pv.shape[1] >= k_buf:
            top = torch.topk(pv, k_buf, dim=1, largest=False)
            return top.values, pi.gather(1, top.indices)
        v, o = pv.sort(dim=1)
        pad = k_buf - pv.shape[1]
        cv = torch.cat([v, v.new_full((v.shape[0], pad), math.inf)], 1)
        ci = torch.cat([pi.gather(1, o), pi.new_full((v.shape[0], pad), -1)], 1)
        return cv, ci

    def _capture_max(self, r0: int, r1: int, cols: Tensor, vals: Tensor, screened: bool) -> None:
        """Exact row maxima of the block's rows from their far lists (see :meth:`_thresholds`):
        every column that could be a row's maximum was captured."""
        f = self.f
        rows = torch.arange(r0, r1, device=self.device)
        if screened:
            # A gallery row's far list mixes float32 values (from the query block) and screened
            # ones; the screened band covers both. The exact maximum is at least every entry's
            # ``v - band(v)``, so an entry with ``v + band(v)`` below the largest of those can
            # neither be the maximum nor tie it: only the others are confirmed in float32.
            rows_s = slice(r0, r1)
            band = f.band(rows_s, vals, screened=True)
            best = (vals - band).amax(1, keepdim=True)
            cols = cols.masked_fill(vals + band < best, -1)
            vals = f.row_pairs(r0, r1, cols, -math.inf)
        v = vals
        mx = self._exact_max(rows, cols, v)
        key = f.key(mx)
        _check_row_max(key, r0, "stacked distance")
        self.row_max[r0:r1] = key

    def _row_candidates(self, s: Tensor, r0: int, r1: int) -> tuple[Tensor, Tensor]:
        """The ``k_buf`` smallest of each row's own block and its stored column candidates."""
        k_buf = self.k_buf
        tv, ti = _select(s, min(k_buf, self.n - r0), dim=1)
        cv = torch.cat([tv, self.cand_v[r0:r1, : self.off]], 1)
        ci = torch.cat([ti + r0, self.cand_i[r0:r1, : self.off].long()], 1)
        if cv.shape[1] < k_buf:
            # Fewer candidates than slots (cut column lists on a tiny problem): pad, and the
            # bound in _finalise_block sends the row to the full-row path.
            pad = k_buf - cv.shape[1]
            cv = torch.cat([cv, cv.new_full((r1 - r0, pad), math.inf)], 1)
            ci = torch.cat([ci, ci.new_full((r1 - r0, pad), -1)], 1)
        top = torch.topk(cv, k_buf, dim=1, largest=False)
        return top.values, ci.gather(1, top.indices)

    def _keep_largest(self, s: Tensor, r0: int, r1: int) -> None:
        """Merge the block's largest values into ``top_v``/``top_i``, along rows and columns."""

        def merge(rows: slice, vals: Tensor, idx: Tensor) -> None:
            v = torch.cat([self.top_v[rows], vals], 1)
            i = torch.cat([self.top_i[rows], idx], 1)
            t = torch.topk(v, self.max_keep, dim=1)
            self.top_v[rows], self.top_i[rows] = t.values, i.gather(1, t.indices)

        k = min(self.max_keep, s.shape[1])
        t = torch.topk(s, k, dim=1)
        merge(slice(r0, r1), t.values, t.indices + r0)
        if r1 < self.n:
            rest = s[:, r1 - r0 :]
            tv, ti = _select(rest, min(self.max_keep, r1 - r0), dim=0, largest=True)
            merge(slice(r1, None), tv.T, ti.T + r0)

    def _push_columns(self, rest: Tensor, r0: int, r1: int, screened: bool) -> None:
        """Hand the block's few nearest of every later row (a column of ``rest``) to that row.

        ``lb`` receives a lower bound on the exact values the list leaves out: the list's last
        value less the block's error band (the band of a pair holds for either of its rows).
        """
        kc = _column_k(self.k_need, self.k_buf, r1 - r0, self.n)
        tv, ti = _select(rest, kc, dim=0)
        if kc < r1 - r0:
            last = tv.amax(0)
            low = last - self.f.band(slice(r1, None), last, screened)
            torch.minimum(self.lb[r1:], low, out=self.lb[r1:])
        off, k_buf = self.off, self.k_buf
        if off + kc > self.width:
            top = torch.topk(self.cand_v[r1:, :off], k_buf, dim=1, largest=False)
            self.cand_i[r1:, :k_buf] = self.cand_i[r1:, :off].gather(1, top.indices)
            self.cand_v[r1:, :k_buf] = top.values
            off = k_buf
        self.cand_v[r1:, off : off + kc] = tv.T
        self.cand_i[r1:, off : off + kc] = ti.T + r0
        self.off = off + kc

    def _set_row_max(self, r0: int, r1: int, screened: bool) -> Tensor:
        """``max_j float32(D[i, j] ** 2)`` exactly, for the block's (now complete) rows.

        The maximum divides the whole row, so an error in it cannot reorder the row, but it can
        decide whether two neighbouring float32 values become equal after the division (a tie,
        then broken by index). With one model the block values are float32, so the maximum is
        taken over float64 values of the candidates: every column whose block value is within
        twice the error radius of the largest is among the kept, or the row's maximum is taken
        from its full row (float32, then float64 for the columns near its largest). A screened
        row first confirms its kept columns in float32.

        Returns the rows of a screened block whose maximum needs their full row: it is set by
        :meth:`_settle_deferred`, for many rows at once. (A query block's values go into the
        output now, so its rows are settled here.)
        """
        f = self.f
        waiting = torch.empty(0, dtype=torch.long, device=self.device)
        if f.single:
            rows = torch.arange(r0, r1, device=self.device)
            rows_s = slice(r0, r1)
            cols, top = self.top_i[r0:r1], self.top_v[r0:r1]
            v = f.row_pairs(r0, r1, cols, -math.inf) if screened else top.masked_fill(cols < 0, -math.inf)
            mx = self._exact_max(rows, cols, v)
            # Everything not kept is at most the last kept value plus its band.
            high = top[:, -1] + f.band(rows_s, top[:, -1], screened)
            unsure = ((cols[:, -1] >= 0) & (high >= top[:, 0] - f.band(rows_s, top[:, 0], screened))).nonzero()
            unsure = rows[unsure.squeeze(1)]
            if screened:
                # Their kept columns' maximum stands in (a lower bound) until they are settled.
                waiting = unsure
            else:
                for a in range(0, unsure.numel(), _DEFER_ROWS):
                    u = unsure[a : a + _DEFER_ROWS]
                    mx[u - r0] = self._full_row_max(u)
        else:
            mx = self.top_v[r0:r1, 0].to(torch.float64)
        key = f.key(mx)
        _check_row_max(key, r0, "stacked distance")
        self.row_max[r0:r1] = key
        return waiting

    def _full_row_max(self, rows: Tensor) -> Tensor:
        """float64 maximum of whole rows (one model): their float32 rows, then the columns near
        each row's largest in float64."""
        f = self.f
        t = torch.topk(f.rows32(rows), min(self.max_keep, self.n), dim=1)
        mx = self._exact_max(rows, t.indices, t.values)
        if self.max_keep < self.n:
            # Even the full float32 row cannot single out its largest (many equal far points):
            # float64 over the whole row.
            flat = (t.values[:, -1] >= t.values[:, 0] - 2 * f.radius(rows)).nonzero().squeeze(1)
            for a in range(0, flat.numel(), _FULL_ROWS):
                p = flat[a : a + _FULL_ROWS]
                mx[p] = f.exact_rows(rows[p]).amax(1)
        return mx

    def _exact_max(self, rows: Tensor, cols: Tensor, v: Tensor) -> Tensor:
        """float64 maximum of each row over the columns whose float32 value ``v`` is within twice
        the float32 radius of the row's largest (slots with column -1 are ignored)."""
        f = self.f
        v, o = v.sort(dim=1, descending=True)
        near = v >= v[:, :1] - 2 * f.radius(rows).unsqueeze(1)
        kn = int(near.sum(1).max())
        cols = cols.gather(1, o)[:, :kn].masked_fill(~near[:, :kn], -1)
        return f.exact_pairs(rows, cols.clamp(min=0)).masked_fill_(cols < 0, -math.inf).amax(1)

    def _to_b(self, v: Tensor, rows: Tensor) -> Tensor:
        """B values (float32 squared fused distance over the row maximum) from ranking values."""
        if v.dtype == torch.float32 and self.unit_key:
            # float32(sqrt(v) ** 2) computed in float64 is v itself for a float32 v.
            return v / self.row_max[rows].unsqueeze(1)
        return self.f.key(v.to(torch.float64)) / self.row_max[rows].unsqueeze(1)

    def _store_query_block(self, s: Tensor, r0: int, r1: int) -> None:
        """The block's query rows of ``B[query, gallery]``, rows and columns in input order."""
        nq = self.nq
        rows = torch.arange(r0, r1, device=self.device)
        # float64 temporaries of the query block are kept to a few rows at a time.
        for a in range(r0, min(r1, nq), 256):
            b = min(a + 256, r1, nq)
            vals = self._to_b(s[a - r0 : b - r0, nq - r0 :], rows[a - r0 : b - r0])
            # Rows go straight to their input positions: no reordered copy of the block later.
            self.qg.index_copy_(0, self.perm[a:b], vals.index_select(1, self.inv_g))

    def _full_rows(self, rows: Tensor) -> Tensor:
        """float32 B of whole rows from float64 distances, columns in input order."""
        return self._to_b(self.f.exact_rows(rows), rows).index_select(1, self.inv)

    def _finalise_block(self, cv: Tensor, ci: Tensor, r0: int, r1: int, screened: bool) -> None:
        """Neighbour lists of the block's rows from their candidate buffers ``cv``/``ci``."""
        f, k_keep = self.f, self.k_keep
        rows = torch.arange(r0, r1, device=self.device)
        lb = self.lb[r0:r1]
        # A lower bound on every exact value left out of the buffer. A screened buffer mixes
        # values of both precisions; the screened band covers both.
        cut = cv[:, -1]
        outside = lb if self.k_buf == self.n else torch.minimum(cut - f.band(slice(r0, r1), cut, screened), lb)
        if screened:
            # The buffer was chosen on screened values; its ranking comes from float32 ones.
            cv = f.row_pairs(r0, r1, ci, math.inf)
            cv, o = cv.sort(dim=1)
            ci = ci.gather(1, o)
        if not f.single:
            self.nbr[r0:r1], self.nval[r0:r1] = _finalise(
                self._to_b(cv, rows),
                self.perm[ci],
                self._to_b(outside.unsqueeze(1), rows)[:, 0],
                k_keep,
                lambda p: self._full_rows(rows[p]),
                self.n,
            )
            return
        # float32 values: a row is settled when, even moved by the error radius, nothing
        # outside can reach its k_keep-th value and no cut separates values that could round
        # to the same float32 B.
        rad = f.radius(slice(r0, r1))
        sure = outside > (cv[:, k_keep - 1] + rad) * (1 + _REL_GAP)
        for c in self.cuts:
            sure &= cv[:, c] - rad > (cv[:, c - 1] + rad) * (1 + _REL_GAP)
        self.nbr[r0:r1], self.nval[r0:r1] = self.perm[ci[:, :k_keep]], self._to_b(cv[:, :k_keep], rows)
        outside_ok = outside > (cv[:, k_keep - 1] + rad) * (1 + _REL_GAP)
        # Rows that only a close cut unsettles: float64 for the values around that cut.
        near = (outside_ok & ~sure).nonzero().squeeze(1)
        if near.numel():
            near = near[self._settle_cuts(rows[near], cv[near], ci[near], rad[near])]
        unsure = torch.cat([(~outside_ok).nonzero().squeeze(1), near])
        if not unsure.numel():
            return
        ur = rows[unsure]
        # float64 for the first k_keep + _MARGIN of the buffer only (a screened buffer is longer);
        # every exact value past them is at least the next float32 value less the band.
        m = min(k_keep + _MARGIN, cv.shape[1])
        low = outside[unsure]
        if m < cv.shape[1]:
            low = torch.minimum(low, cv[unsure, m] - rad[unsure])
        # Slots never filled (index -1) stay last.
        cu = ci[unsure, :m]
        exact = f.exact_pairs(ur, cu.clamp(min=0)).masked_fill_(cu < 0, math.inf)
        bound = self._to_b(low.clamp(min=0).unsqueeze(1), ur)[:, 0]
        self.nbr[ur], self.nval[ur] = _finalise(
            self._to_b(exact, ur),
            self.perm[cu],
            bound,
            k_keep,
            lambda p: self._full_rows(ur[p]),
            self.n,
        )

    def _settle_cuts(self, rows: Tensor, cv: Tensor, ci: Tensor, rad: Tensor) -> Tensor:
        """Lists of rows whose buffer holds everything up to the k_keep-th value but where a cut
        falls between float32 values too close to order: float64 values for those only.

        ``cv`` are sorted float32 values of the buffers ``ci``, off by at most ``rad``. For a cut
        ``c``, a position ``p < c`` certainly precedes position ``c`` (exactly, and after
        rounding to B) when ``(cv[p] + rad)(1 + gap) < cv[c] - rad``; as ``cv`` is sorted it then
        precedes every position ``>= c``, and so is among the first ``c``. Likewise a position
        ``q >= c`` with ``cv[q] - rad > (cv[c - 1] + rad)(1 + gap)`` follows all of the first
        ``c``. Only the window between, a few positions around the cut, needs exact values: the
        first ``c`` are the positions before the window and the best of the window by exact
        ``(B, index)``. Windows that meet are merged (each cut's argument holds for a larger
        window), and each window is sorted in place by its exact values; outside the windows no
        cut separates two positions, so their float32 order stands.

        Returns, per row, whether it was left to the caller: a window reaching the end of the
        buffer could continue beyond it.
        """
        f, k_keep = self.f, self.k_keep
        m = cv.shape[1]
        radu = rad.unsqueeze(1)
        pos = torch.arange(m, device=cv.device).expand(cv.shape[0], m)
        inwin = torch.zeros(cv.shape, dtype=torch.bool, device=cv.device)
        left = torch.zeros(cv.shape[0], dtype=torch.bool, device=cv.device)
        upper = (cv + radu) * (1 + _REL_GAP)
        lower = cv - radu
        for c in self.cuts:
            # The same comparisons as the settled test, position by position (monotone in p).
            lo = c - (upper[:, :c] >= lower[:, c : c + 1]).sum(1)
            hi = c + (lower[:, c:] <= upper[:, c - 1 : c]).sum(1)
            left |= hi >= m
            inwin |= (pos >= lo.unsqueeze(1)) & (pos < hi.unsqueeze(1))
        keep = ~left
        rows, cv, ci, inwin, pos = rows[keep], cv[keep], ci[keep], inwin[keep], pos[keep]
        if rows.numel():
            r, p = inwin.nonzero(as_tuple=True)
            b = self._to_b(cv, rows)
            b[r, p] = self._to_b(f.exact_pairs(rows[r], ci[r, p]).unsqueeze(1), rows[r])[:, 0]
            # Each merged window is one segment, named by its first position; every other
            # position is a segment of its own.
            start = inwin.clone()
            start[:, 1:] &= ~inwin[:, :-1]
            seg = torch.where(start, pos, -1).cummax(dim=1).values
            seg = torch.where(inwin, seg, pos)
            idx = self.perm[ci]
            o = idx.argsort(dim=1)
            o = o.gather(1, b.gather(1, o).sort(dim=1, stable=True).indices)
            o = o.gather(1, seg.gather(1, o).sort(dim=1, stable=True).indices)[:, :k_keep]
            self.nbr[rows], self.nval[rows] = idx.gather(1, o), b.gather(1, o)
        return left

    # --- the result ----------------------------------------------------------------------

    def _neighbours(self) -> Neighbours:
        """The lists in input order; row ``i`` of the shuffled order is input row ``perm[i]``."""
        perm = self.perm
        self.f.release()
        self.cand_v = self.cand_i = self.top_v = self.top_i = None
        nbr = torch.empty_like(self.nbr)
        nbr[perm] = self.nbr
        nval = torch.empty_like(self.nval)
        nval[perm] = self.nval
        out_max = torch.empty_like(self.row_max)
        out_max[perm] = self.row_max
        self.out_max = out_max
        qg = self.qg
        self.nbr = self.nval = self.qg = None
        # Only the block-precision features are needed from here on (the shuffled copies: a
        # second set in input order would double the float64 memory of a fused ensemble).
        self.f.xs, self.f.perm = self.f.xc, None
        return Neighbours(nbr=nbr, nval=nval, qg=qg, pair_values=self._pair_values)

    def _pair_values(self, rows: Tensor, cols: Tensor) -> Tensor:
        """``B[rows, cols]`` for pairs in input order, in the block precision."""
        inv, n = self.inv, self.n
        # Mapped to the shuffled order and sorted there by (row, column).
        code, order = (inv[rows] * n + inv[cols]).sort()
        v = torch.empty(rows.numel(), dtype=torch.float64, device=rows.device)
        v[order] = self.f.pair_block_values(code // n, code % n).to(torch.float64)
        return self.f.key(v) / self.out_max[rows]


def feature_neighbours(
    xs: list[Tensor | Stacked], weights: list[float], nq: int, k1: int, k2: int, chunk_size: int
) -> Neighbours:
    """Neighbour lists from stacked query+gallery features, one ``(N, d_m)`` per model (a
    tensor or a :class:`Stacked`).

    ``xs`` is emptied (its tensors are replaced by shuffled copies). Every pair is computed
    once, in blocks of ``chunk_size`` rows; see :class:`_FeatureSearch` and ``docs/rerank.md``
    for why the short per-row lists it keeps give exactly the full rows' neighbours. Rows are
    processed in a fixed shuffled order, so that a row's neighbours are spread evenly over the
    blocks whatever the input order (galleries often come sorted by identity or track).
    Results are reported in the input order, and exact ties are broken by input index.
    """
    # numpy's products, where they serve (one model on an AMD CPU), run as row slices on our
    # threads with numpy's BLAS held to one thread for the whole pass (see _blas).
    with SlicedGemm(torch.get_num_threads()) as gemm:
        return _FeatureSearch(xs, weights, nq, k1, k2, chunk_size, gemm).run()
