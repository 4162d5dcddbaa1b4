"""``vlms fit``: the registry run and any CSV, including every bad-input case."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.cli import main
from analysis.cohort import validate_cohort
from analysis.inference.registry import REGISTRY
from analysis.inference.runner import spec_seed
from analysis.inference.spec_data import spec_data
from tests.conftest import make_cohort_frame

FAST = ["--draws", "200", "--tune", "200", "--chains", "2", "--sampler", "pymc"]


def _write_csv(path: Path, n: int = 120, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2, n).astype(float)
    b = rng.normal(size=n)
    t = rng.exponential(30 * np.exp(-(0.6 * a - 0.3 * b)))
    c = rng.uniform(5, 90, n)
    df = pd.DataFrame(
        {
            "months": np.round(np.minimum(t, c), 3) + 0.01,
            "status": (t <= c).astype(int),
            "a": a,
            "b": np.round(b, 3),
        }
    )
    df["a"] = df["a"].astype(object)
    df.loc[[2, 7], "a"] = ""  # two rows with a missing covariate
    df.to_csv(path, index=False)
    return path


def test_csv_fit_writes_json_and_netcdf(tmp_path: Path) -> None:
    csv = _write_csv(tmp_path / "d.csv")
    out_json, out_nc = tmp_path / "r.json", tmp_path / "r.nc"
    args = ["fit", "--data", str(csv), "--time", "months", "--event", "status"]
    # nutpie at its defaults (compiled once per machine, then cached): PyMC with too few draws
    # would miss the bar and go through every remedy
    args += ["--covariates", "a,b", "--json", str(out_json), "--out", str(out_nc)]
    status = main(args)
    doc = json.loads(out_json.read_text())
    assert status == (0 if doc["diagnostics"]["meets_bar"] else 3)  # 3: bar missed after remedies
    assert doc["n"] == 120 and doc["n_dropped"] == 0  # the default imputes a (binary)
    assert doc["missing_covariates"] == {
        "missing": "impute",
        "rows_used": 120,
        "rows_dropped": 0,
        "values_imputed": {"a": 2, "b": 0},
    }
    assert doc["events"] == int(pd.read_csv(csv)["status"].sum())
    import arviz as az

    post = az.from_netcdf(str(out_nc)).posterior
    assert post.attrs["model_kind"] == "pem_imputed"
    assert post["p_missing_is_1"].sizes["missing_value"] == 2
    beta = post["beta"]
    for name in ("a", "b"):  # the JSON summarises the draws saved in the NetCDF, per covariate
        block, b = doc["covariates"][name], beta.sel(covariate=name).values.ravel()
        assert block["prob_hr_gt_1"] == pytest.approx(np.mean(b > 0), abs=1e-12)
        assert block["hr_median"] == pytest.approx(np.median(np.exp(b)), rel=1e-9)
        lower, upper = np.quantile(np.exp(b), [0.025, 0.975])
        assert (block["hr_lower"], block["hr_upper"]) == pytest.approx((lower, upper), rel=1e-9)
        assert block["log_hr_sd"] == pytest.approx(np.std(b, ddof=1), rel=1e-9)
    assert doc["covariates"]["a"]["prob_hr_gt_1"] > 0.9  # true HR exp(0.6)
    assert set(doc["diagnostics"]) >= {"max_rhat", "min_ess_bulk", "min_ess_tail", "divergences"}


def test_missing_drop_fits_complete_cases(tmp_path: Path) -> None:
    """``--missing drop``: the complete cases, counted (checked without sampling)."""
    from analysis.cli import build_parser
    from analysis.inference.fit_command import load_csv_input

    csv = _write_csv(tmp_path / "d.csv")
    base = ["fit", "--data", str(csv), "--time", "months", "--event", "status"]
    base += ["--covariates", "a,b"]
    dropped = load_csv_input(build_parser().parse_args([*base, "--missing", "drop"]))
    assert dropped.missing == "drop" and dropped.table.n_dropped == 2
    assert np.isfinite(dropped.table.covariates["a"]).all()
    kept = load_csv_input(build_parser().parse_args(base))
    assert kept.missing == "impute" and kept.table.n_dropped == 0
    assert kept.table.imputed == {"a": 2} and kept.table.not_imputable == ()  # b is not 0/1
    assert np.isnan(kept.table.covariates["a"]).sum() == 2


@pytest.fixture(scope="module")
def registry_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("registry")
    cohort = root / "cohort.csv"
    make_cohort_frame(n=63, seed=4).to_csv(cohort, index=False)
    out = root / "reports"
    args = ["fit", "--cohort", str(cohort), "--out-dir", str(out), *FAST]
    assert main([*args, "--only", "dss_overall,dss_radiation"]) == 0
    return out


def test_registry_outputs(registry_run: Path) -> None:
    fits = registry_run / "fits"
    assert sorted(p.name for p in fits.glob("*.nc")) == ["dss_overall.nc", "dss_radiation.nc"]
    log = pd.read_csv(fits / "fit_log.csv")
    assert set(log.columns) >= {"name", "compile_seconds", "sampling_seconds", "ess_per_second"}
    summary = pd.read_csv(fits / "dss_radiation.summary.csv", index_col=0)
    import arviz as az

    idata = az.from_netcdf(str(fits / "dss_radiation.nc"))
    hr = idata.posterior["hr"].sel(covariate="radiation").values.ravel()
    row = summary.loc["hr[radiation]"]  # the summary describes the draws saved beside it
    assert row["prob_gt_1"] == pytest.approx(np.mean(hr > 1), abs=1e-12)
    assert row["median"] == pytest.approx(np.median(hr), rel=1e-9)
    assert row["mean"] == pytest.approx(np.mean(hr), rel=1e-9)
    attrs = idata.posterior.attrs
    assert attrs["endpoint"] == "dss" and attrs["subset"] == "all" and attrs["n"] == 63
    assert attrs["seed"] == spec_seed(20260101, "dss_radiation")
    assert "version_pymc" in attrs and len(attrs["cut_points_months"]) == 8
    assert idata.log_likelihood.sizes["patient"] == 63
    overall = az.from_netcdf(str(fits / "dss_overall.nc"))
    assert "beta" not in overall.posterior  # spare slots are dropped
    assert list(overall.posterior["survival"].coords["pattern"].values) == ["all"]


def test_diagnose_on_saved_fits(registry_run: Path) -> None:
    assert main(["diagnose", "--out-dir", str(registry_run)]) == 0
    text = (registry_run / "diagnostics.md").read_text()
    assert "dss_radiation" in text and "dss_overall" in text
    assert (registry_run / "figures" / "trace_dss_radiation.png").stat().st_size > 0
    assert (registry_run / "figures" / "prior_survival_dss_overall.png").stat().st_size > 0


def test_registry_specs_build_data() -> None:
    df = validate_cohort(make_cohort_frame(n=63, seed=4), "x")
    names = [s.name for s in REGISTRY]
    assert len(names) == len(set(names))
    for spec in REGISTRY:
        data = spec_data(spec, df)
        expected = {
            "all": 63,
            "tma": int((df["tma"] == 1).sum()),
            "r0r1": int((df["margin"] == "r0r1").sum()),
        }[spec.subset]
        assert data.n + data.n_dropped == expected
        assert data.x.shape[1] == len(spec.covariates)


# --------------------------------------------------------------------------- bad input


def _bad_cases(tmp: Path) -> dict[str, tuple[list[str], str]]:
    good = _write_csv(tmp / "good.csv")
    df = pd.read_csv(good, keep_default_na=False, dtype=str)

    def variant(name: str, column: str, row: int, value: str) -> str:
        d = df.copy()
        d.loc[row, column] = value
        path = tmp / f"{name}.csv"
        d.to_csv(path, index=False)
        return str(path)

    constant = df.copy()
    constant["a"] = "1"
    constant.to_csv(tmp / "constant.csv", index=False)
    no_events = df.copy()
    no_events["status"] = "0"
    no_events.to_csv(tmp / "no_events.csv", index=False)
    all_missing = df.copy()
    all_missing["a"] = ""
    all_missing.to_csv(tmp / "all_missing.csv", index=False)
    (tmp / "semicolon.csv").write_text("months;status\n1;0\n")
    base = ["--time", "months", "--event", "status", "--covariates", "a,b"]
    g = str(good)
    return {
        "missing file": (["--data", str(tmp / "nope.csv"), *base], "file not found"),
        "missing time column": (
            ["--data", g, "--time", "t", "--event", "status"],
            "column 't'",
        ),
        "missing covariate column": (
            ["--data", g, "--time", "months", "--event", "status", "--covariates", "zz"],
            "column 'zz'",
        ),
        "no --time": (["--data", g, "--event", "status"], "--time and --event"),
        "text time": (["--data", variant("tt", "months", 3, "soon"), *base], "not a number"),
        "zero time": (["--data", variant("zt", "months", 3, "0"), *base], "greater than 0"),
        "missing time": (["--data", variant("mt", "months", 3, ""), *base], "missing value"),
        "event code 2": (["--data", variant("e2", "status", 4, "2"), *base], "event code"),
        "text covariate": (["--data", variant("tc", "b", 5, "high"), *base], "not a number"),
        "constant covariate": (["--data", str(tmp / "constant.csv"), *base], "single value"),
        "no events": (["--data", str(tmp / "no_events.csv"), *base], "no events"),
        "all rows dropped": (
            ["--data", str(tmp / "all_missing.csv"), *base, "--missing", "drop"],
            "every row",
        ),
        "all values missing": (["--data", str(tmp / "all_missing.csv"), *base], "single value"),
        "semicolons": (
            ["--data", str(tmp / "semicolon.csv"), "--time", "months", "--event", "status"],
            "semicolon",
        ),
        "cuts not from 0": (["--data", g, *base, "--cuts", "1,6,12"], "--cuts"),
        "cuts decreasing": (["--data", g, *base, "--cuts", "0,12,6"], "--cuts"),
        "prior sd 0": (["--data", g, *base, "--prior-sd", "0"], "--prior-sd"),
        "draws 0": (["--data", g, *base, "--draws", "0"], "--draws"),
        "target accept 1": (["--data", g, *base, "--target-accept", "1"], "--target-accept"),
        "competing code 10": (
            ["--data", variant("c10", "status", 4, "10"), *base, "--competing"],
            "event code",
        ),
        "competing negative code": (
            ["--data", variant("cneg", "status", 4, "-1"), *base, "--competing"],
            "event code",
        ),
        "bad --times": (["--data", g, *base, "--times=-5,12"], "--times"),
    }


def test_every_bad_input_is_one_line_exit_2_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = _bad_cases(tmp_path)
    out = tmp_path / "out"
    for name, (args, needle) in cases.items():
        full = ["fit", *args, "--json", str(out / "r.json"), "--out", str(out / "r.nc")]
        status = main(full)
        err = capsys.readouterr().err.strip()
        assert status == 2, name
        assert len(err.splitlines()) == 1, (name, err)
        assert needle in err, (name, err)
        assert not out.exists(), name


def test_unknown_registry_name_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["fit", "--only", "no_such_model", "--out-dir", str(tmp_path / "r")])
    assert status == 2
    assert "no_such_model" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
