"""Summary-level posterior of a published hazard ratio: the fits' prior updated by the
published estimate alone.

The published HR and its 95% CI give a normal likelihood on the log HR,
``log HR_hat ~ Normal(log HR, se)`` with ``se = (log upper - log lower) / (2 * 1.959964)`` (a
Wald interval, as SPSS prints). Combined with the same log-HR prior as the PEM fits
(:class:`models.priors.Priors`: Normal(0, sd) or StudentT(nu, 0, sd)) this is a one-parameter
problem solved exactly: conjugate for the normal prior, numerical quadrature on a fine grid for
the Student-t prior. It shows how much the prior alone shrinks each published HR, independent of
the reconstructed cohort.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import integrate, stats

Z975 = float(stats.norm.ppf(0.975))
GRID_POINTS = 20001
GRID_HALF_WIDTH_SE = 12.0


@dataclass(frozen=True)
class SummaryPosterior:
    """Posterior of one log HR given only a published estimate.

    Attributes are on the HR scale (``median_hr``, ``lower``, ``upper``: the 2.5% and 97.5%
    quantiles) except ``mean_log_hr`` and ``sd_log_hr``; ``prob_gt_1`` is P(HR > 1).
    ``se`` is the standard error of the published log HR implied by its CI; ``method`` is
    ``"conjugate"`` or ``"quadrature"``.
    """

    median_hr: float
    lower: float
    upper: float
    prob_gt_1: float
    mean_log_hr: float
    sd_log_hr: float
    se: float
    method: str

    def as_dict(self) -> dict[str, float | str]:
        return asdict(self)


def se_from_ci(lower: float, upper: float, level: float = 0.95) -> float:
    """Standard error of the log HR implied by a symmetric Wald CI on the log scale."""
    if not (lower > 0 and upper > lower):
        raise ValueError("need 0 < lower < upper")
    z = float(stats.norm.ppf(0.5 + level / 2))
    return (math.log(upper) - math.log(lower)) / (2 * z)


def _prior_logpdf(b: np.ndarray, family: str, sd: float, nu: float) -> np.ndarray:
    if family == "normal":
        return stats.norm.logpdf(b, 0.0, sd)
    if family == "student_t":
        return stats.t.logpdf(b, nu, 0.0, sd)
    raise ValueError(f"unknown prior family {family!r}")


def conjugate_normal(log_hr: float, se: float, prior_sd: float) -> SummaryPosterior:
    """Exact posterior for a Normal(0, prior_sd) prior on the log HR."""
    precision = 1.0 / prior_sd**2 + 1.0 / se**2
    mean = (log_hr / se**2) / precision
    sd = math.sqrt(1.0 / precision)
    return SummaryPosterior(
        median_hr=math.exp(mean),
        lower=math.exp(mean - Z975 * sd),
        upper=math.exp(mean + Z975 * sd),
        prob_gt_1=float(stats.norm.sf(0.0, mean, sd)),
        mean_log_hr=mean,
        sd_log_hr=sd,
        se=se,
        method="conjugate",
    )


def quadrature(
    log_hr: float, se: float, family: str, prior_sd: float, prior_nu: float = 3.0
) -> SummaryPosterior:
    """Posterior by quadrature on a fine grid of the log HR (any prior family).

    The grid is dense on the likelihood +- 12 SE and on the prior +- 12 prior scales. Outside
    both, the likelihood is below exp(-72) of its peak and the prior far in its tail, so the
    neglected mass is negligible; the trapezoid rule integrates the rest.
    """
    half = GRID_HALF_WIDTH_SE * prior_sd
    near_data = np.linspace(
        log_hr - GRID_HALF_WIDTH_SE * se, log_hr + GRID_HALF_WIDTH_SE * se, GRID_POINTS
    )
    b = np.union1d(near_data, np.linspace(-half, half, GRID_POINTS))
    log_post = _prior_logpdf(b, family, prior_sd, prior_nu) + stats.norm.logpdf(log_hr, b, se)
    dens = np.exp(log_post - log_post.max())
    cdf = integrate.cumulative_trapezoid(dens, b, initial=0.0)
    total = cdf[-1]
    cdf = cdf / total
    mean = float(integrate.trapezoid(b * dens, b) / total)
    var = float(integrate.trapezoid((b - mean) ** 2 * dens, b) / total)
    q = np.interp([0.025, 0.5, 0.975], cdf, b)
    p_gt = 1.0 - float(np.interp(0.0, b, cdf))
    return SummaryPosterior(
        median_hr=math.exp(q[1]),
        lower=math.exp(q[0]),
        upper=math.exp(q[2]),
        prob_gt_1=p_gt,
        mean_log_hr=mean,
        sd_log_hr=math.sqrt(var),
        se=se,
        method="quadrature",
    )


def summary_posterior(
    hr: float,
    lower: float,
    upper: float,
    *,
    family: str = "normal",
    prior_sd: float = 1.0,
    prior_nu: float = 3.0,
) -> SummaryPosterior:
    """The prior (``family``, ``prior_sd``, ``prior_nu``) updated by a published HR and 95% CI.

    The likelihood is centred on ``log(hr)`` (the printed point estimate) with the SE implied by
    the CI; the printed CI need not be exactly symmetric around it after rounding.
    """
    if not hr > 0:
        raise ValueError("hr must be > 0")
    se = se_from_ci(lower, upper)
    if family == "normal":
        return conjugate_normal(math.log(hr), se, prior_sd)
    return quadrature(math.log(hr), se, family, prior_sd, prior_nu)
