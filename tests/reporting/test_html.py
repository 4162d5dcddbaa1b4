"""vlms report: the HTML page from small synthetic saved outputs, and a real-browser check."""

from __future__ import annotations

import html
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.comparison import hazard_ratios as compare
from analysis.core.atomic import write_json, write_text
from analysis.core.tables import json_safe
from analysis.paper.published import load_published
from analysis.reporting import html as report
from tests.compare_report_helpers import as_idata, fake_posterior, write_fit
from tests.conftest import make_cohort_frame

PUBLISHED = Path(__file__).resolve().parents[2] / "data" / "published.toml"
HOSTILE = "<script>alert('x')</script> & \"quoted\""
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=10000",
]


ENV_GOOD = {
    "sampler": "nutpie",
    "seed": 4242,
    "base_seed": 20260101,
    "cut_points_months": [0.0, 6.0, 12.0],
    "priors": "log-HR ~ Normal(0, 1)",
    "version_pymc": "5.28.5",
}
ENV_BAD = {**ENV_GOOD, "sampler": "pymc", "seed": 977, "cut_points_months": [0.0, 24.0]}
"""Recorded environments of the two fake fits (NetCDF attributes, as ``vlms fit`` writes)."""


def build_outputs(root: Path) -> dict:
    """Saved outputs as the pipeline writes them, from fake fits and a random cohort."""
    from analysis.inference import diagnostics as diagnostics
    from analysis.reporting.figures import save_png

    fits_dir = root / "fits"
    good = fake_posterior(
        ("beta_catenin",), {"beta_catenin": 0.7}, attrs={"description": "ok", **ENV_GOOD}
    )
    bad = fake_posterior(
        ("igf1r",), {"igf1r": 0.5}, seed=2, attrs={"description": HOSTILE, **ENV_BAD}
    )
    bad["sample_stats"]["diverging"].values[0, :3] = True
    groups = {"dss_beta_catenin": good, "dss_igf1r": bad}
    for name, g in groups.items():
        path = write_fit(fits_dir / f"{name}.nc", g)
        diagnostics.summarize(diagnostics.load_fit(path)).to_csv(fits_dir / f"{name}.summary.csv")
    fits = {name: as_idata(g) for name, g in groups.items()}
    freq = {"table2.dss.beta_catenin.hr": 4.0, "table2.dss.igf1r.hr": math.inf}
    key = "table2.dss.beta_catenin.hr"
    ensemble = {r: {key: hr} for r, hr in enumerate([2.0, 3.0, 4.0], start=1)}
    selection = write_selection_table(root)
    rows = compare.comparison_rows(
        load_published(PUBLISHED),
        freq,
        fits,
        ensemble=ensemble,
        pooled={"dss_beta_catenin": fake_pooled()},
        selection=selection,
    )
    meta = {
        "cohort": "fixture.csv",
        "n": 40,
        "interval": "95%",
        "members": 3,
        "framing": compare.FRAMING,
        "columns": ["a note on the columns"],
    }
    compare.write_comparison(rows, meta, root)
    write_fake_ensemble(fits_dir)
    sens = pd.DataFrame(
        [
            {
                "model": "dss_igf1r",
                "covariate": "igf1r",
                "prior": "Normal(0, 1)",
                "hr_median": 1.9,
                "hr_lower": 0.7,
                "hr_upper": 4.8,
                "prob_gt_1": 0.9,
                "bar_met": True,
                "summary_median": 2.3,
                "summary_prob_gt_1": 0.98,
            },
            {
                "model": "dss_igf1r",
                "covariate": "igf1r",
                "prior": "StudentT(3, 0, 1)",
                "hr_median": 1.8,
                "hr_lower": 0.7,
                "hr_upper": 5.2,
                "prob_gt_1": 0.9,
                "bar_met": False,
                "summary_median": 2.4,
                "summary_prob_gt_1": 0.98,
            },
        ]
    )
    write_json(
        root / "tables" / "prior_sensitivity.json",
        {
            "rows": sens.to_dict("records"),
        },
    )
    loo = compare.run_loo(fits_dir)
    write_json(root / "tables" / "loo.json", json_safe(loo))
    write_json(
        root / "audit.json",
        {
            "entries": 3,
            "summary": {"major": 1, "minor": 0, "info": 0},
            "findings": [
                {"severity": "major", "check": "claim", "message": HOSTILE, "source": "Discussion"}
            ],
        },
    )
    write_json(
        root / "calibration.json",
        {
            "notice": "SYNTHETIC DATA.",
            "seed": 1,
            "members": 2,
            "chosen_member": 1,
            "summary": {"targets": 2, "targets_share_within_tolerance_mean": 0.5},
            "plausibility": {"passes_every_check": 1.0, "other_cause_deaths_present": 1.0},
            "timing": {"member_cpu_seconds_median": 3.0},
            "targets": [
                {
                    "name": "t1",
                    "status": "calibrated",
                    "published": 1.0,
                    "median": 1.1,
                    "q05": 1.0,
                    "q95": 1.2,
                    "share_within_tolerance": 1.0,
                    "tolerance_text": "[0.95, 1.05]",
                },
                {
                    "name": "t2",
                    "status": "released",
                    "published": 2.0,
                    "median": 3.0,
                    "q05": 2.5,
                    "q95": 3.5,
                    "share_within_tolerance": 0.0,
                    "tolerance_text": "released",
                },
            ],
        },
    )
    frame = make_cohort_frame(40, seed=4)
    csv = root / "cohort.csv"
    write_text(csv, frame.to_csv(index=False))
    report.draw_figures(root, csv)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    save_png(fig, root / "figures" / "trace_dss_beta_catenin.png")
    return {"patient_ids": frame["patient_id"].tolist()}


def fake_pooled():
    import xarray as xr

    rng = np.random.default_rng(7)
    draws = np.concatenate([rng.normal(m, 0.3, 300) for m in (0.3, 0.9)])
    return xr.Dataset(
        {"hr": (("sample", "covariate"), np.exp(draws)[:, None])},
        coords={
            "covariate": ["beta_catenin"],
            "reconstruction": ("sample", np.repeat([1, 2], 300)),
        },
    )


def write_selection_table(root: Path) -> dict:
    """A selection-adjusted table of one row, as ``vlms compare`` writes it."""
    from analysis.comparison import selection as sel

    row = {
        "endpoint": "dss",
        "endpoint_label": "disease-specific survival",
        "setting": "default",
        "settings": "x",
        "marker": "beta-catenin",
        "published_key": "table2.dss.beta_catenin.hr",
        "published_hr": 5.33,
        "bar_met": True,
        **{
            f"{p}_{k}": v
            for p in ("adjusted", "exact", "unadjusted")
            for k, v in {"median": 1.07, "lower": 0.73, "upper": 2.58, "prob_gt_1": 0.68}.items()
        },
        "tau_median": 0.22,
        "tau_lower": 0.01,
        "tau_upper": 0.6,
    }
    doc = {
        "rows": [row],
        "markers_tested": {"dss": 20},
        "mcmc": {"chains": 4, "draws": 1000},
        "timings": {"fits": 1, "compile_seconds": 1, "sampling_seconds": 1},
    }
    sel.write_selection(doc, root)
    return sel.default_by_key(doc)


def write_fake_ensemble(fits_dir: Path) -> None:
    """Two members of one model; member 2 misses the bar."""
    import xarray as xr

    rng = np.random.default_rng(8)
    post = xr.Dataset(
        {"beta": (("chain", "draw", "reconstruction"), rng.normal(0, 1, (4, 100, 2)))},
        coords={"chain": np.arange(4), "draw": np.arange(100), "reconstruction": [1, 2]},
    )
    stats = xr.Dataset(
        {"diverging": (("chain", "draw", "reconstruction"), np.zeros((4, 100, 2), bool))},
        coords=post.coords,
    )
    path = write_fit(
        fits_dir / "ensemble" / "dss_beta_catenin.nc", {"posterior": post, "sample_stats": stats}
    )
    table = pd.DataFrame(
        {
            "reconstruction": [1, 2],
            "max_rhat": [1.002, 1.03],
            "min_ess_bulk": [900.0, 150.0],
            "min_ess_tail": [800.0, 120.0],
            "divergences": [0, 0],
            "bar_met": [True, False],
            "attempt": [1, 3],
        }
    )
    table.to_csv(path.with_suffix(".members.csv"), index=False)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("reports")
    info = build_outputs(root)
    page = report.build_html(root)
    write_text(root / "index.html", page)
    return root, info


def test_page_has_banner_and_every_section_in_order(outputs) -> None:
    root, _ = outputs
    page = (root / "index.html").read_text(encoding="utf-8")
    assert "SYNTHETIC DATA" in page.split("<main>")[0]  # the banner comes first
    heads = re.findall(r"<h2>(.*?)</h2>", page)
    assert heads[0] == "What was done"
    assert heads[1].startswith("1. Hazard ratios")
    words = ("selection", "Survival", "sensitivity", "PSIS-LOO", "audit", "synthetic cohort")
    for word in (*words, "diagnostics"):
        assert any(word.lower() in h.lower() for h in heads), word
    assert page.index("Forest plot") < page.index("Figure 1 of the paper")


def test_comparison_table_shows_the_computed_rows(outputs) -> None:
    root, _ = outputs
    page = (root / "index.html").read_text(encoding="utf-8")
    data = json.loads((root / "tables" / "hr_comparison.json").read_text())
    row = next(r for r in data["rows"] if r["key"] == "table2.dss.beta_catenin.hr")
    section = page[page.index("1. Hazard ratios") : page.index("2. Biomarker")]
    for prefix in ("pooled", "summary"):
        assert f"{row[f'{prefix}_median']:.2f} ({row[f'{prefix}_lower']:.2f}-" in section
    assert f"{row['ensemble_cox_median']:.2f} ({row['ensemble_cox_lower']:.2f}-" in section
    assert f"{100 * row['pooled_log_hr_between_share']:.0f}%" in section
    assert "1.07 (0.73-2.58)" in section  # the selection-adjusted column
    assert html.escape(compare.FRAMING) in section and "a note on the columns" in section
    assert "inside" not in section


def test_selection_section_and_ensemble_diagnostics(outputs) -> None:
    root, _ = outputs
    page = (root / "index.html").read_text(encoding="utf-8")
    sel = page[page.index("2. Biomarker") : page.index("3. Survival")]
    assert "beta-catenin" in sel and "0.22 (0.01-0.60)" in sel and "20 markers" in sel
    diag = page[page.index("Reconstruction ensemble: the worst member") :]
    assert '<tr class="bad"><td>dss_beta_catenin</td><td>2</td><td>1</td>' in diag
    assert "1.0300 (2)" in diag and "120 (2)" in diag


def test_file_text_is_escaped(outputs) -> None:
    root, _ = outputs
    page = (root / "index.html").read_text(encoding="utf-8")
    assert "<script>alert" not in page
    assert html.escape(HOSTILE, quote=True) in page


def test_self_contained_no_scripts_no_network(outputs) -> None:
    root, _ = outputs
    page = (root / "index.html").read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert not re.search(r"(src|href)\s*=\s*[\"'](https?:)?//", page)
    srcs = re.findall(r'<img[^>]*src="([^"]*)"', page)
    assert len(srcs) >= 6
    assert all(s.startswith("data:image/png;base64,") for s in srcs)


def test_missed_bar_is_a_red_row_and_line(outputs) -> None:
    root, _ = outputs
    page = (root / "index.html").read_text(encoding="utf-8")
    diag = page[page.index("Sampling diagnostics") : page.index("Reconstruction ensemble: the")]
    assert re.search(r'<tr class="bad"><td>dss_igf1r</td>', diag)
    assert not re.search(r'<tr class="bad"><td>dss_beta_catenin</td>', diag)
    assert 'class="bad-line">dss_igf1r misses the bar' in diag
    sens = page[page.index("Prior sensitivity") : page.index("PSIS-LOO")]
    assert sens.count('<tr class="bad">') == 1


def test_no_patient_rows(outputs) -> None:
    root, info = outputs
    page = (root / "index.html").read_text(encoding="utf-8")
    assert not any(pid in page for pid in info["patient_ids"])


def test_missing_inputs_say_what_to_run(tmp_path: Path) -> None:
    page = report.build_html(tmp_path)
    assert "SYNTHETIC DATA" in page
    for command in ("vlms compare", "vlms audit", "vlms reconstruct", "vlms fit"):
        assert f"<code>{command}</code>" in page
    assert page.count('class="missing"') >= 6


def test_run_cli_writes_index(outputs, tmp_path: Path) -> None:
    import argparse

    root, _ = outputs
    target = tmp_path / "r"
    shutil.copytree(root, target)
    (target / "index.html").unlink()
    assert report.run_cli(argparse.Namespace(out_dir=target, cohort=target / "cohort.csv")) == 0
    assert (target / "index.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


# --------------------------------------------------------------------------- real browser

PROBE = """<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  var t = e.target && e.target.tagName ? 'load failed: ' + e.target.tagName : 'error: ' + e.message;
  window.__errors.push(t);
}, true);
(function () {
  var original = console.error;
  console.error = function () {
    window.__errors.push('console.error: ' + Array.prototype.join.call(arguments, ' '));
    return original.apply(console, arguments);
  };
})();
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                   .map(function (i) { return i.alt; });
  var fetched = performance.getEntriesByType('resource').map(function (r) { return r.name; });
  var out = document.createElement('pre');
  out.id = 'vlms-probe';
  out.textContent = JSON.stringify({images: imgs.length, broken: broken,
                                    errors: window.__errors, fetched: fetched});
  document.body.appendChild(out);
});
</script>"""


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of a Chromium binary (``make browser`` installs Debian's); skip where there is none.

    The tests never install anything themselves."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip(
            "no chromium or chromium-browser on PATH: run `make browser` (installs Debian's "
            "chromium package) to run the headless-browser checks of the report page"
        )
    return found


def probe(chromium: str, page: str, work: Path) -> tuple[dict, str]:
    """Open a test copy of ``page`` (probe script injected) headless; the probe's record."""
    work.mkdir(parents=True, exist_ok=True)
    copy = work / "probe.html"
    copy.write_text(page.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    cmd = [
        chromium,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={work / 'profile'}",
        "--dump-dom",
        copy.as_uri(),
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    match = re.search(r'<pre id="vlms-probe">(.*?)</pre>', run.stdout, re.S)
    assert match, f"the probe did not run; chromium stderr tail: {run.stderr[-800:]}"
    return json.loads(html.unescape(match.group(1))), run.stderr


def console_errors(stderr: str) -> list[str]:
    """Chromium's own log lines for page console errors and uncaught exceptions."""
    return [
        line
        for line in stderr.splitlines()
        if ":CONSOLE" in line and ("Uncaught" in line or "ERROR" in line.split(":CONSOLE")[0])
    ]


@pytest.mark.browser
def test_page_renders_in_headless_chromium(outputs, chromium: str, tmp_path: Path) -> None:
    root, _ = outputs
    page = (root / "index.html").read_text(encoding="utf-8")
    record, stderr = probe(chromium, page, tmp_path)
    n_img = len(re.findall(r"<img ", page))
    assert record["images"] == n_img and n_img >= 6
    assert record["broken"] == []
    assert record["errors"] == []
    assert record["fetched"] == []
    assert console_errors(stderr) == []


@pytest.mark.browser
def test_browser_probe_catches_a_broken_image_and_an_error(chromium: str, tmp_path: Path) -> None:
    """The check above can fail: a broken image and a script error are both reported."""
    bad = (
        "<!DOCTYPE html><html><head><title>x</title></head><body>"
        '<img alt="broken" src="data:image/png;base64,AAAA">'
        "<script>undefined_function_call();</script></body></html>"
    )
    record, stderr = probe(chromium, bad, tmp_path)
    assert record["broken"] == ["broken"]
    assert any("undefined_function_call" in line for line in console_errors(stderr))
    assert any("load failed: IMG" in e for e in record["errors"])
    assert any("undefined_function_call" in e for e in record["errors"])


def test_figures_are_readable_pngs(outputs) -> None:
    """The survival figures exist and are PNGs of a readable size."""
    from matplotlib.image import imread

    root, _ = outputs
    for name in ("fig1_recurrence_dss.png", "fig2_biomarkers.png", "forest_hr.png"):
        img = imread(root / "figures" / name)
        assert img.shape[0] > 300 and img.shape[1] > 500
        assert np.std(img) > 0.01


def test_page_shows_each_fits_recorded_environment(outputs) -> None:
    """Each model's row carries the settings its own NetCDF recorded (not another fit's)."""
    root, _ = outputs
    page = (root / "index.html").read_text(encoding="utf-8")
    block = page[page.index("Recorded environment of every fit") :]
    block = block[: block.index("</details>")]
    rows = dict(re.findall(r"<tr><td>(\w+)</td><td>(.*?)</td></tr>", block))
    assert set(rows) == {"dss_beta_catenin", "dss_igf1r"}
    for model, env in (("dss_beta_catenin", ENV_GOOD), ("dss_igf1r", ENV_BAD)):
        shown = rows[model].split("; ")
        assert f"sampler = {env['sampler']}" in shown and f"seed = {env['seed']}" in shown
        assert f"cut points (months) = {env['cut_points_months']}" in shown
        assert "base_seed = 20260101" in shown and "version_pymc = 5.28.5" in shown


def test_environment_keeps_settings_seeds_and_versions() -> None:
    attrs = {
        "sampler": "nutpie",
        "seed": 7,
        "cut_points_months": [0.0, 6.0, 12.0],
        "priors": "log-HR ~ Normal(0, 1)",
        "version_pymc": "5.28.5",
        "python": "3.11.7",
        "n": 26,
    }
    env = report._environment(attrs)
    assert env["seed"] == "7" and env["version_pymc"] == "5.28.5" and env["python"] == "3.11.7"
    assert env["cut points (months)"] == "[0.0, 6.0, 12.0]"
    assert "n" not in env
