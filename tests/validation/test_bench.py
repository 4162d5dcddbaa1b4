"""Smoke test of ``vlms bench``: one small scaling run writes both reports. Timings are never
asserted (they depend on the machine and its load)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from analysis.validation import bench as bench


def test_measure_reports_time_and_memory() -> None:
    """A 0.3 s sleep is timed at 0.3 s or more; filling 80 MB raises the memory high-water mark
    by about that much (lower bounds only: the machine's load adds time, never removes it)."""
    slept = bench.measure(lambda: time.sleep(0.3) or "done")
    assert slept.value == "done" and slept.seconds >= 0.3
    filled = bench.measure(lambda: float(np.ones(10_000_000).sum()))
    assert filled.value == 1e7
    if filled.peak_mb is not None:  # None where /proc/self/clear_refs cannot be written
        assert filled.peak_mb > 60 and filled.peak_rss_mb >= filled.peak_mb


def test_machine_info() -> None:
    info = bench.machine_info()
    assert info["cores"] >= 1 and info["versions"]["nutpie"] != "not installed"


@pytest.mark.slow
def test_bench_scaling_smoke(tmp_path: Path) -> None:
    from analysis.cli import main

    status = main([
        "bench", "--parts", "scaling", "--sizes", "400", "--expanded-max", "0",
        "--cox-max", "400", "--repeats", "1", "--out-dir", str(tmp_path),
    ])  # fmt: skip
    assert status == 0
    doc = json.loads((tmp_path / "bench.json").read_text())
    (row,) = doc["scaling"]
    assert row["n"] == 400 and row["events"] > 0
    assert row["collapsed_sampling_s_median"] > 0 and row["cox_s_median"] > 0
    assert "expanded_skipped" in row
    # the two estimates of the same cohort's log-HRs agree (Cox MLE vs PEM posterior mean, 400
    # patients: differences of a few hundredths), and both sit near the simulated 0.7 and -0.4
    cox, pem = np.array(row["cox_log_hr"]), np.array(row["collapsed_posterior_mean_beta"])
    np.testing.assert_allclose(pem, cox, atol=0.15)
    np.testing.assert_allclose(cox, [0.7, -0.4], atol=0.45)
    text = (tmp_path / "bench.md").read_text()
    assert "Scaling" in text and "not measured" in text
