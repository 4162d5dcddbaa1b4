"""Batches of stacked fits: planning, padding, seeds, per-fit draws and bars, and the refits of
fits that miss the bar (the sampler is replaced by a fake one here, except in the last test)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import xarray as xr

from analysis.cohort import validate_cohort
from analysis.inference import ensemble
from analysis.inference.batches import (
    BatchResult,
    FitJob,
    job_bar,
    job_posterior,
    plan_batches,
    sample_batch,
    stacked_values,
    structure_of,
)
from analysis.inference.engine import SamplerSettings
from analysis.inference.registry import REGISTRY
from analysis.inference.spec_data import spec_data
from models.priors import Priors
from tests.conftest import make_cohort_frame

SPECS = {s.name: s for s in REGISTRY}


def _jobs(names: list[str], cohorts: int = 1, seed: int = 0) -> list[FitJob]:
    out = []
    for c in range(cohorts):
        df = validate_cohort(make_cohort_frame(n=63, seed=seed + c), "x")
        for name in names:
            spec = SPECS[name]
            data = spec_data(spec, df, all_causes=True)  # as the member fits: one structure
            out.append(FitJob(f"{name}@{c}", spec.builder, data, spec.priors))
    return out


def test_plan_batches_groups_by_structure_with_little_padding() -> None:
    pem = _jobs(["dss_overall", "dss_igf1r", "dss_beta_catenin_igf1r"], cohorts=7)
    competing = _jobs(["competing_tma"], cohorts=3)
    batches = plan_batches(pem + competing, SamplerSettings(), {"pem": 8, "competing": 8})
    kinds = [b.structure.kind for b in batches]
    assert kinds == ["pem", "pem", "pem", "competing"]
    # 21 PEM fits -> 3 batches of 7 slots; 3 competing fits -> 1 batch of 3
    assert [b.size for b in batches] == [7, 7, 7, 3]
    assert [len(b.jobs) for b in batches] == [7, 7, 7, 3]
    assert len({b.settings.sampler.seed for b in batches}) == 4
    again = plan_batches(pem + competing, SamplerSettings(), {"pem": 8, "competing": 8})
    assert [b.settings.sampler.seed for b in again] == [b.settings.sampler.seed for b in batches]
    # PEM fits under other log-HR priors share the structure; other baselines do not
    other_prior = dataclasses.replace(pem[0], priors=Priors(effect_sd=2.5))
    assert structure_of(other_prior) == structure_of(pem[0])
    other_base = dataclasses.replace(pem[0], priors=Priors(step_scale=1.0))
    assert structure_of(other_base) != structure_of(pem[0])


def test_padding_slots_have_no_data() -> None:
    jobs = _jobs(["dss_overall", "dss_igf1r", "dss_radiation"])
    (batch,) = plan_batches(jobs, SamplerSettings(), {"pem": 8})
    padded = dataclasses.replace(batch, size=5)
    values = stacked_values(padded)
    assert values["exposure"].shape[0] == 5
    assert values["exposure"][3:].sum() == 0 and values["events_by_interval"][3:].sum() == 0
    assert values["exposure"][:3].sum() > 0
    # dss_overall uses no covariate: both its slots are spare (standard normal prior)
    np.testing.assert_array_equal(values["effect_prior_sd"][0], [1.0, 1.0])


def _fake_result(batch, ok: dict[str, bool], divergences: int = 0) -> BatchResult:
    """Draws of a batch: fits marked False get a constant chain offset (R-hat far above 1)."""
    rng = np.random.default_rng(batch.settings.sampler.seed)
    n, draws = len(batch.jobs), batch.settings.sampler.draws // batch.settings.thin
    beta = rng.normal(0, 1, (4, draws, n, 2))
    for i, job in enumerate(batch.jobs):
        if not ok.get(job.key, True):
            beta[:, :, i, :] += np.arange(4)[:, None, None] * 3.0
    post = xr.Dataset(
        {"beta": (("chain", "draw", "fit", "covariate"), beta)},
        coords={
            "chain": np.arange(4),
            "draw": np.arange(draws),
            "fit": np.arange(n),
            "covariate": ["a", "b"],
        },
    )
    from analysis.inference.diagnostics import convergence

    stats = xr.Dataset({"diverging": (("chain", "draw"), np.zeros((4, draws), bool))})
    return BatchResult(
        keys=batch.keys,
        posterior=post,
        sample_stats=stats,
        divergences=divergences,
        conv=convergence(post),
        settings=batch.settings,
        structure="fake",
        size=batch.size,
        compile_seconds=0.0,
        compile_source="fake",
        sampling_seconds=1.0,
    )


def test_fits_missing_the_bar_are_refitted_with_more_draws(monkeypatch) -> None:
    jobs = _jobs(["dss_igf1r", "dss_beta_catenin"], cohorts=3)
    calls = []

    def fake_execute(batches, workers, scheduler, compile_times, log):
        calls.append(batches)
        attempt = len(calls)
        out = []
        for b in batches:
            bad = {"dss_igf1r@1": attempt < 3, "dss_beta_catenin@0": attempt < 2}
            diverged = 2 if attempt == 1 and "dss_beta_catenin@0" in b.keys else 0
            out.append(_fake_result(b, {k: not v for k, v in bad.items()}, diverged))
        return out

    monkeypatch.setattr(ensemble, "execute", fake_execute)
    run = ensemble.run_jobs(jobs, SamplerSettings(draws=600, seed=5), log=lambda m: None)
    assert len(calls) == 3
    second = {j.key: b for b in calls[1] for j in b.jobs}
    for b in calls[1]:
        assert b.settings.thin == 2 and b.settings.sampler.draws == 1200
    # the batch with a divergence is refitted with a higher target acceptance
    assert second["dss_beta_catenin@0"].settings.sampler.target_accept == 0.99
    assert [j.key for b in calls[2] for j in b.jobs] == ["dss_igf1r@1"]
    assert calls[2][0].settings.thin == 4
    # refits: batches of the smallest power of two that holds them, at most the first size
    assert calls[0][0].size == 6 and {b.size for b in calls[1]} == {6}
    assert [b.size for b in calls[2]] == [1]
    r = run.results["dss_igf1r@1"]
    assert r.attempt == 3 and r.bar["ok"] and r.posterior.sizes["draw"] == 600
    # a divergence counts against every fit of its batch: all six were refitted once
    assert len(second) == 6 and run.results["dss_igf1r@0"].attempt == 2
    assert run.failed == []
    assert sum(b["fits_missing_bar"] for b in run.batches) >= 2


def test_a_fit_that_never_meets_the_bar_is_reported(monkeypatch) -> None:
    jobs = _jobs(["dss_igf1r"], cohorts=2)

    def fake_execute(batches, workers, scheduler, compile_times, log):
        return [_fake_result(b, {"dss_igf1r@0": False}) for b in batches]

    monkeypatch.setattr(ensemble, "execute", fake_execute)
    run = ensemble.run_jobs(jobs, SamplerSettings(), log=lambda m: None, max_attempts=2)
    assert run.failed == ["dss_igf1r@0"]
    assert run.results["dss_igf1r@0"].attempt == 2
    assert any("beta" in f for f in run.results["dss_igf1r@0"].bar["failing"])


def test_job_posterior_names_covariates_and_drops_spare_slots() -> None:
    jobs = _jobs(["dss_overall", "dss_igf1r", "dss_beta_catenin_igf1r"])
    (batch,) = plan_batches(jobs, SamplerSettings(draws=200), {"pem": 8})
    res = _fake_result(batch, {})
    assert "beta" not in job_posterior(res, 0, jobs[0])
    one = job_posterior(res, 1, jobs[1])
    assert list(one["beta"].coords["covariate"].values) == ["igf1r"]
    two = job_posterior(res, 2, jobs[2])
    assert list(two["beta"].coords["covariate"].values) == ["beta_catenin", "igf1r"]
    np.testing.assert_array_equal(two["beta"].values, res.posterior["beta"].values[:, :, 2, :])
    assert job_bar(res, 1, jobs[1])["ok"]


@pytest.mark.slow
def test_stacked_pymc_batch_samples_each_fit() -> None:
    """A real (PyMC) run of a padded batch: each fit's draws have its own shapes."""
    jobs = _jobs(["dss_igf1r", "dss_overall"])
    settings = SamplerSettings(sampler="pymc", draws=150, tune=150, chains=2, seed=1)
    (batch,) = plan_batches(jobs, settings, {"pem": 8})
    res = sample_batch(dataclasses.replace(batch, size=3))
    assert res.posterior.sizes["fit"] == 2 and res.posterior.sizes["draw"] == 150
    post = job_posterior(res, 0, jobs[0])
    assert post["hr"].sizes["covariate"] == 1 and post["log_h0"].sizes["interval"] == 8
    assert np.isfinite(job_bar(res, 0, jobs[0])["max_rhat"])


@pytest.mark.slow
def test_batches_run_on_a_dask_cluster() -> None:
    """The ``--scheduler`` path: batches sampled by Dask workers (PyMC here, so that no nutpie
    compilation is needed), results back in order."""
    from distributed import LocalCluster

    jobs = _jobs(["dss_igf1r", "dss_overall"], cohorts=2)
    settings = SamplerSettings(sampler="pymc", chains=2, seed=3)
    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        run = ensemble.run_jobs(
            jobs,
            settings,
            draws=100,
            tune=100,
            scheduler=cluster.scheduler_address,
            log=lambda m: None,
            max_attempts=1,
        )
    assert set(run.results) == {j.key for j in jobs}
    post = run.results["dss_igf1r@1"].posterior
    assert post.sizes["draw"] == 100 and list(post["hr"].coords["covariate"].values) == ["igf1r"]
    assert run.batches and run.batches[0]["fits"] == 4


def test_refit_batches_take_the_smallest_power_of_two_that_holds_them() -> None:
    jobs = _jobs(["dss_overall", "dss_igf1r", "dss_radiation"])
    sizes = {structure_of(jobs[0]): 16}
    assert [b.size for b in plan_batches(jobs, SamplerSettings(), {"pem": 16}, sizes=sizes)] == [4]
    one = plan_batches(jobs[:1], SamplerSettings(), {"pem": 16}, sizes=sizes)
    assert [(b.size, len(b.jobs)) for b in one] == [(1, 1)]
    many = _jobs(["dss_overall"], cohorts=20)
    planned = plan_batches(many, SamplerSettings(), {"pem": 16}, sizes={structure_of(many[0]): 6})
    assert [(b.size, len(b.jobs)) for b in planned] == [(6, 6)] * 3 + [(2, 2)]
    seventeen = plan_batches(
        many[:17], SamplerSettings(), {"pem": 16}, sizes={structure_of(many[0]): 16}
    )
    assert [(b.size, len(b.jobs)) for b in seventeen] == [(16, 16), (1, 1)]
