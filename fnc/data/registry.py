"""One entry point, ``read_dataset("FORMAT:PATH")``, over every dataset reader (used by the CLI)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fnc.data.cityflow import read_cityflow
from fnc.data.market import read_market1501
from fnc.data.records import ReIDDataset
from fnc.data.table import read_csv
from fnc.data.veri import read_veri776

__all__ = ["FORMATS", "read_dataset"]

FORMATS: dict[str, Callable[..., ReIDDataset]] = {
    "cityflow": read_cityflow,
    "veri": read_veri776,
    "market": read_market1501,
    "csv": read_csv,
}


def read_dataset(spec: str, **kwargs) -> ReIDDataset:
    """Read a dataset named as ``FORMAT:PATH``.

    Args:
        spec: ``cityflow:ROOT``, ``veri:ROOT``, ``market:ROOT`` or ``csv:FILE.csv``.
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
