"""Missing binary covariates marginalised inside the PEM and competing-risk likelihoods.

A patient whose binary covariates ``x_k, k in M_i`` are unknown (NaN) contributes the mixture over
their ``2^|M_i|`` completions ``c``::

    p(T_i, x_obs | z_i) = sum_c p(T_i | x_obs, c) * prod_{k in M_i} pi_ik^c_k (1 - pi_ik)^(1 - c_k)
                          * prod_{k imputed, observed} Bernoulli(x_ik | pi_ik)

with a covariate model ``pi_ik = P(x_ik = 1 | z_i) = logistic(alpha_k + z_i . gamma_k)`` for every
*imputed* covariate (one that may be missing); ``z`` are predictors observed for every patient
(optional; none by default: one prevalence per covariate). Assumptions:

* missing at random given what is observed (the outcome, the observed covariates, ``z``);
* the imputed covariates are independent of each other given ``z``, and their distribution does
  not depend on the other (non-imputed) covariates except through ``z`` (put an observed covariate
  in ``z`` when it predicts one that is missing);
* the imputed covariates are binary (0/1); the others may take any value.

The observed values of each imputed covariate inform ``alpha``/``gamma`` through their Bernoulli
likelihood, so the covariate model is estimated together with the hazards. The sum over
completions is a ``logsumexp``: no discrete parameters, NUTS samples everything.

Speed: complete cases stay collapsed in interval x covariate-pattern cells (sufficient statistics,
as in :mod:`models.pem`); only the incomplete patients get per-patient exposures and events per
interval, times their completions. The Bernoulli part is collapsed per distinct ``z`` row.

Shapes: every data container is ``pm.Data``; nutpie 0.16's ``with_data`` accepts arrays of other
lengths (more or fewer incomplete patients, completions, ``z`` rows) because no stored variable's
shape depends on them, so one compiled model refits any data set with the same covariates,
imputed columns, predictors, intervals and causes. Quantities per patient (the imputed values'
posterior, the pointwise log-likelihood) are NumPy functions of the draws, computed afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from scipy.special import gammaln, logsumexp, xlogy

from models.competing import cause_effects, competing_data
from models.competing import pointwise_loglik as competing_pointwise_loglik
from models.pem import model_coords, pem_data, per_unit_effects, poisson_kernel
from models.priors import Priors, effect_prior, log_baseline
from models.survival_data import (
    Cells,
    binary_patterns,
    check_cuts,
    collapse,
    expand,
    rows_as_cells,
)

MAX_MISSING_PER_PATIENT = 10
"""A patient with more unknown covariates would need over 1024 completions: refused."""
MAX_GRID_COVARIATES = 8
"""Complete cases of binary covariates go on the fixed grid of all 0/1 patterns up to this many."""


@dataclass(frozen=True)
class CovariatePriors:
    """Priors of the covariate model ``logit P(x_k = 1 | z) = alpha_k + z . gamma_k``.

    Attributes
    ----------
    intercept_sd
        ``alpha_k ~ Normal(0, intercept_sd)``: 1.5 puts 95% of the prevalence in about 0.05-0.95.
    slope_sd
        ``gamma_qk ~ Normal(0, slope_sd)`` (log odds ratio per unit of ``z_q``; give ``z`` a unit
        scale, e.g. 0/1 or standardised).
    """

    intercept_sd: float = 1.5
    slope_sd: float = 1.0

    def __post_init__(self) -> None:
        for name in ("intercept_sd", "slope_sd"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")

    def describe(self) -> str:
        """One line for reports."""
        return (
            f"logit P(x_k = 1 | z) = alpha_k + z . gamma_k; alpha ~ Normal(0, "
            f"{self.intercept_sd:g}), gamma ~ Normal(0, {self.slope_sd:g})"
        )


@dataclass(frozen=True)
class MissingLayout:
    """A data set with missing binary covariates, laid out for the imputed likelihood.

    Attributes
    ----------
    time, event, x, z
        The inputs: months, event codes, covariates ``(n, p)`` with NaN where unknown,
        predictors ``(n, q)`` of the covariate model.
    cuts
        Interval starts.
    n_causes
        ``None`` for one event type (PEM), else the number of causes ``K``.
    imputed
        Column indices of ``x`` that have a covariate model (may be missing).
    complete, incomplete
        Row indices of the complete cases and of the patients with a missing value.
    cells
        The complete cases collapsed on intervals x covariate patterns.
    exposure, events
        Incomplete patients: months at risk ``(P, J)`` and events ``(P, K', J)`` (``K' = 1``
        for the PEM) per interval.
    completion_x, completion_valid
        Their completions ``(P, C, p)``, ``C = 2^(most values missing in one patient)``; a
        patient with fewer missing values fills the rest with invalid (``False``) copies.
    missing
        Which imputed covariates each incomplete patient lacks, ``(P, len(imputed))``.
    z_rows, ones, zeros
        The covariate model's Bernoulli likelihood collapsed per distinct row of ``z``: the rows
        ``(R, q)`` and, per imputed covariate, the observed ones and zeros ``(R, m)``.
    """

    time: np.ndarray
    event: np.ndarray
    x: np.ndarray
    z: np.ndarray
    cuts: np.ndarray
    n_causes: int | None
    imputed: tuple[int, ...]
    complete: np.ndarray
    incomplete: np.ndarray
    cells: Cells
    exposure: np.ndarray
    events: np.ndarray
    completion_x: np.ndarray
    completion_valid: np.ndarray
    missing: np.ndarray
    z_rows: np.ndarray
    ones: np.ndarray
    zeros: np.ndarray

    @property
    def n(self) -> int:
        return int(self.time.size)

    @property
    def n_predictors(self) -> int:
        return int(self.z.shape[1])

    @property
    def n_missing_values(self) -> int:
        return int(self.missing.sum())


# --------------------------------------------------------------------------- data


def missing_counts(
    x: np.ndarray, covariate_names: Sequence[str], mode: str = "impute"
) -> dict[str, object]:
    """What a fit does with missing covariates: rows used, values imputed per covariate.

    Parameters
    ----------
    x
        Covariates ``(n, p)``, NaN where unknown.
    covariate_names
        One name per column.
    mode
        ``"impute"`` (every row used, each NaN marginalised) or ``"drop"`` (complete cases).

    Returns
    -------
    dict
        ``missing`` (mode), ``rows`` (input rows), ``rows_complete``, ``rows_used``,
        ``rows_dropped``, ``values_missing`` and ``values_imputed`` (per covariate name).
    """
    if mode not in ("impute", "drop"):
        raise ValueError("mode must be 'impute' or 'drop'")
    x = _as_matrix(x)
    names = list(covariate_names)
    if len(names) != x.shape[1]:
        raise ValueError(f"{len(names)} covariate names for {x.shape[1]} columns")
    nan = np.isnan(x)
    complete = int((~nan.any(axis=1)).sum())
    missing = {name: int(nan[:, j].sum()) for j, name in enumerate(names)}
    impute = mode == "impute"
    return {
        "missing": mode,
        "rows": int(x.shape[0]),
        "rows_complete": complete,
        "rows_used": int(x.shape[0]) if impute else complete,
        "rows_dropped": 0 if impute else int(x.shape[0]) - complete,
        "values_missing": missing,
        "values_imputed": dict(missing) if impute else dict.fromkeys(names, 0),
    }


def missing_layout(
    time: np.ndarray,
    event: np.ndarray,
    x: np.ndarray,
    cuts: Sequence[float] | np.ndarray,
    *,
    z: np.ndarray | None = None,
    n_causes: int | None = None,
    imputed: Sequence[int] | None = None,
) -> MissingLayout:
    """Lay out a data set with missing binary covariates for :func:`build_imputed`.

    Parameters
    ----------
    time, event
        Months (> 0) and event codes (0 censored; 1, or 1..K causes).
    x
        Covariates ``(n, p)``, ``p >= 1``, NaN where unknown.
    cuts
        Interval starts (0 first).
    z
        Predictors of the covariate model ``(n, q)``, observed for every patient; ``None``:
        intercept only.
    n_causes
        ``None``: one event type (PEM). ``K``: cause-specific hazards of codes 1..K.
    imputed
        Columns of ``x`` given a covariate model (must be binary; NaN allowed only there).
        Default: the columns with a NaN. Fixing it keeps the model structure fixed across data
        sets (e.g. simulation replicates in which a column happens to be complete).
    """
    c = check_cuts(cuts)
    t = np.asarray(time, float)
    e = np.asarray(event, int)
    x = _as_matrix(x)
    n, p = x.shape
    if t.shape != (n,) or e.shape != (n,):
        raise ValueError("time, event and x must have one row per patient")
    if p == 0:
        raise ValueError("no covariates: nothing to impute")
    z = np.zeros((n, 0)) if z is None else _as_matrix(z)
    if z.shape[0] != n:
        raise ValueError("z must have one row per patient")
    if not np.all(np.isfinite(z)):
        raise ValueError("z must be observed (finite) for every patient")
    nan = np.isnan(x)
    cols = tuple(int(k) for k in (np.flatnonzero(nan.any(axis=0)) if imputed is None else imputed))
    _check_imputed(x, cols)
    if n_causes is not None and (e.max(initial=0) > n_causes or e.min(initial=0) < 0):
        raise ValueError(f"event codes must be 0..{n_causes}")
    rows_nan = nan.any(axis=1)
    complete = np.flatnonzero(~rows_nan)
    incomplete = np.flatnonzero(rows_nan)
    n_intervals = len(c)
    pp = expand(t[complete], e[complete], x[complete], c)
    binary = np.all(np.isin(x[complete], (0.0, 1.0)))
    patterns = binary_patterns(p) if binary and p <= MAX_GRID_COVARIATES else None
    cells = collapse(pp, n_intervals, patterns, n_causes)
    exposure, events = _incomplete_counts(t[incomplete], e[incomplete], c, n_causes)
    completion_x, valid = _completions(x[incomplete])
    z_rows, ones, zeros = _covariate_counts(x[:, list(cols)], z)
    return MissingLayout(
        time=t,
        event=e,
        x=x,
        z=z,
        cuts=c,
        n_causes=n_causes,
        imputed=cols,
        complete=complete,
        incomplete=incomplete,
        cells=cells,
        exposure=exposure,
        events=events,
        completion_x=completion_x,
        completion_valid=valid,
        missing=nan[incomplete][:, list(cols)],
        z_rows=z_rows,
        ones=ones,
        zeros=zeros,
    )


def _as_matrix(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, float)
    if x.ndim != 2:
        raise ValueError("covariates must be a matrix (patients x covariates)")
    return x


def _check_imputed(x: np.ndarray, cols: tuple[int, ...]) -> None:
    p = x.shape[1]
    if len(set(cols)) != len(cols) or any(not 0 <= k < p for k in cols):
        raise ValueError(f"imputed columns must be distinct indices in 0..{p - 1}")
    nan = np.isnan(x)
    others = [k for k in range(p) if k not in cols]
    if nan[:, others].any():
        raise ValueError("a covariate with missing values is not among the imputed columns")
    if np.isinf(x).any():
        raise ValueError("covariates must be finite or NaN")
    values = x[:, list(cols)]
    if not np.all(np.isin(values[~np.isnan(values)], (0.0, 1.0))):
        raise ValueError("imputed covariates must be binary (0/1, NaN where missing)")
    if nan.sum(axis=1).max(initial=0) > MAX_MISSING_PER_PATIENT:
        raise ValueError(f"a patient misses more than {MAX_MISSING_PER_PATIENT} covariates")


def _incomplete_counts(
    time: np.ndarray, event: np.ndarray, cuts: np.ndarray, n_causes: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-patient exposure ``(P, J)`` and events ``(P, K', J)`` of the incomplete patients."""
    n_intervals = len(cuts)
    k = 1 if n_causes is None else n_causes
    if time.size == 0:
        return np.zeros((0, n_intervals)), np.zeros((0, k, n_intervals))
    code = (event > 0).astype(int) if n_causes is None else event
    grid = rows_as_cells(expand(time, code, np.zeros((time.size, 0)), cuts), n_intervals, k)
    return grid.exposure.T.copy(), np.moveaxis(grid.events, (0, 1, 2), (2, 0, 1)).copy()


def _completions(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every 0/1 completion of each row's NaNs: ``(P, C, p)`` values and ``(P, C)`` validity."""
    n_rows, p = x.shape
    n_nan = np.isnan(x).sum(axis=1)
    width = int(n_nan.max(initial=0))
    size = 2**width
    out = np.repeat(np.nan_to_num(x, nan=0.0)[:, None, :], size, axis=1)
    valid = np.zeros((n_rows, size), dtype=bool)
    for i in range(n_rows):
        holes = np.flatnonzero(np.isnan(x[i]))
        filled = binary_patterns(holes.size)  # (2^m_i, m_i)
        block = out[i, : filled.shape[0]]  # a view
        block[:, holes] = filled
        valid[i, : filled.shape[0]] = True
    return out.reshape(n_rows, size, p), valid


def _covariate_counts(
    x_imputed: np.ndarray, z: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Observed ones and zeros of each imputed covariate per distinct row of ``z``."""
    if z.shape[1] == 0:
        rows, which = np.zeros((1, 0)), np.zeros(z.shape[0], dtype=int)
    else:
        rows, which = np.unique(z, axis=0, return_inverse=True)
    which = np.ravel(which)
    n_rows, n_cols = rows.shape[0], x_imputed.shape[1]
    ones = np.zeros((n_rows, n_cols))
    zeros = np.zeros((n_rows, n_cols))
    np.add.at(ones, which, np.nan_to_num(x_imputed, nan=0.0) == 1.0)
    np.add.at(zeros, which, x_imputed == 0.0)
    return rows, ones, zeros


def structure_key(layout: MissingLayout) -> tuple:
    """What a compiled :func:`build_imputed` depends on besides names and priors.

    Layouts with equal keys share one compiled model (swap the data with :func:`imputed_data`):
    covariates, imputed columns, predictors, causes, intervals and complete-case patterns. The
    numbers of patients, incomplete patients, completions and ``z`` rows may differ.
    """
    return (
        layout.x.shape[1],
        layout.imputed,
        layout.n_predictors,
        layout.n_causes,
        len(layout.cuts),
        layout.cells.n_patterns,
    )


def imputed_data(
    layout: MissingLayout,
    log_rate_center: float | np.ndarray,
    x_scale: Sequence[float] | np.ndarray | None = None,
) -> dict:
    """The ``pm.Data`` values of :func:`build_imputed` (for ``with_data`` / ``pm.set_data``).

    ``log_rate_center``: the log crude rate (PEM) or one per cause. ``x_scale``: the scale of
    each covariate (default 1; see :func:`build_imputed`). The layout's covariates are used as
    they are (centre them first: the model has no ``x_center``).
    """
    if layout.n_causes is None:
        data = pem_data(layout.cells, float(log_rate_center), x_scale=x_scale)
    else:
        data = competing_data(layout.cells, np.asarray(log_rate_center, float), x_scale=x_scale)
    del data["x_center"]  # the rows come centred: a container the graph would not use
    data.update(
        {
            "incomplete_exposure": layout.exposure.astype(float),
            "incomplete_events": layout.events.astype(float),
            "completion_x": layout.completion_x.astype(float),
            "completion_valid": layout.completion_valid.astype(float),
        }
    )
    if layout.imputed:
        data["incomplete_missing"] = layout.missing.astype(float)
        data["covariate_ones"] = layout.ones.astype(float)
        data["covariate_zeros"] = layout.zeros.astype(float)
        if layout.n_predictors:
            data["incomplete_z"] = layout.z[layout.incomplete].astype(float)
            data["covariate_z"] = layout.z_rows.astype(float)
    return data


# --------------------------------------------------------------------------- model


def build_imputed(
    layout: MissingLayout,
    *,
    covariate_names: Sequence[str],
    log_rate_center: float | np.ndarray,
    cause_names: Sequence[str] = (),
    predictor_names: Sequence[str] = (),
    priors: Priors | None = None,
    covariate_priors: CovariatePriors | None = None,
    x_scale: Sequence[float] | np.ndarray | None = None,
) -> pm.Model:
    """The PEM (no ``cause_names``) or cause-specific competing-risk model with missing binary
    covariates marginalised.

    Hazard parameters, priors and names are those of :func:`models.pem.build_pem` /
    :func:`models.competing.build_competing` (``log_h0``, ``beta``, ``hr``, ...). Added:
    ``imputation_alpha`` (dim ``imputed_covariate``), ``imputation_gamma``
    (``predictor`` x ``imputed_covariate``, when ``z`` has columns) and the deterministic
    ``imputation_prevalence = logistic(alpha)`` (the prevalence at ``z = 0``).

    Covariates enter as they are in the layout (centre them first, as
    :class:`~analysis.inference.data.FitData` does: ``log_h0`` is then the baseline at the
    centre). As in :func:`models.pem.build_pem`, the effect prior is on ``beta_std``, the log HR
    per ``x_scale`` units (data container ``x_scale``, default 1), and ``beta = beta_std /
    x_scale`` is per unit of the column as given.

    Potentials: ``loglik`` (complete cases, collapsed), ``loglik_incomplete`` (each incomplete
    patient's mixture over completions), ``loglik_covariates`` (Bernoulli likelihood of the
    observed imputed covariates).
    """
    priors = priors or Priors()
    covariate_priors = covariate_priors or CovariatePriors()
    n_cov = len(covariate_names)
    if layout.x.shape[1] != n_cov:
        raise ValueError("covariate_names must name every column of x")
    if len(predictor_names) != layout.n_predictors:
        raise ValueError("predictor_names must name every column of z")
    n_causes = len(cause_names) or None
    if n_causes != layout.n_causes:
        raise ValueError("cause_names must match the layout's number of causes")
    n_intervals = len(layout.cuts)
    coords = model_coords(layout.cuts, covariate_names, layout.cells.n_patterns)
    coords["imputed_covariate"] = [covariate_names[k] for k in layout.imputed]
    coords["predictor"] = list(predictor_names)
    if n_causes:
        coords["cause"] = list(cause_names)
    values = imputed_data(layout, log_rate_center, x_scale)
    with pm.Model(coords=coords) as model:
        data = {k: pm.Data(k, v) for k, v in values.items() if k not in _GRID_DIMS}
        for k, dims in _GRID_DIMS.items():
            if n_causes is None and k == "events":
                dims = ("interval", "cell_pattern")
            data[k] = pm.Data(k, values[k], dims=dims)
        if n_causes is None:
            log_h0 = log_baseline(priors, data["log_rate_center"], n_intervals)[None, :]
            beta_std = effect_prior("beta_std", priors, "covariate")
            beta = per_unit_effects(beta_std, data["x_scale"])[:, None]
            pm.Deterministic("hr", pt.exp(beta[:, 0]), dims="covariate")
            events = data["events"][None]
        else:
            log_h0 = log_baseline(priors, data["log_rate_center"], n_intervals, n_causes)
            beta = per_unit_effects(cause_effects(priors, n_causes), data["x_scale"])
            pm.Deterministic("hr", pt.exp(beta), dims=("covariate", "cause"))
            events = data["events"]
        eta = log_h0[:, :, None] + pt.dot(data["pattern_x"], beta).T[:, None, :]
        pm.Potential("loglik", poisson_kernel(events, data["exposure"][None, :, :], eta))
        log_w = _completion_log_weight(layout, data, covariate_priors)
        ll = _completion_kernel(data, log_h0, beta) + log_w
        valid = data["completion_valid"] > 0
        mixture = pt.logsumexp(pt.switch(valid, ll, -np.inf), axis=1)
        pm.Potential("loglik_incomplete", pt.sum(mixture))
    return model


_GRID_DIMS: dict[str, tuple[str, ...]] = {
    "exposure": ("interval", "cell_pattern"),
    "events": ("cause", "interval", "cell_pattern"),
    "pattern_x": ("cell_pattern", "covariate"),
    "x_scale": ("covariate",),
}


def _completion_kernel(
    data: dict, log_h0: pt.TensorVariable, beta: pt.TensorVariable
) -> pt.TensorVariable:
    """Poisson kernel of each incomplete patient under each completion: ``(P, C)``.

    ``sum_{k,j} d_kj (log h0_kj + x.beta_k) - e_j h0_kj exp(x.beta_k)``, factorised over
    intervals (the same kernel as the collapsed cells, so the mixture is on the same scale).
    """
    events = data["incomplete_events"]  # (P, K, J)
    lp = pt.tensordot(data["completion_x"], beta, axes=[[2], [0]])  # (P, C, K)
    cum_h = pt.dot(data["incomplete_exposure"], pt.exp(log_h0).T)  # (P, K)
    d_log_h = pt.sum(events * log_h0[None, :, :], axis=2)  # (P, K)
    d = pt.sum(events, axis=2)  # (P, K)
    per_cause = d_log_h[:, None, :] + lp * d[:, None, :] - pt.exp(lp) * cum_h[:, None, :]
    return pt.sum(per_cause, axis=2)


def _completion_log_weight(
    layout: MissingLayout, data: dict, covariate_priors: CovariatePriors
) -> pt.TensorVariable | float:
    """The covariate model: log P(completion | z) ``(P, C)``; adds its Bernoulli likelihood."""
    if not layout.imputed:
        return 0.0
    alpha = pm.Normal(
        "imputation_alpha", 0.0, covariate_priors.intercept_sd, dims="imputed_covariate"
    )
    pm.Deterministic("imputation_prevalence", pm.math.sigmoid(alpha), dims="imputed_covariate")
    eta_rows = alpha[None, :]
    eta_incomplete = alpha[None, :]
    if layout.n_predictors:
        gamma = pm.Normal(
            "imputation_gamma",
            0.0,
            covariate_priors.slope_sd,
            dims=("predictor", "imputed_covariate"),
        )
        eta_rows = eta_rows + pt.dot(data["covariate_z"], gamma)
        eta_incomplete = eta_incomplete + pt.dot(data["incomplete_z"], gamma)
    log_one_rows, log_zero_rows = -pt.softplus(-eta_rows), -pt.softplus(eta_rows)
    bernoulli = data["covariate_ones"] * log_one_rows + data["covariate_zeros"] * log_zero_rows
    pm.Potential("loglik_covariates", pt.sum(bernoulli))
    log_one = -pt.softplus(-eta_incomplete)[:, None, :]  # (P, 1, m)
    log_zero = -pt.softplus(eta_incomplete)[:, None, :]
    value = data["completion_x"][:, :, list(layout.imputed)]  # (P, C, m)
    missing = data["incomplete_missing"][:, None, :]
    return pt.sum(missing * (value * log_one + (1.0 - value) * log_zero), axis=2)


# --------------------------------------------------------------------------- posterior quantities


def _as_causes(log_h0: np.ndarray, beta: np.ndarray, n_causes: int | None) -> tuple:
    """Draws as ``log_h0`` (..., K', J) and ``beta`` (..., p, K')."""
    if n_causes is None:
        return log_h0[..., None, :], beta[..., :, None]
    return log_h0, beta


def _covariate_logits(
    layout: MissingLayout, z: np.ndarray, alpha: np.ndarray, gamma: np.ndarray | None
) -> np.ndarray:
    """``alpha + z . gamma`` for rows ``z`` (r, q): (..., r, m)."""
    eta = np.asarray(alpha, float)[..., None, :]
    if layout.n_predictors:
        if gamma is None:
            raise ValueError("the layout has predictors z: gamma draws are needed")
        eta = eta + np.einsum("rq,...qm->...rm", z, gamma)
    return np.broadcast_to(eta, (*eta.shape[:-2], z.shape[0], eta.shape[-1]))


def completion_log_joint(
    layout: MissingLayout,
    log_h0: np.ndarray,
    beta: np.ndarray,
    alpha: np.ndarray | None,
    gamma: np.ndarray | None = None,
) -> np.ndarray:
    """Log of p(outcome | completion) * P(completion | z) per incomplete patient and completion.

    Draws: ``log_h0`` (..., J) or (..., K, J); ``beta`` (..., p) or (..., p, K); ``alpha``
    (..., m) and ``gamma`` (..., q, m) of the covariate model. The outcome term is the full
    Poisson log-pmf (as :func:`models.competing.pointwise_loglik`). Returns (..., P, C), ``-inf``
    for padding completions.
    """
    lh, b = _as_causes(np.asarray(log_h0, float), np.asarray(beta, float), layout.n_causes)
    lp = np.einsum("pcv,...vk->...pck", layout.completion_x, b)  # (..., P, C, K)
    cum_h = np.einsum("pj,...kj->...pk", layout.exposure, np.exp(lh))
    d_log_h = np.einsum("pkj,...kj->...pk", layout.events, lh)
    d = layout.events.sum(axis=2)  # (P, K)
    constant = np.sum(
        xlogy(layout.events, layout.exposure[:, None, :]) - gammaln(layout.events + 1.0),
        axis=(1, 2),
    )
    outcome = (
        np.sum(
            d_log_h[..., None, :] + lp * d[:, None, :] - np.exp(lp) * cum_h[..., None, :], axis=-1
        )
        + constant[:, None]
    )
    if layout.imputed:
        eta = _covariate_logits(layout, layout.z[layout.incomplete], alpha, gamma)  # (..., P, m)
        value = layout.completion_x[:, :, list(layout.imputed)]
        log_one = -np.logaddexp(0.0, -eta)[..., :, None, :]
        log_zero = -np.logaddexp(0.0, eta)[..., :, None, :]
        outcome = outcome + np.sum(
            layout.missing[:, None, :] * (value * log_one + (1.0 - value) * log_zero), axis=-1
        )
    return np.where(layout.completion_valid, outcome, -np.inf)


def completion_responsibilities(
    layout: MissingLayout,
    log_h0: np.ndarray,
    beta: np.ndarray,
    alpha: np.ndarray | None,
    gamma: np.ndarray | None = None,
) -> np.ndarray:
    """Posterior weight of each completion of each incomplete patient, per draw: (..., P, C).

    Sums to 1 over a patient's completions (0 on padding). Use it to average any per-patient
    quantity (e.g. a predicted CIF) over the unknown covariates:
    ``sum_c r[..., i, c] * f(completion_x[i, c])``.
    """
    joint = completion_log_joint(layout, log_h0, beta, alpha, gamma)
    return np.exp(joint - logsumexp(joint, axis=-1, keepdims=True))


def missing_value_probabilities(
    layout: MissingLayout,
    log_h0: np.ndarray,
    beta: np.ndarray,
    alpha: np.ndarray | None,
    gamma: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """P(x_ik = 1 | patient i's data, parameters) for each missing value, for each draw.

    The completions' responsibilities (posterior weights) summed over the completions with
    ``x_ik = 1``; their mean over the posterior draws is P(x_ik = 1 | data).

    Returns
    -------
    (probabilities, patient, covariate)
        ``probabilities`` (..., n_missing); ``patient`` (row of the input) and ``covariate``
        (column) of each missing value, in row-major order.
    """
    resp = completion_responsibilities(layout, log_h0, beta, alpha, gamma)  # (..., P, C)
    rows, cols = np.nonzero(np.isnan(layout.x[layout.incomplete]))
    probs = np.einsum("...pc,pcv->...pv", resp, layout.completion_x)[..., rows, cols]
    return probs, layout.incomplete[rows], cols


def missing_value_posterior(
    layout: MissingLayout, posterior: xr.Dataset, covariate_names: Sequence[str]
) -> xr.DataArray:
    """:func:`missing_value_probabilities` on a posterior with dims (chain, draw, ...).

    Returns a DataArray ``p_missing_is_1`` with dims (chain, draw, missing_value) and, on
    ``missing_value``, the coords ``patient`` (row of the input) and ``covariate`` (name).
    """
    probs, patient, cov = missing_value_probabilities(layout, *posterior_draws(layout, posterior))
    names = np.asarray(list(covariate_names), dtype=object)[cov]
    return xr.DataArray(
        probs,
        dims=("chain", "draw", "missing_value"),
        coords={
            "chain": posterior["chain"].values,
            "draw": posterior["draw"].values,
            "patient": ("missing_value", patient),
            "covariate": ("missing_value", names.astype(str)),
        },
        name="p_missing_is_1",
        attrs={"meaning": "P(x = 1 | data) per draw; its mean over draws is the posterior"},
    )


def posterior_draws(layout: MissingLayout, post: xr.Dataset) -> tuple:
    """``log_h0``, ``beta``, ``alpha``, ``gamma`` draws in the axis order the functions expect."""
    if layout.n_causes is None:
        log_h0 = post["log_h0"].transpose("chain", "draw", "interval").values
        beta = post["beta"].transpose("chain", "draw", "covariate").values
    else:
        log_h0 = post["log_h0"].transpose("chain", "draw", "cause", "interval").values
        beta = post["beta"].transpose("chain", "draw", "covariate", "cause").values
    alpha = gamma = None
    if layout.imputed:
        alpha = post["imputation_alpha"].transpose("chain", "draw", "imputed_covariate").values
    if layout.imputed and layout.n_predictors:
        gamma = post["imputation_gamma"]
        gamma = gamma.transpose("chain", "draw", "predictor", "imputed_covariate").values
    return log_h0, beta, alpha, gamma


def pointwise_loglik(
    layout: MissingLayout,
    log_h0: np.ndarray,
    beta: np.ndarray,
    alpha: np.ndarray | None,
    gamma: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-patient log-likelihood of the imputed model: ``(outcome, covariates)``, each (..., n).

    ``outcome``: log p(T_i | observed x_i, z_i), the mixture over completions for an incomplete
    patient (the full Poisson log-pmf over its intervals and causes, as for complete cases).
    ``covariates``: the Bernoulli log-likelihood of patient i's observed imputed covariates.
    Their sum is patient i's term of the model's joint likelihood (for LOO that leaves out a
    patient); ``outcome`` alone compares with a complete-case model's pointwise log-likelihood.
    """
    lh, b = _as_causes(np.asarray(log_h0, float), np.asarray(beta, float), layout.n_causes)
    lead = lh.shape[:-2]
    outcome = np.zeros((*lead, layout.n))
    c = layout.complete
    code = layout.event[c] if layout.n_causes else (layout.event[c] > 0).astype(int)
    pp = expand(layout.time[c], code, layout.x[c], layout.cuts)
    outcome[..., c] = competing_pointwise_loglik(lh, b, pp, c.size)
    joint = completion_log_joint(layout, log_h0, beta, alpha, gamma)
    outcome[..., layout.incomplete] = logsumexp(joint, axis=-1)
    covariates = np.zeros((*lead, layout.n))
    if layout.imputed:
        eta = _covariate_logits(layout, layout.z, alpha, gamma)  # (..., n, m)
        value = layout.x[:, list(layout.imputed)]
        seen = ~np.isnan(value)
        v = np.nan_to_num(value)
        ll = v * -np.logaddexp(0.0, -eta) + (1.0 - v) * -np.logaddexp(0.0, eta)
        covariates = np.sum(np.where(seen, ll, 0.0), axis=-1)
    return outcome, covariates
