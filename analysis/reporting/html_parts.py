"""Building blocks of the report's HTML: where the inputs are, escaping, embedded images,
tables and the "not available" placeholder (shared by :mod:`analysis.reporting.html` and the
sections in their own modules)."""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Inputs:
    """Paths of everything the page reads, relative to the reports directory."""

    root: Path

    def path(self, rel: str) -> Path:
        return self.root / rel

    def json(self, rel: str) -> Any | None:
        p = self.path(rel)
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None


def esc(value: Any) -> str:
    """HTML-escaped text of any value."""
    return html.escape(str(value), quote=True)


def missing(what: str, command: str) -> str:
    """The visible placeholder for an absent input."""
    return f'<p class="missing">Not available: {esc(what)}. Run <code>{esc(command)}</code>.</p>'


def image(inputs: Inputs, rel: str, alt: str, caption: str = "", command: str = "") -> str:
    """An embedded PNG (base64 data URI) with a caption, or the missing placeholder."""
    p = inputs.path(rel)
    if not p.is_file():
        return missing(f"figure {rel}", command or "vlms compare")
    data = base64.b64encode(p.read_bytes()).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="data:image/png;base64,{data}" alt="{esc(alt)}">{cap}</figure>'


def table(
    header: list[str], rows: list[list[Any]], bad: list[bool] | None = None, flag: str = "bad"
) -> str:
    """An HTML table; rows flagged in ``bad`` get the CSS class ``flag`` (red for "bad")."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for i, r in enumerate(rows):
        cls = f' class="{flag}"' if bad and bad[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
