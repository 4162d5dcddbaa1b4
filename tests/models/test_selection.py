"""The selection model's pieces against independent scipy computations (no sampling here;
MCMC against the quadrature posterior is in tests/validation/test_selection_check.py)."""

from __future__ import annotations

import math

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest
from scipy import integrate, special, stats

from models.selection import (
    SelectionSettings,
    build_selection_model,
    compare_draws,
    exact_posterior,
    from_estimates,
    from_published,
    log_marginal_reported,
    log_marginal_unreported,
    log_prob_not_significant,
    model_data,
    se_from_ci,
    summarize_hr,
    summarize_selection_posterior,
    unadjusted_posterior,
    unadjusted_summary,
)

MARKERS = ["a", "b", "c", "d", "e"]


def _log_p_not_sig_scipy(u: np.ndarray, c: float) -> np.ndarray:
    """log(Phi(c - u) - Phi(-c - u)) via scipy's log_ndtr, on the lower tail (even in u)."""
    v = np.abs(u)
    hi, lo = special.log_ndtr(c - v), special.log_ndtr(-c - v)
    return hi + np.log1p(-np.exp(lo - hi))


@pytest.fixture(scope="module")
def not_sig_fn():
    theta, se, c = pt.dvector("theta"), pt.dscalar("se"), pt.dscalar("c")
    out = log_prob_not_significant(theta, se, c)
    grad = pt.grad(out.sum(), theta)
    return pytensor.function([theta, se, c], [out, grad])


def test_log_prob_not_significant_matches_scipy(not_sig_fn) -> None:
    theta = np.linspace(-3, 3, 121)  # |theta / se| <= 6.7: the naive difference is accurate
    for se, c in [(0.6, 1.645), (0.45, 1.96), (1.3, 0.5)]:
        value, _ = not_sig_fn(theta, se, c)
        naive = np.log(stats.norm.cdf(c - theta / se) - stats.norm.cdf(-c - theta / se))
        np.testing.assert_allclose(value, naive, rtol=1e-8)


def test_log_prob_not_significant_is_stable_far_out(not_sig_fn) -> None:
    theta = np.array([-1e4, -300.0, -40.0, -8.0, 8.0, 40.0, 300.0, 1e4])
    value, grad = not_sig_fn(theta, 0.5, 1.645)
    np.testing.assert_allclose(value, _log_p_not_sig_scipy(theta / 0.5, 1.645), rtol=1e-9)
    assert np.all(np.isfinite(grad))
    # d/dtheta log P -> -(|theta|/s - c) * sign(theta) / s far out
    expected = -(np.abs(theta) / 0.5 - 1.645) * np.sign(theta) / 0.5
    np.testing.assert_allclose(grad[np.abs(theta) >= 40], expected[np.abs(theta) >= 40], rtol=1e-3)
    _, grad0 = not_sig_fn(np.array([0.0]), 0.5, 1.645)
    assert grad0[0] == 0.0


def test_data_from_published_ci() -> None:
    data = from_published(MARKERS, {"b": (2.0, 1.0, 4.0), "d": (0.5, 0.1, 2.5)})
    se_b = math.log(4.0) / (2 * stats.norm.ppf(0.975))
    se_d = math.log(25.0) / (2 * stats.norm.ppf(0.975))
    np.testing.assert_allclose(data.se[[1, 3]], [se_b, se_d])
    np.testing.assert_allclose(data.log_hr[[1, 3]], [math.log(2.0), math.log(0.5)])
    np.testing.assert_allclose(data.se_unreported, math.sqrt(se_b * se_d))
    np.testing.assert_allclose(data.se[[0, 2, 4]], math.sqrt(se_b * se_d))
    assert data.reported_markers == ("b", "d")
    assert np.all(data.log_hr[[0, 2, 4]] == 0.0)


@pytest.mark.parametrize(
    ("markers", "reported", "message"),
    [
        (MARKERS, {"z": (2.0, 1.0, 4.0)}, "not among those tested"),
        (MARKERS, {}, "at least one marker"),
        (MARKERS, {"a": (2.0, 4.0, 1.0)}, "lower < upper"),
        (["a", "a"], {"a": (2.0, 1.0, 4.0)}, "unique"),
    ],
)
def test_data_rejects_bad_input(markers, reported, message) -> None:
    with pytest.raises(ValueError, match=message):
        from_published(markers, reported)


def test_settings_validate() -> None:
    with pytest.raises(ValueError, match="tau_scale"):
        SelectionSettings(tau_scale=0.0)
    with pytest.raises(ValueError, match="threshold"):
        SelectionSettings(threshold=-1.0)


def _hand_logp(tau, z, data, settings) -> float:
    """Joint log density (no Jacobian) written with scipy, independent of the model code."""
    theta = tau * z
    rep = data.reported
    lp = stats.halfnorm.logpdf(tau, scale=settings.tau_scale) + stats.norm.logpdf(z).sum()
    lp += np.sum(-0.5 * ((data.log_hr[rep] - theta[rep]) / data.se[rep]) ** 2)
    u = theta[~rep] / data.se_unreported
    c = settings.threshold
    lp += np.sum(np.log(stats.norm.cdf(c - u) - stats.norm.cdf(-c - u)))
    return float(lp)


def test_model_logp_matches_hand_computation_and_swaps_data() -> None:
    data = from_published(MARKERS, {"b": (2.0, 1.0, 4.0), "d": (0.5, 0.1, 2.5)})
    settings = SelectionSettings()
    model = build_selection_model(data, settings)
    assert list(model.coords["marker"]) == MARKERS
    assert {v.name for v in model.free_RVs} == {"tau", "z"}
    assert "hr" in model.named_vars
    logp = model.compile_logp(jacobian=False)
    z = np.array([0.3, 1.2, -0.7, -2.0, 0.1])
    point = {"tau_log__": np.log(0.4), "z": z}
    offset = logp(point) - _hand_logp(0.4, z, data, settings)
    other = {"tau_log__": np.log(1.1), "z": -z[::-1]}
    np.testing.assert_allclose(
        logp(other) - _hand_logp(1.1, -z[::-1], data, settings), offset, atol=1e-9
    )
    # swap every datum: other end point, prior scale and threshold
    swapped = from_published(MARKERS, {"a": (3.0, 1.5, 6.0), "e": (1.5, 0.5, 4.5)})
    new = SelectionSettings(tau_scale=1.0, threshold=1.96)
    with model:
        pm.set_data(model_data(swapped, new))
    logp = model.compile_logp(jacobian=False)
    offset = logp(point) - _hand_logp(0.4, z, swapped, new)
    np.testing.assert_allclose(
        logp(other) - _hand_logp(1.1, -z[::-1], swapped, new), offset, atol=1e-9
    )
    (hr_of_values,) = model.replace_rvs_by_values([model["hr"]])
    hr = model.compile_fn(hr_of_values, inputs=model.value_vars, on_unused_input="ignore")
    np.testing.assert_allclose(hr(point), np.exp(0.4 * z))


def test_unreported_marginal_matches_integral_over_theta() -> None:
    se, c = 0.62, 1.645
    for tau in [0.05, 0.3, 1.0, 2.5]:

        def integrand(theta, tau=tau):
            p = stats.norm.cdf(c - theta / se) - stats.norm.cdf(-c - theta / se)
            return stats.norm.pdf(theta, 0.0, tau) * p

        brute, _ = integrate.quad(integrand, -12 * tau, 12 * tau, epsabs=1e-13)
        np.testing.assert_allclose(
            np.exp(log_marginal_unreported(np.array([tau]), se, c)), brute, rtol=1e-8
        )
    reported = log_marginal_reported(np.array([0.0, 0.5]), np.array([1.0]), np.array([0.4]))
    np.testing.assert_allclose(
        reported[:, 0], stats.norm.logpdf(1.0, 0.0, [0.4, math.sqrt(0.25 + 0.16)])
    )


def test_exact_posterior_matches_brute_force_grid() -> None:
    """Two-dimensional grid over (tau, theta of the reported marker): independent of the
    conjugate algebra."""
    names = ["r", "u1", "u2", "u3"]
    data = from_estimates(names, np.array([0.9, 0, 0, 0]), np.full(4, 0.5), np.arange(4) == 0)
    settings = SelectionSettings(tau_scale=0.5, threshold=1.645)
    exact = exact_posterior(data, settings, n_nodes=2001)
    tau = np.linspace(1e-4, 4.0, 1500)[:, None]
    theta = np.linspace(-3.0, 4.0, 2000)[None, :]
    unrep = np.exp(log_marginal_unreported(tau[:, 0], 0.5, 1.645))[:, None] ** 3
    dens = (
        stats.halfnorm.pdf(tau, scale=0.5)
        * stats.norm.pdf(theta, 0.0, tau)
        * stats.norm.pdf(0.9, theta, 0.5)
        * unrep
    )
    theta_marg = integrate.trapezoid(dens, tau[:, 0], axis=0)
    cdf = integrate.cumulative_trapezoid(theta_marg, theta[0], initial=0.0)
    cdf /= cdf[-1]
    brute_q = np.interp([0.025, 0.5, 0.975], cdf, theta[0])
    np.testing.assert_allclose(exact.theta_quantiles([0.025, 0.5, 0.975])[0], brute_q, atol=5e-3)
    np.testing.assert_allclose(exact.prob_positive()[0], 1 - np.interp(0, theta[0], cdf), atol=2e-3)
    tau_marg = integrate.trapezoid(dens, theta[0], axis=1)
    tau_cdf = integrate.cumulative_trapezoid(tau_marg, tau[:, 0], initial=0.0)
    tau_cdf /= tau_cdf[-1]
    brute_tau = np.interp(0.5, tau_cdf, tau[:, 0])
    np.testing.assert_allclose(exact.tau_summary().median, brute_tau, atol=5e-3)


def test_exact_posterior_converges_in_nodes_and_shrinks() -> None:
    data = from_published(
        [f"m{i}" for i in range(20)], {"m3": (5.33, 0.97, 29.3), "m7": (2.74, 1.14, 6.56)}
    )
    coarse = exact_posterior(data, n_nodes=401).hr_summaries()
    fine = exact_posterior(data, n_nodes=16001).hr_summaries()
    for name in ("m3", "m7"):
        np.testing.assert_allclose(
            list(coarse[name].as_dict().values()), list(fine[name].as_dict().values()), rtol=2e-3
        )
    # the 18 non-significant markers pull both HRs far below the unadjusted readings
    for name, (hr, lo, hi) in {"m3": (5.33, 0.97, 29.3), "m7": (2.74, 1.14, 6.56)}.items():
        unadjusted = unadjusted_summary(math.log(hr), float(se_from_ci(lo, hi)))
        assert fine[name].median < unadjusted.median
        assert fine[name].prob_gt_1 < unadjusted.prob_gt_1
    # the fewer markers went unreported, the less the shrinkage
    few = from_published(
        [f"m{i}" for i in range(4)], {"m3": (5.33, 0.97, 29.3), "m2": (2.74, 1.14, 6.56)}
    )
    assert exact_posterior(few).hr_summaries()["m3"].median > fine["m3"].median


def test_unadjusted_is_conjugate_normal() -> None:
    mean, sd = unadjusted_posterior(1.0, 1.0, prior_sd=1.0)
    np.testing.assert_allclose([mean, sd], [0.5, math.sqrt(0.5)])
    s = unadjusted_summary(math.log(2.74), float(se_from_ci(1.14, 6.56)))
    se = (math.log(6.56) - math.log(1.14)) / (2 * 1.959964)
    post_mean = math.log(2.74) / se**2 / (1 + 1 / se**2)
    np.testing.assert_allclose(s.median, math.exp(post_mean), rtol=1e-6)
    np.testing.assert_allclose(s.prob_gt_1, stats.norm.cdf(post_mean * math.sqrt(1 + 1 / se**2)))


def test_summaries_of_draws() -> None:
    draws = np.exp(np.random.default_rng(3).normal(0.2, 0.5, size=(4, 50_000)))
    s = summarize_hr(draws)
    np.testing.assert_allclose(s.median, math.exp(0.2), rtol=0.01)
    np.testing.assert_allclose(s.lower, math.exp(0.2 - 1.96 * 0.5), rtol=0.02)
    np.testing.assert_allclose(s.prob_gt_1, stats.norm.sf(0, 0.2, 0.5), atol=0.005)
    both = summarize_selection_posterior(np.stack([draws, 1 / draws], -1), draws, ["x", "y"])
    np.testing.assert_allclose(both["y"].median, 1 / both["x"].median, rtol=1e-6)
    assert set(both) == {"x", "y", "tau"}
    with pytest.raises(ValueError, match="one column per marker"):
        summarize_selection_posterior(draws[..., None], draws, ["x", "y"])


def test_compare_draws_detects_wrong_draws() -> None:
    data = from_published(MARKERS, {"b": (2.0, 1.0, 4.0)})
    exact = exact_posterior(data)
    rng = np.random.default_rng(0)
    # exact draws: pick a node by weight, then the conditional normal
    k = rng.choice(exact.tau.size, size=40_000, p=exact.weight)
    theta = rng.normal(exact.mean[0, k], exact.sd[0, k])
    good = compare_draws(exact, theta[:, None], exact.tau[k])
    np.testing.assert_allclose(good["theta_cdf_at_quantiles"][0], [0.025, 0.5, 0.975], atol=0.01)
    np.testing.assert_allclose(good["tau_cdf_at_quantiles"], [0.025, 0.5, 0.975], atol=0.01)
    np.testing.assert_allclose(good["prob_gt_1_draws"], good["prob_gt_1_exact"], atol=0.01)
    bad = compare_draws(exact, theta[:, None] + 0.3, exact.tau[k])
    assert abs(bad["theta_cdf_at_quantiles"][0, 1] - 0.5) > 0.1
