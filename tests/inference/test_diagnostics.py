"""The vectorised R-hat and ESS of the batch bar equal ArviZ's, element by element."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from analysis.inference.diagnostics import (
    bar_from_convergence,
    convergence,
    ess_of,
    rank_diagnostics,
    rhat_of,
)


def _ar1(rng: np.random.Generator, phi: float, chains: int = 4, draws: int = 400) -> np.ndarray:
    e = rng.normal(size=(chains, draws))
    x = np.zeros_like(e)
    for t in range(draws):
        x[:, t] = (phi * x[:, t - 1] if t else 0.0) + e[:, t]
    return x


def _cases(draws: int) -> np.ndarray:
    rng = np.random.default_rng(11)
    cols = [_ar1(rng, phi, draws=draws) for phi in (0.0, 0.5, 0.9, 0.98, -0.4)]
    cols.append(np.exp(_ar1(rng, 0.6, draws=draws)))  # skewed
    cols.append(np.round(_ar1(rng, 0.3, draws=draws) * 2))  # many ties
    stuck = _ar1(rng, 0.2, draws=draws)
    stuck[0] += 4.0  # one chain elsewhere
    cols.append(stuck)
    cols.append((rng.random((4, draws)) < 0.03).astype(float))  # a rare indicator
    cols.append(np.full((4, draws), 1.5))  # constant
    return np.stack(cols, axis=-1)


@pytest.mark.parametrize("draws", [400, 401])
def test_rank_diagnostics_equal_arviz(draws: int) -> None:
    values = _cases(draws)
    got = rank_diagnostics(values)
    for j in range(values.shape[-1]):
        bulk, tail = ess_of(values[..., j])
        rhat = rhat_of(values[..., j])
        np.testing.assert_allclose(got["ess_bulk"][j], bulk, rtol=1e-8)
        np.testing.assert_allclose(got["ess_tail"][j], tail, rtol=1e-8)
        if np.isnan(rhat):
            assert np.isnan(got["rhat"][j])
        else:
            np.testing.assert_allclose(got["rhat"][j], rhat, rtol=1e-10)


def test_convergence_keeps_dims_and_the_bar_reads_it() -> None:
    rng = np.random.default_rng(2)
    good = rng.normal(size=(4, 300, 3, 2))
    good[:, :, 2, 1] += np.arange(4)[:, None]  # fit 2, covariate b: chains disagree
    post = xr.Dataset(
        {"beta": (("chain", "draw", "fit", "covariate"), good)},
        coords={"fit": [0, 1, 2], "covariate": ["a", "b"]},
    )
    conv = convergence(post)
    assert conv["rhat"]["beta"].dims == ("fit", "covariate")
    assert list(conv["ess_bulk"]["beta"].coords["covariate"].values) == ["a", "b"]
    ok = bar_from_convergence({k: v.sel(fit=0) for k, v in conv.items()}, 0)
    bad = bar_from_convergence({k: v.sel(fit=2) for k, v in conv.items()}, 0)
    assert ok["ok"] and not bad["ok"] and bad["failing"] == ["beta (1 of 2)"]
    assert not bar_from_convergence({k: v.sel(fit=0) for k, v in conv.items()}, 1)["ok"]


def test_load_fit_reads_a_file_once_and_hands_out_copies(tmp_path, monkeypatch) -> None:
    """A saved fit read again is not reopened while unchanged; each caller gets its own groups
    and attributes; a file replaced (a new fit saved over it) is read anew."""
    import arviz as az

    from analysis.inference import diagnostics
    from analysis.inference.engine import save_idata

    def idata(value: float):
        post = xr.Dataset({"x": (("chain", "draw"), np.full((2, 3), value))})
        return az.InferenceData(posterior=post)

    path = save_idata(idata(1.0), tmp_path / "fit.nc")
    reads = []
    real = az.from_netcdf
    monkeypatch.setattr(az, "from_netcdf", lambda p: reads.append(p) or real(p))
    first = diagnostics.load_fit(path)
    first.posterior.attrs["mine"] = 1
    first.posterior["y"] = first.posterior["x"] * 2
    second = diagnostics.load_fit(path)
    assert len(reads) == 1
    assert "mine" not in second.posterior.attrs and "y" not in second.posterior
    assert float(second.posterior["x"].mean()) == 1.0
    save_idata(idata(2.0), path)  # replaced by a rename: a new file
    assert float(diagnostics.load_fit(path).posterior["x"].mean()) == 2.0 and len(reads) == 2
