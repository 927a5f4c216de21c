from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bext.cache.vary import SecondaryKey, normalised_value, secondary_key, vary_names
from bext.protocol.events import Headers


def h(*pairs: tuple[str, str]) -> Headers:
    return [(name.encode(), value.encode()) for name, value in pairs]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (h(), ()),
        (h(("Vary", "Accept-Encoding")), (b"accept-encoding",)),
        (h(("Vary", "Accept-Encoding, Cookie")), (b"accept-encoding", b"cookie")),
        (h(("Vary", "cookie"), ("vary", "COOKIE, accept")), (b"cookie", b"accept")),
        (h(("Vary", " , ")), ()),
        (h(("Vary", "*")), None),
        (h(("Vary", "accept"), ("Vary", "*")), None),
    ],
)
def test_vary_names(headers: Headers, expected: tuple[bytes, ...] | None) -> None:
    assert vary_names(headers) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (h(), None),
        (h(("accept", "")), b""),
        (h(("accept", "text/html")), b"text/html"),
        (h(("accept", " text/html ")), b"text/html"),
        (h(("accept", "a"), ("accept", "b")), b"a, b"),
        (h(("Accept", "a"), ("ACCEPT", " b")), b"a, b"),
    ],
)
def test_normalised_value(headers: Headers, expected: bytes | None) -> None:
    assert normalised_value(headers, b"accept") == expected


def test_key_captures_request_values() -> None:
    response = h(("Vary", "Accept-Encoding, Cookie"))
    request = h(("accept-encoding", "gzip"), ("user-agent", "x"))
    key = secondary_key(response, request)
    assert key == SecondaryKey(((b"accept-encoding", b"gzip"), (b"cookie", None)))


@pytest.mark.parametrize(
    ("stored_request", "new_request", "matches"),
    [
        (h(("accept-encoding", "gzip")), h(("accept-encoding", "gzip")), True),
        (h(("accept-encoding", "gzip")), h(("accept-encoding", " gzip ")), True),
        (h(("accept-encoding", "gzip")), h(("accept-encoding", "br")), False),
        (h(("accept-encoding", "gzip")), h(), False),
        (h(), h(), True),
        (h(), h(("accept-encoding", "")), False),
        (
            h(("accept-encoding", "gzip"), ("accept-encoding", "br")),
            h(("accept-encoding", "gzip, br")),
            True,
        ),
        (h(("accept-encoding", "gzip, br")), h(("accept-encoding", "br, gzip")), False),
        # Vary: Cookie is honoured exactly.
        (h(("cookie", "sessionid=a")), h(("cookie", "sessionid=b")), False),
        (h(("cookie", "sessionid=a")), h(("cookie", "sessionid=a")), True),
        (h(), h(("cookie", "sessionid=a")), False),
    ],
)
def test_matches(stored_request: Headers, new_request: Headers, matches: bool) -> None:
    response = h(("Vary", "Accept-Encoding, Cookie"))
    key = secondary_key(response, stored_request)
    assert key.matches(new_request) is matches


def test_star_never_matches() -> None:
    key = secondary_key(h(("Vary", "*")), h())
    assert key.star
    assert not key.matches(h())
    assert key.digest() == "*"


def test_no_vary_matches_everything() -> None:
    key = secondary_key(h(("Content-Type", "text/html")), h(("cookie", "a")))
    assert key == SecondaryKey()
    assert key.matches(h(("cookie", "b")))
    assert key.digest() == ""


def test_digest_is_stable_and_order_independent() -> None:
    request = h(("a", "1"), ("b", "2"))
    k1 = secondary_key(h(("Vary", "a, b")), request)
    k2 = secondary_key(h(("Vary", "B, A")), request)
    assert k1.digest() == k2.digest()
    assert len(k1.digest()) == 64
    assert (
        secondary_key(h(("Vary", "a")), h()).digest()
        != secondary_key(h(("Vary", "a")), h(("a", ""))).digest()
    )
    assert (
        secondary_key(h(("Vary", "a")), h(("a", "x"))).digest()
        != secondary_key(h(("Vary", "a")), h(("a", "y"))).digest()
    )


_NAMES = st.sampled_from([b"accept", b"cookie", b"accept-language"])
_REQ = st.lists(st.tuples(_NAMES, st.binary(max_size=10)), max_size=4)


@given(_REQ, st.binary(max_size=40))
def test_a_request_matches_its_own_key(request: Headers, vary: bytes) -> None:
    key = secondary_key([(b"vary", vary)], request)
    assert key.matches(request) is (not key.star)
