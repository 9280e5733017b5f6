"""Training-step throughput and peak memory of each model, with and without gradient checkpointing.

One step = forward in train mode + the paper's loss (Eq. 7) + backward + Ranger step, at the
paper's batch (64 = 16 ids x 4) and size (288 x 384) unless told otherwise. Each (model,
checkpointing) pair runs in its own subprocess, so an out-of-memory failure is reported as such
and does not end the benchmark.

Memory: on CUDA, ``torch.cuda.max_memory_allocated`` during a step after a warm-up step. On CPU,
the process's peak resident memory during that step (``VmHWM`` after a reset through
``/proc/self/clear_refs``; Linux only), with glibc forced to return freed blocks to the system so
the resident size follows live tensors. "Activations" is that peak minus the memory held before
the step (weights, gradients, optimiser state), the part checkpointing is meant to cut.

    python benchmarks/bench_train.py                                  # every model, 64 x 288 x 384
    python benchmarks/bench_train.py --models baseline_resnet50 --batch-size 8 --steps 1

Prints a markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _trim() -> None:
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def child(args: argparse.Namespace) -> dict:
    """Measure one model in this process; returns the row as a dict."""
    import torch

    import fnc
    from fnc.losses import ReIDLoss
    from fnc.optim import Ranger

    torch.manual_seed(0)
    device = torch.device(args.device)
    num_ids = args.batch_size // args.num_instances
    model = fnc.create_model(args.model, num_classes=max(num_ids, 2)).to(device).train()
    model.set_grad_checkpointing(args.grad_checkpointing)
    optimizer = Ranger([p for p in model.parameters() if p.requires_grad])
    criterion = ReIDLoss()
    h, w = args.input_size
    x = torch.randn(args.batch_size, 3, h, w, device=device)
    pids = torch.arange(num_ids, device=device).repeat_interleave(args.num_instances)
    amp = device.type == "cuda"

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(x)
        loss, _ = criterion([(o.feat.float(), o.logits.float()) for o in out], pids)
        optimizer.zero_grad(set_to_none=False)  # keep gradients allocated: they are not activations
        loss.backward()
        optimizer.step()

    step()  # warm-up: allocates gradients and optimiser state
    if device.type == "cuda":
        torch.cuda.synchronize()
        held = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        _trim()
        held = _rss_kib("VmRSS") * 1024
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM, the peak resident size
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else _rss_kib("VmHWM") * 1024
    return {
        "model": args.model,
        "ckpt": args.grad_checkpointing,
        "img_s": args.batch_size / min(times),
        "peak_gib": peak / 2**30,
        "act_gib": (peak - held) / 2**30,
    }


def run_one(args: argparse.Namespace, model: str, ckpt: bool) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--models",
        model,
        "--batch-size",
        str(args.batch_size),
        "--num-instances",
        str(args.num_instances),
        "--input-size",
        *map(str, args.input_size),
        "--steps",
        str(args.steps),
        "--device",
        args.device,
    ] + (["--grad-checkpointing"] if ckpt else [])
    # A fixed mmap threshold makes glibc return large freed blocks, so RSS follows live tensors.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    if proc.returncode != 0:
        reason = (
            "out of memory"
            if proc.returncode in (-9, 137) or "out of memory" in proc.stderr.lower()
            else proc.stderr.strip().splitlines()[-1:]
        )
        return {"model": model, "ckpt": ckpt, "error": str(reason)}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="*", help="fnmatch pattern or comma-separated names")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-instances", type=int, default=4)
    p.add_argument("--input-size", type=int, nargs=2, default=(288, 384), metavar=("H", "W"))
    p.add_argument("--steps", type=int, default=2, help="timed steps (the best is reported)")
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")
    p.add_argument("--timeout", type=int, default=3600, help="seconds per measurement")
    p.add_argument("--grad-checkpointing", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        args.model = args.models
        print(json.dumps(child(args)))
        return
    import fnc

    names = args.models.split(",") if "," in args.models else fnc.list_models(args.models)
    print(
        f"# {platform.processor() or platform.machine()}, device {args.device}, batch {args.batch_size} x "
        f"{args.input_size[0]} x {args.input_size[1]}",
        flush=True,
    )
    print(
        "| model | images/s | peak GiB | activations GiB | images/s (ckpt) | peak GiB (ckpt) | activations GiB (ckpt) | activations ckpt / plain |"
    )
    print("|---|---|---|---|---|---|---|---|", flush=True)
    for name in names:
        rows = [run_one(args, name, ckpt) for ckpt in (False, True)]
        cells = []
        for r in rows:
            cells += (
                ["—", r["error"], "—"]
                if "error" in r
                else [f"{r['img_s']:.2f}", f"{r['peak_gib']:.2f}", f"{r['act_gib']:.2f}"]
            )
        ratio = f"{rows[1]['act_gib'] / rows[0]['act_gib']:.2f}" if all("error" not in r for r in rows) else "—"
        print(f"| {name} | " + " | ".join(cells) + f" | {ratio} |", flush=True)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
