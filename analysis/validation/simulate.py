"""An independent simulator of survival cohorts, for calibration (SBC) and benchmarks.

Written without the model code (``models/``) on purpose: simulation-based calibration checks that
the model's likelihood and prior agree with a data-generating process written separately. What
is shared is the *specification*, documented in :class:`models.priors.Priors` and
``models/pem.py``: piecewise-constant hazards on intervals ``[c_j, c_{j+1})`` (the last one
open-ended), ``log h(t | x) = log h0[j] + x . beta``; competing risks with one such hazard per
cause. The prior settings are read as plain attributes (``effect_family``, ``effect_sd``,
``effect_nu``, ``baseline``, ``level_sd``, ``step_scale``, ``cause_step_scale``); the draws are
made here with NumPy.

Times are drawn by inverting the cumulative hazard: ``E ~ Exponential(1)``, ``T = H^{-1}(E)``;
with competing causes, the first-event time from the total hazard and the cause with probability
proportional to the cause-specific hazards of the interval the event falls in. Censoring is
independent and uniform on ``[censor_low, censor_high]`` months (staggered entry, one analysis
date), like a retrospective cohort followed up to one cut-off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

CENSOR_LOW = 6.0
CENSOR_HIGH = 240.0
"""Default follow-up of a simulated patient: uniform between 6 months and 20 years (the paper's
cohort was operated 1993-2012 and analysed in 2015, with losses to follow-up)."""


@dataclass(frozen=True)
class Cohort:
    """A simulated cohort.

    Attributes
    ----------
    time
        Observed months (first event or censoring), all > 0.
    event
        0 censored, else the event code (1, or the cause 1..K).
    x
        Covariates, shape ``(n, p)``.
    """

    time: np.ndarray
    event: np.ndarray
    x: np.ndarray

    @property
    def n(self) -> int:
        return int(self.time.size)


# --------------------------------------------------------------------------- priors


def draw_effects(rng: np.random.Generator, priors: Any, size: int | tuple[int, ...]) -> np.ndarray:
    """Log hazard ratios from the effect prior: Normal(0, sd) or StudentT(nu, 0, sd)."""
    if priors.effect_family == "normal":
        return rng.normal(0.0, priors.effect_sd, size)
    if priors.effect_family == "student_t":
        return priors.effect_sd * rng.standard_t(priors.effect_nu, size)
    raise ValueError(f"unknown effect family {priors.effect_family!r}")


def draw_baseline(
    rng: np.random.Generator, priors: Any, n_intervals: int, log_rate_center: float
) -> dict[str, np.ndarray]:
    """Log baseline hazards per interval from the baseline prior.

    Random walk: ``log h0[0] ~ Normal(center, level_sd)``, ``sigma ~ HalfNormal(step_scale)``,
    ``log h0[j] = log h0[j-1] + Normal(0, sigma)``. Independent: each interval
    ``~ Normal(center, level_sd)``. Returns ``log_h0`` and, for the random walk with more than one
    interval, ``rw_sigma``.
    """
    if priors.baseline == "independent":
        return {"log_h0": rng.normal(log_rate_center, priors.level_sd, n_intervals)}
    if priors.baseline != "random_walk":
        raise ValueError(f"unknown baseline {priors.baseline!r}")
    start = rng.normal(log_rate_center, priors.level_sd)
    if n_intervals == 1:
        return {"log_h0": np.array([start])}
    sigma = abs(rng.normal(0.0, priors.step_scale))
    steps = rng.normal(0.0, sigma, n_intervals - 1)
    return {
        "log_h0": start + np.concatenate([[0.0], np.cumsum(steps)]),
        "rw_sigma": np.array(sigma),
    }


def draw_pem_parameters(
    rng: np.random.Generator,
    priors: Any,
    n_intervals: int,
    n_covariates: int,
    log_rate_center: float,
) -> dict[str, np.ndarray]:
    """One draw of the PEM's parameters from its prior: ``log_h0``, ``rw_sigma``, ``beta``."""
    params = draw_baseline(rng, priors, n_intervals, log_rate_center)
    if n_covariates:
        params["beta"] = draw_effects(rng, priors, n_covariates)
    return params


# --------------------------------------------------------------------------- times


def interval_widths(cuts: np.ndarray, horizon: float = np.inf) -> np.ndarray:
    """Widths of the intervals ``[c_j, c_{j+1})``; the last is open-ended (``inf``)."""
    c = np.asarray(cuts, float)
    if c[0] != 0.0 or np.any(np.diff(c) <= 0):
        raise ValueError("cuts must start at 0 and increase strictly")
    return np.diff(np.append(c, horizon))


def piecewise_exponential_times(
    rng: np.random.Generator, log_hazard: np.ndarray, cuts: np.ndarray
) -> np.ndarray:
    """Event times with hazard ``exp(log_hazard[i, j])`` on interval ``j`` for patient ``i``.

    Inverse-transform sampling: with ``E ~ Exponential(1)``, the time is where the cumulative
    hazard reaches ``E``.
    """
    c = np.asarray(cuts, float)
    h = np.exp(np.asarray(log_hazard, float))
    n = h.shape[0]
    widths = interval_widths(c)[:-1]
    # cumulative hazard at the start of each interval, shape (n, J)
    h_start = np.zeros_like(h)
    if c.size > 1:
        h_start[:, 1:] = np.cumsum(h[:, :-1] * widths[None, :], axis=1)
    e = rng.exponential(1.0, n)
    j = np.sum(e[:, None] >= h_start, axis=1) - 1
    rows = np.arange(n)
    t = c[j] + (e - h_start[rows, j]) / h[rows, j]
    return np.maximum(t, np.nextafter(0.0, 1.0))


def interval_of(time: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Index of the interval ``[c_j, c_{j+1})`` containing each time."""
    return np.searchsorted(np.asarray(cuts, float), np.asarray(time, float), side="right") - 1


def uniform_censoring(
    rng: np.random.Generator, n: int, low: float = CENSOR_LOW, high: float = CENSOR_HIGH
) -> np.ndarray:
    """Independent censoring times, uniform on ``[low, high]`` months."""
    return rng.uniform(low, high, n)


def binary_covariates(
    rng: np.random.Generator, n: int, prevalences: tuple[float, ...] | list[float]
) -> np.ndarray:
    """Independent 0/1 covariates with the given prevalences, shape ``(n, p)``."""
    p = np.asarray(prevalences, float)
    return (rng.random((n, p.size)) < p[None, :]).astype(float)


# --------------------------------------------------------------------------- cohorts


def simulate_pem(
    rng: np.random.Generator,
    log_h0: np.ndarray,
    beta: np.ndarray | None,
    x: np.ndarray,
    cuts: np.ndarray,
    censor: tuple[float, float] = (CENSOR_LOW, CENSOR_HIGH),
) -> Cohort:
    """A cohort from the PEM with baseline ``log_h0`` (J,) and log-HRs ``beta`` (p,)."""
    x = np.asarray(x, float).reshape(len(x), -1)
    lp = x @ np.asarray(beta, float) if beta is not None and x.shape[1] else np.zeros(len(x))
    log_hazard = np.asarray(log_h0, float)[None, :] + lp[:, None]
    t_event = piecewise_exponential_times(rng, log_hazard, cuts)
    t_cens = uniform_censoring(rng, len(x), *censor)
    event = (t_event <= t_cens).astype(int)
    return Cohort(time=np.minimum(t_event, t_cens), event=event, x=x)


def simulate_competing(
    rng: np.random.Generator,
    log_hazards: np.ndarray,
    cuts: np.ndarray,
    x: np.ndarray,
    censor: tuple[float, float] = (CENSOR_LOW, CENSOR_HIGH),
) -> Cohort:
    """A competing-risks cohort: ``log_hazards`` has shape ``(n, K, J)`` (patient, cause, interval).

    The first event comes from the total hazard; its cause is drawn with probability
    ``h_k / sum_k h_k`` in the interval where it happens. Codes: 0 censored, 1..K cause.
    """
    lh = np.asarray(log_hazards, float)
    n, k, _ = lh.shape
    total = np.log(np.exp(lh).sum(axis=1))  # (n, J)
    t_event = piecewise_exponential_times(rng, total, cuts)
    j = interval_of(t_event, cuts)
    h = np.exp(lh[np.arange(n), :, j])  # (n, K)
    prob = h / h.sum(axis=1, keepdims=True)
    u = rng.random(n)
    cause = 1 + np.minimum(np.sum(np.cumsum(prob, axis=1) < u[:, None], axis=1), k - 1)
    t_cens = uniform_censoring(rng, n, *censor)
    observed = t_event <= t_cens
    return Cohort(
        time=np.minimum(t_event, t_cens),
        event=np.where(observed, cause, 0).astype(int),
        x=np.asarray(x, float).reshape(n, -1),
    )


def large_pem_cohort(
    n: int,
    seed: int,
    cuts: np.ndarray,
    *,
    prevalences: tuple[float, ...] = (0.4, 0.3),
    log_h0: np.ndarray | None = None,
    beta: np.ndarray | None = None,
) -> Cohort:
    """A PEM cohort of any size with fixed, plausible parameters (for the scaling benchmark).

    Default baseline: about 0.7% per month (roughly 65% survival at 5 years), falling by a
    third after two years; log-HRs 0.7 and -0.4.
    """
    rng = np.random.default_rng(seed)
    c = np.asarray(cuts, float)
    if log_h0 is None:
        log_h0 = np.where(c < 24.0, np.log(0.007), np.log(0.007 * 2 / 3))
    if beta is None:
        beta = np.array([0.7, -0.4])[: len(prevalences)]
    x = binary_covariates(rng, n, prevalences)
    return simulate_pem(rng, log_h0, beta, x, c)
