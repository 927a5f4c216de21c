"""Request handlers: what a route does once it matched.

A handler is a callable taking a :class:`~bext.http.message.Request` and returning a
:class:`~bext.http.message.Response`, or an awaitable of one when it has to wait (proxy,
large files). Handlers never see the HTTP version or the socket.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bext.http.message import Request, Response
from bext.protocol.events import Headers

Handler = Callable[[Request], Response | Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class QuickTarget:
    """Where a body-less request lands, worked out once for every request with the same
    request-target, ``Host`` and scheme (:meth:`bext.worker.pipeline.Pipeline.quick`)."""

    host: str | None
    scheme: str
    target: bytes
    path: str
    """The normalised path, as :attr:`Request.path <bext.http.message.Request.path>`."""
    query: bytes


QuickAnswer = Callable[[str, Headers], Response | None]
"""A handler's answer to a body-less request at a known :class:`QuickTarget`, from its
method and header fields alone: a Response, or None when this request needs the full path
with a :class:`~bext.http.message.Request`. It must return exactly what the handler would
for the same request, and do what the handler would besides (count a cache hit): the
HTTP/1.1 connection sends it without a Request, routing or an exchange.
"""

QuickAnswers = Callable[[QuickTarget], QuickAnswer | None]
"""A handler's :data:`QuickAnswer` for one target, or None if it never has one there. A
rule with access rules, a rate limit or the WAF has none at all."""
