"""The report's section on missing covariates: each fit that imputes unknown covariates beside
its complete-case twin (``tables/imputation.json``, ``vlms compare``) and the simulation check of
the imputation (``validation/imputation.json``, ``make validate``)."""

from __future__ import annotations

from typing import Any

from analysis.reporting.html_parts import esc, missing, table

METHOD = (
    "A patient with an unknown tumour size or margin is not dropped: the likelihood sums over "
    "the values the covariate could take, each weighted by a logistic model of the covariate "
    "given the covariates known for every patient, estimated with the hazards (no discrete "
    "parameters; missing at random given what is observed). The complete-case fit is the "
    "paper's approach: it drops every patient with an unknown value."
)


def section_imputation(inputs: Any) -> str:
    """The HTML section (``inputs``: :class:`analysis.reporting.html_parts.Inputs`)."""
    from analysis.comparison.imputation import display_rows

    parts = [
        "<h2>3c. Missing covariates: every patient, complete-case and imputed estimates</h2>",
        f"<p>{esc(METHOD)}</p>",
        "<p>Both fits are on the chosen cohort only: the reconstruction ensemble's member fits "
        "(section 1) take complete cases, so no imputed fit is pooled over the members.</p>",
    ]
    data = inputs.json("tables/imputation.json")
    if data is None or not data.get("rows"):
        parts.append(missing("the complete-case vs imputed table", "vlms compare"))
    else:
        rows = display_rows(data)
        cols = list(rows[0])
        parts.append(table(cols, [[r[c] for c in cols] for r in rows]))
        ratio = f"{data['mean_width_ratio']:.2f}"
        parts.append(
            "<p>Width ratio: imputed / complete-case interval width on the log scale (mean "
            f"{esc(ratio)}); below 1, the patients the "
            "complete-case fit drops sharpened the estimate.</p>"
        )
    parts.append(validation_table(inputs))
    return "".join(parts)


def validation_table(inputs: Any) -> str:
    """Coverage and width of the 95% intervals in the simulation check, all covariates."""
    data = inputs.json("validation/imputation.json")
    if data is None:
        return missing("the imputation simulation check", "make validate")
    rows = [
        [
            r["kind"],
            r["mechanism"],
            r["method"].replace("_", " "),
            r["intervals"],
            f"{r['coverage']:.3f} ({r['coverage_se']:.3f})",
            f"{r['mean_width']:.2f}",
            f"{r['width_ratio']:.2f}",
        ]
        for r in data["summary"]
        if r["role"] == "all"
    ]
    s = data["settings"]
    head = (
        f"<h3>Simulation check ({esc(s['replicates_per_kind'])} cohorts of 63 patients per "
        "model; true hazard ratios drawn from the prior)</h3>"
    )
    header = ["model", "missingness", "method", "intervals", "coverage of 95% intervals (SE)",
              "mean width (log HR)", "width ratio imputed / complete case"]  # fmt: skip
    return head + table(header, rows)
