"""``vlms fit``: the registry of fits on the cohort, or one model on any CSV.

Without ``--data``: every registered model (``analysis.inference.registry.REGISTRY``, or
``--only`` names) on ``--cohort``, written to ``<out-dir>/fits/``. The registry entries carry
their own cut points and priors, so ``--cuts``, ``--prior-sd`` and ``--prior-family`` apply to
``--data`` fits only.

With ``--data FILE --time COL --event COL --covariates A,B``: a piecewise-exponential model
(``--competing``: cause-specific hazards, codes 1..K) on the CSV. Rows with a missing covariate are
dropped and counted; every other input problem is a one-line error (exit 2) found before anything
is sampled or written. The log-HR prior is per unit of each covariate (standardise continuous
covariates if a 1-unit change is not a sensible scale).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analysis.core.atomic import write_json
from analysis.core.csv_input import integer_codes, numeric_column, read_csv, require_columns
from analysis.core.errors import VlmsInputError

MAX_CAUSE = 9
"""With ``--competing`` the event codes are 0 (censored) and 1..MAX_CAUSE (as ``vlms check``)."""


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
    """A validated CSV for ``vlms fit --data``."""

    file: str
    time: np.ndarray
    event: np.ndarray
    covariates: dict[str, np.ndarray]
    n_dropped: int
    cuts: np.ndarray
    times: np.ndarray | None


def load_csv_input(args: argparse.Namespace) -> CsvInput:
    """Read and validate ``--data``; raise ``VlmsInputError`` at the first problem."""
    from models.survival_data import DEFAULT_CUTS, check_cuts

    file = str(args.data)
    if not args.time or not args.event:
        raise VlmsInputError("--time and --event are required with --data", file=file)
    names = list(args.covariates or [])
    if len(set(names)) != len(names):
        raise VlmsInputError("--covariates names a column twice", file=file)
    if args.time in names or args.event in names:
        raise VlmsInputError("--covariates must not include the time or event column", file=file)
    df = read_csv(args.data)
    require_columns(df, [args.time, args.event, *names], file)
    t = numeric_column(df, args.time, file, strictly_positive=True)
    allowed = range(MAX_CAUSE + 1) if args.competing else {0, 1}
    e = integer_codes(df, args.event, file, allowed)
    covs = {c: numeric_column(df, c, file, allow_missing=True) for c in names}
    keep = np.ones(t.size, dtype=bool)
    for x in covs.values():
        keep &= ~np.isnan(x)
    if not keep.any():
        raise VlmsInputError("every row has a missing covariate: nothing left to fit", file=file)
    if not (e[keep] > 0).any():
        raise VlmsInputError(
            "no events among the complete rows: nothing to estimate", file=file, column=args.event
        )
    for c, x in covs.items():
        kept = x[keep]
        if np.all(kept == kept[0]):
            raise VlmsInputError(
                "takes a single value (in the complete rows); no hazard ratio can be estimated",
                file=file,
                column=c,
            )
    if args.cuts is not None:
        try:
            cuts = check_cuts(args.cuts)
        except ValueError as exc:
            raise VlmsInputError(f"--cuts: {exc}", file=file) from None
    else:
        cuts = np.array([c for c in DEFAULT_CUTS if c < float(np.max(t[keep]))])
    times = None
    if args.times is not None:
        if any(not math.isfinite(v) or v <= 0 for v in args.times):
            raise VlmsInputError("--times must be finite and greater than 0", file=file)
        times = np.array(sorted(set(args.times)), dtype=float)
    return CsvInput(file, t, e, covs, int((~keep).sum()), cuts, times)


def _run_csv(args: argparse.Namespace, settings: Any) -> int:
    from analysis.inference import diagnostics as diagnostics
    from analysis.inference.data import default_curve_times, make_fit_data
    from analysis.inference.engine import fit_model, save_idata
    from models.priors import Priors

    data_in = load_csv_input(args)
    priors = Priors(effect_family=args.prior_family, effect_sd=float(args.prior_sd))
    causes: tuple[str, ...] = ()
    if args.competing:
        k = int(data_in.event.max())
        causes = tuple(f"cause_{i}" for i in range(1, k + 1))
    grid = data_in.times if data_in.times is not None else default_curve_times(data_in.time)
    data = make_fit_data(
        data_in.time,
        data_in.event,
        data_in.covariates,
        cuts=data_in.cuts,
        cause_names=causes,
        curve_times=grid,
    )
    _log(
        f"vlms fit: {data.n} rows ({data.n_dropped} dropped for a missing covariate), "
        f"{int(np.sum(data.event > 0))} events, {len(data.cuts)} intervals; "
        f"compiling and sampling ({settings.sampler})"
    )
    kind = "competing" if args.competing else "pem"
    attrs = {"model_name": Path(data_in.file).stem, "source_file": Path(data_in.file).name}
    result, _ = fit_model(data, kind=kind, priors=priors, settings=settings, attrs=attrs)
    summary = diagnostics.summarize(result.idata)
    ok, details = diagnostics.passes_bar(result.idata, summary)
    report = csv_results(result, data, summary, details, settings)
    _log(
        f"vlms fit: compile {result.compile_seconds:.1f} s, sampling "
        f"{result.sampling_seconds:.2f} s; diagnostics bar {'met' if ok else 'MISSED'}"
    )
    print(format_results(report))
    if args.out is not None:
        save_idata(result.idata, args.out)
        _log(f"wrote {args.out}")
    if args.json is not None:
        write_json(args.json, report)
        _log(f"wrote {args.json}")
    return 0


def _hr_block(post: Any, var: str, names: tuple[str, ...], sel: dict[str, Any]) -> dict:
    out: dict[str, dict[str, float]] = {}
    for name in names:
        b = post[var].sel(covariate=name, **sel).values.ravel()
        hr = np.exp(b)
        out[name] = {
            "hr_median": float(np.median(hr)),
            "hr_lower": float(np.quantile(hr, 0.025)),
            "hr_upper": float(np.quantile(hr, 0.975)),
            "prob_hr_gt_1": float(np.mean(b > 0)),
            "log_hr_mean": float(np.mean(b)),
            "log_hr_sd": float(np.std(b, ddof=1)),
        }
    return out


def csv_results(
    result: Any, data: Any, summary: Any, details: dict[str, Any], settings: Any
) -> dict[str, Any]:
    """The ``--json`` document of ``vlms fit --data``."""
    post = result.idata.posterior
    attrs = post.attrs
    doc: dict[str, Any] = {
        "n": data.n,
        "n_dropped": data.n_dropped,
        "events": int(np.sum(data.event > 0)),
        "covariates": _hr_block(post, "beta", data.covariate_names, {})
        if not data.cause_names
        else {},
        "diagnostics": {
            "max_rhat": details["max_rhat"],
            "min_ess_bulk": details["min_ess_bulk"],
            "min_ess_tail": details["min_ess_tail"],
            "divergences": details["divergences"],
            "min_bfmi": details["min_bfmi"],
            "meets_bar": not details["failing"] and details["divergences"] == 0,
        },
        "model": attrs.get("model_description"),
        "priors": attrs.get("priors"),
        "cut_points": data.cuts.tolist(),
        "sampler": {
            "name": settings.sampler,
            "draws": settings.draws,
            "tune": settings.tune,
            "chains": settings.chains,
            "seed": settings.seed,
            "compile_seconds": round(result.compile_seconds, 3),
            "sampling_seconds": round(result.sampling_seconds, 3),
        },
    }
    if data.cause_names:
        doc["causes"] = competing_results(post, data)
    return doc


def competing_results(post: Any, data: Any) -> dict[str, Any]:
    """Per cause (keyed by event code): cause-specific HRs and the standardised CIF."""
    out: dict[str, Any] = {}
    for k, cause in enumerate(data.cause_names, start=1):
        block: dict[str, Any] = {
            "events": int(np.sum(data.event == k)),
            "covariates": _hr_block(post, "beta", data.covariate_names, {"cause": cause}),
        }
        cif = post["cif"].sel(cause=cause)
        draws = cif.values.reshape(-1, cif.sizes["time"])
        block["cif"] = {
            "times": cif["time"].values.tolist(),
            "median": np.median(draws, axis=0).tolist(),
            "lower": np.quantile(draws, 0.025, axis=0).tolist(),
            "upper": np.quantile(draws, 0.975, axis=0).tolist(),
        }
        out[str(k)] = block
    return out


def format_results(doc: dict[str, Any]) -> str:
    """Human-readable summary of :func:`csv_results`."""
    lines = [
        f"n = {doc['n']} ({doc['n_dropped']} dropped for a missing covariate), "
        f"events = {doc['events']}",
        f"model: {doc['model']}",
        f"priors: {doc['priors']}",
    ]

    def hr_lines(block: dict[str, Any], indent: str) -> None:
        for name, r in block.items():
            lines.append(
                f"{indent}{name}: HR {r['hr_median']:.3g} (95% {r['hr_lower']:.3g}-"
                f"{r['hr_upper']:.3g}), P(HR > 1) = {r['prob_hr_gt_1']:.3f}"
            )

    hr_lines(doc["covariates"], "  ")
    for code, block in doc.get("causes", {}).items():
        lines.append(f"cause {code} ({block['events']} events):")
        hr_lines(block["covariates"], "    ")
    d = doc["diagnostics"]
    lines.append(
        f"diagnostics: max R-hat {d['max_rhat']:.4f}, min ESS bulk {d['min_ess_bulk']:.0f}, "
        f"tail {d['min_ess_tail']:.0f}, divergences {d['divergences']}"
    )
    return "\n".join(lines)
