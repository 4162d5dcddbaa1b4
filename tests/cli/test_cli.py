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
