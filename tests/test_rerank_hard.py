"""fnc.rerank on features as hard as a trained model's, on near-ties, and the package's API.

Hard features: identity centres plus noise whose norm is several times the centre's (plain mAP
0.2-0.5, as a vehicle model's on CityFlow). On such features many rows have neighbours whose
distances are close at a cut, so the float32 screening, the float64 refinement and the exact
row maximum all matter. The oracle is torchreid's ``re_ranking`` with a stable argsort run on
float64 distances (what ``rerank`` documents).
"""

from __future__ import annotations

import functools
import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_info

import fnc
from fnc.rerank import _blas, re_ranking, rerank
from fnc.rerank import _neighbours as _nb

sys.path.insert(0, str(Path(__file__).parent))
from _rerank_peers import stable_reference_re_ranking  # noqa: E402
from test_rerank import ATOL, _blocks  # noqa: E402

K1, K2, LAM = 75, 10, 0.1  # the paper's setting, where the issue showed the drift


def _hard(nq: int, ng: int, d: int, noise: float, seed: int, ids: int = 60):
    """Centres of norm ~1 plus Gaussian noise of norm ~``noise``, L2-normalised (as embeddings)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((ids, d)) / np.sqrt(d)
    pid = rng.integers(0, ids, nq + ng)
    x = centres[pid] + noise / np.sqrt(d) * rng.standard_normal((nq + ng, d))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return x[:nq], x[nq:], pid


@functools.cache
def _case(noise: float, d: int = 1536, seed: int = 0):
    q, g, pid = _hard(100, 1000, d, noise, seed)
    blocks = _blocks(q, g)
    return q, g, pid, blocks, stable_reference_re_ranking()(*blocks, K1, K2, LAM)


def _plain_map(qg: np.ndarray, pid: np.ndarray, nq: int) -> float:
    return fnc.evaluate(qg, pid[:nq], pid[nq:], np.zeros(nq), np.ones(len(pid) - nq)).mAP


@pytest.mark.parametrize("noise,lo,hi", [(0.5, 0.99, 1.0), (4.0, 0.2, 0.5), (4.5, 0.2, 0.4)])
def test_hard_features_are_hard(noise, lo, hi):
    """The regimes the tests below claim to cover, by their plain mAP."""
    _, _, pid, blocks, _ = _case(noise)
    assert lo <= _plain_map(blocks[0], pid, 100) <= hi


@pytest.mark.parametrize("noise", [0.5, 4.0, 4.5])
@pytest.mark.parametrize("chunk_size", [None, 150, 37])
def test_hard_features_single_model(noise, chunk_size):
    q, g, _, _, ref = _case(noise)
    out = rerank(q, g, k1=K1, k2=K2, lambda_value=LAM, chunk_size=chunk_size)
    np.testing.assert_allclose(out, ref, atol=ATOL, rtol=0)


@pytest.mark.parametrize("noise", [4.0, 4.5])
def test_hard_distances_re_ranking(noise):
    _, _, _, blocks, ref = _case(noise)
    np.testing.assert_allclose(re_ranking(*blocks, K1, K2, LAM), ref, atol=ATOL, rtol=0)


@functools.cache
def _fused_case():
    q1, g1, _, b1, _ = _case(4.5)
    q2, g2, _ = _hard(100, 1000, 512, 3.0, seed=1)
    summed = [a + 0.5 * b for a, b in zip(b1, _blocks(q2, g2))]
    return q1, g1, q2, g2, stable_reference_re_ranking()(*summed, K1, K2, LAM)


@pytest.mark.parametrize("chunk_size", [None, 150])
def test_hard_features_fused(chunk_size):
    q1, g1, q2, g2, ref = _fused_case()
    out = rerank([q1, q2], [g1, g2], weights=[1.0, 0.5], k1=K1, k2=K2, lambda_value=LAM, chunk_size=chunk_size)
    np.testing.assert_allclose(out, ref, atol=ATOL, rtol=0)


def _near_ties(nq: int, ng: int, seed: int, scale: float):
    # Small integers make many distances equal; a perturbation near float32 resolution makes
    # them differ by less than the float32 block error, so only the float64 path can order them.
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, size=(nq + ng, 6)) + scale * rng.standard_normal((nq + ng, 6))
    x = x.astype(np.float32)
    return x[:nq], x[nq:]


def _assert_matches_reference(q: np.ndarray, g: np.ndarray, fused: bool, chunk_size: int) -> None:
    """``rerank`` at k1=20, k2=6, lambda=0.3 equals the stable reference; fused: the same
    features twice with weights 1 and 0.5, i.e. the distances times 1.5."""
    blocks = _blocks(q, g)
    if fused:
        ref = stable_reference_re_ranking()(*[1.5 * b for b in blocks], 20, 6, 0.3)
        out = rerank([q, q], [g, g], weights=[1.0, 0.5], k1=20, k2=6, lambda_value=0.3, chunk_size=chunk_size)
    else:
        ref = stable_reference_re_ranking()(*blocks, 20, 6, 0.3)
        out = rerank(q, g, k1=20, k2=6, lambda_value=0.3, chunk_size=chunk_size)
    np.testing.assert_allclose(out, ref, atol=ATOL, rtol=0)


@pytest.mark.parametrize("scale", [1e-6, 1e-4])
@pytest.mark.parametrize("fused", [False, True])
def test_near_ties(scale, fused):
    q, g = _near_ties(15, 120, seed=int(scale * 1e6) + fused, scale=scale)
    blocks = _blocks(q, g)
    _assert_matches_reference(q, g, fused, chunk_size=40)
    np.testing.assert_allclose(
        re_ranking(*blocks, 20, 6, 0.3), stable_reference_re_ranking()(*blocks, 20, 6, 0.3), atol=ATOL, rtol=0
    )


@settings(max_examples=30, deadline=None)
@given(
    regime=st.sampled_from(["clustered", "hard", "near-ties", "noise"]),
    nq=st.integers(1, 8),
    ng=st.integers(1, 60),
    d=st.sampled_from([2, 8, 64]),
    k1=st.integers(1, 40),
    k2_frac=st.floats(0, 1),
    lam=st.sampled_from([0.0, 0.1, 0.3]),
    fused=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_property_regimes(regime, nq, ng, d, k1, k2_frac, lam, fused, seed):
    """Random small problems in each difficulty regime, single model and fused."""
    k2 = max(1, int(round(k2_frac * k1)))
    rng = np.random.default_rng(seed)
    n = nq + ng
    if regime == "near-ties":
        x = rng.integers(0, 3, size=(n, d)) + 1e-6 * rng.standard_normal((n, d))
    else:
        noise = {"clustered": 0.3, "hard": 4.0, "noise": 100.0}[regime]
        centres = rng.standard_normal((max(1, n // 6), d))
        x = centres[rng.integers(0, len(centres), n)] + noise * rng.standard_normal((n, d))
    x = x.astype(np.float32)
    q, g = x[:nq], x[nq:]
    blocks = _blocks(q, g)
    chunk = int(rng.integers(1, 40))
    if fused:
        ref = stable_reference_re_ranking()(*[1.25 * b for b in blocks], k1, k2, lam)
        out = rerank([q, q], [g, g], weights=[1.0, 0.25], k1=k1, k2=k2, lambda_value=lam, chunk_size=chunk)
    else:
        ref = stable_reference_re_ranking()(*blocks, k1, k2, lam)
        out = rerank(q, g, k1=k1, k2=k2, lambda_value=lam, chunk_size=chunk)
        np.testing.assert_allclose(re_ranking(*blocks, k1, k2, lam), ref, atol=ATOL, rtol=0)
    np.testing.assert_allclose(out, ref, atol=ATOL, rtol=0)


@pytest.mark.parametrize("max_keep", [1, 2])
def test_row_maximum_from_full_rows(monkeypatch, max_keep):
    """Rows whose largest values are too close to tell apart get their maximum from full rows.

    Duplicate far-away points make the largest values of most rows tie; with one or two kept
    those rows take the full-row path. The result is unchanged.
    """
    monkeypatch.setattr(importlib.import_module("fnc.rerank._neighbours"), "_MAX_KEEP", max_keep)
    monkeypatch.setattr(importlib.import_module("fnc.rerank._neighbours"), "_SCREEN_KEEP", 1)
    q, g, _ = _hard(10, 120, 16, 1.0, seed=5, ids=6)
    g = np.concatenate([g, np.full((3, 16), 5.0, np.float32)])  # three identical outliers
    ref = stable_reference_re_ranking()(*_blocks(q, g), 20, 6, 0.3)
    np.testing.assert_allclose(rerank(q, g, k1=20, k2=6, lambda_value=0.3, chunk_size=17), ref, atol=ATOL, rtol=0)


# --- bfloat16 screening ------------------------------------------------------------------

_bf16 = pytest.mark.skipif(
    not _nb.screening_available(torch.zeros(1, 1)), reason="this CPU has no native bfloat16 dot products"
)


def _adversarial(kind: str, n: int = 240, d: int = 256, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    if kind == "constant":
        # Every coordinate equal: the bfloat16 rounding error is parallel to the vector, so the
        # Cauchy-Schwarz step of the band is attained.
        x = rng.uniform(-3, 3, size=(n, 1)) * np.ones((1, d))
    elif kind == "scales":
        x = rng.standard_normal((n, d)) * 10.0 ** rng.uniform(-3, 3, size=(n, 1))
    elif kind == "offset":
        x = 50.0 + rng.standard_normal((n, d))
    else:
        x, _, _ = _hard(n, 0, d, 4.0, seed=seed)
    return torch.from_numpy(np.asarray(x, dtype=np.float32))


@_bf16
@pytest.mark.parametrize("kind", ["hard", "constant", "scales", "offset"])
def test_screening_band_bounds_every_error(kind):
    """Every screened squared distance is within its band of the exact one, also where the
    band's worst case is attained; and the band is narrow enough to be useful."""
    x = _adversarial(kind)
    n = x.shape[0]
    f = _nb._Features([x], [1.0], torch.arange(n), screen=True)
    assert f.screen
    s = f.block(0, n, 0, screened=True).clone()
    exact = torch.cdist(x.double(), x.double()).square()
    band = f.band(slice(0, n), s, True)
    assert bool((((s.double() - exact).abs()) <= band.double()).all())
    if kind == "hard":
        assert float(band.median()) < 0.01 * float(exact.median())


@_bf16
@pytest.mark.parametrize("noise", [1.0, 4.0])
def test_screened_equals_unscreened_and_reference(monkeypatch, noise):
    q, g, _, _, ref = _case(noise) if noise != 1.0 else _case(0.5)
    screened = rerank(q, g, k1=K1, k2=K2, lambda_value=LAM, chunk_size=150)
    monkeypatch.setattr(_nb, "_SCREEN", False)
    plain = rerank(q, g, k1=K1, k2=K2, lambda_value=LAM, chunk_size=150)
    np.testing.assert_allclose(screened, ref, atol=ATOL, rtol=0)
    np.testing.assert_allclose(plain, ref, atol=ATOL, rtol=0)


@_bf16
@pytest.mark.parametrize("defer_rows", [1, 7, 256])
def test_screened_buffers_too_short_fall_back(monkeypatch, defer_rows):
    """With no screening margin and one kept maximum candidate most screened rows cannot be
    certified and take the full-row paths; the result is unchanged. Rows waiting for their
    maximum are settled block by block (1), in batches that split a block's rows (7), or all
    at the end of the pass (256)."""
    monkeypatch.setattr(_nb, "_DEFER_ROWS", defer_rows)
    monkeypatch.setattr(_nb, "_SCREEN_MARGIN", 0)
    monkeypatch.setattr(_nb, "_SCREEN_KEEP", 1)
    monkeypatch.setattr(_nb, "_MAX_KEEP", 1)
    q, g, _ = _hard(20, 300, 64, 4.0, seed=8, ids=20)
    ref = stable_reference_re_ranking()(*_blocks(q, g), 30, 6, 0.1)
    np.testing.assert_allclose(rerank(q, g, k1=30, k2=6, lambda_value=0.1, chunk_size=40), ref, atol=ATOL, rtol=0)


@_bf16
@pytest.mark.parametrize("defer_rows", [1, 7, 256])
def test_waiting_rows_get_their_exact_maximum(monkeypatch, defer_rows):
    """Screened rows whose kept largest value cannot be certified wait for their maximum; when
    settled (block by block, in batches, or at the end of the pass) it is the exact one.

    Six far points differ by ~1e-3 per coordinate, less than bfloat16 can tell apart: one kept
    value per row makes every screened row wait, and its provisional maximum (the screened
    largest) is often the wrong point, ~4e-4 off.
    """
    monkeypatch.setattr(_nb, "_DEFER_ROWS", defer_rows)
    monkeypatch.setattr(_nb, "_SCREEN_KEEP", 1)
    monkeypatch.setattr(_nb, "_MAX_KEEP", 1)
    q, g, _ = _hard(20, 300, 64, 4.0, seed=8, ids=20)
    far = 5.0 + 1e-3 * np.random.default_rng(3).standard_normal((6, 64))
    x = torch.from_numpy(np.concatenate([q, g, far]).astype(np.float32))
    search = _nb._FeatureSearch([x.clone()], [1.0], 20, 30, 6, 40)
    search.run()
    exact = torch.cdist(x.double(), x.double()).square().amax(1)
    np.testing.assert_allclose(search.out_max.double(), exact, rtol=1e-6, atol=0)


# --- float32 blocks from either BLAS ---------------------------------------------------------


@pytest.mark.parametrize("numpy_blas", [False, True])
@pytest.mark.parametrize("kind", ["hard", "scales", "offset"])
def test_float32_block_error_within_radius_either_blas(monkeypatch, numpy_blas, kind):
    """Every float32 block value, from torch's GEMM or numpy's, is within the float32 radius of
    the exact squared distance (the features centred, as the search has them)."""
    monkeypatch.setattr(_nb, "numpy_gemm_for", lambda x: numpy_blas)
    x = _adversarial(kind, d=1536)
    n = x.shape[0]
    with _blas.SlicedGemm(2) as gemm:
        f = _nb._Features([x], [1.0], torch.arange(n), gemm=gemm)
        assert f.numpy_gemm == numpy_blas and not f.screen
        s = f.block(0, n, 0).clone()
    xc = f.xc[0].double()
    exact = torch.cdist(xc, xc).square()
    rad = f.radius(slice(0, n)).double().unsqueeze(1)
    err = (s.double() - exact).abs()
    # The radius also covers the other operand's norm: (|a| + max |b|)^2.
    assert bool((err <= rad).all()), float((err / rad).max())


@pytest.mark.parametrize("numpy_blas", [False, True])
@pytest.mark.parametrize("noise", [0.5, 4.0])
def test_either_blas_matches_reference(monkeypatch, numpy_blas, noise):
    """The float32 search gives the reference's result with either library's GEMM, through
    the top-k path and through capture."""
    monkeypatch.setattr(_nb, "numpy_gemm_for", lambda x: numpy_blas)
    monkeypatch.setattr(_nb, "_SCREEN", False)
    q, g, _, _, ref = _case(noise)
    for capture_rows in (10**9, 0):
        monkeypatch.setattr(_nb, "_CAPTURE_ROWS", capture_rows)
        monkeypatch.setattr(_nb, "_SAMPLE", 64)
        search = _search(q, g, K1, K2, 150)
        assert search.f.numpy_gemm == numpy_blas and search.capture == (capture_rows == 0)
        before = _blas_threads()
        out = rerank(q, g, k1=K1, k2=K2, lambda_value=LAM, chunk_size=150)
        # numpy's BLAS gets its thread count back after the sliced products.
        assert _blas_threads() == before
        np.testing.assert_allclose(out, ref, atol=ATOL, rtol=0)


def _blas_threads() -> list[int]:
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def test_sliced_gemm_equals_numpy_and_gives_the_blas_limit_back():
    """SlicedGemm's row slices give numpy's product; inside it numpy's BLAS runs on one thread,
    and its previous limit comes back on exit, also when the body raises."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((37, 50)).astype(np.float32)
    b = rng.standard_normal((23, 50)).astype(np.float32)
    before = _blas_threads()
    out = np.empty((37, 23), np.float32)
    with _blas.SlicedGemm(3) as gemm:
        assert gemm.matmul(a, b.T, out) is out
        assert all(t == 1 for t in _blas_threads())
    assert _blas_threads() == before
    np.testing.assert_allclose(out, a @ b.T, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="body"):
        with _blas.SlicedGemm(2) as gemm:
            gemm.matmul(a, b.T, out)
            raise ValueError("body")
    assert _blas_threads() == before
    with pytest.raises(RuntimeError, match="with SlicedGemm"):
        _blas.SlicedGemm(2).matmul(a, b.T, out)


# --- capture thresholds (large one-model searches) ------------------------------------------


@pytest.fixture
def capture(monkeypatch):
    """Capture thresholds at test sizes: every one-model search takes them, from ~64 sampled
    columns (the real size is 2048 of at least 8192 rows). Screened where this CPU has native
    bfloat16 dot products, float32 elsewhere."""
    monkeypatch.setattr(_nb, "_CAPTURE_ROWS", 0)
    monkeypatch.setattr(_nb, "_SAMPLE", 64)
    return monkeypatch


def _search(q: np.ndarray, g: np.ndarray, k1: int, k2: int, chunk: int) -> _nb._FeatureSearch:
    """A search after its pass (whether it captured is decided in it)."""
    x = torch.from_numpy(np.concatenate([q, g]))
    search = _nb._FeatureSearch([x], [1.0], len(q), k1, k2, chunk)
    search.run()
    return search


@pytest.mark.parametrize("noise", [0.5, 3.0, 4.0])
@pytest.mark.parametrize("sd", [3.0, -3.0])
@pytest.mark.parametrize("chunk", [150, 60])
def test_capture_thresholds_match_reference(capture, noise, sd, chunk):
    """Captured candidates give the reference's result on easy and hard features, with the
    first gallery block as the sample (one query block, ``chunk=150``) and with sampled
    columns (the 100 queries take two blocks). With ``sd = -3`` the thresholds sit below many
    rows' k1 + 1-th value: those rows cannot be certified from what was captured and take the
    full-row path, and the result is unchanged."""
    capture.setattr(_nb, "_CAPTURE_SD", sd)
    q, g, _, _, ref = _case(noise)
    search = _search(q, g, K1, K2, chunk)
    assert search.capture and search.block_sample == (chunk == 150)
    exact = torch.cdist(*(torch.from_numpy(np.concatenate([q, g])).double(),) * 2).square()
    kth = exact.sort(dim=1).values[:, K1].float()
    short = int((search.lb <= kth[search.perm]).sum())
    assert (short > 100) if sd < 0 else (short == 0)
    out = rerank(q, g, k1=K1, k2=K2, lambda_value=LAM, chunk_size=chunk)
    np.testing.assert_allclose(out, ref, atol=ATOL, rtol=0)


@pytest.mark.parametrize("where", ["offset", "aside"])
def test_capture_gives_exact_maxima_among_crowded_far_points(capture, where):
    """Forty far points differ by ~1e-3 per coordinate, less than bfloat16 can tell apart, and
    most of them are not sampled: a row's largest is then often one whose screened value is
    below the sample's largest. Every row's far list must hold them all (a threshold at the
    sample's largest loses them), and the maximum is the exact one. ``offset``: the points sit
    far from the origin, where the band at the largest value is the widest band (the far
    threshold is ``low - band_max``); ``aside``: at norm 1.3, nearly orthogonal to the unit-norm
    data, where the band there is narrower and the threshold ``low - band(low)`` applies."""
    q, g, _ = _hard(20, 300, 64, 4.0, seed=8, ids=20)
    rng = np.random.default_rng(3)
    if where == "offset":
        far = 5.0 + 1e-3 * rng.standard_normal((40, 64))
    else:
        u = rng.standard_normal(64)
        far = 1.3 * (u / np.linalg.norm(u) + 1e-3 * rng.standard_normal((40, 64)))
    x = torch.from_numpy(np.concatenate([q, g, far]).astype(np.float32))
    tight = []
    bound = _nb._FeatureSearch._far_bound

    def far_bound(self, rows, top):
        # The real threshold, and whether it is the tighter one.
        out = bound(self, rows, top)
        widest = self.f.band(rows, torch.zeros_like(top), screened=self.screen)
        tight.append(bool((out > top - self.f.band(rows, top, screened=self.screen) - widest).all()))
        return out

    capture.setattr(_nb._FeatureSearch, "_far_bound", far_bound)
    search = _nb._FeatureSearch([x.clone()], [1.0], 20, 30, 6, 40)
    search.run()
    assert search.capture and search.block_sample
    # Unscreened, the band is one constant radius: the two thresholds coincide.
    assert tight and all(tight) == (where == "aside" and search.screen)
    exact = torch.cdist(x.double(), x.double()).square().amax(1)
    assert int((torch.cdist(x.double(), x.double()).argmax(1) >= 320).sum()) > 100
    np.testing.assert_allclose(search.out_max.double(), exact, rtol=1e-6, atol=0)


def test_capture_declined_when_duplicates_would_flood_it(capture):
    """A gallery made mostly of one repeated feature would put hundreds of entries under every
    threshold: the sample predicts it and the search keeps top-k selections (and its result)."""
    # Unscreened, the buffer is shorter (k1 + 1 + 16 against k1 + 1 + 120), so the captures the
    # thresholds' margin brings weigh more against it.
    capture.setattr(_nb, "_CAPTURE_LIMIT", 2 if _nb.screening_available(torch.zeros(1, 1)) else 3)
    q, g, _ = _hard(20, 300, 64, 4.0, seed=8, ids=20)
    assert _search(q, g, 30, 6, 40).capture
    g = np.concatenate([g, np.repeat(g[:1], 400, axis=0)])
    assert not _search(q, g, 30, 6, 40).capture
    ref = stable_reference_re_ranking()(*_blocks(q, g), 30, 6, 0.1)
    np.testing.assert_allclose(rerank(q, g, k1=30, k2=6, lambda_value=0.1, chunk_size=40), ref, atol=ATOL, rtol=0)


@pytest.mark.parametrize("n,p", [(0, 0.5), (5, 0.5), (8, 1.0), (13, 0.3), (10_007, 0.01), (4096, 0.0), (999, 1.0)])
def test_true_positions_equal_nonzero(n, p):
    """The word-at-a-time scan finds exactly the True positions, in order, also in a tail
    shorter than a word."""
    m = torch.rand(n, generator=torch.Generator().manual_seed(n)) < p
    assert torch.equal(_nb._true_positions(m), m.nonzero().squeeze(1))


def test_padded_rows_from_sorted_parts():
    """Ragged entries from several row-sorted parts land in their rows, each row's entries in
    part order, unused slots filled."""
    rng = np.random.default_rng(4)
    parts, want = [], [[] for _ in range(6)]
    for _ in range(3):
        rows = np.sort(rng.integers(10, 16, 12))
        cols, vals = rng.integers(0, 99, 12), rng.standard_normal(12).astype(np.float32)
        parts.append((torch.from_numpy(rows).int(), torch.from_numpy(cols), torch.from_numpy(vals)))
        for r, c, v in zip(rows, cols, vals):
            want[r - 10].append((c, v))
    pv, pi = _nb._padded(parts, 10, 6, float("inf"))
    assert pv.shape[1] == max(len(w) for w in want)
    for r, w in enumerate(want):
        assert pi[r, : len(w)].tolist() == [c for c, _ in w]
        assert pv[r, : len(w)].tolist() == [float(v) for _, v in w]
        assert bool((pi[r, len(w) :] == -1).all()) and bool(torch.isinf(pv[r, len(w) :]).all())


def test_close_cuts_are_settled_from_float64_values_around_them():
    """Float32 values off by up to ``rad`` cannot order the positions around a cut; the lists
    take float64 values there. Row 0: the float32 order of exact ranks 2-4 is reversed, so the
    windows of the cuts 3 and 4 (k1=6, k2=3) meet; every cut's set must still be the exact one.
    Row 1: a radius so wide that a window reaches the end of the buffer: left to the caller."""
    x = torch.from_numpy(np.random.default_rng(5).standard_normal((40, 8)).astype(np.float32))
    search = _nb._FeatureSearch([x.clone()], [1.0], 5, 6, 3, 40)
    assert search.cuts == [3, 4, 7]
    rows = torch.tensor([0, 1])
    cols = torch.arange(1, 21).repeat(2, 1)
    exact = search.f.exact_pairs(rows, cols)
    exact, order = exact.sort(dim=1)
    cols = cols.gather(1, order)
    want = search.perm[cols[0]]
    cv = exact.float()
    cv[0, 2:5] = cv[0, 2:5].flip(0).clone()
    cv[0], o = cv[0].sort()
    cols[0] = cols[0, o]
    rad = torch.tensor([float(exact[0, 4] - exact[0, 2]) * 1.01, 1e3])
    search.row_max.fill_(float(exact.max()))  # set by the pass, which is not run here
    before = search.nbr[1].clone()
    left = search._settle_cuts(rows, cv, cols, rad)
    assert left.tolist() == [False, True]
    for c in search.cuts:
        assert set(search.nbr[0, :c].tolist()) == set(want[:c].tolist()), c
    assert torch.equal(search.nbr[1], before)


@pytest.mark.parametrize("fused", [False, True])
def test_features_far_from_the_origin(fused):
    """Un-normalised embeddings offset far from the origin next to their spread: the float32
    expansion |a|^2 + |b|^2 - 2 a.b would lose the distances to cancellation (it gave 1e-5
    errors on two points); centring keeps the values exact."""
    q, g, _ = _hard(12, 150, 32, 3.0, seed=9, ids=10)
    _assert_matches_reference(q + np.float32(40.0), g + np.float32(40.0), fused, chunk_size=50)


# --- the package is callable ------------------------------------------------------------


def test_package_is_callable_and_keeps_its_submodules():
    import fnc.rerank._sparse as sparse
    from fnc import re_ranking as top_re_ranking
    from fnc import rerank as top_rerank

    q, g, _ = _hard(5, 40, 8, 1.0, seed=2, ids=4)
    expected = rerank(q, g, k1=10, k2=3)
    np.testing.assert_array_equal(fnc.rerank(q, g, k1=10, k2=3), expected)
    np.testing.assert_array_equal(top_rerank(q, g, k1=10, k2=3), expected)
    assert fnc.rerank.re_ranking is re_ranking is top_re_ranking
    assert fnc.rerank.rerank is rerank
    assert sparse.k_reciprocal_distance is importlib.import_module("fnc.rerank._sparse").k_reciprocal_distance
    import inspect

    assert "lambda_value" in inspect.signature(fnc.rerank).parameters


# --- bad input --------------------------------------------------------------------------


def test_float32_overflow_is_named():
    q, g, _ = _hard(4, 20, 8, 1.0, seed=3, ids=4)
    with pytest.raises(ValueError, match=r"overflow float32: query row 0 has a norm beyond"):
        rerank(q * 1e20, g * 1e20)
    with pytest.raises(ValueError, match=r"gallery row \d+ of model 1 has norm .*divide the"):
        rerank([q, q], [g, g * np.float32(1e19)], weights=[1.0, 1.0])
    qg, qq, gg = _blocks(q, g)
    gg[3, 2] = 1e20
    with pytest.raises(ValueError, match=r"g_g_dist row 3 has a distance whose square overflows"):
        re_ranking(qg, qq, gg)


@pytest.mark.parametrize("w", [float("inf"), float("nan")])
def test_non_finite_weight(w):
    q, g, _ = _hard(4, 20, 8, 1.0, seed=4, ids=4)
    with pytest.raises(ValueError, match="weights must be finite"):
        rerank([q, q], [g, g], weights=[1.0, w])


@pytest.mark.parametrize("dim", [0, 1])
@pytest.mark.parametrize("largest", [False, True])
@pytest.mark.parametrize("length,k", [(1000, 7), (997, 46), (300, 20), (50, 10)])
def test_select_equals_topk(dim, largest, length, k):
    """Group extrema keep exactly top-k's values, at positions holding them; with many ties
    (integers 0-9) too, and with a partial last group (997 = 124 groups of 8 + 5)."""
    g = torch.Generator().manual_seed(length + k)
    for x in (torch.rand(40, length, generator=g), torch.randint(0, 10, (40, length), generator=g).float()):
        x = x if dim == 1 else x.T.contiguous()
        v, i = _nb._select(x, k, dim, largest)
        want = torch.topk(x, k, dim=dim, largest=largest).values
        assert torch.equal(v.sort(dim, descending=largest).values, want)
        assert torch.equal(x.gather(dim, i), v)
        # Distinct positions: no entry taken twice.
        assert (i.sort(dim).values.diff(dim=dim) > 0).all()


@pytest.mark.parametrize("fused", [False, True])
def test_scattered_pair_values_in_row_ranges(monkeypatch, fused):
    """Values of pairs outside the lists, computed a range of rows at a time and grouped by
    column there: the same whatever the range (1 row, 7, all), and the exact distances."""
    q, g, _ = _hard(10, 120, 16, 3.0, seed=4)
    x = torch.from_numpy(np.concatenate([q, g]))
    xs, w = ([x.clone(), 2 * x.clone()], [1.0, 0.5]) if fused else ([x.clone()], [1.0])
    f = _nb._Features(xs, w, torch.arange(130))
    gen = torch.Generator().manual_seed(0)
    rows, cols = torch.randint(0, 130, (500,), generator=gen), torch.randint(0, 130, (500,), generator=gen)
    code = (rows * 130 + cols).unique()
    rows, cols = code // 130, code % 130
    got = []
    for step in (1, 7, 4096):
        monkeypatch.setattr(_nb, "_PAIR_ROWS", step)
        got.append(f.pair_block_values(rows, cols))
    assert torch.equal(got[0], got[1]) and torch.equal(got[1], got[2])
    d = torch.cdist(x.double()[rows].unsqueeze(1), x.double()[cols].unsqueeze(1)).view(-1)
    want = d.square() if not fused else (d + 0.5 * 2 * d)
    np.testing.assert_allclose(got[0].double().numpy(), want.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 5), (130, 7), (64, 64), (200, 1)])
def test_transposed_equals_transpose(shape):
    """The tiled transposed copy (capture's block sample) equals ``x.T`` at any row count."""
    x = torch.randn(*shape)
    t = _nb._transposed(x)
    assert t.is_contiguous() and torch.equal(t, x.T)
