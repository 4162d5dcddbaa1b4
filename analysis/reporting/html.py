"""``vlms report``: ``reports/index.html``, one self-contained page from the saved outputs.

Reads only files that other commands wrote (never fits): ``tables/hr_comparison.json``,
``tables/prior_sensitivity.json``, ``tables/loo.json``, ``tables/cif_comparison.json``,
``tables/multistate.json``, ``tables/imputation.json``, ``validation/multistate.json``,
``validation/imputation.json``,
``audit.json``, ``calibration.json``, ``fits/*.nc`` with ``fits/*.summary.csv`` (diagnostics
status) and the PNGs in ``figures/``.
A missing input becomes a visible "not available: run ..." line. Images are embedded as base64
data URIs and the page has no script and no external reference, so it opens offline. Every
text that comes from a file is HTML-escaped. No individual patient rows are shown: the page
holds summaries (hazard ratios, curves, counts) only.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from analysis.core.atomic import write_text
from analysis.reporting.html_parts import Inputs, esc, image, missing, table
from analysis.reporting.imputation_section import section_imputation
from analysis.reporting.multistate_section import section_multistate

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;margin:0;
 color:#1b1b1b;background:#fafafa;line-height:1.45}
main{max-width:1180px;margin:0 auto;padding:0 18px 40px}
.banner{background:#7a1020;color:#fff;padding:12px 18px;font-weight:600;font-size:1.05em}
h1{font-size:1.6em;margin:18px 0 6px}h2{font-size:1.25em;margin-top:34px;
 border-bottom:2px solid #ddd;padding-bottom:4px}h3{font-size:1.05em}
table{border-collapse:collapse;margin:10px 0;font-size:.86em;background:#fff}
th,td{border:1px solid #ccc;padding:4px 7px;text-align:left;vertical-align:top}
th{background:#eef1f5}tr.bad td{background:#fde2e2;color:#8b0000;font-weight:600}
tr.warn td{background:#fff4d6}
.missing{color:#8b0000;font-style:italic}.note{color:#555;font-size:.9em}
.bad-line{color:#b00000;font-weight:700}.ok-line{color:#176d2c}
img{max-width:100%;height:auto;border:1px solid #ddd;background:#fff;margin:6px 0}
figure{margin:12px 0}figcaption{font-size:.88em;color:#444}
details{margin:8px 0}summary{cursor:pointer;font-weight:600}
"""


def _f(v: Any, digits: int = 2) -> str:
    if isinstance(v, str):
        return v
    if not isinstance(v, int | float) or v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}f}"


def _num(v: Any) -> float:
    if isinstance(v, int | float) and v is not None:
        return float(v)
    if v in ("inf", "-inf"):
        return float(v)
    return math.nan


# --------------------------------------------------------------------------- sections


def section_comparison(inputs: Inputs) -> str:
    from analysis.comparison.hazard_ratios import FRAMING, comparison_display

    data = inputs.json("tables/hr_comparison.json")
    parts = ["<h2>1. Hazard ratios: how much of each published estimate survives</h2>"]
    if data is None:
        return "".join(parts) + missing("the comparison table", "vlms compare")
    rows = [
        {k: (_num(v) if k not in _TEXT_COLS else v) for k, v in r.items()} for r in data["rows"]
    ]
    display = comparison_display(rows)
    parts.append(f"<p><strong>{esc(data.get('framing', FRAMING))}</strong></p>")
    if display:
        cols = list(display[0])
        parts.append(table(cols, [[d[c] for c in cols] for d in display]))
    notes = "".join(f"<li>{esc(line)}</li>" for line in data.get("columns", []))
    parts.append(
        f'<ul class="note">{notes}<li>HR &gt; 1 means a higher hazard (worse outcome) in the '
        "first-named group.</li></ul>"
    )
    parts.append(
        image(
            inputs,
            "figures/forest_hr.png",
            "Forest plot of hazard ratios",
            "Forest plot: each HR with the columns of the table (log scale; dashed line HR = 1).",
        )
    )
    return "".join(parts)


_TEXT_COLS = {
    "key",
    "label",
    "short",
    "fit",
    "prior",
    "freq_note",
    "posterior_note",
    "selection_note",
}


def section_selection(inputs: Inputs) -> str:
    """The selection-adjusted biomarker HRs (``tables/selection_adjusted.json``)."""
    from analysis.comparison.selection import display_rows

    head = "<h2>2. Biomarker hazard ratios adjusted for selection</h2>"
    data = inputs.json("tables/selection_adjusted.json")
    if data is None:
        return head + missing("the selection-adjusted table", "vlms compare")
    if not data.get("rows"):
        return head + missing(str(data.get("missing", "selection rows")), "vlms compare")
    tested = ", ".join(str(n) for n in data.get("markers_tested", {}).values())
    parts = [
        head,
        f"<p>The paper tested {esc(tested)} markers per end point on the tissue microarray and "
        "printed the hazard ratios of two. Read alone, a printed estimate that was chosen for "
        "being significant overstates its effect. The selection model reads everything the paper "
        "tells: the two estimates and that the other markers were not significant (true log HRs "
        "~ Normal(0, tau)); tau is the spread of the true effects across the panel. It assumes "
        "the markers were printed because, and only because, they were significant.</p>",
    ]
    display = display_rows(data)
    cols = list(display[0])
    bad = [r["Sampling bar"] != "met" for r in display]
    parts.append(table(cols, [[d[c] for c in cols] for d in display], bad))
    return "".join(parts)


def section_survival(inputs: Inputs) -> str:
    return "".join(
        [
            "<h2>3. Survival and cumulative incidence: data against model (the cohort)</h2>",
            "<p>Solid steps: Kaplan-Meier (or Aalen-Johansen) estimates on the reconstructed "
            "cohort. Dashed lines and shaded bands: posterior median and 95% band of the "
            "piecewise-exponential model. Where the steps stay inside the bands the model "
            "reproduces the data (a posterior predictive check).</p>",
            image(
                inputs,
                "figures/fig1_recurrence_dss.png",
                "Figure 1 redrawn",
                "Figure 1 of the paper redrawn, with posterior bands where a model exists (its "
                "panel C, DSS by recurrence type, is in section 2b beside the multi-state model).",
            ),
            image(
                inputs,
                "figures/fig2_biomarkers.png",
                "Figure 2 redrawn",
                "Figure 2 of the paper redrawn (26 TMA patients) with posterior bands.",
            ),
            image(
                inputs,
                "figures/cif_first_recurrence.png",
                "Cumulative incidence",
                "Cumulative incidence of the first event by type (death without recurrence "
                "competing): Aalen-Johansen against the competing-risk posterior.",
            ),
            cif_table(inputs),
            image(
                inputs,
                "figures/prior_posterior_log_hr.png",
                "Prior and posterior",
                "Prior (grey) against posterior (red) of every log hazard ratio of the "
                "survival models: where red is narrower than grey, the data taught the model.",
            ),
            image(
                inputs,
                "figures/prior_posterior_competing.png",
                "Prior and posterior, competing risks",
                "Prior against posterior of the cause-specific log hazard ratios (competing-risk "
                "models; one panel per covariate and type of first event).",
            ),
        ]
    )


def cif_table(inputs: Inputs) -> str:
    """Posterior CIF against Aalen-Johansen at fixed times, and the largest difference per time
    (from ``tables/cif_comparison.json``)."""
    from analysis.comparison import cif as cc

    data = inputs.json("tables/cif_comparison.json")
    head = "<h3>Cumulative incidence at 1, 2, 5 and 10 years: posterior vs Aalen-Johansen</h3>"
    if data is None:
        return head + missing("the cumulative incidence comparison", "vlms compare")
    result = cc.from_json(data)
    parts = [
        head,
        f"<p>Posterior median ({esc(result['interval'])} credible interval) of each "
        "competing-risk fit's cumulative incidence, averaged over its patients' covariates, "
        "against the Aalen-Johansen estimate (95% CI) on the same patients (those the fit used). "
        "Difference: posterior median minus Aalen-Johansen. Few patients are still followed at "
        "10 years ('at risk'), so the Aalen-Johansen value there rests on few patients.</p>",
    ]
    for f in result["fits"]:
        parts.append(
            f'<p class="note">{esc(f["fit"])}: {esc(f["n"])} of {esc(f["n_subset"])} patients '
            "used.</p>"
        )
    for sk in result["skipped"]:
        parts.append(f'<p class="missing">{esc(sk["fit"])} skipped: {esc(sk["reason"])}.</p>')
    display = cc.display_rows(result)
    if not display:
        return "".join(parts) + missing("a saved competing-risk fit", "make fit")
    cols = list(display[0])
    parts.append(table(cols, [[d[c] for c in cols] for d in display]))
    largest = [
        [f"{m['months']:g}", m["fit"], _f(m["max_abs_difference"], 3), m["cause"] or "-"]
        for m in result["largest"]
    ]
    parts.append(table(["months", "fit", "largest |difference| over causes", "cause"], largest))
    return "".join(parts)


def section_sensitivity(inputs: Inputs) -> str:
    data = inputs.json("tables/prior_sensitivity.json")
    head = "<h2>4. Prior sensitivity</h2>"
    if data is None:
        return head + missing("the prior sensitivity table", "vlms compare")
    rows, bad = [], []
    for r in data["rows"]:
        ok = bool(r.get("bar_met"))
        bad.append(not ok)
        rows.append(
            [
                r["model"],
                r["prior"],
                f"{_f(r['hr_median'])} ({_f(r['hr_lower'])}-{_f(r['hr_upper'])})",
                _f(r["prob_gt_1"], 3),
                _f(r.get("summary_median")),
                _f(r.get("summary_prob_gt_1"), 3),
                _f(r.get("registry_fit_hr_median")),
                "met" if ok else "MISSED",
            ]
        )
    intro = (
        "<p>The Table 2 models refit on the cohort with four priors on the log HR (baseline "
        "unchanged). If the conclusions move with the prior, the data alone do not settle them. "
        f"The {len(data['rows'])} refits ran in the batches of the one stacked PEM structure of "
        "<code>vlms fit</code> (the prior is data).</p>"
    )
    header = [
        "model",
        "log-HR prior",
        "posterior HR (95% CrI)",
        "P(HR > 1)",
        "prior + published HR",
        "prior + published P(HR > 1)",
        "registry fit, same prior (median HR)",
        "sampling bar",
    ]
    return head + intro + table(header, rows, bad)


def section_loo(inputs: Inputs) -> str:
    from analysis.comparison.hazard_ratios import LOO_CAVEAT, loo_verdict

    data = inputs.json("tables/loo.json")
    head = "<h2>5. PSIS-LOO on the synthetic cohort: a check of the pipeline</h2>"
    if data is None:
        return head + missing("the LOO comparison", "vlms compare")
    parts = [
        head,
        f"<p><strong>{esc(LOO_CAVEAT)}</strong></p>",
        "<p>Expected log predictive density for a left-out patient (elpd, higher is better), by "
        "Pareto-smoothed importance sampling. Differences smaller than about two standard errors "
        "do not distinguish the models.</p>",
    ]
    if data.get("missing"):
        parts.append(
            f'<p class="missing">Not available (no saved fit): {esc(", ".join(data["missing"]))}'
            ". Add the model to the fit registry and run <code>vlms fit</code>.</p>"
        )
    if not data.get("comparison"):
        return "".join(parts) + missing("a comparison of at least two fits", "vlms fit")
    k_col = f"n_k_over_{data['k_threshold']}"
    pareto = {r["model"]: r for r in data["pareto"]}
    rows, bad = [], []
    for r in data["comparison"]:
        pk = pareto[r["model"]]
        bad.append(pk[k_col] > 0)
        rows.append(
            [
                r["model"],
                f"{_f(r['elpd_loo'])} ({_f(r['se'])})",
                f"{_f(r['elpd_diff'])} ({_f(r['dse'])})",
                _f(r["p_loo"]),
                _f(pk["max_k"]),
                pk[k_col],
            ]
        )
    header = [
        "model",
        "elpd_loo (SE)",
        "elpd difference from best (SE)",
        "p_loo",
        "max Pareto k",
        f"patients with k > {data['k_threshold']}",
    ]
    parts.append(table(header, rows, bad))
    for line in loo_verdict(data):
        cls = "bad-line" if line.startswith("WARNING") else ""
        parts.append(f'<p class="{cls}">{esc(line)}</p>')
    return "".join(parts)


def section_audit(inputs: Inputs) -> str:
    data = inputs.json("audit.json")
    head = "<h2>6. Internal consistency of the paper's numbers (audit)</h2>"
    if data is None:
        return head + missing("the audit", "vlms audit")
    s = data.get("summary", {})
    parts = [
        head,
        f"<p>{esc(data.get('entries', '?'))} published numbers checked against each other: "
        f"{esc(s.get('major', 0))} major, {esc(s.get('minor', 0))} minor and "
        f"{esc(s.get('info', 0))} informational findings. Major findings (shaded) are places "
        "where the paper's own numbers contradict each other; the reconstruction had to choose a "
        "reading there.</p>",
    ]
    order = {"major": 0, "minor": 1, "info": 2}
    findings = sorted(data.get("findings", []), key=lambda f: order.get(f.get("severity"), 3))
    rows = [
        [f.get("severity", ""), f.get("check", ""), f.get("message", ""), f.get("source", "")]
        for f in findings
    ]
    parts.append(
        table(
            ["severity", "check", "finding", "where in the paper"],
            rows,
            [f.get("severity") == "major" for f in findings],
            flag="warn",
        )
    )
    return "".join(parts)


def section_calibration(inputs: Inputs) -> str:
    data = inputs.json("calibration.json")
    head = "<h2>7. How well the synthetic cohorts reproduce the paper, and are they plausible</h2>"
    if data is None:
        return head + missing("the calibration summary", "vlms reconstruct")
    s = data.get("summary", {})
    plaus = data.get("plausibility", {})
    timing = data.get("timing", {})
    parts = [
        head,
        f"<p>{esc(data.get('notice', ''))}</p>",
        f"<p>{esc(data.get('members', '?'))} cohorts drawn from a generative model of a "
        f"surgical series conditioned on the paper (seed {esc(data.get('seed', '?'))}); the "
        f"single-cohort views use member {esc(data.get('chosen_member', '?'))}. Mean share of "
        f"members within tolerance over {esc(s.get('targets', '?'))} calibrated statistics: "
        f"{esc(_pct(s.get('targets_share_within_tolerance_mean')))}; time per member "
        f"{esc(_f(timing.get('member_cpu_seconds_median'), 1))} s CPU (median).</p>",
    ]
    checks = [
        (label, plaus.get(key))
        for label, key in (
            ("PH not rejected, every Table 2 marker and end point", "ph_not_rejected.all_markers"),
            ("censoring log-rank not rejected, both markers", "censoring_not_rejected.all_markers"),
            ("deaths from other causes present", "other_cause_deaths_present"),
            ("no death from disease without recurrence", "no_disease_death_without_recurrence"),
            ("every check passed", "passes_every_check"),
        )
    ]
    parts.append(
        table(
            ["plausibility check", "share of members"],
            [[label, _pct(v)] for label, v in checks],
            [isinstance(v, int | float) and v < 0.8 for _, v in checks],
        )
    )
    rows, bad = [], []
    for t in data.get("targets", []):
        if t.get("status") == "by_construction":
            continue
        share = t.get("share_within_tolerance")
        bad.append(isinstance(share, int | float) and share < 0.5)
        rows.append(
            [
                t.get("name", ""),
                t.get("status", ""),
                _f(t.get("published"), 3),
                t.get("tolerance_text", ""),
                _f(t.get("median"), 3),
                f"{_f(t.get('q05'), 3)} - {_f(t.get('q95'), 3)}",
                _pct(share),
            ]
        )
    if rows:
        parts.append(
            "<details><summary>Every published statistic: ensemble median, 90% range and share "
            "of members within tolerance (under half in red)</summary>"
            + table(
                ["statistic", "tolerance kind", "published", "tolerance", "median",
                 "90% range", "within"],
                rows,
                bad,
            )
            + "</details>"
        )  # fmt: skip
    return "".join(parts)


def _pct(v: Any) -> str:
    if not isinstance(v, int | float) or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{100 * v:.0f}%"


def fit_status(inputs: Inputs) -> list[dict[str, Any]]:
    """Per saved fit: the sampling bar from its saved summary and sampler statistics."""
    import pandas as pd

    from analysis.inference import diagnostics as diagnostics

    out = []
    for nc in sorted(inputs.path("fits").glob("*.nc")):
        summary_path = nc.with_suffix(".summary.csv")
        idata = diagnostics.load_fit(nc)
        summary = pd.read_csv(summary_path, index_col=0) if summary_path.is_file() else None
        ok, d = diagnostics.passes_bar(idata, summary)
        attrs = idata.posterior.attrs
        out.append(
            {
                "model": nc.stem,
                "description": str(attrs.get("description", "")),
                "n": attrs.get("n", ""),
                "events": attrs.get("events", ""),
                "ok": ok,
                **{k: d[k] for k in ("max_rhat", "min_ess_bulk", "min_ess_tail", "divergences")},
                "failing": d["failing"],
                "environment": _environment(attrs),
            }
        )
    return out


ENVIRONMENT_KEYS = ("sampler", "draws", "tune", "chains", "target_accept", "base_seed", "seed")


def _environment(attrs: dict[str, Any]) -> dict[str, str]:
    """What a fit recorded about how it was made: sampler settings, seeds, cuts, priors,
    package versions (the NetCDF attributes written by ``vlms fit``)."""
    keep = {k: attrs[k] for k in ENVIRONMENT_KEYS if k in attrs}
    keep["cut points (months)"] = attrs.get("cut_points_months", "")
    keep["priors"] = attrs.get("priors", "")
    keep.update({k: v for k, v in attrs.items() if k.startswith("version_") or k == "python"})
    # NetCDF gives lists back as numpy arrays: print them as the lists they were written as
    keep = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in keep.items()}
    return {k: " ".join(str(v).split()) for k, v in keep.items()}


def section_diagnostics(inputs: Inputs, status: Callable[[Inputs], list[dict[str, Any]]]) -> str:
    from analysis.inference.diagnostics import ESS_MIN, RHAT_MAX

    head = "<h2>8. Sampling diagnostics of every model</h2>"
    fits = status(inputs)
    if not fits:
        return head + missing("saved fits", "vlms fit")
    parts = [
        head,
        f"<p>Bar: R-hat &le; {RHAT_MAX}, bulk and tail effective sample size &ge; {ESS_MIN:.0f} "
        "on every parameter, zero divergent transitions. A red row misses the bar: its numbers "
        "should not be trusted.</p>",
    ]
    rows, bad = [], []
    for f in fits:
        bad.append(not f["ok"])
        rows.append(
            [
                f["model"],
                f["description"],
                f["n"],
                f["events"],
                _f(f["max_rhat"], 4),
                _f(f["min_ess_bulk"], 0),
                _f(f["min_ess_tail"], 0),
                f["divergences"],
                "met" if f["ok"] else "MISSED",
            ]
        )
    header = [
        "model",
        "what",
        "n",
        "events",
        "max R-hat",
        "min bulk ESS",
        "min tail ESS",
        "divergences",
        "bar",
    ]
    parts.append(table(header, rows, bad))
    for f in fits:
        if not f["ok"]:
            shown = ", ".join(f["failing"][:8]) or "divergent transitions"
            parts.append(f'<p class="bad-line">{esc(f["model"])} misses the bar: {esc(shown)}</p>')
    if all(f["ok"] for f in fits):
        parts.append(f'<p class="ok-line">All {len(fits)} saved models meet the bar.</p>')
    parts.append(ensemble_diagnostics(inputs))
    env_rows = [[f["model"], "; ".join(f"{k} = {v}" for k, v in f["environment"].items())]
                for f in fits]  # fmt: skip
    parts.append(
        "<details><summary>Recorded environment of every fit (from its NetCDF attributes)"
        "</summary>" + table(["model", "settings, seeds, cut points, priors, versions"],
                             env_rows, [False] * len(env_rows)) + "</details>"
    )  # fmt: skip
    figs = []
    for f in fits:
        for kind in ("trace", "rank", "energy", "prior_survival"):
            rel = f"figures/{kind}_{f['model']}.png"
            if inputs.path(rel).is_file():
                figs.append(
                    image(
                        inputs,
                        rel,
                        f"{kind} plot of {f['model']}",
                        f"{kind.replace('_', ' ')}: {f['model']}",
                    )
                )
    if figs:
        parts.append(
            "<details><summary>Diagnostic plots (trace, rank, energy, prior predictive)</summary>"
            + "".join(figs)
            + "</details>"
        )
    else:
        parts.append(missing("diagnostic plots", "vlms diagnose"))
    return "".join(parts)


def ensemble_diagnostics(inputs: Inputs) -> str:
    """The worst member of each model of the reconstruction ensemble (empty without one)."""
    from analysis.inference.diagnostics import ensemble_worst

    rows = ensemble_worst(inputs.root)
    if not rows:
        return ""
    body = [
        [
            r["model"],
            r["members"],
            r["meeting_bar"],
            f"{r['max_rhat']:.4f} ({r['max_rhat_member']})",
            f"{r['min_ess_bulk']:.0f} ({r['min_ess_bulk_member']})",
            f"{r['min_ess_tail']:.0f} ({r['min_ess_tail_member']})",
            r["divergences"],
            r["refitted"],
        ]
        for r in rows
    ]
    header = [
        "model",
        "members",
        "meeting the bar",
        "max R-hat (member)",
        "min bulk ESS (member)",
        "min tail ESS (member)",
        "divergences",
        "refitted",
    ]
    bad = [r["meeting_bar"] < r["members"] for r in rows]
    return (
        "<h3>Reconstruction ensemble: the worst member of each model</h3><p>Each member is a fit "
        "of its own, held to the same bar; the worst value over the members, and which one.</p>"
        + table(header, body, bad)
    )


def what_was_done(inputs: Inputs) -> str:
    comp = inputs.json("tables/hr_comparison.json") or {}
    n = comp.get("n", "?")
    return (
        "<h2>What was done</h2><p>The paper (vascular leiomyosarcoma, 63 patients with localized "
        "disease, 26 with tissue-microarray biomarkers) publishes summaries only. We checked its "
        "numbers against each other, generated a synthetic cohort "
        f"(n = {esc(n)}) whose summaries match the published ones as far as they agree, and an "
        "ensemble of such cohorts (the paper does not pin one down), re-ran the paper's "
        "Kaplan-Meier and Cox analyses on them, and fitted Bayesian piecewise-exponential "
        "survival models on every one, pooling their posteriors. A selection model accounts for "
        "the markers the paper tested but did not report. The question throughout: how much of "
        "each published hazard ratio survives a sceptical but reasonable reading, given a cohort "
        "this small.</p>"
    )


def build_html(root: Path, status: Callable[[Inputs], list[dict[str, Any]]] = fit_status) -> str:
    """The whole page as a string (``status`` supplies the per-fit diagnostics)."""
    inputs = Inputs(Path(root))
    body = [
        '<div class="banner" role="alert">SYNTHETIC DATA: the cohort behind this page is a '
        "computer-generated reconstruction from the paper's published summaries. It contains no "
        "real patients; individual results must not be read as clinical facts.</div>",
        "<main>",
        "<h1>Vascular leiomyosarcoma: a Bayesian re-analysis of published hazard ratios</h1>",
        what_was_done(inputs),
        section_comparison(inputs),
        section_selection(inputs),
        section_survival(inputs),
        section_multistate(inputs),
        section_imputation(inputs),
        section_sensitivity(inputs),
        section_loo(inputs),
        section_audit(inputs),
        section_calibration(inputs),
        section_diagnostics(inputs, status),
        '<p class="note">Generated by <code>vlms report</code> from saved outputs only.</p>',
        "</main>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>vLMS re-analysis (synthetic cohort)</title>"
        f"<style>{CSS}</style></head><body>" + "\n".join(body) + "</body></html>\n"
    )


def draw_figures(out_dir: Path, cohort: Path) -> list[Path]:
    """Draw the report's figures from saved files: the cohort, the saved fits and the comparison
    table (figures that need a missing input are left out; the page says how to make them)."""

    from analysis import cohort as ch
    from analysis.inference.fits_io import load_fits
    from analysis.inference.registry import REGISTRY
    from analysis.reporting.multistate_section import multistate_figures
    from analysis.reporting.panels import forest_from_json, make_figures

    figs = out_dir / "figures"
    drawn: list[Path] = []
    table = out_dir / "tables" / "hr_comparison.json"
    if table.is_file():
        rows = json.loads(table.read_text(encoding="utf-8"))["rows"]
        drawn.append(forest_from_json(rows, figs / "forest_hr.png"))
    if cohort.is_file():
        fits = load_fits(out_dir / "fits", [s.name for s in REGISTRY])
        df = ch.load_cohort(cohort)
        drawn += make_figures(df, fits, figs)
        drawn += multistate_figures(df, out_dir / "fits", figs)
    return drawn


def run_cli(args: argparse.Namespace) -> int:
    """``vlms report`` of the registry: draw the figures, then write ``<out-dir>/index.html``
    (``vlms report --fit`` is :func:`analysis.reporting.fit_page.run_cli`)."""
    out_dir = Path(args.out_dir) if args.out_dir is not None else Path("reports")
    draw_figures(out_dir, Path(args.cohort))
    out = out_dir / "index.html"
    text = build_html(out_dir)
    write_text(out, text)
    print(f"wrote {out} ({len(text.encode('utf-8')) / 1e6:.1f} MB)")
    return 0
