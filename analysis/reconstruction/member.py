"""One ensemble member: its starting cohort, its chain, and the cohort it writes.

A member is built in four seeded steps:

1. parameters from their priors and covariates with the exact published counts
   (:func:`analysis.reconstruction.model.draw_covariates`); latent markers outside the TMA;
2. recurrence classes dealt with the exact per-block counts (patients with a higher model
   hazard of recurrence tend to be dealt one), then each patient's story drawn from the model
   given its class, inside the published follow-up range; the patients with the shortest and
   the longest follow-up are moved onto the range's two ends (they hold them from then on);
3. the ABC-MCMC chain (:mod:`analysis.reconstruction.sampler`);
4. metastatic sites dealt over the distant recurrences, surgery dates drawn from their
   conditional law given follow-up and status, rows shuffled and numbered.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.cohort import validate_cohort
from analysis.reconstruction import generative as gm
from analysis.reconstruction.fast_stats import TYPE_NAMES
from analysis.reconstruction.model import (
    TREATMENTS,
    CohortSpec,
    draw_covariates,
    finalise,
    reassign_met_sites,
)
from analysis.reconstruction.mortality import background_laws
from analysis.reconstruction.sampler import (
    ChainResult,
    ChainSettings,
    ChainState,
    KernelTargets,
    run,
    seed_numba,
)

TREATMENT_CODES = {label: k for k, label in enumerate(TREATMENTS)}
EXTREMITY_SITES = ("saphenous_femoral", "upper_extremity")
STORY_TRIES = 2000


@dataclass
class Member:
    """One reconstructed cohort and how it was made."""

    index: int
    seed: int
    frame: pd.DataFrame  # typed, as load_cohort returns
    csv_text: str
    theta: np.ndarray
    chain: ChainResult
    cpu_seconds: float
    wall_seconds: float


def member_seed(seed: int, index: int) -> int:
    """The member's own seed: a function of the run's seed and the member number only."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def _mean_known(values: np.ndarray) -> float:
    known = values[~np.isnan(values)]
    return float(known.mean()) if known.size else 0.0


def covariate_matrix(
    df: pd.DataFrame, rng: np.random.Generator
) -> tuple[np.ndarray, float, np.ndarray]:
    """(matrix of :mod:`generative` columns, mean R2 among known margins, latent prevalences)."""
    n = len(df)
    tma = df["tma"].to_numpy(float) == 1.0
    X = np.zeros((n, gm.N_COV))
    X[:, gm.C_TMA] = tma
    prevalence = np.zeros(2)
    for k, (col, marker) in enumerate(((gm.C_BCAT, "beta_catenin"), (gm.C_IGF, "igf1r"))):
        values = df[marker].to_numpy(float)
        prevalence[k] = _mean_known(values[tma])
        latent = (rng.random(n) < prevalence[k]).astype(float)
        X[:, col] = np.where(tma, values, latent)
    size = df["size_ge5cm"].to_numpy(float)
    X[:, gm.C_SIZE] = np.where(np.isnan(size), _mean_known(size), size)
    margin = df["margin"].to_numpy(object)
    codes = np.array(
        [gm.MARGIN_R0R1 if m == "r0r1" else gm.MARGIN_R2 if m == "r2" else gm.MARGIN_UNKNOWN
         for m in margin]
    )  # fmt: skip
    known = codes != gm.MARGIN_UNKNOWN
    r2_mean = float((codes[known] == gm.MARGIN_R2).mean()) if known.any() else 0.0
    X[:, gm.C_MARGIN] = codes
    X[:, gm.C_R2] = r2_value(codes, r2_mean)
    X[:, gm.C_RAD] = (df["radiation"] != "none").to_numpy(float)
    X[:, gm.C_CHEMO] = (df["chemotherapy"] != "none").to_numpy(float)
    X[:, gm.C_ADJ] = np.maximum(X[:, gm.C_RAD], X[:, gm.C_CHEMO])
    X[:, gm.C_TREAT] = [TREATMENT_CODES[t] for t in df["treatment"]]
    X[:, gm.C_AGE] = df["age"].to_numpy(float)
    laws = background_laws()
    X[:, gm.C_GA] = [laws[s].a for s in df["sex"]]
    X[:, gm.C_GB] = [laws[s].b for s in df["sex"]]
    X[:, gm.C_BLOCK] = np.where(tma, 0.0, 1.0)
    X[:, gm.C_EXT] = df["site"].isin(EXTREMITY_SITES).to_numpy(float)
    return X, r2_mean, prevalence


def r2_value(codes: np.ndarray, r2_mean: float) -> np.ndarray:
    """R2 indicator; unknown margins at the mean of the known ones."""
    return np.where(codes == gm.MARGIN_R2, 1.0, np.where(codes == gm.MARGIN_R0R1, 0.0, r2_mean))


def deal_classes(
    spec: CohortSpec, X: np.ndarray, theta: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Recurrence class codes with the exact per-block counts; a higher recurrence hazard makes
    a patient more likely to be dealt a recurrence (weighted order, Efraimidis-Spirakis)."""
    n = X.shape[0]
    codes = np.zeros(n, np.int64)
    risk = np.exp(np.array([gm.rec_lp(theta, X[i]) for i in range(n)]))
    for block, code in (("tma", 0.0), ("rest", 1.0)):
        rows = np.flatnonzero(X[:, gm.C_BLOCK] == code)
        counts = spec.block_counts[block]["recurrence"]
        types = [TYPE_NAMES.index(t) for t, k in counts.items() if t != "none" for _ in range(k)]
        keys = rng.random(rows.size) ** (1.0 / risk[rows])
        recurrers = rows[np.argsort(-keys, kind="stable")[: len(types)]]
        codes[recurrers] = rng.permutation(np.asarray(types, np.int64))
    return codes


def initial_stories(
    X: np.ndarray,
    theta: np.ndarray,
    classes: np.ndarray,
    low: float,
    high: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each patient's (recurrence months, follow-up months, status) drawn from the model given
    its class; a patient the model cannot place gets a plain story (recurrence at a uniform
    time, alive at a uniform later time)."""
    n = X.shape[0]
    rec_t = np.zeros(n)
    fu = np.zeros(n)
    status = np.zeros(n, np.int64)
    for i in range(n):
        ok, t_r, f, s = gm.draw_story_given(theta, X[i], int(classes[i]), low, high, STORY_TRIES)
        if not ok:
            f = round(float(rng.uniform(low, high)), 2)
            t_r = round(float(rng.uniform(1.0, f)), 2) if classes[i] > 0 else f
            s = gm.ALIVE
        rec_t[i], fu[i], status[i] = t_r, f, s
    return rec_t, fu, status


def pin_range_ends(
    rec_t: np.ndarray, fu: np.ndarray, classes: np.ndarray, low: float, high: float
) -> np.ndarray:
    """Move the shortest and the longest follow-up onto the range's ends (recurrence times
    scaled with them); returns the pinned flags."""
    pinned = np.zeros(fu.size, np.bool_)
    for row, end in ((int(np.argmin(fu)), low), (int(np.argmax(fu)), high)):
        factor = end / fu[row]
        fu[row] = end
        if classes[row] > 0:
            rec_t[row] = max(gm.MIN_RECURRENCE_MONTHS, round(rec_t[row] * factor, 2))
            rec_t[row] = min(rec_t[row], end - gm.TIME_STEP)
        else:
            rec_t[row] = end
        pinned[row] = True
    return pinned


def initial_state(
    spec: CohortSpec, rng: np.random.Generator
) -> tuple[ChainState, pd.DataFrame, float, np.ndarray]:
    """Parameters, covariates and stories of a member before its chain."""
    theta = gm.draw_theta(rng)
    cov = draw_covariates(spec, rng)
    X, r2_mean, prevalence = covariate_matrix(cov, rng)
    low, high = spec.followup_range
    classes = deal_classes(spec, X, theta, rng)
    rec_t, fu, status = initial_stories(X, theta, classes, low, high, rng)
    pinned = pin_range_ends(rec_t, fu, classes, low, high)
    status[pinned & (status == gm.DEAD_DISEASE) & (fu - rec_t < gm.TIME_STEP)] = gm.ALIVE
    state = ChainState(
        theta=theta,
        X=X,
        tma=X[:, gm.C_TMA] == 1.0,
        r0r1=X[:, gm.C_MARGIN] == gm.MARGIN_R0R1,
        rec_type=classes,
        rec_t=rec_t,
        fu=fu,
        status=status,
        pinned=pinned,
    )
    return state, cov, r2_mean, prevalence


def state_frame(
    state: ChainState, cov: pd.DataFrame, spec: CohortSpec, rng: np.random.Generator
) -> pd.DataFrame:
    """The cohort in the schema (before shuffling): covariates as the chain left them."""
    df = cov.copy()
    X = state.X
    tma = state.tma
    for col, marker in ((gm.C_BCAT, "beta_catenin"), (gm.C_IGF, "igf1r")):
        df[marker] = np.where(tma, X[:, col], np.nan)
    labels = list(TREATMENTS)
    df["treatment"] = [labels[int(c)] for c in X[:, gm.C_TREAT]]
    df["chemotherapy"] = [TREATMENTS[t][0] for t in df["treatment"]]
    df["radiation"] = [TREATMENTS[t][1] for t in df["treatment"]]
    margin = {gm.MARGIN_R0R1: "r0r1", gm.MARGIN_R2: "r2", gm.MARGIN_UNKNOWN: None}
    df["margin"] = [margin[int(c)] for c in X[:, gm.C_MARGIN]]
    df["age"] = X[:, gm.C_AGE]
    df["recurrence"] = [TYPE_NAMES[int(c)] for c in state.rec_type]
    df["followup_months"] = np.round(state.fu, 2)
    df["recurrence_months"] = np.where(
        state.rec_type > 0, np.round(state.rec_t, 2), df["followup_months"]
    )
    df["vital_status"] = [gm.STATUS_NAMES[int(s)] for s in state.status]
    reassign_met_sites(df, spec, rng)
    dates = np.array(
        [
            gm.draw_surgery_date(state.theta, X[i], float(state.fu[i]), int(state.status[i]))
            for i in range(len(df))
        ]
    )
    df["surgery_year"] = np.floor(dates)
    return df


def cohort_csv(df: pd.DataFrame) -> str:
    """The cohort as CSV text: binary 0/1, integer ages and years, times to 0.01 month."""
    out = pd.DataFrame(index=df.index)
    for col in df.columns:
        values = df[col]
        if col in ("recurrence_months", "followup_months"):
            out[col] = [f"{v:.2f}" for v in values]
        elif col in ("age", "surgery_year") or values.dtype.kind == "f":
            out[col] = ["" if pd.isna(v) else f"{v:.0f}" for v in values]
        else:
            out[col] = [
                "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
                for v in values
            ]
    buffer = io.StringIO()
    out.to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue()


def parse_csv_text(text: str, name: str = "reconstructed cohort") -> pd.DataFrame:
    """The typed cohort a CSV text stands for (validated by the one loader's rules)."""
    raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    return validate_cohort(raw, name)


def draw_member(
    spec: CohortSpec,
    targets: KernelTargets,
    seed: int,
    index: int,
    settings: ChainSettings,
) -> Member:
    """Reconstruct member ``index`` of the ensemble seeded by ``seed`` (deterministic)."""
    wall, cpu = time.perf_counter(), time.process_time()
    own = member_seed(seed, index)
    rng = np.random.default_rng(own)
    seed_numba(int(rng.integers(2**31 - 1)))
    state, cov, r2_mean, prevalence = initial_state(spec, rng)
    low, high = spec.followup_range
    chain = run(
        state, targets, settings, int(rng.integers(2**31 - 1)), low, high, prevalence, r2_mean
    )
    seed_numba(int(rng.integers(2**31 - 1)))
    frame = finalise(state_frame(state, cov, spec, rng), rng)
    text = cohort_csv(frame)
    typed = parse_csv_text(text)
    return Member(
        index,
        own,
        typed,
        text,
        state.theta.copy(),
        chain,
        time.process_time() - cpu,
        time.perf_counter() - wall,
    )
