"""Test-session setup: one local Hub-compatible server, with huggingface_hub pointed at it.

huggingface_hub reads HF_ENDPOINT / HF_HUB_CACHE / HF_HUB_OFFLINE when it is imported, so the
server is started and the environment set in ``pytest_configure``, before any test module
imports ``fnc`` (which imports huggingface_hub). That is also why this file imports neither at
module level. Per-test isolation then goes through ``huggingface_hub.constants``, which the
library reads at call time.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import pytest
from hypothesis import settings

sys.path.insert(0, os.path.dirname(__file__))
from hub_server import MiniHub  # noqa: E402

_STATE: dict = {}

# A CI run must not pass or fail by the luck of the draw: property tests draw the same examples
# every run. HYPOTHESIS_PROFILE=explore draws fresh ones (worth a few runs after a kernel change).
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


def pytest_configure(config: pytest.Config) -> None:
    if "huggingface_hub" in sys.modules:
        raise RuntimeError(
            "huggingface_hub was imported before tests/conftest.py could point HF_ENDPOINT at the "
            "local test Hub; do not import it (or fnc) from a pytest plugin"
        )
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        # Torch's threads slow down badly when other processes share the cores: each worker
        # takes its share. Set before any test module imports torch, which reads it then.
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        os.environ["OMP_NUM_THREADS"] = str(max(1, cpus // workers))
    tmp = tempfile.mkdtemp(prefix="fnc-hub-tests-")
    hub = MiniHub(data_dir=os.path.join(tmp, "server")).start()
    os.environ.update(
        HF_ENDPOINT=hub.endpoint,
        HF_HOME=os.path.join(tmp, "hf_home"),  # no stored token, no user config
        HF_HUB_CACHE=os.path.join(tmp, "hf_cache"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_HUB_DISABLE_UPDATE_CHECK="1",
    )
    os.environ.pop("HF_HUB_OFFLINE", None)
    os.environ.pop("HF_TOKEN", None)
    _STATE.update(hub=hub, tmp=tmp)


def pytest_unconfigure(config: pytest.Config) -> None:
    hub = _STATE.pop("hub", None)
    if hub is not None:
        hub.stop()
    shutil.rmtree(_STATE.pop("tmp", ""), ignore_errors=True)


@pytest.fixture(scope="module", autouse=True)
def _free_module_tmp(request, tmp_path_factory):
    """Delete what a test file's fixtures wrote under the base temp folder once the file is done.

    pyproject's tmp_path_retention_policy already drops a passed test's own tmp_path; module
    fixtures (trained runs, exported models) would otherwise stay until the session ends and add
    up to several GB of checkpoints, and a full CI disk makes unrelated writes fail. A fixture
    defined in a test file is visible to that file only, and a worker runs one file at a time
    (``--dist loadfile``), so what appeared during the file is the file's. Kept when one of its
    tests failed, to be looked at.
    """
    base = tmp_path_factory.getbasetemp()
    before = set(base.iterdir())
    failed = request.session.testsfailed
    yield
    if request.session.testsfailed == failed:
        for path in set(base.iterdir()) - before:
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def hub() -> MiniHub:
    """The running local Hub (``hub.endpoint``, ``hub.requests``, ``hub.seed``)."""
    return _STATE["hub"]


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """A fresh, empty huggingface_hub cache for one test."""
    import huggingface_hub.constants as constants
    import huggingface_hub.file_download as file_download

    path = tmp_path / "hf_cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(path))
    # huggingface_hub < 1.0 copies the constant into file_download at import.
    if hasattr(file_download, "HF_HUB_CACHE"):
        monkeypatch.setattr(file_download, "HF_HUB_CACHE", str(path))
    return path


@pytest.fixture
def hf_offline(monkeypatch):
    """HF_HUB_OFFLINE=1 for one test."""
    import huggingface_hub.constants as constants
    import huggingface_hub.utils as hf_utils

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    # huggingface_hub < 1.0 decides offline-ness when it builds its (cached) HTTP session.
    reset = getattr(hf_utils, "reset_sessions", None)
    if reset is not None:
        reset()
    yield
    if reset is not None:
        monkeypatch.undo()
        reset()
