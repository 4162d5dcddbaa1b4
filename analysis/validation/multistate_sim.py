"""Simulated illness-death cohorts with known truth (for the multi-state model and Aalen-Johansen).

Each patient starts event-free at surgery (time 0). The hazards out of the event-free state (one
per recurrence type, one per cause of death) are piecewise constant in time since surgery; the
hazards out of the recurrence state (one per cause of death) are piecewise constant in time since
recurrence (clock reset) and depend on the recurrence type. Binary baseline covariates multiply
every hazard by ``exp(x . beta[transition])``; the type acts on the hazards out of recurrence
through ``beta[transition, type indicator]``, the layout of ``models.multistate``.

The event times are drawn by inverting the cumulative hazard (an exponential variate spent across
the intervals), independently of the model code, so that the model's exact derived quantities and
the Aalen-Johansen estimator can both be checked against it. ``monte_carlo_occupation`` gives the
truth of the state occupation probabilities from a large uncensored population (Monte Carlo error
``sqrt(p (1 - p) / n)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class IllnessDeathTruth:
    """The generating model.

    Attributes
    ----------
    cuts_start, cuts_ill
        Interval starts (months) on the two clocks; the last interval is open.
    start_hazard
        Baseline hazards per month out of the event-free state, shape ``(R + K, J0)``: entry into
        recurrence with each type, then each cause of death.
    ill_hazard
        Baseline hazards per month out of recurrence (reference type), shape ``(K, J1)``.
    beta
        Log-HRs, shape ``(1 + 2K, p + R - 1 + G - 1)``: rows ``start->ill``, ``start->death_k``,
        ``ill->death_k``; columns the baseline covariates, the type indicators, then the
        indicators of the recurrence-time groups.
    covariate_prob
        P(x_j = 1) of each binary baseline covariate (independent).
    censor_min, censor_max
        Administrative censoring time ~ Uniform(censor_min, censor_max) from surgery.
    marks, deaths, covariates
        Names.
    entry_cuts
        Boundaries of the recurrence-time groups (``G = len + 1``; right-closed groups).
    """

    cuts_start: np.ndarray
    cuts_ill: np.ndarray
    start_hazard: np.ndarray
    ill_hazard: np.ndarray
    beta: np.ndarray
    covariate_prob: np.ndarray
    censor_min: float = 24.0
    censor_max: float = 150.0
    marks: tuple[str, ...] = ("local", "distant", "local_distant")
    deaths: tuple[str, ...] = ("dead_disease", "dead_other")
    covariates: tuple[str, ...] = field(default=("size_ge5cm",))
    entry_cuts: tuple[float, ...] = ()

    @property
    def n_marks(self) -> int:
        return len(self.marks)

    @property
    def n_deaths(self) -> int:
        return len(self.deaths)

    @property
    def n_covariates(self) -> int:
        return len(self.covariates)


@dataclass(frozen=True)
class SimulatedPaths:
    """Observed paths (months from surgery), the arrays of ``IllnessDeathPaths``."""

    ill_time: np.ndarray
    ill_mark: np.ndarray
    exit_time: np.ndarray
    death: np.ndarray
    x: np.ndarray


def vlms_like_truth(
    recurrence_log_hr: float = float(np.log(1.8)),
    censor_min: float = 24.0,
    censor_max: float = 150.0,
    late_recurrence_log_hr: float | None = None,
) -> IllnessDeathTruth:
    """A truth shaped like the vLMS cohort: about two thirds recur within 5 years (distant and
    local-and-distant earlier than local alone), disease deaths mostly after recurrence and
    worse after distant disease; one binary covariate (tumour size >= 5 cm) on recurrence and on
    disease death after recurrence. ``late_recurrence_log_hr``: a recurrence after 24 months
    changes the hazard of disease death after it by this log-HR (recurrence-time groups
    ``(0, 24]``, ``(24, inf)``); None: no such effect (semi-Markov).
    """
    cuts_start = np.array([0.0, 6.0, 12.0, 24.0, 36.0, 60.0, 84.0, 120.0])
    cuts_ill = np.array([0.0, 6.0, 12.0, 24.0, 36.0, 60.0])
    start_hazard = np.array(
        [
            [0.0013, 0.0016, 0.0020, 0.0023, 0.0023, 0.0020, 0.0016, 0.0013],  # local
            [0.0065, 0.0072, 0.0065, 0.0052, 0.0039, 0.0026, 0.0020, 0.0013],  # distant
            [0.0078, 0.0078, 0.0065, 0.0052, 0.0039, 0.0026, 0.0020, 0.0013],  # local+distant
            [0.0004, 0.0004, 0.0004, 0.0004, 0.0004, 0.0004, 0.0004, 0.0004],  # disease death
            [0.0010, 0.0010, 0.0012, 0.0012, 0.0015, 0.0015, 0.0020, 0.0020],  # other death
        ]
    )
    ill_hazard = np.array(
        [
            [0.008, 0.010, 0.012, 0.012, 0.010, 0.008],  # disease death after local recurrence
            [0.0015, 0.0015, 0.0015, 0.0015, 0.0015, 0.0015],  # other death after recurrence
        ]
    )
    beta = np.array(
        [
            # size,  distant, local+distant
            [recurrence_log_hr, 0.0, 0.0],  # free -> recurrence
            [0.0, 0.0, 0.0],  # free -> dead of disease
            [0.0, 0.0, 0.0],  # free -> dead of other causes
            [np.log(1.3), np.log(1.6), np.log(2.4)],  # recurrence -> dead of disease
            [0.0, 0.0, 0.0],  # recurrence -> dead of other causes
        ]
    )
    entry_cuts: tuple[float, ...] = ()
    if late_recurrence_log_hr is not None:
        entry_cuts = (24.0,)
        late = np.zeros((beta.shape[0], 1))
        late[3, 0] = late_recurrence_log_hr
        beta = np.hstack([beta, late])
    return IllnessDeathTruth(
        cuts_start=cuts_start,
        cuts_ill=cuts_ill,
        start_hazard=start_hazard,
        ill_hazard=ill_hazard,
        beta=beta,
        covariate_prob=np.array([0.7]),
        censor_min=censor_min,
        censor_max=censor_max,
        entry_cuts=entry_cuts,
    )


def _draw_competing(
    hazard: np.ndarray, cuts: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """First event time and cause (0-based) for per-subject hazards ``(n, H, J)`` by inversion:
    an Exp(1) variate is spent across the intervals of the all-cause hazard."""
    n = hazard.shape[0]
    total = hazard.sum(axis=1)  # (n, J)
    spent = total[:, :-1] * np.diff(cuts)  # hazard used up by each closed interval
    cum_start = np.hstack([np.zeros((n, 1)), np.cumsum(spent, axis=1)])
    cum_end = np.hstack([cum_start[:, 1:], np.full((n, 1), np.inf)])
    e = rng.exponential(size=n)
    j = np.sum(cum_end < e[:, None], axis=1)  # interval in which the budget runs out
    rows = np.arange(n)
    t = cuts[j] + (e - cum_start[rows, j]) / total[rows, j]
    share = hazard[rows, :, j] / total[rows, j][:, None]  # (n, H)
    u = rng.random(n)
    cause = np.minimum(np.sum(np.cumsum(share, axis=1) < u[:, None], axis=1), hazard.shape[1] - 1)
    return t, cause


def _hazards(
    truth: IllnessDeathTruth, x: np.ndarray, mark: np.ndarray | None, group: np.ndarray | None
) -> np.ndarray:
    """Per-subject hazards out of the event-free state (``mark`` None) or out of recurrence
    (with its type and recurrence-time group)."""
    n_marks, n_deaths = truth.n_marks, truth.n_deaths
    n_groups = len(truth.entry_cuts) + 1
    types = np.zeros((x.shape[0], n_marks - 1))
    groups = np.zeros((x.shape[0], n_groups - 1))
    if mark is not None and group is not None:
        for r in range(1, n_marks):
            types[:, r - 1] = mark == r
        for g in range(1, n_groups):
            groups[:, g - 1] = group == g
    full = np.hstack([x, types, groups])
    lp = full @ truth.beta.T  # (n, transitions)
    if mark is None:
        rows = [0] * n_marks + list(range(1, 1 + n_deaths))
        return truth.start_hazard[None] * np.exp(lp[:, rows])[:, :, None]
    rows = list(range(1 + n_deaths, 1 + 2 * n_deaths))
    return truth.ill_hazard[None] * np.exp(lp[:, rows])[:, :, None]


def simulate_latent(truth: IllnessDeathTruth, n: int, seed: int) -> SimulatedPaths:
    """Uncensored paths of ``n`` patients (every patient followed until death)."""
    rng = np.random.default_rng(seed)
    x = (rng.random((n, truth.n_covariates)) < truth.covariate_prob).astype(float)
    t1, first = _draw_competing(_hazards(truth, x, None, None), truth.cuts_start, rng)
    ill = first < truth.n_marks
    mark = np.where(ill, first, -1)
    group = np.searchsorted(np.asarray(truth.entry_cuts, float), t1, side="left")
    after = _hazards(truth, x, np.where(ill, mark, 0), group)
    soj, cause = _draw_competing(after, truth.cuts_ill, rng)
    exit_time = np.where(ill, t1 + soj, t1)
    death = np.where(ill, cause + 1, first - truth.n_marks + 1)
    return SimulatedPaths(np.where(ill, t1, np.nan), mark, exit_time, death, x)


def simulate_paths(truth: IllnessDeathTruth, n: int, seed: int) -> SimulatedPaths:
    """Observed paths of ``n`` patients under uniform administrative censoring."""
    latent = simulate_latent(truth, n, seed)
    rng = np.random.default_rng([seed, 1])
    censor = rng.uniform(truth.censor_min, truth.censor_max, n)
    ill = (latent.ill_mark >= 0) & (np.nan_to_num(latent.ill_time, nan=np.inf) <= censor)
    died = latent.exit_time <= censor
    return SimulatedPaths(
        ill_time=np.where(ill, latent.ill_time, np.nan),
        ill_mark=np.where(ill, latent.ill_mark, -1),
        exit_time=np.minimum(latent.exit_time, censor),
        death=np.where(died, latent.death, 0),
        x=latent.x,
    )


def occupation_at(
    paths: SimulatedPaths, n_marks: int, n_deaths: int, times: np.ndarray
) -> np.ndarray:
    """Share of uncensored paths in each state at ``times``: (1 + R + K, T), states in the order
    event-free, recurred by type, dead by cause."""
    t = np.asarray(times, float)[None, :]
    ill_time = np.nan_to_num(paths.ill_time, nan=np.inf)[:, None]
    dead = paths.exit_time[:, None] <= t
    recurred = (ill_time <= t) & ~dead
    out = [np.mean(~recurred & ~dead, axis=0)]
    out += [np.mean(recurred & (paths.ill_mark[:, None] == r), axis=0) for r in range(n_marks)]
    out += [np.mean(dead & (paths.death[:, None] == k + 1), axis=0) for k in range(n_deaths)]
    return np.array(out)


def monte_carlo_occupation(
    truth: IllnessDeathTruth, times: np.ndarray, n: int = 200_000, seed: int = 0
) -> np.ndarray:
    """True state occupation (Monte Carlo over ``n`` uncensored patients drawn with the truth's
    covariate distribution): (1 + R + K, T)."""
    return occupation_at(simulate_latent(truth, n, seed), truth.n_marks, truth.n_deaths, times)
