"""The ensemble: deterministic for a seed whatever the workers, its files, its report, the CLI."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.cohort import COLUMNS, validate_cohort
from analysis.paper.published import load_published
from analysis.reconstruction.ensemble import choose_member, cohorts_csv, reconstruct_ensemble
from analysis.reconstruction.report import (
    TABLE2_P,
    build_payload,
    p_side,
    plausibility_summary,
    render_markdown,
    target_summary,
)
from analysis.reconstruction.sampler import ChainSettings

ROOT = Path(__file__).resolve().parents[2]
SMALL = ChainSettings(anneal=2000, hold=500)


@pytest.fixture(scope="module")
def published():
    return load_published(ROOT / "data" / "published.toml")


@pytest.fixture(scope="module")
def ensemble(published):
    return reconstruct_ensemble(published, 3, 3, settings=SMALL, workers=1)


def test_same_seed_same_files_whatever_the_workers(published, ensemble) -> None:
    forked = reconstruct_ensemble(published, 3, 3, settings=SMALL, workers=2)
    assert cohorts_csv(forked) == cohorts_csv(ensemble)
    assert forked.chosen == ensemble.chosen
    other = reconstruct_ensemble(published, 4, 2, settings=SMALL, workers=1)
    assert cohorts_csv(other) != cohorts_csv(ensemble)


def test_cohorts_file_is_the_schema_plus_reconstruction(ensemble) -> None:
    raw = pd.read_csv(io.StringIO(cohorts_csv(ensemble)), dtype=str, keep_default_na=False)
    assert list(raw.columns) == [*COLUMNS, "synthetic", "reconstruction"]
    assert sorted(raw["reconstruction"].unique(), key=int) == ["1", "2", "3"]
    for k, rows in raw.groupby("reconstruction"):
        member = validate_cohort(rows.drop(columns="reconstruction").reset_index(drop=True), k)
        assert len(member) == 63
        assert member["patient_id"].str.fullmatch(r"SYN-\d{3}").all()


class _Fake:
    def __init__(self, index: int, passes: bool, met: int, penalty: float) -> None:
        self.index = index
        self._passes, self._met = passes, met
        self.chain = type("C", (), {"penalty": penalty})()
        self.plausibility = type("P", (), {"passes": lambda s: passes})()

    def met(self, targets):
        return {str(k): k < self._met for k in range(10)}


def test_chosen_member_is_plausible_then_closest() -> None:
    members = [_Fake(1, False, 9, 0.0), _Fake(2, True, 7, 5.0), _Fake(3, True, 7, 2.0)]
    assert choose_member(members, []) == 3  # type: ignore[arg-type]
    members.append(_Fake(4, True, 8, 9.0))
    assert choose_member(members, []) == 4  # type: ignore[arg-type]


def test_target_summary_counts_members(ensemble) -> None:
    target = next(t for t in ensemble.targets if t.name == "text.rfs.rate_5y")
    row = target_summary(ensemble, target)
    values = [m.values["text.rfs.rate_5y"] for m in ensemble.members]
    assert row["share_within_tolerance"] == pytest.approx(
        np.mean([target.within(v) for v in values])
    )
    assert row["q05"] <= row["median"] <= row["q95"]
    assert min(values) <= row["median"] <= max(values)


def test_p_side_and_plausibility_summary(ensemble, published) -> None:
    rows = {r["name"]: r for r in p_side(ensemble, published)}
    assert set(rows) == set(TABLE2_P)
    dss_igf = [m.values["table2.dss.igf1r.hr:p"] for m in ensemble.members]
    expected = np.mean([math.isfinite(p) and p < 0.05 for p in dss_igf])  # the paper: P = .02
    assert rows["table2.dss.igf1r.hr:p"]["share_same_side"] == pytest.approx(expected)
    s = plausibility_summary(ensemble)
    assert s["no_disease_death_without_recurrence"] == 1.0
    passes = np.mean([m.plausibility.passes() for m in ensemble.members])
    assert s["passes_every_check"] == pytest.approx(passes)


def test_report_renders_and_serialises(ensemble, published, tmp_path: Path) -> None:
    from analysis.core.tables import json_safe
    from analysis.reconstruction.report import write_reports

    payload = json_safe(build_payload(ensemble, published))
    text = render_markdown(payload)
    _md, js = write_reports(tmp_path, text, payload)
    assert json.loads(js.read_text())["members"] == 3  # strict JSON: NaN written as null
    for heading in (
        "## Calibrated statistics",
        "## True by construction",
        "## Plausibility",
        "## Table 2 P values",
        "## Exact counts",
        "## The generative model",
    ):
        assert heading in text  # fmt: skip
    assert "SYN-" not in text  # no patient identifier in a report
    assert payload["counts"]["not_exact"] and all(
        r["reading"] for r in payload["counts"]["not_exact"]
    )
    statuses = {t["status"] for t in payload["targets"]}
    assert statuses == {"calibrated", "widened", "released", "by_construction"}


def test_html_section_reads_the_payload(ensemble, published, tmp_path: Path) -> None:
    from analysis.core.tables import json_safe
    from analysis.reporting.html import Inputs, section_calibration

    (tmp_path / "calibration.json").write_text(
        json.dumps(json_safe(build_payload(ensemble, published)))
    )
    html = section_calibration(Inputs(tmp_path))
    assert "3 cohorts" in html and "every check passed" in html
    assert "table2.dss.beta_catenin.hr" in html


def _cli(args: list[str]) -> int:
    from analysis.cli import main

    return main(["reconstruct", *args])


def test_cli_writes_everything_and_is_deterministic(tmp_path: Path) -> None:
    outs = []
    for run in ("a", "b"):
        d = tmp_path / run
        status = _cli(["--members", "2", "--iterations", "1500", "--workers", "1", "--seed", "9",
                       "--out", str(d / "cohort.csv"), "--ensemble-out", str(d / "cohorts.csv"),
                       "--out-dir", str(d)])  # fmt: skip
        assert status == 0
        outs.append(d)
    for name in ("cohort.csv", "cohorts.csv"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes()
    payload = json.loads((outs[0] / "calibration.json").read_text())
    assert payload["members"] == 2 and len(payload["member_rows"]) == 2
    chosen = pd.read_csv(outs[0] / "cohort.csv", dtype=str, keep_default_na=False)
    every = pd.read_csv(outs[0] / "cohorts.csv", dtype=str, keep_default_na=False)
    rows = every[every["reconstruction"] == str(payload["chosen_member"])]
    pd.testing.assert_frame_equal(
        chosen, rows.drop(columns="reconstruction").reset_index(drop=True)
    )


@pytest.mark.parametrize("args", [["--members", "0"], ["--iterations", "5"], ["--workers", "-1"]])
def test_cli_refuses_impossible_settings(args: list[str], tmp_path: Path, capsys) -> None:
    status = _cli([*args, "--out", str(tmp_path / "c.csv"), "--ensemble-out",
                   str(tmp_path / "cs.csv"), "--out-dir", str(tmp_path)])  # fmt: skip
    assert status == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
