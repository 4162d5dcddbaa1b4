"""Tolerances: the printed rounding, changed by audit findings only in the fields they concern."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from analysis.paper.published import load_published
from analysis.reconstruction.ensemble import statistic_names
from analysis.reconstruction.kernel import kernel_targets, merged
from analysis.reconstruction.targets import make_target
from analysis.reconstruction.widening import (
    RULES,
    apply,
    calibration_targets,
    rule_events,
    rule_rate_labels,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def published():
    return load_published(ROOT / "data" / "published.toml")


@pytest.fixture(scope="module")
def targets(published):
    return {t.name: t for t in calibration_targets(statistic_names(), published)}


@dataclass
class FakeFinding:
    check: str
    severity: str
    keys: tuple[str, ...]
    computation: dict = field(default_factory=dict)
    message: str = "m"
    id: str = "f-1"


def test_rounding_intervals(published) -> None:
    hr = make_target("table2.dss.beta_catenin.hr:upper", published)
    assert hr.rounding == pytest.approx((29.295, 29.305))  # printed "29.30"
    rate = make_target("text.dss.by_recurrence.local.rate_2y", published)
    assert rate.rounding == pytest.approx((0.6665, 0.6675))
    median = make_target("text.recurrence.median_months.local", published)
    assert median.rounding == pytest.approx((42.5, 43.5))
    assert median.within(43.5) and not median.within(43.51)
    assert not median.within(math.nan)
    assert (
        make_target("table2.rfs.igf1r.negative.median_months", published) is None
    )  # "None reported"


def test_statuses_on_the_paper(targets) -> None:
    released = {n for n, t in targets.items() if t.status == "released"}
    assert released == {
        f"table2.{e}.{m}.hr:{f}"
        for e, m in (("rfs", "beta_catenin"), ("rfs", "igf1r"), ("dss", "igf1r"))
        for f in ("lower", "upper", "p")
    }
    widened = {n for n, t in targets.items() if t.status == "widened"}
    assert widened == {
        "table2.dss.beta_catenin.hr:p",
        "text.dss.overall.rate_1y",
        *(
            f"text.dss.by_recurrence.{g}.rate_{y}y"
            for g in ("distant", "local_distant")
            for y in (2, 5)
        ),
    }
    construction = {n for n, t in targets.items() if t.status == "by_construction"}
    assert "text.followup.median_years:upper" in construction
    assert "text.age.median" in construction
    # the points of the released estimates keep their rounding
    for key in ("table2.rfs.igf1r.hr", "table2.dss.igf1r.hr", "table2.rfs.beta_catenin.hr"):
        assert targets[key].status == "calibrated"


def test_union_widenings_add_the_alternative_reading(targets, published) -> None:
    distant = targets["text.dss.by_recurrence.distant.rate_2y"]
    both = published.get("text.dss.by_recurrence.local_distant.rate_2y")
    assert distant.within(0.9) and distant.within(both.value)
    assert not distant.within(0.92)
    assert distant.within(0.9, rounding_only=True) and not distant.within(
        both.value, rounding_only=True
    )
    p = targets["table2.dss.beta_catenin.hr:p"]
    assert p.within(0.054) and p.within(0.06) and not p.within(0.05)
    one_year = targets["text.dss.overall.rate_1y"]
    assert one_year.within(61 / 63) and not one_year.within(0.975)


def test_every_widening_names_its_finding(targets) -> None:
    for t in targets.values():
        if t.status in ("widened", "released"):
            assert t.widenings and all(w.finding and w.why for w in t.widenings)
        else:
            assert not t.widenings


def test_event_finding_under_another_reading_changes_nothing(published) -> None:
    total_any = sum(
        published.value(f"table1.tma.recurrence.{r}")
        for r in ("local_only", "distant_only", "local_distant")
    )
    keys = ("table2.rfs.beta_catenin.hr",)
    other = FakeFinding("events_vs_ci_total", "major", keys, {"event_total": total_any - 3})
    same = FakeFinding("events_vs_ci_total", "major", keys, {"event_total": total_any})
    assert rule_events(other, published) == []
    assert {n for n, _ in rule_events(same, published)} == {
        f"{keys[0]}:{f}" for f in ("lower", "upper", "p")
    }
    minor = replace(same, severity="minor")
    assert rule_events(minor, published) == []


def test_rate_label_rule_moves_each_rate_to_its_group(published) -> None:
    finding = FakeFinding(
        "rate_labels",
        "minor",
        (),
        {
            "better_assignment": {
                "text.dss.by_recurrence.distant.rate_5y": {
                    "group": "table1.all.recurrence.local_distant",
                    "fraction": "13/20",
                }
            }
        },
    )
    [(name, w)] = rule_rate_labels(finding, published)
    assert name == "text.dss.by_recurrence.local_distant.rate_5y"
    assert w.interval == pytest.approx((0.645, 0.655))


def test_release_wins_and_unions_merge(published) -> None:
    target = make_target("table2.dss.beta_catenin.hr:p", published)
    union = RULES["hr_wald_p"](
        FakeFinding(
            "hr_wald_p",
            "minor",
            ("table2.dss.beta_catenin.hr",),
            {"wald_p_range_over_rounding": [0.04, 0.05]},
        ),
        published,
    )
    release = rule_events(
        FakeFinding("events_vs_ci", "major", ("table2.dss.beta_catenin.hr",)), published
    )
    both = apply(target, [w for _, w in union] + [w for n, w in release if n == target.name])
    assert both.status == "released"
    widened = apply(target, [w for _, w in union])
    assert widened.status == "widened" and widened.within(0.045)
    assert merged(((0.04, 0.05), (0.045, 0.06), (0.1, 0.2))) == [(0.04, 0.06), (0.1, 0.2)]


def test_kernel_holds_only_sampled_targets(targets) -> None:
    kernel = kernel_targets(list(targets.values()))
    sampled = [t for t in targets.values() if t.status in ("calibrated", "widened")]
    assert kernel.size == len(sampled)
    hr = next(j for j, t in enumerate(sampled) if t.name == "table2.dss.beta_catenin.hr")
    assert kernel.log_scale[hr] == 1
    assert kernel.lo1[hr] == pytest.approx(math.log(5.325))
