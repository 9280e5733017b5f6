"""Which BLAS multiplies the float32 blocks on the CPU, and how its threads are run.

torch's x86 wheels multiply with MKL, which does not take its fastest kernels on AMD CPUs;
numpy's wheels multiply with OpenBLAS, which ran the CityFlow-size blocks 1.6x faster there
(189 against 120 GFLOP/s on an EPYC, Zen 2, 2 cores). On those CPUs the blocks go through
numpy, as :class:`SlicedGemm`: OpenBLAS limited to one thread, each product cut into row slices
that our own threads multiply. Left to its own threads, OpenBLAS keeps them spinning for a
while after every call (about 2^28 cycles), and on a machine with few cores they take a core
from the torch work that follows each block: at CityFlow size, noise 4, a call took 7.8 s that way
and 7.0 s with the slices.
"""

from __future__ import annotations

import functools
import importlib.util
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor


@functools.lru_cache(maxsize=1)
def numpy_blas_preferred() -> bool:
    """Whether the float32 GEMMs go through numpy's BLAS instead of torch's: on AMD CPUs, when
    numpy's BLAS is OpenBLAS (as in its wheels) and threadpoolctl, which holds its threads (a
    dependency of fnc-reid; a copy of ``fnc/rerank`` without it keeps torch's GEMM), is there.

    A fixed rule, not a timing trial: the choice changes the float32 rounding of the output (by
    ~1e-7), which should not depend on how busy the machine was. Both libraries sum float32
    products with FMAs, within the float32 radius of the search (docs/rerank.md).
    """
    return (
        _cpu_vendor() == "AuthenticAMD"
        and "openblas" in _numpy_blas_name()
        and importlib.util.find_spec("threadpoolctl") is not None
    )


def numpy_gemm_for(x: Tensor) -> bool:
    """Whether the float32 blocks of features ``x`` are multiplied by numpy's BLAS.

    Not under ``torch.set_num_threads(1)``: the slices use as many threads as torch does, and a
    caller who asked torch for one thread gets torch's single-threaded GEMM.
    """
    return (
        x.device.type == "cpu" and x.dtype == torch.float32 and torch.get_num_threads() > 1 and numpy_blas_preferred()
    )


def _cpu_vendor() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _numpy_blas_name() -> str:
    """numpy's BLAS as its build reports it ("scipy-openblas", "openblas", "mkl", ...); "" when
    this numpy cannot say (before 1.26)."""
    try:
        return str(np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]).lower()
    except Exception:  # noqa: BLE001 - any failure means "unknown", and torch's GEMM is kept
        return ""


class SlicedGemm:
    """float32 products through numpy's BLAS, one single-threaded call per row slice, the slices
    multiplied by ``threads`` threads at once.

    A context manager: from its first product on, numpy's BLAS is limited to one thread (the
    previous limit comes back on exit, also after an error), so no BLAS worker is left spinning
    between products. The limit is process-wide while it lasts: BLAS calls that other threads
    make meanwhile run on one thread too.

    >>> a, b = np.ones((4, 3), np.float32), np.ones((5, 3), np.float32)
    >>> out = np.empty((4, 5), np.float32)
    >>> with SlicedGemm(2) as gemm:
    ...     _ = gemm.matmul(a, b.T, out)
    >>> float(out[0, 0])
    3.0
    """

    def __init__(self, threads: int) -> None:
        self.threads = max(1, int(threads))
        self._entered = False
        self._limits = None
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> SlicedGemm:
        # Nothing is limited yet: a pass that never multiplies through numpy leaves its BLAS alone.
        self._entered = True
        return self

    def __exit__(self, *exc: object) -> None:
        self._entered = False
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if self._limits is not None:
            self._limits.restore_original_limits()
            self._limits = None

    def _start(self) -> None:
        # threadpoolctl finds the BLAS numpy loaded whatever its build renamed it to
        # (scipy-openblas prefixes its symbols), which a ctypes call by name would not.
        from threadpoolctl import threadpool_limits

        self._limits = threadpool_limits(limits=1, user_api="blas")
        if self.threads > 1:
            self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="fnc-gemm")

    def matmul(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out = a @ b``, ``out`` split into row slices, one per thread (numpy releases the
        GIL inside the BLAS call)."""
        if not self._entered:
            raise RuntimeError("SlicedGemm.matmul is used inside `with SlicedGemm(threads) as gemm:`")
        if self._limits is None:
            self._start()
        rows = a.shape[0]
        parts = min(self.threads, rows)
        if parts <= 1 or self._pool is None:
            return np.matmul(a, b, out=out)
        bounds = [rows * p // parts for p in range(parts + 1)]
        futures = [self._pool.submit(np.matmul, a[s:e], b, out=out[s:e]) for s, e in zip(bounds[1:-1], bounds[2:])]
        np.matmul(a[: bounds[1]], b, out=out[: bounds[1]])
        for f in futures:
            f.result()
        return out
