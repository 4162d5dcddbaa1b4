"""Prior sensitivity of the Table 2 hazard ratios: refit with other log-HR priors.

The Table 2 fits (beta-catenin and IGF-1R, on RFS and on DSS, 26 TMA patients) are refit with
the log-HR prior Normal(0, 0.5), Normal(0, 1) (the registry's), Normal(0, 2.5) and
StudentT(3, 0, 1). The refits are jobs of ``vlms fit`` like the registry's own fits: they run in
the batches of the one stacked PEM structure (:mod:`models.stacked`), whose log-HR prior family
and scale are data per fit, so a prior is a data swap, not a recompile. The Normal(0, 1) row is a
second, independent fit of the registry's model and should agree with it to Monte Carlo error.

Every refit is checked against the same bar as the registry fits (R-hat, bulk/tail ESS,
divergences) and refitted like them when it misses it. ``vlms fit`` writes the table to
``fits/prior_sensitivity.csv``; ``vlms compare`` adds the published-estimate columns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from analysis.inference.batches import FitJob
from analysis.inference.registry import REGISTRY
from analysis.inference.spec_data import spec_data
from models.priors import Priors

TABLE2_FITS: tuple[str, ...] = ("dss_beta_catenin", "dss_igf1r", "rfs_beta_catenin", "rfs_igf1r")
"""Registry fits refit under each prior (one covariate each)."""

SENSITIVITY_PRIORS: dict[str, Priors] = {
    "Normal(0, 0.5)": Priors(effect_family="normal", effect_sd=0.5),
    "Normal(0, 1)": Priors(effect_family="normal", effect_sd=1.0),
    "Normal(0, 2.5)": Priors(effect_family="normal", effect_sd=2.5),
    "StudentT(3, 0, 1)": Priors(effect_family="student_t", effect_sd=1.0, effect_nu=3.0),
}
"""Log-HR priors of the sensitivity analysis (label -> settings; baseline priors as registry)."""

PREFIX = "sensitivity"


def job_key(model: str, prior: str) -> str:
    return f"{PREFIX}|{model}|{prior}"


def sensitivity_jobs(
    df: pd.DataFrame,
    models: tuple[str, ...] = TABLE2_FITS,
    priors: Mapping[str, Priors] | None = None,
) -> list[FitJob]:
    """One PEM job per model and prior, with the registry's data and baseline prior."""
    priors = SENSITIVITY_PRIORS if priors is None else priors
    specs = {s.name: s for s in REGISTRY}
    missing = [m for m in models if m not in specs]
    if missing:
        raise ValueError(f"not in the fit registry: {', '.join(missing)}")
    jobs = []
    for name in models:
        spec = specs[name]
        if len(spec.covariates) != 1 or spec.builder != "pem":
            raise ValueError(f"{name}: the sensitivity analysis takes one-covariate PEM fits")
        data = spec_data(spec, df)
        for label, p in priors.items():
            fields = {k: getattr(p, k) for k in ("effect_family", "effect_sd", "effect_nu")}
            jobs.append(
                FitJob(
                    job_key(name, label), "pem", data, dataclasses.replace(spec.priors, **fields)
                )
            )
    return jobs


def sensitivity_table(results: Mapping[str, Any]) -> pd.DataFrame:
    """One row per refit (``results``: job key -> :class:`~analysis.inference.ensemble.JobResult`):
    posterior HR median, 95% interval, P(HR > 1) and the sampling bar."""
    rows = []
    for key, r in results.items():
        if not key.startswith(f"{PREFIX}|"):
            continue
        _, model, prior = key.split("|", 2)
        covariate = r.job.data.covariate_names[0]
        hr = r.posterior["hr"].sel(covariate=covariate).values.ravel()
        lo, med, hi = np.quantile(hr, [0.025, 0.5, 0.975])
        rows.append(
            {
                "model": model,
                "covariate": covariate,
                "prior": prior,
                "hr_median": float(med),
                "hr_lower": float(lo),
                "hr_upper": float(hi),
                "prob_gt_1": float(np.mean(hr > 1.0)),
                "max_rhat": r.bar["max_rhat"],
                "min_ess_bulk": r.bar["min_ess_bulk"],
                "min_ess_tail": r.bar["min_ess_tail"],
                "divergences": r.bar["divergences"],
                "bar_met": bool(r.bar["ok"]),
                "draws": int(r.posterior.sizes["chain"] * r.posterior.sizes["draw"]),
                "attempt": r.attempt,
            }
        )
    return pd.DataFrame(rows)
