"""The report's figures from the cohort and the saved fits (drawn by
:mod:`analysis.reporting.figures`).

Survival panels put the Kaplan-Meier curve of the cohort under the posterior median and 95%
band of the registry fit that models the same end point, subset and covariate (a posterior
predictive check); CIF panels put Aalen-Johansen under the posterior CIF of each competing-risk
fit, on that fit's own patients; prior-against-posterior panels show every log hazard ratio.
Panels without a matching saved fit say so on the figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis import cohort as ch
from analysis.comparison.cif import competing_patients, draw_quantiles, posterior_cif_draws
from analysis.frequentist import estimators as fq
from analysis.inference.fits_io import find_fit
from analysis.reporting.figures import (
    ESTIMATE_KINDS,
    Band,
    CifCurve,
    CifPanel,
    ForestRow,
    KMGroup,
    Panel,
    PriorPosterior,
    cif_plot,
    prior_posterior_plot,
    survival_panels,
)


def _band(idata: Any, pattern: str, label: str) -> Any:

    s = idata.posterior["survival"].sel(pattern=pattern)
    t = s["time"].values
    v = s.transpose("chain", "draw", "time").values.reshape(-1, t.size)
    lo, med, hi = np.quantile(v, [0.025, 0.5, 0.975], axis=0)
    return Band(label, t, med, lo, hi)


def _km_group(label: str, t: np.ndarray, e: np.ndarray) -> Any:

    c = fq.km_curve(t, e)
    return KMGroup(label, c.time, c.survival, int(t.size), int(e.sum()))


def _marker_panel(
    df: pd.DataFrame, fits: dict[str, Any], endpoint: str, marker: str, title: str
) -> Any:

    tma = df.loc[df["tma"] == 1].reset_index(drop=True)
    t, e = (ch.dss if endpoint == "dss" else ch.rfs)(tma)
    x = tma[marker].to_numpy(float)
    groups, bands = [], []
    fit = find_fit(endpoint, "tma", (marker,))
    for level, name in ((0, "low (0-1)"), (1, "high (2-3)")):
        m = x == level
        if m.any():
            groups.append(_km_group(name, t[m], e[m]))
        if fit in fits:
            bands.append(_band(fits[fit], f"{marker}={level}", name))
    note = "" if fit in fits else "no saved posterior fit"
    ylabel = "disease-specific survival" if endpoint == "dss" else "recurrence-free proportion"
    return Panel(title, ylabel, groups, bands, note)


def make_figures(df: pd.DataFrame, fits: dict[str, Any], figs: Path) -> list[Path]:
    """The report's survival, CIF and prior/posterior figures from the cohort and saved fits."""

    written = []
    # Figure 1: recurrence by type, DSS overall. The paper's panel C (DSS from surgery by the
    # later recurrence type) moved to the multi-state section (reporting/multistate_section.py)
    rt, re_ = ch.rfs(df)
    rec = df["recurrence"].to_numpy()
    recurred = re_ > 0
    groups_a = [
        _km_group(k.replace("_", " and "), rt[recurred & (rec == k)], re_[recurred & (rec == k)])
        for k in ("local", "distant", "local_distant")
        if np.any(recurred & (rec == k))
    ]
    dt, de = ch.dss(df)
    overall = find_fit("dss", "all", ())
    bands_b = [_band(fits[overall], "all", "all")] if overall in fits else []
    panels = [
        Panel(
            "A. Time to recurrence by type (patients who recurred)",
            "proportion not yet recurred",
            groups_a,
            note="no posterior: a model would condition on the future recurrence type",
        ),
        Panel(
            "B. Disease-specific survival, all patients",
            "disease-specific survival",
            [_km_group("all", dt, de)],
            bands_b,
            note="" if bands_b else "no saved posterior fit",
        ),
    ]
    radiation = find_fit("dss", "all", ("radiation",))
    if radiation in fits:
        x = ch.radiation_any(df)
        panels.append(
            Panel(
                "C. Disease-specific survival by radiation (surgery plus radiation)",
                "disease-specific survival",
                [
                    _km_group("no radiation", dt[x == 0], de[x == 0]),
                    _km_group("radiation", dt[x == 1], de[x == 1]),
                ],
                [
                    _band(fits[radiation], "radiation=0", "no radiation"),
                    _band(fits[radiation], "radiation=1", "radiation"),
                ],
            )
        )
    written.append(
        survival_panels(
            panels,
            figs / "fig1_recurrence_dss.png",
            "Figure 1 redrawn: Kaplan-Meier (steps) vs posterior (bands)",
        )
    )
    panels2 = [
        _marker_panel(df, fits, "rfs", "beta_catenin", "A. Time to recurrence by beta-catenin"),
        _marker_panel(df, fits, "dss", "beta_catenin", "B. DSS by beta-catenin"),
        _marker_panel(df, fits, "rfs", "igf1r", "C. Time to recurrence by IGF-1R"),
        _marker_panel(df, fits, "dss", "igf1r", "D. DSS by IGF-1R"),
    ]
    written.append(
        survival_panels(
            panels2,
            figs / "fig2_biomarkers.png",
            "Figure 2 redrawn (26 TMA patients): Kaplan-Meier vs posterior",
        )
    )
    written.append(_cif_figure(df, fits, figs / "cif_first_recurrence.png"))
    for kind, name in (
        ("pem", "prior_posterior_log_hr.png"),
        ("competing", "prior_posterior_competing.png"),
    ):
        items = _prior_posterior_items(fits, kind)
        if items:
            written.append(prior_posterior_plot(items, figs / name))
    return written


def _cif_figure(df: pd.DataFrame, fits: dict[str, Any], path: Path) -> Path:
    """Aalen-Johansen against the posterior CIF of each saved competing-risk fit, on the fit's
    own patients (those it used); the whole cohort if none is saved."""

    panels = []
    for p in competing_patients(df, list(fits)):
        title = f"{p.fit}: {p.time.size} of {p.n_subset} patients used"
        panels.append(CifPanel(title, _cif_curves(p.time, p.codes, p.cause_names, fits[p.fit])))
    if not panels:
        t, cause = ch.first_recurrence(df)
        present = [k for k in sorted(ch.CAUSES) if np.any(cause == k)]
        recode = {0: 0, **{k: i + 1 for i, k in enumerate(present)}}
        codes = np.array([recode[int(v)] for v in cause])
        names = tuple(ch.CAUSES[k] for k in present)
        panels.append(
            CifPanel(
                f"all patients, n = {len(df)}",
                _cif_curves(t, codes, names, None),
                "no competing-risk posterior fit saved",
            )
        )
    return cif_plot(panels, path)


def _cif_curves(
    time_: np.ndarray, codes: np.ndarray, names: tuple[str, ...], idata: Any
) -> list[Any]:

    grid = np.unique(time_)
    causes = [k + 1 for k in range(len(names)) if np.any(codes == k + 1)]
    aj = fq.cumulative_incidence(time_, codes, grid, causes=causes)
    curves = []
    for k in causes:
        name = names[k - 1]
        band = None
        post = posterior_cif_draws(idata, name)
        if post is not None:
            lo, med, hi = draw_quantiles(post[1])
            band = Band(name, post[0], med, lo, hi)
        curves.append(CifCurve(name.replace("_", " "), grid, np.asarray(aj[k].cif), band))
    return curves


def _prior_posterior_items(fits: dict[str, Any], kind: str) -> list[Any]:
    """Prior and posterior draws of every log HR of the fits of one model kind."""
    items = []
    for name, idata in sorted(fits.items()):
        if idata.posterior.attrs.get("model_kind", "pem") != kind:
            continue
        if "beta" not in idata.posterior or "prior" not in idata.groups():
            continue
        if "beta" not in idata.prior:
            continue
        post_all, prior_all = idata.posterior["beta"], idata.prior["beta"]
        extra = [d for d in post_all.dims if d not in ("chain", "draw")]
        for idx in np.ndindex(*[post_all.sizes[d] for d in extra]):
            sel = {d: post_all.coords[d].values[i] for d, i in zip(extra, idx, strict=True)}
            label = ", ".join(str(v) for v in sel.values())
            post = post_all.sel(sel).values.ravel()
            prior = prior_all.sel(sel).values.ravel()
            items.append(PriorPosterior(f"{name}: {label}", prior, post))
    return items


def forest_rows(rows: list[dict[str, Any]]) -> list[Any]:
    """Forest-plot rows from the comparison rows: with an ensemble, published, prior +
    published, ensemble Cox, pooled posterior and selection-adjusted; without one, the single
    cohort's Cox and posterior in place of the ensemble's."""
    ensemble = any(_number(r.get("pooled_median")) > 0 for r in rows)
    skip = ("frequentist", "posterior") if ensemble else ("ensemble_cox", "pooled")
    out = []
    for r in rows:
        est = {
            kind: tuple(_number(r.get(c)) for c in style.columns)
            for kind, style in ESTIMATE_KINDS.items()
            if kind not in skip
        }
        out.append(ForestRow(r["short"], est))
    return out


def _number(v: Any) -> float:
    """A JSON value back to a float (``"inf"``/``"-inf"`` strings, ``None`` as NaN)."""
    if isinstance(v, str):
        return float(v) if v in ("inf", "-inf") else float("nan")
    return float("nan") if v is None else float(v)


def forest_from_json(rows: list[dict[str, Any]], path: Path) -> Path:
    """The forest plot of the saved comparison rows (``tables/hr_comparison.json``)."""
    from analysis.reporting.figures import forest_plot

    return forest_plot(
        forest_rows(rows),
        path,
        "Hazard ratios: published, read with a prior, across the reconstructions, "
        "selection-adjusted",
    )
