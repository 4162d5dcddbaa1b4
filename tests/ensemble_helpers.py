"""A stand-in for ``data/cohorts.csv`` in tests: schema-valid random cohorts stacked with a
``reconstruction`` column (not calibrated to anything)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tests.conftest import make_cohort_frame


def make_ensemble_frame(members: int = 3, n: int = 63, seed: int = 0) -> pd.DataFrame:
    """``members`` random cohorts of ``n`` patients, numbered 1..members."""
    parts = []
    for r in range(1, members + 1):
        part = make_cohort_frame(n=n, seed=seed + r, tma_fraction=0.45)
        part.insert(0, "reconstruction", str(r))
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def write_ensemble(path: Path, members: int = 3, n: int = 63, seed: int = 0) -> Path:
    make_ensemble_frame(members, n, seed).to_csv(path, index=False)
    return path
