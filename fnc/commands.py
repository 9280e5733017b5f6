"""The product subcommands of the ``fnc-reid`` console script: list, info, extract, rerank, push, demo.

Each subcommand is a pair: ``add_<name>_parser(subparsers)`` declares its arguments and
``run_<name>(args) -> int`` does the job and returns the exit code. :func:`register` adds them
all to the CLI's subparsers, so ``fnc/cli.py`` only calls it.

Exit codes: 0 success; 1 the job failed (e.g. the Hub refused an upload, or ``list`` matched
nothing); 2 a user mistake (a missing file, an unknown model, arrays of the wrong shape), reported
as one line on stderr without a traceback.

>>> import argparse
>>> parser = argparse.ArgumentParser(prog="fnc-reid")
>>> register(parser.add_subparsers(dest="command"))
>>> args = parser.parse_args(["list", "bfe_*"])
>>> args.func(args)
bfe_resnet50
bfe_se_resnext101
0
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "UsageError",
    "register",
    "add_list_parser", "run_list",
    "add_info_parser", "run_info",
    "add_extract_parser", "run_extract",
    "add_rerank_parser", "run_rerank",
    "add_push_parser", "run_push",
    "add_demo_parser", "run_demo",
    "model_info",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A mistake in how a command was called; the CLI prints it as one line and exits with 2."""


def _one_line(message: str) -> str:
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the input was wrong, not that fnc-reid failed."""
    from fnc.data import CorruptImageError
    from fnc.models import (
        CheckpointMismatchError,
        CorruptCheckpointError,
        PretrainedNotFoundError,
        UnsafeCheckpointError,
    )

    return (
        UsageError, FileNotFoundError, NotADirectoryError, IsADirectoryError, CorruptImageError,
        CheckpointMismatchError, CorruptCheckpointError, PretrainedNotFoundError, UnsafeCheckpointError,
        ValueError,
    )


def _reported(name: str) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    """Turn user mistakes raised by a ``run_*`` into one line on stderr and exit code 2."""

    def wrap(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        @functools.wraps(fn)
        def run(args: argparse.Namespace) -> int:
            try:
                return fn(args)
            except _user_errors() as e:
                print(f"fnc-reid {name}: error: {_one_line(e)}", file=sys.stderr)
                return EXIT_USAGE

        return run

    return wrap


def _add(subparsers: Any, name: str, help: str, description: str, epilog: str = "") -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        name, help=help, description=description, epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


# --------------------------------------------------------------------------- list


def add_list_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``fnc-reid list [FILTER] [--pretrained]``."""
    p = _add(subparsers, "list", "list model names",
             "List registered model architectures (or, with --pretrained, the arch.tag names that have weights).",
             "FILTER is an fnmatch pattern (fnc_*, *resnet50*); a plain word matches names containing it.\n"
             "Exit code 1 if nothing matches.\n\nexamples:\n  fnc-reid list\n  fnc-reid list fnc --pretrained")
    p.add_argument("filter", nargs="?", default="*", metavar="FILTER", help="pattern or word (default: all)")
    p.add_argument("--pretrained", action="store_true", help="list arch.tag names with pretrained weights")
    p.set_defaults(func=run_list)
    return p


@_reported("list")
def run_list(args: argparse.Namespace) -> int:
    """Print matching model names, one per line."""
    import fnc

    pattern = args.filter if any(c in args.filter for c in "*?[") else f"*{args.filter}*"
    names = fnc.list_models(pattern, pretrained=args.pretrained)
    if not names:
        print(f"no {'pretrained ' if args.pretrained else ''}model matches {args.filter!r} "
              "(fnc-reid list shows all)", file=sys.stderr)
        return EXIT_FAILED
    print("\n".join(names))
    return EXIT_OK


# --------------------------------------------------------------------------- info


def add_info_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``fnc-reid info MODEL [--json]``."""
    p = _add(subparsers, "info", "describe a model",
             "Architecture, parameters, embedding size, input size and preprocessing, pretrained tags "
             "with their Hub ids, license and paper of a registered model. Nothing is downloaded.",
             "examples:\n  fnc-reid info fnc_se_resnext101\n  fnc-reid info bfe_resnet50.in1k --json")
    p.add_argument("model", metavar="MODEL", help="arch or arch.tag, e.g. fnc_se_resnext101")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=run_info)
    return p


def model_info(name: str) -> dict[str, Any]:
    """What ``fnc-reid info`` reports about a registered model, as a JSON-able dict.

    >>> model_info("fnc_resnet50")["embed_dim"]
    1536
    """
    import fnc
    from fnc.models import list_pretrained_tags, split_model_name_tag

    arch, _ = split_model_name_tag(name)
    cfg = fnc.get_pretrained_cfg(name)  # an unknown name raises, listing the close ones
    model = fnc.create_model(name, pretrained=False)
    tags = []
    for tag in list_pretrained_tags(arch):
        tcfg = fnc.get_pretrained_cfg(f"{arch}.{tag}")
        tags.append({"name": tcfg.name, "hf_hub_id": tcfg.hf_hub_id, "dataset": tcfg.dataset,
                     "license": tcfg.license, "source": tcfg.source, "metrics": tcfg.metrics})
    return {
        "name": cfg.name,
        "architecture": arch,
        "class": type(model).__name__,
        "params": sum(p.numel() for p in model.parameters()),
        "embed_dim": int(model.embed_dim),
        "input_size": list(cfg.input_size),
        "mean": list(cfg.mean),
        "std": list(cfg.std),
        "interpolation": cfg.interpolation,
        "hf_hub_id": cfg.hf_hub_id,
        "license": cfg.license or None,
        "source": cfg.source or None,
        "paper": cfg.paper,
        "pretrained_tags": tags,
    }


@_reported("info")
def run_info(args: argparse.Namespace) -> int:
    """Print :func:`model_info` as text or JSON."""
    info = model_info(args.model)
    if args.json:
        print(json.dumps(info, indent=2))
        return EXIT_OK
    c, h, w = info["input_size"]
    lines = [
        f"{info['name']}",
        f"  class          {info['class']}",
        f"  parameters     {info['params'] / 1e6:.1f}M",
        f"  embedding      {info['embed_dim']}-d",
        f"  input          {c} x {h} x {w} (C x H x W), {info['interpolation']} resize",
        f"  mean / std     {tuple(info['mean'])} / {tuple(info['std'])}",
        f"  paper          {info['paper']}",
    ]
    if info["pretrained_tags"]:
        lines.append("  pretrained")
        for t in info["pretrained_tags"]:
            lines.append(f"    {t['name']:<28} hf-hub {t['hf_hub_id']}, {t['dataset'] or 'dataset n/a'}, "
                         f"license {t['license'] or 'n/a'}")
    else:
        lines.append("  pretrained     none (random init only)")
    print("\n".join(lines))
    return EXIT_OK


# --------------------------------------------------------------------------- extract


def add_extract_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``fnc-reid extract MODEL IMAGES... -o feats.npy [--checkpoint DIR] [--no-pretrained]``."""
    p = _add(subparsers, "extract", "embed images to a .npy file",
             "Embed images with a re-ID model: row i of the (N, D) float32 array is image i. Folders are "
             "read recursively in sorted order; the row order is written beside the output as a .txt "
             "file (one path per line).",
             "MODEL is arch[.tag] (ImageNet backbone weights from the Hub unless --no-pretrained), or\n"
             "hf-hub:org/repo for a published re-ID checkpoint; --checkpoint DIR loads a folder written\n"
             "by save_pretrained or fnc-reid train (its config names the architecture).\n\n"
             "examples:\n  fnc-reid extract fnc_se_resnext101 gallery/ -o gallery.npy\n"
             "  fnc-reid extract fnc_resnet50 --checkpoint runs/veri/best query/ -o query.npy --normalize")
    p.add_argument("model", metavar="MODEL", help="arch[.tag] or hf-hub:org/repo")
    p.add_argument("images", nargs="+", metavar="IMAGES", help="image files and/or folders")
    p.add_argument("-o", "--output", required=True, metavar="FEATS.npy", help="where to write the features")
    p.add_argument("--checkpoint", metavar="DIR", help="a save_pretrained folder or .safetensors file")
    p.add_argument("--no-pretrained", dest="pretrained", action="store_false",
                   help="random weights (nothing downloaded); for trying things out")
    p.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"), help="override the model's input size")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    p.add_argument("--num-workers", type=int, default=0, help="image decoding processes (default 0)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: CUDA if available)")
    p.add_argument("--normalize", action="store_true", help="L2-normalise each row")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_extract)
    return p


def _expand_images(items: list[str]) -> list[str]:
    import fnc

    paths: list[str] = []
    for item in items:
        if os.path.isdir(item):
            found = fnc.list_images(item)
            if not found:
                raise UsageError(f"no image files in folder {item}")
            paths += found
        elif os.path.isfile(item):
            paths.append(item)
        else:
            raise UsageError(f"no such image file or folder: {item}")
    return paths


def _device(name: str | None) -> str:
    import torch

    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(name)
    except RuntimeError as e:
        raise UsageError(f"--device {name!r}: {e}") from None
    return name


@_reported("extract")
def run_extract(args: argparse.Namespace) -> int:
    """Create the model, embed the images, save the array and the row order."""
    import numpy as np

    import fnc

    out = Path(args.output)
    if out.suffix != ".npy":
        raise UsageError(f"-o must name a .npy file, got {args.output}")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    paths = _expand_images(args.images)
    if args.checkpoint is not None and not os.path.exists(args.checkpoint):
        raise UsageError(f"--checkpoint {args.checkpoint} does not exist")
    # A checkpoint or hf-hub: repo brings its own weights; pretrained= only picks the tag's.
    model = fnc.create_model(args.model, pretrained=args.pretrained, checkpoint_path=args.checkpoint)
    device = _device(args.device)
    model = model.to(device).eval()
    feats = fnc.extract(model, paths, batch_size=args.batch_size, num_workers=args.num_workers, device=device,
                        normalize=args.normalize, input_size=args.input_size, progress=not args.quiet)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, feats)
    rows = out.with_suffix(".txt")
    rows.write_text("".join(p + "\n" for p in paths))
    print(f"wrote {feats.shape[0]} x {feats.shape[1]} features to {out} (row order in {rows})")
    return EXIT_OK


# --------------------------------------------------------------------------- rerank


def add_rerank_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``fnc-reid rerank QUERY.npy GALLERY.npy -o dist.npy [--k1 --k2 --lambda] [--fuse Q G] [--weights]``."""
    p = _add(subparsers, "rerank", "k-reciprocal re-ranking of features",
             "k-reciprocal re-ranking (Zhong et al. 2017) of query against gallery features; writes the "
             "(num_query, num_gallery) float32 distance matrix (smaller = more similar). With --fuse, "
             "each further model's features add their weighted Euclidean distance (the paper's FNC + BFE "
             "ensemble).",
             "Defaults are the paper's: k1=75, k2=10, lambda=0.1. k1 is capped at the number of other\n"
             "images when the data is smaller.\n\nexamples:\n"
             "  fnc-reid rerank query.npy gallery.npy -o dist.npy\n"
             "  fnc-reid rerank fnc_q.npy fnc_g.npy --fuse bfe_q.npy bfe_g.npy --weights 1 0.5 -o dist.npy")
    p.add_argument("query", metavar="QUERY.npy", help="(num_query, D) features")
    p.add_argument("gallery", metavar="GALLERY.npy", help="(num_gallery, D) features")
    p.add_argument("-o", "--output", required=True, metavar="DIST.npy", help="where to write the distances")
    p.add_argument("--k1", type=int, default=75, help="k-reciprocal neighbourhood size (default 75)")
    p.add_argument("--k2", type=int, default=10, help="query expansion size (default 10)")
    p.add_argument("--lambda", dest="lambda_value", type=float, default=0.1,
                   help="weight of the original distance (default 0.1)")
    p.add_argument("--fuse", nargs=2, action="append", default=[], metavar=("Q2.npy", "G2.npy"),
                   help="another model's query and gallery features; repeatable")
    p.add_argument("--weights", nargs="+", type=float, metavar="W",
                   help="one weight per model, the first for QUERY/GALLERY (default all 1)")
    p.set_defaults(func=run_rerank)
    return p


def _load_features(path: str, what: str):
    import numpy as np

    if not os.path.isfile(path):
        raise UsageError(f"{what} file {path} does not exist")
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic != b"\x93NUMPY":
        raise UsageError(f"{what} file {path} is not a .npy array (write one with numpy.save or fnc-reid extract)")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise UsageError(f"{what} file {path} cannot be read: {_one_line(e)}") from None
    if array.ndim != 2 or array.shape[0] == 0 or not np.issubdtype(array.dtype, np.number):
        raise UsageError(f"{what} file {path} must hold a non-empty 2-D numeric array (N, D), got {array.dtype} {array.shape}")
    return array.astype(np.float32, copy=False)


@_reported("rerank")
def run_rerank(args: argparse.Namespace) -> int:
    """Load the features, re-rank (fusing models if asked), save the distances."""
    import numpy as np

    import fnc

    if not args.output.endswith(".npy"):
        raise UsageError(f"-o must name a .npy file, got {args.output}")
    pairs = [(args.query, args.gallery)] + [tuple(f) for f in args.fuse]
    queries, galleries = [], []
    for m, (qp, gp) in enumerate(pairs):
        q, g = _load_features(qp, "query"), _load_features(gp, "gallery")
        if q.shape[1] != g.shape[1]:
            raise UsageError(f"{qp} has {q.shape[1]}-d features but {gp} has {g.shape[1]}-d; they must come from the same model")
        if m and (len(q) != len(queries[0]) or len(g) != len(galleries[0])):
            raise UsageError(
                f"--fuse {qp} {gp} has {len(q)} queries / {len(g)} gallery rows but {pairs[0][0]} {pairs[0][1]} "
                f"has {len(queries[0])} / {len(galleries[0])}; every model must embed the same images in the same order"
            )
        queries.append(q)
        galleries.append(g)
    if args.weights is not None and len(args.weights) != len(pairs):
        raise UsageError(f"--weights needs one weight per model ({len(pairs)}), got {len(args.weights)}")
    if args.k1 < 1 or args.k2 < 1 or args.k2 > args.k1:
        raise UsageError(f"need 1 <= --k2 <= --k1, got k1={args.k1}, k2={args.k2}")
    if not 0.0 <= args.lambda_value <= 1.0:
        raise UsageError(f"--lambda must be in [0, 1], got {args.lambda_value}")
    n = len(queries[0]) + len(galleries[0])
    k1 = args.k1
    if k1 > n - 1 and n > 1:
        print(f"note: k1={k1} exceeds the {n - 1} other images; using k1={n - 1}", file=sys.stderr)
        k1 = n - 1
    k2 = min(args.k2, k1)
    dist = fnc.rerank(queries if len(pairs) > 1 else queries[0], galleries if len(pairs) > 1 else galleries[0],
                      k1=k1, k2=k2, lambda_value=args.lambda_value, weights=args.weights)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, np.asarray(dist, dtype=np.float32))
    fused = f", {len(pairs)} models fused" if len(pairs) > 1 else ""
    print(f"wrote {dist.shape[0]} x {dist.shape[1]} re-ranked distances to {out} (k1={k1}, k2={k2}, "
          f"lambda={args.lambda_value}{fused})")
    return EXIT_OK


# --------------------------------------------------------------------------- push


def add_push_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``fnc-reid push CHECKPOINT REPO_ID [--private] [--message M] [--dataset D]``."""
    p = _add(subparsers, "push", "publish a checkpoint to the Hugging Face Hub",
             "Upload a checkpoint folder (written by fnc-reid train or save_pretrained) to a Hub model repo, "
             "with config.json, model.safetensors and a generated re-ID model card. Anyone can then load it "
             "with fnc.create_model('hf-hub:REPO_ID').",
             "The token comes from HF_TOKEN or `hf auth login`; HF_ENDPOINT selects another Hub.\n\n"
             "example:\n  fnc-reid push runs/veri/best my-org/fnc-se-resnext101-veri776")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint folder")
    p.add_argument("repo_id", metavar="REPO_ID", help="org/name on the Hub (created if needed)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--message", "-m", dest="commit_message", help="commit message")
    p.add_argument("--dataset", help="training dataset for the model card (default: from the checkpoint)")
    p.add_argument("--license", help="license of the weights for the model card")
    p.set_defaults(func=run_push)
    return p


def _checkpoint_meta(folder: Path) -> dict[str, Any]:
    """Dataset and metrics a training checkpoint recorded (empty for a plain save_pretrained folder)."""
    state = folder / "trainer_state.json"
    if not state.is_file():
        return {}
    from fnc.engine import CheckpointError, read_checkpoint

    try:
        return read_checkpoint(folder)
    except CheckpointError as e:
        raise UsageError(f"checkpoint {folder} is damaged: {_one_line(e)}") from None


@_reported("push")
def run_push(args: argparse.Namespace) -> int:
    """Load the folder's model and ``push_to_hub`` it; prints the commit URL."""
    from huggingface_hub.errors import HfHubHTTPError

    import fnc

    folder = Path(args.checkpoint)
    if not folder.is_dir() or not (folder / "config.json").is_file():
        raise UsageError(f"{folder} is not a checkpoint folder (expected config.json and model.safetensors in it)")
    if args.repo_id.count("/") > 1 or not args.repo_id.strip("/"):
        raise UsageError(f"REPO_ID must look like org/name, got {args.repo_id!r}")
    meta = _checkpoint_meta(folder)
    model = fnc.create_model(checkpoint_path=folder)
    metrics = meta.get("metrics") or {}
    card_metrics = {k: 100 * float(metrics[k]) for k in ("mAP", "rank1", "mAP_rerank", "rank1_rerank") if k in metrics}
    kwargs: dict[str, Any] = dict(dataset=args.dataset or meta.get("dataset") or None,
                                  metrics=card_metrics or None, license=args.license, private=args.private)
    if args.commit_message:
        kwargs["commit_message"] = args.commit_message
    try:
        url = model.push_to_hub(args.repo_id, **kwargs)
    except HfHubHTTPError as e:
        print(f"fnc-reid push: error: the Hub refused the upload: {_one_line(e)}", file=sys.stderr)
        return EXIT_FAILED
    print(f"pushed {folder} to {args.repo_id}: {url}")
    print(f"load it with: fnc.create_model('hf-hub:{args.repo_id}')")
    return EXIT_OK


# --------------------------------------------------------------------------- demo


def add_demo_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``fnc-reid demo [--output DIR] [--quick] [--seed N]``."""
    p = _add(subparsers, "demo", "train and evaluate on synthetic vehicles, offline",
             "The whole job on this machine with nothing downloaded: draw a small synthetic multi-camera "
             "vehicle dataset, score an untrained fnc_resnet50, train it with the paper's recipe at low "
             "resolution, score it again with and without re-ranking, and write a ranked-list picture and "
             "SAB attention maps as PNG. About 3.5 minutes on 2 quiet CPU cores.",
             "example:\n  fnc-reid demo --output fnc-demo")
    p.add_argument("--output", "-o", default="fnc-demo", metavar="DIR", help="output folder (default ./fnc-demo)")
    p.add_argument("--quick", action="store_true", help="a seconds-long smoke run (tiny data, meaningless numbers)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data, initialisation and training")
    p.add_argument("--epochs", type=int, help="override the number of training epochs")
    p.add_argument("--device", help="cpu, cuda, ... (default: CUDA if available)")
    p.add_argument("--save-model", action="store_true", help="also save the trained model to DIR/model")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.set_defaults(func=run_demo)
    return p


@_reported("demo")
def run_demo(args: argparse.Namespace) -> int:
    """Run :func:`fnc.demo.run_demo` and report where its pictures are."""
    from fnc.demo import run_demo as demo

    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs must be >= 1, got {args.epochs}")
    device = _device(args.device)
    # The demo prints its own report; the reader's and trainer's INFO lines would repeat it.
    for name in ("fnc.data", "fnc.engine"):
        logging.getLogger(name).setLevel(logging.WARNING)
    demo(args.output, quick=args.quick, seed=args.seed, epochs=args.epochs, device=device,
         save_model=args.save_model, progress=args.progress)
    return EXIT_OK


# --------------------------------------------------------------------------- wiring


def register(subparsers: Any) -> None:
    """Add every product subcommand to ``subparsers`` (from ``ArgumentParser.add_subparsers``).

    Each parser sets ``func``: call ``args.func(args)`` for the exit code.
    """
    for add in (add_list_parser, add_info_parser, add_extract_parser, add_rerank_parser,
                add_push_parser, add_demo_parser):
        add(subparsers)
