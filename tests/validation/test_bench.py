"""Smoke test of ``vlms bench``: one small scaling run writes both reports. Timings are never
asserted (they depend on the machine and its load)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analysis.validation import bench as bench


def test_measure_reports_time_and_memory() -> None:
    m = bench.measure(lambda: bytearray(50 * 1024 * 1024)[:1])
    assert m.value == bytearray(1) and m.seconds >= 0
    if m.peak_mb is not None:
        assert m.peak_mb >= 0


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
    assert len(row["cox_log_hr"]) == 2 and len(row["collapsed_posterior_mean_beta"]) == 2
    text = (tmp_path / "bench.md").read_text()
    assert "Scaling" in text and "not measured" in text
