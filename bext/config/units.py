"""Durations and sizes as people write them in a config file.

Operators think in "30s" and "16KB", not in 30.0 and 16384, and a bare number in a
timeout field is a classic source of off-by-1000 bugs (seconds or milliseconds?). These
parsers accept the readable forms, normalise them to one unit (float seconds, int bytes)
and raise `ValueError` with a message that shows an accepted example, which the loader
prefixes with the key path.

Size units are always 1024-based: "16K", "16KB" and "16KiB" all mean 16384 bytes. Server
limits are conventionally powers of two (nginx and HAProxy read "k" the same way), and
treating "KB" as 1000 would make "16KB" silently differ from "16K".
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

from bext.config.errors import quote

__all__ = ["format_duration", "format_size", "parse_duration", "parse_size"]

_DURATION_UNITS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")

_SIZE_UNITS: dict[str, int] = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
# A number, then nothing, "B", or a prefix letter optionally followed by "B" or "iB".
_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?|b)?", re.IGNORECASE)

_DURATION_HINT = 'expected a duration such as "30s" or "500ms"'
_SIZE_HINT = 'expected a size such as "16KB" or "100MB"'


def _shown(value: object) -> str:
    """Render the offending value the way the user wrote it in TOML."""
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return f"a {type(value).__name__}"


def parse_duration(value: object) -> float:
    """Parse a duration into seconds.

    Accepts a non-negative number of seconds (int or float) or a string with a unit:
    "250ms", "30s", "5m", "1h", "1d" (fractions allowed: "1.5s"). A string without a unit
    is refused on purpose, because "30" in a field that could be read as milliseconds is
    exactly the ambiguity units exist to remove.
    """
    if isinstance(value, bool):
        raise ValueError(f"{_DURATION_HINT}, got {_shown(value)}")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{_DURATION_HINT}, got {_shown(value)}")
        return float(value)
    if isinstance(value, str):
        match = _DURATION_RE.fullmatch(value.strip())
        if match:
            return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    raise ValueError(f"{_DURATION_HINT}, got {_shown(value)}")


def parse_size(value: object) -> int:
    """Parse a size into bytes.

    Accepts a non-negative int (bytes) or a string: "512", "512B", "16K", "16KB", "16KiB",
    "100MB", "1GB", "1TB" (case-insensitive, 1024-based, see the module docstring).
    Fractions are fine as long as they come to whole bytes ("1.5K" is 1536).
    """
    if isinstance(value, bool):
        raise ValueError(f"{_SIZE_HINT}, got {_shown(value)}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{_SIZE_HINT}, got {_shown(value)}")
        return value
    if isinstance(value, str):
        match = _SIZE_RE.fullmatch(value.strip())
        if match:
            try:
                number = Decimal(match.group(1))
            except InvalidOperation:  # pragma: no cover - the regex only admits decimals
                raise ValueError(f"{_SIZE_HINT}, got {_shown(value)}") from None
            total = number * _SIZE_UNITS[(match.group(2) or "").lower()]
            if total != total.to_integral_value():
                raise ValueError(f"{quote(value)} is not a whole number of bytes")
            return int(total)
    raise ValueError(f"{_SIZE_HINT}, got {_shown(value)}")


def parse_byte_rate(value: object) -> int:
    """Parse a transfer rate into bytes per second: a size with ``/s`` ("1KB/s"), or an
    int (bytes per second). ``0`` means off."""
    if isinstance(value, str) and "/" in value:
        amount, _, per = value.rpartition("/")
        if per.strip().lower() not in ("s", "sec", "second"):
            raise ValueError(f'expected a rate such as "1KB/s", got {_shown(value)}')
        return parse_size(amount.strip())
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ValueError(f'expected a rate such as "1KB/s" (or bytes per second), got {_shown(value)}')


def format_size(size: int) -> str:
    """Render bytes in the largest 1024-based unit that divides them exactly.

    Used in messages and `bext check` output so limits read the way they were written.
    """
    for suffix, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size and size % factor == 0:
            return f"{size // factor}{suffix}"
    return f"{size} bytes" if size != 1 else "1 byte"


def format_duration(seconds: float) -> str:
    """Render seconds compactly ("250ms", "30s", "5m", "1.5s") for messages and `bext check`."""
    if seconds and seconds < 1:
        return f"{seconds * 1000:g}ms"
    for suffix, factor in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= factor and seconds % factor == 0:
            return f"{seconds / factor:g}{suffix}"
    return f"{seconds:g}s"
