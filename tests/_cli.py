"""The ``fnc-reid`` command as the tests run it: the installed console script, or ``fnc.cli.main`` in-process.

``cli`` runs the script pip installed beside this interpreter in a child process, output piped, as a
user, CI or a cluster job runs it. Each such run pays a Python start-up with ``import torch`` (about
5 s of a 2-core machine), so a test that checks several independent commands starts them together
with ``cli_many``, and tests about argument handling and exit codes rather than the entry point use
``in_process``: the same ``main`` the script calls, without the start-up.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = str(Path(__file__).resolve().parents[1])
# The script pip put beside this interpreter (pytest may run without the venv on PATH), else PATH's.
_BESIDE = Path(sys.executable).parent / "fnc-reid"
EXE = str(_BESIDE) if _BESIDE.is_file() else shutil.which("fnc-reid")
# The conftest's HF_ENDPOINT / HF_HOME / HF_HUB_CACHE are in os.environ and so reach the child; the
# child imports this checkout's fnc, as the tests do.
ENV = dict(
    os.environ,
    OMP_NUM_THREADS="1",
    MKL_NUM_THREADS="1",
    HF_HUB_DISABLE_PROGRESS_BARS="1",
    PYTHONPATH=os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p),
)
# Children started at once by cli_many: one more than 2 cores, since part of a start-up is disk I/O.
JOBS = 3


def script(*args) -> list[str]:
    """The command line ``fnc-reid ARGS...`` (for ``subprocess.Popen``)."""
    assert EXE, "the fnc-reid console script is not installed: pip install -e ."
    return [EXE, *map(str, args)]


def cli(*args, env: Mapping[str, str] | None = None, cwd=None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``fnc-reid ARGS...`` in a child process, stdout / stderr captured as text."""
    return subprocess.run(script(*args), env=env or ENV, capture_output=True, text=True, cwd=cwd, timeout=timeout)


def cli_many(*argvs: Sequence, env: Mapping[str, str] | None = None) -> list[subprocess.CompletedProcess]:
    """Several independent ``fnc-reid`` runs, ``JOBS`` at a time; results in the order given."""
    with ThreadPoolExecutor(max_workers=JOBS) as pool:
        return list(pool.map(lambda argv: cli(*argv, env=env), argvs))


def in_process(capsys, *args) -> subprocess.CompletedProcess:
    """``fnc.cli.main(ARGS)`` in this process, as a ``CompletedProcess`` (argparse's exits included)."""
    from fnc.cli import main

    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:  # --help and argparse's own mistakes exit from inside parse_args
        code = e.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def assert_one_line(proc: subprocess.CompletedProcess, code: int, command: str, *fragments: str) -> str:
    """Exit ``code`` (2: a usage mistake, 1: the job failed) with one stderr line and no traceback."""
    kind = "error" if code == 2 else "failed"
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and lines[0].startswith(f"fnc-reid {command}: {kind}: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]
