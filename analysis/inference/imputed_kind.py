"""Model kinds with missing binary covariates marginalised inside the likelihood
(:mod:`models.imputation`): ``pem_imputed`` and ``competing_imputed``.

A fit whose :class:`~analysis.inference.data.FitData` keeps rows with unknown covariates
(``missing="impute"``) is built by :func:`models.imputation.build_imputed`: a patient with an
unknown binary covariate contributes the mixture of the likelihoods of its completions, weighted
by a logistic model of the covariate given the covariates observed for every patient (``z``:
0/1 columns as they are, other columns standardised). Assumptions (see the model's docstring):
missing at random given the observed data, imputed covariates independent of each other given
``z``.

Covariates enter as in the complete-data kinds: minus their centres (``log_h0`` at the centre),
divided by their scales inside the model (``x_scale``; the log-HR prior is on ``beta_std``, per
SD of a numeric column, per unit of a 0/1 one), ``beta`` per unit of the column as given. So a
complete-case fit and its imputed counterpart have the same priors.

Derived quantities are those of the complete-data kind. Averages over the patients' covariates
(:data:`AVERAGED_VARIABLES`) count each complete patient once and spread each incomplete patient
over its completions with their posterior weights, draw by draw; quantities per covariate
pattern do not depend on the patients. Added: ``p_missing_is_1``
(``missing_value``, with coordinates ``patient``, the row, and ``missing_covariate``): each
missing value's P(x = 1 | data), per draw.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import xarray as xr

from analysis.inference.data import FitData

AVERAGED_VARIABLES: dict[str, tuple[str, ...]] = {
    "pem": ("survival_averaged",),
    "competing": ("cif", "cif_at", "recurrence_free_survival"),
}
"""Derived quantities of each complete-data kind that average over the patients' covariates."""


class ImputedKind:
    """The imputed variant of a complete-data kind (``base``: a PEM or competing-risk kind)."""

    def __init__(self, base: Any) -> None:
        self.base = base
        self.name = f"{base.name}_imputed"

    # ---------------------------------------------------------------- data

    @staticmethod
    def predictors(data: FitData) -> tuple[list[str], np.ndarray]:
        """The covariate model's ``z``: every covariate observed for all patients (0/1 as is,
        other columns standardised)."""
        seen = [j for j in range(data.x.shape[1]) if not np.isnan(data.x[:, j]).any()]
        z = data.x[:, seen].copy()
        for k in range(z.shape[1]):
            column = z[:, k]
            if not np.all(np.isin(column, (0.0, 1.0))) and column.std() > 0:
                z[:, k] = (column - column.mean()) / column.std()
        return [data.covariate_names[j] for j in seen], z

    def centers(self, data: FitData) -> float | np.ndarray:
        """Log crude rate (PEM) or one per cause: the baseline prior's centre."""
        from models.competing import cause_log_rates

        if data.n_causes:
            return cause_log_rates(data.time, data.event, data.n_causes)
        return data.log_rate_center()

    @staticmethod
    def scales(data: FitData) -> np.ndarray:
        """Each covariate's scale (SD of a numeric column, 1 for a 0/1 one; from the known
        values), as in the complete-data kinds."""
        return data.scale_slots()[: data.x.shape[1]]

    def layout(self, data: FitData) -> Any:
        """The model's data: covariates minus their centres (0 for a 0/1 column), so ``log_h0``
        is the baseline at the centre, as in the complete-data kinds."""
        from models.imputation import missing_layout

        _, z = self.predictors(data)
        x = data.x - data.center
        return missing_layout(data.time, data.event, x, data.cuts, z=z, n_causes=data.n_causes)

    # ---------------------------------------------------------------- the kind's interface

    def build(self, data: FitData, priors: Any) -> Any:
        from models.imputation import build_imputed

        names, _ = self.predictors(data)
        return build_imputed(
            self.layout(data),
            covariate_names=list(data.covariate_names),
            log_rate_center=self.centers(data),
            cause_names=list(data.cause_names),
            predictor_names=names,
            priors=priors,
            x_scale=self.scales(data),
        )

    def data_dict(self, data: FitData) -> dict[str, np.ndarray]:
        from models.imputation import imputed_data

        return imputed_data(self.layout(data), self.centers(data), self.scales(data))

    def derived(self, post: xr.Dataset, data: FitData) -> xr.Dataset:
        from models.imputation import (
            completion_responsibilities,
            missing_value_posterior,
            posterior_draws,
        )

        layout = self.layout(data)
        # per covariate pattern: the unknown values (0/1 columns, filled with 0) change nothing
        ds = self.base.derived(post, dataclasses.replace(data, x=np.nan_to_num(data.x)))
        averaged = [v for v in AVERAGED_VARIABLES.get(self.base.name, ()) if v in ds]
        if averaged:  # averages over the patients: each completion with its posterior weight
            resp = completion_responsibilities(layout, *posterior_draws(layout, post))
            rows, weights = patient_rows(layout, resp)
            w = xr.DataArray(weights, dims=("chain", "draw", "row"))
            total = 0.0
            for u, row in enumerate(rows):  # rows are centred already: their own centre is 0
                part = self.base.derived(post, dataclasses.replace(data, x=row[None, :]))
                total = total + w.isel(row=u) * part[averaged]
            for name in averaged:
                ds[name] = total[name].transpose(*ds[name].dims).assign_attrs(ds[name].attrs)
        p_one = missing_value_posterior(layout, post, data.covariate_names)
        # the posterior's ``covariate`` is the dimension of the hazard ratios
        return ds.assign(p_missing_is_1=p_one.rename(covariate="missing_covariate"))

    def loglik(self, post: xr.Dataset, data: FitData) -> np.ndarray:
        """Each patient's outcome log-likelihood (the mixture over its completions)."""
        from models.imputation import pointwise_loglik, posterior_draws

        layout = self.layout(data)
        return pointwise_loglik(layout, *posterior_draws(layout, post))[0]

    def observed(self, data: FitData) -> dict[str, Any]:
        return self.base.observed(data)


def patient_rows(layout: Any, resp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct covariate rows of the patients and, per draw, the share of patients on each.

    Complete patients count once on their row; an incomplete patient counts ``resp[..., i, c]``
    on the row of its completion ``c``. Returns rows (U, p) and weights (..., U) summing to 1.
    """
    p = layout.x.shape[1]
    complete = layout.x[layout.complete]
    completions = layout.completion_x.reshape(-1, p)
    valid = layout.completion_valid.reshape(-1)
    rows, which = np.unique(np.vstack([complete, completions[valid]]), axis=0, return_inverse=True)
    which = np.ravel(which)
    onehot = np.eye(rows.shape[0])[which]  # (complete + valid completions, U)
    fixed = onehot[: complete.shape[0]].sum(axis=0)
    spread = resp.reshape(*resp.shape[:-2], -1)[..., valid] @ onehot[complete.shape[0] :]
    return rows, (fixed + spread) / layout.n
