"""Posterior cumulative incidence against Aalen-Johansen, at fixed times (issue 6).

For each saved competing-risk fit and each type of first event: the posterior median CIF and
its 95% equal-tailed interval (the fit's ``cif`` variable: cumulative incidence averaged over
the fit's patients' covariates), the Aalen-Johansen CIF with its 95% CI
(:func:`analysis.frequentist.cumulative_incidence`, log-log CI as lifelines, ties broken as R)
on the same patients (those the fit used), and the difference posterior median minus Aalen-Johansen;
per fit and time, the largest absolute difference over the causes.

Conventions: the posterior is read on its own month grid (``time`` coordinate); a requested
time not on that grid gives NaN (no interpolation). The Aalen-Johansen step function is read at
the last step at or before the time; where no patient is still under follow-up at that time
(nobody at risk) it is NaN rather than carried forward.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.core.atomic import write_json, write_text
from analysis.core.tables import json_safe, markdown_table
from analysis.frequentist import estimators as fq

COMPARISON_TIMES: tuple[float, ...] = (12.0, 24.0, 60.0, 120.0)
"""Months at which the table compares the two estimates."""
INTERVAL = "95% equal-tailed"
TIME_MATCH = 1e-6


@dataclass(frozen=True)
class FitPatients:
    """The patients a competing-risk fit used: months, cause codes 1..K (0 censored), names."""

    fit: str
    time: np.ndarray
    codes: np.ndarray
    cause_names: tuple[str, ...]
    n_subset: int


# --------------------------------------------------------------------------- shared pieces


def posterior_cif_draws(idata: Any, cause: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The posterior ``cif`` of one cause: (month grid, draws of shape ``(samples, times)``).

    None when the fit has no ``cif`` or not this cause. Extra dimensions (other than chain,
    draw, cause, time) are read at their first index.
    """
    if idata is None or "cif" not in idata.posterior:
        return None
    c = idata.posterior["cif"]
    if cause not in c.coords["cause"].values:
        return None
    c = c.sel(cause=cause)
    extra = [d for d in c.dims if d not in ("chain", "draw", "time")]
    c = c.isel({d: 0 for d in extra}).transpose("chain", "draw", "time")
    return np.asarray(c["time"].values, float), c.values.reshape(-1, c.sizes["time"])


def draw_quantiles(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(2.5%, median, 97.5%) over the draws (axis 0): the 95% equal-tailed interval."""
    lo, med, hi = np.quantile(draws, [0.025, 0.5, 0.975], axis=0)
    return lo, med, hi


def competing_patients(df: pd.DataFrame, names: Sequence[str]) -> list[FitPatients]:
    """Patients of each named competing-risk registry fit on cohort ``df`` (those it used:
    complete cases, or every patient of its subset when it imputes unknown covariates)."""
    from analysis.inference.registry import REGISTRY
    from analysis.inference.spec_data import SUBSETS, spec_data

    out = []
    for spec in REGISTRY:
        if spec.builder != "competing" or spec.name not in names:
            continue
        data = spec_data(spec, df)
        n_subset = int(np.sum(SUBSETS[spec.subset](df)))
        out.append(FitPatients(spec.name, data.time, data.event, data.cause_names, n_subset))
    return out


def matches_fit(patients: FitPatients, idata: Any) -> bool:
    """Whether the saved fit was fitted on these patients (its saved times and event codes).

    True when the fit saved no patient data to compare with.
    """
    try:
        t = np.asarray(idata.constant_data["time"].values, float)
        e = np.asarray(idata.observed_data["event"].values, int)
    except (AttributeError, KeyError):
        return True
    if t.size != patients.time.size or e.size != patients.codes.size:
        return False
    return bool(np.allclose(t, patients.time) and np.array_equal(e, patients.codes))


# --------------------------------------------------------------------------- the comparison


def _at(grid: np.ndarray, values: np.ndarray, t: float) -> float:
    hit = np.flatnonzero(np.abs(grid - t) <= TIME_MATCH)
    return float(values[hit[0]]) if hit.size else math.nan


def compare_fit(
    patients: FitPatients, idata: Any, times: Sequence[float] = COMPARISON_TIMES
) -> list[dict[str, Any]]:
    """One row per cause and time: posterior median and interval, Aalen-Johansen and CI,
    difference (posterior median minus Aalen-Johansen) and its absolute value."""
    at = np.asarray(times, float)
    causes = [k + 1 for k in range(len(patients.cause_names))]
    aj = fq.cumulative_incidence(patients.time, patients.codes, at, causes=causes)
    at_risk = np.array([int(np.sum(patients.time >= t)) for t in at])
    rows = []
    for k in causes:
        name = patients.cause_names[k - 1]
        post = posterior_cif_draws(idata, name)
        if post is not None:
            grid, draws = post
            lo, med, hi = draw_quantiles(draws)
        for i, t in enumerate(at):
            followed = at_risk[i] > 0
            a = aj[k]
            aj_v = a.cif[i] if followed else math.nan
            row: dict[str, Any] = {
                "fit": patients.fit,
                "n": int(patients.time.size),
                "cause": name,
                "months": float(t),
                "n_at_risk": int(at_risk[i]),
                "posterior_median": _at(grid, med, t) if post is not None else math.nan,
                "posterior_lower": _at(grid, lo, t) if post is not None else math.nan,
                "posterior_upper": _at(grid, hi, t) if post is not None else math.nan,
                "aj": aj_v,
                "aj_lower": a.lower[i] if followed else math.nan,
                "aj_upper": a.upper[i] if followed else math.nan,
            }
            row["difference"] = row["posterior_median"] - row["aj"]
            row["abs_difference"] = abs(row["difference"])
            rows.append(row)
    return rows


def largest_differences(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per fit and time: the largest absolute difference over the causes, and its cause.

    A time where no cause has a finite difference gives NaN and an empty cause.
    """
    out = []
    keys = list(dict.fromkeys((r["fit"], r["months"]) for r in rows))
    for fit, months in keys:
        group = [
            r
            for r in rows
            if r["fit"] == fit and r["months"] == months and math.isfinite(r["abs_difference"])
        ]
        best = max(group, key=lambda r: r["abs_difference"]) if group else None
        out.append(
            {
                "fit": fit,
                "months": months,
                "max_abs_difference": best["abs_difference"] if best else math.nan,
                "cause": best["cause"] if best else "",
            }
        )
    return out


def cif_comparison(
    df: pd.DataFrame, fits: dict[str, Any], times: Sequence[float] = COMPARISON_TIMES
) -> dict[str, Any]:
    """The whole comparison for every saved competing-risk fit in ``fits`` (name -> idata).

    Returns ``{"times", "interval", "fits": [{fit, n, n_subset}], "rows", "largest",
    "skipped": [{fit, reason}]}``; a fit whose saved patients differ from the cohort's is
    skipped (its posterior does not describe these patients).
    """
    rows: list[dict[str, Any]] = []
    used, skipped = [], []
    for p in competing_patients(df, list(fits)):
        if not matches_fit(p, fits[p.fit]):
            skipped.append(
                {"fit": p.fit, "reason": "saved fit was fitted on other patients than this cohort"}
            )
            continue
        used.append({"fit": p.fit, "n": int(p.time.size), "n_subset": p.n_subset})
        rows += compare_fit(p, fits[p.fit], times)
    return {
        "times": [float(t) for t in times],
        "interval": INTERVAL,
        "fits": used,
        "skipped": skipped,
        "rows": rows,
        "largest": largest_differences(rows),
    }


# --------------------------------------------------------------------------- rendering


def _f(v: Any, digits: int = 3) -> str:
    if not isinstance(v, int | float) or math.isnan(float(v)):
        return "-"
    return f"{float(v):.{digits}f}"


def _ci(est: Any, lo: Any, hi: Any) -> str:
    if not isinstance(est, int | float) or math.isnan(float(est)):
        return "-"
    return f"{_f(est)} ({_f(lo)}-{_f(hi)})"


def cause_label(cause: str) -> str:
    """A readable name of a cause code name (``local_distant`` -> ``local and distant``)."""
    return "local and distant" if cause == "local_distant" else cause.replace("_", " ")


def display_rows(result: dict[str, Any]) -> list[dict[str, str]]:
    """Formatted rows (column -> text) for the markdown, HTML and terminal tables."""
    out = []
    for r in result["rows"]:
        out.append(
            {
                "fit": str(r["fit"]),
                "first event": cause_label(str(r["cause"])),
                "months": f"{float(r['months']):g}",
                "at risk": str(r["n_at_risk"]),
                "posterior median (95% CrI)": _ci(
                    r["posterior_median"], r["posterior_lower"], r["posterior_upper"]
                ),
                "Aalen-Johansen (95% CI)": _ci(r["aj"], r["aj_lower"], r["aj_upper"]),
                "difference": _f(r["difference"]),
            }
        )
    return out


def largest_lines(result: dict[str, Any]) -> list[str]:
    """One line per time: the largest absolute difference over fits and causes."""
    lines = []
    for t in result["times"]:
        group = [
            m
            for m in result["largest"]
            if m["months"] == t and math.isfinite(m["max_abs_difference"])
        ]
        if not group:
            lines.append(f"{t:g} months: no comparable estimate")
            continue
        best = max(group, key=lambda m: m["max_abs_difference"])
        per_fit = ", ".join(
            f"{m['fit']} {m['max_abs_difference']:.3f} ({m['cause']})" for m in group
        )
        lines.append(
            f"{t:g} months: largest |posterior median - Aalen-Johansen| = "
            f"{best['max_abs_difference']:.3f} ({best['fit']}, {best['cause']}); per fit: {per_fit}"
        )
    return lines


def markdown(result: dict[str, Any], meta: dict[str, Any] | None = None) -> str:
    """``cif_comparison.md``: the table and the largest difference per time."""
    meta = meta or {}
    lines = [
        "# Cumulative incidence of the first event: posterior vs Aalen-Johansen",
        "",
    ]
    if "cohort" in meta:
        lines += [
            f"Cohort: `{meta['cohort']}` (n = {meta.get('n', '?')}); SYNTHETIC reconstruction.",
            "",
        ]
    lines += [
        f"Posterior: median and {result['interval']} interval of the competing-risk fit's CIF "
        "(averaged over the fit's patients' covariates). Aalen-Johansen: on the same complete-case "
        "patients, 95% CI as lifelines (log-log), ties broken as R's survfit. Difference: "
        "posterior median minus Aalen-Johansen; '-' where nobody is still followed at that time.",
        "",
    ]
    for f in result["fits"]:
        lines.append(f"- {f['fit']}: {f['n']} of {f['n_subset']} patients used")
    for s in result["skipped"]:
        lines.append(f"- {s['fit']}: skipped ({s['reason']})")
    lines.append("")
    if not result["rows"]:
        return "\n".join([*lines, "No saved competing-risk fit: run `make fit` first.", ""])
    lines += [markdown_table(display_rows(result)), "Largest absolute difference over causes:", ""]
    lines += [f"- {line}" for line in largest_lines(result)]
    return "\n".join(lines) + "\n"


def write_tables(result: dict[str, Any], meta: dict[str, Any], out_dir: Path) -> str:
    """Write ``<out_dir>/tables/cif_comparison.{csv,md,json}`` atomically; the markdown."""
    tables = Path(out_dir) / "tables"
    md = markdown(result, meta)
    write_text(tables / "cif_comparison.csv", pd.DataFrame(result["rows"]).to_csv(index=False))
    write_text(tables / "cif_comparison.md", md)
    write_json(tables / "cif_comparison.json", json_safe({**meta, **result}))
    return md


_NUMERIC = (
    "posterior_median",
    "posterior_lower",
    "posterior_upper",
    "aj",
    "aj_lower",
    "aj_upper",
    "difference",
    "abs_difference",
    "max_abs_difference",
)


def from_json(data: dict[str, Any]) -> dict[str, Any]:
    """The result as read back from ``cif_comparison.json`` (null numbers back to NaN)."""

    def fix(r: dict[str, Any]) -> dict[str, Any]:
        return {k: (math.nan if k in _NUMERIC and v is None else v) for k, v in r.items()}

    return {
        **data,
        "rows": [fix(r) for r in data.get("rows", [])],
        "largest": [fix(r) for r in data.get("largest", [])],
        "fits": data.get("fits", []),
        "skipped": data.get("skipped", []),
        "interval": data.get("interval", INTERVAL),
        "times": data.get("times", list(COMPARISON_TIMES)),
    }
