"""The result of one reconstruction: the cohort and what its calibration report needs."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from analysis.reconstruction.search import SearchResult
from analysis.reconstruction.targets import Reading, Target


@dataclass
class Reconstruction:
    """The cohort (as written) and everything the calibration report needs."""

    csv_text: str
    frame: pd.DataFrame
    seed: int
    targets: list[Target]
    readings: list[Reading]
    search: SearchResult
    seconds: float
    cpu_seconds: float
