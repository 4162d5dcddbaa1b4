"""Multi-state Aalen-Johansen: a hand-computed example, the reductions to lifelines (competing
risks, Kaplan-Meier), and the known truth of a large simulated illness-death cohort."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from lifelines import AalenJohansenFitter, KaplanMeierFitter

from analysis.frequentist import multistate as aj
from analysis.validation import multistate_sim as sim


def test_hand_computed_illness_death():
    """Four patients (states 0 free, 1 ill, 2 dead):
    A 0->1 at 1, 1->2 at 3; B 0->2 at 2; C censored in 0 at 2.5; D 0->1 at 2, censored at 4.
    t=1: Y0=4, one 0->1:            p = (3/4, 1/4, 0)
    t=2: Y0=3 (B, C, D), 0->2 and 0->1 (1/3 each): p = (1/4, 1/4 + 1/4, 1/4)
    t=3: Y1=2 (A, D; D entered at 2 < 3), 1->2 (1/2): p = (1/4, 1/4, 1/2)
    """
    rows = aj.illness_death_rows(
        ill_time=np.array([1.0, np.nan, np.nan, 2.0]),
        ill_mark=np.array([0, -1, -1, 0]),
        exit_time=np.array([3.0, 2.0, 2.5, 4.0]),
        death=np.array([1, 1, 0, 0]),
    )
    prob, at_risk = aj.aalen_johansen(rows, 3, [0.5, 1.0, 2.0, 2.9, 3.0, 10.0])
    expected = [
        [1, 0, 0],
        [3 / 4, 1 / 4, 0],
        [1 / 4, 1 / 2, 1 / 4],
        [1 / 4, 1 / 2, 1 / 4],
        [1 / 4, 1 / 4, 1 / 2],
        [1 / 4, 1 / 4, 1 / 2],
    ]
    np.testing.assert_allclose(prob, expected, atol=1e-15)
    np.testing.assert_array_equal(at_risk[:, 0], [4, 4, 3, 0, 0, 0])  # C left at 2.5
    np.testing.assert_array_equal(at_risk[:, 1], [0, 0, 1, 2, 2, 0])


def _tied_competing(seed: int, n: int = 120) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    time = rng.integers(1, 15, n).astype(float)  # integer times: many ties across causes
    cause = rng.choice([0, 1, 2], n, p=[0.3, 0.4, 0.3])
    return time, cause


def test_competing_risks_reduce_to_lifelines_with_deterministic_ties():
    """No illness: the death states' occupation is each cause's CIF. lifelines jitters tied times
    at random; moving each cause-k event k * eps earlier (the convention of the lifelines
    wrappers, which equals R's survfit) makes it deterministic and equal to the product with all
    tied transitions in one matrix. Integer times also tie events with censorings (censored
    patients are at risk at their censoring time)."""
    time, cause = _tied_competing(seed=1)
    n = time.size
    rows = aj.make_rows(
        np.arange(n), np.zeros(n), time, np.zeros(n, int), np.where(cause > 0, cause, -1)
    )
    grid = np.unique(time)
    prob, _ = aj.aalen_johansen(rows, 3, grid)
    eps = 1e-6
    for k in (1, 2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ajf = AalenJohansenFitter(calculate_variance=False).fit(
                time - cause * eps, cause, event_of_interest=k
            )
        table = ajf.cumulative_density_
        ref = table.iloc[
            np.searchsorted(table.index.to_numpy(), grid, side="right") - 1, 0
        ].to_numpy()
        np.testing.assert_allclose(prob[:, k], ref, atol=1e-12)
    np.testing.assert_allclose(prob.sum(axis=1), 1.0, atol=1e-12)


def test_one_transition_is_one_minus_kaplan_meier():
    time, cause = _tied_competing(seed=2)
    event = (cause > 0).astype(int)
    n = time.size
    rows = aj.make_rows(
        np.arange(n), np.zeros(n), time, np.zeros(n, int), np.where(event > 0, 1, -1)
    )
    grid = np.concatenate([[0.5], np.unique(time), [30.0]])
    prob, _ = aj.aalen_johansen(rows, 2, grid)
    km = KaplanMeierFitter().fit(time, event).survival_function_at_times(grid).to_numpy()
    np.testing.assert_allclose(prob[:, 0], km, atol=1e-12)
    np.testing.assert_allclose(prob[:, 1], 1 - km, atol=1e-12)


def test_event_free_state_is_kaplan_meier_of_the_first_event():
    """Nobody re-enters the event-free state: its occupation is KM of the time to the first
    event (illness or death), whatever happens afterwards."""
    truth = sim.vlms_like_truth()
    paths = sim.simulate_paths(truth, 400, seed=5)
    ill = paths.ill_mark >= 0
    first = np.where(ill, paths.ill_time, paths.exit_time)
    first_event = (ill | (paths.death > 0)).astype(int)
    grid = np.linspace(1, 140, 30)
    occ = aj.illness_death_occupation(
        paths.ill_time,
        paths.ill_mark,
        paths.exit_time,
        paths.death,
        grid,
        states=["0", "1", "2", "3"],
    )
    km = KaplanMeierFitter().fit(first, first_event).survival_function_at_times(grid).to_numpy()
    np.testing.assert_allclose(occ.probability[:, 0], km, atol=1e-12)
    np.testing.assert_allclose(occ.probability.sum(axis=1), 1.0, atol=1e-12)


def test_large_simulated_cohort_recovers_the_truth():
    """20,000 censored patients against the truth (Monte Carlo over 400,000 uncensored paths):
    every state, including the recurrence states entered late and left on their own clock."""
    truth = sim.vlms_like_truth()
    paths = sim.simulate_paths(truth, 20_000, seed=11)
    times = np.array([6.0, 12.0, 24.0, 36.0, 60.0, 84.0, 120.0])
    names = ["free", "local", "distant", "both", "dead_disease", "dead_other"]
    occ = aj.illness_death_occupation(
        paths.ill_time,
        paths.ill_mark,
        paths.exit_time,
        paths.death,
        times,
        states=names,
        n_marks=3,
        split_marks=True,
    )
    true = sim.monte_carlo_occupation(truth, times, n=400_000, seed=12).T
    assert np.max(np.abs(occ.probability - true)) < 0.02
    assert np.mean(np.abs(occ.probability - true)) < 0.005
    # a naive estimate that ignores censoring in the recurrence states is visibly off
    naive = sim.occupation_at(paths, 3, 2, times).T
    assert np.max(np.abs(naive - true)) > 0.05


def test_cif_after_illness_on_its_own_clock():
    truth = sim.vlms_like_truth()
    paths = sim.simulate_paths(truth, 20_000, seed=21)
    latent = sim.simulate_latent(truth, 200_000, seed=22)
    times = np.array([12.0, 24.0, 60.0])
    est = aj.cif_after_illness(
        paths.ill_time, paths.ill_mark, paths.exit_time, paths.death, times, n_marks=3, n_deaths=2
    )
    soj = latent.exit_time - latent.ill_time
    for r in range(3):
        own = latent.ill_mark == r
        for k in range(2):
            true = [np.mean((soj[own] <= t) & (latent.death[own] == k + 1)) for t in times]
            np.testing.assert_allclose(est[r, k], true, atol=0.03)


def test_bootstrap_limits_bracket_the_estimate_and_are_reproducible():
    truth = sim.vlms_like_truth()
    paths = sim.simulate_paths(truth, 300, seed=31)
    args = (paths.ill_time, paths.ill_mark, paths.exit_time, paths.death, [12.0, 60.0])
    kw = {"states": ["0", "1", "2", "3"], "n_boot": 50, "seed": 4}
    a = aj.illness_death_occupation(*args, **kw)
    b = aj.illness_death_occupation(*args, **kw)
    np.testing.assert_array_equal(a.lower, b.lower)
    assert np.all(a.lower <= a.probability + 1e-12) and np.all(a.probability <= a.upper + 1e-12)
    assert np.all(a.upper[:, 1:] - a.lower[:, 1:] > 0)
    with pytest.raises(ValueError, match="seed"):
        aj.illness_death_occupation(*args, states=kw["states"], n_boot=5)


def test_death_at_the_illness_time_is_refused():
    with pytest.raises(ValueError, match="no time in its state"):
        aj.illness_death_rows(np.array([5.0]), np.array([0]), np.array([5.0]), np.array([1]))
    rows = aj.illness_death_rows(np.array([5.0]), np.array([0]), np.array([5.0]), np.array([0]))
    assert rows.stop.size == 1  # censored at the illness time: the empty stay is dropped


def test_transition_cox_recovers_the_simulated_hazard_ratios():
    truth = sim.vlms_like_truth()
    paths = sim.simulate_paths(truth, 5000, seed=51)
    rows = aj.transition_cox(
        paths.ill_time,
        paths.ill_mark,
        paths.exit_time,
        paths.death,
        paths.x,
        covariate_names=["size"],
        mark_names=list(truth.marks),
        n_deaths=2,
        alpha=0.001,
    )
    assert len(rows) == 3 * 1 + 2 * 3  # size out of the event-free state; size + 2 types after
    for row in rows:
        true_hr = np.exp(truth.beta[row["transition"], row["covariate_index"]])
        assert row["lower"] < true_hr < row["upper"], row
    recurrence = next(r for r in rows if r["transition"] == 0)
    assert recurrence["lower"] > 1.4  # truth 1.8
    both = next(r for r in rows if r["transition"] == 3 and r["covariate_index"] == 2)
    assert both["lower"] > 1.5  # truth 2.4 (local-and-distant vs local)


def test_transition_cox_without_types():
    """One illness type (no type indicators), one cause of death."""
    truth = sim.vlms_like_truth()
    paths = sim.simulate_paths(truth, 600, seed=52)
    rows = aj.transition_cox(
        paths.ill_time,
        np.where(paths.ill_mark >= 0, 0, -1),
        paths.exit_time,
        (paths.death > 0).astype(int),
        paths.x,
        covariate_names=["size"],
        mark_names=["recurrence"],
        n_deaths=1,
    )
    assert [(r["transition"], r["covariate"]) for r in rows] == [
        (0, "size"),
        (1, "size"),
        (2, "size"),
    ]
    assert all(r["lower"] < r["hr"] < r["upper"] for r in rows)


def test_transition_cox_with_illness_time_groups():
    """Disease death after a recurrence later than 24 months has log-HR log(0.4) (truth)."""
    truth = sim.vlms_like_truth(late_recurrence_log_hr=float(np.log(0.4)))
    paths = sim.simulate_paths(truth, 4000, seed=53)
    rows = aj.transition_cox(
        paths.ill_time,
        paths.ill_mark,
        paths.exit_time,
        paths.death,
        paths.x,
        covariate_names=["size"],
        mark_names=list(truth.marks),
        n_deaths=2,
        entry_cuts=truth.entry_cuts,
        alpha=0.001,
    )
    late = next(r for r in rows if r["transition"] == 3 and r["covariate_index"] == 3)
    assert late["covariate"] == "illness after 24"
    assert late["lower"] < 0.4 < late["upper"] < 0.8


def test_transition_cox_drops_a_group_block_collinear_with_the_baseline():
    """Groups cut at 0 and 24: every illness time is > 0, so nobody is in the reference group
    and the two indicators sum to 1. The second is left out (NaN) instead of a singular fit."""
    truth = sim.vlms_like_truth()
    paths = sim.simulate_paths(truth, 600, seed=53)
    rows = aj.transition_cox(
        paths.ill_time,
        paths.ill_mark,
        paths.exit_time,
        paths.death,
        paths.x,
        covariate_names=["size"],
        mark_names=list(truth.marks),
        n_deaths=2,
        entry_cuts=(0.0, 24.0),
    )
    after = [r for r in rows if r["transition"] >= 3]
    first = [r for r in after if r["covariate"] == "illness after 0"]
    second = [r for r in after if r["covariate"] == "illness after 24"]
    assert first and all(np.isfinite(r["hr"]) for r in first)
    assert second and all(np.isnan(r["hr"]) for r in second)
    assert all(np.isfinite(r["hr"]) for r in after if r["covariate"] == "size")


def test_estimable_columns_keeps_what_the_baseline_does_not_explain():
    import pandas as pd

    frame = pd.DataFrame({"x": [0, 1, 0, 1], "g1": [1, 1, 0, 0], "g2": [0, 0, 1, 1]})
    assert aj.estimable_columns(frame) == ["x", "g1"]  # g2 = 1 - g1
    assert aj.estimable_columns(frame.assign(c=2.0)) == ["x", "g1"]  # constant
    assert aj.estimable_columns(frame[["g2", "x"]]) == ["g2", "x"]
