"""vlms compare: summary-level posterior, the HR table, the sensitivity model, LOO, figures."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, stats

from analysis.comparison import hazard_ratios as compare
from analysis.inference.summary_posterior import (
    conjugate_normal,
    quadrature,
    se_from_ci,
    summary_posterior,
)
from analysis.paper.published import load_published
from tests.compare_report_helpers import as_idata, fake_posterior, write_fit

PUBLISHED = Path(__file__).resolve().parents[2] / "data" / "published.toml"


# --------------------------------------------------------------------------- summary-level


def test_se_from_ci_inverts_a_wald_interval() -> None:
    se = 0.4
    lo, hi = math.exp(1.0 - 1.959964 * se), math.exp(1.0 + 1.959964 * se)
    assert se_from_ci(lo, hi) == pytest.approx(se, rel=1e-6)
    with pytest.raises(ValueError):
        se_from_ci(2.0, 1.0)


@pytest.mark.parametrize(
    ("hr", "lo", "hi", "sd"), [(5.33, 0.97, 29.3, 1.0), (0.43, 0.19, 1.01, 2.5)]
)
def test_quadrature_equals_conjugate_for_a_normal_prior(hr, lo, hi, sd) -> None:
    se = se_from_ci(lo, hi)
    exact = conjugate_normal(math.log(hr), se, sd)
    numeric = quadrature(math.log(hr), se, "normal", sd)
    for field in ("median_hr", "lower", "upper", "prob_gt_1", "mean_log_hr", "sd_log_hr"):
        assert getattr(numeric, field) == pytest.approx(getattr(exact, field), rel=1e-4, abs=1e-6)


def test_beta_catenin_dss_under_normal_0_1_by_hand() -> None:
    # precision-weighted mean: (y / se^2) / (1 + 1 / se^2), y = log 5.33
    se = (math.log(29.3) - math.log(0.97)) / (2 * 1.959964)
    mean = (math.log(5.33) / se**2) / (1.0 + 1.0 / se**2)
    sd = (1.0 + 1.0 / se**2) ** -0.5
    s = summary_posterior(5.33, 0.97, 29.3)
    assert s.median_hr == pytest.approx(math.exp(mean), rel=1e-7)
    assert s.prob_gt_1 == pytest.approx(stats.norm.sf(0, mean, sd), rel=1e-7)
    assert s.median_hr < 5.33 / 1.5  # the prior roughly halves this HR


def test_a_vague_prior_gives_back_the_published_estimate() -> None:
    s = summary_posterior(2.74, 1.14, 6.56, prior_sd=1e4)
    assert s.median_hr == pytest.approx(2.74, rel=1e-6)
    assert s.lower == pytest.approx(1.14, rel=0.02)
    assert s.upper == pytest.approx(6.56, rel=0.02)
    t = summary_posterior(2.74, 1.14, 6.56, family="student_t", prior_sd=1e3, prior_nu=3)
    assert t.median_hr == pytest.approx(2.74, rel=1e-3)


def test_student_t_quadrature_matches_scipy_quad() -> None:
    y, se, sd, nu = math.log(5.33), se_from_ci(0.97, 29.3), 1.0, 3.0

    def dens(b: float) -> float:
        return stats.t.pdf(b, nu, 0, sd) * stats.norm.pdf(y, b, se)

    total = integrate.quad(dens, -np.inf, np.inf)[0]
    above = integrate.quad(dens, 0, np.inf)[0]
    mean = integrate.quad(lambda b: b * dens(b), -np.inf, np.inf)[0] / total
    s = quadrature(y, se, "student_t", sd, nu)
    assert s.prob_gt_1 == pytest.approx(above / total, abs=1e-6)
    assert s.mean_log_hr == pytest.approx(mean, abs=1e-5)


def test_heavy_tails_shrink_a_large_hr_less() -> None:
    normal = summary_posterior(5.33, 0.97, 29.3, prior_sd=1.0)
    student = summary_posterior(5.33, 0.97, 29.3, family="student_t", prior_sd=1.0)
    assert 1.0 < normal.median_hr < student.median_hr < 5.33


# --------------------------------------------------------------------------- HR table


def _fits() -> dict:
    fits = {
        "dss_beta_catenin": as_idata(fake_posterior(("beta_catenin",), {"beta_catenin": 0.7})),
        "rfs_igf1r": as_idata(fake_posterior(("igf1r",), {"igf1r": math.log(2.74)}, seed=1)),
    }
    return fits


def _pooled(covariate: str, member_means: list[float], sd: float = 0.3, seed: int = 0):
    """A pooled posterior: per member, log HR ~ Normal(member mean, sd), 400 draws each."""
    import xarray as xr

    rng = np.random.default_rng(seed)
    draws = np.concatenate([rng.normal(m, sd, 400) for m in member_means])
    member = np.repeat(np.arange(1, len(member_means) + 1), 400)
    return xr.Dataset(
        {"hr": (("sample", "covariate"), np.exp(draws)[:, None])},
        coords={"covariate": [covariate], "reconstruction": ("sample", member)},
    )


def test_comparison_rows_carry_every_column() -> None:
    published = load_published(PUBLISHED)
    freq = {
        "table2.dss.beta_catenin.hr": 4.0,
        "table2.dss.beta_catenin.hr:lower": 1.2,
        "table2.dss.beta_catenin.hr:upper": 13.0,
        "table2.dss.beta_catenin.hr:p": 0.02,
        "table2.dss.igf1r.hr": math.inf,
    }
    key = "table2.dss.beta_catenin.hr"
    ensemble = {r: {key: hr} for r, hr in enumerate([1.5, 2.0, 2.5, 3.0, math.inf], start=1)}
    pooled = {"dss_beta_catenin": _pooled("beta_catenin", [0.2, 0.6, 1.0])}
    selection = {
        key: {
            "adjusted_median": 1.07,
            "adjusted_lower": 0.73,
            "adjusted_upper": 2.6,
            "adjusted_prob_gt_1": 0.68,
            "tau_median": 0.22,
            "tau_lower": 0.01,
            "tau_upper": 0.6,
        }
    }
    rows = compare.comparison_rows(
        published, freq, _fits(), ensemble=ensemble, pooled=pooled, selection=selection
    )
    rows = {r["key"]: r for r in rows}
    assert len(rows) == len(compare.HR_TARGETS)
    r = rows[key]
    assert r["published_hr"] == 5.33 and r["published_lower"] == 0.97 and r["published_p"] == 0.06
    assert r["summary_median"] == pytest.approx(summary_posterior(5.33, 0.97, 29.3).median_hr)
    # ensemble Cox: median and 5%-95% range over the members; the infinite HR is counted
    assert r["ensemble_cox_median"] == 2.5 and r["ensemble_cox_upper"] == math.inf
    assert r["ensemble_cox_lower"] == pytest.approx(1.6) and r["ensemble_cox_infinite"] == 1
    # pooled: the mixture of the three members; between share = var(means) / total
    between, within = np.var([0.2, 0.6, 1.0]), 0.3**2
    assert r["pooled_median"] == pytest.approx(math.exp(0.6), rel=0.05)
    assert r["pooled_log_hr_between_share"] == pytest.approx(between / (between + within), abs=0.03)
    assert r["pooled_members"] == 3
    assert r["selection_median"] == 1.07 and r["selection_tau_median"] == 0.22
    assert r["selection_note"] == ""
    # the single cohort stays in the JSON
    assert r["freq_hr"] == 4.0 and r["posterior_median"] == pytest.approx(math.exp(0.7), rel=0.03)
    assert "published_inside_posterior_95" not in r and "ratio_posterior_published" not in r
    assert rows["table2.dss.igf1r.hr"]["freq_note"].startswith("infinite")
    adj = rows["text.hr.adjuvant_dss"]
    assert adj["selection_note"].startswith("not one of the tested")
    assert math.isnan(adj["pooled_median"]) and math.isnan(adj["ensemble_cox_median"])
    assert not math.isnan(adj["summary_median"])  # needs no fit


def test_markdown_table_with_and_without_an_ensemble() -> None:
    published = load_published(PUBLISHED)
    rows = compare.comparison_rows(published, {}, _fits())
    md = compare.comparison_markdown(rows, {"cohort": "x.csv", "n": 63})
    table_lines = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(table_lines) == 1 + len(compare.HR_TARGETS)
    assert "SYNTHETIC" in md and "not modelled" in md and compare.FRAMING in md
    assert "Posterior on the cohort" in table_lines[0] and "Pooled" not in table_lines[0]
    assert "inside" not in md
    pooled = {"dss_beta_catenin": _pooled("beta_catenin", [0.1, 0.5])}
    rows = compare.comparison_rows(published, {}, _fits(), pooled=pooled, ensemble={1: {}})
    meta = {"cohort": "x", "n": 1, "members": 2, "member_ids": [1, 2]}
    header = compare.comparison_markdown(rows, meta).split("\n")
    assert any("(members 1-2)" in line for line in header)
    head = next(line for line in header if line.startswith("| Hazard ratio"))
    assert head.index("Published") < head.index("Prior + published") < head.index("Ensemble Cox")
    assert head.index("Ensemble Cox") < head.index("Pooled") < head.index("Selection-adjusted")
    assert "Between-reconstruction share" in head and "on the cohort" not in head


def test_fit_priors_are_read_from_the_saved_attributes() -> None:
    from models.priors import Priors

    attrs = {"prior_effect_family": "student_t", "prior_effect_sd": 2.5, "prior_effect_nu": 4.0}
    p = compare.priors_from_attrs(attrs, Priors())
    assert (p.effect_family, p.effect_sd, p.effect_nu) == ("student_t", 2.5, 4.0)
    assert compare.priors_from_attrs({}, Priors(effect_sd=0.5)).effect_sd == 0.5


# --------------------------------------------------------------------------- sensitivity model


@pytest.mark.parametrize("family", ["normal", "student_t"])
def test_prior_as_data_has_the_registry_model_density(family, small_cohort_csv) -> None:
    """Same posterior as build_pem: log densities differ by a constant (the Jacobian of
    beta = sd * z and the prior's normalising constant), so differences between points agree."""
    import dataclasses

    from analysis import cohort as ch
    from analysis.inference.registry import REGISTRY
    from analysis.inference.spec_data import spec_data
    from models.pem import build_pem
    from models.priors import Priors, effect_prior_data

    df = ch.load_cohort(small_cohort_csv)
    spec = next(s for s in REGISTRY if s.name == "dss_igf1r")
    data = spec_data(dataclasses.replace(spec, slots=None), df)
    priors = Priors(effect_family=family, effect_sd=2.5, effect_nu=3.0)
    kw = dict(
        cuts=data.cuts,
        covariate_names=["igf1r"],
        log_rate_center=data.log_rate_center(),
        priors=priors,
    )
    ref = build_pem(data.cells(), **kw)
    # built with the other family, then switched by data: the prior is data, not structure
    other = Priors(effect_family="normal" if family == "student_t" else "student_t", effect_sd=1)
    sens = build_pem(data.cells(), **{**kw, "priors": other}, prior_as_data=True)
    with sens:
        import pymc as pm

        pm.set_data(effect_prior_data(priors))
    f_ref, f_sens = ref.compile_logp(), sens.compile_logp()
    rng = np.random.default_rng(3)
    diffs = []
    for _ in range(3):
        z = rng.normal(0, 1, 7)
        base = {"log_h_level_z": 0.3 * z[0], "rw_sigma_log__": -1.0 + 0.2 * z[1]}
        base["rw_z"] = rng.normal(0, 1, len(data.cuts) - 1)
        beta = np.array([1.7 * z[2]])
        diffs.append(
            f_ref({**base, "beta_std": beta})
            - f_sens({**base, "beta_std_z": beta / priors.effect_sd})
        )
    assert np.ptp(diffs) < 1e-7
    if family == "normal":  # the constant: -log(sd) (Jacobian) - log(2 pi) / 2 (dropped)
        assert diffs[0] == pytest.approx(-math.log(2.5) - 0.5 * math.log(2 * math.pi), abs=1e-6)


# --------------------------------------------------------------------------- LOO


def test_loo_compares_saved_fits_and_flags_high_pareto_k(tmp_path: Path) -> None:
    fits_dir = tmp_path / "fits"
    rng = np.random.default_rng(5)
    for name, covs in [
        ("dss_beta_catenin", ("beta_catenin",)),
        ("dss_igf1r", ("igf1r",)),
        ("dss_beta_catenin_igf1r", ("beta_catenin", "igf1r")),
    ]:
        groups = fake_posterior(covs, dict.fromkeys(covs, 0.5), seed=len(name))
        if name == "dss_igf1r":  # one patient whose likelihood varies wildly across draws
            ll = groups["log_likelihood"]["events"].values.copy()
            ll[..., 0] = rng.normal(-3.0, 4.0, ll.shape[:2])
            groups["log_likelihood"]["events"].values[:] = ll
        write_fit(fits_dir / f"{name}.nc", groups)
    loo = compare.run_loo(fits_dir)
    assert loo["missing"] == ["no biomarker"]
    assert {r["model"] for r in loo["comparison"]} == {
        "beta-catenin",
        "IGF-1R",
        "beta-catenin + IGF-1R",
    }
    pareto = {r["model"]: r for r in loo["pareto"]}
    assert pareto["IGF-1R"]["n_k_over_0.7"] >= 1
    assert pareto["beta-catenin"]["n_k_over_0.7"] == 0
    text = compare.loo_markdown(loo)
    assert "WARNING IGF-1R" in text and "NOT reliable" in text
    assert "Not available (no saved registry fit): no biomarker" in text
    assert loo["comparison"][0]["elpd_diff"] == 0.0


# --------------------------------------------------------------------------- figures


def test_make_figures_from_a_cohort_and_fits(tmp_path: Path, small_cohort_csv) -> None:
    from analysis import cohort as ch
    from analysis.reporting.panels import make_figures

    df = ch.load_cohort(small_cohort_csv)
    written = make_figures(df, _fits(), tmp_path)
    names = {p.name for p in written}
    assert {"fig1_recurrence_dss.png", "fig2_biomarkers.png", "cif_first_recurrence.png"} <= names
    assert "prior_posterior_log_hr.png" in names
    for p in written:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sensitivity_table_gets_summary_level_and_registry_columns() -> None:
    import pandas as pd

    table = pd.DataFrame(
        {
            "model": ["dss_beta_catenin", "dss_beta_catenin"],
            "covariate": ["beta_catenin", "beta_catenin"],
            "prior": ["Normal(0, 2.5)", "Normal(0, 1)"],
            "hr_median": [2.5, 2.0],
            "hr_lower": [0.8, 0.7],
            "hr_upper": [7.0, 5.0],
            "prob_gt_1": [0.95, 0.93],
            "max_rhat": [1.0, 1.0],
            "min_ess_bulk": [900.0, 900.0],
            "min_ess_tail": [800.0, 100.0],
            "divergences": [0, 2],
            "bar_met": [True, False],
        }
    )
    out = compare.sensitivity_summary_level(load_published(PUBLISHED), table)
    out = compare.registry_reference(out, _fits())
    assert out["summary_median"].iloc[0] == pytest.approx(
        summary_posterior(5.33, 0.97, 29.3, prior_sd=2.5).median_hr
    )
    assert math.isnan(out["registry_fit_hr_median"].iloc[0])  # not the registry's prior
    assert out["registry_fit_hr_median"].iloc[1] == pytest.approx(math.exp(0.7), rel=0.03)
    md = compare.sensitivity_markdown(out)
    assert "MISSED" in md and "2 divergences" in md


def test_the_cox_column_takes_the_members_the_saved_fits_hold(tmp_path: Path) -> None:
    """``vlms fit --members 2`` on a 3-member ensemble: compare's Cox column summarises members 1
    and 2, the pooled posterior's, not the whole file; another file given with --ensemble is read
    whole; models holding different members (a ``--only`` run) leave the members all hold."""
    import argparse

    import pandas as pd
    import xarray as xr

    from analysis.inference.ensemble_io import write_members
    from tests.ensemble_helpers import write_ensemble

    ens = write_ensemble(tmp_path / "cohorts.csv", members=3)
    other = write_ensemble(tmp_path / "other.csv", members=3, seed=5)

    def save(name: str, members: list[int]) -> None:
        dims = ("chain", "draw", "reconstruction", "covariate")
        coords = {"reconstruction": members, "covariate": ["x"]}
        hr = np.ones((2, 5, len(members), 1))
        post = xr.Dataset({v: (dims, hr) for v in ("beta", "hr")}, coords=coords)
        stats = xr.Dataset(
            {"diverging": (dims[:3], np.zeros((2, 5, len(members)), bool))}, coords=coords
        )
        table = pd.DataFrame({"reconstruction": members})
        write_members(tmp_path, name, post, stats, table, {"ensemble_source": str(ens)})

    save("a", [1, 2])
    fitted = {"a": [1, 2]}
    assert compare.ensemble_for(argparse.Namespace(ensemble=None), tmp_path) == (ens, fitted)
    assert compare.ensemble_for(argparse.Namespace(ensemble=ens), tmp_path) == (ens, fitted)
    assert compare.ensemble_for(argparse.Namespace(ensemble=other), tmp_path) == (other, {})
    assert compare.ensemble_for(argparse.Namespace(ensemble=None), tmp_path / "no") == (None, {})
    file_members = {1: "m1", 2: "m2", 3: "m3"}
    said: list[str] = []
    assert compare.fitted_members(file_members, fitted, said.append) == {1: "m1", 2: "m2"}
    assert said == []
    assert compare.fitted_members(file_members, {}, said.append) == file_members
    save("b", [1, 2, 3, 4])  # another run, with a regenerated file of 4 members
    _, fitted = compare.ensemble_for(argparse.Namespace(ensemble=None), tmp_path)
    assert fitted == {"a": [1, 2], "b": [1, 2, 3, 4]}
    assert compare.fitted_members(file_members, fitted, said.append) == {1: "m1", 2: "m2"}
    assert len(said) == 1 and "different members" in said[0]
    said.clear()
    assert compare.fitted_members({1: "m1"}, {"b": [1, 2]}, said.append) == {1: "m1"}
    assert len(said) == 1 and "not in the ensemble file" in said[0]
    notes = compare.column_notes({"cohort": "c", "members": 2, "member_ids": [1, 2, 3, 7]})
    assert any("(members 1-3, 7)" in line for line in notes)
