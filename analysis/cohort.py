"""The cohort schema, its one loader, and the end points derived from it.

Every command that reads a cohort (the synthetic reconstruction or a user's own, in the same
schema) goes through :func:`load_cohort`. End points are defined here and nowhere else:

* DSS: ``followup_months``; event = death from disease (``dead_disease``); other deaths censored.
* RFS (time to first recurrence): ``recurrence_months``; event = any first recurrence; a death
  without recurrence is censored at death (the paper's "time to recurrence").
* First-recurrence type (competing risks): ``recurrence_months``; cause 1 local only,
  2 distant only, 3 local and distant; 4 death without recurrence (time ``followup_months``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.core.csv_input import is_missing, read_csv
from analysis.core.errors import VlmsInputError


@dataclass(frozen=True)
class Column:
    """One schema column: its kind, its allowed values or range, and whether it may be empty."""

    name: str
    kind: str  # "id", "category", "binary", "number"
    levels: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = False
    doc: str = ""
    optional: bool = False
    """May be left out of the header altogether (read as empty); implies ``nullable``."""


SCHEMA: tuple[Column, ...] = (
    Column("patient_id", "id", doc="synthetic id, e.g. SYN-001; unique"),
    Column("age", "number", minimum=0, maximum=120, doc="age at diagnosis, years"),
    Column("sex", "category", ("female", "male"), doc="sex"),
    Column("race", "category", ("white", "african_american", "hispanic"), doc="race/ethnicity"),
    Column(
        "site",
        "category",
        ("ivc", "saphenous_femoral", "renal", "upper_extremity", "other"),
        doc="vessel of origin (ivc: inferior vena cava)",
    ),
    Column(
        "ivc_segment",
        "category",
        ("1", "2", "3"),
        nullable=True,
        doc="IVC level I infrarenal, II renal to hepatic veins, III suprahepatic; empty unless ivc",
    ),
    Column("size_ge5cm", "binary", nullable=True, doc="tumour >= 5 cm; empty if not documented"),
    Column(
        "grade",
        "category",
        ("low", "intermediate", "high"),
        nullable=True,
        doc="empty if not documented",
    ),
    Column(
        "margin",
        "category",
        ("r0r1", "r2"),
        nullable=True,
        doc="microscopic margin; empty if not documented",
    ),
    Column(
        "surgery_at", "category", ("mdacc", "outside"), doc="institution of the primary surgery"
    ),
    Column(
        "surgery_year",
        "number",
        minimum=1900,
        maximum=2100,
        nullable=True,
        optional=True,
        doc="calendar year of the primary surgery; empty or absent if unknown",
    ),
    Column(
        "chemotherapy",
        "category",
        ("none", "preoperative", "postoperative", "both"),
        doc="timing of chemotherapy relative to surgery",
    ),
    Column(
        "radiation",
        "category",
        ("none", "preoperative", "postoperative"),
        doc="timing of radiation relative to surgery",
    ),
    Column(
        "ivc_management",
        "category",
        ("ligation", "reconstruction"),
        nullable=True,
        doc="empty unless ivc",
    ),
    Column("resected_kidney", "binary", doc="kidney resected with the tumour"),
    Column("resected_adrenal", "binary", doc="adrenal gland resected with the tumour"),
    Column("resected_liver", "binary", doc="liver resected with the tumour"),
    Column("resected_intestine", "binary", doc="intestine resected with the tumour"),
    Column("tma", "binary", doc="primary tumour on the tissue microarray"),
    Column("beta_catenin", "binary", nullable=True, doc="1 high, 0 low; empty outside the TMA"),
    Column("igf1r", "binary", nullable=True, doc="1 high, 0 low; empty outside the TMA"),
    Column(
        "recurrence",
        "category",
        ("none", "local", "distant", "local_distant"),
        doc="type of first recurrence",
    ),
    Column(
        "recurrence_months",
        "number",
        minimum=0,
        maximum=600,
        doc="surgery to first recurrence, or to last follow-up if none",
    ),
    Column("met_lung", "binary", doc="lung metastasis; distant recurrences only"),
    Column("met_liver", "binary", doc="liver metastasis; distant recurrences only"),
    Column("met_bone", "binary", doc="bone metastasis; distant recurrences only"),
    Column("met_abdomen", "binary", doc="abdominal metastasis; distant recurrences only"),
    Column("met_other", "binary", doc="other metastatic site; distant recurrences only"),
    Column(
        "vital_status",
        "category",
        ("alive", "dead_disease", "dead_other"),
        doc="at last contact; dead_disease is the DSS event",
    ),
    Column(
        "followup_months", "number", minimum=0, maximum=600, doc="surgery to death/last contact"
    ),
)

COLUMNS: tuple[str, ...] = tuple(c.name for c in SCHEMA)
MET_COLUMNS: tuple[str, ...] = ("met_lung", "met_liver", "met_bone", "met_abdomen", "met_other")
CAUSES: dict[int, str] = {
    1: "local",
    2: "distant",
    3: "local_distant",
    4: "death_without_recurrence",
}
TIME_TOLERANCE = 1e-9


def load_cohort(path: str | Path) -> pd.DataFrame:
    """Read and validate a cohort CSV; return typed columns (binary as float 0/1/NaN).

    Raises
    ------
    VlmsInputError
        The first violation, naming file, column and row.
    """
    name = str(path)
    raw = read_csv(path)
    return validate_cohort(raw, name)


def validate_cohort(raw: pd.DataFrame, name: str) -> pd.DataFrame:
    """Type and validate a frame of strings in the cohort schema (see :func:`load_cohort`)."""
    for column in SCHEMA:
        if column.name not in raw.columns and not column.optional:
            raise VlmsInputError(
                "required column missing from the header", file=name, column=column.name
            )
    out = pd.DataFrame(index=raw.index)
    for column in SCHEMA:
        cells = raw[column.name].tolist() if column.name in raw.columns else [""] * len(raw)
        out[column.name] = _parse_column(cells, column, name)
    for extra in raw.columns:
        if extra not in out.columns:
            out[extra] = raw[extra]
    _check_rules(out, name)
    return out.reset_index(drop=True)


def _parse_column(cells: list[object], column: Column, file: str) -> list[object]:
    values: list[object] = []
    for row, cell in enumerate(cells, start=1):
        if is_missing(cell):
            if not (column.nullable or column.optional):
                raise VlmsInputError("missing value", file=file, column=column.name, row=row)
            values.append(np.nan if column.kind in {"binary", "number"} else None)
            continue
        text = str(cell).strip()
        values.append(_parse_cell(text, column, file, row))
    return values


def _parse_cell(text: str, column: Column, file: str, row: int) -> object:
    if column.kind == "id":
        return text
    if column.kind == "category":
        if text not in column.levels:
            raise VlmsInputError(
                f"unknown category; allowed: {', '.join(column.levels)}",
                file=file,
                column=column.name,
                row=row,
            )
        return text
    try:
        value = float(text)
    except ValueError:
        raise VlmsInputError("not a number", file=file, column=column.name, row=row) from None
    if column.kind == "binary":
        if value not in (0.0, 1.0):
            raise VlmsInputError("must be 0 or 1", file=file, column=column.name, row=row)
        return value
    if not np.isfinite(value):
        raise VlmsInputError("not a finite number", file=file, column=column.name, row=row)
    if column.minimum is not None and value < column.minimum:
        raise VlmsInputError(
            f"below the minimum {column.minimum:g}", file=file, column=column.name, row=row
        )
    if column.maximum is not None and value > column.maximum:
        raise VlmsInputError(
            f"above the maximum {column.maximum:g}", file=file, column=column.name, row=row
        )
    return value


def _check_rules(df: pd.DataFrame, file: str) -> None:
    """Cross-field rules; the first violation is raised."""

    def fail(mask: pd.Series, column: str, message: str) -> None:
        bad = np.flatnonzero(np.asarray(mask, dtype=bool))
        if bad.size:
            raise VlmsInputError(message, file=file, column=column, row=int(bad[0]) + 1)

    if len(df) < 2:
        raise VlmsInputError("a cohort needs at least 2 patients; this file has 1", file=file)
    dup = df["patient_id"].duplicated()
    fail(dup, "patient_id", "duplicate patient id")
    ivc = df["site"] == "ivc"
    fail(ivc & df["ivc_segment"].isna(), "ivc_segment", "required when site is ivc")
    fail(~ivc & df["ivc_segment"].notna(), "ivc_segment", "must be empty unless site is ivc")
    fail(ivc & df["ivc_management"].isna(), "ivc_management", "required when site is ivc")
    fail(~ivc & df["ivc_management"].notna(), "ivc_management", "must be empty unless site is ivc")
    in_tma = df["tma"] == 1
    for marker in ("beta_catenin", "igf1r"):
        fail(~in_tma & df[marker].notna(), marker, "biomarker given for a patient outside the TMA")
        fail(in_tma & df[marker].isna(), marker, "biomarker missing for a TMA patient")
    over = df["recurrence_months"] > df["followup_months"] + TIME_TOLERANCE
    fail(over, "recurrence_months", "first recurrence after the end of follow-up")
    no_rec = df["recurrence"] == "none"
    differs = (df["recurrence_months"] - df["followup_months"]).abs() > TIME_TOLERANCE
    fail(
        no_rec & differs,
        "recurrence_months",
        "without recurrence it must equal followup_months (censored at last follow-up)",
    )
    distant = df["recurrence"].isin(["distant", "local_distant"])
    for col in MET_COLUMNS:
        fail(~distant & (df[col] == 1), col, "metastatic site given without distant recurrence")
    no_site = distant & (df[list(MET_COLUMNS)].sum(axis=1) == 0)
    fail(no_site, "met_lung", "distant recurrence with no metastatic site marked")
    fail(
        no_rec & (df["vital_status"] == "dead_disease"),
        "vital_status",
        "death from disease without a recorded recurrence",
    )
    fail(df["followup_months"] <= 0, "followup_months", "must be greater than 0")


def dss(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Disease-specific survival: (months, 1 = death from disease)."""
    time = df["followup_months"].to_numpy(float)
    event = (df["vital_status"] == "dead_disease").to_numpy(int)
    return time, event


def rfs(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Time to first recurrence: (months, 1 = any recurrence); deaths censored."""
    time = df["recurrence_months"].to_numpy(float)
    event = (df["recurrence"] != "none").to_numpy(int)
    return time, event


def first_recurrence(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Competing risks of the first event: (months, cause code 0..4, see ``CAUSES``)."""
    codes = {"none": 0, "local": 1, "distant": 2, "local_distant": 3}
    cause = df["recurrence"].map(codes).to_numpy(int)
    time = df["recurrence_months"].to_numpy(float).copy()
    dead_first = (cause == 0) & (df["vital_status"] != "alive").to_numpy()
    cause[dead_first] = 4
    time[dead_first] = df["followup_months"].to_numpy(float)[dead_first]
    return time, cause


EXAMPLE_NAME = "example.csv"
"""The flat example table written beside the cohort (``data/example.csv``)."""


def example_table(df: pd.DataFrame) -> pd.DataFrame:
    """The cohort as a flat survival table for ``vlms check/fit --data`` (the README's examples).

    Columns: ``months`` and ``dead`` (DSS: 1 = death from disease), ``recurrence_months`` and
    ``recurred`` (time to first recurrence), ``first_event_months`` and ``cause`` (first event:
    0 none, 1 local, 2 distant, 3 local and distant, 4 death without recurrence), ``age``,
    ``radiation`` (0/1), ``igf1r`` and ``beta_catenin`` (missing outside the TMA). No ids.
    """
    t_first, cause = first_recurrence(df)
    return pd.DataFrame(
        {
            "months": df["followup_months"].to_numpy(float),
            "dead": dss(df)[1],
            "recurrence_months": df["recurrence_months"].to_numpy(float),
            "recurred": rfs(df)[1],
            "first_event_months": t_first,
            "cause": cause,
            "age": df["age"].to_numpy(float),
            "radiation": radiation_any(df),
            "igf1r": df["igf1r"].to_numpy(float),
            "beta_catenin": df["beta_catenin"].to_numpy(float),
        }
    )


def example_csv(df: pd.DataFrame) -> str:
    """:func:`example_table` as CSV text: times with 2 decimals, integers, ``NA`` if missing."""
    table = example_table(df)
    out = pd.DataFrame(index=table.index)
    for col in table.columns:
        digits = 2 if col.endswith("months") else 0
        out[col] = ["NA" if pd.isna(v) else f"{v:.{digits}f}" for v in table[col]]
    return out.to_csv(index=False, lineterminator="\n")


def radiation_any(df: pd.DataFrame) -> np.ndarray:
    """1 where the patient had radiation (pre- or postoperative): the paper's surgery+radiation."""
    return (df["radiation"] != "none").to_numpy(int)


def adjuvant_any(df: pd.DataFrame) -> np.ndarray:
    """1 where the patient had chemotherapy and/or radiation (neoadjuvant or adjuvant)."""
    return ((df["radiation"] != "none") | (df["chemotherapy"] != "none")).to_numpy(int)


def r0r1_resection(df: pd.DataFrame) -> np.ndarray:
    """True where the margin is R0/R1 (macroscopically complete); False for R2 or unknown."""
    return (df["margin"] == "r0r1").to_numpy(bool)


MEMBER_COLUMN = "reconstruction"
"""Column of ``data/cohorts.csv`` numbering the ensemble's members 1..M."""


def load_ensemble(path: str | Path, limit: int | None = None) -> dict[int, pd.DataFrame]:
    """Read ``data/cohorts.csv``: cohorts in the schema stacked, told apart by ``reconstruction``
    (whole numbers >= 1). Returns member number -> validated cohort frame, in member order
    (``limit``: the first ``limit`` members only).

    Raises
    ------
    VlmsInputError
        A missing or non-integer ``reconstruction``, or any schema violation inside a member
        (the row named is the file's row).
    """
    name = str(path)
    raw = read_csv(path)
    if MEMBER_COLUMN not in raw.columns:
        raise VlmsInputError(
            "required column missing from the header", file=name, column=MEMBER_COLUMN
        )
    numbers = []
    for row, cell in enumerate(raw[MEMBER_COLUMN].tolist(), start=1):
        text = "" if is_missing(cell) else str(cell).strip()
        if not text.isdigit() or int(text) < 1:
            raise VlmsInputError(
                "must be a whole number >= 1", file=name, column=MEMBER_COLUMN, row=row
            )
        numbers.append(int(text))
    member = np.asarray(numbers)
    out: dict[int, pd.DataFrame] = {}
    for r in sorted(set(numbers))[:limit]:
        rows = np.flatnonzero(member == r)
        part = raw.iloc[rows].drop(columns=[MEMBER_COLUMN]).reset_index(drop=True)
        try:
            out[r] = validate_cohort(part, name)
        except VlmsInputError as exc:
            row = None if exc.row is None else int(rows[exc.row - 1]) + 1
            raise VlmsInputError(
                f"reconstruction {r}: {exc.message}", file=name, column=exc.column, row=row
            ) from None
    return out
