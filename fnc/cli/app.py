"""The ``fnc-reid`` parser and entry point: every command group's ``register``, one after another."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from fnc.cli._common import Parser
from fnc.cli.convert import register as register_convert
from fnc.cli.demo import register as register_demo
from fnc.cli.features import register as register_features
from fnc.cli.hub import register as register_hub
from fnc.cli.models import register as register_models
from fnc.cli.train import register as register_train

__all__ = ["build_parser", "main"]

#: Each command group's ``register``, in the order ``fnc-reid --help`` lists their commands.
_GROUPS = (register_train, register_models, register_features, register_hub, register_convert, register_demo)


def build_parser() -> argparse.ArgumentParser:
    """The ``fnc-reid`` parser with one subparser per command.

    >>> build_parser().parse_args(["list", "fnc"]).command
    'list'
    """
    parser = Parser(prog="fnc-reid", description="Vehicle re-identification: FNC, BFE and BoT models.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in _GROUPS:
        register(sub)
    return parser


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fnc-reid`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    >>> main(["eval", "--checkpoint", "runs/veri/best", "--data", "veri:/data/VeRi", "--json"])  # doctest: +SKIP
    0
    """
    args = build_parser().parse_args(argv)
    _setup_logging(getattr(args, "verbose", False))
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"fnc-reid {args.command}: interrupted", file=sys.stderr)
        return 130
