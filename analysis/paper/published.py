"""The paper's numbers: load, validate and give typed access to ``data/published.toml``.

Every entry is a number as printed (with its unit and source); "None reported" is an explicit
missing value (``missing = true`` in the file, ``Entry.value is None`` here), never a zero.
Besides the entries, the file declares layout facts used by :mod:`analysis.paper.audit`: which rows
should add up (``relations``), which numbers repeat (``crosschecks``), two-group hazard ratios
(``contrasts``), survival rates by group (``rate_groups``), what the words claim (``claims``),
the names of one analysis (``terms``), pooled and type-specific medians, and the biomarker panel
with the markers whose hazard ratios were printed per end point (``marker_panels``). A malformed
file raises
:class:`~analysis.core.errors.VlmsInputError` naming the file and the key.

References to numbers inside the layout sections are strings: ``"key"`` (the entry's value),
``"key@denominator"`` (its denominator) or ``"@name"`` (a ``[[derived]]`` total minus parts).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from analysis.core.errors import VlmsInputError
from analysis.core.paths import project_path

DEFAULT_PATH = project_path("data/published.toml")

COUNT_UNITS = frozenset({"patients", "specimens"})
UNITS = COUNT_UNITS | {"years", "months", "proportion", "percent", "hazard_ratio", "p_value"}
INTERVALS = frozenset({"ci95", "range"})
ENTRY_FIELDS = frozenset(
    {
        "value",
        "missing",
        "unit",
        "source",
        "lower",
        "upper",
        "interval",
        "p",
        "denominator",
        "percent",
        "decimals",
        "context",
        "note",
    }
)
LAYOUT_SECTIONS = (
    "relations",
    "crosschecks",
    "contrasts",
    "rate_groups",
    "derived",
    "claims",
    "terms",
    "pooled_medians",
    "type_medians",
    "marker_panels",
)
RELATION_KINDS = frozenset({"sum", "each_at_most", "denominators_within"})
DIRECTIONS = frozenset({"higher_hazard", "lower_hazard"})


class UnknownKeyError(VlmsInputError, KeyError):
    """A key that is not in the file (both a ``VlmsInputError`` and a ``KeyError``)."""


@dataclass(frozen=True)
class Entry:
    """One number as printed in the paper.

    ``value`` is ``None`` for an explicit missing value ("None reported", empty cell).
    ``lower``/``upper`` are a 95% CI (``interval == "ci95"``) or a range (``"range"``).
    ``decimals`` is the number of decimals printed (in the stored unit); ``None`` means "as the
    stored number shows", see :meth:`digits`.
    """

    key: str
    value: float | int | None
    unit: str
    source: str
    lower: float | None = None
    upper: float | None = None
    p: float | None = None
    denominator: int | None = None
    percent: float | None = None
    note: str | None = None
    interval: str | None = None
    decimals: int | None = None
    context: bool = False

    @property
    def missing(self) -> bool:
        """True when the paper reports no value here."""
        return self.value is None

    def digits(self, field_name: str = "value") -> int:
        """Decimals printed for ``field_name`` (``value``, ``lower``, ``upper``, ``p``, ...)."""
        number = getattr(self, field_name)
        if number is None:
            raise ValueError(f"{self.key}: no {field_name}")
        if self.decimals is not None and field_name in ("value", "lower", "upper"):
            return max(self.decimals, decimals_shown(number))
        return decimals_shown(number)

    def bounds(self, field_name: str = "value") -> tuple[float, float]:
        """The interval of true numbers that print as this field (round half either way)."""
        number = getattr(self, field_name)
        if number is None:
            raise ValueError(f"{self.key}: no {field_name}")
        half = 0.5 * 10.0 ** (-self.digits(field_name))
        return float(number) - half, float(number) + half


def decimals_shown(number: float | int) -> int:
    """Decimals of a number as written (``0.97`` -> 2, ``58`` -> 0, ``29.3`` -> 1)."""
    if isinstance(number, int):
        return 0
    exponent = Decimal(repr(float(number))).as_tuple().exponent  # "2.0" -> 1, "0.97" -> 2
    return max(0, -int(exponent))


@dataclass(frozen=True)
class Published:
    """All entries of the file, by key, and the layout sections (plain dicts, validated)."""

    path: Path
    entries: dict[str, Entry]
    layout: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def get(self, key: str) -> Entry:
        """The entry for ``key``; an unknown key raises :class:`UnknownKeyError`."""
        try:
            return self.entries[key]
        except KeyError:
            near = [k for k in self.entries if k.startswith(key.rsplit(".", 1)[0] + ".")][:5]
            hint = f" (keys nearby: {', '.join(near)})" if near else ""
            raise UnknownKeyError(f"no key '{key}'{hint}", file=str(self.path)) from None

    def value(self, key: str) -> float | int | None:
        """The printed value of ``key`` (``None`` when the paper reports none)."""
        return self.get(key).value

    def keys(self, prefix: str = "") -> list[str]:
        """Keys starting with ``prefix``, in file order."""
        return [k for k in self.entries if k.startswith(prefix)]

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def section(self, name: str) -> list[dict[str, Any]]:
        """A layout section (``relations``, ``crosschecks``, ...); empty if absent."""
        return self.layout.get(name, [])

    def resolve(self, ref: str) -> float | int | None:
        """The number a reference names: ``key``, ``key@denominator`` or ``@derived``."""
        if ref.startswith("@"):
            for item in self.section("derived"):
                if item["name"] == ref:
                    total = self.resolve(item["total"])
                    minus = [self.resolve(r) for r in item.get("minus", [])]
                    if total is None or any(m is None for m in minus):
                        return None
                    return total - sum(minus)  # type: ignore[operator]
            raise UnknownKeyError(f"no derived quantity '{ref}'", file=str(self.path))
        key, _, attr = ref.partition("@")
        entry = self.get(key)
        return getattr(entry, attr) if attr else entry.value

    def ref_keys(self, ref: str) -> list[str]:
        """The entry keys a reference depends on."""
        if ref.startswith("@"):
            for item in self.section("derived"):
                if item["name"] == ref:
                    keys = self.ref_keys(item["total"])
                    for r in item.get("minus", []):
                        keys += self.ref_keys(r)
                    return keys
            return []
        return [ref.partition("@")[0]]

    def ref_source(self, ref: str) -> str:
        """Where a reference's number is printed."""
        return "; ".join(self.get(k).source for k in self.ref_keys(ref))


# ---------------------------------------------------------------------------------------------
# loading and validation
# ---------------------------------------------------------------------------------------------


def load_published(path: str | Path = DEFAULT_PATH) -> Published:
    """Read and validate the published numbers.

    Raises
    ------
    VlmsInputError
        Unreadable TOML, an unknown field, a wrong type or range, a count above its
        denominator, or a layout section referring to a key that does not exist.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise VlmsInputError("file not found", file=str(path)) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise VlmsInputError(f"not valid TOML: {exc}", file=str(path)) from None
    entries: dict[str, Entry] = {}
    for key, table in _walk(raw, "", path):
        entries[key] = _entry(key, table, path)
    if not entries:
        raise VlmsInputError("no entries found", file=str(path))
    layout = {name: _layout_list(raw, name, path) for name in LAYOUT_SECTIONS}
    published = Published(path=path, entries=entries, layout=layout)
    _validate_layout(published)
    return published


def _fail(path: Path, key: str, message: str) -> VlmsInputError:
    return VlmsInputError(f"key '{key}': {message}", file=str(path))


def _walk(table: dict[str, Any], prefix: str, path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, item in table.items():
        if not prefix and name in LAYOUT_SECTIONS:
            continue
        key = f"{prefix}{name}"
        if not isinstance(item, dict):
            raise _fail(path, key, "expected an entry table with 'value' (or 'missing = true')")
        if {"value", "missing", "unit", "source"} & set(item):
            yield key, item  # an entry; anything else is a namespace of entries
        elif not item:
            raise _fail(path, key, "empty table")
        else:
            yield from _walk(item, key + ".", path)


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _number(path: Path, key: str, table: dict[str, Any], name: str) -> float | int | None:
    x = table.get(name)
    if x is None:
        return None
    if not _is_number(x):
        raise _fail(path, key, f"'{name}' must be a finite number, got {type(x).__name__}")
    return x


def _entry(key: str, table: dict[str, Any], path: Path) -> Entry:
    unknown = sorted(set(table) - ENTRY_FIELDS)
    if unknown:
        raise _fail(path, key, f"unknown field(s) {', '.join(unknown)}")
    missing = table.get("missing", False)
    if not isinstance(missing, bool):
        raise _fail(path, key, "'missing' must be true or false")
    if missing and "value" in table:
        raise _fail(path, key, "has both 'value' and 'missing = true'")
    if not missing and "value" not in table:
        raise _fail(path, key, "no 'value' (write 'missing = true' for 'None reported')")
    unit = table.get("unit")
    if unit not in UNITS:
        raise _fail(path, key, f"'unit' must be one of {', '.join(sorted(UNITS))}, got {unit!r}")
    source = table.get("source")
    if not isinstance(source, str) or not source.strip():
        raise _fail(path, key, "'source' (table and row, or section) is required")
    for text_field in ("note", "interval"):
        if text_field in table and not isinstance(table[text_field], str):
            raise _fail(path, key, f"'{text_field}' must be a string")
    context = table.get("context", False)
    if not isinstance(context, bool):
        raise _fail(path, key, "'context' must be true or false")
    decimals = table.get("decimals")
    if decimals is not None and (not isinstance(decimals, int) or isinstance(decimals, bool)):
        raise _fail(path, key, "'decimals' must be a whole number")
    if decimals is not None and not 0 <= decimals <= 6:
        raise _fail(path, key, "'decimals' must be between 0 and 6")
    values = {n: _number(path, key, table, n) for n in ("value", "lower", "upper", "p", "percent")}
    denominator = table.get("denominator")
    entry = Entry(
        key=key,
        value=values["value"],
        unit=unit,
        source=source.strip(),
        lower=values["lower"],
        upper=values["upper"],
        p=values["p"],
        denominator=denominator,
        percent=values["percent"],
        note=table.get("note"),
        interval=table.get("interval"),
        decimals=decimals,
        context=context,
    )
    _check_ranges(entry, path)
    return entry


def _check_ranges(e: Entry, path: Path) -> None:
    v = e.value
    if e.unit in COUNT_UNITS:
        if v is not None and (not isinstance(v, int) or v < 0):
            raise _fail(path, e.key, f"a count ({e.unit}) must be a whole number >= 0")
    elif e.denominator is not None:
        raise _fail(path, e.key, f"'denominator' only goes with counts, not {e.unit}")
    if e.denominator is not None:
        if not isinstance(e.denominator, int) or isinstance(e.denominator, bool):
            raise _fail(path, e.key, "'denominator' must be a whole number")
        if e.denominator <= 0:
            raise _fail(path, e.key, "'denominator' must be > 0")
        if v is not None and v > e.denominator:
            raise _fail(path, e.key, f"count {v} exceeds its denominator {e.denominator}")
    if e.percent is not None and not 0 <= e.percent <= 100:
        raise _fail(path, e.key, "'percent' must be between 0 and 100")
    if e.unit in ("proportion", "p_value") and v is not None and not 0 <= v <= 1:
        raise _fail(path, e.key, f"a {e.unit} must be between 0 and 1 (write 96% as 0.96)")
    if e.unit == "percent" and v is not None and not 0 <= v <= 100:
        raise _fail(path, e.key, "a percent must be between 0 and 100")
    if e.unit in ("years", "months") and v is not None and v < 0:
        raise _fail(path, e.key, "a time must be >= 0")
    if e.p is not None and not 0 <= e.p <= 1:
        raise _fail(path, e.key, "'p' must be between 0 and 1")
    has_bounds = e.lower is not None or e.upper is not None
    if has_bounds and (e.lower is None or e.upper is None):
        raise _fail(path, e.key, "give both 'lower' and 'upper'")
    if has_bounds and e.interval not in INTERVALS:
        raise _fail(path, e.key, "'lower'/'upper' need interval = \"ci95\" or \"range\"")
    if e.interval is not None and not has_bounds:
        raise _fail(path, e.key, "'interval' without 'lower'/'upper'")
    if has_bounds and not e.lower <= e.upper:  # type: ignore[operator]
        raise _fail(path, e.key, "'lower' is above 'upper'")
    if has_bounds and v is not None and not e.lower <= v <= e.upper:  # type: ignore[operator]
        raise _fail(path, e.key, "value lies outside its interval")
    if e.unit == "hazard_ratio":
        if v is not None and v <= 0:
            raise _fail(path, e.key, "a hazard ratio must be > 0")
        if has_bounds and (e.interval != "ci95" or e.lower <= 0):  # type: ignore[operator]
            raise _fail(path, e.key, "a hazard ratio's interval must be a ci95 with lower > 0")


def _layout_list(raw: dict[str, Any], name: str, path: Path) -> list[dict[str, Any]]:
    items = raw.get(name, [])
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise VlmsInputError(f"'{name}' must be an array of tables ([[{name}]])", file=str(path))
    return items


def _validate_layout(pub: Published) -> None:
    path = pub.path
    derived = {d.get("name") for d in pub.section("derived")}

    def where(section: str, i: int) -> str:
        return f"{section}[{i}]"

    def check_ref(section: str, i: int, ref: object, *, numeric: bool = True) -> None:
        if not isinstance(ref, str):
            raise _fail(path, where(section, i), f"reference must be a string, got {ref!r}")
        if ref.startswith("@"):
            if ref not in derived:
                raise _fail(path, where(section, i), f"unknown derived quantity '{ref}'")
            return
        key, _, attr = ref.partition("@")
        if key not in pub.entries:
            raise _fail(path, where(section, i), f"refers to unknown key '{key}'")
        if attr and attr not in ("denominator", "value"):
            raise _fail(path, where(section, i), f"unknown field '@{attr}' in '{ref}'")
        if numeric and attr == "denominator" and pub.entries[key].denominator is None:
            raise _fail(path, where(section, i), f"'{key}' has no denominator")

    def check_refs(section: str, i: int, refs: object) -> None:
        if not isinstance(refs, list) or not refs:
            raise _fail(path, where(section, i), "expected a non-empty list of keys")
        for r in refs:
            check_ref(section, i, r)

    for i, d in enumerate(pub.section("derived")):
        if not str(d.get("name", "")).startswith("@"):
            raise _fail(path, where("derived", i), "'name' must start with '@'")
        check_ref("derived", i, d.get("total"))
        check_refs("derived", i, d.get("minus", []))
    for i, r in enumerate(pub.section("relations")):
        kind = r.get("kind")
        if kind not in RELATION_KINDS:
            raise _fail(
                path, where("relations", i), f"'kind' must be one of {sorted(RELATION_KINDS)}"
            )
        check_ref("relations", i, r.get("total"))
        if kind == "denominators_within":
            if not isinstance(r.get("prefix"), str):
                raise _fail(path, where("relations", i), "'prefix' is required")
        else:
            check_refs("relations", i, r.get("parts"))
        if r.get("subtract"):
            check_refs("relations", i, r["subtract"])
    for i, c in enumerate(pub.section("crosschecks")):
        check_ref("crosschecks", i, c.get("a"))
        b = c.get("b")
        check_refs("crosschecks", i, b if isinstance(b, list) else [b])
    for i, c in enumerate(pub.section("contrasts")):
        check_ref("contrasts", i, c.get("hr"))
        if pub.entries[c["hr"]].unit != "hazard_ratio":
            raise _fail(path, where("contrasts", i), f"'{c['hr']}' is not a hazard ratio")
        for name in ("n", "medians"):
            check_refs("contrasts", i, c.get(name))
            if len(c[name]) != 2:
                raise _fail(path, where("contrasts", i), f"'{name}' needs [reference, exposed]")
        if "followup" in c:
            check_ref("contrasts", i, c["followup"])
        for tot in c.get("event_totals", []):
            if not isinstance(tot, dict) or not isinstance(tot.get("label"), str):
                raise _fail(path, where("contrasts", i), "event_totals need 'label' and 'keys'")
            check_refs("contrasts", i, tot.get("keys"))
    for i, g in enumerate(pub.section("rate_groups")):
        check_refs("rate_groups", i, g.get("rates"))
        check_refs("rate_groups", i, g.get("groups"))
        if len(g["rates"]) != len(g["groups"]):
            raise _fail(path, where("rate_groups", i), "'rates' and 'groups' differ in length")
    for i, c in enumerate(pub.section("claims")):
        if c.get("kind", "hr") == "hr":
            check_ref("claims", i, c.get("key"))
            if c.get("direction") not in DIRECTIONS:
                raise _fail(
                    path, where("claims", i), f"'direction' must be one of {sorted(DIRECTIONS)}"
                )
        elif c.get("kind") == "less":
            check_ref("claims", i, c.get("a"))
            check_ref("claims", i, c.get("b"))
        else:
            raise _fail(path, where("claims", i), "'kind' must be 'hr' or 'less'")
    for i, t in enumerate(pub.section("terms")):
        uses = t.get("uses")
        if not isinstance(uses, list) or not all(
            isinstance(u, dict) and isinstance(u.get("term"), str) for u in uses
        ):
            raise _fail(path, where("terms", i), "'uses' must list {source, term} tables")
    for i, m in enumerate(pub.section("marker_panels")):
        _check_marker_panel(pub, i, m, check_ref)
    for section in ("pooled_medians", "type_medians"):
        for i, m in enumerate(pub.section(section)):
            check_refs(section, i, m.get("medians"))
            check_refs(section, i, m.get("n"))
            if len(m["medians"]) != len(m["n"]):
                raise _fail(path, where(section, i), "'medians' and 'n' differ in length")
            check_ref(
                section, i, m.get("total") if section == "pooled_medians" else m.get("cohort")
            )


def _check_marker_panel(pub: Published, i: int, panel: dict[str, Any], check_ref: Any) -> None:
    """A panel: unique marker names, and per end point the reported markers (among them) with
    the key of their hazard ratio (an entry with a 95% CI)."""
    where = f"marker_panels[{i}]"
    markers = panel.get("markers")
    if (
        not isinstance(markers, list)
        or len(markers) < 2
        or not all(isinstance(m, str) and m for m in markers)
    ):
        raise _fail(pub.path, where, "'markers' must list at least two marker names")
    if len(set(markers)) != len(markers):
        raise _fail(pub.path, where, "'markers' names a marker twice")
    reported = panel.get("reported")
    if not isinstance(reported, dict) or not reported:
        raise _fail(pub.path, where, "'reported' must map end points to {marker = key}")
    for endpoint, chosen in reported.items():
        if not isinstance(chosen, dict) or not chosen:
            raise _fail(pub.path, where, f"'reported.{endpoint}' must map markers to keys")
        for marker, key in chosen.items():
            if marker not in markers:
                raise _fail(pub.path, where, f"reported marker '{marker}' is not in 'markers'")
            check_ref("marker_panels", i, key)
            entry = pub.entries[key]
            if entry.unit != "hazard_ratio" or entry.lower is None or entry.value is None:
                raise _fail(pub.path, where, f"'{key}' is not a hazard ratio with a 95% CI")
