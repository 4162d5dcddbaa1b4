"""``vlms reconstruct``: the synthetic 63-patient cohort, calibrated to the published numbers.

No patient-level data from the study is public. This builds a **synthetic** cohort in three
steps, every one seeded:

1. :mod:`analysis.reconstruction.targets` reads the paper's numbers (``data/published.toml``)
   and picks one reading where they contradict each other;
2. :mod:`analysis.reconstruction.model` draws the covariates with the exact published counts
   (Table 1 for the 63 and the 26 TMA patients, treatments, metastatic sites, ...) and outcome
   times from a generative model that depends on them;
3. :mod:`analysis.reconstruction.search` anneals the individual times and assignments to bring the
   paper's statistics back, as computed by
   :func:`analysis.frequentist.paper_analyses.paper_statistics`
   (the same function ``vlms check`` reports with: one implementation, used on the numpy fast
   path inside the loop and on lifelines for the final report). Several chains start from
   independent draws of the generative model and are halved between stages (successive
   halving); the loss is a weighted sum of robust squared standardised discrepancies, ranked
   HR points > medians and rates > CIs and P values, with the CIs and P values of estimates
   that a major audit finding contradicts down-weighted further.

The search is a fixed number of proposals (never a wall-clock budget), so a seed gives the same
file byte for byte on any machine. About 15,000 evaluations of the fast statistics: roughly
100 s of CPU on one core.

Outputs: ``data/cohort.csv`` (one row per synthetic patient, ids ``SYN-001``..., a
``synthetic`` column of 1s), beside it ``example.csv`` (the same cohort as a flat survival table
for ``vlms check/fit --data``, :func:`analysis.cohort.example_table`) and
``reports/calibration.{md,json}``: every target, published against reconstructed, with its
tolerance, whether it is met and, if not, why.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.cohort import COLUMNS, EXAMPLE_NAME, example_csv, validate_cohort
from analysis.core.atomic import write_text
from analysis.paper.published import Published, load_published
from analysis.reconstruction.model import (
    draw_covariates,
    draw_outcomes,
    finalise,
    reassign_met_sites,
)
from analysis.reconstruction.report import calibration_rows, render_reports, write_reports
from analysis.reconstruction.result import Reconstruction
from analysis.reconstruction.search import Bounds, SearchSettings, anneal
from analysis.reconstruction.targets import (
    MONTHS_PER_YEAR,
    Target,
    build_spec,
    calibration_targets,
    check_counts,
    contradicted_keys,
)

StatisticsFn = Callable[[pd.DataFrame], dict[str, float]]
Z_CAP = 100.0
HUBER = 2.0
MISS_STEP = 1.0


def _default_statistics() -> tuple[StatisticsFn, StatisticsFn]:
    """(fast, reference) versions of the paper's statistics."""
    from analysis.frequentist.paper_analyses import paper_statistics

    return (
        lambda df: paper_statistics(df, fast=True),
        lambda df: paper_statistics(df, fast=False),
    )


def robust_square(z: float) -> float:
    """z^2 up to |z| = 2, then linear (Huber), capped: a target that cannot be met does not
    drown the others; plus a step of :data:`MISS_STEP` outside the tolerance (|z| > 1), so that
    meeting a target is worth more than edging towards it."""
    a = Z_CAP if not math.isfinite(z) else min(abs(z), Z_CAP)
    core = a * a if a <= HUBER else 2 * HUBER * a - HUBER * HUBER
    return core + (MISS_STEP if a > 1.0 else 0.0)


def make_loss(targets: list[Target], statistics: StatisticsFn) -> Callable[[pd.DataFrame], float]:
    """Weighted sum of robust squared standardised discrepancies."""

    def loss(df: pd.DataFrame) -> float:
        values = statistics(df)
        total = 0.0
        for t in targets:
            total += t.weight * robust_square(t.discrepancy(values.get(t.name, math.nan)))
        return total

    return loss


def cohort_csv(df: pd.DataFrame) -> str:
    """The cohort as CSV text: binary 0/1, integer ages, times to 0.01 month, empty = missing."""
    out = pd.DataFrame(index=df.index)
    for col in df.columns:
        values = df[col]
        if col in ("recurrence_months", "followup_months"):
            out[col] = [f"{v:.2f}" for v in values]
        elif col == "age":
            out[col] = [f"{v:.0f}" for v in values]
        elif values.dtype.kind == "f":
            out[col] = ["" if pd.isna(v) else f"{v:.0f}" for v in values]
        else:
            out[col] = [
                "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
                for v in values
            ]
    buffer = io.StringIO()
    out.to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue()


def _parse_csv_text(text: str) -> pd.DataFrame:
    raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    return validate_cohort(raw, "reconstructed cohort")


def reconstruct(
    published: Published,
    seed: int,
    *,
    settings: SearchSettings | None = None,
    statistics: StatisticsFn | None = None,
    progress: Callable[[str], None] | None = None,
) -> Reconstruction:
    """Build the synthetic cohort for ``seed`` (deterministic: same seed, same bytes)."""
    start = time.perf_counter()
    cpu_start = time.process_time()
    settings = settings or SearchSettings()
    if statistics is None:
        statistics = _default_statistics()[0]
    say = progress or (lambda _msg: None)
    rng = np.random.default_rng(seed)
    spec, readings = build_spec(published, rng)
    say(f"generative model: {spec.n} synthetic patients ({spec.n_tma} on the TMA), seed {seed}")
    frames = [draw_outcomes(draw_covariates(spec, rng), spec, rng) for _ in range(settings.chains)]
    targets = calibration_targets(
        sorted(statistics(frames[0])), published, contradicted_keys(published)
    )
    loss = make_loss(targets, statistics)
    low, high = spec.followup_range
    say(
        f"annealing {settings.iterations} moves over times and assignments in "
        f"{settings.chains} chains (halved at each stage) against {len(targets)} calibrated "
        "targets"
    )
    result = anneal(frames, loss, Bounds(low, high), rng, settings, progress=say)
    best = result.frame
    reassign_met_sites(best, spec, rng)
    final = finalise(best, rng)
    text = cohort_csv(final)
    typed = _parse_csv_text(text)
    say(
        f"loss {result.initial_loss:.1f} -> {result.loss:.1f} in {result.evaluations} "
        f"evaluations ({result.seconds:.1f} s)"
    )
    return Reconstruction(
        text,
        typed,
        seed,
        targets,
        readings,
        result,
        time.perf_counter() - start,
        time.process_time() - cpu_start,
    )


def run_cli(args: argparse.Namespace) -> int:
    """Handler of ``vlms reconstruct``."""
    published = load_published(args.published)

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    fast, reference = _default_statistics()
    rec = reconstruct(published, int(args.seed), statistics=fast, progress=say)
    say("computing the calibration report (lifelines path)")
    values = reference(rec.frame)
    rows = calibration_rows(rec.targets, values)
    counts = check_counts(rec.frame, published)
    # everything is rendered before anything is written: a failure leaves no partial output
    markdown, payload = render_reports(rec, rows, counts, published, values)
    json.dumps(payload, default=None)  # fails here, not halfway through the writes
    example = example_csv(rec.frame)
    write_text(Path(args.out), rec.csv_text)
    write_text(Path(args.out).with_name(EXAMPLE_NAME), example)
    md, js = write_reports(Path(args.out_dir), markdown, payload)
    met = sum(r.met for r in rows)
    counts_met = sum(c.met for c in counts if c.published is not None)
    counts_n = sum(c.published is not None for c in counts)
    print(f"wrote {args.out} ({len(rec.frame)} synthetic patients, seed {rec.seed}) and {md}, {js}")
    print(
        f"calibrated targets met: {met}/{len(rows)}; exact counts met: {counts_met}/{counts_n}; "
        f"{rec.seconds:.1f} s wall, {rec.cpu_seconds:.1f} s CPU"
    )
    return 0


__all__ = [
    "COLUMNS",
    "MONTHS_PER_YEAR",
    "Reconstruction",
    "cohort_csv",
    "make_loss",
    "reconstruct",
    "robust_square",
    "run_cli",
]
