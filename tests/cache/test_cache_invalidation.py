from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bext.cache.invalidation import (
    SAFE_METHODS,
    invalidates,
    invalidation_targets,
    normalise_uri,
    origin,
    target_path,
)
from bext.protocol.events import Headers


def h(*pairs: tuple[str, str]) -> Headers:
    return [(name.encode(), value.encode()) for name, value in pairs]


@pytest.mark.parametrize(
    ("method", "status", "expected"),
    [
        ("POST", 200, True),
        ("PUT", 201, True),
        ("DELETE", 204, True),
        ("PATCH", 302, True),
        ("PURGE", 200, True),
        ("post", 200, True),
        ("POST", 399, True),
        ("POST", 400, False),
        ("POST", 404, False),
        ("POST", 500, False),
        ("POST", 100, False),
        ("GET", 200, False),
        ("HEAD", 200, False),
        ("OPTIONS", 200, False),
        ("TRACE", 200, False),
    ],
)
def test_invalidates(method: str, status: int, expected: bool) -> None:
    assert invalidates(method, status) is expected


def test_safe_methods() -> None:
    assert frozenset({"GET", "HEAD", "OPTIONS", "TRACE"}) == SAFE_METHODS


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("http://Example.COM/a?b=1", "http://example.com/a?b=1"),
        ("HTTPS://example.com:443/", "https://example.com/"),
        ("http://example.com:80", "http://example.com/"),
        ("http://example.com:8080/x#frag", "http://example.com:8080/x"),
        ("http://[::1]:3000/x", "http://[::1]:3000/x"),
        ("ftp://example.com/", None),
        ("/relative", None),
        ("http://", None),
        ("http://example.com:99999/", None),
    ],
)
def test_normalise_uri(uri: str, expected: str | None) -> None:
    assert normalise_uri(uri) == expected


def test_origin() -> None:
    assert origin("https://Example.com:443/x") == ("https", "example.com")
    assert origin("nope") is None


@pytest.mark.parametrize(
    ("response_headers", "expected"),
    [
        (h(), ("https://example.com/items",)),
        (
            h(("Location", "/items/42")),
            ("https://example.com/items", "https://example.com/items/42"),
        ),
        (
            h(("Location", "https://example.com/items/42"), ("Content-Location", "42?v=1")),
            (
                "https://example.com/items",
                "https://example.com/items/42",
                "https://example.com/42?v=1",
            ),
        ),
        (h(("Location", "https://other.example/items/42")), ("https://example.com/items",)),
        (h(("Location", "http://example.com/items/42")), ("https://example.com/items",)),
        (h(("Location", "https://example.com:8443/x")), ("https://example.com/items",)),
        (
            h(("Location", "//example.com/x")),
            ("https://example.com/items", "https://example.com/x"),
        ),
        (h(("Location", "/items")), ("https://example.com/items",)),
        (h(("Location", "http://[bad")), ("https://example.com/items",)),
        (h(("Location", "")), ("https://example.com/items",)),
    ],
)
def test_targets(response_headers: Headers, expected: tuple[str, ...]) -> None:
    assert (
        invalidation_targets("POST", 201, "https://example.com/items", response_headers) == expected
    )


def test_no_targets_for_safe_or_failed() -> None:
    loc = h(("Location", "/x"))
    assert invalidation_targets("GET", 200, "https://example.com/", loc) == ()
    assert invalidation_targets("POST", 500, "https://example.com/", loc) == ()
    assert invalidation_targets("POST", 200, "not a uri", loc) == ()


def test_target_path() -> None:
    assert target_path("https://example.com/a/b?c=1") == "/a/b?c=1"
    assert target_path("https://example.com") == "/"


@given(st.text(max_size=40), st.binary(max_size=40))
def test_never_raises(target: str, location: bytes) -> None:
    for uri in invalidation_targets("POST", 200, "http://h/" + target, [(b"location", location)]):
        assert uri.startswith("http://")
