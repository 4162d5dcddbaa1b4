"""Multi-state Aalen-Johansen estimator: state occupation probabilities from counting-process rows.

``P(0, t) = prod_{event times s <= t} (I + dA(s))`` with ``dA_hk(s) = dN_hk(s) / Y_h(s)`` (the
number of ``h -> k`` transitions at ``s`` over the number in state ``h`` just before ``s``) and
``dA_hh = -sum_k dA_hk``; the occupation probabilities are ``p(t) = p(0) P(0, t)``.

Conventions (tested in tests/frequentist/test_multistate_aj.py):

* **Ties.** All transitions at one time enter one matrix ``I + dA(s)`` (R ``survfit``'s multi-state
  convention). For competing risks this equals lifelines' ``AalenJohansenFitter`` once its random
  jitter of tied times is replaced by moving each cause-``k`` event ``k * eps`` earlier, and for
  one transition it equals ``1 - `` Kaplan-Meier.
* **Risk sets.** A row ``(start, stop]`` is at risk at ``s`` when ``start < s <= stop``: a patient
  censored at ``s`` is at risk for the events at ``s``; a patient entering a state at ``s`` is
  not.
* **Non-Markov processes.** With a clock reset (hazards after recurrence depending on time since
  recurrence) the transition-matrix estimate ``P(s, t)`` is biased, but the occupation
  probabilities from time 0 with every patient starting in the same state are consistent under
  independent censoring (Datta and Satten 2001, Stat Prob Letters 55:403): that is all this module
  estimates.
* **Zero-length stays.** A death at the time of recurrence has no risk set in the recurrence
  state: rows with ``start >= stop`` and an event are refused; censored ones are dropped.
* **Intervals** (optional) are percentile bootstrap intervals, resampling patients with a seed.

Imports numpy, pandas, scipy and lifelines only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

CENSORED = -1
"""``to_state`` of a row that ends without a transition."""


@dataclass(frozen=True)
class TransitionRows:
    """Counting-process rows: patient ``subject`` is in ``from_state`` on ``(start, stop]`` and
    moves to ``to_state`` at ``stop`` (``CENSORED``: no move)."""

    subject: np.ndarray
    start: np.ndarray
    stop: np.ndarray
    from_state: np.ndarray
    to_state: np.ndarray

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "subject": self.subject,
                "start": self.start,
                "stop": self.stop,
                "from_state": self.from_state,
                "to_state": self.to_state,
            }
        )


@dataclass(frozen=True)
class StateOccupation:
    """Aalen-Johansen occupation probabilities at requested times.

    ``probability``, ``lower``, ``upper``: shape ``(T, S)`` (limits NaN without bootstrap);
    ``n_at_risk``: patients in each state just before each time, ``(T, S)``.
    """

    states: tuple[str, ...]
    times: np.ndarray
    probability: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    n_at_risk: np.ndarray

    def to_frame(self) -> pd.DataFrame:
        """Long table: time, state, probability, lower, upper, n_at_risk."""
        t, s = np.meshgrid(self.times, np.arange(len(self.states)), indexing="ij")
        return pd.DataFrame(
            {
                "time": t.ravel(),
                "state": np.asarray(self.states, dtype=object)[s.ravel()],
                "probability": self.probability.ravel(),
                "lower": self.lower.ravel(),
                "upper": self.upper.ravel(),
                "n_at_risk": self.n_at_risk.ravel(),
            }
        )


def make_rows(
    subject: Sequence[int] | np.ndarray,
    start: Sequence[float] | np.ndarray,
    stop: Sequence[float] | np.ndarray,
    from_state: Sequence[int] | np.ndarray,
    to_state: Sequence[int] | np.ndarray,
) -> TransitionRows:
    """Checked rows: zero-length censored rows dropped, zero-length transitions refused."""
    rows = TransitionRows(
        np.asarray(subject, int),
        np.asarray(start, float),
        np.asarray(stop, float),
        np.asarray(from_state, int),
        np.asarray(to_state, int),
    )
    n = rows.start.size
    if any(getattr(rows, f).shape != (n,) for f in ("subject", "stop", "from_state", "to_state")):
        raise ValueError("rows: every column needs one value per row")
    if not (np.all(np.isfinite(rows.start)) and np.all(np.isfinite(rows.stop))):
        raise ValueError("rows: start and stop must be finite")
    moves = (rows.to_state != CENSORED) & (rows.to_state != rows.from_state)
    empty = rows.stop <= rows.start
    if np.any(empty & moves):
        bad = int(np.argmax(empty & moves))
        raise ValueError(f"rows: a transition with no time in its state (row {bad})")
    if np.any(rows.stop < rows.start):
        raise ValueError(f"rows: stop before start (row {int(np.argmax(rows.stop < rows.start))})")
    keep = ~empty
    return TransitionRows(*(getattr(rows, f)[keep] for f in TransitionRows.__dataclass_fields__))


def aalen_johansen(
    rows: TransitionRows,
    n_states: int,
    times: Sequence[float] | np.ndarray,
    initial: Sequence[float] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Occupation probabilities ``(T, S)`` and numbers at risk ``(T, S)`` at ``times``.

    ``initial``: the state distribution at time 0 (default: the states of the rows that start
    at the earliest start time, one per patient). Right-continuous: the value at ``t`` includes
    the transitions at ``t``; the number at risk at ``t`` counts those in each state just before.
    """
    times = np.asarray(times, float)
    p0 = _initial(rows, n_states) if initial is None else np.asarray(initial, float)
    moves = (rows.to_state != CENSORED) & (rows.to_state != rows.from_state)
    event_times = np.unique(rows.stop[moves])
    at_risk = _at_risk(rows, n_states, event_times)  # (E, S)
    idx = np.searchsorted(event_times, rows.stop[moves])
    counts = np.zeros((event_times.size, n_states, n_states))
    np.add.at(counts, (idx, rows.from_state[moves], rows.to_state[moves]), 1.0)
    probs = np.empty((event_times.size, n_states))
    p = p0.copy()
    for e in range(event_times.size):
        y = at_risk[e]
        d = counts[e]
        rate = np.divide(d, y[:, None], out=np.zeros_like(d), where=y[:, None] > 0)
        p = p + p @ rate - p * rate.sum(axis=1)
        probs[e] = p
    pick = np.searchsorted(event_times, times, side="right") - 1
    out = np.where(pick[:, None] >= 0, probs[np.clip(pick, 0, None)], p0[None, :])
    return out, _at_risk(rows, n_states, times)


def _initial(rows: TransitionRows, n_states: int) -> np.ndarray:
    first = rows.start == rows.start.min()
    return np.bincount(rows.from_state[first], minlength=n_states) / first.sum()


def _at_risk(rows: TransitionRows, n_states: int, at: np.ndarray) -> np.ndarray:
    """Rows with ``start < s <= stop`` in each state, for each ``s`` in ``at``: (len(at), S)."""
    out = np.zeros((at.size, n_states))
    for h in range(n_states):
        own = rows.from_state == h
        starts, stops = np.sort(rows.start[own]), np.sort(rows.stop[own])
        out[:, h] = np.searchsorted(starts, at, side="left") - np.searchsorted(
            stops, at, side="left"
        )
    return out


# --------------------------------------------------------------------------- illness-death


def illness_death_rows(
    ill_time: np.ndarray,
    ill_mark: np.ndarray,
    exit_time: np.ndarray,
    death: np.ndarray,
    *,
    n_marks: int = 1,
    split_marks: bool = False,
) -> TransitionRows:
    """Rows of an illness-death process from surgery (time 0).

    States: 0 event-free; then the illness (``1``, or ``1 + mark`` when ``split_marks``); then
    death ``k`` as ``n_ill + k - 1`` (``n_ill`` = ``n_marks`` if split else 1). ``ill_mark`` -1:
    no illness; ``death`` 0: censored, ``k``: dead of cause ``k``.
    """
    ill_t = np.asarray(ill_time, float)
    mark = np.asarray(ill_mark, int)
    exit_t = np.asarray(exit_time, float)
    dead = np.asarray(death, int)
    n = exit_t.size
    n_ill = n_marks if split_marks else 1
    ill = mark >= 0
    ill_state = 1 + (mark if split_marks else np.zeros(n, int))
    death_state = np.where(dead > 0, n_ill + dead, CENSORED)
    subject = np.arange(n)
    first_stop = np.where(ill, ill_t, exit_t)
    first_to = np.where(ill, ill_state, death_state)
    return make_rows(
        np.concatenate([subject, subject[ill]]),
        np.concatenate([np.zeros(n), ill_t[ill]]),
        np.concatenate([first_stop, exit_t[ill]]),
        np.concatenate([np.zeros(n, int), ill_state[ill]]),
        np.concatenate([first_to, death_state[ill]]),
    )


def illness_death_occupation(
    ill_time: np.ndarray,
    ill_mark: np.ndarray,
    exit_time: np.ndarray,
    death: np.ndarray,
    times: Sequence[float] | np.ndarray,
    *,
    states: Sequence[str],
    n_marks: int = 1,
    split_marks: bool = False,
    n_boot: int = 0,
    seed: int | None = None,
    alpha: float = 0.05,
) -> StateOccupation:
    """Aalen-Johansen occupation probabilities of an illness-death model from surgery.

    ``states``: names in state order (event-free, illness state(s), deaths). With ``n_boot > 0``
    a percentile bootstrap over patients (``seed`` required) gives the limits.
    """
    arrays = [np.asarray(a) for a in (ill_time, ill_mark, exit_time, death)]
    n_states = len(states)
    kw = {"n_marks": n_marks, "split_marks": split_marks}
    times = np.asarray(times, float)
    prob, at_risk = aalen_johansen(illness_death_rows(*arrays, **kw), n_states, times)
    lower = upper = np.full_like(prob, np.nan)
    if n_boot > 0:
        if seed is None:
            raise ValueError("a bootstrap needs a seed")
        rng = np.random.default_rng(seed)
        n = arrays[2].size
        boot = np.empty((n_boot, *prob.shape))
        for b in range(n_boot):
            pick = rng.integers(0, n, n)
            rows = illness_death_rows(*(a[pick] for a in arrays), **kw)
            boot[b] = aalen_johansen(rows, n_states, times)[0]
        lower, upper = np.quantile(boot, [alpha / 2, 1 - alpha / 2], axis=0)
    return StateOccupation(tuple(states), times, prob, lower, upper, at_risk)


def cif_after_illness(
    ill_time: np.ndarray,
    ill_mark: np.ndarray,
    exit_time: np.ndarray,
    death: np.ndarray,
    times: Sequence[float] | np.ndarray,
    *,
    n_marks: int,
    n_deaths: int,
) -> np.ndarray:
    """Aalen-Johansen cumulative incidence of each death on the clock since the illness, per
    mark: ``(R, K, T)`` (NaN for a mark nobody had). The patients who had the illness are the
    cohort; the other deaths compete."""
    mark = np.asarray(ill_mark, int)
    soj = np.asarray(exit_time, float) - np.asarray(ill_time, float)
    dead = np.asarray(death, int)
    times = np.asarray(times, float)
    out = np.full((n_marks, n_deaths, times.size), np.nan)
    for r in range(n_marks):
        own = mark == r
        if not own.any():
            continue
        m = int(own.sum())
        rows = make_rows(
            np.arange(m),
            np.zeros(m),
            soj[own],
            np.zeros(m, int),
            np.where(dead[own] > 0, dead[own], CENSORED),
        )
        out[r] = aalen_johansen(rows, 1 + n_deaths, times, initial=np.eye(1 + n_deaths)[0])[0][
            :, 1:
        ].T
    return out


# --------------------------------------------------------------------------- per-transition Cox

COX_OPTIONS: dict[str, float] = {"precision": 1e-24, "r_precision": 0.0, "max_steps": 500}
"""Newton-Raphson to convergence (lifelines' defaults stop early; see analysis' Cox wrapper)."""


def estimable_columns(frame: pd.DataFrame) -> list[str]:
    """The columns a Cox model can estimate together: in order, each column that is not
    constant and not a linear combination of the baseline and the columns kept before it
    (e.g. the last level of a one-hot block whose reference level nobody has)."""
    kept: list[str] = []
    basis = np.ones((len(frame), 1))
    for c in frame.columns:
        trial = np.hstack([basis, frame[[c]].to_numpy(float)])
        if np.linalg.matrix_rank(trial) > np.linalg.matrix_rank(basis):
            kept.append(c)
            basis = trial
    return kept


def transition_cox(
    ill_time: np.ndarray,
    ill_mark: np.ndarray,
    exit_time: np.ndarray,
    death: np.ndarray,
    x: np.ndarray,
    *,
    covariate_names: Sequence[str],
    mark_names: Sequence[str],
    n_deaths: int,
    entry_cuts: Sequence[float] = (),
    alpha: float = 0.05,
) -> list[dict[str, object]]:
    """Cause-specific Cox HRs per transition on the model's clocks (lifelines, Efron ties).

    Transitions in the order ``start->ill`` (any mark), ``start->death_k``, ``ill->death_k``.
    Out of ``start``: time to the first event, the other first events censored; covariates
    ``x``. Out of ``ill``: time since the illness, the other deaths censored; covariates ``x``
    and the type indicators (first mark the reference), then indicators of the illness-time
    groups cut at ``entry_cuts`` (right-closed; the first group the reference). A transition
    without events, a covariate constant among those at risk or collinear with the ones before
    it (:func:`estimable_columns`), or a Cox fit without a finite maximum (separation) gives
    NaN. Returns one row per (transition,
    covariate): ``transition`` (index), ``covariate`` (name), ``covariate_index`` (position among
    the baseline covariates, the type and the group indicators), ``hr``, ``lower``, ``upper``.
    """
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError

    mark = np.asarray(ill_mark, int)
    ill = mark >= 0
    exit_t = np.asarray(exit_time, float)
    dead = np.asarray(death, int)
    x = np.asarray(x, float).reshape(exit_t.size, -1)
    marks = (mark[:, None] == np.arange(1, len(mark_names))[None, :]).astype(float)
    cuts = np.asarray(entry_cuts, float)
    first = np.where(ill, np.asarray(ill_time, float), exit_t)
    group = np.searchsorted(cuts, first, side="left")
    groups = (group[:, None] == np.arange(1, cuts.size + 1)[None, :]).astype(float)
    names = [
        *covariate_names,
        *(f"type: {m}" for m in mark_names[1:]),
        *(f"illness after {c:g}" for c in cuts),
    ]
    sojourn = exit_t - np.where(ill, np.asarray(ill_time, float), 0.0)
    cases = [(first, ill.astype(int), x, covariate_names, np.ones(exit_t.size, bool))]
    cases += [
        (first, (~ill & (dead == k)).astype(int), x, covariate_names, None)
        for k in range(1, n_deaths + 1)
    ]
    cases += [
        (
            sojourn,
            (dead == k).astype(int),
            np.hstack([x, marks, groups]),
            names,
            ill & (sojourn > 0),
        )
        for k in range(1, n_deaths + 1)
    ]
    rows: list[dict[str, object]] = []
    for index, (time, event, cov, cov_names, keep) in enumerate(cases):
        keep = np.ones(exit_t.size, bool) if keep is None else keep
        frame = pd.DataFrame(cov[keep], columns=list(cov_names))
        varying = estimable_columns(frame)
        estimates = {c: (np.nan, np.nan, np.nan) for c in cov_names}
        summary = None
        if event[keep].sum() > 0 and varying:
            frame = frame[varying].assign(_time=time[keep], _event=event[keep])
            try:
                cph = CoxPHFitter(alpha=alpha).fit(
                    frame, "_time", "_event", fit_options=COX_OPTIONS
                )
                summary = cph.summary
            except (ConvergenceError, np.linalg.LinAlgError):
                summary = None  # separation: no finite maximum; reported as not estimable
        if summary is not None:
            for c in varying:
                estimates[c] = tuple(
                    float(np.exp(summary.loc[c, col]))
                    for col in (
                        "coef",
                        f"coef lower {100 * (1 - alpha):g}%",
                        f"coef upper {100 * (1 - alpha):g}%",
                    )
                )
        for position, c in enumerate(cov_names):
            hr, lo, hi = estimates[c]
            rows.append(
                {
                    "transition": index,
                    "covariate": c,
                    "covariate_index": position,
                    "hr": hr,
                    "lower": lo,
                    "upper": hi,
                }
            )
    return rows
