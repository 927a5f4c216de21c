"""Glob compilation: classification into the cheapest matcher and match tables."""

from __future__ import annotations

import pytest

from bext.routing.glob import GlobKind, compile_glob, validate_glob

# (pattern, paths that match, paths that do not)
CASES: list[tuple[str, list[str], list[str]]] = [
    ("/", ["/"], ["", "/a", "//"]),
    (
        "/robots.txt",
        ["/robots.txt"],
        ["/robots.txt/", "/robots.txt2", "/Robots.txt", "/robotsXtxt"],
    ),
    ("/a/b/", ["/a/b/"], ["/a/b", "/a/b/c"]),
    ("/**", ["/", "/a", "/a/b/c.css", "/.x"], []),
    (
        "/static/**",
        ["/static", "/static/", "/static/a", "/static/a/b.css"],
        ["/staticfoo", "/static.css", "/stat", "/", "/x/static/a", "/Static/a"],
    ),
    ("/a/b/**", ["/a/b", "/a/b/", "/a/b/c/d"], ["/a", "/a/bc", "/a/c/b"]),
    (
        "/files/*.css",
        ["/files/a.css", "/files/.css", "/files/a.b.css"],
        ["/files/a/b.css", "/files/a.cssx", "/files/a.js", "/files.css", "/files/a.css/"],
    ),
    ("/a/*", ["/a/x", "/a/", "/a/x.y"], ["/a", "/a/x/y", "/ab"]),
    ("/*", ["/", "/a", "/a.b"], ["/a/", "/a/b"]),
    ("/*/b", ["/a/b", "/x/b", "//b"], ["/b", "/a/c/b", "/a/bb"]),
    ("/a*b/c", ["/ab/c", "/axxb/c"], ["/a/b/c", "/a/c", "/ab/cd"]),
    ("/a/**/b", ["/a/b", "/a/x/b", "/a/x/y/b"], ["/a", "/ab", "/a/xb", "/a/x/b/c", "/b"]),
    ("/**/b", ["/b", "/x/b", "/x/y/b"], ["/", "/xb", "/b/c", "/bb"]),
    ("/**/*.php", ["/a.php", "/x/y/a.php"], ["/a.php/x", "/aphp"]),
    ("/a/**/**/b", ["/a/b", "/a/x/b", "/a/x/y/z/b"], ["/a/xb"]),
    ("/a*b*c", ["/abc", "/aXbYc", "/abbc", "/abcbc"], ["/ab", "/ac", "/abc/", "/a/b/c", "/bc"]),
    ("/*a*", ["/a", "/xay", "/aa"], ["/", "/b", "/a/b"]),
    ("/a/**/b/**", ["/a/b", "/a/x/b/y", "/a/b/b"], ["/a", "/b/a", "/a/xb"]),
    (
        "/**/a/**/b/*.x",
        ["/a/b/f.x", "/q/a/r/b/f.x", "/a/a/b/b/.x"],
        ["/a/b", "/b/a/f.x", "/a/b/f.y", "/a/f.x"],
    ),
    ("/ab*ba", ["/abba", "/abXba", "/ab-ba"], ["/aba", "/ab", "/ba"]),
    ("/a*b*b", ["/abb", "/axbyb", "/abbb"], ["/ab", "/abx", "/bb"]),
    ("/**/a/b/**/b/**", ["/a/b/b", "/a/b/x/b", "/x/a/b/b/y"], ["/a/b", "/a/b/", "/b/a/b"]),
    ("/static/**/", ["/static/", "/static/a/"], ["/static", "/static/a"]),
    ("/**/x/**", ["/x", "/x/", "/a/x", "/a/b/x/c"], ["/ax", "/xa/b"]),
    ("/a.b/c+d(e)[f]?", ["/a.b/c+d(e)[f]?"], ["/aXb/c+d(e)[f]?", "/a.b/cd(e)f"]),
    ("/a.*", ["/a.b", "/a."], ["/aXb", "/a"]),
    ("/api/*/items/**", ["/api/v1/items", "/api/v1/items/3"], ["/api/v1/itemsx", "/api/items"]),
    ("/é/*", ["/é/x"], ["/e/x"]),
    ("/line\n/*", ["/line\n/x"], ["/line/x"]),
]


@pytest.mark.parametrize(("pattern", "good", "bad"), CASES, ids=[c[0] for c in CASES])
def test_glob_table(pattern: str, good: list[str], bad: list[str]) -> None:
    matcher = compile_glob(pattern)
    for path in good:
        assert matcher(path) is True, (pattern, path)
    for path in bad:
        assert matcher(path) is False, (pattern, path)


@pytest.mark.parametrize(
    ("pattern", "kind", "literal"),
    [
        ("/", GlobKind.EXACT, "/"),
        ("/robots.txt", GlobKind.EXACT, "/robots.txt"),
        ("/a/b/", GlobKind.EXACT, "/a/b/"),
        ("/**", GlobKind.ANY, ""),
        ("/**/**", GlobKind.ANY, ""),
        ("/static/**", GlobKind.PREFIX, "/static"),
        ("/static/**/**", GlobKind.PREFIX, "/static"),
        ("/a/b/**", GlobKind.PREFIX, "/a/b"),
        ("/a.b/**", GlobKind.PREFIX, "/a.b"),
        ("/*/**", GlobKind.REGEX, ""),
        ("/static/**/", GlobKind.REGEX, ""),
        ("/files/*.css", GlobKind.REGEX, ""),
        ("/a/**/b", GlobKind.REGEX, ""),
        ("/**/*.php", GlobKind.REGEX, ""),
        ("/a/**/b/**", GlobKind.SEGMENTS, ""),
        ("/**/x/**", GlobKind.SEGMENTS, ""),
        ("/a*b*c", GlobKind.SEGMENTS, ""),
    ],
)
def test_cheapest_kind(pattern: str, kind: GlobKind, literal: str) -> None:
    matcher = compile_glob(pattern)
    assert matcher.kind is kind
    assert matcher.literal == literal
    assert matcher.pattern == pattern


@pytest.mark.parametrize(
    "pattern",
    ["", "static/**", "*", "**", "/a/***", "/***", "/a**", "/**a", "/a/**b/c", "/a/b**/c", "/x**"],
)
def test_invalid_patterns(pattern: str) -> None:
    error = validate_glob(pattern)
    assert error is not None
    with pytest.raises(ValueError):
        compile_glob(pattern)


@pytest.mark.parametrize("pattern", ["/", "/a", "/**", "/a/**/b", "/*.css", "/a*b*c/*", "/a/b/"])
def test_valid_patterns(pattern: str) -> None:
    assert validate_glob(pattern) is None


def test_validate_messages_mention_pattern() -> None:
    message = validate_glob("/a**")
    assert message is not None
    assert "/a**" in message
    assert "whole path segment" in message


@pytest.mark.parametrize(
    ("pattern", "hostile", "suffix"),
    [
        # Each of these takes seconds to minutes with a backtracking regex.
        ("/**/a/**/b/**/c", "/a" * 2000 + "/b" * 2000, "/c"),
        ("/**/a/**/a/**/a/**/z", "/a" * 4000, "/z"),
        ("/*a*a*a*a*z", "/" + "a" * 8000, "z"),
        ("/x/**/*a*a*a*z", "/x" + "/aaaa" * 2000 + "/" + "a" * 8000, "z"),
    ],
)
def test_no_catastrophic_backtracking(pattern: str, hostile: str, suffix: str) -> None:
    matcher = compile_glob(pattern)
    assert matcher(hostile) is False
    assert matcher(hostile + suffix) is True


def test_single_star_regex_stays_linear_on_long_segments() -> None:
    matcher = compile_glob("/**/*x/y")
    assert matcher("/" + "a" * 8000 + "/" + "a/" * 4000) is False
