"""Saved fits: find the registry fit of an analysis, load fits from ``reports/fits/``, and read
back the priors a fit used."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from analysis.inference.diagnostics import load_fit
from analysis.inference.registry import REGISTRY
from models.priors import Priors


def find_fit(endpoint: str, subset: str, covariates: tuple[str, ...]) -> str | None:
    """Name of the registry PEM fit with this end point, subset and covariates (or None)."""
    for spec in REGISTRY:
        if (
            spec.builder == "pem"
            and spec.endpoint == endpoint
            and spec.subset == subset
            and tuple(spec.covariates) == tuple(covariates)
        ):
            return spec.name
    return None


def registry_priors(name: str | None) -> Priors:
    """The priors of a registry fit (the default :class:`Priors` if there is none)."""
    for spec in REGISTRY:
        if spec.name == name:
            return spec.priors
    return Priors()


def priors_from_attrs(attrs: dict[str, Any], fallback: Priors) -> Priors:
    """The log-HR prior a saved fit used (``prior_effect_*`` attributes), else ``fallback``."""
    try:
        return Priors(
            effect_family=str(attrs["prior_effect_family"]),
            effect_sd=float(attrs["prior_effect_sd"]),
            effect_nu=float(attrs["prior_effect_nu"]),
        )
    except (KeyError, ValueError, TypeError):
        return fallback


def load_fits(fits_dir: Path, names: list[str]) -> dict[str, Any]:
    """Saved fits ``<fits_dir>/<name>.nc`` that exist, as InferenceData."""
    return {n: load_fit(fits_dir / f"{n}.nc") for n in names if (fits_dir / f"{n}.nc").is_file()}


def write_outputs(
    idata: Any,
    doc: dict[str, Any],
    netcdf: Path | None,
    json_path: Path | None,
    log: Callable[[str], None],
    timings: dict[str, float] | None = None,
) -> None:
    """The requested outputs of ``vlms fit --data``: the InferenceData (NetCDF) and the JSON
    document, both or neither (even if interrupted between them), each one logged. With
    ``timings``, the NetCDF's writing time is added as ``write`` and the whole as the
    document's ``timings`` (seconds)."""
    import time

    from analysis.core.atomic import together, write_json
    from analysis.inference.engine import save_idata

    with together():
        t0 = time.perf_counter()
        if netcdf is not None:
            save_idata(idata, netcdf)
        if timings is not None:  # the NetCDF (the JSON takes milliseconds)
            timings["write"] = time.perf_counter() - t0
            doc["timings"] = {k: round(v, 3) for k, v in timings.items()}
        if json_path is not None:
            write_json(json_path, doc)
    for path in (netcdf, json_path):
        if path is not None:
            log(f"wrote {path}")
