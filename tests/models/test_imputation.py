"""Missing binary covariates marginalised in the PEM and competing-risk likelihoods.

The mixture likelihood, the imputed values' probabilities and the pointwise log-likelihood are
checked against brute force: every joint completion of the missing values written out, each
scored with the complete-data likelihood of models/pem.py or models/competing.py.
"""

from __future__ import annotations

import itertools

import numpy as np
import pymc as pm
import pytensor
import pytest
import xarray as xr
from scipy.special import expit, logsumexp

from models.competing import build_competing, competing_data
from models.competing import pointwise_loglik as competing_pointwise
from models.imputation import (
    build_imputed,
    completion_log_joint,
    completion_responsibilities,
    imputed_data,
    missing_counts,
    missing_layout,
    missing_value_posterior,
    missing_value_probabilities,
    pointwise_loglik,
    structure_key,
)
from models.pem import pointwise_loglik as pem_pointwise
from models.survival_data import expand

CUTS = np.array([0.0, 5.0, 15.0])
NAMES = ["a", "b", "c"]


def small_data(seed: int, n_causes: int | None) -> tuple[np.ndarray, ...]:
    """12 patients, 3 binary covariates; b and c miss 3 and 2 values (one patient both)."""
    rng = np.random.default_rng(seed)
    n = 12
    time = rng.uniform(1.0, 30.0, n)
    event = rng.integers(0, (n_causes or 1) + 1, n)
    x = rng.integers(0, 2, (n, 3)).astype(float)
    x[[1, 4, 7], 1] = np.nan
    x[[4, 9], 2] = np.nan
    z = rng.integers(0, 2, (n, 1)).astype(float)
    return time, event, x, z


def random_parameters(seed: int, n_causes: int | None, n_predictors: int) -> tuple:
    rng = np.random.default_rng(seed)
    if n_causes is None:
        log_h0, beta = rng.normal(-3.0, 0.4, 3), rng.normal(0.0, 0.7, 3)
    else:
        log_h0, beta = rng.normal(-3.0, 0.4, (n_causes, 3)), rng.normal(0.0, 0.7, (3, n_causes))
    alpha = rng.normal(0.0, 1.0, 2)
    gamma = rng.normal(0.0, 1.0, (n_predictors, 2)) if n_predictors else None
    return log_h0, beta, alpha, gamma


def complete_data_loglik(time, event, x, log_h0, beta, n_causes) -> float:
    """Full-data log-likelihood from the existing models (independent of models/imputation)."""
    if n_causes is None:
        pp = expand(time, (event > 0).astype(int), x, CUTS)
        return float(pem_pointwise(log_h0, beta, pp, time.size).sum())
    return float(competing_pointwise(log_h0, beta, expand(time, event, x, CUTS), time.size).sum())


def brute_force(time, event, x, z, params, n_causes) -> tuple[float, dict]:
    """log p(outcomes, observed covariates | z) by enumerating every joint completion, and
    P(x_ik = 1 | data) for each missing value."""
    log_h0, beta, alpha, gamma = params
    imputed = [1, 2]
    eta = alpha[None, :] + (z @ gamma if gamma is not None else np.zeros((x.shape[0], 1)))
    log_p1, log_p0 = np.log(expit(eta)), np.log(expit(-eta))
    holes = list(zip(*np.nonzero(np.isnan(x)), strict=True))
    terms, fills = [], []
    for fill in itertools.product([0.0, 1.0], repeat=len(holes)):
        xx = x.copy()
        log_w = 0.0
        for (i, k), v in zip(holes, fill, strict=True):
            xx[i, k] = v
            log_w += log_p1[i, imputed.index(k)] if v else log_p0[i, imputed.index(k)]
        terms.append(complete_data_loglik(time, event, xx, log_h0, beta, n_causes) + log_w)
        fills.append(fill)
    terms = np.array(terms)
    observed = sum(
        (log_p1 if x[i, k] == 1 else log_p0)[i, j]
        for i in range(x.shape[0])
        for j, k in enumerate(imputed)
        if not np.isnan(x[i, k])
    )
    weights = np.exp(terms - logsumexp(terms))
    probs = {h: float(weights @ np.array([f[m] for f in fills])) for m, h in enumerate(holes)}
    return float(logsumexp(terms) + observed), probs


@pytest.mark.parametrize(("n_causes", "with_z"), [(2, True), (None, False), (None, True)])
def test_likelihood_and_imputed_values_match_brute_force(n_causes, with_z) -> None:
    time, event, x, z = small_data(1, n_causes)
    z = z if with_z else None
    layout = missing_layout(time, event, x, CUTS, z=z, n_causes=n_causes)
    params = random_parameters(2, n_causes, 1 if with_z else 0)
    expected, expected_probs = brute_force(
        time, event, x, z if with_z else np.zeros((12, 0)), params, n_causes
    )
    outcome, covariates = pointwise_loglik(layout, *params)
    assert outcome.sum() + covariates.sum() == pytest.approx(expected, rel=1e-10)
    probs, patient, cov = missing_value_probabilities(layout, *params)
    got = dict(zip(zip(patient, cov, strict=True), probs, strict=True))
    assert set(got) == set(expected_probs)
    for key, value in expected_probs.items():
        assert got[key] == pytest.approx(value, abs=1e-10)
    # probabilities are informative: not all equal to the covariate model's prior guess
    assert np.ptp(probs) > 0.05


def test_pointwise_outcome_of_complete_patients_is_the_plain_models() -> None:
    time, event, x, z = small_data(3, 2)
    layout = missing_layout(time, event, x, CUTS, z=z, n_causes=2)
    log_h0, beta, alpha, gamma = random_parameters(4, 2, 1)
    outcome, covariates = pointwise_loglik(layout, log_h0, beta, alpha, gamma)
    c = layout.complete
    plain = competing_pointwise(log_h0, beta, expand(time[c], event[c], x[c], CUTS), c.size)
    np.testing.assert_allclose(outcome[c], plain, rtol=1e-12)
    # a patient's covariate term counts its observed imputed covariates only
    eta = alpha + z[0] @ gamma
    pairs = zip(eta, x[0, 1:], strict=True)
    bern = [np.log(expit(e)) if v == 1 else np.log(expit(-e)) for e, v in pairs]
    assert covariates[0] == pytest.approx(sum(bern))


def _model_terms(model: pm.Model, n_causes: int | None):
    """A function of a random unconstrained point: the hazard/covariate-model values and the
    sum of the model's likelihood potentials."""
    names = ["log_h0", "beta", "imputation_alpha", "imputation_gamma"]
    names = [k for k in names if k in model.named_vars]
    outs = model.replace_rvs_by_values([model[k] for k in names])
    outs += [pytensor.tensor.sum(t) for t in model.logp(vars=model.potentials, sum=False)]
    fn = pytensor.function(model.value_vars, outs, on_unused_input="ignore")
    shapes = model.initial_point()

    def at(seed: int) -> tuple[list[np.ndarray], float]:
        rng = np.random.default_rng(seed)
        point = {k: rng.normal(0.0, 0.7, np.shape(v)) for k, v in shapes.items()}
        res = fn(*[point[v.name] for v in model.value_vars])
        values = res[: len(names)]
        if len(values) == 3:
            values.append(None)
        return values, float(sum(res[len(names) :]))

    return at


@pytest.mark.parametrize("n_causes", [2, None])
def test_model_potentials_equal_the_marginal_likelihood(n_causes) -> None:
    """Up to a constant (the Poisson terms that do not depend on the parameters)."""
    time, event, x, z = small_data(5, n_causes)
    layout = missing_layout(time, event, x, CUTS, z=z, n_causes=n_causes)
    model = build_imputed(
        layout,
        covariate_names=NAMES,
        log_rate_center=np.full(n_causes, -3.0) if n_causes else -3.0,
        cause_names=["u", "v"][: n_causes or 0],
        predictor_names=["z"],
    )
    assert {p.name for p in model.potentials} == {
        "loglik",
        "loglik_incomplete",
        "loglik_covariates",
    }
    at = _model_terms(model, n_causes)
    diffs_model, diffs_numpy = [], []
    for seed in (1, 2, 3):
        values, potentials = at(seed)
        outcome, covariates = pointwise_loglik(layout, *values)
        diffs_model.append(potentials)
        diffs_numpy.append(outcome.sum() + covariates.sum())
    np.testing.assert_allclose(np.diff(diffs_model), np.diff(diffs_numpy), rtol=1e-9)


def test_without_missing_values_the_model_is_the_competing_model() -> None:
    time, event, x, _ = small_data(6, 2)
    x = np.nan_to_num(x, nan=1.0)
    layout = missing_layout(time, event, x, CUTS, n_causes=2, imputed=(1, 2))
    assert layout.incomplete.size == 0 and layout.completion_x.shape[0] == 0
    center = np.array([-3.0, -2.5])
    scale = np.linspace(0.5, 2.0, len(NAMES))  # the prior's scale units, as in build_competing
    model = build_imputed(
        layout,
        covariate_names=NAMES,
        log_rate_center=center,
        cause_names=["u", "v"],
        x_scale=scale,
    )
    plain = build_competing(
        layout.cells,
        cuts=CUTS,
        covariate_names=NAMES,
        cause_names=["u", "v"],
        log_rate_center=center,
        x_scale=scale,
    )
    point = model.initial_point()
    rng = np.random.default_rng(0)
    point = {k: rng.normal(0.0, 0.5, np.shape(v)) for k, v in point.items()}
    values = model.compile_fn(
        [model.logp(vars=[p]) for p in model.potentials], point_fn=True, inputs=model.value_vars
    )(point)
    by_name = dict(zip([p.name for p in model.potentials], values, strict=True))
    plain_point = {k: v for k, v in point.items() if k in plain.initial_point()}
    expected = plain.compile_fn(plain.logp(vars=plain.potentials), point_fn=True)(plain_point)
    assert by_name["loglik"] == pytest.approx(float(expected), rel=1e-12)
    assert by_name["loglik_incomplete"] == 0.0
    # the complete-case cells are exactly build_competing's data; the rows come centred, so
    # there is no x_center container (nutpie's with_data refuses one the graph does not use)
    data = imputed_data(layout, center, scale)
    plain_data = competing_data(layout.cells, center, x_scale=scale)
    assert set(data) >= set(plain_data) - {"x_center"} and "x_center" not in data
    for key, value in plain_data.items():
        if key != "x_center":
            np.testing.assert_array_equal(data[key], value)


def test_one_model_takes_data_of_other_lengths() -> None:
    """Swapping data (more incomplete patients, more completions) gives the model built on it."""
    time, event, x, z = small_data(7, 2)
    centre = np.array([-3.0, -3.0])
    kwargs = dict(covariate_names=NAMES, cause_names=["u", "v"], predictor_names=["z"])
    x_few = x.copy()
    x_few[4, 2] = 0.0  # one fewer missing value: at most one per patient, so 2 completions
    first = missing_layout(time, event, x_few, CUTS, z=z, n_causes=2, imputed=(1, 2))
    second = missing_layout(time[2:], event[2:], x[2:], CUTS, z=z[2:], n_causes=2)
    assert first.completion_x.shape[1] == 2 and second.completion_x.shape[1] == 4
    assert structure_key(first) == structure_key(second)
    model = build_imputed(first, log_rate_center=centre, **kwargs)
    fresh = build_imputed(second, log_rate_center=centre, **kwargs)
    fn = model.compile_fn(model.logp(vars=model.potentials), point_fn=True)
    fresh_fn = fresh.compile_fn(fresh.logp(vars=fresh.potentials), point_fn=True)
    rng = np.random.default_rng(1)
    point = {k: rng.normal(0.0, 0.5, np.shape(v)) for k, v in model.initial_point().items()}
    before = fn(point)
    with model:
        pm.set_data(imputed_data(second, centre))
    assert fn(point) == pytest.approx(float(fresh_fn(point)), rel=1e-12)
    assert fn(point) != pytest.approx(float(before))


def test_layout_lists_every_completion_once() -> None:
    time, event, x, z = small_data(8, 2)
    layout = missing_layout(time, event, x, CUTS, z=z, n_causes=2)
    assert layout.imputed == (1, 2)
    np.testing.assert_array_equal(layout.incomplete, [1, 4, 7, 9])
    assert layout.completion_x.shape == (4, 4, 3)
    np.testing.assert_array_equal(layout.completion_valid.sum(axis=1), [2, 4, 2, 2])
    for p, i in enumerate(layout.incomplete):
        rows = layout.completion_x[p][layout.completion_valid[p]]
        seen = ~np.isnan(x[i])
        assert np.all(rows[:, seen] == x[i, seen])
        assert len({tuple(r) for r in rows}) == rows.shape[0] == 2 ** (~seen).sum()
    # per-patient exposure and events are the incomplete patients' own
    np.testing.assert_allclose(layout.exposure.sum(axis=1), time[layout.incomplete])
    np.testing.assert_array_equal(layout.events.sum(axis=(1, 2)), event[layout.incomplete] > 0)
    # collapsed cells hold the complete cases only
    assert layout.cells.exposure.sum() == pytest.approx(time[layout.complete].sum())
    # Bernoulli counts: observed ones and zeros of b and c, split by z
    for col, k in enumerate((1, 2)):
        for r, row in enumerate(layout.z_rows):
            sel = z[:, 0] == row[0]
            assert layout.ones[r, col] == np.sum(x[sel, k] == 1)
            assert layout.zeros[r, col] == np.sum(x[sel, k] == 0)


def test_missing_value_posterior_names_patient_and_covariate() -> None:
    time, event, x, z = small_data(9, None)
    layout = missing_layout(time, event, x, CUTS, z=z)
    rng = np.random.default_rng(0)
    post = xr.Dataset(
        {
            "log_h0": (("chain", "draw", "interval"), rng.normal(-3, 0.3, (2, 5, 3))),
            "beta": (("chain", "draw", "covariate"), rng.normal(0, 0.5, (2, 5, 3))),
            "imputation_alpha": (
                ("chain", "draw", "imputed_covariate"),
                rng.normal(0, 1, (2, 5, 2)),
            ),
            "imputation_gamma": (
                ("chain", "draw", "predictor", "imputed_covariate"),
                rng.normal(0, 1, (2, 5, 1, 2)),
            ),
        },
        coords={"chain": [0, 1], "draw": np.arange(5)},
    )
    da = missing_value_posterior(layout, post, NAMES)
    assert da.dims == ("chain", "draw", "missing_value")
    assert list(zip(da["patient"].values, da["covariate"].values, strict=True)) == [
        (1, "b"),
        (4, "b"),
        (4, "c"),
        (7, "b"),
        (9, "c"),
    ]
    assert np.all((da.values > 0) & (da.values < 1))
    probs, _, _ = missing_value_probabilities(
        layout,
        post["log_h0"].values,
        post["beta"].values,
        post["imputation_alpha"].values,
        post["imputation_gamma"].values,
    )
    np.testing.assert_allclose(da.values, probs)


def test_completion_joint_marks_padding_impossible() -> None:
    time, event, x, z = small_data(10, 2)
    layout = missing_layout(time, event, x, CUTS, z=z, n_causes=2)
    params = random_parameters(1, 2, 1)
    joint = completion_log_joint(layout, *params)
    assert np.all(np.isneginf(joint[~layout.completion_valid]))
    assert np.all(np.isfinite(joint[layout.completion_valid]))
    resp = completion_responsibilities(layout, *params)
    np.testing.assert_allclose(resp.sum(axis=-1), 1.0)
    assert np.all(resp[~layout.completion_valid] == 0.0)


def test_missing_counts_for_impute_and_drop() -> None:
    x = np.array([[1, np.nan, 0], [0, 1, np.nan], [1, np.nan, np.nan], [0, 0, 1]], float)
    impute = missing_counts(x, ["a", "b", "c"], "impute")
    assert impute == {
        "missing": "impute",
        "rows": 4,
        "rows_complete": 1,
        "rows_used": 4,
        "rows_dropped": 0,
        "values_missing": {"a": 0, "b": 2, "c": 2},
        "values_imputed": {"a": 0, "b": 2, "c": 2},
    }
    drop = missing_counts(x, ["a", "b", "c"], "drop")
    assert drop["rows_used"] == 1 and drop["rows_dropped"] == 3
    assert drop["values_imputed"] == {"a": 0, "b": 0, "c": 0}
    assert drop["values_missing"] == impute["values_missing"]
    with pytest.raises(ValueError, match="names"):
        missing_counts(x, ["a", "b"])
    with pytest.raises(ValueError, match="mode"):
        missing_counts(x, ["a", "b", "c"], "mean")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda x, z: (np.where(x == 1, 2.0, x), z), "binary"),
        (lambda x, z: (x, np.where(np.arange(12)[:, None] == 3, np.nan, z)), "observed"),
    ],
)
def test_bad_inputs_are_refused(change, message) -> None:
    time, event, x, z = small_data(11, None)
    x, z = change(x, z)
    with pytest.raises(ValueError, match=message):
        missing_layout(time, event, x, CUTS, z=z)


def test_a_missing_value_outside_the_imputed_columns_is_refused() -> None:
    time, event, x, _ = small_data(12, None)
    with pytest.raises(ValueError, match="not among the imputed"):
        missing_layout(time, event, x, CUTS, imputed=(1,))


def test_sampling_recovers_the_effect_of_a_covariate_with_missing_values() -> None:
    """A strong effect on a covariate missing in 40% of 300 patients: the posterior HR covers
    the truth, the imputed values lean towards their true values."""
    rng = np.random.default_rng(2026)
    n = 300
    x = (rng.random((n, 2)) < 0.5).astype(float)
    rate = 0.03 * np.exp(x @ np.array([1.2, -0.5]))
    t_event = rng.exponential(1.0 / rate)
    t_cens = rng.uniform(10.0, 40.0, n)
    time, event = np.minimum(t_event, t_cens), (t_event <= t_cens).astype(int)
    x_nan = x.copy()
    x_nan[rng.random(n) < 0.4, 0] = np.nan
    layout = missing_layout(time, event, x_nan, CUTS)
    model = build_imputed(
        layout, covariate_names=["a", "b"], log_rate_center=np.log(event.sum() / time.sum())
    )
    with model:
        idata = pm.sample(
            draws=300,
            tune=300,
            chains=2,
            cores=1,
            random_seed=3,
            progressbar=False,
            compute_convergence_checks=False,
        )
    beta = idata.posterior["beta"].values.reshape(-1, 2)
    lo, hi = np.quantile(beta, [0.025, 0.975], axis=0)
    assert np.all((lo < [1.2, -0.5]) & (hi > [1.2, -0.5])), (lo, hi)
    prevalence = idata.posterior["imputation_prevalence"].values.ravel()
    assert abs(prevalence.mean() - np.nanmean(x_nan[:, 0])) < 0.05
    probs = missing_value_posterior(layout, idata.posterior, ["a", "b"]).mean(("chain", "draw"))
    truth = x[probs["patient"].values, 0]
    assert probs.values[truth == 1].mean() > probs.values[truth == 0].mean() + 0.1
