"""May a shared cache store this response (RFC 9111 §3, §3.1, §3.5)?

:func:`storability` returns the first reason not to store, or none. This cache stores only
complete responses to ``GET``; a ``HEAD`` can be answered from a stored ``GET`` but is never
stored itself.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from bext.cache._fields import field_lines, has_field, split_list
from bext.cache.authorization import has_authorization, reusable_with_authorization
from bext.cache.directives import request_cache_control, response_cache_control, surrogate_control
from bext.cache.freshness import HEURISTIC_STATUSES, explicit_lifetime
from bext.protocol.events import Headers

UNDERSTOOD_STATUSES = HEURISTIC_STATUSES | frozenset({302, 303, 307})
"""Final status codes whose caching rules this cache implements (RFC 9111 §3). Those outside
:data:`~bext.cache.freshness.HEURISTIC_STATUSES` need explicit freshness to be stored."""


class Reason(enum.Enum):
    """Why a response is not stored."""

    METHOD = "method"
    """Only ``GET`` responses are stored (§3, §2)."""
    PARTIAL = "partial"
    """206: only complete responses are stored (§3.3 is not implemented)."""
    STATUS = "status"
    """Not a final status this cache understands (§3)."""
    REQUEST_NO_STORE = "request-no-store"
    """The request said ``no-store`` (§5.2.1.5)."""
    NO_STORE = "no-store"
    """The response said ``no-store`` (§5.2.2.5)."""
    SURROGATE_NO_STORE = "surrogate-no-store"
    """``Surrogate-Control: no-store``."""
    PRIVATE = "private"
    """``private``, qualified or not (§5.2.2.7): a shared cache keeps none of it."""
    AUTHORIZATION = "authorization"
    """``Authorization`` without ``public``, ``s-maxage`` or ``must-revalidate`` (§3.5)."""
    SET_COOKIE = "set-cookie"
    """The response sets a cookie and the caller did not allow storing it."""
    VARY_STAR = "vary-star"
    """``Vary: *`` never matches a later request (§4.1)."""
    NO_FRESHNESS = "no-freshness"
    """No explicit freshness, no validator and no ``default_ttl`` (or no heuristic status)."""


@dataclass(frozen=True, slots=True)
class Storability:
    """The verdict of :func:`storability`; ``reason`` is ``None`` when storable."""

    reason: Reason | None = None

    @property
    def storable(self) -> bool:
        """Whether the response may be stored."""
        return self.reason is None


def has_validator(response_headers: Headers) -> bool:
    """Whether the response has a validator: ``ETag`` or ``Last-Modified`` (RFC 9110 §8.8)."""
    return has_field(response_headers, b"etag") or has_field(response_headers, b"last-modified")


def vary_star(response_headers: Headers) -> bool:
    """Whether ``Vary`` lists ``*`` (RFC 9110 §12.5.5)."""
    return any(
        member == b"*"
        for line in field_lines(response_headers, b"vary")
        for member in split_list(line)
    )


def storability(
    method: str,
    status: int,
    request_headers: Headers,
    response_headers: Headers,
    *,
    allow_set_cookie: bool = False,
    default_ttl: float = 0.0,
    response_time: float = 0.0,
) -> Storability:
    """Whether a shared cache may store the response (RFC 9111 §3, §3.5).

    Checks, in order: method ``GET``; status (206 is never stored; otherwise one of
    :data:`UNDERSTOOD_STATUSES`); ``no-store`` in the request, in ``Surrogate-Control`` or in
    ``Cache-Control`` (ignored with ``must-understand`` and an understood status, §5.2.2.3);
    ``private``; §3.5 ``Authorization``; ``Set-Cookie`` unless ``allow_set_cookie``;
    ``Vary: *``; and last, that the response has explicit freshness (§4.2.1), a validator, or
    a heuristically cacheable status with ``default_ttl > 0``. A status outside
    :data:`~bext.cache.freshness.HEURISTIC_STATUSES` needs explicit freshness (§3).
    ``response_time`` only serves to evaluate ``Expires`` against a missing ``Date``.
    """
    if method != "GET":
        return Storability(Reason.METHOD)
    if status == 206:
        return Storability(Reason.PARTIAL)
    if status not in UNDERSTOOD_STATUSES:
        return Storability(Reason.STATUS)
    if request_cache_control(request_headers).no_store:
        return Storability(Reason.REQUEST_NO_STORE)
    surrogate = surrogate_control(response_headers)
    if surrogate.no_store:
        return Storability(Reason.SURROGATE_NO_STORE)
    response = response_cache_control(response_headers)
    if response.no_store and not response.must_understand:
        return Storability(Reason.NO_STORE)
    if response.private:
        return Storability(Reason.PRIVATE)
    if has_authorization(request_headers) and not reusable_with_authorization(response):
        return Storability(Reason.AUTHORIZATION)
    if not allow_set_cookie and has_field(response_headers, b"set-cookie"):
        return Storability(Reason.SET_COOKIE)
    if vary_star(response_headers):
        return Storability(Reason.VARY_STAR)
    explicit = explicit_lifetime(
        response_headers,
        response_time=response_time,
        cache_control=response,
        surrogate=surrogate,
    )
    if explicit is not None:
        return Storability()
    if status not in HEURISTIC_STATUSES:
        return Storability(Reason.NO_FRESHNESS)
    if has_validator(response_headers) or default_ttl > 0:
        return Storability()
    return Storability(Reason.NO_FRESHNESS)


HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"proxy-connection",
        b"keep-alive",
        b"te",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authentication-info",
        b"proxy-authorization",
        b"trailer",
    }
)
"""Fields a cache does not store (RFC 9111 §3.1, RFC 9110 §7.6.1)."""


def connection_options(headers: Headers) -> frozenset[bytes]:
    """The lowercase field names listed in ``Connection`` (RFC 9110 §7.6.1)."""
    return frozenset(
        member.lower()
        for line in field_lines(headers, b"connection")
        for member in split_list(line)
    )


NOT_STORED = HOP_BY_HOP | {b"x-request-id"}
"""Besides the hop-by-hop fields: the id of the request that fetched the response, which
is not the id of the requests a stored copy will answer."""


def headers_to_store(response_headers: Headers) -> Headers:
    """The response fields to store (RFC 9111 §3.1): all but ``Connection``, the fields it
    names, the hop-by-hop and proxy fields of :data:`HOP_BY_HOP`, and ``X-Request-ID``."""
    drop = NOT_STORED | connection_options(response_headers)
    return [(name, value) for name, value in response_headers if name.lower() not in drop]
