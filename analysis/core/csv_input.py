"""Reading a user's CSV: every failure becomes a one-line ``VlmsInputError`` naming file,
column and row. Values from the file are never echoed (they may identify a patient)."""

from __future__ import annotations

import csv
import difflib
import io
import math
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.core import interrupt
from analysis.core.errors import VlmsInputError

MAX_ABS_VALUE = 1e9
"""Larger magnitudes are treated as data-entry errors (a month count of 1e12 is not a time)."""
MISSING_MARKERS = frozenset({"", "na", "n/a", "#n/a", "#na", "nan", "null", "."})
"""Cells that mean "missing" everywhere (compared case-insensitively, spaces stripped): empty,
``NA``, ``N/A``, ``#N/A`` (spreadsheets), ``NaN``, ``NULL`` and ``.`` (SAS)."""
SHOWN_COLUMNS = 12
"""A missing column's error lists at most this many header names."""


def read_csv(path: str | Path) -> pd.DataFrame:
    """Read a comma-separated file with a header row, all cells as strings.

    Raises
    ------
    VlmsInputError
        Missing or empty file, non-UTF-8 bytes, another delimiter, a ragged row,
        duplicate or empty column names, or no data rows.
    """
    name = str(path)
    p = Path(path)
    if not p.is_file():
        raise VlmsInputError("file not found", file=name)
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise VlmsInputError(
            f"not UTF-8 text (undecodable byte on line {line}); save the file as UTF-8",
            file=name,
            row=line - 1 if line > 1 else None,
        ) from None
    if not text.strip():
        raise VlmsInputError("the file is empty", file=name)
    rows = list(csv.reader(io.StringIO(text)))
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    header = [h.strip() for h in rows[0]]
    _check_header(header, name)
    if len(rows) == 1:
        raise VlmsInputError("the file has a header but no data rows", file=name)
    for i, row in enumerate(rows[1:], start=1):
        if len(row) != len(header):
            raise VlmsInputError(
                f"has {len(row)} fields where the header has {len(header)}", file=name, row=i
            )
    frame = pd.DataFrame([[c.strip() for c in r] for r in rows[1:]], columns=header, dtype=object)
    interrupt.hold("reading")
    return frame


def _check_header(header: list[str], name: str) -> None:
    if len(header) == 1:
        for sep, label in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe")):
            if sep in header[0]:
                raise VlmsInputError(
                    f"the header looks {label}-delimited; vlms reads comma-separated files",
                    file=name,
                )
    if any(h == "" for h in header):
        raise VlmsInputError(
            f"the header has an empty column name (field {header.index('') + 1})", file=name
        )
    seen: set[str] = set()
    for h in header:
        if h in seen:
            raise VlmsInputError("the header names this column twice", file=name, column=h)
        seen.add(h)


def require_columns(df: pd.DataFrame, columns: list[str], file: str) -> None:
    """Raise for the first of ``columns`` that the file lacks, naming the nearest header names."""
    header = [str(c) for c in df.columns]
    for col in columns:
        if col not in df.columns:
            raise VlmsInputError(
                f"no such column in the header; {nearest_columns(col, header)}",
                file=file,
                column=col,
            )


def nearest_columns(name: str, header: list[str]) -> str:
    """The header names closest to ``name`` (difflib; case ignored), or the header itself."""
    folded = {h.lower(): h for h in header}
    close = difflib.get_close_matches(name.lower(), list(folded), n=3, cutoff=0.5)
    if close:
        return "did you mean " + " or ".join(f"'{folded[c]}'" for c in close) + "?"
    shown = ", ".join(f"'{h}'" for h in header[:SHOWN_COLUMNS])
    more = f" and {len(header) - SHOWN_COLUMNS} more" if len(header) > SHOWN_COLUMNS else ""
    return f"the header has {shown}{more}"


def is_missing(cell: object) -> bool:
    """True for an empty cell or a conventional missing marker (:data:`MISSING_MARKERS`)."""
    if cell is None:
        return True
    if isinstance(cell, float) and math.isnan(cell):
        return True
    return str(cell).strip().lower() in MISSING_MARKERS


def numeric_column(
    df: pd.DataFrame,
    column: str,
    file: str,
    *,
    allow_missing: bool = False,
) -> np.ndarray:
    """Parse one column as finite floats, or raise naming the first bad row.

    Missing cells become NaN when ``allow_missing``; otherwise they are an error.
    """
    require_columns(df, [column], file)
    out = np.empty(len(df), dtype=float)
    for i, cell in enumerate(df[column].tolist(), start=1):
        if is_missing(cell):
            if not allow_missing:
                raise VlmsInputError("missing value", file=file, column=column, row=i)
            out[i - 1] = np.nan
            continue
        try:
            value = float(str(cell))
        except ValueError:
            raise VlmsInputError("not a number", file=file, column=column, row=i) from None
        if not math.isfinite(value) or abs(value) > MAX_ABS_VALUE:
            raise VlmsInputError(
                f"not a finite number of sensible size (|x| <= {MAX_ABS_VALUE:g})",
                file=file,
                column=column,
                row=i,
            )
        out[i - 1] = value
    return out
