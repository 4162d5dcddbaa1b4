"""Approximate posterior sampling of a cohort given the paper: annealed ABC-MCMC with the
generative model's likelihood in the target.

Why this scheme
---------------
The paper is a set of rounded summaries ``S_obs`` of one unknown cohort. The posterior over
cohorts ``c`` and model parameters ``theta`` is

    pi(c, theta | paper) ∝ p(theta) p(c | theta) 1[round(S(c)) = S_obs]  (and exact counts),

the indicator being the likelihood of a printed number given the cohort: exact Bayesian
conditioning on rounded values is an ABC kernel whose tolerance is the rounding. We sample it
by Markov chain Monte Carlo on the cohort itself (its columns are the state), with three
choices argued here:

* **ABC-MCMC, not rejection ABC or population Monte Carlo.** With ~45 printed statistics at
  rounding precision and 63 patients, a cohort drawn from the model matches them all with
  probability far below anything a rejection or importance sampler could wait for; a Markov
  chain that changes one or two patients at a time keeps what already matches.
* **The model's likelihood is in the target** (data augmentation rather than likelihood-free):
  the generative model's density of the complete cohort (:func:`generative.patient_loglik`) is
  available in closed form once the surgery date and loss time are integrated out, so every
  move is accepted with ``p(c' | theta) / p(c | theta)`` times the kernel ratio. Plausibility
  is then part of what is sampled: among the cohorts that reproduce the paper, plausible ones
  (independent censoring, proportional hazards, other-cause deaths at life-table rates) are
  proportionally more likely, and ``theta`` is updated given the cohort by Metropolis steps
  that do not touch the statistics at all. One proposal draws a patient's whole story from the
  model given its recurrence class: there the likelihood cancels and only the kernel decides.
* **Annealing the kernel, not the likelihood.** The chain starts from a draw of the model with
  the exact published counts and a flat kernel; the kernel's weight ``beta`` rises
  geometrically over the first ``anneal`` iterations and is then held for ``hold`` more
  (sampling at the final kernel). The final kernel is uniform inside each target's tolerance
  interval (zero cost: inside, the cohort is drawn from the model alone) with a Gaussian
  shoulder of width equal to the rounding half-width outside, capped to linear growth beyond
  three widths so that a target that cannot be met does not dominate; the state at the last
  iteration is the member (not the best state seen).

**An explicit plausibility term: independent censoring by marker.** The model's censoring
(accrual, cut-off, loss to follow-up) does not depend on the markers, but its likelihood cannot
defend that: among the TMA patients every censoring time has the same marginal density, so the
likelihood is unchanged when the short follow-ups are handed to one marker group and the long
ones to the other. Independence shows only in how *many* arrangements look independent, a few
nats of entropy, while one Table 2 target met is worth ``beta`` (30) nats at the final kernel.
And the targets reward the dependence: the beta-catenin DSS HR 5.33 with a CI to 29.3 (P .06)
asks for few informative events, and the chain supplies them by ending every beta-catenin-high
follow-up (deaths and censorings) before the low group's disease deaths, which then meet a risk
set of low patients only and inform nothing (measured on the 30 members of seed 20260101
before this term: median 7 low and 5 high deaths, yet HR 5.3 with CI to ~29, because 5 of the
7 low deaths come after the last high patient's follow-up; no high patient followed past 76
months in 28 of 30; censoring log-rank by beta-catenin rejected in 8 of 30). The
authors' KM and Cox analyses assume non-informative censoring, so the reconstruction adds it
as a soft constraint (:func:`censoring_cost`): for each Table 2 marker, the log-rank
chi-square of the DSS censoring distributions (reverse Kaplan-Meier) of its two groups among
the TMA patients is free up to its null quantile at P = ``censoring_free_p`` (0.1) and costs
``log(1 + (excess / 0.5)^2)`` beyond (no step at the edge: it is a plausibility term, not a
printed number), scaled by ``beta`` like the kernel. The plausibility report's censoring check
(the same log-rank, lifelines) is therefore partly true by construction; what it still tells is
whether the targets could be met without marker-dependent censoring.

Each ensemble member is an independent chain from its own seed: the ensemble is a sample of
(approximate) posterior draws, not of optima. Everything random runs in numba's generator,
seeded per member, so a seed gives the same member on any number of workers.

Exact counts and loader rules hold by construction: covariates and recurrence classes are
dealt with the published counts and only ever exchanged between two patients of the same block
(TMA or not); times stay on the 0.01-month grid inside the published follow-up range, whose two
ends are held by two patients; a disease death needs a recurrence before it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numba as nb
import numpy as np

from analysis.reconstruction import generative as gm
from analysis.reconstruction.fast_stats import logrank_chisq, statistics_vector

U_CAP = 30.0
"""Standardised distance charged for a statistic that is not finite (not reached, infinite)."""

MOVES: tuple[str, ...] = (
    "recurrence_time",
    "followup_time",
    "shift_patient",
    "vital_status",
    "swap_outcomes",
    "swap_recurrence_type",
    "swap_marker",
    "flip_latent_marker",
    "swap_treatment",
    "swap_margin",
    "swap_age",
    "redraw_story",
)
(
    M_REC_TIME,
    M_FU_TIME,
    M_SHIFT,
    M_STATUS,
    M_SWAP_OUTCOME,
    M_SWAP_TYPE,
    M_SWAP_MARKER,
    M_FLIP_LATENT,
    M_SWAP_TREAT,
    M_SWAP_MARGIN,
    M_SWAP_AGE,
    M_REDRAW,
) = range(len(MOVES))
STEP_SCALES = np.array([0.01, 0.05, 0.2, 0.6])
"""sd of the log-time jitter, one picked at random per proposal (a symmetric mixture)."""


@dataclass(frozen=True)
class KernelTargets:
    """The calibrated statistics as arrays (intervals on the scale given by ``log_scale``).

    ``index`` points into :data:`analysis.reconstruction.fast_stats.STAT_NAMES`. A statistic is
    within tolerance inside ``[lo1, hi1]`` or (when finite) ``[lo2, hi2]``; outside, the cost
    grows with the distance in units of ``sigma``.
    """

    index: np.ndarray
    log_scale: np.ndarray
    lo1: np.ndarray
    hi1: np.ndarray
    lo2: np.ndarray
    hi2: np.ndarray
    sigma: np.ndarray
    weight: np.ndarray

    @property
    def size(self) -> int:
        return int(self.index.size)


@dataclass
class ChainSettings:
    """Length and shape of one member's chain (a fixed number of iterations, never a clock)."""

    anneal: int = 450_000
    hold: int = 50_000
    beta_start: float = 0.3
    beta_end: float = 30.0
    theta_every: int = 50
    redraw_tries: int = 40
    censoring_weight: float = 1.0
    censoring_free_p: float = 0.1
    censoring_shoulder: float = 0.5
    move_weights: dict[str, float] = field(
        default_factory=lambda: {
            "recurrence_time": 0.20,
            "followup_time": 0.18,
            "shift_patient": 0.08,
            "vital_status": 0.10,
            "swap_outcomes": 0.10,
            "swap_recurrence_type": 0.04,
            "swap_marker": 0.06,
            "flip_latent_marker": 0.03,
            "swap_treatment": 0.04,
            "swap_margin": 0.03,
            "swap_age": 0.04,
            "redraw_story": 0.10,
        }
    )

    @property
    def iterations(self) -> int:
        return self.anneal + self.hold

    def censoring_term(self) -> np.ndarray:
        """(weight, free chi-square, shoulder) of :func:`censoring_cost`: the chi-square of
        ``censoring_free_p`` on one degree of freedom is free."""
        from scipy.stats import chi2

        free = float(chi2.isf(self.censoring_free_p, 1))
        return np.array([self.censoring_weight, free, self.censoring_shoulder], float)

    def move_cumulative(self) -> np.ndarray:
        w = np.array([self.move_weights.get(m, 0.0) for m in MOVES], float)
        return np.cumsum(w / w.sum())


@dataclass
class ChainState:
    """Everything the chain mutates (arrays of the cohort and the parameters)."""

    theta: np.ndarray
    X: np.ndarray
    tma: np.ndarray
    r0r1: np.ndarray
    rec_type: np.ndarray
    rec_t: np.ndarray
    fu: np.ndarray
    status: np.ndarray
    pinned: np.ndarray

    def dss_event(self) -> np.ndarray:
        return (self.status == gm.DEAD_DISEASE).astype(float)


@dataclass
class ChainResult:
    """Diagnostics of one chain."""

    penalty: float
    loglik: float
    proposed: np.ndarray
    accepted: np.ndarray
    theta_accepted: int
    theta_proposed: int
    trace: np.ndarray  # rows: iteration, beta, penalty, log-likelihood


# --------------------------------------------------------------------------- kernel


@nb.njit(cache=True)
def _distance(x, lo, hi):
    if x < lo:
        return lo - x
    if x > hi:
        return x - hi
    return 0.0


@nb.njit(cache=True)
def kernel_cost(stats, index, log_scale, lo1, hi1, lo2, hi2, sigma, weight, met):
    """Sum over targets of ``weight * (1 + log(1 + (d / sigma)^2))`` for each statistic at
    distance ``d > 0`` from its tolerance intervals (0 inside); ``met[j]`` is set when
    statistic ``j`` lies inside. A statistic that is not finite counts as :data:`U_CAP`
    shoulder widths away."""
    total = 0.0
    for j in range(index.size):
        v = stats[index[j]]
        ok = math.isfinite(v) and (log_scale[j] == 0 or v > 0.0)
        if not ok:
            u = U_CAP
        else:
            x = math.log(v) if log_scale[j] else v
            d = _distance(x, lo1[j], hi1[j])
            if math.isfinite(lo2[j]):
                d = min(d, _distance(x, lo2[j], hi2[j]))
            u = d / sigma[j]
        met[j] = ok and u == 0.0
        if not met[j]:
            total += weight[j] * (1.0 + math.log1p(u * u))
    return total


def cost_of(stats: np.ndarray, targets: KernelTargets) -> tuple[float, np.ndarray]:
    """(kernel cost, met flags) of a statistics vector."""
    met = np.zeros(targets.size, np.bool_)
    cost = kernel_cost(
        stats,
        targets.index,
        targets.log_scale,
        targets.lo1,
        targets.hi1,
        targets.lo2,
        targets.hi2,
        targets.sigma,
        targets.weight,
        met,
    )
    return float(cost), met


# --------------------------------------------------------------------------- the chain


@nb.njit(cache=True)
def seed_numba(seed):
    """Seed numba's own generator (used by everything compiled here)."""
    np.random.seed(seed)


@nb.njit(cache=True)
def censoring_cost(fu, dss_e, tma, bcat, igf, term):
    """The plausibility term of independent censoring (see the module docstring): for each
    marker, the log-rank chi-square ``X`` of the DSS censoring distributions (reverse
    Kaplan-Meier: alive or dead of another cause is the event) of its two groups among the TMA
    patients costs ``weight * log(1 + ((X - free) / shoulder)^2)`` above ``free``, nothing
    below; ``term`` = (weight, free, shoulder)."""
    weight, free, shoulder = term[0], term[1], term[2]
    if weight <= 0.0:
        return 0.0
    order = np.argsort(fu, kind="mergesort")
    cens_e = 1.0 - dss_e
    total = 0.0
    for m in range(2):
        x = bcat if m == 0 else igf
        group = np.zeros(x.size, np.int64)
        for i in range(x.size):
            group[i] = 1 if x[i] > 0.5 else 0
        chisq, dof = logrank_chisq(order, fu, cens_e, group, tma)
        if dof > 0 and math.isfinite(chisq) and chisq > free:
            u = (chisq - free) / shoulder
            total += weight * math.log1p(u * u)
    return total


@nb.njit(cache=True)
def _censoring_cost(X, tma, fu, dss_e, cens):
    return censoring_cost(fu, dss_e, tma, X[:, gm.C_BCAT], X[:, gm.C_IGF], cens)


@nb.njit(cache=True)
def _stats_cost(X, tma, r0r1, rec_type, rec_t, fu, dss_e, tg, met):
    stats = statistics_vector(
        rec_t,
        rec_type,
        fu,
        dss_e,
        tma,
        X[:, gm.C_BCAT],
        X[:, gm.C_IGF],
        X[:, gm.C_RAD],
        X[:, gm.C_ADJ],
        r0r1,
    )
    return kernel_cost(stats, tg[0], tg[1], tg[2], tg[3], tg[4], tg[5], tg[6], tg[7], met)


@nb.njit(cache=True)
def _partner(X, i):
    """Another patient of ``i``'s block, uniformly."""
    n = X.shape[0]
    while True:
        j = np.random.randint(n)
        if j != i and X[j, gm.C_BLOCK] == X[i, gm.C_BLOCK]:
            return j


@nb.njit(cache=True)
def _jitter(t):
    s = STEP_SCALES[np.random.randint(STEP_SCALES.size)]
    return gm._round_time(t * math.exp(s * np.random.standard_normal()))


@nb.njit(cache=True)
def _fits(rec_type, t_r, fu, status, low, high):
    """Loader rules and the follow-up range for one patient's times."""
    if fu < low or fu > high:
        return False
    if rec_type > 0:
        if t_r < gm.MIN_RECURRENCE_MONTHS or t_r > fu:
            return False
        if status == gm.DEAD_DISEASE and fu - t_r < gm.TIME_STEP - 1e-9:
            return False
    return True


@nb.njit(cache=True)
def run_chain(
    seed,
    anneal,
    hold,
    beta_start,
    beta_end,
    theta_every,
    redraw_tries,
    move_cum,
    theta,
    prior_mean,
    prior_sd,
    prior_uniform,
    theta_step,
    X,
    tma,
    r0r1,
    rec_type,
    rec_t,
    fu,
    status,
    pinned,
    low,
    high,
    p_latent,
    r2_mean,
    tg,
    cens,
    proposed,
    accepted,
    trace,
    trace_every,
):
    """Run one annealed ABC-MCMC chain in place; returns (kernel cost, log-likelihood, theta
    acceptances, theta proposals). See the module docstring."""
    np.random.seed(seed)
    n = fu.size
    n_tg = tg[0].size
    met = np.zeros(n_tg, np.bool_)
    dss_e = np.zeros(n)
    for i in range(n):
        dss_e[i] = 1.0 if status[i] == gm.DEAD_DISEASE else 0.0
    ll = np.zeros(n)
    ll_new = np.zeros(n)
    ll_total = gm.total_loglik(theta, X, rec_type, rec_t, fu, status, ll)
    lprior = gm.log_prior(theta, prior_mean, prior_sd, prior_uniform)
    k_cost = _stats_cost(X, tma, r0r1, rec_type, rec_t, fu, dss_e, tg, met)
    c_cost = _censoring_cost(X, tma, fu, dss_e, cens)
    cost = k_cost + c_cost
    theta_acc = 0
    theta_prop = 0
    # backups of two patients' states
    b_int = np.zeros((2, 3), np.int64)  # rec_type, status, pinned
    b_f = np.zeros((2, 3))  # rec_t, fu, dss_e
    b_x = np.zeros((2, X.shape[1]))
    b_r = np.zeros(2, np.bool_)
    total = anneal + hold
    n_trace = 0
    for it in range(total):
        frac = min(1.0, it / anneal) if anneal > 0 else 1.0
        beta = beta_start * (beta_end / beta_start) ** frac
        if trace_every > 0 and it % trace_every == 0 and n_trace < trace.shape[0]:
            trace[n_trace, 0] = it
            trace[n_trace, 1] = beta
            trace[n_trace, 2] = cost
            trace[n_trace, 3] = ll_total
            n_trace += 1
        if theta_every > 0 and it % theta_every == 0:
            for j in range(theta.size):
                old = theta[j]
                theta[j] = old + theta_step[j] * np.random.standard_normal()
                lp_new = gm.log_prior(theta, prior_mean, prior_sd, prior_uniform)
                theta_prop += 1
                if lp_new == -np.inf:
                    theta[j] = old
                    continue
                tot_new = gm.total_loglik(theta, X, rec_type, rec_t, fu, status, ll_new)
                if math.log(np.random.random()) < tot_new + lp_new - ll_total - lprior:
                    ll_total = tot_new
                    lprior = lp_new
                    ll[:] = ll_new
                    theta_acc += 1
                else:
                    theta[j] = old
        u = np.random.random()
        move = 0
        while move_cum[move] < u:
            move += 1
        i = np.random.randint(n)
        j = -1
        log_extra = 0.0  # proposal and prior terms of the acceptance ratio
        stats_change = True
        lik_cancels = False
        # back up patient i (and j below) before changing anything
        for k, p in ((0, i), (1, i)):
            b_int[k, 0] = rec_type[p]
            b_int[k, 1] = status[p]
            b_int[k, 2] = 1 if pinned[p] else 0
            b_f[k, 0] = rec_t[p]
            b_f[k, 1] = fu[p]
            b_f[k, 2] = dss_e[p]
            b_x[k, :] = X[p, :]
            b_r[k] = r0r1[p]
        valid = True
        if move == M_REC_TIME:
            if rec_type[i] == 0:
                valid = False
            else:
                new = _jitter(rec_t[i])
                if not _fits(rec_type[i], new, fu[i], status[i], low, high):
                    valid = False
                else:
                    log_extra = math.log(new / rec_t[i])
                    rec_t[i] = new
        elif move == M_FU_TIME:
            if pinned[i]:
                valid = False
            else:
                new = _jitter(fu[i])
                t_new = new if rec_type[i] == 0 else rec_t[i]
                if not _fits(rec_type[i], t_new, new, status[i], low, high):
                    valid = False
                else:
                    log_extra = math.log(new / fu[i])
                    fu[i] = new
                    rec_t[i] = t_new
        elif move == M_SHIFT:
            if pinned[i] or rec_type[i] == 0:
                valid = False
            else:
                c = math.exp(
                    STEP_SCALES[np.random.randint(STEP_SCALES.size)] * np.random.standard_normal()
                )
                new_t = gm._round_time(rec_t[i] * c)
                new_f = gm._round_time(fu[i] * c)
                if not _fits(rec_type[i], new_t, new_f, status[i], low, high):
                    valid = False
                else:
                    log_extra = math.log(new_t / rec_t[i]) + math.log(new_f / fu[i])
                    rec_t[i] = new_t
                    fu[i] = new_f
        elif move == M_STATUS:
            old = status[i]
            if rec_type[i] == 0:
                new_s = gm.DEAD_OTHER if old == gm.ALIVE else gm.ALIVE
            else:
                pick = np.random.randint(2)
                new_s = pick if pick < old else pick + 1
            if not _fits(rec_type[i], rec_t[i], fu[i], new_s, low, high):
                valid = False
            else:
                stats_change = old == gm.DEAD_DISEASE or new_s == gm.DEAD_DISEASE
                status[i] = new_s
                dss_e[i] = 1.0 if new_s == gm.DEAD_DISEASE else 0.0
        elif move == M_REDRAW:
            if pinned[i]:
                valid = False
            else:
                ok, t_r, f_new, s_new = gm.draw_story_given(
                    theta, X[i], rec_type[i], low, high, redraw_tries
                )
                if not ok:
                    valid = False
                else:
                    rec_t[i] = t_r
                    fu[i] = f_new
                    status[i] = s_new
                    dss_e[i] = 1.0 if s_new == gm.DEAD_DISEASE else 0.0
                    lik_cancels = True
        elif move == M_FLIP_LATENT:
            if tma[i]:
                valid = False
            else:
                col = gm.C_BCAT if np.random.random() < 0.5 else gm.C_IGF
                p = p_latent[0] if col == gm.C_BCAT else p_latent[1]
                old_v = X[i, col]
                X[i, col] = 1.0 - old_v
                log_extra = math.log(p / (1 - p)) if old_v == 0.0 else math.log((1 - p) / p)
                stats_change = False
        else:
            j = _partner(X, i)
            b_int[1, 0] = rec_type[j]
            b_int[1, 1] = status[j]
            b_int[1, 2] = 1 if pinned[j] else 0
            b_f[1, 0] = rec_t[j]
            b_f[1, 1] = fu[j]
            b_f[1, 2] = dss_e[j]
            b_x[1, :] = X[j, :]
            b_r[1] = r0r1[j]
            if move == M_SWAP_OUTCOME:
                rec_type[i], rec_type[j] = rec_type[j], rec_type[i]
                rec_t[i], rec_t[j] = rec_t[j], rec_t[i]
                fu[i], fu[j] = fu[j], fu[i]
                status[i], status[j] = status[j], status[i]
                dss_e[i], dss_e[j] = dss_e[j], dss_e[i]
                pinned[i], pinned[j] = pinned[j], pinned[i]
            elif move == M_SWAP_TYPE:
                if rec_type[i] == 0 or rec_type[j] == 0 or rec_type[i] == rec_type[j]:
                    valid = False
                else:
                    rec_type[i], rec_type[j] = rec_type[j], rec_type[i]
            elif move == M_SWAP_MARKER:
                col = gm.C_BCAT if np.random.random() < 0.5 else gm.C_IGF
                if not tma[i] or X[i, col] == X[j, col]:
                    valid = False
                else:
                    X[i, col], X[j, col] = X[j, col], X[i, col]
            elif move == M_SWAP_TREAT:
                if X[i, gm.C_EXT] != X[j, gm.C_EXT] or X[i, gm.C_TREAT] == X[j, gm.C_TREAT]:
                    valid = False
                else:
                    for col in (gm.C_RAD, gm.C_CHEMO, gm.C_ADJ, gm.C_TREAT):
                        X[i, col], X[j, col] = X[j, col], X[i, col]
            elif move == M_SWAP_MARGIN:
                if X[i, gm.C_MARGIN] == X[j, gm.C_MARGIN]:
                    valid = False
                else:
                    for col in (gm.C_MARGIN, gm.C_R2):
                        X[i, col], X[j, col] = X[j, col], X[i, col]
                    r0r1[i], r0r1[j] = r0r1[j], r0r1[i]
            elif move == M_SWAP_AGE:
                if X[i, gm.C_AGE] == X[j, gm.C_AGE]:
                    valid = False
                else:
                    X[i, gm.C_AGE], X[j, gm.C_AGE] = X[j, gm.C_AGE], X[i, gm.C_AGE]
                    stats_change = False
        proposed[move] += 1
        if not valid:
            continue
        # evaluate
        li = gm.patient_loglik(theta, X[i], rec_type[i], rec_t[i], fu[i], status[i])
        lj = 0.0
        if j >= 0:
            lj = gm.patient_loglik(theta, X[j], rec_type[j], rec_t[j], fu[j], status[j])
        d_lik = li - ll[i] + (lj - ll[j] if j >= 0 else 0.0)
        new_k = k_cost
        new_c = c_cost
        if stats_change:
            new_k = _stats_cost(X, tma, r0r1, rec_type, rec_t, fu, dss_e, tg, met)
            if tma[i] or (j >= 0 and tma[j]):  # the censoring term sees TMA patients only
                new_c = _censoring_cost(X, tma, fu, dss_e, cens)
        new_cost = new_k + new_c
        log_a = -beta * (new_cost - cost) + log_extra
        if not lik_cancels:
            log_a += d_lik
        if math.isfinite(d_lik) and math.log(np.random.random()) < log_a:
            accepted[move] += 1
            cost = new_cost
            k_cost = new_k
            c_cost = new_c
            ll_total += d_lik
            ll[i] = li
            if j >= 0:
                ll[j] = lj
        else:
            for k in range(2 if j >= 0 else 1):
                p = i if k == 0 else j
                rec_type[p] = b_int[k, 0]
                status[p] = b_int[k, 1]
                pinned[p] = b_int[k, 2] == 1
                rec_t[p] = b_f[k, 0]
                fu[p] = b_f[k, 1]
                dss_e[p] = b_f[k, 2]
                X[p, :] = b_x[k, :]
                r0r1[p] = b_r[k]
    ll_total = gm.total_loglik(theta, X, rec_type, rec_t, fu, status, ll)
    cost = _stats_cost(X, tma, r0r1, rec_type, rec_t, fu, dss_e, tg, met)
    cost += _censoring_cost(X, tma, fu, dss_e, cens)
    return cost, ll_total, theta_acc, theta_prop


def target_tuple(targets: KernelTargets) -> tuple[np.ndarray, ...]:
    """The kernel's arrays in the order the compiled chain reads them."""
    return (
        targets.index,
        targets.log_scale,
        targets.lo1,
        targets.hi1,
        targets.lo2,
        targets.hi2,
        targets.sigma,
        targets.weight,
    )


def theta_steps() -> np.ndarray:
    """Random-walk step of each parameter: half its prior sd (a fifth of a uniform's range)."""
    mean, sd, uniform = gm.prior_arrays()
    return np.where(uniform > 0, (sd - mean) / 5.0, sd / 2.0)


def run(
    state: ChainState,
    targets: KernelTargets,
    settings: ChainSettings,
    seed: int,
    low: float,
    high: float,
    p_latent: np.ndarray,
    r2_mean: float,
    trace_every: int = 1000,
) -> ChainResult:
    """Run one chain on ``state`` (modified in place)."""
    mean, sd, uniform = gm.prior_arrays()
    proposed = np.zeros(len(MOVES), np.int64)
    accepted = np.zeros(len(MOVES), np.int64)
    trace = np.zeros((settings.iterations // max(1, trace_every) + 1, 4))
    cost, ll, t_acc, t_prop = run_chain(
        int(seed),
        int(settings.anneal),
        int(settings.hold),
        float(settings.beta_start),
        float(settings.beta_end),
        int(settings.theta_every),
        int(settings.redraw_tries),
        settings.move_cumulative(),
        state.theta,
        mean,
        sd,
        uniform,
        theta_steps(),
        state.X,
        state.tma,
        state.r0r1,
        state.rec_type,
        state.rec_t,
        state.fu,
        state.status,
        state.pinned,
        float(low),
        float(high),
        np.asarray(p_latent, float),
        float(r2_mean),
        target_tuple(targets),
        settings.censoring_term(),
        proposed,
        accepted,
        trace,
        int(trace_every),
    )
    return ChainResult(float(cost), float(ll), proposed, accepted, int(t_acc), int(t_prop), trace)
