"""The package layout: data flows one way and nothing imports in a circle.

Every import in ``analysis/`` and ``models/`` (module level and inside functions) is read with
:mod:`ast`; a stage may import only the stages its ``__init__`` docstring names, and the module
graph has no cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "paper": {"core"},
    "cohort": {"core"},
    "frequentist": {"core", "paper", "cohort"},
    "reconstruction": {"core", "paper", "cohort", "frequentist"},
    "inference": {"core", "cohort", "models"},
    "comparison": {"core", "paper", "cohort", "frequentist", "inference", "models"},
    "reporting": {"core", "paper", "cohort", "frequentist", "inference", "comparison", "models"},
    "validation": {
        "core", "paper", "cohort", "frequentist", "reconstruction", "inference", "models",
    },
    "cli": {"core"},
    "models": set(),
}  # fmt: skip
"""Stage -> the stages it may import (besides itself)."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def stage(module: str) -> str:
    """``analysis.inference.engine`` -> ``inference``; ``models.pem`` -> ``models``."""
    parts = module.split(".")
    if parts[0] == "models":
        return "models"
    return parts[1] if len(parts) > 1 else "analysis"


def imports_of(path: Path) -> set[str]:
    """Project modules imported anywhere in ``path`` (``from analysis import cohort`` counts as
    ``analysis.cohort``)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in out if m.split(".")[0] in ("analysis", "models")}


def project_graph() -> dict[str, set[str]]:
    files = sorted(
        [*ROOT.joinpath("analysis").rglob("*.py"), *ROOT.joinpath("models").rglob("*.py")]
    )
    modules = {module_name(f): f for f in files}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {m for m in imports_of(path) if m in modules and m != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the module graph (ignoring package ``__init__`` modules), or None."""
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if colour.get(nxt) is None and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        colour[node] = 2
        return None

    for node in sorted(graph):
        if colour.get(node) is None and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle() -> None:
    assert find_cycle(project_graph()) is None


def test_find_cycle_detects_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_stages_import_only_downward() -> None:
    graph = project_graph()
    bad = []
    for module, deps in graph.items():
        own = stage(module)
        if own == "analysis":
            continue
        for dep in deps:
            other = stage(dep)
            if other not in (own, "analysis") and other not in ALLOWED[own]:
                bad.append(f"{module} -> {dep}")
    assert not bad, "imports against the layout:\n" + "\n".join(sorted(bad))


def test_every_stage_is_a_documented_package() -> None:
    for name in ALLOWED:
        if name in ("cohort", "cli", "models"):
            continue
        init = ROOT / "analysis" / name / "__init__.py"
        assert init.is_file(), name
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and "import" in doc, f"{init}: docstring must say what the stage may import"


def test_models_know_no_files_and_no_cohort_columns() -> None:
    banned = ("beta_catenin", "igf1r", "followup_months", "published.toml", "cohort.csv", "open(")
    for path in ROOT.joinpath("models").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not [b for b in banned if b in text], path


@pytest.mark.parametrize("command", ["--help", "fit --help"])
def test_cli_does_not_load_pymc(command: str) -> None:
    code = (
        "import contextlib, io, sys\nfrom analysis import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    try:\n        cli.main({command.split()!r})\n    except SystemExit:\n        pass\n"
        "heavy = ('pymc', 'pytensor', 'arviz', 'nutpie', 'lifelines')\n"
        "heavy = [m for m in heavy if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported by `vlms {command}`: {out.stdout}"
