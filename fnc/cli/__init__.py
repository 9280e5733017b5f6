"""The ``fnc-reid`` command line.

One module per command group, each with a ``register(subparsers)`` that adds its commands:
:mod:`~fnc.cli.train` (train, eval), :mod:`~fnc.cli.models` (list, info),
:mod:`~fnc.cli.features` (extract, rerank), :mod:`~fnc.cli.hub` (push) and :mod:`~fnc.cli.demo`.
A command is an ``add_<name>_parser(subparsers)`` that declares its arguments and sets ``func``,
and a ``run_<name>(args) -> int`` decorated with :func:`~fnc.cli._common.reported`, which maps
errors to exit codes: 0 ok, 1 the job failed, 2 a usage mistake (one line on stderr). The data
and device options are defined once in :mod:`fnc.cli._common`.

Nothing in the library imports this package; it is the program.

    fnc-reid train --model fnc_se_resnext101 --data veri:/data/VeRi --output runs/veri
    python -m fnc.cli eval --checkpoint runs/veri/best --data veri:/data/VeRi --json
    torchrun --nproc_per_node 4 -m fnc.cli train ... --sync-bn
"""

from fnc.cli._common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError
from fnc.cli.app import build_parser, main

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "UsageError", "build_parser", "main"]
