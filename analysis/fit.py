"""The registry of fits run by ``make fit``, and the engine that samples them.

Layout of the outputs (``<out_dir>/fits/``):

* ``<name>.nc``: ArviZ InferenceData (NetCDF) with groups ``posterior`` (parameters and derived
  quantities, dims ``interval``, ``covariate``, ``pattern``, ``time``, ``cause``),
  ``sample_stats``, ``log_likelihood`` (dim ``patient``: each patient's log-likelihood summed over
  its intervals, so LOO leaves out a patient), ``observed_data``, ``constant_data`` and ``prior``
  (draws from the prior, for the prior predictive check). The ``posterior`` attributes describe the
  fit (end point, subset, n, events, cut points, priors, seed, sampler, package versions, timings).
* ``<name>.summary.csv``: the diagnostics summary (see :func:`analysis.diagnostics.summarize`).
* ``fit_log.csv``: per model, compile and sampling seconds and ESS per second.

Compile once per structure: models with the same structure (kind, number of covariate slots,
intervals, causes, priors) share one compiled nutpie model whose data are swapped with
``with_data``. Collapsed cells are laid on a fixed grid (intervals x all 0/1 covariate patterns;
empty cells have exposure 0 and add nothing), and a model with fewer covariates than its structure's
slots fills the spare slots with zeros: their coefficients do not enter the likelihood, their
posterior is their prior, independent of everything else, and they are dropped before saving.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
import time
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from analysis import cohort as ch
from analysis.atomic import atomic_path, write_text
from analysis.parallel import fork_starmap
from models.priors import Priors
from models.survival_data import (
    DEFAULT_CUTS,
    Cells,
    PersonPeriod,
    binary_patterns,
    check_cuts,
    collapse,
    crude_rate,
    expand,
    interval_labels,
)

CURVE_TIMES = np.arange(3.0, 121.0, 3.0)
"""Month grid of the survival and CIF curves in the registry fits (0 excluded: S(0) = 1)."""
RMST_HORIZON = 60.0
MEDIAN_CAP = 120.0
"""Median survival is reported capped at 10 years (beyond, the data say little)."""
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


@dataclass(frozen=True)
class FitData:
    """One data set ready to model (model-agnostic).

    Attributes
    ----------
    time, event
        Months (> 0) and event codes (0 censored; 1 event, or 1..K causes).
    x
        Covariates, shape ``(n, p)``, complete cases only.
    covariate_names
        Names of the columns of ``x``.
    cuts
        Interval starts (0 first).
    n_dropped
        Rows dropped for a missing covariate.
    slots
        Covariate slots of the model structure (``>= p``; spare slots are zero-filled).
    cause_names
        Competing risks: the name of each code 1..K; ``()`` for a single event type.
    curve_times
        Month grid of the derived curves.
    """

    time: np.ndarray
    event: np.ndarray
    x: np.ndarray
    covariate_names: tuple[str, ...]
    cuts: np.ndarray
    n_dropped: int = 0
    slots: int | None = None
    cause_names: tuple[str, ...] = ()
    curve_times: np.ndarray = field(default_factory=lambda: CURVE_TIMES.copy())

    @property
    def n(self) -> int:
        return int(self.time.size)

    @property
    def n_slots(self) -> int:
        return self.x.shape[1] if self.slots is None else self.slots

    @property
    def n_causes(self) -> int | None:
        return len(self.cause_names) or None

    @property
    def binary(self) -> bool:
        return bool(np.all(np.isin(self.x, (0.0, 1.0))))

    @property
    def slot_names(self) -> list[str]:
        spare = [f"_unused_{i}" for i in range(self.n_slots - len(self.covariate_names))]
        return [*self.covariate_names, *spare]

    def x_slots(self) -> np.ndarray:
        """Covariates padded with zero columns up to ``slots``."""
        pad = np.zeros((self.n, self.n_slots - self.x.shape[1]))
        return np.hstack([self.x, pad])

    def person_period(self, padded: bool = True) -> PersonPeriod:
        """Person-period rows; ``padded``: with the spare zero slots (as the model sees them)."""
        return expand(self.time, self.event, self.x_slots() if padded else self.x, self.cuts)

    def cells(self) -> Cells:
        """Collapsed cells: on the fixed grid of all 0/1 patterns when covariates are binary."""
        patterns = binary_patterns(self.n_slots) if self.binary and self.n_slots <= 6 else None
        return collapse(self.person_period(), len(self.cuts), patterns, self.n_causes)

    def log_rate_center(self) -> float:
        return float(np.log(crude_rate(self.time, self.event)))


def make_fit_data(
    time: np.ndarray,
    event: np.ndarray,
    covariates: dict[str, np.ndarray],
    *,
    cuts: Sequence[float] | None = None,
    slots: int | None = None,
    cause_names: Sequence[str] = (),
    curve_times: np.ndarray | None = None,
) -> FitData:
    """Complete cases of ``time``, ``event`` and named covariate arrays (NaN = missing)."""
    names = tuple(covariates)
    x = (
        np.column_stack([np.asarray(covariates[k], float) for k in names])
        if names
        else np.zeros((len(time), 0))
    )
    keep = ~np.isnan(x).any(axis=1)
    c = check_cuts(DEFAULT_CUTS if cuts is None else cuts)
    if slots is not None and slots < len(names):
        raise ValueError("slots must be at least the number of covariates")
    return FitData(
        time=np.asarray(time, float)[keep],
        event=np.asarray(event, int)[keep],
        x=x[keep],
        covariate_names=names,
        cuts=c,
        n_dropped=int((~keep).sum()),
        slots=slots,
        cause_names=tuple(cause_names),
        curve_times=CURVE_TIMES.copy() if curve_times is None else np.asarray(curve_times, float),
    )


def default_curve_times(time: np.ndarray, n: int = 40) -> np.ndarray:
    """A month grid of ``n`` points up to the longest follow-up (for user data)."""
    top = float(np.max(time))
    return np.linspace(top / n, top, n)


# --------------------------------------------------------------------------- model kinds


class PemKind:
    """The piecewise-exponential model of one event type (models/pem.py)."""

    name = "pem"

    def build(self, data: FitData, priors: Priors) -> Any:
        from models.pem import build_pem

        return build_pem(
            data.cells(),
            cuts=data.cuts,
            covariate_names=data.slot_names,
            log_rate_center=data.log_rate_center(),
            priors=priors,
        )

    def data_dict(self, data: FitData) -> dict[str, np.ndarray]:
        from models.pem import pem_data

        return pem_data(data.cells(), data.log_rate_center())

    def derived(self, post: xr.Dataset, data: FitData) -> xr.Dataset:
        """Survival curves, RMST at 60 months and capped median per covariate pattern."""
        from models.pem import linear_predictor, median_survival, rmst, survival_curves

        log_h0 = post["log_h0"].values
        beta = post["beta"].values if "beta" in post else None
        profiles, labels = curve_profiles(data)
        curves = survival_curves(log_h0, beta, profiles, data.cuts, data.curve_times)
        log_h = log_h0[..., None, :] + linear_predictor(beta, profiles)[..., :, None]
        dims = ("chain", "draw")
        coords = {"pattern": labels, "time": data.curve_times}
        return xr.Dataset(
            {
                "survival": ((*dims, "pattern", "time"), curves),
                "rmst_60": ((*dims, "pattern"), rmst(log_h, data.cuts, RMST_HORIZON)),
                "median_survival_capped": (
                    (*dims, "pattern"),
                    median_survival(log_h, data.cuts, MEDIAN_CAP),
                ),
            },
            coords=coords,
        )

    def loglik(self, post: xr.Dataset, data: FitData) -> np.ndarray:
        from models.pem import pointwise_loglik

        beta = post["beta"].values if "beta" in post else None
        pp = data.person_period(padded=False)
        return pointwise_loglik(post["log_h0"].values, beta, pp, data.n)

    def observed(self, data: FitData) -> dict[str, Any]:
        return {"event": (("patient",), (data.event > 0).astype(int))}


class CompetingKind:
    """Cause-specific PEMs of competing first events (models/competing.py)."""

    name = "competing"
    death_cause = "death_without_recurrence"

    def _centers(self, data: FitData) -> np.ndarray:
        from models.competing import cause_log_rates

        return cause_log_rates(data.time, data.event, len(data.cause_names))

    def build(self, data: FitData, priors: Priors) -> Any:
        from models.competing import build_competing

        return build_competing(
            data.cells(),
            cuts=data.cuts,
            covariate_names=data.slot_names,
            cause_names=data.cause_names,
            log_rate_center=self._centers(data),
            priors=priors,
        )

    def data_dict(self, data: FitData) -> dict[str, np.ndarray]:
        from models.competing import competing_data

        return competing_data(data.cells(), self._centers(data))

    def recurrence_causes(self, data: FitData) -> list[int]:
        """Indices of the causes that are recurrences (all but death without recurrence)."""
        return [k for k, c in enumerate(data.cause_names) if c != self.death_cause]

    def derived(self, post: xr.Dataset, data: FitData) -> xr.Dataset:
        """Standardised CIF per cause on the month grid, at 2 and 5 years, and net RFS."""
        from models.competing import standardized_cif, standardized_net_survival

        log_h0 = post["log_h0"].transpose(..., "cause", "interval").values
        beta = None
        if "beta" in post:
            beta = post["beta"].transpose(..., "covariate", "cause").values
        x = data.x
        times = data.curve_times
        cif = standardized_cif(log_h0, beta, x, data.cuts, times)
        at = standardized_cif(log_h0, beta, x, data.cuts, np.array([24.0, 60.0]))
        rec = self.recurrence_causes(data)
        rfs = standardized_net_survival(log_h0, beta, x, data.cuts, times, rec)
        dims = ("chain", "draw")
        ds = xr.Dataset(
            {
                "cif": ((*dims, "cause", "time"), cif),
                "cif_at": ((*dims, "cause", "horizon"), at),
                "recurrence_free_survival": ((*dims, "time"), rfs),
            },
            coords={"cause": list(data.cause_names), "time": times, "horizon": [24.0, 60.0]},
        )
        ds["cif"].attrs["meaning"] = "cumulative incidence, averaged over the patients' covariates"
        ds["recurrence_free_survival"].attrs["causes_counted"] = ",".join(
            data.cause_names[k] for k in rec
        )
        return ds

    def loglik(self, post: xr.Dataset, data: FitData) -> np.ndarray:
        from models.competing import pointwise_loglik

        log_h0 = post["log_h0"].transpose(..., "cause", "interval").values
        beta = None
        if "beta" in post:
            beta = post["beta"].transpose(..., "covariate", "cause").values
        return pointwise_loglik(log_h0, beta, data.person_period(padded=False), data.n)

    def observed(self, data: FitData) -> dict[str, Any]:
        return {"event": (("patient",), data.event.astype(int))}


KINDS: dict[str, Any] = {"pem": PemKind(), "competing": CompetingKind()}


def stored_names(model: Any) -> list[str]:
    """Variables kept in the posterior: the free parameters (on their own scale, not nutpie's
    unconstrained ``*_log__``) and the model's deterministics."""
    return [v.name for v in model.free_RVs] + [v.name for v in model.deterministics]


def curve_profiles(data: FitData) -> tuple[np.ndarray, list[str]]:
    """Covariate profiles for the curves: every 0/1 pattern of the covariates.

    Non-binary covariates: the reference (all zero) and each covariate at its mean.
    """
    p = len(data.covariate_names)
    if p == 0:
        return np.zeros((1, 0)), ["all"]
    if data.binary and p <= 4:
        pats = binary_patterns(p)
        labels = [
            ", ".join(f"{n}={int(v)}" for n, v in zip(data.covariate_names, row, strict=True))
            for row in pats
        ]
    else:
        pats = np.vstack([np.zeros(p), data.x.mean(axis=0)])
        labels = ["reference (all 0)", "covariate means"]
    return pats, labels


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


def structure_key(kind_name: str, data: FitData, priors: Priors) -> tuple:
    """Models with equal keys share one compiled model."""
    cells = data.cells()
    return (kind_name, data.n_slots, len(data.cuts), data.n_causes, priors, cells.exposure.size)


def compile_structure(kind_name: str, data: FitData, priors: Priors, sampler: str) -> Compiled:
    """Build the PyMC model for ``data`` and (nutpie) compile it; time the compilation."""
    kind = KINDS[kind_name]
    model = kind.build(data, priors)
    t0 = time.perf_counter()
    compiled = None
    if sampler == "nutpie":
        import nutpie

        compiled = nutpie.compile_pymc_model(model, var_names=stored_names(model))
    seconds = time.perf_counter() - t0
    return Compiled(
        key=structure_key(kind_name, data, priors),
        kind=kind,
        model=model,
        sampler=sampler,
        nutpie_model=compiled,
        compile_seconds=seconds,
    )


@dataclass
class FitResult:
    """An InferenceData and how long it took."""

    idata: Any
    compile_seconds: float
    sampling_seconds: float
    reused_compiled: bool


def fit_model(
    data: FitData,
    *,
    kind: str = "pem",
    priors: Priors | None = None,
    settings: SamplerSettings | None = None,
    compiled: Compiled | None = None,
    attrs: dict[str, Any] | None = None,
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

    Returns
    -------
    (FitResult, Compiled)
        The result, and the compiled structure for reuse with :func:`refit`. With PyMC's own
        sampler the (C backend, disk-cached) compilation happens inside ``pm.sample`` and is
        counted in the sampling seconds; ``compile_seconds`` is then 0.
    """
    priors = priors or Priors()
    settings = settings or SamplerSettings()
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
    idata = _finish(idata, kind_obj, data, priors, settings, compiled)
    prior = sample_prior(kind, data, priors, seed=settings.seed)
    idata.add_groups({"prior": prior})
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
        # nutpie's blocking call turns Ctrl-C into an early, partial trace; an interrupted fit
        # must stop instead, writing nothing
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
    with model, _interruptible() as interrupted:
        pm.set_data(compiled.kind.data_dict(data))
        try:
            idata = pm.sample(
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
        except Exception:
            if interrupted:
                raise KeyboardInterrupt from None
            raise
    if interrupted:
        raise KeyboardInterrupt
    return idata


@contextlib.contextmanager
def _interruptible() -> Iterator[list[int]]:
    """Record SIGINT/SIGTERM during PyMC sampling, which swallows KeyboardInterrupt and returns
    a partial trace (or fails building one): the caller re-raises, so nothing is written."""
    import signal
    import threading

    seen: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return

    def handler(signum: int, frame: object) -> None:
        seen.append(signum)
        raise KeyboardInterrupt

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield seen
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


def _finish(
    idata: Any,
    kind: Any,
    data: FitData,
    priors: Priors,
    settings: SamplerSettings,
    compiled: Compiled,
) -> Any:
    """Name the covariates, drop spare slots, add derived quantities and the other groups."""
    post = idata.posterior
    keep = stored_names(compiled.model)
    post = post[[v for v in keep if v in post]]
    post = _relabel(post, data)
    post = xr.merge([post, kind.derived(post, data)])
    ll = kind.loglik(post, data)
    n_cov = len(data.covariate_names)
    groups = {
        "log_likelihood": xr.Dataset(
            {"events": (("chain", "draw", "patient"), ll)},
            coords={"chain": post.chain, "draw": post.draw, "patient": np.arange(data.n)},
        ),
        "observed_data": xr.Dataset(kind.observed(data), coords={"patient": np.arange(data.n)}),
        "constant_data": _constant_data(data, n_cov),
    }
    stats = idata.sample_stats
    new = idata.__class__(posterior=post, sample_stats=stats)
    new.add_groups(groups)
    return new


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
    ds["exposure"].attrs["meaning"] = "months at risk per interval and covariate pattern"
    if n_cov:
        ds["x"] = (("patient", "covariate"), data.x)
        ds["pattern_x"] = (("cell_pattern", "covariate"), cells.x[:, :n_cov])
        ds = ds.assign_coords(covariate=list(data.covariate_names))
    if data.n_causes:
        ds["events"] = ((*grid, "cause"), cells.events)
        ds = ds.assign_coords(cause=list(data.cause_names))
    else:
        ds["events"] = (grid, cells.events)
    return ds


def sample_prior(kind: str, data: FitData, priors: Priors, seed: int) -> xr.Dataset:
    """Draws from the prior with the same derived quantities (prior predictive check)."""
    import pymc as pm

    kind_obj = KINDS[kind]
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
        "n": data.n,
        "n_dropped_missing_covariate": data.n_dropped,
        "events": int(np.sum(data.event > 0)),
        "cut_points_months": data.cuts.tolist(),
        "curve_times_months": data.curve_times.tolist(),
        "rmst_horizon_months": RMST_HORIZON,
        "median_cap_months": MEDIAN_CAP,
        "log_crude_rate_per_month": data.log_rate_center(),
        "priors": priors.describe(),
        **priors.as_attrs(),
        "sampler": settings.sampler,
        "draws": settings.draws,
        "tune": settings.tune,
        "chains": settings.chains,
        "seed": settings.seed,
        "target_accept": settings.target_accept,
        **{f"version_{p}": _version(p) for p in PACKAGES},
        "python": sys.version.split()[0],
    }
    if data.cause_names:
        attrs["causes"] = ",".join(f"{k + 1}={c}" for k, c in enumerate(data.cause_names))
        attrs["events_per_cause"] = [int(np.sum(data.event == k + 1)) for k in range(data.n_causes)]
    attrs.update({k: v for k, v in extra.items() if v is not None})
    for group in ("posterior", "sample_stats", "log_likelihood"):
        getattr(idata, group).attrs.update(_netcdf_safe(attrs))


def _describe(kind: str, data: FitData) -> str:
    cov = " + ".join(data.covariate_names) or "1"
    if kind == "pem":
        return (
            f"piecewise-exponential: log h(t | x) = log h0[interval] + x . beta; x = {cov}; "
            "Poisson likelihood on collapsed counts with log-exposure offset"
        )
    return f"cause-specific piecewise-exponential hazards; x = {cov}"


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


# --------------------------------------------------------------------------- the registry

COVARIATES: dict[str, Callable[[pd.DataFrame], np.ndarray]] = {
    "beta_catenin": lambda df: df["beta_catenin"].to_numpy(float),
    "igf1r": lambda df: df["igf1r"].to_numpy(float),
    "radiation": lambda df: ch.radiation_any(df).astype(float),
    "ivc_site": lambda df: (df["site"] == "ivc").to_numpy(float),
    "size_ge5cm": lambda df: df["size_ge5cm"].to_numpy(float),
    "margin_r2": lambda df: np.where(
        df["margin"].isna(), np.nan, (df["margin"] == "r2").astype(float)
    ),
    "chemotherapy": lambda df: (df["chemotherapy"] != "none").to_numpy(float),
    "adjuvant": lambda df: ch.adjuvant_any(df).astype(float),
}
"""Covariates the registry can use, each a 0/1 array (NaN = missing) from the cohort frame."""

ENDPOINTS: dict[str, Callable[[pd.DataFrame], tuple[np.ndarray, np.ndarray]]] = {
    "dss": ch.dss,
    "rfs": ch.rfs,
    "first_recurrence": ch.first_recurrence,
}
SUBSETS: dict[str, Callable[[pd.DataFrame], np.ndarray]] = {
    "all": lambda df: np.ones(len(df), dtype=bool),
    "tma": lambda df: (df["tma"] == 1).to_numpy(),
    "r0r1": ch.r0r1_resection,
}


@dataclass(frozen=True)
class FitSpec:
    """One registered fit.

    Attributes
    ----------
    name
        File stem of the outputs (``reports/fits/<name>.nc``).
    endpoint
        Key of ``ENDPOINTS`` (``dss``, ``rfs``, ``first_recurrence``).
    subset
        Key of ``SUBSETS`` (``all``: 63 patients; ``tma``: the 26 TMA patients).
    covariates
        Keys of ``COVARIATES``.
    builder
        Model kind: ``"pem"`` (models/pem.py) or ``"competing"`` (models/competing.py).
    priors
        Prior settings.
    slots
        Covariate slots of the compiled structure (so fits with fewer covariates share it).
    description
        What the fit reproduces.
    """

    name: str
    endpoint: str
    subset: str
    covariates: tuple[str, ...]
    builder: str = "pem"
    priors: Priors = field(default_factory=Priors)
    slots: int | None = None
    cuts: tuple[float, ...] = DEFAULT_CUTS
    description: str = ""


PEM_SLOTS = 2
"""All single-event registry fits share one compiled PEM with 2 covariate slots."""
COMPETING_SLOTS = 5
"""Both competing-risk fits share one compiled model with 5 covariate slots."""

REGISTRY: list[FitSpec] = [
    FitSpec(
        "dss_beta_catenin", "dss", "tma", ("beta_catenin",), slots=PEM_SLOTS,
        description="Table 2: disease-specific survival by cytoplasmic beta-catenin (26 TMA)",
    ),
    FitSpec(
        "dss_igf1r", "dss", "tma", ("igf1r",), slots=PEM_SLOTS,
        description="Table 2: disease-specific survival by IGF-1R (26 TMA)",
    ),
    FitSpec(
        "rfs_beta_catenin", "rfs", "tma", ("beta_catenin",), slots=PEM_SLOTS,
        description="Table 2: time to recurrence by cytoplasmic beta-catenin (26 TMA)",
    ),
    FitSpec(
        "rfs_igf1r", "rfs", "tma", ("igf1r",), slots=PEM_SLOTS,
        description="Table 2: time to recurrence by IGF-1R (26 TMA)",
    ),
    FitSpec(
        "dss_beta_catenin_igf1r", "dss", "tma", ("beta_catenin", "igf1r"), slots=PEM_SLOTS,
        description="Disease-specific survival, beta-catenin and IGF-1R jointly (26 TMA)",
    ),
    FitSpec(
        "dss_tma_none", "dss", "tma", (), slots=PEM_SLOTS,
        description="Disease-specific survival, no biomarker (26 TMA): null model of the LOO",
    ),
    FitSpec(
        "dss_radiation", "dss", "all", ("radiation",), slots=PEM_SLOTS,
        description="Disease-specific survival, surgery plus radiation vs not (63; paper HR 0.43)",
    ),
    FitSpec(
        "dss_adjuvant_r0r1", "dss", "r0r1", ("adjuvant",), slots=PEM_SLOTS,
        description=(
            "Disease-specific survival, adjuvant or neoadjuvant therapy vs surgery alone, "
            "R0/R1 resections (paper HR 2.13)"
        ),
    ),
    FitSpec(
        "dss_overall", "dss", "all", (), slots=PEM_SLOTS,
        description="Disease-specific survival, no covariate (63; paper KM 96% 1 y, 65% 5 y)",
    ),
    FitSpec(
        "competing_clinical", "first_recurrence", "all",
        ("ivc_site", "size_ge5cm", "margin_r2", "radiation", "chemotherapy"),
        builder="competing", slots=COMPETING_SLOTS,
        description=(
            "Type of first recurrence (local, distant, local and distant; death without "
            "recurrence competing): cause-specific hazards on clinical factors, complete cases"
        ),
    ),
    FitSpec(
        "competing_tma", "first_recurrence", "tma", ("beta_catenin", "igf1r"),
        builder="competing", slots=COMPETING_SLOTS,
        description="Type of first recurrence: cause-specific hazards on the biomarkers (26 TMA)",
    ),
]  # fmt: skip


def spec_data(spec: FitSpec, df: pd.DataFrame) -> FitData:
    """The FitData of a registry entry on the cohort frame ``df``."""
    sub = df.loc[SUBSETS[spec.subset](df)].reset_index(drop=True)
    t, e = ENDPOINTS[spec.endpoint](sub)
    covs = {c: COVARIATES[c](sub) for c in spec.covariates}
    causes: tuple[str, ...] = ()
    if spec.builder == "competing":
        present = [k for k in sorted(ch.CAUSES) if np.any(e == k)]
        causes = tuple(ch.CAUSES[k] for k in present)
        recode = {0: 0, **{k: i + 1 for i, k in enumerate(present)}}
        e = np.array([recode[int(v)] for v in e], dtype=int)
    return make_fit_data(t, e, covs, cuts=spec.cuts, slots=spec.slots, cause_names=causes)


def check_spec_data(spec: FitSpec, data: FitData, file: str) -> None:
    """Raise ``VlmsInputError`` if the cohort cannot inform ``spec`` (nothing is fitted then).

    No patients in the subset, no events in the end point, or a covariate that takes one value
    in the complete cases (its hazard ratio would be the prior's).
    """
    from analysis.errors import VlmsInputError

    where = f"model {spec.name} ({spec.endpoint}, subset {spec.subset})"
    if data.n == 0:
        raise VlmsInputError(f"{where}: no patients with complete data", file=file)
    if not np.any(data.event > 0):
        raise VlmsInputError(f"{where}: no events: nothing to estimate", file=file)
    for j, name in enumerate(data.covariate_names):
        if np.all(data.x[:, j] == data.x[0, j]):
            raise VlmsInputError(
                f"{where}: covariate takes a single value; no hazard ratio can be estimated",
                file=file,
                column=name,
            )


def spec_seed(base_seed: int, name: str) -> int:
    """A per-model seed: stable under adding or reordering registry entries."""
    return (int(base_seed) + zlib.crc32(name.encode())) % (2**31 - 1)


@dataclass
class LogEntry:
    """One line of the fit log."""

    name: str
    structure: str
    n: int
    events: int
    n_dropped: int
    compile_seconds: float
    sampling_seconds: float
    min_ess_bulk: float
    ess_per_second: float
    divergences: int


def run_registry(
    df: pd.DataFrame,
    out_dir: Path,
    settings: SamplerSettings,
    specs: Sequence[FitSpec] | None = None,
    log: Callable[[str], None] = print,
    workers: int = 2,
    source: str = "cohort",
) -> list[LogEntry]:
    """Fit ``specs`` (default: the whole registry) on the cohort ``df``; write the outputs.

    Models are grouped by structure; each group compiles its structure once and refits it with
    new data. Groups run in up to ``workers`` processes side by side (compilation is
    single-threaded, so two structures compile at once on two cores). Each model's seed depends
    only on the base seed and its name, so the results do not depend on the grouping.
    Returns the fit log (registry order). Raises ``VlmsInputError`` (``source`` names the
    cohort file) before fitting anything if a model cannot be informed by the data.
    """
    specs = list(REGISTRY if specs is None else specs)
    fits_dir = Path(out_dir) / "fits"
    datas = {s.name: spec_data(s, df) for s in specs}
    for spec in specs:
        check_spec_data(spec, datas[spec.name], source)
    groups: dict[tuple, list[tuple[int, FitSpec]]] = {}
    for i, spec in enumerate(specs, start=1):
        key = structure_key(spec.builder, datas[spec.name], spec.priors)
        groups.setdefault(key, []).append((i, spec))
    jobs = [(g, datas, len(specs), fits_dir, settings, log) for g in groups.values()]
    results = fork_starmap(_fit_group, jobs, workers)
    order = {s.name: i for i, s in enumerate(specs)}
    entries = sorted((e for r in results for e in r), key=lambda e: order[e.name])
    table = pd.DataFrame([dataclasses.asdict(e) for e in entries])
    write_text(fits_dir / "fit_log.csv", table.to_csv(index=False))
    return entries


def _fit_group(
    group: list[tuple[int, FitSpec]],
    datas: dict[str, FitData],
    total: int,
    fits_dir: Path,
    settings: SamplerSettings,
    log: Callable[[str], None],
) -> list[LogEntry]:
    """Fit the models of one structure (compiled once), writing each model's files."""
    from analysis import diagnostics

    compiled: Compiled | None = None
    entries: list[LogEntry] = []
    for i, spec in group:
        data = datas[spec.name]
        seeded = dataclasses.replace(settings, seed=spec_seed(settings.seed, spec.name))
        note = " (compiling its structure)" if compiled is None else ""
        events = int(np.sum(data.event > 0))
        log(f"[{i}/{total}] {spec.name}: n={data.n}, events={events}{note}")
        attrs = {
            "model_name": spec.name,
            "endpoint": spec.endpoint,
            "subset": spec.subset,
            "description": spec.description,
            "base_seed": settings.seed,
        }
        result, compiled = fit_model(
            data,
            kind=spec.builder,
            priors=spec.priors,
            settings=seeded,
            compiled=compiled,
            attrs=attrs,
        )
        save_idata(result.idata, fits_dir / f"{spec.name}.nc")
        summary = diagnostics.summarize(result.idata)
        with atomic_path(fits_dir / f"{spec.name}.summary.csv") as tmp:
            summary.to_csv(tmp)
        ok, details = diagnostics.passes_bar(result.idata, summary)
        min_ess = float(details["min_ess_bulk"])
        entry = LogEntry(
            name=spec.name,
            structure=f"{spec.builder}/{data.n_slots} slots/{len(data.cuts)} intervals",
            n=data.n,
            events=events,
            n_dropped=data.n_dropped,
            compile_seconds=round(result.compile_seconds, 2),
            sampling_seconds=round(result.sampling_seconds, 2),
            min_ess_bulk=round(min_ess, 0),
            ess_per_second=round(min_ess / max(result.sampling_seconds, 1e-9), 0),
            divergences=int(details["divergences"]),
        )
        entries.append(entry)
        log(
            f"[{i}/{total}] {spec.name}: compile {entry.compile_seconds:.1f} s, sampling "
            f"{entry.sampling_seconds:.2f} s, min bulk ESS {min_ess:.0f} "
            f"({entry.ess_per_second:.0f}/s), divergences {entry.divergences}, "
            f"bar {'met' if ok else 'MISSED'}"
        )
    return entries
