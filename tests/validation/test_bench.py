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


def test_own_fit_cohort_and_report(tmp_path: Path) -> None:
    """The 92-patient CSV of the own-data timing, and its report section (made-up timings)."""
    import pandas as pd

    info = bench.own_fit_csv(tmp_path / "c.csv", seed=1)
    df = pd.read_csv(tmp_path / "c.csv")
    assert len(df) == info["patients"] == 92 and df["dss"].sum() == info["events"] > 0
    assert set(df["marker"]) == {0, 1} and (df["months"] > 0).all()
    run = {"exit": 0, "refits": 0, "timings": dict.fromkeys(bench.OWN_FIT_PHASES, 0.5)}
    run["cpu_s"], run["load_average_after"] = 6.0, 1.5
    block = {**info, "command": "vlms fit --data c.csv", "first": {**run, "wall_s": 20.0},
             "second": [{**run, "wall_s": 4.5}], "second_wall_s_median": 4.5}  # fmt: skip
    text = "\n".join(bench.own_fit_markdown(block))
    assert "| first | 20.0 | 6.0 | 1.5 |" in text and "| cached #1 | 4.5 |" in text
    assert "| 1.00 | 0 | 0 |" in text  # other = 4.5 - 7 x 0.5
    assert "median 4.5 s wall (aim < 5 s on 2 cores: reached)" in text


def test_every_command_records_its_stage(tmp_path: Path, monkeypatch) -> None:
    from analysis.cli import main

    log = tmp_path / "stages.jsonl"
    monkeypatch.setenv("VLMS_STAGE_LOG", str(log))
    assert main(["audit", "--out-dir", str(tmp_path / "r")]) in (0, 1)
    assert main(["fit", "--only", "nope", "--out-dir", str(tmp_path / "r")]) == 2
    stages = bench.read_stage_log(log)
    assert [s["command"] for s in stages] == ["audit", "fit"]
    assert stages[1]["exit"] == 2 and all(s["wall_s"] >= 0 and s["cpu_s"] > 0 for s in stages)
    mf = {"stages": [stages], "load_average": [{"before": 1.0, "after": 2.5}]}
    text = "\n".join(bench.stage_lines(mf))
    assert "| audit |" in text and "| fit |" in text and "after 2.5" in text


def test_ensemble_counts_from_the_logs(tmp_path: Path) -> None:
    fits = tmp_path / "fits"
    (fits / "ensemble").mkdir(parents=True)
    (fits / "ensemble" / "a.members.csv").write_text("reconstruction\n1\n2\n3\n")
    (fits / "batch_log.csv").write_text("fits,attempt\n10,1\n6,1\n2,2\n")
    assert bench.ensemble_counts(tmp_path) == {
        "members": 3,
        "fits": 16,
        "batches": 3,
        "refitted": 2,
    }
    assert bench.ensemble_counts(tmp_path / "none")["members"] == 0
