"""``vlms compare``: posterior hazard ratios against the published and frequentist ones, prior
sensitivity and PSIS-LOO (the figures are drawn by ``vlms report``).

Outputs (under ``--out-dir``, default ``reports/``):

* ``tables/hr_comparison.{csv,md,json}``: one row per hazard ratio the paper publishes
  (beta-catenin and IGF-1R on RFS and on DSS, surgery plus radiation on DSS, adjuvant therapy)
  with the published HR, CI and P; the univariate Cox HR, Wald CI and P recomputed on the cohort
  (:func:`analysis.frequentist.paper_analyses.paper_statistics`, lifelines path); the
  posterior median HR, its 95% equal-tailed interval and P(HR > 1) from the saved fit
  (``fits/<name>.nc``; "not modelled" when no registry fit matches); the summary-level posterior
  (the fit's prior updated by the published estimate alone,
  :mod:`analysis.inference.summary_posterior`); the ratio posterior / published HR and whether
  the published HR lies inside the posterior 95% interval.
* ``tables/prior_sensitivity.{csv,md,json}``: the Table 2 fits refit under four log-HR priors
  (:mod:`analysis.inference.sensitivity`; this is the only place ``vlms compare`` samples).
* ``tables/loo.{csv,md,json}``: PSIS-LOO of DSS on the TMA patients, no biomarker vs
  beta-catenin vs IGF-1R vs both (from the saved fits; ArviZ via analysis/inference/diagnostics.py).
* ``tables/cif_comparison.{csv,md,json}``: posterior CIF of each competing-risk fit against
  Aalen-Johansen on its patients at 12, 24, 60 and 120 months (:mod:`analysis.comparison.cif`).
* ``tables/imputation.{csv,md,json}``: each fit that imputes unknown covariates beside its
  complete-case twin (:mod:`analysis.comparison.imputation`).
* ``tables/multistate.{csv,md,json}``: the illness-death fit against Aalen-Johansen (state
  occupation, death after each recurrence type) and Cox (:mod:`analysis.comparison.multistate`).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import cohort as ch
from analysis.comparison.posterior import posterior_hr
from analysis.core.atomic import write_json, write_text
from analysis.core.errors import VlmsInputError
from analysis.core.tables import json_safe, markdown_table
from analysis.inference.fits_io import find_fit, load_fits, priors_from_attrs, registry_priors

INTERVAL = "95% equal-tailed"


@dataclass(frozen=True)
class HRTarget:
    """A published hazard ratio and the registry fit that re-estimates it."""

    key: str
    label: str
    endpoint: str
    subset: str
    covariate: str
    short: str


HR_TARGETS: tuple[HRTarget, ...] = (
    HRTarget(
        "table2.rfs.beta_catenin.hr",
        "Beta-catenin high vs low: time to recurrence (26 TMA)",
        "rfs",
        "tma",
        "beta_catenin",
        "beta-catenin, RFS",
    ),
    HRTarget(
        "table2.rfs.igf1r.hr",
        "IGF-1R high vs low: time to recurrence (26 TMA)",
        "rfs",
        "tma",
        "igf1r",
        "IGF-1R, RFS",
    ),
    HRTarget(
        "table2.dss.beta_catenin.hr",
        "Beta-catenin high vs low: disease-specific survival (26 TMA)",
        "dss",
        "tma",
        "beta_catenin",
        "beta-catenin, DSS",
    ),
    HRTarget(
        "table2.dss.igf1r.hr",
        "IGF-1R high vs low: disease-specific survival (26 TMA)",
        "dss",
        "tma",
        "igf1r",
        "IGF-1R, DSS",
    ),
    HRTarget(
        "text.hr.surgery_radiation_dss",
        "Surgery plus radiation vs not: disease-specific survival (63)",
        "dss",
        "all",
        "radiation",
        "surgery + radiation, DSS",
    ),
    HRTarget(
        "text.hr.adjuvant_dss",
        "Adjuvant therapy vs not, R0/R1 resections: disease-specific survival",
        "dss",
        "r0r1",
        "adjuvant",
        "adjuvant therapy, DSS",
    ),
)

LOO_MODELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("no biomarker", ()),
    ("beta-catenin", ("beta_catenin",)),
    ("IGF-1R", ("igf1r",)),
    ("beta-catenin + IGF-1R", ("beta_catenin", "igf1r")),
)
"""PSIS-LOO candidates: DSS on the 26 TMA patients with these covariates."""


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the HR table


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and value is not None else math.nan


def comparison_rows(
    published: Any,
    frequentist: dict[str, float],
    fits: dict[str, Any],
    targets: tuple[HRTarget, ...] = HR_TARGETS,
) -> list[dict[str, Any]]:
    """One dict per target: published, frequentist, posterior and summary-level estimates.

    ``frequentist`` maps ``key``, ``key:lower``, ``key:upper``, ``key:p`` to numbers (as
    :func:`analysis.frequentist.paper_analyses.paper_statistics`); ``fits`` maps registry names to
    InferenceData (a target whose fit is absent is "not modelled").
    """
    from analysis.inference.summary_posterior import summary_posterior

    rows = []
    for t in targets:
        entry = published.get(t.key) if t.key in published else None
        pub = {f: _num(getattr(entry, f, None)) for f in ("value", "lower", "upper", "p")}
        fit_name = find_fit(t.endpoint, t.subset, (t.covariate,))
        idata = fits.get(fit_name) if fit_name else None
        priors = registry_priors(fit_name)
        if idata is not None:
            priors = priors_from_attrs(dict(idata.posterior.attrs), priors)
        row: dict[str, Any] = {
            "key": t.key,
            "label": t.label,
            "short": t.short,
            "published_hr": pub["value"],
            "published_lower": pub["lower"],
            "published_upper": pub["upper"],
            "published_p": pub["p"],
            "freq_hr": frequentist.get(t.key, math.nan),
            "freq_lower": frequentist.get(f"{t.key}:lower", math.nan),
            "freq_upper": frequentist.get(f"{t.key}:upper", math.nan),
            "freq_p": frequentist.get(f"{t.key}:p", math.nan),
            "fit": fit_name if idata is not None else "",
            "fit_n": int(idata.posterior.attrs.get("n", 0)) if idata is not None else 0,
            "fit_events": int(idata.posterior.attrs.get("events", 0)) if idata is not None else 0,
            "prior": priors.describe().split(";")[0],
        }
        freq = row["freq_hr"]
        row["freq_note"] = (
            "infinite (monotone likelihood)"
            if isinstance(freq, float) and math.isinf(freq)
            else ("not estimable" if isinstance(freq, float) and math.isnan(freq) else "")
        )
        if idata is not None and t.covariate in idata.posterior["hr"].coords["covariate"].values:
            post = posterior_hr(idata, t.covariate)
            row.update({f"posterior_{k}": v for k, v in post.items() if k != "draws"})
            row["posterior_note"] = ""
        else:
            row.update({f"posterior_{k}": math.nan for k in ("median", "lower", "upper")})
            row["posterior_prob_gt_1"] = math.nan
            row["posterior_note"] = "not modelled (no registry fit for this analysis)"
        if all(math.isfinite(pub[f]) and pub[f] > 0 for f in ("value", "lower", "upper")):
            s = summary_posterior(
                pub["value"],
                pub["lower"],
                pub["upper"],
                family=priors.effect_family,
                prior_sd=priors.effect_sd,
                prior_nu=priors.effect_nu,
            )
            row.update(
                {
                    "published_se_log_hr": s.se,
                    "summary_median": s.median_hr,
                    "summary_lower": s.lower,
                    "summary_upper": s.upper,
                    "summary_prob_gt_1": s.prob_gt_1,
                    "summary_shrinkage": s.median_hr / pub["value"],
                }
            )
        else:
            for k in (
                "published_se_log_hr",
                "summary_median",
                "summary_lower",
                "summary_upper",
                "summary_prob_gt_1",
                "summary_shrinkage",
            ):
                row[k] = math.nan
        pm_ = row["posterior_median"]
        row["ratio_posterior_published"] = pm_ / pub["value"] if pub["value"] > 0 else math.nan
        if math.isfinite(pm_) and math.isfinite(pub["value"]):
            inside = row["posterior_lower"] <= pub["value"] <= row["posterior_upper"]
            row["published_inside_posterior_95"] = "yes" if inside else "no"
        else:
            row["published_inside_posterior_95"] = ""
        rows.append(row)
    return rows


def _f(v: Any, digits: int = 2) -> str:
    if not isinstance(v, int | float) or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if math.isinf(v):
        return "inf"
    return f"{v:.{digits}f}"


def _p(v: Any) -> str:
    if not isinstance(v, int | float) or math.isnan(v):
        return "-"
    return "<0.001" if v < 0.001 else f"{v:.3f}"


def _ci(est: Any, lo: Any, hi: Any) -> str:
    if not isinstance(est, int | float) or math.isnan(est):
        return "-"
    return f"{_f(est)} ({_f(lo)}-{_f(hi)})"


def comparison_display(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Rows of formatted strings for the markdown and HTML tables (column -> text)."""
    out = []
    for r in rows:
        freq = _ci(r["freq_hr"], r["freq_lower"], r["freq_upper"])
        if r["freq_note"]:
            freq = r["freq_note"]
        post = r["posterior_note"] or _ci(
            r["posterior_median"], r["posterior_lower"], r["posterior_upper"]
        )
        out.append(
            {
                "Hazard ratio": r["label"],
                "Published HR (95% CI)": _ci(
                    r["published_hr"], r["published_lower"], r["published_upper"]
                ),
                "Published P": _p(r["published_p"]),
                "Cox on cohort HR (95% CI)": freq,
                "Cox P": _p(r["freq_p"]),
                "Posterior median HR (95% CrI)": post,
                "P(HR > 1)": _f(r["posterior_prob_gt_1"], 3),
                "Prior + published only (95% CrI)": _ci(
                    r["summary_median"], r["summary_lower"], r["summary_upper"]
                ),
                "Prior + published P(HR > 1)": _f(r["summary_prob_gt_1"], 3),
                "Posterior / published": _f(r["ratio_posterior_published"]),
                "Published inside posterior 95%": r["published_inside_posterior_95"] or "-",
            }
        )
    return out


def comparison_markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """``hr_comparison.md``."""
    return "\n".join(
        [
            "# Hazard ratios: published vs reconstructed cohort vs posterior",
            "",
            f"Cohort: `{meta['cohort']}` (n = {meta['n']}); SYNTHETIC reconstruction, not the "
            "study's patients.",
            "",
            "**Agreement by construction.** The reconstruction was calibrated to the published "
            "HRs, CIs and P values (`reports/calibration.md` lists which it meets), so where the "
            "cohort-based columns agree with the paper they do so by construction: a check of the "
            "reconstruction, not evidence for the paper. 'Prior + published only' is the reading "
            "of a published number that needs no reconstructed cohort.",
            "",
            f"Posterior: piecewise-exponential model (saved fits), median and {INTERVAL} "
            "credible interval (CrI); P(HR > 1) is the posterior probability of a higher hazard.",
            "'Prior + published only': the fit's log-HR prior updated by the published estimate "
            "alone (normal likelihood on log HR, SE from the published CI), computed exactly; it "
            "shows how far the prior by itself pulls each published HR towards 1.",
            "Cox on cohort: univariate Cox (Efron ties), Wald CI and P, on the reconstructed "
            "cohort (lifelines).",
            "",
            markdown_table(comparison_display(rows)),
        ]
    )


# --------------------------------------------------------------------------- sensitivity


def sensitivity_summary_level(published: Any, table: pd.DataFrame) -> pd.DataFrame:
    """Add the summary-level posterior of each Table 2 HR under each sensitivity prior."""
    from analysis.inference.sensitivity import SENSITIVITY_PRIORS
    from analysis.inference.summary_posterior import summary_posterior

    med, p_gt = [], []
    for r in table.itertuples():
        target = next(
            (t for t in HR_TARGETS if find_fit(t.endpoint, t.subset, (t.covariate,)) == r.model),
            None,
        )
        entry = published.get(target.key) if target and target.key in published else None
        prior = SENSITIVITY_PRIORS.get(r.prior)
        if entry is None or prior is None or entry.lower is None or entry.value is None:
            med.append(math.nan)
            p_gt.append(math.nan)
            continue
        s = summary_posterior(
            float(entry.value),
            float(entry.lower),
            float(entry.upper),
            family=prior.effect_family,
            prior_sd=prior.effect_sd,
            prior_nu=prior.effect_nu,
        )
        med.append(s.median_hr)
        p_gt.append(s.prob_gt_1)
    out = table.copy()
    out["summary_median"] = med
    out["summary_prob_gt_1"] = p_gt
    return out


def sensitivity_markdown(table: pd.DataFrame, timings: dict[str, Any]) -> str:
    """``prior_sensitivity.md``."""
    lines = [
        "# Prior sensitivity of the Table 2 hazard ratios",
        "",
        "Each Table 2 model refit with the log-HR prior below (baseline priors unchanged); one "
        f"compiled model, prior and data swapped as data. Compile {timings['compile_seconds']} s,"
        f" sampling {timings['sampling_seconds']} s for {timings['fits']} fits. Posterior median "
        f"HR ({INTERVAL} CrI); 'prior + published' is the same prior updated by the published "
        "estimate alone.",
        "",
        "| model | log-HR prior | posterior HR (95% CrI) | P(HR > 1) | prior + published HR | "
        "prior + published P(HR > 1) | registry fit, same prior | sampling bar |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        bar = (
            "met"
            if r.bar_met
            else (
                f"MISSED (R-hat {r.max_rhat:.3f}, ESS {r.min_ess_bulk:.0f}/{r.min_ess_tail:.0f}, "
                f"{r.divergences} divergences)"
            )
        )
        lines.append(
            f"| {r.model} | {r.prior} | {_ci(r.hr_median, r.hr_lower, r.hr_upper)} | "
            f"{_f(r.prob_gt_1, 3)} | {_f(r.summary_median)} | {_f(r.summary_prob_gt_1, 3)} | "
            f"{_f(getattr(r, 'registry_fit_hr_median', math.nan))} | {bar} |"
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- LOO


def loo_fit_names() -> dict[str, str | None]:
    """LOO candidate label -> registry fit name (None where the registry has no such fit)."""
    return {label: find_fit("dss", "tma", covs) for label, covs in LOO_MODELS}


def run_loo(fits_dir: Path) -> dict[str, Any]:
    """PSIS-LOO of the DSS candidates among the saved fits; a JSON-ready dict."""
    from analysis.inference import diagnostics as diagnostics

    names = loo_fit_names()
    missing = [
        label for label, n in names.items() if n is None or not (fits_dir / f"{n}.nc").exists()
    ]
    available = {label: n for label, n in names.items() if label not in missing}
    result: dict[str, Any] = {
        "models": {label: n for label, n in names.items()},
        "missing": missing,
        "k_threshold": diagnostics.PARETO_K_OK,
    }
    if len(available) < 2:
        result["comparison"] = []
        result["pareto"] = []
        return result
    fits = load_fits(fits_dir, list(available.values()))
    by_label = {label: fits[n] for label, n in available.items()}
    comparison, pareto = diagnostics.loo_compare(by_label)
    comp = comparison.reset_index()
    keep = ["model", "rank", "elpd_loo", "p_loo", "elpd_diff", "dse", "se", "weight", "warning"]
    result["comparison"] = _records(comp[[c for c in keep if c in comp.columns]])
    result["pareto"] = _records(pareto.reset_index())
    return result


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for r in df.to_dict("records"):
        out.append({k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()})
    return out


def loo_markdown(loo: dict[str, Any]) -> str:
    """``loo.md``: elpd differences with SE, Pareto k, and a plain verdict on trust."""
    k_col = f"n_k_over_{loo['k_threshold']}"
    lines = [
        "# Model comparison: PSIS-LOO, disease-specific survival on the 26 TMA patients",
        "",
        "Leave-one-patient-out predictive accuracy (expected log predictive density, elpd; "
        "higher is better), estimated by Pareto-smoothed importance sampling. elpd_diff is "
        "relative to the best model, with its standard error (dse).",
        "",
    ]
    if loo["missing"]:
        lines += [
            "Not available (no saved registry fit): " + ", ".join(loo["missing"]) + ".",
            "",
        ]
    if not loo["comparison"]:
        return "\n".join([*lines, "Fewer than two candidate fits: no comparison.", ""])
    pareto = {r["model"]: r for r in loo["pareto"]}
    lines += [
        "| model | elpd_loo (SE) | elpd_diff (SE) | p_loo | max Pareto k | patients k > "
        f"{loo['k_threshold']} |",
        "|---|---|---|---|---|---|",
    ]
    for r in loo["comparison"]:
        pk = pareto[r["model"]]
        lines.append(
            f"| {r['model']} | {_f(r['elpd_loo'])} ({_f(r['se'])}) | {_f(r['elpd_diff'])} "
            f"({_f(r['dse'])}) | {_f(r['p_loo'])} | {_f(pk['max_k'])} | {pk[k_col]} |"
        )
    lines += ["", *loo_verdict(loo), ""]
    return "\n".join(lines)


def loo_verdict(loo: dict[str, Any]) -> list[str]:
    """Plain sentences: which model is best, whether the difference is meaningful, trust in k."""
    if not loo["comparison"]:
        return []
    k_col = f"n_k_over_{loo['k_threshold']}"
    best = loo["comparison"][0]
    out = [f"Best by elpd: {best['model']}."]
    for r in loo["comparison"][1:]:
        diff, dse = abs(r["elpd_diff"]), r["dse"]
        size = "within 2 SE: not distinguishable" if diff < 2 * dse else "more than 2 SE"
        out.append(f"{r['model']}: {diff:.2f} lower ({size}).")
    bad = [r for r in loo["pareto"] if r[k_col] > 0]
    if bad:
        for r in bad:
            out.append(
                f"WARNING {r['model']}: {r[k_col]} patient(s) with Pareto k > "
                f"{loo['k_threshold']} (max {r['max_k']:.2f}): its LOO estimate is NOT reliable "
                "(too much weight on single patients); treat its elpd as approximate."
            )
    else:
        out.append(f"All Pareto k <= {loo['k_threshold']}: the PSIS estimates are reliable.")
    return out


# --------------------------------------------------------------------------- vlms compare


def write_comparison(rows: list[dict[str, Any]], meta: dict[str, Any], out_dir: Path) -> str:
    """Write ``tables/hr_comparison.{csv,md,json}``; return the markdown."""
    tables = Path(out_dir) / "tables"
    md = comparison_markdown(rows, meta)
    write_text(tables / "hr_comparison.csv", pd.DataFrame(rows).to_csv(index=False))
    write_text(tables / "hr_comparison.md", md)
    write_json(tables / "hr_comparison.json", json_safe({**meta, "rows": rows}))
    return md


def registry_reference(table: pd.DataFrame, fits: dict[str, Any]) -> pd.DataFrame:
    """Add the saved registry fit's posterior median HR on rows whose prior is the registry's."""
    from analysis.inference.sensitivity import SENSITIVITY_PRIORS

    ref = []
    for r in table.itertuples():
        p, reg = SENSITIVITY_PRIORS.get(r.prior), registry_priors(r.model)
        same = p is not None and (p.effect_family, p.effect_sd, p.effect_nu) == (
            reg.effect_family,
            reg.effect_sd,
            reg.effect_nu,
        )
        ref.append(
            posterior_hr(fits[r.model], r.covariate)["median"]
            if same and r.model in fits
            else math.nan
        )
    out = table.copy()
    out["registry_fit_hr_median"] = ref
    return out


def run_cli(args: argparse.Namespace) -> int:
    """Handler of ``vlms compare``."""
    from analysis.frequentist.paper_analyses import paper_statistics
    from analysis.inference.engine import SamplerSettings
    from analysis.inference.registry import REGISTRY
    from analysis.paper.published import load_published

    t0 = time.perf_counter()
    out_dir = Path(args.out_dir)
    fits_dir = out_dir / "fits"
    tables = out_dir / "tables"
    if not Path(args.cohort).is_file():
        raise VlmsInputError("file not found (run `vlms reconstruct` first)", file=str(args.cohort))
    if not Path(args.published).is_file():
        raise VlmsInputError("file not found", file=str(args.published))
    df = ch.load_cohort(args.cohort)
    published = load_published(args.published)
    fits = load_fits(fits_dir, [s.name for s in REGISTRY])
    if not fits:
        _log(f"vlms compare: no saved fits in {fits_dir} (run `vlms fit`); posterior columns empty")
    frequentist = paper_statistics(df, fast=False)
    rows = comparison_rows(published, frequentist, fits)
    meta = {"cohort": str(args.cohort), "n": len(df), "interval": INTERVAL, "synthetic": True}
    md = write_comparison(rows, meta, out_dir)
    print(md)
    _log(f"vlms compare: comparison table at {time.perf_counter() - t0:.1f} s")
    from analysis.comparison import cif as cc

    cif = cc.cif_comparison(df, fits)
    cc.write_tables(cif, {"cohort": str(args.cohort), "n": len(df), "synthetic": True}, out_dir)
    print("Cumulative incidence, posterior median vs Aalen-Johansen (tables/cif_comparison.md):")
    for line in cc.largest_lines(cif) if cif["rows"] else ["no saved competing-risk fit"]:
        print(f"  {line}")
    print()
    from analysis.comparison.multistate import run_comparison as compare_multistate

    ms_meta = {"cohort": str(args.cohort), "synthetic": True}
    print(f"Illness-death model: {compare_multistate(df, fits_dir, out_dir, ms_meta, args.seed)}")
    print()
    from analysis.comparison import imputation as ci

    imputed = ci.imputation_comparison(fits_dir)
    ci.write_tables(imputed, {"cohort": str(args.cohort), "synthetic": True}, out_dir)
    print(
        f"Complete-case vs imputed: {len(imputed['rows'])} hazard ratios, mean interval width "
        f"ratio (imputed / complete case) {imputed['mean_width_ratio']:.2f} "
        "(tables/imputation.md)"
    )

    from analysis.inference.sensitivity import run_sensitivity

    settings = SamplerSettings(seed=args.seed)
    sens, timings = run_sensitivity(df, settings, log=_log)
    sens = registry_reference(sensitivity_summary_level(published, sens), fits)
    write_text(tables / "prior_sensitivity.csv", sens.to_csv(index=False))
    write_text(tables / "prior_sensitivity.md", sensitivity_markdown(sens, timings))
    write_json(
        tables / "prior_sensitivity.json",
        json_safe({"timings": timings, "rows": _records(sens)}),
    )
    _log(f"vlms compare: sensitivity done at {time.perf_counter() - t0:.1f} s")
    loo = run_loo(fits_dir)
    write_json(tables / "loo.json", json_safe(loo))
    write_text(tables / "loo.md", loo_markdown(loo))
    print(loo_markdown(loo))
    _log(f"vlms compare: done in {time.perf_counter() - t0:.1f} s; tables in {tables}")
    ok = bool(sens["bar_met"].all())
    if not ok:
        _log("vlms compare: a sensitivity refit MISSED the sampling bar (see prior_sensitivity.md)")
    return 0 if ok else 1
