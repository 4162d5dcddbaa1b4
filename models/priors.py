"""Prior settings of the piecewise-exponential models, and the PyMC pieces built from them."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt

EFFECT_FAMILIES = ("normal", "student_t")
BASELINES = ("random_walk", "independent")
PARAMETERIZATIONS = ("non_centred", "centred")


@dataclass(frozen=True)
class Priors:
    """Priors of a PEM or competing-risk model (all on the log scale).

    Attributes
    ----------
    effect_family, effect_sd, effect_nu
        Log-HR prior: Normal(0, effect_sd) or StudentT(effect_nu, 0, effect_sd). The default
        Normal(0, 1) puts 95% of the prior HR in about 0.14-7.1.
    baseline
        ``"random_walk"``: log hazard of interval 1 ~ Normal(log crude rate, level_sd), then a
        Gaussian random walk over intervals with step sd ~ HalfNormal(step_scale), written
        non-centred. ``"independent"``: each interval's log hazard ~ Normal(log crude rate,
        level_sd) on its own (use a large level_sd for a vague baseline).
    level_sd, step_scale
        See ``baseline``.
    cause_step_scale
        Competing risks: HalfNormal scale of the per-cause deviations from the shared
        baseline shape (random-walk steps).
    parameterization
        How the random walk is written: ``"non_centred"`` (the default: levels and steps as
        standard normals scaled by their sd; samples well when the data are few, as here) or
        ``"centred"`` (levels and steps drawn at their own scale; better when a large cohort
        pins every interval down). Same prior either way.
    """

    effect_family: str = "normal"
    effect_sd: float = 1.0
    effect_nu: float = 3.0
    baseline: str = "random_walk"
    level_sd: float = 1.0
    step_scale: float = 0.5
    cause_step_scale: float = 0.25
    parameterization: str = "non_centred"

    def __post_init__(self) -> None:
        if self.effect_family not in EFFECT_FAMILIES:
            raise ValueError(f"effect_family must be one of {EFFECT_FAMILIES}")
        if self.baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}")
        if self.parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"parameterization must be one of {PARAMETERIZATIONS}")
        for name in ("effect_sd", "effect_nu", "level_sd", "step_scale", "cause_step_scale"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be > 0")

    def as_attrs(self) -> dict[str, str | float]:
        """Flat dict for NetCDF attributes (prefixed ``prior_``)."""
        return {f"prior_{k}": v for k, v in asdict(self).items()}

    def describe(self) -> str:
        """One line for reports."""
        effect = (
            f"Normal(0, {self.effect_sd:g})"
            if self.effect_family == "normal"
            else f"StudentT({self.effect_nu:g}, 0, {self.effect_sd:g})"
        )
        if self.baseline == "random_walk":
            base = (
                f"log h(interval 1) ~ Normal(log crude rate, {self.level_sd:g}); random-walk "
                f"steps ~ Normal(0, sigma), sigma ~ HalfNormal({self.step_scale:g}) "
                f"({self.parameterization.replace('_', '-')})"
            )
        else:
            base = f"log h(each interval) ~ Normal(log crude rate, {self.level_sd:g})"
        return f"log-HR ~ {effect}; {base}"


def effect_prior(name: str, priors: Priors, dims: str | tuple[str, ...]) -> pt.TensorVariable:
    """Log-HR vector with the configured family (must be called inside a model context)."""
    if priors.effect_family == "normal":
        return pm.Normal(name, 0.0, priors.effect_sd, dims=dims)
    return pm.StudentT(name, nu=priors.effect_nu, mu=0.0, sigma=priors.effect_sd, dims=dims)


def effect_prior_data(priors: Priors) -> dict[str, np.ndarray]:
    """Values of the data containers made by :func:`effect_prior_as_data` for ``priors``."""
    return {
        "effect_prior_sd": np.asarray(float(priors.effect_sd)),
        "effect_prior_nu": np.asarray(float(priors.effect_nu)),
        "effect_prior_is_t": np.asarray(1.0 if priors.effect_family == "student_t" else 0.0),
    }


def effect_prior_as_data(name: str, priors: Priors, dims: str) -> pt.TensorVariable:
    """Log-HR vector whose prior scale and family are ``pm.Data`` (swap, don't recompile).

    ``name = effect_prior_sd * {name}_z``; the standardised ``{name}_z`` carries the log-density
    kernel of Normal(0, 1) or StudentT(nu, 0, 1), chosen by the 0/1 datum ``effect_prior_is_t``
    (a ``pm.Potential`` on a ``pm.Flat``). The normalising constants depend on data only, so they
    are left out. Same prior as :func:`effect_prior`; not usable for prior predictive sampling.
    """
    values = effect_prior_data(priors)
    sd = pm.Data("effect_prior_sd", values["effect_prior_sd"])
    nu = pm.Data("effect_prior_nu", values["effect_prior_nu"])
    is_t = pm.Data("effect_prior_is_t", values["effect_prior_is_t"])
    z = pm.Flat(f"{name}_z", dims=dims)
    logp_normal = -0.5 * z**2
    logp_t = -0.5 * (nu + 1.0) * pt.log1p(z**2 / nu)
    pm.Potential(f"{name}_prior", pt.sum(is_t * logp_t + (1.0 - is_t) * logp_normal))
    return pm.Deterministic(name, sd * z, dims=dims)


def log_baseline(
    priors: Priors,
    log_rate_center: pt.TensorVariable,
    n_intervals: int,
    n_causes: int | None = None,
    *,
    prefix: str = "",
    interval_dim: str = "interval",
    cause_dim: str = "cause",
) -> pt.TensorVariable:
    """Log baseline hazard per interval: a Deterministic ``log_h0``.

    Random walk, non-centred: ``log h_j = level + sigma * sum_{i<=j} z_i`` with ``z_1 = 0``.
    Must be called inside a model with the coords ``interval`` and ``interval_step`` (the intervals
    after the first), and ``cause`` when ``n_causes`` is given.

    Parameters
    ----------
    log_rate_center
        Log crude rate: a scalar, or one per cause.
    n_causes
        ``None``: one event type, dims ``interval``. ``K``: cause-specific baselines, dims
        ``(cause, interval)``, that borrow strength: one shared random-walk shape, a level per
        cause, and (``K > 1``) per-cause random-walk deviations from the shared shape whose step
        sd ~ HalfNormal(``cause_step_scale``). With ``K = 1`` this is the single-event baseline.
    prefix, interval_dim, cause_dim
        Prefix of every variable name (``{prefix}log_h0`` ...) and the names of the dims
        (the step dim is ``{interval_dim}_step``), so that one model can hold several baselines
        on different time axes (the multi-state model: time since surgery and time since
        recurrence). The defaults give the PEM's and the competing-risk model's names.
    """
    step_dim = f"{interval_dim}_step"
    dims: str | tuple[str, str] = interval_dim if n_causes is None else (cause_dim, interval_dim)
    if priors.baseline == "independent":
        z = pm.Normal(f"{prefix}log_h_z", 0.0, 1.0, dims=dims)
        center = log_rate_center if n_causes is None else log_rate_center[:, None]
        return pm.Deterministic(f"{prefix}log_h0", center + priors.level_sd * z, dims=dims)
    centred = priors.parameterization == "centred"
    level_dims = None if n_causes is None else cause_dim
    if centred:
        start = pm.Normal(f"{prefix}log_h_level", log_rate_center, priors.level_sd, dims=level_dims)
    else:
        level = pm.Normal(f"{prefix}log_h_level_z", 0.0, 1.0, dims=level_dims)
        start = log_rate_center + priors.level_sd * level
    path = _random_walk(f"{prefix}rw", priors.step_scale, n_intervals, step_dim, centred)
    log_h = start[..., None] + path
    if n_causes is not None and n_causes > 1 and n_intervals > 1:
        cause_path = _random_walk(
            f"{prefix}cause_rw",
            priors.cause_step_scale,
            n_intervals,
            (cause_dim, step_dim),
            centred,
        )
        log_h = log_h + cause_path
    return pm.Deterministic(f"{prefix}log_h0", log_h, dims=dims)


def _random_walk(
    prefix: str, scale: float, n_intervals: int, dims: str | tuple[str, str], centred: bool
) -> pt.TensorVariable:
    """Gaussian random walk starting at 0 (last axis: intervals), non-centred or centred."""
    if n_intervals == 1:
        return pt.zeros(1)
    sigma = pm.HalfNormal(f"{prefix}_sigma", scale)
    if centred:
        walk = pt.cumsum(pm.Normal(f"{prefix}_step", 0.0, sigma, dims=dims), axis=-1)
    else:
        steps = pm.Normal(f"{prefix}_z", 0.0, 1.0, dims=dims)
        walk = pt.cumsum(sigma * steps, axis=-1)
    zeros = pt.zeros_like(walk[..., :1])
    return pt.concatenate([zeros, walk], axis=-1)
