"""The cohort loader: one fixture per rule, each rejected with a one-line error naming
the column and the row; a valid cohort loads; end points are derived as documented."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.cohort import (
    COLUMNS,
    MET_COLUMNS,
    SCHEMA,
    dss,
    first_recurrence,
    load_cohort,
    rfs,
)
from analysis.core.errors import VlmsInputError
from tests.conftest import make_cohort_frame

Mutation = Callable[[pd.DataFrame], int]
"""Edits a valid frame in place to break one rule; returns the 0-based row it broke."""


def _first(df: pd.DataFrame, mask: pd.Series) -> int:
    rows = np.flatnonzero(mask.to_numpy(bool))
    assert rows.size, "the fixture cohort lacks a row this rule needs"
    return int(rows[0])


def _set(df: pd.DataFrame, mask: pd.Series, column: str, value: str) -> int:
    row = _first(df, mask)
    df.loc[df.index[row], column] = value
    return row


def _ivc(df: pd.DataFrame) -> pd.Series:
    return df["site"] == "ivc"


def _tma(df: pd.DataFrame) -> pd.Series:
    return df["tma"] == "1"


def _distant(df: pd.DataFrame) -> pd.Series:
    return df["recurrence"].isin(["distant", "local_distant"])


def _duplicate_id(df: pd.DataFrame) -> int:
    df.loc[df.index[5], "patient_id"] = df.loc[df.index[2], "patient_id"]
    return 5


def _recurrence_after_followup(df: pd.DataFrame) -> int:
    row = _first(df, df["recurrence"] != "none")
    follow = float(df.loc[df.index[row], "followup_months"])
    df.loc[df.index[row], "recurrence_months"] = str(follow + 1.0)
    return row


def _censored_time_differs(df: pd.DataFrame) -> int:
    row = _first(df, df["recurrence"] == "none")
    follow = float(df.loc[df.index[row], "followup_months"])
    df.loc[df.index[row], "recurrence_months"] = str(follow / 2)
    return row


def _distant_without_site(df: pd.DataFrame) -> int:
    row = _first(df, _distant(df))
    for col in MET_COLUMNS:
        df.loc[df.index[row], col] = "0"
    return row


def _site_without_distant(column: str) -> Mutation:
    return lambda df: _set(df, ~_distant(df), column, "1")


RULES: dict[str, tuple[Mutation, str, str]] = {
    # name: (mutation, column named in the error, words in the message)
    "duplicate id": (_duplicate_id, "patient_id", "duplicate"),
    "segment missing for ivc": (
        lambda df: _set(df, _ivc(df), "ivc_segment", ""),
        "ivc_segment",
        "required",
    ),
    "segment outside ivc": (
        lambda df: _set(df, ~_ivc(df), "ivc_segment", "2"),
        "ivc_segment",
        "empty unless",
    ),
    "management missing for ivc": (
        lambda df: _set(df, _ivc(df), "ivc_management", ""),
        "ivc_management",
        "required",
    ),
    "management outside ivc": (
        lambda df: _set(df, ~_ivc(df), "ivc_management", "ligation"),
        "ivc_management",
        "empty unless",
    ),
    "beta-catenin outside the tma": (
        lambda df: _set(df, ~_tma(df), "beta_catenin", "1"),
        "beta_catenin",
        "outside the TMA",
    ),
    "igf1r outside the tma": (
        lambda df: _set(df, ~_tma(df), "igf1r", "0"),
        "igf1r",
        "outside the TMA",
    ),
    "beta-catenin missing in the tma": (
        lambda df: _set(df, _tma(df), "beta_catenin", ""),
        "beta_catenin",
        "missing for a TMA",
    ),
    "igf1r missing in the tma": (
        lambda df: _set(df, _tma(df), "igf1r", ""),
        "igf1r",
        "missing for a TMA",
    ),
    "recurrence after follow-up": (
        _recurrence_after_followup,
        "recurrence_months",
        "after the end of follow-up",
    ),
    "censored time differs from follow-up": (
        _censored_time_differs,
        "recurrence_months",
        "must equal followup_months",
    ),
    "distant recurrence without a site": (_distant_without_site, "met_lung", "no metastatic"),
    "death from disease without recurrence": (
        lambda df: _set(df, df["recurrence"] == "none", "vital_status", "dead_disease"),
        "vital_status",
        "without a recorded recurrence",
    ),
    "zero follow-up and recurrence time": (
        lambda df: (
            _set(df, df["recurrence"] == "none", "followup_months", "0"),
            _set(df, df["recurrence"] == "none", "recurrence_months", "0"),
        )[0],
        "followup_months",
        "greater than 0",
    ),
    # cell-level rules
    "missing required value": (
        lambda df: _set(df, df["sex"] != "", "sex", ""),
        "sex",
        "missing value",
    ),
    "unknown category": (
        lambda df: _set(df, df["race"] != "", "race", "asian"),
        "race",
        "unknown category",
    ),
    "binary not 0/1": (
        lambda df: _set(df, df["tma"] != "", "resected_kidney", "2"),
        "resected_kidney",
        "0 or 1",
    ),
    "not a number": (
        lambda df: _set(df, df["age"] != "", "age", "sixty"),
        "age",
        "not a number",
    ),
    "not finite": (
        lambda df: _set(df, df["age"] != "", "age", "inf"),
        "age",
        "finite",
    ),
    "below minimum": (
        lambda df: _set(df, df["age"] != "", "age", "-3"),
        "age",
        "below the minimum",
    ),
    "above maximum": (
        lambda df: _set(df, df["age"] != "", "age", "130"),
        "age",
        "above the maximum",
    ),
}
RULES.update(
    {
        f"{col} without distant recurrence": (
            _site_without_distant(col),
            col,
            "without distant recurrence",
        )
        for col in MET_COLUMNS
    }
)


def _write(df: pd.DataFrame, tmp_path: Path) -> Path:
    path = tmp_path / "cohort.csv"
    df.to_csv(path, index=False)
    return path


def test_valid_cohort_loads(small_cohort_csv: Path) -> None:
    df = load_cohort(small_cohort_csv)
    assert list(df.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert len(df) == 40
    assert df["tma"].isin([0.0, 1.0]).all()
    assert df.loc[df["tma"] == 0, "beta_catenin"].isna().all()


def test_fixture_rows_exist_for_every_rule() -> None:
    # the random fixture must offer a row for every rule, or the rule tests test nothing
    df = make_cohort_frame()
    for mask in (_ivc(df), ~_ivc(df), _tma(df), ~_tma(df), _distant(df), ~_distant(df)):
        assert mask.any()
    assert (df["recurrence"] == "none").any()
    assert (df["recurrence"] != "none").any()


@pytest.mark.parametrize("rule", sorted(RULES))
def test_loader_rejects_each_rule(rule: str, tmp_path: Path) -> None:
    mutate, column, words = RULES[rule]
    df = make_cohort_frame()
    row = mutate(df)
    path = _write(df, tmp_path)
    with pytest.raises(VlmsInputError) as exc:
        load_cohort(path)
    err = exc.value
    message = str(err)
    assert words in message
    assert err.column == column
    assert err.row == row + 1  # 1-based data row
    assert str(path) in message
    assert "\n" not in message
    assert "SYN-" not in message  # identifiers are never echoed


def test_missing_column_is_named(tmp_path: Path) -> None:
    df = make_cohort_frame().drop(columns=["igf1r"])
    with pytest.raises(VlmsInputError, match="missing from the header") as exc:
        load_cohort(_write(df, tmp_path))
    assert exc.value.column == "igf1r"


def test_extra_columns_are_kept(tmp_path: Path) -> None:
    df = make_cohort_frame()
    df["synthetic"] = "1"
    loaded = load_cohort(_write(df, tmp_path))
    assert (loaded["synthetic"] == "1").all()


def test_every_schema_column_is_documented_or_obvious() -> None:
    assert len({c.name for c in SCHEMA}) == len(SCHEMA)
    for column in SCHEMA:
        assert column.kind in {"id", "category", "binary", "number"}
        if column.kind == "category":
            assert column.levels


def test_end_points(small_cohort_csv: Path) -> None:
    df = load_cohort(small_cohort_csv)
    t, e = dss(df)
    assert np.array_equal(e, (df["vital_status"] == "dead_disease").to_numpy(int))
    assert np.allclose(t, df["followup_months"])
    t, e = rfs(df)
    assert np.array_equal(e, (df["recurrence"] != "none").to_numpy(int))
    t, cause = first_recurrence(df)
    dead_first = (df["recurrence"] == "none") & (df["vital_status"] != "alive")
    assert (cause[dead_first.to_numpy()] == 4).all()
    assert np.allclose(t[dead_first.to_numpy()], df.loc[dead_first, "followup_months"])
    assert set(np.unique(cause)) <= {0, 1, 2, 3, 4}
