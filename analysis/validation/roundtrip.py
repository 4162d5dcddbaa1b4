"""Round-trip validation of the reconstruction: ``vlms reconstruct --validate``.

Does the ensemble's spread say how much the paper pins down? Simulate "true" cohorts, print
from each exactly the numbers the paper prints (rounded as the paper rounds them), reconstruct
an ensemble from those numbers alone, and count how often each true cohort's value of a
quantity the paper does *not* print falls inside its ensemble's 90% range:

* the two-marker DSS Cox model on the TMA patients (beta-catenin and IGF-1R adjusted HRs);
* the cumulative incidence at 24 months of a first recurrence with a distant component
  (distant only, or local and distant), local-only recurrence and death without recurrence
  competing (Aalen-Johansen);
* DSS at 36 months among the TMA patients (Kaplan-Meier);
* the HR of size >= 5 cm for the time to recurrence (Cox, patients with a documented size).

Coverage near 90% says the ensemble's spread is honest; far below, the ensemble is
overconfident (or biased), far above, it says less than the paper does.

The true cohorts come from a simulator that is **not** the reconstruction's generative model
(:mod:`analysis.reconstruction.generative`): piecewise-constant recurrence hazards (the SBC
simulator's :func:`analysis.validation.simulate.piecewise_exponential_times`), recurrence types
with time-constant probabilities, log-normal (accelerated failure time, not proportional
hazards) survival after recurrence, exponential other-cause mortality that grows with age
(not the life-table Gompertz law), uniform administrative censoring and exponential loss. Its
parameters are drawn per cohort. Covariates are dealt with the paper's Table 1 counts (the
design), so every synthetic paper has the same Table 1 apart from the outcome rows.

The synthetic paper is ``data/published.toml`` with every outcome number replaced by the true
cohort's, rounded to the digits the paper prints there (counts, metastatic sites and their
denominators, medians, rates, HRs with CI and P, follow-up); numbers the true cohort cannot
give (a median not reached, an infinite HR) become "not reported". The audit then runs on it
as on the paper, so widenings follow the synthetic paper's own inconsistencies.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis import cohort as ch
from analysis.core.atomic import write_json, write_text
from analysis.core.errors import VlmsInputError
from analysis.core.tables import json_safe
from analysis.frequentist import estimators as fq
from analysis.paper.published import Entry, Published, load_published
from analysis.reconstruction.ensemble import statistic_names
from analysis.reconstruction.kernel import kernel_targets
from analysis.reconstruction.member import cohort_csv as member_csv
from analysis.reconstruction.member import draw_member, parse_csv_text
from analysis.reconstruction.model import draw_covariates, finalise
from analysis.reconstruction.parallel_members import run_jobs
from analysis.reconstruction.pipeline import settings_for
from analysis.reconstruction.sampler import ChainSettings, KernelTargets
from analysis.reconstruction.targets import COUNTERS, build_spec
from analysis.reconstruction.widening import calibration_targets
from analysis.validation import simulate

QUANTITIES: dict[str, str] = {
    "dss_two_marker.beta_catenin": "DSS HR of beta-catenin high, adjusted for IGF-1R (TMA)",
    "dss_two_marker.igf1r": "DSS HR of IGF-1R high, adjusted for beta-catenin (TMA)",
    "cif_distant_24m": "cumulative incidence of a distant first recurrence at 24 months",
    "dss_tma_36m": "DSS at 36 months, TMA patients (Kaplan-Meier)",
    "rfs_hr_size_ge5": "HR of size >= 5 cm for the time to recurrence",
}
LEVEL = 0.90
DEFAULT_TRUTHS = 20
DEFAULT_MEMBERS = 19
"""Per true cohort: with 19 members the ensemble's 90% range is its minimum to its maximum."""
OUTCOME_PREFIXES = ("table1.all.recurrence.", "table1.tma.recurrence.", "text.recurrence.")


# --------------------------------------------------------------------------- the simulator


@dataclass(frozen=True)
class TruthParameters:
    """One draw of the simulator's parameters (months)."""

    rec_log_rates: np.ndarray  # log hazard of first recurrence per interval of REC_CUTS
    rec_effects: np.ndarray  # log-HRs: beta-catenin, IGF-1R, size >= 5, R2
    type_probs: np.ndarray  # local only, distant only, local and distant
    death_log_median: float  # log median months from recurrence to death (log-normal)
    death_sigma: float
    death_effects: np.ndarray  # log time ratios: beta-catenin, IGF-1R, distant component
    other_rate_60: float  # other-cause deaths per month at age 60
    admin_range: tuple[float, float]
    loss_rate: float


REC_CUTS = np.array([0.0, 12.0, 24.0, 48.0])


def draw_parameters(rng: np.random.Generator) -> TruthParameters:
    """Parameters of one true cohort."""
    base = math.log(1 / 45) + rng.normal(0.0, 0.3)
    steps = np.cumsum(np.concatenate([[0.0], rng.normal(-0.1, 0.25, REC_CUTS.size - 1)]))
    return TruthParameters(
        rec_log_rates=base + steps,
        rec_effects=np.array(
            [rng.normal(0.3, 0.5), rng.normal(0.4, 0.5), rng.normal(0.3, 0.4), rng.normal(0.3, 0.4)]
        ),
        type_probs=rng.dirichlet([3.0, 5.0, 5.0]),
        death_log_median=math.log(36.0) + rng.normal(0.0, 0.3),
        death_sigma=float(rng.uniform(0.7, 1.1)),
        death_effects=np.array(
            [rng.normal(-0.3, 0.4), rng.normal(-0.3, 0.4), rng.normal(-0.2, 0.3)]
        ),
        other_rate_60=float(np.exp(rng.normal(math.log(0.0012), 0.3))),
        admin_range=(float(rng.uniform(6.0, 14.0)), float(rng.uniform(170.0, 260.0))),
        loss_rate=float(np.exp(rng.normal(math.log(1 / 250), 0.4))),
    )


def _two_decimals(x: np.ndarray) -> np.ndarray:
    return np.round(x, 2)


def simulate_truth(spec: Any, rng: np.random.Generator) -> tuple[pd.DataFrame, TruthParameters]:
    """One true cohort (typed, schema-valid) and its parameters."""
    params = draw_parameters(rng)
    df = draw_covariates(spec, rng)
    n = len(df)
    tma = df["tma"].to_numpy(float) == 1.0
    markers = {}
    for m in ("beta_catenin", "igf1r"):
        values = df[m].to_numpy(float)
        prevalence = float(np.nanmean(values[tma]))
        markers[m] = np.where(tma, values, (rng.random(n) < prevalence).astype(float))
    size = df["size_ge5cm"].to_numpy(float)
    size = np.where(np.isnan(size), np.nanmean(size), size)
    r2 = (df["margin"] == "r2").to_numpy(float)
    x = np.column_stack([markers["beta_catenin"], markers["igf1r"], size, r2])
    log_h = params.rec_log_rates[None, :] + (x @ params.rec_effects)[:, None]
    t_rec = np.maximum(simulate.piecewise_exponential_times(rng, log_h, REC_CUTS), 0.5)
    types = rng.choice(np.array([1, 2, 3]), size=n, p=params.type_probs)
    distant = (types >= 2).astype(float)
    z = np.column_stack([markers["beta_catenin"], markers["igf1r"], distant])
    log_t = params.death_log_median + z @ params.death_effects
    t_death = t_rec + np.exp(log_t + params.death_sigma * rng.standard_normal(n))
    age = df["age"].to_numpy(float)
    other_rate = params.other_rate_60 * np.exp(0.09 * (age - 60.0))
    t_other = rng.exponential(1.0 / other_rate)
    admin = simulate.uniform_censoring(rng, n, *params.admin_range)
    loss = rng.exponential(1.0 / params.loss_rate, n)
    censor = np.minimum(admin, loss)
    recurred = t_rec < np.minimum(censor, t_other)
    end = np.where(
        recurred, np.minimum.reduce([censor, t_other, t_death]), np.minimum(censor, t_other)
    )
    status = np.where(end == t_other, "dead_other", "alive")
    status = np.where(recurred & (end == t_death), "dead_disease", status)
    end = np.maximum(_two_decimals(end), 0.01)
    rec_months = np.where(recurred, np.minimum(_two_decimals(t_rec), end), end)
    dss = status == "dead_disease"
    end = np.where(dss & (end <= rec_months), rec_months + 0.01, end)
    codes = np.array(["none", "local", "distant", "local_distant"])
    df["recurrence"] = np.where(recurred, codes[types], "none")
    df["recurrence_months"] = rec_months
    df["followup_months"] = end
    df["vital_status"] = status
    df["surgery_year"] = np.nan
    _met_sites(df, rng)
    out = finalise(df, rng)
    return parse_csv_text(member_csv(out), "true cohort"), params


SITE_PROBS = {
    "met_lung": 0.45,
    "met_liver": 0.3,
    "met_bone": 0.2,
    "met_abdomen": 0.15,
    "met_other": 0.2,
}


def _met_sites(df: pd.DataFrame, rng: np.random.Generator) -> None:
    distant = df["recurrence"].isin(["distant", "local_distant"]).to_numpy()
    for col, p in SITE_PROBS.items():
        df[col] = (distant & (rng.random(len(df)) < p)).astype(float)
    none = distant & (df[list(SITE_PROBS)].sum(axis=1).to_numpy() == 0)
    df.loc[none, "met_lung"] = 1.0


# --------------------------------------------------------------------------- the synthetic paper


def _rounded(value: float, entry: Entry, fld: str) -> float | None:
    """``value`` rounded as the paper prints ``entry``'s ``fld`` (None if it cannot be printed)."""
    if value is None or not math.isfinite(value):
        return None
    digits = entry.digits(fld)
    out = round(float(value), digits)
    if fld == "p" or entry.unit == "p_value":
        while out == 0.0 and digits < 4:
            digits += 1
            out = round(float(value), digits)
        return out if out > 0 else 10.0**-digits
    if entry.unit == "hazard_ratio" and out <= 0:
        return None
    return out


def _with_statistics(entry: Entry, values: dict[str, float]) -> Entry:
    """An entry with the true cohort's numbers in the fields the paper prints."""
    new: dict[str, Any] = {}
    for fld in ("value", "lower", "upper", "p"):
        if getattr(entry, fld) is None:
            continue
        name = entry.key if fld == "value" else f"{entry.key}:{fld}"
        if name not in values:
            return entry
        new[fld] = _rounded(values[name], entry, fld)
    if new.get("value") is None or any(v is None for v in new.values()):
        return replace(entry, value=None, lower=None, upper=None, p=None, interval=None,
                       decimals=None)  # fmt: skip
    lo, hi = new.get("lower"), new.get("upper")
    if lo is not None and not lo <= new["value"] <= hi:  # rounding pushed it outside
        new["lower"], new["upper"] = min(lo, new["value"]), max(hi, new["value"])
    return replace(entry, **new)


def _with_count(entry: Entry, count: int, denominator: int | None) -> Entry:
    den = denominator if denominator is not None else entry.denominator
    percent = entry.percent
    if percent is not None and den:
        percent = float(round(100.0 * count / den))
    if den is not None and count > den:
        den = count
    return replace(entry, value=int(count), denominator=den, percent=percent)


def synthetic_paper(real: Published, truth: pd.DataFrame) -> Published:
    """The paper's numbers as the true cohort would have printed them (see the docstring)."""
    from analysis.frequentist.paper_analyses import paper_statistics

    values = paper_statistics(truth, fast=False)
    distant = int(truth["recurrence"].isin(["distant", "local_distant"]).sum())
    entries = dict(real.entries)
    for key, entry in real.entries.items():
        if entry.value is None or entry.context:
            continue
        if key in COUNTERS and (
            key.startswith(OUTCOME_PREFIXES) or key.startswith("text.metastasis.")
        ):
            den = distant if key.startswith("text.metastasis.") else None
            entries[key] = _with_count(entry, COUNTERS[key](truth), den)
        elif key in values or f"{key}:lower" in values:
            entries[key] = _with_statistics(entry, values)
    for cc in real.section("crosschecks"):  # repeats (abstract, discussion) print the same
        b = cc["b"]
        if isinstance(b, str) and cc["a"] in entries and b in entries:
            a_entry = entries[cc["a"]]
            if a_entry.unit == entries[b].unit and a_entry.value is not None:
                src = entries[b]
                entries[cc["a"]] = replace(
                    a_entry,
                    value=src.value,
                    lower=src.lower if a_entry.lower is not None else None,
                    upper=src.upper if a_entry.upper is not None else None,
                    p=src.p if a_entry.p is not None else None,
                    denominator=src.denominator if a_entry.denominator is not None else None,
                    percent=src.percent if a_entry.percent is not None else None,
                    interval=a_entry.interval if src.value is not None else None,
                )
    return Published(real.path, entries, real.layout)


# --------------------------------------------------------------------------- the quantities


def quantities(df: pd.DataFrame) -> dict[str, float]:
    """The unprinted quantities of :data:`QUANTITIES` on a typed cohort."""
    out: dict[str, float] = {}
    tma = df[df["tma"] == 1.0]
    t, e = ch.dss(tma)
    fit = fq.cox(
        t, e, {m: tma[m].to_numpy(float) for m in ("beta_catenin", "igf1r")}, term_lr=False,
        fast=True,
    )  # fmt: skip
    for m in ("beta_catenin", "igf1r"):
        out[f"dss_two_marker.{m}"] = float(fit.terms[m].hr)
    time_, cause = ch.first_recurrence(df)
    grouped = np.where(np.isin(cause, (2, 3)), 1, np.where(cause > 0, 2, 0))
    cif = fq.cumulative_incidence(time_, grouped, [24.0], causes=[1])[1]
    out["cif_distant_24m"] = float(cif.cif[0])
    out["dss_tma_36m"] = float(fq.km_survival_at(t, e, [36.0], fast=True)[0])
    known = df["size_ge5cm"].notna().to_numpy()
    rt, re = ch.rfs(df[known])
    size = df.loc[known, "size_ge5cm"].to_numpy(float)
    try:
        out["rfs_hr_size_ge5"] = float(fq.cox(rt, re, {"size": size}, fast=True).terms["size"].hr)
    except ValueError:
        out["rfs_hr_size_ge5"] = math.nan
    return out


def interval(values: list[float], level: float = LEVEL) -> tuple[float, float]:
    """The ensemble's ``level`` range: order statistics ``k`` and ``n + 1 - k`` of its ``n``
    values with ``k = max(1, floor((1 - level) / 2 * (n + 1)))``, the prediction interval that
    holds a further exchangeable draw with probability ``(n + 1 - 2k) / (n + 1)`` (19 members:
    the minimum and maximum, exactly 90%). Undefined values are left out; infinite ones count
    at their end."""
    a = np.sort(np.asarray(values, float))
    a = a[~np.isnan(a)]
    n = a.size
    if n == 0:
        return math.nan, math.nan
    k = max(1, math.floor((1.0 - level) / 2.0 * (n + 1) + 1e-9))
    return float(a[k - 1]), float(a[n - k])


def median(values: list[float]) -> float:
    """Median of the defined values (infinite ones count)."""
    a = np.asarray(values, float)
    a = a[~np.isnan(a)]
    return float(np.median(a)) if a.size else math.nan


def nominal(n: int, level: float = LEVEL) -> float:
    """The probability that :func:`interval` of ``n`` draws holds a further draw."""
    k = max(1, math.floor((1.0 - level) / 2.0 * (n + 1) + 1e-9))
    return (n + 1 - 2 * k) / (n + 1)


def covered(truth: float, span: tuple[float, float]) -> bool | None:
    """Whether the truth lies in the range (None when either is undefined)."""
    lo, hi = span
    if math.isnan(truth) or math.isnan(lo) or math.isnan(hi):
        return None
    return bool(lo <= truth <= hi)


# --------------------------------------------------------------------------- running


@dataclass
class TruthSetup:
    """One true cohort, its synthetic paper, and what the reconstruction needs from it."""

    index: int
    truth: pd.DataFrame
    spec: Any
    kernel: KernelTargets
    released: list[str]
    widened: list[str]


def member_quantities(
    spec: Any, kernel: KernelTargets, seed: int, index: int, settings: ChainSettings
) -> dict[str, Any]:
    """Reconstruct one member from a synthetic paper and measure it (a worker's task)."""
    member = draw_member(spec, kernel, seed, index, settings)
    return {
        "quantities": quantities(member.frame),
        "cpu_seconds": member.cpu_seconds,
        "kernel_cost": member.chain.penalty,
    }


def setup_truth(real: Published, seed: int, t: int) -> TruthSetup:
    """True cohort ``t`` and its reconstruction inputs."""
    rng = np.random.default_rng([seed, t])
    real_spec, _ = build_spec(real, rng)
    truth, _params = simulate_truth(real_spec, rng)
    paper = synthetic_paper(real, truth)
    spec, _ = build_spec(paper, np.random.default_rng([seed, t, 1]))
    targets = calibration_targets(statistic_names(), paper)
    return TruthSetup(
        t,
        truth,
        spec,
        kernel_targets(targets),
        [x.name for x in targets if x.status == "released"],
        [x.name for x in targets if x.status == "widened"],
    )


def run_roundtrip(
    real: Published,
    seed: int,
    truths: int,
    members: int,
    settings: ChainSettings,
    *,
    workers: int,
    scheduler: str | None,
    log: Any,
) -> dict[str, Any]:
    """Simulate, print, reconstruct and measure; returns the report's content."""
    start = time.perf_counter()
    setups = [setup_truth(real, seed, t) for t in range(1, truths + 1)]
    log(f"  {truths} true cohorts simulated and printed ({time.perf_counter() - start:.0f} s)")
    jobs = [
        (s.spec, s.kernel, seed + 7919 * s.index, k, settings)
        for s in setups
        for k in range(1, members + 1)
    ]

    def progress(done: int, _result: Any) -> None:
        if done % max(1, members) == 0 or done == len(jobs):
            elapsed = time.perf_counter() - start
            log(f"  {done}/{len(jobs)} members reconstructed ({elapsed:.0f} s)")

    results = run_jobs(member_quantities, jobs, workers=workers, scheduler=scheduler,
                       progress=progress)  # fmt: skip
    rows = []
    for s_i, setup in enumerate(setups):
        batch = results[s_i * members : (s_i + 1) * members]
        true_q = quantities(setup.truth)
        row: dict[str, Any] = {
            "truth": setup.index,
            "released": setup.released,
            "widened": setup.widened,
            "member_cpu_seconds": [r["cpu_seconds"] for r in batch],
            "quantities": {},
        }
        for name in QUANTITIES:
            vals = [r["quantities"][name] for r in batch]
            span = interval(vals)
            row["quantities"][name] = {
                "true": true_q[name],
                "median": median(vals),
                "low": span[0],
                "high": span[1],
                "covered": covered(true_q[name], span),
            }
        rows.append(row)
    summary = {}
    for name, meaning in QUANTITIES.items():
        flags = [r["quantities"][name]["covered"] for r in rows]
        judged = [f for f in flags if f is not None]
        summary[name] = {
            "meaning": meaning,
            "covered": int(sum(judged)),
            "judged": len(judged),
            "coverage": (sum(judged) / len(judged)) if judged else math.nan,
        }
    cpu = [c for r in rows for c in r["member_cpu_seconds"]]
    return {
        "seed": seed,
        "true_cohorts": truths,
        "members_per_cohort": members,
        "level": LEVEL,
        "nominal": nominal(members),
        "iterations": settings.iterations,
        "coverage": summary,
        "rows": rows,
        "member_cpu_seconds_median": float(np.median(cpu)),
        "wall_seconds": time.perf_counter() - start,
    }


def markdown(doc: dict[str, Any]) -> str:
    """The round-trip report."""
    lines = [
        "# Round-trip validation of the reconstruction",
        "",
        f"{doc['true_cohorts']} true cohorts from an independent simulator "
        "(`analysis/validation/roundtrip.py`), each printed as the paper prints, each "
        f"reconstructed by an ensemble of {doc['members_per_cohort']} members "
        f"({doc['iterations']} iterations each; the published ensemble uses more members) "
        f"from those numbers alone. Seed {doc['seed']}; {doc['wall_seconds']:.0f} s wall; "
        f"median {doc['member_cpu_seconds_median']:.1f} s CPU per member.",
        "",
        f"Coverage: how often the true value lies in the ensemble's {100 * doc['level']:.0f}% "
        f"range (order statistics chosen so that a further draw from the same posterior would "
        f"fall inside with probability {100 * doc['nominal']:.1f}%; aim 80-97%).",
        "",
        "| quantity | covered | coverage |",
        "| --- | --- | --- |",
    ]
    for name, s in doc["coverage"].items():
        cov = "-" if math.isnan(s["coverage"]) else f"{100 * s['coverage']:.0f}%"
        lines.append(f"| {s['meaning']} (`{name}`) | {s['covered']}/{s['judged']} | {cov} |")
    lines += [
        "",
        "## Per true cohort",
        "",
        "| truth | quantity | true | ensemble median | 90% range | covered |",
        "| --- | --- | --- | --- | --- | --- |",
    ]

    def f(v: float) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        if isinstance(v, float) and math.isinf(v):
            return "inf"
        return f"{v:.3g}"

    for r in doc["rows"]:
        for name, q in r["quantities"].items():
            mark = {True: "yes", False: "NO", None: "-"}[q["covered"]]
            lines.append(
                f"| {r['truth']} | `{name}` | {f(q['true'])} | {f(q['median'])} | "
                f"{f(q['low'])} - {f(q['high'])} | {mark} |"
            )
    return "\n".join(lines) + "\n"


def run_cli(args: argparse.Namespace) -> int:
    """Handler of ``vlms reconstruct --validate``."""
    truths = int(getattr(args, "true_cohorts", DEFAULT_TRUTHS))
    members = DEFAULT_MEMBERS if getattr(args, "members", None) is None else int(args.members)
    if truths < 1 or members < 2:
        raise VlmsInputError("--true-cohorts must be at least 1 and --members at least 2")
    real = load_published(args.published)
    settings = settings_for(getattr(args, "iterations", None))

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    log(f"vlms reconstruct --validate: {truths} true cohorts x {members} members, seed {args.seed}")
    doc = run_roundtrip(real, int(args.seed), truths, members, settings, workers=int(args.workers),
                        scheduler=args.scheduler, log=log)  # fmt: skip
    text = markdown(doc)
    payload = json_safe(doc)
    out = Path(args.out_dir) / "validation"
    write_json(out / "roundtrip.json", payload)
    write_text(out / "roundtrip.md", text)
    for name, s in doc["coverage"].items():
        log(f"  {name}: {s['covered']}/{s['judged']} covered")
    print(f"wrote {out / 'roundtrip.md'} and {out / 'roundtrip.json'}")
    return 0
