"""Simulated annealing over the individual times and assignments of the synthetic cohort.

The state is a typed cohort frame (as :func:`analysis.cohort.load_cohort` returns). Every move
keeps every exact count and every loader rule: times move within the published follow-up range
(the two patients holding its ends stay there), a recurrence stays before the end of follow-up,
and categories are only ever swapped between two patients of the same block, so per-block
counts never change. The loss is computed by a caller-supplied function of the frame (the
paper's statistics, see :mod:`analysis.reconstruction.pipeline`); the search knows nothing about
them.

Deterministic: one ``numpy.random.Generator`` drives every choice, and the number of
iterations is fixed (never a wall-clock budget).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

TIME_RESOLUTION = 0.01
"""Times are kept on a 0.01-month grid (what the CSV stores), so the file is the state."""
MIN_RECURRENCE_MONTHS = 0.5

Undo = Callable[[], None]


@dataclass
class SearchSettings:
    """Fixed schedule of the annealing: successive halving of independent chains.

    ``stages``: (chains still running, iterations each) per stage. Every chain starts from its
    own draw of the generative model; after each stage only the best chains (lowest loss seen)
    go on, from their best state. The temperature and the size of the time steps fall
    geometrically over a chain's whole life (coarse to fine).
    """

    stages: tuple[tuple[int, int], ...] = ((6, 1000), (3, 1000), (1, 6000))
    temperature_start: float = 5.0
    temperature_end: float = 0.005
    step_start: float = 0.35  # sd of the log-time jitter
    step_end: float = 0.02
    report_every: int = 1000

    @property
    def chains(self) -> int:
        """Chains at the start."""
        return self.stages[0][0]

    @property
    def chain_iterations(self) -> int:
        """Iterations in the life of the chain that runs to the end."""
        return sum(n for _, n in self.stages)

    @property
    def iterations(self) -> int:
        """Proposals over all chains."""
        return sum(k * n for k, n in self.stages)


@dataclass
class SearchResult:
    """The best state found and the trace of the search."""

    frame: pd.DataFrame
    loss: float
    initial_loss: float
    evaluations: int
    accepted: int
    seconds: float
    trace: list[tuple[int, float]] = field(default_factory=list)


@dataclass(frozen=True)
class Bounds:
    """The follow-up range; the patients at its ends stay there (whoever they are)."""

    low: float
    high: float


def _round(x: float) -> float:
    return round(x / TIME_RESOLUTION) * TIME_RESOLUTION


class Moves:
    """Proposal moves on a cohort frame; each mutates it in place and returns an undo."""

    def __init__(self, frame: pd.DataFrame, bounds: Bounds, rng: np.random.Generator) -> None:
        self.df = frame
        self.bounds = bounds
        self.rng = rng
        tma = frame["tma"].to_numpy() == 1.0
        self.blocks = [np.flatnonzero(tma), np.flatnonzero(~tma)]
        self.tma_rows = self.blocks[0]
        self.extremity = frame["site"].isin(["saphenous_femoral", "upper_extremity"]).to_numpy()
        self.step = 0.3
        self.kinds: list[tuple[str, float]] = [
            ("recurrence_time", 0.25),
            ("followup_time", 0.20),
            ("shift_patient", 0.10),
            ("vital_status", 0.12),
            ("swap_outcomes", 0.12),
            ("swap_recurrence_type", 0.04),
            ("swap_recurrence_time", 0.04),
            ("swap_marker", 0.07),
            ("swap_treatment", 0.05),
            ("swap_margin", 0.03),
            ("redraw_story", 0.05),
        ]
        weights = np.array([w for _, w in self.kinds])
        self.cum = np.cumsum(weights / weights.sum())

    # ------------------------------------------------------------------ helpers
    def _get(self, row: int, col: str) -> object:
        return self.df.at[row, col]

    def _set_many(self, changes: list[tuple[int, str, object]]) -> Undo:
        old = [(r, c, self.df.at[r, c]) for r, c, _ in changes]
        for r, c, v in changes:
            self.df.at[r, c] = v

        def undo() -> None:
            for r, c, v in reversed(old):
                self.df.at[r, c] = v

        return undo

    def _recurred(self, row: int) -> bool:
        return self._get(row, "recurrence") != "none"

    def _pins_range_end(self, row: int) -> bool:
        """True when ``row`` is the only patient at an end of the follow-up range: it stays
        there, so the published range holds."""
        old = float(self._get(row, "followup_months"))
        follow = self.df["followup_months"].to_numpy()
        return any(
            old == end and int((follow == end).sum()) == 1
            for end in (self.bounds.low, self.bounds.high)
        )

    # ------------------------------------------------------------------ moves
    def propose(self) -> tuple[str, Undo | None]:
        """One random move; ``None`` undo when the move was impossible (nothing changed)."""
        kind = self.kinds[int(np.searchsorted(self.cum, self.rng.random()))][0]
        return kind, getattr(self, f"_move_{kind}")()

    def _jitter(self, value: float) -> float:
        return value * math.exp(self.step * self.rng.standard_normal())

    def _move_recurrence_time(self) -> Undo | None:
        rows = np.flatnonzero(self.df["recurrence"].to_numpy() != "none")
        row = int(self.rng.choice(rows))
        follow = float(self._get(row, "followup_months"))
        new = _round(
            min(
                max(
                    self._jitter(float(self._get(row, "recurrence_months"))), MIN_RECURRENCE_MONTHS
                ),
                follow,
            )
        )
        changes: list[tuple[int, str, object]] = [(row, "recurrence_months", new)]
        if new > follow:
            return None
        return self._set_many(changes)

    def _move_followup_time(self) -> Undo | None:
        row = int(self.rng.integers(len(self.df)))
        if self._pins_range_end(row):
            return None
        old = float(self._get(row, "followup_months"))
        new = _round(min(max(self._jitter(old), self.bounds.low), self.bounds.high))
        if self._recurred(row):
            rec = float(self._get(row, "recurrence_months"))
            if new < rec:
                # the recurrence moves with the end of follow-up, keeping its share of it
                rec = _round(max(MIN_RECURRENCE_MONTHS, rec * new / old))
            return self._set_many(
                [(row, "followup_months", new), (row, "recurrence_months", min(rec, new))]
            )
        return self._set_many([(row, "followup_months", new), (row, "recurrence_months", new)])

    def _move_shift_patient(self) -> Undo | None:
        """Scale a patient's recurrence and follow-up times together (same story, earlier or
        later)."""
        row = int(self.rng.integers(len(self.df)))
        if self._pins_range_end(row):
            return None
        old = float(self._get(row, "followup_months"))
        factor = math.exp(self.step * self.rng.standard_normal())
        new = _round(min(max(old * factor, self.bounds.low), self.bounds.high))
        rec = float(self._get(row, "recurrence_months"))
        new_rec = (
            new
            if not self._recurred(row)
            else _round(min(max(rec * new / old, MIN_RECURRENCE_MONTHS), new))
        )
        return self._set_many([(row, "followup_months", new), (row, "recurrence_months", new_rec)])

    def _move_vital_status(self) -> Undo | None:
        """Death from disease on or off for a patient who recurred (deaths from other causes
        and the alive stay as the generative model drew them: no statistic tells them apart).

        Half the time the end of follow-up is redrawn with it: a death some months after the
        recurrence, or a censoring anywhere after it (a structured jump, not a small step).
        """
        recurred = np.flatnonzero(self.df["recurrence"].to_numpy() != "none")
        row = int(self.rng.choice(recurred))
        status = self._get(row, "vital_status")
        new = "alive" if status == "dead_disease" else "dead_disease"
        changes: list[tuple[int, str, object]] = [(row, "vital_status", new)]
        if self.rng.random() < 0.5 and not self._pins_range_end(row):
            rec = float(self._get(row, "recurrence_months"))
            if new == "dead_disease":
                when = rec + 24.0 * math.exp(0.8 * self.rng.standard_normal())
            else:
                when = self.rng.uniform(rec, self.bounds.high)
            when = _round(min(max(when, self.bounds.low, rec), self.bounds.high))
            changes.append((row, "followup_months", when))
        return self._set_many(changes)

    def _move_redraw_story(self) -> Undo | None:
        """Redraw one patient's times from scratch (a recurrence anywhere in 2-120 months, then
        a death from disease or a censoring after it): the large jumps small steps cannot make."""
        row = int(self.rng.integers(len(self.df)))
        if self._pins_range_end(row):
            return None
        low, high = self.bounds.low, self.bounds.high
        if not self._recurred(row):
            new = _round(self.rng.uniform(low, high))
            return self._set_many([(row, "followup_months", new), (row, "recurrence_months", new)])
        rec = _round(math.exp(self.rng.uniform(math.log(2.0), math.log(120.0))))
        if self.rng.random() < 0.5:
            status = "dead_disease"
            end = rec + 15.0 * math.exp(0.8 * self.rng.standard_normal())
        else:
            status = str(self._get(row, "vital_status"))
            status = "alive" if status == "dead_disease" else status
            end = self.rng.uniform(rec, high)
        end = _round(min(max(end, low, rec), high))
        return self._set_many(
            [
                (row, "recurrence_months", min(rec, end)),
                (row, "followup_months", end),
                (row, "vital_status", status),
            ]
        )

    def _pair_in_block(self, candidates: np.ndarray | None = None) -> tuple[int, int] | None:
        block = self.blocks[int(self.rng.integers(2))]
        if candidates is not None:
            block = np.intersect1d(block, candidates)
        if block.size < 2:
            return None
        i, j = self.rng.choice(block, size=2, replace=False)
        return int(i), int(j)

    def _swap(self, i: int, j: int, columns: list[str]) -> Undo:
        changes = []
        for c in columns:
            a, b = self.df.at[i, c], self.df.at[j, c]
            changes += [(i, c, b), (j, c, a)]
        return self._set_many(changes)

    def _move_swap_outcomes(self) -> Undo | None:
        pair = self._pair_in_block()
        if pair is None:
            return None
        i, j = pair
        # the ends of the follow-up range travel with their outcome, so the range holds
        cols = ["recurrence", "recurrence_months", "followup_months", "vital_status"]
        return self._swap(i, j, cols)

    def _move_swap_recurrence_type(self) -> Undo | None:
        recurred = np.flatnonzero(self.df["recurrence"].to_numpy() != "none")
        pair = self._pair_in_block(recurred)
        if pair is None:
            return None
        i, j = pair
        if self._get(i, "recurrence") == self._get(j, "recurrence"):
            return None
        return self._swap(i, j, ["recurrence"])

    def _move_swap_recurrence_time(self) -> Undo | None:
        """Exchange the recurrence times of two recurrences of the same block (each still
        before its own end of follow-up)."""
        recurred = np.flatnonzero(self.df["recurrence"].to_numpy() != "none")
        pair = self._pair_in_block(recurred)
        if pair is None:
            return None
        i, j = pair
        ti, tj = (float(self._get(r, "recurrence_months")) for r in (i, j))
        if tj > float(self._get(i, "followup_months")) or ti > float(
            self._get(j, "followup_months")
        ):
            return None
        return self._set_many([(i, "recurrence_months", tj), (j, "recurrence_months", ti)])

    def _move_swap_marker(self) -> Undo | None:
        marker = "beta_catenin" if self.rng.random() < 0.5 else "igf1r"
        i, j = (int(v) for v in self.rng.choice(self.tma_rows, size=2, replace=False))
        if self._get(i, marker) == self._get(j, marker):
            return None
        return self._swap(i, j, [marker])

    def _move_swap_treatment(self) -> Undo | None:
        pair = self._pair_in_block()
        if pair is None:
            return None
        i, j = pair
        if self.extremity[i] != self.extremity[j]:
            return None  # keeps the published count of radiated extremity lesions
        if self._get(i, "treatment") == self._get(j, "treatment"):
            return None
        return self._swap(i, j, ["treatment", "chemotherapy", "radiation"])

    def _move_swap_margin(self) -> Undo | None:
        pair = self._pair_in_block()
        if pair is None:
            return None
        i, j = pair
        if self._get(i, "margin") == self._get(j, "margin"):
            return None
        return self._swap(i, j, ["margin"])


@dataclass
class _Chain:
    """One annealing chain: its state, moves, current and best loss."""

    index: int
    moves: Moves
    current: float
    best: float
    best_frame: pd.DataFrame
    age: int = 0


def _run_chain(
    chain: _Chain,
    iterations: int,
    loss: Callable[[pd.DataFrame], float],
    settings: SearchSettings,
    rng: np.random.Generator,
    counters: dict[str, int],
) -> None:
    df = chain.moves.df
    life = max(1, settings.chain_iterations)
    t0, t1 = settings.temperature_start, settings.temperature_end
    s0, s1 = settings.step_start, settings.step_end
    for _ in range(iterations):
        chain.age += 1
        frac = min(1.0, chain.age / life)
        temperature = t0 * (t1 / t0) ** frac
        chain.moves.step = s0 * (s1 / s0) ** frac
        _, undo = chain.moves.propose()
        if undo is None:
            continue
        value = loss(df)
        counters["evaluations"] += 1
        delta = value - chain.current
        if delta <= 0 or rng.random() < math.exp(-delta / temperature):
            chain.current = value
            counters["accepted"] += 1
            if value < chain.best:
                chain.best, chain.best_frame = value, df.copy()
        else:
            undo()


def anneal(
    frames: list[pd.DataFrame],
    loss: Callable[[pd.DataFrame], float],
    bounds: Bounds,
    rng: np.random.Generator,
    settings: SearchSettings,
    progress: Callable[[str], None] | None = None,
) -> SearchResult:
    """Minimise ``loss`` by simulated annealing over the moves of :class:`Moves`, one chain per
    starting frame, halving the chains between stages (see :class:`SearchSettings`).

    Deterministic: the chains run one after the other, all driven by ``rng``.
    """
    start = time.perf_counter()
    if len(frames) != settings.chains:
        raise ValueError(f"{settings.chains} starting frames needed, got {len(frames)}")
    chains = []
    for i, frame in enumerate(frames):
        df = frame.copy()
        value = loss(df)
        chains.append(_Chain(i, Moves(df, bounds, rng), value, value, df.copy()))
    initial = min(c.current for c in chains)
    counters = {"evaluations": len(chains), "accepted": 0}
    trace: list[tuple[int, float]] = [(0, initial)]
    done = 0
    for stage, (keep, iterations) in enumerate(settings.stages):
        chains = sorted(chains, key=lambda c: (c.best, c.index))[:keep]
        for c in chains:  # each surviving chain goes on from its best state
            c.moves.df = c.best_frame.copy()
            c.current = c.best
        step = max(1, settings.report_every)
        for lo in range(0, iterations, step):
            n = min(step, iterations - lo)
            for c in chains:
                _run_chain(c, n, loss, settings, rng, counters)
            done += n
            best = min(c.best for c in chains)
            trace.append((done, best))
            if progress is not None:
                progress(
                    f"  stage {stage + 1}/{len(settings.stages)} ({len(chains)} chain"
                    f"{'s' if len(chains) > 1 else ''}), step {done:>6}/"
                    f"{settings.chain_iterations}: best loss "
                    + ", ".join(f"{c.best:.1f}" for c in chains)
                    + f"; {time.perf_counter() - start:5.1f} s"
                )
    winner = min(chains, key=lambda c: (c.best, c.index))
    return SearchResult(
        winner.best_frame,
        winner.best,
        initial,
        counters["evaluations"],
        counters["accepted"],
        time.perf_counter() - start,
        trace,
    )
