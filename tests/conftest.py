"""Shared test fixtures: a small random cohort in the schema (not calibrated to anything)."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.cohort import COLUMNS


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C at Python's default in the test process (and each xdist worker), whatever it
    inherited: a background job of a non-interactive shell (``make test &`` in a script, some CI
    runners) starts with SIGINT ignored, and the signal-handling tests would then test the
    inherited disposition, not the code (8 of them failed so on a fresh clone)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def make_cohort_frame(n: int = 40, seed: int = 0, tma_fraction: float = 0.5) -> pd.DataFrame:
    """A schema-valid random cohort of ``n`` synthetic patients (cells as strings)."""
    rng = np.random.default_rng(seed)
    site = rng.choice(
        ["ivc", "saphenous_femoral", "renal", "upper_extremity", "other"],
        size=n,
        p=[0.6, 0.15, 0.1, 0.05, 0.1],
    )
    ivc = site == "ivc"
    tma = rng.random(n) < tma_fraction
    beta = np.where(tma, rng.integers(0, 2, n), -1)
    igf = np.where(tma, rng.integers(0, 2, n), -1)
    hazard = 1 / 60 * np.exp(0.7 * (beta == 1) + 0.5 * (igf == 1))
    t_rec = rng.exponential(1 / hazard)
    t_cens = rng.uniform(10, 160, n)
    recurred = t_rec < t_cens
    rec_type = np.where(recurred, rng.choice(["local", "distant", "local_distant"], n), "none")
    rec_months = np.where(recurred, t_rec, t_cens)
    t_death = rec_months + rng.exponential(30, n)
    dead_dis = recurred & (t_death < t_cens)
    followup = np.where(dead_dis, t_death, t_cens)
    vital = np.where(dead_dis, "dead_disease", "alive")
    other = ~recurred & (rng.random(n) < 0.05)
    vital = np.where(other, "dead_other", vital)
    distant = np.isin(rec_type, ["distant", "local_distant"])
    mets = {c: (distant & (rng.random(n) < 0.4)).astype(int) for c in ("liver", "bone")}
    lung = distant & ~(mets["liver"] | mets["bone"]).astype(bool)
    frame = {
        "patient_id": [f"SYN-{i + 1:03d}" for i in range(n)],
        "age": rng.integers(22, 79, n).astype(str),
        "sex": rng.choice(["female", "male"], n),
        "race": rng.choice(["white", "african_american", "hispanic"], n),
        "site": site,
        "ivc_segment": np.where(ivc, rng.choice(["1", "2", "3"], n), ""),
        "size_ge5cm": rng.choice(["1", "0", ""], n, p=[0.75, 0.2, 0.05]),
        "grade": rng.choice(["low", "intermediate", "high", ""], n),
        "margin": rng.choice(["r0r1", "r2", ""], n),
        "surgery_at": rng.choice(["mdacc", "outside"], n),
        # drawn from its own generator so that the other columns do not depend on it
        "surgery_year": np.random.default_rng(seed + 1).integers(1993, 2013, n).astype(str),
        "chemotherapy": rng.choice(["none", "preoperative", "postoperative", "both"], n),
        "radiation": rng.choice(["none", "preoperative", "postoperative"], n, p=[0.7, 0.1, 0.2]),
        "ivc_management": np.where(ivc, rng.choice(["ligation", "reconstruction"], n), ""),
        "resected_kidney": rng.integers(0, 2, n).astype(str),
        "resected_adrenal": rng.integers(0, 2, n).astype(str),
        "resected_liver": np.zeros(n, int).astype(str),
        "resected_intestine": np.zeros(n, int).astype(str),
        "tma": tma.astype(int).astype(str),
        "beta_catenin": np.where(tma, beta.astype(str), ""),
        "igf1r": np.where(tma, igf.astype(str), ""),
        "recurrence": rec_type,
        "recurrence_months": np.round(rec_months, 2).astype(str),
        "met_lung": lung.astype(int).astype(str),
        "met_liver": mets["liver"].astype(str),
        "met_bone": mets["bone"].astype(str),
        "met_abdomen": np.zeros(n, int).astype(str),
        "met_other": np.zeros(n, int).astype(str),
        "vital_status": vital,
        "followup_months": np.round(followup, 2).astype(str),
    }
    df = pd.DataFrame(frame)[list(COLUMNS)]
    no_rec = df["recurrence"] == "none"
    df.loc[no_rec, "recurrence_months"] = df.loc[no_rec, "followup_months"]
    return df


@pytest.fixture
def small_cohort_csv(tmp_path: Path) -> Path:
    """Path to a 40-patient schema-valid random cohort CSV."""
    path = tmp_path / "cohort.csv"
    make_cohort_frame().to_csv(path, index=False)
    return path
