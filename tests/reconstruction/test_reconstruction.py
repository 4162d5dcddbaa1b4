"""The synthetic cohort: exact counts, determinism, moves that keep the rules, the targets'
tolerances, the schema document, and the committed data/cohort.csv."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.cohort import COLUMNS, load_cohort, validate_cohort
from analysis.paper.published import load_published
from analysis.reconstruction.model import draw_covariates, draw_outcomes, reassign_met_sites
from analysis.reconstruction.pipeline import (
    MISS_STEP,
    cohort_csv,
    make_loss,
    reconstruct,
    robust_square,
)
from analysis.reconstruction.report import (
    SCHEMA_BEGIN,
    SCHEMA_END,
    calibration_rows,
    link_findings,
    schema_table,
)
from analysis.reconstruction.search import Bounds, Moves, SearchSettings
from analysis.reconstruction.targets import (
    COUNTERS,
    RANK_WEIGHT,
    build_spec,
    calibration_targets,
    check_counts,
    make_target,
)

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = ROOT / "data" / "published.toml"
COHORT = ROOT / "data" / "cohort.csv"
FEW = SearchSettings(stages=((2, 20), (1, 40)), report_every=1000)

# Counts the reconstruction cannot reproduce, by the readings it documents (see data/README.md)
READING_MISSES = {
    "table1.all.treatment.surgery_alone",
    "text.treatment.surgery_alone",
    "table1.tma.primary_surgery.outside",
}


@pytest.fixture(scope="module")
def published():
    return load_published(PUBLISHED)


def _cheap_statistics(df: pd.DataFrame) -> dict[str, float]:
    """A stand-in statistics function for tests of the machinery (not the paper's)."""
    return {
        "text.followup.median_years": float(np.median(df["followup_months"]) / 12),
        "text.dss.overall.rate_5y": float((df["vital_status"] != "dead_disease").mean()),
    }


@pytest.fixture(scope="module")
def quick(published):
    """Two short reconstructions (the paper's statistics, few moves) with the same seed and one
    with another seed."""
    a = reconstruct(published, 7, settings=FEW)
    b = reconstruct(published, 7, settings=FEW)
    c = reconstruct(published, 8, settings=FEW)
    return a, b, c


def test_search_with_a_plugged_statistics_function(published) -> None:
    rec = reconstruct(published, 9, settings=FEW, statistics=_cheap_statistics)
    assert {t.name for t in rec.targets} == set(_cheap_statistics(rec.frame))
    assert rec.search.loss <= rec.search.initial_loss


def _count_misses(df: pd.DataFrame, published) -> set[str]:
    return {c.key for c in check_counts(df, published) if c.published is not None and not c.met}


def test_exact_counts_hold(quick, published) -> None:
    a, _, _ = quick
    assert _count_misses(a.frame, published) == READING_MISSES
    checked = {c.key for c in check_counts(a.frame, published)}
    assert len(checked) > 100  # every Table 1 row of both columns and the text counts


def test_same_seed_same_bytes(quick) -> None:
    a, b, _ = quick
    assert a.csv_text == b.csv_text


def test_other_seed_other_cohort_same_counts(quick, published) -> None:
    a, _, c = quick
    assert a.csv_text != c.csv_text
    assert _count_misses(c.frame, published) == READING_MISSES


def test_written_cohort_is_valid_and_labelled(quick, tmp_path: Path) -> None:
    a, _, _ = quick
    path = tmp_path / "cohort.csv"
    path.write_text(a.csv_text)
    df = load_cohort(path)
    assert list(df.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert (df["synthetic"] == "1").all()
    assert df["patient_id"].str.fullmatch(r"SYN-\d{3}").all()


def test_age_and_followup_extremes_exact(quick, published) -> None:
    a, _, _ = quick
    df = a.frame
    for col, sub in (("all", df), ("tma", df[df["tma"] == 1])):
        e = published.get(f"table1.{col}.age.median")
        assert (sub["age"].min(), sub["age"].median(), sub["age"].max()) == (
            e.lower,
            e.value,
            e.upper,
        )
    f = published.get("text.followup.median_years")
    assert df["followup_months"].min() == pytest.approx(f.lower * 12, abs=1e-9)
    assert df["followup_months"].max() == pytest.approx(f.upper * 12, abs=1e-9)


def test_moves_keep_counts_and_rules(published) -> None:
    rng = np.random.default_rng(3)
    spec, _ = build_spec(published, rng)
    df = draw_outcomes(draw_covariates(spec, rng), spec, rng)
    before = {k: f(df) for k, f in COUNTERS.items() if not k.startswith("text.metastasis")}
    low, high = spec.followup_range
    moves = Moves(df, Bounds(low, high), rng)
    kinds = set()
    for _ in range(3000):
        kind, undo = moves.propose()
        if undo is not None:
            kinds.add(kind)
            if rng.random() < 0.3:
                undo()
    assert kinds == {k for k, _ in moves.kinds}
    after = {k: f(df) for k, f in COUNTERS.items() if not k.startswith("text.metastasis")}
    assert after == before
    assert df["followup_months"].min() == low
    assert df["followup_months"].max() == high
    reassign_met_sites(df, spec, rng)  # the pipeline re-deals sites after the search
    for site in ("lung", "liver", "bone", "abdomen", "other"):
        assert COUNTERS[f"text.metastasis.{site}"](df) == published.value(f"text.metastasis.{site}")
    df["patient_id"] = [f"SYN-{i:03d}" for i in range(len(df))]
    text = cohort_csv(df[list(COLUMNS)])
    validate_cohort(pd.read_csv(pd.io.common.StringIO(text), dtype=str, keep_default_na=False), "x")


def test_undo_restores_the_state(published) -> None:
    rng = np.random.default_rng(4)
    spec, _ = build_spec(published, rng)
    df = draw_outcomes(draw_covariates(spec, rng), spec, rng)
    reference = df.copy()
    moves = Moves(df, Bounds(*spec.followup_range), rng)
    for _ in range(500):
        _, undo = moves.propose()
        if undo is not None:
            undo()
    pd.testing.assert_frame_equal(df, reference)


def test_tolerances(published) -> None:
    hr = make_target("table2.dss.igf1r.hr", published)
    assert hr.rank == 2 and hr.scale == "rel"
    assert hr.discrepancy(hr.published * 1.15) == pytest.approx(1.0)
    p = make_target("table2.dss.igf1r.hr:p", published)
    assert p.rank == 4
    assert p.discrepancy(p.published * 2) == pytest.approx(1.0)
    assert p.discrepancy(p.published / 2) == pytest.approx(-1.0)
    rate = make_target("text.dss.overall.rate_5y", published)
    assert rate.discrepancy(rate.published + 0.03) == pytest.approx(1.0)
    med = make_target("text.recurrence.median_months.local", published)
    assert med.discrepancy(med.published - 1.5) == pytest.approx(-1.0)
    fu = make_target("text.followup.median_years", published)
    assert fu.discrepancy(fu.published + 1.5 / 12) == pytest.approx(1.0)
    ci = make_target("table2.dss.igf1r.hr:upper", published)
    assert ci.rank == 4 and ci.kind == "ci"
    assert make_target("table2.rfs.igf1r.negative.median_months", published) is None  # missing
    assert math.isinf(med.discrepancy(math.nan))


def test_robust_loss() -> None:
    assert robust_square(0.5) == pytest.approx(0.25)
    assert robust_square(1.5) == pytest.approx(2.25 + MISS_STEP)  # a miss costs a step
    assert robust_square(-3.0) == pytest.approx(8.0 + MISS_STEP)  # linear beyond 2
    assert robust_square(math.inf) == robust_square(1e9)


def test_loss_weights_ranks(published) -> None:
    names = ["table2.dss.igf1r.hr", "table2.dss.igf1r.hr:p"]
    targets = calibration_targets(names, published)
    loss = make_loss(
        targets, lambda df: {"table2.dss.igf1r.hr": 2.74 * 1.075, "table2.dss.igf1r.hr:p": 0.08}
    )
    # z = 0.5 for the HR (7.5% off, met); z = 2 for the P value (4 times the published, missed)
    expected = RANK_WEIGHT[2] * 0.25 + targets[1].weight * (4.0 + MISS_STEP)
    assert loss(pd.DataFrame()) == pytest.approx(expected)


def test_misses_are_linked_or_flagged(published) -> None:
    targets = calibration_targets(["text.dss.overall.rate_5y"], published)
    rows = calibration_rows(targets, {"text.dss.overall.rate_5y": 0.2})
    link_findings(rows, [], [], published)
    assert not rows[0].met
    assert rows[0].reason  # either audit findings or an explicit UNEXPLAINED flag


def test_data_readme_schema_table_matches_schema() -> None:
    text = (ROOT / "data" / "README.md").read_text(encoding="utf-8")
    start = text.index(SCHEMA_BEGIN) + len(SCHEMA_BEGIN)
    end = text.index(SCHEMA_END)
    assert text[start:end].strip() == schema_table()
    assert "synthetic" in text.lower()


@pytest.mark.skipif(not COHORT.exists(), reason="data/cohort.csv not generated yet")
def test_committed_cohort(published) -> None:
    df = load_cohort(COHORT)
    assert len(df) == published.value("table1.all.n")
    assert _count_misses(df, published) == READING_MISSES
    assert (df["synthetic"] == "1").all()


@pytest.mark.skipif(not COHORT.exists(), reason="data/cohort.csv not generated yet")
def test_committed_cohort_calibration_agrees_with_check_and_is_explained(published) -> None:
    from analysis.frequentist.paper_analyses import paper_statistics, paper_table

    df = load_cohort(COHORT)
    values = paper_statistics(df, fast=False)
    targets = calibration_targets(sorted(values), published)
    rows = calibration_rows(targets, values)
    table = paper_table(df, published).set_index("key")
    for row in rows:
        t = row.target
        column = {"value": "computed", "lower": "lower", "upper": "upper", "p": "p"}[t.field]
        if t.key in table.index:
            assert table.loc[t.key, column] == pytest.approx(row.computed, nan_ok=True)
    # every HR point estimate is met; every miss is explained by an audit finding
    assert all(r.met for r in rows if r.target.rank == 2)
    link_findings(rows, check_counts(df, published), [], published)
    unexplained = [r.target.name for r in rows if not r.met and not r.findings]
    assert unexplained == []


def test_contradicted_confidence_limits_weigh_less(published) -> None:
    names = ["table2.dss.igf1r.hr", "table2.dss.igf1r.hr:p", "text.hr.surgery_radiation_dss:p"]
    targets = {
        t.name: t for t in calibration_targets(names, published, frozenset({"table2.dss.igf1r.hr"}))
    }
    assert targets["table2.dss.igf1r.hr"].weight == RANK_WEIGHT[2]  # points keep their weight
    assert targets["table2.dss.igf1r.hr:p"].weight < RANK_WEIGHT[4]
    assert targets["text.hr.surgery_radiation_dss:p"].weight == RANK_WEIGHT[4]
