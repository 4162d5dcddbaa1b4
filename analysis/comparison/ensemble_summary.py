"""What the reconstruction ensemble adds to a hazard ratio: the Cox HR across the members, and
the pooled posterior with the share of its variance that comes from the reconstruction.

Law of total variance on the log HR of the pooled posterior (equal weight per member):
``Var(log HR) = E_r[Var(log HR | r)] + Var_r(E[log HR | r])``. The second term is the
between-reconstruction part: the spread of the members' posterior means, i.e. how much of the
uncertainty comes from not knowing the patients (the paper's silence), not from the sample
size. Its share of the total is reported per HR.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

RANGE = (0.05, 0.95)
"""The ensemble Cox HR is reported as its median and 90% range over the members."""
BIG = 1e300
"""Infinite HRs stand in as this number inside the quantiles (inf - inf would give NaN)."""


def _uncap(value: float) -> float:
    return math.copysign(math.inf, value) if abs(value) >= BIG / 10 else float(value)


def variance_decomposition(values: np.ndarray, member: np.ndarray) -> dict[str, float]:
    """Within- and between-member variance of pooled draws ``values`` labelled by ``member``.

    Every member weighs the same (its draws are averaged first), so with equal draws per member
    ``within + between`` is the variance of the pooled draws. Returns ``within``, ``between``,
    ``total`` and ``between_share`` (NaN if the total is 0), and ``members``.
    """
    values = np.asarray(values, float)
    member = np.asarray(member)
    labels = np.unique(member)
    means = np.array([values[member == m].mean() for m in labels])
    variances = np.array([values[member == m].var() for m in labels])
    within = float(variances.mean())
    between = float(means.var())
    total = within + between
    return {
        "within": within,
        "between": between,
        "total": total,
        "between_share": between / total if total > 0 else math.nan,
        "members": int(labels.size),
    }


def pooled_hr(pooled: xr.Dataset, covariate: str) -> dict[str, float]:
    """Median, 95% equal-tailed interval and P(HR > 1) of one covariate's HR in the pooled
    posterior (``sample`` dim, ``reconstruction`` coordinate), with the variance decomposition
    of its log."""
    hr = pooled["hr"].sel(covariate=covariate)
    values = hr.values.ravel()
    lo, med, hi = np.quantile(values, [0.025, 0.5, 0.975])
    parts = variance_decomposition(np.log(values), hr["reconstruction"].values)
    return {
        "median": float(med),
        "lower": float(lo),
        "upper": float(hi),
        "prob_gt_1": float(np.mean(values > 1.0)),
        "draws": int(values.size),
        **{f"log_hr_{k}": v for k, v in parts.items() if k != "members"},
        "members": parts["members"],
    }


def member_statistics(
    members: Mapping[int, pd.DataFrame], statistics: Callable[[pd.DataFrame], dict[str, float]]
) -> dict[int, dict[str, float]]:
    """``statistics`` (e.g. the paper's analyses) on every member."""
    return {r: statistics(df) for r, df in members.items()}


def across_members(per_member: Mapping[int, Mapping[str, float]], key: str) -> dict[str, Any]:
    """Median and 90% range over the members of one statistic; non-finite values (a Cox HR of
    a monotone likelihood is infinite) are counted and kept in the quantiles, NaN dropped."""
    values = np.array([float(s.get(key, math.nan)) for s in per_member.values()])
    finite_or_inf = values[~np.isnan(values)]
    if finite_or_inf.size == 0:
        return {
            "median": math.nan,
            "lower": math.nan,
            "upper": math.nan,
            "members": 0,
            "infinite": 0,
        }
    capped = np.where(np.isinf(finite_or_inf), np.sign(finite_or_inf) * BIG, finite_or_inf)
    lo, med, hi = (_uncap(v) for v in np.quantile(capped, [RANGE[0], 0.5, RANGE[1]]))
    return {
        "median": float(med),
        "lower": float(lo),
        "upper": float(hi),
        "members": int(finite_or_inf.size),
        "infinite": int(np.sum(np.isinf(finite_or_inf))),
    }


def decomposition_rows(
    pooled: Mapping[str, xr.Dataset], fits: Sequence[tuple[str, str]]
) -> list[dict[str, Any]]:
    """Pooled HR and variance shares of every (model, covariate) in ``fits`` present in
    ``pooled`` (model -> pooled posterior)."""
    rows = []
    for name, covariate in fits:
        if name not in pooled or "hr" not in pooled[name]:
            continue
        if covariate not in pooled[name]["hr"].coords["covariate"].values:
            continue
        rows.append({"model": name, "covariate": covariate, **pooled_hr(pooled[name], covariate)})
    return rows
