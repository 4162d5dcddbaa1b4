"""``vlms check``: frequentist analyses of any CSV, or (without ``--data``) the paper's.

With ``--data FILE --time COL --event COL``: Kaplan-Meier per stratum (``--group``), the
log-rank test, univariate and multivariable Cox fits of ``--covariates``, RMST to
``--rmst-horizon``, and with ``--competing`` the Aalen-Johansen cumulative incidence and a
cause-specific Cox model per cause. With ``--competing`` the KM curves, RMST and the (all-cause)
Cox fits treat any cause as the event. The file is read by
:func:`analysis.core.survival_table.load_survival_table`, as ``vlms fit --data`` reads it: rows
with a missing covariate or group are dropped from every analysis and counted, times must be
greater than 0, each cause keeps its code. Every input problem is found before anything is
computed or written.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from analysis.core.atomic import write_json
from analysis.core.errors import VlmsInputError
from analysis.core.survival_table import SurvivalTable, load_survival_table, report_times
from analysis.core.tables import json_safe
from analysis.frequentist import estimators as fq

OVERALL = "all"


def run_cli(args: argparse.Namespace) -> int:
    """Handler of ``vlms check``."""
    if args.data is None:
        from analysis.frequentist.paper_analyses import run_paper_check

        return run_paper_check(args)
    data = load_survival_table(
        args.data,
        time=args.time,
        event=args.event,
        covariates=list(args.covariates or []),
        group=args.group,
        competing=bool(args.competing),
    )
    times = report_times(args.times, str(args.data))
    results = analyse(
        data, times=times, conf_type=args.conf_type, rmst_horizon=float(args.rmst_horizon)
    )
    print(format_results(results))
    if args.json is not None:
        write_json(args.json, json_safe(results))
        print(f"\nwrote {args.json}")
    return 0


def _strata(data: SurvivalTable) -> dict[str, np.ndarray]:
    masks = {OVERALL: np.ones(data.time.size, dtype=bool)}
    if data.group is not None:
        for level in sorted(set(data.group.tolist())):
            masks[f"{data.group_column}={level}"] = data.group == level
    return masks


def analyse(
    data: SurvivalTable,
    *,
    times: list[float] | None = None,
    conf_type: fq.ConfType = "log-log",
    rmst_horizon: float = 60.0,
) -> dict[str, object]:
    """Every analysis ``vlms check --data`` reports, as a JSON-ready dict."""
    any_event = (data.event > 0).astype(float)
    out: dict[str, object] = {
        "file": Path(data.file).name,
        "time_column": data.time_column,
        "event_column": data.event_column,
        "n": int(data.time.size),
        "n_read": data.n_read,
        "n_dropped": data.n_dropped,
        "dropped_by_column": data.dropped,
        "missing_rule": "rows with a missing covariate or group are dropped from every analysis",
        "notes": data.notes(),
        "events": int(any_event.sum()),
        "conf_type": conf_type,
        "km": {},
    }
    km: dict[str, object] = {}
    rm: dict[str, object] = {}
    for name, mask in _strata(data).items():
        km[name] = fq.kaplan_meier(
            data.time[mask], any_event[mask], times, conf_type=conf_type
        ).to_dict()
        rm[name] = fq.rmst(data.time[mask], any_event[mask], rmst_horizon).to_dict()
    out["km"] = km
    out["rmst"] = rm
    if data.group is not None:
        out["logrank"] = fq.logrank(data.time, any_event, data.group).to_dict()
    if data.covariates:
        out["cox"] = {
            name: _cox_terms(data, any_event, {name: x})[name]
            for name, x in data.covariates.items()
        }
        out["cox_multivariable"] = _cox_terms(data, any_event, data.covariates)
    if data.competing:
        causes = list(data.causes)
        cif = fq.cumulative_incidence(data.time, data.event, times, causes=causes)
        out["cif"] = {str(k): v.to_dict() for k, v in cif.items()}
        if data.covariates:
            out["cause_specific_cox"] = {
                str(k): _cox_terms(data, (data.event == k).astype(float), data.covariates)
                for k in causes
            }
    return out


def _cox_terms(
    data: SurvivalTable, event: np.ndarray, covariates: dict[str, np.ndarray]
) -> dict[str, dict[str, object]]:
    if not (event > 0).any():
        return {c: {"note": "no events"} for c in covariates}
    try:
        res = fq.cox(data.time, event, covariates)
    except Exception as exc:  # lifelines: singular information (collinear covariates)
        if type(exc).__name__ in {"ConvergenceError", "LinAlgError"}:
            raise VlmsInputError(
                "the Cox fit failed (collinear covariates?): " + ", ".join(covariates),
                file=data.file,
            ) from None
        raise
    return {c: term.to_dict() for c, term in res.terms.items()}


def fmt(x: object, digits: int = 3) -> str:
    """A number for the printed table: NaN as '-', infinities spelled out."""
    if x is None:
        return "-"
    if isinstance(x, int | np.integer):
        return str(int(x))
    v = float(x)  # type: ignore[arg-type]
    if math.isnan(v):
        return "-"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.{digits}g}" if abs(v) >= 1e4 or (v != 0 and abs(v) < 1e-3) else f"{v:.{digits}f}"


def fmt_median(x: object) -> str:
    """A median for the printed table: NaN is 'NR' (not reached)."""
    return "NR" if isinstance(x, float) and math.isnan(x) else fmt(x)


def _cox_lines(title: str, terms: dict[str, dict[str, object]]) -> list[str]:
    lines = [title, f"  {'covariate':<20}{'HR':>10}{'95% CI':>22}{'Wald P':>10}{'LR P':>10}"]
    for name, t in terms.items():
        if "note" in t:
            lines.append(f"  {name:<20}{t['note']}")
            continue
        if not t.get("estimable", True):
            lines.append(f"  {name:<20}not estimable (constant within every risk set)")
            continue
        if t["monotone"]:
            label = "infinite" if t["hr"] else "zero"
            lines.append(f"  {name:<20}{label} (monotone likelihood)")
            continue
        ci = f"{fmt(t['lower'])}-{fmt(t['upper'])}"
        lines.append(
            f"  {name:<20}{fmt(t['hr']):>10}{ci:>22}{fmt(t['p'], 4):>10}{fmt(t['lr_p'], 4):>10}"
        )
    return lines


def format_results(res: dict[str, object]) -> str:
    """A readable plain-text rendering of :func:`analyse`'s result."""
    lines = [
        f"{res['file']}: n = {res['n']}, events = {res['events']} "
        f"(time '{res['time_column']}', event '{res['event_column']}'); "
        f"KM CI: Greenwood, {res['conf_type']} transform",
        *[f"note: {n}" for n in res.get("notes", [])],  # type: ignore[attr-defined]
        "",
        "Kaplan-Meier",
    ]
    km: dict[str, dict[str, object]] = res["km"]  # type: ignore[assignment]
    for name, k in km.items():
        med = (
            f"{fmt_median(k['median'])} "
            f"({fmt_median(k['median_lower'])}-{fmt_median(k['median_upper'])})"
        )
        lines.append(f"  {name}: n = {k['n']}, events = {k['events']}, median {med}")
        times: list[float] = k["times"]  # type: ignore[assignment]
        if len(times) <= 20:
            lines.append(f"    {'time':>10}{'at risk':>9}{'S(t)':>8}{'95% CI':>18}")
            for i, t in enumerate(times):
                ci = f"{fmt(k['lower'][i])}-{fmt(k['upper'][i])}"  # type: ignore[index]
                lines.append(
                    f"    {fmt(t, 2):>10}{k['n_at_risk'][i]:>9}{fmt(k['survival'][i]):>8}{ci:>18}"  # type: ignore[index]
                )
        else:
            lines.append(f"    ({len(times)} time points: see --json, or give --times)")
    rm: dict[str, dict[str, float]] = res["rmst"]  # type: ignore[assignment]
    lines += ["", "Restricted mean survival time"]
    for name, r in rm.items():
        lines.append(
            f"  {name}: RMST to {fmt(r['horizon'], 1)} = {fmt(r['rmst'])} (SE {fmt(r['se'])})"
        )
    if "logrank" in res:
        lr: dict[str, float] = res["logrank"]  # type: ignore[assignment]
        lines += [
            "",
            f"Log-rank: chi-square {fmt(lr['chisq'])}, df {lr['df']}, P {fmt(lr['p'], 4)}",
        ]
    if "cox" in res:
        lines += ["", *_cox_lines("Cox, univariate (Efron ties)", res["cox"])]  # type: ignore[arg-type]
        lines += ["", *_cox_lines("Cox, multivariable", res["cox_multivariable"])]  # type: ignore[arg-type]
    if "cif" in res:
        lines += ["", "Aalen-Johansen cumulative incidence (log-log CI)"]
        cif: dict[str, dict[str, list[float]]] = res["cif"]  # type: ignore[assignment]
        for cause, c in cif.items():
            lines.append(f"  cause {cause}:")
            if len(c["times"]) > 20:
                lines.append(f"    ({len(c['times'])} time points: see --json, or give --times)")
                continue
            for i, t in enumerate(c["times"]):
                lines.append(
                    f"    t = {fmt(t, 2):>8}: {fmt(c['cif'][i])} "
                    f"({fmt(c['lower'][i])}-{fmt(c['upper'][i])})"
                )
        for cause, terms in res.get("cause_specific_cox", {}).items():  # type: ignore[union-attr]
            lines += ["", *_cox_lines(f"Cause-specific Cox, cause {cause}", terms)]
    return "\n".join(lines)
