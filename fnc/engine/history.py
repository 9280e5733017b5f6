"""A run's per-epoch record on disk: ``OUTPUT/metrics.jsonl``, ``OUTPUT/curves.png`` and, optionally,
TensorBoard scalars under ``OUTPUT/tensorboard``.

The trainer keeps one row per finished epoch (``Trainer.history``, also saved in every checkpoint);
after each epoch :class:`RunHistory` rewrites both files from those rows, each atomically (a
temporary file moved into place), so a reader never sees half a line and a resumed run, whose
rows come back from its checkpoint, continues the file with no epoch duplicated or lost.

A row (one JSON object per line of ``metrics.jsonl``)::

    {"epoch": 3, "loss": 1.92, "loss_id": 0.71, "loss_triplet": 0.5, "lr": 0.00035,
     "images_per_s": 210.4, "epoch_time_s": 61.2, "steps": 200,
     "mAP": 0.41, "rank1": 0.66, "rank5": 0.82, "rank10": 0.88, "mINP": 0.12, "eval_time_s": 9.8}

``epoch`` counts from 1 (the run's ``trainer_state.json`` says the same number after that
epoch); ``loss`` is the epoch mean of the total loss and ``loss_<term>`` of each term the criterion
reports (its per-branch parts, ``id/0``, ... are left to the terms they sum into); metrics are
fractions and appear only on evaluated epochs (``*_rerank`` too when re-ranking).

>>> import json, tempfile
>>> out = tempfile.mkdtemp()
>>> RunHistory(out).write([{"epoch": 1, "loss": 2.5, "lr": 0.01}])
>>> [json.loads(line)["loss"] for line in open(f"{out}/metrics.jsonl")]
[2.5]
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fnc.viz.curves import training_curves

__all__ = ["CURVES_FILE", "METRICS_FILE", "TENSORBOARD_DIR", "RunHistory", "read_metrics", "require_tensorboard"]

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
CURVES_FILE = "curves.png"
TENSORBOARD_DIR = "tensorboard"

# Row keys that are bookkeeping, not scalars worth a TensorBoard chart.
_NOT_SCALARS = {"epoch", "steps"}


def require_tensorboard() -> None:
    """Fail now, with the fix, if TensorBoard logging cannot work.

    ``torch.utils.tensorboard`` needs the ``tensorboard`` package, which fnc-reid does not
    depend on.

    Raises:
        ImportError: ``tensorboard`` is not installed; the message says how to install it.

    >>> require_tensorboard()  # doctest: +SKIP
    """
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise ImportError(
            "--tensorboard (TrainConfig.tensorboard) needs the 'tensorboard' package, which is not "
            "installed: pip install tensorboard (or run without --tensorboard)"
        ) from None


def _atomic_write(path: Path, data: bytes) -> None:
    # One writer (the main process), so a fixed temporary name is safe; open() keeps the umask's
    # permissions, which mkstemp's 0600 would not.
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` file (or of ``DIR/metrics.jsonl`` given the run's folder).

    Args:
        path: the file, or the run's output folder.

    Raises:
        ValueError: a line that is not a JSON object (the line number is named).

    >>> read_metrics("runs/veri")[-1]["mAP"]  # doctest: +SKIP
    0.81
    """
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise ValueError(f"{path}:{n} is not JSON ({e})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{n} is not a JSON object")
        rows.append(row)
    return rows


class RunHistory:
    """Writes a run's per-epoch rows: ``metrics.jsonl``, ``curves.png``, TensorBoard if asked.

    Args:
        output_dir: the run's folder (created if missing).
        tensorboard: also write each row's numbers as TensorBoard scalars (``train/loss``,
            ``train/lr``, ``eval/mAP``, ...) at step ``epoch`` under ``output_dir/tensorboard``.
            Needs the ``tensorboard`` package (see :func:`require_tensorboard`).
        title: the line above the curves (default: the folder's name).

    Raises:
        ImportError: ``tensorboard=True`` without the ``tensorboard`` package.

    Example:
        >>> history = RunHistory("runs/veri", tensorboard=True)  # doctest: +SKIP
        >>> history.write(trainer.history)  # doctest: +SKIP
    """

    def __init__(self, output_dir: str | Path, tensorboard: bool = False, title: str | None = None) -> None:
        self.output_dir = Path(output_dir)
        self.tensorboard = bool(tensorboard)
        if self.tensorboard:
            require_tensorboard()
        self.title = title if title is not None else self.output_dir.name
        self._writer: Any = None
        self._logged = 0  # rows already sent to TensorBoard

    def write(self, history: Sequence[Mapping[str, Any]]) -> None:
        """Rewrite ``metrics.jsonl`` and ``curves.png`` from all rows; send new rows to TensorBoard.

        Args:
            history: every finished epoch's row, oldest first (``Trainer.history``).
        """
        self.output_dir.mkdir(parents=True, exist_ok=True)
        lines = "".join(json.dumps(dict(row), allow_nan=True) + "\n" for row in history)
        _atomic_write(self.output_dir / METRICS_FILE, lines.encode())
        buf = io.BytesIO()
        training_curves(history, title=self.title).save(buf, format="PNG")
        _atomic_write(self.output_dir / CURVES_FILE, buf.getvalue())
        if self.tensorboard:
            self._write_tensorboard(history)

    def _write_tensorboard(self, history: Sequence[Mapping[str, Any]]) -> None:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            # The rows are the record (a resumed run gets them back from its checkpoint), so the
            # first write purges what earlier processes logged from its first step on and logs
            # every row again: epochs trained after the checkpoint and before a crash vanish.
            first = int(history[0]["epoch"]) if history else 1
            self._writer = SummaryWriter(str(self.output_dir / TENSORBOARD_DIR), purge_step=first)
            self._logged = 0
        for row in history[self._logged :]:
            step = int(row["epoch"])
            for key, value in row.items():
                if key in _NOT_SCALARS or not isinstance(value, (int, float)) or isinstance(value, bool):
                    continue
                group = "train" if key.startswith("loss") or key in ("lr", "images_per_s", "epoch_time_s") else "eval"
                self._writer.add_scalar(f"{group}/{key}", value, step)
        self._logged = len(history)
        self._writer.flush()

    def close(self) -> None:
        """Close the TensorBoard writer (if one was opened)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
