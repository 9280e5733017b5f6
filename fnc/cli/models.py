"""``fnc-reid list`` and ``fnc-reid info``: which models exist and what each one is.

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
import json
import sys
from typing import Any

from fnc.cli._common import EXIT_FAILED, EXIT_OK, add_command, reported
from fnc.cli._model_args import add_model_args, model_args_of
from fnc.models import (
    create_model,
    get_pretrained_cfg,
    list_models,
    list_pretrained_tags,
    model_arguments,
    split_model_name_tag,
)

__all__ = ["add_info_parser", "add_list_parser", "model_info", "register", "run_info", "run_list"]


def add_list_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``fnc-reid list [FILTER] [--pretrained]``."""
    p = add_command(
        subparsers,
        "list",
        "list model names",
        "List registered model architectures (or, with --pretrained, the arch.tag names that have weights).",
        "FILTER is an fnmatch pattern (fnc_*, *resnet50*); a plain word matches names containing it.\n"
        "Exit code 1 if nothing matches.\n\nexamples:\n  fnc-reid list\n  fnc-reid list fnc --pretrained",
    )
    p.add_argument("filter", nargs="?", default="*", metavar="FILTER", help="pattern or word (default: all)")
    p.add_argument("--pretrained", action="store_true", help="list arch.tag names with pretrained weights")
    p.set_defaults(func=run_list)
    return p


@reported("list")
def run_list(args: argparse.Namespace) -> int:
    """Print matching model names, one per line."""
    pattern = args.filter if any(c in args.filter for c in "*?[") else f"*{args.filter}*"
    names = list_models(pattern, pretrained=args.pretrained)
    if not names:
        print(
            f"no {'pretrained ' if args.pretrained else ''}model matches {args.filter!r} (fnc-reid list shows all)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    print("\n".join(names))
    return EXIT_OK


# --------------------------------------------------------------------------- info


def add_info_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``fnc-reid info MODEL [--json]``."""
    p = add_command(
        subparsers,
        "info",
        "describe a model",
        "Architecture, parameters, embedding size, input size and preprocessing, pretrained tags "
        "with their Hub ids, license and paper of a registered model. Nothing is downloaded.",
        "examples:\n  fnc-reid info fnc_se_resnext101\n  fnc-reid info bfe_resnet50.in1k --json",
    )
    p.add_argument("model", metavar="MODEL", help="arch or arch.tag, e.g. fnc_se_resnext101")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    add_model_args(p)
    p.set_defaults(func=run_info)
    return p


def model_info(name: str, model_args: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``fnc-reid info`` reports about a registered model, as a JSON-able dict.

    Args:
        name: ``arch`` or ``arch.tag``.
        model_args: constructor arguments the model is built with (``--model-arg``).

    >>> model_info("fnc_resnet50")["embed_dim"]
    1536
    """
    arch, _ = split_model_name_tag(name)
    cfg = get_pretrained_cfg(name)  # an unknown name raises, listing the close ones
    model_args = dict(model_args or {})
    model = create_model(name, pretrained=False, **model_args)
    tags = []
    for tag in list_pretrained_tags(arch):
        tcfg = get_pretrained_cfg(f"{arch}.{tag}")
        tags.append(
            {
                "name": tcfg.name,
                "hf_hub_id": tcfg.hf_hub_id,
                "url": tcfg.url,
                "file": tcfg.file,
                "dataset": tcfg.dataset,
                "license": tcfg.license,
                "source": tcfg.source,
                "metrics": tcfg.metrics,
            }
        )
    return {
        "name": cfg.name,
        "architecture": arch,
        "class": type(model).__name__,
        "params": sum(p.numel() for p in model.parameters()),
        "model_args": {k: list(v) if isinstance(v, tuple) else v for k, v in model_args.items()},
        "arguments": _arguments(name),
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


def _arguments(name: str) -> dict[str, str]:
    """The ``--model-arg`` keys of ``name`` and their types (the entry point may preset some defaults)."""
    return {
        key: param.annotation.__name__ if isinstance(param.annotation, type) else str(param.annotation)
        for key, param in model_arguments(name).items()
        if key != "num_classes"
    }


@reported("info")
def run_info(args: argparse.Namespace) -> int:
    """Print :func:`model_info` as text or JSON."""
    info = model_info(args.model, model_args_of(args, args.model))
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
    if info["model_args"]:
        lines.append("  model args     " + ", ".join(f"{k}={v}" for k, v in info["model_args"].items()))
    if info["pretrained_tags"]:
        lines.append("  pretrained")
        for t in info["pretrained_tags"]:
            # The builder's order: a local file, else the Hub, else a release URL.
            where = (
                f"file {t['file']}"
                if t["file"]
                else f"hf-hub {t['hf_hub_id']}"
                if t["hf_hub_id"]
                else f"url {t['url']}"
            )
            lines.append(
                f"    {t['name']:<28} {where}, {t['dataset'] or 'dataset n/a'}, license {t['license'] or 'n/a'}"
            )
    else:
        lines.append("  pretrained     none (random init only)")
    print("\n".join(lines))
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``list`` and ``info`` to ``subparsers``."""
    add_list_parser(subparsers)
    add_info_parser(subparsers)
