"""``vlms validate``: the heavy checks, each writing to ``reports/validation/``.

Parts (``--parts``, default both): ``sbc`` (simulation-based calibration of the registry's
models, :mod:`analysis.validation.sbc`) and ``selection`` (the selection-adjusted biomarker model
on simulated studies: coverage and bias of the published, unadjusted and adjusted readings, and
nutpie against the exact posterior; :mod:`analysis.validation.selection_check`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from analysis.core.atomic import write_json, write_text
from analysis.core.errors import VlmsInputError
from analysis.core.tables import json_safe

PARTS = ("sbc", "selection")


def run_cli(args: argparse.Namespace) -> int:
    """Handler of ``vlms validate``."""
    parts = list(getattr(args, "parts", None) or PARTS)
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise VlmsInputError(f"--parts: unknown part {unknown[0]}; known: {', '.join(PARTS)}")
    status = 0
    if "sbc" in parts:
        from analysis.validation import sbc

        status |= sbc.run_cli(args)
    if "selection" in parts:
        status |= run_selection_check(Path(args.out_dir), args.seed)
    return status


def run_selection_check(
    out_dir: Path, seed: int, settings: Any = None, n_fits: int = 4, compiled: Any = None
) -> int:
    """Simulation check and MCMC agreement of the selection model; writes
    ``validation/selection_check.{md,json}`` (``settings``: a
    :class:`~analysis.validation.selection_check.SimulationSettings`, default with ``seed``;
    ``compiled``: a compiled selection model to reuse)."""
    from analysis.inference import diagnostics
    from analysis.validation.selection_check import (
        SimulationSettings,
        mcmc_agreement,
        run_simulation,
    )

    t0 = time.perf_counter()
    settings = settings or SimulationSettings(seed=seed)
    _log(f"vlms validate: selection model on {settings.n_studies} simulated studies per tau")
    simulation = run_simulation(settings)
    agreement = mcmc_agreement(settings, n_fits=n_fits, compiled=compiled)
    fits = agreement["fits"]
    for fit, idata in zip(fits, agreement.pop("idata"), strict=True):
        post = idata.posterior[["tau", "z", "hr"]]
        bar = diagnostics.bar_from_convergence(diagnostics.convergence(post), fit["divergences"])
        fit.update({k: bar[k] for k in ("max_rhat", "min_ess_bulk", "min_ess_tail", "ok")})
    doc = {
        "simulation": simulation,
        "mcmc": agreement,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    folder = Path(out_dir) / "validation"
    write_json(folder / "selection_check.json", json_safe(doc))
    write_text(folder / "selection_check.md", selection_markdown(doc))
    _log(f"vlms validate: wrote {folder / 'selection_check.md'} in {doc['seconds']:.0f} s")
    return 0


def _f(v: Any, digits: int = 3) -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{digits}f}"


def selection_markdown(doc: dict[str, Any]) -> str:
    """``selection_check.md``: calibration of the three readings per true spread of effects."""
    sim = doc["simulation"]
    s = sim["settings"]
    lines = [
        "# Selection-adjusted hazard ratios: simulation check",
        "",
        f"Each simulated study tests {s['n_markers']} markers with true log HRs ~ Normal(0, "
        f"tau_true) and estimates with SE {s['se']:g}, and reports only those with |z| >= "
        f"{s['threshold']:g}; {s['n_studies']} studies per tau_true (seed {s['seed']}). Each "
        "reported marker is read three ways: the published estimate with its Wald 95% interval, "
        "the unadjusted Normal(0, 1) posterior, and the selection-adjusted posterior (exact, by "
        "quadrature over tau). A calibrated reading covers the true log HR 95% of the time and "
        "is unbiased away from the null.",
        "",
        "| tau_true | studies reporting | markers reported | coverage published | unadjusted | "
        "adjusted (MCSE) | bias published | unadjusted | adjusted (MCSE) | RMSE unadjusted | "
        "adjusted |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sim["rows"]:
        lines.append(
            f"| {r['tau_true']:g} | {r['studies_with_report']} | {r['reported_markers']} | "
            f"{_f(r['coverage_published'])} | {_f(r['coverage_unadjusted'])} | "
            f"{_f(r['coverage_adjusted'])} ({_f(r['coverage_adjusted_mcse'])}) | "
            f"{_f(r['bias_published'])} | {_f(r['bias_unadjusted'])} | "
            f"{_f(r['bias_adjusted'])} ({_f(r['bias_adjusted_mcse'])}) | "
            f"{_f(r['rmse_unadjusted'])} | {_f(r['rmse_adjusted'])} |"
        )
    lines += [
        "",
        "## nutpie against the exact posterior",
        "",
        "Exact CDF at the MCMC 2.5/50/97.5% quantiles of each reported marker's log HR (should "
        "read 0.025/0.5/0.975 up to Monte Carlo error), and the sampling bar.",
        "",
        "| tau_true | reported | CDF at MCMC quantiles (per marker) | tau | max R-hat | "
        "min bulk / tail ESS | divergences | bar |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in doc["mcmc"]["fits"]:
        cdfs = "; ".join("/".join(f"{v:.3f}" for v in q) for q in f["theta_cdf_at_quantiles"])
        tau = "/".join(f"{v:.3f}" for v in f["tau_cdf_at_quantiles"])
        lines.append(
            f"| {f['tau_true']:g} | {f['reported']} | {cdfs} | {tau} | {f['max_rhat']:.4f} | "
            f"{f['min_ess_bulk']:.0f} / {f['min_ess_tail']:.0f} | {f['divergences']} | "
            f"{'met' if f['ok'] else 'MISSED'} |"
        )
    lines += ["", f"Wall time {doc['seconds']:.0f} s.", ""]
    return "\n".join(lines)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
