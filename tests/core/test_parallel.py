"""fork_starmap: clean workers, clean shutdown, interrupts that stop everything, a watchdog."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from analysis.core import interrupt
from analysis.core.errors import VlmsInputError
from analysis.core.parallel import (
    STALL_ENV,
    RemoteTraceback,
    StalledError,
    WorkerLostError,
    as_finished,
    fork_starmap,
    run_command,
    stall_seconds,
)

ROOT = Path(__file__).resolve().parents[2]
HAS_PROC = Path("/proc/self/stat").exists()


def add(a: int, b: int) -> int:
    return a + b


def fail(message: str) -> None:
    raise VlmsInputError(message, file="x.csv", column="c", row=3)


def dispositions() -> tuple:
    return signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)


def record_pid_and_sleep(folder: Path, seconds: float) -> None:
    (folder / str(os.getpid())).touch()
    time.sleep(seconds)


def spin(seconds: float) -> int:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
    return os.getpid()


def die(sig: int) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(60)


def run_script(code: str, timeout: float = 300, **kwargs: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        **kwargs,
    )


def test_repeated_maps_under_a_raising_sigterm_handler_print_nothing_and_never_hang() -> None:
    """The issue's repro: a SIGTERM handler that raises KeyboardInterrupt (as ``vlms`` sets),
    then 300 maps of a trivial function. ``multiprocessing.Pool`` printed worker tracebacks every
    few maps and hung within 300 (its ``terminate`` on leaving ``with Pool``)."""
    run = run_script(
        """
        import signal
        from analysis.core.parallel import fork_starmap

        def raise_interrupt(signum, frame):
            raise KeyboardInterrupt

        def add(a, b):
            return a + b

        signal.signal(signal.SIGTERM, raise_interrupt)
        for i in range(300):
            assert fork_starmap(add, [(i, 1), (i, 2)], 2) == [i + 1, i + 2]
        print("done")
        """
    )
    assert run.returncode == 0 and run.stdout == "done\n"
    assert run.stderr == ""


def test_results_come_back_in_job_order() -> None:
    jobs = [(i, 10 * i) for i in range(7)]
    assert fork_starmap(add, jobs, 2) == [11 * i for i in range(7)]
    assert fork_starmap(add, jobs, 1) == [11 * i for i in range(7)]  # in process


def test_workers_start_with_default_signal_handling() -> None:
    previous = interrupt.install()
    try:
        got = fork_starmap(dispositions, [(), ()], 2)
    finally:
        interrupt.restore(previous)
    assert got == [(signal.SIG_DFL, signal.SIG_DFL)] * 2


def test_an_ignored_sigint_stays_ignored_in_workers() -> None:
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        got = fork_starmap(dispositions, [(), ()], 2)
    finally:
        signal.signal(signal.SIGINT, old)
    assert got == [(signal.SIG_IGN, signal.SIG_DFL)] * 2


def test_a_failing_job_raises_its_error_with_the_workers_traceback() -> None:
    with pytest.raises(VlmsInputError) as info:
        fork_starmap(fail, [("bad value",), ("bad value",)], 2)
    assert str(info.value) == "x.csv, column 'c', row 3 (line 4): bad value"
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "in fail" in str(info.value.__cause__)


def test_a_worker_killed_outright_is_reported() -> None:
    with pytest.raises(WorkerLostError, match="job 2 of 2 was killed by SIGKILL"):
        fork_starmap(die, [(0,), (signal.SIGKILL,)], 2)


def test_a_worker_stopped_by_a_signal_interrupts_the_stage() -> None:
    with pytest.raises(KeyboardInterrupt):
        fork_starmap(die, [(0,), (signal.SIGTERM,)], 2)


def test_a_stage_that_stops_progressing_fails_and_leaves_no_worker(tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(StalledError, match=r"no progress for 2 s: 2 worker process\(es\)") as info:
        fork_starmap(record_pid_and_sleep, [(tmp_path, 600), (tmp_path, 600)], 2, stall=2.0)
    assert time.monotonic() - start < 60
    assert STALL_ENV in str(info.value) and "\n" not in str(info.value)
    pids = [int(p.name) for p in tmp_path.iterdir()]
    assert len(pids) == 2 and not [pid for pid in pids if _alive(pid)]


def _alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped by an init that does not reap, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


@pytest.mark.skipif(not HAS_PROC, reason="CPU time is read from /proc")
def test_a_busy_worker_is_progress() -> None:
    """Jobs that run longer than the stall limit but use CPU time are not stalled."""
    pids = fork_starmap(spin, [(4.0,), (4.0,)], 2, stall=2.0)
    assert len(set(pids)) == 2 and os.getpid() not in pids


def test_stall_limit_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STALL_ENV, "42")
    assert stall_seconds() == 42.0
    for bad in ("0", "-1", "soon", "nan"):
        monkeypatch.setenv(STALL_ENV, bad)
        with pytest.raises(VlmsInputError, match=STALL_ENV):
            stall_seconds()


WRITER = """
    import os, signal, sys, time
    from pathlib import Path
    from analysis.core import interrupt
    from analysis.core.atomic import atomic_path
    from analysis.core.parallel import fork_starmap

    def write_slowly(folder, i):
        with atomic_path(Path(folder) / f"out{i}.txt") as tmp:
            tmp.write_text("half")
            time.sleep(600)

    interrupt.install()
    try:
        fork_starmap(write_slowly, [(sys.argv[1], 1), (sys.argv[1], 2)], 2)
    except KeyboardInterrupt:
        sys.exit(130)
"""


@pytest.mark.parametrize("target", ["parent", "process group"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupting_the_parent_stops_the_workers_and_leaves_no_file(
    tmp_path: Path, sig: signal.Signals, target: str
) -> None:
    """The signal goes to the parent (``kill``) or to every process (Ctrl-C at a terminal); the
    workers are in the middle of writing a file."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(WRITER), str(tmp_path)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob(".out*.tmp"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    temps = list(tmp_path.glob(".out*.tmp"))
    assert len(temps) == 2, "the workers never started writing"
    worker_pids = [int(p.name.split(".")[3]) for p in temps]  # ".out1.txt.<pid>.xxxx.tmp"
    if target == "parent":
        proc.send_signal(sig)
    else:
        os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
    assert not [pid for pid in worker_pids if _alive(pid)]


def test_run_command_returns_the_output() -> None:
    done = run_command(["sh", "-c", "echo out; echo err >&2; exit 3"], ROOT)
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")


def test_run_command_stops_a_stalled_command_with_its_children(tmp_path: Path) -> None:
    script = "sleep 600 & echo $! > child; echo $$ > shell; wait"
    with pytest.raises(StalledError, match="no progress for 1 s: sh -c"):
        run_command(["sh", "-c", script], tmp_path, stall=1.0)
    pids = [int((tmp_path / name).read_text()) for name in ("shell", "child")]
    assert not [pid for pid in pids if _alive(pid)]


def test_a_dask_stage_that_stops_progressing_fails() -> None:
    """The Dask watchdog (``vlms validate``): no task finishing within the limit is an error."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        quick = client.submit(time.sleep, 0.0, pure=False)
        stuck = client.submit(time.sleep, 5.0, pure=False)
        seen = []
        with pytest.raises(StalledError, match=r"no simulation finished for 1 s \(1 left\)"):
            for _fut, label in as_finished({quick: "quick", stuck: "stuck"}, 1.0, "simulation"):
                seen.append(label)
    assert seen == ["quick"]


def test_on_done_is_told_each_result_as_it_comes() -> None:
    seen: list[tuple[int, int]] = []
    got = fork_starmap(add, [(1, 1), (2, 2), (3, 3)], 2, on_done=lambda k, r: seen.append((k, r)))
    assert got == [2, 4, 6]
    assert [k for k, _ in seen] == [1, 2, 3] and sorted(r for _, r in seen) == [2, 4, 6]
