"""The simulation check of the in-model imputation: simulator, missingness, coverage tables."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from analysis.validation.imputation_check import (
    CheckDesign,
    CheckSettings,
    bar_problem,
    compile_check_model,
    interval_records,
    missing_probabilities,
    remove_values,
    run_replicate,
    simulate_covariates,
    simulate_outcomes,
    summarize_imputed_values,
    summarize_intervals,
    true_log_hr,
)
from models.priors import Priors

BIG = replace(CheckDesign(), n=40_000)


def log_odds_ratio(outcome: np.ndarray, factor: np.ndarray) -> float:
    odds = [np.mean(outcome[factor == v]) / (1 - np.mean(outcome[factor == v])) for v in (1, 0)]
    return float(np.log(odds[0] / odds[1]))


def test_missing_probabilities_average_the_target() -> None:
    factor = np.array([1.0] * 30 + [0.0] * 70)
    p = missing_probabilities(0.27, factor, 1.5)
    assert p.mean() == pytest.approx(0.27, abs=1e-9)
    assert log_odds_ratio_from_probs(p, factor) == pytest.approx(1.5)
    np.testing.assert_allclose(missing_probabilities(0.08, factor, 0.0), 0.08)
    assert np.all(missing_probabilities(0.0, factor, 1.5) == 0)
    with pytest.raises(ValueError):
        missing_probabilities(1.0, factor, 0.0)


def log_odds_ratio_from_probs(p: np.ndarray, factor: np.ndarray) -> float:
    a, b = p[factor == 1][0], p[factor == 0][0]
    return float(np.log(a / (1 - a)) - np.log(b / (1 - b)))


@pytest.mark.parametrize("mechanism", ["mcar", "mar_covariate", "mar_outcome"])
def test_values_go_missing_by_the_mechanism(mechanism: str) -> None:
    rng = np.random.default_rng(1)
    x = simulate_covariates(rng, BIG)
    _, event = simulate_outcomes(rng, x, BIG, "pem", BIG.beta("pem"))
    x_nan = remove_values(rng, x, event, BIG, mechanism)
    gone = np.isnan(x_nan)
    np.testing.assert_allclose(gone.mean(axis=0), BIG.missing_fraction, atol=0.01)
    np.testing.assert_array_equal(x_nan[~gone], x[~gone])
    factor = {"mcar": x[:, 0], "mar_covariate": x[:, 0], "mar_outcome": event > 0}[mechanism]
    expected = 0.0 if mechanism == "mcar" else BIG.mar_log_odds
    assert log_odds_ratio(gone[:, 2], factor) == pytest.approx(expected, abs=0.1)
    with pytest.raises(ValueError, match="mechanism"):
        remove_values(rng, x, event, BIG, "mnar")


def test_simulated_covariates_follow_the_design() -> None:
    x = simulate_covariates(np.random.default_rng(2), BIG)
    np.testing.assert_allclose(x.mean(axis=0), BIG.prevalence, atol=0.01)
    assert log_odds_ratio(x[:, 2], x[:, 0]) == pytest.approx(BIG.x3_on_x1, abs=0.1)
    assert abs(log_odds_ratio(x[:, 1], x[:, 0])) < 0.1


def test_simulated_outcomes_have_the_stated_hazards() -> None:
    """Exponential MLE (events / months at risk) per cause, and the effect of x1."""
    rng = np.random.default_rng(3)
    x = simulate_covariates(rng, BIG)
    beta = np.zeros((5, 4))
    beta[0] = [0.7, 0.0, -0.5, 0.0]
    time, event = simulate_outcomes(rng, x, BIG, "competing", beta)
    ref = x[:, 0] == 0
    rates = [np.sum(event[ref] == k + 1) / time[ref].sum() for k in range(4)]
    np.testing.assert_allclose(rates, BIG.cause_rates, rtol=0.1)
    for k, b in enumerate(beta[0]):
        exposed = np.sum(event[~ref] == k + 1) / time[~ref].sum()
        assert np.log(exposed / rates[k]) == pytest.approx(b, abs=0.15)
    assert np.all((time > 0) & (time <= BIG.censor[1]))


def test_true_log_hrs_are_fixed_or_prior_draws() -> None:
    rng = np.random.default_rng(4)
    fixed = replace(CheckDesign(), truth="fixed")
    np.testing.assert_array_equal(true_log_hr(rng, fixed, "pem", Priors()), fixed.beta("pem"))
    draws = np.array([true_log_hr(rng, CheckDesign(), "competing", Priors()) for _ in range(4000)])
    assert draws.shape == (4000, 5, 4)
    assert draws.std() == pytest.approx(1.0, abs=0.03)  # each beta[p, k] ~ Normal(0, 1)
    corr = np.corrcoef(draws[:, 0, 0], draws[:, 0, 1])[0, 1]
    assert corr == pytest.approx(0.5, abs=0.05)  # shared share: E[rho] = 1/2
    wide = np.array(
        [true_log_hr(rng, CheckDesign(), "pem", Priors(effect_sd=3.0)) for _ in range(2000)]
    )
    assert wide.shape == (2000, 5, 1)
    assert wide.std() == pytest.approx(3.0, abs=0.1)
    with pytest.raises(ValueError, match="truth"):
        CheckDesign(truth="random")


def test_interval_records_flag_coverage() -> None:
    draws = np.random.default_rng(5).normal(0.0, 1.0, (20_000, 2, 1))
    records = interval_records(draws, np.array([[0.5], [2.5]]), ["a", "b"], ["event"])
    assert [r["covered"] for r in records] == [True, False]
    assert records[0]["lower"] == pytest.approx(-1.96, abs=0.05)
    assert records[0]["width"] == pytest.approx(3.92, abs=0.1)


def test_summaries_count_coverage_width_and_ratio() -> None:
    rows = []
    for rep in range(4):
        for method, width in (("imputed", 1.0), ("complete_case", 2.0)):
            for cov, role in (("x1", "observed"), ("x3", "imputed")):
                rows.append(
                    {
                        "kind": "pem",
                        "mechanism": "mcar",
                        "replicate": rep,
                        "method": method,
                        "covariate": cov,
                        "cause": "event",
                        "role": role,
                        "covered": not (method == "imputed" and rep == 0 and cov == "x3"),
                        "width": width * (1 + rep),
                        "divergences": int(method == "imputed" and rep == 1),
                        "n_used": 63 if method == "imputed" else 43,
                        "events": 30 + rep,
                    }
                )
    summary = summarize_intervals(pd.DataFrame(rows)).set_index(["method", "role"])
    assert summary.loc[("imputed", "imputed"), "coverage"] == 0.75
    assert summary.loc[("imputed", "all"), "coverage"] == 7 / 8
    assert summary.loc[("complete_case", "all"), "coverage"] == 1.0
    assert summary.loc[("complete_case", "observed"), "mean_width"] == 5.0
    assert summary.loc[("imputed", "all"), "width_ratio"] == pytest.approx(0.5)
    assert summary.loc[("imputed", "all"), "divergent_fits"] == 1
    assert summary.loc[("complete_case", "all"), "mean_patients"] == 43
    assert summary.loc[("imputed", "all"), "mean_events"] == 31.5
    values = pd.DataFrame(
        {
            "kind": "pem",
            "mechanism": "mcar",
            "covariate": "x3",
            "true_value": [1.0, 1.0, 0.0],
            "p_one": [0.9, 0.7, 0.2],
        }
    )
    row = summarize_imputed_values(values).iloc[0]
    assert row["mean_p_when_1"] == pytest.approx(0.8)
    assert row["brier"] == pytest.approx((0.01 + 0.09 + 0.04) / 3)


def test_bar_problem_is_shaped_like_the_clinical_fit() -> None:
    problem = bar_problem(1)
    x = problem["x"]
    assert x.shape == (63, 5)
    assert np.isnan(x).sum(axis=0).tolist()[0] == 0 and np.isnan(x[:, 3:]).sum() == 0
    assert np.isnan(x[:, 1:3]).any()
    assert set(np.unique(problem["event"])) <= {0, 1, 2, 3, 4}
    np.testing.assert_array_equal(x[~np.isnan(x)], problem["x_true"][~np.isnan(x)])


@pytest.mark.slow
def test_a_replicate_fits_both_methods_on_one_compiled_model() -> None:
    settings = CheckSettings(draws=150, tune=150, chains=1)
    model = compile_check_model("pem", CheckDesign(), settings, seed=1)
    intervals, values = run_replicate(model, seed=7, replicate=0, mechanisms=["mar_covariate"])
    table = pd.DataFrame(intervals)
    assert len(table) == 2 * 5  # two methods x five covariates
    by_method = table.groupby("method")["n_used"].first()
    assert by_method["imputed"] == 63
    n_missing = table["values_missing"].iloc[0]
    assert 63 - n_missing <= by_method["complete_case"] < 63
    inside = (table["lower"] <= table["true_log_hr"]) & (table["true_log_hr"] <= table["upper"])
    assert (inside == table["covered"]).all()
    assert (table["width"] > 0).all()
    assert len(values) == n_missing
    assert all(0.0 < v["p_one"] < 1.0 for v in values)
    # same seed, same numbers (the compiled model is reused: its data are swapped)
    again, _ = run_replicate(model, seed=7, replicate=0, mechanisms=["mar_covariate"])
    pd.testing.assert_frame_equal(pd.DataFrame(again), table)
