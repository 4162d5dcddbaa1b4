"""The report's multi-state section: it replaces the paper's Figure 1C analysis (DSS from surgery
by recurrence type) with the illness-death model, and keeps the paper's curves beside it.

Figures (from the cohort and the saved fit ``fits/illness_death.nc``):

* ``figures/multistate_dss.png``: A, the paper's Figure 1C redrawn (Kaplan-Meier DSS from
  surgery, patients grouped by the type of their later recurrence); B, DSS from the time of the
  recurrence by type: Kaplan-Meier on the clock since the recurrence (other deaths censored)
  under the posterior median and 95% band of the model;
* ``figures/multistate_occupation.png``: P(in each state) after surgery, Aalen-Johansen steps
  under the posterior band.

The section's tables come from ``tables/multistate.json`` (``vlms compare``) and, when present,
``validation/multistate.json`` (``vlms validate``: simulated cohort and GBSG).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis.frequentist import estimators as fq
from analysis.frequentist import multistate as aj
from analysis.reporting.figures import COLORS, Band, KMGroup, Panel, save_png, survival_panels
from analysis.reporting.html_parts import esc, image, missing, table

FIT = "illness_death"
TYPES = ("local", "distant", "local_distant")
BIAS = (
    "Grouping patients by the type of a recurrence that happens after surgery and then measuring "
    "survival from surgery credits every recurrence group with the months before its "
    "recurrence, during which its members could not have died of the disease (immortal time), "
    "so a group whose recurrences come late looks better for that reason alone. The multi-state "
    "model starts the clock of death after a recurrence at the recurrence itself, so each "
    "type's curve answers the question asked after a recurrence: how likely is death from the "
    "disease within a given time of a recurrence of this type."
)
"""The immortal-time bias of Figure 1C, in two sentences."""


def _label(kind: str) -> str:
    return kind.replace("_", " and ")


def _km(label: str, t: np.ndarray, e: np.ndarray) -> KMGroup:
    c = fq.km_curve(t, e)
    return KMGroup(label, c.time, c.survival, int(t.size), int(e.sum()))


def _band(da: Any, label: str, dim: str) -> Band:
    values = da.transpose("chain", "draw", dim).values.reshape(-1, da.sizes[dim])
    lo, med, hi = np.quantile(values, [0.025, 0.5, 0.975], axis=0)
    return Band(label, np.asarray(da[dim].values, float), med, lo, hi)


def dss_panels(df: pd.DataFrame, idata: Any | None) -> list[Panel]:
    """A: the paper's Figure 1C; B: DSS from the recurrence, KM under the posterior."""
    rec = df["recurrence"].to_numpy(object)
    followup = df["followup_months"].to_numpy(float)
    disease = (df["vital_status"] == "dead_disease").to_numpy(int)
    since = followup - df["recurrence_months"].to_numpy(float)
    present = [k for k in TYPES if np.any(rec == k)]
    paper = [_km(_label(k), followup[rec == k], disease[rec == k]) for k in present]
    paper.append(_km("no recurrence", followup[rec == "none"], disease[rec == "none"]))
    after = [_km(_label(k), since[rec == k], disease[rec == k]) for k in present]
    bands = []
    if idata is not None and "dss_after_recurrence" in idata.posterior:
        dss = idata.posterior["dss_after_recurrence"]
        bands = [
            _band(dss.sel(recurrence_type=k), _label(k), "time_since_recurrence") for k in present
        ]
    return [
        Panel(
            "A. The paper's Figure 1C: DSS from surgery by later recurrence type",
            "disease-specific survival",
            paper,
            note="biased: groups defined by a later event (immortal time)",
        ),
        Panel(
            "B. DSS from the recurrence, by recurrence type",
            "disease-specific survival after the recurrence",
            after,
            bands,
            note="" if bands else "no saved illness-death fit",
            xlabel="months since recurrence",
        ),
    ]


def occupation_plot(df: pd.DataFrame, idata: Any, path: Path) -> Path:
    """One panel per state: Aalen-Johansen occupation (steps) under the posterior band."""
    occupation = idata.posterior["state_occupation"]
    states = [str(s) for s in occupation["state"].values]
    rec = df["recurrence"].to_numpy(object)
    ill = rec != "none"
    mark = np.array([TYPES.index(r) if r in TYPES else -1 for r in rec])
    death = np.select(
        [df["vital_status"] == "dead_disease", df["vital_status"] == "dead_other"], [1, 2], 0
    )
    times = [df[c].to_numpy(float) for c in ("recurrence_months", "followup_months")]
    grid = np.unique(np.concatenate([[0.0], *times]))
    rows = aj.illness_death_rows(
        np.where(ill, df["recurrence_months"].to_numpy(float), np.nan),
        mark,
        df["followup_months"].to_numpy(float),
        death,
        n_marks=len(TYPES),
        split_marks=True,
    )
    reference, _ = aj.aalen_johansen(rows, len(states), grid)
    cols = 3
    fig, axes = plt.subplots(
        math.ceil(len(states) / cols), cols, figsize=(4.3 * cols, 3.2 * 2), squeeze=False
    )
    for k, (ax, state) in enumerate(zip(axes.ravel(), states, strict=False)):
        color = COLORS[k % len(COLORS)]
        band = _band(occupation.sel(state=state), "posterior", "time")
        at0 = 1.0 if k == 0 else 0.0  # everyone starts recurrence-free at surgery
        t = np.concatenate([[0.0], band.time])
        lo, med, hi = (np.concatenate([[at0], v]) for v in (band.lower, band.median, band.upper))
        ax.fill_between(t, lo, hi, color=color, alpha=0.2, lw=0)
        ax.plot(t, med, color=color, ls="--", lw=1.2, label="posterior median")
        ax.step(grid, reference[:, k], where="post", color=color, lw=1.6, label="Aalen-Johansen")
        ax.set_title(state.replace("_", " "), fontsize=10)
        ax.set_xlabel("months since surgery")
        ax.set_ylabel("probability of the state")
        ax.set_xlim(0, float(band.time.max()))
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(states) :]:
        ax.set_visible(False)
    fig.suptitle("Where the patients are after surgery: illness-death model vs Aalen-Johansen")
    fig.tight_layout()
    return save_png(fig, path)


def multistate_figures(df: pd.DataFrame, fits_dir: Path, figs: Path) -> list[Path]:
    """Draw the section's figures (the occupation figure only with a saved fit)."""
    from analysis.inference.diagnostics import load_fit

    nc = Path(fits_dir) / f"{FIT}.nc"
    idata = load_fit(nc) if nc.is_file() else None
    written = [
        survival_panels(
            dss_panels(df, idata),
            figs / "multistate_dss.png",
            "Recurrence type and death from the disease: the paper's analysis and the "
            "multi-state model",
        )
    ]
    if idata is not None:
        written.append(occupation_plot(df, idata, figs / "multistate_occupation.png"))
    return written


# --------------------------------------------------------------------------- the HTML section


def section_multistate(inputs: Any) -> str:
    """The HTML section (``inputs``: :class:`analysis.reporting.html.Inputs`)."""
    from analysis.comparison.multistate import display_tables, never_entered_sentence

    parts = [
        "<h2>3b. Recurrence type and death from the disease: a multi-state model "
        "(replaces the Figure 1C analysis)</h2>",
        f"<p>{esc(BIAS)}</p>",
        "<p>Model: recurrence-free &rarr; recurrence (local, distant, local and distant) &rarr; "
        "dead of disease or of other causes, piecewise-constant hazards with random-walk "
        "baselines, the clock reset at the recurrence, the recurrence type a covariate of "
        "death after it. Curves and probabilities are exact functions of each posterior "
        "draw. Fitted on the chosen cohort only, not on the members of the reconstruction "
        "ensemble.</p>",
        image(
            inputs,
            "figures/multistate_dss.png",
            "DSS by recurrence type, from surgery and from the recurrence",
            "A: the paper's curves, computed on the cohort. B: the same patients on the clock "
            "since their recurrence, Kaplan-Meier under the model's posterior.",
            "vlms report",
        ),
    ]
    data = inputs.json("tables/multistate.json")
    if data is None:
        return "".join(parts) + missing("the multi-state comparison table", "vlms compare")
    shown = display_tables(data)
    parts.append(
        "<h3>Probability of dying of the disease within 2 and 5 years of a recurrence</h3>"
    )
    parts.append(_table(shown["after_recurrence"]))
    parts.append("<h3>Transition hazard ratios (posterior vs Cox on the same clocks)</h3>")
    parts.append(_table(shown["hazard_ratios"]))
    parts.append(
        image(
            inputs,
            "figures/multistate_occupation.png",
            "State occupation",
            "Probability of each state after surgery: posterior median and 95% band against "
            "Aalen-Johansen.",
            "vlms report",
        )
    )
    share = f"{data['occupation_share_inside']:.0%}"
    largest = f"{data['occupation_max_abs_difference']:.3f}"
    months = ", ".join(f"{t:g}" for t in _times(data))
    parts.append(
        f"<p>Aalen-Johansen inside the posterior 95% interval at {esc(share)} of the occupation "
        f"points of the states some patient entered (months {esc(months)}); largest difference "
        f"{esc(largest)}. {esc(never_entered_sentence(data))}</p>"
    )
    parts.append(
        "<details><summary>State occupation table</summary>"
        + _table(shown["occupation"])
        + "</details>"
    )
    parts.append(validation_paragraph(inputs))
    return "".join(parts)


def _times(data: dict[str, Any]) -> list[float]:
    return sorted({float(r["months"]) for r in data["occupation"]})


def _table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "<p>(no rows)</p>"
    cols = list(rows[0])
    return table(cols, [[r[c] for c in cols] for r in rows])


def validation_paragraph(inputs: Any) -> str:
    """What ``vlms validate`` found on a large simulated cohort and on GBSG (if it ran)."""
    data = inputs.json("validation/multistate.json")
    if data is None:
        return missing("the multi-state validation (simulated cohort, GBSG)", "make validate")
    items = []
    for key, label in (
        ("simulated", "simulated cohort"),
        ("gbsg_semi_markov", "GBSG, semi-Markov"),
        ("gbsg_recurrence_time", "GBSG, recurrence time as covariate"),
    ):
        block = data.get(key)
        if not block:
            continue
        comp = block["occupation_vs_aalen_johansen"]
        n = block.get("n_patients") or block["transitions"][0]["n_at_risk"]
        share, largest = f"{comp['share_inside']:.0%}", f"{comp['max_abs_diff']:.3f}"
        bar = "met" if block["diagnostics"]["passes_bar"] else "MISSED"
        items.append(
            f"<li>{esc(label)} ({esc(n)} patients): Aalen-Johansen inside the posterior 95% "
            f"interval at {esc(share)} of the points, largest difference {esc(largest)}; "
            f"sampling bar {bar}.</li>"
        )
    return "<p>Validation (<code>make validate</code>):</p><ul>" + "".join(items) + "</ul>"
