"""Batched sampling: many fits of one structure in one run of a stacked model.

A :class:`FitJob` is one fit (a registry model on one cohort, under one prior). Jobs of the same
structure (model kind, covariate slots, cut points, causes, baseline prior) are packed into
batches of equal size and each batch is sampled as one stacked model (:mod:`models.stacked`):
the fits share no parameter, so every fit's draws are draws of its own posterior, while the
sampler's warm-up and per-step overhead are paid once per batch. A structure is compiled once
per process and per batch size (or loaded from the compiled-model disk cache when that is
available), then every batch swaps its data in.

Batches are padded to their size with empty data sets (no exposure: posterior = prior), whose
draws are dropped. The sampling bar is checked per fit on its own variables (spare covariate
slots excluded); a divergent transition anywhere in a batch counts against every fit of it.
"""

from __future__ import annotations

import dataclasses
import math
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from analysis.inference.data import FitData
from analysis.inference.engine import SamplerSettings, nutpie_sample
from models.priors import Priors
from models.survival_data import Cells

FIT_DIM = "fit"
DROPPED_VARS = ("beta_std_z",)
"""Stored by the sampler but not kept: ``beta_std_z = beta_std / prior sd`` carries nothing
new."""


@dataclass(frozen=True)
class FitJob:
    """One fit: a unique ``key``, the model ``kind`` (``pem``/``competing``), its data and
    priors."""

    key: str
    kind: str
    data: FitData
    priors: Priors

    @property
    def n_used(self) -> int:
        return len(self.data.covariate_names)


@dataclass(frozen=True)
class Structure:
    """What a compiled stacked model fixes (besides the batch size)."""

    kind: str
    n_slots: int
    cuts: tuple[float, ...]
    causes: tuple[str, ...]
    priors: Priors
    """Baseline prior (and, for competing risks, the log-HR prior; PEM log-HR priors are data)."""

    def describe(self) -> str:
        causes = f"/{len(self.causes)} causes" if self.causes else ""
        return f"stacked {self.kind}/{self.n_slots} slots/{len(self.cuts)} intervals{causes}"


def structure_of(job: FitJob) -> Structure:
    """The structure a job's batch must have."""
    p = job.priors
    if job.kind == "pem":
        p = dataclasses.replace(p, effect_family="normal", effect_sd=1.0, effect_nu=3.0)
    return Structure(
        kind=job.kind,
        n_slots=job.data.n_slots,
        cuts=tuple(float(c) for c in job.data.cuts),
        causes=tuple(job.data.cause_names),
        priors=p,
    )


@dataclass(frozen=True)
class BatchSettings:
    """How a batch is sampled: sampler settings, thinning, the seed label, nutpie threads."""

    sampler: SamplerSettings
    thin: int = 1
    cores: int = 1


@dataclass(frozen=True)
class Batch:
    """Jobs of one structure sampled together (``size`` >= len(jobs); the rest is padding)."""

    structure: Structure
    size: int
    jobs: tuple[FitJob, ...]
    settings: BatchSettings

    @property
    def keys(self) -> list[str]:
        return [j.key for j in self.jobs]


def batch_seed(base_seed: int, keys: Sequence[str], attempt: int) -> int:
    """A batch's seed: from the base seed, the fits it holds and the attempt."""
    text = "|".join(keys) + f"#{attempt}"
    return (int(base_seed) + zlib.crc32(text.encode())) % (2**31 - 1)


def plan_batches(
    jobs: Sequence[FitJob],
    settings: SamplerSettings,
    max_size: dict[str, int],
    *,
    attempt: int = 1,
    thin: int = 1,
    cores: int = 1,
    sizes: dict[Structure, int] | None = None,
) -> list[Batch]:
    """Group ``jobs`` by structure (in order) and cut each group into batches of equal size.

    A group of ``n`` jobs of a kind with maximum batch size ``s`` makes ``ceil(n / s)`` batches
    of ``ceil(n / batches)`` slots (so padding is under one slot per batch), unless ``sizes``
    gives the structure a size already (the first attempt's; for refits): then full batches of
    that size and the rest in one of the smallest power of two that holds it (a refit of one
    fit is not padded to a batch of 16, and a structure has few sizes, each compiled once and
    then loaded from the disk cache). Each batch gets its own seed (:func:`batch_seed`).
    """
    groups: dict[Structure, list[FitJob]] = {}
    for job in jobs:
        groups.setdefault(structure_of(job), []).append(job)
    batches = []
    for structure, members in groups.items():
        fixed = (sizes or {}).get(structure)
        for part, size in _chunks(members, fixed or max_size[structure.kind], bool(fixed)):
            seed = batch_seed(settings.seed, [j.key for j in part], attempt)
            sampler = dataclasses.replace(settings, seed=seed, progress=False)
            batches.append(Batch(structure, size, part, BatchSettings(sampler, thin, cores)))
    return batches


def _chunks(
    jobs: Sequence[FitJob], most: int, powers_of_two: bool
) -> list[tuple[tuple[FitJob, ...], int]]:
    """``jobs`` cut into batches of at most ``most``, with each batch's size: equal parts
    (``ceil(n / batches)`` slots), or (``powers_of_two``) full batches of ``most`` and the rest
    in a batch of the smallest power of two that holds it (at most ``most``)."""
    if powers_of_two:
        parts = [tuple(jobs[i : i + most]) for i in range(0, len(jobs), most)]
        return [(p, min(most, 1 << (len(p) - 1).bit_length())) for p in parts]
    n_batches = math.ceil(len(jobs) / most)
    size = math.ceil(len(jobs) / n_batches)
    chunks = np.array_split(np.arange(len(jobs)), n_batches)
    return [(tuple(jobs[i] for i in chunk), size) for chunk in chunks]


# --------------------------------------------------------------------------- stacked data


def _empty_like(cells: Cells) -> Cells:
    return Cells(
        x=cells.x, exposure=np.zeros_like(cells.exposure), events=np.zeros_like(cells.events)
    )


def _centre(job: FitJob) -> Any:
    if job.kind == "pem":
        return job.data.log_rate_center()
    from models.competing import cause_log_rates

    return cause_log_rates(job.data.time, job.data.event, len(job.data.cause_names))


def stacked_inputs(batch: Batch) -> dict[str, Any]:
    """Per slot of the batch (jobs, then padding): cells, centres, effect priors, slots used."""
    cells = [j.data.cells() for j in batch.jobs]
    centres = [_centre(j) for j in batch.jobs]
    pad = batch.size - len(batch.jobs)
    cells += [_empty_like(cells[0])] * pad
    centres += [np.zeros_like(np.asarray(centres[0], float))] * pad
    slots = batch.structure.n_slots
    return {
        "cells": cells,
        "log_rate_center": centres,
        "effect_priors": [j.priors for j in batch.jobs] + [Priors()] * pad,
        "n_used": [j.n_used for j in batch.jobs] + [0] * pad,
        "x_center": [j.data.center_slots() for j in batch.jobs] + [np.zeros(slots)] * pad,
        "x_scale": [j.data.scale_slots() for j in batch.jobs] + [np.ones(slots)] * pad,
    }


def build_stacked(batch: Batch) -> Any:
    """The stacked PyMC model of ``batch`` (holding its data)."""
    from models.stacked import build_stacked_competing, build_stacked_pem

    s = batch.structure
    inputs = stacked_inputs(batch)
    names = batch.jobs[0].data.slot_names
    coding = {"x_center": inputs["x_center"], "x_scale": inputs["x_scale"]}
    if s.kind == "pem":
        return build_stacked_pem(
            inputs["cells"],
            cuts=s.cuts,
            covariate_names=names,
            log_rate_center=inputs["log_rate_center"],
            effect_priors=inputs["effect_priors"],
            n_used=inputs["n_used"],
            priors=s.priors,
            **coding,
        )
    return build_stacked_competing(
        inputs["cells"],
        cuts=s.cuts,
        covariate_names=names,
        cause_names=s.causes,
        log_rate_center=inputs["log_rate_center"],
        priors=s.priors,
        **coding,
    )


def stacked_values(batch: Batch) -> dict[str, np.ndarray]:
    """The data containers' values of ``batch`` (for ``with_data``)."""
    from models.stacked import stacked_competing_data, stacked_pem_data

    inputs = stacked_inputs(batch)
    coding = (inputs["x_center"], inputs["x_scale"])
    if batch.structure.kind == "pem":
        return stacked_pem_data(
            inputs["cells"],
            inputs["log_rate_center"],
            inputs["effect_priors"],
            inputs["n_used"],
            *coding,
        )
    return stacked_competing_data(inputs["cells"], inputs["log_rate_center"], *coding)


# --------------------------------------------------------------------------- compile


@dataclass
class CompiledStack:
    """A compiled stacked structure of one batch size."""

    model: Any
    nutpie_model: Any
    var_names: list[str]
    seconds: float
    source: str


_COMPILED: dict[tuple[Structure, int, str], CompiledStack] = {}
"""Per process: one compiled model per (structure, batch size, sampler)."""


def compile_nutpie(model: Any, key: str, var_names: list[str]) -> tuple[Any, str, float]:
    """nutpie-compile ``model`` through the compiled-model disk cache
    (:func:`analysis.inference.compile_cache.compile_cached`).

    Returns (compiled model, where it came from: ``compiled``/``disk``/``memory``, seconds).
    """
    from analysis.inference.compile_cache import compile_cached

    t0 = time.perf_counter()
    cached = compile_cached(model, key, var_names=var_names)
    return cached.model, cached.source, time.perf_counter() - t0


def compiled_for(batch: Batch) -> CompiledStack:
    """The compiled stacked model of ``batch``'s structure and size (compiled once per process)."""
    key = _compiled_key(batch)
    if key not in _COMPILED:
        model = build_stacked(batch)
        names = [v.name for v in model.free_RVs] + [v.name for v in model.deterministics]
        if batch.settings.sampler.sampler == "nutpie":
            label = f"{batch.structure.describe()}/batch {batch.size}"
            compiled, source, seconds = compile_nutpie(model, label, names)
        else:  # PyMC compiles (and caches on disk) inside pm.sample
            compiled, source, seconds = None, "pymc", 0.0
        _COMPILED[key] = CompiledStack(model, compiled, names, seconds, source)
    return _COMPILED[key]


def _compiled_key(batch: Batch) -> tuple:
    return (batch.structure, batch.size, batch.settings.sampler.sampler)


def precompile(batches: Sequence[Batch]) -> dict[str, float]:
    """Compile (or load) every structure the batches need in this process, so forked workers
    inherit them; returns seconds per structure."""
    out: dict[str, float] = {}
    for b in batches:
        if _compiled_key(b) not in _COMPILED:
            c = compiled_for(b)
            out[f"{b.structure.describe()}/batch {b.size} ({c.source})"] = round(c.seconds, 2)
    return out


# --------------------------------------------------------------------------- sample


@dataclass
class BatchResult:
    """The draws of one batch (padding removed) and how they were made."""

    keys: list[str]
    posterior: xr.Dataset
    """Dims ``(chain, draw, fit, ...)``; ``fit`` indexes ``keys``."""
    sample_stats: xr.Dataset
    divergences: int
    """Divergent transitions of the batch (before thinning)."""
    conv: dict[str, xr.Dataset]
    """R-hat, bulk and tail ESS and sd of every element (:func:`diagnostics.convergence`)."""
    settings: BatchSettings
    structure: str
    size: int
    compile_seconds: float
    compile_source: str
    sampling_seconds: float
    sampling_cpu_seconds: float = 0.0
    """CPU seconds of the sampler (all its threads)."""
    bar_cpu_seconds: float = 0.0
    """CPU seconds of the R-hat and ESS of every element."""


def sample_batch(batch: Batch) -> BatchResult:
    """Sample one batch with its compiled structure (a worker task)."""
    from analysis.inference import diagnostics

    fresh = _compiled_key(batch) not in _COMPILED
    compiled = compiled_for(batch)
    t0, cpu0 = time.perf_counter(), time.process_time()
    if compiled.nutpie_model is not None:
        model = compiled.nutpie_model.with_data(**stacked_values(batch))
        idata = nutpie_sample(model, batch.settings.sampler, cores=batch.settings.cores)
    else:
        idata = _pymc_sample(compiled, batch)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    n = len(batch.jobs)
    thin = slice(None, None, batch.settings.thin)
    post = idata.posterior[[v for v in compiled.var_names if v in idata.posterior]]
    post = post.isel({FIT_DIM: slice(0, n), "draw": thin})
    post = post.drop_vars([v for v in DROPPED_VARS if v in post])
    stats = idata.sample_stats
    divergences = int(stats["diverging"].sum())
    stats = stats.isel(draw=thin)
    cpu1 = time.process_time()
    conv = diagnostics.convergence(post)
    result = BatchResult(
        keys=batch.keys,
        posterior=post,
        sample_stats=stats,
        divergences=divergences,
        conv=conv,
        settings=batch.settings,
        structure=batch.structure.describe(),
        size=batch.size,
        compile_seconds=compiled.seconds if fresh else 0.0,
        compile_source=compiled.source if fresh else "reused",
        sampling_seconds=seconds,
        sampling_cpu_seconds=cpu,
        bar_cpu_seconds=time.process_time() - cpu1,
    )
    return result


def _pymc_sample(compiled: CompiledStack, batch: Batch) -> Any:
    import pymc as pm

    s = batch.settings.sampler
    with compiled.model:
        pm.set_data(stacked_values(batch))
        return pm.sample(
            draws=s.draws,
            tune=s.tune,
            chains=s.chains,
            cores=1,
            random_seed=s.seed,
            target_accept=s.target_accept,
            progressbar=False,
            compute_convergence_checks=False,
            var_names=compiled.var_names,
        )


def job_posterior(result: BatchResult, index: int, job: FitJob) -> xr.Dataset:
    """One fit's draws from its batch: dims ``(chain, draw, ...)``, spare slots dropped and
    covariates named."""
    post = result.posterior.isel({FIT_DIM: index}, drop=True)
    return trim_slots(post, job.data)


def trim_slots(post: xr.Dataset, data: FitData) -> xr.Dataset:
    """Name the covariates of ``data`` and drop spare slots (and covariate-less effect vars)."""
    n_cov = len(data.covariate_names)
    if "covariate" not in post.dims:
        return post
    if n_cov == 0:
        return post.drop_vars([v for v in post.data_vars if "covariate" in post[v].dims]).drop_dims(
            "covariate"
        )
    post = post.assign_coords(covariate=data.slot_names).isel(covariate=slice(0, n_cov))
    return post


def job_bar(result: BatchResult, index: int, job: FitJob) -> dict[str, Any]:
    """The sampling bar of one fit of a batch: worst R-hat and ESS over its own variables."""
    from analysis.inference.diagnostics import bar_from_convergence

    conv = {
        k: trim_slots(v.isel({FIT_DIM: index}, drop=True), job.data) for k, v in result.conv.items()
    }
    return bar_from_convergence(conv, result.divergences)
