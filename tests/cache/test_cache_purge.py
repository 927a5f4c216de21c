"""Purge requests: admin JSON bodies and the shell form (bext/cache/purge.py)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bext.cache.purge import (
    MAX_BODY_BYTES,
    PurgeError,
    PurgeRequest,
    normalise_target,
    parse_body,
    parse_shell,
)

DJANGO_BEXT = Path(__file__).resolve().parents[2] / "integrations" / "django-bext"


def body(document: Any) -> bytes:
    return json.dumps(document).encode()


ACCEPTED: list[tuple[bytes, PurgeRequest]] = [
    (body({"tags": ["products"]}), PurgeRequest(tags=(b"products",))),
    (body({"tags": ["a", "b", "a"]}), PurgeRequest(tags=(b"a", b"b"))),
    (body({"tags": ["shop.product:42"]}), PurgeRequest(tags=(b"shop.product:42",))),
    (body({"tags": ["caf\u00e9"]}), PurgeRequest(tags=("caf\u00e9".encode(),))),
    (body({"tags": ["a,b"]}), PurgeRequest(tags=(b"a,b",))),  # a Surrogate-Key tag
    (body({"tags": ["x" * 128]}), PurgeRequest(tags=(b"x" * 128,))),
    (body({"urls": ["/products/"]}), PurgeRequest(urls=((None, "/products/"),))),
    (body({"urls": ["/a/../b//c?x=1&y"]}), PurgeRequest(urls=((None, "/b/c?x=1&y"),))),
    (body({"urls": ["/a%20b?q=%20"]}), PurgeRequest(urls=((None, "/a b?q=%20"),))),
    (
        body({"urls": ["/a%2Fb"]}),
        PurgeRequest(urls=((None, "/a%252Fb"),)),
    ),  # "%" escaped as keys hold it
    (body({"urls": ["/a%3Fb?c"]}), PurgeRequest(urls=((None, "/a%3Fb?c"),))),
    (body({"urls": ["/p?"]}), PurgeRequest(urls=((None, "/p?"),))),
    (
        body({"urls": ["https://Shop.Example:443/p?id=1"]}),
        PurgeRequest(urls=(("shop.example", "/p?id=1"),)),
    ),
    (
        body({"urls": ["HTTP://example.com:8000"]}),
        PurgeRequest(urls=(("example.com:8000", "/"),)),
    ),
    (
        body({"urls": ["http://[::1]:80/x", "http://example.com/x"]}),
        PurgeRequest(urls=(("[::1]", "/x"), ("example.com", "/x"))),
    ),
    (body({"prefixes": ["/static/"]}), PurgeRequest(prefixes=((None, "/static/"),))),
    (
        body({"prefixes": ["http://example.com/blog"]}),
        PurgeRequest(prefixes=(("example.com", "/blog"),)),
    ),
    (body({"all": True}), PurgeRequest(all=True)),
    (body({"all": True, "soft": True}), PurgeRequest(all=True, soft=True)),
    (body({"tags": ["t"], "soft": False}), PurgeRequest(tags=(b"t",))),
    (
        body({"tags": ["t"], "urls": ["/u"], "prefixes": ["/p"], "soft": True}),
        PurgeRequest(tags=(b"t",), urls=((None, "/u"),), prefixes=((None, "/p"),), soft=True),
    ),
    (b' \n{"tags": ["t"]}\n', PurgeRequest(tags=(b"t",))),
    (b" " * (MAX_BODY_BYTES - 15) + b'{"tags": ["t"]}', PurgeRequest(tags=(b"t",))),
    (
        body({"tags": [str(i) for i in range(1000)]}),
        PurgeRequest(tags=tuple(str(i).encode() for i in range(1000))),
    ),
]


@pytest.mark.parametrize(("raw", "expected"), ACCEPTED)
def test_accepted_bodies(raw: bytes, expected: PurgeRequest) -> None:
    assert parse_body(raw) == expected


REJECTED: list[tuple[bytes, str]] = [
    (b"", "empty body"),
    (b"   ", "empty body"),
    (b"\xff\xfe{}", "not valid UTF-8"),
    (b'{"tags": ["a"]', "invalid JSON"),
    (b'{"tags": ["a"]} x', "invalid JSON"),
    (b"[1]", "must be a JSON object, not a list"),
    (b'"tags"', "must be a JSON object, not a string"),
    (b"null", "must be a JSON object, not null"),
    (b"{}", "nothing to purge"),
    (b'{"soft": true}', "nothing to purge"),
    (b'{"tag": ["a"]}', "unknown field(s) 'tag'"),
    (b'{"tags": ["a"], "extra": 1}', "unknown field(s) 'extra'"),
    (b'{"tags": ["a"], "tags": ["b"]}', "duplicate field 'tags'"),
    (b'{"tags": "products"}', "'tags' must be a list of strings, not a string"),
    (b'{"tags": null}', "'tags' must be a list of strings, not null"),
    (b'{"urls": {"a": 1}}', "'urls' must be a list of strings, not an object"),
    (b'{"tags": [1]}', "'tags' must be a list of strings, found a number"),
    (b'{"tags": [["a"]]}', "'tags' must be a list of strings, found a list"),
    (b'{"tags": []}', "'tags' must not be empty"),
    (b'{"prefixes": []}', "'prefixes' must not be empty"),
    (b'{"tags": [""]}', "tags: empty string"),
    (b'{"tags": ["a b"]}', "contains whitespace"),
    (b'{"tags": ["a\\tb"]}', "contains whitespace"),
    (b'{"tags": ["a\\u00a0b"]}', "contains whitespace"),
    (b'{"tags": ["a\\u0000b"]}', "contains a control character"),
    (b'{"tags": ["a\\u007fb"]}', "contains a control character"),
    (b'{"tags": ["a\\u0085b"]}', "contains whitespace"),
    (b'{"tags": ["a\\u0090b"]}', "contains a control character"),
    (b'{"tags": ["a\\ud800b"]}', "contains a lone surrogate"),
    (body({"tags": ["x" * 129]}), "longer than 128 bytes"),
    (body({"tags": ["\u00e9" * 65]}), "longer than 128 bytes"),
    (body({"tags": [str(i) for i in range(1001)]}), "too many targets: 1001"),
    (
        body({"tags": ["t"] * 500, "urls": ["/u"] * 500, "prefixes": ["/p"]}),
        "too many targets: 1001",
    ),
    (body({"all": True, "tags": ["a"]}), "'all' cannot be combined"),
    (body({"all": True, "prefixes": ["/"]}), "'all' cannot be combined"),
    (body({"all": False}), "'all' must be true when given"),
    (body({"all": 1}), "'all' must be true when given"),
    (body({"all": "true"}), "'all' must be true when given"),
    (body({"tags": ["a"], "soft": "yes"}), "'soft' must be a boolean, not a string"),
    (body({"tags": ["a"], "soft": 1}), "'soft' must be a boolean, not a number"),
    (body({"tags": ["a"], "soft": None}), "'soft' must be a boolean, not null"),
    (b'{"tags": ["a"], "soft": NaN}', "NaN is not allowed"),
    (b'{"tags": ["a"], "soft": -Infinity}', "-Infinity is not allowed"),
    (b"[" * 50000 + b"]" * 50000, "body too large"),
    (b"[" * 30000 + b"]" * 30000, "nested too deeply"),
    (b'{"soft": ' + b"9" * 5000 + b"}", "invalid JSON"),
    (b" " * (MAX_BODY_BYTES - 14) + b'{"tags": ["t"]}', "body too large: 65537 bytes"),
    (body({"urls": ["products"]}), "neither a path starting with '/' nor an http(s) URL"),
    (body({"urls": ["ftp://example.com/x"]}), "neither a path"),
    (body({"urls": ["//example.com/x", "example.com/x"]}), "neither a path"),
    (body({"urls": ["http:/x"]}), "neither a path"),
    (body({"urls": ["http:///x"]}), "empty authority"),
    (body({"urls": ["http://user@example.com/x"]}), "userinfo"),
    (body({"urls": ["http://\u00e9.example/x"]}), "non-ASCII authority"),
    (body({"urls": ["http://example.com:x/"]}), "invalid port"),
    (body({"urls": ["/a/../../etc"]}), "path escapes the root"),
    (body({"urls": ["/a%zz"]}), "invalid percent-encoding"),
    (body({"urls": ["/a%00"]}), "NUL byte in path"),
    (body({"urls": ["/a%ff"]}), "not valid UTF-8"),
    (body({"urls": ["/a#frag"]}), "has a fragment"),
    (body({"urls": ["/a b"]}), "urls: '/a b' contains whitespace"),
    (body({"prefixes": ["/a\u0001"]}), "prefixes: '/a\\x01' contains a control character"),
    (body({"urls": ["/" + "a" * 9000]}), "longer than 8192 bytes"),
]


@pytest.mark.parametrize(("raw", "reason"), REJECTED)
def test_rejected_bodies(raw: bytes, reason: str) -> None:
    with pytest.raises(PurgeError) as caught:
        parse_body(raw)
    assert reason in caught.value.reason
    assert str(caught.value) == caught.value.reason
    assert isinstance(caught.value, ValueError)


SHELL: list[tuple[dict[str, Any], PurgeRequest]] = [
    ({"tags": ["products"]}, PurgeRequest(tags=(b"products",))),
    ({"tags": ["a", "b"], "soft": True}, PurgeRequest(tags=(b"a", b"b"), soft=True)),
    ({"urls": ["http://example.com/x"]}, PurgeRequest(urls=(("example.com", "/x"),))),
    ({"prefixes": ["/blog/"]}, PurgeRequest(prefixes=((None, "/blog/"),))),
    ({"tags": ["t"], "urls": ["/u"]}, PurgeRequest(tags=(b"t",), urls=((None, "/u"),))),
    ({"all": True}, PurgeRequest(all=True)),
    ({"all": True, "soft": True}, PurgeRequest(all=True, soft=True)),
    ({"tags": None, "urls": None, "prefixes": None, "all": True}, PurgeRequest(all=True)),
]


@pytest.mark.parametrize(("args", "expected"), SHELL)
def test_shell_form(args: dict[str, Any], expected: PurgeRequest) -> None:
    assert parse_shell(**args) == expected


SHELL_REJECTED: list[tuple[dict[str, Any], str]] = [
    ({}, "nothing to purge"),
    ({"tags": [], "soft": True}, "nothing to purge"),
    ({"all": True, "tags": ["a"]}, "'all' cannot be combined"),
    ({"tags": ["a b"]}, "contains whitespace"),
    ({"tags": ["x" * 200]}, "longer than 128 bytes"),
    ({"urls": ["example.com"]}, "neither a path"),
    ({"prefixes": ["/../x"]}, "path escapes the root"),
    ({"tags": ["t"] * 1001}, "too many targets"),
]


@pytest.mark.parametrize(("args", "reason"), SHELL_REJECTED)
def test_shell_form_rejected(args: dict[str, Any], reason: str) -> None:
    with pytest.raises(PurgeError) as caught:
        parse_shell(**args)
    assert reason in caught.value.reason


def test_normalise_target_names_the_field() -> None:
    assert normalise_target("/x/./y", "prefixes") == (None, "/x/y")
    with pytest.raises(PurgeError, match=r"^prefixes: "):
        normalise_target("x", "prefixes")


def test_request_is_frozen() -> None:
    request = parse_body(b'{"all": true}')
    with pytest.raises(AttributeError):
        request.soft = True  # type: ignore[misc]


OPENINGS = st.sampled_from([b"", b'{"tags": ["', b'{"urls": ["/', b'{"prefixes": ["http://'])


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=300), OPENINGS)
def test_arbitrary_bytes_raise_only_purge_error(raw: bytes, opening: bytes) -> None:
    for candidate in (raw, opening + raw + (b'"]}' if opening else b"")):
        with contextlib.suppress(PurgeError):
            parse_body(candidate)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)
FIELD = st.sampled_from(["tags", "urls", "prefixes", "all", "soft", "x"])


@settings(max_examples=500, deadline=None)
@given(
    st.dictionaries(
        FIELD,
        JSON_VALUES | st.lists(st.text(max_size=20) | st.sampled_from(["/", "/a", "http://h/"])),
    )
)
def test_arbitrary_json_objects_raise_only_purge_error(document: dict[str, Any]) -> None:
    try:
        request = parse_body(json.dumps(document).encode())
    except PurgeError:
        return
    assert request.all or request.tags or request.urls or request.prefixes


# --- what django-bext sends ------------------------------------------------------------

TAG_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=","),
    min_size=1,
    max_size=128,  # django-bext allows 1024; bext stores no tag over 128 bytes (see below)
)
PATH_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="%#?./"),
    max_size=12,
)
PATHS = st.lists(PATH_TEXT, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts))
QUERY = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#"),
    max_size=12,
)
HOSTS = st.sampled_from(["example.com", "Shop.Example:8000", "127.0.0.1", "[::1]:3000"])
URLS = st.one_of(
    PATHS,
    st.builds(lambda p, q: f"{p}?{q}", PATHS, QUERY),
    st.builds(lambda s, h, p: f"{s}://{h}{p}", st.sampled_from(["http", "https"]), HOSTS, PATHS),
)


@pytest.fixture(scope="module")
def build_payload() -> Any:
    pytest.importorskip("django")
    import sys

    sys.path.insert(0, str(DJANGO_BEXT))
    try:
        from django_bext.client import build_payload
    finally:
        sys.path.remove(str(DJANGO_BEXT))
    return build_payload


@settings(max_examples=300, deadline=None)
@given(
    tags=st.lists(TAG_TEXT, max_size=5),
    urls=st.lists(URLS, max_size=5),
    prefixes=st.lists(URLS, max_size=5),
    everything=st.booleans(),
    soft=st.booleans(),
)
def test_everything_django_bext_sends_is_accepted(
    build_payload: Any,
    tags: list[str],
    urls: list[str],
    prefixes: list[str],
    everything: bool,
    soft: bool,
) -> None:
    if everything:
        tags, urls, prefixes = [], [], []
    elif not (tags or urls or prefixes):
        tags = ["products"]
    payload = build_payload(tags, urls, prefixes, everything, soft)
    request = parse_body(json.dumps(payload).encode())
    assert request.all is everything
    assert request.soft is soft
    assert request.tags == tuple(dict.fromkeys(tag.encode() for tag in tags))
    assert len(request.urls) <= len(urls)
    assert len(request.prefixes) <= len(prefixes)


def test_django_bext_examples_are_accepted(build_payload: Any) -> None:
    payload = build_payload(
        tags=["products", "shop.product", "shop.product:42", "shop.product:a%2Fb"],
        urls=["https://example.com/products/?page=2", "/products/42/"],
        prefixes=["/products/"],
        soft=True,
    )
    request = parse_body(json.dumps(payload).encode())
    assert request.tags[-1] == b"shop.product:a%2Fb"
    assert request.urls == (("example.com", "/products/?page=2"), (None, "/products/42/"))
    assert request.prefixes == ((None, "/products/"),)
    assert request.soft
