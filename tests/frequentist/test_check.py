"""``vlms check --data``: outputs on a small CSV and the bad-input contract."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.cli import main
from analysis.frequentist import estimators as fq


def _frame(n: int = 30, seed: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, n)
    return pd.DataFrame(
        {
            "months": np.round(rng.exponential(30 / np.exp(0.7 * x)), 1),
            "status": (rng.random(n) < 0.7).astype(int),
            "cause": rng.integers(0, 3, n),
            "marker": x,
            "age": rng.integers(30, 80, n),
            "arm": rng.choice(["a", "b"], n),
        }
    )


@pytest.fixture
def csv_path(tmp_path: Path) -> Path:
    path = tmp_path / "study.csv"
    _frame().to_csv(path, index=False)
    return path


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["check", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_has_every_promised_field(
    csv_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json = tmp_path / "out.json"
    args = [
        "--data",
        str(csv_path),
        "--time",
        "months",
        "--event",
        "status",
        "--group",
        "arm",
        "--covariates",
        "marker,age",
        "--times",
        "12,24",
        "--json",
        str(out_json),
    ]
    code, out, err = _run(args, capsys)
    assert code == 0, err
    assert "Log-rank" in out and "Cox, multivariable" in out
    res = json.loads(out_json.read_text())
    df = _frame()
    assert res["n"] == 30 and res["events"] == int(df["status"].sum())
    assert set(res["km"]) == {"all", "arm=a", "arm=b"}
    for stratum in res["km"].values():
        for key in (
            "times",
            "survival",
            "lower",
            "upper",
            "n_at_risk",
            "median",
            "median_lower",
            "median_upper",
            "conf_type",
        ):
            assert key in stratum
        assert stratum["times"] == [12.0, 24.0]
    a = df["arm"] == "a"
    km_a = fq.kaplan_meier(df.loc[a, "months"], df.loc[a, "status"], [12, 24])
    assert res["km"]["arm=a"]["survival"] == pytest.approx(km_a.survival)
    lr = fq.logrank(df["months"], df["status"], df["arm"])
    assert res["logrank"] == pytest.approx({"chisq": lr.chisq, "df": 1, "p": lr.p})
    for block in ("cox", "cox_multivariable"):
        assert set(res[block]) == {"marker", "age"}
        for term in res[block].values():
            for key in ("hr", "lower", "upper", "p", "lr_p"):
                assert isinstance(term[key], float)
    uni = fq.cox(df["months"], df["status"], {"marker": df["marker"]}).terms["marker"]
    assert res["cox"]["marker"]["hr"] == pytest.approx(uni.hr, rel=1e-10)
    assert "cif" not in res


def test_log_conf_type_changes_intervals(
    csv_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = {}
    for conf in ("log", "log-log"):
        out_json = tmp_path / f"{conf}.json"
        code, _, _ = _run(
            [
                "--data",
                str(csv_path),
                "--time",
                "months",
                "--event",
                "status",
                "--times",
                "24",
                "--conf-type",
                conf,
                "--json",
                str(out_json),
            ],
            capsys,
        )
        assert code == 0
        results[conf] = json.loads(out_json.read_text())["km"]["all"]
    assert results["log"]["conf_type"] == "log"
    assert results["log"]["survival"] == results["log-log"]["survival"]
    assert results["log"]["lower"] != results["log-log"]["lower"]


def test_competing_risks_output(
    csv_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json = tmp_path / "cr.json"
    code, out, err = _run(
        [
            "--data",
            str(csv_path),
            "--time",
            "months",
            "--event",
            "cause",
            "--competing",
            "--times",
            "10,30",
            "--covariates",
            "marker",
            "--json",
            str(out_json),
        ],
        capsys,
    )
    assert code == 0, err
    res = json.loads(out_json.read_text())
    assert set(res["cif"]) == {"1", "2"}
    for c in res["cif"].values():
        assert set(c) >= {"times", "cif", "lower", "upper"}
        assert all(
            lo <= v <= hi for v, lo, hi in zip(c["cif"], c["lower"], c["upper"], strict=True)
        )
    assert set(res["cause_specific_cox"]) == {"1", "2"}
    assert "Aalen-Johansen" in out


def test_monotone_covariate_printed_as_infinite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mono.csv"
    pd.DataFrame(
        {"t": [1, 2, 3, 4, 5, 6], "e": [1, 1, 0, 1, 0, 0], "x": [1, 1, 0, 1, 0, 1]}
    ).to_csv(path, index=False)
    out_json = tmp_path / "mono.json"
    code, out, _ = _run(
        [
            "--data",
            str(path),
            "--time",
            "t",
            "--event",
            "e",
            "--covariates",
            "x",
            "--json",
            str(out_json),
        ],
        capsys,
    )
    assert code == 0
    assert "infinite (monotone likelihood)" in out
    term = json.loads(out_json.read_text())["cox"]["x"]
    assert term["hr"] == "inf" and term["monotone"] is True and term["lower"] is None


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    return path


GOOD = "months,status,arm\n3,1,a\n5,0,b\n7,1,a\n9,1,b\n"


@pytest.mark.parametrize(
    ("text", "extra", "expected"),
    [
        (GOOD, ["--time", "weeks", "--event", "status"], ["column 'weeks'", "no such column"]),
        (
            "months,status\n3,1\n5,0\nsoon,1\n",
            ["--time", "months", "--event", "status"],
            ["column 'months'", "row 3", "not a number"],
        ),
        (
            "months,status\n3,1\n-5,0\n",
            ["--time", "months", "--event", "status"],
            ["column 'months'", "row 2", "greater than 0"],
        ),
        (
            "months,status\n3,1\n,0\n",
            ["--time", "months", "--event", "status"],
            ["column 'months'", "row 2", "missing"],
        ),
        (
            "months,status\n3,1\n5,2\n",
            ["--time", "months", "--event", "status"],
            ["column 'status'", "row 2", "allowed set"],
        ),
        (
            "months,status\n3,1\n5,12\n",
            ["--time", "months", "--event", "status", "--competing"],
            ["column 'status'", "row 2", "allowed set"],
        ),
        ("", ["--time", "months", "--event", "status"], ["empty"]),
        (
            "months,status,arm\n3,1,a\n5,0,a\n",
            ["--time", "months", "--event", "status", "--group", "arm"],
            ["column 'arm'", "single level"],
        ),
        (
            "months,status\n3,0\n5,0\n",
            ["--time", "months", "--event", "status"],
            ["column 'status'", "no events"],
        ),
        (GOOD, ["--event", "status"], ["--time and --event are required"]),
        (
            "months,status,x\n3,1,1\n5,0,1\n",
            ["--time", "months", "--event", "status", "--covariates", "x"],
            ["column 'x'", "single value"],
        ),
        (GOOD, ["--time", "months", "--event", "status", "--times", "-1"], ["--times"]),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    extra: list[str],
    expected: list[str],
) -> None:
    path = _write(tmp_path, text)
    out_json = tmp_path / "never.json"
    code, _, err = _run(["--data", str(path), *extra, "--json", str(out_json)], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert str(path) in lines[0] or "bad.csv" in lines[0]
    for fragment in expected:
        assert fragment in lines[0]
    assert not out_json.exists()
    assert list(tmp_path.glob("*.tmp")) == []


def test_no_patient_values_in_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, "months,status\n3,1\nSECRET-ID-77,1\n")
    code, _, err = _run(["--data", str(path), "--time", "months", "--event", "status"], capsys)
    assert code == 2 and "SECRET" not in err


def test_nan_and_infinity_in_json_are_valid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "t,e\n1,1\n2,0\n3,0\n")
    out_json = tmp_path / "o.json"
    code, out, _ = _run(
        ["--data", str(path), "--time", "t", "--event", "e", "--json", str(out_json)], capsys
    )
    assert code == 0
    text = out_json.read_text()
    assert "NaN" not in text and "Infinity" not in text
    res = json.loads(text)
    assert res["km"]["all"]["median"] is None  # not reached
    assert "NR" in out
    assert math.isclose(res["km"]["all"]["survival"][0], 2 / 3)
