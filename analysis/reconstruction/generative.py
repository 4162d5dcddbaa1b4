"""The generative model of a surgical vLMS series: parameters, priors, likelihood, simulation.

One patient's story, given covariates ``x`` and parameters ``theta`` (times in months from the
primary surgery):

* **Accrual and data cut-off**: the surgery date ``s`` has density proportional to
  ``exp(g (s - 1993))`` on January 1993 - April 2012 (the paper's inclusion period; ``g`` lets
  referrals grow or shrink); the data cut-off ``D`` is one date for the whole series, between
  November 2012 and May 2015 (the paper's analysis period). Administrative follow-up is
  ``A = 12 (D - s)``.
* **Loss to follow-up**: ``L ~ Exponential(lambda_L)``, independent of everything else, with
  its own rate for the tissue-microarray patients (they were consented and sampled apart, and
  may have been followed differently). The censoring time ``min(A, L)`` therefore depends
  neither on markers nor on the outcome.
* **First recurrence**: Weibull proportional hazards ``H_r(t) = (t / lambda_r)^k_r exp(x b_r)``
  with ``x`` = (beta-catenin high, IGF-1R high, size >= 5 cm, R2 margin, radiation,
  chemotherapy), at risk from half a month after surgery (an earlier "recurrence" would be
  residual disease); its type (local only, distant only, local and distant) is multinomial-logit in
  ``log(t / 24)``, so types may differ in timing (cause-specific hazards stay proportional in
  ``x``).
* **Death from disease**, only after a recurrence: Weibull proportional hazards in the time
  since recurrence, ``H_d(u) = (u / lambda_d)^k_d exp(z b_d)`` with ``z`` = (beta-catenin,
  IGF-1R, radiation, chemotherapy, a distant component, R2 margin, log(t_r / 24)).
* **Death from other causes**: the US 2011 life table's Gompertz law for the patient's sex and
  age (:mod:`analysis.reconstruction.mortality`) times a series-wide multiplier ``m``.

The patient is followed to the first of censoring, other-cause death and (after a recurrence)
disease death. Markers are measured on the tissue microarray only; outside it they are latent
(Bernoulli with the TMA prevalence) and enter the hazards all the same. Unknown size or margin
enters at the cohort's known mean.

The observed-data log-likelihood of one patient (:func:`patient_loglik`) integrates the
surgery date and the loss time out, so the state of the sampler is just the cohort's columns:
alive at ``F``: ``log(f_A(F) + lambda_L P(A > F)) - lambda_L F``; dead at ``F``:
``log P(A > F) - lambda_L F``; plus the recurrence, type, post-recurrence and other-cause terms.
:func:`simulate_story` draws a story by the same law (used for proposals, which is why the
sampler's acceptance of such a proposal involves only the match to the paper).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np

# accrual and cut-off (the paper: "January 1993 to April 2012"; "analyzed ... from November
# 2012 to May 2015"), in decimal years
ACCRUAL_START = 1993.0
ACCRUAL_END = 2012.0 + 4.0 / 12.0
CUTOFF_RANGE = (2012.0 + 10.0 / 12.0, 2015.0 + 5.0 / 12.0)
MIN_RECURRENCE_MONTHS = 0.5
"""Patients are at risk of a first recurrence from this time on (earlier: residual disease)."""
TIME_STEP = 0.01
"""Times are kept on the CSV's 0.01-month grid."""

# covariate matrix columns
C_TMA, C_BCAT, C_IGF, C_SIZE, C_R2, C_RAD, C_CHEMO, C_ADJ = 0, 1, 2, 3, 4, 5, 6, 7
C_AGE, C_GA, C_GB, C_BLOCK, C_EXT, C_MARGIN, C_TREAT = 8, 9, 10, 11, 12, 13, 14
N_COV = 15
MARGIN_R0R1, MARGIN_R2, MARGIN_UNKNOWN = 0, 1, 2
ALIVE, DEAD_DISEASE, DEAD_OTHER = 0, 1, 2
STATUS_NAMES = ("alive", "dead_disease", "dead_other")


@dataclass(frozen=True)
class Prior:
    """One parameter: its name, what it means, and its prior (normal, or uniform on low-high)."""

    name: str
    meaning: str
    mean: float
    sd: float
    uniform: bool = False


PRIORS: tuple[Prior, ...] = (
    Prior("log_scale_rec", "log Weibull scale of first recurrence (months)", math.log(45.0), 0.5),
    Prior("log_shape_rec", "log Weibull shape of first recurrence", 0.0, 0.3),
    Prior("rec_beta_catenin", "log-HR of recurrence, beta-catenin high", 0.0, 1.0),
    Prior("rec_igf1r", "log-HR of recurrence, IGF-1R high", 0.0, 1.0),
    Prior("rec_size_ge5", "log-HR of recurrence, size >= 5 cm", 0.3, 0.5),
    Prior("rec_r2", "log-HR of recurrence, R2 margin", 0.4, 0.5),
    Prior("rec_radiation", "log-HR of recurrence, radiation", 0.0, 0.5),
    Prior("rec_chemo", "log-HR of recurrence, chemotherapy", 0.0, 0.5),
    Prior("type_distant", "log-odds distant only vs local only at 24 months", 0.5, 1.0),
    Prior("type_both", "log-odds local and distant vs local only at 24 months", 0.5, 1.0),
    Prior("type_distant_slope", "change of that log-odds per log(t / 24 months)", 0.0, 1.0),
    Prior("type_both_slope", "change of that log-odds per log(t / 24 months)", 0.0, 1.0),
    Prior("log_scale_death", "log Weibull scale of death after recurrence (months)", 3.6, 0.6),
    Prior("log_shape_death", "log Weibull shape of death after recurrence", 0.1, 0.3),
    Prior("death_beta_catenin", "log-HR of death after recurrence, beta-catenin high", 0.0, 1.0),
    Prior("death_igf1r", "log-HR of death after recurrence, IGF-1R high", 0.0, 1.0),
    Prior("death_radiation", "log-HR of death after recurrence, radiation", 0.0, 0.5),
    Prior("death_chemo", "log-HR of death after recurrence, chemotherapy", 0.0, 0.5),
    Prior("death_distant", "log-HR of death after recurrence, distant component", 0.5, 0.5),
    Prior("death_r2", "log-HR of death after recurrence, R2 margin", 0.3, 0.5),
    Prior("death_early", "log-HR of death per log(time to recurrence / 24 months)", -0.2, 0.5),
    Prior("log_other_multiplier", "log multiplier of US life-table mortality", 0.2, 0.3),
    Prior("log_loss_rate", "log rate of loss to follow-up (per month)", math.log(1 / 150), 0.8),
    Prior("loss_tma", "log ratio of that rate, TMA patients vs the others", 0.0, 0.7),
    Prior("accrual_growth", "growth of accrual per year", 0.0, 0.05),
    Prior("cutoff", "data cut-off (decimal year)", *CUTOFF_RANGE, uniform=True),
)
N_THETA = len(PRIORS)
THETA_INDEX = {p.name: i for i, p in enumerate(PRIORS)}
T_REC = 0  # log scale, log shape, then 6 log-HRs
T_TYPE = 8  # a_distant, a_both, slope_distant, slope_both
T_DEATH = 12  # log scale, log shape, then 7 log-HRs
T_OTHER, T_LOSS, T_LOSS_TMA, T_GROWTH, T_CUTOFF = 21, 22, 23, 24, 25
N_REC_COV = 6
N_DEATH_COV = 7


def prior_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean or low, sd or high, 1 where uniform) of every parameter, in :data:`PRIORS` order."""
    return (
        np.array([p.mean for p in PRIORS]),
        np.array([p.sd for p in PRIORS]),
        np.array([1.0 if p.uniform else 0.0 for p in PRIORS]),
    )


def draw_theta(rng: np.random.Generator) -> np.ndarray:
    """One draw of the parameters from their priors."""
    mean, sd, uniform = prior_arrays()
    normal = rng.normal(mean, sd)
    flat = rng.uniform(np.where(uniform > 0, mean, 0.0), np.where(uniform > 0, sd, 1.0))
    return np.where(uniform > 0, flat, normal)


@nb.njit(cache=True)
def log_prior(theta, mean, sd, uniform):
    """Log prior density (up to a constant); -inf outside a uniform's range."""
    total = 0.0
    for j in range(theta.size):
        if uniform[j] > 0:
            if theta[j] < mean[j] or theta[j] > sd[j]:
                return -np.inf
        else:
            z = (theta[j] - mean[j]) / sd[j]
            total -= 0.5 * z * z
    return total


# --------------------------------------------------------------------------- pieces


@nb.njit(cache=True)
def rec_lp(theta, x):
    """Linear predictor of the recurrence hazard."""
    b = T_REC + 2
    return (
        theta[b] * x[C_BCAT]
        + theta[b + 1] * x[C_IGF]
        + theta[b + 2] * x[C_SIZE]
        + theta[b + 3] * x[C_R2]
        + theta[b + 4] * x[C_RAD]
        + theta[b + 5] * x[C_CHEMO]
    )


@nb.njit(cache=True)
def death_lp(theta, x, rec_type, t_rec):
    """Linear predictor of the hazard of death after a recurrence of ``rec_type`` at ``t_rec``."""
    b = T_DEATH + 2
    distant = 1.0 if rec_type >= 2 else 0.0
    return (
        theta[b] * x[C_BCAT]
        + theta[b + 1] * x[C_IGF]
        + theta[b + 2] * x[C_RAD]
        + theta[b + 3] * x[C_CHEMO]
        + theta[b + 4] * distant
        + theta[b + 5] * x[C_R2]
        + theta[b + 6] * math.log(t_rec / 24.0)
    )


@nb.njit(cache=True)
def type_logprob(theta, rec_type, t_rec):
    """log P(type | recurrence at t_rec) (types 1 local, 2 distant, 3 local and distant)."""
    lt = math.log(t_rec / 24.0)
    e2 = theta[T_TYPE] + theta[T_TYPE + 2] * lt
    e3 = theta[T_TYPE + 1] + theta[T_TYPE + 3] * lt
    top = max(0.0, max(e2, e3))
    norm = top + math.log(math.exp(-top) + math.exp(e2 - top) + math.exp(e3 - top))
    if rec_type == 1:
        return -norm
    if rec_type == 2:
        return e2 - norm
    return e3 - norm


@nb.njit(cache=True)
def _weibull_logh_cumh(t, log_scale, log_shape, lp):
    k = math.exp(log_shape)
    z = math.log(t) - log_scale
    cum = math.exp(k * z + lp)
    logh = log_shape - log_scale + (k - 1.0) * z + lp
    return logh, cum


@nb.njit(cache=True)
def _weibull_cum(t, log_scale, log_shape, lp):
    return math.exp(math.exp(log_shape) * (math.log(t) - log_scale) + lp)


@nb.njit(cache=True)
def _accrual_cdf_pdf(s, growth):
    """CDF and density (per year) of the surgery date at ``s``."""
    width = ACCRUAL_END - ACCRUAL_START
    if s <= ACCRUAL_START:
        return 0.0, 0.0
    if s >= ACCRUAL_END:
        return 1.0, 0.0
    u = s - ACCRUAL_START
    if abs(growth) < 1e-9:
        return u / width, 1.0 / width
    denom = math.expm1(growth * width)
    return math.expm1(growth * u) / denom, growth * math.exp(growth * u) / denom


@nb.njit(cache=True)
def loss_rate(theta, x):
    """Rate of loss to follow-up (per month): one rate, another for the TMA patients."""
    return math.exp(theta[T_LOSS] + theta[T_LOSS_TMA] * x[C_TMA])


@nb.njit(cache=True)
def _other_cum(theta, x, months):
    """Integrated other-cause hazard over the first ``months`` after surgery."""
    m = math.exp(theta[T_OTHER])
    a, b, age = x[C_GA], x[C_GB], x[C_AGE]
    return m * a / b * (math.exp(b * (age + months / 12.0)) - math.exp(b * age))


@nb.njit(cache=True)
def patient_loglik(theta, x, rec_type, t_rec, fu, status):
    """Observed-data log-likelihood of one patient's story (see the module docstring)."""
    ll = 0.0
    lp_r = rec_lp(theta, x)
    at_risk_from = _weibull_cum(MIN_RECURRENCE_MONTHS, theta[T_REC], theta[T_REC + 1], lp_r)
    if rec_type > 0:
        if t_rec < MIN_RECURRENCE_MONTHS or t_rec > fu:
            return -np.inf
        logh, cum = _weibull_logh_cumh(t_rec, theta[T_REC], theta[T_REC + 1], lp_r)
        ll += logh - (cum - at_risk_from) + type_logprob(theta, rec_type, t_rec)
        u = fu - t_rec
        lp_d = death_lp(theta, x, rec_type, t_rec)
        if status == DEAD_DISEASE:
            if u <= 0.0:
                return -np.inf
            logh_d, cum_d = _weibull_logh_cumh(u, theta[T_DEATH], theta[T_DEATH + 1], lp_d)
            ll += logh_d - cum_d
        elif u > 0.0:
            k = math.exp(theta[T_DEATH + 1])
            ll -= math.exp(k * (math.log(u) - theta[T_DEATH]) + lp_d)
    else:
        if status == DEAD_DISEASE:
            return -np.inf
        end = max(fu, MIN_RECURRENCE_MONTHS)
        ll -= _weibull_cum(end, theta[T_REC], theta[T_REC + 1], lp_r) - at_risk_from
    ll -= _other_cum(theta, x, fu)
    if status == DEAD_OTHER:
        m = math.exp(theta[T_OTHER])
        ll += math.log(m * x[C_GA] / 12.0) + x[C_GB] * (x[C_AGE] + fu / 12.0)
    loss = loss_rate(theta, x)
    cdf, pdf = _accrual_cdf_pdf(theta[T_CUTOFF] - fu / 12.0, theta[T_GROWTH])
    inner = pdf / 12.0 + loss * cdf if status == ALIVE else cdf
    if inner <= 0.0:
        return -np.inf
    return ll + math.log(inner) - loss * fu


@nb.njit(cache=True)
def total_loglik(theta, X, rec_type, rec_t, fu, status, out):
    """Sum of :func:`patient_loglik` over the cohort; fills ``out`` with each patient's term."""
    total = 0.0
    for i in range(fu.size):
        v = patient_loglik(theta, X[i], rec_type[i], rec_t[i], fu[i], status[i])
        out[i] = v
        total += v
    return total


# --------------------------------------------------------------------------- simulation


@nb.njit(cache=True)
def _round_time(t):
    return math.floor(t / TIME_STEP + 0.5) * TIME_STEP


@nb.njit(cache=True)
def _draw_surgery(growth):
    width = ACCRUAL_END - ACCRUAL_START
    u = np.random.random()
    if abs(growth) < 1e-9:
        return ACCRUAL_START + u * width
    return ACCRUAL_START + math.log1p(u * math.expm1(growth * width)) / growth


@nb.njit(cache=True)
def _draw_weibull(log_scale, log_shape, lp, start):
    """A Weibull time given that it exceeds ``start`` (0 for none)."""
    k = math.exp(log_shape)
    e = np.random.exponential(1.0)
    if start > 0.0:
        e += _weibull_cum(start, log_scale, log_shape, lp)
    return math.exp(log_scale + (math.log(e) - lp) / k)


@nb.njit(cache=True)
def _draw_type(theta, t_rec):
    u = np.random.random()
    acc = 0.0
    for code in (1, 2):
        acc += math.exp(type_logprob(theta, code, t_rec))
        if u < acc:
            return code
    return 3


@nb.njit(cache=True)
def _draw_other_death(theta, x):
    """Months from surgery to other-cause death (inverse of the Gompertz cumulative hazard)."""
    m = math.exp(theta[T_OTHER])
    a, b, age = x[C_GA], x[C_GB], x[C_AGE]
    e = np.random.exponential(1.0)
    years = math.log(math.exp(b * age) + b * e / (m * a)) / b - age
    return 12.0 * years


@nb.njit(cache=True)
def draw_story(theta, x):
    """One story from the model: (recurrence type, recurrence months, follow-up months,
    status, surgery date); times on the 0.01 grid, NaN recurrence months when no recurrence."""
    s = _draw_surgery(theta[T_GROWTH])
    admin = 12.0 * (theta[T_CUTOFF] - s)
    loss = np.random.exponential(1.0) / loss_rate(theta, x)
    censor = min(admin, loss)
    other = _draw_other_death(theta, x)
    t_rec = _draw_weibull(theta[T_REC], theta[T_REC + 1], rec_lp(theta, x), MIN_RECURRENCE_MONTHS)
    if t_rec < min(censor, other):
        rec_type = _draw_type(theta, t_rec)
        u = _draw_weibull(
            theta[T_DEATH], theta[T_DEATH + 1], death_lp(theta, x, rec_type, t_rec), 0.0
        )
        death = t_rec + u
        end = min(censor, other, death)
        status = ALIVE
        if end == death:
            status = DEAD_DISEASE
        elif end == other:
            status = DEAD_OTHER
        t_r = _round_time(t_rec)
        fu = _round_time(end)
        if status == DEAD_DISEASE and fu <= t_r:
            fu = t_r + TIME_STEP
        return rec_type, t_r, max(fu, t_r), status, s
    end = min(censor, other)
    status = DEAD_OTHER if other < censor else ALIVE
    return 0, np.nan, _round_time(end), status, s


@nb.njit(cache=True)
def draw_story_given(theta, x, rec_type, low, high, tries):
    """A story of the given recurrence class (type, or 0 for none) with follow-up in
    ``[low, high]``, by rejection from :func:`draw_story`; ok = False after ``tries`` misses."""
    for _ in range(tries):
        code, t_r, fu, status, _s = draw_story(theta, x)
        if code != rec_type or fu < low or fu > high:
            continue
        if code > 0 and t_r < MIN_RECURRENCE_MONTHS:
            continue
        if code == 0:
            t_r = fu
        return True, t_r, fu, status
    return False, 0.0, 0.0, ALIVE


@nb.njit(cache=True)
def draw_surgery_date(theta, x, fu, status):
    """The surgery date given the end of follow-up and status (its conditional law): alive at
    ``fu`` is administrative censoring (``s = D - fu / 12``) with probability
    ``f_A / (f_A + lambda_L P(A > fu))``, else ``s`` is drawn below ``D - fu / 12``."""
    cut = theta[T_CUTOFF] - fu / 12.0
    cdf, pdf = _accrual_cdf_pdf(cut, theta[T_GROWTH])
    if status == ALIVE:
        loss = loss_rate(theta, x)
        p_admin = (pdf / 12.0) / (pdf / 12.0 + loss * cdf)
        if np.random.random() < p_admin:
            return cut
    u = np.random.random() * cdf
    growth = theta[T_GROWTH]
    width = ACCRUAL_END - ACCRUAL_START
    if abs(growth) < 1e-9:
        return ACCRUAL_START + u * width
    return ACCRUAL_START + math.log1p(u * math.expm1(growth * width)) / growth
