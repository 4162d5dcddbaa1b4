"""The generative model of the synthetic cohort: covariates with exact published counts, then
outcome times that depend on them.

Everything here is driven by a :class:`CohortSpec` (the counts and the time parameters, read
from ``data/published.toml`` by :mod:`analysis.reconstruction.targets`) and a seeded
``numpy.random.Generator``. No row is typed by hand: every value is drawn, and the exact counts
come from dealing out multisets of categories in random order within two blocks, the 26
tissue-microarray (TMA) patients and the 37 others.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.cohort import COLUMNS, MET_COLUMNS

BLOCKS = ("tma", "rest")
EXTREMITY_SITES = ("saphenous_femoral", "upper_extremity")
ORGANS = ("kidney", "adrenal", "liver", "intestine")
TREATMENTS: dict[str, tuple[str, str]] = {
    # treatment label: (chemotherapy, radiation)
    "surgery_alone": ("none", "none"),
    "chemo_pre": ("preoperative", "none"),
    "chemo_post": ("postoperative", "none"),
    "chemo_both": ("both", "none"),
    "radiation_pre": ("none", "preoperative"),
    "radiation_post": ("none", "postoperative"),
    "chemoradiation_pre": ("preoperative", "preoperative"),
    "chemoradiation_post": ("postoperative", "postoperative"),
}
RECURRENCE_TYPES = ("local", "distant", "local_distant")


@dataclass(frozen=True)
class CohortSpec:
    """What the generative model must reproduce exactly, and where its times start.

    Counts are per block (``"tma"``, ``"rest"``) and column: ``{level: count}``, the empty
    string ``""`` standing for a missing value. ``totals`` are counts over the whole cohort for
    the columns the paper gives only for all 63 patients.
    """

    n_tma: int
    n_rest: int
    block_counts: dict[str, dict[str, dict[str, int]]]
    totals: dict[str, dict[str, int]]
    radiation_extremity: int
    multivisceral: int
    age: dict[str, tuple[float, float, float]]  # block "all"/"tma": (minimum, median, maximum)
    followup_range: tuple[float, float]  # months
    followup_median: float  # months
    recurrence_median: dict[str, float]  # months, by recurrence type
    hazard_ratio: dict[str, float] = field(default_factory=dict)  # generative effects
    dss_median_by_marker: dict[str, dict[float, float]] = field(default_factory=dict)
    """TMA: published DSS median (months) by marker and level (1.0 high, 0.0 low)."""
    rfs_median_by_marker: dict[str, dict[float, float | None]] = field(default_factory=dict)
    """TMA: published RFS median (months) by marker and level; None where not reported."""

    @property
    def n(self) -> int:
        """Cohort size."""
        return self.n_tma + self.n_rest


def _deal(counts: dict[str, int], rng: np.random.Generator) -> np.ndarray:
    """The multiset ``counts`` in random order (object array; "" for missing)."""
    items = [level for level, k in counts.items() for _ in range(int(k))]
    return np.asarray(rng.permutation(np.asarray(items, dtype=object)), dtype=object)


def _weighted_order(weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices in a random order where heavier items tend to come first (Efraimidis-Spirakis)."""
    keys = rng.random(weights.size) ** (1.0 / np.maximum(weights, 1e-12))
    return np.argsort(-keys, kind="stable")


def _choose(rows: np.ndarray, k: int, weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Choose ``k`` of ``rows`` (weighted, without replacement)."""
    if k > rows.size:
        raise ValueError("more items to assign than rows to take them")
    return rows[_weighted_order(weights, rng)[:k]]


def draw_covariates(spec: CohortSpec, rng: np.random.Generator) -> pd.DataFrame:
    """Covariates of every patient with exact per-block counts (typed like ``load_cohort``)."""
    parts = [
        _block_covariates(spec, block, rng, n)
        for block, n in (("tma", spec.n_tma), ("rest", spec.n_rest))
    ]
    df = pd.concat(parts, ignore_index=True)
    _assign_ivc_management(df, spec, rng)
    _assign_resections(df, spec, rng)
    _assign_ages(df, spec, rng)
    return df


def _block_covariates(
    spec: CohortSpec, block: str, rng: np.random.Generator, n: int
) -> pd.DataFrame:
    counts = spec.block_counts[block]
    df = pd.DataFrame(index=range(n))
    df["tma"] = 1.0 if block == "tma" else 0.0
    for column in ("sex", "race", "grade", "margin", "surgery_at"):
        df[column] = _none_for_empty(_deal(counts[column], rng))
    df["size_ge5cm"] = _binary(_deal(counts["size_ge5cm"], rng))
    df["site"] = _deal(counts["site"], rng)
    ivc = np.flatnonzero(df["site"].to_numpy() == "ivc")
    segment = np.full(n, None, dtype=object)
    segment[ivc] = _deal(counts["ivc_segment"], rng)
    df["ivc_segment"] = segment
    for marker in ("beta_catenin", "igf1r"):
        if block == "tma":
            df[marker] = _binary(_deal(counts[marker], rng))
        else:
            df[marker] = np.nan
    _assign_treatments(df, counts["treatment"], spec, block, rng)
    return df


def _none_for_empty(values: np.ndarray) -> np.ndarray:
    return np.asarray([None if v == "" else v for v in values], dtype=object)


def _binary(values: np.ndarray) -> np.ndarray:
    return np.asarray([np.nan if v == "" else float(v) for v in values], dtype=float)


def _assign_treatments(
    df: pd.DataFrame,
    counts: dict[str, int],
    spec: CohortSpec,
    block: str,
    rng: np.random.Generator,
) -> None:
    """Deal treatment combinations; radiated extremity lesions as the split says."""
    n = len(df)
    labels = np.full(n, None, dtype=object)
    radiated = [t for t in counts if TREATMENTS[t][1] != "none" for _ in range(counts[t])]
    plain = [t for t in counts if TREATMENTS[t][1] == "none" for _ in range(counts[t])]
    extremity = df["site"].isin(EXTREMITY_SITES).to_numpy()
    k_ext = spec.block_counts[block]["radiation_extremity"][""]
    ext_rows = rng.permutation(np.flatnonzero(extremity))
    other_rows = rng.permutation(np.flatnonzero(~extremity))
    radiated_rows = np.concatenate([ext_rows[:k_ext], other_rows[: len(radiated) - k_ext]])
    rest_rows = np.concatenate([ext_rows[k_ext:], other_rows[len(radiated) - k_ext :]])
    labels[radiated_rows] = rng.permutation(np.asarray(radiated, dtype=object))
    labels[rest_rows] = rng.permutation(np.asarray(plain, dtype=object))
    df["treatment"] = labels
    df["chemotherapy"] = [TREATMENTS[t][0] for t in labels]
    df["radiation"] = [TREATMENTS[t][1] for t in labels]


def _assign_ivc_management(df: pd.DataFrame, spec: CohortSpec, rng: np.random.Generator) -> None:
    """Ligation or reconstruction for every IVC tumour (counts given for all 63 only)."""
    ivc = np.flatnonzero(df["site"].to_numpy() == "ivc")
    values = np.full(len(df), None, dtype=object)
    values[ivc] = _deal(spec.totals["ivc_management"], rng)
    df["ivc_management"] = values


def _assign_resections(df: pd.DataFrame, spec: CohortSpec, rng: np.random.Generator) -> None:
    """Organs resected with the tumour: exact per-block organ counts and an exact number of
    patients with any organ resected (multivisceral); renal-vein and IVC tumours first."""
    for organ in ORGANS:
        df[f"resected_{organ}"] = 0.0
    per_block_min = {}
    for block in BLOCKS:
        organs = spec.block_counts[block]["resected"]
        per_block_min[block] = max(organs.values())
    n_tma_multi = _split_multivisceral(spec, per_block_min, rng)
    for block, n_multi in (("tma", n_tma_multi), ("rest", spec.multivisceral - n_tma_multi)):
        rows = np.flatnonzero((df["tma"] == (1.0 if block == "tma" else 0.0)).to_numpy())
        weight = np.where(df["site"].to_numpy()[rows] == "renal", 8.0, 1.0)
        weight = weight + np.where(df["site"].to_numpy()[rows] == "ivc", 2.0, 0.0)
        chosen = _choose(rows, n_multi, weight, rng)
        _deal_organs(df, chosen, spec.block_counts[block]["resected"], rng)


def _split_multivisceral(
    spec: CohortSpec, minimum: dict[str, int], rng: np.random.Generator
) -> int:
    """How many of the multivisceral resections fall in the TMA block (feasible, random)."""
    total = spec.multivisceral
    organs = {b: sum(spec.block_counts[b]["resected"].values()) for b in BLOCKS}
    low = max(minimum["tma"], total - min(organs["rest"], spec.n_rest))
    high = min(organs["tma"], spec.n_tma, total - minimum["rest"])
    if low > high:
        raise ValueError("organ resection counts cannot be dealt with this multivisceral total")
    return int(rng.integers(low, high + 1))


def _deal_organs(
    df: pd.DataFrame, rows: np.ndarray, counts: dict[str, int], rng: np.random.Generator
) -> None:
    """Give each of ``rows`` at least one organ, with exact organ counts, no organ twice."""
    held: dict[int, set[str]] = {int(r): set() for r in rows}
    labels = [o for o, k in counts.items() for _ in range(k)]
    # the commonest organs first, so that every patient can still be reached
    labels.sort(key=lambda o: -counts[o])
    order = rng.permutation(rows)
    for label in labels:
        free = [r for r in order if label not in held[int(r)]]
        fewest = min(len(held[int(r)]) for r in free)
        candidates = [r for r in free if len(held[int(r)]) == fewest]
        pick = int(candidates[int(rng.integers(len(candidates)))])
        held[pick].add(label)
    if any(not organs for organs in held.values()):
        raise ValueError("a multivisceral resection without an organ")
    for row, organs in held.items():
        for organ in organs:
            df.loc[row, f"resected_{organ}"] = 1.0


def _assign_ages(df: pd.DataFrame, spec: CohortSpec, rng: np.random.Generator) -> None:
    """Integer ages drawn around the published median, then repaired so that the minimum,
    median and maximum of all patients and of the TMA block are the published ones."""
    lo, med, hi = spec.age["all"]
    t_lo, t_med, t_hi = spec.age["tma"]
    tma = (df["tma"] == 1.0).to_numpy()
    ages = np.rint(rng.normal(med, (hi - lo) / 4.5, len(df)))
    ages[tma] = _fix_order_statistics(np.clip(ages[tma], t_lo, t_hi), t_lo, t_med, t_hi)
    rest = ~tma
    ages[rest] = np.clip(ages[rest], lo, hi)
    ages[rest] = _fix_extremes(ages[rest], lo, hi, need_low=t_lo > lo, need_high=t_hi < hi)
    ages = _fix_joint_median(ages, rest, med)
    df["age"] = ages


def _fix_order_statistics(x: np.ndarray, lo: float, median: float, hi: float) -> np.ndarray:
    """Set the minimum, the middle order statistic(s) and the maximum of ``x`` exactly."""
    order = np.argsort(x, kind="stable")
    out = x.copy()
    m = x.size
    middle = [m // 2] if m % 2 else [m // 2 - 1, m // 2]
    lower = order[: middle[0]]
    upper = order[middle[-1] + 1 :]
    out[lower] = np.clip(out[lower], lo, median)
    out[upper] = np.clip(out[upper], median, hi)
    out[order[middle]] = median
    out[order[0]] = lo
    out[order[-1]] = hi
    return out


def _fix_extremes(
    x: np.ndarray, lo: float, hi: float, *, need_low: bool, need_high: bool
) -> np.ndarray:
    out = x.copy()
    if need_low:
        out[np.argmin(out)] = lo
    if need_high:
        out[np.argmax(out)] = hi
    return out


def _fix_joint_median(ages: np.ndarray, movable: np.ndarray, median: float) -> np.ndarray:
    """Move ages of ``movable`` patients across the median until the middle one equals it."""
    out = ages.copy()
    n = out.size
    half = (n - 1) // 2  # values strictly below the median (odd n)
    rows = np.flatnonzero(movable)
    if not (out[rows] == median).any():
        closest = rows[np.argmin(np.abs(out[rows] - median))]
        out[closest] = median
    anchor = rows[np.flatnonzero(out[rows] == median)[0]]
    for _ in range(n):
        below = int((out < median).sum())
        above = int((out > median).sum())
        if below <= half and above <= n - 1 - half:
            break
        if below > half:
            cand = [r for r in rows if out[r] < median and r != anchor]
            r = max(cand, key=lambda i: out[i])
            out[r] = 2 * median - out[r]
        else:
            cand = [r for r in rows if out[r] > median and r != anchor]
            r = min(cand, key=lambda i: out[i])
            out[r] = 2 * median - out[r]
    return out


def draw_outcomes(df: pd.DataFrame, spec: CohortSpec, rng: np.random.Generator) -> pd.DataFrame:
    """Recurrence type (exact per-block counts), then times that depend on type and covariates.

    * who recurs: in the TMA block marker-positive tumours are weighted by the published RFS
      hazard ratios; the type of each recurrence is dealt at random (exact counts);
    * potential follow-up (administrative censoring) ~ a Beta-shaped spread over the published
      follow-up range, with the two extremes set to the published minimum and maximum;
    * first recurrence ~ log-normal around the published median for its type (TMA: around the
      published RFS medians of the patient's marker groups);
    * death from disease ~ recurrence + a log-normal delay, shortened by the markers and
      lengthened by radiation (published HRs); in the TMA block around the published DSS
      medians of the marker groups, with the patients who do not recur censored early;
    * deaths from other causes are rare (5%) and drawn among the others.

    These are starting values: the search (``analysis.reconstruction.search``) moves the times.
    """
    out = df.copy()
    n = len(out)
    rec = np.full(n, "none", dtype=object)
    for block in BLOCKS:
        rows = np.flatnonzero((out["tma"] == (1.0 if block == "tma" else 0.0)).to_numpy())
        counts = spec.block_counts[block]["recurrence"]
        # marker-positive tumours recur more often (weights from the generative hazard ratios)
        weight = np.ones(rows.size)
        if block == "tma":
            for marker in ("beta_catenin", "igf1r"):
                effect = spec.hazard_ratio.get(f"rfs.{marker}", 1.0)
                weight *= np.where(out[marker].to_numpy()[rows] == 1.0, effect, 1.0)
        n_recur = sum(k for t, k in counts.items() if t != "none")
        recurrers = _choose(rows, n_recur, weight, rng)
        rec[recurrers] = _deal({t: k for t, k in counts.items() if t != "none"}, rng)
    out["recurrence"] = rec
    lo, hi = spec.followup_range
    share = (spec.followup_median - lo) / (hi - lo)
    a = 1.5
    b = a * (1 - share) / share
    potential = lo + (hi - lo) * rng.beta(a, b, n)
    potential[np.argmin(potential)] = lo
    potential[np.argmax(potential)] = hi
    hr = spec.hazard_ratio
    marker_rfs = _marker_factor(out, hr, "rfs")
    marker_dss = _marker_factor(out, hr, "dss")
    radiated = (out["radiation"] != "none").to_numpy()
    dss_rad = np.where(radiated, hr.get("dss.radiation", 1.0), 1.0)
    recurred = rec != "none"
    median_type = np.array([spec.recurrence_median.get(t, np.nan) for t in rec], dtype=float)
    t_rec = median_type * np.exp(0.6 * rng.standard_normal(n)) / marker_rfs
    t_rec = np.where(recurred, np.minimum(t_rec, 0.95 * potential), potential)
    delay = 40.0 * np.exp(0.9 * rng.standard_normal(n)) / (marker_dss * dss_rad)
    t_death = t_rec + delay
    tma = (out["tma"] == 1.0).to_numpy()
    if spec.dss_median_by_marker:
        # TMA: deaths around the published DSS medians of the patient's two marker groups,
        # recurrences around the RFS medians, and before the death
        centre = np.ones(n)
        for marker, medians in spec.dss_median_by_marker.items():
            level = out[marker].to_numpy()
            centre *= np.array([medians.get(v, np.nan) for v in level]) ** 0.5
        tma_death = centre * np.exp(0.35 * rng.standard_normal(n))
        rfs_centre = np.ones(n)
        for marker, medians in spec.rfs_median_by_marker.items():
            level = out[marker].to_numpy()
            known = [m for m in medians.values() if m is not None]
            fallback = float(np.exp(np.mean(np.log(known)))) if known else 1.0
            group = [medians.get(v) for v in level]
            rfs_centre *= np.array([fallback if g is None else g for g in group], float) ** 0.5
        tma_rec = rfs_centre * np.exp(0.4 * rng.standard_normal(n))
        tma_rec = np.minimum(tma_rec, tma_death * rng.uniform(0.3, 0.9, n))
        t_death = np.where(tma, tma_death, t_death)
        t_rec = np.where(tma & recurred, tma_rec, t_rec)
        # censoring of the TMA patients without recurrence comes early, so the late deaths of
        # the few still at risk bring every marker group's DSS median within reach
        late = lo + (hi - lo) * rng.beta(2.5, 1.2, n)
        early = lo + (hi - lo) * rng.beta(1.2, 2.5, n)
        potential = np.where(tma, np.where(recurred, late, early), potential)
    dead = recurred & (t_death < potential)
    follow = np.clip(np.where(dead, t_death, potential), lo, hi)
    follow[np.argmin(follow)] = lo
    follow[np.argmax(follow)] = hi
    t_rec = np.minimum(t_rec, follow)
    vital = np.where(dead, "dead_disease", "alive").astype(object)
    other = (~dead) & (rng.random(n) < 0.05)
    vital[other] = "dead_other"
    follow = np.round(follow, 2)
    t_rec = np.minimum(np.round(np.maximum(t_rec, 0.5), 2), follow)
    out["recurrence_months"] = np.where(recurred, t_rec, follow)
    out["followup_months"] = follow
    out["vital_status"] = vital
    _assign_met_sites(out, spec, rng)
    return out


def _marker_factor(df: pd.DataFrame, hr: dict[str, float], end_point: str) -> np.ndarray:
    factor = np.ones(len(df))
    for marker in ("beta_catenin", "igf1r"):
        effect = hr.get(f"{end_point}.{marker}", 1.0)
        factor *= np.where(df[marker].to_numpy() == 1.0, effect**0.7, 1.0)
    return factor


def _assign_met_sites(df: pd.DataFrame, spec: CohortSpec, rng: np.random.Generator) -> None:
    """Deal the published metastatic-site counts over the distant recurrences: every distant
    recurrence gets at least one site, no site twice."""
    distant = np.flatnonzero(df["recurrence"].isin(["distant", "local_distant"]).to_numpy())
    for col in MET_COLUMNS:
        df[col] = 0.0
    counts = {col: spec.totals["met_sites"][col] for col in MET_COLUMNS}
    if sum(counts.values()) < distant.size:
        raise ValueError("fewer metastatic sites than distant recurrences")
    held: dict[int, set[str]] = {int(r): set() for r in distant}
    labels = [c for c in MET_COLUMNS for _ in range(counts[c])]
    labels.sort(key=lambda c: -counts[c])
    for label in labels:
        free = [r for r in rng.permutation(distant) if label not in held[int(r)]]
        fewest = min(len(held[int(r)]) for r in free)
        pick = int(next(r for r in free if len(held[int(r)]) == fewest))
        held[pick].add(label)
    for row, cols in held.items():
        for col in cols:
            df.loc[row, col] = 1.0


def reassign_met_sites(df: pd.DataFrame, spec: CohortSpec, rng: np.random.Generator) -> None:
    """Re-deal the metastatic sites after the optimiser moved recurrence types."""
    _assign_met_sites(df, spec, rng)


def finalise(df: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Shuffle rows, number them SYN-001..., round times, and order the schema columns."""
    order = rng.permutation(len(df))
    out = df.iloc[order].reset_index(drop=True)
    out["patient_id"] = [f"SYN-{i + 1:03d}" for i in range(len(out))]
    out["followup_months"] = out["followup_months"].round(2)
    out["recurrence_months"] = out["recurrence_months"].round(2)
    none = out["recurrence"] == "none"
    out.loc[none, "recurrence_months"] = out.loc[none, "followup_months"]
    out["synthetic"] = 1
    return out[[*COLUMNS, "synthetic"]]
