"""Registry fits that impute unknown covariates: which data and kind a fit gets, the derived
quantities averaged over the patients with the completions' posterior weights (checked against a
brute-force average on random parameter draws, no sampling), and the complete-case vs imputed
table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from analysis.cohort import load_cohort
from analysis.inference.data import make_fit_data
from analysis.inference.imputed_kind import ImputedKind, patient_rows
from analysis.inference.kinds import KINDS, resolve_kind
from analysis.inference.registry import REGISTRY
from analysis.inference.spec_data import spec_data
from models.competing import cause_log_hazard, cif_curves

COHORT = Path(__file__).resolve().parents[2] / "data" / "cohort.csv"


def _spec(name: str):
    return next(s for s in REGISTRY if s.name == name)


def test_clinical_fit_uses_every_patient_and_its_twin_the_complete_cases() -> None:
    df = load_cohort(COHORT)
    imputed = spec_data(_spec("competing_clinical"), df)
    complete = spec_data(_spec("competing_clinical_complete_case"), df)
    unknown = df["size_ge5cm"].isna() | df["margin"].isna()
    assert imputed.n == len(df) and imputed.n_dropped == 0 and imputed.imputes
    assert complete.n == int((~unknown).sum()) and complete.n_dropped == int(unknown.sum())
    assert imputed.values_missing()["margin_r2"] == int(df["margin"].isna().sum())
    assert resolve_kind("competing", imputed) == "competing_imputed"
    assert resolve_kind("competing", complete) == "competing"
    for spec in REGISTRY:  # every other fit has its covariates for every patient it names
        if spec.name != "competing_clinical":
            assert spec_data(spec, df).n_dropped == 0 or spec.missing == "drop", spec.name


def test_patient_rows_weigh_completions_by_their_posterior_weight() -> None:
    x = np.array([[1.0, 0.0], [0.0, np.nan], [np.nan, np.nan], [1.0, 0.0]])
    data = make_fit_data(
        np.array([5.0, 9.0, 3.0, 12.0]),
        np.array([1, 0, 1, 0]),
        {"a": x[:, 0], "b": x[:, 1]},
        cuts=[0.0, 6.0],
        missing="impute",
    )
    layout = ImputedKind(KINDS["pem"]).layout(data)
    resp = np.zeros((2, *layout.completion_valid.shape))  # two draws
    resp[0, 0, :2] = [0.25, 0.75]  # patient 1: b = 0 or 1
    resp[0, 1, :4] = [0.1, 0.2, 0.3, 0.4]
    resp[1, 0, :2] = [1.0, 0.0]
    resp[1, 1, :4] = [0.0, 0.0, 0.0, 1.0]
    rows, weights = patient_rows(layout, resp)
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0)
    expected = {}
    for draw in range(2):
        w = {tuple(r): 0.0 for r in rows}
        w[(1.0, 0.0)] += 2  # the two complete patients
        for i, completions in enumerate(layout.completion_x):
            for c, row in enumerate(completions):
                if layout.completion_valid[i, c]:
                    w[tuple(row)] += resp[draw, i, c]
        expected[draw] = [w[tuple(r)] / 4 for r in rows]
    np.testing.assert_allclose(weights, [expected[0], expected[1]])


@pytest.fixture(scope="module")
def clinical():
    """The clinical data and random parameter draws shaped like its posterior."""
    df = load_cohort(COHORT)
    data = spec_data(_spec("competing_clinical"), df)
    kind = KINDS["competing_imputed"]
    rng = np.random.default_rng(5)
    causes, covs = list(data.cause_names), list(data.covariate_names)
    names, _ = kind.predictors(data)
    imputed = [c for c, n in data.values_missing().items() if n]
    dims = ("chain", "draw")
    k, p, m, j = len(causes), len(covs), len(imputed), len(data.cuts)  # shapes of the cohort
    post = xr.Dataset(
        {
            "log_h0": ((*dims, "cause", "interval"), rng.normal(-5, 0.5, (1, 6, k, j))),
            "beta": ((*dims, "covariate", "cause"), rng.normal(0, 0.7, (1, 6, p, k))),
            "imputation_alpha": ((*dims, "imputed_covariate"), rng.normal(0, 1, (1, 6, m))),
            "imputation_gamma": (
                (*dims, "predictor", "imputed_covariate"),
                rng.normal(0, 1, (1, 6, len(names), m)),
            ),
        },
        coords={
            "cause": causes,
            "covariate": covs,
            "imputed_covariate": imputed,
            "predictor": names,
        },
    )
    return data, kind, post


def test_averaged_cif_is_the_mixture_over_each_patients_completions(clinical) -> None:
    from models.imputation import completion_responsibilities, posterior_draws

    data, kind, post = clinical
    derived = kind.derived(post, data)
    layout = kind.layout(data)
    log_h0, beta, alpha, gamma = posterior_draws(layout, post)
    resp = completion_responsibilities(layout, log_h0, beta, alpha, gamma)
    times = data.curve_times[[3, 7, 19]]
    for draw in (0, 4):
        total = 0.0
        h0, b = log_h0[0, draw], beta[0, draw]
        for i in layout.complete:
            total = total + cif_curves(cause_log_hazard(h0, b, data.x[i]), data.cuts, times)
        for p, completions in enumerate(layout.completion_x):
            for c, row in enumerate(completions):
                if layout.completion_valid[p, c]:
                    cif = cif_curves(cause_log_hazard(h0, b, row), data.cuts, times)
                    total = total + resp[0, draw, p, c] * cif
        got = derived["cif"].isel(chain=0, draw=draw).sel(time=times).values
        np.testing.assert_allclose(got, total / data.n, rtol=1e-10)
    p_one = derived["p_missing_is_1"]
    assert p_one.sizes["missing_value"] == sum(data.values_missing().values())
    names, sizes = np.unique(p_one["missing_covariate"].values, return_counts=True)
    counts = dict(zip(names, sizes, strict=True))
    assert counts == {k: v for k, v in data.values_missing().items() if v}
    assert list(derived["cif"].dims) == ["chain", "draw", "cause", "time"]
    assert derived["cif"].attrs["meaning"].startswith("cumulative incidence")


def test_pointwise_loglik_covers_every_patient(clinical) -> None:
    data, kind, post = clinical
    ll = kind.loglik(post, data)
    assert ll.shape == (1, 6, data.n) and np.all(np.isfinite(ll)) and np.all(ll <= 0)


def test_complete_case_vs_imputed_table() -> None:
    from analysis.comparison import imputation as ci
    from tests.compare_report_helpers import as_idata

    rng = np.random.default_rng(1)

    def fake(n: int, scale: float, values: list[int]) -> object:
        hr = np.exp(rng.normal(0.3, scale, (2, 400, 2)))
        post = xr.Dataset(
            {"hr": (("chain", "draw", "covariate"), hr)}, coords={"covariate": ["a", "b"]}
        )
        post.attrs.update({"n": n, "covariates": "a,b", "values_imputed": values})
        return as_idata({"posterior": post})

    pairs = ci.imputation_pairs(REGISTRY)
    assert [(a.name, b.name) for a, b in pairs] == [
        ("competing_clinical", "competing_clinical_complete_case")
    ]
    imputed, complete = fake(63, 0.3, [0, 17]), fake(43, 0.5, [0, 0])
    rows = ci.hr_rows("f", imputed, complete)
    assert [r["covariate"] for r in rows] == ["a", "b"] and rows[1]["values_imputed"] == 17
    assert rows[0]["n_imputed_fit"] == 63 and rows[0]["n_complete_case"] == 43
    b = imputed.posterior["hr"].sel(covariate="b").values.ravel()
    b_cc = complete.posterior["hr"].sel(covariate="b").values.ravel()
    np.testing.assert_allclose(rows[1]["imputed_median"], np.median(b))
    np.testing.assert_allclose(rows[1]["complete_case_upper"], np.quantile(b_cc, 0.975))
    width = np.log(np.quantile(b, 0.975) / np.quantile(b, 0.025))
    width_cc = np.log(np.quantile(b_cc, 0.975) / np.quantile(b_cc, 0.025))
    np.testing.assert_allclose(rows[1]["width_ratio"], width / width_cc)
    assert "17" in ci.markdown({**ci.imputation_comparison(Path("/nonexistent")), "rows": rows},
                               {"cohort": "c.csv"})  # fmt: skip
