"""The calibration and plausibility report of the ensemble: ``reports/calibration.{md,json}``.

* every published statistic: its tolerance (rounding, or widened or released by an audit
  finding, linked by id), the ensemble's median and 90% range (5th-95th percentile over
  members), and the share of members within tolerance; statistics true by construction are
  listed apart;
* the share of members whose Table 2 P values fall on the paper's side of alpha;
* per member and summarised: Grambsch-Therneau PH tests and the censoring log-rank test per
  Table 2 marker, deaths from other causes, deaths from disease without recurrence, exact counts;
* the readings chosen where the paper contradicts itself, the generative model's priors, the
  sampler's settings and timings, and which member is ``data/cohort.csv``.

Every number is computed from the members (the paper's statistics on the lifelines path).
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from analysis.core.atomic import write_json, write_text
from analysis.paper.published import Published
from analysis.reconstruction import generative as gm
from analysis.reconstruction.ensemble import Ensemble
from analysis.reconstruction.mortality import LIFE_TABLE_SOURCE
from analysis.reconstruction.plausibility import ALPHA, END_POINTS, MARKERS
from analysis.reconstruction.sampler import MOVES
from analysis.reconstruction.targets import Target

SYNTHETIC_NOTICE = (
    "SYNTHETIC DATA. No patient-level data from the study is public; these cohorts are drawn "
    "from a generative model of a surgical series, conditioned on the published counts and "
    "statistics. They are not patients."
)
TABLE2_P = tuple(f"table2.{e}.{m}.hr:p" for e in ("rfs", "dss") for m in ("beta_catenin", "igf1r"))
STATUS_TEXT = {
    "calibrated": "rounding",
    "widened": "widened",
    "released": "released",
    "by_construction": "by construction",
}


def _finite(values: list[float]) -> np.ndarray:
    a = np.asarray(values, float)
    return a[np.isfinite(a)]


def _quantiles(values: list[float]) -> tuple[float, float, float]:
    a = _finite(values)
    if a.size == 0:
        return math.nan, math.nan, math.nan
    q = np.quantile(a, [0.5, 0.05, 0.95])
    return float(q[0]), float(q[1]), float(q[2])


def target_summary(ensemble: Ensemble, target: Target) -> dict[str, Any]:
    """One target over the ensemble."""
    values = [m.values.get(target.name, math.nan) for m in ensemble.members]
    median, low, high = _quantiles(values)
    n = len(values)
    return {
        "name": target.name,
        "key": target.key,
        "field": target.field,
        "kind": target.kind,
        "status": target.status,
        "published": target.published,
        "rounding": list(target.rounding),
        "tolerance": [list(s) for s in target.intervals],
        "tolerance_text": target.tolerance_text(),
        "median": median,
        "q05": low,
        "q95": high,
        "not_finite": int(sum(not math.isfinite(v) for v in values)),
        "share_within_tolerance": sum(target.within(v) for v in values) / n,
        "share_within_rounding": sum(target.within(v, rounding_only=True) for v in values) / n,
        "widenings": [asdict(w) for w in target.widenings],
        "note": target.note,
    }


def p_side(ensemble: Ensemble, published: Published) -> list[dict[str, Any]]:
    """Per Table 2 P value: the share of members on the paper's side of alpha."""
    alpha = float(published.value("text.methods.alpha") or ALPHA)
    out = []
    for name in TABLE2_P:
        key = name.split(":")[0]
        printed = published.get(key).p
        if printed is None:
            continue
        paper_below = printed < alpha
        values = [m.values.get(name, math.nan) for m in ensemble.members]
        same = sum(math.isfinite(v) and (v < alpha) == paper_below for v in values)
        out.append(
            {
                "name": name,
                "published": printed,
                "paper_side": "below" if paper_below else "at or above",
                "alpha": alpha,
                "share_same_side": same / len(values),
                "not_estimable": int(sum(not math.isfinite(v) for v in values)),
            }
        )
    return out


def member_rows(ensemble: Ensemble) -> list[dict[str, Any]]:
    """One row per member: checks, targets met, chain diagnostics, time."""
    kernel = [t for t in ensemble.targets if t.in_kernel]
    rows = []
    for m in sorted(ensemble.members, key=lambda r: r.index):
        p = m.plausibility
        rows.append(
            {
                "member": m.index,
                "targets_met": int(sum(m.met(kernel).values())),
                "targets": len(kernel),
                "kernel_cost": m.chain.penalty,
                "ph_p": p.ph_p,
                "censoring_p": p.censoring_p,
                "other_deaths": p.other_deaths,
                "disease_deaths_without_recurrence": p.disease_deaths_without_recurrence,
                "tma_disease_deaths": p.tma_disease_deaths,
                "tma_recurrences": p.tma_recurrences,
                "passes": p.passes(),
                "cpu_seconds": m.cpu_seconds,
                "check_seconds": m.check_seconds,
                "cutoff": float(m.theta[gm.T_CUTOFF]),
                "acceptance": {
                    mv: (float(a / n) if n else None)
                    for mv, a, n in zip(MOVES, m.chain.accepted, m.chain.proposed, strict=True)
                },
            }
        )
    return rows


def plausibility_summary(ensemble: Ensemble) -> dict[str, Any]:
    """Shares of members passing each check."""
    ms = ensemble.members
    n = len(ms)

    def share(pred: Any) -> float:
        return sum(bool(pred(m.plausibility)) for m in ms) / n

    out: dict[str, Any] = {"members": n}
    for e in END_POINTS:
        for k in MARKERS:
            name = f"{e}.{k}"
            out[f"ph_not_rejected.{name}"] = share(lambda p, nm=name: not p.ph_p[nm] < ALPHA)
    for k in MARKERS:
        out[f"censoring_not_rejected.{k}"] = share(lambda p, k=k: not p.censoring_p[k] < ALPHA)
    out["ph_not_rejected.all_markers"] = share(lambda p: p.ph_ok())
    out["censoring_not_rejected.all_markers"] = share(lambda p: p.censoring_ok())
    out["other_cause_deaths_present"] = share(lambda p: p.other_deaths > 0)
    out["no_disease_death_without_recurrence"] = share(
        lambda p: p.disease_deaths_without_recurrence == 0
    )
    out["passes_every_check"] = share(lambda p: p.passes())
    other = [m.plausibility.other_deaths for m in ms]
    out["other_deaths_median"] = float(np.median(other))
    out["other_deaths_range"] = [int(min(other)), int(max(other))]
    tma = [m.plausibility.tma_disease_deaths for m in ms]
    out["tma_disease_deaths_median"] = float(np.median(tma))
    out["tma_disease_deaths_range"] = [int(min(tma)), int(max(tma))]
    return out


def counts_summary(ensemble: Ensemble, published: Published) -> dict[str, Any]:
    """Every exact count over the members: reproduced by how many, and why not."""
    reading_for = {k: r for r in ensemble.readings for k in r.keys}
    per_member = ensemble.counts(published)
    keys: dict[str, dict[str, Any]] = {}
    for checks in per_member.values():
        for c in checks:
            row = keys.setdefault(
                c.key,
                {"key": c.key, "published": c.published, "values": [], "met": 0},
            )
            row["values"].append(c.reconstructed)
            row["met"] += int(c.met)
    n = len(per_member)
    rows = []
    for row in keys.values():
        values = sorted(set(row.pop("values")))
        reading = reading_for.get(row["key"])
        rows.append(
            {
                **row,
                "reconstructed": values,
                "share": row["met"] / n,
                "reading": reading.used if reading is not None else "",
            }
        )
    reported = [r for r in rows if r["published"] is not None]
    return {
        "rows": rows,
        "all_members_exact": [r["key"] for r in reported if r["share"] == 1.0],
        "not_exact": [r for r in reported if r["share"] < 1.0],
    }


def timing(ensemble: Ensemble) -> dict[str, Any]:
    """Per-member CPU time of the chain and the cohort (one core), and of the checks."""
    cpu = np.array([m.cpu_seconds for m in ensemble.members])
    checks = np.array([m.check_seconds for m in ensemble.members])
    return {
        "member_cpu_seconds_median": float(np.median(cpu)),
        "member_cpu_seconds_max": float(cpu.max()),
        "member_cpu_seconds_min": float(cpu.min()),
        "check_cpu_seconds_median": float(np.median(checks)),
        "wall_seconds": ensemble.wall_seconds,
        "iterations": ensemble.settings.iterations,
    }


def build_payload(ensemble: Ensemble, published: Published) -> dict[str, Any]:
    """Everything the report says, JSON-ready."""
    targets = [target_summary(ensemble, t) for t in ensemble.targets]
    kernel = [t for t in targets if t["status"] in ("calibrated", "widened")]
    settings = ensemble.settings
    return {
        "synthetic": True,
        "notice": SYNTHETIC_NOTICE,
        "seed": ensemble.seed,
        "members": len(ensemble.members),
        "n": ensemble.spec.n,
        "chosen_member": ensemble.chosen,
        "summary": {
            "targets": len(kernel),
            "targets_share_within_tolerance_mean": float(
                np.mean([t["share_within_tolerance"] for t in kernel])
            ),
            "released": [t["name"] for t in targets if t["status"] == "released"],
            "widened": [t["name"] for t in targets if t["status"] == "widened"],
            "by_construction": [t["name"] for t in targets if t["status"] == "by_construction"],
        },
        "targets": targets,
        "p_side": p_side(ensemble, published),
        "plausibility": plausibility_summary(ensemble),
        "counts": counts_summary(ensemble, published),
        "member_rows": member_rows(ensemble),
        "readings": [asdict(r) for r in ensemble.readings],
        "model": {
            "priors": [asdict(p) for p in gm.PRIORS],
            "background_mortality": LIFE_TABLE_SOURCE,
            "accrual": [gm.ACCRUAL_START, gm.ACCRUAL_END],
            "cutoff_range": list(gm.CUTOFF_RANGE),
        },
        "sampler": {
            "anneal": settings.anneal,
            "hold": settings.hold,
            "beta_start": settings.beta_start,
            "beta_end": settings.beta_end,
            "theta_every": settings.theta_every,
            "move_weights": settings.move_weights,
            "censoring_term": {
                "weight": settings.censoring_weight,
                "free_p": settings.censoring_free_p,
                "shoulder": settings.censoring_shoulder,
            },
        },
        "timing": timing(ensemble),
    }


# --------------------------------------------------------------------------- Markdown


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _pct(v: float) -> str:
    return f"{100 * v:.0f}%"


def _target_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| statistic | published | tolerance | ensemble median | 90% range | within tolerance | "
        "audit |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for t in rows:
        audit = "; ".join(f"{w['finding']} ({w['action']})" for w in t["widenings"])
        share = _pct(t["share_within_tolerance"])
        if t["status"] == "released":
            share = f"{_pct(t['share_within_rounding'])} (at rounding)"
        lines.append(
            f"| `{t['name']}` | {_fmt(t['published'], 4)} | {t['tolerance_text']} | "
            f"{_fmt(t['median'], 4)} | {_fmt(t['q05'], 4)} - {_fmt(t['q95'], 4)} | {share} | "
            f"{audit} |"
        )
    return lines


def render_markdown(payload: dict[str, Any]) -> str:
    """The report as Markdown."""
    t = payload["targets"]
    s = payload["plausibility"]
    timing_ = payload["timing"]
    kernel = [r for r in t if r["status"] in ("calibrated", "widened")]
    lines = [
        "# Calibration and plausibility of the reconstructed ensemble",
        "",
        f"> **{payload['notice']}**",
        "",
        f"Seed {payload['seed']}; {payload['members']} members of {payload['n']} synthetic "
        f"patients; `data/cohort.csv` is member {payload['chosen_member']} (it passes every "
        "plausibility check and meets the most calibrated targets; ties: smaller kernel cost).",
        "",
        f"Time per member (chain and cohort, one core, CPU): median "
        f"{timing_['member_cpu_seconds_median']:.1f} s, max {timing_['member_cpu_seconds_max']:.1f}"
        f" s ({timing_['iterations']} iterations); statistics and checks on the lifelines path: "
        f"median {timing_['check_cpu_seconds_median']:.1f} s; whole run "
        f"{timing_['wall_seconds']:.0f} s wall.",
        "",
        "Statistics: `analysis.frequentist.paper_analyses.paper_statistics` (lifelines path) on "
        "each member; ranges are the 5th and 95th percentiles over members.",
        "",
        "## Calibrated statistics",
        "",
        "Tolerance: the printed number's rounding interval; **widened** where an audit finding "
        "adds an alternative reading's interval; **released** (reported, not sampled) where an "
        "audit finding shows the printed value cannot hold. "
        f"Mean share within tolerance over the {len(kernel)} sampled statistics: "
        f"{_pct(payload['summary']['targets_share_within_tolerance_mean'])}.",
        "",
        *_target_table([r for r in t if r["status"] != "by_construction"]),
        "",
        "Audit findings behind the widenings:",
        "",
    ]
    seen = set()
    for r in t:
        for w in r["widenings"]:
            if (w["finding"], r["name"]) in seen:
                continue
            seen.add((w["finding"], r["name"]))
            lines.append(f"- `{r['name']}`: {w['finding']} ({w['action']}): {w['why']}")
    lines += [
        "",
        "## True by construction (not sampled)",
        "",
        "| statistic | published | ensemble range | holds in |",
        "| --- | --- | --- | --- |",
    ]
    for r in t:
        if r["status"] == "by_construction":
            lines.append(
                f"| `{r['name']}` | {_fmt(r['published'], 4)} | {_fmt(r['q05'], 4)} - "
                f"{_fmt(r['q95'], 4)} | {_pct(r['share_within_rounding'])} ({r['note']}) |"
            )
    lines += [
        "",
        "Loader rules (no disease death without recurrence, recurrence before the end of "
        "follow-up, metastatic sites only with a distant recurrence, ...) hold in every member: "
        "each is read back through `analysis.cohort.validate_cohort`.",
        "",
        "## Table 2 P values: the paper's side of alpha",
        "",
        "| P value | published | paper's side | members on that side | not estimable |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in payload["p_side"]:
        lines.append(
            f"| `{r['name']}` | {_fmt(r['published'])} | {r['paper_side']} {r['alpha']:g} | "
            f"{_pct(r['share_same_side'])} | {r['not_estimable']} |"
        )
    lines += [
        "",
        "## Plausibility",
        "",
        f"Checks per member (not rejected at {ALPHA:g}):",
        "",
    ]
    for e in END_POINTS:
        for k in MARKERS:
            lines.append(
                f"- Grambsch-Therneau PH test, {e.upper()} by {k}: "
                f"{_pct(s[f'ph_not_rejected.{e}.{k}'])} of members"
            )
    for k in MARKERS:
        lines.append(
            f"- log-rank test of DSS censoring by {k}: {_pct(s[f'censoring_not_rejected.{k}'])}"
        )
    cens = payload["sampler"]["censoring_term"]
    lines.append(
        f"  (partly by construction: the sampler charges this log-rank's chi-square beyond its "
        f"null quantile at P = {cens['free_p']:g}, weight {cens['weight']:g}; see the sampler)"
    )
    lines += [
        f"- every PH test not rejected: {_pct(s['ph_not_rejected.all_markers'])}; every "
        f"censoring test not rejected: {_pct(s['censoring_not_rejected.all_markers'])}",
        f"- deaths from other causes present: {_pct(s['other_cause_deaths_present'])} "
        f"(median {s['other_deaths_median']:g}, range {s['other_deaths_range'][0]}-"
        f"{s['other_deaths_range'][1]})",
        f"- no death from disease without recurrence: "
        f"{_pct(s['no_disease_death_without_recurrence'])}",
        f"- TMA deaths from disease: median {s['tma_disease_deaths_median']:g} (range "
        f"{s['tma_disease_deaths_range'][0]}-{s['tma_disease_deaths_range'][1]})",
        f"- every check passed: {_pct(s['passes_every_check'])}",
        "",
        "| member | targets met | PH P (DSS bcat, DSS IGF, RFS bcat, RFS IGF) | censoring P "
        "(bcat, IGF) | other deaths | DSS deaths w/o recurrence | TMA DSS deaths / recurrences "
        "| CPU s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in payload["member_rows"]:
        ph = ", ".join(_fmt(r["ph_p"][f"{e}.{k}"], 2) for e in END_POINTS for k in MARKERS)
        cens = ", ".join(_fmt(r["censoring_p"][k], 2) for k in MARKERS)
        lines.append(
            f"| {r['member']} | {r['targets_met']}/{r['targets']} | {ph} | {cens} | "
            f"{r['other_deaths']} | {r['disease_deaths_without_recurrence']} | "
            f"{r['tma_disease_deaths']}/{r['tma_recurrences']} | {r['cpu_seconds']:.1f} |"
        )
    counts = payload["counts"]
    lines += [
        "",
        "## Exact counts",
        "",
        f"{len(counts['all_members_exact'])} published counts are reproduced exactly by every "
        "member (Table 1 both columns, the text's counts, metastatic sites, Table 2 group sizes).",
    ]
    if counts["not_exact"]:
        lines += ["", "Not reproduced, by the readings below:", ""]
        for r in counts["not_exact"]:
            lines.append(
                f"- `{r['key']}`: published {_fmt(r['published'])}, reconstructed "
                f"{', '.join(_fmt(v) for v in r['reconstructed'])}; {r['reading']}"
            )
    lines += ["", "## Readings chosen where the paper contradicts itself", ""]
    for r in payload["readings"]:
        lines.append(
            f"- **{', '.join(r['keys'])}**: published {r['published']}. Used: {r['used']}. "
            f"Why: {r['why']}."
        )
    m = payload["model"]
    lines += [
        "",
        "## The generative model",
        "",
        f"Surgery dates in {m['accrual'][0]:.2f}-{m['accrual'][1]:.2f}, one data cut-off in "
        f"{m['cutoff_range'][0]:.2f}-{m['cutoff_range'][1]:.2f}, independent exponential loss to "
        "follow-up, Weibull proportional hazards of first recurrence (type multinomial-logit in "
        "log time) and of death from disease after recurrence, other-cause death at "
        f"{m['background_mortality']} (Gompertz fit by sex) times a multiplier. Priors "
        "(normal mean, sd; uniform low, high):",
        "",
        "| parameter | meaning | prior |",
        "| --- | --- | --- |",
    ]
    for p in m["priors"]:
        prior = (
            f"uniform({p['mean']:.2f}, {p['sd']:.2f})"
            if p["uniform"]
            else f"normal({p['mean']:.3g}, {p['sd']:.3g})"
        )
        lines.append(f"| `{p['name']}` | {p['meaning']} | {prior} |")
    sp = payload["sampler"]
    lines += [
        "",
        "## The sampler",
        "",
        f"Annealed ABC-MCMC (`analysis/reconstruction/sampler.py` argues the choice): "
        f"{sp['anneal']} iterations with the kernel weight rising from {sp['beta_start']:g} to "
        f"{sp['beta_end']:g}, then {sp['hold']} at {sp['beta_end']:g}; parameters updated every "
        f"{sp['theta_every']} iterations; each member is the chain's last state. An explicit "
        f"plausibility term charges the log-rank chi-square of DSS censoring by each Table 2 "
        f"marker beyond its null quantile at P = {sp['censoring_term']['free_p']:g} (the "
        "targets otherwise buy the wide beta-catenin CI with marker-dependent follow-up).",
    ]
    return "\n".join(lines) + "\n"


def write_reports(out_dir: Path, markdown: str, payload: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``calibration.md`` and ``calibration.json`` under ``out_dir`` (each atomically)."""
    md = out_dir / "calibration.md"
    js = out_dir / "calibration.json"
    write_text(md, markdown)
    write_json(js, payload)
    return md, js


# ------------------------------------------------------------------------- the schema document

SCHEMA_BEGIN = "<!-- schema table: generated from analysis.cohort.SCHEMA; do not edit -->"
SCHEMA_END = "<!-- end of schema table -->"


def schema_table() -> str:
    """The cohort schema as a Markdown table (the one in ``data/README.md`` must equal it)."""
    from analysis.cohort import SCHEMA

    lines = [
        "| column | type | values | empty allowed | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for c in SCHEMA:
        if c.kind == "category":
            values = " / ".join(f"`{v}`" for v in c.levels)
        elif c.kind == "binary":
            values = "`1` / `0`"
        elif c.kind == "number":
            values = f"{c.minimum:g} to {c.maximum:g}"
        else:
            values = "text, unique"
        empty = "yes (column optional)" if c.optional else ("yes" if c.nullable else "no")
        lines.append(f"| `{c.name}` | {c.kind} | {values} | {empty} | {c.doc} |")
    return "\n".join(lines)
