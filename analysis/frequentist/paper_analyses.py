"""The paper's analyses, re-run on a cohort: ``make check`` (``vlms check`` without ``--data``).

How each published number maps to an analysis (all through :mod:`analysis.frequentist`, end
points from :mod:`analysis.cohort`):

* ``text.recurrence.median_months.{local,distant,local_distant}`` (Figure 1A: 43, 25, 15 months)
  and ``text.recurrence.logrank_p`` (P = .04): KM of ``recurrence_months`` stratified by
  recurrence type among the patients who recurred (every one an event), and the log-rank test
  across the three types.
* ``text.recurrence.median_months.any`` (33 months) and ``text.rfs.rate_5y`` (35%): KM of the
  time to first recurrence (``cohort.rfs``) on all patients; median, and survival at 60 months.
* ``text.dss.overall.rate_{1y,5y}``: KM of ``cohort.dss`` at 12 and 60 months.
* ``text.dss.by_recurrence.<type>.rate_{2y,5y}``: KM of DSS stratified by ``recurrence``
  (none / local / distant / local_distant) at 24 and 60 months.
* ``table2.<rfs|dss>.<marker>.<negative|positive>.median_months`` and ``...n``: on the TMA
  patients (``tma == 1``), KM medians of RFS and DSS by marker group (0 negative/low,
  1 positive/high) and the group sizes.
* ``table2.<rfs|dss>.<marker>.hr``: univariate Cox (Efron) of RFS or DSS on the marker among TMA
  patients: HR, Wald 95% CI and Wald P.
* ``text.hr.surgery_radiation_dss``: univariate Cox of DSS on ``cohort.radiation_any``.
* ``text.hr.adjuvant_dss`` (an ambiguous sentence: "addition of adjuvant therapy ... to
  macroscopically margin-negative surgery"): univariate Cox of DSS on ``cohort.adjuvant_any``
  among patients with an R0/R1 margin. Our reading, flagged in the table.
* ``text.followup.median_years`` (5.1, range 0.87-13.9): median and range of
  ``followup_months`` / 12 over all patients (the paper's "median follow-up"; not a reverse-KM).
* ``text.age.median`` (58, range 22-78): median and range of age.

Medians are R's (midpoint on a flat stretch at 0.5); NaN = not reached. KM CIs use the
log-log transform unless ``conf_type="log"``.

Also reported (the paper did not): Aalen-Johansen cumulative incidence of first recurrence
(local, distant, local and distant, and any recurrence), with death without recurrence as the
competing event, at 12, 24 and 60 months, the right tool where the paper used KM per recurrence
type; RMST of DSS and RFS at the horizon (60 months), and the overall DSS at 2 years.

:func:`paper_statistics` is pure and fast (numpy fast path by default; tested equal to the
lifelines path) for the reconstruction's calibration loop. HR entries also carry
``<key>:lower``, ``<key>:upper`` and ``<key>:p``; ranges carry ``<key>:lower``/``<key>:upper``.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis import cohort as ch
from analysis.core.atomic import write_json, write_text
from analysis.core.errors import VlmsInputError
from analysis.core.tables import json_safe
from analysis.frequentist import estimators as fq

MONTHS_PER_YEAR = 12.0
RECURRENCE_TYPES = ("local", "distant", "local_distant")
DSS_GROUPS = ("none", "local", "distant", "local_distant")
MARKERS = ("beta_catenin", "igf1r")
MARKER_GROUPS = {"negative": 0.0, "positive": 1.0}
CIF_TIMES = (12.0, 24.0, 60.0)
MONOTONE_TEXT = "infinite (monotone likelihood)"


@dataclass(frozen=True)
class Quantity:
    """One published quantity: its key and what the computed number is."""

    key: str
    quantity: str
    kind: str  # "median", "rate", "p", "hr", "range", "count"


def _quantities() -> list[Quantity]:
    q: list[Quantity] = []
    for r in RECURRENCE_TYPES:
        q.append(
            Quantity(
                f"text.recurrence.median_months.{r}",
                f"KM median time to recurrence, {r} recurrences (recurred patients), months",
                "median",
            )
        )
    q.append(
        Quantity(
            "text.recurrence.logrank_p",
            "log-rank P, time to recurrence across recurrence types (recurred patients)",
            "p",
        )
    )
    q.append(Quantity("text.recurrence.median_months.any", "KM median RFS, all, months", "median"))
    q.append(Quantity("text.rfs.rate_5y", "KM RFS at 60 months, all", "rate"))
    q.append(Quantity("text.dss.overall.rate_1y", "KM DSS at 12 months, all", "rate"))
    q.append(Quantity("text.dss.overall.rate_5y", "KM DSS at 60 months, all", "rate"))
    for g in DSS_GROUPS:
        for years in (2, 5):
            q.append(
                Quantity(
                    f"text.dss.by_recurrence.{g}.rate_{years}y",
                    f"KM DSS at {12 * years} months, recurrence = {g}",
                    "rate",
                )
            )
    q.append(Quantity("text.followup.median_years", "median follow-up (range), years", "range"))
    q.append(Quantity("text.age.median", "median age at diagnosis (range), years", "range"))
    for endpoint in ("rfs", "dss"):
        label = "RFS" if endpoint == "rfs" else "DSS"
        for marker in MARKERS:
            for grp in MARKER_GROUPS:
                if endpoint == "rfs":
                    q.append(
                        Quantity(
                            f"table2.rfs.{marker}.{grp}.n",
                            f"TMA patients, {marker} {grp}",
                            "count",
                        )
                    )
                q.append(
                    Quantity(
                        f"table2.{endpoint}.{marker}.{grp}.median_months",
                        f"KM median {label}, TMA, {marker} {grp}, months",
                        "median",
                    )
                )
            q.append(
                Quantity(
                    f"table2.{endpoint}.{marker}.hr",
                    f"Cox HR {label}, TMA, {marker} positive vs negative",
                    "hr",
                )
            )
    q.append(
        Quantity(
            "text.hr.surgery_radiation_dss",
            "Cox HR DSS, any radiation vs none, all",
            "hr",
        )
    )
    q.append(
        Quantity(
            "text.hr.adjuvant_dss",
            "Cox HR DSS, chemotherapy and/or radiation vs surgery alone, R0/R1 margin "
            "(our reading of an ambiguous sentence)",
            "hr",
        )
    )
    return q


QUANTITIES: tuple[Quantity, ...] = tuple(_quantities())
RANGE_KEYS = frozenset(q.key for q in QUANTITIES if q.kind == "range")


@dataclass(frozen=True)
class _Arrays:
    """The cohort's columns as numpy arrays, extracted once per call."""

    dss_t: np.ndarray
    dss_e: np.ndarray
    rfs_t: np.ndarray
    rfs_e: np.ndarray
    recurrence: np.ndarray
    tma: np.ndarray
    markers: dict[str, np.ndarray]
    radiation: np.ndarray
    adjuvant: np.ndarray
    r0r1: np.ndarray
    followup: np.ndarray
    age: np.ndarray


def _arrays(df: pd.DataFrame) -> _Arrays:
    dss_t, dss_e = ch.dss(df)
    rfs_t, rfs_e = ch.rfs(df)
    return _Arrays(
        dss_t,
        dss_e.astype(float),
        rfs_t,
        rfs_e.astype(float),
        df["recurrence"].to_numpy(object),
        df["tma"].to_numpy(float) == 1,
        {m: df[m].to_numpy(float) for m in MARKERS},
        ch.radiation_any(df).astype(float),
        ch.adjuvant_any(df).astype(float),
        ch.r0r1_resection(df),
        df["followup_months"].to_numpy(float),
        df["age"].to_numpy(float),
    )


def _median(t: np.ndarray, e: np.ndarray, fast: bool) -> float:
    if t.size == 0:
        return math.nan
    return fq.km_median(t, e, fast=fast)


def _surv(t: np.ndarray, e: np.ndarray, months: float, fast: bool) -> float:
    if t.size == 0:
        return math.nan
    return float(fq.km_survival_at(t, e, [months], fast=fast)[0])


def _hr(
    out: dict[str, float], key: str, t: np.ndarray, e: np.ndarray, x: np.ndarray, fast: bool
) -> None:
    keys = (key, f"{key}:lower", f"{key}:upper", f"{key}:p")
    if t.size < 2 or e.sum() == 0 or np.all(x == x[0]):
        for k in keys:
            out[k] = math.nan
        return
    term = next(iter(fq.cox(t, e, {"x": x}, fast=fast).terms.values()))
    for k, v in zip(keys, (term.hr, term.lower, term.upper, term.p), strict=True):
        out[k] = float(v)


def paper_statistics(cohort_df: pd.DataFrame, *, fast: bool = True) -> dict[str, float]:
    """Every published survival quantity, computed on ``cohort_df`` (a typed cohort, as
    :func:`analysis.cohort.load_cohort` returns), keyed by its published key.

    HR keys also have ``:lower``, ``:upper`` and ``:p``; range keys ``:lower`` and ``:upper``.
    NaN: not estimable or not reached; ``inf``/0: monotone likelihood. Pure; ``fast`` uses the
    numpy path (equal to lifelines to 1e-8), ``fast=False`` lifelines itself.
    """
    a = _arrays(cohort_df)
    out: dict[str, float] = {}
    recurred = a.rfs_e > 0
    for r in RECURRENCE_TYPES:
        m = a.recurrence == r
        out[f"text.recurrence.median_months.{r}"] = _median(a.rfs_t[m], a.rfs_e[m], fast)
    types = a.recurrence[recurred]
    if len(set(types.tolist())) >= 2:
        out["text.recurrence.logrank_p"] = fq.logrank(
            a.rfs_t[recurred], a.rfs_e[recurred], types, fast=fast
        ).p
    else:
        out["text.recurrence.logrank_p"] = math.nan
    rfs_curve = fq.km_curve(a.rfs_t, a.rfs_e, fast=fast)
    out["text.recurrence.median_months.any"] = fq.r_quantile(rfs_curve.time, rfs_curve.survival)
    out["text.rfs.rate_5y"] = float(fq.step_at(rfs_curve.time, rfs_curve.survival, [60.0])[0])
    dss_curve = fq.km_curve(a.dss_t, a.dss_e, fast=fast)
    s1, s5 = fq.step_at(dss_curve.time, dss_curve.survival, [12.0, 60.0])
    out["text.dss.overall.rate_1y"] = float(s1)
    out["text.dss.overall.rate_5y"] = float(s5)
    for g in DSS_GROUPS:
        m = a.recurrence == g
        if m.any():
            s2, s5 = fq.km_survival_at(a.dss_t[m], a.dss_e[m], [24.0, 60.0], fast=fast)
        else:
            s2 = s5 = math.nan
        out[f"text.dss.by_recurrence.{g}.rate_2y"] = float(s2)
        out[f"text.dss.by_recurrence.{g}.rate_5y"] = float(s5)
    fu = a.followup / MONTHS_PER_YEAR
    out["text.followup.median_years"] = float(np.median(fu))
    out["text.followup.median_years:lower"] = float(fu.min())
    out["text.followup.median_years:upper"] = float(fu.max())
    out["text.age.median"] = float(np.median(a.age))
    out["text.age.median:lower"] = float(a.age.min())
    out["text.age.median:upper"] = float(a.age.max())
    for endpoint, (t_all, e_all) in {
        "rfs": (a.rfs_t, a.rfs_e),
        "dss": (a.dss_t, a.dss_e),
    }.items():
        t, e = t_all[a.tma], e_all[a.tma]
        for marker in MARKERS:
            x = a.markers[marker][a.tma]
            for grp, level in MARKER_GROUPS.items():
                m = x == level
                if endpoint == "rfs":
                    out[f"table2.rfs.{marker}.{grp}.n"] = float(m.sum())
                out[f"table2.{endpoint}.{marker}.{grp}.median_months"] = _median(t[m], e[m], fast)
            _hr(out, f"table2.{endpoint}.{marker}.hr", t, e, x, fast)
    _hr(out, "text.hr.surgery_radiation_dss", a.dss_t, a.dss_e, a.radiation, fast)
    m = a.r0r1
    _hr(out, "text.hr.adjuvant_dss", a.dss_t[m], a.dss_e[m], a.adjuvant[m], fast)
    return out


# --------------------------------------------------------------------------- the table


def _entry(published: Any, key: str) -> Any:
    try:
        return published.get(key)
    except KeyError:
        return None


def _field(entry: Any, name: str) -> float:
    value = getattr(entry, name, None) if entry is not None else None
    return float(value) if isinstance(value, int | float) else math.nan


def paper_table(cohort_df: pd.DataFrame, published: Any) -> pd.DataFrame:
    """One row per published quantity: published value, computed value (lifelines path), the
    difference; for HRs also the computed and published CI and P; and a note."""
    stats_ = paper_statistics(cohort_df, fast=False)
    rows = []
    for q in QUANTITIES:
        entry = _entry(published, q.key)
        pub = _field(entry, "value")
        comp = stats_[q.key]
        note = ""
        if q.kind == "hr" and (math.isinf(comp) or comp == 0.0):
            note = MONOTONE_TEXT if math.isinf(comp) else "zero (monotone likelihood)"
        elif q.kind == "median" and math.isnan(comp):
            note = "not reached"
        elif math.isnan(comp):
            note = "not estimable on this cohort"
        if entry is None:
            note = "; ".join(filter(None, [note, "key not in published.toml"]))
        elif math.isnan(pub):
            note = "; ".join(filter(None, [note, "not reported in the paper"]))
        row: dict[str, object] = {
            "key": q.key,
            "quantity": q.quantity,
            "source": str(getattr(entry, "source", "") or ""),
            "published": pub,
            "computed": comp,
            "difference": comp - pub if math.isfinite(comp) else math.nan,
            "lower": stats_.get(f"{q.key}:lower", math.nan),
            "upper": stats_.get(f"{q.key}:upper", math.nan),
            "p": stats_.get(f"{q.key}:p", math.nan),
            "published_lower": _field(entry, "lower"),
            "published_upper": _field(entry, "upper"),
            "published_p": _field(entry, "p"),
            "note": note,
        }
        rows.append(row)
    return pd.DataFrame(rows)


def extra_analyses(
    cohort_df: pd.DataFrame, *, horizon: float = 60.0, conf_type: fq.ConfType = "log-log"
) -> dict[str, object]:
    """What the paper did not report: Aalen-Johansen CIF of first recurrence by type (death
    without recurrence competing), RMST of DSS and RFS to ``horizon``, DSS at 1, 2, 5 years
    with CI."""
    time, cause = ch.first_recurrence(cohort_df)
    cif = fq.cumulative_incidence(time, cause, CIF_TIMES, causes=[1, 2, 3, 4])
    any_cause = np.where((cause >= 1) & (cause <= 3), 1, np.where(cause == 4, 2, 0))
    cif_any = fq.cumulative_incidence(time, any_cause, CIF_TIMES, causes=[1])[1]
    names = {**ch.CAUSES}
    out_cif = {names[k]: v.to_dict() for k, v in cif.items()}
    out_cif["any_recurrence"] = cif_any.to_dict()
    dss_t, dss_e = ch.dss(cohort_df)
    rfs_t, rfs_e = ch.rfs(cohort_df)
    km_dss = fq.kaplan_meier(dss_t, dss_e, [12.0, 24.0, 60.0], conf_type=conf_type)
    return {
        "cif_first_recurrence": out_cif,
        "rmst": {
            "dss": fq.rmst(dss_t, dss_e, horizon).to_dict(),
            "rfs": fq.rmst(rfs_t, rfs_e, horizon).to_dict(),
        },
        "km_dss_overall": km_dss.to_dict(),
    }


def _extra_rows(extra: dict[str, Any]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for name, c in extra["cif_first_recurrence"].items():
        for t, v, lo, hi in zip(c["times"], c["cif"], c["lower"], c["upper"], strict=True):
            rows.append(
                {
                    "key": f"extra.cif.{name}.{t:g}m",
                    "quantity": f"Aalen-Johansen cumulative incidence of first event '{name}' "
                    f"at {t:g} months (death without recurrence competing)",
                    "computed": v,
                    "lower": lo,
                    "upper": hi,
                }
            )
    for ep, r in extra["rmst"].items():
        rows.append(
            {
                "key": f"extra.rmst.{ep}",
                "quantity": f"RMST of {ep.upper()} to {r['horizon']:g} months (SE in 'se')",
                "computed": r["rmst"],
                "se": r["se"],
            }
        )
    k = extra["km_dss_overall"]
    rows.append(
        {
            "key": "extra.dss.overall.rate_2y",
            "quantity": f"KM DSS at 24 months, all ({k['conf_type']} CI)",
            "computed": k["survival"][1],
            "lower": k["lower"][1],
            "upper": k["upper"][1],
        }
    )
    return rows


def _format_value(v: object, digits: int = 3) -> str:
    if not isinstance(v, int | float) or math.isnan(float(v)):
        return "-"
    if math.isinf(float(v)):
        return "inf"
    return f"{float(v):.{digits}f}"


def format_table(table: pd.DataFrame, extra_rows: list[dict[str, object]]) -> str:
    """Plain-text rendering for the terminal."""
    lines = [f"{'key':<48}{'published':>11}{'computed':>11}{'diff':>9}  note"]
    for r in table.to_dict("records"):
        comp = _format_value(r["computed"])
        if r["note"].startswith("infinite") or r["note"].startswith("zero"):
            comp = "inf" if r["note"].startswith("infinite") else "0"
        line = (
            f"{r['key']:<48}{_format_value(r['published']):>11}{comp:>11}"
            f"{_format_value(r['difference']):>9}  {r['note']}"
        )
        if isinstance(r["lower"], float) and math.isfinite(r["lower"]):
            label = "range" if r["key"] in RANGE_KEYS else "CI"
            line += f" {label} {_format_value(r['lower'])}-{_format_value(r['upper'])}"
            if math.isfinite(r["p"]):
                line += f", P {_format_value(r['p'], 4)}"
        lines.append(line.rstrip())
    lines += ["", "Not in the paper:"]
    for r in extra_rows:
        ci = ""
        if "lower" in r:
            ci = f" ({_format_value(r['lower'])}-{_format_value(r['upper'])})"
        if "se" in r:
            ci = f" (SE {_format_value(r['se'])})"
        lines.append(f"  {r['key']:<46}{_format_value(r['computed']):>11}{ci}")
    return "\n".join(lines)


def _require_events(df: pd.DataFrame, file: str) -> None:
    """The paper's analyses need events: refuse a cohort with no recurrence and no DSS death."""
    if ch.dss(df)[1].sum() == 0 and ch.rfs(df)[1].sum() == 0:
        raise VlmsInputError(
            "no recurrences and no deaths from disease: nothing to estimate",
            file=file,
            column="recurrence",
        )


def run_paper_check(args: argparse.Namespace) -> int:
    """``vlms check`` without ``--data``: the paper's analyses on the cohort, to
    ``<out-dir>/tables/frequentist.{csv,json}``."""
    from analysis.paper.published import load_published

    cohort_path = Path(args.cohort)
    df = ch.load_cohort(cohort_path)
    _require_events(df, str(cohort_path))
    if not Path(args.published).is_file():
        raise VlmsInputError("file not found", file=str(args.published))
    published = load_published(args.published)
    conf_type = getattr(args, "conf_type", "log-log")
    horizon = float(getattr(args, "rmst_horizon", 60.0))
    table = paper_table(df, published)
    extra = extra_analyses(df, horizon=horizon, conf_type=conf_type)
    extra_rows = _extra_rows(extra)
    out_dir = Path(args.out_dir) / "tables"
    full = pd.concat([table, pd.DataFrame(extra_rows)], ignore_index=True)
    payload = {
        "cohort": str(cohort_path),
        "n": len(df),
        "conf_type": conf_type,
        "rows": [_json_row(r) for r in table.to_dict("records")],
        "not_in_paper": extra,
    }
    write_text(out_dir / "frequentist.csv", full.to_csv(index=False))
    write_json(out_dir / "frequentist.json", json_safe(payload))
    header = f"cohort {cohort_path} (n = {len(df)})"
    print(header + "\n" + format_table(table, extra_rows))
    print(f"\nwrote {out_dir / 'frequentist.csv'} and {out_dir / 'frequentist.json'}")
    return 0


def _json_row(r: dict[str, object]) -> dict[str, object]:
    return {k: (float(v) if isinstance(v, np.floating) else v) for k, v in r.items()}
