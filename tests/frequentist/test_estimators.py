"""analysis.frequentist against values derived by hand, and the fast path against lifelines."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize, special

from analysis.core import separation
from analysis.frequentist import estimators as fq

Z = float(special.ndtri(0.975))

# Five patients: events at 2, 3, 5; censored at 3 and 8.
T5 = [2.0, 3.0, 3.0, 5.0, 8.0]
E5 = [1, 1, 0, 1, 0]
# By hand: S(2) = 4/5, S(3) = 4/5 * 3/4 = 0.6, S(5) = 0.6 * 1/2 = 0.3, flat to 8.
# Greenwood sums: 1/(5*4) = 0.05; + 1/(4*3); + 1/(2*1).
GW = {2.0: 1 / 20, 3.0: 1 / 20 + 1 / 12, 5.0: 1 / 20 + 1 / 12 + 1 / 2}


@pytest.mark.parametrize("fast", [False, True])
def test_km_five_patients_by_hand(fast: bool) -> None:
    km = fq.kaplan_meier(T5, E5, [0, 2, 2.5, 3, 4, 5, 8, 9], conf_type="log", fast=fast)
    assert km.survival == pytest.approx([1, 0.8, 0.8, 0.6, 0.6, 0.3, 0.3, 0.3], abs=1e-15)
    assert km.n_at_risk == [5, 5, 4, 4, 2, 2, 1, 0]
    # R's "log" interval: S exp(-+ z se), se = sqrt(Greenwood sum), upper capped at 1
    assert km.lower[3] == pytest.approx(0.6 * math.exp(-Z * math.sqrt(GW[3.0])), rel=1e-12)
    assert km.upper[3] == 1.0
    assert km.lower[1] == pytest.approx(0.8 * math.exp(-Z * math.sqrt(GW[2.0])), rel=1e-12)
    assert km.lower[0] == km.upper[0] == 1.0
    # median: the curve first drops below 0.5 at t = 5
    assert km.median == 5.0
    # lower curve: 0.516 at 2, 0.293 at 3 -> crosses 0.5 at 3; upper curve never drops to 0.5
    assert km.median_lower == 3.0
    assert math.isnan(km.median_upper)
    assert (km.n, km.events, km.conf_type) == (5, 3, "log")


def test_km_log_log_interval_by_hand_and_equals_lifelines() -> None:
    from lifelines import KaplanMeierFitter

    km = fq.kaplan_meier(T5, E5, [2, 3, 5], conf_type="log-log")
    for i, t in enumerate([2.0, 3.0, 5.0]):
        s = km.survival[i]
        w = math.sqrt(GW[t]) / abs(math.log(s))
        v = math.log(-math.log(s))
        assert km.lower[i] == pytest.approx(math.exp(-math.exp(v + Z * w)), rel=1e-12)
        assert km.upper[i] == pytest.approx(math.exp(-math.exp(v - Z * w)), rel=1e-12)
    ci = KaplanMeierFitter().fit(T5, E5).confidence_interval_
    assert km.lower == pytest.approx(ci.loc[[2.0, 3.0, 5.0]].iloc[:, 0].tolist(), rel=1e-12)
    assert km.upper == pytest.approx(ci.loc[[2.0, 3.0, 5.0]].iloc[:, 1].tolist(), rel=1e-12)


def test_median_midpoint_on_a_flat_stretch_at_one_half() -> None:
    # four deaths: S = 0.75, 0.5, 0.25, 0 -> flat at exactly 0.5 on [2, 3): R gives 2.5
    assert fq.km_median([1, 2, 3, 4], [1, 1, 1, 1]) == 2.5
    # lifelines' own rule gives 2 here: the reason we do not use it
    from lifelines import KaplanMeierFitter

    assert KaplanMeierFitter().fit([1, 2, 3, 4], [1, 1, 1, 1]).median_survival_time_ == 2.0
    # a flat at 0.5 that runs to the end of follow-up: midpoint with the last time (2 + 4) / 2
    assert fq.km_median([1, 2, 3, 4], [1, 1, 0, 0]) == 3.0
    # never reaching 0.5: not reached
    assert math.isnan(fq.km_median([1, 2, 3, 4], [1, 0, 0, 0]))


def test_median_tolerance_treats_rounding_as_flat() -> None:
    # 1 - 0.5 computed through a product that is off by an ulp still counts as flat
    s = np.array([0.75, 0.5 * (1 + 1e-15), 0.25])
    assert fq.r_quantile(np.array([1.0, 2.0, 3.0]), s) == 2.5


def test_logrank_two_groups_by_hand() -> None:
    # A: events at 1, 3; B: event at 2, censored at 4.
    # O_A - E_A = 2 - (1/2 + 1/3 + 1/2) = 2/3; V = 1/4 + 2/9 + 1/4 = 13/18; chi2 = 8/13
    t, e, g = [1, 3, 2, 4], [1, 1, 1, 0], ["A", "A", "B", "B"]
    for fast in (False, True):
        res = fq.logrank(t, e, g, fast=fast)
        assert res.chisq == pytest.approx(8 / 13, rel=1e-12)
        assert res.df == 1
        assert res.p == pytest.approx(float(special.chdtrc(1, 8 / 13)), rel=1e-12)


def test_logrank_needs_two_groups() -> None:
    with pytest.raises(ValueError):
        fq.logrank([1, 2], [1, 1], ["a", "a"])


# Tied deaths: at t = 1 two events (both x = 1) among all five; at t = 2 one event (x = 0).
TT = [1.0, 1.0, 2.0, 2.0, 3.0]
TE = [1, 1, 1, 0, 0]
TX = [1.0, 1.0, 0.0, 1.0, 0.0]


def _efron_score(b: float) -> float:
    # Efron: l(b) = 2b - log(3u + 2) - log(3u + 2 - u) - log(u + 2), u = exp(b)
    u = math.exp(b)
    return 2 - 3 * u / (3 * u + 2) - 2 * u / (2 * u + 2) - u / (u + 2)


def _breslow_score(b: float) -> float:
    u = math.exp(b)
    return 2 - 2 * 3 * u / (3 * u + 2) - u / (u + 2)


@pytest.mark.parametrize("fast", [False, True])
def test_cox_tied_times_uses_efron(fast: bool) -> None:
    b_efron = optimize.brentq(_efron_score, -5, 5, xtol=1e-15)
    b_breslow = optimize.brentq(_breslow_score, -5, 5, xtol=1e-15)
    u = math.exp(b_efron)
    info = 6 * u / (3 * u + 2) ** 2 + 4 * u / (2 * u + 2) ** 2 + 2 * u / (u + 2) ** 2
    se = 1 / math.sqrt(info)
    res = fq.cox(TT, TE, {"x": TX}, fast=fast)
    term = res.terms["x"]
    assert term.hr == pytest.approx(math.exp(b_efron), rel=1e-7)
    assert abs(term.hr / math.exp(b_breslow) - 1) > 1e-2  # the tie method matters here
    assert term.se == pytest.approx(se, rel=1e-6)
    assert term.lower == pytest.approx(math.exp(b_efron - Z * se), rel=1e-6)
    assert term.p == pytest.approx(2 * special.ndtr(-abs(b_efron / se)), rel=1e-6)
    assert not term.monotone


def test_cox_converges_tightly_compared_with_lifelines_defaults() -> None:
    from lifelines import CoxPHFitter

    rng = np.random.default_rng(5)
    n = 60
    x = rng.integers(0, 2, n).astype(float)
    t = np.round(rng.exponential(30 / np.exp(0.8 * x)), 1)
    e = (rng.random(n) < 0.7).astype(float)
    exact = fq.cox(t, e, {"x": x}, fast=True).terms["x"]
    tight = fq.cox(t, e, {"x": x}).terms["x"]
    assert tight.hr == pytest.approx(exact.hr, rel=1e-8)
    assert tight.p == pytest.approx(exact.p, rel=1e-8)
    import pandas as pd

    loose = CoxPHFitter().fit(pd.DataFrame({"t": t, "e": e, "x": x}), "t", "e")
    assert abs(math.exp(loose.params_["x"]) / exact.hr - 1) > abs(tight.hr / exact.hr - 1)


@pytest.mark.parametrize("fast", [False, True])
def test_monotone_likelihood_is_reported_not_estimated(fast: bool) -> None:
    t = [1, 2, 3, 4, 5, 6]
    e = [1, 1, 0, 1, 0, 0]
    x = [1, 1, 0, 1, 0, 1]  # every event in the x = 1 group
    res = fq.cox(t, e, {"x": x}, fast=fast)
    term = res.terms["x"]
    assert res.monotone and term.monotone
    assert term.hr == math.inf
    assert math.isnan(term.lower) and math.isnan(term.upper) and math.isnan(term.p)
    low = fq.cox(t, e, {"x": [1 - v for v in x]}, fast=fast).terms["x"]
    assert low.monotone and low.hr == 0.0


def test_monotone_detected_in_a_multivariable_fit() -> None:
    t = np.arange(1.0, 13.0)
    e = np.array([1, 1, 0, 1, 0, 0, 1, 0, 1, 0, 0, 0], float)
    x = np.where(e > 0, 1.0, 0.0)
    x[[2, 5]] = 1.0
    z = np.random.default_rng(0).normal(size=t.size)
    res = fq.cox(t, e, {"x": x, "z": z})
    assert res.monotone and res.terms["x"].monotone and res.terms["x"].hr == math.inf
    assert not res.terms["z"].monotone


def test_monotone_direction_ignores_uninformative_data() -> None:
    # events only where the risk set is constant in x: flat, not monotone
    assert separation.monotone_direction(np.array([1.0, 2.0]), np.array([1, 1]), np.ones(2)) == 0
    # events in both groups: an ordinary finite MLE
    assert (
        separation.monotone_direction(
            np.array([1.0, 2, 3, 4]), np.array([1, 1, 1, 0]), np.array([1.0, 0, 1, 0])
        )
        == 0
    )


def test_multivariable_terms_have_drop_one_lr_p() -> None:
    rng = np.random.default_rng(2)
    n = 50
    x, z = rng.integers(0, 2, n).astype(float), rng.normal(size=n)
    t, e = rng.exponential(20, n), (rng.random(n) < 0.8).astype(float)
    full = fq.cox(t, e, {"x": x, "z": z})
    only_z = fq.cox(t, e, {"z": z})
    lr = 2 * (full.loglik - only_z.loglik)
    assert full.terms["x"].lr_p == pytest.approx(float(special.chdtrc(1, lr)), rel=1e-8)
    assert full.lr_df == 2


def test_fast_path_equals_lifelines() -> None:
    rng = np.random.default_rng(11)
    n = 63
    t = np.round(rng.exponential(40, n), 0)  # rounding makes ties
    e = (rng.random(n) < 0.6).astype(float)
    x, z = rng.integers(0, 2, n).astype(float), rng.normal(size=n)
    g = rng.choice(["a", "b", "c"], n)
    for slow, fast in [
        (fq.cox(t, e, {"x": x, "z": z}), fq.cox(t, e, {"x": x, "z": z}, fast=True)),
        (fq.cox(t, e, {"x": x}), fq.cox(t, e, {"x": x}, fast=True)),
    ]:
        for name, term in slow.terms.items():
            other = fast.terms[name]
            for attr in ("hr", "lower", "upper", "p", "lr_p", "se"):
                assert getattr(other, attr) == pytest.approx(getattr(term, attr), rel=1e-8)
    lr_slow, lr_fast = fq.logrank(t, e, g), fq.logrank(t, e, g, fast=True)
    assert lr_fast.chisq == pytest.approx(lr_slow.chisq, rel=1e-10)
    assert lr_fast.df == lr_slow.df == 2
    km_slow = fq.kaplan_meier(t, e).to_dict()
    km_fast = fq.kaplan_meier(t, e, fast=True).to_dict()
    assert km_fast.pop("conf_type") == km_slow.pop("conf_type")
    for name, value in km_slow.items():
        np.testing.assert_allclose(km_fast[name], value, rtol=1e-12)  # type: ignore[arg-type]


def test_aalen_johansen_deterministic_and_intervals_ordered() -> None:
    # tied event times of different causes at 2 and 4, a censoring tied at 4
    t = [1, 2, 2, 3, 4, 4, 4, 5, 6, 7]
    c = [1, 1, 2, 0, 2, 1, 0, 1, 2, 0]
    first = fq.cumulative_incidence(t, c, [2, 4, 6])
    for _ in range(3):
        again = fq.cumulative_incidence(t, c, [2, 4, 6])
        assert {k: v.cif for k, v in again.items()} == {k: v.cif for k, v in first.items()}
    for res in first.values():
        for v, lo, hi in zip(res.cif, res.lower, res.upper, strict=True):
            assert lo <= v <= hi
    # by hand (R's estimate; ties of different causes count at the same time):
    # t=1: n=10, one cause 1 -> F1 = 0.1, S = 0.9
    # t=2: n=9, one of each -> F1 = 0.1 + 0.9/9 = 0.2, F2 = 0.1, S = 0.7
    # t=3: a censoring; t=4: n=6, one of each -> F1 += 0.7/6, F2 += 0.7/6
    assert first[1].cif[0] == pytest.approx(0.2, abs=1e-12)
    assert first[2].cif[0] == pytest.approx(0.1, abs=1e-12)
    assert first[1].cif[1] == pytest.approx(0.2 + 0.7 / 6, abs=1e-12)
    assert first[2].cif[1] == pytest.approx(0.1 + 0.7 / 6, abs=1e-12)


def test_aalen_johansen_sums_to_one_minus_km() -> None:
    rng = np.random.default_rng(3)
    t = np.round(rng.exponential(10, 40))  # includes events at time 0 and tied causes
    c = rng.integers(0, 3, 40)
    assert ((t == 0) & (c > 0)).any()
    cif = fq.cumulative_incidence(t, c, [5, 10, 20])
    km = fq.km_survival_at(t, (c > 0).astype(float), [5, 10, 20])
    total = np.array(cif[1].cif) + np.array(cif[2].cif)
    assert total == pytest.approx(1 - km, abs=1e-12)


def test_rmst_and_its_greenwood_se_by_hand() -> None:
    # T5 curve: 1 on [0,2), 0.8 on [2,3), 0.6 on [3,5), 0.3 on [5,6) with horizon 6
    res = fq.rmst(T5, E5, 6.0)
    assert res.rmst == pytest.approx(2 + 0.8 + 1.2 + 0.3, abs=1e-12)
    # areas after each event time to the horizon: A(2)=0.8+1.2+0.3, A(3)=1.2+0.3, A(5)=0.3
    var = (2.3**2) / 20 + (1.5**2) / 12 + (0.3**2) / 2
    assert res.se == pytest.approx(math.sqrt(var), rel=1e-12)
    # lifelines' own "variance" is of min(T, tau), not of the estimator
    from lifelines import KaplanMeierFitter
    from lifelines.utils import restricted_mean_survival_time

    _, lifelines_var = restricted_mean_survival_time(
        KaplanMeierFitter().fit(T5, E5), t=6.0, return_variance=True
    )
    assert abs(math.sqrt(lifelines_var) - res.se) > 0.1


def test_conf_type_is_validated() -> None:
    curve = fq.km_curve(T5, E5)
    with pytest.raises(ValueError):
        fq.km_confidence(curve, "plain")  # type: ignore[arg-type]


@pytest.mark.parametrize("fast", [False, True])
def test_flat_likelihood_is_not_estimable(fast: bool) -> None:
    # the only x = 0 patient is censored before any event: every risk set is constant in x
    t = [53.4, 44.7, 32.3, 48.6, 103.2]
    e = [1, 1, 0, 1, 0]
    x = [1.0, 1.0, 0.0, 1.0, 1.0]
    assert separation.likelihood_shape(np.array(t), np.array(e), np.array(x)) == "flat"
    term = fq.cox(t, e, {"x": x}, fast=fast).terms["x"]
    assert not term.estimable and math.isnan(term.hr)
    # with another covariate the flat one drops out of the likelihood exactly
    z = [0.3, -1.2, 0.5, 2.0, 0.1]
    both = fq.cox(t, e, {"x": x, "z": z}, fast=fast)
    alone = fq.cox(t, e, {"z": z}, fast=fast)
    assert not both.terms["x"].estimable
    assert both.terms["z"].hr == pytest.approx(alone.terms["z"].hr, rel=1e-12)


def test_lifelines_overshoot_on_a_rare_covariate_is_retried() -> None:
    # lifelines' plain Newton-Raphson diverges here (2 of 26 exposed) with its default step
    t = [17.25, 32.85, 35.12, 37.92, 47.93, 34.88, 56.64, 48.38, 19.51, 49.9, 25.7, 91.72, 90.54,
         66.54, 118.67, 43.79, 11.44, 81.68, 19.09, 20.39, 53.81, 24.49, 28.97, 25.29, 70.37,
         52.86]  # fmt: skip
    e = [1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1]
    x = [0.0] * 26
    x[0] = x[10] = x[18] = 1.0
    slow = fq.cox(t, e, {"x": x}).terms["x"]
    fast = fq.cox(t, e, {"x": x}, fast=True).terms["x"]
    assert math.isfinite(slow.hr)
    assert slow.hr == pytest.approx(fast.hr, rel=1e-8)
    assert slow.p == pytest.approx(fast.p, rel=1e-8)
