"""``fnc-reid convert``: a third-party ``.pth`` (fast-reid, reid-strong-baseline / DMT, IBN-Net)
as a ``save_pretrained`` folder, ready for ``fnc-reid push``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fnc.cli._common import EXIT_OK, UsageError, add_command, reported
from fnc.models._convert import convert_checkpoint

__all__ = ["add_convert_parser", "register", "run_convert"]


def add_convert_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``fnc-reid convert SRC.pth OUT_DIR --model ARCH[.TAG] [--dataset D] [--metrics JSON] [--license L]``."""
    p = add_command(
        subparsers,
        "convert",
        "convert a fast-reid / strong-baseline .pth to a checkpoint folder",
        "Read a third-party torch checkpoint with torch.load(weights_only=True) only (a pickle that would run "
        "code is refused), map its keys onto the architecture, load it strictly and write a save_pretrained "
        "folder: model.safetensors, config.json and a model card naming the source. Load the folder with "
        "fnc.create_model(checkpoint_path=OUT_DIR) or publish it with fnc-reid push.",
        "examples:\n"
        "  fnc-reid convert veri_sbs_R50-ibn.pth sbs-veri --model sbs_resnet50_ibn.fastreid_veri\n"
        "  fnc-reid convert model.pth my-bot --model baseline_resnet50_ibn --dataset veri "
        "--metrics '{\"mAP\": 0.79}'",
    )
    p.add_argument("src", metavar="SRC.pth", help="the .pth / .pt checkpoint file")
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder to write (must be new or empty)")
    p.add_argument(
        "--model",
        required=True,
        metavar="ARCH[.TAG]",
        help="architecture, or arch.tag whose dataset / metrics / input statistics describe the weights",
    )
    p.add_argument("--dataset", help="training data of the weights, for config.json and the card")
    p.add_argument("--metrics", metavar="JSON", help='results as fractions, e.g. \'{"mAP": 0.819, "rank1": 0.97}\'')
    p.add_argument("--license", help="license of the weights")
    p.add_argument("--cache-dir", help="cache folder for the intermediate safetensors conversion")
    p.set_defaults(func=run_convert)
    return p


def _metrics(text: str | None) -> dict[str, float] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"--metrics is not JSON ({e.msg}): {text!r}; e.g. '{{\"mAP\": 0.819}}'") from None
    if not isinstance(value, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()
    ):
        raise UsageError(f"--metrics must be a JSON object of numbers (fractions), got {text!r}")
    return {str(k): float(v) for k, v in value.items()}


@reported("convert")
def run_convert(args: argparse.Namespace) -> int:
    """Convert ``args.src`` with :func:`fnc.models.convert_checkpoint` and print the folder."""
    out = Path(args.out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} exists and is not an empty folder; choose a new OUT_DIR (nothing was written)")
    metrics = _metrics(args.metrics)
    # A file that is unsafe, corrupt or of another architecture is a mistake in the input: the
    # loader's errors name it and reported() prints them as one line (exit 2).
    folder = convert_checkpoint(
        args.src, out, args.model, dataset=args.dataset, metrics=metrics, license=args.license, cache_dir=args.cache_dir
    )
    print(f"wrote {folder} (model.safetensors, config.json, README.md)")
    print(
        f"load it with: fnc.create_model(checkpoint_path={str(folder)!r}); publish it with: fnc-reid push {folder} ORG/NAME"
    )
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``convert`` to ``subparsers``."""
    add_convert_parser(subparsers)
