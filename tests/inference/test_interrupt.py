"""Interrupting ``vlms fit --data`` (SIGINT or SIGTERM) in each stage: status 130, no file left.

Each fit runs in a child process started with SIGINT and SIGTERM at their default dispositions (a
child of a shell that ignores SIGINT, as a non-interactive shell does for background jobs, would
otherwise inherit that and never see Ctrl-C). The test-only hook of
:mod:`analysis.core.interrupt` (``VLMS_TEST_HOLD_AT``) makes the child write a marker file when it
reaches the stage under test and wait there; the signal is sent only once the marker exists, so
the fit is provably in that stage when the signal arrives. The hook swallows the
``KeyboardInterrupt``, as llvmlite's callback does during compilation and PyMC's sampler does
while sampling, so the fit must stop through the recorded signal, not through the exception.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.core.interrupt import HOLD_ENV, MARKER_ENV

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
CASES = [
    ("reading", signal.SIGINT, "nutpie"),
    ("reading", signal.SIGTERM, "nutpie"),
    ("compiling", signal.SIGINT, "nutpie"),
    ("compiling", signal.SIGTERM, "nutpie"),
    ("sampling", signal.SIGINT, "nutpie"),
    ("sampling", signal.SIGTERM, "nutpie"),
    ("sampling", signal.SIGINT, "pymc"),
    ("writing", signal.SIGINT, "pymc"),
    ("writing", signal.SIGTERM, "pymc"),
]
"""Stage held, signal sent, sampler. Writing does not depend on the sampler; PyMC's (compiled
once and cached on disk) is the quicker way to reach it."""
TIMEOUT = 900.0
"""Seconds a child may take in all (a loaded 2-core machine compiles slowly)."""


def write_cohort(path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 60
    marker = rng.integers(0, 2, n)
    t = rng.exponential(30 * np.exp(-0.5 * marker))
    c = rng.uniform(5, 90, n)
    frame = {"months": np.round(np.minimum(t, c), 2) + 0.01, "status": (t <= c).astype(int)}
    pd.DataFrame({**frame, "marker": marker}).to_csv(path, index=False)


def default_signals() -> None:
    """In the child before ``exec``: SIGINT and SIGTERM at their default dispositions."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def start_fit(folder: Path, stage: str, sampler: str) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "analysis.cli", "fit", "--data", "cohort.csv",
        "--time", "months", "--event", "status", "--covariates", "marker",
        "--draws", "200", "--tune", "200", "--chains", "2", "--sampler", sampler,
        "--out", "fit.nc", "--json", "fit.json",
    ]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        HOLD_ENV: stage,
        MARKER_ENV: str(folder.parent / f"{folder.name}.marker"),
    }
    return subprocess.Popen(
        cmd,
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(folder.parent / f"{folder.name}.err").open("wb"),
        preexec_fn=default_signals,
    )


def catches(pid: int, sig: signal.Signals) -> bool | None:
    """Whether process ``pid`` has a handler for ``sig`` (None without /proc)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    mask = int(next(line.split()[1] for line in text.splitlines() if line.startswith("SigCgt")), 16)
    return bool(mask >> (sig - 1) & 1)


def test_signal_in_each_stage_stops_the_fit_and_leaves_nothing(tmp_path: Path) -> None:
    runs = {}
    for stage, sig, sampler in CASES:
        folder = tmp_path / f"{stage}_{sig.name}_{sampler}"
        folder.mkdir()
        write_cohort(folder / "cohort.csv")
        runs[(stage, sig, sampler)] = (folder, start_fit(folder, stage, sampler))
    pending = dict(runs)
    deadline = time.monotonic() + TIMEOUT
    problems = []
    while pending and time.monotonic() < deadline:
        for key, (folder, proc) in list(pending.items()):
            marker = folder.parent / f"{folder.name}.marker"
            if proc.poll() is not None:
                problems.append(f"{key[0]}/{key[1].name}/{key[2]}: ended before the stage held")
                del pending[key]
            elif marker.exists() and marker.read_text().startswith(key[0]):
                assert catches(proc.pid, key[1]) in (True, None), f"{key}: signal not handled"
                proc.send_signal(key[1])
                del pending[key]
        time.sleep(0.05)
    for _key, (_folder, proc) in pending.items():
        proc.kill()
    assert not pending, f"never reached the held stage: {sorted(k[0] for k in pending)}"
    for (stage, sig, sampler), (folder, proc) in runs.items():
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        err = (folder.parent / f"{folder.name}.err").read_text(errors="replace")
        left = sorted(p.name for p in folder.iterdir() if p.name != "cohort.csv")
        where = f"{sig.name} while {stage} ({sampler})"
        if proc.returncode != 130:
            problems.append(f"{where}: exit status {proc.returncode}, not 130")
        if left:
            problems.append(f"{where}: left behind {left}")
        if "Traceback" in err or "interrupted; no partial output written" not in err:
            problems.append(f"{where}: stderr {err[-800:]}")
    assert not problems, "; ".join(problems)
