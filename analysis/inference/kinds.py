"""Model kinds: how each model family is built, fed, summarised and scored.

A kind turns a :class:`~analysis.inference.data.FitData` into a PyMC model (``build``), into the
arrays that the compiled model takes (``data_dict``, for refits on new data of the same
structure), and turns posterior (or prior) draws into derived quantities (``derived``) and a
per-patient log-likelihood (``loglik``). Each kind has an imputed variant (``<kind>_imputed``,
:mod:`analysis.inference.imputed_kind`) for data that keep rows with unknown covariates.

The models' ``log_h0`` is the baseline at the covariate centre (``FitData.center``: the mean of a
numeric covariate, the lower value of a two-valued one) and ``beta`` is per unit of each
covariate, so every derived quantity takes covariate rows minus the centre.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from analysis.inference.data import FitData
from analysis.inference.imputed_kind import ImputedKind
from models.priors import Priors
from models.survival_data import binary_patterns

AVERAGED = "averaged over the patients' covariates (the mean of each patient's predicted curve)"
RMST_HORIZON = 60.0
"""Months: RMST is restricted to 5 years (``rmst_60``; converted to the data's time unit)."""
MEDIAN_CAP = 120.0
"""Months: median survival is reported capped at 10 years (beyond, the data say little)."""
CIF_HORIZONS = (24.0, 60.0)
"""Months: the competing-risk CIFs are also reported at 2 and 5 years (``cif_at``)."""

# --------------------------------------------------------------------------- model kinds


class PemKind:
    """The piecewise-exponential model of one event type (models/pem.py)."""

    name = "pem"

    def build(self, data: FitData, priors: Priors) -> Any:
        from models.pem import build_pem

        return build_pem(
            data.cells(),
            cuts=data.cuts,
            covariate_names=data.slot_names,
            log_rate_center=data.log_rate_center(),
            priors=priors,
            x_center=data.center_slots(),
            x_scale=data.scale_slots(),
        )

    def data_dict(self, data: FitData) -> dict[str, np.ndarray]:
        from models.pem import pem_data

        return pem_data(
            data.cells(), data.log_rate_center(), data.center_slots(), data.scale_slots()
        )

    def derived(self, post: xr.Dataset, data: FitData) -> xr.Dataset:
        """Survival curves, RMST at 5 years and median capped at 10 years per covariate pattern
        (horizons in the data's time unit), and the survival curve averaged over the patients'
        covariates."""
        from models.pem import (
            linear_predictor,
            median_survival,
            rmst,
            standardized_survival,
            survival_curves,
        )

        log_h0 = post["log_h0"].values
        beta = post["beta"].values if "beta" in post else None
        profiles, labels = curve_profiles(data)
        centred = profiles - data.center
        curves = survival_curves(log_h0, beta, centred, data.cuts, data.curve_times)
        log_h = log_h0[..., None, :] + linear_predictor(beta, centred)[..., :, None]
        cohort = standardized_survival(
            log_h0, beta, data.x - data.center, data.cuts, data.curve_times
        )
        dims = ("chain", "draw")
        coords = {"pattern": labels, "time": data.curve_times}
        ds = xr.Dataset(
            {
                "survival": ((*dims, "pattern", "time"), curves),
                "survival_averaged": ((*dims, "time"), cohort),
                "rmst_60": (
                    (*dims, "pattern"),
                    rmst(log_h, data.cuts, data.from_months(RMST_HORIZON)),
                ),
                "median_survival_capped": (
                    (*dims, "pattern"),
                    median_survival(log_h, data.cuts, data.from_months(MEDIAN_CAP)),
                ),
            },
            coords=coords,
        )
        ds["survival_averaged"].attrs["meaning"] = AVERAGED
        return ds

    def loglik(self, post: xr.Dataset, data: FitData) -> np.ndarray:
        from models.pem import pointwise_loglik

        beta = post["beta"].values if "beta" in post else None
        pp = data.person_period(padded=False, centred=True)
        return pointwise_loglik(post["log_h0"].values, beta, pp, data.n)

    def observed(self, data: FitData) -> dict[str, Any]:
        return {"event": (("patient",), (data.event > 0).astype(int))}


class CompetingKind:
    """Cause-specific PEMs of competing first events (models/competing.py)."""

    name = "competing"
    death_cause = "death_without_recurrence"

    def _centers(self, data: FitData) -> np.ndarray:
        from models.competing import cause_log_rates

        return cause_log_rates(data.time, data.event, len(data.cause_names))

    def build(self, data: FitData, priors: Priors) -> Any:
        from models.competing import build_competing

        return build_competing(
            data.cells(),
            cuts=data.cuts,
            covariate_names=data.slot_names,
            cause_names=data.cause_names,
            log_rate_center=self._centers(data),
            priors=priors,
            x_center=data.center_slots(),
            x_scale=data.scale_slots(),
        )

    def data_dict(self, data: FitData) -> dict[str, np.ndarray]:
        from models.competing import competing_data

        return competing_data(
            data.cells(), self._centers(data), data.center_slots(), data.scale_slots()
        )

    def recurrence_causes(self, data: FitData) -> list[int]:
        """Indices of the causes that are recurrences (all but death without recurrence)."""
        return [k for k, c in enumerate(data.cause_names) if c != self.death_cause]

    def derived(self, post: xr.Dataset, data: FitData) -> xr.Dataset:
        """Standardised CIF per cause on the time grid, at 2 and 5 years, and net RFS."""
        from models.competing import standardized_cif, standardized_net_survival

        log_h0 = post["log_h0"].transpose(..., "cause", "interval").values
        beta = None
        if "beta" in post:
            beta = post["beta"].transpose(..., "covariate", "cause").values
        x = data.x - data.center
        times = data.curve_times
        cif = standardized_cif(log_h0, beta, x, data.cuts, times)
        horizons = [data.from_months(m) for m in CIF_HORIZONS]
        at = standardized_cif(log_h0, beta, x, data.cuts, np.array(horizons))
        rec = self.recurrence_causes(data)
        rfs = standardized_net_survival(log_h0, beta, x, data.cuts, times, rec)
        dims = ("chain", "draw")
        ds = xr.Dataset(
            {
                "cif": ((*dims, "cause", "time"), cif),
                "cif_at": ((*dims, "cause", "horizon"), at),
                "recurrence_free_survival": ((*dims, "time"), rfs),
            },
            coords={"cause": list(data.cause_names), "time": times, "horizon": horizons},
        )
        ds["cif"].attrs["meaning"] = f"cumulative incidence, {AVERAGED}"
        ds["recurrence_free_survival"].attrs["causes_counted"] = ",".join(
            data.cause_names[k] for k in rec
        )
        return ds

    def loglik(self, post: xr.Dataset, data: FitData) -> np.ndarray:
        from models.competing import pointwise_loglik

        log_h0 = post["log_h0"].transpose(..., "cause", "interval").values
        beta = None
        if "beta" in post:
            beta = post["beta"].transpose(..., "covariate", "cause").values
        pp = data.person_period(padded=False, centred=True)
        return pointwise_loglik(log_h0, beta, pp, data.n)

    def observed(self, data: FitData) -> dict[str, Any]:
        return {"event": (("patient",), data.event.astype(int))}


KINDS: dict[str, Any] = {"pem": PemKind(), "competing": CompetingKind()}
KINDS.update({f"{name}_imputed": ImputedKind(kind) for name, kind in list(KINDS.items())})


def resolve_kind(kind_name: str, data: FitData) -> str:
    """The kind that fits ``data``: the imputed variant when it keeps unknown covariates."""
    return (
        f"{kind_name}_imputed" if data.imputes and not kind_name.endswith("_imputed") else kind_name
    )


def stored_names(model: Any) -> list[str]:
    """Variables kept in the posterior: the free parameters (on their own scale, not nutpie's
    unconstrained ``*_log__``) and the model's deterministics."""
    return [v.name for v in model.free_RVs] + [v.name for v in model.deterministics]


def curve_profiles(data: FitData) -> tuple[np.ndarray, list[str]]:
    """Covariate profiles for the curves: every 0/1 pattern of up to 4 binary covariates;
    otherwise the reference (a zero of a numeric column may lie far outside the data)."""
    p = len(data.covariate_names)
    if p == 0:
        return np.zeros((1, 0)), ["all"]
    if data.binary and p <= 4:
        pats = binary_patterns(p)
        labels = [
            ", ".join(f"{n}={int(v)}" for n, v in zip(data.covariate_names, row, strict=True))
            for row in pats
        ]
    else:
        pats = data.center[None, :]
        labels = ["reference (numeric covariates at their means, others at their lower value)"]
    return pats, labels
