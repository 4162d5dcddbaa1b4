"""Would a sarcoma surgeon believe this cohort? Checks of one reconstructed cohort.

Per Table 2 marker (beta-catenin, IGF-1R), among the TMA patients:

* **Proportional hazards**: the Grambsch-Therneau test of the univariate Cox model of the
  marker, for DSS and for the time to recurrence (lifelines ``proportional_hazard_test`` with
  ``time_transform="km"``, the default of R's ``cox.zph``);
* **Independent censoring**: the log-rank test of the censoring distribution of DSS by marker
  (reverse Kaplan-Meier: follow-up ending alive or by another cause of death is the event, a
  death from disease censors it). Censoring that depends on the marker is what the old single
  reconstruction showed (IGF-1R low followed half as long as high).

Over the whole cohort: deaths from other causes (expected at life-table rates: a median-aged
58 cohort followed five years has a few) and deaths from disease without a recurrence (the paper
reports 100% DSS without recurrence; must be 0).

A test "passes" when it is not rejected at :data:`ALPHA`. Nothing here prints rows.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from analysis import cohort as ch

ALPHA = 0.05
MARKERS = ("beta_catenin", "igf1r")
END_POINTS = ("dss", "rfs")


@dataclass
class Plausibility:
    """The checks of one cohort (P values NaN where a test cannot be run)."""

    ph_p: dict[str, float]  # "<end point>.<marker>" -> Grambsch-Therneau P
    censoring_p: dict[str, float]  # marker -> log-rank P of DSS censoring
    other_deaths: int
    disease_deaths_without_recurrence: int
    tma_disease_deaths: int
    tma_recurrences: int

    def ph_ok(self) -> bool:
        """No PH test rejected (a test that cannot be run does not reject)."""
        return all(not (p < ALPHA) for p in self.ph_p.values())

    def censoring_ok(self) -> bool:
        """No censoring log-rank test rejected."""
        return all(not (p < ALPHA) for p in self.censoring_p.values())

    def passes(self) -> bool:
        """Every check: PH, censoring, other-cause deaths present, no DSS death without
        recurrence."""
        return (
            self.ph_ok()
            and self.censoring_ok()
            and self.other_deaths > 0
            and self.disease_deaths_without_recurrence == 0
        )

    def to_dict(self) -> dict[str, object]:
        """JSON-ready."""
        return {**asdict(self), "ph_ok": self.ph_ok(), "censoring_ok": self.censoring_ok()}


def _end_point(df: pd.DataFrame, end_point: str) -> tuple[np.ndarray, np.ndarray]:
    return ch.dss(df) if end_point == "dss" else ch.rfs(df)


def ph_test_p(time: np.ndarray, event: np.ndarray, x: np.ndarray) -> float:
    """Grambsch-Therneau P of a one-covariate Cox model (NaN if the model cannot be fitted:
    no events, a constant covariate, or all events in one group)."""
    from lifelines import CoxPHFitter
    from lifelines.statistics import proportional_hazard_test

    if event.sum() < 2 or np.all(x == x[0]):
        return math.nan
    if np.all(x[event > 0] == x[event > 0][0]):
        return math.nan  # monotone likelihood: the HR is infinite
    frame = pd.DataFrame({"t": time, "e": event, "x": x})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            cph = CoxPHFitter().fit(frame, "t", "e")
            result = proportional_hazard_test(cph, frame, time_transform="km")
        except Exception as exc:  # lifelines' convergence failures
            if type(exc).__name__ not in ("ConvergenceError", "LinAlgError"):
                raise
            return math.nan
    return float(np.asarray(result.p_value).ravel()[0])


def censoring_logrank_p(df: pd.DataFrame, marker: str) -> float:
    """Log-rank P comparing the DSS censoring distributions of the marker's two groups."""
    from lifelines.statistics import logrank_test

    sub = df[df["tma"] == 1.0]
    time, dead = ch.dss(sub)
    censored = 1 - dead
    x = sub[marker].to_numpy(float)
    a, b = x == 0.0, x == 1.0
    if censored.sum() == 0 or not a.any() or not b.any():
        return math.nan
    res = logrank_test(time[a], time[b], censored[a], censored[b])
    return float(res.p_value)


def check(df: pd.DataFrame) -> Plausibility:
    """All checks on a typed cohort frame."""
    tma = df[df["tma"] == 1.0]
    ph = {}
    for end_point in END_POINTS:
        time, event = _end_point(tma, end_point)
        for marker in MARKERS:
            ph[f"{end_point}.{marker}"] = ph_test_p(time, event, tma[marker].to_numpy(float))
    status = df["vital_status"]
    return Plausibility(
        ph_p=ph,
        censoring_p={m: censoring_logrank_p(df, m) for m in MARKERS},
        other_deaths=int((status == "dead_other").sum()),
        disease_deaths_without_recurrence=int(
            ((status == "dead_disease") & (df["recurrence"] == "none")).sum()
        ),
        tma_disease_deaths=int((tma["vital_status"] == "dead_disease").sum()),
        tma_recurrences=int((tma["recurrence"] != "none").sum()),
    )
