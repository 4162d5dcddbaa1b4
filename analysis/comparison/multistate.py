"""The illness-death posterior against the frequentist answers on the same patients
(``vlms compare`` -> ``tables/multistate.{csv,md,json}``).

Three tables, each read from the saved fit (``fits/<name>.nc``) and recomputed on the cohort:

* ``occupation``: P(in each state) at fixed months after surgery, posterior median and 95%
  equal-tailed interval against the Aalen-Johansen estimate with a 95% percentile bootstrap
  interval (:mod:`analysis.frequentist.multistate`; consistent for the occupation from time 0 even
  with the clock reset, Datta and Satten 2001);
* ``after_recurrence``: P(disease death within 24 and 60 months of a recurrence of each type),
  posterior against Aalen-Johansen on the clock since the recurrence (bootstrap interval), and
  beside them the paper's Figure 1C quantity: one minus Kaplan-Meier DSS *from surgery* at the
  same month among the patients grouped by their later recurrence type (biased by immortal time);
* ``hazard_ratios``: each free transition HR against the cause-specific Cox HR on the model's
  clocks (lifelines, Efron ties).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.comparison.posterior import posterior_hr
from analysis.core.tables import markdown_table, write_table_files
from analysis.frequentist import estimators as fq
from analysis.frequentist import multistate as aj
from analysis.inference.multistate_data import DISEASE_DEATH, MultistateData
from models import multistate as ms

OCCUPATION_TIMES: tuple[float, ...] = (12.0, 24.0, 36.0, 60.0, 120.0)
N_BOOT = 500
INTERVAL = "95% equal-tailed"


def _quantiles(da: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(median, 2.5%, 97.5%) over chain and draw."""
    q = da.quantile([0.5, 0.025, 0.975], dim=("chain", "draw")).values
    return q[0], q[1], q[2]


def occupation_rows(
    idata: Any, data: MultistateData, times: Sequence[float], seed: int
) -> list[dict[str, Any]]:
    """Posterior state occupation against Aalen-Johansen (bootstrap interval) at ``times``."""
    p, s = data.paths, data.structure
    states = s.occupation_states(by_mark=True)
    reference = aj.illness_death_occupation(
        p.ill_time, p.ill_mark, p.exit_time, p.death, times,
        states=states, n_marks=s.n_marks, split_marks=True, n_boot=N_BOOT, seed=seed,
    )  # fmt: skip
    transient = 1 + s.n_marks  # absorbing states have no one "in" them at risk
    entered = {
        0,
        *(1 + np.unique(p.ill_mark[p.ill])),
        *(transient + np.unique(p.death[p.death > 0]) - 1),
    }
    post = idata.posterior["state_occupation"].sel(time=list(times), state=states)
    med, lo, hi = (q.transpose() for q in _quantiles(post.transpose(..., "state", "time")))
    rows = []
    for i, t in enumerate(times):
        for k, state in enumerate(states):
            ref = float(reference.probability[i, k])
            rows.append(
                {
                    "months": float(t),
                    "state": state,
                    "posterior_median": float(med[i, k]),
                    "posterior_lower": float(lo[i, k]),
                    "posterior_upper": float(hi[i, k]),
                    "aj": ref,
                    "aj_lower": float(reference.lower[i, k]),
                    "aj_upper": float(reference.upper[i, k]),
                    "n_in_state": int(reference.n_at_risk[i, k]) if k < transient else None,
                    "entries_observed": bool(k in entered),
                    "difference": float(med[i, k]) - ref,
                    "aj_inside_posterior": bool(lo[i, k] <= ref <= hi[i, k]),
                }
            )
    return rows


def _cif_after(p: Any, n_marks: int, n_deaths: int, horizons: np.ndarray) -> np.ndarray:
    return aj.cif_after_illness(
        p.ill_time, p.ill_mark, p.exit_time, p.death, horizons, n_marks=n_marks, n_deaths=n_deaths
    )


def _bootstrap_after(
    data: MultistateData, horizons: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap (patients who recurred, resampled within type) of the AJ CIF after
    recurrence: lower and upper limits (R, K, T)."""
    p, s = data.paths, data.structure
    rng = np.random.default_rng(seed)
    boot = np.full((N_BOOT, s.n_marks, s.n_deaths, horizons.size), np.nan)
    own = [np.flatnonzero(p.ill_mark == r) for r in range(s.n_marks)]
    for b in range(N_BOOT):
        pick = np.concatenate([rng.choice(o, o.size) for o in own if o.size])
        sub = ms.IllnessDeathPaths(
            p.ill_time[pick], p.ill_mark[pick], p.exit_time[pick], p.death[pick], p.x[pick]
        )
        boot[b] = _cif_after(sub, s.n_marks, s.n_deaths, horizons)
    lower, upper = np.nanquantile(boot, [0.025, 0.975], axis=0)
    return lower, upper


def after_recurrence_rows(idata: Any, data: MultistateData, seed: int) -> list[dict[str, Any]]:
    """P(disease death within each horizon of a recurrence of each type): posterior, AJ on the
    clock since recurrence, and the paper's 1 - KM DSS from surgery by later type."""
    p, s = data.paths, data.structure
    horizons = data.horizons
    k = s.deaths.index(DISEASE_DEATH)
    ref = _cif_after(p, s.n_marks, s.n_deaths, horizons)[:, k, :]
    ref_lo, ref_hi = (b[:, k, :] for b in _bootstrap_after(data, horizons, seed))
    post = idata.posterior["cif_after_recurrence_at"].sel(death=DISEASE_DEATH)
    med, lo, hi = _quantiles(post.transpose(..., "recurrence_type", "horizon"))
    disease = (p.death == k + 1).astype(int)
    rows = []
    for r, mark in enumerate(s.marks):
        own = p.ill_mark == r
        km = fq.kaplan_meier(p.exit_time[own], disease[own], horizons) if own.any() else None
        for h, months in enumerate(horizons):
            rows.append(
                {
                    "recurrence_type": mark,
                    "months": float(months),
                    "n_recurred": int(own.sum()),
                    "disease_deaths": int(np.sum(disease[own])),
                    "posterior_median": float(med[r, h]),
                    "posterior_lower": float(lo[r, h]),
                    "posterior_upper": float(hi[r, h]),
                    "aj": float(ref[r, h]),
                    "aj_lower": float(ref_lo[r, h]),
                    "aj_upper": float(ref_hi[r, h]),
                    "paper_km_from_surgery": 1.0 - km.survival[h] if km else math.nan,
                    "paper_km_lower": 1.0 - km.upper[h] if km else math.nan,
                    "paper_km_upper": 1.0 - km.lower[h] if km else math.nan,
                }
            )
    return rows


def hazard_ratio_rows(idata: Any, data: MultistateData) -> list[dict[str, Any]]:
    """Posterior HR of each free (transition, covariate) against the cause-specific Cox HR."""
    p, s = data.paths, data.structure
    cox = aj.transition_cox(
        p.ill_time, p.ill_mark, p.exit_time, p.death, p.x,
        covariate_names=list(data.covariate_names), mark_names=list(s.marks),
        n_deaths=s.n_deaths,
    )  # fmt: skip
    by_key = {(int(r["transition"]), int(r["covariate_index"])): r for r in cox}
    free = idata.constant_data["effect_free"]
    rows = []
    for t, c in zip(*np.nonzero(free.values), strict=True):
        transition = str(free["transition"].values[t])
        covariate = str(free["covariate"].values[c])
        post = posterior_hr(idata, covariate, transition=transition)
        ref = by_key.get((int(t), int(c)), {})
        rows.append(
            {
                "transition": transition,
                "covariate": covariate,
                "hr_median": post["median"],
                "hr_lower": post["lower"],
                "hr_upper": post["upper"],
                "prob_hr_gt_1": post["prob_gt_1"],
                "cox_hr": float(ref.get("hr", math.nan)),
                "cox_lower": float(ref.get("lower", math.nan)),
                "cox_upper": float(ref.get("upper", math.nan)),
            }
        )
    return rows


def multistate_comparison(idata: Any, data: MultistateData, seed: int) -> dict[str, Any]:
    """The three tables for one saved illness-death fit on its patients (``data``)."""
    occupation = occupation_rows(idata, data, OCCUPATION_TIMES, seed)
    inside = [r["aj_inside_posterior"] for r in occupation if r["entries_observed"]]
    unobserved = sorted({r["state"] for r in occupation if not r["entries_observed"]})
    return {
        "fit": str(idata.posterior.attrs.get("model_name", "")),
        "n": data.n,
        "interval": INTERVAL,
        "n_boot": N_BOOT,
        "seed": seed,
        "transitions": data.counts,
        "occupation": occupation,
        "occupation_share_inside": float(np.mean(inside)),
        "occupation_max_abs_difference": float(max(abs(r["difference"]) for r in occupation)),
        "states_never_entered": unobserved,
        "after_recurrence": after_recurrence_rows(idata, data, seed + 1),
        "hazard_ratios": hazard_ratio_rows(idata, data),
    }


def fit_matches(idata: Any, data: MultistateData) -> bool:
    """Whether the saved fit was fitted on these patients (its per-transition counts)."""
    try:
        saved = idata.constant_data["events"].values.tolist()
        at_risk = idata.constant_data["n_at_risk"].values.tolist()
    except (AttributeError, KeyError):
        return False
    counts = data.counts
    return saved == [c["events"] for c in counts] and at_risk == [c["n_at_risk"] for c in counts]


# --------------------------------------------------------------------------- rendering


def _ci(est: Any, lo: Any, hi: Any, digits: int = 2) -> str:
    if not isinstance(est, int | float) or not math.isfinite(float(est)):
        return "-"
    if not (math.isfinite(float(lo)) and math.isfinite(float(hi))):
        return f"{est:.{digits}f}"
    return f"{est:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


def never_entered_sentence(result: dict[str, Any]) -> str:
    """The sentence on states no patient entered (their model hazard is the prior's)."""
    never = result.get("states_never_entered", [])
    if not never:
        return ""
    return (
        f"No patient entered {', '.join(never)}: Aalen-Johansen is 0 there, and the model's "
        "probability rests on the prior of a hazard with no events (centred on half an event "
        "over the time at risk)."
    )


def display_tables(result: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    """Formatted rows of the three tables (for markdown and HTML)."""
    occupation = [
        {
            "months": f"{r['months']:g}",
            "state": r["state"].replace("_", " "),
            "posterior (95% CrI)": _ci(
                r["posterior_median"], r["posterior_lower"], r["posterior_upper"]
            ),
            "Aalen-Johansen (95% bootstrap CI)": _ci(r["aj"], r["aj_lower"], r["aj_upper"]),
            "in state": "-" if r["n_in_state"] is None else str(r["n_in_state"]),
            "AJ inside CrI": (
                ("yes" if r["aj_inside_posterior"] else "NO")
                if r["entries_observed"]
                else "never entered"
            ),
        }
        for r in result["occupation"]
    ]
    after = [
        {
            "recurrence type": r["recurrence_type"].replace("_", " and "),
            "months": f"{r['months']:g}",
            "recurred (disease deaths)": f"{r['n_recurred']} ({r['disease_deaths']})",
            "multi-state posterior, from recurrence": _ci(
                r["posterior_median"], r["posterior_lower"], r["posterior_upper"]
            ),
            "Aalen-Johansen, from recurrence": _ci(r["aj"], r["aj_lower"], r["aj_upper"]),
            "paper's analysis: 1 - KM DSS from surgery": _ci(
                r["paper_km_from_surgery"], r["paper_km_lower"], r["paper_km_upper"]
            ),
        }
        for r in result["after_recurrence"]
    ]
    hrs = [
        {
            "transition": r["transition"],
            "covariate": r["covariate"],
            "posterior HR (95% CrI)": _ci(r["hr_median"], r["hr_lower"], r["hr_upper"]),
            "P(HR > 1)": f"{r['prob_hr_gt_1']:.3f}",
            "Cox HR (95% CI)": _ci(r["cox_hr"], r["cox_lower"], r["cox_upper"]),
        }
        for r in result["hazard_ratios"]
    ]
    return {"occupation": occupation, "after_recurrence": after, "hazard_ratios": hrs}


def markdown(result: dict[str, Any], meta: dict[str, Any]) -> str:
    """``multistate.md``."""
    shown = display_tables(result)
    return "\n".join(
        [
            "# Illness-death model against Aalen-Johansen and Cox",
            "",
            f"Cohort: `{meta.get('cohort', '?')}` (n = {result['n']}); SYNTHETIC reconstruction. "
            f"Fit `{result['fit']}`; posterior intervals {result['interval']}; Aalen-Johansen "
            f"intervals: percentile bootstrap ({result['n_boot']} resamples, seed "
            f"{result['seed']}).",
            "",
            "## Probability of dying of the disease within 24 and 60 months of a recurrence",
            "",
            "The paper's column is the Figure 1C analysis: DSS measured from surgery among "
            "patients grouped by a recurrence that happened later (immortal-time bias).",
            "",
            markdown_table(shown["after_recurrence"]),
            "## State occupation after surgery",
            "",
            f"Aalen-Johansen inside the posterior 95% interval: "
            f"{result['occupation_share_inside']:.0%} of the points of the states some patient "
            f"entered; largest |posterior median - Aalen-Johansen| = "
            f"{result['occupation_max_abs_difference']:.3f}. {never_entered_sentence(result)}",
            "",
            markdown_table(shown["occupation"]),
            "## Transition hazard ratios",
            "",
            markdown_table(shown["hazard_ratios"]),
        ]
    )


def write_tables(result: dict[str, Any], meta: dict[str, Any], out_dir: Path) -> str:
    """Write ``<out_dir>/tables/multistate.{csv,md,json}`` atomically; return the markdown."""
    md = markdown(result, meta)
    long = pd.concat(
        [
            pd.DataFrame(result[name]).assign(table=name)
            for name in ("after_recurrence", "occupation", "hazard_ratios")
        ],
        ignore_index=True,
    )
    write_table_files(Path(out_dir) / "tables", "multistate", long, md, {**meta, **result})
    return md


def run_comparison(
    df: pd.DataFrame, fits_dir: Path, out_dir: Path, meta: dict[str, Any], seed: int
) -> str:
    """Compare the saved registered illness-death fit with the frequentist answers on the cohort
    ``df``; write the tables. Returns a line for the terminal (what was compared, or why not)."""
    from analysis.inference.diagnostics import load_fit
    from analysis.inference.multistate_fit import check_multistate_specs, multistate_specs

    specs = multistate_specs()
    if not specs:
        return "no illness-death fit registered"
    spec = specs[0]
    path = Path(fits_dir) / f"{spec.name}.nc"
    if not path.is_file():
        return f"{spec.name}: no saved fit (run `vlms fit`)"
    data = check_multistate_specs([spec], df, str(meta.get("cohort", "cohort")))[spec.name]
    idata = load_fit(path)
    if not fit_matches(idata, data):
        return f"{spec.name}: the saved fit was fitted on other patients; not compared"
    result = multistate_comparison(idata, data, seed)
    write_tables(result, meta, out_dir)
    return (
        f"{spec.name}: Aalen-Johansen inside the posterior 95% interval at "
        f"{result['occupation_share_inside']:.0%} of the occupation points (largest difference "
        f"{result['occupation_max_abs_difference']:.3f}); tables/multistate.md"
    )
