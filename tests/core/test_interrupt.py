"""A signal stops a command even when a library swallows its KeyboardInterrupt.

The swallowing is real, not simulated: a ``KeyboardInterrupt`` raised inside a ctypes callback
(here libc's ``qsort`` calling a Python comparison, as LLVM calls llvmlite's object-cache callback
while numba compiles) is reported as "Exception ignored" and the C function carries on.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analysis.core import atomic, interrupt

LIBC = ctypes.CDLL(None)
COMPARE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)


def sort_with_a_signal_in_the_callback(sig: int = signal.SIGINT) -> list[int]:
    """libc's qsort on five ints; the first comparison (Python, called from C) signals us."""
    fired: list[int] = []

    def compare(a: int, b: int) -> int:
        if not fired:
            fired.append(1)
            os.kill(os.getpid(), sig)  # the handler runs here, inside the callback
        x = ctypes.cast(a, ctypes.POINTER(ctypes.c_int)).contents.value
        y = ctypes.cast(b, ctypes.POINTER(ctypes.c_int)).contents.value
        return (x > y) - (x < y)

    values = (ctypes.c_int * 5)(5, 3, 1, 4, 2)
    LIBC.qsort(values, 5, ctypes.sizeof(ctypes.c_int), COMPARE(compare))
    return list(values)


@pytest.fixture
def lost() -> Iterator[list[Any]]:
    """Exceptions Python could not raise (reported through ``sys.unraisablehook``)."""
    seen: list[Any] = []
    hook = sys.unraisablehook
    sys.unraisablehook = lambda u: seen.append(u.exc_type)
    try:
        yield seen
    finally:
        sys.unraisablehook = hook


@pytest.fixture
def installed() -> Iterator[None]:
    """The handlers ``vlms`` installs, restored afterwards."""
    previous = interrupt.install()
    try:
        yield
    finally:
        interrupt.restore(previous)


def test_a_keyboard_interrupt_in_a_ctypes_callback_is_lost(lost: list[Any]) -> None:
    """The mechanism: without a guard the sort returns as if nothing had happened."""
    assert sorted(sort_with_a_signal_in_the_callback()) == [1, 2, 3, 4, 5]
    assert lost == [KeyboardInterrupt]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_guard_raises_the_lost_interrupt(sig: int, lost: list[Any], installed: None) -> None:
    with pytest.raises(KeyboardInterrupt), interrupt.guard():
        sort_with_a_signal_in_the_callback(sig)
    assert lost == [KeyboardInterrupt]
    assert interrupt.received() == sig


def test_guard_works_without_the_command_handlers(lost: list[Any]) -> None:
    """Library use (Python's default SIGINT handler): the guard records SIGINT for the call only."""
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt), interrupt.guard():
        sort_with_a_signal_in_the_callback()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert interrupt.received() is None  # forgotten: a later call is not interrupted
    with interrupt.guard():
        pass


def test_guard_turns_an_error_after_a_signal_into_an_interrupt(installed: None) -> None:
    """A library that turns the interrupt into an error of its own (PyMC building a trace)."""
    with pytest.raises(KeyboardInterrupt), interrupt.guard():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except KeyboardInterrupt:
            raise ValueError("cannot build a trace from 0 draws") from None


def test_guard_keeps_an_error_without_a_signal(installed: None) -> None:
    with pytest.raises(ValueError, match="a real error"), interrupt.guard():
        raise ValueError("a real error")


def test_compile_structure_stops_when_compilation_swallows_the_interrupt(
    monkeypatch: pytest.MonkeyPatch, lost: list[Any]
) -> None:
    """nutpie's compiler is replaced by one that loses a Ctrl-C in a C callback (as numba's code
    generation does); ``compile_structure`` must raise instead of returning a compiled model."""
    import nutpie

    from analysis.inference.data import make_fit_data
    from analysis.inference.engine import compile_structure
    from models.priors import Priors

    calls: list[int] = []

    def compile_losing_the_interrupt(model: Any, **kwargs: Any) -> str:
        sort_with_a_signal_in_the_callback()
        calls.append(1)
        return "compiled"

    monkeypatch.setattr(nutpie, "compile_pymc_model", compile_losing_the_interrupt)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, 30).astype(float)
    data = make_fit_data(rng.exponential(20, 30) + 0.1, rng.integers(0, 2, 30), {"a": x})
    with pytest.raises(KeyboardInterrupt):
        compile_structure("pem", data, Priors(), "nutpie")
    assert calls == [1] and lost == [KeyboardInterrupt]


def test_no_file_is_committed_after_a_lost_interrupt(tmp_path: Path, installed: None) -> None:
    with pytest.raises(KeyboardInterrupt), atomic.together():
        atomic.write_text(tmp_path / "a.txt", "complete")
        with contextlib.suppress(KeyboardInterrupt):  # lost
            os.kill(os.getpid(), signal.SIGTERM)
        atomic.write_text(tmp_path / "b.txt", "complete")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(KeyboardInterrupt):  # outside a batch too
        atomic.write_text(tmp_path / "c.txt", "complete")
    assert list(tmp_path.iterdir()) == []


def test_together_commits_all_or_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic.together():
        atomic.write_text(tmp_path / "a.txt", "complete")
        assert not (tmp_path / "a.txt").exists()  # not before the end of the block
        raise RuntimeError("the second output failed")
    assert list(tmp_path.iterdir()) == []
    with atomic.together():
        atomic.write_text(tmp_path / "a.txt", "A")
        atomic.write_text(tmp_path / "b.txt", "B")
    assert sorted(p.read_text() for p in tmp_path.iterdir()) == ["A", "B"]


def test_a_signal_during_the_commit_does_not_split_it(
    tmp_path: Path, installed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Signals are deferred while the batch is renamed: both files, then the interrupt."""
    real_replace = os.replace

    def replace_then_signal(src: Any, dst: Any) -> None:
        real_replace(src, dst)
        os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt), atomic.together():
        atomic.write_text(tmp_path / "a.txt", "A")
        atomic.write_text(tmp_path / "b.txt", "B")
        monkeypatch.setattr(os, "replace", replace_then_signal)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_install_keeps_an_ignored_sigint_ignored() -> None:
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        previous = interrupt.install()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is interrupt.handle
        interrupt.restore(previous)
        assert signal.getsignal(signal.SIGTERM) is previous[signal.SIGTERM]
    finally:
        signal.signal(signal.SIGINT, old)
