"""The command line itself: help texts and the error contract."""

from __future__ import annotations

import subprocess
import sys

import pytest

from analysis.cli import build_parser, main


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in ("audit", "check", "reconstruct", "fit", "diagnose", "compare", "report"):
        assert name in out


@pytest.mark.parametrize("name", ["audit", "check", "fit", "diagnose", "report", "validate"])
def test_each_subcommand_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([name, "--help"])
    assert exc.value.code == 0
    assert "usage: vlms " + name in capsys.readouterr().out


def test_console_script_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "analysis.cli", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0
    assert "vlms" in proc.stdout


def test_every_subcommand_handler_resolves() -> None:
    """Each subcommand names an importable ``module:function`` (a typo would print 'not built')."""
    import argparse

    from analysis import cli

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        handler = p.get_default("handler")
        assert cli._resolve(handler) is not None, f"{name}: {handler}"


def test_fit_help_shows_every_default_and_when_to_change_it() -> None:
    import argparse

    from analysis import cli

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    fit = sub.choices["fit"]
    text = fit.format_help()
    options = [a for a in fit._actions if a.option_strings and a.dest != "help"]
    assert len(options) >= 19
    for action in options:
        assert action.help and "default" in action.help, action.option_strings
    for hint in ("raise it if ESS", "raise it if R-hat", "divergences", "exit status 3"):
        assert hint in " ".join(text.split())


def test_default_paths_come_from_the_project_not_the_current_directory(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from analysis import cli
    from analysis.paper.published import DEFAULT_PATH

    for path in (cli.DEFAULT_COHORT, cli.DEFAULT_PUBLISHED, DEFAULT_PATH):
        assert path.is_absolute() and path.is_file()
    monkeypatch.chdir(tmp_path)  # no data/ here
    assert main(["audit", "--out-dir", str(tmp_path / "reports")]) == 0
    assert (tmp_path / "reports" / "audit.json").is_file()


def test_no_library_warning_reaches_stderr(tmp_path) -> None:
    """A fit with a constant quantity (S(0) = 1: ArviZ divides 0 by 0), PyMC's C backend
    (BLAS notice), one chain (ArviZ's own logger) and too few draws (a missed bar), a check with
    a monotone Cox fit, and the review of the failed fit: stderr holds vlms' own lines only."""
    import os

    path = tmp_path / "d.csv"
    rows = [f"{t},{int(t % 3 == 0)},{int(t % 3 == 0)},{t % 5}" for t in range(1, 41)]
    path.write_text("months,status,marker,grade\n" + "\n".join(rows) + "\n")
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    base = ["--data", str(path), "--time", "months", "--event", "status"]
    runs = [
        [
            *["fit", *base, "--covariates", "grade", "--times", "0,12", "--sampler", "pymc"],
            *["--draws", "30", "--tune", "30", "--chains", "1", "--out", str(tmp_path / "f.nc")],
        ],
        ["check", *base, "--covariates", "marker,grade", "--group", "marker", "--times", "0,5"],
        ["diagnose", "--fit", str(tmp_path / "f.nc")],
        ["report", "--fit", str(tmp_path / "f.nc"), "--out-dir", str(tmp_path / "page")],
    ]
    for argv in runs:
        proc = subprocess.run(
            [sys.executable, "-m", "analysis.cli", *argv],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=600,
        )
        assert proc.returncode in (0, 3), proc.stderr[-2000:]
        for line in proc.stderr.splitlines():
            assert line.startswith(("vlms ", "wrote ")), (argv[0], proc.stderr[-2000:])


def test_a_stalled_parallel_stage_is_one_line_and_status_4(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``vlms diagnose`` whose workers stop progressing (here: they wait on nothing) fails after
    VLMS_STALL_SECONDS with one line and status 4, and leaves no worker behind."""
    import os
    import time

    from analysis.inference import diagnostics

    def hang(path, figures) -> None:
        (tmp_path / f"worker_{os.getpid()}").touch()
        time.sleep(600)

    (tmp_path / "fits").mkdir()
    for name in ("a", "b"):
        (tmp_path / "fits" / f"{name}.nc").touch()
    monkeypatch.setattr(diagnostics, "diagnose_fit", hang)
    monkeypatch.setenv("VLMS_STALL_SECONDS", "2")
    assert main(["diagnose", "--out-dir", str(tmp_path)]) == 4
    err = capsys.readouterr().err.strip()
    assert err.startswith("vlms diagnose: error: no progress for 2 s") and "\n" not in err
    for marker in tmp_path.glob("worker_*"):
        pid = int(marker.name.split("_")[1])
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not (tmp_path / "diagnostics.md").exists()
