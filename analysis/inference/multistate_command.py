"""``vlms fit --data FILE --multistate``: the illness-death model on any CSV.

Columns (times from entry, e.g. surgery, in ``--time-unit``, default months):
``--recurrence-time`` and ``--recurrence-event`` (0 none; 1 recurrence, or 1..R recurrence
types, the smallest code present the reference), ``--time`` (death or last contact) and
``--event`` (0 alive; 1 dead, or 1..K causes of death with ``--competing``), baseline
``--covariates``. The recurrence time may be empty where there was no recurrence. Every input
problem, a death at the moment of recurrence among them, is a one-line error (exit 2) found
before anything is sampled or written.

Rows with a missing covariate are dropped and counted (the illness-death model has no imputation
of missing covariates; ``--missing impute`` is refused). Cut points: the first clock's are
``--cuts`` or, like the clock since the recurrence, the registry's (0, 6, 12, 24, 36, 60, 84,
120 months, converted to the data's unit) below the clock's longest time. Not the event-time
quantiles of the other ``--data`` fits: one set of cut points serves every hazard of a clock,
and quantiles of the pooled events would follow the most common transition; these are the cuts
the registry's illness-death fit meets the sampling bar with. The horizons of the death
probabilities after a recurrence are 2 and 5 years in the data's unit.

A fit that misses the sampling bar is refitted with the remedies of
:mod:`analysis.inference.remedies` (each attempt in the JSON's ``remedies``); if every attempt
misses it, the closest is reported, says so, and the exit status is 3.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from analysis.core.csv_input import numeric_column, read_csv, require_columns
from analysis.core.errors import VlmsInputError
from analysis.core.survival_table import event_codes, report_times, time_column
from analysis.inference.multistate_data import (
    HORIZONS,
    ILL_STATE,
    START_STATE,
    MultistateData,
    check_informative,
    refuse_zero_sojourn,
)
from models import multistate as ms
from models.survival_data import DEFAULT_CUTS, check_cuts

STANDARD_CUTS = (
    "the registry's cut points (0, 6, 12, 24, 36, 60, 84, 120 months, in the data's unit) below "
    "the clock's longest time"
)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _columns(args: argparse.Namespace, file: str) -> dict[str, str]:
    """The role -> column mapping, checked for presence and overlap."""
    roles = {
        "--recurrence-time": args.recurrence_time,
        "--recurrence-event": args.recurrence_event,
        "--time": args.time,
        "--event": args.event,
    }
    absent = [flag for flag, col in roles.items() if not col]
    if absent:
        raise VlmsInputError(
            f"--multistate needs {', '.join(roles)}; missing: {', '.join(absent)}", file=file
        )
    names = list(args.covariates or [])
    if len(set(names)) != len(names):
        raise VlmsInputError("--covariates names a column twice", file=file)
    used = list(roles.values())
    if len(set(used)) != len(used) or set(used) & set(names):
        raise VlmsInputError(
            "the recurrence, time, event and covariate columns must all differ", file=file
        )
    return roles


def clock_cuts(limit: float, unit: str) -> np.ndarray:
    """The registry's standard cut points (:data:`~models.survival_data.DEFAULT_CUTS`, months)
    in ``unit``, below ``limit`` (at least the first, 0)."""
    from analysis.inference.data import TIME_UNITS

    cuts = np.asarray(DEFAULT_CUTS, float) * TIME_UNITS[unit]
    return np.array([c for c in cuts if c < limit] or [0.0])


def load_multistate_csv(args: argparse.Namespace, unit: str = "months") -> MultistateData:
    """Read and validate ``--data`` for ``--multistate`` (times in ``unit``); raise
    ``VlmsInputError`` at the first problem."""
    from analysis.inference.data import TIME_UNITS, default_curve_times

    file = str(args.data)
    roles = _columns(args, file)
    if getattr(args, "missing", None) == "impute":
        raise VlmsInputError(
            "--missing impute is not available with --multistate (rows with a missing covariate "
            "are dropped); use --missing drop",
            file=file,
        )
    df = read_csv(args.data)
    names = list(args.covariates or [])
    require_columns(df, [*roles.values(), *names], file)
    exit_time = time_column(df, args.time, file)
    death = event_codes(df, args.event, file, bool(args.competing))
    code = event_codes(df, args.recurrence_event, file, competing=True)  # 0 none, 1..R types
    ill = code > 0
    ill_time = numeric_column(df, args.recurrence_time, file, allow_missing=True)
    _check_recurrence_times(ill, ill_time, exit_time, file, args.recurrence_time)
    refuse_zero_sojourn(ill, ill_time, exit_time, death, file, args.recurrence_time)
    covs = {c: numeric_column(df, c, file, allow_missing=True) for c in names}
    x = np.column_stack([covs[c] for c in names]) if names else np.zeros((len(df), 0))
    keep = ~np.isnan(x).any(axis=1)
    if not keep.any():
        raise VlmsInputError("every row has a missing covariate: nothing left to fit", file=file)
    present = sorted(set(code[ill & keep].tolist()))
    marks = tuple(f"type_{c}" for c in present) if len(present) > 1 else (ILL_STATE,)
    mark = np.where(ill, np.searchsorted(present, code), -1) if present else np.full(code.size, -1)
    n_causes = int(death.max()) if args.competing else 1
    deaths = (
        tuple(f"dead_cause_{k}" for k in range(1, n_causes + 1)) if args.competing else ("dead",)
    )
    structure = ms.IllnessDeath(
        marks=marks, deaths=deaths or ("dead",), start_state=START_STATE, ill_state=ILL_STATE
    )
    paths = ms.IllnessDeathPaths.from_arrays(
        np.where(ill, ill_time, np.nan)[keep], mark[keep], exit_time[keep], death[keep], x[keep]
    )
    first = np.where(paths.ill, paths.ill_time, paths.exit_time)
    if args.cuts is not None:
        try:
            cuts_start = check_cuts(args.cuts)
        except ValueError as exc:
            raise VlmsInputError(f"--cuts: {exc}", file=file) from None
        note_start = f"from --cuts ({len(cuts_start)} intervals)"
    else:
        cuts_start, note_start = clock_cuts(float(first.max()), unit), STANDARD_CUTS
    sojourn = np.nan_to_num(paths.sojourn)
    cuts_ill = clock_cuts(float(sojourn.max()), unit)
    times = default_curve_times(paths.exit_time)
    requested = report_times(args.times, file)
    if requested is not None:
        times = np.array(sorted(set(requested)), dtype=float)
    data = MultistateData(
        paths=paths,
        structure=structure,
        covariate_names=tuple(names),
        cuts_start=cuts_start,
        cuts_ill=cuts_ill,
        curve_times=times,
        horizons=np.array(HORIZONS) * TIME_UNITS[unit],
        n_dropped=int((~keep).sum()),
        time_unit=unit,
        cuts_note=f"since entry: {note_start}; since the recurrence: {STANDARD_CUTS}",
    )
    check_informative(data, "illness-death data", file)
    return data


def _check_recurrence_times(
    ill: np.ndarray, ill_time: np.ndarray, exit_time: np.ndarray, file: str, column: str
) -> None:
    """A recurrence needs a time in (0, exit time]."""
    checks = [
        (ill & np.isnan(ill_time), "missing recurrence time for a recurrence"),
        (ill & ~(np.nan_to_num(ill_time, nan=1.0) > 0), "recurrence time must be greater than 0"),
        (
            ill & (np.nan_to_num(ill_time) > exit_time),
            "recurrence after the end of follow-up (the time column)",
        ),
    ]
    for bad, message in checks:
        if bad.any():
            raise VlmsInputError(message, file=file, column=column, row=int(np.argmax(bad)) + 1)


def run_multistate_csv(args: argparse.Namespace, settings: Any, unit: str = "months") -> bool:
    """Handler of ``vlms fit --data FILE --multistate`` (times in ``unit``); returns whether
    the reported fit met the sampling bar."""
    import dataclasses

    from analysis.inference import diagnostics
    from analysis.inference.fits_io import write_outputs
    from analysis.inference.multistate_fit import (
        PRIOR_DRAWS,
        build_model,
        fit_multistate,
        sample_prior,
    )
    from analysis.inference.remedies import fit_with_remedies, ladder
    from models.priors import Priors

    file = str(args.data)
    if settings.sampler != "nutpie":
        raise VlmsInputError("--multistate samples with nutpie only (drop --sampler)", file=file)
    data = load_multistate_csv(args, unit)
    priors = Priors(effect_family=args.prior_family, effect_sd=float(args.prior_sd))
    _log(
        f"vlms fit: illness-death model, {data.n} rows ({data.n_dropped} dropped for a missing "
        f"covariate; no values imputed), {data.events} transitions observed; time unit "
        f"{data.time_unit}"
    )
    _log(f"vlms fit: cut points ({data.time_unit}) {data.cuts_note}")
    attrs = {
        "model_name": Path(file).stem,
        "source_file": Path(file).name,
        "cuts_chosen": data.cuts_note,
    }
    compiled: dict[Priors, Any] = {}

    def run(s: Any, p: Priors) -> tuple[Any, tuple[bool, dict[str, Any]]]:
        note = "" if p in compiled else " (compiling)"
        _log(f"vlms fit: sampling (nutpie, {s.chains} chains){note}")
        result = fit_multistate(
            data, priors=p, settings=s, attrs=attrs, prior_draws=0, compiled=compiled.get(p)
        )
        compiled[p] = result.compiled
        summary = diagnostics.summarize(result.idata, jit=False)
        return result, diagnostics.passes_bar(result.idata, summary)

    (result, (ok, details)), attempts = fit_with_remedies(
        run,
        lambda fitted: fitted[1],
        settings,
        priors,
        remedies=ladder(not args.no_remedies),
        log=lambda line: _log(f"vlms fit: {line}"),
    )
    shown = next(a for a in attempts if a.reported)
    used = dataclasses.replace(
        settings, target_accept=shown.target_accept, draws=shown.draws, tune=shown.tune
    )
    p_used = dataclasses.replace(priors, parameterization=shown.parameterization)
    if args.out is not None:  # prior draws: the NetCDF's only
        model = build_model(data, p_used)
        result.idata.add_groups({"prior": sample_prior(model, data, PRIOR_DRAWS, settings.seed)})
    doc = multistate_results(result, data, details, used)
    doc["remedies"] = [a.as_dict() for a in attempts]
    result.idata.posterior.attrs["status"] = doc["status"]
    _log(
        f"vlms fit: compile {result.compile_seconds:.1f} s, sampling "
        f"{result.sampling_seconds:.2f} s; diagnostics bar {'met' if ok else 'MISSED'}"
    )
    print(format_multistate(doc))
    write_outputs(result.idata, doc, args.out, args.json, _log)
    return bool(ok)


# --------------------------------------------------------------------------- results


def _bands(da: Any, dim: str) -> dict[str, list[float]]:
    """Median and 95% equal-tailed band of a (chain, draw, dim) array."""
    values = da.transpose("chain", "draw", dim).values.reshape(-1, da.sizes[dim])
    lo, med, hi = np.quantile(values, [0.025, 0.5, 0.975], axis=0)
    return {
        "times": [float(t) for t in da[dim].values],
        "median": med.tolist(),
        "lower": lo.tolist(),
        "upper": hi.tolist(),
    }


def transition_results(post: Any, data: MultistateData) -> dict[str, Any]:
    """Per transition: patients at risk, events, and the HR of each free effect."""
    from analysis.inference.fit_report import hr_summary

    s = data.structure
    covariates = [*data.covariate_names, *s.ill_covariates]
    mask = data.effect_mask()
    out: dict[str, Any] = {}
    for t, count in enumerate(data.counts):
        name = count["transition"]
        free = tuple(c for c, m in zip(covariates, mask[t], strict=True) if m)
        block = {c: hr_summary(post["beta"].sel(transition=name, covariate=c).values) for c in free}
        out[name] = {
            "n_at_risk": count["n_at_risk"],
            "events": count["events"],
            "covariates": block,
            "not_estimated": [c for c in covariates if c not in free],
        }
    return out


def multistate_results(
    result: Any, data: MultistateData, details: dict[str, Any], settings: Any
) -> dict[str, Any]:
    """The ``--json`` document of ``vlms fit --data FILE --multistate``."""
    import dataclasses

    from analysis.inference.fit_report import failure_line, sampler_record

    post = result.idata.posterior
    occupation = post["state_occupation"]
    cif = post["cif_after_recurrence"]
    meets = not details["failing"] and details["divergences"] == 0
    return {
        "status": "ok: the fit met the sampling bar" if meets else failure_line(details),
        "n": data.n,
        "n_dropped": data.n_dropped,
        "missing": "drop",
        "values_imputed": dict.fromkeys(data.covariate_names, 0),
        "states": list(occupation["state"].values),
        "transitions": transition_results(post, data),
        "state_occupation": {
            str(s): _bands(occupation.sel(state=s), "time") for s in occupation["state"].values
        },
        "death_after_recurrence": {
            str(r): {
                str(d): _bands(cif.sel(recurrence_type=r, death=d), "time_since_recurrence")
                for d in cif["death"].values
            }
            for r in cif["recurrence_type"].values
        },
        "diagnostics": {
            **{k: details[k] for k in ("max_rhat", "min_ess_bulk", "min_ess_tail", "min_bfmi")},
            "divergences": details["divergences"],
            "meets_bar": meets,
        },
        "model": post.attrs.get("model_description"),
        "priors": post.attrs.get("priors"),
        "time_unit": data.time_unit,
        "cut_points": {
            "since_entry": data.cuts_start.tolist(),
            "since_recurrence": data.cuts_ill.tolist(),
            "how": data.cuts_note,
        },
        "horizons": data.horizons.tolist(),
        "sampler": sampler_record(dataclasses.replace(settings, sampler="nutpie"), result),
    }


def format_multistate(doc: dict[str, Any]) -> str:
    """Human-readable summary of :func:`multistate_results`."""
    from analysis.inference.fit_report import verdict_lines

    failed = not doc["diagnostics"]["meets_bar"]
    lines = [doc["status"]] if failed else []
    lines += [
        f"n = {doc['n']} ({doc['n_dropped']} dropped for a missing covariate; no values imputed)",
        f"model: {doc['model']}",
        f"priors: {doc['priors']}",
    ]
    for name, t in doc["transitions"].items():
        lines.append(f"{name}: {t['n_at_risk']} at risk, {t['events']} events")
        for cov, r in t["covariates"].items():
            lines.append(
                f"    {cov}: HR {r['hr_median']:.3g} (95% {r['hr_lower']:.3g}-"
                f"{r['hr_upper']:.3g}), P(HR > 1) = {r['prob_hr_gt_1']:.3f}"
            )
    last = {s: (b["times"][-1], b["median"][-1]) for s, b in doc["state_occupation"].items()}
    shown = ", ".join(f"{s} {p:.2f}" for s, (_, p) in last.items())
    unit = doc["time_unit"]
    lines.append(f"state occupation at {next(iter(last.values()))[0]:g} {unit}: {shown}")
    lines += verdict_lines(doc)
    return "\n".join(lines)
