"""Fit the registry on a cohort: group fits by structure, compile each structure once, refit it
with each fit's data, write ``reports/fits/<name>.nc``, ``.summary.csv`` and ``fit_log.csv``."""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.core.atomic import atomic_path, write_text
from analysis.core.parallel import fork_starmap
from analysis.inference.data import FitData
from analysis.inference.engine import (
    Compiled,
    SamplerSettings,
    fit_model,
    save_idata,
    structure_key,
)
from analysis.inference.kinds import resolve_kind
from analysis.inference.registry import REGISTRY, FitSpec
from analysis.inference.spec_data import check_spec_data, spec_data


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
    write_fit_log(entries, fits_dir)
    return entries


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
) -> tuple[LogEntry, bool]:
    """Write ``<name>.nc`` and its diagnostics summary ``<name>.summary.csv``; return the fit's
    log entry and whether it meets the sampling bar. ``seconds``: compiling and sampling."""
    from analysis.inference import diagnostics

    save_idata(idata, fits_dir / f"{name}.nc")
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
        result, compiled = fit_model(
            data,
            kind=spec.builder,
            priors=spec.priors,
            settings=seeded,
            compiled=compiled,
            attrs=attrs,
        )
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
        )
        entries.append(entry)
        log(
            f"[{i}/{total}] {spec.name}: compile {entry.compile_seconds:.1f} s, sampling "
            f"{entry.sampling_seconds:.2f} s, min bulk ESS {entry.min_ess_bulk:.0f} "
            f"({entry.ess_per_second:.0f}/s), divergences {entry.divergences}, "
            f"bar {'met' if ok else 'MISSED'}"
        )
    return entries
