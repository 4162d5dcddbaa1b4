"""The ``vlms`` command: parses arguments and hands them to the function that does the work.

Each subcommand names its handler as ``"module:function"``; the module is imported only when
the subcommand runs, so ``vlms --help`` stays fast. A handler takes the parsed arguments and
returns an exit status. Bad input (``VlmsInputError``) becomes one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from analysis.core import interrupt
from analysis.core.errors import VlmsInputError
from analysis.core.parallel import ParallelStageError
from analysis.core.paths import project_path

DEFAULT_COHORT = project_path("data/cohort.csv")
DEFAULT_COHORTS = project_path("data/cohorts.csv")
DEFAULT_PUBLISHED = project_path("data/published.toml")
DEFAULT_REPORTS = Path("reports")
DEFAULT_SEED = 20260101
LIBRARIES = (
    r"(pytensor|pymc|arviz|nutpie|numba|xarray|lifelines|matplotlib|h5netcdf|h5py|numpy|pandas"
    r"|scipy)(\.|$)"
)
"""Modules whose warnings ``vlms`` does not print: what they warn about (divergences, R-hat,
ESS, convergence of a Cox fit) is measured and reported by vlms itself."""


def _csv_floats(text: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def _csv_names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _add_data_args(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument(
        "--data",
        type=Path,
        required=required,
        help="your comma-separated file with a header row (default: none: the paper's cohort "
        "and analyses)",
    )
    p.add_argument(
        "--time", help="column of follow-up times, all > 0 (no default: required with --data)"
    )
    p.add_argument(
        "--event",
        help="column of event codes: 0 censored, 1 event; with --competing 0 censored, 1..9 the "
        "cause (no default: required with --data)",
    )
    p.add_argument(
        "--covariates",
        type=_csv_names,
        default=[],
        help="numeric columns A,B,...; rows with a missing value (empty, NA, #N/A) are dropped "
        "and counted (default: none)",
    )
    p.add_argument(
        "--competing",
        action="store_true",
        help="the event codes are causes 1..K, each keeping its code (default: off: 0/1 event)",
    )
    p.add_argument(
        "--times",
        type=_csv_floats,
        help="times t1,t2,... (>= 0, in the data's unit) at which to report survival or "
        "cumulative incidence (default: none printed)",
    )
    p.add_argument("--json", type=Path, help="also write the results as JSON here (default: no)")


def build_parser() -> argparse.ArgumentParser:
    """The full ``vlms`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="vlms",
        description=(
            "Bayesian re-analysis of vascular leiomyosarcoma outcomes: the paper's numbers, "
            "a synthetic reconstructed cohort, frequentist checks (lifelines) and "
            "piecewise-exponential PyMC models, on the reconstruction or on your own CSV."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(handler=handler)
        return p

    p = add(
        "audit", "analysis.paper.audit:run_cli", "Audit the paper's numbers against each other."
    )
    p.add_argument("--published", type=Path, default=DEFAULT_PUBLISHED)
    p.add_argument("--out-dir", type=Path, default=DEFAULT_REPORTS)

    p = add(
        "check",
        "analysis.frequentist.check:run_cli",
        "Frequentist analyses (KM, log-rank, Cox, Aalen-Johansen, RMST). Without --data: "
        "reproduce the paper's analyses on data/cohort.csv into reports/tables/frequentist.*",
    )
    _add_data_args(p, required=False)
    p.add_argument("--group", help="column defining strata for KM and the log-rank test")
    p.add_argument(
        "--conf-type",
        choices=["log-log", "log"],
        default="log-log",
        help="KM confidence interval transform (log-log: lifelines; log: R's default)",
    )
    p.add_argument("--rmst-horizon", type=float, default=60.0, help="RMST horizon (months)")
    p.add_argument("--cohort", type=Path, default=DEFAULT_COHORT, help="cohort for the paper run")
    p.add_argument("--published", type=Path, default=DEFAULT_PUBLISHED)
    p.add_argument("--out-dir", type=Path, default=DEFAULT_REPORTS)

    p = add(
        "reconstruct",
        "analysis.reconstruction.pipeline:run_cli",
        "Reconstruct an ensemble of synthetic cohorts consistent with the published numbers "
        "(data/cohorts.csv, one member in data/cohort.csv, reports/calibration.*). With "
        "--validate: the round-trip validation of the method (reports/validation/).",
    )
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument(
        "--members", type=int, help="ensemble members (default 30; with --validate 19 per cohort)"
    )
    p.add_argument("--out", type=Path, default=DEFAULT_COHORT, help="the one-member cohort")
    p.add_argument("--ensemble-out", type=Path, default=DEFAULT_COHORTS, help="every member")
    p.add_argument("--published", type=Path, default=DEFAULT_PUBLISHED)
    p.add_argument("--out-dir", type=Path, default=DEFAULT_REPORTS)
    p.add_argument("--scheduler", help="address of a Dask distributed scheduler")
    p.add_argument(
        "--workers", type=int, default=2, help="local worker processes (0 or 1: this process)"
    )
    p.add_argument("--iterations", type=int, help="chain length per member (default: built in)")
    p.add_argument(
        "--validate",
        dest="handler",
        action="store_const",
        const="analysis.validation.roundtrip:run_cli",
        help="round-trip validation instead: reconstruct from simulated papers",
    )
    p.add_argument("--true-cohorts", type=int, default=20, help="--validate: simulated cohorts")

    p = add(
        "fit",
        "analysis.inference.fit_command:run_cli",
        "Sample posteriors. Without --data: every model in the registry on data/cohort.csv, "
        "to reports/fits/. With --data: a piecewise-exponential model (--competing: "
        "cause-specific hazards) on your CSV; exit status 3 if the fit misses the sampling bar.",
    )
    _add_data_args(p, required=False)
    p.add_argument(
        "--time-unit",
        choices=["days", "weeks", "months", "years"],
        default="months",
        help="--data: unit of the time column, --cuts and --times, and of the outputs' cut "
        "points and curve times (default: %(default)s)",
    )
    p.add_argument(
        "--cuts",
        type=_csv_floats,
        help="--data: interval starts 0,c1,c2,... in --time-unit (default: quantiles of the "
        "event times, ceil(sqrt(events)) intervals with equal events, at most 20; the log says "
        "which); set them to compare with another analysis",
    )
    p.add_argument(
        "--prior-sd",
        type=float,
        default=1.0,
        help="sd of the log-HR prior, per unit of a 0/1 covariate and per SD of a numeric one "
        "(default: %(default)s: 95%% of prior HRs in 0.14-7.1); raise it for a vaguer prior",
    )
    p.add_argument(
        "--prior-family",
        choices=["normal", "student_t"],
        default="normal",
        help="log-HR prior family (default: %(default)s); student_t (3 df) lets the data pull a "
        "large effect further from 1",
    )
    p.add_argument(
        "--draws",
        type=int,
        help="kept draws per chain (default: --data and the registry's cohort fits 1000; "
        "ensemble and prior sensitivity fits: by model kind, as many as "
        "the bar needs); raise it if ESS is below 400",
    )
    p.add_argument(
        "--tune",
        type=int,
        help="warm-up draws per chain (default: --data 1000; the registry's cohort fits 300 "
        "with nutpie, 1000 with pymc; ensemble and prior sensitivity fits 300); raise it if "
        "R-hat > 1.01",
    )
    p.add_argument(
        "--chains",
        type=int,
        default=4,
        help="independent chains (default: %(default)s); R-hat needs at least 2",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help="random seed: the same seed gives the same numbers (default: %(default)s)",
    )
    p.add_argument(
        "--sampler",
        choices=["nutpie", "pymc"],
        default="nutpie",
        help="NUTS implementation (default: %(default)s, compiled and fast); pymc if nutpie "
        "cannot compile on your machine",
    )
    p.add_argument(
        "--target-accept",
        type=float,
        default=0.95,
        help="NUTS target acceptance of the first attempt (default: %(default)s); a fit (--data, "
        "or the registry's cohort fits) with divergences or another miss of the sampling bar "
        "is refitted automatically (0.99 "
        "after divergences, twice the draws, the other baseline parameterisation; exit 3 if all "
        "miss)",
    )
    p.add_argument(
        "--no-remedies",
        action="store_true",
        help="report the first attempt as it is: no refit of a fit that misses the sampling bar "
        "(default: the remedies above; registry: also the members' refits); for quick looks",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="write the InferenceData (NetCDF) here, for vlms diagnose/report --fit "
        "(default: not written)",
    )
    p.add_argument(
        "--only",
        type=_csv_names,
        help="registry: fit only these model names (default: all)",
    )
    p.add_argument(
        "--cohort",
        type=Path,
        default=DEFAULT_COHORT,
        help="registry: the cohort file (default: the project's data/cohort.csv)",
    )
    p.add_argument(
        "--ensemble",
        type=Path,
        help="registry: also fit the complete-case models on every member of this ensemble "
        "(cohorts stacked with a reconstruction column; imputed and multi-state fits stay on "
        "the cohort; default: data/cohorts.csv when it exists and --cohort is the default)",
    )
    p.add_argument(
        "--no-ensemble",
        action="store_true",
        help="registry: the cohort only (default: the ensemble too, when there is one)",
    )
    p.add_argument(
        "--members",
        type=int,
        help="registry: fit the first N members only (default: all; make fit: 20)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=2,
        help="registry: worker processes (default: %(default)s; 1: in this process)",
    )
    p.add_argument(
        "--scheduler",
        help="registry: address of a Dask distributed scheduler (default: none, local workers)",
    )
    p.add_argument(
        "--out-dir",
        type=Path,
        default=DEFAULT_REPORTS,
        help="registry: where fits/ is written (default: %(default)s)",
    )
    p.add_argument(
        "--multistate",
        action="store_true",
        help="illness-death model (surgery -> recurrence -> death; needs --recurrence-time, "
        "--recurrence-event, --time, --event); default off: one survival model",
    )
    p.add_argument(
        "--recurrence-time",
        help="--multistate: column of times to recurrence, in --time-unit; empty where there "
        "was none (no default: required with --multistate)",
    )
    p.add_argument(
        "--recurrence-event",
        help="--multistate: column of recurrence codes, 0 none, 1 recurrence (or 1..R types) "
        "(no default: required with --multistate)",
    )
    p.add_argument(
        "--missing",
        choices=["impute", "drop"],
        help="--data: unknown values of a 0/1 covariate marginalised in the likelihood (impute, "
        "the default: every row used) or rows with a missing covariate dropped (drop)",
    )

    p = add(
        "diagnose",
        "analysis.inference.diagnostics:run_cli",
        "ArviZ diagnostics (the sampling bar; trace, rank, energy and prior plots) of the saved "
        "registry fits, or with --fit of one saved fit (e.g. from vlms fit --data --out).",
    )
    p.add_argument("--strict", action="store_true", help="exit 1 if any model misses the bar")
    p.add_argument("--fit", type=Path, help="one saved fit (NetCDF) to diagnose")
    p.add_argument(
        "--out-dir",
        type=Path,
        help="where diagnostics.md and figures/ go (default: reports; with --fit the fit's folder)",
    )

    p = add(
        "compare",
        "analysis.comparison.hazard_ratios:run_cli",
        "Hazard ratios: published, prior + published, across the reconstruction ensemble, "
        "selection-adjusted; prior sensitivity, CIF and LOO tables.",
    )
    p.add_argument("--cohort", type=Path, default=DEFAULT_COHORT)
    p.add_argument(
        "--ensemble",
        type=Path,
        help="ensemble for the members' Cox HRs (default: the file the saved fits came from, "
        "over the members they hold)",
    )
    p.add_argument("--published", type=Path, default=DEFAULT_PUBLISHED)
    p.add_argument("--out-dir", type=Path, default=DEFAULT_REPORTS)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)

    p = add(
        "report",
        "analysis.reporting.fit_page:run_cli",
        "Draw the figures and write reports/index.html from saved outputs; with --fit, a "
        "one-page report of one saved fit (e.g. from vlms fit --data --out).",
    )
    p.add_argument("--cohort", type=Path, default=DEFAULT_COHORT)
    p.add_argument("--fit", type=Path, help="one saved fit (NetCDF) to report on")
    p.add_argument(
        "--out-dir",
        type=Path,
        help="where the page and figures go (default: reports; with --fit the fit's folder)",
    )

    p = add(
        "validate",
        "analysis.validation.validate_command:run_cli",
        "Simulation-based calibration of the models and the simulation check of the "
        "selection-adjusted model (reports/validation/).",
    )
    p.add_argument("--parts", type=_csv_names, help="which checks: sbc,selection (default: both)")
    p.add_argument("--sims", type=int, default=200)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--scheduler", help="address of a Dask distributed scheduler")
    p.add_argument(
        "--workers", type=int, default=2, help="local worker processes (0: run in this process)"
    )
    p.add_argument(
        "--models", type=_csv_names, help="models to calibrate (default pem_tma,competing)"
    )
    p.add_argument("--draws", type=int, default=1000, help="posterior draws per chain per refit")
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--sampler", choices=["nutpie", "pymc"], default="nutpie")
    p.add_argument(
        "--no-remedies",
        action="store_true",
        help="do not refit a fit that misses the sampling bar (vlms fit's remedies)",
    )
    p.add_argument("--out-dir", type=Path, default=DEFAULT_REPORTS)

    p = add(
        "bench", "analysis.validation.bench:run_cli", "Timings: compile, sampling, ESS/s, scaling."
    )
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--parts",
        type=_csv_names,
        help="which parts to run: models,scaling,own_fit,make_fit (default: all four)",
    )
    p.add_argument("--sizes", help="scaling: patient counts, default 1000,10000,100000,1000000")
    p.add_argument("--expanded-max", type=int, default=10_000, help="largest expanded-rows fit")
    p.add_argument("--cox-max", type=int, default=1_000_000, help="largest lifelines Cox fit")
    p.add_argument("--pymc-models", choices=["table2", "all", "none"], default="table2")
    p.add_argument("--make-fit-repeats", type=int, default=1)
    p.add_argument("--cold", action="store_true", help="also time make fit in a fresh clone+venv")
    p.add_argument("--cohort", type=Path, default=DEFAULT_COHORT)
    p.add_argument("--out-dir", type=Path, default=DEFAULT_REPORTS)
    return parser


def _resolve(handler: str) -> Callable[[argparse.Namespace], int] | None:
    module_name, func_name = handler.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise
    return getattr(module, func_name, None)


STAGE_LOG_ENV = "VLMS_STAGE_LOG"
"""If set, every ``vlms`` command appends a JSON line (command, wall and CPU seconds, exit
status) to this file (used by ``vlms bench`` to time the stages of ``make fit``)."""


def _record_stage(command: str, wall: float, status: int) -> None:
    import json
    import os
    import resource

    path = os.environ.get(STAGE_LOG_ENV)
    if not path:
        return
    usage = (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    cpu = sum(u.ru_utime + u.ru_stime for u in usage)
    line = {"command": command, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "exit": status}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``vlms``; returns the exit status.

    Called from the command line (``argv`` None), the process ends as soon as the command is
    done (:func:`_exit_now`); called with ``argv`` (tests, other Python code), it returns.
    """
    warnings.filterwarnings("ignore", message=".*ArviZ is undergoing a major refactor.*")
    warnings.filterwarnings("ignore", module=LIBRARIES)
    # SIGTERM and Ctrl-C raise KeyboardInterrupt, which unwinds through the atomic writers
    # (they remove their temporary files); the signal is also recorded, so that a library that
    # swallows the exception cannot let the command carry on and write its outputs
    previous = interrupt.install()
    try:
        status = _run(argv)
    finally:
        interrupt.restore(previous)
    if argv is None:
        _exit_now(status)
    return status


def _exit_now(status: int) -> None:
    """End the process without tearing down the interpreter's modules.

    With PyMC, PyTensor, numba and ArviZ loaded, Python's own shutdown only frees memory and
    takes 1-2 s (measured: up to 6 s on a loaded machine), longer than a cached ``vlms fit
    --data`` takes to sample. Every output is already written (atomically) and closed; the
    ``atexit`` handlers are run and the standard streams flushed first. If a non-daemon thread
    is still running, the normal shutdown (which waits for it) is kept.
    """
    import atexit
    import os
    import threading

    main = threading.main_thread()
    if any(t is not main and t.is_alive() and not t.daemon for t in threading.enumerate()):
        return
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    status = _dispatch(args)
    _record_stage(args.command, time.perf_counter() - t0, status)
    return status


def _dispatch(args: argparse.Namespace) -> int:
    try:
        handler = _resolve(args.handler)
        if handler is None:
            print(f"vlms {args.command}: not built yet", file=sys.stderr)
            return 0
        status = int(handler(args) or 0)
    except VlmsInputError as exc:
        print(f"vlms {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ParallelStageError as exc:
        print(f"vlms {args.command}: error: {exc}", file=sys.stderr)
        return 4
    except KeyboardInterrupt:
        status = 130
    if status == 130 or interrupt.received() is not None:
        print(f"vlms {args.command}: interrupted; no partial output written", file=sys.stderr)
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
