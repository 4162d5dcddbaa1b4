"""One error type for bad input, rendered as a single line that names file, column and row."""

from __future__ import annotations


class VlmsInputError(Exception):
    """Bad user input: a file, a column or a row that cannot be used.

    Parameters
    ----------
    message
        What is wrong, without echoing any patient's values or identifiers.
    file, column, row
        Where. ``row`` is the 1-based data row (the header is not counted);
        the message also gives the file line (``row + 1``).
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        column: str | None = None,
        row: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.column = column
        self.row = row

    def __str__(self) -> str:
        where = []
        if self.file is not None:
            where.append(str(self.file))
        if self.column is not None:
            where.append(f"column '{self.column}'")
        if self.row is not None:
            where.append(f"row {self.row} (line {self.row + 1})")
        prefix = ", ".join(where)
        text = f"{prefix}: {self.message}" if prefix else self.message
        return " ".join(text.split())  # always one line
