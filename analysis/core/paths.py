"""Default input paths, found from the installed project rather than the current directory."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
"""The project folder (``analysis/core/paths.py`` -> the folder that holds ``analysis/``)."""


def project_path(relative: str) -> Path:
    """``relative`` inside the project when it exists there (an editable or source install),
    else relative to the current directory (a wheel install ships no ``data/``)."""
    candidate = PROJECT_ROOT / relative
    return candidate if candidate.exists() else Path(relative)
