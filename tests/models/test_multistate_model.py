"""Illness-death model: sufficient statistics, exact derived quantities (closed form, quadrature,
simulated truth) and one compiled nutpie model refit on new data with ``with_data``."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate

from analysis.frequentist import multistate as aj
from analysis.validation import multistate_sim as sim
from models import multistate as ms

VLMS = ms.IllnessDeath(
    marks=("local", "distant", "local_distant"),
    deaths=("dead_disease", "dead_other"),
    start_state="recurrence_free",
    ill_state="recurrence",
)


def _paths(p: sim.SimulatedPaths) -> ms.IllnessDeathPaths:
    return ms.IllnessDeathPaths.from_arrays(p.ill_time, p.ill_mark, p.exit_time, p.death, p.x)


# --------------------------------------------------------------------------- data


def test_cells_of_a_hand_example():
    """A ill (a) at 1, dies of d1 at 3; B dies of d2 at 2; C censored at 2.5; D ill (b) at 2,
    censored at 4. x = 1, 0, 1, 0. Cuts (0, 2] (2, inf) since entry, (0, 1.5] (1.5, inf) since
    the illness."""
    s = ms.IllnessDeath(marks=("a", "b"), deaths=("d1", "d2"))
    paths = ms.IllnessDeathPaths.from_arrays(
        [1.0, np.nan, np.nan, 2.0],
        [0, -1, -1, 1],
        [3.0, 2.0, 2.5, 4.0],
        [1, 2, 0, 0],
        [[1], [0], [1], [0]],
    )
    ps, pi = ms.binary_transition_patterns(1, s)
    cells = ms.transition_cells(paths, s, [0, 2], [0, 1.5], patterns_start=ps, patterns_ill=pi)
    np.testing.assert_array_equal(ps, [[0, 0], [1, 0]])
    np.testing.assert_allclose(cells.start.exposure, [[4.0, 3.0], [0.0, 0.5]])
    events = np.zeros((2, 2, 4))  # interval, pattern, hazard (a, b, d1, d2)
    events[0, 1, 0] = 1  # A enters a at 1
    events[0, 0, 1] = 1  # D enters b at 2 (right-closed: in (0, 2])
    events[0, 0, 3] = 1  # B dies of d2 at 2
    np.testing.assert_array_equal(cells.start.events, events)
    np.testing.assert_array_equal(pi, [[0, 0], [1, 0], [0, 1], [1, 1]])
    np.testing.assert_allclose(cells.ill.exposure, [[0, 1.5, 1.5, 0], [0, 0.5, 0.5, 0]])
    ill_events = np.zeros((2, 4, 2))
    ill_events[1, 1, 0] = 1  # A dies of d1 2 months after its illness
    np.testing.assert_array_equal(cells.ill.events, ill_events)
    counts = {
        c["transition"]: (c["n_at_risk"], c["events"]) for c in ms.transition_counts(paths, s)
    }
    assert counts == {
        "event_free->ill": (4, 2),
        "event_free->d1": (4, 0),
        "event_free->d2": (4, 1),
        "ill->d1": (2, 1),
        "ill->d2": (2, 0),
    }
    mask = ms.default_effect_mask(s, 1, events=[e for _, e in counts.values()])
    np.testing.assert_array_equal(mask, [[1, 0], [0, 0], [1, 0], [1, 1], [0, 0]])


def test_illness_time_groups_are_covariates_of_the_later_transitions():
    """The hand example with illness-time groups (0, 1.5] and (1.5, inf): A (ill at 1) is early,
    D (ill at 2) late."""
    s = ms.IllnessDeath(marks=("a", "b"), deaths=("d1", "d2"), entry_cuts=(1.5,))
    assert s.ill_covariates == ["ill: b", "ill at (1.5, inf)"]
    paths = ms.IllnessDeathPaths.from_arrays(
        [1.0, np.nan, np.nan, 2.0],
        [0, -1, -1, 1],
        [3.0, 2.0, 2.5, 4.0],
        [1, 2, 0, 0],
        [[1], [0], [1], [0]],
    )
    ps, pi = ms.binary_transition_patterns(1, s)
    cells = ms.transition_cells(paths, s, [0, 2], [0, 1.5], patterns_start=ps, patterns_ill=pi)
    np.testing.assert_array_equal(ps, [[0, 0, 0], [1, 0, 0]])
    assert pi.shape == (8, 3)
    a = np.flatnonzero((pi == [1, 0, 0]).all(axis=1))[0]
    d = np.flatnonzero((pi == [0, 1, 1]).all(axis=1))[0]
    exposure = np.zeros((2, 8))
    exposure[:, a] = exposure[:, d] = [1.5, 0.5]
    np.testing.assert_allclose(cells.ill.exposure, exposure)
    assert cells.ill.events[1, a, 0] == 1 and cells.ill.events.sum() == 1
    mask = ms.default_effect_mask(s, 1)
    np.testing.assert_array_equal(mask[:3], [[1, 0, 0]] * 3)
    np.testing.assert_array_equal(mask[3:], [[1, 1, 1]] * 2)


def test_impossible_paths_are_refused():
    with pytest.raises(ValueError, match="zero sojourn"):
        ms.IllnessDeathPaths.from_arrays([5.0], [0], [5.0], [1])
    with pytest.raises(ValueError, match="illness after exit"):
        ms.IllnessDeathPaths.from_arrays([6.0], [0], [5.0], [0])
    paths = ms.IllnessDeathPaths.from_arrays([1.0], [3], [5.0], [0])
    with pytest.raises(ValueError, match="mark out of range"):
        ms.transition_cells(paths, VLMS, [0.0], [0.0])


# --------------------------------------------------------------------------- derived quantities


@pytest.mark.parametrize("c", [0.02, 0.05])  # 0.05 = a + b: the degenerate convolution
def test_occupation_with_constant_hazards_is_the_closed_form(c):
    a, b = 0.03, 0.02
    t = np.array([0.0, 1.0, 10.0, 50.0, 200.0])
    occ = ms.state_occupation(
        np.log([[a], [b]]), np.log([[[[c]]]]), np.array([0.0]), np.array([0.0]), t
    )
    p0 = np.exp(-(a + b) * t)
    p1 = a * t * np.exp(-c * t) if c == a + b else a * (np.exp(-c * t) - p0) / (a + b - c)
    np.testing.assert_allclose(occ[0], p0, rtol=1e-12)
    np.testing.assert_allclose(occ[1], p1, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(occ[2], 1 - p0 - p1, rtol=1e-10, atol=1e-15)


def _piecewise(h: np.ndarray, cuts: np.ndarray):
    """Hazard and cumulative hazard of one piecewise-constant hazard row (scalar argument)."""

    def rate(s: float) -> float:
        return float(h[np.searchsorted(cuts, s, side="right") - 1]) if s > 0 else float(h[0])

    def cum(s: float) -> float:
        upper = np.append(cuts[1:], np.inf)
        return float(np.sum(h * np.clip(np.minimum(s, upper) - cuts, 0, None)))

    return rate, cum


@pytest.mark.parametrize("entry_cuts", [(), (11.0,), (7.0, 25.0)])
def test_occupation_matches_numerical_integration(entry_cuts):
    """Two marks, two deaths, unaligned cuts; the hazards after the illness may also depend on
    the illness-time group (``entry_cuts``)."""
    rng = np.random.default_rng(3)
    c0, c1 = np.array([0.0, 5.0, 13.0, 30.0]), np.array([0.0, 4.0, 17.0])
    groups = np.array(entry_cuts)
    h0 = rng.uniform(0.005, 0.05, (2 + 2, c0.size))  # two marks, two deaths
    h1_groups = rng.uniform(0.005, 0.08, (groups.size + 1, 2, 2, c1.size))  # group, mark
    times = np.array([9.0, 21.0, 34.0, 60.0])  # 21 = 17 + 4: breakpoints coincide
    occ = ms.state_occupation(np.log(h0), np.log(h1_groups), c0, c1, times, entry_cuts)
    lam0 = _piecewise(h0.sum(0), c0)[1]

    def after(u: float, r: int, which: int | None):
        """Cumulative hazard (all deaths) or hazard of death ``which`` after an illness at u."""
        h1 = h1_groups[np.searchsorted(groups, u, side="left"), r]
        return _piecewise(h1.sum(0), c1)[1] if which is None else _piecewise(h1[which], c1)[0]

    for i, t in enumerate(times):
        points = sorted({*c0[c0 < t], *groups[groups < t], *(t - c1[c1 < t])})
        for r in range(2):
            entry = _piecewise(h0[r], c0)[0]
            p_ill = integrate.quad(
                lambda u, e=entry, r=r, t=t: (
                    np.exp(-lam0(u)) * e(u) * np.exp(-after(u, r, None)(t - u))
                ),
                0,
                t,
                points=points,
                epsabs=1e-12,
            )[0]
            assert occ[1 + r, i] == pytest.approx(p_ill, abs=1e-9)
        for k in range(2):
            direct = integrate.quad(
                lambda u, k=k: np.exp(-lam0(u)) * _piecewise(h0[2 + k], c0)[0](u),
                0,
                t,
                points=points,
            )[0]
            via = 0.0
            for r in range(2):
                entry = _piecewise(h0[r], c0)[0]

                def cif(u, s, r=r, k=k):
                    lam1, hk = after(u, r, None), after(u, r, k)
                    inner = [v for v in c1 if 0 < v < s]
                    return integrate.quad(
                        lambda v: np.exp(-lam1(v)) * hk(v), 0, s, points=inner or None
                    )[0]

                via += integrate.quad(
                    lambda u, e=entry, f=cif, t=t: np.exp(-lam0(u)) * e(u) * f(u, t - u),
                    0,
                    t,
                    points=points,
                )[0]
            assert occ[3 + k, i] == pytest.approx(direct + via, abs=1e-8)
    np.testing.assert_allclose(occ.sum(axis=0), 1.0, atol=1e-12)


@pytest.mark.parametrize("late_log_hr", [None, np.log(0.4)])
def test_occupation_and_cif_after_recurrence_match_the_simulated_truth(late_log_hr):
    """The model's exact formulas against the simulator's independent Monte Carlo, without and
    with an effect of the recurrence time (after 24 months) on disease death after it."""
    truth = sim.vlms_like_truth(late_recurrence_log_hr=late_log_hr)
    structure = ms.IllnessDeath(marks=VLMS.marks, deaths=VLMS.deaths, entry_cuts=truth.entry_cuts)
    times = np.array([6.0, 24.0, 60.0, 130.0])
    n = 300_000
    start0, ill0 = np.log(truth.start_hazard), np.log(truth.ill_hazard)
    occ = 0.0
    for x, weight in ((0.0, 1 - truth.covariate_prob[0]), (1.0, truth.covariate_prob[0])):
        s, i = ms.profile_log_hazards(start0, ill0, truth.beta, np.array([x]), structure)
        occ = occ + weight * ms.state_occupation(
            s, i, truth.cuts_start, truth.cuts_ill, times, truth.entry_cuts
        )
    true = sim.monte_carlo_occupation(truth, times, n=n, seed=8)
    assert np.max(np.abs(occ - true)) < 5 * np.sqrt(0.25 / n) + 0.003  # MC + covariate mix error
    # disease death within 24 and 60 months of a distant recurrence by 24 months, size >= 5 cm
    latent = sim.simulate_latent(truth, n, seed=9)
    own = (latent.ill_mark == 1) & (latent.x[:, 0] == 1) & (latent.ill_time <= 24)
    soj = latent.exit_time[own] - latent.ill_time[own]
    mc = [np.mean((soj <= t) & (latent.death[own] == 1)) for t in (24.0, 60.0)]
    _, ill = ms.profile_log_hazards(start0, ill0, truth.beta, np.array([1.0]), structure)
    cif = ms.cif_after_illness(ill, truth.cuts_ill, np.array([24.0, 60.0]))
    np.testing.assert_allclose(cif[0, 1, 0], mc, atol=0.01)


def test_effects_reach_the_right_hazards():
    beta = np.arange(15, dtype=float).reshape(5, 3) / 10  # (transition, covariate)
    start0, ill0 = np.zeros((5, 2)), np.zeros((2, 3))
    s, i = ms.profile_log_hazards(start0, ill0, beta, np.array([1.0]), VLMS)
    np.testing.assert_allclose(s[:, 0], [0.0, 0.0, 0.0, 0.3, 0.6])  # three marks share row 0
    np.testing.assert_allclose(i[0, 0, :, 0], [0.9, 1.2])  # reference mark: size only
    np.testing.assert_allclose(i[0, 1, :, 0], [0.9 + 1.0, 1.2 + 1.3])  # distant indicator
    np.testing.assert_allclose(i[0, 2, :, 0], [0.9 + 1.1, 1.2 + 1.4])  # local-and-distant


# --------------------------------------------------------------------------- sampling


SETTINGS = {"draws": 400, "tune": 400, "chains": 2, "cores": 2, "target_accept": 0.95}


def _cells(paths: ms.IllnessDeathPaths, truth: sim.IllnessDeathTruth) -> ms.TransitionCells:
    ps, pi = ms.binary_transition_patterns(1, VLMS)
    return ms.transition_cells(
        paths, VLMS, truth.cuts_start, truth.cuts_ill, patterns_start=ps, patterns_ill=pi
    )


@pytest.fixture(scope="module")
def compiled():
    nutpie = pytest.importorskip("nutpie")
    truth = sim.vlms_like_truth()
    paths = _paths(sim.simulate_paths(truth, 1500, seed=41))
    model = ms.build_multistate(
        _cells(paths, truth),
        structure=VLMS,
        cuts_start=truth.cuts_start,
        cuts_ill=truth.cuts_ill,
        covariate_names=["size"],
    )
    names = [v.name for v in model.free_RVs] + [v.name for v in model.deterministics]
    return model, nutpie.compile_pymc_model(model, var_names=names), truth, paths


def _draws(idata, name: str) -> np.ndarray:
    values = idata.posterior[name].values
    return values.reshape(-1, *values.shape[2:])


def test_model_dims_and_masked_effects(compiled):
    model = compiled[0]
    assert model.named_vars_to_dims["beta"] == ("transition", "covariate")
    assert model.named_vars_to_dims["start_log_h0"] == ("hazard_start", "interval_start")
    assert len(model.coords["effect"]) == 5 + 2 * 2  # size on all, two type indicators on two
    point = model.initial_point()
    assert np.isfinite(model.compile_logp()(point))
    beta = model["beta"].eval({model["beta_free"]: np.arange(1.0, 10.0)})
    np.testing.assert_array_equal(
        beta, [[1, 0, 0], [2, 0, 0], [3, 0, 0], [4, 5, 6], [7, 8, 9]]
    )  # size on every transition; type indicators only out of recurrence


def test_posterior_recovers_truth_and_agrees_with_aalen_johansen(compiled):
    import nutpie

    _, cm, truth, paths = compiled
    idata = nutpie.sample(cm, seed=1, progress_bar=False, **SETTINGS)
    beta = _draws(idata, "beta")
    lo, hi = np.quantile(beta, [0.005, 0.995], axis=0)
    free = ms.default_effect_mask(VLMS, 1)
    assert np.all((lo <= truth.beta) & (truth.beta <= hi) | ~free)
    assert lo[0, 0] > 0  # the recurrence effect of size is found
    times = np.array([12.0, 24.0, 36.0, 60.0, 84.0])
    occ = ms.cohort_state_occupation(
        _draws(idata, "start_log_h0"),
        _draws(idata, "ill_log_h0"),
        beta,
        paths.x,
        VLMS,
        truth.cuts_start,
        truth.cuts_ill,
        times,
    )
    olo, omed, ohi = np.quantile(occ, [0.025, 0.5, 0.975], axis=0)
    ref = aj.illness_death_occupation(
        paths.ill_time,
        paths.ill_mark,
        paths.exit_time,
        paths.death,
        times,
        states=VLMS.occupation_states(),
        n_marks=3,
        split_marks=True,
    ).probability.T
    assert np.max(np.abs(omed - ref)) < 0.03
    assert np.mean((olo <= ref) & (ref <= ohi)) >= 0.9


def test_with_data_refits_the_compiled_model(compiled):
    """New data (size has no effect on recurrence) through the same compiled model: the
    posterior follows the new data, so the data really are swapped."""
    import nutpie

    _, cm, _, _ = compiled
    truth = sim.vlms_like_truth(recurrence_log_hr=0.0)
    new = ms.multistate_data(_cells(_paths(sim.simulate_paths(truth, 1500, seed=42)), truth))
    idata = nutpie.sample(cm.with_data(**new), seed=2, progress_bar=False, **SETTINGS)
    hr = np.exp(_draws(idata, "beta")[:, 0, 0])
    lo, hi = np.quantile(hr, [0.005, 0.995])
    assert lo < 1.0 < hi and hi < 1.8
