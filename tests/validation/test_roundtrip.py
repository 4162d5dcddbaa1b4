"""Round-trip validation: the independent simulator, the synthetic paper, the unprinted
quantities, coverage, and a tiny end-to-end run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from analysis import cohort as ch
from analysis.frequentist import estimators as fq
from analysis.frequentist.paper_analyses import paper_statistics
from analysis.paper.published import load_published
from analysis.reconstruction.sampler import ChainSettings
from analysis.reconstruction.targets import COUNTERS, build_spec
from analysis.validation import roundtrip as rt

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def real():
    return load_published(ROOT / "data" / "published.toml")


@pytest.fixture(scope="module")
def truth(real):
    rng = np.random.default_rng(4)
    spec, _ = build_spec(real, rng)
    df, params = rt.simulate_truth(spec, rng)
    return df, params


def test_simulated_truth_is_a_valid_cohort(truth) -> None:
    df, params = truth  # parse_csv_text applied every loader rule already
    assert len(df) == 63
    assert not ((df["vital_status"] == "dead_disease") & (df["recurrence"] == "none")).any()
    assert (df["recurrence"] != "none").sum() > 10
    assert np.isclose(params.type_probs.sum(), 1.0)


def test_synthetic_paper_prints_the_truth_as_the_paper_rounds(real, truth) -> None:
    df, _ = truth
    paper = rt.synthetic_paper(real, df)
    values = paper_statistics(df, fast=False)
    for key, fld in (("text.dss.overall.rate_5y", "value"), ("table2.dss.igf1r.hr", "upper"),
                     ("text.recurrence.median_months.distant", "value"),
                     ("table2.rfs.beta_catenin.hr", "p")):  # fmt: skip
        name = key if fld == "value" else f"{key}:{fld}"
        printed = getattr(paper.get(key), fld)
        digits = real.get(key).digits(fld)
        if math.isfinite(values[name]) and round(values[name], digits) > 0:
            assert printed == pytest.approx(round(values[name], digits))
    for key in ("table1.all.recurrence.local_only", "table1.tma.recurrence.distant_only",
                "text.recurrence.any", "text.metastasis.lung"):  # fmt: skip
        assert paper.value(key) == COUNTERS[key](df)
    distant = df["recurrence"].isin(["distant", "local_distant"]).sum()
    assert paper.get("text.metastasis.lung").denominator == distant
    # repeats follow the number they repeat; covariate rows are the paper's
    assert paper.get("abstract.dss.rate_5y").value == paper.get("text.dss.overall.rate_5y").value
    assert paper.value("table1.all.sex.female") == real.value("table1.all.sex.female")
    assert paper.value("table2.rfs.beta_catenin.positive.n") == real.value(
        "table2.rfs.beta_catenin.positive.n"
    )


def test_quantities_match_the_reference_estimators(truth) -> None:
    df, _ = truth
    q = rt.quantities(df)
    assert set(q) == set(rt.QUANTITIES)
    tma = df[df["tma"] == 1.0]
    t, e = ch.dss(tma)
    km = fq.kaplan_meier(t, e, [36.0])
    assert q["dss_tma_36m"] == pytest.approx(km.survival[0])
    fit = fq.cox(
        t, e, {m: tma[m].to_numpy(float) for m in ("beta_catenin", "igf1r")}, term_lr=False
    )
    assert q["dss_two_marker.igf1r"] == pytest.approx(fit.terms["igf1r"].hr, rel=1e-6)
    # distant first recurrence (types 2 and 3) against lifelines' Aalen-Johansen, with local
    # first recurrence the competing event
    from lifelines import AalenJohansenFitter

    time_, cause = ch.first_recurrence(df)
    grouped = np.where(np.isin(cause, (2, 3)), 1, np.where(cause > 0, 2, 0))
    ajf = AalenJohansenFitter(calculate_variance=False).fit(time_, grouped, event_of_interest=1)
    expected = float(ajf.cumulative_density_.iloc[:, 0].asof(24.0))
    assert 0.0 < expected < 1.0
    assert q["cif_distant_24m"] == pytest.approx(expected, abs=1e-6)


def test_interval_and_coverage() -> None:
    values = list(np.arange(1, 20, dtype=float))  # 19 members: minimum to maximum
    assert rt.interval(values) == (1.0, 19.0)
    assert rt.nominal(19) == pytest.approx(0.9)
    assert rt.interval(list(np.arange(1, 40, dtype=float))) == (2.0, 38.0)
    assert rt.nominal(39) == pytest.approx(0.9)
    lo, hi = rt.interval(values)
    assert rt.covered(5.0, (lo, hi)) is True
    assert rt.covered(20.0, (lo, hi)) is False
    assert rt.covered(math.nan, (lo, hi)) is None
    assert rt.interval([1.0, 2.0, math.inf])[1] == math.inf
    assert rt.interval([math.nan, 1.0, 2.0]) == (1.0, 2.0)


def test_order_statistic_range_holds_a_further_draw_at_its_nominal_rate() -> None:
    rng = np.random.default_rng(0)
    hits = [
        rt.covered(float(d[-1]), rt.interval(list(d[:-1]))) for d in rng.normal(size=(4000, 20))
    ]
    assert np.mean(hits) == pytest.approx(0.9, abs=0.015)


def test_tiny_round_trip_runs_end_to_end(real) -> None:
    doc = rt.run_roundtrip(real, 5, 1, 2, ChainSettings(anneal=300, hold=100), workers=1,
                           scheduler=None, log=lambda _m: None)  # fmt: skip
    assert set(doc["coverage"]) == set(rt.QUANTITIES)
    row = doc["rows"][0]
    for q in row["quantities"].values():
        if q["covered"] is not None:
            assert q["covered"] == (q["low"] <= q["true"] <= q["high"])
    text = rt.markdown(doc)
    assert "Coverage" in text and "SYN-" not in text
