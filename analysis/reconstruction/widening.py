"""Tolerances widened by the audit: which finding changes which field of which target, and how.

The true cohort reproduces every printed number up to its rounding, so rounding is the
tolerance wherever the paper holds together. Where an audit finding
(:func:`analysis.paper.audit.audit`) shows that a printed number cannot be what the cohort
gave, its tolerance changes, and only for the fields the finding is about (a finding names
estimates; each rule below says which of their fields the finding concerns, so a CI finding
never loosens the HR point):

* ``events_vs_ci_total``, ``events_vs_ci``, ``events_vs_medians`` (major): the CI's width
  implies an event split that the published event counts (or the medians) rule out; the width
  decides the CI limits and, with the point, the Wald P. Fields ``lower``, ``upper``, ``p`` of
  the hazard ratio are **released**: reported, not sampled (a finite widening would still pull
  the cohort towards the impossible width, i.e. towards more or more lopsided events). A
  finding computed under an event total other than the reading in use (Table 2's first end
  point read as any recurrence, not distant recurrence only) concerns another analysis and is
  not applied.
* ``duplicate_estimate`` (major): two estimates print identical HR, CI and P; at most one is
  real, and no count says which. Their CIs and Ps (``lower``, ``upper``, ``p``) are released;
  the points are kept (each is attainable, and the DSS one is repeated in the abstract).
* ``hr_wald_p``: the printed P differs from the Wald P its CI implies (maybe another test):
  field ``p`` gets the Wald P's range over the CI's rounding as an alternative interval.
* ``rate_labels``: survival rates fit other groups' sizes exactly, as if two labels were
  swapped: field ``value`` of each group's rate gets the other label's printed interval as an
  alternative (each target separately).
* ``rate_fraction`` with a truncated fraction: the printed rate may be a truncation (66.7 ->
  66), so field ``value`` gets ``[printed, printed + one unit)`` as an alternative.

Findings about wording (claims, names of end points, rounding of percentages) or about counts
change no statistic's tolerance. A rule that finds nothing to act on does nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from analysis.paper.published import Published
from analysis.reconstruction.targets import Target, Widening, make_target

CI_FIELDS = ("lower", "upper", "p")
Rule = Callable[[Any, Published], list[tuple[str, Widening]]]
"""A rule: finding -> [(statistic name, widening)]."""


def _name(key: str, fld: str) -> str:
    return key if fld == "value" else f"{key}:{fld}"


def _hr_keys(finding: Any, pub: Published) -> list[str]:
    return [k for k in finding.keys if k in pub and pub.get(k).unit == "hazard_ratio"]


def _release(finding: Any, keys: Iterable[str], fields: Iterable[str], why: str) -> list:
    return [
        (_name(k, f), Widening(finding.id, finding.check, finding.severity, "release", why))
        for k in keys
        for f in fields
    ]


def reading_events(pub: Published, hr_key: str) -> int | None:
    """Events of a Table 2 time-to-recurrence HR under the reading the reconstruction uses
    (any first recurrence among the TMA patients: Table 1's TMA recurrence rows); None for
    other estimates."""
    if not hr_key.startswith("table2.rfs."):
        return None
    rows = ("local_only", "distant_only", "local_distant")
    values = [pub.value(f"table1.tma.recurrence.{r}") for r in rows]
    return None if any(v is None for v in values) else int(sum(values))  # type: ignore[arg-type]


def rule_events(finding: Any, pub: Published) -> list[tuple[str, Widening]]:
    """CI width against event counts or medians: release the CI limits and the P. A finding
    computed under an event total that is not the one of the reading in use (e.g. distant
    recurrences only, when Table 2's end point is read as any recurrence) concerns another
    analysis and changes nothing."""
    if finding.severity != "major":
        return []
    keys = _hr_keys(finding, pub)[:1]
    total = finding.computation.get("event_total")
    if keys and total is not None:
        used = reading_events(pub, keys[0])
        if used is not None and int(total) != used:
            return []
    return _release(
        finding,
        keys,
        CI_FIELDS,
        "the CI's width implies events the counts or medians rule out: " + finding.message,
    )


def rule_duplicate(finding: Any, pub: Published) -> list[tuple[str, Widening]]:
    """Identical estimates printed for different analyses: release their CIs and Ps."""
    return _release(
        finding,
        _hr_keys(finding, pub),
        CI_FIELDS,
        "identical HR, CI and P printed for two analyses (at most one is real); the points "
        "are kept: " + finding.message,
    )


def rule_wald_p(finding: Any, pub: Published) -> list[tuple[str, Widening]]:
    """Printed P against the Wald P of the printed CI: add the Wald P's range."""
    span = finding.computation.get("wald_p_range_over_rounding")
    if not span:
        return []
    lo, hi = float(span[0]), float(span[1])
    key = _hr_keys(finding, pub)[:1]
    return [
        (
            _name(k, "p"),
            Widening(
                finding.id,
                finding.check,
                finding.severity,
                "union",
                "the P may come from another test; the Wald P of the printed CI is also "
                "allowed: " + finding.message,
                (lo, hi),
            ),
        )
        for k in key
    ]


def _group_rates(pub: Published) -> dict[str, tuple[str, ...]]:
    """Rate key -> the rates of the same layout group, in the order of its groups."""
    out = {}
    for rg in pub.section("rate_groups"):
        for r in rg["rates"]:
            out[r] = (tuple(rg["rates"]), tuple(rg["groups"]))
    return out  # type: ignore[return-value]


def rule_rate_labels(finding: Any, pub: Published) -> list[tuple[str, Widening]]:
    """Rates that fit other groups: the group's rate may be the one printed for another."""
    groups = _group_rates(pub)
    out = []
    for rate_key, info in finding.computation.get("better_assignment", {}).items():
        if rate_key not in groups:
            continue
        rates, refs = groups[rate_key]
        group = info.get("group")
        if group not in refs:
            continue
        owner = rates[list(refs).index(group)]  # the rate printed for that group
        lo, hi = pub.get(rate_key).bounds("value")
        out.append(
            (
                owner,
                Widening(
                    finding.id,
                    finding.check,
                    finding.severity,
                    "union",
                    f"labels may be swapped: {rate_key} = {pub.value(rate_key):g} fits this "
                    f"group ({info.get('fraction', '')})",
                    (lo, hi),
                ),
            )
        )
    return out


def rule_rate_fraction(finding: Any, pub: Published) -> list[tuple[str, Widening]]:
    """A rate that is an exact fraction only if truncated: allow the truncation reading."""
    if "truncated_fraction" not in finding.computation:
        return []
    out = []
    for key in finding.keys:
        entry = pub.get(key)
        unit = 10.0 ** -entry.digits("value")
        value = float(entry.value)  # type: ignore[arg-type]
        out.append(
            (
                key,
                Widening(
                    finding.id,
                    finding.check,
                    finding.severity,
                    "union",
                    "the printed rate may be truncated: " + finding.message,
                    (value, value + unit - 1e-12),
                ),
            )
        )
    return out


RULES: dict[str, Rule] = {
    "events_vs_ci_total": rule_events,
    "events_vs_ci": rule_events,
    "events_vs_medians": rule_events,
    "duplicate_estimate": rule_duplicate,
    "hr_wald_p": rule_wald_p,
    "rate_labels": rule_rate_labels,
    "rate_fraction": rule_rate_fraction,
}
"""Audit check -> the rule that turns its findings into widenings."""


def widenings(pub: Published) -> dict[str, list[Widening]]:
    """Statistic name -> the widenings the audit's findings give it."""
    from analysis.paper.audit import audit

    out: dict[str, list[Widening]] = {}
    for finding in audit(pub):
        rule = RULES.get(finding.check)
        if rule is None or finding.severity == "info":
            continue
        for name, w in rule(finding, pub):
            out.setdefault(name, []).append(w)
    return out


def apply(target: Target, found: list[Widening]) -> Target:
    """The target with its widenings applied (a release wins over unions)."""
    if not found or target.status == "by_construction":
        return target
    if any(w.action == "release" for w in found):
        return replace(target, status="released", widenings=tuple(found))
    spans = list(target.intervals)
    for w in found:
        if w.interval is not None and w.interval not in spans:
            spans.append(w.interval)
    return replace(target, status="widened", intervals=tuple(spans), widenings=tuple(found))


def widen(targets: list[Target], pub: Published) -> list[Target]:
    """Every target with the widenings of the audit applied."""
    found = widenings(pub)
    return [apply(t, found.get(t.name, [])) for t in targets]


def calibration_targets(names: list[str], pub: Published) -> list[Target]:
    """Targets for the statistics ``names`` (as ``paper_statistics`` keys them), at rounding
    tolerance, then widened by the audit's findings (:func:`widen`)."""
    out = []
    for name in names:
        try:
            target = make_target(name, pub)
        except KeyError:
            continue
        if target is not None:
            out.append(target)
    return widen(out, pub)
