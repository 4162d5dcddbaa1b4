"""What the reconstruction must reproduce, read from the published numbers.

Three things, all read through :mod:`analysis.paper.published` (no published number is typed here):

* the :class:`~analysis.reconstruction.model.CohortSpec` of the generative model, with the
  readings chosen where the paper contradicts itself (:class:`Reading`);
* the exact counts, each with a function that counts it on a cohort (:data:`COUNTERS`);
* the calibrated targets (medians, rates, hazard ratios, CIs, P values), each with its
  tolerance at the printed rounding (:func:`make_target`; widened by the audit in
  :func:`analysis.reconstruction.widening.calibration_targets`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.paper.published import Published
from analysis.reconstruction.model import EXTREMITY_SITES, TREATMENTS, CohortSpec

MONTHS_PER_YEAR = 12.0


@dataclass(frozen=True)
class Reading:
    """One choice made where the paper's numbers cannot all hold."""

    keys: tuple[str, ...]
    published: str
    used: str
    why: str


ANALYSIS_READINGS: tuple[Reading, ...] = (
    Reading(
        (
            "text.recurrence.median_months.local",
            "text.recurrence.median_months.distant",
            "text.recurrence.median_months.local_distant",
            "text.recurrence.logrank_p",
        ),
        "Figure 1A medians by recurrence type and their log-rank P",
        "Kaplan-Meier among the patients who recurred, stratified by type (every one an event)",
        "over all 63 patients (other types censored) these medians could not be reached: see "
        "the audit's type_median findings",
    ),
    Reading(
        ("text.recurrence.median_months.any", "text.rfs.rate_5y"),
        "median time to recurrence 33 months; 5-year recurrence-free survival 35%",
        "Kaplan-Meier of the time to first recurrence over all 63 patients, deaths censored",
        "the paper's 'time to recurrence' of the whole cohort",
    ),
    Reading(
        ("table2.rfs.beta_catenin.hr", "table2.rfs.igf1r.hr"),
        "Table 2 'recurrence-free survival' (also called 'distant recurrence')",
        "time to any first recurrence among the 26 TMA patients "
        "(analysis.frequentist.paper_analyses)",
        "the table's own column header; the audit lists the other names",
    ),
)


# ------------------------------------------------------------------------- the cohort spec


def _v(pub: Published, key: str) -> int:
    value = pub.value(key)
    if value is None:
        raise ValueError(f"{key}: the paper gives no value")
    return int(value)


def _f(pub: Published, key: str) -> float:
    value = pub.value(key)
    if value is None:
        raise ValueError(f"{key}: the paper gives no value")
    return float(value)


def _known(pub: Published, key: str) -> int:
    """The denominator of a count (patients with the item documented)."""
    entry = pub.get(key)
    if entry.denominator is None:
        raise ValueError(f"{key}: no denominator")
    return int(entry.denominator)


def _block_table(pub: Published, col: str, n: int) -> dict[str, dict[str, int]]:
    """Per-column counts of one Table 1 column (``col`` = "all" or "tma")."""
    t = f"table1.{col}"
    size_known = _known(pub, f"{t}.size.ge5")
    grade_known = _known(pub, f"{t}.grade.high")
    margin_known = _known(pub, f"{t}.resection.r2")
    rec = {
        "local": _v(pub, f"{t}.recurrence.local_only"),
        "distant": _v(pub, f"{t}.recurrence.distant_only"),
        "local_distant": _v(pub, f"{t}.recurrence.local_distant"),
    }
    rec["none"] = n - sum(rec.values())
    return {
        "sex": {s: _v(pub, f"{t}.sex.{s}") for s in ("female", "male")},
        "race": {r: _v(pub, f"{t}.race.{r}") for r in ("white", "african_american", "hispanic")},
        "size_ge5cm": {
            "1": _v(pub, f"{t}.size.ge5"),
            "0": _v(pub, f"{t}.size.lt5"),
            "": n - size_known,
        },
        "grade": {
            **{g: _v(pub, f"{t}.grade.{g}") for g in ("low", "intermediate", "high")},
            "": n - grade_known,
        },
        "margin": {
            "r0r1": _v(pub, f"{t}.resection.r0_r1"),
            "r2": _v(pub, f"{t}.resection.r2"),
            "": n - margin_known,
        },
        "site": {
            s: _v(pub, f"{t}.location.{s}")
            for s in ("ivc", "saphenous_femoral", "renal", "upper_extremity", "other")
        },
        "ivc_segment": {str(k): _v(pub, f"{t}.location.ivc_segment_{k}") for k in (1, 2, 3)},
        "recurrence": rec,
        "resected": {
            o: _v(pub, f"{t}.multivisceral.{o}")
            for o in ("kidney", "adrenal", "liver", "intestine")
        },
    }


def _surgery_at(pub: Published, n: dict[str, int]) -> tuple[dict[str, dict[str, int]], Reading]:
    mdacc_all = _v(pub, "table1.all.primary_surgery.mdacc")
    mdacc_tma = _v(pub, "table1.tma.primary_surgery.mdacc")
    outside_tma = _v(pub, "table1.tma.primary_surgery.outside")
    den = _known(pub, "table1.tma.primary_surgery.outside")
    counts = {
        "tma": {"mdacc": mdacc_tma, "outside": n["tma"] - mdacc_tma},
        "rest": {
            "mdacc": mdacc_all - mdacc_tma,
            "outside": n["rest"] - (mdacc_all - mdacc_tma),
        },
    }
    reading = Reading(
        ("table1.tma.primary_surgery.outside", "table1.tma.primary_surgery.mdacc"),
        f"TMA column: {outside_tma}/{den} outside, {mdacc_tma}/{den} at MDACC "
        f"(denominator {den} for a {n['tma']}-patient column)",
        f"{n['tma'] - mdacc_tma} outside, {mdacc_tma} at MDACC",
        "the denominator exceeds the column; the smaller, specific count (MDACC) is kept "
        "and the outside count is the rest of the column",
    )
    return counts, reading


def _treatments(
    pub: Published, n: dict[str, int], rng: np.random.Generator
) -> tuple[dict[str, dict[str, int]], list[Reading]]:
    """Treatment combinations per block (labels of :data:`TREATMENTS`)."""
    a = "table1.all.treatment"
    t = "table1.tma.treatment"
    both_all = _v(pub, f"{a}.chemo_pre_and_post")
    chemo_all = _v(pub, f"{a}.surgery_chemo")
    pre_all = _v(pub, f"{a}.surgery_chemo_pre")
    post_all = _v(pub, f"{a}.surgery_chemo_post")
    all_counts = {
        "chemo_pre": pre_all,
        "chemo_both": both_all,
        "chemo_post": chemo_all - pre_all - both_all,
        "radiation_pre": _v(pub, f"{a}.surgery_radiation_pre"),
        "radiation_post": _v(pub, f"{a}.surgery_radiation_post"),
        "chemoradiation_pre": _v(pub, "text.treatment.neoadjuvant.chemoradiation"),
        "chemoradiation_post": _v(pub, "text.treatment.adjuvant.chemoradiation"),
    }
    all_counts["surgery_alone"] = n["all"] - sum(all_counts.values())
    chemo_tma = _v(pub, f"{t}.surgery_chemo")
    pre_tma = _v(pub, f"{t}.surgery_chemo_pre")
    post_tma = _v(pub, f"{t}.surgery_chemo_post")
    both_tma = max(0, pre_tma + post_tma - chemo_tma)
    chemorad_tma = _v(pub, f"{t}.surgery_chemo_radiation")
    # the TMA column does not split chemoradiation by timing: drawn from the localized split
    pre_cr, post_cr = all_counts["chemoradiation_pre"], all_counts["chemoradiation_post"]
    low = max(0, chemorad_tma - pre_cr)
    high = min(post_cr, chemorad_tma)
    k_post = int(rng.integers(low, high + 1))
    tma_counts = {
        "chemo_pre": pre_tma - both_tma,
        "chemo_both": both_tma,
        "chemo_post": post_tma - both_tma,
        "radiation_pre": _v(pub, f"{t}.surgery_radiation_pre"),
        "radiation_post": _v(pub, f"{t}.surgery_radiation_post"),
        "chemoradiation_pre": chemorad_tma - k_post,
        "chemoradiation_post": k_post,
    }
    tma_counts["surgery_alone"] = n["tma"] - sum(tma_counts.values())
    rest_counts = {k: all_counts[k] - tma_counts[k] for k in all_counts}
    if min(rest_counts.values()) < 0 or min(tma_counts.values()) < 0:
        raise ValueError("the treatment counts of the TMA column exceed the localized column")
    table_alone = _v(pub, f"{a}.surgery_alone")
    radiation_all = _v(pub, f"{a}.surgery_radiation")
    chemorad_all = _v(pub, f"{a}.surgery_chemo_radiation")
    readings = [
        Reading(
            (
                f"{a}.surgery_alone",
                "text.treatment.surgery_alone",
                f"{a}.surgery_chemo",
                f"{a}.surgery_radiation",
                f"{a}.surgery_chemo_radiation",
            ),
            f"surgery alone {table_alone} (Table 1 and Discussion); the four treatment rows add "
            f"to {table_alone + chemo_all + radiation_all + chemorad_all}",
            f"surgery alone {all_counts['surgery_alone']} = {n['all']} minus the "
            f"{n['all'] - all_counts['surgery_alone']} treated",
            "the treated rows are confirmed three ways (Table 1 sub-rows, the neoadjuvant/"
            "adjuvant breakdown 15 + 16, 22 chemotherapy and 18 radiation patients); only the "
            "surgery-alone count disagrees with them",
        ),
        Reading(
            (f"{a}.surgery_chemo_post", f"{a}.chemo_pre_and_post", f"{t}.surgery_chemo_pre"),
            f"localized: chemotherapy {pre_all} pre + {post_all} post = {chemo_all}; TMA: "
            f"{pre_tma} pre + {post_tma} post for {chemo_tma} patients; footnote a: "
            f"{both_all} patient had both",
            f"the footnote-a patient is in the TMA; the localized column counts them in the "
            f"Postoperative row only ({pre_all} + {post_all} = {chemo_all}), the TMA column in "
            f"both rows ({pre_tma} + {post_tma} - {both_tma} = {chemo_tma})",
            "the only reading under which both columns' chemotherapy rows add up",
        ),
        Reading(
            (f"{t}.surgery_chemo_radiation",),
            f"TMA chemoradiation {chemorad_tma}, timing not given",
            f"{chemorad_tma - k_post} preoperative, {k_post} postoperative (drawn, seeded)",
            "the TMA column gives no pre/post split of chemoradiation",
        ),
    ]
    return {"all": all_counts, "tma": tma_counts, "rest": rest_counts}, readings


def _radiation_extremity(
    pub: Published,
    sites: dict[str, dict[str, int]],
    treatments: dict[str, dict[str, int]],
    rng: np.random.Generator,
) -> dict[str, int]:
    """How many radiated extremity lesions fall in each block (feasible, drawn)."""
    total = _v(pub, "text.treatment.radiation.extremity")

    def radiated(block: str) -> int:
        return sum(k for lab, k in treatments[block].items() if TREATMENTS[lab][1] != "none")

    def extremity(block: str) -> int:
        return sum(sites[block][s] for s in EXTREMITY_SITES)

    def non_extremity(block: str) -> int:
        return sum(sites[block].values()) - extremity(block)

    low = max(
        0, radiated("tma") - non_extremity("tma"), total - min(extremity("rest"), radiated("rest"))
    )
    high = min(extremity("tma"), radiated("tma"), total)
    high = min(high, total - max(0, radiated("rest") - non_extremity("rest")))
    if low > high:
        raise ValueError("radiated extremity lesions cannot be split between the blocks")
    k = int(rng.integers(low, high + 1))
    return {"tma": k, "rest": total - k}


def build_spec(pub: Published, rng: np.random.Generator) -> tuple[CohortSpec, list[Reading]]:
    """The generative model's exact counts and starting parameters, and the readings chosen."""
    n = {"all": _v(pub, "table1.all.n"), "tma": _v(pub, "table1.tma.n")}
    n["rest"] = n["all"] - n["tma"]
    all_t = _block_table(pub, "all", n["all"])
    tma_t = _block_table(pub, "tma", n["tma"])
    rest_t = {
        col: {lev: all_t[col][lev] - tma_t[col].get(lev, 0) for lev in all_t[col]} for col in all_t
    }
    blocks: dict[str, dict[str, dict[str, int]]] = {"tma": tma_t, "rest": rest_t}
    surgery, surgery_reading = _surgery_at(pub, n)
    treatments, treatment_readings = _treatments(pub, n, rng)
    for b in ("tma", "rest"):
        blocks[b]["surgery_at"] = surgery[b]
        blocks[b]["treatment"] = treatments[b]
    for marker in ("beta_catenin", "igf1r"):
        blocks["tma"][marker] = {
            "1": _v(pub, f"table2.rfs.{marker}.positive.n"),
            "0": _v(pub, f"table2.rfs.{marker}.negative.n"),
        }
    extremity = _radiation_extremity(
        pub, {b: blocks[b]["site"] for b in ("tma", "rest")}, treatments, rng
    )
    for b in ("tma", "rest"):
        blocks[b]["radiation_extremity"] = {"": extremity[b]}
    for b in ("tma", "rest"):
        for col, counts in blocks[b].items():
            if min(counts.values()) < 0:
                raise ValueError(f"negative count for {col} in block {b}")
    age_all = pub.get("table1.all.age.median")
    age_tma = pub.get("table1.tma.age.median")
    follow = pub.get("text.followup.median_years")
    spec = CohortSpec(
        n_tma=n["tma"],
        n_rest=n["rest"],
        block_counts=blocks,
        totals={
            "ivc_management": {
                "ligation": _v(pub, "text.treatment.ivc_ligation"),
                "reconstruction": _v(pub, "text.treatment.ivc_reconstruction"),
            },
            "met_sites": {
                f"met_{s}": _v(pub, f"text.metastasis.{s}")
                for s in ("lung", "liver", "bone", "abdomen", "other")
            },
        },
        radiation_extremity=_v(pub, "text.treatment.radiation.extremity"),
        multivisceral=_v(pub, "table1.all.multivisceral.any"),
        age={
            "all": (float(age_all.lower), float(age_all.value), float(age_all.upper)),  # type: ignore[arg-type]
            "tma": (float(age_tma.lower), float(age_tma.value), float(age_tma.upper)),  # type: ignore[arg-type]
        },
        followup_range=(
            float(follow.lower) * MONTHS_PER_YEAR,  # type: ignore[arg-type]
            float(follow.upper) * MONTHS_PER_YEAR,  # type: ignore[arg-type]
        ),
    )
    size = pub.get("text.tumor.size_ge5")
    readings = [
        Reading(
            ("table1.all.size.ge5", "text.tumor.size_ge5"),
            f"size documented for {_known(pub, 'table1.all.size.ge5')} (Table 1) or "
            f"{size.denominator} (text, {size.value} of them >= 5 cm)",
            f"size known for {_known(pub, 'table1.all.size.ge5')}: "
            f"{_v(pub, 'table1.all.size.ge5')} >= 5 cm, {_v(pub, 'table1.all.size.lt5')} < 5 cm",
            "Table 1's rows add up to its denominator; the text's 48 has no breakdown",
        ),
        surgery_reading,
        *treatment_readings,
        *ANALYSIS_READINGS,
    ]
    return spec, readings


# ------------------------------------------------------------------------- exact counts

Counter = Callable[[pd.DataFrame], int]


def _count(column: str, level: object, *, tma: bool = False) -> Counter:
    def counter(df: pd.DataFrame) -> int:
        sub = df[df["tma"] == 1.0] if tma else df
        return int((sub[column] == level).sum())

    return counter


def _count_mask(mask: Callable[[pd.DataFrame], pd.Series], *, tma: bool = False) -> Counter:
    def counter(df: pd.DataFrame) -> int:
        sub = df[df["tma"] == 1.0] if tma else df
        return int(mask(sub).sum())

    return counter


def _treatment(label: str) -> Callable[[pd.DataFrame], pd.Series]:
    chemo_rows = {
        "surgery_alone": lambda d: (d["chemotherapy"] == "none") & (d["radiation"] == "none"),
        "surgery_chemo": lambda d: (d["chemotherapy"] != "none") & (d["radiation"] == "none"),
        "surgery_radiation": lambda d: (d["chemotherapy"] == "none") & (d["radiation"] != "none"),
        "surgery_chemo_radiation": lambda d: (
            (d["chemotherapy"] != "none") & (d["radiation"] != "none")
        ),
        "surgery_radiation_pre": lambda d: (
            (d["chemotherapy"] == "none") & (d["radiation"] == "preoperative")
        ),
        "surgery_radiation_post": lambda d: (
            (d["chemotherapy"] == "none") & (d["radiation"] == "postoperative")
        ),
    }
    return chemo_rows[label]


def _chemo_alone(timing: tuple[str, ...]) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda d: d["chemotherapy"].isin(timing) & (d["radiation"] == "none")


def _counters() -> dict[str, Counter]:
    c: dict[str, Counter] = {}
    for col, tma in (("all", False), ("tma", True)):
        t = f"table1.{col}"
        c[f"{t}.n"] = _count_mask(lambda d: d["tma"].notna(), tma=tma)
        for s in ("female", "male"):
            c[f"{t}.sex.{s}"] = _count("sex", s, tma=tma)
        for r in ("white", "african_american", "hispanic"):
            c[f"{t}.race.{r}"] = _count("race", r, tma=tma)
        c[f"{t}.size.ge5"] = _count("size_ge5cm", 1.0, tma=tma)
        c[f"{t}.size.lt5"] = _count("size_ge5cm", 0.0, tma=tma)
        for g in ("low", "intermediate", "high"):
            c[f"{t}.grade.{g}"] = _count("grade", g, tma=tma)
        for s in ("ivc", "saphenous_femoral", "renal", "upper_extremity", "other"):
            c[f"{t}.location.{s}"] = _count("site", s, tma=tma)
        for k in (1, 2, 3):
            c[f"{t}.location.ivc_segment_{k}"] = _count("ivc_segment", str(k), tma=tma)
        c[f"{t}.primary_surgery.outside"] = _count("surgery_at", "outside", tma=tma)
        c[f"{t}.primary_surgery.mdacc"] = _count("surgery_at", "mdacc", tma=tma)
        c[f"{t}.resection.r0_r1"] = _count("margin", "r0r1", tma=tma)
        c[f"{t}.resection.r2"] = _count("margin", "r2", tma=tma)
        for label in (
            "surgery_alone",
            "surgery_chemo",
            "surgery_radiation",
            "surgery_chemo_radiation",
            "surgery_radiation_pre",
            "surgery_radiation_post",
        ):
            c[f"{t}.treatment.{label}"] = _count_mask(_treatment(label), tma=tma)
        c[f"{t}.multivisceral.any"] = _count_mask(
            lambda d: (
                d[[f"resected_{o}" for o in ("kidney", "adrenal", "liver", "intestine")]]
                .sum(axis=1)
                .gt(0)
            ),
            tma=tma,
        )
        for o in ("kidney", "adrenal", "liver", "intestine"):
            c[f"{t}.multivisceral.{o}"] = _count(f"resected_{o}", 1.0, tma=tma)
        c[f"{t}.recurrence.local_only"] = _count("recurrence", "local", tma=tma)
        c[f"{t}.recurrence.distant_only"] = _count("recurrence", "distant", tma=tma)
        c[f"{t}.recurrence.local_distant"] = _count("recurrence", "local_distant", tma=tma)
    # the chemotherapy sub-rows, as each column counts footnote a's patient (see the readings)
    c["table1.all.treatment.surgery_chemo_pre"] = _count_mask(_chemo_alone(("preoperative",)))
    c["table1.all.treatment.surgery_chemo_post"] = _count_mask(
        _chemo_alone(("postoperative", "both"))
    )
    c["table1.all.treatment.chemo_pre_and_post"] = _count_mask(_chemo_alone(("both",)))
    c["table1.tma.treatment.surgery_chemo_pre"] = _count_mask(
        _chemo_alone(("preoperative", "both")), tma=True
    )
    c["table1.tma.treatment.surgery_chemo_post"] = _count_mask(
        _chemo_alone(("postoperative", "both")), tma=True
    )
    for marker in ("beta_catenin", "igf1r"):
        c[f"table2.rfs.{marker}.positive.n"] = _count(marker, 1.0, tma=True)
        c[f"table2.rfs.{marker}.negative.n"] = _count(marker, 0.0, tma=True)
    c["text.cohort.analysed"] = c["table1.all.n"]
    c["text.tma.primaries"] = c["table1.tma.n"]
    c["text.sex.female"] = c["table1.all.sex.female"]
    c["text.race.white"] = c["table1.all.race.white"]
    c["text.tumor.size_ge5"] = c["table1.all.size.ge5"]
    c["text.tumor.grade_intermediate_high"] = _count_mask(
        lambda d: d["grade"].isin(["intermediate", "high"])
    )
    for s in ("ivc", "saphenous_femoral", "renal", "upper_extremity", "other"):
        c[f"text.site.{s}"] = c[f"table1.all.location.{s}"]
    c["text.treatment.ivc_ligation"] = _count("ivc_management", "ligation")
    c["text.treatment.ivc_reconstruction"] = _count("ivc_management", "reconstruction")
    c["text.treatment.surgery_alone"] = c["table1.all.treatment.surgery_alone"]
    for when, col in (("neoadjuvant", "preoperative"), ("adjuvant", "postoperative")):
        timing = (col, "both") if col == "postoperative" else (col,)
        c[f"text.treatment.{when}.chemo"] = _count_mask(_chemo_alone(timing))
        c[f"text.treatment.{when}.radiation"] = _count_mask(
            lambda d, col=col: (d["chemotherapy"] == "none") & (d["radiation"] == col)
        )
        c[f"text.treatment.{when}.chemoradiation"] = _count_mask(
            lambda d, col=col: (d["chemotherapy"] != "none") & (d["radiation"] == col)
        )
        c[f"text.treatment.{when}.n"] = _count_mask(
            lambda d, col=col, timing=timing: (
                d["radiation"].eq(col)
                | (d["chemotherapy"].isin(timing) & d["radiation"].eq("none"))
            )
        )
    c["text.treatment.radiation.n"] = _count_mask(lambda d: d["radiation"] != "none")
    c["text.treatment.radiation.extremity"] = _count_mask(
        lambda d: (d["radiation"] != "none") & d["site"].isin(EXTREMITY_SITES)
    )
    c["text.treatment.radiation.intra_abdominal"] = _count_mask(
        lambda d: (d["radiation"] != "none") & ~d["site"].isin(EXTREMITY_SITES)
    )
    c["text.recurrence.any"] = _count_mask(lambda d: d["recurrence"] != "none")
    c["text.recurrence.n.local"] = c["table1.all.recurrence.local_only"]
    c["text.recurrence.n.distant"] = c["table1.all.recurrence.distant_only"]
    c["text.recurrence.n.local_distant"] = c["table1.all.recurrence.local_distant"]
    for s in ("lung", "liver", "bone", "abdomen", "other"):
        c[f"text.metastasis.{s}"] = _count(f"met_{s}", 1.0)
    return c


COUNTERS: dict[str, Counter] = _counters()
"""Published count key -> the function that counts it on a typed cohort frame."""


@dataclass(frozen=True)
class CountCheck:
    """One published count (or age descriptive) against the reconstruction."""

    key: str
    published: float | None
    reconstructed: float
    met: bool
    source: str


AGE_TOLERANCE = 0.1
"""Ages: median and range exact to 0.1 year."""


def _age_checks(df: pd.DataFrame, pub: Published) -> list[CountCheck]:
    out = []
    for col, sub in (("all", df), ("tma", df[df["tma"] == 1.0])):
        key = f"table1.{col}.age.median"
        if key not in pub:
            continue
        entry = pub.get(key)
        ages = sub["age"].to_numpy(float)
        got = {"value": float(np.median(ages)), "lower": ages.min(), "upper": ages.max()}
        for fld, value in got.items():
            published = getattr(entry, fld)
            met = bool(published is not None and abs(value - float(published)) <= AGE_TOLERANCE)
            name = key if fld == "value" else f"{key}:{fld}"
            out.append(CountCheck(name, published, float(value), met, entry.source))
    return out


def check_counts(df: pd.DataFrame, pub: Published) -> list[CountCheck]:
    """Every published count that has a counter (in file order), then the ages of Table 1."""
    out = []
    for key in pub.keys(prefix=""):
        if key not in COUNTERS:
            continue
        entry = pub.get(key)
        got = COUNTERS[key](df)
        published = None if entry.value is None else int(entry.value)
        out.append(CountCheck(key, published, got, bool(published == got), entry.source))
    return out + _age_checks(df, pub)


# ------------------------------------------------------------------------- calibrated targets

FIELDS = ("value", "lower", "upper", "p")
BY_CONSTRUCTION: dict[str, str] = {
    "text.followup.median_years:lower": "two patients hold the ends of the follow-up range",
    "text.followup.median_years:upper": "two patients hold the ends of the follow-up range",
    "text.dss.by_recurrence.none.rate_2y": "no death from disease without a recurrence",
    "text.dss.by_recurrence.none.rate_5y": "no death from disease without a recurrence",
    "text.age.median": "ages are dealt with the published median",
    "text.age.median:lower": "ages are dealt with the published range",
    "text.age.median:upper": "ages are dealt with the published range",
}
"""Statistics that hold by construction of every member (listed apart, checked, not sampled)."""
STATUSES = ("calibrated", "widened", "released", "by_construction")


@dataclass(frozen=True)
class Widening:
    """An audit finding that changes a target's tolerance, and how."""

    finding: str  # audit finding id
    check: str
    severity: str
    action: str  # "union" (an alternative reading's interval is added) or "release"
    why: str
    interval: tuple[float, float] | None = None


@dataclass(frozen=True)
class Target:
    """One published statistic and its tolerance.

    ``intervals``: the values the true cohort could have had given what is printed (the
    rounding interval; with a "union" widening also an alternative reading's interval), in the
    statistic's own units. ``status``: ``calibrated`` (rounding only), ``widened`` (an audit
    finding adds an interval), ``released`` (an audit finding shows the printed value cannot
    hold: not in the kernel, reported only) or ``by_construction``.
    """

    name: str  # the statistic's key (``<published key>`` or ``<published key>:<field>``)
    key: str
    field: str
    published: float
    unit: str
    kind: str  # "hr", "ci", "p", "median", "rate", "range"
    rounding: tuple[float, float]
    intervals: tuple[tuple[float, float], ...]
    log_scale: bool
    status: str = "calibrated"
    widenings: tuple[Widening, ...] = ()
    note: str = ""

    def within(self, value: float, *, rounding_only: bool = False) -> bool:
        """Whether ``value`` lies in the tolerance (or in the rounding interval only)."""
        if value is None or not math.isfinite(value):
            return False
        spans = (self.rounding,) if rounding_only else self.intervals
        return any(lo - 1e-12 <= value <= hi + 1e-12 for lo, hi in spans)

    @property
    def in_kernel(self) -> bool:
        return self.status in ("calibrated", "widened")

    def sigma(self) -> float:
        """Width of the kernel's shoulder: the rounding half-width, on the kernel's scale."""
        lo, hi = self.rounding
        if self.log_scale:
            return math.log(hi / lo) / 2.0 if lo > 0 else 0.5
        return (hi - lo) / 2.0

    def tolerance_text(self) -> str:
        """The tolerance in words."""

        def fmt(v: float) -> str:
            return f"{v:.4g}"

        spans = " or ".join(f"[{fmt(lo)}, {fmt(hi)}]" for lo, hi in self.intervals)
        if self.status == "released":
            return f"released (rounding [{fmt(self.rounding[0])}, {fmt(self.rounding[1])}])"
        if self.status == "by_construction":
            return "by construction"
        return spans


def _kind(entry_unit: str, fld: str, key: str) -> str | None:
    if fld == "p" or entry_unit == "p_value":
        return "p"
    if entry_unit == "hazard_ratio":
        return "hr" if fld == "value" else "ci"
    if entry_unit == "proportion":
        return "rate"
    if entry_unit in ("months", "years"):
        return "median" if fld == "value" else "range"
    return None


def split_name(name: str, pub: Published) -> tuple[str, str]:
    """``table2.dss.igf1r.hr:p`` -> (``table2.dss.igf1r.hr``, ``p``); plain keys -> value
    (the naming of :func:`analysis.frequentist.paper_analyses.paper_statistics`)."""
    if name in pub:
        return name, "value"
    base, _, fld = name.rpartition(":")
    if fld in FIELDS and base in pub:
        return base, fld
    raise KeyError(name)


def make_target(name: str, pub: Published) -> Target | None:
    """The target for a statistic named by its published key, at the printed rounding
    (``None`` if the paper prints no value for it)."""
    key, fld = split_name(name, pub)
    entry = pub.get(key)
    value = getattr(entry, fld)
    if value is None or entry.context:
        return None
    kind = _kind(entry.unit, fld, key)
    if kind is None:
        return None
    rounding = tuple(float(b) for b in entry.bounds(fld))
    status = "by_construction" if name in BY_CONSTRUCTION else "calibrated"
    return Target(
        name,
        key,
        fld,
        float(value),
        "p_value" if kind == "p" else entry.unit,
        kind,
        rounding,  # type: ignore[arg-type]
        (rounding,),  # type: ignore[arg-type]
        kind in ("hr", "ci", "p"),
        status,
        note=BY_CONSTRUCTION.get(name, ""),
    )
