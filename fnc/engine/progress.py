"""Progress of a training epoch that reads well on a terminal and in a log file.

On a terminal (``sys.stderr`` is a TTY) it is a tqdm bar, refreshed in place. Anywhere else (CI,
``| tee``, a cluster job's log) a refreshing bar writes every refresh as another line, so instead
:class:`EpochProgress` logs at most one line per tenth of the epoch, and only once
``min_interval`` seconds have passed since the epoch started or since its last line: a short epoch
logs nothing of its own (the trainer's end-of-epoch line is enough), a long one a line at each
tenth (up to nine; the end of the epoch is the trainer's line).

>>> for batch in (bar := EpochProgress(range(3), "epoch 1/1", enabled=False)):
...     bar.update(images=8, loss=1.0)
>>> bar.close()
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from tqdm.auto import tqdm

__all__ = ["DEFAULT_MIN_INTERVAL", "EpochProgress", "is_terminal"]

logger = logging.getLogger(__name__)

#: Seconds an epoch runs before its first log line (and between lines) when not on a terminal.
DEFAULT_MIN_INTERVAL = 30.0


def is_terminal() -> bool:
    """Whether progress can be drawn as a bar: ``sys.stderr`` is a terminal, or this is a Jupyter
    kernel (``tqdm.auto`` draws a widget there, which never floods a log).

    >>> isinstance(is_terminal(), bool)
    True
    """
    if "ipykernel" in sys.modules:
        return True
    stream = sys.stderr
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class EpochProgress:
    """Iterate over one epoch's batches and report progress: a bar on a terminal, else log lines.

    Args:
        iterable: the epoch's batches (a DataLoader); ``len()`` gives the tenths.
        desc: what the epoch is called, e.g. ``"epoch 3/120"``.
        enabled: ``False`` reports nothing (other ranks under DDP, ``progress=False``).
        bar: ``True`` a tqdm bar, ``False`` log lines; ``None`` = a bar iff :func:`is_terminal`.
        min_interval: seconds before the first log line and between two (log mode only).
        clock: the time source, seconds (``time.perf_counter``).

    Example:
        >>> progress = EpochProgress(loader, "epoch 1/120")  # doctest: +SKIP
        >>> for images, pids, _ in progress:  # doctest: +SKIP
        ...     progress.update(images=len(pids), loss=loss, lr=lr)
        >>> progress.close()  # doctest: +SKIP
    """

    def __init__(
        self,
        iterable: Iterable[Any],
        desc: str,
        *,
        enabled: bool = True,
        bar: bool | None = None,
        min_interval: float = DEFAULT_MIN_INTERVAL,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.iterable = iterable
        self.desc = desc
        self.enabled = bool(enabled)
        self.bar = is_terminal() if bar is None else bool(bar)
        self.min_interval = float(min_interval)
        self.clock = clock
        try:
            self.total: int | None = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            self.total = None
        self.steps = 0
        self.images = 0
        self._start = clock()
        self._last_line = self._start
        self._tqdm = None
        if self.enabled and self.bar:
            self._tqdm = tqdm(iterable, desc=desc, total=self.total, dynamic_ncols=True, leave=False, file=sys.stderr)

    def __iter__(self) -> Iterator[Any]:
        self._start = self._last_line = self.clock()
        return iter(self._tqdm if self._tqdm is not None else self.iterable)

    def update(self, images: int, **values: float) -> None:
        """Record one finished step.

        Args:
            images: images the step trained on (the global batch under DDP).
            **values: numbers to show, e.g. ``loss=1.23, id=0.8, triplet=0.3, lr=3.5e-4``.
        """
        self.steps += 1
        self.images += images
        if not self.enabled:
            return
        elapsed = max(self.clock() - self._start, 1e-9)
        speed = self.images / elapsed
        if self._tqdm is not None:
            shown = {k: f"{v:.2e}" if k == "lr" else f"{v:.3f}" for k, v in values.items()}
            self._tqdm.set_postfix(**shown, img_s=f"{speed:.1f}")
            return
        if not self.total or self.steps >= self.total:
            return  # the trainer logs the end of the epoch
        crossed = self.steps * 10 // self.total > (self.steps - 1) * 10 // self.total
        now = self.clock()
        if crossed and now - self._last_line >= self.min_interval:
            self._last_line = now
            eta = elapsed / self.steps * (self.total - self.steps)
            shown = ", ".join(f"{k} {v:.2e}" if k == "lr" else f"{k} {v:.4f}" for k, v in values.items())
            logger.info(
                "%s: %3d%% (%d/%d steps)%s, %.1f images/s, eta %s",
                self.desc,
                100 * self.steps // self.total,
                self.steps,
                self.total,
                f", {shown}" if shown else "",
                speed,
                _duration(eta),
            )

    def close(self) -> None:
        """Remove the bar (a no-op in log mode)."""
        if self._tqdm is not None:
            self._tqdm.close()
            self._tqdm = None
