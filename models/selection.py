"""Selection-adjusted hazard ratios: of many markers tested, only the significant ones reported.

A study tests ``M`` markers against one end point and reports the estimates of those that came
out significant. Every marker ``m`` has a true log HR ``theta_m`` and an estimate
``y_m ~ Normal(theta_m, s_m)``; the model is hierarchical::

    tau ~ HalfNormal(tau_scale)
    theta_m = tau * z_m,   z_m ~ Normal(0, 1)        (non-centred)
    reported m:    y_m ~ Normal(theta_m, s_m)        (s_m from the printed 95% CI)
    unreported m:  P(|y_m / s| < c | theta_m) = Phi(c - theta_m/s) - Phi(-c - theta_m/s)

with ``s`` the geometric mean of the reported SEs (the unreported SEs are not printed) and ``c``
the significance threshold (1.645: two-sided P < 0.10). This is the likelihood of everything the
paper tells: which markers were reported, their estimates, and that the others were not
significant. The reported markers enter with their plain normal likelihood, not a truncated one:
given the 20 outcomes of the selection, the selection event adds the constant factor 1 to a
reported marker's density. The adjustment comes from the unreported markers, which pull ``tau``
(and with it every ``theta_m``) towards 0. This holds only if the markers were in fact reported
because, and only because, they were significant, and if their estimates are independent.

Given ``tau`` everything is conjugate, so :func:`exact_posterior` computes the posterior by
quadrature over ``tau`` (used to check the MCMC and to run simulation studies fast);
:func:`unadjusted_summary` is the conjugate Normal(0, prior_sd) reading of one estimate alone.

No paper numbers live here: the caller passes marker names and estimates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from scipy import integrate, special, stats

Z975 = float(stats.norm.ppf(0.975))
DEFAULT_TAU_SCALE = 0.5
DEFAULT_THRESHOLD = 1.645
"""|z| below which an estimate counts as not significant (two-sided P >= 0.10)."""
TAU_UPPER_SCALES = 8.0
"""Quadrature over tau on [0, 8 * tau_scale]: the HalfNormal prior leaves mass ~1e-15 beyond,
and the likelihood only decreases in tau for large tau."""
DEFAULT_NODES = 801
BISECTION_STEPS = 60
SQRT2 = math.sqrt(2.0)


@dataclass(frozen=True)
class SelectionSettings:
    """Prior scale of ``tau`` (HalfNormal) and the significance threshold ``c`` on |y / s|."""

    tau_scale: float = DEFAULT_TAU_SCALE
    threshold: float = DEFAULT_THRESHOLD

    def __post_init__(self) -> None:
        if not self.tau_scale > 0:
            raise ValueError("tau_scale must be > 0")
        if not 0 < self.threshold < 10:
            raise ValueError("threshold must be in (0, 10)")

    def describe(self) -> str:
        """One line for reports."""
        return (
            f"tau ~ HalfNormal({self.tau_scale:g}); unreported markers not significant at "
            f"|z| < {self.threshold:g}"
        )


@dataclass(frozen=True)
class SelectionData:
    """One end point: every tested marker, which were reported, and their estimates.

    ``log_hr`` and ``se`` hold the reported markers' estimates and SEs; for unreported markers
    ``log_hr`` is 0 (unused) and ``se`` is ``se_unreported``, the geometric mean of the reported
    SEs.
    """

    markers: tuple[str, ...]
    log_hr: np.ndarray
    se: np.ndarray
    reported: np.ndarray
    se_unreported: float

    @property
    def reported_markers(self) -> tuple[str, ...]:
        return tuple(m for m, r in zip(self.markers, self.reported, strict=True) if r)


def se_from_ci(lower: float | np.ndarray, upper: float | np.ndarray) -> np.ndarray:
    """SE of a log HR implied by a 95% Wald CI: ``(log upper - log lower) / (2 * 1.96)``."""
    lower, upper = np.asarray(lower, float), np.asarray(upper, float)
    if np.any(~(lower > 0)) or np.any(~(upper > lower)):
        raise ValueError("need 0 < lower < upper")
    return (np.log(upper) - np.log(lower)) / (2 * Z975)


def from_estimates(
    markers: Sequence[str], log_hr: np.ndarray, se: np.ndarray, reported: np.ndarray
) -> SelectionData:
    """:class:`SelectionData` from per-marker arrays (values of unreported markers ignored)."""
    names = tuple(markers)
    rep = np.asarray(reported, bool)
    y = np.asarray(log_hr, float)
    s = np.asarray(se, float)
    if len(set(names)) != len(names):
        raise ValueError("marker names must be unique")
    if not (rep.shape == y.shape == s.shape == (len(names),)):
        raise ValueError("log_hr, se and reported need one value per marker")
    if not rep.any():
        raise ValueError("at least one marker must be reported")
    if not (np.all(np.isfinite(y[rep])) and np.all(s[rep] > 0)):
        raise ValueError("reported markers need a finite log HR and an SE > 0")
    s_bar = float(np.exp(np.mean(np.log(s[rep]))))
    return SelectionData(
        markers=names,
        log_hr=np.where(rep, y, 0.0),
        se=np.where(rep, s, s_bar),
        reported=rep,
        se_unreported=s_bar,
    )


def from_published(
    markers: Sequence[str], reported: Mapping[str, tuple[float, float, float]]
) -> SelectionData:
    """:class:`SelectionData` from the tested ``markers`` and ``{name: (hr, lower, upper)}``.

    The log HR is the printed point estimate; its SE is implied by the 95% CI.
    """
    unknown = sorted(set(reported) - set(markers))
    if unknown:
        raise ValueError(f"reported markers not among those tested: {', '.join(unknown)}")
    n = len(markers)
    y, s, rep = np.zeros(n), np.ones(n), np.zeros(n, bool)
    for i, name in enumerate(markers):
        if name in reported:
            hr, lower, upper = reported[name]
            if not hr > 0:
                raise ValueError(f"{name}: hr must be > 0")
            y[i], s[i], rep[i] = math.log(hr), float(se_from_ci(lower, upper)), True
    return from_estimates(markers, y, s, rep)


def model_data(data: SelectionData, settings: SelectionSettings) -> dict[str, np.ndarray]:
    """Values of the ``pm.Data`` containers of :func:`build_selection_model` (for ``with_data``)."""
    return {
        "log_hr": np.asarray(data.log_hr, float),
        "se": np.asarray(data.se, float),
        "reported": data.reported.astype(float),
        "tau_scale": np.asarray(float(settings.tau_scale)),
        "threshold": np.asarray(float(settings.threshold)),
    }


FAR_TAIL = -20.0
"""Below this ``x``, :func:`log_normal_cdf_below` uses the asymptotic series (``erfc`` keeps
full relative precision down to about -37, the series is exact to ~1e-11 from -20 on)."""


def log_normal_cdf_below(x: pt.TensorVariable) -> pt.TensorVariable:
    """``log Phi(x)``, exact and stable for every ``x``.

    ``Phi(x) = erfc(-x / sqrt 2) / 2`` down to ``FAR_TAIL``; below it the Mills-ratio series
    ``log Phi(x) = -x^2/2 - log(-x) - log(2 pi)/2 + log(1 - 1/x^2 + 3/x^4 - 15/x^6 + 105/x^8)``
    (next term 945/x^10 < 1e-10). Each branch sees only inputs where it is finite, so value
    and gradient are finite everywhere. Built from ``erfc`` rather than ``erfcx`` because
    PyTensor's numba backend calls ``erfcx`` through a pointer into SciPy, which keeps the
    compiled model out of the on-disk compile cache.
    """
    near = pt.maximum(x, FAR_TAIL)
    exact = pt.log(pt.erfc(-near / SQRT2) / 2.0)
    far = pt.minimum(x, FAR_TAIL)
    r = 1.0 / far**2
    series = pt.log1p(r * (-1.0 + r * (3.0 + r * (-15.0 + 105.0 * r))))
    asymptotic = -(far**2) / 2.0 - pt.log(-far) - 0.5 * math.log(2.0 * math.pi) + series
    return pt.switch(x >= FAR_TAIL, exact, asymptotic)


def log_prob_not_significant(
    theta: pt.TensorVariable, se: pt.TensorVariable, threshold: pt.TensorVariable
) -> pt.TensorVariable:
    """``log P(|y / se| < threshold)`` for ``y ~ Normal(theta, se)``, stable for any ``theta``.

    ``P = Phi(c - u) - Phi(-c - u)`` with ``u = theta / se``; it is even in ``u``, so with
    ``v = |u|`` both arguments are at most ``c`` and ``log P = log Phi(c - v) +
    log1mexp(log Phi(-c - v) - log Phi(c - v))``. Value and gradient stay finite for large
    ``|theta| / se`` (``log P`` ~ ``-(v - c)^2 / 2``).
    """
    v = pt.abs(theta / se)
    upper = log_normal_cdf_below(threshold - v)
    lower = log_normal_cdf_below(-threshold - v)
    return upper + pt.log1mexp(lower - upper)


def build_selection_model(
    data: SelectionData, settings: SelectionSettings | None = None
) -> pm.Model:
    """The selection model of one end point as a ``pm.Model`` (dims ``marker``).

    Data containers (swap with ``pm.set_data`` or nutpie's ``with_data``, see
    :func:`model_data`): ``log_hr``, ``se``, ``reported`` (0/1) per marker, and the scalars
    ``tau_scale`` and ``threshold``, so one compiled model serves every end point with the same
    number of markers and every prior/threshold setting. Free variables: ``tau``, ``z``;
    deterministic ``hr = exp(tau * z)``.
    """
    settings = settings or SelectionSettings()
    values = model_data(data, settings)
    with pm.Model(coords={"marker": list(data.markers)}) as model:
        y = pm.Data("log_hr", values["log_hr"], dims="marker")
        se = pm.Data("se", values["se"], dims="marker")
        reported = pm.Data("reported", values["reported"], dims="marker")
        tau_scale = pm.Data("tau_scale", values["tau_scale"])
        threshold = pm.Data("threshold", values["threshold"])
        tau = pm.HalfNormal("tau", sigma=tau_scale)
        z = pm.Normal("z", 0.0, 1.0, dims="marker")
        theta = tau * z
        pm.Deterministic("hr", pt.exp(theta), dims="marker")
        loglik_reported = -0.5 * ((y - theta) / se) ** 2
        loglik_unreported = log_prob_not_significant(theta, se, threshold)
        pm.Potential(
            "loglik",
            pt.sum(reported * loglik_reported + (1.0 - reported) * loglik_unreported),
        )
    return model


@dataclass(frozen=True)
class HrSummary:
    """Posterior of one HR: median, 95% equal-tailed interval, P(HR > 1)."""

    median: float
    lower: float
    upper: float
    prob_gt_1: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class ScaleSummary:
    """Posterior of a scale such as ``tau``: median and 95% equal-tailed interval."""

    median: float
    lower: float
    upper: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def summarize_hr(draws: np.ndarray) -> HrSummary:
    """:class:`HrSummary` of HR draws (any shape; all draws pooled)."""
    d = np.asarray(draws, float).ravel()
    lower, median, upper = np.quantile(d, [0.025, 0.5, 0.975])
    return HrSummary(float(median), float(lower), float(upper), float(np.mean(d > 1.0)))


def summarize_scale(draws: np.ndarray) -> ScaleSummary:
    """:class:`ScaleSummary` of draws (any shape; all draws pooled)."""
    lower, median, upper = np.quantile(np.asarray(draws, float).ravel(), [0.025, 0.5, 0.975])
    return ScaleSummary(float(median), float(lower), float(upper))


def summarize_selection_posterior(
    hr: np.ndarray, tau: np.ndarray, markers: Sequence[str]
) -> dict[str, HrSummary | ScaleSummary]:
    """Per-marker :class:`HrSummary` and the ``tau`` :class:`ScaleSummary` (key ``"tau"``).

    ``hr`` has the marker on its last axis (e.g. chain x draw x marker); ``tau`` any shape.
    """
    hr = np.asarray(hr, float)
    if hr.shape[-1] != len(markers):
        raise ValueError("hr needs one column per marker")
    out: dict[str, HrSummary | ScaleSummary] = {
        name: summarize_hr(hr[..., i]) for i, name in enumerate(markers)
    }
    out["tau"] = summarize_scale(tau)
    return out


def unadjusted_posterior(
    log_hr: float | np.ndarray, se: float | np.ndarray, prior_sd: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sd of the log HR under a Normal(0, prior_sd) prior and the estimate alone."""
    y, s = np.asarray(log_hr, float), np.asarray(se, float)
    precision = 1.0 / prior_sd**2 + 1.0 / s**2
    return (y / s**2) / precision, np.sqrt(1.0 / precision)


def unadjusted_summary(log_hr: float, se: float, prior_sd: float = 1.0) -> HrSummary:
    """:class:`HrSummary` of the conjugate Normal(0, prior_sd) reading of one estimate."""
    mean, sd = (float(v) for v in unadjusted_posterior(log_hr, se, prior_sd))
    return HrSummary(
        median=math.exp(mean),
        lower=math.exp(mean - Z975 * sd),
        upper=math.exp(mean + Z975 * sd),
        prob_gt_1=float(stats.norm.sf(0.0, mean, sd)),
    )


# ----------------------------------------------------------------------------------------------
# Exact posterior by quadrature over tau
# ----------------------------------------------------------------------------------------------


def log_marginal_reported(tau: np.ndarray, log_hr: np.ndarray, se: np.ndarray) -> np.ndarray:
    """``log Normal(y; 0, sqrt(tau^2 + s^2))`` per tau (rows) and reported marker (columns)."""
    scale = np.sqrt(np.asarray(tau, float)[:, None] ** 2 + np.asarray(se, float)[None, :] ** 2)
    return stats.norm.logpdf(np.asarray(log_hr, float)[None, :], 0.0, scale)


def log_marginal_unreported(tau: np.ndarray, se: float, threshold: float) -> np.ndarray:
    """``log P(|y / s| < c)`` with ``theta`` integrated out: ``log(2 Phi(c s / sqrt(tau^2 +
    s^2)) - 1)`` = ``log erf(c s / sqrt(2 (tau^2 + s^2)))``, per tau."""
    tau = np.asarray(tau, float)
    return np.log(special.erf(threshold * se / np.sqrt(2.0 * (tau**2 + se**2))))


@dataclass(frozen=True)
class ExactPosterior:
    """Posterior by quadrature over ``tau``: a mixture over the nodes of normal ``theta``s.

    ``weight[k]`` is the posterior mass at node ``tau[k]`` (trapezoid rule; sums to 1);
    ``mean[m, k]`` and ``sd[m, k]`` are the normal ``theta_m | tau_k, y_m`` of reported marker
    ``markers[m]``.
    """

    markers: tuple[str, ...]
    tau: np.ndarray
    density: np.ndarray
    weight: np.ndarray
    mean: np.ndarray
    sd: np.ndarray

    def theta_cdf(self, x: np.ndarray) -> np.ndarray:
        """P(theta_m <= x) for ``x`` of shape (n_markers, ...) (broadcast per marker)."""
        x = np.asarray(x, float)
        lead = (slice(None),) + (None,) * (x.ndim - 1)
        mean = self.mean[(*lead, slice(None))]
        sd = np.maximum(self.sd, 1e-300)[(*lead, slice(None))]
        z = (x[..., None] - mean) / sd
        return np.sum(self.weight * special.ndtr(z), axis=-1)

    def theta_quantiles(self, probs: Sequence[float]) -> np.ndarray:
        """Quantiles of each marker's theta: shape (n_markers, len(probs)), by bisection."""
        p = np.asarray(probs, float)
        lo = np.min(self.mean - 12 * self.sd, axis=1)[:, None] + np.zeros((1, p.size))
        hi = np.max(self.mean + 12 * self.sd, axis=1)[:, None] + np.zeros((1, p.size))
        for _ in range(BISECTION_STEPS):
            mid = 0.5 * (lo + hi)
            below = self.theta_cdf(mid) < p[None, :]
            lo = np.where(below, mid, lo)
            hi = np.where(below, hi, mid)
        return 0.5 * (lo + hi)

    def prob_positive(self) -> np.ndarray:
        """P(theta_m > 0) = P(HR > 1) per reported marker."""
        return 1.0 - self.theta_cdf(np.zeros(len(self.markers)))

    def tau_cdf(self, x: np.ndarray) -> np.ndarray:
        """P(tau <= x) (trapezoid rule on the nodes)."""
        cdf = integrate.cumulative_trapezoid(self.density, self.tau, initial=0.0)
        return np.interp(x, self.tau, cdf / cdf[-1])

    def hr_summaries(self) -> dict[str, HrSummary]:
        """:class:`HrSummary` per reported marker."""
        q = np.exp(self.theta_quantiles([0.025, 0.5, 0.975]))
        p = self.prob_positive()
        return {
            name: HrSummary(float(q[i, 1]), float(q[i, 0]), float(q[i, 2]), float(p[i]))
            for i, name in enumerate(self.markers)
        }

    def tau_summary(self) -> ScaleSummary:
        """:class:`ScaleSummary` of ``tau``."""
        cdf = integrate.cumulative_trapezoid(self.density, self.tau, initial=0.0)
        lower, median, upper = np.interp([0.025, 0.5, 0.975], cdf / cdf[-1], self.tau)
        return ScaleSummary(float(median), float(lower), float(upper))


def exact_posterior(
    data: SelectionData,
    settings: SelectionSettings | None = None,
    n_nodes: int = DEFAULT_NODES,
) -> ExactPosterior:
    """The posterior of the selection model by quadrature over ``tau`` (no sampling).

    ``p(tau | data)`` is proportional to the HalfNormal prior times, per reported marker,
    ``Normal(y_m; 0, sqrt(tau^2 + s_m^2))`` and, per unreported marker, ``2 Phi(c s /
    sqrt(tau^2 + s^2)) - 1``; given ``tau``, ``theta_m ~ Normal(tau^2 / (tau^2 + s_m^2) y_m,
    tau s_m / sqrt(tau^2 + s_m^2))``. Nodes: ``n_nodes`` equally spaced on ``[0, 8 tau_scale]``.
    """
    settings = settings or SelectionSettings()
    if n_nodes < 3:
        raise ValueError("n_nodes must be >= 3")
    tau = np.linspace(0.0, TAU_UPPER_SCALES * settings.tau_scale, n_nodes)
    rep = data.reported
    y, s = data.log_hr[rep], data.se[rep]
    n_unreported = int((~rep).sum())
    log_post = (
        -0.5 * (tau / settings.tau_scale) ** 2
        + log_marginal_reported(tau, y, s).sum(axis=1)
        + n_unreported * log_marginal_unreported(tau, data.se_unreported, settings.threshold)
    )
    density = np.exp(log_post - log_post.max())
    trapezoid = np.full(n_nodes, tau[1] - tau[0])
    trapezoid[[0, -1]] *= 0.5
    weight = density * trapezoid
    weight = weight / weight.sum()
    t2, s2 = tau[None, :] ** 2, s[:, None] ** 2
    shrink = t2 / (t2 + s2)
    return ExactPosterior(
        markers=data.reported_markers,
        tau=tau,
        density=density,
        weight=weight,
        mean=shrink * y[:, None],
        sd=np.sqrt(shrink * s2),
    )


def compare_draws(
    exact: ExactPosterior, log_hr_draws: np.ndarray, tau_draws: np.ndarray
) -> dict[str, np.ndarray]:
    """How posterior draws (e.g. MCMC) sit in the exact posterior.

    ``log_hr_draws`` has the reported markers (in ``exact.markers`` order) on its last axis.
    Returns ``theta_cdf_at_quantiles`` (n_markers x 3): the exact CDF at the draws' 2.5%, 50%
    and 97.5% quantiles (0.025, 0.5, 0.975 up to Monte Carlo error); ``tau_cdf_at_quantiles``
    (3,), the same for ``tau``; ``prob_gt_1_draws`` and ``prob_gt_1_exact`` (n_markers,).
    """
    probs = np.array([0.025, 0.5, 0.975])
    d = np.asarray(log_hr_draws, float)
    d = d.reshape(-1, d.shape[-1])
    if d.shape[1] != len(exact.markers):
        raise ValueError("log_hr_draws needs one column per reported marker")
    q = np.quantile(d, probs, axis=0).T
    tau_q = np.quantile(np.asarray(tau_draws, float).ravel(), probs)
    return {
        "theta_cdf_at_quantiles": exact.theta_cdf(q),
        "tau_cdf_at_quantiles": exact.tau_cdf(tau_q),
        "prob_gt_1_draws": np.mean(d > 0.0, axis=0),
        "prob_gt_1_exact": exact.prob_positive(),
    }
