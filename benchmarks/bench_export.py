"""CPU inference throughput of exported ONNX models (onnxruntime) against PyTorch eager.

For each model: export with ``fnc.export_onnx`` at the given size, then time the same random
batch in PyTorch (eager, ``inference_mode``) and in an onnxruntime CPU session (default
options: all graph optimisations, one intra-op thread per core), median of ``--iters`` runs
after ``--warmup``. Also reports the parity of the two embeddings: max abs error, the same
relative to the largest embedding value, and max abs error of the L2-normalised rows (what
cosine retrieval compares).

    python benchmarks/bench_export.py                        # fnc_resnet50, fnc_se_resnext101
    python benchmarks/bench_export.py --models baseline_resnet50 --batch 4 --iters 5

Requires ``onnx`` and ``onnxruntime``. Prints a markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import numpy as np
import torch

import fnc


def median_seconds(fn, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(name: str, batch: int, size: tuple[int, int], warmup: int, iters: int, folder: str) -> dict:
    import onnxruntime as ort

    torch.manual_seed(0)
    model = fnc.create_model(name).eval()
    start = time.perf_counter()
    path = fnc.export_onnx(model, os.path.join(folder, f"{name}.onnx"), input_size=size)
    export_s = time.perf_counter() - start
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(0))
    feed = {"images": x.numpy()}

    def run_torch():
        with torch.inference_mode():
            return model(x)

    ref = run_torch().numpy()
    out = session.run(None, feed)[0]
    err = float(np.abs(out - ref).max())
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    torch_s = median_seconds(run_torch, warmup, iters)
    ort_s = median_seconds(lambda: session.run(None, feed), warmup, iters)
    return {
        "model": name,
        "torch": batch / torch_s,
        "ort": batch / ort_s,
        "ratio": torch_s / ort_s,
        "err": err,
        "rel": err / float(np.abs(ref).max()),
        "unit": float(np.abs(unit(out) - unit(ref)).max()),
        "export_s": export_s,
        "mb": os.path.getsize(path) / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["fnc_resnet50", "fnc_se_resnext101"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, nargs=2, default=[288, 384], metavar=("H", "W"))
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--iters", type=int, default=3)
    args = parser.parse_args()

    import onnxruntime as ort

    size = tuple(args.size)
    print(
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime {ort.__version__}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; batch {args.batch}, "
        f"{size[0]}x{size[1]}, median of {args.iters} after {args.warmup} warm-up"
    )
    print()
    print(
        "| model | PyTorch eager img/s | onnxruntime img/s | onnxruntime / PyTorch | max abs err | rel. err | L2-normalised err | export s | .onnx MiB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models:
            r = bench(name, args.batch, size, args.warmup, args.iters, folder)
            print(
                f"| {r['model']} | {r['torch']:.2f} | {r['ort']:.2f} | {r['ratio']:.2f}x | {r['err']:.1e} | "
                f"{r['rel']:.1e} | {r['unit']:.1e} | {r['export_s']:.0f} | {r['mb']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
