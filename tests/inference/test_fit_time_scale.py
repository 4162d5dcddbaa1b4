"""``vlms fit --data`` on the data's own time scale: cut points from the event times, any time
unit, agreement with Cox, and the remedies when a fit misses the sampling bar."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.cli import main
from analysis.inference.fit_command import EXIT_BAR_MISSED
from analysis.inference.remedies import REMEDIES, Attempt, shortfall

SAMPLING = ["--draws", "500", "--tune", "500", "--chains", "4", "--seed", "3"]
DAYS_PER_YEAR = 365.25


def weibull_cohort(n: int, log_hr: float, shape: float, seed: int) -> pd.DataFrame:
    """Proportional hazards with a Weibull baseline (scale ~1000 days), one binary covariate and
    uniform censoring; times in days."""
    rng = np.random.default_rng(seed)
    x = (rng.random(n) < 0.4).astype(int)
    t = 1000.0 * (rng.exponential(size=n) / np.exp(log_hr * x)) ** (1 / shape)
    c = rng.uniform(100.0, 3000.0, n)
    return pd.DataFrame({"t": np.round(np.minimum(t, c), 3) + 0.001, "e": (t <= c).astype(int),
                         "x": x})  # fmt: skip


def fit_json(tmp_path: Path, df: pd.DataFrame, unit: str, *extra: str) -> tuple[int, dict]:
    csv, out = tmp_path / f"cohort_{unit}.csv", tmp_path / f"fit_{unit}.json"
    df.to_csv(csv, index=False)
    args = ["fit", "--data", str(csv), "--time", "t", "--event", "e", "--covariates", "x"]
    status = main([*args, "--time-unit", unit, "--json", str(out), *extra])
    return status, json.loads(out.read_text())


def test_large_cohort_in_days_and_in_years_recovers_the_hr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_hr = 0.5
    days = weibull_cohort(3000, log_hr, shape=1.5, seed=1)
    years = days.assign(t=days["t"] / DAYS_PER_YEAR)
    status_d, in_days = fit_json(tmp_path, days, "days", *SAMPLING)
    err = capsys.readouterr().err
    status_y, in_years = fit_json(tmp_path, years, "years", *SAMPLING)
    assert status_d == status_y == 0
    assert "cut points (days)" in err and "quantiles of the" in err
    for doc in (in_days, in_years):
        hr = doc["covariates"]["x"]
        assert hr["hr_lower"] < np.exp(log_hr) < hr["hr_upper"]
        assert doc["diagnostics"]["meets_bar"]
    assert in_days["time_unit"] == "days" and in_years["time_unit"] == "years"
    cuts_d, cuts_y = np.array(in_days["cut_points"]), np.array(in_years["cut_points"])
    assert len(cuts_d) == len(cuts_y) == 20  # sqrt(events) > 20: the cap
    assert cuts_d[-1] < days.loc[days["e"] == 1, "t"].max()
    np.testing.assert_allclose(cuts_y * DAYS_PER_YEAR, cuts_d, rtol=0.01)  # 3 significant digits
    log_d = np.log(in_days["covariates"]["x"]["hr_median"])
    log_y = np.log(in_years["covariates"]["x"]["hr_median"])
    assert abs(log_d - log_y) < 0.01  # the unit does not change the answer


def test_posterior_hr_agrees_with_cox(tmp_path: Path) -> None:
    """A few hundred patients with a falling hazard (Weibull shape 0.8), in days."""
    from lifelines import CoxPHFitter

    df = weibull_cohort(500, 0.6, shape=0.8, seed=7)
    cox = CoxPHFitter().fit(df, "t", "e", fit_options={"precision": 1e-12})
    status, doc = fit_json(tmp_path, df, "days", *SAMPLING)
    assert status == 0 and doc["diagnostics"]["meets_bar"]
    posterior = np.log(doc["covariates"]["x"]["hr_median"])
    assert abs(posterior - cox.params_["x"]) < 0.02


def test_a_fit_that_misses_the_bar_after_every_remedy_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Far too few draws for ESS >= 400: every remedy is tried, reported, and the verdict is
    plain. (``--cuts`` set by hand is used and reported as such.)"""
    df = weibull_cohort(120, 0.5, shape=1.0, seed=4)
    tiny = ["--draws", "40", "--tune", "40", "--chains", "2", "--sampler", "pymc"]
    status, doc = fit_json(tmp_path, df, "days", *tiny, "--cuts", "0,200,500,1000")
    out = capsys.readouterr().out
    assert doc["cut_points"] == [0.0, 200.0, 500.0, 1000.0]
    assert "--cuts" in doc["cuts"]["how"] and doc["cuts"]["unit"] == "days"
    assert status == EXIT_BAR_MISSED == 3
    assert not doc["diagnostics"]["meets_bar"]
    steps = doc["remedies"]
    names = [s["remedy"] for s in steps]
    assert names[0] == "none" and {"longer", "parameterization"} <= set(names[1:])
    assert names[1:] == [r.name for r in REMEDIES if r.name in names]  # ladder order
    diverged = [s["divergences"] > 0 for s in steps]
    # higher target acceptance is taken iff an attempt before it diverged
    if "target_accept" in names:
        assert any(diverged[: names.index("target_accept")])
    else:
        assert not any(diverged[:-1])
    assert not any(s["meets_bar"] for s in steps)
    (centred,) = [s for s in steps if s["remedy"] == "parameterization"]
    assert centred["parameterization"] == "centred" and centred["draws"] == 80
    # the last step doubles the draws of the attempt closest to the bar before it
    closest = min(steps[:-1], key=lambda s: shortfall(Attempt(**s)))
    assert names[-1] == "longer_from_best" and steps[-1]["draws"] == 2 * closest["draws"]
    assert steps[-1]["parameterization"] == closest["parameterization"]
    assert [s["draws"] for s in steps][:2] == [40, 40 if names[1] == "target_accept" else 80]
    (shown,) = [s for s in steps if s["reported"]]  # the attempt closest to the bar
    assert doc["sampler"]["draws"] == shown["draws"]
    assert doc["diagnostics"]["min_ess_bulk"] == shown["min_ess_bulk"]
    assert "SAMPLING BAR MISSED" in out and "min ESS bulk" in out
