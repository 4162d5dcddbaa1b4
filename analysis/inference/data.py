"""Data ready to model: event times, event codes and covariates of one fit (model-agnostic).

A :class:`FitData` holds the rows of one fit: complete cases (``missing="drop"``: rows with a
missing covariate are dropped and counted) or every row with NaN where a covariate is unknown
(``missing="impute"``: the model marginalises the missing binary values,
:mod:`models.imputation`), the interval cut points, the covariate slots of the compiled structure
and the month grid of the derived curves; its complete cases expand to person-period rows and
collapse to sufficient statistics.

Covariate coding (:func:`covariate_coding`): a numeric covariate is centred at its mean and
scaled by its standard deviation inside the model, so the baseline (and its prior) sits at the
cohort's average value, the log-HR prior is per SD, and the answer depends neither on where the
column's zero is nor on its unit. A covariate with two values keeps its lower value as the
reference (0 of a 0/1 column) and is scaled by the gap between the values, so 0/1, 1/2 or 0/10
codings give the same model and a 0/1 column's log-HR prior stays per unit. (Centring 0/1
columns too would move the baseline prior from the reference group to the cohort average: a
different prior, which moved the registry's HRs by up to 0.25 on the log scale, measured.) The
model reports the log HR per unit of the column as given (``beta``) and per scale unit
(``beta_std``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from models.survival_data import (
    DEFAULT_CUTS,
    Cells,
    PersonPeriod,
    binary_patterns,
    check_cuts,
    collapse,
    crude_rate,
    expand,
)

CURVE_TIMES = np.arange(3.0, 121.0, 3.0)
"""Month grid of the survival and CIF curves in the registry fits (0 excluded: S(0) = 1)."""
TIME_UNITS: dict[str, float] = {
    "days": 365.25 / 12,
    "weeks": 365.25 / 12 / 7,
    "months": 1.0,
    "years": 1 / 12,
}
"""Units per month (a month is a twelfth of a 365.25-day year): the time units of ``--data``."""


@dataclass(frozen=True)
class CovariateCoding:
    """How one covariate enters the model: ``(x - center) / scale``.

    ``kind``: ``"binary"`` (values 0 and 1: centre 0, scale 1), ``"two-valued"`` (two other
    values: centre the lower one, scale their difference), ``"numeric"`` (centre the mean,
    scale the sample SD, ``ddof = 1``) or ``"constant"`` (one value: left as it is, centre 0
    and scale 1, as a 0/1 column that happens to take one value in a simulated data set).
    """

    name: str
    kind: str
    center: float
    scale: float

    @property
    def scale_label(self) -> str:
        """What one scale unit is, in words."""
        if self.kind == "numeric":
            return f"1 SD = {self.scale:.4g}"
        if self.kind == "two-valued":
            return f"the gap between its two values = {self.scale:.4g}"
        return "1 unit"

    def as_dict(self) -> dict[str, float | str]:
        return {
            "kind": self.kind,
            "center": self.center,
            "scale": self.scale,
            "scale_is": self.scale_label,
        }


def covariate_coding(name: str, x: np.ndarray) -> CovariateCoding:
    """Centre and scale of the complete values ``x`` (see :class:`CovariateCoding`)."""
    values = np.unique(np.asarray(x, float))
    if values.size < 2:
        return CovariateCoding(name, "constant", 0.0, 1.0)
    if values.size == 2:
        kind = "binary" if values.tolist() == [0.0, 1.0] else "two-valued"
        return CovariateCoding(name, kind, float(values[0]), float(values[1] - values[0]))
    return CovariateCoding(name, "numeric", float(np.mean(x)), float(np.std(x, ddof=1)))


@dataclass(frozen=True)
class FitData:
    """One data set ready to model (model-agnostic).

    Attributes
    ----------
    time, event
        Times (> 0, in ``time_unit``) and event codes (0 censored; 1 event, or 1..K causes).
    x
        Covariates, shape ``(n, p)``; NaN where unknown (only with ``missing="impute"``).
    covariate_names
        Names of the columns of ``x``.
    cuts
        Interval starts (0 first).
    n_dropped
        Rows dropped for a missing covariate.
    slots
        Covariate slots of the model structure (``>= p``; spare slots are zero-filled).
    cause_names
        Competing risks: the name of each code 1..K; ``()`` for a single event type.
    curve_times
        Time grid of the derived curves.
    time_unit
        Unit of the times, cut points and curve times (a key of ``TIME_UNITS``).
    missing
        ``"drop"`` (complete cases) or ``"impute"`` (rows with unknown covariates kept).
    """

    time: np.ndarray
    event: np.ndarray
    x: np.ndarray
    covariate_names: tuple[str, ...]
    cuts: np.ndarray
    n_dropped: int = 0
    slots: int | None = None
    cause_names: tuple[str, ...] = ()
    curve_times: np.ndarray = field(default_factory=lambda: CURVE_TIMES.copy())
    time_unit: str = "months"
    missing: str = "drop"

    def __post_init__(self) -> None:
        if self.time_unit not in TIME_UNITS:
            raise ValueError(f"time_unit must be one of {', '.join(TIME_UNITS)}")

    def from_months(self, months: float) -> float:
        """``months`` in this data's time unit (e.g. 60 months = 5 years = 1826.25 days)."""
        return float(months) * TIME_UNITS[self.time_unit]

    @property
    def n(self) -> int:
        return int(self.time.size)

    @property
    def complete(self) -> np.ndarray:
        """Rows with every covariate known."""
        return ~np.isnan(self.x).any(axis=1)

    @property
    def imputes(self) -> bool:
        """Whether the fit marginalises missing covariate values."""
        return self.missing == "impute" and not bool(self.complete.all())

    def values_missing(self) -> dict[str, int]:
        """Unknown values per covariate (all imputed when :attr:`imputes`)."""
        nan = np.isnan(self.x)
        return {name: int(nan[:, j].sum()) for j, name in enumerate(self.covariate_names)}

    @property
    def n_slots(self) -> int:
        return self.x.shape[1] if self.slots is None else self.slots

    @property
    def n_causes(self) -> int | None:
        return len(self.cause_names) or None

    @property
    def binary(self) -> bool:
        known = self.x[~np.isnan(self.x)]
        return bool(np.all(np.isin(known, (0.0, 1.0))))

    @property
    def slot_names(self) -> list[str]:
        spare = [f"_unused_{i}" for i in range(self.n_slots - len(self.covariate_names))]
        return [*self.covariate_names, *spare]

    def x_slots(self) -> np.ndarray:
        """Covariates padded with zero columns up to ``slots``."""
        pad = np.zeros((self.n, self.n_slots - self.x.shape[1]))
        return np.hstack([self.x, pad])

    @property
    def codings(self) -> tuple[CovariateCoding, ...]:
        """Centre and scale of each covariate (see :func:`covariate_coding`)."""
        return tuple(
            covariate_coding(name, column[~np.isnan(column)])
            for name, column in zip(self.covariate_names, self.x.T, strict=True)
        )

    @property
    def center(self) -> np.ndarray:
        """Covariate centres (the reference of the baseline), one per covariate."""
        return np.array([c.center for c in self.codings], dtype=float)

    def center_slots(self) -> np.ndarray:
        """Centres padded with 0 up to ``slots`` (spare slots are zero columns)."""
        return np.concatenate([self.center, np.zeros(self.n_slots - self.x.shape[1])])

    def scale_slots(self) -> np.ndarray:
        """Scales padded with 1 up to ``slots``."""
        scale = np.array([c.scale for c in self.codings], dtype=float)
        return np.concatenate([scale, np.ones(self.n_slots - self.x.shape[1])])

    def person_period(self, padded: bool = True, centred: bool = False) -> PersonPeriod:
        """Person-period rows of the complete cases; ``padded``: with the spare zero slots (as
        the model sees them); ``centred``: covariates minus their centres (as the model's
        ``log_h0`` needs them)."""
        c = self.complete
        x = self.x_slots() if padded else self.x
        if centred:
            x = x - (self.center_slots() if padded else self.center)
        return expand(self.time[c], self.event[c], x[c], self.cuts)

    def cells(self) -> Cells:
        """Collapsed cells of the complete cases: on the fixed grid of all 0/1 patterns when
        covariates are binary."""
        patterns = binary_patterns(self.n_slots) if self.binary and self.n_slots <= 6 else None
        return collapse(self.person_period(), len(self.cuts), patterns, self.n_causes)

    def log_rate_center(self) -> float:
        return float(np.log(crude_rate(self.time, self.event)))


def make_fit_data(
    time: np.ndarray,
    event: np.ndarray,
    covariates: dict[str, np.ndarray],
    *,
    cuts: Sequence[float] | None = None,
    slots: int | None = None,
    cause_names: Sequence[str] = (),
    curve_times: np.ndarray | None = None,
    time_unit: str = "months",
    missing: str = "drop",
) -> FitData:
    """``time``, ``event`` and named covariate arrays (NaN = missing): the complete cases
    (``missing="drop"``) or every row (``"impute"``; the spare ``slots`` are then dropped when
    a value is missing, as the imputed model has its own structure)."""
    if missing not in ("drop", "impute"):
        raise ValueError("missing must be 'drop' or 'impute'")
    names = tuple(covariates)
    x = (
        np.column_stack([np.asarray(covariates[k], float) for k in names])
        if names
        else np.zeros((len(time), 0))
    )
    keep = ~np.isnan(x).any(axis=1)
    c = check_cuts(DEFAULT_CUTS if cuts is None else cuts)
    if slots is not None and slots < len(names):
        raise ValueError("slots must be at least the number of covariates")
    if missing == "impute" and not keep.all():
        keep = np.ones_like(keep)
        slots = None
    return FitData(
        time=np.asarray(time, float)[keep],
        event=np.asarray(event, int)[keep],
        x=x[keep],
        covariate_names=names,
        cuts=c,
        n_dropped=int((~keep).sum()),
        slots=slots,
        cause_names=tuple(cause_names),
        curve_times=CURVE_TIMES.copy() if curve_times is None else np.asarray(curve_times, float),
        time_unit=time_unit,
        missing=missing,
    )


def default_curve_times(time: np.ndarray, n: int = 40) -> np.ndarray:
    """A grid of ``n`` points up to the longest follow-up, in the times' unit (user data)."""
    top = float(np.max(time))
    return np.linspace(top / n, top, n)
