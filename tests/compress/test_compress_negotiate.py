"""Accept-Encoding negotiation: which coding a client gets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bext.compress.negotiate import choose_encoding, negotiate

TABLE = [
    # plain lists
    (b"br", "br"),
    (b"gzip", "gzip"),
    (b"gzip, deflate, br", "br"),  # brotli preferred on a tie, whatever the order
    (b"gzip, deflate, br, zstd", "br"),
    (b"deflate", None),
    (b"zstd, deflate", None),
    (b"identity", None),
    (b"", None),  # an empty value: only identity is acceptable
    (b"   ", None),
    # case and whitespace
    (b"GZIP", "gzip"),
    (b"Br", "br"),
    (b"  gzip  ,  br  ", "br"),
    (b"x-gzip", "gzip"),
    # q-values
    (b"br;q=0.5, gzip", "gzip"),
    (b"br;q=1.0, gzip;q=0.9", "br"),
    (b"gzip;q=0.8, br;q=0.8", "br"),
    (b"gzip; q=0.3 , br ;q=0.2", "gzip"),
    (b"gzip;Q=0.5", "gzip"),
    (b"br;q=0.001", "br"),
    (b"br;q=1.000", "br"),
    # exclusions
    (b"br;q=0, gzip", "gzip"),
    (b"br;q=0.000, gzip;q=0", None),
    (b"gzip;q=0", None),
    (b"gzip, gzip;q=0", None),  # contradicting itself: the cautious reading
    # wildcard
    (b"*", "br"),
    (b"*;q=0.5", "br"),
    (b"*, br;q=0", "gzip"),
    (b"*;q=0", None),
    (b"*;q=0, gzip", "gzip"),
    (b"*;q=0.2, gzip;q=0.5", "gzip"),
    (b"*;q=0.9, br;q=0.1", "gzip"),
    # identity preferred explicitly
    (b"identity;q=1, gzip;q=0.5", None),
    (b"gzip;q=0.5, identity", None),
    (b"gzip, identity;q=0.5", "gzip"),
    (b"gzip, identity", "gzip"),  # a tie: the coding wins
    (b"identity;q=0, *;q=0.5", "br"),
    # malformed members are skipped, the rest still counts
    (b"br;q=abc, gzip", "gzip"),
    (b"br;q=2, gzip;q=0.5", "gzip"),
    (b"br;q=1.5", None),
    (b"br;q=0.0001", None),
    (b"br;q=-1", None),
    (b"br;q=", None),
    (b"br;q", None),
    (b"br;foo=bar", "br"),  # unknown parameters ignored
    (b",,, gzip ,,", "gzip"),
    (b";q=1, gzip", "gzip"),
    (b"\xff\xfe, gzip", "gzip"),
    (b"brotli, gz, gzip2", None),  # near misses are not codings we produce
    (b"gzip;q=0.5;q=0", None),
]


@pytest.mark.parametrize(("header", "expected"), TABLE)
def test_negotiation_table(header: bytes, expected: str | None) -> None:
    assert choose_encoding(header) == expected
    assert negotiate([header]) == expected


def test_no_header_means_no_compression() -> None:
    assert negotiate([]) is None


def test_several_fields_are_one_list() -> None:
    assert negotiate([b"gzip", b"br"]) == "br"
    assert negotiate([b"gzip", b"br;q=0"]) == "gzip"
    assert negotiate([b"br;q=0", b"*"]) == "gzip"


def test_overlong_header_still_answered() -> None:
    junk = b", ".join(b"coding%d" % i for i in range(500))
    assert len(junk) > 1024
    assert negotiate([junk + b", gzip"]) == "gzip"


@given(st.binary(max_size=80))
def test_any_bytes_give_a_valid_answer(header: bytes) -> None:
    assert choose_encoding(header) in ("br", "gzip", None)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["br", "gzip", "deflate", "*", "identity"]),
            st.sampled_from([None, "0", "0.1", "0.5", "0.999", "1"]),
        ),
        max_size=6,
    )
)
def test_never_chooses_an_excluded_coding(members: list[tuple[str, str | None]]) -> None:
    header = ", ".join(name if q is None else f"{name};q={q}" for name, q in members)
    chosen = choose_encoding(header.encode())
    if chosen is None:
        return
    weights = [float(q or 1) for name, q in members if name == chosen]
    if weights:
        assert min(weights) > 0
    else:
        stars = [float(q or 1) for name, q in members if name == "*"]
        assert stars and min(stars) > 0
