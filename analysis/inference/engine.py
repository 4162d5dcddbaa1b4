"""The engine that samples: compile a model structure once, refit it on new data, save.

Layout of the outputs (``<out_dir>/fits/``):

* ``<name>.nc``: ArviZ InferenceData (NetCDF) with groups ``posterior`` (parameters and derived
  quantities, dims ``interval``, ``covariate``, ``pattern``, ``time``, ``cause``),
  ``sample_stats``, ``log_likelihood`` (dim ``patient``: each patient's log-likelihood summed over
  its intervals, so LOO leaves out a patient), ``observed_data``, ``constant_data`` and ``prior``
  (draws from the prior, for the prior predictive check). The ``posterior`` attributes describe the
  fit (end point, subset, n, events, cut points, priors, seed, sampler, package versions, timings).
* ``<name>.summary.csv``: the diagnostics summary (see
  :func:`analysis.inference.diagnostics.summarize`).
* ``fit_log.csv``: per model, compile and sampling seconds and ESS per second.

Compile once per structure: models with the same structure (kind, number of covariate slots,
intervals, causes, priors) share one compiled nutpie model whose data are swapped with
``with_data``. Collapsed cells are laid on a fixed grid (intervals x all 0/1 covariate patterns;
empty cells have exposure 0 and add nothing), and a model with fewer covariates than its structure's
slots fills the spare slots with zeros: their coefficients do not enter the likelihood, their
posterior is their prior, independent of everything else, and they are dropped before saving.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from analysis.core import interrupt
from analysis.core.atomic import atomic_path
from analysis.inference.data import FitData
from analysis.inference.kinds import KINDS, MEDIAN_CAP, RMST_HORIZON, resolve_kind, stored_names
from models.priors import Priors
from models.survival_data import interval_labels

TARGET_ACCEPT = 0.95
PRIOR_DRAWS = 1000
PACKAGES = ("pymc", "pytensor", "nutpie", "numba", "arviz", "numpy", "xarray")

# --------------------------------------------------------------------------- settings and data


@dataclass(frozen=True)
class SamplerSettings:
    """How to sample: sampler (``"nutpie"`` or ``"pymc"``), draws, tune, chains, seed."""

    sampler: str = "nutpie"
    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    seed: int = 20260101
    target_accept: float = TARGET_ACCEPT
    progress: bool = False

    def __post_init__(self) -> None:
        if self.sampler not in ("nutpie", "pymc"):
            raise ValueError("sampler must be 'nutpie' or 'pymc'")
        for name in ("draws", "tune", "chains"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")


# --------------------------------------------------------------------------- compile and sample


@dataclass
class Compiled:
    """A compiled model structure, reusable with new data of the same shapes."""

    key: tuple
    kind: Any
    model: Any
    sampler: str
    nutpie_model: Any = None
    compile_seconds: float = 0.0
    uses: int = 0
    source: str = "compiled"
    """Where the nutpie model came from: ``compiled``, ``disk`` or ``memory`` (the cache of
    :mod:`analysis.inference.compile_cache`)."""


def structure_key(kind_name: str, data: FitData, priors: Priors) -> tuple:
    """Models with equal keys share one compiled model."""
    cells = data.cells()
    kind_name = resolve_kind(kind_name, data)
    key = (kind_name, data.n_slots, len(data.cuts), data.n_causes, priors, cells.exposure.size)
    if kind_name.endswith("_imputed"):  # imputed columns, predictors, complete-case patterns
        from models.imputation import structure_key as imputed_structure

        key += (imputed_structure(KINDS[kind_name].layout(data)),)
    return key


def compile_nutpie(model: Any, var_names: list[str] | None = None) -> Any:
    """``nutpie.compile_pymc_model``, stopped by Ctrl-C or SIGTERM even when numba loses the
    ``KeyboardInterrupt`` (it runs Python callbacks from C while it generates code, where Python
    can only print "Exception ignored"; :func:`analysis.core.interrupt.guard`)."""
    import nutpie

    with interrupt.guard():
        return nutpie.compile_pymc_model(model, var_names=var_names)


def compile_structure(
    kind_name: str, data: FitData, priors: Priors, sampler: str, *, use_cache: bool = True
) -> Compiled:
    """Build the PyMC model for ``data`` and (nutpie) compile it, or load it from the on-disk
    cache (:func:`analysis.inference.compile_cache.compile_cached`; ``use_cache=False``: always
    compile, e.g. to time it); time it."""
    from analysis.inference.compile_cache import compile_cached

    kind_name = resolve_kind(kind_name, data)
    kind = KINDS[kind_name]
    key = structure_key(kind_name, data, priors)
    with interrupt.guard():
        model = kind.build(data, priors)
        interrupt.hold("compiling")
        t0 = time.perf_counter()
        compiled, source = None, "compiled"
        if sampler == "nutpie":
            cached = compile_cached(
                model, repr(key), var_names=stored_names(model), use_cache=use_cache
            )
            compiled, source = cached.model, cached.source
        seconds = time.perf_counter() - t0
    return Compiled(
        key=key,
        kind=kind,
        model=model,
        sampler=sampler,
        nutpie_model=compiled,
        compile_seconds=seconds,
        source=source,
    )


@dataclass
class FitResult:
    """An InferenceData and how long it took.

    ``timings``: wall seconds of each step (``compile``: compiling or loading the structure, 0
    when reused; ``sampling``; ``posterior``: derived quantities, log-likelihood and groups;
    ``prior``: the prior draws, when made).
    """

    idata: Any
    compile_seconds: float
    sampling_seconds: float
    reused_compiled: bool
    timings: dict[str, float] = field(default_factory=dict)


def fit_model(
    data: FitData,
    *,
    kind: str = "pem",
    priors: Priors | None = None,
    settings: SamplerSettings | None = None,
    compiled: Compiled | None = None,
    attrs: dict[str, Any] | None = None,
    keep_rows: bool = True,
    with_prior: bool = True,
    with_loglik: bool = True,
) -> tuple[FitResult, Compiled]:
    """Sample the posterior of one model on ``data``.

    Parameters
    ----------
    data
        From :func:`make_fit_data`.
    kind
        ``"pem"`` (or ``"competing"``).
    priors, settings
        Model priors and sampler settings (defaults: ``Priors()``, ``SamplerSettings()``).
    compiled
        A compiled structure to reuse (from an earlier call); it must match ``data``'s structure,
        else a new one is compiled.
    attrs
        Extra attributes for the posterior (end point, subset, ...).
    keep_rows
        Save the patient-level data (``observed_data``, and times, covariates and cells in
        ``constant_data``). ``False`` for a user's own file: the saved fit then records the
        file name, not its rows (``constant_data`` keeps the cut points, covariate centres and
        scales, and the events and exposure per interval).
    with_prior, with_loglik
        Add the ``prior`` group (:func:`add_prior`) and the ``log_likelihood`` group
        (:func:`add_log_likelihood`); ``False`` leaves them out (e.g. for a fit that may be
        refitted, or whose InferenceData is not saved), to add later if needed.

    Returns
    -------
    (FitResult, Compiled)
        The result, and the compiled structure for reuse with :func:`refit`. With PyMC's own
        sampler the (C backend, disk-cached) compilation happens inside ``pm.sample`` and is
        counted in the sampling seconds; ``compile_seconds`` is then 0.
    """
    priors = priors or Priors()
    settings = settings or SamplerSettings()
    kind = resolve_kind(kind, data)
    key = structure_key(kind, data, priors)
    reused = compiled is not None and compiled.key == key and compiled.sampler == settings.sampler
    if not reused:
        compiled = compile_structure(kind, data, priors, settings.sampler)
    assert compiled is not None
    compiled.uses += 1
    kind_obj = compiled.kind
    t0 = time.perf_counter()
    if settings.sampler == "nutpie":
        idata = _sample_nutpie(compiled, data, settings, first_use=compiled.uses == 1)
    else:
        idata = _sample_pymc(compiled, data, settings, priors)
    sampling = time.perf_counter() - t0
    t1 = time.perf_counter()
    idata = _finish(idata, kind_obj, data, compiled, keep_rows, with_loglik)
    t2 = time.perf_counter()
    if with_prior:
        add_prior(idata, kind, data, priors, settings.seed)
    t3 = time.perf_counter()
    info = {
        "compile_seconds": round(compiled.compile_seconds, 3) if not reused else 0.0,
        "compile_seconds_structure": round(compiled.compile_seconds, 3),
        "sampling_seconds": round(sampling, 3),
        "reused_compiled_model": int(reused),
    }
    _set_attrs(idata, data, priors, settings, kind, {**(attrs or {}), **info})
    result = FitResult(
        idata=idata,
        compile_seconds=0.0 if reused else compiled.compile_seconds,
        sampling_seconds=sampling,
        reused_compiled=reused,
        timings={
            "compile": 0.0 if reused else round(compiled.compile_seconds, 3),
            "sampling": round(sampling, 3),
            "posterior": round(t2 - t1, 3),
            **({"prior": round(t3 - t2, 3)} if with_prior else {}),
        },
    )
    return result, compiled


def refit(compiled: Compiled, data: FitData, **kwargs: Any) -> FitResult:
    """Sample ``compiled`` (from :func:`fit_model`) again on new data of the same structure."""
    result, _ = fit_model(data, kind=compiled.kind.name, compiled=compiled, **kwargs)
    return result


def nutpie_sample(nutpie_model: Any, settings: SamplerSettings, *, cores: int = 2) -> Any:
    """Sample a compiled nutpie model with ``settings`` (draws, tune, chains, seed, target
    acceptance); stops on Ctrl-C or SIGTERM instead of returning a partial trace."""
    import nutpie

    with interrupt.guard():
        sampler = nutpie.sample(
            nutpie_model,
            draws=settings.draws,
            tune=settings.tune,
            chains=settings.chains,
            cores=min(settings.chains, cores),
            seed=settings.seed,
            target_accept=settings.target_accept,
            save_warmup=False,
            progress_bar=settings.progress,
            blocking=False,
        )
        try:
            # nutpie's blocking call turns Ctrl-C into an early, partial trace; an interrupted
            # fit must stop instead, writing nothing
            interrupt.hold("sampling")
            return sampler.wait()
        except BaseException:
            sampler.cancel()
            raise


def _sample_nutpie(
    compiled: Compiled, data: FitData, settings: SamplerSettings, first_use: bool
) -> Any:
    model = compiled.nutpie_model
    if not first_use:
        model = model.with_data(**compiled.kind.data_dict(data))
    return nutpie_sample(model, settings)


def _sample_pymc(
    compiled: Compiled, data: FitData, settings: SamplerSettings, priors: Priors
) -> Any:
    import pymc as pm

    model = compiled.model
    logging.getLogger("pymc").setLevel(logging.ERROR)  # progress lines and short-chain notes:
    # the bar (R-hat, ESS, divergences) is measured and reported by vlms
    # PyMC turns KeyboardInterrupt into a partial trace (or fails building one): the guard
    # raises it again, so that nothing is written
    with model, interrupt.guard():
        pm.set_data(compiled.kind.data_dict(data))
        interrupt.hold("sampling")
        return pm.sample(
            draws=settings.draws,
            tune=settings.tune,
            chains=settings.chains,
            cores=min(settings.chains, 2),
            random_seed=settings.seed,
            target_accept=settings.target_accept,
            progressbar=settings.progress,
            compute_convergence_checks=False,
            var_names=stored_names(model),
        )


def _finish(
    idata: Any, kind: Any, data: FitData, compiled: Compiled, keep_rows: bool, with_loglik: bool
) -> Any:
    """Name the covariates, drop spare slots, add derived quantities and the other groups."""
    post = idata.posterior
    keep = stored_names(compiled.model)
    post = post[[v for v in keep if v in post]]
    return _assemble(_relabel(post, data), idata.sample_stats, kind, data, keep_rows, with_loglik)


def assemble_fit(
    post: xr.Dataset,
    sample_stats: xr.Dataset,
    kind: str,
    data: FitData,
    priors: Priors,
    settings: SamplerSettings,
    attrs: dict[str, Any],
) -> Any:
    """The saved InferenceData of a fit whose draws were made elsewhere (a batch of a stacked
    model, :mod:`analysis.inference.batches`): ``post`` already has its named dims (covariate,
    interval, cause). Adds the derived quantities, the log-likelihood, observed and constant
    data, draws from the prior (seed ``settings.seed``) and the attributes."""
    idata = _assemble(post, sample_stats, KINDS[kind], data, keep_rows=True, with_loglik=True)
    idata.add_groups({"prior": sample_prior(kind, data, priors, seed=settings.seed)})
    _set_attrs(idata, data, priors, settings, kind, attrs)
    return idata


def _assemble(
    post: xr.Dataset,
    stats: xr.Dataset,
    kind: Any,
    data: FitData,
    keep_rows: bool,
    with_loglik: bool,
) -> Any:
    """InferenceData from named draws: derived quantities and the other groups (without patient
    rows unless ``keep_rows``; the log-likelihood group when ``with_loglik``)."""
    from analysis.inference.diagnostics import make_idata

    post = xr.merge([post, kind.derived(post, data)])
    n_cov = len(data.covariate_names)
    groups = {
        "observed_data": xr.Dataset(kind.observed(data), coords={"patient": np.arange(data.n)}),
        "constant_data": _constant_data(data, n_cov),
    }
    if not keep_rows:
        del groups["observed_data"]
        groups["constant_data"] = _aggregate_data(data, n_cov)
    new = make_idata(posterior=post, sample_stats=stats)
    new.add_groups(groups)
    if with_loglik:
        add_log_likelihood(new, kind.name, data)
    return new


def add_log_likelihood(idata: Any, kind: str, data: FitData) -> Any:
    """Add the ``log_likelihood`` group (each patient's log-likelihood summed over its
    intervals, dim ``patient``, so LOO leaves out a patient); returns ``idata``."""
    post = idata.posterior
    ll = KINDS[resolve_kind(kind, data)].loglik(post, data)
    group = xr.Dataset(
        {"events": (("chain", "draw", "patient"), ll)},
        coords={"chain": post.chain, "draw": post.draw, "patient": np.arange(data.n)},
        attrs=dict(post.attrs),
    )
    idata.add_groups({"log_likelihood": group})
    return idata


def _relabel(post: xr.Dataset, data: FitData) -> xr.Dataset:
    n_cov = len(data.covariate_names)
    if "covariate" in post.dims:
        post = post.assign_coords(covariate=data.slot_names).isel(covariate=slice(0, n_cov))
        if n_cov == 0:
            post = post.drop_dims("covariate")
    post = post.assign_coords(interval=interval_labels(data.cuts))
    if "interval_step" in post.dims:
        post = post.assign_coords(interval_step=interval_labels(data.cuts)[1:])
    if data.cause_names and "cause" in post.dims:
        post = post.assign_coords(cause=list(data.cause_names))
    return post


def _constant_data(data: FitData, n_cov: int) -> xr.Dataset:
    cells = data.cells()
    grid = ("interval", "cell_pattern")
    ds = xr.Dataset(
        {
            "time": (("patient",), data.time),
            "cut_points": (("interval",), data.cuts),
            "exposure": (grid, cells.exposure),
        },
        coords={
            "patient": np.arange(data.n),
            "interval": interval_labels(data.cuts),
            "cell_pattern": np.arange(cells.n_patterns),
        },
    )
    ds["exposure"].attrs["meaning"] = f"{data.time_unit} at risk per interval and covariate pattern"
    if n_cov:
        ds["x"] = (("patient", "covariate"), data.x)
        ds["pattern_x"] = (("cell_pattern", "covariate"), cells.x[:, :n_cov])
        ds["x_center"] = (("covariate",), data.center)
        ds["x_scale"] = (("covariate",), data.scale_slots()[:n_cov])
        ds = ds.assign_coords(covariate=list(data.covariate_names))
    if data.n_causes:
        ds["events"] = ((*grid, "cause"), cells.events)
        ds = ds.assign_coords(cause=list(data.cause_names))
    else:
        ds["events"] = (grid, cells.events)
    return ds


def _aggregate_data(data: FitData, n_cov: int) -> xr.Dataset:
    """Constant data without patient rows: cut points, covariate coding, totals per interval."""
    cells = data.cells()
    events = np.asarray(cells.events).sum(axis=1)
    if events.ndim == 2:
        events = events.sum(axis=1)
    ds = xr.Dataset(
        {
            "cut_points": (("interval",), data.cuts),
            "exposure_total": (("interval",), cells.exposure.sum(axis=1)),
            "events_total": (("interval",), events),
        },
        coords={"interval": interval_labels(data.cuts)},
    )
    if n_cov:
        ds["x_center"] = (("covariate",), data.center)
        ds["x_scale"] = (("covariate",), data.scale_slots()[:n_cov])
        ds = ds.assign_coords(covariate=list(data.covariate_names))
    return ds


def add_prior(idata: Any, kind: str, data: FitData, priors: Priors, seed: int) -> Any:
    """Add the ``prior`` group (:func:`sample_prior`) to ``idata``; returns ``idata``."""
    idata.add_groups({"prior": sample_prior(kind, data, priors, seed=seed)})
    return idata


def sample_prior(kind: str, data: FitData, priors: Priors, seed: int) -> xr.Dataset:
    """Draws from the prior with the same derived quantities (prior predictive check)."""
    import pymc as pm

    kind_obj = KINDS[resolve_kind(kind, data)]
    model = kind_obj.build(data, priors)
    names = stored_names(model)
    with warnings.catch_warnings():
        # the model's only Potential is the likelihood, which the prior must indeed ignore
        warnings.filterwarnings("ignore", message=".*Potentials.*prior predictive.*")
        logging.getLogger("pymc").setLevel(logging.WARNING)  # no "Sampling: [...]" line
        prior = pm.sample_prior_predictive(
            draws=PRIOR_DRAWS, model=model, random_seed=seed, var_names=names
        ).prior
    prior = _relabel(prior[names], data)
    return xr.merge([prior, kind_obj.derived(prior, data)])


def _set_attrs(
    idata: Any,
    data: FitData,
    priors: Priors,
    settings: SamplerSettings,
    kind: str,
    extra: dict[str, Any],
) -> None:
    attrs: dict[str, Any] = {
        "model_kind": kind,
        "model_description": _describe(kind, data),
        "covariates": ",".join(data.covariate_names) or "(none)",
        **coding_attrs(data),
        "intervals": INTERVALS,
        "n": data.n,
        "n_dropped_missing_covariate": data.n_dropped,
        "missing_covariates": "imputed" if data.imputes else "complete cases",
        **({"values_imputed": list(data.values_missing().values())} if data.imputes else {}),
        "events": int(np.sum(data.event > 0)),
        **_time_attrs(data),
        "priors": priors.describe(),
        **priors.as_attrs(),
        **sampler_attrs(settings),
    }
    if data.cause_names:
        attrs["causes"] = ",".join(f"{k + 1}={c}" for k, c in enumerate(data.cause_names))
        attrs["events_per_cause"] = [int(np.sum(data.event == k + 1)) for k in range(data.n_causes)]
    attrs.update({k: v for k, v in extra.items() if v is not None})
    for group in ("posterior", "sample_stats", "log_likelihood"):
        if group in idata.groups():
            getattr(idata, group).attrs.update(_netcdf_safe(attrs))


def sampler_attrs(settings: SamplerSettings) -> dict[str, Any]:
    """How a fit was sampled: sampler, draws, tune, chains, seed, target acceptance, versions."""
    return {
        "sampler": settings.sampler,
        "draws": settings.draws,
        "tune": settings.tune,
        "chains": settings.chains,
        "seed": settings.seed,
        "target_accept": settings.target_accept,
        **{f"version_{p}": _version(p) for p in PACKAGES},
        "python": sys.version.split()[0],
    }


def _time_attrs(data: FitData) -> dict[str, Any]:
    """Cut points, curve grid, horizons and crude rate in the data's time unit; for fits in
    months also under the ``*_months`` names the registry's readers use."""
    unit = data.time_unit
    values = {
        "cut_points": data.cuts.tolist(),
        "curve_times": data.curve_times.tolist(),
        "rmst_horizon": data.from_months(RMST_HORIZON),
        "median_cap": data.from_months(MEDIAN_CAP),
    }
    attrs: dict[str, Any] = {"time_unit": unit, **values}
    attrs[f"log_crude_rate_per_{unit.removesuffix('s')}"] = data.log_rate_center()
    if unit == "months":
        attrs.update({f"{k}_months": v for k, v in values.items()})
    return attrs


INTERVALS = "95% equal-tailed (the 2.5% and 97.5% posterior quantiles)"
CENTRING = (
    "covariates enter as (x - centre) / scale: a numeric column is centred at its mean and "
    "scaled by its SD; a two-valued column keeps its lower value as the reference (0 of a 0/1 "
    "column) and is scaled by the gap between its values (1 for 0/1); log_h0 is the log "
    "baseline hazard at the centre (its prior is at the crude rate there); beta = log HR per "
    "unit of the column as given, beta_std = per scale unit (the log-HR prior is on beta_std)"
)


def coding_attrs(data: FitData) -> dict[str, Any]:
    """How the covariates entered the model, for the NetCDF attributes."""
    if not data.covariate_names:
        return {}
    codings = data.codings
    return {
        "covariate_centring": CENTRING,
        "covariate_kind": ",".join(c.kind for c in codings),
        "covariate_center": [c.center for c in codings],
        "covariate_scale": [c.scale for c in codings],
    }


def _describe(kind: str, data: FitData) -> str:
    cov = " + ".join(data.covariate_names) or "1"
    terms = "((x - centre) / scale) . beta_std" if data.covariate_names else "0"
    if kind.endswith("_imputed"):
        imputed = (
            "; unknown binary covariates marginalised in the likelihood (logistic covariate "
            "model on the fully observed covariates)"
        )
    else:
        imputed = ""
    if kind.startswith("pem"):
        return (
            f"piecewise-exponential: log h(t | x) = log h0[interval] + {terms}; x = {cov}; "
            f"Poisson likelihood on collapsed counts with log-exposure offset{imputed}"
        )
    return (
        f"cause-specific piecewise-exponential hazards: log h_k = log h0[k, interval] + {terms}"
        f"{imputed}"
    )


def _version(package: str) -> str:
    try:
        return version(package)
    except Exception:
        return "unknown"


def _netcdf_safe(attrs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in attrs.items():
        if isinstance(v, bool | np.bool_):
            out[k] = int(v)
        elif isinstance(v, list | tuple):
            out[k] = [float(x) if isinstance(x, float) else x for x in v]
        elif isinstance(v, str | int | float | np.integer | np.floating):
            out[k] = v
        else:
            out[k] = str(v)
    return out


def save_idata(idata: Any, path: Path) -> Path:
    """Write InferenceData to NetCDF atomically."""
    with atomic_path(path) as tmp:
        idata.to_netcdf(str(tmp), engine="h5netcdf", compress=False)
    return Path(path)
