from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bext.cache.tags import (
    EDGE_ONLY_FIELDS,
    MAX_TAG_BYTES,
    MAX_TAGS,
    ParsedTags,
    parse_tags,
    strip_edge_fields,
)
from bext.protocol.events import Headers


def h(*pairs: tuple[str, str]) -> Headers:
    return [(name.encode(), value.encode()) for name, value in pairs]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (h(), ParsedTags()),
        (h(("Cache-Tag", "products")), ParsedTags((b"products",))),
        (h(("Cache-Tag", " products , product-42 ,,")), ParsedTags((b"products", b"product-42"))),
        (h(("Surrogate-Key", "  a   b\tc ")), ParsedTags((b"a", b"b", b"c"))),
        (h(("Cache-Tag", "a,b"), ("Surrogate-Key", "b c")), ParsedTags((b"a", b"b", b"c"))),
        (h(("Surrogate-Key", "x"), ("Cache-Tag", "y")), ParsedTags((b"y", b"x"))),
        (h(("cache-tag", "a"), ("CACHE-TAG", "b, a")), ParsedTags((b"a", b"b"))),
        (h(("Cache-Tag", "Products, products")), ParsedTags((b"Products", b"products"))),
        (h(("Cache-Tag", "two words, ok")), ParsedTags((b"ok",), invalid=1)),
        (h(("Cache-Tag", "bad\x01, ok")), ParsedTags((b"ok",), invalid=1)),
        (h(("Cache-Tag", "del\x7f")), ParsedTags(invalid=1)),
        (h(("Cache-Tag", "x" * MAX_TAG_BYTES)), ParsedTags((b"x" * MAX_TAG_BYTES,))),
        (h(("Cache-Tag", "x" * (MAX_TAG_BYTES + 1))), ParsedTags(too_long=1)),
    ],
)
def test_parse(headers: Headers, expected: ParsedTags) -> None:
    assert parse_tags(headers) == expected


def test_utf8_tags_are_kept_as_bytes() -> None:
    parsed = parse_tags([(b"cache-tag", "caf\u00e9".encode())])
    assert parsed.tags == ("caf\u00e9".encode(),)


def test_count_limit() -> None:
    value = ",".join(f"t{i}" for i in range(MAX_TAGS + 10))
    parsed = parse_tags(h(("Cache-Tag", value + ",t0")))
    assert len(parsed.tags) == MAX_TAGS
    assert parsed.tags[0] == b"t0"
    assert parsed.tags[-1] == f"t{MAX_TAGS - 1}".encode()
    assert parsed.over_limit == 10
    assert parsed.dropped == 10


def test_custom_limits() -> None:
    parsed = parse_tags(h(("Surrogate-Key", "aa bbb c dd e")), max_tags=2, max_tag_bytes=2)
    assert parsed == ParsedTags((b"aa", b"c"), too_long=1, over_limit=2)
    assert parsed.dropped == 3


def test_strip_edge_fields() -> None:
    headers = h(
        ("Content-Type", "text/html"),
        ("Cache-Tag", "a"),
        ("surrogate-key", "b"),
        ("Surrogate-Control", "max-age=60"),
        ("Cache-Control", "max-age=5"),
    )
    assert strip_edge_fields(headers) == h(
        ("Content-Type", "text/html"), ("Cache-Control", "max-age=5")
    )
    assert frozenset({b"cache-tag", b"surrogate-key", b"surrogate-control"}) == EDGE_ONLY_FIELDS


@given(
    st.lists(
        st.tuples(st.sampled_from([b"cache-tag", b"surrogate-key"]), st.binary(max_size=300)),
        max_size=4,
    )
)
def test_bounded_and_never_raises(headers: Headers) -> None:
    parsed = parse_tags(headers)
    assert len(parsed.tags) <= MAX_TAGS
    assert len(set(parsed.tags)) == len(parsed.tags)
    for tag in parsed.tags:
        assert 0 < len(tag) <= MAX_TAG_BYTES
        assert not any(b <= 0x20 or b == 0x7F for b in tag)
