"""Invalidation by unsafe methods (RFC 9111 §4.4).

A non-error response to a request with an unsafe method invalidates the stored responses for
the target URI, and for the URIs in ``Location`` and ``Content-Location`` when they have the
same origin (RFC 9110 §4.3.1) as the target.
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit, urlunsplit

from bext.cache._fields import first_line
from bext.protocol.events import Headers

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
"""The safe methods (RFC 9110 §9.2.1); every other method is unsafe."""

_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_uri(uri: str) -> str | None:
    """An absolute http(s) URI in a comparable form (RFC 9110 §4.2.3), or ``None``.

    Lowercase scheme and host, default port removed, empty path made ``/``, fragment dropped.
    """
    try:
        parts = urlsplit(uri)
        scheme = parts.scheme.lower()
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def origin(uri: str) -> tuple[str, str] | None:
    """The origin of a normalised URI as (scheme, authority) (RFC 9110 §4.3.1)."""
    normal = normalise_uri(uri)
    if normal is None:
        return None
    parts = urlsplit(normal)
    return parts.scheme, parts.netloc


def invalidates(method: str, status: int) -> bool:
    """Whether a response to ``method`` triggers invalidation (RFC 9111 §4.4): an unsafe
    method and a non-error final status (2xx or 3xx)."""
    return method.upper() not in SAFE_METHODS and 200 <= status < 400


def invalidation_targets(
    method: str, status: int, target_uri: str, response_headers: Headers
) -> tuple[str, ...]:
    """The normalised URIs whose stored responses must be invalidated (RFC 9111 §4.4).

    ``target_uri`` is the absolute target URI of the request (RFC 9110 §7.1). Returns the
    target, then ``Location`` and ``Content-Location`` (resolved against the target) if they
    share its origin; empty when :func:`invalidates` says no. Duplicates are removed.
    """
    if not invalidates(method, status):
        return ()
    target = normalise_uri(target_uri)
    if target is None:
        return ()
    found = [target]
    for field in (b"location", b"content-location"):
        value = first_line(response_headers, field)
        if not value:
            continue
        try:
            resolved = normalise_uri(urljoin(target, value.decode("latin-1")))
        except ValueError:
            continue
        if resolved is not None and origin(resolved) == origin(target):
            found.append(resolved)
    return tuple(dict.fromkeys(found))


def target_path(uri: str) -> str:
    """The path and query of a URI (``/a?b``), the form a store keyed by path uses."""
    parts = urlsplit(uri)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
