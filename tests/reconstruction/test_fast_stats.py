"""The compiled statistics equal ``paper_statistics`` (the one definition) on random cohorts,
including ties, monotone likelihoods and empty groups."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.cohort import validate_cohort
from analysis.frequentist.paper_analyses import paper_statistics
from analysis.reconstruction import fast_stats as fs
from tests.conftest import make_cohort_frame


def _close(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= 1e-8 * max(1.0, abs(b))


def _cohorts() -> list[pd.DataFrame]:
    out = [validate_cohort(make_cohort_frame(63, seed=s, tma_fraction=0.4), "x") for s in range(8)]
    tied = make_cohort_frame(50, seed=11)
    months = tied["followup_months"].astype(float).round(0)  # many ties
    tied["followup_months"] = months.astype(str)
    none = tied["recurrence"] == "none"
    tied.loc[none, "recurrence_months"] = tied.loc[none, "followup_months"]
    rec = tied["recurrence_months"].astype(float).clip(upper=months).round(0)
    tied["recurrence_months"] = rec.astype(str)
    out.append(validate_cohort(tied, "ties"))
    return out


@pytest.mark.parametrize("k", range(9))
def test_compiled_statistics_equal_paper_statistics(k: int) -> None:
    df = _cohorts()[k]
    compiled = fs.statistics(df)
    reference = paper_statistics(df, fast=True)
    bad = {
        n: (compiled[n], reference[n])
        for n in fs.STAT_NAMES
        if not _close(compiled[n], reference[n])
    }
    assert bad == {}


def test_monotone_likelihood_gives_infinite_hr() -> None:
    df = validate_cohort(make_cohort_frame(40, seed=2), "x")
    tma = df["tma"] == 1.0
    dead = df["vital_status"] == "dead_disease"
    # every TMA death in the beta-catenin high group: the HR is infinite, CI and P undefined
    df.loc[tma & dead, "beta_catenin"] = 1.0
    df.loc[tma & ~dead, "beta_catenin"] = 0.0
    compiled = fs.statistics(df)
    assert math.isinf(compiled["table2.dss.beta_catenin.hr"])
    assert math.isnan(compiled["table2.dss.beta_catenin.hr:p"])
    assert (
        paper_statistics(df)["table2.dss.beta_catenin.hr"] == compiled["table2.dss.beta_catenin.hr"]
    )


def test_names_are_paper_statistics_keys() -> None:
    df = validate_cohort(make_cohort_frame(30, seed=1), "x")
    assert set(fs.STAT_NAMES) <= set(paper_statistics(df))
    assert len(fs.STAT_NAMES) == len(set(fs.STAT_NAMES))


def test_statistics_vector_is_pure() -> None:
    df = validate_cohort(make_cohort_frame(30, seed=5), "x")
    a = fs.cohort_arrays(df)
    before = a.fu.copy()
    args = (
        a.rec_t,
        a.rec_type,
        a.fu,
        a.dss_e,
        a.tma,
        a.bcat,
        a.igf,
        a.radiation,
        a.adjuvant,
        a.r0r1,
    )
    first = fs.statistics_vector(*args)
    second = fs.statistics_vector(*args)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(a.fu, before)
