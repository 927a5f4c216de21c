"""HTTP-dates (RFC 9110 §5.6.7): the ``Date`` header, formatted once per second rather than
once per response, and the one parser every part of bext reads dates with (conditional
requests, the cache's freshness and validation).

Recipients must accept the three historic formats: IMF-fixdate
(``Sun, 06 Nov 1994 08:49:37 GMT``), the obsolete RFC 850 format
(``Sunday, 06-Nov-94 08:49:37 GMT``) and ANSI C's asctime format
(``Sun Nov  6 08:49:37 1994``). Times are POSIX seconds (UTC), integral here.
"""

from __future__ import annotations

import calendar
import re
import time
from email.utils import formatdate

__all__ = ["date_line", "format_http_date", "parse_http_date"]

_cached_second = -1
_cached_line = b""


def date_line() -> bytes:
    """``b"Date: <IMF-fixdate>\\r\\n"`` for the current second."""
    global _cached_second, _cached_line
    now = int(time.time())
    if now != _cached_second:
        _cached_second = now
        _cached_line = b"Date: " + format_http_date(now) + b"\r\n"
    return _cached_line


_MONTH_NAMES = (
    b"Jan",
    b"Feb",
    b"Mar",
    b"Apr",
    b"May",
    b"Jun",
    b"Jul",
    b"Aug",
    b"Sep",
    b"Oct",
    b"Nov",
    b"Dec",
)
_MONTHS = {name.lower(): index for index, name in enumerate(_MONTH_NAMES, start=1)}
_DAY_NAMES = rb"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_LONG_DAY_NAMES = rb"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_MONTH = rb"([A-Za-z]{3})"
_TIME = rb"(\d{2}):(\d{2}):(\d{2})"

_IMF_FIXDATE = re.compile(
    rb"^" + _DAY_NAMES + rb", (\d{2}) " + _MONTH + rb" (\d{4}) " + _TIME + rb" GMT$", re.I
)
_RFC850 = re.compile(
    rb"^" + _LONG_DAY_NAMES + rb", (\d{2})-" + _MONTH + rb"-(\d{2}) " + _TIME + rb" GMT$", re.I
)
_ASCTIME = re.compile(
    rb"^" + _DAY_NAMES + rb" " + _MONTH + rb" ([ \d]\d) " + _TIME + rb" (\d{4})$", re.I
)


def _build(year: int, month_name: bytes, day: int, hh: int, mm: int, ss: int) -> int | None:
    month = _MONTHS.get(month_name.lower())
    if month is None or not 1 <= day <= calendar.monthrange(year, month)[1]:
        return None
    # RFC 9110 §5.6.7 allows a leap second (60); fold it into the next second.
    if hh > 23 or mm > 59 or ss > 60:
        return None
    return calendar.timegm((year, month, day, hh, mm, 0, 0, 0, 0)) + ss


def parse_http_date(value: bytes | str, *, now: float | None = None) -> int | None:
    """Parse an HTTP-date (RFC 9110 §5.6.7) into POSIX seconds, or ``None`` if invalid.

    Leading and trailing whitespace is ignored; names are matched case-insensitively. A
    two-digit RFC 850 year that would be more than 50 years in the future (relative to
    ``now``, default the current time) is taken to be in the past century, as §5.6.7 requires.
    """
    if isinstance(value, str):
        try:
            value = value.encode("ascii")
        except UnicodeEncodeError:
            return None
    value = value.strip(b" \t")
    try:
        if match := _IMF_FIXDATE.match(value):
            day, month, year, hh, mm, ss = match.groups()
            return _build(int(year), month, int(day), int(hh), int(mm), int(ss))
        if match := _RFC850.match(value):
            day, month, yy, hh, mm, ss = match.groups()
            current = time.gmtime(time.time() if now is None else now).tm_year
            year = current - current % 100 + int(yy)
            if year > current + 50:
                year -= 100
            return _build(year, month, int(day), int(hh), int(mm), int(ss))
        if match := _ASCTIME.match(value):
            month, day, hh, mm, ss, year = match.groups()
            return _build(int(year), month, int(day.strip()), int(hh), int(mm), int(ss))
    except (ValueError, OverflowError, OSError):
        return None
    return None


def format_http_date(seconds: float) -> bytes:
    """Format POSIX ``seconds`` as an IMF-fixdate (RFC 9110 §5.6.7), the only format to send."""
    return formatdate(int(seconds), usegmt=True).encode("ascii")
