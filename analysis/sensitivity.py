"""Prior sensitivity of the Table 2 hazard ratios: refit with other log-HR priors.

The Table 2 fits (beta-catenin and IGF-1R, on RFS and on DSS, 26 TMA patients) are refit with
the log-HR prior Normal(0, 0.5), Normal(0, 1) (the registry's), Normal(0, 2.5) and
StudentT(3, 0, 1). All 16 fits share ONE compiled nutpie model: the prior's scale and family
are data (``pm.Data``), so changing the prior or the data set is a data swap, not a recompile.

To make the prior a data swap the log HR is written ``beta = effect_prior_sd * beta_z`` with the
standardised ``beta_z`` given the log density kernel of either Normal(0, 1) or
StudentT(nu, 0, 1), chosen by the 0/1 datum ``effect_prior_is_t`` (a ``pm.Potential`` on a
``pm.Flat``; the normalising constants do not depend on the parameters and are left out, which
keeps the compiled graph small). This is the
same prior as :func:`models.priors.effect_prior` with the same scale and family; the baseline
hazard and the likelihood are those of :func:`models.pem.build_pem` (same baseline prior, same
collapsed cells). The Normal(0, 1) row is therefore a second, independent fit of the registry's
model and should agree with it to Monte Carlo error (the comparison table shows both).

Every refit is checked against the same bar as ``make fit`` (R-hat, bulk/tail ESS, divergences).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis import fit as fit_mod
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

STUDENT_T_TARGET_ACCEPT = 0.99
"""The heavy-tailed Student-t prior gave a divergence at 0.95 (measured on the reconstruction):
its refits take a smaller step size (at least this target acceptance)."""

SAMPLED_VARS = ["beta_z", "beta", "hr", "log_h0", "log_h_level_z", "rw_sigma", "rw_z"]


def build_pem_prior_data(
    cells: Any,
    *,
    cuts: np.ndarray,
    covariate_names: list[str],
    log_rate_center: float,
    priors: Priors,
) -> Any:
    """The PEM of :func:`models.pem.build_pem` with the log-HR prior's scale and family as data.

    Mirrors ``build_pem`` (same baseline prior :func:`models.priors.log_baseline`, same
    likelihood :func:`models.pem.poisson_kernel` on the same cells). Data containers: those of
    ``build_pem`` plus ``effect_prior_sd``, ``effect_prior_nu`` and ``effect_prior_is_t``
    (1 Student-t, 0 normal). Needs at least one covariate.
    """
    import pymc as pm
    import pytensor.tensor as pt

    from models.pem import model_coords, pem_data, poisson_kernel
    from models.priors import log_baseline

    n_intervals = len(cuts)
    if not covariate_names:
        raise ValueError("the sensitivity model needs at least one covariate")
    coords = model_coords(cuts, covariate_names, cells.n_patterns)
    with pm.Model(coords=coords) as model:
        data = pem_data(cells, log_rate_center)
        dims = ("interval", "cell_pattern")
        exposure = pm.Data("exposure", data["exposure"], dims=dims)
        events = pm.Data("events", data["events"], dims=dims)
        center = pm.Data("log_rate_center", data["log_rate_center"])
        x = pm.Data("pattern_x", data["pattern_x"], dims=("cell_pattern", "covariate"))
        sd, nu, is_t = prior_data(priors).values()
        prior_sd = pm.Data("effect_prior_sd", sd)
        prior_nu = pm.Data("effect_prior_nu", nu)
        prior_is_t = pm.Data("effect_prior_is_t", is_t)
        log_h0 = log_baseline(priors, center, n_intervals)
        z = pm.Flat("beta_z", dims="covariate")
        # kernels only: the dropped normalising constants depend on data (nu), not on parameters
        logp_normal = -0.5 * z**2
        logp_t = -0.5 * (prior_nu + 1.0) * pt.log1p(z**2 / prior_nu)
        pm.Potential("beta_prior", pt.sum(prior_is_t * logp_t + (1.0 - prior_is_t) * logp_normal))
        beta = pm.Deterministic("beta", prior_sd * z, dims="covariate")
        pm.Deterministic("hr", pt.exp(beta), dims="covariate")
        eta = log_h0[:, None] + pt.dot(x, beta)[None, :]
        pm.Potential("loglik", poisson_kernel(events, exposure, eta))
    return model


def prior_data(priors: Priors) -> dict[str, np.ndarray]:
    """The prior's data values for :func:`build_pem_prior_data`."""
    return {
        "effect_prior_sd": np.asarray(float(priors.effect_sd)),
        "effect_prior_nu": np.asarray(float(priors.effect_nu)),
        "effect_prior_is_t": np.asarray(1.0 if priors.effect_family == "student_t" else 0.0),
    }


def _data_dict(data: fit_mod.FitData, priors: Priors) -> dict[str, np.ndarray]:
    from models.pem import pem_data

    return {**pem_data(data.cells(), data.log_rate_center()), **prior_data(priors)}


def _baseline_key(p: Priors) -> tuple:
    return (p.baseline, p.level_sd, p.step_scale)


@dataclass
class SensitivityRow:
    """One refit: model, prior, posterior HR summary and its diagnostics."""

    model: str
    covariate: str
    prior: str
    hr_median: float
    hr_lower: float
    hr_upper: float
    prob_gt_1: float
    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    divergences: int
    bar_met: bool
    sampling_seconds: float


def run_sensitivity(
    df: pd.DataFrame,
    settings: fit_mod.SamplerSettings,
    models: tuple[str, ...] = TABLE2_FITS,
    priors: dict[str, Priors] | None = None,
    log: Any = print,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Refit ``models`` (registry names) under each prior with one compiled model.

    Returns the table (one row per model x prior) and timings (``compile_seconds``,
    ``sampling_seconds`` in all, ``fits``).
    """
    import nutpie

    from analysis import diagnostics

    priors = SENSITIVITY_PRIORS if priors is None else priors
    specs = {s.name: s for s in fit_mod.REGISTRY}
    missing = [m for m in models if m not in specs]
    if missing:
        raise ValueError(f"not in the fit registry: {', '.join(missing)}")
    datas = {}
    for name in models:
        spec = dataclasses.replace(specs[name], slots=None)
        if len(spec.covariates) != 1 or spec.builder != "pem":
            raise ValueError(f"{name}: the sensitivity analysis takes one-covariate PEM fits")
        datas[name] = fit_mod.spec_data(spec, df)
    base = {_baseline_key(specs[m].priors) for m in models}
    if len(base) != 1:
        raise ValueError("the refit models must share the baseline prior")
    base_priors = specs[models[0]].priors
    first = datas[models[0]]
    first_prior = next(iter(priors.values()))
    model = build_pem_prior_data(
        first.cells(),
        cuts=first.cuts,
        covariate_names=["effect"],
        log_rate_center=first.log_rate_center(),
        priors=dataclasses.replace(base_priors, **_effect_fields(first_prior)),
    )
    t0 = time.perf_counter()
    names = [v for v in SAMPLED_VARS if v in model.named_vars]
    compiled = nutpie.compile_pymc_model(model, var_names=names)
    compile_seconds = time.perf_counter() - t0
    log(f"sensitivity: compiled once in {compile_seconds:.1f} s")
    rows: list[SensitivityRow] = []
    sampling_total = 0.0
    for name in models:
        data = datas[name]
        covariate = data.covariate_names[0]
        for label, p in priors.items():
            swapped = compiled.with_data(**_data_dict(data, p))
            seed = fit_mod.spec_seed(settings.seed, f"{name}|{label}")
            target_accept = settings.target_accept
            if p.effect_family == "student_t":
                target_accept = max(target_accept, STUDENT_T_TARGET_ACCEPT)
            t1 = time.perf_counter()
            idata = nutpie.sample(
                swapped,
                draws=settings.draws,
                tune=settings.tune,
                chains=settings.chains,
                cores=min(settings.chains, 2),
                seed=seed,
                target_accept=target_accept,
                save_warmup=False,
                progress_bar=False,
            )
            seconds = time.perf_counter() - t1
            sampling_total += seconds
            post = idata.posterior[[v for v in names if v in idata.posterior]]
            idata = idata.__class__(posterior=post, sample_stats=idata.sample_stats)
            ok, d = diagnostics.passes_bar(idata)
            hr = post["hr"].values[..., 0].ravel()
            lo, med, hi = np.quantile(hr, [0.025, 0.5, 0.975])
            rows.append(
                SensitivityRow(
                    model=name,
                    covariate=covariate,
                    prior=label,
                    hr_median=float(med),
                    hr_lower=float(lo),
                    hr_upper=float(hi),
                    prob_gt_1=float(np.mean(hr > 1.0)),
                    max_rhat=d["max_rhat"],
                    min_ess_bulk=d["min_ess_bulk"],
                    min_ess_tail=d["min_ess_tail"],
                    divergences=int(d["divergences"]),
                    bar_met=bool(ok),
                    sampling_seconds=round(seconds, 3),
                )
            )
            log(
                f"  {name} | {label}: HR {med:.2f} ({lo:.2f}-{hi:.2f}), P(HR>1) "
                f"{np.mean(hr > 1.0):.3f}, {seconds:.2f} s, bar {'met' if ok else 'MISSED'}"
            )
    table = pd.DataFrame([dataclasses.asdict(r) for r in rows])
    timings = {
        "compile_seconds": round(compile_seconds, 2),
        "sampling_seconds": round(sampling_total, 2),
        "fits": len(rows),
    }
    return table, timings


def _effect_fields(p: Priors) -> dict[str, Any]:
    return {"effect_family": p.effect_family, "effect_sd": p.effect_sd, "effect_nu": p.effect_nu}
