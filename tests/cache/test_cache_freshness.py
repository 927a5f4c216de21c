from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bext.cache.directives import CacheControl
from bext.cache.freshness import (
    HEURISTIC_CAP,
    Decision,
    Lifetime,
    LifetimeSource,
    Outcome,
    age_header_value,
    age_value,
    current_age,
    evaluate,
    explicit_lifetime,
    forbids_stale,
    freshness_lifetime,
    heuristic_lifetime,
    initial_age,
    on_miss,
    stale_if_error_allowed,
)
from bext.http.date import format_http_date
from bext.protocol.events import Headers

NOW = 1_700_000_000.0
DATE = format_http_date(NOW)


def h(*pairs: tuple[str, str]) -> Headers:
    return [(name.encode(), value.encode()) for name, value in pairs]


def date(offset: float) -> str:
    return format_http_date(NOW + offset).decode()


# --- lifetime -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (h(), None),
        (h(("Cache-Control", "max-age=60")), Lifetime(60, LifetimeSource.MAX_AGE)),
        (h(("Cache-Control", "max-age=60, s-maxage=10")), Lifetime(10, LifetimeSource.S_MAXAGE)),
        (
            h(("Surrogate-Control", "max-age=999"), ("Cache-Control", "s-maxage=10")),
            Lifetime(999, LifetimeSource.SURROGATE_CONTROL),
        ),
        (
            h(("Date", date(0)), ("Expires", date(120))),
            Lifetime(120, LifetimeSource.EXPIRES),
        ),
        (
            h(("Date", date(0)), ("Expires", date(-120))),
            Lifetime(0, LifetimeSource.EXPIRES),
        ),
        (h(("Expires", "0")), Lifetime(0, LifetimeSource.EXPIRES)),
        (h(("Expires", "")), Lifetime(0, LifetimeSource.EXPIRES)),
        # Expires ignored in the presence of max-age (RFC 9111 §5.3).
        (
            h(("Date", date(0)), ("Expires", date(120)), ("Cache-Control", "max-age=5")),
            Lifetime(5, LifetimeSource.MAX_AGE),
        ),
        # No Date: Expires counts from the response time.
        (h(("Expires", date(30))), Lifetime(30, LifetimeSource.EXPIRES)),
        # Invalid Date: likewise.
        (h(("Date", "yesterday"), ("Expires", date(30))), Lifetime(30, LifetimeSource.EXPIRES)),
        # First of two Expires lines.
        (
            h(("Date", date(0)), ("Expires", date(10)), ("Expires", date(99))),
            Lifetime(10, LifetimeSource.EXPIRES),
        ),
        # Invalid max-age means stale, and it still hides Expires.
        (
            h(("Cache-Control", "max-age=soon"), ("Expires", date(100))),
            Lifetime(0, LifetimeSource.MAX_AGE),
        ),
    ],
)
def test_explicit_lifetime(headers: Headers, expected: Lifetime | None) -> None:
    assert explicit_lifetime(headers, response_time=NOW) == expected


def test_explicit_sources() -> None:
    assert LifetimeSource.MAX_AGE.explicit
    assert LifetimeSource.EXPIRES.explicit
    assert LifetimeSource.SURROGATE_CONTROL.explicit
    assert not LifetimeSource.HEURISTIC.explicit
    assert not LifetimeSource.DEFAULT_TTL.explicit
    assert not LifetimeSource.NONE.explicit


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (200, h(("Date", date(0)), ("Last-Modified", date(-1000))), 100.0),
        (404, h(("Date", date(0)), ("Last-Modified", date(-1000))), 100.0),
        (200, h(("Last-Modified", date(-1000))), 100.0),
        (200, h(("Date", date(0)), ("Last-Modified", date(-(10**8)))), HEURISTIC_CAP),
        (200, h(("Date", date(0)), ("Last-Modified", date(50))), 0.0),
        (302, h(("Date", date(0)), ("Last-Modified", date(-1000))), None),
        (206, h(("Date", date(0)), ("Last-Modified", date(-1000))), None),
        (500, h(("Date", date(0)), ("Last-Modified", date(-1000))), None),
        (200, h(("Date", date(0))), None),
        (200, h(("Last-Modified", "garbage")), None),
    ],
)
def test_heuristic_lifetime(status: int, headers: Headers, expected: float | None) -> None:
    assert heuristic_lifetime(status, headers, response_time=NOW) == expected


def test_heuristic_parameters() -> None:
    headers = h(("Date", date(0)), ("Last-Modified", date(-1000)))
    assert heuristic_lifetime(200, headers, response_time=NOW, fraction=0.5, cap=300) == 300


@pytest.mark.parametrize(
    ("status", "headers", "default_ttl", "expected"),
    [
        (200, h(("Cache-Control", "max-age=7")), 100, Lifetime(7, LifetimeSource.MAX_AGE)),
        (200, h(("Cache-Control", "max-age=0")), 100, Lifetime(0, LifetimeSource.MAX_AGE)),
        (200, h(), 100, Lifetime(100, LifetimeSource.DEFAULT_TTL)),
        (200, h(("Last-Modified", date(-1000))), 30, Lifetime(30, LifetimeSource.DEFAULT_TTL)),
        (200, h(("Last-Modified", date(-1000))), 0, Lifetime(100, LifetimeSource.HEURISTIC)),
        (200, h(), 0, Lifetime(0, LifetimeSource.NONE)),
        (302, h(), 100, Lifetime(0, LifetimeSource.NONE)),
        (302, h(("Cache-Control", "max-age=9")), 0, Lifetime(9, LifetimeSource.MAX_AGE)),
    ],
)
def test_freshness_lifetime(
    status: int, headers: Headers, default_ttl: float, expected: Lifetime
) -> None:
    assert (
        freshness_lifetime(status, headers, response_time=NOW, default_ttl=default_ttl) == expected
    )


# --- age ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (h(), 0),
        (h(("Age", "30")), 30),
        (h(("Age", " 30 ")), 30),
        (h(("Age", "30, 40")), 30),
        (h(("Age", "30"), ("Age", "40")), 30),
        (h(("Age", "-1")), 0),
        (h(("Age", "abc")), 0),
        (h(("Age", "")), 0),
        (h(("Age", "99999999999999")), 2**31),
    ],
)
def test_age_value(headers: Headers, expected: int) -> None:
    assert age_value(headers) == expected


@pytest.mark.parametrize(
    ("headers", "request_time", "response_time", "expected"),
    [
        # Date equals response time, no Age, instant response: age 0.
        (h(("Date", date(0))), NOW, NOW, 0.0),
        # Response delay counts towards the corrected Age value.
        (h(("Date", date(0)), ("Age", "10")), NOW - 2, NOW, 12.0),
        # Apparent age from an older Date wins when larger.
        (h(("Date", date(-100)), ("Age", "10")), NOW - 2, NOW, 100.0),
        # A Date in the future gives no negative age.
        (h(("Date", date(100))), NOW, NOW, 0.0),
        # No Date: only Age and delay.
        (h(("Age", "5")), NOW - 1, NOW, 6.0),
        # Clock going backwards between request and response: delay clamped to 0.
        (h(("Age", "5")), NOW + 3, NOW, 5.0),
    ],
)
def test_initial_age(
    headers: Headers, request_time: float, response_time: float, expected: float
) -> None:
    assert initial_age(headers, request_time=request_time, response_time=response_time) == expected


def test_current_age() -> None:
    assert current_age(12.0, response_time=NOW, now=NOW + 30) == 42.0
    assert current_age(12.0, response_time=NOW, now=NOW - 30) == 12.0


@pytest.mark.parametrize(
    ("age", "expected"), [(0, b"0"), (1.9, b"1"), (-3, b"0"), (2.0**40, b"2147483648")]
)
def test_age_header_value(age: float, expected: bytes) -> None:
    assert age_header_value(age) == expected


# --- evaluate -------------------------------------------------------------------------

PUBLIC = h(("Cache-Control", "max-age=60"))


@pytest.mark.parametrize(
    ("request_headers", "response_headers", "lifetime", "age", "outcome"),
    [
        (h(), PUBLIC, 60, 10, Outcome.FRESH),
        (h(), PUBLIC, 60, 60, Outcome.MUST_VALIDATE),
        (h(), PUBLIC, 60, 61, Outcome.MUST_VALIDATE),
        (h(), PUBLIC, 0, 0, Outcome.MUST_VALIDATE),
        # Request no-cache and Pragma.
        (h(("Cache-Control", "no-cache")), PUBLIC, 60, 1, Outcome.MUST_VALIDATE),
        (h(("Pragma", "no-cache")), PUBLIC, 60, 1, Outcome.MUST_VALIDATE),
        (h(("Pragma", "no-cache"), ("Cache-Control", "max-age=100")), PUBLIC, 60, 1, Outcome.FRESH),
        # Response no-cache, qualified or not, always validates.
        (h(), h(("Cache-Control", "no-cache, max-age=60")), 60, 1, Outcome.MUST_VALIDATE),
        (h(), h(("Cache-Control", 'no-cache="set-cookie"')), 60, 1, Outcome.MUST_VALIDATE),
        # Request max-age.
        (h(("Cache-Control", "max-age=5")), PUBLIC, 60, 5, Outcome.FRESH),
        (h(("Cache-Control", "max-age=5")), PUBLIC, 60, 6, Outcome.MUST_VALIDATE),
        (h(("Cache-Control", "max-age=0")), PUBLIC, 60, 0.5, Outcome.MUST_VALIDATE),
        # Request min-fresh.
        (h(("Cache-Control", "min-fresh=20")), PUBLIC, 60, 40, Outcome.FRESH),
        (h(("Cache-Control", "min-fresh=20")), PUBLIC, 60, 41, Outcome.MUST_VALIDATE),
        # Request max-stale.
        (h(("Cache-Control", "max-stale")), PUBLIC, 60, 10_000, Outcome.STALE_ALLOWED),
        (h(("Cache-Control", "max-stale=10")), PUBLIC, 60, 70, Outcome.STALE_ALLOWED),
        (h(("Cache-Control", "max-stale=10")), PUBLIC, 60, 71, Outcome.MUST_VALIDATE),
        (h(("Cache-Control", "max-stale, max-age=65")), PUBLIC, 60, 70, Outcome.MUST_VALIDATE),
        # max-stale does not override must-revalidate / proxy-revalidate / s-maxage.
        (
            h(("Cache-Control", "max-stale")),
            h(("Cache-Control", "max-age=60, must-revalidate")),
            60,
            70,
            Outcome.MUST_VALIDATE,
        ),
        (
            h(("Cache-Control", "max-stale")),
            h(("Cache-Control", "max-age=60, proxy-revalidate")),
            60,
            70,
            Outcome.MUST_VALIDATE,
        ),
        (
            h(("Cache-Control", "max-stale")),
            h(("Cache-Control", "s-maxage=60")),
            60,
            70,
            Outcome.MUST_VALIDATE,
        ),
        # must-revalidate does not matter while fresh.
        (h(), h(("Cache-Control", "max-age=60, must-revalidate")), 60, 10, Outcome.FRESH),
        # stale-while-revalidate.
        (
            h(),
            h(("Cache-Control", "max-age=60, stale-while-revalidate=30")),
            60,
            90,
            Outcome.STALE_WHILE_REVALIDATE,
        ),
        (
            h(),
            h(("Cache-Control", "max-age=60, stale-while-revalidate=30")),
            60,
            91,
            Outcome.MUST_VALIDATE,
        ),
        (
            h(),
            h(("Cache-Control", "max-age=60, stale-while-revalidate=30, must-revalidate")),
            60,
            70,
            Outcome.MUST_VALIDATE,
        ),
        (h(), h(("Cache-Control", "max-age=60, stale-while-revalidate=30")), 60, 10, Outcome.FRESH),
        (
            h(),
            h(
                ("Cache-Control", "max-age=60, stale-while-revalidate=30"),
                ("Surrogate-Control", "stale-while-revalidate=300"),
            ),
            60,
            200,
            Outcome.STALE_WHILE_REVALIDATE,
        ),
        (
            h(),
            h(
                ("Cache-Control", "max-age=60, stale-while-revalidate=300"),
                ("Surrogate-Control", "stale-while-revalidate=5"),
            ),
            60,
            200,
            Outcome.MUST_VALIDATE,
        ),
        # Request no-cache beats stale-while-revalidate.
        (
            h(("Cache-Control", "no-cache")),
            h(("Cache-Control", "max-age=60, stale-while-revalidate=30")),
            60,
            70,
            Outcome.MUST_VALIDATE,
        ),
        # only-if-cached.
        (h(("Cache-Control", "only-if-cached")), PUBLIC, 60, 10, Outcome.FRESH),
        (h(("Cache-Control", "only-if-cached")), PUBLIC, 60, 70, Outcome.GATEWAY_TIMEOUT),
        (h(("Cache-Control", "only-if-cached, max-stale")), PUBLIC, 60, 70, Outcome.STALE_ALLOWED),
        (
            h(("Cache-Control", "only-if-cached")),
            h(("Cache-Control", "max-age=60, stale-while-revalidate=30")),
            60,
            70,
            Outcome.STALE_WHILE_REVALIDATE,
        ),
        # Authorization (RFC 9111 §3.5).
        (h(("authorization", "Bearer x")), PUBLIC, 60, 10, Outcome.UNUSABLE),
        (
            h(("authorization", "Bearer x")),
            h(("Cache-Control", "public, max-age=60")),
            60,
            10,
            Outcome.FRESH,
        ),
        (
            h(("authorization", "Bearer x")),
            h(("Cache-Control", "s-maxage=60")),
            60,
            10,
            Outcome.FRESH,
        ),
        (
            h(("authorization", "Bearer x")),
            h(("Cache-Control", "max-age=60, must-revalidate")),
            60,
            10,
            Outcome.FRESH,
        ),
        (
            h(("authorization", "Bearer x"), ("Cache-Control", "only-if-cached")),
            PUBLIC,
            60,
            10,
            Outcome.GATEWAY_TIMEOUT,
        ),
    ],
)
def test_evaluate(
    request_headers: Headers,
    response_headers: Headers,
    lifetime: float,
    age: float,
    outcome: Outcome,
) -> None:
    decision = evaluate(request_headers, response_headers, lifetime=lifetime, age=age)
    assert decision == Decision(outcome, lifetime - age, age)


def test_on_miss() -> None:
    assert on_miss(h()) is Outcome.MISS
    assert on_miss(h(("cache-control", "only-if-cached"))) is Outcome.GATEWAY_TIMEOUT
    assert on_miss(h(("cache-control", "ONLY-IF-CACHED, max-age=0"))) is Outcome.GATEWAY_TIMEOUT


@pytest.mark.parametrize(
    ("cc", "forbids"),
    [
        (CacheControl(), False),
        (CacheControl(max_age=5), False),
        (CacheControl(no_cache=True), True),
        (CacheControl(must_revalidate=True), True),
        (CacheControl(proxy_revalidate=True), True),
        (CacheControl(s_maxage=5), True),
    ],
)
def test_forbids_stale(cc: CacheControl, forbids: bool) -> None:
    assert forbids_stale(cc) is forbids


@pytest.mark.parametrize(
    ("request_headers", "response_headers", "lifetime", "age", "allowed"),
    [
        (h(), h(("Cache-Control", "max-age=60, stale-if-error=100")), 60, 160, True),
        (h(), h(("Cache-Control", "max-age=60, stale-if-error=100")), 60, 161, False),
        (h(), h(("Cache-Control", "max-age=60")), 60, 61, False),
        (h(), h(("Cache-Control", "max-age=60")), 60, 30, True),
        (
            h(("Cache-Control", "stale-if-error=50")),
            h(("Cache-Control", "max-age=60")),
            60,
            110,
            True,
        ),
        (
            h(("Cache-Control", "stale-if-error=50")),
            h(("Cache-Control", "max-age=60")),
            60,
            111,
            False,
        ),
        (
            h(),
            h(("Cache-Control", "max-age=60"), ("Surrogate-Control", "stale-if-error=1000")),
            60,
            900,
            True,
        ),
        (
            h(),
            h(("Cache-Control", "max-age=60, stale-if-error=100, must-revalidate")),
            60,
            70,
            False,
        ),
        (h(), h(("Cache-Control", "s-maxage=60, stale-if-error=100")), 60, 70, False),
        (h(), h(("Cache-Control", "max-age=60, stale-if-error=100, no-cache")), 60, 30, False),
        (
            h(("authorization", "x")),
            h(("Cache-Control", "max-age=60, stale-if-error=100")),
            60,
            70,
            False,
        ),
        (
            h(("authorization", "x")),
            h(("Cache-Control", "public, max-age=60, stale-if-error=100")),
            60,
            70,
            True,
        ),
    ],
)
def test_stale_if_error(
    request_headers: Headers,
    response_headers: Headers,
    lifetime: float,
    age: float,
    allowed: bool,
) -> None:
    assert (
        stale_if_error_allowed(request_headers, response_headers, lifetime=lifetime, age=age)
        is allowed
    )


@given(
    st.lists(st.binary(max_size=40), max_size=3),
    st.lists(st.binary(max_size=40), max_size=3),
    st.floats(min_value=0, max_value=1e6),
    st.floats(min_value=0, max_value=1e6),
)
def test_evaluate_never_raises(
    request_lines: list[bytes], response_lines: list[bytes], lifetime: float, age: float
) -> None:
    request = [(b"cache-control", line) for line in request_lines]
    response = [(b"cache-control", line) for line in response_lines]
    decision = evaluate(request, response, lifetime=lifetime, age=age)
    if decision.outcome is Outcome.FRESH:
        assert age < lifetime
    stale_if_error_allowed(request, response, lifetime=lifetime, age=age)


def test_lifecycle_of_a_stored_response() -> None:
    """Store at t0 with Age 10 and max-age 60; it is fresh, then served stale, then validated."""
    response = h(
        ("Date", date(-2)),
        ("Age", "10"),
        ("Cache-Control", "max-age=60, stale-while-revalidate=20"),
    )
    lifetime = freshness_lifetime(200, response, response_time=NOW).seconds
    initial = initial_age(response, request_time=NOW - 1, response_time=NOW)
    assert initial == 11.0

    def outcome_at(t: float) -> Outcome:
        age = current_age(initial, response_time=NOW, now=NOW + t)
        return evaluate(h(), response, lifetime=lifetime, age=age).outcome

    assert outcome_at(0) is Outcome.FRESH
    assert outcome_at(48) is Outcome.FRESH
    assert outcome_at(49) is Outcome.STALE_WHILE_REVALIDATE
    assert outcome_at(69) is Outcome.STALE_WHILE_REVALIDATE
    assert outcome_at(70) is Outcome.MUST_VALIDATE
