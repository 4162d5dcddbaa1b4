"""Run many fits in batches, check each against the sampling bar, refit those that miss it.

The stacked fits of ``vlms fit`` (the complete-case registry models on every member of the
reconstruction ensemble, and the prior sensitivity refits; the cohort's own registry fits run one
by one, :func:`analysis.inference.runner.fit_cohort`) are
:class:`~analysis.inference.batches.FitJob`\\ s.
They are packed into batches per structure (:func:`analysis.inference.batches.plan_batches`) and
sampled side by side: in forked worker processes (each structure compiled once, in the parent,
before the fork), in this process (``workers <= 1``), or on a Dask cluster (``scheduler``:
each worker compiles a structure once and keeps it).

Draws: each fit keeps ``draws`` per chain (by model kind, :data:`DRAWS`: as many as the bar
needs on these data, measured). A fit that misses the bar is refitted with a new seed and twice
the draws, thinned back to the same number (so every fit keeps the same number of draws), and,
after a divergent transition, a higher target acceptance; at most :data:`MAX_ATTEMPTS` times.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import xarray as xr

from analysis.inference.batches import (
    Batch,
    BatchResult,
    FitJob,
    job_bar,
    job_posterior,
    plan_batches,
    precompile,
    sample_batch,
)
from analysis.inference.engine import SamplerSettings

DRAWS: dict[str, int] = {"pem": 600, "competing": 700}
"""Kept draws per chain and fit, by model kind (4 chains): enough for bulk and tail ESS >= 400
on every parameter of nearly every fit. Measured on the reconstruction (seed 20260101, 30
members): the worst parameter of a fit is the scale of a random-walk baseline (``rw_sigma``,
``cause_rw_sigma``), at a tail ESS of 0.17-0.23 per kept draw for the 5% worst members (PEM
and competing alike; 0.26-0.42 for the median member), so 600 and 700 draws per chain leave
about 5% of the fits to a refit with twice the draws (cheaper than drawing more for all)."""
TUNE = 300
"""Warm-up iterations per chain (nutpie adapts step size and mass matrix quickly)."""
MAX_BATCH: dict[str, int] = {"pem": 16, "competing": 16}
"""Most fits per batch (per-fit cost falls with the batch size up to about this)."""
MAX_ATTEMPTS = 3
REMEDY_TARGET_ACCEPT = 0.99


@dataclass
class JobResult:
    """One fit's draws, its bar and how it was made."""

    job: FitJob
    posterior: xr.Dataset
    sample_stats: xr.Dataset
    bar: dict[str, Any]
    attempt: int
    settings: SamplerSettings
    thin: int
    batch: str
    batch_seconds: float
    batch_fits: int


@dataclass
class RunResult:
    """Every fit's result, the per-batch log and the compile times."""

    results: dict[str, JobResult]
    batches: list[dict[str, Any]]
    compile: dict[str, float]
    seconds: float
    write_seconds: float = 0.0

    @property
    def failed(self) -> list[str]:
        return [k for k, r in self.results.items() if not r.bar["ok"]]


def sampler_for(kind: str, base: SamplerSettings, draws: int | None, tune: int | None) -> Any:
    """The first attempt's settings of a model kind (``draws``/``tune`` override the defaults)."""
    return dataclasses.replace(
        base,
        draws=draws if draws is not None else DRAWS[kind],
        tune=tune if tune is not None else TUNE,
        progress=False,
    )


def run_jobs(
    jobs: Sequence[FitJob],
    base: SamplerSettings,
    *,
    draws: int | None = None,
    tune: int | None = None,
    workers: int = 2,
    scheduler: str | None = None,
    log: Callable[[str], None] = print,
    max_attempts: int = MAX_ATTEMPTS,
) -> RunResult:
    """Sample every job, refitting those that miss the bar (see the module docstring)."""
    t0 = time.perf_counter()
    keys = [j.key for j in jobs]
    if len(set(keys)) != len(keys):
        raise ValueError("job keys must be unique")
    cores = 1 if (workers > 1 or scheduler) else 2
    pending = list(jobs)
    done: dict[str, JobResult] = {}
    batch_log: list[dict[str, Any]] = []
    compile_times: dict[str, float] = {}
    diverged: set[str] = set()
    sizes: dict[Any, int] = {}  # structure -> batch size compiled in the first attempt
    for attempt in range(1, max_attempts + 1):
        if not pending:
            break
        factor = 2 ** (attempt - 1)
        batches: list[Batch] = []
        for kind in ("competing", "pem"):  # the costlier batches first: better balance
            of_kind = [j for j in pending if j.kind == kind]
            if not of_kind:
                continue
            first = sampler_for(kind, base, draws, tune)
            for accept in sorted({_accept(j, first, diverged) for j in of_kind}):
                group = [j for j in of_kind if _accept(j, first, diverged) == accept]
                settings = dataclasses.replace(
                    first, draws=first.draws * factor, target_accept=accept
                )
                batches += plan_batches(
                    group,
                    settings,
                    MAX_BATCH,
                    attempt=attempt,
                    thin=factor,
                    cores=cores,
                    sizes=sizes,
                )
        for b in batches:
            sizes.setdefault(b.structure, b.size)
        log(
            f"sampling {len(pending)} fits in {len(batches)} batches"
            + (f" (attempt {attempt}: twice the draws, thinned)" if attempt > 1 else "")
        )
        results = execute(batches, workers, scheduler, compile_times, log)
        pending = []
        for batch, res in zip(batches, results, strict=True):
            failed = _collect(batch, res, attempt, done)
            if res.divergences:
                diverged.update(j.key for j in batch.jobs)
            pending += failed
            batch_log.append(_batch_row(batch, res, attempt, len(failed)))
        if pending:
            log(
                f"  {len(pending)} fits missed the bar: "
                + ", ".join(j.key for j in pending[:6])
                + (" ..." if len(pending) > 6 else "")
            )
    return RunResult(done, batch_log, compile_times, time.perf_counter() - t0)


def _accept(job: FitJob, first: SamplerSettings, diverged: set[str]) -> float:
    return (
        max(first.target_accept, REMEDY_TARGET_ACCEPT)
        if job.key in diverged
        else (first.target_accept)
    )


def _collect(batch: Batch, res: BatchResult, attempt: int, done: dict[str, JobResult]) -> list:
    """Store each fit's result; return the jobs that missed the bar."""
    failed = []
    for i, job in enumerate(batch.jobs):
        bar = job_bar(res, i, job)
        done[job.key] = JobResult(
            job=job,
            posterior=job_posterior(res, i, job),
            sample_stats=res.sample_stats,
            bar=bar,
            attempt=attempt,
            settings=batch.settings.sampler,
            thin=batch.settings.thin,
            batch=f"{res.structure}/batch {res.size}",
            batch_seconds=res.sampling_seconds,
            batch_fits=len(batch.jobs),
        )
        if not bar["ok"]:
            failed.append(job)
    return failed


def _batch_row(batch: Batch, res: BatchResult, attempt: int, n_failed: int) -> dict[str, Any]:
    s = batch.settings.sampler
    return {
        "structure": res.structure,
        "batch_size": res.size,
        "fits": len(batch.jobs),
        "attempt": attempt,
        "seed": s.seed,
        "chains": s.chains,
        "tune": s.tune,
        "draws_sampled": s.draws,
        "thin": batch.settings.thin,
        "target_accept": s.target_accept,
        "compile_seconds": round(res.compile_seconds, 2),
        "compile_source": res.compile_source,
        "sampling_seconds": round(res.sampling_seconds, 2),
        "sampling_cpu_seconds": round(res.sampling_cpu_seconds, 2),
        "bar_cpu_seconds": round(res.bar_cpu_seconds, 2),
        "divergences": res.divergences,
        "fits_missing_bar": n_failed,
    }


def execute(
    batches: Sequence[Batch],
    workers: int,
    scheduler: str | None,
    compile_times: dict[str, float],
    log: Callable[[str], None],
) -> list[BatchResult]:
    """Sample ``batches`` (results in order): Dask at ``scheduler``, forked workers, or here."""
    if scheduler:
        return _dask(batches, scheduler)
    compile_times.update(precompile(batches))
    if workers <= 1 or len(batches) <= 1:
        return [sample_batch(b) for b in batches]
    from analysis.core.parallel import fork_starmap

    return fork_starmap(sample_batch, [(b,) for b in batches], workers)


def _dask(batches: Sequence[Batch], scheduler: str) -> list[BatchResult]:
    from distributed import Client

    client = Client(scheduler)
    try:
        futures = [client.submit(sample_batch, b, pure=False) for b in batches]
        return client.gather(futures)
    finally:
        client.close()
