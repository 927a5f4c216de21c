from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bext.cache.storable import (
    UNDERSTOOD_STATUSES,
    Reason,
    Storability,
    connection_options,
    has_validator,
    headers_to_store,
    storability,
    vary_star,
)
from bext.http.date import format_http_date
from bext.protocol.events import Headers

NOW = 1_700_000_000.0


def h(*pairs: tuple[str, str]) -> Headers:
    return [(name.encode(), value.encode()) for name, value in pairs]


FRESH = h(("Cache-Control", "max-age=60"))
AUTH = h(("authorization", "Basic eDp5"))


@pytest.mark.parametrize(
    ("method", "status", "request_headers", "response_headers", "reason"),
    [
        ("GET", 200, h(), FRESH, None),
        ("HEAD", 200, h(), FRESH, Reason.METHOD),
        ("POST", 200, h(), FRESH, Reason.METHOD),
        ("get", 200, h(), FRESH, Reason.METHOD),
        ("GET", 206, h(), FRESH, Reason.PARTIAL),
        ("GET", 304, h(), FRESH, Reason.STATUS),
        ("GET", 100, h(), FRESH, Reason.STATUS),
        ("GET", 500, h(), FRESH, Reason.STATUS),
        ("GET", 502, h(), FRESH, Reason.STATUS),
        ("GET", 999, h(), FRESH, Reason.STATUS),
        ("GET", 302, h(), FRESH, None),
        ("GET", 307, h(), FRESH, None),
        ("GET", 302, h(), h(("ETag", '"x"')), Reason.NO_FRESHNESS),
        ("GET", 404, h(), FRESH, None),
        ("GET", 501, h(), FRESH, None),
        # no-store on either side, and Surrogate-Control.
        ("GET", 200, h(("cache-control", "no-store")), FRESH, Reason.REQUEST_NO_STORE),
        ("GET", 200, h(), h(("Cache-Control", "max-age=60, no-store")), Reason.NO_STORE),
        ("GET", 200, h(), h(("Cache-Control", "max-age=60, NO-STORE")), Reason.NO_STORE),
        (
            "GET",
            200,
            h(),
            h(("Cache-Control", "max-age=60"), ("Surrogate-Control", "no-store")),
            Reason.SURROGATE_NO_STORE,
        ),
        # must-understand with an understood status ignores no-store (§5.2.2.3).
        ("GET", 200, h(), h(("Cache-Control", "max-age=60, no-store, must-understand")), None),
        (
            "GET",
            500,
            h(),
            h(("Cache-Control", "max-age=60, no-store, must-understand")),
            Reason.STATUS,
        ),
        # private.
        ("GET", 200, h(), h(("Cache-Control", "private, max-age=60")), Reason.PRIVATE),
        ("GET", 200, h(), h(("Cache-Control", 'private="x-user", max-age=60')), Reason.PRIVATE),
        ("GET", 200, h(), h(("Cache-Control", "public, private, max-age=60")), Reason.PRIVATE),
        # Authorization (§3.5).
        ("GET", 200, AUTH, FRESH, Reason.AUTHORIZATION),
        ("GET", 200, AUTH, h(("Cache-Control", "public, max-age=60")), None),
        ("GET", 200, AUTH, h(("Cache-Control", "s-maxage=60")), None),
        ("GET", 200, AUTH, h(("Cache-Control", "must-revalidate, max-age=60")), None),
        ("GET", 200, AUTH, h(("Expires", "0")), Reason.AUTHORIZATION),
        # Set-Cookie.
        (
            "GET",
            200,
            h(),
            h(("Cache-Control", "public, max-age=60"), ("Set-Cookie", "a=b")),
            Reason.SET_COOKIE,
        ),
        # Vary: *.
        ("GET", 200, h(), h(("Cache-Control", "max-age=60"), ("Vary", "*")), Reason.VARY_STAR),
        (
            "GET",
            200,
            h(),
            h(("Cache-Control", "max-age=60"), ("Vary", "accept, *")),
            Reason.VARY_STAR,
        ),
        ("GET", 200, h(), h(("Cache-Control", "max-age=60"), ("Vary", "Accept-Encoding")), None),
        # Freshness or validators.
        ("GET", 200, h(), h(), Reason.NO_FRESHNESS),
        ("GET", 200, h(), h(("Cache-Control", "public")), Reason.NO_FRESHNESS),
        ("GET", 200, h(), h(("ETag", '"v1"')), None),
        ("GET", 200, h(), h(("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT")), None),
        ("GET", 200, h(), h(("Expires", format_http_date(NOW + 60).decode())), None),
        ("GET", 200, h(), h(("Expires", "0")), None),
        ("GET", 200, h(), h(("Cache-Control", "s-maxage=5")), None),
        ("GET", 200, h(), h(("Surrogate-Control", "max-age=5")), None),
        ("GET", 200, h(), h(("Cache-Control", "max-age=0")), None),
    ],
)
def test_storability(
    method: str,
    status: int,
    request_headers: Headers,
    response_headers: Headers,
    reason: Reason | None,
) -> None:
    verdict = storability(method, status, request_headers, response_headers, response_time=NOW)
    assert verdict == Storability(reason)
    assert verdict.storable is (reason is None)


def test_set_cookie_allowed_by_caller() -> None:
    headers = h(("Cache-Control", "max-age=60"), ("set-cookie", "a=b"))
    assert storability("GET", 200, h(), headers, allow_set_cookie=True).storable


def test_default_ttl_allows_bare_responses_with_heuristic_status() -> None:
    assert storability("GET", 200, h(), h(), default_ttl=30).storable
    assert storability("GET", 404, h(), h(), default_ttl=30).storable
    assert storability("GET", 302, h(), h(), default_ttl=30) == Storability(Reason.NO_FRESHNESS)
    assert storability("GET", 200, h(), h(), default_ttl=0) == Storability(Reason.NO_FRESHNESS)
    # default_ttl never overrides the other rules.
    assert storability("GET", 200, h(), h(("Set-Cookie", "x=1")), default_ttl=30) == Storability(
        Reason.SET_COOKIE
    )
    assert storability(
        "GET", 200, h(), h(("Cache-Control", "no-store")), default_ttl=30
    ) == Storability(Reason.NO_STORE)


def test_understood_statuses() -> None:
    assert 206 not in UNDERSTOOD_STATUSES
    assert 304 not in UNDERSTOOD_STATUSES
    assert {200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501} <= UNDERSTOOD_STATUSES


def test_helpers() -> None:
    assert has_validator(h(("ETag", 'W/"1"')))
    assert has_validator(h(("last-modified", "x")))
    assert not has_validator(h(("Date", "x")))
    assert vary_star(h(("Vary", " * ")))
    assert not vary_star(h(("Vary", "accept")))
    assert connection_options(h(("Connection", "close, X-Foo"), ("connection", "Keep-Alive"))) == {
        b"close",
        b"x-foo",
        b"keep-alive",
    }


def test_headers_to_store() -> None:
    headers = h(
        ("Content-Type", "text/html"),
        ("Connection", "x-trace"),
        ("X-Trace", "1"),
        ("Keep-Alive", "timeout=5"),
        ("Transfer-Encoding", "chunked"),
        ("Proxy-Authenticate", "Basic"),
        ("ETag", '"a"'),
        ("Upgrade", "h2c"),
        ("TE", "trailers"),
    )
    assert headers_to_store(headers) == h(("Content-Type", "text/html"), ("ETag", '"a"'))


@given(
    st.sampled_from(["GET", "HEAD", "POST"]),
    st.integers(min_value=100, max_value=599),
    st.lists(
        st.tuples(
            st.sampled_from([b"cache-control", b"authorization", b"pragma"]), st.binary(max_size=30)
        ),
        max_size=3,
    ),
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    b"cache-control",
                    b"expires",
                    b"vary",
                    b"etag",
                    b"set-cookie",
                    b"surrogate-control",
                    b"date",
                ]
            ),
            st.binary(max_size=30),
        ),
        max_size=5,
    ),
)
def test_never_raises(
    method: str, status: int, request_headers: Headers, response_headers: Headers
) -> None:
    verdict = storability(method, status, request_headers, response_headers)
    if verdict.storable:
        assert method == "GET"
        assert status in UNDERSTOOD_STATUSES
