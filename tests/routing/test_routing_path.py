"""Request-target splitting and path normalisation, including hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bext.routing.path import BadPath, absolute_form_host, normalize_path, split_target

BAD = BadPath  # marker in the tables: normalisation must refuse the input

NORMAL: list[tuple[bytes, str | type[BadPath]]] = [
    (b"/", "/"),
    (b"/index.html", "/index.html"),
    (b"/static/css/app.min.css", "/static/css/app.min.css"),
    (b"/a/b/", "/a/b/"),
    (b"/a.b/c.", "/a.b/c."),
    (b"/a~b-c_d!$&'()*+,;=:@", "/a~b-c_d!$&'()*+,;=:@"),
    (b"/%41%42c", "/ABc"),
    (b"/caf%C3%A9", "/café"),
    (b"/caf\xc3\xa9", "/café"),  # raw UTF-8 from lax clients
    (b"/a%20b", "/a b"),
    (b"/a b", "/a b"),
    (b"/100%25", "/100%"),
    (b"/a/b/.", "/a/b/"),
    (b"/a/b/..", "/a/"),
    (b"/a/..", "/"),
    (b"/a/./b", "/a/b"),
    (b"/a/b/../c", "/a/c"),
    (b"/.well-known/acme", "/.well-known/acme"),
    (b"/.hidden/..", "/"),
    (b"/...", "/..."),
    (b"/..a/a..", "/..a/a.."),
    (b"/a/%2E/b", "/a/b"),
    (b"/a/b/%2e%2e", "/a/"),
    (b"/a/%2E%2E/b", "/b"),
]

HOSTILE: list[tuple[bytes, str | type[BadPath]]] = [
    (b"/..", BAD),
    (b"/../", BAD),
    (b"/../etc/passwd", BAD),
    (b"/a/../../b", BAD),
    (b"/a/b/../../../c", BAD),
    (b"/./../a", BAD),
    (b"/%2e%2e/", BAD),
    (b"/%2E%2E/etc/passwd", BAD),
    (b"/.%2e/x", BAD),
    (b"/%2e./x", BAD),
    (b"/a/%2e%2e/%2e%2e/b", BAD),
    (b"/%2E%2e%2fetc", "/..%2Fetc"),  # one segment: an encoded slash never splits
    (b"/a%2fb", "/a%2Fb"),
    (b"/a%2F..%2F..%2Fetc", "/a%2F..%2F..%2Fetc"),
    (b"/a/..%2f..%2fetc/passwd", "/a/..%2F..%2Fetc/passwd"),
    (b"/%252e%252e/x", "/%2e%2e/x"),  # double encoding is decoded once only
    (b"/%252F", "/%2F"),
    (b"/a%00b", BAD),
    (b"/a\x00b", BAD),
    (b"/index.html%00.png", BAD),
    (b"/a%0d%0aSet-Cookie:x", BAD),
    (b"/a\r\nb", BAD),
    (b"/a%09b", BAD),
    (b"/a%7fb", BAD),
    (b"/a\x1bb", BAD),
    (b"/%c0%ae%c0%ae/", BAD),  # overlong "."
    (b"/%c0%af", BAD),  # overlong "/"
    (b"/%e0%80%ae", BAD),  # 3-byte overlong "."
    (b"/%ed%a0%80", BAD),  # UTF-16 surrogate
    (b"/%ff", BAD),
    (b"/\xff", BAD),
    (b"/%c3", BAD),  # truncated sequence
    (b"/%", BAD),
    (b"/%4", BAD),
    (b"/%zz", BAD),
    (b"/%%41", BAD),
    (b"/%+1", BAD),
    (b"/% 1", BAD),
    (b"/a\\..\\b", "/a\\..\\b"),  # backslash is a literal character
    (b"/..\\..\\etc", "/..\\..\\etc"),  # one segment named "..\\..\\etc", not ".."
    (b"/a/..\\/../..", "/"),  # "..\\" is an ordinary segment that ".." removes
    (b"/a/..\\/../../..", BAD),
    (b"/%5c..%5c", "/\\..\\"),
    (b"//etc/passwd", "/etc/passwd"),
    (b"///", "/"),
    (b"//a///b//", "/a/b/"),
    (b"/./a", "/a"),
    (b"/.", "/"),
    (b"/./", "/"),
    (b"/a/.//..//b", "/b"),
    (b"", BAD),
    (b"*", BAD),
    (b"a/b", BAD),
    (b"http://evil/x", BAD),
    (b"%2fetc/passwd", BAD),
    (b"\\windows", BAD),
]


@pytest.mark.parametrize(("raw", "expected"), NORMAL + HOSTILE, ids=repr)
def test_normalize_path(raw: bytes, expected: str | type[BadPath]) -> None:
    if expected is BAD:
        with pytest.raises(BadPath) as info:
            normalize_path(raw)
        assert info.value.reason
        assert str(info.value) == info.value.reason
    else:
        assert normalize_path(raw) == expected


def test_enough_hostile_cases() -> None:
    assert len(HOSTILE) >= 30


def test_bad_path_is_value_error() -> None:
    assert issubclass(BadPath, ValueError)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"/..", "root"),
        (b"/%zz", "percent"),
        (b"/%ff", "UTF-8"),
        (b"/a%00", "NUL"),
        (b"/a%01", "control"),
        (b"x", "start"),
    ],
)
def test_reasons(raw: bytes, fragment: str) -> None:
    with pytest.raises(BadPath, match=fragment):
        normalize_path(raw)


_SEGMENT_TEXT = st.sampled_from(["a", "b", ".", "..", "", "%2e", "%2E%2e", "%2f", "%41", "c%20d"])


@given(st.lists(_SEGMENT_TEXT, max_size=8))
def test_normalized_paths_are_canonical(segments: list[str]) -> None:
    raw = ("/" + "/".join(segments)).encode()
    try:
        result = normalize_path(raw)
    except BadPath:
        return
    assert result.startswith("/")
    assert "//" not in result
    parts = result.split("/")
    assert "." not in parts
    assert ".." not in parts
    # Idempotent except that a %2F text stays as it is.
    assert normalize_path(result.encode()) == result


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        (b"/", b"/", b""),
        (b"/p", b"/p", b""),
        (b"/p?q=1", b"/p", b"q=1"),
        (b"/p?", b"/p", b""),
        (b"/p?a?b", b"/p", b"a?b"),
        (b"/p%3Fx?y", b"/p%3Fx", b"y"),
        (b"http://host/p?q", b"/p", b"q"),
        (b"HTTP://Host:80/a/b", b"/a/b", b""),
        (b"https://host", b"/", b""),
        (b"https://host?x=1", b"/", b"x=1"),
        (b"http://host/", b"/", b""),
        (b"*", b"*", b""),
        (b"example.com:443", b"example.com:443", b""),
        (b"ftp://host/p", b"ftp://host/p", b""),
    ],
)
def test_split_target(target: bytes, path: bytes, query: bytes) -> None:
    assert split_target(target) == (path, query)


def test_asterisk_form_is_rejected_by_normalize() -> None:
    path, _ = split_target(b"*")
    with pytest.raises(BadPath):
        normalize_path(path)


@pytest.mark.parametrize(
    ("target", "host", "rest"),
    [
        (b"http://example.com/p?q", "example.com", b"/p?q"),
        (b"https://Example.com:8443", "Example.com:8443", b"/"),
        (b"http://[::1]:3000/x", "[::1]:3000", b"/x"),
        (b"http://h?q", "h", b"/?q"),
        (b"/p?q", None, b"/p?q"),
        (b"*", None, b"*"),
    ],
)
def test_absolute_form_host(target: bytes, host: str | None, rest: bytes) -> None:
    assert absolute_form_host(target) == (host, rest)


@pytest.mark.parametrize("target", [b"http:///p", b"http://user@host/p", b"http://h\xc3\xa9/p"])
def test_absolute_form_host_rejects(target: bytes) -> None:
    with pytest.raises(BadPath):
        absolute_form_host(target)


def test_upstream_target_agrees_with_routing() -> None:
    """What goes upstream normalises to what routing matched, with no dot segment left."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from bext.routing.path import BadPath, normalize_path, split_target, upstream_target

    segment = st.sampled_from(["a", "b", ".", "..", "", "%2e", "%2E%2e", "x%2Fy", "%41", "~"])

    @settings(max_examples=400, deadline=None)
    @given(st.lists(segment, max_size=8), st.booleans(), st.sampled_from(["", "?q=/../x", "?"]))
    def check(segments: list[str], absolute: bool, query: str) -> None:
        raw = ("/" + "/".join(segments) + query).encode()
        target = b"http://h.test" + raw if absolute else raw
        try:
            routed = normalize_path(split_target(target)[0])
        except BadPath:
            return  # refused before any proxying
        sent = upstream_target(target)
        path = sent.partition(b"?")[0]
        assert normalize_path(path) == routed
        assert not any(
            part in (b".", b"..") for part in path.lower().replace(b"%2e", b".").split(b"/")
        )

    check()
