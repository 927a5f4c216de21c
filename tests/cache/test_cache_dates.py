from __future__ import annotations

import calendar
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bext.http.date import format_http_date, parse_http_date

EPOCH_1994 = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT


@pytest.mark.parametrize(
    "value",
    [
        b"Sun, 06 Nov 1994 08:49:37 GMT",
        b"Sunday, 06-Nov-94 08:49:37 GMT",
        b"Sun Nov  6 08:49:37 1994",
        b"  Sun, 06 Nov 1994 08:49:37 GMT  ",
        b"sun, 06 nov 1994 08:49:37 gmt",
        "Sun, 06 Nov 1994 08:49:37 GMT",
    ],
)
def test_three_formats(value: bytes | str) -> None:
    assert parse_http_date(value) == EPOCH_1994


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"0",
        b"-1",
        b"Sun, 06 Nov 1994 08:49:37",
        b"Sun, 06 Nov 1994 08:49:37 UTC",
        b"Sun, 32 Nov 1994 08:49:37 GMT",
        b"Sun, 31 Nov 1994 08:49:37 GMT",
        b"Sun, 29 Feb 1995 08:49:37 GMT",
        b"Sun, 06 Foo 1994 08:49:37 GMT",
        b"Sun, 06 Nov 1994 24:49:37 GMT",
        b"Sun, 06 Nov 1994 08:60:37 GMT",
        b"Sun, 6 Nov 1994 08:49:37 GMT",
        b"Sunday, 06-Nov-1994 08:49:37 GMT",
        b"Sun Nov 6 08:49:37 1994",
        "Sun, 06 Nov 1994 08:49:37 GMT\u00e9",
        b"\xff\xfe",
    ],
)
def test_invalid(value: bytes | str) -> None:
    assert parse_http_date(value) is None


def test_leap_day_and_leap_second() -> None:
    assert parse_http_date(b"Thu, 29 Feb 2024 00:00:00 GMT") == calendar.timegm(
        (2024, 2, 29, 0, 0, 0)
    )
    assert parse_http_date(b"Sat, 31 Dec 2016 23:59:60 GMT") == calendar.timegm(
        (2017, 1, 1, 0, 0, 0)
    )


def test_rfc850_two_digit_year_window() -> None:
    now = calendar.timegm((2026, 6, 1, 0, 0, 0))
    assert parse_http_date(b"Monday, 01-Jan-30 00:00:00 GMT", now=now) == calendar.timegm(
        (2030, 1, 1, 0, 0, 0)
    )
    # More than 50 years ahead means the previous century.
    assert parse_http_date(b"Friday, 01-Jan-99 00:00:00 GMT", now=now) == calendar.timegm(
        (1999, 1, 1, 0, 0, 0)
    )
    assert parse_http_date(b"Friday, 01-Jan-76 00:00:00 GMT", now=now) == calendar.timegm(
        (2076, 1, 1, 0, 0, 0)
    )
    assert parse_http_date(b"Friday, 01-Jan-77 00:00:00 GMT", now=now) == calendar.timegm(
        (1977, 1, 1, 0, 0, 0)
    )


def test_format() -> None:
    assert format_http_date(EPOCH_1994) == b"Sun, 06 Nov 1994 08:49:37 GMT"
    assert format_http_date(0) == b"Thu, 01 Jan 1970 00:00:00 GMT"
    assert format_http_date(EPOCH_1994 + 0.9) == b"Sun, 06 Nov 1994 08:49:37 GMT"


@given(st.integers(min_value=0, max_value=253402300799))
def test_round_trip(seconds: int) -> None:
    assert parse_http_date(format_http_date(seconds)) == seconds


@given(st.binary(max_size=64))
def test_never_raises(value: bytes) -> None:
    result = parse_http_date(value)
    assert result is None or isinstance(result, int)


@given(st.text(max_size=64))
def test_never_raises_text(value: str) -> None:
    parse_http_date(value)


def test_now_default_uses_clock() -> None:
    year = time.gmtime().tm_year % 100
    value = b"Monday, 01-Jan-%02d 00:00:00 GMT" % year
    parsed = parse_http_date(value)
    assert parsed is not None
    assert time.gmtime(parsed).tm_year == time.gmtime().tm_year


def test_absurd_clock_does_not_raise() -> None:
    assert parse_http_date(b"Monday, 01-Jan-30 00:00:00 GMT", now=1e300) is None
    assert parse_http_date(b"Mon, 01 Jan 0000 00:00:00 GMT") is None
