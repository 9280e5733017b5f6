"""The dataset-format registry: ``read_dataset("FORMAT:PATH")`` over every reader.

A format is registered where its reader is defined (``@register_format("veri")`` above the
function), so adding one is one file plus its import in ``fnc/data/__init__.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fnc.data.records import ReIDDataset

__all__ = ["FORMATS", "read_dataset", "register_format"]

Reader = Callable[..., ReIDDataset]

#: format name -> reader, filled by :func:`register_format`.
FORMATS: dict[str, Reader] = {}


def register_format(name: str) -> Callable[[Reader], Reader]:
    """Register a reader ``fn(path, **options) -> ReIDDataset`` under ``name`` for :func:`read_dataset`.

    Args:
        name: the ``FORMAT`` of ``FORMAT:PATH``, lower-case.

    Returns:
        A decorator that registers the reader and returns it unchanged.

    >>> @register_format("toy")  # doctest: +SKIP
    ... def read_toy(root): ...
    """

    def decorate(fn: Reader) -> Reader:
        if name in FORMATS and FORMATS[name] is not fn:
            raise ValueError(
                f"dataset format {name!r} is registered twice ({FORMATS[name].__module__}, {fn.__module__})"
            )
        FORMATS[name] = fn
        return fn

    return decorate


def read_dataset(spec: str, **kwargs) -> ReIDDataset:
    """Read a dataset named as ``FORMAT:PATH``.

    Args:
        spec: ``FORMAT:PATH`` with FORMAT one of :data:`FORMATS`, e.g. ``cityflow:ROOT``,
            ``veri:ROOT``, ``market:ROOT`` or ``csv:FILE.csv``.
        **kwargs: passed to the reader, e.g. ``holdout_ids=50`` for ``cityflow`` and ``csv``.

    Returns:
        The dataset.

    Raises:
        ValueError: the spec has no ``FORMAT:`` prefix or names an unknown format (those that
            exist are listed).

    >>> ds = read_dataset("veri:/data/VeRi")  # doctest: +SKIP
    """
    fmt, sep, path = spec.partition(":")
    fmt = fmt.strip().lower()
    if not sep or not path or fmt not in FORMATS:
        raise ValueError(
            f"cannot read dataset {spec!r}: expected FORMAT:PATH with FORMAT one of {sorted(FORMATS)}, "
            "e.g. 'veri:/data/VeRi' or 'csv:my_cameras/labels.csv'"
        )
    return FORMATS[fmt](Path(path).expanduser(), **kwargs)
