"""Freshness and reuse of stored responses (RFC 9111 §4.2, §4.2.4, §5.2; RFC 5861).

The caller keeps, for each stored response, the time the request was sent and the response
received; :func:`initial_age` turns them into the corrected initial age once (at store time),
:func:`current_age` ages it, :func:`freshness_lifetime` says how long the response stays
fresh, and :func:`evaluate` decides what to do with a stored response for a new request.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from bext.cache._fields import first_line, split_list
from bext.cache.authorization import has_authorization, reusable_with_authorization
from bext.cache.directives import (
    CacheControl,
    SurrogateControl,
    parse_delta_seconds,
    request_cache_control,
    response_cache_control,
    surrogate_control,
)
from bext.http.date import parse_http_date
from bext.protocol.events import Headers

HEURISTIC_STATUSES = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})
"""Status codes heuristically cacheable by default (RFC 9110 §15.1); 206 is left out because
this cache stores only full responses."""

HEURISTIC_FRACTION = 0.1
"""The share of the time since ``Last-Modified`` used as heuristic lifetime (§4.2.2)."""

HEURISTIC_CAP = 86400.0
"""The largest heuristic lifetime, in seconds (one day)."""


class LifetimeSource(enum.Enum):
    """Where a freshness lifetime came from (§4.2.1, §4.2.2)."""

    SURROGATE_CONTROL = "surrogate-control"
    S_MAXAGE = "s-maxage"
    MAX_AGE = "max-age"
    EXPIRES = "expires"
    DEFAULT_TTL = "default-ttl"
    HEURISTIC = "heuristic"
    NONE = "none"

    @property
    def explicit(self) -> bool:
        """Whether the origin gave the lifetime explicitly (§4.2.1)."""
        return self in _EXPLICIT


_EXPLICIT = frozenset(
    {
        LifetimeSource.SURROGATE_CONTROL,
        LifetimeSource.S_MAXAGE,
        LifetimeSource.MAX_AGE,
        LifetimeSource.EXPIRES,
    }
)


@dataclass(frozen=True, slots=True)
class Lifetime:
    """A freshness lifetime in seconds and its source."""

    seconds: float
    source: LifetimeSource


def _date(headers: Headers, response_time: float) -> float:
    line = first_line(headers, b"date")
    parsed = parse_http_date(line) if line is not None else None
    # RFC 9110 §6.6.1: a recipient with no (valid) Date uses the time it received the message.
    return float(parsed) if parsed is not None else response_time


def explicit_lifetime(
    response_headers: Headers,
    *,
    response_time: float,
    cache_control: CacheControl | None = None,
    surrogate: SurrogateControl | None = None,
) -> Lifetime | None:
    """The explicit freshness lifetime (RFC 9111 §4.2.1), or ``None`` if there is none.

    Order for this shared edge cache: ``Surrogate-Control: max-age``, then ``s-maxage``, then
    ``max-age``, then ``Expires`` minus ``Date`` (``Expires`` is ignored when either of the
    directives is present, §5.3). An invalid ``Expires`` (such as ``0``) means already
    expired (§5.3); of several ``Expires`` lines the first is used (§4.2.1).
    """
    cc = cache_control if cache_control is not None else response_cache_control(response_headers)
    sc = surrogate if surrogate is not None else surrogate_control(response_headers)
    if sc.max_age is not None:
        return Lifetime(float(sc.max_age), LifetimeSource.SURROGATE_CONTROL)
    if cc.s_maxage is not None:
        return Lifetime(float(cc.s_maxage), LifetimeSource.S_MAXAGE)
    if cc.max_age is not None:
        return Lifetime(float(cc.max_age), LifetimeSource.MAX_AGE)
    expires_line = first_line(response_headers, b"expires")
    if expires_line is None:
        return None
    expires = parse_http_date(expires_line)
    if expires is None:
        return Lifetime(0.0, LifetimeSource.EXPIRES)
    seconds = max(0.0, expires - _date(response_headers, response_time))
    return Lifetime(seconds, LifetimeSource.EXPIRES)


def heuristic_lifetime(
    status: int,
    response_headers: Headers,
    *,
    response_time: float,
    fraction: float = HEURISTIC_FRACTION,
    cap: float = HEURISTIC_CAP,
) -> float | None:
    """A heuristic freshness lifetime (RFC 9111 §4.2.2), or ``None`` where none is allowed.

    Only for heuristically cacheable statuses (RFC 9110 §15.1) with a valid
    ``Last-Modified``: ``fraction`` of the time between ``Last-Modified`` and ``Date``,
    at most ``cap`` seconds. The caller must use it only when there is no explicit lifetime.
    """
    if status not in HEURISTIC_STATUSES:
        return None
    line = first_line(response_headers, b"last-modified")
    last_modified = parse_http_date(line) if line is not None else None
    if last_modified is None:
        return None
    elapsed = _date(response_headers, response_time) - last_modified
    return max(0.0, min(cap, elapsed * fraction))


def freshness_lifetime(
    status: int,
    response_headers: Headers,
    *,
    response_time: float,
    default_ttl: float = 0.0,
    heuristic_fraction: float = HEURISTIC_FRACTION,
    heuristic_cap: float = HEURISTIC_CAP,
) -> Lifetime:
    """The freshness lifetime of a response (RFC 9111 §4.2.1, §4.2.2).

    Explicit lifetime first (:func:`explicit_lifetime`); otherwise, for heuristically
    cacheable statuses only, the operator's ``default_ttl`` if positive, else the
    ``Last-Modified`` heuristic; otherwise 0 with source ``NONE``.
    """
    explicit = explicit_lifetime(response_headers, response_time=response_time)
    if explicit is not None:
        return explicit
    if status in HEURISTIC_STATUSES and default_ttl > 0:
        return Lifetime(float(default_ttl), LifetimeSource.DEFAULT_TTL)
    heuristic = heuristic_lifetime(
        status,
        response_headers,
        response_time=response_time,
        fraction=heuristic_fraction,
        cap=heuristic_cap,
    )
    if heuristic is not None:
        return Lifetime(heuristic, LifetimeSource.HEURISTIC)
    return Lifetime(0.0, LifetimeSource.NONE)


def age_value(response_headers: Headers) -> int:
    """The ``Age`` field value (RFC 9111 §5.1): first member of the first line, or 0 if absent
    or invalid."""
    line = first_line(response_headers, b"age")
    if line is None:
        return 0
    members = split_list(line)
    if not members:
        return 0
    value = parse_delta_seconds(members[0])
    return value if value is not None else 0


def initial_age(response_headers: Headers, *, request_time: float, response_time: float) -> float:
    """The corrected initial age of a response when received (RFC 9111 §4.2.3).

    ``request_time`` is when the request that produced it was sent, ``response_time`` when the
    response was received. Store it; :func:`current_age` needs only it afterwards.
    """
    date_value = _date(response_headers, response_time)
    apparent_age = max(0.0, response_time - date_value)
    response_delay = max(0.0, response_time - request_time)
    corrected_age_value = age_value(response_headers) + response_delay
    return max(apparent_age, corrected_age_value)


def current_age(corrected_initial_age: float, *, response_time: float, now: float) -> float:
    """The current age of a stored response (RFC 9111 §4.2.3)."""
    return corrected_initial_age + max(0.0, now - response_time)


def age_header_value(age: float) -> bytes:
    """The ``Age`` field value to send with a stored response (RFC 9111 §5.1)."""
    return b"%d" % min(max(0, int(age)), 2**31)


class Outcome(enum.Enum):
    """What to do with a request given the stored response (RFC 9111 §4, RFC 5861)."""

    FRESH = "fresh"
    """Serve the stored response."""
    STALE_ALLOWED = "stale-allowed"
    """Serve it stale: the request's ``max-stale`` accepts it (§5.2.1.2)."""
    STALE_WHILE_REVALIDATE = "stale-while-revalidate"
    """Serve it stale and revalidate in the background (RFC 5861 §3)."""
    MUST_VALIDATE = "must-validate"
    """Send a conditional request to the origin before serving (§4.3)."""
    UNUSABLE = "unusable"
    """The stored response may not answer this request at all (§3.5); forward it."""
    MISS = "miss"
    """There is no stored response; forward the request."""
    GATEWAY_TIMEOUT = "gateway-timeout"
    """``only-if-cached`` and nothing usable: answer 504 (§5.2.1.7)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """An :class:`Outcome` with the numbers behind it (seconds)."""

    outcome: Outcome
    ttl: float
    """Remaining freshness, ``lifetime - age`` (negative when stale)."""
    age: float


def on_miss(request_headers: Headers) -> Outcome:
    """The outcome when no stored response matches: ``MISS``, or ``GATEWAY_TIMEOUT`` for
    ``only-if-cached`` (RFC 9111 §5.2.1.7)."""
    if request_cache_control(request_headers).only_if_cached:
        return Outcome.GATEWAY_TIMEOUT
    return Outcome.MISS


def forbids_stale(response: CacheControl) -> bool:
    """Whether the response may never be served stale by a shared cache (RFC 9111 §4.2.4):
    ``no-cache``, ``must-revalidate``, ``proxy-revalidate`` or ``s-maxage`` (§5.2.2.10)."""
    return (
        response.no_cache
        or response.must_revalidate
        or response.proxy_revalidate
        or response.s_maxage is not None
    )


def evaluate(
    request_headers: Headers, response_headers: Headers, *, lifetime: float, age: float
) -> Decision:
    """Decide how a stored response can serve a request (RFC 9111 §4.2, §4.2.4, §5.2; RFC 5861).

    ``lifetime`` comes from :func:`freshness_lifetime`, ``age`` from :func:`current_age`.
    In order: §3.5 ``Authorization`` rules (``UNUSABLE``); response ``no-cache`` and request
    ``no-cache`` force validation; a response fresh enough for the request's ``max-age`` and
    ``min-fresh`` is ``FRESH``; a stale one is ``MUST_VALIDATE`` if the response forbids stale
    use, else ``STALE_ALLOWED`` within the request's ``max-stale``, else
    ``STALE_WHILE_REVALIDATE`` within the response's (or Surrogate-Control's)
    ``stale-while-revalidate`` window, else ``MUST_VALIDATE``. With ``only-if-cached``, every
    outcome that would contact the origin becomes ``GATEWAY_TIMEOUT``.
    """
    request = request_cache_control(request_headers)
    response = response_cache_control(response_headers)
    ttl = lifetime - age
    outcome = _outcome(request, response, surrogate_control(response_headers), ttl, age)
    if has_authorization(request_headers) and not reusable_with_authorization(response):
        outcome = Outcome.UNUSABLE
    if request.only_if_cached and outcome in (Outcome.MUST_VALIDATE, Outcome.UNUSABLE):
        outcome = Outcome.GATEWAY_TIMEOUT
    return Decision(outcome, ttl, age)


def _outcome(
    request: CacheControl,
    response: CacheControl,
    surrogate: SurrogateControl,
    ttl: float,
    age: float,
) -> Outcome:
    if response.no_cache or request.no_cache:
        return Outcome.MUST_VALIDATE
    if ttl > 0:
        if request.max_age is not None and age > request.max_age:
            return Outcome.MUST_VALIDATE
        if request.min_fresh is not None and ttl < request.min_fresh:
            return Outcome.MUST_VALIDATE
        return Outcome.FRESH
    if forbids_stale(response):
        return Outcome.MUST_VALIDATE
    staleness = -ttl
    if (
        request.max_stale is not None
        and staleness <= request.max_stale
        and (request.max_age is None or age <= request.max_age)
    ):
        return Outcome.STALE_ALLOWED
    window = _window(response.stale_while_revalidate, surrogate.stale_while_revalidate)
    if window is not None and staleness <= window:
        return Outcome.STALE_WHILE_REVALIDATE
    return Outcome.MUST_VALIDATE


def _window(cache_control: int | None, surrogate: int | None) -> int | None:
    return surrogate if surrogate is not None else cache_control


def stale_if_error_allowed(
    request_headers: Headers, response_headers: Headers, *, lifetime: float, age: float
) -> bool:
    """Whether a stale response may be served when the origin fails (RFC 5861 §4).

    The window is the response's ``stale-if-error`` (``Surrogate-Control`` first) or, if the
    request has one, the request's. Never when the response forbids stale use
    (:func:`forbids_stale`, RFC 9111 §4.2.4), nor past §3.5's ``Authorization`` rules.
    """
    response = response_cache_control(response_headers)
    if forbids_stale(response):
        return False
    if has_authorization(request_headers) and not reusable_with_authorization(response):
        return False
    staleness = age - lifetime
    if staleness <= 0:
        return True
    request = request_cache_control(request_headers)
    windows = [
        w
        for w in (
            _window(response.stale_if_error, surrogate_control(response_headers).stale_if_error),
            request.stale_if_error,
        )
        if w is not None
    ]
    return any(staleness <= w for w in windows)
