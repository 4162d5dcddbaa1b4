"""``vlms fit --data``: every output says what it means, a failed fit looks failed, and a user's
own fit gets the registry's review (``vlms diagnose --fit``, ``vlms report --fit``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.cli import main

CLEAN = ["--draws", "500", "--tune", "500", "--chains", "4", "--sampler", "pymc", "--seed", "2"]
TINY = ["--draws", "20", "--tune", "20", "--chains", "2", "--sampler", "pymc"]


def write_cohort(path: Path, n: int = 160, seed: int = 0) -> Path:
    """Months, a 0/1 status, a binary covariate with two missing cells and a calendar year."""
    rng = np.random.default_rng(seed)
    arm = rng.integers(0, 2, n).astype(float)
    year = rng.integers(1990, 2015, n).astype(float)
    t = rng.exponential(30 * np.exp(-(0.6 * arm - 0.04 * (year - 2000))))
    c = rng.uniform(5, 90, n)
    df = pd.DataFrame(
        {
            "months": np.round(np.minimum(t, c), 2) + 0.01,
            "status": (t <= c).astype(int),
            "arm": arm.astype(int).astype(object),
            "year": year.astype(int),
        }
    )
    df.loc[[3, 8], "arm"] = ["NA", "#N/A"]
    df.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def clean_fit(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("own")
    csv = write_cohort(root / "mine.csv")
    args = ["fit", "--data", str(csv), "--time", "months", "--event", "status"]
    args += ["--covariates", "arm,year", "--times", "0,12,24", "--missing", "drop", *CLEAN]
    args += ["--json", str(root / "r.json"), "--out", str(root / "r.nc")]
    return {"root": root, "csv": csv, "args": args}


def test_clean_fit_explains_itself(clean_fit: dict, capsys: pytest.CaptureFixture[str]) -> None:
    root: Path = clean_fit["root"]  # type: ignore[assignment]
    status = main(clean_fit["args"])  # type: ignore[arg-type]
    out = capsys.readouterr().out
    doc = json.loads((root / "r.json").read_text())
    assert status == 0 and doc["diagnostics"]["meets_bar"], doc["diagnostics"]
    assert "MISSED" not in out and "sampling bar met" in out
    # what the numbers came from and what they mean
    assert doc["file"] == "mine.csv" and doc["time_column"] == "months"
    assert doc["event_column"] == "status" and doc["time_unit"] == "months"
    assert (
        doc["n_read"] == 160
        and doc["n_dropped"] == 2
        and doc["dropped_by_column"]
        == {
            "arm": 2,
            "year": 0,
        }
    )
    assert "2 dropped for a missing value (arm: 2)" in doc["notes"][0]
    assert doc["intervals"].startswith("95% equal-tailed")
    year = doc["covariates"]["year"]
    assert year["coding"]["kind"] == "numeric" and year["coding"]["center"] == pytest.approx(
        pd.read_csv(clean_fit["csv"], na_values=["#N/A"]).dropna()["year"].mean()
    )
    assert year["per_scale"]["per"].startswith("1 SD = ")
    assert np.log(year["per_scale"]["hr_median"]) == pytest.approx(
        np.log(year["hr_median"]) * year["coding"]["scale"], rel=0.05
    )
    assert doc["covariates"]["arm"]["coding"] == {
        "kind": "binary",
        "center": 0.0,
        "scale": 1.0,
        "scale_is": "1 unit",
    }
    assert "per_scale" not in doc["covariates"]["arm"]
    assert doc["survival"]["meaning"].startswith("averaged over the patients' covariates")
    # the console: cut points, HRs per unit and per SD, survival at --times
    cuts = ", ".join(f"{c:g}" for c in doc["cut_points"])
    assert f"cut points (months): {cuts}\n" in out and cuts.startswith("0, ")
    assert "year: HR" in out and "per 1 SD = " in out
    for t in ("0", "12", "24"):
        assert f"at {t} months: " in out
    assert "at 0 months: 1.000 (95% 1.000-1.000)" in out
    # the NetCDF records the same, and the file name but not the file's rows
    from analysis.inference.diagnostics import load_fit

    idata = load_fit(root / "r.nc")
    attrs = idata.posterior.attrs
    assert attrs["source_file"] == "mine.csv" and attrs["time_column"] == "months"
    assert attrs["event_column"] == "status" and attrs["time_unit"] == "months"
    assert "centred at its mean" in attrs["covariate_centring"]
    assert attrs["intervals"].startswith("95% equal-tailed")
    assert "averaged" in idata.posterior["survival_averaged"].attrs["meaning"]
    assert "observed_data" not in idata.groups()
    assert "patient" not in idata.constant_data.dims
    np.testing.assert_allclose(idata.constant_data["x_scale"].values[0], 1.0)


def test_diagnose_and_report_accept_a_users_fit(
    clean_fit: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root: Path = clean_fit["root"]  # type: ignore[assignment]
    if not (root / "r.nc").exists():
        main(clean_fit["args"])  # type: ignore[arg-type]
    assert main(["diagnose", "--fit", str(root / "r.nc")]) == 0
    assert "| r | 2000 |" in capsys.readouterr().out
    assert (root / "r.diagnostics.md").is_file()
    for kind in ("trace", "rank", "energy", "prior_survival"):
        assert (root / "figures" / f"{kind}_r.png").stat().st_size > 0
    out = tmp_path / "page"
    assert main(["report", "--fit", str(root / "r.nc"), "--out-dir", str(out)]) == 0
    page = (out / "r.html").read_text()
    assert "Hazard ratios" in page and "mine.csv" in page and "per SD" in page
    assert page.count("data:image/png;base64,") == 5  # curve, trace, rank, energy, prior
    assert "MISSED" not in page
    assert main(["diagnose", "--fit", str(tmp_path / "nope.nc")]) == 2


def test_a_failed_fit_says_so_next_to_its_numbers_and_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Twenty draws cannot meet the bar; a covariate that separates the events from the rest
    (monotone likelihood) gets a note that the prior decides its HR."""
    df = pd.read_csv(write_cohort(tmp_path / "d.csv"), dtype=str, keep_default_na=False)
    df["marker"] = df["status"]  # every event has marker 1: the data set no upper bound
    df.to_csv(tmp_path / "d.csv", index=False)
    args = ["fit", "--data", str(tmp_path / "d.csv"), "--time", "months", "--event", "status"]
    args += ["--covariates", "marker", *TINY, "--json", str(tmp_path / "r.json")]
    args += ["--out", str(tmp_path / "r.nc"), "--no-remedies"]  # the ladder: test_fit_time_scale
    assert main(args) == 3
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("SAMPLING BAR MISSED (") and lines[-1] == lines[0]
    assert "do not use them" in lines[0]
    assert any(line.startswith("  marker: HR") for line in lines)
    assert any("monotone likelihood" in line and "prior" in line for line in lines)
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["diagnostics"]["meets_bar"] is False
    assert [a["remedy"] for a in doc["remedies"]] == ["none"]  # --no-remedies: no refit
    assert doc["status"].startswith("SAMPLING BAR MISSED")
    assert "monotone likelihood" in doc["covariates"]["marker"]["note"]
    from analysis.inference.diagnostics import load_fit

    attrs = load_fit(tmp_path / "r.nc").posterior.attrs
    assert attrs["status"].startswith("SAMPLING BAR MISSED")
    assert "monotone likelihood" in attrs["covariate_notes"]


def test_competing_causes_keep_their_codes_and_cifs_say_they_are_averaged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Codes 0/1/3: no invented cause 2; each cause keyed by its own code."""
    df = pd.read_csv(write_cohort(tmp_path / "d.csv"), dtype=str, keep_default_na=False)
    rng = np.random.default_rng(4)
    df["cause"] = np.where(df["status"] == "1", rng.choice([1, 3], len(df)), 0)
    df.to_csv(tmp_path / "d.csv", index=False)
    args = ["fit", "--data", str(tmp_path / "d.csv"), "--time", "months", "--event", "cause"]
    args += ["--competing", "--covariates", "year", "--times", "12,36"]
    args += ["--draws", "200", "--tune", "200", "--chains", "2", "--sampler", "pymc"]
    # one attempt: the causes' codes do not depend on the sampling bar (PyMC's refits would
    # compile the centred structure too)
    status = main([*args, "--json", str(tmp_path / "c.json"), "--no-remedies"])
    out = capsys.readouterr().out
    doc = json.loads((tmp_path / "c.json").read_text())
    assert status == (0 if doc["diagnostics"]["meets_bar"] else 3)
    assert set(doc["causes"]) == {"1", "3"}
    assert "cause 2" not in out and "cause 3 (" in out
    assert any("no analysed row is coded 2" in n for n in doc["notes"])
    assert doc["causes"]["3"]["events"] == int((df["cause"] == 3).sum())
    assert doc["causes"]["1"]["cif"]["meaning"].startswith("averaged over the patients'")
    assert "cumulative incidence, averaged over the patients' covariates" in out
    assert "at 36 months: " in out
