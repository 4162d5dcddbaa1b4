"""``vlms compare``: how much of each published hazard ratio survives a careful Bayesian
reading; prior sensitivity, cumulative incidence and PSIS-LOO tables (the figures are drawn by
``vlms report``). Reads the saved fits only, except the selection model, which it samples.

Outputs (under ``--out-dir``, default ``reports/``):

* ``tables/hr_comparison.{csv,md,json}``: one row per hazard ratio the paper publishes
  (beta-catenin and IGF-1R on RFS and on DSS, surgery plus radiation on DSS, adjuvant therapy):
  the published HR, CI and P; the fit's log-HR prior updated by the published estimate alone
  (:mod:`analysis.inference.summary_posterior`); the univariate Cox HR on every fitted member of
  the reconstruction ensemble (median and 90% range); the pooled posterior over the members
  (``fits/pooled/<name>.nc``) with the between-reconstruction share of its log-HR variance
  (:mod:`analysis.comparison.ensemble_summary`); the selection-adjusted posterior of the two
  printed biomarkers (:mod:`analysis.comparison.selection`); and, in the CSV/JSON, the single
  cohort's Cox HR and registry-fit posterior. The JSON carries every column and the framing.
* ``tables/selection_adjusted.{csv,md,json}`` (:mod:`analysis.comparison.selection`).
* ``tables/pooled_hazard_ratios.{csv,json}``: every registry PEM covariate's pooled HR and
  between-reconstruction variance share.
* ``tables/prior_sensitivity.{csv,md,json}``: the Table 2 fits refit by ``vlms fit`` under four
  log-HR priors (``fits/prior_sensitivity.csv``), with the published-estimate columns.
* ``tables/loo.{csv,md,json}``: PSIS-LOO of DSS on the TMA patients, no biomarker vs
  beta-catenin vs IGF-1R vs both: a check of the pipeline on synthetic data, not a ranking of
  biomarkers (ArviZ via analysis/inference/diagnostics.py).
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
from collections.abc import Callable
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

LOO_CAVEAT = (
    "This is not a ranking of biomarkers: the reconstructed cohort was built so that the "
    "published associations hold, so which model predicts it best says nothing about the "
    "patients. It checks the pipeline on synthetic data (pointwise log-likelihoods, Pareto k, "
    "models that can be told apart or not), DSS on the TMA patients."
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


SUMMARY_FIELDS = ("median", "lower", "upper", "prob_gt_1")
COX_FIELDS = ("median", "lower", "upper", "members", "infinite")
POOLED_FIELDS = (
    *SUMMARY_FIELDS,
    "members",
    "draws",
    "log_hr_within",
    "log_hr_between",
    "log_hr_between_share",
)
SELECTION_FIELDS = (*SUMMARY_FIELDS, "tau_median", "tau_lower", "tau_upper")


def comparison_rows(
    published: Any,
    frequentist: dict[str, float],
    fits: dict[str, Any],
    targets: tuple[HRTarget, ...] = HR_TARGETS,
    *,
    ensemble: dict[int, dict[str, float]] | None = None,
    pooled: dict[str, Any] | None = None,
    selection: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """One dict per target with every column of the comparison.

    Columns (prefix): ``published_*`` (the paper: HR, 95% CI, P); ``summary_*`` (the fit's
    log-HR prior updated by the published estimate alone); ``ensemble_cox_*`` (univariate Cox
    on every fitted member of the reconstruction ensemble: median and 90% range over them;
    ``ensemble`` maps member -> :func:`paper_statistics`); ``pooled_*`` (the pooled posterior of
    the registry fit over the members: median, 95% interval, P(HR > 1), and the between-
    reconstruction share of its log-HR variance; ``pooled`` maps fit name -> pooled posterior);
    ``selection_*`` (the selection-adjusted posterior, default setting, for the biomarkers;
    ``selection`` maps published key -> row of :mod:`analysis.comparison.selection`); and, for
    the single cohort of ``--cohort``, ``freq_*`` (Cox) and ``posterior_*`` (its registry fit).
    """
    from analysis.comparison.ensemble_summary import across_members, pooled_hr

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
            "fit": fit_name or "",
            "prior": priors.describe().split(";")[0],
            "published_hr": pub["value"],
            "published_lower": pub["lower"],
            "published_upper": pub["upper"],
            "published_p": pub["p"],
        }
        row.update(_summary_columns(pub, priors))
        cox = across_members(ensemble, t.key) if ensemble else None
        row.update(
            _prefixed("ensemble_cox", cox, ("median", "lower", "upper", "members", "infinite"))
        )
        mix = pooled.get(fit_name) if (pooled and fit_name) else None
        has = mix is not None and t.covariate in mix["hr"].coords["covariate"].values
        post = pooled_hr(mix, t.covariate) if has else None
        row.update(_prefixed("pooled", post, POOLED_FIELDS))
        sel = (selection or {}).get(t.key)
        row.update(_prefixed("selection", _selection_fields(sel), SELECTION_FIELDS))
        row["selection_note"] = "" if sel else "not one of the tested biomarkers"
        row.update(_cohort_columns(t, frequentist, idata))
        rows.append(row)
    return rows


def _prefixed(prefix: str, values: dict[str, Any] | None, fields: tuple[str, ...]) -> dict:
    return {f"{prefix}_{f}": (values or {}).get(f, math.nan) for f in fields}


def _selection_fields(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    out = {f: row[f"adjusted_{f}"] for f in SUMMARY_FIELDS}
    out.update({f"tau_{f}": row[f"tau_{f}"] for f in ("median", "lower", "upper")})
    return out


def _summary_columns(pub: dict[str, float], priors: Any) -> dict[str, float]:
    from analysis.inference.summary_posterior import summary_posterior

    names = (
        "published_se_log_hr",
        "summary_median",
        "summary_lower",
        "summary_upper",
        "summary_prob_gt_1",
        "summary_shrinkage",
    )
    if not all(math.isfinite(pub[f]) and pub[f] > 0 for f in ("value", "lower", "upper")):
        return dict.fromkeys(names, math.nan)
    s = summary_posterior(
        pub["value"],
        pub["lower"],
        pub["upper"],
        family=priors.effect_family,
        prior_sd=priors.effect_sd,
        prior_nu=priors.effect_nu,
    )
    values = (s.se, s.median_hr, s.lower, s.upper, s.prob_gt_1, s.median_hr / pub["value"])
    return dict(zip(names, values, strict=True))


def _cohort_columns(t: HRTarget, frequentist: dict[str, float], idata: Any) -> dict[str, Any]:
    """The single cohort's Cox HR and registry-fit posterior (``--cohort``)."""
    freq = frequentist.get(t.key, math.nan)
    out: dict[str, Any] = {
        "freq_hr": freq,
        "freq_lower": frequentist.get(f"{t.key}:lower", math.nan),
        "freq_upper": frequentist.get(f"{t.key}:upper", math.nan),
        "freq_p": frequentist.get(f"{t.key}:p", math.nan),
        "freq_note": "infinite (monotone likelihood)"
        if isinstance(freq, float) and math.isinf(freq)
        else ("not estimable" if isinstance(freq, float) and math.isnan(freq) else ""),
        "fit_n": int(idata.posterior.attrs.get("n", 0)) if idata is not None else 0,
        "fit_events": int(idata.posterior.attrs.get("events", 0)) if idata is not None else 0,
    }
    if idata is not None and t.covariate in idata.posterior["hr"].coords["covariate"].values:
        post = posterior_hr(idata, t.covariate)
        out.update({f"posterior_{k}": v for k, v in post.items() if k != "draws"})
        out["posterior_note"] = ""
    else:
        out.update(_prefixed("posterior", None, SUMMARY_FIELDS))
        out["posterior_note"] = "not modelled (no registry fit for this analysis)"
    return out


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


def _with_p(text: str, p: Any) -> str:
    return text if text == "-" else f"{text}; {_f(p, 3)}"


def _share(v: Any) -> str:
    return "-" if not isinstance(v, int | float) or math.isnan(v) else f"{100 * v:.0f}%"


def has_ensemble(rows: list[dict[str, Any]]) -> bool:
    """Whether the rows carry ensemble columns (else the single cohort's are shown)."""
    return any(
        isinstance(r.get("pooled_median"), float) and math.isfinite(r["pooled_median"])
        for r in rows
    )


def comparison_display(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Rows of formatted strings for the markdown and HTML tables (column -> text).

    With an ensemble: published, prior + published, ensemble Cox, pooled posterior with the
    between-reconstruction share, selection-adjusted. Without one: the single cohort's Cox and
    posterior in place of the ensemble columns.
    """
    ensemble = has_ensemble(rows)
    out = []
    for r in rows:
        shown = {
            "Hazard ratio": r["label"],
            "Published HR (95% CI); P": _ci(
                r["published_hr"], r["published_lower"], r["published_upper"]
            )
            + f"; {_p(r['published_p'])}",
            "Prior + published alone (95% CrI); P(HR > 1)": _with_p(
                _ci(r["summary_median"], r["summary_lower"], r["summary_upper"]),
                r["summary_prob_gt_1"],
            ),
        }
        if ensemble:
            n = r["ensemble_cox_members"]
            cox = _ci(r["ensemble_cox_median"], r["ensemble_cox_lower"], r["ensemble_cox_upper"])
            shown["Ensemble Cox HR: median (90% range over members)"] = (
                cox if cox == "-" else f"{cox} [{_f(n, 0)} members]"
            )
            shown["Pooled posterior (95% CrI); P(HR > 1)"] = _with_p(
                _ci(r["pooled_median"], r["pooled_lower"], r["pooled_upper"]),
                r["pooled_prob_gt_1"],
            )
            shown["Between-reconstruction share of log-HR variance"] = _share(
                r["pooled_log_hr_between_share"]
            )
        else:
            freq = r["freq_note"] or _ci(r["freq_hr"], r["freq_lower"], r["freq_upper"])
            shown["Cox on the cohort (95% CI)"] = freq
            shown["Posterior on the cohort (95% CrI); P(HR > 1)"] = r["posterior_note"] or (
                _with_p(
                    _ci(r["posterior_median"], r["posterior_lower"], r["posterior_upper"]),
                    r["posterior_prob_gt_1"],
                )
            )
        shown["Selection-adjusted (95% CrI); P(HR > 1)"] = r["selection_note"] or _with_p(
            _ci(r["selection_median"], r["selection_lower"], r["selection_upper"]),
            r["selection_prob_gt_1"],
        )
        out.append(shown)
    return out


FRAMING = (
    "The cohort-based columns agree with the paper by construction wherever the reconstruction "
    "was calibrated to the published hazard ratio, so that agreement is no evidence; what they "
    "add are quantities the paper does not print: the probability that each HR exceeds 1 once "
    "every reconstruction consistent with the paper is integrated over, and how much of the "
    "uncertainty comes from not knowing the patients rather than from their number."
)
"""The one sentence above the comparison table (report and markdown)."""


def _ranges(ids: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3, 7"``."""
    runs: list[list[int]] = []
    for i in sorted(ids):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs) or "none"


def column_notes(meta: dict[str, Any]) -> list[str]:
    """What each column is, one line each."""
    lines = [
        "Published: the paper's HR, 95% CI and P.",
        "Prior + published alone: the fits' log-HR prior updated by the published estimate only "
        "(normal likelihood on the log HR, SE from the published CI; exact): the primary "
        "Bayesian reading of a published number.",
    ]
    if meta.get("members"):
        lines += [
            f"Ensemble Cox: univariate Cox (Efron ties) on each of the {meta['members']} "
            f"reconstructed cohorts of `{meta.get('ensemble', '')}` that were fitted (members "
            f"{_ranges(meta.get('member_ids', []))}); median and 5%-95% range over them.",
            "Pooled posterior: the registry's piecewise-exponential model fitted on each of them, "
            f"draws pooled with equal weight; median and {INTERVAL} credible interval. Between-"
            "reconstruction share: Var_r(E[log HR | r]) / Var(log HR) (law of total variance).",
        ]
    else:
        lines += [
            f"Cox and posterior on the cohort: `{meta['cohort']}` (no reconstruction ensemble).",
        ]
    lines.append(
        "Selection-adjusted: the selection model of `tables/selection_adjusted.md` (default "
        "setting), for the two printed biomarkers only."
    )
    return lines


def comparison_markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """``hr_comparison.md``."""
    return "\n".join(
        [
            "# Hazard ratios: the published estimates, read with a prior, across the "
            "reconstruction ensemble, and adjusted for selection",
            "",
            FRAMING,
            "",
            markdown_table(comparison_display(rows)),
            *[f"- {line}" for line in column_notes(meta)],
            "",
            "The cohorts are SYNTHETIC reconstructions, not the study's patients.",
            "",
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


def sensitivity_markdown(table: pd.DataFrame) -> str:
    """``prior_sensitivity.md``."""
    lines = [
        "# Prior sensitivity of the Table 2 hazard ratios",
        "",
        "Each Table 2 model refit on the cohort by `vlms fit` with the log-HR prior below "
        "(baseline priors unchanged), in the batches of the one stacked PEM structure that serves "
        f"every PEM fit (the prior is data). Posterior median HR ({INTERVAL} CrI); 'prior + "
        "published' is the same prior updated by the published estimate alone.",
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
        "# PSIS-LOO on the synthetic cohort: a check of the pipeline",
        "",
        LOO_CAVEAT,
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


def ensemble_for(
    args: argparse.Namespace, out_dir: Path
) -> tuple[Path | None, dict[str, list[int]]]:
    """The ensemble whose members' Cox HRs go beside the pooled posterior: ``--ensemble``, else
    the file the saved ensemble fits name (when it still exists); and, when that file is the
    saved fits' own, the members each model's fits hold (``vlms fit --members N`` fits the
    first N: the Cox column then summarises the members the pooled posteriors mix), else
    ``{}`` (every member of the file)."""
    from analysis.inference.ensemble_io import saved_ensemble

    source, fitted = saved_ensemble(out_dir)
    if getattr(args, "ensemble", None) is not None:
        path = Path(args.ensemble)
        same = source is not None and path.resolve() == Path(source).resolve()
        return path, fitted if same else {}
    if source and Path(source).is_file():
        return Path(source), fitted
    return None, {}


def fitted_members(
    members: dict[int, Any], fitted: dict[str, list[int]], log: Callable[[str], None]
) -> dict[int, Any]:
    """The members of the ensemble file that every model's saved fits hold (all of them when
    ``fitted`` is empty); logs when the models hold different members or members the file
    lacks."""
    if not fitted:
        return members
    sets = [set(v) for v in fitted.values()]
    common = set.intersection(*sets)
    if any(s != common for s in sets):
        log(
            "vlms compare: the saved ensemble fits hold different members (a vlms fit --only "
            f"run?); the Cox column takes the {len(common)} every model holds"
        )
    missing = sorted(common - set(members))
    if missing:
        log(
            f"vlms compare: {len(missing)} fitted members are not in the ensemble file "
            f"(regenerated since?); the Cox column leaves them out"
        )
    return {r: m for r, m in members.items() if r in common}


def run_cli(args: argparse.Namespace) -> int:
    """Handler of ``vlms compare``."""
    from analysis.comparison import selection as sel
    from analysis.frequentist.paper_analyses import paper_statistics
    from analysis.inference.ensemble_io import load_pooled
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
    ens_path, fitted = ensemble_for(args, out_dir)
    members = ch.load_ensemble(ens_path) if ens_path is not None else {}
    members = fitted_members(members, fitted, _log)
    fits = load_fits(fits_dir, [s.name for s in REGISTRY])
    if not fits:
        _log(f"vlms compare: no saved fits in {fits_dir} (run `vlms fit`); posterior columns empty")
    pooled = {s.name: p for s in REGISTRY if (p := load_pooled(out_dir, s.name)) is not None}
    frequentist = paper_statistics(df, fast=False)
    per_member = {r: paper_statistics(m, fast=True) for r, m in members.items()}
    _log(
        f"vlms compare: Cox on the cohort and {len(members)} members at "
        f"{time.perf_counter() - t0:.1f} s"
    )
    selection = sel.run_selection(published, args.seed, log=_log)
    print(sel.write_selection(selection, out_dir))
    _log(f"vlms compare: selection-adjusted HRs at {time.perf_counter() - t0:.1f} s")
    rows = comparison_rows(
        published,
        frequentist,
        fits,
        ensemble=per_member or None,
        pooled=pooled,
        selection=sel.default_by_key(selection),
    )
    meta = {
        "cohort": str(args.cohort),
        "n": len(df),
        "interval": INTERVAL,
        "synthetic": True,
        "ensemble": str(ens_path) if members else "",
        "members": len(members),
        "member_ids": list(members),
        "framing": FRAMING,
    }
    meta["columns"] = column_notes(meta)
    print(write_comparison(rows, meta, out_dir))
    write_pooled_table(pooled, out_dir)
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

    ok = all(r["bar_met"] for r in selection.get("rows", []))
    sens_csv = fits_dir / "prior_sensitivity.csv"
    if sens_csv.is_file():
        sens = registry_reference(sensitivity_summary_level(published, pd.read_csv(sens_csv)), fits)
        write_text(tables / "prior_sensitivity.csv", sens.to_csv(index=False))
        write_text(tables / "prior_sensitivity.md", sensitivity_markdown(sens))
        write_json(tables / "prior_sensitivity.json", json_safe({"rows": _records(sens)}))
        ok &= bool(sens["bar_met"].all())
    else:
        _log(f"vlms compare: no {sens_csv} (run `vlms fit` on the whole registry)")
    loo = run_loo(fits_dir)
    write_json(tables / "loo.json", json_safe(loo))
    write_text(tables / "loo.md", loo_markdown(loo))
    print(loo_markdown(loo))
    _log(f"vlms compare: done in {time.perf_counter() - t0:.1f} s; tables in {tables}")
    if not ok:
        _log("vlms compare: a sensitivity or selection fit MISSED the sampling bar")
    return 0 if ok else 1


def write_pooled_table(pooled: dict[str, Any], out_dir: Path) -> None:
    """``tables/pooled_hazard_ratios.{csv,json}``: every registry PEM covariate's pooled HR and
    the between-reconstruction share of its log-HR variance (nothing without an ensemble)."""
    from analysis.comparison.ensemble_summary import decomposition_rows
    from analysis.inference.registry import REGISTRY

    pairs = [(s.name, c) for s in REGISTRY if s.builder == "pem" for c in s.covariates]
    rows = decomposition_rows(pooled, pairs)
    if not rows:
        return
    tables = Path(out_dir) / "tables"
    write_text(tables / "pooled_hazard_ratios.csv", pd.DataFrame(rows).to_csv(index=False))
    write_json(tables / "pooled_hazard_ratios.json", json_safe({"rows": rows}))
