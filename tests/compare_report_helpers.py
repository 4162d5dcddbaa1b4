"""Small synthetic saved outputs for the compare and report tests (no sampling, no ArviZ).

Fake fits are NetCDF files with the InferenceData group layout (``posterior``, ``prior``,
``sample_stats``, ``log_likelihood``) written with xarray, with draws from known distributions.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import xarray as xr

CHAINS, DRAWS = 4, 500
TIMES = np.arange(6.0, 61.0, 6.0)


def fake_posterior(
    covariates: tuple[str, ...],
    log_hr_mean: dict[str, float],
    log_hr_sd: float = 0.3,
    seed: int = 0,
    n_patients: int = 26,
    attrs: dict | None = None,
) -> dict[str, xr.Dataset]:
    """Groups of a fake PEM fit: log HR ~ Normal(mean, sd) i.i.d. (so ESS is high)."""
    rng = np.random.default_rng(seed)
    coords = {"chain": np.arange(CHAINS), "draw": np.arange(DRAWS)}
    beta = np.stack(
        [rng.normal(log_hr_mean[c], log_hr_sd, (CHAINS, DRAWS)) for c in covariates], axis=-1
    ).reshape(CHAINS, DRAWS, len(covariates))
    rate = np.exp(rng.normal(-3.5, 0.1, (CHAINS, DRAWS)))
    patterns = ["all"] if not covariates else [f"{covariates[0]}=0", f"{covariates[0]}=1"]
    surv = np.stack(
        [
            np.exp(-rate[..., None] * TIMES * (np.exp(beta[..., 0:1]) if k else 1.0))
            for k in range(len(patterns))
        ],
        axis=2,
    )
    post = xr.Dataset(
        {
            "log_h0": (("chain", "draw"), np.log(rate)),
            "survival": (("chain", "draw", "pattern", "time"), surv),
        },
        coords={**coords, "pattern": patterns, "time": TIMES},
        attrs={"n": n_patients, "events": 12, "model_kind": "pem", **(attrs or {})},
    )
    if covariates:
        post["beta"] = (("chain", "draw", "covariate"), beta)
        post["hr"] = (("chain", "draw", "covariate"), np.exp(beta))
        post = post.assign_coords(covariate=list(covariates))
    prior = xr.Dataset(
        {"beta": (("chain", "draw", "covariate"), rng.normal(0, 1, (1, DRAWS, len(covariates))))},
        coords={"chain": [0], "draw": np.arange(DRAWS), "covariate": list(covariates)},
    )
    stats = xr.Dataset(
        {
            "diverging": (("chain", "draw"), np.zeros((CHAINS, DRAWS), dtype=bool)),
            "energy": (("chain", "draw"), rng.normal(0, 1, (CHAINS, DRAWS))),
        },
        coords=coords,
    )
    ll = rng.normal(-1.5, 0.05, (CHAINS, DRAWS, n_patients))
    loglik = xr.Dataset(
        {"events": (("chain", "draw", "patient"), ll)},
        coords={**coords, "patient": np.arange(n_patients)},
    )
    return {"posterior": post, "prior": prior, "sample_stats": stats, "log_likelihood": loglik}


def write_fit(path: Path, groups: dict[str, xr.Dataset]) -> Path:
    """Write groups as an InferenceData-layout NetCDF file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "w"
    for name, ds in groups.items():
        ds.to_netcdf(path, group=name, mode=mode, engine="h5netcdf")
        mode = "a"
    return path


def as_idata(groups: dict[str, xr.Dataset]) -> SimpleNamespace:
    """An object with the group attributes (enough for analysis.comparison.hazard_ratios's
    readers)."""
    ns = SimpleNamespace(**groups)
    ns.groups = lambda: list(groups)
    return ns
