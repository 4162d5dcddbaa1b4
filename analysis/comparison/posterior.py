"""Summaries of saved posteriors shared by the comparison tables."""

from __future__ import annotations

from typing import Any

import numpy as np


def posterior_hr(idata: Any, covariate: str, **dims: Any) -> dict[str, float]:
    """Posterior median HR, 95% equal-tailed interval and P(HR > 1) of one covariate (``dims``:
    the cause, transition, ... of models with more than one HR per covariate)."""
    hr = idata.posterior["hr"].sel(covariate=covariate, **dims).values.ravel()
    lo, med, hi = np.quantile(hr, [0.025, 0.5, 0.975])
    return {
        "median": float(med),
        "lower": float(lo),
        "upper": float(hi),
        "prob_gt_1": float(np.mean(hr > 1.0)),
        "draws": int(hr.size),
    }
