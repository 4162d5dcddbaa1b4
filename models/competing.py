"""Cause-specific piecewise-exponential hazards for competing risks, and their CIFs.

``log h_k(t | x) = log_h0[k, interval] + ((x - centre) / scale) . beta_std[:, k]`` for causes
``k = 1..K``, a Poisson likelihood on each cell's event count per cause with a ``log(exposure)``
offset. As in :mod:`models.pem`, covariates are centred and scaled inside the model: ``log_h0``
is at the covariate centre and ``beta = beta_std / scale`` is the log HR per unit.

* Baselines borrow strength: one shared random-walk shape, a level per cause centred on the cause's
  crude rate, and small per-cause random-walk deviations (``models.priors.log_baseline``).
* Effects are partially pooled across causes: for covariate ``p``,
  ``beta_std[p, k] = s * (sqrt(rho_p) * z_p + sqrt(1 - rho_p) * z_pk)``, ``z ~ Normal(0, 1)``,
  ``rho_p ~ Beta(2, 2)``. Each ``beta_std[p, k]`` keeps the single-event prior Normal(0, s) while
  ``rho_p`` (the share of variance common to the causes) shrinks causes with few events towards
  the covariate's common effect. With one cause the model is the plain PEM (same parameters in the
  same order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from models.pem import (
    covariate_data,
    model_coords,
    per_unit_effects,
    poisson_kernel,
    standardised_covariates,
    sum_by_patient,
    unique_rows,
)
from models.priors import Priors, effect_prior, log_baseline
from models.survival_data import Cells, PersonPeriod, check_cuts, exposure_to, poisson_loglik


def build_competing(
    cells: Cells,
    *,
    cuts: Sequence[float] | np.ndarray,
    covariate_names: Sequence[str],
    cause_names: Sequence[str],
    log_rate_center: np.ndarray,
    priors: Priors | None = None,
    x_center: Sequence[float] | np.ndarray | None = None,
    x_scale: Sequence[float] | np.ndarray | None = None,
) -> pm.Model:
    """Cause-specific PEM as a ``pm.Model`` (dims ``cause``, ``interval``, ``covariate``).

    Parameters
    ----------
    cells
        A grid with ``events`` of shape ``(J, m, K)`` (``collapse(..., n_causes=K)``).
    log_rate_center
        Log crude rate of each cause (length ``K``).
    x_center, x_scale
        Per covariate, the centre and scale (default 0 and 1), as in
        :func:`models.pem.build_pem`.

    Data containers: ``pattern_x``, ``x_center``, ``x_scale`` (if covariates), ``exposure``
    (interval x pattern),
    ``events`` (cause x interval x pattern), ``log_rate_center`` (cause).
    """
    priors = priors or Priors()
    n_intervals = len(check_cuts(cuts))
    n_cov, n_causes = len(covariate_names), len(cause_names)
    if np.ndim(cells.events) != 3 or np.shape(cells.events)[2] != n_causes:
        raise ValueError("cells.events must have one column per cause")
    coords = model_coords(cuts, covariate_names, cells.n_patterns)
    coords["cause"] = list(cause_names)
    with pm.Model(coords=coords) as model:
        data = competing_data(cells, log_rate_center, x_center, x_scale)
        exposure = pm.Data("exposure", data["exposure"], dims=("interval", "cell_pattern"))
        events = pm.Data("events", data["events"], dims=("cause", "interval", "cell_pattern"))
        center = pm.Data("log_rate_center", data["log_rate_center"], dims="cause")
        log_h0 = log_baseline(priors, center, n_intervals, n_causes=n_causes)
        eta = log_h0[:, :, None]  # (cause, interval, pattern)
        if n_cov:
            z, scale = standardised_covariates(data)
            beta_std = cause_effects(priors, n_causes)
            beta = per_unit_effects(beta_std, scale)
            pm.Deterministic("hr", pt.exp(beta), dims=("covariate", "cause"))
            eta = eta + pt.dot(z, beta_std).T[:, None, :]
        pm.Potential("loglik", poisson_kernel(events, exposure[None, :, :], eta))
    return model


def cause_effects(priors: Priors, n_causes: int) -> pt.TensorVariable:
    """Log-HRs per scale unit ``beta_std`` (covariate, cause), partially pooled across causes."""
    dims = ("covariate", "cause")
    if n_causes == 1:
        return effect_prior("beta_std", priors, dims)
    rho = pm.Beta("effect_rho", 2.0, 2.0, dims="covariate")
    common = effect_prior("beta_common_z", replace(priors, effect_sd=1.0), "covariate")
    own = pm.Normal("beta_cause_z", 0.0, 1.0, dims=dims)
    beta = priors.effect_sd * (
        pt.sqrt(rho)[:, None] * common[:, None] + pt.sqrt(1.0 - rho)[:, None] * own
    )
    return pm.Deterministic("beta_std", beta, dims=dims)


def competing_data(
    cells: Cells,
    log_rate_center: np.ndarray,
    x_center: Sequence[float] | np.ndarray | None = None,
    x_scale: Sequence[float] | np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The ``pm.Data`` values of :func:`build_competing` for new data (for ``with_data``)."""
    data = {
        "exposure": np.asarray(cells.exposure, float),
        "events": np.moveaxis(np.asarray(cells.events, float), -1, 0),
        "log_rate_center": np.asarray(log_rate_center, float),
    }
    return {**data, **covariate_data(cells, x_center, x_scale)}


def cause_log_rates(time: np.ndarray, event: np.ndarray, n_causes: int) -> np.ndarray:
    """Log crude rate of each cause (half an event where a cause has none)."""
    exposure = float(np.sum(time))
    counts = np.array([max(float(np.sum(event == k + 1)), 0.5) for k in range(n_causes)])
    return np.log(counts / exposure)


# --------------------------------------------------------------------------- derived quantities


def cause_log_hazard(log_h0: np.ndarray, beta: np.ndarray | None, x: np.ndarray) -> np.ndarray:
    """Log hazards (..., K, J) of one covariate row ``x`` (p,), from draws of ``log_h0``
    (..., K, J) and ``beta`` (..., p, K)."""
    if beta is None or x.size == 0:
        return log_h0
    if beta.shape[-2] != x.size:
        raise ValueError("beta and x have different numbers of covariates")
    return log_h0 + np.einsum("...pk,p->...k", beta, x)[..., None]


def cif_curves(log_h: np.ndarray, cuts: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Cumulative incidence of each cause at ``times``: (..., K, T), exact for piecewise hazards.

    ``CIF_k(t) = sum_j (h_kj / h_j) S(c_j) (1 - exp(-h_j e_j(t)))`` with ``h_j`` the all-cause
    hazard of interval ``j`` and ``e_j(t)`` the time spent in it by ``t``.
    """
    c = check_cuts(cuts)
    h = np.exp(log_h)  # (..., K, J)
    total = h.sum(axis=-2)  # (..., J)
    width = np.append(np.diff(c), 0.0)  # the open last interval starts no later interval
    hw = total * width
    s_start = np.exp(-(np.cumsum(hw, axis=-1) - hw))  # (..., J)
    spent = exposure_to(c, times)  # (T, J)
    inside = -np.expm1(-total[..., None, :] * spent)  # (..., T, J)
    share = h / total[..., None, :]  # (..., K, J)
    return np.einsum("...kj,...tj->...kt", share * s_start[..., None, :], inside)


def standardized_cif(
    log_h0: np.ndarray, beta: np.ndarray | None, x: np.ndarray, cuts: np.ndarray, times: np.ndarray
) -> np.ndarray:
    """The average of the patients' predicted CIFs (rows of ``x``, on the scale of ``log_h0``:
    minus the centre when ``log_h0`` is the baseline at the covariate centre): (..., K, T)."""
    patterns, counts = unique_rows(x)
    out = 0.0
    for row, count in zip(patterns, counts, strict=True):
        out = out + count * cif_curves(cause_log_hazard(log_h0, beta, row), cuts, times)
    return np.asarray(out) / counts.sum()


def standardized_net_survival(
    log_h0: np.ndarray,
    beta: np.ndarray | None,
    x: np.ndarray,
    cuts: np.ndarray,
    times: np.ndarray,
    causes: Sequence[int],
) -> np.ndarray:
    """Average over patients of ``exp(-sum_{k in causes} H_k(t | x_i))``: (..., T).

    With ``causes`` the recurrence types this is recurrence-free survival with deaths without
    recurrence censored (the cohort's RFS end point).
    """
    patterns, counts = unique_rows(x)
    spent = exposure_to(cuts, times)  # (T, J)
    out = 0.0
    for row, count in zip(patterns, counts, strict=True):
        h = np.exp(cause_log_hazard(log_h0, beta, row))[..., list(causes), :].sum(axis=-2)
        out = out + count * np.exp(-(h @ spent.T))
    return np.asarray(out) / counts.sum()


def pointwise_loglik(
    log_h0: np.ndarray, beta: np.ndarray | None, pp: PersonPeriod, n_patients: int
) -> np.ndarray:
    """Per-patient log-likelihood over the patient's intervals and causes: (..., n_patients)."""
    eta = np.moveaxis(log_h0[..., pp.interval], -1, -2)  # (..., rows, K)
    if beta is not None and pp.x.shape[1]:
        if beta.shape[-2] != pp.x.shape[1]:
            raise ValueError("beta and x have different numbers of covariates")
        eta = eta + np.einsum("rp,...pk->...rk", pp.x, beta)
    n_causes = eta.shape[-1]
    events = np.stack([(pp.event == k + 1).astype(float) for k in range(n_causes)], axis=1)
    ll = poisson_loglik(events, pp.exposure[:, None], eta).sum(axis=-1)
    return sum_by_patient(ll, pp.patient, n_patients)
