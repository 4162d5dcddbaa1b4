"""Complete-case against imputed estimates (``vlms compare``: ``tables/imputation.*``).

For every registered fit that imputes unknown covariates and its complete-case twin (the same
end point, subset, covariates and model, ``missing="drop"``): per covariate (and cause), the
posterior median HR and 95% equal-tailed interval of each, the ratio of the interval widths on
the log scale (imputed / complete case; below 1: the patients the complete-case fit drops
sharpened the estimate) and the patients each fit used. Per imputed covariate: the values
imputed and the posterior of the covariate model's prevalence. No patient's imputed value is
shown (only summaries).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.comparison.posterior import posterior_hr
from analysis.core.tables import markdown_table, write_table_files
from analysis.inference.fits_io import load_fits
from analysis.inference.registry import REGISTRY, FitSpec

INTERVAL = "95% equal-tailed"


def imputation_pairs(specs: list[FitSpec] | None = None) -> list[tuple[FitSpec, FitSpec]]:
    """(imputed, complete-case) registry fits of the same analysis."""
    specs = REGISTRY if specs is None else specs
    pairs = []
    for spec in specs:
        if spec.missing != "impute":
            continue
        for other in specs:
            same = (other.endpoint, other.subset, other.covariates, other.builder) == (
                spec.endpoint,
                spec.subset,
                spec.covariates,
                spec.builder,
            )
            if same and other.missing == "drop":
                pairs.append((spec, other))
    return pairs


def hr_rows(name: str, imputed: Any, complete: Any) -> list[dict[str, Any]]:
    """One row per covariate (and cause) of the pair's hazard ratios."""
    post = imputed.posterior
    causes = [str(c) for c in post["cause"].values] if "cause" in post["hr"].dims else [None]
    n_imp, n_cc = int(post.attrs.get("n", 0)), int(complete.posterior.attrs.get("n", 0))
    missing = _values_imputed(post.attrs)
    rows = []
    for covariate in (str(c) for c in post["covariate"].values):
        for cause in causes:
            where = {} if cause is None else {"cause": cause}
            a, b = (posterior_hr(f, covariate, **where) for f in (imputed, complete))
            rows.append(
                {
                    "fit": name,
                    "covariate": covariate,
                    "cause": cause or "",
                    "values_imputed": missing.get(covariate, 0),
                    "n_imputed_fit": n_imp,
                    "n_complete_case": n_cc,
                    **{f"imputed_{k}": v for k, v in a.items() if k != "draws"},
                    **{f"complete_case_{k}": v for k, v in b.items() if k != "draws"},
                    "width_ratio": float(
                        np.log(a["upper"] / a["lower"]) / np.log(b["upper"] / b["lower"])
                    ),
                }
            )
    return rows


def _values_imputed(attrs: dict[str, Any]) -> dict[str, int]:
    """Values imputed per covariate, from a saved fit's attributes (``values_imputed`` is in
    the order of ``covariates``)."""
    names = str(attrs.get("covariates", "")).split(",")
    counts = np.atleast_1d(attrs.get("values_imputed", np.zeros(len(names))))
    return {n: int(c) for n, c in zip(names, counts, strict=False)}


def covariate_rows(name: str, imputed: Any) -> list[dict[str, Any]]:
    """Per imputed covariate: values imputed, the mean posterior P(x = 1) of those values and
    the covariate model's prevalence (at z = 0)."""
    post = imputed.posterior
    missing = _values_imputed(post.attrs)
    rows = []
    if "imputation_prevalence" not in post:
        return rows
    p_one = post["p_missing_is_1"].mean(("chain", "draw"))
    for covariate in (str(c) for c in post["imputed_covariate"].values):
        prev = post["imputation_prevalence"].sel(imputed_covariate=covariate).values.ravel()
        own = p_one.values[p_one["missing_covariate"].values == covariate]
        rows.append(
            {
                "fit": name,
                "covariate": covariate,
                "values_imputed": missing.get(covariate, int(own.size)),
                "mean_p_imputed_is_1": float(own.mean()) if own.size else float("nan"),
                "prevalence_at_z0_median": float(np.median(prev)),
                "prevalence_at_z0_lower": float(np.quantile(prev, 0.025)),
                "prevalence_at_z0_upper": float(np.quantile(prev, 0.975)),
            }
        )
    return rows


def imputation_comparison(fits_dir: Path) -> dict[str, Any]:
    """Every saved (imputed, complete-case) pair; pairs with a missing fit are listed."""
    pairs = imputation_pairs()
    fits = load_fits(fits_dir, [s.name for pair in pairs for s in pair])
    rows, covariates, absent = [], [], []
    for imp, cc in pairs:
        if imp.name not in fits or cc.name not in fits:
            absent.append({"fit": imp.name, "complete_case": cc.name})
            continue
        rows += hr_rows(imp.name, fits[imp.name], fits[cc.name])
        covariates += covariate_rows(imp.name, fits[imp.name])
    ratios = [r["width_ratio"] for r in rows if np.isfinite(r["width_ratio"])]
    return {
        "interval": INTERVAL,
        "rows": rows,
        "covariates": covariates,
        "absent": absent,
        "mean_width_ratio": float(np.mean(ratios)) if ratios else float("nan"),
    }


def _ci(median: float, lower: float, upper: float) -> str:
    return f"{median:.2f} ({lower:.2f}-{upper:.2f})"


def display_rows(result: dict[str, Any]) -> list[dict[str, str]]:
    """Formatted rows of the hazard-ratio table."""
    return [
        {
            "fit": r["fit"],
            "covariate": r["covariate"],
            "cause": r["cause"].replace("_", " ") or "-",
            "values imputed": str(r["values_imputed"]),
            f"imputed HR (n = {r['n_imputed_fit']})": _ci(
                r["imputed_median"], r["imputed_lower"], r["imputed_upper"]
            ),
            f"complete-case HR (n = {r['n_complete_case']})": _ci(
                r["complete_case_median"], r["complete_case_lower"], r["complete_case_upper"]
            ),
            "width ratio": f"{r['width_ratio']:.2f}",
        }
        for r in result["rows"]
    ]


def markdown(result: dict[str, Any], meta: dict[str, Any]) -> str:
    """``imputation.md``."""
    lines = [
        "# Complete-case against imputed hazard ratios",
        "",
        f"Cohort: `{meta.get('cohort', '?')}`; SYNTHETIC reconstruction. Posterior medians and "
        f"{result['interval']} intervals. Width ratio: imputed / complete-case interval width "
        f"on the log scale (mean {result['mean_width_ratio']:.2f}).",
        "",
    ]
    for a in result["absent"]:
        lines.append(f"- {a['fit']} or {a['complete_case']}: no saved fit (run `vlms fit`)")
    lines += ["", markdown_table(display_rows(result)), "## Imputed covariates", ""]
    lines.append(
        markdown_table(
            [
                {
                    "fit": c["fit"],
                    "covariate": c["covariate"],
                    "values imputed": str(c["values_imputed"]),
                    "mean P(imputed value = 1)": f"{c['mean_p_imputed_is_1']:.2f}",
                    "prevalence at z = 0 (95% CrI)": _ci(
                        c["prevalence_at_z0_median"],
                        c["prevalence_at_z0_lower"],
                        c["prevalence_at_z0_upper"],
                    ),
                }
                for c in result["covariates"]
            ]
        )
    )
    return "\n".join(lines)


def write_tables(result: dict[str, Any], meta: dict[str, Any], out_dir: Path) -> str:
    """Write ``<out_dir>/tables/imputation.{csv,md,json}`` atomically; return the markdown."""
    md = markdown(result, meta)
    rows = pd.DataFrame(result["rows"])
    write_table_files(Path(out_dir) / "tables", "imputation", rows, md, {**meta, **result})
    return md
