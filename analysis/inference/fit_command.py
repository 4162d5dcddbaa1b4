"""``vlms fit``: the registry of fits on the cohort, or one model on any CSV.

Without ``--data``: every registered model (``analysis.inference.registry.REGISTRY``, or
``--only`` names) on ``--cohort``, written to ``<out-dir>/fits/``. The registry entries carry
their own cut points and priors, so ``--cuts``, ``--prior-sd`` and ``--prior-family`` apply to
``--data`` fits only.

With ``--data FILE --time COL --event COL --covariates A,B``: a piecewise-exponential model
(``--competing``: cause-specific hazards, each cause keeping its code) on the CSV, read exactly as
``vlms check`` reads it (:mod:`analysis.core.survival_table`): rows with a missing covariate are
dropped and counted; every other input problem is a one-line error (exit 2) found before anything
is sampled or written. Numeric covariates are centred at their mean and scaled by their SD
inside the model (0/1 ones keep 0 as the reference), so the answer does not depend on a column's
origin or unit; HRs are reported per unit of the column as given and per SD. A fit that misses
the sampling bar says so on stdout next to its numbers and in the JSON, and exits with status 3.
The saved NetCDF records the file name and columns, not the file's rows.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analysis.core.atomic import together, write_json
from analysis.core.errors import VlmsInputError
from analysis.core.survival_table import (
    EVENT_CODING,
    SurvivalTable,
    load_survival_table,
    report_times,
)

EXIT_BAR_MISSED = 3
"""Exit status of a ``--data`` fit that misses the sampling bar (its outputs say so too)."""
MISSING_RULE = "rows with a missing covariate are dropped (complete cases) and counted"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_cli(args: argparse.Namespace) -> int:
    """Handler of ``vlms fit``."""
    settings = _settings(args, str(args.data or args.cohort))
    if args.data is None:
        return _run_registry(args, settings)
    return _run_csv(args, settings)


def _settings(args: argparse.Namespace, file: str) -> Any:
    from analysis.inference.engine import SamplerSettings

    for name in ("draws", "tune", "chains"):
        if getattr(args, name) < 1:
            raise VlmsInputError(f"--{name} must be at least 1", file=file)
    if getattr(args, "prior_sd", 1.0) is not None and not (
        math.isfinite(args.prior_sd) and args.prior_sd > 0
    ):
        raise VlmsInputError("--prior-sd must be a positive number", file=file)
    if not 0.5 <= args.target_accept < 1:
        raise VlmsInputError("--target-accept must be in [0.5, 1)", file=file)
    return SamplerSettings(
        sampler=args.sampler,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        seed=args.seed,
        target_accept=args.target_accept,
        progress=False,
    )


# --------------------------------------------------------------------------- registry


def _run_registry(args: argparse.Namespace, settings: Any) -> int:
    from analysis.cohort import load_cohort
    from analysis.inference.registry import REGISTRY
    from analysis.inference.runner import run_registry
    from analysis.inference.spec_data import check_spec_data, spec_data

    start = time.perf_counter()
    specs = REGISTRY
    if args.only:
        known = {s.name for s in REGISTRY}
        unknown = [n for n in args.only if n not in known]
        if unknown:
            raise VlmsInputError(
                f"--only: no registered model named {unknown[0]}; known: {', '.join(sorted(known))}"
            )
        specs = [s for s in REGISTRY if s.name in args.only]
    df = load_cohort(args.cohort)
    for spec in specs:  # every input problem before any output, even a progress line
        check_spec_data(spec, spec_data(spec, df), str(args.cohort))
    _log(
        f"vlms fit: {len(specs)} models on {args.cohort} ({settings.sampler}, seed {settings.seed})"
    )
    entries = run_registry(
        df, Path(args.out_dir), settings, specs, log=_log, source=str(args.cohort)
    )
    total = time.perf_counter() - start
    compile_s = sum(e.compile_seconds for e in entries)
    sample_s = sum(e.sampling_seconds for e in entries)
    _log(
        f"vlms fit: {len(entries)} models in {total:.1f} s wall (compile {compile_s:.1f} s, "
        f"sampling {sample_s:.1f} s); log in {Path(args.out_dir) / 'fits' / 'fit_log.csv'}"
    )
    return 0


# --------------------------------------------------------------------------- any CSV


@dataclass(frozen=True)
class CsvInput:
    """A validated CSV for ``vlms fit --data``: the table (read as ``vlms check`` reads it),
    the cut points and the ``--times``."""

    table: SurvivalTable
    cuts: np.ndarray
    times: np.ndarray | None

    @property
    def file(self) -> str:
        return self.table.file

    @property
    def time(self) -> np.ndarray:
        return self.table.time

    @property
    def event(self) -> np.ndarray:
        return self.table.event


def load_csv_input(args: argparse.Namespace) -> CsvInput:
    """Read and validate ``--data``; raise ``VlmsInputError`` at the first problem."""
    from models.survival_data import DEFAULT_CUTS, check_cuts

    table = load_survival_table(
        args.data,
        time=args.time,
        event=args.event,
        covariates=list(args.covariates or []),
        competing=bool(args.competing),
    )
    if args.cuts is not None:
        try:
            cuts = check_cuts(args.cuts)
        except ValueError as exc:
            raise VlmsInputError(f"--cuts: {exc}", file=table.file) from None
    else:
        cuts = np.array([c for c in DEFAULT_CUTS if c < float(np.max(table.time))])
    times = report_times(args.times, table.file)
    return CsvInput(table, cuts, None if times is None else np.array(times))


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
        "missing_rule": MISSING_RULE,
        "notes": table.notes(),
        "cause_codes": list(table.causes) if table.competing else [],
    }


def _run_csv(args: argparse.Namespace, settings: Any) -> int:
    from analysis.inference import diagnostics as diagnostics
    from analysis.inference.data import default_curve_times, make_fit_data
    from analysis.inference.engine import fit_model, save_idata
    from analysis.inference.fit_report import covariate_notes, csv_results, format_results
    from models.priors import Priors

    data_in = load_csv_input(args)
    table = data_in.table
    priors = Priors(effect_family=args.prior_family, effect_sd=float(args.prior_sd))
    source = source_record(args, table)
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
    )
    data = dataclasses.replace(data, n_dropped=table.n_dropped)
    _log(
        f"vlms fit: {data.n} rows ({data.n_dropped} dropped for a missing covariate), "
        f"{int(np.sum(data.event > 0))} events, {len(data.cuts)} intervals; "
        f"compiling and sampling ({settings.sampler})"
    )
    kind = "competing" if args.competing else "pem"
    attrs = {
        "model_name": Path(table.file).stem,
        "source_file": source["file"],
        "time_column": table.time_column,
        "event_column": table.event_column,
        "time_unit": source["time_unit"],
        "event_coding": source["event_coding"],
        "n_read": table.n_read,
        "missing_rule": MISSING_RULE,
        "input_notes": "; ".join(source["notes"]),
    }
    if causes:
        attrs["cause_codes"] = ",".join(map(str, table.causes))
    result, _ = fit_model(
        data, kind=kind, priors=priors, settings=settings, attrs=attrs, keep_rows=False
    )
    summary = diagnostics.summarize(result.idata)
    ok, details = diagnostics.passes_bar(result.idata, summary)
    report = csv_results(result, data, details, settings, source)
    result.idata.posterior.attrs["status"] = report["status"]
    result.idata.posterior.attrs["covariate_notes"] = "; ".join(covariate_notes(report))
    _log(
        f"vlms fit: compile {result.compile_seconds:.1f} s, sampling "
        f"{result.sampling_seconds:.2f} s; diagnostics bar {'met' if ok else 'MISSED'}"
    )
    times = None if data_in.times is None else data_in.times.tolist()
    print(format_results(report, times))
    with together():  # both files or neither, even if interrupted between them
        if args.out is not None:
            save_idata(result.idata, args.out)
        if args.json is not None:
            write_json(args.json, report)
    for path in (args.out, args.json):
        if path is not None:
            _log(f"wrote {path}")
    return 0 if ok else EXIT_BAR_MISSED
