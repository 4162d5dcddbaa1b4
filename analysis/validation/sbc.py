"""Simulation-based calibration (SBC) of the PEM and the competing-risk model: ``vlms validate``.

For each simulation (Talts et al. 2018; Modrak et al. 2023): draw the parameters from the prior,
simulate a cohort of the paper's size with the independent simulator
(:mod:`analysis.validation.simulate`,
which does not use ``models/``), refit the model, and record the rank of each true value among
``L`` thinned posterior draws. If the model's prior and likelihood match the simulator, each rank
is uniform on ``0..L``. Reported per parameter: the ranks' ECDF difference plot with a
simultaneous 95% band (Säilynoja, Bürkner and Vehtari 2022), a rank histogram, two uniformity
tests (the simultaneous ECDF test and a chi-square test on 10 bins), and the coverage of the
central 50% and 90% posterior intervals.

The prior must not depend on the data for SBC to be valid: the registry fits centre the baseline
on each cohort's crude event rate, so here the centre is fixed (``log_rate_center`` of the
configuration) and passed to the compiled model in place of the data-based one.

Refits reuse one compiled model per worker process (nutpie's data swapping): each simulation is
a task, run by a local Dask cluster of processes (``--workers``) or by the Dask scheduler at
``--scheduler``; ``--workers 0`` runs in this process. A fit that misses the diagnostics bar
(:func:`analysis.inference.diagnostics.passes_bar`) is refitted with the remedies of ``vlms
fit`` (:mod:`analysis.inference.remedies`; ``--no-remedies``: not), and the ranks come from the
fit a user would get (the first to meet the bar, else the closest to it). The report counts the
fits that missed the bar at the first attempt and after the remedies; fits that still miss it
stay in the ranks and are listed; a simulation whose fit raises is reported with its error.

Outputs (``<out-dir>/validation/``): ``sbc.md``, ``sbc.json``, ``ranks_<model>.csv``,
``sbc_ecdf_<model>.png``, ``sbc_hist_<model>.png``.
"""

from __future__ import annotations

import argparse
import io
import math
import sys
import time
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from analysis.core.atomic import atomic_path, write_json, write_text
from analysis.core.errors import VlmsInputError
from analysis.core.parallel import as_finished, stall_seconds
from analysis.inference.engine import SamplerSettings, nutpie_sample
from analysis.inference.remedies import fit_with_remedies, ladder
from analysis.validation import simulate as simulate

DEFAULT_CUTS: tuple[float, ...] = (0.0, 6.0, 12.0, 24.0, 36.0, 60.0, 84.0, 120.0)
"""The registry's interval starts (``models.survival_data.DEFAULT_CUTS``), repeated here so that
the simulator side does not import ``models``; a test checks they agree."""
LOG_RATE_CENTER = math.log(0.007)
"""Fixed centre of the baseline prior: 0.7% per month, about 65% survival at 5 years."""
CAUSE_SHARES = (0.25, 0.45, 0.15, 0.15)
"""Competing model: fixed prior centres of the four first-event causes, as shares of the centre
rate (local, distant, local and distant, death without recurrence)."""
RANK_DRAWS = 99
"""``L``: thinned posterior draws per simulation; ranks take ``L + 1 = 100`` values."""
HIST_BINS = 10
ALPHA = 0.05
P_FLAG = 0.01
"""A parameter is flagged when a uniformity test gives p < P_FLAG."""
ECDF_MC = 4000
"""Monte Carlo sets of uniform ranks used to calibrate the simultaneous ECDF band and test."""


@dataclass(frozen=True)
class SbcModel:
    """One model structure to calibrate.

    Attributes
    ----------
    name
        Label in reports and file names.
    kind
        ``"pem"`` or ``"competing"`` (``analysis.inference.kinds.KINDS``).
    n
        Patients per simulated cohort.
    prevalences
        Prevalence of each binary covariate (one per covariate).
    causes
        Competing risks: the cause names (codes 1..K).
    description
        One line for the report.
    """

    name: str
    kind: str
    n: int
    prevalences: tuple[float, ...]
    causes: tuple[str, ...] = ()
    cuts: tuple[float, ...] = DEFAULT_CUTS
    description: str = ""

    @property
    def covariate_names(self) -> tuple[str, ...]:
        return tuple(f"x{i + 1}" for i in range(len(self.prevalences)))

    def centers(self) -> np.ndarray:
        """The fixed prior centre(s) of the log baseline hazard."""
        if self.kind == "pem":
            return np.asarray(LOG_RATE_CENTER)
        shares = np.asarray(CAUSE_SHARES[: len(self.causes)], float)
        return LOG_RATE_CENTER + np.log(shares)


MODELS: dict[str, SbcModel] = {
    m.name: m
    for m in (
        SbcModel(
            "pem_tma",
            "pem",
            n=26,
            prevalences=(0.5, 0.4),
            description="PEM of the Table 2 fits: 26 patients (the TMA subset), 2 binary "
            "covariates, 8 intervals",
        ),
        SbcModel(
            "pem_all",
            "pem",
            n=63,
            prevalences=(0.3, 0.5),
            description="PEM on the whole cohort: 63 patients, 2 binary covariates, 8 intervals",
        ),
        SbcModel(
            "competing",
            "competing",
            n=63,
            prevalences=(0.5, 0.4),
            causes=("local", "distant", "local_distant", "death_without_recurrence"),
            description="Cause-specific PEM of the first event: 63 patients, 4 causes, "
            "2 binary covariates, 8 intervals",
        ),
    )
}
DEFAULT_MODELS = ("pem_tma", "competing")


@dataclass(frozen=True)
class SbcSettings(SamplerSettings):
    """Sampler settings of every refit (defaults as ``vlms fit --data``: 1000 draws after 1000
    warm-up iterations, more warm-up than the registry's cohort fits take with nutpie; the seed
    is per simulation),
    how many posterior draws each rank is computed from, and whether a fit that misses the bar
    is refitted with the remedies of ``vlms fit`` (:mod:`analysis.inference.remedies`)."""

    rank_draws: int = RANK_DRAWS
    remedies: bool = True


# --------------------------------------------------------------------------- prior draws


def draw_truth(model: SbcModel, priors: Any, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Parameters from the prior (independent NumPy implementation of the documented prior)."""
    n_int = len(model.cuts)
    p = len(model.prevalences)
    if model.kind == "pem":
        return simulate.draw_pem_parameters(rng, priors, n_int, p, float(model.centers()))
    return draw_competing_parameters(rng, priors, model.centers(), n_int, p)


def draw_competing_parameters(
    rng: np.random.Generator,
    priors: Any,
    centers: np.ndarray,
    n_intervals: int,
    n_covariates: int,
) -> dict[str, np.ndarray]:
    """The competing-risk prior (``models/competing.py``'s documented specification).

    ``log_h0[k, j] = centre_k + level_sd * z_k + shared walk_j + cause walk_kj``: a shared
    random walk with step sd ``rw_sigma ~ HalfNormal(step_scale)`` and per-cause walks with step
    sd ``cause_rw_sigma ~ HalfNormal(cause_step_scale)``. Effects, per covariate ``p``:
    ``beta[p, k] = sd * (sqrt(rho_p) * c_p + sqrt(1 - rho_p) * z_pk)``, ``rho_p ~ Beta(2, 2)``,
    ``c_p`` from the effect family with unit scale, ``z_pk ~ Normal(0, 1)``.
    """
    k = centers.size
    start = centers + priors.level_sd * rng.normal(size=k)
    out: dict[str, np.ndarray] = {}
    path = np.zeros(n_intervals)
    cause_path = np.zeros((k, n_intervals))
    if n_intervals > 1:
        sigma = abs(rng.normal(0.0, priors.step_scale))
        path[1:] = np.cumsum(sigma * rng.normal(size=n_intervals - 1))
        out["rw_sigma"] = np.asarray(sigma)
        if k > 1:
            c_sigma = abs(rng.normal(0.0, priors.cause_step_scale))
            cause_path[:, 1:] = np.cumsum(c_sigma * rng.normal(size=(k, n_intervals - 1)), axis=1)
            out["cause_rw_sigma"] = np.asarray(c_sigma)
    out["log_h0"] = start[:, None] + path[None, :] + cause_path
    if n_covariates:
        if k == 1:
            out["beta"] = simulate.draw_effects(rng, priors, (n_covariates, 1))
        else:
            rho = rng.beta(2.0, 2.0, n_covariates)
            common = simulate.draw_effects(rng, replace(priors, effect_sd=1.0), n_covariates)
            own = rng.normal(size=(n_covariates, k))
            out["beta"] = priors.effect_sd * (
                np.sqrt(rho)[:, None] * common[:, None] + np.sqrt(1.0 - rho)[:, None] * own
            )
            out["effect_rho"] = rho
    return out


def simulate_cohort(
    model: SbcModel, truth: dict[str, np.ndarray], rng: np.random.Generator
) -> simulate.Cohort:
    """A cohort of ``model.n`` patients from the true parameters."""
    x = simulate.binary_covariates(rng, model.n, model.prevalences)
    cuts = np.asarray(model.cuts)
    if model.kind == "pem":
        return simulate.simulate_pem(rng, truth["log_h0"], truth.get("beta"), x, cuts)
    lh = np.broadcast_to(truth["log_h0"], (model.n, *truth["log_h0"].shape)).copy()
    if "beta" in truth:
        lh = lh + (x @ truth["beta"])[:, :, None]  # (n, K) -> (n, K, J)
    return simulate.simulate_competing(rng, lh, cuts, x)


# --------------------------------------------------------------------------- refits (workers)

_COMPILED: dict[tuple, Any] = {}
"""Per-process cache: one compiled model per (model, sampler, settings)."""


def _fit_data(model: SbcModel, cohort: simulate.Cohort) -> Any:
    from analysis.inference.data import make_fit_data

    covs = {name: cohort.x[:, i] for i, name in enumerate(model.covariate_names)}
    return make_fit_data(
        cohort.time,
        cohort.event,
        covs,
        cuts=model.cuts,
        cause_names=model.causes,
        curve_times=np.array([12.0]),
    )


def _compiled(model: SbcModel, data: Any, priors: Any, settings: SbcSettings) -> Any:
    from analysis.inference.engine import compile_structure

    key = (model, settings.sampler, priors)
    if key not in _COMPILED:
        _COMPILED[key] = compile_structure(model.kind, data, priors, settings.sampler)
    return _COMPILED[key]


def _sample(compiled: Any, data: Any, model: SbcModel, settings: SbcSettings, seed: int) -> Any:
    """Sample the compiled model on ``data`` with the fixed prior centre."""
    values = compiled.kind.data_dict(data)
    values["log_rate_center"] = np.asarray(model.centers(), float)
    if settings.sampler == "nutpie":
        return nutpie_sample(
            compiled.nutpie_model.with_data(**values),
            replace(settings, seed=seed, progress=False),
            cores=1,
        )
    import pymc as pm

    with compiled.model:
        pm.set_data(values)
        return pm.sample(
            draws=settings.draws,
            tune=settings.tune,
            chains=settings.chains,
            cores=1,
            random_seed=seed,
            target_accept=settings.target_accept,
            progressbar=False,
            compute_convergence_checks=False,
        )


def flatten_parameters(values: dict[str, np.ndarray], labels: dict[str, list[str]]) -> dict:
    """``{"beta[x1, local]": value, ...}`` from arrays and the labels of their dims."""
    out: dict[str, Any] = {}
    for name, arr in values.items():
        a = np.asarray(arr)
        if a.ndim == 0:
            out[name] = a
            continue
        dim_labels = labels[name]
        for idx in np.ndindex(*a.shape):
            key = ", ".join(str(dim_labels[d][i]) for d, i in enumerate(idx))
            out[f"{name}[{key}]"] = a[idx]
    return out


def _labels(model: SbcModel) -> dict[str, list[list[str]]]:
    from analysis.inference.engine import interval_labels

    intervals = interval_labels(np.asarray(model.cuts))
    covs = list(model.covariate_names)
    causes = list(model.causes)
    if model.kind == "pem":
        return {"log_h0": [intervals], "beta": [covs]}
    return {"log_h0": [causes, intervals], "beta": [covs, causes], "effect_rho": [covs]}


def _posterior_draws(idata: Any, names: Sequence[str], model: SbcModel) -> dict[str, np.ndarray]:
    """Posterior draws (chain and draw pooled on the first axis) in the truth's layout."""
    post = idata.posterior
    out = {}
    for name in names:
        da = post[name]
        if model.kind == "competing" and name == "log_h0":
            da = da.transpose("chain", "draw", "cause", "interval")
        elif model.kind == "competing" and name == "beta":
            da = da.transpose("chain", "draw", "covariate", "cause")
        v = da.values
        out[name] = v.reshape(-1, *v.shape[2:])
    return out


def rank_statistics(
    truth: dict[str, Any], draws: dict[str, np.ndarray], n_rank: int
) -> dict[str, dict[str, float]]:
    """Per scalar parameter: rank among ``n_rank`` evenly thinned draws, and interval coverage.

    Returns ``{label: {"rank", "in50", "in90", "post_sd"}}``; ``rank`` counts thinned draws
    below the true value (0..n_rank); ``in50``/``in90``: the true value lies in the central
    50%/90% interval of all the draws.
    """
    out: dict[str, dict[str, float]] = {}
    for label, value in truth.items():
        d = draws[label]
        idx = np.linspace(0, d.size - 1, n_rank).round().astype(int)
        lo50, hi50, lo90, hi90 = np.quantile(d, [0.25, 0.75, 0.05, 0.95])
        out[label] = {
            "rank": int(np.sum(d[idx] < value)),
            "in50": float(lo50 <= value <= hi50),
            "in90": float(lo90 <= value <= hi90),
            "post_sd": float(np.std(d)),
        }
    return out


def run_simulation(
    model: SbcModel, sim: int, base_seed: int, settings: SbcSettings, priors: Any
) -> dict[str, Any]:
    """One SBC simulation: prior draw, cohort, refit, ranks and diagnostics (a JSON-able dict)."""
    from analysis.inference import diagnostics as diagnostics

    t0 = time.perf_counter()
    seeds = np.random.SeedSequence([base_seed, zlib.crc32(model.name.encode()), sim]).spawn(3)
    rng_prior, rng_data, rng_fit = (np.random.default_rng(s) for s in seeds)
    truth = draw_truth(model, priors, rng_prior)
    cohort = simulate_cohort(model, truth, rng_data)
    record: dict[str, Any] = {
        "sim": sim,
        "events": int(np.sum(cohort.event > 0)),
        "ok": False,
        "error": None,
    }
    try:
        data = _fit_data(model, cohort)
        seed = int(rng_fit.integers(2**31 - 1))

        def run(s: SbcSettings, p: Any) -> Any:
            return _sample(_compiled(model, data, p, s), data, model, s, seed)

        idata, attempts = fit_with_remedies(
            run, diagnostics.passes_bar, settings, priors, remedies=ladder(settings.remedies)
        )
        names = list(truth)
        draws = _posterior_draws(idata, names, model)
        labels = _labels(model)
        flat_truth = flatten_parameters(truth, labels)
        flat_draws = {
            k: np.asarray(v) for k, v in _flatten_draws(draws, labels).items() if k in flat_truth
        }
        record["params"] = rank_statistics(flat_truth, flat_draws, settings.rank_draws)
        first, shown = attempts[0], next(a for a in attempts if a.reported)
        record.update(
            ok=shown.meets_bar,
            ok_first=first.meets_bar,
            remedies=[a.remedy for a in attempts[1:]],
            divergences=shown.divergences,
            max_rhat=shown.max_rhat,
            min_ess_bulk=shown.min_ess_bulk,
            min_ess_tail=shown.min_ess_tail,
            attempts=[a.as_dict() for a in attempts],
        )
    except Exception as exc:  # reported per simulation, never dropped silently
        record["error"] = f"{type(exc).__name__}: {exc}"[:300]
    record["seconds"] = round(time.perf_counter() - t0, 3)
    return record


def _flatten_draws(draws: dict[str, np.ndarray], labels: dict) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, arr in draws.items():
        if arr.ndim == 1:
            out[name] = arr
            continue
        for idx in np.ndindex(*arr.shape[1:]):
            key = ", ".join(str(labels[name][d][i]) for d, i in enumerate(idx))
            out[f"{name}[{key}]"] = arr[(slice(None), *idx)]
    return out


def run_chunk(
    model_name: str, sims: Sequence[int], base_seed: int, settings: dict, priors: dict
) -> list[dict[str, Any]]:
    """Run simulations ``sims`` of one model (a Dask task; compiles once per worker process)."""
    warnings.filterwarnings("ignore", message=".*ArviZ is undergoing a major refactor.*")
    import logging

    logging.getLogger("pymc").setLevel(logging.ERROR)
    from models.priors import Priors

    model = MODELS[model_name]
    sbc = SbcSettings(**settings)
    pri = Priors(**priors)
    return [run_simulation(model, int(s), base_seed, sbc, pri) for s in sims]


# --------------------------------------------------------------------------- rank analysis


def chi2_uniformity(ranks: np.ndarray, n_rank: int, bins: int = HIST_BINS) -> tuple[float, float]:
    """Chi-square test of uniform ranks on ``0..n_rank`` in ``bins`` equal bins."""
    counts = rank_histogram(ranks, n_rank, bins)
    res = stats.chisquare(counts)
    return float(res.statistic), float(res.pvalue)


def rank_histogram(ranks: np.ndarray, n_rank: int, bins: int = HIST_BINS) -> np.ndarray:
    """Counts of ranks in ``bins`` bins of equal width on ``0..n_rank``."""
    values = n_rank + 1
    edges = np.linspace(0, values, bins + 1)
    counts, _ = np.histogram(np.asarray(ranks) + 0.5, bins=edges)
    return counts


def ecdf_counts(ranks: np.ndarray, n_rank: int) -> np.ndarray:
    """``c_k = #{rank < k}`` for ``k = 1..n_rank`` (ranks on ``0..n_rank``)."""
    r = np.asarray(ranks, int)
    return np.searchsorted(np.sort(r), np.arange(1, n_rank + 1), side="left")


def _min_tail_prob(counts: np.ndarray, n: int, z: np.ndarray) -> np.ndarray:
    """Smallest two-sided binomial tail probability over the grid (last axis)."""
    lower = stats.binom.cdf(counts, n, z)
    upper = stats.binom.sf(counts - 1, n, z)
    return np.minimum(1.0, 2.0 * np.minimum(lower, upper)).min(axis=-1)


@dataclass(frozen=True)
class EcdfBand:
    """Simultaneous band of the rank ECDF under uniformity, and the null of the test statistic.

    ``z``: grid ``k / (L + 1)``; ``lower``/``upper``: band of the ECDF at ``z``; ``gamma``: the
    pointwise level giving simultaneous coverage ``1 - alpha``; ``null``: the Monte Carlo null
    distribution of the smallest pointwise tail probability.
    """

    n: int
    n_rank: int
    z: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    gamma: float
    null: np.ndarray = field(repr=False)


def ecdf_band(
    n: int, n_rank: int, alpha: float = ALPHA, n_mc: int = ECDF_MC, seed: int = 0
) -> EcdfBand:
    """Simultaneous ``1 - alpha`` band for the ECDF of ``n`` uniform ranks on ``0..n_rank``.

    Säilynoja, Bürkner and Vehtari (2022): pointwise binomial intervals at level ``gamma``,
    with ``gamma`` chosen by simulation so that a uniform sample stays inside all of them
    with probability ``1 - alpha``.
    """
    rng = np.random.default_rng(seed)
    z = np.arange(1, n_rank + 1) / (n_rank + 1)
    sims = rng.integers(0, n_rank + 1, size=(n_mc, n))
    sims.sort(axis=1)
    counts = np.stack([np.searchsorted(s, np.arange(1, n_rank + 1)) for s in sims])
    null = _min_tail_prob(counts, n, z[None, :])
    gamma = float(np.quantile(null, alpha))
    lower = stats.binom.ppf(gamma / 2, n, z) / n
    upper = stats.binom.ppf(1 - gamma / 2, n, z) / n
    return EcdfBand(n=n, n_rank=n_rank, z=z, lower=lower, upper=upper, gamma=gamma, null=null)


def ecdf_test(ranks: np.ndarray, band: EcdfBand) -> float:
    """P-value of the simultaneous ECDF test: share of uniform samples at least as extreme."""
    stat = _min_tail_prob(ecdf_counts(ranks, band.n_rank), band.n, band.z)
    return float((np.sum(band.null <= stat) + 1) / (band.null.size + 1))


def coverage(flags: np.ndarray) -> dict[str, float]:
    """Share of simulations covered, with a 95% Clopper-Pearson interval."""
    k, n = int(np.sum(flags)), int(np.size(flags))
    ci = stats.binomtest(k, n).proportion_ci(0.95) if n else None
    return {
        "rate": k / n if n else float("nan"),
        "lower": float(ci.low) if ci else float("nan"),
        "upper": float(ci.high) if ci else float("nan"),
    }


def summarize_parameter(ranks: np.ndarray, in50: np.ndarray, in90: np.ndarray, band: EcdfBand,
                        n_rank: int) -> dict[str, Any]:  # fmt: skip
    """Uniformity tests, coverage and the verdict of one parameter."""
    chi2, p_chi2 = chi2_uniformity(ranks, n_rank)
    p_ecdf = ecdf_test(ranks, band)
    c50, c90 = coverage(in50), coverage(in90)
    uniform = p_ecdf >= P_FLAG and p_chi2 >= P_FLAG
    covers = c50["lower"] <= 0.5 <= c50["upper"] and c90["lower"] <= 0.9 <= c90["upper"]
    return {
        "n": int(ranks.size),
        "p_ecdf": p_ecdf,
        "p_chi2": p_chi2,
        "chi2": chi2,
        "coverage50": c50,
        "coverage90": c90,
        "verdict": "calibrated" if uniform and covers else ("not uniform" if not uniform
                                                             else "coverage off"),
    }  # fmt: skip


def analyse(records: list[dict[str, Any]], n_rank: int, seed: int = 0) -> dict[str, Any]:
    """Per parameter summaries over the simulations that produced ranks."""
    done = [r for r in records if r.get("params")]
    if not done:
        return {"parameters": {}, "band": None}
    labels = list(done[0]["params"])
    band = ecdf_band(len(done), n_rank, seed=seed)
    params = {}
    for label in labels:
        ranks = np.array([r["params"][label]["rank"] for r in done])
        in50 = np.array([r["params"][label]["in50"] for r in done])
        in90 = np.array([r["params"][label]["in90"] for r in done])
        params[label] = summarize_parameter(ranks, in50, in90, band, n_rank)
    return {"parameters": params, "band": band}


# --------------------------------------------------------------------------- running


def chunks(n_sims: int, n_chunks: int) -> list[list[int]]:
    """Split simulation ids ``0..n_sims-1`` into at most ``n_chunks`` contiguous chunks."""
    n_chunks = max(1, min(n_chunks, n_sims))
    return [list(c) for c in np.array_split(np.arange(n_sims), n_chunks) if c.size]


WORKER_CLOSE_SECONDS = 60.0
"""How long each local worker process gets to exit on its own after a successful run (a process
that has imported PyMC takes a few seconds to shut down; Dask's own limit, 4 s, kills it)."""


def run_sbc(
    model_names: Sequence[str],
    n_sims: int,
    base_seed: int,
    settings: SbcSettings,
    priors: Any,
    *,
    workers: int = 2,
    scheduler: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, list[dict[str, Any]]]:
    """Run the simulations of each model; returns the records per model, sorted by sim id.

    With Dask, each simulation is a task of its own, so that every finished simulation is a
    sign of progress: if none finishes for ``VLMS_STALL_SECONDS``
    (:func:`analysis.core.parallel.stall_seconds`), :class:`~analysis.core.parallel.StalledError`
    is raised. Local workers run with default signal handling and, after a successful run, are
    closed and waited for.
    """
    prior_dict = asdict(priors)
    setting_dict = asdict(settings)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in model_names}
    if scheduler is None and workers <= 0:
        for name in model_names:
            for sims in chunks(n_sims, max(1, workers) * 4):
                results[name] += run_chunk(name, sims, base_seed, setting_dict, prior_dict)
                log(f"  {name}: {len(results[name])}/{n_sims} simulations")
        return {name: sorted(recs, key=lambda r: r["sim"]) for name, recs in results.items()}
    from distributed import Client, LocalCluster

    limit = stall_seconds()
    cluster = None
    if scheduler is None:
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            memory_limit=0,
        )
    client = Client(scheduler if scheduler is not None else cluster)
    finished = False
    try:
        if cluster is not None:
            client.register_plugin(_default_signals_plugin())
        pending = {
            client.submit(
                run_chunk, name, [sim], base_seed, setting_dict, prior_dict, pure=False
            ): name
            for name in model_names
            for sim in range(n_sims)
        }
        for fut, name in as_finished(pending, limit, what="simulation"):
            results[name] += fut.result()
            log(f"  {name}: {len(results[name])}/{n_sims} simulations")
        finished = True
    finally:
        _shutdown(client, cluster, finished)
    return {name: sorted(recs, key=lambda r: r["sim"]) for name, recs in results.items()}


def _default_signals_plugin() -> Any:
    """A Dask worker plugin: SIGINT at its default disposition (the process ends) in each worker
    (SIGTERM is at its default already: workers are started afresh, not forked)."""
    from distributed import WorkerPlugin

    class DefaultSignals(WorkerPlugin):
        def setup(self, worker: Any) -> None:
            import signal
            import threading

            # the worker's asyncio runner handles SIGINT by closing the worker slowly and
            # noisily; a Ctrl-C meant for the whole command ends it at once instead
            in_main = threading.current_thread() is threading.main_thread()
            if in_main and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
                signal.signal(signal.SIGINT, signal.SIG_DFL)

    return DefaultSignals()


def _shutdown(client: Any, cluster: Any, finished: bool) -> None:
    """Close the client and the local cluster: after success, let each worker exit on its own;
    after an interrupt or an error, stop them at once, without Dask's shutdown log."""
    import asyncio
    import logging

    if not finished:
        logging.getLogger("distributed").setLevel(logging.CRITICAL)
    client.close()
    if cluster is None:
        return
    if finished:

        async def close_workers() -> None:
            nannies = list(cluster.workers.values())
            await asyncio.gather(*(n.close(timeout=WORKER_CLOSE_SECONDS) for n in nannies))

        cluster.sync(close_workers)
    cluster.close()


# --------------------------------------------------------------------------- reports


def plot_ecdf(model: str, records: list[dict], analysis: dict, path: Path) -> Path:
    """ECDF difference (ECDF minus uniform CDF) of each parameter's ranks with the 95% band."""
    band: EcdfBand = analysis["band"]
    labels = list(analysis["parameters"])
    done = [r for r in records if r.get("params")]

    def draw(ax: Any, label: str) -> None:
        ranks = np.array([r["params"][label]["rank"] for r in done])
        diff = ecdf_counts(ranks, band.n_rank) / band.n - band.z
        ax.fill_between(band.z, band.lower - band.z, band.upper - band.z, color="0.85", step="mid")
        ax.plot(band.z, diff, color="C0" if analysis["parameters"][label]["p_ecdf"] >= P_FLAG
                else "C3", lw=1)  # fmt: skip
        ax.axhline(0, color="0.4", lw=0.5)

    return _grid_figure(labels, draw, f"SBC rank ECDF difference with 95% simultaneous band: "
                        f"{model} ({band.n} simulations)", path)  # fmt: skip


def plot_hist(model: str, records: list[dict], analysis: dict, n_rank: int, path: Path) -> Path:
    """Rank histograms (10 bins) with the pointwise 99% binomial range of a uniform bin."""
    done = [r for r in records if r.get("params")]
    n = len(done)
    lo, hi = stats.binom.ppf([0.005, 0.995], n, 1 / HIST_BINS)

    def draw(ax: Any, label: str) -> None:
        counts = rank_histogram(np.array([r["params"][label]["rank"] for r in done]), n_rank)
        ax.axhspan(lo, hi, color="0.85")
        ax.bar(np.arange(HIST_BINS), counts, width=0.9, color="C0")
        ax.set_xticks([])

    return _grid_figure(list(analysis["parameters"]), draw,
                        f"SBC rank histograms: {model} ({n} simulations)", path)  # fmt: skip


def _grid_figure(labels: list[str], draw: Callable[[Any, str], None], title: str,
                 path: Path) -> Path:  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(6, len(labels))
    rows = math.ceil(len(labels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 1.9 * rows), squeeze=False)
    for ax, label in zip(axes.ravel(), labels, strict=False):
        draw(ax, label)
        ax.set_title(label, fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes.ravel()[len(labels) :]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
    return Path(path)


def failure_summary(records: list[dict]) -> dict[str, Any]:
    """Counts of the simulations that missed the bar, by reason, and the errors."""
    errors = [r for r in records if r.get("error")]
    fitted = [r for r in records if not r.get("error")]
    missed = [r for r in fitted if not r["ok"]]
    used: dict[str, int] = {}
    for r in fitted:
        for name in r.get("remedies", []):
            used[name] = used.get(name, 0) + 1
    return {
        "simulations": len(records),
        "fitted": len(fitted),
        "errors": len(errors),
        "error_messages": sorted({r["error"] for r in errors})[:10],
        "missed_bar_first_attempt": sum(not r.get("ok_first", r["ok"]) for r in fitted),
        "remedies_used": used,
        "missed_bar": len(missed),
        "with_divergences": sum(r["divergences"] > 0 for r in fitted),
        "rhat_above": sum(r["max_rhat"] > 1.01 for r in fitted),
        "ess_below": sum(min(r["min_ess_bulk"], r["min_ess_tail"]) < 400 for r in fitted),
        "missed_sims": [r["sim"] for r in missed][:50],
        "seconds_median": float(np.median([r["seconds"] for r in records])) if records else 0.0,
    }


def ranks_csv(records: list[dict]) -> str:
    """One row per simulation: id, events, bar, and the rank of each parameter."""
    import pandas as pd

    rows = []
    for r in records:
        row = {"sim": r["sim"], "events": r["events"], "meets_bar": int(bool(r.get("ok")))}
        for label, s in (r.get("params") or {}).items():
            row[label] = s["rank"]
        rows.append(row)
    return pd.DataFrame(rows).to_csv(index=False)


def _remedy_counts(used: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in used.items()) or "none"


def _fmt_cov(c: dict[str, float]) -> str:
    return f"{c['rate']:.2f} ({c['lower']:.2f}-{c['upper']:.2f})"


def markdown(doc: dict[str, Any]) -> str:
    """The human-readable SBC report."""
    s = doc["settings"]
    lines = [
        "# Simulation-based calibration",
        "",
        f"{s['simulations']} simulations per model, seed {doc['seed']}; each refit: "
        f"{s['sampler']}, {s['chains']} chains x {s['draws']} draws ({s['tune']} tuning), "
        f"target_accept {s['target_accept']}. Ranks among L = {s['rank_draws']} thinned draws "
        f"(values 0..{s['rank_draws']}). Priors: {doc['priors']}; the baseline centre is fixed "
        f"(log {math.exp(LOG_RATE_CENTER):.4f}/month) instead of the cohort's crude rate, so "
        "that the prior does not depend on the data. Cohorts from "
        "`analysis/validation/simulate.py` "
        f"(independent of `models/`), censoring uniform on {simulate.CENSOR_LOW:g}-"
        f"{simulate.CENSOR_HIGH:g} months.",
        "",
        f"Verdict per parameter: *calibrated* when both uniformity tests give p >= {P_FLAG} "
        "(simultaneous ECDF test, chi-square on 10 bins) and the 95% intervals of the 50% and "
        "90% coverage contain 0.5 and 0.9. These are four checks per parameter (two tests at "
        "the 1% level, two 95% intervals): even a perfectly calibrated model has up to about one "
        "parameter in ten flagged by chance, so look for patterns (a family of parameters, a "
        "shape in the ECDF plots), not single flags.",
        "",
    ]
    for name, block in doc["models"].items():
        f = block["failures"]
        lines += [
            f"## {name}",
            "",
            block["description"],
            "",
            f"Simulations: {f['simulations']}; fitted {f['fitted']}; errors {f['errors']}; "
            f"missed the diagnostics bar at the first attempt: "
            f"{f.get('missed_bar_first_attempt', f['missed_bar'])}; remedies used: "
            f"{_remedy_counts(f.get('remedies_used', {}))}; missed the bar after the remedies: "
            f"{f['missed_bar']} (with divergences "
            f"{f['with_divergences']}, R-hat > 1.01 {f['rhat_above']}, ESS < 400 "
            f"{f['ess_below']}). All fitted simulations are in the ranks. Median seconds per "
            f"simulation: {f['seconds_median']:.2f}. Events per cohort: median "
            f"{block['events_median']:.0f} (range {block['events_min']}-{block['events_max']}).",
            "",
        ]
        if f["missed_sims"]:
            lines += [f"Simulations that missed the bar: {', '.join(map(str, f['missed_sims']))}",
                      ""]  # fmt: skip
        if f["error_messages"]:
            lines += ["Errors: " + "; ".join(f["error_messages"]), ""]
        lines += [
            "| parameter | p (ECDF) | p (chi-square) | 50% coverage | 90% coverage | verdict |",
            "|---|---|---|---|---|---|",
        ]
        for label, p in block["parameters"].items():
            lines.append(
                f"| {label} | {p['p_ecdf']:.3f} | {p['p_chi2']:.3f} | "
                f"{_fmt_cov(p['coverage50'])} | {_fmt_cov(p['coverage90'])} | {p['verdict']} |"
            )
        counts = {}
        for p in block["parameters"].values():
            counts[p["verdict"]] = counts.get(p["verdict"], 0) + 1
        lines += [
            "",
            "Summary: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())),
            "",
            f"Figures: `sbc_ecdf_{name}.png`, `sbc_hist_{name}.png`; ranks: `ranks_{name}.csv`.",
            "",
        ]
    lines.append(f"Wall time: {doc['wall_seconds']:.0f} s ({doc['execution']}).")
    return "\n".join(lines) + "\n"


def write_reports(out_dir: Path, doc: dict[str, Any], records: dict, analyses: dict,
                  n_rank: int) -> list[Path]:  # fmt: skip
    """Write ``sbc.md``, ``sbc.json``, the rank CSVs and the figures."""
    folder = Path(out_dir) / "validation"
    paths = []
    for name, recs in records.items():
        paths.append(write_text(folder / f"ranks_{name}.csv", ranks_csv(recs)))
        if analyses[name]["parameters"]:
            paths.append(plot_ecdf(name, recs, analyses[name], folder / f"sbc_ecdf_{name}.png"))
            paths.append(
                plot_hist(name, recs, analyses[name], n_rank, folder / f"sbc_hist_{name}.png")
            )
    paths.append(write_json(folder / "sbc.json", doc))
    paths.append(write_text(folder / "sbc.md", markdown(doc)))
    return paths


def run_cli(args: argparse.Namespace) -> int:
    """Handler of ``vlms validate``."""
    from models.priors import Priors

    names = list(getattr(args, "models", None) or DEFAULT_MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise VlmsInputError(f"--models: unknown model {unknown[0]}; known: {', '.join(MODELS)}")
    if args.sims < 1:
        raise VlmsInputError("--sims must be at least 1")
    draws, tune, chains = (getattr(args, k, d) for k, d in (("draws", 1000), ("tune", 1000),
                                                              ("chains", 4)))  # fmt: skip
    if min(draws, tune, chains) < 1:
        raise VlmsInputError("--draws, --tune and --chains must be at least 1")
    settings = SbcSettings(
        seed=args.seed,
        sampler=getattr(args, "sampler", "nutpie"),
        draws=draws,
        tune=tune,
        chains=chains,
        remedies=not getattr(args, "no_remedies", False),
    )
    if settings.draws * settings.chains < settings.rank_draws:
        raise VlmsInputError(f"need at least {settings.rank_draws} draws in all (draws x chains)")
    priors = Priors()
    where = (
        f"Dask scheduler {args.scheduler}"
        if args.scheduler
        else (f"local Dask cluster, {args.workers} processes" if args.workers > 0 else "in process")
    )
    log = _stderr
    log(f"vlms validate: {args.sims} simulations of {', '.join(names)} ({where})")
    t0 = time.perf_counter()
    records = run_sbc(names, args.sims, args.seed, settings, priors, workers=args.workers,
                      scheduler=args.scheduler, log=log)  # fmt: skip
    wall = time.perf_counter() - t0
    analyses = {name: analyse(recs, settings.rank_draws, seed=args.seed)
                for name, recs in records.items()}  # fmt: skip
    doc = {
        "seed": args.seed,
        "priors": priors.describe(),
        "settings": {**asdict(settings), "simulations": args.sims},
        "execution": where,
        "wall_seconds": round(wall, 1),
        "models": {},
    }
    for name, recs in records.items():
        events = [r["events"] for r in recs]
        doc["models"][name] = {
            "description": MODELS[name].description,
            "n_patients": MODELS[name].n,
            "events_median": float(np.median(events)),
            "events_min": int(min(events)),
            "events_max": int(max(events)),
            "failures": failure_summary(recs),
            "parameters": analyses[name]["parameters"],
        }
    paths = write_reports(Path(args.out_dir), doc, records, analyses, settings.rank_draws)
    for name, block in doc["models"].items():
        verdicts = [p["verdict"] for p in block["parameters"].values()]
        log(f"{name}: {verdicts.count('calibrated')}/{len(verdicts)} parameters calibrated; "
            f"{block['failures']['missed_bar']} fits missed the bar, "
            f"{block['failures']['errors']} errors")  # fmt: skip
    log(f"vlms validate: wrote {paths[-1]} and {len(paths) - 1} more files in {wall:.0f} s")
    return 0


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
