"""Sample the illness-death model (models/multistate.py), add its derived quantities, save it.

Outputs of a registry fit (``reports/fits/<name>.nc``, ArviZ InferenceData):

* ``posterior``: the model's parameters (``start_log_h0`` on ``hazard_start`` x
  ``interval_start``, time since surgery; ``ill_log_h0`` on ``hazard_ill`` x ``interval_ill``,
  time since the recurrence; ``beta`` and ``hr`` on ``transition`` x ``covariate``, exactly 0
  and 1 where an effect is not free) and the derived quantities, all exact for
  piecewise-constant hazards:

  - ``state_occupation`` (``state``, ``time``): P(in each state at ``time`` months after
    surgery), averaged over the patients' baseline covariates (what Aalen-Johansen estimates);
  - ``cif_after_recurrence`` (``recurrence_type``, ``death``, ``time_since_recurrence``):
    P(dead of each cause within that many months of a recurrence of each type), the other
    deaths competing, averaged over the covariates of the patients who recurred;
  - ``cif_after_recurrence_at`` (``recurrence_type``, ``death``, ``horizon``): the same at the
    horizons (24 and 60 months);
  - ``dss_after_recurrence`` (``recurrence_type``, ``time_since_recurrence``): disease-specific
    survival from the recurrence, ``1 - cif`` of the disease death (when the model has one).

* ``sample_stats``; ``prior`` (prior draws of the parameters and of ``state_occupation``);
  ``constant_data`` (cut points of both clocks, per transition the patients at risk and the
  events, which effects are free). There is no ``log_likelihood`` group: the collapsed
  likelihood has no per-patient terms.

Compilation: one nutpie compilation per structure, kept in the disk cache of compiled models
(:func:`analysis.inference.compile_cache.compile_cached`), so a later run loads it; the data
are ``pm.Data``, so a refit of the same structure could swap them with ``with_data``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from analysis.inference.compile_cache import compile_cached
from analysis.inference.engine import (
    SamplerSettings,
    nutpie_sample,
    sampler_attrs,
)
from analysis.inference.kinds import stored_names
from analysis.inference.multistate_data import (
    DISEASE_DEATH,
    MultistateData,
    check_informative,
    spec_multistate_data,
)
from analysis.inference.registry import MULTISTATE_REGISTRY, MultistateSpec
from analysis.inference.runner import LogEntry, record_fit, spec_seed
from models import multistate as ms
from models.priors import Priors

PRIOR_DRAWS = 1000
"""Draws from the prior kept in the ``prior`` group (0: none)."""


@dataclass
class MultistateResult:
    """A sampled illness-death model and how long it took."""

    idata: Any
    compile_seconds: float
    sampling_seconds: float
    compiled: Any = None
    """The compiled nutpie model, to refit the same structure (see :func:`fit_multistate`)."""


def build_model(data: MultistateData, priors: Priors) -> Any:
    """The PyMC illness-death model of ``data`` (effects freed by :meth:`effect_mask`)."""
    return ms.build_multistate(
        data.cells(),
        structure=data.structure,
        cuts_start=data.cuts_start,
        cuts_ill=data.cuts_ill,
        covariate_names=list(data.covariate_names),
        priors=priors,
        effect_mask=data.effect_mask(),
    )


def fit_multistate(
    data: MultistateData,
    *,
    priors: Priors | None = None,
    settings: SamplerSettings | None = None,
    attrs: dict[str, Any] | None = None,
    prior_draws: int = PRIOR_DRAWS,
    compiled: Any = None,
) -> MultistateResult:
    """Compile (nutpie), sample, add the derived quantities and the other groups.

    ``compiled``: the ``compiled`` of an earlier result on the same data and priors (e.g. a
    refit with other sampler settings): sampled again without compiling."""
    priors = priors or Priors()
    settings = settings or SamplerSettings()
    model = build_model(data, priors)
    names = stored_names(model)
    t0 = time.perf_counter()
    if compiled is None:
        compiled = compile_cached(model, "multistate", var_names=names).model
    t1 = time.perf_counter()
    trace = nutpie_sample(compiled, settings)
    t2 = time.perf_counter()
    post = trace.posterior[[v for v in names if v in trace.posterior]]
    post = xr.merge([post, derived(post, data)])
    idata = trace.__class__(posterior=post, sample_stats=trace.sample_stats)
    idata.add_groups({"constant_data": constant_data(data)})
    if prior_draws:
        idata.add_groups({"prior": sample_prior(model, data, prior_draws, settings.seed)})
    result = MultistateResult(idata, t1 - t0, t2 - t1, compiled)
    info = {
        "compile_seconds": round(result.compile_seconds, 3),
        "sampling_seconds": round(result.sampling_seconds, 3),
    }
    set_attrs(idata, data, priors, settings, {**(attrs or {}), **info})
    return result


# --------------------------------------------------------------------------- derived quantities


def _draws(post: xr.Dataset, name: str, dims: Sequence[str]) -> np.ndarray:
    return post[name].transpose("chain", "draw", *dims).values


def derived(post: xr.Dataset, data: MultistateData) -> xr.Dataset:
    """State occupation and the cumulative incidence of each death after a recurrence."""
    s = data.structure
    start0 = _draws(post, "start_log_h0", ("hazard_start", "interval_start"))
    ill0 = _draws(post, "ill_log_h0", ("hazard_ill", "interval_ill"))
    beta = _draws(post, "beta", ("transition", "covariate")) if "beta" in post else None
    times, horizons = data.curve_times, data.horizons
    occupation = ms.cohort_state_occupation(
        start0, ill0, beta, data.paths.x, s, data.cuts_start, data.cuts_ill, times
    )
    grid = np.concatenate([times, horizons])
    cif = cif_after_recurrence(start0, ill0, beta, data, grid)
    marks = ["recurrence" if s.n_marks == 1 else m for m in s.marks]
    lead = ("chain", "draw")
    ds = xr.Dataset(
        {
            "state_occupation": ((*lead, "state", "time"), occupation),
            "cif_after_recurrence": (
                (*lead, "recurrence_type", "death", "time_since_recurrence"),
                cif[..., : times.size],
            ),
            "cif_after_recurrence_at": (
                (*lead, "recurrence_type", "death", "horizon"),
                cif[..., times.size :],
            ),
        },
        coords={
            "state": s.occupation_states(by_mark=True),
            "time": times,
            "recurrence_type": marks,
            "death": list(s.deaths),
            "time_since_recurrence": times,
            "horizon": horizons,
        },
    )
    ds["state_occupation"].attrs["meaning"] = (
        "P(state at time months after entry), averaged over the patients' baseline covariates"
    )
    ds["cif_after_recurrence"].attrs["meaning"] = (
        "P(dead of this cause within time_since_recurrence months of a recurrence of this type), "
        "other deaths competing; averaged over the covariates of the patients who recurred"
    )
    if DISEASE_DEATH in s.deaths:
        dss = 1.0 - ds["cif_after_recurrence"].sel(death=DISEASE_DEATH, drop=True)
        ds["dss_after_recurrence"] = dss.transpose(*lead, "recurrence_type", ...)
        ds["dss_after_recurrence"].attrs["meaning"] = (
            "disease-specific survival from the recurrence: 1 - cif_after_recurrence of "
            f"{DISEASE_DEATH}"
        )
    return ds


def cif_after_recurrence(
    start0: np.ndarray,
    ill0: np.ndarray,
    beta: np.ndarray | None,
    data: MultistateData,
    times: np.ndarray,
) -> np.ndarray:
    """Cumulative incidence of each death since a recurrence of each type, averaged over the
    (covariates, illness-time group) of the patients who recurred: (..., R, K, T)."""
    paths, s = data.paths, data.structure
    ill = paths.ill if paths.ill.any() else np.ones(paths.n, bool)
    group = s.entry_group(np.where(paths.ill, paths.ill_time, 0.0))[ill]
    rows = np.column_stack([paths.x[ill], group])
    patterns, counts = np.unique(rows, axis=0, return_counts=True)
    out = 0.0
    for row, count in zip(patterns, counts, strict=True):
        _, ill_h = ms.profile_log_hazards(start0, ill0, beta, row[:-1], s)
        cif = ms.cif_after_illness(ill_h, data.cuts_ill, times)  # (..., G, R, K, T)
        out = out + count * cif[..., int(row[-1]), :, :, :]
    return np.asarray(out) / counts.sum()


# --------------------------------------------------------------------------- the other groups


def constant_data(data: MultistateData) -> xr.Dataset:
    """Cut points of both clocks, per-transition counts and the free effects."""
    counts = data.counts
    s = data.structure
    covariates = [*data.covariate_names, *s.ill_covariates]
    ds = xr.Dataset(
        {
            "cut_points_start": (("interval_start",), data.cuts_start),
            "cut_points_ill": (("interval_ill",), data.cuts_ill),
            "n_at_risk": (("transition",), [c["n_at_risk"] for c in counts]),
            "events": (("transition",), [c["events"] for c in counts]),
        },
        coords={
            "transition": s.transitions,
            "interval_start": np.arange(data.cuts_start.size),
            "interval_ill": np.arange(data.cuts_ill.size),
        },
    )
    ds["n_at_risk"].attrs["meaning"] = "patients who entered the transition's origin state"
    if covariates:
        mask = data.effect_mask().astype(int)
        ds["effect_free"] = (("transition", "covariate"), mask)
        ds = ds.assign_coords(covariate=covariates)
    return ds.drop_vars(["interval_start", "interval_ill"])


def sample_prior(model: Any, data: MultistateData, draws: int, seed: int) -> xr.Dataset:
    """Prior draws of the parameters and of the state occupation (prior predictive check)."""
    import pymc as pm

    names = stored_names(model)
    with warnings.catch_warnings():
        # the Potentials are the likelihood, which the prior must indeed ignore
        warnings.filterwarnings("ignore", message=".*Potentials.*prior predictive.*")
        logging.getLogger("pymc").setLevel(logging.WARNING)
        prior = pm.sample_prior_predictive(
            draws=draws, model=model, random_seed=seed, var_names=names
        ).prior
    occupation = derived(prior, data)[["state_occupation"]]
    return xr.merge([prior[names], occupation])


def set_attrs(
    idata: Any,
    data: MultistateData,
    priors: Priors,
    settings: SamplerSettings,
    extra: dict[str, Any],
) -> None:
    """What the fit is and how it was made, on the posterior and sample_stats groups."""
    s = data.structure
    attrs: dict[str, Any] = {
        "model_kind": "multistate",
        "model_description": (
            "illness-death model, piecewise-constant transition hazards; clock reset at the "
            "recurrence (hazards after it run on time since the recurrence); recurrence type as "
            f"covariate of the transitions out of it; x = {' + '.join(data.covariate_names) or '1'}"
        ),
        "states": ",".join(s.occupation_states(by_mark=True)),
        "transitions": ",".join(s.transitions),
        "covariates": ",".join(data.covariate_names) or "(none)",
        "n": data.n,
        "n_dropped_missing_covariate": data.n_dropped,
        "events": data.events,
        "events_per_transition": [c["events"] for c in data.counts],
        "time_unit": data.time_unit,
        **_time_attrs(data),
        "priors": priors.describe(),
        **priors.as_attrs(),
        **sampler_attrs(dataclasses.replace(settings, sampler="nutpie")),
        **{k: v for k, v in extra.items() if v is not None},
    }
    for group in ("posterior", "sample_stats"):
        getattr(idata, group).attrs.update(
            {k: (str(v) if isinstance(v, dict) else v) for k, v in attrs.items()}
        )


def _time_attrs(data: MultistateData) -> dict[str, Any]:
    """Cut points of both clocks, curve grid and horizons, named with the data's time unit
    (``cut_points_months``, ... for the cohort)."""
    unit = data.time_unit
    return {
        f"cut_points_{unit}": data.cuts_start.tolist(),
        f"cut_points_since_recurrence_{unit}": data.cuts_ill.tolist(),
        f"curve_times_{unit}": data.curve_times.tolist(),
        f"horizons_{unit}": data.horizons.tolist(),
    }


# --------------------------------------------------------------------------- the registry


def multistate_specs(names: Sequence[str] | None = None) -> list[MultistateSpec]:
    """The registered illness-death fits (those named, if ``names``)."""
    return [s for s in MULTISTATE_REGISTRY if names is None or s.name in names]


def check_multistate_specs(
    specs: Sequence[MultistateSpec], df: pd.DataFrame, source: str
) -> dict[str, MultistateData]:
    """The data of each spec; raises ``VlmsInputError`` before anything is fitted."""
    datas = {}
    for spec in specs:
        data = spec_multistate_data(spec, df, source)
        check_informative(data, f"model {spec.name} (illness-death, subset {spec.subset})", source)
        datas[spec.name] = data
    return datas


def run_multistate_registry(
    df: pd.DataFrame,
    out_dir: Path,
    settings: SamplerSettings,
    specs: Sequence[MultistateSpec] | None = None,
    log: Callable[[str], None] = print,
    source: str = "cohort",
) -> list[LogEntry]:
    """Fit the registered illness-death models; write ``<out_dir>/fits/<name>.nc`` and
    ``.summary.csv``; return their fit-log entries."""
    specs = multistate_specs() if specs is None else list(specs)
    datas = check_multistate_specs(specs, df, source)
    fits_dir = Path(out_dir) / "fits"
    entries = []
    for spec in specs:
        data = datas[spec.name]
        seeded = dataclasses.replace(
            settings,
            seed=spec_seed(settings.seed, spec.name),
            target_accept=max(settings.target_accept, spec.target_accept),
        )
        log(f"[multi-state] {spec.name}: n={data.n}, transitions observed={data.events} "
            "(compiling its structure)")  # fmt: skip
        attrs = {
            "model_name": spec.name,
            "endpoint": "illness_death",
            "subset": spec.subset,
            "description": spec.description,
            "base_seed": settings.seed,
        }
        result = fit_multistate(data, priors=spec.priors, settings=seeded, attrs=attrs)
        entry, ok = record_fit(
            result.idata,
            fits_dir,
            spec.name,
            structure=(
                f"multistate/{len(data.covariate_names)} covariates/"
                f"{data.cuts_start.size}+{data.cuts_ill.size} intervals"
            ),
            n=data.n,
            events=data.events,
            n_dropped=data.n_dropped,
            seconds=(result.compile_seconds, result.sampling_seconds),
        )
        entries.append(entry)
        log(
            f"[multi-state] {spec.name}: compile {entry.compile_seconds:.1f} s, sampling "
            f"{entry.sampling_seconds:.2f} s, min bulk ESS {entry.min_ess_bulk:.0f}, divergences "
            f"{entry.divergences}, bar {'met' if ok else 'MISSED'}"
        )
    return entries
