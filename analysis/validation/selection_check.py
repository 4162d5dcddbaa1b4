"""Simulation check of the selection-adjusted hazard ratios (:mod:`models.selection`).

Each simulated study tests ``n_markers`` markers: true log HRs ``theta_m ~ Normal(0, tau_true)``,
estimates ``y_m ~ Normal(theta_m, s_m)``, and only the markers with ``|y_m / s_m| >= threshold``
are "reported", as the paper did. Studies that report nothing are dropped (the paper reported
something). For every reported marker the check compares three readings with the true
``theta_m``:

- ``published``: the estimate itself with its Wald 95% interval ``y +- 1.96 s``;
- ``unadjusted``: the Normal(0, 1) prior updated with the estimate alone (conjugate);
- ``adjusted``: the selection model, by quadrature over ``tau`` (:func:`exact_posterior`, the
  same posterior that MCMC samples; :func:`mcmc_agreement` shows that on a handful of studies).

Results are plain dicts (rows per ``tau_true``); nothing is written here. Every random step is
seeded from ``SimulationSettings.seed``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from analysis.inference.selection_fit import McmcSettings, compile_selection, sample_selection
from models.selection import (
    Z975,
    SelectionData,
    SelectionSettings,
    compare_draws,
    exact_posterior,
    from_estimates,
    unadjusted_posterior,
)


@dataclass(frozen=True)
class SimulationSettings:
    """What is simulated and how the studies are read.

    Attributes
    ----------
    tau_true
        Spread of the true log HRs across markers; one row of results per value.
    n_studies
        Studies simulated per ``tau_true`` (before dropping those that report nothing).
    n_markers
        Markers tested per study.
    se, se_spread
        SE of each estimate: ``se * exp(se_spread * Normal(0, 1))`` per marker (``se_spread =
        0``: all equal, as the model assumes for the unreported ones). 0.6 is the order of the
        SEs of a binary marker's log HR in a study of 26 patients.
    threshold
        Selection rule of the simulated studies: report iff ``|y / s| >= threshold``.
    model
        Settings of the adjusted reading (its threshold may differ from the simulated one).
    unadjusted_prior_sd
        Sd of the Normal prior of the unadjusted reading.
    n_nodes
        Quadrature nodes over ``tau``.
    """

    tau_true: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0)
    n_studies: int = 2000
    n_markers: int = 20
    se: float = 0.6
    se_spread: float = 0.0
    threshold: float = 1.645
    model: SelectionSettings = field(default_factory=SelectionSettings)
    unadjusted_prior_sd: float = 1.0
    n_nodes: int = 401
    seed: int = 20260115

    def __post_init__(self) -> None:
        if any(t < 0 for t in self.tau_true) or not self.tau_true:
            raise ValueError("tau_true must be non-empty and >= 0")
        if self.n_studies < 1 or self.n_markers < 2:
            raise ValueError("need n_studies >= 1 and n_markers >= 2")
        if not (self.se > 0 and self.se_spread >= 0 and self.threshold > 0):
            raise ValueError("need se > 0, se_spread >= 0, threshold > 0")


@dataclass(frozen=True)
class SimulatedStudy:
    """One simulated study: truth, estimates, SEs and which markers were reported."""

    theta: np.ndarray
    log_hr: np.ndarray
    se: np.ndarray
    reported: np.ndarray

    def data(self) -> SelectionData:
        """What the reader of the paper sees (unreported estimates hidden)."""
        names = [f"m{i:02d}" for i in range(self.theta.size)]
        return from_estimates(names, self.log_hr, self.se, self.reported)


def simulate_study(
    rng: np.random.Generator, tau_true: float, settings: SimulationSettings
) -> SimulatedStudy:
    """Draw one study and apply the selection rule."""
    n = settings.n_markers
    theta = tau_true * rng.standard_normal(n)
    se = settings.se * np.exp(settings.se_spread * rng.standard_normal(n))
    y = theta + se * rng.standard_normal(n)
    return SimulatedStudy(theta, y, se, np.abs(y / se) >= settings.threshold)


def read_study(study: SimulatedStudy, settings: SimulationSettings) -> dict[str, np.ndarray]:
    """The three readings of the reported markers of one study (log scale).

    Returns arrays over the reported markers: ``theta`` (truth), ``{reading}_lower``,
    ``{reading}_median``, ``{reading}_upper`` for ``published``, ``unadjusted``, ``adjusted``.
    """
    rep = study.reported
    y, s = study.log_hr[rep], study.se[rep]
    mean, sd = unadjusted_posterior(y, s, settings.unadjusted_prior_sd)
    exact = exact_posterior(study.data(), settings.model, n_nodes=settings.n_nodes)
    q = exact.theta_quantiles([0.025, 0.5, 0.975])
    return {
        "theta": study.theta[rep],
        "published_lower": y - Z975 * s,
        "published_median": y,
        "published_upper": y + Z975 * s,
        "unadjusted_lower": mean - Z975 * sd,
        "unadjusted_median": mean,
        "unadjusted_upper": mean + Z975 * sd,
        "adjusted_lower": q[:, 0],
        "adjusted_median": q[:, 1],
        "adjusted_upper": q[:, 2],
    }


READINGS = ("published", "unadjusted", "adjusted")


def score_readings(readings: dict[str, np.ndarray]) -> dict[str, float]:
    """Coverage (with its binomial Monte Carlo SE), bias, RMSE and mean width per reading.

    ``readings`` are the concatenated outputs of :func:`read_study`. Bias is measured away from
    the null, in the direction of the published estimate: the mean of ``sign(y) * (point -
    theta)`` with ``point`` the posterior median (or ``y``), with its Monte Carlo SE. (The plain
    signed error averages to about 0, since selection keeps large estimates of either sign.)
    """
    theta = readings["theta"]
    direction = np.sign(readings["published_median"])
    n = theta.size
    out: dict[str, float] = {"reported_markers": int(n)}
    for r in READINGS:
        lower, median, upper = (readings[f"{r}_{k}"] for k in ("lower", "median", "upper"))
        covered = (lower <= theta) & (theta <= upper)
        error = direction * (median - theta)
        coverage = float(covered.mean()) if n else float("nan")
        out[f"coverage_{r}"] = coverage
        out[f"coverage_{r}_mcse"] = float(np.sqrt(coverage * (1 - coverage) / n)) if n else np.nan
        out[f"bias_{r}"] = float(error.mean()) if n else float("nan")
        out[f"bias_{r}_mcse"] = float(error.std(ddof=1) / np.sqrt(n)) if n > 1 else np.nan
        out[f"rmse_{r}"] = float(np.sqrt(np.mean((median - theta) ** 2))) if n else float("nan")
        out[f"width_{r}"] = float(np.mean(upper - lower)) if n else float("nan")
    return out


def simulate_readings(
    tau_true: float, settings: SimulationSettings, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], int]:
    """Readings of all reported markers over ``settings.n_studies`` studies; and the number of
    studies that reported at least one marker."""
    parts: list[dict[str, np.ndarray]] = []
    for _ in range(settings.n_studies):
        study = simulate_study(rng, tau_true, settings)
        if study.reported.any():
            parts.append(read_study(study, settings))
    if not parts:
        return {k: np.array([]) for k in ("theta", *_reading_keys())}, 0
    keys = parts[0].keys()
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}, len(parts)


def _reading_keys() -> list[str]:
    return [f"{r}_{k}" for r in READINGS for k in ("lower", "median", "upper")]


def run_simulation(settings: SimulationSettings | None = None) -> dict[str, Any]:
    """The simulation check: one row per ``tau_true`` (see :func:`score_readings`).

    Returns ``{"settings": ..., "rows": [...], "seconds": ...}``; each row also has
    ``tau_true``, ``studies`` and ``studies_with_report``.
    """
    settings = settings or SimulationSettings()
    t0 = time.perf_counter()
    rows = []
    for i, tau_true in enumerate(settings.tau_true):
        rng = np.random.default_rng([settings.seed, i])
        readings, n_with = simulate_readings(tau_true, settings, rng)
        rows.append(
            {
                "tau_true": float(tau_true),
                "studies": settings.n_studies,
                "studies_with_report": n_with,
                **score_readings(readings),
            }
        )
    return {
        "settings": _settings_dict(settings),
        "rows": rows,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _settings_dict(settings: SimulationSettings) -> dict[str, Any]:
    d = asdict(settings)
    d["tau_true"] = list(settings.tau_true)
    return d


def mcmc_agreement(
    settings: SimulationSettings | None = None,
    n_fits: int = 4,
    mcmc: McmcSettings | None = None,
    compiled: Any = None,
) -> dict[str, Any]:
    """MCMC (nutpie) against the quadrature posterior on ``n_fits`` simulated studies.

    The studies cycle through ``settings.tau_true`` (seeded apart from :func:`run_simulation`).
    Per fit: the exact CDF at the MCMC quantiles (2.5/50/97.5%) of each reported marker's log
    HR and of ``tau`` (should be 0.025/0.5/0.975 up to Monte Carlo error), P(HR > 1) both ways,
    divergences and sampling seconds. ``idata`` holds the fits for the diagnostics module
    (R-hat and ESS are not computed here).
    """
    settings = settings or SimulationSettings()
    mcmc = mcmc or McmcSettings()
    compile_seconds = 0.0
    if compiled is None:
        t0 = time.perf_counter()
        compiled = compile_selection(settings.n_markers, settings.model)
        compile_seconds = time.perf_counter() - t0
    fits, idatas = [], []
    j = 0
    while len(fits) < n_fits:
        tau_true = settings.tau_true[len(fits) % len(settings.tau_true)]
        study = simulate_study(np.random.default_rng([settings.seed, 1000 + j]), tau_true, settings)
        j += 1
        if not study.reported.any():
            continue
        data = study.data()
        t1 = time.perf_counter()
        idata = sample_selection(compiled, data, settings.model, mcmc, seed=mcmc.seed + j)
        seconds = time.perf_counter() - t1
        post = idata.posterior
        rep = np.flatnonzero(data.reported)
        exact = exact_posterior(data, settings.model, n_nodes=4001)
        errors = compare_draws(exact, np.log(post["hr"].values[..., rep]), post["tau"].values)
        fits.append(
            {
                "tau_true": float(tau_true),
                "reported": int(rep.size),
                "divergences": int(idata.sample_stats["diverging"].sum()),
                "sampling_seconds": round(seconds, 3),
                **{k: np.asarray(v).tolist() for k, v in errors.items()},
            }
        )
        idatas.append(idata)
    return {"compile_seconds": round(compile_seconds, 2), "fits": fits, "idata": idatas}
