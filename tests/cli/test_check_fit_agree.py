"""``vlms check`` and ``vlms fit`` accept and refuse the same files, with the same words.

Refused files must give both commands the same one-line error (exit 2, nothing written);
accepted ones must give both the same reading (rows dropped, causes). Nothing here samples: a
refused fit stops before compiling, and an accepted one is checked through fit's own loader.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from analysis.cli import build_parser, main
from analysis.inference.fit_command import load_csv_input

GOOD = "t,e,c,x,g\n1,1,1,0.5,a\n2,0,0,1.5,b\n3,1,3,2.5,a\n4,1,1,0.1,b\n5,0,0,0.7,a\n6,1,3,1.1,b\n"


def _variant(tmp_path: Path, column: str, row: int, value: str, name: str) -> Path:
    lines = GOOD.strip().split("\n")
    header = lines[0].split(",")
    cells = lines[row].split(",")
    cells[header.index(column)] = value
    lines[row] = ",".join(cells)
    path = tmp_path / f"{name}.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


REFUSED = {
    "time 0": ("t", 2, "0", [], "greater than 0"),
    "event dead/alive": ("e", 1, "dead", [], "0 = censored, 1 = event"),
    "event True/False": ("e", 1, "True", [], "True/False"),
    "R's 1/2 coding": ("e", 2, "2", [], "R's Surv() coding"),
    "codes 0..2 without --competing": ("e", 2, "2", [], "add --competing"),
    "cause 12": ("c", 2, "12", ["--competing"], "allowed set {0..9}"),
    "wrong column": (None, 0, "", ["--covariates", "xx"], "did you mean 'x'?"),
    "--times -1": (None, 0, "", ["--times=-1"], "--times must be finite and not negative"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_alike(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    column, row, value, extra, needle = REFUSED[case]
    if case == "R's 1/2 coding":
        path = tmp_path / "r.csv"
        path.write_text(GOOD.replace(",1,", ",2,").replace(",0,", ",1,"))
    elif column is None:
        path = tmp_path / "good.csv"
        path.write_text(GOOD)
    else:
        path = _variant(tmp_path, column, row, value, "bad")
    event = "c" if "--competing" in extra else "e"
    base = ["--data", str(path), "--time", "t", "--event", event, *extra]
    messages = []
    for command in ("check", "fit"):
        out = tmp_path / command
        status = main([command, *base, "--json", str(out / "r.json")])
        err = capsys.readouterr().err.strip().splitlines()
        assert status == 2, (command, err)
        assert len(err) == 1 and needle in err[0], (command, err)
        assert not out.exists()
        messages.append(err[0].split(": error: ", 1)[1])
    assert messages[0] == messages[1]


def _fit_args(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(["fit", *argv])


def test_accepted_alike(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Missing covariates (NA, #N/A, empty) are dropped and counted by both; causes 1 and 3
    keep their codes in both; ``--times 0`` is accepted by both."""
    path = _variant(tmp_path, "x", 2, "#N/A", "m")
    text = path.read_text().replace("0.1", "NA")
    path.write_text(text)
    argv = ["--data", str(path), "--time", "t", "--event", "c", "--competing"]
    argv += ["--covariates", "x", "--times", "0,2"]
    assert main(["check", *argv]) == 0
    out = capsys.readouterr().out
    note = "6 rows read, 2 dropped for a missing value (x: 2); 4 analysed"
    assert note in out and "cause codes found: 1, 3 (no analysed row is coded 2)" in out
    assert "cause 2" not in out
    fit_in = load_csv_input(_fit_args(argv))
    assert fit_in.table.notes()[0] == note and fit_in.table.causes == (1, 3)
    # fit's default --missing impute cannot impute a numeric x: it drops and says why
    assert fit_in.table.not_imputable == ("x",) and "not 0/1" in fit_in.table.notes()[1]
    assert fit_in.times.tolist() == [0.0, 2.0]
