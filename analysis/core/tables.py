"""Small shared helpers for tables: markdown rendering and JSON-safe values."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def markdown_table(display: list[dict[str, str]]) -> str:
    """A GitHub-markdown table of display rows."""
    if not display:
        return "(no rows)\n"
    cols = list(display[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(r[c].replace("|", "/") for c in cols) + " |" for r in display]
    return "\n".join(lines) + "\n"


def json_safe(obj: Any) -> Any:
    """``obj`` with NumPy scalars as Python numbers, infinities as ``"inf"``/``"-inf"`` and
    dict keys as strings, so that it can be written as strict JSON."""
    if isinstance(obj, float) and math.isinf(obj):
        return "inf" if obj > 0 else "-inf"
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def write_table_files(
    folder: Path, stem: str, rows: pd.DataFrame, markdown: str, doc: dict[str, Any]
) -> None:
    """``<folder>/<stem>.csv`` (the rows), ``.md`` and ``.json`` (``doc``, made JSON-safe), each
    written atomically."""
    from analysis.core.atomic import write_json, write_text

    write_text(Path(folder) / f"{stem}.csv", rows.to_csv(index=False))
    write_text(Path(folder) / f"{stem}.md", markdown)
    write_json(Path(folder) / f"{stem}.json", json_safe(doc))
