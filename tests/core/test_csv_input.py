"""The CSV reader's one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from analysis.core.csv_input import numeric_column, read_csv
from analysis.core.errors import VlmsInputError


def _write(tmp_path: Path, content: bytes | str, name: str = "x.csv") -> Path:
    p = tmp_path / name
    if isinstance(content, str):
        content = content.encode()
    p.write_bytes(content)
    return p


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("", "empty"),
        ("a;b\n1;2\n", "semicolon"),
        ("a,b\n", "no data rows"),
        ("a,a\n1,2\n", "twice"),
        ("a,b\n1,2,3\n", "fields"),
        (b"a,b\n1,\xff\n", "UTF-8"),
    ],
)
def test_read_csv_rejects(tmp_path: Path, content: str | bytes, needle: str) -> None:
    path = _write(tmp_path, content)
    with pytest.raises(VlmsInputError) as exc:
        read_csv(path)
    msg = str(exc.value)
    assert needle in msg
    assert str(path) in msg
    assert "\n" not in msg


def test_numeric_column_names_first_bad_row(tmp_path: Path) -> None:
    df = read_csv(_write(tmp_path, "t,e\n1,0\n2,1\nabc,1\n-1,0\n"))
    with pytest.raises(VlmsInputError) as exc:
        numeric_column(df, "t", "x.csv")
    assert exc.value.row == 3
    assert exc.value.column == "t"
    assert "abc" not in str(exc.value)  # values are never echoed


def test_numeric_column_missing(tmp_path: Path) -> None:
    df = read_csv(_write(tmp_path, "t,e\n1,0\n-2,1\n#N/A,1\n"))
    with pytest.raises(VlmsInputError, match="missing value") as exc:
        numeric_column(df, "t", "x.csv")
    assert exc.value.row == 3
    values = numeric_column(df, "t", "x.csv", allow_missing=True)
    assert values[:2].tolist() == [1.0, -2.0] and np.isnan(values[2])
