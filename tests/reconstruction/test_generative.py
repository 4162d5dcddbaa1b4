"""The generative model: its simulation and its likelihood describe the same law, background
mortality follows the life table, and the model's structural promises hold."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.reconstruction import generative as gm
from analysis.reconstruction.mortality import LIFE_TABLE_AGES, QX, background_laws, gompertz_fit
from analysis.reconstruction.sampler import seed_numba


def _patient(age: float = 60.0, sex: str = "female", bcat: float = 1.0) -> np.ndarray:
    law = background_laws()[sex]
    x = np.zeros(gm.N_COV)
    x[gm.C_TMA] = 1.0
    x[gm.C_BCAT] = bcat
    x[gm.C_SIZE] = 1.0
    x[gm.C_AGE] = age
    x[gm.C_GA] = law.a
    x[gm.C_GB] = law.b
    return x


def _theta() -> np.ndarray:
    mean, sd, uniform = gm.prior_arrays()
    theta = np.where(uniform > 0, (mean + sd) / 2, mean)
    theta[gm.THETA_INDEX["log_other_multiplier"]] = math.log(3.0)  # enough other deaths
    theta[gm.THETA_INDEX["log_loss_rate"]] = math.log(1 / 80)
    return theta


def _stories(theta: np.ndarray, x: np.ndarray, n: int, seed: int) -> list[tuple]:
    seed_numba(seed)
    out = []
    for _ in range(n):
        code, t_r, fu, status, _s = gm.draw_story(theta, x)
        out.append((code, fu if code == 0 else t_r, fu, status))
    return out


def _loglik(theta: np.ndarray, x: np.ndarray, stories: list[tuple]) -> float:
    return sum(gm.patient_loglik(theta, x, c, t, f, s) for c, t, f, s in stories)


@pytest.fixture(scope="module")
def simulated():
    theta = _theta()
    x = _patient()
    return theta, x, _stories(theta, x, 3000, seed=17)


@pytest.mark.parametrize(
    "name",
    ["log_scale_rec", "log_shape_rec", "type_distant", "log_scale_death", "death_beta_catenin",
     "log_other_multiplier", "log_loss_rate", "loss_tma", "cutoff"],
)  # fmt: skip
def test_likelihood_peaks_at_the_simulating_parameters(simulated, name: str) -> None:
    """Stories simulated at theta are more likely at theta than at theta moved either way:
    the simulation and the likelihood describe the same law (fails if either is wrong)."""
    theta, x, stories = simulated
    j = gm.THETA_INDEX[name]
    at_truth = _loglik(theta, x, stories)
    step = 0.3 if name != "cutoff" else 0.8
    for sign in (-1.0, 1.0):
        moved = theta.copy()
        moved[j] += sign * step
        assert _loglik(moved, x, stories) < at_truth, (name, sign)


def test_simulated_stories_obey_the_model(simulated) -> None:
    stories = simulated[2]
    codes = np.array([s[0] for s in stories])
    status = np.array([s[3] for s in stories])
    t_rec = np.array([s[1] for s in stories])
    fu = np.array([s[2] for s in stories])
    assert not np.any((codes == 0) & (status == gm.DEAD_DISEASE))  # disease death needs recurrence
    assert np.all(t_rec[codes > 0] <= fu[codes > 0])
    assert {1, 2, 3} <= set(codes.tolist()) and (status == gm.DEAD_OTHER).any()
    assert np.allclose(fu * 100, np.round(fu * 100))  # the CSV's 0.01-month grid


def test_story_given_class_keeps_the_class_and_range() -> None:
    theta, x = _theta(), _patient()
    seed_numba(3)
    for code in (0, 1, 2, 3):
        ok, t_r, fu, status = gm.draw_story_given(theta, x, code, 10.44, 166.8, 5000)
        assert ok and 10.44 <= fu <= 166.8
        assert (t_r == fu) if code == 0 else (t_r < fu or status != gm.DEAD_DISEASE)


def test_censoring_does_not_depend_on_markers() -> None:
    """The censoring part of the likelihood is the same for marker-high and marker-low
    patients: the difference of log-likelihoods does not depend on the follow-up time of an
    alive patient without recurrence beyond the recurrence hazard."""
    theta = _theta()
    hi, lo = _patient(bcat=1.0), _patient(bcat=0.0)
    theta[gm.THETA_INDEX["rec_beta_catenin"]] = 0.0
    for fu in (12.0, 60.0, 150.0):
        assert gm.patient_loglik(theta, hi, 0, fu, fu, gm.ALIVE) == pytest.approx(
            gm.patient_loglik(theta, lo, 0, fu, fu, gm.ALIVE)
        )


def test_disease_death_without_recurrence_is_impossible() -> None:
    assert gm.patient_loglik(_theta(), _patient(), 0, 30.0, 30.0, gm.DEAD_DISEASE) == -np.inf


def test_gompertz_fit_follows_the_life_table() -> None:
    for sex in QX:
        law = gompertz_fit(sex)
        ages = np.asarray(LIFE_TABLE_AGES, float)
        mu = -np.log1p(-np.asarray(QX[sex]))
        keep = (ages >= 40) & (ages <= 85)
        ratio = law.hazard(ages[keep] + 0.5) / mu[keep]
        assert np.all((ratio > 0.75) & (ratio < 1.3)), (sex, ratio)
        assert 0.07 < law.b < 0.1  # mortality doubles every 7-10 years
    laws = background_laws()
    assert laws["male"].hazard(60.0) > laws["female"].hazard(60.0)


def test_priors_are_proper_and_drawn() -> None:
    mean, sd, uniform = gm.prior_arrays()
    draws = np.array([gm.draw_theta(np.random.default_rng(k)) for k in range(400)])
    normal = uniform == 0
    assert np.allclose(draws[:, normal].mean(0), mean[normal], atol=4 * sd[normal] / 20)
    cut = draws[:, gm.T_CUTOFF]
    assert cut.min() >= gm.CUTOFF_RANGE[0] and cut.max() <= gm.CUTOFF_RANGE[1]
    for row in draws[:5]:
        assert math.isfinite(gm.log_prior(row, mean, sd, uniform))
