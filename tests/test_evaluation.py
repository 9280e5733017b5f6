"""fnc.evaluate against torchreid's evaluate_rank (veri) and hand-computed AI City cases."""

from __future__ import annotations

import dataclasses
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from fnc.evaluation import EvalResult, evaluate

sys.path.insert(0, str(Path(__file__).parent))
from _rerank_peers import reference_evaluate_rank  # noqa: E402


def _problem(nq, ng, nid, ncam, seed):
    rng = np.random.default_rng(seed)
    d = rng.random((nq, ng)).astype(np.float32)
    return (d, rng.integers(0, nid, nq), rng.integers(0, nid, ng), rng.integers(0, ncam, nq), rng.integers(0, ncam, ng))


@pytest.mark.parametrize(
    "nq,ng,nid,ncam,max_rank",
    [
        (10, 60, 5, 3, 50),
        (40, 300, 30, 6, 50),
        (25, 200, 10, 2, 10),
        (30, 500, 100, 20, 20),
    ],
)
def test_veri_matches_torchreid(nq, ng, nid, ncam, max_rank):
    d, qp, gp, qc, gc = _problem(nq, ng, nid, ncam, seed=nq + ng)
    with warnings.catch_warnings():
        # some random problems have queries without a valid match; those warn, as they should
        warnings.simplefilter("ignore")
        res = evaluate(d, qp, gp, qc, gc, protocol="veri", max_rank=max_rank)
    valid = [i for i in range(nq) if ((gp == qp[i]) & (gc != qc[i])).any()]
    cmc, mAP = reference_evaluate_rank()(
        d[valid],
        qp[valid],
        gp,
        qc[valid],
        gc,
        max_rank=max_rank,
        use_metric_cuhk03=False,
        use_cython=False,
    )
    assert res.num_valid == len(valid)
    assert abs(res.mAP - mAP) < 1e-6
    np.testing.assert_allclose(res.cmc, cmc, atol=1e-6, rtol=0)
    assert res.rank1 == res.cmc[0]


def test_veri_matches_torchreid_on_realistic_distances():
    rng = np.random.default_rng(3)
    pid = rng.integers(0, 20, 400)
    cam = rng.integers(0, 5, 400)
    x = rng.normal(size=(20, 32))[pid] + 0.8 * rng.normal(size=(400, 32))
    d = np.linalg.norm(x[:50, None] - x[None, 50:], axis=2)
    res = evaluate(d, pid[:50], pid[50:], cam[:50], cam[50:])
    cmc, mAP = reference_evaluate_rank()(d, pid[:50], pid[50:], cam[:50], cam[50:], 50, False, False)
    assert abs(res.mAP - mAP) < 1e-6
    np.testing.assert_allclose(res.cmc, cmc, atol=1e-6, rtol=0)


def test_veri_hand_computed_with_mINP():
    # gallery order by distance: g0 (same id, same cam: removed), g1 (other id), g2 (match),
    # g3 (other), g4 (match). Kept list: g1, g2, g3, g4 -> matches at positions 2 and 4.
    d = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])
    res = evaluate(d, np.array([7]), np.array([7, 1, 7, 2, 7]), np.array([0]), np.array([0, 1, 1, 1, 2]), max_rank=4)
    assert res.mAP == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert res.mINP == pytest.approx(2 / 4)
    np.testing.assert_array_equal(res.cmc, [0, 1, 1, 1])


def test_aic_hand_computed():
    # Nothing removed; matches (id 7) at positions 1, 3 and 102 of a 105-long list.
    ng = 105
    d = np.arange(ng, dtype=np.float64)[None]
    gp = np.zeros(ng, dtype=int)
    gp[[0, 2, 101]] = 7
    res = evaluate(d, np.array([7]), gp, np.array([0]), np.zeros(ng, dtype=int), protocol="aic", max_rank=5)
    # AP@100: precision at the two hits inside the top 100, over min(R=3, 100).
    assert res.mAP == pytest.approx((1 / 1 + 2 / 3) / 3)
    assert res.mINP == pytest.approx(3 / 102)
    np.testing.assert_array_equal(res.cmc, [1, 1, 1, 1, 1])


def test_aic_keeps_same_camera_and_normalises_by_100():
    ng = 250
    d = np.arange(ng, dtype=np.float32)[None] + 1.0
    gp = np.full(ng, 7)  # every gallery entry matches, same camera as the query
    res = evaluate(d, np.array([7]), gp, np.array([3]), np.full(ng, 3), protocol="aic")
    assert res.mAP == pytest.approx(1.0)  # 100 hits in the top 100, over min(250, 100)
    with pytest.raises(ValueError, match="no query has a valid match"):
        evaluate(d, np.array([7]), gp, np.array([3]), np.full(ng, 3), protocol="veri")


def test_two_queries_aic_mean():
    d = np.array([[0.3, 0.1, 0.2], [0.1, 0.2, 0.3]])
    res = evaluate(d, np.array([1, 2]), np.array([1, 2, 1]), np.array([0, 0]), np.array([0, 0, 0]), protocol="aic")
    # q0 ranking g1, g2, g0 -> hits at 2, 3: AP = (1/2 + 2/3) / 2; q1 ranking g0, g1, g2 -> hit 2
    assert res.mAP == pytest.approx(((1 / 2 + 2 / 3) / 2 + 1 / 2) / 2)
    np.testing.assert_allclose(res.cmc, [0, 1, 1])


def test_ties_are_broken_by_gallery_index():
    d = np.array([[0.5, 0.5, 0.5, 0.5]])
    gp = np.array([1, 2, 1, 2])
    res = evaluate(d, np.array([2]), gp, np.array([0]), np.array([1, 1, 1, 1]))
    # order g0, g1, g2, g3 -> hits at 2 and 4
    assert res.mAP == pytest.approx((1 / 2 + 2 / 4) / 2)


def test_ties_between_matches_and_with_non_matches():
    d = np.array([[0.2, 0.5, 0.5, 0.1, 0.5, 0.5, 0.9]], dtype=np.float32)
    gp = np.array([1, 2, 2, 1, 1, 2, 2])
    res = evaluate(d, np.array([2]), gp, np.array([0]), np.ones(7, dtype=int))
    # stable order: g3, g0, g1, g2, g4, g5, g6 -> matches (id 2) at 3, 4, 6, 7
    assert res.mAP == pytest.approx((1 / 3 + 2 / 4 + 3 / 6 + 4 / 7) / 4)
    assert res.mINP == pytest.approx(4 / 7)


def test_veri_matches_stable_torchreid_on_float32_ties():
    rng = np.random.default_rng(5)
    # few distinct values: many exact ties, between matches and with non-matches
    d = rng.integers(0, 20, size=(30, 200)).astype(np.float32)
    qp, gp = rng.integers(0, 8, 30), rng.integers(0, 8, 200)
    qc, gc = rng.integers(0, 3, 30), rng.integers(0, 3, 200)
    stable = np.argsort(d, axis=1, kind="stable")
    # the peer sorts with numpy's unstable argsort; pre-ordering the columns stably and giving
    # it strictly increasing keys makes its order the stable one
    keys = np.argsort(stable, axis=1).astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = evaluate(d, qp, gp, qc, gc)
        cmc, mAP = reference_evaluate_rank()(keys, qp, gp, qc, gc, 50, False, False)
    assert abs(res.mAP - mAP) < 1e-6
    np.testing.assert_allclose(res.cmc, cmc, atol=1e-6, rtol=0)


def test_skipped_queries_warn():
    d, qp, gp, qc, gc = _problem(5, 30, 3, 2, seed=1)
    qp[0] = 99
    with pytest.warns(UserWarning, match="1 of 5 queries have no valid match"):
        res = evaluate(d, qp, gp, qc, gc)
    assert res.num_valid == 4


def test_torch_input_and_result_type():
    d, qp, gp, qc, gc = _problem(8, 40, 4, 3, seed=2)
    a = evaluate(torch.from_numpy(d), torch.from_numpy(qp), gp, qc, gc)
    b = evaluate(d, qp, gp, qc, gc)
    assert isinstance(a, EvalResult)
    assert a.mAP == b.mAP and a.mINP == b.mINP and (a.cmc == b.cmc).all()
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.mAP = 0.0


@pytest.mark.parametrize(
    "bad,match",
    [
        (dict(protocol="market"), "unknown protocol"),
        (dict(max_rank=0), "max_rank"),
    ],
)
def test_bad_arguments(bad, match):
    d, qp, gp, qc, gc = _problem(3, 10, 2, 2, seed=0)
    with pytest.raises(ValueError, match=match):
        evaluate(d, qp, gp, qc, gc, **bad)


def test_bad_arrays():
    d, qp, gp, qc, gc = _problem(3, 10, 2, 2, seed=0)
    with pytest.raises(ValueError, match="g_pids must have shape"):
        evaluate(d, qp, gp[:-1], qc, gc)
    with pytest.raises(ValueError, match="empty query or gallery"):
        evaluate(d[:0], qp[:0], gp, qc[:0], gc)
    d[1, 2] = np.nan
    with pytest.raises(ValueError, match="distmat row 1"):
        evaluate(d, qp, gp, qc, gc)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("protocol", ["veri", "aic"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gathered_and_dense_positions_agree(monkeypatch, ties, protocol, dtype):
    """Dense: float32 sorts every row by packed integer keys, float64 searches thresholds."""
    import fnc.evaluation.rank as rank

    rng = np.random.default_rng(11)
    pid = rng.integers(0, 15, 300)
    cam = rng.integers(0, 4, 300)
    x = rng.normal(size=(15, 16))[pid] + 0.9 * rng.normal(size=(300, 16))
    d = np.linalg.norm(x[:40, None] - x[None, 40:], axis=2).astype(dtype)
    if ties:
        d = np.round(d * 4) / 4
    out = []
    for ratio in (0, 10**9):  # always dense, never dense
        monkeypatch.setattr(rank, "_DENSE_RATIO", ratio)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out.append(evaluate(d, pid[:40], pid[40:], cam[:40], cam[40:], protocol=protocol))
    a, b = out
    assert a.mAP == b.mAP and a.mINP == b.mINP and a.num_valid == b.num_valid
    np.testing.assert_array_equal(a.cmc, b.cmc)


@pytest.mark.parametrize("protocol", ["veri", "aic"])
@pytest.mark.parametrize("low", [-3, 0])
def test_row_sort_orders_negative_and_signed_zero_distances(monkeypatch, protocol, low):
    """Packed keys order negatives, -0.0 == +0.0 ties and positives as float comparison does."""
    import fnc.evaluation.rank as rank

    rng = np.random.default_rng(12)
    d = rng.integers(low, 4, size=(20, 120)).astype(np.float32) * np.float32(0.5)
    zeros = d == 0
    d[zeros] = np.where(rng.random(int(zeros.sum())) < 0.5, np.float32(-0.0), np.float32(0.0))
    assert np.signbit(d[zeros]).any() and (~np.signbit(d[zeros])).any()
    qp, gp = rng.integers(0, 6, 20), rng.integers(0, 6, 120)
    qc, gc = rng.integers(0, 3, 20), rng.integers(0, 3, 120)
    out = []
    for ratio in (0, 10**9):  # the row sort, the gathered search
        monkeypatch.setattr(rank, "_DENSE_RATIO", ratio)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out.append(evaluate(d, qp, gp, qc, gc, protocol=protocol))
    a, b = out
    assert a.mAP == b.mAP and a.mINP == b.mINP
    np.testing.assert_array_equal(a.cmc, b.cmc)
    if protocol == "veri":
        keys = np.argsort(np.argsort(d, axis=1, kind="stable"), axis=1).astype(np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cmc, mAP = reference_evaluate_rank()(keys, qp, gp, qc, gc, 50, False, False)
        assert abs(a.mAP - mAP) < 1e-6
        np.testing.assert_allclose(a.cmc, cmc, atol=1e-6, rtol=0)
