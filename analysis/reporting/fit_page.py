"""``vlms report --fit FILE.nc``: a one-page report of one saved fit (yours or a registry one).

The page says what was fitted (the file name and columns, never rows; time unit, events, rows
dropped, cut points, priors, how the covariates were centred and scaled), gives each hazard
ratio per unit and per scale unit with its 95% equal-tailed interval and P(HR > 1), the
survival or cumulative-incidence curve averaged over the cohort's covariates, and the same
review as the registry fits: the sampling bar, and trace, rank, energy and prior predictive
plots. A fit that missed the bar is flagged at the top. Everything comes from the NetCDF.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from analysis.core.atomic import write_text
from analysis.reporting.html import CSS, Inputs, esc, image, table

FACTS = (
    ("source_file", "file"),
    ("time_column", "time column"),
    ("event_column", "event column"),
    ("event_coding", "event coding"),
    ("time_unit", "time unit"),
    ("endpoint", "end point"),
    ("subset", "subset"),
    ("n_read", "rows read"),
    ("n_dropped_missing_covariate", "rows dropped (missing covariate)"),
    ("n", "rows analysed"),
    ("events", "events"),
    ("events_per_cause", "events per cause"),
    ("cause_codes", "cause codes"),
    ("input_notes", "notes on the input"),
    ("cut_points_months", "cut points"),
    ("model_description", "model"),
    ("priors", "priors"),
    ("covariate_centring", "covariate coding"),
    ("intervals", "intervals"),
    ("sampler", "sampler"),
    ("draws", "draws per chain"),
    ("tune", "tuning draws per chain"),
    ("chains", "chains"),
    ("seed", "seed"),
    ("target_accept", "target acceptance"),
)


def hr_rows(idata: Any) -> list[list[str]]:
    """Rows of the HR table: covariate (and cause), per unit, per scale unit, P(HR > 1)."""
    from analysis.inference.fit_report import hr_summary

    post = idata.posterior
    if "beta" not in post:
        return []
    attrs = post.attrs
    names = [str(c) for c in post["beta"].coords["covariate"].values]
    scales = np.atleast_1d(attrs.get("covariate_scale", np.ones(len(names)))).astype(float)
    kinds = str(attrs.get("covariate_kind", ",".join(["binary"] * len(names)))).split(",")
    causes = [str(c) for c in post["cause"].values] if "cause" in post["beta"].dims else [None]
    rows = []
    for cause in causes:
        for j, name in enumerate(names):
            sel = {"covariate": name, **({"cause": cause} if cause else {})}
            beta = post["beta"].sel(sel).values
            unit = hr_summary(beta)
            per_scale = "-"
            if scales[j] != 1.0:
                s = hr_summary(beta * scales[j])
                what = "SD" if kinds[j] == "numeric" else "gap"
                per_scale = f"{_hr(s)} per {what} ({scales[j]:.4g})"
            rows.append(
                [
                    name if cause is None else f"{name} ({cause})",
                    kinds[j] if j < len(kinds) else "",
                    _hr(unit),
                    per_scale,
                    f"{unit['prob_hr_gt_1']:.3f}",
                ]
            )
    return rows


def _hr(r: dict[str, float]) -> str:
    return f"{r['hr_median']:.3g} ({r['hr_lower']:.3g}-{r['hr_upper']:.3g})"


def curve_figure(idata: Any, figs: Path, name: str, unit: str) -> str | None:
    """The averaged survival (or each cause's CIF) figure; its file name, or None."""
    from analysis.reporting.figures import Band, band_plot

    post = idata.posterior
    if "cif" in post:
        curves = [(str(c), post["cif"].sel(cause=c)) for c in post["cause"].values]
        ylabel, start, what = "cumulative incidence", 0.0, "Cumulative incidence by cause"
    elif "survival_averaged" in post:
        curves = [("survival", post["survival_averaged"])]
        ylabel, start, what = "survival", 1.0, "Survival"
    else:
        return None
    bands = []
    for label, da in curves:
        draws = da.values.reshape(-1, da.sizes["time"])
        lo, med, hi = np.quantile(draws, [0.025, 0.5, 0.975], axis=0)
        bands.append(Band(label, da["time"].values, med, lo, hi))
    rel = f"figures/curve_{name}.png"
    band_plot(
        bands,
        figs.parent / rel,
        title=f"{what}, averaged over the cohort's covariates",
        xlabel=unit,
        ylabel=ylabel,
        start=start,
    )
    return rel


def build_page(path: Path, out_dir: Path) -> tuple[str, bool]:
    """The page of the fit at ``path`` (figures written under ``out_dir/figures``) and whether
    the fit met the sampling bar."""
    from analysis.inference.diagnostics import bar_table, check_fit_file, diagnose_fit, load_fit

    check_fit_file(path)
    name = path.stem
    figs = out_dir / "figures"
    diag = diagnose_fit(path, figs)
    idata = load_fit(path)
    attrs = dict(idata.posterior.attrs)
    unit = str(attrs.get("time_unit", "months"))
    inputs = Inputs(out_dir)
    parts = [f"<main><h1>Fit {esc(name)}</h1>"]
    if not diag["ok"]:
        parts.append(
            '<p class="bad-line">This fit MISSED the sampling bar: its numbers are not reliable '
            "(see the diagnostics below).</p>"
        )
    facts = [[label, _fact(attrs[key])] for key, label in FACTS if key in attrs]
    parts += ["<h2>What was fitted</h2>", table(["", ""], facts)]
    rows = hr_rows(idata)
    if rows:
        parts += [
            "<h2>Hazard ratios</h2>",
            "<p>Posterior median and 95% equal-tailed interval, per unit of each column as given "
            "and, where a scale unit is not 1, per scale unit (SD of a numeric column).</p>",
            table(["covariate", "kind", "HR per unit", "HR per scale unit", "P(HR > 1)"], rows),
        ]
        if attrs.get("covariate_notes"):
            parts.append(f'<p class="note">{esc(attrs["covariate_notes"])}</p>')
    rel = curve_figure(idata, figs, name, unit)
    if rel:
        parts.append(image(inputs, rel, f"curve of {name}", "posterior median and 95% band"))
    bar = "\n".join(bar_table([diag]))
    parts += ["<h2>Sampling diagnostics</h2>", f"<pre>{esc(bar)}</pre>"]
    for kind in ("trace", "rank", "energy", "prior_survival"):
        rel_fig = f"figures/{kind}_{name}.png"
        if inputs.path(rel_fig).is_file():
            parts.append(image(inputs, rel_fig, f"{kind} plot", kind.replace("_", " ")))
    versions = {k: v for k, v in attrs.items() if k.startswith("version_") or k == "python"}
    parts.append(
        '<p class="note">Versions: '
        + esc("; ".join(f"{k} {v}" for k, v in versions.items()))
        + ". Generated by <code>vlms report --fit</code> from the saved fit only.</p></main>"
    )
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Fit {esc(name)}</title><style>{CSS}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>\n"
    )
    return page, bool(diag["ok"])


def _fact(value: Any) -> str:
    if isinstance(value, np.ndarray | list | tuple):
        return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in np.ravel(value))
    return str(value)


def run_cli(args: argparse.Namespace) -> int:
    """Handler of ``vlms report``: with ``--fit FILE.nc [--out-dir DIR]`` write
    ``DIR/<name>.html`` (DIR: the fit's folder unless given); without, the registry's page
    (:func:`analysis.reporting.html.run_cli`)."""
    if getattr(args, "fit", None) is None:
        from analysis.reporting.html import run_cli as registry_page

        return registry_page(args)
    path = Path(args.fit)
    out_dir = Path(args.out_dir) if args.out_dir is not None else path.parent
    page, _ = build_page(path, out_dir)
    out = out_dir / f"{path.stem}.html"
    write_text(out, page)
    print(f"wrote {out}")
    return 0
