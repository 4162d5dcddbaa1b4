"""Posterior CIF vs Aalen-Johansen table: hand-computed AJ on a 5-patient cohort, a fake
posterior with known quantiles, the per-time maximum, and the rendered outputs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import xarray as xr

from analysis.comparison import cif as cc
from analysis.reporting import html as report

# 5 patients: cause a at 2, censored at 4, cause b at 6, cause a at 8, censored at 10.
# Aalen-Johansen by hand (S = all-cause KM just before t):
#   t=2: n=5, a: CIF_a = 1/5 = 0.2, S = 0.8
#   t=6: n=3, b: CIF_b = 0.8 / 3 = 0.26667, S = 0.8 * 2/3 = 0.53333
#   t=8: n=2, a: CIF_a = 0.2 + 0.53333 / 2 = 0.46667, S = 0.26667
TIME = np.array([2.0, 4.0, 6.0, 8.0, 10.0])
CODES = np.array([1, 0, 2, 1, 0])
TIMES = (3.0, 7.0, 9.0, 11.0)  # nobody is followed at 11 months
AJ = {"a": [0.2, 0.2, 7 / 15, math.nan], "b": [0.0, 4 / 15, 4 / 15, math.nan]}
POST = {"a": [0.25, 0.3, 0.4, 0.5], "b": [0.06, 0.2, 0.35, 0.4]}
SPREAD = np.linspace(-0.05, 0.05, 401)  # draws = value + SPREAD: median = value exactly


def fake_idata(grid: tuple[float, ...] = TIMES) -> SimpleNamespace:
    values = np.array([POST["a"], POST["b"]])  # (cause, time)
    draws = values[None, :, :] + SPREAD[:, None, None]  # (draw, cause, time)
    cif = xr.DataArray(
        draws[None],
        dims=("chain", "draw", "cause", "time"),
        coords={"cause": ["a", "b"], "time": list(grid)},
    )
    return SimpleNamespace(posterior=xr.Dataset({"cif": cif}))


def patients() -> cc.FitPatients:
    return cc.FitPatients("fake_fit", TIME, CODES, ("a", "b"), n_subset=6)


def by_key(rows: list[dict]) -> dict:
    return {(r["cause"], r["months"]): r for r in rows}


def test_aalen_johansen_and_differences_match_hand_values() -> None:
    rows = by_key(cc.compare_fit(patients(), fake_idata(), TIMES))
    assert len(rows) == 2 * len(TIMES)
    for cause in ("a", "b"):
        for i, t in enumerate(TIMES):
            r = rows[(cause, t)]
            assert r["n"] == 5 and r["fit"] == "fake_fit"
            assert r["posterior_median"] == pytest.approx(POST[cause][i], abs=1e-12)
            assert r["posterior_lower"] == pytest.approx(POST[cause][i] - 0.0475, abs=1e-9)
            assert r["posterior_upper"] == pytest.approx(POST[cause][i] + 0.0475, abs=1e-9)
            if math.isnan(AJ[cause][i]):
                assert r["n_at_risk"] == 0
                assert math.isnan(r["aj"]) and math.isnan(r["difference"])
                continue
            assert r["aj"] == pytest.approx(AJ[cause][i], abs=1e-9)
            assert r["difference"] == pytest.approx(POST[cause][i] - AJ[cause][i], abs=1e-9)
            assert r["abs_difference"] == pytest.approx(abs(r["difference"]))
            if r["aj"] > 0:
                assert r["aj_lower"] < r["aj"] < r["aj_upper"]
    assert [rows[("a", t)]["n_at_risk"] for t in TIMES] == [4, 2, 1, 0]


def test_largest_difference_per_time() -> None:
    largest = cc.largest_differences(cc.compare_fit(patients(), fake_idata(), TIMES))
    got = {m["months"]: (m["cause"], m["max_abs_difference"]) for m in largest}
    assert got[3.0] == ("b", pytest.approx(0.06))
    assert got[7.0] == ("a", pytest.approx(0.1))
    assert got[9.0] == ("b", pytest.approx(0.35 - 4 / 15))
    assert got[11.0][0] == "" and math.isnan(got[11.0][1])


def test_time_off_the_posterior_grid_is_not_interpolated() -> None:
    rows = by_key(cc.compare_fit(patients(), fake_idata(grid=(3.0, 6.0, 9.0, 12.0)), (7.0,)))
    assert math.isnan(rows[("a", 7.0)]["posterior_median"])
    assert rows[("a", 7.0)]["aj"] == pytest.approx(0.2)


def test_matches_fit_detects_other_patients() -> None:
    saved = SimpleNamespace(
        constant_data=xr.Dataset({"time": ("patient", TIME)}),
        observed_data=xr.Dataset({"event": ("patient", CODES)}),
    )
    assert cc.matches_fit(patients(), saved)
    other = SimpleNamespace(
        constant_data=xr.Dataset({"time": ("patient", TIME + 1)}),
        observed_data=xr.Dataset({"event": ("patient", CODES)}),
    )
    assert not cc.matches_fit(patients(), other)


def result() -> dict:
    rows = cc.compare_fit(patients(), fake_idata(), TIMES)
    return {
        "times": list(TIMES),
        "interval": cc.INTERVAL,
        "fits": [{"fit": "fake_fit", "n": 5, "n_subset": 6}],
        "skipped": [],
        "rows": rows,
        "largest": cc.largest_differences(rows),
    }


def test_written_tables_structure_and_report(tmp_path: Path) -> None:
    md = cc.write_tables(result(), {"cohort": "fake.csv", "n": 6}, tmp_path)
    tables = tmp_path / "tables"
    for ext in ("csv", "md", "json"):
        assert (tables / f"cif_comparison.{ext}").is_file()
    assert "| fit | first event | months | at risk | posterior median (95% CrI) | " in md
    assert "| fake_fit | a | 9 | 1 | 0.400 (0.353-0.448) | 0.467 (0.050-0.824) | -0.067 |" in md
    assert "9 months: largest |posterior median - Aalen-Johansen| = 0.083 (fake_fit, b)" in md
    data = json.loads((tables / "cif_comparison.json").read_text())
    assert data["rows"][3]["aj"] is None  # NaN written as null, read back as NaN
    back = cc.from_json(data)
    assert math.isnan(back["rows"][3]["aj"])
    assert len(cc.display_rows(back)) == 8
    page = report.cif_table(report.Inputs(tmp_path))
    assert page.count("<table>") == 2 and "0.083" in page and "Not available" not in page
    assert "Not available" in report.cif_table(report.Inputs(tmp_path / "empty"))
