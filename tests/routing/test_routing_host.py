"""Host header normalisation and rule host parsing."""

from __future__ import annotations

import pytest

from bext.config.values import check_host_pattern
from bext.routing.host import normalize_host, parse_host_pattern


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("example.com", "example.com"),
        ("Example.COM", "example.com"),
        ("example.com:8080", "example.com"),
        ("EXAMPLE.com.:443", "example.com"),
        ("example.com.", "example.com"),
        ("example.com:", "example.com"),
        ("localhost", "localhost"),
        ("127.0.0.1:8000", "127.0.0.1"),
        ("[::1]:3000", "::1"),
        ("[::1]", "::1"),
        ("[2001:DB8::1]:443", "2001:db8::1"),
        ("[::1", "[::1"),  # malformed: kept, matches no rule host
        ("::1", "::1"),  # bare IPv6 (invalid Host, tolerated): not a port split
        ("2001:db8::1", "2001:db8::1"),
        ("", ""),
        ("a.b.Example.com", "a.b.example.com"),
    ],
)
def test_normalize_host(raw: str, expected: str) -> None:
    assert normalize_host(raw) == expected


@pytest.mark.parametrize(
    ("pattern", "exact", "suffix"),
    [
        ("example.com", "example.com", None),
        ("Example.COM.", "example.com", None),
        ("*.example.com", None, ".example.com"),
        ("*.Example.com.", None, ".example.com"),
        ("[::1]", "::1", None),
        ("::1", "::1", None),
        ("[2001:DB8::1]", "2001:db8::1", None),
        ("localhost", "localhost", None),
    ],
)
def test_parse_host_pattern(pattern: str, exact: str | None, suffix: str | None) -> None:
    parsed = parse_host_pattern(pattern)
    assert parsed.exact == exact
    assert parsed.suffix == suffix


@pytest.mark.parametrize(
    "pattern",
    ["", ".", "example.com:80", "*", "*.", "*example.com", "a.*.com", "*.*.com", "*..com", "[*]"],
)
def test_invalid_host_patterns(pattern: str) -> None:
    with pytest.raises(ValueError):
        parse_host_pattern(pattern)
    with pytest.raises(ValueError):
        check_host_pattern(pattern)  # the config refuses what the router cannot compile


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        ("*.example.com", "a.example.com", True),
        ("*.example.com", "a.b.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", ".example.com", False),
        ("*.example.com", "badexample.com", False),
        ("*.example.com", "example.com.evil.org", False),
        ("example.com", "example.com", True),
        ("example.com", "a.example.com", False),
    ],
)
def test_host_pattern_matches(pattern: str, host: str, expected: bool) -> None:
    assert parse_host_pattern(pattern).matches(host) is expected
