"""Re-ranking: fnc.rerank vs torchreid's re_ranking (the reference fast-reid also ships).

Each side runs in a fresh subprocess on the same seeded features (clustered identities,
L2-normalised, 1536-d, float32), so that peak memory is its own: ``ru_maxrss`` at the end minus
``ru_maxrss`` after imports and feature generation. Time includes the distances: the reference
gets float64 Euclidean distance matrices computed with torch (as a user would), ours computes
its own from the features. k1=75, k2=10, lambda=0.1 (the FNC paper's test setting).

    python benchmarks/bench_rerank.py                 # all sizes (about 10 minutes on 2 quiet cores)
    python benchmarks/bench_rerank.py --sizes 100x1000 1052x6000
    python benchmarks/bench_rerank.py --sizes 1052x18290 --models 2 --no-stable   # FNC+BFE fusion

Needs the ``bench`` extra (torchreid==0.2.5); its package is never imported, only the module file.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

SIZES = ["100x1000", "1052x6000", "1052x18290", "1000x100000"]
# The reference needs O(N^2) memory: 1000 x 100,000 would need ~600 GiB.
OURS_ONLY = {"1000x100000"}
K1, K2, LAM, DIM, IDS = 75, 10, 0.1, 1536, 333


def features(nq: int, ng: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = max(IDS, (nq + ng) // 55)
    centres = rng.standard_normal((ids, DIM), dtype=np.float32) / np.sqrt(DIM, dtype=np.float32)
    pid = rng.integers(0, ids, nq + ng)
    x = centres[pid]
    x += np.float32(0.8 / np.sqrt(DIM)) * rng.standard_normal((nq + ng, DIM), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x[:nq], x[nq:]


def _peer_re_ranking(stable: bool):
    spec = importlib.util.find_spec("torchreid")
    if spec is None:
        sys.exit("torchreid is not installed: pip install 'fnc-reid[bench]'")
    path = os.path.join(spec.submodule_search_locations[0], "reid/utils/rerank.py")
    mspec = importlib.util.spec_from_file_location("_peer_rerank", path)
    module = importlib.util.module_from_spec(mspec)
    mspec.loader.exec_module(module)
    if stable:
        class _StableNumpy:
            def __getattr__(self, name):
                return getattr(np, name)

            @staticmethod
            def argsort(a, axis=-1):
                return np.argsort(a, axis=axis, kind="stable")

        module.np = _StableNumpy()
    return module.re_ranking


def worker(side: str, nq: int, ng: int, models: int, out_path: str) -> None:
    import torch

    feats = [features(nq, ng, seed=m) for m in range(models)]
    if side == "ours":
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
        from fnc.rerank import rerank
    else:
        re_ranking = _peer_re_ranking(stable=side == "reference-stable")
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if side == "ours":
        if models == 1:
            out = rerank(*feats[0], k1=K1, k2=K2, lambda_value=LAM)
        else:
            out = rerank([q for q, _ in feats], [g for _, g in feats], k1=K1, k2=K2,
                         lambda_value=LAM)
    else:
        def dist(a, b):
            a, b = torch.from_numpy(a).double(), torch.from_numpy(b).double()
            s = (a * a).sum(1, keepdim=True) + (b * b).sum(1) - 2 * a @ b.T
            return s.clamp_(min=0).sqrt_().numpy()

        # Several models: the fused distance is the sum of their distance matrices.
        blocks = None
        for q, g in feats:
            new = [dist(q, g), dist(q, q), dist(g, g)]
            blocks = new if blocks is None else [a.__iadd__(b) for a, b in zip(blocks, new)]
            del new
        out = re_ranking(*blocks, K1, K2, LAM)
    seconds = time.perf_counter() - t0
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    np.save(out_path, out)
    print(json.dumps({"seconds": seconds, "peak_mib": peak}))


def run(side: str, size: str, tmp: str, models: int = 1) -> dict:
    nq, ng = map(int, size.split("x"))
    out_path = os.path.join(tmp, f"{side}_{size}.npy")
    res = subprocess.run(
        [sys.executable, __file__, "--worker", side, str(nq), str(ng), str(models), out_path],
        capture_output=True, text=True, check=True,
    )
    info = json.loads(res.stdout.strip().splitlines()[-1])
    info["out"] = out_path
    return info


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=SIZES)
    p.add_argument("--no-stable", action="store_true", help="skip the stable-argsort reference")
    p.add_argument("--models", type=int, default=1,
                   help="fuse this many models' distances (the FNC+BFE ensemble is 2)")
    p.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        side, nq, ng, models, out = a.worker
        return worker(side, int(nq), int(ng), int(models), out)

    import torch

    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, k1={K1} k2={K2} lambda={LAM}, "
          f"d={DIM}, models fused={a.models}; peak = ru_maxrss growth in a fresh process")
    head = (f"| {'query x gallery':>16} | {'reference s':>11} | {'ours s':>8} | {'speed-up':>8} | "
            f"{'ref peak MiB':>12} | {'our peak MiB':>12} | {'max abs diff':>12} | "
            f"{'max abs diff vs stable ref':>26} |")
    rows = [head, "|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|"]
    with tempfile.TemporaryDirectory() as tmp:
        for size in a.sizes:
            ours = run("ours", size, tmp, a.models)
            out = np.load(ours["out"])
            if size in OURS_ONLY:
                ref = stable = None
            else:
                ref = run("reference", size, tmp, a.models)
                stable = None if a.no_stable else run("reference-stable", size, tmp, a.models)
            cells = [f"{size:>16}"]
            if ref:
                diff = float(np.abs(out - np.load(ref["out"])).max())
                sdiff = (f"{float(np.abs(out - np.load(stable['out'])).max()):.1e}"
                         if stable else "-")
                cells += [f"{ref['seconds']:11.2f}", f"{ours['seconds']:8.2f}",
                          f"{ref['seconds'] / ours['seconds']:7.1f}x",
                          f"{ref['peak_mib']:12.0f}", f"{ours['peak_mib']:12.0f}",
                          f"{diff:12.1e}", f"{sdiff:>26}"]
            else:
                cells += [f"{'(cannot run)':>11}", f"{ours['seconds']:8.2f}", f"{'-':>8}",
                          f"{'-':>12}", f"{ours['peak_mib']:12.0f}", f"{'-':>12}", f"{'-':>26}"]
            rows.append("| " + " | ".join(cells) + " |")
            print(rows[-1] if len(rows) > 3 else "\n".join(rows), flush=True)


if __name__ == "__main__":
    main()
