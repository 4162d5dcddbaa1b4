"""``vlms fit``: the registry of fits on the cohort, or one model on any CSV.

Without ``--data``: every registered model (``analysis.inference.registry.REGISTRY``, or
``--only`` names) and the multi-state registry on ``--cohort``, and the models the stacked
batches fit (complete-case PEM and competing risks) on every member of the reconstruction
ensemble (``--ensemble``, by default ``data/cohorts.csv``), written to ``<out-dir>/fits/``
(:mod:`analysis.inference.runner`). Imputed and multi-state fits are fitted on the cohort only
(the log says so). Exit status 3 if a stacked fit still misses the sampling bar after every
remedy. The registry entries carry
their own cut points and priors, so ``--cuts``, ``--prior-sd`` and ``--prior-family`` apply to
``--data`` fits only.

With ``--data FILE --time COL --event COL --covariates A,B``: a piecewise-exponential model
(``--competing``: cause-specific hazards, each cause keeping its code) on the CSV, read exactly as
``vlms check`` reads it (:mod:`analysis.core.survival_table`). Unknown values of a 0/1 covariate
are marginalised inside the model (``--missing impute``, the default: every row is used,
:mod:`analysis.inference.imputed_kind`); ``--missing drop`` drops rows with a missing covariate
(complete cases). The output and the JSON (``missing_covariates``) give the rows used and the
values imputed per covariate. Every other input problem is a one-line error (exit 2) found before
anything is sampled or written. ``--multistate``: :mod:`analysis.inference.multistate_command`.
Numeric covariates are centred at their mean and scaled by their SD inside the model (0/1 ones keep
0 as the reference), so the answer does not depend on a column's origin or unit; HRs are reported
per unit of the column as given and per SD.
The saved NetCDF records the file name and columns, not the file's rows.

Times are in ``--time-unit`` (days, weeks, months or years; default months), and so are
``--cuts``, ``--times``, the cut points and curve times of the outputs. Without ``--cuts`` the
cut points are quantiles of the event times (:func:`models.survival_data.quantile_cuts`:
``ceil(sqrt(events))`` intervals with about equal numbers of events, at most 20), so the baseline
follows the data's own time scale; the log says which cut points were used and why.

A fit that misses the sampling bar is refitted with the remedies of
:mod:`analysis.inference.remedies` (each refit logged; every attempt in the JSON's
``remedies``). If every attempt misses it, the attempt closest to the bar is reported, says so
on stdout next to its numbers and in the JSON, and the exit status is 3 (``EXIT_BAR_MISSED``).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analysis.core.errors import VlmsInputError
from analysis.core.paths import project_path
from analysis.core.survival_table import (
    EVENT_CODING,
    SurvivalTable,
    load_survival_table,
    report_times,
)

DEFAULT_COHORT = "data/cohort.csv"
DEFAULT_ENSEMBLE = "data/cohorts.csv"
EXIT_BAR_MISSED = 3
"""Exit status of a ``--data`` fit that misses the sampling bar (its outputs say so too)."""
MISSING_RULES = {
    "drop": "rows with a missing covariate are dropped (complete cases) and counted",
    "impute": (
        "unknown values of 0/1 covariates are marginalised in the likelihood (every row used; "
        "logistic model of each given the covariates known for every row)"
    ),
}


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_cli(args: argparse.Namespace) -> int:
    """Handler of ``vlms fit``."""
    t0 = time.perf_counter()
    # PyMC, PyTensor, nutpie and ArviZ: the "imports" of the --data timings
    import analysis.inference.diagnostics
    import analysis.inference.engine  # noqa: F401

    imports = time.perf_counter() - t0
    settings = _settings(args, str(args.data or args.cohort), registry=args.data is None)
    if args.data is None:
        return _run_registry(args, settings)
    if getattr(args, "multistate", False):
        from analysis.inference.multistate_command import run_multistate_csv

        return 0 if run_multistate_csv(args, settings, time_unit(args)) else EXIT_BAR_MISSED
    return _run_csv(args, settings, imports)


def _settings(args: argparse.Namespace, file: str, registry: bool = False) -> Any:
    """Sampler settings from the command line (``registry``: the defaults of the registry's
    cohort fits, :data:`REGISTRY_TUNE`)."""
    from analysis.inference.engine import SamplerSettings

    for name in ("draws", "tune", "chains"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise VlmsInputError(f"--{name} must be at least 1", file=file)
    if getattr(args, "prior_sd", 1.0) is not None and not (
        math.isfinite(args.prior_sd) and args.prior_sd > 0
    ):
        raise VlmsInputError("--prior-sd must be a positive number", file=file)
    if not 0.5 <= args.target_accept < 1:
        raise VlmsInputError("--target-accept must be in [0.5, 1)", file=file)
    return SamplerSettings(
        sampler=args.sampler,
        draws=args.draws or CSV_DRAWS,
        tune=args.tune or (REGISTRY_TUNE if registry and args.sampler == "nutpie" else CSV_DRAWS),
        chains=args.chains,
        seed=args.seed,
        target_accept=args.target_accept,
        progress=False,
    )


CSV_DRAWS = 1000
"""Draws and warm-up iterations per chain of a ``--data`` fit, and draws of the registry's cohort
fits, unless given (the stacked ensemble fits draw as many as the bar needs,
:data:`analysis.inference.ensemble.DRAWS`)."""
REGISTRY_TUNE = 300
"""Warm-up iterations per chain of the registry's cohort fits with nutpie unless given (nutpie's
own default; PyMC's sampler keeps 1000). Measured on ``data/cohort.csv`` (seed 20260101): all
13 fits meet the bar as with 1000 (one refit with the remedies, against two), in 19 s of
sampling against 32 s."""

# --------------------------------------------------------------------------- registry


def ensemble_path(args: argparse.Namespace) -> Path | None:
    """The ensemble to fit: ``--ensemble``; by default ``data/cohorts.csv`` when it exists and
    the cohort is the default reconstruction (a user's own ``--cohort`` has no ensemble)."""
    if getattr(args, "no_ensemble", False):
        return None
    if getattr(args, "ensemble", None) is not None:
        return Path(args.ensemble)
    default = project_path(DEFAULT_ENSEMBLE)
    if Path(args.cohort).resolve() == project_path(DEFAULT_COHORT).resolve() and default.is_file():
        return default
    return None


def ensemble_skipped(args: argparse.Namespace) -> str:
    """Why no ensemble is fitted, when the default one is expected but absent (else ``""``)."""
    if getattr(args, "no_ensemble", False) or getattr(args, "ensemble", None) is not None:
        return ""
    default = project_path(DEFAULT_ENSEMBLE)
    if Path(args.cohort).resolve() != project_path(DEFAULT_COHORT).resolve():
        return ""
    if default.is_file():
        return ""
    return (
        f"ensemble skipped: {DEFAULT_ENSEMBLE} is missing (written by `vlms reconstruct`); "
        "fitting the cohort only, and the comparison shows the single cohort's columns"
    )


def _run_registry(args: argparse.Namespace, settings: Any) -> int:
    from analysis.cohort import load_cohort, load_ensemble
    from analysis.inference.ensemble import RunResult
    from analysis.inference.multistate_fit import (
        check_multistate_specs,
        multistate_specs,
        run_multistate_registry,
    )
    from analysis.inference.registry import MULTISTATE_REGISTRY, REGISTRY
    from analysis.inference.runner import RegistryRun, registry_jobs, run_registry, write_fit_log

    start = time.perf_counter()
    specs = REGISTRY
    ms_specs = multistate_specs()
    if args.only:
        known = {s.name for s in REGISTRY} | {s.name for s in MULTISTATE_REGISTRY}
        unknown = [n for n in args.only if n not in known]
        if unknown:
            raise VlmsInputError(
                f"--only: no registered model named {unknown[0]}; known: {', '.join(sorted(known))}"
            )
        specs = [s for s in REGISTRY if s.name in args.only]
        ms_specs = multistate_specs(args.only)
    if args.members is not None and args.members < 1:
        raise VlmsInputError("--members must be at least 1")
    df = load_cohort(args.cohort)
    ens = ensemble_path(args)
    members = load_ensemble(ens, limit=args.members) if ens is not None else {}
    # every input problem before any output, even a progress line
    registry_jobs(specs, df, str(args.cohort), members, str(ens))
    check_multistate_specs(ms_specs, df, str(args.cohort))
    skipped = ensemble_skipped(args)
    if skipped:
        _log(f"vlms fit: {skipped}")
    _log(
        f"vlms fit: {len(specs) + len(ms_specs)} models on {args.cohort}"
        + (f" and {len(members)} reconstructions of {ens}" if members else "")
        + f" ({settings.sampler}, seed {settings.seed})"
    )
    out = Path(args.out_dir)
    multistate = functools.partial(
        run_multistate_registry, df, out, settings, ms_specs, log=_log, source=str(args.cohort)
    )
    if specs and ms_specs and members:
        names = ", ".join(s.name for s in ms_specs)
        _log(f"vlms fit: multi-state fits on the cohort only ({names})")
    result = (
        run_registry(
            df,
            out,
            settings,
            specs,
            log=_log,
            workers=args.workers,
            scheduler=args.scheduler,
            source=str(args.cohort),
            members=members,
            ensemble_source=str(ens),
            draws=args.draws,
            tune=args.tune,
            also=[multistate] if ms_specs else [],
            remedies=not args.no_remedies,
        )
        if specs
        else RegistryRun([], RunResult({}, [], {}, 0.0), len(members))
    )
    entries = list(result.entries)
    if ms_specs and not specs:  # else fitted beside the cohort's registry fits
        entries += multistate()
        write_fit_log(entries, out / "fits")
    run = result.run
    cohort_compile = sum(e.compile_seconds for e in entries)
    cohort_sample = sum(e.sampling_seconds for e in entries)
    compile_s = sum(run.compile.values())
    sample_s = sum(b["sampling_seconds"] for b in run.batches)
    cpu_s = sum(b["sampling_cpu_seconds"] + b["bar_cpu_seconds"] for b in run.batches)
    _log(
        f"vlms fit: {len(entries)} models on the cohort (compile {cohort_compile:.1f} s, "
        f"sampling {cohort_sample:.1f} s; log in {out / 'fits' / 'fit_log.csv'})"
    )
    _log(
        f"vlms fit: {len(run.results)} stacked fits in {len(run.batches)} batches "
        f"(compile or load {compile_s:.1f} s, sampling {run.seconds:.1f} s: {sample_s:.1f} s "
        f"wall and {cpu_s:.1f} s CPU summed over batches, writing {run.write_seconds:.1f} s; "
        f"log in {out / 'fits' / 'batch_log.csv'}); {time.perf_counter() - start:.1f} s wall"
    )
    failed = run.failed
    if failed:
        shown = ", ".join(failed[:8]) + (" ..." if len(failed) > 8 else "")
        _log(
            f"vlms fit: {len(failed)} fits still miss the sampling bar after every remedy "
            f"({shown}); see fits/batch_log.csv and `vlms diagnose`"
        )
        return EXIT_BAR_MISSED
    return 0


# --------------------------------------------------------------------------- any CSV


@dataclass(frozen=True)
class CsvInput:
    """A validated CSV for ``vlms fit --data``: the table (read as ``vlms check`` reads it),
    the cut points and the ``--times``."""

    table: SurvivalTable
    cuts: np.ndarray
    times: np.ndarray | None
    cuts_note: str = ""
    """Where the cut points come from (``--cuts``, or the data and why)."""

    @property
    def file(self) -> str:
        return self.table.file

    @property
    def time(self) -> np.ndarray:
        return self.table.time

    @property
    def event(self) -> np.ndarray:
        return self.table.event

    @property
    def missing(self) -> str:
        """``"impute"`` when the table keeps unknown covariate values, else ``"drop"``."""
        return "impute" if any(self.table.imputed.values()) else "drop"


def load_csv_input(args: argparse.Namespace) -> CsvInput:
    """Read and validate ``--data``; raise ``VlmsInputError`` at the first problem."""
    from models.survival_data import check_cuts

    table = load_survival_table(
        args.data,
        time=args.time,
        event=args.event,
        covariates=list(args.covariates or []),
        competing=bool(args.competing),
        missing=missing_mode(args),
    )
    if args.cuts is not None:
        try:
            cuts = check_cuts(args.cuts)
        except ValueError as exc:
            raise VlmsInputError(f"--cuts: {exc}", file=table.file) from None
        note = f"from --cuts ({len(cuts)} intervals)"
    else:
        cuts, note = data_cuts(table.time, table.event)
    times = report_times(args.times, table.file)
    return CsvInput(table, cuts, None if times is None else np.array(times), note)


def data_cuts(time: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, str]:
    """Default cut points of ``--data`` (quantiles of the event times) and why they are these."""
    from models.survival_data import MAX_INTERVALS, intervals_for_events, quantile_cuts

    n_events = int(np.sum(event > 0))
    wanted = intervals_for_events(n_events)
    cuts = quantile_cuts(time, event, wanted)
    note = (
        f"at quantiles of the {n_events} event times: {len(cuts)} intervals with about "
        f"{n_events / len(cuts):.0f} events each (ceil(sqrt(events)) = "
        f"{math.ceil(math.sqrt(n_events))}, at most {MAX_INTERVALS}"
        + (", fewer after rounding to 3 significant digits" if len(cuts) < wanted else "")
        + "); set them with --cuts"
    )
    return cuts, note


def missing_mode(args: argparse.Namespace) -> str:
    """``--missing`` (default ``impute``)."""
    return getattr(args, "missing", None) or "impute"


def time_unit(args: argparse.Namespace) -> str:
    """The unit of the time column (``--time-unit`` where given, else months)."""
    return str(getattr(args, "time_unit", None) or "months")


def source_record(args: argparse.Namespace, table: SurvivalTable) -> dict[str, Any]:
    """What the fit was made from, for the JSON and the NetCDF: the file name, never its rows."""
    return {
        "file": Path(table.file).name,
        "time_column": table.time_column,
        "event_column": table.event_column,
        "time_unit": time_unit(args),
        "event_coding": (
            "0 = censored, k = an event of cause k" if table.competing else EVENT_CODING
        ),
        "n_read": table.n_read,
        "dropped_by_column": table.dropped,
        "missing_rule": MISSING_RULES[missing_mode(args)],
        "missing_covariates": {
            "missing": missing_mode(args),
            "rows_used": table.n,
            "rows_dropped": table.n_dropped,
            "values_imputed": {c: table.imputed.get(c, 0) for c in table.covariates},
        },
        "notes": table.notes(),
        "cause_codes": list(table.causes) if table.competing else [],
    }


def _missing_note(source: dict[str, Any]) -> str:
    """``"2 dropped for a missing covariate"`` or ``"none dropped; values imputed: a 2"``."""
    m = source["missing_covariates"]
    imputed = ", ".join(f"{c} {k}" for c, k in m["values_imputed"].items() if k)
    if m["missing"] == "impute":
        return f"none dropped; values imputed: {imputed or 'none'}"
    return f"{m['rows_dropped']} dropped for a missing covariate"


def _run_csv(args: argparse.Namespace, settings: Any, imports: float = 0.0) -> int:
    from analysis.inference import diagnostics as diagnostics
    from analysis.inference.data import default_curve_times, make_fit_data
    from analysis.inference.engine import add_log_likelihood, add_prior, fit_model
    from analysis.inference.fit_report import covariate_notes, csv_results, format_results
    from analysis.inference.fits_io import write_outputs
    from analysis.inference.remedies import fit_with_remedies, ladder
    from models.priors import Priors

    timings = {"imports": imports}
    t1 = time.perf_counter()
    data_in = load_csv_input(args)
    table = data_in.table
    priors = Priors(effect_family=args.prior_family, effect_sd=float(args.prior_sd))
    source = source_record(args, table)
    unit = source["time_unit"]
    causes: tuple[str, ...] = ()
    event = table.event
    if args.competing:  # each cause keeps its code; the model numbers them 1..K
        causes = tuple(f"cause_{k}" for k in table.causes)
        index = {code: i + 1 for i, code in enumerate(table.causes)}
        event = np.array([index.get(int(v), 0) for v in event], dtype=int)
    grid = default_curve_times(table.time)
    if data_in.times is not None:  # the --times, on the curve's grid
        grid = np.union1d(grid, data_in.times)
    data = make_fit_data(
        table.time,
        event,
        table.covariates,
        cuts=data_in.cuts,
        cause_names=causes,
        curve_times=grid,
        time_unit=unit,
        missing=data_in.missing,
    )
    data = dataclasses.replace(data, n_dropped=table.n_dropped)
    timings["read"] = time.perf_counter() - t1
    _log(
        f"vlms fit: {data.n} rows ({_missing_note(source)}), "
        f"{int(np.sum(data.event > 0))} events; time unit {unit}"
    )
    _log(f"vlms fit: cut points ({unit}) {_numbers(data.cuts)}, {data_in.cuts_note}")
    kind = "competing" if args.competing else "pem"
    attrs = {
        "model_name": Path(table.file).stem,
        "source_file": source["file"],
        "time_column": table.time_column,
        "event_column": table.event_column,
        "time_unit": unit,
        "event_coding": source["event_coding"],
        "n_read": table.n_read,
        "missing_rule": source["missing_rule"],
        "input_notes": "; ".join(source["notes"]),
        "cuts_chosen": data_in.cuts_note,
    }
    if causes:
        attrs["cause_codes"] = ",".join(map(str, table.causes))
    compiled: dict[Any, Any] = {}
    steps: dict[str, float] = {}

    def run(s: Any, p: Priors) -> tuple[Any, tuple[bool, dict[str, Any]]]:
        done = compiled.get(p)
        note = "" if done is not None else " (compiling, or loading the compiled model)"
        _log(f"vlms fit: sampling ({s.sampler}, {s.chains} chains){note}")
        result, compiled[p] = fit_model(
            data,
            kind=kind,
            priors=p,
            settings=s,
            compiled=done,
            attrs=attrs,
            keep_rows=False,
            with_prior=False,  # prior draws and log-likelihood: for the NetCDF (--out) only
            with_loglik=False,
        )
        ta = time.perf_counter()
        summary = diagnostics.summarize(result.idata, jit=False)
        verdict = diagnostics.passes_bar(result.idata, summary)
        for name, seconds in (*result.timings.items(), ("diagnostics", time.perf_counter() - ta)):
            steps[name] = steps.get(name, 0.0) + seconds
        return result, verdict

    (result, (ok, details)), attempts = fit_with_remedies(
        run,
        lambda fitted: fitted[1],
        settings,
        priors,
        remedies=ladder(not args.no_remedies),
        log=lambda line: _log(f"vlms fit: {line}"),
    )
    timings.update(steps)
    shown = next(a for a in attempts if a.reported)
    used = dataclasses.replace(
        settings, target_accept=shown.target_accept, draws=shown.draws, tune=shown.tune
    )
    report = csv_results(result, data, details, used, source)
    report["cuts"] = {"points": data.cuts.tolist(), "unit": unit, "how": data_in.cuts_note}
    report["remedies"] = [a.as_dict() for a in attempts]
    result.idata.posterior.attrs["status"] = report["status"]
    result.idata.posterior.attrs["covariate_notes"] = "; ".join(covariate_notes(report))
    _log(
        f"vlms fit: compile {result.compile_seconds:.1f} s, sampling "
        f"{result.sampling_seconds:.2f} s; diagnostics bar {'met' if ok else 'MISSED'}"
    )
    times = None if data_in.times is None else data_in.times.tolist()
    print(format_results(report, times))
    t2 = time.perf_counter()
    if args.out is not None:  # prior draws and pointwise log-likelihood: the NetCDF's only
        p_used = dataclasses.replace(priors, parameterization=shown.parameterization)
        add_prior(result.idata, kind, data, p_used, settings.seed)
        add_log_likelihood(result.idata, kind, data)
        timings["prior_and_loglik"] = time.perf_counter() - t2
    write_outputs(result.idata, report, args.out, args.json, _log, timings)
    return 0 if ok else EXIT_BAR_MISSED


def _numbers(values: np.ndarray) -> str:
    return ", ".join(f"{v:g}" for v in values)
