"""Competing risks: recovery of cause-specific HRs and CIFs, reduction to the PEM, bad codes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.cli import main
from analysis.inference.data import make_fit_data
from analysis.inference.engine import SamplerSettings, fit_model
from models.competing import cif_curves, standardized_cif
from models.survival_data import DEFAULT_CUTS

# log-HR[covariate, cause] and constant baseline hazards per cause (per month)
TRUE_BETA = np.array([[0.8, -0.2], [0.0, 0.7]])
TRUE_H0 = np.array([1 / 60, 1 / 45])
PYMC_FAST = SamplerSettings(sampler="pymc", draws=400, tune=400, chains=2, seed=5)


def simulate(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, size=(n, 2)).astype(float)
    rates = TRUE_H0[None, :] * np.exp(x @ TRUE_BETA)  # (n, K)
    latent = rng.exponential(1 / rates)
    first = latent.min(axis=1)
    cause = latent.argmin(axis=1) + 1
    c = rng.uniform(12, 120, n)
    return np.minimum(first, c), np.where(first <= c, cause, 0), x


def true_cif(x: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Average over patients of the exact CIFs with constant cause-specific hazards: (K, T)."""
    rates = TRUE_H0[None, :] * np.exp(x @ TRUE_BETA)
    total = rates.sum(axis=1, keepdims=True)
    cif = (rates / total)[:, :, None] * (1 - np.exp(-total[:, :, None] * times[None, None, :]))
    return cif.mean(axis=0)


def test_cif_formula_constant_hazards() -> None:
    log_h = np.log(np.array([[0.01] * 3, [0.03] * 3]))
    t = np.array([5.0, 20.0, 80.0])
    expected = np.array([0.25, 0.75])[:, None] * (1 - np.exp(-0.04 * t))[None, :]
    np.testing.assert_allclose(cif_curves(log_h, np.array([0.0, 10.0, 30.0]), t), expected)
    # standardised over two patterns equals the average of their CIFs
    beta = np.array([[0.5, -0.5]])
    x = np.array([[0.0], [1.0], [1.0]])
    got = standardized_cif(log_h, beta, x, np.array([0.0, 10.0, 30.0]), t)
    one = cif_curves(log_h + beta.T * 1.0, np.array([0.0, 10.0, 30.0]), t)
    zero = cif_curves(log_h, np.array([0.0, 10.0, 30.0]), t)
    np.testing.assert_allclose(got, (zero + 2 * one) / 3)


def cif_by_integration(h: np.ndarray, cuts: np.ndarray, times: np.ndarray) -> np.ndarray:
    """CIFs of piecewise-constant cause-specific hazards ``h`` (K, J) at ``times``, by solving
    dS/dt = -sum_k h_k S, dF_k/dt = h_k S numerically, one constant-hazard piece at a time."""
    from scipy.integrate import solve_ivp

    def rhs(t: float, y: np.ndarray, rates: np.ndarray) -> np.ndarray:
        return np.concatenate([[-rates.sum() * y[0]], rates * y[0]])

    y = np.concatenate([[1.0], np.zeros(h.shape[0])])  # S, F_1..F_K
    found: dict[float, np.ndarray] = {}
    ends = np.append(cuts[1:], times.max())
    for j, (start, end) in enumerate(zip(cuts, ends, strict=True)):
        if end <= start:
            continue
        grid = np.unique(np.append(times[(times > start) & (times < end)], end))
        sol = solve_ivp(rhs, (start, end), y, t_eval=grid, args=(h[:, j],), rtol=1e-11, atol=1e-13)
        found.update(zip(grid, sol.y.T, strict=True))
        y = sol.y[:, -1]
    return np.array([found[t][1:] for t in times]).T


def test_cif_formula_piecewise_hazards_against_numerical_integration() -> None:
    """Hazards that change at each cut, the causes' shares too (a formula that took one interval's
    shares or survival for all would pass the constant-hazard test above, not this one)."""
    cuts = np.array([0.0, 10.0, 30.0])
    h = np.array([[0.010, 0.050, 0.002], [0.030, 0.004, 0.020]])  # (cause, interval)
    times = np.array([4.0, 10.0, 17.5, 30.0, 55.0, 200.0])
    expected = cif_by_integration(h, cuts, times)
    other = cif_by_integration(h[::-1] * 0.5, cuts, times)
    got = cif_curves(np.log(np.stack([h, h[::-1] * 0.5])), cuts, times)  # two "draws"
    np.testing.assert_allclose(got, np.stack([expected, other]), rtol=1e-7, atol=1e-10)
    # standardised over patients: the average of each covariate pattern's integrated CIF
    beta = np.array([[0.7, -0.3]])  # (covariate, cause)
    x = np.array([[0.0], [1.0], [1.0]])
    shifted = cif_by_integration(h * np.exp(beta.T), cuts, times)
    got = standardized_cif(np.log(h), beta, x, cuts, times)
    np.testing.assert_allclose(got, (expected + 2 * shifted) / 3, rtol=1e-7, atol=1e-10)


@pytest.fixture(scope="module")
def competing_fit() -> tuple:
    t, e, x = simulate(400, seed=3)
    data = make_fit_data(
        t,
        e,
        {"a": x[:, 0], "b": x[:, 1]},
        cause_names=("first", "second"),
        curve_times=np.array([12.0, 24.0, 60.0]),
    )
    result, _ = fit_model(data, kind="competing", settings=PYMC_FAST)
    return data, result


def test_cause_specific_hrs_are_recovered(competing_fit: tuple) -> None:
    _, result = competing_fit
    beta = result.idata.posterior["beta"].transpose("chain", "draw", "covariate", "cause")
    draws = beta.values.reshape(-1, 2, 2)
    lo, hi = np.quantile(draws, [0.025, 0.975], axis=0)
    assert np.all((lo < TRUE_BETA) & (hi > TRUE_BETA)), (lo, hi)
    assert np.all(hi - lo < 1.5)  # informative, not the prior's width (about 3.9)


def test_posterior_cif_tracks_the_true_cif(competing_fit: tuple) -> None:
    data, result = competing_fit
    cif = result.idata.posterior["cif"].transpose("chain", "draw", "cause", "time").values
    draws = cif.reshape(-1, 2, 3)
    truth = true_cif(data.x, data.curve_times)
    median = np.median(draws, axis=0)
    lo, hi = np.quantile(draws, [0.025, 0.975], axis=0)
    assert np.max(np.abs(median - truth)) < 0.04
    assert np.all((lo < truth) & (truth < hi))
    at = result.idata.posterior["cif_at"].sel(horizon=24.0).mean(("chain", "draw")).values
    np.testing.assert_allclose(at, cif.mean(axis=(0, 1))[:, 1], atol=1e-12)


def test_loglik_is_per_patient(competing_fit: tuple) -> None:
    data, result = competing_fit
    ll = result.idata.log_likelihood["events"]
    assert ll.dims == ("chain", "draw", "patient") and ll.sizes["patient"] == data.n
    assert list(result.idata.posterior["cause"].values) == ["first", "second"]


def test_single_cause_reduces_to_the_pem() -> None:
    """One cause: the competing model is the PEM (same parameters, same prior, same data)."""
    rng = np.random.default_rng(8)
    n = 80
    x = rng.integers(0, 2, n).astype(float)
    t_ev = rng.exponential(30 * np.exp(-0.6 * x))
    c = rng.uniform(5, 80, n)
    t, e = np.minimum(t_ev, c), (t_ev <= c).astype(int)
    settings = SamplerSettings(sampler="pymc", draws=300, tune=300, chains=2, seed=9)
    pem = make_fit_data(t, e, {"a": x}, cuts=DEFAULT_CUTS[:5])
    single = make_fit_data(t, e, {"a": x}, cuts=DEFAULT_CUTS[:5], cause_names=("only",))
    a, _ = fit_model(pem, kind="pem", settings=settings)
    b, _ = fit_model(single, kind="competing", settings=settings)
    beta_a = a.idata.posterior["beta"].values.ravel()
    beta_b = b.idata.posterior["beta"].values.ravel()
    h_a = a.idata.posterior["log_h0"].values.reshape(-1, 5)
    h_b = b.idata.posterior["log_h0"].values.reshape(-1, 5)
    # same parameters in the same order, same prior, same likelihood: the same draws
    np.testing.assert_array_equal(beta_a, beta_b)
    np.testing.assert_array_equal(h_a, h_b)


@pytest.mark.parametrize("code", ["10", "-1", "1.5", "x"])
def test_event_codes_out_of_range_are_rejected(
    code: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t, e, x = simulate(30, seed=1)
    df = pd.DataFrame({"months": np.round(t, 2) + 0.01, "status": e.astype(str), "a": x[:, 0]})
    df.loc[4, "status"] = code
    path = tmp_path / "d.csv"
    df.to_csv(path, index=False)
    out = tmp_path / "out"
    args = ["fit", "--competing", "--data", str(path), "--time", "months", "--event", "status"]
    status = main([*args, "--covariates", "a", "--json", str(out / "r.json")])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1
    assert "status" in err and "row 5" in err
    assert not out.exists()
