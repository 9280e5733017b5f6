"""Launch tests/_ddp_worker.py once alone and once under torchrun (2 CPU processes, gloo), side by side."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

WORKER = str(Path(__file__).parent / "_ddp_worker.py")
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _first_failure(stderr: str) -> str:
    """torchrun's stderr cut to what explains a failure: its start and its end.

    The first rank to fail writes its traceback first; the end is the launcher's summary. The end
    alone would show only the other rank's "connection closed" and the summary.
    """
    if len(stderr) <= 6000:
        return stderr
    return stderr[:4000] + "\n[...]\n" + stderr[-2000:]


def run_one_and_two_processes(spec: str, one: Path, two: Path, *worker_args: str) -> None:
    """Train ``spec`` into ``one`` (one process) and ``two`` (torchrun, 2 ranks); fail with their stderr."""
    # Both launched at once, to overlap their start-up.
    single = subprocess.Popen(
        [sys.executable, WORKER, spec, str(one), *worker_args],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    torchrun = ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1"]
    ddp = subprocess.run(
        [sys.executable, *torchrun, "--master_port", str(_free_port()), WORKER, spec, str(two), *worker_args],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    _, single_err = single.communicate(timeout=300)
    assert ddp.returncode == 0, _first_failure(ddp.stderr)
    assert single.returncode == 0, single_err
