"""The audit: quiet on consistent numbers, fires on each planted inconsistency, and finds the
paper's real inconsistencies from its numbers."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from analysis.cli import main
from analysis.paper.audit import CHECKS, Finding, audit, run_checks, run_cli
from analysis.paper.published import load_published

FIXTURES = Path(__file__).parents[1] / "fixtures" / "published"
CONSISTENT = FIXTURES / "consistent.toml"
REAL = Path(__file__).parents[2] / "data" / "published.toml"


def planted(tmp_path: Path, old: str, new: str, append: str = "") -> list[Finding]:
    """Audit the consistent fixture with ``old`` replaced by ``new`` (``old`` must occur once)."""
    text = CONSISTENT.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"fixture line not unique: {old}"
    path = tmp_path / "planted.toml"
    path.write_text(text.replace(old, new) + append, encoding="utf-8")
    return audit(load_published(path))


def test_consistent_fixture_is_quiet_and_every_check_looks() -> None:
    findings, coverage = run_checks(load_published(CONSISTENT))
    assert findings == []
    looked = {name for name, c in coverage.items() if c["examined"] > 0}
    assert looked == {name for name, _ in CHECKS} - {"type_medians"}


PLANTS = [
    # (old, new, check, severity)
    (
        'percent = 60, unit = "patients", source = "T1 female"',
        'percent = 70, unit = "patients", source = "T1 female"',
        "percent",
        "major",
    ),
    (
        'percent = 60, unit = "patients", source = "T1 female"',
        'percent = 61, unit = "patients", source = "T1 female"',
        "percent",
        "minor",
    ),
    ("percent = 67, unit", "percent = 66, unit", "percent", "minor"),  # 2/3 truncated
    (
        "male = { value = 16, denominator = 40, percent = 40",
        "male = { value = 17, denominator = 40, percent = 43",
        "relation_sum",
        "major",
    ),
    (
        "value = 30, denominator = 38, percent = 79",
        "value = 30, denominator = 44, percent = 68",
        "denominator",
        "major",
    ),
    (
        'female = { value = 24, denominator = 40, percent = 60, unit = "patients", '
        'source = "Results',
        'female = { value = 25, denominator = 40, percent = 63, unit = "patients", '
        'source = "Results',
        "crosscheck",
        "major",
    ),
    ("value = 2.00, lower = 0.83", "value = 2.30, lower = 0.83", "hr_symmetry", "major"),
    (
        'decimals = 2, interval = "ci95", p = 0.12',
        'decimals = 2, interval = "ci95", p = 0.30',
        "hr_wald_p",
        "minor",
    ),
    (
        'decimals = 2, interval = "ci95", p = 0.12',
        'decimals = 2, interval = "ci95", p = 0.01',
        "hr_wald_p",
        "major",
    ),
    (
        'decimals = 2, interval = "ci95", p = 0.12',
        'decimals = 2, interval = "ci95", p = 0.01',
        "hr_ci_vs_p",
        "minor",
    ),
    (
        'value = 0.50, lower = 0.28, upper = 0.90, decimals = 2, interval = "ci95", p = 0.02',
        'value = 2.00, lower = 0.83, upper = 4.83, decimals = 2, interval = "ci95", p = 0.12',
        "duplicate_estimate",
        "major",
    ),
    ("total = { value = 23, unit", "total = { value = 10, unit", "events_vs_ci_total", "major"),
    (
        'lower = 0.83, upper = 4.83, decimals = 2, interval = "ci95", p = 0.12',
        'lower = 1.50, upper = 2.67, decimals = 2, interval = "ci95", p = 0.0001',
        "events_vs_ci",
        "major",
    ),
    (  # the two groups' rates exchanged
        'distant = { value = 0.875, unit = "proportion", source = "Results DSS distant" }\n'
        "local_distant = { value = 0.90, decimals = 2,",
        'distant = { value = 0.90, decimals = 2, unit = "proportion", '
        'source = "Results DSS distant" }'
        "\nlocal_distant = { value = 0.875,",
        "rate_labels",
        "minor",
    ),
    (
        "local = { value = 0.80, decimals = 2",
        "local = { value = 0.57, decimals = 2",
        "rate_fraction",
        "info",
    ),
    ('direction = "lower_hazard"', 'direction = "higher_hazard"', "claim_direction", "major"),
    ("significant = false", "significant = true", "claim_significance", "minor"),
    (
        'distant = { value = 20, unit = "months"',
        'distant = { value = 35, unit = "months"',
        "claim_order",
        "major",
    ),
    ('term = "Recurrence-free  survival"', 'term = "time to recurrence"', "terms", "minor"),
    (
        'term = "Recurrence-free  survival"',
        'term = "local recurrence-free survival"',
        "terms",
        "minor",
    ),
    ("any = { value = 18, unit", "any = { value = 5, unit", "pooled_median", "major"),
]


@pytest.mark.parametrize(("old", "new", "check", "severity"), PLANTS)
def test_each_planted_inconsistency_fires(
    tmp_path: Path, old: str, new: str, check: str, severity: str
) -> None:
    findings = planted(tmp_path, old, new)
    assert any(f.check == check and f.severity == severity for f in findings), [
        (f.check, f.severity, f.message) for f in findings
    ]


def test_terms_disagreeing_on_event_type_are_major(tmp_path: Path) -> None:
    findings = planted(
        tmp_path,
        '{ source = "Table 2", term = "recurrence-free survival" }',
        '{ source = "Table 2", term = "time to distant recurrence" }',
    )
    findings += planted(
        tmp_path,
        'term = "Recurrence-free  survival"',
        'term = "local recurrence-free survival"',
    )
    severities = {f.severity for f in findings if f.check == "terms"}
    assert severities == {"minor"}  # one event-type word only: not a contradiction
    text = CONSISTENT.read_text(encoding="utf-8")
    text = text.replace('term = "recurrence-free survival"', 'term = "time to distant recurrence"')
    text = text.replace(
        'term = "Recurrence-free  survival"', 'term = "local recurrence-free survival"'
    )
    path = tmp_path / "terms.toml"
    path.write_text(text, encoding="utf-8")
    found = [f for f in audit(load_published(path)) if f.check == "terms"]
    assert [f.severity for f in found] == ["major"]


def test_events_vs_medians_major_when_medians_early_and_minor_when_late(tmp_path: Path) -> None:
    wide = (
        'lower = 0.83, upper = 4.83, decimals = 2, interval = "ci95", p = 0.12',
        'lower = 0.34, upper = 11.60, decimals = 2, interval = "ci95", p = 0.27',
    )
    early = [f for f in planted(tmp_path, *wide) if f.check.startswith("events_vs")]
    assert {f.severity for f in early} == {"major"}
    text = CONSISTENT.read_text(encoding="utf-8").replace(*wide)
    text = text.replace("value = 40.0, unit", "value = 90.0, unit")
    text = text.replace("value = 20.0, unit", "value = 80.0, unit")
    text = text.replace(
        'event_totals = [{ label = "all events", keys = ["text.events.total"] }]', ""
    )
    path = tmp_path / "late.toml"
    path.write_text(text, encoding="utf-8")
    late = [f for f in audit(load_published(path)) if f.check.startswith("events_vs")]
    assert [(f.check, f.severity) for f in late] == [("events_vs_medians", "minor")]


def test_appended_layout_facts_fire(tmp_path: Path) -> None:
    extra = """
[text.extra]
no_denominator = { value = 6, percent = 23, unit = "patients", source = "T1 odd cell" }

[[relations]]
kind = "each_at_most"
total = "table1.all.recurrence.local_only"
parts = ["table1.all.recurrence.local_distant"]
source = "planted bound"

[[relations]]
kind = "sum"
total = "table1.all.n"
parts = ["table1.all.sex.male"]
assumption = "a reading of a footnote"
source = "planted with assumption"

[[type_medians]]
medians = ["text.recurrence.median_months.local"]
n = ["table1.all.recurrence.local_only"]
cohort = "table1.all.n"
"""
    findings = planted(tmp_path, "# A small", "# A small", append=extra)
    got = {(f.check, f.severity) for f in findings}
    assert ("percent_denominator", "info") in got
    assert ("relation_at_most", "major") in got
    assert ("relation_sum", "minor") in got  # an assumption makes a mismatch minor
    assert ("type_median", "info") in got
    odd = next(f for f in findings if f.check == "percent_denominator")
    assert 26 in odd.computation["denominators_matching"]


def test_finding_ids_are_stable_and_unique() -> None:
    a = audit(load_published(REAL))
    b = audit(load_published(REAL))
    assert [f.id for f in a] == [f.id for f in b]
    assert len({f.id for f in a}) == len(a)


# ---------------------------------------------------------------------------------------------
# the paper itself
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_findings() -> list[Finding]:
    return audit(load_published(REAL))


def _has(findings: list[Finding], check: str, key: str, severity: str | None = None) -> bool:
    return any(
        f.check == check and key in f.keys and (severity is None or f.severity == severity)
        for f in findings
    )


def test_real_paper_contradictions_found(real_findings: list[Finding]) -> None:
    f = real_findings
    assert _has(f, "crosscheck", "text.tumor.size_ge5", "major")  # 46/48 vs 46/58
    assert _has(f, "percent", "text.recurrence.any", "minor")  # 42/63 printed 66%
    assert _has(f, "relation_sum", "table1.all.treatment.surgery_alone", "major")  # 64 != 63
    assert _has(f, "relation_sum", "text.treatment.neoadjuvant.n", "major")  # 33 + 15 + 16
    assert _has(f, "denominator", "table1.tma.primary_surgery.outside", "major")  # 28 > 26
    assert _has(f, "relation_sum", "table1.tma.treatment.surgery_chemo_pre", "major")  # 3 + 7
    assert _has(f, "duplicate_estimate", "table2.rfs.igf1r.hr", "major")
    assert _has(f, "hr_wald_p", "table2.dss.beta_catenin.hr", "minor")  # .06 vs .054
    assert _has(f, "claim_direction", "text.hr.adjuvant_dss", "major")  # 2.13 "improved"
    assert _has(f, "rate_labels", "text.dss.by_recurrence.local_distant.rate_2y", "minor")
    assert _has(f, "events_vs_ci_total", "table2.rfs.igf1r.hr", "major")
    assert _has(f, "events_vs_ci_total", "table2.rfs.beta_catenin.hr", "major")
    assert _has(f, "events_vs_medians", "table2.dss.beta_catenin.hr", "minor")
    assert _has(f, "type_median", "text.recurrence.median_months.local", "info")
    assert any(f.check == "terms" and f.severity == "major" for f in real_findings)


def test_real_paper_consistent_parts_stay_quiet(real_findings: list[Finding]) -> None:
    f = real_findings
    for key in ("text.hr.surgery_radiation_dss", "table2.rfs.beta_catenin.hr"):
        assert not _has(f, "hr_wald_p", key) and not _has(f, "hr_symmetry", key)
    assert not _has(f, "relation_sum", "text.cohort.excluded")  # 77 = 14 + 63
    assert not _has(f, "relation_sum", "text.treatment.ivc_ligation")  # 12 + 30 = 42
    assert not _has(f, "claim_direction", "text.hr.surgery_radiation_dss")  # 0.43 "improved"
    assert not any(f.check == "pooled_median" for f in real_findings)
    # the abstract's repeats of Table 2 are the same estimate, not copies
    assert not _has(f, "duplicate_estimate", "abstract.hr.igf1r_dss")


def test_wald_p_computation_matches_hand_calculation(real_findings: list[Finding]) -> None:
    beta = next(
        f
        for f in real_findings
        if f.check == "hr_wald_p" and "table2.dss.beta_catenin.hr" in f.keys
    )
    # SE = (ln 29.30 - ln 0.97) / (2 x 1.96) = 0.8694; z = ln 5.33 / SE = 1.925; P = 0.0542
    assert beta.computation["se_log_hr"] == pytest.approx(0.8694, abs=1e-3)
    assert beta.computation["wald_p"] == pytest.approx(0.0542, abs=5e-4)


def test_cli_writes_both_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["audit", "--published", str(REAL), "--out-dir", str(tmp_path)])
    assert status == 0
    data = json.loads((tmp_path / "audit.json").read_text())
    md = (tmp_path / "audit.md").read_text()
    assert data["summary"]["major"] >= 10
    assert len(data["findings"]) == sum(data["summary"].values())
    for f in data["findings"]:
        assert {"id", "check", "severity", "keys", "source", "message", "computation"} <= set(f)
        assert f["id"] in md
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == len(data["findings"]) + 1
    assert not list(tmp_path.glob(".*.tmp"))


def test_cli_bad_file_exit_2_and_nothing_written(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[x]\ny = { value = "seven", unit = "patients", source = "s" }\n')
    status = main(["audit", "--published", str(bad), "--out-dir", str(tmp_path / "out")])
    assert status == 2
    assert not (tmp_path / "out").exists()


def test_run_cli_directly(tmp_path: Path) -> None:
    args = argparse.Namespace(published=CONSISTENT, out_dir=tmp_path)
    assert run_cli(args) == 0
    assert json.loads((tmp_path / "audit.json").read_text())["findings"] == []


def test_missing_values_are_skipped_not_crashed(tmp_path: Path) -> None:
    findings = planted(
        tmp_path,
        'n = { value = 20, unit = "patients", source = "T2 neg n" }',
        'n = { missing = true, unit = "patients", source = "T2 neg n" }',
    )
    assert not any(f.check.startswith("events_vs") for f in findings)
