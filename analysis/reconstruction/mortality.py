"""Background (other-cause) mortality of the synthetic patients: a Gompertz law fitted to a US
period life table.

Source of the rates: *United States Life Tables, 2011*, E. Arias, National Vital Statistics
Reports vol. 64 no. 11 (2015), Tables 2 and 3 (total population, males and females): the
probability ``q_x`` of dying between exact ages ``x`` and ``x + 1``, transcribed below at every
fifth age from 20 to 95 (the study's patients were 22-78 years old at surgery and followed for
up to 14 years). 2011 lies inside the study's follow-up (1993-2015); mortality at these ages
changed by well under the prior's spread on the multiplier over that period.

Fit: the hazard within year ``x`` is taken as constant, ``mu(x + 1/2) = -log(1 - q_x)``, and
``log mu(a) = log A + B a`` is fitted by least squares over ages 30-90, separately by sex
(:func:`gompertz_fit`). The generative model multiplies the fitted hazard by a patient-level
constant drawn from its prior (cancer survivors die of other causes somewhat more often than
the general population); race is not used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LIFE_TABLE_AGES: tuple[int, ...] = tuple(range(20, 100, 5))
LIFE_TABLE_SOURCE = (
    "US period life table 2011 (Arias E., United States Life Tables, 2011. National Vital "
    "Statistics Reports 64(11), 2015; Tables 2-3, q_x by sex)"
)
QX: dict[str, tuple[float, ...]] = {
    "male": (
        0.001085, 0.001351, 0.001432, 0.001613, 0.002083, 0.003243, 0.005193, 0.007779,
        0.011034, 0.015482, 0.023396, 0.036345, 0.059565, 0.099650, 0.166038, 0.256636,
    ),
    "female": (
        0.000384, 0.000505, 0.000673, 0.000888, 0.001291, 0.002070, 0.003245, 0.004564,
        0.006589, 0.009953, 0.015718, 0.025387, 0.043109, 0.075391, 0.132396, 0.216706,
    ),
}  # fmt: skip
"""q_x at the ages of :data:`LIFE_TABLE_AGES`, as printed in the source."""
FIT_AGES = (30, 90)


@dataclass(frozen=True)
class Gompertz:
    """Hazard ``A exp(B a)`` per year at age ``a`` (years)."""

    a: float
    b: float

    def hazard(self, age: np.ndarray | float) -> np.ndarray | float:
        """Deaths per person-year at ``age``."""
        return self.a * np.exp(self.b * np.asarray(age, float))

    def cumulative(self, age: float, years: float) -> float:
        """Integrated hazard from ``age`` to ``age + years``."""
        return self.a / self.b * (math.exp(self.b * (age + years)) - math.exp(self.b * age))


def gompertz_fit(sex: str) -> Gompertz:
    """Least-squares Gompertz fit to the life table's hazards of one sex (see the docstring)."""
    ages = np.asarray(LIFE_TABLE_AGES, float)
    mu = -np.log1p(-np.asarray(QX[sex], float))
    keep = (ages >= FIT_AGES[0]) & (ages <= FIT_AGES[1])
    slope, intercept = np.polyfit(ages[keep] + 0.5, np.log(mu[keep]), 1)
    return Gompertz(float(math.exp(intercept)), float(slope))


def background_laws() -> dict[str, Gompertz]:
    """The fitted law of each sex (``"male"``, ``"female"``)."""
    return {sex: gompertz_fit(sex) for sex in QX}
