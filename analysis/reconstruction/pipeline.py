"""``vlms reconstruct``: an ensemble of synthetic cohorts, each consistent with the paper.

No patient-level data from the study is public. The reconstruction treats the paper as a set of
rounded summaries of one unknown cohort and draws cohorts from their posterior:

1. :mod:`analysis.reconstruction.targets` reads the paper's numbers (``data/published.toml``):
   the exact counts (dealt, never sampled), the readings chosen where the paper contradicts
   itself, and the calibrated statistics at their printed rounding, widened or released by
   the audit's findings (:mod:`analysis.reconstruction.widening`);
2. :mod:`analysis.reconstruction.generative` is a model of a surgical series with its own
   priors (accrual and cut-off dates, independent loss to follow-up, proportional hazards,
   recurrence types, disease death only after recurrence, life-table background mortality);
3. :mod:`analysis.reconstruction.sampler` runs one annealed ABC-MCMC chain per member
   (:mod:`analysis.reconstruction.member`), side by side on a Dask scheduler or a local fork
   pool (:mod:`analysis.reconstruction.ensemble`);
4. :mod:`analysis.reconstruction.report` writes ``reports/calibration.{md,json}``.

Outputs: ``data/cohorts.csv`` (every member, the cohort schema plus ``reconstruction`` = 1..M),
``data/cohort.csv`` (one member, see :func:`analysis.reconstruction.ensemble.choose_member`),
beside it ``example.csv`` (that member as a flat survival table for ``vlms check/fit --data``,
:func:`analysis.cohort.example_table`) and the report. A seed gives the same files byte for
byte, whatever the workers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.cohort import EXAMPLE_NAME, example_csv
from analysis.core.atomic import together, write_text
from analysis.core.errors import VlmsInputError
from analysis.core.tables import json_safe
from analysis.paper.published import load_published
from analysis.reconstruction.ensemble import cohorts_csv, reconstruct_ensemble
from analysis.reconstruction.report import build_payload, render_markdown, write_reports
from analysis.reconstruction.sampler import ChainSettings

DEFAULT_MEMBERS = 30
HOLD_SHARE = 0.1
"""Share of the iterations spent at the final kernel when ``--iterations`` sets the length."""


def settings_for(iterations: int | None) -> ChainSettings:
    """The default chain, or one of ``iterations`` steps (the last tenth at the final kernel)."""
    if iterations is None:
        return ChainSettings()
    hold = int(iterations * HOLD_SHARE)
    return ChainSettings(anneal=iterations - hold, hold=hold)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse arguments that cannot work (exit 2 through VlmsInputError)."""
    if args.members < 1:
        raise VlmsInputError("--members must be at least 1")
    if args.workers < 0:
        raise VlmsInputError("--workers must be 0 or more")
    if args.iterations is not None and args.iterations < 10:
        raise VlmsInputError("--iterations must be at least 10")


def run_cli(args: argparse.Namespace) -> int:
    """Handler of ``vlms reconstruct``."""
    if args.members is None:
        args.members = DEFAULT_MEMBERS
    check_arguments(args)
    published = load_published(args.published)
    settings = settings_for(args.iterations)
    where = (
        f"Dask scheduler {args.scheduler}"
        if args.scheduler
        else (f"{args.workers} local processes" if args.workers > 1 else "this process")
    )
    _stderr(
        f"vlms reconstruct: {args.members} members, seed {args.seed}, {settings.iterations} "
        f"iterations each, on {where}"
    )
    ensemble = reconstruct_ensemble(
        published,
        int(args.seed),
        int(args.members),
        settings=settings,
        workers=int(args.workers),
        scheduler=args.scheduler,
        progress=_stderr,
    )
    _stderr("writing the cohorts and the calibration report")
    # everything is rendered before anything is written: a failure leaves no partial output
    payload = json_safe(build_payload(ensemble, published))
    markdown = render_markdown(payload)
    ensemble_text = cohorts_csv(ensemble)
    chosen = ensemble.member(ensemble.chosen)
    example = example_csv(chosen.frame())
    with together():  # the ensemble, its chosen member, the example and the report, or none
        write_text(Path(args.ensemble_out), ensemble_text)
        write_text(Path(args.out), chosen.csv_text)
        write_text(Path(args.out).with_name(EXAMPLE_NAME), example)
        md, js = write_reports(Path(args.out_dir), markdown, payload)
    s = payload["plausibility"]
    print(
        f"wrote {args.ensemble_out} ({len(ensemble.members)} members), {args.out} (member "
        f"{ensemble.chosen}), {md} and {js}"
    )
    print(
        f"mean share of sampled statistics within tolerance "
        f"{100 * payload['summary']['targets_share_within_tolerance_mean']:.0f}%; every "
        f"plausibility check passed by {100 * s['passes_every_check']:.0f}% of members; "
        f"{payload['timing']['member_cpu_seconds_median']:.1f} s CPU per member (median), "
        f"{ensemble.wall_seconds:.0f} s wall"
    )
    return 0
