"""From a cohort frame to the data of a registered fit: covariates, end points and subsets by
name, and the check that the cohort can inform the fit at all."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from analysis import cohort as ch
from analysis.core.errors import VlmsInputError
from analysis.inference.data import FitData, make_fit_data
from analysis.inference.registry import FitSpec

COVARIATES: dict[str, Callable[[pd.DataFrame], np.ndarray]] = {
    "beta_catenin": lambda df: df["beta_catenin"].to_numpy(float),
    "igf1r": lambda df: df["igf1r"].to_numpy(float),
    "radiation": lambda df: ch.radiation_any(df).astype(float),
    "ivc_site": lambda df: (df["site"] == "ivc").to_numpy(float),
    "size_ge5cm": lambda df: df["size_ge5cm"].to_numpy(float),
    "margin_r2": lambda df: np.where(
        df["margin"].isna(), np.nan, (df["margin"] == "r2").astype(float)
    ),
    "chemotherapy": lambda df: (df["chemotherapy"] != "none").to_numpy(float),
    "adjuvant": lambda df: ch.adjuvant_any(df).astype(float),
}
"""Covariates the registry can use, each a 0/1 array (NaN = missing) from the cohort frame."""

ENDPOINTS: dict[str, Callable[[pd.DataFrame], tuple[np.ndarray, np.ndarray]]] = {
    "dss": ch.dss,
    "rfs": ch.rfs,
    "first_recurrence": ch.first_recurrence,
}
SUBSETS: dict[str, Callable[[pd.DataFrame], np.ndarray]] = {
    "all": lambda df: np.ones(len(df), dtype=bool),
    "tma": lambda df: (df["tma"] == 1).to_numpy(),
    "r0r1": ch.r0r1_resection,
}


def spec_data(spec: FitSpec, df: pd.DataFrame, *, all_causes: bool = False) -> FitData:
    """The FitData of a registry entry on the cohort frame ``df``.

    Competing risks: only the causes with events (the cohort's registry fits), or every cause of
    ``analysis.cohort.CAUSES`` (``all_causes``, the ensemble's member fits: a cause without
    events is estimated from its prior and the pooling across causes, so every cohort of an
    ensemble has one model structure).
    """
    sub = df.loc[SUBSETS[spec.subset](df)].reset_index(drop=True)
    t, e = ENDPOINTS[spec.endpoint](sub)
    covs = {c: COVARIATES[c](sub) for c in spec.covariates}
    causes: tuple[str, ...] = ()
    if spec.builder == "competing":
        present = [k for k in sorted(ch.CAUSES) if all_causes or np.any(e == k)]
        causes = tuple(ch.CAUSES[k] for k in present)
        recode = {0: 0, **{k: i + 1 for i, k in enumerate(present)}}
        e = np.array([recode[int(v)] for v in e], dtype=int)
    return make_fit_data(
        t, e, covs, cuts=spec.cuts, slots=spec.slots, cause_names=causes, missing=spec.missing
    )


def check_spec_data(spec: FitSpec, data: FitData, file: str) -> None:
    """Raise ``VlmsInputError`` if the cohort cannot inform ``spec`` (nothing is fitted then).

    No patients in the subset, no events in the end point, or a covariate that takes one value
    where it is known (its hazard ratio would be the prior's).
    """

    where = f"model {spec.name} ({spec.endpoint}, subset {spec.subset})"
    if data.n == 0:
        raise VlmsInputError(f"{where}: no patients with complete data", file=file)
    if not np.any(data.event > 0):
        raise VlmsInputError(f"{where}: no events: nothing to estimate", file=file)
    for j, name in enumerate(data.covariate_names):
        known = data.x[~np.isnan(data.x[:, j]), j]
        if known.size == 0 or np.all(known == known[0]):
            raise VlmsInputError(
                f"{where}: covariate takes a single value; no hazard ratio can be estimated",
                file=file,
                column=name,
            )
