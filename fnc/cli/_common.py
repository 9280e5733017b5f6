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
import math
import re
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch

from fnc.data.dataset import CorruptImageError
from fnc.data.records import ReIDDataset
from fnc.data.registry import FORMATS, read_dataset
from fnc.engine.checkpoint import CheckpointError
from fnc.models import (
    CheckpointMismatchError,
    CorruptCheckpointError,
    PretrainedNotFoundError,
    UnsafeCheckpointError,
    get_pretrained_cfg,
)

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Parser",
    "UsageError",
    "add_command",
    "add_data_args",
    "add_device_arg",
    "check_model_name",
    "check_output_dir",
    "check_output_file",
    "check_rerank_options",
    "error_message",
    "job",
    "one_line",
    "read_data",
    "reader_options",
    "reported",
    "require_at_least",
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
    UsageError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    CorruptImageError,
    CheckpointError,
    CheckpointMismatchError,
    CorruptCheckpointError,
    PretrainedNotFoundError,
    UnsafeCheckpointError,
    ValueError,
)


def one_line(message: object) -> str:
    """``message`` as one line (a multi-line error joined with spaces).

    >>> one_line("a\\n  b")
    'a b'
    """
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


# torch's DataLoader re-raises a worker's exception with the worker's whole traceback as message.
_WORKER_WRAP = re.compile(r"^Caught \w+ in DataLoader worker process \d+\.")


def error_message(error: BaseException) -> str:
    """``error``'s message as one line; an error re-raised from a DataLoader worker is unwrapped
    to the worker's own message (the last line of the traceback torch puts in it).

    >>> error_message(ValueError("Caught ValueError in DataLoader worker process 0.\\nOriginal Traceback"
    ...                          " (most recent call last):\\n  File x\\nValueError: bad image a.jpg"))
    'bad image a.jpg'
    """
    text = str(error)
    if _WORKER_WRAP.match(text):
        last = [line for line in text.splitlines() if line.strip()][-1]
        # "fnc.data.dataset.CorruptImageError: cannot read ..." -> the message after the class name.
        head, sep, rest = last.partition(": ")
        text = rest if sep and re.fullmatch(r"[\w.]+", head) else last
    return one_line(text) or type(error).__name__


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
                print(f"fnc-reid {name}: failed: {error_message(error)}", file=sys.stderr)
                return EXIT_FAILED
            except USER_ERRORS as e:
                print(f"fnc-reid {name}: error: {error_message(e)}", file=sys.stderr)
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


class Parser(argparse.ArgumentParser):
    """argparse's parser, but a parsing mistake is one stderr line (exit 2), as every other usage
    error is: ``fnc-reid COMMAND: error: ... (see fnc-reid COMMAND --help)``."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


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
    parser.add_argument(
        "--data",
        required=True,
        metavar="FORMAT:PATH",
        help="dataset: cityflow:ROOT, veri:ROOT, market:ROOT, vehicleid:ROOT, veriwild:ROOT or csv:FILE.csv",
    )
    parser.add_argument(
        "--holdout-ids",
        type=int,
        default=0,
        metavar="N",
        help="cityflow / csv without labelled query/gallery: hold N training identities out for evaluation",
    )
    parser.add_argument(
        "--label-file",
        default=None,
        metavar="CSV",
        help="cityflow: labels of image_query / image_test (path,id,camera)",
    )
    parser.add_argument(
        "--test-size",
        type=int,
        default=None,
        metavar="N",
        help="vehicleid: 800, 1600 or 2400 test identities (default 800); veriwild: 3000, 5000 or 10000 (default 3000)",
    )


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
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name!r} is not a device name; use cpu, cuda, cuda:1 or mps") from None
    if device.type == "cpu":
        return name
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(
                f"--device {name}: no CUDA GPU is available here (torch.cuda.is_available() is False); use --device cpu"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise UsageError(f"--device {name}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
        return name
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise UsageError(f"--device {name}: Apple MPS is not available here; use --device cpu")
        return name
    raise UsageError(f"--device {name}: fnc-reid runs on cpu, cuda or mps, not {device.type}")


def check_model_name(name: str | None) -> None:
    """An ``arch[.tag]`` name is registered (``hf-hub:`` names are checked when downloaded).

    Raises:
        ValueError: an unknown architecture or tag, listing the known ones.

    >>> check_model_name("fnc_resnet50.in1k")
    """
    if name is not None and not name.startswith("hf-hub:"):
        get_pretrained_cfg(name)


def require_at_least(value: int, flag: str, low: int) -> None:
    """Raise :class:`UsageError` unless ``value >= low``.

    >>> require_at_least(0, "--num-workers", 0)
    """
    if value < low:
        raise UsageError(f"{flag} must be >= {low}, got {value}")


def check_rerank_options(
    k1: int, k2: int, lambda_value: float, flags: Sequence[str] = ("--k1", "--k2", "--lambda")
) -> None:
    """The k-reciprocal parameters of ``eval`` and ``rerank``, checked before any work.

    Raises:
        UsageError: ``k1 < 1``, ``k2 < 1``, ``k2 > k1`` or ``lambda_value`` outside [0, 1].

    >>> check_rerank_options(75, 10, 0.1)
    """
    k1_flag, k2_flag, lambda_flag = flags
    if k1 < 1 or k2 < 1 or k2 > k1:
        raise UsageError(f"need 1 <= {k2_flag} <= {k1_flag}, got {k1_flag} {k1}, {k2_flag} {k2}")
    if not (math.isfinite(lambda_value) and 0.0 <= lambda_value <= 1.0):
        raise UsageError(f"{lambda_flag} must be in [0, 1] (the weight of the original distance), got {lambda_value}")


def _writable_folder(folder: Path, what: str) -> None:
    # The nearest folder that exists decides whether the missing ones can be created.
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise UsageError(f"{what}: {probe} is a file, not a folder")
    try:
        # Creating a file is the only test that also catches read-only mounts and root on /proc.
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        raise UsageError(
            f"{what}: cannot write in {probe} ({e.strerror or type(e).__name__}); choose another place"
        ) from None


def check_output_dir(path: str, flag: str) -> Path:
    """A folder the command will write into: not a file, and creatable / writable.

    Raises:
        UsageError: naming ``flag``.

    >>> check_output_dir("runs/veri", "--output").as_posix()
    'runs/veri'
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{flag} {path} is a file; name a folder (it is created if missing)")
    _writable_folder(out, f"{flag} {path}")
    return out


def check_output_file(path: str, flag: str, suffix: str) -> Path:
    """A file the command will write: the right suffix, not a folder, in a writable place.

    Raises:
        UsageError: naming ``flag``.

    >>> check_output_file("feats.npy", "-o", ".npy").name
    'feats.npy'
    """
    out = Path(path)
    if out.suffix != suffix:
        raise UsageError(f"{flag} must name a {suffix} file, got {path}")
    if out.is_dir():
        raise UsageError(f"{flag} {path} is a folder; name a {suffix} file")
    _writable_folder(out.parent, f"{flag} {path}")
    return out
