"""How many DataLoader worker processes to start: never more than the CPUs this process may use."""

from __future__ import annotations

import os

__all__ = ["DEFAULT_MAX_WORKERS", "available_cpus", "resolve_num_workers"]

#: Workers a loader starts by default when the machine has at least this many CPUs.
DEFAULT_MAX_WORKERS = 4


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask where the OS has one, else ``os.cpu_count()``.

    A cluster job or container pinned to 2 cores of a 64-core node gets 2, as torch's DataLoader
    counts them when it warns about too many workers.

    >>> available_cpus() >= 1
    True
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        return max(1, os.cpu_count() or 1)


def resolve_num_workers(num_workers: int | None) -> int:
    """The worker count to use: ``num_workers`` as given, or for ``None`` the default
    ``min(DEFAULT_MAX_WORKERS, available_cpus())``.

    Args:
        num_workers: an explicit count (0 loads in the main process) or ``None``.

    Raises:
        ValueError: a negative count.

    >>> resolve_num_workers(0)
    0
    >>> resolve_num_workers(None) <= available_cpus()
    True
    """
    if num_workers is None:
        return min(DEFAULT_MAX_WORKERS, available_cpus())
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0 (0 loads in the main process), got {num_workers}")
    return int(num_workers)
