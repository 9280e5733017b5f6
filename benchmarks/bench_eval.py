"""Rank metrics: fnc.evaluate vs torchreid's evaluate_rank (pure-Python path) on the same input.

Distances come from clustered, L2-normalised 1536-d features (333 identities, 20 cameras), so
matches sit near the top of each list as with a trained model. Both run in this process; times
are best of ``--repeat``. torchreid's compiled Cython path is not built here; the issue's figure
for fast-reid's Cython evaluation at CityFlow size on the development machine is 0.44 s.

    python benchmarks/bench_eval.py
    python benchmarks/bench_eval.py --sizes 1052x18290 --repeat 5

Needs the ``bench`` extra (torchreid==0.2.5); its package is never imported, only the module file.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from fnc.evaluation import evaluate  # noqa: E402

SIZES = ["100x1000", "1052x6000", "1052x18290"]
FAST_REID_CYTHON_S = 0.44  # from the issue, CityFlow size, same machine class


def _peer_evaluate_rank():
    spec = importlib.util.find_spec("torchreid")
    if spec is None:
        sys.exit("torchreid is not installed: pip install 'fnc-reid[bench]'")
    path = os.path.join(spec.submodule_search_locations[0], "reid/metrics/rank.py")
    mspec = importlib.util.spec_from_file_location("_peer_rank", path)
    module = importlib.util.module_from_spec(mspec)
    saved = sys.modules.get("torchreid", False)
    sys.modules["torchreid"] = None  # its Cython import then fails at once, without the package
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mspec.loader.exec_module(module)
    finally:
        if saved is False:
            del sys.modules["torchreid"]
        else:
            sys.modules["torchreid"] = saved
    return module.evaluate_rank


def problem(nq: int, ng: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    ids, cams, dim = 333, 20, 1536
    centres = rng.standard_normal((ids, dim), dtype=np.float32)
    pid = rng.integers(0, ids, nq + ng)
    cam = rng.integers(0, cams, nq + ng)
    x = torch.from_numpy(centres[pid] + 1.2 * rng.standard_normal((nq + ng, dim), dtype=np.float32))
    x = torch.nn.functional.normalize(x, dim=1)
    d = torch.cdist(x[:nq], x[nq:]).numpy()
    return d, pid[:nq], pid[nq:], cam[:nq], cam[nq:]


def best(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=SIZES)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    peer = _peer_evaluate_rank()
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, threads={torch.get_num_threads()}")
    head = ("| query x gallery | torchreid (Python) s | ours veri s | speed-up | ours aic s "
            "| abs diff mAP | max abs diff CMC |")
    print(head)
    print("|" + "|".join("-" * len(c) for c in head.split("|")[1:-1]) + "|")
    for size in a.sizes:
        nq, ng = map(int, size.split("x"))
        d, qp, gp, qc, gc = problem(nq, ng)
        t_ref, (cmc, mAP) = best(
            lambda: peer(d, qp, gp, qc, gc, 50, use_metric_cuhk03=False, use_cython=False), 1
        )
        t_ours, res = best(lambda: evaluate(d, qp, gp, qc, gc, protocol="veri"), a.repeat)
        t_aic, _ = best(lambda: evaluate(d, qp, gp, qc, gc, protocol="aic"), a.repeat)
        print(f"| {size:>15} | {t_ref:20.2f} | {t_ours:11.3f} | {t_ref / t_ours:7.1f}x | "
              f"{t_aic:10.3f} | {abs(res.mAP - mAP):12.1e} | "
              f"{float(np.abs(res.cmc - cmc).max()):16.1e} |", flush=True)
    print(f"fast-reid Cython at 1052x18290 (issue figure, not run here): {FAST_REID_CYTHON_S} s")


if __name__ == "__main__":
    main()
