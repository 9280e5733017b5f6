"""The ``fnc-reid`` command line: ``fnc-reid train`` and ``fnc-reid eval``.

Each subcommand is a ``_add_<name>(subparsers)`` that declares its arguments and a
``cmd_<name>(args) -> int`` that runs it; adding one (``list``, ``extract``, ...) means adding that
pair and one line in :func:`build_parser`. Mistakes in what the user typed (a path that does not
exist, an unknown model or dataset format) are reported on one stderr line, exit code 2; failures
during training itself keep their traceback.

    fnc-reid train --model fnc_se_resnext101 --data veri:/data/VeRi --output runs/veri
    fnc-reid train ... --resume                      # continue runs/veri/last after a crash
    torchrun --nproc_per_node 4 -m fnc.cli train ... --sync-bn
    fnc-reid eval --checkpoint runs/veri/best --data veri:/data/VeRi --rerank --json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .commands import register

__all__ = ["build_parser", "main"]

logger = logging.getLogger("fnc.cli")


class UserError(Exception):
    """A mistake in the command line; reported in one line, exit code 2."""


# User mistakes surface from the readers and the model factory as these types.
_USER_ERRORS = (FileNotFoundError, NotADirectoryError, ValueError, UserError)


# --------------------------------------------------------------------------------------------
# shared arguments


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, metavar="FORMAT:PATH",
                   help="dataset: cityflow:ROOT, veri:ROOT, market:ROOT or csv:FILE.csv")
    p.add_argument("--holdout-ids", type=int, default=0, metavar="N",
                   help="cityflow / csv without labelled query/gallery: hold N training identities out for evaluation")
    p.add_argument("--label-file", default=None, metavar="CSV",
                   help="cityflow: labels of image_query / image_test (path,id,camera)")


def _read_data(args: argparse.Namespace):
    from fnc.data import read_dataset

    kwargs: dict[str, Any] = {}
    fmt = args.data.partition(":")[0].strip().lower()
    if args.holdout_ids:
        if fmt not in ("cityflow", "csv"):
            raise UserError(f"--holdout-ids applies to cityflow and csv data, not {fmt!r}")
        kwargs["holdout_ids"] = args.holdout_ids
    if args.label_file:
        if fmt != "cityflow":
            raise UserError(f"--label-file applies to cityflow data, not {fmt!r}")
        kwargs["label_file"] = args.label_file
    return read_dataset(args.data, **kwargs)


def _config_help() -> dict[str, str]:
    """Each TrainConfig field's description, from its docstring (one source of truth)."""
    from fnc.engine import TrainConfig

    doc = TrainConfig.__doc__ or ""
    found: dict[str, str] = {}
    current = None
    for line in doc.splitlines():
        m = re.match(r"^ {8}(\w+): (.*)", line)
        if m:
            current = m.group(1)
            found[current] = m.group(2).strip()
        elif current and line.startswith(" " * 12):
            found[current] += " " + line.strip()
        elif not line.strip():
            current = None
    return {k: v.replace("%", "%%") for k, v in found.items()}


# Fields whose default (None or a tuple) does not tell argparse their type.
_FIELD_TYPES: dict[str, tuple[Any, Any]] = {
    "input_size": (int, 2),
    "milestones": (int, "+"),
    "betas": (float, 2),
    "margin": (float, None),
    "protocol": (str, None),
    "device": (str, None),
}
_METAVARS = {"input_size": ("H", "W"), "betas": ("B1", "B2")}


def _recipe_args(p: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, ``--batch-size`` for ``batch_size``, help from its docstring."""
    from fnc.engine import TrainConfig

    helps = _config_help()
    group = p.add_argument_group("training recipe (defaults: the paper's)")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        kw: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": helps.get(f.name, "")}
        if f.name in _FIELD_TYPES:
            typ, nargs = _FIELD_TYPES[f.name]
            kw["type"] = typ
            if nargs is not None:
                kw["nargs"] = nargs
            if f.name in _METAVARS:
                kw["metavar"] = _METAVARS[f.name]
        elif f.type in ("bool", "bool | None") or isinstance(f.default, bool):
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = type(f.default)
        group.add_argument(flag, **kw)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")


# --------------------------------------------------------------------------------------------
# train


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model with the paper's recipe",
        description="Train a re-ID model. Writes OUTPUT/last (resumable) and OUTPUT/best (best mAP), "
        "checkpoint folders that fnc.create_model(checkpoint_path=...) loads. Under torchrun, runs DDP.",
    )
    p.add_argument("--model", required=True, help="architecture, e.g. fnc_se_resnext101 (see fnc.list_models())")
    _data_args(p)
    p.add_argument("--output", required=True, metavar="DIR", help="folder for the checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT/last (starts afresh if there is none yet)")
    p.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=True,
                   help="start from ImageNet weights (downloaded from the Hub); --no-pretrained: random init")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    _recipe_args(p)
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    """``fnc-reid train``; returns the exit code."""
    import torch

    import fnc
    from fnc.engine import TrainConfig, Trainer, read_checkpoint

    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    try:
        config = TrainConfig(**overrides)
        out = Path(args.output)
        last = out / "last"
        data = _read_data(args)
        has_last = last.exists() or (out / ".last.old").exists()  # .old: a write was cut short
        if has_last and not args.resume:
            raise UserError(f"{last} exists: pass --resume to continue that run, or choose another --output")
        resuming = args.resume and has_last
        if resuming and last.exists():
            saved = read_checkpoint(last).get("architecture")
            arch = fnc.models.split_model_name_tag(args.model)[0]
            if saved not in (None, arch):
                raise UserError(f"{last} holds a {saved} run, not {arch}; pass --model {saved}")
        torch.manual_seed(config.seed)
        # A resumed run's weights come from the checkpoint, so nothing is downloaded.
        model = fnc.create_model(args.model, pretrained=args.pretrained and not resuming, num_classes=data.num_train_pids)
        trainer = Trainer(model, data, out, config)
    except (*_USER_ERRORS, fnc.engine.CheckpointError) as e:
        return _fail("train", e)
    result = trainer.fit(resume=args.resume)
    if trainer.dist.is_main:
        print(json.dumps({k: v for k, v in result.items() if isinstance(v, (int, float))}))
    return 0


# --------------------------------------------------------------------------------------------
# eval


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="mAP / CMC / mINP of a model on a dataset's query and gallery",
        description="Evaluate a model (by name) or a checkpoint folder on query vs gallery. With --json "
        "the last stdout line is a JSON object with mAP, rank1, rank5, rank10, mINP as fractions.",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="registered architecture (with --pretrained weights by default)")
    which.add_argument("--checkpoint", metavar="DIR", help="a checkpoint folder (e.g. runs/veri/best) or .safetensors file")
    p.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=True,
                   help="with --model: load its pretrained weights (--no-pretrained: random init with --seed)")
    _data_args(p)
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="image size; default the model's (a checkpoint records the size it was trained at)")
    p.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking (k1=75, k2=10, lambda=0.1)")
    p.add_argument("--rerank-k1", type=int, default=75, help="re-ranking k1")
    p.add_argument("--rerank-k2", type=int, default=10, help="re-ranking k2")
    p.add_argument("--rerank-lambda", type=float, default=0.1, help="re-ranking lambda")
    p.add_argument("--protocol", choices=("veri", "aic"), default=None, help="default: aic for cityflow, else veri")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--device", default=None, help="cuda / cpu; default cuda if available")
    p.add_argument("--seed", type=int, default=0, help="seed of a randomly initialised model")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON line last")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    """``fnc-reid eval``; returns the exit code."""
    import torch

    import fnc
    from fnc.engine import evaluate_model, infer_protocol

    try:
        data = _read_data(args)
        if not data.query or not data.gallery:
            raise UserError(f"{args.data} has no query/gallery split; for cityflow/csv pass --label-file or --holdout-ids")
        if args.checkpoint is not None:
            if not Path(args.checkpoint).exists():
                raise UserError(f"checkpoint {args.checkpoint} does not exist")
            model = fnc.create_model(checkpoint_path=args.checkpoint)
        else:
            torch.manual_seed(args.seed)
            model = fnc.create_model(args.model, pretrained=args.pretrained)
        device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model = model.to(device).eval()
    except _USER_ERRORS as e:
        return _fail("eval", e)
    metrics = evaluate_model(
        model,
        data,
        protocol=args.protocol or infer_protocol(data),
        input_size=args.input_size,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=device,
        rerank=args.rerank,
        k1=args.rerank_k1,
        k2=args.rerank_k2,
        lambda_value=args.rerank_lambda,
    )
    keys = ("mAP", "rank1", "rank5", "rank10", "mINP")
    print(f"{'':14}" + "".join(f"{k:>9}" for k in keys))
    rows = [("plain", "")] + ([("re-ranked", "_rerank")] if args.rerank else [])
    for label, suffix in rows:
        print(f"{label:14}" + "".join(f"{100 * metrics[k + suffix]:8.2f}%" for k in keys))
    if args.json:
        # The requested evaluation's numbers at the top level (re-ranked with --rerank).
        suffix = "_rerank" if args.rerank else ""
        result: dict[str, Any] = {k: metrics[k + suffix] for k in keys}
        result["rerank"] = bool(args.rerank)
        if args.rerank:
            result["plain"] = {k: metrics[k] for k in keys}
        print(json.dumps(result))
    return 0


# --------------------------------------------------------------------------------------------


def _fail(command: str, err: BaseException) -> int:
    msg = str(err).strip().replace("\n", " ") or type(err).__name__
    print(f"fnc-reid {command}: error: {msg}", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    """The ``fnc-reid`` parser with one subparser per command."""
    parser = argparse.ArgumentParser(prog="fnc-reid", description="Vehicle re-identification: FNC, BFE and BoT models.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(sub)
    _add_eval(sub)
    register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fnc-reid`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    >>> main(["eval", "--checkpoint", "runs/veri/best", "--data", "veri:/data/VeRi", "--json"])  # doctest: +SKIP
    0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(getattr(args, "verbose", False))
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"fnc-reid {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
