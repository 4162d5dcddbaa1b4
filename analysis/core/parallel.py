"""Running independent jobs side by side in forked worker processes, with a watchdog.

Each job runs in a process of its own (at most ``workers`` at a time), forked from the caller
(so it inherits the caller's imports) and connected to it by a pipe of its own. Workers start
with default signal handling: SIGTERM kills them, and so does SIGINT unless the caller ignores
it; they inherit no Python handler. A worker exits on its own once it has sent its result: on
success nothing is ever terminated.

Why not ``multiprocessing.Pool``: its workers share one task queue guarded by one lock, and an
idle worker holds that lock while it waits for a task. A worker killed by a signal (a Ctrl-C
reaches every process of the terminal's process group) dies holding it, and ``Pool.terminate``
then blocks for ever acquiring it; with the caller's ``KeyboardInterrupt`` handler inherited
instead, workers print tracebacks and can die in the same place. Here a dead worker can only
break its own pipe.

The caller stops every worker (SIGTERM, then SIGKILL after :data:`GRACE_SECONDS`) and removes
their temporary files (told by :func:`analysis.core.atomic.on_temp_file`) when it is
interrupted, when a job fails, when a worker dies, and when the stage stops making progress:
no job finished, no message came and no worker process (nor its children) used CPU time for
``VLMS_STALL_SECONDS`` (default :data:`DEFAULT_STALL_SECONDS`). Without ``/proc`` only finished
jobs count as progress.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import pickle
import signal
import subprocess
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.pool import RemoteTraceback  # the worker's traceback, as Pool gives it
from pathlib import Path
from subprocess import PIPE
from typing import Any

from analysis.core import atomic, interrupt
from analysis.core.errors import VlmsInputError

STALL_ENV = "VLMS_STALL_SECONDS"
DEFAULT_STALL_SECONDS = 600.0
"""Seconds without any sign of progress after which a parallel stage is stopped."""
POLL_SECONDS = 0.5
GRACE_SECONDS = 10.0
"""How long stopped workers get to exit after SIGTERM before they are killed."""


class ParallelStageError(RuntimeError):
    """A parallel stage that cannot finish: a worker process died, or nothing progressed."""


class StalledError(ParallelStageError):
    """No progress for longer than the stall limit."""


class WorkerLostError(ParallelStageError):
    """A worker process died before sending its result."""


def stall_seconds() -> float:
    """The stall limit: ``$VLMS_STALL_SECONDS`` or :data:`DEFAULT_STALL_SECONDS`."""
    raw = os.environ.get(STALL_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_STALL_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise VlmsInputError(f"{STALL_ENV} must be a positive number of seconds")
    return value


def fork_starmap(
    func: Callable[..., Any],
    jobs: Sequence[tuple],
    workers: int,
    *,
    stall: float | None = None,
    on_done: Callable[[int, Any], None] | None = None,
) -> list[Any]:
    """``[func(*job) for job in jobs]``, in up to ``workers`` forked processes when it helps.

    ``on_done(number finished so far, result)`` is called as each job finishes (in the caller).
    Raises the first job's exception (with the worker's traceback as its cause),
    ``KeyboardInterrupt`` when interrupted (also when a worker was stopped by SIGINT or SIGTERM),
    :class:`WorkerLostError` when a worker died otherwise and :class:`StalledError` after
    ``stall`` seconds (default :func:`stall_seconds`) without progress; every worker is stopped
    first.
    """
    done = on_done or (lambda _count, _result: None)
    if workers <= 1 or len(jobs) <= 1:
        results = []
        for job in jobs:
            results.append(func(*job))
            done(len(results), results[-1])
        return results
    limit = stall_seconds() if stall is None else stall
    with interrupt.guard():  # records SIGINT in library use too, so the bookkeeping is deferred
        return _Stage(func, list(jobs), min(workers, len(jobs)), limit, done).run()


# --------------------------------------------------------------------------- the worker side


def _worker_main(
    func: Callable[..., Any], job: tuple, conn: Connection, sigint: Any
) -> None:  # pragma: no cover - runs in the forked child
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, sigint)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, interrupt.SIGNALS)
    atomic.on_temp_file(lambda folder, prefix: conn.send(("temp", str(folder), prefix)))
    try:
        message: tuple = ("ok", func(*job))
    except Exception as exc:
        message = ("error", _picklable(exc), traceback.format_exc())
    atomic.on_temp_file(None)
    try:
        conn.send(message)
    except Exception as exc:  # an unpicklable result
        conn.send(("error", RuntimeError(f"cannot send the result: {exc}"), ""))
    conn.close()


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


# --------------------------------------------------------------------------- the parent side


@dataclass
class _Worker:
    index: int
    process: Any
    conn: Connection
    temps: list[tuple[str, str]] = field(default_factory=list)
    done: bool = False


@dataclass
class _Stage:
    func: Callable[..., Any]
    jobs: list[tuple]
    workers: int
    stall: float
    on_done: Callable[[int, Any], None]
    results: dict[int, Any] = field(default_factory=dict)
    running: dict[int, _Worker] = field(default_factory=dict)
    last_progress: float = 0.0
    last_cpu: float = 0.0

    def run(self) -> list[Any]:
        """Run every job; stop every worker on any exception (see :func:`fork_starmap`)."""
        waiting = list(range(len(self.jobs)))
        self.last_progress, self.last_cpu = time.monotonic(), 0.0
        try:
            # only the wait may be cut short by a signal: starting a worker and reading what it
            # sent are done in one piece, so that no worker and no temporary file is lost track
            # of (a signal then takes effect at the end of the piece)
            while True:
                with interrupt.deferred():
                    handles = self._step(waiting)
                if not handles:
                    return [self.results[i] for i in range(len(self.jobs))]
                wait(handles, timeout=POLL_SECONDS)
        except BaseException:
            with interrupt.deferred():
                self._stop()
            raise

    def _step(self, waiting: list[int]) -> list[Any]:
        """Collect, start workers, watch progress; the handles to wait on ([] when all done)."""
        progressed = False
        for w in list(self.running.values()):
            progressed |= self._collect(w)
        while waiting and len(self.running) < self.workers:
            self._start(waiting.pop(0))
        cpu = sum(_tree_cpu_seconds(w.process.pid) for w in self.running.values())
        if progressed or cpu > self.last_cpu + 0.01:
            self.last_progress = time.monotonic()
        self.last_cpu = cpu
        if time.monotonic() - self.last_progress > self.stall:
            raise StalledError(
                f"no progress for {self.stall:.0f} s: {len(self.running)} worker "
                f"process(es) used no CPU time and {len(self.results)} of "
                f"{len(self.jobs)} jobs finished; stopped them (set {STALL_ENV} to "
                "wait longer)"
            )
        handles = [w.conn for w in self.running.values()]
        return handles + [w.process.sentinel for w in self.running.values()]

    def _start(self, index: int) -> None:
        ctx = mp.get_context("fork")
        reader, writer = ctx.Pipe(duplex=False)
        sigint = signal.getsignal(signal.SIGINT)
        sigint = signal.SIG_IGN if sigint is signal.SIG_IGN else signal.SIG_DFL
        process = ctx.Process(
            target=_worker_main,
            args=(self.func, self.jobs[index], writer, sigint),
            name=f"vlms-worker-{index + 1}",
        )
        # the child must not run the caller's handlers between the fork and its own set-up
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, interrupt.SIGNALS)
        try:
            process.start()
            self.running[index] = _Worker(index, process, reader)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            writer.close()

    def _collect(self, w: _Worker) -> bool:
        """Read what ``w`` sent; finish it if it is done. True if anything came."""
        got = False
        exited = w.process.exitcode is not None  # first: all it sent is in the pipe by then
        try:
            while not w.done and w.conn.poll():
                kind, *payload = w.conn.recv()
                got = True
                if kind == "temp":
                    w.temps.append((payload[0], payload[1]))
                elif kind == "ok":
                    self.results[w.index], w.done = payload[0], True
                    self.on_done(len(self.results), payload[0])
                else:
                    exc, remote = payload
                    raise exc from RemoteTraceback(remote)
        except EOFError:
            pass
        if w.done:  # it exits on its own; a process that lingers has nothing left to give
            w.process.join(GRACE_SECONDS)
            if w.process.exitcode is None:
                w.process.kill()
                w.process.join()
            w.conn.close()
            del self.running[w.index]
        elif exited:
            raise _lost(w, len(self.jobs))
        return got

    def _stop(self) -> None:
        workers = list(self.running.values())
        for w in workers:
            if w.process.exitcode is None:
                w.process.terminate()
        deadline = time.monotonic() + GRACE_SECONDS
        for w in workers:
            w.process.join(max(0.0, deadline - time.monotonic()))
            if w.process.exitcode is None:
                w.process.kill()
                w.process.join()
            _drain(w)
            w.conn.close()
            _remove_temps(w.temps)
        self.running.clear()


def _drain(w: _Worker) -> None:
    """Read the temporary files a dead worker announced after the parent last looked."""
    with contextlib.suppress(EOFError, OSError):
        while w.conn.poll():
            kind, *payload = w.conn.recv()
            if kind == "temp":
                w.temps.append((payload[0], payload[1]))


# --------------------------------------------------------------------------- Dask


def as_finished(
    pending: dict[Any, Any], limit: float, what: str = "task"
) -> Iterator[tuple[Any, Any]]:
    """Yield (future, label) from ``pending`` (Dask futures -> labels) as they finish; raise
    :class:`StalledError` when none finishes for ``limit`` seconds (the futures are left to the
    caller, who closes the client)."""
    from distributed import wait as wait_for

    pending = dict(pending)
    while pending:
        try:
            done, _ = wait_for(list(pending), timeout=limit, return_when="FIRST_COMPLETED")
        except TimeoutError:
            raise StalledError(
                f"no {what} finished for {limit:.0f} s ({len(pending)} left); stopped "
                f"(set {STALL_ENV} to wait longer)"
            ) from None
        for fut in done:
            yield fut, pending.pop(fut)


# --------------------------------------------------------------------------- a command


def run_command(
    cmd: Sequence[str], cwd: Path, *, stall: float | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` (output captured) in a process group of its own, with the same watchdog.

    On an interrupt, or when neither the command nor any of its descendants used CPU time for
    ``stall`` seconds (default :func:`stall_seconds`; :class:`StalledError`), the whole group
    is stopped (SIGTERM, then SIGKILL after :data:`GRACE_SECONDS`) before the exception goes on:
    nothing the command started outlives it.
    """
    limit = stall_seconds() if stall is None else stall
    proc = subprocess.Popen(
        list(cmd), cwd=cwd, stdout=PIPE, stderr=PIPE, text=True, start_new_session=True
    )
    last_progress, last_cpu = time.monotonic(), -1.0
    try:
        while True:
            try:
                out, err = proc.communicate(timeout=POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                cpu = _tree_cpu_seconds(proc.pid)
                if cpu > last_cpu + 0.01:
                    last_progress, last_cpu = time.monotonic(), cpu
                if time.monotonic() - last_progress > limit:
                    raise StalledError(
                        f"no progress for {limit:.0f} s: {' '.join(cmd)} used no CPU time; "
                        f"stopped it (set {STALL_ENV} to wait longer)"
                    ) from None
    except BaseException:
        with interrupt.deferred():
            _stop_group(proc)
        raise
    return subprocess.CompletedProcess(list(cmd), proc.returncode, out, err)


def _stop_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=GRACE_SECONDS)
            return


def _lost(w: _Worker, total: int) -> BaseException:
    _drain(w)
    _remove_temps(w.temps)
    code = w.process.exitcode
    if code in (-signal.SIGINT, -signal.SIGTERM):
        return KeyboardInterrupt()
    how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited ({code})"
    return WorkerLostError(
        f"the worker process of job {w.index + 1} of {total} {how} before finishing it"
    )


def _remove_temps(temps: list[tuple[str, str]]) -> None:
    for folder, prefix in temps:
        for path in Path(folder).glob(f"{prefix}*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _tree_cpu_seconds(pid: int) -> float:
    """CPU seconds used by process ``pid`` and its descendants (0 without ``/proc``)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
            tasks = list(Path(f"/proc/{p}/task").iterdir())
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += sum(int(v) for v in fields[11:15]) / _TICKS  # utime stime cutime cstime
        for task in tasks:
            with contextlib.suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return total
