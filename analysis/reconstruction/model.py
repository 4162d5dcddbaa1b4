"""The covariates of a synthetic cohort, with the exact published counts.

Everything here is driven by a :class:`CohortSpec` (the counts, read from
``data/published.toml`` by :mod:`analysis.reconstruction.targets`) and a seeded
``numpy.random.Generator``. No row is typed by hand: every value is drawn, and the exact counts
come from dealing out multisets of categories in random order within two blocks, the 26
tissue-microarray (TMA) patients and the 37 others. Outcomes come from the generative model
(:mod:`analysis.reconstruction.generative`) and the sampler
(:mod:`analysis.reconstruction.sampler`).
"""

from __future__ import annotations

from dataclasses import dataclass

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
    followup_range: tuple[float, float]  # months, held by two patients

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
