"""Independent jobs side by side: on a Dask scheduler, in a local fork pool, or in this process.

Every job is a picklable tuple of arguments for one module-level function, and its result
depends on its arguments only (seeds included), so the outcome does not depend on where or in
which order the jobs ran. Results come back in job order; ``progress`` is called as each one
finishes.

Local workers are forked with default SIGINT/SIGTERM handlers (the parent's handlers would
otherwise fire inside a worker's queue wait and can leave a lock held, see NOTES.md); the pool
is closed and joined on success and terminated on any error or interrupt.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence
from typing import Any

Job = tuple[Any, ...]


def _default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _call(payload: tuple[Callable[..., Any], int, Job]) -> tuple[int, Any]:
    func, position, job = payload
    return position, func(*job)


def run_jobs(
    func: Callable[..., Any],
    jobs: Sequence[Job],
    *,
    workers: int = 1,
    scheduler: str | None = None,
    progress: Callable[[int, Any], None] | None = None,
) -> list[Any]:
    """``[func(*job) for job in jobs]`` on a Dask scheduler (``scheduler`` address), in
    ``workers`` forked processes, or here (``workers <= 1``)."""
    say = progress or (lambda _done, _result: None)
    results: dict[int, Any] = {}
    if scheduler is not None:
        from distributed import Client, as_completed

        client = Client(scheduler)
        try:
            futures = {client.submit(func, *job, pure=False): k for k, job in enumerate(jobs)}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                say(len(results), results[futures[future]])
        finally:
            client.close()
    elif workers <= 1 or len(jobs) <= 1:
        for k, job in enumerate(jobs):
            results[k] = func(*job)
            say(len(results), results[k])
    else:
        import multiprocessing as mp

        pool = mp.get_context("fork").Pool(min(workers, len(jobs)), initializer=_default_signals)
        try:
            payloads = [(func, k, job) for k, job in enumerate(jobs)]
            for position, result in pool.imap_unordered(_call, payloads):
                results[position] = result
                say(len(results), result)
            pool.close()
        except BaseException:
            pool.terminate()
            raise
        finally:
            pool.join()
    return [results[k] for k in range(len(jobs))]
