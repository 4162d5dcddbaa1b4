"""What ``vlms fit --data`` tells the user: the JSON document and the console summary.

Both say what every number means: the file and columns it came from (never its rows), the time
unit, how the covariates were centred and scaled, that intervals are 95% equal-tailed, that
survival and cumulative incidence are averaged over the cohort's covariates, which covariates
only the prior can bound (monotone likelihood), and whether the fit met the sampling bar. A fit
that missed the bar says so next to its numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from analysis.core.separation import likelihood_shape
from analysis.inference.engine import CENTRING, INTERVALS
from analysis.inference.kinds import AVERAGED
from analysis.inference.remedies import attempt_line

FAILED = "SAMPLING BAR MISSED"


def failure_line(d: dict[str, Any]) -> str:
    """Which parts of the bar a fit missed, and what that means for its numbers."""
    from analysis.inference.diagnostics import ESS_MIN, RHAT_MAX

    missed = []
    if np.isnan(d["max_rhat"]):
        missed.append("R-hat not computable (it needs 2 or more chains)")
    elif not d["max_rhat"] <= RHAT_MAX:
        missed.append(f"max R-hat {d['max_rhat']:.3g} > {RHAT_MAX}")
    if not min(d["min_ess_bulk"], d["min_ess_tail"]) >= ESS_MIN:
        missed.append(f"min ESS {min(d['min_ess_bulk'], d['min_ess_tail']):.0f} < {ESS_MIN:.0f}")
    if d["divergences"]:
        missed.append(f"{d['divergences']} divergent transitions")
    return (
        f"{FAILED} ({', '.join(missed) or 'see the diagnostics'}): these numbers are not "
        "reliable; do not use them (the automatic refits, listed below and in the JSON's "
        "remedies, did not reach the bar: the numbers are the closest attempt's)"
    )


def hr_summary(log_hr: np.ndarray) -> dict[str, float]:
    """Median HR, its 95% equal-tailed interval, P(HR > 1) and the log-HR mean and sd."""
    b = np.asarray(log_hr, float).ravel()
    hr = np.exp(b)
    return {
        "hr_median": float(np.median(hr)),
        "hr_lower": float(np.quantile(hr, 0.025)),
        "hr_upper": float(np.quantile(hr, 0.975)),
        "prob_hr_gt_1": float(np.mean(b > 0)),
        "log_hr_mean": float(np.mean(b)),
        "log_hr_sd": float(np.std(b, ddof=1)),
    }


def covariate_block(post: Any, data: Any, sel: dict[str, Any], event: np.ndarray) -> dict:
    """Per covariate: HR per unit of the column, per scale unit (when it is not 1 unit), the
    coding, and a note when the likelihood is monotone in it (the prior decides its HR)."""
    out: dict[str, dict[str, Any]] = {}
    for j, coding in enumerate(data.codings):
        name = coding.name
        beta = post["beta"].sel(covariate=name, **sel).values
        block: dict[str, Any] = {"per": f"1 unit of {name}", **hr_summary(beta)}
        if coding.scale != 1.0:
            block["per_scale"] = {"per": coding.scale_label, **hr_summary(beta * coding.scale)}
        block["coding"] = coding.as_dict()
        known = ~np.isnan(data.x[:, j])  # an imputed covariate: where it is known
        note = separation_note(data.time[known], event[known], data.x[known, j], name)
        if note:
            block["note"] = note
        out[name] = block
    return out


def separation_note(time: np.ndarray, event: np.ndarray, x: np.ndarray, name: str) -> str:
    """A note when the data alone do not bound the HR of ``x`` (checked one covariate at a
    time, as a univariate Cox fit would see it); empty otherwise."""
    shape = likelihood_shape(time, event, x)
    if shape == "flat":
        return (
            f"'{name}' does not vary within any risk set at an event time: the data say "
            "nothing about its HR, which is the prior's"
        )
    if shape in ("+inf", "-inf"):
        side = "highest" if shape == "+inf" else "lowest"
        bound = "upper" if shape == "+inf" else "lower"
        return (
            f"monotone likelihood: at every event time the patient with the event has the {side} "
            f"'{name}' of those at risk, so the data set no {bound} bound on its HR; the prior "
            "decides how far the HR goes"
        )
    return ""


def curve_block(da: Any) -> dict[str, Any]:
    """Median and 95% equal-tailed band of a curve (dims chain, draw, time)."""
    draws = da.values.reshape(-1, da.sizes["time"])
    return {
        "times": da["time"].values.tolist(),
        "median": np.median(draws, axis=0).tolist(),
        "lower": np.quantile(draws, 0.025, axis=0).tolist(),
        "upper": np.quantile(draws, 0.975, axis=0).tolist(),
        "meaning": AVERAGED,
    }


def csv_results(
    result: Any,
    data: Any,
    details: dict[str, Any],
    settings: Any,
    source: dict[str, Any],
) -> dict[str, Any]:
    """The ``--json`` document of ``vlms fit --data``.

    ``source``: what the input was (``file``, ``time_column``, ``event_column``, ``time_unit``,
    ``event_coding``, ``n_read``, ``dropped_by_column``, ``missing_rule``, ``notes``,
    ``cause_codes``).
    """
    post = result.idata.posterior
    attrs = post.attrs
    meets = not details["failing"] and details["divergences"] == 0
    doc: dict[str, Any] = {
        **{k: v for k, v in source.items() if k != "cause_codes"},
        "n": data.n,
        "n_dropped": data.n_dropped,
        "events": int(np.sum(data.event > 0)),
        "status": "ok: the fit met the sampling bar" if meets else failure_line(details),
        "intervals": INTERVALS,
        "covariate_centring": CENTRING if data.covariate_names else None,
        "covariates": {}
        if data.cause_names
        else covariate_block(post, data, {}, (data.event > 0).astype(int)),
        "diagnostics": {
            "max_rhat": details["max_rhat"],
            "min_ess_bulk": details["min_ess_bulk"],
            "min_ess_tail": details["min_ess_tail"],
            "divergences": details["divergences"],
            "min_bfmi": details["min_bfmi"],
            "failing": details["failing"][:20],
            "meets_bar": meets,
        },
        "model": attrs.get("model_description"),
        "priors": attrs.get("priors"),
        "cut_points": data.cuts.tolist(),
        "sampler": sampler_record(settings, result),
    }
    if data.cause_names:
        doc["causes"] = competing_results(post, data, source["cause_codes"])
    else:
        doc["survival"] = curve_block(post["survival_averaged"])
    return doc


def competing_results(post: Any, data: Any, codes: list[int]) -> dict[str, Any]:
    """Per cause (keyed by the user's event code): cause-specific HRs and the CIF averaged over
    the cohort's covariates."""
    out: dict[str, Any] = {}
    for k, (code, cause) in enumerate(zip(codes, data.cause_names, strict=True), start=1):
        out[str(code)] = {
            "events": int(np.sum(data.event == k)),
            "covariates": covariate_block(
                post, data, {"cause": cause}, (data.event == k).astype(int)
            ),
            "cif": curve_block(post["cif"].sel(cause=cause)),
        }
    return out


def covariate_notes(doc: dict[str, Any]) -> list[str]:
    """The notes on covariates (monotone likelihood, no information) of a results document."""
    blocks = [("", doc["covariates"])]
    blocks += [(f"cause {code}: ", b["covariates"]) for code, b in doc.get("causes", {}).items()]
    return [f"{where}{r['note']}" for where, block in blocks for r in block.values() if "note" in r]


def format_results(doc: dict[str, Any], times: list[float] | None) -> str:
    """The console summary of :func:`csv_results`; ``times``: the ``--times`` to show."""
    unit = doc["time_unit"]
    failed = not doc["diagnostics"]["meets_bar"]
    lines = [doc["status"]] if failed else []
    lines += [
        f"{doc['file']}: time '{doc['time_column']}' ({unit}), event '{doc['event_column']}' "
        f"({doc['event_coding']}); n = {doc['n']}, events = {doc['events']}",
        *[f"note: {n}" for n in doc["notes"]],
        f"model: {doc['model']}",
        f"priors: {doc['priors']}",
        f"cut points ({unit}): {', '.join(f'{c:g}' for c in doc['cut_points'])}",
    ]
    if doc["covariate_centring"]:
        lines.append(
            "numeric covariates are centred at their means and scaled by their SD inside the "
            "model (0/1 ones keep 0 as the reference); HRs are per unit of each column as given "
            "(and per SD for numeric columns), with 95% equal-tailed intervals"
        )
    lines += _hr_lines(doc["covariates"], "  ")
    if "survival" in doc and times:
        lines.append(f"survival {AVERAGED}:")
        lines += _curve_lines(doc["survival"], times, unit, "  ")
    for code, block in doc.get("causes", {}).items():
        lines.append(f"cause {code} ({block['events']} events):")
        lines += _hr_lines(block["covariates"], "    ")
        if times:
            lines.append(f"    cumulative incidence, {AVERAGED}:")
            lines += _curve_lines(block["cif"], times, unit, "      ")
    lines += verdict_lines(doc)
    return "\n".join(lines)


def sampler_record(settings: Any, result: Any) -> dict[str, Any]:
    """The JSON's ``sampler``: settings of the reported attempt and its compile and sampling
    seconds."""
    return {
        "name": settings.sampler,
        "draws": settings.draws,
        "tune": settings.tune,
        "chains": settings.chains,
        "seed": settings.seed,
        "target_accept": settings.target_accept,
        "compile_seconds": round(result.compile_seconds, 3),
        "sampling_seconds": round(result.sampling_seconds, 3),
    }


def verdict_lines(doc: dict[str, Any]) -> list[str]:
    """The console's closing lines for a fit's JSON ``doc``: the diagnostics against the bar,
    the automatic refits (:func:`remedy_lines`) and, when the bar was missed, the status again."""
    d = doc["diagnostics"]
    failed = not d["meets_bar"]
    lines = [
        f"diagnostics: max R-hat {d['max_rhat']:.4f}, min ESS bulk {d['min_ess_bulk']:.0f}, "
        f"tail {d['min_ess_tail']:.0f}, divergences {d['divergences']}: sampling bar "
        f"{'MISSED (exit status 3)' if failed else 'met'}"
    ]
    lines += remedy_lines(doc, failed)
    if failed:
        lines.append(doc["status"])
    return lines


def remedy_lines(doc: dict[str, Any], failed: bool) -> list[str]:
    """How many automatic refits a fit took (the JSON's ``remedies``); every attempt when the
    bar was still missed."""
    refits = doc.get("remedies", [])[1:]
    if not refits:
        return []
    lines = [f"automatic refits after the first attempt missed the bar: {len(refits)}"]
    if failed:
        lines += [f"  {i}. {attempt_line(a)}" for i, a in enumerate(doc["remedies"], 1)]
    return lines


def _hr_lines(block: dict[str, Any], indent: str) -> list[str]:
    lines = []
    for name, r in block.items():
        text = f"{indent}{name}: HR {_hr(r)} per 1 unit"
        if "per_scale" in r:
            text += f"; {_hr(r['per_scale'])} per {r['per_scale']['per']}"
        lines.append(text + f"; P(HR > 1) = {r['prob_hr_gt_1']:.3f}")
        if "note" in r:
            lines.append(f"{indent}  note: {r['note']}")
    return lines


def _hr(r: dict[str, float]) -> str:
    return f"{r['hr_median']:.3g} (95% {r['hr_lower']:.3g}-{r['hr_upper']:.3g})"


def _curve_lines(curve: dict[str, Any], times: list[float], unit: str, indent: str) -> list[str]:
    grid = np.asarray(curve["times"], float)
    lines = []
    for t in times:
        i = int(np.argmin(np.abs(grid - t)))
        lines.append(
            f"{indent}at {t:g} {unit}: {curve['median'][i]:.3f} "
            f"(95% {curve['lower'][i]:.3f}-{curve['upper'][i]:.3f})"
        )
    return lines
