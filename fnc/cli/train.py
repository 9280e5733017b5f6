"""``fnc-reid train`` and ``fnc-reid eval``: train with the paper's recipe, score a model or checkpoint.

fnc-reid train --model fnc_se_resnext101 --data veri:/data/VeRi --output runs/veri
fnc-reid train ... --resume                      # continue runs/veri/last after a crash
torchrun --nproc_per_node 4 -m fnc.cli train ... --sync-bn
fnc-reid eval --checkpoint runs/veri/best --data veri:/data/VeRi --rerank --json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from fnc.cli._common import (
    EXIT_OK,
    UsageError,
    add_command,
    add_data_args,
    add_device_arg,
    check_model_name,
    check_output_dir,
    check_rerank_options,
    job,
    read_data,
    reader_options,
    reported,
    require_at_least,
    resolve_device,
)
from fnc.cli._model_args import add_model_args, model_args_of
from fnc.data.records import ReIDDataset
from fnc.data.vehicleid import vehicleid_trials
from fnc.engine.checkpoint import BEST, LAST, check_checkpoint_destination, checkpoint_pending, read_checkpoint
from fnc.engine.config import TrainConfig, config_error_field
from fnc.engine.history import CURVES_FILE, METRICS_FILE, require_tensorboard
from fnc.engine.trainer import Trainer
from fnc.evaluation.model import evaluate_model, evaluate_trials, infer_protocol
from fnc.inference.preprocess import check_input_size
from fnc.models import create_model, split_model_name_tag

__all__ = ["add_eval_parser", "add_train_parser", "config_from_args", "register", "run_eval", "run_train"]

#: The metrics ``eval`` prints, in order.
_EVAL_KEYS = ("mAP", "rank1", "rank5", "rank10", "mINP")

# TrainConfig fields whose default (None or a tuple) does not tell argparse their type.
_FIELD_TYPES: dict[str, tuple[Any, Any]] = {
    "input_size": (int, 2),
    "milestones": (int, "+"),
    "betas": (float, 2),
    "margin": (float, None),
    "protocol": (str, None),
    "device": (str, None),
    "num_workers": (int, None),
}
_METAVARS = {"input_size": ("H", "W"), "betas": ("B1", "B2")}


def _recipe_args(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, ``--batch-size`` for ``batch_size``, help from its metadata."""
    group = parser.add_argument_group(
        "training recipe (defaults: the paper's, BoT's where it is silent: docs/design.md)"
    )
    for f in dataclasses.fields(TrainConfig):
        kw: dict[str, Any] = {
            "dest": f.name,
            "default": argparse.SUPPRESS,
            "help": f.metadata.get("help", "").replace("%", "%%"),
        }
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
        group.add_argument("--" + f.name.replace("_", "-"), **kw)


# --------------------------------------------------------------------------- train


def add_train_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``fnc-reid train --model M --data FORMAT:PATH --output DIR [--resume] [recipe flags]``."""
    p = add_command(
        subparsers,
        "train",
        "train a model with the paper's recipe",
        f"Train a re-ID model. Writes OUTPUT/{LAST} (resumable) and OUTPUT/{BEST} (best mAP), checkpoint "
        "folders that fnc.create_model(checkpoint_path=...) loads, and after every epoch "
        f"OUTPUT/{METRICS_FILE} (one JSON line per epoch: losses, lr, speed, metrics as fractions) and "
        f"OUTPUT/{CURVES_FILE}. Under torchrun, runs DDP.",
        "examples:\n  fnc-reid train --model fnc_se_resnext101 --data veri:/data/VeRi --output runs/veri\n"
        "  torchrun --nproc_per_node 4 -m fnc.cli train ... --sync-bn",
    )
    p.add_argument("--model", required=True, help="architecture, e.g. fnc_se_resnext101 (see fnc-reid list)")
    add_model_args(p)
    add_data_args(p)
    p.add_argument("--output", required=True, metavar="DIR", help="folder for the checkpoints")
    p.add_argument(
        "--resume", action="store_true", help=f"continue from OUTPUT/{LAST} (starts afresh if there is none yet)"
    )
    p.add_argument(
        "--pretrained",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="start from ImageNet weights (downloaded from the Hub); --no-pretrained: random init",
    )
    p.add_argument("--verbose", action="store_true", help="debug logging")
    _recipe_args(p)
    p.set_defaults(func=run_train)
    return p


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` of the recipe flags given; a bad value is a :class:`UsageError`
    naming its flag (``--erase-p must be in [0, 1], got 5.0``).

    >>> config_from_args(argparse.Namespace(epochs=3)).epochs
    3
    """
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    try:
        return TrainConfig(**overrides)
    except (TypeError, ValueError) as e:
        field = config_error_field(e)
        if field is None:
            raise
        message = str(e)
        raise UsageError(
            _flag(field) + message[len(field) :] if message.startswith(field) else f"{_flag(field)}: {message}"
        ) from None


@reported("train")
def run_train(args: argparse.Namespace) -> int:
    """Set the run up (user mistakes exit 2), then train; prints the best metrics as one JSON line."""
    # Every option is checked before the data is read or a model built: a typo costs seconds.
    config = config_from_args(args)
    check_model_name(args.model)
    out = check_output_dir(args.output, "--output")
    resolve_device(config.device)
    if config.tensorboard:
        try:
            require_tensorboard()
        except ImportError as e:
            raise UsageError(str(e)) from None
    model_args = model_args_of(args, args.model)
    last = out / LAST
    for name in (LAST, BEST):  # before the data is read or weights downloaded
        check_checkpoint_destination(out / name)
    data = read_data(args)
    has_last = checkpoint_pending(last)
    if has_last and not args.resume:
        raise UsageError(f"{last} exists: pass --resume to continue that run, or choose another --output")
    resuming = args.resume and has_last
    if resuming and last.exists():
        saved = read_checkpoint(last).get("architecture")
        arch = split_model_name_tag(args.model)[0]
        if saved not in (None, arch):
            raise UsageError(f"{last} holds a {saved} run, not {arch}; pass --model {saved}")
    torch.manual_seed(config.seed)
    # A resumed run's weights come from the checkpoint, so nothing is downloaded.
    model = create_model(
        args.model, pretrained=args.pretrained and not resuming, num_classes=data.num_train_pids, **model_args
    )
    trainer = Trainer(model, data, out, config)
    with job():
        result = trainer.fit(resume=args.resume)
    if trainer.dist.is_main:
        print(json.dumps({k: v for k, v in result.items() if isinstance(v, (int, float))}))
    return EXIT_OK


# --------------------------------------------------------------------------- eval


def add_eval_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``fnc-reid eval (--model M | --checkpoint DIR) --data FORMAT:PATH [--rerank] [--json]``."""
    p = add_command(
        subparsers,
        "eval",
        "mAP / CMC / mINP of a model on a dataset's query and gallery",
        "Evaluate a model (by name) or a checkpoint folder on query vs gallery. With --json the last "
        "stdout line is a JSON object with mAP, rank1, rank5, rank10, mINP as fractions (with --trials, "
        "their means, each with a *_std, and trials).",
        "examples:\n  fnc-reid eval --checkpoint runs/veri/best --data veri:/data/VeRi --rerank --json\n"
        "  fnc-reid eval --checkpoint runs/vid/best --data vehicleid:/data/VehicleID --test-size 800 --trials 10 --json",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="registered architecture (with --pretrained weights by default)")
    which.add_argument(
        "--checkpoint", metavar="DIR", help="a checkpoint folder (e.g. runs/veri/best) or .safetensors file"
    )
    p.add_argument(
        "--pretrained",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --model: load its pretrained weights (--no-pretrained: random init with --seed)",
    )
    add_model_args(p)
    add_data_args(p)
    p.add_argument(
        "--input-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="image size; default the model's (a checkpoint records the size it was trained at)",
    )
    p.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking (k1=75, k2=10, lambda=0.1)")
    p.add_argument("--rerank-k1", type=int, default=75, help="re-ranking k1")
    p.add_argument("--rerank-k2", type=int, default=10, help="re-ranking k2")
    p.add_argument("--rerank-lambda", type=float, default=0.1, help="re-ranking lambda")
    p.add_argument("--protocol", choices=("veri", "aic"), default=None, help="default: aic for cityflow, else veri")
    p.add_argument(
        "--trials",
        type=int,
        default=None,
        metavar="N",
        help="vehicleid: average over N random gallery draws (seeds 0..N-1; the literature uses 10) "
        "and report the standard deviations as *_std",
    )
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers")
    add_device_arg(p)
    p.add_argument("--seed", type=int, default=0, help="seed of a randomly initialised model")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON line last")
    p.set_defaults(func=run_eval)
    return p


@reported("eval")
def run_eval(args: argparse.Namespace) -> int:
    """Score the model; prints a table (percent) and with ``--json`` one line of fractions."""
    check_rerank_options(
        args.rerank_k1, args.rerank_k2, args.rerank_lambda, ("--rerank-k1", "--rerank-k2", "--rerank-lambda")
    )
    check_model_name(args.model)
    require_at_least(args.batch_size, "--batch-size", 1)
    require_at_least(args.num_workers, "--num-workers", 0)
    if args.input_size is not None:
        check_input_size(args.input_size, "--input-size")
    device = torch.device(resolve_device(args.device))
    if args.checkpoint is not None and not Path(args.checkpoint).exists():
        raise UsageError(f"checkpoint {args.checkpoint} does not exist")
    model_args = model_args_of(args, args.model, args.checkpoint)
    datasets = _trial_datasets(args) if args.trials is not None else [read_data(args)]
    data = datasets[0]
    if not data.query or not data.gallery:
        hint = "" if args.holdout_ids or args.label_file else "; for cityflow/csv pass --label-file or --holdout-ids"
        raise UsageError(f"{args.data} has no query/gallery split{hint}")
    if args.checkpoint is not None:
        model = create_model(checkpoint_path=args.checkpoint, **model_args)
    else:
        torch.manual_seed(args.seed)
        model = create_model(args.model, pretrained=args.pretrained, **model_args)
    model = model.to(device).eval()
    options = dict(
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
    with job():
        metrics = (
            evaluate_trials(model, datasets, **options)
            if args.trials is not None
            else evaluate_model(model, data, **options)
        )
    print(f"{'':14}" + "".join(f"{k:>9}" for k in _EVAL_KEYS))
    rows = [("plain", "")] + ([("re-ranked", "_rerank")] if args.rerank else [])
    for label, suffix in rows:
        print(f"{label:14}" + "".join(f"{metrics[k + suffix]:9.2%}" for k in _EVAL_KEYS))
        if args.trials is not None:
            print(f"{'  std':14}" + "".join(f"{metrics[k + suffix + '_std']:9.2%}" for k in _EVAL_KEYS))
    if args.trials is not None:
        print(f"mean and sample standard deviation over {metrics['trials']} gallery draws")
    if args.json:
        # The requested evaluation's numbers at the top level (re-ranked with --rerank).
        keys = [k + s for k in _EVAL_KEYS for s in (("", "_std") if args.trials is not None else ("",))]
        suffix = "_rerank" if args.rerank else ""
        result: dict[str, Any] = {k: metrics[_ranked(k, suffix)] for k in keys}
        if args.trials is not None:
            result["trials"] = metrics["trials"]
        result["rerank"] = bool(args.rerank)
        if args.rerank:
            result["plain"] = {k: metrics[k] for k in keys}
        print(json.dumps(result))
    return EXIT_OK


def _ranked(key: str, suffix: str) -> str:
    """``rank1_std`` with the ``_rerank`` suffix: ``rank1_rerank_std``, as :func:`evaluate_trials` names it."""
    if key.endswith("_std"):
        return key[: -len("_std")] + suffix + "_std"
    return key + suffix


def _trial_datasets(args: argparse.Namespace) -> list[ReIDDataset]:
    """``--trials`` gallery draws of VehicleID's test set (the only format whose split is drawn)."""
    fmt, _, root = args.data.partition(":")
    if fmt.strip().lower() != "vehicleid":
        raise UsageError(
            f"--trials applies to vehicleid data (its gallery is a random draw), not {fmt.strip().lower()!r}"
        )
    if args.trials < 1:
        raise UsageError(f"--trials must be >= 1 (the literature uses 10), got {args.trials}")
    return vehicleid_trials(Path(root).expanduser(), trials=args.trials, **reader_options(args))


def register(subparsers: Any) -> None:
    """Add ``train`` and ``eval`` to ``subparsers``."""
    add_train_parser(subparsers)
    add_eval_parser(subparsers)
