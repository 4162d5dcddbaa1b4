"""The PEM: Cox equivalence at the posterior mode, parameter recovery, reproducibility."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

from analysis.inference.data import make_fit_data
from analysis.inference.engine import SamplerSettings, fit_model
from models.pem import build_pem
from models.priors import Priors
from models.survival_data import crude_rate, expand, rows_as_cells

TRUE_LOG_HR = np.array([0.8, -0.6])
FAST = SamplerSettings(draws=300, tune=300, chains=2, seed=11)


def simulate(n: int, log_hr: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exponential-within-pieces survival: hazard 1/40 before 24 months, 1/80 after."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, size=(n, log_hr.size)).astype(float)
    risk = np.exp(x @ log_hr)
    u = rng.exponential(size=n) / risk  # cumulative-hazard scale
    h1, h2, t1 = 1 / 40, 1 / 80, 24.0
    t = np.where(u < h1 * t1, u / h1, t1 + (u - h1 * t1) / h2)
    c = rng.uniform(12, 120, n)
    return np.minimum(t, c), (t <= c).astype(int), x


def test_pem_mode_equals_cox_estimate() -> None:
    """Cut at every distinct event time, vague independent pieces: the mode of beta is Cox's."""
    from lifelines import CoxPHFitter

    rng = np.random.default_rng(7)
    n = 60
    x = np.column_stack([rng.integers(0, 2, n), rng.normal(size=n)]).astype(float)
    t_ev = rng.exponential(30 * np.exp(-(x @ np.array([0.7, -0.4]))))
    c = rng.uniform(5, 80, n)
    t, e = np.minimum(t_ev, c), (t_ev <= c).astype(int)
    assert np.unique(t).size == n  # untied
    event_times = np.sort(t[e == 1])
    cuts = np.concatenate([[0.0], event_times])
    # Cox's risk set at an event time excludes anyone censored before it, whatever the gap;
    # the PEM counts exposure. Censoring at the preceding event time makes the two agree (the
    # partial likelihood only depends on who is at risk at each event time, so lifelines fits the
    # original data); a patient censored before the first event enters no risk set and is left out.
    t_pem = t.copy()
    censored = e == 0
    idx = np.searchsorted(event_times, t[censored], side="right") - 1
    t_pem[censored] = np.where(idx >= 0, event_times[np.maximum(idx, 0)], 0.0)
    use = t_pem > 0
    pp = expand(t_pem[use], e[use], x[use], cuts)
    # the interval after the last event time has no events: its hazard's MLE is 0, so it
    # drops out of the likelihood; keep the intervals that end at an event
    full = rows_as_cells(pp, len(cuts))
    cells = type(full)(x=full.x, exposure=full.exposure[:-1], events=full.events[:-1])
    assert cells.events.sum() == e.sum()
    level_sd = 1e3
    priors = Priors(baseline="independent", level_sd=level_sd, effect_sd=1e3)
    model = build_pem(
        cells,
        cuts=cuts[:-1],
        covariate_names=["a", "b"],
        log_rate_center=float(np.log(crude_rate(t, e))),
        priors=priors,
    )
    logp = model.compile_logp()
    dlogp = model.compile_dlogp()
    j = len(cuts) - 1

    def unpack(u: np.ndarray) -> dict[str, np.ndarray]:  # u: log h offsets, beta (well scaled)
        return {"log_h_z": u[:j] / level_sd, "beta_std": u[j:]}

    def f(u: np.ndarray) -> float:
        return -float(logp(unpack(u)))

    def g(u: np.ndarray) -> np.ndarray:
        grad = dlogp(unpack(u))  # order of model.value_vars: log_h_z, beta_std
        return -np.concatenate([grad[:j] / level_sd, grad[j:]])

    res = minimize(f, np.zeros(j + 2), jac=g, method="BFGS", options={"gtol": 1e-10})
    beta_mode = res.x[j:]

    df = pd.DataFrame({"t": t, "e": e, "a": x[:, 0], "b": x[:, 1]})
    cph = CoxPHFitter().fit(
        df, "t", "e", fit_options={"precision": 1e-16, "r_precision": 1e-16, "max_steps": 500}
    )
    np.testing.assert_allclose(beta_mode, cph.params_[["a", "b"]].to_numpy(), atol=1e-4)


@pytest.fixture(scope="module")
def recovery_fit() -> tuple:
    t, e, x = simulate(300, TRUE_LOG_HR, seed=1)
    data = make_fit_data(t, e, {"a": x[:, 0], "b": x[:, 1]})
    result, compiled = fit_model(data, settings=FAST)
    return data, result, compiled


def _covers(idata: object, truth: np.ndarray) -> np.ndarray:
    beta = idata.posterior["beta"].values.reshape(-1, truth.size)
    lo, hi = np.quantile(beta, [0.025, 0.975], axis=0)
    return (lo < truth) & (truth < hi)


def test_parameter_recovery(recovery_fit: tuple) -> None:
    _, result, _ = recovery_fit
    assert _covers(result.idata, TRUE_LOG_HR).all()
    # the interval is informative, not the prior's (prior 95% width about 3.9)
    beta = result.idata.posterior["beta"].values.reshape(-1, 2)
    width = np.diff(np.quantile(beta, [0.025, 0.975], axis=0), axis=0)
    assert np.all(width < 1.2)


def test_compiled_model_is_reused_with_new_data(recovery_fit: tuple) -> None:
    _, _, compiled = recovery_fit
    other = np.array([-0.5, 1.0])
    t, e, x = simulate(300, other, seed=2)
    data = make_fit_data(t, e, {"a": x[:, 0], "b": x[:, 1]})
    result, again = fit_model(data, settings=FAST, compiled=compiled)
    assert again is compiled and result.reused_compiled and result.compile_seconds == 0.0
    assert _covers(result.idata, other).all()


def test_same_seed_same_draws(recovery_fit: tuple) -> None:
    data, first, compiled = recovery_fit
    second, _ = fit_model(data, settings=FAST, compiled=compiled)
    np.testing.assert_array_equal(
        first.idata.posterior["beta"].values, second.idata.posterior["beta"].values
    )
    other_seed = SamplerSettings(draws=300, tune=300, chains=2, seed=12)
    third, _ = fit_model(data, settings=other_seed, compiled=compiled)
    assert not np.array_equal(
        first.idata.posterior["beta"].values, third.idata.posterior["beta"].values
    )


def test_saved_groups_and_dims(recovery_fit: tuple) -> None:
    data, result, _ = recovery_fit
    idata = result.idata
    for group in ("posterior", "sample_stats", "log_likelihood", "observed_data", "constant_data"):
        assert group in idata.groups()
    assert idata.log_likelihood["events"].dims == ("chain", "draw", "patient")
    assert idata.log_likelihood.sizes["patient"] == data.n
    post = idata.posterior
    assert list(post["beta"].coords["covariate"].values) == ["a", "b"]
    assert post["survival"].dims == ("chain", "draw", "pattern", "time")
    assert "interval" in post["log_h0"].dims
    assert post.attrs["n"] == data.n and post.attrs["seed"] == FAST.seed


def test_loglik_per_patient_is_the_survival_likelihood(recovery_fit: tuple) -> None:
    """Each patient's saved log-likelihood, written out by hand for some draws: the piecewise-
    exponential log-likelihood d log h(t) - H(t), plus the constant d log(exposure in the event's
    interval) that the Poisson form of the same likelihood carries; summed over patients, the
    log-likelihood of the whole data set."""
    data, result, _ = recovery_fit
    post = result.idata.posterior
    saved = result.idata.log_likelihood["events"].isel(chain=1, draw=slice(0, 5)).values
    log_h0 = post["log_h0"].isel(chain=1, draw=slice(0, 5)).values  # (draw, interval)
    beta = post["beta"].isel(chain=1, draw=slice(0, 5)).values  # (draw, covariate)
    cuts = np.asarray(data.cuts)
    ends = np.append(cuts[1:], np.inf)
    spent = np.clip(np.minimum(data.time[:, None], ends) - cuts, 0.0, None)  # (patient, interval)
    k = np.searchsorted(cuts, data.time, side="left") - 1  # t in (c_k, c_k+1]
    d = (data.event > 0).astype(float)
    for draw in range(5):
        risk = (data.x - data.center) @ beta[draw]
        big_h = (spent * np.exp(log_h0[draw])).sum(axis=1) * np.exp(risk)
        survival_ll = d * (log_h0[draw][k] + risk) - big_h
        expected = survival_ll + d * np.log(data.time - cuts[k])
        np.testing.assert_allclose(saved[draw], expected, rtol=1e-9, atol=1e-9)
        assert saved[draw].sum() == pytest.approx(expected.sum(), rel=1e-12)


def test_prior_predictive_median_is_plausible(recovery_fit: tuple) -> None:
    """Prior survival curves: median survival between months and decades for most draws."""
    data, _, _ = recovery_fit
    from analysis.inference.engine import sample_prior

    prior = sample_prior("pem", data, Priors(), seed=1)
    med = prior["median_survival_capped"].values.ravel()
    assert np.mean(med > 3) > 0.9  # rarely below 3 months
    s60 = prior["survival"].sel(time=60.0).values.ravel()
    assert 0.05 < np.median(s60) < 0.95


def test_centred_and_non_centred_walks_agree() -> None:
    """The two ways of writing the random walk are one prior: same posterior within MC error."""
    t, e, x = simulate(150, TRUE_LOG_HR, seed=4)
    data = make_fit_data(t, e, {"a": x[:, 0], "b": x[:, 1]})
    settings = SamplerSettings(sampler="pymc", draws=400, tune=400, chains=2, seed=3)
    a, _ = fit_model(data, settings=settings)
    b, _ = fit_model(data, settings=settings, priors=Priors(parameterization="centred"))
    assert "rw_step" in b.idata.posterior and "rw_z" in a.idata.posterior
    for name, shape in (("beta", (-1, 2)), ("log_h0", (-1, len(data.cuts)))):
        da = a.idata.posterior[name].values.reshape(shape)
        db = b.idata.posterior[name].values.reshape(shape)
        se = np.sqrt((da.var(axis=0) + db.var(axis=0)) / 200)  # ESS of 200 or more per fit
        assert np.all(np.abs(da.mean(axis=0) - db.mean(axis=0)) < 4 * se), name
