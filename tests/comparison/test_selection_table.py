"""The selection-adjusted table of ``vlms compare``: inputs read from the published file, one
compiled model for every row, agreement with the exact posterior, the written tables."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from analysis.comparison import selection as sel
from analysis.inference.selection_fit import McmcSettings
from analysis.paper.published import load_published

PUBLISHED = Path(__file__).resolve().parents[2] / "data" / "published.toml"


def test_panel_data_comes_from_the_published_file() -> None:
    inputs = sel.panel_data(load_published(PUBLISHED))
    assert set(inputs) == {"dss", "rfs"}
    data, keys = inputs["dss"]
    assert len(data.markers) == 20 and data.reported_markers == ("IGF-1R", "beta-catenin")
    assert keys == {"beta-catenin": "table2.dss.beta_catenin.hr", "IGF-1R": "table2.dss.igf1r.hr"}
    i = data.markers.index("beta-catenin")
    assert data.log_hr[i] == pytest.approx(math.log(5.33))
    assert data.se[i] == pytest.approx((math.log(29.3) - math.log(0.97)) / (2 * 1.959964), 1e-5)
    rfs, _ = inputs["rfs"]
    assert rfs.log_hr[rfs.markers.index("beta-catenin")] == pytest.approx(math.log(1.37))


@pytest.mark.slow
def test_selection_rows_on_one_compiled_model(tmp_path: Path) -> None:
    mcmc = McmcSettings(draws=400, tune=400)
    doc = sel.run_selection(load_published(PUBLISHED), seed=3, log=lambda m: None, mcmc=mcmc)
    assert doc["timings"]["compiled_models"] == 1 and doc["timings"]["fits"] == 6
    rows = doc["rows"]
    assert len(rows) == 2 * 3 * 2  # end points x settings x reported markers
    for r in rows:
        # the sampler agrees with the quadrature over tau (loosely: few draws here)
        assert math.log(r["adjusted_median"]) == pytest.approx(
            math.log(r["exact_median"]), abs=0.06
        )
        assert r["adjusted_median"] < r["unadjusted_median"]  # the 18 silent markers shrink it
        assert r["tau_lower"] < r["tau_median"] < r["tau_upper"]
    default = sel.default_by_key(doc)
    assert set(default) == {
        "table2.dss.beta_catenin.hr",
        "table2.dss.igf1r.hr",
        "table2.rfs.beta_catenin.hr",
        "table2.rfs.igf1r.hr",
    }
    by = {(r["endpoint"], r["setting"]): r["tau_median"] for r in rows}
    assert by[("dss", "tau ~ HalfNormal(1)")] > by[("dss", "default")]
    md = sel.write_selection(doc, tmp_path)
    assert "tau ~ HalfNormal(1)" in md and "threshold 1.96" in md
    saved = json.loads((tmp_path / "tables" / "selection_adjusted.json").read_text())
    assert len(saved["rows"]) == 12 and (tmp_path / "tables" / "selection_adjusted.csv").is_file()


def test_markdown_without_a_panel() -> None:
    assert "Not available" in sel.selection_markdown({"rows": [], "missing": "no panel"})
