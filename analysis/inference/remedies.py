"""What a fit does when it misses the sampling bar: refit with remedies, in order, until one
meets it (``vlms fit --data`` and the SBC use the same ladder).

The ladder (each step keeps the changes of the steps before it):

1. ``target_accept``: target acceptance 0.99 (smaller leapfrog steps): removes the divergences
   of a posterior with a region of high curvature, as in small cohorts. In the SBC it fixed
   every PEM fit (26 patients) that missed the bar at 0.95. Taken only when the attempt before
   had divergences: on a fit that misses by ESS or R-hat alone, smaller steps only cost time
   (R's mgus2, 1,384 patients, two causes: ESS bulk 321 at 0.95, 260 and R-hat 1.020 at 0.99).
2. ``longer``: twice the tuning and the draws: for effective sample sizes just under the bar
   (competing-risk fits with few events per cause).
3. ``parameterization``: the other parameterisation of the random-walk baseline (non-centred
   -> centred; same prior): when a large cohort pins every interval down, the centred one has
   no funnel. Late, because on small cohorts it is the worse one (in the SBC it turned a
   competing-risk fit with R-hat 1.006 into one with R-hat 1.08).
4. ``longer_from_best``: twice the tuning and draws of the attempt closest to the bar so far
   (:func:`shortfall`), dropping the steps after it that made things worse. In the SBC of
   ``make validate`` (seed 20260101, 200 competing-risk simulations) one fit missed the bar after
   steps 1-3: twice the draws gave R-hat 1.0111 and ESS 842 (just short), then the centred
   baseline and 0.99 made it far worse (R-hat 1.05-1.12, divergences); R's mgus2 without
   covariates missed in the same way (ESS tail 360 at the best attempt).

Measured on the SBC (``vlms validate``): ``reports/validation/sbc.md`` counts the fits that
missed the bar at the first attempt and after the remedies.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from analysis.inference.diagnostics import ESS_MIN, RHAT_MAX
from models.priors import Priors

T = TypeVar("T")

REMEDY_TARGET_ACCEPT = 0.99
LONGER_FACTOR = 2


@dataclass(frozen=True)
class Remedy:
    """One step of the ladder: a name and how it changes the sampler settings and priors."""

    name: str
    description: str
    apply: Callable[[Any, Priors], tuple[Any, Priors]]
    needed: Callable[[dict[str, Any]], bool] = lambda details: True
    """Whether the step is worth taking after an attempt with these diagnostics."""
    from_best: bool = False
    """Apply the step to the settings of the attempt closest to the bar so far, not the last."""


def _target_accept(settings: Any, priors: Priors) -> tuple[Any, Priors]:
    higher = max(settings.target_accept, REMEDY_TARGET_ACCEPT)
    return dataclasses.replace(settings, target_accept=higher), priors


def _other_parameterization(settings: Any, priors: Priors) -> tuple[Any, Priors]:
    other = "centred" if priors.parameterization == "non_centred" else "non_centred"
    return settings, dataclasses.replace(priors, parameterization=other)


def _longer(settings: Any, priors: Priors) -> tuple[Any, Priors]:
    return (
        dataclasses.replace(
            settings, draws=settings.draws * LONGER_FACTOR, tune=settings.tune * LONGER_FACTOR
        ),
        priors,
    )


REMEDIES: tuple[Remedy, ...] = (
    Remedy(
        "target_accept",
        f"target acceptance {REMEDY_TARGET_ACCEPT}",
        _target_accept,
        needed=lambda details: int(details["divergences"]) > 0,
    ),
    Remedy("longer", f"{LONGER_FACTOR}x tuning and draws", _longer),
    Remedy(
        "parameterization",
        "the other parameterisation of the random-walk baseline",
        _other_parameterization,
    ),
    Remedy(
        "longer_from_best",
        f"{LONGER_FACTOR}x tuning and draws of the attempt closest to the bar",
        _longer,
        from_best=True,
    ),
)


@dataclass(frozen=True)
class Attempt:
    """One fit of the ladder: what was changed, the settings used and the diagnostics."""

    remedy: str
    description: str
    target_accept: float
    parameterization: str
    draws: int
    tune: int
    meets_bar: bool
    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    divergences: int
    seconds: float
    reported: bool = False
    """Whether this attempt's numbers are the ones reported (see :func:`fit_with_remedies`)."""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        """One line: the step, its settings and its diagnostics (:func:`attempt_line`)."""
        return attempt_line(self.as_dict())


def attempt_line(a: dict[str, Any]) -> str:
    """One line for an attempt (an :class:`Attempt` as a dict, as in the JSON's ``remedies``)."""
    return (
        f"{a['description']} (target acceptance {a['target_accept']:g}, "
        f"{a['parameterization'].replace('_', '-')} baseline, {a['tune']}+{a['draws']} "
        f"per chain): max R-hat {a['max_rhat']:.4f}, min ESS bulk {a['min_ess_bulk']:.0f}, "
        f"tail {a['min_ess_tail']:.0f}, divergences {a['divergences']}; bar "
        f"{'met' if a['meets_bar'] else 'missed'}{'; reported' if a['reported'] else ''}"
    )


def ladder(enabled: bool = True) -> tuple[Remedy, ...]:
    """The remedies a fit that misses the bar walks: :data:`REMEDIES`, or none (``vlms fit
    --no-remedies``, ``vlms validate --no-remedies``: the first attempt is reported as it is)."""
    return REMEDIES if enabled else ()


def fit_with_remedies(
    run: Callable[[Any, Priors], T],
    check: Callable[[T], tuple[bool, dict[str, Any]]],
    settings: Any,
    priors: Priors,
    *,
    remedies: tuple[Remedy, ...] = REMEDIES,
    log: Callable[[str], None] | None = None,
) -> tuple[T, list[Attempt]]:
    """Fit with ``run(settings, priors)``; while ``check`` says the bar is missed, apply the next
    remedy that the last attempt's diagnostics call for (:attr:`Remedy.needed`; cumulatively,
    or from the attempt closest to the bar for :attr:`Remedy.from_best`) and refit.

    Parameters
    ----------
    run
        Fits once and returns a result (e.g. an InferenceData).
    check
        ``result -> (meets_bar, details)`` with ``details`` as
        :func:`analysis.inference.diagnostics.passes_bar`.
    settings, priors
        The first attempt's sampler settings (:class:`~analysis.inference.engine.SamplerSettings`)
        and priors.
    log
        Called with one line per refit.

    Returns
    -------
    (result, attempts)
        The result to report and every attempt, the first (``remedy == "none"``) included; the
        reported one has ``reported=True``. That is the first attempt that meets the bar, or, if
        none does, the one closest to it (:func:`shortfall`: a remedy can make things worse).
    """
    pending = list(remedies)
    name, description = "none", "default settings"
    attempts: list[Attempt] = []
    best: tuple[tuple[float, ...], int, T] | None = None
    states: list[tuple[Any, Priors]] = []
    details: dict[str, Any] = {}
    for i in range(len(remedies) + 1):
        if i > 0:
            step = next((r for r in pending if r.needed(details)), None)
            if step is None:
                break
            pending.remove(step)
            name, description = step.name, step.description
            if step.from_best and best is not None:
                settings, priors = states[best[1]]
            settings, priors = step.apply(settings, priors)
            if log is not None:
                log(f"sampling bar missed; refitting with {description}")
        states.append((settings, priors))
        t0 = time.perf_counter()
        result = run(settings, priors)
        ok, details = check(result)
        attempt = Attempt(
            remedy=name,
            description=description,
            target_accept=float(settings.target_accept),
            parameterization=priors.parameterization,
            draws=int(settings.draws),
            tune=int(settings.tune),
            meets_bar=bool(ok),
            max_rhat=float(details["max_rhat"]),
            min_ess_bulk=float(details["min_ess_bulk"]),
            min_ess_tail=float(details["min_ess_tail"]),
            divergences=int(details["divergences"]),
            seconds=round(time.perf_counter() - t0, 3),
        )
        attempts.append(attempt)
        if best is None or shortfall(attempt) < best[0]:
            best = (shortfall(attempt), i, result)
        if ok:
            break
    assert best is not None
    _, chosen, result = best
    attempts[chosen] = dataclasses.replace(attempts[chosen], reported=True)
    return result, attempts


def shortfall(attempt: Attempt) -> tuple[float, ...]:
    """How far an attempt is from the bar, for ranking failed attempts: divergences first (a
    divergent fit may be biased), then the larger of two relative misses: R-hat above 1.01 in
    units of 0.01 (R-hat 1.02 misses by 1) and the shortfall of the smaller ESS as a share of
    400 (0 when met). So R-hat 1.0111 with ESS 842 (0.11) is closer than R-hat 1.008 with
    ESS 141 (0.65)."""
    if attempt.meets_bar:
        return (0.0, 0.0)
    ess = min(attempt.min_ess_bulk, attempt.min_ess_tail)
    rhat_miss = max(attempt.max_rhat - RHAT_MAX, 0.0) / (RHAT_MAX - 1.0)
    ess_miss = max(1.0 - ess / ESS_MIN, 0.0)
    return (float(attempt.divergences), max(rhat_miss, ess_miss))
