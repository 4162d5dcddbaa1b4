"""Every ``vlms`` command in the README runs as written on the committed data.

The commands are read from the README's code blocks and run in order (later ones read what
earlier ones wrote) through ``analysis.cli.main`` in a scratch folder that holds the project's
``data/``, so their outputs land there. ``data/example.csv``, which the commands read, is the
committed cohort's flat table (checked first).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from analysis.cli import main
from analysis.cohort import example_csv, load_cohort

ROOT = Path(__file__).resolve().parents[2]
PREFIX = ".venv/bin/vlms "


def readme_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = text.split("```")[1::2]
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return [shlex.split(line[len(PREFIX) :]) for line in lines if line.startswith(PREFIX)]


def test_example_table_is_the_committed_cohort() -> None:
    expected = example_csv(load_cohort(ROOT / "data" / "cohort.csv"))
    assert (ROOT / "data" / "example.csv").read_text(encoding="utf-8") == expected


def test_readme_lists_the_own_data_commands() -> None:
    names = [argv[0] for argv in readme_commands()]
    assert names.count("check") >= 1 and names.count("fit") >= 2
    assert "diagnose" in names and "report" in names


@pytest.mark.slow
def test_every_readme_command_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "data").symlink_to(ROOT / "data", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    for argv in readme_commands():
        status = main(argv)
        captured = capsys.readouterr()
        assert status == 0, (argv, captured.out[-1500:], captured.err[-1500:])
    written = {p.name for p in tmp_path.iterdir()}
    assert {"out.json", "post.json", "post.nc", "cif.json", "post_report"} <= written
    assert (tmp_path / "post_report" / "post.html").is_file()
