"""Person-period expansion, collapsing, and the derived-quantity formulas of models/."""

from __future__ import annotations

import numpy as np
import pytest

from models.pem import build_pem, median_survival, rmst, survival_curves
from models.survival_data import (
    binary_patterns,
    check_cuts,
    collapse,
    crude_rate,
    expand,
    exposure_to,
    interval_labels,
    intervals_for_events,
    poisson_loglik,
    quantile_cuts,
    round_significant,
    rows_as_cells,
)

CUTS = np.array([0.0, 6.0, 12.0, 24.0])


def _data(n: int = 80, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, size=(n, 2)).astype(float)
    t = rng.exponential(20 * np.exp(-0.5 * x[:, 0]), n) + 0.01
    c = rng.uniform(1, 40, n)
    return np.minimum(t, c), (t <= c).astype(int), x


def test_expand_exposure_and_events() -> None:
    t, e, x = _data()
    pp = expand(t, e, x, CUTS)
    per_patient = np.bincount(pp.patient, weights=pp.exposure, minlength=t.size)
    np.testing.assert_allclose(per_patient, t)
    assert np.array_equal(np.bincount(pp.patient, weights=pp.event, minlength=t.size), e)
    # the event row is the patient's last row
    for i in np.flatnonzero(e):
        rows = np.flatnonzero(pp.patient == i)
        assert pp.event[rows[-1]] == 1 and pp.event[rows[:-1]].sum() == 0


def test_interval_is_right_closed() -> None:
    pp = expand(np.array([6.0, 6.5]), np.array([1, 1]), np.zeros((2, 0)), CUTS)
    # an event exactly at the cut 6 belongs to (0, 6]; at 6.5 to (6, 12]
    assert pp.interval[pp.event == 1].tolist() == [0, 1]
    assert pp.exposure.tolist() == [6.0, 6.0, 0.5]


def test_expand_rejects_nonpositive_times() -> None:
    with pytest.raises(ValueError):
        expand(np.array([0.0]), np.array([1]), np.zeros((1, 0)), CUTS)


@pytest.mark.parametrize("bad", [[1.0, 2.0], [0.0, 5.0, 5.0], [0.0, np.inf], []])
def test_check_cuts_rejects(bad: list[float]) -> None:
    with pytest.raises(ValueError):
        check_cuts(bad)


def test_collapse_fixed_grid_keeps_totals() -> None:
    t, e, x = _data()
    pp = expand(t, e, x, CUTS)
    cells = collapse(pp, len(CUTS), binary_patterns(2))
    assert cells.exposure.shape == (len(CUTS), 4)
    np.testing.assert_allclose(cells.exposure.sum(), t.sum())
    assert cells.events.sum() == e.sum()
    # the same shapes for another data set of the same structure
    t2, e2, x2 = _data(n=30, seed=5)
    cells2 = collapse(expand(t2, e2, x2, CUTS), len(CUTS), binary_patterns(2))
    assert cells2.exposure.shape == cells.exposure.shape


def test_collapse_without_covariates() -> None:
    """No covariates (``vlms fit --data`` without --covariates): one pattern, the totals."""
    t, e, x = _data()
    for patterns in (None, binary_patterns(0)):
        cells = collapse(expand(t, e, x[:, :0], CUTS), len(CUTS), patterns)
        assert cells.x.shape == (1, 0) and cells.exposure.shape == (len(CUTS), 1)
        np.testing.assert_allclose(cells.exposure.sum(), t.sum())
        assert cells.events.sum() == e.sum()


def test_collapse_by_cause() -> None:
    t, e, x = _data()
    cause = np.where(e == 1, 1 + (np.arange(t.size) % 3), 0)
    cells = collapse(expand(t, cause, x, CUTS), len(CUTS), binary_patterns(2), n_causes=3)
    assert cells.events.shape == (len(CUTS), 4, 3)
    assert cells.events.sum(axis=(0, 1)).tolist() == [np.sum(cause == k) for k in (1, 2, 3)]


def test_expanded_and_collapsed_give_the_same_loglik() -> None:
    """Same likelihood up to a constant: the difference does not depend on the parameters."""
    t, e, x = _data()
    pp = expand(t, e, x, CUTS)
    rows = rows_as_cells(pp, len(CUTS))
    assert rows.exposure.shape == (len(CUTS), t.size)  # one pattern per patient
    cells = collapse(pp, len(CUTS), binary_patterns(2))
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(5):
        log_h = rng.normal(-3, 0.5, len(CUTS))
        beta = rng.normal(0, 0.7, 2)
        ll_rows = poisson_loglik(rows.events, rows.exposure, log_h[:, None] + rows.x @ beta)
        ll_cells = poisson_loglik(cells.events, cells.exposure, log_h[:, None] + cells.x @ beta)
        diffs.append(ll_rows.sum() - ll_cells.sum())
    assert np.ptp(diffs) < 1e-9
    # and the constant is the known one: sum d log E over rows - over cells + sum log d!
    from scipy.special import gammaln, xlogy

    const = (
        xlogy(rows.events, rows.exposure).sum()
        - xlogy(cells.events, cells.exposure).sum()
        + gammaln(cells.events + 1).sum()
    )
    assert diffs[0] == pytest.approx(const, abs=1e-9)


def test_pymc_model_loglik_expanded_vs_collapsed() -> None:
    """The PyMC model's log density differs by the same constant at every parameter value."""
    t, e, x = _data()
    pp = expand(t, e, x, CUTS)
    center = float(np.log(crude_rate(t, e)))
    kw = {"cuts": CUTS, "covariate_names": ["a", "b"], "log_rate_center": center}
    m_rows = build_pem(rows_as_cells(pp, len(CUTS)), **kw)
    m_cells = build_pem(collapse(pp, len(CUTS), binary_patterns(2)), **kw)
    f_rows = m_rows.compile_logp(vars=m_rows.potentials)
    f_cells = m_cells.compile_logp(vars=m_cells.potentials)
    rng = np.random.default_rng(3)
    diffs = []
    for _ in range(4):
        point = {
            "log_h_level_z": rng.normal(),
            "rw_sigma_log__": rng.normal(-1, 0.3),
            "rw_z": rng.normal(size=len(CUTS) - 1),
            "beta_std": rng.normal(size=2),
        }
        diffs.append(f_rows(point) - f_cells(point))
    assert np.ptp(diffs) < 1e-8


def test_quantile_cuts_and_labels() -> None:
    t, e, _ = _data()
    cuts = quantile_cuts(t, e, 4)
    assert cuts[0] == 0 and np.all(np.diff(cuts) > 0) and len(cuts) <= 4
    assert interval_labels([0, 6, 12]) == ["(0, 6]", "(6, 12]", "(12, inf)"]


def test_intervals_grow_with_the_events_up_to_a_cap() -> None:
    got = [intervals_for_events(k) for k in (0, 1, 2, 5, 10, 31, 140, 361, 362, 5000)]
    assert got == [1, 1, 2, 3, 4, 6, 12, 19, 20, 20]
    assert intervals_for_events(5000, cap=8) == 8


def test_round_significant() -> None:
    np.testing.assert_array_equal(
        round_significant(np.array([0.0, 0.05341, 5.300001, 187.3, 1234.0])),
        [0.0, 0.053, 5.3, 190.0, 1200.0],
    )


def test_quantile_cuts_split_the_events_evenly_in_any_unit() -> None:
    rng = np.random.default_rng(3)
    t = rng.weibull(0.7, 2000) * 900.0 + 0.5  # days
    e = (rng.random(2000) < 0.6).astype(int)
    days = quantile_cuts(t, e)
    assert len(days) == 20 and days[0] == 0  # sqrt(~1200 events) > 20: the cap
    per_interval = np.bincount(np.searchsorted(days, t[e == 1], side="left") - 1)
    assert per_interval.min() > 0.9 * e.sum() / 20 and per_interval.max() < 1.1 * e.sum() / 20
    years = quantile_cuts(t / 365.25, e)
    np.testing.assert_allclose(years * 365.25, days, rtol=0.01)  # the same cuts, rounded
    assert list(quantile_cuts(t, np.zeros_like(e))) == [0.0]
    assert list(quantile_cuts(t, e, n_intervals=1)) == [0.0]


def test_exposure_to_grid() -> None:
    np.testing.assert_allclose(
        exposure_to(CUTS, np.array([3.0, 30.0])), [[3, 0, 0, 0], [6, 6, 12, 6]]
    )


def test_constant_hazard_formulas() -> None:
    """Exponential survival: RMST, median and S(t) in closed form."""
    lam = 0.02
    log_h = np.full(len(CUTS), np.log(lam))
    assert rmst(log_h, CUTS, 60.0) == pytest.approx((1 - np.exp(-lam * 60)) / lam, rel=1e-12)
    assert median_survival(log_h, CUTS, 120.0) == pytest.approx(np.log(2) / lam, rel=1e-12)
    assert median_survival(log_h, CUTS, 20.0) == 20.0  # capped
    s = survival_curves(log_h, None, np.zeros((1, 0)), CUTS, np.array([10.0, 50.0]))
    np.testing.assert_allclose(s[0], np.exp(-lam * np.array([10.0, 50.0])))


def test_piecewise_rmst_matches_numerical_integral() -> None:
    log_h = np.log([0.01, 0.05, 0.02, 0.03])
    grid = np.linspace(0, 60, 60001)
    s = survival_curves(log_h, None, np.zeros((1, 0)), CUTS, grid)[0]
    assert rmst(log_h, CUTS, 60.0) == pytest.approx(np.trapezoid(s, grid), rel=1e-7)
    med = median_survival(log_h, CUTS, 500.0)
    s_med = survival_curves(log_h, None, np.zeros((1, 0)), CUTS, np.array([med]))[0, 0]
    assert s_med == pytest.approx(0.5, abs=1e-12)
