"""Matplotlib figures of ``vlms compare`` (the diagnostics plots are in
analysis/inference/diagnostics.py).

Each function takes plain arrays (or small dicts of them) and writes one PNG atomically; none reads
files. Survival figures draw the Kaplan-Meier curve of the cohort as a step function with the
posterior median survival curve of the matching fit and its 95% equal-tailed band (a posterior
predictive check of the PEM against KM). Axes carry units (months; survival as a proportion).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from analysis.core.atomic import atomic_path

DPI = 90
COLORS = ("#1f4e79", "#c0392b", "#27ae60", "#8e44ad", "#d68910")


@dataclass(frozen=True)
class EstimateKind:
    """How one kind of hazard-ratio estimate is drawn in the forest plot, and the comparison
    row's (estimate, lower, upper) columns it is read from."""

    label: str
    marker: str
    color: str
    columns: tuple[str, str, str]


ESTIMATE_KINDS = {
    "published": EstimateKind(
        "Published (paper), 95% CI",
        "s",
        "#222222",
        ("published_hr", "published_lower", "published_upper"),
    ),
    "summary": EstimateKind(
        "Prior + published estimate alone, 95% CrI",
        "^",
        "#27ae60",
        ("summary_median", "summary_lower", "summary_upper"),
    ),
    "ensemble_cox": EstimateKind(
        "Cox across the reconstructions: median, 90% range",
        "o",
        "#1f77b4",
        ("ensemble_cox_median", "ensemble_cox_lower", "ensemble_cox_upper"),
    ),
    "pooled": EstimateKind(
        "Pooled posterior over the reconstructions, 95% CrI",
        "D",
        "#c0392b",
        ("pooled_median", "pooled_lower", "pooled_upper"),
    ),
    "frequentist": EstimateKind(
        "Cox on the cohort, 95% CI", "o", "#1f77b4", ("freq_hr", "freq_lower", "freq_upper")
    ),
    "posterior": EstimateKind(
        "Posterior on the cohort, 95% CrI",
        "D",
        "#c0392b",
        ("posterior_median", "posterior_lower", "posterior_upper"),
    ),
    "selection": EstimateKind(
        "Selection-adjusted posterior, 95% CrI",
        "v",
        "#8e44ad",
        ("selection_median", "selection_lower", "selection_upper"),
    ),
}
"""Forest-plot estimate kinds, in drawing order."""


def save_png(fig: plt.Figure, path: Path) -> Path:
    """Write ``fig`` as PNG atomically and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


# --------------------------------------------------------------------------- forest plot


@dataclass
class ForestRow:
    """One hazard ratio: label and (estimate, lower, upper) triples by kind (NaN: absent)."""

    label: str
    estimates: dict[str, tuple[float, float, float]] = field(default_factory=dict)


def forest_plot(rows: Sequence[ForestRow], path: Path, title: str = "") -> Path:
    """The estimates of each hazard ratio side by side (kinds of ``ESTIMATE_KINDS``), log axis."""
    n = len(rows)
    kinds = [k for k in ESTIMATE_KINDS if any(k in r.estimates for r in rows)]
    fig, ax = plt.subplots(figsize=(9, 1.1 + 0.9 * max(n, 1)))
    finite = [v for r in rows for e in r.estimates.values() for v in e if _ok(v)]
    lo_lim = min([0.05, *finite]) / 1.3
    hi_lim = max([20.0, *finite]) * 1.3
    offsets = np.linspace(0.27, -0.27, len(kinds)) if kinds else []
    for i, r in enumerate(rows):
        y0 = n - 1 - i
        for off, kind in zip(offsets, kinds, strict=True):
            if kind not in r.estimates:
                continue
            est, lo, hi = r.estimates[kind]
            if not _ok(est):
                continue
            style = ESTIMATE_KINDS[kind]
            label, marker, color = style.label, style.marker, style.color
            lo_c = lo if _ok(lo) else lo_lim
            hi_c = hi if _ok(hi) else hi_lim
            ax.plot([lo_c, hi_c], [y0 + off] * 2, color=color, lw=1.6)
            ax.plot(
                est,
                y0 + off,
                marker=marker,
                color=color,
                ms=7,
                ls="none",
                label=label if i == _first_row(rows, kind) else None,
            )
    ax.axvline(1.0, color="grey", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_xlim(lo_lim, hi_lim)
    ax.set_yticks(range(n))
    ax.set_yticklabels([r.label for r in reversed(rows)])
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_xlabel("hazard ratio (log scale; < 1 lower hazard, > 1 higher hazard)")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    if title:
        ax.set_title(title)
    ax.grid(axis="x", which="major", alpha=0.3)
    return save_png(fig, path)


def _ok(v: float) -> bool:
    return isinstance(v, int | float) and math.isfinite(v) and v > 0


def _first_row(rows: Sequence[ForestRow], kind: str) -> int:
    for i, r in enumerate(rows):
        if kind in r.estimates and _ok(r.estimates[kind][0]):
            return i
    return -1


# --------------------------------------------------------------------------- survival panels


@dataclass
class KMGroup:
    """One Kaplan-Meier curve (step function) with its group label and size."""

    label: str
    time: np.ndarray
    survival: np.ndarray
    n: int
    events: int


@dataclass
class Band:
    """Posterior median curve and 95% band at ``time`` (months) for one group."""

    label: str
    time: np.ndarray
    median: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


@dataclass
class Panel:
    """One survival panel: KM groups, optional posterior bands (matched by order), texts."""

    title: str
    ylabel: str
    groups: list[KMGroup]
    bands: list[Band] = field(default_factory=list)
    note: str = ""
    xlabel: str = "months since surgery"


def _step(time: np.ndarray, surv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate(([0.0], time)), np.concatenate(([1.0], surv))


def survival_panels(panels: Sequence[Panel], path: Path, suptitle: str = "") -> Path:
    """A row or grid of survival panels: KM steps and posterior bands in matching colours."""
    n = len(panels)
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, 4.3 * rows), squeeze=False)
    for ax, panel in zip(axes.ravel(), panels, strict=False):
        for j, g in enumerate(panel.groups):
            color = COLORS[j % len(COLORS)]
            x, y = _step(g.time, g.survival)
            ax.step(
                x,
                y,
                where="post",
                color=color,
                lw=1.8,
                label=f"KM: {g.label} (n={g.n}, events={g.events})",
            )
        for j, b in enumerate(panel.bands):
            color = COLORS[j % len(COLORS)]
            t = np.concatenate(([0.0], b.time))
            ax.fill_between(
                t,
                np.concatenate(([1.0], b.lower)),
                np.concatenate(([1.0], b.upper)),
                color=color,
                alpha=0.18,
                lw=0,
            )
            ax.plot(
                t,
                np.concatenate(([1.0], b.median)),
                color=color,
                ls="--",
                lw=1.2,
                label=f"posterior median and 95% band: {b.label}",
            )
        ax.set_ylim(0, 1.02)
        ax.set_xlim(left=0)
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        ax.set_title(panel.title, fontsize=11)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7.5, loc="lower left")
        _panel_note(ax, panel.note)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return save_png(fig, path)


def band_plot(
    bands: Sequence[Band], path: Path, *, title: str, xlabel: str, ylabel: str, start: float
) -> Path:
    """Posterior median curves and 95% bands (no Kaplan-Meier); each curve starts at
    ``start`` at time 0 (1 for survival, 0 for cumulative incidence)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.3))
    for j, b in enumerate(bands):
        color = COLORS[j % len(COLORS)]
        keep = np.asarray(b.time) > 0
        t = np.concatenate(([0.0], np.asarray(b.time)[keep]))
        lo, med, hi = (
            np.concatenate(([start], np.asarray(v)[keep])) for v in (b.lower, b.median, b.upper)
        )
        ax.fill_between(t, lo, hi, color=color, alpha=0.18, lw=0)
        ax.plot(t, med, color=color, lw=1.5, label=f"{b.label}: median and 95% band")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(left=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5)
    fig.tight_layout()
    return save_png(fig, path)


# --------------------------------------------------------------------------- CIF


@dataclass
class CifCurve:
    """Aalen-Johansen CIF of one cause (step) and, if modelled, the posterior band."""

    cause: str
    time: np.ndarray
    cif: np.ndarray
    band: Band | None = None


@dataclass
class CifPanel:
    """One CIF panel: curves of each cause on one set of patients."""

    title: str
    curves: list[CifCurve]
    note: str = ""


def cif_plot(panels: Sequence[CifPanel], path: Path) -> Path:
    """Cumulative incidence of the first event by type: Aalen-Johansen against posterior."""
    n = max(len(panels), 1)
    fig, axes = plt.subplots(1, n, figsize=(6.4 * n, 4.6), squeeze=False)
    for ax, panel in zip(axes.ravel(), panels, strict=False):
        for j, c in enumerate(panel.curves):
            color = COLORS[j % len(COLORS)]
            x = np.concatenate(([0.0], c.time))
            y = np.concatenate(([0.0], c.cif))
            ax.step(x, y, where="post", color=color, lw=1.8, label=f"Aalen-Johansen: {c.cause}")
            if c.band is not None:
                t = np.concatenate(([0.0], c.band.time))
                lo = np.concatenate(([0.0], c.band.lower))
                hi = np.concatenate(([0.0], c.band.upper))
                ax.fill_between(t, lo, hi, color=color, alpha=0.18, lw=0)
                med = np.concatenate(([0.0], c.band.median))
                ax.plot(t, med, color=color, ls="--", lw=1.2, label=f"posterior: {c.cause}")
        ax.set_xlabel("months since surgery")
        ax.set_ylabel("cumulative incidence (proportion)")
        ax.set_ylim(0, 1)
        ax.set_xlim(left=0)
        ax.set_title(panel.title, fontsize=10.5)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7.5, loc="upper left")
        _panel_note(ax, panel.note)
    fig.tight_layout()
    return save_png(fig, path)


# --------------------------------------------------------------------------- prior vs posterior


@dataclass
class PriorPosterior:
    """Prior and posterior draws of one log HR."""

    label: str
    prior: np.ndarray
    posterior: np.ndarray


def prior_posterior_plot(items: Sequence[PriorPosterior], path: Path) -> Path:
    """One panel per log HR: prior and posterior densities (histograms) on the log-HR axis.

    Histograms are drawn as filled step outlines (``stairs``): one artist per curve, which keeps
    a 40-panel figure fast to render.
    """
    n = max(len(items), 1)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.9 * cols, 2.9 * rows), squeeze=False)
    for ax, item in zip(axes.ravel(), items, strict=False):
        lo, hi = np.quantile(np.concatenate([item.prior, item.posterior]), [0.005, 0.995])
        lo, hi = min(lo, -3.0), max(hi, 3.0)
        bins = np.linspace(lo, hi, 60)
        for draws, color, label in (
            (item.prior, "#999999", "prior"),
            (item.posterior, "#c0392b", "posterior"),
        ):
            dens, _ = np.histogram(draws, bins=bins, density=True)
            ax.stairs(dens, bins, fill=True, color=color, alpha=0.55, label=label)
        ax.axvline(0.0, color="black", lw=0.8, ls=":")
        ax.set_xlabel("log hazard ratio (0 = no effect)")
        ax.set_ylabel("density")
        ax.set_title(item.label, fontsize=9.5)
        ax.legend(fontsize=7.5)
    for ax in axes.ravel()[len(items) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return save_png(fig, path)


def _panel_note(ax: plt.Axes, note: str | None) -> None:
    """A small grey note in the panel's upper right corner (nothing if ``note`` is empty)."""
    if note:
        ax.text(
            0.99, 0.99, note, transform=ax.transAxes, ha="right", va="top",
            fontsize=7.5, wrap=True, color="#555555",
        )  # fmt: skip
