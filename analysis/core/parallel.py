"""Running independent jobs side by side in forked worker processes."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any


def fork_starmap(func: Callable[..., Any], jobs: Sequence[tuple], workers: int) -> list[Any]:
    """``[func(*job) for job in jobs]``, in up to ``workers`` forked processes when it helps.

    Forked workers inherit the parent's imports; on any exception or interrupt the pool is
    terminated before re-raising. A worker leaves quietly on SIGTERM (the pool's own shutdown
    sends it), unwinding through the atomic writers so that no temporary file stays behind.
    """
    if workers <= 1 or len(jobs) <= 1:
        return [func(*job) for job in jobs]
    import multiprocessing as mp

    with mp.get_context("fork").Pool(min(workers, len(jobs)), initializer=_quiet_exit) as pool:
        try:
            return pool.starmap(func, jobs, chunksize=1)
        except BaseException:
            pool.terminate()
            raise


def _quiet_exit() -> None:
    """In a worker: SIGTERM exits (``SystemExit`` runs ``finally`` blocks, prints nothing)."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
