"""What every ``fnc-reid`` command shares: the usage-error class, exit codes, the error-reporting
wrapper, and the data and device options.

Exit codes: :data:`EXIT_OK` (0) the job ran; :data:`EXIT_FAILED` (1) the job itself failed (the Hub
refused an upload, ``list`` matched nothing, training crashed: its traceback is printed);
:data:`EXIT_USAGE` (2) a mistake in what was typed (a missing file, an unknown model, arrays of the
wrong shape), reported as one line on stderr, ``fnc-reid COMMAND: error: ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import inspect
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import torch

from fnc.data.dataset import CorruptImageError
from fnc.data.records import ReIDDataset
from fnc.data.registry import FORMATS, read_dataset
from fnc.engine.checkpoint import CheckpointError
from fnc.models import CheckpointMismatchError, CorruptCheckpointError, PretrainedNotFoundError, UnsafeCheckpointError

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "UsageError",
    "add_command",
    "add_data_args",
    "add_device_arg",
    "job",
    "one_line",
    "read_data",
    "reader_options",
    "reported",
    "resolve_device",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

Command = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """A mistake in how a command was called; printed as one line, exit code 2."""


class _JobFailed(Exception):
    """Wraps an exception raised while the job ran, so it is not mistaken for a usage error."""


#: Exceptions that mean the input was wrong, not that fnc-reid failed: the readers, the model
#: factory and the checkpoint loader raise these with a message that names the problem and the fix.
USER_ERRORS: tuple[type[BaseException], ...] = (
    UsageError, FileNotFoundError, NotADirectoryError, IsADirectoryError, CorruptImageError,
    CheckpointError, CheckpointMismatchError, CorruptCheckpointError, PretrainedNotFoundError,
    UnsafeCheckpointError, ValueError,
)


def one_line(message: object) -> str:
    """``message`` as one line (a multi-line error joined with spaces).

    >>> one_line("a\\n  b")
    'a b'
    """
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


def reported(name: str) -> Callable[[Command], Command]:
    """Turn a command's exceptions into exit codes: user mistakes 2 (one stderr line), job failures 1.

    Args:
        name: the command, for the ``fnc-reid NAME: error:`` prefix.

    >>> @reported("demo")
    ... def run(args):
    ...     raise UsageError("--epochs must be >= 1")
    >>> run(None)  # doctest: +SKIP
    2
    """

    def wrap(fn: Command) -> Command:
        @functools.wraps(fn)
        def run(args: argparse.Namespace) -> int:
            try:
                return fn(args)
            except _JobFailed as failed:
                error = failed.__cause__
                traceback.print_exception(type(error), error, error.__traceback__)
                print(f"fnc-reid {name}: failed: {one_line(error) or type(error).__name__}", file=sys.stderr)
                return EXIT_FAILED
            except USER_ERRORS as e:
                print(f"fnc-reid {name}: error: {one_line(e) or type(e).__name__}", file=sys.stderr)
                return EXIT_USAGE

        return run

    return wrap


@contextlib.contextmanager
def job() -> Iterator[None]:
    """Mark the part of a command that does the work: what it raises is a failure (exit 1, with
    its traceback), even when its type is one :func:`reported` would read as a user mistake.

    >>> with job():  # doctest: +SKIP
    ...     trainer.fit()
    """
    try:
        yield
    except Exception as e:
        raise _JobFailed() from e


class _Formatter(argparse.HelpFormatter):
    """Wraps a one-paragraph description; keeps text with line breaks (the examples) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def add_command(subparsers: Any, name: str, help: str, description: str, epilog: str = "") -> argparse.ArgumentParser:
    """One subcommand's parser, with the shared help layout.

    >>> parser = argparse.ArgumentParser(prog="fnc-reid")
    >>> add_command(parser.add_subparsers(), "list", "list model names", "List models.").prog
    'fnc-reid list'
    """
    return subparsers.add_parser(name, help=help, description=description, epilog=epilog, formatter_class=_Formatter)


def add_data_args(parser: argparse.ArgumentParser) -> None:
    """``--data FORMAT:PATH`` and the reader options that some formats take."""
    parser.add_argument("--data", required=True, metavar="FORMAT:PATH",
                        help="dataset: cityflow:ROOT, veri:ROOT, market:ROOT, vehicleid:ROOT, veriwild:ROOT or csv:FILE.csv")
    parser.add_argument("--holdout-ids", type=int, default=0, metavar="N",
                        help="cityflow / csv without labelled query/gallery: hold N training identities out for evaluation")
    parser.add_argument("--label-file", default=None, metavar="CSV",
                        help="cityflow: labels of image_query / image_test (path,id,camera)")
    parser.add_argument("--test-size", type=int, default=None, metavar="N",
                        help="vehicleid: 800, 1600 or 2400 test identities (default 800); "
                             "veriwild: 3000, 5000 or 10000 (default 3000)")


#: The reader keyword of each option :func:`add_data_args` offers -> (its flag, its "not given" value).
_READER_OPTIONS: dict[str, tuple[str, Any]] = {
    "holdout_ids": ("--holdout-ids", 0),
    "label_file": ("--label-file", None),
    "test_size": ("--test-size", None),
}


def reader_options(args: argparse.Namespace) -> dict[str, Any]:
    """The reader keywords given on the command line, checked against the format's reader signature.

    Raises:
        UsageError: an option the dataset's format does not take (the formats that do are named).

    >>> reader_options(argparse.Namespace(data="vehicleid:/d", holdout_ids=0, label_file=None, test_size=1600))
    {'test_size': 1600}
    """
    fmt = args.data.partition(":")[0].strip().lower()
    kwargs: dict[str, Any] = {}
    for key, (flag, unset) in _READER_OPTIONS.items():
        value = getattr(args, key, unset)
        if value == unset:
            continue
        takes = sorted(name for name, reader in FORMATS.items() if key in inspect.signature(reader).parameters)
        # An unknown format is read_dataset's error (it lists the formats).
        if fmt in FORMATS and fmt not in takes:
            raise UsageError(f"{flag} applies to {', '.join(takes)} data, not {fmt!r}")
        kwargs[key] = value
    return kwargs


def read_data(args: argparse.Namespace) -> ReIDDataset:
    """The dataset of :func:`add_data_args`' options.

    Raises:
        UsageError: an option the dataset's format does not take.
    """
    return read_dataset(args.data, **reader_options(args))


def add_device_arg(parser: argparse.ArgumentParser) -> None:
    """``--device``, read by :func:`resolve_device`."""
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: CUDA if available)")


def resolve_device(name: str | None) -> str:
    """The ``--device`` to run on: ``name`` checked, or CUDA if available, else the CPU.

    Raises:
        UsageError: a name torch does not know.

    >>> resolve_device("cpu")
    'cpu'
    """
    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(name)
    except RuntimeError as e:
        raise UsageError(f"--device {name!r}: {one_line(e)}") from None
    return name
