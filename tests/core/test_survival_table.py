"""The one reader of ``vlms check --data`` and ``vlms fit --data``: its rules and its messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from analysis.core.csv_input import is_missing
from analysis.core.errors import VlmsInputError
from analysis.core.survival_table import load_survival_table, report_times


def _table(tmp_path: Path, text: str, **kw: object):
    path = tmp_path / "d.csv"
    path.write_text(text)
    args = {"time": "t", "event": "e", **kw}
    return load_survival_table(path, **args)  # type: ignore[arg-type]


def _error(tmp_path: Path, text: str, **kw: object) -> VlmsInputError:
    with pytest.raises(VlmsInputError) as info:
        _table(tmp_path, text, **kw)
    assert "\n" not in str(info.value)
    return info.value


@pytest.mark.parametrize("marker", ["", "NA", "#N/A", "N/A", "na", "NaN", "NULL", "."])
def test_spreadsheet_missing_markers_are_missing(marker: str) -> None:
    assert is_missing(marker) and is_missing(f" {marker} ")


def test_missing_covariates_and_group_drop_rows_and_are_counted(tmp_path: Path) -> None:
    text = "t,e,x,z,g\n1,1,1,5,a\n2,0,NA,6,b\n3,1,0,#N/A,a\n4,1,,,b\n5,0,1,7,\n6,1,0,8,b\n"
    table = _table(tmp_path, text, covariates=["x", "z"], group="g")
    assert table.n_read == 6 and table.n == 2 and table.n_dropped == 4
    assert table.dropped == {"x": 2, "z": 2, "g": 1}
    np.testing.assert_array_equal(table.time, [1.0, 6.0])
    np.testing.assert_array_equal(table.covariates["z"], [5.0, 8.0])
    assert table.notes()[0] == (
        "6 rows read, 4 dropped for a missing value (x: 2, z: 2, g: 1); 2 analysed"
    )


def test_time_zero_is_refused_with_the_fix(tmp_path: Path) -> None:
    exc = _error(tmp_path, "t,e\n1,1\n0,1\n3,0\n")
    assert (exc.column, exc.row) == ("t", 2)
    assert "greater than 0" in exc.message and "small positive time" in exc.message


def test_report_times_allow_zero_and_refuse_negatives() -> None:
    assert report_times([24, 0, 12, 12], "f") == [0.0, 12.0, 24.0]
    assert report_times(None, "f") is None
    with pytest.raises(VlmsInputError, match="--times"):
        report_times([-1.0], "f")


@pytest.mark.parametrize(
    ("cells", "competing", "needles"),
    [
        (["dead", "alive", "dead"], False, ["0 = censored, 1 = event", "as.integer", "astype"]),
        (["True", "False", "True"], False, ["True/False", "True as 1 and False as 0"]),
        (["yes", "no", "yes"], False, ["True/False (or yes/no)"]),
        (["local", "none", "distant"], True, ["1..K = the cause", ".map("]),
        (["2", "1", "2"], False, ["R's Surv() coding", "subtract 1", "codes found: 1, 2"]),
        (["0", "1", "2"], False, ["add --competing", "codes found: 0, 1, 2"]),
        (["0", "-1", "1"], False, ["allowed set {0, 1}", "codes found: -1, 0, 1"]),
        (["0", "12", "1"], True, ["allowed set {0..9}"]),
        (["0", "0.5", "1"], False, ["whole number"]),
    ],
)
def test_event_codings_lead_to_the_fix(
    tmp_path: Path, cells: list[str], competing: bool, needles: list[str]
) -> None:
    text = "t,e\n" + "".join(f"{i + 1},{c}\n" for i, c in enumerate(cells))
    exc = _error(tmp_path, text, competing=competing)
    assert exc.column == "e" and exc.row is not None
    for needle in needles:
        assert needle in exc.message, exc.message


def test_event_messages_never_echo_cells(tmp_path: Path) -> None:
    exc = _error(tmp_path, "t,e\n1,0\n2,SECRET-77\n")
    assert "SECRET" not in str(exc) and exc.row == 2


def test_wrong_column_names_the_nearest_ones(tmp_path: Path) -> None:
    exc = _error(tmp_path, "week,arrest,age\n1,1,20\n2,0,30\n", time="weeks", event="arrest")
    assert exc.column == "weeks" and "did you mean 'week'?" in exc.message
    exc = _error(tmp_path, "week,arrest,age\n1,1,20\n2,0,30\n", time="week", event="Arest")
    assert "'arrest'" in exc.message
    exc = _error(tmp_path, "week,arrest,age\n1,1,20\n2,0,30\n", time="zzz", event="arrest")
    assert "the header has 'week', 'arrest', 'age'" in exc.message


def test_cause_codes_that_skip_a_number_keep_their_codes(tmp_path: Path) -> None:
    text = "t,e,x\n1,1,0\n2,3,1\n3,0,1\n4,3,0\n5,1,1\n6,2,NA\n"
    table = _table(tmp_path, text, competing=True, covariates=["x"])
    assert table.causes == (1, 3)
    assert "cause codes found: 1, 3 (no analysed row is coded 2)" in table.notes()[1]


def test_no_events_after_dropping(tmp_path: Path) -> None:
    exc = _error(tmp_path, "t,e,x\n1,1,NA\n2,0,1\n3,0,0\n", covariates=["x"])
    assert exc.column == "e" and "no events among the analysed rows" in exc.message
