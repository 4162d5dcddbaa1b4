"""The calibration report of the synthetic cohort: ``reports/calibration.{md,json}``.

Every calibrated target (published, reconstructed, tolerance, met or not) and every exact count,
in rank order: counts, then hazard-ratio points, then medians and rates, then CIs and P values.
Each miss is linked to the audit findings (:func:`analysis.paper.audit.audit`) that involve the same
published keys: those are the reasons a target cannot be met together with the others. A miss
that no finding explains is flagged as such (a defect of the reconstruction, not of the paper).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from analysis.core.atomic import write_json, write_text
from analysis.paper.published import Published
from analysis.reconstruction.result import Reconstruction
from analysis.reconstruction.targets import (
    CONTRADICTED_WEIGHT,
    RANK_WEIGHT,
    CountCheck,
    Reading,
    Target,
    explains_misses,
)

SYNTHETIC_NOTICE = (
    "SYNTHETIC DATA. No patient-level data from the study is public; these 63 rows are "
    "generated to reproduce the published counts and statistics as far as they hold together. "
    "They are not patients."
)
RANK_NAMES = {
    1: "exact counts",
    2: "hazard-ratio point estimates",
    3: "medians and rates",
    4: "confidence limits and P values",
}


@dataclass
class AuditLink:
    """An audit finding that involves a target's published keys."""

    id: str
    severity: str
    message: str


@dataclass
class CalibrationRow:
    """One calibrated target against the reconstruction (lifelines path)."""

    target: Target
    computed: float
    discrepancy: float
    met: bool
    findings: list[AuditLink] = field(default_factory=list)
    reason: str = ""


def calibration_rows(targets: list[Target], values: dict[str, float]) -> list[CalibrationRow]:
    """Compare each target with the statistic computed on the cohort (met: |z| <= 1)."""
    rows = []
    for t in sorted(targets, key=lambda t: (t.rank, t.name)):
        computed = float(values.get(t.name, math.nan))
        z = t.discrepancy(computed)
        rows.append(CalibrationRow(t, computed, z, bool(abs(z) <= 1.0 + 1e-9)))
    return rows


def _load_findings(published: Published) -> list[Any] | None:
    try:
        from analysis.paper.audit import audit
    except ImportError:
        return None
    return list(audit(published))


def link_findings(
    rows: list[CalibrationRow],
    counts: list[CountCheck],
    readings: list[Reading],
    published: Published,
) -> dict[str, list[AuditLink]]:
    """For every missed target or count: the audit findings that name one of its keys.

    Returns the links by target name (counts by key); also fills ``CalibrationRow.findings``
    and ``reason``.
    """
    findings = _load_findings(published)
    links: dict[str, list[AuditLink]] = {}
    reading_for = {k: r for r in readings for k in r.keys}

    def find(key: str) -> list[AuditLink]:
        if findings is None:
            return []
        out = []
        for f in findings:
            keys = set(getattr(f, "keys", ()) or ())
            if key in keys and explains_misses(f):
                out.append(AuditLink(str(f.id), str(f.severity), str(f.message)))
        return out

    for row in rows:
        if row.met:
            continue
        row.findings = find(row.target.key)
        links[row.target.name] = row.findings
        if row.findings:
            row.reason = "; ".join(f"{f.id}: {f.message}" for f in row.findings)
        elif findings is None:
            row.reason = "audit not available (analysis.paper.audit missing): UNEXPLAINED"
        else:
            row.reason = "UNEXPLAINED: no audit finding involves this key"
    for c in counts:
        if c.met or c.published is None:
            continue
        found = find(c.key)
        links[c.key] = found
        reading = reading_for.get(c.key)
        if reading is not None:
            found = [*found, AuditLink("reading", "choice", reading.used)]
            links[c.key] = found
    return links


def _fmt(v: float, unit: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "not reached"
    if math.isinf(v):
        return "inf"
    if unit == "p_value":
        return f"{v:.3f}"
    if unit == "proportion":
        return f"{100 * v:.1f}%"
    return f"{v:.2f}"


def unreported(values: dict[str, float], published: Published) -> list[tuple[str, float, str]]:
    """Statistics whose published cell is empty ("None reported"): key, reconstructed, note."""
    out = []
    for name, value in sorted(values.items()):
        if name in published and published.get(name).missing:
            entry = published.get(name)
            out.append((name, float(value), entry.note or ""))
    return out


def render_markdown(
    rec: Reconstruction,
    rows: list[CalibrationRow],
    counts: list[CountCheck],
    links: dict[str, list[AuditLink]],
    missing: list[tuple[str, float, str]] | None = None,
) -> str:
    """The calibration report as Markdown."""
    met = sum(r.met for r in rows)
    reported = [c for c in counts if c.published is not None]
    counts_met = sum(c.met for c in reported)
    unexplained = [r for r in rows if not r.met and not r.findings]
    lines = [
        "# Calibration of the synthetic cohort",
        "",
        f"> **{SYNTHETIC_NOTICE}**",
        "",
        f"Seed {rec.seed}; {len(rec.frame)} synthetic patients; "
        f"{rec.search.evaluations} loss evaluations in {rec.search.seconds:.1f} s "
        f"(total {rec.seconds:.1f} s wall, {rec.cpu_seconds:.1f} s CPU); loss "
        f"{rec.search.initial_loss:.1f} -> "
        f"{rec.search.loss:.1f}.",
        "",
        "Statistics are computed by `analysis.frequentist.paper_analyses.paper_statistics` "
        "(lifelines path "
        "for this report; its numpy fast path, tested equal to 1e-8, inside the search).",
        "",
        "## Summary",
        "",
        f"- Exact counts: {counts_met}/{len(reported)} reproduced.",
        f"- Calibrated targets: {met}/{len(rows)} within tolerance.",
    ]
    for rank in (2, 3, 4):
        sub = [r for r in rows if r.target.rank == rank]
        lines.append(f"  - rank {rank}, {RANK_NAMES[rank]}: {sum(r.met for r in sub)}/{len(sub)}")
    lines.append(
        f"- Misses without an audit finding to explain them: {len(unexplained)}"
        + ("" if not unexplained else " (" + ", ".join(r.target.name for r in unexplained) + ")")
    )
    lines += ["", "## Readings chosen where the paper contradicts itself", ""]
    for r in rec.readings:
        lines.append(
            f"- **{', '.join(r.keys)}**: published {r.published}. Used: {r.used}. Why: {r.why}."
        )
    lines += [
        "",
        "## Calibrated targets",
        "",
        f"Ranks: 2 HR point estimates (loss weight {RANK_WEIGHT[2]:g}), 3 medians and rates "
        f"({RANK_WEIGHT[3]:g}), 4 CIs and P values ({RANK_WEIGHT[4]:g}; {CONTRADICTED_WEIGHT:g} "
        "where a major audit finding names the estimate). Met: |standardised "
        "discrepancy| <= 1 (z = discrepancy / tolerance; for P values log(ratio) / log 2). The "
        "loss is the weighted sum of z^2, linear beyond |z| = 2 so that a target that cannot be "
        "met does not drown the others.",
        "",
        "| rank | target | published | reconstructed | tolerance | z | met | why not |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        t = r.target
        z = "inf" if not math.isfinite(r.discrepancy) else f"{r.discrepancy:+.2f}"
        lines.append(
            f"| {t.rank} | `{t.name}` | {_fmt(t.published, t.unit)} | "
            f"{_fmt(r.computed, t.unit)} | {t.tolerance_text()} | {z} | "
            f"{'yes' if r.met else 'no'} | {r.reason} |"
        )
    if missing:
        lines += [
            "",
            "Not calibrated (the paper prints no value): "
            + "; ".join(
                f"`{k}` ({note or 'missing'}) reconstructed {_fmt(v, 'months')}"
                for k, v, note in missing
            )
            + ".",
        ]
    lines += [
        "",
        "## Exact counts (rank 1)",
        "",
        "| key | published | reconstructed | met | why not |",
        "| --- | --- | --- | --- | --- |",
    ]
    for c in counts:
        pub = "not reported" if c.published is None else f"{c.published:g}"
        met_text = "n/a" if c.published is None else ("yes" if c.met else "no")
        why = "; ".join(f"{f.id}: {f.message}" for f in links.get(c.key, []))
        lines.append(f"| `{c.key}` | {pub} | {c.reconstructed:g} | {met_text} | {why} |")
    return "\n".join(lines) + "\n"


def _json_number(v: float) -> float | str | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return float(v)


def render_json(
    rec: Reconstruction,
    rows: list[CalibrationRow],
    counts: list[CountCheck],
    links: dict[str, list[AuditLink]],
    missing: list[tuple[str, float, str]] | None = None,
) -> dict[str, Any]:
    """The calibration report as a JSON-ready dict."""
    return {
        "synthetic": True,
        "notice": SYNTHETIC_NOTICE,
        "seed": rec.seed,
        "n": len(rec.frame),
        "search": {
            "evaluations": rec.search.evaluations,
            "accepted": rec.search.accepted,
            "seconds": rec.search.seconds,
            "initial_loss": rec.search.initial_loss,
            "loss": rec.search.loss,
            "trace": rec.search.trace,
        },
        "seconds": rec.seconds,
        "cpu_seconds": rec.cpu_seconds,
        "summary": {
            "targets": len(rows),
            "targets_met": int(sum(r.met for r in rows)),
            "counts": int(sum(c.published is not None for c in counts)),
            "counts_met": int(sum(c.met for c in counts if c.published is not None)),
            "unexplained_misses": [r.target.name for r in rows if not r.met and not r.findings],
        },
        "readings": [asdict(r) for r in rec.readings],
        "targets": [
            {
                "name": r.target.name,
                "key": r.target.key,
                "field": r.target.field,
                "kind": r.target.kind,
                "rank": r.target.rank,
                "unit": r.target.unit,
                "published": r.target.published,
                "reconstructed": _json_number(r.computed),
                "tolerance": r.target.tolerance_text(),
                "discrepancy": _json_number(r.discrepancy),
                "met": r.met,
                "findings": [asdict(f) for f in r.findings],
                "reason": r.reason,
            }
            for r in rows
        ],
        "not_reported": [
            {"key": k, "reconstructed": _json_number(v), "note": note}
            for k, v, note in missing or []
        ],
        "counts": [
            {
                **asdict(c),
                "findings": [asdict(f) for f in links.get(c.key, [])],
            }
            for c in counts
        ],
    }


def render_reports(
    rec: Reconstruction,
    rows: list[CalibrationRow],
    counts: list[CountCheck],
    published: Published,
    values: dict[str, float] | None = None,
) -> tuple[str, dict[str, Any]]:
    """The calibration report as Markdown text and as a JSON-ready dict (nothing written)."""
    links = link_findings(rows, counts, rec.readings, published)
    missing = unreported(values or {}, published)
    return (
        render_markdown(rec, rows, counts, links, missing),
        render_json(rec, rows, counts, links, missing),
    )


def write_reports(out_dir: Path, markdown: str, payload: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``calibration.md`` and ``calibration.json`` under ``out_dir`` (each atomically)."""
    md = out_dir / "calibration.md"
    js = out_dir / "calibration.json"
    write_text(md, markdown)
    write_json(js, payload)
    return md, js


# ------------------------------------------------------------------------- the schema document

SCHEMA_BEGIN = "<!-- schema table: generated from analysis.cohort.SCHEMA; do not edit -->"
SCHEMA_END = "<!-- end of schema table -->"


def schema_table() -> str:
    """The cohort schema as a Markdown table (the one in ``data/README.md`` must equal it)."""
    from analysis.cohort import SCHEMA

    lines = [
        "| column | type | values | empty allowed | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for c in SCHEMA:
        if c.kind == "category":
            values = " / ".join(f"`{v}`" for v in c.levels)
        elif c.kind == "binary":
            values = "`1` / `0`"
        elif c.kind == "number":
            values = f"{c.minimum:g} to {c.maximum:g}"
        else:
            values = "text, unique"
        lines.append(
            f"| `{c.name}` | {c.kind} | {values} | {'yes' if c.nullable else 'no'} | {c.doc} |"
        )
    return "\n".join(lines)
