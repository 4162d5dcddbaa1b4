"""A survival table from a user's CSV: the one reader of ``vlms check --data`` and
``vlms fit --data``, so both commands accept and refuse the same files.

Rules (each failure is a one-line :class:`VlmsInputError` naming file, column and row, never a
cell's value):

* **time**: a number greater than 0 in every row. A time of 0 has no time at risk (a Poisson
  model cannot hold an event there, and the Kaplan-Meier curve starts below 1): drop the row,
  or give it a small positive time.
* **event**: 0 = censored, 1 = event; with ``competing``, 0 = censored and 1..9 = the cause.
  Text (``dead``/``alive``), ``True``/``False``, R's ``Surv()`` coding 1/2 and codes 0..K
  without ``competing`` are refused with a message that names the coding expected and how to
  recode.
* **covariates and group**: a missing cell (:data:`analysis.core.csv_input.MISSING_MARKERS`)
  drops the row from every analysis; the drops are counted per column and stated in the output.
  With ``missing="impute"`` (``vlms fit``'s default) rows with an unknown covariate are kept
  (NaN) for the model to marginalise when the covariate is 0/1 where known; rows missing a
  covariate that is not 0/1 are dropped, and a note says so.
* **causes**: with ``competing``, each cause keeps its code; codes that skip a number (0/1/3)
  are accepted and a note says which codes have no rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.core.csv_input import is_missing, numeric_column, read_csv, require_columns
from analysis.core.errors import VlmsInputError

MAX_CAUSE = 9
"""With ``competing`` the event codes are 0 (censored) and 1..MAX_CAUSE."""
TRUE_FALSE = frozenset({"true", "false", "t", "f", "yes", "no", "y", "n"})
"""Cells read as a yes/no event coding (case ignored)."""
EVENT_CODING = "0 = censored, 1 = event"
CAUSE_CODING = "0 = censored, 1..K = the cause of the event"


@dataclass(frozen=True)
class SurvivalTable:
    """The complete rows of a user's survival table.

    Attributes
    ----------
    file, time_column, event_column
        Where the data came from.
    time, event
        Follow-up (> 0) and event codes (0 censored; 1, or the user's cause codes 1..9).
    covariates
        Numeric covariate columns (complete rows only).
    group_column, group
        The ``--group`` column and its levels as text (complete rows only), or ``None``.
    competing
        Whether the event codes are causes.
    n_read
        Data rows in the file.
    dropped
        Per column, the rows whose cell in that column is missing (a row missing two columns
        counts in both); the rows dropped in all are ``n_read - n``.
    imputed
        With ``missing="impute"``: per covariate, the unknown values kept for the model to
        marginalise (NaN in ``covariates``); empty otherwise.
    """

    file: str
    time_column: str
    event_column: str
    time: np.ndarray
    event: np.ndarray
    covariates: dict[str, np.ndarray]
    group_column: str | None = None
    group: np.ndarray | None = None
    competing: bool = False
    n_read: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    imputed: dict[str, int] = field(default_factory=dict)
    not_imputable: tuple[str, ...] = ()
    """With ``missing="impute"``: covariates with missing values that are not 0/1, whose
    incomplete rows were dropped."""

    @property
    def n(self) -> int:
        return int(self.time.size)

    @property
    def n_dropped(self) -> int:
        return self.n_read - self.n

    @property
    def causes(self) -> tuple[int, ...]:
        """The event codes that occur (1..K where every code has rows)."""
        return tuple(int(k) for k in np.unique(self.event[self.event > 0]))

    def notes(self) -> list[str]:
        """What the reader did to the data, in words (printed and saved by both commands)."""
        out = [dropped_note(self.n_read, self.n_dropped, self.dropped)]
        if any(self.imputed.values()):
            per = ", ".join(f"{c}: {k}" for c, k in self.imputed.items() if k)
            out.append(
                f"unknown covariate values imputed inside the model, not dropped ({per}); "
                "--missing drop analyses the complete rows only"
            )
        if self.not_imputable:
            out.append(
                f"{', '.join(self.not_imputable)}: not 0/1, so rows missing it are dropped "
                "(only 0/1 covariates are imputed)"
            )
        if self.competing:
            skipped = [k for k in range(1, max(self.causes) + 1) if k not in self.causes]
            found = ", ".join(map(str, self.causes))
            if skipped:
                out.append(
                    f"cause codes found: {found} (no analysed row is coded "
                    f"{', '.join(map(str, skipped))}); each cause keeps its code"
                )
        return out


def dropped_note(n_read: int, n_dropped: int, dropped: dict[str, int]) -> str:
    """``"432 rows read, 0 dropped"`` or which columns' missing values dropped how many."""
    if not n_dropped:
        return f"{n_read} rows read, none dropped"
    per = ", ".join(f"{c}: {k}" for c, k in dropped.items() if k)
    return (
        f"{n_read} rows read, {n_dropped} dropped for a missing value ({per}); "
        f"{n_read - n_dropped} analysed"
    )


def load_survival_table(
    path: str | Path,
    *,
    time: str | None,
    event: str | None,
    covariates: list[str] | tuple[str, ...] = (),
    group: str | None = None,
    competing: bool = False,
    missing: str = "drop",
) -> SurvivalTable:
    """Read and validate a survival table; raise ``VlmsInputError`` at the first problem.

    ``missing``: ``"drop"`` (complete rows) or ``"impute"`` (rows with an unknown 0/1
    covariate kept, NaN where unknown; rows missing a covariate that is not 0/1 are dropped
    and the notes say so)."""
    file = str(path)
    if not time or not event:
        raise VlmsInputError("--time and --event are required with --data", file=file)
    names = list(covariates)
    if len(set(names)) != len(names):
        raise VlmsInputError("--covariates names a column twice", file=file)
    if time in names or event in names:
        raise VlmsInputError("--covariates must not include the time or event column", file=file)
    df = read_csv(path)
    require_columns(df, [time, event, *([group] if group else []), *names], file)
    t = time_column(df, time, file)
    e = event_codes(df, event, file, competing)
    covs = {c: numeric_column(df, c, file, allow_missing=True) for c in names}
    imputed = (
        {c: np.isnan(x) for c, x in covs.items() if _is_binary(x)} if missing == "impute" else {}
    )
    not_imputable = tuple(
        c for c, x in covs.items() if missing == "impute" and c not in imputed and np.isnan(x).any()
    )
    missing = {c: np.isnan(x) for c, x in covs.items() if c not in imputed}
    levels = None
    if group:
        cells = df[group].tolist()
        missing[group] = np.array([is_missing(c) for c in cells], dtype=bool)
        levels = np.array([str(c).strip() for c in cells], dtype=object)
    keep = ~np.any(np.vstack([np.zeros(t.size, bool), *missing.values()]), axis=0)
    if not keep.any():
        raise VlmsInputError(
            "every row has a missing value in --covariates or --group: nothing left to analyse",
            file=file,
        )
    if not (e[keep] > 0).any():
        raise VlmsInputError(
            f"no events among the analysed rows (every code is 0; expected {EVENT_CODING}): "
            "nothing to estimate",
            file=file,
            column=event,
        )
    for c, x in covs.items():
        kept = x[keep & ~np.isnan(x)]
        if kept.size == 0 or np.all(kept == kept[0]):
            raise VlmsInputError(
                "takes a single value in the analysed rows (where known); no hazard ratio can "
                "be estimated",
                file=file,
                column=c,
            )
    if levels is not None and len(set(levels[keep].tolist())) < 2:
        raise VlmsInputError(
            "has a single level in the analysed rows; --group needs at least two",
            file=file,
            column=group,
        )
    return SurvivalTable(
        file=file,
        time_column=time,
        event_column=event,
        time=t[keep],
        event=e[keep],
        covariates={c: x[keep] for c, x in covs.items()},
        group_column=group,
        group=None if levels is None else levels[keep],
        competing=competing,
        n_read=int(t.size),
        dropped={c: int(m.sum()) for c, m in missing.items()},
        imputed={c: int(m[keep].sum()) for c, m in imputed.items()},
        not_imputable=not_imputable,
    )


def _is_binary(values: np.ndarray) -> bool:
    """Whether the known values are 0/1 (what ``missing="impute"`` can impute)."""
    known = values[~np.isnan(values)]
    return bool(np.all(np.isin(known, (0.0, 1.0))))


def time_column(df: pd.DataFrame, column: str, file: str) -> np.ndarray:
    """Follow-up times: numbers greater than 0 in every row (one rule for check and fit)."""
    values = numeric_column(df, column, file)
    bad = np.flatnonzero(values <= 0)
    if bad.size:
        raise VlmsInputError(
            "must be greater than 0: a time of 0 or less has no time at risk; drop the row, or "
            "if the event happened at entry give it a small positive time (e.g. half a day)",
            file=file,
            column=column,
            row=int(bad[0]) + 1,
        )
    return values


def event_codes(df: pd.DataFrame, column: str, file: str, competing: bool) -> np.ndarray:
    """Event codes (0/1, or 0..9 with ``competing``) with messages that say how to recode."""
    cells = df[column].tolist()
    text = [i for i, c in enumerate(cells, start=1) if not is_missing(c) and not _is_number(c)]
    if text:
        _refuse_text(cells, text[0], column, file, competing)
    values = numeric_column(df, column, file)
    expected = CAUSE_CODING if competing else EVENT_CODING
    for i, v in enumerate(values, start=1):
        if v != int(v):
            raise VlmsInputError(
                f"event code is not a whole number (expected {expected})",
                file=file,
                column=column,
                row=i,
            )
    codes = values.astype(int)
    allowed = set(range(MAX_CAUSE + 1)) if competing else {0, 1}
    outside = np.flatnonzero(~np.isin(codes, list(allowed)))
    if outside.size:
        row = int(outside[0]) + 1
        shown = "0..9" if competing else "0, 1"
        hint = "" if competing else _coding_hint(sorted(set(codes.tolist())))
        raise VlmsInputError(
            f"event code outside the allowed set {{{shown}}} ({expected}){hint}",
            file=file,
            column=column,
            row=row,
        )
    return codes


def _coding_hint(found: list[int]) -> str:
    """Why a 0/1 event column holds other codes, and how to fix it."""
    listed = ", ".join(map(str, found[:10])) + (", ..." if len(found) > 10 else "")
    if set(found) <= {1, 2}:
        return (
            f"; codes found: {listed}: this looks like R's Surv() coding (1 = censored, "
            "2 = event): subtract 1 from the column (or add --competing if 1 and 2 are causes)"
        )
    if min(found) >= 0 and max(found) <= MAX_CAUSE:
        return (
            f"; codes found: {listed}: several kinds of event? add --competing "
            "(0 = censored, 1..K = cause), or recode to 0/1"
        )
    return f"; codes found: {listed}"


def _refuse_text(cells: list, row: int, column: str, file: str, competing: bool) -> None:
    words = {str(c).strip().lower() for c in cells if not is_missing(c) and not _is_number(c)}
    col = column
    if words <= TRUE_FALSE:
        message = (
            "holds True/False (or yes/no) values where vlms expects numeric codes "
            f"({EVENT_CODING}): recode True as 1 and False as 0, e.g. R: "
            f'd${col} <- as.integer(d${col}); pandas: d["{col}"] = d["{col}"].astype(int)'
        )
    elif competing:
        message = (
            f"holds text where vlms expects numeric codes ({CAUSE_CODING}): give each cause a "
            "number, e.g. pandas: "
            f'd["{col}"] = d["{col}"].map({{"censored": 0, "local": 1, "distant": 2}})'
        )
    else:
        message = (
            "holds text (such as dead/alive) where vlms expects numeric codes "
            f'({EVENT_CODING}): recode, e.g. R: d${col} <- as.integer(d${col} == "dead"); '
            f'pandas: d["{col}"] = (d["{col}"] == "dead").astype(int)'
        )
    raise VlmsInputError(message, file=file, column=column, row=row)


def _is_number(cell: object) -> bool:
    try:
        float(str(cell))
    except ValueError:
        return False
    return True


def report_times(times: list[float] | None, file: str) -> list[float] | None:
    """``--times``, sorted and unique: finite and not negative (0 is allowed: S(0) = 1)."""
    if times is None:
        return None
    if any(not np.isfinite(t) or t < 0 for t in times):
        raise VlmsInputError("--times must be finite and not negative", file=file)
    return sorted(set(float(t) for t in times))
