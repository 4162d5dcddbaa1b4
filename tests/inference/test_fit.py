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
from analysis.inference.runner import cohort_only, registry_jobs, spec_seed
from analysis.inference.spec_data import spec_data
from tests.conftest import make_cohort_frame
from tests.ensemble_helpers import write_ensemble

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
    from analysis.inference.diagnostics import load_fit

    post = load_fit(out_nc).posterior
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
    """Two registry models on a cohort and on a stand-in ensemble of 3 members, and the
    illness-death fit beside the cohort's fits (nutpie, the default draws: every fit must meet
    the bar)."""
    root = tmp_path_factory.mktemp("registry")
    cohort = root / "cohort.csv"
    make_cohort_frame(n=63, seed=4).to_csv(cohort, index=False)
    ensemble = write_ensemble(root / "cohorts.csv", members=3, seed=10)
    out = root / "reports"
    args = ["fit", "--cohort", str(cohort), "--ensemble", str(ensemble), "--out-dir", str(out)]
    assert main([*args, "--only", "dss_overall,dss_radiation,illness_death"]) == 0
    return out


def test_registry_outputs(registry_run: Path) -> None:
    fits = registry_run / "fits"
    names = ["dss_overall.nc", "dss_radiation.nc", "illness_death.nc"]
    assert sorted(p.name for p in fits.glob("*.nc")) == names
    log = pd.read_csv(fits / "fit_log.csv")
    assert set(log.columns) >= {"name", "compile_seconds", "sampling_seconds", "ess_per_second"}
    # the cohort fits in registry order, then the multi-state fit (sampled beside them)
    assert list(log["name"]) == ["dss_radiation", "dss_overall", "illness_death"]
    assert not (fits / "ensemble" / "illness_death.nc").exists()  # on the cohort only
    batches = pd.read_csv(fits / "batch_log.csv")
    assert batches["fits"].sum() >= 2 * 3  # stacked: two models on three members
    summary = pd.read_csv(fits / "dss_radiation.summary.csv", index_col=0)
    from analysis.inference.diagnostics import load_fit

    idata = load_fit(fits / "dss_radiation.nc")
    hr = idata.posterior["hr"].sel(covariate="radiation").values.ravel()
    row = summary.loc["hr[radiation]"]  # the summary describes the draws saved beside it
    assert row["prob_gt_1"] == pytest.approx(np.mean(hr > 1), abs=1e-12)
    assert row["median"] == pytest.approx(np.median(hr), rel=1e-9)
    assert row["mean"] == pytest.approx(np.mean(hr), rel=1e-9)
    attrs = idata.posterior.attrs
    assert attrs["endpoint"] == "dss" and attrs["subset"] == "all" and attrs["n"] == 63
    assert attrs["seed"] == spec_seed(20260101, "dss_radiation") and "batch" not in attrs
    assert attrs["target_accept"] == 0.99  # the registry entry's own (FitSpec.target_accept)
    assert "version_pymc" in attrs and len(attrs["cut_points_months"]) == 8
    assert idata.log_likelihood.sizes["patient"] == 63
    overall = load_fit(fits / "dss_overall.nc")
    assert "beta" not in overall.posterior  # spare slots are dropped
    assert list(overall.posterior["survival"].coords["pattern"].values) == ["all"]
    assert "prior_sensitivity.csv" not in {p.name for p in fits.iterdir()}  # not all Table 2


def test_ensemble_outputs(registry_run: Path) -> None:
    import xarray as xr

    from analysis.inference.diagnostics import load_fit

    fits = registry_run / "fits"
    members = load_fit(fits / "ensemble" / "dss_radiation.nc")
    post = members.posterior
    assert list(post["reconstruction"].values) == [1, 2, 3]
    assert post["hr"].dims == ("chain", "draw", "reconstruction", "covariate")
    assert post["hr"].dtype == np.float32
    table = pd.read_csv(fits / "ensemble" / "dss_radiation.members.csv")
    assert list(table["reconstruction"]) == [1, 2, 3] and table["bar_met"].all()
    assert (table["min_ess_tail"] >= 400).all() and (table["max_rhat"] <= 1.01).all()
    with xr.open_dataset(fits / "pooled" / "dss_radiation.nc", engine="h5netcdf") as pooled:
        hr = pooled["hr"].sel(covariate="radiation")
        assert hr.sizes["sample"] == 3 * post.sizes["chain"] * post.sizes["draw"]
        flat = post["hr"].sel(covariate="radiation").values
        np.testing.assert_allclose(np.sort(hr.values), np.sort(flat.ravel()), rtol=1e-6)
        first = hr.values[pooled["reconstruction"].values == 1]
        np.testing.assert_allclose(np.sort(first), np.sort(flat[:, :, 0].ravel()), rtol=1e-6)


def test_diagnose_on_saved_fits(registry_run: Path) -> None:
    assert main(["diagnose", "--strict", "--out-dir", str(registry_run)]) == 0
    text = (registry_run / "diagnostics.md").read_text()
    assert "dss_radiation" in text and "dss_overall" in text
    assert "the worst member of each model" in text
    assert "| dss_radiation | 3 | 3 |" in text
    assert (registry_run / "figures" / "trace_dss_radiation.png").stat().st_size > 0
    assert (registry_run / "figures" / "prior_survival_dss_overall.png").stat().st_size > 0


def test_compare_on_saved_fits_names_the_fitted_members(registry_run: Path) -> None:
    """The Cox column of ``vlms compare`` takes the members the saved fits hold (here all 3)."""
    import json

    cohort = registry_run.parent / "cohort.csv"
    assert main(["compare", "--cohort", str(cohort), "--out-dir", str(registry_run)]) == 0
    doc = json.loads((registry_run / "tables" / "hr_comparison.json").read_text())
    assert doc["members"] == 3 and doc["member_ids"] == [1, 2, 3]
    md = (registry_run / "tables" / "hr_comparison.md").read_text()
    assert "(members 1-3)" in md


def test_imputed_fits_stay_on_the_cohort() -> None:
    """The stacked member fits take complete cases: a model whose data impute covariates
    (competing_clinical on the reconstruction) gets no member job; its complete-case twin does."""
    from analysis.cohort import load_cohort, load_ensemble
    from analysis.core.paths import project_path
    from analysis.inference.ensemble_io import member_key

    df = load_cohort(project_path("data/cohort.csv"))
    members = load_ensemble(project_path("data/cohorts.csv"), limit=2)
    specs = [s for s in REGISTRY if s.name.startswith("competing_clinical")]
    assert spec_data(specs[0], df).imputes  # else this test checks nothing
    assert cohort_only(specs, df, members) == ["competing_clinical"]
    jobs = registry_jobs(specs, df, "cohort", members, "ensemble")
    assert [j.key for j in jobs] == [
        member_key("competing_clinical_complete_case", r) for r in members
    ]


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


def test_bad_ensemble_is_one_line_exit_2_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.ensemble_helpers import make_ensemble_frame

    cohort = tmp_path / "cohort.csv"
    make_cohort_frame(n=63, seed=4).to_csv(cohort, index=False)
    frame = make_ensemble_frame(members=3, seed=2)
    second = int(np.flatnonzero(frame["reconstruction"] == "2")[5])
    bad_member = frame.copy()
    bad_member.loc[second, "followup_months"] = "-3"
    bad_member.to_csv(tmp_path / "bad_member.csv", index=False)
    no_number = frame.copy()
    no_number.loc[7, "reconstruction"] = "x"
    no_number.to_csv(tmp_path / "no_number.csv", index=False)
    frame.drop(columns="reconstruction").to_csv(tmp_path / "no_column.csv", index=False)
    cases = {
        "nope.csv": "file not found",
        "bad_member.csv": f"reconstruction 2: below the minimum 0, row {second + 1} ",
        "no_number.csv": "column 'reconstruction', row 8",
        "no_column.csv": "column 'reconstruction': required column missing",
    }
    out = tmp_path / "out"
    for name, needle in cases.items():
        args = ["fit", "--cohort", str(cohort), "--ensemble", str(tmp_path / name)]
        assert main([*args, "--out-dir", str(out)]) == 2, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle.split(",")[0] in err, (name, err)
        assert needle.split(", ", 1)[-1].strip() in err, (name, err)
        assert not out.exists(), name
    args = ["fit", "--cohort", str(cohort), "--members", "0", "--out-dir", str(out)]
    assert main(args) == 2 and "--members" in capsys.readouterr().err


def test_missing_default_ensemble_is_said_plainly(tmp_path: Path, monkeypatch) -> None:
    """Without data/cohorts.csv, `vlms fit` on the default cohort says the ensemble is skipped;
    with it, or with another cohort or --ensemble/--no-ensemble, it says nothing of the kind."""
    import argparse

    from analysis.inference import fit_command

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "cohort.csv").write_text("x\n")
    monkeypatch.setattr(fit_command, "project_path", lambda rel: tmp_path / rel)

    def args(**kw) -> argparse.Namespace:
        base = {"cohort": str(tmp_path / "data" / "cohort.csv"), "ensemble": None}
        return argparse.Namespace(**{**base, "no_ensemble": False, **kw})

    said = fit_command.ensemble_skipped(args())
    assert said.startswith("ensemble skipped: data/cohorts.csv is missing")
    assert fit_command.ensemble_path(args()) is None
    assert fit_command.ensemble_skipped(args(no_ensemble=True)) == ""
    assert fit_command.ensemble_skipped(args(ensemble="e.csv")) == ""
    assert fit_command.ensemble_skipped(args(cohort=str(tmp_path / "mine.csv"))) == ""
    (tmp_path / "data" / "cohorts.csv").write_text("x\n")
    assert fit_command.ensemble_skipped(args()) == ""
    assert fit_command.ensemble_path(args()) == tmp_path / "data" / "cohorts.csv"


def test_a_cohort_only_run_removes_earlier_member_files(tmp_path: Path) -> None:
    """The ensemble files of a model fitted on the cohort only this time go (an earlier run's
    members would otherwise show in ``vlms diagnose``); other models' files stay."""
    from analysis.inference.ensemble_io import clear_members, ensemble_dir, pooled_dir

    for folder in (ensemble_dir(tmp_path), pooled_dir(tmp_path)):
        folder.mkdir(parents=True)
    for name in ("a", "b"):
        (ensemble_dir(tmp_path) / f"{name}.nc").write_bytes(b"x")
        (ensemble_dir(tmp_path) / f"{name}.members.csv").write_text("reconstruction\n1\n")
        (pooled_dir(tmp_path) / f"{name}.nc").write_bytes(b"x")
    removed = clear_members(tmp_path, ["a", "c"])
    assert sorted(p.name for p in removed) == ["a.members.csv", "a.nc", "a.nc"]
    assert sorted(p.name for p in ensemble_dir(tmp_path).iterdir()) == ["b.members.csv", "b.nc"]
    assert [p.name for p in pooled_dir(tmp_path).iterdir()] == ["b.nc"]


def test_a_registry_fit_that_misses_the_bar_is_refitted_with_the_remedies(monkeypatch) -> None:
    """The cohort's registry fits take the remedy ladder of ``vlms fit --data``: on the new
    ensemble's member 22, ``dss_beta_catenin`` had 1 divergence in 4,000 draws and stopped
    ``make fit`` (``diagnose --strict``). Here the first attempt is made to miss the bar with a
    divergence: the fit is refitted at target acceptance 0.99 with the same compiled structure,
    and the reported result is the refit."""
    from analysis.inference import diagnostics, runner
    from analysis.inference.engine import SamplerSettings
    from analysis.inference.registry import REGISTRY

    spec = next(s for s in REGISTRY if s.name == "dss_beta_catenin")
    data = spec_data(spec, validate_cohort(make_cohort_frame(n=63, seed=4), "x"))
    calls: list[int] = []

    def first_misses(idata, summary=None):  # the real diagnostics; the verdict by attempt
        _, details = real(idata, summary)
        calls.append(1)
        return len(calls) > 1, {**details, "divergences": 0 if len(calls) > 1 else 1}

    real = diagnostics.passes_bar
    monkeypatch.setattr(diagnostics, "passes_bar", first_misses)
    settings = SamplerSettings(draws=100, tune=100, chains=2, seed=5, progress=False)
    lines: list[str] = []
    (result, summary), compiled, attempts = runner._fit_with_ladder(
        data, spec, settings, None, {"model_name": spec.name}, lines.append
    )
    assert [a.remedy for a in attempts] == ["none", "target_accept"]
    label = next(i for i in summary.index if i.startswith("hr["))
    assert summary.loc[label, "mean"] == pytest.approx(
        float(result.idata.posterior["hr"].mean())
    )  # the reported attempt's summary, computed once and reused by record_fit
    assert attempts[1].target_accept == 0.99 and attempts[1].reported
    assert float(result.idata.posterior.attrs["target_accept"]) == 0.99
    assert compiled is not None and compiled.uses == 2  # one structure for both attempts
    assert lines == ["sampling bar missed; refitting with target acceptance 0.99"]
    lines.clear()
    calls.clear()  # the first attempt misses again; without remedies it is the one reported
    (_, _), _, attempts = runner._fit_with_ladder(
        data, spec, settings, compiled, {"model_name": spec.name}, lines.append, remedies=False
    )
    assert [a.remedy for a in attempts] == ["none"] and attempts[0].reported and not lines


@pytest.mark.parametrize("remedies", [True, False])
def test_no_remedies_reaches_the_cohort_fits_and_the_members_refits(
    monkeypatch, tmp_path, remedies
) -> None:
    """``vlms fit --no-remedies`` on the registry: the cohort's fits get no ladder and the
    stacked members' fits a single attempt (recorded from the calls, nothing sampled)."""
    from analysis.inference import runner
    from analysis.inference.engine import SamplerSettings
    from analysis.inference.ensemble import MAX_ATTEMPTS

    class StopHereError(Exception):
        pass

    seen: dict[str, object] = {}

    def fake_cohort(*args, **kwargs):
        seen["cohort_remedies"] = kwargs["remedies"]
        return []

    def fake_jobs(jobs, settings, **kwargs):
        seen["max_attempts"] = kwargs["max_attempts"]
        raise StopHereError

    monkeypatch.setattr(runner, "fit_cohort", fake_cohort)
    monkeypatch.setattr(runner, "run_jobs", fake_jobs)
    df = validate_cohort(make_cohort_frame(n=63, seed=4), "x")
    specs = [s for s in REGISTRY if s.name == "dss_overall"]
    with pytest.raises(StopHereError):
        runner.run_registry(
            df, tmp_path, SamplerSettings(), specs, members={1: df, 2: df},
            log=lambda line: None, remedies=remedies,
        )  # fmt: skip
    assert seen == {"cohort_remedies": remedies, "max_attempts": MAX_ATTEMPTS if remedies else 1}
    assert MAX_ATTEMPTS > 1


@pytest.mark.parametrize(
    ("argv", "tune"),
    [
        (["fit"], 300),  # the registry's cohort fits with nutpie: nutpie's own default
        (["fit", "--sampler", "pymc"], 1000),
        (["fit", "--data", "x.csv", "--time", "t", "--event", "e"], 1000),
        (["fit", "--tune", "700"], 700),
        (["fit", "--data", "x.csv", "--time", "t", "--event", "e", "--tune", "50"], 50),
    ],
)
def test_default_warm_up_of_each_kind_of_fit(argv: list[str], tune: int) -> None:
    from analysis.cli import build_parser
    from analysis.inference.fit_command import _settings

    args = build_parser().parse_args(argv)
    settings = _settings(args, "x.csv", registry=args.data is None)
    assert settings.tune == tune and settings.draws == 1000
