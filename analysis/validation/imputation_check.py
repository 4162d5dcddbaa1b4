"""Simulation check of the in-model imputation of missing binary covariates (models/imputation.py).

Cohorts shaped like the paper's clinical competing-risk problem: 63 patients, five binary
covariates, about 40 first events over three recurrence types plus death without recurrence.
Covariate ``x3`` depends on the always-observed ``x1``; ``x2`` and ``x3`` then lose about 8% and
27% of their values, either completely at random (``mcar``), or with a probability that depends on
the observed ``x1`` (``mar_covariate``; odds ratio ``exp(mar_log_odds)``), or on whether the
patient had an event (``mar_outcome``, where complete cases are biased). Each replicate is fitted
twice with one compiled nutpie model (compile once, swap data with ``with_data``): on every
patient with the missing values marginalised (``imputed``, covariate model with ``z = x1``) and
on the complete cases only (``complete_case``: the same model with no incomplete patient). The
check records, for every log hazard ratio, the 95% equal-tailed interval, whether it covers the
true value, and its width.

Times are drawn here with NumPy from constant cause-specific hazards (``T ~ Exponential(sum_k
h_k)``, cause ``k`` with probability ``h_k / sum h``), independently of the model code, and
censored uniformly. Nothing is written: the functions return tables for the caller to store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import expit

from models.competing import cause_log_rates
from models.imputation import (
    build_imputed,
    imputed_data,
    missing_layout,
    missing_value_posterior,
)
from models.priors import Priors
from models.survival_data import DEFAULT_CUTS, crude_rate

KINDS = ("competing", "pem")
MECHANISMS = ("mcar", "mar_covariate", "mar_outcome")
METHODS = ("imputed", "complete_case")
INTERVAL_PROB = 0.95


@dataclass(frozen=True)
class CheckDesign:
    """The simulated cohort and how its values go missing.

    Attributes
    ----------
    n
        Patients per cohort.
    prevalence
        P(x = 1) of ``x1..x5``; for ``x3`` at the average of ``x1`` (see ``x3_on_x1``).
    x3_on_x1
        Log odds ratio of ``x3 = 1`` for ``x1 = 1`` vs 0 (the covariate model's ``gamma``).
    missing_fraction
        Expected share of values removed per covariate.
    imputed
        Columns that may be missing (given a covariate model).
    driver
        The always-observed column that predicts ``x3`` and, under ``mar_covariate``, the
        missingness; it is the covariate model's ``z``.
    mar_log_odds
        Log odds ratio of a value being missing for ``driver = 1`` (``mar_covariate``) or for a
        patient with an event (``mar_outcome``).
    truth
        ``"prior"``: each replicate draws its true log hazard ratios from the model's effect prior
        (for the competing model with its partial pooling across causes), so the Bayesian 95%
        intervals must cover them 95% of the time on average, whatever the amount of data:
        a sharp test of the likelihood. ``"fixed"``: ``log_hr`` in every replicate (frequentist
        coverage at one truth; weakly informed hazard ratios then over-cover, the prior pulling
        towards 0 from both sides).
    log_hr
        Fixed true log hazard ratios, covariates x causes (the competing model); the PEM uses the
        first column for its single event.
    cause_rates
        Baseline hazard of each cause per month (constant).
    cause_names
        Names of the causes.
    censor
        Uniform censoring window in months.
    """

    n: int = 63
    prevalence: tuple[float, ...] = (0.65, 0.8, 0.2, 0.3, 0.35)
    x3_on_x1: float = 1.0
    missing_fraction: tuple[float, ...] = (0.0, 0.08, 0.27, 0.0, 0.0)
    imputed: tuple[int, ...] = (1, 2)
    driver: int = 0
    mar_log_odds: float = 1.5
    truth: str = "prior"
    log_hr: tuple[tuple[float, ...], ...] = (
        (0.3, 0.4, 0.2, 0.3),
        (0.5, 0.6, 0.4, 0.5),
        (0.8, 0.9, 0.6, 0.7),
        (-0.5, -0.4, -0.6, -0.5),
        (0.4, 0.3, 0.5, 0.4),
    )
    cause_rates: tuple[float, ...] = (0.0012, 0.003, 0.0037, 0.0007)
    cause_names: tuple[str, ...] = ("local", "distant", "local_distant", "death")
    censor: tuple[float, float] = (6.0, 150.0)
    cuts: tuple[float, ...] = DEFAULT_CUTS

    @property
    def covariate_names(self) -> list[str]:
        return [f"x{j + 1}" for j in range(len(self.prevalence))]

    def __post_init__(self) -> None:
        if self.truth not in ("prior", "fixed"):
            raise ValueError("truth must be 'prior' or 'fixed'")

    def n_causes(self, kind: str) -> int:
        return len(self.cause_names) if kind == "competing" else 1

    def beta(self, kind: str) -> np.ndarray:
        """The fixed log-HRs: (p, K) for ``competing``, (p, 1) for ``pem``."""
        b = np.asarray(self.log_hr, float)
        return b if kind == "competing" else b[:, :1]

    def rates(self, kind: str) -> np.ndarray:
        """Baseline hazards: per cause, or their sum for the PEM's single event."""
        r = np.asarray(self.cause_rates, float)
        return r if kind == "competing" else np.array([r.sum()])


@dataclass(frozen=True)
class CheckSettings:
    """Sampling of each replicate fit (few draws: the check needs intervals, not fine tails)."""

    draws: int = 500
    tune: int = 500
    chains: int = 2
    cores: int = 1
    target_accept: float = 0.95
    priors: Priors = field(default_factory=Priors)


# --------------------------------------------------------------------------- simulation


def simulate_covariates(rng: np.random.Generator, design: CheckDesign) -> np.ndarray:
    """Binary covariates ``(n, p)``; ``x3`` depends on ``x1`` (log odds ``x3_on_x1``)."""
    prev = np.asarray(design.prevalence, float)
    x = (rng.random((design.n, prev.size)) < prev).astype(float)
    driver = x[:, design.driver]
    p_driver = prev[design.driver]
    # intercept such that P(x3 = 1) averages the stated prevalence over x1
    base = brentq(
        lambda a: p_driver * expit(a + design.x3_on_x1) + (1 - p_driver) * expit(a) - prev[2],
        -20.0,
        20.0,
    )
    x[:, 2] = (rng.random(design.n) < expit(base + design.x3_on_x1 * driver)).astype(float)
    return x


def true_log_hr(
    rng: np.random.Generator, design: CheckDesign, kind: str, priors: Priors
) -> np.ndarray:
    """The replicate's true log-HRs ``(p, K)``: fixed, or drawn from the model's effect prior.

    Prior draws follow :func:`models.competing.cause_effects`: ``beta[p, k] = s * (sqrt(rho_p)
    c_p + sqrt(1 - rho_p) o_pk)``, ``rho_p ~ Beta(2, 2)``, ``c_p`` from the effect family with
    scale 1, ``o_pk ~ Normal(0, 1)``; with one cause, ``beta[p] ~`` the effect prior.
    """
    if design.truth == "fixed":
        return design.beta(kind)
    p, k = len(design.prevalence), design.n_causes(kind)
    if priors.effect_family == "normal":
        common = rng.normal(0.0, 1.0, p)
    else:
        common = rng.standard_t(priors.effect_nu, p)
    if k == 1:
        return priors.effect_sd * common[:, None]
    rho = rng.beta(2.0, 2.0, p)[:, None]
    own = rng.normal(0.0, 1.0, (p, k))
    return priors.effect_sd * (np.sqrt(rho) * common[:, None] + np.sqrt(1.0 - rho) * own)


def simulate_outcomes(
    rng: np.random.Generator, x: np.ndarray, design: CheckDesign, kind: str, beta: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """First-event times and codes (0 censored, 1..K cause) from constant hazards with log-HRs
    ``beta`` ``(p, K)``."""
    hazards = design.rates(kind)[None, :] * np.exp(x @ beta)  # (n, K)
    total = hazards.sum(axis=1)
    t_event = rng.exponential(1.0 / total)
    u = rng.random(x.shape[0])
    cum = np.cumsum(hazards / total[:, None], axis=1)
    cause = 1 + np.minimum(np.sum(cum < u[:, None], axis=1), hazards.shape[1] - 1)
    t_cens = rng.uniform(*design.censor, size=x.shape[0])
    seen = t_event <= t_cens
    return np.minimum(t_event, t_cens), np.where(seen, cause, 0).astype(int)


def missing_probabilities(target: float, factor: np.ndarray, log_odds: float) -> np.ndarray:
    """P(missing) per patient, ``logistic(a + log_odds * factor)``, averaging ``target``.

    ``factor`` is 0/1 (the observed covariate or the event indicator); ``a`` is solved so that
    the mean over the given patients equals ``target``. ``log_odds = 0`` is MCAR.
    """
    f = np.asarray(factor, float)
    if not 0.0 <= target < 1.0:
        raise ValueError("target missing fraction must be in [0, 1)")
    if target == 0.0:
        return np.zeros_like(f)
    a = brentq(lambda v: float(np.mean(expit(v + log_odds * f))) - target, -30.0, 30.0)
    return expit(a + log_odds * f)


def remove_values(
    rng: np.random.Generator,
    x: np.ndarray,
    event: np.ndarray,
    design: CheckDesign,
    mechanism: str,
) -> np.ndarray:
    """A copy of ``x`` with values set to NaN by ``mechanism`` (see :data:`MECHANISMS`)."""
    if mechanism not in MECHANISMS:
        raise ValueError(f"mechanism must be one of {MECHANISMS}")
    factor = {
        "mcar": np.zeros(x.shape[0]),
        "mar_covariate": x[:, design.driver],
        "mar_outcome": (np.asarray(event) > 0).astype(float),
    }[mechanism]
    log_odds = 0.0 if mechanism == "mcar" else design.mar_log_odds
    out = np.array(x, float)
    for j, target in enumerate(design.missing_fraction):
        if target > 0:
            p = missing_probabilities(target, factor, log_odds)
            out[rng.random(x.shape[0]) < p, j] = np.nan
    return out


# --------------------------------------------------------------------------- fitting


@dataclass
class CheckModel:
    """One compiled nutpie model for a design and kind, refitted with ``with_data``."""

    kind: str
    design: CheckDesign
    settings: CheckSettings
    compiled: Any
    compile_seconds: float
    stored: list[str]


def _layout(time: np.ndarray, event: np.ndarray, x: np.ndarray, design: CheckDesign, kind: str):
    n_causes = len(design.cause_names) if kind == "competing" else None
    return missing_layout(
        time,
        event,
        x,
        design.cuts,
        z=x[:, [design.driver]],
        n_causes=n_causes,
        imputed=design.imputed,
    )


def _centers(time: np.ndarray, event: np.ndarray, design: CheckDesign, kind: str) -> np.ndarray:
    if kind == "competing":
        return cause_log_rates(time, event, len(design.cause_names))
    return np.asarray(np.log(crude_rate(time, event)))


def build_check_model(
    kind: str,
    design: CheckDesign,
    time: np.ndarray,
    event: np.ndarray,
    x: np.ndarray,
    settings: CheckSettings,
) -> Any:
    """The PyMC model of ``kind`` (``"competing"`` or ``"pem"``) on one data set."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    layout = _layout(time, event, x, design, kind)
    return build_imputed(
        layout,
        covariate_names=design.covariate_names,
        log_rate_center=_centers(time, event, design, kind),
        cause_names=design.cause_names if kind == "competing" else (),
        predictor_names=[design.covariate_names[design.driver]],
        priors=settings.priors,
    )


def compile_check_model(
    kind: str, design: CheckDesign, settings: CheckSettings, seed: int = 0
) -> CheckModel:
    """Compile the model once (on a simulated data set; every fit swaps its own data in)."""
    import nutpie

    rng = np.random.default_rng(seed)
    x = simulate_covariates(rng, design)
    t, e = simulate_outcomes(rng, x, design, kind, design.beta(kind))
    model = build_check_model(
        kind, design, t, e, remove_values(rng, x, e, design, "mcar"), settings
    )
    stored = [v.name for v in model.free_RVs] + [v.name for v in model.deterministics]
    t0 = perf_counter()
    compiled = nutpie.compile_pymc_model(model, var_names=stored)
    return CheckModel(kind, design, settings, compiled, perf_counter() - t0, stored)


def sample_check_model(
    model: CheckModel,
    time: np.ndarray,
    event: np.ndarray,
    x: np.ndarray,
    seed: int,
    settings: CheckSettings | None = None,
) -> tuple[Any, Any]:
    """Sample the compiled model on new data; returns (trace, layout)."""
    import nutpie

    s = settings or model.settings
    layout = _layout(time, event, x, model.design, model.kind)
    data = imputed_data(layout, _centers(time, event, model.design, model.kind))
    trace = nutpie.sample(
        model.compiled.with_data(**data),
        draws=s.draws,
        tune=s.tune,
        chains=s.chains,
        cores=s.cores,
        seed=seed,
        target_accept=s.target_accept,
        save_warmup=False,
        progress_bar=False,
    )
    return trace, layout


def interval_records(
    beta_draws: np.ndarray,
    truth: np.ndarray,
    covariate_names: Sequence[str],
    cause_names: Sequence[str],
    prob: float = INTERVAL_PROB,
) -> list[dict[str, Any]]:
    """Equal-tailed ``prob`` interval of each log-HR, whether it covers ``truth``, its width.

    ``beta_draws``: (draws, p, K) pooled over chains; ``truth``: (p, K).
    """
    tail = (1.0 - prob) / 2.0
    lower, median, upper = np.quantile(beta_draws, [tail, 0.5, 1.0 - tail], axis=0)
    records = []
    for j, cov in enumerate(covariate_names):
        for k, cause in enumerate(cause_names):
            records.append(
                {
                    "covariate": cov,
                    "cause": cause,
                    "true_log_hr": float(truth[j, k]),
                    "median": float(median[j, k]),
                    "lower": float(lower[j, k]),
                    "upper": float(upper[j, k]),
                    "covered": bool(lower[j, k] <= truth[j, k] <= upper[j, k]),
                    "width": float(upper[j, k] - lower[j, k]),
                }
            )
    return records


def _beta_draws(trace: Any, kind: str) -> np.ndarray:
    beta = trace.posterior["beta"]
    if kind == "competing":
        values = beta.transpose("chain", "draw", "covariate", "cause").values
    else:
        values = beta.transpose("chain", "draw", "covariate").values[..., None]
    return values.reshape(-1, *values.shape[2:])


def _role(design: CheckDesign, covariate: str) -> str:
    """``imputed`` for a covariate that loses values, else ``observed``."""
    return "imputed" if design.covariate_names.index(covariate) in design.imputed else "observed"


def _divergences(trace: Any) -> int:
    return int(np.asarray(trace.sample_stats["diverging"]).sum())


def run_replicate(
    model: CheckModel, seed: int, replicate: int, mechanisms: Sequence[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One simulated cohort, each mechanism's missing values, both methods.

    Returns the interval records and, per missing value, the posterior P(x = 1 | data) of the
    imputed fit beside the removed true value.
    """
    design, kind = model.design, model.kind
    rng = np.random.default_rng([seed, replicate])
    truth = true_log_hr(rng, design, kind, model.settings.priors)
    x = simulate_covariates(rng, design)
    t, e = simulate_outcomes(rng, x, design, kind, truth)
    causes = design.cause_names if kind == "competing" else ("event",)
    intervals: list[dict[str, Any]] = []
    values: list[dict[str, Any]] = []
    for m, mechanism in enumerate(mechanisms):
        x_nan = remove_values(np.random.default_rng([seed, replicate, m]), x, e, design, mechanism)
        keep = ~np.isnan(x_nan).any(axis=1)
        fits = {"imputed": (t, e, x_nan), "complete_case": (t[keep], e[keep], x_nan[keep])}
        for f, (method, (tt, ee, xx)) in enumerate(fits.items()):
            fit_seed = int(np.random.default_rng([seed, replicate, m, f]).integers(2**31 - 1))
            trace, layout = sample_check_model(model, tt, ee, xx, fit_seed)
            common = {
                "kind": kind,
                "mechanism": mechanism,
                "replicate": replicate,
                "method": method,
                "n_used": int(tt.size),
                "events": int(np.sum(ee > 0)),
                "values_missing": int(np.isnan(x_nan).sum()),
                "divergences": _divergences(trace),
            }
            draws = _beta_draws(trace, kind)
            for rec in interval_records(draws, truth, design.covariate_names, causes):
                intervals.append({**common, **rec, "role": _role(design, rec["covariate"])})
            if method == "imputed" and layout.n_missing_values:
                values.extend(_imputed_value_records(trace, layout, x, common))
    return intervals, values


def _imputed_value_records(trace: Any, layout: Any, x_true: np.ndarray, common: dict) -> list:
    names = [f"x{j + 1}" for j in range(layout.x.shape[1])]
    probs = missing_value_posterior(layout, trace.posterior, names)
    mean = probs.mean(("chain", "draw")).values
    patient = probs["patient"].values
    cov = np.asarray([names.index(c) for c in probs["covariate"].values])
    return [
        {**common, "covariate": names[c], "true_value": float(x_true[i, c]), "p_one": float(p)}
        for i, c, p in zip(patient, cov, mean, strict=True)
    ]


def run_imputation_check(
    n_replicates: int = 200,
    *,
    kinds: Sequence[str] = ("competing", "pem"),
    mechanisms: Sequence[str] = ("mcar", "mar_covariate"),
    seed: int = 20260101,
    design: CheckDesign | None = None,
    settings: CheckSettings | None = None,
    log: Any = None,
) -> dict[str, Any]:
    """Run the check: ``n_replicates`` cohorts per kind, each with every mechanism and method.

    Returns
    -------
    dict
        ``intervals`` (one row per replicate, mechanism, method, covariate and cause),
        ``summary`` (:func:`summarize_intervals`), ``imputed_values`` (posterior P(x = 1) of
        each removed value beside its truth), ``imputed_value_summary``, ``timing`` (compile and
        sampling seconds per kind) and ``settings``.
    """
    design = design or CheckDesign()
    settings = settings or CheckSettings()
    intervals: list[dict] = []
    values: list[dict] = []
    timing = []
    for kind in kinds:
        model = compile_check_model(kind, design, settings, seed=seed)
        t0 = perf_counter()
        for r in range(n_replicates):
            rec, val = run_replicate(model, seed, r, mechanisms)
            intervals.extend(rec)
            values.extend(val)
            if log is not None and (r + 1) % 10 == 0:
                log(f"imputation check: {kind}, {r + 1}/{n_replicates} replicates")
        timing.append(
            {
                "kind": kind,
                "replicates": n_replicates,
                "fits": n_replicates * len(mechanisms) * len(METHODS),
                "compile_seconds": round(model.compile_seconds, 2),
                "sampling_seconds": round(perf_counter() - t0, 2),
            }
        )
    table = pd.DataFrame(intervals)
    value_table = pd.DataFrame(values)
    return {
        "intervals": table,
        "summary": summarize_intervals(table),
        "imputed_values": value_table,
        "imputed_value_summary": summarize_imputed_values(value_table),
        "timing": pd.DataFrame(timing),
        "settings": {
            "seed": seed,
            "n_replicates": n_replicates,
            "kinds": list(kinds),
            "mechanisms": list(mechanisms),
            "design": design,
            "sampling": settings,
        },
    }


def summarize_intervals(table: pd.DataFrame) -> pd.DataFrame:
    """Coverage (with its Monte Carlo SE) and mean width of the 95% log-HR intervals.

    One row per kind, mechanism, method and covariate role (``imputed``: a covariate with missing
    values; ``observed``: the others), plus ``all``. ``width_ratio`` is the mean over fits of the
    imputed interval's width divided by the complete-case one of the same replicate and
    parameter (below 1: narrower). ``mean_patients`` and ``mean_events``: per fit, on average.
    """
    rows = []
    keys = ["kind", "mechanism", "method"]
    both = pd.concat([table, table.assign(role="all")])
    for (kind, mech, method, role), g in both.groupby([*keys, "role"], sort=True):
        cov = g["covered"].mean()
        rows.append(
            {
                "kind": kind,
                "mechanism": mech,
                "method": method,
                "role": role,
                "intervals": len(g),
                "coverage": cov,
                "coverage_se": float(np.sqrt(cov * (1 - cov) / len(g))),
                "mean_width": g["width"].mean(),
                "mean_patients": g["n_used"].mean(),
                "mean_events": g["events"].mean(),
                "divergent_fits": int((g.groupby("replicate")["divergences"].first() > 0).sum()),
            }
        )
    out = pd.DataFrame(rows)
    ratio = _width_ratio(both)
    return out.merge(ratio, on=["kind", "mechanism", "role"], how="left")


def _width_ratio(table: pd.DataFrame) -> pd.DataFrame:
    idx = ["kind", "mechanism", "replicate", "role", "covariate", "cause"]
    wide = table.pivot_table(index=idx, columns="method", values="width")
    wide["ratio"] = wide["imputed"] / wide["complete_case"]
    return (
        wide.groupby(level=["kind", "mechanism", "role"])["ratio"]
        .mean()
        .rename("width_ratio")
        .reset_index()
    )


def summarize_imputed_values(values: pd.DataFrame) -> pd.DataFrame:
    """How well the posterior P(x = 1 | data) of removed values tracks their truth.

    Per kind, mechanism and covariate: number of removed values, the mean P(x = 1) where the
    truth was 1 and where it was 0, and the Brier score.
    """
    if values.empty:
        return pd.DataFrame()
    rows = []
    for (kind, mech, cov), g in values.groupby(["kind", "mechanism", "covariate"]):
        truth, p = g["true_value"].to_numpy(), g["p_one"].to_numpy()
        rows.append(
            {
                "kind": kind,
                "mechanism": mech,
                "covariate": cov,
                "values": len(g),
                "mean_p_when_1": float(p[truth == 1].mean()) if np.any(truth == 1) else np.nan,
                "mean_p_when_0": float(p[truth == 0].mean()) if np.any(truth == 0) else np.nan,
                "brier": float(np.mean((p - truth) ** 2)),
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the sampling bar


def bar_problem(seed: int, design: CheckDesign | None = None) -> dict[str, Any]:
    """One 63-patient competing-risk data set (the fixed log-HRs) with values missing
    completely at random (``mcar``).

    Returns the arrays (``time``, ``event``, ``x`` with NaN, ``x_true``) and the design.
    """
    design = design or CheckDesign()
    rng = np.random.default_rng(seed)
    x = simulate_covariates(rng, design)
    t, e = simulate_outcomes(rng, x, design, "competing", design.beta("competing"))
    return {
        "time": t,
        "event": e,
        "x": remove_values(rng, x, e, design, "mcar"),
        "x_true": x,
        "design": design,
    }


def fit_bar_problem(
    seed: int,
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    cores: int = 2,
    target_accept: float = 0.95,
    design: CheckDesign | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Sample the imputed competing-risk model on :func:`bar_problem` with the settings of a
    registry fit (4 chains x 1000 draws). Returns (trace with the stored variables and the
    missing values' ``p_missing_is_1``, the problem); diagnose it with the diagnostics module."""
    import nutpie

    problem = bar_problem(seed, design)
    design = problem["design"]
    settings = CheckSettings(
        draws=draws, tune=tune, chains=chains, cores=cores, target_accept=target_accept
    )
    model = build_check_model(
        "competing", design, problem["time"], problem["event"], problem["x"], settings
    )
    stored = [v.name for v in model.free_RVs] + [v.name for v in model.deterministics]
    compiled = nutpie.compile_pymc_model(model, var_names=stored)
    trace = nutpie.sample(
        compiled,
        draws=draws,
        tune=tune,
        chains=chains,
        cores=cores,
        seed=seed,
        target_accept=target_accept,
        save_warmup=False,
        progress_bar=False,
    )
    layout = _layout(problem["time"], problem["event"], problem["x"], design, "competing")
    probs = missing_value_posterior(layout, trace.posterior, design.covariate_names)
    trace.posterior["p_missing_is_1"] = probs
    return trace, problem
