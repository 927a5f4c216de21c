from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bext.cache.directives import (
    DELTA_MAX,
    CacheControl,
    SurrogateControl,
    parse_delta_seconds,
    parse_directives,
    pragma_no_cache,
    request_cache_control,
    response_cache_control,
    surrogate_control,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"0", 0),
        (b"60", 60),
        (b'"60"', 60),
        (b" 60 ", 60),
        (b"2147483648", DELTA_MAX),
        (b"2147483649", DELTA_MAX),
        (b"99999999999999999999999", DELTA_MAX),
        (b"-1", None),
        (b"+1", None),
        (b"1.5", None),
        (b"1_000", None),
        (b"abc", None),
        (b"", None),
        (b'""', None),
        (b"\xd9\xa1", None),  # Arabic-Indic digit one in UTF-8: not ASCII digits
        (None, None),
    ],
)
def test_delta_seconds(value: bytes | None, expected: int | None) -> None:
    assert parse_delta_seconds(value) == expected


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([], CacheControl()),
        ([b"max-age=60"], CacheControl(max_age=60)),
        ([b"MAX-AGE=60"], CacheControl(max_age=60)),
        ([b"  max-age = 60 "], CacheControl(max_age=60)),
        ([b'max-age="60"'], CacheControl(max_age=60)),
        ([b"max-age=60, max-age=10"], CacheControl(max_age=10)),
        ([b"max-age=10", b"max-age=60"], CacheControl(max_age=10)),
        ([b"max-age=abc"], CacheControl(max_age=0)),
        ([b"max-age"], CacheControl(max_age=0)),
        ([b"max-age=-5"], CacheControl(max_age=0)),
        ([b"s-maxage=30, max-age=60"], CacheControl(max_age=60, s_maxage=30)),
        ([b"s-maxage=x"], CacheControl(s_maxage=0)),
        ([b"max-stale"], CacheControl(max_stale=DELTA_MAX)),
        ([b"max-stale=5"], CacheControl(max_stale=5)),
        ([b"max-stale, max-stale=5"], CacheControl(max_stale=5)),
        ([b"max-stale=x"], CacheControl()),
        ([b"min-fresh=5, min-fresh=9"], CacheControl(min_fresh=9)),
        ([b"min-fresh=x"], CacheControl()),
        ([b"stale-while-revalidate=30"], CacheControl(stale_while_revalidate=30)),
        (
            [b"stale-while-revalidate=30,stale-while-revalidate=3"],
            CacheControl(stale_while_revalidate=3),
        ),
        ([b"stale-while-revalidate"], CacheControl()),
        ([b"stale-if-error=600"], CacheControl(stale_if_error=600)),
        ([b"stale-if-error=bad"], CacheControl()),
        ([b"no-cache"], CacheControl(no_cache=True)),
        (
            [b'no-cache="Set-Cookie, X-Foo"'],
            CacheControl(no_cache=True, no_cache_fields=(b"set-cookie", b"x-foo")),
        ),
        ([b'no-cache="set-cookie", no-cache'], CacheControl(no_cache=True)),
        ([b"no-cache=set-cookie"], CacheControl(no_cache=True, no_cache_fields=(b"set-cookie",))),
        ([b"private"], CacheControl(private=True)),
        ([b'private="x-user"'], CacheControl(private=True, private_fields=(b"x-user",))),
        ([b'private="a", private="a, b"'], CacheControl(private=True, private_fields=(b"a", b"b"))),
        ([b"No-Store"], CacheControl(no_store=True)),
        ([b"no-store=whatever"], CacheControl(no_store=True)),
        ([b"public, must-revalidate"], CacheControl(public=True, must_revalidate=True)),
        (
            [b"proxy-revalidate, no-transform"],
            CacheControl(proxy_revalidate=True, no_transform=True),
        ),
        ([b"only-if-cached"], CacheControl(only_if_cached=True)),
        ([b"must-understand, no-store"], CacheControl(must_understand=True, no_store=True)),
        ([b"immutable"], CacheControl(immutable=True)),
        ([b'unknown-ext=1, community="UCI"'], CacheControl()),
        ([b",,, ,"], CacheControl()),
        ([b'foo="a,max-age=5", max-age=9'], CacheControl(max_age=9)),
        ([b"=5"], CacheControl()),
    ],
)
def test_parse(lines: list[bytes], expected: CacheControl) -> None:
    assert parse_directives(lines) == expected


def test_response_and_request_read_every_line() -> None:
    headers = [(b"Cache-Control", b"public"), (b"cache-control", b"max-age=5")]
    assert response_cache_control(headers) == CacheControl(public=True, max_age=5)
    assert request_cache_control(headers) == CacheControl(public=True, max_age=5)


@pytest.mark.parametrize(
    ("headers", "no_cache"),
    [
        ([(b"pragma", b"no-cache")], True),
        ([(b"pragma", b"No-Cache")], True),
        ([(b"pragma", b"foo, no-cache")], True),
        ([(b"pragma", b"foo")], False),
        ([(b"pragma", b"no-cache"), (b"cache-control", b"max-age=5")], False),
        ([(b"pragma", b"no-cache"), (b"cache-control", b"no-cache")], True),
        ([], False),
    ],
)
def test_pragma_only_without_cache_control(
    headers: list[tuple[bytes, bytes]], no_cache: bool
) -> None:
    assert request_cache_control(headers).no_cache is no_cache


def test_pragma_no_cache_helper() -> None:
    assert pragma_no_cache([(b"Pragma", b" no-cache ")])
    assert not pragma_no_cache([(b"pragma", b"no-cache-please")])


def test_pragma_keeps_other_directives_absent() -> None:
    cc = request_cache_control([(b"pragma", b"no-cache")])
    assert cc == CacheControl(no_cache=True)


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([], SurrogateControl()),
        ([b"max-age=3600"], SurrogateControl(max_age=3600)),
        ([b"no-store"], SurrogateControl(no_store=True)),
        ([b"max-age=60;edge, no-store;other"], SurrogateControl(max_age=60, no_store=True)),
        ([b"max-age=60", b"max-age=30"], SurrogateControl(max_age=30)),
        ([b"max-age=bogus"], SurrogateControl(max_age=0)),
        (
            [b"stale-while-revalidate=5, stale-if-error=7"],
            SurrogateControl(stale_while_revalidate=5, stale_if_error=7),
        ),
    ],
)
def test_surrogate_control(lines: list[bytes], expected: SurrogateControl) -> None:
    headers = [(b"Surrogate-Control", line) for line in lines]
    assert surrogate_control(headers) == expected


def _check(cc: CacheControl) -> None:
    for value in (
        cc.max_age,
        cc.s_maxage,
        cc.max_stale,
        cc.min_fresh,
        cc.stale_while_revalidate,
        cc.stale_if_error,
    ):
        assert value is None or 0 <= value <= DELTA_MAX


@given(st.lists(st.binary(max_size=80), max_size=4))
def test_never_raises_on_bytes(lines: list[bytes]) -> None:
    _check(parse_directives(lines))
    headers = [(b"cache-control", line) for line in lines]
    _check(request_cache_control(headers + [(b"pragma", line) for line in lines]))
    surrogate_control([(b"surrogate-control", line) for line in lines])


_DIRECTIVE = st.sampled_from(
    [
        "max-age",
        "s-maxage",
        "max-stale",
        "min-fresh",
        "no-cache",
        "no-store",
        "private",
        "public",
        "stale-if-error",
        "stale-while-revalidate",
        "MAX-AGE",
    ]
)
_ARG = st.one_of(
    st.none(), st.integers(min_value=-5, max_value=2**40).map(str), st.text(max_size=6)
)


@given(st.lists(st.tuples(_DIRECTIVE, _ARG), max_size=8))
def test_never_raises_on_plausible_lists(items: list[tuple[str, str | None]]) -> None:
    line = ", ".join(name if arg is None else f"{name}={arg}" for name, arg in items)
    _check(parse_directives([line.encode("utf-8")]))


@given(st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=5))
def test_duplicate_max_age_takes_smallest(values: list[int]) -> None:
    line = ", ".join(f"max-age={v}" for v in values).encode()
    assert parse_directives([line]).max_age == min(values)
