"""Interrupting ``vlms fit`` (SIGINT or SIGTERM) while it samples leaves no file behind.

Both signals are sent to two fits running side by side, once sampling has begun: nutpie's sampler
threads appear (the thread count of the process jumps) when sampling starts, after compilation.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from analysis.validation.simulate import large_pem_cohort

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc"),
]
CUTS = np.array([0.0, 6.0, 12.0, 24.0, 36.0, 60.0])
RUNS = [(signal.SIGINT, "nutpie"), (signal.SIGTERM, "nutpie"), (signal.SIGINT, "pymc")]
"""Signal and sampler of each run. nutpie starts its sampler threads at once when sampling
begins (the thread count jumps); PyMC starts one Python worker process per chain."""


def write_cohort(path: Path) -> None:
    c = large_pem_cohort(60, seed=3, cuts=CUTS, prevalences=(0.4,))
    frame = {"months": c.time.round(2), "status": c.event, "marker": c.x[:, 0].astype(int)}
    pd.DataFrame(frame).to_csv(path, index=False)


def threads(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return 0
    return int(next(line.split()[1] for line in text.splitlines() if line.startswith("Threads")))


def python_children(pid: int) -> int:
    """Child processes running Python (PyMC's chain workers; not the C compiler)."""
    count = 0
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            kids = task.read_text().split()
        except FileNotFoundError:
            continue
        for kid in kids:
            with contextlib.suppress(FileNotFoundError):
                count += Path(f"/proc/{kid}/comm").read_text().startswith("python")
    return count


def start_fit(folder: Path, sampler: str) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "analysis.cli", "fit", "--data", "cohort.csv",
        "--time", "months", "--event", "status", "--covariates", "marker",
        "--draws", "60000", "--tune", "500", "--chains", "2",
        "--out", "fit.nc", "--json", "fit.json", "--sampler", sampler,
    ]  # fmt: skip
    return subprocess.Popen(cmd, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def collect(stream: Any, lines: list[bytes]) -> None:
    for line in iter(stream.readline, b""):
        lines.append(line)


def test_signal_during_sampling_leaves_nothing(tmp_path: Path) -> None:
    runs: dict[tuple, tuple[Path, subprocess.Popen]] = {}
    logs: dict[tuple, list[bytes]] = {}
    for key in RUNS:
        sig, sampler = key
        folder = tmp_path / f"{sig.name}_{sampler}"
        folder.mkdir()
        write_cohort(folder / "cohort.csv")
        proc = start_fit(folder, sampler)
        logs[key] = []
        threading.Thread(target=collect, args=(proc.stderr, logs[key]), daemon=True).start()
        runs[key] = (folder, proc)
    pending = dict(runs)
    baseline: dict[tuple, int] = {}
    deadline = time.monotonic() + 300
    while pending and time.monotonic() < deadline:
        for key, (_folder, proc) in list(pending.items()):
            assert proc.poll() is None, f"{key}: the fit ended before it could be interrupted"
            n = threads(proc.pid)
            if key not in baseline:
                # the fit logs "compiling and sampling" once its inputs are read and its
                # imports done: the thread count then is the baseline of the compile phase
                if any(b"compiling" in line for line in logs[key]):
                    baseline[key] = n
            elif n >= baseline[key] + 3 or python_children(proc.pid):  # sampling has begun
                time.sleep(1.0)
                proc.send_signal(key[0])
                del pending[key]
        time.sleep(0.2)
    assert not pending, f"sampling never started in {list(pending)}"
    problems = []
    for (sig, sampler), (folder, proc) in runs.items():
        proc.wait(timeout=240)
        err = b"".join(logs[(sig, sampler)])
        left = sorted(p.name for p in folder.iterdir() if p.name != "cohort.csv")
        where = f"{sig.name} to a {sampler} fit"
        if proc.returncode == 0:
            problems.append(f"{where}: the fit carried on and exited 0")
        if left:
            problems.append(f"{where}: left behind {left}")
        if b"Traceback" in err:
            problems.append(f"{where}: traceback {err.decode()[-1000:]}")
    assert not problems, "; ".join(problems)
