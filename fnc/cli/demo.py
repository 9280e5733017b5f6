"""``fnc-reid demo``: the offline synthetic-vehicle demo."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from fnc.cli._common import EXIT_OK, UsageError, add_command, add_device_arg, check_output_dir, reported, resolve_device
from fnc.demo.run import run_demo, summary

__all__ = ["add_demo_parser", "register", "run"]


def add_demo_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``fnc-reid demo [--output DIR] [--quick] [--seed N] [--json]``."""
    p = add_command(
        subparsers,
        "demo",
        "train and evaluate on synthetic vehicles, offline",
        "The whole job on this machine with nothing downloaded: draw a small synthetic multi-camera "
        "vehicle dataset, score an untrained fnc_resnet50, train it with the paper's recipe at low "
        "resolution, score it again with and without re-ranking, and write a ranked-list picture and "
        "SAB attention maps as PNG. About 440 CPU-seconds: a few minutes on 2 CPU cores.",
        "example:\n  fnc-reid demo --output fnc-demo",
    )
    p.add_argument("--output", "-o", default="fnc-demo", metavar="DIR", help="output folder (default ./fnc-demo)")
    p.add_argument("--quick", action="store_true", help="a seconds-long smoke run (tiny data, meaningless numbers)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data, initialisation and training")
    p.add_argument("--epochs", type=int, help="override the number of training epochs")
    add_device_arg(p)
    p.add_argument("--save-model", action="store_true", help="also save the trained model to DIR/model")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write into a non-empty DIR that no demo wrote, replacing files at the demo's paths",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="also print the numbers as one JSON line, the last line of the output: "
        '{"untrained": {...}, "trained": {...}, "reranked": {...}, "seconds": S}, each with the '
        "fractions mAP, rank1, rank5, mINP",
    )
    p.set_defaults(func=run)
    return p


@reported("demo")
def run(args: argparse.Namespace) -> int:
    """Run :func:`fnc.demo.run_demo`, which reports its numbers and where its pictures are."""
    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs must be >= 1, got {args.epochs}")
    check_output_dir(args.output, "--output")
    device = resolve_device(args.device)
    # The demo prints its own report; the reader's and trainer's INFO lines would repeat it.
    for name in ("fnc.data", "fnc.engine"):
        logging.getLogger(name).setLevel(logging.WARNING)
    result = run_demo(
        args.output,
        quick=args.quick,
        seed=args.seed,
        epochs=args.epochs,
        device=device,
        save_model=args.save_model,
        progress=args.progress,
        overwrite=args.overwrite,
    )
    if args.json:
        print(json.dumps(summary(result)), flush=True)
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``demo`` to ``subparsers``."""
    add_demo_parser(subparsers)
