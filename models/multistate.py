"""Bayesian illness-death (multi-state) model with piecewise-constant transition hazards.

States: ``start`` (event-free, e.g. recurrence-free after surgery), ``ill`` (e.g. recurred),
and ``K`` absorbing death states (e.g. dead of disease, dead of other causes). Transitions:
``start -> ill``, ``start -> death_k`` and ``ill -> death_k``. Entry into ``ill`` carries a mark
(e.g. the recurrence type: local, distant, local and distant) that the transitions out of ``ill``
depend on.

Design (the choices, and why):

* **One illness state, its type as a covariate of the transitions out of it.** Separate states per
  recurrence type would need a baseline hazard of death per type; with 6, 16 and 20 recurrences
  (the vLMS cohort) and a few deaths after each, three baselines are not identified. One baseline
  for death after recurrence, shifted by a log-HR per type (the first mark is the reference),
  costs ``R - 1`` parameters per death cause and keeps every death informing the shape.
* **Entry into the illness state by type.** State occupation from surgery needs the type a
  patient enters with: the ``start -> ill`` transition is split into one hazard per mark (a
  marked point process). They share one random-walk shape (plus small per-mark deviations, the
  competing-risk baseline of ``models.competing``) and one covariate effect, so the type mix may
  change with time since surgery (distant recurrences earlier than local ones, as the paper
  reports) but not with the covariates. A constant type mix is the special case of zero
  deviations, towards which the prior shrinks.
* **Clock reset (semi-Markov).** Hazards out of ``start`` run on time since entry (surgery);
  hazards out of ``ill`` on time since the illness (recurrence). Prognosis after a relapse is
  naturally a function of time since relapse, and the at-risk time after recurrence starts at
  the recurrence, which is what removes the immortal-time bias of comparing survival *from
  surgery* between groups defined by a later event. When the time of the illness matters too
  (early recurrences are often more aggressive), ``IllnessDeath.entry_cuts`` groups the illness
  times and gives each group but the first an indicator covariate of the transitions out of
  ``ill``: still exact below, as the group is constant between breakpoints. On GBSG (breast
  cancer) the semi-Markov model misses the Aalen-Johansen estimate at 24 months and the grouped
  one does not (``analysis/validation/multistate_check.py``).
* **Baselines.** Two blocks, one per clock, each the random-walk baseline of
  :func:`models.priors.log_baseline` (non-centred by default) with cause-specific levels centred
  on the crude rates, a shared shape and per-hazard deviations. A transition with few or no events
  (death without recurrence in vLMS) is regularised: it borrows the block's shape and is left
  with a level whose prior is centred on half an event over the block's exposure.
* **Effects.** ``beta`` has dims ``(transition, covariate)``: baseline covariates act on every
  transition, the type (and illness-time) indicators only on the transitions out of ``ill``
  (``effect_mask`` chooses; :func:`default_effect_mask` can drop the effects of transitions
  without events, whose HRs would be the prior alone). Each free entry has the configured
  log-HR prior (Normal(0, 1) by default), not pooled across transitions: an effect on
  recurrence and one on death after recurrence are different questions with no reason to be
  alike. Entries outside the mask are exactly 0.
* **Collapsed likelihood.** Events and exposure per interval x covariate pattern x hazard (one
  grid per clock) are sufficient statistics: the Poisson likelihood on them equals the
  piecewise-exponential likelihood of the person-level paths up to a constant. All data are
  ``pm.Data``, so one compiled model is refit on new data of the same shapes (fixed pattern
  grids: :func:`binary_transition_patterns`).
* **Derived quantities** are exact for piecewise-constant hazards (no simulation, no grid):
  occupying ``ill`` at time ``t`` needs the convolution ``int_0^t S0(u) h_{0r}(u) S1_r(t - u)
  du``, whose integrand is a product of exponentials between consecutive breakpoints (the cuts
  of the first clock and ``t`` minus the cuts of the second), integrated in closed form.

A death at the very time of the illness (zero sojourn) would put an event on zero exposure (an
unbounded likelihood): it is refused; the caller must give the illness an earlier time.

Nothing here knows files, column names or the paper: inputs are arrays, outputs are arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from models.competing import cif_curves
from models.pem import poisson_kernel
from models.priors import Priors, effect_prior, log_baseline
from models.survival_data import (
    Cells,
    binary_patterns,
    check_cuts,
    collapse,
    expand,
    exposure_to,
    interval_labels,
)

# --------------------------------------------------------------------------- structure and data


@dataclass(frozen=True)
class IllnessDeath:
    """Names of the states and marks of an illness-death model.

    Attributes
    ----------
    marks
        Types of illness (the first is the reference of the type effects); one name for an
        unmarked model.
    deaths
        Absorbing death states (causes of death).
    start_state, ill_state
        Names of the initial and the illness state.
    entry_cuts
        Boundaries (time since entry) of groups of illness time, e.g. ``(24.0,)``: early and
        late recurrences. Each group but the first gets an indicator covariate of the
        transitions out of ``ill`` (the hazard after the illness then depends on when it
        happened as well as on the time since). Empty: no such dependence (semi-Markov).
        Group ``g`` holds the illness times in ``(entry_cuts[g - 1], entry_cuts[g]]``.
    """

    marks: tuple[str, ...] = ("ill",)
    deaths: tuple[str, ...] = ("dead",)
    start_state: str = "event_free"
    ill_state: str = "ill"
    entry_cuts: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not self.marks or not self.deaths:
            raise ValueError("an illness-death model needs at least one mark and one death state")
        names = [self.start_state, self.ill_state, *self.deaths]
        if len(set(names)) != len(names) or len(set(self.marks)) != len(self.marks):
            raise ValueError("state and mark names must be unique")
        cuts = np.asarray(self.entry_cuts, float)
        if cuts.size and not (
            np.all(np.isfinite(cuts)) and cuts[0] > 0 and np.all(np.diff(cuts) > 0)
        ):
            raise ValueError("entry_cuts must be positive and strictly increasing")

    @property
    def n_marks(self) -> int:
        return len(self.marks)

    @property
    def n_deaths(self) -> int:
        return len(self.deaths)

    @property
    def transitions(self) -> list[str]:
        """``start->ill``, ``start->death_k`` ..., ``ill->death_k`` ... (the ``transition`` dim)."""
        s, i = self.start_state, self.ill_state
        return [
            f"{s}->{i}",
            *(f"{s}->{d}" for d in self.deaths),
            *(f"{i}->{d}" for d in self.deaths),
        ]

    @property
    def start_hazards(self) -> list[str]:
        """Hazards out of ``start``: one per mark into ``ill``, then one per death."""
        s, i = self.start_state, self.ill_state
        into = [f"{s}->{i}" if self.n_marks == 1 else f"{s}->{i} ({m})" for m in self.marks]
        return into + [f"{s}->{d}" for d in self.deaths]

    @property
    def ill_hazards(self) -> list[str]:
        return [f"{self.ill_state}->{d}" for d in self.deaths]

    @property
    def start_transition(self) -> np.ndarray:
        """Transition index of each hazard out of ``start``."""
        return np.array([0] * self.n_marks + list(range(1, 1 + self.n_deaths)))

    @property
    def ill_transition(self) -> np.ndarray:
        """Transition index of each hazard out of ``ill``."""
        return np.arange(1 + self.n_deaths, 1 + 2 * self.n_deaths)

    @property
    def mark_covariates(self) -> list[str]:
        """Names of the type indicators (every mark but the reference)."""
        return [f"{self.ill_state}: {m}" for m in self.marks[1:]]

    @property
    def n_entry_groups(self) -> int:
        return len(self.entry_cuts) + 1

    @property
    def entry_covariates(self) -> list[str]:
        """Names of the illness-time group indicators (every group but the first)."""
        if not self.entry_cuts:
            return []
        upper = [f"{c:g}]" for c in self.entry_cuts[1:]] + ["inf)"]
        return [
            f"{self.ill_state} at ({lo:g}, {hi}"
            for lo, hi in zip(self.entry_cuts, upper, strict=True)
        ]

    @property
    def ill_covariates(self) -> list[str]:
        """Covariates known at the illness: type indicators, then illness-time groups."""
        return self.mark_covariates + self.entry_covariates

    def entry_group(self, ill_time: np.ndarray) -> np.ndarray:
        """Illness-time group of each time (right-closed groups)."""
        return np.searchsorted(
            np.asarray(self.entry_cuts, float), np.asarray(ill_time, float), side="left"
        )

    def occupation_states(self, by_mark: bool = True) -> list[str]:
        """State names in the order of :func:`state_occupation` (or of :func:`merge_marks`)."""
        ill = (
            [f"{self.ill_state} ({m})" for m in self.marks]
            if by_mark and self.n_marks > 1
            else [self.ill_state]
        )
        return [self.start_state, *ill, *self.deaths]


@dataclass(frozen=True)
class IllnessDeathPaths:
    """Each patient's observed path, times measured from entry (surgery).

    Attributes
    ----------
    ill_time
        Time of the illness; ignored (may be NaN) where ``ill_mark`` is -1.
    ill_mark
        Mark index (0..R-1) of the illness, -1 where none was observed.
    exit_time
        Time of death or censoring (> 0, >= ``ill_time``).
    death
        0 censored (alive), ``k`` = 1..K dead of cause ``k``.
    x
        Baseline covariates, shape ``(n, p)`` (``p`` may be 0).
    """

    ill_time: np.ndarray
    ill_mark: np.ndarray
    exit_time: np.ndarray
    death: np.ndarray
    x: np.ndarray

    @classmethod
    def from_arrays(
        cls,
        ill_time: Sequence[float] | np.ndarray,
        ill_mark: Sequence[int] | np.ndarray,
        exit_time: Sequence[float] | np.ndarray,
        death: Sequence[int] | np.ndarray,
        x: np.ndarray | None = None,
    ) -> IllnessDeathPaths:
        """Coerce and check the arrays (``x`` None: no covariates)."""
        exit_t = np.asarray(exit_time, float)
        n = exit_t.size
        x_arr = np.zeros((n, 0)) if x is None else np.asarray(x, float).reshape(n, -1)
        paths = cls(
            ill_time=np.asarray(ill_time, float),
            ill_mark=np.asarray(ill_mark, int),
            exit_time=exit_t,
            death=np.asarray(death, int),
            x=x_arr,
        )
        paths.check()
        return paths

    @property
    def n(self) -> int:
        return int(self.exit_time.size)

    @property
    def ill(self) -> np.ndarray:
        return self.ill_mark >= 0

    @property
    def sojourn(self) -> np.ndarray:
        """Time from illness to exit (NaN where no illness)."""
        return np.where(self.ill, self.exit_time - np.where(self.ill, self.ill_time, 0.0), np.nan)

    def check(self, n_marks: int | None = None, n_deaths: int | None = None) -> None:
        """Raise ``ValueError`` (naming the first offending row, 0-based) on impossible paths."""
        n = self.n
        for name in ("ill_time", "ill_mark", "death"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must have one value per patient ({n})")
        if self.x.shape[0] != n or not np.all(np.isfinite(self.x)):
            raise ValueError("x must be finite with one row per patient")
        ill = self.ill
        ill_t = np.where(ill, self.ill_time, 1.0)
        problems = [
            (~(np.isfinite(self.exit_time) & (self.exit_time > 0)), "exit time must be > 0"),
            (ill & ~(np.isfinite(ill_t) & (ill_t > 0)), "illness time must be > 0"),
            (ill & (ill_t > self.exit_time), "illness after exit"),
            (
                ill & (ill_t == self.exit_time) & (self.death > 0),
                "death at the time of the illness (zero sojourn): give the illness an earlier time",
            ),
            (
                (self.death < 0) | (n_deaths is not None and self.death > n_deaths),
                "death code out of range",
            ),
            (
                (self.ill_mark < -1) | (n_marks is not None and self.ill_mark >= n_marks),
                "mark out of range",
            ),
        ]
        for bad, message in problems:
            bad = np.asarray(bad, bool) & np.ones(n, bool)
            if bad.any():
                raise ValueError(f"{message} (row {int(np.argmax(bad))}, {int(bad.sum())} rows)")


@dataclass(frozen=True)
class TransitionCells:
    """Sufficient statistics of the two clocks.

    ``start``: intervals of time since entry x patterns, events ``(J0, m0, R + K)`` (hazards in
    the order of :attr:`IllnessDeath.start_hazards`). ``ill``: intervals of time since the
    illness x patterns, events ``(J1, m1, K)``. Both ``x`` have the full covariate width
    (baseline covariates, then the type and illness-time indicators, 0 in ``start``).
    """

    start: Cells
    ill: Cells


def full_covariates(
    x: np.ndarray,
    structure: IllnessDeath,
    mark: np.ndarray | int | None = None,
    group: np.ndarray | int | None = None,
) -> np.ndarray:
    """Baseline covariates ``x`` (n, p), then the type indicators of ``mark`` and the indicators
    of the illness-time ``group`` (zeros where ``None``: out of ``start``)."""
    x = np.atleast_2d(np.asarray(x, float))
    n = x.shape[0]
    parts = [x]
    for values, levels in ((mark, structure.n_marks), (group, structure.n_entry_groups)):
        dummies = np.zeros((n, levels - 1))
        if values is not None:
            v = np.broadcast_to(np.asarray(values, int), (n,))
            dummies = (v[:, None] == np.arange(1, levels)[None, :]).astype(float)
        parts.append(dummies)
    return np.hstack(parts)


def binary_transition_patterns(n_baseline: int, structure: IllnessDeath) -> tuple[np.ndarray, ...]:
    """Fixed pattern grids for 0/1 baseline covariates: ``(start_patterns, ill_patterns)``.

    Every 0/1 baseline pattern (illness indicators 0) for ``start``, every such pattern with
    every mark and illness-time group for ``ill``; the cell shapes then depend only on the cuts,
    ``n_baseline`` and the structure.
    """
    base = binary_patterns(n_baseline)
    start = full_covariates(base, structure)
    ill = np.vstack(
        [
            full_covariates(base, structure, r, g)
            for g in range(structure.n_entry_groups)
            for r in range(structure.n_marks)
        ]
    )
    return start, ill


def transition_cells(
    paths: IllnessDeathPaths,
    structure: IllnessDeath,
    cuts_start: Sequence[float] | np.ndarray,
    cuts_ill: Sequence[float] | np.ndarray,
    *,
    patterns_start: np.ndarray | None = None,
    patterns_ill: np.ndarray | None = None,
) -> TransitionCells:
    """Collapse the paths into events and exposure per clock, interval, pattern and hazard.

    Out of ``start``: at risk from 0 to the illness or exit; the event is the illness (coded by
    its mark) or the death. Out of ``ill``: at risk from 0 to ``exit - ill_time`` on the clock
    since the illness; a patient censored at the illness time contributes nothing.
    ``patterns_*`` fix the pattern grids (see :func:`binary_transition_patterns`); ``None``:
    the patterns seen.
    """
    n_marks, n_deaths = structure.n_marks, structure.n_deaths
    paths.check(n_marks, n_deaths)
    c0, c1 = check_cuts(cuts_start), check_cuts(cuts_ill)
    ill = paths.ill
    t0 = np.where(ill, np.where(ill, paths.ill_time, 0.0), paths.exit_time)
    code0 = np.where(ill, paths.ill_mark + 1, np.where(paths.death > 0, n_marks + paths.death, 0))
    x0 = full_covariates(paths.x, structure)
    start = collapse(
        expand(t0, code0, x0, c0), c0.size, patterns_start, n_causes=n_marks + n_deaths
    )
    sojourn = paths.sojourn
    stays = ill & (np.nan_to_num(sojourn) > 0)
    group = structure.entry_group(np.where(ill, paths.ill_time, 0.0))
    x1 = full_covariates(paths.x, structure, paths.ill_mark, group)[stays]
    pp1 = expand(sojourn[stays], paths.death[stays], x1, c1)
    return TransitionCells(start, collapse(pp1, c1.size, patterns_ill, n_causes=n_deaths))


def transition_counts(paths: IllnessDeathPaths, structure: IllnessDeath) -> list[dict]:
    """Per transition: patients who entered its origin state (``n_at_risk``) and ``events``."""
    ill = paths.ill
    died = paths.death > 0
    out = [{"transition": structure.transitions[0], "n_at_risk": paths.n, "events": int(ill.sum())}]
    for k, name in enumerate(structure.transitions[1 : 1 + structure.n_deaths], start=1):
        out.append(
            {
                "transition": name,
                "n_at_risk": paths.n,
                "events": int(np.sum(~ill & died & (paths.death == k))),
            }
        )
    for k, name in enumerate(structure.transitions[1 + structure.n_deaths :], start=1):
        out.append(
            {
                "transition": name,
                "n_at_risk": int(ill.sum()),
                "events": int(np.sum(ill & (paths.death == k))),
            }
        )
    return out


def default_effect_mask(
    structure: IllnessDeath, n_baseline: int, events: Sequence[int] | None = None
) -> np.ndarray:
    """Which (transition, covariate) effects are free: baseline covariates on every transition,
    type and illness-time indicators on the transitions out of ``ill`` only. With ``events``
    (per transition, as in :func:`transition_counts`), a transition without events gets no
    effects (its HRs would be the prior alone)."""
    n_trans = len(structure.transitions)
    mask = np.zeros((n_trans, n_baseline + len(structure.ill_covariates)), bool)
    mask[:, :n_baseline] = True
    mask[structure.ill_transition, n_baseline:] = True
    if events is not None:
        mask[np.asarray(events) == 0, :] = False
    return mask


def crude_log_rates(cells: Cells) -> np.ndarray:
    """Log crude rate of each hazard of a block (half an event where a hazard has none)."""
    events = np.asarray(cells.events, float).sum(axis=(0, 1))
    exposure = max(float(np.sum(cells.exposure)), 1e-12)
    return np.log(np.maximum(events, 0.5) / exposure)


# --------------------------------------------------------------------------- the PyMC model


def multistate_coords(
    structure: IllnessDeath,
    cuts_start: Sequence[float] | np.ndarray,
    cuts_ill: Sequence[float] | np.ndarray,
    covariate_names: Sequence[str],
    effect_mask: np.ndarray,
    cells: TransitionCells,
) -> dict[str, list]:
    """Named dims of :func:`build_multistate`."""
    start_labels, ill_labels = interval_labels(cuts_start), interval_labels(cuts_ill)
    covariates = [*covariate_names, *structure.ill_covariates]
    rows, cols = np.nonzero(effect_mask)
    return {
        "interval_start": start_labels,
        "interval_start_step": start_labels[1:],
        "interval_ill": ill_labels,
        "interval_ill_step": ill_labels[1:],
        "hazard_start": structure.start_hazards,
        "hazard_ill": structure.ill_hazards,
        "transition": structure.transitions,
        "covariate": covariates,
        "effect": [
            f"{structure.transitions[r]}: {covariates[c]}" for r, c in zip(rows, cols, strict=True)
        ],
        "pattern_start": list(range(cells.start.n_patterns)),
        "pattern_ill": list(range(cells.ill.n_patterns)),
    }


def build_multistate(
    cells: TransitionCells,
    *,
    structure: IllnessDeath,
    cuts_start: Sequence[float] | np.ndarray,
    cuts_ill: Sequence[float] | np.ndarray,
    covariate_names: Sequence[str],
    priors: Priors | None = None,
    effect_mask: np.ndarray | None = None,
) -> pm.Model:
    """The illness-death model as a ``pm.Model``.

    Parameters
    ----------
    cells
        From :func:`transition_cells`.
    structure
        State, mark and death names.
    cuts_start, cuts_ill
        Interval starts on each clock (time since entry; time since the illness).
    covariate_names
        Names of the baseline covariates (the first ``p`` columns of the cells' ``x``).
    priors
        Prior settings (default :class:`models.priors.Priors`).
    effect_mask
        Boolean ``(transition, covariate)``: which effects are free (default
        :func:`default_effect_mask`); the others are 0.

    Variables: ``start_log_h0`` (hazard_start, interval_start), ``ill_log_h0`` (hazard_ill,
    interval_ill), ``beta`` and ``hr`` (transition, covariate) when there are covariates.
    Data containers (swap with ``with_data``, values from :func:`multistate_data`):
    ``{start,ill}_exposure``, ``{start,ill}_events``, ``{start,ill}_log_rate_center``,
    ``{start,ill}_x``.
    """
    priors = priors or Priors()
    c0, c1 = check_cuts(cuts_start), check_cuts(cuts_ill)
    n_base = len(covariate_names)
    width = n_base + len(structure.ill_covariates)
    mask = default_effect_mask(structure, n_base) if effect_mask is None else effect_mask
    mask = np.asarray(mask, bool)
    expected = (len(structure.transitions), width)
    if mask.shape != expected:
        raise ValueError(f"effect_mask must have shape (transitions, covariates) = {expected}")
    if width and not mask.any():
        raise ValueError("effect_mask frees no effect: drop the covariates instead")
    for block, n_haz in (
        (cells.start, structure.n_marks + structure.n_deaths),
        (cells.ill, structure.n_deaths),
    ):
        if block.x.shape[1] != width or np.shape(block.events)[-1] != n_haz:
            raise ValueError("cells do not match the structure and covariate names")
    coords = multistate_coords(structure, c0, c1, covariate_names, mask, cells)
    data = multistate_data(cells)
    with pm.Model(coords=coords) as model:
        start_eta = _block_log_baseline(
            "start", data, priors, c0.size, len(structure.start_hazards)
        )
        ill_eta = _block_log_baseline("ill", data, priors, c1.size, structure.n_deaths)
        if width:
            beta = transition_effects(priors, mask)
            pm.Deterministic("hr", pt.exp(beta), dims=("transition", "covariate"))
            start_eta = start_eta + _block_linear_predictor(
                "start", data, beta, structure.start_transition
            )
            ill_eta = ill_eta + _block_linear_predictor("ill", data, beta, structure.ill_transition)
        for block, eta in (("start", start_eta), ("ill", ill_eta)):
            events = pm.Data(
                f"{block}_events",
                data[f"{block}_events"],
                dims=(f"hazard_{block}", f"interval_{block}", f"pattern_{block}"),
            )
            exposure = pm.Data(
                f"{block}_exposure",
                data[f"{block}_exposure"],
                dims=(f"interval_{block}", f"pattern_{block}"),
            )
            pm.Potential(f"{block}_loglik", poisson_kernel(events, exposure[None, :, :], eta))
    return model


def _block_log_baseline(
    block: str, data: dict[str, np.ndarray], priors: Priors, n_intervals: int, n_hazards: int
) -> pt.TensorVariable:
    """Baseline log hazards of one clock, shape (hazard, interval, 1)."""
    center = pm.Data(
        f"{block}_log_rate_center", data[f"{block}_log_rate_center"], dims=f"hazard_{block}"
    )
    log_h0 = log_baseline(
        priors,
        center,
        n_intervals,
        n_causes=n_hazards,
        prefix=f"{block}_",
        interval_dim=f"interval_{block}",
        cause_dim=f"hazard_{block}",
    )
    return log_h0[:, :, None]


def _block_linear_predictor(
    block: str, data: dict[str, np.ndarray], beta: pt.TensorVariable, transition: np.ndarray
) -> pt.TensorVariable:
    """``x . beta`` of each hazard of one clock, shape (hazard, 1, pattern)."""
    x = pm.Data(f"{block}_x", data[f"{block}_x"], dims=(f"pattern_{block}", "covariate"))
    return pt.dot(x, beta.T)[:, transition].T[:, None, :]


def transition_effects(priors: Priors, mask: np.ndarray) -> pt.TensorVariable:
    """Log-HRs ``beta`` (transition, covariate): the masked entries free (dim ``effect``), with
    the configured prior; the others exactly 0."""
    rows, cols = np.nonzero(mask)
    free = effect_prior("beta_free", priors, "effect")
    beta = pt.set_subtensor(pt.zeros(mask.shape)[rows, cols], free)
    return pm.Deterministic("beta", beta, dims=("transition", "covariate"))


def multistate_data(cells: TransitionCells) -> dict[str, np.ndarray]:
    """The ``pm.Data`` values of :func:`build_multistate` for new data (for ``with_data``)."""
    data: dict[str, np.ndarray] = {}
    for block, c in (("start", cells.start), ("ill", cells.ill)):
        data[f"{block}_exposure"] = np.asarray(c.exposure, float)
        data[f"{block}_events"] = np.moveaxis(np.asarray(c.events, float), -1, 0)
        data[f"{block}_log_rate_center"] = crude_log_rates(c)
        if c.x.shape[1]:
            data[f"{block}_x"] = np.asarray(c.x, float)
    return data


# --------------------------------------------------------------------------- derived quantities


def profile_log_hazards(
    start_log_h0: np.ndarray,
    ill_log_h0: np.ndarray,
    beta: np.ndarray | None,
    x: np.ndarray,
    structure: IllnessDeath,
) -> tuple[np.ndarray, np.ndarray]:
    """Log hazards of one baseline covariate row ``x`` (p,) from draws.

    Parameters
    ----------
    start_log_h0, ill_log_h0
        Draws of shape (..., R + K, J0) and (..., K, J1).
    beta
        Draws (..., transition, covariate), or None without covariates.

    Returns
    -------
    (start_log_h, ill_log_h)
        (..., R + K, J0) and, per illness-time group and mark, (..., G, R, K, J1).
    """
    n_marks, n_groups = structure.n_marks, structure.n_entry_groups
    x = np.asarray(x, float).reshape(1, -1)
    group, mark = np.divmod(np.arange(n_groups * n_marks), n_marks)
    rows = np.vstack(
        [
            full_covariates(x, structure),
            full_covariates(np.repeat(x, group.size, 0), structure, mark, group),
        ]
    )  # row 0: out of start; then (group, mark) pairs out of ill
    n_trans = len(structure.transitions)
    if beta is None or rows.shape[1] == 0:
        lp = np.zeros((*start_log_h0.shape[:-2], rows.shape[0], n_trans))
    else:
        lp = np.einsum("...tc,mc->...mt", beta, rows)  # (..., rows, transition)
    start = start_log_h0 + lp[..., 0, structure.start_transition][..., None]
    ill_lp = lp[..., 1:, structure.ill_transition].reshape(*lp.shape[:-2], n_groups, n_marks, -1)
    ill = ill_log_h0[..., None, None, :, :] + ill_lp[..., None]
    return start, ill


def cif_after_illness(ill_log_h: np.ndarray, cuts_ill: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Cumulative incidence of each death from the time of the illness: (..., G, R, K, T) for
    ``ill_log_h`` (..., G, R, K, J1) (per illness-time group and mark).

    The other deaths compete; ``1 - CIF`` of the disease death is disease-specific survival
    from the illness (exact for piecewise-constant hazards).
    """
    return cif_curves(ill_log_h, cuts_ill, times)


def state_occupation(
    start_log_h: np.ndarray,
    ill_log_h: np.ndarray,
    cuts_start: np.ndarray,
    cuts_ill: np.ndarray,
    times: np.ndarray,
    entry_cuts: Sequence[float] = (),
) -> np.ndarray:
    """Probability of each state at ``times`` after entry, exact: shape (..., 1 + R + K, T).

    ``start_log_h`` (..., R + K, J0) and ``ill_log_h`` (..., G, R, K, J1) as returned by
    :func:`profile_log_hazards` (``G = len(entry_cuts) + 1`` illness-time groups). States in
    the order ``start``, ``ill`` by mark (R), deaths (K)
    (:meth:`IllnessDeath.occupation_states`). With ``S0`` the survival in ``start``, ``h_{0r}``
    the hazard of entering ``ill`` with mark ``r``, ``S1`` and ``F1_k`` the survival and the
    cumulative incidence of death ``k`` on the clock since the illness (for the mark and the
    group of the illness time ``u``):

    * ``P(ill, r; t) = int_0^t S0(u) h_{0r}(u) S1_{r,g(u)}(t - u) du``
    * ``P(death k; t) = CIF_0k(t) + sum_r int_0^t S0(u) h_{0r}(u) F1_{rk,g(u)}(t - u) du``

    Between consecutive breakpoints (the cuts ``c0`` and ``entry_cuts`` in ``u``, and ``t - c1``)
    both factors are exponentials in ``u``, integrated in closed form (error: floating point).
    """
    c0, c1 = check_cuts(cuts_start), check_cuts(cuts_ill)
    groups = np.asarray(entry_cuts, float)
    times = np.asarray(times, float)
    n_groups, n_marks, n_deaths = ill_log_h.shape[-4:-1]
    if n_groups != groups.size + 1:
        raise ValueError("ill_log_h needs one group per illness-time group (len(entry_cuts) + 1)")
    lead = np.broadcast_shapes(start_log_h.shape[:-2], ill_log_h.shape[:-4])
    start_log_h = np.broadcast_to(start_log_h, (*lead, *start_log_h.shape[-2:]))
    ill_log_h = np.broadcast_to(ill_log_h, (*lead, *ill_log_h.shape[-4:]))
    h0 = np.exp(start_log_h)
    lam0 = h0.sum(axis=-2)  # (..., J0)
    # the illness-time group next to the interval (or time) axis, for picking per piece
    h1 = np.moveaxis(np.exp(ill_log_h), -4, -2)  # (..., R, K, G, J1)
    lam1 = h1.sum(axis=-3)  # (..., R, G, J1)
    cif0 = cif_curves(start_log_h, c0, times)  # (..., R + K, T)
    out = np.zeros((*lead, 1 + n_marks + n_deaths, times.size))
    out[..., 0, :] = np.exp(-(lam0 @ exposure_to(c0, times).T))
    out[..., 1 + n_marks :, :] = cif0[..., n_marks:, :]
    for i, t in enumerate(times):
        if t <= 0:
            continue
        u_a, u_b, j0, j1, g = _pieces(c0, c1, groups, float(t))
        piece = np.arange(u_a.size)
        length = u_b - u_a
        s_low = t - u_b  # time since the illness at the end of each piece
        s0_a = np.exp(-(lam0 @ exposure_to(c0, u_a).T))  # (..., P)
        s1 = np.exp(-(lam1 @ exposure_to(c1, s_low).T))[..., g, piece]  # (..., R, P)
        f1 = np.moveaxis(cif_curves(ill_log_h, c1, s_low), -4, -2)[..., g, piece]  # (..., R, K, P)
        l0, l1 = lam0[..., j0], lam1[..., g, j1]
        entry = h0[..., :n_marks, :][..., j0] * s0_a[..., None, :]  # (..., R, P)
        both = _exp_convolution(l0[..., None, :], l1, length)  # (..., R, P)
        alone = length * _phi(l0 * length)  # (..., P)
        out[..., 1 : 1 + n_marks, i] = np.sum(entry * s1 * both, axis=-1)
        share = h1[..., g, j1] / l1[..., None, :]  # (..., R, K, P)
        dead = entry[..., None, :] * (
            (f1 + share * s1[..., None, :]) * alone[..., None, None, :]
            - share * (s1 * both)[..., None, :]
        )
        out[..., 1 + n_marks :, i] += dead.sum(axis=(-3, -1))
    return out


def _pieces(c0: np.ndarray, c1: np.ndarray, groups: np.ndarray, t: float) -> tuple[np.ndarray, ...]:
    """Breakpoints of ``u`` in (0, t) where the interval of ``u`` (cuts ``c0``), its illness-time
    group (``groups``) or the interval of ``t - u`` (cuts ``c1``) changes: piece starts, ends,
    the two interval indices and the group."""
    inner = np.concatenate(
        [c0[(c0 > 0) & (c0 < t)], groups[groups < t], t - c1[(c1 > 0) & (c1 < t)]]
    )
    b = np.unique(np.concatenate([[0.0, t], inner]))
    u_a, u_b = b[:-1], b[1:]
    mid = 0.5 * (u_a + u_b)
    j0 = np.searchsorted(c0, mid, side="right") - 1
    j1 = np.searchsorted(c1, t - mid, side="right") - 1
    return u_a, u_b, j0, j1, np.searchsorted(groups, mid, side="left")


def _phi(x: np.ndarray) -> np.ndarray:
    """``(1 - exp(-x)) / x`` for ``x >= 0`` (1 at 0), without cancellation."""
    x = np.asarray(x, float)
    small = x < 1e-8
    safe = np.where(small, 1.0, x)
    return np.where(small, 1.0 - 0.5 * x, -np.expm1(-safe) / safe)


def _exp_convolution(l0: np.ndarray, l1: np.ndarray, length: np.ndarray) -> np.ndarray:
    """``int_0^L exp(-l0 w - l1 (L - w)) dw`` (stable for any ``l0``, ``l1`` >= 0)."""
    low = np.minimum(l0, l1)
    gap = np.abs(l0 - l1)
    return length * np.exp(-low * length) * _phi(gap * length)


def merge_marks(occupation: np.ndarray, n_marks: int) -> np.ndarray:
    """Sum the ``ill`` states over marks: (..., 1 + R + K, T) -> (..., 2 + K, T)."""
    ill = occupation[..., 1 : 1 + n_marks, :].sum(axis=-2, keepdims=True)
    return np.concatenate([occupation[..., :1, :], ill, occupation[..., 1 + n_marks :, :]], axis=-2)


def cohort_state_occupation(
    start_log_h0: np.ndarray,
    ill_log_h0: np.ndarray,
    beta: np.ndarray | None,
    x: np.ndarray,
    structure: IllnessDeath,
    cuts_start: np.ndarray,
    cuts_ill: np.ndarray,
    times: np.ndarray,
) -> np.ndarray:
    """State occupation averaged over the patients' baseline covariates ``x`` (n, p): the
    population quantity that Aalen-Johansen estimates. Shape (..., 1 + R + K, T)."""
    x = np.asarray(x, float)
    if x.shape[1] == 0:
        patterns, counts = np.zeros((1, 0)), np.array([x.shape[0]])
    else:
        patterns, counts = np.unique(x, axis=0, return_counts=True)
    out = 0.0
    for row, count in zip(patterns, counts, strict=True):
        start, ill = profile_log_hazards(start_log_h0, ill_log_h0, beta, row, structure)
        occupation = state_occupation(
            start, ill, cuts_start, cuts_ill, times, entry_cuts=structure.entry_cuts
        )
        out = out + count * occupation
    return np.asarray(out) / counts.sum()
