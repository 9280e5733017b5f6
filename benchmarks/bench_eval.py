"""Rank metrics: fnc.evaluate vs torchreid's evaluate_rank and fast-reid's compiled Cython.

Two kinds of input: ``clustered`` distances from L2-normalised 1536-d features (333 identities,
20 cameras), where matches sit near the top of each list as with a trained model, and
``random`` uniform float32 distances, a chance-level model and the worst case for anything that
avoids a full sort. All peers run in this process on the same arrays; times are best of
``--repeat`` (torchreid's pure-Python path runs once).

Peers: torchreid 0.2.5's ``evaluate_rank`` (``bench`` extra; only its module file is loaded) and,
when available, fast-reid's Cython ``evaluate_cy`` compiled here from the ``rank_cy.pyx`` that
the ``fastreid`` 1.4.0 wheel ships. fastreid pins torch 1.13, so it is not in the extra; install
it beside ours without its dependencies, with Cython and a C compiler:

    pip install --no-deps fastreid==1.4.0 cython
    python benchmarks/bench_eval.py
    python benchmarks/bench_eval.py --sizes 1052x18290 --data random --repeat 5
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
import time
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from fnc.evaluation import evaluate  # noqa: E402

SIZES = ["100x1000", "1052x6000", "1052x18290"]


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


def _fastreid_cython():
    """fast-reid's ``evaluate_cy``, compiled from its installed .pyx; None when unavailable."""
    spec = importlib.util.find_spec("fastreid")
    if spec is None:
        return None, "fastreid not installed (pip install --no-deps fastreid==1.4.0 cython)"
    try:
        import pyximport
    except ImportError:
        return None, "Cython not installed (pip install cython)"
    src = os.path.join(spec.submodule_search_locations[0], "evaluation/rank_cylib/rank_cy.pyx")
    build = tempfile.mkdtemp(prefix="fastreid_rank_cy_")
    shutil.copy(src, build)
    pyximport.install(
        setup_args={"include_dirs": np.get_include()}, language_level=3, build_dir=os.path.join(build, "build")
    )
    sys.path.insert(0, build)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import rank_cy
    except Exception as e:  # a missing compiler, headers, ...
        return None, f"could not compile fast-reid's rank_cy.pyx: {e}"
    finally:
        sys.path.remove(build)

    def run(d, qp, gp, qc, gc):
        cmc, all_ap, _ = rank_cy.evaluate_cy(d, qp, gp, qc, gc, 50, False)
        return cmc, float(np.mean(all_ap))

    return run, "compiled"


def problem(nq: int, ng: int, data: str = "clustered", seed: int = 0):
    rng = np.random.default_rng(seed)
    ids, cams, dim = 333, 20, 1536
    centres = rng.standard_normal((ids, dim), dtype=np.float32)
    pid = rng.integers(0, ids, nq + ng)
    cam = rng.integers(0, cams, nq + ng)
    if data == "random":
        d = rng.random((nq, ng), dtype=np.float32)
    else:
        x = centres[pid] + 1.2 * rng.standard_normal((nq + ng, dim), dtype=np.float32)
        x = torch.nn.functional.normalize(torch.from_numpy(x), dim=1)
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
    p.add_argument("--data", nargs="+", default=["clustered", "random"], choices=["clustered", "random"])
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    peer = _peer_evaluate_rank()
    cy, cy_status = _fastreid_cython()
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, threads={torch.get_num_threads()}; "
        f"fast-reid Cython: {cy_status}"
    )
    head = (
        "| data | query x gallery | torchreid (Python) s | fast-reid Cython s | ours veri s "
        "| vs Cython | ours aic s | abs diff mAP | max abs diff CMC | Cython abs diff mAP |"
    )
    print(head)
    print("|" + "|".join("-" * len(c) for c in head.split("|")[1:-1]) + "|")
    for data in a.data:
        for size in a.sizes:
            nq, ng = map(int, size.split("x"))
            d, qp, gp, qc, gc = problem(nq, ng, data)
            t_ref, (cmc, mAP) = best(
                lambda args=(d, qp, gp, qc, gc): peer(*args, 50, use_metric_cuhk03=False, use_cython=False), 1
            )
            t_ours, res = best(lambda args=(d, qp, gp, qc, gc): evaluate(*args, protocol="veri"), a.repeat)
            t_aic, _ = best(lambda args=(d, qp, gp, qc, gc): evaluate(*args, protocol="aic"), a.repeat)
            if cy is not None:
                t_cy, (_, cy_map) = best(lambda args=(d, qp, gp, qc, gc): cy(*args), a.repeat)
                cy_cells = (f"{t_cy:18.3f}", f"{t_cy / t_ours:8.2f}x", f"{abs(cy_map - mAP):19.1e}")
            else:
                cy_cells = (f"{'-':>18}", f"{'-':>9}", f"{'-':>19}")
            print(
                f"| {data} | {size:>15} | {t_ref:20.2f} | {cy_cells[0]} | {t_ours:11.3f} | "
                f"{cy_cells[1]} | {t_aic:10.3f} | {abs(res.mAP - mAP):12.1e} | "
                f"{float(np.abs(res.cmc - cmc).max()):16.1e} | {cy_cells[2]} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
