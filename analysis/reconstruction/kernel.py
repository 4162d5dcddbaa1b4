"""The calibrated targets as the arrays of the sampler's kernel."""

from __future__ import annotations

import math

import numpy as np

from analysis.reconstruction.fast_stats import STAT_INDEX
from analysis.reconstruction.sampler import KernelTargets
from analysis.reconstruction.targets import MONTHS_PER_YEAR, Target

SHOULDER: dict[str, float] = {"median": 1.0, "rate": 0.02, "hr": 0.05, "ci": 0.05, "p": 0.15}
"""Width of the kernel's shoulder outside the tolerance, by kind of statistic, in its units
(months; proportion; log HR; log P): the distance at which a miss costs about twice a near
miss. Inside the tolerance the kernel is flat."""


def shoulder(target: Target) -> float:
    """The shoulder width of a target (medians in years scaled to months)."""
    width = SHOULDER.get(target.kind, 1.0)
    if target.kind == "median" and target.unit == "years":
        width /= MONTHS_PER_YEAR
    return width


def merged(spans: tuple[tuple[float, float], ...]) -> list[tuple[float, float]]:
    """Overlapping intervals merged, in increasing order."""
    out: list[list[float]] = []
    for lo, hi in sorted(spans):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [(a, b) for a, b in out]


def kernel_targets(targets: list[Target]) -> KernelTargets:
    """The targets the kernel samples (calibrated and widened ones), as arrays.

    Raises
    ------
    ValueError
        A target the compiled statistics do not compute, or more than two disjoint intervals.
    """
    rows = [t for t in targets if t.in_kernel]
    n = len(rows)
    arrays = {k: np.full(n, math.nan) for k in ("lo1", "hi1", "lo2", "hi2", "sigma")}
    index = np.zeros(n, np.int64)
    log_scale = np.zeros(n, np.int64)
    for j, t in enumerate(rows):
        if t.name not in STAT_INDEX:
            raise ValueError(f"{t.name}: not among the compiled statistics")
        index[j] = STAT_INDEX[t.name]
        log_scale[j] = int(t.log_scale)
        spans = merged(t.intervals)
        if len(spans) > 2:
            raise ValueError(f"{t.name}: more than two disjoint tolerance intervals")
        for k, (lo, hi) in enumerate(spans, start=1):
            if t.log_scale:
                lo, hi = math.log(lo), math.log(hi)
            arrays[f"lo{k}"][j] = lo
            arrays[f"hi{k}"][j] = hi
        arrays["sigma"][j] = shoulder(t)
    return KernelTargets(
        index,
        log_scale,
        arrays["lo1"],
        arrays["hi1"],
        arrays["lo2"],
        arrays["hi2"],
        arrays["sigma"],
        np.ones(n),
    )
