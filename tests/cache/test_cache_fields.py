from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bext.cache._fields import field_lines, first_line, has_field, split_list, unquote


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"", []),
        (b"a", [b"a"]),
        (b" a , b ,, c ", [b"a", b"b", b"c"]),
        (b'a="x,y", b', [b'a="x,y"', b"b"]),
        (b'a="x\\",y", b', [b'a="x\\",y"', b"b"]),
        (b'a="unterminated, b', [b'a="unterminated, b']),
        (b"\t,\t", []),
    ],
)
def test_split_list(value: bytes, expected: list[bytes]) -> None:
    assert split_list(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"token", b"token"),
        (b'"quoted"', b"quoted"),
        (b'"a\\"b"', b'a"b'),
        (b'"a\\\\b"', b"a\\b"),
        (b'"open', b"open"),
        (b'"x"trailing', b"x"),
    ],
)
def test_unquote(value: bytes, expected: bytes) -> None:
    assert unquote(value) == expected


def test_field_lookup_is_case_insensitive() -> None:
    headers = [(b"Cache-Control", b" max-age=1 "), (b"cache-control", b"public")]
    assert field_lines(headers, b"cache-control") == [b"max-age=1", b"public"]
    assert first_line(headers, b"cache-control") == b"max-age=1"
    assert has_field(headers, b"cache-control")
    assert first_line(headers, b"age") is None
    assert not has_field(headers, b"age")


@given(st.binary(max_size=200))
def test_split_never_raises(value: bytes) -> None:
    for item in split_list(value):
        assert item
        assert item == item.strip()
