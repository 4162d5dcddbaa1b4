"""The loader of the paper's numbers: typed access on the real file, clear errors on bad ones."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from analysis.core.errors import VlmsInputError
from analysis.paper.published import (
    LAYOUT_SECTIONS,
    Entry,
    Published,
    UnknownKeyError,
    decimals_shown,
    load_published,
)

REAL = Path(__file__).parents[2] / "data" / "published.toml"
FIXTURE = Path(__file__).parents[1] / "fixtures" / "published" / "consistent.toml"


@pytest.fixture(scope="module")
def pub() -> Published:
    return load_published(REAL)


def test_real_file_typed_access(pub: Published) -> None:
    female = pub.get("table1.all.sex.female")
    assert isinstance(female, Entry)
    assert (female.value, female.denominator, female.percent) == (41, 63, 65)
    assert female.unit == "patients" and "Table 1" in female.source
    assert pub.value("table1.tma.sex.female") == 17
    hr = pub.get("table2.rfs.beta_catenin.hr")
    assert (hr.value, hr.lower, hr.upper, hr.p, hr.interval) == (1.37, 0.29, 6.54, 0.69, "ci95")
    assert pub.value("table2.rfs.beta_catenin.positive.n") == 11
    assert pub.value("table2.rfs.beta_catenin.positive.median_months") == 15.9
    assert pub.value("text.recurrence.median_months.local") == 43
    assert pub.value("text.recurrence.logrank_p") == 0.04
    assert pub.value("text.dss.overall.rate_1y") == 0.96
    assert pub.value("text.rfs.rate_5y") == 0.35
    fu = pub.get("text.followup.median_years")
    assert (fu.value, fu.lower, fu.upper, fu.interval) == (5.1, 0.87, 13.9, "range")
    adj = pub.get("text.hr.adjuvant_dss")
    assert (adj.value, adj.lower, adj.upper, adj.p) == (2.13, 0.99, 4.62, 0.05)
    assert pub.value("text.cohort.presented") == 77
    assert pub.value("text.cohort.excluded") == 14


def _raw_entries(table: dict, prefix: str = "") -> dict[str, dict]:
    """The entry tables of the TOML file, read with tomllib alone (not the loader)."""
    out: dict[str, dict] = {}
    for name, item in table.items():
        if not prefix and name in LAYOUT_SECTIONS:
            continue
        if {"value", "missing", "unit", "source"} & set(item):
            out[prefix + name] = item
        else:
            out.update(_raw_entries(item, f"{prefix}{name}."))
    return out


def test_none_reported_is_missing_not_zero(pub: Published) -> None:
    e = pub.get("table2.rfs.igf1r.negative.median_months")
    assert e.missing and e.value is None
    assert pub.value("table2.rfs.igf1r.negative.median_months") is None
    assert pub.get("table1.tma.multivisceral.any").missing
    raw = _raw_entries(tomllib.loads(REAL.read_text(encoding="utf-8")))
    # exactly the entries written `missing = true` are missing; a printed 0 stays the number 0
    assert {k for k, t in raw.items() if t.get("missing")} == {e.key for e in pub if e.missing}
    zeros = {k for k, t in raw.items() if t.get("value") == 0}
    assert len(zeros) >= 5 and all(pub.value(k) == 0 and not pub.get(k).missing for k in zeros)


def test_keys_prefix_and_iteration(pub: Published) -> None:
    keys = pub.keys("table2.dss.")
    assert "table2.dss.igf1r.hr" in keys and all(k.startswith("table2.dss.") for k in keys)
    assert len(pub.keys()) == len(pub) == len(list(pub))
    assert all(e.source and e.unit for e in pub)


def test_unknown_key_is_clear(pub: Published) -> None:
    with pytest.raises(UnknownKeyError) as info:
        pub.get("table2.rfs.beta_catenin.hr_typo")
    assert isinstance(info.value, KeyError) and isinstance(info.value, VlmsInputError)
    text = str(info.value)
    assert "table2.rfs.beta_catenin.hr_typo" in text and "published.toml" in text


def test_decimals_and_rounding_bounds(pub: Published) -> None:
    assert decimals_shown(0.97) == 2 and decimals_shown(58) == 0 and decimals_shown(29.3) == 1
    hr = pub.get("table2.dss.beta_catenin.hr")  # printed 29.30: decimals = 2 in the file
    assert hr.digits("upper") == 2
    assert hr.bounds("upper") == pytest.approx((29.295, 29.305))
    assert pub.get("text.dss.by_recurrence.distant.rate_2y").bounds() == pytest.approx(
        (0.895, 0.905)
    )


def test_references(pub: Published) -> None:
    assert pub.resolve("@no_recurrence") == 63 - 42
    assert pub.resolve("text.metastasis.lung@denominator") == 36
    assert pub.ref_keys("@no_recurrence")[0] == "table1.all.n"


def test_real_file_denominators_are_at_least_counts(pub: Published) -> None:
    for e in pub:
        if e.denominator is not None:
            assert e.value is not None and 0 <= e.value <= e.denominator


GOOD = 'y = { value = 7, denominator = 10, percent = 70, unit = "patients", source = "T1" }'
BAD = [
    ('y = { value = "seven", unit = "patients", source = "T1" }', "x.y", "finite number"),
    ('y = { value = 7, unit = "patients", source = "T1", colour = "red" }', "x.y", "colour"),
    ('y = { unit = "patients", source = "T1" }', "x.y", "missing = true"),
    ('y = { missing = true, value = 0, unit = "patients", source = "T1" }', "x.y", "both"),
    ('y = { value = 7, unit = "people", source = "T1" }', "x.y", "unit"),
    ('y = { value = 7, unit = "patients" }', "x.y", "source"),
    ('y = { value = 7.5, unit = "patients", source = "T1" }', "x.y", "whole number"),
    ('y = { value = 11, denominator = 10, unit = "patients", source = "T1" }', "x.y", "exceeds"),
    ('y = { value = 96, unit = "proportion", source = "T1" }', "x.y", "0.96"),
    ('y = { value = 7, percent = 170, unit = "patients", source = "T1" }', "x.y", "percent"),
    (
        'y = { value = 2.0, lower = 2.5, upper = 3.0, interval = "ci95", unit = "hazard_ratio",'
        ' source = "T2" }',
        "x.y",
        "outside its interval",
    ),
    ('y = { value = 2.0, lower = 1.0, unit = "hazard_ratio", source = "T2" }', "x.y", "both"),
    ('y = { value = 2.0, p = 1.5, unit = "hazard_ratio", source = "T2" }', "x.y", "'p'"),
    ("y = 7", "x.y", "expected an entry"),
]


@pytest.mark.parametrize(("line", "key", "words"), BAD)
def test_malformed_entry_names_key_and_file(
    tmp_path: Path, line: str, key: str, words: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f"[x]\n{GOOD.replace('y =', 'ok =')}\n{line}\n", encoding="utf-8")
    with pytest.raises(VlmsInputError) as info:
        load_published(path)
    text = str(info.value)
    assert f"'{key}'" in text and str(path) in text and words in text
    assert "\n" not in text


def test_malformed_layout_names_section(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        f'[x]\n{GOOD}\n[[relations]]\nkind = "sum"\ntotal = "x.y"\nparts = ["x.nope"]\n',
        encoding="utf-8",
    )
    with pytest.raises(VlmsInputError, match=r"relations\[0\].*x\.nope"):
        load_published(path)


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[x\ny = 1\n", encoding="utf-8")
    with pytest.raises(VlmsInputError, match="not valid TOML"):
        load_published(path)
    with pytest.raises(VlmsInputError, match="not found"):
        load_published(tmp_path / "absent.toml")


def test_fixture_loads() -> None:
    fx = load_published(FIXTURE)
    assert fx.value("table1.all.n") == 40
    assert fx.resolve("@no_recurrence") == 17


HR_ENTRY = (
    'hr = { value = 2.0, lower = 1.0, upper = 4.0, interval = "ci95", unit = "hazard_ratio", '
    'source = "t" }'
)


@pytest.mark.parametrize(
    ("panel", "words"),
    [
        ('markers = ["a"]\nreported.dss = { a = "x.hr" }', "at least two"),
        ('markers = ["a", "a"]\nreported.dss = { a = "x.hr" }', "names a marker twice"),
        ('markers = ["a", "b"]\nreported.dss = { c = "x.hr" }', "'c' is not in 'markers'"),
        ('markers = ["a", "b"]\nreported.dss = { a = "x.nope" }', "unknown key 'x.nope'"),
        ('markers = ["a", "b"]\nreported.dss = { a = "x.y" }', "not a hazard ratio"),
        ('markers = ["a", "b"]', "'reported' must map"),
    ],
)
def test_malformed_marker_panel(tmp_path: Path, panel: str, words: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f"[x]\n{GOOD}\n{HR_ENTRY}\n[[marker_panels]]\n{panel}\n", encoding="utf-8")
    with pytest.raises(VlmsInputError, match=r"marker_panels\[0\]") as info:
        load_published(path)
    assert words in str(info.value)


def test_the_paper_panel_lists_twenty_markers_and_two_printed_per_end_point() -> None:
    (panel,) = load_published(REAL).section("marker_panels")
    assert len(panel["markers"]) == 20 and {"beta-catenin", "IGF-1R"} <= set(panel["markers"])
    assert set(panel["reported"]) == {"dss", "rfs"}
    assert all(len(chosen) == 2 for chosen in panel["reported"].values())
