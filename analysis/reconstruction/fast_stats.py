"""The paper's statistics on a cohort in compiled form, for the reconstruction's inner loop.

:func:`analysis.frequentist.paper_analyses.paper_statistics` is the one definition of every
published statistic (lifelines path for reports, numpy fast path tested equal to it). A sampler
that evaluates them a few hundred thousand times per cohort needs them in microseconds, not
milliseconds, so this module re-states the same estimators with numba on plain arrays:

* Kaplan-Meier (product limit at the distinct times, right-continuous) and its median by R's
  ``quantile.survfit`` rule (midpoint of a flat stretch at 0.5, within sqrt(machine eps));
* the k-group log-rank chi-square (``survdiff``), solved on k - 1 groups;
* univariate Cox on a binary covariate (every one the paper reports is) with Efron ties,
  from the risk-set table at the event times, by Newton-Raphson with step halving, Wald CI and
  P, with the exact monotone-likelihood check of
  :func:`analysis.frequentist.estimators.likelihood_shape` (HR inf or 0, NaN CI and P) and its
  divergence flag.

Tests (``tests/reconstruction/test_fast_stats.py``) check every entry of :data:`STAT_NAMES`
against ``paper_statistics`` on random cohorts to 1e-8. Age statistics are not here: ages are
dealt with their published order statistics and never move.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np
import pandas as pd

from analysis import cohort as ch

Z95 = 1.959963984540054
MEDIAN_TOL = math.sqrt(np.finfo(float).eps)
DIVERGENCE_LIMIT = 15.0
MARKERS = ("beta_catenin", "igf1r")
TYPE_NAMES = ("none", "local", "distant", "local_distant")
TYPE_CODES = {name: code for code, name in enumerate(TYPE_NAMES)}


def _names() -> tuple[str, ...]:
    out = [f"text.recurrence.median_months.{t}" for t in TYPE_NAMES[1:]]
    out += ["text.recurrence.logrank_p", "text.recurrence.median_months.any", "text.rfs.rate_5y"]
    out += ["text.dss.overall.rate_1y", "text.dss.overall.rate_5y"]
    for g in TYPE_NAMES:
        out += [f"text.dss.by_recurrence.{g}.rate_2y", f"text.dss.by_recurrence.{g}.rate_5y"]
    out += [
        "text.followup.median_years",
        "text.followup.median_years:lower",
        "text.followup.median_years:upper",
    ]
    for endpoint in ("rfs", "dss"):
        for marker in MARKERS:
            for grp in ("negative", "positive"):
                out.append(f"table2.{endpoint}.{marker}.{grp}.median_months")
            out += _hr_names(f"table2.{endpoint}.{marker}.hr")
    out += _hr_names("text.hr.surgery_radiation_dss")
    out += _hr_names("text.hr.adjuvant_dss")
    return tuple(out)


def _hr_names(key: str) -> list[str]:
    return [key, f"{key}:lower", f"{key}:upper", f"{key}:p"]


STAT_NAMES: tuple[str, ...] = _names()
"""The order of :func:`statistics_vector`'s output (names as ``paper_statistics`` keys them)."""
STAT_INDEX: dict[str, int] = {name: i for i, name in enumerate(STAT_NAMES)}
N_STATS = len(STAT_NAMES)


@dataclass(frozen=True)
class CohortArrays:
    """A cohort as the arrays the compiled statistics read (float64 unless said)."""

    rec_t: np.ndarray
    rec_type: np.ndarray  # int64 codes of TYPE_NAMES
    fu: np.ndarray
    dss_e: np.ndarray
    tma: np.ndarray  # bool
    bcat: np.ndarray  # NaN outside the TMA
    igf: np.ndarray
    radiation: np.ndarray
    adjuvant: np.ndarray
    r0r1: np.ndarray  # bool


def cohort_arrays(df: pd.DataFrame) -> CohortArrays:
    """The arrays of a typed cohort frame (as :func:`analysis.cohort.load_cohort` returns)."""
    return CohortArrays(
        df["recurrence_months"].to_numpy(float).copy(),
        df["recurrence"].map(TYPE_CODES).to_numpy(np.int64),
        df["followup_months"].to_numpy(float).copy(),
        ch.dss(df)[1].astype(float),
        df["tma"].to_numpy(float) == 1.0,
        df["beta_catenin"].to_numpy(float).copy(),
        df["igf1r"].to_numpy(float).copy(),
        ch.radiation_any(df).astype(float),
        ch.adjuvant_any(df).astype(float),
        ch.r0r1_resection(df),
    )


def statistics(df: pd.DataFrame) -> dict[str, float]:
    """:data:`STAT_NAMES` -> value on a typed cohort frame (the compiled path)."""
    a = cohort_arrays(df)
    out = statistics_vector(
        a.rec_t, a.rec_type, a.fu, a.dss_e, a.tma, a.bcat, a.igf, a.radiation, a.adjuvant, a.r0r1
    )
    return dict(zip(STAT_NAMES, out.tolist(), strict=True))


# --------------------------------------------------------------------------- Kaplan-Meier


@nb.njit(cache=True)
def _km_table(order, t, e, mask, times, surv):
    """Distinct times of the subset (ascending) and the KM survival there; returns their count."""
    n_sub = 0
    for i in range(t.size):
        if mask[i]:
            n_sub += 1
    at_risk = n_sub
    s = 1.0
    k = 0
    j = 0
    n = order.size
    while j < n:
        i = order[j]
        if not mask[i]:
            j += 1
            continue
        tj = t[i]
        d = 0.0
        removed = 0
        while j < n and (not mask[order[j]] or t[order[j]] == tj):
            if mask[order[j]]:
                removed += 1
                d += e[order[j]]
            j += 1
        if d > 0:
            s *= 1.0 - d / at_risk
        times[k] = tj
        surv[k] = s
        k += 1
        at_risk -= removed
    return k


@nb.njit(cache=True)
def _step(times, surv, k, at):
    """Right-continuous step function, 1 before the first time."""
    value = 1.0
    for m in range(k):
        if times[m] <= at:
            value = surv[m]
        else:
            break
    return value


@nb.njit(cache=True)
def _r_median(times, surv, k):
    """R's quantile.survfit rule at p = 0.5 on a curve of ``k`` distinct times."""
    if k == 0:
        return np.nan
    xs = np.empty(k + 1)
    ys = np.empty(k + 1)
    xs[0] = 0.0
    ys[0] = 0.0
    m = 1
    for i in range(k):
        y = 1.0 - surv[i]
        if y != ys[m - 1]:
            xs[m] = times[i]
            ys[m] = y
            m += 1
    xmax = times[k - 1]
    ymax = ys[m - 1]
    if ymax < 0.5:
        return np.nan
    i1 = -1
    i2 = -1
    for i in range(m):
        if i1 < 0 and ys[i] + MEDIAN_TOL >= 0.5:
            i1 = i
        if i2 < 0 and ys[i] - MEDIAN_TOL >= 0.5:
            i2 = i
    quant = np.nan
    if i1 >= 0 and i2 >= 0:
        quant = (xs[i1] + xs[i2]) / 2.0
    if abs(0.5 - ys[m - 1]) < MEDIAN_TOL and i1 >= 0:
        quant = (xs[i1] + xmax) / 2.0
    return quant


# --------------------------------------------------------------------------- log-rank


@nb.njit(cache=True)
def _chi2_sf(x, df):
    if df == 1:
        return math.erfc(math.sqrt(x / 2.0))
    if df == 2:
        return math.exp(-x / 2.0)
    if df == 3:
        return math.erfc(math.sqrt(x / 2.0)) + math.sqrt(2.0 * x / math.pi) * math.exp(-x / 2.0)
    return np.nan


@nb.njit(cache=True)
def _logrank_p(order, t, e, group, mask):
    """k-group log-rank P (groups: codes 0..3 of the subset that occur)."""
    chisq, dof = logrank_chisq(order, t, e, group, mask)
    if dof < 1 or not math.isfinite(chisq):
        return np.nan
    return _chi2_sf(max(chisq, 0.0), dof)


@nb.njit(cache=True)
def logrank_chisq(order, t, e, group, mask):
    """k-group log-rank chi-square and its degrees of freedom (groups: codes 0..3 of the
    subset that occur; ``order`` sorts ``t``); dof 0 when fewer than two groups occur."""
    present = np.zeros(4, np.int64)
    for i in range(t.size):
        if mask[i]:
            present[group[i]] = 1
    levels = np.empty(4, np.int64)
    k = 0
    for g in range(4):
        if present[g]:
            levels[k] = g
            k += 1
    if k < 2:
        return np.nan, 0
    slot = np.full(4, -1, np.int64)
    for q in range(k):
        slot[levels[q]] = q
    n_at = np.zeros(k)
    for i in range(t.size):
        if mask[i]:
            n_at[slot[group[i]]] += 1.0
    o_e = np.zeros(k)
    v = np.zeros((k, k))
    d_k = np.zeros(k)
    r_k = np.zeros(k)
    n = order.size
    j = 0
    while j < n:
        i = order[j]
        if not mask[i]:
            j += 1
            continue
        tj = t[i]
        d_k[:] = 0.0
        r_k[:] = 0.0
        while j < n and (not mask[order[j]] or t[order[j]] == tj):
            ii = order[j]
            if mask[ii]:
                q = slot[group[ii]]
                r_k[q] += 1.0
                d_k[q] += e[ii]
            j += 1
        d = d_k.sum()
        if d > 0:
            nj = n_at.sum()
            for q in range(k):
                o_e[q] += d_k[q] - n_at[q] * d / nj
            if nj > 1:
                f = d * (nj - d) / (nj * nj * (nj - 1.0))
                for q in range(k):
                    v[q, q] += f * nj * n_at[q]
                    for r in range(k):
                        v[q, r] -= f * n_at[q] * n_at[r]
        for q in range(k):
            n_at[q] -= r_k[q]
    # chi-square on k - 1 groups (V has rank k - 1)
    mdim = k - 1
    a = v[:mdim, :mdim].copy()
    b = o_e[:mdim].copy()
    x = _solve(a, b)
    chisq = 0.0
    for q in range(mdim):
        chisq += b[q] * x[q]
    return chisq, mdim


@nb.njit(cache=True)
def _solve(a, b):
    """Gaussian elimination with partial pivoting (small systems); NaN if singular."""
    m = b.size
    a = a.copy()
    x = b.copy()
    for c in range(m):
        p = c
        for r in range(c + 1, m):
            if abs(a[r, c]) > abs(a[p, c]):
                p = r
        if abs(a[p, c]) < 1e-300:
            return np.full(m, np.nan)
        if p != c:
            for q in range(m):
                a[c, q], a[p, q] = a[p, q], a[c, q]
            x[c], x[p] = x[p], x[c]
        for r in range(c + 1, m):
            f = a[r, c] / a[c, c]
            for q in range(c, m):
                a[r, q] -= f * a[c, q]
            x[r] -= f * x[c]
    for c in range(m - 1, -1, -1):
        s = x[c]
        for q in range(c + 1, m):
            s -= a[c, q] * x[q]
        x[c] = s / a[c, c]
    return x


# --------------------------------------------------------------------------- Cox


@nb.njit(cache=True)
def _risk_table(order, t, e, x, mask, r0, r1, d0, d1):
    """Per distinct event time (any order): at risk with x = 0 and x = 1, events with x = 0
    and x = 1 (binary ``x``); returns the number of event times."""
    n = order.size
    at0 = 0.0
    at1 = 0.0
    m = 0
    j = n - 1
    while j >= 0:
        i = order[j]
        if not mask[i]:
            j -= 1
            continue
        tj = t[i]
        ev0 = 0.0
        ev1 = 0.0
        while j >= 0 and (not mask[order[j]] or t[order[j]] == tj):
            ii = order[j]
            if mask[ii]:
                if x[ii] > 0.5:
                    at1 += 1.0
                    ev1 += e[ii]
                else:
                    at0 += 1.0
                    ev0 += e[ii]
            j -= 1
        if ev0 + ev1 > 0:
            r0[m] = at0
            r1[m] = at1
            d0[m] = ev0
            d1[m] = ev1
            m += 1
    return m


@nb.njit(cache=True)
def _shape(r0, r1, d0, d1, m):
    """0 finite, 1 +inf, -1 -inf, 2 flat (estimators.likelihood_shape for a binary x)."""
    varies = False
    top = True
    bottom = True
    for k in range(m):
        if r0[k] > 0 and r1[k] > 0:
            varies = True
        if d0[k] > 0 and r1[k] > 0:
            top = False
        if d1[k] > 0 and r0[k] > 0:
            bottom = False
    if m == 0 or not varies:
        return 2
    if top:
        return 1
    if bottom:
        return -1
    return 0


@nb.njit(cache=True)
def _efron(r0, r1, d0, d1, m, beta):
    """Efron log partial likelihood, gradient and Hessian in the coefficient of a binary x."""
    phi = math.exp(beta)
    ll = 0.0
    grad = 0.0
    hess = 0.0
    for k in range(m):
        d = d0[k] + d1[k]
        s0 = r0[k] + r1[k] * phi
        s1 = r1[k] * phi
        e0 = d0[k] + d1[k] * phi
        e1 = d1[k] * phi
        ll += beta * d1[k]
        grad += d1[k]
        for ell in range(int(d)):
            f = ell / d
            den = s0 - f * e0
            mean = (s1 - f * e1) / den
            ll -= math.log(den)
            grad -= mean
            hess -= mean - mean * mean  # x^2 = x for a binary covariate
    return ll, grad, hess


@nb.njit(cache=True)
def _cox1(order, t, e, x, mask, out, at, r0, r1, d0, d1):
    """HR, lower, upper, Wald P of a Cox fit on one binary covariate into out[at:at + 4]."""
    n_sub = 0
    events = 0.0
    n_one = 0
    for i in range(t.size):
        if mask[i]:
            n_sub += 1
            events += e[i]
            if x[i] > 0.5:
                n_one += 1
    for q in range(4):
        out[at + q] = np.nan
    if n_sub < 2 or events == 0 or n_one == 0 or n_one == n_sub:
        return
    m = _risk_table(order, t, e, x, mask, r0, r1, d0, d1)
    shape = _shape(r0, r1, d0, d1, m)
    if shape == 2:
        return
    if shape == 1 or shape == -1:
        out[at] = np.inf if shape == 1 else 0.0
        return
    beta = 0.0
    ll, g, h = _efron(r0, r1, d0, d1, m, beta)
    for _ in range(100):
        step = g / (-h)
        scale = 1.0
        while True:
            new = beta + scale * step
            ll_new, g_new, h_new = _efron(r0, r1, d0, d1, m, new)
            if ll_new >= ll - 1e-12 * abs(ll) or scale < 1e-6:
                break
            scale /= 2.0
        beta, ll, g, h = new, ll_new, g_new, h_new
        if abs(scale * step) < 1e-13 * max(1.0, abs(beta)):
            break
    # divergence flag: |beta| * sd(x) > limit (as estimators.cox)
    p1 = n_one / n_sub
    sd_x = math.sqrt(p1 * (1.0 - p1) * n_sub / (n_sub - 1))
    if abs(beta) * sd_x > DIVERGENCE_LIMIT:
        out[at] = np.inf if beta > 0 else 0.0
        return
    se = math.sqrt(1.0 / (-h))
    out[at] = _exp(beta)
    out[at + 1] = _exp(beta - Z95 * se)
    out[at + 2] = _exp(beta + Z95 * se)
    out[at + 3] = math.erfc(abs(beta / se) / math.sqrt(2.0)) if se > 0 else np.nan


@nb.njit(cache=True)
def _exp(v):
    return np.inf if v > 709.0 else math.exp(v)


# --------------------------------------------------------------------------- all statistics


@nb.njit(cache=True)
def _median_of(order, t, e, mask, times, surv):
    k = _km_table(order, t, e, mask, times, surv)
    return _r_median(times, surv, k)


@nb.njit(cache=True)
def statistics_vector(rec_t, rec_type, fu, dss_e, tma, bcat, igf, radiation, adjuvant, r0r1):
    """Every entry of :data:`STAT_NAMES`, in that order (NaN: not estimable / not reached)."""
    n = rec_t.size
    out = np.full(N_STATS, np.nan)
    order_r = np.argsort(rec_t, kind="mergesort")
    order_f = np.argsort(fu, kind="mergesort")
    rec_e = np.zeros(n)
    for i in range(n):
        if rec_type[i] > 0:
            rec_e[i] = 1.0
    times = np.empty(n)
    surv = np.empty(n)
    r0 = np.empty(n)
    r1 = np.empty(n)
    d0 = np.empty(n)
    d1 = np.empty(n)
    at = 0
    for code in range(1, 4):
        mask = rec_type == code
        out[at] = _median_of(order_r, rec_t, rec_e, mask, times, surv)
        at += 1
    out[at] = _logrank_p(order_r, rec_t, rec_e, rec_type, rec_type > 0)
    at += 1
    everyone = np.ones(n, np.bool_)
    k = _km_table(order_r, rec_t, rec_e, everyone, times, surv)
    out[at] = _r_median(times, surv, k)
    out[at + 1] = _step(times, surv, k, 60.0)
    at += 2
    k = _km_table(order_f, fu, dss_e, everyone, times, surv)
    out[at] = _step(times, surv, k, 12.0)
    out[at + 1] = _step(times, surv, k, 60.0)
    at += 2
    for code in range(4):
        mask = rec_type == code
        k = _km_table(order_f, fu, dss_e, mask, times, surv)
        if k > 0:
            out[at] = _step(times, surv, k, 24.0)
            out[at + 1] = _step(times, surv, k, 60.0)
        at += 2
    out[at] = np.median(fu) / 12.0
    out[at + 1] = fu.min() / 12.0
    out[at + 2] = fu.max() / 12.0
    at += 3
    for endpoint in range(2):
        t = rec_t if endpoint == 0 else fu
        e = rec_e if endpoint == 0 else dss_e
        order = order_r if endpoint == 0 else order_f
        for m in range(2):
            x = bcat if m == 0 else igf
            for level in range(2):
                mask = tma & (x == level)
                if mask.any():
                    out[at] = _median_of(order, t, e, mask, times, surv)
                at += 1
            _cox1(order, t, e, x, tma, out, at, r0, r1, d0, d1)
            at += 4
    _cox1(order_f, fu, dss_e, radiation, everyone, out, at, r0, r1, d0, d1)
    at += 4
    _cox1(order_f, fu, dss_e, adjuvant, r0r1, out, at, r0, r1, d0, d1)
    return out
