"""Frequentist survival analyses on lifelines, following R's ``survival`` where lifelines differs.

Every function here is pure (arrays in, small result objects out) and cheap enough to be called
thousands of times by the reconstruction's calibration loop.

Conventions (each is tested in tests/test_frequentist.py):

* **Kaplan-Meier** (lifelines ``KaplanMeierFitter``): survival is right-continuous (``S(t)``
  includes the events at ``t``); the number at risk at ``t`` counts the subjects with time
  ``>= t``. After the last observed time the curve keeps its last value and the number at risk
  is 0 (R's ``summary(..., extend = TRUE)``).
* **KM confidence intervals**: Greenwood variance, 95% by default, on one of two scales:
  ``"log-log"`` (lifelines' default, R's ``conf.type = "log-log"``) or ``"log"`` (R's default:
  ``S * exp(+-z * se)`` with ``se = sqrt(sum d / (n (n - d)))``, upper limit capped at 1). The
  default everywhere in vlms is ``"log-log"``; ``vlms check --conf-type log`` gives R's.
  Where ``S = 0`` the limits are undefined (NaN); where ``S = 1`` both limits are 1.
* **Medians and their CI**: R's ``quantile.survfit`` rule. The median is where a horizontal line
  at 0.5 meets the curve; where the curve sits at 0.5 (within ``sqrt(machine eps)``) over a
  flat stretch, the midpoint of that stretch (to the last follow-up time if the stretch is the
  end of the curve). The CI of the median is the same rule applied to the lower and upper
  confidence curves (so it depends on ``conf_type``). NaN means "not reached".
* **Log-rank** (lifelines ``multivariate_logrank_test``): chi-square with ``k - 1`` df, as R's
  ``survdiff``.
* **Cox** (lifelines ``CoxPHFitter``): Efron ties (R's default), Newton-Raphson iterated to
  ``precision = 1e-24, r_precision = 0`` (see ``COX_FIT_OPTIONS``; lifelines' defaults stop
  early, HR off by ~4e-5 relative; 1e-16 still leaves ~1e-8). Wald CI and P from the
  information matrix; the likelihood-ratio P of the whole model (univariate) or of dropping
  each covariate (multivariable, by refitting). lifelines' Newton-Raphson has no line search
  and can overshoot into overflow on a rare binary covariate: a ``ConvergenceError`` is retried
  with shorter first steps. A covariate constant within every risk set at an event time does
  not enter the likelihood: it is reported as not estimable (NaN, ``estimable = False``).
* **Monotone likelihood**: when, at every event time, every event's covariate value is the
  largest (or every one the smallest) in the risk set, the partial likelihood increases without
  bound and the MLE is infinite (with 26 patients this happens whenever all events fall in one
  group). This is detected exactly before fitting; the term is reported as ``hr = inf`` (or 0)
  with ``monotone = True`` and NaN CI and P, never as a large finite number. A fitted
  ``|beta| * sd(x) > 15`` (a diverging fit the exact check does not catch, e.g. separation by a
  combination of covariates) is flagged the same way.
* **Aalen-Johansen** (lifelines ``AalenJohansenFitter``): lifelines randomly jitters tied event
  times of different causes; instead each cause-``k`` event is moved earlier by ``k * eps``
  (``eps`` far below the smallest gap between distinct times), which reproduces R's
  ``survfit`` multi-state estimate exactly and deterministically. lifelines labels its two CI
  columns the wrong way round; the smaller is taken as the lower limit. lifelines also zeroes
  the CIF at the first row of its table, dropping events at time <= 0; the time axis is
  translated to positive times before fitting (the estimate is unchanged). The CI is lifelines'
  log(-log) transform of the (infinitesimal-jackknife-equivalent) variance.
* **RMST**: the value is lifelines' ``restricted_mean_survival_time``; its SE is the
  Greenwood-type one of R's ``print.survfit(rmean = tau)``:
  ``var = sum_{t_i <= tau} A_i^2 d_i / (n_i (n_i - d_i))`` with ``A_i`` the area under the
  curve from ``t_i`` to ``tau`` (lifelines' variance is that of ``min(T, tau)``, not of the
  estimator).

Fast path: ``fast=True`` replaces the lifelines fitters by the same estimators in numpy (product
limit, log-rank, one- or many-covariate Efron Newton-Raphson); tests check it equals the
lifelines path to 1e-8. The reported tables (``vlms check``) always use lifelines.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from scipy import special

from analysis.core.separation import likelihood_shape

ConfType = Literal["log-log", "log"]
CONF_TYPES: tuple[str, ...] = ("log-log", "log")
COX_FIT_OPTIONS: dict[str, float] = {"precision": 1e-24, "r_precision": 0.0, "max_steps": 500}
"""lifelines' Newton-Raphson stops when the Newton decrement g'H^-1 g / 2 falls below ``precision``;
at 1e-16 that leaves a gradient of ~3e-8 (beta off by ~1e-8). 1e-24, with the relative
log-likelihood criterion off (it cannot resolve beta beyond ~1e-8), gives the MLE to ~1e-12."""
MEDIAN_TOLERANCE = math.sqrt(np.finfo(float).eps)
DIVERGENCE_LIMIT = 15.0
"""A fitted |beta| * sd(x) above this is treated as a diverging (monotone-likelihood) fit."""
STEP_SIZES: tuple[float, ...] = (0.95, 0.5, 0.2, 0.1)
"""lifelines' first Newton step sizes, tried in turn (0.95 is its default)."""
MONOTONE_FIT_OPTIONS: dict[str, float] = {
    "precision": 1e-16,
    "r_precision": 1e-16,
    "max_steps": 500,
}
"""Used only when a coefficient is known to be infinite: stop when the likelihood plateaus."""


def _z(alpha: float) -> float:
    return float(special.ndtri(1 - alpha / 2))


# --------------------------------------------------------------------------- Kaplan-Meier


@dataclass(frozen=True)
class KMCurve:
    """A product-limit curve at its distinct observed times (events and censorings)."""

    time: np.ndarray
    n_at_risk: np.ndarray
    n_events: np.ndarray
    survival: np.ndarray
    greenwood: np.ndarray
    """Cumulative ``sum d / (n (n - d))``: the variance of the log survival (inf once S = 0)."""
    n: int
    events: int


def _as_arrays(time: Sequence[float], event: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(time, dtype=float)
    e = np.asarray(event, dtype=float)
    if t.shape != e.shape or t.ndim != 1:
        raise ValueError("time and event must be 1-d arrays of the same length")
    if t.size == 0:
        raise ValueError("no observations")
    return t, e


def _curve_from_table(
    time: np.ndarray, n_at_risk: np.ndarray, d: np.ndarray, n: int, events: int
) -> KMCurve:
    with np.errstate(divide="ignore", invalid="ignore"):
        surv = np.cumprod(1.0 - d / n_at_risk)
        terms = np.where(d > 0, d / (n_at_risk * (n_at_risk - d)), 0.0)
    return KMCurve(time, n_at_risk, d, surv, np.cumsum(terms), n, events)


def km_curve(time: Sequence[float], event: Sequence[float], *, fast: bool = False) -> KMCurve:
    """The Kaplan-Meier curve: lifelines' ``KaplanMeierFitter`` (or numpy when ``fast``)."""
    t, e = _as_arrays(time, event)
    events = int(e.sum())
    if fast:
        uniq, inv = np.unique(t, return_inverse=True)
        d = np.bincount(inv, weights=e, minlength=uniq.size)
        removed = np.bincount(inv, minlength=uniq.size).astype(float)
        at_risk = t.size - np.concatenate(([0.0], np.cumsum(removed)[:-1]))
        return _curve_from_table(uniq, at_risk, d, t.size, events)
    from lifelines import KaplanMeierFitter

    kmf = KaplanMeierFitter().fit(t, e)
    table = kmf.event_table
    table = table[table["removed"] > 0]
    return _curve_from_table(
        table.index.to_numpy(float),
        table["at_risk"].to_numpy(float),
        table["observed"].to_numpy(float),
        t.size,
        events,
    )


def km_confidence(
    curve: KMCurve, conf_type: ConfType = "log-log", alpha: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise Greenwood confidence limits of the curve (see the module docstring)."""
    if conf_type not in CONF_TYPES:
        raise ValueError(f"conf_type must be one of {CONF_TYPES}")
    z = _z(alpha)
    s = curve.survival
    se = np.sqrt(curve.greenwood)
    with np.errstate(divide="ignore", invalid="ignore"):
        if conf_type == "log":
            lower = s * np.exp(-z * se)
            upper = np.minimum(1.0, s * np.exp(z * se))
        else:
            v = np.log(-np.log(s))
            w = se / np.abs(np.log(s))
            lower = np.exp(-np.exp(v + z * w))
            upper = np.exp(-np.exp(v - z * w))
    one = s >= 1.0
    lower = np.where(one, 1.0, lower)
    upper = np.where(one, 1.0, upper)
    zero = (s <= 0.0) | ~np.isfinite(se)
    lower = np.where(zero & ~one, np.nan, lower)
    upper = np.where(zero & ~one, np.nan, upper)
    return lower, upper


def step_at(curve_time: np.ndarray, values: np.ndarray, times: Sequence[float]) -> np.ndarray:
    """Right-continuous step function (1 before the first time) evaluated at ``times``."""
    idx = np.searchsorted(curve_time, np.asarray(times, dtype=float), side="right") - 1
    padded = np.concatenate(([1.0], values))
    return padded[idx + 1]


def n_at_risk_at(time: np.ndarray, times: Sequence[float]) -> np.ndarray:
    """Subjects with time ``>= t`` for each requested ``t``."""
    sorted_t = np.sort(np.asarray(time, dtype=float))
    return sorted_t.size - np.searchsorted(sorted_t, np.asarray(times, float), side="left")


def r_quantile(
    time: np.ndarray,
    survival: np.ndarray,
    p: float = 0.5,
    *,
    tol: float = MEDIAN_TOLERANCE,
) -> float:
    """The time where the survival curve reaches ``1 - p``, by R's ``quantile.survfit`` rule.

    ``time`` are the curve's distinct times (censorings included; the last is the end of
    follow-up) and ``survival`` its values there (NaN allowed, for confidence curves).
    A flat stretch at exactly ``1 - p`` gives the midpoint of the stretch; NaN if not reached.
    """
    x = np.concatenate(([0.0], np.asarray(time, float)))
    y = np.concatenate(([0.0], 1.0 - np.asarray(survival, float)))
    xmax = x[-1]
    finite = ~np.isnan(y)
    if not finite.any() or np.nanmax(y) < p:
        return math.nan
    # drop repeated values (censorings), keeping the first of each run, as R's duplicated()
    keep = np.ones(y.size, dtype=bool)
    seen_nan = False
    seen: set[float] = set()
    for i, v in enumerate(y):
        if math.isnan(v):
            keep[i] = not seen_nan
            seen_nan = True
        elif v in seen:
            keep[i] = False
        else:
            seen.add(v)
    x, y = x[keep], y[keep]
    ok = ~np.isnan(y)
    idx = np.flatnonzero(ok)
    hit1 = idx[y[ok] + tol >= p]
    hit2 = idx[y[ok] - tol >= p]
    i1 = int(hit1[0]) if hit1.size else None
    i2 = int(hit2[0]) if hit2.size else None
    quant = (x[i1] + x[i2]) / 2 if i1 is not None and i2 is not None else math.nan
    if not np.isnan(y[-1]) and abs(p - y[-1]) < tol and i1 is not None:
        quant = (x[i1] + xmax) / 2
    return float(quant)


@dataclass
class KMSummary:
    """Kaplan-Meier results at requested times, with the median and its CI."""

    n: int
    events: int
    times: list[float]
    survival: list[float]
    lower: list[float]
    upper: list[float]
    n_at_risk: list[int]
    median: float
    median_lower: float
    median_upper: float
    conf_type: str

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready dict."""
        return asdict(self)


def kaplan_meier(
    time: Sequence[float],
    event: Sequence[float],
    times: Sequence[float] | None = None,
    *,
    conf_type: ConfType = "log-log",
    alpha: float = 0.05,
    fast: bool = False,
) -> KMSummary:
    """KM survival at ``times`` (default: every distinct observed time) with Greenwood CI,
    numbers at risk, and the median with its CI (R's rule)."""
    t, _ = _as_arrays(time, event)
    curve = km_curve(time, event, fast=fast)
    lower_c, upper_c = km_confidence(curve, conf_type, alpha)
    at = curve.time if times is None else np.asarray(times, dtype=float)
    surv = step_at(curve.time, curve.survival, at)
    lower = step_at(curve.time, lower_c, at)
    upper = step_at(curve.time, upper_c, at)
    return KMSummary(
        n=curve.n,
        events=curve.events,
        times=[float(v) for v in at],
        survival=[float(v) for v in surv],
        lower=[float(v) for v in lower],
        upper=[float(v) for v in upper],
        n_at_risk=[int(v) for v in n_at_risk_at(t, at)],
        median=r_quantile(curve.time, curve.survival),
        median_lower=r_quantile(curve.time, lower_c),
        median_upper=r_quantile(curve.time, upper_c),
        conf_type=conf_type,
    )


def km_median(time: Sequence[float], event: Sequence[float], *, fast: bool = False) -> float:
    """The KM median by R's rule (NaN if not reached), without confidence limits."""
    curve = km_curve(time, event, fast=fast)
    return r_quantile(curve.time, curve.survival)


def km_survival_at(
    time: Sequence[float], event: Sequence[float], times: Sequence[float], *, fast: bool = False
) -> np.ndarray:
    """KM survival at ``times`` only (no CI)."""
    curve = km_curve(time, event, fast=fast)
    return step_at(curve.time, curve.survival, times)


# --------------------------------------------------------------------------- log-rank


@dataclass(frozen=True)
class LogRank:
    """Log-rank test of equal survival across groups."""

    chisq: float
    df: int
    p: float

    def to_dict(self) -> dict[str, float]:
        """Plain JSON-ready dict."""
        return asdict(self)


def logrank(
    time: Sequence[float],
    event: Sequence[float],
    group: Sequence[object],
    *,
    fast: bool = False,
) -> LogRank:
    """Log-rank test across two or more groups (lifelines, or numpy when ``fast``)."""
    t, e = _as_arrays(time, event)
    g = np.asarray(group)
    levels = pd.unique(g)
    if levels.size < 2:
        raise ValueError("the log-rank test needs at least two groups")
    if not fast:
        from lifelines.statistics import multivariate_logrank_test

        res = multivariate_logrank_test(t, g, e)
        return LogRank(float(res.test_statistic), int(res.degrees_of_freedom), float(res.p_value))
    codes = np.searchsorted(np.sort(levels), g) if g.dtype.kind in "biuf" else None
    if codes is None:
        lookup = {v: i for i, v in enumerate(levels)}
        codes = np.array([lookup[v] for v in g])
    k = levels.size
    event_times = np.unique(t[e > 0])
    at_risk = (t[None, :] >= event_times[:, None]).astype(float)  # (m, n)
    died = ((t[None, :] == event_times[:, None]) & (e[None, :] > 0)).astype(float)
    onehot = np.eye(k)[codes]  # (n, k)
    n_jk = at_risk @ onehot
    d_jk = died @ onehot
    n_j = n_jk.sum(1)
    d_j = d_jk.sum(1)
    expected = n_jk * (d_j / n_j)[:, None]
    obs_minus_exp = (d_jk - expected).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(n_j > 1, d_j * (n_j - d_j) / (n_j**2 * (n_j - 1)), 0.0)
    v = np.einsum("j,jk,jl->kl", factor, n_jk, n_jk) * -1
    v[np.diag_indices(k)] += (factor * n_j) @ n_jk
    chisq = float(obs_minus_exp @ np.linalg.pinv(v) @ obs_minus_exp)
    df = k - 1
    return LogRank(chisq, df, float(special.chdtrc(df, chisq)))


# --------------------------------------------------------------------------- Cox


@dataclass
class CoxTerm:
    """One covariate of a Cox fit. ``monotone``: the MLE is infinite (``hr`` is inf or 0)."""

    covariate: str
    beta: float
    hr: float
    lower: float
    upper: float
    se: float
    p: float
    lr_p: float
    monotone: bool = False
    estimable: bool = True
    """False when the likelihood does not depend on the coefficient (see likelihood_shape)."""

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready dict (without the covariate name)."""
        d = asdict(self)
        d.pop("covariate")
        return d


@dataclass
class CoxResult:
    """A Cox proportional-hazards fit (Efron ties)."""

    terms: dict[str, CoxTerm]
    n: int
    events: int
    loglik: float
    loglik_null: float
    lr_chisq: float
    lr_df: int
    lr_p: float
    monotone: bool = False
    converged: bool = True
    notes: list[str] = field(default_factory=list)


def _flat_term(name: str) -> CoxTerm:
    nan = math.nan
    return CoxTerm(name, nan, nan, nan, nan, nan, nan, nan, False, estimable=False)


def _exp(v: float) -> float:
    return math.inf if v > 709.0 else math.exp(v)


def _monotone_term(name: str, direction: int) -> CoxTerm:
    hr = math.inf if direction > 0 else 0.0
    beta = math.inf if direction > 0 else -math.inf
    return CoxTerm(name, beta, hr, math.nan, math.nan, math.nan, math.nan, math.nan, True)


def _wald(name: str, beta: float, se: float, z: float, lr_p: float) -> CoxTerm:
    p = float(2 * special.ndtr(-abs(beta / se))) if se > 0 else math.nan
    return CoxTerm(
        name,
        float(beta),
        _exp(beta),
        _exp(beta - z * se),
        _exp(beta + z * se),
        float(se),
        p,
        float(lr_p),
    )


def _efron_arrays(t: np.ndarray, e: np.ndarray, X: np.ndarray) -> dict[str, np.ndarray]:
    """Sorted data plus index arrays for the numpy Efron likelihood."""
    order = np.argsort(t, kind="stable")
    t, e, X = t[order], e[order], X[order]
    uniq, first = np.unique(t, return_index=True)
    ev_times = np.unique(t[e > 0])
    # risk set of event time s: rows from first index of s to the end
    start = first[np.searchsorted(uniq, ev_times)]
    ev_group = np.searchsorted(ev_times, t)  # valid only where e > 0
    return {"t": t, "e": e, "X": X, "start": start, "ev_group": ev_group, "m": ev_times.size}


def _efron_ll_grad_hess(
    a: dict[str, np.ndarray], beta: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    X, e, start, m = a["X"], a["e"] > 0, a["start"], int(a["m"])
    p = X.shape[1]
    eta = X @ beta
    phi = np.exp(eta)
    # reverse cumulative sums give risk-set sums from each row to the end
    r0 = np.cumsum(phi[::-1])[::-1]
    r1 = np.cumsum((phi[:, None] * X)[::-1], axis=0)[::-1]
    r2 = np.cumsum((phi[:, None, None] * X[:, :, None] * X[:, None, :])[::-1], axis=0)[::-1]
    g_ev = a["ev_group"][e]
    Xe, phie = X[e], phi[e]
    d = np.bincount(g_ev, minlength=m).astype(float)
    d0 = np.bincount(g_ev, weights=phie, minlength=m)
    d1 = np.zeros((m, p))
    np.add.at(d1, g_ev, phie[:, None] * Xe)
    d2 = np.zeros((m, p, p))
    np.add.at(d2, g_ev, phie[:, None, None] * Xe[:, :, None] * Xe[:, None, :])
    R0, R1, R2 = r0[start], r1[start], r2[start]
    ll = float(eta[e].sum())
    grad = Xe.sum(0).astype(float)
    hess = np.zeros((p, p))
    maxd = int(d.max())
    for ell in range(maxd):
        active = d > ell
        frac = ell / d[active]
        den = R0[active] - frac * d0[active]
        num1 = R1[active] - frac[:, None] * d1[active]
        num2 = R2[active] - frac[:, None, None] * d2[active]
        mean = num1 / den[:, None]
        ll -= float(np.log(den).sum())
        grad -= mean.sum(0)
        hess -= (num2 / den[:, None, None]).sum(0) - np.einsum("ki,kj->ij", mean, mean)
    return ll, grad, hess


def _cox_numpy(
    t: np.ndarray, e: np.ndarray, X: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float, float, bool]:
    """Efron Newton-Raphson with step halving; returns beta, covariance, ll, ll0, converged."""
    a = _efron_arrays(t, e, X)
    beta = np.zeros(X.shape[1])
    ll, g, h = _efron_ll_grad_hess(a, beta)
    ll0 = ll
    converged = False
    for _ in range(100):
        step = np.linalg.solve(-h, g)
        scale = 1.0
        while True:
            new = beta + scale * step
            ll_new, g_new, h_new = _efron_ll_grad_hess(a, new)
            if ll_new >= ll - 1e-12 * abs(ll) or scale < 1e-6:
                break
            scale /= 2
        beta, ll, g, h = new, ll_new, g_new, h_new
        if np.max(np.abs(scale * step)) < 1e-13 * max(1.0, float(np.max(np.abs(beta)))):
            converged = True
            break
    return beta, np.linalg.inv(-h), ll, ll0, converged


def _fit_lifelines(
    t: np.ndarray, e: np.ndarray, X: pd.DataFrame, options: Mapping[str, float] | None = None
) -> tuple[np.ndarray, np.ndarray, float, float, bool]:
    """lifelines' CoxPHFitter; its Newton-Raphson has no line search and can overshoot into
    overflow on a rare binary covariate, so a ConvergenceError is retried with shorter first
    steps (``STEP_SIZES``) before it is passed on."""
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError, ConvergenceWarning

    df = X.copy()
    df["__time__"] = t
    df["__event__"] = e
    for attempt, step in enumerate(STEP_SIZES):
        fit_options = {**(options or COX_FIT_OPTIONS), "step_size": step}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                cph = CoxPHFitter().fit(df, "__time__", "__event__", fit_options=fit_options)
                break
            except ConvergenceError:
                if attempt == len(STEP_SIZES) - 1:
                    raise
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    beta = cph.params_.to_numpy(float)
    cov = cph.variance_matrix_.to_numpy(float)
    ll = float(cph.log_likelihood_)
    ll0 = ll - float(cph.log_likelihood_ratio_test().test_statistic) / 2
    return beta, cov, ll, ll0, converged


def _plateau_fit(
    t: np.ndarray, e: np.ndarray, X: np.ndarray, names: list[str]
) -> tuple[np.ndarray, np.ndarray, float, float, bool]:
    """lifelines stopped where the likelihood stops rising (for diverging fits); NaN if even
    that fails (singular information)."""
    try:
        return _fit_lifelines(t, e, pd.DataFrame(X, columns=names), MONOTONE_FIT_OPTIONS)
    except Exception as exc:
        if type(exc).__name__ != "ConvergenceError":
            raise
        nan = np.full(len(names), math.nan)
        return nan, np.diag(nan), math.nan, math.nan, False


def cox(
    time: Sequence[float],
    event: Sequence[float],
    covariates: Mapping[str, Sequence[float]] | pd.DataFrame,
    *,
    alpha: float = 0.05,
    term_lr: bool = True,
    fast: bool = False,
) -> CoxResult:
    """Cox proportional hazards with Efron ties: HR, Wald CI and P, likelihood-ratio P.

    With one covariate ``lr_p`` is the model's LR test; with several, each term's ``lr_p``
    compares the model with and without it (refits; skip with ``term_lr=False``).
    Monotone likelihoods are reported as such (see the module docstring).
    """
    t, e = _as_arrays(time, event)
    cov_map = dict(covariates.items()) if isinstance(covariates, pd.DataFrame) else dict(covariates)
    names = [str(k) for k in cov_map]
    if not names:
        raise ValueError("no covariates")
    X = np.column_stack([np.asarray(cov_map[k], dtype=float) for k in cov_map])
    events = int((e > 0).sum())
    if events == 0:
        raise ValueError("no events")
    shapes = {c: likelihood_shape(t, e, X[:, j]) for j, c in enumerate(names)}
    flat = [c for c in names if shapes[c] == "flat"]
    if flat:
        keep = [j for j, c in enumerate(names) if c not in flat]
        notes = [f"{c}: not estimable (constant within every risk set)" for c in flat]
        if not keep:
            return CoxResult(
                {c: _flat_term(c) for c in names}, t.size, events, math.nan, math.nan,
                math.nan, len(names), math.nan, notes=notes,
            )  # fmt: skip
        # the likelihood does not involve a flat covariate: the fit without it is the fit
        sub = cox(t, e, {names[j]: X[:, j] for j in keep}, alpha=alpha, term_lr=term_lr, fast=fast)
        sub.terms = {c: sub.terms[c] if c in sub.terms else _flat_term(c) for c in names}
        sub.notes = notes + sub.notes
        return sub
    directions = {c: {"+inf": 1, "-inf": -1}.get(shapes[c], 0) for c in names}
    z = _z(alpha)
    monotone = [c for c, d in directions.items() if d != 0]
    if len(names) == 1 and monotone:
        c = names[0]
        return CoxResult(
            {c: _monotone_term(c, directions[c])},
            t.size,
            events,
            math.nan,
            math.nan,
            math.nan,
            1,
            math.nan,
            monotone=True,
            notes=[f"{c}: monotone likelihood (infinite hazard ratio)"],
        )

    def fit(cols: list[str]) -> tuple[np.ndarray, np.ndarray, float, float, bool]:
        idx = [names.index(c) for c in cols]
        if fast:
            return _cox_numpy(t, e, X[:, idx])
        return _fit_lifelines(t, e, pd.DataFrame(X[:, idx], columns=cols))

    if monotone:
        # a multivariable fit with an infinite coefficient: stop where the likelihood plateaus
        # and report the other terms there (flagged), or NaN if lifelines cannot go that far
        beta, cov, ll, ll0, converged = _plateau_fit(t, e, X, names)
    else:
        try:
            beta, cov, ll, ll0, converged = fit(names)
        except Exception as exc:  # a separation the exact check misses: singular information
            if type(exc).__name__ not in {"ConvergenceError", "LinAlgError"}:
                raise
            beta, cov, ll, ll0, converged = _plateau_fit(t, e, X, names)
    lr = max(0.0, 2 * (ll - ll0)) if math.isfinite(ll) else math.nan
    lr_p_model = float(special.chdtrc(len(names), lr))
    sd = X.std(axis=0, ddof=1)
    diverging = [
        c for c, b, s in zip(names, beta, sd, strict=True) if abs(b) * s > DIVERGENCE_LIMIT
    ]
    terms: dict[str, CoxTerm] = {}
    for j, c in enumerate(names):
        if directions[c] != 0 or c in diverging:
            d = directions[c] if directions[c] != 0 else int(np.sign(beta[j]))
            terms[c] = _monotone_term(c, d)
            continue
        if len(names) == 1:
            term_lr_p = lr_p_model
        elif term_lr and not (monotone or diverging):
            rest = [n for n in names if n != c]
            ll_rest = fit(rest)[2]
            term_lr_p = float(special.chdtrc(1, max(0.0, 2 * (ll - ll_rest))))
        else:
            term_lr_p = math.nan
        terms[c] = _wald(c, beta[j], math.sqrt(cov[j, j]), z, term_lr_p)
    flagged = monotone + [c for c in diverging if c not in monotone]
    notes = [f"{c}: monotone likelihood (infinite hazard ratio)" for c in flagged]
    if flagged and len(names) > 1:
        notes.append("other terms are the fit's values at a diverging coefficient")
    return CoxResult(
        terms,
        t.size,
        events,
        ll,
        ll0,
        lr,
        len(names),
        lr_p_model if not flagged else math.nan,
        monotone=bool(flagged),
        converged=converged or bool(flagged),
        notes=notes,
    )


# --------------------------------------------------------------------------- competing risks


@dataclass
class CIF:
    """Aalen-Johansen cumulative incidence of one cause at requested times."""

    cause: int
    times: list[float]
    cif: list[float]
    lower: list[float]
    upper: list[float]

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready dict (without the cause)."""
        d = asdict(self)
        d.pop("cause")
        return d


def _tie_epsilon(t: np.ndarray, n_causes: int) -> float:
    uniq = np.unique(t)
    gaps = np.diff(uniq)
    smallest = float(gaps.min()) if gaps.size else 1.0
    scale = max(1.0, float(np.abs(uniq).max()))
    return min(smallest, scale) / (1000.0 * (n_causes + 1))


def cumulative_incidence(
    time: Sequence[float],
    cause: Sequence[int],
    times: Sequence[float] | None = None,
    *,
    causes: Sequence[int] | None = None,
    alpha: float = 0.05,
) -> dict[int, CIF]:
    """Aalen-Johansen cumulative incidence per cause (0 = censored), deterministic under ties.

    ``times`` default to the distinct event times of each cause.
    """
    from lifelines import AalenJohansenFitter

    t, c = _as_arrays(time, cause)
    c = c.astype(int)
    all_causes = sorted(int(k) for k in np.unique(c[c > 0]))
    wanted = all_causes if causes is None else [int(k) for k in causes]
    k_max = max(all_causes) if all_causes else 1
    eps = _tie_epsilon(t, k_max)
    shifted = t - c * eps  # cause k earlier by k * eps; censorings (0) stay
    # lifelines zeroes the CIF at the first row of its table, which is an event if one happens
    # at time <= 0: translate the time axis so that every time is positive
    offset = 0.0 if shifted.min() > 0 else 1.0 - float(shifted.min())
    shifted = shifted + offset
    out: dict[int, CIF] = {}
    for k in wanted:
        at = np.unique(t[c == k]) if times is None else np.asarray(times, dtype=float)
        if k not in all_causes:
            zeros = [0.0] * at.size
            out[k] = CIF(k, [float(v) for v in at], zeros, zeros, zeros)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ajf = AalenJohansenFitter(calculate_variance=True, alpha=alpha).fit(
                shifted, c, event_of_interest=k
            )
        grid = ajf.cumulative_density_.index.to_numpy(float)
        est = ajf.cumulative_density_.iloc[:, 0].to_numpy(float)
        ci = ajf.confidence_interval_.to_numpy(float)
        lo = np.fmin(ci[:, 0], ci[:, 1])  # lifelines labels the two columns the wrong way round
        hi = np.fmax(ci[:, 0], ci[:, 1])
        idx = np.searchsorted(grid, at + offset, side="right") - 1
        valid = idx >= 0
        pick = np.clip(idx, 0, None)
        cif = np.where(valid, est[pick], 0.0)
        lower = np.where(valid & (cif > 0), lo[pick], 0.0)
        upper = np.where(valid & (cif > 0), hi[pick], 0.0)
        out[k] = CIF(
            k,
            [float(v) for v in at],
            [float(v) for v in cif],
            [float(v) for v in lower],
            [float(v) for v in upper],
        )
    return out


def cause_specific_cox(
    time: Sequence[float],
    cause: Sequence[int],
    covariates: Mapping[str, Sequence[float]] | pd.DataFrame,
    cause_of_interest: int,
    **kwargs: object,
) -> CoxResult:
    """Cox model of one cause, other causes censored at their time."""
    c = np.asarray(cause, dtype=int)
    return cox(time, (c == cause_of_interest).astype(float), covariates, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- RMST


@dataclass(frozen=True)
class RMST:
    """Restricted mean survival time to ``horizon`` with its Greenwood-type SE."""

    horizon: float
    rmst: float
    se: float

    def to_dict(self) -> dict[str, float]:
        """Plain JSON-ready dict."""
        return asdict(self)


def rmst(time: Sequence[float], event: Sequence[float], horizon: float) -> RMST:
    """Area under the KM curve up to ``horizon`` (lifelines) and R's Greenwood-type SE."""
    from lifelines import KaplanMeierFitter
    from lifelines.utils import restricted_mean_survival_time

    t, e = _as_arrays(time, event)
    kmf = KaplanMeierFitter().fit(t, e)
    value = float(restricted_mean_survival_time(kmf, t=horizon))
    curve = km_curve(t, e)
    return RMST(float(horizon), value, rmst_se(curve, horizon))


def rmst_se(curve: KMCurve, horizon: float) -> float:
    """SE of the KM area to ``horizon``: ``sqrt(sum A_i^2 d_i / (n_i (n_i - d_i)))``."""
    inside = curve.time <= horizon
    tk = curve.time[inside]
    sk = curve.survival[inside]
    edges = np.concatenate((tk, [horizon]))
    pieces = sk * np.diff(edges)  # area of S over [t_i, t_{i+1}) for each i
    area_after = np.cumsum(pieces[::-1])[::-1]  # area from t_i to the horizon
    n, d = curve.n_at_risk[inside], curve.n_events[inside]
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.where((d > 0) & (n > d), d / (n * (n - d)), 0.0)
    return float(math.sqrt(np.sum(area_after**2 * h)))
