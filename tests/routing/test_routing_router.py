"""Router: first-match semantics across host-specific, wildcard and any-host rules."""

from __future__ import annotations

from dataclasses import dataclass
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bext.routing import router as router_module
from bext.routing.glob import compile_glob
from bext.routing.router import Router


@dataclass(frozen=True)
class Rule:
    pattern: str
    host: str | None = None
    name: str = ""


def names(router: Router[Rule], cases: list[tuple[str | None, str]]) -> list[str | None]:
    out: list[str | None] = []
    for host, path in cases:
        rule = router.match(host, path)
        out.append(None if rule is None else rule.name)
    return out


def test_seed_table() -> None:
    router = Router(
        [
            Rule("/static/**", None, "static"),
            Rule("/favicon.ico", None, "favicon"),
            Rule("/**", None, "django"),
        ]
    )
    assert names(
        router,
        [
            ("example.com", "/static/app.css"),
            ("example.com", "/static"),
            ("example.com", "/staticfoo"),
            ("example.com:8080", "/favicon.ico"),
            (None, "/favicon.ico/"),
            (None, "/"),
        ],
    ) == ["static", "static", "django", "favicon", "django", "django"]


def test_empty_router_matches_nothing() -> None:
    router: Router[Rule] = Router([])
    assert router.match("example.com", "/") is None
    assert router.match(None, "/") is None


def test_no_match_returns_none() -> None:
    router = Router([Rule("/a", None, "a"), Rule("/b/**", "example.com", "b")])
    assert router.match("example.com", "/c") is None
    assert router.match("other.com", "/b/x") is None
    assert router.match(None, "/b") is None


def test_first_match_wins_exact_after_prefix() -> None:
    router = Router([Rule("/a/**", None, "prefix"), Rule("/a/b", None, "exact")])
    assert names(router, [(None, "/a/b"), (None, "/a")]) == ["prefix", "prefix"]


def test_first_match_wins_exact_before_prefix() -> None:
    router = Router([Rule("/a/b", None, "exact"), Rule("/a/**", None, "prefix")])
    assert names(router, [(None, "/a/b"), (None, "/a/c"), (None, "/a")]) == [
        "exact",
        "prefix",
        "prefix",
    ]


def test_duplicate_exact_keeps_first() -> None:
    router = Router([Rule("/a", None, "first"), Rule("/a", None, "second")])
    assert names(router, [(None, "/a")]) == ["first"]


def test_regex_between_exacts() -> None:
    router = Router(
        [
            Rule("/x/*.css", None, "css"),
            Rule("/x/a.css", None, "exact"),
            Rule("/x/b.js", None, "js"),
            Rule("/x/*", None, "any-x"),
        ]
    )
    assert names(router, [(None, "/x/a.css"), (None, "/x/b.js"), (None, "/x/c")]) == [
        "css",
        "js",
        "any-x",
    ]


def test_rules_after_catch_all_are_unreachable() -> None:
    router = Router(
        [Rule("/a", None, "a"), Rule("/**", None, "all"), Rule("/b", None, "b")],
    )
    assert names(router, [(None, "/a"), (None, "/b"), ("h", "/b")]) == ["a", "all", "all"]


def test_host_specific_catch_all_does_not_shadow_other_hosts() -> None:
    router = Router(
        [
            Rule("/**", "admin.example.com", "admin"),
            Rule("/**", "*.example.com", "tenant"),
            Rule("/static/**", None, "static"),
            Rule("/**", None, "django"),
        ]
    )
    assert names(
        router,
        [
            ("admin.example.com", "/static/x"),
            ("shop.example.com", "/static/x"),
            ("example.com", "/static/x"),
            ("example.com", "/x"),
            (None, "/x"),
        ],
    ) == ["admin", "tenant", "static", "django", "django"]


def test_any_host_rule_before_host_rule_wins() -> None:
    router = Router(
        [
            Rule("/health", None, "health"),
            Rule("/**", "example.com", "site"),
            Rule("/**", "*.example.com", "sub"),
        ]
    )
    assert names(
        router,
        [
            ("example.com", "/health"),
            ("a.example.com", "/health"),
            ("example.com", "/x"),
            ("a.example.com", "/x"),
            ("other.org", "/x"),
        ],
    ) == ["health", "health", "site", "sub", None]


def test_wildcard_before_exact_host_rule_wins_for_that_host() -> None:
    router = Router(
        [
            Rule("/api/**", "*.example.com", "wild-api"),
            Rule("/api/**", "www.example.com", "www-api"),
            Rule("/**", "www.example.com", "www"),
        ]
    )
    assert names(
        router,
        [("www.example.com", "/api/v1"), ("www.example.com", "/x"), ("x.example.com", "/x")],
    ) == ["wild-api", "www", None]


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("example.com", "exact"),
        ("EXAMPLE.COM", "exact"),
        ("example.com.", "exact"),
        ("Example.Com.:8443", "exact"),
        ("example.com:80", "exact"),
        ("a.example.com", "wild"),
        ("A.B.Example.com:1", "wild"),
        ("deep.a.example.com.", "wild"),
        (".example.com", "any"),
        ("badexample.com", "any"),
        ("example.com.evil", "any"),
        ("[::1]:3000", "v6"),
        ("[::1]", "v6"),
        ("::1", "v6"),
        ("[::2]:3000", "any"),
        ("127.0.0.1:8000", "v4"),
        ("", "any"),
        (None, "any"),
    ],
)
def test_host_matching(host: str | None, expected: str) -> None:
    router = Router(
        [
            Rule("/", "example.com", "exact"),
            Rule("/", "*.example.com", "wild"),
            Rule("/", "[::1]", "v6"),
            Rule("/", "127.0.0.1", "v4"),
            Rule("/", None, "any"),
        ]
    )
    rule = router.match(host, "/")
    assert rule is not None
    assert rule.name == expected


def test_nested_wildcards_longest_and_order() -> None:
    router = Router(
        [
            Rule("/a", "*.example.com", "outer-a"),
            Rule("/a", "*.b.example.com", "inner-a"),
            Rule("/b", "*.b.example.com", "inner-b"),
            Rule("/b", "*.example.com", "outer-b"),
        ]
    )
    assert names(
        router,
        [
            ("x.b.example.com", "/a"),
            ("x.b.example.com", "/b"),
            ("b.example.com", "/b"),
            ("x.c.example.com", "/b"),
            ("example.com", "/a"),
        ],
    ) == ["outer-a", "inner-b", "outer-b", "outer-b", None]


def test_many_wildcard_suffixes() -> None:
    rules = [Rule("/**", f"*.t{i}.example.com", f"t{i}") for i in range(20)]
    rules.append(Rule("/**", "*.example.com", "generic"))
    router = Router(rules)
    assert names(
        router,
        [
            ("a.t7.example.com", "/"),
            ("a.b.t19.example.com:443", "/x"),
            ("t7.example.com", "/"),
            ("x" * 5000 + ".t3.example.com", "/"),
            ("a." * 3000 + "evil.org", "/"),
            ("nodots", "/"),
        ],
    ) == ["t7", "t19", "generic", "t3", None, None]


def test_router_keeps_rules_and_generic_type() -> None:
    rules = [Rule("/a", None, "a")]
    router = Router(rules)
    assert router.rules == (rules[0],)
    found = router.match(None, "/a")
    assert found is rules[0]


@pytest.mark.parametrize(
    ("rules", "fragment"),
    [
        ([Rule("/ok"), Rule("nope")], "route #2"),
        ([Rule("/a**")], "whole path segment"),
        ([Rule("/a", "example.com:80")], "port"),
        ([Rule("/a", "a.*.com")], "leading"),
    ],
)
def test_invalid_rules_raise(rules: list[Rule], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        Router(rules)


# -- property test against a naive reference -------------------------------------------


def ref_segment(glob: str, text: str) -> bool:
    """Naive recursive single-segment glob."""
    if not glob:
        return not text
    if glob[0] == "*":
        return any(ref_segment(glob[1:], text[i:]) for i in range(len(text) + 1))
    return bool(text) and text[0] == glob[0] and ref_segment(glob[1:], text[1:])


def ref_segments(globs: list[str], parts: list[str]) -> bool:
    if not globs:
        return not parts
    if globs[0] == "**":
        return any(ref_segments(globs[1:], parts[i:]) for i in range(len(parts) + 1))
    return bool(parts) and ref_segment(globs[0], parts[0]) and ref_segments(globs[1:], parts[1:])


def ref_glob(pattern: str, path: str) -> bool:
    return ref_segments(pattern[1:].split("/"), path[1:].split("/"))


def ref_host(rule_host: str | None, request_host: str | None) -> bool:
    if rule_host is None:
        return True
    if request_host is None:
        return False
    host = request_host.lower()
    if host.startswith("["):
        host = host[1 : host.index("]")]
    elif host.count(":") == 1:
        host = host.split(":")[0]
    host = host.removesuffix(".")
    want = rule_host.lower().removesuffix(".").strip("[]")
    if want.startswith("*."):
        return host.endswith(want[1:]) and len(host) > len(want) - 1
    return host == want


def ref_match(rules: list[Rule], host: str | None, path: str) -> Rule | None:
    for rule in rules:
        if ref_host(rule.host, host) and ref_glob(rule.pattern, path):
            return rule
    return None


SEGMENTS = ["a", "b", "ab", "*", "**", "a*", "*b", "a*b", "*a*", "a*b*b", "x.css", "*.css"]
RULE_HOSTS = [
    None,
    None,
    "example.com",
    "www.example.com",
    "*.example.com",
    "*.www.example.com",
    "Other.org.",
    "[::1]",
]
REQUEST_HOSTS = [
    None,
    "example.com",
    "EXAMPLE.com:8080",
    "www.example.com.",
    "a.www.example.com",
    "x.example.com:1",
    "other.org",
    "unknown.net",
    "[::1]:3000",
    "",
]
PATH_SEGMENTS = ["a", "b", "ab", "abb", "aab", "x.css", "y.css", ""]


@st.composite
def patterns(draw: st.DrawFn) -> str:
    segments = draw(st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=6))
    return "/" + "/".join(segments)


@st.composite
def paths(draw: st.DrawFn) -> str:
    return "/" + "/".join(draw(st.lists(st.sampled_from(PATH_SEGMENTS), max_size=6)))


rule_lists = st.lists(
    st.builds(Rule, patterns(), st.sampled_from(RULE_HOSTS), st.text("xyz", max_size=3)),
    max_size=12,
)


@pytest.mark.parametrize("few_suffixes", [router_module._FEW_SUFFIXES, 0])
@settings(max_examples=300, deadline=None)
@given(
    rule_lists,
    st.lists(st.tuples(st.sampled_from(REQUEST_HOSTS), paths()), min_size=1, max_size=10),
)
def test_router_agrees_with_naive_reference(
    few_suffixes: int, rules: list[Rule], requests: list[tuple[str | None, str]]
) -> None:
    # few_suffixes=0 forces the label-by-label wildcard lookup used for big tables.
    with patch.object(router_module, "_FEW_SUFFIXES", few_suffixes):
        router = Router(rules)
    for host, path in requests:
        assert router.match(host, path) is ref_match(rules, host, path), (host, path)


@settings(max_examples=300, deadline=None)
@given(patterns(), st.lists(paths(), min_size=1, max_size=10))
def test_glob_agrees_with_naive_reference(pattern: str, sample: list[str]) -> None:
    router = Router([Rule(pattern)])
    matcher = compile_glob(pattern)
    for path in sample:
        expected = ref_glob(pattern, path)
        assert matcher(path) is expected, path
        assert (router.match(None, path) is not None) is expected, path
