"""The paper-reproduction table: its structure, its mapping, and the fast path used by the
reconstruction."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import cohort as ch
from analysis.cli import main
from analysis.frequentist import estimators as fq
from analysis.frequentist import paper_analyses as pc
from tests.conftest import make_cohort_frame

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = ROOT / "data" / "published.toml"
FIXTURE_COHORT = ROOT / "tests" / "fixtures" / "check" / "cohort.csv"


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    return ch.validate_cohort(make_cohort_frame(63, seed=7, tma_fraction=26 / 63), "random")


def test_statistics_cover_every_quantity(cohort: pd.DataFrame) -> None:
    stats = pc.paper_statistics(cohort)
    for q in pc.QUANTITIES:
        assert q.key in stats
        if q.kind == "hr":
            for suffix in (":lower", ":upper", ":p"):
                assert q.key + suffix in stats
        if q.kind == "range":
            assert stats[q.key + ":lower"] <= stats[q.key] <= stats[q.key + ":upper"]


def test_fast_path_equals_lifelines_path(cohort: pd.DataFrame) -> None:
    fast = pc.paper_statistics(cohort, fast=True)
    slow = pc.paper_statistics(cohort, fast=False)
    assert fast.keys() == slow.keys()
    for key, value in slow.items():
        if math.isnan(value):
            assert math.isnan(fast[key]), key
        else:
            assert fast[key] == pytest.approx(value, rel=1e-8, abs=1e-12), key


def test_statistics_follow_the_documented_mapping(cohort: pd.DataFrame) -> None:
    stats = pc.paper_statistics(cohort, fast=False)
    t, e = ch.dss(cohort)
    assert stats["text.dss.overall.rate_1y"] == fq.km_survival_at(t, e, [12.0])[0]
    local = (cohort["recurrence"] == "local").to_numpy()
    rt, re_ = ch.rfs(cohort)
    assert stats["text.recurrence.median_months.local"] == fq.km_median(rt[local], re_[local])
    tma = (cohort["tma"] == 1).to_numpy()
    x = cohort["igf1r"].to_numpy(float)[tma]
    hr = fq.cox(t[tma], e[tma], {"igf1r": x}).terms["igf1r"]
    assert stats["table2.dss.igf1r.hr"] == pytest.approx(hr.hr, rel=1e-12)
    assert stats["table2.dss.igf1r.hr:p"] == pytest.approx(hr.p, rel=1e-12)
    assert stats["text.followup.median_years"] == pytest.approx(
        float(np.median(cohort["followup_months"])) / 12
    )
    assert stats["table2.rfs.igf1r.positive.n"] == float((x == 1).sum())


def test_statistics_do_not_modify_the_cohort(cohort: pd.DataFrame) -> None:
    before = cohort.copy()
    pc.paper_statistics(cohort)
    pd.testing.assert_frame_equal(cohort, before)


def test_table_structure_and_differences(cohort: pd.DataFrame) -> None:
    from analysis.paper.published import load_published

    published = load_published(PUBLISHED)
    table = pc.paper_table(cohort, published)
    for col in (
        "key",
        "quantity",
        "source",
        "published",
        "computed",
        "difference",
        "lower",
        "upper",
        "p",
    ):
        assert col in table.columns
    assert table["key"].tolist() == [q.key for q in pc.QUANTITIES]
    row = table.set_index("key").loc["table2.dss.beta_catenin.hr"]
    assert row["published"] == 5.33 and row["published_upper"] == 29.30
    assert row["difference"] == pytest.approx(row["computed"] - 5.33)
    assert row["source"].startswith("Table 2")
    missing = table.set_index("key").loc["table2.rfs.igf1r.negative.median_months"]
    assert math.isnan(missing["published"]) and "not reported" in missing["note"]
    assert not any("key not in published.toml" in n for n in table["note"])


def test_monotone_hr_is_flagged_in_the_table(cohort: pd.DataFrame) -> None:
    from analysis.paper.published import load_published

    df = cohort.copy()
    tma = df["tma"] == 1
    dead = df["vital_status"] == "dead_disease"
    df.loc[tma, "beta_catenin"] = np.where(dead[tma], 1.0, 0.0)
    df.loc[tma & ~dead, "beta_catenin"] = 0.0
    table = pc.paper_table(df, load_published(PUBLISHED)).set_index("key")
    row = table.loc["table2.dss.beta_catenin.hr"]
    assert row["computed"] == math.inf and row["note"] == pc.MONOTONE_TEXT
    assert math.isnan(row["lower"]) and math.isnan(row["difference"])


def test_make_check_writes_csv_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "check",
            "--cohort",
            str(FIXTURE_COHORT),
            "--out-dir",
            str(tmp_path),
            "--published",
            str(PUBLISHED),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "text.hr.surgery_radiation_dss" in out and "Not in the paper" in out
    csv = pd.read_csv(tmp_path / "tables" / "frequentist.csv")
    keys = csv["key"].tolist()
    assert keys[: len(pc.QUANTITIES)] == [q.key for q in pc.QUANTITIES]
    assert any(k.startswith("extra.cif.local.") for k in keys)
    assert "extra.rmst.dss" in keys
    payload = json.loads((tmp_path / "tables" / "frequentist.json").read_text())
    assert payload["n"] == 63 and len(payload["rows"]) == len(pc.QUANTITIES)
    cif = payload["not_in_paper"]["cif_first_recurrence"]
    assert set(cif) >= {"local", "distant", "local_distant", "any_recurrence"}
    assert payload["not_in_paper"]["rmst"]["dss"]["horizon"] == 60.0


def test_fixture_cohort_is_schema_valid() -> None:
    df = ch.load_cohort(FIXTURE_COHORT)
    assert len(df) == 63


def test_missing_explicit_cohort_is_an_input_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["check", "--cohort", str(tmp_path / "nope.csv"), "--out-dir", str(tmp_path)])
    assert code == 2
    assert "nope.csv" in capsys.readouterr().err
    assert not (tmp_path / "tables").exists()
