"""``fnc-reid extract`` and ``fnc-reid rerank``: images to features, features to re-ranked distances."""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Any

import numpy as np

from fnc.cli._common import (
    EXIT_OK,
    UsageError,
    add_command,
    add_device_arg,
    check_model_name,
    check_output_file,
    check_rerank_options,
    one_line,
    reported,
    require_at_least,
    resolve_device,
)
from fnc.cli._model_args import add_model_args, model_args_of
from fnc.engine.outputs import check_line_safe, check_output_files
from fnc.inference.extraction import extract
from fnc.inference.images import list_images
from fnc.inference.preprocess import check_input_size
from fnc.models import create_model
from fnc.rerank.kreciprocal import rerank

__all__ = ["add_extract_parser", "add_rerank_parser", "register", "run_extract", "run_rerank"]


def add_extract_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``fnc-reid extract MODEL IMAGES... -o feats.npy [--checkpoint DIR] [--no-pretrained]``."""
    p = add_command(
        subparsers,
        "extract",
        "embed images to a .npy file",
        "Embed images with a re-ID model: row i of the (N, D) float32 array is image i. Folders are "
        "read recursively in sorted order; the row order is written beside the output as a .txt "
        "file (one path per line; a file name with a newline or other control character is refused). "
        "Existing output files are replaced only with --overwrite.",
        "MODEL is arch[.tag] (ImageNet backbone weights from the Hub unless --no-pretrained), or\n"
        "hf-hub:org/repo for a published re-ID checkpoint; --checkpoint DIR loads a folder written\n"
        "by save_pretrained or fnc-reid train (its config names the architecture).\n\n"
        "examples:\n  fnc-reid extract fnc_se_resnext101 gallery/ -o gallery.npy\n"
        "  fnc-reid extract fnc_resnet50 --checkpoint runs/veri/best query/ -o query.npy --normalize",
    )
    p.add_argument("model", metavar="MODEL", help="arch[.tag] or hf-hub:org/repo")
    p.add_argument("images", nargs="+", metavar="IMAGES", help="image files and/or folders")
    p.add_argument("-o", "--output", required=True, metavar="FEATS.npy", help="where to write the features")
    p.add_argument("--checkpoint", metavar="DIR", help="a save_pretrained folder or .safetensors file")
    add_model_args(p)
    p.add_argument(
        "--no-pretrained",
        dest="pretrained",
        action="store_false",
        help="random weights (nothing downloaded); for trying things out",
    )
    p.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"), help="override the model's input size")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    p.add_argument("--num-workers", type=int, default=0, help="image decoding processes (default 0)")
    add_device_arg(p)
    p.add_argument("--normalize", action="store_true", help="L2-normalise each row")
    p.add_argument(
        "--skip-corrupt",
        action="store_true",
        help="leave out image files that cannot be decoded (named in a warning) instead of failing; "
        "they are missing from both the array and the row-order file",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true", help="replace FEATS.npy and its row-order .txt if they exist")
    p.set_defaults(func=run_extract)
    return p


def _expand_images(items: list[str]) -> list[str]:
    paths: list[str] = []
    for item in items:
        if os.path.isdir(item):
            found = list_images(item)
            if not found:
                raise UsageError(f"no image files in folder {item}")
            paths += found
        elif os.path.isfile(item):
            paths.append(item)
        else:
            raise UsageError(f"no such image file or folder: {item}")
    return paths


@reported("extract")
def run_extract(args: argparse.Namespace) -> int:
    """Create the model, embed the images, save the array and the row order."""
    # Every option is checked before the model is built or an image read.
    out = check_output_file(args.output, "-o", ".npy")
    if args.checkpoint is None:
        check_model_name(args.model)
    require_at_least(args.batch_size, "--batch-size", 1)
    require_at_least(args.num_workers, "--num-workers", 0)
    if args.input_size is not None:
        check_input_size(args.input_size, "--input-size")
    device = resolve_device(args.device)
    paths = _expand_images(args.images)
    rows = out.with_suffix(".txt")
    check_output_files([out, rows], overwrite=args.overwrite)
    check_line_safe(paths)
    if args.checkpoint is not None and not os.path.exists(args.checkpoint):
        raise UsageError(f"--checkpoint {args.checkpoint} does not exist")
    # A checkpoint or hf-hub: repo brings its own weights; pretrained= only picks the tag's.
    model_args = model_args_of(args, args.model, args.checkpoint)
    model = create_model(args.model, pretrained=args.pretrained, checkpoint_path=args.checkpoint, **model_args)
    model = model.to(device).eval()
    feats = extract(
        model,
        paths,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=device,
        normalize=args.normalize,
        input_size=args.input_size,
        progress=not args.quiet,
        skip_corrupt=args.skip_corrupt,
    )
    if args.skip_corrupt:
        readable = ~np.isnan(feats).any(axis=1)
        if not readable.all():
            skipped = [p for p, ok in zip(paths, readable) if not ok]
            print(
                f"skipped {len(skipped)} unreadable image(s): {', '.join(skipped[:5])}"
                f"{' ...' if len(skipped) > 5 else ''}",
                file=sys.stderr,
            )
            feats, paths = feats[readable], [p for p, ok in zip(paths, readable) if ok]
        if not len(paths):
            raise UsageError("no image could be read; nothing to write")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, feats)
    rows.write_text("".join(p + "\n" for p in paths))
    print(f"wrote {feats.shape[0]} x {feats.shape[1]} features to {out} (row order in {rows})")
    return EXIT_OK


# --------------------------------------------------------------------------- rerank


def add_rerank_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``fnc-reid rerank QUERY.npy GALLERY.npy -o dist.npy [--k1 --k2 --lambda] [--fuse Q G] [--weights]``."""
    p = add_command(
        subparsers,
        "rerank",
        "k-reciprocal re-ranking of features",
        "k-reciprocal re-ranking (Zhong et al. 2017) of query against gallery features; writes the "
        "(num_query, num_gallery) float32 distance matrix (smaller = more similar). With --fuse, "
        "each further model's features add their weighted Euclidean distance (the paper's FNC + BFE "
        "ensemble).",
        "Defaults are the paper's: k1=75, k2=10, lambda=0.1. k1 is capped at the number of other\n"
        "images when the data is smaller.\n\nexamples:\n"
        "  fnc-reid rerank query.npy gallery.npy -o dist.npy\n"
        "  fnc-reid rerank fnc_q.npy fnc_g.npy --fuse bfe_q.npy bfe_g.npy --weights 1 0.5 -o dist.npy",
    )
    p.add_argument("query", metavar="QUERY.npy", help="(num_query, D) features")
    p.add_argument("gallery", metavar="GALLERY.npy", help="(num_gallery, D) features")
    p.add_argument("-o", "--output", required=True, metavar="DIST.npy", help="where to write the distances")
    p.add_argument("--k1", type=int, default=75, help="k-reciprocal neighbourhood size (default 75)")
    p.add_argument("--k2", type=int, default=10, help="query expansion size (default 10)")
    p.add_argument(
        "--lambda", dest="lambda_value", type=float, default=0.1, help="weight of the original distance (default 0.1)"
    )
    p.add_argument(
        "--fuse",
        nargs=2,
        action="append",
        default=[],
        metavar=("Q2.npy", "G2.npy"),
        help="another model's query and gallery features; repeatable",
    )
    p.add_argument(
        "--weights",
        nargs="+",
        type=float,
        metavar="W",
        help="one weight per model, the first for QUERY/GALLERY (default all 1)",
    )
    p.set_defaults(func=run_rerank)
    return p


def _load_features(path: str, what: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise UsageError(f"{what} file {path} does not exist")
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic != b"\x93NUMPY":
        raise UsageError(f"{what} file {path} is not a .npy array (write one with numpy.save or fnc-reid extract)")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise UsageError(f"{what} file {path} cannot be read: {one_line(e)}") from None
    if array.ndim != 2 or array.shape[0] == 0 or not np.issubdtype(array.dtype, np.number):
        raise UsageError(
            f"{what} file {path} must hold a non-empty 2-D numeric array (N, D), got {array.dtype} {array.shape}"
        )
    return array.astype(np.float32, copy=False)


@reported("rerank")
def run_rerank(args: argparse.Namespace) -> int:
    """Load the features, re-rank (fusing models if asked), save the distances."""
    out = check_output_file(args.output, "-o", ".npy")
    check_rerank_options(args.k1, args.k2, args.lambda_value)
    pairs = [(args.query, args.gallery)] + [tuple(f) for f in args.fuse]
    if args.weights is not None:
        if len(args.weights) != len(pairs):
            raise UsageError(
                f"--weights needs one weight per model ({len(pairs)}: QUERY/GALLERY and each --fuse), "
                f"got {len(args.weights)}"
            )
        if not all(math.isfinite(w) and w >= 0 for w in args.weights):
            raise UsageError(f"--weights must be finite and >= 0, got {' '.join(map(str, args.weights))}")
        if not any(args.weights):
            raise UsageError("--weights are all 0: at least one model must count")
    queries, galleries = [], []
    for m, (qp, gp) in enumerate(pairs):
        q, g = _load_features(qp, "query"), _load_features(gp, "gallery")
        if q.shape[1] != g.shape[1]:
            raise UsageError(
                f"{qp} has {q.shape[1]}-d features but {gp} has {g.shape[1]}-d; they must come from the same model"
            )
        if m and (len(q) != len(queries[0]) or len(g) != len(galleries[0])):
            raise UsageError(
                f"--fuse {qp} {gp} has {len(q)} queries / {len(g)} gallery rows but {pairs[0][0]} {pairs[0][1]} "
                f"has {len(queries[0])} / {len(galleries[0])}; every model must embed the same images in the same order"
            )
        queries.append(q)
        galleries.append(g)
    n = len(queries[0]) + len(galleries[0])
    k1 = args.k1
    if k1 > n - 1 and n > 1:
        print(f"note: k1={k1} exceeds the {n - 1} other images; using k1={n - 1}", file=sys.stderr)
        k1 = n - 1
    k2 = min(args.k2, k1)
    dist = rerank(
        queries if len(pairs) > 1 else queries[0],
        galleries if len(pairs) > 1 else galleries[0],
        k1=k1,
        k2=k2,
        lambda_value=args.lambda_value,
        weights=args.weights,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, np.asarray(dist, dtype=np.float32))
    fused = f", {len(pairs)} models fused" if len(pairs) > 1 else ""
    print(
        f"wrote {dist.shape[0]} x {dist.shape[1]} re-ranked distances to {out} (k1={k1}, k2={k2}, "
        f"lambda={args.lambda_value}{fused})"
    )
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``extract`` and ``rerank`` to ``subparsers``."""
    add_extract_parser(subparsers)
    add_rerank_parser(subparsers)
