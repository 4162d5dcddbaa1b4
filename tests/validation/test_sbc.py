"""SBC machinery: the independent simulator, the prior draws, rank statistics, uniformity tests,
coverage, and a small run through a local Dask cluster started here."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.validation import sbc as validate
from analysis.validation import simulate as simulate
from models.priors import Priors

CUTS = np.array([0.0, 6.0, 12.0, 24.0, 36.0, 60.0, 84.0, 120.0])


# --------------------------------------------------------------------------- simulator


def test_constant_hazard_gives_exponential_times() -> None:
    rng = np.random.default_rng(1)
    t = simulate.piecewise_exponential_times(rng, np.full((200_000, 3), np.log(0.02)), CUTS[:3])
    assert abs(t.mean() - 50.0) < 0.5  # 1 / 0.02, sd of the mean 0.11


def test_piecewise_survival_matches_the_cumulative_hazard() -> None:
    rng = np.random.default_rng(2)
    log_h = np.log([0.05, 0.01, 0.03, 0.002, 0.02, 0.01, 0.05, 0.1])
    t = simulate.piecewise_exponential_times(rng, np.tile(log_h, (200_000, 1)), CUTS)
    for at in (3.0, 6.0, 20.0, 50.0, 100.0, 130.0):
        # cumulative hazard by hand: time in each interval up to `at` times its hazard
        spent = np.clip(np.minimum(at, np.append(CUTS[1:], np.inf)) - CUTS, 0, None)
        expected = np.exp(-np.sum(spent * np.exp(log_h)))
        assert abs(np.mean(t > at) - expected) < 0.004


def test_competing_causes_share_the_hazard() -> None:
    rng = np.random.default_rng(3)
    n = 100_000
    h = np.array([0.01, 0.03, 0.005])
    lh = np.broadcast_to(np.log(h)[None, :, None], (n, 3, CUTS.size))
    c = simulate.simulate_competing(rng, lh, CUTS, np.zeros((n, 0)), censor=(1e6, 1e6 + 1))
    share = np.bincount(c.event, minlength=4)[1:] / n
    np.testing.assert_allclose(share, h / h.sum(), atol=0.006)
    assert abs(c.time.mean() - 1 / h.sum()) < 0.5


def test_covariate_effect_and_censoring() -> None:
    rng = np.random.default_rng(4)
    x = simulate.binary_covariates(rng, 100_000, (0.5,))
    c = simulate.simulate_pem(rng, np.full(8, np.log(0.01)), np.array([np.log(2.0)]), x, CUTS)
    rate = [c.event[x[:, 0] == g].sum() / c.time[x[:, 0] == g].sum() for g in (0, 1)]
    assert abs(rate[1] / rate[0] - 2.0) < 0.08
    assert c.time.max() <= simulate.CENSOR_HIGH and c.time.min() > 0


def test_cuts_agree_with_the_models() -> None:
    from models.survival_data import DEFAULT_CUTS

    assert tuple(validate.DEFAULT_CUTS) == tuple(DEFAULT_CUTS)


def test_same_seed_same_cohort() -> None:
    a = simulate.large_pem_cohort(500, 7, CUTS)
    b = simulate.large_pem_cohort(500, 7, CUTS)
    c = simulate.large_pem_cohort(500, 8, CUTS)
    np.testing.assert_array_equal(a.time, b.time)
    assert not np.array_equal(a.time, c.time)


# --------------------------------------------------------------------------- prior draws


@pytest.mark.filterwarnings("ignore:The effect of Potentials:UserWarning")
@pytest.mark.parametrize("name", ["pem_tma", "competing"])
def test_independent_prior_matches_the_pymc_prior(name: str) -> None:
    """NumPy prior draws agree with draws from the PyMC model (means and sds, MC error)."""
    import pymc as pm

    from analysis.inference.kinds import KINDS

    model = validate.MODELS[name]
    priors = Priors()
    rng = np.random.default_rng(5)
    ours = [validate.draw_truth(model, priors, rng) for _ in range(3000)]
    cohort = validate.simulate_cohort(model, ours[0], rng)
    data = validate._fit_data(model, cohort)
    kind = KINDS[model.kind]
    pm_model = kind.build(data, priors)
    with pm_model:
        pm.set_data({"log_rate_center": np.asarray(model.centers(), float)})
    prior = pm.sample_prior_predictive(
        draws=3000, model=pm_model, random_seed=6, var_names=list(ours[0])
    ).prior
    for var in ours[0]:
        mine = np.stack([d[var] for d in ours])
        theirs = prior[var].values[0]
        if model.kind == "competing" and var == "log_h0":
            theirs = prior[var].transpose("chain", "draw", "cause", "interval").values[0]
        sd = mine.std(axis=0)
        np.testing.assert_allclose(mine.mean(axis=0), theirs.mean(axis=0), atol=0.1 * sd.max())
        np.testing.assert_allclose(sd, theirs.std(axis=0), rtol=0.1)


# --------------------------------------------------------------------------- rank statistics


def test_rank_statistics() -> None:
    draws = {"a": np.linspace(-1, 1, 4001), "b": np.linspace(0, 1, 4001)}
    out = validate.rank_statistics({"a": 0.0, "b": -5.0}, draws, 99)
    assert out["a"]["rank"] == 49
    assert out["a"]["in50"] == 1.0 and out["a"]["in90"] == 1.0
    assert out["b"]["rank"] == 0 and out["b"]["in90"] == 0.0


def test_uniform_ranks_pass_and_biased_ranks_fail() -> None:
    rng = np.random.default_rng(8)
    n, L = 200, 99
    band = validate.ecdf_band(n, L, seed=1, n_mc=2000)
    uniform = rng.integers(0, L + 1, n)
    assert validate.ecdf_test(uniform, band) > 0.01
    assert validate.chi2_uniformity(uniform, L)[1] > 0.01
    # an overconfident posterior (too narrow): true values fall in the tails -> U-shaped ranks
    u_shaped = np.where(rng.random(n) < 0.5, rng.integers(0, 15, n), rng.integers(85, 100, n))
    assert validate.ecdf_test(u_shaped, band) < 0.01
    assert validate.chi2_uniformity(u_shaped, L)[1] < 0.01
    # a biased posterior: ranks pushed up
    shifted = np.minimum(rng.integers(0, L + 1, n) + 20, L)
    assert validate.ecdf_test(shifted, band) < 0.01


def test_band_has_its_simultaneous_coverage() -> None:
    """About 5% of uniform rank samples leave the 95% simultaneous band (independent check)."""
    rng = np.random.default_rng(9)
    n, L = 100, 99
    band = validate.ecdf_band(n, L, seed=2, n_mc=2000)
    outside = 0
    trials = 600
    for _ in range(trials):
        f = validate.ecdf_counts(rng.integers(0, L + 1, n), L) / n
        outside += bool(np.any((f < band.lower) | (f > band.upper)))
    assert 0.02 < outside / trials < 0.09


def test_ecdf_counts_and_histogram() -> None:
    ranks = np.array([0, 0, 1, 5, 99])
    np.testing.assert_array_equal(validate.ecdf_counts(ranks, 99)[:6], [2, 3, 3, 3, 3, 4])
    assert validate.rank_histogram(ranks, 99).tolist() == [4, 0, 0, 0, 0, 0, 0, 0, 0, 1]


def test_coverage_interval() -> None:
    c = validate.coverage(np.array([1.0] * 45 + [0.0] * 5))
    assert c["rate"] == 0.9 and c["lower"] < 0.9 < c["upper"]


def test_failures_are_counted_not_dropped() -> None:
    recs = [
        {"sim": 0, "events": 5, "ok": True, "error": None, "divergences": 0, "max_rhat": 1.0,
         "min_ess_bulk": 900, "min_ess_tail": 800, "seconds": 1.0, "params": {}},
        {"sim": 1, "events": 5, "ok": False, "error": None, "divergences": 3, "max_rhat": 1.0,
         "min_ess_bulk": 900, "min_ess_tail": 800, "seconds": 1.0, "params": {}},
        {"sim": 2, "events": 5, "ok": False, "error": "ValueError: x", "seconds": 1.0},
    ]  # fmt: skip
    f = validate.failure_summary(recs)
    assert f["simulations"] == 3 and f["errors"] == 1 and f["missed_bar"] == 1
    assert f["with_divergences"] == 1 and f["missed_sims"] == [1]


def test_a_fit_missing_the_bar_is_refitted_with_the_remedies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Too few draws for the bar: the record keeps the first verdict, the remedies tried and the
    last fit's diagnostics (here a one-step ladder, longer chains, to keep the test short)."""
    from analysis.inference import remedies

    longer = tuple(r for r in remedies.REMEDIES if r.name == "longer")
    monkeypatch.setattr(remedies, "REMEDIES", longer)  # what remedies.ladder() hands out
    settings = validate.SbcSettings(sampler="pymc", draws=60, tune=60, chains=2, seed=3)
    record = validate.run_simulation(validate.MODELS["pem_tma"], 0, 5, settings, Priors())
    assert record["error"] is None
    assert not record["ok_first"] and not record["ok"]  # 120 / 240 draws: ESS < 400 either way
    assert record["remedies"] == ["longer"]
    assert [a["draws"] for a in record["attempts"]] == [60, 120]
    (shown,) = [a for a in record["attempts"] if a["reported"]]
    assert record["min_ess_bulk"] == shown["min_ess_bulk"]
    summary = validate.failure_summary([record])
    assert summary["missed_bar_first_attempt"] == summary["missed_bar"] == 1
    assert summary["remedies_used"] == {"longer": 1}
    no_remedy = dataclasses.replace(settings, remedies=False)
    record = validate.run_simulation(validate.MODELS["pem_tma"], 0, 5, no_remedy, Priors())
    assert record["remedies"] == [] and len(record["attempts"]) == 1


# --------------------------------------------------------------------------- a small run


@pytest.mark.slow
def test_sbc_smoke_on_a_local_dask_cluster(tmp_path: Path) -> None:
    """Three simulations through ``vlms validate --scheduler`` on a cluster started here."""
    from distributed import LocalCluster

    from analysis.cli import main

    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        status = main([
            "validate", "--sims", "3", "--scheduler", cluster.scheduler_address,
            "--models", "pem_tma", "--sampler", "pymc", "--draws", "60", "--tune", "60",
            "--chains", "2", "--seed", "11", "--no-remedies", "--out-dir", str(tmp_path),
        ])  # fmt: skip
    assert status == 0
    folder = tmp_path / "validation"
    doc = json.loads((folder / "sbc.json").read_text())
    block = doc["models"]["pem_tma"]
    assert block["failures"]["simulations"] == 3
    # every simulation was fitted: none raised (an error would be counted, not dropped)
    assert block["failures"]["errors"] == 0 and block["failures"]["error_messages"] == []
    assert block["failures"]["fitted"] == 3
    ranks = pd.read_csv(folder / "ranks_pem_tma.csv")
    assert list(ranks["sim"]) == [0, 1, 2]
    params = [c for c in ranks.columns if c not in ("sim", "events", "meets_bar")]
    assert {"beta[x1]", "beta[x2]", "rw_sigma"} <= set(params) and len(params) == 11
    assert ranks[params].to_numpy().min() >= 0 and ranks[params].to_numpy().max() <= 99
    assert (folder / "sbc_ecdf_pem_tma.png").stat().st_size > 0
    assert "pem_tma" in (folder / "sbc.md").read_text()


def test_simulations_are_reproducible() -> None:
    """The same seed gives the same prior draw and cohort whatever the scheduling."""
    model = validate.MODELS["competing"]
    seeds = np.random.SeedSequence([1, 2, 3]).spawn(2)
    runs = []
    for _ in range(2):
        rng_p, rng_d = (np.random.default_rng(s) for s in seeds)
        truth = validate.draw_truth(model, Priors(), rng_p)
        runs.append(validate.simulate_cohort(model, truth, rng_d))
    np.testing.assert_array_equal(runs[0].time, runs[1].time)
    np.testing.assert_array_equal(runs[0].event, runs[1].event)
    assert set(np.unique(runs[0].event)) <= {0, 1, 2, 3, 4}
