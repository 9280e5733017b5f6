"""The sparse stage's kernels against plain transcriptions of the reference's loops.

The end-to-end tests compare whole re-rankings with torchreid; these pin the pieces the
sparse stage is built from on random inputs, with the budgets and the grid growth forced to
their extremes so that every range split, grid shape and empty-column path runs.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

sparse = importlib.import_module("fnc.rerank._sparse")
pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")


def _random_lists(n: int, k: int, seed: int, clusters: int) -> torch.Tensor:
    """Neighbour lists (row i first, then k - 1 distinct others), biased towards a cluster so
    that reciprocal sets and 2/3 expansions are common."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, clusters, n)
    out = np.empty((n, k), dtype=np.int64)
    for i in range(n):
        same = np.flatnonzero(label == label[i])
        other = rng.permutation(np.concatenate([same[same != i], rng.permutation(n)[:k]]))
        seen, row = {i}, [i]
        for j in other:
            if j not in seen:
                seen.add(int(j))
                row.append(int(j))
            if len(row) == k:
                break
        out[i] = row
    return torch.from_numpy(out)


def _reference_supports(nbr: np.ndarray, half: np.ndarray) -> set[tuple[int, int]]:
    """The reference's k-reciprocal expansion, as its loop writes it."""
    n = nbr.shape[0]
    support = set()
    for i in range(n):
        r = [j for j in nbr[i] if i in nbr[j]]
        expanded = set(r)
        for c in r:
            h = [j for j in half[c] if c in half[j]]
            if len(set(h) & set(r)) > 2.0 / 3 * len(h):
                expanded |= set(h)
        support |= {(i, j) for j in expanded}
    return support


@pytest.mark.parametrize("budget", [None, 1, 97])
@pytest.mark.parametrize("seed", [0, 1])
def test_expansion_matches_reference_loop(monkeypatch, budget, seed):
    if budget is not None:
        monkeypatch.setattr(sparse, "_EXPAND_BUDGET", budget)
        monkeypatch.setattr(sparse, "_BUDGET", budget * 40)
    nbr = _random_lists(60, 12, seed, clusters=5)
    half = nbr[:, :7]
    rows, cols = sparse._expansion(nbr.sort(1).values, half.sort(1).values)
    got = list(zip(rows.tolist(), cols.tolist()))
    assert got == sorted(got), "support must come sorted by row, then column"
    assert set(got) == _reference_supports(nbr.numpy(), half.numpy())
    # Some half sets were added, so the 2/3 branch ran, not only the reciprocal sets.
    assert len(got) > int(sparse._reciprocal_mask(nbr.sort(1).values).sum())


def _random_join_inputs(nq: int, ng: int, density: float, seed: int):
    """Sparse query rows and gallery rows of V over N = nq + ng columns, a few columns empty on
    the gallery side, as the CSR parts ``_sparse_join`` reads."""
    rng = np.random.default_rng(seed)
    n = nq + ng
    v = rng.random((n, n)).astype(np.float32) * (rng.random((n, n)) < density)
    v[nq:, :3] = 0  # columns no gallery row uses
    v[nq:, 5] = rng.random(ng).astype(np.float32) + 0.1  # a column every gallery row uses
    vq = torch.from_numpy(v[:nq]).to_sparse_csr()
    g = torch.from_numpy(np.ascontiguousarray(v[nq:].T)).to_sparse_csr()  # N x ng
    query = (vq.crow_indices(), vq.col_indices(), vq.values())
    gallery = (g.crow_indices(), g.col_indices().to(torch.int32), g.values())
    expected = np.minimum(v[:nq, None, :], v[None, nq:, :]).sum(-1)
    return query, gallery, expected


@pytest.mark.parametrize("growth", [1.0001, 1.1, 1e9])
@pytest.mark.parametrize("join_budget", [1, 37, None])
def test_sparse_join_matches_dense_min_sum(monkeypatch, growth, join_budget):
    """Every grid shape (one per run length, the default, one padded grid for all) and every
    step size (one entry, a few, whole groups) give the dense min-sum."""
    monkeypatch.setattr(sparse, "_PAD_GROWTH", growth)
    if join_budget is not None:
        monkeypatch.setattr(sparse, "_JOIN_BUDGET", join_budget)
    query, gallery, expected = _random_join_inputs(7, 40, 0.3, seed=int(growth * 10) % 97)
    out = sparse._sparse_join(query, sparse._GalleryGrids(*gallery), 7, 40)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6, atol=1e-6)
    used = sparse._unique(query[1])
    dense = sparse._dense_join(query, gallery, used, 7, 40)
    np.testing.assert_allclose(dense.numpy(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("join_budget", [1, 200, None])
def test_sparse_join_in_two_threads(monkeypatch, join_budget):
    """The two-thread join (halves of the query blocks) gives the one-thread result bit for
    bit, with one query per block (1), several (200) and a single block (None: no split), and
    leaves torch's thread count as it was."""
    if join_budget is not None:
        monkeypatch.setattr(sparse, "_JOIN_BUDGET", join_budget)
    query, gallery, expected = _random_join_inputs(9, 40, 0.3, seed=5)
    grids = sparse._GalleryGrids(*gallery)
    prev = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(sparse, "_PARALLEL_JOIN", 1 << 40)
        one = sparse._sparse_join(query, grids, 9, 40)
        monkeypatch.setattr(sparse, "_PARALLEL_JOIN", 0)
        two = sparse._sparse_join(query, grids, 9, 40)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(prev)
    assert torch.equal(one, two)
    np.testing.assert_allclose(two.numpy(), expected, rtol=1e-6, atol=1e-6)
    items = [(0, 0, 3), (1, 3, 5), (9, 5, 9), (10, 9, 10)]  # keys // 9 = blocks 0, 0, 1, 1
    assert sparse._half_at_block(items, 9) == 2
    assert sparse._half_at_block(items[:2], 9) == 0


def test_gallery_grids_pad_with_zero_at_row_zero():
    _, gallery, _ = _random_join_inputs(3, 20, 0.4, seed=3)
    grids = sparse._GalleryGrids(*gallery)
    crow, rows, vals = gallery
    for c in range(crow.numel() - 1):
        t, s = int(grids.group[c]), int(grids.slot[c])
        run = slice(int(crow[c]), int(crow[c + 1]))
        length = run.stop - run.start
        w = int(grids.width[t])
        assert w >= length and (w == 0 or w <= max(length, 1) * sparse._PAD_GROWTH)
        if w:
            assert grids.rows[t][s, :length].tolist() == rows[run].tolist()
            assert grids.vals[t][s, :length].tolist() == vals[run].tolist()
            assert not grids.vals[t][s, length:].any() and not grids.rows[t][s, length:].any()
