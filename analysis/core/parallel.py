"""Running independent jobs side by side in forked worker processes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def fork_starmap(func: Callable[..., Any], jobs: Sequence[tuple], workers: int) -> list[Any]:
    """``[func(*job) for job in jobs]``, in up to ``workers`` forked processes when it helps.

    Forked workers inherit the parent's imports (and the SIGTERM handler of ``analysis.cli``);
    on any exception or interrupt the pool is terminated before re-raising.
    """
    if workers <= 1 or len(jobs) <= 1:
        return [func(*job) for job in jobs]
    import multiprocessing as mp

    with mp.get_context("fork").Pool(min(workers, len(jobs))) as pool:
        try:
            return pool.starmap(func, jobs, chunksize=1)
        except BaseException:
            pool.terminate()
            raise
