from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bext.cache.validation import (
    conditional_headers,
    freshen_headers,
    is_weak,
    matches_not_modified,
    opaque_tag,
    revalidation_request,
    strong_match,
    weak_match,
)
from bext.protocol.events import Headers

LM = "Sun, 06 Nov 1994 08:49:37 GMT"
LM_850 = "Sunday, 06-Nov-94 08:49:37 GMT"


def h(*pairs: tuple[str, str]) -> Headers:
    return [(name.encode(), value.encode()) for name, value in pairs]


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (h(), h()),
        (h(("ETag", '"v1"')), h(("if-none-match", '"v1"'))),
        (h(("etag", 'W/"v1"')), h(("if-none-match", 'W/"v1"'))),
        (h(("Last-Modified", LM)), h(("if-modified-since", LM))),
        (h(("Last-Modified", "not a date")), h()),
        (
            h(("ETag", '"v1"'), ("Last-Modified", LM)),
            h(("if-none-match", '"v1"'), ("if-modified-since", LM)),
        ),
        (h(("ETag", "")), h()),
    ],
)
def test_conditional_headers(stored: Headers, expected: Headers) -> None:
    assert conditional_headers(stored) == expected


def test_revalidation_request_replaces_client_conditions() -> None:
    request = h(
        ("host", "example.com"),
        ("if-none-match", '"client"'),
        ("If-Modified-Since", LM),
        ("if-match", "*"),
        ("if-unmodified-since", LM),
        ("if-range", '"x"'),
        ("range", "bytes=0-10"),
        ("accept", "text/html"),
    )
    stored = h(("ETag", '"v2"'))
    assert revalidation_request(request, stored) == h(
        ("host", "example.com"), ("accept", "text/html"), ("if-none-match", '"v2"')
    )


@pytest.mark.parametrize(
    ("a", "b", "strong", "weak"),
    [
        (b'"1"', b'"1"', True, True),
        (b'W/"1"', b'W/"1"', False, True),
        (b'W/"1"', b'"1"', False, True),
        (b'"1"', b'"2"', False, False),
        (b'W/"1"', b'W/"2"', False, False),
    ],
)
def test_etag_comparison(a: bytes, b: bytes, strong: bool, weak: bool) -> None:
    # The table of RFC 9110 §8.8.3.2.
    assert strong_match(a, b) is strong
    assert strong_match(b, a) is strong
    assert weak_match(a, b) is weak
    assert weak_match(b, a) is weak


def test_weakness() -> None:
    assert is_weak(b'W/"x"')
    assert not is_weak(b'"x"')
    assert not is_weak(b'w/"x"')
    assert opaque_tag(b'W/"x"') == b'"x"'
    assert opaque_tag(b'"x"') == b'"x"'


@pytest.mark.parametrize(
    ("stored", "not_modified", "selected"),
    [
        (h(("ETag", '"a"')), h(("ETag", '"a"')), True),
        (h(("ETag", '"a"')), h(("ETag", '"b"')), False),
        (h(("ETag", 'W/"a"')), h(("ETag", '"a"')), False),
        (h(("ETag", '"a"')), h(("ETag", 'W/"a"')), True),
        (h(("ETag", 'W/"a"')), h(("ETag", 'W/"a"')), True),
        (h(), h(("ETag", '"a"')), False),
        (h(("Last-Modified", LM)), h(("ETag", '"a"')), False),
        (h(("Last-Modified", LM)), h(("Last-Modified", LM)), True),
        (h(("Last-Modified", LM)), h(("Last-Modified", LM_850)), True),
        (h(("Last-Modified", LM)), h(("Last-Modified", "Mon, 07 Nov 1994 08:49:37 GMT")), False),
        (h(("Last-Modified", "odd")), h(("Last-Modified", "odd")), True),
        (h(), h(("Last-Modified", LM)), False),
        # No validator in the 304: selected only if the stored response has none either.
        (h(), h(), True),
        (h(("ETag", '"a"')), h(), False),
        (h(("Last-Modified", LM)), h(), False),
        # ETag in the 304 takes precedence over Last-Modified.
        (
            h(("ETag", '"a"'), ("Last-Modified", LM)),
            h(("ETag", '"b"'), ("Last-Modified", LM)),
            False,
        ),
    ],
)
def test_matches_not_modified(stored: Headers, not_modified: Headers, selected: bool) -> None:
    assert matches_not_modified(stored, not_modified) is selected


def test_freshen_replaces_fields_in_place() -> None:
    stored = h(
        ("Content-Type", "text/html"),
        ("Cache-Control", "max-age=60"),
        ("Content-Length", "1234"),
        ("ETag", '"a"'),
        ("Date", "old"),
        ("X-Multi", "1"),
        ("X-Multi", "2"),
    )
    not_modified = h(
        ("date", "new"),
        ("Cache-Control", "max-age=120"),
        ("Content-Length", "0"),
        ("Connection", "X-Hop"),
        ("X-Hop", "secret"),
        ("Keep-Alive", "timeout=5"),
        ("X-Multi", "3"),
        ("X-New", "yes"),
        ("Transfer-Encoding", "chunked"),
    )
    assert freshen_headers(stored, not_modified) == h(
        ("Content-Type", "text/html"),
        ("Cache-Control", "max-age=120"),
        ("Content-Length", "1234"),
        ("ETag", '"a"'),
        ("date", "new"),
        ("X-Multi", "3"),
        ("X-New", "yes"),
    )


def test_freshen_with_repeated_new_lines() -> None:
    stored = h(("Vary", "a"), ("X", "1"))
    assert freshen_headers(stored, h(("vary", "b"), ("Vary", "c"))) == h(
        ("vary", "b"), ("Vary", "c"), ("X", "1")
    )


def test_freshen_empty_304_changes_nothing() -> None:
    stored = h(("A", "1"), ("B", "2"))
    assert freshen_headers(stored, []) == stored


_FIELD = st.sampled_from([b"a", b"B", b"content-length", b"connection", b"etag", b"date"])


@given(
    st.lists(st.tuples(_FIELD, st.binary(max_size=8)), max_size=6),
    st.lists(st.tuples(_FIELD, st.binary(max_size=8)), max_size=6),
)
def test_freshen_properties(stored: Headers, new: Headers) -> None:
    out = freshen_headers(stored, new)
    stored_cl = [v for n, v in stored if n.lower() == b"content-length"]
    assert [v for n, v in out if n.lower() == b"content-length"] == stored_cl
    assert freshen_headers(out, new) == out
    matches_not_modified(stored, new)
