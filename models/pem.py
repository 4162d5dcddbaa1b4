"""Bayesian piecewise-exponential (PEM) survival model, and its derived quantities.

``log hazard(patient i, interval j) = log_h0[j] + ((x_i - centre) / scale) . beta_std``: a
Poisson likelihood on the event counts of each cell (interval x covariate pattern, or
person-period row) with a ``log(exposure)`` offset. The covariates are centred and scaled inside
the model (``x_center``, ``x_scale`` are data), so the sampler sees standardised covariates
whatever their origin and unit: ``log_h0`` is the log baseline hazard at the centre, the prior is
on ``beta_std`` (the log HR per ``scale`` units), and ``beta = beta_std / scale`` (a
deterministic) is the log HR per unit of the covariate as given. The builder takes arrays and
returns a ``pm.Model`` whose data are ``pm.Data``, so one compiled model is refit on new data of
the same shapes.

The derived quantities (survival curves, RMST, median) are plain NumPy functions of the posterior
(or prior) draws; they apply to any array of draws with the interval on the last axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from scipy import sparse

from models.priors import Priors, effect_prior, effect_prior_as_data, log_baseline
from models.survival_data import (
    Cells,
    PersonPeriod,
    check_cuts,
    exposure_to,
    interval_labels,
    poisson_loglik,
)

LOG2 = float(np.log(2.0))


def model_coords(
    cuts: Sequence[float] | np.ndarray, covariate_names: Sequence[str], n_patterns: int
) -> dict[str, list]:
    """Named dims shared by the PEM and the competing-risk model."""
    labels = interval_labels(cuts)
    return {
        "interval": labels,
        "interval_step": labels[1:],
        "covariate": list(covariate_names),
        "cell_pattern": list(range(n_patterns)),
    }


def poisson_kernel(events: pt.TensorVariable, exposure: pt.TensorVariable, eta: pt.TensorVariable):
    """Poisson log-likelihood of counts with mean ``exposure * exp(eta)``, up to a constant.

    ``sum(events * eta - exposure * exp(eta))``: the log-pmf minus ``events * log(exposure) -
    log(events!)``, which does not depend on the parameters. Empty cells (exposure 0, no events)
    add exactly 0, with a clean gradient. Written out rather than as ``pm.Poisson`` because it is
    about three times faster to differentiate; the pointwise log-likelihood is computed from the
    full log-pmf afterwards (:func:`pointwise_loglik`).
    """
    return pt.sum(events * eta - exposure * pt.exp(eta))


def build_pem(
    cells: Cells,
    *,
    cuts: Sequence[float] | np.ndarray,
    covariate_names: Sequence[str],
    log_rate_center: float,
    priors: Priors | None = None,
    prior_as_data: bool = False,
    x_center: Sequence[float] | np.ndarray | None = None,
    x_scale: Sequence[float] | np.ndarray | None = None,
) -> pm.Model:
    """The PEM as a ``pm.Model``.

    Parameters
    ----------
    cells
        A grid of intervals x covariate patterns: collapsed
        (:func:`models.survival_data.collapse`) or one pattern per patient
        (:func:`models.survival_data.rows_as_cells`); the likelihood is the same up to a constant.
    cuts
        Interval starts (only their number and labels enter the model; the geometry is already
        in the exposures).
    covariate_names
        One name per column of ``cells.x`` (the ``covariate`` coord); may be empty.
    log_rate_center
        Log of the cohort's crude event rate (events per month): the prior centre of the
        baseline at the covariate centre.
    priors
        Prior settings (default :class:`models.priors.Priors`).
    prior_as_data
        Make the log-HR prior's scale and family data too
        (:func:`models.priors.effect_prior_as_data`), so one compiled model is refit under
        other priors (sensitivity analysis). Same prior; no prior predictive sampling.
    x_center, x_scale
        Per covariate, the value subtracted and the divisor (default 0 and 1: no centring);
        see :func:`covariate_transform`.

    Data containers (swap with ``pm.set_data`` or nutpie's ``with_data``): ``pattern_x``,
    ``x_center``, ``x_scale`` (if covariates), ``exposure``, ``events`` (interval x pattern),
    ``log_rate_center``.
    """
    priors = priors or Priors()
    n_intervals = len(check_cuts(cuts))
    n_cov = len(covariate_names)
    if cells.x.shape[1] != n_cov:
        raise ValueError("covariate_names must name every column of cells.x")
    coords = model_coords(cuts, covariate_names, cells.n_patterns)
    with pm.Model(coords=coords) as model:
        data = pem_data(cells, log_rate_center, x_center, x_scale)
        dims = ("interval", "cell_pattern")
        exposure = pm.Data("exposure", data["exposure"], dims=dims)
        events = pm.Data("events", data["events"], dims=dims)
        center = pm.Data("log_rate_center", data["log_rate_center"])
        log_h0 = log_baseline(priors, center, n_intervals)
        eta = log_h0[:, None]
        if n_cov:
            z = standardised_covariates(data)
            make_prior = effect_prior_as_data if prior_as_data else effect_prior
            beta_std = make_prior("beta_std", priors, "covariate")
            beta = per_unit_effects(beta_std, z[1])
            pm.Deterministic("hr", pt.exp(beta), dims="covariate")
            eta = eta + pt.dot(z[0], beta_std)[None, :]
        pm.Potential("loglik", poisson_kernel(events, exposure, eta))
    return model


def standardised_covariates(data: dict[str, np.ndarray]) -> tuple[pt.TensorVariable, ...]:
    """``pm.Data`` of the covariate patterns, centre and scale; returns the standardised
    patterns ``(x - centre) / scale`` (pattern x covariate) and the scale."""
    x = pm.Data("pattern_x", data["pattern_x"], dims=("cell_pattern", "covariate"))
    center = pm.Data("x_center", data["x_center"], dims="covariate")
    scale = pm.Data("x_scale", data["x_scale"], dims="covariate")
    return (x - center) / scale, scale


def per_unit_effects(beta_std: pt.TensorVariable, scale: pt.TensorVariable) -> pt.TensorVariable:
    """The deterministic ``beta``: log HR per unit of each covariate (``beta_std / scale``;
    the covariate is the first dim of ``beta_std``)."""
    dims = ("covariate",) if beta_std.ndim == 1 else ("covariate", "cause")
    s = scale if beta_std.ndim == 1 else scale[:, None]
    return pm.Deterministic("beta", beta_std / s, dims=dims)


def covariate_transform(
    p: int,
    x_center: Sequence[float] | np.ndarray | None,
    x_scale: Sequence[float] | np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Centre and scale of ``p`` covariates (default 0 and 1); scales must be positive."""
    center = np.zeros(p) if x_center is None else np.asarray(x_center, float).reshape(p)
    scale = np.ones(p) if x_scale is None else np.asarray(x_scale, float).reshape(p)
    if not (np.all(np.isfinite(center)) and np.all(np.isfinite(scale)) and np.all(scale > 0)):
        raise ValueError("x_center must be finite and x_scale finite and positive")
    return center, scale


def pem_data(
    cells: Cells,
    log_rate_center: float,
    x_center: Sequence[float] | np.ndarray | None = None,
    x_scale: Sequence[float] | np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The ``pm.Data`` values of :func:`build_pem` for new data (for ``with_data``)."""
    data = {
        "exposure": np.asarray(cells.exposure, float),
        "events": np.asarray(cells.events, float),
        "log_rate_center": np.asarray(float(log_rate_center)),
    }
    return {**data, **covariate_data(cells, x_center, x_scale)}


def covariate_data(
    cells: Cells,
    x_center: Sequence[float] | np.ndarray | None,
    x_scale: Sequence[float] | np.ndarray | None,
) -> dict[str, np.ndarray]:
    """``pattern_x``, ``x_center`` and ``x_scale`` (none without covariates)."""
    p = cells.x.shape[1]
    if not p:
        return {}
    center, scale = covariate_transform(p, x_center, x_scale)
    return {"pattern_x": np.asarray(cells.x, float), "x_center": center, "x_scale": scale}


def linear_predictor(beta: np.ndarray | None, x: np.ndarray) -> np.ndarray:
    """``x . beta`` for draws ``beta`` (..., p) and rows ``x`` (m, p): shape (..., m)."""
    x = np.asarray(x, float)
    if beta is None or x.shape[-1] == 0:
        lead = () if beta is None else beta.shape[:-1]
        return np.zeros((*lead, x.shape[0]))
    _check_width(beta, x)
    return np.einsum("...p,mp->...m", beta, x)


def _check_width(beta: np.ndarray, x: np.ndarray) -> None:
    if beta.shape[-1] != x.shape[-1]:
        raise ValueError(f"beta has {beta.shape[-1]} covariates, x has {x.shape[-1]}")


def cumulative_hazard(log_h: np.ndarray, cuts: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Cumulative hazard at ``times`` for log hazards ``log_h`` (..., J): shape (..., T)."""
    return np.exp(log_h) @ exposure_to(cuts, times).T


def survival_curves(
    log_h0: np.ndarray,
    beta: np.ndarray | None,
    profiles: np.ndarray,
    cuts: np.ndarray,
    times: np.ndarray,
) -> np.ndarray:
    """S(t | x) for each covariate profile: shape (..., n_profiles, n_times)."""
    h0 = cumulative_hazard(log_h0, cuts, times)  # (..., T)
    risk = np.exp(linear_predictor(beta, profiles))  # (..., m)
    if risk.ndim < h0.ndim:
        risk = np.broadcast_to(risk, (*h0.shape[:-1], risk.shape[-1]))
    return np.exp(-h0[..., None, :] * risk[..., :, None])


def standardized_survival(
    log_h0: np.ndarray, beta: np.ndarray | None, x: np.ndarray, cuts: np.ndarray, times: np.ndarray
) -> np.ndarray:
    """The average of the patients' predicted survival curves (rows of ``x``): (..., T).

    ``x`` must be on the scale of ``log_h0`` (rows minus the centre when ``log_h0`` is the
    baseline at the covariate centre). Each distinct row is computed once.
    """
    h0 = cumulative_hazard(log_h0, cuts, times)  # (..., T)
    rows, counts = unique_rows(x)
    out = 0.0
    for row, count in zip(rows, counts, strict=True):
        risk = np.exp(linear_predictor(beta, row[None, :]))  # (..., 1)
        out = out + count * np.exp(-h0 * risk)
    return np.asarray(out) / counts.sum()


def unique_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of ``x`` (n, p) and how often each occurs (one empty row when p = 0)."""
    x = np.asarray(x, float)
    if x.shape[1] == 0:
        return np.zeros((1, 0)), np.array([x.shape[0]])
    return np.unique(x, axis=0, return_counts=True)


def rmst(log_h: np.ndarray, cuts: np.ndarray, horizon: float) -> np.ndarray:
    """Restricted mean survival time to ``horizon`` (exact for piecewise-constant hazards).

    ``log_h`` (..., J) is the log hazard of one profile (baseline plus its linear predictor).
    """
    width = exposure_to(cuts, np.array([horizon]))[0]
    h = np.exp(log_h)
    hw = h * width
    h_start = np.cumsum(hw, axis=-1) - hw
    return np.sum(np.exp(-h_start) * -np.expm1(-hw) / h, axis=-1)


def median_survival(log_h: np.ndarray, cuts: np.ndarray, cap: float) -> np.ndarray:
    """Median survival time, capped at ``cap`` months (``cap`` where S(cap) > 0.5).

    The uncapped median is often beyond follow-up, where only the prior and the last interval's
    extrapolated hazard inform it; capping keeps the posterior well defined.
    """
    c = check_cuts(cuts)
    width = exposure_to(c, np.array([cap]))[0]
    h = np.exp(log_h)
    h_end = np.cumsum(h * width, axis=-1)
    h_start = h_end - h * width
    inside = (h_start <= LOG2) & (h_end > LOG2) & (width > 0)
    t = c + (LOG2 - h_start) / h
    med = np.sum(np.where(inside, t, 0.0), axis=-1)
    return np.where(h_end[..., -1] <= LOG2, cap, np.minimum(med, cap))


def row_log_rate(log_h0: np.ndarray, beta: np.ndarray | None, pp: PersonPeriod) -> np.ndarray:
    """Log hazard of each person-period row for each draw: shape (..., n_rows)."""
    eta = log_h0[..., pp.interval]
    if beta is not None and pp.x.shape[1]:
        _check_width(beta, pp.x)
        eta = eta + np.einsum("...p,rp->...r", beta, pp.x)
    return eta


def sum_by_patient(row_values: np.ndarray, patient: np.ndarray, n_patients: int) -> np.ndarray:
    """Sum (..., n_rows) over each patient's rows: shape (..., n_patients)."""
    lead = row_values.shape[:-1]
    flat = row_values.reshape(-1, row_values.shape[-1])
    onehot = sparse.csr_matrix(
        (np.ones(patient.size), (np.arange(patient.size), patient)),
        shape=(patient.size, n_patients),
    )
    return np.asarray((onehot.T @ flat.T).T).reshape(*lead, n_patients)


def pointwise_loglik(
    log_h0: np.ndarray, beta: np.ndarray | None, pp: PersonPeriod, n_patients: int
) -> np.ndarray:
    """Per-patient log-likelihood (Poisson over the patient's rows): shape (..., n_patients).

    Summing over each patient's person-period rows makes LOO leave out a patient.
    """
    eta = row_log_rate(log_h0, beta, pp)
    ll = poisson_loglik((pp.event > 0).astype(float), pp.exposure, eta)
    return sum_by_patient(ll, pp.patient, n_patients)
