"""nutpie's MCMC on the selection model against the quadrature posterior (on Table 2's numbers
and on simulated studies), and the simulation check. One compiled model for the whole file."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.inference.diagnostics import bar_from_convergence, convergence, ess_of
from analysis.inference.selection_fit import McmcSettings, compile_selection, sample_selection
from analysis.validation.selection_check import (
    SimulatedStudy,
    SimulationSettings,
    mcmc_agreement,
    run_simulation,
    score_readings,
    simulate_study,
)
from models.selection import (
    SelectionSettings,
    compare_draws,
    exact_posterior,
    from_published,
)

MARKERS = [
    "Bcl-2", "p53", "survivin", "EGFR", "IGF-1R", "MET", "PDGF-A", "PDGF-B", "PDGFR-beta",
    "beta-catenin", "AXL", "Ki-67", "cyclin D1", "p16", "Rb", "MMP-2", "MMP-9", "VEGF", "ER", "PR",
]  # fmt: skip
TABLE2 = {
    "dss": {"beta-catenin": (5.33, 0.97, 29.30), "IGF-1R": (2.74, 1.14, 6.56)},
    "rfs": {"beta-catenin": (1.37, 0.29, 6.54), "IGF-1R": (2.74, 1.14, 6.56)},
}
ROWS = {
    "default": SelectionSettings(),
    "tau_halfnormal_1": SelectionSettings(tau_scale=1.0),
    "threshold_1.96": SelectionSettings(threshold=1.96),
}
PROBS = np.array([0.025, 0.5, 0.975])
N_SD = 4.0
"""Agreement within 4 Monte Carlo SEs: |F_exact(MCMC quantile) - p| <= 4 sqrt(p (1-p) / ESS)."""


@pytest.fixture(scope="module")
def compiled():
    return compile_selection(len(MARKERS))


def test_compiled_selection_model_can_be_cached_on_disk(compiled) -> None:
    """Its log density uses erfc (compiled in place), not erfcx (a pointer into SciPy, valid in
    the compiling process only), so later processes load it instead of compiling it."""
    from analysis.inference.compile_cache import process_bound

    assert not process_bound(compiled)


def _bar(idata) -> dict[str, float]:
    post = idata.posterior[["tau", "z", "hr"]]
    return bar_from_convergence(convergence(post), int(idata.sample_stats["diverging"].sum()))


def _assert_meets_bar(idata) -> None:
    bar = _bar(idata)
    assert bar["divergences"] == 0, bar
    assert bar["max_rhat"] <= 1.01, bar
    assert bar["min_ess_bulk"] >= 400 and bar["min_ess_tail"] >= 400, bar


def _tolerance(ess_bulk: float, ess_tail: float) -> np.ndarray:
    ess = np.array([ess_tail, ess_bulk, ess_tail])
    return N_SD * np.sqrt(PROBS * (1 - PROBS) / ess)


def _assert_agrees(idata, data, settings) -> None:
    post = idata.posterior
    exact = exact_posterior(data, settings, n_nodes=4001)
    rep = np.flatnonzero(data.reported)
    log_hr = np.log(post["hr"].values[..., rep])
    errors = compare_draws(exact, log_hr, post["tau"].values)
    for i, m in enumerate(rep):
        draws = log_hr[..., i]
        bulk, tail = ess_of(draws)
        dev = np.abs(errors["theta_cdf_at_quantiles"][i] - PROBS)
        assert np.all(dev <= _tolerance(bulk, tail)), (data.markers[m], dev)
        p = errors["prob_gt_1_exact"][i]
        assert abs(errors["prob_gt_1_draws"][i] - p) <= N_SD * math.sqrt(p * (1 - p) / bulk)
    tau = post["tau"].values
    dev = np.abs(errors["tau_cdf_at_quantiles"] - PROBS)
    assert np.all(dev <= _tolerance(*ess_of(tau))), dev


@pytest.mark.parametrize("endpoint", sorted(TABLE2))
def test_table2_mcmc_matches_quadrature_on_one_compiled_model(compiled, endpoint) -> None:
    data = from_published(MARKERS, TABLE2[endpoint])
    medians = {}
    for i, (row, settings) in enumerate(ROWS.items()):
        idata = sample_selection(compiled, data, settings, McmcSettings(), seed=11 + i)
        _assert_meets_bar(idata)
        _assert_agrees(idata, data, settings)
        medians[row] = float(np.median(idata.posterior["tau"].values))
    # the swapped data took effect: tau's prior HalfNormal(1) and threshold 1.96 both loosen it
    assert medians["tau_halfnormal_1"] > medians["default"]
    assert medians["threshold_1.96"] > medians["default"]


def test_mcmc_agreement_on_simulated_studies(compiled) -> None:
    result = mcmc_agreement(
        SimulationSettings(tau_true=(0.0, 0.5, 1.0)), n_fits=3, compiled=compiled
    )
    assert [f["tau_true"] for f in result["fits"]] == [0.0, 0.5, 1.0]
    for fit, idata in zip(result["fits"], result["idata"], strict=True):
        _assert_meets_bar(idata)
        bar = _bar(idata)
        tol = _tolerance(bar["min_ess_bulk"], bar["min_ess_tail"])
        dev = np.abs(np.array(fit["theta_cdf_at_quantiles"]) - PROBS)
        assert np.all(dev <= tol), dev
        assert np.all(np.abs(np.array(fit["tau_cdf_at_quantiles"]) - PROBS) <= tol)


def test_simulate_study_applies_the_selection_rule() -> None:
    settings = SimulationSettings(se=0.5, threshold=1.645)
    a = simulate_study(np.random.default_rng([1, 2]), 0.7, settings)
    b = simulate_study(np.random.default_rng([1, 2]), 0.7, settings)
    np.testing.assert_array_equal(a.log_hr, b.log_hr)
    assert np.all(a.se == 0.5)
    np.testing.assert_array_equal(a.reported, np.abs(a.log_hr / 0.5) >= 1.645)
    spread = simulate_study(np.random.default_rng(3), 0.7, SimulationSettings(se_spread=0.3))
    assert np.std(np.log(spread.se)) > 0.1
    hidden = SimulatedStudy(a.theta, a.log_hr, a.se, np.arange(20) < 2).data()
    assert hidden.reported_markers == ("m00", "m01") and np.all(hidden.log_hr[2:] == 0)


def test_score_readings_by_hand() -> None:
    readings = {
        "theta": np.array([0.0, 1.0]),
        "published_lower": np.array([0.5, 0.0]),
        "published_median": np.array([1.0, -1.0]),
        "published_upper": np.array([2.0, 2.0]),
    }
    for r in ("unadjusted", "adjusted"):
        readings |= {f"{r}_{k}": readings[f"published_{k}"] for k in ("lower", "median", "upper")}
    s = score_readings(readings)
    assert s["reported_markers"] == 2
    assert s["coverage_adjusted"] == 0.5
    # away from the null: +1 * (1 - 0) and -1 * (-1 - 1)
    assert s["bias_published"] == pytest.approx(1.5)
    assert s["rmse_published"] == pytest.approx(math.sqrt((1 + 4) / 2))
    assert s["width_unadjusted"] == pytest.approx(1.75)


def test_simulation_adjusted_is_calibrated_and_unadjusted_is_not() -> None:
    settings = SimulationSettings(tau_true=(0.0, 0.5), n_studies=150, seed=7)
    result = run_simulation(settings)
    null, spread = result["rows"]
    assert null["reported_markers"] > 200 and spread["reported_markers"] > 400
    # no true effects: the unadjusted reading misses far too often and exaggerates
    assert null["coverage_unadjusted"] < 0.85 < 0.95 <= null["coverage_adjusted"]
    assert null["bias_published"] > null["bias_unadjusted"] > 3 * null["bias_adjusted"] > 0
    # real but modest effects: adjusted within Monte Carlo error of 95%, unadjusted biased
    assert abs(spread["coverage_adjusted"] - 0.95) <= 3 * spread["coverage_adjusted_mcse"] + 0.01
    assert spread["bias_unadjusted"] > 0.25 > abs(spread["bias_adjusted"])
    again = run_simulation(SimulationSettings(tau_true=(0.5,), n_studies=20, seed=7))
    assert (
        again["rows"][0]
        == run_simulation(SimulationSettings(tau_true=(0.5,), n_studies=20, seed=7))["rows"][0]
    )


def test_validate_writes_the_selection_check(compiled, tmp_path) -> None:
    from analysis.validation.validate_command import run_selection_check

    settings = SimulationSettings(tau_true=(0.0, 0.5), n_studies=40, seed=5)
    assert run_selection_check(tmp_path, 5, settings, n_fits=2, compiled=compiled) == 0
    md = (tmp_path / "validation" / "selection_check.md").read_text()
    first_cells = [line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| 0")]
    # the simulation table's two tau_true rows, then the two MCMC fits (cycling tau_true)
    assert first_cells == ["0", "0.5", "0", "0.5"]
    import json

    doc = json.loads((tmp_path / "validation" / "selection_check.json").read_text())
    assert [r["tau_true"] for r in doc["simulation"]["rows"]] == [0.0, 0.5]
    assert len(doc["mcmc"]["fits"]) == 2 and all("max_rhat" in f for f in doc["mcmc"]["fits"])
