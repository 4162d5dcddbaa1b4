"""The ensemble's contribution to a hazard ratio: law of total variance and member ranges."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

from analysis.comparison.ensemble_summary import (
    across_members,
    decomposition_rows,
    pooled_hr,
    variance_decomposition,
)


def test_decomposition_adds_up_to_the_pooled_variance() -> None:
    rng = np.random.default_rng(1)
    means, sds = [0.0, 0.5, 1.5], [0.2, 0.4, 0.3]
    values = np.concatenate([rng.normal(m, s, 1000) for m, s in zip(means, sds, strict=True)])
    member = np.repeat([1, 2, 3], 1000)
    d = variance_decomposition(values, member)
    assert d["total"] == pytest.approx(np.var(values), rel=1e-12)
    assert d["between"] == pytest.approx(np.var([values[member == m].mean() for m in (1, 2, 3)]))
    expected = np.var(means) / (np.var(means) + np.mean(np.square(sds)))
    assert d["between_share"] == pytest.approx(expected, abs=0.03)
    assert d["members"] == 3


def test_identical_members_have_no_between_share() -> None:
    values = np.tile(np.random.default_rng(2).normal(0.3, 0.5, 500), 4)
    d = variance_decomposition(values, np.repeat([1, 2, 3, 4], 500))
    assert d["between"] == pytest.approx(0.0, abs=1e-15) and d["between_share"] < 1e-12
    spread = variance_decomposition(np.repeat([0.0, 1.0], 50), np.repeat([1, 2], 50))
    assert spread["between_share"] == 1.0


def test_pooled_hr_reads_the_reconstruction_coordinate() -> None:
    rng = np.random.default_rng(3)
    log_hr = np.concatenate([rng.normal(m, 0.25, 800) for m in (0.2, 0.8)])
    pooled = xr.Dataset(
        {"hr": (("sample", "covariate"), np.exp(log_hr)[:, None])},
        coords={"covariate": ["x"], "reconstruction": ("sample", np.repeat([7, 9], 800))},
    )
    s = pooled_hr(pooled, "x")
    assert s["median"] == pytest.approx(np.exp(np.median(log_hr)))
    assert s["prob_gt_1"] == pytest.approx(np.mean(log_hr > 0))
    assert s["members"] == 2 and s["draws"] == 1600
    assert s["log_hr_between_share"] == pytest.approx(0.09 / (0.09 + 0.0625), abs=0.04)
    rows = decomposition_rows({"m": pooled}, [("m", "x"), ("m", "y"), ("other", "x")])
    assert [(r["model"], r["covariate"]) for r in rows] == [("m", "x")]


def test_member_range_keeps_infinite_hrs() -> None:
    stats = {r: {"k": v} for r, v in enumerate([1.0, 2.0, 3.0, 4.0, math.inf, math.nan])}
    s = across_members(stats, "k")
    assert s["members"] == 5 and s["infinite"] == 1
    assert s["median"] == 3.0 and s["upper"] == math.inf
    assert s["lower"] == pytest.approx(np.quantile([1, 2, 3, 4, 5], 0.05))
    empty = across_members({1: {}}, "k")
    assert empty["members"] == 0 and math.isnan(empty["median"])
