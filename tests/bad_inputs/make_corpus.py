"""Regenerate the bad-input corpus (``tests/bad_inputs/*``) and its manifest ``cases.toml``.

Run from the repository root: ``.venv/bin/python tests/bad_inputs/make_corpus.py``. Each case is
a small, otherwise valid file with one defect; the manifest says which commands read it (see
``tests/test_bad_inputs.py``), and which column, row and words the one-line error must contain.

Kinds of file:

* ``table``: a generic CSV (``months``, ``status``, ``marker``) for ``vlms check --data`` and
  ``vlms fit --data`` with ``--time months --event status --covariates marker``;
* ``cohort``: a CSV in the cohort schema (``analysis/cohort.py``) for the loader, ``vlms check
  --cohort`` (the paper run) and ``vlms fit --cohort`` (the registry);
* ``published``: a TOML file of published numbers for ``vlms reconstruct --published``.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from conftest import make_cohort_frame  # noqa: E402

TABLE = [
    ("12.5", "1", "0"),
    ("30", "0", "1"),
    ("7.25", "1", "1"),
    ("48", "0", "0"),
    ("22", "1", "1"),
    ("60.5", "0", "0"),
    ("15", "1", "0"),
    ("36", "1", "1"),
]
TABLE_HEADER = ("months", "status", "marker")


def table_text(rows=TABLE, header=TABLE_HEADER, sep=",") -> str:
    lines = [sep.join(header)] if header is not None else []
    lines += [sep.join(r) for r in rows]
    return "\n".join(lines) + "\n"


def with_cell(row: int, col: int, value: str, rows=TABLE) -> list[tuple[str, ...]]:
    """Copy of ``rows`` with data row ``row`` (1-based) column ``col`` set to ``value``."""
    out = [list(r) for r in rows]
    out[row - 1][col] = value
    return [tuple(r) for r in out]


def cohort_frame():
    return make_cohort_frame(12, seed=3).astype(object)


def cohort_text(df) -> str:
    return df.to_csv(index=False, lineterminator="\n")


def first_row(df, mask) -> int:
    """1-based data row of the first True of ``mask``."""
    return int(mask.to_numpy().nonzero()[0][0]) + 1


CASES: list[dict] = []


def case(name: str, kind: str, content: str | bytes, description: str, **expect) -> None:
    path = HERE / name
    if isinstance(content, str):
        path.write_bytes(content.encode("utf-8"))
    else:
        path.write_bytes(content)
    CASES.append({"file": name, "kind": kind, "description": description, **expect})


def build_tables() -> None:
    t = "table"
    case("table_semicolon.csv", t, table_text(sep=";"), "semicolon-delimited", words=["semicolon"])
    case("table_tab.csv", t, table_text(sep="\t"), "tab-delimited", words=["tab"])
    case(
        "table_no_header.csv",
        t,
        table_text(header=None),
        "data rows without a header line",
        column="months",
        words=["column"],
    )
    case(
        "table_missing_column.csv",
        t,
        table_text([(r[0], r[2]) for r in TABLE], ("months", "marker")),
        "the event column is absent",
        column="status",
    )
    case(
        "table_duplicate_column.csv",
        t,
        table_text([(*r, r[0]) for r in TABLE], (*TABLE_HEADER, "months")),
        "a column name appears twice in the header",
        column="months",
        words=["twice"],
    )
    case(
        "table_non_numeric_time.csv",
        t,
        table_text(with_cell(3, 0, "twelve")),
        "a time that is not a number",
        column="months",
        row=3,
        words=["number"],
    )
    case(
        "table_negative_time.csv",
        t,
        table_text(with_cell(2, 0, "-4")),
        "a negative time",
        column="months",
        row=2,
    )
    case(
        "table_missing_time.csv",
        t,
        table_text(with_cell(4, 0, "")),
        "an empty time cell",
        column="months",
        row=4,
        words=["missing"],
    )
    case(
        "table_huge_time.csv",
        t,
        table_text(with_cell(5, 0, "1e300")),
        "an absurdly large time",
        column="months",
        row=5,
    )
    case(
        "table_infinite_time.csv",
        t,
        table_text(with_cell(6, 0, "inf")),
        "an infinite time",
        column="months",
        row=6,
    )
    case(
        "table_event_out_of_range.csv",
        t,
        table_text(with_cell(3, 1, "2")),
        "event code 2 where 0/1 are allowed",
        column="status",
        row=3,
        words=["event code"],
    )
    case(
        "table_event_fraction.csv",
        t,
        table_text(with_cell(7, 1, "0.5")),
        "a fractional event code",
        column="status",
        row=7,
    )
    case(
        "table_cause_out_of_range.csv",
        t,
        table_text(with_cell(2, 1, "12")),
        "cause code 12 with --competing (allowed 0..9)",
        column="status",
        row=2,
        competing=True,
    )
    case(
        "table_all_censored.csv",
        t,
        table_text([(r[0], "0", r[2]) for r in TABLE]),
        "every row censored: nothing to estimate",
        column="status",
        words=["no events"],
    )
    case(
        "table_covariate_text.csv",
        t,
        table_text(with_cell(4, 2, "high")),
        "a covariate that is not a number",
        column="marker",
        row=4,
        words=["number"],
    )
    case(
        "table_constant_covariate.csv",
        t,
        table_text([(r[0], r[1], "1") for r in TABLE]),
        "a covariate with a single value",
        column="marker",
        words=["single value"],
    )
    case("table_one_row.csv", t, table_text(TABLE[:1]), "a single data row")
    case(
        "table_header_only.csv",
        t,
        table_text([]),
        "a header and no data rows",
        words=["no data rows"],
    )
    case("table_empty.csv", t, b"", "an empty file (0 bytes)", words=["empty"])
    case("table_blank_lines.csv", t, "\n\n  \n", "only blank lines", words=["empty"])
    latin1 = table_text(with_cell(2, 2, "X")).encode("utf-8").replace(b"X", b"\xe9")
    case("table_non_utf8.csv", t, latin1, "a Latin-1 byte in row 2", row=2, words=["UTF-8"])
    case("table_binary.csv", t, bytes(range(256)) * 4, "binary garbage", words=["UTF-8"])
    case(
        "table_extra_field.csv",
        t,
        table_text([*TABLE[:4], (*TABLE[4], "99"), *TABLE[5:]]),
        "row 5 has an extra field beyond the header",
        row=5,
        words=["fields"],
    )
    case(
        "table_short_row.csv",
        t,
        table_text([*TABLE[:2], TABLE[2][:2], *TABLE[3:]]),
        "row 3 has a field fewer than the header",
        row=3,
        words=["fields"],
    )
    case(
        "table_unterminated_quote.csv",
        t,
        table_text(with_cell(4, 2, '"1')),
        "an opening quote never closed",
        row=4,
    )


def build_cohorts() -> None:
    c = "cohort"
    df = cohort_frame()
    case(
        "cohort_semicolon.csv",
        c,
        cohort_text(df).replace(",", ";"),
        "semicolon-delimited",
        words=["semicolon"],
    )
    bad = df.copy()
    bad.loc[6, "patient_id"] = bad.loc[2, "patient_id"]
    case(
        "cohort_duplicate_id.csv",
        c,
        cohort_text(bad),
        "the same patient id twice",
        column="patient_id",
        row=7,
        words=["duplicate"],
    )
    case(
        "cohort_missing_column.csv",
        c,
        cohort_text(df.drop(columns=["followup_months"])),
        "the follow-up column is absent",
        column="followup_months",
    )
    bad = df.copy()
    bad.loc[3, "sex"] = "F"
    case(
        "cohort_unknown_category.csv",
        c,
        cohort_text(bad),
        "an unknown category",
        column="sex",
        row=4,
        words=["unknown category"],
    )
    bad = df.copy()
    row = first_row(bad, bad["tma"] == "0")
    bad.loc[row - 1, "beta_catenin"] = "1"
    case(
        "cohort_biomarker_outside_tma.csv",
        c,
        cohort_text(bad),
        "a biomarker value for a patient not on the TMA",
        column="beta_catenin",
        row=row,
        words=["TMA"],
    )
    bad = df.copy()
    bad.loc[4, "recurrence_months"] = str(float(bad.loc[4, "followup_months"]) + 12.0)
    case(
        "cohort_recurrence_after_followup.csv",
        c,
        cohort_text(bad),
        "recurrence after the end of follow-up",
        column="recurrence_months",
        row=5,
        words=["after"],
    )
    bad = df.copy()
    bad.loc[1, "followup_months"] = "-3"
    case(
        "cohort_negative_followup.csv",
        c,
        cohort_text(bad),
        "a negative follow-up",
        column="followup_months",
        row=2,
    )
    bad = df.copy()
    bad.loc[8, "followup_months"] = ""
    case(
        "cohort_missing_followup.csv",
        c,
        cohort_text(bad),
        "an empty follow-up cell",
        column="followup_months",
        row=9,
        words=["missing"],
    )
    bad = df.copy()
    bad.loc[2, "age"] = "fifty"
    case(
        "cohort_non_numeric_age.csv",
        c,
        cohort_text(bad),
        "a non-numeric age",
        column="age",
        row=3,
        words=["number"],
    )
    bad = df.copy()
    bad.loc[10, "followup_months"] = "1e12"
    case(
        "cohort_huge_followup.csv",
        c,
        cohort_text(bad),
        "an absurdly long follow-up",
        column="followup_months",
        row=11,
    )
    bad = df.copy()
    bad.loc[7, "surgery_year"] = "20011"
    case(
        "cohort_surgery_year_out_of_range.csv",
        c,
        cohort_text(bad),
        "a surgery year no calendar has had yet",
        column="surgery_year",
        row=8,
        words=["maximum"],
    )
    bad = df.copy()
    bad.loc[5, "tma"] = "2"
    case(
        "cohort_binary_code.csv", c, cohort_text(bad), "a 0/1 column holding 2", column="tma", row=6
    )
    case("cohort_empty.csv", c, b"", "an empty file", words=["empty"])
    text = cohort_text(df).encode("utf-8").replace(b"SYN-004", b"SYN-\xff04")
    case("cohort_non_utf8.csv", c, text, "a non-UTF-8 byte in row 4", row=4, words=["UTF-8"])
    case("cohort_one_row.csv", c, cohort_text(df.iloc[:1]), "a single patient")
    case(
        "cohort_header_only.csv", c, cohort_text(df.iloc[:0]), "no patients", words=["no data rows"]
    )
    lines = cohort_text(df).splitlines()
    lines[8] += ",extra"
    case(
        "cohort_extra_field.csv",
        c,
        "\n".join(lines) + "\n",
        "row 8 has an extra field beyond the header",
        row=8,
        words=["fields"],
    )
    censored = df.copy()
    censored["recurrence"] = "none"
    censored["vital_status"] = "alive"
    censored["recurrence_months"] = censored["followup_months"]
    for col in ("met_lung", "met_liver", "met_bone", "met_abdomen", "met_other"):
        censored[col] = "0"
    case(
        "cohort_all_censored.csv",
        c,
        cohort_text(censored),
        "no recurrence and no death at all: nothing to estimate",
        commands=["check_cohort", "fit_cohort"],
    )


def build_published() -> None:
    p = "published"
    case("published_empty.toml", p, b"", "an empty file")
    case("published_not_toml.toml", p, "this is = not [valid toml\n", "not TOML", words=["TOML"])
    case("published_non_utf8.toml", p, b'[a]\nvalue = 1\nsource = "\xe9"\n', "Latin-1 bytes")
    case(
        "published_bad_unit.toml",
        p,
        '[table1.all.patients]\nvalue = 63\nunit = "furlongs"\nsource = "Table 1"\n',
        "an unknown unit",
        words=["unit"],
    )


def manifest() -> str:
    out = [
        "# Bad-input corpus: one defect per file. Generated by make_corpus.py; read by",
        "# tests/test_bad_inputs.py. Fields: file, kind (table | cohort | published),",
        "# description, and what the one-line error must contain: column, row (1-based data",
        "# row), words; optional commands (default: every command of the kind) and competing.",
        "",
    ]
    for c in CASES:
        out.append("[[case]]")
        for key in (
            "file",
            "kind",
            "description",
            "column",
            "row",
            "words",
            "commands",
            "competing",
        ):
            if key not in c:
                continue
            v = c[key]
            if isinstance(v, bool):
                out.append(f"{key} = {str(v).lower()}")
            elif isinstance(v, int):
                out.append(f"{key} = {v}")
            elif isinstance(v, list):
                out.append(f"{key} = [{', '.join(repr_toml(s) for s in v)}]")
            else:
                out.append(f"{key} = {repr_toml(v)}")
        out.append("")
    return "\n".join(out)


def repr_toml(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


if __name__ == "__main__":
    build_tables()
    build_cohorts()
    build_published()
    (HERE / "cases.toml").write_text(manifest(), encoding="utf-8")
    print(f"{len(CASES)} cases written to {HERE}")
