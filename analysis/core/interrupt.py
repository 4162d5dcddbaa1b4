"""Ctrl-C (SIGINT) and SIGTERM stop a command, whatever library code is running when they come.

Python raises ``KeyboardInterrupt`` at the next bytecode the main thread runs after a signal.
When that bytecode belongs to a ctypes callback or a ``__del__`` finaliser, Python prints
"Exception ignored ..." and carries on: the interrupt is lost. This happens while nutpie
compiles a model (numba's LLVM code generation calls llvmlite's object-cache callback,
``ExecutionEngine._raw_object_cache_notify``, and disposes LLVM objects in ``__del__``). PyMC's
sampler, for its part, turns ``KeyboardInterrupt`` into a partial trace.

So the handler also *records* the signal, and :func:`check` raises ``KeyboardInterrupt`` again
if one was recorded. :func:`guard` wraps each library call that may swallow an interrupt, and the
atomic writers (:mod:`analysis.core.atomic`) call :func:`check` before they commit a file: an
interrupted command writes nothing, even when a library swallowed the interrupt.

Test hook: with ``VLMS_TEST_HOLD_AT=<stage>`` and ``VLMS_TEST_HOLD_MARKER=<file>`` in the
environment, :func:`hold` (called at the stages ``reading``, ``compiling``, ``sampling`` and
``writing``) writes the marker file and waits there for a signal, so that a test can prove which
stage a command is in when the signal arrives.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)
HOLD_ENV = "VLMS_TEST_HOLD_AT"
MARKER_ENV = "VLMS_TEST_HOLD_MARKER"
HOLD_LIMIT_SECONDS = 600.0
"""A held stage that is never signalled gives up after this long (the test has failed)."""

_received: list[int] = []
_deferring: list[bool] = []


def handle(signum: int, frame: FrameType | None) -> None:
    """Signal handler: remember the signal, then raise ``KeyboardInterrupt`` (unless deferred)."""
    _received.append(signum)
    if not _deferring:
        raise KeyboardInterrupt


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A block a signal must not cut in two: it is recorded, and raised at the block's end."""
    _deferring.append(True)
    try:
        yield
    finally:
        _deferring.pop()
    check()


def install() -> dict[int, Any]:
    """Route SIGTERM, and SIGINT unless it is ignored, to :func:`handle`; forget earlier signals.

    A SIGINT that is ignored on entry stays ignored: a shell starts background jobs that way so
    that Ctrl-C at the terminal does not reach them. Returns the previous handlers (for
    :func:`restore`). Main thread only.
    """
    _received.clear()
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    signal.signal(signal.SIGTERM, handle)
    if previous[signal.SIGINT] is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, handle)
    return previous


def restore(previous: dict[int, Any]) -> None:
    """Put back the handlers :func:`install` replaced, and forget the signals recorded."""
    for sig, handler in previous.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
    _received.clear()


def received() -> int | None:
    """The first signal recorded since :func:`install`, or None."""
    return _received[0] if _received else None


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a signal was recorded (even if its exception was lost)."""
    if _received:
        raise KeyboardInterrupt


@contextlib.contextmanager
def guard() -> Iterator[None]:
    """Around a library call that may swallow ``KeyboardInterrupt``: raise it afterwards.

    Also raises before the call if a signal was recorded earlier and its exception was lost.
    If the call fails with another exception after a signal (a library turning the interrupt
    into an error of its own), ``KeyboardInterrupt`` is raised instead. In a plain Python process
    (SIGINT at Python's default handler, main thread), SIGINT is recorded for the duration of the
    call and forgotten afterwards; in a process whose signals kill it outright (a worker of
    :func:`analysis.core.parallel.fork_starmap`), nothing is installed.
    """
    previous = None
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    ):
        _received.clear()
        previous = signal.signal(signal.SIGINT, handle)
    try:
        check()  # an interrupt already swallowed before the call: do not start it
        yield
    except Exception:
        if _received:
            raise KeyboardInterrupt from None
        raise
    finally:
        interrupted = bool(_received)
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
            _received.clear()
    if interrupted:
        raise KeyboardInterrupt


def hold(stage: str) -> None:
    """Test hook: at ``stage``, if ``VLMS_TEST_HOLD_AT`` names it, wait here for a signal.

    Writes the file named by ``VLMS_TEST_HOLD_MARKER`` first. The ``KeyboardInterrupt`` the signal
    raises is swallowed here on purpose, as a library callback would swallow it: the stage then
    carries on, and the test shows that the command still stops (through :func:`check`).
    """
    if os.environ.get(HOLD_ENV) != stage:
        return
    deadline = time.monotonic() + HOLD_LIMIT_SECONDS
    try:
        Path(os.environ[MARKER_ENV]).write_text(f"{stage} {os.getpid()}\n", encoding="utf-8")
        while time.monotonic() < deadline:
            time.sleep(0.01)
    except KeyboardInterrupt:
        return
    raise RuntimeError(f"test hook: stage {stage!r} was held but never signalled")
