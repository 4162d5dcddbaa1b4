"""Fit the registry on the cohort, and on every member of the reconstruction ensemble with the
prior sensitivity refits in batches of stacked models (:mod:`analysis.inference.ensemble`).

Outputs (``<out_dir>/fits/``):

* ``<name>.nc``, ``<name>.summary.csv``: each registry model on the cohort (``--cohort``),
  fitted one by one, each structure compiled once (:func:`fit_cohort`), imputed fits
  included;
* ``fit_log.csv``: per registry model on the cohort, compile and sampling seconds, ESS per second;
  ``batch_log.csv``: every stacked batch sampled (structure, size, seed, draws, timings);
* ``prior_sensitivity.csv``: the Table 2 models under four log-HR priors
  (:mod:`analysis.inference.sensitivity`);
* ``ensemble/``, ``pooled/``: per model, the members' and the pooled posteriors
  (:mod:`analysis.inference.ensemble_io`). The stacked model takes complete cases only: a model
  whose fit imputes unknown covariates (``FitSpec.missing="impute"`` with unknowns in the data)
  is fitted on the cohort only (:func:`cohort_only`), and so are the multi-state fits
  (:mod:`analysis.inference.multistate_fit`).
"""

from __future__ import annotations

import dataclasses
import functools
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.core.atomic import atomic_path, write_text
from analysis.core.parallel import fork_starmap
from analysis.inference.batches import FitJob
from analysis.inference.data import FitData
from analysis.inference.engine import (
    Compiled,
    SamplerSettings,
    fit_model,
    save_idata,
    structure_key,
)
from analysis.inference.ensemble import MAX_ATTEMPTS, JobResult, RunResult, run_jobs
from analysis.inference.ensemble_io import clear_members, member_key, stack_members, write_members
from analysis.inference.kinds import resolve_kind
from analysis.inference.registry import REGISTRY, FitSpec
from analysis.inference.sensitivity import TABLE2_FITS, sensitivity_jobs, sensitivity_table
from analysis.inference.spec_data import check_spec_data, spec_data

STACKED_KINDS = ("pem", "competing")
"""Model kinds the stacked batches fit (complete cases; models/stacked.py)."""


def spec_seed(base_seed: int, name: str) -> int:
    """A per-name seed: stable under adding or reordering registry entries."""
    return (int(base_seed) + zlib.crc32(name.encode())) % (2**31 - 1)


@dataclass
class LogEntry:
    """One line of the fit log (a registry model on the cohort)."""

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


@dataclass
class RegistryRun:
    """What ``vlms fit`` did: the cohort's fit log, the stacked run (members and prior
    sensitivity), the ensemble size and the models fitted on the cohort only."""

    entries: list[LogEntry]
    run: RunResult
    members: int
    cohort_only: list[str] = field(default_factory=list)


def cohort_only(
    specs: Sequence[FitSpec],
    df: pd.DataFrame,
    members: Mapping[int, pd.DataFrame] | None = None,
) -> list[str]:
    """The models the stacked batches cannot fit, so fitted on the cohort only: a kind other than
    :data:`STACKED_KINDS`, or data (on the cohort or on a member) that imputes covariates."""
    names = []
    for spec in specs:
        frames = [df, *(members or {}).values()]
        if spec.builder not in STACKED_KINDS or any(spec_data(spec, f).imputes for f in frames):
            names.append(spec.name)
    return names


def registry_jobs(
    specs: Sequence[FitSpec],
    df: pd.DataFrame,
    source: str,
    members: Mapping[int, pd.DataFrame] | None = None,
    ensemble_source: str = "",
    sensitivity: bool = True,
) -> list[FitJob]:
    """The stacked jobs of ``vlms fit``: the prior sensitivity refits and the members' fits of
    every model not in :func:`cohort_only`. Raises ``VlmsInputError`` if the cohort cannot
    inform a model, or a member a model fitted on the members."""
    for spec in specs:
        check_spec_data(spec, spec_data(spec, df), source)
    jobs = []
    if sensitivity and set(TABLE2_FITS) <= {s.name for s in specs}:
        jobs += sensitivity_jobs(df)
    skip = set(cohort_only(specs, df, members)) if members else set()
    for spec in specs:  # a model's members side by side: batches of alike posteriors
        if spec.name in skip:
            continue
        for r, member in (members or {}).items():
            data = spec_data(spec, member, all_causes=True)
            check_spec_data(spec, data, f"{ensemble_source} (reconstruction {r})")
            jobs.append(FitJob(member_key(spec.name, r), spec.builder, data, spec.priors))
    return jobs


def run_registry(
    df: pd.DataFrame,
    out_dir: Path,
    settings: SamplerSettings,
    specs: Sequence[FitSpec] | None = None,
    *,
    log: Callable[[str], None] = print,
    workers: int = 2,
    scheduler: str | None = None,
    source: str = "cohort",
    members: Mapping[int, pd.DataFrame] | None = None,
    ensemble_source: str = "",
    draws: int | None = None,
    tune: int | None = None,
    also: Sequence[Callable[[], list[LogEntry]]] = (),
    remedies: bool = True,
) -> RegistryRun:
    """Fit ``specs`` (default: the registry) on ``df`` (:func:`fit_cohort`, with ``settings``,
    side by side with the tasks ``also``: e.g. the multi-state fits, whose log entries join the
    fit log), then the prior sensitivity refits and every member's fits in stacked batches
    (``draws``/``tune`` override the stacked defaults); write the outputs, and remove the
    ensemble files of the models fitted on the cohort only this time (:func:`clear_members`).
    A fit that misses the bar is refitted (cohort fits: the remedy ladder; stacked fits: twice
    the draws) unless ``remedies`` is False.

    Nothing is sampled if any cohort cannot inform a model (``VlmsInputError``).
    """
    specs = list(REGISTRY if specs is None else specs)
    members = dict(members or {})
    jobs = registry_jobs(specs, df, source, members, ensemble_source)
    only = cohort_only(specs, df, members) if members else []
    fits_dir = Path(out_dir) / "fits"
    entries = fit_cohort(
        specs, df, fits_dir, settings, log=log, workers=workers, also=also, remedies=remedies
    )
    if only:
        log(
            f"fitted on the cohort only (imputed covariates; the stacked ensemble fits take "
            f"complete cases): {', '.join(only)}"
        )
    ensemble_specs = [s for s in specs if s.name not in only] if members else []
    clear_members(out_dir, [s.name for s in specs if s not in ensemble_specs])
    log(
        f"{len(jobs)} stacked fits"
        + (f": {len(ensemble_specs)} models on {len(members)} reconstructions" if members else "")
        + (", prior sensitivity" if any(j.key.startswith("sensitivity|") for j in jobs) else "")
    )
    if jobs:
        run = run_jobs(
            jobs,
            settings,
            draws=draws,
            tune=tune,
            workers=workers,
            scheduler=scheduler,
            log=log,
            max_attempts=MAX_ATTEMPTS if remedies else 1,
        )
    else:
        run = RunResult({}, [], {}, 0.0)
    tasks: list[tuple] = [
        (spec, _member_results(run, spec, members), Path(out_dir), ensemble_source)
        for spec in ensemble_specs
    ]
    t0 = time.perf_counter()
    if tasks:
        fork_starmap(_write_member_fits, tasks, workers)
    run.write_seconds = time.perf_counter() - t0
    sens = sensitivity_table(run.results)
    if len(sens):
        write_text(fits_dir / "prior_sensitivity.csv", sens.to_csv(index=False))
    write_text(fits_dir / "batch_log.csv", pd.DataFrame(run.batches).to_csv(index=False))
    return RegistryRun(entries, run, len(members), only)


def fit_cohort(
    specs: Sequence[FitSpec],
    df: pd.DataFrame,
    fits_dir: Path,
    settings: SamplerSettings,
    *,
    log: Callable[[str], None] = print,
    workers: int = 2,
    also: Sequence[Callable[[], list[LogEntry]]] = (),
    remedies: bool = True,
) -> list[LogEntry]:
    """Fit ``specs`` on the cohort ``df`` (checked already by :func:`registry_jobs`), one fit at
    a time with ``settings`` (imputed fits included; refitted with the remedy ladder while a
    fit misses the bar, if ``remedies``); write the outputs into ``fits_dir``.

    Models are grouped by structure; each group compiles its structure once and refits it with
    new data. Groups, and the tasks ``also`` (each returning its fit-log entries), run in up to
    ``workers`` processes side by side (compilation is single-threaded, so two structures
    compile at once on two cores). Each model's seed depends only on the base seed and its
    name, so the results do not depend on the grouping. Returns the fit log (registry order,
    then the entries of ``also``), also written to ``fits_dir/fit_log.csv``.
    """
    datas = {s.name: spec_data(s, df) for s in specs}
    groups: dict[tuple, list[tuple[int, FitSpec]]] = {}
    for i, spec in enumerate(specs, start=1):
        key = structure_key(spec.builder, datas[spec.name], spec.priors)
        groups.setdefault(key, []).append((i, spec))
    tasks = [
        (functools.partial(_fit_group, g, datas, len(specs), fits_dir, settings, log, remedies),)
        for g in groups.values()
    ]
    results = fork_starmap(_run_task, [*tasks, *((task,) for task in also)], workers)
    order = {s.name: i for i, s in enumerate(specs)}
    entries = sorted((e for r in results for e in r), key=lambda e: order.get(e.name, len(order)))
    write_fit_log(entries, fits_dir)
    return entries


def _run_task(task: Callable[[], list[LogEntry]]) -> list[LogEntry]:
    return task()


def write_fit_log(entries: Sequence[LogEntry], fits_dir: Path) -> None:
    """``<fits_dir>/fit_log.csv``: one row per fit, in the given order."""
    table = pd.DataFrame([dataclasses.asdict(e) for e in entries])
    write_text(Path(fits_dir) / "fit_log.csv", table.to_csv(index=False))


def record_fit(
    idata: Any,
    fits_dir: Path,
    name: str,
    *,
    structure: str,
    n: int,
    events: int,
    n_dropped: int,
    seconds: tuple[float, float],
    summary: pd.DataFrame | None = None,
) -> tuple[LogEntry, bool]:
    """Write ``<name>.nc`` and its diagnostics summary ``<name>.summary.csv``; return the fit's
    log entry and whether it meets the sampling bar. ``seconds``: compiling and sampling;
    ``summary``: :func:`~analysis.inference.diagnostics.summarize` of ``idata`` if computed
    already."""
    from analysis.inference import diagnostics

    save_idata(idata, fits_dir / f"{name}.nc")
    if summary is None:
        summary = diagnostics.summarize(idata)
    with atomic_path(fits_dir / f"{name}.summary.csv") as tmp:
        summary.to_csv(tmp)
    ok, details = diagnostics.passes_bar(idata, summary)
    min_ess = float(details["min_ess_bulk"])
    entry = LogEntry(
        name=name,
        structure=structure,
        n=n,
        events=events,
        n_dropped=n_dropped,
        compile_seconds=round(seconds[0], 2),
        sampling_seconds=round(seconds[1], 2),
        min_ess_bulk=round(min_ess, 0),
        ess_per_second=round(min_ess / max(seconds[1], 1e-9), 0),
        divergences=int(details["divergences"]),
    )
    return entry, ok


def _fit_group(
    group: list[tuple[int, FitSpec]],
    datas: dict[str, FitData],
    total: int,
    fits_dir: Path,
    settings: SamplerSettings,
    log: Callable[[str], None],
    remedies: bool = True,
) -> list[LogEntry]:
    """Fit the models of one structure (compiled once), writing each model's files."""
    compiled: Compiled | None = None
    entries: list[LogEntry] = []
    for i, spec in group:
        data = datas[spec.name]
        seeded = dataclasses.replace(
            settings,
            seed=spec_seed(settings.seed, spec.name),
            target_accept=max(settings.target_accept, spec.target_accept or 0.0),
        )
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
        (result, summary), compiled, attempts = _fit_with_ladder(
            data,
            spec,
            seeded,
            compiled,
            attrs,
            log=lambda line, i=i, spec=spec: log(f"[{i}/{total}] {spec.name}: {line}"),
            remedies=remedies,
        )
        if len(attempts) > 1:
            result.idata.posterior.attrs["remedies"] = "; ".join(a.summary() for a in attempts)
        entry, ok = record_fit(
            result.idata,
            fits_dir,
            spec.name,
            structure=f"{resolve_kind(spec.builder, data)}/{data.n_slots} slots/"
            f"{len(data.cuts)} intervals",
            n=data.n,
            events=events,
            n_dropped=data.n_dropped,
            seconds=(result.compile_seconds, result.sampling_seconds),
            summary=summary,
        )
        entries.append(entry)
        log(
            f"[{i}/{total}] {spec.name}: compile {entry.compile_seconds:.1f} s, sampling "
            f"{entry.sampling_seconds:.2f} s, min bulk ESS {entry.min_ess_bulk:.0f} "
            f"({entry.ess_per_second:.0f}/s), divergences {entry.divergences}, "
            f"bar {'met' if ok else 'MISSED'}"
        )
    return entries


def _fit_with_ladder(
    data: FitData,
    spec: FitSpec,
    settings: SamplerSettings,
    compiled: Compiled | None,
    attrs: dict[str, Any],
    log: Callable[[str], None],
    remedies: bool = True,
) -> tuple[tuple[Any, pd.DataFrame], Compiled | None, list[Any]]:
    """Fit one registry model on the cohort; refit with the remedies of ``vlms fit --data``
    (:mod:`analysis.inference.remedies`) while it misses the sampling bar. Returns the reported
    result with its diagnostics summary, the structure compiled for ``spec.priors`` (kept for
    the group's next model) and every attempt."""
    from analysis.inference import diagnostics
    from analysis.inference.remedies import fit_with_remedies, ladder

    def run(s: SamplerSettings, p: Any) -> tuple[Any, pd.DataFrame]:
        nonlocal compiled
        result, c = fit_model(data, kind=spec.builder, priors=p, settings=s, compiled=compiled,
                              attrs=attrs)  # fmt: skip
        if p == spec.priors:  # another parameterisation compiles its own structure
            compiled = c
        return result, diagnostics.summarize(result.idata)

    fitted, attempts = fit_with_remedies(
        run,
        lambda r: diagnostics.passes_bar(r[0].idata, r[1]),
        settings,
        spec.priors,
        remedies=ladder(remedies),
        log=log,
    )
    return fitted, compiled, attempts


def _member_results(
    run: RunResult, spec: FitSpec, members: Mapping[int, pd.DataFrame]
) -> dict[int, JobResult]:
    return {r: run.results[member_key(spec.name, r)] for r in members}


def _write_member_fits(
    spec: FitSpec, results: Mapping[int, JobResult], out_dir: Path, source: str
) -> None:
    """Write a model's per-member and pooled posteriors (run in worker processes)."""
    members = list(results)
    post, stats = stack_members(
        [results[m].posterior for m in members], [results[m].sample_stats for m in members], members
    )
    rows = []
    for m in members:
        r = results[m]
        rows.append(
            {
                "reconstruction": m,
                "n": r.job.data.n,
                "events": int(np.sum(r.job.data.event > 0)),
                **{
                    k: r.bar[k] for k in ("max_rhat", "min_ess_bulk", "min_ess_tail", "divergences")
                },
                "bar_met": bool(r.bar["ok"]),
                "failing": "; ".join(r.bar["failing"]),
                "attempt": r.attempt,
                "seed": r.settings.seed,
                "draws_sampled": r.settings.draws,
                "thin": r.thin,
                "target_accept": r.settings.target_accept,
                "batch": r.batch,
            }
        )
    first = results[members[0]]
    attrs = {
        "model_name": spec.name,
        "endpoint": spec.endpoint,
        "subset": spec.subset,
        "description": spec.description,
        "members": len(members),
        "ensemble_source": source,
        "priors": first.job.priors.describe(),
        "chains": first.settings.chains,
        "draws_per_chain": int(post.sizes["draw"]),
        "tune": first.settings.tune,
        "covariates": ",".join(first.job.data.covariate_names) or "(none)",
        "cut_points_months": [float(c) for c in first.job.data.cuts],
    }
    write_members(out_dir, spec.name, post, stats, pd.DataFrame(rows), attrs)
