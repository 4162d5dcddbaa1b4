"""The stacked models are their single-fit models side by side: the joint log density is the sum
of the single fits' log densities (no sampling here; sampling is in tests/inference)."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytest

from models.competing import build_competing, cause_log_rates
from models.pem import build_pem
from models.priors import Priors
from models.stacked import (
    build_stacked_competing,
    build_stacked_pem,
    effect_prior_arrays,
    stacked_competing_data,
    stacked_pem_data,
)
from models.survival_data import binary_patterns, collapse, crude_rate, expand

CUTS = np.array([0.0, 6.0, 12.0, 24.0, 60.0])
PRIORS = [
    Priors(effect_sd=0.5),
    Priors(effect_family="student_t", effect_sd=1.0, effect_nu=3.0),
    Priors(effect_sd=2.5),
]


def _data(seed: int, n_causes: int | None = None, p: int = 2):
    rng = np.random.default_rng(seed)
    n = 30 + 5 * seed
    t = rng.exponential(40.0, n) + 0.1
    e = (rng.random(n) < 0.6).astype(int)
    if n_causes:
        e = e * rng.integers(1, n_causes + 1, n)
    x = rng.integers(0, 2, (n, p)).astype(float)
    cells = collapse(expand(t, e, x, CUTS), len(CUTS), binary_patterns(p), n_causes)
    return t, e, cells


def _point(model: pm.Model, rng: np.random.Generator) -> dict[str, np.ndarray]:
    ip = model.initial_point()
    return {k: rng.normal(0.0, 0.7, np.shape(v)) for k, v in ip.items()}


def _split(point: dict[str, np.ndarray], b: int) -> dict[str, np.ndarray]:
    return {k: v[b] for k, v in point.items()}


def _assert_sum_of_singles(stacked: pm.Model, singles: list[pm.Model], seed: int) -> None:
    """Same value variables (with a leading fit dim), and the joint log density at random
    points equals the sum of the single models' at the matching slices."""
    assert {v.name for v in stacked.value_vars} == {v.name for v in singles[0].value_vars}
    joint = stacked.compile_logp()
    single = [m.compile_logp() for m in singles]
    rng = np.random.default_rng(seed)
    for _ in range(3):
        point = _point(stacked, rng)
        total = sum(f(_split(point, b)) for b, f in enumerate(single))
        np.testing.assert_allclose(joint(point), total, rtol=1e-10)


def test_stacked_pem_is_the_sum_of_single_pems() -> None:
    sets = [_data(s) for s in range(3)]
    cells = [c for _, _, c in sets]
    centers = [float(np.log(crude_rate(t, e))) for t, e, _ in sets]
    names = ["a", "b"]
    x_center = [np.array([0.0, 0.0]), np.array([0.3, -0.2]), np.array([0.5, 0.5])]
    x_scale = [np.array([1.0, 1.0]), np.array([2.0, 0.5]), np.array([0.7, 1.3])]
    stacked = build_stacked_pem(
        cells,
        cuts=CUTS,
        covariate_names=names,
        log_rate_center=centers,
        effect_priors=PRIORS,
        n_used=[2, 2, 2],
        x_center=x_center,
        x_scale=x_scale,
    )
    singles = [
        build_pem(
            c,
            cuts=CUTS,
            covariate_names=names,
            log_rate_center=r,
            priors=p,
            prior_as_data=True,
            x_center=xc,
            x_scale=xs,
        )
        for c, r, p, xc, xs in zip(cells, centers, PRIORS, x_center, x_scale, strict=True)
    ]
    _assert_sum_of_singles(stacked, singles, seed=1)
    assert stacked["log_h0"].eval().shape == (3, len(CUTS))
    # beta is per unit of the covariate: beta_std / scale, as in the single model
    (beta,) = stacked.replace_rvs_by_values([stacked["beta"]])
    per_unit = stacked.compile_fn(beta, inputs=stacked.value_vars, on_unused_input="ignore")
    point = _point(stacked, np.random.default_rng(5))
    sd = np.array([[p.effect_sd] * 2 for p in PRIORS])
    np.testing.assert_allclose(per_unit(point), sd * point["beta_std_z"] / np.array(x_scale))


def test_stacked_pem_swaps_data_and_priors() -> None:
    sets = [_data(s) for s in range(3)]
    cells = [c for _, _, c in sets]
    centers = [0.0, 0.0, 0.0]
    model = build_stacked_pem(
        cells,
        cuts=CUTS,
        covariate_names=["a", "b"],
        log_rate_center=centers,
        effect_priors=[Priors()] * 3,
        n_used=[2, 2, 2],
    )
    logp = model.compile_logp()
    rng = np.random.default_rng(2)
    point = _point(model, rng)
    before = logp(point)
    reordered = [cells[2], cells[0], cells[1]]
    with model:
        pm.set_data(stacked_pem_data(reordered, centers, [Priors()] * 3, [2, 2, 2]))
    moved = {k: v[[2, 0, 1]] for k, v in point.items()}
    np.testing.assert_allclose(logp(moved), before, rtol=1e-10)
    assert not np.isclose(logp(point), before)


def test_spare_slots_get_a_standard_normal_prior() -> None:
    arrays = effect_prior_arrays(PRIORS, n_used=[1, 2, 0], n_slots=2)
    np.testing.assert_array_equal(arrays["effect_prior_is_t"], [[0, 0], [1, 1], [0, 0]])
    np.testing.assert_array_equal(arrays["effect_prior_sd"], [[0.5, 1.0], [1.0, 1.0], [1, 1]])
    with pytest.raises(ValueError, match="n_used"):
        effect_prior_arrays(PRIORS[:1], n_used=[3], n_slots=2)


def test_empty_data_set_leaves_the_prior() -> None:
    _, _, cells = _data(0)
    empty = type(cells)(
        x=cells.x, exposure=np.zeros_like(cells.exposure), events=np.zeros_like(cells.events)
    )
    model = build_stacked_pem(
        [empty],
        cuts=CUTS,
        covariate_names=["a", "b"],
        log_rate_center=[0.0],
        effect_priors=[Priors()],
        n_used=[2],
    )
    (term,) = model.replace_rvs_by_values([model["loglik"]])
    loglik = model.compile_fn(term, inputs=model.value_vars, on_unused_input="ignore")
    rng = np.random.default_rng(3)
    assert loglik(_point(model, rng)) == 0.0


def test_stacked_competing_is_the_sum_of_single_models() -> None:
    causes = ["c1", "c2", "c3"]
    sets = [_data(s, n_causes=3, p=2) for s in range(2)]
    cells = [c for _, _, c in sets]
    centers = [cause_log_rates(t, e, 3) for t, e, _ in sets]
    priors = Priors()
    x_center = [np.array([0.0, 0.2]), np.array([0.4, 0.0])]
    x_scale = [np.array([1.0, 2.0]), np.array([0.5, 1.0])]
    stacked = build_stacked_competing(
        cells,
        cuts=CUTS,
        covariate_names=["a", "b"],
        cause_names=causes,
        log_rate_center=centers,
        priors=priors,
        x_center=x_center,
        x_scale=x_scale,
    )
    singles = [
        build_competing(
            c,
            cuts=CUTS,
            covariate_names=["a", "b"],
            cause_names=causes,
            log_rate_center=r,
            priors=priors,
            x_center=xc,
            x_scale=xs,
        )
        for c, r, xc, xs in zip(cells, centers, x_center, x_scale, strict=True)
    ]
    _assert_sum_of_singles(stacked, singles, seed=4)
    data = stacked_competing_data(cells, centers)
    assert data["events_by_interval"].shape == (2, 3, len(CUTS))
    assert data["events_by_pattern"].shape == (2, 3, 4)


def test_grids_must_match() -> None:
    _, _, a = _data(0)
    _, _, b = _data(1, p=1)
    with pytest.raises(ValueError, match="same grid"):
        stacked_pem_data([a, b], [0.0, 0.0], [Priors()] * 2, [2, 1])
    with pytest.raises(ValueError, match="random-walk"):
        build_stacked_pem(
            [a],
            cuts=CUTS,
            covariate_names=["a", "b"],
            log_rate_center=[0.0],
            effect_priors=[Priors()],
            n_used=[2],
            priors=Priors(baseline="independent"),
        )
