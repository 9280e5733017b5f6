"""Whether an output path may be written: the one rule every fnc-reid writer follows.

Nothing fnc-reid writes may destroy what the user had. Two cases:

* **an output folder** (a checkpoint's ``OUTPUT/last`` / ``OUTPUT/best``, the demo's folder) is
  written only if it does not exist, is empty, or was written by fnc-reid, recognised by a file
  only fnc-reid puts there (a checkpoint's ``trainer_state.json``, the demo's marker). A folder
  holding anything else is never replaced, not even with ``overwrite=True``: the error names it and
  what is in it, and says to move it or choose another output;
* **an output file** the user names (``fnc-reid extract -o feats.npy`` and its row-order file)
  replaces an existing file only with ``overwrite=True`` (``--overwrite``).

Both checks run before any work starts, so a refused output costs nothing. The error,
:class:`OutputExistsError`, is a :class:`FileExistsError` and a :class:`ValueError` (a usage
mistake: the command line reports it in one line, exit code 2).
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

__all__ = ["OutputExistsError", "check_line_safe", "check_output_files", "check_output_folder", "written_by_fnc"]

_MAX_LISTED = 5


class OutputExistsError(FileExistsError, ValueError):
    """Writing an output would replace something fnc-reid did not write (or a file, without overwrite)."""


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f", ... ({len(names) - _MAX_LISTED} more)" if len(names) > _MAX_LISTED else "")


def written_by_fnc(folder: str | os.PathLike, markers: Iterable[str]) -> bool:
    """Whether ``folder`` holds one of the files only fnc-reid writes there.

    Args:
        folder: an existing folder.
        markers: file names that identify the writer, e.g. ``("trainer_state.json",)``.

    >>> written_by_fnc("/nonexistent", ["trainer_state.json"])
    False
    """
    folder = Path(folder)
    return any((folder / m).is_file() for m in markers)


def check_output_folder(
    folder: str | os.PathLike,
    written_by: Callable[[Path], bool],
    *,
    what: str = "output folder",
    overwrite: bool = False,
    fix: str = "fnc-reid never replaces it: move it away or choose another output",
) -> bool:
    """Refuse to write ``folder`` unless it is new, empty, or written by fnc-reid.

    Args:
        folder: the folder about to be written (or replaced as a whole).
        written_by: whether an existing folder is one this writer wrote, e.g. a checkpoint
            folder's manifest check, or ``lambda f: written_by_fnc(f, [MARKER])``.
        what: how messages name the folder, e.g. ``"checkpoint folder"``.
        overwrite: also accept a non-empty folder fnc-reid did not write, writing into it (the
            caller then replaces only the files it writes, never the folder as a whole). Callers
            that replace the whole folder (checkpoints) never pass it.
        fix: the end of the message, saying how to proceed.

    Returns:
        Whether the folder exists with something in it (it will be written into / replaced).

    Raises:
        OutputExistsError: ``folder`` is a file, or a non-empty folder fnc-reid did not write
            (without ``overwrite``); the message lists what is in it and how to proceed.

    >>> check_output_folder("/nonexistent/run/best", lambda f: written_by_fnc(f, ["trainer_state.json"]))
    False
    """
    folder = Path(folder)
    if not folder.exists() and not folder.is_symlink():
        return False
    if not folder.is_dir():
        raise OutputExistsError(f"{what} {folder} is a file, not a folder; move it away or choose another output")
    contents = sorted(p.name for p in folder.iterdir())
    if not contents:
        return False
    if overwrite or written_by(folder):
        return True
    raise OutputExistsError(
        f"{what} {folder} already exists and was not written by fnc-reid (it holds {_listing(contents)}); {fix}"
    )


def check_output_files(
    paths: Iterable[str | os.PathLike], *, overwrite: bool = False, flag: str = "--overwrite"
) -> None:
    """Refuse to replace existing files unless ``overwrite`` is set.

    Args:
        paths: every file the command is about to write.
        overwrite: replacing existing files was asked for explicitly.
        flag: how the caller spells the option in the message (``--overwrite``, ``overwrite=True``).

    Raises:
        OutputExistsError: some paths exist (all named), or one is a folder.

    >>> check_output_files(["/nonexistent/feats.npy"])
    """
    paths = [Path(p) for p in paths]
    folders = [str(p) for p in paths if p.is_dir()]
    if folders:
        raise OutputExistsError(f"{_listing(folders)}: a folder is in the way of an output file; choose another output")
    existing = [str(p) for p in paths if p.exists() or p.is_symlink()]
    if existing and not overwrite:
        raise OutputExistsError(
            f"{_listing(existing)} already exist{'s' if len(existing) == 1 else ''} and would be replaced; "
            f"pass {flag} to replace, or choose another output"
        )


def check_line_safe(paths: Iterable[str], what: str = "the row-order file (one path per line)") -> None:
    """Refuse paths that a one-path-per-line file cannot hold: a newline or other control character.

    Such a name would split into two lines (or hide characters) and shift every later row, so a
    file listing it could not be read back in order. The names are refused rather than escaped:
    the list stays plain text that ``open(f).read().splitlines()`` reads back.

    Args:
        paths: the paths to be written, one per line.
        what: the file, for the message.

    Raises:
        ValueError: some paths hold control characters (listed with ``repr``, so they show).

    >>> check_line_safe(["a/1.jpg", "b/2.jpg"])
    """
    bad = [p for p in paths if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in p)]
    if bad:
        raise ValueError(
            f"{len(bad)} image path(s) contain a newline or other control character, which {what} cannot hold: "
            f"{_listing([repr(p) for p in bad])}; rename the file(s)"
        )
