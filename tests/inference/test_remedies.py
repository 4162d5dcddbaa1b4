"""The remedy ladder: order, cumulative changes, stopping at the first fit that meets the bar."""

from __future__ import annotations

from typing import Any

from analysis.inference.engine import SamplerSettings
from analysis.inference.remedies import REMEDIES, fit_with_remedies
from models.priors import Priors

GOOD = {"max_rhat": 1.001, "min_ess_bulk": 900.0, "min_ess_tail": 800.0, "divergences": 0}
BAD = {**GOOD, "divergences": 3}


def _ladder(
    outcomes: list[bool], details: list[dict] | None = None
) -> tuple[list[tuple[Any, Priors]], list[Any], Any]:
    calls: list[tuple[Any, Priors]] = []

    def run(settings: Any, priors: Priors) -> int:
        calls.append((settings, priors))
        return len(calls) - 1

    def check(i: int) -> tuple[bool, dict[str, Any]]:
        if details is not None:
            return outcomes[i], details[i]
        return outcomes[i], GOOD if outcomes[i] else BAD

    logged: list[str] = []
    result, attempts = fit_with_remedies(
        run, check, SamplerSettings(draws=100, tune=50), Priors(), log=logged.append
    )
    return calls, attempts, (result, logged)


def test_a_fit_that_meets_the_bar_is_not_refitted() -> None:
    calls, attempts, (result, logged) = _ladder([True])
    assert len(calls) == 1 and result == 0 and logged == []
    assert [a.remedy for a in attempts] == ["none"] and attempts[0].meets_bar


def test_remedies_apply_in_order_and_cumulatively_until_the_bar_is_met() -> None:
    calls, attempts, (result, logged) = _ladder([False, False, True, True])
    assert result == 2 and len(calls) == 3 and len(logged) == 2
    (s0, p0), (s1, p1), (s2, p2) = calls
    assert (s0.target_accept, s0.draws, p0.parameterization) == (0.95, 100, "non_centred")
    assert (s1.target_accept, s1.draws, p1.parameterization) == (0.99, 100, "non_centred")
    assert (s2.target_accept, s2.draws, s2.tune) == (0.99, 200, 100)
    assert p2.parameterization == "non_centred"
    assert [a.remedy for a in attempts] == ["none", "target_accept", "longer"]
    assert [a.meets_bar for a in attempts] == [False, False, True]
    assert [a.reported for a in attempts] == [False, False, True]
    assert attempts[0].divergences == 3 and attempts[-1].divergences == 0


def test_every_remedy_is_tried_when_all_fail() -> None:
    calls, attempts, (result, _) = _ladder([False] * 10)
    assert len(calls) == len(REMEDIES) + 1
    assert result == 0 and attempts[0].reported  # equally bad: the first is kept
    (centred_settings, centred_priors), (last_settings, last_priors) = calls[-2:]
    assert (centred_settings.draws, centred_priors.parameterization) == (200, "centred")
    # equally bad attempts: the last step starts again from the first (closest) attempt
    assert (last_settings.draws, last_settings.tune) == (200, 100)
    assert last_settings.target_accept == 0.95
    assert last_priors.parameterization == "non_centred"
    assert not any(a.meets_bar for a in attempts)
    assert "bar missed" in attempts[-1].summary()


def test_when_every_remedy_fails_the_attempt_closest_to_the_bar_is_reported() -> None:
    """A remedy can make things worse (the centred baseline on a small cohort): the reported
    fit is the one with the fewest divergences, then the lowest R-hat, then the largest ESS."""
    details = [
        {**GOOD, "divergences": 2},
        {**GOOD, "min_ess_tail": 265.0},
        {**GOOD, "min_ess_tail": 380.0, "max_rhat": 1.005},
        {**GOOD, "max_rhat": 1.08, "min_ess_bulk": 36.0},
        {**GOOD, "min_ess_tail": 300.0},
    ]
    calls, attempts, (result, _) = _ladder([False] * 5, details)
    assert len(calls) == 5 and result == 2
    assert [a.reported for a in attempts] == [False, False, True, False, False]
    assert "reported" in attempts[2].summary()
    # the last step doubled the draws of attempt 2 (0.99, twice the draws, non-centred)
    (best_settings, _), (last_settings, last_priors) = calls[2], calls[4]
    assert last_settings.draws == 2 * best_settings.draws == 400
    assert last_priors.parameterization == "non_centred"


def test_target_acceptance_is_raised_only_after_divergences() -> None:
    """A miss by ESS alone goes straight to longer chains; once an attempt diverges, the
    skipped step is still available."""
    low_ess = {**GOOD, "min_ess_bulk": 320.0}
    details = [low_ess, BAD, GOOD]
    calls, attempts, _ = _ladder([False, False, True], details)
    assert [a.remedy for a in attempts] == ["none", "longer", "target_accept"]
    (s0, _), (s1, _), (s2, _) = calls
    assert (s0.target_accept, s0.draws) == (0.95, 100)
    assert (s1.target_accept, s1.draws) == (0.95, 200)
    assert (s2.target_accept, s2.draws) == (0.99, 200)


def test_the_ladder_stops_when_no_remaining_remedy_is_called_for() -> None:
    low_ess = {**GOOD, "min_ess_bulk": 320.0}
    calls, attempts, _ = _ladder([False] * 5, [low_ess] * 5)
    assert [a.remedy for a in attempts] == [
        "none", "longer", "parameterization", "longer_from_best"
    ]  # fmt: skip
    assert len(calls) == 4


def test_the_last_step_doubles_the_attempt_closest_to_the_bar_not_the_last() -> None:
    """SBC simulation 141 of the competing model (seed 20260101), in numbers: twice the draws
    came close (R-hat 1.0111, ESS 842), the centred baseline and 0.99 made it far worse. The
    last step must go back to the close attempt (non-centred, 0.95) and double its draws."""
    details = [
        {**GOOD, "max_rhat": 1.0084, "min_ess_bulk": 238.0, "min_ess_tail": 141.0},
        {**GOOD, "max_rhat": 1.0111, "min_ess_bulk": 842.0, "min_ess_tail": 829.0},
        {**GOOD, "max_rhat": 1.0547, "min_ess_bulk": 77.0, "divergences": 46},
        {**GOOD, "max_rhat": 1.1213, "min_ess_bulk": 27.0, "divergences": 3},
        GOOD,
    ]
    calls, attempts, (result, _) = _ladder([False] * 4 + [True], details)
    assert [a.remedy for a in attempts] == [
        "none", "longer", "parameterization", "target_accept", "longer_from_best"
    ]  # fmt: skip
    assert result == 4 and attempts[4].reported
    settings, priors = calls[4]
    assert (settings.draws, settings.tune, settings.target_accept) == (400, 200, 0.95)
    assert priors.parameterization == "non_centred"


def test_the_attempt_closest_to_the_bar_weighs_r_hat_and_ess_misses_alike() -> None:
    """R-hat 1.0111 with ESS 842 misses by 0.11 (in units of 0.01 above 1.01); R-hat 1.008 with
    ESS 141 misses by 0.65 of the 400 needed: the first is reported."""
    details = [
        {**GOOD, "max_rhat": 1.008, "min_ess_tail": 141.0},
        {**GOOD, "max_rhat": 1.0111, "min_ess_bulk": 842.0},
    ]
    _, attempts, (result, _) = _ladder([False] * 5, details + [{**GOOD, "divergences": 1}] * 3)
    assert result == 1 and [a.reported for a in attempts][:2] == [False, True]
