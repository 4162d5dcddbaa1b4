"""Illness-death data ready to model: a cohort frame (or any CSV) as the paths of
:mod:`models.multistate`, with the cut points of both clocks, the curve grid and the effects
that the data can inform.

The cohort's paths: surgery (time 0) -> first recurrence (``recurrence_months``, marked by its
type: local, distant, local and distant) -> death (``followup_months``; ``dead_disease`` or
``dead_other``), censored alive at ``followup_months``. A death at the very time of the recurrence
has no time in the recurrence state (the likelihood is unbounded there): it is refused with a
one-line error naming the file, the column and the row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.core.errors import VlmsInputError
from analysis.inference.registry import MultistateSpec
from models import multistate as ms
from models.survival_data import check_cuts

RECURRENCE_TYPES: tuple[str, ...] = ("local", "distant", "local_distant")
"""Marks of the cohort's recurrence state (the first is the reference of the type HRs)."""
COHORT_DEATHS: tuple[str, ...] = ("dead_disease", "dead_other")
DISEASE_DEATH = "dead_disease"
START_STATE = "recurrence_free"
ILL_STATE = "recurrence"
HORIZONS: tuple[float, ...] = (24.0, 60.0)
"""Months after a recurrence at which P(death of each cause) is reported."""


@dataclass(frozen=True)
class MultistateData:
    """One illness-death data set ready to model (complete cases of its covariates).

    Attributes
    ----------
    paths
        Each patient's path (times from entry, in ``time_unit``).
    structure
        State, mark and death names.
    covariate_names
        Names of the baseline covariates (the columns of ``paths.x``).
    cuts_start, cuts_ill
        Interval starts on the clock since entry and on the clock since the recurrence.
    curve_times
        Grid of the derived curves (the same grid on both clocks).
    horizons
        Times after a recurrence at which the probability of each death is reported.
    n_dropped
        Rows dropped for a missing covariate.
    time_unit
        Unit of every time above (months for the cohort; ``--time-unit`` for own data).
    cuts_note
        Where the cut points come from (own data).
    """

    paths: ms.IllnessDeathPaths
    structure: ms.IllnessDeath
    covariate_names: tuple[str, ...]
    cuts_start: np.ndarray
    cuts_ill: np.ndarray
    curve_times: np.ndarray
    horizons: np.ndarray
    n_dropped: int = 0
    time_unit: str = "months"
    cuts_note: str = ""

    @property
    def n(self) -> int:
        return self.paths.n

    @property
    def binary(self) -> bool:
        return bool(np.all(np.isin(self.paths.x, (0.0, 1.0))))

    @property
    def counts(self) -> list[dict]:
        """Per transition: patients who entered its origin state and events."""
        return ms.transition_counts(self.paths, self.structure)

    @property
    def events(self) -> int:
        """Observed transitions (recurrences and deaths)."""
        return int(sum(c["events"] for c in self.counts))

    def cells(self) -> ms.TransitionCells:
        """Collapsed counts: on the fixed grid of every 0/1 pattern when covariates are binary."""
        patterns: dict[str, np.ndarray] = {}
        if self.binary and len(self.covariate_names) <= 6:
            start, ill = ms.binary_transition_patterns(len(self.covariate_names), self.structure)
            patterns = {"patterns_start": start, "patterns_ill": ill}
        return ms.transition_cells(
            self.paths, self.structure, self.cuts_start, self.cuts_ill, **patterns
        )

    def effect_mask(self) -> np.ndarray:
        """Free (transition, covariate) effects: those the data can inform.

        :func:`models.multistate.default_effect_mask` with the events, further restricted to
        covariates that vary among the patients at risk of the transition (a covariate constant
        there, e.g. a recurrence type nobody had, would have the prior as its posterior).
        """
        s = self.structure
        mask = ms.default_effect_mask(
            s, len(self.covariate_names), events=[c["events"] for c in self.counts]
        )
        paths = self.paths
        stays = paths.ill & (np.nan_to_num(paths.sojourn) > 0)
        x_start = ms.full_covariates(paths.x, s)
        group = s.entry_group(np.where(paths.ill, paths.ill_time, 0.0))
        x_ill = ms.full_covariates(paths.x, s, paths.ill_mark, group)[stays]
        for rows, x in ((s.start_transition, x_start), (s.ill_transition, x_ill)):
            varies = np.ptp(x, axis=0) > 0 if x.shape[0] else np.zeros(x.shape[1], bool)
            mask[np.unique(rows)] &= varies[None, :]
        return mask


def cohort_paths(
    df: pd.DataFrame,
    covariates: dict[str, np.ndarray],
    file: str,
    subset: np.ndarray | None = None,
) -> tuple[ms.IllnessDeathPaths, int]:
    """The illness-death paths of the cohort's ``subset`` (default: every row; complete cases
    of ``covariates``, arrays over the whole frame) and the rows dropped for a missing covariate.

    Raises
    ------
    VlmsInputError
        A death at the very time of the recurrence (names file, column and row of the file).
    """
    rec = df["recurrence"].to_numpy(object)
    ill = rec != "none"
    mark = np.array([RECURRENCE_TYPES.index(r) if r != "none" else -1 for r in rec], int)
    death = np.select(
        [df["vital_status"] == d for d in COHORT_DEATHS],
        list(range(1, len(COHORT_DEATHS) + 1)),
        0,
    )
    ill_time = np.where(ill, df["recurrence_months"].to_numpy(float), np.nan)
    exit_time = df["followup_months"].to_numpy(float)
    refuse_zero_sojourn(ill, ill_time, exit_time, death, file, "recurrence_months")
    names = list(covariates)
    x = (
        np.column_stack([np.asarray(covariates[c], float) for c in names])
        if names
        else np.zeros((len(df), 0))
    )
    rows = np.ones(len(df), bool) if subset is None else np.asarray(subset, bool)
    keep = rows & ~np.isnan(x).any(axis=1)
    paths = ms.IllnessDeathPaths.from_arrays(
        ill_time[keep], mark[keep], exit_time[keep], death[keep], x[keep]
    )
    return paths, int((rows & ~keep).sum())


def refuse_zero_sojourn(
    ill: np.ndarray,
    ill_time: np.ndarray,
    exit_time: np.ndarray,
    death: np.ndarray,
    file: str,
    column: str,
) -> None:
    """Raise for the first death at the very time of the recurrence (1-based data row)."""
    same = ill & (np.nan_to_num(ill_time, nan=-1.0) == exit_time) & (np.asarray(death) > 0)
    if same.any():
        raise VlmsInputError(
            "death at the moment of recurrence (no time in the recurrence state); record the "
            "recurrence at an earlier time",
            file=file,
            column=column,
            row=int(np.argmax(same)) + 1,
        )


def cohort_structure(entry_cuts: Sequence[float] = ()) -> ms.IllnessDeath:
    """States of the vLMS cohort: recurrence-free, recurrence (3 types), two deaths."""
    return ms.IllnessDeath(
        marks=RECURRENCE_TYPES,
        deaths=COHORT_DEATHS,
        start_state=START_STATE,
        ill_state=ILL_STATE,
        entry_cuts=tuple(entry_cuts),
    )


def check_informative(data: MultistateData, where: str, file: str) -> None:
    """Raise ``VlmsInputError`` when the data cannot inform an illness-death model."""
    counts = {c["transition"]: c["events"] for c in data.counts}
    s = data.structure
    if data.n == 0:
        raise VlmsInputError(f"{where}: no patients with complete data", file=file)
    if counts[s.transitions[0]] == 0:
        raise VlmsInputError(f"{where}: no recurrence: not illness-death data", file=file)
    if not any(counts[t] for t in s.transitions[1:]):
        raise VlmsInputError(f"{where}: no deaths: nothing to estimate after entry", file=file)
    mask = data.effect_mask()
    if mask.size and not mask.any():
        raise VlmsInputError(
            f"{where}: no covariate or recurrence type varies where there are events; no hazard "
            "ratio can be estimated",
            file=file,
        )
    for j, name in enumerate(data.covariate_names):
        if not mask[:, j].any():
            raise VlmsInputError(
                f"{where}: covariate constant among the patients at risk of every transition "
                "with events; no hazard ratio can be estimated",
                file=file,
                column=name,
            )


def spec_multistate_data(spec: MultistateSpec, df: pd.DataFrame, file: str) -> MultistateData:
    """The data of a registered illness-death fit on the cohort frame ``df``."""
    from analysis.inference.data import CURVE_TIMES
    from analysis.inference.spec_data import COVARIATES, SUBSETS

    covariates = {c: COVARIATES[c](df) for c in spec.covariates}
    paths, dropped = cohort_paths(df, covariates, file, SUBSETS[spec.subset](df))
    return MultistateData(
        paths=paths,
        structure=cohort_structure(),
        covariate_names=tuple(spec.covariates),
        cuts_start=check_cuts(spec.cuts_start),
        cuts_ill=check_cuts(spec.cuts_ill),
        curve_times=CURVE_TIMES.copy(),
        horizons=np.array(HORIZONS),
        n_dropped=dropped,
    )
