"""``vlms audit``: the paper's numbers checked against each other.

Every check is driven by the structure of ``data/published.toml``: entries with a count, a
denominator and a percent get the rounding check; hazard ratios with a 95% CI get the CI/P
checks; the layout sections (``relations``, ``crosschecks``, ``contrasts``, ``rate_groups``,
``claims``, ``terms``, ``pooled_medians``, ``type_medians``) say which numbers belong together.
No finding is typed in: each comes out of a computation on the printed numbers.

Rounding convention: a printed number ``x`` with ``k`` decimals stands for any true number in
``[x - h, x + h]`` with ``h = 0.5 * 10**-k`` (both ends included, so round-half-up and
round-half-down both pass). Truncation (``66.7 -> 66``) is reported as a minor finding.

Severities
----------
``major``  the numbers cannot all hold as printed: a reconstruction cannot meet every target.
``minor``  rounding- or wording-level mismatch, or a tension that needs an unusual but possible
           explanation (heavy censoring, a different test); targets can still all be met.
``info``   a derived fact a reconstruction needs (e.g. how a median must be read).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scipy.stats import norm

from analysis.core.atomic import write_json, write_text
from analysis.paper.published import COUNT_UNITS, Entry, Published, load_published

Z95 = float(norm.ppf(0.975))
SEVERITIES = ("major", "minor", "info")
DEFAULT_ALPHA = 0.05
EFRON_SLACK = 1.05  # tolerance on the bound Var(log HR) >= 1/d1 + 1/d2 (ties, rounding)
TYPICAL_EFFICIENCY = 0.8  # 1/d1 + 1/d2 >= 0.8 Var(log HR) when risk sets change little
EPS = 1e-9


@dataclass(frozen=True)
class Finding:
    """One result of the audit: what, where, the computation, how serious."""

    id: str
    check: str
    severity: str
    keys: tuple[str, ...]
    source: str
    message: str
    computation: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["keys"] = list(self.keys)
        return d


def _finding(
    check: str,
    severity: str,
    keys: Iterable[str],
    source: str,
    message: str,
    computation: dict[str, Any],
) -> Finding:
    keys = tuple(dict.fromkeys(keys))
    digest = hashlib.sha1(("|".join((check, *keys))).encode()).hexdigest()[:8]
    return Finding(f"{check}-{digest}", check, severity, keys, source, message, computation)


def _r(x: float, k: int = 4) -> float:
    """Round for display in the computation record."""
    return round(float(x), k)


def _fmt(x: float | int | None) -> str:
    if x is None:
        return "missing"
    return f"{x:g}" if isinstance(x, float) else str(x)


def _counts(pub: Published, refs: Iterable[str]) -> list[int] | None:
    """The whole numbers the references name, or None if any is missing or not positive."""
    values = [pub.resolve(r) for r in refs]
    if any(v is None or v <= 0 for v in values):
        return None
    return [int(v) for v in values]  # type: ignore[arg-type]


def _alpha(pub: Published) -> float:
    keys = [k for k, e in pub.entries.items() if k.endswith(".alpha") and e.unit == "p_value"]
    value = pub.value(keys[0]) if keys else None
    return float(value) if value is not None else DEFAULT_ALPHA


# ---------------------------------------------------------------------------------------------
# percent against count and denominator
# ---------------------------------------------------------------------------------------------


def check_percents(pub: Published) -> tuple[list[Finding], int]:
    """Every entry with count, denominator and printed percent: does the percent round right?"""
    out: list[Finding] = []
    examined = 0
    for e in pub:
        if e.value is None or e.percent is None:
            continue
        if e.denominator is None:
            examined += 1
            out.append(_percent_without_denominator(e))
            continue
        examined += 1
        exact = 100.0 * e.value / e.denominator
        k = e.digits("percent")
        lo, hi = e.bounds("percent")
        if lo - EPS <= exact <= hi + EPS:
            continue
        unit = 10.0**-k
        truncated = math.floor(exact / unit + EPS) * unit
        comp = {
            "count": e.value,
            "denominator": e.denominator,
            "exact_percent": _r(exact, 3),
            "printed_percent": e.percent,
            "rounded": _r(round(exact, k), k),
        }
        if abs(truncated - e.percent) < EPS:
            sev, how = "minor", "truncated instead of rounded"
        elif abs(exact - e.percent) <= 1.5 * unit:
            sev, how = "minor", "off by one in the last digit"
        else:
            sev, how = "major", "does not match the count"
            # which denominators would give the printed percent for this count?
            comp["denominators_matching"] = [
                d
                for d in range(max(1, e.value), 4 * e.denominator + 1)
                if lo - EPS <= 100.0 * e.value / d <= hi + EPS
            ][:10]
        msg = f"{e.value}/{e.denominator} = {exact:.2f}% is printed as {_fmt(e.percent)}% ({how})"
        out.append(_finding("percent", sev, [e.key], e.source, msg, comp))
    return out, examined


def _percent_without_denominator(e: Entry) -> Finding:
    lo, hi = e.bounds("percent")
    candidates = [
        d
        for d in range(max(1, int(e.value)), 1000)
        if e.value > 0 and lo - EPS <= 100.0 * e.value / d <= hi + EPS
    ]
    msg = (
        f"{_fmt(e.value)} ({_fmt(e.percent)}%) is printed without a denominator; the denominators "
        f"that give this percent are {', '.join(map(str, candidates[:8])) or 'none'}"
    )
    comp = {"count": e.value, "printed_percent": e.percent, "denominators_matching": candidates}
    sev = "info" if candidates else "major"
    return _finding("percent_denominator", sev, [e.key], e.source, msg, comp)


# ---------------------------------------------------------------------------------------------
# rows against totals
# ---------------------------------------------------------------------------------------------


def check_relations(pub: Published) -> tuple[list[Finding], int]:
    """Declared sums, upper bounds and denominator limits."""
    out: list[Finding] = []
    examined = 0
    for rel in pub.section("relations"):
        kind = rel["kind"]
        total_ref = rel["total"]
        total = pub.resolve(total_ref)
        source = rel.get("source") or pub.ref_source(total_ref)
        if kind == "denominators_within":
            over: dict[int, list[Entry]] = {}
            for e in pub:
                if not e.key.startswith(rel["prefix"]) or e.denominator is None:
                    continue
                examined += 1
                if total is not None and e.denominator > total:
                    over.setdefault(e.denominator, []).append(e)
            for denominator, entries in over.items():
                msg = (
                    f"denominator {denominator} ({', '.join(x.key for x in entries)}) exceeds "
                    f"the column size {total} ({pub.ref_keys(total_ref)[0]})"
                )
                comp = {"denominator": denominator, "column_size": total}
                keys = [*(x.key for x in entries), *pub.ref_keys(total_ref)]
                src = "; ".join(x.source for x in entries)
                out.append(_finding("denominator", "major", keys, src, msg, comp))
            continue
        parts = rel["parts"]
        values = [pub.resolve(p) for p in parts]
        subtract = rel.get("subtract", [])
        minus = [pub.resolve(s) for s in subtract]
        keys = [k for ref in [total_ref, *parts, *subtract] for k in pub.ref_keys(ref)]
        examined += 1
        if total is None or any(v is None for v in values + minus):
            msg = "cannot check: a value is missing"
            out.append(_finding(f"relation_{kind}", "info", keys, source, msg, {}))
            continue
        if kind == "each_at_most":
            over = [(p, v) for p, v in zip(parts, values, strict=True) if v > total]
            if over:
                msg = "; ".join(f"{p} = {v} exceeds {total_ref} = {total}" for p, v in over)
                comp = {"total": total, "parts": dict(zip(parts, values, strict=True))}
                out.append(_finding("relation_at_most", "major", keys, source, msg, comp))
            continue
        got = sum(values) - sum(minus)
        if got == total:
            continue
        expr = " + ".join(_fmt(v) for v in values)
        if minus:
            expr += " - " + " - ".join(_fmt(m) for m in minus)
        assumption = rel.get("assumption")
        sev = "minor" if assumption else "major"
        msg = (
            f"{' + '.join(parts)}"
            + (f" - {' - '.join(subtract)}" if subtract else "")
            + f": {expr} = {_fmt(got)}, but {total_ref} = {_fmt(total)}"
            f" (difference {_fmt(got - total)})"
        )
        if assumption:
            msg += f"; assuming {assumption}"
        comp = {
            "parts": dict(zip(parts, values, strict=True)),
            "subtract": dict(zip(subtract, minus, strict=True)),
            "sum": got,
            "total": total,
            "total_ref": total_ref,
            "difference": got - total,
        }
        out.append(_finding("relation_sum", sev, keys, source, msg, comp))
    return out, examined


# ---------------------------------------------------------------------------------------------
# the same number in two places
# ---------------------------------------------------------------------------------------------

_COMPARED = ("value", "denominator", "percent", "lower", "upper", "p")


def _overlap(a: Entry, b: Entry, name: str) -> bool:
    if a.unit in COUNT_UNITS and name in ("value", "denominator"):
        return getattr(a, name) == getattr(b, name)
    alo, ahi = a.bounds(name)
    blo, bhi = b.bounds(name)
    return alo <= bhi + EPS and blo <= ahi + EPS


def check_crosschecks(pub: Published) -> tuple[list[Finding], int]:
    """Numbers printed twice (text vs table, abstract vs text) must agree within rounding."""
    out: list[Finding] = []
    examined = 0
    for cc in pub.section("crosschecks"):
        a = pub.get(cc["a"])
        b_refs = cc["b"] if isinstance(cc["b"], list) else [cc["b"]]
        examined += 1
        sev = "minor" if a.context or any(pub.get(r).context for r in b_refs) else "major"
        if len(b_refs) > 1:  # a total printed in one place, its parts in another
            parts = [pub.resolve(r) for r in b_refs]
            if a.value is None or any(p is None for p in parts):
                continue
            if sum(parts) != a.value:
                msg = f"{a.key} = {_fmt(a.value)} but the parts sum to {_fmt(sum(parts))}"
                comp = {"a": a.value, "parts": dict(zip(b_refs, parts, strict=True))}
                src = f"{a.source} vs {pub.ref_source(b_refs[0])}"
                out.append(_finding("crosscheck", sev, [a.key, *b_refs], src, msg, comp))
            continue
        b = pub.get(b_refs[0])
        diffs = {}
        for name in _COMPARED:
            va, vb = getattr(a, name), getattr(b, name)
            if va is None and vb is None:
                continue
            if (va is None) != (vb is None):
                if name in ("value", "lower", "upper"):
                    diffs[name] = (va, vb)
                continue
            if not _overlap(a, b, name):
                diffs[name] = (va, vb)
        if diffs:
            msg = "; ".join(f"{n}: {_fmt(x)} vs {_fmt(y)}" for n, (x, y) in diffs.items())
            msg = f"{a.key} vs {b.key} differ: {msg}"
            comp = {n: {"a": x, "b": y} for n, (x, y) in diffs.items()}
            src = f"{a.source} vs {b.source}"
            out.append(_finding("crosscheck", sev, [a.key, b.key], src, msg, comp))
    return out, examined


# ---------------------------------------------------------------------------------------------
# HR, 95% CI and P against each other
# ---------------------------------------------------------------------------------------------


def _hr_box(e: Entry) -> dict[str, tuple[float, float]]:
    return {"hr": e.bounds("value"), "lower": e.bounds("lower"), "upper": e.bounds("upper")}


def _se_range(e: Entry) -> tuple[float, float]:
    box = _hr_box(e)
    (llo, lhi), (ulo, uhi) = box["lower"], box["upper"]
    return (
        (math.log(ulo) - math.log(lhi)) / (2 * Z95),
        (math.log(uhi) - math.log(llo)) / (2 * Z95),
    )


def _wald_p(log_hr: float, se: float) -> float:
    return float(2 * norm.sf(abs(log_hr) / se))


def _wald_p_range(e: Entry) -> tuple[float, float]:
    (hlo, hhi) = _hr_box(e)["hr"]
    se_lo, se_hi = _se_range(e)
    log_abs = sorted(abs(math.log(h)) for h in (hlo, hhi))
    min_abs = 0.0 if hlo <= 1 <= hhi else log_abs[0]
    return _wald_p(log_abs[1], se_lo), _wald_p(min_abs, se_hi)


def _repeat_components(pub: Published) -> dict[str, str]:
    """Each key's representative among the repeats linked by single-key crosschecks."""
    parent: dict[str, str] = {}

    def find(k: str) -> str:
        while parent.get(k, k) != k:
            k = parent[k]
        return k

    for cc in pub.section("crosschecks"):
        if isinstance(cc["b"], str):
            ra, rb = find(cc["a"]), find(cc["b"])
            if ra != rb:
                parent[ra] = rb
    return {k: find(k) for k in pub.entries}


def _hr_estimates(pub: Published) -> list[tuple[Entry, list[str]]]:
    """Hazard ratios with a CI, one per estimate: identical repeats are checked once."""
    comp = _repeat_components(pub)
    seen: dict[tuple[Any, ...], tuple[Entry, list[str]]] = {}
    for e in pub:
        if e.unit != "hazard_ratio" or e.value is None or e.interval != "ci95":
            continue
        sig = (comp[e.key], e.value, e.lower, e.upper, e.p)
        if sig in seen:
            seen[sig][1].append(e.key)
        else:
            seen[sig] = (e, [e.key])
    return list(seen.values())


def check_hazard_ratios(pub: Published) -> tuple[list[Finding], int]:
    """Symmetry of the CI on the log scale, the Wald P it implies, CI vs P at alpha.

    Repeats of one estimate (abstract, discussion) printed identically are checked once.
    """
    out: list[Finding] = []
    alpha = _alpha(pub)
    estimates = _hr_estimates(pub)
    for e, repeat_keys in estimates:
        src_all = "; ".join(pub.get(k).source for k in repeat_keys)
        box = _hr_box(e)
        (hlo, hhi), (llo, lhi), (ulo, uhi) = box["hr"], box["lower"], box["upper"]
        # 1. symmetry: HR should be the geometric mean of the CI bounds
        gm_lo, gm_hi = math.sqrt(llo * ulo), math.sqrt(lhi * uhi)
        log_asym = (math.log(e.upper) - math.log(e.value)) - (math.log(e.value) - math.log(e.lower))
        if gm_hi < hlo - EPS or gm_lo > hhi + EPS:
            gm = math.sqrt(e.lower * e.upper)
            sev = "major" if abs(math.log(gm / e.value)) > 0.05 else "minor"
            msg = (
                f"HR {_fmt(e.value)} is not the centre of its CI on the log scale: "
                f"sqrt({_fmt(e.lower)} x {_fmt(e.upper)}) = {gm:.3f}"
            )
            comp = {
                "geometric_mean_ci": _r(gm),
                "geometric_mean_range": [_r(gm_lo), _r(gm_hi)],
                "hr_range": [_r(hlo), _r(hhi)],
                "log_asymmetry": _r(log_asym),
            }
            out.append(_finding("hr_symmetry", sev, repeat_keys, src_all, msg, comp))
        if e.p is None:
            continue
        # 2. the Wald P the CI implies
        se = (math.log(e.upper) - math.log(e.lower)) / (2 * Z95)
        p_wald = _wald_p(math.log(e.value), se)
        p_lo, p_hi = _wald_p_range(e)
        rp_lo, rp_hi = e.bounds("p")
        comp = {
            "se_log_hr": _r(se),
            "z": _r(math.log(e.value) / se),
            "wald_p": _r(p_wald),
            "wald_p_range_over_rounding": [_r(p_lo), _r(p_hi)],
            "printed_p": e.p,
            "printed_p_range": [_r(rp_lo), _r(rp_hi)],
            "alpha": alpha,
        }
        if p_hi < rp_lo - EPS or p_lo > rp_hi + EPS:
            sides_differ = (p_hi < alpha) != (rp_lo < alpha) and (p_lo < alpha) != (rp_hi < alpha)
            sev = "major" if sides_differ else "minor"
            msg = (
                f"printed P = {_fmt(e.p)} but the Wald P implied by HR {_fmt(e.value)} "
                f"({_fmt(e.lower)}-{_fmt(e.upper)}) is {p_wald:.3f} "
                f"(range {p_lo:.3f}-{p_hi:.3f} over rounding)"
            )
            msg += (
                "; they fall on different sides of alpha"
                if sides_differ
                else "; the P may come from another test (log-rank, score, LR)"
            )
            out.append(_finding("hr_wald_p", sev, repeat_keys, src_all, msg, comp))
        # 3. the CI excludes 1 exactly when P < alpha
        excludes = llo > 1 + EPS or uhi < 1 - EPS
        includes = lhi < 1 - EPS and ulo > 1 + EPS
        if (excludes and rp_lo >= alpha) or (includes and rp_hi < alpha):
            what = "excludes" if excludes else "includes"
            msg = f"the 95% CI {what} 1 but the printed P = {_fmt(e.p)} says the opposite"
            out.append(_finding("hr_ci_vs_p", "minor", repeat_keys, src_all, msg, comp))
    return out, len(estimates)


def check_duplicates(pub: Published) -> tuple[list[Finding], int]:
    """Two different estimates printed with identical HR, CI and P: a probable copy.

    Repeats declared as crosschecks (abstract vs table) are the same estimate, not copies.
    """
    component = _repeat_components(pub)
    groups: dict[tuple[Any, ...], list[str]] = {}
    hrs = [e for e in pub if e.unit == "hazard_ratio" and e.value is not None and not e.context]
    for e in hrs:
        groups.setdefault((e.value, e.lower, e.upper, e.p), []).append(e.key)
    out = []
    for sig, keys in groups.items():
        estimates: dict[str, str] = {}
        for k in keys:
            estimates.setdefault(component[k], k)
        if len(estimates) < 2:
            continue
        reps = sorted(estimates.values())
        msg = (
            f"{len(reps)} different estimates print the same HR {_fmt(sig[0])} "
            f"({_fmt(sig[1])}-{_fmt(sig[2])}), P = {_fmt(sig[3])}: probably copied; at most one "
            f"is the real estimate ({', '.join(reps)})"
        )
        comp = {"hr": sig[0], "lower": sig[1], "upper": sig[2], "p": sig[3], "keys": reps}
        src = " vs ".join(pub.get(k).source for k in reps)
        out.append(_finding("duplicate_estimate", "major", reps, src, msg, comp))
    return out, len(hrs)


# ---------------------------------------------------------------------------------------------
# events implied by a CI width against group sizes, medians and event totals
# ---------------------------------------------------------------------------------------------


def _censoring_needed(n: int, d: int) -> int:
    """Fewest patients censored before a KM median that ``d`` events among ``n`` reach."""
    return max(0, n - 2 * d)


def _plausible(
    pair: tuple[int, int], n: list[int], med: list[Any], fu_months: float | None
) -> bool:
    """No group needs more than half its patients censored before a median that comes earlier
    than the cohort's median follow-up."""
    for ni, di, mi in zip(n, pair, med, strict=True):
        if mi is None:
            continue
        early = fu_months is None or mi < fu_months
        if early and _censoring_needed(ni, di) > ni / 2:
            return False
    return True


def _no_censoring(pair: tuple[int, int], n: list[int], med: list[Any]) -> bool:
    """Every reached median is reached without censoring before it (d >= n/2)."""
    return all(
        mi is None or di >= math.ceil(ni / 2) for ni, di, mi in zip(n, pair, med, strict=True)
    )


def check_contrasts(pub: Published) -> tuple[list[Finding], int]:
    """Var(log HR) >= 1/d1 + 1/d2 (Cox at the MLE; equality when risk sets keep their mix).

    The bound is strict (up to ties): pairs with ``1/d1 + 1/d2`` above the CI's variance are
    impossible. "Typical" pairs also satisfy ``1/d1 + 1/d2 >= 0.8 Var`` (risk sets changing
    little). A group with a reached median and ``d`` events needs ``n - 2d`` patients censored
    before the median; more than half the group before a median earlier than the cohort's median
    follow-up is called implausible.
    """
    out: list[Finding] = []
    for c in pub.section("contrasts"):
        e = pub.get(c["hr"])
        if e.value is None or e.lower is None:
            continue
        counts = _counts(pub, c["n"])
        if counts is None:
            continue
        n = counts
        med = [pub.get(k).value for k in c["medians"]]
        fu = pub.get(c["followup"]) if "followup" in c else None
        fu_months = None
        if fu is not None and fu.value is not None:
            fu_months = fu.value * 12 if fu.unit == "years" else fu.value
        se_lo, se_hi = _se_range(e)
        v_lo, v_hi = se_lo**2, se_hi**2
        strict_hi = v_hi * EFRON_SLACK
        typical_lo = v_lo * TYPICAL_EFFICIENCY
        pairs = [
            (d1, d2)
            for d1 in range(1, n[0] + 1)
            for d2 in range(1, n[1] + 1)
            if 1 / d1 + 1 / d2 <= strict_hi
        ]
        typical = [p for p in pairs if 1 / p[0] + 1 / p[1] >= typical_lo]

        keys = [c["hr"], *c["n"], *c["medians"]]
        v = ((math.log(e.upper) - math.log(e.lower)) / (2 * Z95)) ** 2
        comp: dict[str, Any] = {
            "var_log_hr": _r(v),
            "var_range_over_rounding": [_r(v_lo), _r(v_hi)],
            "group_sizes": n,
            "medians_months": med,
            "balanced_events_implied": _r(4 / v, 1),
            "smallest_group_events_typical": (
                [min(min(p) for p in typical), max(min(p) for p in typical)] if typical else None
            ),
            "rule": "1/d1 + 1/d2 <= Var(log HR) x 1.05 (strict); >= 0.8 Var (typical)",
        }
        src = e.source
        if not pairs:
            best = 1 / n[0] + 1 / n[1]
            msg = (
                f"CI {_fmt(e.lower)}-{_fmt(e.upper)} is too narrow for groups of "
                f"{n[0]} and {n[1]}: "
                f"even if every patient had the event, 1/{n[0]} + 1/{n[1]} = {best:.3f} > "
                f"Var(log HR) = {v_hi:.3f}"
            )
            out.append(_finding("events_vs_ci", "major", keys, src, msg, comp))
            continue
        worst = None
        for tot in c.get("event_totals", []):
            parts = _counts(pub, tot["keys"])
            if parts is None:
                continue
            total = sum(parts)
            tkeys = keys + [k for r in tot["keys"] for k in pub.ref_keys(r)]
            strict_t = [p for p in pairs if sum(p) == total]
            typical_t = [p for p in typical if sum(p) == total]
            plaus_t = [p for p in typical_t if _plausible(p, n, med, fu_months)]
            ctot = dict(comp)
            ctot.update(
                {
                    "event_total": total,
                    "event_total_means": tot["label"],
                    "min_1/d1+1/d2_at_total": _r(
                        min(
                            (1 / a + 1 / (total - a) for a in range(1, total) if total - a >= 1),
                            default=float("nan"),
                        )
                    ),
                    "splits_strict": strict_t,
                    "splits_typical": typical_t,
                    "splits_typical_plausible": plaus_t,
                }
            )
            if not strict_t:
                msg = (
                    f"with {total} events ({tot['label']}) split between groups of {n[0]} and "
                    f"{n[1]}, Var(log HR) >= {ctot['min_1/d1+1/d2_at_total']:.3f}, but the CI "
                    f"{_fmt(e.lower)}-{_fmt(e.upper)} gives {v:.3f}: the CI is too narrow "
                    f"(it needs at least {math.ceil(4 / strict_hi)} events)"
                )
                sev = "major"
            elif not plaus_t:
                splits = ", ".join(f"{a}+{b}" for a, b in typical_t) or "none"
                msg = (
                    f"with {total} events ({tot['label']}), the CI {_fmt(e.lower)}-{_fmt(e.upper)} "
                    f"fits only the splits {splits} (reference+exposed); each leaves a group with "
                    f"a median before the cohort's median follow-up that needs more than half "
                    f"its patients censored before that median"
                )
                sev = "major"
            else:
                continue
            worst = sev
            out.append(_finding("events_vs_ci_total", sev, tkeys, src, msg, ctot))
        if worst is not None:
            continue
        plaus = [p for p in typical if _plausible(p, n, med, fu_months)]
        nocens = [p for p in typical if _no_censoring(p, n, med)]
        comp["splits_typical"] = typical
        if not typical:
            msg = (
                f"no split of events fits the CI's variance {v:.3f} within the typical range "
                f"given groups of {n[0]} and {n[1]}"
            )
            out.append(_finding("events_vs_ci", "minor", keys, src, msg, comp))
        elif not plaus:
            msg = (
                f"the CI {_fmt(e.lower)}-{_fmt(e.upper)} implies "
                f"{comp['smallest_group_events_typical']} events in one group; every such split "
                f"needs more than half of a group "
                f"censored before an early median"
            )
            out.append(_finding("events_vs_medians", "major", keys, src, msg, comp))
        elif not nocens:
            need = {
                f"{d1}+{d2}": [_censoring_needed(n[0], d1), _censoring_needed(n[1], d2)]
                for d1, d2 in plaus
            }
            comp["censored_before_median_needed"] = need
            msg = (
                f"the CI {_fmt(e.lower)}-{_fmt(e.upper)} (Var {v:.3f}) implies only "
                f"{comp['smallest_group_events_typical']} events in the smaller-event group "
                f"(balanced: {4 / v:.1f} in all); medians "
                f"{', '.join(_fmt(m) for m in med)} months in groups of {n[0]} and {n[1]} are "
                f"then KM medians only if many patients are censored before them"
            )
            out.append(_finding("events_vs_medians", "minor", keys, src, msg, comp))
    return out, len(pub.section("contrasts"))


# ---------------------------------------------------------------------------------------------
# survival rates as fractions of group sizes
# ---------------------------------------------------------------------------------------------


def _fits_fraction(rate: Entry, n: int) -> str | None:
    """'round' or 'truncate' if some k/n prints as the rate, else None."""
    lo, hi = rate.bounds()
    step = 10.0 ** -rate.digits()
    for k in range(n + 1):
        x = k / n
        if lo - EPS <= x <= hi + EPS:
            return "round"
        if rate.value - EPS <= x < rate.value + step - EPS:
            return "truncate"
    return None


def check_rate_groups(pub: Published) -> tuple[list[Finding], int]:
    """A KM rate with no censoring before t is k/n; rates that fit other groups hint at a swap."""
    out: list[Finding] = []
    examined = 0
    for rg in pub.section("rate_groups"):
        rates = [pub.get(k) for k in rg["rates"]]
        counted = _counts(pub, rg["groups"])
        if counted is None or any(r.value is None for r in rates):
            continue
        sizes = counted
        examined += len(rates)
        fits = [[_fits_fraction(r, n) for n in sizes] for r in rates]
        keys = [k for g in rg["groups"] for k in pub.ref_keys(g)]
        own = [fits[i][i] for i in range(len(rates))]
        best, best_score = None, sum(f is not None for f in own)
        distinct = len(set(sizes)) == len(sizes)
        if distinct and len(rates) <= 7:
            for perm in itertools.permutations(range(len(rates))):
                score = sum(fits[i][perm[i]] is not None for i in range(len(rates)))
                moved = sum(perm[i] != i for i in range(len(rates)))
                if score > best_score or (
                    best is not None and score == best_score and moved < best[1]
                ):
                    best, best_score = (perm, moved), score
        table = {
            r.key: {"printed": r.value, "group_size": n, "fraction_fit": f}
            for r, n, f in zip(rates, sizes, own, strict=True)
        }
        comp: dict[str, Any] = {"rates": table}
        if best is not None:
            perm = best[0]
            comp["better_assignment"] = {
                rates[i].key: {
                    "group_size": sizes[perm[i]],
                    "group": rg["groups"][perm[i]],
                    "fraction_fit": fits[i][perm[i]],
                    "fraction": f"{round(rates[i].value * sizes[perm[i]])}/{sizes[perm[i]]}",
                }
                for i in range(len(rates))
                if perm[i] != i
            }
            moved = ", ".join(
                f"{rates[i].key} = {_fmt(rates[i].value)} fits {rg['groups'][perm[i]]} "
                f"(n = {sizes[perm[i]]}: "
                f"{round(rates[i].value * sizes[perm[i]])}/{sizes[perm[i]]}) "
                f"not its own group (n = {sizes[i]})"
                for i in range(len(rates))
                if perm[i] != i
            )
            msg = (
                f"{sum(f is not None for f in own)} of {len(rates)} rates are exact fractions "
                f"of their group sizes; exchanging group labels makes {best_score} of "
                f"{len(rates)} exact: {moved}. The labels may be swapped (or censoring "
                f"produced these values by chance)"
            )
            out.append(
                _finding(
                    "rate_labels",
                    "minor",
                    list(rg["rates"]) + keys,
                    rg.get("source", ""),
                    msg,
                    comp,
                )
            )
            continue
        for r, n, f in zip(rates, sizes, own, strict=True):
            if f is None:
                k_near = round(r.value * n)
                msg = (
                    f"{_fmt(r.value)} is not k/{n} for any k (nearest {k_near}/{n} = "
                    f"{k_near / n:.3f}): the KM estimate needs censoring before this time"
                )
                c2 = {"printed": r.value, "group_size": n, "nearest_fraction": k_near / n}
                out.append(_finding("rate_fraction", "info", [r.key], r.source, msg, c2))
            elif f == "truncate":
                k_trunc = next(
                    k
                    for k in range(n + 1)
                    if r.value - EPS <= k / n < r.value + 10.0 ** -r.digits()
                )
                msg = (
                    f"{_fmt(r.value)} is k/{n} only if truncated ({k_trunc}/{n} = "
                    f"{k_trunc / n:.4f}); rounded, the KM estimate needs censoring before this time"
                )
                c2 = {"printed": r.value, "group_size": n, "truncated_fraction": k_trunc / n}
                out.append(_finding("rate_fraction", "minor", [r.key], r.source, msg, c2))
    return out, examined


# ---------------------------------------------------------------------------------------------
# words against numbers
# ---------------------------------------------------------------------------------------------


def check_claims(pub: Published) -> tuple[list[Finding], int]:
    """Direction and significance words against HRs; 'a is less than b' against the numbers."""
    out: list[Finding] = []
    alpha = _alpha(pub)
    for cl in pub.section("claims"):
        kind = cl.get("kind", "hr")
        quote = cl.get("quote", "")
        src = cl.get("source", "")
        if kind == "less":
            a, b = pub.get(cl["a"]), pub.get(cl["b"])
            if a.value is None or b.value is None:
                continue
            if a.bounds()[0] >= b.bounds()[1] - EPS:
                msg = (
                    f"the words say {a.key} < {b.key} ('{quote}') but "
                    f"{_fmt(a.value)} >= {_fmt(b.value)}"
                )
                comp = {"a": a.value, "b": b.value}
                out.append(_finding("claim_order", "major", [a.key, b.key], src, msg, comp))
            continue
        e = pub.get(cl["key"])
        if e.value is None:
            continue
        hlo, hhi = e.bounds()
        says = cl["direction"]
        src = f"{src}; {e.source}"
        if (says == "lower_hazard" and hlo > 1) or (says == "higher_hazard" and hhi < 1):
            word = "lower" if says == "lower_hazard" else "higher"
            msg = (
                f"the words say a {word} hazard ('{quote}') but HR = {_fmt(e.value)} "
                f"({_fmt(e.lower)}-{_fmt(e.upper)}) is {'above' if hlo > 1 else 'below'} 1"
            )
            comp = {"hr": e.value, "lower": e.lower, "upper": e.upper, "words": says}
            out.append(_finding("claim_direction", "major", [e.key], src, msg, comp))
        if cl.get("significant") and e.p is not None and e.bounds("p")[0] >= alpha - EPS:
            ci_has_1 = e.lower is not None and e.lower <= 1 <= e.upper
            msg = (
                f"an association is claimed ('{quote}') but P = {_fmt(e.p)} >= alpha = "
                f"{_fmt(alpha)}" + (" and the 95% CI includes 1" if ci_has_1 else "")
            )
            comp = {"p": e.p, "alpha": alpha, "ci": [e.lower, e.upper]}
            out.append(_finding("claim_significance", "minor", [e.key], src, msg, comp))
    return out, len(pub.section("claims"))


_EVENT_WORDS = ("local", "distant")


def check_terms(pub: Published) -> tuple[list[Finding], int]:
    """One analysis, several names; names that disagree on the event type are major."""
    out: list[Finding] = []
    for t in pub.section("terms"):
        uses = t["uses"]
        names = sorted({" ".join(u["term"].lower().split()) for u in uses})
        if len(names) < 2:
            continue
        qualifiers = {n: tuple(w for w in _EVENT_WORDS if w in n.split()) for n in names}
        kinds = {q for q in qualifiers.values() if q}
        sev = "major" if len(kinds) > 1 else "minor"
        msg = (
            f"{t['analysis']}: called {len(names)} different names ("
            + "; ".join(f"'{u['term']}' in {u['source']}" for u in uses)
            + ")"
        )
        if sev == "major":
            msg += ": they disagree on which recurrences are events"
        comp = {"terms": names, "event_qualifiers": {n: list(q) for n, q in qualifiers.items()}}
        src = "; ".join(u["source"] for u in uses)
        out.append(_finding("terms", sev, [f"terms:{t['analysis']}"], src, msg, comp))
    return out, len(pub.section("terms"))


# ---------------------------------------------------------------------------------------------
# medians: pooled and by type
# ---------------------------------------------------------------------------------------------


def check_pooled_medians(pub: Published) -> tuple[list[Finding], int]:
    """A median over the union of groups must be attainable from the groups' medians."""
    out: list[Finding] = []
    for pm in pub.section("pooled_medians"):
        m = pub.value(pm["total"])
        meds = [pub.value(k) for k in pm["medians"]]
        counted = _counts(pub, pm["n"])
        if m is None or counted is None or any(x is None for x in meds):
            continue
        ns = counted
        total = sum(ns)
        at_most_min = sum(math.ceil(n / 2) for n, mi in zip(ns, meds, strict=True) if mi <= m)
        at_most_max = sum(
            n if mi <= m else n - math.ceil(n / 2) for n, mi in zip(ns, meds, strict=True)
        )
        at_least_max = sum(
            n if mi >= m else n - math.ceil(n / 2) for n, mi in zip(ns, meds, strict=True)
        )
        need = math.ceil(total / 2)
        comp = {
            "pooled_median": m,
            "group_medians": meds,
            "group_sizes": ns,
            "count_at_or_below_range": [at_most_min, at_most_max],
            "count_at_or_above_max": at_least_max,
            "needed": need,
        }
        if at_most_max < need or at_least_max < need:
            msg = (
                f"a median of {_fmt(m)} over {total} patients is impossible with group medians "
                f"{meds} (sizes {ns})"
            )
            keys = [pm["total"], *pm["medians"], *pm["n"]]
            out.append(_finding("pooled_median", "major", keys, pm.get("source", ""), msg, comp))
    return out, len(pub.section("pooled_medians"))


def check_type_medians(pub: Published) -> tuple[list[Finding], int]:
    """A median of time to a recurrence type that only n of N patients have.

    Over the whole cohort the cumulative incidence of the type is at most about n/N (no
    censoring), so with n/N < 1/2 its median is not reached; as a KM curve with other types
    censored, reaching 1/2 with n events needs at least N - 2n patients censored before the
    median. Read such a median as the median among the n patients with that type.
    """
    out: list[Finding] = []
    for tm in pub.section("type_medians"):
        cohort = _counts(pub, [tm["cohort"]])
        if cohort is None:
            continue
        big_n = cohort[0]
        for mk, nk in zip(tm["medians"], tm["n"], strict=True):
            m, n_type = pub.value(mk), _counts(pub, [nk])
            if m is None or n_type is None or n_type[0] / big_n >= 0.5:
                continue
            n = n_type[0]
            msg = (
                f"only {n} of {big_n} patients ({100 * n / big_n:.1f}%) have this recurrence type: "
                f"without censoring its cumulative incidence over all {big_n} ends at "
                f"{100 * n / big_n:.1f}%, so a median of {_fmt(m)} months is not reached; a KM "
                f"with other types censored needs >= {big_n - 2 * n} "
                f"patients censored before {_fmt(m)} months; read it as the median among the "
                f"{n} patients with that type"
            )
            comp = {
                "n_type": n,
                "cohort": big_n,
                "crude_fraction": _r(n / big_n),
                "min_censored_before_median_for_km": big_n - 2 * n,
            }
            src = tm.get("source", pub.get(mk).source)
            out.append(_finding("type_median", "info", [mk, nk], src, msg, comp))
    return out, len(pub.section("type_medians"))


# ---------------------------------------------------------------------------------------------
# the audit and its reports
# ---------------------------------------------------------------------------------------------

CHECKS = (
    ("percent", check_percents),
    ("relations", check_relations),
    ("crosschecks", check_crosschecks),
    ("hazard_ratios", check_hazard_ratios),
    ("duplicates", check_duplicates),
    ("contrasts", check_contrasts),
    ("rate_groups", check_rate_groups),
    ("claims", check_claims),
    ("terms", check_terms),
    ("pooled_medians", check_pooled_medians),
    ("type_medians", check_type_medians),
)


def run_checks(pub: Published) -> tuple[list[Finding], dict[str, dict[str, int]]]:
    """All checks: the sorted findings and, per check, how many items it examined and flagged."""
    findings: list[Finding] = []
    coverage: dict[str, dict[str, int]] = {}
    for name, check in CHECKS:
        found, examined = check(pub)
        coverage[name] = {"examined": examined, "findings": len(found)}
        findings.extend(found)
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    findings.sort(key=lambda f: (rank[f.severity], f.check, f.keys))
    return findings, coverage


def audit(published: Published) -> list[Finding]:
    """The findings of every check, most serious first."""
    return run_checks(published)[0]


def _markdown(pub: Published, findings: list[Finding], coverage: dict[str, Any]) -> str:
    counts = {s: sum(f.severity == s for f in findings) for s in SEVERITIES}
    lines = [
        "# Audit of the paper's numbers",
        "",
        f"Source: `{pub.path}` ({len(pub)} entries). Findings: "
        + ", ".join(f"{counts[s]} {s}" for s in SEVERITIES)
        + ".",
        "",
        "Severity: **major** = the numbers cannot all hold as printed (a reconstruction cannot "
        "meet every target); **minor** = rounding/wording level or an unusual but possible "
        "explanation; **info** = a derived fact the reconstruction needs.",
        "",
        "## Checks run",
        "",
        "| check | items examined | findings |",
        "|---|---:|---:|",
    ]
    lines += [f"| {k} | {v['examined']} | {v['findings']} |" for k, v in coverage.items()]
    lines += ["", "## Findings", ""]
    if not findings:
        lines.append("No findings.")
    for f in findings:
        lines += [
            f"### [{f.severity}] {f.check}: `{f.id}`",
            "",
            f"- **What:** {f.message}",
            f"- **Where:** {f.source}",
            f"- **Keys:** {', '.join(f'`{k}`' for k in f.keys)}",
            "- **Computation:**",
            "",
            "```",
            *[f"{k}: {v}" for k, v in f.computation.items()],
            "```",
            "",
        ]
    return "\n".join(lines) + "\n"


def run_cli(args: argparse.Namespace) -> int:
    """``vlms audit``: write ``audit.md`` and ``audit.json`` to ``args.out_dir``."""
    pub = load_published(args.published)
    findings, coverage = run_checks(pub)
    out_dir = Path(args.out_dir)
    payload = {
        "published": str(pub.path),
        "entries": len(pub),
        "summary": {s: sum(f.severity == s for f in findings) for s in SEVERITIES},
        "checks": coverage,
        "findings": [f.as_dict() for f in findings],
    }
    write_json(out_dir / "audit.json", payload)
    write_text(out_dir / "audit.md", _markdown(pub, findings, coverage))
    for f in findings:
        print(f"{f.severity:<5} {f.id}: {f.message}")
    summary = ", ".join(f"{v} {k}" for k, v in payload["summary"].items())
    print(f"audit: {summary}; wrote {out_dir / 'audit.md'} and {out_dir / 'audit.json'}")
    return 0
