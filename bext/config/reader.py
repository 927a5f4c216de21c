"""Walking TOML tables with a key path, type checks and unknown-key detection.

`Table` wraps one TOML table and knows its key path (`upstreams.django.health`). Its typed
getters record a problem and return the default on a bad value (`server.port: expected
an integer, got "3000" (a string)`), so a walk never stops at the first mistake, and
`finish()` reports every key no getter asked for, with a suggestion for typos
(`server.prot: unknown key (did you mean "port"?)`). The section readers in `sections.py`
and `rules.py` are written against this, which keeps them to one line per setting.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, datetime, time
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from bext.config import values
from bext.config.errors import did_you_mean, quote
from bext.config.units import format_size, parse_byte_rate, parse_duration, parse_size

__all__ = [
    "MISSING",
    "Context",
    "Table",
    "checked",
    "header_table",
    "is_int",
    "key_repr",
    "named_tables",
    "show_value",
    "string_list",
]

_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_T = TypeVar("_T")


class _Missing:
    """Marks an absent key, since None is not a TOML value but may be a valid default."""


MISSING = _Missing()


def show_value(value: Any) -> str:
    """Describe a TOML value and its type, as in `"3000" (a string)`."""
    if isinstance(value, bool):
        return f"{'true' if value else 'false'} (a boolean)"
    if isinstance(value, int):
        return f"{value} (an integer)"
    if isinstance(value, float):
        return f"{value!r} (a float)"
    if isinstance(value, str):
        return f"{quote(value)} (a string)"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime | date | time):
        return f"{value.isoformat()} (a date/time)"
    return f"a {type(value).__name__}"


def key_repr(name: str) -> str:
    """Render a key for a path the way TOML would need it written."""
    return name if _BARE_KEY_RE.fullmatch(name) else quote(name)


def is_int(value: Any) -> bool:
    """TOML booleans are Python bools, which are ints; a `true` port is still a mistake."""
    return isinstance(value, int) and not isinstance(value, bool)


_EXPECTED = {
    "int": "an integer",
    "str": "a string",
    "bool": "true or false",
    "table": "a table",
    "array": "an array",
}


def _has_type(value: Any, kind: str) -> bool:
    if kind == "int":
        return is_int(value)
    if kind == "str":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "table":
        return isinstance(value, dict)
    return isinstance(value, list)


class Context:
    """What one parse accumulates: problems, warnings, and where relative paths start."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def error(self, path: str, reason: str) -> None:
        self.problems.append(f"{path}: {reason}")

    def warn(self, path: str, reason: str) -> None:
        self.warnings.append(f"{path}: {reason}")

    def expect(self, path: str, value: Any, kind: str) -> bool:
        """Check a value's TOML type, recording a problem (and returning False) if wrong."""
        if _has_type(value, kind):
            return True
        self.error(path, f"expected {_EXPECTED[kind]}, got {show_value(value)}")
        return False


class Table:
    """One TOML table being read: typed getters that record problems, and unknown-key checks.

    Every getter marks its key as known, so `finish()` can report whatever is left as a
    typo. Readers therefore call the getters for every key the table supports, even when
    an earlier problem makes the value moot, so suggestions cover the full vocabulary.
    """

    def __init__(self, ctx: Context, path: str, raw: Mapping[str, Any]) -> None:
        self.ctx = ctx
        self.path = path
        self.raw = raw
        self._known: list[str] = []

    def sub(self, key: str) -> str:
        """The key path of `key` inside this table."""
        return f"{self.path}.{key_repr(key)}" if self.path else key_repr(key)

    def has(self, key: str) -> bool:
        return key in self.raw

    def take(self, key: str) -> Any:
        """The raw value of `key` (or `MISSING`), marking the key as known."""
        if key not in self._known:
            self._known.append(key)
        return self.raw.get(key, MISSING)

    def finish(self, noun: str = "key") -> None:
        """Report every key that no getter asked for."""
        for key in self.raw:
            if key not in self._known:
                suggestion = did_you_mean(key, self._known)
                self.ctx.error(self.sub(key), f"unknown {noun}{suggestion}")

    def _typed(self, key: str, kind: str) -> Any:
        value = self.take(key)
        if value is MISSING or not self.ctx.expect(self.sub(key), value, kind):
            return MISSING
        return value

    def get_bool(self, key: str, default: bool) -> bool:
        value = self._typed(key, "bool")
        return default if value is MISSING else bool(value)

    def get_int(
        self, key: str, default: int, *, lo: int | None = None, hi: int | None = None
    ) -> int:
        value = self._typed(key, "int")
        if value is MISSING:
            return default
        if not self._in_range(key, value, lo, hi, str):
            return default
        return int(value)

    def get_str(self, key: str, default: str) -> str:
        value = self._typed(key, "str")
        return default if value is MISSING else str(value)

    def get_opt_str(self, key: str) -> str | None:
        value = self._typed(key, "str")
        return None if value is MISSING else str(value)

    def get_choice(self, key: str, default: str, choices: Sequence[str]) -> str:
        """One of a fixed set of strings, suggesting the closest on a typo."""
        value = self._typed(key, "str")
        if value is MISSING:
            return default
        if value not in choices:
            options = ", ".join(quote(choice) for choice in choices)
            self.ctx.error(
                self.sub(key),
                f"expected one of {options}, got {quote(value)}{did_you_mean(value, choices)}",
            )
            return default
        return str(value)

    def get_duration(self, key: str, default: float, *, positive: bool = False) -> float:
        """A duration in seconds; `positive` refuses 0 where it would mean "time out at once"."""
        value = self.take(key)
        if value is MISSING:
            return default
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.ctx.error(self.sub(key), str(exc))
            return default
        if positive and seconds <= 0:
            self.ctx.error(self.sub(key), f"must be greater than 0, got {show_value(value)}")
            return default
        return seconds

    def get_size(
        self, key: str, default: int, *, lo: int | None = None, hi: int | None = None
    ) -> int:
        """A size in bytes, range-checked with limits shown in KiB/MiB."""
        value = self.take(key)
        if value is MISSING:
            return default
        try:
            size = parse_size(value)
        except ValueError as exc:
            self.ctx.error(self.sub(key), str(exc))
            return default
        if not self._in_range(key, size, lo, hi, format_size):
            return default
        return size

    def get_byte_rate(self, key: str, default: int) -> int:
        """A transfer rate in bytes per second ("1KB/s"); 0 is allowed (off)."""
        value = self.take(key)
        if value is MISSING:
            return default
        try:
            return parse_byte_rate(value)
        except ValueError as exc:
            self.ctx.error(self.sub(key), str(exc))
            return default

    def get_path(self, key: str, base: Path) -> Path | None:
        """A path setting, resolved against `base` (see `values.resolve_path`); NUL and
        control characters are refused (`values.check_path_text`)."""
        value = self._typed(key, "str")
        if value is MISSING:
            return None
        if not value:
            self.ctx.error(self.sub(key), "must not be empty")
            return None
        try:
            return values.resolve_path(base, value)
        except ValueError as exc:
            self.ctx.error(self.sub(key), str(exc))
            return None

    def get_table(self, key: str, *, hint: str = "") -> Table:
        """The sub-table at `key`; empty (all defaults) when missing or of the wrong type."""
        value = self.take(key)
        if value is MISSING:
            return Table(self.ctx, self.sub(key), {})
        if not isinstance(value, dict):
            self.ctx.error(self.sub(key), f"expected a table{hint}, got {show_value(value)}")
            return Table(self.ctx, self.sub(key), {})
        return Table(self.ctx, self.sub(key), value)

    def _in_range(
        self, key: str, value: int, lo: int | None, hi: int | None, render: Callable[[int], str]
    ) -> bool:
        if lo is not None and hi is not None and not lo <= value <= hi:
            reason = f"must be between {render(lo)} and {render(hi)}, got {render(value)}"
        elif lo is not None and value < lo:
            reason = f"must be at least {render(lo)}, got {render(value)}"
        elif hi is not None and value > hi:
            reason = f"must be at most {render(hi)}, got {render(value)}"
        else:
            return True
        self.ctx.error(self.sub(key), reason)
        return False


def string_list(ctx: Context, path: str, value: Any) -> list[tuple[str, str]]:
    """A string or an array of strings, as (key path, string) pairs for per-item messages."""
    if isinstance(value, str):
        return [(path, value)]
    if not isinstance(value, list):
        ctx.error(path, f"expected a string or an array of strings, got {show_value(value)}")
        return []
    items: list[tuple[str, str]] = []
    for i, item in enumerate(value):
        if ctx.expect(f"{path}[{i}]", item, "str"):
            items.append((f"{path}[{i}]", item))
    return items


def header_table(
    t: Table, key: str, check_name: Callable[[str], str], example: str, *, secret: bool = False
) -> tuple[tuple[str, str], ...]:
    """`key = { name = "value" }`: header fields, names checked (and lowercased) by
    ``check_name``, values printable ASCII; a name given twice (in any case) is refused.
    ``example`` shows the form in the message for a value that is not a table; with
    ``secret`` (API keys) no message repeats a value."""
    raw = t.take(key)
    path = t.sub(key)
    if raw is MISSING:
        return ()
    ctx = t.ctx
    if not isinstance(raw, dict):
        ctx.error(path, f"expected a table such as {example}, got {show_value(raw)}")
        return ()
    check_value = partial(values.check_header_value, secret=secret)
    headers: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, value in raw.items():
        header_path = f"{path}.{key_repr(name)}"
        lowered = checked(ctx, header_path, check_name, name)
        if lowered is not None and lowered in seen:
            ctx.error(header_path, f"{quote(lowered)} is set twice (header names ignore case)")
            lowered = None
        if not ctx.expect(header_path, value, "str"):
            continue
        if checked(ctx, header_path, check_value, value) is None:
            continue
        if lowered is not None:
            seen.add(lowered)
            headers.append((lowered, value))
    return tuple(headers)


def named_tables(t: Table, noun: str, *, skip_bad_names: bool) -> Iterator[tuple[str, Table]]:
    """The `[SECTION.NAME]` tables of section `t`, in file order, each with its name.

    A name that is not letters, digits, '-' and '_' (starting with a letter or digit) is
    reported, and its table skipped with `skip_bad_names`; a value that is not a table is
    reported and skipped.
    """
    for name in list(t.raw):
        raw = t.take(name)
        path = t.sub(name)
        if not _NAME_RE.fullmatch(name):
            t.ctx.error(
                path,
                f"{noun} names may use letters, digits, '-' and '_', "
                f"and must start with a letter or digit, got {quote(name)}",
            )
            if skip_bad_names:
                continue
        if not isinstance(raw, dict):
            t.ctx.error(
                path, f"expected a table ([{t.path}.{key_repr(name)}]), got {show_value(raw)}"
            )
            continue
        yield name, Table(t.ctx, path, raw)


def checked(ctx: Context, path: str, check: Callable[[str], _T], value: str) -> _T | None:
    """Run a `values` check, turning its ValueError into a recorded problem (and None)."""
    try:
        return check(value)
    except ValueError as exc:
        ctx.error(path, str(exc))
        return None
