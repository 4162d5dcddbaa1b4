"""The registered illness-death fit on the cohort: paths from the cohort frame, the saved
NetCDF (named dims, derived quantities that agree with the model's own functions), the
comparison with Aalen-Johansen and Cox, and the report section. One compilation (module
fixture) with few draws."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.cohort import load_cohort
from analysis.core.errors import VlmsInputError
from analysis.frequentist import estimators as fq
from analysis.frequentist import multistate as aj
from analysis.inference.engine import SamplerSettings
from analysis.inference.multistate_fit import (
    check_multistate_specs,
    multistate_specs,
    run_multistate_registry,
)
from models import multistate as ms

COHORT = Path(__file__).resolve().parents[2] / "data" / "cohort.csv"
SETTINGS = SamplerSettings(draws=150, tune=250, chains=2, seed=11)


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    return load_cohort(COHORT)


@pytest.fixture(scope="module")
def data(cohort):
    return check_multistate_specs(multistate_specs(), cohort, str(COHORT))["illness_death"]


@pytest.fixture(scope="module")
def fitted(cohort, tmp_path_factory):
    """The registry's illness-death fit (small draws), saved as ``make fit`` saves it."""
    from analysis.inference.diagnostics import load_fit

    out = tmp_path_factory.mktemp("reports")
    entries = run_multistate_registry(cohort, out, SETTINGS, log=lambda _: None)
    return out, load_fit(out / "fits" / "illness_death.nc"), entries


# --------------------------------------------------------------------------- data (no sampling)


def test_paths_are_the_cohorts_recurrences_and_deaths(cohort, data) -> None:
    rec = cohort["recurrence"]
    counts = {c["transition"]: (c["n_at_risk"], c["events"]) for c in data.counts}
    recurred = int((rec != "none").sum())
    disease_after = int(((rec != "none") & (cohort["vital_status"] == "dead_disease")).sum())
    assert counts["recurrence_free->recurrence"] == (len(cohort), recurred)
    assert counts["recurrence->dead_disease"] == (recurred, disease_after)
    for k, kind in enumerate(("local", "distant", "local_distant")):
        own = data.paths.ill_mark == k
        assert own.sum() == (rec == kind).sum()
        np.testing.assert_allclose(
            data.paths.ill_time[own], cohort.loc[rec == kind, "recurrence_months"]
        )
    np.testing.assert_array_equal(data.paths.x[:, 0], (cohort["radiation"] != "none"))


def test_effects_are_free_only_where_the_data_speak(data) -> None:
    """Radiation on every transition with events; types only on death after recurrence;
    transitions without events (no death without recurrence here) have none."""
    mask = data.effect_mask()
    counts = [c["events"] for c in data.counts]
    s = data.structure
    for t, name in enumerate(s.transitions):
        if counts[t] == 0:
            assert not mask[t].any(), name
    assert mask[0, 0] and not mask[0, 1:].any()
    dd = s.transitions.index("recurrence->dead_disease")
    assert mask[dd].all()


def test_death_at_the_moment_of_recurrence_is_an_input_error(cohort, tmp_path, capsys) -> None:
    """Named by file, column and (1-based) row; ``vlms fit`` exits 2 and writes nothing."""
    from analysis.cli import main

    bad = pd.read_csv(COHORT, dtype=str, keep_default_na=False)
    row = int(np.flatnonzero((bad["vital_status"] == "dead_disease").to_numpy())[3])
    bad.loc[row, "recurrence_months"] = bad.loc[row, "followup_months"]
    path = tmp_path / "bad.csv"
    bad.to_csv(path, index=False)
    with pytest.raises(VlmsInputError) as info:
        check_multistate_specs(multistate_specs(), load_cohort(path), str(path))
    message = str(info.value)
    assert "column 'recurrence_months'" in message and f"row {row + 1} " in message
    out = tmp_path / "out"
    out.mkdir()
    argv = ["fit", "--cohort", str(path), "--only", "illness_death", "--out-dir", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "moment of recurrence" in err[0] and str(path) in err[0]
    assert not any(out.rglob("*"))


# --------------------------------------------------------------------------- the saved fit


def test_saved_fit_has_named_dims_and_what_the_report_needs(fitted, data) -> None:
    out, idata, entries = fitted
    post = idata.posterior
    assert {"transition", "state", "time", "covariate"} <= set(post.dims)
    assert list(post["state"].values) == [
        "recurrence_free",
        "recurrence (local)",
        "recurrence (distant)",
        "recurrence (local_distant)",
        "dead_disease",
        "dead_other",
    ]
    assert list(post["hr"].dims) == ["chain", "draw", "transition", "covariate"]
    mask = idata.constant_data["effect_free"].values.astype(bool)
    assert np.all(post["hr"].values[:, :, ~mask] == 1.0)
    assert np.all(post["hr"].values[:, :, mask] != 1.0)
    assert idata.constant_data["events"].values.tolist() == [c["events"] for c in data.counts]
    assert "state_occupation" in idata.prior
    assert post.attrs["model_kind"] == "multistate" and post.attrs["n"] == data.n
    assert (out / "fits" / "illness_death.summary.csv").is_file()
    assert [e.name for e in entries] == ["illness_death"] and entries[0].n == data.n


def test_vlms_diagnose_reads_the_multistate_fit(fitted) -> None:
    """Trace and rank plots pick the model's own parameters (prefixed names, free effects)."""
    from analysis.inference.diagnostics import _key_vars, diagnose_fit

    out, idata, _ = fitted
    keys = _key_vars(idata)
    assert keys[0] == "beta_free" and "start_rw_sigma" in keys and "ill_rw_sigma" in keys
    result = diagnose_fit(out / "fits" / "illness_death.nc", out / "figures")
    assert result["name"] == "illness_death"
    assert (out / "figures" / "rank_illness_death.png").stat().st_size > 0


def test_derived_quantities_are_the_models_exact_functions(fitted, data) -> None:
    """Occupation sums to 1 and equals the model function on a few draws; DSS after recurrence
    is 1 - CIF of the disease death, read at 24 and 60 months on the curve."""
    _, idata, _ = fitted
    post = idata.posterior
    occ = post["state_occupation"].transpose("chain", "draw", "state", "time").values
    np.testing.assert_allclose(occ.sum(axis=2), 1.0, atol=1e-9)
    start0 = (
        post["start_log_h0"]
        .transpose("chain", "draw", "hazard_start", "interval_start")
        .values[0, :3]
    )
    ill0 = post["ill_log_h0"].transpose("chain", "draw", "hazard_ill", "interval_ill").values[0, :3]
    beta = post["beta"].transpose("chain", "draw", "transition", "covariate").values[0, :3]
    times = post["time"].values
    expected = 0.0
    for value, count in zip(*np.unique(data.paths.x[:, 0], return_counts=True), strict=True):
        s, i = ms.profile_log_hazards(start0, ill0, beta, np.array([value]), data.structure)
        expected = expected + count * ms.state_occupation(
            s, i, data.cuts_start, data.cuts_ill, times
        )
    np.testing.assert_allclose(occ[0, :3], expected / data.n, rtol=1e-9, atol=1e-12)
    cif = post["cif_after_recurrence"]
    np.testing.assert_allclose(
        post["dss_after_recurrence"].values, 1.0 - cif.sel(death="dead_disease").values
    )
    at = post["cif_after_recurrence_at"]
    for h in (24.0, 60.0):
        np.testing.assert_allclose(
            at.sel(horizon=h).values, cif.sel(time_since_recurrence=h).values, rtol=1e-12
        )


# --------------------------------------------------------------------------- comparison, report


@pytest.fixture(scope="module")
def compared(fitted, cohort):
    from analysis.comparison import multistate as cm

    out, _, _ = fitted
    line = cm.run_comparison(cohort, out / "fits", out, {"cohort": str(COHORT)}, seed=3)
    return out, line, json.loads((out / "tables" / "multistate.json").read_text("utf-8"))


def test_comparison_recomputes_aalen_johansen_kaplan_meier_and_cox(compared, data) -> None:
    out, line, table = compared
    assert "tables/multistate.md" in line
    assert {"multistate.csv", "multistate.md"} <= {p.name for p in (out / "tables").iterdir()}
    p = data.paths
    occupation = pd.DataFrame(table["occupation"])
    times = sorted(occupation["months"].unique())
    ref = aj.illness_death_occupation(
        p.ill_time, p.ill_mark, p.exit_time, p.death, times,
        states=data.structure.occupation_states(), n_marks=3, split_marks=True,
    )  # fmt: skip
    got = occupation.pivot(index="months", columns="state", values="aj")
    np.testing.assert_allclose(got[list(ref.states)].to_numpy(), ref.probability, atol=1e-12)
    after = pd.DataFrame(table["after_recurrence"])
    distant = p.ill_mark == 1
    km = fq.km_survival_at(p.exit_time[distant], p.death[distant] == 1, [24.0, 60.0])
    rows = after[after["recurrence_type"] == "distant"].sort_values("months")
    np.testing.assert_allclose(rows["paper_km_from_surgery"], 1.0 - km)
    soj = p.exit_time[distant] - p.ill_time[distant]
    # disease death after a distant recurrence, other deaths competing (lifelines' Aalen-Johansen)
    cif = fq.cumulative_incidence(soj, p.death[distant], [24.0, 60.0], causes=[1])[1]
    np.testing.assert_allclose(rows["aj"], cif.cif, atol=1e-9)
    hrs = pd.DataFrame(table["hazard_ratios"])
    assert len(hrs) == int(data.effect_mask().sum())
    ill = p.ill_mark >= 0
    events = {"recurrence_free->recurrence": int(ill.sum())}
    for k, name in enumerate(data.structure.deaths, start=1):
        events[f"recurrence_free->{name}"] = int((~ill & (p.death == k)).sum())
        events[f"recurrence->{name}"] = int((ill & (p.death == k)).sum())
    # Cox is estimated wherever a transition has a few events (with 1 it may not converge)
    enough = hrs["transition"].map(events) >= 5
    assert enough.any() and hrs.loc[enough, "cox_hr"].notna().all()


def test_report_section_shows_the_paper_curves_and_the_model(compared, cohort) -> None:
    from analysis.reporting.html_parts import Inputs
    from analysis.reporting.multistate_section import multistate_figures, section_multistate

    out, _, table = compared
    drawn = multistate_figures(cohort, out / "fits", out / "figures")
    assert {p.name for p in drawn} == {"multistate_dss.png", "multistate_occupation.png"}
    page = section_multistate(Inputs(out))
    assert "immortal time" in page and page.count("data:image/png;base64,") == 2
    first = table["after_recurrence"][0]
    shown = f"{first['posterior_median']:.2f} ({first['posterior_lower']:.2f}-"
    assert shown in page
    assert re.search(r"Aalen-Johansen inside the posterior 95% interval at \d+%", page)
    assert "make validate" in page  # no validation output in this folder: says what to run


def test_report_without_a_fit_says_what_to_run(tmp_path, cohort) -> None:
    from analysis.reporting.html import build_html
    from analysis.reporting.multistate_section import multistate_figures

    assert [p.name for p in multistate_figures(cohort, tmp_path / "fits", tmp_path)] == [
        "multistate_dss.png"
    ]
    page = build_html(tmp_path)
    assert "replaces the Figure 1C analysis" in page
    assert "the multi-state comparison table" in page


def test_vlms_fit_only_names_the_multistate_fit(tmp_path) -> None:
    """``--only`` knows the multi-state registry (an unknown name lists it)."""
    from analysis.inference.fit_command import run_cli

    args = argparse.Namespace(
        data=None, cohort=COHORT, only=["nope"], out_dir=tmp_path, draws=10, tune=10, chains=1,
        seed=1, sampler="nutpie", target_accept=0.95, prior_sd=1.0,
    )  # fmt: skip
    with pytest.raises(VlmsInputError, match="illness_death"):
        run_cli(args)
