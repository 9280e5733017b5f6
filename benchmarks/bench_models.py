"""Inference throughput and FLOPs of every registered model, against timm's backbone.

For each model: images/s in eager mode, NCHW and channels_last, and GFLOPs per image
(torch.utils.flop_counter: 2 FLOPs per multiply-add; convolutions, matmuls and attention).
The reference is timm's ``seresnext101_32x4d`` feature extractor with layer4's stride set to 1
(the same backbone setting as FNC), timed in the same process, so "GFLOP/s vs timm" says whether
FNC's extra blocks run as efficiently per FLOP as a plain backbone.

    python benchmarks/bench_models.py                      # all models, 288x384, batch 8
    python benchmarks/bench_models.py --models "fnc_*" --iters 3

Requires the ``bench`` extra (timm). Prints a markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import fnc


def gflops_per_image(model: torch.nn.Module, x: torch.Tensor) -> float:
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(x[:1])
    return counter.get_total_flops() / 1e9


def seconds_per_batch(model: torch.nn.Module, x: torch.Tensor, warmup: int, iters: int) -> float:
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        times = []
        for _ in range(iters):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def timm_reference() -> torch.nn.Module:
    import timm

    model = timm.create_model("seresnext101_32x4d", pretrained=False, num_classes=0)
    block = model.layer4[0]
    block.conv2.stride = (1, 1)
    block.downsample[0].stride = (1, 1)

    class Features(torch.nn.Module):
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net.forward_features(x)

    return Features(model)


def measure(name: str, model: torch.nn.Module, x: torch.Tensor, args: argparse.Namespace) -> dict:
    model.eval()
    flops = gflops_per_image(model, x)
    nchw = seconds_per_batch(model, x, args.warmup, args.iters)
    model = model.to(memory_format=torch.channels_last)
    cl = seconds_per_batch(model, x.to(memory_format=torch.channels_last), args.warmup, args.iters)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    row = dict(name=name, params=params, gflops=flops, nchw=x.shape[0] / nchw, cl=x.shape[0] / cl)
    print(
        f"{name:24s} {params:7.1f}M {flops:8.1f} GFLOPs/img  NCHW {row['nchw']:6.2f} img/s  "
        f"channels_last {row['cl']:6.2f} img/s  ({row['cl'] / row['nchw']:.2f}x)",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="*", help="fnmatch filter over fnc.list_models()")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--height", type=int, default=288)
    parser.add_argument("--width", type=int, default=384)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--iters", type=int, default=3)
    args = parser.parse_args()

    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.height, args.width)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}; "
        f"batch {args.batch} x 3 x {args.height} x {args.width}, eager, median of {args.iters}"
    )
    ref = measure("timm seresnext101_32x4d", timm_reference(), x, args)
    rows = [measure(name, fnc.create_model(name), x, args) for name in fnc.list_models(args.models)]

    ref_rate = ref["gflops"] * ref["nchw"]
    print(
        "\n| model | params (M) | GFLOPs/img | img/s NCHW | img/s channels_last | channels_last / NCHW | GFLOP/s vs timm (NCHW) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in [ref, *rows]:
        rate = r["gflops"] * r["nchw"] / ref_rate
        print(
            f"| {r['name']} | {r['params']:.1f} | {r['gflops']:.1f} | {r['nchw']:.2f} | {r['cl']:.2f} "
            f"| {r['cl'] / r['nchw']:.2f}x | {rate:.2f}x |"
        )


if __name__ == "__main__":
    main()
