"""Re-ranking: fnc.rerank vs torchreid's re_ranking and vs the floor, from easy to hard features.

Features are seeded identity centres (norm ~1) plus Gaussian noise whose norm is ``--noise``
times the centre's, L2-normalised, 1536-d, float32. Noise 1 gives well-separated clusters
(plain mAP ~1); noise 4 is about as hard as a trained vehicle model on CityFlow's test split
(plain mAP ~0.2-0.4). The plain mAP of every input is printed (fnc.evaluate, each query's own
identity as the match, no camera filtering).

Every measurement runs in a fresh subprocess, so that its peak memory is its own: the peak
resident size during the call minus the resident size just before it, after imports and feature
generation. On Linux the peak is reset before the call (``/proc/self/clear_refs``), so the
temporaries of generating the features cannot hide a smaller peak of the call; elsewhere it is
``ru_maxrss`` growth, which can read 0 when they do. Times include the
distances: the reference gets float64 Euclidean distance matrices computed with torch (as a
user would), ours computes its own from the features. k1=75, k2=10, lambda=0.1 (the FNC
paper's test setting).

The floor row is the work any exact method must do: every pairwise distance once (the
triangle of float32 GEMMs over the stacked query+gallery features, through the library
``fnc.rerank`` takes for them on this machine: numpy's BLAS on AMD CPUs, else torch's) and the
``k1 + 1`` nearest of every row (top-k along rows and columns of each block), measured in the
same run. On CPUs with
native bfloat16 dot products ``fnc.rerank`` screens with bfloat16 GEMMs, so it can beat that
floor; the ``bf16 floor`` column is the same triangle and top-k with bfloat16 GEMMs, the floor
of any method that screens in bfloat16 (it still has to confirm in float32 on top).

    python benchmarks/bench_rerank.py                     # both sizes, noise 1 2 3 4 (long)
    python benchmarks/bench_rerank.py --sizes 100x1000    # a quick check
    python benchmarks/bench_rerank.py --sizes 1052x18290 --noise 4
    python benchmarks/bench_rerank.py --sizes 1052x18290 --models 2 --no-stable   # FNC+BFE fusion

The floor and ours take ``--repeat`` samples each (default 3), in turn, and the table gives their
medians: one cold call of a few seconds can land in a slow phase of a shared machine that the
reference's minutes average out.

Needs the ``bench`` extra (torchreid==0.2.5); its package is never imported, only the module file.
The reference needs O(N^2) memory: it is skipped at 1000 x 100,000 (~600 GiB).
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
import warnings

import numpy as np

SIZES = ["1052x18290", "1000x100000"]
NOISE = [1.0, 2.0, 3.0, 4.0]
# The reference needs O(N^2) memory: 1000 x 100,000 would need ~600 GiB.
OURS_ONLY = {"1000x100000"}
K1, K2, LAM, DIM, IDS = 75, 10, 0.1, 1536, 333
FLOOR_CHUNK = 2048

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def features(nq: int, ng: int, noise: float, seed: int = 0):
    """Query and gallery features and their identities; see the module docstring."""
    rng = np.random.default_rng(seed)
    ids = max(IDS, (nq + ng) // 55)
    centres = rng.standard_normal((ids, DIM), dtype=np.float32) / np.sqrt(DIM, dtype=np.float32)
    pid = rng.integers(0, ids, nq + ng)
    x = centres[pid]
    x += np.float32(noise / np.sqrt(DIM)) * rng.standard_normal((nq + ng, DIM), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x[:nq], x[nq:], pid


def plain_map(nq: int, ng: int, noise: float) -> float:
    """mAP of the plain Euclidean distance of model 0's features (the input's difficulty)."""
    import torch

    from fnc.evaluation.rank import evaluate

    q, g, pid = features(nq, ng, noise)
    q, g = torch.from_numpy(q), torch.from_numpy(g)
    dist = torch.cdist(q, g).numpy()
    with warnings.catch_warnings():
        # Small galleries leave some identities without a gallery image: those queries are
        # skipped, as in any evaluation.
        warnings.simplefilter("ignore", UserWarning)
        return evaluate(dist, pid[:nq], pid[nq:], np.zeros(nq), np.ones(ng)).mAP


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


def _floor(feats, bf16: bool = False, numpy_gemm: bool = False) -> None:
    """Every distance once and the k1 + 1 nearest of every row: what any exact method does.

    ``numpy_gemm``: float32 GEMMs through numpy's BLAS, as fnc.rerank takes them on this machine
    (row slices on torch's thread count, numpy's BLAS held to one thread).
    """
    import contextlib

    import torch

    from fnc.rerank._blas import SlicedGemm

    with SlicedGemm(torch.get_num_threads()) if numpy_gemm else contextlib.nullcontext() as gemm:
        _floor_pass(feats, bf16, gemm)


def _floor_pass(feats, bf16: bool, gemm) -> None:
    import torch

    for q, g in feats:
        x = torch.cat([torch.from_numpy(q), torch.from_numpy(g)])
        n, k = x.shape[0], min(K1 + 1, x.shape[0])
        sq = (x * x).sum(1)
        xb = x.bfloat16() if bf16 else None
        xn = x.numpy() if gemm is not None and not bf16 else None
        for r0 in range(0, n, FLOOR_CHUNK):
            r1 = min(r0 + FLOOR_CHUNK, n)
            if bf16:
                # Largest dot products of unit vectors = smallest distances.
                s = -(xb[r0:r1] @ xb[r0:].T)
            elif xn is not None:
                s = torch.from_numpy(gemm.matmul(xn[r0:r1], xn[r0:].T, np.empty((r1 - r0, n - r0), np.float32)))
                torch.add(sq[r0:].unsqueeze(0), s, alpha=-2.0, out=s)
            else:
                s = torch.addmm(sq[r0:].unsqueeze(0), x[r0:r1], x[r0:].T, alpha=-2.0)
            torch.topk(s, min(k, n - r0), dim=1, largest=False)
            if r1 < n:
                torch.topk(s[:, r1 - r0 :], min(k, r1 - r0), dim=0, largest=False)
            del s


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _peak_meter():
    """Start measuring the peak resident size; returns a function giving the growth in MiB."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # Linux: resets VmHWM (the peak) to the current resident size
        base = _status_kib("VmRSS")
        return lambda: (_status_kib("VmHWM") - base) / 1024
    except OSError:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return lambda: (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024


def worker(side: str, nq: int, ng: int, noise: float, models: int, out_path: str) -> None:
    import torch

    feats = [features(nq, ng, noise, seed=m)[:2] for m in range(models)]
    if side == "ours":
        from fnc.rerank import rerank
    elif side.startswith("floor"):
        # Imported before the clock starts, as rerank is.
        from fnc.rerank._blas import numpy_gemm_for

        numpy_gemm = numpy_gemm_for(torch.zeros(1, 1))
    else:
        re_ranking = _peer_re_ranking(stable=side == "reference-stable")
    peak_mib = _peak_meter()
    t0 = time.perf_counter()
    out = None
    if side in ("floor", "floor-bf16"):
        _floor(feats, bf16=side == "floor-bf16", numpy_gemm=numpy_gemm)
    elif side == "ours":
        if models == 1:
            out = rerank(*feats[0], k1=K1, k2=K2, lambda_value=LAM)
        else:
            out = rerank([q for q, _ in feats], [g for _, g in feats], k1=K1, k2=K2, lambda_value=LAM)
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
    peak = peak_mib()
    if out is not None:
        np.save(out_path, out)
    print(json.dumps({"seconds": seconds, "peak_mib": peak}))


def run(side: str, size: str, noise: float, tmp: str, models: int = 1) -> dict:
    """One measurement of ``side`` in a fresh process: its seconds, peak MiB and output file."""
    nq, ng = map(int, size.split("x"))
    out_path = os.path.join(tmp, f"{side}_{size}_{noise}.npy")
    res = subprocess.run(
        [
            sys.executable,
            os.path.abspath(__file__),
            "--worker",
            side,
            str(nq),
            str(ng),
            str(noise),
            str(models),
            out_path,
        ],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        sys.exit(f"{side} at {size}, noise {noise} failed:\n{res.stderr[-4000:]}")
    info = json.loads(res.stdout.strip().splitlines()[-1])
    info["out"] = out_path
    return info


def run_repeated(sides: list[str], repeat: int, size: str, noise: float, tmp: str, models: int) -> dict:
    """``repeat`` fresh-process samples of each side, taken in turn (floor, ours, floor, ours, ...).

    Taking them in turn spreads the machine's slow phases over every side instead of one; the
    median of each side's seconds goes in the table, the largest peak, and all samples below it.
    """
    samples: dict[str, list[dict]] = {side: [] for side in sides}
    for _ in range(repeat):
        for side in sides:
            samples[side].append(run(side, size, noise, tmp, models))
    out = {}
    for side, runs in samples.items():
        out[side] = {
            "seconds": float(np.median([r["seconds"] for r in runs])),
            "samples": [r["seconds"] for r in runs],
            "peak_mib": max(r["peak_mib"] for r in runs),
            "out": runs[-1]["out"],
        }
    return out


def _size(text: str) -> str:
    try:
        nq, ng = map(int, text.split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be QUERYxGALLERY, e.g. 1052x18290, got {text!r}") from None
    if nq < 1 or ng < 1:
        raise argparse.ArgumentTypeError(f"size needs at least one query and one gallery image: {text!r}")
    return text


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Columns: floor s = distance GEMMs + top-k only; ours/floor = our time over the floor; "
        "speed-up = reference time over ours; peaks are MiB above the loaded inputs.",
    )
    p.add_argument(
        "--sizes", nargs="+", type=_size, default=SIZES, help=f"QUERYxGALLERY sizes (default: {' '.join(SIZES)})"
    )
    p.add_argument(
        "--noise",
        nargs="+",
        type=float,
        default=NOISE,
        help="noise norm over centre norm, the difficulty axis (default: 1 2 3 4)",
    )
    p.add_argument("--no-stable", action="store_true", help="skip the stable-argsort reference")
    p.add_argument(
        "--no-reference", action="store_true", help="skip torchreid's re_ranking everywhere (floor and ours only)"
    )
    p.add_argument("--models", type=int, default=1, help="fuse this many models' distances (the FNC+BFE ensemble is 2)")
    p.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="fresh-process samples of the floor and of ours per row, taken in turn; the table gives "
        "their medians (default: 3; the reference runs once)",
    )
    p.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.repeat < 1:
        p.error(f"--repeat must be at least 1, got {a.repeat}")
    if a.worker:
        side, nq, ng, noise, models, out = a.worker
        return worker(side, int(nq), int(ng), float(noise), int(models), out)

    import torch

    from fnc.rerank._blas import numpy_gemm_for
    from fnc.rerank._neighbours import screening_available

    screening = a.models == 1 and screening_available(torch.zeros(1, 1))
    blas = "numpy's BLAS" if a.models == 1 and not screening and numpy_gemm_for(torch.zeros(1, 1)) else "torch"
    print(
        f"bfloat16 screening: {'on' if screening else 'off'}; float32 GEMMs: {blas}; "
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, k1={K1} k2={K2} lambda={LAM}, d={DIM}, "
        f"models fused={a.models}; peak = peak resident size above the start of the call, fresh process"
    )
    cols = [
        ("query x gallery", 16),
        ("noise", 5),
        ("plain mAP", 9),
        ("floor s", 8),
        ("bf16 floor s", 12),
        ("ours s", 8),
        ("ours/floor", 10),
        ("reference s", 11),
        ("speed-up", 8),
        ("our peak MiB", 12),
        ("ref peak MiB", 12),
        ("max abs diff", 12),
        ("vs stable ref", 13),
    ]
    head = "| " + " | ".join(f"{c:>{w}}" for c, w in cols) + " |"
    print(head)
    print("|" + "|".join("-" * (w + 2) for _, w in cols) + "|", flush=True)
    notes = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in a.sizes:
            for noise in a.noise:
                nq, ng = map(int, size.split("x"))
                mp = plain_map(nq, ng, noise)
                sides = ["floor", "floor-bf16", "ours"] if screening else ["floor", "ours"]
                timed = run_repeated(sides, a.repeat, size, noise, tmp, a.models)
                floor, floor16, ours = timed["floor"], timed.get("floor-bf16"), timed["ours"]
                notes.append(
                    f"{size}, noise {noise:g}: "
                    + "; ".join(f"{side} " + " ".join(f"{t:.2f}" for t in timed[side]["samples"]) for side in sides)
                )
                out = np.load(ours["out"])
                ref = stable = None
                if size not in OURS_ONLY and not a.no_reference:
                    ref = run("reference", size, noise, tmp, a.models)
                    if not a.no_stable:
                        stable = run("reference-stable", size, noise, tmp, a.models)
                cells = [
                    size,
                    f"{noise:g}",
                    f"{mp:.3f}",
                    f"{floor['seconds']:.2f}",
                    f"{floor16['seconds']:.2f}" if floor16 else "-",
                    f"{ours['seconds']:.2f}",
                    f"{ours['seconds'] / floor['seconds']:.2f}x",
                ]
                if ref:
                    diff = float(np.abs(out - np.load(ref["out"])).max())
                    sdiff = f"{float(np.abs(out - np.load(stable['out'])).max()):.1e}" if stable else "-"
                    cells += [
                        f"{ref['seconds']:.2f}",
                        f"{ref['seconds'] / ours['seconds']:.1f}x",
                        f"{ours['peak_mib']:.0f}",
                        f"{ref['peak_mib']:.0f}",
                        f"{diff:.1e}",
                        sdiff,
                    ]
                else:
                    cells += ["(not run)", "-", f"{ours['peak_mib']:.0f}", "-", "-", "-"]
                print("| " + " | ".join(f"{c:>{w}}" for c, (_, w) in zip(cells, cols)) + " |", flush=True)
    print(f"\nseconds of each fresh-process sample, in the order taken (table: medians of {a.repeat}):")
    for line in notes:
        print(f"  {line}")


if __name__ == "__main__":
    main()
