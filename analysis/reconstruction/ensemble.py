"""The ensemble: ``M`` members, each an independent chain, run side by side.

Member ``k`` (1..M) depends only on the run's seed and ``k`` (:func:`member.member_seed`), so
the ensemble is the same whatever the number of workers or the scheduler. Each worker also
computes what the report needs from its member (the paper's statistics on the lifelines path,
the plausibility checks), so the parent only assembles.

The single cohort for single-cohort views (``data/cohort.csv``) is the member that passes every
plausibility check and meets the most calibrated targets (ties: the smaller kernel cost, then
the lower number): a member that is both believable and as close to the paper as the ensemble
gets, rather than an average of cohorts (which would not be a cohort).
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.paper.published import Published
from analysis.reconstruction.fast_stats import STAT_NAMES
from analysis.reconstruction.kernel import kernel_targets
from analysis.reconstruction.member import draw_member, parse_csv_text
from analysis.reconstruction.model import CohortSpec
from analysis.reconstruction.parallel_members import run_jobs
from analysis.reconstruction.plausibility import Plausibility, check
from analysis.reconstruction.sampler import ChainResult, ChainSettings, KernelTargets
from analysis.reconstruction.targets import (
    CountCheck,
    Reading,
    Target,
    build_spec,
    check_counts,
)
from analysis.reconstruction.widening import calibration_targets

AGE_NAMES = ("text.age.median", "text.age.median:lower", "text.age.median:upper")


@dataclass
class MemberRecord:
    """One member as the report sees it."""

    index: int
    seed: int
    csv_text: str
    theta: np.ndarray
    values: dict[str, float]  # the paper's statistics, lifelines path
    plausibility: Plausibility
    chain: ChainResult
    cpu_seconds: float  # chain and cohort, one core
    wall_seconds: float
    check_seconds: float  # statistics and plausibility checks

    def frame(self) -> pd.DataFrame:
        """The typed cohort."""
        return parse_csv_text(self.csv_text, f"member {self.index}")

    def met(self, targets: list[Target]) -> dict[str, bool]:
        """Target name -> within tolerance (every target, whatever its status)."""
        return {t.name: t.within(self.values.get(t.name, math.nan)) for t in targets}


@dataclass
class Ensemble:
    """The members and what they were built from."""

    seed: int
    members: list[MemberRecord]
    targets: list[Target]
    readings: list[Reading]
    spec: CohortSpec
    settings: ChainSettings
    chosen: int  # member index (1..M) written to data/cohort.csv
    wall_seconds: float

    def member(self, index: int) -> MemberRecord:
        return next(m for m in self.members if m.index == index)

    def counts(self, published: Published) -> dict[int, list[CountCheck]]:
        """Exact-count checks of every member."""
        return {m.index: check_counts(m.frame(), published) for m in self.members}


def build_member(
    spec: CohortSpec,
    kernel: KernelTargets,
    seed: int,
    index: int,
    settings: ChainSettings,
) -> MemberRecord:
    """Reconstruct one member and compute its statistics and checks (a worker's task)."""
    from analysis.frequentist.paper_analyses import paper_statistics

    member = draw_member(spec, kernel, seed, index, settings)
    start = time.process_time()
    values = paper_statistics(member.frame, fast=False)
    checks = check(member.frame)
    return MemberRecord(
        index,
        member.seed,
        member.csv_text,
        member.theta,
        values,
        checks,
        member.chain,
        member.cpu_seconds,
        member.wall_seconds,
        time.process_time() - start,
    )


def statistic_names() -> list[str]:
    """Every statistic a member is compared on (the compiled ones and the ages)."""
    return [*STAT_NAMES, *AGE_NAMES]


def choose_member(members: list[MemberRecord], targets: list[Target]) -> int:
    """The member for ``data/cohort.csv`` (see the module docstring)."""
    kernel = [t for t in targets if t.in_kernel]

    def key(m: MemberRecord) -> tuple[int, int, float, int]:
        met = sum(m.met(kernel).values())
        return (0 if m.plausibility.passes() else 1, -met, m.chain.penalty, m.index)

    return min(members, key=key).index


def warm_up(spec: CohortSpec, kernel: KernelTargets) -> None:
    """Compile (or load from numba's cache) everything a member runs, in this process, before
    workers fork: a ten-step chain of a member that is thrown away."""
    draw_member(spec, kernel, 0, 0, ChainSettings(anneal=10, hold=0))


def reconstruct_ensemble(
    published: Published,
    seed: int,
    members: int,
    *,
    settings: ChainSettings | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> Ensemble:
    """Reconstruct ``members`` cohorts (deterministic for ``seed``)."""
    start = time.perf_counter()
    settings = settings or ChainSettings()
    say = progress or (lambda _msg: None)
    spec, readings = build_spec(published, np.random.default_rng(seed))
    targets = calibration_targets(statistic_names(), published)
    kernel = kernel_targets(targets)
    warm_up(spec, kernel)
    jobs = [(spec, kernel, seed, k, settings) for k in range(1, members + 1)]

    def report(done: int, record: MemberRecord) -> None:
        met = sum(record.met([t for t in targets if t.in_kernel]).values())
        elapsed = time.perf_counter() - start
        eta = elapsed / done * (members - done)
        plausible = "ok" if record.plausibility.passes() else "NOT ok"
        say(
            f"  member {record.index:>3} done ({done}/{members}): {met}/{kernel.size} "
            f"targets within tolerance, plausibility {plausible}; "
            f"{record.cpu_seconds:.1f} s CPU; elapsed {elapsed:.0f} s, about {eta:.0f} s to go"
        )

    records = run_jobs(build_member, jobs, workers=workers, scheduler=scheduler, progress=report)
    return Ensemble(
        seed,
        records,
        targets,
        readings,
        spec,
        settings,
        choose_member(records, targets),
        time.perf_counter() - start,
    )


def cohorts_csv(ensemble: Ensemble) -> str:
    """``data/cohorts.csv``: every member's rows with a ``reconstruction`` column (1..M)."""
    parts = []
    for m in sorted(ensemble.members, key=lambda r: r.index):
        raw = pd.read_csv(io.StringIO(m.csv_text), dtype=str, keep_default_na=False)
        raw["reconstruction"] = str(m.index)
        parts.append(raw)
    buffer = io.StringIO()
    pd.concat(parts, ignore_index=True).to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue()
